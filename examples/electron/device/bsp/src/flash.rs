//! The STM32F205RG's internal flash as `embedded-storage` NOR flash.
//!
//! 1 MB at `0x0800_0000`, offsets from 0, in 12 sectors (RM0033, Embedded Flash memory interface, the organisation table):
//!
//! | sectors | offset | size each |
//! |---|---|---|
//! | 0–3 | `0x0_0000` | 16 KB |
//! | 4 | `0x1_0000` | 64 KB |
//! | 5–11 | `0x2_0000` | 128 KB |
//!
//! Programming is at x32 parallelism (`PSIZE` = 10, for a 2.7–3.6 V supply: the Electron runs
//! the MCU at 3.3 V), one 32-bit word at a time, so [`InternalFlash`]'s `WRITE_SIZE` is 4 and
//! writes must start on a word and cover whole words. An erase takes whole physical sectors.
//!
//! Every write and erase outside the `writable` range given to [`InternalFlash::new`], or
//! overlapping the range given to [`InternalFlash::protect`], is refused before the flash is
//! unlocked: the bootloader leaves sector 0 (itself) out of `writable`; the application's
//! `writable` is everything above sector 0 (ota-core's regions lie on both sides of the active
//! slot) and it protects the active slot it runs from (only the bootloader's install writes
//! it).
//!
//! Timing (STM32F205xx datasheet, "Flash memory programming" table, x32): word program
//! 16 µs typical, 100 µs max; sector erase 16 KB 250/500 ms, 64 KB 550/1100 ms,
//! 128 KB 1/2 s (typical/max). A single-bank F2 stalls every flash fetch while it erases or
//! programs, so code running from flash (this driver included) simply waits on the bus; the
//! busy polls are bounded anyway ([`FlashError::Timeout`]).
//!
//! Sources: RM0033, Embedded Flash memory interface (the sector map, unlock keys, `FLASH_CR` `PG`/`SER`/
//! `SNB`/`PSIZE`/`STRT`/`LOCK`, `FLASH_SR` `BSY`/`PGSERR`/`PGPERR`/`PGAERR`/`WRPERR`/`OPERR`);
//! Device OS v3.3.1 `platform/MCU/STM32F2xx/SPARK_Firmware_Driver/src/flash_mal.c` (the same
//! sequence through ST's StdPeriph `FLASH_EraseSector(…, VoltageRange_3)` and
//! `FLASH_ProgramWord`).

use core::ops::Range;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

use crate::pac;

/// The flash's address on the bus; offset 0 of [`InternalFlash`].
pub const BASE: u32 = 0x0800_0000;
/// The flash's size: 1 MB (STM32F205RG).
pub const CAPACITY: u32 = 0x10_0000;
/// The number of sectors.
pub const SECTOR_COUNT: u8 = 12;

/// First key for `FLASH_KEYR` (RM0033, unlocking the Flash control register).
const KEY1: u32 = 0x4567_0123;
/// Second key.
const KEY2: u32 = 0xCDEF_89AB;

/// Busy polls allowed per programmed word: a poll is at least 4 cycles, so 100 000 polls are
/// at least 3.3 ms at 120 MHz, 33× the 100 µs maximum.
pub const WORD_POLLS: u32 = 100_000;
/// Busy polls allowed per KB erased: at least 4 cycles a poll, 1 M polls a KB is at least
/// 33 ms a KB at 120 MHz (4.3 s for a 128 KB sector, twice its 2 s maximum).
pub const ERASE_POLLS_PER_KB: u32 = 1_000_000;

/// One physical sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sector {
    /// Its number (0..=11), the `SNB` field's value.
    pub index: u8,
    /// Its first offset.
    pub start: u32,
    /// Its size in bytes.
    pub size: u32,
}

impl Sector {
    /// One past its last offset.
    pub const fn end(&self) -> u32 {
        self.start + self.size
    }

