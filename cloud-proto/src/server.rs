//! The server endpoint: authenticate a device's frame ([`authenticate`]), decide on it purely
//! ([`admit`]), or both over a synchronous store ([`handle_datagram`] + [`DeviceStore`]); seal
//! the answers ([`respond`], [`serve_chunks`]). Stateless itself: what it keeps per device (key,
//! [`LastFrame`]) lives in the caller's database, so several server instances behind a load
//! balancer can share one. Time is an argument. The intended async use is documented on
//! [`admit`] (this module is private; its items are re-exported at the crate root).

use core::fmt;
use core::net::SocketAddr;

use crate::frame::{
    self, DeviceId, EncodeError, FrameError, Keys, VerifiedUp, CHUNK_HEADER_LEN, TAG_LEN,
};
use crate::message::{Down, NackCode, Up};

/// What the server remembers of the last frame it accepted from a device: enough to tell a
/// retransmission (same counter, same tag, from the same address, soon after, a few times)
/// from a replay, a copy injected from elsewhere, or a reused counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LastFrame {
    /// Its counter.
    pub counter: u32,
    /// Its tag.
    pub tag: [u8; TAG_LEN],
    /// When it was first accepted (the caller's clock, ms).
    pub accepted_at_ms: u64,
    /// The address it was first accepted from, where its answers went. Only copies from this
    /// address are answered again, so copies injected from elsewhere cannot use up the
    /// device's own retransmissions.
    pub source: SocketAddr,
    /// How many times it has been answered (the first acceptance included), all to `source`.
    pub answers: u8,
}

/// What the server keeps per device, for the synchronous wrapper [`handle_datagram`].
/// Implemented over a database, which must keep the [`LastFrame`] records across restarts;
/// [`MemoryStore`] (feature `std`) is an in-memory one for tests and tools. An async server
/// needs no implementation: it calls [`authenticate`] and [`admit`] and does these lookups
/// and the compare-and-set in its own I/O (as [`admit`] shows).
///
/// Crash safety: apply a request's effects and the [`replace_last_frame`] it caused in one
/// transaction where the effects matter (stored publishes). Otherwise a crash between the two
/// makes the device's retransmission look already applied.
///
/// [`replace_last_frame`]: DeviceStore::replace_last_frame
pub trait DeviceStore {
    /// A storage failure (database unreachable…).
    type Error;

    /// The device's keys (derive them once with [`Keys::derive`] and cache them), `None` for
    /// an unknown device.
    fn keys(&mut self, device: DeviceId) -> Result<Option<Keys>, Self::Error>;

    /// The last frame accepted from `device`, `None` before the first.
    fn last_frame(&mut self, device: DeviceId) -> Result<Option<LastFrame>, Self::Error>;

    /// Replaces the record **atomically if it still equals `expected`** (compare-and-set; in
    /// SQL an `UPDATE … WHERE` on the old values) and returns whether it did. Two server
    /// instances racing on one device thus cannot both accept one counter. Persist it before
    /// the answer is sent: a server that forgets a counter would accept a replay of it.
    fn replace_last_frame(
        &mut self,
        device: DeviceId,
        expected: Option<LastFrame>,
        new: LastFrame,
    ) -> Result<bool, Self::Error>;
}

/// How long, and how often, the last frame of a device is answered again as a retransmission
/// (only to the address it was first accepted from; see [`LastFrame::source`]). Outside these
/// bounds a copy of it is refused. The bounds cap what a sniffed frame can make the server
/// send: at most `max_answers` answers, all to one address, within `retransmit_window_ms` of
/// the first. The largest answer is a chunk request's: `MAX_CHUNKS_PER_REQUEST` chunk frames
/// of up to [`MAX_FRAME`](crate::MAX_FRAME) bytes, 66,304 bytes; so with the defaults at most
/// 265,216 bytes per sniffed frame (`docs/protocol.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReplayPolicy {
    /// Window after the first acceptance.
    pub retransmit_window_ms: u64,
    /// Answers in all, the first included (all to the frame's first source).
    pub max_answers: u8,
}

impl ReplayPolicy {
    /// 60 s and 4 answers: covers the device defaults (4 transmissions at 2, 4, 8 s backoff,
    /// the last 14 s after the first) with room for slow links.
    pub const DEFAULT: Self = Self {
        retransmit_window_ms: 60_000,
        max_answers: 4,
    };
}

