//! No hidden flash erase: across many update cycles (begin, cancel, a superseding offer, chunks,
//! sleeps, finish, install, trial, confirm or revert) that wrap the state ring many times, no
//! call erases except `Updater::erase_step` and the bootloader's install and revert steps, and
//! `erase_work` announces exactly what the erase steps then erase.

mod common;

use std::fmt::Debug;

use common::*;
use ota_core::{
    BeginError, BootConfig, BootStep, Bootloader, ChunkError, ChunkIndex, FinishError, Phase,
    StateError, UpdateResult, Updater, Version,
};

/// Erase calls so far (in sectors, as the simulator counts them).
fn erases(flash: &Flash) -> u64 {
    flash.stats().erases
}

/// Evaluates `$e` and fails if it erased anything.
macro_rules! quiet {
    ($flash:expr, $what:expr, $e:expr) => {{
        let before = erases(&$flash);
        let r = $e;
        assert_eq!(erases(&$flash), before, "{} erased flash", $what);
        r
    }};
}

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

struct App {
    flash: Flash,
    /// Calls refused with NeedsErase (the retry path must be exercised).
    asked_for_erase: u32,
    /// Erase steps run, and state-sector erases among them.
    erase_steps: u32,
}

impl App {
    /// Runs every erase step `erase_work` announces, checking that they erase exactly what it
    /// announced, one erase call per step.
    fn erase_all(&mut self, up: &mut Updater) {
        let flash = &mut self.flash;
        let work = quiet!(flash, "erase_work", up.erase_work(flash).unwrap());
        let before = flash.stats();
        let mut left = work;
        let mut steps = 0;
        while !left.is_done() {
            let e = erases(flash);
            let mut buf = [0u8; 256];
            left = up.erase_step(flash, &mut buf).unwrap();
            assert_eq!(erases(flash) - e, 1, "one erase per step");
            steps += 1;
        }
        let after = flash.stats();
        assert_eq!(steps, work.steps, "erase_work announced {work:?}");
        assert_eq!(
            after.bytes_erased - before.bytes_erased,
            u64::from(work.bytes),
            "erase_work announced {work:?}"
        );
        // Nothing left: a step now does nothing.
        let mut buf = [0u8; 256];
        assert!(
            quiet!(flash, "idle erase_step", up.erase_step(flash, &mut buf))
                .unwrap()
                .is_done()
        );
        self.erase_steps += steps;
    }

    /// Calls `f` (which must not erase); when it asks for erase work, runs the erase steps and
    /// calls it again.
    fn call<T, E: Debug + AsksForErase>(
        &mut self,
        up: &mut Updater,
        what: &str,
        mut f: impl FnMut(&mut Updater, &mut Flash) -> Result<T, E>,
    ) -> T {
        for _ in 0..2 {
            match quiet!(self.flash, what, f(up, &mut self.flash)) {
                Ok(v) => return v,
                Err(e) if e.asks_for_erase() => {
                    self.asked_for_erase += 1;
                    self.erase_all(up);
                }
                Err(e) => panic!("{what}: {e:?}"),
            }
        }
        panic!("{what} still asks for erase work after all erase steps ran")
    }

    fn open(&mut self) -> Updater {
        quiet!(
            self.flash,
            "open",
            Updater::open(&mut self.flash, LAYOUT, config()).unwrap()
        )
    }

    fn begin(&mut self, up: &mut Updater, s: &Signed) {
        let keys = trusted(&[1]);
        let offer = up.verify_offer(&s.manifest, &keys).unwrap();
        self.call(up, "begin", |up, f| up.begin(f, &offer));
    }

    fn chunks(&mut self, up: &mut Updater, s: &Signed, which: impl Iterator<Item = u32>) {
        for i in which {
            self.call(up, "handle_chunk", |up, f| {
                up.handle_chunk(f, ChunkIndex(i), s.chunk(i))
            });
        }
    }

