//! `/` (to the fleet or the login page), `/login` (the form; `POST` checks the admin token
//! and starts a session), `POST /logout` (deletes it).

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{
    check_post, error_box, html_response, see_other, session, set_cookie, to_login, too_large,
    FORM_LIMIT,
};
use crate::admin::AdminState;
use crate::logging::Verdict;
use crate::store::Store;

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/", get(root::<S>))
        .route(
            "/login",
            get(form::<S>)
                .post(login::<S>)
                .layer(DefaultBodyLimit::max(FORM_LIMIT)),
        )
        .route(
            "/logout",
            post(logout::<S>).layer(DefaultBodyLimit::max(FORM_LIMIT)),
        )
}

async fn root<S: Store>(State(st): State<AdminState<S>>, headers: HeaderMap) -> Response {
    match session(&st, &headers) {
        Some(_) => see_other("/fleet"),
        None => to_login(),
    }
}

fn login_page(error: Option<&str>) -> String {
    let err = error
        .map(|e| error_box("login-error", e))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Log in · ota-cloud</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
         <body class=\"login\"><main><h1>ota-cloud console</h1>\
         <form id=\"login-form\" method=\"post\" action=\"/login\">\
         <label for=\"token\">Admin token <small>(the text of DIR/admin.token)</small></label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus>\
         <button id=\"login-submit\" type=\"submit\">Log in</button></form>{err}</main></body></html>"
    )
}

async fn form<S: Store>(State(st): State<AdminState<S>>, headers: HeaderMap) -> Response {
    if session(&st, &headers).is_some() {
        return see_other("/fleet");
    }
    html_response(StatusCode::OK, login_page(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login<S: Store>(
    State(st): State<AdminState<S>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => {
            return too_large(&e).unwrap_or_else(|| {
                html_response(
                    StatusCode::BAD_REQUEST,
                    login_page(Some("send the form: token=…")),
                )
            })
        }
    };
    if !st.token_matches(f.token.trim().as_bytes()) {
        if let Verdict::Log { suppressed } = st.login_refused() {
            tracing::warn!(suppressed, "console login refused: wrong token");
        }
        return html_response(StatusCode::UNAUTHORIZED, login_page(Some("wrong token")));
    }
    let (id, _) = match st.sessions().create(st.now_ms()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "console login: no randomness for a session id");
            return html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                login_page(Some("the server could not create a session")),
            );
        }
    };
    tracing::info!("console login");
    let mut r = see_other("/fleet");
    let cookie = set_cookie(st.console_secure_cookie(), &id);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = match form {
        Ok(Form(f)) => f.csrf,
        Err(e) => match too_large(&e) {
            Some(r) => return r,
            None => None,
        },
    };
    let s = match check_post(&st, &headers, csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    st.sessions().remove(&s);
    let mut r = to_login();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(st.console_secure_cookie(), "")) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
