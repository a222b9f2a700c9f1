//! One test (at least) per fault kind (research section 6).

mod common;

use std::time::Duration;

use common::*;
use embedded_io::{Read, ReadReady, Write};
use modem_ublox_emu::{
    Action, Emulator, EmulatorConfig, ErrorReply, Fault, Model, Position, RegStat, StaleSocket,
    Trigger, Violation,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn drop_response() {
    let (emu, mut u) = on(Model::SaraU260);
    at(&emu, &mut u, "ATE0\r\n");
    emu.add_fault(Fault::new(Trigger::nth("AT+CIMI", 1), Action::DropResponse));
    eq(&tx(&emu, &mut u, b"AT+CIMI\r\n", ms(5000)), b"");
    eq(
        &at(&emu, &mut u, "AT+CIMI\r\n"),
        b"\r\n240071234567890\r\n\r\nOK\r\n",
    );
    assert_eq!(emu.fired().len(), 1);
}

#[test]
fn delay_response_then_late_cme_error() {
    let (emu, mut u) = online(Model::SaraU260, 2);
    at(&emu, &mut u, "AT+USOCR=6\r\n");
    // research 6.6: CME on USOCO after > 120 s.
    emu.add_fault(Fault::new(
        Trigger::nth("AT+USOCO", 1),
        Action::DelayResponse(Duration::from_secs(130)),
    ));
    emu.add_fault(Fault::new(
        Trigger::nth("AT+USOCO", 1),
        Action::Fail(ErrorReply::Cme(3)),
    ));
    let t0 = emu.now();
    eq(
        &tx(
            &emu,
            &mut u,
            b"AT+USOCO=0,\"127.0.0.1\",9\r\n",
            Duration::from_secs(120),
        ),
        b"",
    );
    eq(
        &wait(&emu, &mut u, Duration::from_secs(11)),
        b"\r\n+CME ERROR: Operation not allowed\r\n",
    );
    assert!(emu.now() - t0 >= 130_000_000);
}

#[test]
fn fail_forms_follow_cmee() {
    let (emu, mut u) = on(Model::SaraR410M);
    at(&emu, &mut u, "ATE0\r\n");
    emu.add_fault(Fault::new(
        Trigger::every("AT+CCID"),
        Action::Fail(ErrorReply::Cme(13)),
    ));
    eq(&at(&emu, &mut u, "AT+CCID\r\n"), b"\r\nERROR\r\n");
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    eq(&at(&emu, &mut u, "AT+CCID\r\n"), b"\r\n+CME ERROR: 13\r\n");
    at(&emu, &mut u, "AT+CMEE=2\r\n");
    eq(
        &at(&emu, &mut u, "AT+CCID\r\n"),
        b"\r\n+CME ERROR: SIM failure\r\n",
    );
    emu.add_fault(Fault::new(
        Trigger::nth("AT+CGMM", 1),
        Action::Fail(ErrorReply::Error),
    ));
    eq(&at(&emu, &mut u, "AT+CGMM\r\n"), b"\r\nERROR\r\n");
    emu.add_fault(Fault::new(
        Trigger::nth("AT+CGMM", 1),
        Action::Fail(ErrorReply::Aborted),
    ));
    eq(&at(&emu, &mut u, "AT+CGMM\r\n"), b"\r\nABORTED\r\n");
    eq(
        &at(&emu, &mut u, "AT+CGMM\r\n"),
        b"\r\nSARA-R410M-02B\r\n\r\nOK\r\n",
    );
}

#[test]
fn inject_at_every_position() {
    let cases: [(Position, &[u8]); 4] = [
        (
            Position::BeforeEcho,
            b"\r\n+CREG: 5\r\nAT+CGMM\r\r\nSARA-U260\r\n\r\nOK\r\n",
        ),
        (
            Position::AfterEcho,
            b"AT+CGMM\r\r\n+CREG: 5\r\n\r\nSARA-U260\r\n\r\nOK\r\n",
        ),
        (
            Position::BeforeFinal,
            b"AT+CGMM\r\r\nSARA-U260\r\n\r\n+CREG: 5\r\n\r\nOK\r\n",
        ),
        (
            Position::AfterFinal,
            b"AT+CGMM\r\r\nSARA-U260\r\n\r\nOK\r\n\r\n+CREG: 5\r\n",
        ),
    ];
    for (pos, want) in cases {
        let (emu, mut u) = on(Model::SaraU260);
        emu.add_fault(Fault::new(
            Trigger::nth("AT+CGMM", 1),
            Action::urc("+CREG: 5", pos),
        ));
        let got = tx(&emu, &mut u, b"AT+CGMM\r\n", ms(500));
        eq(&got, want);
        assert_eq!(emu.stats().urcs, 1);
    }
}

#[test]
fn inject_around_a_usord_payload_never_inside() {
    let mut cfg = EmulatorConfig::for_model(Model::SaraU201);
    cfg.stale_sockets = vec![StaleSocket { id: 0, protocol: 6 }];
    let emu = Emulator::with_config(Model::SaraU201, cfg);
    emu.power_on_now();
    let mut u = emu.uart();
    at(&emu, &mut u, "ATE0\r\n");
    emu.add_fault(Fault::new(
        Trigger::nth("AT+USORD", 1),
        Action::urc("+UUSORD: 0,3", Position::AfterEcho),
    ));
    emu.add_fault(Fault::new(
        Trigger::nth("AT+USORD", 1),
        Action::urc("+UUSOCL: 0", Position::BeforeFinal),
    ));
    eq(
        &at(&emu, &mut u, "AT+USORD=0,16\r\n"),
        b"\r\n+UUSORD: 0,3\r\n\r\n+USORD: 0,0,\"\"\r\n\r\n+UUSOCL: 0\r\n\r\nOK\r\n",
    );
}

#[test]
fn inject_at_a_time_and_garbage() {
    let (emu, mut u) = on(Model::SaraU260);
    emu.add_fault(Fault::new(
        Trigger::at_ms(100),
        Action::Inject {
            bytes: b"\xff\x00garbage".to_vec(),
            position: Position::AfterFinal,
        },
    ));
    eq(&wait(&emu, &mut u, ms(99)), b"");
    eq(&wait(&emu, &mut u, ms(10)), b"\xff\x00garbage");
}

#[test]
fn overlong_line() {
    let (emu, mut u) = on(Model::SaraR410M);
    at(&emu, &mut u, "ATE0\r\n");
    emu.add_fault(Fault::new(
        Trigger::nth("AT+CGDCONT?", 1),
        Action::LongLine(3000),
    ));
    let r = at(&emu, &mut u, "AT+CGDCONT?\r\n");
    let first = r[2..].split(|&b| b == b'\r').next().unwrap();
    assert_eq!(first.len(), 3000);
    assert!(first.starts_with(b"+LONGLINE: \"xxx"));
    eq(
        &r[2 + 3000..],
        b"\r\n\r\n+CGDCONT: 1,\"IP\",\"\",\"0.0.0.0\",0,0,0,2,0,0,0,0,0,0,0\r\n\r\nOK\r\n",
    );
}

#[test]
fn socket_error_plain_and_r410_extra_crlf() {
    let (emu, mut u) = online(Model::SaraR410M, 1);
    at(&emu, &mut u, "AT+USOCR=17\r\n");
    emu.add_fault(Fault::new(
        Trigger::nth("AT+USOST", 1),
        Action::SocketError {
            usoer: 172,
            plain: true,
        },
    ));
    eq(
        &at(&emu, &mut u, "AT+USOST=0,\"192.0.2.1\",9,2,\"hi\"\r\n"),
        b"\r\nERROR\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOER\r\n"),
        b"\r\n+USOER: 172\r\n\r\nOK\r\n",
    );
    // research 2.1: R410 adds a CRLF after a +CME ERROR that follows +USOST.
    emu.add_fault(Fault::new(
        Trigger::nth("AT+USOST", 1),
        Action::SocketError {
            usoer: 11,
            plain: false,
        },
    ));
    eq(
        &tx(
            &emu,
            &mut u,
            b"AT+USOST=0,\"192.0.2.1\",9,2,\"hi\"\r\n",
            ms(100),
        ),
        b"\r\n+CME ERROR: 3\r\n\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOER\r\n"),
        b"\r\n+USOER: 11\r\n\r\nOK\r\n",
    );
}

