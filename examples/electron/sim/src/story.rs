//! The story, played: wakes of the virtual Electron ([`crate::electron::run_wake`]) against
//! the in-process cloud, turned into the timeline and the summary.
//!
//! 1. **Update** ([`play`]): two wakes with nothing pending; v2 queued while the device
//!    sleeps; wakes until v2 is confirmed (the check-in that learns of it, the download
//!    spread over wakes by the awake budget, the fault plan's power cuts, the bootloader's
//!    install at the reset, the trial boot and the confirm); one wake more with nothing
//!    pending.
//! 2. **Rollback** (when [`StoryOptions::rollback`]): v3 queued; wakes until its trial boot
//!    fails the self-check, the wake marks it failed and reports it, and the bootloader
//!    reverts to v2; the server's record of the failure is read back.
//!
//! After every wake the active slot is compared byte for byte with the image the bootloader
//! booted, and a confirmed image booting anything older counts as a lost image.

use core::time::Duration;

use electron_app::{Buffers, TrialOutcome, WakeEnd, WakeReport};
use ota_cloud::{RolloutId, Share, Target};
use ota_core::Phase;
use serde::Serialize;

use crate::cloud::{CloudError, V2, V3};
use crate::electron::{
    app_config, provision_identity, run_wake, sim_version, BootOutcome, WakeOutcome,
};
use crate::report::{
    Bytes, EventKind, Report, ServerSummary, SimVersion, Summary, Traffic, WakeCause,
};
use crate::sim::Simulation;

/// How the story is played.
#[derive(Debug, Clone, Copy)]
pub struct StoryOptions {
    /// Play the second part (v3 fails its self-check and is rolled back).
    pub rollback: bool,
    /// The most wakes one part may take before the story gives up (a bound, not a goal).
    pub max_wakes: u32,
}

impl Default for StoryOptions {
    fn default() -> Self {
        Self {
            rollback: true,
            max_wakes: 2_000,
        }
    }
}

/// Why the story could not be played to its end (distinct from a story that ends badly,
/// which the summary reports).
#[derive(Debug)]
#[non_exhaustive]
pub enum StoryError {
    /// The cloud (queueing a release, reading a view).
    Cloud(CloudError),
    /// Writing the identity into a device's flash.
    Identity(electron_app::IdentityError),
}

impl core::fmt::Display for StoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Cloud(e) => write!(f, "cloud: {e}"),
            Self::Identity(e) => write!(f, "identity: {e:?}"),
        }
    }
}

impl std::error::Error for StoryError {}

impl From<CloudError> for StoryError {
    fn from(e: CloudError) -> Self {
        Self::Cloud(e)
    }
}

/// The cost of one wake with nothing pending, on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IdleWake {
    /// UDP payload bytes up.
    pub bytes_up: u64,
    /// UDP payload bytes down.
    pub bytes_down: u64,
    /// Datagrams up.
    pub datagrams_up: u64,
    /// Datagrams down.
    pub datagrams_down: u64,
    /// Requests the app sent (the check-in round trip and the unanswered-for Goodbye).
    pub requests: u32,
    /// Round trips (requests waited for: the requests minus the Goodbye).
    pub round_trips: u32,
    /// Awake time, ms (modem power-up and registration included).
    pub awake_ms: u64,
}

/// What the update took, from the wake that learned of it to the reset into the install.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct DownloadFigures {
    /// Wakes from the offer to the reset that installs (both included).
    pub wakes: u32,
    /// Their awake time, s.
    pub awake_s: f64,
    /// Chunks of the image.
    pub chunks_total: u32,
    /// Chunk writes the app reported (a chunk written again after a cut counts twice).
    pub chunks_written: u32,
    /// Chunks received that were already stored.
    pub chunks_duplicate: u32,
    /// Retransmissions.
    pub retransmissions: u32,
    /// Manifest chunks the app received.
    pub manifest_chunks: u32,
    /// Chunk frames (manifest and image) the link delivered to the device in those wakes.
    pub chunk_frames_delivered: u64,
    /// Chunk frames delivered beyond the manifest's and the image's chunks once each: sent
    /// again after a cut, or abandoned in flight when a wake's budget ended (the rest of the
    /// request's batch arrives after the device stopped listening).
    pub chunks_resent: u64,
    /// Every byte of those wakes on the link, both ways, payload (the update's wakes'
    /// check-ins included).
    pub link_bytes: u64,
    /// The same with 28 bytes of IPv4+UDP header per delivered datagram.
    pub billed_bytes: u64,
}

/// The second part's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackOutcome {
    /// Its own summary (expected: v2 confirmed).
    pub summary: Summary,
    /// The v3 rollout's failures on the server.
    pub server_failed: u64,
    /// The v3 rollout's successes on the server (expected 0).
    pub server_succeeded: u64,
    /// The self-check failed on a trial boot of v3.
    pub self_check_failed: bool,
    /// The bootloader reverted to v2.
    pub rolled_back: bool,
}

