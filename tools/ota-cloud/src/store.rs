//! The storage layer: the [`Store`] trait every backend implements, the records it keeps, and
//! the [`conformance`] suite that every backend must pass unchanged.
//!
//! # How the server uses it (one frame)
//! 1. `cloud_proto::peek_up(frame)` gives the device id; [`Store::keys`] its keys (`None`:
//!    unknown device, drop the frame);
//! 2. `cloud_proto::authenticate(frame, &keys)`;
//! 3. [`Store::last_frame`], then the pure `cloud_proto::admit(verified, last, source, now,
//!    policy)`;
//! 4. unless refused: [`Store::commit_frame`] with the admission's record, the `last` it was
//!    decided on, and the request's [`Effects`] ([`Effects::of_request`]): **one transaction**
//!    that compare-and-sets the record and applies the effects. `Ok(false)`: another instance
//!    got there first, nothing was applied: go back to step 3.
//! 5. answer only after `commit_frame` returned `Ok(true)`: the record and the effects are
//!    durable then.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

use cloud_proto::{
    DeviceId, FirmwareVersion, Keys, LastFrame, OtaState, Up, UpdateDecision, UpdateId,
    UpdateResult, UpdateStatus,
};
use sha2::{Digest as _, Sha256};

use crate::rollout::{
    NewRollout, OfferCandidate, ReleaseId, Rollout, RolloutChange, RolloutId, RolloutProgress,
};
use crate::seal::{RootKey, SealError};

pub(crate) mod columns;
pub mod conformance;
pub(crate) mod rollout_rows;

/// A product's id, assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(pub u32);

/// A product: a kind of device that runs one firmware line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Its id.
    pub id: ProductId,
    /// Unique name.
    pub name: String,
    /// The 16-byte hardware id its images must carry (ota-core's `HardwareId`).
    pub hardware_id: [u8; 16],
    /// The public keys a release must be signed with (one of them), as SPKI PEM. Several
    /// during a key rotation; in the order they were added.
    pub release_keys: Vec<String>,
}

/// What [`Store::add_product`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    /// Unique name.
    pub name: String,
    /// See [`Product::hardware_id`].
    pub hardware_id: [u8; 16],
    /// See [`Product::release_keys`]; may be empty at first.
    pub release_keys: Vec<String>,
}

/// What [`Store::add_device`] needs.
#[derive(Debug)]
pub struct NewDevice {
    /// The cloud-proto device id; `None`: the store picks the lowest unused id above every
    /// existing one.
    pub id: Option<DeviceId>,
    /// Its product.
    pub product: ProductId,
    /// Its tags (groups a rollout may target).
    pub tags: Vec<String>,
    /// Its root key, sealed by the store before it is written.
    pub root_key: RootKey,
}

/// A device as provisioned (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// Its product.
    pub product: ProductId,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// When it was added (the caller's clock, Unix ms).
    pub created_ms: u64,
}

/// The id of a stored publish: increasing in commit order within one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PublishId(pub u64);

/// A publish as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPublish {
    /// Its id.
    pub id: PublishId,
    /// Sender.
    pub device: DeviceId,
    /// The counter of the frame that carried it.
    pub counter: u32,
    /// Application topic.
    pub topic: u16,
    /// Payload.
    pub data: Vec<u8>,
    /// When it was received (the server's clock, Unix ms).
    pub received_ms: u64,
}

/// What a check-in reported about the device (everything but its publishes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckInReport {
    /// Running firmware.
    pub firmware: FirmwareVersion,
    /// Running on trial (not yet confirmed).
    pub trial: bool,
    /// LwM2M state.
    pub state: OtaState,
    /// LwM2M update result.
    pub result: UpdateResult,
    /// The download in progress: the update and the bytes held.
    pub download: Option<(UpdateId, u32)>,
    /// Battery, mV.
    pub battery_mv: u16,
    /// Sleeps forced by the awake budget since the last answered check-in.
    pub forced_sleeps: u16,
}

