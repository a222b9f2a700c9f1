//! The update container: one `.ota` file holding a signed manifest and its image.
//!
//! Layout (all integers little-endian, `docs/image-format.md` section 2):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `OTAC` |
//! | 4 | 1 | container version `1` |
//! | 5 | 3 | reserved, zero |
//! | 8 | 4 | manifest length M |
//! | 12 | 4 | image length N |
//! | 16 | M | manifest bytes |
//! | 16 + M | N | image bytes |
//!
//! Nothing may follow the image. Devices never see this file: a server sends the manifest in
//! its offer and the image as chunks.

use core::fmt;

use ed25519_compact::KeyPair;
use ota_core::{authenticate, build_signed, BuildError, ImageParams, TrustedKey, VerifyError};
use ota_core::{ChunkIndex, HardwareId, KeyId, Manifest, ManifestHeader};

/// The four bytes a container starts with: `OTAC`.
pub const MAGIC: [u8; 4] = *b"OTAC";
/// The container version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Size of the fixed container header, before the manifest.
pub const HEADER_LEN: usize = 16;

/// A decoded container: the manifest and the image, not yet checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The signed manifest, exactly as `ota_core::build_signed` wrote it.
    pub manifest: Vec<u8>,
    /// The firmware image.
    pub image: Vec<u8>,
}

/// Why bytes are not a well-formed container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainerError {
    /// The file does not start with `OTAC`.
    BadMagic,
    /// A container version this crate does not read.
    UnsupportedVersion(u8),
    /// A reserved header byte is not zero.
    Reserved,
    /// The file is shorter than its header says.
    Truncated {
        /// Length the header implies (at least the 16-byte header).
        expected: u64,
        /// Length of the input.
        actual: u64,
    },
    /// Bytes follow the image.
    TrailingBytes {
        /// Length the header implies.
        expected: u64,
        /// Length of the input.
        actual: u64,
    },
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not an update container (bad magic, expected OTAC)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported container version {v}"),
            Self::Reserved => f.write_str("a reserved container header byte is not zero"),
            Self::Truncated { expected, actual } => write!(
                f,
                "container is truncated: {actual} bytes, its header implies {expected}"
            ),
            Self::TrailingBytes { expected, actual } => write!(
                f,
                "trailing bytes after the image: {actual} bytes, the container header implies \
                 {expected}"
            ),
        }
    }
}

impl std::error::Error for ContainerError {}

impl Container {
    /// Builds and signs the manifest of `image` with `key` (via
    /// `ota_core::build_signed`) and wraps both in a container.
    ///
    /// Cost: one SHA-256 pass over the image, one per chunk, one Ed25519 signature.
    pub fn sign(params: &ImageParams, image: &[u8], key: &KeyPair) -> Result<Self, BuildError> {
        let len = params.manifest_len(image.len())?;
        let mut manifest = vec![0u8; len];
        let len = build_signed(params, image, key, &mut manifest)?;
        manifest.truncate(len);
        Ok(Self {
            manifest,
            image: image.to_vec(),
        })
    }

    /// The container's bytes.
    ///
    /// # Panics
    ///
    /// If the manifest or the image is 4 GiB or larger (the length fields are 32-bit; a
    /// manifest from `build_signed` never is, and neither is the image it describes).
    pub fn encode(&self) -> Vec<u8> {
        let m = u32::try_from(self.manifest.len()).expect("manifest of 4 GiB or more");
        let n = u32::try_from(self.image.len()).expect("image of 4 GiB or more");
        let mut out = Vec::with_capacity(HEADER_LEN + self.manifest.len() + self.image.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&m.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&self.manifest);
        out.extend_from_slice(&self.image);
        out
    }

