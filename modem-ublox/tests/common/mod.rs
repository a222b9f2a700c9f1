//! Strict scripted UART, virtual clock and recording pins for the driver's behaviour tests.
//!
//! A script is a list of [`Step`]s run in order:
//! * `Tx(bytes)`: the driver must write exactly these bytes next (a mismatch panics and shows
//!   both byte strings, escaped, with the position);
//! * `Rx { after, bytes, chunk, strict }`: once reached, the bytes become readable `after` ns
//!   later (relative to the later of now and the previous reply's end), delivered in reads of
//!   at most `chunk` bytes. A strict reply must be read completely before the driver writes
//!   again (writing during a pending reply is what aborts a running command on a real modem);
//!   a non-strict one models a late answer the driver has given up on;
//! * `Vint { after, high }`: V_INT changes level;
//! * `Baud(rate)`: the test's baud switch closure must be called with this rate next;
//! * `RxError { after }`: once the bytes before it are read, the next `read()` fails (an
//!   overrun or framing error: the UART lost bytes).
//!
//! `read()` without a byte due panics (a real UART read would block forever). The clock moves
//! only through the driver's `DelayNs` calls.
//!
//! [`Script::flood`] turns the UART into an endless source (a modem that never stops talking:
//! noise, NULs on a dead line, a URC loop): always ready, every read returns the next bytes of
//! a repeating pattern, every write is accepted. It panics once it has served a set number of
//! bytes, so a driver that never returns fails the test instead of hanging it.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::rc::Rc;

use modem_ublox::{Family, Modem, ModemConfig};

pub const MS: u64 = 1_000_000;

