//! Sockets bridged to real loopback TCP/UDP peers, byte-exact (research 5.E,
//! 5.F, 6.8, 6.10, 6.11).

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, UdpSocket};
use std::thread;
use std::time::Duration;

use common::*;
use embedded_hal::delay::DelayNs;
use embedded_io::Write;
use modem_ublox_emu::{Action, Emulator, Fault, Model, Trigger, Uart};

/// A payload with everything that breaks naive parsers (research 6.8).
const NASTY: &[u8] = b"\x00\r\nOK\r\n\"quoted\" @ \r\nERROR\r\n\xff+UUSORD: 0,9\r\n";

/// Waits (virtual 10 ms steps, each with a little real time) until `pat`
/// shows up in the output; returns everything read.
fn wait_for(emu: &Emulator, uart: &mut Uart, pat: &[u8]) -> Vec<u8> {
    let mut d = emu.delay();
    let mut out = Vec::new();
    for _ in 0..3000 {
        out.extend(drain(uart));
        if out.windows(pat.len()).any(|w| w == pat) {
            return out;
        }
        d.delay_ms(10);
    }
    panic!("never saw \"{}\" in \"{}\"", show(pat), show(&out));
}

/// Reads until `reply` and then a whole `<urc>k\r\n` line have arrived (the
/// peer may answer before or after the reply is read); checks both.
fn reply_then_urc(emu: &Emulator, uart: &mut Uart, reply: &[u8], urc: &str) {
    let mut out = wait_for(emu, uart, urc.as_bytes());
    while !out.ends_with(b"\r\n") {
        out.extend(wait(emu, uart, Duration::from_millis(1)));
    }
    assert!(out.starts_with(reply), "{}", show(&out));
    let rest = std::str::from_utf8(&out[reply.len()..]).unwrap();
    let k = rest
        .strip_prefix(&format!("\r\n{urc}"))
        .and_then(|r| r.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("{rest:?}"));
    assert!(k.parse::<usize>().unwrap() > 0);
}

/// Polls `AT+USORD=h,0` until `n` bytes are waiting in the module.
fn wait_pending(emu: &Emulator, uart: &mut Uart, cmd: &str, want: &[u8]) {
    let mut d = emu.delay();
    for _ in 0..3000 {
        let r = at(emu, uart, cmd);
        if r.windows(want.len()).any(|w| w == want) {
            return;
        }
        d.delay_ms(10);
    }
    panic!("never got {}", show(want));
}

fn tcp_echo_server() -> (u16, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    (port, h)
}

fn tcp_sequence(model: Model) {
    let (port, server) = tcp_echo_server();
    let (emu, mut u) = online(model, 2);
    eq(
        &at(&emu, &mut u, "AT+USOCR=6\r\n"),
        b"\r\n+USOCR: 0\r\n\r\nOK\r\n",
    );
    eq(
        &at(
            &emu,
            &mut u,
            &format!("AT+USOCO=0,\"127.0.0.1\",{port}\r\n"),
        ),
        b"\r\nOK\r\n",
    );
    let n = NASTY.len();
    eq(&at(&emu, &mut u, &format!("AT+USOWR=0,{n}\r\n")), b"\r\n@");
    emu.delay().delay_ms(50);
    u.write_all(NASTY).unwrap();
    reply_then_urc(
        &emu,
        &mut u,
        format!("\r\n+USOWR: 0,{n}\r\n\r\nOK\r\n").as_bytes(),
        "+UUSORD: 0,",
    );
    wait_pending(
        &emu,
        &mut u,
        "AT+USORD=0,0\r\n",
        format!("+USORD: 0,{n}\r\n").as_bytes(),
    );

    // A partial read: the rest is announced after OK (TCP +UUSORD semantics).
    let mut want = b"\r\n+USORD: 0,5,\"".to_vec();
    want.extend_from_slice(&NASTY[..5]);
    want.extend_from_slice(format!("\"\r\n\r\nOK\r\n\r\n+UUSORD: 0,{}\r\n", n - 5).as_bytes());
    eq(&at(&emu, &mut u, "AT+USORD=0,5\r\n"), &want);

    let mut want = format!("\r\n+USORD: 0,{},\"", n - 5).into_bytes();
    want.extend_from_slice(&NASTY[5..]);
    want.extend_from_slice(b"\"\r\n\r\nOK\r\n");
    eq(&at(&emu, &mut u, "AT+USORD=0,1024\r\n"), &want);

    let empty = at(&emu, &mut u, "AT+USORD=0,1024\r\n");
    if model.is_lte() && model.family() == modem_ublox_emu::Family::R4 {
        eq(&empty, b"\r\n+USORD: 0,\"\"\r\n\r\nOK\r\n");
    } else {
        eq(&empty, b"\r\n+USORD: 0,0,\"\"\r\n\r\nOK\r\n");
    }
    eq(&at(&emu, &mut u, "AT+USOCL=0\r\n"), b"\r\nOK\r\n");
    server.join().unwrap();
    assert!(emu.violations().is_empty(), "{:?}", emu.violations());
    let s = emu.stats();
    assert_eq!(s.to_modem.payload, n as u64);
    assert_eq!(s.from_modem.payload, n as u64);
}

