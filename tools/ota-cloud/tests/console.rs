//! The web console without a browser (the real-browser tests are `tests/browser*.rs`): the
//! admin router driven in-process (`tower::ServiceExt::oneshot`), devices talking to the
//! server through real sealed frames. Login and the cookie's attributes, a wrong token, the
//! CSRF refusals (nothing changed), the JSON API with the session cookie and without,
//! escaping of hostile tags and publishes, every page on a seeded store, the tampered upload
//! refused with nothing stored, the rollout forms and the automatic pause shown with its cause.

mod common;
mod fixture;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use cloud_proto::{OtaState, Publish, Up, UpdateId, UpdateResult, UpdateStatus};
use common::*;
use fixture::*;
use ota_cloud::metrics::StoreMetrics;
use ota_cloud::{NewDevice, RootKey, Store};
use serde_json::Value;
use tower::ServiceExt as _;

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fx::new().await).await;
            }
        )*}
        mod postgres {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fx) = super::Fx::postgres().await else { return };
                super::$name(fx).await;
            }
        )*}
    };
}

on_both_stores!(
    login_sets_a_strict_http_only_session_cookie,
    wrong_token_is_refused_and_pages_need_a_session,
    posts_without_the_csrf_token_are_refused_and_change_nothing,
    api_accepts_the_cookie_with_csrf_and_nothing_without,
    hostile_tags_and_publishes_are_escaped,
    every_page_renders_a_seeded_fleet,
    tampered_upload_is_refused_and_nothing_is_stored,
    rollout_forms_start_raise_pause_resume_cancel,
    automatic_pause_is_shown_with_its_cause,
    live_regions_refresh_and_skip_unchanged,
);

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }
}

