//! The persisted OTA state and the power-safe log that holds it.
//!
//! The state is one fixed-size 192-byte record (layout in `docs/image-format.md`, section
//! "State record"). Every change appends a whole new record with a newer sequence number and
//! a CRC-32 to a ring of at least two sectors; the valid record with the newest sequence
//! number is the state. A torn append leaves a slot whose CRC fails: it is skipped and the
//! previous record stays in force. When the current sector is full the record goes to the
//! start of the next sector, which must be blank; so that no state change ever has to erase,
//! that sector is erased ahead of time by an explicit step (`Updater::erase_step`, reported by
//! `Updater::erase_work`; the bootloader during install and revert steps).
//!
//! Cost: one 192-byte write per state change; one sector erase of the state region every
//! `sector_size / 192` changes (85 on a 16 KiB sector), in an explicit step; opening reads the
//! whole state region.

use core::ops::Range;

use crc::{Crc, CRC_32_ISO_HDLC};
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

use crate::layout::{Layout, LayoutId, Region};
use crate::machine::{check_transition, IllegalTransition, OtaState};
use crate::manifest::{SecurityCounter, Sha256Digest, Version};
use crate::status::UpdateResult;

// `RECORD_LEN` and `Persisted` are public only with the `fuzzing` feature (see lib.rs).

/// Size of one state record in flash.
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub const RECORD_LEN: usize = 192;
const RECORD_MAGIC: [u8; 2] = *b"OS";
const RECORD_FORMAT: u8 = 1;
const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);
const NO_SECTOR: u32 = u32::MAX;

/// What the updater and bootloader are doing, as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// Nothing in progress.
    Idle,
    /// A download is in progress (progress region holds its manifest and markers).
    Downloading,
    /// The staged image was re-hashed and matches its manifest.
    Downloaded,
    /// Install requested or under way (the bootloader swaps staging and active).
    Installing,
    /// The new image runs on trial and waits for confirmation.
    Trial,
    /// The trial image failed; the bootloader swaps the previous image back.
    Reverting,
}

impl Phase {
    fn to_u8(self) -> u8 {
        match self {
            Self::Idle => 0,
            Self::Downloading => 1,
            Self::Downloaded => 2,
            Self::Installing => 3,
            Self::Trial => 4,
            Self::Reverting => 5,
        }
    }
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Idle,
            1 => Self::Downloading,
            2 => Self::Downloaded,
            3 => Self::Installing,
            4 => Self::Trial,
            5 => Self::Reverting,
            _ => return None,
        })
    }
}

/// What the device knows of an image without its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ImageSummary {
    /// Version.
    pub version: Version,
    /// Anti-rollback counter.
    pub security_counter: SecurityCounter,
    /// Size in bytes.
    pub size: u32,
    /// SHA-256 of the image.
    pub digest: Sha256Digest,
}

impl ImageSummary {
    fn encode(&self, o: &mut [u8]) {
        o[0..2].copy_from_slice(&self.version.major.to_le_bytes());
        o[2..4].copy_from_slice(&self.version.minor.to_le_bytes());
        o[4..6].copy_from_slice(&self.version.patch.to_le_bytes());
        o[6..8].fill(0);
        o[8..12].copy_from_slice(&self.security_counter.0.to_le_bytes());
        o[12..16].copy_from_slice(&self.size.to_le_bytes());
        o[16..48].copy_from_slice(&self.digest.0);
    }

