//! [`QemuFlash`]: the stand-in for the internal flash's programming interface.
//!
//! QEMU's `netduino2` maps the 1 MB flash read-only (whatever the `-device loader` image put
//! there) and has no FLASH register block. The overlay keeps every programmed or erased byte
//! in the RAM region ([`super::REGION_START`]): a pool of [`OVERLAY_PAGES`] pages of
//! [`OVERLAY_PAGE_SIZE`] bytes, each a copy of one flash page taken when it is first
//! programmed, and one "erased" bit per physical sector. A read returns, per page: the pool's
//! copy if there is one; else 0xFF if its sector was erased; else the loaded flash.
//!
//! The rules are the STM32F205's, as `flash::InternalFlash` applies them on the board, so
//! ota-core and electron-app meet the same refusals and results: the 16/64/128 KB sector map
//! (erase whole physical sectors only), 4-byte program words, programming only clears bits
//! (a programmed word reprogrammed holds the AND of both: `MultiwriteNorFlash`, as
//! `InternalFlash`), and sector 0 (the bootloader) never written. What differs: an erase takes no time (the
//! board's 128 KB erase takes 1–2 s) and the pool is bounded (63 KB of programmed pages;
//! [`QemuFlashError::PoolFull`] past it: enough for the QEMU run's state log, counter log,
//! download progress and an image of a few tens of KB, not for a full 384 KB image).

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

use super::region::Region;

/// Bytes per overlay page.
pub const OVERLAY_PAGE_SIZE: usize = 512;
/// Pages in the pool (what fits the 64 KB region beside its header and the retained bytes).
pub const OVERLAY_PAGES: usize = 126;

/// The flash size (offsets run from 0, as `embedded-storage` and ota-core use them).
pub(crate) const FLASH_SIZE: u32 = 0x10_0000;
#[cfg(target_os = "none")]
const FLASH_BASE: usize = 0x0800_0000;
/// The first offset the overlay programs or erases: sector 0 (the bootloader) is protected,
/// as `InternalFlash`'s writable range leaves it out.
const WRITABLE_START: u32 = 0x4000;
/// The STM32F205RG sector map (RM0033 §2.3.3): 4 × 16 KB, 1 × 64 KB, 7 × 128 KB.
const SECTOR_SIZES: [u32; 12] = [
    0x4000, 0x4000, 0x4000, 0x4000, 0x1_0000, 0x2_0000, 0x2_0000, 0x2_0000, 0x2_0000, 0x2_0000,
    0x2_0000, 0x2_0000,
];

/// Why an overlay operation was refused (nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QemuFlashError {
    /// Past the end of the 1 MB.
    OutOfBounds,
    /// A write not on 4-byte words, or an erase not on physical sector boundaries.
    NotAligned,
    /// Sector 0 (the bootloader) is never written.
    Protected,
    /// The overlay's page pool is full: the write was not done.
    PoolFull,
}

impl core::fmt::Display for QemuFlashError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfBounds => f.write_str("out of the flash"),
            Self::NotAligned => f.write_str("not word- or sector-aligned"),
            Self::Protected => f.write_str("sector 0 is protected"),
            Self::PoolFull => f.write_str("the qemu flash overlay's page pool is full"),
        }
    }
}

impl core::error::Error for QemuFlashError {}

impl NorFlashError for QemuFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// Index of the physical sector holding `offset` (< FLASH_SIZE), and whether `offset` is
/// its first byte.
fn sector_of(offset: u32) -> (usize, bool) {
    let mut start = 0;
    for (i, &size) in SECTOR_SIZES.iter().enumerate() {
        if offset < start + size {
            return (i, offset == start);
        }
        start += size;
    }
    (SECTOR_SIZES.len(), offset == start)
}

fn check_range(offset: u32, len: usize) -> Result<u32, QemuFlashError> {
    let len = u32::try_from(len).map_err(|_| QemuFlashError::OutOfBounds)?;
    match offset.checked_add(len) {
        Some(end) if end <= FLASH_SIZE => Ok(end),
        _ => Err(QemuFlashError::OutOfBounds),
    }
}

impl Region {
    fn find(&self, page: u32) -> Option<usize> {
        self.page_addr[..self.used as usize]
            .iter()
            .position(|&a| a == page)
    }

