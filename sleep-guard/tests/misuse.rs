//! Misuse is a clear error that changes nothing; the rules of the decision, one by one.

use sleep_guard::{Class, Decision, Error, GuardConfig, Reason, ReasonSet, Retained, SleepGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum R {
    Pending,
    Download,
    Erase,
    Unbounded,
}

impl Reason for R {
    const COUNT: usize = 4;
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(i: usize) -> Option<Self> {
        [R::Pending, R::Download, R::Erase, R::Unbounded]
            .get(i)
            .copied()
    }
    fn name(self) -> &'static str {
        match self {
            R::Pending => "pending",
            R::Download => "download",
            R::Erase => "erase",
            R::Unbounded => "unbounded",
        }
    }
    fn class(self) -> Class {
        match self {
            R::Erase | R::Unbounded => Class::Critical,
            _ => Class::Deferrable,
        }
    }
    fn max_lease_ms(self) -> Option<u32> {
        match self {
            R::Erase => Some(2_000),
            R::Download => Some(30_000),
            _ => None,
        }
    }
}

fn guard() -> SleepGuard<R, 4> {
    SleepGuard::new(GuardConfig {
        awake_budget_ms: 10_000,
        max_extension_ms: 5_000,
        max_critical_overrun_ms: 5_000,
    })
}

fn set(rs: &[R]) -> ReasonSet<R> {
    ReasonSet::from_bits(rs.iter().fold(0, |b, r| b | 1 << r.index()))
}

#[test]
fn unbalanced_release_is_an_error_and_counted() {
    let g = guard();
    assert_eq!(g.release(R::Pending, 5), Err(Error::Unbalanced));
    assert_eq!(g.stats(R::Pending).unbalanced, 1);
    assert_eq!(g.retained().unbalanced, 1);
    assert_eq!(
        g.decide(6),
        Decision::Sleep,
        "an unbalanced release must not leave a hold"
    );
    g.acquire(R::Pending, 7).unwrap();
    g.release(R::Pending, 8).unwrap();
    assert_eq!(g.release(R::Pending, 9), Err(Error::Unbalanced));
}

#[test]
fn counter_overflow_is_an_error() {
    let g = guard();
    for _ in 0..u16::MAX {
        g.acquire(R::Pending, 0).unwrap();
    }
    let generation = g.generation();
    assert_eq!(g.acquire(R::Pending, 0), Err(Error::Overflow));
    assert_eq!(
        g.generation(),
        generation,
        "a refused acquire changed state"
    );
    for _ in 0..u16::MAX {
        g.release(R::Pending, 1).unwrap();
    }
    assert_eq!(g.decide(1), Decision::Sleep);
}

#[test]
fn critical_reasons_must_be_bounded_leases() {
    let g = guard();
    assert_eq!(g.acquire(R::Erase, 0), Err(Error::CriticalNeedsLease));
    assert_eq!(g.set(R::Erase, true, 0), Err(Error::CriticalNeedsLease));
    assert_eq!(g.lease(R::Unbounded, 100, 0), Err(Error::UnboundedCritical));
    assert_eq!(
        g.lease(R::Erase, 2_001, 0),
        Err(Error::LeaseTooLong { max_ms: 2_000 })
    );
    assert_eq!(
        g.lease(R::Download, 30_001, 0),
        Err(Error::LeaseTooLong { max_ms: 30_000 })
    );
    assert_eq!(g.holders(0), ReasonSet::EMPTY);
    assert_eq!(g.lease(R::Erase, 2_000, 0), Ok(2_000));
}

