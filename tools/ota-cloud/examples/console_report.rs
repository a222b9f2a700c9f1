//! The console's figures (README "Console"): seeds a SQLite store with a fleet (default 1,000
//! devices, each with a wake: check-in and goodbye committed through the store's frame
//! transaction, a mix of versions, trial images, downloads in progress and failures, tags, a
//! rollout), then measures, through the admin router in-process (no socket), one request
//! each after one warm-up:
//!
//! * the fleet page's weight: `GET /fleet` HTML + the CSS and JS it loads;
//! * its server time (store read + render) against the same data through the JSON API
//!   (`GET /api/v1/devices`), and the ratio;
//! * one live refresh of the fleet (`GET /console/live/fleet`), full and unchanged.
//!
//! Not a test: times depend on the machine. `scripts/console-report.sh` runs it in release
//! mode. `cargo run --release -p ota-cloud --example console_report -- [devices]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cloud_proto::{
    DeviceId, FirmwareVersion, LastFrame, OtaState, UpdateId, UpdateResult, TAG_LEN,
};
use ota_cloud::admin::{router, AdminState, AdminToken};
use ota_cloud::rollout::{NewRollout, Share, Target};
use ota_cloud::server::{Server, ServerConfig};
use ota_cloud::{
    CheckInReport, Effects, FrameCommit, MasterKey, NewDevice, NewProduct, Release, ReleaseBody,
    ReleaseDigest, RootKey, SqliteOptions, SqliteStore, Store,
};
use tower::ServiceExt as _;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000_000;

type Error = Box<dyn std::error::Error>;

fn record(counter: u32, at: u64) -> LastFrame {
    LastFrame {
        counter,
        tag: [counter as u8; TAG_LEN],
        accepted_at_ms: at,
        source: SocketAddr::from(([192, 0, 2, 1], 40_000)),
        answers: 1,
    }
}

async fn send(
    app: &axum::Router,
    path: &str,
    auth: (&str, String),
    body: Body,
) -> Result<(StatusCode, axum::http::HeaderMap, Vec<u8>, Duration), Error> {
    let req = Request::builder()
        .uri(path)
        .method(if path == "/login" { "POST" } else { "GET" })
        .header(auth.0, auth.1)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)?;
    let t = Instant::now();
    let resp = app.clone().oneshot(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    Ok((parts.status, parts.headers, bytes.to_vec(), t.elapsed()))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), Error> {
    let devices: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(devices))
}

