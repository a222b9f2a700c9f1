//! Misuse is an error, never a panic.

use core::fmt;

/// Why a call was refused. Nothing changed, except that an unbalanced release is counted and
/// that leases which ran out by the call's `now` ended, as on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// `release` without a matching `acquire`.
    Unbalanced,
    /// More than 65 535 nested `acquire`s of one reason.
    Overflow,
    /// A critical reason may only be held as a bounded lease.
    CriticalNeedsLease,
    /// A critical reason has no [`Reason::max_lease_ms`](crate::Reason::max_lease_ms).
    UnboundedCritical,
    /// The lease is longer than the reason's maximum.
    LeaseTooLong {
        /// The maximum.
        max_ms: u32,
    },
    /// The extension would pass the cycle's maximum.
    ExtensionExceeded {
        /// What is still available this cycle.
        available_ms: u32,
    },
    /// A critical lease was asked for at or after the end of the cycle's critical overrun
    /// (the awake budget, extensions included, plus
    /// [`GuardConfig::max_critical_overrun_ms`](crate::GuardConfig::max_critical_overrun_ms)): the
    /// battery comes first. Ending a lease (0 ms) is still allowed; the next
    /// [`begin_cycle`](crate::SleepGuard::begin_cycle) allows critical leases again.
    CriticalOverrunExceeded,
    /// The reason's index is not below `N`.
    InvalidReason,
    /// The call interrupted another call of the same guard inside its critical section, which
    /// only a context the critical section does not mask can do (an NMI or HardFault handler).
    /// Nothing changed; call again from a maskable context.
    Reentrant,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unbalanced => f.write_str("release without a matching acquire"),
            Self::Overflow => f.write_str("too many nested holds"),
            Self::CriticalNeedsLease => f.write_str("a critical reason must be held as a lease"),
            Self::UnboundedCritical => f.write_str("a critical reason needs a maximum lease"),
            Self::LeaseTooLong { max_ms } => write!(f, "lease longer than the {max_ms} ms maximum"),
            Self::ExtensionExceeded { available_ms } => {
                write!(f, "extension exceeds the maximum ({available_ms} ms left)")
            }
            Self::CriticalOverrunExceeded => {
                f.write_str("critical leases have used up this cycle's overrun")
            }
            Self::InvalidReason => f.write_str("reason index out of range"),
            Self::Reentrant => f.write_str("re-entrant call while the guard was in use"),
        }
    }
}

impl core::error::Error for Error {}
