//! Rollouts: which devices are offered which release, and what each of them reported since.
//!
//! A [`Rollout`] is a release plus a [`Target`] (one device, a group of devices by tag, or the
//! whole product), a [`Share`] of that target (a staged rollout: deterministic buckets, so
//! raising the share only adds devices), a [`RolloutState`], an optional [`ErrorThreshold`]
//! (hawkBit's error threshold: the rollout pauses itself when too many of the devices that
//! finished failed) and an optional deferral deadline. Users compare this with Eclipse
//! hawkBit's rollouts, Memfault's staged rollouts and Particle's product releases (the model
//! follows hawkBit's documentation of rollout groups and thresholds, facts only).
//!
//! Everything here is pure: the stores keep the rows ([`Store`](crate::Store)'s rollout
//! methods), the server asks the store for the device's [`OfferCandidate`]s at each check-in
//! (one indexed query) and picks with [`choose_offer`]; the stores move each device's
//! [`DevicePhase`] with [`next_phase`] inside the frame transaction, so both backends apply the
//! same rules.

use std::fmt;

use cloud_proto::{Decision, DeviceId, FirmwareVersion, OtaState, UpdateId, UpdateResult};

use crate::store::{CheckInReport, Effects, ProductId};

/// A release's id: assigned by the store when the release is stored
/// ([`Store::put_release`](crate::Store::put_release)), never reused. It is the cloud-proto
/// [`UpdateId`] devices see in offers and chunk requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseId(pub u32);

impl ReleaseId {
    /// The update id devices see for this release (the same number).
    pub const fn update_id(self) -> UpdateId {
        UpdateId(self.0)
    }

    /// The release an update id names.
    pub const fn of_update(u: UpdateId) -> Self {
        Self(u.0)
    }
}

/// A rollout's id, assigned by the store, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RolloutId(pub u32);

/// Which devices a rollout is for (all of them of the release's product).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One device.
    Device(DeviceId),
    /// Every device with this tag (`device add --tag`).
    Group(String),
    /// Every device of the product.
    Product,
}

/// A share of a rollout's target, in basis points (1/100 of a percent): 0..=10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Share(u16);

impl Share {
    /// Every device of the target.
    pub const ALL: Self = Self(10_000);

    /// `bp` basis points; `None` above 10,000.
    pub const fn from_bp(bp: u16) -> Option<Self> {
        if bp <= 10_000 {
            Some(Self(bp))
        } else {
            None
        }
    }

    /// Whole percent; `None` above 100.
    pub const fn percent(p: u8) -> Option<Self> {
        Self::from_bp(p as u16 * 100)
    }

    /// Basis points.
    pub const fn bp(self) -> u16 {
        self.0
    }

    /// Parses `"12"`, `"12.5"` or `"0.25"` percent (at most two decimals) into basis points.
    pub fn parse_percent(s: &str) -> Option<Self> {
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty()
            || frac.len() > 2
            || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: u32 = whole.parse().ok()?;
        let frac: u32 = format!("{frac:0<2}").parse().ok()?;
        let bp = whole.checked_mul(100)?.checked_add(frac)?;
        Self::from_bp(u16::try_from(bp).ok()?)
    }
}

impl fmt::Display for Share {
    /// As a percentage: `12.5%`, `100%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w, r) = (self.0 / 100, self.0 % 100);
        match r {
            0 => write!(f, "{w}%"),
            r if r % 10 == 0 => write!(f, "{w}.{}%", r / 10),
            r => write!(f, "{w}.{r:02}%"),
        }
    }
}

/// The prime the bucket hash works modulo (2^31 − 1).
pub const BUCKET_PRIME: u64 = 2_147_483_647;

/// Buckets per rollout: a device is in a rollout of share `s` when its bucket is below
/// `s.bp()`.
pub const BUCKETS: u16 = 10_000;