impl Default for ReplayPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why the server does not take a frame. `Undecodable` and `InvalidRequest` are authentic and
/// fresh (the counter is used up): answer them with a `Nack`; drop the others silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestError<E> {
    /// Framing or tag: truncated, too large, unknown kind, wrong direction, bad tag.
    Frame(FrameError),
    /// No key for this device id.
    UnknownDevice(DeviceId),
    /// Authentic, but [`admit`] refused it (a replay, a copy outside the [`ReplayPolicy`] or from
    /// another address, a reused or exhausted counter): drop it, nothing was recorded.
    Refused(AdmitError),
    /// Authentic and fresh, but the body is not a message this version knows: answer
    /// `Nack(UnknownMessage)`.
    Undecodable {
        /// Sender.
        device: DeviceId,
        /// Its counter.
        counter: u32,
    },
    /// Authentic and fresh, but a chunk request that breaks the rules: answer
    /// `Nack(BadRequest)`.
    InvalidRequest {
        /// Sender.
        device: DeviceId,
        /// Its counter.
        counter: u32,
    },
    /// The device's record kept changing under concurrent instances; try again.
    Conflict,
    /// The store failed.
    Store(E),
}

impl<E> fmt::Display for RequestError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Frame and Store: the cause is the source, not repeated here.
            Self::Frame(_) => f.write_str("frame refused"),
            Self::UnknownDevice(d) => write!(f, "unknown device {}", d.0),
            // Transparent: the refusal says it all.
            Self::Refused(e) => fmt::Display::fmt(e, f),
            Self::Undecodable { device, counter } => {
                write!(
                    f,
                    "frame {counter} of device {} holds an unknown message",
                    device.0
                )
            }
            Self::InvalidRequest { device, counter } => {
                write!(
                    f,
                    "frame {counter} of device {} is an invalid request",
                    device.0
                )
            }
            Self::Conflict => f.write_str("device record changed concurrently"),
            Self::Store(_) => f.write_str("device store failed"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for RequestError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Frame(e) => Some(e),
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<FrameError> for RequestError<E> {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

/// An authenticated, fresh (or retransmitted) request.
#[must_use = "the device waits for an answer to it (its counter is used up)"]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request<'a> {
    /// Sender.
    pub device: DeviceId,
    /// Its counter (the answer is bound to it).
    pub counter: u32,
    /// The same frame was accepted before: answer it again as the first time (an answer that
    /// reflects what was applied then), but do not apply its effects twice.
    pub retransmission: bool,
    /// The message.
    pub msg: Up<'a>,
}

/// An up frame whose tag verified with its device's keys: the input of [`admit`]. Only
/// [`authenticate`] makes one, so nothing unverified reaches the replay decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Verified<'a> {
    up: VerifiedUp<'a>,
}

impl<'a> Verified<'a> {
    /// Sender.
    pub fn device(&self) -> DeviceId {
        self.up.device
    }

    /// Its counter (not yet checked for freshness: that is [`admit`]'s).
    pub fn counter(&self) -> u32 {
        self.up.counter
    }
}

/// Checks the tag of `frame` with `keys`, the keys of the device that [`peek_up`](crate::peek_up)
/// names (the caller looks them up, asynchronously if it likes, and answers
/// [`RequestError::UnknownDevice`] itself, or drops the frame, when there are none).
///
/// Errors: the framing errors of [`peek_up`](crate::peek_up) and [`FrameError::BadTag`]; drop the frame
/// silently. Cost: one HMAC-SHA256 over the frame; no copy.
pub fn authenticate<'a>(frame: &'a [u8], keys: &Keys) -> Result<Verified<'a>, FrameError> {
    frame::verify_up(keys, frame)
        .map(|up| Verified { up })
        .inspect_err(|e| log_frame_refused(frame, e))
}

/// Logs a frame refused before its tag verified: with the device id its header names, if any.
fn log_frame_refused(frame: &[u8], e: &FrameError) {
    match frame::peek_up(frame) {
        Ok((device, counter)) => warn!("device {}: frame {} refused: {}", device.0, counter, e),
        // Not even an up frame: noise from the network, not worth a warning.
        Err(_) => debug!("datagram refused: {}", e),
    }
}

