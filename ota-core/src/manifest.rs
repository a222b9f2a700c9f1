//! The signed manifest: its byte-exact layout, parsing and building.
//!
//! A manifest describes one firmware image: who may run it (hardware id), what it is (version,
//! security counter, size, SHA-256) and how it is cut into chunks (chunk size and one truncated
//! SHA-256 per chunk). It is signed with Ed25519 over every byte before the signature. The layout
//! is specified in `docs/image-format.md`; this module is its reference implementation.
//!
//! Parsing ([`Manifest::parse`]) checks structure only. Use [`crate::verify()`] to check the
//! signature and the device policy before trusting any field.

use core::fmt;

use sha2::{Digest as _, Sha256};

/// The four bytes every manifest starts with: `OTAM`.
pub const MAGIC: [u8; 4] = *b"OTAM";
/// The manifest format version this crate reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the fixed header, before the chunk digest table.
pub const HEADER_LEN: usize = 120;
/// Size of one entry of the chunk digest table (SHA-256 truncated to 128 bits).
pub const CHUNK_DIGEST_LEN: usize = 16;
/// Size of the Ed25519 signature that ends a manifest.
pub const SIGNATURE_LEN: usize = 64;
/// Smallest chunk size a manifest may declare.
pub const MIN_CHUNK_SIZE: u32 = 256;
/// Largest chunk size a manifest may declare.
pub const MAX_CHUNK_SIZE: u32 = 65536;
/// Flag bit: the base-image digest field is meaningful (reserved for delta updates).
pub const FLAG_BASE_DIGEST: u8 = 0x01;

/// Total encoded length of a manifest describing `chunk_count` chunks.
pub const fn encoded_len(chunk_count: u32) -> usize {
    HEADER_LEN + chunk_count as usize * CHUNK_DIGEST_LEN + SIGNATURE_LEN
}

/// Number of chunks an image of `image_size` bytes has with chunks of `chunk_size` bytes.
pub const fn chunk_count(image_size: u32, chunk_size: u32) -> u32 {
    image_size.div_ceil(chunk_size)
}

/// A firmware version, ordered as semver's `major.minor.patch` (no pre-release part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Version {
    /// Incompatible changes.
    pub major: u16,
    /// Compatible features.
    pub minor: u16,
    /// Fixes.
    pub patch: u16,
}

