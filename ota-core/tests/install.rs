//! Install, trial, confirm and revert; the anti-rollback counter.

mod common;

use common::*;
use ota_core::{
    BeginError, BootConfig, BootStep, Bootloader, ChunkIndex, Lwm2mState, Phase, SecurityCounter,
    StateError, UpdateResult, Updater, VerifyError,
};

/// Downloads `s` completely and requests its install.
fn stage(flash: &mut Flash, s: &Signed) {
    let mut up = Updater::open(flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    up.begin(flash, &offer).unwrap();
    let mut buf = [0u8; 256];
    while !up.erase_step(flash, &mut buf).unwrap().is_done() {}
    for i in 0..s.chunks() {
        up.handle_chunk(flash, ChunkIndex(i), s.chunk(i)).unwrap();
    }
    up.finish(flash, &mut buf).unwrap();
    up.mark_install(flash).unwrap();
    assert_eq!(up.status().state, Lwm2mState::Updating);
}

fn boot(flash: &mut Flash) -> ota_core::BootTarget {
    let mut buf = [0u8; 1024];
    Bootloader::open(
        flash,
        LAYOUT,
        BootConfig {
            max_boot_attempts: 3,
            ..BootConfig::default()
        },
    )
    .unwrap()
    .run(flash, &mut buf, || {})
    .unwrap()
}

#[test]
fn install_confirm_raises_the_counter_only_on_confirm() {
    let old = image(6000, 1);
    let mut flash = factory_flash(&old);
    let v3 = sign(7000, 2, 3);
    stage(&mut flash, &v3);
    let t = boot(&mut flash);
    assert!(t.is_trial());
    assert_eq!(t.attempt(), 1);
    assert_eq!(&flash.contents()[ACTIVE..ACTIVE + 7000], &v3.image[..]);
    // The old image is kept in staging until the new one is confirmed.
    assert_eq!(&flash.contents()[STAGING..STAGING + 6000], &old[..]);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert!(up.is_trial());
    assert_eq!(
        up.policy().stored_counter,
        SecurityCounter(0),
        "counter rose before confirm"
    );
    // No new download while on trial.
    let v4 = sign(7000, 3, 4);
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&v4.manifest, &keys).unwrap();
    assert_eq!(
        up.begin(&mut flash, &offer),
        Err(BeginError::Busy(Phase::Trial))
    );
    up.mark_confirmed(&mut flash).unwrap();
    assert_eq!(up.policy().stored_counter, SecurityCounter(3));
    assert_eq!(
        up.confirmed_image().unwrap().digest,
        ota_core::Sha256Digest::of(&v3.image)
    );
    assert_eq!(up.status().result, UpdateResult::Success);
    // Later boots are plain boots of the confirmed image.
    let t = boot(&mut flash);
    assert!(!t.is_trial());
    // A signed but older image is now refused.
    let up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let v2 = sign(7000, 4, 2);
    assert!(matches!(
        up.verify_offer(&v2.manifest, &keys),
        Err(VerifyError::Downgrade { .. })
    ));
}

#[test]
fn unconfirmed_image_is_reverted_after_the_attempt_budget() {
    let old = image(6000, 5);
    let mut flash = factory_flash(&old);
    let v2 = sign(3000, 6, 2);
    stage(&mut flash, &v2);
    for attempt in 1..=3 {
        let t = boot(&mut flash);
        assert!(t.is_trial());
        assert_eq!(t.attempt(), attempt);
    }
    let t = boot(&mut flash);
    assert!(!t.is_trial());
    assert_eq!(&flash.contents()[ACTIVE..ACTIVE + 6000], &old[..]);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().state, Lwm2mState::Idle);
    assert_eq!(up.status().result, UpdateResult::UpdateFailed);
    assert_eq!(
        up.policy().stored_counter,
        SecurityCounter(0),
        "a reverted image raised the counter"
    );
    assert_eq!(
        up.mark_confirmed(&mut flash),
        Err(StateError::WrongPhase(Phase::Idle))
    );
}

#[test]
fn the_application_can_reject_its_trial() {
    let old = image(6000, 7);
    let mut flash = factory_flash(&old);
    let v2 = sign(7000, 8, 2);
    stage(&mut flash, &v2);
    assert!(boot(&mut flash).is_trial());
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    up.mark_failed(&mut flash).unwrap();
    let t = boot(&mut flash);
    assert!(!t.is_trial());
    assert_eq!(&flash.contents()[ACTIVE..ACTIVE + 6000], &old[..]);
}

