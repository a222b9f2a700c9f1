//! Section 5 of the research notes (A–H), in exact bytes, per model where they differ.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use modem_ublox::{
    Apn, DataError, Family, Model, ModemConfig, PowerError, Protocol, RegStatus, Registration,
    SimError, SocketError,
};

const FAMILIES: [Family; 4] = [Family::U2, Family::G3, Family::R4, Family::R5];

fn addr(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

// ---------------------------------------------------------------- A. Boot / sync

#[test]
fn a_boot_sync_every_family_exact_bytes_and_pulse() {
    for f in FAMILIES {
        let b = Bench::new();
        b.script.set_vint(false);
        b.script
            .on_pulse(|pin, _| (pin == "PWR_ON").then_some((50 * MS, true)));
        let mut cfg = ModemConfig::new(f);
        cfg.set_baud = true;
        cfg.flow_control = true;
        let mut m = b.modem(cfg);
        let (name, fw) = model_name(f);
        // R4 sends NULs after a reboot (ubxlib #200); the framer drops them.
        b.push([tx("AT\r\n"), rx_after(300, "\0\0AT\r\r\nOK\r\n")]);
        b.push(at("ATE0\r\n", "ATE0\r\r\nOK\r\n"));
        b.push(ok("AT\r\n"));
        b.push(ok("AT+CMEE=1\r\n"));
        b.push(at("AT+CGMM\r\n", info_ok(name)));
        b.push(at("ATI9\r\n", info_ok(fw)));
        b.push(ok("AT+IPR=115200\r\n"));
        if matches!(f, Family::R4 | Family::R5) {
            b.push(ok("AT+IFC=2,2\r\n"));
        } else {
            b.push(ok("AT&K3\r\n"));
        }
        if f != Family::R4 {
            b.push(ok("AT+UPSV=0\r\n"));
        }
        m.power_on().unwrap_or_else(|e| panic!("{f:?}: {e:?}"));
        b.done();
        assert_eq!(m.model().map(|m| m.family()), Some(f));
        assert_eq!(m.firmware_version(), fw.as_bytes());
        let pulses = b.script.pulses("PWR_ON");
        assert_eq!(pulses.len(), 1, "{f:?}");
        let want_us = match f {
            Family::U2 => 60,
            Family::G3 => 10_000,
            Family::R4 => 200_000,
            Family::R5 => 1_500_000,
            f => unimplemented!("{f:?}"),
        };
        assert_eq!(pulses[0].1, want_us * 1_000, "{f:?} pulse width");
        // AT+IPR is followed by >= 100 ms of silence (the G350 needs > 40 ms).
        let after_ipr = b.script.tx_time(b"AT+IPR=115200\r\n");
        let next: &[u8] = if matches!(f, Family::R4 | Family::R5) {
            b"AT+IFC=2,2\r\n"
        } else {
            b"AT&K3\r\n"
        };
        assert!(b.script.tx_time(next) - after_ipr >= 100 * MS);
    }
}

#[test]
fn a_modem_already_on_is_not_pulsed_and_stale_sockets_are_swept() {
    let b = Bench::new();
    b.script.set_vint(true);
    let mut m = b.modem(ModemConfig::new(Family::U2));
    b.push(ok("AT\r\n"));
    b.push(init_steps(Family::U2));
    m.power_on().unwrap();
    assert!(b.script.pulses("PWR_ON").is_empty());
    // First socket: sweep handles 0..6 (AT+USOCTL=<h>,0), close the open ones. A CME error
    // may mean "not open" or (R410 fw 05.08) "no AT+USOCTL": AT+USOCL is tried, and refused.
    for h in 0..7 {
        let c = format!("AT+USOCTL={h},0\r\n");
        match h {
            2 => b.push(at(c, info_ok("+USOCTL: 2,0,6"))),
            5 => b.push(at(c, info_ok("+USOCTL: 5,0,17"))),
            _ => b.push(at(c, "\r\n+CME ERROR: 3\r\n")),
        }
        if h == 2 || h == 5 {
            b.push(ok(format!("AT+USOCL={h}\r\n")));
        } else {
            b.push(at(format!("AT+USOCL={h}\r\n"), "\r\n+CME ERROR: 3\r\n"));
        }
    }
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(s.handle(), 0);
    b.done();
}

#[test]
fn a_no_vint_cold_start_probes_then_pulses() {
    let b = Bench::new();
    let mut m = b.bare(ModemConfig::new(Family::G3));
    // One unanswered probe (1 s), then the pulse, then the answer.
    b.push([tx("AT\r\n"), tx("AT\r\n"), rx_after(200, "AT\r\r\nOK\r\n")]);
    b.push(init_steps(Family::G3));
    m.power_on().unwrap();
    b.done();
    let p = b.script.pulses("PWR_ON");
    assert_eq!(p.len(), 1);
    assert!(p[0].0 >= 1_000 * MS, "pulse only after the probe timed out");
    assert_eq!(m.model(), Some(Model::SaraG350));
}

// ---------------------------------------------------------------- B. SIM

/// `ATI9` may be preceded by a boot URC the engine does not know (`+PACSP1`, `+CPIN: READY`):
/// the firmware version is the first line that does not look like one.
#[test]
fn a_ati9_skips_urc_lines_before_the_version() {
    let b = Bench::new();
    b.script.set_vint(true);
    let mut m = b.modem(ModemConfig::new(Family::G3));
    b.push(ok("AT\r\n"));
    b.push(at("ATE0\r\n", "ATE0\r\r\nOK\r\n"));
    b.push(ok("AT\r\n"));
    b.push(ok("AT+CMEE=1\r\n"));
    b.push(at("AT+CGMM\r\n", info_ok("SARA-G350")));
    b.push(at(
        "ATI9\r\n",
        "\r\n+PACSP1\r\n\r\n+CPIN: READY\r\n\r\n08.90,A01.13\r\n\r\nOK\r\n",
    ));
    b.push(ok("AT+UPSV=0\r\n"));
    m.power_on().unwrap();
    assert_eq!(m.firmware_version(), b"08.90,A01.13");
    b.done();
}

#[test]
fn b_sim_ready_iccid_imsi() {
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CPIN?\r\n", info_ok("+CPIN: READY")));
    b.push(at("AT+CCID\r\n", info_ok("+CCID: 8934071100270000000")));
    b.push(at("AT+CIMI\r\n", info_ok("240071234567890")));
    m.wait_sim_ready(10_000).unwrap();
    assert_eq!(m.iccid().unwrap().as_str(), "8934071100270000000");
    assert_eq!(m.imsi().unwrap().as_str(), "240071234567890");
    b.done();
}

#[test]
fn b_sim_not_inserted_verbose_and_numeric() {
    for answer in [
        "\r\n+CME ERROR: SIM not inserted\r\n",
        "\r\n+CME ERROR: 10\r\n",
    ] {
        let (b, mut m) = booted(Family::U2);
        b.push(at("AT+CPIN?\r\n", answer));
        assert_eq!(m.wait_sim_ready(10_000), Err(SimError::NotInserted));
        b.done();
    }
}

/// `+CME ERROR: 15` ("SIM wrong": e.g. a network-locked module) does not go away by
/// waiting: it is reported at once, not retried until the budget ends.
#[test]
fn b_sim_wrong_is_reported_not_retried() {
    for answer in ["\r\n+CME ERROR: SIM wrong\r\n", "\r\n+CME ERROR: 15\r\n"] {
        let (b, mut m) = booted(Family::R4);
        b.push(at("AT+CPIN?\r\n", answer));
        assert_eq!(m.wait_sim_ready(10_000), Err(SimError::Wrong));
        b.done();
    }
}

#[test]
fn b_sim_busy_is_retried_until_ready() {
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: 14\r\n"));
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: 14\r\n"));
    b.push(at("AT+CPIN?\r\n", info_ok("+CPIN: READY")));
    let t0 = b.clock.now();
    m.wait_sim_ready(10_000).unwrap();
    assert!(b.clock.now() - t0 >= 2_000 * MS, "1 s between retries");
    b.done();
}

#[test]
fn b_sim_pin_required_and_busy_budget() {
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CPIN?\r\n", info_ok("+CPIN: SIM PIN")));
    assert_eq!(m.wait_sim_ready(10_000), Err(SimError::PinRequired));
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: 14\r\n"));
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: 14\r\n"));
    assert_eq!(m.wait_sim_ready(1_500), Err(SimError::NotReady));
    b.done();
}

/// Every command inside a budgeted operation is capped by what is left of the budget: a SIM
/// that takes 2 s to answer `AT+CPIN?` cannot stretch `wait_sim_ready(500)` to the command's
/// own 10 s timeout (nor to the 2 s). Running out of budget is `NotReady`.
#[test]
fn b_sim_budget_caps_the_cpin_timeout() {
    let (b, mut m) = booted(Family::R4);
    b.push([
        tx("AT+CPIN?\r\n"),
        rx_late(2_000, "\r\n+CPIN: READY\r\n\r\nOK\r\n"),
    ]);
    let t0 = m.time_spent_ms();
    assert_eq!(m.wait_sim_ready(500), Err(SimError::NotReady));
    let spent = m.time_spent_ms() - t0;
    assert!(spent <= 500 + 5, "{spent} ms for a 500 ms budget");
    b.done();
}

// ---------------------------------------------------------------- C. Registration U2/G3

fn c_setup(b: &Bench, cfun: &str, cops: &str) {
    b.push(at("AT+CFUN?\r\n", info_ok(cfun)));
    if cfun != "+CFUN: 1,0" {
        b.push(ok("AT+CFUN=1\r\n"));
    }
    b.push(ok("AT+CREG=2\r\n"));
    b.push(ok("AT+CGREG=2\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok(cops)));
    if cops == "+COPS: 2" {
        b.push(ok("AT+COPS=0,2\r\n"));
    }
}

#[test]
fn c_registration_u2_g3_exact_bytes() {
    for f in [Family::U2, Family::G3] {
        let (b, mut m) = booted(f);
        c_setup(&b, "+CFUN: 1,0", "+COPS: 2");
        b.push(at(
            "AT+CREG?\r\n",
            info_ok(r#"+CREG: 2,5,"9E9A","019624BD",2"#),
        ));
        b.push(at(
            "AT+CGREG?\r\n",
            info_ok(r#"+CGREG: 2,1,"9E9A","019607C0",2,"02""#),
        ));
        assert_eq!(m.register(&Registration::new(60_000)), Ok(RegStatus::Home));
        assert_eq!(m.registration_status().0, RegStatus::Roaming);
        b.done();
    }
}

#[test]
fn c_registration_ends_on_urc_without_another_poll() {
    let (b, mut m) = booted(Family::U2);
    c_setup(&b, "+CFUN: 0", "+COPS: 0,0,\"3 DK\",2");
    b.push(at("AT+CREG?\r\n", info_ok(r#"+CREG: 2,2"#)));
    b.push(at("AT+CGREG?\r\n", info_ok(r#"+CGREG: 2,2"#)));
    b.push([
        rx_after(3_000, "\r\n+CREG: 5,\"9E9A\",\"0196BDB0\",2\r\n"),
        rx("\r\n+CGREG: 5,\"9E9A\",\"0196BDB0\",2\r\n"),
    ]);
    assert_eq!(
        m.register(&Registration::new(60_000)),
        Ok(RegStatus::Roaming)
    );
    b.done();
}

#[test]
fn c_registration_polls_and_times_out_with_last_status() {
    let (b, mut m) = booted(Family::U2);
    c_setup(&b, "+CFUN: 1,0", "+COPS: 0");
    let mut reg = Registration::new(20_000);
    reg.poll_interval_ms = 15_000;
    for _ in 0..2 {
        b.push(at("AT+CREG?\r\n", info_ok("+CREG: 2,2")));
        b.push(at("AT+CGREG?\r\n", info_ok("+CGREG: 2,2")));
    }
    b.push([rx_after(1_000, "\r\n+CGREG: 0\r\n")]); // URC while waiting: not searching any more
    let t0 = m.time_spent_ms();
    let r = m.register(&reg);
    assert!(
        matches!(
            r,
            Err(modem_ublox::RegistrationError::Timeout(
                RegStatus::NotRegistered
            ))
        ),
        "{r:?}"
    );
    // Polls at 0 s and 15 s; the budget ends the wait after the second one.
    let spent = m.time_spent_ms() - t0;
    assert!((20_000..20_100).contains(&spent), "{spent} ms");
    b.done();
}

/// The caps are computed when each command is sent, not up front: `AT+CFUN?` answering
/// after 4 s of a 5 s budget leaves `AT+CFUN=1` 1 s, not 5 s. The budget running out inside
/// a command is `Timeout` with the last status, not an AT timeout.
#[test]
fn c_registration_budget_caps_each_command_when_it_is_sent() {
    let (b, mut m) = booted(Family::U2);
    b.push([tx("AT+CFUN?\r\n"), rx_after(4_000, info_ok("+CFUN: 0"))]);
    b.push([tx("AT+CFUN=1\r\n")]);
    let t0 = m.time_spent_ms();
    let r = m.register(&Registration::new(5_000));
    let spent = m.time_spent_ms() - t0;
    assert_eq!(
        r,
        Err(modem_ublox::RegistrationError::Timeout(
            RegStatus::NotRegistered
        ))
    );
    assert!(spent <= 5_000 + 5, "{spent} ms for a 5 s budget");
    b.done();
}

#[test]
fn c_brownout_signature_creg_mode_zero_reinitialises() {
    let (b, mut m) = booted(Family::U2);
    c_setup(&b, "+CFUN: 1,0", "+COPS: 0");
    b.push(at("AT+CREG?\r\n", info_ok("+CREG: 0,1")));
    b.push(init_steps(Family::U2));
    assert_eq!(
        m.register(&Registration::new(60_000)),
        Err(modem_ublox::RegistrationError::ModemRebooted)
    );
    assert_eq!(m.stats().reboots_detected, 1);
    b.done();
}

// ---------------------------------------------------------------- C'. Registration R4/R5

#[test]
fn c_prime_registration_r4_fixes_rat_and_sets_apn() {
    let (b, mut m) = booted(Family::R4);
    b.push(ok("AT+CEREG=2\r\n"));
    b.push(at("AT+URAT?\r\n", info_ok("+URAT: 7,8")));
    b.push(ok("AT+CFUN=4\r\n"));
    b.push(ok("AT+URAT=7\r\n"));
    b.push(ok("AT+CGDCONT=1,\"IP\",\"iot.example\"\r\n"));
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 4")));
    b.push(ok("AT+CFUN=1\r\n"));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 0")));
    b.push(at("AT+CEREG?\r\n", info_ok("+CEREG: 2,2")));
    b.push([rx_after(2_000, "\r\n+CEREG: 1,\"2F11\",\"1B18207\",7\r\n")]);
    let mut reg = Registration::new(120_000);
    reg.eps_apn = Some("iot.example");
    assert_eq!(m.register(&reg), Ok(RegStatus::Home));
    b.done();
}

#[test]
fn c_prime_registration_r5_no_rat_fix() {
    let (b, mut m) = booted(Family::R5);
    b.push(ok("AT+CEREG=2\r\n"));
    b.push(at("AT+CFUN?\r\n", info_ok("+CFUN: 1")));
    b.push(at("AT+COPS?\r\n", info_ok("+COPS: 0")));
    b.push(at(
        "AT+CEREG?\r\n",
        info_ok(r#"+CEREG: 2,5,"1A2B","01A2B3C4",7"#),
    ));
    assert_eq!(
        m.register(&Registration::new(120_000)),
        Ok(RegStatus::Roaming)
    );
    b.done();
}

// ---------------------------------------------------------------- D. PDP U2/G3

fn d_profile(b: &Bench) {
    b.push(ok("AT+CGATT=1\r\n"));
    b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,0")));
    b.push(ok("AT+UPSD=0,1,\"apn\"\r\n"));
    b.push(ok("AT+UPSD=0,7,\"0.0.0.0\"\r\n"));
    b.push(ok("AT+UPSD=0,6,0\r\n"));
}

#[test]
fn d_pdp_u2_g3_urc_after_ok() {
    for f in [Family::U2, Family::G3] {
        let (b, mut m) = booted(f);
        d_profile(&b);
        b.push(at("AT+UPSDA=0,3\r\n", "\r\nOK\r\n"));
        b.push([rx_after(1_500, "\r\n+UUPSDA: 0,\"10.174.88.81\"\r\n")]);
        b.push(at(
            "AT+UPSND=0,0\r\n",
            info_ok("+UPSND: 0,0,\"10.174.88.81\""),
        ));
        assert_eq!(
            m.activate_data(&Apn::new("apn"), 60_000),
            Ok(Ipv4Addr::new(10, 174, 88, 81))
        );
        assert_eq!(m.data_address(), Some(Ipv4Addr::new(10, 174, 88, 81)));
        // Later: the network drops the context.
        b.push([rx("\r\n+UUPSDD: 0\r\n")]);
        m.poll(0).unwrap();
        assert_eq!(m.data_address(), None);
        b.done();
    }
}

#[test]
fn d_pdp_urc_before_ok_and_credentials() {
    let (b, mut m) = booted(Family::U2);
    b.push(ok("AT+CGATT=1\r\n"));
    b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,0")));
    b.push(ok("AT+UPSD=0,1,\"apn\"\r\n"));
    b.push(ok("AT+UPSD=0,2,\"user\"\r\n"));
    b.push(ok("AT+UPSD=0,3,\"secret\"\r\n"));
    b.push(ok("AT+UPSD=0,7,\"0.0.0.0\"\r\n"));
    b.push(ok("AT+UPSD=0,6,2\r\n"));
    b.push(at(
        "AT+UPSDA=0,3\r\n",
        "\r\n+UUPSDA: 0,\"10.1.2.3\"\r\n\r\nOK\r\n",
    ));
    b.push(at("AT+UPSND=0,0\r\n", info_ok("+UPSND: 0,0,\"10.1.2.3\"")));
    let apn = Apn::new("apn")
        .with_credentials("user", "secret")
        .with_auth(modem_ublox::Auth::Chap);
    assert_eq!(
        m.activate_data(&apn, 60_000),
        Ok(Ipv4Addr::new(10, 1, 2, 3))
    );
    b.done();
}

#[test]
fn d_pdp_errors_149_133_148() {
    for (code, want) in [
        ("149", DataError::AuthFailed),
        ("133", DataError::NotSubscribed),
        ("148", DataError::Rejected(148)),
    ] {
        let (b, mut m) = booted(Family::U2);
        d_profile(&b);
        b.push(at(
            "AT+UPSDA=0,3\r\n",
            format!("\r\n+CME ERROR: {code}\r\n"),
        ));
        assert_eq!(m.activate_data(&Apn::new("apn"), 60_000), Err(want));
        b.done();
    }
}

/// A budget that ends during `AT+CGATT=1` (whose own timeout is 180 s) is
/// `DataError::Timeout` at the budget, not an AT timeout.
#[test]
fn d_pdp_budget_ends_inside_a_command() {
    let (b, mut m) = booted(Family::U2);
    b.push([tx("AT+CGATT=1\r\n"), rx_late(10_000, "\r\nOK\r\n")]);
    let t0 = m.time_spent_ms();
    assert_eq!(
        m.activate_data(&Apn::new("apn"), 3_000),
        Err(DataError::Timeout)
    );
    let spent = m.time_spent_ms() - t0;
    assert!(spent <= 3_000 + 5, "{spent} ms for a 3 s budget");
    b.done();
}

#[test]
fn d_pdp_already_active() {
    let (b, mut m) = booted(Family::G3);
    b.push(ok("AT+CGATT=1\r\n"));
    b.push(at("AT+UPSND=0,8\r\n", info_ok("+UPSND: 0,8,1")));
    b.push(at(
        "AT+UPSND=0,0\r\n",
        info_ok("+UPSND: 0,0,\"10.174.88.81\""),
    ));
    assert_eq!(
        m.activate_data(&Apn::new("apn"), 60_000),
        Ok(Ipv4Addr::new(10, 174, 88, 81))
    );
    b.push(ok("AT+UPSDA=0,4\r\n"));
    m.deactivate_data().unwrap();
    b.done();
}

// ---------------------------------------------------------------- D'. PDP R4/R5

#[test]
fn d_prime_pdp_r4() {
    let (b, mut m) = booted(Family::R4);
    b.push(at("AT+CGACT?\r\n", info_ok("+CGACT: 1,1")));
    b.push(at(
        "AT+CGPADDR=1\r\n",
        info_ok("+CGPADDR: 1,\"10.39.187.185\""),
    ));
    assert_eq!(
        m.activate_data(&Apn::new("unused"), 60_000),
        Ok(Ipv4Addr::new(10, 39, 187, 185))
    );
    m.deactivate_data().unwrap(); // nothing sent on R4
    b.done();
}

#[test]
fn d_prime_pdp_r5_activates_and_maps_profile() {
    let (b, mut m) = booted(Family::R5);
    b.push(at("AT+CGACT?\r\n", info_ok("+CGACT: 1,0")));
    b.push(ok("AT+CGACT=1,1\r\n"));
    b.push(ok("AT+UPSD=0,100,1\r\n"));
    b.push(ok("AT+UPSDA=0,3\r\n"));
    b.push(at(
        "AT+CGPADDR=1\r\n",
        info_ok("+CGPADDR: 1,\"10.39.187.185\""),
    ));
    assert_eq!(
        m.activate_data(&Apn::new("unused"), 60_000),
        Ok(Ipv4Addr::new(10, 39, 187, 185))
    );
    b.done();
}

// ---------------------------------------------------------------- E. TCP

fn tcp_open(b: &Bench, m: &mut FullModem) -> modem_ublox::SocketId {
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    b.push(ok("AT+USOCO=0,\"52.1.2.3\",5684\r\n"));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    m.connect(s, addr([52, 1, 2, 3], 5684)).unwrap();
    s
}

#[test]
fn e_tcp_write_binary_with_prompt_wait() {
    for f in FAMILIES {
        let (b, mut m) = booted(f);
        let s = tcp_open(&b, &mut m);
        b.push([
            tx("AT+USOWR=0,5\r\n"),
            rx("\r\n@"),
            tx([0x00, 0x0D, 0x0A, 0x22, 0xFF]),
        ]);
        b.push([rx("\r\n+USOWR: 0,5\r\n\r\nOK\r\n")]);
        assert_eq!(m.send(s, &[0x00, 0x0D, 0x0A, 0x22, 0xFF]), Ok(5));
        let gap = b.script.tx_time(&[0x00, 0x0D, 0x0A, 0x22, 0xFF])
            - b.script.tx_time(b"AT+USOWR=0,5\r\n");
        assert!(gap >= 50 * MS, "{f:?}: data {gap} ns after the prompt");
        b.done();
    }
}

#[test]
fn e_tcp_write_error_usoer_172_retried() {
    let (b, mut m) = booted(Family::R4);
    let s = tcp_open(&b, &mut m);
    b.push([
        tx("AT+USOWR=0,3\r\n"),
        rx("\r\n@"),
        tx("abc"),
        rx("\r\nERROR\r\n"),
    ]);
    b.push(at("AT+USOER\r\n", info_ok("+USOER: 172")));
    b.push([
        tx("AT+USOWR=0,3\r\n"),
        rx("\r\n@"),
        tx("abc"),
        rx("\r\n+USOWR: 0,3\r\n\r\nOK\r\n"),
    ]);
    assert_eq!(m.send(s, b"abc"), Ok(3));
    b.done();
}

/// `OK` without a `+USOWR:` line (or with one that does not parse): the module took the
/// chunk, so it counts as written and is never sent again (resending would duplicate TCP data).
#[test]
fn e_tcp_write_ok_without_confirmation_is_not_resent() {
    for answer in ["\r\nOK\r\n", "\r\n+USOWR: 0,x\r\n\r\nOK\r\n"] {
        let (b, mut m) = booted(Family::U2);
        let s = tcp_open(&b, &mut m);
        b.push([tx("AT+USOWR=0,5\r\n"), rx("\r\n@"), tx("hello"), rx(answer)]);
        assert_eq!(m.send(s, b"hello"), Ok(5), "{answer:?}");
        b.done();
    }
}

/// `+USOWR: <h>,0`: nothing was taken, so the chunk is offered again (3 retries with a
/// backoff); if the module keeps refusing, `WouldBlock` (nothing was sent) or the count of
/// what was sent before.
#[test]
fn e_tcp_write_zero_accepted_is_retried_then_would_block() {
    let (b, mut m) = booted(Family::R4);
    let s = tcp_open(&b, &mut m);
    for _ in 0..4 {
        b.push([
            tx("AT+USOWR=0,2\r\n"),
            rx("\r\n@"),
            tx("hi"),
            rx("\r\n+USOWR: 0,0\r\n\r\nOK\r\n"),
        ]);
    }
    assert_eq!(m.send(s, b"hi"), Err(SocketError::WouldBlock));
    b.done();
    b.push([
        tx("AT+USOWR=0,5\r\n"),
        rx("\r\n@"),
        tx("hello"),
        rx("\r\n+USOWR: 0,2\r\n\r\nOK\r\n"),
    ]);
    for _ in 0..4 {
        b.push([
            tx("AT+USOWR=0,3\r\n"),
            rx("\r\n@"),
            tx("llo"),
            rx("\r\n+USOWR: 0,0\r\n\r\nOK\r\n"),
        ]);
    }
    assert_eq!(m.send(s, b"hello"), Ok(2));
    b.done();
}

#[test]
fn e_tcp_read_1024_binary_with_ok_and_quote_inside() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp_open(&b, &mut m);
    let mut payload: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
    payload[10..16].copy_from_slice(b"\r\nOK\r\n");
    payload[100] = b'"';
    payload[101..105].copy_from_slice(b"\"\r\n@");
    b.push([rx("\r\n+UUSORD: 0,1400\r\n")]);
    m.poll(0).unwrap();
    assert_eq!(m.pending(s), Ok(1400));
    let mut resp = b"\r\n+USORD: 0,1024,\"".to_vec();
    resp.extend_from_slice(&payload);
    resp.extend_from_slice(b"\"\r\n\r\nOK\r\n");
    b.push([tx("AT+USORD=0,1024\r\n"), rx_split(resp, 64)]);
    let mut buf = [0u8; 2048];
    assert_eq!(m.receive(s, &mut buf), Ok(1024));
    assert_eq!(&buf[..1024], &payload[..]);
    assert_eq!(m.pending(s), Ok(376));
    b.push([
        tx("AT+USORD=0,376\r\n"),
        rx(format!(
            "\r\n+USORD: 0,376,\"{}\"\r\n\r\nOK\r\n",
            "z".repeat(376)
        )),
    ]);
    assert_eq!(m.receive(s, &mut buf), Ok(376));
    // Nothing pending: ask, the modem says 0.
    b.push(at("AT+USORD=0,0\r\n", info_ok("+USORD: 0,0")));
    assert_eq!(m.receive(s, &mut buf), Ok(0));
    b.done();
}

#[test]
fn e_tcp_read_r4_empty_and_hex_mode() {
    let (b, mut m) = booted(Family::R4);
    let s = tcp_open(&b, &mut m);
    b.push([rx("\r\n+UUSORD: 0,4\r\n")]);
    m.poll(0).unwrap();
    // The data went away meanwhile: R4 answers without a length.
    b.push(at("AT+USORD=0,4\r\n", info_ok("+USORD: 0,\"\"")));
    let mut buf = [0u8; 16];
    assert_eq!(m.receive(s, &mut buf), Ok(0));
    assert_eq!(m.pending(s), Ok(0), "the next read asks again");

    let b2 = Bench::new();
    b2.script.set_vint(false);
    b2.script
        .on_pulse(|pin, _| (pin == "PWR_ON").then_some((100 * MS, true)));
    let mut cfg = ModemConfig::new(Family::R4);
    cfg.hex_mode = true;
    let mut m2 = b2.modem(cfg);
    b2.push([tx("AT\r\n"), rx("AT\r\r\nOK\r\n")]);
    b2.push(init_steps(Family::R4));
    b2.push(ok("AT+UDCONF=1,1\r\n"));
    m2.power_on().unwrap();
    let s2 = tcp_open(&b2, &mut m2);
    b2.push([rx("\r\n+UUSORD: 0,4\r\n")]);
    b2.push(at("AT+USORD=0,4\r\n", info_ok("+USORD: 0,4,\"48656C6C\"")));
    m2.poll(0).unwrap();
    assert_eq!(m2.receive(s2, &mut buf), Ok(4));
    assert_eq!(&buf[..4], b"Hell");
    // Hex write.
    b2.push(at("AT+USOWR=0,2,\"00FF\"\r\n", info_ok("+USOWR: 0,2")));
    assert_eq!(m2.send(s2, &[0x00, 0xFF]), Ok(2));
    b2.done();
    b.done();
}

#[test]
fn e_tcp_peer_close_and_close_and_connect_error() {
    let (b, mut m) = booted(Family::U2);
    let s = tcp_open(&b, &mut m);
    b.push([rx("\r\n+UUSOCL: 0\r\n")]);
    m.poll(0).unwrap();
    assert_eq!(m.is_peer_closed(s), Ok(true));
    b.push(at(
        "AT+USORD=0,0\r\n",
        "\r\n+CME ERROR: Operation not allowed\r\n",
    ));
    let mut buf = [0u8; 8];
    assert_eq!(m.receive(s, &mut buf), Err(SocketError::Closed));
    b.push(ok("AT+USOCL=0\r\n"));
    m.close(s).unwrap();
    assert_eq!(m.receive(s, &mut buf), Err(SocketError::InvalidSocket));

    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 1")));
    b.push(at(
        "AT+USOCO=1,\"52.1.2.3\",5684\r\n",
        "\r\n+CME ERROR: Operation not allowed\r\n",
    ));
    b.push(at("AT+USOER\r\n", info_ok("+USOER: 111")));
    let s = m.open_socket(Protocol::Tcp).unwrap();
    assert_eq!(
        m.connect(s, addr([52, 1, 2, 3], 5684)),
        Err(SocketError::Socket(111))
    );
    b.done();
}

// ---------------------------------------------------------------- F. UDP

fn udp_datagram(b: &Bench, m: &mut FullModem, ending: &str) -> modem_ublox::SocketId {
    b.push(at("AT+USOCR=17\r\n", info_ok("+USOCR: 1")));
    let s = m.open_socket(Protocol::Udp).unwrap();
    assert_eq!(s.handle(), 1);
    let mut req = [0u8; 48];
    req[0] = 0x1B;
    b.push([
        tx("AT+USOST=1,\"185.15.72.251\",123,48\r\n"),
        rx("\r\n@"),
        tx(req),
    ]);
    b.push([rx("\r\n+USOST: 1,48\r\n\r\nOK\r\n")]);
    m.send_to(s, addr([185, 15, 72, 251], 123), &req).unwrap();
    b.push([rx("\r\n+UUSORF: 1,48\r\n")]);
    let mut answer: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(37)).collect();
    answer[5..7].copy_from_slice(b"\r\n");
    let mut resp = b"\r\n+USORF: 1,\"185.15.72.251\",123,48,\"".to_vec();
    resp.extend_from_slice(&answer);
    resp.extend_from_slice(ending.as_bytes());
    b.push([tx("AT+USORF=1,1024\r\n"), rx(resp)]);
    m.poll(0).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = m.receive_from(s, &mut buf).unwrap().unwrap();
    assert_eq!((n, from), (48, addr([185, 15, 72, 251], 123)));
    assert_eq!(&buf[..48], &answer[..]);
    b.done();
    s
}

#[test]
fn f_udp_u2_r5() {
    for f in [Family::U2, Family::R5] {
        let (b, mut m) = booted(f);
        udp_datagram(&b, &mut m, "\"\r\n\r\nOK\r\n");
    }
}

/// `+USOST` confirming fewer bytes than the datagram is an error (the peer got a shorter
/// datagram or none), never retried; `OK` without the confirmation counts as sent.
#[test]
fn f_udp_send_short_confirmation_is_an_error() {
    let (b, mut m) = booted(Family::R4);
    b.push(at("AT+USOCR=17\r\n", info_ok("+USOCR: 1")));
    let s = m.open_socket(Protocol::Udp).unwrap();
    let to = addr([185, 15, 72, 251], 123);
    b.push([
        tx("AT+USOST=1,\"185.15.72.251\",123,5\r\n"),
        rx("\r\n@"),
        tx("hello"),
        rx("\r\n+USOST: 1,3\r\n\r\nOK\r\n"),
    ]);
    assert_eq!(m.send_to(s, to, b"hello"), Err(SocketError::Truncated(3)));
    b.push([
        tx("AT+USOST=1,\"185.15.72.251\",123,5\r\n"),
        rx("\r\n@"),
        tx("hello"),
        rx("\r\nOK\r\n"),
    ]);
    assert_eq!(m.send_to(s, to, b"hello"), Ok(()));
    b.done();
}

#[test]
fn f_udp_g350_extra_crlf() {
    let (b, mut m) = booted(Family::G3);
    udp_datagram(&b, &mut m, "\"\r\n\r\n\r\nOK\r\n");
}

#[test]
fn f_udp_r410_junk_crs() {
    let (b, mut m) = booted(Family::R4);
    let s = udp_datagram(&b, &mut m, "\"\r\n\r\r\nOK\r\n");
    // The R410 05.08 form with leading junk CRs before +USORF.
    b.push([rx("\r\n+UUSORF: 1,2\r\n")]);
    b.push([
        tx("AT+USORF=1,1024\r\n"),
        rx("\r\r\n\r\r\n+USORF: 1,\"185.15.72.251\",123,2,\"hi\"\r\n\r\r\nOK\r\n"),
    ]);
    m.poll(0).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(m.receive_from(s, &mut buf).unwrap().map(|r| r.0), Some(2));
    b.done();
}

// ---------------------------------------------------------------- G. Power-down

#[test]
fn g_power_down_cpwroff_then_vint_low() {
    for f in FAMILIES {
        let (b, mut m) = booted(f);
        b.push([
            tx("AT+CPWROFF\r\n"),
            rx_after(800, "\r\nOK\r\n"),
            Step::Vint {
                after: 1_500 * MS,
                high: false,
            },
        ]);
        m.power_off().unwrap();
        assert!(!m.is_powered());
        // No PWR_ON pulse besides the power-on one, no reset.
        assert_eq!(b.script.pulses("PWR_ON").len(), 1);
        assert!(b.script.pulses("RESET_N").is_empty());
        b.done();
    }
}

#[test]
fn g_power_down_aborted_is_retried() {
    let (b, mut m) = booted(Family::U2);
    b.push(at("AT+CPWROFF\r\n", "\r\nABORTED\r\n"));
    b.push([
        tx("AT+CPWROFF\r\n"),
        rx("\r\nOK\r\n"),
        Step::Vint {
            after: 500 * MS,
            high: false,
        },
    ]);
    m.power_off().unwrap();
    b.done();
}

#[test]
fn g_soft_reset_cfun_16_and_15() {
    for (f, cmd) in [
        (Family::U2, "AT+CFUN=16\r\n"),
        (Family::R4, "AT+CFUN=15\r\n"),
    ] {
        let (b, mut m) = booted(f);
        b.push(ok(cmd));
        b.push([tx("AT\r\n"), rx("AT\r\r\nOK\r\n")]); // echo back on after the reboot
        b.push(init_steps(f));
        m.soft_reset().unwrap();
        b.done();
    }
}

// ---------------------------------------------------------------- H. R4/R5 low power

#[test]
fn h_psm_edrx_r4() {
    let (b, mut m) = booted(Family::R4);
    b.push(ok("AT+CPSMS=1,,,\"00111000\",\"00001010\"\r\n"));
    m.set_psm(Some(("00111000", "00001010"))).unwrap();
    b.push(at(
        "AT+UCPSMS?\r\n",
        info_ok("+UCPSMS: 1,,,\"00111001\",\"00001010\""),
    ));
    let t = m.psm_assigned().unwrap();
    assert_eq!(
        (t.mode, &t.tau, &t.active_time),
        (1, b"00111001", b"00001010")
    );
    b.push(ok("AT+UPSMR=1\r\n"));
    m.enable_psm_urc().unwrap();
    b.push([rx("\r\n+UUPSMR: 1\r\n")]);
    m.poll(0).unwrap();
    assert_eq!(m.power_saving_state(), Some(1));
    b.push([rx("\r\n+UUPSMR: 0\r\n")]);
    m.poll(0).unwrap();
    assert_eq!(m.power_saving_state(), Some(0));
    b.push(ok("AT+CEDRXS=3,7\r\n"));
    m.disable_edrx(7).unwrap();
    b.push(ok("AT+CPSMS=0\r\n"));
    m.set_psm(None).unwrap();
    assert_eq!(
        m.set_psm(Some(("0011100", "00001010"))),
        Err(modem_ublox::AtError::InvalidArgument)
    );
    b.done();
}

#[test]
fn unsupported_model_is_refused() {
    let b = Bench::new();
    b.script.set_vint(true);
    let mut m = b.modem(ModemConfig::new(Family::U2));
    b.push(ok("AT\r\n"));
    b.push(at("ATE0\r\n", "ATE0\r\r\nOK\r\n"));
    b.push(ok("AT\r\n"));
    b.push(ok("AT+CMEE=1\r\n"));
    b.push(at("AT+CGMM\r\n", info_ok("LARA-R6001D")));
    assert_eq!(m.power_on(), Err(PowerError::UnsupportedModel));
    b.done();
}

#[test]
fn a_vint_high_but_deaf_is_reset_not_pulsed() {
    let b = Bench::new();
    b.script.set_vint(true);
    let mut m = b.modem(ModemConfig::new(Family::R5));
    b.push([tx("AT\r\n"), tx("AT\r\n"), tx("AT\r\n")]);
    b.push([tx("AT\r\n"), rx_after(600, "AT\r\r\nOK\r\n")]);
    b.push(init_steps(Family::R5));
    m.power_on().unwrap();
    assert!(b.script.pulses("PWR_ON").is_empty());
    assert_eq!(b.script.pulses("RESET_N")[0].1, 200 * MS);
    b.done();
}

/// Options that will grow are `#[non_exhaustive]`; what a caller must build is still built in
/// a `const` through `const fn`s.
#[test]
fn options_are_built_with_const_fns() {
    use modem_ublox::{Auth, Interventions};
    const IV: Interventions = Interventions::NONE.with_attach(true).with_reselect(true);
    const APN: Apn<'static> = Apn::new("internet")
        .with_credentials("user", "secret")
        .with_auth(Auth::Chap);
    const REG: Registration<'static> = Registration::new(60_000)
        .with_interventions(IV)
        .with_eps_apn("internet");
    assert_eq!(
        (IV.reselect, IV.radio_cycle_on_denied, IV.attach),
        (true, false, true)
    );
    assert_eq!(
        (APN.name, APN.user, APN.password, APN.auth),
        ("internet", Some("user"), Some("secret"), Auth::Chap)
    );
    assert_eq!(REG.interventions, IV);
    assert_eq!(REG.eps_apn, Some("internet"));
    assert_eq!(
        Interventions::NONE
            .with_reselect(true)
            .with_radio_cycle_on_denied(true)
            .with_attach(true),
        Interventions::ALL
    );
}
