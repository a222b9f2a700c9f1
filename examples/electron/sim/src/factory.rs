//! The factory: the v1 image programmed into the active slot and recorded by ota-core as the
//! confirmed image ([`ota_core::Updater::provision`]), so the device's first update knows what
//! it replaces and its anti-rollback counter starts at v1's.
//!
//! ota-tool has no `provision` command: provisioning is the device's own `Updater::provision`
//! over the flash, which is what this does, outside virtual time (the factory's programming
//! time is not part of the story).

use core::fmt;

use ota_core::{
    HardwareId, ImageSummary, Layout, OpenError, StateError, TrustedKey, Updater, UpdaterConfig,
    VerifyError,
};

use crate::cloud::SignedImage;
use crate::flash::ElectronFlash;

/// Why factory provisioning failed (a set-up error of the simulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FactoryError {
    /// The image does not fit the layout's active slot.
    TooLarge {
        /// Image bytes.
        image: usize,
        /// Active slot bytes.
        slot: u32,
    },
    /// ota-core could not open its state.
    Open(OpenError),
    /// The manifest was refused by the device's own policy.
    Verify(VerifyError),
    /// Provisioning itself failed.
    Provision(StateError),
}

impl fmt::Display for FactoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { image, slot } => {
                write!(
                    f,
                    "image of {image} bytes does not fit the {slot}-byte slot"
                )
            }
            Self::Open(e) => write!(f, "ota-core open: {e:?}"),
            Self::Verify(e) => write!(f, "factory manifest refused: {e:?}"),
            Self::Provision(e) => write!(f, "provision: {e:?}"),
        }
    }
}

impl std::error::Error for FactoryError {}

/// Programs `image` at `layout.active.start` and provisions it with ota-core under `key` and
/// `hardware`. Flash work goes through [`ElectronFlash::sim_mut`]: counted in the flash's
/// operation index (cut indices stay absolute) but not charged to the clock.
///
/// # Errors
/// [`FactoryError`].
///
/// Cost: one SHA-256 pass over the image; the state region's first erase and one record.
pub fn factory_provision(
    flash: &mut ElectronFlash,
    layout: Layout,
    image: &SignedImage,
    key: TrustedKey,
    hardware: HardwareId,
) -> Result<ImageSummary, FactoryError> {
    let slot = layout.active.len();
    if image.image.len() > slot as usize {
        return Err(FactoryError::TooLarge {
            image: image.image.len(),
            slot,
        });
    }
    flash.preload(layout.active.start, &image.image);
    let f = flash.sim_mut();
    let config = UpdaterConfig {
        hardware_id: hardware,
        allow_downgrade: false,
    };
    let mut updater = Updater::open(f, layout, config).map_err(FactoryError::Open)?;
    let verified = updater
        .verify_offer(&image.manifest, &[key])
        .map_err(FactoryError::Verify)?;
    let mut buf = [0u8; 1024];
    // A blank state region needs its erase steps first; bounded by the region's sectors.
    for _ in 0..64 {
        match updater.provision(f, &verified, &mut buf) {
            Err(StateError::NeedsErase) => {
                let _left = updater
                    .erase_step(f, &mut buf)
                    .map_err(FactoryError::Provision)?;
            }
            Err(e) => return Err(FactoryError::Provision(e)),
            Ok(()) => break,
        }
    }
    updater
        .confirmed_image()
        .ok_or(FactoryError::Provision(StateError::NeedsErase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::cloud::{build_image, ImageMarker, V1};
    use crate::flash::FlashTiming;
    use ota_core::{ImageParams, SecurityCounter, Version};

    fn signed(size: usize) -> (SignedImage, TrustedKey, HardwareId) {
        let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
        let hw = HardwareId::from_name(crate::cloud::HARDWARE_NAME).unwrap();
        let image = build_image(
            size,
            ImageMarker {
                version: V1,
                self_check_fails: false,
            },
            1,
        );
        let params = ImageParams {
            hardware_id: hw,
            version: Version::new(1, 0, 0),
            security_counter: SecurityCounter(1),
            chunk_size: 1024,
            base_digest: None,
        };
        let c = ota_tool::Container::sign(&params, &image, &key).unwrap();
        let s = SignedImage {
            version: V1,
            security_counter: 1,
            self_check_fails: false,
            container: c.encode(),
            manifest: c.manifest,
            image,
        };
        (s, ota_tool::keys::trusted(&key.pk), hw)
    }

    #[test]
    fn v1_is_programmed_and_recorded_as_the_confirmed_image_without_charging_time() {
        let clock = SimClock::standalone();
        let mut flash = ElectronFlash::new(clock.clone(), FlashTiming::TYPICAL);
        let (img, key, hw) = signed(20_000);
        let summary = factory_provision(&mut flash, Layout::ELECTRON, &img, key, hw).unwrap();
        assert_eq!(summary.version, Version::new(1, 0, 0));
        assert_eq!(summary.size, 20_000);
        assert_eq!(clock.now_us(), 0);
        let start = Layout::ELECTRON.active.start as usize;
        assert_eq!(
            ImageMarker::parse(&flash.sim().contents()[start..]).map(|m| m.version),
            Some(V1)
        );
        // A fresh Updater over the same flash (a reset) sees it.
        let u = Updater::open(
            &mut flash,
            Layout::ELECTRON,
            UpdaterConfig {
                hardware_id: hw,
                allow_downgrade: false,
            },
        )
        .unwrap();
        assert_eq!(u.confirmed_image(), Some(summary));
    }

    #[test]
    fn image_larger_than_the_slot_is_refused() {
        let mut flash = ElectronFlash::new(SimClock::standalone(), FlashTiming::TYPICAL);
        let (img, key, hw) = signed(Layout::ELECTRON.active.len() as usize + 4);
        assert!(matches!(
            factory_provision(&mut flash, Layout::ELECTRON, &img, key, hw),
            Err(FactoryError::TooLarge { .. })
        ));
    }
}
