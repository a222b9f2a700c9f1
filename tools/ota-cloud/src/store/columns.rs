//! Column codecs shared by the SQL stores: both keep integers as `i64` and the cloud-proto
//! enums by discriminant, so a value read back is checked the same way on SQLite and
//! PostgreSQL (a value out of range is `StoreError::Corrupt`, never a panic).

use std::path::PathBuf;

use cloud_proto::{
    FirmwareVersion, LastFrame, OtaState, UpdateDecision, UpdateId, UpdateResult, UpdateStatus,
    TAG_LEN,
};

use crate::rollout::{DevicePhase, ReleaseId, RolloutId};
use crate::store::{
    CheckInReport, DeviceStatus, DeviceUpdate, Effects, ProductId, Release, ReleaseBody,
    ReleaseDigest, StoreError, StoreResult, Wake,
};

/// The shape of an SPKI PEM (`ota-tool keygen`'s public key file); the signature check itself
/// is the release upload's (ota-core's verifier).
pub(crate) fn is_spki_pem(s: &str) -> bool {
    let s = s.trim();
    s.starts_with("-----BEGIN PUBLIC KEY-----") && s.ends_with("-----END PUBLIC KEY-----")
}

pub(crate) fn to_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid("a value above i64::MAX"))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn to_u64(v: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

pub(crate) fn narrow<T: TryFrom<i64>>(v: i64, what: &str) -> StoreResult<T> {
    T::try_from(v).map_err(|_| corrupt(what))
}

/// An LwM2M value stored as its number: cloud-proto declares `OtaState` and `UpdateResult` in
/// LwM2M order, so the value is the enum's postcard byte (`cloud-proto/src/message.rs`) and
/// postcard is the one table of both.
fn lwm2m<T: serde::de::DeserializeOwned>(v: i64, what: &str) -> StoreResult<T> {
    u8::try_from(v)
        .ok()
        .filter(|b| *b < 0x80)
        .and_then(|b| postcard::from_bytes(&[b]).ok())
        .ok_or_else(|| corrupt(what))
}

pub(crate) fn ota_state(v: i64) -> StoreResult<OtaState> {
    lwm2m(v, "LwM2M state")
}

pub(crate) fn update_result(v: i64) -> StoreResult<UpdateResult> {
    lwm2m(v, "LwM2M result")
}

pub(crate) fn version_of(major: i64, minor: i64, patch: i64) -> StoreResult<FirmwareVersion> {
    Ok(FirmwareVersion {
        major: narrow(major, "version")?,
        minor: narrow(minor, "version")?,
        patch: narrow(patch, "version")?,
    })
}

/// One result row as the decoders below read it; each SQL store implements it for its driver's
/// row type (a driver error is the store's `StoreError::Database`, a NULL where a value must be
/// is `Corrupt`).
pub(crate) trait SqlRow {
    /// An integer column (`INTEGER` / `BIGINT`), `None` for NULL.
    fn int(&self, i: usize) -> StoreResult<Option<i64>>;
    /// A byte column (`BLOB` / `BYTEA`), `None` for NULL.
    fn blob(&self, i: usize) -> StoreResult<Option<Vec<u8>>>;
    /// A text column, `None` for NULL.
    fn text(&self, i: usize) -> StoreResult<Option<String>>;
}

fn need<T>(v: Option<T>, what: &str) -> StoreResult<T> {
    v.ok_or_else(|| corrupt(what))
}

/// The last-frame columns `counter, tag, accepted_at_ms, source, answers`; `None` before the
/// first frame (a NULL counter).
pub(crate) fn last_frame_of(row: &impl SqlRow) -> StoreResult<Option<LastFrame>> {
    let Some(counter) = row.int(0)? else {
        return Ok(None);
    };
    let tag = need(row.blob(1)?, "last frame tag")?;
    let source = need(row.text(3)?, "last frame source")?;
    Ok(Some(LastFrame {
        counter: narrow(counter, "last frame counter")?,
        tag: <[u8; TAG_LEN]>::try_from(tag.as_slice()).map_err(|_| corrupt("last frame tag"))?,
        accepted_at_ms: to_u64(need(row.int(2)?, "last frame time")?, "last frame time")?,
        source: source.parse().map_err(|_| corrupt("last frame source"))?,
        answers: narrow(
            need(row.int(4)?, "last frame answers")?,
            "last frame answers",
        )?,
    }))
}

/// A release's body as the two nullable columns `body, path`, checked against the release's
/// digest and size (the store contract of `put_release`, the same on every SQL store).
pub(crate) fn release_body_columns(r: &Release) -> StoreResult<(Option<&[u8]>, Option<&str>)> {
    match &r.body {
        ReleaseBody::Inline(b) => {
            if ReleaseDigest::of(b) != r.digest {
                return Err(StoreError::Invalid("digest is not the container's SHA-256"));
            }
            if b.len() as u64 != r.size {
                return Err(StoreError::Invalid("size is not the container's"));
            }
            Ok((Some(b.as_slice()), None))
        }
        ReleaseBody::File(p) => Ok((
            None,
            Some(
                p.to_str()
                    .ok_or(StoreError::Invalid("release path is not UTF-8"))?,
            ),
        )),
    }
}

/// A release row, its columns in the order both stores select them: `digest, product, major,
/// minor, patch, security_counter, hardware_id, size, body, path, created_ms`.
pub(crate) fn release_of(row: &impl SqlRow) -> StoreResult<Release> {
    let int = |i: usize, what: &str| need(row.int(i)?, what);
    let digest = need(row.blob(0)?, "release digest")?;
    let hw = need(row.blob(6)?, "hardware id")?;
    Ok(Release {
        digest: ReleaseDigest(
            digest
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("release digest"))?,
        ),
        product: ProductId(narrow(int(1, "product id")?, "product id")?),
        version: version_of(int(2, "version")?, int(3, "version")?, int(4, "version")?)?,
        security_counter: narrow(int(5, "security counter")?, "security counter")?,
        hardware_id: hw
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("hardware id"))?,
        size: to_u64(int(7, "release size")?, "release size")?,
        body: match (row.blob(8)?, row.text(9)?) {
            (Some(b), None) => ReleaseBody::Inline(b),
            (None, Some(p)) => ReleaseBody::File(PathBuf::from(p)),
            _ => return Err(corrupt("release body")),
        },
        created_ms: to_u64(int(10, "release time")?, "release time")?,
    })
}

