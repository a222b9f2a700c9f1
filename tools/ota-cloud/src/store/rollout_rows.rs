//! Rollout columns shared by the SQL stores: how a [`Target`], a [`RolloutState`] and a
//! [`DevicePhase`] are stored, and the row decoders, so SQLite and PostgreSQL read them back
//! the same way (a value out of range is `StoreError::Corrupt`).
//!
//! Tables (migration 3 of each store): `rollouts` (one row per rollout, with its threshold
//! counters `th_failed`/`th_finished` since the start or last resume) and `rollout_devices`
//! (one row per device offered the rollout's release: its [`DevicePhase`], written by the
//! frame transaction).

use cloud_proto::DeviceId;

use super::columns::{corrupt, narrow, to_u64, version_of, SqlRow};
use super::{ProductId, StoreResult};
use crate::rollout::{
    DevicePhase, ErrorThreshold, OfferCandidate, PauseCause, PhaseRow, ReleaseId, Rollout,
    RolloutId, RolloutProgress, RolloutState, Share, Target,
};

/// `rollouts.target_kind`.
pub(crate) const TARGET_PRODUCT: i64 = 0;
pub(crate) const TARGET_DEVICE: i64 = 1;
pub(crate) const TARGET_GROUP: i64 = 2;

/// `rollouts.state`: below [`STATE_CANCELLED`] a rollout may still offer (the index on
/// `(product, state)` serves `state < 3`).
pub(crate) const STATE_RUNNING: i64 = 0;
pub(crate) const STATE_PAUSED_OPERATOR: i64 = 1;
pub(crate) const STATE_PAUSED_THRESHOLD: i64 = 2;
pub(crate) const STATE_CANCELLED: i64 = 3;

/// The columns `target_kind, target_device, target_tag` of a target.
pub(crate) fn target_columns(t: &Target) -> (i64, Option<i64>, Option<&str>) {
    match t {
        Target::Product => (TARGET_PRODUCT, None, None),
        Target::Device(d) => (TARGET_DEVICE, Some(i64::from(d.0)), None),
        Target::Group(tag) => (TARGET_GROUP, None, Some(tag.as_str())),
    }
}

/// The `state` column of a state (the pause figures go to `pause_failed, pause_finished`).
pub(crate) fn state_code(s: RolloutState) -> i64 {
    match s {
        RolloutState::Running => STATE_RUNNING,
        RolloutState::Paused(PauseCause::Operator) => STATE_PAUSED_OPERATOR,
        RolloutState::Paused(PauseCause::ErrorThreshold { .. }) => STATE_PAUSED_THRESHOLD,
        RolloutState::Cancelled => STATE_CANCELLED,
    }
}

fn state_of(code: i64, failed: Option<i64>, finished: Option<i64>) -> StoreResult<RolloutState> {
    Ok(match code {
        STATE_RUNNING => RolloutState::Running,
        STATE_PAUSED_OPERATOR => RolloutState::Paused(PauseCause::Operator),
        STATE_PAUSED_THRESHOLD => RolloutState::Paused(PauseCause::ErrorThreshold {
            failed: to_u64(
                failed.ok_or_else(|| corrupt("pause figures"))?,
                "pause figures",
            )?,
            finished: to_u64(
                finished.ok_or_else(|| corrupt("pause figures"))?,
                "pause figures",
            )?,
        }),
        STATE_CANCELLED => RolloutState::Cancelled,
        _ => return Err(corrupt("rollout state")),
    })
}

fn need(row: &impl SqlRow, i: usize, what: &str) -> StoreResult<i64> {
    row.int(i)?.ok_or_else(|| corrupt(what))
}

fn share_of(bp: i64) -> StoreResult<Share> {
    Share::from_bp(narrow(bp, "rollout share")?).ok_or_else(|| corrupt("rollout share"))
}

pub(crate) fn phase_of(code: i64) -> StoreResult<DevicePhase> {
    DevicePhase::from_code(code).ok_or_else(|| corrupt("rollout device phase"))
}

/// The rollout columns both stores select, from `rollouts ro JOIN releases r ON r.id =
/// ro.release`, in [`rollout_of`]'s order.
macro_rules! rollout_cols {
    () => {
        "ro.id, ro.release, ro.product, r.major, r.minor, r.patch, ro.target_kind, ro.target_device, ro.target_tag, ro.share_bp, ro.seed, ro.threshold_bp, ro.min_finished, ro.defer_until_ms, ro.state, ro.pause_failed, ro.pause_finished, ro.created_ms"
    };
}
pub(crate) use rollout_cols;