#[test]
fn extension_is_bounded_per_cycle() {
    let g = guard();
    g.begin_cycle(1_000).unwrap();
    assert_eq!(g.deadline(), 11_000);
    assert_eq!(g.extend(3_000, 1_000), Ok(14_000));
    assert_eq!(
        g.extend(2_001, 1_000),
        Err(Error::ExtensionExceeded {
            available_ms: 2_000
        })
    );
    assert_eq!(g.deadline(), 14_000);
    assert_eq!(g.extend(2_000, 1_000), Ok(16_000));
    // A new cycle starts a new budget.
    g.begin_cycle(50_000).unwrap();
    assert_eq!(g.extend(5_000, 50_000), Ok(65_000));
}

#[test]
fn critical_lease_outlives_the_budget_but_deferrable_holds_do_not() {
    let g = guard();
    g.begin_cycle(0).unwrap();
    g.set(R::Pending, true, 0).unwrap();
    g.lease(R::Erase, 2_000, 9_000).unwrap();
    // Past the budget: the erase still holds, the pending update waits for it.
    assert_eq!(
        g.decide(10_500),
        Decision::Stay {
            blockers: set(&[R::Erase]),
            recheck_at: 11_000
        }
    );
    // The erase ends: the deferrable hold is overridden.
    let mut entered = None;
    let d = g.try_sleep(11_000, |d, _| entered = Some(*d));
    assert_eq!(
        d,
        Decision::Forced {
            overridden: set(&[R::Pending])
        }
    );
    assert_eq!(entered, Some(d));
    assert_eq!(g.stats(R::Pending).overrides, 1);
    assert_eq!(g.stats(R::Erase).expiries, 1);
    let kept = g.retained();
    assert_eq!(kept.forced_sleeps, 1);
    assert_eq!(kept.overrides[R::Pending.index()], 1);
}

#[test]
fn stay_says_when_to_look_again() {
    let g = guard();
    g.begin_cycle(0).unwrap();
    g.lease(R::Download, 4_000, 1_000).unwrap();
    assert_eq!(
        g.decide(1_500),
        Decision::Stay {
            blockers: set(&[R::Download]),
            recheck_at: 5_000
        }
    );
    // A counted hold on top: the lease's end no longer frees it; the budget does.
    g.acquire(R::Download, 1_600).unwrap();
    assert_eq!(
        g.decide(1_700),
        Decision::Stay {
            blockers: set(&[R::Download]),
            recheck_at: 10_000
        }
    );
}

#[test]
fn hold_statistics_and_raii() {
    let g = guard();
    {
        let h = g.hold(R::Pending, 100).unwrap();
        assert!(g.is_held(R::Pending, 150));
        h.release(400).unwrap();
    }
    {
        let _h = g.hold(R::Pending, 1_000).unwrap();
        let _ = g.decide(1_900); // the guard sees time pass
    } // dropped: released at the latest time seen
    let s = g.stats(R::Pending);
    assert_eq!(s.acquires, 2);
    assert_eq!(s.longest_hold_ms, 900);
    assert_eq!(s.total_hold_ms, 300 + 900);
    assert_eq!(g.decide(2_000), Decision::Sleep);
}

#[test]
fn retained_counters_survive_and_detect_garbage() {
    let g = guard();
    g.begin_cycle(0).unwrap();
    g.set(R::Pending, true, 0).unwrap();
    assert!(g.try_sleep(10_000, |_, _| {}).allows_sleep());
    let saved = g.retained();
    assert!(saved.is_valid());
    // Deep sleep: RAM is lost, backup SRAM kept the counters.
    let g2 = guard();
    assert!(g2.restore(&saved));
    g2.begin_cycle(0).unwrap();
    assert_eq!(g2.retained().forced_sleeps, 1);
    assert_eq!(g2.retained().cycles, 2);
    // SRAM that lost power is refused.
    let mut garbage = saved;
    garbage.forced_sleeps = 0xDEAD;
    assert!(!garbage.is_valid());
    assert!(!g2.restore(&garbage));
    assert!(Retained::<4>::new().is_valid());
}

