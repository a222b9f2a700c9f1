//! Power cuts at every flash operation of the whole story — download across sleeps, finish,
//! install, trial boot, confirm — and of the revert story, in the style of MCUboot's simulator.
//!
//! For every mutating operation index `k` of an uninterrupted run and every kind of cut
//! (before the operation, torn in the middle, after it), the device runs until the cut, power
//! returns, and it boots again. Checked throughout:
//! * every time the bootloader hands over, the active slot holds a complete valid image
//!   (the old or the new one): the device never bricks;
//! * the story always ends with the expected confirmed image (new on confirm, old on revert);
//! * no chunk the updater accepted is ever fetched again.

mod common;

use std::collections::HashSet;

use common::*;
use ota_core::{
    BootConfig, Bootloader, ChunkError, ChunkIndex, Phase, State, UpdateResult, Updater,
};
use ota_flash_sim::{Cut, CutKind, SimFlash};

type Sim<const M: bool> = SimFlash<4, 1024, M>;

/// Opens the updater the way a board would for its flash: bit markers where the flash allows
/// clearing bits of a written word.
trait OpenUpdater {
    fn open_updater(&mut self) -> Result<Updater, ota_core::OpenError>;
}
impl OpenUpdater for Sim<false> {
    fn open_updater(&mut self) -> Result<Updater, ota_core::OpenError> {
        Updater::open(self, LAYOUT, config())
    }
}
impl OpenUpdater for Sim<true> {
    fn open_updater(&mut self) -> Result<Updater, ota_core::OpenError> {
        Updater::open_multiwrite(self, LAYOUT, config())
    }
}

fn factory<const M: bool>(old: &[u8]) -> Sim<M> {
    let mut f = Sim::<M>::new(&SECTORS);
    f.preload(ACTIVE as u32, old);
    f
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The new firmware checks in and confirms itself.
    Confirm,
    /// The new firmware never confirms (it crashes before its check-in): revert.
    Revert,
}

/// Everything the device does, from reset, until the story is over or power is lost.
struct Story<'a> {
    old: &'a [u8],
    new: &'a Signed,
    ending: Ending,
    /// Chunks the updater accepted (`handle_chunk` returned Ok).
    had: HashSet<u32>,
    fetched: u64,
    boots: u32,
    trial_boots: u32,
}

#[derive(Debug)]
struct PowerLost;

/// Errors that ask for erase work first.
trait AsksForErase {
    fn asks_for_erase(&self) -> bool;
}
impl AsksForErase for ota_core::BeginError {
    fn asks_for_erase(&self) -> bool {
        *self == ota_core::BeginError::NeedsErase
    }
}
impl AsksForErase for ota_core::FinishError {
    fn asks_for_erase(&self) -> bool {
        *self == ota_core::FinishError::NeedsErase
    }
}
impl AsksForErase for ota_core::StateError {
    fn asks_for_erase(&self) -> bool {
        *self == ota_core::StateError::NeedsErase
    }
}

/// Evaluates a flash call, then returns `PowerLost` from the caller if power is gone.
macro_rules! ck {
    ($flash:expr, $e:expr) => {{
        let r = $e;
        Story::check($flash, r)?
    }};
}

impl<'a> Story<'a> {
    fn new(old: &'a [u8], new: &'a Signed, ending: Ending) -> Self {
        Self {
            old,
            new,
            ending,
            had: HashSet::new(),
            fetched: 0,
            boots: 0,
            trial_boots: 0,
        }
    }

    /// Turns a flash error into `PowerLost` if power is gone; any other error fails the test.
    fn check<T, E: std::fmt::Debug, const M: bool>(
        flash: &Sim<M>,
        r: Result<T, E>,
    ) -> Result<T, PowerLost> {
        match r {
            Ok(v) => Ok(v),
            Err(_) if flash.is_powered_off() => Err(PowerLost),
            Err(e) => panic!("unexpected error with power on: {e:?}"),
        }
    }

    /// All erase work, as the application schedules it (before it powers the modem).
    fn erase_all<const M: bool>(
        flash: &mut Sim<M>,
        up: &mut Updater,
        buf: &mut [u8],
    ) -> Result<(), PowerLost> {
        while !ck!(flash, up.erase_step(flash, buf)).is_done() {}
        Ok(())
    }

