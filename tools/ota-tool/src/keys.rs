//! Ed25519 key files in the PEM forms OpenSSL reads and writes.
//!
//! * Private key: PKCS#8 v1 (`-----BEGIN PRIVATE KEY-----`), the DER
//!   `302e020100300506032b657004220420 || 32-byte seed`, as `openssl genpkey -algorithm ed25519`
//!   writes it.
//! * Public key: SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), the DER
//!   `302a300506032b6570032100 || 32-byte key`, as `openssl pkey -pubout` writes it.
//!
//! Both DER forms are 48 and 44 bytes, so their base64 fits one 64-character PEM line, and the
//! files written here are byte for byte what OpenSSL writes for the same key. Encoding and
//! decoding use `ed25519-compact`'s `pem` feature.

use core::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use ed25519_compact::{KeyPair, PublicKey};
use ota_core::KeyId;
use ota_core::TrustedKey;

/// Why PEM text is not the key that was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemError {
    /// A private key was expected and the text holds a public key.
    PublicNotPrivate,
    /// A public key was expected and the text holds a private key.
    PrivateNotPublic,
    /// An encrypted (password-protected) private key; not supported.
    Encrypted,
    /// No `PRIVATE KEY` block holding an unencrypted Ed25519 PKCS#8 v1 key.
    NotPrivateKey,
    /// No `PUBLIC KEY` block holding an Ed25519 SubjectPublicKeyInfo.
    NotPublicKey,
    /// The public key is not a valid Ed25519 point (non-canonical or of small order).
    WeakPublicKey,
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PublicNotPrivate => "this is a public key; a private key is needed here",
            Self::PrivateNotPublic => {
                "this is a private key; give its public key (openssl pkey -in KEY -pubout)"
            }
            Self::Encrypted => "encrypted private keys are not supported",
            Self::NotPrivateKey => {
                "not an Ed25519 private key (PEM \"BEGIN PRIVATE KEY\", PKCS#8 v1)"
            }
            Self::NotPublicKey => "not an Ed25519 public key (PEM \"BEGIN PUBLIC KEY\")",
            Self::WeakPublicKey => "not a valid Ed25519 public key (small order or non-canonical)",
        })
    }
}

impl std::error::Error for PemError {}

const PRIVATE_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PUBLIC_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

/// Reads an Ed25519 private key (and derives its public key) from PKCS#8 PEM.
pub fn private_key_from_pem(pem: &str) -> Result<KeyPair, PemError> {
    if !pem.contains(PRIVATE_BEGIN) {
        return Err(if pem.contains(ENCRYPTED_BEGIN) {
            PemError::Encrypted
        } else if pem.contains(PUBLIC_BEGIN) {
            PemError::PublicNotPrivate
        } else {
            PemError::NotPrivateKey
        });
    }
    KeyPair::from_pem(pem).map_err(|_| PemError::NotPrivateKey)
}

/// Reads an Ed25519 public key from SubjectPublicKeyInfo PEM, refusing keys that are not valid
/// points.
pub fn public_key_from_pem(pem: &str) -> Result<PublicKey, PemError> {
    if !pem.contains(PUBLIC_BEGIN) {
        return Err(
            if pem.contains(PRIVATE_BEGIN) || pem.contains(ENCRYPTED_BEGIN) {
                PemError::PrivateNotPublic
            } else {
                PemError::NotPublicKey
            },
        );
    }
    let pk = PublicKey::from_pem(pem).map_err(|_| PemError::NotPublicKey)?;
    pk.validate().map_err(|_| PemError::WeakPublicKey)?;
    Ok(pk)
}

/// The private key as PKCS#8 PEM (the private key only, as OpenSSL writes it).
pub fn private_key_to_pem(key: &KeyPair) -> String {
    key.sk.to_pem()
}

/// The public key as SubjectPublicKeyInfo PEM.
pub fn public_key_to_pem(key: &PublicKey) -> String {
    key.to_pem()
}

/// A new key pair from the operating system's random generator.
pub fn generate() -> KeyPair {
    KeyPair::generate()
}

