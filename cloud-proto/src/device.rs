//! The device endpoint: builds requests, matches replies, retransmits with backoff. Sans-IO:
//! it never touches a socket or a clock; the caller moves the bytes and passes `now`.
//!
//! One request is outstanding at a time (stop-and-wait per request); a chunk request asks for
//! up to [`MAX_CHUNKS_PER_REQUEST`] chunks, so the device paces the transfer by the size of
//! its requests and simply stops asking when its awake budget runs out.

use core::fmt;

use heapless::Vec;

use crate::frame::{self, DeviceId, DownFrame, EncodeError, FrameError, Keys, MAX_FRAME};
use crate::message::{
    ChunkRequest, Decision, Down, Object, Up, UpdateDecision, UpdateId, MAX_CHUNKS_PER_REQUEST,
};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// Device endpoint settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceConfig {
    /// This device's id.
    pub device: DeviceId,
    /// First retransmission timeout.
    pub rto_initial_ms: u32,
    /// Largest retransmission timeout (the timeout doubles up to it).
    pub rto_max_ms: u32,
    /// Transmissions of one request before giving up (at least 1).
    pub max_transmissions: u8,
    /// Counters reserved per flash checkpoint (see [`Counters`]).
    pub counter_reserve: u32,
}

impl DeviceConfig {
    /// The defaults for `device`: first timeout 2 s doubling up to 16 s, 4 transmissions
    /// (the last 14 s after the first), 64 counters per flash checkpoint.
    pub const fn new(device: DeviceId) -> Self {
        Self {
            device,
            rto_initial_ms: 2_000,
            rto_max_ms: 16_000,
            max_transmissions: 4,
            counter_reserve: 64,
        }
    }
}

/// The device's send counter, which must never repeat (the server refuses a counter below the
/// last one, and a different frame with the last one).
///
/// * Keep these counters in memory that survives deep sleep (backup SRAM,
///   [`to_retained`](Self::to_retained)), written after every [`DeviceEndpoint::send`] and
///   **before** the frame goes on the wire.
/// * Keep `reserved_until` in flash: the endpoint refuses to use a counter at or past it until
///   the caller has persisted a higher reservation ([`SendError::CheckpointRequired`]).
/// * After a power loss that wiped backup SRAM, start from
///   [`Counters::cold`]`(reserved_until from flash)`: every counter used before is below it.
///
/// Cost: one small flash write per `counter_reserve` frames, and at most `counter_reserve`
/// counters skipped per power loss (2³² counters last 136 years at one frame a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct Counters {
    /// Next counter to use.
    pub next: u32,
    /// First counter not yet reserved in flash.
    pub reserved_until: u32,
}

/// CRC-32 (IEEE, as zlib's `crc32`) guarding [`Counters::to_retained`].
const RETAINED_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

impl Counters {
    /// Length of [`to_retained`](Self::to_retained).
    pub const RETAINED_LEN: usize = 12;

    /// After a cold boot: continue from the reservation persisted in flash.
    pub const fn cold(reserved_until: u32) -> Self {
        Self {
            next: reserved_until,
            reserved_until,
        }
    }

