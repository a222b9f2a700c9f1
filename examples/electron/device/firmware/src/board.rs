//! The firmware on the Electron: electron-bsp's real peripherals.

use core::fmt::Write;

use electron_app::{Board, PowerControl, RETAINED_LEN};
use electron_bsp::backup::BackupSram;
use electron_bsp::battery::{pmic_safe_defaults, FuelGauge};
use electron_bsp::flash::InternalFlash;
use electron_bsp::i2c::I2c3;
use electron_bsp::iwdg::Watchdog;
use electron_bsp::time::{Delay, Mono};
use electron_bsp::usart::{Usart1, Usart3};
use electron_bsp::{clocks, pac, pins, power, rtc};
use embedded_hal::delay::DelayNs;
use modem_ublox::Modem;

use crate::settings;

/// What the application may program: everything above the bootloader (sector 0)
/// (`InternalFlash` refuses sector 0); ota-core's regions lie on both sides of the active slot.
const WRITABLE: core::ops::Range<u32> = 0x4000..0x10_0000;

/// The active slot the firmware executes from (sectors 5–7, electron-app's `LAYOUT.active`):
/// protected, since only the bootloader's install writes it (ota-core's updater only reads
/// it, to hash it; it writes the state, progress, staging and scratch regions).
const ACTIVE: core::ops::Range<u32> =
    electron_app::LAYOUT.active.start..electron_app::LAYOUT.active.end;

struct Electron {
    mono: Mono,
    backup: BackupSram,
    gauge: Option<FuelGauge<I2c3>>,
}

impl Board for Electron {
    fn now_ms(&mut self) -> u64 {
        self.mono.now_ms()
    }

    /// The MAX17043's cell voltage; 0 if the gauge does not answer (the wake then defers
    /// offers, as for a flat battery).
    fn battery_mv(&mut self) -> u16 {
        self.gauge
            .as_mut()
            .and_then(|g| g.battery_mv().ok())
            .unwrap_or(0)
    }

    fn read_sensor(&mut self, out: &mut [u8]) -> usize {
        let mv = self.battery_mv();
        crate::board_common::heartbeat(out, mv, self.mono.now_ms())
    }

    fn load_retained(&mut self, out: &mut [u8; RETAINED_LEN]) {
        // In range by construction; an error leaves zeros (the app reads "power was lost").
        if self.backup.read(0, out).is_err() {
            out.fill(0);
        }
    }

    fn store_retained(&mut self, data: &[u8; RETAINED_LEN]) {
        let _ = self.backup.write(0, data);
    }

    fn self_check(&mut self) -> bool {
        // Booted, clocks and peripherals up, reached the wake: the check-in that confirms
        // the image is the rest of the test.
        true
    }
}

/// Reset and deep sleep. `pclk1` is APB1's clock, for the fuel gauge's I2C before STANDBY.
struct ElectronPower {
    pclk1: u32,
}

impl PowerControl for ElectronPower {
    fn reset(&mut self) -> ! {
        power::reset()
    }

    /// Puts the MAX17043 to sleep (about 50 µA → under 1 µA, more than the STM32 draws in
    /// STANDBY), then STANDBY. A gauge that does not answer is logged and the sleep goes on:
    /// every I2C wait is bounded (`electron_bsp::i2c::WAIT_POLLS`), so it never blocks it.
    fn deep_sleep(&mut self, ms: u64) -> ! {
        // SAFETY: the wake is over (`deep_sleep` is its end); the board's `I2c3` inside
        // `Electron` is never used again in this boot, so this second handle has the bus alone.
        let i2c3 = unsafe { pac::I2C3::steal() };
        let slept = match I2c3::new(i2c3, self.pclk1) {
            Ok(i2c) => FuelGauge::new(i2c).sleep().is_ok(),
            Err(_) => false,
        };
        if !slept {
            crate::console_raw(b"gauge: sleep failed, STANDBY anyway\r\n");
        }
        power::standby_for_ms(ms)
    }
}