    /// Sector `index`, or `None` past sector 11.
    pub const fn by_index(index: u8) -> Option<Sector> {
        let (start, size) = match index {
            0..=3 => (index as u32 * 0x4000, 0x4000),
            4 => (0x1_0000, 0x1_0000),
            5..=11 => ((index as u32 - 4) * 0x2_0000, 0x2_0000),
            _ => return None,
        };
        Some(Sector { index, start, size })
    }

    /// The sector holding `offset`, or `None` past the end of the flash.
    pub const fn containing(offset: u32) -> Option<Sector> {
        let index = match offset {
            0..=0xFFFF => offset / 0x4000,
            0x1_0000..=0x1_FFFF => 4,
            0x2_0000..=0xF_FFFF => 4 + offset / 0x2_0000,
            _ => return None,
        };
        Sector::by_index(index as u8)
    }
}

/// A flash operation that was refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FlashError {
    /// The range reaches past the 1 MB.
    OutOfBounds,
    /// A write does not start on a 4-byte word or does not cover whole words, or an erase does
    /// not start and end on sector boundaries.
    NotAligned,
    /// The range reaches outside the `writable` range, or overlaps the protected one
    /// ([`InternalFlash::protect`]): refused, nothing was changed.
    NotWritable,
    /// The flash stayed locked after the unlock keys (a wrong key sequence since reset locks
    /// `FLASH_CR` until the next reset).
    Locked,
    /// `BSY` did not clear within the poll bound ([`WORD_POLLS`], [`ERASE_POLLS_PER_KB`]).
    Timeout,
    /// `WRPERR`: the sector is write-protected by the option bytes.
    WriteProtected,
    /// `PGAERR`: programming alignment error (a write crossing a 128-bit row).
    ProgramAlignment,
    /// `PGPERR`: the parallelism (`PSIZE`) did not match the access.
    Parallelism,
    /// `PGSERR`: programming sequence error (for example a write with `PG` clear).
    Sequence,
    /// `OPERR`: the operation failed (only reported with error interrupts; kept for
    /// completeness).
    Operation,
    /// A programmed word read back differently: the target was not erased (NOR flash only
    /// clears bits) or the cell is worn.
    Verify {
        /// Offset of the first word that differs.
        offset: u32,
    },
}

impl core::fmt::Display for FlashError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfBounds => f.write_str("flash range out of bounds"),
            Self::NotAligned => f.write_str("flash range not aligned"),
            Self::NotWritable => f.write_str("flash range outside the writable range"),
            Self::Locked => f.write_str("flash stayed locked"),
            Self::Timeout => f.write_str("flash busy timeout"),
            Self::WriteProtected => f.write_str("flash sector write-protected (WRPERR)"),
            Self::ProgramAlignment => f.write_str("flash programming alignment error (PGAERR)"),
            Self::Parallelism => f.write_str("flash parallelism error (PGPERR)"),
            Self::Sequence => f.write_str("flash programming sequence error (PGSERR)"),
            Self::Operation => f.write_str("flash operation error (OPERR)"),
            Self::Verify { offset } => write!(f, "flash word at {offset:#x} did not verify"),
        }
    }
}

impl core::error::Error for FlashError {}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// The `FLASH_SR` error bits: OPERR (1), WRPERR (4), PGAERR (5), PGPERR (6), PGSERR (7).
pub const SR_ERRORS: u32 = 1 << 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7;

/// The error a `FLASH_SR` value reports, if any (the first in the order write protection,
/// alignment, parallelism, sequence, operation).
pub const fn sr_error(sr: u32) -> Option<FlashError> {
    if sr & 1 << 4 != 0 {
        Some(FlashError::WriteProtected)
    } else if sr & 1 << 5 != 0 {
        Some(FlashError::ProgramAlignment)
    } else if sr & 1 << 6 != 0 {
        Some(FlashError::Parallelism)
    } else if sr & 1 << 7 != 0 {
        Some(FlashError::Sequence)
    } else if sr & 1 << 1 != 0 {
        Some(FlashError::Operation)
    } else {
        None
    }
}

