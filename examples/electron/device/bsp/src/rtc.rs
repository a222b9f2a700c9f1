//! The RTC as the deep-sleep timer: clocked from the Electron's 32.768 kHz crystal (LSE, on
//! PC14/PC15), its wakeup timer ends a STANDBY ([`crate::power::standby_for_ms`]).
//!
//! Only the wakeup timer is used (no calendar, no alarms): the application keeps its own time
//! base in retained memory. Arming it disables the RTC's other wakeup sources (alarms, which
//! Device OS uses for its deep sleep, timestamp, tamper) and clears their flags.
//!
//! The wakeup timer counts either RTCCLK / 16 (2048 Hz from the LSE: 0.49 ms steps, up to
//! 32 s) or the 1 Hz `ck_spre` (prescalers async 127, sync 255: up to 65 536 s ≈ 18.2 h, or
//! with `WUCKSEL` = 11x, which adds 2¹⁶ to the count, up to 131 072 s ≈ 36.4 h). [`wakeup_config`]
//! picks the finest that fits and rounds up, so a sleep never ends early.
//!
//! If the crystal does not start (bounded by [`LSE_POLLS`]), [`Rtc::init`] falls back to the
//! LSI (32 kHz nominal, 17–47 kHz across parts and temperature: sleeps are then only
//! approximate) rather than leave the device without a wake.
//!
//! Sources: RM0033, RTC chapter (periodic auto-wakeup, `RTC_CR.WUCKSEL`, `RTC_WUTR`,
//! `RTC_ISR.WUTWF`/`WUTF`/`INITF`, the `RTC_WPR` keys 0xCA 0x53, `RTC_PRER` written in two
//! accesses), and the RCC chapter (`RCC_BDCR`: LSEON/LSERDY, RTCSEL changed only after a backup-domain
//! reset); Device OS v3.3.1 `hal/src/stm32f2xx/rtc_hal.c` l.115–192 (LSE, async 127 / sync 255,
//! 4 s LSE start-up timeout). Research `electron-board.md` §4.

use crate::pac;

/// `RTC_CR` bits of the RTC's other wakeup sources (RM0033, RTC chapter, `RTC_CR`): ALRAE (8),
/// ALRBE (9), TSE (11), ALRAIE (12), ALRBIE (13), TSIE (15). Each of the RTC's alarm,
/// wakeup-timer, timestamp and tamper events ends a STANDBY (RM0033, PWR chapter, exiting
/// Standby mode); they reach the wakeup logic as one combined, edge-detected signal, so an
/// enabled flag left high can hide the wakeup timer's edge (not checked on silicon here).
pub const CR_OTHER_SOURCES: u32 = 1 << 8 | 1 << 9 | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 15;
/// `RTC_CR` WUTE (10) and WUTIE (14): the wakeup timer and its interrupt.
pub const CR_WAKEUP_TIMER: u32 = 1 << 10 | 1 << 14;
/// `RTC_TAFCR` TAMP1E (0) and TAMPIE (2).
pub const TAFCR_TAMPER: u32 = 1 << 0 | 1 << 2;
/// `RTC_ISR` event flags, all rc_w0: ALRAF (8), ALRBF (9), WUTF (10), TSF (11), TSOVF (12),
/// TAMP1F (13).
pub const ISR_EVENTS: u32 = 0x3F << 8;
/// `RTC_ISR.INIT` (7), the one read-write bit among the flags.
const ISR_INIT: u32 = 1 << 7;
/// `RTC_ISR.WUTF`.
const ISR_WUTF: u32 = 1 << 10;

/// The `RTC_ISR` value that clears the rc_w0 flags in `clear` and leaves the others (writing 1
/// to an rc_w0 flag leaves it), `INIT` kept as read in `isr`.
pub const fn isr_clear_write(isr: u32, clear: u32) -> u32 {
    !(clear | ISR_INIT) & 0x3FFF | isr & ISR_INIT
}

