//! ota-core's install, trial and revert on the Electron's real sector map, through the
//! bootloader's own rules: every erase and write passes `electron_bsp::flash`'s range checks
//! with the bootloader's `WRITABLE` (what `InternalFlash` would refuse fails the test), each
//! step between two watchdog feeds erases at most one sector (the `WATCHDOG_MS` argument), and
//! the decision after the run jumps to the installed image or, for a trial that cannot start,
//! resets until ota-core reverts. Host only: `cargo test -p electron-bootloader --target
//! x86_64-unknown-linux-gnu --lib` (a unit-test module: an integration test would make cargo
//! link the `no_main` binary for the host).

extern crate std;

use std::vec;
use std::vec::Vec;

use core::ops::Range;

use crate::{check_vectors, decide, Action, APP_BASE, BOOT_CONFIG, LAYOUT, RAM, WRITABLE};
use electron_bsp::flash::{check_erase, check_write, Sector, CAPACITY};
use ota_core::embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use ota_core::{
    build_signed, chunk_count, manifest_len, BootTarget, Bootloader, ChunkIndex, HardwareId,
    ImageParams, SecurityCounter, TrustedKey, Updater, UpdaterConfig, Version,
};
use ota_flash_sim::SimFlash;

type Sim = SimFlash<4, 16384, false>;

const SECTORS: [usize; 12] = [
    16 << 10,
    16 << 10,
    16 << 10,
    16 << 10,
    64 << 10,
    128 << 10,
    128 << 10,
    128 << 10,
    128 << 10,
    128 << 10,
    128 << 10,
    128 << 10,
];

/// The simulator behind `InternalFlash`'s refusals, counting what each step does.
struct Guarded {
    sim: Sim,
    writable: Range<u32>,
    /// Sector erases and bytes programmed since the last feed.
    erases_since_feed: u32,
    bytes_since_feed: u32,
    /// The most of each seen between two feeds.
    max_erases: u32,
    max_bytes: u32,
}

impl Guarded {
    fn new(sim: Sim) -> Self {
        Self {
            sim,
            writable: WRITABLE,
            erases_since_feed: 0,
            bytes_since_feed: 0,
            max_erases: 0,
            max_bytes: 0,
        }
    }

    fn feed(&mut self) {
        self.max_erases = self.max_erases.max(self.erases_since_feed);
        self.max_bytes = self.max_bytes.max(self.bytes_since_feed);
        self.erases_since_feed = 0;
        self.bytes_since_feed = 0;
    }
}

impl ErrorType for Guarded {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for Guarded {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.sim.read(offset, bytes).map_err(|e| e.kind())
    }
    fn capacity(&self) -> usize {
        self.sim.capacity()
    }
}

impl NorFlash for Guarded {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 16384;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let sectors = check_erase(from, to, &self.writable)
            .unwrap_or_else(|e| panic!("InternalFlash would refuse erase {from:#x}..{to:#x}: {e}"));
        self.erases_since_feed += sectors.len() as u32;
        self.sim.erase(from, to).map_err(|e| e.kind())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        check_write(offset, bytes.len(), &self.writable).unwrap_or_else(|e| {
            panic!(
                "InternalFlash would refuse write {offset:#x}+{}: {e}",
                bytes.len()
            )
        });
        self.bytes_since_feed += bytes.len() as u32;
        self.sim.write(offset, bytes).map_err(|e| e.kind())
    }
}

fn hw() -> HardwareId {
    HardwareId::from_name("electron").unwrap()
}

fn key() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]))
}

/// An application image of `len` bytes whose vector table is `sp`, `reset`; the rest varies
/// with `salt`.
fn app(len: usize, sp: u32, reset: u32, salt: u32) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32 ^ salt.wrapping_mul(0x85EB_CA6B);
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    v[0..4].copy_from_slice(&sp.to_le_bytes());
    v[4..8].copy_from_slice(&reset.to_le_bytes());
    v
}

/// Downloads `image` (signed, security counter `counter`) with the application's `Updater` and
/// requests its install.
fn stage(sim: &mut Sim, image: &[u8], counter: u32) {
    let params = ImageParams {
        hardware_id: hw(),
        version: Version::new(1, counter as u16, 0),
        security_counter: SecurityCounter(counter),
        chunk_size: 1024,
        base_digest: None,
    };
    let mut manifest = vec![0u8; manifest_len(chunk_count(image.len() as u32, 1024))];
    build_signed(&params, image, &key(), &mut manifest).unwrap();
    let config = UpdaterConfig {
        hardware_id: hw(),
        allow_downgrade: false,
    };
    let mut up = Updater::open(sim, LAYOUT, config).unwrap();
    let keys = [TrustedKey::new(*key().pk)];
    let offer = up.verify_offer(&manifest, &keys).unwrap();
    up.begin(sim, &offer).unwrap();
    let mut buf = [0u8; 1024];
    while !up.erase_step(sim, &mut buf).unwrap().is_done() {}
    for (i, chunk) in image.chunks(1024).enumerate() {
        up.handle_chunk(sim, ChunkIndex(i as u32), chunk).unwrap();
    }
    up.finish(sim, &mut buf).unwrap();
    up.mark_install(sim).unwrap();
}

