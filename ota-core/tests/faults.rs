//! Faults other than power cuts, and the state-log and progress guards only they (or an
//! unusual state ring) reach:
//! * a state record whose write fails (a program error, not a cut) as the first record of a
//!   fresh state sector: the sector holding the newest valid record must not be erased;
//! * a record write that reports success but left other bits: the read-back must catch it;
//! * a flash whose state writes keep failing, with a bootloader that retries: once every other
//!   slot failed, the sector holding the newest valid record must not be erased to make room;
//! * a superseding offer whose abandon record is not written (full state ring, or a write
//!   error), then a cut before the new download's record: the old record must not pair with
//!   the new manifest copy, even when both manifests have the same length;
//! * a staging sector's erase marker is written only after the sector is erased.

mod common;

use common::*;
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use ota_core::{
    BeginError, BootConfig, Bootloader, ChunkIndex, Phase, SecurityCounter, Sha256Digest,
    StateError, UpdateResult, Updater, Version,
};
use ota_core::{Persisted, RECORD_LEN};
use ota_flash_sim::{
    Cut, CutKind, Effect, Fault, FaultKind, SimError, Tear, TearPoint, TornErase, TornWord,
};

/// A simulated flash that arms a fault or a power cut for the next write into the state
/// region (or a fault for every one), whichever operation index that write gets.
struct OnStateWrite {
    flash: Flash,
    fault: Option<FaultKind>,
    cut: Option<CutKind>,
    /// A fault for every state write while set: a flash that keeps failing.
    every: Option<FaultKind>,
}

impl OnStateWrite {
    fn new(flash: Flash) -> Self {
        Self {
            flash,
            fault: None,
            cut: None,
            every: None,
        }
    }
}

impl ErrorType for OnStateWrite {
    type Error = SimError;
}
impl ReadNorFlash for OnStateWrite {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        self.flash.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}
impl NorFlash for OnStateWrite {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        self.flash.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        if (LAYOUT.state.start..LAYOUT.state.end).contains(&offset) {
            let at = self.flash.stats().ops;
            if let Some(kind) = self.fault.take().or(self.every) {
                self.flash.inject(Fault { at, kind });
            }
            if let Some(kind) = self.cut.take() {
                self.flash.schedule_cut(Cut { at, kind });
            }
        }
        self.flash.write(offset, bytes)
    }
}

/// Every erase step the updater asks for.
fn erase_all<F: NorFlash>(up: &mut Updater, f: &mut F) {
    let mut buf = [0u8; 256];
    while !up.erase_step(f, &mut buf).unwrap().is_done() {}
}

/// Downloads every chunk of `s` and checks the staged image.
fn download_all<F: NorFlash>(up: &mut Updater, f: &mut F, s: &Signed) {
    erase_all(up, f);
    for i in 0..s.chunks() {
        up.handle_chunk(f, ChunkIndex(i), s.chunk(i)).unwrap();
    }
    let mut buf = [0u8; 256];
    up.finish(f, &mut buf).unwrap();
    assert_eq!(up.phase(), Phase::Downloaded);
}

/// Used slots (valid or not) of state sector `sector` (0 or 1).
fn used_slots(flash: &Flash, sector: usize) -> usize {
    let s = &flash.contents()[sector * 1024..sector * 1024 + 1024];
    s[..1024 / RECORD_LEN * RECORD_LEN]
        .chunks(RECORD_LEN)
        .filter(|slot| slot.iter().any(|&b| b != 0xFF))
        .count()
}

/// Write faults that leave a state record unusable: refused, torn and reported, torn and
/// reported as done (only the read-back tells), not written at all and reported as done.
fn record_faults() -> [FaultKind; 4] {
    let weak_crc = Tear {
        point: TearPoint::LastWord,
        word: TornWord::Partial,
        erase: TornErase::Half,
    };
    [
        FaultKind::Error(Effect::Nothing),
        FaultKind::Error(Effect::Torn(Tear::CLASSIC)),
        FaultKind::Silent(Effect::Torn(weak_crc)),
        FaultKind::Silent(Effect::Nothing),
    ]
}

