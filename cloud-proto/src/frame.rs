//! Frames: header, postcard body, authentication tag (`docs/protocol.md`, section 2).
//!
//! ```text
//! up (device → cloud):   0x10 | device id u32 LE | counter u32 LE | postcard(Up)   | tag[8]
//! down (cloud → device): 0x11 | echo u16 LE                       | postcard(Down) | tag[8]
//! chunk (cloud → device):0x12 | echo u16 LE    | slot u8          | chunk bytes    | tag[8]
//! ```
//!
//! The tag is HMAC-SHA256 truncated to 8 bytes, keyed per direction, over an 8-byte context
//! (device id u32 LE, then the full 32-bit counter the frame carries or answers) followed by
//! the frame without its tag. Down frames carry only the low 16 bits of the counter they
//! answer; the device supplies the full value from its own outstanding request, so the tag
//! still binds the whole counter, and the device id, without sending them.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::message::{Down, Up};

/// Protocol version, high nibble of the first byte.
pub const PROTOCOL_VERSION: u8 = 1;
/// First byte of a device → cloud frame.
pub const KIND_UP: u8 = 0x10;
/// First byte of a cloud → device message frame.
pub const KIND_DOWN: u8 = 0x11;
/// First byte of a cloud → device chunk frame.
pub const KIND_CHUNK: u8 = 0x12;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 8;
/// Header length of an up frame.
pub const UP_HEADER_LEN: usize = 9;
/// Header length of a down message frame.
pub const DOWN_HEADER_LEN: usize = 3;
/// Header length of a chunk frame.
pub const CHUNK_HEADER_LEN: usize = 4;
/// Largest chunk a chunk frame carries: 1 KiB.
pub const MAX_CHUNK_DATA: usize = 1024;
/// Largest frame either side sends or accepts: a chunk frame with [`MAX_CHUNK_DATA`] bytes.
pub const MAX_FRAME: usize = CHUNK_HEADER_LEN + MAX_CHUNK_DATA + TAG_LEN;
/// Largest chunk whose frame fits one u-blox SARA UDP datagram (`AT+USOST` and `AT+USORF`
/// carry at most 1024 bytes; u-blox AT commands manual, socket commands). On a byte stream
/// (TCP, UART) chunks up to [`MAX_CHUNK_DATA`] fit.
pub const MAX_CHUNK_DATA_DATAGRAM: usize = 1024 - CHUNK_HEADER_LEN - TAG_LEN;

/// A device's identity on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceId(pub u32);

/// The per-direction keys derived from a device's 32-byte root key (provisioned at
/// manufacture): `K_up = HMAC-SHA256(root, "cloud-proto/1 up")`,
/// `K_down = HMAC-SHA256(root, "cloud-proto/1 down")`. Separate keys mean a frame can never be
/// reflected back to its sender as valid. Deliberately not comparable (no `PartialEq`) and not
/// printable.
///
/// Wiped when dropped ([`ZeroizeOnDrop`]; [`Zeroize`] wipes them on demand), as are the HMAC
/// states keyed with them and the copy of the key the HMAC setup makes. Moves are plain copies
/// the compiler may leave behind on the stack, which nothing can wipe: build the keys where
/// they live (a `static` endpoint) rather than moving them around. Whoever holds the root key
/// wipes it after [`derive`](Self::derive): nothing here keeps it.
#[derive(Clone)]
pub struct Keys {
    up: [u8; 32],
    down: [u8; 32],
}

