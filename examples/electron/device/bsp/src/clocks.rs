//! The clock tree: the Electron's 26 MHz crystal through the PLL to 120 MHz, and the
//! peripheral clocks the board uses.
//!
//! | clock | value | divider |
//! |---|---|---|
//! | HSE | 26 MHz crystal (no bypass) | |
//! | PLL | VCO 240 MHz | M 26, N 240 |
//! | SYSCLK / HCLK | 120 MHz | P 2, AHB /1 |
//! | USB / SDIO (PLL48CK) | 48 MHz | Q 5 |
//! | PCLK1 (USART2/3, I2C3, PWR) | 30 MHz (timers 60 MHz) | APB1 /4 |
//! | PCLK2 (USART1) | 60 MHz (timers 120 MHz) | APB2 /2 |
//!
//! Flash: 3 wait states (RM0033, Embedded Flash memory interface, the wait-state table: 90 < HCLK ≤ 120 MHz at 2.7–3.6 V), prefetch,
//! instruction and data caches on.
//!
//! Sources: Device OS v3.3.1 `platform/MCU/STM32F2xx/SPARK_Firmware_Driver/src/system_stm32f2xx.c`
//! (`SetSysClock`: PLL_M 26, PLL_N 240, PLL_P 2, PLL_Q 5, the bus dividers, `FLASH_ACR`);
//! the 26 MHz crystal on the Electron schematic (Y2); RM0033, RCC chapter (`RCC_PLLCFGR`,
//! `RCC_CFGR`). Collected in `shared/research/electron-board.md` §8.

use crate::pac;

/// The Electron's crystal (HSE).
pub const HSE_HZ: u32 = 26_000_000;
/// The core and AHB clock after [`init`].
pub const SYSCLK_HZ: u32 = 120_000_000;
/// APB1 (USART2, USART3, I2C3) after [`init`].
pub const PCLK1_HZ: u32 = 30_000_000;
/// APB2 (USART1) after [`init`].
pub const PCLK2_HZ: u32 = 60_000_000;
/// The internal RC oscillator the chip runs from out of reset (and what [`init`] falls back
/// to on error).
pub const HSI_HZ: u32 = 16_000_000;

/// The PLL dividers [`init`] programs (Device OS `system_stm32f2xx.c`).
pub const PLL: PllConfig = PllConfig {
    m: 26,
    n: 240,
    p: 2,
    q: 5,
};

/// Flash wait states for 120 MHz at 2.7–3.6 V (RM0033, the flash wait-state table).
pub const FLASH_WAIT_STATES: u8 = 3;

/// Ready-bit polls before a clock step is given up. A poll is a load from RCC over the AHB,
/// a test and a branch: at least 4 core cycles, so the bound is at least 4 M cycles
/// (250 ms at 16 MHz HSI). An HSE crystal starts in about 2 ms and the PLL locks in
/// about 100 µs (STM32F205 datasheet, HSE and PLL characteristics), so only a dead crystal
/// reaches it.
pub const READY_POLLS: u32 = 1_000_000;

/// A clock step that did not complete. The chip is left on the 16 MHz HSI
/// ([`HSI_HZ`]) with every bus divider at /1, so 16 MHz on every bus, and the flash wait
/// states set for 120 MHz (correct, only slower): the caller can continue at 16 MHz (bauds
/// computed from [`HSI_HZ`]) or reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClockError {
    /// The 26 MHz crystal did not report ready (HSERDY) within [`READY_POLLS`].
    HseNotReady,
    /// The PLL did not lock (PLLRDY) within [`READY_POLLS`].
    PllNotLocked,
    /// SYSCLK did not switch (SWS) within [`READY_POLLS`].
    SwitchFailed,
    /// The flash did not accept the wait states (ACR.LATENCY read back differently).
    FlashLatency,
    /// The PLL dividers are outside the ranges RM0033 allows (`RCC_PLLCFGR`).
    InvalidPll,
}

impl core::fmt::Display for ClockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::HseNotReady => "HSE crystal not ready",
            Self::PllNotLocked => "PLL not locked",
            Self::SwitchFailed => "SYSCLK switch to the PLL failed",
            Self::FlashLatency => "flash wait states not accepted",
            Self::InvalidPll => "PLL dividers out of range",
        })
    }
}

impl core::error::Error for ClockError {}