#[test]
fn partial_write_count() {
    let (emu, mut u) = online(Model::SaraR410M, 1);
    at(&emu, &mut u, "AT+USOCR=17\r\n");
    emu.add_fault(Fault::new(
        Trigger::nth("AT+USOST", 1),
        Action::PartialWrite(3),
    ));
    eq(
        &at(&emu, &mut u, "AT+USOST=0,\"192.0.2.1\",9,5\r\n"),
        b"\r\n@",
    );
    emu.advance(ms(50));
    u.write_all(b"hello").unwrap();
    eq(
        &wait(&emu, &mut u, ms(200)),
        b"\r\n+USOST: 0,3\r\n\r\nOK\r\n",
    );
}

#[test]
fn reboot_cuts_output_after_exactly_n_bytes() {
    let (emu, mut u) = on(Model::SaraU260);
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CMEE=2\r\n");
    let sent = emu.sent_bytes().len() as u64;
    // 7 bytes into "\r\nSARA-U260\r\n\r\nOK\r\n".
    emu.add_fault(Fault::new(
        Trigger::AfterOutputBytes(sent + 7),
        Action::Reboot {
            garbage: vec![0, 0],
        },
    ));
    let got = tx(&emu, &mut u, b"AT+CGMM\r\n", ms(500));
    eq(&got, b"\r\nSARA-\0\0");
    eq(&tx(&emu, &mut u, b"AT\r\n", ms(100)), b"");
    wait(&emu, &mut u, Duration::from_secs(5));
    eq(
        &at(&emu, &mut u, "AT+CMEE?\r\n"),
        b"AT+CMEE?\r\r\n+CMEE: 0\r\n\r\nOK\r\n",
    );
}