impl Zeroize for Keys {
    fn zeroize(&mut self) {
        self.up.zeroize();
        self.down.zeroize();
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Keys {}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed with a 32-byte key, over the concatenation of `parts`. The key is
/// zero-padded to the 64-byte block exactly as RFC 2104 pads a short key, so this is plain
/// HMAC-SHA256 with that key (and cannot fail). The padded copy is wiped; the HMAC state wipes
/// itself when dropped (the `zeroize` features of `hmac` and `sha2`).
fn mac(key: &[u8; 32], parts: &[&[u8]]) -> HmacSha256 {
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    block[..32].copy_from_slice(key);
    let mut m = <HmacSha256 as KeyInit>::new(&block);
    block.zeroize();
    for p in parts {
        m.update(p);
    }
    m
}

impl Keys {
    /// Derives both direction keys from the root key. Cost: two HMAC-SHA256 of 16–18 bytes.
    pub fn derive(root: &[u8; 32]) -> Self {
        let mut keys = Self {
            up: [0; 32],
            down: [0; 32],
        };
        for (out, label) in [
            (&mut keys.up, &b"cloud-proto/1 up"[..]),
            (&mut keys.down, &b"cloud-proto/1 down"[..]),
        ] {
            // The MAC output wipes itself when dropped (CtOutput is ZeroizeOnDrop).
            let full = mac(root, &[label]).finalize();
            out.copy_from_slice(&full.as_bytes()[..]);
        }
        keys
    }

    /// The MAC of a frame (without its tag) with `key`, over the 8-byte context first.
    fn frame_mac(key: &[u8; 32], device: DeviceId, counter: u32, frame: &[u8]) -> HmacSha256 {
        mac(
            key,
            &[&device.0.to_le_bytes(), &counter.to_le_bytes(), frame],
        )
    }

    fn tag(key: &[u8; 32], device: DeviceId, counter: u32, frame: &[u8]) -> [u8; TAG_LEN] {
        let full = Self::frame_mac(key, device, counter, frame)
            .finalize()
            .into_bytes();
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&full[..TAG_LEN]);
        t
    }

    /// Checks `tag` in constant time (`Mac::verify_truncated_left`).
    fn verify(key: &[u8; 32], device: DeviceId, counter: u32, frame: &[u8], tag: &[u8]) -> bool {
        tag.len() == TAG_LEN
            && Self::frame_mac(key, device, counter, frame)
                .verify_truncated_left(tag)
                .is_ok()
    }
}

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer, or [`MAX_FRAME`], is too small for the frame.
    TooLarge,
    /// A message that breaks a protocol rule (e.g. an empty or oversized chunk request).
    Invalid,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "frame larger than the buffer or the maximum frame size",
            Self::Invalid => "message breaks a protocol rule",
        })
    }
}

impl core::error::Error for EncodeError {}

