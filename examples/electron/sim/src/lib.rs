#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod cloud;
pub mod device;
pub mod electron;
pub mod factory;
pub mod faults;
pub mod flash;
pub mod link;
pub mod report;
pub mod retained;
pub mod sim;
pub mod story;
