//! With the `log` feature, what a field engineer needs is logged: refusals with their error,
//! the critical-overrun refusal, forced sleeps with the overridden reasons, clock steps back.
//! Run with `cargo test -p sleep-guard --features log`.
#![cfg(feature = "log")]

use std::cell::RefCell;

use sleep_guard::{Class, Decision, GuardConfig, Reason, SleepGuard};

thread_local! {
    /// The records logged by this thread (each test runs on its own thread).
    static RECORDS: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        RECORDS.with(|r| r.borrow_mut().push((record.level(), line)));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Installs the capturing logger (once per test binary) and empties this thread's records.
fn capture() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    RECORDS.with(|r| r.borrow_mut().clear());
}

/// This thread's records so far, taken.
fn records() -> Vec<(log::Level, String)> {
    RECORDS.with(|r| r.borrow_mut().drain(..).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Upload,
    Erase,
}

impl Reason for Why {
    const COUNT: usize = 2;
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(i: usize) -> Option<Self> {
        [Why::Upload, Why::Erase].get(i).copied()
    }
    fn name(self) -> &'static str {
        match self {
            Why::Upload => "upload",
            Why::Erase => "erase",
        }
    }
    fn class(self) -> Class {
        match self {
            Why::Upload => Class::Deferrable,
            Why::Erase => Class::Critical,
        }
    }
    fn max_lease_ms(self) -> Option<u32> {
        Some(500)
    }
}

fn guard() -> SleepGuard<Why, 2> {
    SleepGuard::new(GuardConfig {
        awake_budget_ms: 1_000,
        max_extension_ms: 0,
        max_critical_overrun_ms: 200,
    })
}

#[test]
fn a_refused_call_is_logged_with_its_error() {
    capture();
    let g = guard();
    assert!(g.release(Why::Upload, 10).is_err());
    assert!(g.lease(Why::Upload, 600, 20).is_err());
    let logged = records();
    assert!(
        logged.iter().any(|(l, m)| *l == log::Level::Warn
            && m.contains("release")
            && m.contains("upload")
            && m.contains("Unbalanced")),
        "{logged:?}"
    );
    assert!(
        logged
            .iter()
            .any(|(_, m)| m.contains("lease") && m.contains("LeaseTooLong")),
        "{logged:?}"
    );
}

#[test]
fn a_forced_sleep_names_the_overridden_reasons() {
    capture();
    let g = guard();
    g.acquire(Why::Upload, 0).unwrap();
    let d = g.try_sleep(1_000, |_, _| {});
    assert!(matches!(d, Decision::Forced { .. }));
    let logged = records();
    assert!(
        logged
            .iter()
            .any(|(l, m)| *l == log::Level::Warn && m.contains("forced") && m.contains("upload")),
        "{logged:?}"
    );
    // `decide` logs it too, for callers that sleep on their own.
    assert!(matches!(g.decide(1_100), Decision::Forced { .. }));
    assert!(
        records()
            .iter()
            .any(|(_, m)| m.contains("forced") && m.contains("upload")),
        "decide"
    );
}

#[test]
fn the_critical_overrun_refusal_is_an_error_record() {
    capture();
    let g = guard();
    g.lease(Why::Erase, 100, 0).unwrap();
    assert!(g.lease(Why::Erase, 100, 1_200).is_err());
    let logged = records();
    assert!(
        logged
            .iter()
            .any(|(l, m)| *l == log::Level::Error && m.contains("erase") && m.contains("overrun")),
        "{logged:?}"
    );
}

#[test]
fn a_clock_step_back_is_logged_with_its_size() {
    capture();
    let g = guard();
    let _ = g.decide(5_000);
    let _ = g.decide(4_250);
    let logged = records();
    assert!(
        logged
            .iter()
            .any(|(l, m)| *l == log::Level::Warn && m.contains("back") && m.contains("750")),
        "{logged:?}"
    );
}