/// Why a received frame was rejected. A rejected frame changes no state.
///
/// These are the frame-level reasons both sides share; the server's replay and key-store
/// outcomes are [`RequestError`](crate::RequestError).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than its header and a tag.
    Truncated,
    /// Longer than [`MAX_FRAME`].
    TooLarge,
    /// Unknown protocol version or frame kind (first byte).
    UnknownKind(u8),
    /// A frame of the other direction.
    WrongDirection,
    /// The tag does not verify: forged, corrupted, truncated, for another device, or for
    /// another request.
    BadTag,
    /// A reply that answers no request this device has outstanding (late, duplicated, or the
    /// wrong kind of answer for the request).
    Unexpected,
    /// Authentic, but not a valid message: a body that does not decode, a chunk slot past the
    /// request, a chunk of the wrong length, a chunk request that breaks the rules.
    Malformed,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("frame truncated"),
            Self::TooLarge => f.write_str("frame too large"),
            Self::UnknownKind(k) => write!(f, "unknown frame kind 0x{k:02x}"),
            Self::WrongDirection => f.write_str("frame of the wrong direction"),
            Self::BadTag => f.write_str("authentication tag does not verify"),
            Self::Unexpected => f.write_str("reply to no outstanding request"),
            Self::Malformed => f.write_str("malformed message"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Writes `header`, then `body` (which fills the space it is given and returns how much it
/// used), then the tag over both; returns the frame length. Nothing past `MAX_FRAME` or `out`.
fn seal(
    key: &[u8; 32],
    device: DeviceId,
    counter: u32,
    header: &[u8],
    out: &mut [u8],
    body: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    let limit = out.len().min(MAX_FRAME);
    let body_end = limit
        .checked_sub(TAG_LEN)
        .filter(|&e| e >= header.len())
        .ok_or(EncodeError::TooLarge)?;
    out[..header.len()].copy_from_slice(header);
    let len = header.len() + body(&mut out[header.len()..body_end])?;
    let tag = Keys::tag(key, device, counter, &out[..len]);
    out[len..len + TAG_LEN].copy_from_slice(&tag);
    Ok(len + TAG_LEN)
}

fn postcard_body<T: serde::Serialize>(
    msg: &T,
) -> impl FnOnce(&mut [u8]) -> Result<usize, EncodeError> + '_ {
    move |body| {
        postcard::to_slice(msg, body)
            .map(|b| b.len())
            .map_err(|_| EncodeError::TooLarge)
    }
}

/// Builds a device → cloud frame into `out`; returns its length.
///
/// Errors: [`EncodeError::TooLarge`] if it does not fit `out` or [`MAX_FRAME`];
/// [`EncodeError::Invalid`] for a chunk request that breaks the rules
/// ([`ChunkRequest::is_valid`](crate::ChunkRequest::is_valid)).
/// Cost: one postcard encoding and one HMAC-SHA256 over the frame.
pub fn seal_up(
    keys: &Keys,
    device: DeviceId,
    counter: u32,
    msg: &Up<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    if let Up::ChunkRequest(r) = msg {
        if !r.is_valid() {
            return Err(EncodeError::Invalid);
        }
    }
    let mut header = [0u8; UP_HEADER_LEN];
    header[0] = KIND_UP;
    header[1..5].copy_from_slice(&device.0.to_le_bytes());
    header[5..9].copy_from_slice(&counter.to_le_bytes());
    seal(&keys.up, device, counter, &header, out, postcard_body(msg))
}

/// Reads the device id and counter of an up frame without verifying it (to find the key).
pub fn peek_up(frame: &[u8]) -> Result<(DeviceId, u32), FrameError> {
    if frame.len() > MAX_FRAME {
        return Err(FrameError::TooLarge);
    }
    match frame.first() {
        None => return Err(FrameError::Truncated),
        Some(&KIND_UP) => {}
        Some(&KIND_DOWN | &KIND_CHUNK) => return Err(FrameError::WrongDirection),
        Some(&k) => return Err(FrameError::UnknownKind(k)),
    }
    if frame.len() < UP_HEADER_LEN + TAG_LEN {
        return Err(FrameError::Truncated);
    }
    let d = u32::from_le_bytes([frame[1], frame[2], frame[3], frame[4]]);
    let c = u32::from_le_bytes([frame[5], frame[6], frame[7], frame[8]]);
    Ok((DeviceId(d), c))
}

/// An up frame whose tag verified; its body not decoded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VerifiedUp<'a> {
    /// Sender.
    pub device: DeviceId,
    /// Its counter.
    pub counter: u32,
    /// Its tag (what the server remembers to tell a retransmission from a reused counter).
    pub tag: [u8; TAG_LEN],
    /// The postcard body.
    pub body: &'a [u8],
}

impl<'a> VerifiedUp<'a> {
    /// Decodes the body. Errors: [`FrameError::Malformed`] if it is not exactly one `Up` this
    /// version knows (trailing bytes included), or a chunk request that breaks the rules.
    pub fn decode(&self) -> Result<Up<'a>, FrameError> {
        let msg: Up<'a> = decode_exact(self.body)?;
        match &msg {
            Up::ChunkRequest(r) if !r.is_valid() => Err(FrameError::Malformed),
            _ => Ok(msg),
        }
    }
}

/// Verifies the tag of an up frame with the sender's keys (find them with [`peek_up`]).
/// Errors: the framing errors of [`peek_up`], [`FrameError::BadTag`].
/// Cost: one HMAC-SHA256 over the frame.
pub fn verify_up<'a>(keys: &Keys, frame: &'a [u8]) -> Result<VerifiedUp<'a>, FrameError> {
    let (device, counter) = peek_up(frame)?;
    let (signed, tag) = frame.split_at(frame.len() - TAG_LEN);
    if !Keys::verify(&keys.up, device, counter, signed, tag) {
        return Err(FrameError::BadTag);
    }
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    Ok(VerifiedUp {
        device,
        counter,
        tag: t,
        body: &signed[UP_HEADER_LEN..],
    })
}

/// An authenticated, decoded up frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpFrame<'a> {
    /// Sender.
    pub device: DeviceId,
    /// Its counter.
    pub counter: u32,
    /// The message.
    pub msg: Up<'a>,
}

/// [`verify_up`] then [`VerifiedUp::decode`]; no replay check (a server wants
/// [`handle_datagram`](crate::handle_datagram), or
/// [`authenticate`](crate::authenticate) and [`admit`](crate::admit)). Cost: one HMAC over the
/// frame, one postcard decoding.
pub fn open_up<'a>(keys: &Keys, frame: &'a [u8]) -> Result<UpFrame<'a>, FrameError> {
    let v = verify_up(keys, frame)?;
    Ok(UpFrame {
        device: v.device,
        counter: v.counter,
        msg: v.decode()?,
    })
}

