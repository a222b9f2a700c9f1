//! The independent watchdog (IWDG), clocked by the LSI.
//!
//! Once started it cannot be stopped by software; a reset stops it (every system reset, the
//! watchdog's own included, unless the option bytes select the hardware watchdog), which is
//! why Device OS resets the chip to get rid of one (research §6). It keeps counting in STOP and
//! STANDBY (RM0033 §17.2: the LSI "can operate in Standby and Stop modes"; the F2 has no option
//! bit to freeze it), so a STANDBY with it running ends in a watchdog reset: see
//! [`crate::power`].
//!
//! The LSI is 32 kHz nominal but 17–47 kHz across parts and temperature (STM32F205
//! datasheet, LSI oscillator characteristics). A timeout is a promise that the chip is *not*
//! reset before it, so [`iwdg_config`] computes at the fastest LSI (47 kHz): at a typical
//! 32 kHz the period is 1.47× the timeout, at 17 kHz 2.76×.
//!
//! Period = 4 × 2^`PR` × (`RLR` + 1) / f(LSI) (RM0033 §17.3, the timeout table: prescaler
//! /4 … /256, 12-bit reload; /4 with 0xFFF is 512 ms at 32 kHz). Sources: RM0033 §17 (keys
//! 0xCCCC start, 0x5555 register access, 0xAAAA reload; `IWDG_SR` PVU/RVU); Device OS v3.3.1 `hw_config.c` `IWDG_Reset_Enable`
//! (l.256–301: /256, reload 625 ≈ 5 s at 32 kHz). Research `electron-board.md` §6.

use crate::pac;

/// The LSI's fastest frequency (the datasheet's maximum).
pub const LSI_MAX_HZ: u32 = 47_000;
/// The LSI's nominal frequency.
pub const LSI_TYP_HZ: u32 = 32_000;
/// The LSI's slowest frequency (the datasheet's minimum).
pub const LSI_MIN_HZ: u32 = 17_000;

/// The longest timeout [`iwdg_config`] can promise: 4096 × 256 / 47 kHz = 22.3 s.
pub const MAX_TIMEOUT_MS: u32 = (4096 * 256 * 1000) / LSI_MAX_HZ;

/// Polls of `IWDG_SR` for the new prescaler and reload to take effect: up to 5 LSI periods
/// divided by the prescaler (75 ms at /256 and 17 kHz). At least 4 cycles a poll: at least
/// 130 ms at 120 MHz.
pub const UPDATE_POLLS: u32 = 4_000_000;

/// A prescaler and reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IwdgConfig {
    /// `IWDG_PR`: 0 = /4 … 6 = /256.
    pub pr: u8,
    /// `IWDG_RLR`: 0..=0xFFF.
    pub rlr: u16,
}

impl IwdgConfig {
    /// The period in ms at an LSI of `lsi_hz`, rounded down.
    pub const fn period_ms(&self, lsi_hz: u32) -> u32 {
        ((4u64 << self.pr) * (self.rlr as u64 + 1) * 1000 / lsi_hz as u64) as u32
    }
}

/// The finest prescaler and the reload whose period is at least `timeout_ms` even at the
/// fastest LSI ([`LSI_MAX_HZ`]); timeouts past [`MAX_TIMEOUT_MS`] get the longest period
/// (/256, 0xFFF), and 0 ms the shortest (/4, 0).
pub const fn iwdg_config(timeout_ms: u32) -> IwdgConfig {
    // Clamped so `ms × 47` stays in 32 bits (no 64-bit division linked into a bootloader).
    let ms = if timeout_ms > MAX_TIMEOUT_MS + 1 {
        MAX_TIMEOUT_MS + 1
    } else {
        timeout_ms
    };
    let mut pr = 0u8;
    while pr <= 6 {
        let div = 4u32 << pr;
        // LSI periods at 47 kHz: ms × 47 000 / 1000 = ms × 47.
        let ticks = (ms * (LSI_MAX_HZ / 1000)).div_ceil(div);
        if ticks <= 4096 {
            let rlr = if ticks == 0 { 0 } else { ticks - 1 };
            return IwdgConfig {
                pr,
                rlr: rlr as u16,
            };
        }
        pr += 1;
    }
    IwdgConfig { pr: 6, rlr: 0xFFF }
}

/// The IWDG's registers did not take the new setting in time (`IWDG_SR` stayed busy). The
/// watchdog runs, possibly with its previous (reset: /4, 0xFFF, ≥ 0.35 s) period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpdateTimeout;

impl core::fmt::Display for UpdateTimeout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IWDG prescaler/reload update did not complete")
    }
}

impl core::error::Error for UpdateTimeout {}

/// The running watchdog.
#[derive(Debug)]
pub struct Watchdog {
    iwdg: pac::IWDG,
    config: IwdgConfig,
}

