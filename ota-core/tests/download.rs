//! Download behaviour: order, duplicates, corruption, explicit erases, resume, finish.

mod common;

use common::*;
use ota_core::{
    Begin, BeginError, ChunkError, ChunkIndex, ChunkOutcome, FinishError, Lwm2mState, Phase,
    UpdateResult, Updater,
};

fn start(flash: &mut Flash, s: &Signed) -> Updater {
    let mut up = Updater::open(flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    assert_eq!(up.begin(flash, &offer), Ok(Begin::Started));
    up
}

fn erase_all(up: &mut Updater, flash: &mut Flash) {
    let mut buf = [0u8; 128];
    while !up.erase_step(flash, &mut buf).unwrap().is_done() {}
}

#[test]
fn erase_is_explicit_and_reported() {
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 1, 1);
    let mut up = start(&mut flash, &s);
    // The image spans the 4K and both 2K staging sectors.
    let w = up.erase_work(&mut flash).unwrap();
    assert_eq!((w.steps, w.bytes), (3, 8192));
    // No chunk before its sector is erased; nothing was erased behind our back.
    let erases = flash.stats().erases;
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(0), s.chunk(0)),
        Err(ChunkError::NeedsErase)
    );
    assert_eq!(flash.stats().erases, erases);
    let mut buf = [0u8; 64];
    let w = up.erase_step(&mut flash, &mut buf).unwrap();
    assert_eq!((w.steps, w.bytes), (2, 4096));
    assert_eq!(flash.stats().erases, erases + 1);
    // Chunk 0 lives in the first (now erased) sector; chunk 20 (offset 5120) in the second.
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(0), s.chunk(0)),
        Ok(ChunkOutcome::Written)
    );
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(20), s.chunk(20)),
        Err(ChunkError::NeedsErase)
    );
    erase_all(&mut up, &mut flash);
    assert!(up.erase_work(&mut flash).unwrap().is_done());
}

#[test]
fn chunks_in_any_order_with_duplicates_then_finish() {
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 2, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    let n = s.chunks();
    let order: Vec<u32> = (0..n).rev().chain([3, 7, 0]).collect();
    let mut written = 0;
    for i in order {
        match up
            .handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap()
        {
            ChunkOutcome::Written => written += 1,
            ChunkOutcome::Duplicate => assert!([3, 7, 0].contains(&i)),
        }
    }
    assert_eq!(written, n);
    assert_eq!(up.status().progress.unwrap().chunks_done, n);
    let mut buf = [0u8; 256];
    up.finish(&mut flash, &mut buf).unwrap();
    assert_eq!(up.status().state, Lwm2mState::Downloaded);
    assert_eq!(&flash.contents()[STAGING..STAGING + 7000], &s.image[..]);
}

#[test]
fn bad_chunks_are_refused_before_any_write() {
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 3, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    let writes = flash.stats().writes;
    let mut bad = s.chunk(2).to_vec();
    bad[17] ^= 0x40;
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(2), &bad),
        Err(ChunkError::Corrupt)
    );
    // A valid chunk at the wrong index is corrupt too.
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(2), s.chunk(3)),
        Err(ChunkError::Corrupt)
    );
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(2), &s.chunk(2)[..100]),
        Err(ChunkError::BadLength {
            expected: 256,
            got: 100
        })
    );
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(s.chunks()), s.chunk(0)),
        Err(ChunkError::BadIndex)
    );
    assert_eq!(
        flash.stats().writes,
        writes,
        "a refused chunk wrote to flash"
    );
    // The last chunk is short (7000 = 27*256 + 88).
    let last = s.chunks() - 1;
    assert_eq!(s.chunk(last).len(), 88);
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(last), s.chunk(last)),
        Ok(ChunkOutcome::Written)
    );
}