    /// Splits container bytes into manifest and image. Checks the container framing only,
    /// not the manifest (see [`check_container`]). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContainerError> {
        let actual = bytes.len() as u64;
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes[..magic_len] != MAGIC[..magic_len] {
            return Err(ContainerError::BadMagic);
        }
        let Some(h) = bytes.get(..HEADER_LEN) else {
            return Err(ContainerError::Truncated {
                expected: HEADER_LEN as u64,
                actual,
            });
        };
        if h[4] != VERSION {
            return Err(ContainerError::UnsupportedVersion(h[4]));
        }
        if h[5..8] != [0; 3] {
            return Err(ContainerError::Reserved);
        }
        let m = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as u64;
        let n = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as u64;
        // At most 16 + 2 * (2^32 - 1): no overflow in u64.
        let expected = HEADER_LEN as u64 + m + n;
        if actual < expected {
            return Err(ContainerError::Truncated { expected, actual });
        }
        if actual > expected {
            return Err(ContainerError::TrailingBytes { expected, actual });
        }
        // `expected == bytes.len()`, so both lengths fit in usize.
        let rest = &bytes[HEADER_LEN..];
        let (manifest, image) = rest.split_at(m as usize);
        Ok(Self {
            manifest: manifest.to_vec(),
            image: image.to_vec(),
        })
    }
}

/// Why a container's content is refused by [`check_container`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckError {
    /// The manifest is malformed, signed by an untrusted key or its signature does not verify
    /// (the first failing step of `ota_core::authenticate`).
    Manifest(VerifyError),
    /// The image is built for other hardware than the one asked for.
    WrongHardware {
        /// The hardware id in the manifest.
        image: HardwareId,
        /// The hardware id asked for.
        wanted: HardwareId,
    },
    /// The security counter is below the minimum asked for.
    CounterTooLow {
        /// The counter in the manifest.
        counter: u32,
        /// The minimum asked for.
        min: u32,
    },
    /// The image length differs from the manifest's image size.
    ImageSize {
        /// Size in the manifest.
        manifest: u32,
        /// Length of the image in the container.
        image: u64,
    },
    /// A chunk's SHA-256 (truncated) differs from the manifest's table; the first such chunk.
    ChunkDigest(u32),
    /// Every chunk matches, but the SHA-256 of the whole image differs from the manifest's.
    ImageDigest,
}

fn write_key_id(f: &mut fmt::Formatter<'_>, id: &KeyId) -> fmt::Result {
    for b in id.0 {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest(VerifyError::UnknownKey(id)) => {
                f.write_str("manifest signed by unknown key id ")?;
                write_key_id(f, id)?;
                f.write_str(" (not among the trusted public keys)")
            }
            Self::Manifest(VerifyError::BadSignature) => f.write_str(
                "bad signature: the manifest does not verify under the key its key id names \
                 (tampered manifest or forged key id)",
            ),
            Self::Manifest(VerifyError::Malformed(e)) => write!(f, "malformed manifest: {e}"),
            Self::Manifest(e) => write!(f, "manifest refused: {e}"),
            Self::WrongHardware { image, wanted } => write!(
                f,
                "wrong hardware: image is for hardware id {}, not {}",
                crate::text::format_hardware_id(image),
                crate::text::format_hardware_id(wanted)
            ),
            Self::CounterTooLow { counter, min } => write!(
                f,
                "security counter {counter} is below the minimum {min} (rollback refused)"
            ),
            Self::ImageSize { manifest, image } => write!(
                f,
                "image is {image} bytes but the manifest says {manifest} bytes"
            ),
            Self::ChunkDigest(i) => write!(f, "chunk {i} digest mismatch: image data tampered"),
            Self::ImageDigest => {
                f.write_str("image SHA-256 does not match the manifest's image digest")
            }
        }
    }
}

impl std::error::Error for CheckError {}

/// Checks a bare manifest (what a server sends in an offer) the way a device judges the offer:
/// it verifies under one of `keys` (`ota_core::authenticate`), then the optional
/// policy: hardware id equal to `hw`, security counter at least `min_counter`.
///
/// Returns the authenticated manifest. Cost: one Ed25519 verification.
pub fn check_manifest<'a>(
    manifest: &'a [u8],
    keys: &[TrustedKey],
    hw: Option<HardwareId>,
    min_counter: Option<u32>,
) -> Result<Manifest<'a>, CheckError> {
    let manifest = authenticate(manifest, keys).map_err(CheckError::Manifest)?;
    let header = manifest.header();
    if let Some(wanted) = hw.filter(|w| *w != header.hardware_id) {
        return Err(CheckError::WrongHardware {
            image: header.hardware_id,
            wanted,
        });
    }
    if let Some(min) = min_counter.filter(|m| header.security_counter.0 < *m) {
        return Err(CheckError::CounterTooLow {
            counter: header.security_counter.0,
            min,
        });
    }
    Ok(manifest)
}

