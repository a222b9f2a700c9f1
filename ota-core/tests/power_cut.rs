//! Power cuts at every flash operation of whole stories — provisioning, a download across
//! sleeps (possibly after a cancelled or superseded one), finish, install, trial boot, confirm
//! or revert — in the style of MCUboot's simulator.
//!
//! For every mutating operation index `k` of an uninterrupted run and every kind of cut in
//! `CutKind::all()` (before the operation, after it, and torn in five shapes: where a write
//! stops, what its torn word reads, how much of a sector an erase erased), the device runs
//! until the cut, power returns, and it boots again. Checked throughout:
//! * every time the bootloader hands over, the active slot holds a complete valid image
//!   (the old or the new one): the device never bricks; on a trial the old one is in staging;
//! * the story always ends with the expected confirmed image (new on confirm, old on revert),
//!   except that a confirm story may end reverted when cuts hit every trial boot before the
//!   new image could confirm itself (at least `MAX_BOOT_ATTEMPTS` cuts while on trial): with
//!   one cut per run that never happens;
//! * the active slot never holds an image older than the stored counter allows, and a
//!   confirmed image stays confirmed unless a newer one is confirmed;
//! * no chunk is ever fetched again once the updater accepted it, or once a cut left its data
//!   completely written in staging;
//! * the stored security counter never falls, and rises only when an image is confirmed (or
//!   when the factory image is provisioned);
//! * no updater call but `erase_step` erases anything;
//! * on a provisioned device whose images use one swap unit, the bytes of both slots past that
//!   unit are never touched.
//!
//! `repeated_random_power_cuts` cuts several times per run at random; its seeds come from
//! `OTA_CUT_SEEDS` (`1..200`, or `10,13,49`; see `cut_seeds`). The double-cut tests cut once at
//! every operation of the swap (every kind) and at every chunk write (every torn shape), and
//! again, in every kind, at every operation of the recovery from that cut: the redo of the
//! interrupted swap stage up to its record, or both stages of the repair of the torn chunk
//! write. `OTA_DOUBLE_CUTS=all` moves the second cut over every operation to the end of the
//! story instead. `scripts/ci.sh` runs 200 seeds and `OTA_DOUBLE_CUTS=all` in release.

mod common;

use std::collections::HashSet;
use std::ops::Range;

use common::*;
use ota_core::{
    BeginError, BootConfig, Bootloader, ChunkError, ChunkIndex, FinishError, Lwm2mState, Phase,
    Policy, SecurityCounter, Sha256Digest, StateError, UpdateResult, Updater, VerifiedManifest,
    Version,
};
use ota_core::{Persisted, RECORD_LEN};
use ota_flash_sim::{Cut, CutKind, SimFlash, Tear};

type Sim<const W: usize, const M: bool> = SimFlash<W, 1024, M>;

/// Boots of an unconfirmed image before the bootloader reverts it.
const MAX_BOOT_ATTEMPTS: u8 = 2;
/// Security counters of the factory (`old`) and the offered (`new`) images.
const OLD_COUNTER: SecurityCounter = SecurityCounter(2);
const NEW_COUNTER: SecurityCounter = SecurityCounter(3);

/// Opens the updater the way a board would for its flash: bit markers where the flash allows
/// clearing bits of a written word.
trait OpenUpdater {
    fn open_updater(&mut self) -> Result<Updater, ota_core::OpenError>;
}
impl<const W: usize> OpenUpdater for Sim<W, false> {
    fn open_updater(&mut self) -> Result<Updater, ota_core::OpenError> {
        Updater::open(self, LAYOUT, config())
    }
}
impl<const W: usize> OpenUpdater for Sim<W, true> {
    fn open_updater(&mut self) -> Result<Updater, ota_core::OpenError> {
        Updater::open_multiwrite(self, LAYOUT, config())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The new firmware checks in and confirms itself.
    Confirm,
    /// The new firmware never confirms (it crashes before its check-in): revert.
    Revert,
}

/// What happens before the device gets the real offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detour {
    None,
    /// Another download starts; after a few chunks the server cancels it.
    Cancel,
    /// Another download starts; after a few chunks a newer offer supersedes it.
    Supersede,
}

#[derive(Debug, Clone, Copy)]
struct Script {
    ending: Ending,
    /// The factory provisions its image at the first boot (the install then swaps only the
    /// units the images use).
    provision: bool,
    detour: Detour,
}

impl Script {
    const fn plain(ending: Ending) -> Self {
        Self {
            ending,
            provision: false,
            detour: Detour::None,
        }
    }
}

/// Chunks of the detour download accepted before it is cancelled or superseded.
const DETOUR_CHUNKS: usize = 3;

struct Images {
    /// The factory image (signed, so that it can be provisioned).
    old: Signed,
    new: Signed,
    /// The detour's download.
    other: Signed,
}

