//! Device root keys at rest: [`RootKey`] (the secret, redacted and wiped), [`MasterKey`] (the
//! server's key, in its own file with mode 0600) and the sealed form a database stores.
//!
//! A sealed key is `version (1) ‖ nonce (24) ‖ XChaCha20-Poly1305(root key) (32 + 16)`, 73
//! bytes, with associated data `"ota-cloud/1 root key" ‖ device id (u32 big-endian)`. So a copied
//! database alone gives no key away, and a sealed blob moved to another device's row does not
//! open (the tag binds the device id).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use cloud_proto::DeviceId;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a sealed root key.
pub const SEALED_LEN: usize = 1 + 24 + 32 + 16;
const SEAL_VERSION: u8 = 1;
const AD_LABEL: &[u8] = b"ota-cloud/1 root key";
const CHECK_LABEL: &[u8] = b"ota-cloud/1 master check";
const CHECK_PLAIN: &[u8] = b"master key check";

/// A device's 32-byte root key (cloud-proto derives the frame keys from it). Its `Debug` prints
/// no byte of it, and it is wiped when dropped. Deliberately not `Clone`, `PartialEq` or
/// `Display`: compare with [`RootKey::ct_eq`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RootKey([u8; 32]);

impl RootKey {
    /// Wraps raw key bytes (read from a key file, say).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system.
    ///
    /// Errors: [`SealError::Random`] if the OS has no randomness to give.
    pub fn generate() -> Result<Self, SealError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|_| SealError::Random)?;
        Ok(Self(k))
    }

    /// The key bytes: for [`cloud_proto::Keys::derive`] and for writing the device's key file,
    /// nothing else (never log them).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares two keys in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// Why sealing, opening or a master key file failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The OS random source failed.
    Random,
    /// A sealed key did not open: another master key, another device's blob, or damaged bytes.
    Open,
    /// The master key file is readable or writable by its group or others (mode shown);
    /// `chmod 600` it, and consider the key exposed.
    Permissions {
        /// The file's mode bits.
        mode: u32,
    },
    /// The master key file does not hold exactly 32 bytes.
    BadKeyFile,
    /// The master key file could not be read or created (the I/O error's kind).
    Io(io::ErrorKind),
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random => f.write_str("the OS random source failed"),
            Self::Open => f.write_str(
                "a sealed root key did not open (wrong master key, moved or damaged blob)",
            ),
            Self::Permissions { mode } => write!(
                f,
                "master key file has mode {mode:o}: it must not be accessible by group or others (chmod 600)"
            ),
            Self::BadKeyFile => f.write_str("master key file must hold exactly 32 bytes"),
            Self::Io(k) => write!(f, "master key file: {k}"),
        }
    }
}

impl std::error::Error for SealError {}