    fn decode(o: &[u8]) -> Self {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&o[16..48]);
        Self {
            version: Version::new(le16(o, 0), le16(o, 2), le16(o, 4)),
            security_counter: SecurityCounter(le32(o, 8)),
            size: le32(o, 12),
            digest: Sha256Digest(digest),
        }
    }
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// The whole persisted state: what one record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub struct Persisted {
    /// Sequence number of the record (set by the log on append).
    pub seq: u32,
    /// Current phase.
    pub phase: Phase,
    /// LwM2M Update Result of the last finished operation.
    pub result: UpdateResult,
    /// Boots of the trial image so far.
    pub boot_attempts: u8,
    /// Download progress uses one bit per chunk (MultiwriteNorFlash) instead of one word.
    pub bit_markers: bool,
    /// Security counter of the confirmed image; rises only on confirm.
    pub security_counter: SecurityCounter,
    /// The confirmed image in the active slot (during a trial: the previous one, now in
    /// staging). `None` until known.
    pub active: Option<ImageSummary>,
    /// The image being downloaded, staged, installed or tried.
    pub staged: Option<ImageSummary>,
    /// SHA-256 of the manifest of the download in progress.
    pub manifest_digest: Sha256Digest,
    /// Its length in bytes.
    pub manifest_len: u32,
    /// Bytes the install swap exchanges (same for the revert).
    pub swap_len: u32,
    /// Swap stages completed so far (3 per unit).
    pub swap_step: u32,
    /// Staging sector under repair (index within the staging slot), if any.
    pub repair_sector: Option<u32>,
    /// The repair copied the sector to scratch and now erases and restores it.
    pub repair_restoring: bool,
    /// The layout (and flash write size) the record was written under, [`Layout::id`]: set
    /// by the log on append; a reader refuses a state whose newest record carries another id
    /// ([`LayoutId::UNRECORDED`], from records written before ids existed, is not checked).
    pub layout_id: LayoutId,
}

#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
impl Persisted {
    /// The state of a device that never recorded anything.
    #[cfg(any(test, feature = "fuzzing"))]
    pub const EMPTY: Persisted = Persisted {
        seq: 0,
        phase: Phase::Idle,
        result: UpdateResult::Initial,
        boot_attempts: 0,
        bit_markers: false,
        security_counter: SecurityCounter(0),
        active: None,
        staged: None,
        manifest_digest: Sha256Digest([0; 32]),
        manifest_len: 0,
        swap_len: 0,
        swap_step: 0,
        repair_sector: None,
        repair_restoring: false,
        layout_id: LayoutId::UNRECORDED,
    };

    /// Encodes the record, CRC included.
    pub fn encode(&self, o: &mut [u8; RECORD_LEN]) {
        o.fill(0);
        o[0..2].copy_from_slice(&RECORD_MAGIC);
        o[2] = RECORD_FORMAT;
        o[3] = self.phase.to_u8();
        o[4..8].copy_from_slice(&self.seq.to_le_bytes());
        o[8] = self.result as u8;
        o[9] = self.boot_attempts;
        o[10] = self.bit_markers as u8;
        o[11] = (self.active.is_some() as u8)
            | (self.staged.is_some() as u8) << 1
            | (self.repair_restoring as u8) << 2;
        o[12..16].copy_from_slice(&self.security_counter.0.to_le_bytes());
        if let Some(a) = &self.active {
            a.encode(&mut o[16..64]);
        }
        if let Some(s) = &self.staged {
            s.encode(&mut o[64..112]);
        }
        o[112..144].copy_from_slice(&self.manifest_digest.0);
        o[144..148].copy_from_slice(&self.manifest_len.to_le_bytes());
        o[148..152].copy_from_slice(&self.swap_len.to_le_bytes());
        o[152..156].copy_from_slice(&self.swap_step.to_le_bytes());
        o[156..160].copy_from_slice(&self.repair_sector.unwrap_or(NO_SECTOR).to_le_bytes());
        o[160..168].copy_from_slice(&self.layout_id.0);
        let crc = CRC32.checksum(&o[..RECORD_LEN - 4]);
        o[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a record; `None` if it is not a valid one (wrong magic, CRC, or field values).
    pub fn decode(o: &[u8; RECORD_LEN]) -> Option<Self> {
        if o[0..2] != RECORD_MAGIC || o[2] != RECORD_FORMAT {
            return None;
        }
        if CRC32.checksum(&o[..RECORD_LEN - 4]) != le32(o, RECORD_LEN - 4) {
            return None;
        }
        let flags = o[11];
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&o[112..144]);
        let repair = le32(o, 156);
        let mut layout_id = [0u8; 8];
        layout_id.copy_from_slice(&o[160..168]);
        Some(Self {
            seq: le32(o, 4),
            phase: Phase::from_u8(o[3])?,
            result: UpdateResult::from_u8(o[8])?,
            boot_attempts: o[9],
            bit_markers: o[10] != 0,
            security_counter: SecurityCounter(le32(o, 12)),
            active: (flags & 1 != 0).then(|| ImageSummary::decode(&o[16..64])),
            staged: (flags & 2 != 0).then(|| ImageSummary::decode(&o[64..112])),
            manifest_digest: Sha256Digest(digest),
            manifest_len: le32(o, 144),
            swap_len: le32(o, 148),
            swap_step: le32(o, 152),
            repair_sector: (repair != NO_SECTOR).then_some(repair),
            repair_restoring: flags & 4 != 0,
            layout_id: LayoutId(layout_id),
        })
    }
}

/// True if sequence number `a` is newer than `b`: serial-number arithmetic modulo 2³² (RFC
/// 1982), so the number after `0xFFFF_FFFF` is 0 and still newer. Equal numbers are not newer:
/// of two records with the same number the first found (in address order) stays.
pub(crate) fn newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000_0000
}

