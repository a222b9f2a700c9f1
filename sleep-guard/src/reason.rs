//! What holds the device awake: the application's own reasons, their class, and sets of them.

use core::fmt;
use core::marker::PhantomData;

/// Whether the awake budget may override a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Class {
    /// Work that can wait for the next wake: a pending update, a download, an outbox, an
    /// awaited acknowledgement. Overridden (and counted) once the awake budget is spent.
    Deferrable,
    /// Work that must never be interrupted: a flash erase or write, a bootloader step. Never
    /// overridden; therefore it may only be held as a bounded [lease](crate::SleepGuard::lease),
    /// so it always ends.
    Critical,
}

/// A reason to stay awake, defined by the application, usually a fieldless enum.
///
/// ```
/// use sleep_guard::{Class, Reason};
///
/// #[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// enum Why { UpdatePending, Download, FlashWrite }
///
/// impl Reason for Why {
///     const COUNT: usize = 3;
///     fn index(self) -> usize { self as usize }
///     fn from_index(i: usize) -> Option<Self> {
///         [Why::UpdatePending, Why::Download, Why::FlashWrite].get(i).copied()
///     }
///     fn name(self) -> &'static str {
///         match self { Why::UpdatePending => "update-pending", Why::Download => "download", Why::FlashWrite => "flash-write" }
///     }
///     fn class(self) -> Class {
///         if self == Why::FlashWrite { Class::Critical } else { Class::Deferrable }
///     }
///     fn max_lease_ms(self) -> Option<u32> {
///         (self == Why::FlashWrite).then_some(3_000)
///     }
/// }
/// ```
pub trait Reason: Copy + Eq + 'static {
    /// Number of reasons; indices are `0..COUNT`. At most 32.
    const COUNT: usize;
    /// Dense index of this reason, below [`COUNT`](Self::COUNT).
    fn index(self) -> usize;
    /// The reason with index `i`, `None` past the end (used to list holders).
    fn from_index(i: usize) -> Option<Self>;
    /// A short name for logs and reports.
    fn name(self) -> &'static str;
    /// Whether the awake budget may override it.
    fn class(self) -> Class;
    /// The longest single lease of this reason. A [`Class::Critical`] reason must return
    /// `Some`; a deferrable one may (then longer leases are refused).
    fn max_lease_ms(self) -> Option<u32> {
        None
    }
}

/// A set of reasons, as a bit per reason index.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReasonSet<R> {
    bits: u32,
    _r: PhantomData<fn() -> R>,
}

impl<R: Reason> ReasonSet<R> {
    /// The empty set.
    pub const EMPTY: Self = Self {
        bits: 0,
        _r: PhantomData,
    };

    /// A set from its bit mask (bit `i` = reason with index `i`).
    pub const fn from_bits(bits: u32) -> Self {
        Self {
            bits,
            _r: PhantomData,
        }
    }

    /// The bit mask.
    pub const fn bits(&self) -> u32 {
        self.bits
    }

    /// True if no reason is in the set.
    pub const fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// Number of reasons in the set.
    pub const fn len(&self) -> u32 {
        self.bits.count_ones()
    }

    /// True if `r` is in the set.
    pub fn contains(&self, r: R) -> bool {
        r.index() < 32 && self.bits & (1 << r.index()) != 0
    }

    pub(crate) fn insert_index(&mut self, i: usize) {
        self.bits |= 1 << i;
    }

    /// The reasons in the set, in index order.
    pub fn iter(&self) -> impl Iterator<Item = R> {
        let bits = self.bits;
        (0..32usize)
            .filter(move |i| bits & (1 << i) != 0)
            .filter_map(R::from_index)
    }
}

impl<R: Reason> Default for ReasonSet<R> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<R: Reason> fmt::Debug for ReasonSet<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|r| r.name()))
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<R: Reason> defmt::Format for ReasonSet<R> {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{{");
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                defmt::write!(f, ", ");
            }
            defmt::write!(f, "{=str}", r.name());
        }
        defmt::write!(f, "}}");
    }
}