/// Printable rendering of bytes for failure messages.
pub fn esc(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'"' => s.push('"'),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

#[derive(Debug, Clone)]
pub enum Step {
    Tx(Vec<u8>),
    Rx {
        after: u64,
        bytes: Vec<u8>,
        chunk: usize,
        strict: bool,
    },
    Vint {
        after: u64,
        high: bool,
    },
    Baud(u32),
    RxError {
        after: u64,
    },
}

/// Expect the driver to write `s`.
pub fn tx(s: impl AsRef<[u8]>) -> Step {
    Step::Tx(s.as_ref().to_vec())
}
/// The modem answers `s` at once.
pub fn rx(s: impl AsRef<[u8]>) -> Step {
    Step::Rx {
        after: 0,
        bytes: s.as_ref().to_vec(),
        chunk: usize::MAX,
        strict: true,
    }
}
/// The modem answers `s` after `ms`.
pub fn rx_after(ms: u64, s: impl AsRef<[u8]>) -> Step {
    Step::Rx {
        after: ms * MS,
        bytes: s.as_ref().to_vec(),
        chunk: usize::MAX,
        strict: true,
    }
}
/// The modem answers `s`, readable at most `chunk` bytes per read.
pub fn rx_split(s: impl AsRef<[u8]>, chunk: usize) -> Step {
    Step::Rx {
        after: 0,
        bytes: s.as_ref().to_vec(),
        chunk,
        strict: true,
    }
}
/// The UART reports a receive error (overrun, framing) `ms` after the previous reply.
pub fn rx_error(ms: u64) -> Step {
    Step::RxError { after: ms * MS }
}
/// A late answer after `ms` the driver may write over.
pub fn rx_late(ms: u64, s: impl AsRef<[u8]>) -> Step {
    Step::Rx {
        after: ms * MS,
        bytes: s.as_ref().to_vec(),
        chunk: usize::MAX,
        strict: false,
    }
}
/// Command `c` answered with `r`.
pub fn at(c: impl AsRef<[u8]>, r: impl AsRef<[u8]>) -> [Step; 2] {
    [tx(c), rx(r)]
}
/// Command `c` answered with `\r\nOK\r\n`.
pub fn ok(c: impl AsRef<[u8]>) -> [Step; 2] {
    at(c, "\r\nOK\r\n")
}

#[derive(Clone, Default)]
pub struct Clock(Rc<Cell<u64>>);

impl Clock {
    pub fn now(&self) -> u64 {
        self.0.get()
    }
    pub fn now_ms(&self) -> u64 {
        self.0.get() / MS
    }
}

struct Pending {
    due: u64,
    byte: u8,
    chunk: usize,
    strict: bool,
    /// Not a byte: `read()` fails here once.
    error: bool,
}

type PulseHook = Box<dyn FnMut(&'static str, u64) -> Option<(u64, bool)>>;

struct Inner {
    steps: VecDeque<Step>,
    done_steps: usize,
    rx: VecDeque<Pending>,
    last_due: u64,
    vint_events: Vec<(u64, bool)>,
    vint: bool,
    clock: Clock,
    edges: Vec<(u64, &'static str, bool)>,
    hook: Option<PulseHook>,
    written: Vec<u8>,
    tx_pos: usize,
    tx_done: Vec<(u64, Vec<u8>)>,
    flood: Option<Flood>,
}

/// The endless source of [`Script::flood`].
struct Flood {
    pattern: Vec<u8>,
    pos: usize,
    served: u64,
    limit: u64,
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Run non-Tx steps at the front.
    fn advance(&mut self) {
        loop {
            match self.steps.front() {
                Some(Step::Rx { .. }) => {
                    let Some(Step::Rx {
                        after,
                        bytes,
                        chunk,
                        strict,
                    }) = self.steps.pop_front()
                    else {
                        unreachable!()
                    };
                    self.done_steps += 1;
                    let base = self.now().max(self.last_due);
                    let due = base + after;
                    self.last_due = due;
                    for b in bytes {
                        self.rx.push_back(Pending {
                            due,
                            byte: b,
                            chunk,
                            strict,
                            error: false,
                        });
                    }
                }
                Some(Step::RxError { after }) => {
                    let after = *after;
                    self.steps.pop_front();
                    self.done_steps += 1;
                    let due = self.now().max(self.last_due) + after;
                    self.last_due = due;
                    self.rx.push_back(Pending {
                        due,
                        byte: 0,
                        chunk: usize::MAX,
                        strict: true,
                        error: true,
                    });
                }
                Some(Step::Vint { after, high }) => {
                    let (after, high) = (*after, *high);
                    self.steps.pop_front();
                    self.done_steps += 1;
                    let due = self.now() + after;
                    self.vint_events.push((due, high));
                }
                _ => return,
            }
        }
    }

    fn update_vint(&mut self) {
        let now = self.now();
        self.vint_events.sort_by_key(|e| e.0);
        while let Some(&(due, high)) = self.vint_events.first() {
            if due > now {
                break;
            }
            self.vint = high;
            self.vint_events.remove(0);
        }
    }

    fn context(&self) -> String {
        let next: Vec<String> = self
            .steps
            .iter()
            .take(3)
            .map(|s| match s {
                Step::Tx(b) => format!("Tx({})", esc(b)),
                Step::Rx { bytes, .. } => format!("Rx({})", esc(bytes)),
                s => format!("{s:?}"),
            })
            .collect();
        format!(
            "at t={} ms, after {} script steps; last DTE bytes: \"{}\"; next steps: {:?}",
            self.now_ms(),
            self.done_steps,
            esc(&self.written[self.written.len().saturating_sub(80)..]),
            next
        )
    }

    fn now_ms(&self) -> u64 {
        self.now() / MS
    }
}

/// Handle to the script (shared by the UART, the pins and the test).
#[derive(Clone)]
pub struct Script(Rc<RefCell<Inner>>);

impl Script {
    pub fn new(clock: &Clock) -> Self {
        Self(Rc::new(RefCell::new(Inner {
            steps: VecDeque::new(),
            done_steps: 0,
            rx: VecDeque::new(),
            last_due: 0,
            vint_events: Vec::new(),
            vint: false,
            clock: clock.clone(),
            edges: Vec::new(),
            hook: None,
            written: Vec::new(),
            tx_pos: 0,
            tx_done: Vec::new(),
            flood: None,
        })))
    }

    /// Append steps.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        let mut i = self.0.borrow_mut();
        i.steps.extend(steps);
        i.advance();
    }

    /// Set V_INT now.
    pub fn set_vint(&self, high: bool) {
        self.0.borrow_mut().vint = high;
    }

    /// Called on each released low pulse of a pin with its width; may schedule V_INT.
    pub fn on_pulse(&self, hook: impl FnMut(&'static str, u64) -> Option<(u64, bool)> + 'static) {
        self.0.borrow_mut().hook = Some(Box::new(hook));
    }

    /// The test's baud switch: must match the next `Baud` step.
    pub fn set_baud(&self, rate: u32) {
        let mut i = self.0.borrow_mut();
        match i.steps.front() {
            Some(Step::Baud(r)) if *r == rate => {
                i.steps.pop_front();
                i.done_steps += 1;
                i.advance();
            }
            _ => {
                let ctx = i.context();
                panic!("unexpected baud switch to {rate}; {ctx}")
            }
        }
    }

    /// Panic unless every step ran and every reply byte was read.
    pub fn assert_done(&self) {
        let i = self.0.borrow();
        assert!(i.steps.is_empty(), "script not finished: {}", i.context());
        let unread: Vec<u8> = i.rx.iter().filter(|p| p.strict).map(|p| p.byte).collect();
        assert!(
            unread.is_empty(),
            "reply bytes never read: \"{}\"; {}",
            esc(&unread),
            i.context()
        );
    }

    /// Every byte the driver wrote.
    pub fn written(&self) -> Vec<u8> {
        self.0.borrow().written.clone()
    }

    /// `(start_ns, width_ns)` of every completed low pulse on `pin`.
    pub fn pulses(&self, pin: &str) -> Vec<(u64, u64)> {
        let i = self.0.borrow();
        let mut out = Vec::new();
        let mut low_at = None;
        for &(t, name, high) in &i.edges {
            if name != pin {
                continue;
            }
            match (high, low_at) {
                (false, None) => low_at = Some(t),
                (true, Some(s)) => {
                    out.push((s, t - s));
                    low_at = None;
                }
                _ => {}
            }
        }
        out
    }

    /// Time (ns) at which the `Tx` step with exactly these bytes completed (first match).
    pub fn tx_time(&self, bytes: &[u8]) -> u64 {
        let i = self.0.borrow();
        i.tx_done
            .iter()
            .find(|(_, b)| b == bytes)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no Tx {:?}", esc(bytes)))
    }

    /// From now on the UART is an endless source repeating `pattern` (always ready, writes
    /// accepted and recorded, the script is no longer checked). Panics after `limit` bytes have
    /// been read: the driver is taken to hang.
    pub fn flood(&self, pattern: impl AsRef<[u8]>, limit: u64) {
        let pattern = pattern.as_ref().to_vec();
        assert!(!pattern.is_empty());
        self.0.borrow_mut().flood = Some(Flood {
            pattern,
            pos: 0,
            served: 0,
            limit,
        });
    }

    /// Bytes served by [`flood`](Self::flood) so far.
    pub fn flood_served(&self) -> u64 {
        self.0.borrow().flood.as_ref().map_or(0, |f| f.served)
    }

    /// Number of script steps done.
    pub fn steps_done(&self) -> usize {
        self.0.borrow().done_steps
    }
}

/// The scripted UART.
pub struct Uart(pub Script);

/// A receive error of the scripted UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UartFault;

impl std::fmt::Display for UartFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UART receive error")
    }
}

impl std::error::Error for UartFault {}

impl embedded_io::Error for UartFault {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = UartFault;
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, UartFault> {
        let i = self.0 .0.borrow();
        if i.flood.is_some() {
            return Ok(true);
        }
        let now = i.now();
        Ok(i.rx.front().is_some_and(|p| p.due <= now))
    }
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, UartFault> {
        let mut i = self.0 .0.borrow_mut();
        if let Some(f) = i.flood.as_mut() {
            for b in buf.iter_mut() {
                *b = f.pattern[f.pos];
                f.pos = (f.pos + 1) % f.pattern.len();
            }
            f.served += buf.len() as u64;
            assert!(
                f.served <= f.limit,
                "the driver read {} bytes of endless input without returning (hang)",
                f.served
            );
            return Ok(buf.len());
        }
        let now = i.now();
        let Some(first) = i.rx.front() else {
            let ctx = i.context();
            panic!("read() with nothing to read (would block forever); {ctx}");
        };
        if first.due > now {
            let ctx = i.context();
            panic!("read() before the next byte is due (would block); {ctx}");
        }
        if first.error {
            i.rx.pop_front();
            return Err(UartFault);
        }
        let chunk = first.chunk;
        let mut n = 0;
        while n < buf.len() && n < chunk {
            match i.rx.front() {
                Some(p) if p.due <= now && p.chunk == chunk && !p.error => {
                    buf[n] = p.byte;
                    i.rx.pop_front();
                    n += 1;
                }
                _ => break,
            }
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, UartFault> {
        let mut i = self.0 .0.borrow_mut();
        if i.flood.is_some() {
            i.written.extend_from_slice(buf);
            return Ok(buf.len());
        }
        if let Some(p) = i.rx.iter().find(|p| p.strict) {
            let due = p.due;
            let unread: Vec<u8> = i.rx.iter().filter(|p| p.strict).map(|p| p.byte).collect();
            let ctx = i.context();
            panic!(
                "DTE wrote \"{}\" while the DCE reply \"{}\" (due at {} ms) was not read; {ctx}",
                esc(buf),
                esc(&unread),
                due / MS
            );
        }
        for &b in buf {
            i.written.push(b);
            let pos = i.tx_pos;
            let expected = match i.steps.front() {
                Some(Step::Tx(e)) => e.clone(),
                _ => {
                    let ctx = i.context();
                    panic!(
                        "DTE wrote byte {:?} but the script expects no write here; {ctx}",
                        esc(&[b])
                    );
                }
            };
            if expected[pos] != b {
                let start = i.written.len() - 1 - pos;
                let got: Vec<u8> = i.written[start..].to_vec();
                let ctx = i.context();
                panic!(
                    "DTE bytes differ at offset {pos}:\n  expected \"{}\"\n  got      \"{}\"…\n{ctx}",
                    esc(&expected),
                    esc(&got)
                );
            }
            i.tx_pos += 1;
            if i.tx_pos == expected.len() {
                i.tx_pos = 0;
                let now = i.now();
                i.tx_done.push((now, expected));
                i.steps.pop_front();
                i.done_steps += 1;
                i.advance();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), UartFault> {
        Ok(())
    }
}

/// Delay on the virtual clock; also lets scheduled replies become due.
pub struct Delay(pub Script);

impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let i = self.0 .0.borrow();
        i.clock.0.set(i.clock.now() + u64::from(ns));
    }
}

/// An output pin that records its edges with timestamps.
pub struct Pin {
    pub name: &'static str,
    script: Script,
    high: Option<bool>,
    low_since: u64,
}

impl Pin {
    pub fn new(name: &'static str, script: &Script) -> Self {
        Self {
            name,
            script: script.clone(),
            high: None,
            low_since: 0,
        }
    }
}

impl embedded_hal::digital::ErrorType for Pin {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        if self.high != Some(false) {
            let mut i = self.script.0.borrow_mut();
            let now = i.now();
            i.edges.push((now, self.name, false));
            self.low_since = now;
        }
        self.high = Some(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        if self.high != Some(true) {
            let mut i = self.script.0.borrow_mut();
            let now = i.now();
            i.edges.push((now, self.name, true));
            if self.high == Some(false) {
                let width = now - self.low_since;
                let name = self.name;
                if let Some(mut hook) = i.hook.take() {
                    if let Some((after, high)) = hook(name, width) {
                        i.vint_events.push((now + after, high));
                    }
                    i.hook = Some(hook);
                }
            }
        }
        self.high = Some(true);
        Ok(())
    }
}

/// V_INT as seen by the driver.
pub struct Vint(pub Script);

impl embedded_hal::digital::ErrorType for Vint {
    type Error = Infallible;
}

impl embedded_hal::digital::InputPin for Vint {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        let mut i = self.0 .0.borrow_mut();
        i.update_vint();
        Ok(i.vint)
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        self.is_high().map(|h| !h)
    }
}

pub type FullModem = Modem<Uart, Delay, Pin, Pin, Vint>;
pub type BareModem = Modem<Uart, Delay, Pin>;

pub struct Bench {
    pub clock: Clock,
    pub script: Script,
}

impl Bench {
    pub fn new() -> Self {
        let clock = Clock::default();
        let script = Script::new(&clock);
        Self { clock, script }
    }

    /// A driver with PWR_ON, RESET_N and V_INT.
    pub fn modem(&self, cfg: ModemConfig) -> FullModem {
        Modem::new(
            Uart(self.script.clone()),
            Delay(self.script.clone()),
            Pin::new("PWR_ON", &self.script),
            cfg,
        )
        .with_reset(Pin::new("RESET_N", &self.script))
        .with_vint(Vint(self.script.clone()))
    }

    /// A driver with PWR_ON only.
    pub fn bare(&self, cfg: ModemConfig) -> BareModem {
        Modem::new(
            Uart(self.script.clone()),
            Delay(self.script.clone()),
            Pin::new("PWR_ON", &self.script),
            cfg,
        )
    }

    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.push(steps);
    }

    pub fn done(&self) {
        self.script.assert_done();
    }
}

/// The `AT+CGMM` answer and `ATI9` version of a family's reference model.
pub fn model_name(f: Family) -> (&'static str, &'static str) {
    match f {
        Family::U2 => ("SARA-U260", "23.41,A01.00"),
        Family::G3 => ("SARA-G350", "08.90,A01.13"),
        Family::R4 => ("SARA-R410M-02B", "L0.0.00.00.05.08,A.02.04"),
        Family::R5 => ("SARA-R510S-01B", "02.06,A00.01"),
        f => unimplemented!("no reference model for {f:?}"),
    }
}

/// Section A after the modem answered its first `AT`: `ATE0` … `AT+UPSV=0`.
pub fn init_steps(f: Family) -> Vec<Step> {
    let (name, fw) = model_name(f);
    let mut v = Vec::new();
    v.extend(at("ATE0\r\n", "ATE0\r\r\nOK\r\n"));
    v.extend(ok("AT\r\n"));
    v.extend(ok("AT+CMEE=1\r\n"));
    v.extend(at("AT+CGMM\r\n", format!("\r\n{name}\r\n\r\nOK\r\n")));
    v.extend(at("ATI9\r\n", format!("\r\n{fw}\r\n\r\nOK\r\n")));
    if f != Family::R4 {
        v.extend(ok("AT+UPSV=0\r\n"));
    }
    v
}

/// Boot steps for a full bench whose V_INT starts low: the PWR_ON pulse raises V_INT
/// 100 ms later, the first `AT` is answered with echo.
pub fn cold_boot(bench: &Bench, f: Family) -> FullModem {
    bench.script.set_vint(false);
    bench
        .script
        .on_pulse(|pin, _w| (pin == "PWR_ON").then_some((100 * MS, true)));
    let mut m = bench.modem(ModemConfig::new(f));
    bench.push([tx("AT\r\n"), rx_after(500, "AT\r\r\nOK\r\n")]);
    bench.push(init_steps(f));
    m.power_on().expect("power on");
    m
}

/// A booted U2 (SARA-U260) bench.
pub fn booted(f: Family) -> (Bench, FullModem) {
    let b = Bench::new();
    let m = cold_boot(&b, f);
    (b, m)
}

/// `\r\n<info>\r\n\r\nOK\r\n`
pub fn info_ok(info: impl AsRef<[u8]>) -> Vec<u8> {
    let mut v = b"\r\n".to_vec();
    v.extend_from_slice(info.as_ref());
    v.extend_from_slice(b"\r\n\r\nOK\r\n");
    v
}