/// Why a record was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum CommitError {
    /// The sector of the newest record is full and the next sector of the ring is not erased:
    /// an explicit erase step must run first. Nothing was written.
    NeedsErase,
    /// The flash failed.
    Flash(NorFlashErrorKind),
    /// The change is not an edge of the state machine: nothing was written.
    Illegal(IllegalTransition),
}

impl From<IllegalTransition> for CommitError {
    fn from(e: IllegalTransition) -> Self {
        Self::Illegal(e)
    }
}

impl From<NorFlashErrorKind> for CommitError {
    fn from(k: NorFlashErrorKind) -> Self {
        Self::Flash(k)
    }
}

/// End of the whole slots of `sector`.
fn slots_end(sector: &Range<u32>) -> u32 {
    sector.start + (sector.end - sector.start) / RECORD_LEN as u32 * RECORD_LEN as u32
}

/// Where the next record goes, and whether the ring is ready for it.
///
/// Ring rule (see `docs/image-format.md`, section 4): records go to the sector that holds the
/// newest record; when it is full, to the start of the next sector of the ring, which must then
/// be blank. That next sector holds only older records, so it may be erased whenever the
/// newest record is elsewhere: [`pending_erase`](Self::pending_erase) says when, and the
/// caller schedules it. [`append`](Self::append) itself erases only when asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateLog {
    region: Region,
    /// Start of the sector the next record goes to.
    sector_start: u32,
    /// Next free slot address (may equal the sector's slot end: full).
    next: u32,
    /// Last sequence number used (or used up by a failed attempt).
    seq: u32,
    /// Start of the sector holding the newest valid record, if any. Never erased.
    newest: Option<u32>,
    /// Every slot of the ring sector after `sector_start` reads erased.
    next_blank: bool,
}

