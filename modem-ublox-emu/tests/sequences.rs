//! Research file section 5, A–H: the command bytes in, the exact bytes out,
//! per model where the models differ.

mod common;

use std::time::Duration;

use common::*;
use modem_ublox_emu::{
    Action, Auth, Emulator, EmulatorConfig, Fault, Model, Position, RegStat, Trigger, UupsdaOrder,
};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn with(model: Model, f: impl FnOnce(&mut EmulatorConfig)) -> (Emulator, modem_ublox_emu::Uart) {
    let mut cfg = EmulatorConfig::for_model(model);
    f(&mut cfg);
    let emu = Emulator::with_config(model, cfg);
    emu.power_on_now();
    let uart = emu.uart();
    (emu, uart)
}

// ----- A. Boot / sync -----------------------------------------------------------

#[test]
fn a_echo_on_after_boot_then_ate0() {
    for model in Model::ALL {
        let (emu, mut u) = on(model);
        eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
        eq(&at(&emu, &mut u, "ATE0\r\n"), b"ATE0\r\r\nOK\r\n");
        eq(&at(&emu, &mut u, "AT\r\n"), b"\r\nOK\r\n");
        eq(&at(&emu, &mut u, "AT+CMEE=1\r\n"), b"\r\nOK\r\n");
        eq(&at(&emu, &mut u, "AT+CMEE=2\r\n"), b"\r\nOK\r\n");
    }
}

#[test]
fn a_bare_cr_terminator_works_too() {
    let (emu, mut u) = on(Model::SaraU260);
    eq(&at(&emu, &mut u, "AT\r"), b"AT\r\r\nOK\r\n");
}

#[test]
fn a_model_strings() {
    let want = [
        (Model::SaraU260, "SARA-U260"),
        (Model::SaraU270, "SARA-U270"),
        (Model::SaraU201, "SARA-U201"),
        (Model::SaraG350, "SARA-G350"),
        (Model::SaraR410M, "SARA-R410M-02B"),
        (Model::SaraR510S, "SARA-R510S-01B"),
    ];
    for (model, name) in want {
        let (emu, mut u) = online_echo_off(model);
        eq(
            &at(&emu, &mut u, "AT+CGMM\r\n"),
            format!("\r\n{name}\r\n\r\nOK\r\n").as_bytes(),
        );
    }
}

fn online_echo_off(model: Model) -> (Emulator, modem_ublox_emu::Uart) {
    let (emu, mut u) = on(model);
    at(&emu, &mut u, "ATE0\r\n");
    (emu, u)
}

#[test]
fn a_ati9_firmware_versions() {
    for (model, fw) in [
        (Model::SaraG350, "08.90,A01.13"),
        (Model::SaraR410M, "L0.0.00.00.05.08,A.02.04"),
        (Model::SaraR510S, "02.06,A00.01"),
    ] {
        let (emu, mut u) = online_echo_off(model);
        eq(
            &at(&emu, &mut u, "ATI9\r\n"),
            format!("\r\n{fw}\r\n\r\nOK\r\n").as_bytes(),
        );
    }
}

#[test]
fn a_ati_on_u2_g3_answers_ok_before_the_type_the_first_time() {
    let (emu, mut u) = online_echo_off(Model::SaraG350);
    eq(
        &at(&emu, &mut u, "ATI\r\n"),
        b"\r\nOK\r\n\r\nSARA-G350-00S-00\r\n",
    );
    eq(
        &at(&emu, &mut u, "ATI\r\n"),
        b"\r\nSARA-G350-00S-00\r\n\r\nOK\r\n",
    );
    let (emu, mut u) = online_echo_off(Model::SaraR410M);
    eq(
        &at(&emu, &mut u, "ATI\r\n"),
        b"\r\nSARA-R410M-02B-00\r\n\r\nOK\r\n",
    );
}

