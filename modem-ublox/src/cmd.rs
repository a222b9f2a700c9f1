//! Building command lines in a fixed buffer, without `core::fmt` (smaller code).

use crate::error::AtError;
use core::net::Ipv4Addr;

/// Capacity of one command line (an `AT+UPSD=0,1,"<99-byte APN>"` fits).
pub(crate) const CMD_CAP: usize = 128;

/// A command line under construction. Every `push_*` is checked: a string that would not fit
/// or cannot be quoted makes [`Cmd::finish`] fail, never a panic.
#[derive(Debug)]
pub(crate) struct Cmd {
    buf: [u8; CMD_CAP],
    len: usize,
    bad: bool,
}

impl Cmd {
    /// Start with `prefix` (e.g. `"AT+USOCO="`).
    pub(crate) fn new(prefix: &str) -> Self {
        let mut c = Self {
            buf: [0; CMD_CAP],
            len: 0,
            bad: false,
        };
        c.raw(prefix.as_bytes());
        c
    }

    /// Append raw bytes.
    pub(crate) fn raw(&mut self, s: &[u8]) -> &mut Self {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + s.len()) {
            dst.copy_from_slice(s);
            self.len += s.len();
        } else {
            self.bad = true;
        }
        self
    }

    /// Append a decimal number.
    pub(crate) fn num(&mut self, v: u32) -> &mut Self {
        let mut d = [0u8; 10];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.raw(&d[i..])
    }

    /// Append a decimal `u64` (band masks).
    #[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
    pub(crate) fn num64(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.raw(&d[i..])
    }

    /// Append raw command text: printable ASCII only (quotes allowed, no CR, LF or other
    /// control characters).
    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        if !s.bytes().all(|b| (0x20..0x7F).contains(&b)) {
            self.bad = true;
            return self;
        }
        self.raw(s.as_bytes())
    }

    /// Append `,`.
    pub(crate) fn comma(&mut self) -> &mut Self {
        self.raw(b",")
    }

    /// Append `"s"`; `s` must be printable ASCII without `"`, at most 99 bytes.
    pub(crate) fn quoted(&mut self, s: &str) -> &mut Self {
        if s.len() > 99 || !s.bytes().all(|b| (0x20..0x7F).contains(&b) && b != b'"') {
            self.bad = true;
            return self;
        }
        self.raw(b"\"").raw(s.as_bytes()).raw(b"\"")
    }

    /// Append `"a.b.c.d"`.
    pub(crate) fn ip(&mut self, ip: Ipv4Addr) -> &mut Self {
        self.raw(b"\"");
        for (i, o) in ip.octets().iter().enumerate() {
            if i > 0 {
                self.raw(b".");
            }
            self.num(u32::from(*o));
        }
        self.raw(b"\"")
    }

    /// Terminate with `\r\n` (as Particle's drivers send; V.250 accepts it) and return the
    /// bytes.
    pub(crate) fn finish(&mut self) -> Result<&[u8], AtError> {
        self.raw(b"\r\n");
        if self.bad {
            Err(AtError::InvalidArgument)
        } else {
            Ok(&self.buf[..self.len])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_rejects() {
        let mut c = Cmd::new("AT+USOCO=");
        c.num(0)
            .comma()
            .ip(Ipv4Addr::new(52, 1, 2, 3))
            .comma()
            .num(5684);
        assert_eq!(c.finish().unwrap(), b"AT+USOCO=0,\"52.1.2.3\",5684\r\n");
        assert_eq!(
            Cmd::new("AT+UPSD=0,1,").quoted("a\"b").finish(),
            Err(AtError::InvalidArgument)
        );
        let long = "x".repeat(99);
        assert!(Cmd::new("AT+UPSD=0,1,").quoted(&long).finish().is_ok());
        assert_eq!(
            Cmd::new("AT+UPSD=0,1,").quoted(&"x".repeat(100)).finish(),
            Err(AtError::InvalidArgument)
        );
        assert_eq!(
            Cmd::new("AT").num(4_294_967_295).finish().unwrap(),
            b"AT4294967295\r\n"
        );
        assert_eq!(
            Cmd::new("").text("AT+X=\"a\"").finish().unwrap(),
            b"AT+X=\"a\"\r\n"
        );
        assert_eq!(
            Cmd::new("").text("AT\r\nAT").finish(),
            Err(AtError::InvalidArgument)
        );
        assert_eq!(
            Cmd::new("").text(&"A".repeat(127)).finish(),
            Err(AtError::InvalidArgument)
        );
    }
}
