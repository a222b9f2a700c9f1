//! Offer → decision: authenticate a manifest and apply the device's policy.

use core::fmt;

use crate::manifest::{HardwareId, KeyId, Manifest, ManifestHeader, ParseError, SecurityCounter};

/// An Ed25519 public key the device trusts, with its [`KeyId`] precomputed.
///
/// A device holds several (current and next key) so that keys can be rotated without a
/// flag day: sign with the new key once every device trusts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedKey {
    id: KeyId,
    key: [u8; 32],
}

impl TrustedKey {
    /// Trusts the 32-byte Ed25519 public key `key` after checking it: it must be the canonical
    /// encoding of a curve point that does not have small order (`docs/image-format.md`
    /// section 1.3, steps 2 and 3). Use this for every key, at start-up or in a host test of
    /// the firmware's key constants: a key it refuses would make the device refuse every
    /// manifest, found only when the first update fails in the field.
    ///
    /// It cannot see a key that is a valid point plus a small-order one (`[a]B + T`), which
    /// only a deliberately malformed key generation makes; key generation (`ota-tool keygen`,
    /// `openssl genpkey`) never does.
    ///
    /// Errors: [`KeyError::NotAPoint`], [`KeyError::SmallOrder`].
    /// Cost: one point decoding (a field exponentiation of about 250 squarings, as each
    /// verification also does for the key and for R) and one SHA-256 of 32 bytes.
    pub fn try_new(key: [u8; 32]) -> Result<Self, KeyError> {
        match ed25519_compact::PublicKey::new(key).validate() {
            Ok(()) => Ok(Self::new(key)),
            Err(ed25519_compact::Error::WeakPublicKey) => Err(KeyError::SmallOrder),
            Err(_) => Err(KeyError::NotAPoint),
        }
    }

    /// Trusts `key` without checking it; prefer [`TrustedKey::try_new`]. A key that `try_new`
    /// refuses is harmless here in one way only: no signature verifies under it (the
    /// verification refuses such keys too), so the device refuses every manifest.
    /// Cost: one SHA-256 of 32 bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            id: KeyId::of(&key),
            key,
        }
    }

    /// The key's id, as manifests signed by it carry.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The raw public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.key
    }
}

/// Why [`TrustedKey::try_new`] refused a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyError {
    /// The 32 bytes are not the canonical encoding of a curve point: y ≥ p, no point has
    /// that y, or x = 0 with the sign bit set. Often a key in the wrong format (a hash, the
    /// secret seed, bytes of a PEM or DER wrapper).
    NotAPoint,
    /// The point has small order (one of eight points of order 1, 2, 4 or 8): no secret key
    /// belongs to it, and under a verifier that does not refuse it anyone can forge.
    SmallOrder,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAPoint => f.write_str("public key is not an encoded Ed25519 curve point"),
            Self::SmallOrder => f.write_str("public key is a point of small order"),
        }
    }
}

impl core::error::Error for KeyError {}

/// What the device knows and wants when it judges an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// This device's hardware id.
    pub hardware_id: HardwareId,
    /// The security counter of the confirmed image (from the persisted state).
    pub stored_counter: SecurityCounter,
    /// Bytes available in the staging slot.
    pub capacity: u32,
    /// Development override: accept an image whose security counter is below the stored one.
    /// Never set this in a field build. Even then the stored counter never goes down.
    pub allow_downgrade: bool,
}

impl Policy {
    /// The device-policy half of [`verify()`]: hardware id, anti-rollback, size. Only
    /// meaningful on a header that [`authenticate`] returned. O(1).
    pub fn check(&self, h: &ManifestHeader) -> Result<(), VerifyError> {
        if h.hardware_id != self.hardware_id {
            return Err(VerifyError::WrongHardware);
        }
        if h.security_counter < self.stored_counter && !self.allow_downgrade {
            return Err(VerifyError::Downgrade {
                offered: h.security_counter,
                stored: self.stored_counter,
            });
        }
        if h.image_size > self.capacity {
            return Err(VerifyError::TooLarge {
                size: h.image_size,
                capacity: self.capacity,
            });
        }
        Ok(())
    }
}