#[test]
fn a_uart_setup_commands() {
    for model in Model::ALL {
        let (emu, mut u) = online_echo_off(model);
        eq(&at(&emu, &mut u, "AT+IPR=115200\r\n"), b"\r\nOK\r\n");
        eq(&at(&emu, &mut u, "AT&K3\r\n"), b"\r\nOK\r\n");
        eq(&at(&emu, &mut u, "AT+IFC=2,2\r\n"), b"\r\nOK\r\n");
        eq(
            &at(&emu, &mut u, "AT+IFC?\r\n"),
            b"\r\n+IFC: 2,2\r\n\r\nOK\r\n",
        );
        let upsv = at(&emu, &mut u, "AT+UPSV=0\r\n");
        if model == Model::SaraR410M {
            // research 3.5: R410 does not support +UPSV.
            eq(&upsv, b"\r\nERROR\r\n");
        } else {
            eq(&upsv, b"\r\nOK\r\n");
        }
    }
}

#[test]
fn a_unknown_command_is_error() {
    let (emu, mut u) = online_echo_off(Model::SaraU260);
    at(&emu, &mut u, "AT+CMEE=2\r\n");
    eq(&at(&emu, &mut u, "AT+NOPE\r\n"), b"\r\nERROR\r\n");
    eq(
        &at(&emu, &mut u, "AT+CMEE=7\r\n"),
        b"\r\n+CME ERROR: Operation not supported\r\n",
    );
    // The U2 has no +CEREG.
    eq(&at(&emu, &mut u, "AT+CEREG?\r\n"), b"\r\nERROR\r\n");
}

// ----- B. SIM --------------------------------------------------------------------

#[test]
fn b_sim_ready_ccid_cimi() {
    for model in Model::ALL {
        let (emu, mut u) = online_echo_off(model);
        eq(
            &at(&emu, &mut u, "AT+CPIN?\r\n"),
            b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
        );
        eq(
            &at(&emu, &mut u, "AT+CCID\r\n"),
            b"\r\n+CCID: 8934071100270000000\r\n\r\nOK\r\n",
        );
        eq(
            &at(&emu, &mut u, "AT+CIMI\r\n"),
            b"\r\n240071234567890\r\n\r\nOK\r\n",
        );
    }
}

#[test]
fn b_sim_not_inserted_numeric_and_verbose() {
    let (emu, mut u) = with(Model::SaraU260, |c| c.sim.present = false);
    at(&emu, &mut u, "ATE0\r\n");
    eq(&at(&emu, &mut u, "AT+CPIN?\r\n"), b"\r\nERROR\r\n");
    at(&emu, &mut u, "AT+CMEE=2\r\n");
    eq(
        &at(&emu, &mut u, "AT+CPIN?\r\n"),
        b"\r\n+CME ERROR: SIM not inserted\r\n",
    );
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    eq(&at(&emu, &mut u, "AT+CPIN?\r\n"), b"\r\n+CME ERROR: 10\r\n");
    eq(&at(&emu, &mut u, "AT+CIMI\r\n"), b"\r\n+CME ERROR: 10\r\n");
}

#[test]
fn b_sim_busy_after_boot_then_ready() {
    let (emu, mut u) = with(Model::SaraR410M, |c| c.sim.busy_after_boot = SECS(2));
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    eq(&at(&emu, &mut u, "AT+CPIN?\r\n"), b"\r\n+CME ERROR: 14\r\n");
    wait(&emu, &mut u, SECS(2));
    eq(
        &at(&emu, &mut u, "AT+CPIN?\r\n"),
        b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
    );
}

#[test]
fn b_sim_pin() {
    let (emu, mut u) = with(Model::SaraU201, |c| c.sim.pin = Some("1234".into()));
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    eq(
        &at(&emu, &mut u, "AT+CPIN?\r\n"),
        b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n",
    );
    eq(&at(&emu, &mut u, "AT+CIMI\r\n"), b"\r\n+CME ERROR: 11\r\n");
    eq(
        &at(&emu, &mut u, "AT+CPIN=\"0000\"\r\n"),
        b"\r\n+CME ERROR: 16\r\n",
    );
    eq(&at(&emu, &mut u, "AT+CPIN=\"1234\"\r\n"), b"\r\nOK\r\n");
    eq(
        &at(&emu, &mut u, "AT+CPIN?\r\n"),
        b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
    );
    // Registration only starts once the PIN is in.
    wait(&emu, &mut u, SECS(3));
    assert_eq!(emu.registration().0, RegStat::Home);
}

// ----- C. Registration (U2/G3) ----------------------------------------------------