impl Images {
    /// 6000 → 7001 bytes: both swap units; the last chunk (89 bytes) ends in a padded word.
    fn two_units() -> Self {
        Self {
            old: sign_with(image(6000, 100), 1, Version::new(1, 0, 0), 2, 256, hw()),
            new: sign_with(image(7001, 200), 1, Version::new(1, 3, 0), 3, 256, hw()),
            other: sign_with(image(5000, 300), 1, Version::new(1, 2, 0), 3, 256, hw()),
        }
    }

    /// 3000 → 3501 bytes: one 4 KiB swap unit once the device is provisioned.
    fn one_unit() -> Self {
        Self {
            old: sign_with(image(3000, 110), 1, Version::new(1, 0, 0), 2, 256, hw()),
            new: sign_with(image(3501, 210), 1, Version::new(1, 3, 0), 3, 256, hw()),
            other: sign_with(image(2000, 310), 1, Version::new(1, 2, 0), 3, 256, hw()),
        }
    }
}

/// What a provisioned one-unit story must never touch: both slots past the first unit.
const UNIT: usize = 4096;
fn sentinel(salt: u8) -> Vec<u8> {
    (0..UNIT)
        .map(|i| (i as u8).wrapping_mul(7) ^ salt)
        .collect()
}

fn factory<const W: usize, const M: bool>(imgs: &Images, script: Script) -> Sim<W, M> {
    let mut f = Sim::<W, M>::new(&SECTORS);
    f.preload(ACTIVE as u32, &imgs.old.image);
    if script.provision {
        assert!(imgs.old.image.len() <= UNIT && imgs.new.image.len() <= UNIT);
        f.preload((ACTIVE + UNIT) as u32, &sentinel(0xA5));
        f.preload((STAGING + UNIT) as u32, &sentinel(0x5A));
    }
    f
}

/// Everything the device does, from reset, until the story is over or power is lost; and
/// what the test (the "cloud") remembers across resets.
#[derive(Clone)]
struct Story<'a> {
    imgs: &'a Images,
    script: Script,
    /// Chunks of `new` (0) and `other` (1) that must never be fetched again.
    had: [HashSet<u32>; 2],
    /// The chunk a cut may have interrupted.
    in_chunk: Option<(usize, u32)>,
    fetched: u64,
    boots: u32,
    trial_boots: u32,
    /// The detour download got its chunks; the server moved on.
    detour_done: bool,
    /// The stored security counter seen last.
    counter: SecurityCounter,
    /// The confirmed image seen last (its digest).
    confirmed: Option<Sha256Digest>,
    /// Cuts after which the stored phase was Trial: the trial image lost a boot attempt
    /// without confirming.
    trial_cuts: u32,
    /// The story ended with the old image back (planned, or after cuts in every trial boot).
    reverted: bool,
    /// Operations done inside the bootloader (install, trial, revert), by power-on.
    boot_ops: Vec<Range<u64>>,
    /// Operations done inside `handle_chunk` calls.
    chunk_ops: Vec<Range<u64>>,
    /// Offers verified so far, by manifest and policy. `verify_offer` is a pure function of
    /// those (and the key ring): the device verifies at every wake, the test remembers the
    /// answer, because Ed25519 in a debug build dominates the double-cut runs otherwise.
    verified: Vec<(*const u8, Policy, VerifiedManifest<'a>)>,
}

#[derive(Debug)]
struct PowerLost;

/// Errors that ask for erase work first.
trait AsksForErase {
    fn asks_for_erase(&self) -> bool;
}
impl AsksForErase for BeginError {
    fn asks_for_erase(&self) -> bool {
        *self == BeginError::NeedsErase
    }
}
impl AsksForErase for FinishError {
    fn asks_for_erase(&self) -> bool {
        *self == FinishError::NeedsErase
    }
}
impl AsksForErase for StateError {
    fn asks_for_erase(&self) -> bool {
        *self == StateError::NeedsErase
    }
}
impl AsksForErase for ChunkError {
    fn asks_for_erase(&self) -> bool {
        *self == ChunkError::NeedsErase
    }
}

/// Turns a flash error into `PowerLost` if power is gone; any other error fails the test.
fn check<T, E: std::fmt::Debug, const W: usize, const M: bool>(
    flash: &Sim<W, M>,
    r: Result<T, E>,
) -> Result<T, PowerLost> {
    match r {
        Ok(v) => Ok(v),
        Err(_) if flash.is_powered_off() => Err(PowerLost),
        Err(e) => panic!("unexpected error with power on: {e:?}"),
    }
}

/// Evaluates a flash call, then returns `PowerLost` from the caller if power is gone.
macro_rules! pc {
    ($flash:expr, $e:expr) => {{
        let r = $e;
        check($flash, r)?
    }};
}

/// As `pc!`, for an updater call that must not erase.
macro_rules! ck {
    ($flash:expr, $e:expr) => {{
        let erases = $flash.stats().erases;
        let r = $e;
        assert_eq!(
            $flash.stats().erases,
            erases,
            "a call other than erase_step erased"
        );
        check($flash, r)?
    }};
}

