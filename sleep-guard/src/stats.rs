//! Statistics: per reason since boot, and a few counters kept across deep sleep.

/// What one reason did since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReasonStats {
    /// Holds taken (acquire, lease or renewal, level set).
    pub acquires: u32,
    /// Leases that ran out.
    pub expiries: u32,
    /// Times the awake budget overrode this reason.
    pub overrides: u32,
    /// Releases without an acquire.
    pub unbalanced: u32,
    /// Longest continuous hold, in ms.
    pub longest_hold_ms: u32,
    /// Total time held, in ms.
    pub total_hold_ms: u64,
}

impl ReasonStats {
    pub(crate) const ZERO: ReasonStats = ReasonStats {
        acquires: 0,
        expiries: 0,
        overrides: 0,
        unbalanced: 0,
        longest_hold_ms: 0,
        total_hold_ms: 0,
    };
}

const MAGIC: u32 = 0x5347_5244; // "SGRD"

/// Counters that survive deep sleep: a plain `#[repr(C)]` struct of `u32`s to keep in backup
/// SRAM (or RTC backup registers) and report in the next check-in ("forced to sleep N times").
/// A checksum tells a valid copy from SRAM that lost power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct Retained<const N: usize> {
    magic: u32,
    /// Wake cycles begun.
    pub cycles: u32,
    /// Sleeps forced by the awake budget.
    pub forced_sleeps: u32,
    /// Unbalanced releases.
    pub unbalanced: u32,
    /// Per reason index: times overridden by the budget.
    pub overrides: [u32; N],
    /// Per reason index: leases that ran out.
    pub expiries: [u32; N],
    check: u32,
}

impl<const N: usize> Retained<N> {
    /// All zero, valid.
    pub const fn new() -> Self {
        let mut r = Self {
            magic: MAGIC,
            cycles: 0,
            forced_sleeps: 0,
            unbalanced: 0,
            overrides: [0; N],
            expiries: [0; N],
            check: 0,
        };
        r.check = r.checksum();
        r
    }

    /// A copy that is not valid (what a re-entrant [`SleepGuard::retained`] returns).
    ///
    /// [`SleepGuard::retained`]: crate::SleepGuard::retained
    pub(crate) const INVALID: Self = {
        let mut r = Self::new();
        r.check = !r.check;
        r
    };

    const fn checksum(&self) -> u32 {
        // FNV-1a over the words; enough to tell counters from SRAM noise.
        let mut h: u32 = 0x811C_9DC5;
        h = (h ^ self.magic).wrapping_mul(0x0100_0193);
        h = (h ^ self.cycles).wrapping_mul(0x0100_0193);
        h = (h ^ self.forced_sleeps).wrapping_mul(0x0100_0193);
        h = (h ^ self.unbalanced).wrapping_mul(0x0100_0193);
        let mut i = 0;
        while i < N {
            h = (h ^ self.overrides[i]).wrapping_mul(0x0100_0193);
            h = (h ^ self.expiries[i]).wrapping_mul(0x0100_0193);
            i += 1;
        }
        h
    }

    /// True if the magic and checksum match (not garbage, not edited by hand).
    pub fn is_valid(&self) -> bool {
        self.magic == MAGIC && self.check == self.checksum()
    }

    pub(crate) fn seal(&mut self) {
        self.check = self.checksum();
    }
}

impl<const N: usize> Default for Retained<N> {
    fn default() -> Self {
        Self::new()
    }
}
