//! The messages, encoded with postcard inside a frame (`docs/protocol.md`, section 3).
//!
//! Compatibility rule: the [`Up`] and [`Down`] enums and every enum inside them are
//! **append-only** (postcard encodes a variant as the varint of its declaration index), and a
//! struct never gains or loses a field: a new shape is a new variant. A receiver that meets an
//! unknown variant answers [`NackCode::UnknownMessage`] instead of guessing.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::frame::MAX_CHUNK_DATA;

/// Most publishes one check-in carries.
pub const MAX_PUBLISHES: usize = 4;
/// Most chunk ranges one request carries.
pub const MAX_RANGES: usize = 4;
/// Largest manifest a server sends [`ManifestRef::Inline`]: the `Welcome` frame then fits one
/// u-blox SARA UDP datagram (1024 bytes) whatever its other fields. Larger manifests are fetched.
pub const MAX_INLINE_MANIFEST: usize = 960;
/// Most chunks one request asks for (all ranges together). A chunk frame names its chunk by its
/// position in the request (one byte), and the device tracks a request's arrivals in a `u64`.
pub const MAX_CHUNKS_PER_REQUEST: u32 = 64;

/// A firmware version (semver without pre-release).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FirmwareVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

/// The server's handle for one offered update (chosen by the server; small numbers are
/// cheapest: a postcard varint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpdateId(pub u32);

/// LwM2M Object 5 resource 3, "State". Declared in code order, so the postcard byte **is** the
/// LwM2M value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OtaState {
    /// 0: no download in progress.
    #[default]
    Idle,
    /// 1: downloading (also a download paused by a sleep).
    Downloading,
    /// 2: downloaded and verified, waiting for the install.
    Downloaded,
    /// 3: installing, on trial, or reverting.
    Updating,
}

/// LwM2M Object 5 resource 5, "Update Result". Declared in code order, so the postcard byte
/// **is** the LwM2M value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UpdateResult {
    /// 0: initial value.
    #[default]
    Initial,
    /// 1: installed and confirmed.
    Success,
    /// 2: not enough flash for the image.
    NotEnoughFlash,
    /// 3: out of RAM.
    OutOfRam,
    /// 4: connection lost during the download.
    ConnectionLost,
    /// 5: integrity check failure (signature, chunk or image digest).
    IntegrityFailure,
    /// 6: unsupported package (wrong hardware, refused downgrade, unknown format).
    UnsupportedPackage,
    /// 7: invalid URI.
    InvalidUri,
    /// 8: the update failed (the trial image was reverted).
    UpdateFailed,
    /// 9: unsupported protocol.
    UnsupportedProtocol,
    /// 10: cancelled.
    Cancelled,
    /// 11: deferred.
    Deferred,
}

/// The device's OTA state, as LwM2M Object 5 reports it, plus where a download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OtaReport {
    /// LwM2M State.
    pub state: OtaState,
    /// LwM2M Update Result of the last operation.
    pub result: UpdateResult,
    /// The download in progress, so the server resumes it instead of offering anew.
    pub download: Option<DownloadProgress>,
}

/// Where a download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DownloadProgress {
    /// The update being downloaded.
    pub update: UpdateId,
    /// Image bytes held (verified and written).
    pub bytes_done: u32,
}

/// One application message batched into a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Publish<'a> {
    /// Application topic number (a dictionary id, not a string).
    pub topic: u16,
    /// Payload.
    pub data: &'a [u8],
}

/// The check-in: everything the cloud needs to know about this wake, in one frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CheckIn<'a> {
    /// Running firmware.
    pub firmware: FirmwareVersion,
    /// The running firmware is on trial (booted once, not yet confirmed).
    pub trial: bool,
    /// OTA state and download progress.
    pub ota: OtaReport,
    /// Battery voltage in millivolts.
    pub battery_mv: u16,
    /// Sleeps forced by the awake budget since the last check-in the cloud answered.
    pub forced_sleeps: u16,
    /// Batched publishes, acknowledged together by the [`Welcome`].
    #[serde(borrow)]
    pub publishes: Vec<Publish<'a>, MAX_PUBLISHES>,
}

/// Why a device postpones an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeferReason {
    /// Battery too low for a download or an install.
    LowBattery,
    /// Not enough awake time left in this wake.
    AwakeBudget,
    /// The application is in a phase it must not leave (a measurement campaign…).
    Busy,
}

/// Why a device refuses an update for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeclineReason {
    /// The manifest failed verification; carries the LwM2M Update Result (not enough flash,
    /// integrity failure or unsupported package).
    Rejected(UpdateResult),
    /// The device already runs this image.
    AlreadyInstalled,
}