#[test]
fn tcp_echo_byte_exact_u260() {
    tcp_sequence(Model::SaraU260);
}

#[test]
fn tcp_echo_byte_exact_g350() {
    tcp_sequence(Model::SaraG350);
}

#[test]
fn tcp_echo_byte_exact_r410() {
    tcp_sequence(Model::SaraR410M);
}

#[test]
fn tcp_hex_mode() {
    let (port, server) = tcp_echo_server();
    let (emu, mut u) = online(Model::SaraR410M, 1);
    eq(&at(&emu, &mut u, "AT+UDCONF=1,1\r\n"), b"\r\nOK\r\n");
    eq(
        &at(&emu, &mut u, "AT+UDCONF=1\r\n"),
        b"\r\n+UDCONF: 1,1\r\n\r\nOK\r\n",
    );
    at(&emu, &mut u, "AT+USOCR=6\r\n");
    at(
        &emu,
        &mut u,
        &format!("AT+USOCO=0,\"127.0.0.1\",{port}\r\n"),
    );
    u.write_all(b"AT+USOWR=0,4,\"48656C6C\"\r\n").unwrap();
    reply_then_urc(
        &emu,
        &mut u,
        b"\r\n+USOWR: 0,4\r\n\r\nOK\r\n",
        "+UUSORD: 0,",
    );
    wait_pending(&emu, &mut u, "AT+USORD=0,0\r\n", b"+USORD: 0,4\r\n");
    eq(
        &at(&emu, &mut u, "AT+USORD=0,4\r\n"),
        b"\r\n+USORD: 0,4,\"48656C6C\"\r\n\r\nOK\r\n",
    );
    // 512 bytes per command in hex mode, 1024 in binary.
    eq(
        &at(&emu, &mut u, "AT+USORD=0,513\r\n"),
        b"\r\n+CME ERROR: 4\r\n",
    );
    at(&emu, &mut u, "AT+UDCONF=1,0\r\n");
    eq(
        &at(&emu, &mut u, "AT+USORD=0,1025\r\n"),
        b"\r\n+CME ERROR: 4\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOWR=0,1025\r\n"),
        b"\r\n+CME ERROR: 4\r\n",
    );
    at(&emu, &mut u, "AT+USOCL=0\r\n");
    server.join().unwrap();
}

#[test]
fn tcp_peer_close_keeps_received_data_readable() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello").unwrap();
        // dropped: the peer closes
    });
    let (emu, mut u) = online(Model::SaraU201, 2);
    at(&emu, &mut u, "AT+USOCR=6\r\n");
    u.write_all(format!("AT+USOCO=0,\"127.0.0.1\",{port}\r\n").as_bytes())
        .unwrap();
    // OK comes first (data is only pumped once connected), then data, then close.
    let out = wait_for(&emu, &mut u, b"+UUSOCL: 0\r\n");
    eq(&out, b"\r\nOK\r\n\r\n+UUSORD: 0,5\r\n\r\n+UUSOCL: 0\r\n");
    server.join().unwrap();
    // Failure mode 11: the close URC came first, the data is still there.
    eq(
        &at(&emu, &mut u, "AT+USORD=0,1024\r\n"),
        b"\r\n+USORD: 0,5,\"hello\"\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USORD=0,0\r\n"),
        b"\r\n+CME ERROR: Operation not allowed\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOER\r\n"),
        b"\r\n+USOER: 107\r\n\r\nOK\r\n",
    );
}

