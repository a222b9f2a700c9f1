//! The sleep coordinator: holds, the awake budget, the decision and race-free entry.

use core::cell::RefCell;
use core::marker::PhantomData;

use critical_section::Mutex;

use crate::error::Error;
use crate::reason::{Class, Reason, ReasonSet};
use crate::stats::{ReasonStats, Retained};

/// Milliseconds on a monotonic clock the application chooses (since boot, an RTC count…).
/// The guard never reads a clock: every call takes `now`.
///
/// # The clock contract
/// `now` should never go backwards: widen a wrapping tick counter without letting it wrap,
/// and do not set the clock back. If it does go back (a 32-bit ms tick wraps after ~49.7 days,
/// an RTC is set back, or a task calls with a `now` it read before an interrupt's later call),
/// the step back counts as **no time passing**: the call is taken at the latest time seen,
/// and time goes on from there as the clock advances again. So a step back never stretches a
/// lease, the awake budget or the critical overrun by its size: they keep the time they had
/// left, and the times the guard returns afterwards (lease ends, [`SleepGuard::deadline`],
/// `recheck_at`) are on the clock as it now reads. The price is the other way round: a step
/// back of *d* ms shortens what was running across it by up to *d* (the battery-safe side;
/// for calls that merely race an interrupt, *d* is the time between reading the clock and
/// calling the guard). A step forward ends whatever it passes.
pub type Millis = u64;

/// Awake-budget settings.
///
/// No wake lasts longer than `awake_budget_ms + max_extension_ms + max_critical_overrun_ms`
/// from its [`begin_cycle`](SleepGuard::begin_cycle), whatever holds are taken or renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GuardConfig {
    /// How long a wake may last before deferrable holds are overridden.
    pub awake_budget_ms: u32,
    /// The most [`SleepGuard::extend`] may add to one cycle, in total (e.g. granted by the
    /// cloud for an update).
    pub max_extension_ms: u32,
    /// How long critical leases may keep the device awake past the awake budget (extensions
    /// included), per cycle: the hard cap that protects the battery from a critical lease
    /// renewed forever (a stuck erase-and-retry loop). From `deadline + max_critical_overrun_ms`
    /// on, a critical lease is refused ([`Error::CriticalOverrunExceeded`]) and the decision is
    /// [`Decision::Forced`] with the critical reasons among the overridden (counted like any
    /// override). Critical work inside the budget does not use it up. Set it to the longest
    /// critical operation that must be allowed to finish once the budget is spent (the worst
    /// case of a sector erase, say); 0 means critical leases never outlive the budget.
    pub max_critical_overrun_ms: u32,
}

/// What the device should do now.
///
/// `#[must_use]`: a `Stay` ignored is a `recheck_at` missed, a `Sleep` or `Forced` ignored is
/// an awake budget overrun.
#[derive(Clone, Copy, PartialEq, Eq)]
#[must_use = "a Decision says whether to sleep now or when to look again: act on it"]
pub enum Decision<R> {
    /// Nothing holds: sleep.
    Sleep,
    /// Stay awake; look again at `recheck_at` at the latest (the earliest lease expiry, the
    /// end of the awake budget or the end of the critical overrun, whichever comes first).
    Stay {
        /// The reasons holding the device awake.
        blockers: ReasonSet<R>,
        /// When the decision can change without any call.
        recheck_at: Millis,
    },
    /// The awake budget is spent: sleep although these deferrable reasons still hold (and,
    /// past the critical overrun, these critical ones: see
    /// [`GuardConfig::max_critical_overrun_ms`]).
    Forced {
        /// The overridden reasons.
        overridden: ReasonSet<R>,
    },
}

impl<R: Reason> Decision<R> {
    /// True for `Sleep` and `Forced`.
    pub fn allows_sleep(&self) -> bool {
        !matches!(self, Decision::Stay { .. })
    }
}

impl<R: Reason> core::fmt::Debug for Decision<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Sleep => f.write_str("Sleep"),
            Self::Stay {
                blockers,
                recheck_at,
            } => f
                .debug_struct("Stay")
                .field("blockers", blockers)
                .field("recheck_at", recheck_at)
                .finish(),
            Self::Forced { overridden } => f
                .debug_struct("Forced")
                .field("overridden", overridden)
                .finish(),
        }
    }
}

#[cfg(feature = "defmt")]
impl<R: Reason> defmt::Format for Decision<R> {
    fn format(&self, f: defmt::Formatter) {
        match self {
            Self::Sleep => defmt::write!(f, "Sleep"),
            Self::Stay {
                blockers,
                recheck_at,
            } => defmt::write!(f, "Stay({}, recheck at {=u64})", blockers, recheck_at),
            Self::Forced { overridden } => defmt::write!(f, "Forced({})", overridden),
        }
    }
}