/// Item A: the record that would open state sector 1 fails to write while sector 0 (full)
/// holds the newest valid record, the provisioning (anti-rollback counter and confirmed
/// image). The erase work the application runs next must not erase sector 0.
#[test]
fn a_failed_first_record_of_a_fresh_state_sector_never_gets_the_newest_record_erased() {
    let factory = sign_with(image(3000, 500), 1, Version::new(1, 0, 0), 2, 256, hw());
    let offer = sign(2500, 501, 3);
    let keys = trusted(&[1]);
    for fault in record_faults() {
        let mut f = OnStateWrite::new(factory_flash(&factory.image));
        let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        let mut buf = [0u8; 256];
        let v = up.verify_offer(&factory.manifest, &keys).unwrap();
        up.provision(&mut f, &v, &mut buf).unwrap();
        let provisioned = up.confirmed_image().unwrap();
        // Four more records fill sector 0: start and cancel a download, twice.
        for _ in 0..2 {
            erase_all(&mut up, &mut f);
            let v = up.verify_offer(&offer.manifest, &keys).unwrap();
            up.begin(&mut f, &v).unwrap();
            up.cancel(&mut f, UpdateResult::Cancelled).unwrap();
        }
        assert_eq!((used_slots(&f.flash, 0), used_slots(&f.flash, 1)), (5, 0));
        erase_all(&mut up, &mut f);

        // The next record opens sector 1, and its write fails.
        f.fault = Some(fault);
        let v = up.verify_offer(&offer.manifest, &keys).unwrap();
        assert!(
            matches!(up.begin(&mut f, &v), Err(BeginError::Flash(_))),
            "{fault:?}: begin did not report the failed record"
        );
        assert!(f.flash.pending_faults().is_empty());
        assert_eq!(used_slots(&f.flash, 0), 5);

        // The application does the erase work it is given (the manifest copy), then retries.
        let sector0 = f.flash.contents()[..1024].to_vec();
        erase_all(&mut up, &mut f);
        assert!(
            f.flash.contents()[..1024] == sector0[..],
            "{fault:?}: erase_step erased the sector holding the newest valid record"
        );
        let up2 = Updater::open(&mut f, LAYOUT, config()).unwrap();
        assert_eq!(up2.confirmed_image(), Some(provisioned), "{fault:?}");
        assert_eq!(up2.policy().stored_counter, SecurityCounter(2), "{fault:?}");

        up.begin(&mut f, &v).unwrap();
        download_all(&mut up, &mut f, &offer);
        let up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        assert_eq!(up.phase(), Phase::Downloaded);
        assert_eq!(up.confirmed_image(), Some(provisioned), "{fault:?}");
        assert_eq!(up.policy().stored_counter, SecurityCounter(2), "{fault:?}");
    }
}

/// Installs `new` over `old` (factory) and boots it on trial.
fn on_trial(old: &Signed, new: &Signed) -> OnStateWrite {
    let mut f = OnStateWrite::new(factory_flash(&old.image));
    let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let mut buf = [0u8; 256];
    let v = up.verify_offer(&old.manifest, &keys).unwrap();
    up.provision(&mut f, &v, &mut buf).unwrap();
    let v = up.verify_offer(&new.manifest, &keys).unwrap();
    up.begin(&mut f, &v).unwrap();
    download_all(&mut up, &mut f, new);
    up.mark_install(&mut f).unwrap();
    let t = Bootloader::open(&mut f, LAYOUT, BootConfig::default())
        .unwrap()
        .run(&mut f, &mut buf, || {})
        .unwrap();
    assert!(t.is_trial());
    f
}