/// The id manifests signed by `key` carry.
pub fn key_id(key: &PublicKey) -> KeyId {
    KeyId::of(key)
}

/// The key as ota-core's verifier takes it.
pub fn trusted(key: &PublicKey) -> TrustedKey {
    TrustedKey::new(**key)
}

/// What went wrong with a key file.
#[derive(Debug)]
pub enum KeyFileErrorKind {
    /// Reading or writing failed.
    Io(io::Error),
    /// The file exists and overwriting was not asked for.
    Exists,
    /// The file is not valid UTF-8 text.
    NotText,
    /// The content is not the expected key.
    Pem(PemError),
}

/// A key file could not be read or written.
#[derive(Debug)]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: KeyFileErrorKind,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            KeyFileErrorKind::Io(e) => write!(f, "{p}: {e}"),
            KeyFileErrorKind::Exists => write!(f, "{p} exists (use --force to overwrite)"),
            KeyFileErrorKind::NotText => write!(f, "{p}: not a PEM text file"),
            KeyFileErrorKind::Pem(e) => write!(f, "{p}: {e}"),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            KeyFileErrorKind::Io(e) => Some(e),
            KeyFileErrorKind::Pem(e) => Some(e),
            _ => None,
        }
    }
}

fn file_error(path: &Path, kind: KeyFileErrorKind) -> KeyFileError {
    KeyFileError {
        path: path.to_owned(),
        kind,
    }
}

fn read_pem(path: &Path) -> Result<String, KeyFileError> {
    let bytes = fs::read(path).map_err(|e| file_error(path, KeyFileErrorKind::Io(e)))?;
    String::from_utf8(bytes).map_err(|_| file_error(path, KeyFileErrorKind::NotText))
}

/// Reads a PKCS#8 PEM private key file.
pub fn read_private_key(path: &Path) -> Result<KeyPair, KeyFileError> {
    private_key_from_pem(&read_pem(path)?).map_err(|e| file_error(path, KeyFileErrorKind::Pem(e)))
}

/// Reads a SubjectPublicKeyInfo PEM public key file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    public_key_from_pem(&read_pem(path)?).map_err(|e| file_error(path, KeyFileErrorKind::Pem(e)))
}

/// Creates `path` holding `text`, readable by its owner only when `private` (mode 0600 on
/// Unix, set when the file is created, so the key is never readable by others). An existing
/// file is an error unless `overwrite`, in which case it is removed first (so its old mode
/// does not carry over).
fn write_new(path: &Path, text: &str, private: bool, overwrite: bool) -> Result<(), KeyFileError> {
    let io_err = |e| file_error(path, KeyFileErrorKind::Io(e));
    if overwrite {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
            _ => {}
        }
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            file_error(path, KeyFileErrorKind::Exists)
        } else {
            io_err(e)
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err)
}

/// Writes the private key as PKCS#8 PEM with mode 0600 (Unix).
pub fn write_private_key(path: &Path, key: &KeyPair, overwrite: bool) -> Result<(), KeyFileError> {
    write_new(path, &private_key_to_pem(key), true, overwrite)
}

