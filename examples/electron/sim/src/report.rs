//! What a run reports: the timeline (one line per [`Event`]), the [`Summary`] table, its JSON
//! form (`--json PATH`) and the exit status rule ([`Summary::exit_code`]).
//!
//! The wake loop feeds [`Report::push`] with [`EventKind`]s and the byte counts of each step;
//! [`Report::summary`] adds them up. Nothing here reads a clock: every time is given.

use core::fmt;
use core::time::Duration;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::faults::CutPhase;

/// A firmware version as the story names it (`2.0.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SimVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

impl SimVersion {
    /// `major.minor.patch`.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for SimVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Simulated time as `d+hh:mm:ss` (days, then time of day, from the start of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimTime(pub Duration);

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        write!(
            f,
            "{}+{:02}:{:02}:{:02}",
            s / 86_400,
            s / 3600 % 24,
            s / 60 % 60,
            s % 60
        )
    }
}

/// Why the device is running this wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WakeCause {
    /// First power-up.
    PowerOn,
    /// RTC alarm out of deep sleep.
    Alarm,
    /// Power came back after a cut.
    AfterPowerCut,
    /// Reset into the bootloader to install, then the new image started.
    AfterInstall,
    /// Reset into the bootloader after a trial image failed its self-check, to revert.
    AfterRejectedTrial,
}

/// What happened. The wake loop emits these; the timeline prints one line each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A wake began (a reset), running `running`.
    WakeStarted {
        /// Why.
        cause: WakeCause,
        /// The image running.
        running: SimVersion,
        /// On trial (installed, not yet confirmed).
        trial: bool,
    },
    /// A sensor reading was published with the check-in.
    Published {
        /// Readings in the check-in.
        readings: u8,
    },
    /// The check-in round trip completed.
    CheckedIn {
        /// Whether the answer carried an update offer.
        offer: bool,
    },
    /// The server offered an update.
    Offer {
        /// Offered version.
        version: SimVersion,
        /// Image size in bytes.
        image_size: u32,
    },
    /// The release was queued on the server (a rollout started) while the device slept.
    ReleaseQueued {
        /// Version.
        version: SimVersion,
        /// Share of the target in basis points.
        share_bp: u16,
    },
    /// A sleep veto was taken or held (sleep-guard's name for it).
    SleepVetoed {
        /// The veto's name (`UpdatePending`, `Download`, `FlashWrite`…).
        veto: String,
    },
    /// Sectors erased (an explicit erase step).
    Erased {
        /// Sectors.
        sectors: u32,
    },
    /// Chunks pulled and written this step.
    Chunks {
        /// First chunk index.
        first: u32,
        /// How many.
        count: u32,
        /// Of those, chunks fetched before and fetched again (after an interruption).
        refetched: u32,
        /// Image bytes written so far / total.
        done_bytes: u32,
        /// Total image bytes.
        total_bytes: u32,
    },
    /// The download is complete and its digest checked from flash.
    Verified,
    /// A planned power cut fired.
    PowerCut {
        /// Counted from.
        phase: CutPhase,
        /// Operation index in the phase.
        at_op: u64,
    },
    /// A planned modem fault fired.
    ModemFault {
        /// The plan item.
        spec: String,
    },
    /// The bootloader installed an image.
    Installed {
        /// Its version.
        version: SimVersion,
    },
    /// The new image runs on trial.
    Trial {
        /// Its version.
        version: SimVersion,
    },
    /// The trial image's self-check failed.
    SelfCheckFailed {
        /// Its version.
        version: SimVersion,
    },
    /// The trial image was confirmed.
    Confirmed {
        /// Its version.
        version: SimVersion,
    },
    /// The bootloader reverted to the previous image.
    RolledBack {
        /// The image that failed.
        from: SimVersion,
        /// The image restored.
        to: SimVersion,
    },
    /// The device said Goodbye and went to deep sleep.
    Slept {
        /// Sleep length in seconds.
        seconds: u64,
        /// Awake time of this wake in ms.
        awake_ms: u64,
    },
    /// The modem emulator saw the driver break the module's interface rules (sending during
    /// a command, payload too soon after `@`…): the run fails.
    ModemViolation {
        /// The emulator's description.
        text: String,
    },
    /// Anything else worth a line.
    Note {
        /// The text.
        text: String,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WakeStarted {
                cause,
                running,
                trial,
            } => {
                let why = match cause {
                    WakeCause::PowerOn => "power on",
                    WakeCause::Alarm => "wake (RTC alarm)",
                    WakeCause::AfterPowerCut => "power back after a cut",
                    WakeCause::AfterInstall => "reset after install",
                    WakeCause::AfterRejectedTrial => "reset after the rejected trial",
                };
                let trial = if *trial { " on trial" } else { "" };
                write!(f, "{why}: running v{running}{trial}")
            }
            Self::Published { readings } => write!(f, "published {readings} reading(s)"),
            Self::CheckedIn { offer } => write!(
                f,
                "checked in: {}",
                if *offer {
                    "update pending"
                } else {
                    "nothing pending"
                }
            ),
            Self::Offer {
                version,
                image_size,
            } => write!(f, "offer: v{version}, {image_size} bytes"),
            Self::ReleaseQueued { version, share_bp } => write!(
                f,
                "server: v{version} queued for {}.{:02}% of the fleet",
                share_bp / 100,
                share_bp % 100
            ),
            Self::SleepVetoed { veto } => write!(f, "sleep vetoed: {veto}"),
            Self::Erased { sectors } => write!(f, "erased {sectors} sector(s)"),
            Self::Chunks {
                first,
                count,
                refetched,
                done_bytes,
                total_bytes,
            } => {
                let last = (first + count).saturating_sub(1);
                write!(
                    f,
                    "chunks {first}..={last} ({done_bytes}/{total_bytes} bytes)"
                )?;
                if *refetched > 0 {
                    write!(f, ", {refetched} re-fetched")?;
                }
                Ok(())
            }
            Self::Verified => f.write_str("download complete, digest verified from flash"),
            Self::PowerCut { phase, at_op } => {
                write!(f, "POWER CUT at {phase} flash operation {at_op}")
            }
            Self::ModemFault { spec } => write!(f, "modem fault: {spec}"),
            Self::Installed { version } => write!(f, "bootloader installed v{version}"),
            Self::Trial { version } => write!(f, "v{version} on trial"),
            Self::SelfCheckFailed { version } => write!(f, "v{version} self-check FAILED"),
            Self::Confirmed { version } => write!(f, "v{version} confirmed"),
            Self::RolledBack { from, to } => write!(f, "rolled back from v{from} to v{to}"),
            Self::Slept { seconds, awake_ms } => write!(
                f,
                "sleep {seconds} s (awake {}.{:03} s)",
                awake_ms / 1000,
                awake_ms % 1000
            ),
            Self::ModemViolation { text } => write!(f, "MODEM INTERFACE VIOLATION: {text}"),
            Self::Note { text } => f.write_str(text),
        }
    }
}

