//! Time from the Cortex-M3 SysTick: a 1 kHz monotonic clock ([`Mono`]) and an
//! `embedded-hal` [`DelayNs`] ([`Delay`]) that sleeps in WFI between ticks and spins on the
//! SysTick counter for the last fraction of a millisecond.
//!
//! A deep sleep is a reset (STANDBY, or the `qemu` feature's stand-in), so the clock starts at
//! 0 at every wake: exactly what `electron_app::Board::now_ms` asks for.
//!
//! This module defines the `SysTick` exception handler (cortex-m-rt): a binary linking this
//! crate must not define its own.
//!
//! On QEMU's `netduino2` the SysTick runs from the 120 MHz system clock as on the board (the
//! machine's `SYSCLK`), so the same reload value gives 1 ms; with `-icount shift=0,sleep=off`
//! a WFI skips straight to the next tick at no host cost.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use embedded_hal::delay::DelayNs;

/// Milliseconds since [`Mono::start`], low and high words (the handler is the only writer;
/// thumbv7m has no 64-bit atomics).
static TICKS_LO: AtomicU32 = AtomicU32::new(0);
static TICKS_HI: AtomicU32 = AtomicU32::new(0);

#[cortex_m_rt::exception]
fn SysTick() {
    let lo = TICKS_LO.load(Ordering::Relaxed).wrapping_add(1);
    if lo == 0 {
        TICKS_HI.fetch_add(1, Ordering::Relaxed);
    }
    TICKS_LO.store(lo, Ordering::Release);
}

/// Ticks (ms) counted by the handler, read consistently.
fn ticks() -> u64 {
    loop {
        let hi = TICKS_HI.load(Ordering::Acquire);
        let lo = TICKS_LO.load(Ordering::Acquire);
        if TICKS_HI.load(Ordering::Acquire) == hi {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// Milliseconds counted since the last [`Mono::start`] (0 before any): the same clock as
/// [`Mono::now_ms`], for code that holds no [`Mono`] (the modem's power sense,
/// [`crate::pins::Vint`]). It stands still until a [`Mono`] is started.
pub fn now_ms() -> u64 {
    ticks()
}

/// The monotonic clock: SysTick from the core clock, reloading every millisecond, its
/// interrupt counting milliseconds.
pub struct Mono {
    _syst: SYST,
    period: u32,
}

impl Mono {
    /// Starts the SysTick at 1 kHz from the core clock `sysclk_hz` (`clocks::SYSCLK_HZ`,
    /// 120 MHz; `sysclk_hz / 1000` must fit 24 bits: up to 16.7 GHz), count at 0. Interrupts
    /// must be enabled for the clock to advance (they are after reset).
    pub fn start(mut syst: SYST, sysclk_hz: u32) -> Self {
        let period = (sysclk_hz / 1000).clamp(2, 1 << 24);
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(period - 1);
        syst.clear_current();
        TICKS_LO.store(0, Ordering::Release);
        TICKS_HI.store(0, Ordering::Release);
        syst.enable_interrupt();
        syst.enable_counter();
        Self {
            _syst: syst,
            period,
        }
    }

    /// Milliseconds since [`start`](Self::start).
    pub fn now_ms(&self) -> u64 {
        ticks()
    }

    /// Core clock cycles since [`start`](Self::start) (the tick count and the SysTick
    /// counter; a tick whose interrupt is still pending is counted).
    pub fn now_cycles(&self) -> u64 {
        now_cycles(self.period)
    }

    /// A delay on this clock (any number of them: they only read the SysTick).
    pub fn delay(&self) -> Delay {
        Delay {
            period: self.period,
        }
    }
}

fn now_cycles(period: u32) -> u64 {
    loop {
        let t1 = ticks();
        let val = SYST::get_current();
        let pending = SCB::is_pendst_pending();
        let t2 = ticks();
        if t1 != t2 {
            continue;
        }
        // A wrap whose interrupt has not run yet (interrupts masked for a moment): VAL has
        // reloaded near the top, and that millisecond is not in the count.
        let wrapped = pending && val >= period / 2;
        let t = t1 + u64::from(wrapped);
        return t * u64::from(period) + u64::from(period - 1 - val.min(period - 1));
    }
}

/// `DelayNs` on the SysTick: WFI while more than one tick is left (the SysTick interrupt
/// wakes the core every millisecond), then a spin on the counter. Never returns early.
///
/// With interrupts masked (PRIMASK) the tick count cannot advance: the delay then spins a
/// cycle-counted loop (`cortex_m::asm::delay`) instead, still at least as long as asked.
#[derive(Debug, Clone, Copy)]
pub struct Delay {
    period: u32,
}

impl Delay {
    /// Core clock cycles per SysTick tick (per millisecond).
    pub fn cycles_per_tick(&self) -> u32 {
        self.period
    }

    /// Core clock cycles since `Mono::start` (as [`Mono::now_cycles`]).
    pub fn now_cycles(&self) -> u64 {
        now_cycles(self.period)
    }

    /// Sleeps in WFI until the tick count reaches `tick` (ms since `Mono::start`), without
    /// reading the SysTick registers: the coarse wait the `qemu` feature's delay uses, since
    /// under QEMU's `-icount` a register poll costs real microseconds while a WFI costs
    /// nothing. Returns at once when interrupts are masked (the count cannot advance).
    pub fn wait_for_tick(&self, tick: u64) {
        if cortex_m::register::primask::read().is_inactive() {
            return;
        }
        while ticks() < tick {
            cortex_m::asm::wfi();
        }
    }

    /// Waits `cycles` core cycles.
    fn wait_cycles(&self, cycles: u64) {
        // cortex-m's naming: `Inactive` means PRIMASK is set (interrupts masked).
        if cortex_m::register::primask::read().is_inactive() {
            let mut left = cycles;
            while left > 0 {
                let n = left.min(u64::from(u32::MAX)) as u32;
                cortex_m::asm::delay(n);
                left -= u64::from(n);
            }
            return;
        }
        let end = now_cycles(self.period).saturating_add(cycles);
        loop {
            let now = now_cycles(self.period);
            if now >= end {
                return;
            }
            if end - now > u64::from(self.period) {
                cortex_m::asm::wfi();
            }
        }
    }
}

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        // period cycles per ms: cycles = ns * period / 1e6, rounded up.
        let c = (u64::from(ns) * u64::from(self.period)).div_ceil(1_000_000);
        self.wait_cycles(c);
    }

    fn delay_us(&mut self, us: u32) {
        let c = (u64::from(us) * u64::from(self.period)).div_ceil(1_000);
        self.wait_cycles(c);
    }

    fn delay_ms(&mut self, ms: u32) {
        self.wait_cycles(u64::from(ms) * u64::from(self.period));
    }
}
