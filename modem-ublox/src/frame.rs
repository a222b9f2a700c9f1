//! Sans-IO framing of the modem's byte stream into lines, the `@` prompt and binary socket
//! payloads read by declared length.
//!
//! The framer never allocates and never panics: it is fed one byte at a time and returns at
//! most one [`Event`] per byte. Rules:
//!
//! * A line ends at `\n`. `\r`, NUL, `0xFF` (UART break / garbage after a reboot) and other
//!   control bytes are dropped, so echo (`AT\r\r\n`), stray CRs (`\r\r\n` on R410 05.08) and the
//!   extra CRLF of the G350 never matter. Empty lines are not reported.
//! * A line longer than the buffer is skipped up to its `\n` and reported once as
//!   [`Event::Overflow`] with the `L` bytes that fit (so the engine can tell whose line it
//!   was); framing then continues with the next line.
//! * When a prompt is expected, `@` as the first byte of a line is [`Event::Prompt`].
//! * When a binary read is expected, a line that has become exactly a `+USORD: <h>,<n>,"` or
//!   `+USORF: <h>,"<ip>",<port>,<n>,"` header switches the framer to payload mode: the header
//!   is reported ([`Event::PayloadStart`]), then exactly `n` bytes are passed through verbatim
//!   ([`Event::PayloadByte`]) whatever they contain (`\r\nOK\r\n`, `"`, `@`), then the closing
//!   quote is checked ([`Event::PayloadEnd`]).

use crate::fields::Fields;

/// Largest payload a `+USORD`/`+USORF` may declare (u-blox AT manual: 0..1024).
pub const MAX_PAYLOAD: usize = 1024;

