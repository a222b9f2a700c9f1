#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod clock;
mod cmd;
mod command;
mod config;
mod div;
mod dns;
mod error;
mod fields;
pub mod frame;
#[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
mod lte;
mod model;
mod modem;
mod nal;
mod network;
mod power;
mod signal;
mod socket;
pub mod urc;

pub use clock::NetworkTime;
pub use config::{Apn, Auth, Config, Interventions, Registration};
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