    /// Reads `buf.len()` bytes at `offset`, one page at a time.
    pub(crate) fn read(
        &self,
        base: &[u8],
        offset: u32,
        buf: &mut [u8],
    ) -> Result<(), QemuFlashError> {
        check_range(offset, buf.len())?;
        let mut at = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let page = at - at % OVERLAY_PAGE_SIZE as u32;
            let in_page = (at - page) as usize;
            let n = rest.len().min(OVERLAY_PAGE_SIZE - in_page);
            let (head, tail) = rest.split_at_mut(n);
            if let Some(i) = self.find(page) {
                head.copy_from_slice(&self.pages[i][in_page..in_page + n]);
            } else if self.erased & (1 << sector_of(at).0) != 0 {
                head.fill(0xFF);
            } else {
                match base.get(at as usize..at as usize + n) {
                    Some(b) => head.copy_from_slice(b),
                    None => head.fill(0xFF),
                }
            }
            at += n as u32;
            rest = tail;
        }
        Ok(())
    }

    /// Programs `data` at `offset` (NOR: each byte becomes the AND of old and new): checks
    /// everything first (bounds, words, protection, pool room), then copies the pages it
    /// needs into the pool and programs.
    pub(crate) fn write(
        &mut self,
        base: &[u8],
        offset: u32,
        data: &[u8],
    ) -> Result<(), QemuFlashError> {
        let end = check_range(offset, data.len())?;
        if !offset.is_multiple_of(4) || !data.len().is_multiple_of(4) {
            return Err(QemuFlashError::NotAligned);
        }
        if data.is_empty() {
            return Ok(());
        }
        if offset < WRITABLE_START {
            return Err(QemuFlashError::Protected);
        }
        let ps = OVERLAY_PAGE_SIZE as u32;
        let first = offset - offset % ps;
        let missing = (first..end)
            .step_by(OVERLAY_PAGE_SIZE)
            .filter(|&p| self.find(p).is_none())
            .count();
        if self.used as usize + missing > OVERLAY_PAGES {
            return Err(QemuFlashError::PoolFull);
        }
        for page in (first..end).step_by(OVERLAY_PAGE_SIZE) {
            let i = match self.find(page) {
                Some(i) => i,
                None => {
                    let i = self.used as usize;
                    let mut copy = [0u8; OVERLAY_PAGE_SIZE];
                    self.read(base, page, &mut copy)?;
                    self.pages[i] = copy;
                    self.page_addr[i] = page;
                    self.used += 1;
                    i
                }
            };
            let lo = offset.max(page);
            let hi = end.min(page + ps);
            let src = &data[(lo - offset) as usize..(hi - offset) as usize];
            let dst = &mut self.pages[i][(lo - page) as usize..(hi - page) as usize];
            for (d, &n) in dst.iter_mut().zip(src) {
                *d &= n;
            }
        }
        Ok(())
    }

    /// Erases the physical sectors `from..to` (both on sector boundaries): marks them erased
    /// and gives their pages back to the pool.
    pub(crate) fn erase(&mut self, from: u32, to: u32) -> Result<(), QemuFlashError> {
        if from > FLASH_SIZE || to > FLASH_SIZE {
            return Err(QemuFlashError::OutOfBounds);
        }
        let (first, f_start) = sector_of(from);
        let (last, t_start) = sector_of(to);
        if from >= to || !f_start || !t_start {
            return Err(QemuFlashError::NotAligned);
        }
        if from < WRITABLE_START {
            return Err(QemuFlashError::Protected);
        }
        for s in first..last {
            self.erased |= 1 << s;
        }
        let mut i = 0;
        while i < self.used as usize {
            if (from..to).contains(&self.page_addr[i]) {
                let last = self.used as usize - 1;
                self.page_addr[i] = self.page_addr[last];
                // Not `pages[i] = pages[last]`: that links compiler_builtins' memmove (1.6 KB),
                // which pushes the QEMU bootloader past its 16 KB sector.
                if i != last {
                    let (lo, hi) = self.pages.split_at_mut(last);
                    lo[i].copy_from_slice(&hi[0]);
                }
                self.used -= 1;
            } else {
                i += 1;
            }
        }
        Ok(())
    }
}

/// The internal flash under QEMU: `ReadNorFlash + NorFlash` with `InternalFlash`'s offsets,
/// sizes and refusals, over the RAM overlay (see the module docs).
///
/// `READ_SIZE` 1, `WRITE_SIZE` 4, `ERASE_SIZE` 16 384 (an erase range must start and end on
/// physical sector boundaries of the 16/64/128 KB map). Writable: everything but sector 0.
pub struct QemuFlash {
    _private: (),
}