/// A device's bucket in a rollout with `seed`: `a = (device · 48271 + seed) mod p`,
/// `bucket = (a² mod p) mod 10,000` with `p = 2^31 − 1`. Deterministic and the same for every
/// server instance, so a device is in a rollout of share `s` iff `bucket < s.bp()`: raising the
/// share only adds devices. Each rollout has its own seed, so the first 10 % of one rollout are
/// not the first 10 % of the next. Integer arithmetic below 2^63, so the stores compute the same
/// function in SQL (the progress counts) as this one (the offers).
pub fn bucket(seed: u32, device: DeviceId) -> u16 {
    let a = (u64::from(device.0) * 48_271 + u64::from(seed) % BUCKET_PRIME) % BUCKET_PRIME;
    // a < 2^31, so a² < 2^62.
    ((a * a % BUCKET_PRIME) % u64::from(BUCKETS)) as u16
}

/// Whether `device` is inside `share` of a rollout with `seed`.
pub fn in_share(seed: u32, share: Share, device: DeviceId) -> bool {
    bucket(seed, device) < share.bp()
}

/// hawkBit's error threshold: once at least `min_finished` devices of the rollout finished
/// (succeeded or failed) since it started or was last resumed, a failure that makes
/// `failed / finished` exceed `max_failed` pauses the rollout
/// ([`PauseCause::ErrorThreshold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorThreshold {
    /// The failure rate above which the rollout pauses.
    pub max_failed: Share,
    /// Finished devices needed before the threshold applies (at least 1).
    pub min_finished: u32,
}

impl ErrorThreshold {
    /// Whether `failed` of `finished` trips it.
    pub fn tripped(&self, failed: u64, finished: u64) -> bool {
        finished >= u64::from(self.min_finished.max(1))
            && u128::from(failed) * u128::from(BUCKETS)
                > u128::from(self.max_failed.bp()) * u128::from(finished)
    }
}

/// Why a rollout is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseCause {
    /// An operator paused it.
    Operator,
    /// Its [`ErrorThreshold`] tripped: `failed` of `finished` devices (counted since the start
    /// or the last resume) when it paused.
    ErrorThreshold {
        /// Failed devices.
        failed: u64,
        /// Finished devices (succeeded + failed).
        finished: u64,
    },
}

/// A rollout's state. No "completed": a rollout over a group or a product never knows that
/// every device it targets has checked in (devices are added, sleep for weeks or never wake),
/// so it runs until it is cancelled; its progress says how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutState {
    /// Offered to the devices of its target and share.
    Running,
    /// Offered to no new device; devices that accepted it (downloading, downloaded, updating)
    /// are still offered it at check-in and served its chunks, so a download in progress
    /// finishes.
    Paused(PauseCause),
    /// Final: offered to nobody; chunk requests for its release are answered
    /// `Nack(UnknownUpdate)` unless another rollout of the same release that is not cancelled
    /// offered it to the device.
    Cancelled,
}

impl RolloutState {
    /// `running`, `paused`, `cancelled`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused(_) => "paused",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What [`Store::add_rollout`](crate::Store::add_rollout) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRollout {
    /// The release to roll out (its product is the rollout's).
    pub release: ReleaseId,
    /// Which devices.
    pub target: Target,
    /// Which share of them ([`Share::ALL`]: every one).
    pub share: Share,
    /// Pause itself when too many fail.
    pub error_threshold: Option<ErrorThreshold>,
    /// Deferral policy: until this time (Unix ms) a device's `Defer { retry_in_s }` is
    /// honoured (not offered again before the retry time); from then on the deferral is
    /// ignored: the release is offered at every check-in and the device counts as overdue.
    /// `None`: deferrals are always honoured.
    pub defer_until_ms: Option<u64>,
    /// When it was created (caller's clock, Unix ms).
    pub created_ms: u64,
}

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Its id.
    pub id: RolloutId,
    /// The release.
    pub release: ReleaseId,
    /// The release's product.
    pub product: ProductId,
    /// The release's version.
    pub version: FirmwareVersion,
    /// Which devices.
    pub target: Target,
    /// Which share of them.
    pub share: Share,
    /// The bucket seed ([`bucket`]), chosen by the store at random when it was added.
    pub seed: u32,
    /// See [`NewRollout::error_threshold`].
    pub error_threshold: Option<ErrorThreshold>,
    /// See [`NewRollout::defer_until_ms`].
    pub defer_until_ms: Option<u64>,
    /// Now.
    pub state: RolloutState,
    /// When it was created.
    pub created_ms: u64,
}

