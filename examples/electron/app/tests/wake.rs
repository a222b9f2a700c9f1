//! Real wakes against the modem emulator, the strict F205 flash and the reference server.

mod common;

use common::*;
use electron_app::{AppConfig, WakeEnd};
use ota_cloud::Store as _;

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
    assert!(!r.modem_left_on);
    assert_eq!(r.server_time, Some((T0 / 1000) as u32));
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
    let up: u32 = reports.iter().map(|r| r.bytes_up).sum();
    let down: u32 = reports.iter().map(|r| r.bytes_down).sum();
    let awake: u64 = reports.iter().map(|r| r.awake_ms).sum();
    eprintln!(
        "figures: 40 000-byte update in {} wakes, {awake} ms awake, {up} B up + {down} B down \
         (UDP payload), {:.3} × the image",
        reports.len(),
        f64::from(up + down) / 40_000.0
    );
    let wakes_with_chunks = reports.iter().filter(|r| r.chunks_fetched > 0).count();
    assert!(wakes_with_chunks >= 2, "the budget spreads the download");
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:#?}");
    // A resumed download answers Accept with what it holds.
    assert!(matches!(
        last.decision,
        Some(cloud_proto::Decision::Accept { bytes_done }) if bytes_done > 0
    ));
    assert_eq!(last.progress, (chunks, chunks));
    // A resumed download the check-in already reported needs no decision round trip: the
    // last wake sends the check-in, its chunk requests, the Downloaded status, the Goodbye.
    assert!(!last.decision_sent, "{last:?}");
    assert!(first.decision_sent);

    // Reset: the bootloader installs v2 and boots it on trial. The first trial wake finds
    // no SIM: the trial stays pending (ota-core's bootloader allows 3 boots on trial).
    let r = dev.wake_with(&cloud, &cfg, |e| {
        use modem_ublox_emu::{Action, ErrorReply, Fault, Trigger};
        e.add_fault(Fault::new(
            Trigger::every("AT+CPIN?"),
            Action::Fail(ErrorReply::Cme(10)),
        ));
    });
    eprintln!("{}", line(98, &r));
    assert!(dev.boot.is_some_and(|b| b.is_trial()));
    assert_eq!(r.running, fw((2, 0, 0)));
    assert_eq!(r.trial, Some(electron_app::TrialOutcome::Pending));
    assert!(matches!(r.end, WakeEnd::Sleep { .. }));
    // The next wake, still on trial, checks in and confirms.
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

/// v3 fails its self-check on its trial boot: the wake marks it failed, reports the failure
/// and resets; the bootloader reverts to v1; the server records the failure and does not
/// offer v3 again.
#[test]
fn self_check_failure_marks_failed_reverts_and_the_server_records_it() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let img1 = image(30_000, 1);
    let v1 = cloud.sign((1, 0, 0), 1, &img1);
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let mut cfg = tight(&cloud, &keys);
    cfg.max_extension_ms = 20_000; // one wake downloads it all
    let v3 = cloud.sign((3, 0, 0), 3, &image(24_000, 3));
    let (_, rollout) = cloud.release(&v3);
    let reports = wake_until_reset(&mut dev, &cloud, &cfg, 10);
    assert_eq!(reports.last().map(|r| r.end), Some(WakeEnd::Reset));

    dev.self_check_ok = false;
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{}", line(90, &r));
    assert!(dev.boot.is_some_and(|b| b.is_trial()));
    assert_eq!(r.running, fw((3, 0, 0)));
    assert_eq!(r.trial, Some(electron_app::TrialOutcome::Failed));
    assert_eq!(r.end, WakeEnd::Reset, "the bootloader must revert");
    assert!(r.checked_in, "the failure is reported before the reset");
    let p = cloud.progress(rollout);
    assert_eq!((p.failed, p.succeeded), (1, 0), "{p:?}");

    dev.self_check_ok = true;
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{}", line(91, &r));
    assert!(dev.boot.is_some_and(|b| !b.is_trial()));
    assert_eq!(dev.active(img1.len()), &img1[..], "v1 is back");
    assert_eq!((r.running, r.trial, r.offer), (fw((1, 0, 0)), None, None));
    assert!(matches!(r.end, WakeEnd::Sleep { .. }));
}

/// A modem failure to inject, and the error it must end in.
type Case = (
    &'static str,
    Box<dyn Fn(&modem_ublox_emu::Emulator)>,
    electron_app::WakeError,
);

