//! Deep sleep (STANDBY with the RTC wakeup timer), reset, and why the chip last reset.
//!
//! STANDBY is the STM32F2's lowest mode with the RTC running: the core domain is off, SRAM
//! and registers are lost, the backup domain (RTC, backup registers, backup SRAM with the
//! backup regulator on) is kept. Waking is a reset: the bootloader runs again, then the
//! application, which finds [`ResetCause::Standby`] and its retained state.
//!
//! **The independent watchdog keeps running in STANDBY** (the F2 has no option bit to freeze
//! it: RM0033 §17.2), so with the IWDG started a STANDBY ends in a watchdog reset within its
//! period, which then stops it. The bootloader starts the IWDG only for install/revert work
//! and trial boots (see its docs), where that reset is wanted.
//!
//! Sources: RM0033, PWR chapter (§4): Standby mode ( SLEEPDEEP, PDDS, WUF cleared; the RTC wakeup
//! event as a wakeup source; "the WUF flag must be cleared, else the device exits STANDBY at
//! once"), the `PWR_CR` (CWUF/CSBF/PDDS) and `PWR_CSR` (SBF/EWUP) registers; RCC chapter (`RCC_CSR`
//! reset flags); Device OS v3.3.1 `hal/src/stm32f2xx/sleep_hal.cpp` `enterHibernateMode`
//! l.808–843 (the same sequence with an RTC alarm). Research `electron-board.md` §4.

use crate::pac;
use crate::rtc::{Rtc, RtcClock, MAX_WAKEUP_MS};

/// Why the chip last reset, from `RCC_CSR` and `PWR_CSR.SBF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ResetCause {
    /// Woke from STANDBY (the RTC wakeup, or the WKP pin).
    Standby,
    /// The independent watchdog.
    IndependentWatchdog,
    /// The window watchdog.
    WindowWatchdog,
    /// Software (`SYSRESETREQ`: [`reset`], a bootloader's or debugger's reset).
    Software,
    /// Power-on or brown-out: retained memory was lost.
    PowerOn,
    /// Low-power management reset (entering STANDBY or STOP with the option bytes'
    /// nRST_STDBY/nRST_STOP cleared).
    LowPower,
    /// Only the NRST pin flag (a reset button, or a debug probe).
    Pin,
    /// No flag set (the flags were already cleared this boot).
    Unknown,
}

/// Classifies the `RCC_CSR` and `PWR_CSR` values (pure; see [`reset_cause`]). The NRST pin
/// flag accompanies every internal reset, so it only counts when no other is set; STANDBY's
/// `SBF` wins because waking from it also sets the pin flag.
pub const fn classify_reset(rcc_csr: u32, pwr_csr: u32) -> ResetCause {
    const BORRSTF: u32 = 1 << 25;
    const PADRSTF: u32 = 1 << 26;
    const PORRSTF: u32 = 1 << 27;
    const SFTRSTF: u32 = 1 << 28;
    const WDGRSTF: u32 = 1 << 29;
    const WWDGRSTF: u32 = 1 << 30;
    const LPWRRSTF: u32 = 1 << 31;
    const SBF: u32 = 1 << 1;
    if rcc_csr & WDGRSTF != 0 {
        ResetCause::IndependentWatchdog
    } else if rcc_csr & WWDGRSTF != 0 {
        ResetCause::WindowWatchdog
    } else if pwr_csr & SBF != 0 {
        ResetCause::Standby
    } else if rcc_csr & (PORRSTF | BORRSTF) != 0 {
        ResetCause::PowerOn
    } else if rcc_csr & LPWRRSTF != 0 {
        ResetCause::LowPower
    } else if rcc_csr & SFTRSTF != 0 {
        ResetCause::Software
    } else if rcc_csr & PADRSTF != 0 {
        ResetCause::Pin
    } else {
        ResetCause::Unknown
    }
}

/// Reads why the chip reset and clears the flags (`RCC_CSR.RMVF`, `PWR_CR.CSBF`), so the
/// next boot reads its own cause. Call once per boot; the PWR clock must be on. A bootloader
/// that wants the application to see the cause must not call it.
pub fn reset_cause(rcc: &pac::RCC, pwr: &pac::PWR) -> ResetCause {
    let cause = classify_reset(rcc.csr().read().bits(), pwr.csr().read().bits());
    rcc.csr().modify(|_, w| w.rmvf().set_bit());
    pwr.cr().modify(|_, w| w.csbf().set_bit());
    cause
}