pub(crate) fn decode_exact<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes(body) {
        Ok((v, [])) => Ok(v),
        _ => Err(FrameError::Malformed),
    }
}

fn down_header(kind: u8, echo: u32) -> [u8; 3] {
    let [lo, hi, ..] = echo.to_le_bytes();
    [kind, lo, hi]
}

/// Builds a cloud → device message frame answering the device's request `echo` (its full
/// counter; the frame carries the low 16 bits). Errors and cost as [`seal_up`].
pub fn seal_down(
    keys: &Keys,
    device: DeviceId,
    echo: u32,
    msg: &Down<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let header = down_header(KIND_DOWN, echo);
    seal(&keys.down, device, echo, &header, out, postcard_body(msg))
}

/// Builds a chunk frame: `data`, the chunk at position `slot` of the device's request `echo`.
/// Errors: [`EncodeError::TooLarge`] past [`MAX_CHUNK_DATA`] or `out`. Cost: one HMAC-SHA256
/// over the frame (one copy of `data`).
pub fn seal_chunk(
    keys: &Keys,
    device: DeviceId,
    echo: u32,
    slot: u8,
    data: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let [kind, lo, hi] = down_header(KIND_CHUNK, echo);
    seal(
        &keys.down,
        device,
        echo,
        &[kind, lo, hi, slot],
        out,
        |body| {
            body.get_mut(..data.len())
                .ok_or(EncodeError::TooLarge)?
                .copy_from_slice(data);
            Ok(data.len())
        },
    )
}

/// An authenticated cloud → device frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DownFrame<'a> {
    /// A message answering request `echo`.
    Message {
        /// The full counter of the request answered.
        echo: u32,
        /// The message.
        msg: Down<'a>,
    },
    /// Chunk data answering request `echo`.
    Chunk {
        /// The full counter of the request answered.
        echo: u32,
        /// Position of the chunk in that request.
        slot: u8,
        /// The chunk bytes.
        data: &'a [u8],
    },
}

/// Verifies and decodes a cloud → device frame. `outstanding` maps the 16 echo bits of the
/// frame to the full counter of a request the device is waiting on (or `None`: the frame is
/// [`FrameError::Unexpected`]); the tag is then checked against that full counter.
///
/// Errors: [`FrameError::TooLarge`], [`FrameError::Truncated`], [`FrameError::UnknownKind`],
/// [`FrameError::WrongDirection`], [`FrameError::Unexpected`], [`FrameError::BadTag`],
/// [`FrameError::Malformed`] (an authentic message body that does not decode). Cost: one
/// HMAC-SHA256 over the frame and, for a message, one postcard decoding; no copy.
pub fn open_down<'a>(
    keys: &Keys,
    device: DeviceId,
    frame: &'a [u8],
    outstanding: impl Fn(u16) -> Option<u32>,
) -> Result<DownFrame<'a>, FrameError> {
    if frame.len() > MAX_FRAME {
        return Err(FrameError::TooLarge);
    }
    let kind = *frame.first().ok_or(FrameError::Truncated)?;
    let head = match kind {
        KIND_DOWN => DOWN_HEADER_LEN,
        KIND_CHUNK => CHUNK_HEADER_LEN,
        KIND_UP => return Err(FrameError::WrongDirection),
        k => return Err(FrameError::UnknownKind(k)),
    };
    if frame.len() < head + TAG_LEN {
        return Err(FrameError::Truncated);
    }
    let low = u16::from_le_bytes([frame[1], frame[2]]);
    let echo = outstanding(low).ok_or(FrameError::Unexpected)?;
    let (signed, tag) = frame.split_at(frame.len() - TAG_LEN);
    if !Keys::verify(&keys.down, device, echo, signed, tag) {
        return Err(FrameError::BadTag);
    }
    Ok(match kind {
        KIND_DOWN => DownFrame::Message {
            echo,
            msg: decode_exact(&signed[DOWN_HEADER_LEN..])?,
        },
        _ => DownFrame::Chunk {
            echo,
            slot: signed[3],
            data: &signed[CHUNK_HEADER_LEN..],
        },
    })
}
