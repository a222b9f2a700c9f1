//! The AT engine: writing commands, reading responses line by line with URCs handled on every
//! line, timeouts, resynchronisation, reboot detection and the re-initialisation that follows.
//!
//! Where the engine stands with the modem is one value, [`Link`], changed only here (and by
//! the power sequences through [`Modem::set_link`]). Its transitions:
//!
//! | from | event | to |
//! |---|---|---|
//! | `InStep` | a command unanswered | `OutOfStep { timeouts: 1 }` |
//! | `OutOfStep { n }` | a probe unanswered | `OutOfStep { n + 1 }` |
//! | `InStep`, `OutOfStep` | UART error (framer reset) | `OutOfStep` (count kept) |
//! | `OutOfStep { n }` | next command: `AT` answered, late answers drained | `InStep` |
//! | `OutOfStep { n ≥ max }` | next command: reset or power cycle, boot | `Initialising` |
//! | `OutOfStep { n }` | next command inside a budget that ends first, or due a restart | unchanged (`Timeout`) |
//! | `InStep`, `OutOfStep` | echo after `ATE0`, `+CREG: 0,<stat>` | `Rebooted` |
//! | `Rebooted` | end of the call | `Initialising`, stale sockets to sweep |
//! | `Initialising` | initialisation done / failed | `InStep` / `OutOfStep` |
//! | any | `power_off` starts | `PoweringOff` |
//! | `PoweringOff` | off / still on | `InStep` / `OutOfStep { 0 }` |
//!
//! A command fails only for what happened to its own exchange: an over-long line fails it
//! only when that line may have been one it expected ([`Response::overflow`]), so an SMS
//! delivered with its PDU (`+CMT`) or line noise never turns a good answer into an error.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::error::{AtError, PowerError};
use crate::frame::{Event, Framer};
use crate::modem::{Modem, State};
use crate::urc::{self, Final};

/// How long input that keeps arriving is still drained after a wait's deadline, ms (see
/// [`Modem::pump_until`]).
pub(crate) const DRAIN_MS: u32 = 100;

/// How long the resynchronisation after a timeout drains late answers once its `AT` probe
/// was answered, ms (device-os skips 1 s of input before its probe, for the same reason).
pub(crate) const RESYNC_SETTLE_MS: u32 = 1_000;

/// Where the engine stands with the modem (see the module docs for the transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum Link {
    /// Every command sent got its final result; nothing of an earlier exchange is pending.
    InStep,
    /// `timeouts` consecutive commands or probes went unanswered, or the UART failed: late
    /// answers (or the rest of a payload) may still arrive. The next command resynchronises
    /// first, or restarts the modem at [`ModemConfig::max_timeouts`](crate::ModemConfig).
    OutOfStep { timeouts: u8 },
    /// The modem was seen to reboot; the call re-initialises it before it returns.
    Rebooted,
    /// The modem is being initialised (after power-on, a reboot or a restart): echo and
    /// reporting mode 0 are expected, nothing is resynchronised.
    Initialising,
    /// The modem is being switched off: unanswered commands are expected, nothing is
    /// resynchronised or restarted, reboot signs are ignored.
    PoweringOff,
}

/// A recovery the next command will run before its own exchange (see
/// [`Modem::needs_recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
#[must_use = "a recovery the next command will run first: run it now (`recover`) or plan for it"]
pub enum PendingRecovery {
    /// A command went unanswered (or the UART failed): `AT` probes (short timeout each, 1 s on
    /// every family) until one is answered, then 1 s of draining late answers; a restart if
    /// [`ModemConfig::max_timeouts`](crate::ModemConfig) probes in a row go unanswered. About 1 s when
    /// the modem is alive.
    Resync,
    /// [`ModemConfig::max_timeouts`](crate::ModemConfig) commands in a row went unanswered: the modem
    /// is reset (or power-cycled) and initialised again, see the
    /// [recovery cost](Modem#recovery-cost).
    Restart,
    /// A reboot was noticed by a probe ([`Modem::recover`]): the modem is initialised again
    /// (normally well under 1 s) and sockets are swept before the next one is created.
    Reinitialise,
}

/// A fingerprint of a command line (length and FNV-1a hash of its bytes without CR and LF),
/// to tell its echo from payload text that happens to start with "AT".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Echo {
    len: u16,
    hash: u32,
}