/// The README's own need: save the retained counters from inside `enter`, just before
/// STANDBY. The call must not panic, and the saved copy must already count this sleep; `enter`
/// also gets that copy directly.
#[test]
fn the_guard_can_be_called_inside_enter() {
    let g = guard();
    g.begin_cycle(0).unwrap();
    g.set(R::Pending, true, 0).unwrap();
    let mut saved = None;
    let d = g.try_sleep(10_000, |d, kept| {
        saved = Some((g.retained(), *kept));
        // Any call works here; the decision was made and recorded already.
        assert_eq!(g.decide(10_000), *d);
        assert_eq!(g.lease(R::Download, 5, 10_000), Ok(10_005));
        assert_eq!(g.lease(R::Download, 0, 10_000), Ok(10_000));
    });
    assert_eq!(
        d,
        Decision::Forced {
            overridden: set(&[R::Pending])
        }
    );
    let (saved, kept) = saved.expect("enter ran");
    assert_eq!(saved, kept);
    assert!(saved.is_valid());
    assert_eq!(saved.forced_sleeps, 1, "the saved copy misses this sleep");
    assert_eq!(saved.overrides[R::Pending.index()], 1);
    let g2 = guard();
    assert!(g2.restore(&kept));
    assert_eq!(g2.retained().forced_sleeps, 1);
}

/// `Reason` methods run while no guard state is borrowed, so even one that asks the guard
/// something (a log line, say) cannot make it panic.
#[test]
fn reason_methods_may_call_the_guard() {
    use std::sync::atomic::{AtomicU32, Ordering};
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Nosy(usize);
    /// Calls from a `Reason` method that found the state in use (a re-entrant answer).
    static IN_USE: AtomicU32 = AtomicU32::new(0);
    fn look() {
        if !NOSY.retained().is_valid() {
            IN_USE.fetch_add(1, Ordering::SeqCst);
        }
    }
    static NOSY: SleepGuard<Nosy, 2> = SleepGuard::new(GuardConfig {
        awake_budget_ms: 100,
        max_extension_ms: 0,
        max_critical_overrun_ms: 0,
    });
    impl Reason for Nosy {
        const COUNT: usize = 2;
        fn index(self) -> usize {
            look();
            self.0
        }
        fn from_index(i: usize) -> Option<Self> {
            look();
            (i < 2).then_some(Nosy(i))
        }
        fn name(self) -> &'static str {
            "nosy"
        }
        fn class(self) -> Class {
            look();
            if self.0 == 1 {
                Class::Critical
            } else {
                Class::Deferrable
            }
        }
        fn max_lease_ms(self) -> Option<u32> {
            look();
            Some(50)
        }
    }
    NOSY.acquire(Nosy(0), 0).unwrap();
    assert_eq!(NOSY.lease(Nosy(1), 50, 0), Ok(50));
    NOSY.set(Nosy(0), true, 0).unwrap();
    let both = ReasonSet::from_bits(0b11);
    assert_eq!(
        NOSY.decide(10),
        Decision::Stay {
            blockers: both,
            recheck_at: 50
        }
    );
    assert_eq!(NOSY.holders(10), both);
    assert_eq!(format!("{both:?}"), r#"{"nosy", "nosy"}"#);
    assert_eq!(
        NOSY.try_sleep(100, |_, _| {}),
        Decision::Forced {
            overridden: ReasonSet::from_bits(0b01)
        }
    );
    assert_eq!(
        IN_USE.load(Ordering::SeqCst),
        0,
        "a Reason method ran while the guard's state was in use"
    );
}

