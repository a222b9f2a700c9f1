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
//! * the story always ends with the expected confirmed image (new on confirm, old on revert);
//! * no chunk is ever fetched again once the updater accepted it, or once a cut left its data
//!   completely written in staging;
//! * the stored security counter never falls, and rises only when an image is confirmed (or
//!   when the factory image is provisioned);
//! * no updater call but `erase_step` erases anything;
//! * on a provisioned device whose images use one swap unit, the bytes of both slots past that
//!   unit are never touched.

mod common;

use std::collections::HashSet;

use common::*;
use ota_core::{
    BeginError, BootConfig, Bootloader, ChunkError, ChunkIndex, FinishError, Phase,
    SecurityCounter, Sha256Digest, State, StateError, UpdateResult, Updater, Version,
};
use ota_flash_sim::{Cut, CutKind, SimFlash};

type Sim<const W: usize, const M: bool> = SimFlash<W, 1024, M>;

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
                assert_eq!(c, SecurityCounter(2), "provisioning set another counter");
            } else {
                assert_eq!(confirmed.digest, Sha256Digest::of(&self.imgs.new.image));
                assert_eq!(self.script.ending, Ending::Confirm);
                assert_eq!(c, SecurityCounter(3), "confirm set another counter");
                assert!(!up.is_trial(), "counter rose during the trial");
            }
        }
        self.counter = c;
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
            retry(flash, up, |up, f| {
                up.handle_chunk(f, ChunkIndex(i), s.chunk(i))
            })?;
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
                    max_boot_attempts: 2,
                    step_bytes: 1024,
                },
            )
        );
        let target = pc!(flash, boot.run(flash, &mut buf, || {}));
        // Never bricked: the active slot holds a whole image.
        let active = &flash.contents()[ACTIVE..];
        let is_old = active[..old.image.len()] == *old.image;
        let is_new = active[..new.image.len()] == *new.image;
        assert!(
            is_old || is_new,
            "boot {} hands over a broken active slot",
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
        if target.trial {
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
            (State::Idle, UpdateResult::Success) => {
                assert!(
                    is_new,
                    "confirmed, but the active slot is not the new image"
                );
                assert_eq!(self.script.ending, Ending::Confirm);
                return Ok(true);
            }
            (State::Idle, UpdateResult::UpdateFailed) => {
                assert!(is_old, "reverted, but the active slot is not the old image");
                assert_eq!(self.script.ending, Ending::Revert);
                return Ok(true);
            }
            _ => {}
        }

        // Before the modem is powered: all erase work.
        erase_all(flash, &mut up)?;
        let keys = trusted(&[1]);
        if self.script.provision && up.confirmed_image().is_none() {
            let offer = up.verify_offer(&old.manifest, &keys).expect("factory");
            retry(flash, &mut up, |up, f| up.provision(f, &offer, &mut buf))?;
            self.check_counter(&up);
        }
        let other = &self.imgs.other;
        if self.script.detour != Detour::None && !self.detour_done {
            let offer = up.verify_offer(&other.manifest, &keys).expect("offer");
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
            let offer = up.verify_offer(&new.manifest, &keys).expect("offer");
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
                    // A chunk whose data the cut left complete in staging is done: the device
                    // must never ask for it again.
                    if let Some((which, i)) = self.in_chunk.take() {
                        if slot_holds(flash, self.signed(which), i) {
                            self.had[which].insert(i);
                        }
                    }
                    flash.power_on();
                }
            }
        }
        self.check_end(flash);
        cuts
    }

    fn check_end<const W: usize, const M: bool>(&self, flash: &Sim<W, M>) {
        let want = match (self.script.ending, self.script.provision) {
            (Ending::Confirm, _) => SecurityCounter(3),
            (Ending::Revert, true) => SecurityCounter(2),
            (Ending::Revert, false) => SecurityCounter(0),
        };
        assert_eq!(self.counter, want, "stored counter at the end");
        if self.script.provision {
            // Sectors past the first unit of both slots: never erased.
            for s in [7, 9, 10] {
                assert_eq!(flash.erase_count(s), 0, "sector {s} erased");
            }
        }
    }
}

/// Mutating operations of an uninterrupted run.
fn total_ops<const W: usize, const M: bool>(imgs: &Images, script: Script) -> u64
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
    flash.stats().ops
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

/// Several cuts per run at pseudo-random places and of random kinds, including during
/// recovery.
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
    let kinds: Vec<CutKind> = CutKind::all().collect();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let mut total_cuts = 0;
    for run in 0..200 {
        let (imgs, script) = scripts[run % scripts.len()];
        let n = total_ops::<4, false>(imgs, script);
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
                    if let Some((which, i)) = story.in_chunk.take() {
                        if slot_holds(&flash, story.signed(which), i) {
                            story.had[which].insert(i);
                        }
                    }
                    flash.power_on();
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
        total_cuts += fired;
    }
    println!("random: 200 runs, {total_cuts} cuts");
}
