//! Compile-time settings, from environment variables at build time (`option_env!`), with
//! the defaults below. `scripts/electron-qemu.sh` sets them for the QEMU run.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ELECTRON_SERVER` | `127.0.0.1:4780` | the cloud's UDP address (`ota-cloud serve --udp`) |
//! | `ELECTRON_APN` | `spark.telefonica.com` | the data context's APN (Particle SIMs) |
//! | `ELECTRON_HARDWARE_ID` | `electron-u260` | the hardware id release images must carry |
//! | `ELECTRON_RELEASE_KEY` | none | the trusted release key: 64 hex digits (the raw Ed25519 public key) |
//! | `ELECTRON_FIRMWARE_VERSION` | `1.0.0` | the version reported while ota-core has no confirmed image |
//!
//! The identity (device id and root key) is not a setting: it lives in flash sector 3,
//! written at provisioning (`electron-qemu-bridge identity` for the QEMU run).

use cloud_proto::FirmwareVersion;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use ota_core::{HardwareId, TrustedKey};

const fn or(v: Option<&'static str>, d: &'static str) -> &'static str {
    match v {
        Some(s) => s,
        None => d,
    }
}

/// `ELECTRON_SERVER`.
pub const SERVER: &str = or(option_env!("ELECTRON_SERVER"), "127.0.0.1:4780");
/// `ELECTRON_APN`.
pub const APN: &str = or(option_env!("ELECTRON_APN"), "spark.telefonica.com");
/// `ELECTRON_HARDWARE_ID`.
pub const HARDWARE_ID: &str = or(option_env!("ELECTRON_HARDWARE_ID"), "electron-u260");
/// `ELECTRON_RELEASE_KEY`.
pub const RELEASE_KEY: &str = or(option_env!("ELECTRON_RELEASE_KEY"), "");
/// `ELECTRON_FIRMWARE_VERSION`.
pub const FIRMWARE_VERSION: &str = or(option_env!("ELECTRON_FIRMWARE_VERSION"), "1.0.0");

/// The server address; the default when `ELECTRON_SERVER` does not parse.
pub fn server() -> SocketAddr {
    SERVER
        .parse()
        .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4780)))
}

/// The hardware id (`None` if the name is longer than 16 bytes).
pub fn hardware_id() -> Option<HardwareId> {
    HardwareId::from_name(HARDWARE_ID)
}

/// The trusted release key, checked ([`TrustedKey::try_new`]); `None` when unset or not a
/// valid key (the firmware then declines every offer, and says so on the console).
pub fn release_key() -> Option<TrustedKey> {
    let s = RELEASE_KEY.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        let hi = (s[2 * i] as char).to_digit(16)?;
        let lo = (s[2 * i + 1] as char).to_digit(16)?;
        *k = (hi * 16 + lo) as u8;
    }
    TrustedKey::try_new(key).ok()
}

/// `major.minor.patch`; 0.0.0 when it does not parse.
pub fn firmware_version() -> FirmwareVersion {
    let mut parts = FIRMWARE_VERSION.split('.').map(|p| p.parse::<u16>());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => FirmwareVersion {
            major,
            minor,
            patch,
        },
        _ => FirmwareVersion::default(),
    }
}
