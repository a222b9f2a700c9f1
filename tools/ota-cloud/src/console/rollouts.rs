//! `/rollouts` (the list and the start form) and `/rollouts/{id}` (state, the automatic pause
//! with its cause, devices per phase, the adoption chart; raise, pause, resume, cancel).
//! Every change goes through the same [`Store`] calls as the JSON API, so the same rules
//! refuse the same changes.

use std::fmt::Write as _;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use cloud_proto::DeviceId;
use serde::Deserialize;

use super::time::{iso, relative};
use super::{
    charts, check_post, csrf_field, error_box, esc, html_response, page, see_other, session,
    to_login, version, Nav, SessionRef,
};
use crate::admin::AdminState;
use crate::rollout::{
    ErrorThreshold, NewRollout, PauseCause, ReleaseId, Rollout, RolloutChange, RolloutId,
    RolloutProgress, RolloutState, Share, Target,
};
use crate::store::{Release, Store, StoreError};

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new()
        .route("/rollouts", get(list::<S>).post(start::<S>))
        .route("/rollouts/{id}", get(show::<S>))
        .route("/rollouts/{id}/percent", post(percent::<S>))
        .route("/rollouts/{id}/pause", post(pause::<S>))
        .route("/rollouts/{id}/resume", post(resume::<S>))
        .route("/rollouts/{id}/cancel", post(cancel::<S>))
        // The forms are a few fields: no need for the upload's limit.
        .route_layer(DefaultBodyLimit::max(super::FORM_LIMIT))
}

/// `running`, `paused`, `cancelled`, or `auto-paused` (paused by its error threshold).
pub(crate) fn state_text(s: RolloutState) -> &'static str {
    match s {
        RolloutState::Paused(PauseCause::ErrorThreshold { .. }) => "auto-paused",
        s => s.name(),
    }
}

fn target_text(t: &Target) -> String {
    match t {
        Target::Device(d) => format!("device {}", d.0),
        Target::Group(g) => format!("group {g}"),
        Target::Product => "every device of the product".into(),
    }
}

