//! The driver struct and its AT engine: writing commands, reading responses line by line with
//! URCs handled on every line, time accounting through the driver's own delays, timeouts,
//! resynchronisation and reboot detection.

use core::convert::Infallible;
use core::net::Ipv4Addr;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::config::Config;
use crate::error::{AtError, PinError};
use crate::frame::{Event, Framer};
use crate::model::{Family, Model, Profile, Timeouts};
use crate::socket::{Slot, SOCKETS};
use crate::urc::{self, Domain, Final, RegStatus, Urc};

/// How long input that keeps arriving is still drained after a wait's deadline, ms (see
/// [`Modem::pump_until`]).
pub(crate) const DRAIN_MS: u32 = 100;

/// How long the resynchronisation after a timeout drains late answers once its `AT` probe
/// was answered, ms (device-os skips 1 s of input before its probe, for the same reason).
pub(crate) const RESYNC_SETTLE_MS: u32 = 1_000;

/// A placeholder for an absent optional pin (RESET_N, V_INT). Never driven or read.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPin;

impl digital::ErrorType for NoPin {
    type Error = Infallible;
}

impl OutputPin for NoPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl InputPin for NoPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(false)
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

/// Counters since the driver was created. Cheap (a few `u32` increments); useful to size
/// buffers and to report AT traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Stats {
    /// Bytes written to the UART.
    pub bytes_sent: u32,
    /// Bytes read from the UART.
    pub bytes_received: u32,
    /// Command lines sent.
    pub commands: u32,
    /// URCs recognised.
    pub urcs: u32,
    /// Lines that were neither a result, a URC nor expected by the running command.
    pub unknown_lines: u32,
    /// Final result codes that belonged to no command: late answers of timed-out commands
    /// (and the resynchronising `AT`'s), drained before the next command.
    pub stray_results: u32,
    /// Lines longer than the line buffer.
    pub lines_too_long: u32,
    /// Command timeouts.
    pub timeouts: u32,
    /// Times the modem was found to have rebooted on its own.
    pub reboots_detected: u32,
    /// Resets or power cycles done to recover a deaf modem.
    pub recoveries: u32,
}

/// Session state: what the driver believes about the modem. Reset when it reboots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    pub model: Option<Model>,
    pub profile: Profile,
    pub family: Family,
    pub fw: [u8; 32],
    pub fw_len: u8,
    pub powered: bool,
    pub echo_off: bool,
    pub reg_mode_set: bool,
    pub cs: RegStatus,
    pub ps: RegStatus,
    pub eps: RegStatus,
    pub pdp_active: bool,
    pub pdp_ip: Option<Ipv4Addr>,
    pub upsda: Option<(u16, Option<Ipv4Addr>)>,
    pub psm: Option<u8>,
    pub sockets: [Slot; SOCKETS],
    pub epoch: u8,
    pub stale: u8,
    pub sweep_needed: bool,
    pub timeouts: u8,
    pub reboot_detected: bool,
    pub in_reinit: bool,
    pub no_recover: bool,
    pub needs_sync: bool,
    pub hex: bool,
}

impl State {
    fn new(family: Family) -> Self {
        Self {
            model: None,
            profile: family.profile(),
            family,
            fw: [0; 32],
            fw_len: 0,
            powered: false,
            echo_off: false,
            reg_mode_set: false,
            cs: RegStatus::NotRegistered,
            ps: RegStatus::NotRegistered,
            eps: RegStatus::NotRegistered,
            pdp_active: false,
            pdp_ip: None,
            upsda: None,
            psm: None,
            sockets: [Slot::EMPTY; SOCKETS],
            epoch: 0,
            stale: 0,
            sweep_needed: false,
            timeouts: 0,
            reboot_detected: false,
            in_reinit: false,
            no_recover: false,
            needs_sync: false,
            hex: false,
        }
    }

    /// Forget everything the modem held: it rebooted or lost power.
    pub fn invalidate(&mut self) {
        self.echo_off = false;
        self.reg_mode_set = false;
        self.cs = RegStatus::NotRegistered;
        self.ps = RegStatus::NotRegistered;
        self.eps = RegStatus::NotRegistered;
        self.pdp_active = false;
        self.pdp_ip = None;
        self.upsda = None;
        self.psm = None;
        self.sockets = [Slot::EMPTY; SOCKETS];
        self.epoch = self.epoch.wrapping_add(1);
        self.stale = 0;
        self.hex = false;
    }

