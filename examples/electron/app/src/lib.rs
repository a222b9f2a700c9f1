#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

// One convention, as the library crates: private modules, the public items flat at the root.
mod board;
mod config;
mod identity;
mod layout;
mod reason;
mod report;
mod retained;
mod wake;

pub use board::{Board, PowerControl};
pub use config::AppConfig;
pub use identity::{CounterLog, Identity, IdentityError};
pub use layout::{COUNTER_LOG, FLASH_MAP, IDENTITY, IDENTITY_SECTOR, LAYOUT, SECTOR_SIZES};
pub use reason::Reason;
pub use report::{TrialOutcome, WakeEnd, WakeError, WakeReport};
pub use retained::{RetainedState, RETAINED_LEN};
pub use wake::{wake, Buffers, MANIFEST_MAX, MAX_CUT_SHORT_WAKES};
