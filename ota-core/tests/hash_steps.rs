//! `finish` and `provision` in bounded steps: each call hashes at most the bytes it is given,
//! so an application can feed its watchdog and service its modem between calls.

mod common;

use common::*;
use ota_core::{
    ChunkIndex, FinishError, HashStep, Lwm2mState, Phase, SecurityCounter, StateError,
    UpdateResult, Updater,
};

/// A download of `s` with every chunk in.
fn downloaded(s: &Signed) -> (Flash, Updater) {
    let mut flash = factory_flash(&image(6000, 70));
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    let mut buf = [0u8; 256];
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    for i in 0..s.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    (flash, up)
}

#[test]
fn finish_step_hashes_at_most_the_bytes_it_is_given() {
    let s = sign(7000, 71, 2);
    let (mut flash, mut up) = downloaded(&s);
    let mut buf = [0u8; 256];
    let mut calls = 0;
    let mut last = 0;
    loop {
        let a = flash.stats();
        let step = up.finish_step(&mut flash, &mut buf, 1000).unwrap();
        let read = flash.stats().bytes_read - a.bytes_read;
        calls += 1;
        match step {
            HashStep::Continue { hashed, total } => {
                assert_eq!(total, 7000);
                assert_eq!(hashed, last + 1000, "call {calls}");
                last = hashed;
                // The first call also reads the 28 chunk markers.
                assert!(read <= 1000 + 28 * 4, "call {calls} read {read} B");
                assert_eq!(up.phase(), Phase::Downloading);
            }
            HashStep::Done => break,
        }
    }
    assert_eq!(calls, 7);
    assert_eq!(up.phase(), Phase::Downloaded);
    // A fresh updater agrees.
    let up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().state, Lwm2mState::Downloaded);
}

#[test]
fn a_stepped_finish_restarts_after_a_reset_and_still_refuses_a_bad_image() {
    let s = sign(7000, 72, 2);
    let (mut flash, mut up) = downloaded(&s);
    let mut buf = [0u8; 64];
    assert!(matches!(
        up.finish_step(&mut flash, &mut buf, 3000),
        Ok(HashStep::Continue { hashed: 3000, .. })
    ));
    // A reset: the hash starts over.
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert!(matches!(
        up.finish_step(&mut flash, &mut buf, 3000),
        Ok(HashStep::Continue { hashed: 3000, .. })
    ));
    // A byte of staging flips behind the markers' back, past what was hashed.
    let at = STAGING + 6500;
    let b = flash.contents()[at] ^ 0x01;
    flash.preload(at as u32, &[b]);
    assert!(matches!(
        up.finish_step(&mut flash, &mut buf, 3000),
        Ok(HashStep::Continue { hashed: 6000, .. })
    ));
    assert_eq!(
        up.finish_step(&mut flash, &mut buf, 3000),
        Err(FinishError::IntegrityFailure)
    );
    assert_eq!(up.status().result, UpdateResult::IntegrityFailure);
    assert_eq!(up.phase(), Phase::Idle);
}

#[test]
fn a_stepped_finish_counts_missing_chunks_first() {
    let s = sign(7000, 73, 2);
    let mut flash = factory_flash(&image(6000, 74));
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    let mut buf = [0u8; 64];
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    up.handle_chunk(&mut flash, ChunkIndex(0), s.chunk(0))
        .unwrap();
    let before = flash.stats().bytes_read;
    assert_eq!(
        up.finish_step(&mut flash, &mut buf, 1),
        Err(FinishError::Incomplete { missing: 27 })
    );
    assert!(flash.stats().bytes_read - before <= 28 * 4, "hashed anyway");
    assert_eq!(
        up.finish_step(&mut flash, &mut [], 1),
        Err(FinishError::BufferTooSmall)
    );
}