/// Checks a container's content the way a device would judge the offer and then the download.
///
/// In order: the manifest verifies under one of `keys` (`ota_core::verify`, which also applies
/// the optional policy: hardware id equal to `hw`, security counter at least `min_counter`),
/// then the image length equals the manifest's image size, each chunk matches its digest in
/// the manifest (the first bad chunk is reported) and the SHA-256 of the whole image matches.
///
/// Returns the authenticated manifest header.
pub fn check_container(
    c: &Container,
    keys: &[TrustedKey],
    hw: Option<HardwareId>,
    min_counter: Option<u32>,
) -> Result<ManifestHeader, CheckError> {
    let manifest = check_manifest(&c.manifest, keys, hw, min_counter)?;
    let header = *manifest.header();
    if c.image.len() as u64 != u64::from(header.image_size) {
        return Err(CheckError::ImageSize {
            manifest: header.image_size,
            image: c.image.len() as u64,
        });
    }
    // `validate` (run by `parse`) guarantees a non-zero chunk size.
    for (i, chunk) in c.image.chunks(header.chunk_size as usize).enumerate() {
        let index = i as u32;
        let expected = manifest.chunk_digest(ChunkIndex(index));
        if expected != Some(ota_core::chunk_digest(chunk)) {
            return Err(CheckError::ChunkDigest(index));
        }
    }
    if ota_core::Sha256Digest::of(&c.image) != header.image_digest {
        return Err(CheckError::ImageDigest);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_compact::Seed;
    use ota_core::MANIFEST_HEADER_LEN;
    use ota_core::{SecurityCounter, Sha256Digest, Version};

    fn key(n: u8) -> KeyPair {
        KeyPair::from_seed(Seed::new([n; 32]))
    }

    fn trusted(kp: &KeyPair) -> TrustedKey {
        TrustedKey::new(*kp.pk)
    }

    fn params() -> ImageParams {
        ImageParams {
            hardware_id: HardwareId::from_name("electron-u260").unwrap(),
            version: Version::new(1, 2, 3),
            security_counter: SecurityCounter(5),
            chunk_size: 256,
            base_digest: None,
        }
    }

    fn image(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn sample() -> Container {
        Container::sign(&params(), &image(1000), &key(1)).unwrap()
    }

    #[test]
    fn encode_decode_round_trip() {
        let c = sample();
        let bytes = c.encode();
        assert_eq!(&bytes[..4], b"OTAC");
        assert_eq!(bytes[4], 1);
        assert_eq!(&bytes[5..8], &[0, 0, 0]);
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            c.manifest.len()
        );
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 1000);
        assert_eq!(bytes.len(), 16 + c.manifest.len() + 1000);
        assert_eq!(Container::decode(&bytes), Ok(c));
    }

    #[test]
    fn manifest_length_matches_ota_core() {
        let c = sample();
        let chunks = ota_core::chunk_count(1000, 256);
        assert_eq!(chunks, 4);
        assert_eq!(c.manifest.len(), ota_core::manifest_len(chunks));
    }

    #[test]
    fn decode_errors_are_distinct() {
        let good = sample().encode();
        let with = |at: usize, v: u8| {
            let mut b = good.clone();
            b[at] = v;
            Container::decode(&b)
        };
        assert_eq!(with(0, b'X'), Err(ContainerError::BadMagic));
        assert_eq!(with(3, b'M'), Err(ContainerError::BadMagic));
        assert_eq!(with(4, 2), Err(ContainerError::UnsupportedVersion(2)));
        assert_eq!(with(6, 1), Err(ContainerError::Reserved));
        let total = good.len() as u64;
        assert_eq!(
            Container::decode(&good[..good.len() - 1]),
            Err(ContainerError::Truncated {
                expected: total,
                actual: total - 1
            })
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            Container::decode(&longer),
            Err(ContainerError::TrailingBytes {
                expected: total,
                actual: total + 1
            })
        );
        assert_eq!(
            Container::decode(b"OTAC\x01"),
            Err(ContainerError::Truncated {
                expected: 16,
                actual: 5
            })
        );
        assert_eq!(
            Container::decode(b"OT"),
            Err(ContainerError::Truncated {
                expected: 16,
                actual: 2
            })
        );
        assert_eq!(Container::decode(b"XY"), Err(ContainerError::BadMagic));
        // Huge lengths in the header: refused as truncated, no allocation, no overflow.
        let mut huge = good[..16].to_vec();
        huge[8..16].fill(0xff);
        assert_eq!(
            Container::decode(&huge),
            Err(ContainerError::Truncated {
                expected: 16 + 2 * u64::from(u32::MAX),
                actual: 16
            })
        );
    }

    #[test]
    fn decode_empty_parts() {
        let c = Container {
            manifest: vec![],
            image: vec![],
        };
        assert_eq!(c.encode().len(), 16);
        assert_eq!(Container::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn decode_never_panics_on_truncation_or_flips() {
        let good = sample().encode();
        for len in 0..good.len() {
            assert!(Container::decode(&good[..len]).is_err(), "length {len}");
        }
        // Flip each header byte and a spread of body bytes; decoding either fails or yields
        // the same total length, and checking never panics.
        let keys = [trusted(&key(1))];
        let positions = (0..HEADER_LEN + MANIFEST_HEADER_LEN).chain((0..good.len()).step_by(37));
        for at in positions {
            for bit in [0x01u8, 0x80] {
                let mut b = good.clone();
                b[at] ^= bit;
                if let Ok(c) = Container::decode(&b) {
                    assert_eq!(c.encode(), b);
                    assert!(check_container(&c, &keys, None, None).is_err(), "byte {at}");
                }
            }
        }
        // Pseudo-random garbage of every small length.
        let mut x = 0x2545_f491_u32;
        for len in 0..300 {
            let mut b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert!(Container::decode(&b).is_err());
            if len >= 4 {
                b[..4].copy_from_slice(b"OTAC");
            }
            let _ = Container::decode(&b);
        }
    }

    #[test]
    fn check_accepts_good_container() {
        let c = sample();
        let h = check_container(&c, &[trusted(&key(1))], None, None).unwrap();
        assert_eq!(h.version, Version::new(1, 2, 3));
        assert_eq!(h.security_counter, SecurityCounter(5));
        assert_eq!(h.image_size, 1000);
        assert_eq!(h.image_digest, Sha256Digest::of(&c.image));
        let hw = HardwareId::from_name("electron-u260");
        assert!(check_container(&c, &[trusted(&key(1))], hw, Some(5)).is_ok());
    }

    #[test]
    fn check_rotation_finds_the_right_key() {
        let c = sample();
        let keys = [trusted(&key(9)), trusted(&key(1))];
        assert!(check_container(&c, &keys, None, None).is_ok());
    }

    #[test]
    fn check_unknown_key() {
        let c = sample();
        let err = check_container(&c, &[trusted(&key(2))], None, None).unwrap_err();
        assert_eq!(
            err,
            CheckError::Manifest(VerifyError::UnknownKey(KeyId::of(&key(1).pk)))
        );
        let id = hex::encode(KeyId::of(&key(1).pk).0);
        assert!(err.to_string().contains(&format!("unknown key id {id}")));
    }

    #[test]
    fn check_bad_signature() {
        let mut c = sample();
        // Version patch byte: still well-formed, no longer what was signed.
        c.manifest[36] ^= 1;
        let err = check_container(&c, &[trusted(&key(1))], None, None).unwrap_err();
        assert_eq!(err, CheckError::Manifest(VerifyError::BadSignature));
        assert!(err.to_string().starts_with("bad signature"));
    }

    #[test]
    fn check_malformed_manifest() {
        let mut c = sample();
        c.manifest.pop();
        let err = check_container(&c, &[trusted(&key(1))], None, None).unwrap_err();
        assert!(matches!(
            err,
            CheckError::Manifest(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn check_policy() {
        let c = sample();
        let keys = [trusted(&key(1))];
        let other = HardwareId::from_name("boron").unwrap();
        let err = check_container(&c, &keys, Some(other), None).unwrap_err();
        assert_eq!(
            err,
            CheckError::WrongHardware {
                image: HardwareId::from_name("electron-u260").unwrap(),
                wanted: other
            }
        );
        assert!(err.to_string().contains("electron-u260"));
        let err = check_container(&c, &keys, None, Some(6)).unwrap_err();
        assert_eq!(err, CheckError::CounterTooLow { counter: 5, min: 6 });
        assert!(check_container(&c, &keys, None, Some(0)).is_ok());
    }

    #[test]
    fn check_image_tampering() {
        let keys = [trusted(&key(1))];
        for (at, chunk) in [(0usize, 0u32), (255, 0), (256, 1), (700, 2), (999, 3)] {
            let mut c = sample();
            c.image[at] ^= 0x40;
            assert_eq!(
                check_container(&c, &keys, None, None),
                Err(CheckError::ChunkDigest(chunk)),
                "byte {at}"
            );
        }
        let mut c = sample();
        c.image.push(0);
        assert_eq!(
            check_container(&c, &keys, None, None),
            Err(CheckError::ImageSize {
                manifest: 1000,
                image: 1001
            })
        );
        let mut c = sample();
        c.image.truncate(999);
        assert!(matches!(
            check_container(&c, &keys, None, None),
            Err(CheckError::ImageSize { .. })
        ));
    }

    #[test]
    fn check_whole_image_digest() {
        // A signer that put a wrong image digest over correct chunk digests: only the final
        // whole-image check catches it.
        let kp = key(1);
        let img = image(600);
        let header = ManifestHeader {
            key_id: KeyId::of(&kp.pk),
            hardware_id: params().hardware_id,
            version: params().version,
            security_counter: params().security_counter,
            image_size: 600,
            chunk_size: 256,
            image_digest: Sha256Digest([0xaa; 32]),
            base_digest: None,
        };
        let mut m = [0u8; MANIFEST_HEADER_LEN];
        header.encode(&mut m);
        let mut manifest = m.to_vec();
        for chunk in img.chunks(256) {
            manifest.extend_from_slice(&ota_core::chunk_digest(chunk));
        }
        let sig = kp.sk.sign(&manifest, None);
        manifest.extend_from_slice(sig.as_ref());
        let c = Container {
            manifest,
            image: img,
        };
        assert_eq!(
            check_container(&c, &[trusted(&kp)], None, None),
            Err(CheckError::ImageDigest)
        );
    }

    #[test]
    fn sign_reports_bad_parameters() {
        for chunk_size in [0, 1, 300, 128, 1 << 17] {
            let p = ImageParams {
                chunk_size,
                ..params()
            };
            assert!(
                matches!(
                    Container::sign(&p, &image(10), &key(1)),
                    Err(BuildError::Invalid(_))
                ),
                "chunk size {chunk_size}"
            );
        }
        assert!(matches!(
            Container::sign(&params(), &[], &key(1)),
            Err(BuildError::Invalid(_))
        ));
    }

    #[test]
    fn sign_is_deterministic_and_carries_base_digest() {
        let p = ImageParams {
            base_digest: Some(Sha256Digest([7; 32])),
            ..params()
        };
        let a = Container::sign(&p, &image(300), &key(1)).unwrap();
        let b = Container::sign(&p, &image(300), &key(1)).unwrap();
        assert_eq!(a, b);
        let h = check_container(&a, &[trusted(&key(1))], None, None).unwrap();
        assert_eq!(h.base_digest, Some(Sha256Digest([7; 32])));
    }
}
