//! The web console: server-rendered HTML pages over the same [`AdminState`] as the JSON API,
//! served at `/` on the admin address (`ota-cloud serve --admin ADDR`). One submodule per
//! page; no Node toolchain: the CSS and the little JavaScript (live refresh, fleet filters)
//! are files under `src/console/assets/` compiled in with `include_str!`, charts are SVG
//! rendered here.
//!
//! # Security model
//! * **Login** with the admin token (`DIR/admin.token`, compared in constant time) gives a
//!   session: 32 random bytes from the OS ([`getrandom`]) as 64 hex digits in the cookie
//!   `ota_session` (`HttpOnly; SameSite=Strict; Path=/`, no `Secure`: for loopback or a
//!   trusted network; cookies are not port-scoped, so any other HTTP service on the same host
//!   name receives it, and over plain HTTP it travels in clear). Behind a TLS proxy,
//!   [`AdminState::with_console_secure_cookie`] (`serve --console-secure-cookie`) makes it
//!   `__Host-ota_session` with `Secure` ([`SECURE_COOKIE`]). The
//!   server keeps sessions in memory only (a restart logs everyone out), keyed by the
//!   SHA-256 of the id (a map lookup then leaks nothing usable about a guessed id), each with
//!   an expiry ([`SESSION_TTL_MS`], absolute) and at most [`MAX_SESSIONS`]; logout deletes it.
//! * **Writes without a session** (every method but `GET`/`HEAD` outside `/api/`, `POST
//!   /login` excepted) are refused with 403 before routing, so before their body is read
//!   (`gate`): an unauthenticated client cannot make the server buffer an upload. Login,
//!   logout and the rollout forms read at most [`FORM_LIMIT`] bytes (413 beyond); only the
//!   upload of a logged-in session may send up to [`crate::admin::BODY_LIMIT`].
//! * **CSRF**: each session has its own random token; every form carries it in a hidden
//!   `csrf` field and every `POST` is refused (403, nothing changed) unless it matches
//!   (constant time). The JSON API accepts the session cookie too, with the token in an
//!   `X-CSRF-Token` header on every method but `GET`/`HEAD`; without a bearer token or a
//!   session it answers 401 and touches nothing ([`crate::admin`]).
//! * Everything that comes from devices or operators (tags, publishes, error texts) is
//!   HTML-escaped ([`esc`]) where it is written into a page. Every page is sent with a
//!   `Content-Security-Policy` that allows scripts, styles and forms from the console itself
//!   only (no inline script), `X-Frame-Options: DENY`, `Cache-Control: no-store`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cloud_proto::{FirmwareVersion, OtaState, UpdateResult};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::admin::AdminState;
use crate::store::Store;

mod charts;
mod device;
mod fleet;
mod live;
mod login;
mod multipart;
mod releases;
mod rollouts;
mod time;

pub use fleet::{ota_state_name, FleetQuery};

/// The session cookie's name by default (no `Secure`: plain HTTP on loopback works).
pub const COOKIE: &str = "ota_session";

/// The session cookie's name with [`AdminState::with_console_secure_cookie`]: the `__Host-`
/// prefix makes browsers accept it only with `Secure`, `Path=/` and no `Domain`, set from a
/// secure origin, so no other service on the host name can set or shadow it over plain HTTP.
pub const SECURE_COOKIE: &str = "__Host-ota_session";

/// The session cookie's name for `secure` ([`COOKIE`] or [`SECURE_COOKIE`]).
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// The `Set-Cookie` value that gives the browser session `id` (`Max-Age` = what is left of
/// [`SESSION_TTL_MS`]), or deletes the cookie when `id` is empty (`Max-Age=0`).
pub(crate) fn set_cookie(secure: bool, id: &str) -> String {
    let max_age = if id.is_empty() {
        0
    } else {
        SESSION_TTL_MS / 1000
    };
    format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        cookie_name(secure),
        if secure { "; Secure" } else { "" }
    )
}

/// A session's lifetime from login (absolute, not renewed): 12 hours.
pub const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;

/// Sessions kept at most; a login beyond it first drops the expired ones, then the oldest.
pub const MAX_SESSIONS: usize = 1024;

/// Largest body of the console's small forms (login, logout, the rollout forms): 16 KiB, far
/// above what they carry (a 64-digit token and a few fields); larger ones get 413 after at most
/// this many bytes were read. The upload (`POST /releases`) keeps the API's
/// [`crate::admin::BODY_LIMIT`], behind the session check that runs before routing.
pub const FORM_LIMIT: usize = 16 * 1024;

/// How often the pages poll their live numbers (milliseconds).
pub const LIVE_INTERVAL_MS: u32 = 2_000;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

struct Session {
    csrf: String,
    expires_ms: u64,
}

/// The console's logged-in sessions, in memory (see the module's security model).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(…)")
    }
}

