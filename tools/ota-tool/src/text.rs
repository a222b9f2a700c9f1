//! Text forms of manifest fields, as `ota-tool` reads them from its arguments and prints them.
//!
//! Every printed form parses back to the same value.

use core::fmt;

use ota_core::{HardwareId, KeyId, Sha256Digest, Version};

/// A field given as text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError(String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

fn err(msg: impl Into<String>) -> TextError {
    TextError(msg.into())
}

/// Reads `MAJOR.MINOR.PATCH`, each part a decimal number from 0 to 65535.
pub fn parse_version(s: &str) -> Result<Version, TextError> {
    let bad = || {
        err(format!(
            "version {s:?} is not MAJOR.MINOR.PATCH (numbers 0..=65535)"
        ))
    };
    let mut parts = [0u16; 3];
    let mut it = s.split('.');
    for p in &mut parts {
        let t = it.next().ok_or_else(bad)?;
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        *p = t.parse().map_err(|_| bad())?;
    }
    if it.next().is_some() {
        return Err(bad());
    }
    Ok(Version::new(parts[0], parts[1], parts[2]))
}

/// Reads a hardware id: `0x` followed by 32 hex digits (the 16 bytes), or a name of 1 to 16
/// bytes, padded with zero bytes (`ota_core::HardwareId::from_name`). A name may not start
/// with `0x`.
pub fn parse_hardware_id(s: &str) -> Result<HardwareId, TextError> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let mut id = [0u8; 16];
        hex::decode_to_slice(h, &mut id).map_err(|_| {
            err(format!(
                "hardware id {s:?}: expected 0x followed by exactly 32 hex digits"
            ))
        })?;
        return Ok(HardwareId(id));
    }
    if s.is_empty() {
        return Err(err("hardware id is empty"));
    }
    if s.contains('\0') {
        return Err(err("hardware id name contains a NUL byte"));
    }
    HardwareId::from_name(s).ok_or_else(|| {
        err(format!(
            "hardware id name {s:?} is {} bytes, at most 16 fit (or give 0x + 32 hex digits)",
            s.len()
        ))
    })
}

/// The name a hardware id was made from, if it is one: printable ASCII (space included) of at
/// least one byte, followed only by zero bytes, and not starting with `0x`.
pub fn hardware_id_name(id: &HardwareId) -> Option<&str> {
    let len = id.0.iter().position(|&b| b == 0).unwrap_or(16);
    let (name, pad) = id.0.split_at(len);
    if name.is_empty()
        || pad.iter().any(|&b| b != 0)
        || !name.iter().all(|b| (0x20..=0x7e).contains(b))
        || name.starts_with(b"0x")
        || name.starts_with(b"0X")
    {
        return None;
    }
    core::str::from_utf8(name).ok()
}

/// A hardware id as `0x` followed by 32 lowercase hex digits.
pub fn hardware_id_hex(id: &HardwareId) -> String {
    format!("0x{}", hex::encode(id.0))
}

/// A hardware id as its name if it has one ([`hardware_id_name`]), else as
/// [`hardware_id_hex`]. [`parse_hardware_id`] reads it back.
pub fn format_hardware_id(id: &HardwareId) -> String {
    match hardware_id_name(id) {
        Some(name) => name.to_owned(),
        None => hardware_id_hex(id),
    }
}

/// Reads a SHA-256 digest written as 64 hex digits.
pub fn parse_sha256(s: &str) -> Result<Sha256Digest, TextError> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(s, &mut d)
        .map_err(|_| err(format!("{s:?} is not a SHA-256 digest (64 hex digits)")))?;
    Ok(Sha256Digest(d))
}

/// A key id as 16 lowercase hex digits.
pub fn key_id_hex(id: &KeyId) -> String {
    hex::encode(id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.2.3"), Ok(Version::new(1, 2, 3)));
        assert_eq!(parse_version("65535.0.10"), Ok(Version::new(65535, 0, 10)));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1..3",
            "1.2.",
            "a.b.c",
            "1.2.65536",
            "-1.2.3",
            "+1.2.3",
            " 1.2.3",
            "1.2.3-rc1",
            "v1.2.3",
        ] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hardware_ids() {
        let named = parse_hardware_id("electron-u260").unwrap();
        assert_eq!(named, HardwareId::from_name("electron-u260").unwrap());
        assert_eq!(format_hardware_id(&named), "electron-u260");
        assert_eq!(
            hardware_id_hex(&named),
            "0x656c656374726f6e2d75323630000000"
        );
        assert_eq!(
            parse_hardware_id("0x656c656374726f6e2d75323630000000"),
            Ok(named)
        );
        assert_eq!(
            parse_hardware_id("0X656C656374726F6E2D75323630000000"),
            Ok(named)
        );
        assert!(parse_hardware_id("0123456789abcdef").is_ok());
        for bad in ["", "0123456789abcdefg", "0x1234", "0xzz", "0x", "a\0b"] {
            assert!(parse_hardware_id(bad).is_err(), "{bad:?}");
        }
        let raw = HardwareId([0xff; 16]);
        assert_eq!(hardware_id_name(&raw), None);
        assert_eq!(format_hardware_id(&raw), format!("0x{}", "ff".repeat(16)));
        // A zero byte inside the name, an all-zero id, a name that looks like hex.
        let mut gap = HardwareId::from_name("ab").unwrap();
        gap.0[5] = b'c';
        for id in [
            gap,
            HardwareId([0; 16]),
            HardwareId::from_name("0x12").unwrap(),
        ] {
            assert_eq!(hardware_id_name(&id), None, "{id:?}");
        }
    }

    #[test]
    fn hardware_id_text_round_trips() {
        let mut x = 0x9e37_79b9_u32;
        for i in 0..2000 {
            let mut id = [0u8; 16];
            for b in &mut id {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Mostly printable bytes and zeros, so names are common.
                *b = match x % 4 {
                    0 => 0,
                    1 => (x >> 8) as u8,
                    _ => 0x20 + (x >> 8) as u8 % 95,
                };
            }
            if i % 3 == 0 {
                let cut = (x >> 16) as usize % 17;
                id[cut..].fill(0);
            }
            let id = HardwareId(id);
            let text = format_hardware_id(&id);
            assert_eq!(parse_hardware_id(&text), Ok(id), "{text:?}");
        }
    }

    #[test]
    fn digests() {
        let hex64 = "00".repeat(31) + "ff";
        let d = parse_sha256(&hex64).unwrap();
        assert_eq!(d.0[31], 0xff);
        assert!(parse_sha256(&hex64[..62]).is_err());
        assert!(parse_sha256(&(hex64.clone() + "00")).is_err());
        assert!(parse_sha256(&hex64.replace("ff", "fg")).is_err());
        assert_eq!(key_id_hex(&KeyId([0xab; 8])), "abababababababab");
    }
}