/// A critical lease renewed in a loop (a stuck erase-and-retry) must not keep the device
/// awake forever: past the awake budget plus the critical overrun, renewals are refused and
/// the decision is `Forced`, with the critical reason among the overridden.
#[test]
fn a_renewed_critical_lease_cannot_keep_the_device_awake_forever() {
    let g = guard(); // budget 10 s; critical leases may overrun it by 5 s
    g.begin_cycle(0).unwrap();
    let mut refused = None;
    let mut t = 0;
    while t < 200 * 10_000 {
        if let Err(e) = g.lease(R::Erase, 2_000, t) {
            refused = Some((t, e));
            break;
        }
        if t == 14_000 {
            // The last renewal runs to 16 s, but the cap is at 15 s.
            assert_eq!(
                g.decide(14_500),
                Decision::Stay {
                    blockers: set(&[R::Erase]),
                    recheck_at: 15_000
                }
            );
        }
        t += 1_000;
    }
    assert_eq!(refused, Some((15_000, Error::CriticalOverrunExceeded)));
    let forced = Decision::Forced {
        overridden: set(&[R::Erase]),
    };
    assert_eq!(g.decide(15_000), forced);
    assert_eq!(g.try_sleep(15_000, |_, _| {}), forced);
    assert_eq!(g.stats(R::Erase).overrides, 1);
    assert_eq!(g.retained().forced_sleeps, 1);
    // Ending a lease is always allowed; a new cycle allows critical leases again.
    assert_eq!(g.lease(R::Erase, 0, 15_100), Ok(15_100));
    g.begin_cycle(20_000).unwrap();
    assert_eq!(g.lease(R::Erase, 2_000, 20_000), Ok(22_000));
}

/// A widened 32-bit millisecond tick that wraps steps the clock back by 2^32 ms (~49.7 days).
/// The step back counts as no time passing: what was running keeps the time it had left, on
/// the clock as it now reads; nothing is stretched by the size of the jump.
#[test]
fn a_clock_that_steps_back_stretches_nothing() {
    let g = guard(); // budget 10 s
    let wrap = 1u64 << 32;
    g.begin_cycle(wrap - 5_000).unwrap(); // deadline wrap + 5 s
    assert_eq!(g.lease(R::Erase, 2_000, wrap - 1_000), Ok(wrap + 1_000));
    g.set(R::Pending, true, wrap - 1_000).unwrap();
    // The tick wraps: the clock reads 500 where it read 2^32 - 1_000 a moment ago. At that
    // moment the lease had 2 s left and the budget 6 s.
    assert_eq!(
        g.decide(500),
        Decision::Stay {
            blockers: set(&[R::Pending, R::Erase]),
            recheck_at: 2_500
        }
    );
    assert_eq!(g.deadline(), 6_500);
    assert_eq!(g.remaining_ms(1_500), 5_000);
    assert_eq!(
        g.decide(2_500),
        Decision::Stay {
            blockers: set(&[R::Pending]),
            recheck_at: 6_500
        }
    );
    assert_eq!(g.stats(R::Erase).expiries, 1);
    assert_eq!(
        g.decide(6_500),
        Decision::Forced {
            overridden: set(&[R::Pending])
        }
    );
    // A lease taken on the new clock is on the new clock.
    assert_eq!(g.lease(R::Download, 1_000, 7_000), Ok(8_000));
    assert!(g.is_held(R::Download, 7_999));
    assert!(!g.is_held(R::Download, 8_000));
    // Hold statistics never count the jump: Pending was held from 2^32 - 1_000 until the
    // wrap (no time on the guard's clock, which had seen nothing later), then to 8_500.
    g.set(R::Pending, false, 8_500).unwrap();
    assert_eq!(g.stats(R::Pending).total_hold_ms, 8_000);
}

/// A call with an earlier `now` than the one before (two tasks reading the clock in a
/// different order than they call the guard) is treated as the latest time seen.
#[test]
fn an_earlier_now_is_the_latest_time_seen() {
    let g = guard();
    assert_eq!(g.lease(R::Download, 1_000, 5_000), Ok(6_000));
    // A task that read the clock at 4_900 calls a little late: taken at 5_000, the latest
    // time seen, so the lease runs 1_000 ms, from then: to 5_900 on the caller's clock, which
    // the guard now reads 100 ms ahead.
    assert_eq!(g.lease(R::Download, 1_000, 4_900), Ok(5_900));
    assert!(g.is_held(R::Download, 5_899));
    assert!(!g.is_held(R::Download, 5_900));
    assert_eq!(g.stats(R::Download).total_hold_ms, 1_000);
    assert_eq!(g.lease(R::Download, 1_000, 6_000), Ok(7_000));
}