/// Why [`admit`] refuses an authentic frame outright: drop it silently (answering would help an
/// attacker), store nothing. The sync wrapper returns it as [`RequestError::Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AdmitError {
    /// Counter `FFFFFFFF`, which no device sends ([`RequestError::Refused`]).
    CounterExhausted {
        /// Sender.
        device: DeviceId,
    },
    /// Below the last counter accepted ([`RequestError::Refused`]).
    Replayed {
        /// The frame's counter.
        counter: u32,
        /// The last counter accepted.
        last: u32,
    },
    /// A copy of the last frame outside the [`ReplayPolicy`]
    /// ([`RequestError::Refused`]).
    RetransmissionRefused {
        /// Its counter.
        counter: u32,
    },
    /// A copy of the last frame from another address than its first
    /// ([`RequestError::Refused`]).
    OtherSource {
        /// Its counter.
        counter: u32,
    },
    /// The last counter with other content ([`RequestError::Refused`]).
    CounterReused {
        /// The counter.
        counter: u32,
    },
}

impl fmt::Display for AdmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CounterExhausted { device } => {
                write!(
                    f,
                    "device {} sent counter FFFFFFFF, which is never sent",
                    device.0
                )
            }
            Self::Replayed { counter, last } => {
                write!(f, "replayed frame: counter {counter} < last {last}")
            }
            Self::RetransmissionRefused { counter } => {
                write!(
                    f,
                    "copy of frame {counter} outside the retransmission window"
                )
            }
            Self::OtherSource { counter } => {
                write!(f, "copy of frame {counter} from another address")
            }
            Self::CounterReused { counter } => {
                write!(f, "counter {counter} reused for a different frame")
            }
        }
    }
}

impl core::error::Error for AdmitError {}

impl<E> From<AdmitError> for RequestError<E> {
    fn from(e: AdmitError) -> Self {
        Self::Refused(e)
    }
}

/// What to do with an authentic frame, and what to store: [`admit`]'s verdict.
///
/// Each variant but `Refused` carries the `record` to store: compare-and-set it against the
/// `last_frame` given to [`admit`] (in SQL an `UPDATE … WHERE` on the old values, or an
/// `INSERT` that fails on a duplicate when there was none), in the same transaction as the
/// request's effects, and answer only after the commit. If the compare-and-set finds another
/// record, another instance got there first: read the record again and call [`admit`] again
/// (the frame stays [`Verified`]); nothing may be applied or answered from the stale verdict.
#[must_use = "an admission is acted on: store its record, then answer (or drop the frame)"]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Admission<'a> {
    /// A new request: store `record`, apply `request.msg`, answer it.
    New {
        /// The request (`retransmission` false).
        request: Request<'a>,
        /// The device's new record.
        record: LastFrame,
    },
    /// A copy of the last frame within the [`ReplayPolicy`]: store `record` (one answer more),
    /// answer it again as the first time, **do not** apply it again.
    Retransmission {
        /// The request (`retransmission` true).
        request: Request<'a>,
        /// The device's new record.
        record: LastFrame,
    },
    /// Authentic and fresh, but not a message this server can take (a body this version does
    /// not know, or a chunk request that breaks the rules): store `record` (the counter is used
    /// up), answer `Down::Nack(code)` to `counter`. A retransmission of it is nacked again.
    Nack {
        /// Sender.
        device: DeviceId,
        /// Its counter.
        counter: u32,
        /// [`NackCode::UnknownMessage`] or [`NackCode::BadRequest`].
        code: NackCode,
        /// The device's new record.
        record: LastFrame,
    },
    /// Drop the frame silently; store nothing.
    Refused(AdmitError),
}

impl Admission<'_> {
    /// The record to compare-and-set, `None` for [`Admission::Refused`].
    pub fn record(&self) -> Option<&LastFrame> {
        match self {
            Self::New { record, .. }
            | Self::Retransmission { record, .. }
            | Self::Nack { record, .. } => Some(record),
            Self::Refused(_) => None,
        }
    }
}

