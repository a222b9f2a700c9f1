//! What the board and the QEMU set-ups share: the modem's and the app's configuration, the
//! published reading.

use electron_app::AppConfig;
use modem_ublox::{Family, ModemConfig};
use ota_core::{HardwareId, TrustedKey};

use crate::settings;

/// SARA-U2 (the Electron's U260/U270) at 115 200 baud with RTS/CTS (`AT&K3`), as Device OS
/// runs it (research: electron-board.md §1). The USART is polled and holds one byte, so the
/// driver polls every 100 µs (about one character time): with RTS/CTS the modem waits
/// between characters instead of overrunning.
pub fn modem_config() -> ModemConfig {
    let mut c = ModemConfig::new(Family::U2);
    c.flow_control = true;
    c.poll_interval_us = 100;
    c
}

/// The app's defaults with this build's settings.
pub fn app_config<'k>(hardware: HardwareId, keys: &'k [TrustedKey]) -> AppConfig<'k> {
    let mut c = AppConfig::new(settings::server(), hardware, keys);
    c.apn = settings::APN;
    c.factory_version = settings::firmware_version();
    c
}

/// The reading each check-in publishes: battery mV (u16 LE) and the wake's milliseconds so
/// far (u32 LE). Returns its length (0 if `out` is too small).
pub fn heartbeat(out: &mut [u8], battery_mv: u16, now_ms: u64) -> usize {
    let Some(out) = out.get_mut(..6) else {
        return 0;
    };
    out[..2].copy_from_slice(&battery_mv.to_le_bytes());
    out[2..].copy_from_slice(&(now_ms.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    6
}