#[test]
fn bootloader_steps_are_bounded_and_counted() {
    let old = image(6000, 9);
    let mut flash = factory_flash(&old);
    let v2 = sign(7000, 10, 2);
    stage(&mut flash, &v2);
    let config = BootConfig {
        step_bytes: 1024,
        ..BootConfig::default()
    };
    let mut bl = Bootloader::open(&mut flash, LAYOUT, config).unwrap();
    let mut buf = [0u8; 64];
    let before = flash.stats();
    let mut steps = 0;
    loop {
        let a = flash.stats();
        match bl.step(&mut flash, &mut buf).unwrap() {
            BootStep::Continue => steps += 1,
            BootStep::Boot(t) => {
                assert!(t.is_trial());
                break;
            }
        }
        // One sector erase, or a copy or hash of at most 1 KiB (and a record).
        let b = flash.stats();
        assert!(b.erases - a.erases <= 1);
        assert!(b.bytes_written - a.bytes_written <= 1024 + 192);
    }
    // Unit 0..4K: scratch 1 sector, active 4 × 1K, staging 1 × 4K; unit 4K..8K: scratch 1,
    // active 1 × 4K, staging 2 × 2K; each stage then copies 4 KiB in 4 steps: 18 + 16 swap
    // steps. The digest check hashes 7000 B in 7 steps (the last records Trial), and the state
    // sector the log left during the install is erased once (so the trial's records find a
    // blank sector).
    assert_eq!(steps, 18 + 16 + 7 + 1);
    assert_eq!(flash.erase_count(0) + flash.erase_count(1), 1);
    let after = flash.stats();
    println!(
        "install of 7000 B over 2 units: {} erases, {} writes, {} bytes written",
        after.erases - before.erases,
        after.writes - before.writes,
        after.bytes_written - before.bytes_written
    );
    // Too small a buffer is refused, not a panic.
    let mut tiny = [0u8; 2];
    assert_eq!(
        bl.step(&mut flash, &mut tiny),
        Err(ota_core::BootError::BufferTooSmall)
    );
}

#[test]
fn provisioning_shrinks_the_first_install_and_sets_the_counter() {
    let factory = sign(3000, 11, 4);
    let v5 = sign(3500, 12, 5);
    let keys = trusted(&[1]);
    let mut erases = Vec::new();
    for provisioned in [false, true] {
        let mut flash = factory_flash(&factory.image);
        if provisioned {
            let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
            let offer = up.verify_offer(&factory.manifest, &keys).unwrap();
            let mut buf = [0u8; 128];
            up.provision(&mut flash, &offer, &mut buf).unwrap();
            assert_eq!(up.policy().stored_counter, SecurityCounter(4));
            assert_eq!(up.confirmed_image().unwrap().size, 3000);
            let again = up.verify_offer(&factory.manifest, &keys).unwrap();
            assert_eq!(
                up.provision(&mut flash, &again, &mut buf),
                Err(StateError::AlreadyProvisioned)
            );
        }
        stage(&mut flash, &v5);
        let before = flash.stats().erases;
        assert!(boot(&mut flash).is_trial());
        erases.push(flash.stats().erases - before);
    }
    // Unprovisioned: the whole 8 KiB slot (2 units); provisioned: only the first 4 KiB unit.
    assert!(erases[1] < erases[0], "{erases:?}");
}

#[test]
fn provisioning_checks_the_active_slot() {
    let factory = sign(3000, 13, 1);
    let mut flash = factory_flash(&image(3000, 99));
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&factory.manifest, &keys).unwrap();
    let mut buf = [0u8; 128];
    assert_eq!(
        up.provision(&mut flash, &offer, &mut buf),
        Err(StateError::ImageMismatch)
    );
    assert_eq!(flash.stats().writes, 0);
}