/// Which kind of traffic bytes belong to, for the summary's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Traffic {
    /// Check-ins, publishes, goodbyes: the cost of waking with nothing pending.
    CheckIn,
    /// Manifest and image chunks, decisions and OTA status: the cost of the update.
    Update,
}

/// One timeline line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The device (its server id) in a fleet run; `None` in the one-device story.
    pub device: Option<u32>,
    /// Wake number (1 = first power-up).
    pub wake: u32,
    /// Simulated time since the start, in ms.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// Bytes the device sent for this event.
    pub up: u64,
    /// Bytes the device received for this event.
    pub down: u64,
    /// What the bytes were for.
    pub traffic: Traffic,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = self.device {
            write!(f, "dev {d:<4} ")?;
        }
        write!(
            f,
            "#{:<3} {}  {:<60}",
            self.wake,
            SimTime(Duration::from_millis(self.at_ms)),
            self.kind.to_string()
        )?;
        if self.up > 0 || self.down > 0 {
            write!(f, " ↑{} ↓{}", self.up, self.down)?;
        }
        Ok(())
    }
}

/// Bytes one way and the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Bytes {
    /// Device → server.
    pub up: u64,
    /// Server → device.
    pub down: u64,
}

impl Bytes {
    /// Both ways.
    pub fn total(&self) -> u64 {
        self.up + self.down
    }
}

/// The summary table (and `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Wakes (resets) in the run, power cuts included.
    pub wakes: u32,
    /// Total awake time in seconds.
    pub awake_s: f64,
    /// Simulated time the run spans, in seconds.
    pub span_s: f64,
    /// Bytes for check-ins.
    pub checkin_bytes: Bytes,
    /// Bytes for the update.
    pub update_bytes: Bytes,
    /// Image size of the update the story is about, for the ratio.
    pub image_size: u32,
    /// Chunks fetched again after interruptions.
    pub chunks_refetched: u32,
    /// Power cuts that fired.
    pub power_cuts: u32,
    /// The version running at the end.
    pub final_version: Option<SimVersion>,
    /// Whether it is confirmed (not on trial).
    pub final_confirmed: bool,
    /// The version the story must end on, confirmed.
    pub expected_version: SimVersion,
    /// Modem interface violations the emulator recorded (any fails the run).
    pub modem_violations: u32,
    /// What the server says of the device at the end (set by the driver from
    /// [`crate::cloud::Cloud::device_view`]).
    pub server: Option<ServerSummary>,
}