/// An operator's change to a rollout ([`Store::update_rollout`](crate::Store::update_rollout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutChange {
    /// Raise the share (lowering is refused: a device once offered stays in the rollout).
    /// Running or paused rollouts.
    Share(Share),
    /// Running → paused by the operator.
    Pause,
    /// Paused (by the operator or the threshold) → running; the error threshold then counts
    /// only devices that finish after the resume.
    Resume,
    /// Running or paused → cancelled (final).
    Cancel,
}

impl RolloutChange {
    /// `share`, `pause`, `resume`, `cancel`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Share(_) => "share",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }

    /// The state after the change, or `None` when the change is not allowed from `from`
    /// (lowering a share is checked by the store, which knows the current one).
    pub fn apply(&self, from: RolloutState) -> Option<RolloutState> {
        use RolloutState::*;
        match (self, from) {
            (_, Cancelled) => None,
            (Self::Share(_), s) => Some(s),
            (Self::Pause, Running) => Some(Paused(PauseCause::Operator)),
            (Self::Resume, Paused(_)) => Some(Running),
            (Self::Cancel, _) => Some(Cancelled),
            (Self::Pause, Paused(_)) | (Self::Resume, Running) => None,
        }
    }
}

/// Where one device stands in one rollout, as the device reported it (LwM2M Object 5: state
/// and update result), from the first offer on. Stored per (rollout, device) by the frame
/// transaction; a device with no row has not been offered the rollout's release yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DevicePhase {
    /// Offered; no decision yet.
    Offered = 0,
    /// Said `Defer` (LwM2M result 11).
    Deferred = 1,
    /// Accepted, or reports the download in progress (LwM2M state 1).
    Downloading = 2,
    /// Reports the image downloaded and verified (LwM2M state 2).
    Downloaded = 3,
    /// Reports installing or running it on trial (LwM2M state 3).
    Updating = 4,
    /// Reports result 1 (success), or checks in running the release's version confirmed.
    Succeeded = 5,
    /// Reports a failure result (2–9) for it.
    Failed = 6,
    /// Declined it (`Decline`, or LwM2M result 10, cancelled).
    Declined = 7,
}

impl DevicePhase {
    /// From its stored number.
    pub fn from_code(c: i64) -> Option<Self> {
        use DevicePhase::*;
        Some(match c {
            0 => Offered,
            1 => Deferred,
            2 => Downloading,
            3 => Downloaded,
            4 => Updating,
            5 => Succeeded,
            6 => Failed,
            7 => Declined,
            _ => return None,
        })
    }

    /// Final: nothing the device reports moves it again (succeeded, failed, declined).
    pub fn is_final(self) -> bool {
        self >= Self::Succeeded
    }

    /// The device accepted the release and has not finished (the phases a paused rollout
    /// still offers and serves).
    pub fn is_in_progress(self) -> bool {
        matches!(self, Self::Downloading | Self::Downloaded | Self::Updating)
    }
}