#[test]
fn resume_after_sleep_fetches_only_what_is_missing() {
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 4, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    for i in (0..s.chunks()).step_by(3) {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    let _ = up; // deep sleep: the RAM state is gone
                // Deep sleep: RAM is gone. The offer comes again; begin resumes without touching flash.
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().state, Lwm2mState::Downloading);
    let ops = flash.stats().ops;
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    assert_eq!(up.begin(&mut flash, &offer), Ok(Begin::Resumed));
    assert_eq!(flash.stats().ops, ops);
    let mut missing = [ChunkIndex(0); 64];
    let n = up
        .missing_chunks(&mut flash, ChunkIndex(0), &mut missing)
        .unwrap();
    let want: Vec<ChunkIndex> = (0..s.chunks())
        .filter(|i| i % 3 != 0)
        .map(ChunkIndex)
        .collect();
    assert_eq!(&missing[..n], &want[..]);
    for i in want {
        up.handle_chunk(&mut flash, i, s.chunk(i.0)).unwrap();
    }
    let mut buf = [0u8; 100];
    up.finish(&mut flash, &mut buf).unwrap();
}

#[test]
fn multiwrite_flash_uses_bit_markers() {
    let mut flash = MultiFlash::new(&SECTORS);
    let s = sign(7000, 5, 1);
    let mut up = Updater::open_multiwrite(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    let mut buf = [0u8; 64];
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    let before = flash.stats();
    for i in 0..s.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    let after = flash.stats();
    // Two writes per chunk: the data and one word that clears one bit.
    assert_eq!(after.writes - before.writes, 2 * s.chunks() as u64);
    assert_eq!(
        after.bytes_written - before.bytes_written,
        7000 + 4 * s.chunks() as u64
    );
    // Reopen: progress read back from bits.
    let up = Updater::open_multiwrite(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().progress.unwrap().chunks_done, s.chunks());
}

#[test]
fn finish_detects_a_staged_image_that_changed_in_flash() {
    let mut flash = Flash::new(&SECTORS);
    let s = sign(3000, 6, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    let mut buf = [0u8; 64];
    assert_eq!(
        up.finish(&mut flash, &mut buf),
        Err(FinishError::Incomplete { missing: 12 })
    );
    for i in 0..s.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    // Bit rot after the chunk was verified and written.
    let mut byte = [flash.contents()[STAGING + 1000]];
    byte[0] &= 0x7F;
    byte[0] ^= 0x01;
    flash.preload((STAGING + 1000) as u32, &byte);
    assert_eq!(
        up.finish(&mut flash, &mut buf),
        Err(FinishError::IntegrityFailure)
    );
    assert_eq!(up.status().state, Lwm2mState::Idle);
    assert_eq!(up.status().result, UpdateResult::IntegrityFailure);
    // The state is persisted.
    let up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.phase(), Phase::Idle);
}

#[test]
fn begin_refuses_what_it_cannot_do() {
    let mut flash = Flash::new(&SECTORS);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    // A 4 KiB chunk does not divide the 2 KiB staging sectors.
    let s = sign_with(
        image(7000, 1),
        1,
        ota_core::Version::new(1, 0, 0),
        1,
        4096,
        hw(),
    );
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    assert_eq!(
        up.begin(&mut flash, &offer),
        Err(BeginError::UnsupportedChunkSize)
    );
    assert_eq!(flash.stats().ops, 0, "a refused begin touched flash");
}

#[test]
fn a_new_offer_supersedes_the_download_in_progress() {
    let mut flash = Flash::new(&SECTORS);
    let a = sign(7000, 7, 1);
    let b = sign(5000, 8, 2);
    let mut up = start(&mut flash, &a);
    erase_all(&mut up, &mut flash);
    up.handle_chunk(&mut flash, ChunkIndex(0), a.chunk(0))
        .unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&b.manifest, &keys).unwrap();
    // `a` is abandoned; its progress region must be erased first, in an explicit step.
    let erases = flash.stats().erases;
    assert_eq!(up.begin(&mut flash, &offer), Err(BeginError::NeedsErase));
    assert_eq!(flash.stats().erases, erases, "begin erased");
    assert_eq!(up.phase(), Phase::Idle);
    assert_eq!(
        up.erase_work(&mut flash).unwrap().steps,
        1,
        "the progress sector"
    );
    erase_all(&mut up, &mut flash);
    assert_eq!(up.begin(&mut flash, &offer), Ok(Begin::Started));
    assert_eq!(up.status().progress.unwrap().chunks_done, 0);
    // Its sectors must be erased again (they hold a's chunk 0).
    assert_eq!(up.erase_work(&mut flash).unwrap().steps, 2);
    erase_all(&mut up, &mut flash);
    for i in 0..b.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), b.chunk(i))
            .unwrap();
    }
    let mut buf = [0u8; 64];
    up.finish(&mut flash, &mut buf).unwrap();
    up.cancel(&mut flash, UpdateResult::Cancelled).unwrap();
    assert_eq!(up.status().result, UpdateResult::Cancelled);
}

