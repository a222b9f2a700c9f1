//! Issue 8 item 7: the raw command escape hatch and the commands battery devices need, each
//! against a transcript written from the u-blox AT manual's syntax (research notes §3), and
//! every parser fed arbitrary answers (no panic, a typed error).

mod common;

use common::*;
use modem_ublox::{AtError, Family, RegStatus};
use proptest::prelude::*;

#[test]
fn command_passes_answer_lines_and_keeps_urcs() {
    let (b, mut m) = booted(Family::U2);
    // A registration URC and a socket URC for an unknown handle arrive inside the answer:
    // the engine applies them, the caller sees only the answer's lines.
    b.push(at(
        "AT+CGSN\r\n",
        "\r\n+CGREG: 1\r\n\r\n356726108877321\r\n\r\n+CIEV: 2,3\r\n\r\nOK\r\n",
    ));
    let mut lines = Vec::new();
    m.command("AT+CGSN", 1_000, |l| lines.push(l.to_vec()))
        .unwrap();
    assert_eq!(lines, [b"356726108877321".to_vec()]);
    assert_eq!(m.registration_status().1, RegStatus::Home);
    // The answer's shape of a registration query reaches the caller too.
    b.push(at(
        "AT+CREG?\r\n",
        info_ok("+CREG: 2,5,\"9E9A\",\"019624BD\",2"),
    ));
    let mut lines = Vec::new();
    m.command("AT+CREG?", 1_000, |l| lines.push(l.to_vec()))
        .unwrap();
    assert_eq!(lines, [b"+CREG: 2,5,\"9E9A\",\"019624BD\",2".to_vec()]);
    assert_eq!(m.registration_status().0, RegStatus::Roaming);
    // Errors come back typed.
    b.push(at("AT+UCGED?\r\n", "\r\n+CME ERROR: 4\r\n"));
    assert_eq!(m.command("AT+UCGED?", 1_000, |_| {}), Err(AtError::Cme(4)));
    // Refused before anything is sent.
    for bad in [
        "CGSN",
        "",
        "A",
        "AT\r\nATE1",
        "AT+X=\"\u{e9}\"",
        &"AT".repeat(64),
    ] {
        assert_eq!(
            m.command(bad, 1_000, |_| {}),
            Err(AtError::InvalidArgument),
            "{bad:?}"
        );
    }
    b.done();
}

#[test]
fn command_timeout_counts_like_any_command() {
    let (b, mut m) = booted(Family::U2);
    b.push([tx("AT+COPS=?\r\n")]);
    assert_eq!(m.command("AT+COPS=?", 500, |_| {}), Err(AtError::Timeout));
    // The next command resynchronises first.
    b.push(ok("AT\r\n"));
    b.push(at("AT+CSQ\r\n", info_ok("+CSQ: 12,0")));
    assert_eq!(m.signal_quality().unwrap().rssi, 12);
    b.done();
}

/// The raw command cannot tell which of its lines the caller expects: one longer than the
/// line buffer may have been the answer, so the command says it was lost (after its final
/// result, the exchange complete). The PDU line of an SMS delivered inside it is part of a
/// URC and fails nothing.
#[test]
fn command_reports_a_lost_answer_line_but_not_an_sms_body() {
    let (b, mut m) = booted(Family::R4);
    b.push(at(
        "AT+UCGED?\r\n",
        format!("\r\n+UCGED: {}\r\n\r\nOK\r\n", "7".repeat(300)),
    ));
    let mut lines = 0;
    assert_eq!(
        m.command("AT+UCGED?", 1_000, |_| lines += 1),
        Err(AtError::LineTooLong)
    );
    assert_eq!(lines, 0);
    b.push(at(
        "AT+CGSN\r\n",
        format!(
            "\r\n+CMT: ,159\r\n{}\r\n\r\n356726108877321\r\n\r\nOK\r\n",
            "0A".repeat(160)
        ),
    ));
    let mut got = Vec::new();
    m.command("AT+CGSN", 1_000, |l| got.push(l.to_vec()))
        .unwrap();
    assert_eq!(got, [b"356726108877321".to_vec()]);
    b.done();
}

#[test]
fn csq_signal_quality() {
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CSQ\r\n", info_ok("+CSQ: 17,99")));
    let q = m.signal_quality().unwrap();
    assert_eq!((q.rssi, q.qual, q.rssi_dbm()), (17, 99, Some(-79)));
    b.push(at("AT+CSQ\r\n", info_ok("+CSQ: 99,99")));
    assert_eq!(m.signal_quality().unwrap().rssi_dbm(), None);
    b.push(at("AT+CSQ\r\n", info_ok("+CSQ: 17")));
    assert_eq!(m.signal_quality(), Err(AtError::Unexpected));
    b.push(at("AT+CSQ\r\n", info_ok("+CSQ: 40,0")));
    assert_eq!(m.signal_quality(), Err(AtError::Unexpected));
    b.done();
}