/// A device status row, its columns in the order both stores select them (`last_seen_ms`,
/// the last check-in's, the last status's, the decision, the LwM2M state and result, then the
/// counters).
pub(crate) fn status_of(row: &impl SqlRow) -> StoreResult<DeviceStatus> {
    let g = |i: usize| row.int(i);
    let n = |i: usize, what: &str| -> StoreResult<u64> { to_u64(need(g(i)?, what)?, what) };
    let last_checkin = match g(1)? {
        None => None,
        Some(ms) => {
            let req = |i: usize| -> StoreResult<i64> { need(g(i)?, "check-in") };
            let download = match (g(8)?, g(9)?) {
                (Some(u), Some(b)) => Some((
                    UpdateId(narrow(u, "update id")?),
                    narrow(b, "download bytes")?,
                )),
                _ => None,
            };
            Some((
                to_u64(ms, "check-in time")?,
                CheckInReport {
                    firmware: version_of(req(2)?, req(3)?, req(4)?)?,
                    trial: req(5)? != 0,
                    state: ota_state(req(6)?)?,
                    result: update_result(req(7)?)?,
                    download,
                    battery_mv: narrow(req(10)?, "battery")?,
                    forced_sleeps: narrow(req(11)?, "forced sleeps")?,
                },
            ))
        }
    };
    let last_status = match (g(12)?, g(13)?, g(14)?) {
        (Some(u), Some(s), Some(r)) => Some(UpdateStatus {
            update: UpdateId(narrow(u, "update id")?),
            state: ota_state(s)?,
            result: update_result(r)?,
        }),
        _ => None,
    };
    let last_decision = match row.blob(15)? {
        Some(b) => {
            Some(postcard::from_bytes::<UpdateDecision>(&b).map_err(|_| corrupt("decision"))?)
        }
        None => None,
    };
    Ok(DeviceStatus {
        last_seen_ms: g(0)?.map(|v| to_u64(v, "last seen")).transpose()?,
        last_checkin,
        last_status,
        last_decision,
        state: ota_state(need(g(16)?, "LwM2M state")?)?,
        result: update_result(need(g(17)?, "LwM2M result")?)?,
        wakes: n(18, "wakes")?,
        forced_sleeps: n(19, "forced sleeps")?,
        bytes_up: n(20, "bytes up")?,
        bytes_down: n(21, "bytes down")?,
        awake_ms: n(22, "awake time")?,
        next_wake_ms: g(23)?.map(|v| to_u64(v, "next wake")).transpose()?,
        publishes: n(24, "publishes")?,
    })
}