/// The server's decision on an authentic frame from `source`, given the device's record
/// `last_frame` (`None` before its first frame): pure, no I/O, time is an argument.
///
/// Order: the counter's range (`FFFFFFFF` is never sent), **then** freshness against
/// `last_frame` (so a stale copy of an undecodable frame is a replay, not a reason to answer),
/// then the body. A new frame records `source`; a copy of the last frame (same counter and
/// tag) is a [`Retransmission`](Admission::Retransmission) only from that address, within
/// `policy` ([`AdmitError::OtherSource`], [`AdmitError::RetransmissionRefused`] otherwise).
///
/// `source` is the address the datagram came from (IP address and UDP port), where the answer
/// goes. On a byte stream pass the connection's peer; a TCP peer cannot spoof its address, so a
/// server may pass the IP address with port 0 to keep answering a device that reconnected
/// between two retransmissions.
///
/// Cost: one postcard decode of the body; no copy.
///
/// # Use in an async server
///
/// The decision is split from storage as quinn-proto splits its `Endpoint`, so that an async
/// server (tokio, a database) never blocks on storage inside the protocol:
///
/// 1. **receive** a datagram (or a stream frame) and note its source address;
/// 2. [`peek_up`](crate::peek_up) reads the device id from the header (no key needed);
/// 3. look up that device's [`Keys`] (your I/O, `.await` as you like), then
///    [`authenticate`]`(frame, &keys)` checks the tag: a [`Verified`] frame, or drop it;
/// 4. **read the device's record** ([`LastFrame`], `None` before its first frame);
/// 5. [`admit`]`(verified, record, source, now, policy)` decides, purely: an [`Admission`]
///    says what to do (a new request to apply and answer, a retransmission to answer again
///    without applying it, a `Nack` to send, or a refusal to drop silently) and what record
///    to store;
/// 6. **compare-and-set** that record against the one read in step 4, **and apply** the
///    request's effects, in one transaction; if the record changed meanwhile (another instance
///    took the frame), roll back and go to step 4;
/// 7. **answer after the commit** ([`respond`], [`serve_chunks`]): a server that answers before
///    the record is durable would accept a replay of the frame after a crash.
///
/// ```
/// use cloud_proto::{admit, authenticate, peek_up, respond, seal_up};
/// use cloud_proto::{Admission, DeviceId, Down, Goodbye, Keys, LastFrame, ReplayPolicy, Up};
/// use cloud_proto::MAX_FRAME;
/// use core::net::SocketAddr;
/// use std::collections::HashMap;
///
/// /// Stands in for the database: each method is one query (`.await` in a real server).
/// struct Db {
///     keys: HashMap<DeviceId, Keys>,
///     records: HashMap<DeviceId, LastFrame>,
/// }
/// impl Db {
///     /// `UPDATE devices SET … WHERE id = $1 AND <old values>` (or an `INSERT` for the
///     /// first), in the transaction that applies the request; false if the row changed.
///     fn compare_and_set(&mut self, d: DeviceId, old: Option<LastFrame>, new: LastFrame)
///         -> bool {
///         if self.records.get(&d).copied() != old {
///             return false;
///         }
///         self.records.insert(d, new);
///         true
///     }
/// }
///
/// /// The answer to send back to `from`, if any.
/// fn on_datagram(db: &mut Db, frame: &[u8], from: SocketAddr, now_ms: u64, out: &mut [u8])
///     -> Option<usize> {
///     let (device, _) = peek_up(frame).ok()?;
///     let keys = db.keys.get(&device)?.clone(); // unknown device: drop
///     let verified = authenticate(frame, &keys).ok()?; // forged: drop
///     loop {
///         let old = db.records.get(&device).copied();
///         let policy = ReplayPolicy::DEFAULT;
///         let admission = admit(verified, old.as_ref(), from, now_ms, policy);
///         let (counter, answer) = match &admission {
///             Admission::Refused(_) => return None, // replayed, injected…: drop silently
///             // Apply `request.msg` in the transaction below, then answer it.
///             Admission::New { request, .. } => (request.counter, Down::Ack),
///             // Answer again as the first time; its effects are applied already.
///             Admission::Retransmission { request, .. } => (request.counter, Down::Ack),
///             Admission::Nack { counter, code, .. } => (*counter, Down::Nack(*code)),
///         };
///         let record = *admission.record()?;
///         if db.compare_and_set(device, old, record) {
///             // Committed: now answer.
///             return respond(&keys, device, counter, &answer, out).ok();
///         }
///         // Another instance changed the record: decide again on the new one.
///     }
/// }
///
/// # let root = [0x42; 32];
/// # let keys = HashMap::from([(DeviceId(7), Keys::derive(&root))]);
/// # let mut db = Db { keys, records: HashMap::new() };
/// # let mut frame = [0u8; MAX_FRAME];
/// # let msg = Up::Goodbye(Goodbye { sleep_s: 60 });
/// # let n = seal_up(&Keys::derive(&root), DeviceId(7), 0, &msg, &mut frame).unwrap();
/// # let from: SocketAddr = "192.0.2.1:40000".parse().unwrap();
/// let mut out = [0u8; MAX_FRAME];
/// assert!(on_datagram(&mut db, &frame[..n], from, 0, &mut out).is_some());
/// assert_eq!(db.records[&DeviceId(7)].counter, 0);
/// ```
pub fn admit<'a>(
    verified: Verified<'a>,
    last_frame: Option<&LastFrame>,
    source: SocketAddr,
    now_ms: u64,
    policy: ReplayPolicy,
) -> Admission<'a> {
    let admission = decide(verified.up, last_frame, source, now_ms, policy);
    match &admission {
        Admission::New { request, .. } => {
            trace!(
                "device {}: frame {} admitted",
                request.device.0,
                request.counter
            )
        }
        Admission::Retransmission { request, record } => debug!(
            "device {}: retransmission of frame {} answered ({} of {})",
            request.device.0, request.counter, record.answers, policy.max_answers
        ),
        Admission::Nack {
            device,
            counter,
            code,
            ..
        } => info!("device {}: frame {} nacked: {:?}", device.0, counter, code),
        Admission::Refused(e) => warn!(
            "device {}: frame {} refused: {}",
            verified.up.device.0, verified.up.counter, e
        ),
    }
    admission
}