async fn run(devices: u32) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("master.key");
    MasterKey::create(&key)?;
    let store = Arc::new(SqliteStore::open(
        &dir.path().join("ota.db"),
        MasterKey::load(&key)?,
        SqliteOptions::default(),
    )?);
    let product = store
        .add_product(NewProduct {
            name: "tracker".into(),
            hardware_id: [0x11; 16],
            release_keys: vec![],
        })
        .await?;
    let body = vec![0x5a; 180_000];
    let release = store
        .put_release(Release {
            digest: ReleaseDigest::of(&body),
            product,
            version: FirmwareVersion {
                major: 1,
                minor: 3,
                patch: 0,
            },
            security_counter: 3,
            hardware_id: [0x11; 16],
            size: body.len() as u64,
            body: ReleaseBody::Inline(body),
            created_ms: NOW - 86_400_000,
        })
        .await?;
    let rollout = store
        .add_rollout(NewRollout {
            release,
            target: Target::Product,
            share: Share::percent(10).ok_or("share")?,
            error_threshold: None,
            defer_until_ms: None,
            created_ms: NOW - 86_400_000,
        })
        .await?;
    let seeding = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..devices {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let tags = vec![format!("site-{}", i % 8), format!("batch-{}", i % 3)];
            let id = store
                .add_device(
                    NewDevice {
                        id: None,
                        product,
                        tags,
                        root_key: RootKey::generate()?,
                    },
                    NOW - 90 * 86_400_000,
                )
                .await?;
            let at = NOW - u64::from(i) * 37_000;
            let downloading = i % 7 == 0;
            let report = CheckInReport {
                firmware: FirmwareVersion {
                    major: 1,
                    minor: (i % 3) as u16,
                    patch: 0,
                },
                trial: i % 10 == 1,
                state: if downloading {
                    OtaState::Downloading
                } else {
                    OtaState::Idle
                },
                result: if i % 13 == 5 {
                    UpdateResult::UpdateFailed
                } else {
                    UpdateResult::Initial
                },
                download: downloading.then_some((UpdateId(release.0), (i * 997) % 180_000)),
                battery_mv: 3_300 + (i % 900) as u16,
                forced_sleeps: 0,
            };
            let checkin = Effects {
                checkin: Some(report),
                publishes: vec![(1, format!("temp={}", 18 + i % 9).into_bytes())],
                offer: downloading.then_some((rollout, release)),
                ..Effects::counters_only(at, 120, 60)
            };
            let goodbye = Effects {
                goodbye_sleep_s: Some(3_600),
                ..Effects::counters_only(at + 2_500, 30, 20)
            };
            let mut last = None;
            for (n, e) in [checkin, goodbye].into_iter().enumerate() {
                let rec = record(n as u32, e.now_ms);
                let won = store
                    .commit_frame(FrameCommit {
                        device: id,
                        expected: last,
                        record: rec,
                        effects: e,
                    })
                    .await?;
                if !won {
                    return Err(format!("device {}: commit lost", id.0).into());
                }
                last = Some(rec);
            }
            Ok::<DeviceId, Box<dyn std::error::Error + Send + Sync>>(id)
        }));
    }
    for t in tasks {
        t.await?.map_err(|e| e.to_string())?;
    }
    let seeded = seeding.elapsed();

    let server = Arc::new(Server::new(
        store.clone(),
        ServerConfig::default(),
        Arc::new(|| NOW),
    ));
    let state = AdminState::new(server, AdminToken::new(TOKEN)?, dir.path().join("releases"));
    let app = router(state);
    let bearer = ("authorization", format!("Bearer {TOKEN}"));
    let (s, h, _, _) = send(
        &app,
        "/login",
        ("x-none", String::new()),
        Body::from(format!("token={TOKEN}")),
    )
    .await?;
    if s != StatusCode::SEE_OTHER {
        return Err(format!("login: {s}").into());
    }
    let cookie = h
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("no session cookie")?
        .to_string();
    let session = ("cookie", cookie);

    // One warm-up of each, then one measured run.
    for _ in 0..2 {
        send(&app, "/fleet", session.clone(), Body::empty()).await?;
        send(&app, "/api/v1/devices", bearer.clone(), Body::empty()).await?;
        send(&app, "/console/live/fleet", session.clone(), Body::empty()).await?;
    }
    let (s1, _, html, t_page) = send(&app, "/fleet", session.clone(), Body::empty()).await?;
    let (s2, _, json, t_api) = send(&app, "/api/v1/devices", bearer.clone(), Body::empty()).await?;
    let (s3, _, live, t_live) =
        send(&app, "/console/live/fleet", session.clone(), Body::empty()).await?;
    let hash = serde_json::from_slice::<serde_json::Value>(&live)?["h"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (s4, _, same, t_same) = send(
        &app,
        &format!("/console/live/fleet?h={hash}"),
        session,
        Body::empty(),
    )
    .await?;
    for s in [s1, s2, s3, s4] {
        if s != StatusCode::OK {
            return Err(format!("a measured request answered {s}").into());
        }
    }
    let rows = String::from_utf8_lossy(&html)
        .matches("<tr data-device-id=")
        .count();
    if rows != devices as usize {
        return Err(format!("the fleet page shows {rows} rows, not {devices}").into());
    }
    let assets = ota_cloud::console::asset_bytes();
    println!(
        "console figures: {devices} devices (SQLite, seeded in {}), one run after a warm-up",
        ms(seeded)
    );
    println!(
        "fleet page weight:        {} bytes (HTML {} + CSS and JS {}; {:.0} bytes of HTML per device)",
        html.len() + assets,
        html.len(),
        assets,
        html.len() as f64 / f64::from(devices.max(1))
    );
    println!(
        "fleet page server time:   {} (GET /fleet: one fleet query + render)",
        ms(t_page)
    );
    println!(
        "same data, JSON API:      {} (GET /api/v1/devices: {} bytes, one status read per device)",
        ms(t_api),
        json.len()
    );
    println!(
        "ratio page / API:         {:.2}",
        t_page.as_secs_f64() / t_api.as_secs_f64().max(1e-9)
    );
    println!(
        "live refresh:             {} ({} bytes); unchanged: {} ({} bytes)",
        ms(t_live),
        live.len(),
        ms(t_same),
        same.len()
    );
    Ok(())
}
