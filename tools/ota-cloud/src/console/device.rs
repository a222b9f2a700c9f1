//! `/devices/{id}`: one device: what it reported, the timeline of its wakes
//! ([`Store::wakes`]), its latest publishes and its update history ([`Store::device_updates`]).

use std::fmt::Write as _;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use cloud_proto::DeviceId;

use super::time::{iso, relative, seconds};
use super::{
    bytes, charts, error_box, esc, html_response, lwm2m_result, lwm2m_state, page, session,
    to_login, version, Nav,
};
use crate::admin::AdminState;
use crate::rollout::DevicePhase;
use crate::store::{
    DeviceStatus, DeviceUpdate, FleetRow, PublishId, Store, StoreError, StoredPublish, Wake,
};

/// Wakes the page shows (newest first).
pub const WAKES_SHOWN: usize = 50;

/// Publishes the page shows (the newest).
pub const PUBLISHES_SHOWN: usize = 50;

pub(super) fn routes<S: Store>() -> Router<AdminState<S>> {
    Router::new().route("/devices/{id}", get(show::<S>))
}

/// A rollout phase's name, as the rollout pages and the API's progress name them.
pub(crate) fn phase_name(p: DevicePhase) -> &'static str {
    match p {
        DevicePhase::Offered => "offered",
        DevicePhase::Deferred => "deferred",
        DevicePhase::Downloading => "downloading",
        DevicePhase::Downloaded => "downloaded",
        DevicePhase::Updating => "updating",
        DevicePhase::Succeeded => "succeeded",
        DevicePhase::Failed => "failed",
        DevicePhase::Declined => "declined",
    }
}

/// The newest publishes of `device`, at most `n`, newest first. The store pages oldest first,
/// so this reads through the device's publishes. Cost: O(the device's publishes / 1,000)
/// store reads of its index.
async fn latest_publishes<S: Store>(
    st: &AdminState<S>,
    device: DeviceId,
    n: usize,
) -> Result<Vec<StoredPublish>, StoreError> {
    let mut after = PublishId::default();
    let mut keep: std::collections::VecDeque<StoredPublish> = std::collections::VecDeque::new();
    loop {
        let page =
            crate::events::page(st.store(), after, Some(device), crate::events::MAX_LIMIT).await?;
        let done = page.publishes.len() < crate::events::MAX_LIMIT;
        for p in page.publishes {
            if keep.len() == n {
                keep.pop_front();
            }
            keep.push_back(p);
        }
        if done || page.next_after == after {
            break;
        }
        after = page.next_after;
    }
    Ok(keep.into_iter().rev().collect())
}

/// A payload as text when it is printable UTF-8, else as hex.
fn payload(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(t) if !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            format!("<span class=\"text\">{}</span>", esc(t))
        }
        _ => format!("<code>{}</code>", hex::encode(data)),
    }
}

fn what_happened(w: &Wake) -> String {
    let mut parts = vec![format!(
        "checked in on {} ({}), battery {}.{:02} V, LwM2M {} / {}",
        version(w.report.firmware),
        if w.report.trial { "trial" } else { "confirmed" },
        w.report.battery_mv / 1000,
        w.report.battery_mv % 1000 / 10,
        lwm2m_state(w.report.state),
        lwm2m_result(w.report.result)
    )];
    if let Some((u, b)) = w.report.download {
        parts.push(format!("held {} of update {}", bytes(u64::from(b)), u.0));
    }
    if w.report.forced_sleeps > 0 {
        parts.push(format!(
            "{} forced sleep(s) since the last answered check-in",
            w.report.forced_sleeps
        ));
    }
    if w.publishes > 0 {
        parts.push(format!("{} publish(es)", w.publishes));
    }
    if let Some(r) = w.offered {
        parts.push(format!("offered release {}", r.0));
    }
    if (w.state, w.result) != (w.report.state, w.report.result) {
        parts.push(format!(
            "then LwM2M {} / {}",
            lwm2m_state(w.state),
            lwm2m_result(w.result)
        ));
    }
    parts.push(match w.sleep_s {
        Some(s) => format!("said goodbye: sleeps {s} s"),
        None => "no goodbye (cut short, or still awake)".into(),
    });
    parts.join("; ")
}