/// [`admit`] without its logs.
fn decide<'a>(
    v: VerifiedUp<'a>,
    last_frame: Option<&LastFrame>,
    source: SocketAddr,
    now_ms: u64,
    policy: ReplayPolicy,
) -> Admission<'a> {
    let (device, counter) = (v.device, v.counter);
    if counter == u32::MAX {
        return Admission::Refused(AdmitError::CounterExhausted { device });
    }
    let record = match last_frame {
        Some(l) if counter < l.counter => {
            return Admission::Refused(AdmitError::Replayed {
                counter,
                last: l.counter,
            })
        }
        Some(l) if counter == l.counter && v.tag != l.tag => {
            return Admission::Refused(AdmitError::CounterReused { counter })
        }
        Some(l) if counter == l.counter && source != l.source => {
            return Admission::Refused(AdmitError::OtherSource { counter })
        }
        Some(l) if counter == l.counter => {
            let late = now_ms.saturating_sub(l.accepted_at_ms) > policy.retransmit_window_ms;
            if late || l.answers >= policy.max_answers {
                return Admission::Refused(AdmitError::RetransmissionRefused { counter });
            }
            LastFrame {
                answers: l.answers + 1,
                ..*l
            }
        }
        _ => LastFrame {
            counter,
            tag: v.tag,
            accepted_at_ms: now_ms,
            source,
            answers: 1,
        },
    };
    let code = match frame::decode_exact::<Up<'a>>(v.body) {
        Ok(Up::ChunkRequest(r)) if !r.is_valid() => NackCode::BadRequest,
        Ok(msg) => {
            let retransmission = record.answers > 1;
            let request = Request {
                device,
                counter,
                retransmission,
                msg,
            };
            return if retransmission {
                Admission::Retransmission { request, record }
            } else {
                Admission::New { request, record }
            };
        }
        Err(_) => NackCode::UnknownMessage,
    };
    Admission::Nack {
        device,
        counter,
        code,
        record,
    }
}