#[test]
fn c_registration_queries_u2() {
    let (emu, mut u) = with(Model::SaraU260, |c| {
        c.network.outcome = RegStat::Roaming;
    });
    at(&emu, &mut u, "ATE0\r\n");
    eq(
        &at(&emu, &mut u, "AT+CFUN?\r\n"),
        b"\r\n+CFUN: 1,0\r\n\r\nOK\r\n",
    );
    eq(&at(&emu, &mut u, "AT+CREG=2\r\n"), b"\r\nOK\r\n");
    eq(&at(&emu, &mut u, "AT+CGREG=2\r\n"), b"\r\nOK\r\n");
    // Not registered yet (searching): no location fields.
    eq(
        &at(&emu, &mut u, "AT+CREG?\r\n"),
        b"\r\n+CREG: 2,2\r\n\r\nOK\r\n",
    );
    let urcs = wait(&emu, &mut u, SECS(5));
    eq(
        &urcs,
        b"\r\n+CREG: 5,\"9E9A\",\"019624BD\",2\r\n\r\n+CGREG: 5,\"9E9A\",\"019624BD\",2,\"02\"\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+CREG?\r\n"),
        b"\r\n+CREG: 2,5,\"9E9A\",\"019624BD\",2\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+COPS?\r\n"),
        b"\r\n+COPS: 0,0,\"3 DK\",2\r\n\r\nOK\r\n",
    );
}

#[test]
fn c_cgreg_query_matches_the_research_capture() {
    let (emu, mut u) = with(Model::SaraU270, |c| c.network.ci = "019607C0".into());
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CGREG=2\r\n");
    wait(&emu, &mut u, SECS(5));
    eq(
        &at(&emu, &mut u, "AT+CGREG?\r\n"),
        b"\r\n+CGREG: 2,1,\"9E9A\",\"019607C0\",2,\"02\"\r\n\r\nOK\r\n",
    );
}

#[test]
fn c_creg_urc_shape_differs_from_the_query() {
    let (emu, mut u) = with(Model::SaraU260, |c| {
        c.network.outcome = RegStat::Roaming;
        c.network.ci = "0196BDB0".into();
    });
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CREG=2\r\n");
    let urcs = wait(&emu, &mut u, SECS(3));
    eq(&urcs, b"\r\n+CREG: 5,\"9E9A\",\"0196BDB0\",2\r\n");
    // n=1: the URC carries only <stat>.
    at(&emu, &mut u, "AT+CREG=1\r\n");
    at(&emu, &mut u, "AT+CGREG=1\r\n");
    let r = at(&emu, &mut u, "AT+COPS=2\r\n");
    eq(&r, b"\r\n+CREG: 0\r\n\r\n+CGREG: 0\r\n\r\nOK\r\n");
    eq(
        &at(&emu, &mut u, "AT+COPS?\r\n"),
        b"\r\n+COPS: 2\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+COPS=0,2\r\n"),
        b"\r\n+CREG: 2\r\n\r\n+CGREG: 2\r\n\r\nOK\r\n",
    );
    wait(&emu, &mut u, SECS(5));
    eq(
        &at(&emu, &mut u, "AT+COPS?\r\n"),
        b"\r\n+COPS: 0,2,\"23806\",2\r\n\r\nOK\r\n",
    );
}

#[test]
fn c_g350_has_no_act_fields() {
    let (emu, mut u) = with(Model::SaraG350, |c| c.network.outcome = RegStat::Roaming);
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CREG=2\r\n");
    at(&emu, &mut u, "AT+CGREG=2\r\n");
    let urcs = wait(&emu, &mut u, SECS(5));
    eq(
        &urcs,
        b"\r\n+CREG: 5,\"9E9A\",\"019624BD\"\r\n\r\n+CGREG: 5,\"9E9A\",\"019624BD\"\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+COPS?\r\n"),
        b"\r\n+COPS: 0,0,\"3 DK\"\r\n\r\nOK\r\n",
    );
}