impl Version {
    /// A version from its three parts.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The monotonic anti-rollback counter carried by an image, separate from its [`Version`].
///
/// A device refuses an image whose counter is below the one it has stored; the stored counter
/// rises only when an image is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SecurityCounter(pub u32);

/// A 16-byte hardware/product identifier. An image runs only where this matches exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HardwareId(pub [u8; 16]);

impl HardwareId {
    /// The identifier made of an ASCII/UTF-8 name of at most 16 bytes, padded with zero bytes
    /// (`"particle-electron"` is too long; `"electron-u260"` fits). `None` if the name is longer.
    pub const fn from_name(name: &str) -> Option<Self> {
        let b = name.as_bytes();
        if b.len() > 16 {
            return None;
        }
        let mut id = [0u8; 16];
        let mut i = 0;
        while i < b.len() {
            id[i] = b[i];
            i += 1;
        }
        Some(Self(id))
    }
}

/// Identifies a signing key: the first 8 bytes of SHA-256 of its 32-byte Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of a 32-byte Ed25519 public key.
    pub fn of(public_key: &[u8; 32]) -> Self {
        let d = Sha256::digest(public_key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Sha256Digest {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Index of a chunk within an image (chunk `i` covers bytes `i*chunk_size ..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChunkIndex(pub u32);

/// The digest of one chunk as stored in the manifest: SHA-256 of the chunk's bytes, first 16 bytes.
pub fn chunk_digest(chunk: &[u8]) -> [u8; CHUNK_DIGEST_LEN] {
    let d = Sha256::digest(chunk);
    let mut out = [0u8; CHUNK_DIGEST_LEN];
    out.copy_from_slice(&d[..CHUNK_DIGEST_LEN]);
    out
}

/// Every field of the fixed 120-byte header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ManifestHeader {
    /// Which trusted key signed the manifest.
    pub key_id: KeyId,
    /// The hardware the image is built for.
    pub hardware_id: HardwareId,
    /// The image's version (informational; anti-rollback uses `security_counter`).
    pub version: Version,
    /// The image's anti-rollback counter.
    pub security_counter: SecurityCounter,
    /// Image size in bytes (at least 1).
    pub image_size: u32,
    /// Chunk size in bytes: a power of two from [`MIN_CHUNK_SIZE`] to [`MAX_CHUNK_SIZE`].
    pub chunk_size: u32,
    /// SHA-256 of the whole image.
    pub image_digest: Sha256Digest,
    /// For a delta update, the SHA-256 of the image the delta applies to. Reserved: this crate
    /// rejects nothing based on it yet, but it is signed and reported. `Some` of the all-zero
    /// digest is invalid ([`ParseError::ZeroBaseDigest`]): it would name no image.
    pub base_digest: Option<Sha256Digest>,
}

impl ManifestHeader {
    /// Number of chunks the image is cut into.
    pub const fn chunk_count(&self) -> u32 {
        chunk_count(self.image_size, self.chunk_size)
    }

    /// Total length of a manifest with this header.
    pub const fn encoded_len(&self) -> usize {
        encoded_len(self.chunk_count())
    }

    /// Length in bytes of chunk `index` (the last chunk may be shorter), `None` past the end.
    pub const fn chunk_len(&self, index: ChunkIndex) -> Option<u32> {
        if index.0 >= self.chunk_count() {
            return None;
        }
        let start = index.0 as u64 * self.chunk_size as u64;
        let rest = self.image_size as u64 - start;
        Some(if rest < self.chunk_size as u64 {
            rest as u32
        } else {
            self.chunk_size
        })
    }

    /// Checks the header's own consistency: chunk size rules, non-empty image, and a base
    /// digest, when present, that is not all zero.
    pub fn validate(&self) -> Result<(), ParseError> {
        if !self.chunk_size.is_power_of_two()
            || self.chunk_size < MIN_CHUNK_SIZE
            || self.chunk_size > MAX_CHUNK_SIZE
        {
            return Err(ParseError::BadChunkSize);
        }
        if self.image_size == 0 {
            return Err(ParseError::EmptyImage);
        }
        if self.base_digest == Some(Sha256Digest([0; 32])) {
            return Err(ParseError::ZeroBaseDigest);
        }
        Ok(())
    }

    /// Writes the 120-byte header.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out.fill(0);
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = if self.base_digest.is_some() {
            FLAG_BASE_DIGEST
        } else {
            0
        };
        // 6..8 reserved, zero
        out[8..16].copy_from_slice(&self.key_id.0);
        out[16..32].copy_from_slice(&self.hardware_id.0);
        out[32..34].copy_from_slice(&self.version.major.to_le_bytes());
        out[34..36].copy_from_slice(&self.version.minor.to_le_bytes());
        out[36..38].copy_from_slice(&self.version.patch.to_le_bytes());
        // 38..40 reserved, zero
        out[40..44].copy_from_slice(&self.security_counter.0.to_le_bytes());
        out[44..48].copy_from_slice(&self.image_size.to_le_bytes());
        out[48..52].copy_from_slice(&self.chunk_size.to_le_bytes());
        out[52..56].copy_from_slice(&self.chunk_count().to_le_bytes());
        out[56..88].copy_from_slice(&self.image_digest.0);
        if let Some(b) = self.base_digest {
            out[88..120].copy_from_slice(&b.0);
        }
    }

    /// Decodes and validates the 120-byte header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ParseError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(ParseError::Truncated)?;
        if h[0..4] != MAGIC {
            return Err(ParseError::BadMagic);
        }
        if h[4] != FORMAT_VERSION {
            return Err(ParseError::UnsupportedVersion(h[4]));
        }
        let flags = h[5];
        if flags & !FLAG_BASE_DIGEST != 0 || h[6] != 0 || h[7] != 0 || h[38] != 0 || h[39] != 0 {
            return Err(ParseError::ReservedBitsSet);
        }
        let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let arr32 = |o: usize| {
            let mut a = [0u8; 32];
            a.copy_from_slice(&h[o..o + 32]);
            a
        };
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&h[8..16]);
        let mut hw = [0u8; 16];
        hw.copy_from_slice(&h[16..32]);
        let base = arr32(88);
        let base_digest = if flags & FLAG_BASE_DIGEST != 0 {
            Some(Sha256Digest(base))
        } else {
            if base != [0u8; 32] {
                return Err(ParseError::ReservedBitsSet);
            }
            None
        };
        let header = ManifestHeader {
            key_id: KeyId(key_id),
            hardware_id: HardwareId(hw),
            version: Version::new(u16_at(32), u16_at(34), u16_at(36)),
            security_counter: SecurityCounter(u32_at(40)),
            image_size: u32_at(44),
            chunk_size: u32_at(48),
            image_digest: Sha256Digest(arr32(56)),
            base_digest,
        };
        header.validate()?;
        if u32_at(52) != header.chunk_count() {
            return Err(ParseError::ChunkCountMismatch);
        }
        Ok(header)
    }
}

/// Why bytes are not a well-formed manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than the header, or than the length the header implies.
    Truncated,
    /// More bytes than the length the header implies.
    TrailingBytes,
    /// The first four bytes are not `OTAM`.
    BadMagic,
    /// A format version this crate does not read.
    UnsupportedVersion(u8),
    /// A reserved field or flag is not zero.
    ReservedBitsSet,
    /// Chunk size is not a power of two within bounds.
    BadChunkSize,
    /// Image size is zero.
    EmptyImage,
    /// Flag bit 0 (base digest present) is set but the base digest is all zero.
    ZeroBaseDigest,
    /// The stored chunk count does not match image and chunk size.
    ChunkCountMismatch,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("manifest is truncated"),
            Self::TrailingBytes => f.write_str("bytes follow the manifest signature"),
            Self::BadMagic => f.write_str("not a manifest (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported manifest format version {v}"),
            Self::ReservedBitsSet => f.write_str("a reserved manifest field is not zero"),
            Self::BadChunkSize => f.write_str("chunk size is not a power of two in 256..=65536"),
            Self::EmptyImage => f.write_str("image size is zero"),
            Self::ZeroBaseDigest => {
                f.write_str("base digest flag set but the base digest is all zero")
            }
            Self::ChunkCountMismatch => f.write_str("chunk count does not match the image size"),
        }
    }
}

impl core::error::Error for ParseError {}

/// A structurally valid manifest borrowed from a byte buffer. Not yet authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest<'a> {
    header: ManifestHeader,
    bytes: &'a [u8],
}

impl<'a> Manifest<'a> {
    /// Parses `bytes`, which must hold exactly one manifest. Never panics; O(1).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let header = ManifestHeader::decode(bytes)?;
        let want = header.encoded_len();
        if bytes.len() < want {
            return Err(ParseError::Truncated);
        }
        if bytes.len() > want {
            return Err(ParseError::TrailingBytes);
        }
        Ok(Self { header, bytes })
    }

    /// The decoded header.
    pub fn header(&self) -> &ManifestHeader {
        &self.header
    }

    /// All bytes of the manifest, signature included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The bytes covered by the signature: everything but the last 64.
    pub fn signed_bytes(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE_LEN]
    }

    /// The Ed25519 signature.
    pub fn signature(&self) -> &'a [u8; SIGNATURE_LEN] {
        let s = &self.bytes[self.bytes.len() - SIGNATURE_LEN..];
        // The length was checked in `parse`.
        s.try_into().unwrap_or(&[0; SIGNATURE_LEN])
    }

    /// Expected digest of chunk `index`, `None` past the last chunk.
    pub fn chunk_digest(&self, index: ChunkIndex) -> Option<[u8; CHUNK_DIGEST_LEN]> {
        if index.0 >= self.header.chunk_count() {
            return None;
        }
        let o = HEADER_LEN + index.0 as usize * CHUNK_DIGEST_LEN;
        let mut d = [0u8; CHUNK_DIGEST_LEN];
        d.copy_from_slice(self.bytes.get(o..o + CHUNK_DIGEST_LEN)?);
        Some(d)
    }

    /// SHA-256 of the whole manifest: the identity under which download progress is kept.
    pub fn digest(&self) -> Sha256Digest {
        Sha256Digest::of(self.bytes)
    }
}

/// What [`build_signed`] needs besides the image and the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageParams {
    /// Target hardware.
    pub hardware_id: HardwareId,
    /// Image version.
    pub version: Version,
    /// Anti-rollback counter.
    pub security_counter: SecurityCounter,
    /// Chunk size (power of two, 256..=65536).
    pub chunk_size: u32,
    /// Base image digest for a delta update (reserved); not all zero.
    pub base_digest: Option<Sha256Digest>,
}

impl ImageParams {
    /// Checks the parameters for an image of `image_len` bytes and returns the length of its
    /// manifest, so a caller can size the buffer for [`build_signed`]. O(1).
    pub fn manifest_len(&self, image_len: usize) -> Result<usize, BuildError> {
        let image_size = u32::try_from(image_len).map_err(|_| BuildError::ImageTooLarge)?;
        self.header(image_size, Sha256Digest::default())
            .validate()
            .map_err(BuildError::Invalid)?;
        Ok(encoded_len(chunk_count(image_size, self.chunk_size)))
    }

    fn header(&self, image_size: u32, image_digest: Sha256Digest) -> ManifestHeader {
        ManifestHeader {
            key_id: KeyId::default(),
            hardware_id: self.hardware_id,
            version: self.version,
            security_counter: self.security_counter,
            image_size,
            chunk_size: self.chunk_size,
            image_digest,
            base_digest: self.base_digest,
        }
    }
}

/// Why a manifest could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BuildError {
    /// The parameters break a format rule (chunk size, empty image).
    Invalid(ParseError),
    /// The image is larger than 4 GiB.
    ImageTooLarge,
    /// `out` is shorter than [`encoded_len`]; holds the length needed.
    BufferTooSmall(usize),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(_) => f.write_str("invalid image parameters"),
            Self::ImageTooLarge => f.write_str("image is larger than 4 GiB"),
            Self::BufferTooSmall(n) => write!(f, "output buffer too small, {n} bytes needed"),
        }
    }
}

impl core::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

/// Builds and signs the manifest of `image` into `out`, returning its length.
///
/// This is what `ota-tool sign` does; it is `no_std` so a test or a factory fixture can use it.
/// Cost: one SHA-256 pass over the image plus one per chunk, one Ed25519 signature.
pub fn build_signed(
    params: &ImageParams,
    image: &[u8],
    key: &ed25519_compact::KeyPair,
    out: &mut [u8],
) -> Result<usize, BuildError> {
    // Validate before hashing: bad parameters cost nothing.
    let len = params.manifest_len(image.len())?;
    let out = out.get_mut(..len).ok_or(BuildError::BufferTooSmall(len))?;
    let header = ManifestHeader {
        key_id: KeyId::of(&key.pk),
        ..params.header(image.len() as u32, Sha256Digest::of(image))
    };
    let mut h = [0u8; HEADER_LEN];
    header.encode(&mut h);
    out[..HEADER_LEN].copy_from_slice(&h);
    for (i, chunk) in image.chunks(params.chunk_size as usize).enumerate() {
        let o = HEADER_LEN + i * CHUNK_DIGEST_LEN;
        out[o..o + CHUNK_DIGEST_LEN].copy_from_slice(&chunk_digest(chunk));
    }
    let signed = len - SIGNATURE_LEN;
    // Deterministic signature (no noise): the same inputs give the same manifest bytes.
    let sig = key.sk.sign(&out[..signed], None);
    out[signed..].copy_from_slice(sig.as_ref());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ManifestHeader {
        ManifestHeader {
            key_id: KeyId([1; 8]),
            hardware_id: HardwareId::from_name("electron").unwrap(),
            version: Version::new(1, 2, 3),
            security_counter: SecurityCounter(7),
            image_size: 1000,
            chunk_size: 256,
            image_digest: Sha256Digest([9; 32]),
            base_digest: None,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        let mut b = [0u8; HEADER_LEN];
        h.encode(&mut b);
        assert_eq!(ManifestHeader::decode(&b), Ok(h));
        let h2 = ManifestHeader {
            base_digest: Some(Sha256Digest([3; 32])),
            ..h
        };
        h2.encode(&mut b);
        assert_eq!(ManifestHeader::decode(&b), Ok(h2));
    }

    #[test]
    fn chunk_lengths() {
        let h = header();
        assert_eq!(h.chunk_count(), 4);
        assert_eq!(h.chunk_len(ChunkIndex(0)), Some(256));
        assert_eq!(h.chunk_len(ChunkIndex(3)), Some(1000 - 768));
        assert_eq!(h.chunk_len(ChunkIndex(4)), None);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut b = [0u8; HEADER_LEN];
        header().encode(&mut b);
        let cases: [(usize, u8, ParseError); 6] = [
            (0, b'X', ParseError::BadMagic),
            (4, 2, ParseError::UnsupportedVersion(2)),
            (5, 0x02, ParseError::ReservedBitsSet),
            (39, 1, ParseError::ReservedBitsSet),
            (52, 5, ParseError::ChunkCountMismatch),
            (100, 1, ParseError::ReservedBitsSet),
        ];
        for (at, v, err) in cases {
            let mut c = b;
            c[at] = v;
            assert_eq!(ManifestHeader::decode(&c), Err(err), "byte {at}");
        }
        let mut c = b;
        c[48..52].copy_from_slice(&300u32.to_le_bytes());
        assert_eq!(ManifestHeader::decode(&c), Err(ParseError::BadChunkSize));
        let mut c = b;
        c[44..48].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(ManifestHeader::decode(&c), Err(ParseError::EmptyImage));
        let mut c = b;
        c[5] = FLAG_BASE_DIGEST;
        assert_eq!(ManifestHeader::decode(&c), Err(ParseError::ZeroBaseDigest));
        assert_eq!(
            ManifestHeader::decode(&b[..HEADER_LEN - 1]),
            Err(ParseError::Truncated)
        );
    }

    #[test]
    fn hardware_id_from_name() {
        assert!(HardwareId::from_name("0123456789abcdef").is_some());
        assert!(HardwareId::from_name("0123456789abcdefg").is_none());
        assert_eq!(HardwareId::from_name("ab").unwrap().0[..3], [b'a', b'b', 0]);
    }
}
