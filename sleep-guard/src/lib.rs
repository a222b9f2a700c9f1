#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

// First, so that its macros are visible in every module below.
#[macro_use]
mod log;

mod error;
mod guard;
mod reason;
mod stats;

pub use error::Error;
pub use guard::{Decision, GuardConfig, Hold, Millis, SleepGuard, SleepToken};
pub use reason::{Class, Reason, ReasonSet};
pub use stats::{ReasonStats, Retained};
