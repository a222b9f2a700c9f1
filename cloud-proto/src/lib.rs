#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod device;
pub mod frame;
pub mod message;
pub mod server;
pub mod stream;

pub use device::{
    Counters, DeviceConfig, DeviceEndpoint, Event, Millis, SendError, Timeout, Transmit,
};
pub use frame::{
    DeviceId, DownFrame, EncodeError, FrameError, Keys, MAX_CHUNK_DATA, MAX_CHUNK_DATA_DATAGRAM,
    MAX_FRAME,
};
pub use message::*;
pub use server::{DeviceStore, ReplayPolicy, Request, RequestError};

#[cfg(doctest)]
mod must_use;
