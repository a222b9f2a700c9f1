//! `/api/v1/publishes` (the stored publishes, paged, optionally of one device) and
//! `/api/v1/drops` (the frames dropped since the server started, by reason).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use cloud_proto::DeviceId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{AdminState, ApiError, ApiResult};
use crate::events;
use crate::metrics::drop_reasons;
use crate::store::{PublishId, Store};

/// Publishes per page when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/publishes", get(list::<S>))
        .route("/drops", get(drops::<S>))
}

/// `?after=ID&limit=N` (both optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    pub(super) after: Option<u64>,
    pub(super) limit: Option<usize>,
}

/// `?after=ID&limit=N&device=ID` (all optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<u64>,
    limit: Option<usize>,
    device: Option<u32>,
}

/// `{"publishes": […], "next_after": ID}`: see [`events::page`].
pub(super) async fn page_json<S: Store>(
    st: &AdminState<S>,
    after: Option<u64>,
    device: Option<DeviceId>,
    limit: Option<usize>,
) -> ApiResult<Json<Value>> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > events::MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {}",
            events::MAX_LIMIT
        )));
    }
    let page = events::page(st.store(), PublishId(after.unwrap_or(0)), device, limit).await?;
    let list: Vec<Value> = page.publishes.iter().map(events::to_json).collect();
    Ok(Json(
        json!({ "publishes": list, "next_after": page.next_after.0 }),
    ))
}

async fn list<S: Store>(
    State(st): State<AdminState<S>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    page_json(&st, q.after, q.device.map(DeviceId), q.limit).await
}

async fn drops<S: Store>(State(st): State<AdminState<S>>) -> Json<Value> {
    let counts = st.server().drops();
    let map: Map<String, Value> = drop_reasons(&counts)
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::from(v)))
        .collect();
    Json(Value::Object(map))
}
