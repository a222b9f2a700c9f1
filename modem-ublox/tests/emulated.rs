//! The driver against the byte-exact emulator (modem-ublox-emu), whose sockets reach real
//! loopback peers: whole wake cycles on every model, a 256 KiB TCP echo with URCs injected and
//! reads split, UDP, and failure modes from the emulator's fault plan.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::Duration;

use modem_ublox::{
    Apn, AtError, DataError, Family, Modem, ModemConfig, Protocol, Registration, RegistrationError,
    SocketError,
};
use modem_ublox_emu as emu;
use modem_ublox_emu::{Action, Emulator, Fault, Position, Trigger};

type EmuModemL<const L: usize> = Modem<emu::Uart, emu::Delay, emu::PwrOn, emu::Reset, emu::VInt, L>;
type EmuModem = EmuModemL<512>;

fn family(model: emu::Model) -> Family {
    match model.family() {
        emu::Family::U2 => Family::U2,
        emu::Family::G3 => Family::G3,
        emu::Family::R4 => Family::R4,
        emu::Family::R5 => Family::R5,
    }
}

fn modem(e: &Emulator) -> EmuModem {
    Modem::new(
        e.uart(),
        e.delay(),
        e.pwr_on(),
        ModemConfig::new(family(e.model())),
    )
    .with_reset(e.reset())
    .with_vint(e.vint())
    .with_line_buffer::<512>()
}

/// A TCP echo server on loopback; returns its address.
fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A UDP echo peer on loopback.
fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    addr
}

/// Power on, SIM, registration, data context: what every wake does first.
fn bring_up<const L: usize>(m: &mut EmuModemL<L>) {
    m.power_on().expect("power on");
    m.wait_sim_ready(10_000).expect("SIM");
    m.register(&Registration::new(120_000))
        .expect("registration");
    m.activate_data(&Apn::new("spark.telefonica.com"), 60_000)
        .expect("data context");
}

/// Receives exactly `want` bytes from a TCP socket.
fn receive_exactly<const L: usize>(
    m: &mut EmuModemL<L>,
    s: modem_ublox::SocketId,
    want: usize,
) -> Vec<u8> {
    let mut got = Vec::with_capacity(want);
    let mut buf = [0u8; 1024];
    while got.len() < want {
        assert!(
            m.wait_readable(s, 10_000).expect("wait"),
            "no data after {} of {want} bytes",
            got.len()
        );
        let n = m.receive(s, &mut buf).expect("receive");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // What a naive parser would trip over, at the start of the stream.
    let trap = b"\r\nOK\r\n\"@\r\nERROR\r\n+UUSORD: 0,5\r\n\0";
    let n = trap.len().min(len);
    v[..n].copy_from_slice(&trap[..n]);
    v
}

#[test]
fn a_wake_cycle_on_every_model() {
    let echo = tcp_echo();
    for model in [
        emu::Model::SaraU260,
        emu::Model::SaraU270,
        emu::Model::SaraU201,
        emu::Model::SaraG350,
        emu::Model::SaraR410M,
        emu::Model::SaraR510S,
    ] {
        let e = Emulator::new(model);
        let mut m = modem(&e);
        bring_up(&mut m);
        let s = m.open_socket(Protocol::Tcp).expect("socket");
        m.connect(s, echo).expect("connect");
        let msg = payload(700, 3);
        assert_eq!(m.send(s, &msg).expect("send"), msg.len());
        assert_eq!(receive_exactly(&mut m, s, msg.len()), msg, "{model:?}");
        m.close(s).expect("close");
        m.power_off().expect("power off");
        assert!(e.is_off(), "{model:?} still on");
        assert_eq!(e.violations(), vec![], "{model:?}: the driver broke a rule");
    }
}

/// Deterministic pseudo-random numbers for fault plans.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const POSITIONS: [Position; 4] = [
    Position::BeforeEcho,
    Position::AfterEcho,
    Position::BeforeFinal,
    Position::AfterFinal,
];