#[test]
fn torn_chunk_write_is_repaired_without_refetching_neighbours() {
    use ota_flash_sim::{Cut, CutKind};
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 9, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    for i in 0..5 {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    // Power dies halfway through writing chunk 5's data.
    let at = flash.stats().ops;
    flash.schedule_cut(Cut {
        at,
        kind: CutKind::Torn,
    });
    assert!(up
        .handle_chunk(&mut flash, ChunkIndex(5), s.chunk(5))
        .is_err());
    flash.power_on();
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    // The repair is announced right after the reset, before any chunk is fetched.
    let w = up.erase_work(&mut flash).unwrap();
    assert_eq!(
        (w.steps, w.bytes),
        (2, 2 * 4096),
        "repair: copy out (erase scratch), then erase and copy back"
    );
    assert_eq!(
        up.next_missing(&mut flash, ChunkIndex(0)).unwrap(),
        Some(ChunkIndex(5))
    );
    let mut buf = [0u8; 64];
    erase_all(&mut up, &mut flash);
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(5), s.chunk(5)),
        Ok(ChunkOutcome::Written)
    );
    // Chunks 0..5 survived the repair and are not asked for again.
    assert_eq!(
        up.next_missing(&mut flash, ChunkIndex(0)).unwrap(),
        Some(ChunkIndex(6))
    );
    for i in 6..s.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    up.finish(&mut flash, &mut buf).unwrap();
}

/// A power cut after a chunk's data was completely written but before its marker was (cut
/// after the data write, or a torn marker write that left the marker erased): after the reset
/// the chunk counts as done and is never requested again.
#[test]
fn a_chunk_written_but_not_marked_before_a_reset_is_not_fetched_again() {
    use ota_flash_sim::{Cut, CutKind, Tear, TearPoint, TornErase, TornWord};
    let unchanged = CutKind::TornWith(Tear {
        point: TearPoint::Start,
        word: TornWord::Unchanged,
        erase: TornErase::Half,
    });
    // (which write of handle_chunk to cut: 0 = data, 1 = marker; how)
    for (op, kind) in [(0, CutKind::After), (1, CutKind::Before), (1, unchanged)] {
        let mut flash = Flash::new(&SECTORS);
        // 7001 bytes: the last chunk (27) is 89 bytes, written as 88 bytes and a padded word.
        let s = sign(7001, 30, 1);
        let mut up = start(&mut flash, &s);
        erase_all(&mut up, &mut flash);
        for i in 0..4 {
            up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
                .unwrap();
        }
        for chunk in [4, 27] {
            // The last chunk takes two data writes (88 bytes, then the padded tail word).
            let data_writes = if chunk == 27 { 2 } else { 1 };
            let at = flash.stats().ops
                + if op == 0 {
                    data_writes - 1
                } else {
                    data_writes
                };
            flash.schedule_cut(Cut { at, kind });
            assert!(up
                .handle_chunk(&mut flash, ChunkIndex(chunk), s.chunk(chunk))
                .is_err());
            flash.power_on();
            let w = flash.stats().writes;
            up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
            assert_eq!(
                flash.stats().writes,
                w + 1,
                "open writes the missing marker, nothing else"
            );
            assert!(up.erase_work(&mut flash).unwrap().is_done());
            let done = if chunk == 4 { 5 } else { 6 };
            assert_eq!(
                up.status().progress.unwrap().chunks_done,
                done,
                "{kind:?} on write {op} of chunk {chunk}"
            );
            let mut missing = [ChunkIndex(0); 64];
            let n = up
                .missing_chunks(&mut flash, ChunkIndex(0), &mut missing)
                .unwrap();
            assert!(
                !missing[..n].contains(&ChunkIndex(chunk)),
                "{kind:?} on write {op}: chunk {chunk} is requested again"
            );
            assert_eq!(
                up.handle_chunk(&mut flash, ChunkIndex(chunk), s.chunk(chunk)),
                Ok(ChunkOutcome::Duplicate)
            );
        }
        for i in 5..27 {
            up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
                .unwrap();
        }
        let mut buf = [0u8; 64];
        up.finish(&mut flash, &mut buf).unwrap();
    }
}

