//! `/api/v1/products/{id}/releases` (list, upload a signed container) and
//! `/api/v1/releases/{digest}` (show).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::products::get_product;
use super::{parse_id, AdminState, ApiError, ApiResult};
use crate::release::{digest_hex, upload_release, UploadError};
use crate::rollout::ReleaseId;
use crate::store::{ProductId, Release, ReleaseDigest, Store};

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/products/{id}/releases", get(list::<S>).post(upload::<S>))
        .route("/releases/{digest}", get(show::<S>))
}

/// `id`: the release's stable id, which is also the `UpdateId` devices are offered it as.
fn release_json(id: Option<ReleaseId>, r: &Release) -> Value {
    json!({
        "id": id.map(|i| i.0),
        "digest": digest_hex(&r.digest),
        "product": r.product.0,
        "version": format!("{}.{}.{}", r.version.major, r.version.minor, r.version.patch),
        "security_counter": r.security_counter,
        "hardware_id": ota_tool::text::format_hardware_id(&ota_core::HardwareId(r.hardware_id)),
        "size": r.size,
        "created_ms": r.created_ms,
    })
}

async fn list<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let Path(id) = id?;
    let p = get_product(&st, ProductId(parse_id(&id, "product")?)).await?;
    let releases: Vec<Value> = st
        .store()
        .releases(p.id)
        .await?
        .iter()
        .map(|(id, r)| release_json(Some(*id), r))
        .collect();
    Ok(Json(json!({ "releases": releases })))
}

async fn upload<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Path(id) = id?;
    let product = ProductId(parse_id(&id, "product")?);
    let octets = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "application/octet-stream");
    if !octets {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the signed container as Content-Type: application/octet-stream",
        ));
    }
    let body = body?;
    let r = upload_release(st.store(), product, &body, st.releases_dir(), st.now_ms())
        .await
        .map_err(|e| {
            let status = match &e {
                UploadError::UnknownProduct(_) => StatusCode::NOT_FOUND,
                UploadError::AlreadyExists(_) => StatusCode::CONFLICT,
                UploadError::NoReleaseKeys
                | UploadError::BadReleaseKey(_)
                | UploadError::Container(_)
                | UploadError::Verify(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError::new(status, e.to_string())
        })?;
    let id = st.store().release_id(r.digest).await?;
    Ok((StatusCode::CREATED, Json(release_json(id, &r))))
}

async fn show<S: Store>(
    State(st): State<AdminState<S>>,
    digest: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let Path(digest) = digest?;
    let mut d = [0u8; 32];
    hex::decode_to_slice(&digest, &mut d).map_err(|_| {
        ApiError::bad_request(format!("release digest `{digest}` is not 64 hex digits"))
    })?;
    let r = st
        .store()
        .release(ReleaseDigest(d))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no release {digest}")))?;
    let id = st.store().release_id(r.digest).await?;
    Ok(Json(release_json(id, &r)))
}
