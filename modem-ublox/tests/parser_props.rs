//! Property tests: the framer and line parsers over arbitrary bytes, and the whole driver
//! against a UART that answers arbitrary bytes.

use std::convert::Infallible;

use modem_ublox::frame::{payload_header_len, Event, Framer};
use modem_ublox::{urc, Apn, Family, Modem, ModemConfig, NoPin, Protocol, Registration};
use proptest::prelude::*;

const L: usize = 64;

fn run(f: &mut Framer<L>, input: &[u8]) -> Vec<Ev> {
    let mut out = Vec::new();
    for &b in input {
        match f.push(b) {
            Some(Event::Line(l)) => out.push(Ev::Line(l.to_vec())),
            Some(Event::Prompt) => out.push(Ev::Prompt),
            Some(Event::Overflow(h)) => out.push(Ev::Overflow(h.to_vec())),
            Some(Event::PayloadStart(h)) => out.push(Ev::Start(h.to_vec())),
            Some(Event::PayloadByte(b)) => out.push(Ev::Byte(b)),
            Some(Event::PayloadEnd(ok)) => out.push(Ev::End(ok)),
            None => {}
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Ev {
    Line(Vec<u8>),
    Prompt,
    Overflow(Vec<u8>),
    Start(Vec<u8>),
    Byte(u8),
    End(bool),
}

fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Printable ASCII, not starting with '@' or a non-ASCII byte, 1..=L bytes.
    (proptest::collection::vec(0x20u8..0x7f, 1..=L)).prop_filter("no @ at start", |l| l[0] != b'@')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn framer_never_panics_and_lines_are_clean(
        input in proptest::collection::vec(any::<u8>(), 0..2048),
        prompt in any::<bool>(),
        binary in any::<bool>(),
    ) {
        let mut f = Framer::<L>::new();
        f.set_expect_prompt(prompt);
        f.set_expect_binary(binary);
        let mut payload_left: Option<usize> = None;
        for &b in &input {
            match f.push(b) {
                Some(Event::Line(l)) => {
                    prop_assert!(!l.is_empty() && l.len() <= L);
                    prop_assert!(l.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f && c != 0xff)));
                    prop_assert!(l[0] < 0x80);
                    prop_assert!(payload_left.is_none());
                }
                Some(Event::PayloadStart(h)) => {
                    prop_assert!(binary);
                    payload_left = Some(usize::from(payload_header_len(h).unwrap()));
                }
                Some(Event::PayloadByte(_)) => {
                    let left = payload_left.unwrap();
                    prop_assert!(left > 0);
                    payload_left = Some(left - 1);
                }
                Some(Event::PayloadEnd(_)) => {
                    prop_assert_eq!(payload_left, Some(0));
                    payload_left = None;
                }
                Some(Event::Prompt) => prop_assert!(prompt),
                Some(Event::Overflow(h)) => {
                    // The head of the skipped line: exactly the L bytes that fit.
                    prop_assert_eq!(h.len(), L);
                    prop_assert!(h.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f && c != 0xff)));
                    prop_assert!(payload_left.is_none());
                }
                None => {}
            }
        }
    }

    #[test]
    fn lines_survive_any_terminator_and_noise(
        lines in proptest::collection::vec(line_strategy(), 0..20),
        seps in proptest::collection::vec(0usize..5, 20),
    ) {
        const SEPS: [&[u8]; 5] = [b"\r\n", b"\n", b"\r\r\n", b"\r\n\r\n", b"\0\0\r\n\xff"];
        let mut input = b"\xff\0\r\n".to_vec();
        for (i, l) in lines.iter().enumerate() {
            input.extend_from_slice(l);
            input.extend_from_slice(SEPS[seps[i]]);
        }
        let mut f = Framer::<L>::new();
        let got = run(&mut f, &input);
        let want: Vec<Ev> = lines.into_iter().map(Ev::Line).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn overlong_lines_resync(
        before in line_strategy(),
        extra in 1usize..300,
        after in line_strategy(),
    ) {
        let mut input = before.clone();
        input.extend_from_slice(b"\r\n");
        input.extend(std::iter::repeat_n(b'x', L + extra));
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&after);
        input.extend_from_slice(b"\r\n");
        let mut f = Framer::<L>::new();
        prop_assert_eq!(run(&mut f, &input), vec![Ev::Line(before), Ev::Overflow(vec![b'x'; L]), Ev::Line(after)]);
    }

    #[test]
    fn binary_payload_is_taken_by_length(
        payload in proptest::collection::vec(any::<u8>(), 0..=1024),
        handle in 0u8..7,
        udp in any::<bool>(),
    ) {
        let n = payload.len();
        let head = if udp {
            format!("+USORF: {handle},\"1.2.3.4\",5683,{n},\"")
        } else {
            format!("+USORD: {handle},{n},\"")
        };
        let mut input = format!("\r\n{head}").into_bytes();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"\"\r\n\r\nOK\r\n");
        let mut f = Framer::<L>::new();
        f.set_expect_binary(true);
        let mut want = vec![Ev::Start(head.into_bytes())];
        want.extend(payload.iter().map(|&b| Ev::Byte(b)));
        want.push(Ev::End(true));
        want.push(Ev::Line(b"OK".to_vec()));
        prop_assert_eq!(run(&mut f, &input), want);
    }

    #[test]
    fn line_parsers_never_panic(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = urc::parse(&line);
        let _ = urc::final_result(&line);
        let _ = urc::reg_line(&line);
        let _ = payload_header_len(&line);
        // Same with a known prefix in front, to reach the argument parsers.
        for p in [&b"+CREG: "[..], b"+UUSORD: ", b"+UUPSDA: ", b"+USORD: ", b"+USORF: ", b"+CME ERROR: "] {
            let mut l = p.to_vec();
            l.extend_from_slice(&line);
            let _ = urc::parse(&l);
            let _ = urc::final_result(&l);
            let _ = urc::reg_line(&l);
            let _ = payload_header_len(&l);
        }
    }

    #[test]
    fn registration_answer_and_urc_shapes(n in 0u32..5, stat in 0u32..11, with_loc in any::<bool>()) {
        let loc = if with_loc { ",\"9E9A\",\"0196BDB0\",2" } else { "" };
        let answer = format!("+CREG: {n},{stat}{loc}");
        let urc_line = format!("+CREG: {stat}{loc}");
        prop_assert_eq!(urc::parse(answer.as_bytes()), None);
        prop_assert_eq!(
            urc::reg_line(answer.as_bytes()).map(|r| (r.1, r.2)),
            Some((Some(n as u8), urc::RegStatus::from_code(stat)))
        );
        prop_assert_eq!(
            urc::parse(urc_line.as_bytes()),
            Some(urc::Urc::Registration(urc::Domain::Cs, urc::RegStatus::from_code(stat)))
        );
    }
}