/// URCs that arrive in real sessions, some sharing a prefix with responses (`+CREG`,
/// `+UUSORD` vs `+USORD`), some for sockets the driver does not know.
const URCS: [&str; 6] = [
    "+CREG: 5,\"9E9A\",\"0196BDB0\",2",
    "+CGREG: 1",
    "+UUSORD: 6,12",
    "+CIEV: 2,3",
    "+UUPSDA: 0,\"10.174.88.81\"",
    "+CEREG: 1,\"2F11\",\"1B18207\",7",
];

#[test]
fn moves_256_kib_through_tcp_with_urcs_injected_and_reads_split() {
    let echo = tcp_echo();
    let mut c = emu::EmulatorConfig::for_model(emu::Model::SaraU260);
    // The loopback peer answers in microseconds: less real sleep per virtual delay.
    c.real_sleep_cap = Duration::from_micros(20);
    let e = Emulator::with_config(emu::Model::SaraU260, c);
    let mut m = modem(&e);
    bring_up(&mut m);
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, echo).expect("connect");

    let mut rng = Rng(0x5EED_0FC0_FFEE);
    let mut injected = 0;
    for k in 1..=400u32 {
        let prefix = ["AT+USOWR", "AT+USORD"][(k % 2) as usize];
        let urc = URCS[rng.below(URCS.len() as u64) as usize];
        let position = POSITIONS[rng.below(4) as usize];
        e.add_fault(Fault::new(
            Trigger::nth(prefix, 1 + rng.below(600) as u32),
            Action::urc(urc, position),
        ));
        injected += 1;
    }
    // Every read returns at most 7 bytes, with a gap before the next ones.
    e.add_fault(Fault::new(
        Trigger::at_ms(0),
        Action::ShortReads {
            max: 7,
            gap: Duration::from_micros(300),
        },
    ));

    let data = payload(256 * 1024, 11);
    let before = e.stats();
    let mut echoed = Vec::with_capacity(data.len());
    // 4 KiB out, its echo back, and again: the echo server never holds more than the
    // module's receive buffer.
    for block in data.chunks(4096) {
        let mut sent = 0;
        while sent < block.len() {
            sent += m.send(s, &block[sent..]).expect("send");
        }
        echoed.extend(receive_exactly(&mut m, s, block.len()));
    }
    assert!(echoed == data, "the echo differs from what was sent");
    let fired = e.fired().len();
    let st = e.stats().since(&before);
    println!(
        "256 KiB echoed byte-exact: {} AT commands, {} URCs ({fired} faults of {injected} fired), \
         {} + {} bytes to the modem (AT + payload), {} + {} from it",
        st.at_commands,
        st.urcs,
        st.to_modem.at,
        st.to_modem.payload,
        st.from_modem.at,
        st.from_modem.payload,
    );
    assert!(
        st.urcs >= 100,
        "too few URCs were injected to mean anything"
    );
    m.close(s).expect("close");
    assert_eq!(e.violations(), vec![]);
}

#[test]
fn udp_datagrams_round_trip_on_each_family() {
    let echo = udp_echo();
    for model in [
        emu::Model::SaraU260,
        emu::Model::SaraG350,
        emu::Model::SaraR410M,
    ] {
        let e = Emulator::new(model);
        let mut m = modem(&e);
        bring_up(&mut m);
        let s = m.open_socket(Protocol::Udp).expect("socket");
        for (i, len) in [1usize, 29, 512, 1024].into_iter().enumerate() {
            let msg = payload(len, 40 + i as u64);
            m.send_to(s, echo, &msg).expect("send_to");
            assert!(m.wait_readable(s, 10_000).expect("wait"), "{model:?}");
            let mut buf = [0u8; 1024];
            let (n, from) = m
                .receive_from(s, &mut buf)
                .expect("receive_from")
                .expect("a datagram");
            assert_eq!((&buf[..n], from), (&msg[..], echo), "{model:?} {len}");
        }
        m.close(s).expect("close");
        assert_eq!(e.violations(), vec![], "{model:?}");
    }
}

// --- Failure modes from the emulator's fault plan (research file section 6) ----------------

