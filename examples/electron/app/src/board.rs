//! What the wake cycle needs from a board, beyond the flash (`embedded-storage` `NorFlash`)
//! and the modem's UART and pins (`embedded-io` and `embedded-hal`, as `modem-ublox` takes
//! them).
//!
//! Kept small on purpose: the Electron firmware implements it over the STM32F205's SysTick or
//! RTC, ADC, fuel gauge and backup SRAM; the host simulation over its virtual clock and plain
//! memory.

use crate::retained::RETAINED_LEN;

/// The board services one wake uses.
///
/// None of these may block for long: the wake charges every call to its awake budget through
/// [`now_ms`](Self::now_ms) and nothing else.
pub trait Board {
    /// Milliseconds since this wake's reset, from a monotonic clock (never goes back within a
    /// wake; a deep sleep is a reset, so it starts near 0 at every wake). On the Electron: the
    /// SysTick count, or the RTC sub-seconds; in the simulation the virtual clock.
    fn now_ms(&mut self) -> u64;

    /// Battery voltage in millivolts (the Electron's MAX17043 fuel gauge). The wake defers an
    /// offer below [`AppConfig::min_battery_mv`](crate::AppConfig::min_battery_mv).
    fn battery_mv(&mut self) -> u16;

    /// Takes one sensor reading into `out` and returns its length (0: nothing to publish this
    /// wake). The bytes are published as they are, under
    /// [`AppConfig::sensor_topic`](crate::AppConfig::sensor_topic). Lengths past `out.len()`
    /// are clamped.
    fn read_sensor(&mut self, out: &mut [u8]) -> usize;

    /// Reads the retained memory (on the Electron: the first [`RETAINED_LEN`] bytes of the
    /// 4 KB backup SRAM, which survives STANDBY and is lost with power). Any content is
    /// acceptable: the wake checks the CRC ([`RetainedState::decode`](crate::RetainedState::decode))
    /// and treats garbage as "power was lost".
    fn load_retained(&mut self, out: &mut [u8; RETAINED_LEN]);

    /// Writes the retained memory. Must complete before the call returns (the wake writes it
    /// before every frame goes on the air: a send counter is never used twice).
    fn store_retained(&mut self, data: &[u8; RETAINED_LEN]);

    /// The application's self-check of a firmware image that runs **on trial** (the first
    /// boot after an install): `true` if it works well enough to be kept. `false` makes the
    /// wake mark the image failed, report it and reset into the bootloader, which reverts to
    /// the confirmed image. Called once per trial wake, before the modem is powered.
    fn self_check(&mut self) -> bool;
}

/// The two ways a wake ends on hardware, neither of which returns (see
/// [`WakeEnd::enter`](crate::WakeEnd::enter)). The host simulation does not implement it: it
/// acts on the [`WakeEnd`](crate::WakeEnd) itself and keeps running.
pub trait PowerControl {
    /// Resets the MCU, so the bootloader runs (it installs a marked image, or reverts a
    /// rejected trial image).
    fn reset(&mut self) -> !;

    /// Enters deep sleep (STANDBY with an RTC alarm in `ms` milliseconds): the next wake is a
    /// reset with only the retained memory kept. The modem is already off.
    fn deep_sleep(&mut self, ms: u64) -> !;
}