/// Authenticates `frame`, received from `source`, refuses replays, decodes it: the small
/// synchronous wrapper for simple callers, over [`authenticate`] and [`admit`] with `store`
/// doing the lookups and the compare-and-set (an async server calls those two itself, as
/// [`admit`] shows). The device's record in `store` advances only for an authentic frame that is
/// new (or an allowed retransmission); on every other error nothing changed.
///
/// Order: framing, key lookup, tag, then [`admit`]'s (the counter's range, freshness, the
/// body). `source` as in [`admit`]: a copy of the last frame is answered again only from the
/// address it first came from ([`RequestError::Refused`] otherwise).
///
/// Errors: see [`RequestError`]. Cost: one key lookup, one HMAC-SHA256 over the frame, one
/// record read and one compare-and-set (both retried on a race, at most three times), one
/// postcard decode per try.
///
/// ```
/// use cloud_proto::{handle_datagram, respond, DeviceStore, MemoryStore, RequestError};
/// use cloud_proto::{DeviceId, Down, NackCode, ReplayPolicy, MAX_FRAME};
/// use core::net::SocketAddr;
///
/// // MemoryStore is for tests and tools: a server implements DeviceStore over its database.
/// let mut store = MemoryStore::default();
/// store.insert(DeviceId(7), &[0x42; 32]);
/// # let frame = [0u8; 4];
/// # let now_ms = 0;
/// # let from: SocketAddr = "192.0.2.1:40000".parse().unwrap();
/// let mut out = [0u8; MAX_FRAME];
/// // For each datagram received (`from`: the address it came from):
/// let policy = ReplayPolicy::DEFAULT;
/// let answer = match handle_datagram(&frame, from, &mut store, now_ms, policy) {
///     // Apply req.msg (unless req.retransmission says it was applied already), then answer.
///     Ok(req) => Some((req.device, req.counter, Down::Ack)),
///     // Authentic and fresh, but this server cannot take it: tell the device.
///     Err(RequestError::Undecodable { device, counter }) => {
///         Some((device, counter, Down::Nack(NackCode::UnknownMessage)))
///     }
///     Err(RequestError::InvalidRequest { device, counter }) => {
///         Some((device, counter, Down::Nack(NackCode::BadRequest)))
///     }
///     // Forged, replayed, unknown…: drop silently (answering would help an attacker).
///     Err(_) => None,
/// };
/// if let Some((device, counter, msg)) = answer {
///     if let Ok(Some(keys)) = store.keys(device) {
///         if let Ok(n) = respond(&keys, device, counter, &msg, &mut out) {
///             // send &out[..n] back to `from`
///         }
///     }
/// }
/// ```
pub fn handle_datagram<'a, S: DeviceStore + ?Sized>(
    frame: &'a [u8],
    source: SocketAddr,
    store: &mut S,
    now_ms: u64,
    policy: ReplayPolicy,
) -> Result<Request<'a>, RequestError<S::Error>> {
    let (device, _) = frame::peek_up(frame).inspect_err(|e| log_frame_refused(frame, e))?;
    let Some(keys) = store.keys(device).map_err(RequestError::Store)? else {
        warn!("device {}: unknown, frame refused", device.0);
        return Err(RequestError::UnknownDevice(device));
    };
    let verified = authenticate(frame, &keys)?;
    for _ in 0..3 {
        let last = store.last_frame(device).map_err(RequestError::Store)?;
        let (record, outcome) = match admit(verified, last.as_ref(), source, now_ms, policy) {
            Admission::Refused(e) => return Err(e.into()),
            Admission::New { request, record } | Admission::Retransmission { request, record } => {
                (record, Ok(request))
            }
            // admit nacks with UnknownMessage or BadRequest only.
            Admission::Nack {
                device,
                counter,
                code,
                record,
            } => (
                record,
                Err(match code {
                    NackCode::BadRequest => RequestError::InvalidRequest { device, counter },
                    _ => RequestError::Undecodable { device, counter },
                }),
            ),
        };
        if store
            .replace_last_frame(device, last, record)
            .map_err(RequestError::Store)?
        {
            return outcome;
        }
        debug!(
            "device {}: record changed concurrently, deciding again",
            device.0
        );
    }
    warn!("device {}: record kept changing, frame dropped", device.0);
    Err(RequestError::Conflict)
}

/// Seals the answer to request `counter` of `device` into `out`; returns its length.
/// Errors and cost as [`seal_down`](crate::seal_down).
pub fn respond(
    keys: &Keys,
    device: DeviceId,
    counter: u32,
    msg: &Down<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    frame::seal_down(keys, device, counter, msg, out)
}

/// What [`serve_chunks`] sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Served {
    /// This many chunk frames: the whole request.
    Chunks(u32),
    /// One `Nack` frame instead: a chunk lies past the end of the object.
    Refused(NackCode),
}