#[test]
fn fm04_a_reboot_mid_session_invalidates_sockets_and_the_driver_recovers() {
    let echo = tcp_echo();
    let e = Emulator::new(emu::Model::SaraU260);
    let mut m = modem(&e);
    bring_up(&mut m);
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, echo).expect("connect");
    // The module browns out during the next write.
    e.add_fault(Fault::new(
        Trigger::nth("AT+USOWR", 1),
        Action::Reboot {
            garbage: vec![0, 0, 0xff],
        },
    ));
    let err = m.send(s, b"hello").expect_err("the write cannot succeed");
    println!("write during a reboot: {err:?}");
    // Whatever the first error, the old socket is gone for good…
    let again = m.send(s, b"hello");
    assert!(
        matches!(
            again,
            Err(SocketError::Invalidated) | Err(SocketError::At(AtError::ModemRebooted))
        ),
        "{again:?}"
    );
    // …and the driver brings the modem back to a working session.
    m.register(&Registration::new(120_000))
        .expect("re-register");
    m.activate_data(&Apn::new("internet"), 60_000)
        .expect("data");
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, echo).expect("connect");
    assert_eq!(m.send(s, b"again").expect("send"), 5);
    assert_eq!(receive_exactly(&mut m, s, 5), b"again");
}

#[test]
fn fm11_data_sent_before_a_peer_close_is_still_read() {
    // A server that answers and hangs up at once.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut b = [0u8; 5];
            let _ = s.read_exact(&mut b);
            let _ = s.write_all(&payload(3000, 9));
        }
    });
    let e = Emulator::new(emu::Model::SaraR410M);
    let mut m = modem(&e);
    bring_up(&mut m);
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, addr).expect("connect");
    m.send(s, b"hello").expect("send");
    assert_eq!(receive_exactly(&mut m, s, 3000), payload(3000, 9));
    // Then the close is seen, and reads say so.
    let mut buf = [0u8; 64];
    let mut closed = false;
    for _ in 0..50 {
        if m.is_peer_closed(s).expect("state") {
            closed = true;
            break;
        }
        let _ = m.wait_readable(s, 200);
        match m.receive(s, &mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{n} unexpected bytes"),
            Err(SocketError::Closed) => {
                closed = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(closed, "the peer close was never reported");
}

#[test]
fn fm13_a_lost_data_context_is_reported_and_reactivated() {
    let echo = tcp_echo();
    let e = Emulator::new(emu::Model::SaraU260);
    let mut m = modem(&e);
    bring_up(&mut m);
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, echo).expect("connect");
    e.add_fault(Fault::new(Trigger::nth("AT+USOWR", 1), Action::PdpLost));
    let _ = m.send(s, b"x");
    // The connected socket was closed by the module: the driver reports it, not a hang.
    let mut buf = [0u8; 8];
    let r = m.receive(s, &mut buf);
    assert!(r.is_err() || r == Ok(0), "{r:?}");
    assert_eq!(m.data_address(), None, "the context is known to be gone");
    let ip = m
        .activate_data(&Apn::new("internet"), 60_000)
        .expect("again");
    assert_eq!(ip, Ipv4Addr::new(10, 174, 88, 81));
}

#[test]
fn fm14_denied_registration_ends_within_the_budget() {
    let mut c = emu::EmulatorConfig::for_model(emu::Model::SaraU260);
    c.network.outcome = emu::RegStat::Denied;
    let e = Emulator::with_config(emu::Model::SaraU260, c);
    let mut m = modem(&e);
    m.power_on().expect("power on");
    m.wait_sim_ready(10_000).expect("SIM");
    let t0 = e.now();
    let r = m.register(&Registration::new(90_000));
    assert!(
        matches!(
            r,
            Err(RegistrationError::Denied) | Err(RegistrationError::Timeout(_))
        ),
        "{r:?}"
    );
    let spent_ms = (e.now() - t0) / 1000;
    assert!(spent_ms <= 95_000, "{spent_ms} ms spent of a 90 s budget");
}

#[test]
fn fm05_stale_sockets_from_a_previous_run_are_swept() {
    let mut c = emu::EmulatorConfig::for_model(emu::Model::SaraU260);
    c.stale_sockets = (0..7)
        .map(|id| emu::StaleSocket {
            id,
            protocol: if id % 2 == 0 { 6 } else { 17 },
        })
        .collect();
    let e = Emulator::with_config(emu::Model::SaraU260, c);
    let mut m = modem(&e);
    bring_up(&mut m);
    // All seven handles are taken: without the sweep no socket could be opened.
    let swept = m.sweep_stale_sockets().expect("sweep");
    assert_eq!(swept, 7);
    m.open_socket(Protocol::Udp)
        .expect("a socket after the sweep");
}

#[test]
fn fm10_a_lost_data_urc_does_not_lose_data() {
    let echo = tcp_echo();
    let e = Emulator::new(emu::Model::SaraU270);
    let mut m = modem(&e);
    bring_up(&mut m);
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, echo).expect("connect");
    e.add_fault(Fault::new(
        Trigger::at_ms(0),
        Action::LoseUrc("+UUSORD".into()),
    ));
    m.send(s, b"no urc for me").expect("send");
    assert_eq!(receive_exactly(&mut m, s, 13), b"no urc for me");
}

