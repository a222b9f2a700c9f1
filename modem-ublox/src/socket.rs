//! TCP and UDP sockets of the modem's internal IP stack (`AT+USOCR` … `AT+USOCL`).

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::cmd::Cmd;
use crate::engine::Response;
use crate::error::{AtError, SocketError};
use crate::fields::{parse_ipv4, parse_u32, strip, unquote, Fields};
use crate::frame::MAX_PAYLOAD;
use crate::modem::Modem;

/// Number of sockets the SARA modules offer (handles 0–6).
pub const SOCKETS: usize = 7;

/// Every socket handle, as a mask of the session state's `stale` handles.
pub(crate) const ALL_HANDLES: u8 = (1 << SOCKETS) - 1;

/// Largest hex-mode write per command (u-blox: HEX 1–512).
const MAX_HEX_WRITE: usize = 512;

/// Longest `+USORD: <h>,<n>,"` header: `+USORD: 6,1024,"`.
const MAX_USORD_HEADER: usize = b"+USORD: 6,1024,\"".len();

/// Longest `+USORF: <h>,"<ip>",<port>,<n>,"` header:
/// `+USORF: 6,"255.255.255.255",65535,1024,"`.
const MAX_USORF_HEADER: usize = b"+USORF: 6,\"255.255.255.255\",65535,1024,\"".len();

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Protocol {
    /// TCP (`AT+USOCR=6`).
    Tcp,
    /// UDP (`AT+USOCR=17`).
    Udp,
}

/// A socket created by this driver: the modem's handle plus the driver's session epoch, so a
/// handle from before a modem reboot is refused ([`SocketError::Invalidated`]) instead of
/// touching whatever socket now has the same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SocketId {
    handle: u8,
    epoch: u8,
}

impl SocketId {
    /// The modem's socket handle (0–6).
    pub fn handle(self) -> u8 {
        self.handle
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub open: bool,
    pub proto: Protocol,
    pub peer_closed: bool,
    pub pending: u16,
    pub remote: Option<(Ipv4Addr, u16)>,
}

impl Slot {
    pub(crate) const EMPTY: Self = Self {
        open: false,
        proto: Protocol::Tcp,
        peer_closed: false,
        pending: 0,
        remote: None,
    };
}

/// Collects a `+USORD`/`+USORF` answer: binary payload (by declared length) or hex line, or
/// the count form (`+USORD: <h>,<n>`), or R4's empty `+USORD: <h>,""`.
struct ReadSink<'a> {
    handle: u8,
    udp: bool,
    /// The length the command asked for: an answer declaring more breaks the framing.
    asked: u16,
    buf: &'a mut [u8],
    copied: usize,
    declared: Option<u16>,
    count: Option<u16>,
    from: Option<(Ipv4Addr, u16)>,
    framing_ok: bool,
}

impl<'a> ReadSink<'a> {
    #[inline(never)]
    fn new(handle: u8, udp: bool, asked: u16, buf: &'a mut [u8]) -> Self {
        Self {
            handle,
            udp,
            asked,
            buf,
            copied: 0,
            declared: None,
            count: None,
            from: None,
            framing_ok: true,
        }
    }

    /// Parse the fields before the data: returns the declared length and leaves `f` at the
    /// data field.
    fn header(&mut self, f: &mut Fields<'_>) -> Option<u16> {
        if parse_u32(f.next()?)? != u32::from(self.handle) {
            return None;
        }
        if self.udp {
            let ip = f.next()?;
            match unquote(ip) {
                Some(ip) => {
                    let ip = parse_ipv4(ip)?;
                    let port = u16::try_from(f.int()?).ok()?;
                    self.from = Some((ip, port));
                    u16::try_from(f.int()?).ok()
                }
                // Count form `+USORF: <h>,<n>`.
                None => {
                    self.count = u16::try_from(parse_u32(ip)?).ok();
                    None
                }
            }
        } else {
            let n = f.next()?;
            if n == b"\"\"" {
                // R4: no data, length omitted.
                self.declared = Some(0);
                return None;
            }
            let n = u16::try_from(parse_u32(n)?).ok()?;
            Some(n)
        }
    }
}