/// Main PLL dividers: f(VCO) = f(HSE) × `n` / `m`, SYSCLK = f(VCO) / `p`,
/// PLL48CK = f(VCO) / `q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PllConfig {
    /// Input divider, 2..=63 (VCO input 1–2 MHz).
    pub m: u8,
    /// VCO multiplier, 64..=432, with the VCO output in 192–432 MHz (RM0033 `RCC_PLLCFGR`;
    /// STM32F205 datasheet, main PLL characteristics).
    pub n: u16,
    /// SYSCLK divider: 2, 4, 6 or 8.
    pub p: u8,
    /// USB/SDIO divider, 2..=15.
    pub q: u8,
}

/// The PLLCFGR fields [`pllcfgr_fields`] sets (PLLM, PLLN, PLLP, PLLSRC, PLLQ); every other
/// bit is reserved and kept at its value.
pub const PLLCFGR_FIELDS_MASK: u32 = 0x3F | (0x1FF << 6) | (0x3 << 16) | (1 << 22) | (0xF << 24);

/// The RCC_PLLCFGR field bits for `pll` with the HSE as the PLL source (RM0033, `RCC_PLLCFGR`):
/// PLLM `[5:0]`, PLLN `[14:6]`, PLLP `[17:16]` (00 = /2 … 11 = /8), PLLSRC bit 22 (1 = HSE),
/// PLLQ `[27:24]`. For [`PLL`] this is `0x0540_3C1A` (research §8).
///
/// # Errors
/// [`ClockError::InvalidPll`] for dividers outside RM0033's ranges (M 2..=63, N 64..=432,
/// P ∈ {2, 4, 6, 8}, Q 2..=15), or a VCO input outside 1–2 MHz or a VCO output outside
/// 192–432 MHz for `hse_hz`.
pub const fn pllcfgr_fields(pll: PllConfig, hse_hz: u32) -> Result<u32, ClockError> {
    let PllConfig { m, n, p, q } = pll;
    if m < 2 || m > 63 || n < 64 || n > 432 || q < 2 || q > 15 {
        return Err(ClockError::InvalidPll);
    }
    let p_bits = match p {
        2 => 0,
        4 => 1,
        6 => 2,
        8 => 3,
        _ => return Err(ClockError::InvalidPll),
    };
    let vco_in = hse_hz / m as u32;
    let vco_out = vco_in as u64 * n as u64;
    if vco_in < 1_000_000 || vco_in > 2_000_000 || vco_out < 192_000_000 || vco_out > 432_000_000 {
        return Err(ClockError::InvalidPll);
    }
    Ok(m as u32 | (n as u32) << 6 | p_bits << 16 | 1 << 22 | (q as u32) << 24)
}

/// SYSCLK for `pll` from `hse_hz`.
pub const fn sysclk_hz(pll: PllConfig, hse_hz: u32) -> u32 {
    ((hse_hz as u64 / pll.m as u64) * pll.n as u64 / pll.p as u64) as u32
}

/// The RCC_CFGR bus-divider bits for AHB /1, APB1 /4, APB2 /2: HPRE `[7:4]` = 0000,
/// PPRE1 `[12:10]` = 101, PPRE2 `[15:13]` = 100 (RM0033, `RCC_CFGR`).
pub const CFGR_DIVIDERS: u32 = 0b101 << 10 | 0b100 << 13;
/// The mask of [`CFGR_DIVIDERS`]' fields.
pub const CFGR_DIVIDERS_MASK: u32 = 0xF << 4 | 0x7 << 10 | 0x7 << 13;

/// `cfgr` with SYSCLK switched back to the HSI (SW = 00) and every bus divider at /1 (HPRE,
/// PPRE1, PPRE2 = 0), other bits kept: what [`init`] writes when it gives up, so the 16 MHz
/// HSI reaches every bus ([`ClockError`]).
pub const fn cfgr_hsi_fallback(cfgr: u32) -> u32 {
    cfgr & !(CFGR_DIVIDERS_MASK | 0b11)
}

fn wait(mut ready: impl FnMut() -> bool, err: ClockError) -> Result<(), ClockError> {
    for _ in 0..READY_POLLS {
        if ready() {
            return Ok(());
        }
    }
    Err(err)
}