/// The LSE crystal.
pub const LSE_HZ: u32 = 32_768;
/// The LSI's nominal frequency.
pub const LSI_HZ: u32 = 32_000;

/// `LSERDY` polls before falling back to the LSI: at least 4 cycles each, so at least 5 s at
/// 120 MHz (the crystal needs about 2 s; Device OS allows 4 s).
pub const LSE_POLLS: u32 = 150_000_000;
/// Polls of a short RTC handshake (`INITF`, `WUTWF`, `LSIRDY`): each takes at most two
/// RTCCLK periods (61 µs), and a poll is at least 4 cycles, so this allows at least 3 ms at
/// 120 MHz.
pub const HANDSHAKE_POLLS: u32 = 100_000;

/// The longest sleep the wakeup timer can time in one go: 2¹⁷ s ≈ 36.4 h.
pub const MAX_WAKEUP_MS: u64 = 131_072_000;

/// What clocks the RTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RtcClock {
    /// The 32.768 kHz crystal.
    Lse,
    /// The internal RC (the crystal did not start): sleeps are off by up to ±50 %.
    Lsi,
}

impl RtcClock {
    /// Its nominal frequency.
    pub const fn hz(self) -> u32 {
        match self {
            Self::Lse => LSE_HZ,
            Self::Lsi => LSI_HZ,
        }
    }

    /// The (async, sync) prescalers that give a 1 Hz `ck_spre`: (127, 255) for the LSE,
    /// (127, 249) for the LSI.
    pub const fn prescalers(self) -> (u8, u16) {
        match self {
            Self::Lse => (127, 255),
            Self::Lsi => (127, 249),
        }
    }

    /// The `RCC_BDCR.RTCSEL` code.
    const fn rtcsel(self) -> u8 {
        match self {
            Self::Lse => 0b01,
            Self::Lsi => 0b10,
        }
    }
}

/// An RTC step that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RtcError {
    /// Neither the LSE nor the LSI reported ready.
    NoClock,
    /// The RTC did not enter initialisation mode (`INITF`).
    InitTimeout,
    /// The wakeup timer did not allow its reload to be written (`WUTWF`).
    WakeupTimeout,
    /// A sleep longer than [`MAX_WAKEUP_MS`].
    TooLong,
}

impl core::fmt::Display for RtcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NoClock => "no RTC clock (LSE and LSI not ready)",
            Self::InitTimeout => "RTC initialisation mode not entered",
            Self::WakeupTimeout => "RTC wakeup timer not writable",
            Self::TooLong => "sleep longer than the wakeup timer's range",
        })
    }
}

impl core::error::Error for RtcError {}

/// A wakeup-timer setting: `RTC_CR.WUCKSEL` and `RTC_WUTR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WakeupConfig {
    /// 0b000 = RTCCLK/16, 0b100 = `ck_spre` (1 Hz), 0b110 = `ck_spre` with 2¹⁶ added.
    pub wucksel: u8,
    /// The reload: the timer fires after `wutr + 1` periods (plus 2¹⁶ with `wucksel` 0b110).
    pub wutr: u16,
}

impl WakeupConfig {
    /// The sleep this setting times, in ms, for an RTC clocked at `rtcclk_hz` (with the
    /// prescalers making `ck_spre` 1 Hz).
    pub const fn duration_ms(&self, rtcclk_hz: u32) -> u64 {
        let periods = self.wutr as u64 + 1;
        match self.wucksel {
            0b000 => (periods * 16 * 1000).div_ceil(rtcclk_hz as u64),
            0b110 | 0b111 => (periods + 65_536) * 1000,
            _ => periods * 1000,
        }
    }
}