impl RollbackOutcome {
    /// The part ended as it must: v3 failed, rolled back, the server recorded the failure,
    /// v2 runs confirmed.
    pub fn succeeded(&self) -> bool {
        self.self_check_failed
            && self.rolled_back
            && self.server_failed >= 1
            && self.server_succeeded == 0
            && self.summary.succeeded()
    }
}

/// The whole run, as `--json` writes it: the update part's [`Summary`] (its fields at the top
/// level), then the figures and the second part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoryOutcome {
    /// The update part's summary.
    #[serde(flatten)]
    pub summary: Summary,
    /// One wake with nothing pending (the second wake of the run).
    pub idle_wake: Option<IdleWake>,
    /// The update's download.
    pub download: DownloadFigures,
    /// Boots whose active slot did not hold, byte for byte, the image they booted.
    pub image_mismatches: u32,
    /// Boots that ran an image older than one already confirmed (a confirmed image lost).
    pub confirmed_lost: u32,
    /// The interface violations the emulator recorded, as text.
    pub violations: Vec<String>,
    /// The second part, when played.
    pub rollback: Option<RollbackOutcome>,
    /// The rollback part's timeline (the update part's is the simulation's report).
    #[serde(skip)]
    pub rollback_timeline: String,
}

impl StoryOutcome {
    /// 0 when v2 ends confirmed (in both parts, when the second is played), the images
    /// were never lost or torn and the modem's interface was never broken; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        let ok = self.summary.succeeded()
            && self.image_mismatches == 0
            && self.confirmed_lost == 0
            && self.violations.is_empty()
            && self
                .rollback
                .as_ref()
                .is_none_or(RollbackOutcome::succeeded);
        u8::from(!ok)
    }

    /// The figures as text (after the summary table).
    pub fn figures(&self) -> String {
        let mut s = String::new();
        if let Some(i) = self.idle_wake {
            s.push_str(&format!(
                "{:<28} {} B up / {} B down in {}+{} datagrams, {} round trip(s), awake {:.1} s\n",
                "idle wake",
                i.bytes_up,
                i.bytes_down,
                i.datagrams_up,
                i.datagrams_down,
                i.round_trips,
                i.awake_ms as f64 / 1000.0
            ));
        }
        let d = self.download;
        s.push_str(&format!(
            "{:<28} {} wakes, {:.1} s awake, {} chunk writes for {} chunks, {} duplicates, {} retransmissions\n",
            "download", d.wakes, d.awake_s, d.chunks_written, d.chunks_total, d.chunks_duplicate, d.retransmissions
        ));
        s.push_str(&format!(
            "{:<28} {} B payload, {} B with IP/UDP headers; {} chunk frames delivered for {} manifest + {} image chunks ({} sent again)\n",
            "download wakes on the air", d.link_bytes, d.billed_bytes, d.chunk_frames_delivered, d.manifest_chunks, d.chunks_total, d.chunks_resent
        ));
        s.push_str(&format!(
            "{:<28} {} torn or mismatched, {} confirmed image(s) lost\n",
            "active slot checks", self.image_mismatches, self.confirmed_lost
        ));
        if let Some(r) = &self.rollback {
            s.push_str(&format!(
                "{:<28} self-check failed {}, rolled back {}, server: {} failed / {} succeeded, final {}\n",
                "v3 rollback",
                r.self_check_failed,
                r.rolled_back,
                r.server_failed,
                r.server_succeeded,
                r.summary
                    .final_version
                    .map_or_else(|| "none".into(), |v| format!("v{v}"))
            ));
        }
        s
    }
}

/// Per-download bookkeeping across wakes.
#[derive(Debug, Default)]
struct Track {
    /// Chunks written across the download (rewrites included).
    written: u32,
    /// Rewrites counted as re-fetched so far.
    rewrites: u32,
    total: u32,
    /// The server's id of the update.
    update: Option<cloud_proto::UpdateId>,
}

/// One device's state between its wakes.
#[derive(Debug)]
struct DevState {
    cause: WakeCause,
    track: Track,
    /// Newest confirmed version seen.
    confirmed: Option<SimVersion>,
    trial_version: Option<SimVersion>,
    /// The update was offered / marked for install / confirmed.
    offered: bool,
    installing: bool,
    done: bool,
}

impl DevState {
    fn new() -> Self {
        Self {
            cause: WakeCause::PowerOn,
            track: Track::default(),
            confirmed: None,
            trial_version: None,
            offered: false,
            installing: false,
            done: false,
        }
    }
}

