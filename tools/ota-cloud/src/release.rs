//! Releases: uploading an `ota-tool sign` container (verified with the device's own rule before
//! it is stored) and reading a stored one back as the manifest and image the server serves.

use std::fmt;
use std::path::{Path, PathBuf};

use cloud_proto::FirmwareVersion;
use ota_core::{HardwareId, TrustedKey};
use ota_tool::{check_container, CheckError, Container, ContainerError};

use crate::store::{ProductId, Release, ReleaseBody, ReleaseDigest, Store, StoreError};

/// Why [`upload_release`] refused a container. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadError {
    /// No such product.
    UnknownProduct(ProductId),
    /// The product has no trusted release key yet (`ota-cloud product add --release-key`).
    NoReleaseKeys,
    /// A stored release key is not an Ed25519 SPKI PEM (the message says which).
    BadReleaseKey(String),
    /// The bytes are not a well-formed container.
    Container(ContainerError),
    /// The container does not verify against the product's keys and hardware id, as a device
    /// would judge it (ota-core's verifier; the manifest, then every chunk and the image).
    Verify(CheckError),
    /// The same container is stored already (same digest).
    AlreadyExists(ReleaseDigest),
    /// Writing the container file failed.
    Io(String),
    /// The store failed.
    Store(StoreError),
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownProduct(p) => write!(f, "unknown product {}", p.0),
            Self::NoReleaseKeys => f.write_str(
                "the product has no trusted release key: add one first (product add --release-key)",
            ),
            Self::BadReleaseKey(why) => write!(f, "a stored release key is unusable: {why}"),
            Self::Container(e) => write!(f, "not a valid update container: {e}"),
            Self::Verify(e) => write!(f, "container refused: {e}"),
            Self::AlreadyExists(d) => write!(f, "release {d:?} is stored already"),
            Self::Io(e) => write!(f, "writing the release file failed: {e}"),
            Self::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for UploadError {}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownProduct(p) => Self::UnknownProduct(p),
            e => Self::Store(e),
        }
    }
}

/// The hex form of a digest, as file names and the CLI show it.
pub fn digest_hex(d: &ReleaseDigest) -> String {
    hex::encode(d.0)
}

/// Verifies `container` (the bytes `ota-tool sign` wrote) for `product` and stores it: the
/// manifest must verify under one of the product's trusted release keys and name its hardware
/// id, the image must match every chunk digest and the image digest (`ota_tool::check_container`
/// over `ota_core::authenticate`: the rule a device applies, so server and device cannot
/// disagree). The container is written to `dir/<sha256 hex>.ota` (atomically: a temporary file
/// renamed) and recorded as [`ReleaseBody::File`]. Returns the stored release.
///
/// Errors: [`UploadError`]; nothing is stored on error (a file written before a failing store
/// call is removed). Cost: one Ed25519 verification, SHA-256 over the image twice, one file
/// write and fsync, one store transaction.
pub async fn upload_release<S: Store>(
    store: &S,
    product: ProductId,
    container: &[u8],
    dir: &Path,
    now_ms: u64,
) -> Result<Release, UploadError> {
    let p = store
        .product(product)
        .await?
        .ok_or(UploadError::UnknownProduct(product))?;
    if p.release_keys.is_empty() {
        return Err(UploadError::NoReleaseKeys);
    }
    let keys = p
        .release_keys
        .iter()
        .map(|pem| {
            ota_tool::keys::public_key_from_pem(pem)
                .map(|k| TrustedKey::new(*k))
                .map_err(|e| UploadError::BadReleaseKey(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let c = Container::decode(container).map_err(UploadError::Container)?;
    let header = check_container(&c, &keys, Some(HardwareId(p.hardware_id)), None)
        .map_err(UploadError::Verify)?;
    let digest = ReleaseDigest::of(container);
    if store.release(digest).await?.is_some() {
        return Err(UploadError::AlreadyExists(digest));
    }
    let path = write_file(dir, &digest, container).map_err(|e| UploadError::Io(e.to_string()))?;
    let release = Release {
        digest,
        product,
        version: FirmwareVersion {
            major: header.version.major,
            minor: header.version.minor,
            patch: header.version.patch,
        },
        security_counter: header.security_counter.0,
        hardware_id: header.hardware_id.0,
        size: container.len() as u64,
        body: ReleaseBody::File(path.clone()),
        created_ms: now_ms,
    };
    match store.put_release(release.clone()).await {
        Ok(_id) => Ok(release),
        Err(StoreError::AlreadyExists) => Err(UploadError::AlreadyExists(digest)),
        Err(e) => {
            // Content-addressed: another upload of the same bytes may own the file; it is
            // only removed when no release names it.
            if !matches!(store.release(digest).await, Ok(Some(_))) {
                let _ = std::fs::remove_file(&path);
            }
            Err(e.into())
        }
    }
}

fn write_file(dir: &Path, digest: &ReleaseDigest, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let name = digest_hex(digest);
    let path = dir.join(format!("{name}.ota"));
    let tmp = dir.join(format!("{name}.ota.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// A stored release as the server serves it: the signed manifest (offered inline or fetched as
/// `Object::Manifest` chunks) and the image (`Object::Image` chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The signed manifest.
    pub manifest: Vec<u8>,
    /// The firmware image.
    pub image: Vec<u8>,
}

/// Why a stored release could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// Its file could not be read (message: the path and the OS error).
    Io(String),
    /// The stored bytes are no longer a container, or not the ones the digest names.
    Corrupt(ReleaseDigest),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "release file unreadable: {e}"),
            Self::Corrupt(d) => write!(f, "release {d:?}: stored bytes do not match its digest"),
        }
    }
}

impl std::error::Error for PayloadError {}

impl Payload {
    /// Reads `release`'s container (from the database or its file), checks it against the
    /// digest and splits it. Cost: reads the container and one SHA-256 over it.
    pub async fn load(release: &Release) -> Result<Self, PayloadError> {
        let bytes = match &release.body {
            ReleaseBody::Inline(b) => b.clone(),
            ReleaseBody::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| PayloadError::Io(format!("{}: {e}", p.display())))?,
        };
        if ReleaseDigest::of(&bytes) != release.digest {
            return Err(PayloadError::Corrupt(release.digest));
        }
        let c = Container::decode(&bytes).map_err(|_| PayloadError::Corrupt(release.digest))?;
        Ok(Self {
            manifest: c.manifest,
            image: c.image,
        })
    }
}
