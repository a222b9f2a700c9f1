//! `/api/v1/rollouts…`: list, start, show with progress, raise the percentage, pause, resume,
//! cancel: the operator's side of [`crate::rollout`], as `ota-cloud rollout …` is on the
//! command line.
//!
//! Status codes beyond the common ones: 404 unknown rollout, release, device or product; 409
//! an illegal transition (pause a paused rollout, anything on a cancelled one…) or a lower
//! percentage than the current one; 422 a value refused (a percentage that is not 0–100 with
//! at most two decimals, `min_finished` 0, a `defer_until` too large, a device of another
//! product, an empty group tag). Nothing changes on any of them: the store checks each change
//! in one transaction.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloud_proto::DeviceId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::products::get_product;
use super::{parse_id, AdminState, ApiError, ApiResult};
use crate::rollout::{
    ErrorThreshold, NewRollout, PauseCause, ReleaseId, Rollout, RolloutChange, RolloutId,
    RolloutProgress, RolloutState, Share, Target,
};
use crate::store::{ProductId, ReleaseDigest, Store, StoreError};

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/rollouts", get(list::<S>).post(start::<S>))
        .route("/rollouts/{id}", get(show::<S>))
        .route("/rollouts/{id}/percent", post(percent::<S>))
        .route("/rollouts/{id}/pause", post(pause::<S>))
        .route("/rollouts/{id}/resume", post(resume::<S>))
        .route("/rollouts/{id}/cancel", post(cancel::<S>))
}

/// A percentage as JSON: a number (`12.5`) or a string (`"12.5"`), read by
/// [`Share::parse_percent`] (0 to 100, at most two decimals).
#[derive(Deserialize)]
#[serde(untagged)]
enum Percent {
    Number(serde_json::Number),
    Text(String),
}

impl Percent {
    fn share(&self, field: &str) -> ApiResult<Share> {
        let text = match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        };
        Share::parse_percent(&text).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{field}: {text:?} is not a percentage from 0 to 100 (at most two decimals)"
                ),
            )
        })
    }
}

/// The release: its id (a number) or its SHA-256 (64 hex digits).
#[derive(Deserialize)]
#[serde(untagged)]
enum ReleaseRef {
    Id(u32),
    Digest(String),
}

/// `{"device": N}`, `{"group": "tag"}` or `"product"` (every device of the release's product).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum TargetBody {
    Device(u32),
    Group(String),
    Product,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdBody {
    /// Pause when more than this percentage of the finished devices failed.
    percent: Percent,
    /// Finished devices needed before it applies (at least 1).
    min_finished: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    release: ReleaseRef,
    target: TargetBody,
    /// Default 100.
    percent: Option<Percent>,
    error_threshold: Option<ThresholdBody>,
    /// Unix seconds.
    defer_until: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PercentBody {
    percent: Percent,
}

/// `?product=P` (optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    product: Option<u32>,
}

/// A percentage as JSON text without the `%`: `"12.5"`, `"100"`.
fn percent_text(s: Share) -> String {
    let t = s.to_string();
    t.trim_end_matches('%').to_string()
}

fn target_json(t: &Target) -> Value {
    match t {
        Target::Device(d) => json!({ "device": d.0 }),
        Target::Group(g) => json!({ "group": g }),
        Target::Product => json!("product"),
    }
}

/// A rollout as JSON: settings and state (with the pause cause and its figures).
pub(crate) fn rollout_json(r: &Rollout) -> Value {
    let pause = match r.state {
        RolloutState::Paused(PauseCause::Operator) => json!({ "cause": "operator" }),
        RolloutState::Paused(PauseCause::ErrorThreshold { failed, finished }) => json!({
            "cause": "error_threshold",
            "failed": failed,
            "finished": finished,
        }),
        _ => Value::Null,
    };
    json!({
        "id": r.id.0,
        "release": r.release.0,
        "product": r.product.0,
        "version": format!("{}.{}.{}", r.version.major, r.version.minor, r.version.patch),
        "target": target_json(&r.target),
        "percent": percent_text(r.share),
        "share_bp": r.share.bp(),
        "error_threshold": r.error_threshold.map(|t| json!({
            "percent": percent_text(t.max_failed),
            "min_finished": t.min_finished,
        })),
        "defer_until_ms": r.defer_until_ms,
        "state": r.state.name(),
        "pause": pause,
        "created_ms": r.created_ms,
    })
}

fn progress_json(p: &RolloutProgress) -> Value {
    json!({
        "targeted": p.targeted,
        "not_offered": p.not_offered,
        "offered": p.offered,
        "deferred": p.deferred,
        "overdue": p.overdue,
        "downloading": p.downloading,
        "downloaded": p.downloaded,
        "updating": p.updating,
        "succeeded": p.succeeded,
        "failed": p.failed,
        "declined": p.declined,
    })
}

fn unknown(id: RolloutId) -> ApiError {
    ApiError::not_found(format!("no rollout {}", id.0))
}

/// The rollout with its `progress` at the server's clock. Cost: one read and the two
/// aggregates of [`Store::rollout_progress`].
async fn with_progress<S: Store>(st: &AdminState<S>, id: RolloutId) -> ApiResult<Value> {
    let r = st.store().rollout(id).await?.ok_or_else(|| unknown(id))?;
    let p = st
        .store()
        .rollout_progress(id, st.now_ms())
        .await?
        .ok_or_else(|| unknown(id))?;
    let mut v = rollout_json(&r);
    v["progress"] = progress_json(&p);
    Ok(v)
}