/// The story's state between wakes.
struct Driver<'s> {
    sim: &'s mut Simulation,
    bufs: Box<Buffers>,
    /// Check-in cost of a wake with nothing pending (the baseline the update's bytes are
    /// counted above).
    baseline: Option<(u64, u64)>,
    idle: Option<IdleWake>,
    devs: Vec<DevState>,
    /// Timeline lines name their device (a fleet run).
    fleet: bool,
    image_mismatches: u32,
    confirmed_lost: u32,
    violations: Vec<String>,
    resets: u32,
    awake: Duration,
    stop: bool,
}

impl<'s> Driver<'s> {
    fn new(sim: &'s mut Simulation, fleet: bool) -> Self {
        let devs = sim.devices.iter().map(|_| DevState::new()).collect();
        Self {
            sim,
            bufs: Box::new(Buffers::new()),
            baseline: None,
            idle: None,
            devs,
            fleet,
            image_mismatches: 0,
            confirmed_lost: 0,
            violations: Vec::new(),
            resets: 0,
            awake: Duration::ZERO,
            stop: false,
        }
    }

    /// One reset of device `i`, recorded in `report`.
    fn wake(&mut self, i: usize, report: &mut Report, arm_download: bool) -> WakeOutcome {
        let keys = [self.sim.cloud.trusted_key()];
        let hw = self.sim.cloud.hardware_id();
        let budget = self.sim.scenario.awake_budget_ms;
        let ext = self.sim.scenario.max_extension_ms;
        self.sim.activate(i);
        let dev = &mut self.sim.devices[i];
        let cfg = app_config(dev, hw, &keys, budget, ext);
        let o = run_wake(dev, &cfg, &self.sim.link, &mut self.bufs, arm_download);
        self.resets += 1;
        self.awake += o.awake();
        self.check_slot(i, &o);
        self.record(i, report, &o);
        let st = &mut self.devs[i];
        if let Some(r) = o.report {
            st.offered |= r.offer.is_some_and(|(_, v, _)| sim_version(v) == V2);
            st.installing |= r.install_marked;
            st.done |= r.trial == Some(TrialOutcome::Confirmed) && sim_version(r.running) == V2;
        }
        self.devs[i].cause = if o.cut.is_some() {
            WakeCause::AfterPowerCut
        } else {
            match o.report {
                Some(r) if r.trial == Some(TrialOutcome::Failed) => WakeCause::AfterRejectedTrial,
                Some(WakeReport {
                    end: WakeEnd::Sleep { .. },
                    ..
                }) => WakeCause::Alarm,
                Some(_) | None => WakeCause::AfterInstall,
            }
        };
        o
    }

    /// The active slot holds exactly the image booted; nothing older than a confirmed image
    /// boots.
    fn check_slot(&mut self, i: usize, o: &WakeOutcome) {
        let BootOutcome::Booted { target, .. } = o.boot else {
            return;
        };
        let dev = &self.sim.devices[i];
        let Some(v) = dev.running_image().map(|m| m.version) else {
            self.image_mismatches += 1;
            return;
        };
        let start = dev.layout.active.start as usize;
        let intact = self.sim.cloud.image(v).is_ok_and(|img| {
            dev.flash
                .sim()
                .contents()
                .get(start..start + img.image.len())
                == Some(&img.image[..])
        });
        if !intact {
            self.image_mismatches += 1;
        }
        if !target.is_trial() {
            let st = &mut self.devs[i];
            if st.confirmed.is_some_and(|c| v < c) {
                self.confirmed_lost += 1;
            }
            if st.confirmed.is_none_or(|c| v > c) {
                st.confirmed = Some(v);
            }
        }
    }

