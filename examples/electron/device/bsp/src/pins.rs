//! Pin muxing and the modem's control lines.
//!
//! | pin | net (schematic) | use | configuration |
//! |---|---|---|---|
//! | PB2 | `PWR_UC` | SARA `PWR_ON` through an SN74LVC1G07 (non-inverting, open-drain; 10 k pull-up) | latch high, then push-pull output |
//! | PC4 | `RESET_UC` | SARA `RESET_N` through an SN74LVC1G07 | latch high, then push-pull output |
//! | PB15 | `LVLOE_UC` (`DTR_UC`) | TPS22942 `ON` (active low): powers the MCU side of both SN74AVC4T245 level shifters | output **low** = shifters on |
//! | PB12 | `RI_UC` | modem RI through the shifter, powered by V_INT: the power sense | input, pull-down |
//! | PB10 / PB11 / PB13 / PB14 | TXD / RXD / CTS / RTS | USART3 to the modem | AF7 |
//! | PA9 / PA10 | TX / RX | USART1 console | AF7 |
//! | PA8 / PC9 | SCL / SDA | I2C3: BQ24195 (0x6B), MAX17043 (0x36); 4.7 k pull-ups on the board | AF4 open-drain |
//!
//! Sources: Device OS v3.3.1 `hal/src/electron/pinmap_hal.c` (l.96–100),
//! `hal/src/electron/modem/mdm_hal.cpp` (constructor l.291–300, `_powerOn` l.813–835,
//! `powerState` l.1285–1311), `hal/src/stm32f2xx/i2c_hal.c` (l.139–150); the Electron v1.3.0
//! schematic for the buffers, the load switch and the pull-ups; RM0033, GPIO chapter, and the
//! STM32F205 datasheet's alternate-function table. Collected in
//! `shared/research/electron-board.md` §1, §2, §5, §7.
//!
//! Because the buffers are non-inverting with pull-ups, "high" on PB2/PC4 is the modem's idle
//! level: the output latch is set high *before* the pin becomes an output, so the modem never
//! sees a glitch low (which would be a power-on or reset pulse).

use core::convert::Infallible;

use crate::pac;

/// GPIO mode (MODER).
#[derive(Clone, Copy)]
enum Mode {
    Input = 0b00,
    Output = 0b01,
    Alternate = 0b10,
}

/// Pull (PUPDR).
#[derive(Clone, Copy)]
enum Pull {
    None = 0b00,
    Up = 0b01,
    Down = 0b10,
}

/// Speed (OSPEEDR): 25 MHz is plenty for 115200 baud and 100 kHz I2C with less ringing.
const SPEED_MEDIUM: u32 = 0b01;

/// Configures one pin of a GPIO port (any of the PAC's GPIO register-block types, which share
/// the register names). Read-modify-write of the port's registers: call with the port not used
/// concurrently (at start-up, or in a critical section).
macro_rules! configure {
    ($port:expr, $pin:expr, $mode:expr, $pull:expr, open_drain = $od:expr, af = $af:expr) => {{
        let port = $port;
        let pin: u32 = $pin;
        let two = pin * 2;
        // SAFETY (all writes below): two-bit and four-bit fields written with valid codes; the
        // other pins' bits are kept.
        port.ospeedr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !(0b11 << two) | SPEED_MEDIUM << two) });
        port.otyper().modify(|r, w| unsafe {
            w.bits(if $od {
                r.bits() | 1 << pin
            } else {
                r.bits() & !(1 << pin)
            })
        });
        port.pupdr()
            .modify(|r, w| unsafe { w.bits(r.bits() & !(0b11 << two) | ($pull as u32) << two) });
        let af: u32 = $af;
        if pin < 8 {
            let s = pin * 4;
            port.afrl()
                .modify(|r, w| unsafe { w.bits(r.bits() & !(0xF << s) | af << s) });
        } else {
            let s = (pin - 8) * 4;
            port.afrh()
                .modify(|r, w| unsafe { w.bits(r.bits() & !(0xF << s) | af << s) });
        }
        port.moder()
            .modify(|r, w| unsafe { w.bits(r.bits() & !(0b11 << two) | ($mode as u32) << two) });
    }};
}

/// Sets (`high`) or clears one pin through BSRR: a single write, atomic with respect to the
/// port's other pins.
macro_rules! drive {
    ($port:expr, $pin:expr, $high:expr) => {{
        let pin: u32 = $pin;
        let bit = if $high { 1 << pin } else { 1 << (pin + 16) };
        // SAFETY: BSRR's set/reset bits only affect the named pin.
        $port.bsrr().write(|w| unsafe { w.bits(bit) });
    }};
}

const PWR_PIN: u32 = 2; // PB2
const RESET_PIN: u32 = 4; // PC4
const LVLOE_PIN: u32 = 15; // PB15
const RI_PIN: u32 = 12; // PB12

/// The modem's `PWR_ON` through PB2 (`PWR_UC`). High is idle; a low pulse powers the
/// modem on (Device OS: low 50 ms, high 10 ms, low 150 ms, high 100 ms) or, held 1.6 s, off.
///
/// A token: it owns no register, and drives PB2 only through GPIOB's BSRR (one atomic write),
/// so it may coexist with other users of GPIOB.
#[derive(Debug)]
pub struct PwrOn(());