/// Item A: the confirm record's write reports success but the slot does not hold the record.
/// Only the read-back sees it; `mark_confirmed` must fail, so that an application that retries
/// on errors confirms for real. Otherwise the bootloader, finding the trial still unconfirmed,
/// would count boots and revert an image the application (and its server) believe confirmed.
#[test]
fn a_confirm_record_that_reads_back_different_is_not_taken_as_committed() {
    let old = sign_with(image(3000, 510), 1, Version::new(1, 0, 0), 2, 256, hw());
    let new = sign_with(image(3500, 511), 1, Version::new(1, 1, 0), 3, 256, hw());
    for fault in record_faults() {
        let mut f = on_trial(&old, &new);
        let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        assert!(up.is_trial());
        f.fault = Some(fault);
        // The application: confirm, retrying on errors (at most a few times).
        let mut tries = 0;
        loop {
            tries += 1;
            match up.mark_confirmed(&mut f) {
                Ok(()) => break,
                Err(StateError::Flash(_)) if tries < 3 => {}
                Err(e) => panic!("{fault:?}: {e:?}"),
            }
        }
        assert!(!up.is_trial());
        // Reset: the bootloader boots the confirmed image, several times.
        let mut buf = [0u8; 256];
        for _ in 0..4 {
            let t = Bootloader::open(&mut f, LAYOUT, BootConfig::default())
                .unwrap()
                .run(&mut f, &mut buf, || {})
                .unwrap();
            assert!(!t.is_trial(), "{fault:?}: still on trial after a confirm");
        }
        assert_eq!(
            tries, 2,
            "{fault:?}: the failed record passed for committed"
        );
        let up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        assert_eq!(up.status().result, UpdateResult::Success, "{fault:?}");
        assert_eq!(
            up.confirmed_image().map(|c| c.digest),
            Some(Sha256Digest::of(&new.image))
        );
        assert_eq!(up.policy().stored_counter, SecurityCounter(3));
        assert_eq!(f.flash.contents()[ACTIVE..ACTIVE + 3500], new.image[..]);
    }
}

/// Item A, the third guard: a flash whose state writes keep failing, and a bootloader that
/// retries its trial boot-attempt record after each error. Every slot after the newest valid
/// record fails, the log moves on to the next sector (erased ahead of time, as the bootloader
/// may), whose slots fail too; then the only sector left to write is the one holding the
/// newest valid record. Erasing it would leave no valid record at all if the next write failed
/// too: the counter, the confirmed image and the trial would be forgotten.
#[test]
fn a_bootloader_retrying_on_a_failing_flash_never_erases_the_newest_record() {
    let old = sign_with(image(3000, 540), 1, Version::new(1, 0, 0), 2, 256, hw());
    let new = sign_with(image(3500, 541), 1, Version::new(1, 1, 0), 3, 256, hw());
    for every in [
        FaultKind::Error(Effect::Nothing),
        FaultKind::Error(Effect::Torn(Tear::CLASSIC)),
    ] {
        let mut f = on_trial(&old, &new);
        let before = Updater::open(&mut f, LAYOUT, config()).unwrap();
        let (phase, confirmed) = (before.phase(), before.confirmed_image());
        assert_eq!(phase, Phase::Trial);
        let boot_config = BootConfig {
            max_boot_attempts: 200,
            ..BootConfig::default()
        };
        let mut boot = Bootloader::open(&mut f, LAYOUT, boot_config).unwrap();
        f.every = Some(every);
        let mut buf = [0u8; 256];
        // More attempts than the ring has slots.
        let errors = (0..12)
            .filter(|_| boot.step(&mut f, &mut buf).is_err())
            .count();
        assert_eq!(errors, 12, "{every:?}: a record passed on a failing flash");
        f.every = None;
        f.flash.clear_faults();
        let up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        assert_eq!(up.phase(), phase, "{every:?}: the state was lost");
        assert_eq!(up.confirmed_image(), confirmed, "{every:?}");
        assert_eq!(up.policy().stored_counter, SecurityCounter(2), "{every:?}");
        // Once the flash works again, the trial goes on.
        let t = Bootloader::open(&mut f, LAYOUT, boot_config)
            .unwrap()
            .run(&mut f, &mut buf, || {})
            .unwrap();
        assert!(t.is_trial());
    }
}

/// Writes `p` (its sequence number as given) into slot `slot` of state sector `sector`.
fn preload_record(flash: &mut Flash, sector: u32, slot: u32, p: &Persisted) {
    let mut rec = [0u8; RECORD_LEN];
    p.encode(&mut rec);
    flash.preload(sector * 1024 + slot * RECORD_LEN as u32, &rec);
}