/// A logged-in session as a request presents it.
#[derive(Debug, Clone)]
pub struct SessionRef {
    /// The cookie value (to delete it at logout).
    id: String,
    /// Its CSRF token.
    pub csrf: String,
}

fn random_hex() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding it left a plain map: still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session valid until `now_ms + SESSION_TTL_MS`: its cookie value and CSRF token.
    /// Errors: the OS has no randomness to give. Cost: O(sessions) when full (pruning).
    pub fn create(&self, now_ms: u64) -> Result<(String, String), getrandom::Error> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires_ms > now_ms);
        }
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            key_of(&id),
            Session {
                csrf: csrf.clone(),
                expires_ms: now_ms.saturating_add(SESSION_TTL_MS),
            },
        );
        Ok((id, csrf))
    }

    /// The session with cookie value `id` if it exists and has not expired at `now_ms` (an
    /// expired one is deleted).
    pub fn get(&self, id: &str, now_ms: u64) -> Option<SessionRef> {
        let key = key_of(id);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.expires_ms > now_ms => Some(SessionRef {
                id: id.to_owned(),
                csrf: s.csrf.clone(),
            }),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Deletes a session (logout).
    pub fn remove(&self, s: &SessionRef) {
        self.lock().remove(&key_of(&s.id));
    }

    /// Sessions held now (expired ones not yet pruned included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The request's session, if its session cookie (the name [`cookie_name`] gives for the
/// state's option; the other name is ignored) names a live one.
pub fn session<S: Store>(st: &AdminState<S>, headers: &HeaderMap) -> Option<SessionRef> {
    let id = cookie(headers, cookie_name(st.console_secure_cookie()))?;
    st.sessions().get(id, st.now_ms())
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_matches(s: &SessionRef, presented: &str) -> bool {
    let ours = s.csrf.as_bytes();
    ours.len() == presented.len() && bool::from(ours.ct_eq(presented.as_bytes()))
}

/// The session of a form `POST` whose `csrf` field is `presented`; otherwise the 403 page
/// (nothing may change).
pub(crate) fn check_post<S: Store>(
    st: &AdminState<S>,
    headers: &HeaderMap,
    presented: Option<&str>,
) -> Result<SessionRef, Response> {
    let Some(s) = session(st, headers) else {
        return Err(refused_403("no session: log in again"));
    };
    match presented {
        Some(p) if csrf_matches(&s, p) => Ok(s),
        _ => Err(refused_403("missing or wrong CSRF token: reload the page")),
    }
}

/// The console's check in front of every write, run by the admin middleware before routing,
/// so before any extractor reads a byte of the body: a request outside `/api/` whose method is
/// not `GET`/`HEAD`, other than `POST /login`, without a live session gets the 403 page
/// ("no session") and its body is never read (hyper closes the connection rather than drain
/// it). `None`: let it through (the handler still checks the CSRF token).
pub(crate) fn gate<S: Store>(
    st: &AdminState<S>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let safe = matches!(*method, Method::GET | Method::HEAD);
    let login = *method == Method::POST && path == "/login";
    if safe || login || path.starts_with("/api/") || session(st, headers).is_some() {
        return None;
    }
    Some(refused_403("no session: log in again"))
}

/// The 413 page for a form over [`FORM_LIMIT`] (`Some`), or `None` for any other rejection.
pub(crate) fn too_large(rejection: &FormRejection) -> Option<Response> {
    (rejection.status() == StatusCode::PAYLOAD_TOO_LARGE).then(|| {
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Refused</title>\
             <link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head><body>\
             <main><h1>Refused</h1><p id=\"refused\">form larger than {FORM_LIMIT} bytes</p>\
             </main></body></html>"
        );
        html_response(StatusCode::PAYLOAD_TOO_LARGE, body)
    })
}

fn refused_403(why: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Refused</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head><body>\
         <main><h1>Refused</h1><p id=\"refused\">{}</p><p><a href=\"/login\">Log in</a></p>\
         </main></body></html>",
        esc(why)
    );
    html_response(StatusCode::FORBIDDEN, body)
}

/// `303 See Other` to `to`.
pub(crate) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A redirect to the login page (a page asked without a session).
pub(crate) fn to_login() -> Response {
    see_other("/login")
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An HTML page response with the console's security headers.
pub(crate) fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    r
}

/// HTML-escapes `s` for text and double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `major.minor.patch`.
pub(crate) fn version(v: FirmwareVersion) -> String {
    format!("{}.{}.{}", v.major, v.minor, v.patch)
}

/// An LwM2M state's name (Object 5, resource 3).
pub(crate) fn lwm2m_state(s: OtaState) -> &'static str {
    match s {
        OtaState::Idle => "idle",
        OtaState::Downloading => "downloading",
        OtaState::Downloaded => "downloaded",
        OtaState::Updating => "updating",
    }
}

