//! The frame path both transports share: one up frame in, the frames to send back out (or a
//! counted refusal), with every state change committed to the [`Store`] before the answer.
//!
//! `peek_up` → [`Store::keys`] (cached) → `authenticate` → the device's record (from the
//! [`frame_cache`](crate::frame_cache), else [`Store::last_frame`]) → `admit` (pure) → build the
//! answer → [`Store::commit_frame`] (CAS + effects, one transaction) → answer only after
//! `Ok(true)`; `Ok(false)`: read the record from the store and re-admit (3 tries). A refusal
//! decided on a cached record is re-checked on the stored one.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cloud_proto::{
    admit, authenticate, peek_up, respond, serve_chunks, Admission, AdmitError, DeviceId, Down,
    FirmwareVersion, FrameError, Keys, LastFrame, ManifestRef, NackCode, Object, ReplayPolicy,
    Request, Served, SleepGrant, Up, UpdateOffer, Welcome, MAX_FRAME,
};

use crate::frame_cache::FrameCache;
use crate::limit::{InFlight, Limited, Limiter, Limits};
use crate::logging::DropLog;
use crate::metrics::{Answered, FrameMetrics};
use crate::release::{Payload, PayloadError};
use crate::rollout::{choose_offer, ReleaseId, RolloutId};
use crate::store::{Effects, FrameCommit, ProductId, Release, ReleaseDigest, Store, StoreError};

/// The server's clock: Unix milliseconds. Injected so tests choose every `now`.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock ([`std::time::SystemTime`], Unix ms).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// Server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Retransmission window and answer limit (`admit`'s policy).
    pub policy: ReplayPolicy,
    /// The sleep every `Welcome` grants: next check-in in this many seconds.
    pub next_checkin_s: u32,
    /// Extra awake time asked for when the `Welcome` carries an offer.
    pub offer_awake_extension_ms: u32,
    /// Rate limits and the in-flight cap ([`crate::limit`]).
    pub limits: Limits,
}

impl Default for ServerConfig {
    /// `ReplayPolicy::DEFAULT`, check in hourly, 30 s more awake time with an offer,
    /// [`Limits::DEFAULT`].
    fn default() -> Self {
        Self {
            policy: ReplayPolicy::DEFAULT,
            next_checkin_s: 3600,
            offer_awake_extension_ms: 30_000,
            limits: Limits::DEFAULT,
        }
    }
}

/// Why a frame got no answer. Nothing was stored for any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dropped {
    /// Framing or tag (truncated, too large, wrong direction, bad tag…).
    Frame(FrameError),
    /// No such device.
    UnknownDevice(DeviceId),
    /// Authentic, but `admit` refused it (replay, reused counter, copy from elsewhere…).
    Refused(AdmitError),
    /// The device's record kept changing under concurrent instances (3 tries).
    Conflict,
    /// The store failed; the device will retransmit.
    Store(StoreError),
    /// A stored release could not be read back to build the answer.
    Release(PayloadError),
    /// The answer could not be sealed (a server bug; the message says which).
    Internal(&'static str),
    /// A rate limit or the in-flight cap refused it ([`crate::limit`]).
    Limited(Limited),
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => write!(f, "frame refused: {e}"),
            Self::UnknownDevice(d) => write!(f, "unknown device {}", d.0),
            Self::Refused(e) => fmt::Display::fmt(e, f),
            Self::Conflict => f.write_str("device record changed concurrently"),
            Self::Store(e) => write!(f, "store failed: {e}"),
            Self::Release(e) => fmt::Display::fmt(e, f),
            Self::Internal(why) => write!(f, "internal error: {why}"),
            Self::Limited(l) => fmt::Display::fmt(l, f),
        }
    }
}

impl std::error::Error for Dropped {}