fn wakes_html(wakes: &[Wake], now: u64) -> String {
    if wakes.is_empty() {
        return "<p class=\"empty\">No wake recorded yet.</p>".into();
    }
    let mut out = String::new();
    // Oldest to newest, left to right.
    let awake: Vec<(String, u64)> = wakes
        .iter()
        .rev()
        .map(|w| {
            (
                format!("#{}", w.seq),
                w.last_ms - w.started_ms.min(w.last_ms),
            )
        })
        .collect();
    out.push_str(&charts::bars("Awake time per wake (ms)", &awake, 720, 120));
    out.push_str("<ol class=\"wakes\">");
    for w in wakes {
        let awake = w.last_ms.saturating_sub(w.started_ms);
        let _ = write!(
            out,
            "<li class=\"wake\" data-seq=\"{}\"><span class=\"when\" title=\"{}\">#{} · {}</span> · \
             <span class=\"awake\">awake {}</span> · <span class=\"up\">↑ {}</span> \
             <span class=\"down\">↓ {}</span> · <span class=\"frames\">{} frames</span><br>\
             <span class=\"what\">{}</span></li>",
            w.seq,
            iso(w.started_ms),
            w.seq,
            relative(w.started_ms, now),
            seconds(awake),
            bytes(w.bytes_up),
            bytes(w.bytes_down),
            w.frames,
            esc(&what_happened(w))
        );
    }
    out.push_str("</ol>");
    out
}