/// Two offers whose manifests have the same length (same chunk count), different images.
fn equal_length_offers() -> (Signed, Signed) {
    let x = sign_with(image(5000, 520), 1, Version::new(1, 1, 0), 1, 256, hw());
    let y = sign_with(image(5050, 521), 1, Version::new(1, 2, 0), 1, 256, hw());
    assert_eq!(x.manifest.len(), y.manifest.len());
    (x, y)
}

/// After the cut: the state record and the manifest copy must belong together. The newest
/// record is X's download, the copy is Y's: the download must be dropped, not resumed as X
/// with Y's chunk digests. Then Y downloads and stages normally.
fn after_supersede_cut(f: &mut OnStateWrite, x: &Signed, y: &Signed) {
    let mut up = Updater::open(f, LAYOUT, config()).unwrap();
    let key = up.download_key();
    assert_ne!(
        key,
        Some(Sha256Digest::of(&x.manifest)),
        "X's record paired with Y's manifest copy (header image size {:?})",
        up.download_header().map(|h| h.image_size)
    );
    assert_eq!(key, None);
    assert_eq!(up.phase(), Phase::Idle);
    let keys = trusted(&[1]);
    let v = up.verify_offer(&y.manifest, &keys).unwrap();
    if up.begin(f, &v) == Err(BeginError::NeedsErase) {
        erase_all(&mut up, f);
        up.begin(f, &v).unwrap();
    }
    assert_eq!(up.download_key(), Some(Sha256Digest::of(&y.manifest)));
    download_all(&mut up, f, y);
    assert_eq!(
        up.staged_image().map(|s| s.digest),
        Some(Sha256Digest::of(&y.image))
    );
}

/// Item C: a download X in progress whose record fills the state ring, and an offer Y with a
/// manifest of the same length supersedes it. The abandon record cannot be written (the
/// ring's next sector is not erased yet: `NeedsErase`); the erase work erases the state
/// sector and X's manifest copy; `begin` writes Y's copy, and power is cut before Y's record.
/// The newest record still describes X, and the copy (same length) is Y's: only the check of
/// the copy's digest against the record keeps them apart.
#[test]
fn a_superseding_offer_meeting_a_full_state_ring_never_pairs_the_old_record_with_the_new_copy() {
    let (x, y) = equal_length_offers();
    let keys = trusted(&[1]);
    for kind in CutKind::all().filter(|k| *k != CutKind::After) {
        let mut flash = factory_flash(&image(3000, 522));
        // An earlier life: nine records, sector 0 full and four in sector 1.
        for seq in 1..=9u32 {
            let rec = Persisted {
                seq,
                result: UpdateResult::Cancelled,
                ..Persisted::EMPTY
            };
            let (sector, slot) = if seq <= 5 { (0, seq - 1) } else { (1, seq - 6) };
            preload_record(&mut flash, sector, slot, &rec);
        }
        let mut f = OnStateWrite::new(flash);
        let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        // Begin X without the erase work (the progress region is blank): its record takes the
        // last free slot of the ring.
        let v = up.verify_offer(&x.manifest, &keys).unwrap();
        up.begin(&mut f, &v).unwrap();
        assert_eq!((used_slots(&f.flash, 0), used_slots(&f.flash, 1)), (5, 5));
        up.handle_chunk(&mut f, ChunkIndex(0), x.chunk(0))
            .expect_err("staging not erased yet");
        // Y supersedes X.
        let v = up.verify_offer(&y.manifest, &keys).unwrap();
        assert_eq!(up.begin(&mut f, &v), Err(BeginError::NeedsErase));
        erase_all(&mut up, &mut f);
        assert_eq!(used_slots(&f.flash, 0), 0, "the state sector was erased");
        f.cut = Some(kind);
        assert!(up.begin(&mut f, &v).is_err(), "{kind:?} did not fire");
        assert!(f.flash.is_powered_off());
        f.flash.power_on();
        let copy = &f.flash.contents()[LAYOUT.progress.start as usize..][..y.manifest.len()];
        assert_eq!(copy, &y.manifest[..], "the progress region holds Y's copy");
        after_supersede_cut(&mut f, &x, &y);
    }
}