#[test]
fn bootloader_refuses_a_journal_that_does_not_fit_the_layout() {
    use ota_core::{BootError, ImageSummary, Sha256Digest, Version};
    use ota_core::{Persisted, RECORD_LEN};
    let summary = ImageSummary {
        version: Version::new(1, 0, 0),
        security_counter: SecurityCounter(1),
        size: 7000,
        digest: Sha256Digest([1; 32]),
    };
    let base = Persisted {
        seq: 1,
        phase: Phase::Installing,
        staged: Some(summary),
        swap_len: 8192,
        ..Persisted::EMPTY
    };
    // CRC-valid records a bug, a layout change or an attacker with flash access could leave.
    for bad in [
        Persisted {
            swap_step: 7,
            ..base
        }, // past the 6 stages of 2 units
        Persisted {
            swap_len: 4096,
            ..base
        }, // shorter than the staged image
        Persisted {
            swap_len: 0,
            ..base
        },
        Persisted {
            swap_len: 16384,
            ..base
        }, // beyond the slots
        Persisted {
            swap_len: 5000,
            ..base
        }, // not on a unit boundary
    ] {
        let mut flash = Flash::new(&SECTORS);
        let mut rec = [0u8; RECORD_LEN];
        bad.encode(&mut rec);
        flash.preload(0, &rec);
        let mut bl = Bootloader::open(&mut flash, LAYOUT, BootConfig::default()).unwrap();
        let mut buf = [0u8; 64];
        let before = flash.stats();
        assert_eq!(
            bl.step(&mut flash, &mut buf),
            Err(BootError::InconsistentState),
            "{bad:?}"
        );
        assert_eq!(flash.stats().ops, before.ops, "nothing may change");
    }
}

/// Watchdog: on the Electron layout (128 KiB units), no bootloader step may erase more than one
/// sector or program more than the step bound (16 KiB by default) plus one state record, so
/// that a watchdog fed between steps needs to cover only one sector erase.
#[test]
fn bootloader_steps_are_bounded_for_the_watchdog() {
    use ota_core::Layout;
    use ota_core::RECORD_LEN;
    use ota_flash_sim::F2Flash;
    let mut flash = F2Flash::new(&[
        16384, 16384, 16384, 16384, 65536, 131072, 131072, 131072, 131072, 131072, 131072, 131072,
    ]);
    let old = image(300 * 1024, 20);
    flash.preload(Layout::ELECTRON.active.start, &old);
    let new = sign_with(
        image(384 * 1024, 21),
        1,
        ota_core::Version::new(2, 0, 0),
        2,
        1024,
        hw(),
    );
    let mut up = Updater::open(&mut flash, Layout::ELECTRON, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&new.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    let mut buf = [0u8; 1024];
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    for i in 0..new.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), new.chunk(i))
            .unwrap();
    }
    up.finish(&mut flash, &mut buf).unwrap();
    up.mark_install(&mut flash).unwrap();

    let mut bl = Bootloader::open(&mut flash, Layout::ELECTRON, BootConfig::default()).unwrap();
    let bound = 16 * 1024;
    let (mut steps, mut erase_steps) = (0, 0);
    let target = loop {
        let a = flash.stats();
        let step = bl.step(&mut flash, &mut buf).unwrap();
        let b = flash.stats();
        let (erases, written) = (b.erases - a.erases, b.bytes_written - a.bytes_written);
        assert!(erases <= 1, "step {steps} erased {erases} sectors");
        if erases == 1 {
            erase_steps += 1;
            assert!(
                written <= RECORD_LEN as u64,
                "step {steps} erased and wrote {written} B"
            );
        }
        assert!(
            written <= bound + RECORD_LEN as u64,
            "step {steps} programmed {written} B"
        );
        steps += 1;
        if let BootStep::Boot(t) = step {
            break t;
        }
    };
    assert!(target.is_trial());
    assert_eq!(
        &flash.contents()[0x2_0000..0x2_0000 + new.image.len()],
        &new.image[..]
    );
    println!("Electron install of 384 KiB: {steps} steps, {erase_steps} of them one erase each");
}

/// An image whose bytes in the active slot do not hash to its digest after the swap (a copy
/// fault, a flash fault) is never booted: the bootloader swaps the previous image back.
#[test]
fn a_corrupt_installed_image_is_reverted_before_its_trial() {
    let old = image(6000, 22);
    let mut flash = factory_flash(&old);
    let v2 = sign(7000, 23, 2);
    stage(&mut flash, &v2);
    // One bit of the staged image flips after its digest was checked by `finish`.
    let at = STAGING + 5000;
    let byte = flash.contents()[at] ^ 0x04;
    flash.preload(at as u32, &[byte]);
    let t = boot(&mut flash);
    assert!(!t.is_trial(), "a corrupt image was booted on trial");
    assert_eq!(&flash.contents()[ACTIVE..ACTIVE + 6000], &old[..]);
    let up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().state, Lwm2mState::Idle);
    assert_eq!(up.status().result, UpdateResult::UpdateFailed);
    assert_eq!(up.policy().stored_counter, SecurityCounter(0));
}