impl Response for ReadSink<'_> {
    fn line(&mut self, line: &[u8]) -> bool {
        let prefix: &[u8] = if self.udp { b"+USORF:" } else { b"+USORD:" };
        let Some(rest) = strip(line, prefix) else {
            return false;
        };
        let mut f = Fields::new(rest);
        let Some(n) = self.header(&mut f) else {
            return self.declared.is_some() || self.count.is_some();
        };
        match f.next() {
            None => self.count = Some(n),
            // Without the `hex-mode` feature a data line is never an answer (binary mode).
            Some(_) if !cfg!(feature = "hex-mode") => return false,
            Some(data) => {
                // Hex mode: the data is a quoted hex string of n bytes.
                let Some(hex) = unquote(data) else {
                    return false;
                };
                self.declared = Some(n);
                if hex.len() != usize::from(n) * 2 || n > self.asked {
                    self.framing_ok = false;
                }
                for pair in hex.chunks_exact(2) {
                    let (Some(h), Some(l)) = (hexval(pair[0]), hexval(pair[1])) else {
                        self.framing_ok = false;
                        break;
                    };
                    if let Some(d) = self.buf.get_mut(self.copied) {
                        *d = (h << 4) | l;
                        self.copied += 1;
                    }
                }
            }
        }
        true
    }

    fn payload_start(&mut self, header: &[u8]) {
        let prefix: &[u8] = if self.udp { b"+USORF:" } else { b"+USORD:" };
        if let Some(rest) = strip(header, prefix) {
            let rest = rest.strip_suffix(b",\"").unwrap_or(rest);
            let mut f = Fields::new(rest);
            self.declared = self.header(&mut f);
            if self.declared.is_some_and(|n| n > self.asked) {
                // More than asked: not an answer to this command (the rest would be dropped).
                self.framing_ok = false;
            }
        }
    }

    fn overflow(&mut self, head: &[u8]) -> bool {
        let prefix: &[u8] = if self.udp { b"+USORF:" } else { b"+USORD:" };
        let mine = head.starts_with(prefix);
        if mine {
            self.framing_ok = false;
        }
        mine
    }

    fn payload_byte(&mut self, b: u8) {
        if let Some(d) = self.buf.get_mut(self.copied) {
            *d = b;
            self.copied += 1;
        }
    }

    fn payload_end(&mut self, ok: bool) {
        self.framing_ok &= ok;
    }
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn v4(addr: SocketAddr) -> Result<(Ipv4Addr, u16), SocketError> {
    match addr.ip() {
        IpAddr::V4(ip) => Ok((ip, addr.port())),
        IpAddr::V6(_) => Err(SocketError::Unsupported),
    }
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    #[inline(never)]
    fn slot(&self, id: SocketId) -> Result<Slot, SocketError> {
        if id.epoch != self.st.epoch {
            return Err(SocketError::Invalidated);
        }
        match self.st.sockets.get(usize::from(id.handle)) {
            Some(s) if s.open => Ok(*s),
            _ => Err(SocketError::InvalidSocket),
        }
    }

    fn slot_mut(&mut self, id: SocketId) -> Option<&mut Slot> {
        self.st.sockets.get_mut(usize::from(id.handle))
    }

    /// Largest read of one `+USORD` (`udp == false`) or `+USORF` command. In hex mode the
    /// whole answer line must fit the line buffer: the longest header of that command, two
    /// digits per byte and the closing quote.
    fn max_read(&self, udp: bool) -> usize {
        if self.st.hex() {
            let header = if udp {
                MAX_USORF_HEADER
            } else {
                MAX_USORD_HEADER
            };
            (L.saturating_sub(header + 1) / 2).clamp(1, MAX_HEX_WRITE)
        } else {
            MAX_PAYLOAD
        }
    }

    /// How many bytes are waiting (`AT+USORD=<h>,0` / `AT+USORF=<h>,0` → `+USORD: <h>,<n>`);
    /// 0 when the answer carries no count.
    #[inline(never)]
    fn poll_count(&mut self, h: u8, udp: bool) -> Result<u16, AtError> {
        let mut c = Cmd::new(if udp { "AT+USORF=" } else { "AT+USORD=" });
        c.num(u32::from(h)).raw(b",0");
        let mut sink = ReadSink::new(h, udp, 0, &mut []);
        let t = self.timeouts().read;
        self.exec(c.finish()?, t, &mut sink)?;
        Ok(sink.count.unwrap_or(0))
    }

    /// Close modem sockets this driver does not own (left open by a previous MCU run):
    /// `AT+USOCTL=<h>,0` for each handle not open here, `AT+USOCL=<h>` for those the modem
    /// reports as TCP or UDP, and for those whose `AT+USOCTL` fails (R410 fw 05.08 answers it
    /// with a CME error). Returns how many were closed. Runs by itself before the first
    /// socket after [`power_on`](Self::power_on) found the modem already running, when a URC
    /// names an unknown handle, and when `AT+USOCR` fails.
    ///
    /// Cost: about 20 bytes each way per handle probed (7 at most), 40 where `AT+USOCL`
    /// follows; each `AT+USOCL` may take up to the close timeout (R4 TCP: 120 s); plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::At`] on a timeout or UART error (CME errors on a handle mean "not open").
    pub fn sweep_stale_sockets(&mut self) -> Result<u8, SocketError> {
        self.sweep(ALL_HANDLES)
    }

    fn sweep(&mut self, mask: u8) -> Result<u8, SocketError> {
        let t = self.timeouts().socket;
        let mut closed = 0;
        for h in 0..SOCKETS as u8 {
            if mask & (1 << h) == 0 || self.st.sockets[usize::from(h)].open {
                continue;
            }
            let mut c = Cmd::new("AT+USOCTL=");
            c.num(u32::from(h)).raw(b",0");
            let kind = self.ask_int(c.finish()?, t, b"+USOCTL:", 2);
            let close = match kind {
                Ok(6 | 17) => true,
                // R410 fw 05.08 refuses AT+USOCTL altogether: close blindly (a handle that
                // is not open refuses that too).
                Err(AtError::Cme(_) | AtError::Error) => true,
                Ok(_) | Err(AtError::Unexpected) => false,
                Err(e) => return Err(e.into()),
            };
            if close {
                let mut c = Cmd::new("AT+USOCL=");
                c.num(u32::from(h));
                let tc = self.timeouts().close;
                match self.simple(c.finish()?, tc) {
                    Ok(()) => closed += 1,
                    Err(AtError::Cme(_) | AtError::Error) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.st.stale &= !mask;
        info!("stale socket handles swept: {} closed", closed);
        Ok(closed)
    }

    /// Create a socket (`AT+USOCR=6` or `AT+USOCR=17`).
    ///
    /// Cost: one exchange (about 25 bytes each way, up to 10 s), and a sweep of stale handles
    /// when one is due (see [`sweep_stale_sockets`](Self::sweep_stale_sockets)); plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::NoFreeSocket`] if the modem has none left after a sweep of stale ones;
    /// [`SocketError::Invalidated`] if the modem rebooted meanwhile; [`SocketError::At`].
    pub fn open_socket(&mut self, proto: Protocol) -> Result<SocketId, SocketError> {
        if self.st.stale != 0 {
            let m = self.st.stale;
            self.sweep(m)?;
        }
        let cmd: &[u8] = match proto {
            Protocol::Tcp => b"AT+USOCR=6\r\n",
            Protocol::Udp => b"AT+USOCR=17\r\n",
        };
        let t = self.timeouts().socket;
        let mut swept = false;
        loop {
            match self.ask_int(cmd, t, b"+USOCR:", 0) {
                Ok(h) if (h as usize) < SOCKETS => {
                    let h = h as u8;
                    self.st.sockets[usize::from(h)] = Slot {
                        open: true,
                        proto,
                        ..Slot::EMPTY
                    };
                    self.st.stale &= !(1 << h);
                    return Ok(SocketId {
                        handle: h,
                        epoch: self.st.epoch,
                    });
                }
                Ok(_) => return Err(SocketError::At(AtError::Unexpected)),
                Err(AtError::Cme(_) | AtError::Error) if !swept => {
                    swept = true;
                    if self.sweep(ALL_HANDLES)? == 0 {
                        return Err(SocketError::NoFreeSocket);
                    }
                }
                Err(AtError::Cme(_) | AtError::Error) => return Err(SocketError::NoFreeSocket),
                Err(e) => {
                    // No answer, a lost answer line, or a reboot: the modem may have created
                    // a socket this driver does not know. Sweep before the next one.
                    self.st.stale = ALL_HANDLES;
                    return Err(e.into());
                }
            }
        }
    }

    /// The socket error the modem recorded (`AT+USOER` → `+USOER: <e>`).
    fn last_socket_error(&mut self) -> Result<u16, SocketError> {
        let t = self.timeouts().socket;
        let e = self.ask_int(b"AT+USOER\r\n", t, b"+USOER:", 0)?;
        Ok(u16::try_from(e).unwrap_or(u16::MAX))
    }

    fn command_failed(&mut self, e: AtError) -> SocketError {
        match e {
            AtError::Cme(_) | AtError::Error => match self.last_socket_error() {
                Ok(0) => SocketError::At(e),
                Ok(code) => SocketError::Socket(code),
                Err(e2) => e2,
            },
            e => e.into(),
        }
    }

    /// TCP: connect (`AT+USOCO=<h>,"<ip>",<port>`, up to 20 s on U2/G3, 130 s on R4/R5).
    /// UDP: remember `remote` for [`send`](Self::send); nothing is sent.
    ///
    /// Cost: TCP one exchange (about 40 bytes out), up to 20 s (U2/G3) or 130 s (R4/R5), and
    /// one `AT+USOER` after an error; UDP nothing; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::Unsupported`] for IPv6; [`SocketError::Socket`] with the `+USOER` code
    /// (e.g. 111 refused); [`SocketError::Invalidated`]; [`SocketError::At`].
    pub fn connect(&mut self, id: SocketId, remote: SocketAddr) -> Result<(), SocketError> {
        let s = self.slot(id)?;
        let (ip, port) = v4(remote)?;
        if s.proto == Protocol::Tcp {
            let mut c = Cmd::new("AT+USOCO=");
            c.num(u32::from(id.handle))
                .comma()
                .ip(ip)
                .comma()
                .num(u32::from(port));
            let t = self.timeouts().connect;
            if let Err(e) = self.simple(c.finish()?, t) {
                return Err(self.command_failed(e));
            }
        }
        if let Some(slot) = self.slot_mut(id) {
            slot.remote = Some((ip, port));
        }
        Ok(())
    }

    /// Send on a socket. TCP: all of `data` in chunks of at most 1024 bytes (512 in hex
    /// mode), `AT+USOWR=<h>,<n>`, `@`, wait [`ModemConfig::prompt_wait_ms`](crate::ModemConfig), the
    /// bytes, `+USOWR: <h>,<m>`; when the modem takes fewer bytes (R4 segmentation), the rest
    /// is sent in the next chunk. A chunk is sent again only when the modem said it took none
    /// of it: `ERROR` with `+USOER` 11 or 172, or `+USOWR: <h>,0` (3 retries, 100/200/300 ms
    /// apart). `OK` without a count means the whole chunk was taken. UDP: one datagram to the
    /// connected remote (see [`send_to`](Self::send_to)).
    ///
    /// Returns the bytes accepted: all of them, or fewer if an error (or a modem that keeps
    /// taking nothing) stopped a later chunk after some were sent.
    ///
    /// A chunk whose answer never came (`AtError::Timeout`) may have been sent, in full, in
    /// part, or corrupted (a SARA-U201 with UART power saving loses the first byte after `@`):
    /// treat the TCP stream as broken and close the socket.
    ///
    /// Cost: per chunk one exchange with about 35 bytes of overhead, the prompt wait (50 ms)
    /// and up to the write timeout (10 s U2/G3, 120 s R4/R5) twice (prompt, confirmation);
    /// 100/200/300 ms between retries; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::Closed`] after the peer closed, [`SocketError::WouldBlock`] if the modem
    /// took nothing, [`SocketError::Socket`], [`SocketError::Invalidated`],
    /// [`SocketError::At`]; UDP: those of [`send_to`](Self::send_to).
    pub fn send(&mut self, id: SocketId, data: &[u8]) -> Result<usize, SocketError> {
        let s = self.slot(id)?;
        if s.proto == Protocol::Udp {
            let (ip, port) = s.remote.ok_or(SocketError::Unsupported)?;
            self.send_to(id, SocketAddr::new(IpAddr::V4(ip), port), data)?;
            return Ok(data.len());
        }
        if s.peer_closed {
            return Err(SocketError::Closed);
        }
        let max = if self.st.hex() {
            MAX_HEX_WRITE
        } else {
            MAX_PAYLOAD
        };
        let mut sent = 0;
        while sent < data.len() {
            let end = (sent + max).min(data.len());
            match self.write_retrying(id.handle, None, &data[sent..end]) {
                Ok(n) => sent += n,
                Err(e) if sent > 0 && !matches!(e, SocketError::Invalidated) => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// [`write_chunk`](Self::write_chunk), offered again (3 times, 100/200/300 ms apart) while
    /// the modem takes none of it: `+USOWR: <h>,0` / `+USOST: <h>,0` or `+USOER` 11 / 172.
    /// `Ok(n)` with `n > 0`, or [`SocketError::WouldBlock`] when it never took any.
    fn write_retrying(
        &mut self,
        h: u8,
        to: Option<(Ipv4Addr, u16)>,
        data: &[u8],
    ) -> Result<usize, SocketError> {
        let mut retries = 0u32;
        loop {
            match self.write_chunk(h, to, data) {
                Ok(0) | Err(SocketError::Socket(11 | 172)) if retries < 3 => {
                    retries += 1;
                    self.sleep_ms(100 * retries);
                }
                Ok(0) => return Err(SocketError::WouldBlock),
                r => return r,
            }
        }
    }

    /// Send one datagram on a UDP socket (`AT+USOST=<h>,"<ip>",<port>,<n>`, `@`, the bytes).
    /// It is sent again only when the modem said it took none of it: `ERROR` with `+USOER` 11
    /// or 172, or `+USOST: <h>,0` (3 retries). `OK` without a count means it was sent.
    ///
    /// Cost: one exchange with about 50 bytes of overhead, the prompt wait (50 ms) and up to
    /// the write timeout (10 s U2/G3, 120 s R4/R5) twice; 100/200/300 ms between retries; plus
    /// the [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::TooLarge`] over 1024 bytes (512 in hex mode);
    /// [`SocketError::Unsupported`] on TCP sockets, for IPv6 and empty datagrams (the modem
    /// rejects zero length); [`SocketError::Truncated`] if the modem confirmed fewer bytes
    /// than the datagram; [`SocketError::WouldBlock`]; [`SocketError::Socket`];
    /// [`SocketError::At`].
    pub fn send_to(
        &mut self,
        id: SocketId,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), SocketError> {
        let s = self.slot(id)?;
        if s.proto != Protocol::Udp || data.is_empty() {
            return Err(SocketError::Unsupported);
        }
        let max = if self.st.hex() {
            MAX_HEX_WRITE
        } else {
            MAX_PAYLOAD
        };
        if data.len() > max {
            return Err(SocketError::TooLarge);
        }
        let to = v4(remote)?;
        match self.write_retrying(id.handle, Some(to), data)? {
            n if n == data.len() => Ok(()),
            n => Err(SocketError::Truncated(n as u16)),
        }
    }

    /// One `+USOWR`/`+USOST` exchange; returns the byte count the modem confirmed (all of
    /// `data` when `OK` came without a count).
    fn write_chunk(
        &mut self,
        h: u8,
        to: Option<(Ipv4Addr, u16)>,
        data: &[u8],
    ) -> Result<usize, SocketError> {
        let mut c = match to {
            None => Cmd::new("AT+USOWR="),
            Some(_) => Cmd::new("AT+USOST="),
        };
        c.num(u32::from(h)).comma();
        if let Some((ip, port)) = to {
            c.ip(ip).comma().num(u32::from(port)).comma();
        }
        c.num(data.len() as u32);
        let t = self.timeouts().write;
        let prefix: &[u8] = if to.is_some() { b"+USOST:" } else { b"+USOWR:" };
        // Send the command and the data; then one wait for the confirmation and the result.
        let sent = if self.st.hex() {
            c.raw(b",\"");
            let head = c.finish()?;
            let head = &head[..head.len() - 2];
            self.begin_send(head)?;
            let mut hex = [0u8; 64];
            for chunk in data.chunks(32) {
                for (i, b) in chunk.iter().enumerate() {
                    hex[2 * i] = HEX[usize::from(b >> 4)];
                    hex[2 * i + 1] = HEX[usize::from(b & 15)];
                }
                self.send_cmd_more(&hex[..2 * chunk.len()])?;
            }
            self.send_cmd_more(b"\"\r\n")?;
            Ok(())
        } else {
            let cmd = c.finish()?;
            match self.exec_prompt(cmd, t) {
                Ok(()) => {
                    let w = self.cfg.prompt_wait_ms;
                    self.sleep_ms(w);
                    self.write_bytes(data)?;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        let mut confirmed = None;
        let r = match sent {
            Ok(()) => self.finish(
                t,
                &mut crate::engine::OnLine(|l: &[u8]| parse_confirm(l, prefix, h, &mut confirmed)),
            ),
            Err(e) => Err(e),
        };
        match r {
            // `OK` means the module took the data. Without a (parsable) count it took all of
            // it: reporting 0 would make the caller send the bytes a second time.
            Ok(()) => Ok(confirmed.unwrap_or(data.len()).min(data.len())),
            Err(e) => Err(self.command_failed(e)),
        }
    }

    fn begin_send(&mut self, head: &[u8]) -> Result<(), AtError> {
        // Same as exec's start, split so hex data can be streamed after the header.
        self.begin()?;
        self.send_cmd(head)
    }

    /// Read what the peer sent on a TCP socket into `buf`; `Ok(0)` if nothing is waiting
    /// right now (never waits for data; see [`wait_readable`](Self::wait_readable)).
    ///
    /// When no `+UUSORD` told how much is waiting, `AT+USORD=<h>,0` asks first (URCs can be
    /// lost or coalesced). Data is read with `AT+USORD=<h>,<n>` (n ≤ 1024, ≤ `buf.len()`) and
    /// taken by its declared length, so payloads containing `\r\nOK\r\n`, `"` or `@` arrive
    /// intact. After `+UUSOCL` (or `+UUPSDD`, the data context lost) the data already
    /// received is still returned; once it is drained, or as soon as the modem refuses the
    /// read, [`SocketError::Closed`]. An answer declaring more bytes than asked is a framing
    /// error ([`AtError::Unexpected`]); the next read asks the modem what is left.
    ///
    /// Cost: one or two AT exchanges (~30 bytes of overhead), up to 10 s each; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::Closed`], [`SocketError::Invalidated`], [`SocketError::Unsupported`]
    /// on UDP sockets, [`SocketError::At`].
    pub fn receive(&mut self, id: SocketId, buf: &mut [u8]) -> Result<usize, SocketError> {
        let s = self.slot(id)?;
        if s.proto != Protocol::Tcp {
            return Err(SocketError::Unsupported);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let h = id.handle;
        let t = self.timeouts().read;
        let mut pending = s.pending;
        if pending == 0 {
            match self.poll_count(h, false) {
                Ok(n) => pending = n,
                Err(e @ (AtError::Cme(_) | AtError::Error)) => {
                    let peer_closed = self.slot(id)?.peer_closed;
                    return Err(if peer_closed {
                        SocketError::Closed
                    } else {
                        self.command_failed(e)
                    });
                }
                Err(e) => return Err(e.into()),
            }
            let s = self.slot(id)?;
            if pending == 0 {
                return if s.peer_closed {
                    Err(SocketError::Closed)
                } else {
                    Ok(0)
                };
            }
        }
        let want = buf
            .len()
            .min(usize::from(pending))
            .min(self.max_read(false));
        if let Some(slot) = self.slot_mut(id) {
            slot.pending = pending;
        }
        let mut c = Cmd::new("AT+USORD=");
        c.num(u32::from(h)).comma().num(want as u32);
        let hex = self.st.hex();
        self.framer_binary(!hex);
        let mut sink = ReadSink::new(h, false, want as u16, &mut buf[..want]);
        let r = self.exec(c.finish()?, t, &mut sink);
        let got = sink.copied;
        let framing_ok = sink.framing_ok;
        let declared = sink.declared;
        self.framer_binary(false);
        if r.is_err() || declared.is_none() || !framing_ok {
            // Unknown how much the modem consumed: poll before the next read.
            if let Some(slot) = self.slot_mut(id) {
                slot.pending = 0;
            }
        }
        match r {
            Ok(()) => {}
            // `+UUSOCL` or `+UUPSDD` came before the refusal: the socket is gone now, not
            // only from the next call on (the count poll above says the same).
            Err(AtError::Cme(_) | AtError::Error) if self.slot(id)?.peer_closed => {
                return Err(SocketError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        if declared.is_none() || !framing_ok {
            return Err(SocketError::At(AtError::Unexpected));
        }
        // A +UUSORD that arrived during the read already gave a newer total: keep it (an
        // overestimate only makes the next read shorter, an underestimate triggers a poll).
        if let Some(slot) = self.slot_mut(id) {
            if got == 0 {
                // The modem had less than it announced (R4 `+USORD: <h>,""`): ask next time.
                slot.pending = 0;
            } else if slot.pending == pending {
                slot.pending = pending.saturating_sub(got as u16);
            }
        }
        Ok(got)
    }

    /// Read one datagram from a UDP socket (`AT+USORF=<h>,1024`). A datagram longer than
    /// `buf` is truncated (the rest is dropped). `Ok(None)` if none is waiting. In hex mode a
    /// read is limited by the line buffer (see [`ModemConfig::hex_mode`](crate::ModemConfig::hex_mode)):
    /// the modem keeps the rest of a longer datagram, and the next calls return it.
    ///
    /// Cost: one or two AT exchanges (~60 bytes of overhead), up to 10 s each; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::Invalidated`], [`SocketError::Unsupported`] on TCP sockets,
    /// [`SocketError::At`].
    pub fn receive_from(
        &mut self,
        id: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        let s = self.slot(id)?;
        if s.proto != Protocol::Udp {
            return Err(SocketError::Unsupported);
        }
        let h = id.handle;
        let t = self.timeouts().read;
        if s.pending == 0 && self.poll_count(h, true)? == 0 {
            return Ok(None);
        }
        let want = self.max_read(true);
        let mut c = Cmd::new("AT+USORF=");
        c.num(u32::from(h)).comma().num(want as u32);
        let hex = self.st.hex();
        self.framer_binary(!hex);
        let mut sink = ReadSink::new(h, true, want as u16, buf);
        let r = self.exec(c.finish()?, t, &mut sink);
        let (got, from, declared, ok, count) = (
            sink.copied,
            sink.from,
            sink.declared,
            sink.framing_ok,
            sink.count,
        );
        self.framer_binary(false);
        r?;
        if let Some(slot) = self.slot_mut(id) {
            slot.pending = 0;
        }
        if count.is_some() && declared.is_none() {
            return Ok(None);
        }
        match (declared, from, ok) {
            (Some(_), Some((ip, port)), true) => {
                Ok(Some((got, SocketAddr::new(IpAddr::V4(ip), port))))
            }
            _ => Err(SocketError::At(AtError::Unexpected)),
        }
    }

    /// Handle URCs for up to `timeout_ms` until data is waiting on `id` or the peer closed
    /// it. If no URC came, ask the modem once (`AT+USORD=<h>,0` / `AT+USORF=<h>,0`) in case
    /// the URC was lost. Returns `true` if [`receive`](Self::receive) has something to report
    /// (data or the close).
    ///
    /// Cost: up to `timeout_ms` of URC handling (and 100 ms of draining input that keeps
    /// arriving), then, if nothing came, one `AT+USORD`/`AT+USORF` exchange (up to 10 s); plus
    /// the [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::Invalidated`], [`SocketError::At`].
    pub fn wait_readable(&mut self, id: SocketId, timeout_ms: u32) -> Result<bool, SocketError> {
        let s = self.slot(id)?;
        if s.pending > 0 || s.peer_closed {
            return Ok(true);
        }
        let idx = usize::from(id.handle);
        self.pump_until(timeout_ms, &|st| {
            st.sockets[idx].pending > 0 || st.sockets[idx].peer_closed
        })?;
        self.check_reboot()?;
        let s = self.slot(id)?;
        if s.pending > 0 || s.peer_closed {
            return Ok(true);
        }
        let n = match self.poll_count(id.handle, s.proto == Protocol::Udp) {
            Ok(n) => n,
            Err(AtError::Cme(_) | AtError::Error) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        if let Some(slot) = self.slot_mut(id) {
            slot.pending = n;
        }
        Ok(n > 0)
    }

    /// Whether the peer has closed the socket (`+UUSOCL` seen). Data may still be readable.
    ///
    /// # Errors
    /// [`SocketError::Invalidated`], [`SocketError::InvalidSocket`].
    pub fn is_peer_closed(&self, id: SocketId) -> Result<bool, SocketError> {
        Ok(self.slot(id)?.peer_closed)
    }

    /// Bytes known to be waiting (from `+UUSORD`/`+UUSORF` or the last poll).
    ///
    /// # Errors
    /// [`SocketError::Invalidated`], [`SocketError::InvalidSocket`].
    pub fn pending(&self, id: SocketId) -> Result<u16, SocketError> {
        Ok(self.slot(id)?.pending)
    }

    /// Close a socket (`AT+USOCL=<h>`, up to 120 s for TCP on R4). The handle is freed
    /// whatever the modem answers (as Particle does); an error is still reported.
    ///
    /// Cost: one exchange, up to 10 s (R4/R5 TCP: 120 s); plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`SocketError::Invalidated`] (nothing to close: the modem rebooted),
    /// [`SocketError::InvalidSocket`], [`SocketError::At`] (already closed by the peer is
    /// not an error).
    pub fn close(&mut self, id: SocketId) -> Result<(), SocketError> {
        let s = self.slot(id)?;
        let mut c = Cmd::new("AT+USOCL=");
        c.num(u32::from(id.handle));
        let t = self.timeouts().close;
        let r = self.simple(c.finish()?, t);
        if id.epoch == self.st.epoch {
            if let Some(slot) = self.slot_mut(id) {
                *slot = Slot::EMPTY;
            }
        }
        match r {
            Ok(()) => Ok(()),
            Err(AtError::Cme(_) | AtError::Error) if s.peer_closed => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn parse_confirm(l: &[u8], prefix: &[u8], h: u8, out: &mut Option<usize>) -> bool {
    let Some(r) = strip(l, prefix) else {
        return false;
    };
    let mut f = Fields::new(r);
    if f.int() != Some(u32::from(h)) {
        return false;
    }
    *out = f.int().map(|n| n as usize);
    true
}