/// Checks a write of `len` bytes at `offset`: inside the flash, word-aligned, whole words,
/// inside `writable`. An empty write is accepted anywhere in bounds.
///
/// # Errors
/// [`FlashError::OutOfBounds`], [`FlashError::NotAligned`], [`FlashError::NotWritable`], in
/// that order.
pub fn check_write(offset: u32, len: usize, writable: &Range<u32>) -> Result<(), FlashError> {
    let end = u32::try_from(len)
        .ok()
        .and_then(|l| offset.checked_add(l))
        .filter(|&e| e <= CAPACITY)
        .ok_or(FlashError::OutOfBounds)?;
    if !offset.is_multiple_of(4) || !len.is_multiple_of(4) {
        return Err(FlashError::NotAligned);
    }
    if len > 0 && (offset < writable.start || end > writable.end) {
        return Err(FlashError::NotWritable);
    }
    Ok(())
}

/// Checks an erase of `from..to` and returns the sectors it covers (their indices, a range):
/// inside the flash, `from` and `to` on sector boundaries, inside `writable`. An empty
/// range (`from == to`) covers no sector.
///
/// # Errors
/// [`FlashError::OutOfBounds`] (also for `from > to`), [`FlashError::NotAligned`] if either end
/// falls inside a sector, [`FlashError::NotWritable`].
pub fn check_erase(from: u32, to: u32, writable: &Range<u32>) -> Result<Range<u8>, FlashError> {
    if from > to || to > CAPACITY {
        return Err(FlashError::OutOfBounds);
    }
    let first = match Sector::containing(from) {
        Some(s) if s.start == from => s.index,
        Some(_) => return Err(FlashError::NotAligned),
        None => SECTOR_COUNT, // from == CAPACITY == to
    };
    let last = match Sector::containing(to) {
        Some(s) if s.start == to => s.index,
        Some(_) => return Err(FlashError::NotAligned),
        None => SECTOR_COUNT, // to == CAPACITY
    };
    if from < to && (from < writable.start || to > writable.end) {
        return Err(FlashError::NotWritable);
    }
    Ok(first..last)
}

/// Which flash caches `ACR` had enabled.
#[derive(Debug, Clone, Copy)]
struct Caches {
    data: bool,
    instruction: bool,
}

/// Refuses a non-empty range `from..to` that overlaps `protected` (an empty `protected`
/// overlaps nothing).
///
/// # Errors
/// [`FlashError::NotWritable`].
pub fn check_protected(from: u32, to: u32, protected: &Range<u32>) -> Result<(), FlashError> {
    if from < to && from < protected.end && protected.start < to {
        return Err(FlashError::NotWritable);
    }
    Ok(())
}

/// The internal flash. Owns `FLASH`; reads are plain memory reads of the mapped flash.
#[derive(Debug)]
pub struct InternalFlash {
    flash: pac::FLASH,
    writable: Range<u32>,
    protected: Range<u32>,
}

impl InternalFlash {
    /// Takes the flash controller. `writable` (offsets) bounds every write and erase; it
    /// is clipped to the flash. Nothing inside it is protected until [`protect`](Self::protect).
    pub fn new(flash: pac::FLASH, writable: Range<u32>) -> Self {
        let writable = writable.start.min(CAPACITY)..writable.end.min(CAPACITY);
        Self {
            flash,
            writable,
            protected: 0..0,
        }
    }

    /// Refuses every write and erase that overlaps `protected` (offsets) with
    /// [`FlashError::NotWritable`], even inside `writable`: the application protects the
    /// active slot it executes from. Replaces an earlier protected range.
    pub fn protect(mut self, protected: Range<u32>) -> Self {
        self.protected = protected;
        self
    }

    /// The protected range (empty if none).
    pub fn protected(&self) -> Range<u32> {
        self.protected.clone()
    }

    /// The writable range.
    pub fn writable(&self) -> Range<u32> {
        self.writable.clone()
    }