/// The modem's `RESET_N` through PC4 (`RESET_UC`). High is idle; Device OS holds it low
/// 100 ms to reset (10 s for an unidentified modem). Same token rules as [`PwrOn`].
#[derive(Debug)]
pub struct ResetN(());

/// The modem power sense: PB12 (`RI_UC`), the modem's RI through a level shifter powered
/// by its V_INT. The Electron has no dedicated V_INT input, and RI also pulses low (about
/// 1 s) on an incoming SMS or call; Device OS reads RI high as "powered" and low for more than
/// 1.1 s as "off" (`mdm_hal.cpp` `powerState`). This input does the same through
/// [`RiPowerSense`] on the SysTick clock ([`crate::time::now_ms`]): it reads low only once PB12
/// has read low for more than [`RI_OFF_AFTER_MS`] since it last read high, or at once if it
/// has not read high since boot (a cold boot with the modem off is seen as "off" immediately).
///
/// Latency: a real power-off is reported 1.1 s after the first low read of RI, so modem-ublox's
/// wait for V_INT low after `AT+CPWROFF` takes up to 1.1 s longer than the pin's fall.
/// A [`crate::time::Mono`] must be running (the debounce uses its clock; without one, the time
/// stands still and a low after a high read is never reported). Reads GPIOB's IDR only.
#[derive(Debug)]
pub struct Vint {
    sense: RiPowerSense,
}

/// How long RI must read low (from the first low read after a high one) before it means "modem off": Device OS
/// v3.3.1 `mdm_hal.cpp` `powerState` (1.1 s, longer than RI's ~1 s ring pulse).
pub const RI_OFF_AFTER_MS: u64 = 1_100;

/// RI as a power sense, debounced against the ring pulses (pure: the caller gives the level and
/// the time). "Off" if RI never read high since boot; otherwise "powered" while it reads high,
/// and while the low reads since the last high one span at most [`RI_OFF_AFTER_MS`] (timed
/// from the **first** low read of the run, not from the last high read: the driver reads the
/// pin only now and then, and a single low read during a ring pulse seconds after the last
/// high read must not look like a power-off); "off" after that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RiPowerSense {
    seen_high: bool,
    low_since_ms: Option<u64>,
}

impl RiPowerSense {
    /// No high read yet: a low read means "off" at once.
    pub const fn new() -> Self {
        Self {
            seen_high: false,
            low_since_ms: None,
        }
    }

    /// Records one read of RI (`high`) at `now_ms` (a monotonic millisecond clock) and
    /// returns whether the modem counts as powered.
    pub fn sample(&mut self, high: bool, now_ms: u64) -> bool {
        if high {
            self.seen_high = true;
            self.low_since_ms = None;
            return true;
        }
        if !self.seen_high {
            return false;
        }
        let since = *self.low_since_ms.get_or_insert(now_ms);
        now_ms.saturating_sub(since) <= RI_OFF_AFTER_MS
    }
}

fn gpiob() -> &'static pac::gpiob::RegisterBlock {
    // SAFETY: the tokens only write BSRR (atomic per pin) or read IDR.
    unsafe { &*pac::GPIOB::ptr() }
}

fn gpioc() -> &'static pac::gpioi::RegisterBlock {
    // SAFETY: as `gpiob`.
    unsafe { &*pac::GPIOC::ptr() }
}

