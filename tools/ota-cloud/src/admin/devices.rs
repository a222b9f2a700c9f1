//! `/api/v1/devices…`: list and show with what each reported, add (the one response that
//! carries a root key: the new device's key file), and a device's publishes.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cloud_proto::{DeviceId, FirmwareVersion};
use serde::Deserialize;
use serde_json::{json, Value};

use super::publishes::{page_json, PageQuery};
use super::{parse_id, AdminState, ApiError, ApiResult};
use crate::keyfile::DeviceKeyFile;
use crate::store::{Device, DeviceStatus, NewDevice, ProductId, Store, StoreError};
use crate::RootKey;

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/devices", get(list::<S>).post(add::<S>))
        .route("/devices/{id}", get(show::<S>))
        .route("/devices/{id}/publishes", get(publishes::<S>))
}

fn version(v: FirmwareVersion) -> String {
    format!("{}.{}.{}", v.major, v.minor, v.patch)
}

fn status_json(s: &DeviceStatus) -> Value {
    let checkin = s.last_checkin.map(|(at, r)| {
        json!({
            "at_ms": at,
            "firmware": version(r.firmware),
            "trial": r.trial,
            "state": format!("{:?}", r.state),
            "result": format!("{:?}", r.result),
            "download": r.download.map(|(u, b)| json!({ "update": u.0, "bytes": b })),
            "battery_mv": r.battery_mv,
            "forced_sleeps": r.forced_sleeps,
        })
    });
    json!({
        "last_seen_ms": s.last_seen_ms,
        "last_checkin": checkin,
        "last_status": s.last_status.map(|u| json!({
            "update": u.update.0,
            "state": format!("{:?}", u.state),
            "result": format!("{:?}", u.result),
        })),
        "last_decision": s.last_decision.map(|d| json!({
            "update": d.update.0,
            "decision": format!("{:?}", d.decision),
        })),
        "state": format!("{:?}", s.state),
        "result": format!("{:?}", s.result),
        "wakes": s.wakes,
        "forced_sleeps": s.forced_sleeps,
        "bytes_up": s.bytes_up,
        "bytes_down": s.bytes_down,
        "awake_ms": s.awake_ms,
        "next_wake_ms": s.next_wake_ms,
        "publishes": s.publishes,
    })
}

fn device_json(d: &Device, s: &DeviceStatus) -> Value {
    json!({
        "id": d.id.0,
        "product": d.product.0,
        "tags": d.tags,
        "created_ms": d.created_ms,
        "status": status_json(s),
    })
}

/// Every device with its status, from the store's one fleet read ([`Store::fleet`]).
/// Cost: two queries, O(devices + tags).
async fn list<S: Store>(State(st): State<AdminState<S>>) -> ApiResult<Json<Value>> {
    let out: Vec<Value> = st
        .store()
        .fleet()
        .await?
        .iter()
        .map(|r| device_json(&r.device, &r.status))
        .collect();
    Ok(Json(json!({ "devices": out })))
}

async fn device<S: Store>(st: &AdminState<S>, id: &str) -> ApiResult<Device> {
    let id = DeviceId(parse_id(id, "device")?);
    st.store()
        .device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {}", id.0)))
}

async fn show<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let Path(id) = id?;
    let d = device(&st, &id).await?;
    let s = st.store().status(d.id).await?.unwrap_or_default();
    Ok(Json(device_json(&d, &s)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDeviceBody {
    product: u32,
    #[serde(default)]
    tags: Vec<String>,
    /// Default: the next free id.
    id: Option<u32>,
}

async fn add<S: Store>(
    State(st): State<AdminState<S>>,
    body: Result<Json<NewDeviceBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(b) = body?;
    let root_key = RootKey::generate().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("generating the root key: {e}"),
        )
    })?;
    let key_copy = RootKey::from_bytes(*root_key.expose());
    let new = NewDevice {
        id: b.id.map(DeviceId),
        product: ProductId(b.product),
        tags: b.tags,
        root_key,
    };
    let device = st
        .store()
        .add_device(new, st.now_ms())
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists => ApiError::conflict(format!(
                "device {} exists already",
                b.id.map_or_else(|| "id".to_string(), |i| i.to_string())
            )),
            e => e.into(),
        })?;
    let key_file = DeviceKeyFile {
        device,
        root_key: key_copy,
    }
    .to_text();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": device.0, "key_file": key_file })),
    ))
}

async fn publishes<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Path(id) = id?;
    let Query(q) = q?;
    let d = device(&st, &id).await?;
    page_json(&st, q.after, Some(d.id), q.limit).await
}