impl Echo {
    const NONE: Self = Self {
        len: 0,
        hash: FNV_OFFSET,
    };

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b != b'\r' && b != b'\n' {
                self.len = self.len.saturating_add(1);
                self.hash = (self.hash ^ u32::from(b)).wrapping_mul(FNV_PRIME);
            }
        }
    }

    fn of(line: &[u8]) -> Self {
        let mut e = Self::NONE;
        e.push(line);
        e
    }
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The engine's part of the driver: framer, receive chunk, last command, [`Link`].
pub(crate) struct Engine<const L: usize> {
    framer: Framer<L>,
    rx: [u8; 32],
    rx_pos: u8,
    rx_len: u8,
    /// The command line last sent, to recognise its echo.
    last_cmd: Echo,
    /// The next line is the body of a two-line URC (`+CMT`, `+CDS`, `+CBM`).
    urc_body: bool,
    pub(crate) link: Link,
    /// The end of the running budgeted call (`wait_sim_ready`, `register`, `activate_data`):
    /// a resynchronisation inside it stops there and never restarts the modem.
    budget_end: Option<u64>,
}

impl<const L: usize> Engine<L> {
    pub(crate) const fn new() -> Self {
        Self {
            framer: Framer::new(),
            rx: [0; 32],
            rx_pos: 0,
            rx_len: 0,
            last_cmd: Echo::NONE,
            urc_body: false,
            link: Link::InStep,
            budget_end: None,
        }
    }

    /// The same engine with a line buffer of `L2` bytes (any partial line is dropped).
    pub(crate) fn resize<const L2: usize>(self) -> Engine<L2> {
        Engine {
            framer: Framer::new(),
            rx: self.rx,
            rx_pos: self.rx_pos,
            rx_len: self.rx_len,
            last_cmd: self.last_cmd,
            urc_body: false,
            link: self.link,
            budget_end: self.budget_end,
        }
    }

    /// Forget any partial line or payload.
    fn reset_framing(&mut self) {
        self.framer.reset();
        self.urc_body = false;
    }
}

/// What a running command wants to see besides results and URCs (which the engine handles).
pub(crate) trait Response {
    /// An information line; return `true` if it was expected.
    fn line(&mut self, _line: &[u8]) -> bool {
        false
    }
    /// A line longer than the line buffer was skipped; `head` is its beginning. Return `true`
    /// if it may have been a line this command expected: the command then fails with
    /// [`AtError::LineTooLong`]. Lines it cannot have been (URCs, noise) must not fail it.
    fn overflow(&mut self, _head: &[u8]) -> bool {
        false
    }
    /// A binary payload header.
    fn payload_start(&mut self, _header: &[u8]) {}
    /// One payload byte.
    fn payload_byte(&mut self, _b: u8) {}
    /// End of the payload.
    fn payload_end(&mut self, _ok: bool) {}
}

impl Response for () {}

/// A [`Response`] from a closure over information lines.
pub(crate) struct OnLine<F>(pub F);

impl<F: FnMut(&[u8]) -> bool> Response for OnLine<F> {
    fn line(&mut self, line: &[u8]) -> bool {
        (self.0)(line)
    }
}

