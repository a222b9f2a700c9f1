//! Faults from the outside review (issue 8) against the strict scripted UART: over-long
//! unsolicited lines while a command runs, a UART error inside a binary read, a reboot
//! noticed inside `AT+USOCR`, a close or context loss inside a read, an answer longer than
//! asked, and what the driver says about a recovery it still owes.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use modem_ublox::{
    AtError, Family, ModemConfig, PendingRecovery, Protocol, Registration, RegistrationError,
    SimError, SocketError, SocketId,
};

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

/// An SMS delivered directly in PDU mode (3GPP TS 27.005 §3.4.1): `+CMT: ,<length>` and the
/// PDU on the next line, 2 hex digits per octet (159 octets and the SMSC address: 320
/// digits), longer than the default 256-byte line buffer.
fn sms_pdu() -> String {
    let mut pdu = String::from("07919730071111F1");
    while pdu.len() < 320 {
        pdu.push_str("0A");
    }
    pdu
}

fn cmt() -> String {
    format!("\r\n+CMT: ,159\r\n{}\r\n", sms_pdu())
}

/// Issue 8 item 1, worst case: the modem took the 5 bytes (`+USOWR: 0,5`, `OK`), an SMS
/// arrived in between. Reporting an error here makes a retrying caller send them twice.
#[test]
fn overlong_sms_inside_a_socket_write_keeps_its_result() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    b.push([
        tx("AT+USOWR=0,5\r\n"),
        rx("\r\n@"),
        tx("hello"),
        rx(format!("{}\r\n+USOWR: 0,5\r\n\r\nOK\r\n", cmt())),
    ]);
    assert_eq!(m.send(s, b"hello"), Ok(5));
    assert_eq!(
        m.stats().lines_too_long,
        1,
        "the PDU line was still counted"
    );
    // The PDU line is part of the URC, not an unknown line.
    assert_eq!(m.stats().unknown_lines, 0);
    b.done();
}

/// Issue 8 item 1: inside `AT+USOCR` the same used to lose socket 0 (created by the modem,
/// unknown to the driver).
#[test]
fn overlong_sms_inside_socket_create_keeps_the_socket() {
    let (b, mut m) = booted(Family::U2);
    b.push(at(
        "AT+USOCR=6\r\n",
        format!("{}\r\n+USOCR: 0\r\n\r\nOK\r\n", cmt()),
    ));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(s.handle(), 0);
    b.done();
}

/// Issue 8 item 1: the long line starts before the command (the pre-command drain takes its
/// beginning) and ends inside the command's wait. `imsi()` expects an unprefixed line, so the
/// PDU must not be mistaken for its answer either.
#[test]
fn overlong_line_spilling_from_the_drain_into_a_command_is_not_its_answer() {
    let (b, mut m) = booted(Family::U2);
    let all = cmt();
    let (head, tail) = all.split_at(120);
    b.push([rx(head)]);
    b.push([
        tx("AT+CIMI\r\n"),
        rx(format!(
            "{tail}{}",
            String::from_utf8(info_ok("240071234567890")).unwrap()
        )),
    ]);
    assert_eq!(m.imsi().unwrap().as_str(), "240071234567890");
    // A short PDU (digits only) must not be taken for the IMSI either.
    b.push([
        tx("AT+CIMI\r\n"),
        rx("\r\n+CMT: ,3\r\n0000001234\r\n\r\n240071234567890\r\n\r\nOK\r\n"),
    ]);
    assert_eq!(m.imsi().unwrap().as_str(), "240071234567890");
    b.done();
}

/// Issue 8 item 1: line noise longer than the buffer fails only the command whose own answer
/// it could have been.
#[test]
fn overlong_noise_fails_only_a_command_whose_answer_was_lost() {
    let (b, mut m) = booted(Family::R4);
    let noise = "~".repeat(300);
    b.push(at(
        "AT+CCID\r\n",
        format!("\r\n{noise}\r\n\r\n+CCID: 8934071100270000000\r\n\r\nOK\r\n"),
    ));
    assert_eq!(m.iccid().unwrap().as_str(), "8934071100270000000");
    // Its own answer line too long: lost, and said so.
    b.push(at(
        "AT+CCID\r\n",
        format!("\r\n+CCID: {}\r\n\r\nOK\r\n", "8".repeat(300)),
    ));
    assert_eq!(m.iccid(), Err(AtError::LineTooLong));
    // An unprefixed answer that did not come, and a line too long that may have been it.
    b.push(at(
        "AT+CIMI\r\n",
        format!("\r\n{}\r\n\r\nOK\r\n", "2".repeat(300)),
    ));
    assert_eq!(m.imsi(), Err(AtError::LineTooLong));
    // Commands that expect no line do not care.
    b.push(at("AT+CPSMS=0\r\n", format!("\r\n{noise}\r\n\r\nOK\r\n")));
    assert_eq!(m.set_psm(None), Ok(()));
    assert_eq!(m.stats().lines_too_long, 4);
    b.done();
}

