//! The application side: judge an offer, download into staging across any number of resets,
//! verify, request the install, and confirm the trial image.

use core::fmt;

use embedded_storage::nor_flash::{MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash};
use sha2::{Digest as _, Sha256};

use crate::error::{BeginError, ChunkError, FinishError, OpenError, StateError};
use crate::flash_ops;
use crate::layout::{Layout, Region};
use crate::machine::{
    IllegalTransition, Markers, OtaState, PhaseData, Repair, RepairStage, StagedDownload, Swap,
};
use crate::manifest::{
    chunk_digest, ChunkIndex, HardwareId, ManifestHeader, Sha256Digest, CHUNK_DIGEST_LEN,
    HEADER_LEN,
};
use crate::progress::ProgressLayout;
use crate::state::{CommitError, ImageSummary, Phase, Store};
use crate::status::{Lwm2mState, Progress, Status, UpdateResult};
use crate::verify::{self, Policy, TrustedKey, VerifiedManifest, VerifyError};

/// What the application tells the updater about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdaterConfig {
    /// This device's hardware id; offers for other hardware are refused.
    pub hardware_id: HardwareId,
    /// Development override for anti-rollback (see [`Policy::allow_downgrade`]).
    pub allow_downgrade: bool,
}

/// How [`Updater::begin`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Begin {
    /// A new download was set up: the manifest copy was stored in the (blank) progress region
    /// and the new state recorded.
    Started,
    /// The same manifest was already being downloaded (or is downloaded): nothing was done,
    /// the download continues where it stopped.
    Resumed,
}

/// What a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChunkOutcome {
    /// Verified, written and recorded.
    Written,
    /// Already recorded earlier: nothing written.
    Duplicate,
}

/// Erase work the updater wants done, all of it in explicit [`Updater::erase_step`] calls:
/// nothing else in this crate erases, except the bootloader's install and revert.
///
/// It counts, in the order `erase_step` runs them:
/// * the state sector the state log needs next (once every `sector_size / 192` state changes);
/// * during a download, a pending repair of a staging sector after a torn chunk write (2
///   steps: scratch, then the sector), then every staging sector the image needs that is not
///   erased yet;
/// * outside a download, every sector of the progress region that still holds an earlier
///   download, so that the next [`Updater::begin`] finds it blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "erase work left: call `erase_step` until it is done, or `begin` and chunks keep asking for it"]
pub struct EraseWork {
    /// Number of [`Updater::erase_step`] calls left.
    pub steps: u32,
    /// Bytes those steps erase in total (about 1 s per 128 KiB on an STM32F2).
    pub bytes: u32,
}

impl EraseWork {
    /// No erase work left.
    pub fn is_done(&self) -> bool {
        self.steps == 0
    }

    fn add(&mut self, bytes: u32) {
        self.steps += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// Progress of a hash run in steps: [`Updater::finish_step`], [`Updater::provision_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum HashStep {
    /// More to hash: call again (feed the watchdog or service the modem first).
    Continue {
        /// Bytes hashed so far.
        hashed: u32,
        /// Bytes to hash in all.
        total: u32,
    },
    /// Hashed, matched and recorded.
    Done,
}

/// What a stepped hash is for; a call for anything else starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashTarget {
    /// The staged image of the download whose manifest has this digest.
    Staged(Sha256Digest),
    /// The active slot, against a factory image of this digest and size.
    Active(Sha256Digest, u32),
}

#[derive(Clone)]
enum HashState {
    Running {
        hasher: Sha256,
        done: u32,
    },
    /// All bytes hashed, only the record is left (it asked for an erase step first).
    Finished(Sha256Digest),
}

/// A hash run in steps, held between calls (RAM only: a reset starts it over).
#[derive(Clone)]
struct Hashing {
    target: HashTarget,
    state: HashState,
}

impl fmt::Debug for Hashing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Hashing");
        d.field("target", &self.target);
        match &self.state {
            HashState::Running { done, .. } => d.field("done", done),
            HashState::Finished(digest) => d.field("finished", digest),
        };
        d.finish()
    }
}

#[derive(Debug, Clone, Copy)]
struct Download {
    header: ManifestHeader,
    progress: ProgressLayout,
    chunks_done: u32,
}

/// What the staging slot of an unrecorded chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Nothing: every byte reads erased.
    Erased,
    /// Exactly the chunk (its digest matches the manifest) and erased padding: the write
    /// completed, only its marker is missing.
    Complete,
    /// Anything else: a torn write; only a repair of the sector cleans it.
    Torn,
}

/// The application's OTA state machine.
///
/// It owns no flash: every call that touches flash takes it as an argument, so the same
/// `Updater` works with any `embedded-storage` driver, and nothing happens behind the caller's
/// back: only [`erase_step`](Self::erase_step) erases, one bounded step per call, and
/// [`erase_work`](Self::erase_work) says how much of that work is left. State survives resets
/// in the state region; the `Updater` itself is cheap to rebuild with [`open`](Self::open) at
/// every wake.
///
/// Keep one `Updater` per device: it caches where the next state record goes, so two
/// instances writing the same state region would collide (it is deliberately not `Clone`).
#[derive(Debug)]
pub struct Updater {
    store: Store,
    config: UpdaterConfig,
    bits_available: bool,
    download: Option<Download>,
    /// A staging sector that holds a torn chunk write and whose repair has not started (its
    /// first stage records it). Not persisted: `open` finds it again after a reset.
    torn_sector: Option<u32>,
    /// The hash `finish_step` or `provision_step` is running.
    hashing: Option<Hashing>,
}

fn kind<E: embedded_storage::nor_flash::NorFlashError>(e: E) -> NorFlashErrorKind {
    e.kind()
}

/// The chunk digest (manifest section 1.2) of `len` bytes of 0xFF.
fn erased_chunk_digest(len: u32) -> [u8; CHUNK_DIGEST_LEN] {
    let mut h = Sha256::new();
    let ff = [0xFFu8; 64];
    let mut left = len;
    while left > 0 {
        let n = left.min(64);
        h.update(&ff[..n as usize]);
        left -= n;
    }
    let d: [u8; 32] = h.finalize().into();
    let mut out = [0u8; CHUNK_DIGEST_LEN];
    out.copy_from_slice(&d[..CHUNK_DIGEST_LEN]);
    out
}