#[test]
fn fm06_pdp_cme_errors_are_typed_and_the_next_attempt_works() {
    let e = Emulator::new(emu::Model::SaraU260);
    let mut m = modem(&e);
    m.power_on().expect("power on");
    m.wait_sim_ready(10_000).expect("SIM");
    m.register(&Registration::new(60_000))
        .expect("registration");
    for (code, want) in [
        (149, DataError::AuthFailed),
        (133, DataError::NotSubscribed),
        (148, DataError::Rejected(148)),
    ] {
        e.add_fault(Fault::new(
            Trigger::nth("AT+UPSDA", 1),
            Action::Fail(emu::ErrorReply::Cme(code)),
        ));
        let r = m.activate_data(&Apn::new("internet"), 60_000);
        assert_eq!(r, Err(want), "+CME ERROR: {code}");
    }
    m.activate_data(&Apn::new("internet"), 60_000)
        .expect("the next attempt works");
}

/// Hex mode with the default 256-byte line buffer: every read is sized so that the longest
/// `+USORF: <h>,"<ip>",<port>,<n>,"<hex>"` (or `+USORD`) line fits, so a datagram larger than
/// one read arrives in parts instead of overflowing the line (`LineTooLong`) and being lost.
#[test]
fn hex_mode_reads_fit_the_line_buffer() {
    let udp = udp_echo();
    let tcp = tcp_echo();
    let e = Emulator::new(emu::Model::SaraR410M);
    let mut cfg = ModemConfig::new(Family::R4);
    cfg.hex_mode = true;
    let mut m: EmuModemL<256> = Modem::new(e.uart(), e.delay(), e.pwr_on(), cfg)
        .with_reset(e.reset())
        .with_vint(e.vint());
    bring_up(&mut m);
    let s = m.open_socket(Protocol::Udp).expect("socket");
    let msg = payload(112, 21);
    m.send_to(s, udp, &msg).expect("send_to");
    let mut got = Vec::new();
    while got.len() < msg.len() {
        assert!(
            m.wait_readable(s, 10_000).expect("wait"),
            "after {} bytes",
            got.len()
        );
        let mut buf = [0u8; 1024];
        let (n, from) = m
            .receive_from(s, &mut buf)
            .expect("receive_from")
            .expect("a datagram");
        assert_eq!(from, udp);
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, msg);
    m.close(s).expect("close");
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, tcp).expect("connect");
    let msg = payload(1000, 22);
    assert_eq!(m.send(s, &msg).expect("send"), msg.len());
    assert_eq!(receive_exactly(&mut m, s, msg.len()), msg);
    m.close(s).expect("close");
    assert_eq!(e.violations(), vec![]);
}

// --- Power sequencing without V_INT (and RESET_N) ------------------------------------------

type BareEmuModem = Modem<emu::Uart, emu::Delay, emu::PwrOn>;

fn bare(e: &Emulator) -> BareEmuModem {
    Modem::new(
        e.uart(),
        e.delay(),
        e.pwr_on(),
        ModemConfig::new(family(e.model())),
    )
}