/// An LwM2M update result as `N name` (Object 5, resource 5).
pub(crate) fn lwm2m_result(r: UpdateResult) -> String {
    let name = match r {
        UpdateResult::Initial => "initial",
        UpdateResult::Success => "success",
        UpdateResult::NotEnoughFlash => "not enough flash",
        UpdateResult::OutOfRam => "out of RAM",
        UpdateResult::ConnectionLost => "connection lost",
        UpdateResult::IntegrityFailure => "integrity check failed",
        UpdateResult::UnsupportedPackage => "unsupported package",
        UpdateResult::InvalidUri => "invalid URI",
        UpdateResult::UpdateFailed => "update failed",
        UpdateResult::UnsupportedProtocol => "unsupported protocol",
        UpdateResult::Cancelled => "cancelled",
        UpdateResult::Deferred => "deferred",
        // `UpdateResult` is cloud-proto's and may grow.
        #[allow(unreachable_patterns)]
        _ => "other",
    };
    format!("{} {name}", r as u8)
}

/// Whether an LwM2M result is a failure (2 to 9).
pub(crate) fn is_failure(r: UpdateResult) -> bool {
    (2..=9).contains(&(r as u8))
}

/// Bytes as `812 B`, `12.3 KiB`, `4.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Fleet,
    Releases,
    Rollouts,
}

/// A logged-in page: the shell (nav with logout, the live-refresh settings on `<body>`)
/// around `main`, which the caller has escaped. `live`: the JSON path the page polls.
pub(crate) fn page(
    title: &str,
    nav: Nav,
    s: &SessionRef,
    live: Option<&str>,
    main: &str,
) -> String {
    let mut out = String::with_capacity(main.len() + 2048);
    let cur = |n: Nav| {
        if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · ota-cloud</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body data-live-tick=\"0\"",
        esc(title)
    );
    if let Some(l) = live {
        let _ = write!(
            out,
            " data-live-url=\"{}\" data-live-interval=\"{LIVE_INTERVAL_MS}\"",
            esc(l)
        );
    }
    let _ = write!(
        out,
        "><header><nav id=\"nav\"><span class=\"brand\">ota-cloud</span>\
         <a id=\"nav-fleet\" href=\"/fleet\"{}>Fleet</a>\
         <a id=\"nav-releases\" href=\"/releases\"{}>Releases</a>\
         <a id=\"nav-rollouts\" href=\"/rollouts\"{}>Rollouts</a>\
         <form method=\"post\" action=\"/logout\" class=\"logout\">{}\
         <button id=\"logout\" type=\"submit\">Log out</button></form></nav></header>\
         <main>{main}</main></body></html>",
        cur(Nav::Fleet),
        cur(Nav::Releases),
        cur(Nav::Rollouts),
        csrf_field(s),
    );
    out
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(s: &SessionRef) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

/// The page for a store failure (500; logged).
pub(crate) fn store_failed(s: &SessionRef, e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "console page: store failed");
    html_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Error",
            Nav::Fleet,
            s,
            None,
            &format!("<h1>Error</h1>{}", error_box("store-error", &e.to_string())),
        ),
    )
}

/// A page's error box, `id` = the element id the tests look for.
pub(crate) fn error_box(id: &str, message: &str) -> String {
    format!(
        "<p id=\"{}\" class=\"error\" role=\"alert\">{}</p>",
        esc(id),
        esc(message)
    )
}

/// The console's routes (merged into the admin router at `/`).
pub(crate) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .merge(login::routes())
        .merge(fleet::routes())
        .merge(device::routes())
        .merge(releases::routes())
        .merge(rollouts::routes())
        .merge(live::routes())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

async fn css<S: Store>(State(_): State<AdminState<S>>) -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js<S: Store>(State(_): State<AdminState<S>>) -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// The bytes of the console's stylesheet and script (the fleet page's weight adds them to
/// its HTML).
pub fn asset_bytes() -> usize {
    CSS.len() + JS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("plain é"), "plain é");
    }

    #[test]
    fn sessions_expire_and_are_deleted() {
        let s = Sessions::default();
        let (id, csrf) = s.create(1_000).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        let got = s.get(&id, 1_000 + SESSION_TTL_MS - 1).unwrap();
        assert!(csrf_matches(&got, &csrf));
        assert!(!csrf_matches(&got, &csrf[..63]));
        assert!(!csrf_matches(&got, &id));
        assert!(s.get("0".repeat(64).as_str(), 1_000).is_none());
        assert!(s.get(&id, 1_000 + SESSION_TTL_MS).is_none(), "expired");
        assert!(s.is_empty(), "the expired one was deleted");
        let (id, _) = s.create(5).unwrap();
        let r = s.get(&id, 6).unwrap();
        s.remove(&r);
        assert!(s.get(&id, 6).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let (first, _) = s.create(0).unwrap();
        for i in 1..=MAX_SESSIONS as u64 {
            s.create(i).unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first, 1).is_none(), "the oldest went first");
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ota_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "ota"), None);
    }
}