impl StateLog {
    /// Scans the state region and returns the log cursor and the newest valid state.
    ///
    /// Cost: reads every slot of the state region (192 bytes at a time).
    pub(crate) fn open<F: ReadNorFlash>(
        flash: &mut F,
        layout: &Layout,
    ) -> Result<(Self, Option<Persisted>), NorFlashErrorKind> {
        struct Cursor {
            rec: Option<Persisted>,
            start: u32,
            next: u32,
            /// Blankness of the ring sector after this one, once the scan has seen it.
            next_blank: Option<bool>,
        }
        let mut best: Option<Cursor> = None;
        // Where records go when no valid record exists: the first sector.
        let mut first: Option<Cursor> = None;
        let mut first_blank = true;
        let mut buf = [0u8; RECORD_LEN];
        for sector in layout.map.sectors(layout.state) {
            let mut next_free = sector.start;
            let mut sector_best: Option<Persisted> = None;
            let mut addr = sector.start;
            while addr < slots_end(&sector) {
                flash.read(addr, &mut buf).map_err(|e| e.kind())?;
                if buf.iter().any(|&b| b != 0xFF) {
                    next_free = addr + RECORD_LEN as u32;
                    if let Some(rec) = Persisted::decode(&buf) {
                        if sector_best.is_none_or(|b| newer(rec.seq, b.seq)) {
                            sector_best = Some(rec);
                        }
                    }
                }
                addr += RECORD_LEN as u32;
            }
            let blank = next_free == sector.start;
            // This sector is the ring successor of the previous one.
            for c in [best.as_mut(), first.as_mut()].into_iter().flatten() {
                c.next_blank.get_or_insert(blank);
            }
            if first.is_none() {
                first_blank = blank;
                first = Some(Cursor {
                    rec: None,
                    start: sector.start,
                    next: next_free,
                    next_blank: None,
                });
            }
            if let Some(rec) = sector_best {
                if best
                    .as_ref()
                    .is_none_or(|b| b.rec.is_none_or(|r| newer(rec.seq, r.seq)))
                {
                    best = Some(Cursor {
                        rec: Some(rec),
                        start: sector.start,
                        next: next_free,
                        next_blank: None,
                    });
                }
            }
        }
        let region = layout.state;
        let c = best.or(first).unwrap_or(Cursor {
            rec: None,
            start: region.start,
            next: region.start,
            next_blank: None,
        });
        let log = Self {
            region,
            sector_start: c.start,
            next: c.next,
            seq: c.rec.map_or(0, |r| r.seq),
            newest: c.rec.map(|_| c.start),
            // The last sector's successor is the first.
            next_blank: c.next_blank.unwrap_or(first_blank),
        };
        Ok((log, c.rec))
    }

    /// The ring sector after the one starting at `start`.
    fn ring_next(&self, layout: &Layout, start: u32) -> Result<Range<u32>, NorFlashErrorKind> {
        let s = layout
            .map
            .sector_at(start)
            .ok_or(NorFlashErrorKind::OutOfBounds)?;
        let n = if s.end >= self.region.end {
            self.region.start
        } else {
            s.end
        };
        layout
            .map
            .sector_at(n)
            .ok_or(NorFlashErrorKind::OutOfBounds)
    }

    /// The state sector that may and should be erased now so that the ring never has to erase
    /// inside a state change: the one after the cursor sector, unless it is already blank or
    /// holds the newest valid record.
    pub(crate) fn pending_erase(&self, layout: &Layout) -> Option<Range<u32>> {
        if self.next_blank {
            return None;
        }
        let t = self.ring_next(layout, self.sector_start).ok()?;
        (self.newest != Some(t.start)).then_some(t)
    }

    /// Erases the [`pending_erase`](Self::pending_erase) sector, if any. Returns whether it
    /// erased. Cost: at most one state-sector erase.
    pub(crate) fn erase_pending<F: NorFlash>(
        &mut self,
        flash: &mut F,
        layout: &Layout,
    ) -> Result<bool, NorFlashErrorKind> {
        let Some(t) = self.pending_erase(layout) else {
            return Ok(false);
        };
        flash.erase(t.start, t.end).map_err(|e| e.kind())?;
        self.next_blank = true;
        Ok(true)
    }

    /// True if the next append would refuse with [`CommitError::NeedsErase`]: no free slot,
    /// and a next sector that an erase step can (and should) erase.
    pub(crate) fn needs_erase_first(&self, layout: &Layout) -> bool {
        let full = layout
            .map
            .sector_at(self.sector_start)
            .is_none_or(|s| self.next + RECORD_LEN as u32 > slots_end(&s));
        full && self.pending_erase(layout).is_some()
    }

