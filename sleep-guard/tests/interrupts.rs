//! Threads as interrupts: no hold is lost between the check and the sleep.
//!
//! Each "interrupt" thread loops: `acquire(r)` → `HOLDING[i] = true` → work → `HOLDING[i] =
//! false` → `release(r)`. So while a flag is true its reason is held. The "main loop" (the test
//! thread) tries to sleep meanwhile; when the guard lets it enter sleep, no flag may be true.
//!
//! On the host `critical_section::with` is one global, re-entrant mutex (the `std` feature), so
//! a guard call made inside an outer `critical_section::with` is still one critical section
//! with whatever else the outer closure does. The interrupts use that to read the clock, and
//! the `commit` test to inspect the flags and the generation atomically with the commit. The
//! `try_sleep` test does NOT wrap `try_sleep`: its own atomicity is what is tested.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::thread;

use common::{Why, DEFERRABLE, N};
use sleep_guard::{Decision, GuardConfig, Millis, SleepGuard};

/// The awake budget never runs out in these tests, so a sleep is always `Sleep`, never
/// `Forced` (a forced sleep would rightly ignore the holds).
const CONFIG: GuardConfig = GuardConfig {
    awake_budget_ms: u32::MAX,
    max_extension_ms: 0,
    max_critical_overrun_ms: 0,
};

const ITERATIONS: u32 = 20_000;
const INTERRUPTS: usize = DEFERRABLE.len();

/// The only clock. Only the main loop advances it ([`tick`]); an interrupt reads it inside the
/// critical section of its guard call ([`in_cs_at_now`]). So the times the guard sees are
/// non-decreasing in the order of its calls, whichever thread makes them, without wrapping the
/// main loop's `try_sleep` in an outer critical section (which would hide a `try_sleep` that
/// is not atomic by itself).
static CLOCK: AtomicU64 = AtomicU64::new(0);

/// The tests share the clock and the global critical section; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Main loop: the next time.
fn tick() -> Millis {
    CLOCK.fetch_add(1, SeqCst) + 1
}

/// Interrupts: a guard call at the current time, read in the same critical section.
fn in_cs_at_now<T>(f: impl FnOnce(Millis) -> T) -> T {
    critical_section::with(|_| f(CLOCK.load(SeqCst)))
}

fn spin(n: u32) {
    for i in 0..n {
        black_box(i);
        std::hint::spin_loop();
    }
}

type Flags = [AtomicBool; INTERRUPTS];

fn any_holding(flags: &Flags) -> bool {
    flags.iter().any(|f| f.load(SeqCst))
}

/// One interrupt source: takes and lets go of `r` `ITERATIONS` times, with some work while
/// holding and a pseudo-random pause between holds.
fn interrupt(guard: &SleepGuard<Why, N>, holding: &AtomicBool, r: Why, seed: u32) {
    let mut x = seed | 1;
    for i in 0..ITERATIONS {
        in_cs_at_now(|now| guard.acquire(r, now)).expect("acquire");
        holding.store(true, SeqCst);
        spin(20);
        if i.is_multiple_of(64) {
            // Sometimes let the main loop run while holding (needed on a single core).
            thread::yield_now();
        }
        holding.store(false, SeqCst);
        in_cs_at_now(|now| guard.release(r, now)).expect("release");
        // xorshift32 for the pause between holds.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        spin(x % 1_000);
        if i % 4 == 2 {
            // And sometimes while not holding (on a single core these are the only switches).
            thread::yield_now();
        }
    }
}

struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Runs the interrupt threads while `main_loop(running)` runs on this thread; `running` reads
/// true until every interrupt thread is done. Afterwards checks that every hold was let go.
fn with_interrupts(
    guard: &'static SleepGuard<Why, N>,
    flags: &'static Flags,
    main_loop: impl FnOnce(&dyn Fn() -> bool),
) {
    let running = AtomicUsize::new(INTERRUPTS);
    thread::scope(|s| {
        for (i, r) in DEFERRABLE.into_iter().enumerate() {
            let running = &running;
            s.spawn(move || {
                // Counts the thread as done even if it panics, so the main loop ends.
                let _done = Done(running);
                interrupt(
                    guard,
                    &flags[i],
                    r,
                    0x9E37_79B9u32.wrapping_mul(i as u32 + 1),
                );
            });
        }
        main_loop(&|| running.load(SeqCst) > 0);
    });
    assert!(guard.holders(tick()).is_empty(), "a hold was leaked");
    for r in DEFERRABLE {
        let st = guard.stats(r);
        assert_eq!(st.acquires, ITERATIONS, "{r:?}");
        assert_eq!(st.unbalanced, 0, "{r:?}");
    }
}