/// A snapshot of the change counter, for the two-phase sleep entry
/// ([`SleepGuard::token`] then [`SleepGuard::commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "a SleepToken does nothing until it is passed to SleepGuard::commit"]
pub struct SleepToken(Option<u32>);

/// `Millis::MAX` stands for "none" in the two time fields below (8 bytes each instead of 16
/// for an `Option`): no lease can end and no hold can start at the end of time.
const NONE: Millis = Millis::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    lease_end: Millis,
    hold_start: Millis,
    stats: ReasonStats,
    count: u16,
    level: bool,
    /// The reason is [`Class::Critical`] (set by its first lease: only a lease can hold a
    /// critical reason), so that no `Reason` method runs while the state is borrowed.
    critical: bool,
}

impl Slot {
    const EMPTY: Slot = Slot {
        lease_end: NONE,
        hold_start: NONE,
        stats: ReasonStats::ZERO,
        count: 0,
        level: false,
        critical: false,
    };

    fn lease_until(&self) -> Option<Millis> {
        (self.lease_end != NONE).then_some(self.lease_end)
    }

    fn is_held(&self) -> bool {
        self.count > 0 || self.level || self.lease_end != NONE
    }

    /// Keeps the hold-duration statistics in step after a change at time `at`.
    fn track(&mut self, at: Millis) {
        let since = (self.hold_start != NONE).then_some(self.hold_start);
        match (self.is_held(), since) {
            (true, None) => self.hold_start = at.min(NONE - 1),
            (false, Some(since)) => {
                let d = at.saturating_sub(since);
                let d32 = u32::try_from(d).unwrap_or(u32::MAX);
                self.stats.longest_hold_ms = self.stats.longest_hold_ms.max(d32);
                self.stats.total_hold_ms = self.stats.total_hold_ms.saturating_add(d);
                self.hold_start = NONE;
            }
            _ => {}
        }
    }
}

#[derive(Debug)]
struct Inner<const N: usize> {
    slots: [Slot; N],
    deadline: Millis,
    extended_ms: u32,
    generation: u32,
    /// The guard's own time, which never goes back: the caller's `now` plus `offset`. Every
    /// time in `Inner` is on this clock.
    last_now: Millis,
    /// The sum of the caller's steps back (see "The clock contract" on [`Millis`]).
    offset: Millis,
    retained: Retained<N>,
}

/// The sleep coordinator for the application's reasons `R` (with `N == R::COUNT`).
///
/// Every method takes `&self` and runs in one short critical section, so one `static`
/// guard can be shared by tasks and interrupt handlers. Every call is O(N).
///
/// RAM: `N × 64 + 80` bytes on `thumbv7m-none-eabi` (8 × 64 + 80 = 592 for 8 reasons, as
/// `scripts/size-report.sh` measures). Per reason: 56 for its state (lease end, hold start,
/// [`ReasonStats`], hold count and flags) and 8 for its two [`Retained`] counters. Fixed: 20
/// for the rest of `Retained`, 32 for the deadline, extension, change counter and the guard's
/// clock, 4 for the `RefCell` flag, 12 for the [`GuardConfig`], and 12 of padding to 8-byte
/// alignment. A 64-bit host gets the same total (its 8-byte `RefCell` flag takes the padding
/// a 32-bit target leaves after the 4-byte one); the unit tests pin it.
///
/// # Re-entrance
/// The guard never panics, and it never calls application code while its state is in use:
/// `enter` (in [`try_sleep`](Self::try_sleep)) runs after the state is let go, though still
/// inside the same critical section, and the [`Reason`] methods run before it is taken. So
/// every call works from `enter`, from a `Reason` method, from a task and from an interrupt
/// handler. Only a call from a context that the critical section does not mask (an NMI or
/// HardFault handler on a single-core Cortex-M) can find the state in use by the call it
/// interrupted; such a call changes nothing and answers:
///
/// | call | answer when re-entered |
/// |---|---|
/// | `begin_cycle`, `acquire`, `release`, `lease`, `set`, `hold`, `extend` | `Err(Error::Reentrant)` |
/// | `decide`, `try_sleep` | `Stay` with no blockers and `recheck_at: now` (`enter` is not called) |
/// | `commit` | `Err` of that `Stay` |
/// | `token` | a token that never commits |
/// | `holders`, `is_held` | every reason holds |
/// | `stats` | zero |
/// | `deadline`, `remaining_ms`, `generation` | 0 |
/// | `retained` | a copy that is not [valid](Retained::is_valid) |
/// | `restore` | `false` (nothing taken) |
pub struct SleepGuard<R: Reason, const N: usize> {
    inner: Mutex<RefCell<Inner<N>>>,
    config: GuardConfig,
    _r: PhantomData<fn() -> R>,
}

