//! The reasons shared by the model and interrupt tests.
//!
//! Four deferrable reasons (two unbounded, one level-style, one with a maximum lease) and two
//! critical ones (one bounded, one without a maximum, which may never be held at all).

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use sleep_guard::{Class, Reason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Deferrable, no maximum lease.
    Outbox,
    /// Deferrable, no maximum lease.
    AwaitAck,
    /// Deferrable, no maximum lease (used as a level hold in the examples).
    UpdatePending,
    /// Deferrable with a maximum lease of [`DOWNLOAD_MAX_MS`].
    Download,
    /// Critical with a maximum lease of [`FLASH_MAX_MS`].
    FlashWrite,
    /// Critical WITHOUT a maximum lease: every lease is `UnboundedCritical`.
    Bootloader,
}

pub const DOWNLOAD_MAX_MS: u32 = 500;
pub const FLASH_MAX_MS: u32 = 300;

pub const ALL: [Why; 6] = [
    Why::Outbox,
    Why::AwaitAck,
    Why::UpdatePending,
    Why::Download,
    Why::FlashWrite,
    Why::Bootloader,
];

/// The deferrable reasons (the ones that may be acquired).
pub const DEFERRABLE: [Why; 4] = [
    Why::Outbox,
    Why::AwaitAck,
    Why::UpdatePending,
    Why::Download,
];

pub const N: usize = 6;

impl Reason for Why {
    const COUNT: usize = N;

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(i: usize) -> Option<Self> {
        ALL.get(i).copied()
    }

    fn name(self) -> &'static str {
        match self {
            Why::Outbox => "outbox",
            Why::AwaitAck => "await-ack",
            Why::UpdatePending => "update-pending",
            Why::Download => "download",
            Why::FlashWrite => "flash-write",
            Why::Bootloader => "bootloader",
        }
    }

    fn class(self) -> Class {
        match self {
            Why::FlashWrite | Why::Bootloader => Class::Critical,
            _ => Class::Deferrable,
        }
    }

    fn max_lease_ms(self) -> Option<u32> {
        match self {
            Why::Download => Some(DOWNLOAD_MAX_MS),
            Why::FlashWrite => Some(FLASH_MAX_MS),
            _ => None,
        }
    }
}