    /// Runs `f`; when it asks for erase work, runs it and tries again.
    fn retry<T, E: std::fmt::Debug + AsksForErase, const M: bool>(
        flash: &mut Sim<M>,
        up: &mut Updater,
        buf: &mut [u8],
        mut f: impl FnMut(&mut Updater, &mut Sim<M>) -> Result<T, E>,
    ) -> Result<T, PowerLost> {
        loop {
            match f(up, flash) {
                Err(e) if e.asks_for_erase() && !flash.is_powered_off() => {
                    Self::erase_all(flash, up, buf)?
                }
                r => return Self::check(flash, r),
            }
        }
    }

    /// One power-on: boot, then the application, until the story ends (`Ok(true)`), the
    /// application resets the device (`Ok(false)`) or power is lost.
    fn power_on_once<const M: bool>(&mut self, flash: &mut Sim<M>) -> Result<bool, PowerLost>
    where
        Sim<M>: OpenUpdater,
    {
        self.boots += 1;
        assert!(self.boots < 400, "the device does not make progress");
        let mut buf = [0u8; 512];
        let mut boot = ck!(
            flash,
            Bootloader::open(
                flash,
                LAYOUT,
                BootConfig {
                    max_boot_attempts: 2
                }
            )
        );
        let target = ck!(flash, boot.run(flash, &mut buf, || {}));
        // Never bricked: the active slot holds a whole image.
        let active = &flash.contents()[ACTIVE..];
        let is_old = active[..self.old.len()] == *self.old;
        let is_new = active[..self.new.image.len()] == *self.new.image;
        assert!(
            is_old || is_new,
            "boot {} hands over a broken active slot",
            self.boots
        );
        if target.trial {
            assert!(is_new, "a trial boot must run the new image");
            // The confirmed (old) image must survive the trial, in staging.
            let staging = &flash.contents()[STAGING..];
            assert_eq!(
                &staging[..self.old.len()],
                self.old,
                "confirmed image lost during trial"
            );
            self.trial_boots += 1;
        }

        let mut up = ck!(flash, flash.open_updater());
        if up.is_trial() {
            assert!(is_new);
            match self.ending {
                Ending::Confirm => {
                    Self::retry(flash, &mut up, &mut buf, |up, f| up.mark_confirmed(f))?
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
                assert_eq!(self.ending, Ending::Confirm);
                return Ok(true);
            }
            (State::Idle, UpdateResult::UpdateFailed) => {
                assert!(is_old, "reverted, but the active slot is not the old image");
                assert_eq!(self.ending, Ending::Revert);
                return Ok(true);
            }
            _ => {}
        }

        // The check-in carries the offer (again, if the device lost it).
        let keys = trusted(&[1]);
        if matches!(up.phase(), Phase::Idle | Phase::Downloading) {
            let offer = up
                .verify_offer(&self.new.manifest, &keys)
                .expect("offer verifies");
            Self::retry(flash, &mut up, &mut buf, |up, f| up.begin(f, &offer))?;
        }
        if up.phase() == Phase::Downloading {
            // Before the modem is powered: all erase work.
            Self::erase_all(flash, &mut up, &mut buf)?;
            // Chunks in a scrambled order; the device "sleeps" (drops its RAM) every 7.
            let n = self.new.chunks();
            let mut since_sleep = 0;
            for k in 0..n {
                let i = (k * 11 + 5) % n;
                if ck!(flash, up.next_missing(flash, ChunkIndex(i))) != Some(ChunkIndex(i)) {
                    continue;
                }
                assert!(
                    !self.had.contains(&i),
                    "chunk {i} fetched again after it was accepted"
                );
                self.fetched += 1;
                let data = self.new.chunk(i);
                loop {
                    match up.handle_chunk(flash, ChunkIndex(i), data) {
                        Ok(_) => break,
                        Err(ChunkError::NeedsErase) if !flash.is_powered_off() => {
                            // A torn chunk: repair, keep the chunk, hand it in again.
                            while !ck!(flash, up.erase_step(flash, &mut buf)).is_done() {}
                        }
                        Err(e) => {
                            ck!(flash, Err::<(), _>(e));
                        }
                    }
                }
                self.had.insert(i);
                since_sleep += 1;
                if since_sleep == 7 {
                    since_sleep = 0;
                    up = ck!(flash, flash.open_updater());
                }
            }
            let mut hash_buf = [0u8; 512];
            Self::retry(flash, &mut up, &mut buf, |up, f| {
                up.finish(f, &mut hash_buf)
            })?;
        }
        if up.phase() == Phase::Downloaded {
            Self::retry(flash, &mut up, &mut buf, |up, f| up.mark_install(f))?;
        }
        Ok(false) // reset into the bootloader
    }

    /// Runs until the story ends, powering on again after every reset or cut.
    fn run<const M: bool>(&mut self, flash: &mut Sim<M>) -> u32
    where
        Sim<M>: OpenUpdater,
    {
        let mut cuts = 0;
        loop {
            match self.power_on_once(flash) {
                Ok(true) => return cuts,
                Ok(false) => {}
                Err(PowerLost) => {
                    cuts += 1;
                    flash.power_on();
                }
            }
        }
    }
}

fn images() -> (Vec<u8>, Signed) {
    // The new image is larger than the old one and needs both swap units.
    (image(6000, 100), sign(7000, 200, 3))
}

/// Mutating operations of an uninterrupted run.
fn total_ops<const M: bool>(old: &[u8], new: &Signed, ending: Ending) -> u64
where
    Sim<M>: OpenUpdater,
{
    let mut flash = factory::<M>(old);
    let mut story = Story::new(old, new, ending);
    assert_eq!(story.run(&mut flash), 0);
    assert_eq!(
        story.fetched,
        new.chunks() as u64,
        "an uninterrupted run fetches each chunk once"
    );
    if ending == Ending::Revert {
        assert_eq!(story.trial_boots, 2);
    }
    flash.stats().ops
}

fn every_cut<const M: bool>(ending: Ending)
where
    Sim<M>: OpenUpdater,
{
    let (old, new) = images();
    let n = total_ops::<M>(&old, &new, ending);
    let mut points = 0;
    for at in 0..n {
        for kind in [CutKind::Before, CutKind::Torn, CutKind::After] {
            let mut flash = factory::<M>(&old);
            flash.schedule_cut(Cut { at, kind });
            let mut story = Story::new(&old, &new, ending);
            let cuts = story.run(&mut flash);
            assert_eq!(cuts, 1, "cut {kind:?} at op {at} did not fire exactly once");
            points += 1;
        }
    }
    let markers = if M { "bit" } else { "word" };
    println!(
        "{ending:?}, {markers} markers: {n} flash operations, {points} power-cut points exercised"
    );
}

#[test]
fn power_cut_at_every_operation_confirm_path() {
    every_cut::<false>(Ending::Confirm);
}

#[test]
fn power_cut_at_every_operation_revert_path() {
    every_cut::<false>(Ending::Revert);
}

#[test]
fn power_cut_at_every_operation_bit_markers() {
    every_cut::<true>(Ending::Confirm);
    every_cut::<true>(Ending::Revert);
}

/// Several cuts per run at pseudo-random places, including during recovery.
#[test]
fn repeated_random_power_cuts() {
    let (old, new) = images();
    let n = total_ops::<false>(&old, &new, Ending::Confirm);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let mut total_cuts = 0;
    for run in 0..150 {
        let ending = if run % 2 == 0 {
            Ending::Confirm
        } else {
            Ending::Revert
        };
        let mut flash = factory::<false>(&old);
        let mut story = Story::new(&old, &new, ending);
        let planned = 1 + rnd(5);
        let mut fired = 0;
        flash.schedule_cut(Cut {
            at: rnd(n),
            kind: CutKind::Torn,
        });
        loop {
            match story.power_on_once(&mut flash) {
                Ok(true) => break,
                Ok(false) => {}
                Err(PowerLost) => {
                    fired += 1;
                    flash.power_on();
                    if fired < planned {
                        let kind =
                            [CutKind::Before, CutKind::Torn, CutKind::After][rnd(3) as usize];
                        let at = flash.stats().ops + rnd(n / 2 + 1);
                        flash.schedule_cut(Cut { at, kind });
                    } else {
                        flash.clear_cut();
                    }
                }
            }
        }
        total_cuts += fired;
    }
    println!("random: 150 runs, {total_cuts} cuts");
}
