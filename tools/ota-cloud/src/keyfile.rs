//! The device key file `ota-cloud device add` writes, which the firmware build and the
//! simulator read: the device's cloud-proto id and its 32-byte root key.
//!
//! Format (UTF-8 text, mode 0600, lines end with `\n`; `#` lines are comments):
//!
//! ```text
//! # ota-cloud device key: secret, do not commit
//! device_id = 7
//! root_key = 000102…1f          (64 lowercase hex digits)
//! ```
//!
//! A reader ignores comment and empty lines and refuses a file missing either key, naming
//! another key, or holding either twice. The firmware derives its `cloud_proto::Keys` with
//! `Keys::derive(&root_key)`.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use cloud_proto::DeviceId;

use crate::seal::RootKey;

/// A device's identity as the key file holds it.
pub struct DeviceKeyFile {
    /// The cloud-proto device id.
    pub device: DeviceId,
    /// Its root key (secret: never log it).
    pub root_key: RootKey,
}

impl fmt::Debug for DeviceKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeyFile")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Why a key file could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The OS error, with the path.
    Io(String),
    /// The file exists already (writing never overwrites a key).
    Exists(String),
    /// The content breaks the format (the message says where).
    Format(String),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "key file: {e}"),
            Self::Exists(p) => write!(f, "key file {p} exists already; not overwritten"),
            Self::Format(e) => write!(f, "key file malformed: {e}"),
        }
    }
}

impl std::error::Error for KeyFileError {}

impl DeviceKeyFile {
    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "# ota-cloud device key: secret, do not commit\ndevice_id = {}\nroot_key = {}\n",
            self.device.0,
            hex::encode(self.root_key.expose())
        )
    }

    /// Parses the file's text. Errors: [`KeyFileError::Format`].
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let bad = |m: String| KeyFileError::Format(m);
        let (mut device, mut key) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("line {}: expected `key = value`", n + 1)))?;
            match k.trim() {
                "device_id" if device.is_none() => {
                    let id = v
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| bad(format!("line {}: device_id is not a u32", n + 1)))?;
                    device = Some(DeviceId(id));
                }
                "root_key" if key.is_none() => {
                    let mut k = [0u8; 32];
                    hex::decode_to_slice(v.trim(), &mut k).map_err(|_| {
                        bad(format!("line {}: root_key is not 64 hex digits", n + 1))
                    })?;
                    key = Some(RootKey::from_bytes(k));
                }
                other => return Err(bad(format!("line {}: unexpected key `{other}`", n + 1))),
            }
        }
        Ok(Self {
            device: device.ok_or_else(|| bad("no device_id".into()))?,
            root_key: key.ok_or_else(|| bad("no root_key".into()))?,
        })
    }

    /// Writes the file at `path`, mode 0600, refusing to overwrite one.
    /// Errors: [`KeyFileError::Exists`], [`KeyFileError::Io`].
    pub fn write(&self, path: &Path) -> Result<(), KeyFileError> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            o.mode(0o600);
        }
        let mut f = o.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.display().to_string()),
            _ => KeyFileError::Io(format!("{}: {e}", path.display())),
        })?;
        f.write_all(self.to_text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| KeyFileError::Io(format!("{}: {e}", path.display())))
    }

    /// Reads the file at `path`. Errors: [`KeyFileError`].
    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyFileError::Io(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let f = DeviceKeyFile {
            device: DeviceId(7),
            root_key: RootKey::from_bytes([0xab; 32]),
        };
        let back = DeviceKeyFile::parse(&f.to_text()).unwrap();
        assert_eq!(back.device, DeviceId(7));
        assert!(back.root_key.ct_eq(&f.root_key));
        assert!(!format!("{f:?}").contains("ab"));
        for bad in [
            "device_id = 7\n",
            "root_key = 00\ndevice_id = 1\n",
            "device_id = 1\ndevice_id = 2\n",
            "colour = red\n",
        ] {
            assert!(DeviceKeyFile::parse(bad).is_err(), "{bad}");
        }
    }
}
