//! The shared emulator and its handles: [`Uart`], [`Delay`], [`PwrOn`],
//! [`Reset`], [`VInt`]. All are cheap clones of one `Arc<Mutex<..>>`.

use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::{EmulatorConfig, RegStat};
use crate::core::{us, Core, Power};
use crate::fault::{Fault, Fired};
use crate::model::Model;
use crate::record::{Record, Stats, Violation};

type Shared = Arc<Mutex<Core>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Core> {
    // A panic in another test thread must not hide this one's result.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A byte-exact u-blox SARA module on a virtual clock.
///
/// Cloning gives another view of the same module. See the crate docs for
/// an overview and an example.
#[derive(Clone)]
pub struct Emulator {
    core: Shared,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = lock(&self.core);
        f.debug_struct("Emulator")
            .field("model", &c.model)
            .field("now_us", &c.now)
            .field("power", &c.power)
            .finish()
    }
}

impl Emulator {
    /// A switched-off module of `model` with [`EmulatorConfig::for_model`] defaults.
    /// (A SARA-U201 switches itself on at once: it boots when its supply rises.)
    pub fn new(model: Model) -> Emulator {
        Emulator::with_config(model, EmulatorConfig::for_model(model))
    }

    /// A switched-off module with an explicit configuration.
    pub fn with_config(model: Model, config: EmulatorConfig) -> Emulator {
        Emulator {
            core: Arc::new(Mutex::new(Core::new(model, config))),
        }
    }

    /// The emulated model.
    pub fn model(&self) -> Model {
        lock(&self.core).model
    }

    /// The UART as the MCU sees it.
    pub fn uart(&self) -> Uart {
        Uart {
            core: self.core.clone(),
        }
    }

    /// A `DelayNs` that advances the virtual clock.
    pub fn delay(&self) -> Delay {
        Delay {
            core: self.core.clone(),
        }
    }

    /// The `PWR_ON` line (MCU output, active low).
    pub fn pwr_on(&self) -> PwrOn {
        PwrOn {
            core: self.core.clone(),
        }
    }

    /// The `RESET_N` line (MCU output, active low).
    pub fn reset(&self) -> Reset {
        Reset {
            core: self.core.clone(),
        }
    }

    /// The `V_INT` line (MCU input, high while the module is on).
    pub fn vint(&self) -> VInt {
        VInt {
            core: self.core.clone(),
        }
    }

    /// Virtual time in microseconds since creation (the one time base).
    pub fn now(&self) -> u64 {
        lock(&self.core).now
    }

    /// Advances the virtual clock (runs everything that falls due).
    pub fn advance(&self, by: Duration) {
        let mut c = lock(&self.core);
        let t = c.now.saturating_add(us(by));
        c.advance_to(t);
    }

    /// Switches the module on and finishes its boot at once, without boot
    /// garbage, for tests that do not test power. Echo is on, as after any boot.
    pub fn power_on_now(&self) {
        lock(&self.core).power_on_now();
    }

    /// True when the module is booted and its UART answers.
    pub fn is_on(&self) -> bool {
        lock(&self.core).power == Power::On
    }

    /// True when the module is completely off.
    pub fn is_off(&self) -> bool {
        lock(&self.core).power == Power::Off
    }

    /// Current registration status: (circuit-switched `+CREG`, packet-switched
    /// `+CGREG`/`+CEREG`).
    pub fn registration(&self) -> (RegStat, RegStat) {
        let c = lock(&self.core);
        (c.net.cs, c.net.ps)
    }

    /// Adds a fault to the plan; returns its index (see [`Emulator::fired`]).
    pub fn add_fault(&self, fault: Fault) -> usize {
        lock(&self.core).add_fault(fault)
    }

    /// Faults that fired so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        lock(&self.core).fired().to_vec()
    }

    /// Every byte both ways with virtual timestamps, and notes on pins,
    /// power and faults.
    pub fn transcript(&self) -> Vec<Record> {
        lock(&self.core).transcript.clone()
    }

    /// The transcript as text, one record per line (bytes escaped).
    pub fn transcript_string(&self) -> String {
        let c = lock(&self.core);
        let mut s = String::new();
        for r in &c.transcript {
            s.push_str(&r.to_string());
            s.push('\n');
        }
        s
    }

    /// All bytes the module sent, concatenated (garbage and echo included).
    pub fn sent_bytes(&self) -> Vec<u8> {
        let c = lock(&self.core);
        let mut v = Vec::new();
        for r in &c.transcript {
            if let Record::Bytes {
                dir: crate::record::Dir::FromModem,
                bytes,
                ..
            } = r
            {
                v.extend_from_slice(bytes);
            }
        }
        v
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        lock(&self.core).stats.clone()
    }

    /// DTE behaviour a real module may not tolerate (see [`Violation`]).
    pub fn violations(&self) -> Vec<Violation> {
        lock(&self.core).violations.clone()
    }
}

/// Error of [`Uart`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UartError {
    /// `read` found nothing scheduled at all: a real UART would block forever.
    TimedOut,
}

impl fmt::Display for UartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UartError::TimedOut => {
                f.write_str("no byte will ever arrive (emulator has nothing scheduled)")
            }
        }
    }
}

impl std::error::Error for UartError {}