/// What one input byte completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete, non-empty line without its terminator.
    Line(&'a [u8]),
    /// The `@` prompt of `+USOWR`/`+USOST` in binary mode.
    Prompt,
    /// A line did not fit the buffer and was skipped; its first `L` bytes.
    Overflow(&'a [u8]),
    /// A binary payload header (`+USORD: 0,5,"` including the opening quote).
    PayloadStart(&'a [u8]),
    /// One payload byte.
    PayloadByte(u8),
    /// The payload ended; `true` if the closing quote was where the declared length said.
    PayloadEnd(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Line,
    Discard,
    Payload(u16),
    Close,
}

/// The framer, with a line buffer of `L` bytes.
#[derive(Debug)]
pub struct Framer<const L: usize> {
    buf: [u8; L],
    len: usize,
    state: State,
    emitted: bool,
    expect_prompt: bool,
    expect_binary: bool,
}

impl<const L: usize> Default for Framer<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const L: usize> Framer<L> {
    /// An empty framer expecting neither a prompt nor a binary payload.
    pub const fn new() -> Self {
        Self {
            buf: [0; L],
            len: 0,
            state: State::Line,
            emitted: false,
            expect_prompt: false,
            expect_binary: false,
        }
    }

    /// Report `@` at the start of a line as [`Event::Prompt`] (while a `+USOWR`/`+USOST` waits).
    pub fn set_expect_prompt(&mut self, on: bool) {
        self.expect_prompt = on;
    }

    /// Switch to payload mode on `+USORD`/`+USORF` data headers (while a binary read runs).
    pub fn set_expect_binary(&mut self, on: bool) {
        self.expect_binary = on;
    }

    /// Forget any partial line (after a reboot or a resynchronisation).
    pub fn reset(&mut self) {
        self.len = 0;
        self.state = State::Line;
        self.emitted = false;
    }

    /// Feed one byte. Cost: O(1), except when a `"` completes a possible payload header
    /// (O(line length)).
    pub fn push(&mut self, b: u8) -> Option<Event<'_>> {
        if self.emitted {
            self.emitted = false;
            self.len = 0;
        }
        match self.state {
            State::Payload(rest) => {
                let rest = rest.saturating_sub(1);
                self.state = if rest == 0 {
                    State::Close
                } else {
                    State::Payload(rest)
                };
                Some(Event::PayloadByte(b))
            }
            State::Close => {
                self.state = State::Line;
                if b == b'"' {
                    Some(Event::PayloadEnd(true))
                } else {
                    // Not where the length said: resynchronise on this byte as line data.
                    let _ = self.line_byte(b);
                    Some(Event::PayloadEnd(false))
                }
            }
            State::Discard => {
                if b == b'\n' {
                    self.state = State::Line;
                    self.emitted = true;
                    Some(Event::Overflow(&self.buf[..self.len]))
                } else {
                    None
                }
            }
            State::Line => self.line_byte(b),
        }
    }

    fn line_byte(&mut self, b: u8) -> Option<Event<'_>> {
        match b {
            b'\n' => {
                if self.len == 0 {
                    return None;
                }
                self.emitted = true;
                Some(Event::Line(&self.buf[..self.len]))
            }
            b'@' if self.len == 0 && self.expect_prompt => Some(Event::Prompt),
            // Non-ASCII at the start of a line is noise (break bytes, a reboot, a baud
            // mismatch); inside a line it is kept (operator names).
            0x80..=0xFF if self.len == 0 => None,
            b'\t' | 0x20..=0x7E | 0x80..=0xFE => {
                if self.len >= L {
                    // Keep the head for the report; skip the rest up to the `\n`.
                    self.state = State::Discard;
                    return None;
                }
                self.buf[self.len] = b;
                self.len += 1;
                if b == b'"' && self.expect_binary {
                    if let Some(n) = payload_header_len(&self.buf[..self.len]) {
                        self.emitted = true;
                        self.state = if n == 0 {
                            State::Close
                        } else {
                            State::Payload(n)
                        };
                        return Some(Event::PayloadStart(&self.buf[..self.len]));
                    }
                }
                None
            }
            // CR, NUL, 0xFF, other control bytes.
            _ => None,
        }
    }
}

/// If `line` is exactly a binary read header ending in the payload's opening quote, the
/// declared payload length. The arguments are split by the same `Fields` splitter the
/// rest of the driver reads answers with (spaces around an argument are ignored).
pub fn payload_header_len(line: &[u8]) -> Option<u16> {
    let (rest, udp) = match line.strip_prefix(b"+USORD:") {
        Some(r) => (r, false),
        None => (line.strip_prefix(b"+USORF:")?, true),
    };
    // "<h>,<n>" or "<h>,\"<ip>\",<port>,<n>"
    let mut f = Fields::new(rest.strip_suffix(b",\"")?);
    f.int()?;
    if udp {
        f.quoted()?;
        f.int()?;
    }
    let n = f.int()?;
    if f.next().is_some() || n as usize > MAX_PAYLOAD {
        return None;
    }
    Some(n as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events<const L: usize>(f: &mut Framer<L>, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in input {
            match f.push(b) {
                Some(Event::Line(l)) => out.push(format!("L:{}", String::from_utf8_lossy(l))),
                Some(Event::Prompt) => out.push("@".into()),
                Some(Event::Overflow(h)) => out.push(format!("OVF:{}", String::from_utf8_lossy(h))),
                Some(Event::PayloadStart(h)) => {
                    out.push(format!("H:{}", String::from_utf8_lossy(h)))
                }
                Some(Event::PayloadByte(b)) => out.push(format!("B:{b:02x}")),
                Some(Event::PayloadEnd(ok)) => out.push(format!("E:{ok}")),
                None => {}
            }
        }
        out
    }

    #[test]
    fn echo_stray_cr_and_garbage() {
        let mut f = Framer::<64>::new();
        let ev = events(
            &mut f,
            b"\0\0\xff\r\nAT\r\r\nOK\r\n\r\r\n\r\r\n+USORF: 1,0\r\n\r\r\nOK\r\n",
        );
        assert_eq!(ev, ["L:AT", "L:OK", "L:+USORF: 1,0", "L:OK"]);
    }

    #[test]
    fn overlong_line_is_skipped_once() {
        let mut f = Framer::<8>::new();
        let ev = events(&mut f, b"\r\n+CGDCONT: 1,\"IP\",\"x\"\r\nOK\r\n");
        assert_eq!(ev, ["OVF:+CGDCONT", "L:OK"]);
        // Exactly L bytes fit.
        let ev = events(&mut f, b"12345678\r\n");
        assert_eq!(ev, ["L:12345678"]);
    }

    #[test]
    fn prompt_only_when_expected_and_at_line_start() {
        let mut f = Framer::<16>::new();
        assert_eq!(events(&mut f, b"\r\n@"), Vec::<String>::new());
        f.reset();
        f.set_expect_prompt(true);
        assert_eq!(events(&mut f, b"\r\na@\r\n@"), ["L:a@", "@"]);
    }

    #[test]
    fn binary_payload_read_by_length() {
        let mut f = Framer::<32>::new();
        f.set_expect_binary(true);
        let ev = events(&mut f, b"\r\n+USORD: 0,4,\"\r\nOK\"\r\n\r\nOK\r\n");
        assert_eq!(
            ev,
            [
                "H:+USORD: 0,4,\"",
                "B:0d",
                "B:0a",
                "B:4f",
                "B:4b",
                "E:true",
                "L:OK"
            ]
        );
        let ev = events(
            &mut f,
            b"\r\n+USORF: 1,\"1.2.3.4\",123,2,\"\"\"\"\r\n\r\n\r\nOK\r\n",
        );
        assert_eq!(
            ev,
            [
                "H:+USORF: 1,\"1.2.3.4\",123,2,\"",
                "B:22",
                "B:22",
                "E:true",
                "L:OK"
            ]
        );
    }

    #[test]
    fn binary_header_shapes() {
        assert_eq!(payload_header_len(b"+USORD: 0,1024,\""), Some(1024));
        assert_eq!(payload_header_len(b"+USORD: 0,1025,\""), None);
        assert_eq!(payload_header_len(b"+USORD: 0,\""), None);
        assert_eq!(payload_header_len(b"+USORD: 0,4"), None);
        assert_eq!(payload_header_len(b"+UUSORD: 0,4,\""), None);
        assert_eq!(payload_header_len(b"+USORF: 0,\"1.2.3.4\",5,6,\""), Some(6));
        assert_eq!(payload_header_len(b"+USORF: 0,\"1.2.3.4\",5,\""), None);
        assert_eq!(payload_header_len(b"+USORF: 0,1.2.3.4,5,6,\""), None);
        assert_eq!(payload_header_len(b"+USORF: x,\"1.2.3.4\",5,6,\""), None);
        assert_eq!(payload_header_len(b"+USORD: 0,4,5,\""), None);
        assert_eq!(payload_header_len(b"+USORD: 0,-4,\""), None);
        assert_eq!(payload_header_len(b"+USORD: 0,\"4\",\""), None);
    }

    #[test]
    fn wrong_closing_quote_resyncs() {
        let mut f = Framer::<32>::new();
        f.set_expect_binary(true);
        let ev = events(&mut f, b"+USORD: 0,1,\"ab\r\nOK\r\n");
        assert_eq!(ev, ["H:+USORD: 0,1,\"", "B:61", "E:false", "L:b", "L:OK"]);
    }
}