#[test]
fn power_loss() {
    use embedded_hal::digital::InputPin;
    let (emu, mut u) = on(Model::SaraG350);
    emu.add_fault(Fault::new(Trigger::at_ms(10), Action::PowerLoss));
    emu.advance(ms(20));
    assert!(emu.vint().is_low().unwrap());
    eq(&tx(&emu, &mut u, b"AT\r\n", Duration::from_secs(10)), b"");
}

#[test]
fn sticky_registration_states() {
    let (emu, mut u) = on(Model::SaraU260);
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    at(&emu, &mut u, "AT+CREG=1\r\n");
    emu.add_fault(Fault::new(
        Trigger::at_ms(500),
        Action::Registration(RegStat::Denied),
    ));
    let out = wait(&emu, &mut u, Duration::from_secs(10));
    eq(&out, b"\r\n+CREG: 3\r\n");
    eq(
        &at(&emu, &mut u, "AT+CGATT=1\r\n"),
        b"\r\n+CME ERROR: 107\r\n",
    );
    // Interventions do not help while it sticks (research 6.14).
    at(&emu, &mut u, "AT+COPS=0\r\n");
    wait(&emu, &mut u, Duration::from_secs(10));
    assert_eq!(emu.registration().0, RegStat::Denied);
    let now = emu.now() / 1000;
    emu.add_fault(Fault::new(
        Trigger::at_ms(now + 1),
        Action::Registration(RegStat::NotSearching),
    ));
    eq(&wait(&emu, &mut u, ms(10)), b"\r\n+CREG: 0\r\n");
    emu.add_fault(Fault::new(
        Trigger::at_ms(now + 20),
        Action::ReleaseRegistration,
    ));
    eq(&wait(&emu, &mut u, ms(30)), b"\r\n+CREG: 2\r\n");
    eq(
        &wait(&emu, &mut u, Duration::from_secs(3)),
        b"\r\n+CREG: 1\r\n",
    );
}

#[test]
fn short_reads_with_gaps() {
    let (emu, mut u) = on(Model::SaraU260);
    emu.add_fault(Fault::new(
        Trigger::at_ms(0),
        Action::ShortReads { max: 3, gap: ms(2) },
    ));
    u.write_all(b"AT\r\n").unwrap();
    emu.advance(ms(100));
    let mut buf = [0u8; 64];
    assert_eq!(u.read(&mut buf).unwrap(), 3);
    assert!(!u.read_ready().unwrap(), "held back right after a read");
    let t = emu.now();
    // A blocking read waits out the gap.
    assert_eq!(u.read(&mut buf).unwrap(), 3);
    assert_eq!(emu.now() - t, 2000);
    emu.add_fault(Fault::new(
        Trigger::at_ms(emu.now() / 1000),
        Action::ShortReads {
            max: usize::MAX,
            gap: Duration::ZERO,
        },
    ));
    emu.advance(ms(5));
    assert_eq!(u.read(&mut buf).unwrap(), 3); // "\r\nOK\r\n" has 3 left of 9
}

#[test]
fn short_writes() {
    let (emu, mut u) = on(Model::SaraU260);
    emu.add_fault(Fault::new(Trigger::at_ms(0), Action::ShortWrites(2)));
    emu.advance(ms(1));
    assert_eq!(u.write(b"AT\r\n").unwrap(), 2);
    assert_eq!(u.write(b"\r\n").unwrap(), 2);
    eq(&wait(&emu, &mut u, ms(100)), b"AT\r\r\nOK\r\n");
}