/// A torn write of the last chunk's padded tail word: repaired, like any torn chunk.
#[test]
fn a_torn_tail_word_is_repaired() {
    use ota_flash_sim::{Cut, CutKind};
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7001, 31, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    let at = flash.stats().ops + 1;
    flash.schedule_cut(Cut {
        at,
        kind: CutKind::Torn,
    });
    assert!(up
        .handle_chunk(&mut flash, ChunkIndex(27), s.chunk(27))
        .is_err());
    flash.power_on();
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.erase_work(&mut flash).unwrap().steps, 2);
    erase_all(&mut up, &mut flash);
    for i in 0..s.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    let mut buf = [0u8; 64];
    up.finish(&mut flash, &mut buf).unwrap();
}

#[test]
fn begin_applies_this_devices_policy_whatever_the_manifest_was_verified_against() {
    use ota_core::{verify, Policy, SecurityCounter, VerifyError};
    let mut flash = Flash::new(&SECTORS);
    let factory = sign(3000, 20, 5);
    flash.preload(ACTIVE as u32, &factory.image);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&factory.manifest, &keys).unwrap();
    let mut buf = [0u8; 64];
    up.provision(&mut flash, &offer, &mut buf).unwrap();
    // Verified against a permissive policy (downgrade allowed, other hardware).
    let old = sign(3000, 21, 4);
    let lax = Policy {
        hardware_id: hw(),
        stored_counter: SecurityCounter(0),
        capacity: u32::MAX,
        allow_downgrade: true,
    };
    let v = verify(&old.manifest, &keys, &lax).unwrap();
    let ops = flash.stats().ops;
    assert_eq!(
        up.begin(&mut flash, &v),
        Err(BeginError::Refused(VerifyError::Downgrade {
            offered: SecurityCounter(4),
            stored: SecurityCounter(5)
        }))
    );
    let other = sign_with(
        image(3000, 1),
        1,
        ota_core::Version::new(9, 0, 0),
        9,
        256,
        ota_core::HardwareId::from_name("other").unwrap(),
    );
    let v = verify(
        &other.manifest,
        &keys,
        &Policy {
            hardware_id: ota_core::HardwareId::from_name("other").unwrap(),
            ..lax
        },
    )
    .unwrap();
    assert_eq!(
        up.begin(&mut flash, &v),
        Err(BeginError::Refused(VerifyError::WrongHardware))
    );
    assert_eq!(flash.stats().ops, ops, "a refused begin touched flash");
}