/// A sign that the modem rebooted was seen (ignored while initialising or switching off,
/// when echo and reporting mode 0 are expected).
fn reboot_seen(link: &mut Link, sign: &'static str) {
    if matches!(link, Link::InStep | Link::OutOfStep { .. }) {
        warn!("modem reboot noticed ({})", sign);
        *link = Link::Rebooted;
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    Final(Final),
    Prompt,
}

/// What the engine makes of one input byte.
enum Fed {
    /// Nothing that ends a wait.
    Nothing,
    /// A line the running command expected was too long and lost.
    Lost,
    /// The wait's end.
    Done(Done),
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L> {
    /// Which recovery the next command will run first, if any: the application can decide
    /// (run it now with [`recover`](Self::recover), or leave it to the next wake) before its
    /// awake budget is spent, since every command pays it on top of its own cost.
    ///
    /// `#[must_use]`: asking and ignoring the answer does nothing.
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// fn check<U, D, P>(modem: &modem_ublox::Modem<U, D, P>) {
    ///     modem.needs_recovery(); // the answer ignored: refused at compile time
    /// }
    /// # fn main() {}
    /// ```
    #[must_use = "the recovery the next command will run first: run it now (`recover`) or plan for it"]
    pub fn needs_recovery(&self) -> Option<PendingRecovery> {
        match self.eng.link {
            Link::OutOfStep { timeouts } if timeouts >= self.cfg.max_timeouts => {
                Some(PendingRecovery::Restart)
            }
            Link::OutOfStep { .. } => Some(PendingRecovery::Resync),
            Link::Rebooted => Some(PendingRecovery::Reinitialise),
            Link::InStep | Link::Initialising | Link::PoweringOff => None,
        }
    }

    /// Run `f` (a call with a budget ending at `end`, in driver ns) with recovery capped by
    /// that budget (see [`resync`](Self::resync)).
    pub(crate) fn within_budget<T>(&mut self, end: u64, f: impl FnOnce(&mut Self) -> T) -> T {
        let outer = self.eng.budget_end.replace(end);
        let r = f(self);
        self.eng.budget_end = outer;
        r
    }

    /// Change the engine's [`Link`] (power sequences: off, on, restart).
    pub(crate) fn set_link(&mut self, link: Link) {
        self.eng.link = link;
    }

    /// The UART failed: whatever was being framed is lost (bytes were dropped), so the
    /// framer starts afresh and the next command resynchronises.
    fn uart_failed<E: embedded_io::Error>(&mut self, e: E) -> AtError {
        warn!(
            "UART error {:?}: input lost, the next command resynchronises first",
            e.kind()
        );
        self.eng.reset_framing();
        if self.eng.link == Link::InStep {
            self.eng.link = Link::OutOfStep { timeouts: 0 };
        }
        AtError::Uart(e.kind())
    }

    /// Switch the framer's binary payload mode (around `+USORD`/`+USORF` reads).
    pub(crate) fn framer_binary(&mut self, on: bool) {
        self.eng.framer.set_expect_binary(on);
    }
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    /// One received byte if the UART has one now. Never blocks.
    fn next_byte(&mut self) -> Result<Option<u8>, AtError> {
        let e = &mut self.eng;
        if e.rx_pos >= e.rx_len {
            let ready = match self.uart.read_ready() {
                Ok(r) => r,
                Err(err) => return Err(self.uart_failed(err)),
            };
            if !ready {
                return Ok(None);
            }
            let n = match self.uart.read(&mut self.eng.rx) {
                Ok(n) => n,
                Err(err) => return Err(self.uart_failed(err)),
            };
            if n == 0 {
                return Ok(None);
            }
            let e = &mut self.eng;
            e.rx_pos = 0;
            e.rx_len = u8::try_from(n.min(e.rx.len())).unwrap_or(0);
            self.stats.bytes_received = self.stats.bytes_received.wrapping_add(n as u32);
            let ns = self.byte_ns() * n as u64;
            self.charge_ns(ns);
        }
        let e = &mut self.eng;
        let b = e.rx[usize::from(e.rx_pos)];
        e.rx_pos += 1;
        Ok(Some(b))
    }

    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        if let Err(e) = self.uart.write_all(bytes) {
            return Err(self.uart_failed(e));
        }
        self.stats.bytes_sent = self.stats.bytes_sent.wrapping_add(bytes.len() as u32);
        let ns = self.byte_ns() * bytes.len() as u64;
        self.charge_ns(ns);
        Ok(())
    }

    /// Feed one byte through the framer and handle what it completes.
    fn feed(&mut self, b: u8, resp: &mut dyn Response) -> Fed {
        let Self { eng, st, stats, .. } = self;
        let Some(ev) = eng.framer.push(b) else {
            return Fed::Nothing;
        };
        match ev {
            Event::Line(line) => {
                if eng.urc_body {
                    // The PDU (or text) of `+CMT`/`+CDS`/`+CBM`: part of the URC.
                    eng.urc_body = false;
                    return Fed::Nothing;
                }
                if let Some(f) = urc::final_result(line) {
                    return Fed::Done(Done::Final(f));
                }
                if line.eq_ignore_ascii_case(b"AT") || Echo::of(line) == eng.last_cmd {
                    // Echo of the command just sent (or of a bare `AT`): after ATE0 it means
                    // the modem rebooted. Other lines starting with "AT" are payload text
                    // (after lost framing) or noise, not an echo.
                    if st.echo_off {
                        reboot_seen(&mut eng.link, "echo after ATE0");
                    }
                    return Fed::Nothing;
                }
                if urc::body_follows(line) {
                    stats.urcs = stats.urcs.wrapping_add(1);
                    eng.urc_body = true;
                    return Fed::Nothing;
                }
                if let Some(u) = urc::parse(line) {
                    stats.urcs = stats.urcs.wrapping_add(1);
                    st.apply_urc(u);
                    return Fed::Nothing;
                }
                if let Some((d, Some(n), s)) = urc::reg_line(line) {
                    // Answer shape: a state update like a URC (Particle does the same). A
                    // reporting mode of 0 after we set 2 is the brown-out signature.
                    st.set_reg(d, s);
                    if n == 0 && st.reg_mode_set {
                        reboot_seen(&mut eng.link, "registration reporting back to 0");
                    }
                }
                if !resp.line(line) {
                    stats.unknown_lines = stats.unknown_lines.wrapping_add(1);
                }
                Fed::Nothing
            }
            Event::Prompt => Fed::Done(Done::Prompt),
            Event::Overflow(head) => {
                stats.lines_too_long = stats.lines_too_long.wrapping_add(1);
                if eng.urc_body {
                    eng.urc_body = false;
                    return Fed::Nothing;
                }
                if resp.overflow(head) {
                    Fed::Lost
                } else {
                    Fed::Nothing
                }
            }
            Event::PayloadStart(h) => {
                resp.payload_start(h);
                Fed::Nothing
            }
            Event::PayloadByte(b) => {
                resp.payload_byte(b);
                Fed::Nothing
            }
            Event::PayloadEnd(ok) => {
                resp.payload_end(ok);
                Fed::Nothing
            }
        }
    }

    /// Wait for a final result (or the prompt when `prompt`), handling URCs, up to
    /// `timeout_ms`. Counts timeouts in [`Link`]; a UART error leaves the link out of step.
    fn wait(
        &mut self,
        timeout_ms: u32,
        prompt: bool,
        resp: &mut dyn Response,
    ) -> Result<Done, AtError> {
        let deadline = self.deadline(timeout_ms);
        let mut lost = false;
        self.eng.framer.set_expect_prompt(prompt);
        let r = loop {
            match self.next_byte() {
                Err(e) => break Err(e),
                Ok(Some(b)) => {
                    match self.feed(b, resp) {
                        Fed::Done(d) => break Ok(d),
                        Fed::Lost => lost = true,
                        Fed::Nothing => {}
                    }
                    if self.now_ns() >= deadline {
                        break Err(AtError::Timeout);
                    }
                }
                Ok(None) => {
                    if self.now_ns() >= deadline {
                        break Err(AtError::Timeout);
                    }
                    let us = self.cfg.poll_interval_us.max(1);
                    self.sleep_us(us);
                }
            }
        };
        self.eng.framer.set_expect_prompt(false);
        match r {
            Ok(Done::Final(f)) => match f {
                _ if lost => {
                    warn!("an answer line did not fit the line buffer");
                    Err(AtError::LineTooLong)
                }
                Final::Ok => Ok(Done::Final(f)),
                Final::Error | Final::NoCarrier => {
                    warn!("command refused: ERROR");
                    Err(AtError::Error)
                }
                Final::Cme(c) => {
                    warn!("command refused: +CME ERROR {}", c);
                    Err(AtError::Cme(c))
                }
                Final::Cms(c) => {
                    warn!("command refused: +CMS ERROR {}", c);
                    Err(AtError::Cms(c))
                }
                Final::Aborted => {
                    warn!("command aborted");
                    Err(AtError::Aborted)
                }
            },
            Ok(Done::Prompt) => Ok(Done::Prompt),
            Err(AtError::Timeout) => {
                self.stats.timeouts = self.stats.timeouts.wrapping_add(1);
                self.eng.link = match self.eng.link {
                    Link::InStep => Link::OutOfStep { timeouts: 1 },
                    Link::OutOfStep { timeouts } => Link::OutOfStep {
                        timeouts: timeouts.saturating_add(1),
                    },
                    other => other,
                };
                debug!("no answer within {} ms: {:?}", timeout_ms, self.eng.link);
                self.eng.reset_framing();
                Err(AtError::Timeout)
            }
            Err(e) => Err(e),
        }
    }

    /// Handle whatever has arrived (URCs) for up to `ms`, stopping early when `stop` says
    /// so. Final result codes seen here belong to no command and are dropped.
    ///
    /// Input that is still arriving at the deadline is drained for at most
    /// [`DRAIN_MS`] more, so `ms = 0` takes in what has already arrived, and a modem
    /// that never stops sending (noise, NULs on a dead line, a URC loop) cannot hold the
    /// driver here.
    pub(crate) fn pump_until(
        &mut self,
        ms: u32,
        stop: &dyn Fn(&State) -> bool,
    ) -> Result<(), AtError> {
        let deadline = self.deadline(ms);
        let hard = deadline.saturating_add(u64::from(DRAIN_MS) * 1_000_000);
        loop {
            if stop(&self.st) {
                return Ok(());
            }
            match self.next_byte()? {
                Some(b) => {
                    if let Fed::Done(Done::Final(_)) = self.feed(b, &mut ()) {
                        self.stats.stray_results = self.stats.stray_results.wrapping_add(1);
                    }
                    if self.now_ns() >= hard {
                        return Ok(());
                    }
                }
                None => {
                    if self.now_ns() >= deadline {
                        return Ok(());
                    }
                    let us = self.cfg.poll_interval_us.max(1);
                    self.sleep_us(us);
                }
            }
        }
    }

    /// Handle URCs for up to `wait_ms` (0: only what has already arrived). Call this while
    /// idle so socket data and registration changes are noticed. Input still arriving at the
    /// end is taken in for at most 100 ms more, so a modem that never stops sending (noise,
    /// NULs on a dead line, a URC loop) cannot hold the caller.
    ///
    /// Cost: `wait_ms`, and at most 100 ms more while input keeps arriving. A reboot noticed in
    /// what arrived costs the re-initialisation (see [recovery cost](Modem#recovery-cost));
    /// `poll` never resynchronises or resets.
    ///
    /// # Errors
    /// [`AtError::Uart`] (the next command resynchronises first); [`AtError::ModemRebooted`]
    /// if a reboot was detected (the driver has re-initialised the modem).
    pub fn poll(&mut self, wait_ms: u32) -> Result<(), AtError> {
        self.pump_until(wait_ms, &|_| false)?;
        self.check_reboot()
    }

    /// Before a command: V_INT check, pending resynchronisation, stale input.
    pub(crate) fn begin(&mut self) -> Result<(), AtError> {
        if let Ok(Some(false)) = self.vint_high() {
            if self.st.powered {
                warn!("V_INT low: the modem is off");
                self.st.powered = false;
                self.st.invalidate();
                self.stats.reboots_detected = self.stats.reboots_detected.wrapping_add(1);
            }
            return Err(AtError::PoweredOff);
        }
        if let Link::OutOfStep { .. } = self.eng.link {
            self.resync()?;
        }
        // Whatever arrived since the last command is URCs (or late garbage).
        self.pump_until(0, &|_| false)?;
        self.check_reboot()
    }

    /// After a timeout or a UART error: make sure the modem answers again and that a late
    /// result of the failed exchange cannot be taken for the next command's. `AT` until `OK`
    /// (each probe counts as a timeout if unanswered), then [`RESYNC_SETTLE_MS`] of draining:
    /// a late result due soon after the probe's `OK` is dropped there (counted in
    /// [`Stats::stray_results`](crate::Stats)) instead of ending the next command. At
    /// [`ModemConfig::max_timeouts`](crate::ModemConfig) consecutive timeouts the modem is restarted.
    ///
    /// Inside a budgeted call ([`within_budget`](Self::within_budget)) probes and draining
    /// stop at the budget's end (`Timeout` there, the link still out of step), and a restart
    /// is never started: `Timeout`, with the restart left to
    /// [`needs_recovery`](Self::needs_recovery) and [`recover`](Self::recover).
    fn resync(&mut self) -> Result<(), AtError> {
        info!("resynchronising: {:?}", self.eng.link);
        loop {
            let Link::OutOfStep { timeouts } = self.eng.link else {
                // A reboot was seen meanwhile: the re-initialisation takes over.
                return Ok(());
            };
            let left = self.eng.budget_end.map(|end| self.left_ms(end));
            if timeouts >= self.cfg.max_timeouts {
                if left.is_some() {
                    debug!("restart due, but not inside a budgeted call");
                    return Err(AtError::Timeout);
                }
                warn!("{} commands unanswered in a row", timeouts);
                return match self.recover_hard() {
                    Ok(()) => Err(AtError::ModemRebooted),
                    Err(_) => Err(AtError::Timeout),
                };
            }
            let t = self.timeouts().short.min(left.unwrap_or(u32::MAX));
            if t == 0 {
                return Err(AtError::Timeout);
            }
            self.send_cmd(b"AT\r\n")?;
            match self.wait(t, false, &mut ()) {
                Ok(_) | Err(AtError::Error) | Err(AtError::Cme(_)) | Err(AtError::Aborted) => {
                    let left = self.eng.budget_end.map(|end| self.left_ms(end));
                    let settle = RESYNC_SETTLE_MS.min(left.unwrap_or(u32::MAX));
                    self.pump_until(settle, &|_| false)?;
                    if settle < RESYNC_SETTLE_MS {
                        // The budget ended before late answers were drained: still out of
                        // step, the next call drains again.
                        if let Link::OutOfStep { .. } = self.eng.link {
                            self.eng.link = Link::OutOfStep { timeouts: 0 };
                        }
                        return Err(AtError::Timeout);
                    }
                    if let Link::OutOfStep { .. } = self.eng.link {
                        self.eng.link = Link::InStep;
                        info!("resynchronised");
                    }
                    return Ok(());
                }
                Err(AtError::Timeout) if t < self.timeouts().short => {
                    // Cut short by the budget: not a sign of a deaf modem, not counted.
                    self.eng.link = Link::OutOfStep { timeouts };
                    return Err(AtError::Timeout);
                }
                Err(AtError::Timeout) | Err(AtError::LineTooLong) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The modem does not answer: reset it (or power-cycle it) and initialise it again.
    pub(crate) fn recover_hard(&mut self) -> Result<(), PowerError> {
        warn!("restarting the modem (reset or power cycle)");
        self.stats.recoveries = self.stats.recoveries.wrapping_add(1);
        self.st.invalidate();
        // Counted afresh: a restart that brings no answer leaves the next command to time
        // out (and count) again; `init` marks the initialisation itself.
        self.eng.link = Link::InStep;
        self.eng.reset_framing();
        self.restart()
    }

    /// If a reboot was noticed, re-initialise, mark every socket handle for a sweep (a
    /// command the rebooted modem carried out may have created one) and report it.
    pub(crate) fn check_reboot(&mut self) -> Result<(), AtError> {
        if self.eng.link != Link::Rebooted {
            return Ok(());
        }
        warn!("modem rebooted: re-initialising, sockets and data context lost");
        self.stats.reboots_detected = self.stats.reboots_detected.wrapping_add(1);
        self.st.invalidate();
        self.st.stale = crate::socket::ALL_HANDLES;
        let _ = self.init();
        Err(AtError::ModemRebooted)
    }

    /// Run the initialisation with the link in [`Link::Initialising`], and leave it in step
    /// if it succeeded, out of step if the modem stopped answering.
    pub(crate) fn init(&mut self) -> Result<(), PowerError> {
        self.eng.link = Link::Initialising;
        let r = self.init_sequence();
        match &r {
            Ok(()) => info!("modem initialised"),
            Err(e) => warn!("initialisation failed: {:?}", e),
        }
        self.eng.link = match r {
            Err(PowerError::At(AtError::Timeout)) => Link::OutOfStep { timeouts: 1 },
            Err(PowerError::At(AtError::Uart(_))) => Link::OutOfStep { timeouts: 0 },
            _ => Link::InStep,
        };
        r
    }

    /// Send `AT` once and wait for any final result, without counting a timeout towards
    /// recovery (probes while powering on or off). `true` if answered.
    pub(crate) fn probe_once(&mut self) -> Result<bool, AtError> {
        let before = self.eng.link;
        self.send_cmd(b"AT\r\n")?;
        let t = self.timeouts().short;
        let r = self.wait(t, false, &mut ());
        if r == Err(AtError::Timeout) {
            // A probe's silence is expected (the modem may be off or booting).
            self.eng.link = before;
        }
        match r {
            Ok(_) | Err(AtError::Error) | Err(AtError::Cme(_)) | Err(AtError::Aborted) => Ok(true),
            Err(AtError::Timeout) | Err(AtError::LineTooLong) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wait for a final result without counting a timeout towards recovery.
    pub(crate) fn wait_uncounted(&mut self, timeout_ms: u32) -> Result<(), AtError> {
        let before = self.eng.link;
        let r = self.wait(timeout_ms, false, &mut ()).map(|_| ());
        if r == Err(AtError::Timeout) {
            self.eng.link = before;
        }
        r
    }

    /// Drop buffered and pending input without interpreting it (garbage at a wrong baud
    /// rate, boot noise). Bounded to 100 ms of charged time.
    pub(crate) fn discard_input(&mut self) -> Result<(), AtError> {
        self.eng.rx_pos = self.eng.rx_len;
        let deadline = self.deadline(100);
        while self.now_ns() < deadline && self.next_byte()?.is_some() {
            self.eng.rx_pos = self.eng.rx_len;
        }
        self.eng.reset_framing();
        Ok(())
    }

    /// Send a command line and wait for its final result.
    pub(crate) fn exec(
        &mut self,
        cmd: &[u8],
        timeout_ms: u32,
        resp: &mut dyn Response,
    ) -> Result<(), AtError> {
        self.begin()?;
        self.send_cmd(cmd)?;
        self.finish(timeout_ms, resp)
    }

    /// Send a command line (after [`begin`](Self::begin) has run), or its start when the
    /// rest follows with [`send_cmd_more`](Self::send_cmd_more).
    pub(crate) fn send_cmd(&mut self, cmd: &[u8]) -> Result<(), AtError> {
        self.stats.commands = self.stats.commands.wrapping_add(1);
        self.eng.last_cmd = Echo::NONE;
        self.send_cmd_more(cmd)
    }

    /// More of the command line started with [`send_cmd`](Self::send_cmd) (hex data).
    pub(crate) fn send_cmd_more(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        self.eng.last_cmd.push(bytes);
        self.write_bytes(bytes)
    }

    /// Wait for the final result of the command just sent.
    pub(crate) fn finish(
        &mut self,
        timeout_ms: u32,
        resp: &mut dyn Response,
    ) -> Result<(), AtError> {
        let r = self.wait(timeout_ms, false, resp).map(|_| ());
        self.after(r)
    }

    /// Send a command that answers with the `@` prompt; `Ok` once the prompt is seen.
    pub(crate) fn exec_prompt(&mut self, cmd: &[u8], timeout_ms: u32) -> Result<(), AtError> {
        self.begin()?;
        self.send_cmd(cmd)?;
        let r = match self.wait(timeout_ms, true, &mut ()) {
            Ok(Done::Prompt) => Ok(()),
            Ok(Done::Final(_)) => Err(AtError::Unexpected),
            Err(e) => Err(e),
        };
        self.after(r)
    }

    fn after(&mut self, r: Result<(), AtError>) -> Result<(), AtError> {
        self.check_reboot()?;
        r
    }

    /// `exec` with a plain command and no information line expected.
    pub(crate) fn simple(&mut self, cmd: &[u8], timeout_ms: u32) -> Result<(), AtError> {
        self.exec(cmd, timeout_ms, &mut ())
    }

    /// Run `cmd` and give the first information line starting with `prefix` (the text after
    /// it, leading spaces removed) to `parse`; `AtError::Unexpected` if none came,
    /// `AtError::LineTooLong` if none came but a line too long for the buffer did (or one
    /// with `prefix` was too long).
    pub(crate) fn query<T>(
        &mut self,
        cmd: &[u8],
        timeout_ms: u32,
        prefix: &[u8],
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<T, AtError> {
        // One non-generic exchange (`ask`) for every query: only the parser is per call site.
        self.ask_parse(cmd, timeout_ms, prefix, parse)
    }
}