fn rollout_id(path: Result<Path<String>, PathRejection>) -> ApiResult<RolloutId> {
    let Path(id) = path?;
    Ok(RolloutId(parse_id(&id, "rollout")?))
}

async fn list<S: Store>(
    State(st): State<AdminState<S>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let product = match q.product {
        Some(p) => Some(get_product(&st, ProductId(p)).await?.id),
        None => None,
    };
    let list: Vec<Value> = st
        .store()
        .rollouts(product)
        .await?
        .iter()
        .map(rollout_json)
        .collect();
    Ok(Json(json!({ "rollouts": list })))
}

async fn resolve_release<S: Store>(st: &AdminState<S>, r: &ReleaseRef) -> ApiResult<ReleaseId> {
    match r {
        ReleaseRef::Id(id) => {
            let id = ReleaseId(*id);
            match st.store().release_by_id(id).await? {
                Some(_) => Ok(id),
                None => Err(ApiError::not_found(format!("no release {}", id.0))),
            }
        }
        ReleaseRef::Digest(hex_text) => {
            let mut d = [0u8; 32];
            hex::decode_to_slice(hex_text, &mut d).map_err(|_| {
                ApiError::bad_request(format!(
                    "release `{hex_text}` is neither an id nor a SHA-256 (64 hex digits)"
                ))
            })?;
            st.store()
                .release_id(ReleaseDigest(d))
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no release {hex_text}")))
        }
    }
}

/// A store refusal of a rollout's values: 422 (the JSON was fine, the values are not).
fn refused_value(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why),
        e => e.into(),
    }
}

async fn start<S: Store>(
    State(st): State<AdminState<S>>,
    body: Result<Json<StartBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(b) = body?;
    let share = match &b.percent {
        Some(p) => p.share("percent")?,
        None => Share::ALL,
    };
    let error_threshold = b
        .error_threshold
        .as_ref()
        .map(|t| {
            Ok::<_, ApiError>(ErrorThreshold {
                max_failed: t.percent.share("error_threshold.percent")?,
                min_finished: t.min_finished,
            })
        })
        .transpose()?;
    let defer_until_ms = b
        .defer_until
        .map(|s| {
            s.checked_mul(1000).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("defer_until {s} is too large (Unix seconds)"),
                )
            })
        })
        .transpose()?;
    let release = resolve_release(&st, &b.release).await?;
    let target = match b.target {
        TargetBody::Device(d) => Target::Device(DeviceId(d)),
        TargetBody::Group(g) => Target::Group(g),
        TargetBody::Product => Target::Product,
    };
    let id = st
        .store()
        .add_rollout(NewRollout {
            release,
            target,
            share,
            error_threshold,
            defer_until_ms,
            created_ms: st.now_ms(),
        })
        .await
        .map_err(refused_value)?;
    Ok((StatusCode::CREATED, Json(with_progress(&st, id).await?)))
}

async fn show<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let id = rollout_id(id)?;
    Ok(Json(with_progress(&st, id).await?))
}

/// Applies `change`; answers the rollout as changed, with its progress.
async fn change<S: Store>(
    st: &AdminState<S>,
    id: RolloutId,
    change: RolloutChange,
) -> ApiResult<Json<Value>> {
    st.store()
        .update_rollout(id, change)
        .await
        .map_err(|e| match e {
            // The store's only `Invalid` for a change: a share below the current one.
            StoreError::Invalid(why) => ApiError::conflict(format!("rollout {}: {why}", id.0)),
            e => e.into(),
        })?;
    Ok(Json(with_progress(st, id).await?))
}

async fn percent<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<PercentBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let id = rollout_id(id)?;
    let Json(b) = body?;
    let share = b.percent.share("percent")?;
    let now = st.store().rollout(id).await?.ok_or_else(|| unknown(id))?;
    if share < now.share {
        return Err(ApiError::conflict(format!(
            "rollout {} is at {}: a share can only be raised (asked {share})",
            id.0, now.share
        )));
    }
    change(&st, id, RolloutChange::Share(share)).await
}

async fn pause<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    change(&st, rollout_id(id)?, RolloutChange::Pause).await
}

async fn resume<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    change(&st, rollout_id(id)?, RolloutChange::Resume).await
}

async fn cancel<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    change(&st, rollout_id(id)?, RolloutChange::Cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::RolloutId;
    use cloud_proto::FirmwareVersion;

    /// A rollout paused by its error threshold shows the cause and the figures it paused on.
    #[test]
    fn threshold_pause_shows_its_figures() {
        let r = Rollout {
            id: RolloutId(4),
            release: ReleaseId(9),
            product: ProductId(1),
            version: FirmwareVersion {
                major: 2,
                minor: 1,
                patch: 0,
            },
            target: Target::Group("pilot".into()),
            share: Share::from_bp(25).unwrap(),
            seed: 77,
            error_threshold: Some(ErrorThreshold {
                max_failed: Share::from_bp(2050).unwrap(),
                min_finished: 5,
            }),
            defer_until_ms: Some(5_000),
            state: RolloutState::Paused(PauseCause::ErrorThreshold {
                failed: 3,
                finished: 7,
            }),
            created_ms: 1,
        };
        assert_eq!(
            rollout_json(&r),
            json!({
                "id": 4, "release": 9, "product": 1, "version": "2.1.0",
                "target": {"group": "pilot"}, "percent": "0.25", "share_bp": 25,
                "error_threshold": {"percent": "20.5", "min_finished": 5},
                "defer_until_ms": 5_000, "state": "paused",
                "pause": {"cause": "error_threshold", "failed": 3, "finished": 7},
                "created_ms": 1,
            })
        );
    }
}