#[test]
fn c_brown_out_signature_creg_n_back_to_zero() {
    let (emu, mut u) = online_echo_off(Model::SaraU260);
    at(&emu, &mut u, "AT+CREG=2\r\n");
    wait(&emu, &mut u, SECS(5));
    emu.add_fault(Fault::new(
        Trigger::at_ms(emu.now() / 1000 + 10),
        Action::Reboot {
            garbage: vec![0, 0],
        },
    ));
    let r = wait(&emu, &mut u, SECS(10));
    eq(&r, b"\0\0");
    // Echo is back on and n is 0 again: "+CREG: 0,1".
    eq(
        &at(&emu, &mut u, "AT+CREG?\r\n"),
        b"AT+CREG?\r\r\n+CREG: 0,1\r\n\r\nOK\r\n",
    );
}

// ----- C'. Registration (R4/R5) ---------------------------------------------------

#[test]
fn c_prime_cereg_query_and_urc() {
    let (emu, mut u) = with(Model::SaraR410M, |c| c.network.outcome = RegStat::Roaming);
    at(&emu, &mut u, "ATE0\r\n");
    eq(&at(&emu, &mut u, "AT+CEREG=2\r\n"), b"\r\nOK\r\n");
    wait(&emu, &mut u, SECS(5));
    eq(
        &at(&emu, &mut u, "AT+CEREG?\r\n"),
        b"\r\n+CEREG: 2,5,\"1A2B\",\"01A2B3C4\",7\r\n\r\nOK\r\n",
    );

    let (emu, mut u) = with(Model::SaraR510S, |c| {
        c.network.lac = "2F11".into();
        c.network.ci = "1B18207".into();
    });
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CEREG=2\r\n");
    eq(
        &wait(&emu, &mut u, SECS(5)),
        b"\r\n+CEREG: 1,\"2F11\",\"1B18207\",7\r\n",
    );
}

#[test]
fn c_prime_urat_and_cgdcont() {
    let (emu, mut u) = online_echo_off(Model::SaraR410M);
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    eq(
        &at(&emu, &mut u, "AT+URAT?\r\n"),
        b"\r\n+URAT: 7,8\r\n\r\nOK\r\n",
    );
    // Needs the radio off first (Particle: CFUN=4, then URAT=7).
    eq(&at(&emu, &mut u, "AT+URAT=7\r\n"), b"\r\n+CME ERROR: 3\r\n");
    eq(&at(&emu, &mut u, "AT+CFUN=4\r\n"), b"\r\nOK\r\n");
    eq(&at(&emu, &mut u, "AT+URAT=7\r\n"), b"\r\nOK\r\n");
    eq(
        &at(&emu, &mut u, "AT+URAT?\r\n"),
        b"\r\n+URAT: 7\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+CGDCONT=1,\"IP\",\"apn\"\r\n"),
        b"\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+CGDCONT?\r\n"),
        b"\r\n+CGDCONT: 1,\"IP\",\"apn\",\"0.0.0.0\",0,0,0,2,0,0,0,0,0,0,0\r\n\r\nOK\r\n",
    );
}

// ----- D. PDP (U2/G3) -------------------------------------------------------------

#[test]
fn d_pdp_activation_u2_g3() {
    for model in [Model::SaraU260, Model::SaraU201, Model::SaraG350] {
        let (emu, mut u) = online_echo_off(model);
        wait(&emu, &mut u, SECS(5));
        eq(&at(&emu, &mut u, "AT+CGATT=1\r\n"), b"\r\nOK\r\n");
        eq(
            &at(&emu, &mut u, "AT+CGATT?\r\n"),
            b"\r\n+CGATT: 1\r\n\r\nOK\r\n",
        );
        eq(
            &at(&emu, &mut u, "AT+UPSND=0,8\r\n"),
            b"\r\n+UPSND: 0,8,0\r\n\r\nOK\r\n",
        );
        eq(&at(&emu, &mut u, "AT+UPSD=0,1,\"apn\"\r\n"), b"\r\nOK\r\n");
        eq(
            &at(&emu, &mut u, "AT+UPSD=0,7,\"0.0.0.0\"\r\n"),
            b"\r\nOK\r\n",
        );
        eq(&at(&emu, &mut u, "AT+UPSD=0,6,0\r\n"), b"\r\nOK\r\n");
        eq(
            &at(&emu, &mut u, "AT+UPSD=0,1\r\n"),
            b"\r\n+UPSD: 0,1,\"apn\"\r\n\r\nOK\r\n",
        );
        // Activation takes 1.5 s: nothing after 1 s.
        eq(&tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(1)), b"");
        eq(
            &wait(&emu, &mut u, SECS(1)),
            b"\r\nOK\r\n\r\n+UUPSDA: 0,\"10.174.88.81\"\r\n",
        );
        eq(
            &at(&emu, &mut u, "AT+UPSND=0,8\r\n"),
            b"\r\n+UPSND: 0,8,1\r\n\r\nOK\r\n",
        );
        eq(
            &at(&emu, &mut u, "AT+UPSND=0,0\r\n"),
            b"\r\n+UPSND: 0,0,\"10.174.88.81\"\r\n\r\nOK\r\n",
        );
        // Later the network drops it.
        emu.add_fault(Fault::new(
            Trigger::at_ms(emu.now() / 1000 + 1),
            Action::PdpLost,
        ));
        eq(&wait(&emu, &mut u, SECS(1)), b"\r\n+UUPSDD: 0\r\n");
        eq(
            &at(&emu, &mut u, "AT+UPSND=0,8\r\n"),
            b"\r\n+UPSND: 0,8,0\r\n\r\nOK\r\n",
        );
    }
}