fn publishes_html(ps: &[StoredPublish], now: u64) -> String {
    if ps.is_empty() {
        return "<p class=\"empty\">No publish stored.</p>".into();
    }
    let mut out = String::from(
        "<table><thead><tr><th>Id</th><th>Received</th><th>Topic</th><th>Counter</th>\
         <th>Data</th></tr></thead><tbody>",
    );
    for p in ps {
        let _ = write!(
            out,
            "<tr class=\"publish\" data-publish-id=\"{}\"><td>{}</td><td title=\"{}\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            p.id.0,
            p.id.0,
            iso(p.received_ms),
            relative(p.received_ms, now),
            p.topic,
            p.counter,
            payload(&p.data)
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn updates_html(us: &[DeviceUpdate], now: u64) -> String {
    if us.is_empty() {
        return "<p class=\"empty\">No rollout has offered this device anything.</p>".into();
    }
    let mut out = String::from(
        "<table><thead><tr><th>Rollout</th><th>Release</th><th>Version</th><th>Phase</th>\
         <th>LwM2M result</th><th>Offered</th><th>Last change</th></tr></thead><tbody>",
    );
    for u in us {
        let _ = write!(
            out,
            "<tr class=\"update\" data-rollout-id=\"{r}\" data-phase=\"{ph}\">\
             <td><a href=\"/rollouts/{r}\">rollout {r}</a></td><td>{}</td><td>{}</td>\
             <td class=\"phase\"><span class=\"state {ph}\">{ph}</span></td>\
             <td class=\"result\">{}</td><td title=\"{}\">{}</td><td title=\"{}\">{}</td></tr>",
            u.release.0,
            version(u.version),
            u.result.map_or_else(|| "–".to_string(), lwm2m_result),
            iso(u.offered_ms),
            relative(u.offered_ms, now),
            iso(u.updated_ms),
            relative(u.updated_ms, now),
            r = u.rollout.0,
            ph = phase_name(u.phase),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn card(out: &mut String, k: &str, v: &str, title: Option<&str>) {
    let t = title
        .map(|t| format!(" title=\"{}\"", esc(t)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<div class=\"card\"><span class=\"k\">{}</span><span class=\"v\"{t}>{v}</span></div>",
        esc(k)
    );
}

fn summary_html(row: &FleetRow, now: u64, granted_s: u32) -> String {
    let s: &DeviceStatus = &row.status;
    let mut out = String::from("<div class=\"cards\">");
    let state = super::ota_state_name(row);
    card(
        &mut out,
        "OTA state",
        &format!("<span class=\"state {state}\" data-state=\"{state}\">{state}</span>"),
        None,
    );
    card(
        &mut out,
        "LwM2M",
        &format!(
            "{} / {}",
            lwm2m_state(s.state),
            esc(&lwm2m_result(s.result))
        ),
        None,
    );
    match s.last_checkin {
        Some((at, c)) => {
            card(
                &mut out,
                "Version",
                &format!(
                    "{} {}",
                    version(c.firmware),
                    if super::fleet::on_trial(s) {
                        "<span class=\"trial\">trial</span>"
                    } else {
                        "<span class=\"confirmed\">confirmed</span>"
                    }
                ),
                None,
            );
            card(
                &mut out,
                "Battery",
                &format!("{}.{:03} V", c.battery_mv / 1000, c.battery_mv % 1000),
                None,
            );
            card(
                &mut out,
                "Last check-in",
                &relative(at, now),
                Some(&iso(at)),
            );
        }
        None => card(&mut out, "Last check-in", "never", None),
    }
    if let Some(t) = s.last_seen_ms {
        card(&mut out, "Last frame", &relative(t, now), Some(&iso(t)));
    }
    match super::fleet::next_wake(s, granted_s) {
        Some((t, from)) => card(
            &mut out,
            "Next wake",
            &relative(t, now),
            Some(&format!("{} ({from})", iso(t))),
        ),
        None => card(&mut out, "Next wake", "–", None),
    }
    card(&mut out, "Wakes", &s.wakes.to_string(), None);
    card(&mut out, "Awake in all", &seconds(s.awake_ms), None);
    card(
        &mut out,
        "Traffic",
        &format!("↑ {} ↓ {}", bytes(s.bytes_up), bytes(s.bytes_down)),
        None,
    );
    card(&mut out, "Publishes", &s.publishes.to_string(), None);
    card(
        &mut out,
        "Forced sleeps",
        &s.forced_sleeps.to_string(),
        None,
    );
    let tags: Vec<String> = row
        .device
        .tags
        .iter()
        .map(|t| format!("<span class=\"tag\">{}</span>", esc(t)))
        .collect();
    card(
        &mut out,
        "Groups",
        &if tags.is_empty() {
            "–".to_string()
        } else {
            tags.join(" ")
        },
        None,
    );
    card(
        &mut out,
        "Provisioned",
        &relative(row.device.created_ms, now),
        Some(&iso(row.device.created_ms)),
    );
    out.push_str("</div>");
    out
}

/// The device page's live regions (`device-summary`, `wakes`, `publishes`, `updates`), or
/// `None` for an unknown device or an id that is not a number. Cost: four store reads plus
/// the publishes' (see [`latest_publishes`]).
pub(crate) async fn regions<S: Store>(
    st: &AdminState<S>,
    id: &str,
) -> Result<Option<Vec<(&'static str, String)>>, StoreError> {
    let Ok(id) = id.parse::<u32>() else {
        return Ok(None);
    };
    let id = DeviceId(id);
    let store = st.store();
    let Some(device) = store.device(id).await? else {
        return Ok(None);
    };
    let status = store.status(id).await?.unwrap_or_default();
    let updates = store.device_updates(id).await?;
    let wakes = store.wakes(id, WAKES_SHOWN).await?;
    let publishes = latest_publishes(st, id, PUBLISHES_SHOWN).await?;
    let phase = updates.iter().max_by_key(|u| u.updated_ms).map(|u| u.phase);
    let now = st.now_ms();
    let row = FleetRow {
        device,
        status,
        phase,
    };
    Ok(Some(vec![
        (
            "device-summary",
            summary_html(&row, now, st.server().config().next_checkin_s),
        ),
        ("wakes", wakes_html(&wakes, now)),
        ("publishes", publishes_html(&publishes, now)),
        ("updates", updates_html(&updates, now)),
    ]))
}

async fn show<S: Store>(
    State(st): State<AdminState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(s) = session(&st, &headers) else {
        return to_login();
    };
    let id = id.map(|Path(id)| id).unwrap_or_default();
    let regions = match regions(&st, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html_response(
                StatusCode::NOT_FOUND,
                page(
                    "No such device",
                    Nav::Fleet,
                    &s,
                    None,
                    &format!(
                        "<h1>No such device</h1>{}",
                        error_box("not-found", &format!("no device {id}"))
                    ),
                ),
            )
        }
        Err(e) => return super::store_failed(&s, e),
    };
    let region = |k: &str| {
        regions
            .iter()
            .find(|(n, _)| *n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let main = format!(
        "<h1>Device {id}</h1><section id=\"device-summary\" data-live=\"device-summary\">{}</section>\
         <h2>Wakes <small>(newest first, the last {WAKES_SHOWN}; the server keeps {})</small></h2>\
         <section id=\"wakes\" data-live=\"wakes\">{}</section>\
         <h2>Publishes <small>(the newest {PUBLISHES_SHOWN})</small></h2>\
         <section id=\"publishes\" data-live=\"publishes\">{}</section>\
         <h2>Update history</h2><section id=\"updates\" data-live=\"updates\">{}</section>",
        region("device-summary"),
        crate::store::WAKES_KEPT + 1,
        region("wakes"),
        region("publishes"),
        region("updates"),
        id = esc(&id),
    );
    let live = format!("/console/live/devices/{id}");
    html_response(
        StatusCode::OK,
        page(&format!("Device {id}"), Nav::Fleet, &s, Some(&live), &main),
    )
}