impl<R: Reason, const N: usize> core::fmt::Debug for SleepGuard<R, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SleepGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<R: Reason, const N: usize> SleepGuard<R, N> {
    /// A guard with no hold whose first cycle starts at time 0; call
    /// [`begin_cycle`](Self::begin_cycle) on every wake. `const`, so it can be a `static`.
    pub const fn new(config: GuardConfig) -> Self {
        const {
            assert!(N == R::COUNT, "N must equal R::COUNT");
            assert!(N <= 32, "at most 32 reasons");
        }
        Self {
            inner: Mutex::new(RefCell::new(Inner {
                slots: [Slot::EMPTY; N],
                deadline: config.awake_budget_ms as Millis,
                extended_ms: 0,
                generation: 0,
                last_now: 0,
                offset: 0,
                retained: Retained::new(),
            })),
            config,
            _r: PhantomData,
        }
    }

    /// The configuration.
    pub fn config(&self) -> GuardConfig {
        self.config
    }

    /// Runs `f` on the state in one critical section; [`Error::Reentrant`] if the state is in
    /// use by the call this one interrupted (see "Re-entrance" on [`SleepGuard`]).
    fn with<T>(&self, f: impl FnOnce(&mut Inner<N>) -> T) -> Result<T, Error> {
        critical_section::with(|cs| {
            let mut g = self
                .inner
                .borrow(cs)
                .try_borrow_mut()
                .map_err(|_| Error::Reentrant)?;
            Ok(f(&mut g))
        })
    }

    /// What `decide` answers when it cannot look: stay, look again now.
    fn busy(now: Millis) -> Decision<R> {
        Decision::Stay {
            blockers: ReasonSet::EMPTY,
            recheck_at: now,
        }
    }

    fn slot_index(r: R) -> Result<usize, Error> {
        let i = r.index();
        if i < N {
            Ok(i)
        } else {
            Err(Error::InvalidReason)
        }
    }

    /// Logs a refused call on `r` with its error (nothing without a log feature). Runs after
    /// the state is let go, since [`Reason::name`] is application code.
    fn log_refusal<T>(call: &'static str, r: R, res: &Result<T, Error>) {
        match res {
            Ok(_) => {}
            Err(Error::CriticalOverrunExceeded) => error!(
                "{} {:?} refused: the cycle's critical overrun is spent ({:?})",
                call,
                r.name(),
                Error::CriticalOverrunExceeded
            ),
            Err(e) => warn!("{} {:?} refused: {:?}", call, r.name(), e),
        }
    }

    /// Logs a forced sleep with the reasons it overrides (nothing without a log feature).
    fn log_forced(d: &Decision<R>, now: Millis) {
        if let Decision::Forced { overridden } = d {
            warn!("sleep forced at {} ms, overriding {:?}", now, overridden);
        }
    }

    /// Takes the caller's `now` onto the guard's clock (a step back counts as no time
    /// passing) and ends the leases that ran out by then. Returns the guard's time.
    fn advance(g: &mut Inner<N>, now: Millis) -> Millis {
        let t = now.saturating_add(g.offset);
        if t < g.last_now {
            warn!(
                "clock stepped back {} ms: taken as no time passing",
                g.last_now - t
            );
            g.offset = g.offset.saturating_add(g.last_now - t);
        } else {
            g.last_now = t;
        }
        Self::expire(g, g.last_now);
        g.last_now
    }

    /// A time on the guard's clock as the caller's clock reads it.
    fn outside(g: &Inner<N>, t: Millis) -> Millis {
        t.saturating_sub(g.offset)
    }

    /// Ends every lease that ran out at or before `now` (the guard's clock).
    fn expire(inner: &mut Inner<N>, now: Millis) {
        for (i, s) in inner.slots.iter_mut().enumerate() {
            if let Some(until) = s.lease_until().filter(|&u| u <= now) {
                s.lease_end = NONE;
                s.stats.expiries = s.stats.expiries.saturating_add(1);
                inner.retained.expiries[i] = inner.retained.expiries[i].saturating_add(1);
                inner.generation = inner.generation.wrapping_add(1);
                s.track(until);
            }
        }
    }

    /// Starts a wake cycle at `now`: the awake budget runs from here and extensions are reset.
    /// Holds are kept (after a reset from STANDBY there are none; after a shallower sleep,
    /// state-like holds such as "update pending" rightly still block).
    ///
    /// Errors: [`Error::Reentrant`] only (see "Re-entrance" above).
    pub fn begin_cycle(&self, now: Millis) -> Result<(), Error> {
        let res = self.with(|g| {
            let now = Self::advance(g, now);
            g.deadline = now.saturating_add(self.config.awake_budget_ms as Millis);
            g.extended_ms = 0;
            g.generation = g.generation.wrapping_add(1);
            g.retained.cycles = g.retained.cycles.wrapping_add(1);
            g.retained.seal();
        });
        if let Err(e) = &res {
            warn!("begin_cycle refused: {:?}", e);
        }
        res
    }

