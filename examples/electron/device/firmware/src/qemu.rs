//! The firmware on QEMU's netduino2 (feature `qemu`). The same wake as on the board; the
//! stand-ins (`electron_bsp::qemu`) replace only what the machine lacks: no clocks or pin
//! set-up (no RCC, no GPIO: QEMU's USARTs need neither), the flash overlay, the retained
//! bytes, the modem's pins over the board link, the battery constant, and the sleep.

use core::fmt::Write;

use electron_app::{Board, PowerControl, RETAINED_LEN};
use electron_bsp::pac;
use electron_bsp::qemu::{self, BridgedDelay, QemuFlash, QemuRetained, BATTERY_MV};
use electron_bsp::time::Mono;
use electron_bsp::usart::{Usart1, Usart3};
use modem_ublox::Modem;

use crate::settings;

// The netduino2's clocks are the Electron's after `clocks::init` (120 MHz core: the SysTick
// runs from it), without the init (no RCC); QEMU's USARTs ignore BRR.
use electron_bsp::clocks::{PCLK1_HZ, PCLK2_HZ, SYSCLK_HZ};

struct QemuBoard {
    mono: Mono,
    retained: QemuRetained,
}

impl Board for QemuBoard {
    fn now_ms(&mut self) -> u64 {
        self.mono.now_ms()
    }

    fn battery_mv(&mut self) -> u16 {
        BATTERY_MV
    }

    /// The reading published at each check-in: battery mV (u16 LE) and the milliseconds this
    /// wake has run so far (u32 LE).
    fn read_sensor(&mut self, out: &mut [u8]) -> usize {
        crate::board_common::heartbeat(out, BATTERY_MV, self.mono.now_ms())
    }

    fn load_retained(&mut self, out: &mut [u8; RETAINED_LEN]) {
        self.retained.read(0, out);
    }

    fn store_retained(&mut self, data: &[u8; RETAINED_LEN]) {
        self.retained.write(0, data);
    }

    fn self_check(&mut self) -> bool {
        // This image booted, set up the board and reached the wake; the check-in that
        // confirms it is the rest of the test.
        true
    }
}

struct QemuPower;

impl PowerControl for QemuPower {
    fn reset(&mut self) -> ! {
        cortex_m::peripheral::SCB::sys_reset()
    }

    fn deep_sleep(&mut self, ms: u64) -> ! {
        qemu::sleep_for_ms(ms)
    }
}

pub fn start() -> ! {
    let (Some(cp), Some(dp)) = (cortex_m::Peripherals::take(), pac::Peripherals::take()) else {
        // Taken once at entry: cannot fail.
        cortex_m::peripheral::SCB::sys_reset()
    };
    let mono = Mono::start(cp.SYST, SYSCLK_HZ);
    let mut console = Usart1::new(dp.USART1, PCLK2_HZ, 115_200, false);
    let _ = writeln!(
        console,
        "\nboot: electron-firmware {} (qemu netduino2), server {}",
        settings::FIRMWARE_VERSION,
        settings::server()
    );
    let (pwr, reset, vint) = qemu::board_link(dp.USART2);
    if let Err(e) = qemu::hello() {
        let _ = writeln!(console, "board link: {e} (the modem will not power on)");
    }
    let flash_overlay = QemuFlash::take();
    let _ = writeln!(
        console,
        "qemu stand-ins: flash overlay {}/{} pages of {} B, board link on USART2",
        flash_overlay.pages_used(),
        qemu::OVERLAY_PAGES,
        qemu::OVERLAY_PAGE_SIZE
    );
    let mut flash = flash_overlay;
    let usart3 = Usart3::new(dp.USART3, PCLK1_HZ, 115_200, true);
    let mut modem = Modem::new(
        usart3,
        BridgedDelay::new(mono.delay()),
        pwr,
        crate::board_common::modem_config(),
    )
    .with_reset(reset)
    .with_vint(vint);
    let mut board = QemuBoard {
        mono,
        retained: QemuRetained::take(),
    };
    crate::run(
        &mut console,
        &mut board,
        &mut flash,
        &mut modem,
        &mut QemuPower,
    )
}
