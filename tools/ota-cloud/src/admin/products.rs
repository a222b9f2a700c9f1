//! `/api/v1/products…`: list, add, show, add and remove trusted release keys.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{parse_id, AdminState, ApiError, ApiResult};
use crate::store::{NewProduct, Product, ProductId, Store};

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/products", get(list::<S>).post(add::<S>))
        .route("/products/{id}", get(show::<S>))
        .route("/products/{id}/release-keys", post(add_key::<S>))
        .route(
            "/products/{id}/release-keys/{fingerprint}",
            delete(remove_key::<S>),
        )
}

/// A release key's fingerprint: SHA-256 of its PEM text as stored, lowercase hex.
pub(crate) fn fingerprint(pem: &str) -> String {
    hex::encode(Sha256::digest(pem.as_bytes()))
}

pub(crate) fn product_json(p: &Product) -> Value {
    let keys: Vec<Value> = p
        .release_keys
        .iter()
        .map(|pem| json!({ "fingerprint": fingerprint(pem), "pem": pem }))
        .collect();
    json!({
        "id": p.id.0,
        "name": p.name,
        "hardware_id": ota_tool::text::format_hardware_id(&ota_core::HardwareId(p.hardware_id)),
        "release_keys": keys,
    })
}

async fn list<S: Store>(State(st): State<AdminState<S>>) -> ApiResult<Json<Value>> {
    let products: Vec<Value> = st
        .store()
        .products()
        .await?
        .iter()
        .map(product_json)
        .collect();
    Ok(Json(json!({ "products": products })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProductBody {
    name: String,
    /// A name of at most 16 bytes, or `0x` and 32 hex digits.
    hardware_id: String,
    #[serde(default)]
    release_keys: Vec<String>,
}

fn check_pem(pem: &str) -> ApiResult<()> {
    ota_tool::keys::public_key_from_pem(pem)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("release key: {e}")))
}

async fn add<S: Store>(
    State(st): State<AdminState<S>>,
    body: Result<Json<NewProductBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(b) = body?;
    let hw = ota_tool::text::parse_hardware_id(&b.hardware_id)
        .map_err(|e| ApiError::bad_request(format!("hardware_id: {e}")))?;
    for pem in &b.release_keys {
        check_pem(pem)?;
    }
    let id = st
        .store()
        .add_product(NewProduct {
            name: b.name.clone(),
            hardware_id: hw.0,
            release_keys: b.release_keys,
        })
        .await
        .map_err(|e| match e {
            crate::StoreError::AlreadyExists => {
                ApiError::conflict(format!("a product named `{}` exists already", b.name))
            }
            e => e.into(),
        })?;
    let p = get_product(&st, id).await?;
    Ok((StatusCode::CREATED, Json(product_json(&p))))
}

pub(crate) async fn get_product<S: Store>(st: &AdminState<S>, id: ProductId) -> ApiResult<Product> {
    st.store()
        .product(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no product {}", id.0)))
}

async fn show<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let Path(id) = id?;
    let p = get_product(&st, ProductId(parse_id(&id, "product")?)).await?;
    Ok(Json(product_json(&p)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    /// SPKI PEM, as `ota-tool keygen` writes it.
    pem: String,
}

async fn add_key<S: Store>(
    State(st): State<AdminState<S>>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Path(id) = id?;
    let id = ProductId(parse_id(&id, "product")?);
    let Json(b) = body?;
    check_pem(&b.pem)?;
    let p = get_product(&st, id).await?;
    if p.release_keys.contains(&b.pem) {
        return Err(ApiError::conflict(format!(
            "product {} trusts this key already ({})",
            id.0,
            fingerprint(&b.pem)
        )));
    }
    st.store().add_release_key(id, b.pem).await?;
    Ok((
        StatusCode::CREATED,
        Json(product_json(&get_product(&st, id).await?)),
    ))
}

async fn remove_key<S: Store>(
    State(st): State<AdminState<S>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let Path((id, fp)) = path?;
    let id = ProductId(parse_id(&id, "product")?);
    let p = get_product(&st, id).await?;
    let Some(pem) = p
        .release_keys
        .iter()
        .find(|k| fingerprint(k) == fp.to_ascii_lowercase())
    else {
        return Err(ApiError::not_found(format!(
            "product {} has no release key with fingerprint {fp}",
            id.0
        )));
    };
    if !st.store().remove_release_key(id, pem.clone()).await? {
        return Err(ApiError::not_found(format!(
            "product {} has no release key with fingerprint {fp}",
            id.0
        )));
    }
    Ok(Json(product_json(&get_product(&st, id).await?)))
}