/// Bytes that look like a modem: result codes, answers, URCs, payload headers, noise.
fn modem_talk() -> impl Strategy<Value = Vec<u8>> {
    const FRAGMENTS: &[&[u8]] = &[
        b"\r\nOK\r\n",
        b"AT\r\r\nOK\r\n",
        b"\r\nERROR\r\n",
        b"\r\n+CME ERROR: 14\r\n",
        b"\r\nABORTED\r\n",
        b"\r\nSARA-U260\r\n",
        b"\r\nSARA-R410M-02B\r\n",
        b"\r\n+CPIN: READY\r\n",
        b"\r\n+CFUN: 1\r\n",
        b"\r\n+COPS: 0\r\n",
        b"\r\n+CREG: 2,5,\"9E9A\",\"019624BD\",2\r\n",
        b"\r\n+CREG: 0,1\r\n",
        b"\r\n+CGREG: 1\r\n",
        b"\r\n+CEREG: 2,1\r\n",
        b"\r\n+UUPSDA: 0,\"10.0.0.1\"\r\n",
        b"\r\n+UPSND: 0,8,1\r\n",
        b"\r\n+UPSND: 0,0,\"10.0.0.1\"\r\n",
        b"\r\n+USOCR: 0\r\n",
        b"\r\n+UUSORD: 0,10\r\n",
        b"\r\n+USORD: 0,10\r\n",
        b"\r\n+USORD: 0,5,\"",
        b"\r\n+USORF: 0,\"1.2.3.4\",7,3,\"",
        b"\r\n+UUSOCL: 0\r\n",
        b"\r\n@",
        b"\r\n+USOWR: 0,5\r\n",
        b"\"\r\n",
        b"\0\0\xff",
    ];
    proptest::collection::vec(
        prop_oneof![
            3 => (0..FRAGMENTS.len()).prop_map(|i| FRAGMENTS[i].to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 0..40),
        ],
        0..80,
    )
    .prop_map(|v| v.concat())
}

/// A UART that accepts every write and answers with arbitrary bytes, a chunk per read. An
/// endless one starts over when the bytes run out (a modem that never stops talking) and
/// panics after `limit` bytes, so a driver that never returns fails instead of hanging.
struct Chaos {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    endless: bool,
    served: u64,
    limit: u64,
}

impl Chaos {
    fn new(data: Vec<u8>, chunk: usize) -> Self {
        Self {
            data,
            pos: 0,
            chunk,
            endless: false,
            served: 0,
            limit: u64::MAX,
        }
    }

