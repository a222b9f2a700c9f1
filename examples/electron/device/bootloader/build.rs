//! Picks the linker memory map and bakes in the manifest-signing key.
//!
//! * `memory.x`: sector 0 (16 KB) and all 128 KB of RAM: the board build.
//! * `memory-qemu.x` (feature `qemu`): the same flash, RAM limited to the first 64 KB; the top
//!   64 KB belongs to the QEMU stand-in's flash overlay (electron-bsp `qemu`).
//! * `memory-verify.x` (feature `verify-signature`): sectors 0–2 (48 KB), a measurement
//!   build: it overlaps ota-core's state log (sectors 1–2 of `Layout::ELECTRON`). See README.
//!
//! `ELECTRON_OTA_PUBKEY_PEM`: path to the Ed25519 public key (ota-tool's PEM) whose
//! signatures `verify-signature` accepts. Without it that build trusts no key (every trial
//! image is refused and reverted) and says so in a build warning.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let qemu = env::var_os("CARGO_FEATURE_QEMU").is_some();
    let verify = env::var_os("CARGO_FEATURE_VERIFY_SIGNATURE").is_some();
    let memory = match (verify, qemu) {
        (true, false) => "memory-verify.x",
        (true, true) => "memory-verify-qemu.x",
        (false, true) => "memory-qemu.x",
        (false, false) => "memory.x",
    };
    fs::copy(memory, out.join("memory.x")).expect("copy the memory map");
    println!("cargo:rustc-link-search={}", out.display());
    for f in [
        "memory.x",
        "memory-qemu.x",
        "memory-verify.x",
        "memory-verify-qemu.x",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=ELECTRON_OTA_PUBKEY_PEM");

    // Sector 0 holds the bootloader only with sha2's compact SHA-256 (the device workspace's
    // .cargo/config.toml sets it); say why the link fails when RUSTFLAGS replaced it.
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let board = env::var("TARGET").is_ok_and(|t| t.starts_with("thumb"));
    if board && !verify && !flags.contains("sha2_backend_soft=\"compact\"") {
        println!(
            "cargo:warning=RUSTFLAGS lack --cfg sha2_backend_soft=\"compact\" (set in \
             .cargo/config.toml): the bootloader will not fit its 16 KB sector"
        );
    }

    let key = match env::var_os("ELECTRON_OTA_PUBKEY_PEM") {
        Some(path) => {
            let pem = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("ELECTRON_OTA_PUBKEY_PEM {path:?}: {e}"));
            println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
            Some(ed25519_spki_key(&pem).unwrap_or_else(|| {
                panic!("ELECTRON_OTA_PUBKEY_PEM {path:?}: not an Ed25519 public-key PEM")
            }))
        }
        None => {
            if verify {
                println!(
                    "cargo:warning=verify-signature without ELECTRON_OTA_PUBKEY_PEM: the \
                     bootloader trusts no key and reverts every trial image"
                );
            }
            None
        }
    };
    let text = match key {
        Some(k) => format!("Some({k:?})"),
        None => "None".to_string(),
    };
    fs::write(
        out.join("trusted_key.rs"),
        format!(
            "/// The manifest-signing key baked in at build time (`ELECTRON_OTA_PUBKEY_PEM`).\n\
             pub const TRUSTED_KEY: Option<[u8; 32]> = {text};\n"
        ),
    )
    .expect("write trusted_key.rs");
}

/// The 32-byte key of an Ed25519 `PUBLIC KEY` PEM (SPKI: the 12-byte header
/// `30 2a 30 05 06 03 2b 65 70 03 21 00`, then the key; RFC 8410 §4).
fn ed25519_spki_key(pem: &str) -> Option<[u8; 32]> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64_decode(&body)?;
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    if der.len() != 44 || der[..12] != PREFIX {
        return None;
    }
    der[12..].try_into().ok()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
