//! The RAM region both binaries leave alone: the flash overlay and the retained bytes.

use super::flash::{OVERLAY_PAGES, OVERLAY_PAGE_SIZE};
use super::retained::RETAINED_SIZE;

/// First address of the region (the top 64 KB of the STM32F205's 128 KB SRAM).
pub const REGION_START: usize = 0x2001_0000;
/// Its length; `memory-qemu.x` ends RAM at `REGION_START`.
pub const REGION_LEN: usize = 0x1_0000;

/// "QOVL" + layout version 1: a different value means the region was never written since
/// QEMU started (or by another layout), and is reset.
const MAGIC: u32 = 0x4C56_4F51 ^ 1;

/// The region's layout (`repr(C)`, fixed: the bootloader and the firmware must agree).
#[repr(C)]
pub(crate) struct Region {
    pub(crate) magic: u32,
    /// Bit `s`: physical sector `s` was erased since QEMU started (reads 0xFF where no page
    /// of the overlay covers it).
    pub(crate) erased: u32,
    /// Pages of the pool in use (`page_addr[..used]`).
    pub(crate) used: u32,
    pub(crate) retained: [u8; RETAINED_SIZE],
    /// Flash offset of each page in use (a multiple of [`OVERLAY_PAGE_SIZE`]).
    pub(crate) page_addr: [u32; OVERLAY_PAGES],
    pub(crate) pages: [[u8; OVERLAY_PAGE_SIZE]; OVERLAY_PAGES],
}

const _: () = assert!(core::mem::size_of::<Region>() <= REGION_LEN);

impl Region {
    /// Checks the header; resets the region (no overlay, retained bytes zero: a power-on)
    /// when the magic or the page table is not valid.
    pub(crate) fn validate_or_reset(&mut self) {
        if self.magic == MAGIC && self.table_ok() {
            return;
        }
        self.magic = MAGIC;
        self.erased = 0;
        self.used = 0;
        self.retained = [0; RETAINED_SIZE];
        self.page_addr = [0; OVERLAY_PAGES];
    }

    fn table_ok(&self) -> bool {
        let Some(used) = self.page_addr.get(..self.used as usize) else {
            return false;
        };
        used.iter().enumerate().all(|(i, &a)| {
            (a as usize).is_multiple_of(OVERLAY_PAGE_SIZE)
                && a < super::flash::FLASH_SIZE
                && !used[..i].contains(&a)
        })
    }
}

/// The region at its fixed address, checked (reset if invalid).
///
/// # Safety
/// The caller must not hold another reference to the region while the returned one lives;
/// the stand-ins take it for the duration of one call each (single core, never from an
/// interrupt handler).
#[cfg(target_os = "none")]
pub(crate) unsafe fn region() -> &'static mut Region {
    // SAFETY: REGION_START..+REGION_LEN is SRAM that memory-qemu.x leaves out of every
    // section, so nothing else refers to it; the size assertion above keeps `Region` inside;
    // every bit pattern is a valid `Region` (integers and byte arrays only). Exclusivity is the
    // caller's contract.
    let r = unsafe { &mut *(REGION_START as *mut Region) };
    r.validate_or_reset();
    r
}