    /// Counted hold: the reason blocks sleep until as many [`release`](Self::release)s.
    ///
    /// Errors: [`Error::CriticalNeedsLease`] for a critical reason, [`Error::Overflow`] past
    /// 65 535 nested holds, [`Error::InvalidReason`]. On error nothing changes but what every
    /// call does: leases that ran out by `now` end.
    pub fn acquire(&self, r: R, now: Millis) -> Result<(), Error> {
        let i = Self::slot_index(r);
        let class = r.class();
        let res = self.with(|g| {
            // Expired leases end even when the call is refused: time moved on either way.
            let now = Self::advance(g, now);
            let i = i?;
            if class == Class::Critical {
                return Err(Error::CriticalNeedsLease);
            }
            let s = &mut g.slots[i];
            s.count = s.count.checked_add(1).ok_or(Error::Overflow)?;
            s.stats.acquires = s.stats.acquires.saturating_add(1);
            s.track(now);
            g.generation = g.generation.wrapping_add(1);
            Ok(())
        });
        let res = res.and_then(|r| r);
        Self::log_refusal("acquire", r, &res);
        res
    }

    /// Ends one counted hold. An unbalanced release is [`Error::Unbalanced`], counted in the
    /// statistics, and changes nothing else.
    pub fn release(&self, r: R, now: Millis) -> Result<(), Error> {
        self.release_at(r, Some(now))
    }

    /// [`release`](Self::release) at `now`, or at the latest time seen if `None`.
    fn release_at(&self, r: R, now: Option<Millis>) -> Result<(), Error> {
        let i = Self::slot_index(r);
        let res = self.with(|g| {
            let now = match now {
                Some(now) => Self::advance(g, now),
                None => g.last_now,
            };
            let i = i?;
            let s = &mut g.slots[i];
            if s.count == 0 {
                s.stats.unbalanced = s.stats.unbalanced.saturating_add(1);
                g.retained.unbalanced = g.retained.unbalanced.saturating_add(1);
                g.retained.seal();
                return Err(Error::Unbalanced);
            }
            s.count -= 1;
            s.track(now);
            g.generation = g.generation.wrapping_add(1);
            Ok(())
        });
        let res = res.and_then(|r| r);
        Self::log_refusal("release", r, &res);
        res
    }

    /// Self-expiring hold until `now + ms`. Calling it again renews it (a download renews its
    /// lease per chunk, so a stalled one releases itself). Returns the expiry time: the first
    /// `now` at which the lease no longer holds (at most `u64::MAX - 1`). `ms == 0` ends the
    /// lease now (not counted as an expiry) and returns `now`.
    ///
    /// Errors: [`Error::UnboundedCritical`] for a critical reason without
    /// [`Reason::max_lease_ms`], [`Error::LeaseTooLong`] beyond it,
    /// [`Error::CriticalOverrunExceeded`] for a critical lease (not an end, `ms == 0`) at or
    /// after the end of this cycle's critical overrun ([`GuardConfig::max_critical_overrun_ms`]).
    /// On error nothing changes but what every call does: leases that ran out by `now` end.
    pub fn lease(&self, r: R, ms: u32, now: Millis) -> Result<Millis, Error> {
        let i = Self::slot_index(r);
        let (class, max_ms) = (r.class(), r.max_lease_ms());
        let res = self.with(|g| {
            let now = Self::advance(g, now);
            let i = i?;
            match (class, max_ms) {
                (Class::Critical, None) => return Err(Error::UnboundedCritical),
                (_, Some(max)) if ms > max => return Err(Error::LeaseTooLong { max_ms: max }),
                (Class::Critical, _) if ms > 0 && now >= self.overrun_end(g) => {
                    return Err(Error::CriticalOverrunExceeded)
                }
                _ => {}
            }
            // The end of time is `NONE`, so a lease ends at the latest at the millisecond before.
            let until = now.saturating_add(ms as Millis).min(NONE - 1);
            let s = &mut g.slots[i];
            if ms == 0 {
                // A zero lease ends the lease now.
                if core::mem::replace(&mut s.lease_end, NONE) != NONE {
                    s.track(now);
                    g.generation = g.generation.wrapping_add(1);
                }
                return Ok(Self::outside(g, now));
            }
            s.lease_end = until;
            s.critical = class == Class::Critical;
            s.stats.acquires = s.stats.acquires.saturating_add(1);
            s.track(now);
            g.generation = g.generation.wrapping_add(1);
            Ok(Self::outside(g, until))
        });
        let res = res.and_then(|r| r);
        Self::log_refusal("lease", r, &res);
        res
    }

