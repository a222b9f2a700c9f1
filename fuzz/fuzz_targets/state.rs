//! Fuzz what ota-core reads back from flash: arbitrary bytes become the contents of a small
//! simulated flash (state log, progress region, staging), and the state decoder, the updater
//! and the bootloader must cope: never panic, never hang, never touch flash outside the rules.
//!
//! Input: one mode byte, then the state region (2 KiB: ten 192-byte slots per 1 KiB sector),
//! the progress region (2 KiB) and staging (8 KiB); missing bytes read erased (`FF`).
//! Mode bits: 0 seal every non-erased state slot (rebuild it as a CRC-valid record from its
//! bytes, so the logic behind the CRC is reached), 1 open with multiwrite (bit markers),
//! 2 make sealed records point at the manifest copy in the progress region (its SHA-256 and
//! length), so a download in progress is loaded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use ota_core::{
    BootConfig, BootStep, Bootloader, ChunkIndex, HardwareId, ImageSummary, Layout, Phase, Region,
    SectorMap, SectorRun, SecurityCounter, Sha256Digest, UpdateResult, Updater, UpdaterConfig,
    Version,
};
use ota_core::{ManifestHeader, MANIFEST_HEADER_LEN as HEADER_LEN};
use ota_core::{Persisted, RECORD_LEN};

/// The layout of ota-core's behaviour tests: 2×1K state, 2K progress, active 4×1K + 4K,
/// staging 4K + 2K + 2K, scratch 4K.
const SECTORS: [u32; 12] = [
    1024, 1024, 2048, 1024, 1024, 1024, 1024, 4096, 4096, 2048, 2048, 4096,
];
static MAP: SectorMap = SectorMap::new(&[
    SectorRun {
        count: 2,
        size: 1024,
    },
    SectorRun {
        count: 1,
        size: 2048,
    },
    SectorRun {
        count: 4,
        size: 1024,
    },
    SectorRun {
        count: 2,
        size: 4096,
    },
    SectorRun {
        count: 2,
        size: 2048,
    },
    SectorRun {
        count: 1,
        size: 4096,
    },
]);
const LAYOUT: Layout = Layout {
    map: MAP,
    state: Region::new(0, 2048),
    progress: Region::new(2048, 4096),
    active: Region::new(4096, 12288),
    staging: Region::new(12288, 20480),
    scratch: Region::new(20480, 24576),
};
const W: usize = 4;

#[derive(Debug)]
struct Refused(NorFlashErrorKind);
impl NorFlashError for Refused {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

/// A strict NOR flash: aligned writes of erased words only (or, with `M`, bits 1 → 0 only),
/// erases of whole physical sectors, everything in bounds. Breaking a rule is an error the
/// code under test must handle, never a silent success.
struct Flash<const M: bool> {
    data: Vec<u8>,
}

impl<const M: bool> ErrorType for Flash<M> {
    type Error = Refused;
}
impl<const M: bool> ReadNorFlash for Flash<M> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Refused> {
        let s = offset as usize;
        let src = s
            .checked_add(bytes.len())
            .and_then(|e| self.data.get(s..e))
            .ok_or(Refused(NorFlashErrorKind::OutOfBounds))?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.data.len()
    }
}
impl<const M: bool> NorFlash for Flash<M> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Refused> {
        let mut start = 0u32;
        let (mut ok_from, mut ok_to) = (false, false);
        for size in SECTORS {
            ok_from |= start == from;
            start += size;
            ok_to |= start == to;
        }
        if !ok_from || !ok_to || from >= to {
            return Err(Refused(NorFlashErrorKind::NotAligned));
        }
        self.data[from as usize..to as usize].fill(0xFF);
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Refused> {
        let s = offset as usize;
        if s % W != 0 || bytes.len() % W != 0 {
            return Err(Refused(NorFlashErrorKind::NotAligned));
        }
        let cells = s
            .checked_add(bytes.len())
            .and_then(|e| self.data.get_mut(s..e))
            .ok_or(Refused(NorFlashErrorKind::OutOfBounds))?;
        let ok = cells
            .iter()
            .zip(bytes)
            .all(|(&o, &n)| if M { o & n == n } else { o == 0xFF });
        if !ok {
            return Err(Refused(NorFlashErrorKind::Other));
        }
        for (c, &n) in cells.iter_mut().zip(bytes) {
            *c &= n;
        }
        Ok(())
    }
}
impl MultiwriteNorFlash for Flash<true> {}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// A valid record built from whatever a slot holds; small values where only small ones
/// reach the interesting paths (phase, result, swap length), unless flag bit 4 asks for raw.
fn lenient(b: &[u8; RECORD_LEN]) -> Persisted {
    const PHASES: [Phase; 6] = [
        Phase::Idle,
        Phase::Downloading,
        Phase::Downloaded,
        Phase::Installing,
        Phase::Trial,
        Phase::Reverting,
    ];
    let summary = |o: usize| {
        let mut d = [0u8; 32];
        d.copy_from_slice(&b[o + 16..o + 48]);
        ImageSummary {
            version: Version::new(le16(b, o), le16(b, o + 2), le16(b, o + 4)),
            security_counter: SecurityCounter(le32(b, o + 8)),
            size: le32(b, o + 12),
            digest: Sha256Digest(d),
        }
    };
    let raw = b[11] & 0x10 != 0;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&b[112..144]);
    Persisted {
        seq: le32(b, 4),
        phase: PHASES[b[3] as usize % 6],
        result: UpdateResult::from_u8(b[8] % 12).unwrap_or(UpdateResult::Initial),
        boot_attempts: b[9],
        bit_markers: b[10] & 1 != 0,
        security_counter: SecurityCounter(le32(b, 12)),
        active: (b[11] & 1 != 0).then(|| summary(16)),
        staged: (b[11] & 2 != 0).then(|| summary(64)),
        manifest_digest: Sha256Digest(digest),
        manifest_len: le32(b, 144),
        swap_len: if raw {
            le32(b, 148)
        } else {
            u32::from(b[148] % 3) * 4096
        },
        swap_step: if raw {
            le32(b, 152)
        } else {
            u32::from(b[152] % 8)
        },
        repair_sector: (b[11] & 8 != 0).then(|| if raw { le32(b, 156) } else { le32(b, 156) % 4 }),
        repair_restoring: b[11] & 4 != 0,
        // This layout's id, so that sealed records are read; raw bytes (mostly another
        // layout, refused at open) unless the raw flag asks for them.
        layout_id: if raw {
            let mut id = [0u8; 8];
            id.copy_from_slice(&b[160..168]);
            ota_core::LayoutId(id)
        } else {
            LAYOUT.id(W)
        },
    }
}

