//! The server endpoint: authenticate a device's frame against a key store, refuse replays, and
//! seal the answers. Stateless itself: what it keeps per device (key, last counter) lives in the
//! caller's [`DeviceStore`], so several server instances behind a load balancer can share one
//! database.
//!
//! ```
//! use cloud_proto::server::{self, DeviceStore, MemoryStore};
//! use cloud_proto::{Down, Keys, DeviceId, MAX_FRAME};
//!
//! let mut store = MemoryStore::default();
//! store.insert(DeviceId(7), &[0x42; 32]);
//! # let frame = [0u8; 4];
//! // For each datagram received:
//! match server::handle_datagram(&frame, &mut store) {
//!     Ok(req) => {
//!         // Apply req.msg (unless req.retransmission says it was applied already),
//!         // then answer it.
//!         if let Some(keys) = store.keys(req.device) {
//!             let mut out = [0u8; MAX_FRAME];
//!             if let Ok(n) = server::respond(&keys, req.device, req.counter, &Down::Ack, &mut out) {
//!                 // send &out[..n]
//!             }
//!         }
//!     }
//!     Err(e) => { /* drop the frame; log e */ }
//! };
//! ```

use crate::frame::{self, DeviceId, EncodeError, FrameError, Keys, TAG_LEN};
use crate::message::{ChunkRequest, Down, NackCode, Up};

/// What a counter means for one device (see [`DeviceStore::check_and_advance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Freshness {
    /// Above every counter seen: now recorded as the last one.
    New,
    /// Equal to the last counter, with the same tag: a retransmission of the last request.
    Retransmission,
    /// Equal to the last counter, with another tag: the device reused a counter (its counters
    /// were not persisted before a frame went out). Refused: answering it as a retransmission
    /// would drop a new message silently.
    Reused,
    /// Below the last counter: a replay or a stale reordered frame.
    Replayed {
        /// The last counter accepted.
        last: u32,
    },
}

/// What the server keeps per device.
pub trait DeviceStore {
    /// The device's keys (derive them once with [`Keys::derive`] and cache them), `None` for an
    /// unknown device.
    fn keys(&self, device: DeviceId) -> Option<Keys>;

    /// Classifies `counter` (and the frame's `tag`) against the last counter and tag accepted
    /// from `device` and, if it is [`Freshness::New`], records both — **atomically** (in SQL:
    /// `UPDATE … SET last = $c, last_tag = $t WHERE id = $d AND (last IS NULL OR last < $c)`),
    /// so two server instances racing on one device cannot both accept the same counter.
    /// Persist it before the answer is sent: a server that forgets a counter would accept a
    /// replay of it. Called only for authentic frames.
    fn check_and_advance(
        &mut self,
        device: DeviceId,
        counter: u32,
        tag: [u8; TAG_LEN],
    ) -> Freshness;
}

/// An authenticated, fresh (or retransmitted) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Sender.
    pub device: DeviceId,
    /// Its counter (the answer is bound to it).
    pub counter: u32,
    /// The same frame was accepted before: answer it again the same way, but do not apply its
    /// effects twice (publishes, decisions).
    pub retransmission: bool,
    /// The message.
    pub msg: Up<'a>,
}

/// Authenticates `frame` and checks it is not a replay. On success the device's last counter
/// has advanced (unless it is a retransmission); on any error nothing changed.
///
/// Errors: [`FrameError::UnknownDevice`], [`FrameError::BadTag`] (forged, corrupted, another
/// device's), [`FrameError::Replayed`], [`FrameError::CounterReused`],
/// [`FrameError::UnknownMessage`] (authentic but
/// undecodable: answer `Nack(UnknownMessage)`), [`FrameError::Malformed`], and the framing
/// errors of [`frame::peek_up`]. Cost: one key lookup, one HMAC over the frame, one decode.
pub fn handle_datagram<'a, S: DeviceStore + ?Sized>(
    frame: &'a [u8],
    store: &mut S,
) -> Result<Request<'a>, FrameError> {
    let (device, _) = frame::peek_up(frame)?;
    let keys = store
        .keys(device)
        .ok_or(FrameError::UnknownDevice(device))?;
    let up = frame::open_up(&keys, frame)?;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&frame[frame.len() - TAG_LEN..]);
    let retransmission = match store.check_and_advance(device, up.counter, tag) {
        Freshness::New => false,
        Freshness::Retransmission => true,
        Freshness::Reused => {
            return Err(FrameError::CounterReused {
                counter: up.counter,
            })
        }
        Freshness::Replayed { last } => {
            return Err(FrameError::Replayed {
                counter: up.counter,
                last,
            })
        }
    };
    Ok(Request {
        device,
        counter: up.counter,
        retransmission,
        msg: up.msg,
    })
}

