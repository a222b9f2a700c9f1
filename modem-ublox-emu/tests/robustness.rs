//! Random input must never panic the emulator, and it must stay consistent
//! (deterministic seeds; no real network traffic: the only addresses used are
//! in TEST-NET-1, which the emulator never contacts).

mod common;

use std::time::Duration;

use common::*;
use embedded_hal::digital::OutputPin;
use embedded_io::{Read, ReadReady, Write};
use modem_ublox_emu::{Action, Emulator, Fault, Model, Trigger};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const COMMANDS: &[&str] = &[
    "AT",
    "ATE0",
    "ATE1",
    "ATI",
    "ATI9",
    "AT+CGMM",
    "AT+CMEE=",
    "AT+CPIN?",
    "AT+CPIN=",
    "AT+CCID",
    "AT+CIMI",
    "AT+CFUN=",
    "AT+CFUN?",
    "AT+COPS=",
    "AT+COPS?",
    "AT+CREG=",
    "AT+CREG?",
    "AT+CGREG=",
    "AT+CEREG=",
    "AT+CEREG?",
    "AT+CGATT=",
    "AT+UPSD=",
    "AT+UPSDA=",
    "AT+UPSND=",
    "AT+CGDCONT=",
    "AT+CGDCONT?",
    "AT+CGACT=",
    "AT+CGPADDR=",
    "AT+USOCR=",
    "AT+USOCO=",
    "AT+USOWR=",
    "AT+USOST=",
    "AT+USORD=",
    "AT+USORF=",
    "AT+USOCL=",
    "AT+USOCTL=",
    "AT+USOER",
    "AT+UDCONF=",
    "AT+IPR=",
    "AT+UPSV=",
    "AT+URAT=",
    "AT+CPSMS=",
    "AT&K",
    "AT+IFC=",
];

/// Well-formed commands, so that random runs also go deep into the state.
const VALID: &[&str] = &[
    "AT",
    "ATE0",
    "AT+CMEE=2",
    "AT+CREG=2",
    "AT+CGREG=1",
    "AT+CEREG=2",
    "AT+CFUN=1",
    "AT+CFUN=4",
    "AT+COPS=0",
    "AT+CGATT=1",
    "AT+UPSD=0,1,\"apn\"",
    "AT+UPSDA=0,3",
    "AT+UPSDA=0,4",
    "AT+CGACT=1,1",
    "AT+USOCR=6",
    "AT+USOCR=17",
    "AT+USOCO=0,\"192.0.2.7\",80",
    "AT+USOWR=0,5",
    "AT+USOWR=1,3,\"abc\"",
    "AT+USOST=1,\"192.0.2.7\",9,4",
    "AT+USOST=0,\"192.0.2.7\",9,4",
    "AT+USOCO=1,\"192.0.2.7\",80",
    "AT+USORD=0,0",
    "AT+USORD=0,16",
    "AT+USORF=1,16",
    "AT+USOCL=0",
    "AT+USOCTL=0,0",
    "AT+UDCONF=1,1",
    "AT+UDCONF=1,0",
    "AT+UPSV=1",
    "AT+CPSMS=1,,,\"00111000\",\"00001010\"",
    "AT+CFUN=16",
    "AT+IFC=2,2",
];

const ARGS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "6",
    "15",
    "16",
    "17",
    "100",
    "1024",
    "513",
    "-1",
    "99999999999",
    "\"192.0.2.7\"",
    "\"apn\"",
    "\"\"",
    "\"48656C6C\"",
    "\"unterminated",
    "",
    "?",
];

fn random_line(r: &mut Rng) -> Vec<u8> {
    let mut s = if r.below(2) == 0 {
        r.pick(VALID).to_string()
    } else {
        r.pick(COMMANDS).to_string()
    };
    if s.ends_with('=') {
        let n = r.below(5);
        let args: Vec<&str> = (0..n).map(|_| r.pick(ARGS)).collect();
        s.push_str(&args.join(","));
    }
    let mut b = s.into_bytes();
    match r.below(6) {
        0 => b.extend_from_slice(b"\r"),
        1 => {}
        _ => b.extend_from_slice(b"\r\n"),
    }
    b
}

fn random_bytes(r: &mut Rng) -> Vec<u8> {
    let n = 1 + r.below(40);
    (0..n).map(|_| r.next() as u8).collect()
}

