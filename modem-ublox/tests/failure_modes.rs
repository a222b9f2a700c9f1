//! One test per failure mode of section 6 of the research notes. Each shows the driver
//! survives: a correct result, or a clear error followed by a successful next operation.
//! Never a hang (the scripted UART panics on a read that would block) or a panic.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use modem_ublox::{
    AtError, DataError, Family, Interventions, ModemConfig, PowerError, Protocol, RegStatus,
    Registration, RegistrationError, SimError, SocketError, SocketId,
};

fn addr(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

fn tcp(b: &Bench, m: &mut FullModem, h: u8) -> SocketId {
    b.push(at("AT+USOCR=6\r\n", info_ok(format!("+USOCR: {h}"))));
    b.push(ok(format!("AT+USOCO={h},\"52.1.2.3\",5684\r\n")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    m.connect(s, addr([52, 1, 2, 3], 5684)).unwrap();
    s
}

#[test]
fn fm01_urc_inside_response() {
    let (b, mut m) = booted(Family::U2);
    // Between echo-less info line and OK, before the info line, and right after OK.
    b.push(at(
        "AT+USOCR=6\r\n",
        "\r\n+CGEV: ME PDN ACT 1\r\n\r\n+USOCR: 0\r\n\r\n+CREG: 5,\"9E9A\",\"0196BDB0\",2\r\n\r\nOK\r\n\r\n+UUSORD: 0,12\r\n",
    ));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(s.handle(), 0);
    assert_eq!(m.registration_status().0, RegStatus::Roaming);
    m.poll(0).unwrap();
    assert_eq!(m.pending(s), Ok(12));
    // A URC between the binary payload's OK-lookalike and the real OK.
    b.push([
        tx("AT+USORD=0,12\r\n"),
        rx("\r\n+USORD: 0,12,\"hello\r\nOK\r\n!\"\r\n\r\n+UUSORD: 0,30\r\n\r\nOK\r\n"),
    ]);
    let mut buf = [0u8; 64];
    assert_eq!(m.receive(s, &mut buf), Ok(12));
    assert_eq!(&buf[..12], b"hello\r\nOK\r\n!");
    assert_eq!(
        m.pending(s),
        Ok(30),
        "the URC inside the response was applied"
    );
    assert_eq!(m.stats().urcs, 4);
    b.done();
}

#[test]
fn fm02_urc_with_same_prefix_as_response() {
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 1")));
    b.push(ok("AT+CREG=2\r\n"));
    b.push(ok("AT+CGREG=2\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 0")));
    // URC (stat only / stat + location) then the answer (n,stat,...), in one response.
    b.push(at(
        "AT+CREG?\r\n",
        "\r\n+CREG: 2\r\n\r\n+CREG: 2,1,\"9E9A\",\"019624BD\",2\r\n\r\n+CGREG: 5,\"9E9A\",\"0196BDB0\",2\r\n\r\nOK\r\n",
    ));
    b.push(at(
        "AT+CGREG?\r\n",
        "\r\n+CGREG: 1\r\n\r\n+CGREG: 2,1,\"9E9A\",\"019607C0\",2,\"02\"\r\n\r\nOK\r\n",
    ));
    assert_eq!(m.register(&Registration::new(60_000)), Ok(RegStatus::Home));
    assert_eq!(m.registration_status().0, RegStatus::Home);
    // +UUSORD inside the +USORD count answer.
    let s = tcp(&b, &mut m, 0);
    b.push(at(
        "AT+USORD=0,0\r\n",
        "\r\n+UUSORD: 0,20\r\n\r\n+USORD: 0,20\r\n\r\nOK\r\n",
    ));
    b.push(at(
        "AT+USORD=0,8\r\n",
        "\r\n+USORD: 0,8,\"abcdefgh\"\r\n\r\nOK\r\n",
    ));
    let mut buf = [0u8; 8];
    assert_eq!(m.receive(s, &mut buf), Ok(8));
    assert_eq!(m.pending(s), Ok(12));
    b.done();
}

#[test]
fn fm03_echo_on_is_tolerated() {
    // Every answer before ATE0 echoes the command, some with stray CRs and split reads.
    let b = Bench::new();
    b.script.set_vint(true);
    let mut m = b.modem(ModemConfig::new(Family::G3));
    b.push([tx("AT\r\n"), rx_split("AT\r\r\r\nOK\r\n", 1)]);
    b.push([tx("ATE0\r\n"), rx_split("ATE0\r\r\nOK\r\n", 3)]);
    b.push(ok("AT\r\n"));
    b.push(ok("AT+CMEE=1\r\n"));
    b.push(at("AT+CGMM\r\n", info_ok("SARA-G350")));
    b.push(at("ATI9\r\n", info_ok("08.90,A01.13")));
    b.push(ok("AT+UPSV=0\r\n"));
    m.power_on().unwrap();
    assert_eq!(m.stats().reboots_detected, 0);
    b.done();
}

#[test]
fn fm04_modem_reboot_mid_session() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    // Brown-out: NULs and a break byte, then the next command is echoed (echo back on).
    b.push([rx(b"\0\0\xff\xf0")]);
    b.push(at(
        "AT+USORD=0,0\r\n",
        "AT+USORD=0,0\r\r\n+CME ERROR: 3\r\n",
    ));
    b.push(init_steps(Family::U2));
    let mut buf = [0u8; 8];
    assert_eq!(m.receive(s, &mut buf), Err(SocketError::Invalidated));
    assert_eq!(m.stats().reboots_detected, 1);
    assert_eq!(m.send(s, b"x"), Err(SocketError::Invalidated));
    assert_eq!(
        m.registration_status(),
        (
            RegStatus::NotRegistered,
            RegStatus::NotRegistered,
            RegStatus::NotRegistered
        )
    );
    // A new socket works (handle 0 again, but a different id), after a sweep of the handles
    // the rebooted modem may hold (issue 8 item 3).
    for h in 0..7 {
        b.push(at(format!("AT+USOCTL={h},0\r\n"), "\r\n+CME ERROR: 3\r\n"));
        b.push(at(format!("AT+USOCL={h}\r\n"), "\r\n+CME ERROR: 3\r\n"));
    }
    let s2 = tcp(&b, &mut m, 0);
    assert_ne!(s, s2);
    b.done();

    // V_INT falling: the modem is off; operations say so; power_on brings it back.
    b.push([Step::Vint {
        after: 0,
        high: false,
    }]);
    assert_eq!(m.send(s2, b"x"), Err(SocketError::At(AtError::PoweredOff)));
    assert!(!m.is_powered());
    b.push([tx("AT\r\n"), rx_after(500, "AT\r\r\nOK\r\n")]);
    b.push(init_steps(Family::U2));
    m.power_on().unwrap();
    assert_eq!(m.send(s2, b"x"), Err(SocketError::Invalidated));
    b.done();
}

#[test]
fn fm05_stale_sockets_from_previous_mcu_run() {
    let (b, mut m) = booted(Family::U2);
    // A URC for a handle this driver never opened.
    b.push([rx("\r\n+UUSORD: 4,10\r\n")]);
    m.poll(0).unwrap();
    b.push(at("AT+USOCTL=4,0\r\n", info_ok("+USOCTL: 4,0,6")));
    b.push(ok("AT+USOCL=4\r\n"));
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(s.handle(), 0);
    // All seven in use: USOCR fails, the driver sweeps and retries.
    b.push(at(
        "AT+USOCR=17\r\n",
        "\r\n+CME ERROR: Operation not allowed\r\n",
    ));
    for h in 1..7 {
        b.push(at(
            format!("AT+USOCTL={h},0\r\n"),
            info_ok(format!("+USOCTL: {h},0,17")),
        ));
        b.push(ok(format!("AT+USOCL={h}\r\n")));
    }
    b.push(at("AT+USOCR=17\r\n", info_ok("+USOCR: 1")));
    let u = m.open_socket(Protocol::Udp).unwrap();
    assert_eq!(u.handle(), 1);
    // Nothing stale left: full again means no free socket.
    b.push(at("AT+USOCR=17\r\n", "\r\nERROR\r\n"));
    for h in 2..7 {
        b.push(at(
            format!("AT+USOCTL={h},0\r\n"),
            info_ok(format!("+USOCTL: {h},0,0")),
        ));
    }
    assert_eq!(m.open_socket(Protocol::Udp), Err(SocketError::NoFreeSocket));
    b.done();
}

/// SARA-R410 fw 05.08 answers `AT+USOCTL` with a CME error (device-os parser notes): the
/// sweep then closes the stale handle with `AT+USOCL=<h>` directly instead of leaving it
/// open forever.
#[test]
fn fm05_stale_socket_closed_when_usoctl_is_not_supported() {
    let (b, mut m) = booted(Family::R4);
    b.push([rx("\r\n+UUSORD: 4,10\r\n")]);
    m.poll(0).unwrap();
    b.push(at(
        "AT+USOCTL=4,0\r\n",
        "\r\n+CME ERROR: Operation not allowed\r\n",
    ));
    b.push(ok("AT+USOCL=4\r\n"));
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(s.handle(), 0);
    // A handle that is not open either way: USOCTL and USOCL both refuse, nothing closed.
    b.push(at("AT+USOCTL=1,0\r\n", "\r\n+CME ERROR: 3\r\n"));
    b.push(at("AT+USOCL=1\r\n", "\r\n+CME ERROR: 3\r\n"));
    for h in 2..7 {
        b.push(at(format!("AT+USOCTL={h},0\r\n"), "\r\n+CME ERROR: 3\r\n"));
        b.push(ok(format!("AT+USOCL={h}\r\n")));
    }
    assert_eq!(m.sweep_stale_sockets(), Ok(5));
    b.done();
}

#[test]
fn fm06_cme_error_variants() {
    let (b, mut m) = booted(Family::R4);
    b.push(at("AT+CCID\r\n", "\r\nERROR\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Error));
    b.push(at("AT+CCID\r\n", "\r\n+CME ERROR: SIM failure\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Cme(13)));
    b.push(at("AT+CCID\r\n", "\r\n+CME ERROR: 13\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Cme(13)));
    b.push(at("AT+CCID\r\n", "\r\n+CME ERROR: some new text\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Cme(100)));
    b.push(at("AT+CCID\r\n", "\r\nABORTED\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Aborted));
    // A connect error arriving after 125 s (R4 allows 130 s).
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    b.push([
        tx("AT+USOCO=0,\"52.1.2.3\",5684\r\n"),
        rx_after(125_000, "\r\n+CME ERROR: Operation not allowed\r\n"),
    ]);
    b.push(at("AT+USOER\r\n", info_ok("+USOER: 110")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(
        m.connect(s, addr([52, 1, 2, 3], 5684)),
        Err(SocketError::Socket(110))
    );
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 89441000300000000001")));
    assert_eq!(m.iccid().unwrap().as_str(), "89441000300000000001");
    b.done();
}

#[test]
fn fm07_long_timeouts_and_commands_not_interrupted() {
    let (b, mut m) = booted(Family::U2);
    // COPS answers after 250 s (documented 180 s): the driver waits, sending nothing
    // (a byte written meanwhile would abort it; the strict UART would fail the test).
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 1")));
    b.push(ok("AT+CREG=2\r\n"));
    b.push(ok("AT+CGREG=2\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 2")));
    b.push([tx("AT+COPS=0,2\r\n"), rx_after(250_000, "\r\nOK\r\n")]);
    b.push(at("AT+CREG?\r\n", info_ok("+CREG: 2,1")));
    b.push(at("AT+CGREG?\r\n", info_ok("+CGREG: 2,1")));
    assert_eq!(m.register(&Registration::new(400_000)), Ok(RegStatus::Home));
    // CGATT gives up at 180 s (its own timeout, inside the budget): an AT timeout.
    b.push([tx("AT+CGATT=1\r\n")]);
    assert_eq!(
        m.activate_data(&modem_ublox::Apn::new("apn"), 600_000),
        Err(DataError::At(AtError::Timeout))
    );
    // The next command resynchronises with AT. Its OK comes at once; CGATT's late OK comes
    // 300 ms after it; AT+CCID's answer would come after that. The probe must match the
    // first OK, the late OK must be dropped as a stray result (not taken as AT+CCID's final
    // result, which would leave AT+CCID without its +CCID line), and AT+CCID must get its
    // own answer.
    b.push([tx("AT\r\n"), rx("\r\nOK\r\n"), rx_late(300, "\r\nOK\r\n")]);
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    let strays = m.stats().stray_results;
    assert_eq!(m.iccid().unwrap().as_str(), "8934071100270000000");
    assert_eq!(
        m.stats().stray_results,
        strays + 1,
        "the late OK was a stray"
    );
    let probe = b.script.tx_time(b"AT\r\n");
    let ccid = b.script.tx_time(b"AT+CCID\r\n");
    assert!(
        ccid - probe >= 300 * MS,
        "AT+CCID went out {} ms after the probe, before the late OK",
        (ccid - probe) / MS
    );
    b.done();

    // Same again with the late OK and the probe's OK due at the same moment.
    b.push([tx("AT+CGATT=1\r\n")]);
    assert_eq!(
        m.activate_data(&modem_ublox::Apn::new("apn"), 600_000),
        Err(DataError::At(AtError::Timeout))
    );
    b.push([tx("AT\r\n"), rx("\r\nOK\r\n\r\nOK\r\n")]);
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    let strays = m.stats().stray_results;
    assert_eq!(m.iccid().unwrap().as_str(), "8934071100270000000");
    assert_eq!(m.stats().stray_results, strays + 1);
    b.done();
}

#[test]
fn fm08_binary_payload_with_crlf_ok_quote_at() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 2);
    let mut payload: Vec<u8> = (0..=255u8).collect();
    payload.extend_from_slice(b"\r\nOK\r\n\"\r\n@\r\nERROR\r\n+UUSORD: 2,5\r\n\"");
    let n = payload.len();
    b.push([rx(format!("\r\n+UUSORD: 2,{n}\r\n"))]);
    let mut resp = format!("\r\n+USORD: 2,{n},\"").into_bytes();
    resp.extend_from_slice(&payload);
    resp.extend_from_slice(b"\"\r\n\r\nOK\r\n");
    b.push([tx(format!("AT+USORD=2,{n}\r\n")), rx_split(resp, 7)]);
    assert!(m.wait_readable(s, 1_000).unwrap());
    let mut buf = [0u8; 1024];
    assert_eq!(m.receive(s, &mut buf), Ok(n));
    assert_eq!(&buf[..n], &payload[..]);
    assert_eq!(
        m.pending(s),
        Ok(0),
        "the +UUSORD inside the payload was data, not a URC"
    );
    b.done();
}

#[test]
fn fm09_partial_reads_and_garbled_lines() {
    let (b, mut m) = booted(Family::U2);
    // One byte per read, with a pause in the middle of the line.
    b.push([
        tx("AT+USOCR=6\r\n"),
        rx_split("\r\n+USO", 1),
        rx_after(300, "CR: 3\r\n\r\nOK\r\n"),
    ]);
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(s.handle(), 3);
    // A garbled answer (overrun): no parseable info line → clear error, next command fine.
    b.push(at("AT+CCID\r\n", "\r\n+CC\u{0}\u{ff}I\r\n\r\nOK\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Unexpected));
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    assert!(m.iccid().is_ok());
    // A truncated binary read: the closing quote is missing where the length says.
    b.push([rx("\r\n+UUSORD: 3,4\r\n")]);
    b.push([
        tx("AT+USORD=3,4\r\n"),
        rx("\r\n+USORD: 3,4,\"abc\r\n\r\nOK\r\n"),
    ]);
    m.poll(0).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        m.receive(s, &mut buf),
        Err(SocketError::At(AtError::Unexpected))
    );
    b.push(at("AT+USORD=3,0\r\n", info_ok("+USORD: 3,0")));
    assert_eq!(m.receive(s, &mut buf), Ok(0));
    b.done();
}

/// After an overrun garbled a binary read's header, the payload arrives as plain lines; one
/// starting with "AT" is payload text, not the echo of a command (only an echo of the
/// command just sent, or a bare `AT`, means the modem rebooted with echo back on).
#[test]
fn fm09_payload_lines_starting_with_at_are_not_taken_for_echo() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    b.push([rx("\r\n+UUSORD: 0,12\r\n")]);
    m.poll(0).unwrap();
    b.push(at(
        "AT+USORD=0,12\r\n",
        "\r\n+USRD: 0,12,\"hi\r\nATZ\r\nAT+CFUN=16\r\n\"\r\n\r\nOK\r\n",
    ));
    let mut buf = [0u8; 16];
    assert_eq!(
        m.receive(s, &mut buf),
        Err(SocketError::At(AtError::Unexpected))
    );
    assert_eq!(m.stats().reboots_detected, 0);
    // The session goes on: same socket, no re-initialisation.
    b.push(at("AT+USORD=0,0\r\n", info_ok("+USORD: 0,0")));
    assert_eq!(m.receive(s, &mut buf), Ok(0));
    b.done();
}

#[test]
fn fm10_uusord_lost_or_coalesced() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    // Lost: no URC for 2 s, then the driver asks once.
    b.push(at("AT+USORD=0,0\r\n", info_ok("+USORD: 0,30")));
    assert!(m.wait_readable(s, 2_000).unwrap());
    assert_eq!(m.pending(s), Ok(30));
    // Coalesced / updated: the latest total wins.
    b.push([rx("\r\n+UUSORD: 0,40\r\n\r\n+UUSORD: 0,45\r\n")]);
    m.poll(0).unwrap();
    assert_eq!(m.pending(s), Ok(45));
    b.push(at(
        "AT+USORD=0,45\r\n",
        format!("\r\n+USORD: 0,45,\"{}\"\r\n\r\nOK\r\n", "q".repeat(45)),
    ));
    let mut buf = [0u8; 100];
    assert_eq!(m.receive(s, &mut buf), Ok(45));
    b.done();
}

#[test]
fn fm11_peer_close_before_data_is_read() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    // Data URC and close URC right after a write (ubxlib #175).
    b.push([tx("AT+USOWR=0,4\r\n"), rx("\r\n@"), tx("ping")]);
    b.push([rx(
        "\r\n+USOWR: 0,4\r\n\r\nOK\r\n\r\n+UUSORD: 0,4\r\n\r\n+UUSOCL: 0\r\n",
    )]);
    assert_eq!(m.send(s, b"ping"), Ok(4));
    m.poll(0).unwrap();
    assert_eq!(m.is_peer_closed(s), Ok(true));
    b.push(at(
        "AT+USORD=0,4\r\n",
        "\r\n+USORD: 0,4,\"pong\"\r\n\r\nOK\r\n",
    ));
    let mut buf = [0u8; 8];
    assert_eq!(m.receive(s, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"pong");
    // Drained: the modem refuses further reads.
    b.push(at(
        "AT+USORD=0,0\r\n",
        "\r\n+CME ERROR: Operation not allowed\r\n",
    ));
    assert_eq!(m.receive(s, &mut buf), Err(SocketError::Closed));
    assert_eq!(m.send(s, b"x"), Err(SocketError::Closed));
    // Closing a peer-closed socket tolerates the modem's error.
    b.push(at("AT+USOCL=0\r\n", "\r\n+CME ERROR: 3\r\n"));
    assert_eq!(m.close(s), Ok(()));
    // Variant: the data URC was lost, only the close came; the poll finds the data.
    let s = tcp(&b, &mut m, 1);
    b.push([rx("\r\n+UUSOCL: 1\r\n")]);
    b.push(at("AT+USORD=1,0\r\n", info_ok("+USORD: 1,3")));
    b.push(at(
        "AT+USORD=1,3\r\n",
        "\r\n+USORD: 1,3,\"end\"\r\n\r\nOK\r\n",
    ));
    m.poll(0).unwrap();
    assert_eq!(m.receive(s, &mut buf), Ok(3));
    b.done();
}

#[test]
fn fm12_write_errors() {
    let (b, mut m) = booted(Family::R4);
    let s = tcp(&b, &mut m, 0);
    // EWOULDBLOCK: retried after a backoff.
    b.push([
        tx("AT+USOWR=0,5\r\n"),
        rx("\r\n@"),
        tx("hello"),
        rx("\r\nERROR\r\n"),
    ]);
    b.push(at("AT+USOER\r\n", info_ok("+USOER: 11")));
    // R4 segmentation: only 3 accepted, the rest is sent next.
    b.push([
        tx("AT+USOWR=0,5\r\n"),
        rx("\r\n@"),
        tx("hello"),
        rx("\r\n+USOWR: 0,3\r\n\r\nOK\r\n"),
    ]);
    b.push([
        tx("AT+USOWR=0,2\r\n"),
        rx("\r\n@"),
        tx("lo"),
        rx("\r\n+USOWR: 0,2\r\n\r\nOK\r\n"),
    ]);
    assert_eq!(m.send(s, b"hello"), Ok(5));
    // Operation not allowed + USOER 65: not retried, reported (PipeClosed for embedded-nal).
    b.push([
        tx("AT+USOWR=0,1\r\n"),
        rx("\r\n+CME ERROR: Operation not allowed\r\n"),
    ]);
    b.push(at("AT+USOER\r\n", info_ok("+USOER: 65")));
    let e = m.send(s, b"!").unwrap_err();
    assert_eq!(e, SocketError::Socket(65));
    assert_eq!(
        embedded_nal::TcpError::kind(&e),
        embedded_nal::TcpErrorKind::PipeClosed
    );
    b.done();
}

#[test]
fn fm13_lost_registration_and_context() {
    let (b, mut m) = booted(Family::U2);
    b.push(ok("AT+CGATT=1\r\n"));
    b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,1")));
    b.push(at("AT+UPSND=0,0\r\n", info_ok("+UPSND: 0,0,\"10.0.0.7\"")));
    m.activate_data(&modem_ublox::Apn::new("apn"), 60_000)
        .unwrap();
    let s = tcp(&b, &mut m, 0);
    b.push([rx(
        "\r\n+CGEV: NW DETACH\r\n\r\n+UUPSDD: 0\r\n\r\n+CGREG: 0\r\n\r\n+UUSOCL: 0\r\n",
    )]);
    m.poll(0).unwrap();
    assert_eq!(m.data_address(), None);
    assert_eq!(m.registration_status().1, RegStatus::NotRegistered);
    assert_eq!(m.is_peer_closed(s), Ok(true));
    // Re-register and re-activate.
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 1")));
    b.push(ok("AT+CREG=2\r\n"));
    b.push(ok("AT+CGREG=2\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 0")));
    b.push(at("AT+CREG?\r\n", info_ok("+CREG: 2,1")));
    b.push(at("AT+CGREG?\r\n", info_ok("+CGREG: 2,1")));
    assert_eq!(m.register(&Registration::new(60_000)), Ok(RegStatus::Home));
    b.push(ok("AT+CGATT=1\r\n"));
    b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,0")));
    b.push(ok("AT+UPSD=0,1,\"apn\"\r\n"));
    b.push(ok("AT+UPSD=0,7,\"0.0.0.0\"\r\n"));
    b.push(ok("AT+UPSD=0,6,0\r\n"));
    b.push(at(
        "AT+UPSDA=0,3\r\n",
        "\r\nOK\r\n\r\n+UUPSDA: 0,\"10.0.0.8\"\r\n",
    ));
    b.push(at("AT+UPSND=0,0\r\n", info_ok("+UPSND: 0,0,\"10.0.0.8\"")));
    assert_eq!(
        m.activate_data(&modem_ublox::Apn::new("apn"), 60_000),
        Ok(Ipv4Addr::new(10, 0, 0, 8))
    );
    b.done();

    // R4/R5 report a lost default bearer with +CGEV: NW PDN DEACT (or NW DEACT / NW DETACH);
    // the context is known to be down. An activation report leaves it up.
    for urc in [
        "+CGEV: NW PDN DEACT 1",
        "+CGEV: NW DEACT \"IP\",\"10.39.187.185\",1",
        "+CGEV: ME PDN DEACT 1",
        "+CGEV: NW DETACH",
    ] {
        let (b, mut m) = booted(Family::R4);
        b.push(at("AT+CGACT?\r\n", info_ok("+CGACT: 1,1")));
        b.push(at(
            "AT+CGPADDR=1\r\n",
            info_ok("+CGPADDR: 1,\"10.39.187.185\""),
        ));
        m.activate_data(&modem_ublox::Apn::new("apn"), 60_000)
            .unwrap();
        b.push([rx("\r\n+CGEV: ME PDN ACT 1\r\n")]);
        m.poll(0).unwrap();
        assert_eq!(m.data_address(), Some(Ipv4Addr::new(10, 39, 187, 185)));
        b.push([rx(format!("\r\n{urc}\r\n"))]);
        m.poll(0).unwrap();
        assert_eq!(m.data_address(), None, "{urc}");
        b.done();
    }
}

#[test]
fn fm14_registration_sticky_states() {
    // Denied, with the radio-cycle intervention: registered afterwards.
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 1")));
    b.push(ok("AT+CREG=2\r\n"));
    b.push(ok("AT+CGREG=2\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 0")));
    let mut reg = Registration::new(120_000);
    reg.interventions = Interventions::ALL;
    reg.intervention_interval_ms = 10_000;
    reg.poll_interval_ms = 15_000;
    b.push(at("AT+CREG?\r\n", info_ok("+CREG: 2,3")));
    b.push(at("AT+CGREG?\r\n", info_ok("+CGREG: 2,3")));
    b.push(at("AT+CREG?\r\n", info_ok("+CREG: 2,3")));
    b.push(at("AT+CGREG?\r\n", info_ok("+CGREG: 2,3")));
    b.push(ok("AT+CFUN=0\r\n"));
    b.push(ok("AT+CFUN=1\r\n"));
    b.push([rx_after(5_000, "\r\n+CGREG: 1,\"9E9A\",\"0196BDB0\",2\r\n")]);
    assert_eq!(m.register(&reg), Ok(RegStatus::Home));
    b.done();
    // Denied without interventions: the budget ends with Denied.
    let (b, mut m) = booted(Family::G3);
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 1")));
    b.push(ok("AT+CREG=2\r\n"));
    b.push(ok("AT+CGREG=2\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 0")));
    b.push(at("AT+CREG?\r\n", info_ok("+CREG: 2,3")));
    b.push(at("AT+CGREG?\r\n", info_ok("+CGREG: 2,3")));
    let mut reg = Registration::new(10_000);
    reg.poll_interval_ms = 15_000;
    assert_eq!(m.register(&reg), Err(RegistrationError::Denied));
    // CS registered but PS not: CGATT=1 intervention.
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 1")));
    b.push(ok("AT+CREG=2\r\n"));
    b.push(ok("AT+CGREG=2\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 0")));
    b.push(at("AT+CREG?\r\n", info_ok("+CREG: 2,1")));
    b.push(at("AT+CGREG?\r\n", info_ok("+CGREG: 2,0")));
    b.push(ok("AT+CGATT=1\r\n"));
    b.push([rx("\r\n+CGREG: 1\r\n")]);
    let mut reg = Registration::new(60_000);
    reg.interventions = Interventions::NONE.with_attach(true);
    reg.intervention_interval_ms = 0;
    assert_eq!(m.register(&reg), Ok(RegStatus::Home));
    b.done();
}

#[test]
fn fm15_sim_not_ready_after_cfun_change() {
    let (b, mut m) = booted(Family::R4);
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: SIM failure\r\n"));
    b.push(at("AT+CPIN?\r\n", "\r\nERROR\r\n"));
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: SIM busy\r\n"));
    b.push(at("AT+CPIN?\r\n", info_ok("+CPIN: READY")));
    m.wait_sim_ready(30_000).unwrap();
    b.done();
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: SIM failure\r\n"));
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: SIM failure\r\n"));
    assert_eq!(m.wait_sim_ready(1_800), Err(SimError::NotReady));
    b.done();
}

#[test]
fn fm16_power_control_failures() {
    // G350: CPWROFF unanswered 3 times; PWR_ON must NOT be pulsed (it would switch it on);
    // RESET_N reboots it, then CPWROFF works.
    let (b, mut m) = booted(Family::G3);
    b.push([
        tx("AT+CPWROFF\r\n"),
        tx("AT+CPWROFF\r\n"),
        tx("AT+CPWROFF\r\n"),
    ]);
    b.push([tx("AT\r\n"), rx_after(600, "AT\r\r\nOK\r\n")]);
    b.push([
        tx("AT+CPWROFF\r\n"),
        rx("\r\nOK\r\n"),
        Step::Vint {
            after: 2_000 * MS,
            high: false,
        },
    ]);
    m.power_off().unwrap();
    assert_eq!(
        b.script.pulses("PWR_ON").len(),
        1,
        "only the power-on pulse"
    );
    let r = b.script.pulses("RESET_N");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, 100 * MS);
    b.done();

    // U2: CPWROFF OK but V_INT stays high: a 1.5 s PWR_ON pulse switches it off.
    let (b, mut m) = booted(Family::U2);
    b.script
        .on_pulse(|pin, w| (pin == "PWR_ON" && w >= 1_000 * MS).then_some((500 * MS, false)));
    b.push(ok("AT+CPWROFF\r\n"));
    m.power_off().unwrap();
    let p = b.script.pulses("PWR_ON");
    assert_eq!(p.len(), 2);
    assert_eq!(p[1].1, 1_500 * MS);
    b.done();

    // R410: RESET_N (10 s) switches it off.
    let (b, mut m) = booted(Family::R4);
    b.script.on_pulse(|pin, w| match pin {
        "RESET_N" if w >= 10_000 * MS => Some((100 * MS, false)),
        _ => None,
    });
    b.push([
        tx("AT+CPWROFF\r\n"),
        rx("\r\nERROR\r\n"),
        tx("AT+CPWROFF\r\n"),
        rx("\r\nERROR\r\n"),
    ]);
    b.push([tx("AT+CPWROFF\r\n"), rx("\r\nERROR\r\n")]);
    m.power_off().unwrap();
    assert_eq!(b.script.pulses("PWR_ON")[1].1, 1_600 * MS);
    assert_eq!(b.script.pulses("RESET_N")[0].1, 10_000 * MS);
    b.done();

    // V_INT stuck high (back-powered by a level shifter) and AT silent: StillOn, no hang.
    let (b, mut m) = booted(Family::R4);
    b.push([tx("AT+CPWROFF\r\n"), rx("\r\nOK\r\n")]);
    assert_eq!(m.power_off(), Err(PowerError::StillOn));
    b.done();
}

/// SARA-R510 that ignores PWR_ON and RESET_N (device-os PR #2365): after `AT+CPWROFF`, the
/// off pulse and a reset with another `AT+CPWROFF` all fail, the emergency hardware shutdown
/// of research section 2.2 switches it off: PWR_ON low, 500 ms, RESET_N low, PWR_ON released
/// 23 s later, RESET_N 2 s after that.
#[test]
fn fm16_r510_ignoring_pwr_on_and_reset_gets_the_emergency_shutdown() {
    let (b, mut m) = booted(Family::R5);
    // Only RESET_N held low for 25 s (the emergency sequence) switches it off.
    b.script
        .on_pulse(|pin, w| (pin == "RESET_N" && w >= 25_000 * MS).then_some((100 * MS, false)));
    b.push(ok("AT+CPWROFF\r\n"));
    // The reset is ignored: the modem still answers, and accepts AT+CPWROFF again.
    b.push(ok("AT\r\n"));
    b.push(ok("AT+CPWROFF\r\n"));
    m.power_off().unwrap();
    b.done();
    let pwr = b.script.pulses("PWR_ON");
    let rst = b.script.pulses("RESET_N");
    assert_eq!(pwr.len(), 3, "boot, off pulse, emergency: {pwr:?}");
    assert_eq!(pwr[1].1, 1_600 * MS, "the ordinary off pulse came first");
    assert_eq!(rst.len(), 2, "reset, emergency: {rst:?}");
    assert_eq!(rst[0].1, 200 * MS, "the ordinary reset came first");
    let (p_start, p_width) = pwr[2];
    let (r_start, r_width) = rst[1];
    assert_eq!(
        r_start - p_start,
        500 * MS,
        "RESET_N low 500 ms after PWR_ON"
    );
    assert_eq!(
        p_width,
        23_500 * MS,
        "PWR_ON released 23 s after RESET_N went low"
    );
    assert_eq!(
        r_start + r_width - (p_start + p_width),
        2_000 * MS,
        "RESET_N released 2 s after PWR_ON"
    );
    assert!(!m.is_powered());
}

/// Power-off without V_INT on a SARA-R410: after `AT+CPWROFF` answered `OK`, the module may
/// still answer an `AT` while it shuts down. The driver must not send the 1.6 s off pulse
/// then (it is inside the R410's 0.15-3.2 s switch-ON range and could boot it again): it
/// probes until two `AT`s in a row go unanswered, within the R410's 35 s power-down time.
#[test]
fn fm16_r410_power_off_without_vint_never_pulses_after_cpwroff_ok() {
    let b = Bench::new();
    let mut m = b.bare(ModemConfig::new(Family::R4));
    b.push([tx("AT\r\n"), tx("AT\r\n"), rx_after(300, "AT\r\r\nOK\r\n")]);
    b.push(init_steps(Family::R4));
    m.power_on().unwrap();
    b.done();
    b.push(ok("AT+CPWROFF\r\n"));
    b.push(ok("AT\r\n")); // still shutting down
    b.push([tx("AT\r\n"), tx("AT\r\n")]); // gone
    m.power_off().unwrap();
    b.done();
    assert_eq!(
        b.script.pulses("PWR_ON").len(),
        1,
        "only the power-on pulse"
    );
    assert!(!m.is_powered());
}

#[test]
fn fm17_uart_power_saving_first_character_lost() {
    // Prevention: AT+UPSV=0 is part of init on U2/G3/R5 (checked in init_steps).
    // Survival: the modem missed the first character and never answers; the driver times
    // out, resynchronises with AT, and the retry works.
    let (b, mut m) = booted(Family::U2);
    b.push([tx("AT+CCID\r\n")]);
    assert_eq!(m.iccid(), Err(AtError::Timeout));
    b.push([tx("AT\r\n"), rx("\r\nOK\r\n")]);
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    assert!(m.iccid().is_ok());
    assert_eq!(m.stats().timeouts, 1);
    b.done();

    // A real lost first character: the modem received "T+CCID" and answers ERROR (with echo
    // on it also echoes "T+CCID"). The command fails with that ERROR; it is not a timeout
    // (no resynchronisation), not a reboot (the echo is not of the command sent), and the
    // next command works.
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CCID\r\n", "\r\nERROR\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Error));
    b.push(at("AT+CCID\r\n", "T+CCID\r\r\nERROR\r\n"));
    assert_eq!(m.iccid(), Err(AtError::Error));
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    assert_eq!(m.iccid().unwrap().as_str(), "8934071100270000000");
    let st = m.stats();
    assert_eq!((st.timeouts, st.reboots_detected, st.recoveries), (0, 0, 0));
    b.done();
}

#[test]
fn fm18_wrong_baud_after_persistent_ipr() {
    let b = Bench::new();
    let mut m = b.bare(ModemConfig::new(Family::R4));
    // At 115200 the modem (left at 460800) answers garbage.
    b.push([
        Step::Baud(115_200),
        tx("AT\r\n"),
        rx("\u{fe}\u{80}\u{0}x\u{f8}"),
        tx("AT\r\n"),
        rx("\u{f0}\u{0f}"),
    ]);
    b.push([Step::Baud(460_800), tx("AT\r\n"), rx("\r\nOK\r\n")]);
    b.push([
        tx("AT+IPR=115200\r\n"),
        rx("\r\nOK\r\n"),
        Step::Baud(115_200),
    ]);
    b.push([tx("AT\r\n"), rx("\r\nOK\r\n")]);
    let script = b.script.clone();
    let r = m.probe_baud(&[115_200, 460_800], |_uart, rate| script.set_baud(rate));
    assert_eq!(r, Ok(460_800));
    assert_eq!(m.config().baud, 115_200);
    b.push(ok("AT\r\n"));
    b.push(init_steps(Family::R4));
    m.power_on().unwrap();
    b.done();
}

#[test]
fn fm19_line_longer_than_buffer() {
    let (b, mut m) = booted(Family::R4);
    let long = format!(
        "+CGDCONT: 1,\"IPV4V6\",\"{}\",\"0.0.0.0\",0,0,0,2,0,0,0,0,0,0,0",
        "a".repeat(300)
    );
    b.push(at(
        "AT+CCID\r\n",
        format!("\r\n{long}\r\n\r\n+CCID: 8934071100270000000\r\n\r\nOK\r\n"),
    ));
    // Not the command's line: its own answer arrived, so it succeeds (issue 8 item 1).
    assert_eq!(m.iccid().unwrap().as_str(), "8934071100270000000");
    // Its own answer too long: lost, said so, and the engine is in sync for the next one.
    b.push(at(
        "AT+CCID\r\n",
        format!("\r\n+CCID: {}\r\n\r\nOK\r\n", "8".repeat(300)),
    ));
    assert_eq!(m.iccid(), Err(AtError::LineTooLong));
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    assert!(m.iccid().is_ok());
    // An endless line (no terminator) of garbage: the command times out, no panic, and
    // after resync the engine works.
    b.push([tx("AT+CIMI\r\n"), rx("x".repeat(5_000))]);
    assert_eq!(m.imsi(), Err(AtError::Timeout));
    b.push([tx("AT\r\n"), rx("\r\nOK\r\n")]);
    b.push(at("AT+CIMI\r\n", info_ok("240071234567890")));
    assert_eq!(m.imsi().unwrap().as_str(), "240071234567890");
    // The unterminated line never completed, so only the first two count as too long.
    assert_eq!(m.stats().lines_too_long, 2);
    b.done();
}

#[test]
fn fm20_pdp_result_only_as_urc() {
    let setup = |b: &Bench| {
        b.push(ok("AT+CGATT=1\r\n"));
        b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,0")));
        b.push(ok("AT+UPSD=0,1,\"apn\"\r\n"));
        b.push(ok("AT+UPSD=0,7,\"0.0.0.0\"\r\n"));
        b.push(ok("AT+UPSD=0,6,0\r\n"));
        b.push(ok("AT+UPSDA=0,3\r\n"));
    };
    // The result arrives only as a URC, 4 s after OK.
    let (b, mut m) = booted(Family::U2);
    setup(&b);
    b.push([rx_after(4_000, "\r\n+UUPSDA: 0,\"10.174.88.81\"\r\n")]);
    b.push(at(
        "AT+UPSND=0,0\r\n",
        info_ok("+UPSND: 0,0,\"10.174.88.81\""),
    ));
    assert_eq!(
        m.activate_data(&modem_ublox::Apn::new("apn"), 60_000),
        Ok(Ipv4Addr::new(10, 174, 88, 81))
    );
    b.done();
    // The URC is lost: after 5 s the driver asks.
    let (b, mut m) = booted(Family::G3);
    setup(&b);
    b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,1")));
    b.push(at(
        "AT+UPSND=0,0\r\n",
        info_ok("+UPSND: 0,0,\"10.174.88.82\""),
    ));
    assert_eq!(
        m.activate_data(&modem_ublox::Apn::new("apn"), 60_000),
        Ok(Ipv4Addr::new(10, 174, 88, 82))
    );
    b.done();
    // The URC reports failure.
    let (b, mut m) = booted(Family::U2);
    setup(&b);
    b.push([rx_after(1_000, "\r\n+UUPSDA: 149\r\n")]);
    assert_eq!(
        m.activate_data(&modem_ublox::Apn::new("apn"), 60_000),
        Err(DataError::Rejected(149))
    );
    b.done();
}

#[test]
fn recovery_deaf_modem_is_reset_and_sockets_invalidated() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    // Deaf: a command times out (1st), the resynchronising AT too (2nd): RESET_N, boot, init.
    b.push([tx("AT+CCID\r\n")]);
    assert_eq!(m.iccid(), Err(AtError::Timeout));
    b.push([tx("AT\r\n")]);
    b.push([tx("AT\r\n"), rx_after(400, "AT\r\r\nOK\r\n")]);
    b.push(init_steps(Family::U2));
    assert_eq!(m.send(s, b"x"), Err(SocketError::Invalidated));
    assert_eq!(m.stats().recoveries, 1);
    let r = b.script.pulses("RESET_N");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, 100 * MS);
    // Working again.
    let s2 = tcp(&b, &mut m, 0);
    assert_ne!(s, s2);
    b.done();
    // recover() on a live modem only probes.
    b.push(ok("AT\r\n"));
    assert_eq!(m.recover(), Ok(modem_ublox::Recovery::Alive));
    b.done();
}