impl Watchdog {
    /// Starts the IWDG with a period of at least `timeout_ms` ([`iwdg_config`]) and reloads
    /// it. If the IWDG already runs (an earlier start this boot or by the bootloader), this
    /// sets its period. If the registers do not take the setting in [`UPDATE_POLLS`], the
    /// watchdog runs anyway with an unknown period; [`try_start`](Self::try_start) reports it.
    pub fn start(iwdg: pac::IWDG, timeout_ms: u32) -> Watchdog {
        match Self::try_start(iwdg, timeout_ms) {
            Ok(w) | Err((w, UpdateTimeout)) => w,
        }
    }

    /// [`start`](Self::start), reporting an update timeout.
    ///
    /// # Errors
    /// `(watchdog, UpdateTimeout)`: it runs and must still be fed.
    #[allow(clippy::result_large_err)]
    pub fn try_start(
        iwdg: pac::IWDG,
        timeout_ms: u32,
    ) -> Result<Watchdog, (Watchdog, UpdateTimeout)> {
        let config = iwdg_config(timeout_ms);
        // SAFETY (keys and fields): values RM0033 §17 names; PR 0..=6 and RLR ≤ 0xFFF.
        iwdg.kr().write(|w| unsafe { w.bits(0xCCCC) });
        iwdg.kr().write(|w| unsafe { w.bits(0x5555) });
        iwdg.pr().write(|w| unsafe { w.bits(config.pr as u16) });
        iwdg.rlr().write(|w| unsafe { w.bits(config.rlr) });
        let mut updated = false;
        for _ in 0..UPDATE_POLLS {
            if iwdg.sr().read().bits() & 0b11 == 0 {
                updated = true;
                break;
            }
        }
        let mut w = Watchdog { iwdg, config };
        w.feed();
        if updated {
            Ok(w)
        } else {
            Err((w, UpdateTimeout))
        }
    }

    /// Takes the IWDG without starting it, to feed one that is already running (started by
    /// the bootloader for an install or a trial boot). Reloading a stopped IWDG has no effect
    /// (only the 0xCCCC key starts it), so an application can always feed through this and
    /// never starts the watchdog itself. [`config`](Self::config) reads the registers.
    pub fn attach(iwdg: pac::IWDG) -> Watchdog {
        let config = IwdgConfig {
            pr: (iwdg.pr().read().bits() & 0x7) as u8,
            rlr: iwdg.rlr().read().bits() & 0xFFF,
        };
        Watchdog { iwdg, config }
    }

    /// Reloads the counter.
    pub fn feed(&mut self) {
        // SAFETY: the reload key.
        self.iwdg.kr().write(|w| unsafe { w.bits(0xAAAA) });
    }

    /// The setting in use.
    pub fn config(&self) -> IwdgConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_holds_at_the_fastest_lsi() {
        for ms in [
            1,
            10,
            100,
            350,
            1000,
            2500,
            4000,
            8000,
            20_000,
            MAX_TIMEOUT_MS,
        ] {
            let c = iwdg_config(ms);
            assert!(c.pr <= 6 && c.rlr <= 0xFFF, "{ms}: {c:?}");
            assert!(c.period_ms(LSI_MAX_HZ) >= ms, "{ms}: {c:?}");
            // The finest prescaler: one step finer would not reach the timeout.
            if c.pr > 0 {
                let finer = IwdgConfig {
                    pr: c.pr - 1,
                    rlr: 0xFFF,
                };
                assert!(finer.period_ms(LSI_MAX_HZ) < ms, "{ms}: {c:?}");
            }
        }
    }

    #[test]
    fn the_bootloader_timeout_covers_a_128k_erase() {
        // 4 s at 47 kHz: /64, 2938 periods; at 32 kHz that is 5.9 s.
        let c = iwdg_config(4000);
        assert_eq!(c, IwdgConfig { pr: 4, rlr: 2937 });
        assert_eq!(c.period_ms(LSI_TYP_HZ), 5876);
        assert_eq!(c.period_ms(LSI_MIN_HZ), 11_060);
    }

    #[test]
    fn the_reset_period_is_512_ms_at_32_khz() {
        assert_eq!(IwdgConfig { pr: 0, rlr: 0xFFF }.period_ms(LSI_TYP_HZ), 512);
        assert_eq!(IwdgConfig { pr: 0, rlr: 0xFFF }.period_ms(LSI_MAX_HZ), 348);
    }

    #[test]
    fn extremes() {
        assert_eq!(iwdg_config(0), IwdgConfig { pr: 0, rlr: 0 });
        assert_eq!(iwdg_config(u32::MAX), IwdgConfig { pr: 6, rlr: 0xFFF });
        assert_eq!(MAX_TIMEOUT_MS, 22_310);
        // Device OS's /256, reload 625 is about 5 s at 32 kHz.
        assert_eq!(IwdgConfig { pr: 6, rlr: 625 }.period_ms(LSI_TYP_HZ), 5008);
    }
}