    /// Gives the controller back.
    pub fn free(self) -> pac::FLASH {
        self.flash
    }

    fn wait_idle(&self, polls: u32) -> Result<(), FlashError> {
        for _ in 0..polls {
            if self.flash.sr().read().bsy().bit_is_clear() {
                return Ok(());
            }
        }
        Err(FlashError::Timeout)
    }

    /// Unlocks `FLASH_CR`, clears stale error flags, sets x32 parallelism.
    fn unlock(&mut self) -> Result<(), FlashError> {
        self.wait_idle(WORD_POLLS)?;
        if self.flash.cr().read().lock().bit_is_set() {
            // SAFETY: the unlock keys are the values RM0033 names.
            self.flash.keyr().write(|w| unsafe { w.bits(KEY1) });
            self.flash.keyr().write(|w| unsafe { w.bits(KEY2) });
            if self.flash.cr().read().lock().bit_is_set() {
                return Err(FlashError::Locked);
            }
        }
        // SR's error bits are write-1-to-clear.
        // SAFETY: writing ones to rc_w1 bits only clears them.
        self.flash.sr().write(|w| unsafe { w.bits(SR_ERRORS | 1) });
        self.flash.cr().modify(|_, w| w.psize().psize32());
        Ok(())
    }

    /// Clears PG/SER and locks `FLASH_CR` again.
    fn lock(&mut self) {
        self.flash
            .cr()
            .modify(|_, w| w.pg().clear_bit().ser().clear_bit());
        self.flash.cr().modify(|_, w| w.lock().set_bit());
    }

    /// Reads and clears `FLASH_SR`'s error bits, as an error.
    fn take_error(&mut self) -> Option<FlashError> {
        let sr = self.flash.sr().read().bits();
        let err = sr_error(sr);
        if err.is_some() {
            // SAFETY: as in `unlock`.
            self.flash.sr().write(|w| unsafe { w.bits(sr & SR_ERRORS) });
        }
        err
    }

    /// Turns the flash data cache off for an erase or program and returns what `ACR` had on:
    /// the program's read-back must come from the flash, not from a line cached before
    /// (an erased word read earlier by `is_erased` sits in the cache as 0xFFFF_FFFF).
    fn caches_off(&mut self) -> Caches {
        let acr = self.flash.acr().read();
        let was = Caches {
            data: acr.dcen().bit_is_set(),
            instruction: acr.icen().bit_is_set(),
        };
        self.flash.acr().modify(|_, w| w.dcen().clear_bit());
        was
    }

    /// Resets both caches (so no line of the old contents is served afterwards: RM0033
    /// read interface: a cache may only be reset while it is disabled) and turns them back on as they
    /// were. ST's StdPeriph/HAL drivers reset them after an erase the same way.
    fn caches_reset(&mut self, was: Caches) {
        self.flash
            .acr()
            .modify(|_, w| w.dcen().clear_bit().icen().clear_bit());
        self.flash
            .acr()
            .modify(|_, w| w.dcrst().set_bit().icrst().set_bit());
        self.flash
            .acr()
            .modify(|_, w| w.dcrst().clear_bit().icrst().clear_bit());
        self.flash
            .acr()
            .modify(|_, w| w.dcen().bit(was.data).icen().bit(was.instruction));
    }