    fn record(&mut self, i: usize, rep: &mut Report, o: &WakeOutcome) {
        let wake = o.wake;
        let (t0, t1) = (o.started, o.ended);
        let none = Bytes::default();
        let device = self.fleet.then(|| self.sim.devices[i].credentials.id.0);
        let mut push = |at: Duration, kind: EventKind, traffic: Traffic, bytes: Bytes| match device
        {
            Some(d) => rep.push_for(d, wake, at, kind, traffic, bytes),
            None => rep.push(wake, at, kind, traffic, bytes),
        };
        // The plan's modem faults were added first, so their emulator indices are the plan's;
        // later ones are the switch-offs of power cuts (their own line).
        let planned = &self.sim.scenario.faults.modem;
        for f in &o.modem_faults {
            if let Some(m) = planned.get(f.index) {
                let at = Duration::from_micros(f.at_us);
                push(
                    at,
                    EventKind::ModemFault {
                        spec: m.spec.clone(),
                    },
                    Traffic::CheckIn,
                    none,
                );
            }
        }
        let r = match (o.boot, o.report) {
            (BootOutcome::Booted { from, target }, Some(r)) => {
                let running = sim_version(r.running);
                match from {
                    Phase::Installing if target.is_trial() => {
                        push(
                            t0,
                            EventKind::Installed { version: running },
                            Traffic::Update,
                            none,
                        );
                        self.devs[i].trial_version = Some(running);
                    }
                    Phase::Reverting | Phase::Trial if !target.is_trial() => {
                        if let Some(from) = self.devs[i].trial_version.take() {
                            if from != running {
                                push(
                                    t0,
                                    EventKind::RolledBack { from, to: running },
                                    Traffic::Update,
                                    none,
                                );
                            }
                        }
                    }
                    _ => {}
                }
                push(
                    t0,
                    EventKind::WakeStarted {
                        cause: self.devs[i].cause,
                        running,
                        trial: target.is_trial(),
                    },
                    Traffic::CheckIn,
                    none,
                );
                r
            }
            (boot, _) => {
                if o.cut.is_none() {
                    push(
                        t0,
                        EventKind::Note {
                            text: format!("BOOTLOADER FAILED: {boot:?}"),
                        },
                        Traffic::CheckIn,
                        none,
                    );
                    self.stop = true;
                } else {
                    push(
                        t0,
                        EventKind::Note {
                            text: "bootloader: install under way".into(),
                        },
                        Traffic::Update,
                        none,
                    );
                }
                if let Some(c) = o.cut {
                    push(
                        t1,
                        EventKind::PowerCut {
                            phase: c.phase,
                            at_op: c.at_op,
                        },
                        Traffic::Update,
                        none,
                    );
                }
                return;
            }
        };
        // Bytes: a wake with nothing pending is the check-in's; above that, the update's.
        let total = Bytes {
            up: o.link.up_bytes,
            down: o.link.down_bytes,
        };
        let update_work = r.offer.is_some()
            || r.chunks_fetched > 0
            || r.manifest_chunks > 0
            || r.install_marked
            || r.trial.is_some()
            || r.decision.is_some();
        let (checkin, update) = match (update_work, self.baseline) {
            (true, Some((bu, bd))) => (
                Bytes {
                    up: total.up.min(bu),
                    down: total.down.min(bd),
                },
                Bytes {
                    up: total.up.saturating_sub(bu),
                    down: total.down.saturating_sub(bd),
                },
            ),
            _ => (total, Bytes::default()),
        };
        if !update_work && r.checked_in && r.error.is_none() && self.baseline.is_none() {
            self.baseline = Some((total.up, total.down));
        }
        if !update_work
            && r.checked_in
            && r.error.is_none()
            && r.retained_valid
            && self.idle.is_none()
        {
            self.idle = Some(IdleWake {
                bytes_up: total.up,
                bytes_down: total.down,
                datagrams_up: o.link.up_datagrams,
                datagrams_down: o.link.down_datagrams,
                requests: r.requests,
                round_trips: r.requests.saturating_sub(1),
                awake_ms: o.awake().as_millis() as u64,
            });
        }
        let mut update_left = Some(update);
        let mut take = || update_left.take().unwrap_or_default();
        if let Some(t) = r.trial {
            match t {
                TrialOutcome::Failed => push(
                    t1,
                    EventKind::SelfCheckFailed {
                        version: sim_version(r.running),
                    },
                    Traffic::Update,
                    none,
                ),
                TrialOutcome::Pending => push(
                    t1,
                    EventKind::Trial {
                        version: sim_version(r.running),
                    },
                    Traffic::Update,
                    none,
                ),
                TrialOutcome::Confirmed => {}
            }
        }
        if r.publishes_acked > 0 {
            push(
                t1,
                EventKind::Published {
                    readings: r.publishes_acked,
                },
                Traffic::CheckIn,
                none,
            );
        }
        if r.checked_in {
            push(
                t1,
                EventKind::CheckedIn {
                    offer: r.offer.is_some(),
                },
                Traffic::CheckIn,
                checkin,
            );
        }
        if r.trial == Some(TrialOutcome::Confirmed) {
            push(
                t1,
                EventKind::Confirmed {
                    version: sim_version(r.running),
                },
                Traffic::Update,
                take(),
            );
        }
        if let Some((_, v, size)) = r.offer {
            push(
                t1,
                EventKind::Offer {
                    version: sim_version(v),
                    image_size: size,
                },
                Traffic::Update,
                none,
            );
            if let Some(d) = r.decision {
                push(
                    t1,
                    EventKind::Note {
                        text: format!("decision: {d:?}"),
                    },
                    Traffic::Update,
                    none,
                );
            }
        }
        let mut vetoes = Vec::new();
        if r.offer.is_some() {
            vetoes.push("update-pending");
        }
        if r.chunks_fetched > 0 || r.manifest_chunks > 0 {
            vetoes.push("download");
        }
        if r.erase_steps > 0 || r.chunks_fetched > 0 || r.install_marked {
            vetoes.push("flash-write (critical)");
        }
        if !vetoes.is_empty() {
            push(
                t1,
                EventKind::SleepVetoed {
                    veto: vetoes.join(", "),
                },
                Traffic::Update,
                none,
            );
        }
        if r.erase_steps > 0 {
            push(
                t1,
                EventKind::Note {
                    text: format!(
                        "erase work: {} step(s), {} KiB",
                        r.erase_steps,
                        r.erased_bytes / 1024
                    ),
                },
                Traffic::Update,
                none,
            );
        }
        let (done, total_chunks) = r.progress;
        if total_chunks > 0 && (r.chunks_fetched > 0 || r.chunks_refetched > 0) {
            let update = r.offer.map(|o| o.0);
            let track = &mut self.devs[i].track;
            if track.total != total_chunks || track.update != update {
                *track = Track {
                    total: total_chunks,
                    update,
                    ..Track::default()
                };
            }
            track.written += r.chunks_fetched;
            let excess = track.written.saturating_sub(total_chunks);
            let rewrites = excess.saturating_sub(track.rewrites);
            track.rewrites = excess;
            let chunk = self.sim.scenario.chunk_size;
            let image = r.offer.map_or(0, |o| o.2);
            push(
                t1,
                EventKind::Chunks {
                    first: done.saturating_sub(r.chunks_fetched),
                    count: r.chunks_fetched,
                    refetched: r.chunks_refetched + rewrites,
                    done_bytes: (done * chunk).min(if image > 0 { image } else { u32::MAX }),
                    total_bytes: if image > 0 {
                        image
                    } else {
                        total_chunks * chunk
                    },
                },
                Traffic::Update,
                take(),
            );
        }
        if r.install_marked {
            push(t1, EventKind::Verified, Traffic::Update, take());
        }
        if let Some(c) = o.cut {
            push(
                t1,
                EventKind::PowerCut {
                    phase: c.phase,
                    at_op: c.at_op,
                },
                Traffic::Update,
                none,
            );
        }
        let leftover = take();
        if leftover.total() > 0 {
            push(
                t1,
                EventKind::Note {
                    text: "update traffic (manifest, decision, status)".into(),
                },
                Traffic::Update,
                leftover,
            );
        }
        if let Some(e) = r.error {
            push(
                t1,
                EventKind::Note {
                    text: format!("wake error: {e}"),
                },
                Traffic::CheckIn,
                none,
            );
        }
        if r.forced {
            push(
                t1,
                EventKind::Note {
                    text: "awake budget spent: the deferrable vetoes are overridden".into(),
                },
                Traffic::CheckIn,
                none,
            );
        }
        if !r.checked_in {
            // Bytes of a wake that never checked in (lost datagrams, faults) still count.
            if total.total() > 0 {
                push(
                    t1,
                    EventKind::Note {
                        text: "no check-in".into(),
                    },
                    Traffic::CheckIn,
                    total,
                );
            }
        }
        if o.modem_supply_cut {
            push(
                t1,
                EventKind::Note {
                    text: "modem did not power down: the board cut its supply".into(),
                },
                Traffic::CheckIn,
                none,
            );
        }
        for v in &o.violations {
            let text = format!("{v:?}");
            self.violations.push(text.clone());
            push(
                t1,
                EventKind::ModemViolation { text },
                Traffic::CheckIn,
                none,
            );
        }
        match (o.cut, r.end) {
            (Some(_), _) => {}
            (None, WakeEnd::Sleep { ms }) => push(
                t1,
                EventKind::Slept {
                    seconds: ms / 1000,
                    awake_ms: o.awake().as_millis() as u64,
                },
                Traffic::CheckIn,
                none,
            ),
            (None, WakeEnd::Reset) => push(
                t1,
                EventKind::Note {
                    text: format!(
                        "reset into the bootloader (awake {:.3} s)",
                        o.awake().as_secs_f64()
                    ),
                },
                Traffic::CheckIn,
                none,
            ),
        }
    }