/// The server's view of a device, for the summary and `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerSummary {
    /// Firmware the device last reported.
    pub running: Option<SimVersion>,
    /// Reported on trial.
    pub trial: bool,
    /// LwM2M Object 5 state (0 idle, 1 downloading, 2 downloaded, 3 updating).
    pub lwm2m_state: u8,
    /// LwM2M Object 5 result (0 initial, 1 success, 2–9 failures, 10 declined…).
    pub lwm2m_result: u8,
    /// Check-ins the server saw.
    pub wakes: u64,
}

impl From<crate::cloud::DeviceView> for ServerSummary {
    fn from(v: crate::cloud::DeviceView) -> Self {
        Self {
            running: v.running,
            trial: v.trial,
            lwm2m_state: v.state as u8,
            lwm2m_result: v.result as u8,
            wakes: v.wakes,
        }
    }
}

impl Summary {
    /// Update bytes on the air over the image size (1.0 = not a byte wasted).
    pub fn update_overhead_ratio(&self) -> f64 {
        if self.image_size == 0 {
            0.0
        } else {
            self.update_bytes.total() as f64 / f64::from(self.image_size)
        }
    }

    /// The story ended as it must: the expected version running and confirmed, and the
    /// driver never broke the modem's interface rules.
    pub fn succeeded(&self) -> bool {
        self.final_confirmed
            && self.final_version == Some(self.expected_version)
            && self.modem_violations == 0
    }

    /// The process exit status: 0 only if [`succeeded`](Self::succeeded), else 1.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.succeeded())
    }

    /// The table as text.
    pub fn table(&self) -> String {
        let v = self
            .final_version
            .map_or_else(|| "none".to_string(), |v| format!("v{v}"));
        let state = if self.final_confirmed {
            "confirmed"
        } else {
            "NOT confirmed"
        };
        let rows: [(&str, String); 10] = [
            ("wakes", self.wakes.to_string()),
            ("awake", format!("{:.1} s", self.awake_s)),
            (
                "simulated span",
                SimTime(Duration::from_secs_f64(self.span_s)).to_string(),
            ),
            (
                "check-in bytes (up/down)",
                format!("{} / {}", self.checkin_bytes.up, self.checkin_bytes.down),
            ),
            (
                "update bytes (up/down)",
                format!("{} / {}", self.update_bytes.up, self.update_bytes.down),
            ),
            (
                "update bytes / image size",
                format!(
                    "{} / {} = {:.3}",
                    self.update_bytes.total(),
                    self.image_size,
                    self.update_overhead_ratio()
                ),
            ),
            ("chunks re-fetched", self.chunks_refetched.to_string()),
            ("power cuts", self.power_cuts.to_string()),
            ("modem violations", self.modem_violations.to_string()),
            ("final version", format!("{v} ({state})")),
        ];
        let mut s = String::new();
        for (k, val) in rows {
            s.push_str(&format!("{k:<28} {val}\n"));
        }
        if let Some(v) = self.server {
            let running = v
                .running
                .map_or_else(|| "-".to_string(), |r| format!("v{r}"));
            s.push_str(&format!(
                "{:<28} {running}{}, LwM2M state {} result {}, {} check-ins\n",
                "server sees",
                if v.trial { " on trial" } else { "" },
                v.lwm2m_state,
                v.lwm2m_result,
                v.wakes
            ));
        }
        s
    }

    /// Writes the summary as pretty JSON to `path`.
    ///
    /// # Errors
    /// Creating or writing the file.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// The run's record: events in order, then the summary from them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    events: Vec<Event>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an event of wake `wake` at simulated `at`, with the bytes it moved.
    pub fn push(
        &mut self,
        wake: u32,
        at: Duration,
        kind: EventKind,
        traffic: Traffic,
        bytes: Bytes,
    ) {
        self.events.push(Event {
            device: None,
            wake,
            at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
            kind,
            up: bytes.up,
            down: bytes.down,
            traffic,
        });
    }

    /// As [`push`](Self::push), for device `device` of a fleet (the timeline names it).
    pub fn push_for(
        &mut self,
        device: u32,
        wake: u32,
        at: Duration,
        kind: EventKind,
        traffic: Traffic,
        bytes: Bytes,
    ) {
        self.push(wake, at, kind, traffic, bytes);
        if let Some(e) = self.events.last_mut() {
            e.device = Some(device);
        }
    }

    /// The events so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The timeline, one line per event.
    pub fn timeline(&self) -> String {
        let mut s = String::new();
        for e in &self.events {
            s.push_str(e.to_string().trim_end());
            s.push('\n');
        }
        s
    }

    /// Adds the events up: wakes (`WakeStarted`), awake time (`Slept`'s `awake_ms`), bytes per
    /// traffic kind, re-fetched chunks, power cuts; the final version is the last
    /// `WakeStarted`/`Confirmed`/`RolledBack`'s. `expected` is the version the story must end
    /// on; `image_size` the update's. Cost: O(events).
    pub fn summary(&self, expected: SimVersion, image_size: u32) -> Summary {
        let mut s = Summary {
            wakes: 0,
            awake_s: 0.0,
            span_s: self.events.last().map_or(0.0, |e| e.at_ms as f64 / 1000.0),
            checkin_bytes: Bytes::default(),
            update_bytes: Bytes::default(),
            image_size,
            chunks_refetched: 0,
            power_cuts: 0,
            final_version: None,
            final_confirmed: false,
            expected_version: expected,
            modem_violations: 0,
            server: None,
        };
        let mut awake_ms = 0u64;
        for e in &self.events {
            let b = match e.traffic {
                Traffic::CheckIn => &mut s.checkin_bytes,
                Traffic::Update => &mut s.update_bytes,
            };
            b.up += e.up;
            b.down += e.down;
            match &e.kind {
                EventKind::WakeStarted { running, trial, .. } => {
                    s.wakes += 1;
                    s.final_version = Some(*running);
                    s.final_confirmed = !trial;
                }
                EventKind::Confirmed { version } => {
                    s.final_version = Some(*version);
                    s.final_confirmed = true;
                }
                EventKind::RolledBack { to, .. } => {
                    s.final_version = Some(*to);
                    s.final_confirmed = true;
                }
                EventKind::Chunks { refetched, .. } => s.chunks_refetched += refetched,
                EventKind::PowerCut { .. } => s.power_cuts += 1,
                EventKind::ModemViolation { .. } => s.modem_violations += 1,
                EventKind::Slept { awake_ms: a, .. } => awake_ms += a,
                _ => {}
            }
        }
        s.awake_s = awake_ms as f64 / 1000.0;
        s
    }
}

