//! A second, independent implementation of the sleep-guard rules (written from the
//! specification, not from `src/`), run in lock-step with the real `SleepGuard` on random
//! operation sequences; plus hand-written examples of the tricky rules.

mod common;

use common::{Why, ALL, DOWNLOAD_MAX_MS, FLASH_MAX_MS, N};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use sleep_guard::{Class, Decision, Error, GuardConfig, Millis, Reason, ReasonSet, SleepGuard};

const CONFIG: GuardConfig = GuardConfig {
    awake_budget_ms: 1_000,
    max_extension_ms: 1_500,
    max_critical_overrun_ms: 400,
};

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    count: u16,
    level: bool,
    /// On the caller's clock as it reads now (may be negative after a step back).
    lease_until: Option<i128>,
    // Statistics.
    acquires: u32,
    expiries: u32,
    overrides: u32,
    unbalanced: u32,
}

impl Slot {
    /// The specification's definition of "holds at time t".
    fn holds(&self, t: u64) -> bool {
        self.count > 0 || self.level || self.lease_until.is_some_and(|u| u > i128::from(t))
    }

    /// Held by nothing but a lease (so the hold ends by itself).
    fn lease_only(&self) -> bool {
        self.count == 0 && !self.level
    }
}

#[derive(Debug)]
struct Model {
    config: GuardConfig,
    slots: [Slot; N],
    /// On the caller's clock as it reads now (may be negative after a step back).
    deadline: i128,
    /// The latest `now` seen, on the caller's clock as it reads now.
    last: u64,
    /// Total extension granted in the current cycle.
    extended: u64,
    /// Bumped on every change the specification lists; only compared for (in)equality.
    generation: u64,
    // Retained counters.
    forced_sleeps: u32,
    retained_overrides: [u32; N],
    retained_expiries: [u32; N],
    retained_unbalanced: u32,
}

impl Model {
    fn new(config: GuardConfig) -> Self {
        Model {
            config,
            slots: [Slot::default(); N],
            // Before any begin_cycle the cycle started at 0.
            deadline: i128::from(config.awake_budget_ms),
            last: 0,
            extended: 0,
            generation: 0,
            forced_sleeps: 0,
            retained_overrides: [0; N],
            retained_expiries: [0; N],
            retained_unbalanced: 0,
        }
    }

    /// "Critical leases keep the device awake until `deadline + max_critical_overrun_ms`, no
    /// longer."
    fn cap(&self) -> i128 {
        self.deadline + i128::from(self.config.max_critical_overrun_ms)
    }

    /// "A step back counts as no time passing": the call is at the latest time seen, and the
    /// model's whole timeline moves back with the clock, so everything running keeps the time
    /// it had left.
    fn see(&mut self, now: u64) {
        if now < self.last {
            let back = i128::from(self.last - now);
            self.deadline -= back;
            for s in &mut self.slots {
                if let Some(u) = &mut s.lease_until {
                    *u -= back;
                }
            }
        }
        self.last = now;
    }

    fn bump(&mut self) {
        self.generation += 1;
    }

    /// "A lease with lease_until <= now is ended by any call that takes `now`", counted once.
    ///
    /// Every model call that takes `now` starts here, whether or not it then fails.
    fn expire(&mut self, now: u64) {
        self.see(now);
        for i in 0..N {
            if let Some(until) = self.slots[i].lease_until {
                if until <= i128::from(now) {
                    self.slots[i].lease_until = None;
                    self.slots[i].expiries += 1;
                    self.retained_expiries[i] += 1;
                    self.bump();
                }
            }
        }
    }

    fn acquire(&mut self, r: Why, now: u64) -> Result<(), Error> {
        self.expire(now);
        if r.class() == Class::Critical {
            return Err(Error::CriticalNeedsLease);
        }
        let s = &mut self.slots[r.index()];
        if s.count == u16::MAX {
            return Err(Error::Overflow);
        }
        s.count += 1;
        s.acquires += 1;
        self.bump();
        Ok(())
    }