/// A deaf SARA-R410 on a board without V_INT and RESET_N is power-cycled with PWR_ON. The
/// R410 takes up to 35 s to power down and ignores PWR_ON meanwhile: the switch-on pulse
/// must wait for that, or it is lost and the module stays off.
#[test]
fn restart_without_vint_waits_for_the_power_down_before_the_on_pulse() {
    let mut c = emu::EmulatorConfig::for_model(emu::Model::SaraR410M);
    c.timing.power_down = Duration::from_secs(30);
    let e = Emulator::with_config(emu::Model::SaraR410M, c);
    let mut m = bare(&e);
    m.power_on().expect("power on");
    // Deaf for the three probes of recover(): it is power-cycled.
    for n in 1..=3 {
        e.add_fault(Fault::new(Trigger::nth("AT", n), Action::DropResponse));
    }
    assert_eq!(m.recover(), Ok(modem_ublox::Recovery::Restarted));
    assert!(e.is_on());
    // Switched on by power_on and by the restart's on pulse (not lost in the power-down).
    let t = e.transcript_string();
    assert_eq!(t.matches("switching on").count(), 2, "{t}");
    m.wait_sim_ready(10_000).expect("working again");
    assert_eq!(e.violations(), vec![]);
}

/// Without V_INT a SARA-R510 that is on but missed the first `AT` (UART power saving lost
/// its first character) looks off. Its 1.5 s switch-on pulse is also long enough to switch
/// it off (the R510's on and off ranges overlap), so the driver pulses once more when the
/// module stays silent for its boot time: the module comes back on and power_on succeeds.
#[test]
fn r510_without_vint_switched_off_by_the_on_pulse_is_switched_on_again() {
    let e = Emulator::new(emu::Model::SaraR510S);
    e.power_on_now();
    e.add_fault(Fault::new(Trigger::at_ms(0), Action::LoseNextChar));
    let mut m = bare(&e);
    m.power_on().expect("power on");
    assert!(e.is_on());
    m.wait_sim_ready(10_000).expect("working");
    assert_eq!(e.violations(), vec![]);
}

// --- UART power saving (failure mode 17) ----------------------------------------------------

/// The module's UART loses the first character of a command ("T+CCID" arrives; the emulator,
/// like a V.250 parser, ignores a line without "AT"): the command times out, the next one
/// resynchronises and works, and the modem is not reset.
#[test]
fn fm17_lost_first_character_of_a_command() {
    let e = Emulator::new(emu::Model::SaraU201);
    let mut m = modem(&e);
    bring_up(&mut m);
    let before = m.stats();
    e.add_fault(Fault::new(Trigger::at_ms(0), Action::LoseNextChar));
    assert_eq!(m.iccid(), Err(AtError::Timeout));
    assert_eq!(
        m.iccid().expect("after resync").as_str(),
        "8934071100270000000"
    );
    let st = m.stats();
    assert_eq!(
        (
            st.timeouts - before.timeouts,
            st.recoveries - before.recoveries
        ),
        (1, 0)
    );
    assert_eq!(e.violations(), vec![]);
}

/// A SARA-U201 with UART power saving sleeps right after sending `@` and loses the first
/// payload byte (ubxlib #156): it waits for one more byte and never answers. The write
/// reports a timeout; the resynchronising `AT` completes the payload (its `A`), the driver
/// takes the late `+USOWR`/`OK` for the probe's answer, drains the rest, and the socket works
/// again. The corrupted bytes did go out: the echo shows them. (Prevention: the driver keeps
/// `AT+UPSV=0`; hex mode is immune.)
#[test]
fn fm17_u201_sleeping_after_the_prompt_loses_a_payload_byte_and_the_driver_recovers() {
    let echo = tcp_echo();
    let mut c = emu::EmulatorConfig::for_model(emu::Model::SaraU201);
    // The 10 s write timeout is spent in 1 ms polls: less real sleep per virtual delay.
    c.real_sleep_cap = Duration::from_micros(20);
    let e = Emulator::with_config(emu::Model::SaraU201, c);
    let mut m = modem(&e);
    bring_up(&mut m);
    let s = m.open_socket(Protocol::Tcp).expect("socket");
    m.connect(s, echo).expect("connect");
    let before = m.stats();
    // The module falls asleep right after "\r\n@", its answer to the next AT+USOWR.
    let prompt_sent = e.sent_bytes().len() as u64 + 3;
    e.add_fault(Fault::new(
        Trigger::AfterOutputBytes(prompt_sent),
        Action::LoseNextChar,
    ));
    assert_eq!(m.send(s, b"hello"), Err(SocketError::At(AtError::Timeout)));
    assert_eq!(m.send(s, b"again").expect("send after resync"), 5);
    assert_eq!(receive_exactly(&mut m, s, 10), b"elloAagain");
    let st = m.stats();
    assert_eq!(
        (
            st.timeouts - before.timeouts,
            st.recoveries - before.recoveries,
            st.reboots_detected - before.reboots_detected
        ),
        (1, 0, 0)
    );
    m.close(s).expect("close");
}

