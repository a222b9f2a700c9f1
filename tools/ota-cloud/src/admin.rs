//! The JSON HTTP admin API and `/metrics` (axum), served by `ota-cloud serve --admin ADDR`
//! beside the UDP and TCP transports, over any [`Store`].
//!
//! * Every request under `/api/` needs `Authorization: Bearer <token>`, the token being the
//!   text of `DIR/admin.token` that `init` wrote (compared in constant time), **or** the
//!   console's session cookie (`ota_session`, or `__Host-ota_session` with
//!   [`AdminState::with_console_secure_cookie`]; [`crate::console`]) with, on every method but
//!   `GET`/`HEAD`, the session's CSRF token in an `X-CSRF-Token` header (403 without it).
//!   `/metrics` needs none: it holds counters only, and Prometheus scrapes it on loopback
//!   without one. Everything else is the web console ([`crate::console`]), which checks its
//!   own session on each page.
//! * JSON in and out; a refused request gets a 4xx with `{"error": "…"}` and changes
//!   nothing: 401 missing or wrong token, 400 bad JSON or parameter, 404 unknown id or path,
//!   405 wrong method, 409 already exists or an illegal rollout transition, 413 body over
//!   [`BODY_LIMIT`], 415 wrong content type, 422 container refused or a rollout value refused
//!   (percentage…); 500 for the store's own failures (logged).
//! * Device root keys appear in exactly one response: the key file text `POST
//!   /api/v1/devices` returns once. Nothing here logs a key or the token.
//!
//! The routes live in one submodule per resource, each a `routes()` returning a
//! `Router<AdminState<S>>`; [`router`] merges them. A new family of routes (say webhooks) is
//! one more submodule and one more `.merge(…)` line in `api_routes`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::logging::{LogKey, RejectLimiter, Verdict, DROP_LOG_INTERVAL_MS};
use crate::metrics::{HistogramSnapshot, StoreMetrics};
use crate::server::Server;
use crate::store::{Store, StoreError};

mod devices;
mod products;
mod publishes;
mod releases;
mod rollouts;

/// Largest request body accepted: 8 MiB (a signed container is the largest thing sent);
/// larger bodies get 413.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The admin bearer token (`DIR/admin.token`). Never printed: `Debug` shows nothing of it.
pub struct AdminToken(Zeroizing<String>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

impl AdminToken {
    /// A token from its text (surrounding whitespace ignored). Errors: an empty token.
    pub fn new(text: &str) -> Result<Self, &'static str> {
        let t = text.trim();
        if t.is_empty() {
            return Err("the admin token is empty");
        }
        Ok(Self(Zeroizing::new(t.to_owned())))
    }

    /// Reads the token file `init` wrote. Errors: the OS error, or an empty file.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = Zeroizing::new(std::fs::read_to_string(path)?);
        Self::new(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Whether `presented` is the token, in time independent of where they differ (their
    /// lengths are not secret: every token `init` writes has 64 characters).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        ours.len() == presented.len() && bool::from(ours.ct_eq(presented))
    }
}

struct Inner<S> {
    server: Arc<Server<S>>,
    token: AdminToken,
    sessions: crate::console::Sessions,
    login_log: std::sync::Mutex<RejectLimiter>,
    releases: PathBuf,
    commit_batches: Box<dyn Fn() -> Option<HistogramSnapshot> + Send + Sync>,
}

/// What every admin handler gets: the protocol server (its store, clock, counters), the token
/// and where release files go. Cheap to clone (one `Arc`).
pub struct AdminState<S> {
    inner: Arc<Inner<S>>,
    secure_cookie: bool,
}

impl<S> Clone for AdminState<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            secure_cookie: self.secure_cookie,
        }
    }
}

impl<S: Store> AdminState<S> {
    /// The state for `server`, checking requests against `token`, writing uploaded containers
    /// to `releases` (`DIR/releases`).
    pub fn new(server: Arc<Server<S>>, token: AdminToken, releases: PathBuf) -> Self
    where
        S: StoreMetrics,
    {
        let store = server.store().clone();
        Self {
            inner: Arc::new(Inner {
                server,
                token,
                sessions: crate::console::Sessions::default(),
                login_log: std::sync::Mutex::new(RejectLimiter::new(DROP_LOG_INTERVAL_MS, 1)),
                releases,
                commit_batches: Box::new(move || store.commit_batches()),
            }),
            secure_cookie: false,
        }
    }

    /// With `on`, the console's session cookie is `Secure` and named `__Host-ota_session`
    /// ([`crate::console::SECURE_COOKIE`]): browsers send it over HTTPS only (and to no other
    /// port's plain-HTTP service on the same host), so the console must be reached through
    /// TLS (a proxy). Off (the default): `ota_session` without `Secure`, for loopback or a
    /// trusted network. `ota-cloud serve --console-secure-cookie`.
    pub fn with_console_secure_cookie(mut self, on: bool) -> Self {
        self.secure_cookie = on;
        self
    }