impl Updater {
    /// Opens the updater: validates the layout, reads the state log and, if a download is in
    /// progress, checks the stored manifest copy and counts the chunks already written.
    ///
    /// After a reset in the middle of a chunk write it also learns what that write left, so
    /// that no chunk is fetched twice and the erase work is known before any chunk is fetched:
    /// every chunk not yet recorded whose staging sector is already erased is checked once. A
    /// slot that holds exactly the chunk (digest as in the manifest, padding erased) gets its
    /// missing marker written and counts as done (so does an erased slot whose chunk is all
    /// 0xFF: it holds exactly that chunk); a slot that is neither erased nor the chunk is a
    /// torn write, whose repair [`erase_work`](Self::erase_work) then reports.
    ///
    /// Cost: reads the state region, the manifest copy (hashed once), one marker per chunk and,
    /// during a download, every unrecorded chunk slot in an erased staging sector up to its
    /// first programmed byte (at most the image size in total; a programmed slot is also hashed
    /// once, an erased one has its 16-byte digest entry read; one SHA-256 of a chunk of 0xFF).
    /// Writes nothing but those missing markers (after a power cut, at most one, plus one for
    /// each chunk that is all 0xFF and not yet recorded).
    ///
    /// # Errors
    /// [`OpenError::Layout`] if the layout (or the flash's write or read size) breaks a rule;
    /// [`OpenError::LayoutMismatch`] if the state was written under another layout;
    /// [`OpenError::NeedsMultiwrite`] if a download in progress was started with
    /// [`open_multiwrite`](Self::open_multiwrite) (bit markers): this flash type cannot record
    /// its chunks.
    pub fn open<F: NorFlash>(
        flash: &mut F,
        layout: Layout,
        config: UpdaterConfig,
    ) -> Result<Self, OpenError> {
        Self::open_with(flash, layout, config, false)
    }

    /// As [`open`](Self::open), for a flash that can clear bits of a written word: new
    /// downloads then record progress with one bit per chunk instead of one word, so the
    /// progress region stays 32× smaller. Cost per chunk is the same (one word write).
    pub fn open_multiwrite<F: MultiwriteNorFlash>(
        flash: &mut F,
        layout: Layout,
        config: UpdaterConfig,
    ) -> Result<Self, OpenError> {
        Self::open_with(flash, layout, config, true)
    }

    fn open_with<F: NorFlash>(
        flash: &mut F,
        layout: Layout,
        config: UpdaterConfig,
        bits_available: bool,
    ) -> Result<Self, OpenError> {
        let store = Store::open(flash, layout)?;
        let mut u = Self {
            store,
            config,
            bits_available,
            download: None,
            torn_sector: None,
            hashing: None,
        };
        u.load_download(flash)?;
        Ok(u)
    }

    fn progress_layout(&self, header: &ManifestHeader, bits: bool) -> ProgressLayout {
        let l = &self.store.layout;
        ProgressLayout::new(
            l.progress.start,
            header.encoded_len() as u32,
            l.map.sectors(l.staging).count() as u32,
            header.chunk_count(),
            u32::try_from(self.write_size()).unwrap_or(u32::MAX),
            bits,
        )
    }

    fn write_size(&self) -> usize {
        self.store.write_size
    }