/// All erase work, as the application schedules it (before it powers the modem).
fn erase_all<const W: usize, const M: bool>(
    flash: &mut Sim<W, M>,
    up: &mut Updater,
) -> Result<(), PowerLost> {
    let mut buf = [0u8; 256];
    while !pc!(flash, up.erase_step(flash, &mut buf)).is_done() {}
    Ok(())
}

/// Runs `f` (which must not erase); when it asks for erase work, runs it and tries again.
fn retry<T, E: std::fmt::Debug + AsksForErase, const W: usize, const M: bool>(
    flash: &mut Sim<W, M>,
    up: &mut Updater,
    mut f: impl FnMut(&mut Updater, &mut Sim<W, M>) -> Result<T, E>,
) -> Result<T, PowerLost> {
    loop {
        let erases = flash.stats().erases;
        let r = f(up, flash);
        assert_eq!(
            flash.stats().erases,
            erases,
            "a call other than erase_step erased"
        );
        match r {
            Err(e) if e.asks_for_erase() && !flash.is_powered_off() => erase_all(flash, up)?,
            r => return check(flash, r),
        }
    }
}

/// True if staging holds chunk `i` of `s` completely (data, then erased padding).
fn slot_holds<const W: usize, const M: bool>(flash: &Sim<W, M>, s: &Signed, i: u32) -> bool {
    let at = STAGING + i as usize * s.chunk_size as usize;
    let data = s.chunk(i);
    let padded = data.len().div_ceil(W) * W;
    let slot = &flash.contents()[at..at + padded];
    slot[..data.len()] == *data && slot[data.len()..].iter().all(|&b| b == 0xFF)
}

impl<'a> Story<'a> {
    fn new(imgs: &'a Images, script: Script) -> Self {
        Self {
            imgs,
            script,
            had: [HashSet::new(), HashSet::new()],
            in_chunk: None,
            fetched: 0,
            boots: 0,
            trial_boots: 0,
            detour_done: false,
            counter: SecurityCounter(0),
            confirmed: None,
            trial_cuts: 0,
            reverted: false,
            boot_ops: Vec::new(),
            chunk_ops: Vec::new(),
            verified: Vec::new(),
        }
    }

    /// `up.verify_offer(manifest)` with the test's key ring; it must accept.
    fn verify(&mut self, up: &Updater, manifest: &'a [u8]) -> VerifiedManifest<'a> {
        let policy = up.policy();
        let key = (manifest.as_ptr(), policy);
        if let Some(&(_, _, v)) = self.verified.iter().find(|(m, p, _)| (*m, *p) == key) {
            return v;
        }
        let v = up
            .verify_offer(manifest, &trusted(&[1]))
            .expect("the offer verifies");
        self.verified.push((key.0, key.1, v));
        v
    }

    /// Power returns after a cut: what the cloud and the test learn from it.
    fn after_cut<const W: usize, const M: bool>(&mut self, flash: &mut Sim<W, M>) {
        // A chunk whose data the cut left complete in staging is done: the device must never
        // ask for it again.
        if let Some((which, i)) = self.in_chunk.take() {
            if slot_holds(flash, self.signed(which), i) {
                self.had[which].insert(i);
            }
        }
        flash.power_on();
        let boot = Bootloader::open(
            flash,
            LAYOUT,
            BootConfig {
                max_boot_attempts: MAX_BOOT_ATTEMPTS,
                step_bytes: 1024,
            },
        )
        .expect("the state region reads");
        if boot.phase() == Phase::Trial {
            self.trial_cuts += 1;
        }
    }

    fn signed(&self, which: usize) -> &'a Signed {
        [&self.imgs.new, &self.imgs.other][which]
    }

    /// The stored counter never falls, and rises only to the counter of an image that just
    /// became the confirmed one: the new image on confirm, the factory image on provisioning.
    fn check_counter(&mut self, up: &Updater) {
        let c = up.policy().stored_counter;
        assert!(
            c >= self.counter,
            "stored counter fell: {c:?} < {:?}",
            self.counter
        );
        if c > self.counter {
            let confirmed = up
                .confirmed_image()
                .expect("counter rose with no confirmed image");
            if confirmed.digest == Sha256Digest::of(&self.imgs.old.image) {
                assert!(self.script.provision);
                assert_eq!(c, OLD_COUNTER, "provisioning set another counter");
            } else {
                assert_eq!(confirmed.digest, Sha256Digest::of(&self.imgs.new.image));
                assert_eq!(self.script.ending, Ending::Confirm);
                assert_eq!(c, NEW_COUNTER, "confirm set another counter");
                assert!(!up.is_trial(), "counter rose during the trial");
            }
        }
        self.counter = c;
        // A confirmed image stays confirmed, unless a newer one is confirmed.
        let now = up.confirmed_image().map(|i| i.digest);
        if let Some(prev) = self.confirmed {
            let newer = now == Some(Sha256Digest::of(&self.imgs.new.image)) && c == NEW_COUNTER;
            assert!(
                now == Some(prev) || newer,
                "confirmed image {prev:?} replaced by {now:?}"
            );
        }
        if now.is_some() {
            self.confirmed = now;
        }
    }

