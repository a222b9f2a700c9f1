//! A RAM-backed `NorFlash` with the Electron's geometry (the STM32F205's 1 MiB of 16/64/128 KiB
//! sectors, offsets from 0 as `electron-bsp`'s `InternalFlash`), for QEMU, whose flash is
//! read-only. QEMU's netduino2 has 128 KiB of SRAM, so only the pages written since their
//! sector's last erase are backed: 1 KiB pages from a fixed pool; an unbacked page reads
//! erased (0xFF).
//!
//! Strict as NOR flash is: writes are 4-byte aligned and may only clear bits (a 0 → 1
//! change is refused, as programming an unerased STM32F2 word is an error), erases take
//! whole physical sectors. The cost it adds to a measured write is a page lookup and a copy:
//! what the STM32's flash controller costs (wait states, the program time) is not in it.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use ota_core::SectorMap;

const PAGE: usize = 1024;
const SIZE: usize = 1024 * 1024;
/// `table` entry of an unbacked page (an entry `k > 0` is pool page `k - 1`): all zero, so a
/// `static` flash is in .bss, not copied from flash at boot.
const NO_PAGE: u8 = 0;

/// The flash, with `N` backed pages.
pub struct RamFlash<const N: usize> {
    /// Pool index + 1 backing each 1 KiB page of the address space, or `NO_PAGE`.
    table: [u8; SIZE / PAGE],
    pool: [[u8; PAGE]; N],
    used: [bool; N],
    map: SectorMap,
}

/// What the flash refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// Misaligned or out of bounds.
    Bounds,
    /// A write that would set a cleared bit (programming an unerased word).
    NotErased,
    /// No free page left in the pool.
    Full,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Bounds => NorFlashErrorKind::OutOfBounds,
            Self::NotErased | Self::Full => NorFlashErrorKind::Other,
        }
    }
}

impl<const N: usize> RamFlash<N> {
    /// A fully erased flash with the STM32F205's sector map. At most 255 pages.
    pub const fn new() -> Self {
        assert!(N < 255);
        Self {
            table: [NO_PAGE; SIZE / PAGE],
            pool: [[0; PAGE]; N],
            used: [false; N],
            map: SectorMap::STM32F2_1M,
        }
    }

    /// Pages in use (to size the pool).
    pub fn pages_used(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    fn page_for_write(&mut self, page: usize) -> Result<usize, FlashError> {
        match self.table[page] {
            NO_PAGE => {
                let free = self.used.iter().position(|u| !*u).ok_or(FlashError::Full)?;
                self.used[free] = true;
                self.pool[free] = [0xFF; PAGE];
                self.table[page] = free as u8 + 1;
                Ok(free)
            }
            p => Ok(usize::from(p) - 1),
        }
    }
}

impl<const N: usize> ErrorType for RamFlash<N> {
    type Error = FlashError;
}

impl<const N: usize> ReadNorFlash for RamFlash<N> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let start = offset as usize;
        if start.checked_add(bytes.len()).is_none_or(|e| e > SIZE) {
            return Err(FlashError::Bounds);
        }
        let mut at = start;
        for part in bytes.chunks_mut(PAGE) {
            // A part may straddle two pages: copy page by page.
            let mut done = 0;
            while done < part.len() {
                let (page, off) = ((at + done) / PAGE, (at + done) % PAGE);
                let n = (PAGE - off).min(part.len() - done);
                match self.table[page] {
                    NO_PAGE => part[done..done + n].fill(0xFF),
                    p => part[done..done + n]
                        .copy_from_slice(&self.pool[usize::from(p) - 1][off..off + n]),
                }
                done += n;
            }
            at += part.len();
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        SIZE
    }
}

impl<const N: usize> NorFlash for RamFlash<N> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 16 * 1024;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        // Whole physical sectors only.
        if to as usize > SIZE
            || from > to
            || !self.map.is_boundary(from)
            || !self.map.is_boundary(to)
        {
            return Err(FlashError::Bounds);
        }
        for page in from as usize / PAGE..to as usize / PAGE {
            if let p @ 1.. = self.table[page] {
                self.used[usize::from(p) - 1] = false;
                self.table[page] = NO_PAGE;
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let start = offset as usize;
        if !start.is_multiple_of(4)
            || !bytes.len().is_multiple_of(4)
            || start.checked_add(bytes.len()).is_none_or(|e| e > SIZE)
        {
            return Err(FlashError::Bounds);
        }
        let mut done = 0;
        while done < bytes.len() {
            let (page, off) = ((start + done) / PAGE, (start + done) % PAGE);
            let n = (PAGE - off).min(bytes.len() - done);
            let p = self.page_for_write(page)?;
            let cell = &mut self.pool[p][off..off + n];
            let src = &bytes[done..done + n];
            // NOR programming only clears bits.
            if cell.iter().zip(src).any(|(c, s)| s & !c != 0) {
                return Err(FlashError::NotErased);
            }
            cell.copy_from_slice(src);
            done += n;
        }
        Ok(())
    }
}