/// What applying one admitted frame changes, besides its replay record. Build it with
/// [`Effects::of_request`] (or [`Effects::counters_only`] for a retransmission or a nack).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    /// The server's clock when the frame arrived (Unix ms).
    pub now_ms: u64,
    /// Bytes received in the frame.
    pub bytes_up: u64,
    /// Bytes the answer will take (known before the commit: the answer is decided before).
    pub bytes_down: u64,
    /// A check-in's report (counts one wake).
    pub checkin: Option<CheckInReport>,
    /// Publishes to append, in order: `(topic, data)`.
    pub publishes: Vec<(u16, Vec<u8>)>,
    /// An OTA status change.
    pub status: Option<UpdateStatus>,
    /// A decision about an offer.
    pub decision: Option<UpdateDecision>,
    /// The device said goodbye and sleeps this many seconds (closes the awake time of this
    /// wake, measured from its check-in).
    pub goodbye_sleep_s: Option<u32>,
    /// The answer (a `Welcome`) offers this rollout's release: the device's row in the rollout
    /// becomes [`DevicePhase::Offered`](crate::rollout::DevicePhase::Offered) (created, or
    /// moved back from deferred), after the report above is applied. Set by the server, not
    /// by [`of_request`](Self::of_request).
    pub offer: Option<(RolloutId, ReleaseId)>,
}

impl Effects {
    /// Only the traffic counters: what a retransmission or a nacked frame changes.
    pub fn counters_only(now_ms: u64, bytes_up: u64, bytes_down: u64) -> Self {
        Self {
            now_ms,
            bytes_up,
            bytes_down,
            ..Self::default()
        }
    }

    /// The effects of a new request `msg` (not a retransmission: its effects are applied
    /// already). Cost: copies the publishes' payloads.
    pub fn of_request(msg: &Up<'_>, now_ms: u64, bytes_up: u64, bytes_down: u64) -> Self {
        let mut e = Self::counters_only(now_ms, bytes_up, bytes_down);
        match msg {
            Up::CheckIn(c) => {
                e.checkin = Some(CheckInReport {
                    firmware: c.firmware,
                    trial: c.trial,
                    state: c.ota.state,
                    result: c.ota.result,
                    download: c.ota.download.map(|d| (d.update, d.bytes_done)),
                    battery_mv: c.battery_mv,
                    forced_sleeps: c.forced_sleeps,
                });
                e.publishes = c
                    .publishes
                    .iter()
                    .map(|p| (p.topic, p.data.to_vec()))
                    .collect();
            }
            Up::UpdateDecision(d) => e.decision = Some(*d),
            Up::UpdateStatus(s) => e.status = Some(*s),
            Up::Goodbye(g) => e.goodbye_sleep_s = Some(g.sleep_s),
            // Chunk requests change nothing but the counters (the server keeps no transfer
            // state); `Up` is append-only, so a future variant lands here too.
            _ => {}
        }
        e
    }
}

/// One [`Store::commit_frame`] transaction: compare-and-set `device`'s record from `expected`
/// to `record`, and apply `effects`, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameCommit {
    /// The device.
    pub device: DeviceId,
    /// The record `admit` decided on (what [`Store::last_frame`] returned).
    pub expected: Option<LastFrame>,
    /// The record the admission carries.
    pub record: LastFrame,
    /// What to apply with it.
    pub effects: Effects,
}

/// What the server knows of a device from what it reported: `None`/0 until reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStatus {
    /// Last frame of any kind (server clock, Unix ms).
    pub last_seen_ms: Option<u64>,
    /// Last check-in's report and when it came.
    pub last_checkin: Option<(u64, CheckInReport)>,
    /// Last OTA status change reported (after the check-in's, if later).
    pub last_status: Option<UpdateStatus>,
    /// Last decision about an offer.
    pub last_decision: Option<UpdateDecision>,
    /// LwM2M state, the latest of the check-in's and the status change's.
    pub state: OtaState,
    /// LwM2M result, likewise.
    pub result: UpdateResult,
    /// Check-ins (wakes) seen.
    pub wakes: u64,
    /// Forced sleeps reported, summed.
    pub forced_sleeps: u64,
    /// Frame bytes received.
    pub bytes_up: u64,
    /// Answer bytes sent.
    pub bytes_down: u64,
    /// Awake time, summed from each check-in to its goodbye (server clock, ms).
    pub awake_ms: u64,
    /// When the device said it would wake next (Unix ms), from its last goodbye.
    pub next_wake_ms: Option<u64>,
    /// Publishes stored.
    pub publishes: u64,
}

