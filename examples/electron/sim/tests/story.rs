//! The story end to end: the `electron-app` wake cycle on the virtual Electron, against the
//! in-process `ota-cloud`, over several seeds and fault plans (power cuts mid-download and
//! mid-install, a lossy link, a modem reboot). Each run must end with v2 confirmed, never lose
//! or tear a confirmed image, write no chunk twice but the one in flight at a cut, and (part
//! 2) roll v3 back to v2 with the server recording the failure. Small images keep it quick;
//! nothing here reads a wall clock.

use electron_sim::cloud::{V1, V2, V3};
use electron_sim::faults::{CutPhase, FaultPlan};
use electron_sim::link::LinkConfig;
use electron_sim::report::EventKind;
use electron_sim::sim::{Scenario, Simulation};
use electron_sim::story::{play, StoryOptions, StoryOutcome};

/// 48 chunks of 512 bytes; a 12 s budget without extension takes 8 to 24 chunks a wake.
fn scenario(seed: u64, faults: &str, loss: f64) -> Scenario {
    Scenario {
        image_size: 24 * 1024,
        awake_budget_ms: 12_000,
        max_extension_ms: 0,
        chunk_size: 512,
        link: LinkConfig {
            rate_bytes_per_s: Some(10_000),
            loss,
            seed,
        },
        faults: FaultPlan::parse(faults).unwrap(),
        seed,
        ..Scenario::default()
    }
}

fn run(s: &Scenario, rollback: bool) -> (Simulation, StoryOutcome) {
    let mut sim = Simulation::setup(s).unwrap();
    let out = play(
        &mut sim,
        StoryOptions {
            rollback,
            max_wakes: 300,
        },
    )
    .unwrap();
    eprintln!("{}", sim.report.timeline());
    eprintln!("{}", out.rollback_timeline);
    eprintln!("{}{}", out.summary.table(), out.figures());
    (sim, out)
}

fn cuts(sim: &Simulation, phase: CutPhase) -> usize {
    sim.report
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PowerCut { phase: p, .. } if p == phase))
        .count()
}

/// Wakes the awake budget ended.
fn forced_wakes(sim: &Simulation) -> u64 {
    sim.report
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Note { text } if text.starts_with("awake budget spent")))
        .count() as u64
}

fn faults_fired(sim: &Simulation) -> u64 {
    sim.report
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ModemFault { .. }))
        .count() as u64
}

/// What every run must show.
fn assert_story(
    sim: &Simulation,
    out: &StoryOutcome,
    planned_download: usize,
    planned_install: usize,
) {
    let s = &out.summary;
    assert_eq!(s.final_version, Some(V2), "v2 must end the update part");
    assert!(s.final_confirmed, "v2 must be confirmed");
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    assert_eq!(
        out.image_mismatches, 0,
        "an active slot held a torn image at boot"
    );
    assert_eq!(out.confirmed_lost, 0, "a confirmed image was lost");
    let server = s.server.expect("the server knows the device");
    assert_eq!(server.running, Some(V2));
    assert_eq!(server.lwm2m_result, 1, "the server records the success");
    // The planned cuts fired where planned.
    let (dl, inst) = (cuts(sim, CutPhase::Download), cuts(sim, CutPhase::Install));
    assert_eq!((dl, inst), (planned_download, planned_install));
    assert_eq!(s.power_cuts as usize, dl + inst);
    // No chunk applied twice: only the chunk in flight at a download cut may be written
    // again, and nothing arrives as a duplicate. (The app counts a write when ota-core
    // reports it; the write a cut interrupts is not counted, whether ota-core later finds it
    // whole or asks for it again.)
    let d = out.download;
    assert_eq!(d.chunks_total, 48);
    let cut = dl as u32;
    assert!(
        d.chunks_written + cut >= d.chunks_total && d.chunks_written <= d.chunks_total + cut,
        "{} chunk writes for {} chunks and {dl} cut(s)",
        d.chunks_written,
        d.chunks_total
    );
    assert_eq!(d.chunks_duplicate, 0);
    // On the air: every chunk frame delivered once, but those of the request in flight at a
    // cut, a modem fault or the end of a wake's budget (8 chunks a request, the app's
    // default).
    let forced = forced_wakes(sim);
    let interruptions = dl as u64 + faults_fired(sim) + forced;
    assert!(
        d.chunks_resent <= 8 * interruptions,
        "{} chunk frames sent again after {interruptions} interruption(s)",
        d.chunks_resent
    );
    assert_eq!(
        d.chunk_frames_delivered,
        u64::from(d.manifest_chunks) + u64::from(d.chunks_total) + d.chunks_resent
    );
    assert_eq!(
        u64::from(s.chunks_refetched),
        d.chunks_resent,
        "the summary's re-fetches are the air's"
    );
    assert!(d.wakes >= 2, "the budget spreads the download over wakes");
    assert_eq!(out.exit_code(), 0);
    // The timeline tells the story.
    let t = sim.report.timeline();
    for line in [
        "server: v2.0.0 queued",
        "checked in: update pending",
        "sleep vetoed: update-pending",
        "bootloader installed v2.0.0",
        "running v2.0.0 on trial",
        "v2.0.0 confirmed",
    ] {
        assert!(t.contains(line), "no `{line}` in the timeline");
    }
}

