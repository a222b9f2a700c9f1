//! The raw command escape hatch ([`Modem::command`]) and the one query helper every typed
//! command is built on ([`Modem::ask`]), which is not generic over the answer's parser: each
//! call site only adds its own small parse closure, not another copy of the exchange.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::cmd::Cmd;
use crate::engine::Response;
use crate::error::AtError;
use crate::fields::{strip, Fields};
use crate::modem::Modem;

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    /// Send a raw AT command and give every information line of its answer to `on_line`,
    /// while the engine goes on handling what is not the answer: URCs (socket data, closes,
    /// registration, PDP and power-saving changes) are recognised and applied on every line,
    /// the echo of the command is dropped, and a reboot noticed on the way is handled as for
    /// any command. `cmd` is the command without its line ending (`"AT+CGSN"`,
    /// `"AT+UCGED?"`); the driver appends `\r\n`. `on_line` sees each line without its line
    /// ending; registration answers (`+CREG: 2,1`) reach it too.
    ///
    /// Use it for commands this driver has no method for. Not for commands that change what
    /// the driver relies on — echo (`ATE1`), error format (`AT+CMEE`), registration reporting
    /// (`AT+CREG=0`), UART power saving (`AT+UPSV`), baud rate and flow control (`AT+IPR`,
    /// `AT&K`, `AT+IFC`), socket data format (`AT+UDCONF=1`) — and not for commands that
    /// answer with a prompt or binary data (`AT+USOWR`, `AT+USORD`, `AT+CMGS`): use the
    /// typed methods for those.
    ///
    /// Cost: one exchange, up to `timeout_ms` (and 100 ms of draining input that keeps
    /// arriving); a timeout counts towards recovery like any command's; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError::InvalidArgument`] if `cmd` does not start with `AT`, contains a control
    /// character, or is longer than 126 bytes; [`AtError::LineTooLong`] if a line longer than
    /// the line buffer `L` arrived during the exchange (it may have been part of the answer,
    /// and `on_line` did not see it; the exchange itself completed); otherwise the exchange's
    /// [`AtError`] (`Error`, `Cme(code)`, `Timeout`, `ModemRebooted`, …).
    ///
    /// ```
    /// # use embedded_hal::{delay::DelayNs, digital::{InputPin, OutputPin}};
    /// # use embedded_io::{Read, ReadReady, Write};
    /// # use modem_ublox::{AtError, Modem};
    /// /// The IMEI (`AT+CGSN` answers it as a bare line).
    /// fn imei<U, D, P, R, V>(m: &mut Modem<U, D, P, R, V>) -> Result<[u8; 15], AtError>
    /// where
    ///     U: Read + Write + ReadReady,
    ///     D: DelayNs,
    ///     P: OutputPin,
    ///     R: OutputPin,
    ///     V: InputPin,
    /// {
    ///     let mut imei = None;
    ///     m.command("AT+CGSN", 1_000, |line| {
    ///         if let Ok(digits) = <[u8; 15]>::try_from(line) {
    ///             imei = Some(digits);
    ///         }
    ///     })?;
    ///     imei.ok_or(AtError::Unexpected)
    /// }
    /// ```
    pub fn command(
        &mut self,
        cmd: &str,
        timeout_ms: u32,
        mut on_line: impl FnMut(&[u8]),
    ) -> Result<(), AtError> {
        self.command_dyn(cmd, timeout_ms, &mut on_line)
    }

    fn command_dyn(
        &mut self,
        cmd: &str,
        timeout_ms: u32,
        on_line: &mut dyn FnMut(&[u8]),
    ) -> Result<(), AtError> {
        if !cmd
            .as_bytes()
            .get(..2)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"AT"))
        {
            return Err(AtError::InvalidArgument);
        }
        let mut c = Cmd::new("");
        c.text(cmd);
        let line = c.finish()?;
        self.exec(line, timeout_ms, &mut Raw(on_line))
    }

    /// Run `cmd` and offer each information line starting with `prefix` (the text after it,
    /// leading spaces removed; every line when `prefix` is empty) to `accept` until it returns
    /// `true`. [`AtError::Unexpected`] if no line was accepted, [`AtError::LineTooLong`] if
    /// none was but a line too long for the buffer came (or one with `prefix` was too long).
    pub(crate) fn ask(
        &mut self,
        cmd: &[u8],
        timeout_ms: u32,
        prefix: &[u8],
        accept: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), AtError> {
        let mut a = Ask {
            prefix,
            accept,
            done: false,
            overflowed: false,
        };
        self.exec(cmd, timeout_ms, &mut a)?;
        match a {
            Ask { done: true, .. } => Ok(()),
            Ask {
                overflowed: true, ..
            } => Err(AtError::LineTooLong),
            _ => Err(AtError::Unexpected),
        }
    }

    /// The unsigned integer in field `n` (0-based) of the first `prefix` line that has one
    /// there: one exchange shared by every query that reads a number.
    pub(crate) fn ask_int(
        &mut self,
        cmd: &[u8],
        timeout_ms: u32,
        prefix: &[u8],
        n: usize,
    ) -> Result<u32, AtError> {
        let mut out = 0;
        self.ask(cmd, timeout_ms, prefix, &mut |rest| match Fields::new(rest)
            .nth(n)
            .and_then(crate::fields::parse_u32)
        {
            Some(v) => {
                out = v;
                true
            }
            None => false,
        })?;
        Ok(out)
    }

    /// [`ask`](Self::ask) with a parser: the first line it parses.
    pub(crate) fn ask_parse<T>(
        &mut self,
        cmd: &[u8],
        timeout_ms: u32,
        prefix: &[u8],
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<T, AtError> {
        let mut out = None;
        self.ask(cmd, timeout_ms, prefix, &mut |rest| {
            out = parse(rest);
            out.is_some()
        })?;
        out.ok_or(AtError::Unexpected)
    }
}

/// The [`Response`] of [`Modem::command`]: every information line to the caller's closure.
/// Which lines it expects is unknown here, so any line too long for the buffer (not the body
/// of a two-line URC, which the engine drops first) may have been one: the command fails
/// with [`AtError::LineTooLong`] once its final result came.
struct Raw<'a>(&'a mut dyn FnMut(&[u8]));

impl Response for Raw<'_> {
    fn line(&mut self, line: &[u8]) -> bool {
        (self.0)(line);
        true
    }

    fn overflow(&mut self, _head: &[u8]) -> bool {
        true
    }
}

/// The [`Response`] of [`Modem::ask`]: the first `prefix` line `accept` takes.
struct Ask<'a> {
    prefix: &'a [u8],
    accept: &'a mut dyn FnMut(&[u8]) -> bool,
    done: bool,
    overflowed: bool,
}

impl Response for Ask<'_> {
    fn line(&mut self, line: &[u8]) -> bool {
        if self.done {
            return false;
        }
        match strip(line, self.prefix) {
            Some(rest) => {
                self.done = (self.accept)(rest);
                self.done
            }
            None => false,
        }
    }

    fn overflow(&mut self, head: &[u8]) -> bool {
        self.overflowed = true;
        !self.prefix.is_empty() && head.starts_with(self.prefix)
    }
}

/// An `accept` for [`Modem::ask`] that takes any line (status polls whose answer the engine
/// applies by itself).
pub(crate) fn any_line(_: &[u8]) -> bool {
    true
}