/// After an MCU reset on a board without V_INT, the application switches the modem off "to be
/// sure", but it is off already. The driver must not wait out `AT+CPWROFF` three times, and
/// must not send an off pulse, which switches an R410 on (its 1.6 s off pulse is inside the
/// 0.15–3.2 s switch-on range).
#[test]
fn power_off_without_vint_leaves_an_off_modem_off_quickly() {
    for model in [emu::Model::SaraR410M, emu::Model::SaraU260] {
        let e = Emulator::new(model);
        let mut m = bare(&e);
        let t0 = e.now();
        m.power_off().expect("off is off");
        let spent_ms = (e.now() - t0) / 1000;
        assert!(e.is_off(), "{model:?} was switched on");
        assert!(
            spent_ms < 10_000,
            "{model:?}: {spent_ms} ms to find an off modem off"
        );
        assert!(!e.transcript_string().contains("CPWROFF"), "{model:?}");
    }
    // A modem left on by the previous MCU run is still switched off.
    let e = Emulator::new(emu::Model::SaraR410M);
    e.power_on_now();
    let mut m = bare(&e);
    m.power_off().expect("switched off");
    assert!(e.is_off());
}

/// Issue 8 item 7 against the emulator: the raw escape hatch, signal quality, network time,
/// DNS (the emulator resolves "localhost" to its loopback peers), and the R4/R5 settings
/// (extended signal quality, band masks, MNO profile, PSM and eDRX requests).
#[test]
fn commands_for_battery_devices_against_the_emulator() {
    let echo = tcp_echo();
    for model in [
        emu::Model::SaraU201,
        emu::Model::SaraR410M,
        emu::Model::SaraR510S,
    ] {
        let e = Emulator::new(model);
        let mut m = modem(&e);
        bring_up(&mut m);
        let q = m.signal_quality().expect("CSQ");
        assert!(q.rssi_dbm().is_some(), "{model:?}: registered but {q:?}");
        // The emulator's network time: 1_714_000_000 UTC at virtual time 0, zone +08.
        let t = m.network_time().expect("CCLK");
        let elapsed = u32::try_from(m.time_spent_ms() / 1_000).unwrap();
        assert!(
            (1_714_000_000..=1_714_000_000 + elapsed).contains(&t.unix_seconds()),
            "{model:?}: {t:?} after {elapsed} s"
        );
        assert_eq!((t.year, t.utc_offset_quarters), (2024, 8));
        let mut imei = Vec::new();
        m.command("AT+CGSN", 1_000, |l| imei.push(l.to_vec()))
            .expect("raw");
        assert_eq!(imei.len(), 1, "{model:?}");
        assert!(
            imei[0].iter().all(u8::is_ascii_digit),
            "{model:?}: {imei:?}"
        );
        // DNS, then a connection to what it resolved.
        let ip = m.resolve("localhost").expect("resolve");
        assert_eq!(m.resolve("nx.example"), Err(AtError::Error));
        let s = m.open_socket(Protocol::Tcp).expect("socket");
        m.connect(s, SocketAddr::from((ip, echo.port())))
            .expect("connect");
        assert_eq!(m.send(s, b"ping").expect("send"), 4);
        assert_eq!(receive_exactly(&mut m, s, 4), b"ping");
        m.close(s).expect("close");
        if model != emu::Model::SaraU201 {
            let q = m.extended_signal_quality().expect("CESQ");
            assert!(
                q.rsrp_dbm().is_some() && q.rsrq_tenth_db().is_some(),
                "{q:?}"
            );
            let bands = m.band_masks().expect("UBANDMASK?");
            assert!(bands.lte_m.is_some(), "{model:?}: {bands:?}");
            assert_eq!(bands.nb_iot.is_some(), model == emu::Model::SaraR410M);
            m.set_band_mask(modem_ublox::Rat::LteM, 6170)
                .expect("UBANDMASK=");
            assert_eq!(m.band_masks().expect("UBANDMASK?").lte_m, Some([6170, 0]));
            m.set_psm(Some(("00111000", "00001010"))).expect("CPSMS");
            let p = m.psm_requested().expect("CPSMS?").expect("on");
            assert_eq!((&p.tau, &p.active_time), (b"00111000", b"00001010"));
            m.set_psm(None).expect("CPSMS=0");
            assert_eq!(m.psm_requested().expect("CPSMS?"), None);
            m.set_edrx(4, "0101").expect("CEDRXS");
            assert_eq!(m.edrx_requested(4).expect("CEDRXS?"), Some(*b"0101"));
            m.disable_edrx(4).expect("CEDRXS=3");
            // With eDRX off the R410 answers a bare `+CEDRXS:`, the R510 `+CEDRXS: 4,"0000"`.
            let off = (model == emu::Model::SaraR510S).then_some(*b"0000");
            assert_eq!(m.edrx_requested(4).expect("CEDRXS?"), off, "{model:?}");
            // The MNO profile is refused while registered, taken with the radio off.
            assert_eq!(m.set_mno_profile(100), Err(AtError::Cme(3)));
            m.command("AT+CFUN=0", 180_000, |_| {}).expect("CFUN=0");
            m.set_mno_profile(100).expect("UMNOPROF");
            assert_eq!(m.mno_profile().expect("UMNOPROF?"), 100);
        }
        m.power_off().expect("power off");
        assert_eq!(e.violations(), vec![], "{model:?}: the driver broke a rule");
    }
}