/// Issue 8 item 2: a UART error inside a binary `+USORD` payload (bytes were lost). The rest
/// of the answer arrives after the call returned; the next command must not take the read's
/// `OK` for its own, nor have its answer swallowed as payload: the driver resynchronises.
#[test]
fn uart_error_inside_a_binary_read_resynchronises_before_the_next_command() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    b.push([rx("\r\n+UUSORD: 0,10\r\n")]);
    m.poll(0).unwrap();
    b.push([
        tx("AT+USORD=0,10\r\n"),
        rx("\r\n+USORD: 0,10,\"abc"),
        rx_error(1),
        rx_late(5, "hij\"\r\n\r\nOK\r\n"),
    ]);
    let mut buf = [0u8; 10];
    assert_eq!(
        m.receive(s, &mut buf),
        Err(SocketError::At(AtError::Uart(
            embedded_io::ErrorKind::Other
        )))
    );
    assert_eq!(m.needs_recovery(), Some(PendingRecovery::Resync));
    // The next command first probes with AT and drains the late rest.
    b.push([tx("AT\r\n"), rx_after(10, "\r\nOK\r\n")]);
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    assert_eq!(m.iccid().unwrap().as_str(), "8934071100270000000");
    assert_eq!(m.needs_recovery(), None);
    b.done();
}

/// Issue 8 item 3: the modem rebooted while idle; the driver notices it by the echo of
/// `AT+USOCR`, which the rebooted modem still carried out. Its socket 0 must be swept before
/// the next socket is created.
#[test]
fn reboot_noticed_inside_socket_create_sweeps_before_the_next_socket() {
    let (b, mut m) = booted(Family::U2);
    b.push(at(
        "AT+USOCR=6\r\n",
        "AT+USOCR=6\r\r\n+USOCR: 0\r\n\r\nOK\r\n",
    ));
    b.push(init_steps(Family::U2));
    assert_eq!(m.open_socket(Protocol::Tcp), Err(SocketError::Invalidated));
    assert_eq!(m.stats().reboots_detected, 1);
    b.push(at("AT+USOCTL=0,0\r\n", info_ok("+USOCTL: 0,0,6")));
    b.push(ok("AT+USOCL=0\r\n"));
    for h in 1..7 {
        b.push(at(format!("AT+USOCTL={h},0\r\n"), "\r\n+CME ERROR: 3\r\n"));
        b.push(at(format!("AT+USOCL={h}\r\n"), "\r\n+CME ERROR: 3\r\n"));
    }
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(s.handle(), 0);
    b.done();
}

/// Issue 8 item 4: `+UUSOCL` arrives inside a data read that the modem then refuses: the call
/// says `Closed` at once (not `Cme(3)` now and `Closed` on the next call).
#[test]
fn peer_close_inside_a_read_is_closed_at_once() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    b.push([rx("\r\n+UUSORD: 0,10\r\n")]);
    m.poll(0).unwrap();
    b.push(at(
        "AT+USORD=0,10\r\n",
        "\r\n+UUSOCL: 0\r\n\r\n+CME ERROR: 3\r\n",
    ));
    let mut buf = [0u8; 10];
    assert_eq!(m.receive(s, &mut buf), Err(SocketError::Closed));
    b.done();
}

/// Issue 8 item 4: the network drops the data context (`+UUPSDD`) inside a read.
#[test]
fn context_loss_inside_a_read_is_closed_at_once() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    b.push([rx("\r\n+UUSORD: 0,10\r\n")]);
    m.poll(0).unwrap();
    b.push(at(
        "AT+USORD=0,10\r\n",
        "\r\n+UUPSDD: 0\r\n\r\n+CME ERROR: 3\r\n",
    ));
    let mut buf = [0u8; 10];
    assert_eq!(m.receive(s, &mut buf), Err(SocketError::Closed));
    assert_eq!(m.send(s, b"x"), Err(SocketError::Closed));
    b.done();
}

