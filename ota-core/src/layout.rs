//! Where things live in flash: the physical sector map and the five regions ota-core uses.
//!
//! `embedded-storage` describes a flash with one `ERASE_SIZE`, but parts such as the STM32F2
//! have sectors of 16, 64 and 128 KiB. ota-core therefore takes the real sector map from the
//! board and only ever erases whole physical sectors, one per call.

use core::fmt;
use core::ops::Range;

/// A run of `count` consecutive physical sectors of `size` bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SectorRun {
    /// Number of sectors.
    pub count: u32,
    /// Size of each, in bytes.
    pub size: u32,
}

/// The physical sectors of a flash device, as offsets from the start of the device (the
/// addresses `embedded-storage` uses), described as runs of equal sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SectorMap {
    runs: &'static [SectorRun],
}

impl SectorMap {
    /// A map made of `runs`, starting at offset 0.
    pub const fn new(runs: &'static [SectorRun]) -> Self {
        Self { runs }
    }

    /// The STM32F205RG (Particle Electron) internal flash: 4×16 KiB, 1×64 KiB, 7×128 KiB.
    pub const STM32F2_1M: SectorMap = SectorMap::new(&[
        SectorRun {
            count: 4,
            size: 16 * 1024,
        },
        SectorRun {
            count: 1,
            size: 64 * 1024,
        },
        SectorRun {
            count: 7,
            size: 128 * 1024,
        },
    ]);

    /// Total size in bytes.
    pub fn capacity(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| r.count as u64 * r.size as u64)
            .sum()
    }

    /// The sector containing `addr`, `None` past the end. O(number of runs).
    pub fn sector_at(&self, addr: u32) -> Option<Range<u32>> {
        let mut base: u64 = 0;
        for r in self.runs {
            let len = r.count as u64 * r.size as u64;
            if (addr as u64) < base + len {
                // `addr - base` fits 32 bits (addr does, and base <= addr), so the division is a
                // 32-bit one: no 64-bit division routine is linked (about 900 B on a Cortex-M3,
                // which the Electron's 16 KB bootloader cannot spare).
                let off = (addr as u64 - base) as u32;
                let start = base + u64::from(off - off % r.size);
                let end = start + r.size as u64;
                return Some(u32::try_from(start).ok()?..u32::try_from(end).ok()?);
            }
            base += len;
        }
        None
    }

    /// True if `addr` starts a sector or is the end of the device.
    pub fn is_boundary(&self, addr: u32) -> bool {
        addr as u64 == self.capacity() || self.sector_at(addr).is_some_and(|s| s.start == addr)
    }

    /// The sectors covering `region`, in address order.
    pub fn sectors(&self, region: Region) -> Sectors {
        Sectors {
            map: *self,
            next: region.start,
            end: region.end,
        }
    }
}

/// Iterator over the physical sectors of a region.
#[derive(Debug, Clone)]
pub struct Sectors {
    map: SectorMap,
    next: u32,
    end: u32,
}

impl Iterator for Sectors {
    type Item = Range<u32>;
    fn next(&mut self) -> Option<Range<u32>> {
        if self.next >= self.end {
            return None;
        }
        let s = self.map.sector_at(self.next)?;
        self.next = s.end;
        Some(s)
    }
}

/// A contiguous range of flash, `start..end`, on sector boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Region {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Region {
    /// The region `start..end`.
    pub const fn new(start: u32, end: u32) -> Self {
        Self { start, end }
    }

    /// Length in bytes.
    pub const fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    /// True if the region holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn overlaps(&self, other: &Region) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The five regions of ota-core on one flash device.
///
/// * `state` — the state log (at least two sectors; written on every state change).
/// * `progress` — the copy of the manifest and the per-chunk and per-sector markers of the
///   download in progress (erased in explicit erase steps once a download is over).
/// * `active` — the image that runs.
/// * `staging` — where a new image is downloaded; after an install it holds the previous image
///   until the new one is confirmed.
/// * `scratch` — temporary space for the install swap and for repairing a staging sector after
///   a torn write; at least as large as the largest swap unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    /// Physical sectors of the device.
    pub map: SectorMap,
    /// State log.
    pub state: Region,
    /// Download progress and manifest copy.
    pub progress: Region,
    /// Running image.
    pub active: Region,
    /// Download target and previous image.
    pub staging: Region,
    /// Swap and repair space.
    pub scratch: Region,
}