/// The device's answer to an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decision {
    /// It will download the update; `bytes_done` image bytes are already held (a resume).
    Accept {
        /// Image bytes already held.
        bytes_done: u32,
    },
    /// Later: offer it again in `retry_in_s` seconds at the earliest (LwM2M result 11).
    Defer {
        /// Seconds.
        retry_in_s: u32,
        /// Why.
        reason: DeferReason,
    },
    /// Never (LwM2M result 10 or the rejection's result).
    Decline(DeclineReason),
}

/// A [`Decision`] about one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpdateDecision {
    /// The update.
    pub update: UpdateId,
    /// The decision.
    pub decision: Decision,
}

/// Which byte object of an update a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Object {
    /// The signed manifest (when the offer did not carry it inline).
    Manifest,
    /// The firmware image.
    Image,
}

/// A run of chunk indices `first .. first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChunkRange {
    /// First chunk index.
    pub first: u32,
    /// Number of chunks (at least 1).
    pub count: u32,
}

/// Device-paced transfer: "send me these chunks of this object". The server answers with one
/// chunk frame per chunk, in request order; chunk `i` is object bytes
/// `[i × chunk_size, min((i + 1) × chunk_size, len))`.
///
/// The device chooses `chunk_size` to fit its transport (a SARA UDP datagram carries at most
/// 1024 bytes, so at most [`MAX_CHUNK_DATA_DATAGRAM`](crate::frame::MAX_CHUNK_DATA_DATAGRAM)
/// there) and its verification unit; the server holds no transfer state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChunkRequest {
    /// The update.
    pub update: UpdateId,
    /// Which object.
    pub object: Object,
    /// Bytes per chunk, 1 to [`MAX_CHUNK_DATA`].
    pub chunk_size: u16,
    /// The chunks, at most [`MAX_CHUNKS_PER_REQUEST`] in all.
    pub ranges: Vec<ChunkRange, MAX_RANGES>,
}

impl ChunkRequest {
    /// Plans a request for the first chunks of `missing` (indices in increasing order; others
    /// are skipped), at most `max_chunks` of them (capped at [`MAX_CHUNKS_PER_REQUEST`]) in at
    /// most [`MAX_RANGES`] runs. `None` if nothing is missing or `max_chunks` is 0.
    ///
    /// The device passes what its progress record says is missing and, as `max_chunks`, what
    /// its remaining awake budget can carry, so a transfer stops cleanly at the budget.
    /// O(chunks planned + indices skipped).
    pub fn plan(
        update: UpdateId,
        object: Object,
        chunk_size: u16,
        missing: impl IntoIterator<Item = u32>,
        max_chunks: u32,
    ) -> Option<Self> {
        let limit = max_chunks.min(MAX_CHUNKS_PER_REQUEST);
        let mut ranges: Vec<ChunkRange, MAX_RANGES> = Vec::new();
        let mut total = 0u32;
        for i in missing {
            if total == limit {
                break;
            }
            match ranges.last_mut() {
                Some(r) if r.first.checked_add(r.count) == Some(i) => r.count += 1,
                Some(r) if i < r.first.saturating_add(r.count) => continue,
                _ => {
                    if ranges.push(ChunkRange { first: i, count: 1 }).is_err() {
                        break;
                    }
                }
            }
            total += 1;
        }
        let req = Self {
            update,
            object,
            chunk_size,
            ranges,
        };
        req.is_valid().then_some(req)
    }

    /// Total number of chunks asked for (saturating).
    pub fn chunk_count(&self) -> u32 {
        self.ranges
            .iter()
            .fold(0u32, |n, r| n.saturating_add(r.count))
    }

    /// The chunk index at position `slot` of the request, `None` past the end.
    pub fn chunk_at(&self, slot: u32) -> Option<u32> {
        let mut left = slot;
        for r in &self.ranges {
            if left < r.count {
                return r.first.checked_add(left);
            }
            left -= r.count;
        }
        None
    }