#[test]
fn erase_step_refuses_a_buffer_shorter_than_a_word() {
    use ota_flash_sim::{Cut, CutKind};
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 22, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    up.handle_chunk(&mut flash, ChunkIndex(0), s.chunk(0))
        .unwrap();
    let at = flash.stats().ops;
    flash.schedule_cut(Cut {
        at,
        kind: CutKind::Torn,
    });
    assert!(up
        .handle_chunk(&mut flash, ChunkIndex(1), s.chunk(1))
        .is_err());
    flash.power_on();
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(1), s.chunk(1)),
        Err(ChunkError::NeedsErase)
    );
    // A repair copies through the buffer: too small a buffer is an error, not a hang.
    assert_eq!(
        up.erase_step(&mut flash, &mut [0u8; 2]),
        Err(ota_core::StateError::BufferTooSmall)
    );
    erase_all(&mut up, &mut flash);
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(1), s.chunk(1)),
        Ok(ChunkOutcome::Written)
    );
}

/// A slot found programmed but wrong while the device runs (a write that failed without a
/// reset): the chunk is refused, the repair is announced as erase work, and afterwards the
/// chunk is accepted; the chunks recorded in that sector are kept.
#[test]
fn a_bad_slot_found_by_handle_chunk_is_announced_as_erase_work() {
    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 32, 1);
    let mut up = start(&mut flash, &s);
    erase_all(&mut up, &mut flash);
    for i in 0..3 {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    flash.preload((STAGING + 3 * 256 + 40) as u32, &[0x12, 0x34, 0x56, 0x78]);
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(3), s.chunk(3)),
        Err(ChunkError::NeedsErase)
    );
    assert_eq!(up.erase_work(&mut flash).unwrap().steps, 2);
    // No other chunk is taken until the repair ran.
    assert_eq!(
        up.handle_chunk(&mut flash, ChunkIndex(4), s.chunk(4)),
        Err(ChunkError::NeedsErase)
    );
    erase_all(&mut up, &mut flash);
    assert_eq!(
        up.next_missing(&mut flash, ChunkIndex(0)).unwrap(),
        Some(ChunkIndex(3))
    );
    for i in 3..s.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    let mut buf = [0u8; 64];
    up.finish(&mut flash, &mut buf).unwrap();
}

/// A newer offer arrives while the state log has no free slot: `begin` cannot record that it
/// abandons the download in progress, but the erase work it asks for is the state sector and
/// the progress region, never the abandoned download's staging sectors.
#[test]
fn a_superseding_offer_with_a_full_state_log_asks_only_for_the_erases_it_needs() {
    use ota_core::{Persisted, RECORD_LEN};
    let mut flash = Flash::new(&SECTORS);
    let a = sign(7000, 33, 1);
    let b = sign(5000, 34, 2);
    start(&mut flash, &a);
    // Fill the first state sector with copies of the newest record, and leave something in
    // the second: the log is full and its next sector is not blank.
    let mut rec = [0u8; RECORD_LEN];
    rec.copy_from_slice(&flash.contents()[..RECORD_LEN]);
    let newest = Persisted::decode(&rec).unwrap();
    for slot in 1..5u32 {
        Persisted {
            seq: newest.seq + slot,
            ..newest
        }
        .encode(&mut rec);
        flash.preload(slot * RECORD_LEN as u32, &rec);
    }
    flash.preload(1024 + 500, &[0]);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.phase(), Phase::Downloading);
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&b.manifest, &keys).unwrap();
    assert_eq!(up.begin(&mut flash, &offer), Err(BeginError::NeedsErase));
    let w = up.erase_work(&mut flash).unwrap();
    assert_eq!(
        (w.steps, w.bytes),
        (2, 1024 + 2048),
        "the state sector and the progress sector, not a's staging sectors"
    );
    erase_all(&mut up, &mut flash);
    assert_eq!(up.begin(&mut flash, &offer), Ok(Begin::Started));
    let up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(
        up.download_key(),
        Some(ota_core::Sha256Digest::of(&b.manifest))
    );
}