    /// Downloads chunks of `new` (0) or `other` (1) in a scrambled order, "sleeping" (dropping
    /// RAM state) every 7 chunks, until all are in or `limit` of them are.
    fn download<const W: usize, const M: bool>(
        &mut self,
        flash: &mut Sim<W, M>,
        up: &mut Updater,
        which: usize,
        limit: usize,
    ) -> Result<(), PowerLost>
    where
        Sim<W, M>: OpenUpdater,
    {
        let s = self.signed(which);
        // Before the modem is powered: all erase work.
        erase_all(flash, up)?;
        let n = s.chunks();
        let mut since_sleep = 0;
        for k in 0..n {
            if self.had[which].len() >= limit {
                break;
            }
            let i = (k * 11 + 5) % n;
            if ck!(flash, up.next_missing(flash, ChunkIndex(i))) != Some(ChunkIndex(i)) {
                continue;
            }
            assert!(
                !self.had[which].contains(&i),
                "chunk {i} of image {which} fetched again"
            );
            self.fetched += 1;
            self.in_chunk = Some((which, i));
            let from = flash.stats().ops;
            let r = retry(flash, up, |up, f| {
                up.handle_chunk(f, ChunkIndex(i), s.chunk(i))
            });
            self.chunk_ops.push(from..flash.stats().ops);
            r?;
            self.in_chunk = None;
            self.had[which].insert(i);
            since_sleep += 1;
            if since_sleep == 7 {
                since_sleep = 0;
                *up = ck!(flash, flash.open_updater());
            }
        }
        Ok(())
    }

    /// One power-on: boot, then the application, until the story ends (`Ok(true)`), the
    /// application resets the device (`Ok(false)`) or power is lost.
    fn power_on_once<const W: usize, const M: bool>(
        &mut self,
        flash: &mut Sim<W, M>,
    ) -> Result<bool, PowerLost>
    where
        Sim<W, M>: OpenUpdater,
    {
        self.boots += 1;
        assert!(self.boots < 400, "the device does not make progress");
        let (old, new) = (&self.imgs.old, &self.imgs.new);
        let mut buf = [0u8; 512];
        let mut boot = pc!(
            flash,
            Bootloader::open(
                flash,
                LAYOUT,
                BootConfig {
                    max_boot_attempts: MAX_BOOT_ATTEMPTS,
                    step_bytes: 1024,
                },
            )
        );
        let from = flash.stats().ops;
        let target = boot.run(flash, &mut buf, || {});
        self.boot_ops.push(from..flash.stats().ops);
        let target = check(flash, target)?;
        // Never bricked: the active slot holds a whole image.
        let active = &flash.contents()[ACTIVE..];
        let is_old = active[..old.image.len()] == *old.image;
        let is_new = active[..new.image.len()] == *new.image;
        assert!(
            is_old || is_new,
            "boot {} hands over a broken active slot",
            self.boots
        );
        // Never an image older than the stored counter allows.
        let active_counter = if is_new { NEW_COUNTER } else { OLD_COUNTER };
        assert!(
            active_counter >= self.counter,
            "boot {} hands over an image older than the stored counter allows",
            self.boots
        );
        if self.script.provision {
            let c = flash.contents();
            assert!(
                c[ACTIVE + UNIT..ACTIVE + 2 * UNIT] == sentinel(0xA5),
                "active past the swapped unit was touched"
            );
            assert!(
                c[STAGING + UNIT..STAGING + 2 * UNIT] == sentinel(0x5A),
                "staging past the swapped unit was touched"
            );
        }
        if target.is_trial() {
            assert!(is_new, "a trial boot must run the new image");
            // The confirmed (old) image must survive the trial, in staging.
            let staging = &flash.contents()[STAGING..];
            assert_eq!(
                &staging[..old.image.len()],
                &old.image[..],
                "confirmed image lost during trial"
            );
            self.trial_boots += 1;
        }

        let mut up = ck!(flash, flash.open_updater());
        self.check_counter(&up);
        if up.is_trial() {
            assert!(is_new);
            match self.script.ending {
                Ending::Confirm => {
                    retry(flash, &mut up, |up, f| up.mark_confirmed(f))?;
                    self.check_counter(&up);
                }
                Ending::Revert => return Ok(false), // crashes before confirming: reset
            }
        }
        let st = up.status();
        match (st.state, st.result) {
            (Lwm2mState::Idle, UpdateResult::Success) => {
                assert!(
                    is_new,
                    "confirmed, but the active slot is not the new image"
                );
                assert_eq!(self.script.ending, Ending::Confirm);
                return Ok(true);
            }
            (Lwm2mState::Idle, UpdateResult::UpdateFailed) => {
                assert!(is_old, "reverted, but the active slot is not the old image");
                if self.script.ending == Ending::Confirm {
                    // Correct only if every trial boot was cut before the image confirmed.
                    assert!(
                        self.trial_cuts >= u32::from(MAX_BOOT_ATTEMPTS),
                        "a confirm story reverted after only {} cuts during the trial",
                        self.trial_cuts
                    );
                }
                self.reverted = true;
                return Ok(true);
            }
            _ => {}
        }

        // Before the modem is powered: all erase work.
        erase_all(flash, &mut up)?;
        if self.script.provision && up.confirmed_image().is_none() {
            let offer = self.verify(&up, &self.imgs.old.manifest);
            retry(flash, &mut up, |up, f| up.provision(f, &offer, &mut buf))?;
            self.check_counter(&up);
        }
        let other = &self.imgs.other;
        if self.script.detour != Detour::None && !self.detour_done {
            let offer = self.verify(&up, &self.imgs.other.manifest);
            retry(flash, &mut up, |up, f| up.begin(f, &offer))?;
            self.download(flash, &mut up, 1, DETOUR_CHUNKS)?;
            self.detour_done = true;
        }
        if self.script.detour == Detour::Cancel
            && up.download_key() == Some(Sha256Digest::of(&other.manifest))
        {
            retry(flash, &mut up, |up, f| {
                up.cancel(f, UpdateResult::Cancelled)
            })?;
        }
        // The check-in carries the offer (again, if the device lost it).
        if matches!(up.phase(), Phase::Idle | Phase::Downloading) {
            let offer = self.verify(&up, &self.imgs.new.manifest);
            retry(flash, &mut up, |up, f| up.begin(f, &offer))?;
        }
        if up.phase() == Phase::Downloading {
            self.download(flash, &mut up, 0, usize::MAX)?;
            let mut hash_buf = [0u8; 512];
            retry(flash, &mut up, |up, f| up.finish(f, &mut hash_buf))?;
        }
        if up.phase() == Phase::Downloaded {
            retry(flash, &mut up, |up, f| up.mark_install(f))?;
        }
        Ok(false) // reset into the bootloader
    }