    /// The `(slot, chunk index)` pairs of the request, in the order their frames are sent.
    pub fn slots(&self) -> impl Iterator<Item = (u8, u32)> + '_ {
        self.ranges
            .iter()
            .flat_map(|r| (0..r.count).filter_map(move |k| r.first.checked_add(k)))
            .take(MAX_CHUNKS_PER_REQUEST as usize)
            .enumerate()
            .map(|(s, i)| (s as u8, i))
    }

    /// True if the request is well formed: a chunk size of 1 to [`MAX_CHUNK_DATA`], 1 to
    /// [`MAX_CHUNKS_PER_REQUEST`] chunks, no empty range, no index overflow, and ranges in
    /// increasing order without overlap (so no chunk is asked for twice).
    pub fn is_valid(&self) -> bool {
        let n = self.chunk_count();
        let mut next_free = 0u32; // the lowest index the next range may start at
        self.chunk_size >= 1
            && usize::from(self.chunk_size) <= MAX_CHUNK_DATA
            && (1..=MAX_CHUNKS_PER_REQUEST).contains(&n)
            && self.ranges.iter().enumerate().all(|(k, r)| {
                let Some(last) = r.count.checked_sub(1).and_then(|c| r.first.checked_add(c)) else {
                    return false;
                };
                let ok = k == 0 || r.first >= next_free;
                next_free = last.saturating_add(1);
                // A range ending at u32::MAX must be the last one.
                ok && !(last == u32::MAX && k + 1 < self.ranges.len())
            })
    }
}

/// The device's OTA state after a change (download complete, installed, reverted…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpdateStatus {
    /// The update.
    pub update: UpdateId,
    /// LwM2M State.
    pub state: OtaState,
    /// LwM2M Update Result.
    pub result: UpdateResult,
}

/// The device goes to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Goodbye {
    /// Seconds until the next wake.
    pub sleep_s: u32,
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NackCode {
    /// The message (or a variant inside it) is unknown to the receiver.
    UnknownMessage,
    /// Not valid in the receiver's current state.
    BadState,
    /// No such update, or it is no longer offered.
    UnknownUpdate,
    /// A chunk past the end of the object, or a malformed request.
    BadRequest,
}

/// Device → cloud messages. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Up<'a> {
    /// Wake-up report; answered by [`Down::Welcome`].
    #[serde(borrow)]
    CheckIn(CheckIn<'a>),
    /// Answer to an offer; answered by [`Down::Ack`].
    UpdateDecision(UpdateDecision),
    /// Chunks wanted; answered by chunk frames (or [`Down::Nack`]).
    ChunkRequest(ChunkRequest),
    /// OTA state change; answered by [`Down::Ack`].
    UpdateStatus(UpdateStatus),
    /// Going to sleep; answered by [`Down::Ack`].
    Goodbye(Goodbye),
}

/// How an offer carries its signed manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ManifestRef<'a> {
    /// The manifest bytes themselves (small manifests).
    Inline(&'a [u8]),
    /// Fetch it as [`Object::Manifest`] chunks; it is `len` bytes long.
    Fetch {
        /// Manifest length in bytes.
        len: u32,
    },
}

impl<'a> ManifestRef<'a> {
    /// How a server offers `manifest`: inline up to [`MAX_INLINE_MANIFEST`] bytes, fetched
    /// beyond.
    pub fn for_manifest(manifest: &'a [u8]) -> Self {
        if manifest.len() <= MAX_INLINE_MANIFEST {
            Self::Inline(manifest)
        } else {
            Self::Fetch {
                len: u32::try_from(manifest.len()).unwrap_or(u32::MAX),
            }
        }
    }
}

/// "An update is waiting for you." The version and size let a device defer or decline without
/// fetching the manifest; the signed manifest is the authority (checked end to end by the
/// device), the protocol only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpdateOffer<'a> {
    /// The server's handle.
    pub update: UpdateId,
    /// Firmware version of the image (as the manifest states it).
    pub version: FirmwareVersion,
    /// Image size in bytes (as the manifest states it).
    pub image_size: u32,
    /// The signed manifest, opaque to this protocol.
    #[serde(borrow)]
    pub manifest: ManifestRef<'a>,
}

/// When to come back, and how long the device may stay awake for this cloud's sake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SleepGrant {
    /// Seconds until the next check-in.
    pub next_checkin_s: u32,
    /// Extra awake time granted for an update, in ms; 0 = none. The device still enforces its
    /// own maximum.
    pub awake_extension_ms: u32,
}

/// The answer to a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Welcome<'a> {
    /// Server time, seconds since the Unix epoch.
    pub server_time: u32,
    /// How many of the check-in's publishes were stored (the first `n`).
    pub publishes_acked: u8,
    /// Sleep grant.
    pub sleep: SleepGrant,
    /// An update waiting for this device, if any.
    #[serde(borrow)]
    pub offer: Option<UpdateOffer<'a>>,
}

/// Cloud → device messages (chunk data travels in its own frame kind). Append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Down<'a> {
    /// Answer to a check-in.
    #[serde(borrow)]
    Welcome(Welcome<'a>),
    /// Acknowledges a decision, a status or a goodbye.
    Ack,
    /// The server refuses the request.
    Nack(NackCode),
}