    fn summary(
        &self,
        report: &Report,
        expected: SimVersion,
        resets: u32,
        awake: Duration,
    ) -> Result<Summary, StoryError> {
        let mut s = report.summary(expected, self.sim.scenario.image_size as u32);
        s.wakes = resets;
        s.awake_s = awake.as_secs_f64();
        s.modem_violations = self.violations.len() as u32;
        let id = self.sim.devices[0].credentials.id;
        s.server = self.sim.cloud.device_view(id)?.map(ServerSummary::from);
        Ok(s)
    }
}

/// `Simulation::queue_release` recorded its event in the simulation's report: move it to
/// `rep`.
fn take_queued(sim: &mut Simulation, rep: &mut Report) {
    for e in sim.report.events() {
        let b = Bytes {
            up: e.up,
            down: e.down,
        };
        rep.push(
            e.wake,
            Duration::from_millis(e.at_ms),
            e.kind.clone(),
            e.traffic,
            b,
        );
    }
    sim.report = Report::new();
}

fn queued(sim: &Simulation, rep: &mut Report, version: SimVersion) {
    let dev = &sim.devices[0];
    rep.push(
        dev.wake(),
        dev.clock.now(),
        EventKind::ReleaseQueued {
            version,
            share_bp: Share::ALL.bp(),
        },
        Traffic::CheckIn,
        Bytes::default(),
    );
}

