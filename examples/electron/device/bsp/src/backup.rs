//! The 4 KB backup SRAM at `0x4002_4000`: memory that survives STANDBY (and resets) while the
//! backup regulator is on, where the application keeps its retained state between wakes.
//!
//! Device OS uses the first 3 KB for user retained variables and the last 1 KB
//! (`0x4002_4C00`) as a system area; this crate does not impose a split (the application's
//! `RetainedState` carries its own magic and CRC-32, so memory lost to a brown-out or a cold
//! start reads as "nothing retained", never as garbage).
//!
//! Sources: RM0033, PWR chapter (§4), battery backup domain ( "the backup SRAM … is retained in Standby
//! and VBAT mode when the low-power backup regulator is enabled", BRE/BRR in `PWR_CSR`, the
//! DBP write protection in `PWR_CR`) and the RCC chapter (`RCC_AHB1ENR.BKPSRAMEN`); Device OS v3.3.1
//! `hal/src/stm32f2xx/core_hal_stm32f2xx.c` l.339 and l.1175–1190 (BKPSRAM clock, BRE with a
//! 10 ms wait for BRR), `build/arm/linker/stm32f2xx/backup_ram_memory.ld`. Research
//! `electron-board.md` §4.

use crate::pac;

/// The backup SRAM's address.
pub const BASE: usize = 0x4002_4000;
/// Its size in bytes.
pub const SIZE: usize = 4096;

/// Polls of `PWR_CSR.BRR` before [`BackupSram::enable`] gives up waiting: at least 4 cycles
/// each, so at least 33 ms at 120 MHz (Device OS waits up to 10 ms; RM0033 gives no figure).
pub const REGULATOR_POLLS: u32 = 1_000_000;

/// A read or write outside the 4 KB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BackupError {
    /// `offset + len` is past [`SIZE`].
    OutOfBounds,
}

impl core::fmt::Display for BackupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("backup SRAM access out of bounds")
    }
}

impl core::error::Error for BackupError {}

/// Whether the backup regulator reported ready when the SRAM was enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Retention {
    /// `BRR` set: the contents survive STANDBY.
    Standby,
    /// `BRR` did not set within [`REGULATOR_POLLS`]: the SRAM works while the core is powered,
    /// but the contents will not survive STANDBY (the next wake finds nothing retained).
    WhilePowered,
}

/// The backup SRAM, enabled for reading and writing.
#[derive(Debug)]
pub struct BackupSram {
    retention: Retention,
}

/// Checks that `offset..offset + len` lies within the 4 KB.
///
/// # Errors
/// [`BackupError::OutOfBounds`].
pub fn check_range(offset: usize, len: usize) -> Result<(), BackupError> {
    match offset.checked_add(len) {
        Some(end) if end <= SIZE => Ok(()),
        _ => Err(BackupError::OutOfBounds),
    }
}

impl BackupSram {
    /// Enables the backup SRAM: the BKPSRAM and PWR clocks, write access to the backup domain
    /// (`PWR_CR.DBP`), the backup regulator (`PWR_CSR.BRE`), then waits for `BRR` (bounded by
    /// [`REGULATOR_POLLS`]; see [`retention`](Self::retention) for the outcome). Idempotent:
    /// after a wake from STANDBY the regulator is still on and `BRR` already set.
    ///
    /// Cost: the regulator's start (milliseconds, once per cold start).
    pub fn enable(rcc: &pac::RCC, pwr: &pac::PWR) -> BackupSram {
        rcc.ahb1enr().modify(|_, w| w.bkpsramen().set_bit());
        rcc.apb1enr().modify(|_, w| w.pwren().set_bit());
        let _ = rcc.apb1enr().read();
        pwr.cr().modify(|_, w| w.dbp().set_bit());
        pwr.csr().modify(|_, w| w.bre().set_bit());
        let mut retention = Retention::WhilePowered;
        for _ in 0..REGULATOR_POLLS {
            if pwr.csr().read().brr().bit_is_set() {
                retention = Retention::Standby;
                break;
            }
        }
        BackupSram { retention }
    }

    /// Whether the contents survive STANDBY.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Copies `buf.len()` bytes from `offset`.
    ///
    /// Cost: one volatile byte load per byte.
    ///
    /// # Errors
    /// [`BackupError::OutOfBounds`] (nothing read).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), BackupError> {
        check_range(offset, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: inside the 4 KB (checked); the SRAM's clock is on (`enable`).
            *b = unsafe { ((BASE + offset + i) as *const u8).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` to `offset`.
    ///
    /// Cost: one volatile byte store per byte.
    ///
    /// # Errors
    /// [`BackupError::OutOfBounds`] (nothing written).
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), BackupError> {
        check_range(offset, data.len())?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read`; DBP is set, so the backup domain accepts writes.
            unsafe { ((BASE + offset + i) as *mut u8).write_volatile(*b) };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stay_inside_4_kb() {
        assert_eq!(check_range(0, SIZE), Ok(()));
        assert_eq!(check_range(SIZE, 0), Ok(()));
        assert_eq!(check_range(SIZE - 64, 64), Ok(()));
        assert_eq!(check_range(SIZE - 63, 64), Err(BackupError::OutOfBounds));
        assert_eq!(check_range(usize::MAX, 2), Err(BackupError::OutOfBounds));
    }
}