    pub fn apply_urc(&mut self, u: Urc) {
        match u {
            Urc::DataReady { socket, len } => match self.sockets.get_mut(usize::from(socket)) {
                Some(s) if s.open => s.pending = len,
                Some(_) => self.stale |= 1 << socket,
                None => {}
            },
            Urc::SocketClosed(h) => {
                if let Some(s) = self.sockets.get_mut(usize::from(h)) {
                    if s.open {
                        s.peer_closed = true;
                    }
                }
            }
            Urc::PdpActivated { result, ip } => {
                self.upsda = Some((result, ip));
                if result == 0 {
                    self.pdp_active = true;
                    if ip.is_some() {
                        self.pdp_ip = ip;
                    }
                }
            }
            Urc::PdpDeactivated(_) | Urc::Detached => {
                self.pdp_active = false;
                self.pdp_ip = None;
            }
            Urc::Registration(d, s) => self.set_reg(d, s),
            Urc::PowerSaving(p) => self.psm = Some(p),
            Urc::Other => {}
        }
    }

    pub fn set_reg(&mut self, d: Domain, s: RegStatus) {
        match d {
            Domain::Cs => self.cs = s,
            Domain::Ps => self.ps = s,
            Domain::Eps => self.eps = s,
        }
        if !s.is_registered() && d != Domain::Cs {
            self.pdp_active = false;
        }
    }
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

/// What a running command wants to see besides results and URCs (which the engine handles).
pub(crate) trait Response {
    /// An information line; return `true` if it was expected.
    fn line(&mut self, _line: &[u8]) -> bool {
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

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    Final(Final),
    Prompt,
}

/// A blocking driver for a u-blox SARA modem.
///
/// * `U`: the UART (`embedded_io` `Read + Write + ReadReady`). `read` is only called after
///   `read_ready` said a byte is there.
/// * `D`: a `DelayNs`. It is the driver's only sense of time: it counts the delays it does
///   (plus 10 bit times per byte at [`Config::baud`]); see [`Modem::time_spent_ms`].
/// * `P`: PWR_ON (output, idle high, driven low to press), `R`: RESET_N (optional, idle
///   high), `V`: V_INT (optional input, high while the modem is on).
/// * `L`: line buffer size (default 256 bytes). Binary socket data goes straight to the
///   caller's buffer and does not need to fit; hex-mode reads do (`(L - 17) / 2` bytes per
///   TCP read, `(L - 41) / 2` per UDP read, see [`Config::hex_mode`]).
///
/// # Recovery cost
///
/// Every method that sends a command may first pay for the recovery of an earlier failure,
/// on top of its own cost:
///
/// * after a command timed out, the next command resynchronises: `AT` probes (1 s timeout
///   each) and, once one is answered, 1 s of draining late answers (about 1 s in all when
///   the modem is alive);
/// * at [`Config::max_timeouts`] consecutive timeouts (probes included) the modem is
///   restarted and initialised again ([`Modem::recover`]);
/// * a reboot noticed on the way (echo back on, `+CREG: 0,<stat>` after `AT+CREG=2`) costs a
///   re-initialisation (`ATE0` … `AT+UPSV=0`, normally well under 1 s, at most about 20 s
///   if every command answers just before its timeout).
///
/// Worst cases with the default timeouts and `max_timeouts = 2` (probes + restart, without
/// the initialisation), by the pins the board has:
///
/// | | RESET_N | no RESET_N, V_INT | neither |
/// |---|---:|---:|---:|
/// | U2 | 22 s | 40 s | 39 s |
/// | G3 | 17 s | 17 s | 17 s |
/// | R4 | 28 s | 55 s | 54 s |
/// | R5 | 22 s | 46 s | 67 s |
///
/// RAM: `L` + about 440 bytes (state with the timeout tables, 32-byte receive chunk, socket
/// table, last-command fingerprint; 696 bytes in all with the default `L` and zero-sized HAL
/// handles, measured with `size_of` on the host and on `thumbv7m-none-eabi`) plus the UART,
/// delay and pin values. Commands are built in a 128-byte stack buffer.
pub struct Modem<U, D, P, R = NoPin, V = NoPin, const L: usize = 256> {
    pub(crate) uart: U,
    pub(crate) delay: D,
    pub(crate) pwr: P,
    pub(crate) reset: Option<R>,
    pub(crate) vint: Option<V>,
    pub(crate) cfg: Config,
    pub(crate) st: State,
    pub(crate) stats: Stats,
    framer: Framer<L>,
    rx: [u8; 32],
    rx_pos: u8,
    rx_len: u8,
    spent_ns: u64,
    /// The command line last sent, to recognise its echo.
    last_cmd: Echo,
}

impl<U, D, P> Modem<U, D, P>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
{
    /// A driver with only PWR_ON. Nothing is sent and no pin is touched until
    /// [`power_on`](Modem::power_on).
    pub fn new(uart: U, delay: D, pwr_on: P, config: Config) -> Self {
        Self {
            uart,
            delay,
            pwr: pwr_on,
            reset: None,
            vint: None,
            st: State::new(config.family),
            cfg: config,
            stats: Stats::default(),
            framer: Framer::new(),
            rx: [0; 32],
            rx_pos: 0,
            rx_len: 0,
            spent_ns: 0,
            last_cmd: Echo::NONE,
        }
    }
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L> {
    /// Add a RESET_N pin (used for recovery and as a power-off fallback).
    pub fn with_reset<R2: OutputPin>(self, reset: R2) -> Modem<U, D, P, R2, V, L> {
        Modem {
            uart: self.uart,
            delay: self.delay,
            pwr: self.pwr,
            reset: Some(reset),
            vint: self.vint,
            cfg: self.cfg,
            st: self.st,
            stats: self.stats,
            framer: self.framer,
            rx: self.rx,
            rx_pos: self.rx_pos,
            rx_len: self.rx_len,
            spent_ns: self.spent_ns,
            last_cmd: self.last_cmd,
        }
    }

    /// Add a V_INT input (power state verification and reboot detection).
    pub fn with_vint<V2: InputPin>(self, vint: V2) -> Modem<U, D, P, R, V2, L> {
        Modem {
            uart: self.uart,
            delay: self.delay,
            pwr: self.pwr,
            reset: self.reset,
            vint: Some(vint),
            cfg: self.cfg,
            st: self.st,
            stats: self.stats,
            framer: self.framer,
            rx: self.rx,
            rx_pos: self.rx_pos,
            rx_len: self.rx_len,
            spent_ns: self.spent_ns,
            last_cmd: self.last_cmd,
        }
    }

    /// Use a line buffer of `L2` bytes instead of the default 256.
    pub fn with_line_buffer<const L2: usize>(self) -> Modem<U, D, P, R, V, L2> {
        Modem {
            uart: self.uart,
            delay: self.delay,
            pwr: self.pwr,
            reset: self.reset,
            vint: self.vint,
            cfg: self.cfg,
            st: self.st,
            stats: self.stats,
            framer: Framer::new(),
            rx: self.rx,
            rx_pos: self.rx_pos,
            rx_len: self.rx_len,
            spent_ns: self.spent_ns,
            last_cmd: self.last_cmd,
        }
    }

    /// Give the peripherals back: `(uart, delay, pwr_on, reset, vint)`.
    pub fn release(self) -> (U, D, P, Option<R>, Option<V>) {
        (self.uart, self.delay, self.pwr, self.reset, self.vint)
    }

    /// The UART, e.g. to change its baud rate. Bytes already buffered by the driver stay
    /// buffered.
    pub fn uart_mut(&mut self) -> &mut U {
        &mut self.uart
    }

    /// Time the driver has spent in its own delays and on the wire (10 bit times per byte
    /// at [`Config::baud`]) since it was created, in ms. The application charges this to its
    /// awake budget; it is also the clock of every timeout and budget of the driver.
    pub fn time_spent_ms(&self) -> u64 {
        crate::div::div_u64(self.spent_ns, 1_000_000)
    }

    /// Like [`time_spent_ms`](Self::time_spent_ms) with µs resolution.
    pub fn time_spent_us(&self) -> u64 {
        crate::div::div_u64(self.spent_ns, 1_000)
    }

    /// Traffic and event counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The model found by `AT+CGMM` during the last initialisation.
    pub fn model(&self) -> Option<Model> {
        self.st.model
    }

    /// The application firmware version from `ATI9` (e.g. `08.90,A01.13`); empty before init.
    pub fn firmware_version(&self) -> &[u8] {
        &self.st.fw[..usize::from(self.st.fw_len)]
    }

    /// The profile in force (the configured family's until the model is detected).
    pub fn profile(&self) -> &Profile {
        &self.st.profile
    }

    /// Last known registration status of the CS, PS and EPS domains (from URCs and polls).
    pub fn registration_status(&self) -> (RegStatus, RegStatus, RegStatus) {
        (self.st.cs, self.st.ps, self.st.eps)
    }

    /// The data context's IPv4 address, while it is known to be active.
    pub fn data_address(&self) -> Option<Ipv4Addr> {
        if self.st.pdp_active {
            self.st.pdp_ip
        } else {
            None
        }
    }

    /// Whether the driver believes the modem is on and initialised.
    pub fn is_powered(&self) -> bool {
        self.st.powered
    }

    /// The last `+UUPSMR` power-saving state reported (R4/R5).
    pub fn power_saving_state(&self) -> Option<u8> {
        self.st.psm
    }

    #[inline(never)]
    pub(crate) fn timeouts(&self) -> &Timeouts {
        self.cfg
            .timeouts
            .as_ref()
            .unwrap_or(&self.st.profile.timeouts)
    }

    pub(crate) fn charge_ns(&mut self, ns: u64) {
        self.spent_ns = self.spent_ns.saturating_add(ns);
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.spent_ns
    }

    #[inline(never)]
    pub(crate) fn deadline(&self, ms: u32) -> u64 {
        self.spent_ns.saturating_add(u64::from(ms) * 1_000_000)
    }

    /// Milliseconds left until `deadline` (0 if passed).
    #[inline(never)]
    pub(crate) fn left_ms(&self, deadline: u64) -> u32 {
        let left = crate::div::div_u64(deadline.saturating_sub(self.spent_ns), 1_000_000);
        u32::try_from(left).unwrap_or(u32::MAX)
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
    pub(crate) fn sleep_us(&mut self, us: u32) {
        self.delay.delay_us(us);
        self.charge_ns(u64::from(us) * 1_000);
    }

    pub(crate) fn sleep_ms(&mut self, ms: u32) {
        self.delay.delay_ms(ms);
        self.charge_ns(u64::from(ms) * 1_000_000);
    }

    fn byte_ns(&self) -> u64 {
        crate::div::div_u64(10_000_000_000, self.cfg.baud)
    }

    /// One received byte if the UART has one now. Never blocks.
    fn next_byte(&mut self) -> Result<Option<u8>, AtError> {
        if self.rx_pos >= self.rx_len {
            let ready = self
                .uart
                .read_ready()
                .map_err(|e| AtError::Uart(embedded_io::Error::kind(&e)))?;
            if !ready {
                return Ok(None);
            }
            let n = self
                .uart
                .read(&mut self.rx)
                .map_err(|e| AtError::Uart(embedded_io::Error::kind(&e)))?;
            if n == 0 {
                return Ok(None);
            }
            self.rx_pos = 0;
            self.rx_len = u8::try_from(n.min(self.rx.len())).unwrap_or(0);
            self.stats.bytes_received = self.stats.bytes_received.wrapping_add(n as u32);
            let ns = self.byte_ns() * n as u64;
            self.charge_ns(ns);
        }
        let b = self.rx[usize::from(self.rx_pos)];
        self.rx_pos += 1;
        Ok(Some(b))
    }

    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        self.uart
            .write_all(bytes)
            .map_err(|e| AtError::Uart(embedded_io::Error::kind(&e)))?;
        self.stats.bytes_sent = self.stats.bytes_sent.wrapping_add(bytes.len() as u32);
        let ns = self.byte_ns() * bytes.len() as u64;
        self.charge_ns(ns);
        Ok(())
    }

    pub(crate) fn pin_err<E: digital::Error>(e: E) -> PinError {
        PinError(e.kind())
    }

    /// V_INT level, `None` without the pin.
    pub(crate) fn vint_high(&mut self) -> Result<Option<bool>, PinError> {
        match self.vint.as_mut() {
            Some(v) => v.is_high().map(Some).map_err(Self::pin_err),
            None => Ok(None),
        }
    }

    /// Feed one byte through the framer and handle what it completes.
    fn feed(&mut self, b: u8, resp: &mut dyn Response, overflow: &mut bool) -> Option<Done> {
        let Self {
            framer,
            st,
            stats,
            last_cmd,
            ..
        } = self;
        match framer.push(b)? {
            Event::Line(line) => {
                if let Some(f) = urc::final_result(line) {
                    return Some(Done::Final(f));
                }
                if line.eq_ignore_ascii_case(b"AT") || Echo::of(line) == *last_cmd {
                    // Echo of the command just sent (or of a bare `AT`): after ATE0 it means
                    // the modem rebooted. Other lines starting with "AT" are payload text
                    // (after lost framing) or noise, not an echo.
                    if st.echo_off && !st.in_reinit {
                        st.reboot_detected = true;
                    }
                    return None;
                }
                if let Some(u) = urc::parse(line) {
                    stats.urcs = stats.urcs.wrapping_add(1);
                    st.apply_urc(u);
                    return None;
                }
                if let Some((d, Some(n), s)) = urc::reg_line(line) {
                    // Answer shape: a state update like a URC (Particle does the same). A
                    // reporting mode of 0 after we set 2 is the brown-out signature.
                    st.set_reg(d, s);
                    if n == 0 && st.reg_mode_set && !st.in_reinit {
                        st.reboot_detected = true;
                    }
                }
                if !resp.line(line) {
                    stats.unknown_lines = stats.unknown_lines.wrapping_add(1);
                }
                None
            }
            Event::Prompt => Some(Done::Prompt),
            Event::Overflow => {
                stats.lines_too_long = stats.lines_too_long.wrapping_add(1);
                *overflow = true;
                None
            }
            Event::PayloadStart(h) => {
                resp.payload_start(h);
                None
            }
            Event::PayloadByte(b) => {
                resp.payload_byte(b);
                None
            }
            Event::PayloadEnd(ok) => {
                resp.payload_end(ok);
                None
            }
        }
    }

    /// Wait for a final result (or the prompt when `prompt`), handling URCs, up to
    /// `timeout_ms`.
    fn wait(
        &mut self,
        timeout_ms: u32,
        prompt: bool,
        resp: &mut dyn Response,
    ) -> Result<Done, AtError> {
        let deadline = self.deadline(timeout_ms);
        let mut overflow = false;
        self.framer.set_expect_prompt(prompt);
        let r = loop {
            match self.next_byte() {
                Err(e) => break Err(e),
                Ok(Some(b)) => {
                    if let Some(done) = self.feed(b, resp, &mut overflow) {
                        break Ok(done);
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
        self.framer.set_expect_prompt(false);
        match r {
            Ok(Done::Final(f)) => {
                self.st.timeouts = 0;
                if overflow {
                    return Err(AtError::LineTooLong);
                }
                match f {
                    Final::Ok => Ok(Done::Final(f)),
                    Final::Error | Final::NoCarrier => Err(AtError::Error),
                    Final::Cme(c) => Err(AtError::Cme(c)),
                    Final::Cms(c) => Err(AtError::Cms(c)),
                    Final::Aborted => Err(AtError::Aborted),
                }
            }
            Ok(Done::Prompt) => Ok(Done::Prompt),
            Err(AtError::Timeout) => {
                self.st.timeouts = self.st.timeouts.saturating_add(1);
                self.stats.timeouts = self.stats.timeouts.wrapping_add(1);
                self.st.needs_sync = true;
                self.framer.reset();
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
        let mut overflow = false;
        loop {
            if stop(&self.st) {
                return Ok(());
            }
            match self.next_byte()? {
                Some(b) => {
                    if let Some(Done::Final(_)) = self.feed(b, &mut (), &mut overflow) {
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
    /// [`AtError::Uart`]; [`AtError::ModemRebooted`] if a reboot was detected (the driver
    /// has re-initialised the modem).
    pub fn poll(&mut self, wait_ms: u32) -> Result<(), AtError> {
        self.pump_until(wait_ms, &|_| false)?;
        self.check_reboot()
    }

    /// Before a command: V_INT check, pending resynchronisation, stale input.
    pub(crate) fn begin(&mut self) -> Result<(), AtError> {
        if let Ok(Some(false)) = self.vint_high() {
            if self.st.powered {
                self.st.powered = false;
                self.st.invalidate();
                self.stats.reboots_detected = self.stats.reboots_detected.wrapping_add(1);
            }
            return Err(AtError::PoweredOff);
        }
        if self.st.needs_sync && !self.st.in_reinit && !self.st.no_recover {
            self.resync()?;
        }
        // Whatever arrived since the last command is URCs (or late garbage).
        self.pump_until(0, &|_| false)?;
        self.check_reboot()
    }

    /// After a timeout: make sure the modem answers again and that a late result of the
    /// timed-out command cannot be taken for the next command's. `AT` until `OK` (each probe
    /// counts as a timeout if unanswered), then [`RESYNC_SETTLE_MS`] of draining: a late
    /// result due soon after the probe's `OK` is dropped there (counted in
    /// [`Stats::stray_results`]) instead of ending the next command. At
    /// [`Config::max_timeouts`] consecutive timeouts the modem is reset.
    fn resync(&mut self) -> Result<(), AtError> {
        loop {
            if self.st.timeouts >= self.cfg.max_timeouts {
                return match self.recover_hard() {
                    Ok(()) => Err(AtError::ModemRebooted),
                    Err(_) => Err(AtError::Timeout),
                };
            }
            self.send_cmd(b"AT\r\n")?;
            let t = self.timeouts().short;
            match self.wait(t, false, &mut ()) {
                Ok(_) | Err(AtError::Error) | Err(AtError::Cme(_)) | Err(AtError::Aborted) => {
                    self.pump_until(RESYNC_SETTLE_MS, &|_| false)?;
                    self.st.needs_sync = false;
                    self.st.timeouts = 0;
                    return Ok(());
                }
                Err(AtError::Timeout) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The modem does not answer: reset it (or power-cycle it) and initialise it again.
    pub(crate) fn recover_hard(&mut self) -> Result<(), crate::error::PowerError> {
        self.stats.recoveries = self.stats.recoveries.wrapping_add(1);
        self.st.invalidate();
        self.st.needs_sync = false;
        self.st.timeouts = 0;
        self.framer.reset();
        self.restart()
    }

    /// If a reboot was noticed, re-initialise and report it.
    pub(crate) fn check_reboot(&mut self) -> Result<(), AtError> {
        if !self.st.reboot_detected || self.st.in_reinit {
            return Ok(());
        }
        self.st.reboot_detected = false;
        self.stats.reboots_detected = self.stats.reboots_detected.wrapping_add(1);
        self.st.invalidate();
        self.st.in_reinit = true;
        let r = self.init();
        self.st.in_reinit = false;
        self.st.reboot_detected = false;
        if r.is_err() {
            self.st.needs_sync = true;
        }
        Err(AtError::ModemRebooted)
    }

    /// Switch the framer's binary payload mode (around `+USORD`/`+USORF` reads).
    pub(crate) fn framer_binary(&mut self, on: bool) {
        self.framer.set_expect_binary(on);
    }

    /// Wait for a final result without reboot handling (probes).
    pub(crate) fn wait_plain(&mut self, timeout_ms: u32) -> Result<(), AtError> {
        self.wait(timeout_ms, false, &mut ()).map(|_| ())
    }

    /// Drop buffered and pending input without interpreting it (garbage at a wrong baud
    /// rate, boot noise). Bounded to 100 ms of charged time.
    pub(crate) fn discard_input(&mut self) -> Result<(), AtError> {
        self.rx_pos = self.rx_len;
        let deadline = self.deadline(100);
        while self.now_ns() < deadline && self.next_byte()?.is_some() {
            self.rx_pos = self.rx_len;
        }
        self.framer.reset();
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
        self.last_cmd = Echo::NONE;
        self.send_cmd_more(cmd)
    }

    /// More of the command line started with [`send_cmd`](Self::send_cmd) (hex data).
    pub(crate) fn send_cmd_more(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        self.last_cmd.push(bytes);
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
    /// it, leading spaces removed) to `parse`; `AtError::Unexpected` if none came.
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