    fn release(&mut self, r: Why, now: u64) -> Result<(), Error> {
        self.expire(now);
        let s = &mut self.slots[r.index()];
        if s.count == 0 {
            s.unbalanced += 1;
            self.retained_unbalanced += 1;
            return Err(Error::Unbalanced);
        }
        s.count -= 1;
        self.bump();
        Ok(())
    }

    fn lease(&mut self, r: Why, ms: u32, now: u64) -> Result<u64, Error> {
        self.expire(now);
        match (r.class(), r.max_lease_ms()) {
            (Class::Critical, None) => return Err(Error::UnboundedCritical),
            (_, Some(m)) if ms > m => return Err(Error::LeaseTooLong { max_ms: m }),
            _ => {}
        }
        // Past the cap a critical lease is refused, but ending one is always allowed.
        if r.class() == Class::Critical && ms > 0 && i128::from(now) >= self.cap() {
            return Err(Error::CriticalOverrunExceeded);
        }
        let s = &mut self.slots[r.index()];
        if ms == 0 {
            // Ends the lease now; not an expiry. (A zero lease that ends nothing changes
            // nothing, so it does not count as a change for token/commit.)
            if s.lease_until.take().is_some() {
                self.bump();
            }
            return Ok(now);
        }
        let until = now + u64::from(ms);
        s.lease_until = Some(i128::from(until));
        s.acquires += 1;
        self.bump();
        Ok(until)
    }

    fn set(&mut self, r: Why, on: bool, now: u64) -> Result<(), Error> {
        self.expire(now);
        if r.class() == Class::Critical {
            return Err(Error::CriticalNeedsLease);
        }
        let s = &mut self.slots[r.index()];
        if s.level != on {
            s.level = on;
            if on {
                s.acquires += 1;
            }
            self.bump();
        }
        Ok(())
    }

    fn begin_cycle(&mut self, now: u64) {
        self.expire(now);
        self.deadline = i128::from(now) + i128::from(self.config.awake_budget_ms);
        self.extended = 0;
        self.bump();
    }

    fn extend(&mut self, by: u32, now: u64) -> Result<u64, Error> {
        self.expire(now);
        let max = u64::from(self.config.max_extension_ms);
        if self.extended + u64::from(by) > max {
            let available = u32::try_from(max - self.extended).unwrap();
            return Err(Error::ExtensionExceeded {
                available_ms: available,
            });
        }
        self.extended += u64::from(by);
        self.deadline += i128::from(by);
        self.bump();
        Ok(out(self.deadline))
    }

    fn decide(&mut self, now: u64) -> Decision<Why> {
        self.expire(now);
        let now = i128::from(now);
        let mut c_bits = 0u32;
        let mut d_bits = 0u32;
        let mut c_min = i128::MAX; // earliest lease end among holding critical reasons
        let mut d_min = i128::MAX; // earliest lease end among lease-only deferrable reasons
        for r in ALL {
            let s = &self.slots[r.index()];
            if !s.holds(self.last) {
                continue;
            }
            let bit = 1u32 << r.index();
            match r.class() {
                Class::Critical => {
                    c_bits |= bit;
                    if let Some(u) = s.lease_until {
                        c_min = c_min.min(u);
                    }
                }
                Class::Deferrable => {
                    d_bits |= bit;
                    if s.lease_only() {
                        if let Some(u) = s.lease_until {
                            d_min = d_min.min(u);
                        }
                    }
                }
            }
        }
        if c_bits != 0 {
            return if now >= self.cap() {
                // The battery comes first: every hold is overridden.
                Decision::Forced {
                    overridden: ReasonSet::from_bits(c_bits | d_bits),
                }
            } else if now < self.deadline {
                Decision::Stay {
                    blockers: ReasonSet::from_bits(c_bits | d_bits),
                    recheck_at: out(c_min.min(d_min).min(self.deadline)),
                }
            } else {
                Decision::Stay {
                    blockers: ReasonSet::from_bits(c_bits),
                    recheck_at: out(c_min.min(self.cap())),
                }
            };
        }
        if d_bits == 0 {
            Decision::Sleep
        } else if now >= self.deadline {
            Decision::Forced {
                overridden: ReasonSet::from_bits(d_bits),
            }
        } else {
            Decision::Stay {
                blockers: ReasonSet::from_bits(d_bits),
                recheck_at: out(d_min.min(self.deadline)),
            }
        }
    }

