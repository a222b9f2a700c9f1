//! Module sockets (`+USOCR`…`+USOCL`, research 5.E/5.F, 3.1, 3.2) bridged to
//! real host sockets on the loopback network only.
//!
//! * TCP: `std::net::TcpStream`, non-blocking, connected at `+USOCO`.
//! * UDP: `std::net::UdpSocket` bound to `127.0.0.1` at `+USOCR`.
//! * Anything outside 127.0.0.0/8 is never contacted: a TCP connect fails like
//!   an unreachable host, a UDP datagram is dropped (as a real network may).
//! * Host sockets are pumped whenever the DTE touches the emulator
//!   ([`crate::core::Core::advance_to`]).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

use crate::commands::{bad_param, Cmd, Kind};
use crate::core::{us, Core, Final, Mods, Out, Prompt, Reply};
use crate::model::Family;

/// Sockets 0–6 (research 3.2).
pub(crate) const NUM_SOCKETS: usize = 7;
/// Binary and base-syntax payload limit per command (research 3.2).
const MAX_BINARY: usize = 1024;
/// Hex-mode payload limit per command (research 3.2).
const MAX_HEX: usize = 512;

const EWOULDBLOCK: u16 = 11;
const ECONNRESET: u16 = 104;
const ENOTCONN: u16 = 107;
const ETIMEDOUT: u16 = 110;
const ECONNREFUSED: u16 = 111;

#[derive(Debug)]
enum Host {
    None,
    Tcp(TcpStream),
    Udp(UdpSocket),
}

#[derive(Debug)]
struct Datagram {
    from: SocketAddrV4,
    data: Vec<u8>,
    off: usize,
}

impl Datagram {
    fn left(&self) -> usize {
        self.data.len() - self.off
    }
}

#[derive(Debug)]
pub(crate) struct Socket {
    proto: u8,
    host: Host,
    connected: bool,
    peer: Option<SocketAddrV4>,
    rx: VecDeque<u8>,
    dgrams: VecDeque<Datagram>,
    peer_closed: bool,
    sent_once: bool,
    linger0: bool,
    sent: u64,
    received: u64,
    error: u16,
}

impl Socket {
    fn new(proto: u8, host: Host) -> Socket {
        Socket {
            proto,
            host,
            connected: false,
            peer: None,
            rx: VecDeque::new(),
            dgrams: VecDeque::new(),
            peer_closed: false,
            sent_once: false,
            linger0: false,
            sent: 0,
            received: 0,
            error: 0,
        }
    }

    pub fn has_host(&self) -> bool {
        !matches!(self.host, Host::None)
    }

    fn pending(&self) -> usize {
        if self.proto == 6 {
            self.rx.len()
        } else {
            self.dgrams.iter().map(Datagram::left).sum()
        }
    }
}

fn is_loopback(ip: Ipv4Addr) -> bool {
    ip.octets()[0] == 127
}

fn socket_id(cmd: &Cmd) -> Option<usize> {
    cmd.int(0)
        .filter(|id| (0..NUM_SOCKETS as i64).contains(id))
        .map(|id| id as usize)
}

fn fail(core: &mut Core, id: Option<usize>, usoer: u16) -> Reply {
    core.last_socket_error = usoer;
    if let Some(s) = id.and_then(|i| core.sockets[i].as_mut()) {
        s.error = usoer;
    }
    Reply::cme(3)
}