#[test]
fn d_uupsda_may_come_before_ok() {
    let (emu, mut u) = with(Model::SaraU260, |c| c.pdp.uupsda = UupsdaOrder::BeforeOk);
    at(&emu, &mut u, "ATE0\r\n");
    wait(&emu, &mut u, SECS(5));
    eq(
        &tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(3)),
        b"\r\n+UUPSDA: 0,\"10.174.88.81\"\r\n\r\nOK\r\n",
    );
}

#[test]
fn d_pdp_errors() {
    let (emu, mut u) = with(Model::SaraU260, |c| {
        c.pdp.apn = Some("internet".into());
        c.pdp.auth = Some(Auth::Pap);
    });
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    // Not registered yet.
    eq(
        &tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(3)),
        b"\r\n+CME ERROR: 148\r\n",
    );
    wait(&emu, &mut u, SECS(5));
    at(&emu, &mut u, "AT+UPSD=0,1,\"wrong\"\r\n");
    eq(
        &tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(3)),
        b"\r\n+CME ERROR: 133\r\n",
    );
    at(&emu, &mut u, "AT+UPSD=0,1,\"internet\"\r\n");
    at(&emu, &mut u, "AT+UPSD=0,6,0\r\n");
    eq(
        &tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(3)),
        b"\r\n+CME ERROR: 149\r\n",
    );
    at(&emu, &mut u, "AT+UPSD=0,6,1\r\n");
    eq(
        &tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(3)),
        b"\r\nOK\r\n\r\n+UUPSDA: 0,\"10.174.88.81\"\r\n",
    );
}

#[test]
fn d_r4_has_no_upsd_and_u2_no_cgact() {
    let (emu, mut u) = online_echo_off(Model::SaraR410M);
    eq(&at(&emu, &mut u, "AT+UPSDA=0,3\r\n"), b"\r\nERROR\r\n");
    let (emu, mut u) = online_echo_off(Model::SaraU260);
    eq(&at(&emu, &mut u, "AT+CGACT?\r\n"), b"\r\nERROR\r\n");
}

// ----- D'. PDP (R4) -----------------------------------------------------------------

#[test]
fn d_prime_r4_default_bearer() {
    let (emu, mut u) = with(Model::SaraR410M, |c| {
        c.pdp.ip = "10.39.187.185".parse().unwrap();
    });
    at(&emu, &mut u, "ATE0\r\n");
    eq(
        &at(&emu, &mut u, "AT+CGACT?\r\n"),
        b"\r\n+CGACT: 1,0\r\n\r\nOK\r\n",
    );
    wait(&emu, &mut u, SECS(5));
    eq(
        &at(&emu, &mut u, "AT+CGACT?\r\n"),
        b"\r\n+CGACT: 1,1\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+CGPADDR=1\r\n"),
        b"\r\n+CGPADDR: 1,\"10.39.187.185\"\r\n\r\nOK\r\n",
    );
}