/// A modem that never stops talking (0x00 on a dead line, a URC loop): every operation still
/// returns within its time bound, counted on the driver's own clock, plus the documented
/// drain allowance (input still arriving at a wait's deadline is taken in for at most 100 ms
/// more) and a few ms of wire time (the command line, the last 32-byte read of each wait).
/// The flood panics after 5 MB (over 7 minutes of wire time at 115200 baud), so a hang fails
/// the test instead of blocking it.
#[test]
fn endless_input_never_hangs_poll_commands_wait_readable_or_register() {
    const DRAIN_MS: u64 = 100;
    const SLACK_MS: u64 = 10;
    const LIMIT: u64 = 5_000_000;
    for pattern in [&b"\0"[..], b"\r\n+CIEV: 1,1\r\n"] {
        let name = esc(pattern);
        // Each operation on a fresh modem, so that one's timeout does not start the next
        // one's resynchronisation.
        let run =
            |what: &str, bound_ms: u64, drains: u64, op: &dyn Fn(&mut FullModem, SocketId)| {
                let budget_ms = bound_ms + drains * DRAIN_MS;
                let (b, mut m) = booted(Family::U2);
                let s = tcp(&b, &mut m, 0);
                b.done();
                b.script.flood(pattern, LIMIT);
                let t0 = m.time_spent_ms();
                op(&mut m, s);
                let spent = m.time_spent_ms() - t0;
                assert!(
                    spent <= budget_ms + SLACK_MS,
                    "{what} with endless \"{name}\": {spent} ms for a bound of {budget_ms} ms"
                );
                assert!(
                    b.script.flood_served() > 0,
                    "{what}: the flood was never read"
                );
            };
        run("poll(0)", 0, 1, &|m, _| {
            m.poll(0).unwrap();
        });
        run("poll(300)", 300, 1, &|m, _| {
            m.poll(300).unwrap();
        });
        // A command: its own timeout (AT+CCID, 10 s), after draining what arrived before it.
        run("iccid()", 10_000, 1, &|m, _| {
            assert_eq!(m.iccid(), Err(AtError::Timeout));
        });
        // wait_readable: its timeout, then one AT+USORD=0,0 within the read timeout (10 s).
        run("wait_readable(1000)", 1_000 + 10_000, 2, &|m, s| {
            assert_eq!(
                m.wait_readable(s, 1_000),
                Err(SocketError::At(AtError::Timeout))
            );
        });
        // register: the budget, and the drain before its first command.
        run("register(3000)", 3_000, 1, &|m, _| {
            assert!(m.register(&Registration::new(3_000)).is_err());
        });
    }
}