    /// Level hold for state-like reasons ("an update is pending"): `true` holds, `false`
    /// lets go, however many times either was set.
    ///
    /// Errors: [`Error::CriticalNeedsLease`] for a critical reason.
    pub fn set(&self, r: R, active: bool, now: Millis) -> Result<(), Error> {
        let i = Self::slot_index(r);
        let class = r.class();
        let res = self.with(|g| {
            let now = Self::advance(g, now);
            let i = i?;
            if class == Class::Critical {
                return Err(Error::CriticalNeedsLease);
            }
            let s = &mut g.slots[i];
            if s.level != active {
                s.level = active;
                if active {
                    s.stats.acquires = s.stats.acquires.saturating_add(1);
                }
                s.track(now);
                g.generation = g.generation.wrapping_add(1);
            }
            Ok(())
        });
        let res = res.and_then(|r| r);
        Self::log_refusal("set", r, &res);
        res
    }

    /// A counted hold released when the returned value is dropped, for task code. A drop is
    /// stamped with the latest `now` the guard has seen; [`Hold::release`] takes the real
    /// time.
    pub fn hold(&self, r: R, now: Millis) -> Result<Hold<'_, R, N>, Error> {
        self.acquire(r, now)?;
        Ok(Hold {
            guard: self,
            reason: r,
            released: false,
        })
    }

    /// Extends this cycle's awake budget by `by_ms`. The total of a cycle's extensions may not
    /// pass [`GuardConfig::max_extension_ms`]: beyond it, [`Error::ExtensionExceeded`] says how much
    /// is left, and nothing changes. Returns the new deadline.
    pub fn extend(&self, by_ms: u32, now: Millis) -> Result<Millis, Error> {
        let res = self.with(|g| {
            Self::advance(g, now);
            let left =
                self.config.max_extension_ms - g.extended_ms.min(self.config.max_extension_ms);
            if by_ms > left {
                return Err(Error::ExtensionExceeded { available_ms: left });
            }
            g.extended_ms += by_ms;
            g.deadline = g.deadline.saturating_add(by_ms as Millis);
            g.generation = g.generation.wrapping_add(1);
            Ok(Self::outside(g, g.deadline))
        });
        let res = res.and_then(|r| r);
        if let Err(e) = &res {
            warn!("extend by {} ms refused: {:?}", by_ms, e);
        }
        res
    }

    /// The end of this cycle's critical overrun.
    fn overrun_end(&self, g: &Inner<N>) -> Millis {
        g.deadline
            .saturating_add(self.config.max_critical_overrun_ms as Millis)
    }

    /// The decision at the caller's `now`, `recheck_at` on the caller's clock.
    fn decide_locked(&self, g: &mut Inner<N>, now: Millis) -> Decision<R> {
        let now = Self::advance(g, now);
        match self.decide_at(g, now) {
            Decision::Stay {
                blockers,
                recheck_at,
            } => Decision::Stay {
                blockers,
                recheck_at: Self::outside(g, recheck_at),
            },
            d => d,
        }
    }

    /// The decision at `now` on the guard's clock.
    fn decide_at(&self, g: &Inner<N>, now: Millis) -> Decision<R> {
        let mut critical = ReasonSet::EMPTY;
        let mut deferrable = ReasonSet::EMPTY;
        let mut critical_until = Millis::MAX;
        let mut lease_until = Millis::MAX;
        for (i, s) in g.slots.iter().enumerate() {
            if !s.is_held() {
                continue;
            }
            if s.critical {
                critical.insert_index(i);
                critical_until = critical_until.min(s.lease_end);
            } else {
                deferrable.insert_index(i);
                // Only a hold that is nothing but a lease ends by itself.
                if s.count == 0 && !s.level {
                    lease_until = lease_until.min(s.lease_end);
                }
            }
        }
        if !critical.is_empty() {
            let overrun_end = self.overrun_end(g);
            if now >= overrun_end {
                return Decision::Forced {
                    overridden: ReasonSet::from_bits(critical.bits() | deferrable.bits()),
                };
            }
            let mut blockers = critical;
            let mut recheck_at = critical_until.min(overrun_end);
            if now < g.deadline {
                blockers = ReasonSet::from_bits(critical.bits() | deferrable.bits());
                recheck_at = recheck_at.min(lease_until).min(g.deadline);
            }
            return Decision::Stay {
                blockers,
                recheck_at,
            };
        }
        if deferrable.is_empty() {
            return Decision::Sleep;
        }
        if now >= g.deadline {
            return Decision::Forced {
                overridden: deferrable,
            };
        }
        Decision::Stay {
            blockers: deferrable,
            recheck_at: lease_until.min(g.deadline),
        }
    }

    /// What to do at `now`. Ends expired leases (and counts them); otherwise changes nothing.
    ///
    /// Rules: a critical lease means Stay until the end of the critical overrun (the awake
    /// budget plus [`GuardConfig::max_critical_overrun_ms`]), then Forced; past the awake budget,
    /// deferrable holds are overridden (Forced); any other hold means Stay; no hold means
    /// Sleep.
    pub fn decide(&self, now: Millis) -> Decision<R> {
        let d = self
            .with(|g| self.decide_locked(g, now))
            .unwrap_or(Self::busy(now));
        Self::log_forced(&d, now);
        d
    }

    /// Records a sleep the caller will enter; a sleep is a change (a token taken before it
    /// does not commit after it).
    fn record_sleep(g: &mut Inner<N>, d: &Decision<R>) {
        g.generation = g.generation.wrapping_add(1);
        if let Decision::Forced { overridden } = d {
            g.retained.forced_sleeps = g.retained.forced_sleeps.wrapping_add(1);
            for i in 0..N {
                if overridden.bits() & (1 << i) != 0 {
                    let s = &mut g.slots[i];
                    s.stats.overrides = s.stats.overrides.saturating_add(1);
                    g.retained.overrides[i] = g.retained.overrides[i].saturating_add(1);
                }
            }
        }
        g.retained.seal();
    }

    /// Race-free sleep entry: decides and, if the decision allows sleep, calls `enter` inside
    /// the **same** critical section, so an interrupt that would take a hold between the check
    /// and the entry either runs before the check (and is seen) or after `enter` returns
    /// (it woke the device). On Cortex-M, `enter` configures the sleep mode and executes WFI:
    /// a pending interrupt still ends WFI with interrupts masked. Returns the decision.
    ///
    /// The sleep is recorded (forced sleeps, overrides) before `enter` runs, and `enter`
    /// gets the [`Retained`] counters that already count it, sealed, to store in backup SRAM
    /// before STANDBY. `enter` runs after the guard has let go of its state (still inside the
    /// critical section), so it may call the guard too.
    pub fn try_sleep(
        &self,
        now: Millis,
        enter: impl FnOnce(&Decision<R>, &Retained<N>),
    ) -> Decision<R> {
        critical_section::with(|cs| {
            let Ok(mut g) = self.inner.borrow(cs).try_borrow_mut() else {
                return Self::busy(now);
            };
            let d = self.decide_locked(&mut g, now);
            if !d.allows_sleep() {
                return d;
            }
            Self::record_sleep(&mut g, &d);
            let kept = g.retained;
            drop(g);
            Self::log_forced(&d, now);
            enter(&d, &kept);
            d
        })
    }

    /// First half of the two-phase entry (Linux `wakeup_count` style) for code that must do
    /// work between the decision and the sleep (power the modem down…): take a token, do the
    /// work, then [`commit`](Self::commit).
    ///
    /// Everything that bumps the [`generation`](Self::generation) invalidates the token: a
    /// hold taken or ended, a lease renewed or run out, [`begin_cycle`](Self::begin_cycle),
    /// any successful [`extend`](Self::extend) (even by 0), and a recorded sleep (a
    /// [`try_sleep`](Self::try_sleep) that entered, a successful `commit`).
    pub fn token(&self) -> SleepToken {
        SleepToken(self.with(|g| g.generation).ok())
    }

    /// Second half: `Ok(decision)` if nothing changed since `token` (see
    /// [`token`](Self::token) for what counts) and the decision allows sleep; the sleep is then
    /// recorded and the caller must go to sleep. `Err(decision)` otherwise: stay awake and
    /// start over. A token commits at most once: the recorded sleep is itself a change.
    pub fn commit(&self, token: SleepToken, now: Millis) -> Result<Decision<R>, Decision<R>> {
        let res = self
            .with(|g| {
                let d = self.decide_locked(g, now);
                if token.0 != Some(g.generation) || !d.allows_sleep() {
                    return Err(d);
                }
                Self::record_sleep(g, &d);
                Ok(d)
            })
            .unwrap_or(Err(Self::busy(now)));
        if let Ok(d) = &res {
            Self::log_forced(d, now);
        }
        res
    }

    /// The reasons holding at `now` (expired leases ended first).
    pub fn holders(&self, now: Millis) -> ReasonSet<R> {
        self.with(|g| {
            Self::advance(g, now);
            let mut set = ReasonSet::EMPTY;
            for (i, s) in g.slots.iter().enumerate() {
                if s.is_held() {
                    set.insert_index(i);
                }
            }
            set
        })
        .unwrap_or(ReasonSet::from_bits(
            u32::MAX.checked_shr((32 - N) as u32).unwrap_or(0),
        ))
    }

    /// True if `r` holds at `now`.
    pub fn is_held(&self, r: R, now: Millis) -> bool {
        self.holders(now).contains(r)
    }

    /// Statistics of `r` since boot (zero for an invalid reason).
    pub fn stats(&self, r: R) -> ReasonStats {
        let Ok(i) = Self::slot_index(r) else {
            return ReasonStats::ZERO;
        };
        self.with(|g| g.slots[i].stats).unwrap_or(ReasonStats::ZERO)
    }

    /// End of this cycle's awake budget (extensions included).
    pub fn deadline(&self) -> Millis {
        self.with(|g| Self::outside(g, g.deadline)).unwrap_or(0)
    }

    /// Awake budget left at `now` (expired leases ended first).
    pub fn remaining_ms(&self, now: Millis) -> Millis {
        self.with(|g| {
            let now = Self::advance(g, now);
            g.deadline.saturating_sub(now)
        })
        .unwrap_or(0)
    }

    /// The change counter: bumps on every hold change, lease renewal or expiry, extension,
    /// new cycle and recorded sleep (see [`token`](Self::token)).
    pub fn generation(&self) -> u32 {
        self.with(|g| g.generation).unwrap_or(0)
    }

    /// The counters to keep across deep sleep (store them in backup SRAM before sleeping).
    pub fn retained(&self) -> Retained<N> {
        self.with(|g| {
            g.retained.seal();
            g.retained
        })
        .unwrap_or(Retained::INVALID)
    }

    /// Restores counters kept across deep sleep, if they are valid (a checksum guards against
    /// backup SRAM that lost power). Returns whether they were taken.
    pub fn restore(&self, saved: &Retained<N>) -> bool {
        if !saved.is_valid() {
            return false;
        }
        self.with(|g| g.retained = *saved).is_ok()
    }
}