#[test]
fn d_prime_r5_upsd_mapping() {
    let (emu, mut u) = online_echo_off(Model::SaraR510S);
    at(&emu, &mut u, "AT+CMEE=1\r\n");
    wait(&emu, &mut u, SECS(5));
    eq(
        &tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(3)),
        b"\r\n+CME ERROR: 3\r\n",
    );
    eq(&at(&emu, &mut u, "AT+UPSD=0,100,1\r\n"), b"\r\nOK\r\n");
    eq(
        &tx(&emu, &mut u, b"AT+UPSDA=0,3\r\n", SECS(3)),
        b"\r\nOK\r\n\r\n+UUPSDA: 0,\"10.174.88.81\"\r\n",
    );
}

// ----- E. TCP (the loopback part is in sockets.rs) --------------------------------

#[test]
fn e_socket_create_and_unreachable_connect() {
    for model in Model::ALL {
        let (emu, mut u) = online(model, 2);
        eq(
            &at(&emu, &mut u, "AT+USOCR=6\r\n"),
            b"\r\n+USOCR: 0\r\n\r\nOK\r\n",
        );
        eq(
            &at(&emu, &mut u, "AT+USOCTL=0,0\r\n"),
            b"\r\n+USOCTL: 0,0,6\r\n\r\nOK\r\n",
        );
        // 52.1.2.3 is never contacted: the connect fails like an unreachable host.
        let r = tx(&emu, &mut u, b"AT+USOCO=0,\"52.1.2.3\",5684\r\n", SECS(130));
        eq(&r, b"\r\n+CME ERROR: Operation not allowed\r\n");
        eq(
            &at(&emu, &mut u, "AT+USOER\r\n"),
            b"\r\n+USOER: 110\r\n\r\nOK\r\n",
        );
        eq(&at(&emu, &mut u, "AT+USOCL=0\r\n"), b"\r\nOK\r\n");
        eq(
            &at(&emu, &mut u, "AT+USOCTL=0,0\r\n"),
            b"\r\n+CME ERROR: Operation not allowed\r\n",
        );
    }
}

#[test]
fn e_seven_sockets_then_error() {
    let (emu, mut u) = online(Model::SaraU260, 1);
    for i in 0..7 {
        eq(
            &at(&emu, &mut u, "AT+USOCR=6\r\n"),
            format!("\r\n+USOCR: {i}\r\n\r\nOK\r\n").as_bytes(),
        );
    }
    eq(
        &at(&emu, &mut u, "AT+USOCR=17\r\n"),
        b"\r\n+CME ERROR: 3\r\n",
    );
}

// ----- F. UDP (the loopback part is in sockets.rs) ---------------------------------

#[test]
fn f_udp_socket_ids_and_zero_length_rejected() {
    let (emu, mut u) = online(Model::SaraU201, 1);
    eq(
        &at(&emu, &mut u, "AT+USOCR=6\r\n"),
        b"\r\n+USOCR: 0\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOCR=17\r\n"),
        b"\r\n+USOCR: 1\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOST=1,\"185.15.72.251\",123,0\r\n"),
        b"\r\n+CME ERROR: 4\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+USOCTL=1,0\r\n"),
        b"\r\n+USOCTL: 1,0,17\r\n\r\nOK\r\n",
    );
}

// ----- G. Power-down ------------------------------------------------------------------

#[test]
fn g_cpwroff_then_vint_low() {
    use embedded_hal::digital::InputPin;
    for model in Model::ALL {
        let (emu, mut u) = online_echo_off(model);
        let mut vint = emu.vint();
        assert!(vint.is_high().unwrap());
        eq(&at(&emu, &mut u, "AT+CPWROFF\r\n"), b"\r\nOK\r\n");
        wait(&emu, &mut u, SECS(2));
        assert!(vint.is_low().unwrap(), "{model:?}");
        assert!(emu.is_off());
        // A switched-off module answers nothing.
        eq(&tx(&emu, &mut u, b"AT\r\n", SECS(5)), b"");
    }
}

#[test]
fn g_cpwroff_aborted_then_retry() {
    let (emu, mut u) = online_echo_off(Model::SaraU260);
    emu.add_fault(Fault::new(
        Trigger::nth("AT+CPWROFF", 1),
        Action::Fail(modem_ublox_emu::ErrorReply::Aborted),
    ));
    eq(&at(&emu, &mut u, "AT+CPWROFF\r\n"), b"\r\nABORTED\r\n");
    assert!(emu.is_on());
    eq(&at(&emu, &mut u, "AT+CPWROFF\r\n"), b"\r\nOK\r\n");
    wait(&emu, &mut u, SECS(2));
    assert!(emu.is_off());
}

