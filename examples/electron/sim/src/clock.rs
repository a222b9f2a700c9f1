//! One virtual clock for the whole virtual Electron, and deep sleep.
//!
//! The SARA emulator ([`modem_ublox_emu::Emulator`]) already runs on a virtual clock: its
//! UART takes each byte's wire time, its commands their latency, its `DelayNs` advances it.
//! [`SimClock`] makes **that** clock the single source of truth: flash erases and programs
//! ([`crate::flash::ElectronFlash`]), link air time ([`crate::link::LinkShaper`]), deep sleep
//! and the server's "now" ([`SimClock::server_clock`]) all read or advance the emulator's
//! time, so nothing in the simulation has a second notion of time.
//!
//! * **Deep sleep** ([`SimClock::deep_sleep`]) is a jump of the clock by the sleep duration
//!   (the emulator runs whatever falls due meanwhile: a powered-down module has nothing), then
//!   a reset.
//! * **A wake is a reset**: [`SimClock::ms_since_reset`] starts again from 0, as the F205's
//!   SysTick/RTC-derived uptime does after STANDBY. Only retained memory survives
//!   ([`crate::retained`]).

use core::time::Duration;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use modem_ublox_emu::{Emulator, Model};

/// Unix time (ms) at virtual time 0 by default: 2027-01-15 08:00:00 UTC. Fixed, so a run's
/// server-side timestamps are the same on every machine.
pub const DEFAULT_EPOCH_UNIX_MS: u64 = 1_800_000_000_000;

/// A cheap, cloneable handle on the emulator's virtual clock (µs since the emulator was
/// created), with the time of the last reset.
///
/// All clones share one clock: advancing through any of them (or through the emulator's
/// UART and `Delay`) moves all of them.
#[derive(Clone)]
pub struct SimClock {
    emu: Emulator,
    reset_at_us: Arc<AtomicU64>,
    epoch_unix_ms: u64,
}

impl core::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimClock")
            .field("now_us", &self.now_us())
            .field("reset_at_us", &self.reset_at_us.load(Ordering::SeqCst))
            .finish()
    }
}

impl SimClock {
    /// The clock of `emu` (shared, not copied), with Unix time `epoch_unix_ms` at virtual 0.
    /// The device counts as reset now.
    pub fn new(emu: Emulator, epoch_unix_ms: u64) -> Self {
        let now = emu.now();
        Self {
            emu,
            reset_at_us: Arc::new(AtomicU64::new(now)),
            epoch_unix_ms,
        }
    }

    /// A clock on a fresh SARA-U260 emulator that nobody switches on: for tests of parts that
    /// only need time (flash, link).
    pub fn standalone() -> Self {
        Self::new(Emulator::new(Model::SaraU260), DEFAULT_EPOCH_UNIX_MS)
    }

    /// The emulator whose clock this is.
    pub fn emulator(&self) -> &Emulator {
        &self.emu
    }

    /// Virtual time in µs since the simulation started.
    pub fn now_us(&self) -> u64 {
        self.emu.now()
    }

