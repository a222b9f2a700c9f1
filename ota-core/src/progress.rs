//! Where the download's progress markers live inside the progress region.
//!
//! ```text
//! progress.start
//! ├─ manifest copy            manifest_len bytes, padded to the write size
//! ├─ erase markers            one write-size word per staging sector
//! └─ chunk markers            one word per chunk, or one bit per chunk (MultiwriteNorFlash)
//! ```
//!
//! Every marker starts erased (all 0xFF) and is programmed once to say "done". A marker is
//! written only after the work it records is complete, so a marker that reads anything but
//! erased (even a torn one) means the work finished.

/// Addresses of the manifest copy and markers for one download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProgressLayout {
    start: u32,
    manifest_len: u32,
    sectors: u32,
    chunks: u32,
    write_size: u32,
    bits: bool,
}

/// Where a chunk's marker is and what to program there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub addr: u32,
    /// Byte within the word holding the bit, and the bit's mask (bit mode), or `None` when the
    /// whole word is the marker.
    pub bit: Option<(usize, u8)>,
}

impl ProgressLayout {
    pub(crate) const fn new(
        start: u32,
        manifest_len: u32,
        sectors: u32,
        chunks: u32,
        write_size: u32,
        bits: bool,
    ) -> Self {
        Self {
            start,
            manifest_len,
            sectors,
            chunks,
            write_size,
            bits,
        }
    }

    const fn align(&self, v: u64) -> u64 {
        v.div_ceil(self.write_size as u64) * self.write_size as u64
    }

    pub(crate) fn manifest_addr(&self) -> u32 {
        self.start
    }

    fn erase_markers_start(&self) -> u64 {
        self.start as u64 + self.align(self.manifest_len as u64)
    }

    fn chunk_markers_start(&self) -> u64 {
        self.erase_markers_start() + self.sectors as u64 * self.write_size as u64
    }

    pub(crate) fn erase_marker(&self, sector: u32) -> u32 {
        (self.erase_markers_start() + sector as u64 * self.write_size as u64) as u32
    }

    pub(crate) fn chunk_marker(&self, chunk: u32) -> Marker {
        if self.bits {
            let per_word = self.write_size * 8;
            let word = chunk / per_word;
            let bit = chunk % per_word;
            Marker {
                addr: (self.chunk_markers_start() + word as u64 * self.write_size as u64) as u32,
                bit: Some(((bit / 8) as usize, 1u8 << (bit % 8))),
            }
        } else {
            Marker {
                addr: (self.chunk_markers_start() + chunk as u64 * self.write_size as u64) as u32,
                bit: None,
            }
        }
    }

    /// One past the last byte used.
    pub(crate) fn end(&self) -> u64 {
        let words = if self.bits {
            self.chunks.div_ceil(self.write_size * 8)
        } else {
            self.chunks
        };
        self.chunk_markers_start() + words as u64 * self.write_size as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_and_bit_markers() {
        let w = ProgressLayout::new(1000, 101, 3, 70, 4, false);
        assert_eq!(w.erase_marker(0), 1104);
        assert_eq!(w.erase_marker(2), 1112);
        assert_eq!(w.chunk_marker(0).addr, 1116);
        assert_eq!(w.chunk_marker(69).addr, 1116 + 69 * 4);
        assert_eq!(w.end(), 1116 + 70 * 4);
        let b = ProgressLayout::new(1000, 101, 3, 70, 4, true);
        assert_eq!(
            b.chunk_marker(0),
            Marker {
                addr: 1116,
                bit: Some((0, 1))
            }
        );
        assert_eq!(
            b.chunk_marker(9),
            Marker {
                addr: 1116,
                bit: Some((1, 2))
            }
        );
        assert_eq!(
            b.chunk_marker(33),
            Marker {
                addr: 1120,
                bit: Some((0, 2))
            }
        );
        assert_eq!(b.end(), 1116 + 3 * 4);
    }
}