    /// Runs until the story ends, powering on again after every reset or cut; returns the
    /// number of cuts.
    fn run<const W: usize, const M: bool>(&mut self, flash: &mut Sim<W, M>) -> u32
    where
        Sim<W, M>: OpenUpdater,
    {
        let mut cuts = 0;
        loop {
            match self.power_on_once(flash) {
                Ok(true) => break,
                Ok(false) => {}
                Err(PowerLost) => {
                    cuts += 1;
                    self.after_cut(flash);
                }
            }
        }
        self.check_end(flash);
        cuts
    }

    fn check_end<const W: usize, const M: bool>(&self, flash: &Sim<W, M>) {
        let confirmed_new = self.script.ending == Ending::Confirm && !self.reverted;
        let want = match (confirmed_new, self.script.provision) {
            (true, _) => NEW_COUNTER,
            (false, true) => OLD_COUNTER,
            (false, false) => SecurityCounter(0),
        };
        assert_eq!(self.counter, want, "stored counter at the end");
        if self.script.ending == Ending::Revert {
            assert!(self.reverted, "a revert story ended confirmed");
        }
        if self.script.provision {
            // Sectors past the first unit of both slots: never erased.
            for s in [7, 9, 10] {
                assert_eq!(flash.erase_count(s), 0, "sector {s} erased");
            }
        }
    }
}