/// A counted hold released on drop. See [`SleepGuard::hold`].
///
/// `#[must_use]`: a `Hold` that is not bound to a name is dropped, and so released, at the end
/// of the statement, so `guard.hold(r, now)?;` holds nothing. Bind it for as long as the work
/// runs (`let _hold = guard.hold(r, now)?;`; not `let _ = …`, which drops it at once too).
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # use sleep_guard::{Class, GuardConfig, Reason, SleepGuard};
/// # #[derive(Clone, Copy, PartialEq, Eq)]
/// # struct Radio;
/// # impl Reason for Radio {
/// #     const COUNT: usize = 1;
/// #     fn index(self) -> usize { 0 }
/// #     fn from_index(i: usize) -> Option<Self> { (i == 0).then_some(Radio) }
/// #     fn name(self) -> &'static str { "radio" }
/// #     fn class(self) -> Class { Class::Deferrable }
/// #     fn max_lease_ms(self) -> Option<u32> { None }
/// # }
/// # fn main() -> Result<(), sleep_guard::Error> {
/// let guard: SleepGuard<Radio, 1> = SleepGuard::new(GuardConfig {
///     awake_budget_ms: 1_000,
///     max_extension_ms: 0,
///     max_critical_overrun_ms: 0,
/// });
/// guard.hold(Radio, 0)?; // released at once: refused at compile time
/// # Ok(())
/// # }
/// ```
#[must_use = "a Hold is released when dropped: `guard.hold(r, now)?;` releases at once; bind it (`let _hold = ...`)"]
pub struct Hold<'a, R: Reason, const N: usize> {
    guard: &'a SleepGuard<R, N>,
    reason: R,
    released: bool,
}

