//! A UART that replays a recorded SARA conversation, strictly: the bytes the driver writes
//! must be exactly the recorded MCU → modem bytes, and the modem's bytes become readable only
//! once every byte the driver wrote before them in the recording has been written. So the
//! driver under test meets the byte-exact answers the emulator gave, in the order it gave
//! them, and a driver that says anything else fails instead of being measured.
//!
//! The script is a sequence of records: direction (`TO_MODEM` or `FROM_MODEM`), length
//! (u16 LE), bytes. The host generator (`build.rs`) writes it from `modem-ublox-emu`'s
//! transcript and checks it with this same code before the bench embeds it.

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};

/// Record direction: bytes the MCU writes.
pub const TO_MODEM: u8 = b'>';
/// Record direction: bytes the modem sends.
pub const FROM_MODEM: u8 = b'<';

/// Why the replay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The driver wrote a byte other than the recorded one, at this script offset.
    Mismatch(usize),
    /// The driver read when the recording has nothing for it (a read without `read_ready`).
    Starved,
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Mismatch(at) => {
                write!(f, "driver wrote an unrecorded byte at script offset {at}")
            }
            Self::Starved => f.write_str("driver read past the recorded answer"),
        }
    }
}

impl core::error::Error for ReplayError {}

impl embedded_io::Error for ReplayError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// The replaying UART over `script`.
pub struct Replay<'a> {
    script: &'a [u8],
    /// Start of the current record's bytes, and its end.
    at: usize,
    end: usize,
    dir: u8,
    reads: u32,
}

impl<'a> Replay<'a> {
    /// A replay of `script` from its first record.
    pub fn new(script: &'a [u8]) -> Self {
        let mut r = Self {
            script,
            at: 0,
            end: 0,
            dir: 0,
            reads: 0,
        };
        r.advance();
        r
    }

    /// Moves past exhausted records; at the end of the script (or at a malformed record)
    /// `dir` is 0, which neither reads nor writes.
    fn advance(&mut self) {
        while self.at == self.end {
            let Some(h) = self.script.get(self.end..self.end + 3) else {
                self.dir = 0;
                return;
            };
            let (dir, len) = (h[0], usize::from(u16::from_le_bytes([h[1], h[2]])));
            let start = self.end + 3;
            if start + len > self.script.len() || (dir != TO_MODEM && dir != FROM_MODEM) {
                self.dir = 0;
                return;
            }
            (self.dir, self.at, self.end) = (dir, start, start + len);
        }
    }

    /// Every recorded byte was written and read.
    pub fn finished(&self) -> bool {
        self.at == self.end && self.end == self.script.len()
    }

    /// `read` calls so far (what a real UART driver would be entered for).
    pub fn reads(&self) -> u32 {
        self.reads
    }

    /// Bytes of the script not yet consumed.
    pub fn left(&self) -> usize {
        self.script.len().saturating_sub(self.at)
    }
}

impl ErrorType for Replay<'_> {
    type Error = ReplayError;
}

impl Write for Replay<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ReplayError> {
        for &b in buf {
            self.advance();
            if self.dir != TO_MODEM || self.script[self.at] != b {
                return Err(ReplayError::Mismatch(self.at));
            }
            self.at += 1;
        }
        self.advance();
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ReplayError> {
        Ok(())
    }
}

impl ReadReady for Replay<'_> {
    fn read_ready(&mut self) -> Result<bool, ReplayError> {
        self.advance();
        Ok(self.dir == FROM_MODEM)
    }
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReplayError> {
        self.reads += 1;
        self.advance();
        if self.dir != FROM_MODEM {
            return Err(ReplayError::Starved);
        }
        let n = buf.len().min(self.end - self.at);
        buf[..n].copy_from_slice(&self.script[self.at..self.at + n]);
        self.at += n;
        self.advance();
        Ok(n)
    }
}