/// Modem failures end in a bounded sleep, never a hang: no SIM, registration denied, a modem
/// that never powers on, a cloud that never answers.
#[test]
fn modem_and_server_failures_end_in_a_bounded_sleep() {
    use modem_ublox_emu::{Action, ErrorReply, Fault, RegStat, Trigger};
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(10_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = AppConfig::new(cloud.addr, hw(), &keys);
    // Failed wakes in a row back off: 300 s, 600 s, 1 200 s, 2 400 s, then the default
    // 3 600 s.
    let mut backoff = [
        300_000u64, 600_000, 1_200_000, 2_400_000, 3_600_000, 3_600_000,
    ]
    .into_iter()
    .map(|ms| WakeEnd::Sleep { ms });
    // The hard cap: budget + extension + critical overrun, plus one modem command timeout.
    let cap =
        u64::from(cfg.awake_budget_ms + cfg.max_extension_ms + cfg.critical_overrun_ms) + 60_000;

    let cases: Vec<Case> = vec![
        (
            "no SIM",
            Box::new(|e| {
                e.add_fault(Fault::new(
                    Trigger::every("AT+CPIN?"),
                    Action::Fail(ErrorReply::Cme(10)),
                ));
            }),
            electron_app::WakeError::Sim,
        ),
        (
            "registration denied",
            Box::new(|e| {
                e.add_fault(Fault::new(
                    Trigger::at_ms(0),
                    Action::Registration(RegStat::Denied),
                ));
            }),
            electron_app::WakeError::Registration,
        ),
        (
            "modem ignores PWR_ON",
            Box::new(|e| {
                e.add_fault(Fault::new(Trigger::at_ms(0), Action::IgnorePwrOn));
            }),
            electron_app::WakeError::ModemPower,
        ),
    ];
    for (what, fault, want) in cases {
        let r = dev.wake_with(&cloud, &cfg, |e| fault(e));
        eprintln!("{what}: {}", line(0, &r));
        assert_eq!(r.error, Some(want), "{what}");
        assert_eq!(Some(r.end), backoff.next(), "{what}");
        assert!(!r.checked_in, "{what}");
        assert!(r.awake_ms <= cap, "{what}: awake {} ms", r.awake_ms);
    }

    // A cloud that never answers: retransmissions, then the sleep.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg2 = cfg;
    cfg2.server = silent.local_addr().unwrap();
    // Room for every transmission (2 + 4 + 8 s): the endpoint gives up first.
    cfg2.awake_budget_ms = 40_000;
    let r = dev.wake(&cloud, &cfg2);
    eprintln!("silent: {}", line(0, &r));
    assert_eq!(r.error, Some(electron_app::WakeError::ServerSilent));
    assert_eq!(Some(r.end), backoff.next());
    assert_eq!(r.retransmissions, u32::from(cfg2.max_transmissions) - 1);
    assert!(r.awake_ms <= cap + 30_000);
    // With the default budget the budget ends the wait first: the same bounded sleep.
    let mut cfg3 = cfg2;
    cfg3.awake_budget_ms = cfg.awake_budget_ms;
    let r = dev.wake(&cloud, &cfg3);
    eprintln!("silent, default budget: {}", line(0, &r));
    assert_eq!(r.error, Some(electron_app::WakeError::Budget));
    assert_eq!(Some(r.end), backoff.next());
    assert!(r.awake_ms <= cap);

    // And the device still works afterwards (its counters were kept), back on the grant.
    let r = dev.wake(&cloud, &cfg);
    assert!(r.checked_in && r.error.is_none(), "{}", line(0, &r));
    assert_eq!(r.end, WakeEnd::Sleep { ms: 900_000 });
}

/// The modem reboots in the middle of a download: the wake ends in a sleep, and the next one
/// resumes without fetching a stored chunk again.
#[test]
fn modem_reboot_mid_download_resumes_next_wake() {
    use modem_ublox_emu::{Action, Fault, Trigger};
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(30_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let mut cfg = tight(&cloud, &keys);
    cfg.max_extension_ms = 20_000;
    let img2 = image(40_000, 2);
    cloud.release(&cloud.sign((2, 0, 0), 2, &img2));
    let r = dev.wake(&cloud, &cfg); // offer, manifest, staging erase
    assert_eq!(r.progress, (0, 79));
    let r = dev.wake_with(&cloud, &cfg, |e| {
        e.add_fault(Fault::new(
            Trigger::nth("AT+USORF", 30),
            Action::Reboot { garbage: vec![0] },
        ));
    });
    eprintln!("{}", line(1, &r));
    assert!(r.error.is_some() && r.chunks_fetched > 0 && r.chunks_fetched < 79);
    assert!(matches!(r.end, WakeEnd::Sleep { .. }));
    let before = r.chunks_fetched;
    let rest = wake_until_reset(&mut dev, &cloud, &cfg, 10);
    let fetched: u32 = rest.iter().map(|r| r.chunks_fetched).sum();
    assert_eq!(before + fetched, 79);
    assert!(rest.iter().all(|r| r.chunks_refetched == 0));
    assert_eq!(rest.last().map(|r| r.end), Some(WakeEnd::Reset));
}

/// Power is cut in the middle of a chunk write (a torn write on the strict flash, retained
/// memory lost): the next wake repairs, resumes and fetches nothing twice but the chunk that
/// was in flight; the update completes, installs and confirms.
#[test]
fn power_cut_mid_download_resumes_next_wake() {
    use ota_flash_sim::{Cut, CutKind};
    for offset in [24u64, 25] {
        let cloud = Cloud::new();
        let id = cloud.device(ROOT);
        let v1 = cloud.sign((1, 0, 0), 1, &image(30_000, 1));
        let mut dev = Electron::new(&cloud, id, ROOT, &v1);
        let keys = cloud.trusted();
        let cfg = tight(&cloud, &keys);
        let img2 = image(40_000, 2);
        let (_, rollout) = cloud.release(&cloud.sign((2, 0, 0), 2, &img2));
        let r = dev.wake(&cloud, &cfg);
        assert_eq!(r.progress, (0, 79));
        let at = dev.flash.stats().ops + offset;
        dev.flash.schedule_cut(Cut {
            at,
            kind: CutKind::Torn,
        });
        let r = dev.wake(&cloud, &cfg);
        eprintln!("cut at +{offset}: {}", line(1, &r));
        assert!(dev.flash.is_powered_off(), "the cut fired");
        assert_eq!(r.error, Some(electron_app::WakeError::Flash));
        assert!(matches!(r.end, WakeEnd::Sleep { .. }));
        let before = r.chunks_fetched;
        dev.power_loss();
        let rest = wake_until_reset(&mut dev, &cloud, &cfg, 12);
        assert!(!rest[0].retained_valid);
        assert!(
            rest[0].checked_in,
            "counters restart from the flash reservation"
        );
        let fetched: u32 = rest.iter().map(|r| r.chunks_fetched).sum();
        assert!(rest.iter().all(|r| r.chunks_refetched == 0));
        // The chunk in flight was received once in the cut wake without being counted
        // there (its write failed): received in all = before + 1 + fetched. It is fetched
        // again only when the cut tore it (79 + 1), never anything else.
        assert!(
            before + 1 + fetched == 79 || before + 1 + fetched == 80,
            "only the chunk in flight may be fetched again: {before} + 1 + {fetched}"
        );
        assert_eq!(rest.last().map(|r| r.end), Some(WakeEnd::Reset));
        let r = dev.wake(&cloud, &cfg);
        assert_eq!(r.trial, Some(electron_app::TrialOutcome::Confirmed));
        assert_eq!(dev.active(img2.len()), &img2[..]);
        assert_eq!(cloud.progress(rollout).succeeded, 1);
    }
}

/// An offer on a low battery is deferred with that reason, and the server counts the device
/// as deferred; nothing is downloaded.
#[test]
fn low_battery_defers_the_offer() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(10_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = tight(&cloud, &keys);
    let (_, rollout) = cloud.release(&cloud.sign((2, 0, 0), 2, &image(20_000, 2)));
    dev.battery_mv = 3_300;
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{}", line(0, &r));
    assert!(r.offer.is_some());
    assert_eq!(
        r.decision,
        Some(cloud_proto::Decision::Defer {
            retry_in_s: cfg.defer_retry_s,
            reason: cloud_proto::DeferReason::LowBattery,
        })
    );
    assert_eq!(
        (r.chunks_fetched, r.manifest_chunks, r.erase_steps),
        (0, 0, 0)
    );
    assert_eq!(r.error, None);
    assert_eq!(r.end, WakeEnd::Sleep { ms: 900_000 });
    assert_eq!(cloud.progress(rollout).deferred, 1);
}

/// The send-counter reservation goes to flash every `counter_reserve` frames; after a power
/// loss (retained memory gone) the device continues above it and the cloud accepts it.
#[test]
fn counter_reservations_survive_power_loss() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(10_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let mut cfg = AppConfig::new(cloud.addr, hw(), &keys);
    cfg.counter_reserve = 3;
    let mut frames = 0;
    for _ in 0..4 {
        let r = dev.wake(&cloud, &cfg);
        assert!(r.checked_in && r.error.is_none(), "{}", line(0, &r));
        frames += r.requests;
        let log = electron_app::CounterLog::read(&mut *dev.flash).unwrap();
        assert!(
            log.reserved_until >= frames,
            "{} < {frames}",
            log.reserved_until
        );
        assert!(log.reserved_until <= frames + 3);
    }
    dev.power_loss();
    let r = dev.wake(&cloud, &cfg);
    assert!(!r.retained_valid);
    assert!(r.checked_in && r.error.is_none(), "{}", line(0, &r));
    let r = dev.wake(&cloud, &cfg);
    assert!(r.retained_valid && r.checked_in);
}

/// v3 is released while v2 is half downloaded: the newer offer wins; ota-core abandons v2,
/// whose progress region must be erased first (after the modem is off), so the device defers
/// briefly and comes back soon, then downloads, installs and confirms v3.
#[test]
fn a_newer_release_supersedes_a_download_in_progress() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(30_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = tight(&cloud, &keys);
    cloud.release(&cloud.sign((2, 0, 0), 2, &image(40_000, 2)));
    let r = dev.wake(&cloud, &cfg); // offer, manifest, staging erase
    assert_eq!(r.progress, (0, 79));
    let r = dev.wake(&cloud, &cfg); // part of v2
    assert!(r.chunks_fetched > 0 && r.progress.0 < 79, "{}", line(1, &r));

    let img3 = image(30_000, 3);
    let (v3, rollout) = cloud.release(&cloud.sign((3, 0, 0), 3, &img3));
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{}", line(2, &r));
    assert_eq!(r.offer.map(|o| o.0 .0), Some(v3.0));
    assert!(matches!(
        r.decision,
        Some(cloud_proto::Decision::Defer {
            reason: cloud_proto::DeferReason::Busy,
            ..
        })
    ));
    assert!(
        r.erase_steps > 0,
        "v2's progress region erased after the modem"
    );
    assert_eq!(
        r.end,
        WakeEnd::Sleep {
            ms: u64::from(cfg.resume_sleep_s) * 1000
        },
        "back soon for the deferred offer"
    );
    let rest = wake_until_reset(&mut dev, &cloud, &cfg, 10);
    assert_eq!(rest.last().map(|r| r.end), Some(WakeEnd::Reset));
    assert!(rest.iter().all(|r| r.chunks_refetched == 0));
    let r = dev.wake(&cloud, &cfg);
    assert_eq!(r.trial, Some(electron_app::TrialOutcome::Confirmed));
    assert_eq!(r.running, fw((3, 0, 0)));
    assert_eq!(dev.active(img3.len()), &img3[..]);
    assert_eq!(cloud.progress(rollout).succeeded, 1);
}

/// The rollout is cancelled mid-download: the cloud stops offering it, and the device goes
/// back to the cloud's schedule instead of waking every few seconds for a download nobody
/// serves (the partial download stays in flash).
#[test]
fn a_cancelled_rollout_mid_download_returns_to_the_grant() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(30_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = tight(&cloud, &keys);
    let (_, rollout) = cloud.release(&cloud.sign((2, 0, 0), 2, &image(40_000, 2)));
    dev.wake(&cloud, &cfg);
    let r = dev.wake(&cloud, &cfg);
    assert!(r.chunks_fetched > 0 && r.progress.0 < 79);
    cloud
        .rt
        .block_on(
            cloud
                .store
                .update_rollout(rollout, ota_cloud::RolloutChange::Cancel),
        )
        .unwrap();
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{}", line(2, &r));
    assert!(r.checked_in && r.offer.is_none() && r.error.is_none());
    assert_eq!(r.end, WakeEnd::Sleep { ms: 900_000 });
}

/// A cloud that serves chunks that fail their digest (authentic frames, wrong bytes): nothing
/// is written, no panic, and the device backs off instead of coming back every few seconds.
#[test]
fn chunks_failing_their_digest_are_not_written_and_the_device_backs_off() {
    let cloud = Cloud::new(); // for signing and the device's trusted key only
    let v1 = cloud.sign((1, 0, 0), 1, &image(30_000, 1));
    let img2 = image(20_000, 2);
    let v2 = cloud.sign((2, 0, 0), 2, &img2);
    let mut bad = img2.clone();
    for b in bad.iter_mut().step_by(97) {
        *b ^= 0x40;
    }
    let fake = fake::FakeCloud::start(fake::Script {
        device: cloud_proto::DeviceId(7),
        root: ROOT,
        manifest: v2.manifest.clone(),
        image: bad,
        version: (2, 0, 0),
        drop_every: None,
    });
    let mut dev = Electron::new(&cloud, cloud_proto::DeviceId(7), ROOT, &v1);
    let keys = cloud.trusted();
    let mut cfg = tight(&cloud, &keys);
    cfg.server = fake.addr;
    let r = dev.wake(&cloud, &cfg); // offer, manifest, staging erase
    assert!(matches!(
        r.decision,
        Some(cloud_proto::Decision::Accept { .. })
    ));
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{}", line(1, &r));
    assert_eq!((r.chunks_fetched, r.progress.0), (0, 0));
    assert!(r.chunks_rejected > 0);
    assert_eq!(r.error, Some(electron_app::WakeError::Integrity));
    assert_eq!(
        r.end,
        WakeEnd::Sleep {
            ms: u64::from(cfg.retry_sleep_s) * 1000
        }
    );
}

/// A lossy link (every 7th datagram from the cloud lost): retransmissions and re-planned
/// requests carry the download through, nothing is written twice, and the image installs.
#[test]
fn a_lossy_link_still_completes_the_download_without_duplicates() {
    let cloud = Cloud::new();
    let img1 = image(30_000, 1);
    let v1 = cloud.sign((1, 0, 0), 1, &img1);
    let img2 = image(20_000, 2);
    let v2 = cloud.sign((2, 0, 0), 2, &img2);
    let fake = fake::FakeCloud::start(fake::Script {
        device: cloud_proto::DeviceId(7),
        root: ROOT,
        manifest: v2.manifest.clone(),
        image: img2.clone(),
        version: (2, 0, 0),
        drop_every: Some(7),
    });
    let mut dev = Electron::new(&cloud, cloud_proto::DeviceId(7), ROOT, &v1);
    let keys = cloud.trusted();
    let mut cfg = tight(&cloud, &keys);
    cfg.server = fake.addr;
    let reports = wake_until_reset(&mut dev, &cloud, &cfg, 20);
    assert_eq!(reports.last().map(|r| r.end), Some(WakeEnd::Reset));
    assert!(fake.dropped.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let fetched: u32 = reports.iter().map(|r| r.chunks_fetched).sum();
    assert_eq!(fetched, 20_000u32.div_ceil(CHUNK));
    assert!(reports.iter().all(|r| r.chunks_refetched == 0));
    assert!(reports.iter().map(|r| r.retransmissions).sum::<u32>() > 0);
    let r = dev.wake(&cloud, &cfg);
    assert_eq!(r.trial, Some(electron_app::TrialOutcome::Confirmed));
    assert_eq!(dev.active(img2.len()), &img2[..]);
}

/// A modem whose power-down cannot be confirmed (V_INT stuck high): the report says so, so
/// the board can cut the modem's supply before it sleeps.
#[test]
fn a_modem_that_does_not_power_down_is_reported() {
    use modem_ublox_emu::{Action, Fault, Trigger};
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(10_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = AppConfig::new(cloud.addr, hw(), &keys);
    let r = dev.wake_with(&cloud, &cfg, |e| {
        e.add_fault(Fault::new(
            Trigger::nth("AT+CPWROFF", 1),
            Action::VintStuckHigh,
        ));
    });
    eprintln!("{}", line(0, &r));
    assert!(r.modem_left_on);
    assert!(matches!(r.end, WakeEnd::Sleep { .. }));
}

fn retained(dev: &Electron) -> electron_app::RetainedState {
    electron_app::RetainedState::decode(&dev.retained).expect("retained memory written")
}

/// A budget that ends during the modem's bring-up (here: registration, the emulated SARA-U2
/// needs about 8.5 s before the first datagram) is work cut short, not a failure: the wake
/// comes back after `resume_sleep_s` and the failure count stays as it was. Only after
/// `MAX_CUT_SHORT_WAKES` forced sleeps without a check-in does it back off (a budget that can
/// never fit the bring-up must not drain the battery).
#[test]
fn a_budget_that_ends_in_the_modem_bring_up_comes_back_soon() {
    use modem_ublox_emu::{Action, ErrorReply, Fault, Trigger};
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(10_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = AppConfig::new(cloud.addr, hw(), &keys);
    // One real failure first: the count it leaves must survive the cut-short wakes.
    let r = dev.wake_with(&cloud, &cfg, |e| {
        e.add_fault(Fault::new(
            Trigger::every("AT+CPIN?"),
            Action::Fail(ErrorReply::Cme(10)),
        ));
    });
    assert_eq!(r.error, Some(electron_app::WakeError::Sim));
    assert_eq!(r.end, WakeEnd::Sleep { ms: 300_000 });
    assert_eq!(retained(&dev).failures, 1);

    let mut short = cfg;
    short.awake_budget_ms = 5_000;
    let soon = WakeEnd::Sleep {
        ms: u64::from(cfg.resume_sleep_s) * 1000,
    };
    for n in 1..=electron_app::MAX_CUT_SHORT_WAKES {
        let r = dev.wake(&cloud, &short);
        eprintln!("{}", line(usize::from(n), &r));
        assert!(!r.checked_in && r.forced, "wake {n}");
        assert_eq!(r.error, Some(electron_app::WakeError::Budget), "wake {n}");
        assert_eq!(r.end, soon, "wake {n}");
        assert_eq!(retained(&dev).failures, 1, "wake {n}");
        assert_eq!(retained(&dev).forced_sleeps, n, "wake {n}");
    }
    // One more: the bound is reached, the wake counts as failed (second in a row: 600 s).
    let r = dev.wake(&cloud, &short);
    assert_eq!(r.error, Some(electron_app::WakeError::Budget));
    assert_eq!(r.end, WakeEnd::Sleep { ms: 600_000 });
    assert_eq!(retained(&dev).failures, 2);
    // A budget that fits: checked in, the count is cleared.
    let r = dev.wake(&cloud, &cfg);
    assert!(r.checked_in && r.error.is_none(), "{}", line(0, &r));
    assert_eq!(retained(&dev).failures, 0);
    assert_eq!(retained(&dev).forced_sleeps, 0);
}

/// After a power cut mid-download the next wake runs ota-core's repair erases before the
/// modem; a budget that ends after them, in the modem's bring-up, is work cut short: the wake
/// sleeps `resume_sleep_s`, no failure is counted, and the next wake resumes the download.
/// (This harness does not charge flash time to the clock; the simulation does, and there the
/// default run's wake after the cut ends in the erases without powering the modem.)
#[test]
fn a_budget_that_ends_after_the_repair_erases_comes_back_soon() {
    use ota_flash_sim::{Cut, CutKind};
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(30_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let cfg = tight(&cloud, &keys);
    let img2 = image(40_000, 2);
    cloud.release(&cloud.sign((2, 0, 0), 2, &img2));
    let r = dev.wake(&cloud, &cfg);
    assert_eq!(r.progress, (0, 79));
    let at = dev.flash.stats().ops + 24;
    dev.flash.schedule_cut(Cut {
        at,
        kind: CutKind::Torn,
    });
    let r = dev.wake(&cloud, &cfg);
    assert!(dev.flash.is_powered_off(), "the cut fired: {}", line(1, &r));
    dev.power_loss();
    let mut short = cfg;
    short.awake_budget_ms = 5_000;
    let r = dev.wake(&cloud, &short);
    eprintln!("{}", line(2, &r));
    assert!(r.erase_steps > 0, "repair work was pending");
    assert!(r.forced && !r.checked_in);
    assert_eq!(r.error, Some(electron_app::WakeError::Budget));
    assert_eq!(
        r.end,
        WakeEnd::Sleep {
            ms: u64::from(cfg.resume_sleep_s) * 1000
        }
    );
    assert_eq!(retained(&dev).failures, 0);
    let rest = wake_until_reset(&mut dev, &cloud, &cfg, 12);
    assert!(rest[0].checked_in, "{}", line(3, &rest[0]));
    assert_eq!(rest[0].erase_steps, 0, "the repair was done");
    assert_eq!(rest.last().map(|r| r.end), Some(WakeEnd::Reset));
}