/// Writes the public key as SubjectPublicKeyInfo PEM.
pub fn write_public_key(path: &Path, key: &PublicKey, overwrite: bool) -> Result<(), KeyFileError> {
    write_new(path, &public_key_to_pem(key), false, overwrite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_compact::Seed;

    // RFC 8032 test 1 key, and its PEM forms as OpenSSL 3 writes them
    // (`openssl pkey -inform DER` of the DER prefixes + key).
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SK_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
        -----END PRIVATE KEY-----\n";
    const PK_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n\
        -----END PUBLIC KEY-----\n";

    fn rfc_key() -> KeyPair {
        let mut s = [0u8; 32];
        hex::decode_to_slice(SEED, &mut s).unwrap();
        KeyPair::from_seed(Seed::new(s))
    }

    #[test]
    fn pem_matches_openssl_form() {
        let kp = rfc_key();
        assert_eq!(hex::encode(*kp.pk), PUBLIC);
        assert_eq!(private_key_to_pem(&kp), SK_PEM);
        assert_eq!(public_key_to_pem(&kp.pk), PK_PEM);
        assert_eq!(private_key_from_pem(SK_PEM).unwrap().pk, kp.pk);
        assert_eq!(public_key_from_pem(PK_PEM).unwrap(), kp.pk);
        // CRLF line ends are accepted too.
        assert_eq!(
            public_key_from_pem(&PK_PEM.replace('\n', "\r\n")).unwrap(),
            kp.pk
        );
    }

    #[test]
    fn pem_der_prefixes() {
        use ed25519_compact::reexports::ct_codecs::{Base64, Decoder as _};
        let body = |pem: &str| {
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            Base64::decode_to_vec(b64, None).unwrap()
        };
        let kp = rfc_key();
        let sk_der = body(&private_key_to_pem(&kp));
        assert_eq!(
            hex::encode(&sk_der[..16]),
            "302e020100300506032b657004220420"
        );
        assert_eq!(hex::encode(&sk_der[16..]), SEED);
        let pk_der = body(&public_key_to_pem(&kp.pk));
        assert_eq!(hex::encode(&pk_der[..12]), "302a300506032b6570032100");
        assert_eq!(hex::encode(&pk_der[12..]), PUBLIC);
    }

    #[test]
    fn pem_mixups_are_named() {
        assert_eq!(
            private_key_from_pem(PK_PEM),
            Err(PemError::PublicNotPrivate)
        );
        assert_eq!(public_key_from_pem(SK_PEM), Err(PemError::PrivateNotPublic));
        assert_eq!(
            private_key_from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"),
            Err(PemError::Encrypted)
        );
        assert_eq!(private_key_from_pem("hello"), Err(PemError::NotPrivateKey));
        assert_eq!(public_key_from_pem(""), Err(PemError::NotPublicKey));
        // An X25519 key (OID 1.3.101.110) is not an Ed25519 key.
        let x25519 = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VuBCIEIDh9sYQUi6bsE4+FzTMYeh4I5ds0Muj7yI2YdN3RQvl4\n\
            -----END PRIVATE KEY-----\n";
        assert_eq!(private_key_from_pem(x25519), Err(PemError::NotPrivateKey));
        let truncated = SK_PEM.replace("MC4CAQAw", "MC4C");
        assert_eq!(
            private_key_from_pem(&truncated),
            Err(PemError::NotPrivateKey)
        );
    }

    #[test]
    fn weak_public_key_refused() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let pem = PublicKey::new(identity).to_pem();
        assert_eq!(public_key_from_pem(&pem), Err(PemError::WeakPublicKey));
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let sk = dir.path().join("k.pem");
        let pk = dir.path().join("k.pub.pem");
        let kp = rfc_key();
        write_private_key(&sk, &kp, false).unwrap();
        write_public_key(&pk, &kp.pk, false).unwrap();
        assert_eq!(read_private_key(&sk).unwrap().pk, kp.pk);
        assert_eq!(read_public_key(&pk).unwrap(), kp.pk);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&sk), 0o600);
            // Overwriting a world-readable file still leaves a 0600 key.
            fs::set_permissions(&sk, fs::Permissions::from_mode(0o644)).unwrap();
            write_private_key(&sk, &generate(), true).unwrap();
            assert_eq!(mode(&sk), 0o600);
        }
        let e = write_private_key(&sk, &kp, false).unwrap_err();
        assert!(matches!(e.kind, KeyFileErrorKind::Exists), "{e}");
        assert_ne!(read_private_key(&sk).unwrap().pk, kp.pk);
        let e = read_private_key(&pk).unwrap_err();
        assert!(e.to_string().contains("this is a public key"), "{e}");
        let e = read_public_key(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e.kind, KeyFileErrorKind::Io(_)), "{e}");
        fs::write(&pk, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_public_key(&pk).unwrap_err().kind,
            KeyFileErrorKind::NotText
        ));
    }

    #[test]
    fn ids() {
        let kp = rfc_key();
        assert_eq!(key_id(&kp.pk), KeyId::of(&kp.pk));
        assert_eq!(trusted(&kp.pk).id(), key_id(&kp.pk));
        assert_ne!(generate().pk, generate().pk);
    }
}