/// Item C by a write error instead of a full ring: the abandon record fails to write, the
/// application retries the offer (erase work, Y's copy), and power is cut before Y's record.
#[test]
fn a_superseding_offer_whose_abandon_record_failed_never_pairs_the_old_record_with_the_new_copy() {
    let (x, y) = equal_length_offers();
    let keys = trusted(&[1]);
    for fault in record_faults() {
        let mut f = OnStateWrite::new(factory_flash(&image(3000, 523)));
        let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        let v = up.verify_offer(&x.manifest, &keys).unwrap();
        up.begin(&mut f, &v).unwrap();
        erase_all(&mut up, &mut f);
        for i in 0..3 {
            up.handle_chunk(&mut f, ChunkIndex(i), x.chunk(i)).unwrap();
        }
        let v = up.verify_offer(&y.manifest, &keys).unwrap();
        f.fault = Some(fault);
        assert!(
            matches!(up.begin(&mut f, &v), Err(BeginError::Flash(_))),
            "{fault:?}"
        );
        assert_eq!(up.begin(&mut f, &v), Err(BeginError::NeedsErase));
        erase_all(&mut up, &mut f);
        f.cut = Some(CutKind::Before);
        assert!(up.begin(&mut f, &v).is_err());
        f.flash.power_on();
        after_supersede_cut(&mut f, &x, &y);
    }
}

/// Address of staging sector `i`'s erase marker (docs/image-format.md section 3.1): after the
/// manifest copy padded to the write size, one 4-byte word per staging sector.
fn erase_marker(manifest_len: usize, i: usize) -> usize {
    LAYOUT.progress.start as usize + manifest_len.div_ceil(4) * 4 + 4 * i
}

/// Item D: staging holds old data (an earlier image). Power is cut at every operation of the
/// erase work, in every way: whenever a sector's erase marker reads programmed (even torn),
/// the sector reads erased; and the download then completes.
#[test]
fn an_erase_marker_is_written_only_after_its_sector_is_erased() {
    let s = sign(7001, 530, 1);
    let keys = trusted(&[1]);
    let staging: Vec<_> = MAP
        .sectors(LAYOUT.staging)
        .map(|r| r.start as usize..r.end as usize)
        .collect();
    assert_eq!(staging.len(), 3, "the image uses all three staging sectors");
    let fresh = || {
        let mut f = factory_flash(&image(3000, 531));
        f.preload(STAGING as u32, &image(8192, 532));
        let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
        let v = up.verify_offer(&s.manifest, &keys).unwrap();
        up.begin(&mut f, &v).unwrap();
        (f, up)
    };
    let (mut f, mut up) = fresh();
    let first = f.stats().ops;
    erase_all(&mut up, &mut f);
    let ops = f.stats().ops - first;
    assert_eq!(ops, 6, "three erases, three markers");
    let mut points = 0;
    for at in first..first + ops {
        for kind in CutKind::all() {
            let (mut f, mut up) = fresh();
            f.schedule_cut(Cut { at, kind });
            let mut buf = [0u8; 256];
            while up.erase_step(&mut f, &mut buf).is_ok_and(|w| !w.is_done()) {}
            assert!(f.is_powered_off(), "cut {kind:?} at op {at} did not fire");
            f.power_on();
            for (i, r) in staging.iter().enumerate() {
                let m = erase_marker(s.manifest.len(), i);
                let marked = f.contents()[m..m + 4].iter().any(|&b| b != 0xFF);
                if marked {
                    assert!(
                        f.contents()[r.clone()].iter().all(|&b| b == 0xFF),
                        "cut {kind:?} at op {at}: sector {i} marked erased but holds data"
                    );
                }
            }
            let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
            download_all(&mut up, &mut f, &s);
            points += 1;
        }
    }
    assert_eq!(points, 6 * 7);
}
