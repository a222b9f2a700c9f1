//! u-blox SARA driver (skeleton: being written).
#![cfg_attr(not(test), no_std)]