impl<R: Reason, const N: usize> Hold<'_, R, N> {
    /// Releases now, stamping the release with `now` (exact hold statistics).
    pub fn release(mut self, now: Millis) -> Result<(), Error> {
        self.released = true;
        self.guard.release(self.reason, now)
    }
}

impl<R: Reason, const N: usize> Drop for Hold<'_, R, N> {
    fn drop(&mut self) {
        if !self.released {
            // Balanced by construction: the acquire succeeded. One critical section, so the
            // stamp is the latest time seen when the hold really ends.
            let _ = self.guard.release_at(self.reason, None);
        }
    }
}

impl<R: Reason, const N: usize> core::fmt::Debug for Hold<'_, R, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hold")
            .field("reason", &self.reason.name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Two {
        Pending,
        Erase,
    }
    impl Reason for Two {
        const COUNT: usize = 2;
        fn index(self) -> usize {
            self as usize
        }
        fn from_index(i: usize) -> Option<Self> {
            [Two::Pending, Two::Erase].get(i).copied()
        }
        fn name(self) -> &'static str {
            "two"
        }
        fn class(self) -> Class {
            match self {
                Two::Pending => Class::Deferrable,
                Two::Erase => Class::Critical,
            }
        }
        fn max_lease_ms(self) -> Option<u32> {
            Some(100)
        }
    }

    fn guard() -> SleepGuard<Two, 2> {
        SleepGuard::new(GuardConfig {
            awake_budget_ms: 1_000,
            max_extension_ms: 1_000,
            max_critical_overrun_ms: 0,
        })
    }

    /// An NMI arriving while a call holds the state: it cannot be masked, so it finds the
    /// state in use. Every call answers as the table on `SleepGuard` says, and changes nothing.
    #[test]
    fn a_call_that_finds_the_state_in_use_changes_nothing_and_does_not_panic() {
        let g = guard();
        g.set(Two::Pending, true, 10).unwrap();
        let token = g.token();
        let before = g.retained();
        let (gen, deadline) = (g.generation(), g.deadline());
        let busy = Decision::Stay {
            blockers: ReasonSet::EMPTY,
            recheck_at: 5_000,
        };
        let mut entered = false;
        critical_section::with(|cs| {
            // The interrupted call's borrow.
            let _in_use = g.inner.borrow_ref_mut(cs);
            assert_eq!(g.begin_cycle(5_000), Err(Error::Reentrant));
            assert_eq!(g.acquire(Two::Pending, 5_000), Err(Error::Reentrant));
            assert_eq!(g.release(Two::Pending, 5_000), Err(Error::Reentrant));
            assert_eq!(g.lease(Two::Erase, 50, 5_000), Err(Error::Reentrant));
            assert_eq!(g.set(Two::Pending, false, 5_000), Err(Error::Reentrant));
            assert_eq!(g.extend(10, 5_000), Err(Error::Reentrant));
            assert!(matches!(g.hold(Two::Pending, 5_000), Err(Error::Reentrant)));
            assert_eq!(g.decide(5_000), busy);
            assert_eq!(g.try_sleep(5_000, |_, _| entered = true), busy);
            assert_eq!(g.commit(token, 5_000), Err(busy));
            assert_eq!(g.token(), SleepToken(None));
            assert_eq!(g.holders(5_000), ReasonSet::from_bits(0b11));
            assert!(g.is_held(Two::Erase, 5_000));
            assert_eq!(g.stats(Two::Pending), ReasonStats::ZERO);
            assert_eq!(g.deadline(), 0);
            assert_eq!(g.remaining_ms(5_000), 0);
            assert_eq!(g.generation(), 0);
            assert!(!g.retained().is_valid());
            assert!(!g.restore(&Retained::new()));
        });
        assert!(!entered);
        // Nothing changed, and the guard works again.
        assert_eq!((g.generation(), g.deadline()), (gen, deadline));
        assert_eq!(g.retained(), before);
        assert_eq!(g.holders(20), ReasonSet::from_bits(0b01));
        assert_eq!(g.stats(Two::Pending).acquires, 1);
        assert_eq!(
            g.commit(token, 2_000),
            Ok(Decision::Forced {
                overridden: ReasonSet::from_bits(0b01)
            })
        );
    }

    /// The RAM figure in the docs of [`SleepGuard`], from the real layout.
    #[test]
    fn ram_is_64_bytes_per_reason_plus_80() {
        assert_eq!(core::mem::size_of::<Slot>(), 56);
        assert_eq!(core::mem::size_of::<Retained<2>>(), 20 + 2 * 8);
        assert_eq!(core::mem::size_of::<SleepGuard<Two, 2>>(), 2 * 64 + 80);
        fn parts<const N: usize>() -> usize {
            core::mem::size_of::<Mutex<RefCell<Inner<N>>>>() + core::mem::size_of::<GuardConfig>()
        }
        // Every N the same formula (`SleepGuard<R, N>` needs `N == R::COUNT`, so measure its
        // parts; the struct adds only alignment, checked above).
        for (n, size) in [
            (1, parts::<1>()),
            (7, parts::<7>()),
            (8, parts::<8>()),
            (32, parts::<32>()),
        ] {
            assert_eq!(size.next_multiple_of(8), n * 64 + 80, "N = {n}");
        }
    }

    /// A token taken while the state was in use never commits.
    #[test]
    fn a_token_taken_while_in_use_never_commits() {
        let g = guard();
        let token = critical_section::with(|cs| {
            let _in_use = g.inner.borrow_ref_mut(cs);
            g.token()
        });
        assert_eq!(g.commit(token, 0), Err(Decision::Sleep));
        assert_eq!(g.commit(g.token(), 0), Ok(Decision::Sleep));
    }
}