/// The wakeup setting for a sleep of at least `ms` (and at least one timer period) with an
/// RTC clocked at `rtcclk_hz`: RTCCLK/16 when the count fits 16 bits (up to 32 s from the
/// LSE), else whole seconds of `ck_spre`, with the 2¹⁶ extension past 65 536 s (18.2 h).
/// Rounds up: the sleep ends at most one period (0.49 ms, or 1 s past 32 s) late, never early.
///
/// # Errors
/// [`RtcError::TooLong`] past [`MAX_WAKEUP_MS`].
pub const fn wakeup_config(ms: u64, rtcclk_hz: u32) -> Result<WakeupConfig, RtcError> {
    if ms > MAX_WAKEUP_MS {
        return Err(RtcError::TooLong);
    }
    let fast = (ms * rtcclk_hz as u64).div_ceil(16 * 1000);
    if fast <= 65_536 {
        let ticks = if fast == 0 { 1 } else { fast };
        return Ok(WakeupConfig {
            wucksel: 0b000,
            wutr: (ticks - 1) as u16,
        });
    }
    let secs = ms.div_ceil(1000);
    if secs <= 65_536 {
        Ok(WakeupConfig {
            wucksel: 0b100,
            wutr: (secs - 1) as u16,
        })
    } else {
        Ok(WakeupConfig {
            wucksel: 0b110,
            wutr: (secs - 1 - 65_536) as u16,
        })
    }
}

/// The RTC, running.
#[derive(Debug)]
pub struct Rtc {
    rtc: pac::RTC,
    clock: RtcClock,
}

fn poll(polls: u32, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..polls {
        if done() {
            return true;
        }
    }
    false
}

impl Rtc {
    /// Starts the RTC from the LSE (falling back to the LSI), prescalers for a 1 Hz `ck_spre`.
    /// The PWR clock must be on ([`crate::clocks::enable_peripherals`]). If the RTC already
    /// runs from the chosen clock with these prescalers (after a wake from STANDBY: the
    /// backup domain kept it), it is left running untouched. Changing the clock source needs
    /// a backup-domain reset, which clears the RTC backup registers (not the backup SRAM).
    ///
    /// Cost: on a cold start, the crystal's start-up (about 2 s, bounded by [`LSE_POLLS`]).
    ///
    /// # Errors
    /// [`RtcError::NoClock`], [`RtcError::InitTimeout`].
    pub fn init(rcc: &pac::RCC, pwr: &pac::PWR, rtc: pac::RTC) -> Result<Rtc, RtcError> {
        pwr.cr().modify(|_, w| w.dbp().set_bit());
        let bdcr = rcc.bdcr().read();
        let running = bdcr.rtcen().bit_is_set();
        let current = match bdcr.rtcsel().bits() {
            0b01 if bdcr.lserdy().bit_is_set() => Some(RtcClock::Lse),
            0b10 => Some(RtcClock::Lsi),
            _ => None,
        };
        if let (true, Some(clock)) = (running, current) {
            // LSION is in RCC_CSR, which every system reset clears (a wake from STANDBY
            // included): an RTC on the LSI stops until it is set again.
            if clock == RtcClock::Lsi {
                rcc.csr().modify(|_, w| w.lsion().set_bit());
                if !poll(HANDSHAKE_POLLS, || rcc.csr().read().lsirdy().bit_is_set()) {
                    return Err(RtcError::NoClock);
                }
            }
            let (a, s) = clock.prescalers();
            let prer = rtc.prer().read();
            if prer.prediv_a().bits() == a && prer.prediv_s().bits() == s {
                return Ok(Rtc { rtc, clock });
            }
        }

        // The clock: LSE, else LSI.
        rcc.bdcr().modify(|_, w| w.lseon().set_bit());
        let clock = if poll(LSE_POLLS, || rcc.bdcr().read().lserdy().bit_is_set()) {
            RtcClock::Lse
        } else {
            rcc.bdcr().modify(|_, w| w.lseon().clear_bit());
            rcc.csr().modify(|_, w| w.lsion().set_bit());
            if !poll(HANDSHAKE_POLLS, || rcc.csr().read().lsirdy().bit_is_set()) {
                return Err(RtcError::NoClock);
            }
            RtcClock::Lsi
        };
        let sel = rcc.bdcr().read().rtcsel().bits();
        if sel != 0 && sel != clock.rtcsel() {
            // RTCSEL is write-once until a backup-domain reset (RM0033, `RCC_BDCR`).
            let lse_on = clock == RtcClock::Lse;
            rcc.bdcr().modify(|_, w| w.bdrst().set_bit());
            rcc.bdcr().modify(|_, w| w.bdrst().clear_bit());
            if lse_on {
                rcc.bdcr().modify(|_, w| w.lseon().set_bit());
                if !poll(LSE_POLLS, || rcc.bdcr().read().lserdy().bit_is_set()) {
                    return Err(RtcError::NoClock);
                }
            }
        }
        // SAFETY: RTCSEL codes 01/10 are valid.
        rcc.bdcr()
            .modify(|_, w| unsafe { w.rtcsel().bits(clock.rtcsel()).rtcen().set_bit() });

        // The prescalers, in initialisation mode.
        let rtc = Rtc { rtc, clock };
        rtc.unlock();
        rtc.rtc.isr().modify(|_, w| w.init().set_bit());
        if !poll(HANDSHAKE_POLLS, || {
            rtc.rtc.isr().read().initf().bit_is_set()
        }) {
            rtc.rtc.isr().modify(|_, w| w.init().clear_bit());
            rtc.lock();
            return Err(RtcError::InitTimeout);
        }
        let (a, s) = clock.prescalers();
        // SAFETY: 7-bit and 15-bit prescalers in range; RM0033 asks for two writes.
        rtc.rtc.prer().write(|w| unsafe { w.prediv_s().bits(s) });
        rtc.rtc
            .prer()
            .modify(|_, w| unsafe { w.prediv_a().bits(a) });
        rtc.rtc.isr().modify(|_, w| w.init().clear_bit());
        rtc.lock();
        Ok(rtc)
    }