    /// Whether the console's cookie is the `Secure`, `__Host-` one.
    pub fn console_secure_cookie(&self) -> bool {
        self.secure_cookie
    }

    /// The store.
    pub fn store(&self) -> &S {
        self.inner.server.store()
    }

    /// The protocol server (its drop counters and metrics).
    pub fn server(&self) -> &Server<S> {
        &self.inner.server
    }

    /// The server's clock (Unix ms).
    pub fn now_ms(&self) -> u64 {
        self.inner.server.now_ms()
    }

    /// Where uploaded containers are written.
    pub fn releases_dir(&self) -> &Path {
        &self.inner.releases
    }

    /// The console's sessions.
    pub fn sessions(&self) -> &crate::console::Sessions {
        &self.inner.sessions
    }

    /// Whether a refused console login at the server's clock is logged: one line per
    /// [`DROP_LOG_INTERVAL_MS`] for all of them (an unauthenticated client cannot flood the
    /// log), with the count held back since the last one. Cost: one [`RejectLimiter::check`]
    /// under a mutex.
    pub fn login_refused(&self) -> Verdict {
        let now = self.now_ms();
        // A panic while holding it left a plain limiter: still usable.
        let mut l = self
            .inner
            .login_log
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        l.check(LogKey::ConsoleLogin, now)
    }

    /// Whether `presented` is the admin token (constant time).
    pub fn token_matches(&self, presented: &[u8]) -> bool {
        self.inner.token.matches(presented)
    }
}

/// A refused or failed request: its status and the message of its `{"error": …}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the operator.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "admin request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "admin request refused");
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::UnknownDevice(_)
            | StoreError::UnknownProduct(_)
            | StoreError::UnknownRelease(_)
            | StoreError::UnknownRollout(_) => StatusCode::NOT_FOUND,
            StoreError::AlreadyExists | StoreError::IllegalTransition { .. } => {
                StatusCode::CONFLICT
            }
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// A body or parameter axum could not read: 413 over the limit, 415 for a wrong content type,
/// 400 otherwise (syntax or shape: both are the client's bad JSON).
fn rejection(status: StatusCode, text: String) -> ApiError {
    let status = match status {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => status,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            format!("request body larger than {BODY_LIMIT} bytes"),
        );
    }
    ApiError::new(status, text)
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

/// Parses a numeric id from a path segment. Errors: 400 naming `what`.
pub(crate) fn parse_id(s: &str, what: &str) -> ApiResult<u32> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} id `{s}` is not a number")))
}

/// The API routes, relative to `/api/v1`, one `merge` per resource module.
fn api_routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .merge(products::routes())
        .merge(devices::routes())
        .merge(releases::routes())
        .merge(publishes::routes())
        .merge(rollouts::routes())
}

/// The admin service: `/api/v1/…` (token or console session required), `/metrics` (no
/// token) and the web console at `/` ([`crate::console`]), with the [`BODY_LIMIT`], JSON
/// 404/405 answers, and the credential check in front of every `/api/` path (unknown ones
/// included, so an unauthenticated caller learns nothing of the routes).
pub fn router<S: Store>(state: AdminState<S>) -> Router {
    Router::new()
        .nest("/api/v1", api_routes::<S>())
        .merge(crate::console::routes::<S>())
        .route("/metrics", get(metrics::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::<S>))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until an accept error.
pub async fn serve<S: Store>(
    state: AdminState<S>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such path (the API is under /api/v1)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this path",
    )
}

async fn auth<S: Store>(
    State(state): State<AdminState<S>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(refused) = crate::console::gate(&state, req.method(), req.uri().path(), &headers) {
        return refused;
    }
    if req.uri().path().starts_with("/api/") {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match presented {
            Some(t) if !state.inner.token.matches(t) => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token").into_response()
            }
            Some(_) => {}
            // No bearer token: a console session will do, with its CSRF token on writes.
            None => {
                match crate::console::session(&state, &headers) {
                    None => return ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "missing `Authorization: Bearer <token>` (the token is DIR/admin.token) \
                         or a console session",
                    )
                    .into_response(),
                    Some(s) => {
                        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
                        let csrf = headers
                            .get("x-csrf-token")
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|t| crate::console::csrf_matches(&s, t));
                        if !safe && !csrf {
                            return ApiError::new(
                            StatusCode::FORBIDDEN,
                            "a request with the console session needs its `X-CSRF-Token` header",
                        )
                        .into_response();
                        }
                    }
                }
            }
        }
    }
    next.run(req).await
}

async fn metrics<S: Store>(State(state): State<AdminState<S>>) -> Response {
    let server = state.server();
    let batches = (state.inner.commit_batches)();
    let text = crate::metrics::render(server.metrics(), &server.drops(), batches.as_ref());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