static TRY_GUARD: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
static TRY_HOLDING: Flags = [const { AtomicBool::new(false) }; INTERRUPTS];

#[test]
fn try_sleep_never_enters_while_an_interrupt_holds() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut sleeps, mut stays, mut violations, mut not_plain_sleep) = (0u64, 0u64, 0u64, 0u64);

    with_interrupts(&TRY_GUARD, &TRY_HOLDING, |running| {
        while running() {
            let mut entered = false;
            let d = TRY_GUARD.try_sleep(tick(), |d, _| {
                // Inside the critical section: no interrupt is between acquire and release.
                entered = true;
                if *d != Decision::Sleep {
                    not_plain_sleep += 1;
                }
                if any_holding(&TRY_HOLDING) {
                    violations += 1;
                }
            });
            assert_eq!(entered, d.allows_sleep());
            if entered {
                sleeps += 1;
            } else {
                stays += 1;
            }
            // Asleep or awake, wait for the next event.
            thread::yield_now();
        }
    });

    println!("try_sleep: {sleeps} sleeps, {stays} refusals, {violations} violations");
    assert_eq!(
        violations, 0,
        "try_sleep entered sleep while an interrupt held a reason"
    );
    assert_eq!(not_plain_sleep, 0, "the budget never runs out here");
    assert!(
        sleeps > 0,
        "never slept: the test did not exercise the sleep path"
    );
    assert!(
        stays > 0,
        "never refused: the interrupts never held anything"
    );
}

static COMMIT_GUARD: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
static COMMIT_HOLDING: Flags = [const { AtomicBool::new(false) }; INTERRUPTS];

#[test]
fn commit_fails_if_anything_changed_since_the_token() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ok = 0u64; // commits that allowed sleep
    let mut changed = 0u64; // refused although the decision allowed sleep: generation moved
    let mut held = 0u64; // refused because something holds
    let mut violations = 0u64; // Ok although a flag was set or the generation had moved
    let mut inconsistent = 0u64; // refused with an unchanged generation and a sleep decision
    let mut round = 0u32;

    with_interrupts(&COMMIT_GUARD, &COMMIT_HOLDING, |running| {
        while running() {
            round = round.wrapping_add(1);
            let (token, gen0) =
                critical_section::with(|_| (COMMIT_GUARD.token(), COMMIT_GUARD.generation()));
            // The work between the decision and the sleep (powering the modem down…).
            spin(round % 64);
            if round.is_multiple_of(4) {
                thread::yield_now();
            }
            // Commit and inspect the outcome in one critical section.
            critical_section::with(|_| match COMMIT_GUARD.commit(token, tick()) {
                Ok(d) => {
                    ok += 1;
                    // The recorded sleep is the one change since the token.
                    if d != Decision::Sleep
                        || COMMIT_GUARD.generation() != gen0.wrapping_add(1)
                        || any_holding(&COMMIT_HOLDING)
                    {
                        violations += 1;
                    }
                }
                Err(d) if d.allows_sleep() => {
                    if COMMIT_GUARD.generation() == gen0 {
                        inconsistent += 1;
                    } else {
                        changed += 1;
                    }
                }
                Err(_) => held += 1,
            });
            // Asleep or awake, wait for the next event.
            thread::yield_now();
        }
    });

    println!(
        "commit: {ok} ok, {changed} refused after a change, {held} refused while held, \
         {violations} violations"
    );
    assert_eq!(
        violations, 0,
        "commit allowed sleep after a change or while held"
    );
    assert_eq!(inconsistent, 0, "commit refused although nothing changed");
    assert!(
        ok > 0,
        "no commit ever succeeded: the sleep path was not exercised"
    );
    assert!(
        changed > 0,
        "no commit was refused because of a change between token and commit"
    );
    assert!(held > 0, "no commit was refused because of a hold");
}