/// An uninterrupted run: its mutating operations and what the story recorded.
fn uninterrupted<'a, const W: usize, const M: bool>(
    imgs: &'a Images,
    script: Script,
) -> (u64, Story<'a>)
where
    Sim<W, M>: OpenUpdater,
{
    let mut flash = factory::<W, M>(imgs, script);
    let mut story = Story::new(imgs, script);
    assert_eq!(story.run(&mut flash), 0);
    let detour = if script.detour == Detour::None {
        0
    } else {
        DETOUR_CHUNKS as u64
    };
    assert_eq!(
        story.fetched,
        imgs.new.chunks() as u64 + detour,
        "an uninterrupted run fetches each chunk once"
    );
    if script.ending == Ending::Revert {
        assert_eq!(story.trial_boots, 2);
    }
    (flash.stats().ops, story)
}

/// Mutating operations of an uninterrupted run.
fn total_ops<const W: usize, const M: bool>(imgs: &Images, script: Script) -> u64
where
    Sim<W, M>: OpenUpdater,
{
    uninterrupted::<W, M>(imgs, script).0
}

/// Cuts at every operation with every kind of cut; returns the number of cut points.
fn every_cut<const W: usize, const M: bool>(imgs: &Images, script: Script) -> u64
where
    Sim<W, M>: OpenUpdater,
{
    let n = total_ops::<W, M>(imgs, script);
    let mut points = 0;
    for at in 0..n {
        for kind in CutKind::all() {
            let mut flash = factory::<W, M>(imgs, script);
            flash.schedule_cut(Cut { at, kind });
            let mut story = Story::new(imgs, script);
            let cuts = story.run(&mut flash);
            assert_eq!(cuts, 1, "cut {kind:?} at op {at} did not fire exactly once");
            points += 1;
        }
    }
    let markers = if M { "bit" } else { "word" };
    println!(
        "{script:?}, write size {W}, {markers} markers: {n} flash operations, {points} \
         power-cut points exercised"
    );
    points
}

#[test]
fn power_cut_at_every_operation_confirm_path() {
    every_cut::<4, false>(&Images::two_units(), Script::plain(Ending::Confirm));
}

#[test]
fn power_cut_at_every_operation_revert_path() {
    every_cut::<4, false>(&Images::two_units(), Script::plain(Ending::Revert));
}

#[test]
fn power_cut_at_every_operation_bit_markers() {
    let imgs = Images::two_units();
    every_cut::<4, true>(&imgs, Script::plain(Ending::Confirm));
    every_cut::<4, true>(&imgs, Script::plain(Ending::Revert));
}

/// A 16-byte write size: the manifest copy (632 bytes) and the last chunk (89 bytes) both end
/// in a padded word, so the tail writes of `write_padded` are cut too.
#[test]
fn power_cut_at_every_operation_padded_tails() {
    let imgs = Images::two_units();
    assert_ne!(imgs.new.manifest.len() % 16, 0);
    every_cut::<16, false>(&imgs, Script::plain(Ending::Confirm));
    every_cut::<16, true>(&imgs, Script::plain(Ending::Revert));
}

/// Provisioning, then an install that swaps one unit of two: cut at every operation, the
/// second unit of both slots is never touched.
#[test]
fn power_cut_at_every_operation_provisioned_partial_swap() {
    let imgs = Images::one_unit();
    for ending in [Ending::Confirm, Ending::Revert] {
        every_cut::<4, false>(
            &imgs,
            Script {
                ending,
                provision: true,
                detour: Detour::None,
            },
        );
    }
}

/// A download cancelled, or superseded by a newer offer, before the real one.
#[test]
fn power_cut_at_every_operation_cancel_and_supersede() {
    let imgs = Images::two_units();
    for detour in [Detour::Cancel, Detour::Supersede] {
        every_cut::<4, false>(
            &imgs,
            Script {
                ending: Ending::Confirm,
                provision: false,
                detour,
            },
        );
    }
}

/// Sequence number of the newest valid state record in `flash`, if any.
fn newest_record<const W: usize, const M: bool>(flash: &Sim<W, M>) -> Option<u32> {
    let state = &flash.contents()[..LAYOUT.state.end as usize];
    state
        .chunks(1024)
        .flat_map(|sector| sector.chunks_exact(RECORD_LEN))
        .filter_map(|slot| Persisted::decode(slot.try_into().ok()?))
        .map(|r| r.seq)
        .max()
}

/// Runs the story until the scheduled cut fires (`true`) or the story ends (`false`).
fn run_until_cut<const W: usize, const M: bool>(story: &mut Story, flash: &mut Sim<W, M>) -> bool
where
    Sim<W, M>: OpenUpdater,
{
    loop {
        match story.power_on_once(flash) {
            Ok(true) => return false,
            Ok(false) => {}
            Err(PowerLost) => return true,
        }
    }
}

/// How far a recovery reaches.
#[derive(Debug, Clone, Copy)]
enum Window {
    /// Every operation from power-on until `n` more state records are committed: for a swap
    /// stage (1) its redo; for a torn chunk write (2) both stages of the repair.
    Records(u32),
    /// Every operation until the story ends.
    All,
}

/// How many operations, counted from the power-on after a first cut (`flash` and `story` as
/// power returned), the recovery takes: the first operation after which `window` is reached.
fn recovery_len<const W: usize, const M: bool>(
    flash: &Sim<W, M>,
    story: &Story,
    rest: u64,
    window: Window,
) -> u64
where
    Sim<W, M>: OpenUpdater,
{
    let Window::Records(n) = window else {
        return rest;
    };
    let from = flash.stats().ops;
    let want = newest_record(flash).map_or(n, |s| s + n);
    // Records only get newer: binary search for the first operation that commits the record.
    let committed = |j: u64| {
        let (mut f, mut s) = (flash.clone(), story.clone());
        f.schedule_cut(Cut {
            at: j,
            kind: CutKind::After,
        });
        run_until_cut(&mut s, &mut f);
        newest_record(&f).is_some_and(|seq| seq >= want)
    };
    let (mut lo, mut hi) = (from, from + rest);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if committed(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo - from + 1).min(rest)
}

/// What a double-cut test ran.
#[derive(Debug, Default)]
struct DoubleTally {
    /// First cuts.
    firsts: u64,
    /// First cuts that left the device as an earlier one did (flash and what the cloud
    /// remembers): their second cuts were already run.
    firsts_same: u64,
    /// Double-cut points run (first cut, second cut of every kind at every operation of the
    /// recovery).
    points: u64,
    /// Points whose second cut left the device as an earlier point did: the rest of the story
    /// (deterministic from there) was already checked.
    points_same: u64,
    /// The longest recovery, in operations.
    longest: u64,
}

impl Story<'_> {
    /// A fingerprint of everything that decides how the story continues after power returns:
    /// the flash and what the cloud and the test remember.
    fn fingerprint<const W: usize, const M: bool>(&self, flash: &Sim<W, M>) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        flash.contents().hash(&mut h);
        for had in &self.had {
            let mut v: Vec<u32> = had.iter().copied().collect();
            v.sort_unstable();
            v.hash(&mut h);
        }
        (
            self.trial_cuts,
            self.detour_done,
            self.counter,
            self.confirmed,
        )
            .hash(&mut h);
        h.finish()
    }
}