    /// Wraps an RTC that [`init`](Self::init) already started in this boot, without touching
    /// it. `clock` must be what it runs from (`RCC_BDCR.RTCSEL`): it only scales the wakeup
    /// timer. (After a reset call `init` again: it leaves a running RTC as it is, but an RTC on
    /// the LSI needs `LSION` set again, which every reset clears.)
    pub fn from_running(rtc: pac::RTC, clock: RtcClock) -> Rtc {
        Rtc { rtc, clock }
    }

    /// What clocks the RTC.
    pub fn clock(&self) -> RtcClock {
        self.clock
    }

    fn unlock(&self) {
        // SAFETY: the write-protection keys of RM0033's RTC chapter.
        self.rtc.wpr().write(|w| unsafe { w.bits(0xCA) });
        self.rtc.wpr().write(|w| unsafe { w.bits(0x53) });
    }

    fn lock(&self) {
        // SAFETY: any other value locks the RTC registers again.
        self.rtc.wpr().write(|w| unsafe { w.bits(0xFF) });
    }

    /// Arms the wakeup timer for a sleep of at least `ms` ([`wakeup_config`]) with its
    /// interrupt enabled (which is what ends a STANDBY: RM0033, PWR chapter, Standby mode).
    /// Before, it disables the RTC's other wakeup sources (alarms A and B with their
    /// interrupts, which Device OS arms for its own deep sleep and a kept RTC may still hold;
    /// the timestamp and the tamper input, [`CR_OTHER_SOURCES`], [`TAFCR_TAMPER`]) and clears
    /// every RTC event flag ([`ISR_EVENTS`]), so only the wakeup timer's edge ends the STANDBY
    /// and a stale flag cannot hide it. Returns the setting used.
    ///
    /// # Errors
    /// [`RtcError::TooLong`] (nothing changed); [`RtcError::WakeupTimeout`] (timer left
    /// disabled).
    pub fn start_wakeup(&mut self, ms: u64) -> Result<WakeupConfig, RtcError> {
        let cfg = wakeup_config(ms, self.clock.hz())?;
        self.unlock();
        // SAFETY: clears enable bits only; the wakeup timer is off until re-armed below.
        self.rtc
            .cr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !(CR_OTHER_SOURCES | CR_WAKEUP_TIMER)) });
        // SAFETY: clears TAMP1E and TAMPIE; other bits kept.
        self.rtc
            .tafcr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !TAFCR_TAMPER) });
        if !poll(HANDSHAKE_POLLS, || {
            self.rtc.isr().read().wutwf().bit_is_set()
        }) {
            self.lock();
            return Err(RtcError::WakeupTimeout);
        }
        // SAFETY: a 16-bit reload and a 3-bit clock code.
        self.rtc.wutr().write(|w| unsafe { w.wut().bits(cfg.wutr) });
        self.rtc
            .cr()
            .modify(|_, w| unsafe { w.wucksel().bits(cfg.wucksel) });
        self.clear_event_flags();
        self.rtc
            .cr()
            .modify(|_, w| w.wutie().set_bit().wute().set_bit());
        self.lock();
        Ok(cfg)
    }

    /// Clears `RTC_ISR.WUTF` (rc_w0) without touching the other flags or `INIT`.
    pub fn clear_wakeup_flag(&mut self) {
        let isr = self.rtc.isr().read().bits();
        // SAFETY: writing 1 to the other rc_w0 flags leaves them as they are; INIT is kept.
        self.rtc
            .isr()
            .write(|w| unsafe { w.bits(isr_clear_write(isr, ISR_WUTF)) });
    }

    /// Clears every RTC event flag ([`ISR_EVENTS`]: alarms, wakeup timer, timestamp and its
    /// overflow, tamper), keeping `INIT`.
    pub fn clear_event_flags(&mut self) {
        let isr = self.rtc.isr().read().bits();
        // SAFETY: rc_w0 flags written 0 clear, the rest written 1 stay; INIT is kept.
        self.rtc
            .isr()
            .write(|w| unsafe { w.bits(isr_clear_write(isr, ISR_EVENTS)) });
    }

    /// Disables every RTC wakeup source (the wakeup timer, alarms A and B, timestamp, tamper,
    /// with their interrupts) and clears their flags: a STANDBY after this ends only by reset,
    /// the WKUP pin if enabled, or a power cycle. Needs write access to the backup domain
    /// (`PWR_CR.DBP`, set by [`init`](Self::init) or the caller).
    pub fn disarm_wakeups(&mut self) {
        self.unlock();
        // SAFETY: clears enable bits only; other bits kept.
        self.rtc
            .cr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !(CR_OTHER_SOURCES | CR_WAKEUP_TIMER)) });
        // SAFETY: clears TAMP1E and TAMPIE; other bits kept.
        self.rtc
            .tafcr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !TAFCR_TAMPER) });
        self.clear_event_flags();
        self.lock();
    }

    /// Gives the peripheral back.
    pub fn free(self) -> pac::RTC {
        self.rtc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rtc_event_flag_is_cleared_and_init_kept() {
        // All flags set, INIT set, RSF/INITS/INITF/ALRxWF/WUTWF set.
        let isr = 0x3FFF;
        let w = isr_clear_write(isr, ISR_EVENTS);
        // ALRAF, ALRBF, WUTF, TSF, TSOVF, TAMP1F written 0.
        for bit in 8..=13 {
            assert_eq!(w & 1 << bit, 0, "bit {bit}");
        }
        assert_eq!(w & ISR_INIT, ISR_INIT);
        // RSF (rc_w0, not an event) written 1: left as it is.
        assert_eq!(w & 1 << 5, 1 << 5);
        assert_eq!(isr_clear_write(0, ISR_EVENTS) & ISR_INIT, 0);
        // The WUTF-only clear leaves the alarm flags.
        let w = isr_clear_write(isr, ISR_WUTF);
        assert_eq!(w & (1 << 8 | 1 << 9 | 1 << 11), 1 << 8 | 1 << 9 | 1 << 11);
        assert_eq!(w & ISR_WUTF, 0);
    }

    #[test]
    fn the_other_wakeup_sources_are_the_alarm_timestamp_bits() {
        // ALRAE ALRBE TSE ALRAIE ALRBIE TSIE; not WUTE (10), WUTIE (14), WUCKSEL, FMT.
        assert_eq!(CR_OTHER_SOURCES, 0xBB00);
        assert_eq!(CR_OTHER_SOURCES & CR_WAKEUP_TIMER, 0);
        assert_eq!(CR_WAKEUP_TIMER, 0x4400);
    }

    fn lse(ms: u64) -> WakeupConfig {
        wakeup_config(ms, LSE_HZ).unwrap()
    }

    #[test]
    fn short_sleeps_use_rtcclk_div_16() {
        // 1 s = 2048 periods of 2048 Hz.
        assert_eq!(
            lse(1000),
            WakeupConfig {
                wucksel: 0,
                wutr: 2047
            }
        );
        // 0 ms still takes one period.
        assert_eq!(
            lse(0),
            WakeupConfig {
                wucksel: 0,
                wutr: 0
            }
        );
        // 1 ms rounds up to 3 periods (1.46 ms), never shorter.
        assert_eq!(
            lse(1),
            WakeupConfig {
                wucksel: 0,
                wutr: 2
            }
        );
        // 32 s is the last that fits: 65 536 periods.
        assert_eq!(
            lse(32_000),
            WakeupConfig {
                wucksel: 0,
                wutr: 0xFFFF
            }
        );
    }

    #[test]
    fn long_sleeps_count_seconds_and_round_up() {
        assert_eq!(
            lse(32_001),
            WakeupConfig {
                wucksel: 0b100,
                wutr: 32
            }
        );
        assert_eq!(
            lse(60_000),
            WakeupConfig {
                wucksel: 0b100,
                wutr: 59
            }
        );
        // 18.2 h = 65 536 s, the last without the extension.
        assert_eq!(
            lse(65_536_000),
            WakeupConfig {
                wucksel: 0b100,
                wutr: 0xFFFF
            }
        );
    }

    #[test]
    fn sleeps_past_18_hours_use_the_extension() {
        // 24 h = 86 400 s = 65 536 + 20 864.
        assert_eq!(
            lse(86_400_000),
            WakeupConfig {
                wucksel: 0b110,
                wutr: 20_863
            }
        );
        assert_eq!(
            lse(65_537_000),
            WakeupConfig {
                wucksel: 0b110,
                wutr: 0
            }
        );
        assert_eq!(
            lse(MAX_WAKEUP_MS),
            WakeupConfig {
                wucksel: 0b110,
                wutr: 0xFFFF
            }
        );
        assert_eq!(
            wakeup_config(MAX_WAKEUP_MS + 1, LSE_HZ),
            Err(RtcError::TooLong)
        );
    }

    #[test]
    fn a_sleep_is_never_shorter_and_at_most_one_period_longer() {
        for ms in [
            0,
            1,
            7,
            999,
            1000,
            31_999,
            32_000,
            32_001,
            3_600_000,
            65_536_001,
            100_000_000,
        ] {
            for hz in [LSE_HZ, LSI_HZ] {
                let cfg = wakeup_config(ms, hz).unwrap();
                let got = cfg.duration_ms(hz);
                let period = if cfg.wucksel == 0 { 1 } else { 1000 };
                assert!(got >= ms, "{ms} ms at {hz} Hz: {got}");
                assert!(got <= ms.max(1) + period, "{ms} ms at {hz} Hz: {got}");
            }
        }
    }

    #[test]
    fn prescalers_give_1_hz() {
        for c in [RtcClock::Lse, RtcClock::Lsi] {
            let (a, s) = c.prescalers();
            assert_eq!(c.hz() / ((a as u32 + 1) * (s as u32 + 1)), 1);
            assert_eq!(c.hz() % ((a as u32 + 1) * (s as u32 + 1)), 0);
        }
    }
}