    /// Appends `state` as the new newest record, setting its sequence number.
    ///
    /// When the cursor sector is full, the record goes to the start of the next ring sector,
    /// which must be blank: if it is not, `append` erases it first when `may_erase` is set,
    /// and otherwise refuses with [`CommitError::NeedsErase`] without writing anything.
    ///
    /// Cost: one 192-byte write and its read-back; when the record starts a new sector, a read
    /// of the sector after it (to learn whether it is blank) and, only with `may_erase`, one
    /// state-sector erase.
    pub(crate) fn append<F: NorFlash>(
        &mut self,
        flash: &mut F,
        layout: &Layout,
        state: &mut Persisted,
        may_erase: bool,
    ) -> Result<(), CommitError> {
        let sector = layout
            .map
            .sector_at(self.sector_start)
            .ok_or(NorFlashErrorKind::OutOfBounds)?;
        if self.next + RECORD_LEN as u32 > slots_end(&sector) {
            let target = self.ring_next(layout, sector.start)?;
            if !self.next_blank {
                if self.newest == Some(target.start) {
                    // Every slot of the cursor sector failed since the newest record was
                    // written (a flash that keeps failing): erasing would lose the state.
                    return Err(CommitError::Flash(NorFlashErrorKind::Other));
                }
                if !may_erase {
                    return Err(CommitError::NeedsErase);
                }
                flash
                    .erase(target.start, target.end)
                    .map_err(|e| e.kind())?;
                self.next_blank = true;
            }
            self.sector_start = target.start;
            self.next = target.start;
            let after = self.ring_next(layout, target.start)?;
            self.next_blank = after.start != target.start
                && crate::flash_ops::is_erased(
                    flash,
                    after.start,
                    slots_end(&after) - after.start,
                )?;
        }
        // Whatever happens, this number and this slot are used now: a retry after a failed
        // write or read-back gets the next number (so it outranks whatever this attempt left)
        // and the next slot (a torn slot must not be programmed again).
        self.seq = self.seq.wrapping_add(1);
        state.seq = self.seq;
        let mut buf = [0u8; RECORD_LEN];
        state.encode(&mut buf);
        let addr = self.next;
        self.next += RECORD_LEN as u32;
        flash.write(addr, &buf).map_err(|e| e.kind())?;
        // Read back: a slot programmed twice (two writers) or weakly programmed must not pass
        // for a committed state.
        let mut check = [0u8; RECORD_LEN];
        flash.read(addr, &mut check).map_err(|e| e.kind())?;
        if check != buf {
            return Err(CommitError::Flash(NorFlashErrorKind::Other));
        }
        self.newest = Some(self.sector_start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_modulo_2_32() {
        assert!(newer(1, 0));
        assert!(!newer(0, 1));
        assert!(!newer(5, 5));
        assert!(newer(0, u32::MAX));
        assert!(newer(3, u32::MAX - 3));
        assert!(newer(0x7FFF_FFFF, 0));
        assert!(!newer(0x8000_0000, 0));
    }

    #[test]
    fn record_round_trips_and_rejects_corruption() {
        let s = Persisted {
            seq: 42,
            phase: Phase::Trial,
            result: UpdateResult::Success,
            boot_attempts: 2,
            bit_markers: true,
            security_counter: SecurityCounter(9),
            active: Some(ImageSummary {
                version: Version::new(1, 2, 3),
                security_counter: SecurityCounter(8),
                size: 1234,
                digest: Sha256Digest([7; 32]),
            }),
            staged: None,
            manifest_digest: Sha256Digest([5; 32]),
            manifest_len: 6328,
            swap_len: 4096,
            swap_step: 3,
            repair_sector: Some(1),
            repair_restoring: true,
            layout_id: LayoutId([1, 2, 3, 4, 5, 6, 7, 8]),
        };
        let mut b = [0u8; RECORD_LEN];
        s.encode(&mut b);
        assert_eq!(Persisted::decode(&b), Some(s));
        for i in 0..RECORD_LEN {
            let mut c = b;
            c[i] ^= 0x10;
            assert_eq!(Persisted::decode(&c), None, "flip in byte {i} accepted");
        }
    }

    /// The funnel refuses a phase change the machine does not have, with a typed error and
    /// without touching flash or the current state; a legal one is written.
    #[test]
    fn the_funnel_refuses_an_illegal_change_without_writing() {
        use crate::layout::{SectorMap, SectorRun};
        use crate::machine::{Markers, PhaseData, StagedDownload, Swap};
        static MAP: SectorMap = SectorMap::new(&[SectorRun {
            count: 24,
            size: 1024,
        }]);
        let layout = Layout {
            map: MAP,
            state: Region::new(0, 2048),
            progress: Region::new(2048, 4096),
            active: Region::new(4096, 12288),
            staging: Region::new(12288, 20480),
            scratch: Region::new(20480, 24576),
        };
        let mut flash = ota_flash_sim::SimFlash::<4, 1024, false>::new(&[1024; 24]);
        let mut store = Store::open(&mut flash, layout).unwrap();
        let trial = store.state().with(PhaseData::Trial {
            download: StagedDownload {
                image: None,
                manifest_digest: Sha256Digest([0; 32]),
                manifest_len: 0,
                markers: Markers::Words,
            },
            swap: Swap::start(4096),
            boot_attempts: 0,
        });
        let illegal = IllegalTransition {
            from: Phase::Idle,
            to: Phase::Trial,
        };
        let ops = flash.stats().ops;
        assert_eq!(
            store.commit(&mut flash, trial),
            Err(CommitError::Illegal(illegal))
        );
        assert_eq!(
            store.commit_or_erase(&mut flash, trial),
            Err(CommitError::Illegal(illegal))
        );
        assert_eq!(store.assume(trial), Err(illegal));
        assert_eq!(flash.stats().ops, ops);
        assert_eq!(*store.state(), OtaState::EMPTY);
        let provisioned = OtaState {
            security_counter: SecurityCounter(3),
            ..OtaState::EMPTY
        };
        store.commit(&mut flash, provisioned).unwrap();
        assert_eq!(flash.stats().ops, ops + 1);
        assert_eq!(*store.state(), provisioned);
    }
}

/// The layout, the log cursor and the current state: what the updater and the bootloader
/// share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Store {
    pub(crate) layout: Layout,
    pub(crate) capacity: u32,
    pub(crate) write_size: usize,
    layout_id: LayoutId,
    log: StateLog,
    /// The current state. Changed only by [`commit`](Self::commit),
    /// [`commit_or_erase`](Self::commit_or_erase) and [`assume`](Self::assume), which check
    /// the transition.
    state: OtaState,
}

impl Store {
    /// Validates the layout, reads the log, and refuses a state written under another layout
    /// ([`OpenError::LayoutMismatch`](crate::error::OpenError::LayoutMismatch)).
    pub(crate) fn open<F: NorFlash>(
        flash: &mut F,
        layout: Layout,
    ) -> Result<Self, crate::error::OpenError> {
        layout
            .validate(F::WRITE_SIZE, F::READ_SIZE)
            .map_err(crate::error::OpenError::Layout)?;
        let (log, state) = StateLog::open(flash, &layout)?;
        let layout_id = layout.id(F::WRITE_SIZE);
        if let Some(rec) = &state {
            if rec.layout_id != layout_id && rec.layout_id != LayoutId::UNRECORDED {
                return Err(crate::error::OpenError::LayoutMismatch);
            }
        }
        Ok(Self {
            layout,
            capacity: layout.capacity(),
            write_size: F::WRITE_SIZE,
            layout_id,
            log,
            state: state.map_or(OtaState::EMPTY, |r| OtaState::from_record(&r)),
        })
    }