    /// "A recorded sleep is a change": a token does not commit twice.
    fn record_sleep(&mut self, d: &Decision<Why>) {
        self.bump();
        if let Decision::Forced { overridden } = d {
            self.forced_sleeps += 1;
            for i in 0..N {
                if overridden.bits() & (1 << i) != 0 {
                    self.slots[i].overrides += 1;
                    self.retained_overrides[i] += 1;
                }
            }
        }
    }

    /// The decision, and whether `enter` would have been called.
    fn try_sleep(&mut self, now: u64) -> (Decision<Why>, bool) {
        let d = self.decide(now);
        let enter = !matches!(d, Decision::Stay { .. });
        if enter {
            self.record_sleep(&d);
        }
        (d, enter)
    }

    fn token(&self) -> u64 {
        self.generation
    }

    fn commit(&mut self, token: u64, now: u64) -> Result<Decision<Why>, Decision<Why>> {
        let d = self.decide(now);
        let allows = !matches!(d, Decision::Stay { .. });
        if self.generation == token && allows {
            self.record_sleep(&d);
            Ok(d)
        } else {
            Err(d)
        }
    }

    fn holders(&mut self, now: u64) -> u32 {
        self.expire(now);
        let mut bits = 0;
        for r in ALL {
            if self.slots[r.index()].holds(now) {
                bits |= 1 << r.index();
            }
        }
        bits
    }
}

/// A model time as the guard reports it (it cannot report a time before 0).
fn out(t: i128) -> u64 {
    u64::try_from(t.max(0)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Operations and their generation
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Acquire(Why),
    Release(Why),
    Lease(Why, u32),
    Set(Why, bool),
    Extend(u32),
    BeginCycle,
    Decide,
    TrySleep,
    /// Takes a new token (the previous one is forgotten).
    Token,
    /// Commits the latest token (one taken before the first operation if none since).
    Commit,
    /// Moves the clock; no call.
    Advance(u64),
    /// Moves the clock BACK (not below 0): a wrapped tick, an RTC set back, a racing task;
    /// no call.
    StepBack(u64),
    /// Moves the clock exactly to the end of the awake budget (if still ahead); no call.
    AdvanceToDeadline,
    /// Moves the clock exactly to the end of the critical overrun (if still ahead); no call.
    AdvanceToCap,
    /// Moves the clock exactly to the end of the reason's lease (if any, and ahead); no call.
    AdvanceToLeaseEnd(Why),
}

fn reason() -> impl Strategy<Value = Why> {
    prop::sample::select(ALL.to_vec())
}

fn lease_ms() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(0u32),
        6 => (1..=12u32).prop_map(|k| k * 50),
        4 => 1..=1_000u32,
        // Boundaries of the maximum leases.
        2 => prop::sample::select(vec![
            FLASH_MAX_MS,
            FLASH_MAX_MS + 1,
            DOWNLOAD_MAX_MS,
            DOWNLOAD_MAX_MS + 1,
        ]),
        1 => Just(u32::MAX),
    ]
}

fn extend_ms() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0u32),
        4 => (1..=10u32).prop_map(|k| k * 100),
        2 => 1..=2_000u32,
        1 => Just(CONFIG.max_extension_ms),
        1 => Just(u32::MAX),
    ]
}

fn advance_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        // Multiples of 50 so lease ends and deadlines are hit exactly.
        6 => (1..=12u64).prop_map(|k| k * 50),
        3 => 1..=700u64,
        1 => Just(5_000u64),
    ]
}

fn step_back_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        // A call that raced an interrupt.
        3 => 1..=20u64,
        3 => (1..=12u64).prop_map(|k| k * 50),
        // A wrap: back to (near) zero.
        1 => Just(u64::MAX),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => reason().prop_map(Op::Acquire),
        7 => reason().prop_map(Op::Release),
        9 => (reason(), lease_ms()).prop_map(|(r, ms)| Op::Lease(r, ms)),
        5 => (reason(), any::<bool>()).prop_map(|(r, b)| Op::Set(r, b)),
        3 => extend_ms().prop_map(Op::Extend),
        2 => Just(Op::BeginCycle),
        4 => Just(Op::Decide),
        4 => Just(Op::TrySleep),
        3 => Just(Op::Token),
        3 => Just(Op::Commit),
        9 => advance_ms().prop_map(Op::Advance),
        2 => step_back_ms().prop_map(Op::StepBack),
        2 => Just(Op::AdvanceToDeadline),
        2 => Just(Op::AdvanceToCap),
        3 => reason().prop_map(Op::AdvanceToLeaseEnd),
    ]
}