#[test]
fn tcp_connect_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (emu, mut u) = online(Model::SaraU260, 1);
    at(&emu, &mut u, "AT+USOCR=6\r\n");
    eq(
        &at(
            &emu,
            &mut u,
            &format!("AT+USOCO=0,\"127.0.0.1\",{port}\r\n"),
        ),
        b"\r\n+CME ERROR: 3\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOER\r\n"),
        b"\r\n+USOER: 111\r\n\r\nOK\r\n",
    );
}

fn udp_echo_server() -> (u16, thread::JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Echo two datagrams, then stop.
        for _ in 0..2 {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                return;
            };
            s.send_to(&buf[..n], from).unwrap();
        }
    });
    (port, h)
}

fn udp_sequence(model: Model) -> (Emulator, Uart, u16) {
    let (port, server) = udp_echo_server();
    let (emu, mut u) = online(model, 1);
    eq(
        &at(&emu, &mut u, "AT+USOCR=17\r\n"),
        b"\r\n+USOCR: 0\r\n\r\nOK\r\n",
    );
    let n = NASTY.len();
    eq(
        &at(
            &emu,
            &mut u,
            &format!("AT+USOST=0,\"127.0.0.1\",{port},{n}\r\n"),
        ),
        b"\r\n@",
    );
    emu.delay().delay_ms(50);
    u.write_all(NASTY).unwrap();
    reply_then_urc(
        &emu,
        &mut u,
        format!("\r\n+USOST: 0,{n}\r\n\r\nOK\r\n").as_bytes(),
        "+UUSORF: 0,",
    );
    // A second datagram for the partial-read check.
    eq(
        &at(
            &emu,
            &mut u,
            &format!("AT+USOST=0,\"127.0.0.1\",{port},4,\"abcd\"\r\n"),
        ),
        b"\r\n+USOST: 0,4\r\n\r\nOK\r\n",
    );
    wait_pending(
        &emu,
        &mut u,
        "AT+USORF=0,0\r\n",
        format!("+USORF: 0,{}\r\n", n + 4).as_bytes(),
    );
    server.join().unwrap();
    (emu, u, port)
}

#[test]
fn udp_echo_byte_exact_u260() {
    let (emu, mut u, port) = udp_sequence(Model::SaraU260);
    let n = NASTY.len();
    let mut want = format!("\r\n+USORF: 0,\"127.0.0.1\",{port},{n},\"").into_bytes();
    want.extend_from_slice(NASTY);
    want.extend_from_slice(b"\"\r\n\r\nOK\r\n\r\n+UUSORF: 0,4\r\n");
    eq(&at(&emu, &mut u, "AT+USORF=0,1024\r\n"), &want);
    // Partial read of the 4-byte datagram: the rest is announced.
    eq(
        &at(&emu, &mut u, "AT+USORF=0,1\r\n"),
        format!("\r\n+USORF: 0,\"127.0.0.1\",{port},1,\"a\"\r\n\r\nOK\r\n\r\n+UUSORF: 0,3\r\n")
            .as_bytes(),
    );
    eq(
        &at(&emu, &mut u, "AT+USORF=0,1024\r\n"),
        format!("\r\n+USORF: 0,\"127.0.0.1\",{port},3,\"bcd\"\r\n\r\nOK\r\n").as_bytes(),
    );
}

#[test]
fn udp_g350_extra_crlf() {
    let (emu, mut u, port) = udp_sequence(Model::SaraG350);
    let n = NASTY.len();
    let mut want = format!("\r\n+USORF: 0,\"127.0.0.1\",{port},{n},\"").into_bytes();
    want.extend_from_slice(NASTY);
    want.extend_from_slice(b"\"\r\n\r\n\r\nOK\r\n\r\n+UUSORF: 0,4\r\n");
    eq(&at(&emu, &mut u, "AT+USORF=0,1024\r\n"), &want);
}