/// The server's master key, which seals every device root key. Kept in its own file (mode
/// 0600), never in the database. Wiped when dropped; its `Debug` is redacted.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random master key, not yet saved anywhere (tests; a server uses [`create`]).
    ///
    /// Errors: [`SealError::Random`].
    ///
    /// [`create`]: MasterKey::create
    pub fn generate() -> Result<Self, SealError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|_| SealError::Random)?;
        Ok(Self(k))
    }

    /// Creates a new random master key in a new file at `path`, created with mode 0600 (it is
    /// never readable by others, not even for an instant). Refuses to overwrite an existing file.
    ///
    /// Errors: [`SealError::Io`] (`AlreadyExists` if the file exists), [`SealError::Random`].
    /// Cost: one file creation and an fsync.
    pub fn create(path: &Path) -> Result<Self, SealError> {
        let key = Self::generate()?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| SealError::Io(e.kind()))?;
        f.write_all(&key.0).map_err(|e| SealError::Io(e.kind()))?;
        f.sync_all().map_err(|e| SealError::Io(e.kind()))?;
        Ok(key)
    }

    /// Loads the master key from `path`, refusing a file that its group or others may access.
    ///
    /// Errors: [`SealError::Permissions`], [`SealError::BadKeyFile`], [`SealError::Io`].
    /// Cost: one small file read.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let mode = fs::metadata(path)
            .map_err(|e| SealError::Io(e.kind()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(SealError::Permissions { mode: mode & 0o777 });
        }
        let mut f = fs::File::open(path).map_err(|e| SealError::Io(e.kind()))?;
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(33));
        Read::by_ref(&mut f)
            .take(33)
            .read_to_end(&mut buf)
            .map_err(|e| SealError::Io(e.kind()))?;
        let bytes: [u8; 32] = buf
            .as_slice()
            .try_into()
            .map_err(|_| SealError::BadKeyFile)?;
        Ok(Self(bytes))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// Seals `key` for `device`: a fresh random nonce each time.
    ///
    /// Errors: [`SealError::Random`]. Cost: one XChaCha20-Poly1305 over 32 bytes.
    pub fn seal(&self, device: DeviceId, key: &RootKey) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = associated_data(AD_LABEL, device);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.expose(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)?;
        let mut out = Vec::with_capacity(SEALED_LEN);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// A blob that proves which master key a database was set up with (stored once, checked
    /// at every open so a wrong key file is refused at start, not at the first frame). Sealed
    /// under its own label, so it can never pass for a device's key.
    ///
    /// Errors: [`SealError::Random`].
    pub fn check_blob(&self) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: CHECK_PLAIN,
                    aad: CHECK_LABEL,
                },
            )
            .map_err(|_| SealError::Open)?;
        let mut out = vec![SEAL_VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Whether `blob` was made by [`check_blob`](Self::check_blob) with this key.
    pub fn verifies(&self, blob: &[u8]) -> bool {
        blob.len() > 25
            && blob[0] == SEAL_VERSION
            && self
                .cipher()
                .decrypt(
                    XNonce::from_slice(&blob[1..25]),
                    Payload {
                        msg: &blob[25..],
                        aad: CHECK_LABEL,
                    },
                )
                .is_ok_and(|p| p == CHECK_PLAIN)
    }

    /// Opens a blob [`seal`](Self::seal) made for `device`.
    ///
    /// Errors: [`SealError::Open`] for another master key, another device's blob, or damaged
    /// bytes. Cost: one XChaCha20-Poly1305 over 32 bytes.
    pub fn open(&self, device: DeviceId, sealed: &[u8]) -> Result<RootKey, SealError> {
        if sealed.len() != SEALED_LEN || sealed[0] != SEAL_VERSION {
            return Err(SealError::Open);
        }
        let aad = associated_data(AD_LABEL, device);
        let plain = zeroize::Zeroizing::new(
            self.cipher()
                .decrypt(
                    XNonce::from_slice(&sealed[1..25]),
                    Payload {
                        msg: &sealed[25..],
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::Open)?,
        );
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| SealError::Open)?;
        Ok(RootKey(bytes))
    }
}

fn associated_data(label: &[u8], device: DeviceId) -> Vec<u8> {
    let mut ad = Vec::with_capacity(label.len() + 4);
    ad.extend_from_slice(label);
    ad.extend_from_slice(&device.0.to_be_bytes());
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let m = MasterKey::generate().unwrap();
        let k = RootKey::from_bytes([7; 32]);
        let sealed = m.seal(DeviceId(1), &k).unwrap();
        assert_eq!(sealed.len(), SEALED_LEN);
        assert!(!sealed.windows(32).any(|w| w == k.expose()));
        assert!(m.open(DeviceId(1), &sealed).unwrap().ct_eq(&k));
        assert_eq!(m.open(DeviceId(2), &sealed).unwrap_err(), SealError::Open);
        let other = MasterKey::generate().unwrap();
        assert_eq!(
            other.open(DeviceId(1), &sealed).unwrap_err(),
            SealError::Open
        );
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert_eq!(m.open(DeviceId(1), &bad).unwrap_err(), SealError::Open);
    }

    #[test]
    fn debug_is_redacted() {
        let k = RootKey::from_bytes([0xAB; 32]);
        let s = format!("{k:?} {:?}", MasterKey::generate().unwrap());
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab"),
            "{s}"
        );
    }

    #[test]
    fn key_file_mode_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let m = MasterKey::create(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = MasterKey::load(&p).unwrap();
        assert_eq!(loaded.0, m.0);
        assert_eq!(
            MasterKey::create(&p).unwrap_err(),
            SealError::Io(io::ErrorKind::AlreadyExists)
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            MasterKey::load(&p).unwrap_err(),
            SealError::Permissions { mode: 0o640 }
        );
    }
}
