//! `/releases`: every product's releases, and the upload form. An upload goes through
//! [`upload_release`], the same verifier as `POST /api/v1/products/{id}/releases` and
//! `ota-cloud release upload` (a device's own check): a container that does not verify is
//! refused with the reason and nothing is stored.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::multipart;
use super::time::{iso, relative};
use super::{
    bytes, check_post, csrf_field, error_box, esc, html_response, page, session, to_login, version,
    Nav, SessionRef,
};
use crate::admin::AdminState;
use crate::release::{digest_hex, upload_release, UploadError};
use crate::store::{ProductId, Store};

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new().route("/releases", get(list::<S>).post(upload::<S>))
}

/// What the page says after an upload.
enum Outcome {
    None,
    Stored(String),
    Refused(String),
}

async fn render<S: Store>(
    st: &AdminState<S>,
    s: &SessionRef,
    status: StatusCode,
    outcome: Outcome,
) -> Response {
    let products = match st.store().products().await {
        Ok(p) => p,
        Err(e) => return super::store_failed(s, e),
    };
    let now = st.now_ms();
    let mut rows = String::new();
    let mut all = Vec::new();
    for p in &products {
        match st.store().releases(p.id).await {
            Ok(rs) => all.extend(rs.into_iter().map(|(id, r)| (id, r, p.name.clone()))),
            Err(e) => return super::store_failed(s, e),
        }
    }
    all.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (id, r, product) in &all {
        let digest = digest_hex(&r.digest);
        let _ = write!(
            rows,
            "<tr data-release-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"mono\" title=\"{digest}\">{}…</td><td title=\"{}\">{}</td></tr>",
            id.0,
            id.0,
            esc(product),
            version(r.version),
            r.security_counter,
            bytes(r.size),
            &digest[..16],
            iso(r.created_ms),
            relative(r.created_ms, now),
        );
    }
    let mut m = String::from("<h1>Releases</h1>");
    match outcome {
        Outcome::None => {}
        Outcome::Stored(msg) => {
            let _ = write!(
                m,
                "<p id=\"upload-result\" class=\"ok\" role=\"status\">{}</p>",
                esc(&msg)
            );
        }
        Outcome::Refused(msg) => m.push_str(&error_box("upload-error", &msg)),
    }
    let _ = write!(
        m,
        "<h2>Upload a signed container</h2><p>An <code>ota-tool sign</code> container; it is \
         verified against the product's release keys and hardware id (what a device checks) \
         before anything is stored. Storing it offers it to nobody: start a rollout.</p>\
         <form id=\"upload-form\" class=\"inline\" method=\"post\" action=\"/releases\" \
         enctype=\"multipart/form-data\">{}<label>Product<select id=\"upload-product\" name=\"product\">",
        csrf_field(s)
    );
    for p in &products {
        let _ = write!(m, "<option value=\"{}\">{}</option>", p.id.0, esc(&p.name));
    }
    let _ = write!(
        m,
        "</select></label><label>Container<input id=\"upload-file\" type=\"file\" \
         name=\"container\" required></label><button id=\"upload-submit\" type=\"submit\">\
         Upload</button></form><h2>Stored releases</h2><table id=\"releases\"><thead><tr>\
         <th>Id</th><th>Product</th><th>Version</th><th>Security counter</th><th>Size</th>\
         <th>SHA-256</th><th>Stored</th></tr></thead><tbody>{rows}</tbody></table>"
    );
    html_response(status, page("Releases", Nav::Releases, s, None, &m))
}

async fn list<S: Store>(State(st): State<AdminState<S>>, headers: HeaderMap) -> Response {
    let Some(s) = session(&st, &headers) else {
        return to_login();
    };
    render(&st, &s, StatusCode::OK, Outcome::None).await
}

async fn upload<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart::boundary);
    let body = body.ok();
    let parts = match (&boundary, &body) {
        (Some(b), Some(body)) => multipart::parse(b, body).ok(),
        _ => None,
    };
    let field = |name: &str| {
        parts
            .as_ref()
            .and_then(|ps| ps.iter().find(|p| p.name == name))
    };
    let csrf = field("csrf").and_then(|p| std::str::from_utf8(p.data).ok());
    // Without a session the admin middleware refused this before the body was read
    // (`super::gate`); the CSRF token is checked before anything is read into the store.
    let s = match check_post(&st, &headers, csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let refused = |status, msg: String| render(&st, &s, status, Outcome::Refused(msg));
    let Some(container) = field("container") else {
        return refused(
            StatusCode::BAD_REQUEST,
            "no container in the form (send it as multipart/form-data, field `container`)".into(),
        )
        .await;
    };
    if container.data.is_empty() {
        return refused(
            StatusCode::BAD_REQUEST,
            "the container file is empty".into(),
        )
        .await;
    }
    let product = match field("product")
        .and_then(|p| std::str::from_utf8(p.data).ok())
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        Some(p) => ProductId(p),
        None => return refused(StatusCode::BAD_REQUEST, "choose a product".into()).await,
    };
    let file = container
        .filename
        .clone()
        .unwrap_or_else(|| "the container".into());
    match upload_release(
        st.store(),
        product,
        container.data,
        st.releases_dir(),
        st.now_ms(),
    )
    .await
    {
        Ok(r) => {
            let id = st.store().release_id(r.digest).await.ok().flatten();
            tracing::info!(release = id.map(|i| i.0), "console: release uploaded");
            let msg = format!(
                "{file}: stored as release {} (version {}, {}, SHA-256 {})",
                id.map_or_else(|| "?".into(), |i| i.0.to_string()),
                version(r.version),
                bytes(r.size),
                digest_hex(&r.digest)
            );
            render(&st, &s, StatusCode::CREATED, Outcome::Stored(msg)).await
        }
        Err(e) => {
            let status = match &e {
                UploadError::UnknownProduct(_) => StatusCode::NOT_FOUND,
                UploadError::AlreadyExists(_) => StatusCode::CONFLICT,
                UploadError::NoReleaseKeys
                | UploadError::BadReleaseKey(_)
                | UploadError::Container(_)
                | UploadError::Verify(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status.is_server_error() {
                tracing::error!(error = %e, "console: release upload failed");
            }
            refused(status, format!("{file} was not stored: {e}")).await
        }
    }
}