/// The phases in the order a device moves through them, with their counts.
fn phases(p: &RolloutProgress) -> [(&'static str, u64); 9] {
    [
        ("not-offered", p.not_offered),
        ("offered", p.offered),
        ("deferred", p.deferred),
        ("downloading", p.downloading),
        ("downloaded", p.downloaded),
        ("updating", p.updating),
        ("succeeded", p.succeeded),
        ("failed", p.failed),
        ("declined", p.declined),
    ]
}

/// Every release of every product, newest first, with its product's name.
async fn all_releases<S: Store>(
    st: &AdminState<S>,
) -> Result<Vec<(ReleaseId, Release, String)>, StoreError> {
    let mut out = Vec::new();
    for p in st.store().products().await? {
        for (id, r) in st.store().releases(p.id).await? {
            out.push((id, r, p.name.clone()));
        }
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    Ok(out)
}

/// The list page's live region `rollouts` (table rows). Cost: one
/// [`Store::rollout_progress`] per rollout.
async fn rows<S: Store>(st: &AdminState<S>) -> Result<String, StoreError> {
    let now = st.now_ms();
    let mut out = String::new();
    let mut list = st.store().rollouts(None).await?;
    list.sort_by_key(|b| std::cmp::Reverse(b.id));
    for r in list {
        let p = st
            .store()
            .rollout_progress(r.id, now)
            .await?
            .unwrap_or_default();
        let state = state_text(r.state);
        let _ = write!(
            out,
            "<tr data-rollout-id=\"{id}\" data-state=\"{state}\"><td><a href=\"/rollouts/{id}\">rollout {id}</a></td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"state {state}\">{state}</td>\
             <td>{} of {} updated, {} failed</td><td title=\"{}\">{}</td></tr>",
            version(r.version),
            esc(&target_text(&r.target)),
            r.share,
            p.succeeded,
            p.targeted,
            p.failed,
            iso(r.created_ms),
            relative(r.created_ms, now),
            id = r.id.0,
        );
    }
    Ok(out)
}

/// The live regions of `/rollouts`.
pub(crate) async fn list_regions<S: Store>(
    st: &AdminState<S>,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    Ok(vec![("rollouts", rows(st).await?)])
}

async fn list_page<S: Store>(
    st: &AdminState<S>,
    s: &SessionRef,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let (releases, rows) = match (all_releases(st).await, rows(st).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return super::store_failed(s, e),
    };
    let mut m = String::from("<h1>Rollouts</h1>");
    if let Some(e) = error {
        m.push_str(&error_box("rollout-error", e));
    }
    let _ = write!(
        m,
        "<h2>Start a rollout</h2><form id=\"rollout-form\" class=\"inline\" method=\"post\" \
         action=\"/rollouts\">{}<label>Release<select id=\"rollout-release\" name=\"release\">",
        csrf_field(s)
    );
    for (id, r, product) in &releases {
        let _ = write!(
            m,
            "<option value=\"{}\">{} {} (release {})</option>",
            id.0,
            esc(product),
            version(r.version),
            id.0
        );
    }
    let _ = write!(
        m,
        "</select></label><label>Target<select id=\"rollout-target-kind\" name=\"target_kind\">\
         <option value=\"product\">product</option><option value=\"group\">group</option>\
         <option value=\"device\">device</option></select></label>\
         <label>Device id or group tag<input id=\"rollout-target\" name=\"target\" \
         placeholder=\"(not for a product)\"></label>\
         <label>Percent<input id=\"rollout-percent\" name=\"percent\" value=\"100\" \
         inputmode=\"decimal\" size=\"6\"></label>\
         <label>Error threshold %<input id=\"rollout-threshold\" name=\"threshold\" \
         placeholder=\"none\" inputmode=\"decimal\" size=\"6\"></label>\
         <label>Min. finished<input id=\"rollout-min-finished\" name=\"min_finished\" value=\"5\" \
         inputmode=\"numeric\" size=\"4\"></label>\
         <button id=\"rollout-submit\" type=\"submit\"{}>Start</button></form>",
        if releases.is_empty() { " disabled" } else { "" }
    );
    if releases.is_empty() {
        m.push_str("<p class=\"empty\">Upload a release first (Releases).</p>");
    }
    let _ = write!(
        m,
        "<h2>Rollouts</h2><table id=\"rollouts\"><thead><tr><th>Rollout</th><th>Version</th>\
         <th>Target</th><th>Share</th><th>State</th><th>Progress</th><th>Started</th></tr></thead>\
         <tbody data-live=\"rollouts\">{rows}</tbody></table>"
    );
    html_response(
        status,
        page(
            "Rollouts",
            Nav::Rollouts,
            s,
            Some("/console/live/rollouts"),
            &m,
        ),
    )
}

async fn list<S: Store>(State(st): State<AdminState<S>>, headers: HeaderMap) -> Response {
    let Some(s) = session(&st, &headers) else {
        return to_login();
    };
    list_page(&st, &s, StatusCode::OK, None).await
}

#[derive(Deserialize)]
struct StartForm {
    csrf: Option<String>,
    release: Option<String>,
    target_kind: Option<String>,
    target: Option<String>,
    percent: Option<String>,
    threshold: Option<String>,
    min_finished: Option<String>,
}

fn parse_share(text: &str, field: &str) -> Result<Share, String> {
    Share::parse_percent(text.trim().trim_end_matches('%').trim()).ok_or_else(|| {
        format!("{field}: {text:?} is not a percentage from 0 to 100 (at most two decimals)")
    })
}

/// The rollout a start form asks for, or why not.
fn new_rollout(f: &StartForm, now: u64) -> Result<NewRollout, String> {
    let blank = |o: &Option<String>| {
        o.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let release = blank(&f.release)
        .and_then(|r| r.parse::<u32>().ok())
        .ok_or("choose a release")?;
    let target_text = blank(&f.target);
    let target = match f.target_kind.as_deref().unwrap_or("product") {
        "product" => Target::Product,
        "group" => Target::Group(target_text.ok_or("a group rollout needs a group tag")?),
        "device" => Target::Device(DeviceId(
            target_text
                .as_deref()
                .and_then(|t| t.parse().ok())
                .ok_or("a device rollout needs a device id (a number)")?,
        )),
        other => return Err(format!("unknown target kind {other:?}")),
    };
    let share = match blank(&f.percent) {
        Some(p) => parse_share(&p, "percent")?,
        None => Share::ALL,
    };
    let error_threshold = match blank(&f.threshold) {
        Some(t) => Some(ErrorThreshold {
            max_failed: parse_share(&t, "error threshold")?,
            min_finished: match blank(&f.min_finished) {
                Some(m) => m
                    .parse()
                    .map_err(|_| format!("min. finished: {m:?} is not a number"))?,
                None => 1,
            },
        }),
        None => None,
    };
    Ok(NewRollout {
        release: ReleaseId(release),
        target,
        share,
        error_threshold,
        defer_until_ms: None,
        created_ms: now,
    })
}

/// A store refusal as the page shows it: the status and the message.
fn refusal(e: StoreError) -> (StatusCode, String) {
    let status = match &e {
        StoreError::UnknownDevice(_)
        | StoreError::UnknownRelease(_)
        | StoreError::UnknownRollout(_) => StatusCode::NOT_FOUND,
        StoreError::IllegalTransition { .. } | StoreError::AlreadyExists => StatusCode::CONFLICT,
        StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "console: store failed");
    }
    (status, e.to_string())
}

async fn start<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => Some(f),
        Err(e) => match super::too_large(&e) {
            Some(r) => return r,
            None => None,
        },
    };
    let s = match check_post(&st, &headers, form.as_ref().and_then(|f| f.csrf.as_deref())) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(f) = form else {
        return list_page(&st, &s, StatusCode::BAD_REQUEST, Some("send the form")).await;
    };
    let new = match new_rollout(&f, st.now_ms()) {
        Ok(n) => n,
        Err(why) => return list_page(&st, &s, StatusCode::UNPROCESSABLE_ENTITY, Some(&why)).await,
    };
    match st.store().add_rollout(new).await {
        Ok(id) => {
            tracing::info!(rollout = id.0, "console: rollout started");
            see_other(&format!("/rollouts/{}", id.0))
        }
        Err(e) => {
            let (status, why) = refusal(e);
            list_page(&st, &s, status, Some(&why)).await
        }
    }
}

