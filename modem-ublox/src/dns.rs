//! Name resolution through the modem's DNS client (`AT+UDNSRN`).

use core::net::Ipv4Addr;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::cmd::Cmd;
use crate::error::AtError;
use crate::fields::{parse_ipv4, unquote, Fields};
use crate::modem::Modem;

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    /// Resolve a host name to an IPv4 address with the modem's DNS client
    /// (`AT+UDNSRN=0,"<host>"` → `+UDNSRN: "<ip>"`), over the active data context. When
    /// several addresses come back, the first is returned.
    ///
    /// Known limits (research notes): SARA-U2 may answer from a stale cache, and R410 firmware
    /// 05.05 has no `+UDNSRN`; an IP literal or the application's own DNS query over UDP avoids
    /// both.
    ///
    /// Cost: one exchange (about 30 bytes plus the name out, 30 in), up to the DNS timeout
    /// (30 s U2/G3, 70 s R4/R5, [`Timeouts::dns`](crate::Timeouts::dns)); plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError::InvalidArgument`] if `host` is empty, longer than 99 bytes or has a quote or
    /// control character; `Cme(code)` / `Error` when the lookup fails (no such name, no data
    /// context); `Unexpected` if the answer holds no IPv4 address; other [`AtError`]s of the
    /// exchange.
    pub fn resolve(&mut self, host: &str) -> Result<Ipv4Addr, AtError> {
        if host.is_empty() {
            return Err(AtError::InvalidArgument);
        }
        let mut c = Cmd::new("AT+UDNSRN=0,");
        c.quoted(host);
        let t = self.timeouts().dns;
        self.ask_parse(c.finish()?, t, b"+UDNSRN:", |r| {
            let first = Fields::new(r).next()?;
            parse_ipv4(unquote(first)?)
        })
    }
}
