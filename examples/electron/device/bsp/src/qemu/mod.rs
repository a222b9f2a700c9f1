//! **QEMU stand-ins** (feature `qemu`): what QEMU's `netduino2` machine (an STM32F205 with
//! its USARTs, timers and SysTick, but no RCC, GPIO, PWR, RTC, IWDG, flash interface, I2C or
//! backup SRAM) lacks, replaced by the smallest thing that behaves the same for the
//! application. Nothing here is compiled for the board, and nothing else changes under the
//! feature: the USART driver, the SysTick clock, the app, ota-core, cloud-proto and
//! modem-ublox run as they do on the Electron.
//!
//! | On the Electron | Stand-in under `qemu` |
//! |---|---|
//! | internal flash programming (`flash::InternalFlash`) | [`QemuFlash`]: a copy-on-write RAM overlay over QEMU's read-only flash, with the same 16/64/128 KB sector map and NOR rules |
//! | backup SRAM (`backup::BackupSram`) | [`QemuRetained`]: 256 bytes in the same RAM region |
//! | PWR_ON (PB2), RESET_N (PC4), V_INT sense (PB12) | [`QemuPwrOn`], [`QemuResetN`], [`QemuVint`]: edges and reads sent over the *board link* (USART2) to the host bridge, which drives the SARA emulator's pins |
//! | the modem's own clock | [`BridgedDelay`]: the real SysTick [`Delay`](crate::time::Delay), which also tells the bridge how long it waits, so the emulator's virtual clock follows the firmware's |
//! | RTC wake-up + STANDBY (`power::standby_for_ms`) | [`sleep_for_ms`]: tells the bridge, waits on the SysTick, then SYSRESETREQ (a reset, as the wake from STANDBY is) |
//! | MAX17043 fuel gauge on I2C3 | [`BATTERY_MV`]: a constant |
//!
//! # The RAM region
//!
//! The top 64 KB of SRAM, `0x2001_0000..0x2002_0000` ([`REGION_START`], [`REGION_LEN`]),
//! hold the flash overlay and the retained bytes. Both binaries link with `memory-qemu.x`,
//! whose RAM ends at `0x2001_0000`, so neither start-up code touches it, and QEMU keeps RAM
//! across a system reset: the overlay survives the reset that stands in for deep sleep, as
//! flash and backup SRAM survive STANDBY on the board. At QEMU start RAM is zero, the
//! region's magic does not match, and [`QemuFlash::take`] starts with no overlay (flash as
//! loaded) and the retained bytes zeroed (a power-on).
//!
//! # The board link (USART2)
//!
//! Requests from the firmware, each answered before the firmware goes on (all integers
//! little-endian); the host side is `examples/electron/qemu-bridge` (`electron-qemu-bridge`),
//! whose `link` module decodes the same bytes:
//!
//! | request | bytes | answer |
//! |---|---|---|
//! | hello (boot) | `A0` | `D0` |
//! | waited | `A1` + u32 ns | `D1` + u16 bytes the bridge queued on USART3 meanwhile |
//! | PWR_ON level | `A2` + u8 (0 low, 1 high) | `D2` |
//! | RESET_N level | `A3` + u8 | `D3` |
//! | V_INT read | `A4` | `D4` + u8 level |
//! | deep sleep | `A5` + u32 ms | `D5` |

// Off the target (host unit tests) the fixed-address parts are compiled out.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

mod flash;
mod link;
mod region;
mod retained;

pub use flash::{QemuFlash, QemuFlashError, OVERLAY_PAGES, OVERLAY_PAGE_SIZE};
pub use link::{
    board_link, hello, link_stats, sleep_for_ms, BridgedDelay, LinkError, LinkStats, QemuPwrOn,
    QemuResetN, QemuVint,
};
pub use region::{REGION_LEN, REGION_START};
pub use retained::{QemuRetained, RETAINED_SIZE};

/// The battery voltage reported under QEMU (no I2C, no fuel gauge): a healthy Li-Po, above
/// electron-app's default `min_battery_mv` (3 500 mV), so offers are not deferred.
pub const BATTERY_MV: u16 = 3_900;