/// How many finished wakes each device keeps ([`Store::wakes`]): the oldest beyond this are
/// deleted by the check-in that starts a new wake (inside its frame transaction), so the table
/// holds at most this many rows per device plus each device's current wake (kept in its
/// device row).
pub const WAKES_KEPT: u64 = 100;

/// One wake of a device as the server saw it: from a check-in to the last frame before its
/// next check-in ([`Store::wakes`]). Frames before a device's first check-in belong to no wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    /// The device's wake number: 1 for its first check-in ([`DeviceStatus::wakes`] for the
    /// current one).
    pub seq: u64,
    /// The check-in's arrival (server clock, Unix ms).
    pub started_ms: u64,
    /// The last frame of the wake (server clock, Unix ms); `last_ms - started_ms` is the awake
    /// time the server saw (from the check-in to the last frame, goodbye included).
    pub last_ms: u64,
    /// Frames accepted in the wake (the check-in included; retransmissions and nacks too).
    pub frames: u64,
    /// Frame bytes received in the wake.
    pub bytes_up: u64,
    /// Answer bytes sent in the wake (chunks included).
    pub bytes_down: u64,
    /// Publishes the check-in carried.
    pub publishes: u64,
    /// What the check-in reported.
    pub report: CheckInReport,
    /// The LwM2M state at the end of the wake (the latest of the check-in's and any status
    /// change's).
    pub state: OtaState,
    /// The LwM2M result, likewise.
    pub result: UpdateResult,
    /// The release the check-in's answer offered, if any.
    pub offered: Option<ReleaseId>,
    /// The sleep the goodbye announced (seconds); `None`: no goodbye (the wake was cut short,
    /// or it is still going on).
    pub sleep_s: Option<u32>,
}

/// One device's row in one rollout: its update history ([`Store::device_updates`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceUpdate {
    /// The rollout.
    pub rollout: RolloutId,
    /// Its release.
    pub release: ReleaseId,
    /// The release's version.
    pub version: FirmwareVersion,
    /// Where the device stands in it.
    pub phase: crate::rollout::DevicePhase,
    /// The LwM2M result the device reported with the frame that last moved the phase (`None`:
    /// none reported since the offer, e.g. a decision only).
    pub result: Option<UpdateResult>,
    /// When it was first offered (server clock, Unix ms).
    pub offered_ms: u64,
    /// When the phase last changed.
    pub updated_ms: u64,
}

/// A device with its status and where it stands in its latest rollout: one row of
/// [`Store::fleet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRow {
    /// The device.
    pub device: Device,
    /// What it reported.
    pub status: DeviceStatus,
    /// Its phase in the rollout whose row changed last (`None`: never offered anything).
    pub phase: Option<crate::rollout::DevicePhase>,
}

/// A release's digest: SHA-256 of the signed container as `ota-tool sign` wrote it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseDigest(pub [u8; 32]);

impl ReleaseDigest {
    /// The digest of `container`. Cost: one SHA-256 over it.
    pub fn of(container: &[u8]) -> Self {
        Self(Sha256::digest(container).into())
    }
}

impl fmt::Debug for ReleaseDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleaseDigest(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// Where a release's container bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseBody {
    /// In the database.
    Inline(Vec<u8>),
    /// In a file (images addressed by digest; the store does not read it).
    File(PathBuf),
}

/// A release: a signed container (already verified by the caller against the product's keys
/// with ota-core's verifier) and what its manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// SHA-256 of the container.
    pub digest: ReleaseDigest,
    /// Its product.
    pub product: ProductId,
    /// Firmware version.
    pub version: FirmwareVersion,
    /// Anti-rollback counter.
    pub security_counter: u32,
    /// Hardware id it is for.
    pub hardware_id: [u8; 16],
    /// Container size in bytes.
    pub size: u64,
    /// The bytes, or where they are.
    pub body: ReleaseBody,
    /// When it was stored (caller's clock, Unix ms).
    pub created_ms: u64,
}