/// What a frame adds to its device's current wake, as bound parameters of the update every
/// frame makes anyway: nothing for a check-in (it starts a new wake with its own numbers).
pub(crate) struct WakeAdd {
    /// The frame's time, `None` for a check-in (`COALESCE` keeps the column).
    pub(crate) last: Option<i64>,
    pub(crate) frames: i64,
    pub(crate) up: i64,
    pub(crate) down: i64,
}

impl WakeAdd {
    pub(crate) fn of(e: &Effects) -> StoreResult<Self> {
        Ok(if e.checkin.is_some() {
            Self {
                last: None,
                frames: 0,
                up: 0,
                down: 0,
            }
        } else {
            Self {
                last: Some(to_i64(e.now_ms)?),
                frames: 1,
                up: to_i64(e.bytes_up)?,
                down: to_i64(e.bytes_down)?,
            }
        })
    }
}

/// The LwM2M result a frame reports (a status change's, else a check-in's), as stored.
pub(crate) fn reported_result(e: &Effects) -> Option<i64> {
    e.status
        .map(|s| s.result as i64)
        .or(e.checkin.map(|c| c.result as i64))
}

/// A row read from column `self.1` on: lets a decoder written for a row that starts at 0
/// read a joined row (the fleet query's status after the device columns).
pub(crate) struct Offset<'a, R>(pub(crate) &'a R, pub(crate) usize);

impl<R: SqlRow> SqlRow for Offset<'_, R> {
    fn int(&self, i: usize) -> StoreResult<Option<i64>> {
        self.0.int(i + self.1)
    }
    fn blob(&self, i: usize) -> StoreResult<Option<Vec<u8>>> {
        self.0.blob(i + self.1)
    }
    fn text(&self, i: usize) -> StoreResult<Option<String>> {
        self.0.text(i + self.1)
    }
}

/// The columns of the current wake in a `devices` row, in [`wake_of`]'s order (both stores).
macro_rules! current_wake_cols {
    () => {
        "wakes, ci_ms, w_last, w_frames, w_up, w_down, w_pubs, ci_major, ci_minor, ci_patch, ci_trial, ci_state, ci_result, ci_dl_update, ci_dl_bytes, ci_battery, ci_forced, state, result, w_offer, w_sleep"
    };
}
pub(crate) use current_wake_cols;

/// The columns of a finished wake in `device_wakes`, in [`wake_of`]'s order (both stores).
macro_rules! wake_cols {
    () => {
        "seq, started_ms, last_ms, frames, bytes_up, bytes_down, publishes, major, minor, patch, trial, ci_state, ci_result, dl_update, dl_bytes, battery, forced, state, result, offer, sleep_s"
    };
}
pub(crate) use wake_cols;

