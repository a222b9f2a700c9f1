//! `/console/live/…`: the numbers of a page as JSON, polled by `console.js` every
//! [`LIVE_INTERVAL_MS`](super::LIVE_INTERVAL_MS) to update the page in place.
//!
//! Answer: `{"h": HASH, "regions": {"<data-live key>": "<html>", …}}`: each region is the
//! inner HTML of the page's element with that `data-live` attribute, rendered (and escaped)
//! by the same code as the page. `HASH` is a SHA-256 prefix of the regions; a poll that sends
//! the last one back (`?h=HASH`) gets `{"h": HASH, "unchanged": true}` when nothing changed,
//! so an idle page costs the render but not the transfer. Needs a session (401 without);
//! reads only.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::fleet::{self, FleetQuery};
use super::session;
use crate::admin::{AdminState, ApiError};
use crate::store::Store;

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/console/live/fleet", get(fleet_live::<S>))
        .route("/console/live/devices/{id}", get(device_live::<S>))
        .route("/console/live/rollouts", get(rollouts_live::<S>))
        .route("/console/live/rollouts/{id}", get(rollout_live::<S>))
}

/// The regions as the JSON answer (see the module doc).
pub(super) fn answer(regions: Vec<(&'static str, String)>, asked: Option<&String>) -> Response {
    let mut hasher = Sha256::new();
    for (k, v) in &regions {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    let h = hex::encode(&hasher.finalize()[..8]);
    if asked.is_some_and(|a| *a == h) {
        return Json(json!({ "h": h, "unchanged": true })).into_response();
    }
    let map: Map<String, Value> = regions
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect();
    Json(json!({ "h": h, "regions": map })).into_response()
}

fn unauthorized() -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "no console session: log in").into_response()
}

fn failed(e: crate::store::StoreError) -> Response {
    ApiError::from(e).into_response()
}

async fn fleet_live<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    if session(&st, &headers).is_none() {
        return unauthorized();
    }
    let q = FleetQuery {
        q: p.get("q").cloned(),
        group: p.get("group").cloned(),
        version: p.get("version").cloned(),
        state: p.get("state").cloned(),
    };
    match fleet::load(&st, &q).await {
        Ok(f) => answer(
            vec![
                ("device-count", f.shown.to_string()),
                ("device-total", f.total.to_string()),
                ("devices", f.rows),
            ],
            p.get("h"),
        ),
        Err(e) => failed(e),
    }
}

async fn device_live<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    if session(&st, &headers).is_none() {
        return unauthorized();
    }
    let Ok(Path(id)) = id else {
        return ApiError::bad_request("bad device id").into_response();
    };
    match super::device::regions(&st, &id).await {
        Ok(Some(r)) => answer(r, p.get("h")),
        Ok(None) => ApiError::not_found(format!("no device {id}")).into_response(),
        Err(e) => failed(e),
    }
}

async fn rollouts_live<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    if session(&st, &headers).is_none() {
        return unauthorized();
    }
    match super::rollouts::list_regions(&st).await {
        Ok(r) => answer(r, p.get("h")),
        Err(e) => failed(e),
    }
}

async fn rollout_live<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let Some(s) = session(&st, &headers) else {
        return unauthorized();
    };
    let Ok(Path(id)) = id else {
        return ApiError::bad_request("bad rollout id").into_response();
    };
    match super::rollouts::regions(&st, &id, &s).await {
        Ok(Some(r)) => answer(r, p.get("h")),
        Ok(None) => ApiError::not_found(format!("no rollout {id}")).into_response(),
        Err(e) => failed(e),
    }
}