impl embedded_hal::digital::ErrorType for PwrOn {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for PwrOn {
    fn set_low(&mut self) -> Result<(), Infallible> {
        drive!(gpiob(), PWR_PIN, false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        drive!(gpiob(), PWR_PIN, true);
        Ok(())
    }
}

impl embedded_hal::digital::ErrorType for ResetN {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for ResetN {
    fn set_low(&mut self) -> Result<(), Infallible> {
        drive!(gpioc(), RESET_PIN, false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        drive!(gpioc(), RESET_PIN, true);
        Ok(())
    }
}

impl embedded_hal::digital::ErrorType for Vint {
    type Error = Infallible;
}

impl Vint {
    fn powered(&mut self) -> bool {
        let high = gpiob().idr().read().bits() & (1 << RI_PIN) != 0;
        self.sense.sample(high, crate::time::now_ms())
    }
}

/// High = powered, debounced as [`Vint`] says (not the raw pin level).
impl embedded_hal::digital::InputPin for Vint {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.powered())
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.powered())
    }
}

/// Configures the modem's control lines the way Device OS's `MDMParser` constructor does:
/// PB2 and PC4 latched high and then made push-pull outputs (idle, no glitch), PB15 low as an
/// output (level shifters powered), PB12 an input with pull-down. GPIOB and GPIOC clocks
/// must be on ([`crate::clocks::enable_peripherals`]).
pub fn modem_pins(gpiob: &pac::GPIOB, gpioc: &pac::GPIOC) -> (PwrOn, ResetN, Vint) {
    drive!(gpiob, PWR_PIN, true);
    configure!(
        gpiob,
        PWR_PIN,
        Mode::Output,
        Pull::None,
        open_drain = false,
        af = 0
    );
    drive!(gpioc, RESET_PIN, true);
    configure!(
        gpioc,
        RESET_PIN,
        Mode::Output,
        Pull::None,
        open_drain = false,
        af = 0
    );
    drive!(gpiob, LVLOE_PIN, false);
    configure!(
        gpiob,
        LVLOE_PIN,
        Mode::Output,
        Pull::None,
        open_drain = false,
        af = 0
    );
    configure!(
        gpiob,
        RI_PIN,
        Mode::Input,
        Pull::Down,
        open_drain = false,
        af = 0
    );
    (
        PwrOn(()),
        ResetN(()),
        Vint {
            sense: RiPowerSense::new(),
        },
    )
}

/// Releases the modem's control lines after it is off, as Device OS's `powerOff` does: PB2,
/// PC4 and PB15 become floating inputs, so the board's pull-ups hold `PWR_ON` and `RESET_N`
/// idle and switch the level shifters off (TPS22942 `ON` pulled high). Takes the tokens back.
/// Call before STANDBY: GPIO state is lost there anyway, and the pull-ups give the same levels.
pub fn release_modem_pins(gpiob: &pac::GPIOB, gpioc: &pac::GPIOC, pins: (PwrOn, ResetN, Vint)) {
    let _ = pins;
    configure!(
        gpiob,
        PWR_PIN,
        Mode::Input,
        Pull::None,
        open_drain = false,
        af = 0
    );
    configure!(
        gpioc,
        RESET_PIN,
        Mode::Input,
        Pull::None,
        open_drain = false,
        af = 0
    );
    configure!(
        gpiob,
        LVLOE_PIN,
        Mode::Input,
        Pull::None,
        open_drain = false,
        af = 0
    );
}

/// USART3 to the modem: PB10 TX, PB11 RX, PB13 CTS, PB14 RTS, all AF7 (datasheet Table 9),
/// push-pull; RX and CTS pulled up so a powered-down shifter reads idle / "not clear".
pub fn usart3_af(gpiob: &pac::GPIOB) {
    configure!(
        gpiob,
        10,
        Mode::Alternate,
        Pull::None,
        open_drain = false,
        af = 7
    );
    configure!(
        gpiob,
        11,
        Mode::Alternate,
        Pull::Up,
        open_drain = false,
        af = 7
    );
    configure!(
        gpiob,
        13,
        Mode::Alternate,
        Pull::Up,
        open_drain = false,
        af = 7
    );
    configure!(
        gpiob,
        14,
        Mode::Alternate,
        Pull::None,
        open_drain = false,
        af = 7
    );
}

/// USART1, the console: PA9 TX, PA10 RX (pulled up), AF7.
pub fn usart1_af(gpioa: &pac::GPIOA) {
    configure!(
        gpioa,
        9,
        Mode::Alternate,
        Pull::None,
        open_drain = false,
        af = 7
    );
    configure!(
        gpioa,
        10,
        Mode::Alternate,
        Pull::Up,
        open_drain = false,
        af = 7
    );
}

/// I2C3 to the charger and the fuel gauge: PA8 SCL, PC9 SDA, AF4, open-drain, no internal
/// pull (the board has 4.7 k pull-ups).
pub fn i2c3_af(gpioa: &pac::GPIOA, gpioc: &pac::GPIOC) {
    configure!(
        gpioa,
        8,
        Mode::Alternate,
        Pull::None,
        open_drain = true,
        af = 4
    );
    configure!(
        gpioc,
        9,
        Mode::Alternate,
        Pull::None,
        open_drain = true,
        af = 4
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ri_never_seen_high_reads_off_at_once() {
        let mut s = RiPowerSense::new();
        assert!(!s.sample(false, 0));
        assert!(!s.sample(false, 5_000));
    }

    #[test]
    fn a_ring_pulse_shorter_than_1100_ms_stays_powered() {
        let mut s = RiPowerSense::new();
        assert!(s.sample(true, 10_000));
        // RI low for a ~1 s ring, polled every 10 ms.
        for t in (10_010..=11_100).step_by(10) {
            assert!(s.sample(false, t), "t = {t}");
        }
        assert!(s.sample(true, 11_110));
        // A second ring seconds later, read once: the first low read of a run starts the clock.
        assert!(s.sample(false, 15_000));
        assert!(s.sample(false, 16_000));
    }

    #[test]
    fn low_for_more_than_1100_ms_after_high_reads_off() {
        let mut s = RiPowerSense::new();
        assert!(s.sample(true, 2_000));
        assert!(s.sample(false, 2_500));
        assert!(s.sample(false, 3_600));
        assert!(!s.sample(false, 3_601));
        assert!(!s.sample(false, 9_000));
        // Powered again as soon as it reads high.
        assert!(s.sample(true, 9_010));
        assert!(s.sample(false, 9_020));
    }

    #[test]
    fn a_clock_that_goes_back_does_not_read_off() {
        let mut s = RiPowerSense::new();
        assert!(s.sample(true, 5_000));
        assert!(s.sample(false, 4_000));
    }
}