/// A lease whose end would pass the end of time ends where the guard says it does.
#[test]
fn a_lease_at_the_end_of_time_ends_when_it_says() {
    let g = guard();
    let end = g.lease(R::Download, 1_000, u64::MAX - 10).unwrap();
    assert!(g.is_held(R::Download, end - 1));
    assert!(
        !g.is_held(R::Download, end),
        "lease said it ends at {end}, but still holds then"
    );
}

/// A reason whose index is not below `N` is refused, but like every call that takes `now`,
/// the refusal still ends the leases that ran out.
#[test]
fn an_invalid_reason_is_refused_and_still_ends_expired_leases() {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Odd {
        A,
        B,
        /// Index 2 with `COUNT == 2`: an application bug.
        Stray,
    }
    impl Reason for Odd {
        const COUNT: usize = 2;
        fn index(self) -> usize {
            self as usize
        }
        fn from_index(i: usize) -> Option<Self> {
            [Odd::A, Odd::B].get(i).copied()
        }
        fn name(self) -> &'static str {
            "odd"
        }
        fn class(self) -> Class {
            Class::Deferrable
        }
    }
    type Call = fn(&SleepGuard<Odd, 2>, u64) -> Result<(), Error>;
    let calls: [(&str, Call); 4] = [
        ("acquire", |g, t| g.acquire(Odd::Stray, t)),
        ("release", |g, t| g.release(Odd::Stray, t)),
        ("lease", |g, t| g.lease(Odd::Stray, 10, t).map(drop)),
        ("set", |g, t| g.set(Odd::Stray, true, t)),
    ];
    for (name, call) in calls {
        let g = SleepGuard::<Odd, 2>::new(GuardConfig {
            awake_budget_ms: 1_000,
            max_extension_ms: 0,
            max_critical_overrun_ms: 0,
        });
        assert_eq!(g.lease(Odd::B, 50, 0), Ok(50));
        assert_eq!(call(&g, 50), Err(Error::InvalidReason), "{name}");
        assert_eq!(g.stats(Odd::B).expiries, 1, "{name} did not end the lease");
        assert!(matches!(g.hold(Odd::Stray, 60), Err(Error::InvalidReason)));
        assert_eq!(g.stats(Odd::Stray), Default::default());
        assert!(!g.is_held(Odd::Stray, 60));
        assert_eq!(g.holders(60), ReasonSet::EMPTY);
    }
}

/// A token commits once: the recorded sleep is a change. And what the docs say invalidates a
/// token does: a new cycle, any extension (even by 0), a sleep entered with `try_sleep`.
#[test]
fn a_token_commits_once() {
    let g = guard();
    let token = g.token();
    assert_eq!(g.commit(token, 10), Ok(Decision::Sleep));
    assert_eq!(
        g.commit(token, 10),
        Err(Decision::Sleep),
        "the same token committed twice"
    );

    type Change = fn(&SleepGuard<R, 4>);
    let changes: [(&str, Change); 3] = [
        ("begin_cycle", |g| g.begin_cycle(20).unwrap()),
        ("extend(0)", |g| assert!(g.extend(0, 20).is_ok())),
        ("try_sleep", |g| {
            assert!(g.try_sleep(20, |_, _| {}).allows_sleep())
        }),
    ];
    for (name, change) in changes {
        let token = g.token();
        change(&g);
        assert_eq!(g.commit(token, 30), Err(Decision::Sleep), "{name}");
        assert_eq!(g.commit(g.token(), 30), Ok(Decision::Sleep), "{name}");
    }
}