    fn load_download<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), OpenError> {
        self.download = None;
        self.torn_sector = None;
        self.hashing = None;
        let st = *self.store.state();
        let (dl, repair, scan) = match st.phase {
            PhaseData::Downloading { download, repair } => (download, repair, true),
            PhaseData::Downloaded { download } => (download, None, false),
            _ => return Ok(()),
        };
        let bits = dl.markers == Markers::Bits;
        let start = self.store.layout.progress.start;
        let mut hb = [0u8; HEADER_LEN];
        flash.read(start, &mut hb).map_err(kind)?;
        let valid = match ManifestHeader::decode(&hb) {
            Ok(header) if header.encoded_len() as u32 == dl.manifest_len => {
                let mut buf = [0u8; 64];
                let d = flash_ops::sha256(flash, start, dl.manifest_len, &mut buf)?;
                (d == dl.manifest_digest).then_some(header)
            }
            _ => None,
        };
        let Some(header) = valid.filter(|h| self.fits(h, bits)) else {
            // The progress region does not hold this download (a new download's set-up was
            // cut short). Treat it as gone; the next transition persists that. (Downloading
            // and Downloaded → Idle are edges of the machine: this cannot be refused.)
            let gone = OtaState {
                result: UpdateResult::Initial,
                phase: PhaseData::Idle { staged: dl.image },
                ..st
            };
            warn!("ota: the download's manifest copy is gone (set-up cut short): dropped");
            if self.store.assume(gone).is_err() {
                error!("ota: could not drop the download");
            }
            return Ok(());
        };
        if scan && bits && !self.bits_available {
            // Its next marker (here below, or in handle_chunk) would clear a bit of a written
            // word, which this flash does not allow.
            return Err(OpenError::NeedsMultiwrite);
        }
        let progress = self.progress_layout(&header, bits);
        let mut d = Download {
            header,
            progress,
            chunks_done: 0,
        };
        let l = self.store.layout;
        let cs = header.chunk_size;
        let mut done = 0;
        let mut torn = None;
        let mut erased_full = None;
        for (k, sector) in self.image_sectors(&d) {
            let first = (sector.start - l.staging.start) / cs;
            let count = ((sector.end - sector.start) / cs).min(header.chunk_count() - first);
            // Slots of a sector not erased yet, or under repair, hold nothing to learn from.
            let check =
                scan && repair.is_none_or(|r| r.sector != k) && self.sector_marked(flash, &d, k)?;
            for c in first..first + count {
                if self.chunk_marked(flash, &d, c)? {
                    done += 1;
                    continue;
                }
                if !check {
                    continue;
                }
                match self.slot(flash, &d, c)? {
                    // A chunk that is all 0xFF reads the same written or not: its erased slot
                    // holds exactly it, so it is done (a reset may have cut its marker).
                    Slot::Erased if self.is_erased_chunk(flash, &d, c, &mut erased_full)? => {
                        let m = d.progress.chunk_marker(c);
                        self.write_marker(flash, m.addr, m.bit)?;
                        done += 1;
                    }
                    Slot::Erased => {}
                    Slot::Complete => {
                        let m = d.progress.chunk_marker(c);
                        self.write_marker(flash, m.addr, m.bit)?;
                        done += 1;
                    }
                    Slot::Torn => {
                        torn.get_or_insert(k);
                    }
                }
            }
        }
        d.chunks_done = done;
        if let Some(k) = torn {
            warn!(
                "ota: torn chunk write in staging sector {}: repair needed",
                k
            );
        }
        debug!("ota: download open, {} chunks done", done);
        self.download = Some(d);
        self.torn_sector = torn;
        Ok(())
    }

    /// True if a download with this header can live in this layout (as `begin` checked when
    /// it started it): anything else in flash is not a download of this device.
    fn fits(&self, h: &ManifestHeader, bits: bool) -> bool {
        let l = &self.store.layout;
        h.image_size <= self.store.capacity
            && l.map
                .sectors(l.staging)
                .all(|s| (s.end - s.start) % h.chunk_size == 0)
            && self.progress_layout(h, bits).end() <= l.progress.end as u64
    }

    /// The chunk's digest from the manifest copy.
    fn digest_entry<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        d: &Download,
        chunk: u32,
    ) -> Result<[u8; CHUNK_DIGEST_LEN], NorFlashErrorKind> {
        let mut want = [0u8; CHUNK_DIGEST_LEN];
        let at =
            d.progress.manifest_addr() + (HEADER_LEN + chunk as usize * CHUNK_DIGEST_LEN) as u32;
        flash.read(at, &mut want).map_err(kind)?;
        Ok(want)
    }

    /// True if chunk `c` is all 0xFF: its digest entry is that of as many erased bytes.
    /// `full` caches the digest of a whole chunk of them. Cost: a 16-byte read, and the first
    /// time (or for a shorter last chunk) one SHA-256 of the chunk's length of 0xFF.
    fn is_erased_chunk<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        d: &Download,
        c: u32,
        full: &mut Option<[u8; CHUNK_DIGEST_LEN]>,
    ) -> Result<bool, NorFlashErrorKind> {
        let len = d.header.chunk_len(ChunkIndex(c)).unwrap_or(0);
        let erased = if len == d.header.chunk_size {
            *full.get_or_insert_with(|| erased_chunk_digest(len))
        } else {
            erased_chunk_digest(len)
        };
        Ok(self.digest_entry(flash, d, c)? == erased)
    }

    /// What chunk `c`'s slot holds. Cost: reads the slot up to its first programmed byte; a
    /// programmed slot is then hashed.
    fn slot<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        d: &Download,
        c: u32,
    ) -> Result<Slot, NorFlashErrorKind> {
        let addr = self.store.layout.staging.start + c * d.header.chunk_size;
        let len = d.header.chunk_len(ChunkIndex(c)).unwrap_or(0);
        let w = self.write_size() as u32;
        let padded = len.div_ceil(w) * w;
        if flash_ops::is_erased(flash, addr, padded)? {
            return Ok(Slot::Erased);
        }
        let mut buf = [0u8; 64];
        let got = flash_ops::sha256(flash, addr, len, &mut buf)?;
        let complete = got.0[..CHUNK_DIGEST_LEN] == self.digest_entry(flash, d, c)?
            && flash_ops::is_erased(flash, addr + len, padded - len)?;
        Ok(if complete { Slot::Complete } else { Slot::Torn })
    }

    /// The repair to run, if any: staging sector and whether its second stage (restore from
    /// scratch) is next.
    fn repair(&self) -> Option<(u32, bool)> {
        let recorded = match self.store.state().phase {
            PhaseData::Downloading {
                repair: Some(r), ..
            } => Some((r.sector, r.stage == RepairStage::Restore)),
            _ => None,
        };
        recorded.or(self.torn_sector.map(|k| (k, false)))
    }

    /// The policy offers are judged by (hardware id, stored security counter, capacity).
    pub fn policy(&self) -> Policy {
        Policy {
            hardware_id: self.config.hardware_id,
            stored_counter: self.store.state().security_counter,
            capacity: self.store.capacity,
            allow_downgrade: self.config.allow_downgrade,
        }
    }

    /// Judges an offered manifest: see [`verify::verify`]. Pure: no flash access.
    pub fn verify_offer<'m>(
        &self,
        manifest: &'m [u8],
        keys: &[TrustedKey],
    ) -> Result<VerifiedManifest<'m>, VerifyError> {
        let r = verify::verify(manifest, keys, &self.policy());
        if let Err(e) = &r {
            warn!("ota: offer refused: {:?}", e);
        }
        r
    }

    /// The persisted phase.
    pub fn phase(&self) -> Phase {
        self.store.state().phase.phase()
    }

    /// The running image is on trial: call [`mark_confirmed`](Self::mark_confirmed) once it has
    /// proven itself (for example after a successful check-in), or
    /// [`mark_failed`](Self::mark_failed).
    pub fn is_trial(&self) -> bool {
        matches!(self.store.state().phase, PhaseData::Trial { .. })
    }

    /// The confirmed image, if known (`None` on a device that never installed an update).
    pub fn confirmed_image(&self) -> Option<ImageSummary> {
        self.store.state().active
    }

    /// The image being downloaded, staged, installed or tried.
    pub fn staged_image(&self) -> Option<ImageSummary> {
        self.store.state().phase.staged()
    }

    /// Digest of the manifest of the download in progress: the key a server uses to resume.
    pub fn download_key(&self) -> Option<crate::manifest::Sha256Digest> {
        self.download
            .and(self.store.state().phase.download())
            .map(|d| d.manifest_digest)
    }

    /// The header of the download in progress.
    pub fn download_header(&self) -> Option<&ManifestHeader> {
        self.download.as_ref().map(|d| &d.header)
    }

    /// Status in LwM2M Object 5 terms.
    pub fn status(&self) -> Status {
        let st = self.store.state();
        let state = match st.phase.phase() {
            Phase::Idle => Lwm2mState::Idle,
            Phase::Downloading => Lwm2mState::Downloading,
            Phase::Downloaded => Lwm2mState::Downloaded,
            Phase::Installing | Phase::Trial | Phase::Reverting => Lwm2mState::Updating,
        };
        Status {
            state,
            result: st.result,
            trial: matches!(st.phase, PhaseData::Trial { .. }),
            progress: self.download.map(|d| Progress {
                chunks_done: d.chunks_done,
                chunks_total: d.header.chunk_count(),
            }),
        }
    }

    /// Starts downloading `manifest`, or resumes if it is the download already in progress.
    ///
    /// A new download needs a blank progress region: `begin` checks it, writes the manifest
    /// copy there and records the new state. It **never erases**. If the progress region still
    /// holds an earlier download (or the state log needs its next sector erased), it returns
    /// [`BeginError::NeedsErase`]: run [`erase_step`](Self::erase_step) until
    /// [`erase_work`](Self::erase_work) is done (at a time a flash stall is acceptable), then
    /// call `begin` again. A *different* download in progress is abandoned first (one record,
    /// state Idle): its progress region is then erase work.
    ///
    /// Cost: reads the part of the progress region the download uses (to check it is blank),
    /// one manifest-sized write, one 192-byte record (two when it abandons a download).
    pub fn begin<F: NorFlash>(
        &mut self,
        flash: &mut F,
        manifest: &VerifiedManifest<'_>,
    ) -> Result<Begin, BeginError> {
        let r = self.try_begin(flash, manifest);
        match &r {
            Err(BeginError::NeedsErase) => debug!("ota: begin needs erase steps first"),
            Err(e) => warn!("ota: offer refused: {:?}", e),
            Ok(b) => debug!("ota: begin: {:?}", b),
        }
        r
    }

    fn try_begin<F: NorFlash>(
        &mut self,
        flash: &mut F,
        manifest: &VerifiedManifest<'_>,
    ) -> Result<Begin, BeginError> {
        let st = *self.store.state();
        match st.phase.phase() {
            Phase::Idle | Phase::Downloading | Phase::Downloaded => {}
            p => return Err(BeginError::Busy(p)),
        }
        let m = manifest.manifest();
        let header = *m.header();
        let digest = m.digest();
        let current = st.phase.download().map(|d| d.manifest_digest);
        if self.download.is_some() && current == Some(digest) {
            return Ok(Begin::Resumed);
        }
        // Whatever policy the manifest was verified against, this device's applies.
        self.policy().check(&header).map_err(BeginError::Refused)?;
        if st.active.is_some_and(|a| a.digest == header.image_digest) {
            return Err(BeginError::AlreadyInstalled);
        }
        let l = self.store.layout;
        if l.map
            .sectors(l.staging)
            .any(|s| (s.end - s.start) % header.chunk_size != 0)
        {
            return Err(BeginError::UnsupportedChunkSize);
        }
        let bits = self.bits_available;
        let progress = self.progress_layout(&header, bits);
        if progress.end() > l.progress.end as u64 {
            return Err(BeginError::ProgressRegionTooSmall);
        }
        if st.phase.download().is_some() {
            // The new offer supersedes the download in progress: abandon it, so that its
            // progress region becomes erase work.
            let abandoned = OtaState {
                result: UpdateResult::Initial,
                phase: PhaseData::Idle { staged: None },
                ..st
            };
            self.download = None;
            self.torn_sector = None;
            if let Err(e) = self.store.commit(flash, abandoned) {
                // Abandoned all the same: the erase work asked for is then the state sector
                // and this progress region, not the old download's staging sectors. After a
                // reset the erased manifest copy no longer matches: `open` drops the download.
                self.store.assume(abandoned).map_err(CommitError::from)?;
                return Err(e.into());
            }
        }
        let start = l.progress.start;
        if !flash_ops::is_erased(flash, start, progress.end() as u32 - start)?
            || self.store.needs_erase_first()
        {
            return Err(BeginError::NeedsErase);
        }
        flash_ops::write_padded(flash, progress.manifest_addr(), m.as_bytes())?;
        let st = *self.store.state();
        let download = StagedDownload {
            image: Some(ImageSummary {
                version: header.version,
                security_counter: header.security_counter,
                size: header.image_size,
                digest: header.image_digest,
            }),
            manifest_digest: digest,
            manifest_len: m.as_bytes().len() as u32,
            markers: if bits { Markers::Bits } else { Markers::Words },
        };
        let next = OtaState {
            result: UpdateResult::Initial,
            phase: PhaseData::Downloading {
                download,
                repair: None,
            },
            ..st
        };
        self.store.commit(flash, next)?;
        self.download = Some(Download {
            header,
            progress,
            chunks_done: 0,
        });
        self.hashing = None;
        Ok(Begin::Started)
    }

    fn chunk_marked<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        d: &Download,
        chunk: u32,
    ) -> Result<bool, NorFlashErrorKind> {
        let m = d.progress.chunk_marker(chunk);
        let mut w = [0u8; 32];
        let w = &mut w[..self.write_size()];
        flash.read(m.addr, w).map_err(kind)?;
        Ok(match m.bit {
            Some((byte, mask)) => w[byte] & mask == 0,
            None => w.iter().any(|&b| b != 0xFF),
        })
    }

    fn sector_marked<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        d: &Download,
        sector: u32,
    ) -> Result<bool, NorFlashErrorKind> {
        let mut w = [0u8; 32];
        let w = &mut w[..self.write_size()];
        flash
            .read(d.progress.erase_marker(sector), w)
            .map_err(kind)?;
        Ok(w.iter().any(|&b| b != 0xFF))
    }

    fn write_marker<F: NorFlash>(
        &self,
        flash: &mut F,
        addr: u32,
        bit: Option<(usize, u8)>,
    ) -> Result<(), NorFlashErrorKind> {
        let mut w = [0u8; 32];
        let w = &mut w[..self.write_size()];
        if let Some((byte, mask)) = bit {
            // MultiwriteNorFlash only allows 1 → 0 changes: rewrite the word as it reads now,
            // with one more bit cleared.
            flash.read(addr, w).map_err(kind)?;
            w[byte] &= !mask;
        }
        flash.write(addr, w).map_err(kind)
    }

    /// Staging sectors (index within the slot, absolute range) that hold part of the image.
    fn image_sectors(&self, d: &Download) -> impl Iterator<Item = (u32, core::ops::Range<u32>)> {
        let l = self.store.layout;
        let end = l.staging.start + d.header.image_size;
        l.map
            .sectors(l.staging)
            .enumerate()
            .take_while(move |(_, s)| s.start < end)
            .map(|(i, s)| (i as u32, s))
    }

    /// True while the progress region holds the manifest copy and markers of a download.
    fn progress_in_use(&self) -> bool {
        self.download.is_some() && self.store.state().phase.download().is_some()
    }

    /// Bytes erase_covering erases for `len` bytes of scratch.
    fn scratch_erase_bytes(&self, len: u32) -> u32 {
        let l = &self.store.layout;
        l.map
            .sectors(Region::new(
                l.scratch.start,
                l.scratch.start.saturating_add(len),
            ))
            .map(|s| s.end - s.start)
            .fold(0u32, u32::saturating_add)
    }

    /// The erase work left (see [`EraseWork`] for what it counts): [`erase_step`](Self::erase_step)
    /// does exactly this work, one step per call.
    ///
    /// Cost: one marker read per staging sector the image uses during a download; outside a
    /// download, a read of each progress sector up to its first programmed byte (the whole
    /// region when it is blank).
    pub fn erase_work<F: ReadNorFlash>(
        &self,
        flash: &mut F,
    ) -> Result<EraseWork, NorFlashErrorKind> {
        let mut w = EraseWork::default();
        if let Some(s) = self.store.pending_state_erase() {
            w.add(s.end - s.start);
        }
        if !self.progress_in_use() {
            let l = &self.store.layout;
            for s in l.map.sectors(l.progress) {
                if !flash_ops::is_erased(flash, s.start, s.end - s.start)? {
                    w.add(s.end - s.start);
                }
            }
            return Ok(w);
        }
        let Some(d) = self.downloading() else {
            return Ok(w);
        };
        if let Some((k, restoring)) = self.repair() {
            let size = self.staging_sector(k).map(|s| s.end - s.start).unwrap_or(0);
            if !restoring {
                w.add(self.scratch_erase_bytes(size));
            }
            w.add(size);
        }
        for (i, s) in self.image_sectors(&d) {
            if !self.sector_marked(flash, &d, i)? {
                w.add(s.end - s.start);
            }
        }
        Ok(w)
    }

    fn staging_sector(&self, index: u32) -> Option<core::ops::Range<u32>> {
        let l = self.store.layout;
        l.map.sectors(l.staging).nth(index as usize)
    }

    /// Runs one unit of the erase work [`erase_work`](Self::erase_work) reports: erases the
    /// state sector the state log needs next; or, during a download, runs one stage of a
    /// repair (see [`ChunkError::NeedsErase`]) or erases one staging sector the image needs
    /// (and records that); or, outside a download, erases one progress sector that still holds
    /// an earlier download. Call it when a flash stall is acceptable, e.g. before powering the
    /// modem. Returns the work left; with none left it does nothing.
    ///
    /// Cost: one sector erase (a repair's first stage: the scratch sectors covering one
    /// staging sector, one erase call each) and at most one word write; a repair stage also
    /// copies the sector's recorded chunks to or from scratch and writes one record. `buf` (at
    /// least the flash write size) is the copy buffer.
    pub fn erase_step<F: NorFlash>(
        &mut self,
        flash: &mut F,
        buf: &mut [u8],
    ) -> Result<EraseWork, StateError> {
        if buf.len() < self.write_size() {
            return Err(StateError::BufferTooSmall);
        }
        if self.store.erase_state_step(flash)? {
            return Ok(self.erase_work(flash)?);
        }
        if !self.progress_in_use() {
            let l = self.store.layout;
            for s in l.map.sectors(l.progress) {
                if !flash_ops::is_erased(flash, s.start, s.end - s.start)? {
                    flash.erase(s.start, s.end).map_err(kind)?;
                    break;
                }
            }
        } else if let Some(d) = self.downloading() {
            if let Some((k, restoring)) = self.repair() {
                // Staging changes: a hash of it in progress is stale.
                self.hashing = None;
                self.repair_stage(flash, &d, k, restoring, buf)?;
            } else {
                let next = self.image_sectors(&d).try_fold(None, |found, (i, s)| {
                    if found.is_some() {
                        return Ok(found);
                    }
                    Ok::<_, NorFlashErrorKind>(
                        (!self.sector_marked(flash, &d, i)?).then_some((i, s)),
                    )
                })?;
                if let Some((i, s)) = next {
                    self.hashing = None;
                    flash.erase(s.start, s.end).map_err(kind)?;
                    self.write_marker(flash, d.progress.erase_marker(i), None)?;
                }
            }
        }
        Ok(self.erase_work(flash)?)
    }

    /// Repair of staging sector `k` after a torn chunk write, without re-fetching any chunk:
    /// stage 1 copies its recorded chunks to scratch, stage 2 erases it and copies them back.
    /// Each stage is redone from its start after a power cut; only their ends are recorded
    /// (before stage 1 ends, `open` finds the torn write again).
    fn repair_stage<F: NorFlash>(
        &mut self,
        flash: &mut F,
        d: &Download,
        k: u32,
        restoring: bool,
        buf: &mut [u8],
    ) -> Result<(), StateError> {
        let l = self.store.layout;
        let Some(sector) = self.staging_sector(k) else {
            // Cannot happen with a state written by this layout; drop the repair.
            self.torn_sector = None;
            return Ok(self.record_repair(flash, None)?);
        };
        let size = sector.end - sector.start;
        let cs = d.header.chunk_size;
        let first = (sector.start - l.staging.start) / cs;
        let count = (size / cs).min(d.header.chunk_count().saturating_sub(first));
        let (from, to, restoring) = if restoring {
            flash.erase(sector.start, sector.end).map_err(kind)?;
            (l.scratch.start, sector.start, false)
        } else {
            flash_ops::erase_covering(flash, &l.map, l.scratch.start, size)?;
            (sector.start, l.scratch.start, true)
        };
        for c in first..first + count {
            if self.chunk_marked(flash, d, c)? {
                let off = (c - first) * cs;
                let len = d.header.chunk_len(ChunkIndex(c)).unwrap_or(0);
                let len = len.div_ceil(self.write_size() as u32) * self.write_size() as u32;
                flash_ops::copy(flash, from + off, to + off, len, buf)?;
            }
        }
        let next = restoring.then_some(Repair {
            sector: k,
            stage: RepairStage::Restore,
        });
        self.record_repair(flash, next)?;
        info!(
            "ota: staging sector {} repair stage done (restore next: {})",
            k, restoring
        );
        if self.torn_sector == Some(k) {
            self.torn_sector = None;
        }
        Ok(())
    }

    /// The download in progress, while the phase is Downloading.
    fn downloading(&self) -> Option<Download> {
        self.download
            .filter(|_| matches!(self.store.state().phase, PhaseData::Downloading { .. }))
    }

    /// Records the repair state of the download in progress (one record).
    fn record_repair<F: NorFlash>(
        &mut self,
        flash: &mut F,
        repair: Option<Repair>,
    ) -> Result<(), CommitError> {
        let st = *self.store.state();
        let PhaseData::Downloading { download, .. } = st.phase else {
            return Err(CommitError::Illegal(IllegalTransition {
                from: st.phase.phase(),
                to: Phase::Downloading,
            }));
        };
        self.store
            .commit(flash, st.with(PhaseData::Downloading { download, repair }))
    }

    /// The first chunk at or after `from` that is still missing. Cost: one marker read per
    /// chunk skipped.
    pub fn next_missing<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        from: ChunkIndex,
    ) -> Result<Option<ChunkIndex>, NorFlashErrorKind> {
        let Some(d) = self.downloading() else {
            return Ok(None);
        };
        for i in from.0..d.header.chunk_count() {
            if !self.chunk_marked(flash, &d, i)? {
                return Ok(Some(ChunkIndex(i)));
            }
        }
        Ok(None)
    }

    /// Fills `out` with missing chunk indices in ascending order from `from`; returns how
    /// many. This is what a device asks the server for when it paces the transfer.
    pub fn missing_chunks<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        from: ChunkIndex,
        out: &mut [ChunkIndex],
    ) -> Result<usize, NorFlashErrorKind> {
        let mut n = 0;
        let mut next = from;
        while n < out.len() {
            match self.next_missing(flash, next)? {
                Some(i) => {
                    out[n] = i;
                    n += 1;
                    next = ChunkIndex(i.0 + 1);
                }
                None => break,
            }
        }
        Ok(n)
    }

    /// Verifies chunk `index` against the manifest's digest, writes it to staging and records
    /// it. Chunks may come in any order; a chunk already recorded is a `Duplicate` and is not
    /// written again.
    ///
    /// Cost: one SHA-256 of the chunk, a 16-byte read of its digest, a read of its slot (to
    /// find an earlier write that did not finish), one write of the chunk (two when its length
    /// is not a multiple of the write size: the last word is padded) and one word write for
    /// the marker. Never erases and never writes a state record:
    /// [`ChunkError::NeedsErase`] asks for [`erase_step`](Self::erase_step) (the chunk's
    /// staging sector is not erased yet, or a torn write must be repaired first).
    pub fn handle_chunk<F: NorFlash>(
        &mut self,
        flash: &mut F,
        index: ChunkIndex,
        data: &[u8],
    ) -> Result<ChunkOutcome, ChunkError> {
        let r = self.try_handle_chunk(flash, index, data);
        match &r {
            Err(ChunkError::NeedsErase) => debug!("ota: chunk {} needs erase steps first", index.0),
            Err(e) => warn!("ota: chunk {} refused: {:?}", index.0, e),
            Ok(_) => trace!("ota: chunk {} stored", index.0),
        }
        r
    }

    fn try_handle_chunk<F: NorFlash>(
        &mut self,
        flash: &mut F,
        index: ChunkIndex,
        data: &[u8],
    ) -> Result<ChunkOutcome, ChunkError> {
        let Some(d) = self.downloading() else {
            return Err(ChunkError::NotDownloading);
        };
        let expected = d.header.chunk_len(index).ok_or(ChunkError::BadIndex)?;
        if data.len() != expected as usize {
            return Err(ChunkError::BadLength {
                expected,
                got: u32::try_from(data.len()).unwrap_or(u32::MAX),
            });
        }
        if chunk_digest(data) != self.digest_entry(flash, &d, index.0)? {
            return Err(ChunkError::Corrupt);
        }
        if self.chunk_marked(flash, &d, index.0)? {
            return Ok(ChunkOutcome::Duplicate);
        }
        let offset = index.0 * d.header.chunk_size;
        let sector = self
            .image_sectors(&d)
            .find(|(_, s)| s.contains(&(self.store.layout.staging.start + offset)))
            .map(|(i, _)| i)
            .ok_or(ChunkError::BadIndex)?;
        if self.repair().is_some() || !self.sector_marked(flash, &d, sector)? {
            return Err(ChunkError::NeedsErase);
        }
        match self.slot(flash, &d, index.0)? {
            Slot::Erased => {
                let addr = self.store.layout.staging.start + offset;
                flash_ops::write_padded(flash, addr, data)?;
            }
            // The data made it before a failure, only the marker did not.
            Slot::Complete => {}
            Slot::Torn => {
                // A write of this chunk did not finish: its slot can only be cleaned by
                // erasing the sector. Nothing is lost: erase_work now reports the repair.
                warn!(
                    "ota: torn chunk write in staging sector {}: repair needed",
                    sector
                );
                self.torn_sector = Some(sector);
                return Err(ChunkError::NeedsErase);
            }
        }
        // Staging changed: a hash of it in progress is stale.
        self.hashing = None;
        let m = d.progress.chunk_marker(index.0);
        self.write_marker(flash, m.addr, m.bit)?;
        if let Some(d) = self.download.as_mut() {
            d.chunks_done += 1;
        }
        Ok(ChunkOutcome::Written)
    }

    /// Re-hashes the staged image from flash and, if it matches the manifest, records the
    /// phase Downloaded. On a mismatch the download is abandoned (Idle, IntegrityFailure).
    ///
    /// The one-call form of [`finish_step`](Self::finish_step): the whole image in one call
    /// (38 Cortex-M3 instructions a byte, see the crate README: 384 KiB ≈ 15 M instructions,
    /// at least 126 ms at 120 MHz and 7.5 times that at 16 MHz, with no chance to feed a
    /// watchdog or service the modem). Use `finish_step` where that is too long.
    ///
    /// Cost: one marker read per chunk (the missing count comes from flash), reads and hashes
    /// the whole image through `buf` (any length ≥ 1; 256 bytes or more is sensible), one
    /// state record write.
    ///
    /// # Errors
    /// As [`finish_step`](Self::finish_step).
    pub fn finish<F: NorFlash>(
        &mut self,
        flash: &mut F,
        buf: &mut [u8],
    ) -> Result<(), FinishError> {
        loop {
            if self.finish_step(flash, buf, u32::MAX)? == HashStep::Done {
                return Ok(());
            }
        }
    }

    /// One bounded step of [`finish`](Self::finish): hashes at most `max_bytes` more bytes of
    /// the staged image (at least one byte); the call that hashes the last byte compares the
    /// digest with the manifest's and records the result. Returns
    /// [`HashStep::Continue`] with the bytes hashed so far, then [`HashStep::Done`] once the
    /// phase Downloaded is recorded. Feed the watchdog, service the modem, or do anything else
    /// between calls, except change the download: `begin`, `cancel`, a written chunk or an
    /// erase step that touches staging start the hash over.
    ///
    /// The hash state lives in the `Updater` (a SHA-256 state: it makes the `Updater` about
    /// 150 bytes larger), not in flash:
    /// after a reset the hash starts over. A call after [`FinishError::NeedsErase`] and the
    /// erase step only records the result; it does not hash again.
    ///
    /// Cost: the first call reads one marker per chunk (the missing count comes from flash);
    /// each call reads and hashes at most `max_bytes` through `buf` (38 Cortex-M3 instructions
    /// a byte: 16 KiB ≈ 0.63 M instructions, at least 5 ms at 120 MHz); the last writes one
    /// state record.
    ///
    /// # Errors
    /// [`FinishError::NotDownloading`]; [`FinishError::BufferTooSmall`] for an empty `buf`;
    /// [`FinishError::Incomplete`] with the number of chunks still missing (nothing hashed);
    /// [`FinishError::IntegrityFailure`]: the image does not hash to the manifest's digest, the
    /// download was abandoned (Idle, IntegrityFailure recorded); [`FinishError::NeedsErase`]:
    /// run [`erase_step`](Self::erase_step), then call again (the hash is kept);
    /// [`FinishError::Flash`] (the hash starts over at the next call).
    pub fn finish_step<F: NorFlash>(
        &mut self,
        flash: &mut F,
        buf: &mut [u8],
        max_bytes: u32,
    ) -> Result<HashStep, FinishError> {
        let st = *self.store.state();
        let (d, dl) = match (self.download, st.phase) {
            (Some(d), PhaseData::Downloading { download, .. }) => (d, download),
            _ => return Err(FinishError::NotDownloading),
        };
        if buf.is_empty() {
            return Err(FinishError::BufferTooSmall);
        }
        let target = HashTarget::Staged(dl.manifest_digest);
        let state = match self.hashing.take() {
            Some(h) if h.target == target => h.state,
            _ => {
                // Counted from flash, not from the running count: the markers are the record.
                let mut missing = 0;
                for i in 0..d.header.chunk_count() {
                    if !self.chunk_marked(flash, &d, i)? {
                        missing += 1;
                    }
                }
                if missing > 0 {
                    return Err(FinishError::Incomplete { missing });
                }
                HashState::Running {
                    hasher: Sha256::new(),
                    done: 0,
                }
            }
        };
        let got =
            match self.hash_piece(flash, target, state, d.header.image_size, buf, max_bytes)? {
                Ok(step) => return Ok(step),
                Err(digest) => digest,
            };
        if got != d.header.image_digest {
            error!("ota: staged image does not match the manifest's digest: abandoned");
            let next = OtaState {
                result: UpdateResult::IntegrityFailure,
                phase: PhaseData::Idle { staged: dl.image },
                ..st
            };
            if let Err(e) = self.store.commit(flash, next) {
                self.hashing = Some(Hashing {
                    target,
                    state: HashState::Finished(got),
                });
                return Err(e.into());
            }
            self.download = None;
            self.torn_sector = None;
            return Err(FinishError::IntegrityFailure);
        }
        let next = st.with(PhaseData::Downloaded { download: dl });
        if let Err(e) = self.store.commit(flash, next) {
            self.hashing = Some(Hashing {
                target,
                state: HashState::Finished(got),
            });
            return Err(e.into());
        }
        Ok(HashStep::Done)
    }

    /// Hashes the next piece (at most `max_bytes`, at least 1) of `total` bytes at the start
    /// of the staging (for [`HashTarget::Staged`]) or active slot. `Ok(Ok(step))` when more is
    /// left (the state is kept for the next call), `Ok(Err(digest))` once all is hashed.
    fn hash_piece<F: ReadNorFlash>(
        &mut self,
        flash: &mut F,
        target: HashTarget,
        state: HashState,
        total: u32,
        buf: &mut [u8],
        max_bytes: u32,
    ) -> Result<Result<HashStep, Sha256Digest>, NorFlashErrorKind> {
        let (mut hasher, done) = match state {
            HashState::Running { hasher, done } => (hasher, done),
            HashState::Finished(digest) => return Ok(Err(digest)),
        };
        let l = &self.store.layout;
        let start = match target {
            HashTarget::Staged(_) => l.staging.start,
            HashTarget::Active(..) => l.active.start,
        };
        let n = total.saturating_sub(done).min(max_bytes.max(1));
        flash_ops::hash_into(flash, start + done, n, buf, &mut hasher)?;
        let done = done + n;
        if done < total {
            self.hashing = Some(Hashing {
                target,
                state: HashState::Running { hasher, done },
            });
            return Ok(Ok(HashStep::Continue {
                hashed: done,
                total,
            }));
        }
        Ok(Err(Sha256Digest(hasher.finalize().into())))
    }

    /// Requests the install of the downloaded image: the bootloader swaps it in at the next
    /// reset and boots it on trial. Reset the device after this returns. One record write.
    pub fn mark_install<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), StateError> {
        let st = *self.store.state();
        let PhaseData::Downloaded { download } = st.phase else {
            return Err(StateError::WrongPhase(st.phase.phase()));
        };
        let new_len = download.image.map_or(0, |s| s.size);
        let old_len = st.active.map_or(self.store.capacity, |a| a.size);
        // Round up to whole swap units.
        let want = new_len.max(old_len);
        let l = self.store.layout;
        let mut swap_len = 0;
        while swap_len < want {
            match l.unit_end(swap_len) {
                Some(e) => swap_len = e,
                None => break,
            }
        }
        self.store.commit(
            flash,
            OtaState {
                result: UpdateResult::Initial,
                phase: PhaseData::Installing {
                    download,
                    swap: Swap::start(swap_len),
                },
                ..st
            },
        )?;
        self.download = None;
        self.torn_sector = None;
        self.hashing = None;
        Ok(())
    }

    /// Confirms the trial image: it becomes the confirmed image, and the stored security
    /// counter rises to its counter (never down). One record write.
    pub fn mark_confirmed<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), StateError> {
        let st = *self.store.state();
        let PhaseData::Trial { download, .. } = st.phase else {
            return Err(StateError::WrongPhase(st.phase.phase()));
        };
        let active = download.image;
        let counter = active.map_or(st.security_counter, |a| {
            a.security_counter.max(st.security_counter)
        });
        self.store
            .commit(
                flash,
                OtaState {
                    result: UpdateResult::Success,
                    security_counter: counter,
                    active: active.or(st.active),
                    phase: PhaseData::Idle { staged: None },
                },
            )
            .map_err(StateError::from)
    }

    /// Rejects the trial image now: the bootloader reverts to the confirmed image at the next
    /// reset. One record write.
    pub fn mark_failed<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), StateError> {
        let st = *self.store.state();
        let PhaseData::Trial { download, swap, .. } = st.phase else {
            return Err(StateError::WrongPhase(st.phase.phase()));
        };
        warn!("ota: trial image rejected: the bootloader reverts at the next reset");
        self.store
            .commit(
                flash,
                st.with(PhaseData::Reverting {
                    download,
                    swap: Swap::start(swap.len),
                }),
            )
            .map_err(StateError::from)
    }

    /// Factory provisioning: records that the active slot holds the image `manifest`
    /// describes, and stores its security counter. Without it a device knows no confirmed
    /// image, so its first install swaps the whole slot. Allowed once, while Idle.
    ///
    /// Whatever policy the manifest was verified against, this device's applies
    /// ([`StateError::Refused`]: hardware id, anti-rollback, size), as in
    /// [`begin`](Self::begin).
    ///
    /// The one-call form of [`provision_step`](Self::provision_step): hashes the whole image
    /// in one call.
    ///
    /// Cost: hashes the image in the active slot through `buf`; one record write.
    ///
    /// # Errors
    /// As [`provision_step`](Self::provision_step).
    pub fn provision<F: NorFlash>(
        &mut self,
        flash: &mut F,
        manifest: &VerifiedManifest<'_>,
        buf: &mut [u8],
    ) -> Result<(), StateError> {
        loop {
            if self.provision_step(flash, manifest, buf, u32::MAX)? == HashStep::Done {
                return Ok(());
            }
        }
    }

    /// One bounded step of [`provision`](Self::provision): hashes at most `max_bytes` more
    /// bytes of the active slot (at least one byte); the call that hashes the last byte
    /// compares the digest with the manifest's and records the image. Call it with the same
    /// manifest until it returns [`HashStep::Done`]; another manifest starts over. The hash
    /// state lives in the `Updater` (RAM), as for [`finish_step`](Self::finish_step).
    ///
    /// Cost: each call reads and hashes at most `max_bytes` through `buf` (38 Cortex-M3
    /// instructions a byte); the last writes one record.
    ///
    /// # Errors
    /// [`StateError::WrongPhase`] unless Idle; [`StateError::AlreadyProvisioned`];
    /// [`StateError::Refused`] by this device's policy; [`StateError::BufferTooSmall`] for an
    /// empty `buf`; [`StateError::ImageMismatch`] if the active slot does not hash to the
    /// manifest's digest (nothing written); [`StateError::NeedsErase`]: run
    /// [`erase_step`](Self::erase_step), then call again (the hash is kept);
    /// [`StateError::Flash`].
    pub fn provision_step<F: NorFlash>(
        &mut self,
        flash: &mut F,
        manifest: &VerifiedManifest<'_>,
        buf: &mut [u8],
        max_bytes: u32,
    ) -> Result<HashStep, StateError> {
        let st = *self.store.state();
        if !matches!(st.phase, PhaseData::Idle { .. }) {
            return Err(StateError::WrongPhase(st.phase.phase()));
        }
        if st.active.is_some() {
            return Err(StateError::AlreadyProvisioned);
        }
        let h = manifest.header();
        self.policy().check(h).map_err(StateError::Refused)?;
        if buf.is_empty() {
            return Err(StateError::BufferTooSmall);
        }
        let target = HashTarget::Active(h.image_digest, h.image_size);
        let state = match self.hashing.take() {
            Some(x) if x.target == target => x.state,
            _ => HashState::Running {
                hasher: Sha256::new(),
                done: 0,
            },
        };
        let got = match self.hash_piece(flash, target, state, h.image_size, buf, max_bytes)? {
            Ok(step) => return Ok(step),
            Err(digest) => digest,
        };
        if got != h.image_digest {
            return Err(StateError::ImageMismatch);
        }
        let next = OtaState {
            active: Some(ImageSummary {
                version: h.version,
                security_counter: h.security_counter,
                size: h.image_size,
                digest: h.image_digest,
            }),
            security_counter: h.security_counter.max(st.security_counter),
            ..st
        };
        if let Err(e) = self.store.commit(flash, next) {
            self.hashing = Some(Hashing {
                target,
                state: HashState::Finished(got),
            });
            return Err(e.into());
        }
        Ok(HashStep::Done)
    }

    /// Abandons the download in progress (or the downloaded image) and records `result`
    /// (for example [`UpdateResult::Cancelled`]). One record write.
    pub fn cancel<F: NorFlash>(
        &mut self,
        flash: &mut F,
        result: UpdateResult,
    ) -> Result<(), StateError> {
        let st = *self.store.state();
        if !matches!(
            st.phase,
            PhaseData::Downloading { .. } | PhaseData::Downloaded { .. }
        ) {
            return Err(StateError::WrongPhase(st.phase.phase()));
        }
        self.store.commit(
            flash,
            OtaState {
                result,
                phase: PhaseData::Idle { staged: None },
                ..st
            },
        )?;
        self.download = None;
        self.torn_sector = None;
        self.hashing = None;
        Ok(())
    }
}