    /// The current state.
    pub(crate) fn state(&self) -> &OtaState {
        &self.state
    }

    /// The transition funnel: every state change, persisted or not, passes here. Checks
    /// that `current → next` is an edge of the machine
    /// ([`check_transition`](crate::machine::check_transition)) and then makes `next`
    /// current.
    fn transition(&mut self, next: OtaState) -> Result<(), IllegalTransition> {
        check_transition(self.state.phase.phase(), next.phase.phase())?;
        self.state = next;
        Ok(())
    }

    /// Persists `next` as the new state (see [`StateLog::append`] for the cost). Never
    /// erases: when the ring needs an erase first, [`CommitError::NeedsErase`]; an illegal
    /// transition is [`CommitError::Illegal`]. Nothing changes on an error.
    pub(crate) fn commit<F: NorFlash>(
        &mut self,
        flash: &mut F,
        next: OtaState,
    ) -> Result<(), CommitError> {
        self.append(flash, next, false)
    }

    /// As [`commit`](Self::commit), but erases the next state sector itself when the ring has
    /// no free slot (the bootloader, which must always be able to record its progress), so
    /// never [`CommitError::NeedsErase`].
    pub(crate) fn commit_or_erase<F: NorFlash>(
        &mut self,
        flash: &mut F,
        next: OtaState,
    ) -> Result<(), CommitError> {
        self.append(flash, next, true)
    }