#[test]
fn lose_next_char_and_upsv_idle() {
    let (emu, mut u) = on(Model::SaraU201);
    emu.add_fault(Fault::new(Trigger::at_ms(0), Action::LoseNextChar));
    emu.advance(ms(1));
    // 'A' is lost: "T" is echoed, no command, no answer.
    eq(&tx(&emu, &mut u, b"AT\r\n", ms(100)), b"T\r");
    eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
    at(&emu, &mut u, "ATE0\r\n");
    eq(&at(&emu, &mut u, "AT+UPSV=1\r\n"), b"\r\nOK\r\n");
    // Idle longer than 2000 GSM frames: the first character is lost (research 3.5).
    emu.advance(Duration::from_secs(10));
    eq(&tx(&emu, &mut u, b"AT\r\n", ms(100)), b"");
    eq(&at(&emu, &mut u, "AT\r\n"), b"\r\nOK\r\n");
}

#[test]
fn stale_sockets_from_a_previous_run() {
    let mut cfg = EmulatorConfig::for_model(Model::SaraU260);
    cfg.stale_sockets = vec![
        StaleSocket { id: 0, protocol: 6 },
        StaleSocket {
            id: 1,
            protocol: 17,
        },
    ];
    let emu = Emulator::with_config(Model::SaraU260, cfg);
    emu.power_on_now();
    let mut u = emu.uart();
    at(&emu, &mut u, "ATE0\r\n");
    eq(
        &at(&emu, &mut u, "AT+USOCTL=0,0\r\n"),
        b"\r\n+USOCTL: 0,0,6\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOCTL=1,0\r\n"),
        b"\r\n+USOCTL: 1,0,17\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOCR=6\r\n"),
        b"\r\n+USOCR: 2\r\n\r\nOK\r\n",
    );
    eq(&at(&emu, &mut u, "AT+USOCL=0\r\n"), b"\r\nOK\r\n");
    eq(
        &at(&emu, &mut u, "AT+USOCR=6\r\n"),
        b"\r\n+USOCR: 0\r\n\r\nOK\r\n",
    );
}

#[test]
fn a_character_aborts_an_abortable_command() {
    let (emu, mut u) = on(Model::SaraU260);
    at(&emu, &mut u, "ATE0\r\n");
    u.write_all(b"AT+COPS=2\r\n").unwrap();
    emu.advance(ms(100));
    u.write_all(b"X").unwrap();
    eq(&wait(&emu, &mut u, ms(50)), b"\r\nABORTED\r\n");
    // COPS=2 never happened.
    wait(&emu, &mut u, Duration::from_secs(5));
    eq(
        &at(&emu, &mut u, "AT+COPS?\r\n"),
        b"\r\n+COPS: 0,0,\"3 DK\",2\r\n\r\nOK\r\n",
    );
    assert!(emu.violations().is_empty());
}

#[test]
fn input_during_a_non_abortable_command_is_queued_and_reported() {
    let (emu, mut u) = on(Model::SaraU260);
    at(&emu, &mut u, "ATE0\r\n");
    u.write_all(b"AT+CIMI\r\nAT\r\n").unwrap();
    eq(
        &wait(&emu, &mut u, ms(200)),
        b"\r\n240071234567890\r\n\r\nOK\r\n\r\nOK\r\n",
    );
    assert!(matches!(
        emu.violations().as_slice(),
        [Violation::InputWhileBusy { command, .. }, ..] if command == "AT+CIMI"
    ));
}

#[test]
fn lose_a_urc() {
    let mut cfg = EmulatorConfig::for_model(Model::SaraU260);
    cfg.network.ps_extra_delay = Duration::ZERO;
    let emu = Emulator::with_config(Model::SaraU260, cfg);
    emu.power_on_now();
    let mut u = emu.uart();
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CREG=1\r\n");
    at(&emu, &mut u, "AT+CGREG=1\r\n");
    emu.add_fault(Fault::new(
        Trigger::at_ms(0),
        Action::LoseUrc("+CREG".into()),
    ));
    // The CREG URC of the registration is lost, the CGREG one is not.
    eq(
        &wait(&emu, &mut u, Duration::from_secs(3)),
        b"\r\n+CGREG: 1\r\n",
    );
    assert!(emu
        .transcript_string()
        .contains("URC lost (fault): +CREG: 1"));
}