    fn endless(mut data: Vec<u8>, chunk: usize, limit: u64) -> Self {
        if data.is_empty() {
            data.push(0);
        }
        Self {
            endless: true,
            limit,
            ..Self::new(data, chunk)
        }
    }
}

impl embedded_io::ErrorType for Chaos {
    type Error = Infallible;
}
impl embedded_io::ReadReady for Chaos {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.endless || self.pos < self.data.len())
    }
}
impl embedded_io::Read for Chaos {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if self.endless && self.pos == self.data.len() {
            self.pos = 0;
        }
        assert!(self.pos < self.data.len(), "read without read_ready");
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.served += n as u64;
        assert!(
            self.served <= self.limit,
            "the driver read {} bytes of endless input without returning (hang)",
            self.served
        );
        Ok(n)
    }
}
impl embedded_io::Write for Chaos {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct NoDelay;
impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _ns: u32) {}
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the modem says, every operation returns (budgets and timeouts are counted
    /// through the driver's own delays) and nothing panics.
    #[test]
    fn driver_survives_arbitrary_modem_output(
        data in modem_talk(),
        chunk in 1usize..40,
        family in 0usize..4,
    ) {
        let family = [Family::U2, Family::G3, Family::R4, Family::R5][family];
        let uart = Chaos::new(data, chunk);
        let mut cfg = ModemConfig::new(family);
        cfg.poll_interval_us = 20_000;
        let mut m: Modem<_, _, NoPin> = Modem::new(uart, NoDelay, NoPin, cfg);
        let _ = m.power_on();
        let _ = m.wait_sim_ready(3_000);
        let _ = m.register(&Registration::new(5_000));
        let _ = m.activate_data(&Apn::new("apn"), 5_000);
        if let Ok(s) = m.open_socket(Protocol::Tcp) {
            let mut buf = [0u8; 64];
            let _ = m.receive(s, &mut buf);
            let _ = m.send(s, b"hello");
            let _ = m.close(s);
        }
        let _ = m.poll(100);
        let _ = m.power_off();
        prop_assert!(m.time_spent_ms() < 10_000_000);
    }
}

type Endless = Modem<Chaos, NoDelay, NoPin>;

/// Run `f` and check it took at most `bound_ms` of the driver's time.
fn timed(m: &mut Endless, what: &str, bound_ms: u64, f: impl FnOnce(&mut Endless)) {
    let t0 = m.time_spent_ms();
    f(m);
    let spent = m.time_spent_ms() - t0;
    assert!(spent <= bound_ms, "{what}: {spent} ms, bound {bound_ms} ms");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The same operations against a modem whose output never ends (the arbitrary bytes
    /// repeated forever, the UART always ready): each returns. `poll` within its wait, the
    /// 100 ms drain allowance and a re-initialisation (the noise may look like a reboot); the
    /// others within a generous bound that covers their timeouts and a recovery
    /// (resynchronisation, power cycle, boot, re-initialisation). 9600 baud so that a virtual
    /// second is ~1000 bytes of input.
    #[test]
    fn driver_returns_on_endless_modem_output(
        data in modem_talk(),
        chunk in 1usize..40,
        family in 0usize..4,
    ) {
        const BOUND_MS: u64 = 20 * 60 * 1_000;
        const REINIT_MS: u64 = 60_000;
        let family = [Family::U2, Family::G3, Family::R4, Family::R5][family];
        let uart = Chaos::endless(data, chunk, 20_000_000);
        let mut cfg = ModemConfig::new(family);
        cfg.baud = 9_600;
        cfg.poll_interval_us = 20_000;
        let mut m: Endless = Modem::new(uart, NoDelay, NoPin, cfg);
        timed(&mut m, "power_on", BOUND_MS, |m| { let _ = m.power_on(); });
        timed(&mut m, "poll(0)", 100 + REINIT_MS, |m| { let _ = m.poll(0); });
        timed(&mut m, "poll(500)", 500 + 100 + REINIT_MS, |m| { let _ = m.poll(500); });
        timed(&mut m, "wait_sim_ready", BOUND_MS, |m| { let _ = m.wait_sim_ready(3_000); });
        timed(&mut m, "register", BOUND_MS, |m| { let _ = m.register(&Registration::new(5_000)); });
        timed(&mut m, "activate_data", BOUND_MS, |m| { let _ = m.activate_data(&Apn::new("apn"), 5_000); });
        timed(&mut m, "sockets", BOUND_MS, |m| {
            if let Ok(s) = m.open_socket(Protocol::Tcp) {
                let mut buf = [0u8; 64];
                let _ = m.wait_readable(s, 1_000);
                let _ = m.receive(s, &mut buf);
                let _ = m.send(s, b"hello");
                let _ = m.close(s);
            }
        });
        timed(&mut m, "power_off", BOUND_MS, |m| { let _ = m.power_off(); });
    }
}