    fn erase_sector(&mut self, sector: Sector) -> Result<(), FlashError> {
        // SAFETY: SNB 0..=11 is a valid sector number.
        self.flash
            .cr()
            .modify(|_, w| unsafe { w.ser().set_bit().snb().bits(sector.index) });
        self.flash.cr().modify(|_, w| w.strt().set_bit());
        let polls = ERASE_POLLS_PER_KB.saturating_mul(sector.size / 1024);
        let waited = self.wait_idle(polls);
        self.flash.cr().modify(|_, w| w.ser().clear_bit());
        waited?;
        match self.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn program(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.flash.cr().modify(|_, w| w.pg().set_bit());
        let mut result = Ok(());
        for (i, word) in bytes.chunks_exact(4).enumerate() {
            let at = offset + i as u32 * 4;
            let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            let ptr = (BASE + at) as *mut u32;
            // SAFETY: `at` is word-aligned and inside the 1 MB (checked by `check_write`);
            // with PG set, a word write to the mapped flash programs it (RM0033, Programming).
            unsafe { ptr.write_volatile(value) };
            if let Err(e) = self.wait_idle(WORD_POLLS) {
                result = Err(e);
                break;
            }
            if let Some(e) = self.take_error() {
                result = Err(e);
                break;
            }
            // SAFETY: as above; a read of mapped flash.
            if unsafe { (ptr as *const u32).read_volatile() } != value {
                result = Err(FlashError::Verify { offset: at });
                break;
            }
        }
        self.flash.cr().modify(|_, w| w.pg().clear_bit());
        result
    }
}

impl ErrorType for InternalFlash {
    type Error = FlashError;
}

impl ReadNorFlash for InternalFlash {
    const READ_SIZE: usize = 1;

    /// Copies from the mapped flash.
    ///
    /// # Errors
    /// [`FlashError::OutOfBounds`] past the 1 MB.
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        u32::try_from(bytes.len())
            .ok()
            .and_then(|l| offset.checked_add(l))
            .filter(|&e| e <= CAPACITY)
            .ok_or(FlashError::OutOfBounds)?;
        // SAFETY: the source lies inside the mapped 1 MB (checked above), which is always
        // readable, and cannot overlap `bytes` (RAM). Nothing programs the flash during the
        // copy: that takes `&mut self`, which this call holds.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (BASE + offset) as *const u8,
                bytes.as_mut_ptr(),
                bytes.len(),
            );
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        CAPACITY as usize
    }
}

impl NorFlash for InternalFlash {
    const WRITE_SIZE: usize = 4;
    /// The smallest sector; the 64 KB and 128 KB sectors are erased whole (an erase range must
    /// start and end on the real sector boundaries, see [`check_erase`]).
    const ERASE_SIZE: usize = 16 * 1024;

    /// Erases the whole sectors `from..to` covers, one after the other.
    ///
    /// Cost: per sector, 250 ms / 550 ms / 1 s typical (16 / 64 / 128 KB), twice that at most;
    /// the CPU stalls on flash fetches meanwhile.
    ///
    /// # Errors
    /// The range errors of [`check_erase`] and [`check_protected`] (nothing erased);
    /// [`FlashError::Locked`];
    /// [`FlashError::Timeout`] or a `FLASH_SR` error (earlier sectors stay erased).
    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let sectors = check_erase(from, to, &self.writable)?;
        check_protected(from, to, &self.protected)?;
        if sectors.is_empty() {
            return Ok(());
        }
        let caches = self.caches_off();
        let mut result = self.unlock();
        for index in sectors {
            if result.is_err() {
                break;
            }
            let Some(sector) = Sector::by_index(index) else {
                result = Err(FlashError::OutOfBounds);
                break;
            };
            if let Err(e) = self.erase_sector(sector) {
                result = Err(e);
                break;
            }
        }
        self.lock();
        self.caches_reset(caches);
        result
    }

    /// Programs whole 32-bit words and reads each back.
    ///
    /// Cost: 16 µs typical, 100 µs at most, per word.
    ///
    /// # Errors
    /// The range errors of [`check_write`] and [`check_protected`] (nothing written);
    /// [`FlashError::Locked`];
    /// [`FlashError::Timeout`], a `FLASH_SR` error, or [`FlashError::Verify`] (earlier words
    /// stay programmed).
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        check_write(offset, bytes.len(), &self.writable)?;
        // In bounds (checked above): `offset + len` fits the 1 MB.
        check_protected(offset, offset + bytes.len() as u32, &self.protected)?;
        if bytes.is_empty() {
            return Ok(());
        }
        let caches = self.caches_off();
        let result = self.unlock().and_then(|()| self.program(offset, bytes));
        self.lock();
        self.caches_reset(caches);
        result
    }
}

