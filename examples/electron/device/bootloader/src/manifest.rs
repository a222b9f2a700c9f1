//! Feature `verify-signature`: before a trial image boots, the bootloader authenticates its
//! manifest and checks that it names the image ota-core installed.
//!
//! The manifest is the copy the application stored at the start of ota-core's progress region
//! when the download began (`Updater::begin`); ota-core keeps it there until the image is
//! confirmed (the region is erase work only outside a download, and a trial still carries its
//! download), so every trial boot finds it. The check: [`ota_core::authenticate`] (structure,
//! key id, Ed25519 signature), then the header's image digest, size and security counter equal
//! the [`ImageSummary`] ota-core booted, whose digest its own check has just compared with the
//! SHA-256 of the active slot. Together: the bytes about to run are the ones the key signed.

use ota_core::embedded_storage::nor_flash::ReadNorFlash;
use ota_core::{
    authenticate, chunk_count, manifest_len, ImageSummary, ManifestHeader, ParseError, TrustedKey,
    VerifyError, MANIFEST_HEADER_LEN, MIN_CHUNK_SIZE,
};

use crate::LAYOUT;

/// The largest manifest an image in the active slot can have: 384 KiB in 256-byte chunks,
/// 1 536 chunk digests: 24 760 bytes.
pub const MAX_MANIFEST: usize = manifest_len(chunk_count(
    LAYOUT.active.end - LAYOUT.active.start,
    MIN_CHUNK_SIZE,
));

/// A trial image's manifest that does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestError {
    /// The flash read failed.
    Read,
    /// The stored header does not decode (the progress region holds no manifest).
    Header(ParseError),
    /// The header announces a manifest longer than [`MAX_MANIFEST`] or the buffer.
    TooLarge(usize),
    /// Unknown key, bad signature or malformed manifest.
    Verify(VerifyError),
    /// Authentic, but for another image than the one installed.
    Mismatch,
    /// ota-core does not know what the active slot holds.
    NoImage,
}

/// Checks manifest `bytes` against `keys` and the installed `image`.
///
/// Cost: one Ed25519 verification and one SHA-512 pass over `bytes`.
///
/// # Errors
/// [`ManifestError::Verify`], [`ManifestError::Mismatch`].
pub fn check_bytes(
    bytes: &[u8],
    keys: &[TrustedKey],
    image: &ImageSummary,
) -> Result<(), ManifestError> {
    let m = authenticate(bytes, keys).map_err(ManifestError::Verify)?;
    let h = m.header();
    if h.image_digest != image.digest
        || h.image_size != image.size
        || h.security_counter != image.security_counter
    {
        return Err(ManifestError::Mismatch);
    }
    Ok(())
}

/// Reads the manifest copy at the start of the progress region into `buf` and checks it
/// ([`check_bytes`]).
///
/// Cost: reads the manifest (at most [`MAX_MANIFEST`] bytes), then as [`check_bytes`].
///
/// # Errors
/// [`ManifestError`].
pub fn check_installed<F: ReadNorFlash>(
    flash: &mut F,
    buf: &mut [u8],
    keys: &[TrustedKey],
    image: Option<ImageSummary>,
) -> Result<(), ManifestError> {
    let image = image.ok_or(ManifestError::NoImage)?;
    let at = LAYOUT.progress.start;
    let head = buf
        .get_mut(..MANIFEST_HEADER_LEN)
        .ok_or(ManifestError::TooLarge(MANIFEST_HEADER_LEN))?;
    flash.read(at, head).map_err(|_| ManifestError::Read)?;
    let header = ManifestHeader::decode(head).map_err(ManifestError::Header)?;
    let len = header.encoded_len();
    if len > MAX_MANIFEST {
        return Err(ManifestError::TooLarge(len));
    }
    let bytes = buf.get_mut(..len).ok_or(ManifestError::TooLarge(len))?;
    flash.read(at, bytes).map_err(|_| ManifestError::Read)?;
    check_bytes(bytes, keys, &image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ota_core::{build_signed, HardwareId, ImageParams, SecurityCounter, Sha256Digest, Version};

    fn signed(image: &[u8], seed: u8) -> (std::vec::Vec<u8>, TrustedKey) {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
        let params = ImageParams {
            hardware_id: HardwareId::from_name("electron").unwrap(),
            version: Version::new(1, 2, 3),
            security_counter: SecurityCounter(5),
            chunk_size: 256,
            base_digest: None,
        };
        let mut out = std::vec![0u8; MAX_MANIFEST];
        let n = build_signed(&params, image, &kp, &mut out).unwrap();
        out.truncate(n);
        (out, TrustedKey::new(*kp.pk))
    }

    fn summary(image: &[u8]) -> ImageSummary {
        ImageSummary {
            version: Version::new(1, 2, 3),
            security_counter: SecurityCounter(5),
            size: image.len() as u32,
            digest: Sha256Digest::of(image),
        }
    }

    extern crate std;

    #[test]
    fn max_manifest_covers_the_slot_in_the_smallest_chunks() {
        assert_eq!(MAX_MANIFEST, 120 + 1536 * 16 + 64);
    }

    #[test]
    fn the_signed_manifest_of_the_installed_image_passes() {
        let image = [0x5Au8; 3000];
        let (m, key) = signed(&image, 1);
        assert_eq!(check_bytes(&m, &[key], &summary(&image)), Ok(()));
    }

    #[test]
    fn another_key_or_a_flipped_bit_is_refused() {
        let image = [0x5Au8; 3000];
        let (m, _) = signed(&image, 1);
        let (_, other) = signed(&image, 2);
        assert!(matches!(
            check_bytes(&m, &[other], &summary(&image)),
            Err(ManifestError::Verify(VerifyError::UnknownKey(_)))
        ));
        let (mut m, key) = signed(&image, 1);
        m[200] ^= 1;
        assert_eq!(
            check_bytes(&m, &[key], &summary(&image)),
            Err(ManifestError::Verify(VerifyError::BadSignature))
        );
    }

    #[test]
    fn an_authentic_manifest_for_another_image_is_refused() {
        let image = [0x5Au8; 3000];
        let (m, key) = signed(&image, 1);
        let mut other = image;
        other[0] = 0;
        assert_eq!(
            check_bytes(&m, &[key], &summary(&other)),
            Err(ManifestError::Mismatch)
        );
        let older = ImageSummary {
            security_counter: SecurityCounter(4),
            ..summary(&image)
        };
        assert_eq!(
            check_bytes(&m, &[key], &older),
            Err(ManifestError::Mismatch)
        );
    }
}