/// Answers the chunk request `req` from `object` (the manifest or image bytes the request
/// names): calls `send` with each chunk frame, in request order, or with one
/// `Nack(BadRequest)` frame if any requested chunk lies past the end of `object` (then no
/// chunk is sent). The server keeps no transfer state: a retransmitted request is served again.
///
/// Errors, before anything is sent: [`EncodeError::Invalid`] if `req` is not a chunk request;
/// [`EncodeError::TooLarge`] if `out` cannot hold a chunk frame of this chunk size.
/// Cost: one HMAC and one copy per chunk; `out` is reused for every frame.
pub fn serve_chunks(
    keys: &Keys,
    req: &Request<'_>,
    object: &[u8],
    out: &mut [u8],
    mut send: impl FnMut(&[u8]),
) -> Result<Served, EncodeError> {
    let Up::ChunkRequest(chunks) = &req.msg else {
        return Err(EncodeError::Invalid);
    };
    let size = usize::from(chunks.chunk_size);
    if out.len() < CHUNK_HEADER_LEN + size + TAG_LEN {
        return Err(EncodeError::TooLarge);
    }
    let range_of = |i: u32| -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(i).ok()?.checked_mul(size)?;
        (start < object.len()).then(|| start..object.len().min(start + size))
    };
    if chunks.slots().any(|(_, i)| range_of(i).is_none()) {
        let code = NackCode::BadRequest;
        let n = respond(keys, req.device, req.counter, &Down::Nack(code), out)?;
        send(&out[..n]);
        return Ok(Served::Refused(code));
    }
    let mut sent = 0;
    for (slot, i) in chunks.slots() {
        let data = range_of(i).map_or(&[][..], |r| &object[r]);
        let n = frame::seal_chunk(keys, req.device, req.counter, slot, data, out)?;
        send(&out[..n]);
        sent += 1;
    }
    Ok(Served::Chunks(sent))
}

#[cfg(feature = "std")]
mod memory {
    extern crate std;

    use std::collections::HashMap;

    use super::{DeviceStore, LastFrame};
    use crate::frame::{DeviceId, Keys};

    /// An in-memory [`DeviceStore`] **for tests and tools only** (feature `std`).
    ///
    /// Not for a server: it lives in RAM, so a restarted process forgets every device's
    /// [`LastFrame`] and then accepts each old frame again (replays) until the device sends a
    /// new one. A real server keeps the same columns in a database that persists the record
    /// before the answer goes out ([`DeviceStore::replace_last_frame`]).
    #[derive(Debug, Default, Clone)]
    pub struct MemoryStore {
        devices: HashMap<DeviceId, (Keys, Option<LastFrame>)>,
    }

    impl MemoryStore {
        /// Adds a device, or replaces a known device's key. A known device **keeps** its
        /// replay record: inserting it again (a tool reloading its device list) never makes
        /// its old frames acceptable. A device re-provisioned with a new key whose counters
        /// start again needs [`remove`](Self::remove) first. Cost: two HMAC-SHA256 (the key
        /// derivation).
        pub fn insert(&mut self, device: DeviceId, root_key: &[u8; 32]) {
            let keys = Keys::derive(root_key);
            self.devices
                .entry(device)
                .and_modify(|d| d.0 = keys.clone())
                .or_insert((keys, None));
        }

        /// Forgets `device` and its replay record; returns whether it was known. Only for a
        /// device whose key is retired: with the same key its old frames would be accepted
        /// again once it is inserted anew.
        pub fn remove(&mut self, device: DeviceId) -> bool {
            self.devices.remove(&device).is_some()
        }

        /// The last counter accepted from `device`.
        pub fn last_counter(&self, device: DeviceId) -> Option<u32> {
            self.devices
                .get(&device)
                .and_then(|d| d.1)
                .map(|l| l.counter)
        }
    }

    impl DeviceStore for MemoryStore {
        type Error = core::convert::Infallible;

        fn keys(&mut self, device: DeviceId) -> Result<Option<Keys>, Self::Error> {
            Ok(self.devices.get(&device).map(|d| d.0.clone()))
        }

        fn last_frame(&mut self, device: DeviceId) -> Result<Option<LastFrame>, Self::Error> {
            Ok(self.devices.get(&device).and_then(|d| d.1))
        }

        fn replace_last_frame(
            &mut self,
            device: DeviceId,
            expected: Option<LastFrame>,
            new: LastFrame,
        ) -> Result<bool, Self::Error> {
            match self.devices.get_mut(&device) {
                Some(d) if d.1 == expected => {
                    d.1 = Some(new);
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }
}

#[cfg(feature = "std")]
pub use memory::MemoryStore;
