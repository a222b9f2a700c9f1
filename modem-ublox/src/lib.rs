#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cmd;
mod config;
mod error;
mod fields;
pub mod frame;
mod model;
mod modem;
mod nal;
mod network;
mod power;
mod socket;
pub mod urc;

pub use config::{Apn, Auth, Config, Interventions, Registration};
pub use error::{
    AtError, DataError, Error, PinError, PowerError, RegistrationError, SimError, SocketError,
    UartErrorKind,
};
pub use model::{Family, Model, Profile, Timeouts};
pub use modem::{Modem, NoPin, Stats};
pub use network::{Digits, PsmTimers};
pub use power::Recovery;
pub use socket::{Protocol, SocketId, SOCKETS};
pub use urc::RegStatus;
