//! PWR_ON, RESET_N and V_INT per model (research 2.1, 2.2, 2.3, 6.16).

mod common;

use std::time::Duration;

use common::*;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use modem_ublox_emu::{Action, Emulator, Fault, Model, Trigger};

fn pulse(emu: &Emulator, pin: &mut impl OutputPin, low: Duration) {
    pin.set_low().unwrap();
    emu.delay()
        .delay_us(u32::try_from(low.as_micros()).unwrap());
    pin.set_high().unwrap();
}

#[test]
fn too_short_pulse_does_nothing_right_pulse_boots() {
    let cases = [
        (
            Model::SaraU260,
            Duration::from_micros(40),
            Duration::from_micros(60),
        ),
        (
            Model::SaraU201,
            Duration::from_micros(40),
            Duration::from_micros(60),
        ),
        (
            Model::SaraG350,
            Duration::from_millis(4),
            Duration::from_millis(6),
        ),
        (
            Model::SaraR410M,
            Duration::from_millis(140),
            Duration::from_millis(200),
        ),
        (
            Model::SaraR510S,
            Duration::from_millis(900),
            Duration::from_millis(1500),
        ),
    ];
    for (model, short, good) in cases {
        let emu = Emulator::new(model);
        let mut u = emu.uart();
        let mut pwr = emu.pwr_on();
        let mut vint = emu.vint();
        if model == Model::SaraU201 {
            // research 2.3: the U201 switches itself on when its supply rises.
            assert!(!emu.is_off());
            continue;
        }
        pulse(&emu, &mut pwr, short);
        emu.advance(Duration::from_secs(10));
        assert!(
            vint.is_low().unwrap(),
            "{model:?}: short pulse must do nothing"
        );
        eq(&tx(&emu, &mut u, b"AT\r\n", Duration::from_secs(1)), b"");

        pulse(&emu, &mut pwr, good);
        emu.advance(Duration::from_millis(50));
        assert!(vint.is_high().unwrap(), "{model:?}");
        // V_INT is up but the UART does not answer before the boot time.
        eq(
            &tx(&emu, &mut u, b"AT\r\n", Duration::from_millis(100)),
            b"",
        );
        let boot = wait(&emu, &mut u, Duration::from_secs(10));
        let garbage: &[u8] = if model == Model::SaraR410M {
            b"\0\0"
        } else {
            b""
        };
        eq(&boot, garbage);
        eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
    }
}

#[test]
fn u201_boots_on_supply() {
    let emu = Emulator::new(Model::SaraU201);
    let mut u = emu.uart();
    wait(&emu, &mut u, Duration::from_secs(5));
    assert!(emu.is_on());
    eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
}

#[test]
fn power_off_pulse_per_model() {
    for model in [
        Model::SaraU260,
        Model::SaraR410M,
        Model::SaraR510S,
        Model::SaraG350,
    ] {
        let emu = Emulator::new(model);
        emu.power_on_now();
        let mut pwr = emu.pwr_on();
        let mut vint = emu.vint();
        // Shorter than the power-off minimum: stays on.
        pulse(&emu, &mut pwr, Duration::from_millis(500));
        emu.advance(Duration::from_secs(3));
        assert!(vint.is_high().unwrap(), "{model:?}");
        pulse(&emu, &mut pwr, Duration::from_millis(1600));
        emu.advance(Duration::from_secs(3));
        if model == Model::SaraG350 {
            // PR #2229: the G350 cannot be switched off with PWR_ON.
            assert!(vint.is_high().unwrap());
            assert!(emu.is_on());
        } else {
            assert!(vint.is_low().unwrap(), "{model:?}");
            assert!(emu.is_off());
        }
    }
}

#[test]
fn reset_reboots_u2_g3_r5_and_switches_r410_off() {
    for model in [Model::SaraU260, Model::SaraG350, Model::SaraR510S] {
        let emu = Emulator::new(model);
        emu.power_on_now();
        let mut u = emu.uart();
        at(&emu, &mut u, "ATE0\r\n");
        let mut reset = emu.reset();
        pulse(&emu, &mut reset, Duration::from_millis(10));
        eq(&at(&emu, &mut u, "AT\r\n"), b"\r\nOK\r\n");
        pulse(&emu, &mut reset, Duration::from_millis(300));
        eq(
            &tx(&emu, &mut u, b"AT\r\n", Duration::from_millis(100)),
            b"",
        );
        wait(&emu, &mut u, Duration::from_secs(6));
        // Rebooted: echo on again.
        eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
    }
    let emu = Emulator::new(Model::SaraR410M);
    emu.power_on_now();
    let mut vint = emu.vint();
    let mut reset = emu.reset();
    pulse(&emu, &mut reset, Duration::from_millis(300));
    assert!(vint.is_high().unwrap());
    pulse(&emu, &mut reset, Duration::from_secs(10));
    assert!(vint.is_low().unwrap());
    assert!(emu.is_off());
}

#[test]
fn r510_ignores_pins_when_told_and_vint_can_stick() {
    let emu = Emulator::new(Model::SaraR510S);
    emu.power_on_now();
    let mut pwr = emu.pwr_on();
    let mut reset = emu.reset();
    let mut vint = emu.vint();
    emu.add_fault(Fault::new(Trigger::at_ms(0), Action::IgnorePwrOn));
    emu.add_fault(Fault::new(Trigger::at_ms(0), Action::IgnoreReset));
    emu.advance(Duration::from_millis(1));
    pulse(&emu, &mut pwr, Duration::from_millis(1600));
    pulse(&emu, &mut reset, Duration::from_millis(300));
    emu.advance(Duration::from_secs(3));
    assert!(emu.is_on());

    let emu = Emulator::new(Model::SaraU260);
    emu.power_on_now();
    let mut u = emu.uart();
    let mut vint2 = emu.vint();
    emu.add_fault(Fault::new(Trigger::at_ms(0), Action::VintStuckHigh));
    at(&emu, &mut u, "AT+CPWROFF\r\n");
    emu.advance(Duration::from_secs(3));
    assert!(emu.is_off());
    assert!(vint2.is_high().unwrap(), "back-powered V_INT reads high");
    assert!(vint.is_high().unwrap());
}

#[test]
fn off_module_answers_nothing_and_loses_state() {
    let emu = Emulator::new(Model::SaraR410M);
    emu.power_on_now();
    let mut u = emu.uart();
    at(&emu, &mut u, "ATE0\r\n");
    at(&emu, &mut u, "AT+CPWROFF\r\n");
    emu.advance(Duration::from_secs(3));
    eq(&tx(&emu, &mut u, b"AT\r\n", Duration::from_secs(3)), b"");
    let mut pwr = emu.pwr_on();
    pulse(&emu, &mut pwr, Duration::from_millis(200));
    eq(&wait(&emu, &mut u, Duration::from_secs(6)), b"\0\0");
    eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
}