#[test]
fn provision_step_hashes_at_most_the_bytes_it_is_given() {
    let factory = sign(3000, 75, 4);
    let mut flash = factory_flash(&factory.image);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&factory.manifest, &keys).unwrap();
    let mut buf = [0u8; 128];
    let mut calls = 0;
    loop {
        let a = flash.stats();
        let step = up
            .provision_step(&mut flash, &offer, &mut buf, 512)
            .unwrap();
        assert!(flash.stats().bytes_read - a.bytes_read <= 512 + 192 * 2);
        calls += 1;
        if step == HashStep::Done {
            break;
        }
        assert!(up.confirmed_image().is_none());
    }
    assert_eq!(calls, 6); // ⌈3000 / 512⌉
    assert_eq!(up.policy().stored_counter, SecurityCounter(4));
    assert_eq!(up.confirmed_image().unwrap().size, 3000);
    assert_eq!(
        up.provision_step(&mut flash, &offer, &mut buf, 512),
        Err(StateError::AlreadyProvisioned)
    );
}

#[test]
fn a_stepped_provision_refuses_a_mismatch_and_starts_over_for_another_manifest() {
    let factory = sign(3000, 76, 4);
    let other = sign(3000, 77, 4);
    let mut flash = factory_flash(&factory.image);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let wrong = up.verify_offer(&other.manifest, &keys).unwrap();
    let right = up.verify_offer(&factory.manifest, &keys).unwrap();
    let mut buf = [0u8; 128];
    assert!(matches!(
        up.provision_step(&mut flash, &wrong, &mut buf, 2000),
        Ok(HashStep::Continue { hashed: 2000, .. })
    ));
    // Another manifest: its hash starts from the first byte.
    assert_eq!(
        up.provision_step(&mut flash, &right, &mut buf, 2000),
        Ok(HashStep::Continue {
            hashed: 2000,
            total: 3000
        })
    );
    assert_eq!(
        up.provision_step(&mut flash, &right, &mut buf, 2000),
        Ok(HashStep::Done)
    );
    let writes = flash.stats().writes;
    let mut flash2 = factory_flash(&factory.image);
    let mut up2 = Updater::open(&mut flash2, LAYOUT, config()).unwrap();
    assert_eq!(
        up2.provision(&mut flash2, &wrong, &mut buf),
        Err(StateError::ImageMismatch)
    );
    assert_eq!(flash2.stats().writes, 0);
    assert!(writes > 0);
}

/// Fills every free slot of the state region with copies of the newest record (newer
/// numbers), so that the next state change finds its sector full and the next one not blank.
fn fill_state_log(flash: &mut Flash) {
    use ota_core::{Persisted, RECORD_LEN};
    let slots: Vec<u32> = (0..2u32)
        .flat_map(|s| (0..5u32).map(move |k| s * 1024 + k * RECORD_LEN as u32))
        .collect();
    let read = |f: &Flash, a: u32| -> [u8; RECORD_LEN] {
        f.contents()[a as usize..a as usize + RECORD_LEN]
            .try_into()
            .unwrap()
    };
    let mut newest = slots
        .iter()
        .filter_map(|&a| Persisted::decode(&read(flash, a)))
        .max_by_key(|p| p.seq)
        .unwrap();
    for &a in &slots {
        if read(flash, a).iter().all(|&b| b == 0xFF) {
            newest.seq += 1;
            let mut rec = [0u8; RECORD_LEN];
            newest.encode(&mut rec);
            flash.preload(a, &rec);
        }
    }
}

#[test]
fn a_stepped_finish_keeps_its_hash_across_an_erase_step() {
    let s = sign(7000, 78, 2);
    let (mut flash, _) = downloaded(&s);
    fill_state_log(&mut flash);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let mut buf = [0u8; 256];
    let mut result = up.finish_step(&mut flash, &mut buf, 4000);
    assert!(matches!(
        result,
        Ok(HashStep::Continue { hashed: 4000, .. })
    ));
    result = up.finish_step(&mut flash, &mut buf, 4000);
    assert_eq!(result, Err(FinishError::NeedsErase));
    assert_eq!(up.phase(), Phase::Downloading);
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    let before = flash.stats().bytes_read;
    assert_eq!(
        up.finish_step(&mut flash, &mut buf, 4000),
        Ok(HashStep::Done)
    );
    let read = flash.stats().bytes_read - before;
    assert!(read < 1000, "the image was hashed again ({read} B read)");
    assert_eq!(up.phase(), Phase::Downloaded);
}