    /// Virtual time since the simulation started.
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.now_us())
    }

    /// Milliseconds since the last reset (power-up, wake from deep sleep, reset into the
    /// bootloader): the `now` a freshly reset application sees.
    pub fn ms_since_reset(&self) -> u64 {
        self.now_us()
            .saturating_sub(self.reset_at_us.load(Ordering::SeqCst))
            / 1000
    }

    /// Advances the clock by `d` (the emulator runs whatever falls due).
    pub fn advance(&self, d: Duration) {
        self.emu.advance(d);
    }

    /// Advances the clock to `t_us` (µs since the start) if it is behind; a no-op otherwise.
    /// For a fleet driver bringing a device that slept to the fleet's time.
    pub fn advance_to_us(&self, t_us: u64) {
        let now = self.now_us();
        if t_us > now {
            self.advance(Duration::from_micros(t_us - now));
        }
    }

    /// Marks a reset now: [`ms_since_reset`](Self::ms_since_reset) restarts from 0.
    pub fn mark_reset(&self) {
        self.reset_at_us.store(self.now_us(), Ordering::SeqCst);
    }

    /// Deep sleep (STANDBY with an RTC alarm): time jumps by `d`, then the wake is a reset.
    /// Cost: whatever the emulator has scheduled in `d` (nothing once the module is off).
    pub fn deep_sleep(&self, d: Duration) {
        self.advance(d);
        self.mark_reset();
    }

    /// Unix milliseconds now (the epoch plus virtual time): what the in-process server's
    /// clock reads.
    pub fn unix_ms(&self) -> u64 {
        self.epoch_unix_ms + self.now_us() / 1000
    }

    /// This clock as an `ota-cloud` server clock (Unix ms), so the server's timestamps, sleep
    /// grants and rollout deadlines follow the device's virtual time.
    pub fn server_clock(&self) -> ota_cloud::server::Clock {
        let c = self.clone();
        Arc::new(move || c.unix_ms())
    }
}

/// The server's clock for a fleet: each virtual Electron has its own emulator, hence its own
/// clock; the driver runs one device at a time, in the order of their wake times, and points
/// this at the device that runs ([`ActiveClock::set`]), so the server's "now" is the running
/// device's. With one device it is simply that device's clock.
#[derive(Clone, Debug)]
pub struct ActiveClock {
    current: Arc<std::sync::Mutex<SimClock>>,
}

impl ActiveClock {
    /// Starts on `clock`.
    pub fn new(clock: &SimClock) -> Self {
        Self {
            current: Arc::new(std::sync::Mutex::new(clock.clone())),
        }
    }

    /// From now on the server reads `clock`.
    pub fn set(&self, clock: &SimClock) {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = clock.clone();
    }

    /// The clock read now.
    pub fn get(&self) -> SimClock {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// As an `ota-cloud` server clock (Unix ms of the current device's clock).
    pub fn server_clock(&self) -> ota_cloud::server::Clock {
        let me = self.clone();
        Arc::new(move || me.get().unix_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clock_shared_by_clones_and_the_emulator() {
        let c = SimClock::standalone();
        let d = c.clone();
        c.advance(Duration::from_millis(5));
        assert_eq!(d.now_us(), 5_000);
        c.emulator().advance(Duration::from_millis(1));
        assert_eq!(d.now(), Duration::from_millis(6));
        let server = d.server_clock();
        assert_eq!(server(), DEFAULT_EPOCH_UNIX_MS + 6);
    }

    #[test]
    fn active_clock_follows_the_running_device() {
        let a = SimClock::standalone();
        let b = SimClock::standalone();
        b.advance(Duration::from_secs(60));
        let active = ActiveClock::new(&a);
        let server = active.server_clock();
        assert_eq!(server(), DEFAULT_EPOCH_UNIX_MS);
        active.set(&b);
        assert_eq!(server(), DEFAULT_EPOCH_UNIX_MS + 60_000);
        // Bringing a to the fleet's time; never backwards.
        a.advance_to_us(b.now_us());
        a.advance_to_us(1);
        assert_eq!(a.now_us(), 60_000_000);
    }

    #[test]
    fn deep_sleep_jumps_time_and_resets_uptime() {
        let c = SimClock::standalone();
        c.advance(Duration::from_millis(7_250));
        assert_eq!(c.ms_since_reset(), 7_250);
        c.deep_sleep(Duration::from_secs(900));
        assert_eq!(c.ms_since_reset(), 0);
        assert_eq!(c.now(), Duration::from_millis(907_250));
        c.advance(Duration::from_millis(12));
        assert_eq!(c.ms_since_reset(), 12);
        assert_eq!(c.unix_ms(), DEFAULT_EPOCH_UNIX_MS + 907_262);
    }
}
