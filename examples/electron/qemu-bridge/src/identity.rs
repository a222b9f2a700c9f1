//! The identity sector's bytes for a flash image: electron-app's own
//! [`Identity::provision`] over a RAM NOR flash (ota-flash-sim's STM32F2 model) with the
//! Electron's sector map, from an `ota-cloud device add` key file.

use std::path::Path;

use anyhow::{Context, Result};
use cloud_proto::DeviceId;
use electron_app::{Identity, IDENTITY, SECTOR_SIZES};
use ota_cloud::keyfile::DeviceKeyFile;
use ota_flash_sim::F2Flash;

/// The [`IDENTITY`] region (256 bytes, flash offset 0xC000) as provisioning leaves it, for
/// the key file at `key`.
///
/// # Errors
/// The key file cannot be read or is malformed; provisioning fails (it cannot on a blank
/// flash).
pub fn identity_bytes(key: &Path) -> Result<Vec<u8>> {
    let kf = DeviceKeyFile::read(key).with_context(|| format!("reading {}", key.display()))?;
    identity_region(kf.device, kf.root_key.expose())
}

/// The [`IDENTITY`] region for `device` and `root_key`.
///
/// # Errors
/// Provisioning fails (it cannot on a blank flash).
pub fn identity_region(device: DeviceId, root_key: &[u8; 32]) -> Result<Vec<u8>> {
    let mut flash = F2Flash::new(&SECTOR_SIZES);
    Identity {
        device,
        root_key: *root_key,
    }
    .provision(&mut flash)
    .map_err(|e| anyhow::anyhow!("provisioning: {e}"))?;
    Ok(flash.contents()[IDENTITY.start as usize..IDENTITY.end as usize].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_reads_back_as_the_identity_in_a_fresh_flash() {
        let key = [0x5A; 32];
        let bytes = identity_region(DeviceId(42), &key).unwrap();
        assert_eq!(bytes.len(), 256);
        // The record (44 bytes), then erased flash.
        assert!(bytes[44..].iter().all(|&b| b == 0xFF));
        let mut flash = F2Flash::new(&SECTOR_SIZES);
        flash.preload(IDENTITY.start, &bytes);
        let id = Identity::read(&mut flash).unwrap();
        assert_eq!((id.device, id.root_key), (DeviceId(42), key));
    }

    #[test]
    fn a_key_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("qemu-bridge-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("device.key");
        let _ = std::fs::remove_file(&path);
        let text = format!(
            "# ota-cloud device key\ndevice_id = 9\nroot_key = {}\n",
            "0f".repeat(32)
        );
        std::fs::write(&path, text).unwrap();
        let bytes = identity_bytes(&path).unwrap();
        assert_eq!(bytes, identity_region(DeviceId(9), &[0x0F; 32]).unwrap());
        std::fs::write(&path, "device_id = 9\n").unwrap();
        assert!(
            identity_bytes(&path).is_err(),
            "a key file without its key is refused"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
