#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

// First, so that its macros are visible in every module below.
#[macro_use]
mod log;

mod clock;
mod cmd;
mod command;
mod config;
mod div;
mod dns;
mod engine;
mod error;
mod fields;
// `frame` and `urc` are public only for the fuzz targets and property tests, behind the
// non-default `fuzzing` feature, and not part of the semver API (as quinn-proto's and
// postcard's fuzzing features).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod frame;
// Without `fuzzing` their `pub` items are crate-internal; `pub` stays for the fuzzing build.
#[cfg(not(feature = "fuzzing"))]
#[allow(unreachable_pub)]
mod frame;
#[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
mod lte;
mod model;
mod modem;
mod nal;
mod network;
mod power;
mod signal;
mod socket;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod urc;
#[cfg(not(feature = "fuzzing"))]
#[allow(unreachable_pub)]
mod urc;

pub use clock::NetworkTime;
pub use config::{Apn, Auth, Interventions, ModemConfig, Registration};
pub use engine::PendingRecovery;
pub use error::{
    AtError, DataError, Error, PinError, PowerError, RegistrationError, SimError, SocketError,
    UartErrorKind,
};
#[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
pub use lte::{BandMasks, Rat};
pub use model::{Family, Model, Profile, Timeouts};
pub use modem::{Modem, NoPin, Stats};
pub use network::{Digits, PsmTimers};
pub use power::Recovery;
#[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
pub use signal::ExtendedSignalQuality;
pub use signal::SignalQuality;
pub use socket::{Protocol, SocketId, SOCKETS};
pub use urc::RegStatus;