/// Runs the core at 120 MHz from the 26 MHz crystal: HSE on, flash wait states and caches,
/// bus dividers, PLL M26 N240 P2 Q5, SYSCLK switch. If the chip already runs from the PLL
/// with these dividers (the bootloader set it up before the jump) it only checks the flash
/// and bus settings; if it runs from a PLL with others, it switches to HSI, stops the PLL
/// and reprograms it (RM0033: PLLCFGR may only change while the PLL is off).
///
/// Cost: waits for the crystal (about 2 ms) and the PLL lock (about 100 µs), each bounded by
/// [`READY_POLLS`].
///
/// # Errors
/// [`ClockError`]: the chip is left on the HSI at 16 MHz with every bus at /1, so 16 MHz on
/// AHB, APB1 and APB2 (see the type's docs): on any failed step SYSCLK is switched back to the
/// HSI and the dividers set before the PLL (APB1 /4, APB2 /2) are undone
/// ([`cfgr_hsi_fallback`]). The flash wait states stay at 3 (correct, only slower).
pub fn init(rcc: &pac::RCC, flash: &pac::FLASH) -> Result<(), ClockError> {
    let result = init_pll(rcc, flash);
    if result.is_err() {
        rcc.cr().modify(|_, w| w.hsion().set_bit());
        let _ = wait(
            || rcc.cr().read().hsirdy().bit_is_set(),
            ClockError::SwitchFailed,
        );
        // SAFETY: SW = 00 (HSI) and /1 dividers are valid RM0033 values; other bits kept.
        rcc.cfgr()
            .modify(|r, w| unsafe { w.bits(cfgr_hsi_fallback(r.bits())) });
        let _ = wait(
            || rcc.cfgr().read().sws().bits() == 0b00,
            ClockError::SwitchFailed,
        );
    }
    result
}

fn init_pll(rcc: &pac::RCC, flash: &pac::FLASH) -> Result<(), ClockError> {
    let fields = pllcfgr_fields(PLL, HSE_HZ)?;
    let on_pll = rcc.cfgr().read().sws().bits() == 0b10;
    let pll_matches = rcc.pllcfgr().read().bits() & PLLCFGR_FIELDS_MASK == fields;
    if on_pll && !pll_matches {
        // Back to HSI, PLL off, then configure afresh.
        rcc.cr().modify(|_, w| w.hsion().set_bit());
        wait(
            || rcc.cr().read().hsirdy().bit_is_set(),
            ClockError::SwitchFailed,
        )?;
        // SAFETY: SW = 00 selects the HSI, a valid value.
        rcc.cfgr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !0b11) });
        wait(
            || rcc.cfgr().read().sws().bits() == 0b00,
            ClockError::SwitchFailed,
        )?;
        rcc.cr().modify(|_, w| w.pllon().clear_bit());
        wait(
            || rcc.cr().read().pllrdy().bit_is_clear(),
            ClockError::SwitchFailed,
        )?;
    }

    // 1. The crystal.
    rcc.cr().modify(|_, w| w.hseon().set_bit());
    wait(
        || rcc.cr().read().hserdy().bit_is_set(),
        ClockError::HseNotReady,
    )?;

    // 2. Flash wait states before the clock goes up (RM0033: raise the latency first, then the clock), caches and prefetch.
    // SAFETY: LATENCY = 3 is a valid wait-state count.
    flash.acr().modify(|_, w| unsafe {
        w.latency()
            .bits(FLASH_WAIT_STATES)
            .prften()
            .set_bit()
            .icen()
            .set_bit()
            .dcen()
            .set_bit()
    });
    if flash.acr().read().latency().bits() != FLASH_WAIT_STATES {
        return Err(ClockError::FlashLatency);
    }

    // 3. Bus dividers: APB1 ≤ 30 MHz and APB2 ≤ 60 MHz before SYSCLK reaches 120 MHz.
    // SAFETY: the divider codes are valid RM0033 values; other bits are kept.
    rcc.cfgr()
        .modify(|r, w| unsafe { w.bits(r.bits() & !CFGR_DIVIDERS_MASK | CFGR_DIVIDERS) });

    // 4. The PLL.
    if !(on_pll && pll_matches) {
        // SAFETY: fields checked by `pllcfgr_fields`; reserved bits kept.
        rcc.pllcfgr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !PLLCFGR_FIELDS_MASK | fields) });
        rcc.cr().modify(|_, w| w.pllon().set_bit());
        wait(
            || rcc.cr().read().pllrdy().bit_is_set(),
            ClockError::PllNotLocked,
        )?;
        // 5. Switch.
        // SAFETY: SW = 10 selects the PLL, a valid value.
        rcc.cfgr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !0b11 | 0b10) });
        wait(
            || rcc.cfgr().read().sws().bits() == 0b10,
            ClockError::SwitchFailed,
        )?;
    }
    Ok(())
}