/// What identifies a layout and the flash's write size in every state record (see
/// [`Layout::id`]), so that a state written under another layout is refused rather than
/// misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LayoutId(pub [u8; 8]);

impl LayoutId {
    /// The value of a record written before records carried a layout id (the bytes were
    /// reserved, written 0): not checked.
    pub const UNRECORDED: LayoutId = LayoutId([0; 8]);
}

/// Why a [`Layout`] cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LayoutError {
    /// A region is empty, past the device, or does not start and end on sector boundaries.
    NotOnSectorBoundary,
    /// Two regions overlap.
    Overlap,
    /// The state region has fewer than two sectors, or a sector too small for one record.
    StateTooSmall,
    /// Scratch is smaller than the largest swap unit or staging sector.
    ScratchTooSmall,
    /// The flash's write size is not a power of two of at most 32 bytes.
    UnsupportedWriteSize,
    /// The flash's read size (`ReadNorFlash::READ_SIZE`) is not 1. ota-core reads at byte
    /// offsets (a 16-byte chunk digest, a chunk's unaligned tail); wrap a driver that reads
    /// in larger units in one that takes any offset and length.
    UnsupportedReadSize,
    /// The progress region cannot hold the manifest and markers of a full staging slot at the
    /// smallest chunk size.
    ProgressTooSmall,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOnSectorBoundary => "a region is not on sector boundaries",
            Self::Overlap => "two regions overlap",
            Self::StateTooSmall => "the state region needs at least two sectors",
            Self::ScratchTooSmall => "scratch is smaller than the largest swap unit",
            Self::UnsupportedWriteSize => "flash write size must be a power of two up to 32",
            Self::UnsupportedReadSize => "flash read size must be 1",
            Self::ProgressTooSmall => "the progress region is too small for the staging slot",
        })
    }
}

impl core::error::Error for LayoutError {}

impl Layout {
    /// Bytes an image may have: the largest offset, within both the active and the staging
    /// slot, that ends a sector in both (so a swap never erases past what it copies).
    /// O(number of sectors²) in the worst case; call once and keep the value.
    pub fn capacity(&self) -> u32 {
        let limit = self.active.len().min(self.staging.len());
        let mut rel = 0;
        while let Some(end) = self.common_end(rel) {
            if end > limit {
                break;
            }
            rel = end;
        }
        rel
    }

    /// End (relative to the slot starts) of the swap unit that starts at `rel`: the smallest
    /// offset past `rel` that is a sector boundary in both the active and the staging slot.
    /// `None` at or past [`capacity`](Self::capacity).
    pub fn unit_end(&self, rel: u32) -> Option<u32> {
        if rel >= self.capacity() {
            return None;
        }
        self.common_end(rel)
    }

    pub(crate) fn common_end(&self, rel: u32) -> Option<u32> {
        let (mut ea, mut es) = (rel, rel);
        loop {
            if ea <= es {
                let s = self.map.sector_at(self.active.start.checked_add(ea)?)?;
                if s.end > self.active.end {
                    return None;
                }
                ea = s.end - self.active.start;
            } else {
                let s = self.map.sector_at(self.staging.start.checked_add(es)?)?;
                if s.end > self.staging.end {
                    return None;
                }
                es = s.end - self.staging.start;
            }
            if ea == es {
                return Some(ea);
            }
        }
    }