    /// The bytes to keep in backup SRAM: `next` u32 LE, `reserved_until` u32 LE, CRC-32 of the
    /// first eight bytes (u32 LE).
    pub fn to_retained(&self) -> [u8; Self::RETAINED_LEN] {
        let mut b = [0u8; Self::RETAINED_LEN];
        b[..4].copy_from_slice(&self.next.to_le_bytes());
        b[4..8].copy_from_slice(&self.reserved_until.to_le_bytes());
        let crc = RETAINED_CRC.checksum(&b[..8]);
        b[8..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The counters kept in backup SRAM, `None` if the bytes are not a valid record (backup
    /// SRAM lost power, or was never written): then start from
    /// [`cold`](Self::cold)`(reservation from flash)`.
    pub fn from_retained(bytes: &[u8; Self::RETAINED_LEN]) -> Option<Self> {
        let [a, b, c, d, e, f, g, h, c0, c1, c2, c3] = *bytes;
        if RETAINED_CRC.checksum(&bytes[..8]) != u32::from_le_bytes([c0, c1, c2, c3]) {
            return None;
        }
        Some(Self {
            next: u32::from_le_bytes([a, b, c, d]),
            reserved_until: u32::from_le_bytes([e, f, g, h]),
        })
    }
}

/// Why a request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// A request is outstanding; wait for its reply or [`abandon`](DeviceEndpoint::abandon) it.
    Busy,
    /// Persist this value as the new counter reservation in flash, call
    /// [`mark_checkpointed`](DeviceEndpoint::mark_checkpointed), then send again.
    CheckpointRequired {
        /// Value to persist.
        reserved_until: u32,
    },
    /// The counter space is exhausted (2³² frames): re-provision the device key.
    CountersExhausted,
    /// The message does not fit a frame or breaks a rule.
    Encode(EncodeError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => f.write_str("a request is outstanding"),
            Self::CheckpointRequired { reserved_until } => {
                write!(f, "persist counter reservation {reserved_until} first")
            }
            Self::CountersExhausted => f.write_str("counter space exhausted"),
            // The cause is the source, not repeated here.
            Self::Encode(_) => f.write_str("the request could not be encoded"),
        }
    }
}

impl core::error::Error for SendError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// A request to put on the wire (returned by [`DeviceEndpoint::send`]).
#[must_use = "persist `counters`, then transmit `frame`: the request is outstanding already"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transmit<'a> {
    /// The frame.
    pub frame: &'a [u8],
    /// The counters after this send: persist them (backup SRAM,
    /// [`Counters::to_retained`]) **before** transmitting `frame`.
    pub counters: Counters,
}

/// What a received frame meant.
#[must_use = "a reply or a chunk to act on (a dropped chunk is not asked for again)"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// The reply to the outstanding request (which is now complete).
    Reply(Down<'a>),
    /// One chunk of the outstanding chunk request. `done` is true when it was the last one
    /// missing from the request.
    Chunk {
        /// The update.
        update: UpdateId,
        /// The object.
        object: Object,
        /// Chunk index.
        index: u32,
        /// Chunk bytes (verify them against the signed manifest before use).
        data: &'a [u8],
        /// The request is complete.
        done: bool,
    },
}

/// What a timeout meant.
#[must_use = "an ignored `Retransmit` silently skips a retransmission"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Timeout<'a> {
    /// Nothing due yet.
    NotYet,
    /// Send these bytes again (the same frame: the server recognises a retransmission).
    Retransmit(&'a [u8]),
    /// Part of a chunk request arrived, then nothing: the request is closed; ask again for
    /// what is still missing with a new request.
    Incomplete {
        /// Chunks that arrived.
        received: u32,
        /// Chunks that did not.
        missing: u32,
    },
    /// No answer after the last transmission: the request is closed (sleep, try next wake).
    GaveUp,
}

#[derive(Debug, Clone)]
struct Pending {
    counter: u32,
    chunks: Option<ChunkRequest>,
    received: u64,
    transmissions: u8,
    rto: u32,
    deadline: Millis,
}

/// The device side of the protocol.
#[derive(Debug)]
pub struct DeviceEndpoint {
    config: DeviceConfig,
    keys: Keys,
    counters: Counters,
    pending: Option<Pending>,
    tx: Vec<u8, MAX_FRAME>,
}

impl DeviceEndpoint {
    /// An endpoint with the device's keys ([`Keys::derive`] from its root key, which need
    /// not be kept: wipe it), continuing from `counters` (see [`Counters`]). `const`, so it
    /// can be built in place in a `static`. The keys are wiped when the endpoint is dropped
    /// (see [`Keys`]). RAM: about 1.1 KiB, most of it the frame kept for retransmission.
    pub const fn new(config: DeviceConfig, keys: Keys, counters: Counters) -> Self {
        Self {
            config,
            keys,
            counters,
            pending: None,
            tx: Vec::new(),
        }
    }

    /// The counters to persist (`next` after every send; see [`Counters`]).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The reservation to persist in flash before more frames can be sent, if one is due.
    #[must_use = "persist the reservation, then `mark_checkpointed`"]
    pub fn checkpoint(&self) -> Option<u32> {
        (self.counters.next >= self.counters.reserved_until).then(|| {
            self.counters
                .next
                .saturating_add(self.config.counter_reserve.max(1))
        })
    }