/// A rollout row ([`rollout_cols!`]).
pub(crate) fn rollout_of(row: &impl SqlRow) -> StoreResult<Rollout> {
    let target = match need(row, 6, "rollout target")? {
        TARGET_PRODUCT => Target::Product,
        TARGET_DEVICE => Target::Device(DeviceId(narrow(
            need(row, 7, "rollout target device")?,
            "rollout target device",
        )?)),
        TARGET_GROUP => Target::Group(
            row.text(8)?
                .ok_or_else(|| corrupt("rollout target group"))?,
        ),
        _ => return Err(corrupt("rollout target")),
    };
    let error_threshold = match (row.int(11)?, row.int(12)?) {
        (Some(bp), Some(min)) => Some(ErrorThreshold {
            max_failed: share_of(bp)?,
            min_finished: narrow(min, "rollout min finished")?,
        }),
        (None, None) => None,
        _ => return Err(corrupt("rollout threshold")),
    };
    Ok(Rollout {
        id: RolloutId(narrow(need(row, 0, "rollout id")?, "rollout id")?),
        release: ReleaseId(narrow(need(row, 1, "release id")?, "release id")?),
        product: ProductId(narrow(need(row, 2, "product id")?, "product id")?),
        version: version_of(
            need(row, 3, "version")?,
            need(row, 4, "version")?,
            need(row, 5, "version")?,
        )?,
        target,
        share: share_of(need(row, 9, "rollout share")?)?,
        seed: narrow(need(row, 10, "rollout seed")?, "rollout seed")?,
        error_threshold,
        defer_until_ms: row.int(13)?.map(|v| to_u64(v, "defer until")).transpose()?,
        state: state_of(need(row, 14, "rollout state")?, row.int(15)?, row.int(16)?)?,
        created_ms: to_u64(need(row, 17, "rollout created")?, "rollout created")?,
    })
}

/// The candidate columns, in [`candidate_of`]'s order: `ro.id, ro.release, r.major, r.minor,
/// r.patch, ro.state, ro.pause_failed, ro.pause_finished, ro.share_bp, ro.seed,
/// ro.defer_until_ms, rd.phase, rd.retry_at_ms, refused (0/1)`.
pub(crate) fn candidate_of(row: &impl SqlRow) -> StoreResult<OfferCandidate> {
    Ok(OfferCandidate {
        rollout: RolloutId(narrow(need(row, 0, "rollout id")?, "rollout id")?),
        release: ReleaseId(narrow(need(row, 1, "release id")?, "release id")?),
        version: version_of(
            need(row, 2, "version")?,
            need(row, 3, "version")?,
            need(row, 4, "version")?,
        )?,
        state: state_of(need(row, 5, "rollout state")?, row.int(6)?, row.int(7)?)?,
        share: share_of(need(row, 8, "rollout share")?)?,
        seed: narrow(need(row, 9, "rollout seed")?, "rollout seed")?,
        defer_until_ms: row.int(10)?.map(|v| to_u64(v, "defer until")).transpose()?,
        phase: row.int(11)?.map(phase_of).transpose()?,
        retry_at_ms: row.int(12)?.map(|v| to_u64(v, "retry at")).transpose()?,
        refused: need(row, 13, "refused")? != 0,
    })
}

/// A device's open row: `rd.rollout, rd.release, r.major, r.minor, r.patch, rd.phase`.
pub(crate) fn phase_row_of(row: &impl SqlRow) -> StoreResult<PhaseRow> {
    Ok(PhaseRow {
        rollout: RolloutId(narrow(need(row, 0, "rollout id")?, "rollout id")?),
        release: ReleaseId(narrow(need(row, 1, "release id")?, "release id")?),
        version: version_of(
            need(row, 2, "version")?,
            need(row, 3, "version")?,
            need(row, 4, "version")?,
        )?,
        phase: phase_of(need(row, 5, "rollout device phase")?)?,
    })
}

/// A random bucket seed below the hash's prime.
pub(crate) fn new_seed() -> StoreResult<u32> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b)
        .map_err(|_| super::StoreError::Invalid("no OS randomness for the seed"))?;
    Ok(u32::from_le_bytes(b) % (crate::rollout::BUCKET_PRIME as u32))
}

/// Checks a new rollout's own fields (the store checks the ids).
pub(crate) fn check_new(r: &crate::rollout::NewRollout) -> StoreResult<()> {
    if let Target::Group(tag) = &r.target {
        if tag.is_empty() {
            return Err(super::StoreError::Invalid("empty group tag"));
        }
    }
    if r.error_threshold.is_some_and(|t| t.min_finished == 0) {
        return Err(super::StoreError::Invalid(
            "an error threshold needs min_finished of at least 1",
        ));
    }
    Ok(())
}

/// Fills in what the two aggregates leave: `not_offered` (targeted minus those with a row)
/// and `overdue` (every offered or deferred device once the deferral deadline passed).
pub(crate) fn finish_progress(p: &mut RolloutProgress, r: &Rollout, now_ms: u64) {
    p.not_offered = p.targeted.saturating_sub(p.reached());
    if r.defer_until_ms.is_some_and(|d| now_ms >= d) {
        p.overdue = p.offered + p.deferred;
    }
}