/// A rollout's progress: how many devices of its target (and share) stand where.
/// `targeted = not_offered + offered + deferred + downloading + downloaded + updating +
/// succeeded + failed + declined`; `overdue` is a part of `offered + deferred`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolloutProgress {
    /// Devices of the target inside the share, now.
    pub targeted: u64,
    /// Of them, not offered yet (asleep since, or newer than the firmware they report…).
    pub not_offered: u64,
    /// [`DevicePhase::Offered`].
    pub offered: u64,
    /// [`DevicePhase::Deferred`].
    pub deferred: u64,
    /// Offered or deferred while past the rollout's deferral deadline: the release is offered
    /// to them at every check-in and their deferrals are ignored.
    pub overdue: u64,
    /// [`DevicePhase::Downloading`].
    pub downloading: u64,
    /// [`DevicePhase::Downloaded`].
    pub downloaded: u64,
    /// [`DevicePhase::Updating`].
    pub updating: u64,
    /// [`DevicePhase::Succeeded`].
    pub succeeded: u64,
    /// [`DevicePhase::Failed`].
    pub failed: u64,
    /// [`DevicePhase::Declined`].
    pub declined: u64,
}

impl RolloutProgress {
    /// Adds `n` devices in `phase`.
    pub fn add(&mut self, phase: DevicePhase, n: u64) {
        use DevicePhase::*;
        let slot = match phase {
            Offered => &mut self.offered,
            Deferred => &mut self.deferred,
            Downloading => &mut self.downloading,
            Downloaded => &mut self.downloaded,
            Updating => &mut self.updating,
            Succeeded => &mut self.succeeded,
            Failed => &mut self.failed,
            Declined => &mut self.declined,
        };
        *slot += n;
    }

    /// Devices with a phase (offered at least once).
    pub fn reached(&self) -> u64 {
        self.offered
            + self.deferred
            + self.downloading
            + self.downloaded
            + self.updating
            + self.succeeded
            + self.failed
            + self.declined
    }
}

/// One rollout that may offer its release to a device at a check-in, with the device's row in
/// it: what [`Store::offer_candidates`](crate::Store::offer_candidates) returns (running and
/// paused rollouts of the device's product whose target includes the device, share not yet
/// applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferCandidate {
    /// The rollout.
    pub rollout: RolloutId,
    /// Its release.
    pub release: ReleaseId,
    /// The release's version.
    pub version: FirmwareVersion,
    /// Running or paused.
    pub state: RolloutState,
    /// Its share and seed.
    pub share: Share,
    /// Its bucket seed.
    pub seed: u32,
    /// Its deferral deadline.
    pub defer_until_ms: Option<u64>,
    /// The device's phase in this rollout (`None`: never offered).
    pub phase: Option<DevicePhase>,
    /// When a deferral asked to be offered again (Unix ms), for [`DevicePhase::Deferred`].
    pub retry_at_ms: Option<u64>,
    /// The device declined this release or reported it failed, in any rollout.
    pub refused: bool,
}

/// Whether `c` offers its release to `device` running `firmware` at `now_ms`:
/// * the release is newer than `firmware`, and the device has not declined or failed it;
/// * a running rollout: the device is inside the share (or was offered it already: a share
///   is never lowered, this only matters for rows from before a migration);
///   a paused one: only to a device that accepted it and has not finished;
/// * a deferral is honoured until its retry time, unless the rollout's deferral deadline has
///   passed (`now_ms >= defer_until_ms`): then it is offered at every check-in.
pub fn offers(
    c: &OfferCandidate,
    device: DeviceId,
    firmware: FirmwareVersion,
    now_ms: u64,
) -> bool {
    if c.version <= firmware || c.refused || c.phase.is_some_and(DevicePhase::is_final) {
        return false;
    }
    let eligible = match c.state {
        RolloutState::Running => c.phase.is_some() || in_share(c.seed, c.share, device),
        RolloutState::Paused(_) => c.phase.is_some_and(DevicePhase::is_in_progress),
        RolloutState::Cancelled => false,
    };
    if !eligible {
        return false;
    }
    if c.phase == Some(DevicePhase::Deferred) {
        let deadline_passed = c.defer_until_ms.is_some_and(|d| now_ms >= d);
        let waiting = c.retry_at_ms.is_some_and(|r| now_ms < r);
        if waiting && !deadline_passed {
            return false;
        }
    }
    true
}