impl From<StoreError> for Dropped {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Frames dropped, by reason, since the server started (exported by `/metrics` and
/// `GET /api/v1/drops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts {
    /// [`Dropped::Frame`].
    pub frame: u64,
    /// [`Dropped::UnknownDevice`].
    pub unknown_device: u64,
    /// [`AdmitError::Replayed`].
    pub replayed: u64,
    /// [`AdmitError::CounterReused`].
    pub counter_reused: u64,
    /// [`AdmitError::OtherSource`].
    pub other_source: u64,
    /// [`AdmitError::RetransmissionRefused`].
    pub retransmission_refused: u64,
    /// [`AdmitError::CounterExhausted`] (and any refusal a later cloud-proto adds).
    pub counter_exhausted: u64,
    /// [`Dropped::Conflict`].
    pub conflict: u64,
    /// [`Dropped::Store`], [`Dropped::Release`], [`Dropped::Internal`]: the server's own
    /// failures.
    pub internal: u64,
    /// [`Limited::InFlight`]: the server had [`Limits::max_in_flight`] frames in hand.
    pub limited_in_flight: u64,
    /// [`Limited::Source`]: a source address over its rate, before authentication.
    pub limited_source: u64,
    /// [`Limited::Device`]: an authenticated device over its rate.
    pub limited_device: u64,
}

#[derive(Default)]
struct Counts([AtomicU64; 12]);

impl Counts {
    fn count(&self, d: &Dropped) {
        let i = match d {
            Dropped::Frame(_) => 0,
            Dropped::UnknownDevice(_) => 1,
            Dropped::Refused(AdmitError::Replayed { .. }) => 2,
            Dropped::Refused(AdmitError::CounterReused { .. }) => 3,
            Dropped::Refused(AdmitError::OtherSource { .. }) => 4,
            Dropped::Refused(AdmitError::RetransmissionRefused { .. }) => 5,
            Dropped::Refused(_) => 6,
            Dropped::Conflict => 7,
            Dropped::Store(_) | Dropped::Release(_) | Dropped::Internal(_) => 8,
            Dropped::Limited(Limited::InFlight) => 9,
            Dropped::Limited(Limited::Source) => 10,
            Dropped::Limited(Limited::Device) => 11,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DropCounts {
        let g = |i: usize| self.0[i].load(Ordering::Relaxed);
        DropCounts {
            frame: g(0),
            unknown_device: g(1),
            replayed: g(2),
            counter_reused: g(3),
            other_source: g(4),
            retransmission_refused: g(5),
            counter_exhausted: g(6),
            conflict: g(7),
            internal: g(8),
            limited_in_flight: g(9),
            limited_source: g(10),
            limited_device: g(11),
        }
    }
}

/// The frames to send back, in order (one message frame, or a chunk request's chunk frames).
#[must_use = "send the frames: their effects are committed"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Sealed frames, each at most `MAX_FRAME` bytes.
    pub frames: Vec<Vec<u8>>,
}

/// What the server caches per device: things that change only when it is re-provisioned.
#[derive(Clone)]
struct DeviceEntry {
    keys: Keys,
    product: ProductId,
}

/// The protocol server over a store `S`. Keeps in memory only caches of what never changes for
/// a given key (device keys and products, release payloads by digest) and each device's replay
/// record as a hint that the store's compare-and-set validates ([`crate::frame_cache`]):
/// everything a device reported always goes to the store, and the stored record decides.
pub struct Server<S> {
    store: Arc<S>,
    config: ServerConfig,
    clock: Clock,
    devices: Mutex<HashMap<DeviceId, DeviceEntry>>,
    payloads: Mutex<HashMap<ReleaseDigest, Arc<Payload>>>,
    /// Releases by id: a stored release never changes and is never deleted. (Rollouts are
    /// never cached: a pause on any instance shows at the next check-in.)
    releases: Mutex<HashMap<ReleaseId, Release>>,
    /// Each device's replay record as last read or committed here, validated by the store's
    /// compare-and-set ([`crate::frame_cache`]).
    frames: FrameCache,
    drops: Counts,
    metrics: FrameMetrics,
    drop_log: DropLog,
    limiter: Limiter,
}

impl<S> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Server<S> {
    /// A server over `store`.
    pub fn new(store: Arc<S>, config: ServerConfig, clock: Clock) -> Self {
        Self {
            store,
            config,
            clock,
            devices: Mutex::new(HashMap::new()),
            payloads: Mutex::new(HashMap::new()),
            releases: Mutex::new(HashMap::new()),
            frames: FrameCache::new(crate::frame_cache::DEFAULT_CAPACITY),
            drops: Counts::default(),
            metrics: FrameMetrics::default(),
            drop_log: DropLog::default(),
            limiter: Limiter::new(config.limits),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Its settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The server's clock, now.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// Frames dropped so far, by reason.
    pub fn drops(&self) -> DropCounts {
        self.drops.snapshot()
    }

    /// What the frame path counted (for `/metrics`).
    pub fn metrics(&self) -> &FrameMetrics {
        &self.metrics
    }

    /// Replaces the log of dropped frames (its limiter's interval and table size).
    pub fn with_drop_log(mut self, log: DropLog) -> Self {
        self.drop_log = log;
        self
    }

    /// Replaces the frame cache with one of at most `devices` devices (0 turns it off: every
    /// frame reads the device's record from the store). See [`crate::frame_cache`] for the
    /// memory per device; the default is [`DEFAULT_CAPACITY`](crate::frame_cache::DEFAULT_CAPACITY).
    pub fn with_frame_cache(mut self, devices: usize) -> Self {
        self.frames = FrameCache::new(devices);
        self
    }

    /// Takes one of the [`Limits::max_in_flight`] slots for a frame about to be handled, held
    /// until the guard drops; transports call it before copying a frame or spawning its task.
    /// Errors: [`Dropped::Limited`]`(InFlight)`, counted.
    pub fn try_begin(&self) -> Result<InFlight, Dropped> {
        self.limiter.try_begin().map_err(|l| self.refuse(l))
    }

    /// Charges one frame to `source`'s bucket (a UDP source address, or a TCP connection's
    /// peer address) at the server's clock; transports call it first, before any work on the
    /// frame. Errors: [`Dropped::Limited`]`(Source)`, counted. Cost: a hash-map lookup.
    pub fn check_source(&self, source: SocketAddr) -> Result<(), Dropped> {
        self.limiter
            .check_source(source, self.now_ms())
            .map_err(|l| self.refuse(l))
    }

    fn refuse(&self, l: Limited) -> Dropped {
        let d = Dropped::Limited(l);
        self.drops.count(&d);
        d
    }

    /// Handles one up frame received from `source` at the server's clock's now.
    /// See [`handle_frame_at`](Self::handle_frame_at).
    pub async fn handle_frame(&self, frame: &[u8], source: SocketAddr) -> Result<Answer, Dropped> {
        self.handle_frame_at(frame, source, self.now_ms()).await
    }

    /// Handles one up frame received from `source` at `now_ms` (Unix ms): returns the frames to
    /// send back to `source`, whose effects (the device's new replay record, its report,
    /// publishes, status, decision, traffic counters) are **committed** already. On a byte
    /// stream pass the peer's IP address with port 0 (`docs/protocol.md` §4.4).
    ///
    /// Errors: [`Dropped`], counted by reason ([`drops`](Self::drops)); nothing is stored and
    /// nothing must be sent. Cost: a key lookup (cached after the first), one HMAC, one
    /// transaction per try (at most 3), one record read when the frame cache misses, a commit
    /// is refused, or a cached record refuses the frame, plus for a check-in one
    /// [`Store::offer_candidates`] query (the offered release and its payload are cached by
    /// id and digest: releases never change), for a chunk request one
    /// [`Store::serves_release`] query and up to 64 chunk seals.
    pub async fn handle_frame_at(
        &self,
        frame: &[u8],
        source: SocketAddr,
        now_ms: u64,
    ) -> Result<Answer, Dropped> {
        let started = std::time::Instant::now();
        match self.handle(frame, source, now_ms).await {
            Ok((answer, info)) => {
                let bytes = answer.frames.iter().map(|f| f.len() as u64).sum();
                self.metrics.answered(info, bytes, started.elapsed());
                Ok(answer)
            }
            Err(d) => {
                self.drops.count(&d);
                let _ = self.drop_log.dropped(&d, frame, source, now_ms);
                Err(d)
            }
        }
    }

    async fn handle(
        &self,
        frame: &[u8],
        source: SocketAddr,
        now_ms: u64,
    ) -> Result<(Answer, Answered), Dropped> {
        let (device, _) = peek_up(frame).map_err(Dropped::Frame)?;
        let entry = self.device(device).await?;
        let verified = authenticate(frame, &entry.keys).map_err(Dropped::Frame)?;
        // Only an authentic frame spends the device's allowance (crate::limit).
        self.limiter
            .check_device(device, now_ms)
            .map_err(Dropped::Limited)?;
        // The record comes from the frame cache when it has the device; the commit's
        // compare-and-set validates it (crate::frame_cache).
        let (mut last, mut cached) = match self.frames.get(device) {
            Some(last) => (last, true),
            None => (self.read_last_frame(device).await?, false),
        };
        let mut tries = 0;
        while tries < 3 {
            let admission = admit(verified, last.as_ref(), source, now_ms, self.config.policy);
            let mut info = Answered::nacked();
            let (record, frames, new_msg) = match admission {
                // A refusal on a cached record is confirmed on the stored one.
                Admission::Refused(_) if cached => {
                    (last, cached) = (self.read_last_frame(device).await?, false);
                    continue;
                }
                Admission::Refused(e) => return Err(Dropped::Refused(e)),
                Admission::New { request, record } => {
                    info = Answered::message(&request, false);
                    let (frames, offer) = self.answer(&entry, &request, now_ms, &mut info).await?;
                    (record, frames, Some((request.msg, offer)))
                }
                Admission::Retransmission { request, record } => {
                    info = Answered::message(&request, true);
                    let (frames, _) = self.answer(&entry, &request, now_ms, &mut info).await?;
                    (record, frames, None)
                }
                Admission::Nack {
                    counter,
                    code,
                    record,
                    ..
                } => {
                    let f = self.seal(&entry.keys, device, counter, &Down::Nack(code))?;
                    (record, vec![f], None)
                }
            };
            let up = frame.len() as u64;
            let down = frames.iter().map(|f| f.len() as u64).sum();
            let effects = match &new_msg {
                Some((msg, offer)) => Effects {
                    // The offer's row in its rollout is written with the frame.
                    offer: *offer,
                    ..Effects::of_request(msg, now_ms, up, down)
                },
                None => Effects::counters_only(now_ms, up, down),
            };
            let commit = FrameCommit {
                device,
                expected: last,
                record,
                effects,
            };
            tries += 1;
            match self.store.commit_frame(commit).await {
                Ok(true) => {
                    self.frames.committed(device, last, record);
                    return Ok((Answer { frames }, info));
                }
                Ok(false) => {
                    self.frames.forget(device);
                    (last, cached) = (self.read_last_frame(device).await?, false);
                }
                Err(e) => {
                    // It may have been applied (a lost connection after the commit).
                    self.frames.forget(device);
                    return Err(e.into());
                }
            }
        }
        Err(Dropped::Conflict)
    }

    /// The device's record from the store, remembered in the frame cache.
    async fn read_last_frame(&self, device: DeviceId) -> Result<Option<LastFrame>, Dropped> {
        let last = self.store.last_frame(device).await?;
        self.frames.read(device, last);
        Ok(last)
    }

    /// The device's cached keys and product, loaded on first use.
    async fn device(&self, id: DeviceId) -> Result<DeviceEntry, Dropped> {
        if let Some(e) = self.lock_devices().get(&id) {
            return Ok(e.clone());
        }
        let keys = self
            .store
            .keys(id)
            .await?
            .ok_or(Dropped::UnknownDevice(id))?;
        let product = self
            .store
            .device(id)
            .await?
            .ok_or(Dropped::UnknownDevice(id))?
            .product;
        let e = DeviceEntry { keys, product };
        self.lock_devices().insert(id, e.clone());
        Ok(e)
    }

    fn lock_devices(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, DeviceEntry>> {
        // A panic while holding it left a plain map: still usable.
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn payload(&self, release: &Release) -> Result<Arc<Payload>, Dropped> {
        let cached = self
            .payloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&release.digest)
            .cloned();
        if let Some(p) = cached {
            return Ok(p);
        }
        let p = Arc::new(Payload::load(release).await.map_err(Dropped::Release)?);
        self.payloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(release.digest, p.clone());
        Ok(p)
    }

    fn seal(
        &self,
        keys: &Keys,
        device: DeviceId,
        counter: u32,
        msg: &Down<'_>,
    ) -> Result<Vec<u8>, Dropped> {
        let mut out = vec![0u8; MAX_FRAME];
        // Our own answers always fit a frame (an inline manifest is bounded by
        // MAX_INLINE_MANIFEST); a failure here is the server's.
        let n = respond(keys, device, counter, msg, &mut out)
            .map_err(|_| Dropped::Internal("answer does not fit a frame"))?;
        out.truncate(n);
        Ok(out)
    }

    /// A release by id (cached: releases never change), `None` when there is none or it is
    /// not of `product`.
    async fn release_of(
        &self,
        id: ReleaseId,
        product: ProductId,
    ) -> Result<Option<Release>, Dropped> {
        let cached = self
            .releases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let r = match cached {
            Some(r) => r,
            None => {
                let Some(r) = self.store.release_by_id(id).await? else {
                    return Ok(None);
                };
                self.releases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, r.clone());
                r
            }
        };
        Ok((r.product == product).then_some(r))
    }

    /// The offer for a device running `firmware` at `now_ms`: read the rollouts that may
    /// offer it something ([`Store::offer_candidates`], never cached) and pick with
    /// [`choose_offer`] (newest version; share, pause and deferral rules there).
    async fn offer_for(
        &self,
        entry: &DeviceEntry,
        device: DeviceId,
        firmware: FirmwareVersion,
        now_ms: u64,
    ) -> Result<Option<(RolloutId, ReleaseId, Release)>, Dropped> {
        let candidates = self.store.offer_candidates(device).await?;
        let Some(c) = choose_offer(&candidates, device, firmware, now_ms) else {
            return Ok(None);
        };
        Ok(self
            .release_of(c.release, entry.product)
            .await?
            .map(|r| (c.rollout, c.release, r)))
    }

    /// The frames answering `req` (a new request or a retransmission: built the same way),
    /// and the rollout and release a `Welcome` offers; the chunks served are noted in `info`.
    async fn answer(
        &self,
        entry: &DeviceEntry,
        req: &Request<'_>,
        now_ms: u64,
        info: &mut Answered,
    ) -> Result<(Vec<Vec<u8>>, Option<(RolloutId, ReleaseId)>), Dropped> {
        let (device, counter) = (req.device, req.counter);
        match &req.msg {
            Up::CheckIn(c) => {
                let offer = self.offer_for(entry, device, c.firmware, now_ms).await?;
                let payload = match &offer {
                    Some((_, _, r)) => Some(self.payload(r).await?),
                    None => None,
                };
                let offered = offer.as_ref().map(|(ro, id, _)| (*ro, *id));
                let offer = offer
                    .zip(payload.as_deref())
                    .map(|((_, id, r), p)| UpdateOffer {
                        update: id.update_id(),
                        version: r.version,
                        image_size: u32::try_from(p.image.len()).unwrap_or(u32::MAX),
                        manifest: ManifestRef::for_manifest(&p.manifest),
                    });
                let welcome = Welcome {
                    server_time: u32::try_from(now_ms / 1000).unwrap_or(u32::MAX),
                    // Every publish of the check-in is stored by the commit before this goes out.
                    publishes_acked: u8::try_from(c.publishes.len()).unwrap_or(u8::MAX),
                    sleep: SleepGrant {
                        next_checkin_s: self.config.next_checkin_s,
                        awake_extension_ms: if offer.is_some() {
                            self.config.offer_awake_extension_ms
                        } else {
                            0
                        },
                    },
                    offer,
                };
                let frame = self.seal(&entry.keys, device, counter, &Down::Welcome(welcome))?;
                Ok((vec![frame], offered))
            }
            Up::ChunkRequest(r) => {
                // Served when the release is of the device's product and a rollout that is
                // not cancelled offered it to this device (a paused one still serves).
                let id = ReleaseId::of_update(r.update);
                let release = match self.release_of(id, entry.product).await? {
                    Some(rel) if self.store.serves_release(device, id).await? => Some(rel),
                    _ => None,
                };
                let Some(release) = release else {
                    let nack = Down::Nack(NackCode::UnknownUpdate);
                    return Ok((vec![self.seal(&entry.keys, device, counter, &nack)?], None));
                };
                let p = self.payload(&release).await?;
                let object = match r.object {
                    Object::Manifest => &p.manifest,
                    Object::Image => &p.image,
                };
                let mut frames = Vec::new();
                let mut out = vec![0u8; MAX_FRAME];
                let served = serve_chunks(&entry.keys, req, object, &mut out, |f| {
                    frames.push(f.to_vec())
                })
                .map_err(|_| Dropped::Internal("chunk does not fit a frame"))?;
                if let Served::Chunks(_) = served {
                    info.note_chunks(&req.msg, object.len());
                }
                Ok((frames, None))
            }
            _ => Ok((
                vec![self.seal(&entry.keys, device, counter, &Down::Ack)?],
                None,
            )),
        }
    }
}