#[test]
fn cesq_extended_signal_quality_r4() {
    let (b, mut m) = booted(Family::R4);
    b.push(at("AT+CESQ\r\n", info_ok("+CESQ: 99,99,255,255,20,44")));
    let q = m.extended_signal_quality().unwrap();
    assert_eq!((q.rsrq, q.rsrp), (20, 44));
    assert_eq!((q.rsrp_dbm(), q.rsrq_tenth_db()), (Some(-97), Some(-100)));
    b.push(at("AT+CESQ\r\n", info_ok("+CESQ: 99,99,255,255")));
    assert_eq!(m.extended_signal_quality(), Err(AtError::Unexpected));
    b.done();
}

#[test]
fn cclk_network_time() {
    let (b, mut m) = booted(Family::U2);
    b.push(at(
        "AT+CCLK?\r\n",
        info_ok("+CCLK: \"24/02/29,23:59:30+08\""),
    ));
    let t = m.network_time().unwrap();
    assert_eq!(
        (t.year, t.month, t.day, t.hour, t.minute, t.second),
        (2024, 2, 29, 23, 59, 30)
    );
    assert_eq!(t.utc_offset_quarters, 8);
    assert_eq!(t.unix_seconds(), 1_709_243_970);
    b.push(at(
        "AT+CCLK?\r\n",
        info_ok("+CCLK: \"24/02/30,25:00:00+00\""),
    ));
    assert_eq!(m.network_time(), Err(AtError::Unexpected));
    b.done();
}

#[test]
fn udnsrn_resolves_a_name() {
    let (b, mut m) = booted(Family::U2);
    b.push(at(
        "AT+UDNSRN=0,\"device.example.com\"\r\n",
        info_ok("+UDNSRN: \"203.0.113.7\""),
    ));
    assert_eq!(
        m.resolve("device.example.com").unwrap(),
        std::net::Ipv4Addr::new(203, 0, 113, 7)
    );
    // A failed lookup is the modem's error; a name that cannot be sent is refused.
    b.push(at(
        "AT+UDNSRN=0,\"nx.example\"\r\n",
        "\r\n+CME ERROR: 100\r\n",
    ));
    assert_eq!(m.resolve("nx.example"), Err(AtError::Cme(100)));
    assert_eq!(m.resolve(""), Err(AtError::InvalidArgument));
    assert_eq!(m.resolve("a\"b"), Err(AtError::InvalidArgument));
    b.push(at(
        "AT+UDNSRN=0,\"x.example\"\r\n",
        info_ok("+UDNSRN: \"::1\""),
    ));
    assert_eq!(m.resolve("x.example"), Err(AtError::Unexpected));
    b.done();
}

#[test]
fn udnsrn_waits_the_dns_timeout_not_the_query_timeout() {
    let (b, mut m) = booted(Family::R4);
    // 40 s is longer than the 10 s query timeout and shorter than the R4's 70 s DNS timeout.
    b.push([
        tx("AT+UDNSRN=0,\"slow.example\"\r\n"),
        rx_after(40_000, info_ok("+UDNSRN: \"198.51.100.1\"")),
    ]);
    assert_eq!(
        m.resolve("slow.example").unwrap(),
        std::net::Ipv4Addr::new(198, 51, 100, 1)
    );
    b.done();
}

#[test]
fn umnoprof_and_ubandmask_r4_r5() {
    for f in [Family::R4, Family::R5] {
        let (b, mut m) = booted(f);
        b.push(at("AT+UMNOPROF?\r\n", info_ok("+UMNOPROF: 100")));
        assert_eq!(m.mno_profile().unwrap(), 100);
        b.push(ok("AT+UMNOPROF=90\r\n"));
        m.set_mno_profile(90).unwrap();
        b.push(at("AT+UMNOPROF=2\r\n", "\r\n+CME ERROR: 3\r\n"));
        assert_eq!(m.set_mno_profile(2), Err(AtError::Cme(3)));
        b.push(at(
            "AT+UBANDMASK?\r\n",
            info_ok("+UBANDMASK: 0,6170,1,524420"),
        ));
        let bm = m.band_masks().unwrap();
        assert_eq!((bm.lte_m, bm.nb_iot), (Some([6170, 0]), Some([524420, 0])));
        b.push(at(
            "AT+UBANDMASK?\r\n",
            info_ok("+UBANDMASK: 0,185473183,0,1,185473183,0"),
        ));
        let bm = m.band_masks().unwrap();
        assert_eq!(bm.nb_iot, Some([185473183, 0]));
        b.push(ok("AT+UBANDMASK=0,6170\r\n"));
        m.set_band_mask(modem_ublox::Rat::LteM, 6170).unwrap();
        b.push(ok("AT+UBANDMASK=1,18446744073709551615\r\n"));
        m.set_band_mask(modem_ublox::Rat::NbIot, u64::MAX).unwrap();
        assert_eq!(
            m.set_band_mask(modem_ublox::Rat::LteM, 0),
            Err(AtError::InvalidArgument)
        );
        b.done();
    }
}