/// The offer for a device at a check-in among `candidates`: the newest version any of them
/// [`offers`]; between rollouts of the same version, the oldest rollout (lowest id), so a
/// device stays in the rollout it was first offered through.
pub fn choose_offer(
    candidates: &[OfferCandidate],
    device: DeviceId,
    firmware: FirmwareVersion,
    now_ms: u64,
) -> Option<&OfferCandidate> {
    candidates
        .iter()
        .filter(|c| offers(c, device, firmware, now_ms))
        .max_by(|a, b| a.version.cmp(&b.version).then(b.rollout.cmp(&a.rollout)))
}

/// One of a device's rows that a frame may move: its rollout, release, phase and the
/// release's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseRow {
    /// The rollout.
    pub rollout: RolloutId,
    /// Its release.
    pub release: ReleaseId,
    /// The release's version.
    pub version: FirmwareVersion,
    /// The phase now.
    pub phase: DevicePhase,
}

/// A row's new phase and, for a deferral, when the device asked to be offered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseChange {
    /// The new phase.
    pub phase: DevicePhase,
    /// For [`DevicePhase::Deferred`] from a `Defer` decision: now + `retry_in_s`.
    pub retry_at_ms: Option<u64>,
}

fn failure(r: UpdateResult) -> bool {
    use UpdateResult::*;
    matches!(
        r,
        NotEnoughFlash
            | OutOfRam
            | ConnectionLost
            | IntegrityFailure
            | UnsupportedPackage
            | InvalidUri
            | UpdateFailed
            | UnsupportedProtocol
    )
}

fn from_lwm2m(state: OtaState, result: UpdateResult) -> Option<DevicePhase> {
    if result == UpdateResult::Success {
        return Some(DevicePhase::Succeeded);
    }
    if failure(result) {
        return Some(DevicePhase::Failed);
    }
    match result {
        UpdateResult::Cancelled => return Some(DevicePhase::Declined),
        UpdateResult::Deferred => return Some(DevicePhase::Deferred),
        _ => {}
    }
    match state {
        OtaState::Idle => None,
        OtaState::Downloading => Some(DevicePhase::Downloading),
        OtaState::Downloaded => Some(DevicePhase::Downloaded),
        OtaState::Updating => Some(DevicePhase::Updating),
    }
}