/// Turns on the clocks of the peripherals the board uses: GPIOA/B/C and BKPSRAM (AHB1),
/// USART2, USART3, I2C3 and PWR (APB1), USART1 (APB2). Other enable bits are kept.
///
/// RM0033 (and the F2 errata's "delay after an RCC peripheral clock enabling") asks for a
/// delay of 2 AHB/APB cycles before the peripheral is used: each enable register is read back,
/// which orders the write before any later peripheral access.
pub fn enable_peripherals(rcc: &pac::RCC) {
    rcc.ahb1enr().modify(|_, w| {
        w.gpioaen()
            .set_bit()
            .gpioben()
            .set_bit()
            .gpiocen()
            .set_bit()
            .bkpsramen()
            .set_bit()
    });
    let _ = rcc.ahb1enr().read();
    rcc.apb1enr().modify(|_, w| {
        w.usart2en()
            .set_bit()
            .usart3en()
            .set_bit()
            .i2c3en()
            .set_bit()
            .pwren()
            .set_bit()
    });
    let _ = rcc.apb1enr().read();
    rcc.apb2enr().modify(|_, w| w.usart1en().set_bit());
    let _ = rcc.apb2enr().read();
    cortex_m::asm::dsb();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pllcfgr_matches_the_research_value() {
        assert_eq!(pllcfgr_fields(PLL, HSE_HZ), Ok(0x0540_3C1A));
        assert_eq!(0x0540_3C1A & !PLLCFGR_FIELDS_MASK, 0);
    }

    #[test]
    fn the_pll_gives_120_mhz_and_48_mhz_usb() {
        assert_eq!(sysclk_hz(PLL, HSE_HZ), SYSCLK_HZ);
        assert_eq!(
            HSE_HZ / PLL.m as u32 * PLL.n as u32 / PLL.q as u32,
            48_000_000
        );
        assert_eq!(SYSCLK_HZ / 4, PCLK1_HZ);
        assert_eq!(SYSCLK_HZ / 2, PCLK2_HZ);
    }

    #[test]
    fn out_of_range_dividers_are_refused() {
        let bad = [
            PllConfig { p: 3, ..PLL },
            PllConfig { m: 1, ..PLL },
            PllConfig { q: 1, ..PLL },
            PllConfig { n: 433, ..PLL },
            // VCO input 0.5 MHz.
            PllConfig { m: 52, ..PLL },
        ];
        for pll in bad {
            assert_eq!(
                pllcfgr_fields(pll, HSE_HZ),
                Err(ClockError::InvalidPll),
                "{pll:?}"
            );
        }
        // An 8 MHz crystal with M 8 is fine (not the Electron's, but a valid PLL).
        assert!(pllcfgr_fields(PllConfig { m: 8, ..PLL }, 8_000_000).is_ok());
    }

    #[test]
    fn the_vco_must_run_at_192_to_432_mhz() {
        // 1 MHz VCO input (26 MHz / 26): N 191 gives 191 MHz, below RM0033's 192 MHz.
        assert_eq!(
            pllcfgr_fields(PllConfig { n: 191, ..PLL }, HSE_HZ),
            Err(ClockError::InvalidPll)
        );
        assert_eq!(
            pllcfgr_fields(
                PllConfig {
                    n: 100,
                    p: 2,
                    ..PLL
                },
                HSE_HZ
            ),
            Err(ClockError::InvalidPll)
        );
        assert!(pllcfgr_fields(PllConfig { n: 192, ..PLL }, HSE_HZ).is_ok());
        assert!(pllcfgr_fields(PllConfig { n: 432, ..PLL }, HSE_HZ).is_ok());
        // 2 MHz input (26 MHz / 13) × 217 = 434 MHz: above.
        assert_eq!(
            pllcfgr_fields(
                PllConfig {
                    m: 13,
                    n: 217,
                    ..PLL
                },
                HSE_HZ
            ),
            Err(ClockError::InvalidPll)
        );
    }

    #[test]
    fn the_fallback_puts_every_bus_at_sysclk_on_the_hsi() {
        // SW = PLL, APB1 /4, APB2 /2, plus unrelated bits (MCO1 prescaler, RTCPRE) kept.
        let before = CFGR_DIVIDERS | 0b10 | 0b10 << 2 | 0x1F << 16 | 0b111 << 24;
        let after = cfgr_hsi_fallback(before);
        assert_eq!(after & 0b11, 0, "SW = HSI");
        assert_eq!(after & CFGR_DIVIDERS_MASK, 0, "AHB, APB1, APB2 /1");
        assert_eq!(after & (0x1F << 16 | 0b111 << 24), 0x1F << 16 | 0b111 << 24);
    }

    #[test]
    fn cfgr_dividers_are_apb1_div4_apb2_div2() {
        assert_eq!((CFGR_DIVIDERS >> 10) & 0x7, 0b101);
        assert_eq!((CFGR_DIVIDERS >> 13) & 0x7, 0b100);
        assert_eq!((CFGR_DIVIDERS >> 4) & 0xF, 0);
        assert_eq!(CFGR_DIVIDERS & !CFGR_DIVIDERS_MASK, 0);
    }
}