/// A programmed word may be programmed again to clear more bits ("successive write operations
/// are possible without the need of an erase operation when changing bits from 1 to 0": RM0090,
/// Programming, for the F4's flash interface, which the F2's shares; not checked against
/// RM0033's wording). The F2's flash has no ECC that a second write would break. ota-core uses this for
/// one progress bit per chunk instead of one word. A write that would set a bit back to 1 leaves
/// it 0 and fails with [`FlashError::Verify`].
impl MultiwriteNorFlash for InternalFlash {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Range<u32> = 0..CAPACITY;
    /// The bootloader's range: everything but sector 0.
    const BOOT: Range<u32> = 0x4000..CAPACITY;

    /// The firmware's protected active slot: sectors 5–7.
    const ACTIVE: Range<u32> = 0x2_0000..0x8_0000;

    #[test]
    fn ranges_overlapping_the_protected_one_are_refused() {
        // Writes: one word inside, straddling either edge.
        assert_eq!(
            check_protected(0x2_0000, 0x2_0004, &ACTIVE),
            Err(FlashError::NotWritable)
        );
        assert_eq!(
            check_protected(0x1_FFFC, 0x2_0004, &ACTIVE),
            Err(FlashError::NotWritable)
        );
        assert_eq!(
            check_protected(0x7_FFFC, 0x8_0000, &ACTIVE),
            Err(FlashError::NotWritable)
        );
        assert_eq!(
            check_protected(0x7_FFFC, 0x8_0004, &ACTIVE),
            Err(FlashError::NotWritable)
        );
        // Erases: sector 5, or sectors 4–8 around the whole slot.
        assert_eq!(
            check_protected(0x2_0000, 0x4_0000, &ACTIVE),
            Err(FlashError::NotWritable)
        );
        assert_eq!(
            check_protected(0x1_0000, 0xA_0000, &ACTIVE),
            Err(FlashError::NotWritable)
        );
        // Just outside on both sides (sector 4 below, staging's sector 8 above), and empty.
        assert_eq!(check_protected(0x1_0000, 0x2_0000, &ACTIVE), Ok(()));
        assert_eq!(check_protected(0x1_FFFC, 0x2_0000, &ACTIVE), Ok(()));
        assert_eq!(check_protected(0x8_0000, 0xA_0000, &ACTIVE), Ok(()));
        assert_eq!(check_protected(0x3_0000, 0x3_0000, &ACTIVE), Ok(()));
        // Nothing protected.
        assert_eq!(check_protected(0x2_0000, 0x8_0000, &(0..0)), Ok(()));
    }

    #[test]
    fn the_sector_map_is_4x16k_1x64k_7x128k() {
        let mut next = 0;
        for i in 0..SECTOR_COUNT {
            let s = Sector::by_index(i).unwrap();
            assert_eq!(s.start, next, "sector {i}");
            assert_eq!(Sector::containing(s.start), Some(s));
            assert_eq!(Sector::containing(s.end() - 1), Some(s));
            let want = match i {
                0..=3 => 16 * 1024,
                4 => 64 * 1024,
                _ => 128 * 1024,
            };
            assert_eq!(s.size, want);
            next = s.end();
        }
        assert_eq!(next, CAPACITY);
        assert_eq!(Sector::by_index(12), None);
        assert_eq!(Sector::containing(CAPACITY), None);
        // The application slot (electron-app layout.rs) starts at sector 5.
        assert_eq!(Sector::containing(0x2_0000).map(|s| s.index), Some(5));
        assert_eq!(Sector::containing(0xE_0000).map(|s| s.index), Some(11));
    }

