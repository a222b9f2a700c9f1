//! With the `log` feature the driver logs what a field engineer needs (link recoveries,
//! command errors with their code, registration and data context changes, sockets closed by
//! the network), and never payload data. Run with `cargo test -p modem-ublox --features log`.
#![cfg(feature = "log")]

mod common;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use modem_ublox::{Family, Protocol, SocketId};

thread_local! {
    /// The records logged by this thread (each test runs on its own thread).
    static RECORDS: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        RECORDS.with(|r| r.borrow_mut().push((record.level(), line)));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Installs the capturing logger (once per test binary) and empties this thread's records.
fn capture() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    RECORDS.with(|r| r.borrow_mut().clear());
}

/// This thread's records so far, taken.
fn records() -> Vec<(log::Level, String)> {
    RECORDS.with(|r| r.borrow_mut().drain(..).collect())
}

/// Some record at `level` contains every one of `words`.
fn logged(records: &[(log::Level, String)], level: log::Level, words: &[&str]) -> bool {
    records
        .iter()
        .any(|(l, m)| *l == level && words.iter().all(|w| m.contains(w)))
}

fn tcp(b: &Bench, m: &mut FullModem, h: u8) -> SocketId {
    b.push(at("AT+USOCR=6\r\n", info_ok(format!("+USOCR: {h}"))));
    b.push(ok(format!("AT+USOCO={h},\"52.1.2.3\",5684\r\n")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    m.connect(
        s,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(52, 1, 2, 3)), 5684),
    )
    .unwrap();
    s
}

#[test]
fn a_command_error_is_logged_with_its_code() {
    let (b, mut m) = booted(Family::U2);
    capture();
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: 10\r\n"));
    assert!(m.wait_sim_ready(10_000).is_err());
    let r = records();
    assert!(logged(&r, log::Level::Warn, &["+CME ERROR", "10"]), "{r:?}");
    b.done();
}

#[test]
fn network_side_changes_are_logged() {
    let (b, mut m) = booted(Family::U2);
    b.push(ok("AT+CGATT=1\r\n"));
    b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,1")));
    b.push(at("AT+UPSND=0,0\r\n", info_ok("+UPSND: 0,0,\"10.0.0.7\"")));
    m.activate_data(&modem_ublox::Apn::new("apn"), 60_000)
        .unwrap();
    let _s = tcp(&b, &mut m, 0);
    b.push([rx("\r\n+CGREG: 1\r\n")]);
    m.poll(0).unwrap();
    capture();
    b.push([rx(
        "\r\n+CGEV: NW DETACH\r\n\r\n+UUPSDD: 0\r\n\r\n+CGREG: 0\r\n\r\n+UUSOCL: 0\r\n",
    )]);
    m.poll(0).unwrap();
    let r = records();
    assert!(logged(&r, log::Level::Info, &["detach"]), "{r:?}");
    assert!(
        logged(&r, log::Level::Info, &["context", "deactivated"]),
        "{r:?}"
    );
    assert!(
        logged(
            &r,
            log::Level::Info,
            &["registration", "Ps", "NotRegistered"]
        ),
        "{r:?}"
    );
    assert!(
        logged(&r, log::Level::Info, &["socket 0", "closed"]),
        "{r:?}"
    );
    b.done();
}

#[test]
fn a_reboot_is_logged_with_the_reinitialisation_and_the_sweep() {
    let (b, mut m) = booted(Family::U2);
    capture();
    b.push(at(
        "AT+USOCR=6\r\n",
        "AT+USOCR=6\r\r\n+USOCR: 0\r\n\r\nOK\r\n",
    ));
    b.push(init_steps(Family::U2));
    assert!(m.open_socket(Protocol::Tcp).is_err());
    b.push(at("AT+USOCTL=0,0\r\n", info_ok("+USOCTL: 0,0,6")));
    b.push(ok("AT+USOCL=0\r\n"));
    for h in 1..7 {
        b.push(at(format!("AT+USOCTL={h},0\r\n"), "\r\n+CME ERROR: 3\r\n"));
        b.push(at(format!("AT+USOCL={h}\r\n"), "\r\n+CME ERROR: 3\r\n"));
    }
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    m.open_socket(Protocol::Tcp).unwrap();
    let r = records();
    assert!(logged(&r, log::Level::Warn, &["reboot", "echo"]), "{r:?}");
    assert!(logged(&r, log::Level::Warn, &["re-initialis"]), "{r:?}");
    assert!(logged(&r, log::Level::Info, &["swept", "1"]), "{r:?}");
    b.done();
}

#[test]
fn a_resync_is_logged_and_payload_never_is() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    b.push([rx("\r\n+UUSORD: 0,10\r\n")]);
    m.poll(0).unwrap();
    capture();
    b.push([
        tx("AT+USORD=0,10\r\n"),
        rx("\r\n+USORD: 0,10,\"abc"),
        rx_error(1),
        rx_late(5, "hij\"\r\n\r\nOK\r\n"),
    ]);
    let mut buf = [0u8; 10];
    assert!(m.receive(s, &mut buf).is_err());
    b.push([tx("AT\r\n"), rx_after(10, "\r\nOK\r\n")]);
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    m.iccid().unwrap();
    let r = records();
    assert!(logged(&r, log::Level::Warn, &["UART"]), "{r:?}");
    assert!(logged(&r, log::Level::Info, &["resynchronised"]), "{r:?}");
    for (_, line) in &r {
        for secret in ["abc", "hij", "8934071100270000000"] {
            assert!(!line.contains(secret), "payload in a record: {line}");
        }
    }
    b.done();
}