/// Plays the story on device 0 of `sim` (see the [module docs](self)); the update part's
/// timeline is `sim.report`.
///
/// # Errors
/// [`StoryError`] when the cloud fails or the identity cannot be written; a story that ends
/// badly is an `Ok` whose [`StoryOutcome::exit_code`] is 1.
///
/// Cost: every wake's (see [`run_wake`]); a few ms of real time per wake for the link relay.
pub fn play(sim: &mut Simulation, opts: StoryOptions) -> Result<StoryOutcome, StoryError> {
    for d in &mut sim.devices {
        provision_identity(d).map_err(StoryError::Identity)?;
    }
    let mut d = Driver::new(sim, false);
    let mut rep = core::mem::take(&mut d.sim.report);

    // Part 1: two wakes with nothing pending, v2 queued while asleep, the update.
    for _ in 0..2 {
        d.wake(0, &mut rep, false);
    }
    d.sim.queue_release(V2)?;
    take_queued(d.sim, &mut rep);
    let mut download = DownloadFigures::default();
    for _ in 0..opts.max_wakes {
        let installing = d.devs[0].installing;
        let o = d.wake(0, &mut rep, !installing);
        let st = &d.devs[0];
        if let Some(r) = o.report {
            if st.offered && !installing {
                add_download(&mut download, &o, &r);
            }
        } else if st.offered && !installing {
            download.wakes += 1;
            download.awake_s += o.awake().as_secs_f64();
            download.link_bytes += o.link.total_bytes();
            download.billed_bytes += o.link.billed_bytes();
            download.chunk_frames_delivered += o.link.down_chunks;
        }
        if st.done || d.stop {
            break;
        }
    }
    let confirmed = d.devs[0].done;
    download.chunks_total = d.devs[0].track.total;
    download.chunks_resent = download
        .chunk_frames_delivered
        .saturating_sub(u64::from(download.manifest_chunks) + u64::from(download.chunks_total));
    if confirmed {
        d.wake(0, &mut rep, false);
    }
    let (resets, awake) = (d.resets, d.awake);
    let mut summary = d.summary(&rep, V2, resets, awake)?;
    // "Re-fetched" as the air sees it: chunk frames delivered more than once (the app's own
    // count misses the chunk whose write a cut interrupted).
    summary.chunks_refetched = summary
        .chunks_refetched
        .max(u32::try_from(download.chunks_resent).unwrap_or(u32::MAX));

    // Part 2: v3 fails its self-check and is rolled back.
    let mut rollback = None;
    let mut rollback_timeline = String::new();
    if opts.rollback && confirmed && !d.stop {
        let mut rep2 = Report::new();
        let (r0, a0) = (d.resets, d.awake);
        let v3 = d.sim.cloud.queue_release(V3, Target::Product, Share::ALL)?;
        queued(d.sim, &mut rep2, V3);
        let (mut failed, mut rolled) = (false, false);
        for _ in 0..opts.max_wakes {
            let o = d.wake(0, &mut rep2, false);
            if let Some(r) = o.report {
                failed |= r.trial == Some(TrialOutcome::Failed) && sim_version(r.running) == V3;
                if failed && r.trial.is_none() && sim_version(r.running) == V2 {
                    rolled = true;
                }
            }
            if rolled || d.stop {
                break;
            }
        }
        let summary = d.summary(&rep2, V2, d.resets - r0, d.awake - a0)?;
        let p = progress(d.sim, v3)?;
        rollback_timeline = rep2.timeline();
        rollback = Some(RollbackOutcome {
            summary,
            server_failed: p.0,
            server_succeeded: p.1,
            self_check_failed: failed,
            rolled_back: rolled,
        });
    }
    d.sim.report = rep;
    Ok(StoryOutcome {
        summary,
        idle_wake: d.idle,
        download,
        image_mismatches: d.image_mismatches,
        confirmed_lost: d.confirmed_lost,
        violations: d.violations,
        rollback,
        rollback_timeline,
    })
}

fn add_download(d: &mut DownloadFigures, o: &WakeOutcome, r: &WakeReport) {
    d.wakes += 1;
    d.awake_s += o.awake().as_secs_f64();
    d.chunks_written += r.chunks_fetched;
    d.chunks_duplicate += r.chunks_refetched;
    d.retransmissions += r.retransmissions;
    d.manifest_chunks += r.manifest_chunks;
    d.link_bytes += o.link.total_bytes();
    d.chunk_frames_delivered += o.link.down_chunks;
    d.billed_bytes += o.link.billed_bytes();
}

