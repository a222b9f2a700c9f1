#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod commands;
mod config;
mod core;
mod emulator;
mod fault;
mod model;
mod net;
mod record;
mod socket;

pub use config::{
    Auth, EmulatorConfig, NetworkConfig, PdpConfig, Quirks, RegStat, SimConfig, StaleSocket, Tech,
    Timing, UnknownCommandReply, UupsdaOrder,
};
pub use emulator::{Delay, Emulator, PwrOn, Reset, Uart, UartError, VInt};
pub use fault::{Action, ErrorReply, Fault, Fired, Occurrence, Position, Trigger};
pub use model::{Family, Model, PowerRules, ResetEffect};
pub use record::{ByteCount, Dir, Record, Stats, Violation};