    fn append<F: NorFlash>(
        &mut self,
        flash: &mut F,
        next: OtaState,
        may_erase: bool,
    ) -> Result<(), CommitError> {
        let (from, to) = (self.state.phase.phase(), next.phase.phase());
        if let Err(e) = check_transition(from, to) {
            error!("ota: refused state change {:?} -> {:?}", from, to);
            return Err(e.into());
        }
        let mut record = next.to_record();
        record.layout_id = self.layout_id;
        if let Err(e) = self.log.append(flash, &self.layout, &mut record, may_erase) {
            match e {
                CommitError::NeedsErase => debug!("ota: state log needs an erase step first"),
                _ => warn!("ota: state record not written: {:?}", e),
            }
            return Err(e);
        }
        // Checked above.
        self.state = next;
        if from != to {
            info!(
                "ota: phase {:?} -> {:?} (result {:?}, record {})",
                from, to, next.result, record.seq
            );
        } else {
            debug!("ota: {:?} progress recorded (record {})", to, record.seq);
        }
        Ok(())
    }

    /// Makes `next` current without recording it (a change that the next recorded one
    /// persists, or that a reset recomputes: a download whose set-up was cut short, an
    /// abandon whose record needs an erase first). Checked as a recorded one.
    pub(crate) fn assume(&mut self, next: OtaState) -> Result<(), IllegalTransition> {
        let (from, to) = (self.state.phase.phase(), next.phase.phase());
        match self.transition(next) {
            Ok(()) => {
                info!("ota: phase {:?} -> {:?} (not recorded yet)", from, to);
                Ok(())
            }
            Err(e) => {
                error!("ota: refused state change {:?} -> {:?}", from, to);
                Err(e)
            }
        }
    }

    /// The state sector an explicit erase step should erase now, if any.
    pub(crate) fn pending_state_erase(&self) -> Option<Range<u32>> {
        self.log.pending_erase(&self.layout)
    }

    /// Erases the pending state sector, if any; returns whether it did.
    pub(crate) fn erase_state_step<F: NorFlash>(
        &mut self,
        flash: &mut F,
    ) -> Result<bool, NorFlashErrorKind> {
        self.log.erase_pending(flash, &self.layout)
    }

    /// True if the next state change would ask for an erase step first.
    pub(crate) fn needs_erase_first(&self) -> bool {
        self.log.needs_erase_first(&self.layout)
    }
}