fn progress(sim: &Simulation, rollout: RolloutId) -> Result<(u64, u64), StoryError> {
    Ok(sim
        .cloud
        .rollout_progress(rollout)?
        .map_or((0, 0), |p| (p.failed, p.succeeded)))
}

/// The end of a fleet run (`--fleet N`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetOutcome {
    /// Devices.
    pub devices: u32,
    /// Devices running v2 confirmed at the end.
    pub confirmed: u32,
    /// Wakes of all devices.
    pub wakes: u32,
    /// Their awake time, s.
    pub awake_s: f64,
    /// Simulated time from the first wake to the last device confirmed, s.
    pub span_s: f64,
    /// Bytes for check-ins (all devices).
    pub checkin_bytes: Bytes,
    /// Bytes for the update (all devices).
    pub update_bytes: Bytes,
    /// Chunks written twice (all devices).
    pub chunks_refetched: u32,
    /// Power cuts that fired (all devices).
    pub power_cuts: u32,
    /// The rollout's shares in basis points, in the order they were set.
    pub shares_bp: Vec<u16>,
    /// Boots whose active slot did not hold the image booted.
    pub image_mismatches: u32,
    /// Boots of an image older than one confirmed.
    pub confirmed_lost: u32,
    /// Modem interface violations, as text.
    pub violations: Vec<String>,
}

impl FleetOutcome {
    /// 0 when every device ends on v2 confirmed with no image lost or torn and no modem
    /// violation; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(
            !(self.confirmed == self.devices
                && self.image_mismatches == 0
                && self.confirmed_lost == 0
                && self.violations.is_empty()),
        )
    }

    /// The table as text.
    pub fn table(&self) -> String {
        let shares: Vec<String> = self
            .shares_bp
            .iter()
            .map(|b| format!("{}%", b / 100))
            .collect();
        let rows: [(&str, String); 9] = [
            (
                "devices confirmed on v2",
                format!("{} / {}", self.confirmed, self.devices),
            ),
            ("rollout shares", shares.join(" → ")),
            ("wakes (all devices)", self.wakes.to_string()),
            ("awake (all devices)", format!("{:.1} s", self.awake_s)),
            (
                "simulated span",
                crate::report::SimTime(Duration::from_secs_f64(self.span_s)).to_string(),
            ),
            (
                "check-in bytes (up/down)",
                format!("{} / {}", self.checkin_bytes.up, self.checkin_bytes.down),
            ),
            (
                "update bytes (up/down)",
                format!("{} / {}", self.update_bytes.up, self.update_bytes.down),
            ),
            ("chunks written twice", self.chunks_refetched.to_string()),
            (
                "power cuts / lost images",
                format!(
                    "{} / {} torn, {} lost",
                    self.power_cuts, self.image_mismatches, self.confirmed_lost
                ),
            ),
        ];
        let mut s = String::new();
        for (k, v) in rows {
            s.push_str(&format!("{k:<28} {v}\n"));
        }
        s
    }
}

/// The rollout's stages: the scenario's initial share, then half the fleet, then all of it.
fn stages(initial: Share) -> Vec<Share> {
    let mut v = vec![initial];
    for p in [50u8, 100] {
        if let Some(s) = Share::percent(p) {
            if s.bp() > initial.bp() {
                v.push(s);
            }
        }
    }
    v
}

