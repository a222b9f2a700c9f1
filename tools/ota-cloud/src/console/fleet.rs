//! `/fleet`: every device in one table (one [`Store::fleet`] read, whatever the fleet size),
//! with search and filters by group, version and OTA state (applied here from the query
//! string, and in the browser as the operator types), refreshed live.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use cloud_proto::{OtaState, UpdateResult};
use serde::Deserialize;

use super::time::{iso, relative, span};
use super::{esc, html_response, is_failure, page, session, to_login, version, Nav};
use crate::admin::AdminState;
use crate::rollout::{DevicePhase, ReleaseId};
use crate::store::{DeviceStatus, FleetRow, Store, StoreError};

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new().route("/fleet", get(fleet::<S>))
}

/// The fleet page's filters (`/fleet?q=&group=&version=&state=`), all optional; an empty
/// value is no filter.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FleetQuery {
    /// Search: a device whose id or one of whose tags contains it (case-insensitive).
    pub q: Option<String>,
    /// A tag the device must carry.
    pub group: Option<String>,
    /// The version it must run (`1.2.3`).
    pub version: Option<String>,
    /// Its OTA state ([`ota_state_name`]).
    pub state: Option<String>,
}

/// The OTA states the fleet shows, in the order the filter lists them.
pub const STATES: [&str; 9] = [
    "idle",
    "offered",
    "downloading",
    "downloaded",
    "installing",
    "trial",
    "confirmed",
    "failed",
    "deferred",
];

/// A device's OTA state as the fleet shows it, from what it reported last (LwM2M state and
/// result, trial flag) and its phase in the rollout that moved last:
/// `failed` (that rollout failed, or no rollout and a failure result 2–9), `downloading`,
/// `downloaded`, `installing` (LwM2M updating), `trial` (running an image not yet
/// confirmed), `offered`, `deferred`, `confirmed` (the rollout succeeded), else `idle`.
pub fn ota_state_name(r: &FleetRow) -> &'static str {
    let st = &r.status;
    if r.phase == Some(DevicePhase::Failed) || (r.phase.is_none() && is_failure(st.result)) {
        return "failed";
    }
    match st.state {
        OtaState::Downloading => return "downloading",
        OtaState::Downloaded => return "downloaded",
        OtaState::Updating => return "installing",
        OtaState::Idle => {}
    }
    if on_trial(st) {
        return "trial";
    }
    match r.phase {
        Some(DevicePhase::Offered) => "offered",
        Some(DevicePhase::Deferred) => "deferred",
        Some(DevicePhase::Downloading) => "downloading",
        Some(DevicePhase::Downloaded) => "downloaded",
        Some(DevicePhase::Updating) => "installing",
        Some(DevicePhase::Succeeded) => "confirmed",
        _ => "idle",
    }
}

/// Whether the device runs an image on trial: its last check-in said so and no status
/// reported since has confirmed it (LwM2M result 1, success, the latest state and result).
pub(crate) fn on_trial(st: &DeviceStatus) -> bool {
    let confirmed_since = st.last_status.is_some_and(|s| {
        s.result == UpdateResult::Success && st.result == s.result && st.state == s.state
    });
    st.last_checkin.is_some_and(|(_, c)| c.trial) && !confirmed_since
}

fn running_version(r: &FleetRow) -> Option<String> {
    r.status.last_checkin.map(|(_, c)| version(c.firmware))
}