// ---------------------------------------------------------------------------------------------
// Lock-step runner
// ---------------------------------------------------------------------------------------------

fn compare_counters(
    guard: &SleepGuard<Why, N>,
    model: &Model,
    ctx: &str,
) -> Result<(), TestCaseError> {
    for r in ALL {
        let got = guard.stats(r);
        let want = &model.slots[r.index()];
        prop_assert_eq!(got.acquires, want.acquires, "{}: acquires of {:?}", ctx, r);
        prop_assert_eq!(got.expiries, want.expiries, "{}: expiries of {:?}", ctx, r);
        prop_assert_eq!(
            got.overrides,
            want.overrides,
            "{}: overrides of {:?}",
            ctx,
            r
        );
        prop_assert_eq!(
            got.unbalanced,
            want.unbalanced,
            "{}: unbalanced of {:?}",
            ctx,
            r
        );
    }
    let ret = guard.retained();
    prop_assert!(ret.is_valid(), "{}: retained counters not sealed", ctx);
    prop_assert_eq!(
        ret.forced_sleeps,
        model.forced_sleeps,
        "{}: forced_sleeps",
        ctx
    );
    prop_assert_eq!(
        ret.overrides,
        model.retained_overrides,
        "{}: retained overrides",
        ctx
    );
    prop_assert_eq!(
        ret.expiries,
        model.retained_expiries,
        "{}: retained expiries",
        ctx
    );
    prop_assert_eq!(
        ret.unbalanced,
        model.retained_unbalanced,
        "{}: retained unbalanced",
        ctx
    );
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    // A fresh local guard per case; the clock starts at 0 and mostly moves forward.
    let guard: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
    let mut model = Model::new(CONFIG);
    let mut now: Millis = 0;
    let mut token = (guard.token(), model.token());

    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step} ({op:?}) at t={now}");
        let gen_before = (guard.generation(), model.generation);
        let mut took_now = true;

        match *op {
            Op::Acquire(r) => {
                prop_assert_eq!(guard.acquire(r, now), model.acquire(r, now), "{}", ctx);
            }
            Op::Release(r) => {
                prop_assert_eq!(guard.release(r, now), model.release(r, now), "{}", ctx);
            }
            Op::Lease(r, ms) => {
                prop_assert_eq!(guard.lease(r, ms, now), model.lease(r, ms, now), "{}", ctx);
            }
            Op::Set(r, on) => {
                prop_assert_eq!(guard.set(r, on, now), model.set(r, on, now), "{}", ctx);
            }
            Op::Extend(by) => {
                prop_assert_eq!(guard.extend(by, now), model.extend(by, now), "{}", ctx);
            }
            Op::BeginCycle => {
                guard.begin_cycle(now).unwrap();
                model.begin_cycle(now);
            }
            Op::Decide => {
                prop_assert_eq!(guard.decide(now), model.decide(now), "{}", ctx);
            }
            Op::TrySleep => {
                let mut entered = None;
                let got = guard.try_sleep(now, |d, _| entered = Some(*d));
                let (want, want_enter) = model.try_sleep(now);
                prop_assert_eq!(got, want, "{}", ctx);
                prop_assert_eq!(entered.is_some(), want_enter, "{}: enter called?", ctx);
                if let Some(d) = entered {
                    prop_assert_eq!(d, got, "{}: enter saw another decision", ctx);
                }
            }
            Op::Token => {
                token = (guard.token(), model.token());
                took_now = false;
            }
            Op::Commit => {
                prop_assert_eq!(
                    guard.commit(token.0, now),
                    model.commit(token.1, now),
                    "{}",
                    ctx
                );
            }
            Op::Advance(dt) => {
                now += dt;
                took_now = false;
            }
            Op::StepBack(dt) => {
                now = now.saturating_sub(dt);
                took_now = false;
            }
            Op::AdvanceToDeadline => {
                now = now.max(out(model.deadline));
                took_now = false;
            }
            Op::AdvanceToCap => {
                now = now.max(out(model.cap()));
                took_now = false;
            }
            Op::AdvanceToLeaseEnd(r) => {
                if let Some(until) = model.slots[r.index()].lease_until {
                    // Unbounded leases (u32::MAX ms) would end the interesting part of the run.
                    if until - i128::from(now) <= 10_000 {
                        now = now.max(out(until));
                    }
                }
                took_now = false;
            }
        }

        // The generation changes exactly when the specification says something changed.
        prop_assert_eq!(
            guard.generation() != gen_before.0,
            model.generation != gen_before.1,
            "{}: generation changed?",
            ctx
        );
        compare_counters(&guard, &model, &ctx)?;
        prop_assert_eq!(guard.deadline(), out(model.deadline), "{}: deadline", ctx);
        if took_now {
            // Only after calls that passed `now` (holders itself ends expired leases, which
            // would hide which call ended them after an Advance).
            prop_assert_eq!(
                guard.holders(now).bits(),
                model.holders(now),
                "{}: holders",
                ctx
            );
        }
    }

    let ctx = format!("end at t={now}");
    prop_assert_eq!(
        guard.holders(now).bits(),
        model.holders(now),
        "{}: holders",
        ctx
    );
    for r in ALL {
        prop_assert_eq!(
            guard.is_held(r, now),
            model.slots[r.index()].holds(now),
            "{}: is_held({:?})",
            ctx,
            r
        );
    }
    compare_counters(&guard, &model, &ctx)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn guard_matches_model(ops in prop::collection::vec(op(), 1..=200)) {
        run(&ops)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written examples of the tricky rules (expected values worked out from the specification)
// ---------------------------------------------------------------------------------------------

fn bits(rs: &[Why]) -> ReasonSet<Why> {
    ReasonSet::from_bits(rs.iter().fold(0, |b, r| b | 1 << r.index()))
}

#[test]
fn critical_lease_is_never_overridden_past_the_deadline() {
    let g: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
    g.begin_cycle(100).unwrap(); // deadline 1_100
    g.acquire(Why::Outbox, 200).unwrap();
    assert_eq!(g.lease(Why::FlashWrite, 300, 1_000), Ok(1_300));

    // Before the deadline: everything blocks; recheck at the deadline (before the lease end).
    assert_eq!(
        g.decide(1_050),
        Decision::Stay {
            blockers: bits(&[Why::Outbox, Why::FlashWrite]),
            recheck_at: 1_100,
        }
    );
    // Past the deadline: only the critical lease blocks, until it ends.
    let mut entered = false;
    assert_eq!(
        g.try_sleep(1_100, |_, _| entered = true),
        Decision::Stay {
            blockers: bits(&[Why::FlashWrite]),
            recheck_at: 1_300,
        }
    );
    assert!(!entered);
    assert_eq!(g.stats(Why::Outbox).overrides, 0);
    // The critical lease ends: the deferrable hold is overridden.
    let d = g.try_sleep(1_300, |_, _| entered = true);
    assert_eq!(
        d,
        Decision::Forced {
            overridden: bits(&[Why::Outbox]),
        }
    );
    assert!(entered);
    assert_eq!(g.stats(Why::FlashWrite).expiries, 1);
    assert_eq!(g.stats(Why::Outbox).overrides, 1);
    let ret = g.retained();
    assert_eq!(ret.forced_sleeps, 1);
    assert_eq!(ret.overrides[Why::Outbox.index()], 1);
    assert_eq!(ret.expiries[Why::FlashWrite.index()], 1);
}

#[test]
fn recheck_only_counts_leases_that_end_the_hold() {
    let g: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
    // Deadline 1_000. Outbox: counted AND leased until 100: its lease ending changes nothing.
    g.acquire(Why::Outbox, 0).unwrap();
    assert_eq!(g.lease(Why::Outbox, 100, 0), Ok(100));
    // UpdatePending: level AND leased until 150: same.
    g.set(Why::UpdatePending, true, 0).unwrap();
    assert_eq!(g.lease(Why::UpdatePending, 150, 0), Ok(150));
    // Download: lease only, until 400.
    assert_eq!(g.lease(Why::Download, 400, 0), Ok(400));
    let all = bits(&[Why::Outbox, Why::UpdatePending, Why::Download]);
    assert_eq!(
        g.decide(10),
        Decision::Stay {
            blockers: all,
            recheck_at: 400,
        }
    );
    // With a critical lease the same rule applies to the deferrable side.
    assert_eq!(g.lease(Why::FlashWrite, 300, 200), Ok(500));
    assert_eq!(
        g.decide(200),
        Decision::Stay {
            blockers: ReasonSet::from_bits(all.bits() | 1 << Why::FlashWrite.index()),
            recheck_at: 400,
        }
    );
    // Download's lease ends at 400; the others still hold, the critical one until 500.
    assert_eq!(
        g.decide(400),
        Decision::Stay {
            blockers: bits(&[Why::Outbox, Why::UpdatePending, Why::FlashWrite]),
            recheck_at: 500,
        }
    );
    // Only counted/level holds are left: recheck at the deadline.
    assert_eq!(
        g.decide(500),
        Decision::Stay {
            blockers: bits(&[Why::Outbox, Why::UpdatePending]),
            recheck_at: 1_000,
        }
    );
    assert_eq!(g.stats(Why::Outbox).expiries, 1);
    assert_eq!(g.stats(Why::UpdatePending).expiries, 1);
    assert_eq!(g.stats(Why::Download).expiries, 1);
}

#[test]
fn renewal_replaces_even_a_later_lease() {
    let g: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
    assert_eq!(g.lease(Why::Download, 500, 0), Ok(500));
    // Renewing with a shorter lease moves the end EARLIER.
    assert_eq!(g.lease(Why::Download, 100, 50), Ok(150));
    assert_eq!(
        g.decide(149),
        Decision::Stay {
            blockers: bits(&[Why::Download]),
            recheck_at: 150,
        }
    );
    assert_eq!(g.decide(150), Decision::Sleep);
    assert_eq!(g.stats(Why::Download).acquires, 2);
    assert_eq!(g.stats(Why::Download).expiries, 1);

    // A zero lease ends the lease now without counting an expiry.
    assert_eq!(g.lease(Why::Download, 200, 200), Ok(400));
    assert_eq!(g.lease(Why::Download, 0, 250), Ok(250));
    assert_eq!(g.decide(250), Decision::Sleep);
    assert_eq!(g.stats(Why::Download).expiries, 1);
    assert_eq!(g.stats(Why::Download).acquires, 3);

    // Limits: longer than the maximum, and a critical reason without a maximum.
    assert_eq!(
        g.lease(Why::Download, DOWNLOAD_MAX_MS + 1, 300),
        Err(Error::LeaseTooLong {
            max_ms: DOWNLOAD_MAX_MS
        })
    );
    assert_eq!(
        g.lease(Why::Bootloader, 1, 300),
        Err(Error::UnboundedCritical)
    );
    assert_eq!(
        g.lease(Why::Bootloader, 0, 300),
        Err(Error::UnboundedCritical)
    );
    assert_eq!(g.holders(300), ReasonSet::EMPTY);
}

#[test]
fn extension_is_bounded_per_cycle() {
    let g: SleepGuard<Why, N> = SleepGuard::new(CONFIG); // budget 1_000, max extension 1_500
    assert_eq!(g.deadline(), 1_000);
    assert_eq!(g.extend(1_000, 10), Ok(2_000));
    assert_eq!(
        g.extend(501, 20),
        Err(Error::ExtensionExceeded { available_ms: 500 })
    );
    assert_eq!(g.deadline(), 2_000);
    assert_eq!(g.extend(500, 30), Ok(2_500));
    assert_eq!(
        g.extend(1, 40),
        Err(Error::ExtensionExceeded { available_ms: 0 })
    );
    assert_eq!(g.extend(0, 40), Ok(2_500));
    // A new cycle resets the budget and the extension total; holds are kept.
    g.set(Why::UpdatePending, true, 50).unwrap();
    g.begin_cycle(3_000).unwrap();
    assert_eq!(g.deadline(), 4_000);
    assert_eq!(g.extend(1_500, 3_000), Ok(5_500));
    assert_eq!(
        g.decide(5_499),
        Decision::Stay {
            blockers: bits(&[Why::UpdatePending]),
            recheck_at: 5_500,
        }
    );
    assert_eq!(
        g.decide(5_500),
        Decision::Forced {
            overridden: bits(&[Why::UpdatePending]),
        }
    );
    // decide() alone records nothing.
    assert_eq!(g.stats(Why::UpdatePending).overrides, 0);
    assert_eq!(g.retained().forced_sleeps, 0);
}

#[test]
fn counted_holds_overflow_and_unbalanced_releases() {
    let g: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
    let mut m = Model::new(CONFIG);
    for _ in 0..u16::MAX {
        g.acquire(Why::AwaitAck, 0).unwrap();
        m.acquire(Why::AwaitAck, 0).unwrap();
    }
    assert_eq!(g.acquire(Why::AwaitAck, 0), Err(Error::Overflow));
    assert_eq!(m.acquire(Why::AwaitAck, 0), Err(Error::Overflow));
    assert_eq!(g.stats(Why::AwaitAck).acquires, u32::from(u16::MAX));
    assert_eq!(g.release(Why::AwaitAck, 0), Ok(()));
    assert_eq!(g.acquire(Why::AwaitAck, 0), Ok(()));

    assert_eq!(
        g.acquire(Why::FlashWrite, 0),
        Err(Error::CriticalNeedsLease)
    );
    assert_eq!(
        g.set(Why::FlashWrite, true, 0),
        Err(Error::CriticalNeedsLease)
    );
    // A critical reason is never counted, so releasing it is unbalanced.
    assert_eq!(g.release(Why::FlashWrite, 0), Err(Error::Unbalanced));
    assert_eq!(g.release(Why::Outbox, 0), Err(Error::Unbalanced));
    assert_eq!(g.stats(Why::FlashWrite).unbalanced, 1);
    assert_eq!(g.stats(Why::Outbox).unbalanced, 1);
    assert_eq!(g.retained().unbalanced, 2);
    assert_eq!(g.holders(0), bits(&[Why::AwaitAck]));
}

/// "A lease with lease_until <= now is ended by any call that takes `now`" — including a call
/// that is then refused (the refusal changes no hold, but the lease has already run out).
#[test]
fn refused_calls_still_end_expired_leases() {
    type Call = fn(&SleepGuard<Why, N>, Millis) -> bool;
    let refused: [(&str, Call); 6] = [
        ("acquire(critical)", |g, t| {
            g.acquire(Why::FlashWrite, t).is_err()
        }),
        ("set(critical)", |g, t| {
            g.set(Why::FlashWrite, true, t).is_err()
        }),
        ("lease(unbounded critical)", |g, t| {
            g.lease(Why::Bootloader, 10, t).is_err()
        }),
        ("lease(too long)", |g, t| {
            g.lease(Why::Download, DOWNLOAD_MAX_MS + 1, t).is_err()
        }),
        ("release(unbalanced)", |g, t| {
            g.release(Why::Outbox, t).is_err()
        }),
        ("extend(too much)", |g, t| g.extend(u32::MAX, t).is_err()),
    ];
    let mut not_ended = Vec::new();
    for (name, call) in refused {
        let g: SleepGuard<Why, N> = SleepGuard::new(CONFIG);
        assert_eq!(g.lease(Why::AwaitAck, 50, 0), Ok(50));
        let gen = g.generation();
        assert!(call(&g, 50), "{name} should be refused");
        if g.stats(Why::AwaitAck).expiries != 1 || g.generation() == gen {
            not_ended.push(name);
        }
        // Whatever the call did, the lease does not hold at 50.
        assert!(g.holders(50).is_empty(), "{name}");
        assert_eq!(g.stats(Why::AwaitAck).expiries, 1, "{name}");
    }
    assert!(
        not_ended.is_empty(),
        "these refused calls did not end a lease that had run out: {not_ended:?}"
    );
}