/// Two cuts per run: a first cut at each `(op, kind)` of `firsts`; when power returns, a
/// second cut at every operation of the recovery (see [`Window`]), in every kind. Each run
/// starts from a copy of the flash and of the story taken when power returned after the first
/// cut.
fn double_cuts<const W: usize, const M: bool>(
    imgs: &Images,
    script: Script,
    firsts: &[(u64, CutKind)],
    window: Window,
) -> DoubleTally
where
    Sim<W, M>: OpenUpdater,
{
    let mut t = DoubleTally::default();
    let (mut seen, mut after_second) = (HashSet::new(), HashSet::new());
    for &(at, kind) in firsts {
        let mut flash = factory::<W, M>(imgs, script);
        let mut story = Story::new(imgs, script);
        flash.schedule_cut(Cut { at, kind });
        assert!(
            run_until_cut(&mut story, &mut flash),
            "cut {kind:?} at op {at} did not fire"
        );
        story.after_cut(&mut flash);
        t.firsts += 1;
        // Two first cuts that leave the same flash and the same test state recover the same
        // way: run the second cuts once.
        if !seen.insert(story.fingerprint(&flash)) {
            t.firsts_same += 1;
            continue;
        }
        let from = flash.stats().ops;
        // The rest of the story without a second cut.
        let rest = {
            let (mut f, mut s) = (flash.clone(), story.clone());
            assert_eq!(s.run(&mut f), 0);
            f.stats().ops - from
        };
        let len = recovery_len(&flash, &story, rest, window);
        t.longest = t.longest.max(len);
        for second in from..from + len {
            for kind2 in CutKind::all() {
                let (mut f, mut s) = (flash.clone(), story.clone());
                f.schedule_cut(Cut {
                    at: second,
                    kind: kind2,
                });
                assert!(
                    run_until_cut(&mut s, &mut f),
                    "second cut {kind2:?} at op {second} (after {kind:?} at {at}) did not fire"
                );
                s.after_cut(&mut f);
                t.points += 1;
                if !after_second.insert(s.fingerprint(&f)) {
                    t.points_same += 1;
                    continue;
                }
                assert_eq!(s.run(&mut f), 0);
            }
        }
    }
    t
}

/// `OTA_DOUBLE_CUTS=all` makes the second cut hit every operation after power returns, to the
/// end of the story, instead of the recovery only.
fn window(recovery: Window) -> Window {
    match std::env::var("OTA_DOUBLE_CUTS").as_deref() {
        Ok("all") => Window::All,
        Ok(v) => panic!("OTA_DOUBLE_CUTS: {v:?} (only \"all\" is known)"),
        Err(_) => recovery,
    }
}

/// The install and the revert swap of a provisioned one-unit device: a cut at every bootloader
/// operation, in every kind, then a second cut at every operation of the recovery (the redo of
/// the interrupted stage, up to its record), in every kind.
#[test]
fn double_power_cuts_during_the_swap() {
    let imgs = Images::one_unit();
    let script = Script {
        ending: Ending::Revert,
        provision: true,
        detour: Detour::None,
    };
    let (_, story) = uninterrupted::<4, false>(&imgs, script);
    let firsts: Vec<(u64, CutKind)> = story
        .boot_ops
        .iter()
        .flat_map(|r| r.clone())
        .flat_map(|at| CutKind::all().map(move |k| (at, k)))
        .collect();
    let w = window(Window::Records(1));
    let t = double_cuts::<4, false>(&imgs, script, &firsts, w);
    println!("double cuts, swap ({script:?}), second cut window {w:?}: {t:?}");
}