/// Plays the fleet: every device of `sim` on a staggered schedule (device `i` of `n` first
/// wakes `i × sleep / n` later), one wake each with nothing pending, then v2 queued under a
/// staged rollout over the scenario's initial share; the wakes run in the order of the
/// devices' clocks; when every device inside the share has confirmed v2 the share is raised
/// (to 50 %, then 100 %), as an operator would. `on_progress` gets a progress bar line
/// whenever the count of confirmed devices changes. Ends when every device runs v2 confirmed,
/// or after `opts.max_wakes` wakes per device. The timeline is `sim.report`, each line naming
/// its device.
///
/// # Errors
/// As [`play`].
///
/// Cost: every wake's (see [`run_wake`]).
pub fn play_fleet(
    sim: &mut Simulation,
    opts: StoryOptions,
    mut on_progress: impl FnMut(&str),
) -> Result<FleetOutcome, StoryError> {
    for d in &mut sim.devices {
        provision_identity(d).map_err(StoryError::Identity)?;
    }
    sim.stagger_fleet();
    let n = sim.devices.len();
    let mut d = Driver::new(sim, true);
    let mut rep = core::mem::take(&mut d.sim.report);
    for _ in 0..n {
        let i = d.sim.next_device();
        d.wake(i, &mut rep, false);
    }
    let rollout = d.sim.queue_release(V2)?;
    take_queued(d.sim, &mut rep);
    let stages = stages(d.sim.scenario.initial_share);
    let mut stage = 0;
    let mut shares_bp = vec![stages[0].bp()];
    let mut last_done = usize::MAX;
    let limit = opts.max_wakes.saturating_mul(n as u32);
    for _ in 0..limit {
        let i = d.sim.next_device();
        let installing = d.devs[i].installing;
        d.wake(i, &mut rep, !installing);
        let done = d.devs.iter().filter(|s| s.done).count();
        if done != last_done {
            last_done = done;
            on_progress(&crate::report::progress_bar(
                done as u64,
                n as u64,
                30,
                "devices on v2, confirmed",
            ));
        }
        if done == n || d.stop {
            break;
        }
        if let Some(p) = d.sim.cloud.rollout_progress(rollout)? {
            if p.succeeded >= p.targeted && stage + 1 < stages.len() {
                stage += 1;
                d.sim.cloud.raise_share(rollout, stages[stage])?;
                shares_bp.push(stages[stage].bp());
                let clock = d.sim.server_clock.get();
                rep.push(
                    0,
                    clock.now(),
                    EventKind::Note {
                        text: format!(
                            "server: rollout raised to {}% ({} of {} targeted devices succeeded)",
                            stages[stage].bp() / 100,
                            p.succeeded,
                            p.targeted
                        ),
                    },
                    Traffic::CheckIn,
                    Bytes::default(),
                );
            }
        }
    }
    let s = rep.summary(V2, d.sim.scenario.image_size as u32);
    let confirmed = d
        .devs
        .iter()
        .zip(&d.sim.devices)
        .filter(|(st, dev)| st.done && dev.running_image().is_some_and(|m| m.version == V2))
        .count() as u32;
    let span_s = d
        .sim
        .devices
        .iter()
        .map(|dev| dev.clock.now().as_secs_f64())
        .fold(0.0, f64::max);
    let out = FleetOutcome {
        devices: n as u32,
        confirmed,
        wakes: d.resets,
        awake_s: d.awake.as_secs_f64(),
        span_s,
        checkin_bytes: s.checkin_bytes,
        update_bytes: s.update_bytes,
        chunks_refetched: s.chunks_refetched,
        power_cuts: s.power_cuts,
        shares_bp,
        image_mismatches: d.image_mismatches,
        confirmed_lost: d.confirmed_lost,
        violations: d.violations,
    };
    d.sim.report = rep;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> StoryOutcome {
        let mut rep = Report::new();
        rep.push(
            1,
            Duration::ZERO,
            EventKind::Confirmed { version: V2 },
            Traffic::Update,
            Bytes::default(),
        );
        let summary = rep.summary(V2, 1);
        StoryOutcome {
            summary: summary.clone(),
            idle_wake: None,
            download: DownloadFigures::default(),
            image_mismatches: 0,
            confirmed_lost: 0,
            violations: Vec::new(),
            rollback: Some(RollbackOutcome {
                summary,
                server_failed: 1,
                server_succeeded: 0,
                self_check_failed: true,
                rolled_back: true,
            }),
            rollback_timeline: String::new(),
        }
    }

    #[test]
    fn exit_status_needs_v2_confirmed_intact_images_no_violation_and_the_rollback() {
        assert_eq!(good().exit_code(), 0);
        let mut o = good();
        o.violations.push("PayloadTooSoon".into());
        assert_eq!(
            o.exit_code(),
            1,
            "a modem interface violation fails the run"
        );
        let mut o = good();
        o.image_mismatches = 1;
        assert_eq!(o.exit_code(), 1);
        let mut o = good();
        o.confirmed_lost = 1;
        assert_eq!(o.exit_code(), 1);
        let mut o = good();
        if let Some(r) = o.rollback.as_mut() {
            r.server_failed = 0;
        }
        assert_eq!(o.exit_code(), 1, "the server must record v3's failure");
        let mut o = good();
        o.rollback = None;
        assert_eq!(o.exit_code(), 0, "the rollback part is optional");
        let mut o = good();
        o.summary.final_version = Some(V3);
        assert_eq!(o.exit_code(), 1);
    }

    #[test]
    fn rollout_stages_rise_from_the_initial_share() {
        let bp = |v: Vec<Share>| v.iter().map(|s| s.bp()).collect::<Vec<_>>();
        assert_eq!(
            bp(stages(Share::percent(25).unwrap())),
            [2_500, 5_000, 10_000]
        );
        assert_eq!(bp(stages(Share::percent(60).unwrap())), [6_000, 10_000]);
        assert_eq!(bp(stages(Share::ALL)), [10_000]);
    }
}