fn assert_rollback(out: &StoryOutcome) {
    let r = out.rollback.as_ref().expect("part 2 played");
    assert!(
        r.self_check_failed,
        "v3's self-check failed on its trial boot"
    );
    assert!(r.rolled_back, "the bootloader reverted to v2");
    assert_eq!((r.server_failed, r.server_succeeded), (1, 0));
    assert_eq!(r.summary.final_version, Some(V2));
    assert!(r.summary.final_confirmed);
    let server = r.summary.server.expect("server view");
    assert_eq!(server.running, Some(V2));
    assert_ne!(server.lwm2m_result, 1, "the last result is v3's failure");
    assert!(out.rollback_timeline.contains("v3.0.0 self-check FAILED"));
    assert!(out
        .rollback_timeline
        .contains("rolled back from v3.0.0 to v2.0.0"));
    assert!(out
        .rollback_timeline
        .contains("reset after the rejected trial: running v2.0.0"));
    assert!(r.succeeded());
}

#[test]
fn seed_1_power_cut_mid_download_and_mid_install_then_v3_rolls_back() {
    let (sim, out) = run(
        &scenario(1, "cut:download@20:torn,cut:install@5:torn", 0.0),
        true,
    );
    assert_story(&sim, &out, 1, 1);
    assert_rollback(&out);
    assert_eq!(out.summary.expected_version, V2);
    assert_ne!(V1, V3);
}

#[test]
fn seed_2_torn_chunk_write_and_a_cut_before_an_install_erase() {
    let (sim, out) = run(
        &scenario(2, "cut:download@37:torn,cut:install@2:before", 0.0),
        true,
    );
    assert_story(&sim, &out, 1, 1);
    assert_rollback(&out);
}

#[test]
fn seed_3_lossy_link_and_a_modem_reboot_mid_download() {
    let (sim, out) = run(
        &scenario(3, "cut:download@11:after,modem:reboot@AT+USORF#25", 0.05),
        false,
    );
    assert_story(&sim, &out, 1, 0);
    assert!(out.rollback.is_none());
    let lost = sim.link.stats();
    assert!(lost.up_lost + lost.down_lost > 0, "the link lost datagrams");
    assert!(out.download.retransmissions > 0 || lost.down_lost > 0);
    assert!(
        sim.report
            .timeline()
            .contains("modem fault: modem:reboot@AT+USORF#25"),
        "the modem rebooted mid-download"
    );
}