/// Issue 8 item 1 against the emulator, with the default 256-byte line buffer: an SMS
/// delivered directly (`+CMT: ,159` and its 320-digit PDU line) arriving inside `AT+USOWR`,
/// inside `AT+USOCR`, and right after `AT+CCID` (spilling from the drain into `AT+CIMI`). No
/// command fails, the socket is kept, and the peer gets the bytes exactly once.
#[test]
fn an_sms_pdu_longer_than_the_line_buffer_fails_no_command() {
    let echo = tcp_echo();
    let e = Emulator::new(emu::Model::SaraU260);
    let mut m: EmuModemL<256> = modem(&e).with_line_buffer::<256>();
    bring_up(&mut m);
    let long_before = m.stats().lines_too_long;
    let mut pdu = String::from("07919730071111F1");
    while pdu.len() < 320 {
        pdu.push_str("0A");
    }
    let sms = format!("\r\n+CMT: ,159\r\n{pdu}\r\n").into_bytes();
    let inject = |prefix: &str, position| {
        e.add_fault(Fault::new(
            Trigger::nth(prefix, 1),
            Action::Inject {
                bytes: sms.clone(),
                position,
            },
        ));
    };
    inject("AT+USOCR", Position::BeforeFinal);
    let s = m.open_socket(Protocol::Tcp).expect("socket kept");
    m.connect(s, echo).expect("connect");
    inject("AT+USOWR", Position::BeforeFinal);
    assert_eq!(m.send(s, b"hello"), Ok(5));
    assert_eq!(receive_exactly(&mut m, s, 5), b"hello");
    assert!(!m.wait_readable(s, 500).expect("wait"), "sent once only");
    inject("AT+CCID", Position::AfterFinal);
    m.iccid().expect("iccid");
    m.imsi().expect("imsi after the spilled PDU line");
    // The emulator puts the `AT+USOWR` injection before both of its "finals": the `@` prompt
    // and the `OK`, so four PDU lines in all.
    assert_eq!(m.stats().lines_too_long - long_before, 4);
    m.close(s).expect("close");
    assert_eq!(e.violations(), vec![]);
}
