//! The application's sleep vetoes.

use sleep_guard::Class;

/// Why the device stays awake (sleep-guard's [`Reason`](sleep_guard::Reason)).
///
/// | reason | class | hold | max lease |
/// |---|---|---|---|
/// | `Modem` | deferrable | lease per modem step (power, registration, data) | 90 s |
/// | `CheckIn` | deferrable | lease while a request waits for its answer | 30 s |
/// | `UpdatePending` | deferrable | level, from an offer to its decision and download | — |
/// | `Download` | deferrable | lease renewed per chunk request | 30 s |
/// | `FlashWrite` | **critical** | lease around each chunk write, erase step, state record | 5 s |
///
/// Deferrable holds are overridden when the awake budget is spent; `FlashWrite` may run past
/// it by at most [`AppConfig::critical_overrun_ms`](crate::AppConfig::critical_overrun_ms)
/// (one 128 KB sector erase takes 1–2 s on the STM32F2, 4 s at most at x8 parallelism).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The modem is being powered, registered or connected.
    Modem,
    /// A request to the cloud waits for its answer.
    CheckIn,
    /// An update was offered and not yet decided or downloaded.
    UpdatePending,
    /// Chunks are being pulled.
    Download,
    /// A flash write or erase is running: never cut short by the budget.
    FlashWrite,
}

const ALL: [Reason; 5] = [
    Reason::Modem,
    Reason::CheckIn,
    Reason::UpdatePending,
    Reason::Download,
    Reason::FlashWrite,
];

impl sleep_guard::Reason for Reason {
    const COUNT: usize = 5;

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(i: usize) -> Option<Self> {
        ALL.get(i).copied()
    }

    fn name(self) -> &'static str {
        match self {
            Self::Modem => "modem",
            Self::CheckIn => "check-in",
            Self::UpdatePending => "update-pending",
            Self::Download => "download",
            Self::FlashWrite => "flash-write",
        }
    }

    fn class(self) -> Class {
        match self {
            Self::FlashWrite => Class::Critical,
            _ => Class::Deferrable,
        }
    }

    fn max_lease_ms(self) -> Option<u32> {
        match self {
            Self::Modem => Some(90_000),
            Self::CheckIn | Self::Download => Some(30_000),
            Self::UpdatePending => None,
            Self::FlashWrite => Some(5_000),
        }
    }
}