#[test]
fn fleet_of_4_under_a_staged_rollout_all_confirm_v2_through_their_cuts() {
    use electron_sim::story::play_fleet;
    let s = Scenario {
        image_size: 8 * 1024,
        fleet: 4,
        initial_share: ota_cloud::Share::percent(25).unwrap(),
        ..scenario(4, "cut:download@9:torn", 0.0)
    };
    let mut sim = Simulation::setup(&s).unwrap();
    let mut bars = Vec::new();
    let out = play_fleet(
        &mut sim,
        StoryOptions {
            rollback: false,
            max_wakes: 100,
        },
        |b| bars.push(b.to_string()),
    )
    .unwrap();
    eprintln!("{}\n{}", sim.report.timeline(), out.table());
    assert_eq!((out.confirmed, out.devices), (4, 4));
    // Staged from 25 %; which devices a share takes is the server's hash, so the run may end
    // before the last stage.
    assert_eq!(out.shares_bp.first(), Some(&2_500));
    assert!(
        out.shares_bp.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        out.shares_bp
    );
    assert!(out
        .shares_bp
        .iter()
        .all(|bp| [2_500, 5_000, 10_000].contains(bp)));
    assert_eq!(out.power_cuts, 4, "each device's download was cut once");
    assert_eq!((out.image_mismatches, out.confirmed_lost), (0, 0));
    assert!(out.chunks_refetched <= 4);
    assert!(out.violations.is_empty());
    assert_eq!(out.exit_code(), 0);
    assert_eq!(
        bars.first().map(String::as_str),
        Some("[..............................] 0/4 devices on v2, confirmed")
    );
    assert_eq!(
        bars.last().map(String::as_str),
        Some("[##############################] 4/4 devices on v2, confirmed")
    );
    // Every device is named on the timeline, and each ends on v2 in flash.
    for dev in &sim.devices {
        assert!(sim
            .report
            .timeline()
            .contains(&format!("dev {:<4} ", dev.credentials.id.0)));
        assert_eq!(dev.running_image().map(|m| m.version), Some(V2));
    }
}

/// Power cuts at seeded random flash operations of the download (0..32, an 8 KiB image's
/// download has more) and of the install (0..8), with a random kind each, over six seeds: every run ends on v2 confirmed with no image torn or
/// lost and no chunk written twice but the one in flight.
#[test]
fn power_cuts_at_random_flash_operations_never_lose_an_image() {
    use electron_sim::link::SplitMix64;
    for seed in 10..16u64 {
        let mut rng = SplitMix64::new(seed);
        let kind = |r: u64| ["before", "torn", "after"][(r % 3) as usize];
        let plan = format!(
            "cut:download@{}:{},cut:install@{}:{}",
            rng.next_u64() % 32,
            kind(rng.next_u64()),
            rng.next_u64() % 8,
            kind(rng.next_u64())
        );
        let s = Scenario {
            image_size: 8 * 1024,
            ..scenario(seed, &plan, 0.0)
        };
        let (sim, out) = run(&s, false);
        let dl = cuts(&sim, CutPhase::Download) as u32;
        let inst = cuts(&sim, CutPhase::Install) as u32;
        let what = format!("seed {seed}, {plan}: {dl} download cut(s), {inst} install cut(s)");
        assert_eq!((dl, inst), (1, 1), "{what}: both cuts fire");
        assert_eq!(out.exit_code(), 0, "{what}");
        assert_eq!(out.summary.final_version, Some(V2), "{what}");
        assert!(out.summary.final_confirmed, "{what}");
        assert_eq!((out.image_mismatches, out.confirmed_lost), (0, 0), "{what}");
        let d = out.download;
        assert!(
            d.chunks_written + dl >= d.chunks_total && d.chunks_written <= d.chunks_total + dl,
            "{what}: {} writes for {} chunks",
            d.chunks_written,
            d.chunks_total
        );
        // The request in flight at the cut, or at a wake's end of budget, is sent again.
        let bound = 8 * (u64::from(dl) + forced_wakes(&sim));
        assert!(d.chunks_resent <= bound, "{what}");
        assert_eq!(
            u64::from(out.summary.chunks_refetched),
            d.chunks_resent,
            "{what}"
        );
        eprintln!("ok: {what}");
    }
}