    #[test]
    fn erase_ranges_must_be_whole_sectors() {
        assert_eq!(check_erase(0x4000, 0x8000, &ALL), Ok(1..2));
        assert_eq!(check_erase(0x0, 0x2_0000, &ALL), Ok(0..5));
        assert_eq!(check_erase(0x2_0000, 0x8_0000, &ALL), Ok(5..8));
        assert_eq!(check_erase(0xE_0000, CAPACITY, &ALL), Ok(11..12));
        assert_eq!(check_erase(0x8000, 0x8000, &ALL), Ok(2..2));
        // ERASE_SIZE multiples that cut a 64 KB or 128 KB sector are refused.
        assert_eq!(
            check_erase(0x1_0000, 0x1_4000, &ALL),
            Err(FlashError::NotAligned)
        );
        assert_eq!(
            check_erase(0x2_4000, 0x4_0000, &ALL),
            Err(FlashError::NotAligned)
        );
        assert_eq!(
            check_erase(0x100, 0x4000, &ALL),
            Err(FlashError::NotAligned)
        );
        assert_eq!(
            check_erase(0xE_0000, CAPACITY + 0x4000, &ALL),
            Err(FlashError::OutOfBounds)
        );
        assert_eq!(
            check_erase(0x8000, 0x4000, &ALL),
            Err(FlashError::OutOfBounds)
        );
    }

    #[test]
    fn erases_outside_writable_are_refused() {
        assert_eq!(
            check_erase(0x0, 0x4000, &BOOT),
            Err(FlashError::NotWritable)
        );
        assert_eq!(
            check_erase(0x0, 0x8000, &BOOT),
            Err(FlashError::NotWritable)
        );
        assert_eq!(check_erase(0x4000, CAPACITY, &BOOT), Ok(1..12));
        let app = 0x4000..0x2_0000;
        assert_eq!(
            check_erase(0x1_0000, 0x4_0000, &app),
            Err(FlashError::NotWritable)
        );
        assert_eq!(check_erase(0x1_0000, 0x2_0000, &app), Ok(4..5));
    }

    #[test]
    fn writes_must_be_whole_words_inside_writable() {
        assert_eq!(check_write(0x4000, 4, &BOOT), Ok(()));
        assert_eq!(check_write(0x4000, 0, &BOOT), Ok(()));
        assert_eq!(check_write(0x4002, 4, &BOOT), Err(FlashError::NotAligned));
        assert_eq!(check_write(0x4000, 6, &BOOT), Err(FlashError::NotAligned));
        assert_eq!(check_write(0x3FFC, 8, &BOOT), Err(FlashError::NotWritable));
        assert_eq!(check_write(0x0, 4, &BOOT), Err(FlashError::NotWritable));
        assert_eq!(check_write(CAPACITY - 4, 4, &BOOT), Ok(()));
        assert_eq!(
            check_write(CAPACITY - 4, 8, &BOOT),
            Err(FlashError::OutOfBounds)
        );
        assert_eq!(
            check_write(u32::MAX - 1, 4, &ALL),
            Err(FlashError::OutOfBounds)
        );
    }

    #[test]
    fn status_errors_map_to_variants() {
        assert_eq!(sr_error(0), None);
        assert_eq!(sr_error(1 << 16), None); // BSY alone
        assert_eq!(sr_error(1), None); // EOP alone
        assert_eq!(sr_error(1 << 4), Some(FlashError::WriteProtected));
        assert_eq!(sr_error(1 << 5), Some(FlashError::ProgramAlignment));
        assert_eq!(sr_error(1 << 6), Some(FlashError::Parallelism));
        assert_eq!(sr_error(1 << 7), Some(FlashError::Sequence));
        assert_eq!(sr_error(1 << 1), Some(FlashError::Operation));
        assert_eq!(sr_error(1 << 7 | 1 << 4), Some(FlashError::WriteProtected));
        assert_eq!(FlashError::NotAligned.kind(), NorFlashErrorKind::NotAligned);
        assert_eq!(FlashError::NotWritable.kind(), NorFlashErrorKind::Other);
    }
}
