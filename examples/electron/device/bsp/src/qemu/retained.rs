//! [`QemuRetained`]: the stand-in for the backup SRAM (netduino2 has none).

/// Retained bytes kept in the RAM region (electron-app uses 64; the board's backup SRAM has
/// 4 KB).
pub const RETAINED_SIZE: usize = 256;

/// Retained memory under QEMU: [`RETAINED_SIZE`] bytes in the RAM region that survives the
/// sleep stand-in's reset, zeroed at QEMU's power-on (see the module docs of [`super`]).
/// The same `read`/`write` shape as `backup::BackupSram`.
pub struct QemuRetained {
    _private: (),
}

impl QemuRetained {
    /// The retained bytes (validating the region, as [`super::QemuFlash::take`] does). Take
    /// it once per boot.
    pub fn take() -> Self {
        #[cfg(target_os = "none")]
        // SAFETY: validates the region; the reference ends here.
        unsafe {
            super::region::region();
        }
        Self { _private: () }
    }

    /// Copies retained bytes from `offset` into `out`; bytes past [`RETAINED_SIZE`] read 0.
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        out.fill(0);
        #[cfg(target_os = "none")]
        {
            // SAFETY: the reference lives for this call only (single core, no handler uses
            // the region).
            let r = unsafe { super::region::region() };
            let from = offset.min(RETAINED_SIZE);
            let n = out.len().min(RETAINED_SIZE - from);
            out[..n].copy_from_slice(&r.retained[from..from + n]);
        }
        #[cfg(not(target_os = "none"))]
        let _ = offset;
    }

    /// Writes `data` at `offset`; bytes past [`RETAINED_SIZE`] are dropped. Done when it
    /// returns (plain RAM).
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        #[cfg(target_os = "none")]
        {
            // SAFETY: as in `read`.
            let r = unsafe { super::region::region() };
            let from = offset.min(RETAINED_SIZE);
            let n = data.len().min(RETAINED_SIZE - from);
            r.retained[from..from + n].copy_from_slice(&data[..n]);
        }
        #[cfg(not(target_os = "none"))]
        let _ = (offset, data);
    }
}