/// Why an offered manifest is refused. Every variant is a distinct, actionable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum VerifyError {
    /// The bytes are not a well-formed manifest.
    Malformed(ParseError),
    /// No trusted key has the manifest's key id.
    UnknownKey(KeyId),
    /// The signature does not verify under the named key (tampered bytes or wrong key).
    BadSignature,
    /// The image is built for other hardware.
    WrongHardware,
    /// The image's security counter is below the stored one.
    Downgrade {
        /// The counter the manifest carries.
        offered: SecurityCounter,
        /// The counter the device has stored.
        stored: SecurityCounter,
    },
    /// The image does not fit the staging slot.
    TooLarge {
        /// Image size.
        size: u32,
        /// Slot capacity.
        capacity: u32,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(_) => f.write_str("malformed manifest"),
            Self::UnknownKey(id) => write!(f, "manifest signed by unknown key id {id}"),
            Self::BadSignature => f.write_str("manifest signature does not verify"),
            Self::WrongHardware => f.write_str("image is for other hardware"),
            Self::Downgrade { offered, stored } => write!(
                f,
                "security counter {} is below the stored {}",
                offered.0, stored.0
            ),
            Self::TooLarge { size, capacity } => {
                write!(f, "image of {size} bytes exceeds the {capacity}-byte slot")
            }
        }
    }
}

impl core::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ParseError> for VerifyError {
    fn from(e: ParseError) -> Self {
        Self::Malformed(e)
    }
}

/// A manifest whose signature verified under a trusted key and that passed the device policy.
///
/// The only way to get one is [`verify()`], so holding one proves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedManifest<'a> {
    manifest: Manifest<'a>,
}

impl<'a> VerifiedManifest<'a> {
    /// The authenticated manifest.
    pub fn manifest(&self) -> &Manifest<'a> {
        &self.manifest
    }

    /// Its header.
    pub fn header(&self) -> &ManifestHeader {
        self.manifest.header()
    }
}

/// Checks an Ed25519 signature by the rule of `docs/image-format.md` section 1.3: RFC 8032
/// section 5.1.7 with its cofactored equation, plus two refusals. Exactly:
///
/// 1. S (the signature's last 32 bytes, little-endian) must be below the group order L;
/// 2. `public_key` and R (the first 32 bytes) must decode as RFC 8032 section 5.1.3 says, with
///    no reduction (y < p, a point exists, no x = 0 with the sign bit set);
/// 3. neither the key nor R may have small order (8·P = identity);
/// 4. with k = SHA-512(R ‖ key ‖ `message`) mod L, 8·(S·B − k·A − R) must be the identity.
///
/// A cofactorless verifier such as OpenSSL differs only on signatures an RFC 8032 signer
/// never makes (section 1.6 lists them): it refuses an R or key off by a small-order point,
/// which this accepts, and accepts R = identity or a small-order key, which this refuses.
///
/// This is the primitive [`authenticate`] uses on the manifest bytes. Every refusal is
/// [`VerifyError::BadSignature`]. Cost: one SHA-512 pass over `message`, two point
/// decodings and one double-scalar multiplication (variable time: all inputs are public).
pub fn check_signature(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), VerifyError> {
    let pk = ed25519_compact::PublicKey::new(*public_key);
    let sig = ed25519_compact::Signature::new(*signature);
    pk.verify(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// Authenticates the signature only: parse, find the key, check the Ed25519 signature.
///
/// Cost: one SHA-512 pass over the manifest and one Ed25519 verification; no allocation and
/// no flash access.
pub fn authenticate<'a>(bytes: &'a [u8], keys: &[TrustedKey]) -> Result<Manifest<'a>, VerifyError> {
    let manifest = Manifest::parse(bytes)?;
    let key_id = manifest.header().key_id;
    let key = keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or(VerifyError::UnknownKey(key_id))?;
    check_signature(&key.key, manifest.signed_bytes(), manifest.signature())?;
    Ok(manifest)
}

/// Checks an offered manifest: structure, key, signature, then the device policy (hardware id,
/// anti-rollback, size), in that order, so a policy error always refers to authentic content.
///
/// Cost: as [`authenticate`]; a manifest for 384 KiB in 1 KiB chunks is 6 328 bytes.
pub fn verify<'a>(
    bytes: &'a [u8],
    keys: &[TrustedKey],
    policy: &Policy,
) -> Result<VerifiedManifest<'a>, VerifyError> {
    let manifest = authenticate(bytes, keys)?;
    policy.check(manifest.header())?;
    Ok(VerifiedManifest { manifest })
}
