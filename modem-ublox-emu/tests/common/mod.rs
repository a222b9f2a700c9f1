//! Helpers shared by the emulator's behaviour tests.
#![allow(dead_code)]

use std::time::Duration;

use embedded_io::{Read, ReadReady, Write};
use modem_ublox_emu::{Emulator, Model, Uart};

/// A powered, booted module and its UART.
pub fn on(model: Model) -> (Emulator, Uart) {
    let emu = Emulator::new(model);
    emu.power_on_now();
    let uart = emu.uart();
    (emu, uart)
}

/// Everything due now, without advancing the clock.
pub fn drain(uart: &mut Uart) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while uart.read_ready().unwrap() {
        let n = uart.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Writes `bytes`, lets `wait` of virtual time pass, returns what came back.
pub fn tx(emu: &Emulator, uart: &mut Uart, bytes: &[u8], wait: Duration) -> Vec<u8> {
    uart.write_all(bytes).unwrap();
    emu.advance(wait);
    drain(uart)
}

/// True when `b` ends with a final result code or the `@` prompt.
pub fn ends_final(b: &[u8]) -> bool {
    if b.ends_with(b"\r\nOK\r\n")
        || b.ends_with(b"\r\nERROR\r\n")
        || b.ends_with(b"\r\nABORTED\r\n")
        || b.ends_with(b"\r\n@")
    {
        return true;
    }
    // "\r\n+CME ERROR: ...\r\n" as the last line.
    if b.ends_with(b"\r\n") && b.len() >= 4 {
        let body = &b[..b.len() - 2];
        if let Some(start) = body.windows(2).rposition(|w| w == b"\r\n") {
            return body[start + 2..].starts_with(b"+CME ERROR: ");
        }
    }
    false
}

/// Writes a command and steps the clock 1 ms at a time until its final
/// result code (or `@`) has arrived, then 20 ms more for what follows at
/// once. Gives up after 200 s of virtual time.
pub fn at(emu: &Emulator, uart: &mut Uart, cmd: &str) -> Vec<u8> {
    uart.write_all(cmd.as_bytes()).unwrap();
    let mut out = drain(uart);
    for _ in 0..200_000 {
        if ends_final(&out) {
            break;
        }
        emu.advance(Duration::from_millis(1));
        out.extend(drain(uart));
    }
    emu.advance(Duration::from_millis(20));
    out.extend(drain(uart));
    out
}

/// Lets time pass and returns what came.
pub fn wait(emu: &Emulator, uart: &mut Uart, d: Duration) -> Vec<u8> {
    emu.advance(d);
    drain(uart)
}

/// Shows bytes readably in assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Asserts byte equality with a readable message.
#[track_caller]
pub fn eq(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "\n got: \"{}\"\nwant: \"{}\"",
        show(got),
        show(want)
    );
}

/// A module that is on, echo off, CMEE as given, registered (and for U2/G3
/// with the data context active), ready for socket tests.
pub fn online(model: Model, cmee: u8) -> (Emulator, Uart) {
    let (emu, mut uart) = on(model);
    at(&emu, &mut uart, "ATE0\r\n");
    at(&emu, &mut uart, &format!("AT+CMEE={cmee}\r\n"));
    wait(&emu, &mut uart, Duration::from_secs(5));
    if model.has_upsd() && !model.is_lte() {
        let r = tx(&emu, &mut uart, b"AT+UPSDA=0,3\r\n", Duration::from_secs(3));
        assert!(r.starts_with(b"\r\nOK\r\n"), "{}", show(&r));
    }
    (emu, uart)
}
