//! The UART handle, the virtual clock, baud rates, transcript, statistics
//! and violations.

mod common;

use std::time::Duration;

use common::*;
use embedded_hal::delay::DelayNs;
use embedded_io::{Error as _, ErrorKind, Read, ReadReady, Write};
use modem_ublox_emu::{Dir, Emulator, EmulatorConfig, Model, Record, Violation};

#[test]
fn read_with_nothing_scheduled_times_out_instead_of_hanging() {
    let emu = Emulator::new(Model::SaraU260);
    let mut u = emu.uart();
    let mut buf = [0u8; 8];
    let e = u.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(u.read(&mut []).unwrap(), 0);
    assert!(!u.read_ready().unwrap());
}

#[test]
fn blocking_read_advances_the_clock_to_the_next_byte() {
    let (emu, mut u) = on(Model::SaraU260);
    u.write_all(b"ATE0\r\n").unwrap();
    // 6 bytes at 115200 baud = 521 µs of wire time (10 bits per byte).
    assert_eq!(emu.now(), 521);
    let mut buf = [0u8; 64];
    // The echo of a line goes out when its CR arrives: not complete yet.
    assert!(!u.read_ready().unwrap());
    let mut got = Vec::new();
    while got.len() < 11 {
        let n = u.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    eq(&got, b"ATE0\r\r\nOK\r\n");
    // The OK came after the 5 ms command latency plus its own wire time.
    assert!(emu.now() > 5_000 && emu.now() < 7_000, "{}", emu.now());
    let e = u.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}

#[test]
fn bytes_arrive_one_wire_time_apart() {
    let (emu, mut u) = on(Model::SaraU260);
    at(&emu, &mut u, "ATE0\r\n");
    u.write_all(b"AT+CGMM\r\n").unwrap();
    let mut buf = [0u8; 64];
    let t0 = emu.now();
    let n = u.read(&mut buf).unwrap();
    assert_eq!(n, 1, "a blocking read returns as soon as one byte is there");
    let t1 = emu.now();
    assert_eq!(u.read(&mut buf).unwrap(), 1);
    let t2 = emu.now();
    assert!(t1 > t0);
    assert!((86..=88).contains(&(t2 - t1)), "{}", t2 - t1);
}

#[test]
fn delay_advances_virtual_time_only() {
    let emu = Emulator::new(Model::SaraG350);
    let mut d = emu.delay();
    let real = std::time::Instant::now();
    d.delay_ms(3_600_000); // one virtual hour
    d.delay_ns(400);
    d.delay_ns(600);
    assert_eq!(emu.now(), 3_600_000_001);
    // No socket open: no real sleeping (generous bound, not a timing assertion).
    assert!(real.elapsed() < Duration::from_secs(30));
}

#[test]
fn ipr_change_needs_the_mcu_to_follow() {
    let (emu, mut u) = on(Model::SaraR410M);
    at(&emu, &mut u, "ATE0\r\n");
    eq(&at(&emu, &mut u, "AT+IPR=9600\r\n"), b"\r\nOK\r\n");
    emu.advance(Duration::from_millis(200));
    // The MCU still talks at 115200: the module sees garbage and answers nothing.
    eq(
        &tx(&emu, &mut u, b"AT\r\n", Duration::from_millis(200)),
        b"",
    );
    u.set_baud(9600);
    eq(&at(&emu, &mut u, "AT\r\n"), b"\r\nOK\r\n");
    // research 2.3: IPR is persistent on R4; after a reboot it is still 9600.
    at(&emu, &mut u, "AT+CFUN=15\r\n");
    u.set_baud(115_200);
    emu.advance(Duration::from_secs(10));
    let garbled = drain(&mut u);
    assert_eq!(garbled.len(), 2);
    assert!(
        garbled.iter().all(|b| *b >= 0x80),
        "boot bytes arrive garbled"
    );
    // Echo is on again: the module echoes what it understood, garbage, and
    // never sees a command.
    let echo = tx(&emu, &mut u, b"AT\r\n", Duration::from_millis(200));
    assert_eq!(echo.len(), 4);
    assert!(echo.iter().all(|b| *b >= 0x80));
    // The garbage still sits in the module's line buffer; a CR flushes it.
    u.set_baud(9600);
    tx(&emu, &mut u, b"\r", Duration::from_millis(200));
    u.set_baud(9600);
    eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
}

#[test]
fn command_too_soon_after_ipr_is_reported() {
    let (emu, mut u) = on(Model::SaraG350);
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+IPR=115200\r\n");
    at(&emu, &mut u, "AT\r\n");
    assert!(matches!(
        emu.violations().as_slice(),
        [Violation::TooSoonAfterIpr { .. }]
    ));
}

#[test]
fn payload_timing_violations() {
    let (emu, mut u) = online(Model::SaraU260, 1);
    at(&emu, &mut u, "AT+USOCR=17\r\n");
    eq(
        &at(&emu, &mut u, "AT+USOST=0,\"192.0.2.1\",9,2\r\n"),
        b"\r\n@",
    );
    u.write_all(b"hi").unwrap();
    eq(
        &wait(&emu, &mut u, Duration::from_millis(100)),
        b"\r\n+USOST: 0,2\r\n\r\nOK\r\n",
    );
    assert!(matches!(
        emu.violations().as_slice(),
        [Violation::PayloadTooSoon { waited_us, .. }] if *waited_us < 50_000
    ));
}

#[test]
fn transcript_and_stats() {
    let (emu, mut u) = on(Model::SaraU260);
    let before = emu.stats();
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CGMM\r\n");
    let s = emu.stats().since(&before);
    assert_eq!(s.at_commands, 2);
    assert_eq!(s.per_command.get("E"), Some(&1));
    assert_eq!(s.per_command.get("+CGMM"), Some(&1));
    assert_eq!(s.to_modem.at, 15);
    // "ATE0\r" echo + OK + CGMM answer.
    assert_eq!(s.from_modem.at, (5 + 6 + 19) as u64);
    assert_eq!(s.from_modem.payload, 0);
    let t = emu.transcript();
    let sent: Vec<&Record> = t
        .iter()
        .filter(|r| {
            matches!(
                r,
                Record::Bytes {
                    dir: Dir::ToModem,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(sent.len(), 2);
    let text = emu.transcript_string();
    assert!(text.contains(">> \"AT+CGMM\\r\\n\""), "{text}");
    assert!(text.contains("<< \"\\r\\nSARA-U260\\r\\n\""), "{text}");
}

#[test]
fn runs_are_deterministic_without_sockets() {
    let run = || {
        let emu =
            Emulator::with_config(Model::SaraU260, EmulatorConfig::for_model(Model::SaraU260));
        let mut u = emu.uart();
        let mut pwr = emu.pwr_on();
        use embedded_hal::digital::OutputPin;
        pwr.set_low().unwrap();
        emu.delay().delay_us(60);
        pwr.set_high().unwrap();
        emu.advance(Duration::from_secs(5));
        for cmd in ["AT\r\n", "ATE0\r\n", "AT+CREG=2\r\n", "AT+CGREG=2\r\n"] {
            at(&emu, &mut u, cmd);
        }
        wait(&emu, &mut u, Duration::from_secs(5));
        at(&emu, &mut u, "AT+UPSDA=0,3\r\n");
        emu.transcript_string()
    };
    assert_eq!(run(), run());
}

#[test]
fn payload_sent_before_the_prompt_is_queued_and_reported() {
    let (emu, mut u) = online(Model::SaraU201, 1);
    at(&emu, &mut u, "AT+USOCR=17\r\n");
    u.write_all(b"AT+USOST=0,\"192.0.2.1\",9,2\r\nhi").unwrap();
    eq(
        &wait(&emu, &mut u, Duration::from_millis(100)),
        b"\r\n@\r\n+USOST: 0,2\r\n\r\nOK\r\n",
    );
    let v = emu.violations();
    assert!(matches!(v[0], Violation::InputWhileBusy { .. }), "{v:?}");
    assert!(
        matches!(v[2], Violation::PayloadBeforePrompt { .. }),
        "{v:?}"
    );
}