#[test]
fn cpsms_and_cedrxs_settings_r4_r5() {
    let (b, mut m) = booted(Family::R4);
    // R4 answers without a space after the colon (research notes §3.1).
    b.push(at(
        "AT+CPSMS?\r\n",
        info_ok("+CPSMS:1,,,\"00111000\",\"00001010\""),
    ));
    let p = m.psm_requested().unwrap().unwrap();
    assert_eq!((&p.tau, &p.active_time), (b"00111000", b"00001010"));
    b.push(at(
        "AT+CPSMS?\r\n",
        info_ok("+CPSMS:0,,,\"00010011\",\"00000011\""),
    ));
    assert_eq!(m.psm_requested().unwrap(), None);
    b.push(at(
        "AT+CPSMS?\r\n",
        info_ok("+CPSMS:1,,,\"0011\",\"00001010\""),
    ));
    assert_eq!(m.psm_requested(), Err(AtError::Unexpected));

    b.push(ok("AT+CEDRXS=1,4,\"0101\"\r\n"));
    m.set_edrx(4, "0101").unwrap();
    assert_eq!(m.set_edrx(4, "01012"), Err(AtError::InvalidArgument));
    b.push(at(
        "AT+CEDRXS?\r\n",
        "\r\n+CEDRXS: 4,\"0101\"\r\n+CEDRXS: 5,\"0010\"\r\n\r\nOK\r\n",
    ));
    assert_eq!(m.edrx_requested(5).unwrap(), Some(*b"0010"));
    // R410 with eDRX off: a bare `+CEDRXS:`.
    b.push(at("AT+CEDRXS?\r\n", info_ok("+CEDRXS:")));
    assert_eq!(m.edrx_requested(4).unwrap(), None);
    b.push(at("AT+CEDRXS?\r\n", info_ok("+CEDRXS: 4,\"01\"")));
    assert_eq!(m.edrx_requested(4), Err(AtError::Unexpected));
    b.done();
}

/// The answer line of `cmd`, arbitrary: every parser returns a value or a typed error.
fn arbitrary_answer(cmd: &str, prefix: &str, body: &[u8]) -> Result<(), AtError> {
    let (b, mut m) = booted(Family::R5);
    let mut answer = format!("\r\n{prefix}").into_bytes();
    answer.extend(body.iter().map(|&c| if c == b'\n' { b' ' } else { c }));
    answer.extend_from_slice(b"\r\n\r\nOK\r\n");
    b.push(at(format!("{cmd}\r\n"), answer));
    let r = match cmd {
        "AT+CSQ" => m.signal_quality().map(drop),
        "AT+CESQ" => m.extended_signal_quality().map(drop),
        "AT+CCLK?" => m.network_time().map(drop),
        "AT+UDNSRN=0,\"h\"" => m.resolve("h").map(drop),
        "AT+UMNOPROF?" => m.mno_profile().map(drop),
        "AT+UBANDMASK?" => m.band_masks().map(drop),
        "AT+CPSMS?" => m.psm_requested().map(drop),
        _ => m.edrx_requested(4).map(drop),
    };
    b.done();
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_answer_makes_a_parser_panic(
        which in 0usize..8,
        body in proptest::collection::vec(prop_oneof![
            Just(b','), Just(b'"'), Just(b'/'), Just(b':'), Just(b'+'), Just(b'-'), Just(b' '),
            b'0'..=b'9', any::<u8>()
        ], 0..48),
    ) {
        let (cmd, prefix) = [
            ("AT+CSQ", "+CSQ: "),
            ("AT+CESQ", "+CESQ: "),
            ("AT+CCLK?", "+CCLK: "),
            ("AT+UDNSRN=0,\"h\"", "+UDNSRN: "),
            ("AT+UMNOPROF?", "+UMNOPROF: "),
            ("AT+UBANDMASK?", "+UBANDMASK: "),
            ("AT+CPSMS?", "+CPSMS:"),
            ("AT+CEDRXS?", "+CEDRXS: "),
        ][which];
        match arbitrary_answer(cmd, prefix, &body) {
            Ok(()) | Err(AtError::Unexpected) | Err(AtError::LineTooLong) => {}
            Err(e) => prop_assert!(false, "{cmd}: {e:?}"),
        }
    }
}