fn status_html(r: &Rollout) -> String {
    let state = state_text(r.state);
    let mut out = format!(
        "<p>State: <strong id=\"rollout-state\" class=\"state {state}\">{state}</strong> · share \
         <span id=\"rollout-share\">{}</span> of {} · release {} ({})",
        r.share,
        esc(&target_text(&r.target)),
        r.release.0,
        version(r.version)
    );
    if let Some(t) = r.error_threshold {
        let _ = write!(
            out,
            " · pauses itself above {} failed (from {} finished on)",
            t.max_failed, t.min_finished
        );
    }
    out.push_str("</p>");
    if let RolloutState::Paused(PauseCause::ErrorThreshold { failed, finished }) = r.state {
        let limit = r
            .error_threshold
            .map_or_else(|| "its threshold".to_string(), |t| t.max_failed.to_string());
        let _ = write!(
            out,
            "<p id=\"rollout-auto-pause\" class=\"error\">Paused automatically by its error \
             threshold: {failed} of the {finished} devices that finished since it started or was \
             last resumed failed ({}.{} %), above {limit}. Look at the failed devices' update \
             results, then resume or cancel.</p>",
            failed * 100 / finished.max(1),
            failed * 1000 / finished.max(1) % 10,
        );
    }
    out
}

fn counts_html(p: &RolloutProgress) -> String {
    let mut out = format!(
        "<li data-state=\"targeted\"><span class=\"count\">{}</span> targeted</li>",
        p.targeted
    );
    for (name, n) in phases(p) {
        let _ = write!(
            out,
            "<li data-state=\"{name}\"><span class=\"count\">{n}</span> {name}</li>"
        );
    }
    let _ = write!(
        out,
        "<li data-state=\"overdue\"><span class=\"count\">{}</span> overdue</li>",
        p.overdue
    );
    out
}

fn actions_html(r: &Rollout, s: &SessionRef) -> String {
    let id = r.id.0;
    let dis = |ok: bool| if ok { "" } else { " disabled" };
    let running = r.state == RolloutState::Running;
    let paused = matches!(r.state, RolloutState::Paused(_));
    let live = running || paused;
    let c = csrf_field(s);
    format!(
        "<form method=\"post\" action=\"/rollouts/{id}/pause\">{c}<button id=\"rollout-pause\" type=\"submit\"{}>Pause</button></form>\
         <form method=\"post\" action=\"/rollouts/{id}/resume\">{c}<button id=\"rollout-resume\" type=\"submit\"{}>Resume</button></form>\
         <form method=\"post\" action=\"/rollouts/{id}/cancel\">{c}<button id=\"rollout-cancel\" type=\"submit\"{}>Cancel</button></form>",
        dis(running),
        dis(paused),
        dis(live),
    )
}