/// The board's delay, feeding the IWDG when the bootloader left it running (install or trial
/// boot; `Watchdog::attach` never starts it): the modem driver waits through it constantly.
struct WatchedDelay {
    inner: Delay,
    dog: Watchdog,
}

impl DelayNs for WatchedDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.dog.feed();
        self.inner.delay_ns(ns);
    }
    fn delay_us(&mut self, us: u32) {
        self.dog.feed();
        self.inner.delay_us(us);
    }
    fn delay_ms(&mut self, ms: u32) {
        // Fed at least every second of a long wait (the IWDG's timeout is seconds).
        let mut left = ms;
        while left > 0 {
            let n = left.min(1_000);
            self.dog.feed();
            self.inner.delay_ms(n);
            left -= n;
        }
    }
}

pub fn start() -> ! {
    let (Some(cp), Some(dp)) = (cortex_m::Peripherals::take(), pac::Peripherals::take()) else {
        power::reset()
    };
    // A clock failure leaves the chip on the 16 MHz HSI (every bus at 16 MHz): run on it.
    let (sysclk, pclk1, pclk2) = match clocks::init(&dp.RCC, &dp.FLASH) {
        Ok(()) => (clocks::SYSCLK_HZ, clocks::PCLK1_HZ, clocks::PCLK2_HZ),
        Err(_) => (clocks::HSI_HZ, clocks::HSI_HZ, clocks::HSI_HZ),
    };
    clocks::enable_peripherals(&dp.RCC);
    pins::usart1_af(&dp.GPIOA);
    pins::usart3_af(&dp.GPIOB);
    pins::i2c3_af(&dp.GPIOA, &dp.GPIOC);
    let (pwr, reset, vint) = pins::modem_pins(&dp.GPIOB, &dp.GPIOC);
    let mono = Mono::start(cp.SYST, sysclk);
    let mut console = Usart1::new(dp.USART1, pclk2, 115_200, false);
    let _ = writeln!(
        console,
        "\nboot: electron-firmware {} (Electron), server {}, {} MHz",
        settings::FIRMWARE_VERSION,
        settings::server(),
        sysclk / 1_000_000
    );
    let backup = BackupSram::enable(&dp.RCC, &dp.PWR);
    if let Err(e) = rtc::Rtc::init(&dp.RCC, &dp.PWR, dp.RTC) {
        // STANDBY then falls back to a reset (power::standby_for_ms).
        let _ = writeln!(console, "rtc: {e}");
    }
    let gauge = match I2c3::new(dp.I2C3, pclk1) {
        Ok(mut i2c) => {
            if pmic_safe_defaults(&mut i2c).is_err() {
                let _ = writeln!(console, "pmic: no answer, left at its power-on defaults");
            }
            let mut gauge = FuelGauge::new(i2c);
            // Put to sleep before the last STANDBY (`ElectronPower::deep_sleep`): woken here,
            // as Device OS does at boot. A failure is logged; reads then return errors or the
            // voltage from before the sleep (the wake reads 0 mV as "defer offers").
            if gauge.wake().is_err() {
                let _ = writeln!(console, "gauge: wake failed");
            }
            Some(gauge)
        }
        Err(_) => None,
    };
    let mut flash = InternalFlash::new(dp.FLASH, WRITABLE).protect(ACTIVE);
    let usart3 = Usart3::new(dp.USART3, pclk1, 115_200, true);
    let delay = WatchedDelay {
        inner: mono.delay(),
        dog: Watchdog::attach(dp.IWDG),
    };
    let mut modem = Modem::new(usart3, delay, pwr, crate::board_common::modem_config())
        .with_reset(reset)
        .with_vint(vint);
    let mut board = Electron {
        mono,
        backup,
        gauge,
    };
    crate::run(
        &mut console,
        &mut board,
        &mut flash,
        &mut modem,
        &mut ElectronPower { pclk1 },
    )
}