impl embedded_io::Error for UartError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            UartError::TimedOut => embedded_io::ErrorKind::TimedOut,
        }
    }
}

/// The MCU's UART to the module (`embedded-io` 0.7).
///
/// * [`embedded_io::Write::write`] sends bytes at the MCU baud rate: the
///   virtual clock advances by the wire time of each byte (a polled UART).
///   A [`crate::Action::ShortWrites`] fault makes it accept fewer bytes.
/// * [`embedded_io::ReadReady::read_ready`] is true when a byte is due now.
/// * [`embedded_io::Read::read`] returns the bytes due now; when none is due it
///   advances the clock to the next scheduled byte (a blocking read), running
///   any internal event on the way (registration steps, faults…). When
///   nothing at all is scheduled any more it returns [`UartError::TimedOut`] instead of
///   hanging — a real UART read would block forever, so drivers should call
///   `read_ready` first. While host sockets are open it first waits up to
///   [`EmulatorConfig::real_read_wait`] of real time for socket data.
#[derive(Clone)]
pub struct Uart {
    core: Shared,
}

impl fmt::Debug for Uart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Uart")
    }
}

impl Uart {
    /// Changes the MCU-side baud rate (what a board support layer does after
    /// `AT+IPR`). Bytes sent or received while it differs from the module's
    /// rate arrive as garbage (failure mode 18).
    pub fn set_baud(&self, baud: u32) {
        lock(&self.core).set_dte_baud(baud);
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = UartError;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, UartError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut waited = Duration::ZERO;
        loop {
            let mut c = lock(&self.core);
            let now = c.now;
            c.advance_to(now);
            let n = c.take_due(buf);
            if n > 0 {
                return Ok(n);
            }
            if let Some(t) = c.next_byte_time() {
                c.advance_to(t);
                let n = c.take_due(buf);
                if n > 0 {
                    return Ok(n);
                }
                continue;
            }
            if let Some(t) = c.next_event_time() {
                c.advance_to(t);
                continue;
            }
            let wait = c.any_host_socket() && waited < c.cfg.real_read_wait;
            drop(c);
            if !wait {
                return Err(UartError::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(1));
            waited += Duration::from_millis(1);
        }
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, UartError> {
        let mut c = lock(&self.core);
        let now = c.now;
        c.advance_to(now);
        Ok(c.read_ready())
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, UartError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut c = lock(&self.core);
        let now = c.now;
        c.advance_to(now);
        Ok(c.write(buf))
    }

    fn flush(&mut self) -> Result<(), UartError> {
        Ok(())
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, UartError> {
        Ok(true)
    }
}

/// `embedded_hal::delay::DelayNs` on the virtual clock. While a host socket
/// is open each call also sleeps a little real time (at most
/// [`EmulatorConfig::real_sleep_cap`]) so the peers' threads can run; otherwise it
/// takes no real time at all.
#[derive(Clone)]
pub struct Delay {
    core: Shared,
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Delay")
    }
}

impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        let mut c = lock(&self.core);
        c.advance_ns(u64::from(ns));
        let sleep = if c.any_host_socket() {
            Some(Duration::from_nanos(u64::from(ns)).min(c.cfg.real_sleep_cap))
        } else {
            None
        };
        drop(c);
        if let Some(d) = sleep {
            std::thread::sleep(d);
            // Pick up what arrived meanwhile, stamped at the current virtual time.
            lock(&self.core).pump_sockets();
        }
    }
}

macro_rules! output_pin {
    ($name:ident, $doc:literal, $method:ident) => {
        #[doc = $doc]
        #[derive(Clone)]
        pub struct $name {
            core: Shared,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        impl embedded_hal::digital::ErrorType for $name {
            type Error = Infallible;
        }

        impl embedded_hal::digital::OutputPin for $name {
            fn set_low(&mut self) -> Result<(), Infallible> {
                let mut c = lock(&self.core);
                let now = c.now;
                c.advance_to(now);
                c.$method(true);
                Ok(())
            }

            fn set_high(&mut self) -> Result<(), Infallible> {
                let mut c = lock(&self.core);
                let now = c.now;
                c.advance_to(now);
                c.$method(false);
                Ok(())
            }
        }
    };
}

output_pin!(
    PwrOn,
    "The `PWR_ON` line, driven by the MCU, active low. A low pulse at least as long as the model's [`crate::PowerRules::pwr_on_min`] switches an off module on; a longer one ([`crate::PowerRules::pwr_off_min`]) switches a running module off (never on SARA-G350). Shorter pulses do nothing.",
    pwr_pin
);
output_pin!(
    Reset,
    "The `RESET_N` line, driven by the MCU, active low. A low pulse of at least [`crate::PowerRules::reset_min`] reboots the module (SARA-R410: switches it off).",
    reset_pin
);

/// The `V_INT` line, read by the MCU: high while the module is on.
#[derive(Clone)]
pub struct VInt {
    core: Shared,
}

impl fmt::Debug for VInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VInt")
    }
}

impl embedded_hal::digital::ErrorType for VInt {
    type Error = Infallible;
}

impl embedded_hal::digital::InputPin for VInt {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        let mut c = lock(&self.core);
        let now = c.now;
        c.advance_to(now);
        Ok(c.vint())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        self.is_high().map(|h| !h)
    }
}