/// A wake row ([`wake_cols!`] or [`current_wake_cols!`]).
pub(crate) fn wake_of(row: &impl SqlRow) -> StoreResult<Wake> {
    let g = |i: usize| row.int(i);
    let req = |i: usize, what: &str| -> StoreResult<i64> { need(g(i)?, what) };
    let started_ms = to_u64(req(1, "wake start")?, "wake start")?;
    let download = match (g(13)?, g(14)?) {
        (Some(u), Some(b)) => Some((
            UpdateId(narrow(u, "update id")?),
            narrow(b, "download bytes")?,
        )),
        _ => None,
    };
    Ok(Wake {
        seq: to_u64(req(0, "wake number")?, "wake number")?,
        started_ms,
        // NULL for a wake current when the schema gained wakes (migration 4).
        last_ms: g(2)?
            .map(|v| to_u64(v, "wake end"))
            .transpose()?
            .unwrap_or(started_ms),
        frames: to_u64(req(3, "wake frames")?, "wake frames")?,
        bytes_up: to_u64(req(4, "wake bytes")?, "wake bytes")?,
        bytes_down: to_u64(req(5, "wake bytes")?, "wake bytes")?,
        publishes: to_u64(req(6, "wake publishes")?, "wake publishes")?,
        report: CheckInReport {
            firmware: version_of(
                req(7, "check-in")?,
                req(8, "check-in")?,
                req(9, "check-in")?,
            )?,
            trial: req(10, "check-in")? != 0,
            state: ota_state(req(11, "check-in")?)?,
            result: update_result(req(12, "check-in")?)?,
            download,
            battery_mv: narrow(req(15, "battery")?, "battery")?,
            forced_sleeps: narrow(req(16, "forced sleeps")?, "forced sleeps")?,
        },
        state: ota_state(req(17, "LwM2M state")?)?,
        result: update_result(req(18, "LwM2M result")?)?,
        offered: g(19)?
            .map(|v| narrow(v, "release id").map(ReleaseId))
            .transpose()?,
        sleep_s: g(20)?.map(|v| narrow(v, "sleep")).transpose()?,
    })
}

/// The columns of a device's update history, from `rollout_devices rd JOIN releases r`, in
/// [`device_update_of`]'s order.
macro_rules! device_update_cols {
    () => {
        "rd.rollout, rd.release, r.major, r.minor, r.patch, rd.phase, rd.result, rd.offered_ms, rd.updated_ms"
    };
}
pub(crate) use device_update_cols;

/// A row of [`device_update_cols!`].
pub(crate) fn device_update_of(row: &impl SqlRow) -> StoreResult<DeviceUpdate> {
    let req = |i: usize, what: &str| -> StoreResult<i64> { need(row.int(i)?, what) };
    Ok(DeviceUpdate {
        rollout: RolloutId(narrow(req(0, "rollout id")?, "rollout id")?),
        release: ReleaseId(narrow(req(1, "release id")?, "release id")?),
        version: version_of(req(2, "version")?, req(3, "version")?, req(4, "version")?)?,
        phase: DevicePhase::from_code(req(5, "phase")?).ok_or_else(|| corrupt("phase"))?,
        result: row.int(6)?.map(update_result).transpose()?,
        offered_ms: to_u64(req(7, "offer time")?, "offer time")?,
        updated_ms: to_u64(req(8, "update time")?, "update time")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lwm2m_numbers_round_trip_and_out_of_range_is_corrupt() {
        for (v, r) in [
            (0, UpdateResult::Initial),
            (1, UpdateResult::Success),
            (8, UpdateResult::UpdateFailed),
            (11, UpdateResult::Deferred),
        ] {
            assert_eq!(update_result(v).unwrap(), r);
            assert_eq!(r as i64, v, "the stores write the discriminant");
        }
        assert_eq!(ota_state(0).unwrap(), OtaState::Idle);
        assert_eq!(ota_state(3).unwrap(), OtaState::Updating);
        for bad in [-1, 12, 127, 128, 300, i64::MAX] {
            assert!(
                matches!(update_result(bad), Err(StoreError::Corrupt(_))),
                "{bad}"
            );
        }
        for bad in [-1, 4, 128, 300] {
            assert!(
                matches!(ota_state(bad), Err(StoreError::Corrupt(_))),
                "{bad}"
            );
        }
    }
}
