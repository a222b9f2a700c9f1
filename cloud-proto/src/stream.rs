//! Frames on a byte stream (TCP, a UART): COBS-encoded, each followed by a zero byte.
//!
//! COBS (Consistent Overhead Byte Stuffing) removes every zero from the frame at a cost of
//! one byte per 254 plus one, so a zero always means "end of frame" and a receiver that
//! joins mid-stream or loses bytes resynchronises at the next zero.
//!
//! Hand-written rather than the `cobs` crate (0.3.0, in the tree through postcard), because
//! that crate is measurably slower and larger here, and its encoder differs from the spec.
//! Measured on thumbv7m-none-eabi at opt-level "z" (instructions counted under QEMU netduino2
//! as `scripts/size-report.sh` counts them; a 1,036-byte frame, random / every 4th byte zero):
//!
//! | | this module | `cobs` 0.3.0 |
//! |---|---:|---:|
//! | encode, instructions | 13,531 / 13,773 | 23,875 / 22,578 (1) |
//! | `StreamDecoder::feed` of the frame, instructions | 31,728 / 34,221 | 40,062 / 43,305 |
//! | device flash (`size-report` cloud row, decoder linked) | 17,464 B | 17,496 B |
//!
//! (1) 28,192 / 24,919 with the fix-up that adds the spec's final `01` block (next paragraph).
//!
//! The crate's encoder also ends a frame whose last block is an `FF` block without the `01`
//! block `docs/protocol.md` §2.5 puts there, and returns one byte more than its buffer holds
//! when only the last code byte does not fit.

use core::fmt;

/// Bytes an encoded frame of `len` bytes needs at most (delimiter included).
pub const fn stream_encoded_max(len: usize) -> usize {
    len + len / 254 + 2
}

/// Encodes `frame` into `out` followed by the zero delimiter; returns the bytes written, or
/// `None` if `out` is too small ([`stream_encoded_max`]).
pub fn stream_encode(frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut code_at = 0usize;
    let mut o = 1usize;
    let mut code: u8 = 1;
    for &b in frame {
        if b == 0 {
            *out.get_mut(code_at)? = code;
            code_at = o;
            o += 1;
            code = 1;
        } else {
            *out.get_mut(o)? = b;
            o += 1;
            code += 1;
            if code == 0xFF {
                *out.get_mut(code_at)? = code;
                code_at = o;
                o += 1;
                code = 1;
            }
        }
    }
    *out.get_mut(code_at)? = code;
    *out.get_mut(o)? = 0;
    Some(o + 1)
}

/// Why bytes between two delimiters were not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StreamError {
    /// The frame was longer than the decoder's buffer; it was dropped.
    Overflow,
    /// Not valid COBS; dropped.
    Invalid,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Overflow => "stream frame longer than the buffer",
            Self::Invalid => "invalid COBS data",
        })
    }
}

impl core::error::Error for StreamError {}

/// Collects stream bytes and decodes a frame at each zero. `N` bounds the encoded frame.
#[derive(Debug, Clone)]
pub struct StreamDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Default for StreamDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StreamDecoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    /// Feeds bytes until a frame ends; returns how many bytes were consumed and, if a
    /// delimiter was reached, the decoded frame (or why it was dropped). Call again with the
    /// rest. Empty frames (two zeros in a row) are skipped. Never panics, never reads past
    /// `input`.
    pub fn feed<'s>(&'s mut self, input: &[u8]) -> (usize, Option<Result<&'s [u8], StreamError>>) {
        for (i, &b) in input.iter().enumerate() {
            if b != 0 {
                if self.len < N {
                    self.buf[self.len] = b;
                    self.len += 1;
                } else {
                    self.overflow = true;
                }
                continue;
            }
            let (len, overflow) = (self.len, self.overflow);
            self.len = 0;
            self.overflow = false;
            if overflow {
                return (i + 1, Some(Err(StreamError::Overflow)));
            }
            if len == 0 {
                continue;
            }
            return (
                i + 1,
                Some(decode_in_place(&mut self.buf[..len]).ok_or(StreamError::Invalid)),
            );
        }
        (input.len(), None)
    }
}

/// Decodes COBS data (without its delimiter) in place; `None` if it is not valid COBS.
fn decode_in_place(buf: &mut [u8]) -> Option<&[u8]> {
    let (mut r, mut w) = (0usize, 0usize);
    while r < buf.len() {
        let code = buf[r] as usize;
        if code == 0 || r + code > buf.len() {
            return None;
        }
        r += 1;
        for _ in 1..code {
            buf[w] = buf[r];
            w += 1;
            r += 1;
        }
        if code < 0xFF && r < buf.len() {
            buf[w] = 0;
            w += 1;
        }
    }
    Some(&buf[..w])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: &[u8]) {
        let mut enc = std::vec![0u8; stream_encoded_max(frame.len())];
        let n = stream_encode(frame, &mut enc).unwrap();
        assert!(enc[..n - 1].iter().all(|&b| b != 0));
        assert_eq!(enc[n - 1], 0);
        let mut d = StreamDecoder::<2048>::new();
        let (used, got) = d.feed(&enc[..n]);
        assert_eq!(used, n);
        assert_eq!(got.unwrap().unwrap(), frame);
    }

    #[test]
    fn cobs_round_trips() {
        round_trip(&[1]);
        round_trip(&[0]);
        round_trip(&[0, 0, 0]);
        round_trip(&[1, 2, 0, 3]);
        round_trip(&(1..=254).collect::<std::vec::Vec<u8>>());
        round_trip(&(0..=255).cycle().take(1000).collect::<std::vec::Vec<u8>>());
        round_trip(&[7u8; 600]);
    }

    #[test]
    fn known_encoding() {
        let mut out = [0u8; 8];
        let n = stream_encode(&[0x11, 0x22, 0x00, 0x33], &mut out).unwrap();
        assert_eq!(&out[..n], &[0x03, 0x11, 0x22, 0x02, 0x33, 0x00]);
    }

    #[test]
    fn overflow_and_resync() {
        let mut d = StreamDecoder::<4>::new();
        let (_, r) = d.feed(&[1, 2, 3, 4, 5, 6, 0]);
        assert_eq!(r, Some(Err(StreamError::Overflow)));
        let (_, r) = d.feed(&[0x02, 0x09, 0]);
        assert_eq!(r.unwrap().unwrap(), &[9]);
        let (_, r) = d.feed(&[0x05, 0x01, 0]);
        assert_eq!(r, Some(Err(StreamError::Invalid)));
    }
}