fn run(model: Model, seed: u64) -> String {
    let emu = Emulator::new(model);
    emu.power_on_now();
    let mut u = emu.uart();
    let mut pwr = emu.pwr_on();
    let mut reset = emu.reset();
    let mut r = Rng(seed);
    let mut buf = [0u8; 256];
    for _ in 0..400 {
        match r.below(40) {
            0..=21 => {
                let line = random_line(&mut r);
                let _ = u.write(&line);
                emu.advance(Duration::from_micros(r.below(200_000)));
            }
            22..=25 => {
                let bytes = random_bytes(&mut r);
                let _ = u.write(&bytes);
            }
            26..=31 => emu.advance(Duration::from_micros(r.below(3_000_000))),
            32 => {
                let _ = pwr.set_low();
                emu.advance(Duration::from_micros(r.below(2_000_000)));
                let _ = pwr.set_high();
                emu.advance(Duration::from_secs(6));
            }
            33 => {
                let _ = reset.set_low();
                emu.advance(Duration::from_micros(r.below(200_000)));
                let _ = reset.set_high();
                emu.advance(Duration::from_secs(6));
            }
            34..=35 => {
                let action = match r.below(6) {
                    0 => Action::Reboot {
                        garbage: vec![0, 0],
                    },
                    1 => Action::PeerClose(r.below(8) as u8),
                    2 => Action::PdpLost,
                    3 => Action::ShortReads {
                        max: 1 + r.below(5) as usize,
                        gap: Duration::from_micros(r.below(5000)),
                    },
                    4 => Action::LongLine(r.below(5000) as usize),
                    _ => Action::LoseNextChar,
                };
                let at = emu.now() / 1000 + r.below(1000);
                emu.add_fault(Fault::new(Trigger::at_ms(at), action));
            }
            _ => {
                // Read whatever is there, sometimes blocking.
                if r.below(2) == 0 {
                    let _ = u.read(&mut buf);
                } else {
                    while u.read_ready().unwrap() {
                        let _ = u.read(&mut buf);
                    }
                }
            }
        }
    }
    emu.advance(Duration::from_secs(300));
    drain(&mut u);
    emu.transcript_string()
}

#[test]
fn random_input_never_panics_and_is_deterministic() {
    for (i, model) in Model::ALL.into_iter().enumerate() {
        for seed in 1..=6u64 {
            let seed = seed * 0x9E37_79B9 + i as u64;
            let a = run(model, seed);
            let b = run(model, seed);
            assert_eq!(a, b, "{model:?} seed {seed}");
        }
    }
}

#[test]
fn still_answers_after_random_input() {
    for model in Model::ALL {
        let emu = Emulator::new(model);
        emu.power_on_now();
        let mut u = emu.uart();
        let mut r = Rng(42);
        for _ in 0..100 {
            let bytes = random_bytes(&mut r);
            u.write_all(&bytes).unwrap();
            emu.advance(Duration::from_millis(r.below(100)));
        }
        // Garbage may have left a partial line or a running command: a CR and
        // some time clear it, unless it was a baud change or power-off.
        u.write_all(b"\r").unwrap();
        emu.advance(Duration::from_secs(200));
        drain(&mut u);
        if emu.is_on() {
            let got = at(&emu, &mut u, "AT\r\n");
            assert!(got.ends_with(b"\r\nOK\r\n"), "{model:?}: {}", show(&got));
        }
    }
}

#[test]
fn random_runs_exercise_the_command_set() {
    // Guard against a generator that only produces rejected noise: across a
    // few runs the module must accept commands and reach deep states.
    let mut all = String::new();
    for seed in 1..=4 {
        all.push_str(&run(Model::SaraU260, seed));
        all.push_str(&run(Model::SaraR410M, seed));
    }
    let oks = all.matches("OK\\r\\n").count();
    assert!(oks > 100, "{oks} OKs");
    for deep in ["+USOCR: ", "\\r\\n@", "ABORTED", "reboot", "+CREG: "] {
        assert!(all.contains(deep), "never reached {deep:?}");
    }
}

#[test]
fn absurd_fault_times_do_not_overflow_the_clock() {
    let (emu, mut u) = on(Model::SaraU260);
    emu.add_fault(Fault::new(Trigger::At(Duration::MAX), Action::LoseNextChar));
    let mut buf = [0u8; 4];
    // The blocking read runs the far event and then finds nothing: TimedOut.
    assert!(u.read(&mut buf).is_err());
    assert!(emu.now() >= 100 * 365 * 24 * 3600 * 1_000_000);
    // The clock still works: 'A' is lost, "T" echoed, then a normal command.
    eq(
        &tx(&emu, &mut u, b"AT\r\n", Duration::from_millis(50)),
        b"T\r",
    );
    eq(&at(&emu, &mut u, "AT\r\n"), b"AT\r\r\nOK\r\n");
}