/// A text progress bar for the fleet: `[#####.....] 5/10 confirmed`. `width` cells.
pub fn progress_bar(done: u64, total: u64, width: usize, what: &str) -> String {
    let filled = if total == 0 {
        0
    } else {
        (done.min(total) as usize * width) / total as usize
    };
    format!(
        "[{}{}] {done}/{total} {what}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: SimVersion = SimVersion::new(1, 0, 0);
    const V2: SimVersion = SimVersion::new(2, 0, 0);

    fn story() -> Report {
        let mut r = Report::new();
        let none = Bytes::default();
        r.push(
            1,
            Duration::ZERO,
            EventKind::WakeStarted {
                cause: WakeCause::PowerOn,
                running: V1,
                trial: false,
            },
            Traffic::CheckIn,
            none,
        );
        r.push(
            1,
            Duration::from_millis(6_200),
            EventKind::CheckedIn { offer: true },
            Traffic::CheckIn,
            Bytes { up: 90, down: 70 },
        );
        r.push(
            1,
            Duration::from_millis(9_000),
            EventKind::Chunks {
                first: 0,
                count: 8,
                refetched: 1,
                done_bytes: 8192,
                total_bytes: 204_800,
            },
            Traffic::Update,
            Bytes {
                up: 400,
                down: 8_500,
            },
        );
        r.push(
            1,
            Duration::from_millis(9_500),
            EventKind::Slept {
                seconds: 900,
                awake_ms: 9_500,
            },
            Traffic::CheckIn,
            Bytes { up: 40, down: 30 },
        );
        r.push(
            2,
            Duration::from_millis(90_061_000),
            EventKind::WakeStarted {
                cause: WakeCause::AfterInstall,
                running: V2,
                trial: true,
            },
            Traffic::CheckIn,
            none,
        );
        r
    }

    #[test]
    fn sim_time_is_days_plus_time_of_day() {
        assert_eq!(SimTime(Duration::ZERO).to_string(), "0+00:00:00");
        assert_eq!(
            SimTime(Duration::from_secs(86_400 + 3_723)).to_string(),
            "1+01:02:03"
        );
    }

    #[test]
    fn timeline_has_one_line_per_event_with_time_and_bytes() {
        let t = story().timeline();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("#1   0+00:00:00  power on: running v1.0.0"));
        assert!(lines[1].contains("checked in: update pending"));
        assert!(lines[1].ends_with("↑90 ↓70"));
        assert!(lines[2].contains("chunks 0..=7 (8192/204800 bytes), 1 re-fetched"));
        assert!(
            lines[4].starts_with("#2   1+01:01:01  reset after install: running v2.0.0 on trial")
        );
        assert!(!lines[4].contains('↑'));
    }

    #[test]
    fn summary_adds_up_and_exit_status_needs_v2_confirmed() {
        let mut r = story();
        let s = r.summary(V2, 204_800);
        assert_eq!(s.wakes, 2);
        assert_eq!(s.awake_s, 9.5);
        assert_eq!(s.checkin_bytes, Bytes { up: 130, down: 100 });
        assert_eq!(
            s.update_bytes,
            Bytes {
                up: 400,
                down: 8_500
            }
        );
        assert_eq!(s.chunks_refetched, 1);
        assert_eq!(s.final_version, Some(V2));
        assert!(!s.final_confirmed, "still on trial");
        assert_eq!(s.exit_code(), 1);
        r.push(
            2,
            Duration::from_millis(90_070_000),
            EventKind::Confirmed { version: V2 },
            Traffic::CheckIn,
            Bytes::default(),
        );
        let s = r.summary(V2, 204_800);
        assert!(s.succeeded());
        assert_eq!(s.exit_code(), 0);
        assert!(s
            .table()
            .contains("final version                v2.0.0 (confirmed)"));
        // Ending on another version, even confirmed, fails.
        assert_eq!(r.summary(V1, 204_800).exit_code(), 1);
    }

    #[test]
    fn a_modem_violation_fails_an_otherwise_good_story() {
        let mut r = story();
        r.push(
            2,
            Duration::from_millis(90_070_000),
            EventKind::Confirmed { version: V2 },
            Traffic::CheckIn,
            Bytes::default(),
        );
        assert!(r.summary(V2, 1).succeeded());
        r.push(
            2,
            Duration::from_millis(90_071_000),
            EventKind::ModemViolation {
                text: "PayloadTooSoon".into(),
            },
            Traffic::CheckIn,
            Bytes::default(),
        );
        let s = r.summary(V2, 1);
        assert_eq!(s.modem_violations, 1);
        assert_eq!(s.exit_code(), 1);
    }

    #[test]
    fn fleet_events_name_their_device_and_the_server_view_is_tabled() {
        let mut r = Report::new();
        r.push_for(
            3,
            2,
            Duration::from_secs(61),
            EventKind::CheckedIn { offer: false },
            Traffic::CheckIn,
            Bytes { up: 1, down: 2 },
        );
        assert!(r
            .timeline()
            .starts_with("dev 3    #2   0+00:01:01  checked in"));
        let mut s = r.summary(V2, 1);
        s.server = Some(ServerSummary::from(crate::cloud::DeviceView {
            running: Some(V2),
            trial: false,
            state: cloud_proto::OtaState::Idle,
            result: cloud_proto::UpdateResult::Success,
            wakes: 9,
            bytes_up: 0,
            bytes_down: 0,
        }));
        assert!(s
            .table()
            .contains("server sees                  v2.0.0, LwM2M state 0 result 1, 9 check-ins"));
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["server"]["lwm2m_result"], 1);
    }

    #[test]
    fn progress_bar_fills_in_proportion() {
        assert_eq!(
            progress_bar(0, 4, 8, "confirmed"),
            "[........] 0/4 confirmed"
        );
        assert_eq!(
            progress_bar(3, 4, 8, "confirmed"),
            "[######..] 3/4 confirmed"
        );
        assert_eq!(progress_bar(9, 4, 4, "x"), "[####] 9/4 x");
        assert_eq!(progress_bar(0, 0, 2, "x"), "[..] 0/0 x");
    }

    #[test]
    fn json_holds_the_same_summary() {
        let s = story().summary(V2, 204_800);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        s.write_json(&p).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["wakes"], 2);
        assert_eq!(v["update_bytes"]["down"], 8_500);
        assert_eq!(v["final_version"]["major"], 2);
        assert_eq!(v["final_confirmed"], false);
        assert_eq!(v["chunks_refetched"], 1);
    }
}