    /// The id state records carry (`docs/image-format.md`, section 4): the first 8 bytes of
    /// the SHA-256 of, all as little-endian `u32`: `write_size`; the start and end of the
    /// state, progress, active, staging and scratch regions, in that order; then the sector
    /// map as (count, size) pairs, with runs of no sector left out and neighbouring runs of
    /// equal size merged, so that one geometry has one id.
    ///
    /// Anything that would make a state mean something else changes it: a region moved or
    /// resized, another sector map, another write size (the progress markers depend on it).
    ///
    /// Cost: one SHA-256 over 44 + 8 × (number of runs) bytes.
    pub fn id(&self, write_size: usize) -> LayoutId {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(u32::try_from(write_size).unwrap_or(u32::MAX).to_le_bytes());
        for r in [
            self.state,
            self.progress,
            self.active,
            self.staging,
            self.scratch,
        ] {
            h.update(r.start.to_le_bytes());
            h.update(r.end.to_le_bytes());
        }
        let mut pending: Option<SectorRun> = None;
        for r in self.map.runs.iter().filter(|r| r.count > 0) {
            match pending.as_mut() {
                Some(p) if p.size == r.size => p.count = p.count.saturating_add(r.count),
                _ => {
                    if let Some(p) = pending.replace(*r) {
                        h.update(p.count.to_le_bytes());
                        h.update(p.size.to_le_bytes());
                    }
                }
            }
        }
        if let Some(p) = pending {
            h.update(p.count.to_le_bytes());
            h.update(p.size.to_le_bytes());
        }
        let d: [u8; 32] = h.finalize().into();
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        LayoutId(id)
    }