/// Seals the answer to request `counter` of `device` into `out`; returns its length.
/// Errors and cost as [`frame::seal_down`].
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
    /// This many chunk frames, the whole request.
    Chunks(u32),
    /// One `Nack` frame instead: a chunk lies past the end of the object, or the request
    /// breaks the rules.
    Refused(NackCode),
}

/// Answers a chunk request from `object` (the manifest or image bytes): calls `send` with each
/// chunk frame, in request order, or with one `Nack(BadRequest)` frame if any requested chunk
/// lies past the end of `object` (then no chunk is sent). The server keeps no transfer state: a
/// retransmitted request is simply served again.
///
/// Errors: [`EncodeError::TooLarge`] if `out` is too small for a frame of this chunk size.
/// Cost: one HMAC and one copy per chunk; `out` is reused for every frame.
pub fn serve_chunks(
    keys: &Keys,
    req: &Request<'_>,
    chunks: &ChunkRequest,
    object: &[u8],
    out: &mut [u8],
    mut send: impl FnMut(&[u8]),
) -> Result<Served, EncodeError> {
    let size = usize::from(chunks.chunk_size);
    let range_of = |i: u32| -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(i).ok()?.checked_mul(size)?;
        (start < object.len()).then(|| start..object.len().min(start + size))
    };
    if !chunks.is_valid() || chunks.slots().any(|(_, i)| range_of(i).is_none()) {
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

    use super::{DeviceStore, Freshness};
    use crate::frame::{DeviceId, Keys, TAG_LEN};

    /// The last counter accepted from a device, and its frame's tag.
    type Last = (u32, [u8; TAG_LEN]);

    /// An in-memory [`DeviceStore`] for tests, tools and single-process servers (feature
    /// `std`). A real server keeps the same two columns in its database.
    #[derive(Debug, Default, Clone)]
    pub struct MemoryStore {
        devices: HashMap<DeviceId, (Keys, Option<Last>)>,
    }

    impl MemoryStore {
        /// Adds (or re-keys) a device; its counter history starts empty.
        pub fn insert(&mut self, device: DeviceId, root_key: &[u8; 32]) {
            self.devices.insert(device, (Keys::derive(root_key), None));
        }

        /// The last counter accepted from `device`.
        pub fn last_counter(&self, device: DeviceId) -> Option<u32> {
            self.devices.get(&device).and_then(|d| d.1).map(|l| l.0)
        }
    }

    impl DeviceStore for MemoryStore {
        fn keys(&self, device: DeviceId) -> Option<Keys> {
            self.devices.get(&device).map(|d| d.0.clone())
        }

        fn check_and_advance(
            &mut self,
            device: DeviceId,
            counter: u32,
            tag: [u8; TAG_LEN],
        ) -> Freshness {
            let Some(d) = self.devices.get_mut(&device) else {
                // Unknown devices never reach here (no keys); refuse anyway.
                return Freshness::Replayed { last: u32::MAX };
            };
            match d.1 {
                Some((last, _)) if counter < last => Freshness::Replayed { last },
                Some((last, t)) if counter == last && t == tag => Freshness::Retransmission,
                Some((last, _)) if counter == last => Freshness::Reused,
                _ => {
                    d.1 = Some((counter, tag));
                    Freshness::New
                }
            }
        }
    }
}

#[cfg(feature = "std")]
pub use memory::MemoryStore;