#[test]
fn g_soft_reset_brings_echo_back() {
    for (model, cmd) in [
        (Model::SaraU201, "AT+CFUN=16\r\n"),
        (Model::SaraR410M, "AT+CFUN=15\r\n"),
        (Model::SaraR510S, "AT+CFUN=16\r\n"),
    ] {
        let (emu, mut u) = online_echo_off(model);
        at(&emu, &mut u, "AT+CMEE=2\r\n");
        eq(&at(&emu, &mut u, cmd), b"\r\nOK\r\n");
        // Rebooting: not answering.
        eq(
            &tx(&emu, &mut u, b"AT\r\n", Duration::from_millis(100)),
            b"",
        );
        let boot = wait(&emu, &mut u, SECS(10));
        let garbage: &[u8] = if model == Model::SaraR410M {
            b"\0\0"
        } else {
            b""
        };
        eq(&boot, garbage);
        eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
        // CMEE is back to 0.
        eq(
            &at(&emu, &mut u, "AT+CMEE?\r\n"),
            b"AT+CMEE?\r\r\n+CMEE: 0\r\n\r\nOK\r\n",
        );
    }
}

// ----- H. R4/R5 low power ---------------------------------------------------------------

#[test]
fn h_psm_and_edrx_commands() {
    let (emu, mut u) = with(Model::SaraR410M, |c| {
        c.network.psm_granted = Some(("00111001".into(), "00001010".into()));
    });
    at(&emu, &mut u, "ATE0\r\n");
    wait(&emu, &mut u, SECS(5));
    eq(
        &at(&emu, &mut u, "AT+CPSMS=1,,,\"00111000\",\"00001010\"\r\n"),
        b"\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+CPSMS?\r\n"),
        b"\r\n+CPSMS:1,,,\"00111000\",\"00001010\"\r\n\r\nOK\r\n",
    );
    eq(
        &at(&emu, &mut u, "AT+UCPSMS?\r\n"),
        b"\r\n+UCPSMS: 1,,,\"00111001\",\"00001010\"\r\n\r\nOK\r\n",
    );
    eq(&at(&emu, &mut u, "AT+UPSMR=1\r\n"), b"\r\nOK\r\n");
    eq(&at(&emu, &mut u, "AT+CEDRXS=3,7\r\n"), b"\r\nOK\r\n");
    eq(
        &at(&emu, &mut u, "AT+CEDRXS?\r\n"),
        b"\r\n+CEDRXS:\r\n\r\nOK\r\n",
    );
    // The PSM URC itself is not generated by the emulator; a fault injects it.
    emu.add_fault(Fault::new(
        Trigger::nth("AT", 1),
        Action::urc("+UUPSMR: 1", Position::AfterFinal),
    ));
    eq(&at(&emu, &mut u, "AT\r\n"), b"\r\nOK\r\n\r\n+UUPSMR: 1\r\n");
}

#[test]
fn e_r4_async_close_then_uusocl() {
    let (emu, mut u) = online(Model::SaraR410M, 1);
    eq(
        &at(&emu, &mut u, "AT+USOCR=6\r\n"),
        b"\r\n+USOCR: 0\r\n\r\nOK\r\n",
    );
    let mut r = at(&emu, &mut u, "AT+USOCL=0,1\r\n");
    r.extend(wait(&emu, &mut u, Duration::from_millis(50)));
    eq(&r, b"\r\nOK\r\n\r\n+UUSOCL: 0\r\n");
    eq(
        &at(&emu, &mut u, "AT+USOCTL=0,0\r\n"),
        b"\r\n+CME ERROR: 3\r\n",
    );
    // U2/G3 have no asynchronous close.
    let (emu, mut u) = online(Model::SaraU260, 1);
    at(&emu, &mut u, "AT+USOCR=6\r\n");
    eq(
        &at(&emu, &mut u, "AT+USOCL=0,1\r\n"),
        b"\r\n+CME ERROR: 4\r\n",
    );
}