    /// Checks every rule above for a flash with write size `write_size` and read size
    /// `read_size` (`NorFlash::WRITE_SIZE`, `ReadNorFlash::READ_SIZE`; the updater and the
    /// bootloader check this when they open).
    ///
    /// Cost: O(number of sectors).
    pub fn validate(&self, write_size: usize, read_size: usize) -> Result<(), LayoutError> {
        if !write_size.is_power_of_two() || write_size > 32 {
            return Err(LayoutError::UnsupportedWriteSize);
        }
        if read_size != 1 {
            return Err(LayoutError::UnsupportedReadSize);
        }
        let regions = [
            self.state,
            self.progress,
            self.active,
            self.staging,
            self.scratch,
        ];
        for r in &regions {
            if r.is_empty()
                || r.end as u64 > self.map.capacity()
                || !self.map.is_boundary(r.start)
                || !self.map.is_boundary(r.end)
            {
                return Err(LayoutError::NotOnSectorBoundary);
            }
        }
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                if a.overlaps(b) {
                    return Err(LayoutError::Overlap);
                }
            }
        }
        let mut n = 0;
        for s in self.map.sectors(self.state) {
            if (s.end - s.start) < crate::state::RECORD_LEN as u32 * 2 {
                return Err(LayoutError::StateTooSmall);
            }
            n += 1;
        }
        if n < 2 {
            return Err(LayoutError::StateTooSmall);
        }
        // Every swap unit must fit in scratch, and so must every staging sector (repair).
        let mut rel = 0;
        while let Some(end) = self.unit_end(rel) {
            if end - rel > self.scratch.len() {
                return Err(LayoutError::ScratchTooSmall);
            }
            rel = end;
        }
        if self
            .map
            .sectors(self.staging)
            .any(|s| s.end - s.start > self.scratch.len())
        {
            return Err(LayoutError::ScratchTooSmall);
        }
        let sectors = self.map.sectors(self.staging).count();
        let chunks =
            crate::manifest::chunk_count(self.staging.len(), crate::manifest::MIN_CHUNK_SIZE);
        let need = crate::progress::ProgressLayout::new(
            self.progress.start,
            crate::manifest::encoded_len(chunks) as u32,
            sectors as u32,
            chunks,
            write_size as u32,
            false,
        )
        .end();
        if need > self.progress.end as u64 {
            return Err(LayoutError::ProgressTooSmall);
        }
        Ok(())
    }

    /// The layout the Electron example uses (see `ARCHITECTURE.md`): sector 0 bootloader,
    /// sectors 1–2 state, sector 3 identity (not ours), sector 4 progress, sectors 5–7 active,
    /// 8–10 staging, 11 scratch.
    pub const ELECTRON: Layout = Layout {
        map: SectorMap::STM32F2_1M,
        state: Region::new(0x0_4000, 0x0_C000),
        progress: Region::new(0x1_0000, 0x2_0000),
        active: Region::new(0x2_0000, 0x8_0000),
        staging: Region::new(0x8_0000, 0xE_0000),
        scratch: Region::new(0xE_0000, 0x10_0000),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: SectorMap = SectorMap::new(&[
        SectorRun {
            count: 4,
            size: 1024,
        },
        SectorRun {
            count: 2,
            size: 4096,
        },
        SectorRun {
            count: 3,
            size: 2048,
        },
    ]);

    #[test]
    fn sector_lookup() {
        assert_eq!(MIXED.sector_at(0), Some(0..1024));
        assert_eq!(MIXED.sector_at(4095), Some(3072..4096));
        assert_eq!(MIXED.sector_at(4096), Some(4096..8192));
        assert_eq!(MIXED.sector_at(12288), Some(12288..14336));
        assert_eq!(MIXED.sector_at(18432), None);
        assert!(MIXED.is_boundary(18432));
        assert!(!MIXED.is_boundary(100));
        let s: Vec<_> = MIXED.sectors(Region::new(2048, 12288)).collect();
        assert_eq!(s, [2048..3072, 3072..4096, 4096..8192, 8192..12288]);
    }

    #[test]
    fn electron_layout_is_valid() {
        assert_eq!(Layout::ELECTRON.validate(4, 1), Ok(()));
        assert_eq!(
            Layout::ELECTRON.validate(4, 4),
            Err(LayoutError::UnsupportedReadSize)
        );
        assert_eq!(
            Layout::ELECTRON.validate(3, 1),
            Err(LayoutError::UnsupportedWriteSize)
        );
        assert_eq!(Layout::ELECTRON.capacity(), 384 * 1024);
        assert_eq!(Layout::ELECTRON.unit_end(0), Some(128 * 1024));
    }

    #[test]
    fn layout_id_covers_geometry_and_write_size() {
        let e = Layout::ELECTRON;
        let id = e.id(4);
        assert_ne!(id, LayoutId::UNRECORDED);
        assert_ne!(id, e.id(8), "write size");
        let moved = Layout {
            scratch: Region::new(0xC_0000, 0xE_0000),
            staging: Region::new(0xE_0000, 0x10_0000),
            ..e
        };
        assert_ne!(id, moved.id(4), "regions");
        // The same geometry described with split or empty runs has the same id.
        static SPLIT: SectorMap = SectorMap::new(&[
            SectorRun {
                count: 2,
                size: 16 * 1024,
            },
            SectorRun {
                count: 0,
                size: 4096,
            },
            SectorRun {
                count: 2,
                size: 16 * 1024,
            },
            SectorRun {
                count: 1,
                size: 64 * 1024,
            },
            SectorRun {
                count: 7,
                size: 128 * 1024,
            },
        ]);
        assert_eq!(id, Layout { map: SPLIT, ..e }.id(4));
        let other_map = Layout {
            map: SectorMap::new(&[SectorRun {
                count: 8,
                size: 128 * 1024,
            }]),
            ..e
        };
        assert_ne!(id, other_map.id(4), "sector map");
    }

    #[test]
    fn units_follow_both_maps() {
        // active: 1K,1K,1K,1K,4K (0..8192); staging: 4K,2K,2K (8192..16384).
        let l = Layout {
            map: MIXED,
            state: Region::new(16384, 18432),
            progress: Region::new(16384, 18432),
            active: Region::new(0, 8192),
            staging: Region::new(8192, 16384),
            scratch: Region::new(16384, 18432),
        };
        assert_eq!(l.unit_end(0), Some(4096));
        assert_eq!(l.unit_end(4096), Some(8192));
        assert_eq!(l.capacity(), 8192);
        // A staging slot that ends inside an active sector: capacity stops at the last common
        // boundary so the swap never erases active bytes it does not copy.
        let short = Layout {
            staging: Region::new(8192, 14336),
            ..l
        };
        assert_eq!(short.capacity(), 4096);
        assert_eq!(short.unit_end(4096), None);
    }
}