/// Why a store operation failed. Nothing was changed by a call that returns an error (each
/// write is one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// No such device.
    UnknownDevice(DeviceId),
    /// No such product.
    UnknownProduct(ProductId),
    /// A device, product (by name) or release with this identity exists already.
    AlreadyExists,
    /// The input breaks a rule (message says which); nothing was written.
    Invalid(&'static str),
    /// A sealed root key did not open (the master key is not the one the keys were sealed
    /// with, or the row was tampered with), or sealing failed.
    Seal(SealError),
    /// A stored value is not one this version writes (the database was edited or damaged).
    Corrupt(String),
    /// The database failed (I/O, disk full, locked…); the message is the backend's. Retrying
    /// may help.
    Database(String),
    /// The store was closed, or its writer stopped.
    Closed,
    /// No such release.
    UnknownRelease(ReleaseId),
    /// No such rollout.
    UnknownRollout(RolloutId),
    /// The change is not allowed in the rollout's state (pause a paused one, resume a running
    /// one, anything on a cancelled one); nothing changed.
    IllegalTransition {
        /// The rollout.
        rollout: RolloutId,
        /// Its state's name (`running`, `paused`, `cancelled`).
        from: &'static str,
        /// The change's name (`share`, `pause`, `resume`, `cancel`).
        change: &'static str,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownDevice(d) => write!(f, "unknown device {}", d.0),
            Self::UnknownProduct(p) => write!(f, "unknown product {}", p.0),
            Self::AlreadyExists => f.write_str("already exists"),
            Self::Invalid(why) => write!(f, "invalid input: {why}"),
            Self::Seal(_) => f.write_str("root key sealing failed"),
            Self::Corrupt(what) => write!(f, "corrupt stored value: {what}"),
            Self::Database(msg) => write!(f, "database error: {msg}"),
            Self::Closed => f.write_str("store closed"),
            Self::UnknownRelease(r) => write!(f, "unknown release {}", r.0),
            Self::UnknownRollout(r) => write!(f, "unknown rollout {}", r.0),
            Self::IllegalTransition {
                rollout,
                from,
                change,
            } => write!(f, "rollout {} is {from}: cannot {change} it", rollout.0),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Seal(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SealError> for StoreError {
    fn from(e: SealError) -> Self {
        Self::Seal(e)
    }
}

/// Shorthand for the futures the [`Store`] methods return.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the server keeps, behind one async interface (usable from tokio; futures are
/// `Send`). Implemented by [`SqliteStore`](crate::SqliteStore) and, on PostgreSQL, by
/// [`PgStore`](crate::postgres::PgStore); every implementation must pass the same
/// [`conformance`] suite.
///
/// # Contract
/// * **Atomic**: every write method is one transaction: on `Err` nothing changed.
///   [`commit_frame`](Store::commit_frame) compare-and-sets the device's [`LastFrame`] and
///   applies the [`Effects`] together; when the compare fails nothing is applied.
/// * **Durable**: a write's future resolves `Ok` only after the transaction that holds it is
///   committed to stable storage (for SQLite: fsynced to the WAL, `synchronous=FULL`). A
///   crash after `Ok` loses nothing; a crash before it may lose the write, never half of it.
///   Implementations may commit many callers' writes together (group commit) but never
///   acknowledge ahead of the commit.
/// * **Consistent reads**: a read started after a write resolved sees it, from any handle or
///   instance on the same database.
/// * **Secrets**: root keys are stored sealed ([`MasterKey`](crate::MasterKey)); no method
///   logs or prints them.
/// * **Errors**: [`StoreError`]; unknown ids are `Ok(None)` for reads and
///   `Err(UnknownDevice/UnknownProduct)` for writes.
pub trait Store: Send + Sync + 'static {
    /// Adds a product with its release keys. Errors: `AlreadyExists` (name taken), `Invalid`.
    fn add_product(&self, p: NewProduct) -> impl Future<Output = StoreResult<ProductId>> + Send;

    /// A product and its release keys.
    fn product(&self, id: ProductId) -> impl Future<Output = StoreResult<Option<Product>>> + Send;

    /// Every product with its release keys, by id. Cost: two queries, O(products + release
    /// keys).
    fn products(&self) -> impl Future<Output = StoreResult<Vec<Product>>> + Send;

    /// Adds a trusted release key (SPKI PEM) to a product (rotation: add the new, later remove
    /// the old). Adding a key it has already is a no-op. Errors: `UnknownProduct`, `Invalid`.
    fn add_release_key(
        &self,
        product: ProductId,
        spki_pem: String,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Removes a release key; returns whether the product had it. Errors: `UnknownProduct`.
    fn remove_release_key(
        &self,
        product: ProductId,
        spki_pem: String,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Provisions a device; its root key is sealed before it is written. Returns its id.
    /// Errors: `UnknownProduct`, `AlreadyExists` (id taken), `Seal`.
    fn add_device(
        &self,
        d: NewDevice,
        now_ms: u64,
    ) -> impl Future<Output = StoreResult<DeviceId>> + Send;

    /// A device (no secret).
    fn device(&self, id: DeviceId) -> impl Future<Output = StoreResult<Option<Device>>> + Send;

    /// Every device, by id. Cost: O(devices).
    fn devices(&self) -> impl Future<Output = StoreResult<Vec<Device>>> + Send;

    /// The device's cloud-proto keys (its root key unsealed and derived), `None` for an unknown
    /// device. Errors: `Seal` if the sealed key does not open. Cost: one AEAD open, two
    /// HMAC-SHA256.
    fn keys(&self, id: DeviceId) -> impl Future<Output = StoreResult<Option<Keys>>> + Send;

    /// The device's root key itself, for writing its key file (never log it).
    fn root_key(&self, id: DeviceId) -> impl Future<Output = StoreResult<Option<RootKey>>> + Send;

    /// The last frame accepted from the device: `Ok(None)` before its first frame **and** for an
    /// unknown device (the caller has checked [`keys`](Store::keys) first).
    fn last_frame(
        &self,
        id: DeviceId,
    ) -> impl Future<Output = StoreResult<Option<LastFrame>>> + Send;

    /// The frame transaction: if the device's record still equals `c.expected`, replace it with
    /// `c.record` and apply `c.effects`, then commit; `Ok(true)`. If the record changed (another
    /// instance got there first), apply nothing; `Ok(false)`: read it again and re-admit.
    /// Errors: `UnknownDevice`; others as the contract says (nothing applied).
    /// Cost: one transaction (possibly shared with other callers' by group commit).
    fn commit_frame(&self, c: FrameCommit) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Up to `limit` publishes with an id above `after`, oldest first (`PublishId::default()`
    /// for all): page through with the last id returned. Cost: O(limit).
    fn publishes_since(
        &self,
        after: PublishId,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StoredPublish>>> + Send;

    /// Up to `limit` of `device`'s publishes with an id above `after`, oldest first: page
    /// through with the last id returned. Empty for an unknown device.
    /// Cost: one range read of the index on (device, id), O(limit) whatever the other
    /// devices published.
    fn device_publishes(
        &self,
        device: DeviceId,
        after: PublishId,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<StoredPublish>>> + Send;

    /// What the device has reported, `None` for an unknown device.
    fn status(
        &self,
        id: DeviceId,
    ) -> impl Future<Output = StoreResult<Option<DeviceStatus>>> + Send;

    /// Stores a release under its digest (the caller has verified the container) and gives
    /// it the next [`ReleaseId`] (store-wide, increasing, never reused: releases are never
    /// deleted). For [`ReleaseBody::Inline`], the digest and size must be the bytes'.
    /// Storing a release offers it to nobody: that takes a rollout
    /// ([`add_rollout`](Store::add_rollout)).
    /// Errors: `UnknownProduct`, `AlreadyExists`, `Invalid`.
    fn put_release(&self, r: Release) -> impl Future<Output = StoreResult<ReleaseId>> + Send;

    /// A release by digest.
    fn release(
        &self,
        digest: ReleaseDigest,
    ) -> impl Future<Output = StoreResult<Option<Release>>> + Send;

    /// A release by id (the `UpdateId` devices use).
    fn release_by_id(
        &self,
        id: ReleaseId,
    ) -> impl Future<Output = StoreResult<Option<Release>>> + Send;

    /// The id of the release with this digest.
    fn release_id(
        &self,
        digest: ReleaseDigest,
    ) -> impl Future<Output = StoreResult<Option<ReleaseId>>> + Send;

    /// A product's releases with their ids, oldest first. Cost: O(releases of the product),
    /// bodies included.
    fn releases(
        &self,
        product: ProductId,
    ) -> impl Future<Output = StoreResult<Vec<(ReleaseId, Release)>>> + Send;

    /// Starts a rollout of a release (state running) and picks its bucket seed at random.
    /// Errors: `UnknownRelease`; `UnknownDevice` for a device target that does not exist;
    /// `Invalid` for a device of another product, an empty group tag, or an error threshold
    /// with `min_finished` 0.
    fn add_rollout(&self, r: NewRollout) -> impl Future<Output = StoreResult<RolloutId>> + Send;

    /// A rollout.
    fn rollout(&self, id: RolloutId) -> impl Future<Output = StoreResult<Option<Rollout>>> + Send;

    /// Every rollout, or a product's, by id. Cost: O(rollouts).
    fn rollouts(
        &self,
        product: Option<ProductId>,
    ) -> impl Future<Output = StoreResult<Vec<Rollout>>> + Send;

    /// Changes a rollout (one transaction, checked against the state it reads under the
    /// transaction's lock) and returns it as changed. Errors: `UnknownRollout`;
    /// `IllegalTransition` (see [`RolloutChange::apply`]); `Invalid` for a share lower than
    /// the current one. Nothing changes on an error.
    fn update_rollout(
        &self,
        id: RolloutId,
        change: RolloutChange,
    ) -> impl Future<Output = StoreResult<Rollout>> + Send;

    /// How many devices of the rollout's target and share stand where, `None` for an unknown
    /// rollout; `now_ms` decides who is overdue (past the deferral deadline).
    /// Cost: two aggregate queries in the database, O(devices of the target) and
    /// O(devices offered); nothing per device comes back.
    fn rollout_progress(
        &self,
        id: RolloutId,
        now_ms: u64,
    ) -> impl Future<Output = StoreResult<Option<RolloutProgress>>> + Send;

    /// The rollouts that may offer something to `device` at a check-in: running and paused
    /// rollouts of its product whose target includes it, each with the device's row in it
    /// ([`OfferCandidate`]); the caller applies the share, the version and the deferral rules
    /// ([`choose_offer`](crate::rollout::choose_offer)). Empty for an unknown device.
    /// Read at every check-in, never cached (a pause on any instance shows at the next one).
    /// Cost: one query over the product's active rollouts (index on product and state).
    fn offer_candidates(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = StoreResult<Vec<OfferCandidate>>> + Send;

    /// Whether `device` may fetch chunks of `release`: it was offered the release by a
    /// rollout that is not cancelled. Cost: one indexed query.
    fn serves_release(
        &self,
        device: DeviceId,
        release: ReleaseId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Every device with its status and its latest rollout phase, by id: what a fleet view
    /// needs, without one query per device. Cost: one query over the devices (the phase is a
    /// correlated lookup of the index on `rollout_devices(device, …)`) and one over the tags,
    /// O(devices + tags).
    fn fleet(&self) -> impl Future<Output = StoreResult<Vec<FleetRow>>> + Send;

    /// The device's last `limit` wakes, newest first: the current one (from its device row)
    /// then the finished ones the store keeps (at most [`WAKES_KEPT`]). Empty for an unknown
    /// device or one that never checked in. The frame transaction records them: a check-in
    /// archives the previous wake and starts a new one, every other frame adds to the current
    /// one (no statement of its own on the frame path: the counters ride on the updates the
    /// frame makes anyway). Cost: one indexed range read, O(limit).
    fn wakes(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<Wake>>> + Send;

    /// The device's rows in every rollout that offered it something, newest offer first.
    /// Empty for an unknown device. Cost: one indexed read, O(rollouts that offered it).
    fn device_updates(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = StoreResult<Vec<DeviceUpdate>>> + Send;

    /// When each device of the rollout succeeded (its row reached
    /// [`DevicePhase::Succeeded`](crate::rollout::DevicePhase::Succeeded); server clock, Unix
    /// ms), oldest first: the adoption curve. Empty for an unknown rollout. Cost: one read of
    /// the rollout's rows, O(devices offered).
    fn rollout_adoption(&self, id: RolloutId)
        -> impl Future<Output = StoreResult<Vec<u64>>> + Send;
}