/// Issue 8 item 4: a `+USORD` answer declaring more bytes than asked is a framing violation,
/// not data to truncate silently; the next read asks the modem what is left.
#[test]
fn read_answer_longer_than_asked_is_a_framing_error() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp(&b, &mut m, 0);
    b.push([rx("\r\n+UUSORD: 0,6\r\n")]);
    m.poll(0).unwrap();
    b.push(at(
        "AT+USORD=0,4\r\n",
        "\r\n+USORD: 0,6,\"abcdef\"\r\n\r\nOK\r\n",
    ));
    let mut buf = [0u8; 4];
    assert_eq!(
        m.receive(s, &mut buf),
        Err(SocketError::At(AtError::Unexpected))
    );
    b.push(at("AT+USORD=0,0\r\n", info_ok("+USORD: 0,0")));
    assert_eq!(m.receive(s, &mut buf), Ok(0));
    b.done();
}

/// Issue 8 item 8: the recovery a call would pay first is visible before the call.
#[test]
fn pending_recovery_is_visible_before_the_next_call() {
    let (b, mut m) = booted(Family::U2);
    assert_eq!(m.needs_recovery(), None);
    b.push([tx("AT+CCID\r\n")]);
    assert_eq!(m.iccid(), Err(AtError::Timeout));
    assert_eq!(m.needs_recovery(), Some(PendingRecovery::Resync));
    // recover() settles it: the modem answers.
    b.push(ok("AT\r\n"));
    assert_eq!(m.recover(), Ok(modem_ublox::Recovery::Alive));
    assert_eq!(m.needs_recovery(), None);
    b.done();

    // With max_timeouts = 1 one timeout means the next command restarts the modem.
    let b = Bench::new();
    b.script.set_vint(false);
    b.script
        .on_pulse(|pin, _w| (pin == "PWR_ON").then_some((100 * MS, true)));
    let mut cfg = ModemConfig::new(Family::U2);
    cfg.max_timeouts = 1;
    let mut m = b.modem(cfg);
    b.push([tx("AT\r\n"), rx_after(500, "AT\r\r\nOK\r\n")]);
    b.push(init_steps(Family::U2));
    m.power_on().unwrap();
    b.push([tx("AT+CCID\r\n")]);
    assert_eq!(m.iccid(), Err(AtError::Timeout));
    assert_eq!(m.needs_recovery(), Some(PendingRecovery::Restart));
    b.done();
}

/// Issue 8 item 8: inside a call with a budget (`wait_sim_ready`, `register`,
/// `activate_data`) the recovery an earlier timeout left is capped by that budget: the
/// resynchronising probe ends with the budget, and a restart (~20 s) is never started there
/// but left to `needs_recovery()` / `recover()`.
#[test]
fn budgeted_calls_cap_recovery_by_their_budget() {
    let (b, mut m) = booted(Family::U2);
    b.push([tx("AT+CCID\r\n")]);
    assert_eq!(m.iccid(), Err(AtError::Timeout));
    // A budget shorter than a probe: the probe is cut at the budget's end and not counted.
    b.push([tx("AT\r\n")]);
    let t0 = m.time_spent_ms();
    assert_eq!(m.wait_sim_ready(300), Err(SimError::NotReady));
    let spent = m.time_spent_ms() - t0;
    assert!(spent <= 305, "{spent} ms for a 300 ms budget");
    assert_eq!(m.needs_recovery(), Some(PendingRecovery::Resync));
    // Room for the probe; it goes unanswered, which makes a restart due (max_timeouts = 2):
    // not inside the budget.
    b.push([tx("AT\r\n")]);
    let t0 = m.time_spent_ms();
    assert_eq!(
        m.register(&Registration::new(30_000)),
        Err(RegistrationError::At(AtError::Timeout))
    );
    let spent = m.time_spent_ms() - t0;
    assert!(spent <= 1_005, "{spent} ms: only the probe");
    assert!(b.script.pulses("RESET_N").is_empty());
    assert_eq!(m.needs_recovery(), Some(PendingRecovery::Restart));
    b.done();
    // The application runs it when it chooses.
    b.push([tx("AT\r\n"), tx("AT\r\n"), tx("AT\r\n")]);
    b.push([tx("AT\r\n"), rx_after(400, "AT\r\r\nOK\r\n")]);
    b.push(init_steps(Family::U2));
    assert_eq!(m.recover(), Ok(modem_ublox::Recovery::Restarted));
    assert_eq!(b.script.pulses("RESET_N").len(), 1);
    assert_eq!(m.needs_recovery(), None);
    b.done();
}