/// Resets the chip (`SYSRESETREQ`).
pub fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// Attempts at entering STANDBY before [`standby_for_ms`] resets instead: each `WFI` that
/// returns (a wakeup flag or an interrupt was pending) is followed by clearing them again.
pub const STANDBY_ATTEMPTS: u32 = 3;

/// Sleeps in STANDBY for at least `ms` (at most [`MAX_WAKEUP_MS`], about 36.4 h: a longer
/// sleep wakes after that, and the application sleeps again), then wakes through a reset.
///
/// Preconditions: [`Rtc::init`] ran this boot (or a previous one: the RTC survives STANDBY),
/// the PWR clock is on, the modem is off (STANDBY floats every GPIO: the board's pull-ups
/// keep `PWR_ON`/`RESET_N` idle and the level shifters off). Steals `RTC` and `PWR`: nothing
/// else may use them concurrently, which holds since this never returns.
///
/// Sequence: arm the RTC wakeup timer (the RTC's other wakeup sources disabled, every RTC
/// event flag cleared: [`Rtc::start_wakeup`]), disable SysTick and every NVIC
/// interrupt and clear their pending bits, `EWUP` off (no WKP pin), `CWUF`, `PDDS`,
/// `SLEEPDEEP`, `DSB`, `WFI`.
///
/// If the wakeup timer cannot be armed, or STANDBY is not entered after
/// [`STANDBY_ATTEMPTS`], it resets instead (a wake now rather than a device that never wakes).
pub fn standby_for_ms(ms: u64) -> ! {
    // SAFETY: this function never returns, so these handles are the only live users from now.
    let (rtc, pwr, rcc) = unsafe { (pac::RTC::steal(), pac::PWR::steal(), pac::RCC::steal()) };
    let mut cp = unsafe { cortex_m::Peripherals::steal() };
    let bdcr = rcc.bdcr().read();
    let clock = if bdcr.rtcsel().bits() == 0b10 {
        RtcClock::Lsi
    } else {
        RtcClock::Lse
    };
    let mut rtc = Rtc::from_running(rtc, clock);
    if rtc.start_wakeup(ms.min(MAX_WAKEUP_MS)).is_err() {
        reset();
    }

    cp.SYST.disable_interrupt();
    cp.SYST.disable_counter();
    cortex_m::interrupt::disable();
    // SAFETY: writes to the NVIC's clear-enable and clear-pending registers.
    unsafe {
        for i in 0..cp.NVIC.icer.len() {
            cp.NVIC.icer[i].write(0xFFFF_FFFF);
            cp.NVIC.icpr[i].write(0xFFFF_FFFF);
        }
    }
    cortex_m::peripheral::SCB::clear_pendst();
    cp.SCB.set_sleepdeep();
    pwr.csr().modify(|_, w| w.ewup().clear_bit());
    for _ in 0..STANDBY_ATTEMPTS {
        rtc.clear_event_flags();
        pwr.cr()
            .modify(|_, w| w.cwuf().set_bit().pdds().set_bit().lpds().set_bit());
        cortex_m::asm::dsb();
        cortex_m::asm::wfi();
        // Still here: a flag or an interrupt was pending. Clear and try again.
    }
    reset()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_causes_are_classified() {
        let pin = 1 << 26;
        assert_eq!(classify_reset(0, 0), ResetCause::Unknown);
        assert_eq!(classify_reset(pin, 0), ResetCause::Pin);
        assert_eq!(
            classify_reset(pin | 1 << 29, 0),
            ResetCause::IndependentWatchdog
        );
        assert_eq!(classify_reset(pin | 1 << 28, 0), ResetCause::Software);
        assert_eq!(
            classify_reset(pin | 1 << 27 | 1 << 25, 0),
            ResetCause::PowerOn
        );
        assert_eq!(classify_reset(pin, 1 << 1), ResetCause::Standby);
        // The IWDG firing during STANDBY is a watchdog reset, not a wake.
        assert_eq!(
            classify_reset(pin | 1 << 29, 1 << 1),
            ResetCause::IndependentWatchdog
        );
    }
}