impl QemuFlash {
    /// The flash. The overlay is kept from before the last reset if it is valid (a "deep
    /// sleep"), otherwise started empty (QEMU's power-on): see the module docs. Take it once
    /// per boot; a second handle would see the same overlay.
    pub fn take() -> Self {
        #[cfg(target_os = "none")]
        // SAFETY: validates the region; the reference ends here.
        unsafe {
            super::region::region();
        }
        Self { _private: () }
    }

    /// Pages of the pool in use (of [`OVERLAY_PAGES`]).
    pub fn pages_used(&self) -> usize {
        self.with(|r, _| r.used as usize).unwrap_or(0)
    }

    /// Runs `f` on the region and the loaded flash (`None` off the target: there is no
    /// netduino2 to run on).
    #[cfg(target_os = "none")]
    fn with<T>(&self, f: impl FnOnce(&mut Region, &[u8]) -> T) -> Option<T> {
        // SAFETY: the flash is mapped read-only at FLASH_BASE for FLASH_SIZE bytes on the
        // netduino2 (QEMU's stm32f205 SoC) and the STM32F205RG; the region reference lives for
        // this call only, and `&self` (with `take`'s once-per-boot contract) keeps calls
        // sequential.
        let (r, base) = unsafe {
            (
                super::region::region(),
                core::slice::from_raw_parts(FLASH_BASE as *const u8, FLASH_SIZE as usize),
            )
        };
        Some(f(r, base))
    }

    #[cfg(not(target_os = "none"))]
    fn with<T>(&self, _f: impl FnOnce(&mut Region, &[u8]) -> T) -> Option<T> {
        None
    }
}

impl ErrorType for QemuFlash {
    type Error = QemuFlashError;
}

impl ReadNorFlash for QemuFlash {
    const READ_SIZE: usize = 1;

    /// Cost: a page-table scan (≤ 126 entries) and a copy per 512-byte page touched.
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), QemuFlashError> {
        self.with(|r, base| r.read(base, offset, bytes))
            .unwrap_or(Err(QemuFlashError::OutOfBounds))
    }

    fn capacity(&self) -> usize {
        FLASH_SIZE as usize
    }
}

impl NorFlash for QemuFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 0x4000;

    /// Bits only clear (a reprogrammed word holds the AND of both values).
    ///
    /// # Errors
    /// [`QemuFlashError::NotAligned`], [`QemuFlashError::OutOfBounds`],
    /// [`QemuFlashError::Protected`] (sector 0), [`QemuFlashError::PoolFull`]; nothing is
    /// written then.
    ///
    /// Cost: a read of every target byte, and a 512-byte copy per page first programmed.
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), QemuFlashError> {
        self.with(|r, base| r.write(base, offset, bytes))
            .unwrap_or(Err(QemuFlashError::OutOfBounds))
    }

    /// # Errors
    /// [`QemuFlashError::NotAligned`] (not whole physical sectors),
    /// [`QemuFlashError::OutOfBounds`], [`QemuFlashError::Protected`].
    ///
    /// Cost: one pass over the page table; no time (the board's erase takes seconds).
    fn erase(&mut self, from: u32, to: u32) -> Result<(), QemuFlashError> {
        self.with(|r, _| r.erase(from, to))
            .unwrap_or(Err(QemuFlashError::OutOfBounds))
    }
}