/// A download on a provisioned one-unit device: a torn cut (every shape) at every chunk data
/// write, which leaves a slot only a repair cleans; then a second cut at every operation of
/// the recovery (both repair stages, up to the second one's record), in every kind.
#[test]
fn double_power_cuts_during_the_repair() {
    let imgs = Images::one_unit();
    let script = Script {
        ending: Ending::Confirm,
        provision: true,
        detour: Detour::None,
    };
    let (_, story) = uninterrupted::<4, false>(&imgs, script);
    let firsts: Vec<(u64, CutKind)> = story
        .chunk_ops
        .iter()
        .flat_map(|r| Tear::VARIANTS.map(|t| (r.start, CutKind::TornWith(t))))
        .collect();
    let w = window(Window::Records(2));
    let t = double_cuts::<4, false>(&imgs, script, &firsts, w);
    println!("double cuts, repair ({script:?}), second cut window {w:?}: {t:?}");
}

/// The seeds of `repeated_random_power_cuts`: `OTA_CUT_SEEDS` as `a..b` (inclusive), a comma
/// list, or one number; by default the historic seed and the seeds 10, 13, 49 and 59, whose
/// runs revert a confirm story after cuts in every trial boot (the oracle once called that a
/// failure).
fn cut_seeds() -> Vec<u64> {
    let Ok(v) = std::env::var("OTA_CUT_SEEDS") else {
        return vec![0x2545_F491_4F6C_DD1D, 10, 13, 49, 59];
    };
    let num = |t: &str| -> u64 {
        t.trim()
            .parse()
            .unwrap_or_else(|_| panic!("OTA_CUT_SEEDS: {t:?} is not a number"))
    };
    let seeds: Vec<u64> = match v.split_once("..") {
        Some((a, b)) => (num(a)..=num(b)).collect(),
        None => v.split(',').map(num).collect(),
    };
    assert!(
        !seeds.is_empty() && !seeds.contains(&0),
        "OTA_CUT_SEEDS: {v:?} gives no seed, or seed 0 (xorshift needs a non-zero seed)"
    );
    seeds
}

/// What one seed of random cuts did.
#[derive(Default)]
struct RandomTally {
    runs: u32,
    cuts: u32,
    /// Confirm stories that ended reverted (cuts in every trial boot).
    reverted: u32,
}

/// 200 runs of the four scripts in turn, each with 1 to 5 cuts at pseudo-random places and of
/// random kinds (the first anywhere, the next ones within half a story after power returns,
/// so often during the recovery), all drawn from `seed`.
fn random_cuts(seed: u64, scripts: &[(&Images, Script)], ops: &[u64], t: &mut RandomTally) {
    let kinds: Vec<CutKind> = CutKind::all().collect();
    let mut state = seed;
    let mut rnd = move |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % m
    };
    for run in 0..200 {
        let (imgs, script) = scripts[run % scripts.len()];
        let n = ops[run % scripts.len()];
        let mut flash = factory::<4, false>(imgs, script);
        let mut story = Story::new(imgs, script);
        let planned = 1 + rnd(5);
        let mut fired = 0;
        flash.schedule_cut(Cut {
            at: rnd(n),
            kind: kinds[rnd(kinds.len() as u64) as usize],
        });
        loop {
            match story.power_on_once(&mut flash) {
                Ok(true) => break,
                Ok(false) => {}
                Err(PowerLost) => {
                    fired += 1;
                    story.after_cut(&mut flash);
                    if fired < planned {
                        let kind = kinds[rnd(kinds.len() as u64) as usize];
                        let at = flash.stats().ops + rnd(n / 2 + 1);
                        flash.schedule_cut(Cut { at, kind });
                    } else {
                        flash.clear_cut();
                    }
                }
            }
        }
        story.check_end(&flash);
        t.runs += 1;
        t.cuts += fired as u32;
        if story.reverted && script.ending == Ending::Confirm {
            t.reverted += 1;
        }
    }
}

/// Several cuts per run at pseudo-random places and of random kinds, including during
/// recovery, for every seed of `cut_seeds` (set `OTA_CUT_SEEDS` to run others).
#[test]
fn repeated_random_power_cuts() {
    let (two, one) = (Images::two_units(), Images::one_unit());
    let scripts = [
        (&two, Script::plain(Ending::Confirm)),
        (&two, Script::plain(Ending::Revert)),
        (
            &one,
            Script {
                ending: Ending::Confirm,
                provision: true,
                detour: Detour::Supersede,
            },
        ),
        (
            &one,
            Script {
                ending: Ending::Revert,
                provision: true,
                detour: Detour::Cancel,
            },
        ),
    ];
    let ops: Vec<u64> = scripts
        .iter()
        .map(|&(imgs, script)| total_ops::<4, false>(imgs, script))
        .collect();
    let seeds = cut_seeds();
    let mut t = RandomTally::default();
    for &seed in &seeds {
        let before = t.reverted;
        random_cuts(seed, &scripts, &ops, &mut t);
        if t.reverted > before {
            println!(
                "random: seed {seed}: {} confirm stories reverted after cuts in every trial boot",
                t.reverted - before
            );
        }
    }
    println!(
        "random: {} seeds, {} runs, {} cuts, {} confirm stories reverted after cuts in every \
         trial boot",
        seeds.len(),
        t.runs,
        t.cuts,
        t.reverted
    );
}