/// One boot as `main.rs` runs it: open, run (feeding between steps), read the vector table,
/// decide.
fn boot(flash: &mut Guarded) -> (BootTarget, Action) {
    let mut boot = Bootloader::open(flash, LAYOUT, BOOT_CONFIG).unwrap();
    let mut buf = [0u8; 4096];
    // `run` with the feed made visible: the guard settles its per-step counts at each feed.
    let target = loop {
        match boot.step(flash, &mut buf).unwrap() {
            ota_core::BootStep::Continue => flash.feed(),
            ota_core::BootStep::Boot(t) => break t,
        }
    };
    flash.feed();
    let active = LAYOUT.active.start as usize;
    let words = &flash.sim.contents()[active..active + 8];
    let sp = u32::from_le_bytes(words[0..4].try_into().unwrap());
    let rv = u32::from_le_bytes(words[4..8].try_into().unwrap());
    (
        target,
        decide(Some(target), false, check_vectors(sp, rv), true).0,
    )
}

const SP: u32 = RAM.end;
const RESET: u32 = APP_BASE + 0x199;

#[test]
fn the_map_is_the_bsp_s() {
    let total: usize = SECTORS.iter().sum();
    assert_eq!(total as u32, CAPACITY);
    for (i, &size) in SECTORS.iter().enumerate() {
        assert_eq!(Sector::by_index(i as u8).unwrap().size as usize, size);
    }
}

#[test]
fn install_passes_the_flash_driver_s_rules_and_jumps_to_the_new_image() {
    let old = app(200 * 1024, SP, RESET, 1);
    let new = app(300 * 1024 + 123, SP, RESET + 0x100, 2);
    let mut sim = Sim::new(&SECTORS);
    sim.preload(LAYOUT.active.start, &old);
    stage(&mut sim, &new, 1);

    let mut flash = Guarded::new(sim);
    let (target, action) = boot(&mut flash);
    assert!(target.is_trial(), "{target:?}");
    let a = LAYOUT.active.start as usize;
    assert_eq!(&flash.sim.contents()[a..a + new.len()], &new[..]);
    match action {
        Action::Jump(e) => assert_eq!((e.stack_pointer, e.reset_vector), (SP, RESET + 0x100)),
        other => panic!("{other:?}"),
    }
    // Between two feeds: at most one sector erase, at most one step of copying (plus a record).
    assert!(
        flash.max_erases <= 1,
        "{} erases in one step",
        flash.max_erases
    );
    assert!(
        flash.max_bytes <= BOOT_CONFIG.step_bytes + 192,
        "{} bytes in one step",
        flash.max_bytes
    );
    // Sector 0 was never touched: the guard would have panicked.
}

#[test]
fn a_trial_that_cannot_start_resets_until_ota_core_reverts() {
    let old = app(100 * 1024, SP, RESET, 3);
    // The new image's reset vector points into the bootloader: not plausible.
    let bad = app(150 * 1024, SP, 0x0800_0101, 4);
    let mut sim = Sim::new(&SECTORS);
    sim.preload(LAYOUT.active.start, &old);
    stage(&mut sim, &bad, 1);

    let mut flash = Guarded::new(sim);
    let mut resets = 0;
    let final_action = loop {
        let (target, action) = boot(&mut flash);
        match action {
            Action::Reset => {
                assert!(target.is_trial());
                resets += 1;
                assert!(resets <= BOOT_CONFIG.max_boot_attempts, "no revert");
            }
            other => break (target, other),
        }
    };
    assert_eq!(resets, BOOT_CONFIG.max_boot_attempts);
    let (target, action) = final_action;
    assert!(!target.is_trial(), "{target:?}");
    assert!(
        matches!(action, Action::Jump(e) if e.reset_vector == RESET),
        "{action:?}"
    );
    let a = LAYOUT.active.start as usize;
    assert_eq!(&flash.sim.contents()[a..a + old.len()], &old[..]);
}

#[test]
fn a_blank_device_parks() {
    let mut flash = Guarded::new(Sim::new(&SECTORS));
    let (target, action) = boot(&mut flash);
    assert!(!target.is_trial());
    assert_eq!(action, Action::Park);
}