    /// Tells the endpoint that `reserved_until` is now persisted in flash.
    pub fn mark_checkpointed(&mut self, reserved_until: u32) {
        if reserved_until > self.counters.reserved_until {
            self.counters.reserved_until = reserved_until;
        }
    }

    /// True while a request waits for its reply.
    pub fn is_busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Sends `msg` as the new outstanding request: returns the frame to transmit, kept for
    /// retransmission, and the counters to persist (backup SRAM) **before** the frame goes on
    /// the wire: a counter must never be used for two different frames.
    ///
    /// Errors: [`SendError::Busy`] while a request is outstanding,
    /// [`SendError::CheckpointRequired`] when the flash reservation is used up,
    /// [`SendError::CountersExhausted`], [`SendError::Encode`]. Nothing changes on error.
    ///
    /// Cost: one postcard encoding and one HMAC; no allocation (the frame lives in the
    /// endpoint, at most [`MAX_FRAME`] bytes).
    pub fn send(&mut self, now: Millis, msg: &Up<'_>) -> Result<Transmit<'_>, SendError> {
        if self.pending.is_some() {
            return Err(SendError::Busy);
        }
        if self.counters.next == u32::MAX {
            error!("counter space exhausted: re-provision the device key");
            return Err(SendError::CountersExhausted);
        }
        if let Some(reserved_until) = self.checkpoint() {
            info!("counter reservation {} to persist first", reserved_until);
            return Err(SendError::CheckpointRequired { reserved_until });
        }
        let counter = self.counters.next;
        // The frame is built in place in the retransmission buffer (no second 1 KiB on the
        // stack). resize to the capacity cannot fail.
        let _ = self.tx.resize(MAX_FRAME, 0);
        let sealed = frame::seal_up(&self.keys, self.config.device, counter, msg, &mut self.tx);
        let n = match sealed {
            Ok(n) => n,
            Err(e) => {
                self.tx.clear();
                return Err(SendError::Encode(e));
            }
        };
        self.tx.truncate(n);
        self.counters.next += 1;
        log_sent(counter, msg);
        let rto = self.config.rto_initial_ms.max(1);
        self.pending = Some(Pending {
            counter,
            chunks: match msg {
                Up::ChunkRequest(r) => Some(r.clone()),
                _ => None,
            },
            received: 0,
            transmissions: 1,
            rto,
            deadline: now.saturating_add(rto as Millis),
        });
        Ok(Transmit {
            frame: &self.tx,
            counters: self.counters,
        })
    }

    /// Handles a received datagram (or a decoded stream frame).
    ///
    /// A chunk request is answered by its chunk frames (each chunk `chunk_size` bytes, the
    /// object's last one possibly shorter) or by a `Nack`; any other request by any one
    /// message (`Welcome`, `Ack` or `Nack`: checking that it is the expected kind is the
    /// caller's). Errors, which change nothing: those of [`open_down`](crate::open_down);
    /// [`FrameError::Unexpected`] for a frame when nothing is outstanding, a duplicate chunk,
    /// or a message answering a chunk request with anything but a `Nack`;
    /// [`FrameError::Malformed`] for a slot past the request or a chunk that is empty or longer
    /// than the chunk size. Cost: one HMAC-SHA256 over the frame; no copy.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Millis,
        bytes: &'a [u8],
    ) -> Result<Event<'a>, FrameError> {
        // Late duplicates are common on a lossy link: debug, not warn.
        let event = self.open(now, bytes);
        if let Err(e) = &event {
            debug!("reply refused: {}", e);
        }
        event
    }

    /// [`handle_datagram`](Self::handle_datagram) without its log.
    fn open<'a>(&mut self, now: Millis, bytes: &'a [u8]) -> Result<Event<'a>, FrameError> {
        let p = self.pending.as_ref().ok_or(FrameError::Unexpected)?;
        let counter = p.counter;
        let f = frame::open_down(&self.keys, self.config.device, bytes, |low| {
            (low == counter as u16).then_some(counter)
        })?;
        match f {
            DownFrame::Message { msg, .. } => {
                if p.chunks.is_some() && !matches!(msg, Down::Nack(_)) {
                    // A chunk request is answered by chunk frames (or a refusal).
                    return Err(FrameError::Unexpected);
                }
                self.pending = None;
                Ok(Event::Reply(msg))
            }
            DownFrame::Chunk { slot, data, .. } => {
                let Some(req) = p.chunks.as_ref() else {
                    return Err(FrameError::Unexpected);
                };
                let index = req.chunk_at(slot as u32).ok_or(FrameError::Malformed)?;
                if data.is_empty() || data.len() > usize::from(req.chunk_size) {
                    return Err(FrameError::Malformed);
                }
                let bit = 1u64 << slot.min(63);
                if p.received & bit != 0 {
                    return Err(FrameError::Unexpected); // duplicate
                }
                let (update, object, total) = (req.update, req.object, req.chunk_count());
                let done = (p.received | bit).count_ones() >= total;
                if done {
                    self.pending = None;
                } else if let Some(p) = self.pending.as_mut() {
                    p.received |= bit;
                    // Progress: the request is alive; restart its timer.
                    p.deadline = now.saturating_add(p.rto as Millis);
                }
                Ok(Event::Chunk {
                    update,
                    object,
                    index,
                    data,
                    done,
                })
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if a request is
    /// outstanding.
    #[must_use = "call `handle_timeout` at this time"]
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// Advances the retransmission timer. Backoff doubles the timeout after each
    /// transmission, up to `rto_max_ms`; after `max_transmissions` the request is abandoned.
    pub fn handle_timeout(&mut self, now: Millis) -> Timeout<'_> {
        let max_tx = self.config.max_transmissions.max(1);
        let rto_max = self.config.rto_max_ms.max(1);
        let Some(p) = self.pending.as_mut() else {
            return Timeout::NotYet;
        };
        if now < p.deadline {
            return Timeout::NotYet;
        }
        if p.received != 0 {
            let total = p.chunks.as_ref().map_or(0, |r| r.chunk_count());
            let received = p.received.count_ones();
            info!(
                "request {}: incomplete, {} received, {} missing: ask again for the rest",
                p.counter,
                received,
                total.saturating_sub(received)
            );
            self.pending = None;
            return Timeout::Incomplete {
                received,
                missing: total.saturating_sub(received),
            };
        }
        if p.transmissions >= max_tx {
            warn!(
                "request {}: no answer after {} transmissions, given up",
                p.counter, p.transmissions
            );
            self.pending = None;
            return Timeout::GaveUp;
        }
        p.transmissions += 1;
        info!(
            "request {}: retransmission, transmission {} of {}",
            p.counter, p.transmissions, max_tx
        );
        p.rto = p.rto.saturating_mul(2).min(rto_max);
        p.deadline = now.saturating_add(p.rto as Millis);
        Timeout::Retransmit(&self.tx)
    }

    /// Drops the outstanding request (its late replies will be refused).
    pub fn abandon(&mut self) {
        self.pending = None;
    }
}

/// What a field engineer wants to know of a request sent: the transfers it starts or resumes.
fn log_sent(counter: u32, msg: &Up<'_>) {
    match msg {
        Up::UpdateDecision(UpdateDecision {
            update,
            decision: Decision::Accept { bytes_done },
        }) if *bytes_done > 0 => info!(
            "update {}: accepted, download resumes at byte {}",
            update.0, bytes_done
        ),
        Up::CheckIn(c) => match c.ota.download {
            Some(d) => info!(
                "request {}: check-in, download of update {} at byte {}",
                counter, d.update.0, d.bytes_done
            ),
            None => debug!("request {}: check-in", counter),
        },
        Up::ChunkRequest(r) => debug!(
            "request {}: {} chunks of update {} ({:?})",
            counter,
            r.chunk_count(),
            r.update.0,
            r.object
        ),
        _ => trace!("request {}", counter),
    }
}

const _: () = assert!(MAX_CHUNKS_PER_REQUEST <= 64, "the received bitmap is a u64");
