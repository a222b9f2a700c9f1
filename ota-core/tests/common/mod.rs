//! Shared fixtures for the behaviour tests: a small flash with mixed sector sizes, signed
//! images and a key ring.
#![allow(dead_code)]

use ota_core::{build_signed, chunk_count, manifest_len as encoded_len, ImageParams};
use ota_core::{
    HardwareId, Layout, Region, SectorMap, SectorRun, SecurityCounter, TrustedKey, UpdaterConfig,
    Version,
};
use ota_flash_sim::SimFlash;

/// 4-byte words, 1 KiB minimum sector, no bit rewrites (like the STM32F2 as embassy drives it).
pub type Flash = SimFlash<4, 1024, false>;
/// The same with `MultiwriteNorFlash`.
pub type MultiFlash = SimFlash<4, 1024, true>;

/// Physical sectors: 2×1K state, 2K progress, active = 4×1K + 4K, staging = 4K + 2K + 2K,
/// scratch = 4K. Swap units are 0..4K and 4K..8K: the two slots share no sector size.
pub const SECTORS: [usize; 12] = [
    1024, 1024, 2048, 1024, 1024, 1024, 1024, 4096, 4096, 2048, 2048, 4096,
];
pub static MAP: SectorMap = SectorMap::new(&[
    SectorRun {
        count: 2,
        size: 1024,
    },
    SectorRun {
        count: 1,
        size: 2048,
    },
    SectorRun {
        count: 4,
        size: 1024,
    },
    SectorRun {
        count: 2,
        size: 4096,
    },
    SectorRun {
        count: 2,
        size: 2048,
    },
    SectorRun {
        count: 1,
        size: 4096,
    },
]);
pub const LAYOUT: Layout = Layout {
    map: MAP,
    state: Region::new(0, 2048),
    progress: Region::new(2048, 4096),
    active: Region::new(4096, 12288),
    staging: Region::new(12288, 20480),
    scratch: Region::new(20480, 24576),
};
pub const ACTIVE: usize = 4096;
pub const STAGING: usize = 12288;

pub fn hw() -> HardwareId {
    HardwareId::from_name("sim-board").unwrap()
}

pub fn config() -> UpdaterConfig {
    UpdaterConfig {
        hardware_id: hw(),
        allow_downgrade: false,
    }
}

pub fn keypair(seed: u8) -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]))
}

pub fn trusted(seeds: &[u8]) -> Vec<TrustedKey> {
    seeds
        .iter()
        .map(|&s| TrustedKey::new(*keypair(s).pk))
        .collect()
}

/// Deterministic image content that differs per `salt`.
pub fn image(len: usize, salt: u32) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32 ^ salt.wrapping_mul(0x85EB_CA6B);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub struct Signed {
    pub image: Vec<u8>,
    pub manifest: Vec<u8>,
    pub chunk_size: u32,
}

impl Signed {
    pub fn chunk(&self, i: u32) -> &[u8] {
        let cs = self.chunk_size as usize;
        let s = i as usize * cs;
        &self.image[s..(s + cs).min(self.image.len())]
    }
    pub fn chunks(&self) -> u32 {
        chunk_count(self.image.len() as u32, self.chunk_size)
    }
}

pub fn sign_with(
    image: Vec<u8>,
    seed: u8,
    version: Version,
    counter: u32,
    chunk_size: u32,
    hw: HardwareId,
) -> Signed {
    let params = ImageParams {
        hardware_id: hw,
        version,
        security_counter: SecurityCounter(counter),
        chunk_size,
        base_digest: None,
    };
    let mut manifest = vec![0u8; encoded_len(chunk_count(image.len() as u32, chunk_size))];
    let n = build_signed(&params, &image, &keypair(seed), &mut manifest).unwrap();
    assert_eq!(n, manifest.len());
    Signed {
        image,
        manifest,
        chunk_size,
    }
}

pub fn sign(len: usize, salt: u32, counter: u32) -> Signed {
    sign_with(
        image(len, salt),
        1,
        Version::new(1, counter as u16, 0),
        counter,
        256,
        hw(),
    )
}

/// A fresh flash holding `factory` in the active slot and nothing else.
pub fn factory_flash(factory: &[u8]) -> Flash {
    let mut f = Flash::new(&SECTORS);
    f.preload(ACTIVE as u32, factory);
    f
}