#[test]
fn udp_r410_junk_crs() {
    let (emu, mut u, port) = udp_sequence(Model::SaraR410M);
    let n = NASTY.len();
    let mut want = format!("\r\r\n\r\r\n+USORF: 0,\"127.0.0.1\",{port},{n},\"").into_bytes();
    want.extend_from_slice(NASTY);
    want.extend_from_slice(b"\"\r\n\r\r\nOK\r\n\r\n+UUSORF: 0,4\r\n");
    let mut got = at(&emu, &mut u, "AT+USORF=0,1024\r\n");
    got.extend(wait(&emu, &mut u, Duration::from_millis(50)));
    eq(&got, &want);
}

#[test]
fn udp_needs_a_send_before_it_receives() {
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_port = peer.local_addr().unwrap().port();
    let (emu, mut u) = online(Model::SaraR410M, 1);
    eq(
        &at(&emu, &mut u, &format!("AT+USOCR=17,{port}\r\n")),
        b"\r\n+USOCR: 0\r\n\r\nOK\r\n",
    );
    peer.send_to(b"early", ("127.0.0.1", port)).unwrap();
    let mut d = emu.delay();
    for _ in 0..50 {
        d.delay_ms(10);
    }
    eq(&drain(&mut u), b"");
    at(
        &emu,
        &mut u,
        &format!("AT+USOST=0,\"127.0.0.1\",{peer_port},2,\"hi\"\r\n"),
    );
    peer.send_to(b"late", ("127.0.0.1", port)).unwrap();
    eq(
        &wait_for(&emu, &mut u, b"\r\n+UUSORF: 0,4\r\n"),
        b"\r\n+UUSORF: 0,4\r\n",
    );
}

#[test]
fn udp_outside_loopback_is_dropped_not_sent() {
    let (emu, mut u) = online(Model::SaraU260, 1);
    at(&emu, &mut u, "AT+USOCR=17\r\n");
    eq(
        &at(
            &emu,
            &mut u,
            "AT+USOST=0,\"185.15.72.251\",123,2,\"hi\"\r\n",
        ),
        b"\r\n+USOST: 0,2\r\n\r\nOK\r\n",
    );
    assert!(emu
        .transcript_string()
        .contains("datagram to 185.15.72.251:123 dropped"));
}

#[test]
fn peer_close_fault_and_stats_per_kilobyte() {
    let (port, server) = tcp_echo_server();
    let (emu, mut u) = online(Model::SaraU270, 1);
    at(&emu, &mut u, "AT+USOCR=6\r\n");
    at(
        &emu,
        &mut u,
        &format!("AT+USOCO=0,\"127.0.0.1\",{port}\r\n"),
    );
    let payload = vec![0x5Au8; 1024];
    eq(&at(&emu, &mut u, "AT+USOWR=0,1024\r\n"), b"\r\n@");
    emu.delay().delay_ms(50);
    u.write_all(&payload).unwrap();
    wait_for(&emu, &mut u, b"OK\r\n");
    wait_pending(&emu, &mut u, "AT+USORD=0,0\r\n", b"+USORD: 0,1024\r\n");
    let before = emu.stats();
    let r = at(&emu, &mut u, "AT+USORD=0,1024\r\n");
    assert_eq!(
        r.len(),
        "\r\n+USORD: 0,1024,\"\"\r\n\r\nOK\r\n".len() + 1024
    );
    let per_kb = emu.stats().since(&before);
    assert_eq!(per_kb.at_commands, 1);
    assert_eq!(per_kb.from_modem.payload, 1024);
    assert_eq!(per_kb.from_modem.at, 27);
    assert_eq!(per_kb.to_modem.at, "AT+USORD=0,1024\r\n".len() as u64);

    emu.add_fault(Fault::new(
        Trigger::at_ms(emu.now() / 1000 + 1),
        Action::PeerClose(0),
    ));
    eq(
        &wait(&emu, &mut u, Duration::from_millis(10)),
        b"\r\n+UUSOCL: 0\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOWR=0,1\r\n"),
        b"\r\n+CME ERROR: 3\r\n",
    );
    server.join().unwrap();
}
