//! The driver struct, its session state (what the driver believes about the modem) and its
//! sense of time (the driver's own delays and bytes on the wire). The AT engine is in
//! `engine.rs`.

use core::convert::Infallible;
use core::net::Ipv4Addr;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::config::ModemConfig;
use crate::engine::Engine;
use crate::error::PinError;
use crate::model::{Family, Model, Profile, Timeouts};
use crate::socket::{Slot, SOCKETS};
use crate::urc::{Domain, RegStatus, Urc};

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
    /// Socket handles to sweep before the next socket is created (bit `h`: handle `h`): named
    /// by a URC but not open here, or possibly created by a command whose answer was lost or
    /// that a rebooted modem carried out.
    pub stale: u8,
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
            hex: false,
        }
    }

    /// Forget everything the modem held: it rebooted or lost power.
    pub(crate) fn invalidate(&mut self) {
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

    /// Socket data in hex mode (`AT+UDCONF=1,1` sent); always `false` without the `hex-mode`
    /// feature, so the hex paths are not linked in.
    pub(crate) fn hex(&self) -> bool {
        cfg!(feature = "hex-mode") && self.hex
    }

    pub(crate) fn apply_urc(&mut self, u: Urc) {
        match u {
            Urc::DataReady { socket, len } => match self.sockets.get_mut(usize::from(socket)) {
                Some(s) if s.open => s.pending = len,
                Some(_) => self.stale |= 1 << socket,
                None => {}
            },
            Urc::SocketClosed(h) => {
                if let Some(s) = self.sockets.get_mut(usize::from(h)) {
                    if s.open {
                        info!("socket {} closed by the peer or network (+UUSOCL)", h);
                        s.peer_closed = true;
                    }
                }
            }
            Urc::PdpActivated { result, ip } => {
                info!("data context activation finished: result {}", result);
                self.upsda = Some((result, ip));
                if result == 0 {
                    self.pdp_active = true;
                    if ip.is_some() {
                        self.pdp_ip = ip;
                    }
                }
            }
            Urc::PdpDeactivated(_profile) => {
                info!(
                    "data context deactivated by the network (profile {})",
                    _profile
                );
                // The network dropped the data context: its sockets are gone with it (the
                // modem refuses them from now on), data already announced is still asked for.
                self.pdp_active = false;
                self.pdp_ip = None;
                for s in self.sockets.iter_mut().filter(|s| s.open) {
                    s.peer_closed = true;
                }
            }
            Urc::Detached => {
                info!("network detach (+CGEV): data context lost");
                self.pdp_active = false;
                self.pdp_ip = None;
            }
            Urc::Registration(d, s) => self.set_reg(d, s),
            Urc::PowerSaving(p) => self.psm = Some(p),
            Urc::Other => {}
        }
    }

    pub(crate) fn set_reg(&mut self, d: Domain, s: RegStatus) {
        // Only a log needs the status before (the comparison costs flash otherwise).
        #[cfg(any(feature = "defmt", feature = "log"))]
        {
            let before = match d {
                Domain::Cs => self.cs,
                Domain::Ps => self.ps,
                Domain::Eps => self.eps,
            };
            if before != s {
                info!("registration {:?}: {:?}", d, s);
            }
        }
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

/// A blocking driver for a u-blox SARA modem.
///
/// * `U`: the UART (`embedded_io` `Read + Write + ReadReady`). `read` is only called after
///   `read_ready` said a byte is there.
/// * `D`: a `DelayNs`. It is the driver's only sense of time: it counts the delays it does
///   (plus 10 bit times per byte at [`ModemConfig::baud`]); see [`Modem::time_spent_ms`].
/// * `P`: PWR_ON (output, idle high, driven low to press), `R`: RESET_N (optional, idle
///   high), `V`: V_INT (optional input, high while the modem is on).
/// * `L`: line buffer size (default 256 bytes). Binary socket data goes straight to the
///   caller's buffer and does not need to fit; hex-mode reads do (`(L - 17) / 2` bytes per
///   TCP read, `(L - 41) / 2` per UDP read, see [`ModemConfig::hex_mode`]).
///
/// # Recovery cost
///
/// Every method that sends a command may first pay for the recovery of an earlier failure,
/// on top of its own cost:
///
/// * after a command timed out, the next command resynchronises: `AT` probes (1 s timeout
///   each) and, once one is answered, 1 s of draining late answers (about 1 s in all when
///   the modem is alive);
/// * at [`ModemConfig::max_timeouts`] consecutive timeouts (probes included) the modem is
///   restarted and initialised again ([`Modem::recover`]);
/// * a reboot noticed on the way (echo back on, `+CREG: 0,<stat>` after `AT+CREG=2`) costs a
///   re-initialisation (`ATE0` … `AT+UPSV=0`, normally well under 1 s, at most about 20 s
///   if every command answers just before its timeout), and the next
///   [`open_socket`](Modem::open_socket) first sweeps the handles the rebooted modem may
///   hold (7 `AT+USOCTL` exchanges, about 150 bytes each way);
/// * after a UART error the next command resynchronises as after a timeout.
///
/// [`needs_recovery`](Modem::needs_recovery) says which of these the next command would pay,
/// so an application short of awake time can leave it to the next wake (or run it with
/// [`recover`](Modem::recover) when it chooses). Calls with a budget
/// ([`wait_sim_ready`](Modem::wait_sim_ready), [`register`](Modem::register),
/// [`activate_data`](Modem::activate_data)) cap the resynchronisation by their budget and
/// never start a restart: they fail with `AtError::Timeout` and leave it pending.
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
/// RAM: `L` + about 465 bytes (state with the timeout tables, 32-byte receive chunk, socket
/// table, last-command fingerprint, engine state; 720 bytes in all with the default `L` and zero-sized HAL
/// handles, measured with `size_of` on the host and on `thumbv7m-none-eabi`) plus the UART,
/// delay and pin values. Commands are built in a 128-byte stack buffer.
pub struct Modem<U, D, P, R = NoPin, V = NoPin, const L: usize = 256> {
    pub(crate) uart: U,
    pub(crate) delay: D,
    pub(crate) pwr: P,
    pub(crate) reset: Option<R>,
    pub(crate) vint: Option<V>,
    pub(crate) cfg: ModemConfig,
    pub(crate) st: State,
    pub(crate) stats: Stats,
    pub(crate) eng: Engine<L>,
    spent_ns: u64,
}

impl<U, D, P> Modem<U, D, P>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
{
    /// A driver with only PWR_ON. Nothing is sent and no pin is touched until
    /// [`power_on`](Modem::power_on).
    pub fn new(uart: U, delay: D, pwr_on: P, config: ModemConfig) -> Self {
        Self {
            uart,
            delay,
            pwr: pwr_on,
            reset: None,
            vint: None,
            st: State::new(config.family),
            cfg: config,
            stats: Stats::default(),
            eng: Engine::new(),
            spent_ns: 0,
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
            eng: self.eng,
            spent_ns: self.spent_ns,
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
            eng: self.eng,
            spent_ns: self.spent_ns,
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
            eng: self.eng.resize(),
            spent_ns: self.spent_ns,
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
    /// at [`ModemConfig::baud`]) since it was created, in ms. The application charges this to its
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
    pub fn config(&self) -> &ModemConfig {
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

    pub(crate) fn byte_ns(&self) -> u64 {
        crate::div::div_u64(10_000_000_000, self.cfg.baud)
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
}
