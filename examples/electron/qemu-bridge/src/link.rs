//! The board link's bytes (USART2 of the QEMU run), the host side. The firmware side is
//! electron-bsp's `qemu::link` (examples/electron/device/bsp/src/qemu/link.rs); the table is in
//! electron-bsp's `qemu` module docs and in this crate's README. Integers are little-endian.
//!
//! | request | bytes | answer |
//! |---|---|---|
//! | hello (boot) | `A0` | `D0` |
//! | waited | `A1` + u32 ns | `D1` + u16 bytes queued on USART3 meanwhile |
//! | PWR_ON level | `A2` + u8 (0 low, 1 high) | `D2` |
//! | RESET_N level | `A3` + u8 | `D3` |
//! | V_INT read | `A4` | `D4` + u8 level |
//! | deep sleep | `A5` + u32 ms | `D5` |

use std::fmt;

const HELLO: u8 = 0xA0;
const WAITED: u8 = 0xA1;
const PWR_ON: u8 = 0xA2;
const RESET_N: u8 = 0xA3;
const V_INT: u8 = 0xA4;
const SLEEP: u8 = 0xA5;
const ANSWER: u8 = 0x30;

/// One request from the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The firmware booted (QEMU's power-on, or the reset that ends a sleep).
    Hello,
    /// The firmware is about to wait this long: advance the modem's clock.
    Waited {
        /// Nanoseconds.
        ns: u32,
    },
    /// PWR_ON driven to a level.
    PwrOn {
        /// High (released) or low (pressed).
        high: bool,
    },
    /// RESET_N driven to a level.
    ResetN {
        /// High (released) or low (reset).
        high: bool,
    },
    /// Read V_INT.
    VInt,
    /// The firmware sleeps this long, then resets.
    Sleep {
        /// Milliseconds.
        ms: u32,
    },
}

/// A byte sequence that is not a request (the decoder starts afresh at the next byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A first byte that names no request.
    UnknownRequest(u8),
    /// A pin level other than 0 or 1.
    BadLevel(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownRequest(b) => write!(f, "unknown board-link request {b:#04x}"),
            Self::BadLevel(b) => write!(f, "pin level {b:#04x} is neither 0 nor 1"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Length of the request that starts with `op`, if it is one.
fn request_len(op: u8) -> Option<usize> {
    match op {
        HELLO | V_INT => Some(1),
        PWR_ON | RESET_N => Some(2),
        WAITED | SLEEP => Some(5),
        _ => None,
    }
}

/// Byte-at-a-time decoder (the stream arrives in arbitrary pieces).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: [u8; 5],
    len: usize,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one byte; returns a request (or an error) when one is complete.
    pub fn push(&mut self, b: u8) -> Option<Result<Request, DecodeError>> {
        if self.len == 0 && request_len(b).is_none() {
            return Some(Err(DecodeError::UnknownRequest(b)));
        }
        self.buf[self.len] = b;
        self.len += 1;
        let need = request_len(self.buf[0]).unwrap_or(1);
        if self.len < need {
            return None;
        }
        self.len = 0;
        let b = self.buf;
        let word = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        let level = |x: u8| match x {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(DecodeError::BadLevel(x)),
        };
        Some(match b[0] {
            HELLO => Ok(Request::Hello),
            WAITED => Ok(Request::Waited { ns: word }),
            PWR_ON => level(b[1]).map(|high| Request::PwrOn { high }),
            RESET_N => level(b[1]).map(|high| Request::ResetN { high }),
            V_INT => Ok(Request::VInt),
            SLEEP => Ok(Request::Sleep { ms: word }),
            op => Err(DecodeError::UnknownRequest(op)),
        })
    }
}

/// What the bridge answers besides the acknowledgement itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Just the acknowledgement.
    Done,
    /// For [`Request::Waited`]: bytes queued on USART3 meanwhile (saturated at 65 535).
    Queued(usize),
    /// For [`Request::VInt`]: the level.
    Level(bool),
}

/// The answer's bytes for `req`.
pub fn answer(req: Request, reply: Reply) -> Vec<u8> {
    let op = match req {
        Request::Hello => HELLO,
        Request::Waited { .. } => WAITED,
        Request::PwrOn { .. } => PWR_ON,
        Request::ResetN { .. } => RESET_N,
        Request::VInt => V_INT,
        Request::Sleep { .. } => SLEEP,
    } + ANSWER;
    let mut v = vec![op];
    match (req, reply) {
        (Request::Waited { .. }, r) => {
            let n = match r {
                Reply::Queued(n) => u16::try_from(n).unwrap_or(u16::MAX),
                _ => 0,
            };
            v.extend_from_slice(&n.to_le_bytes());
        }
        (Request::VInt, r) => v.push(u8::from(r == Reply::Level(true))),
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Request, DecodeError>> {
        let mut d = Decoder::new();
        bytes.iter().filter_map(|&b| d.push(b)).collect()
    }

    #[test]
    fn every_request_decodes_from_the_table() {
        let bytes = [
            0xA0, // hello
            0xA1, 0xA0, 0x86, 0x01, 0x00, // waited 100 000 ns
            0xA2, 0x00, // PWR_ON low
            0xA2, 0x01, // PWR_ON high
            0xA3, 0x00, // RESET_N low
            0xA4, // V_INT
            0xA5, 0x10, 0x27, 0x00, 0x00, // sleep 10 000 ms
        ];
        assert_eq!(
            decode_all(&bytes),
            vec![
                Ok(Request::Hello),
                Ok(Request::Waited { ns: 100_000 }),
                Ok(Request::PwrOn { high: false }),
                Ok(Request::PwrOn { high: true }),
                Ok(Request::ResetN { high: false }),
                Ok(Request::VInt),
                Ok(Request::Sleep { ms: 10_000 }),
            ]
        );
    }

    #[test]
    fn a_request_split_across_reads_completes_on_its_last_byte() {
        let mut d = Decoder::new();
        for &b in &[0xA1, 0xFF, 0xFF, 0xFF] {
            assert_eq!(d.push(b), None);
        }
        assert_eq!(d.push(0xFF), Some(Ok(Request::Waited { ns: u32::MAX })));
        assert_eq!(d.push(0xA0), Some(Ok(Request::Hello)));
    }

    #[test]
    fn garbage_is_reported_and_the_decoder_resynchronises() {
        assert_eq!(
            decode_all(&[0x00, 0xD1, 0xA2, 0x07, 0xA4]),
            vec![
                Err(DecodeError::UnknownRequest(0x00)),
                Err(DecodeError::UnknownRequest(0xD1)),
                Err(DecodeError::BadLevel(0x07)),
                Ok(Request::VInt),
            ]
        );
    }

    #[test]
    fn answers_are_the_tables_bytes() {
        assert_eq!(answer(Request::Hello, Reply::Done), [0xD0]);
        assert_eq!(
            answer(Request::Waited { ns: 1 }, Reply::Queued(0x1234)),
            [0xD1, 0x34, 0x12]
        );
        assert_eq!(
            answer(Request::Waited { ns: 1 }, Reply::Queued(70_000)),
            [0xD1, 0xFF, 0xFF]
        );
        assert_eq!(answer(Request::PwrOn { high: true }, Reply::Done), [0xD2]);
        assert_eq!(answer(Request::ResetN { high: false }, Reply::Done), [0xD3]);
        assert_eq!(answer(Request::VInt, Reply::Level(true)), [0xD4, 1]);
        assert_eq!(answer(Request::VInt, Reply::Level(false)), [0xD4, 0]);
        assert_eq!(answer(Request::Sleep { ms: 5 }, Reply::Done), [0xD5]);
    }
}