/// A filter's value, `None` when absent or blank.
fn some(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn matches(r: &FleetRow, q: &FleetQuery) -> bool {
    if let Some(needle) = some(&q.q) {
        let needle = needle.to_lowercase();
        let id_hit = r.device.id.0.to_string().contains(&needle);
        let tag_hit = r
            .device
            .tags
            .iter()
            .any(|t| t.to_lowercase().contains(&needle));
        if !id_hit && !tag_hit {
            return false;
        }
    }
    if let Some(g) = some(&q.group) {
        if !r.device.tags.iter().any(|t| t == g) {
            return false;
        }
    }
    if let Some(v) = some(&q.version) {
        if running_version(r).as_deref() != Some(v) {
            return false;
        }
    }
    if let Some(s) = some(&q.state) {
        if ota_state_name(r) != s {
            return false;
        }
    }
    true
}

/// What the fleet page shows: rows, filter choices, counts.
pub(crate) struct Fleet {
    /// The table's rows (`<tr>`…), escaped.
    pub(crate) rows: String,
    pub(crate) shown: usize,
    pub(crate) total: usize,
    groups: BTreeSet<String>,
    versions: BTreeSet<String>,
}

/// Reads the fleet and renders the rows `q` keeps. Cost: [`Store::fleet`] (one query), one
/// [`Store::releases`] per product (for the download progress), O(devices) rendering.
pub(crate) async fn load<S: Store>(
    st: &AdminState<S>,
    q: &FleetQuery,
) -> Result<Fleet, StoreError> {
    let store = st.store();
    let rows = store.fleet().await?;
    let mut sizes: HashMap<ReleaseId, u64> = HashMap::new();
    let mut products = HashMap::new();
    for p in store.products().await? {
        for (id, r) in store.releases(p.id).await? {
            sizes.insert(id, r.size);
        }
        products.insert(p.id, p.name);
    }
    let now = st.now_ms();
    let granted_s = st.server().config().next_checkin_s;
    let mut out = Fleet {
        rows: String::with_capacity(rows.len() * 700),
        shown: 0,
        total: rows.len(),
        groups: BTreeSet::new(),
        versions: BTreeSet::new(),
    };
    for r in &rows {
        out.groups.extend(r.device.tags.iter().cloned());
        out.versions.extend(running_version(r));
        if matches(r, q) {
            out.shown += 1;
            row(&mut out.rows, r, &sizes, &products, now, granted_s);
        }
    }
    Ok(out)
}

/// When the device is expected next and from what: the sleep its last goodbye announced,
/// while that is still ahead of its last frame; otherwise (its last wake ended without a
/// goodbye) its last check-in plus the sleep the server's answer granted
/// ([`ServerConfig::next_checkin_s`](crate::server::ServerConfig::next_checkin_s)).
pub(crate) fn next_wake(st: &DeviceStatus, granted_s: u32) -> Option<(u64, &'static str)> {
    match (st.next_wake_ms, st.last_seen_ms, st.last_checkin) {
        (Some(t), Some(seen), _) if t > seen => Some((t, "the goodbye's sleep")),
        (_, _, Some((at, _))) => Some((
            at.saturating_add(u64::from(granted_s) * 1000),
            "the sleep the server granted",
        )),
        (t, _, None) => t.map(|t| (t, "the goodbye's sleep")),
    }
}

fn row(
    out: &mut String,
    r: &FleetRow,
    sizes: &HashMap<ReleaseId, u64>,
    products: &HashMap<crate::store::ProductId, String>,
    now: u64,
    granted_s: u32,
) {
    let id = r.device.id.0;
    let st = &r.status;
    let state = ota_state_name(r);
    let ver = running_version(r).unwrap_or_default();
    let groups = r.device.tags.join("\n");
    let _ = write!(
        out,
        "<tr data-device-id=\"{id}\" data-version=\"{}\" data-state=\"{state}\" data-groups=\"{}\"{}>",
        esc(&ver),
        esc(&groups),
        if state == "failed" {
            " class=\"failed\""
        } else {
            ""
        }
    );
    let _ = write!(
        out,
        "<td class=\"name\"><a href=\"/devices/{id}\">device {id}</a>"
    );
    for t in &r.device.tags {
        let _ = write!(out, " <span class=\"tag\">{}</span>", esc(t));
    }
    let _ = write!(
        out,
        "</td><td class=\"product\">{}</td>",
        esc(products.get(&r.device.product).map_or("?", String::as_str))
    );
    match st.last_seen_ms {
        Some(t) => {
            let _ = write!(
                out,
                "<td class=\"last-seen\" title=\"{}\">{}</td>",
                iso(t),
                relative(t, now)
            );
        }
        None => out.push_str("<td class=\"last-seen\">never</td>"),
    }
    match next_wake(st, granted_s) {
        Some((t, from)) if t >= now => {
            let _ = write!(
                out,
                "<td class=\"next-wake\" title=\"{} ({from})\">{}</td>",
                iso(t),
                relative(t, now)
            );
        }
        Some((t, from)) => {
            let _ = write!(
                out,
                "<td class=\"next-wake overdue\" title=\"{} ({from})\">overdue {}</td>",
                iso(t),
                span(now - t)
            );
        }
        None => out.push_str("<td class=\"next-wake\">–</td>"),
    }
    match st.last_checkin {
        Some((_, c)) => {
            let _ = write!(
                out,
                "<td class=\"version\">{} {}</td><td class=\"battery\">{}.{:02} V</td>",
                esc(&ver),
                if on_trial(st) {
                    "<span class=\"trial\">trial</span>"
                } else {
                    "<span class=\"confirmed\">confirmed</span>"
                },
                c.battery_mv / 1000,
                c.battery_mv % 1000 / 10
            );
        }
        None => out.push_str("<td class=\"version\">–</td><td class=\"battery\">–</td>"),
    }
    let _ = write!(
        out,
        "<td class=\"ota-state\" data-state=\"{state}\"><span class=\"state {state}\">{state}</span>"
    );
    if state == "downloading" {
        let dl = st.last_checkin.and_then(|(_, c)| c.download);
        let pct = dl
            .and_then(|(u, b)| {
                let size = *sizes.get(&ReleaseId::of_update(u))?;
                (size > 0).then(|| (u64::from(b) * 100 / size).min(100))
            })
            .unwrap_or(0);
        let _ = write!(
            out,
            " <progress max=\"100\" value=\"{pct}\" title=\"{}\">{pct} %</progress>",
            dl.map_or_else(|| "0 B".to_string(), |(_, b)| super::bytes(u64::from(b)))
        );
    }
    out.push_str("</td></tr>");
}

fn options(out: &mut String, all: &str, values: impl Iterator<Item = String>, chosen: &str) {
    let _ = write!(out, "<option value=\"\">{}</option>", esc(all));
    for v in values {
        let sel = if v == chosen { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{0}\"{sel}>{0}</option>", esc(&v));
    }
}

/// The live URL of the fleet page with filter `q`.
fn live_url(q: &FleetQuery) -> String {
    let pairs = [
        ("q", &q.q),
        ("group", &q.group),
        ("version", &q.version),
        ("state", &q.state),
    ];
    let query: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().filter(|s| !s.is_empty()).map(|v| (k, v)))
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect();
    if query.is_empty() {
        "/console/live/fleet".into()
    } else {
        format!("/console/live/fleet?{}", query.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

async fn fleet<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    q: Result<Query<FleetQuery>, QueryRejection>,
) -> Response {
    let Some(s) = session(&st, &headers) else {
        return to_login();
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let body = match render(&st, &q).await {
        Ok(b) => b,
        Err(e) => return super::store_failed(&s, e),
    };
    html_response(
        StatusCode::OK,
        page("Fleet", Nav::Fleet, &s, Some(&live_url(&q)), &body),
    )
}

/// The fleet page's `<main>`: filters and the table. Public for the figures
/// (`examples/console_report.rs`). Errors: the store's.
pub async fn render<S: Store>(st: &AdminState<S>, q: &FleetQuery) -> Result<String, StoreError> {
    let f = load(st, q).await?;
    let mut m = String::with_capacity(f.rows.len() + 4096);
    m.push_str(
        "<h1>Fleet</h1><form id=\"filters\" class=\"filters\" method=\"get\" action=\"/fleet\">\
         <input id=\"search\" name=\"q\" type=\"search\" placeholder=\"device id or tag\"",
    );
    let _ = write!(
        m,
        " value=\"{}\"><select id=\"filter-group\" name=\"group\">",
        esc(q.q.as_deref().unwrap_or(""))
    );
    options(
        &mut m,
        "all groups",
        f.groups.iter().cloned(),
        q.group.as_deref().unwrap_or(""),
    );
    m.push_str("</select><select id=\"filter-version\" name=\"version\">");
    options(
        &mut m,
        "all versions",
        f.versions.iter().cloned(),
        q.version.as_deref().unwrap_or(""),
    );
    m.push_str("</select><select id=\"filter-state\" name=\"state\">");
    options(
        &mut m,
        "all states",
        STATES.iter().map(|s| s.to_string()),
        q.state.as_deref().unwrap_or(""),
    );
    let _ = write!(
        m,
        "</select><button type=\"submit\" class=\"apply\">Filter</button></form>\
         <p class=\"counts\"><span id=\"device-count\" data-live=\"device-count\">{}</span> \
         shown of <span data-live=\"device-total\">{}</span> devices</p>\
         <table id=\"devices\"><thead><tr><th>Device</th><th>Product</th><th>Last check-in</th>\
         <th>Next wake</th><th>Version</th><th>Battery</th><th>OTA</th></tr></thead>\
         <tbody data-live=\"devices\">{}</tbody></table>",
        f.shown, f.total, f.rows
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CheckInReport, Device, DeviceStatus, ProductId};
    use cloud_proto::{DeviceId, FirmwareVersion};

    fn row(
        state: OtaState,
        result: UpdateResult,
        trial: bool,
        phase: Option<DevicePhase>,
    ) -> FleetRow {
        let report = CheckInReport {
            firmware: FirmwareVersion {
                major: 1,
                minor: 2,
                patch: 3,
            },
            trial,
            state,
            result,
            download: None,
            battery_mv: 3_700,
            forced_sleeps: 0,
        };
        FleetRow {
            device: Device {
                id: DeviceId(7),
                product: ProductId(1),
                tags: vec!["Pilot".into()],
                created_ms: 0,
            },
            status: DeviceStatus {
                last_checkin: Some((1, report)),
                state,
                result,
                ..DeviceStatus::default()
            },
            phase,
        }
    }

    #[test]
    fn states() {
        use DevicePhase as P;
        use OtaState as S;
        use UpdateResult as R;
        let cases = [
            (S::Idle, R::Initial, false, None, "idle"),
            (S::Idle, R::UpdateFailed, false, None, "failed"),
            (S::Idle, R::Initial, false, Some(P::Failed), "failed"),
            (S::Idle, R::Initial, false, Some(P::Offered), "offered"),
            (S::Idle, R::Deferred, false, Some(P::Deferred), "deferred"),
            (
                S::Downloading,
                R::Initial,
                false,
                Some(P::Downloading),
                "downloading",
            ),
            (
                S::Downloaded,
                R::Initial,
                false,
                Some(P::Downloaded),
                "downloaded",
            ),
            (
                S::Updating,
                R::Initial,
                false,
                Some(P::Updating),
                "installing",
            ),
            (S::Idle, R::Initial, true, Some(P::Updating), "trial"),
            (S::Idle, R::Success, false, Some(P::Succeeded), "confirmed"),
            // A failure reported before a later rollout succeeded is history.
            (
                S::Idle,
                R::UpdateFailed,
                false,
                Some(P::Succeeded),
                "confirmed",
            ),
        ];
        for (s, r, trial, phase, want) in cases {
            assert_eq!(
                ota_state_name(&row(s, r, trial, phase)),
                want,
                "{s:?} {r:?} {phase:?}"
            );
        }
    }

    /// A trial check-in, then a status reporting success: confirmed, not trial (the status
    /// is newer than the check-in's trial flag).
    #[test]
    fn a_status_success_after_a_trial_check_in_is_confirmed() {
        let mut r = row(
            OtaState::Idle,
            UpdateResult::Initial,
            true,
            Some(DevicePhase::Updating),
        );
        assert_eq!(ota_state_name(&r), "trial");
        r.phase = Some(DevicePhase::Succeeded);
        r.status.last_status = Some(cloud_proto::UpdateStatus {
            update: cloud_proto::UpdateId(1),
            state: OtaState::Idle,
            result: UpdateResult::Success,
        });
        r.status.result = UpdateResult::Success;
        assert!(!on_trial(&r.status));
        assert_eq!(ota_state_name(&r), "confirmed");
    }

    #[test]
    fn filters() {
        let r = row(OtaState::Idle, UpdateResult::Initial, false, None);
        let q = |q: &str, g: &str, v: &str, s: &str| FleetQuery {
            q: Some(q.into()),
            group: Some(g.into()),
            version: Some(v.into()),
            state: Some(s.into()),
        };
        assert!(matches(&r, &FleetQuery::default()));
        assert!(matches(&r, &q("", "", "", "")));
        assert!(matches(&r, &q("pil", "Pilot", "1.2.3", "idle")));
        assert!(matches(&r, &q("7", "", "", "")));
        assert!(!matches(&r, &q("8", "", "", "")));
        assert!(!matches(&r, &q("", "pilot", "", "")), "groups are exact");
        assert!(!matches(&r, &q("", "", "1.2.4", "")));
        assert!(!matches(&r, &q("", "", "", "failed")));
    }

    #[test]
    fn next_wake_from_the_goodbye_else_the_grant() {
        let r = row(OtaState::Idle, UpdateResult::Initial, false, None);
        let mut st = r.status;
        st.last_checkin = st.last_checkin.map(|(_, c)| (10_000, c));
        st.last_seen_ms = Some(12_000);
        st.next_wake_ms = Some(3_612_000);
        assert_eq!(next_wake(&st, 60).unwrap().0, 3_612_000);
        // A later wake without a goodbye: the old promise is past its last frame.
        st.last_checkin = st.last_checkin.map(|(_, c)| (4_000_000, c));
        st.last_seen_ms = Some(4_000_500);
        assert_eq!(next_wake(&st, 60).unwrap().0, 4_060_000);
        assert_eq!(next_wake(&DeviceStatus::default(), 60), None);
    }

    #[test]
    fn live_url_encodes() {
        let q = FleetQuery {
            q: Some("a b&c".into()),
            state: Some("idle".into()),
            ..FleetQuery::default()
        };
        assert_eq!(live_url(&q), "/console/live/fleet?q=a%20b%26c&state=idle");
        assert_eq!(live_url(&FleetQuery::default()), "/console/live/fleet");
    }
}