/// The raise form: not a live region (a refresh would wipe what the operator is typing).
fn raise_html(r: &Rollout, s: &SessionRef) -> String {
    let live = matches!(r.state, RolloutState::Running | RolloutState::Paused(_));
    format!(
        "<form id=\"rollout-raise\" class=\"inline\" method=\"post\" action=\"/rollouts/{}/percent\">{}\
         <label>Raise the share to (%)<input id=\"rollout-raise-percent\" name=\"percent\" inputmode=\"decimal\" size=\"6\" required></label>\
         <button id=\"rollout-raise-submit\" type=\"submit\"{}>Raise</button></form>",
        r.id.0,
        csrf_field(s),
        if live { "" } else { " disabled" }
    )
}

/// The rollout page's live regions, `None` for an unknown rollout or a non-numeric id.
/// Cost: the rollout, its progress (two aggregates) and its adoption times.
pub(crate) async fn regions<S: Store>(
    st: &AdminState<S>,
    id: &str,
    s: &SessionRef,
) -> Result<Option<Vec<(&'static str, String)>>, StoreError> {
    Ok(regions_for(st, id, Some(s)).await?.map(|(r, _)| r))
}

async fn regions_for<S: Store>(
    st: &AdminState<S>,
    id: &str,
    s: Option<&SessionRef>,
) -> Result<Option<(Vec<(&'static str, String)>, Rollout)>, StoreError> {
    let Ok(id) = id.parse::<u32>() else {
        return Ok(None);
    };
    let id = RolloutId(id);
    let Some(r) = st.store().rollout(id).await? else {
        return Ok(None);
    };
    let now = st.now_ms();
    let p = st
        .store()
        .rollout_progress(id, now)
        .await?
        .unwrap_or_default();
    let times = st.store().rollout_adoption(id).await?;
    let counts: Vec<(String, u64)> = phases(&p)
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
    let mut regions = vec![
        ("rollout-status", status_html(&r)),
        ("rollout-counts", counts_html(&p)),
        (
            "adoption-chart",
            charts::adoption(r.created_ms, now, &times, p.targeted, 720, 220),
        ),
        (
            "phase-chart",
            charts::bars("Devices per phase", &counts, 720, 160),
        ),
    ];
    if let Some(s) = s {
        regions.push(("rollout-actions", actions_html(&r, s)));
    }
    Ok(Some((regions, r)))
}

async fn detail_page<S: Store>(
    st: &AdminState<S>,
    s: &SessionRef,
    id: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let (regions, r) = match regions_for(st, id, Some(s)).await {
        Ok(Some(x)) => x,
        Ok(None) => {
            return html_response(
                StatusCode::NOT_FOUND,
                page(
                    "No such rollout",
                    Nav::Rollouts,
                    s,
                    None,
                    &format!(
                        "<h1>No such rollout</h1>{}",
                        error_box("not-found", &format!("no rollout {id}"))
                    ),
                ),
            )
        }
        Err(e) => return super::store_failed(s, e),
    };
    let region = |k: &str| {
        regions
            .iter()
            .find(|(n, _)| *n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let id = r.id.0;
    let mut m = format!("<h1>Rollout {id}</h1>");
    if let Some(e) = error {
        m.push_str(&error_box("rollout-error", e));
    }
    let _ = write!(
        m,
        "<section data-live=\"rollout-status\">{}</section>\
         <section id=\"rollout-actions\" class=\"stack\" data-live=\"rollout-actions\">{}</section>{}\
         <h2>Devices per phase</h2><ul id=\"rollout-counts\" class=\"counts-list\" data-live=\"rollout-counts\">{}</ul>\
         <div id=\"phase-chart\" data-live=\"phase-chart\">{}</div>\
         <h2>Adoption</h2><div id=\"adoption-chart\" data-live=\"adoption-chart\">{}</div>",
        region("rollout-status"),
        region("rollout-actions"),
        raise_html(&r, s),
        region("rollout-counts"),
        region("phase-chart"),
        region("adoption-chart"),
    );
    html_response(
        status,
        page(
            &format!("Rollout {id}"),
            Nav::Rollouts,
            s,
            Some(&format!("/console/live/rollouts/{id}")),
            &m,
        ),
    )
}

async fn show<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(s) = session(&st, &headers) else {
        return to_login();
    };
    let id = id.map(|Path(i)| i).unwrap_or_default();
    detail_page(&st, &s, &id, StatusCode::OK, None).await
}

#[derive(Deserialize)]
struct ChangeForm {
    csrf: Option<String>,
    percent: Option<String>,
}

/// A change form: check the session and CSRF token, apply, back to the rollout page (or the
/// page with the refusal).
async fn change<S: Store>(
    st: AdminState<S>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<ChangeForm>, FormRejection>,
    what: fn(&ChangeForm) -> Result<RolloutChange, String>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => Some(f),
        Err(e) => match super::too_large(&e) {
            Some(r) => return r,
            None => None,
        },
    };
    let s = match check_post(&st, &headers, form.as_ref().and_then(|f| f.csrf.as_deref())) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id = id.map(|Path(i)| i).unwrap_or_default();
    let Ok(num) = id.parse::<u32>() else {
        return detail_page(&st, &s, &id, StatusCode::NOT_FOUND, None).await;
    };
    let change = match form.as_ref().map(what) {
        Some(Ok(c)) => c,
        Some(Err(why)) => {
            return detail_page(&st, &s, &id, StatusCode::UNPROCESSABLE_ENTITY, Some(&why)).await
        }
        None => {
            return detail_page(&st, &s, &id, StatusCode::BAD_REQUEST, Some("send the form")).await
        }
    };
    let rid = RolloutId(num);
    if let RolloutChange::Share(new) = change {
        match st.store().rollout(rid).await {
            Ok(Some(r)) if new < r.share => {
                let why = format!(
                    "rollout {num} is at {}: a share can only be raised (asked {new})",
                    r.share
                );
                return detail_page(&st, &s, &id, StatusCode::CONFLICT, Some(&why)).await;
            }
            Ok(_) => {}
            Err(e) => return super::store_failed(&s, e),
        }
    }
    match st.store().update_rollout(rid, change).await {
        Ok(_) => {
            tracing::info!(
                rollout = num,
                change = change.name(),
                "console: rollout changed"
            );
            see_other(&format!("/rollouts/{num}"))
        }
        Err(e) => {
            let (status, why) = refusal(e);
            detail_page(&st, &s, &id, status, Some(&why)).await
        }
    }
}

async fn percent<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Response {
    change(st, headers, id, form, |f| {
        parse_share(f.percent.as_deref().unwrap_or(""), "percent").map(RolloutChange::Share)
    })
    .await
}

async fn pause<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Response {
    change(st, headers, id, form, |_| Ok(RolloutChange::Pause)).await
}

async fn resume<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Response {
    change(st, headers, id, form, |_| Ok(RolloutChange::Resume)).await
}

async fn cancel<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Response {
    change(st, headers, id, form, |_| Ok(RolloutChange::Cancel)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str, target: &str, percent: &str, threshold: &str) -> StartForm {
        StartForm {
            csrf: None,
            release: Some("3".into()),
            target_kind: Some(kind.into()),
            target: Some(target.into()),
            percent: Some(percent.into()),
            threshold: Some(threshold.into()),
            min_finished: Some("4".into()),
        }
    }

    #[test]
    fn start_form_values() {
        let r = new_rollout(&form("group", " pilot ", "10", ""), 9).unwrap();
        assert_eq!(r.target, Target::Group("pilot".into()));
        assert_eq!(r.share, Share::percent(10).unwrap());
        assert_eq!(
            (r.release, r.created_ms, r.error_threshold),
            (ReleaseId(3), 9, None)
        );
        let r = new_rollout(&form("device", "12", "12.5%", "20"), 0).unwrap();
        assert_eq!(r.target, Target::Device(DeviceId(12)));
        assert_eq!(r.share.bp(), 1250);
        assert_eq!(
            r.error_threshold,
            Some(ErrorThreshold {
                max_failed: Share::percent(20).unwrap(),
                min_finished: 4
            })
        );
        assert_eq!(
            new_rollout(&form("product", "", "", ""), 0).unwrap().share,
            Share::ALL
        );
        assert!(new_rollout(&form("group", "", "10", ""), 0).is_err());
        assert!(new_rollout(&form("device", "x", "10", ""), 0).is_err());
        assert!(new_rollout(&form("product", "", "101", ""), 0).is_err());
        assert!(new_rollout(&form("fleet", "", "1", ""), 0).is_err());
    }
}