fn hex_encode(data: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(data.len() * 2);
    for b in data {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

// ----- pumping ------------------------------------------------------------------

/// Moves data from host sockets into the module buffers and raises URCs.
pub(crate) fn pump(core: &mut Core) {
    if core.power != crate::core::Power::On {
        return;
    }
    let cap = core.cfg.socket_rx_capacity;
    let udp_uusorf = core.cfg.quirks.udp_arrival_uusorf;
    let needs_send = core.cfg.quirks.udp_rx_needs_prior_send;
    for id in 0..NUM_SOCKETS {
        let mut urcs: Vec<String> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let Some(s) = core.sockets[id].as_mut() else {
            continue;
        };
        match &mut s.host {
            Host::Tcp(stream) => {
                let was_empty = s.rx.is_empty();
                let mut eof = false;
                let mut reset = false;
                let mut buf = [0u8; 2048];
                while s.rx.len() < cap {
                    let want = (cap - s.rx.len()).min(buf.len());
                    match stream.read(&mut buf[..want]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => {
                            s.rx.extend(&buf[..n]);
                            s.received += n as u64;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => {
                            reset = true;
                            break;
                        }
                    }
                }
                if was_empty && !s.rx.is_empty() {
                    urcs.push(format!("+UUSORD: {id},{}", s.rx.len()));
                }
                if eof || reset {
                    s.host = Host::None;
                    s.connected = false;
                    s.peer_closed = true;
                    if reset {
                        s.error = ECONNRESET;
                    }
                    notes.push(format!("socket {id}: peer closed the TCP connection"));
                    urcs.push(format!("+UUSOCL: {id}"));
                }
            }
            Host::Udp(sock) => {
                // Larger datagrams are truncated (the module reads at most 1024
                // bytes per command anyway).
                let mut buf = [0u8; 4096];
                loop {
                    match sock.recv_from(&mut buf) {
                        Ok((n, SocketAddr::V4(from))) => {
                            if needs_send && !s.sent_once {
                                notes.push(format!(
                                    "socket {id}: datagram from {from} dropped (no prior send)"
                                ));
                                continue;
                            }
                            if s.dgrams.iter().map(Datagram::left).sum::<usize>() + n > cap {
                                notes.push(format!("socket {id}: datagram dropped (buffer full)"));
                                continue;
                            }
                            let was_empty = s.dgrams.is_empty();
                            s.dgrams.push_back(Datagram {
                                from,
                                data: buf[..n].to_vec(),
                                off: 0,
                            });
                            s.received += n as u64;
                            if was_empty {
                                let name = if udp_uusorf { "+UUSORF" } else { "+UUSORD" };
                                urcs.push(format!("{name}: {id},{n}"));
                            }
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            }
            Host::None => {}
        }
        for n in notes {
            core.note(n);
        }
        for u in urcs {
            core.urc(&u);
        }
    }
}

// ----- lifecycle helpers --------------------------------------------------------

pub(crate) fn close_all(core: &mut Core) {
    for s in core.sockets.iter_mut() {
        *s = None;
    }
}

pub(crate) fn open_stale(core: &mut Core, id: u8, proto: u8) {
    let id = usize::from(id);
    if id >= NUM_SOCKETS {
        return;
    }
    let host = if proto == 17 {
        match bind_udp(0) {
            Some(s) => Host::Udp(s),
            None => Host::None,
        }
    } else {
        Host::None
    };
    core.sockets[id] = Some(Socket::new(if proto == 17 { 17 } else { 6 }, host));
    core.note(format!("socket {id}: stale from a previous MCU run"));
}

/// The peer closes socket `id` (fault): the host connection is dropped and
/// `+UUSOCL` raised; received data stays readable.
pub(crate) fn peer_close(core: &mut Core, id: u8) {
    let id = usize::from(id);
    let Some(Some(s)) = core.sockets.get_mut(id) else {
        core.note(format!("peer close of socket {id}: no such socket"));
        return;
    };
    if let Host::Tcp(stream) = &s.host {
        let _ = stream.shutdown(Shutdown::Both);
    }
    s.host = if s.proto == 17 {
        std::mem::replace(&mut s.host, Host::None)
    } else {
        Host::None
    };
    s.connected = false;
    s.peer_closed = true;
    core.urc(&format!("+UUSOCL: {id}"));
}

/// Data context lost: connected TCP sockets close with `+UUSOCL` (research 6.13).
pub(crate) fn network_lost(core: &mut Core) {
    for id in 0..NUM_SOCKETS {
        let close = matches!(&core.sockets[id], Some(s) if s.proto == 6 && s.connected);
        if close {
            peer_close(core, id as u8);
        }
    }
}

pub(crate) fn finish_async_close(core: &mut Core, id: u8) {
    let id = usize::from(id);
    if id < NUM_SOCKETS && core.sockets[id].is_some() {
        core.sockets[id] = None;
        core.urc(&format!("+UUSOCL: {id}"));
    }
}

fn bind_udp(port: u16) -> Option<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).ok()?;
    sock.set_nonblocking(true).ok()?;
    Some(sock)
}

fn parse_dest(host: &str, port: i64) -> Option<SocketAddrV4> {
    let ip: Ipv4Addr = host.parse().ok()?;
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    Some(SocketAddrV4::new(ip, port))
}

// ----- latency --------------------------------------------------------------------

pub(crate) fn connect_latency(core: &Core, cmd: &Cmd) -> u64 {
    let t = &core.cfg.timing;
    match cmd.str(1).and_then(|h| h.parse::<Ipv4Addr>().ok()) {
        Some(ip) if is_loopback(ip) => us(t.connect),
        Some(_) | None => us(t.connect_unreachable),
    }
}

pub(crate) fn close_latency(core: &Core, cmd: &Cmd) -> u64 {
    let t = &core.cfg.timing;
    let slow = core.model.family() == Family::R4
        && cmd.int(1) != Some(1)
        && socket_id(cmd)
            .and_then(|i| core.sockets[i].as_ref())
            .is_some_and(|s| s.proto == 6 && s.connected && !s.linger0);
    if slow {
        us(t.close_r4_tcp)
    } else {
        us(t.close)
    }
}

// ----- commands -------------------------------------------------------------------

pub(crate) fn exec(core: &mut Core, cmd: &Cmd, mods: &Mods) -> Option<Reply> {
    use Kind::*;
    let r = match (cmd.name.as_str(), cmd.kind) {
        ("+UDCONF", Set) => match (cmd.int(0), cmd.int(1)) {
            (Some(1), Some(v @ 0..=1)) => {
                core.set.hex = v == 1;
                Reply::ok()
            }
            (Some(1), None) if cmd.args.len() == 1 => {
                Reply::info(&format!("+UDCONF: 1,{}", u8::from(core.set.hex)))
            }
            _ => bad_param(),
        },
        ("+USOCR", Set) => usocr(core, cmd),
        ("+USOCO", Set) => usoco(core, cmd, mods),
        ("+USOWR", Set) => usowr(core, cmd, mods),
        ("+USOST", Set) => {
            let mut r = usost(core, cmd, mods);
            usost_error_quirk(core, &mut r);
            r
        }
        ("+USORD", Set) => usord(core, cmd, mods),
        ("+USORF", Set) => usorf(core, cmd, mods),
        ("+USOCL", Set) => usocl(core, cmd),
        ("+USOCTL", Set) => usoctl(core, cmd),
        ("+USOER", Exec) => Reply::info(&format!("+USOER: {}", core.last_socket_error)),
        ("+USOSO", Set) => {
            let Some(id) = socket_id(cmd) else {
                return Some(bad_param());
            };
            let Some(s) = core.sockets[id].as_mut() else {
                return Some(fail(core, Some(id), 0));
            };
            if cmd.int(1) == Some(65535) && cmd.int(2) == Some(128) {
                s.linger0 = cmd.int(3) == Some(1);
            }
            Reply::ok()
        }
        _ => return None,
    };
    Some(r)
}

fn usost_error_quirk(core: &Core, r: &mut Reply) {
    if core.cfg.quirks.usost_error_extra_crlf && matches!(r.fin, Final::Cme(_)) && core.set.cmee > 0
    {
        r.post.push((0, Out::raw(b"\r\n".to_vec())));
    }
}

fn usocr(core: &mut Core, cmd: &Cmd) -> Reply {
    let proto = match cmd.int(0) {
        Some(p @ (6 | 17)) => p as u8,
        _ => return bad_param(),
    };
    let port = match cmd.args.get(1) {
        None => 0,
        Some(a) => match a.int().and_then(|p| u16::try_from(p).ok()) {
            Some(p) => p,
            None => return bad_param(),
        },
    };
    let Some(id) = core.sockets.iter().position(Option::is_none) else {
        // research 6.5: all seven sockets in use.
        return fail(core, None, 0);
    };
    let host = if proto == 17 {
        match bind_udp(port) {
            Some(s) => Host::Udp(s),
            None => return fail(core, None, 0),
        }
    } else {
        Host::None
    };
    core.sockets[id] = Some(Socket::new(proto, host));
    Reply::info(&format!("+USOCR: {id}"))
}

fn usoco(core: &mut Core, cmd: &Cmd, mods: &Mods) -> Reply {
    let Some(id) = socket_id(cmd) else {
        return bad_param();
    };
    let Some(s) = core.sockets[id].as_ref() else {
        return fail(core, Some(id), 0);
    };
    let proto = s.proto;
    if proto == 6 && (s.connected || s.peer_closed) {
        return fail(core, Some(id), 0);
    }
    if let Some((usoer, plain)) = mods.socket_error {
        let r = fail(core, Some(id), usoer);
        return if plain { Reply::error() } else { r };
    }
    let Some(dest) = cmd.str(1).zip(cmd.int(2)).and_then(|(h, p)| {
        // Domain names are not resolved: they fail like an unreachable host.
        match h.parse::<Ipv4Addr>() {
            Ok(_) => parse_dest(h, p),
            Err(_) => Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1)),
        }
    }) else {
        return bad_param();
    };
    if !crate::net::data_up(core) {
        return fail(core, Some(id), ENOTCONN);
    }
    if !is_loopback(*dest.ip()) {
        core.note(format!(
            "socket {id}: {dest} is outside 127.0.0.0/8, never contacted: connect fails"
        ));
        return fail(core, Some(id), ETIMEDOUT);
    }
    if proto == 17 {
        if let Some(s) = core.sockets[id].as_mut() {
            s.peer = Some(dest);
            s.connected = true;
        }
        return Reply::ok();
    }
    match TcpStream::connect_timeout(&SocketAddr::V4(dest), Duration::from_secs(2)) {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            if stream.set_nonblocking(true).is_err() {
                return fail(core, Some(id), ECONNRESET);
            }
            if let Some(s) = core.sockets[id].as_mut() {
                s.host = Host::Tcp(stream);
                s.connected = true;
                s.peer = Some(dest);
            }
            core.note(format!("socket {id}: connected to {dest}"));
            Reply::ok()
        }
        Err(e) => {
            core.note(format!("socket {id}: connect to {dest} failed: {e}"));
            fail(core, Some(id), ECONNREFUSED)
        }
    }
}

/// Parses base-syntax data (`"text"` or hex in hex mode) for `len` bytes.
fn base_data(core: &Core, data: &str, len: usize) -> Option<Vec<u8>> {
    if core.set.hex {
        if len > MAX_HEX {
            return None;
        }
        hex_decode(data).filter(|d| d.len() == len)
    } else {
        (data.len() == len).then(|| data.as_bytes().to_vec())
    }
}

fn usowr(core: &mut Core, cmd: &Cmd, mods: &Mods) -> Reply {
    let Some(id) = socket_id(cmd) else {
        return bad_param();
    };
    let Some(len) = cmd.int(1).and_then(|l| usize::try_from(l).ok()) else {
        return bad_param();
    };
    if !(1..=MAX_BINARY).contains(&len) {
        return bad_param();
    }
    let Some(s) = core.sockets[id].as_ref() else {
        return fail(core, Some(id), 0);
    };
    if !s.connected {
        return fail(core, Some(id), ENOTCONN);
    }
    match cmd.args.get(2) {
        None => {
            let mut r = Reply::with(Vec::new(), Final::None);
            r.prompt = Some(Prompt {
                socket: id as u8,
                need: len,
                dest: None,
            });
            r
        }
        Some(arg) => {
            let text = match arg {
                crate::commands::Arg::Str(s) => s.clone(),
                crate::commands::Arg::Int(v) => v.to_string(),
                crate::commands::Arg::Empty => String::new(),
            };
            match base_data(core, &text, len) {
                Some(data) => send(core, id, None, &data, mods, "+USOWR"),
                None => bad_param(),
            }
        }
    }
}

fn usost(core: &mut Core, cmd: &Cmd, mods: &Mods) -> Reply {
    let Some(id) = socket_id(cmd) else {
        return bad_param();
    };
    let Some(host) = cmd.str(1) else {
        return bad_param();
    };
    let Some(port) = cmd.int(2) else {
        return bad_param();
    };
    let Some(len) = cmd.int(3).and_then(|l| usize::try_from(l).ok()) else {
        return bad_param();
    };
    if !(1..=MAX_BINARY).contains(&len) {
        return bad_param();
    }
    if u16::try_from(port).ok().filter(|p| *p != 0).is_none() {
        return bad_param();
    }
    match core.sockets[id].as_ref() {
        Some(s) if s.proto == 17 => {}
        _ => return fail(core, Some(id), 0),
    }
    let dest = (host.to_string(), port as u16);
    match cmd.str(4) {
        None if cmd.args.len() == 4 => {
            let mut r = Reply::with(Vec::new(), Final::None);
            r.prompt = Some(Prompt {
                socket: id as u8,
                need: len,
                dest: Some(dest),
            });
            r
        }
        Some(text) => match base_data(core, text, len) {
            Some(data) => send(core, id, Some(&dest), &data, mods, "+USOST"),
            None => bad_param(),
        },
        None => bad_param(),
    }
}

/// After the binary payload of `+USOWR`/`+USOST`.
pub(crate) fn finish_payload(core: &mut Core, p: &Prompt, data: &[u8], mods: &Mods) -> Reply {
    let id = usize::from(p.socket);
    let (name, mut r) = match &p.dest {
        None => ("+USOWR", send(core, id, None, data, mods, "+USOWR")),
        Some(dest) => ("+USOST", send(core, id, Some(dest), data, mods, "+USOST")),
    };
    if name == "+USOST" {
        usost_error_quirk(core, &mut r);
    }
    r
}

fn send(
    core: &mut Core,
    id: usize,
    dest: Option<&(String, u16)>,
    data: &[u8],
    mods: &Mods,
    name: &str,
) -> Reply {
    if let Some((usoer, plain)) = mods.socket_error {
        let r = fail(core, Some(id), usoer);
        return if plain { Reply::error() } else { r };
    }
    let Some(s) = core.sockets[id].as_ref() else {
        return fail(core, Some(id), 0);
    };
    if !crate::net::data_up(core) {
        return fail(core, Some(id), ENOTCONN);
    }
    let n = mods.partial.map_or(data.len(), |k| k.min(data.len()));
    let chunk = &data[..n];
    let mut note = None;
    let result: Result<(), u16> = match (&s.host, dest) {
        (Host::Tcp(stream), None) => {
            if s.peer_closed || !s.connected {
                Err(ENOTCONN)
            } else {
                write_tcp(stream, chunk)
            }
        }
        (Host::Udp(sock), d) => {
            let target = match d {
                Some((h, p)) => parse_dest(h, i64::from(*p)),
                None => s.peer,
            };
            match target {
                Some(t) if is_loopback(*t.ip()) => {
                    sock.send_to(chunk, t).map(|_| ()).map_err(|_| EWOULDBLOCK)
                }
                Some(t) => {
                    note = Some(format!(
                        "socket {id}: datagram to {t} dropped (outside 127.0.0.0/8)"
                    ));
                    Ok(())
                }
                None => {
                    note = Some(format!(
                        "socket {id}: datagram to an unresolved host dropped"
                    ));
                    Ok(())
                }
            }
        }
        _ => Err(ENOTCONN),
    };
    if let Some(n) = note {
        core.note(n);
    }
    match result {
        Ok(()) => {
            if let Some(s) = core.sockets[id].as_mut() {
                s.sent += n as u64;
                s.sent_once = true;
            }
            Reply::info(&format!("{name}: {id},{n}"))
        }
        Err(code) => fail(core, Some(id), code),
    }
}

fn write_tcp(stream: &TcpStream, data: &[u8]) -> Result<(), u16> {
    if stream.set_nonblocking(false).is_err() {
        return Err(ECONNRESET);
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut w = stream;
    let r = w.write_all(data).map_err(|_| ECONNRESET);
    let _ = stream.set_nonblocking(true);
    r
}

fn check_read_len(core: &Core, cmd: &Cmd) -> Option<usize> {
    let len = usize::try_from(cmd.int(1)?).ok()?;
    let max = if core.set.hex { MAX_HEX } else { MAX_BINARY };
    (len <= max).then_some(len)
}

/// `"<data>"` as raw bytes or hex digits, with the payload count.
fn quoted(core: &Core, data: &[u8]) -> (Vec<u8>, usize) {
    let body = if core.set.hex {
        hex_encode(data)
    } else {
        data.to_vec()
    };
    let mut v = Vec::with_capacity(body.len() + 2);
    v.push(b'"');
    v.extend_from_slice(&body);
    v.push(b'"');
    (v, body.len())
}

fn info_with_payload(prefix: &str, data: &[u8], core: &Core) -> Out {
    let (q, payload) = quoted(core, data);
    let mut bytes = Vec::with_capacity(prefix.len() + q.len() + 4);
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(prefix.as_bytes());
    bytes.extend_from_slice(&q);
    bytes.extend_from_slice(b"\r\n");
    Out {
        bytes,
        payload,
        urc: false,
    }
}

fn usord(core: &mut Core, cmd: &Cmd, mods: &Mods) -> Reply {
    let Some(id) = socket_id(cmd) else {
        return bad_param();
    };
    let Some(len) = check_read_len(core, cmd) else {
        return bad_param();
    };
    if let Some((usoer, plain)) = mods.socket_error {
        let r = fail(core, Some(id), usoer);
        return if plain { Reply::error() } else { r };
    }
    let omit = core.cfg.quirks.usord_empty_omits_length;
    let udp_uusorf = core.cfg.quirks.udp_arrival_uusorf;
    let Some(s) = core.sockets[id].as_mut() else {
        return fail(core, Some(id), 0);
    };
    let pending = s.pending();
    if len == 0 {
        if pending == 0 && s.peer_closed {
            core.sockets[id] = None;
            return fail(core, Some(id), ENOTCONN);
        }
        return Reply::info(&format!("+USORD: {id},{pending}"));
    }
    if pending == 0 {
        if s.peer_closed {
            // research 6.11: after the close and the last byte, reads fail.
            core.sockets[id] = None;
            return fail(core, Some(id), ENOTCONN);
        }
        return if omit {
            Reply::info(&format!("+USORD: {id},\"\""))
        } else {
            Reply::info(&format!("+USORD: {id},0,\"\""))
        };
    }
    let mut post = Vec::new();
    let data: Vec<u8> = if s.proto == 6 {
        let k = len.min(s.rx.len());
        let data: Vec<u8> = s.rx.drain(..k).collect();
        if !s.rx.is_empty() {
            post.push(Out::urc(&format!("+UUSORD: {id},{}", s.rx.len())));
        }
        data
    } else {
        let Some(d) = s.dgrams.front_mut() else {
            return fail(core, Some(id), 0);
        };
        let k = len.min(d.left());
        let data = d.data[d.off..d.off + k].to_vec();
        d.off += k;
        if d.left() > 0 {
            // R4 AT manual 19.12.1: a partial UDP read shows the rest of the packet.
            post.push(Out::urc(&format!("+UUSORD: {id},{}", d.left())));
        } else {
            s.dgrams.pop_front();
            if let Some(next) = s.dgrams.front() {
                let name = if udp_uusorf { "+UUSORF" } else { "+UUSORD" };
                post.push(Out::urc(&format!("{name}: {id},{}", next.left())));
            }
        }
        data
    };
    let line = info_with_payload(&format!("+USORD: {id},{},", data.len()), &data, core);
    let mut r = Reply::with(vec![line], Final::Ok);
    r.post = post.into_iter().map(|o| (0, o)).collect();
    r
}

fn usorf(core: &mut Core, cmd: &Cmd, mods: &Mods) -> Reply {
    let Some(id) = socket_id(cmd) else {
        return bad_param();
    };
    let Some(len) = check_read_len(core, cmd) else {
        return bad_param();
    };
    if let Some((usoer, plain)) = mods.socket_error {
        let r = fail(core, Some(id), usoer);
        return if plain { Reply::error() } else { r };
    }
    let family = core.model.family();
    let junk = core.cfg.quirks.usorf_junk_crs;
    let extra = core.cfg.quirks.usorf_extra_crlf;
    let Some(s) = core.sockets[id].as_mut() else {
        return fail(core, Some(id), 0);
    };
    if s.proto != 17 {
        return fail(core, Some(id), 0);
    }
    if len == 0 {
        return Reply::info(&format!("+USORF: {id},{}", s.pending()));
    }
    let Some(d) = s.dgrams.front_mut() else {
        // [inferred] empty answers; drivers should read only after a URC.
        return if family == Family::R4 {
            Reply::info(&format!("+USORF: {id},\"\""))
        } else {
            Reply::info(&format!("+USORF: {id},\"\",0,0,\"\""))
        };
    };
    let k = len.min(d.left());
    let data = d.data[d.off..d.off + k].to_vec();
    let from = d.from;
    d.off += k;
    let mut post = Vec::new();
    if d.left() > 0 {
        post.push(Out::urc(&format!("+UUSORF: {id},{}", d.left())));
    } else {
        s.dgrams.pop_front();
        if let Some(next) = s.dgrams.front() {
            post.push(Out::urc(&format!("+UUSORF: {id},{}", next.left())));
        }
    }
    let prefix = format!(
        "+USORF: {id},\"{}\",{},{},",
        from.ip(),
        from.port(),
        data.len()
    );
    let mut line = info_with_payload(&prefix, &data, core);
    let fin;
    if junk {
        // research 5.F, R410 fw 05.08: \r\r\n\r\r\n+USORF: …\r\n\r\r\nOK\r\n
        let mut bytes = b"\r\r\n\r\r\n".to_vec();
        bytes.extend_from_slice(&line.bytes[2..]);
        bytes.extend_from_slice(b"\r\r\nOK\r\n");
        line.bytes = bytes;
        fin = Final::None;
    } else {
        if extra {
            // research 2.3: G350 sends an extra CRLF after the +USORF line.
            line.bytes.extend_from_slice(b"\r\n");
        }
        fin = Final::Ok;
    }
    let mut r = Reply::with(vec![line], fin);
    r.post = post.into_iter().map(|o| (0, o)).collect();
    r
}

fn usocl(core: &mut Core, cmd: &Cmd) -> Reply {
    let Some(id) = socket_id(cmd) else {
        return bad_param();
    };
    if core.sockets[id].is_none() {
        return fail(core, Some(id), 0);
    }
    match cmd.int(1) {
        Some(1) if core.model.is_lte() => {
            if let Some(s) = core.sockets[id].as_mut() {
                s.host = Host::None;
            }
            core.schedule_async_close(us(core.cfg.timing.close), id as u8);
            Reply::ok()
        }
        None | Some(0) => {
            core.sockets[id] = None;
            Reply::ok()
        }
        _ => bad_param(),
    }
}

/// `AT+USOCTL=h,param`: 0 type, 1 last error, 2 bytes sent, 3 bytes received,
/// 4 remote peer, 10 TCP state (u-blox AT manual `+USOCTL`).
fn usoctl(core: &mut Core, cmd: &Cmd) -> Reply {
    let Some(id) = socket_id(cmd) else {
        return bad_param();
    };
    let Some(s) = core.sockets[id].as_ref() else {
        return fail(core, Some(id), 0);
    };
    let val = match cmd.int(1) {
        Some(0) => s.proto.to_string(),
        Some(1) => s.error.to_string(),
        Some(2) => s.sent.to_string(),
        Some(3) => s.received.to_string(),
        Some(4) => match s.peer {
            Some(p) => format!("\"{}\",{}", p.ip(), p.port()),
            None => return fail(core, Some(id), ENOTCONN),
        },
        Some(10) if s.proto == 6 => {
            let state = if s.connected {
                4
            } else if s.peer_closed {
                7
            } else {
                0
            };
            state.to_string()
        }
        _ => return bad_param(),
    };
    let p = cmd.int(1).unwrap_or(0);
    Reply::info(&format!("+USOCTL: {id},{p},{val}"))
}
