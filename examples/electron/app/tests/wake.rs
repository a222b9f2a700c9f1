//! Real wakes against the modem emulator, the strict F205 flash and the reference server.

mod common;

use common::*;
use electron_app::{AppConfig, WakeEnd};

const ROOT: [u8; 32] = [0x5A; 32];

#[test]
fn nothing_pending_checks_in_publishes_and_sleeps_for_the_grant() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(20_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let mut cfg = AppConfig::new(cloud.addr, hw(), &keys);
    cfg.awake_budget_ms = 20_000;
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{r:#?}");
    assert_eq!(r.error, None);
    assert!(r.checked_in);
    assert_eq!(r.publishes_acked, 1);
    assert_eq!(r.running, fw((1, 0, 0)));
    assert_eq!(r.offer, None);
    assert_eq!(r.end, WakeEnd::Sleep { ms: 900_000 });
    // Check-in and Goodbye, nothing else.
    assert_eq!(r.requests, 2);
    assert!(!r.retained_valid, "first wake after the factory");
    let r2 = dev.wake(&cloud, &cfg);
    assert!(r2.retained_valid && r2.checked_in && r2.error.is_none());
}

/// v2 is queued while the device sleeps; the check-in learns of it; the download takes
/// several wakes under a tight budget, resumes without fetching a chunk twice; the device
/// resets into the bootloader, which installs v2 and boots it on trial; the next wake
/// confirms it and the server records the success.
#[test]
fn update_across_wakes_installs_trial_boots_and_confirms() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(30_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = tight(&cloud, &keys);
    let r = dev.wake(&cloud, &cfg);
    assert!(r.checked_in && r.offer.is_none());

    let img2 = image(40_000, 2);
    let v2 = cloud.sign((2, 0, 0), 2, &img2);
    let (release, rollout) = cloud.release(&v2);
    let chunks = 40_000u32.div_ceil(CHUNK);
    let mut reports = Vec::new();
    for n in 0..30 {
        let r = dev.wake(&cloud, &cfg);
        eprintln!("{}", line(n, &r));
        reports.push(r);
        if r.end == WakeEnd::Reset {
            break;
        }
    }
    let last = reports.last().copied().unwrap();
    assert_eq!(last.end, WakeEnd::Reset, "the download never completed");
    assert!(last.install_marked);
    let first = reports[0];
    assert_eq!(
        first.offer.map(|o| o.0),
        Some(cloud_proto::UpdateId(release.0))
    );
    assert_eq!(
        first.decision,
        Some(cloud_proto::Decision::Accept { bytes_done: 0 })
    );
    assert!(
        first.manifest_chunks > 0,
        "the manifest is fetched, not inline"
    );
    let fetched: u32 = reports.iter().map(|r| r.chunks_fetched).sum();
    let again: u32 = reports.iter().map(|r| r.chunks_refetched).sum();
    assert_eq!(fetched, chunks, "every chunk once");
    assert_eq!(again, 0, "no chunk fetched twice");
    let wakes_with_chunks = reports.iter().filter(|r| r.chunks_fetched > 0).count();
    assert!(wakes_with_chunks >= 2, "the budget spreads the download");
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:#?}");
    // A resumed download answers Accept with what it holds.
    assert!(matches!(
        last.decision,
        Some(cloud_proto::Decision::Accept { bytes_done }) if bytes_done > 0
    ));
    assert_eq!(last.progress, (chunks, chunks));

    // Reset: the bootloader installs v2 and boots it on trial; the wake confirms it.
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{}", line(99, &r));
    assert!(dev.boot.is_some_and(|b| b.is_trial()));
    assert_eq!(dev.active(img2.len()), &img2[..]);
    assert_eq!(r.running, fw((2, 0, 0)));
    assert_eq!(r.trial, Some(electron_app::TrialOutcome::Confirmed));
    assert_eq!(r.error, None);
    let p = cloud.progress(rollout);
    assert_eq!((p.succeeded, p.failed), (1, 0), "{p:?}");

    // Confirmed: the next boot keeps it and nothing is offered.
    let r = dev.wake(&cloud, &cfg);
    assert!(dev.boot.is_some_and(|b| !b.is_trial()));
    assert_eq!((r.running, r.trial, r.offer), (fw((2, 0, 0)), None, None));
    assert_eq!(dev.active(img2.len()), &img2[..]);
}