/// One request to the admin router with an optional session cookie and extra headers.
async fn req<S: Store>(
    fx: &Fx<S>,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let mut r = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, format!("ota_session={c}"));
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = fx
        .app
        .clone()
        .oneshot(r.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get<S: Store>(fx: &Fx<S>, path: &str, cookie: Option<&str>) -> Resp {
    req(fx, Method::GET, path, cookie, &[], vec![]).await
}

/// A form `POST` (urlencoded).
async fn post<S: Store>(
    fx: &Fx<S>,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> Resp {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    req(
        fx,
        Method::POST,
        path,
        cookie,
        &[("content-type", "application/x-www-form-urlencoded")],
        body.join("&").into_bytes(),
    )
    .await
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_string()
}

/// Logs in; the session cookie's value and the session's CSRF token.
async fn login<S: Store>(fx: &Fx<S>) -> (String, String) {
    let r = post(fx, "/login", None, &[("token", TOKEN)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    let value = set
        .strip_prefix("ota_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = get(fx, "/fleet", Some(&value)).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&page.body);
    (value, csrf)
}

/// A multipart body with `fields` and the file `container`.
fn multipart(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let b = "----otaBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"container\"; filename=\"fw.ota\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

async fn upload<S: Store>(fx: &Fx<S>, cookie: &str, csrf: &str, file: &[u8]) -> Resp {
    let (ct, body) = multipart(&[("csrf", csrf), ("product", "1")], file);
    req(
        fx,
        Method::POST,
        "/releases",
        Some(cookie),
        &[("content-type", &ct)],
        body,
    )
    .await
}

/// One wake of `dev`: a check-in (with `publishes`), then a goodbye.
async fn wake<S: Store + StoreMetrics>(fx: &Fx<S>, dev: &mut Device, msg: Up<'_>) {
    let mut ep = dev.wake();
    let _ = fx.send(dev, &mut ep, &msg).await.unwrap();
    fx.advance(1_500);
    let _ = fx
        .send(
            dev,
            &mut ep,
            &Up::Goodbye(cloud_proto::Goodbye { sleep_s: 3_600 }),
        )
        .await
        .unwrap();
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

async fn login_sets_a_strict_http_only_session_cookie<S: Store + StoreMetrics>(fx: Fx<S>) {
    let r = get(&fx, "/", None).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/login"));
    let page = get(&fx, "/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    for id in [
        "<form id=\"login-form\"",
        "id=\"token\" name=\"token\"",
        "<button id=\"login-submit\"",
    ] {
        assert!(page.body.contains(id), "{id}");
    }
    assert!(page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let r = post(&fx, "/login", None, &[("token", TOKEN)]).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/fleet"));
    let set = r.headers[header::SET_COOKIE].to_str().unwrap();
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    let value = attrs[0].strip_prefix("ota_session=").unwrap();
    assert_eq!(value.len(), 64);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    for a in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&a), "{set} lacks {a}");
    }
    // Two logins: two different sessions.
    let (other, _) = login(&fx).await;
    assert_ne!(other, value);
    let r = get(&fx, "/", Some(value)).await;
    assert_eq!(r.location(), "/fleet");
    let fleet = get(&fx, "/fleet", Some(value)).await;
    assert_eq!(fleet.status, StatusCode::OK);
    for id in [
        "<nav id=\"nav\"",
        "id=\"nav-fleet\"",
        "id=\"nav-releases\"",
        "id=\"nav-rollouts\"",
        "<button id=\"logout\"",
        "<table id=\"devices\"",
        "id=\"device-count\"",
        "id=\"search\"",
        "id=\"filter-group\"",
        "id=\"filter-version\"",
        "id=\"filter-state\"",
    ] {
        assert!(fleet.body.contains(id), "{id}");
    }
    // The login page with a session goes to the fleet.
    assert_eq!(get(&fx, "/login", Some(value)).await.location(), "/fleet");
}

async fn wrong_token_is_refused_and_pages_need_a_session<S: Store + StoreMetrics>(fx: Fx<S>) {
    let almost = format!("{}0", &TOKEN[..63]);
    for wrong in ["wrong", almost.as_str(), ""] {
        let r = post(&fx, "/login", None, &[("token", wrong)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(r.headers.get(header::SET_COOKIE).is_none());
        assert!(r.body.contains("id=\"login-error\""));
        assert!(r.body.contains("wrong token"));
    }
    let forged = "ab".repeat(32);
    for path in [
        "/fleet",
        "/devices/1",
        "/releases",
        "/rollouts",
        "/rollouts/1",
    ] {
        for cookie in [None, Some(forged.as_str())] {
            let r = get(&fx, path, cookie).await;
            assert_eq!(
                (r.status, r.location()),
                (StatusCode::SEE_OTHER, "/login"),
                "{path}"
            );
        }
    }
    let r = get(&fx, "/console/live/fleet", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The assets need none (the login page uses them).
    assert_eq!(
        get(&fx, "/console/assets/console.css", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&fx, "/console/assets/console.js", None).await.status,
        StatusCode::OK
    );
}

async fn posts_without_the_csrf_token_are_refused_and_change_nothing<S: Store + StoreMetrics>(
    fx: Fx<S>,
) {
    let (cookie, csrf) = login(&fx).await;
    let (_, other_csrf) = login(&fx).await;
    let c = container(&fx.signer, HW, (2, 0, 0), &image(2_000, 1));
    let before = fx.snapshot().await;
    // Uploads and rollout forms: no token, another session's token, no session at all.
    for token in [None, Some(other_csrf.as_str()), Some("")] {
        let mut fields = vec![("product", "1")];
        if let Some(t) = token {
            fields.push(("csrf", t));
        }
        let (ct, body) = multipart(&fields, &c);
        let r = req(
            &fx,
            Method::POST,
            "/releases",
            Some(&cookie),
            &[("content-type", &ct)],
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "upload with {token:?}");
        let mut fields = vec![
            ("release", "1"),
            ("target_kind", "product"),
            ("percent", "10"),
        ];
        if let Some(t) = token {
            fields.push(("csrf", t));
        }
        let r = post(&fx, "/rollouts", Some(&cookie), &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "start with {token:?}");
        for action in ["pause", "resume", "cancel", "percent"] {
            let r = post(
                &fx,
                &format!("/rollouts/1/{action}"),
                Some(&cookie),
                &fields,
            )
            .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{action} with {token:?}");
        }
    }
    let r = upload(&fx, "0".repeat(64).as_str(), &csrf, &c).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a token without its session"
    );
    assert_eq!(
        fx.snapshot().await,
        before,
        "a refused POST changed something"
    );
    // Logout needs the token too; with it the session is gone.
    let r = post(&fx, "/logout", Some(&cookie), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&fx, "/fleet", Some(&cookie)).await.status,
        StatusCode::OK
    );
    let r = post(&fx, "/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/login"));
    assert!(r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(get(&fx, "/fleet", Some(&cookie)).await.location(), "/login");
    // With the token the same upload goes through (the refusals above were the token's).
    let (cookie, csrf) = login(&fx).await;
    assert_eq!(
        upload(&fx, &cookie, &csrf, &c).await.status,
        StatusCode::CREATED
    );
}

async fn api_accepts_the_cookie_with_csrf_and_nothing_without<S: Store + StoreMetrics>(fx: Fx<S>) {
    let (cookie, csrf) = login(&fx).await;
    let r = get(&fx, "/api/v1/products", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["products"][0]["name"], "tracker");
    let body = br#"{"product":1,"tags":["x"]}"#.to_vec();
    let json = ("content-type", "application/json");
    let before = fx.snapshot().await;
    // Without anything: 401; with the cookie but no or a wrong CSRF header: 403.
    for (cookie, extra, status) in [
        (None, None, StatusCode::UNAUTHORIZED),
        (Some("f".repeat(64)), None, StatusCode::UNAUTHORIZED),
        (Some(cookie.clone()), None, StatusCode::FORBIDDEN),
        (
            Some(cookie.clone()),
            Some("0".repeat(64)),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let mut h = vec![json];
        if let Some(t) = &extra {
            h.push(("x-csrf-token", t));
        }
        let r = req(
            &fx,
            Method::POST,
            "/api/v1/devices",
            cookie.as_deref(),
            &h,
            body.clone(),
        )
        .await;
        assert_eq!(r.status, status, "{cookie:?} {extra:?}: {}", r.body);
        assert!(r.body.contains("\"error\""));
    }
    let r = get(&fx, "/api/v1/devices", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.snapshot().await, before, "nothing changed");
    let r = req(
        &fx,
        Method::POST,
        "/api/v1/devices",
        Some(&cookie),
        &[json, ("x-csrf-token", &csrf)],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // The bearer token still works alone, and a wrong one is refused even with a cookie.
    let (s, _) = fx.api(Method::GET, "/api/v1/devices", None).await;
    assert_eq!(s, StatusCode::OK);
    let r = req(
        &fx,
        Method::GET,
        "/api/v1/devices",
        Some(&cookie),
        &[("authorization", "Bearer wrong")],
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn hostile_tags_and_publishes_are_escaped<S: Store + StoreMetrics>(fx: Fx<S>) {
    let evil_tag = "<script>alert('tag')</script>\"onmouseover=\"x";
    let id = fx
        .store
        .add_device(
            NewDevice {
                id: None,
                product: fx.product,
                tags: vec![evil_tag.into()],
                root_key: RootKey::from_bytes([7; 32]),
            },
            T0,
        )
        .await
        .unwrap();
    let mut dev = Device::new(id, [7; 32]);
    let evil_pub: &[u8] = b"<img src=x onerror=alert(1)>";
    let mut msg = checkin(fw(1, 0, 0), None);
    if let Up::CheckIn(c) = &mut msg {
        c.publishes
            .push(Publish {
                topic: 3,
                data: evil_pub,
            })
            .unwrap();
    }
    wake(&fx, &mut dev, msg).await;
    let (cookie, _) = login(&fx).await;
    for path in [
        "/fleet".to_string(),
        format!("/fleet?q={}", enc(evil_tag)),
        format!("/devices/{}", id.0),
        format!("/console/live/devices/{}", id.0),
        "/console/live/fleet".to_string(),
    ] {
        let r = get(&fx, &path, Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        for raw in ["<script>alert", "<img src=x", "\"onmouseover"] {
            assert!(!r.body.contains(raw), "{path} carries {raw} unescaped");
        }
    }
    let page = get(&fx, &format!("/devices/{}", id.0), Some(&cookie))
        .await
        .body;
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the publish, escaped"
    );
    assert!(
        page.contains("&lt;script&gt;alert(&#39;tag&#39;)"),
        "the tag, escaped"
    );
}

async fn every_page_renders_a_seeded_fleet<S: Store + StoreMetrics>(fx: Fx<S>) {
    let (cookie, csrf) = login(&fx).await;
    let mut devs = Vec::new();
    for seed in 1..=5u8 {
        devs.push(fx.device(seed).await);
    }
    for d in devs.iter_mut() {
        let mut msg = checkin(fw(1, 0, 0), None);
        if let Up::CheckIn(c) = &mut msg {
            c.publishes
                .push(Publish {
                    topic: 1,
                    data: b"temp=21",
                })
                .unwrap();
        }
        wake(&fx, d, msg).await;
    }
    let c = container(&fx.signer, HW, (2, 0, 0), &image(4_000, 3));
    let r = upload(&fx, &cookie, &csrf, &c).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body.contains("id=\"upload-result\""));
    let r = post(
        &fx,
        "/rollouts",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("release", "1"),
            ("target_kind", "product"),
            ("percent", "100"),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/rollouts/1"),
        "{}",
        r.body
    );
    // Device 0 takes the offer and reports a download in progress; device 1 fails.
    fx.advance(3_600_000);
    let (d0, rest) = devs.split_first_mut().unwrap();
    let mut ep = d0.wake();
    let _ = fx
        .send(d0, &mut ep, &checkin(fw(1, 0, 0), None))
        .await
        .unwrap();
    let _ = fx
        .send(
            d0,
            &mut ep,
            &checkin(fw(1, 0, 0), Some((UpdateId(1), 1_000))),
        )
        .await
        .unwrap();
    let d1 = &mut rest[0];
    let mut ep = d1.wake();
    let _ = fx
        .send(d1, &mut ep, &checkin(fw(1, 0, 0), None))
        .await
        .unwrap();
    let _ = fx
        .send(
            d1,
            &mut ep,
            &Up::UpdateStatus(UpdateStatus {
                update: UpdateId(1),
                state: OtaState::Idle,
                result: UpdateResult::IntegrityFailure,
            }),
        )
        .await
        .unwrap();

    let fleet = get(&fx, "/fleet", Some(&cookie)).await.body;
    assert_eq!(count(&fleet, "<tr data-device-id="), 5);
    assert!(fleet.contains("<span id=\"device-count\" data-live=\"device-count\">5</span>"));
    assert_eq!(count(&fleet, "class=\"last-seen\" title=\""), 5);
    assert!(fleet.contains("1 h ago"), "the wakes were an hour ago");
    assert_eq!(
        count(&fleet, "<span class=\"confirmed\">confirmed</span>"),
        5
    );
    assert!(fleet.contains("3.70 V"));
    let row = |id: u32| {
        let at = fleet.find(&format!("<tr data-device-id=\"{id}\"")).unwrap();
        let end = at + fleet[at..].find("</tr>").unwrap();
        fleet[at..end].to_string()
    };
    let r0 = row(d0.id.0);
    assert!(
        r0.contains("<td class=\"ota-state\" data-state=\"downloading\">"),
        "{r0}"
    );
    assert!(r0.contains("<progress max=\"100\" value=\""), "{r0}");
    let r1 = row(d1.id.0);
    assert!(r1.contains("class=\"failed\""), "{r1}");
    assert!(r1.contains("data-state=\"failed\""), "{r1}");
    assert!(row(devs[2].id.0).contains("data-state=\"idle\""));
    // Filters on the server: state, version, search.
    let f = get(&fx, "/fleet?state=failed", Some(&cookie)).await.body;
    assert_eq!(count(&f, "<tr data-device-id="), 1);
    let f = get(&fx, "/fleet?version=9.9.9", Some(&cookie)).await.body;
    assert_eq!(count(&f, "<tr data-device-id="), 0);
    let f = get(&fx, &format!("/fleet?q={}", devs[4].id.0), Some(&cookie))
        .await
        .body;
    assert!(count(&f, "<tr data-device-id=") >= 1);

    let dev = get(&fx, &format!("/devices/{}", devs[1].id.0), Some(&cookie)).await;
    assert_eq!(dev.status, StatusCode::OK);
    for id in [
        "id=\"device-summary\"",
        "id=\"wakes\"",
        "id=\"publishes\"",
        "id=\"updates\"",
    ] {
        assert!(dev.body.contains(id), "{id}");
    }
    assert_eq!(count(&dev.body, "<li class=\"wake\""), 2, "two wakes");
    assert!(
        dev.body.contains("awake 1.500 s"),
        "the first wake: check-in to goodbye"
    );
    assert!(dev.body.contains("sleeps 3600 s"));
    assert!(dev.body.contains("offered release 1"));
    assert_eq!(count(&dev.body, "<tr class=\"publish\""), 1);
    assert!(dev.body.contains("temp=21"));
    assert_eq!(count(&dev.body, "<tr class=\"update\""), 1);
    assert!(
        dev.body.contains("5 integrity check failed"),
        "the LwM2M result"
    );
    assert_eq!(
        get(&fx, "/devices/999", Some(&cookie)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&fx, "/devices/x", Some(&cookie)).await.status,
        StatusCode::NOT_FOUND
    );

    let rel = get(&fx, "/releases", Some(&cookie)).await.body;
    assert!(rel.contains("<tr data-release-id=\"1\">"));
    assert!(rel.contains("<form id=\"upload-form\""));
    assert!(rel.contains("id=\"upload-file\" type=\"file\" name=\"container\""));
    let ro = get(&fx, "/rollouts", Some(&cookie)).await.body;
    assert!(ro.contains("<tr data-rollout-id=\"1\""));
    for id in [
        "rollout-form",
        "rollout-release",
        "rollout-target-kind",
        "rollout-target",
        "rollout-percent",
        "rollout-submit",
    ] {
        assert!(ro.contains(&format!("id=\"{id}\"")), "{id}");
    }
    let one = get(&fx, "/rollouts/1", Some(&cookie)).await.body;
    assert!(one.contains("id=\"rollout-state\" class=\"state running\">running<"));
    assert!(
        one.contains("<li data-state=\"downloading\"><span class=\"count\">1</span>"),
        "{one}"
    );
    assert!(one.contains("<li data-state=\"failed\"><span class=\"count\">1</span>"));
    assert!(one.contains("<div id=\"adoption-chart\" data-live=\"adoption-chart\"><svg"));
    for id in [
        "rollout-pause",
        "rollout-resume",
        "rollout-cancel",
        "rollout-raise",
        "rollout-raise-percent",
        "rollout-raise-submit",
    ] {
        assert!(one.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(!one.contains("id=\"rollout-auto-pause\""));
    assert_eq!(
        get(&fx, "/rollouts/9", Some(&cookie)).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn tampered_upload_is_refused_and_nothing_is_stored<S: Store + StoreMetrics>(fx: Fx<S>) {
    let (cookie, csrf) = login(&fx).await;
    let good = container(&fx.signer, HW, (2, 0, 0), &image(3_000, 1));
    let mut tampered = good.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 0x80;
    let foreign = container(&signer(), HW, (2, 0, 0), &image(100, 2));
    let before = fx.snapshot().await;
    for (file, says) in [
        (&tampered, "container refused"),
        (&foreign, "container refused"),
        (&b"not a container".to_vec(), "not a valid update container"),
    ] {
        let r = upload(&fx, &cookie, &csrf, file).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{says}");
        let at = r
            .body
            .find("id=\"upload-error\"")
            .expect("the refusal is shown");
        let shown = &r.body[at..at + r.body[at..].find("</p>").unwrap()];
        assert!(shown.contains("fw.ota was not stored"), "{shown}");
        assert!(shown.contains(says), "{shown}");
        assert!(!r.body.contains("<tr data-release-id"));
    }
    assert_eq!(
        fx.snapshot().await,
        before,
        "nothing stored, no file written"
    );
    let r = upload(&fx, &cookie, &csrf, &good).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body.contains("stored as release 1 (version 2.0.0"));
    let r = upload(&fx, &cookie, &csrf, &good).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the same container twice");
}

async fn rollout_forms_start_raise_pause_resume_cancel<S: Store + StoreMetrics>(fx: Fx<S>) {
    let (cookie, csrf) = login(&fx).await;
    let c = container(&fx.signer, HW, (2, 0, 0), &image(2_000, 1));
    assert_eq!(
        upload(&fx, &cookie, &csrf, &c).await.status,
        StatusCode::CREATED
    );
    let start = |fields: Vec<(&'static str, &'static str)>| {
        let (fx, cookie, csrf) = (&fx, cookie.clone(), csrf.clone());
        async move {
            let mut f: Vec<(&str, &str)> = vec![("csrf", &csrf)];
            f.extend(fields);
            post(fx, "/rollouts", Some(&cookie), &f).await
        }
    };
    // Refusals are shown on the page, nothing is started.
    for (fields, status, says) in [
        (
            vec![
                ("release", "1"),
                ("target_kind", "product"),
                ("percent", "101"),
            ],
            422,
            "not a percentage",
        ),
        (
            vec![("release", "1"), ("target_kind", "group"), ("target", "")],
            422,
            "needs a group tag",
        ),
        (
            vec![("release", "7"), ("target_kind", "product")],
            404,
            "unknown release 7",
        ),
        (
            vec![
                ("release", "1"),
                ("target_kind", "device"),
                ("target", "99"),
            ],
            404,
            "unknown device 99",
        ),
    ] {
        let r = start(fields).await;
        assert_eq!(r.status.as_u16(), status, "{says}: {}", r.body);
        assert!(r.body.contains("id=\"rollout-error\""), "{says}");
        assert!(r.body.contains(says), "{says}");
    }
    assert!(fx.store.rollouts(None).await.unwrap().is_empty());
    let r = start(vec![
        ("release", "1"),
        ("target_kind", "group"),
        ("target", "pilot"),
        ("percent", "10"),
    ])
    .await;
    assert_eq!(r.location(), "/rollouts/1");
    let state = || async {
        let page = get(&fx, "/rollouts/1", Some(&cookie)).await.body;
        let at = page.find("id=\"rollout-state\"").unwrap();
        let from = at + page[at..].find('>').unwrap() + 1;
        let to = from + page[from..].find('<').unwrap();
        (page[from..to].to_string(), page)
    };
    assert_eq!(state().await.0, "running");
    let act = |a: &'static str, extra: Option<&'static str>| {
        let (fx, cookie, csrf) = (&fx, cookie.clone(), csrf.clone());
        async move {
            let mut f: Vec<(&str, &str)> = vec![("csrf", &csrf)];
            if let Some(p) = extra {
                f.push(("percent", p));
            }
            post(fx, &format!("/rollouts/1/{a}"), Some(&cookie), &f).await
        }
    };
    assert_eq!(act("percent", Some("50")).await.location(), "/rollouts/1");
    let (_, page) = state().await;
    assert!(page.contains("<span id=\"rollout-share\">50%</span>"));
    let r = act("percent", Some("20")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("can only be raised"));
    assert_eq!(act("pause", None).await.location(), "/rollouts/1");
    let (s, page) = state().await;
    assert_eq!(s, "paused");
    assert!(page.contains("<button id=\"rollout-pause\" type=\"submit\" disabled>"));
    let r = act("pause", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "pausing a paused rollout");
    assert!(r.body.contains("cannot pause"));
    assert_eq!(act("resume", None).await.location(), "/rollouts/1");
    assert_eq!(state().await.0, "running");
    assert_eq!(act("cancel", None).await.location(), "/rollouts/1");
    assert_eq!(state().await.0, "cancelled");
    assert_eq!(act("resume", None).await.status, StatusCode::CONFLICT);
    let list = get(&fx, "/rollouts", Some(&cookie)).await.body;
    assert!(list.contains("<tr data-rollout-id=\"1\" data-state=\"cancelled\">"));
}

async fn automatic_pause_is_shown_with_its_cause<S: Store + StoreMetrics>(fx: Fx<S>) {
    let (cookie, csrf) = login(&fx).await;
    let c = container(&fx.signer, HW, (2, 0, 0), &image(2_000, 1));
    assert_eq!(
        upload(&fx, &cookie, &csrf, &c).await.status,
        StatusCode::CREATED
    );
    let mut devs = Vec::new();
    for seed in 1..=2u8 {
        devs.push(fx.device(seed).await);
    }
    let r = post(
        &fx,
        "/rollouts",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("release", "1"),
            ("target_kind", "product"),
            ("percent", "100"),
            ("threshold", "40"),
            ("min_finished", "2"),
        ],
    )
    .await;
    assert_eq!(r.location(), "/rollouts/1", "{}", r.body);
    for d in devs.iter_mut() {
        let mut ep = d.wake();
        let _ = fx
            .send(d, &mut ep, &checkin(fw(1, 0, 0), None))
            .await
            .unwrap();
        let _ = fx
            .send(
                d,
                &mut ep,
                &Up::UpdateStatus(UpdateStatus {
                    update: UpdateId(1),
                    state: OtaState::Idle,
                    result: UpdateResult::UpdateFailed,
                }),
            )
            .await
            .unwrap();
    }
    let page = get(&fx, "/rollouts/1", Some(&cookie)).await.body;
    assert!(page.contains(">auto-paused<"), "{page}");
    let at = page
        .find("id=\"rollout-auto-pause\"")
        .expect("the cause is shown");
    let cause = &page[at..at + page[at..].find("</p>").unwrap()];
    assert!(cause.contains("2 of the 2 devices"), "{cause}");
    assert!(cause.contains("above 40%"), "{cause}");
    let list = get(&fx, "/rollouts", Some(&cookie)).await.body;
    assert!(list.contains("data-state=\"auto-paused\""));
}

async fn live_regions_refresh_and_skip_unchanged<S: Store + StoreMetrics>(fx: Fx<S>) {
    let (cookie, _) = login(&fx).await;
    let mut d = fx.device(1).await;
    let r = get(&fx, "/console/live/fleet", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["regions"]["device-count"], "1");
    assert!(v["regions"]["devices"]
        .as_str()
        .unwrap()
        .contains("data-state=\"idle\""));
    let h = v["h"].as_str().unwrap().to_string();
    let again = get(&fx, &format!("/console/live/fleet?h={h}"), Some(&cookie)).await;
    let v: Value = serde_json::from_str(&again.body).unwrap();
    assert_eq!(v["unchanged"], true);
    assert!(v.get("regions").is_none());
    // A check-in changes the numbers: the same hash now gets the new regions.
    wake(&fx, &mut d, checkin(fw(1, 4, 0), None)).await;
    let v: Value = serde_json::from_str(
        &get(&fx, &format!("/console/live/fleet?h={h}"), Some(&cookie))
            .await
            .body,
    )
    .unwrap();
    assert_ne!(v["h"], h.as_str());
    assert!(v["regions"]["devices"].as_str().unwrap().contains("1.4.0"));
    let v: Value = serde_json::from_str(
        &get(&fx, "/console/live/fleet?state=failed", Some(&cookie))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(v["regions"]["device-count"], "0");
    let v: Value = serde_json::from_str(
        &get(
            &fx,
            &format!("/console/live/devices/{}", d.id.0),
            Some(&cookie),
        )
        .await
        .body,
    )
    .unwrap();
    assert!(v["regions"]["wakes"]
        .as_str()
        .unwrap()
        .contains("class=\"wake\""));
    assert_eq!(
        get(&fx, "/console/live/rollouts", Some(&cookie))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&fx, "/console/live/rollouts/5", Some(&cookie))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The page tells the script where to poll.
    let page = get(&fx, "/fleet?state=idle", Some(&cookie)).await.body;
    assert!(page.contains("data-live-url=\"/console/live/fleet?state=idle\""));
    assert!(page.contains("data-live-tick=\"0\""));
}

/// Sends only the request head `head` to `addr` (its `Content-Length` promises a body that
/// never comes) and returns the response's status line. Panics when the server waits for the
/// body instead of answering (a timeout that only ever ends a failing test).
async fn status_before_body(addr: std::net::SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    c.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed without a response");
            got.extend_from_slice(&buf[..n]);
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .is_err()
    {
        panic!("no response while the body was unsent: the server is reading it\n{head}");
    }
    let text = String::from_utf8_lossy(&got);
    text.lines().next().unwrap_or("").to_string()
}

/// An unauthenticated write is refused before its body is read: the answer arrives while the
/// client has sent only the headers of an 8 MiB upload (before the gate the server buffered it
/// and ran the multipart parser, then refused it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_writes_are_refused_before_the_body_is_read() {
    let fx = Fx::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = fx.app.clone();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let forged = "ab".repeat(32);
    let big = ota_cloud::admin::BODY_LIMIT - 1;
    for cookie in [String::new(), format!("Cookie: ota_session={forged}\r\n")] {
        for (path, ct) in [
            ("/releases", "multipart/form-data; boundary=xyz"),
            ("/rollouts", "application/x-www-form-urlencoded"),
            ("/rollouts/1/pause", "application/x-www-form-urlencoded"),
            ("/logout", "application/x-www-form-urlencoded"),
        ] {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Content-Type: {ct}\r\n\
                 Content-Length: {big}\r\n\r\n"
            );
            let status = status_before_body(addr, &head).await;
            assert!(status.starts_with("HTTP/1.1 403"), "{path}: {status}");
        }
    }
    // Through the router too: the refusal page, nothing stored.
    let r = req(
        &fx,
        Method::POST,
        "/releases",
        None,
        &[("content-type", "multipart/form-data; boundary=xyz")],
        vec![b'x'; 64 * 1024],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("no session"), "{}", r.body);
    assert!(fx.store.releases(fx.product).await.unwrap().is_empty());
    server.abort();
}

/// Login, logout and the rollout forms read at most `FORM_LIMIT` bytes: 413 beyond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_forms_get_413() {
    use ota_cloud::console::FORM_LIMIT;
    let fx = Fx::new().await;
    let pad = "a".repeat(FORM_LIMIT);
    let r = post(&fx, "/login", None, &[("token", TOKEN), ("pad", &pad)]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    // Just under the limit: an ordinary login (the extra field is ignored).
    let pad_ok = "a".repeat(FORM_LIMIT - 200);
    let r = post(&fx, "/login", None, &[("token", TOKEN), ("pad", &pad_ok)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (cookie, csrf) = login(&fx).await;
    let before = fx.snapshot().await;
    for path in ["/rollouts", "/rollouts/1/pause", "/logout"] {
        let r = post(&fx, path, Some(&cookie), &[("csrf", &csrf), ("pad", &pad)]).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            r.body
        );
    }
    assert_eq!(fx.snapshot().await, before);
    assert_eq!(
        get(&fx, "/fleet", Some(&cookie)).await.status,
        StatusCode::OK,
        "the oversize logout did not log out"
    );
}

/// The cookie's attributes with `--console-secure-cookie` off (the default) and on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookie_option_sets_secure_and_the_host_prefix() {
    use ota_cloud::admin::{router, AdminState, AdminToken};
    let fx = Fx::new().await;
    for secure in [false, true] {
        let state = AdminState::new(
            fx.server.clone(),
            AdminToken::new(TOKEN).unwrap(),
            fx.dir.path().join("releases"),
        )
        .with_console_secure_cookie(secure);
        let app = router(state);
        let send = |r: Request<Body>| {
            let app = app.clone();
            async move { app.oneshot(r).await.unwrap() }
        };
        let form = |path: &str, cookie: &str, body: String| {
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .header(header::COOKIE, cookie)
                .body(Body::from(body))
                .unwrap()
        };
        let r = send(form("/login", "", format!("token={TOKEN}"))).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
        let (name, value) = attrs[0].split_once('=').unwrap();
        let (want, other) = if secure {
            ("__Host-ota_session", "ota_session")
        } else {
            ("ota_session", "__Host-ota_session")
        };
        assert_eq!(name, want, "{set}");
        assert_eq!(attrs.contains(&"Secure"), secure, "{set}");
        for a in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(attrs.contains(&a), "{set} lacks {a}");
        }
        assert!(
            !attrs
                .iter()
                .any(|a| a.to_ascii_lowercase().starts_with("domain")),
            "{set}: a __Host- cookie has no Domain"
        );
        let page = |cookie: String| {
            send(
                Request::get("/fleet")
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
        };
        // The configured name is the session; the other name is ignored.
        let fleet = page(format!("{want}={value}")).await;
        assert_eq!(fleet.status(), StatusCode::OK, "{set}");
        let other_name = page(format!("{other}={value}")).await;
        assert_eq!(other_name.status(), StatusCode::SEE_OTHER, "{other}");
        // Logout deletes the cookie under the same name and attributes.
        let html = axum::body::to_bytes(fleet.into_body(), usize::MAX)
            .await
            .unwrap();
        let csrf = csrf_of(std::str::from_utf8(&html).unwrap());
        let r = send(form(
            "/logout",
            &format!("{want}={value}"),
            format!("csrf={csrf}"),
        ))
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let del = r.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(del.starts_with(&format!("{want}=;")), "{del}");
        assert!(del.contains("Max-Age=0"), "{del}");
        assert_eq!(del.contains("; Secure"), secure, "{del}");
    }
}