/// The new phase of `row` after a frame with `effects` (applied in the frame transaction, in
/// this order: the check-in report, the decision, the status change); `None`: unchanged. A
/// final phase never changes.
/// * check-in running the row's version: confirmed → succeeded, on trial → updating; a
///   download reported for the row's release → the report's LwM2M state and result;
/// * decision about the row's release: accept → downloading, defer → deferred (retry at now +
///   `retry_in_s`), decline → declined;
/// * status change for the row's release → its LwM2M state and result (success → succeeded;
///   results 2–9 → failed; 10 → declined; 11 → deferred; otherwise the state).
pub fn next_phase(row: &PhaseRow, effects: &Effects) -> Option<PhaseChange> {
    let mut phase = row.phase;
    let mut retry_at_ms = None;
    let update = row.release.update_id();
    let mut set = |p: DevicePhase, retry: Option<u64>, phase: &mut DevicePhase| {
        if !phase.is_final() {
            *phase = p;
            retry_at_ms = retry;
        }
    };
    if let Some(CheckInReport {
        firmware,
        trial,
        state,
        result,
        download,
        ..
    }) = effects.checkin
    {
        if firmware == row.version {
            let p = if trial {
                DevicePhase::Updating
            } else {
                DevicePhase::Succeeded
            };
            set(p, None, &mut phase);
        } else if download.is_some_and(|(u, _)| u == update) {
            if let Some(p) = from_lwm2m(state, result) {
                set(p, None, &mut phase);
            }
        }
    }
    if let Some(d) = effects.decision.filter(|d| d.update == update) {
        match d.decision {
            Decision::Accept { .. } => set(DevicePhase::Downloading, None, &mut phase),
            Decision::Defer { retry_in_s, .. } => set(
                DevicePhase::Deferred,
                Some(effects.now_ms.saturating_add(u64::from(retry_in_s) * 1000)),
                &mut phase,
            ),
            Decision::Decline(_) => set(DevicePhase::Declined, None, &mut phase),
        }
    }
    if let Some(s) = effects.status.filter(|s| s.update == update) {
        if let Some(p) = from_lwm2m(s.state, s.result) {
            set(p, None, &mut phase);
        }
    }
    (phase != row.phase || retry_at_ms.is_some()).then_some(PhaseChange { phase, retry_at_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloud_proto::{DeferReason, UpdateDecision, UpdateStatus};

    fn fw(major: u16, minor: u16, patch: u16) -> FirmwareVersion {
        FirmwareVersion {
            major,
            minor,
            patch,
        }
    }

    /// Raising the share only ever adds devices, and a share takes about its fraction.
    #[test]
    fn raising_the_share_only_adds_devices() {
        for seed in [0, 1, 0xdead_beef, u32::MAX] {
            let mut prev: Vec<u32> = Vec::new();
            for pct in [0u8, 1, 5, 10, 25, 50, 75, 99, 100] {
                let share = Share::percent(pct).unwrap();
                let now: Vec<u32> = (0..20_000u32)
                    .filter(|d| in_share(seed, share, DeviceId(*d)))
                    .collect();
                assert!(
                    prev.iter().all(|d| now.binary_search(d).is_ok()),
                    "{seed} {pct}"
                );
                // Within 1.5 points of the share over 20,000 consecutive ids.
                let got = now.len() as f64 / 200.0;
                assert!(
                    (got - f64::from(pct)).abs() < 1.5,
                    "{seed}: {pct}% took {got}%"
                );
                prev = now;
            }
            assert_eq!(prev.len(), 20_000);
        }
        // Two seeds pick different devices.
        let ten = Share::percent(10).unwrap();
        let a: Vec<u32> = (0..1000)
            .filter(|d| in_share(1, ten, DeviceId(*d)))
            .collect();
        let b: Vec<u32> = (0..1000)
            .filter(|d| in_share(2, ten, DeviceId(*d)))
            .collect();
        assert_ne!(a, b);
        // Large ids stay in range (no overflow).
        assert!(bucket(u32::MAX, DeviceId(u32::MAX)) < BUCKETS);
    }

    #[test]
    fn shares_parse_and_print() {
        assert_eq!(Share::parse_percent("12.5"), Share::from_bp(1250));
        assert_eq!(Share::parse_percent("0.25"), Share::from_bp(25));
        assert_eq!(Share::parse_percent("100"), Some(Share::ALL));
        for bad in ["", "101", "1.234", "-1", "x", ".5", "1e2"] {
            assert_eq!(Share::parse_percent(bad), None, "{bad}");
        }
        assert_eq!(Share::from_bp(1250).unwrap().to_string(), "12.5%");
        assert_eq!(Share::from_bp(25).unwrap().to_string(), "0.25%");
        assert_eq!(Share::ALL.to_string(), "100%");
    }

    #[test]
    fn transitions() {
        use RolloutChange::*;
        use RolloutState::*;
        let paused = Paused(PauseCause::Operator);
        assert_eq!(Pause.apply(Running), Some(paused));
        assert_eq!(Pause.apply(paused), None);
        assert_eq!(Resume.apply(Running), None);
        assert_eq!(
            Resume.apply(Paused(PauseCause::ErrorThreshold {
                failed: 3,
                finished: 4
            })),
            Some(Running)
        );
        assert_eq!(Cancel.apply(paused), Some(Cancelled));
        for c in [Pause, Resume, Cancel, Share(super::Share::ALL)] {
            assert_eq!(c.apply(Cancelled), None);
        }
    }

    #[test]
    fn threshold() {
        let t = ErrorThreshold {
            max_failed: Share::percent(20).unwrap(),
            min_finished: 5,
        };
        assert!(!t.tripped(4, 4), "too few finished");
        assert!(t.tripped(2, 5));
        assert!(!t.tripped(1, 5), "exactly 20 % is not above");
        assert!(!t.tripped(0, 0));
    }

    fn cand(version: FirmwareVersion, rollout: u32) -> OfferCandidate {
        OfferCandidate {
            rollout: RolloutId(rollout),
            release: ReleaseId(rollout + 100),
            version,
            state: RolloutState::Running,
            share: Share::ALL,
            seed: 7,
            defer_until_ms: None,
            phase: None,
            retry_at_ms: None,
            refused: false,
        }
    }

    #[test]
    fn offers_follow_share_state_and_deferral() {
        let d = DeviceId(3);
        let old = fw(1, 0, 0);
        let mut c = cand(fw(1, 1, 0), 1);
        assert!(offers(&c, d, old, 0));
        assert!(!offers(&c, d, fw(1, 1, 0), 0), "not newer");
        c.share = Share::from_bp(0).unwrap();
        assert!(!offers(&c, d, old, 0), "outside the share");
        c.phase = Some(DevicePhase::Offered);
        assert!(offers(&c, d, old, 0), "offered already");
        c.state = RolloutState::Paused(PauseCause::Operator);
        assert!(!offers(&c, d, old, 0), "paused: not before accepting");
        c.phase = Some(DevicePhase::Downloading);
        assert!(
            offers(&c, d, old, 0),
            "paused: still to a downloading device"
        );
        c.state = RolloutState::Running;
        c.phase = Some(DevicePhase::Deferred);
        c.retry_at_ms = Some(1_000);
        assert!(!offers(&c, d, old, 999));
        assert!(offers(&c, d, old, 1_000));
        c.defer_until_ms = Some(500);
        assert!(offers(&c, d, old, 600), "deadline passed: deferral ignored");
        assert!(!offers(&c, d, old, 400));
        c.refused = true;
        assert!(!offers(&c, d, old, 2_000));

        let cs = [
            cand(fw(1, 1, 0), 1),
            cand(fw(1, 2, 0), 2),
            cand(fw(1, 2, 0), 3),
        ];
        assert_eq!(
            choose_offer(&cs, d, old, 0).map(|c| c.rollout),
            Some(RolloutId(2))
        );
    }

    #[test]
    fn phases_follow_reports() {
        let row = PhaseRow {
            rollout: RolloutId(1),
            release: ReleaseId(4),
            version: fw(2, 0, 0),
            phase: DevicePhase::Offered,
        };
        let mut e = Effects::counters_only(10_000, 0, 0);
        assert_eq!(next_phase(&row, &e), None);
        e.decision = Some(UpdateDecision {
            update: UpdateId(4),
            decision: Decision::Defer {
                retry_in_s: 60,
                reason: DeferReason::LowBattery,
            },
        });
        assert_eq!(
            next_phase(&row, &e),
            Some(PhaseChange {
                phase: DevicePhase::Deferred,
                retry_at_ms: Some(70_000)
            })
        );
        e.decision = None;
        e.status = Some(UpdateStatus {
            update: UpdateId(4),
            state: OtaState::Idle,
            result: UpdateResult::UpdateFailed,
        });
        assert_eq!(
            next_phase(&row, &e).map(|c| c.phase),
            Some(DevicePhase::Failed)
        );
        // Another update's status: no change. A final phase never moves.
        e.status = e.status.map(|s| UpdateStatus {
            update: UpdateId(5),
            ..s
        });
        assert_eq!(next_phase(&row, &e), None);
        let done = PhaseRow {
            phase: DevicePhase::Failed,
            ..row
        };
        e.checkin = Some(CheckInReport {
            firmware: fw(2, 0, 0),
            trial: false,
            state: OtaState::Idle,
            result: UpdateResult::Success,
            download: None,
            battery_mv: 0,
            forced_sleeps: 0,
        });
        assert_eq!(next_phase(&done, &e), None);
        assert_eq!(
            next_phase(&row, &e).map(|c| c.phase),
            Some(DevicePhase::Succeeded)
        );
    }
}