/// As on the F2 (and `InternalFlash`): a programmed word may be programmed again, clearing
/// more bits.
impl MultiwriteNorFlash for QemuFlash {}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn region() -> Box<Region> {
        // SAFETY: all-zero is a valid `Region` (integers and byte arrays).
        let mut r: Box<Region> = unsafe { Box::new_zeroed().assume_init() };
        r.validate_or_reset();
        r
    }

    fn base() -> Vec<u8> {
        // A loaded image: sector 3 holds a pattern, the rest is 0xFF as the script fills it.
        let mut b = vec![0xFF; FLASH_SIZE as usize];
        for (i, x) in b[0xC000..0xC100].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    fn read(r: &Region, base: &[u8], at: u32, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        r.read(base, at, &mut v).unwrap();
        v
    }

    #[test]
    fn reads_through_to_the_loaded_flash_until_written() {
        let (mut r, b) = (region(), base());
        assert_eq!(read(&r, &b, 0xC000, 4), [0, 1, 2, 3]);
        // Programming an erased word in sector 3, beside the loaded bytes.
        r.write(&b, 0xC100, &[1, 2, 3, 4]).unwrap();
        assert_eq!(read(&r, &b, 0xC0FE, 6), [0xFE, 0xFF, 1, 2, 3, 4]);
        assert_eq!(r.used, 1);
    }

    #[test]
    fn nor_rules_are_the_f2s() {
        let (mut r, b) = (region(), base());
        // Programming clears bits only: over the loaded 0x00 0x01 0x02 0x03.
        r.write(&b, 0xC000, &[0xFE, 0xFF, 0xF0, 0x0F]).unwrap();
        assert_eq!(read(&r, &b, 0xC000, 4), [0x00, 0x01, 0x00, 0x03]);
        assert_eq!(
            r.write(&b, 0xC102, &[0; 4]),
            Err(QemuFlashError::NotAligned)
        );
        assert_eq!(r.write(&b, 0x100, &[0; 4]), Err(QemuFlashError::Protected));
        assert_eq!(
            r.write(&b, FLASH_SIZE - 4, &[0; 8]),
            Err(QemuFlashError::OutOfBounds)
        );
        r.write(&b, 0x2_0000, &[0x12; 4]).unwrap();
        // Reprogrammed: the AND (a 0 bit needs an erase to become 1 again).
        r.write(&b, 0x2_0000, &[0x06; 4]).unwrap();
        assert_eq!(read(&r, &b, 0x2_0000, 4), [0x02; 4]);
        // Erases take whole physical sectors only: sector 4 is 64 KB, sector 5 128 KB.
        assert_eq!(r.erase(0x1_0000, 0x1_4000), Err(QemuFlashError::NotAligned));
        assert_eq!(r.erase(0x2_0000, 0x3_0000), Err(QemuFlashError::NotAligned));
        assert_eq!(r.erase(0x0, 0x4000), Err(QemuFlashError::Protected));
        assert_eq!(r.erase(0x4000, 0x4000), Err(QemuFlashError::NotAligned));
        r.erase(0x2_0000, 0x4_0000).unwrap();
        assert_eq!(
            r.used, 1,
            "the sector's pages went back to the pool (sector 3's stays)"
        );
        r.write(&b, 0x2_0000, &[0x12; 4]).unwrap();
        assert_eq!(read(&r, &b, 0x2_0000, 5), [0x12, 0x12, 0x12, 0x12, 0xFF]);
    }

    #[test]
    fn an_erased_sector_reads_ff_over_the_loaded_image() {
        let (mut r, b) = (region(), base());
        r.erase(0xC000, 0x1_0000).unwrap();
        assert!(read(&r, &b, 0xC000, 0x4000).iter().all(|&x| x == 0xFF));
        // Neighbours untouched.
        let mut b2 = b.clone();
        b2[0x8000] = 0;
        assert_eq!(read(&r, &b2, 0x8000, 1), [0]);
    }

    #[test]
    fn writes_across_pages_and_a_full_pool_refuses_without_writing() {
        let (mut r, b) = (region(), base());
        let data: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        r.write(&b, 0x8_01FC, &data).unwrap();
        assert_eq!(r.used, 3);
        assert_eq!(read(&r, &b, 0x8_01FC, 1024), data);
        // Fill the pool, one word per page.
        let mut at = 0x8_1000;
        while (r.used as usize) < OVERLAY_PAGES {
            r.write(&b, at, &[0; 4]).unwrap();
            at += OVERLAY_PAGE_SIZE as u32;
        }
        assert_eq!(r.write(&b, at, &[0; 4]), Err(QemuFlashError::PoolFull));
        assert_eq!(read(&r, &b, at, 4), [0xFF; 4]);
        // A page already in the pool still takes writes.
        r.write(&b, 0x8_1004, &[7; 4]).unwrap();
    }

    #[test]
    fn a_damaged_table_resets_the_region() {
        let mut r = region();
        r.used = 2;
        r.page_addr[0] = 0x200;
        r.page_addr[1] = 0x200;
        r.retained[0] = 9;
        r.validate_or_reset();
        assert_eq!((r.used, r.retained[0]), (0, 0));
        r.used = OVERLAY_PAGES as u32 + 1;
        r.validate_or_reset();
        assert_eq!(r.used, 0);
    }
}