fn config() -> UpdaterConfig {
    UpdaterConfig {
        hardware_id: HardwareId::from_name("sim-board").unwrap_or_default(),
        allow_downgrade: false,
    }
}

type Open<F> = fn(&mut F) -> Result<Updater, ota_core::OpenError>;

/// Everything a device does with what it finds in flash, each call bounded: the updater
/// (open, erase work, a chunk, finish in steps, install), the bootloader (up to 64 steps), the
/// updater again (confirm, fail, cancel).
fn exercise<F: NorFlash>(flash: &mut F, open: Open<F>, input: &[u8]) {
    let mut buf = [0u8; 256];
    if let Ok(mut up) = open(flash) {
        let _ = up.status();
        let _ = up.erase_work(flash);
        for _ in 0..4 {
            if !matches!(up.erase_step(flash, &mut buf), Ok(w) if !w.is_done()) {
                break;
            }
        }
        let mut missing = [ChunkIndex(0); 8];
        let _ = up.missing_chunks(flash, ChunkIndex(0), &mut missing);
        let next = up.next_missing(flash, ChunkIndex(0));
        if let (Ok(Some(i)), Some(h)) = (next, up.download_header()) {
            // Hand in the chunk's bytes as the input has them (corrupt unless the fuzzer
            // found them): the digest check refuses them before any write.
            let len = h.chunk_len(i).unwrap_or(0) as usize;
            let data: Vec<u8> = input.iter().copied().cycle().take(len).collect();
            let _ = up.handle_chunk(flash, i, &data);
        }
        // A few bounded steps first, then the rest in one call.
        for _ in 0..3 {
            let _ = up.finish_step(flash, &mut buf, 1000);
        }
        let _ = up.finish(flash, &mut buf);
        let _ = up.mark_install(flash);
    }
    let config = BootConfig {
        max_boot_attempts: 2,
        ..BootConfig::default()
    };
    if let Ok(mut bl) = Bootloader::open(flash, LAYOUT, config) {
        for _ in 0..64 {
            match bl.step(flash, &mut buf) {
                Ok(BootStep::Continue) => {}
                _ => break,
            }
        }
    }
    if let Ok(mut up) = open(flash) {
        let _ = up.mark_confirmed(flash);
        let _ = up.mark_failed(flash);
        let _ = up.cancel(flash, UpdateResult::Cancelled);
        let _ = up.erase_step(flash, &mut buf);
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut data = vec![0xFFu8; SECTORS.iter().sum::<u32>() as usize];
    // State and progress regions, then staging.
    let (head, staging) = rest.split_at(rest.len().min(4096));
    data[..head.len()].copy_from_slice(head);
    let staging = &staging[..staging.len().min(8192)];
    data[12288..12288 + staging.len()].copy_from_slice(staging);

    let manifest = ManifestHeader::decode(&data[2048..2048 + HEADER_LEN])
        .ok()
        .map(|h| h.encoded_len())
        .filter(|&n| n <= 2048)
        .map(|n| (Sha256Digest::of(&data[2048..2048 + n]), n as u32));
    for slot in 0..10 {
        let at = (slot / 5) * 1024 + (slot % 5) * RECORD_LEN;
        let mut rec = [0u8; RECORD_LEN];
        rec.copy_from_slice(&data[at..at + RECORD_LEN]);
        if mode & 1 != 0 && rec.iter().any(|&b| b != 0xFF) {
            let mut p = lenient(&rec);
            if let (true, Some((d, n))) = (mode & 4 != 0, manifest) {
                p.manifest_digest = d;
                p.manifest_len = n;
            }
            p.encode(&mut rec);
            data[at..at + RECORD_LEN].copy_from_slice(&rec);
        }
        // Whatever decodes encodes back to a record that decodes to the same state.
        if let Some(p) = Persisted::decode(&rec) {
            let mut again = [0u8; RECORD_LEN];
            p.encode(&mut again);
            assert_eq!(Persisted::decode(&again), Some(p));
        }
    }
    if mode & 2 != 0 {
        exercise(
            &mut Flash::<true> { data },
            |f| Updater::open_multiwrite(f, LAYOUT, config()),
            input,
        );
    } else {
        exercise(
            &mut Flash::<false> { data },
            |f| Updater::open(f, LAYOUT, config()),
            input,
        );
    }
});