    /// Resets into the bootloader and boots; only install and revert steps may erase.
    fn boot(&mut self) -> ota_core::BootTarget {
        let flash = &mut self.flash;
        let mut bl = quiet!(
            flash,
            "Bootloader::open",
            Bootloader::open(flash, LAYOUT, BootConfig::default()).unwrap()
        );
        let mut buf = [0u8; 512];
        loop {
            let phase = bl.phase();
            let before = erases(flash);
            let step = bl.step(flash, &mut buf).unwrap();
            if !matches!(phase, Phase::Installing | Phase::Reverting) {
                assert_eq!(erases(flash), before, "a boot step in {phase:?} erased");
            }
            if let BootStep::Boot(t) = step {
                return t;
            }
        }
    }
}

#[test]
fn only_erase_steps_and_the_install_erase_across_many_update_cycles() {
    let factory = sign_with(image(3000, 1), 1, Version::new(1, 0, 0), 1, 256, hw());
    let mut app = App {
        flash: factory_flash(&factory.image),
        asked_for_erase: 0,
        erase_steps: 0,
    };
    let keys = trusted(&[1]);
    let mut up = app.open();
    let offer = up.verify_offer(&factory.manifest, &keys).unwrap();
    let mut buf = [0u8; 256];
    app.call(&mut up, "provision", |up, f| {
        up.provision(f, &offer, &mut buf)
    });

    let mut confirmed = 0;
    for round in 0..16u32 {
        let counter = round + 2;
        let new = sign_with(
            image(2500 + 350 * (round as usize % 12), 100 + round),
            1,
            Version::new(2, round as u16, 0),
            counter,
            256,
            hw(),
        );
        let decoy = sign_with(
            image(5000, 200 + round),
            1,
            Version::new(3, round as u16, 0),
            counter,
            256,
            hw(),
        );
        // Wake 1. Most wakes run the erase work first (before the modem); some do not, so that
        // state changes find the state log full and must ask for it.
        let mut up = app.open();
        if round % 3 != 0 {
            app.erase_all(&mut up);
        }
        match round % 4 {
            1 => {
                // Starts a download, then the server cancels it.
                app.begin(&mut up, &decoy);
                app.erase_all(&mut up);
                app.chunks(&mut up, &decoy, 0..3);
                app.call(&mut up, "cancel", |up, f| {
                    up.cancel(f, UpdateResult::Cancelled)
                });
                assert_eq!(up.phase(), Phase::Idle);
            }
            2 => {
                // Starts a download that a newer offer then supersedes.
                app.begin(&mut up, &decoy);
                app.erase_all(&mut up);
                app.chunks(&mut up, &decoy, 0..3);
            }
            _ => {}
        }
        app.begin(&mut up, &new);
        app.erase_all(&mut up);
        let half = new.chunks() / 2;
        app.chunks(&mut up, &new, 0..half);
        // Deep sleep; wake 2 continues.
        let mut up = app.open();
        if round % 2 == 0 {
            app.erase_all(&mut up);
        }
        app.chunks(&mut up, &new, half..new.chunks());
        let mut hash = [0u8; 128];
        app.call(&mut up, "finish", |up, f| up.finish(f, &mut hash));
        app.call(&mut up, "mark_install", |up, f| up.mark_install(f));
        assert!(app.boot().is_trial());
        let mut up = app.open();
        if round % 5 == 3 {
            app.call(&mut up, "mark_failed", |up, f| up.mark_failed(f));
            assert!(!app.boot().is_trial());
            let up = app.open();
            assert_eq!(up.status().result, UpdateResult::UpdateFailed);
        } else {
            if round % 3 == 1 {
                app.erase_all(&mut up);
            }
            app.call(&mut up, "mark_confirmed", |up, f| up.mark_confirmed(f));
            confirmed += 1;
            assert!(!app.boot().is_trial());
        }
        assert_eq!(
            app.open().confirmed_image().unwrap().digest != factory_digest(&factory),
            confirmed > 0
        );
    }
    let state_erases = app.flash.erase_count(0) + app.flash.erase_count(1);
    println!(
        "16 update cycles: {state_erases} state-sector erases, {} erase steps, {} calls asked \
         for erase work first",
        app.erase_steps, app.asked_for_erase
    );
    assert!(
        state_erases >= 20,
        "the state ring wrapped only {state_erases} times"
    );
    assert!(
        app.asked_for_erase > 0,
        "the NeedsErase path was not exercised"
    );
}

fn factory_digest(s: &Signed) -> ota_core::Sha256Digest {
    ota_core::Sha256Digest::of(&s.image)
}
