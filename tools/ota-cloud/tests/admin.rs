//! The admin API: every operation, and every refusal (401, 400, 404, 405, 409, 413, 415, 422)
//! answered with a JSON error and nothing changed (the store and the release files are
//! compared before and after).

mod common;
mod fixture;

use axum::http::{Method, StatusCode};
use cloud_proto::{Publish, Up};
use common::*;
use fixture::*;
use ota_cloud::keyfile::DeviceKeyFile;
use ota_cloud::metrics::StoreMetrics;
use ota_cloud::Store;
use serde_json::Value;

/// Each test runs on SQLite, and on PostgreSQL when `OTA_CLOUD_PG_URL` is set
/// (`scripts/postgres-test.sh`).
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
    rollouts_start_show_and_change,
    rollout_refusals_change_nothing,
    products_listed_past_unused_ids,
    device_publishes_past_other_devices_publishes,
    device_filter_pages_and_resumes,
    every_api_path_needs_the_token,
    products_and_release_keys,
    devices_add_once_with_the_key_then_never,
    releases_upload_verified_list_show,
    publishes_paged_and_per_device_and_drops,
    served_on_a_loopback_socket
);

/// `req` is refused with `status` and a JSON error mentioning `says`, and changes nothing.
async fn refused<S: Store + StoreMetrics>(
    fx: &Fx<S>,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&str>,
    status: StatusCode,
    says: &str,
) {
    let before = fx.snapshot().await;
    let (got, v) = fx.api_as(token, method.clone(), path, body).await;
    assert_eq!(got, status, "{method} {path}: {v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {v}"));
    assert!(
        msg.contains(says),
        "{method} {path}: {msg:?} lacks {says:?}"
    );
    assert_eq!(
        fx.snapshot().await,
        before,
        "{method} {path} changed the store"
    );
}

async fn every_api_path_needs_the_token<S: Store + StoreMetrics>(fx: Fx<S>) {
    let add = Some(r#"{"name":"x","hardware_id":"x"}"#);
    let missing = StatusCode::UNAUTHORIZED;
    refused(
        &fx,
        None,
        Method::POST,
        "/api/v1/products",
        add,
        missing,
        "Bearer",
    )
    .await;
    refused(
        &fx,
        Some("wrong"),
        Method::POST,
        "/api/v1/products",
        add,
        missing,
        "wrong",
    )
    .await;
    let almost = format!("{}0", &TOKEN[..63]);
    refused(
        &fx,
        Some(&almost),
        Method::GET,
        "/api/v1/devices",
        None,
        missing,
        "wrong",
    )
    .await;
    // Unknown paths under /api too: no route is revealed without the token.
    refused(
        &fx,
        None,
        Method::GET,
        "/api/v1/nothing",
        None,
        missing,
        "token",
    )
    .await;
    refused(&fx, None, Method::GET, "/api/v2", None, missing, "token").await;
    let (s, _, _) = fx
        .raw(Method::GET, "/api/v1/products", Some(TOKEN), None, vec![])
        .await;
    assert_eq!(s, StatusCode::OK);
    // With the token: unknown paths 404, wrong methods 405, both JSON.
    let nf = StatusCode::NOT_FOUND;
    refused(
        &fx,
        Some(TOKEN),
        Method::GET,
        "/api/v1/nothing",
        None,
        nf,
        "no such path",
    )
    .await;
    let na = StatusCode::METHOD_NOT_ALLOWED;
    refused(
        &fx,
        Some(TOKEN),
        Method::PUT,
        "/api/v1/products",
        None,
        na,
        "method",
    )
    .await;
}

async fn products_and_release_keys<S: Store + StoreMetrics>(fx: Fx<S>) {
    let pem = public_pem(&signer());
    let body = serde_json::json!({
        "name": "logger",
        "hardware_id": "logger-v2",
        "release_keys": [pem],
    })
    .to_string();
    let (s, p) = fx.api(Method::POST, "/api/v1/products", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(
        (p["id"].as_u64(), p["name"].as_str()),
        (Some(2), Some("logger"))
    );
    assert_eq!(p["hardware_id"], "logger-v2");
    let fp = p["release_keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, list) = fx.api(Method::GET, "/api/v1/products", None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tracker", "logger"]);
    let (s, shown) = fx.api(Method::GET, "/api/v1/products/2", None).await;
    assert_eq!((s, &shown), (StatusCode::OK, &p));

    let conflict = StatusCode::CONFLICT;
    let bad = StatusCode::BAD_REQUEST;
    let tok = Some(TOKEN);
    let post = Method::POST;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products",
        Some(&body),
        conflict,
        "exists",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products",
        Some("{\"name\":"),
        bad,
        "",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products",
        Some("{\"name\":\"n\"}"),
        bad,
        "hardware_id",
    )
    .await;
    let extra = r#"{"name":"n","hardware_id":"h","colour":1}"#;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products",
        Some(extra),
        bad,
        "colour",
    )
    .await;
    let bad_key = r#"{"name":"n","hardware_id":"h","release_keys":["not a pem"]}"#;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products",
        Some(bad_key),
        bad,
        "release key",
    )
    .await;
    let long_hw = r#"{"name":"n","hardware_id":"a-name-longer-than-16-bytes"}"#;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products",
        Some(long_hw),
        bad,
        "hardware_id",
    )
    .await;
    let nf = StatusCode::NOT_FOUND;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/products/9",
        None,
        nf,
        "no product 9",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/products/x",
        None,
        bad,
        "not a number",
    )
    .await;

    // Rotation: add a second key, refuse it twice, remove the first by fingerprint.
    let pem2 = public_pem(&signer());
    let key2 = serde_json::json!({ "pem": pem2 }).to_string();
    let (s, p2) = fx
        .api(post.clone(), "/api/v1/products/2/release-keys", Some(&key2))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p2}");
    assert_eq!(p2["release_keys"].as_array().unwrap().len(), 2);
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products/2/release-keys",
        Some(&key2),
        conflict,
        "already",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products/9/release-keys",
        Some(&key2),
        nf,
        "no product",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/products/2/release-keys",
        Some(r#"{"pem":"x"}"#),
        bad,
        "release key",
    )
    .await;
    let del = Method::DELETE;
    let gone = format!("/api/v1/products/2/release-keys/{}", "0".repeat(64));
    refused(&fx, tok, del.clone(), &gone, None, nf, "no release key").await;
    let (s, p3) = fx
        .api(del, &format!("/api/v1/products/2/release-keys/{fp}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p3}");
    let keys = p3["release_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["pem"], pem2.as_str());
}

async fn devices_add_once_with_the_key_then_never<S: Store + StoreMetrics>(fx: Fx<S>) {
    let (s, added) = fx
        .api(
            Method::POST,
            "/api/v1/devices",
            Some(r#"{"product":1,"tags":["pilot"],"id":70}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    assert_eq!(added["id"], 70);
    let kf = DeviceKeyFile::parse(added["key_file"].as_str().unwrap()).unwrap();
    assert_eq!(kf.device.0, 70);
    let key_hex = hex::encode(kf.root_key.expose());
    let stored = fx.store.root_key(kf.device).await.unwrap().unwrap();
    assert!(stored.ct_eq(&kf.root_key));

    // It checks in with the key it was given; list and show report it.
    let mut dev = Device::new(kf.device, *kf.root_key.expose());
    let mut ep = dev.wake();
    let _ = fx
        .send(&mut dev, &mut ep, &checkin(fw(1, 4, 2), None))
        .await
        .unwrap();
    let (s, list) = fx.api(Method::GET, "/api/v1/devices", None).await;
    assert_eq!(s, StatusCode::OK);
    let d = &list["devices"][0];
    assert_eq!(d["id"], 70);
    assert_eq!(d["tags"], serde_json::json!(["pilot"]));
    assert_eq!(d["status"]["wakes"], 1);
    assert_eq!(d["status"]["last_checkin"]["firmware"], "1.4.2");
    assert_eq!(d["status"]["last_checkin"]["battery_mv"], 3700);
    let (s, shown) = fx.api(Method::GET, "/api/v1/devices/70", None).await;
    assert_eq!((s, &shown), (StatusCode::OK, d));
    for v in [&list, &shown] {
        assert!(
            !v.to_string().contains(&key_hex),
            "root key in a later response"
        );
    }

    let tok = Some(TOKEN);
    let post = Method::POST;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/devices",
        Some(r#"{"product":1,"id":70}"#),
        StatusCode::CONFLICT,
        "exists",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/devices",
        Some(r#"{"product":9}"#),
        StatusCode::NOT_FOUND,
        "unknown product 9",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/devices",
        Some(r#"{"product":"one"}"#),
        StatusCode::BAD_REQUEST,
        "product",
    )
    .await;
    refused(
        &fx,
        tok,
        post,
        "/api/v1/devices",
        Some("[]"),
        StatusCode::BAD_REQUEST,
        "",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/devices/71",
        None,
        StatusCode::NOT_FOUND,
        "no device 71",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/devices/-1",
        None,
        StatusCode::BAD_REQUEST,
        "not a number",
    )
    .await;
    // Wrong content type for JSON: 415, nothing changed.
    let before = fx.snapshot().await;
    let (s, _, body) = fx
        .raw(
            Method::POST,
            "/api/v1/devices",
            Some(TOKEN),
            Some("text/plain"),
            br#"{"product":1}"#.to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string());
    assert_eq!(fx.snapshot().await, before);
}

async fn releases_upload_verified_list_show<S: Store + StoreMetrics>(fx: Fx<S>) {
    let octets = Some("application/octet-stream");
    let good = container(&fx.signer, HW, (2, 0, 0), &image(3_000, 1));
    let upload = |body: Vec<u8>, ct: Option<&'static str>, path: &'static str| {
        let fx = &fx;
        async move {
            let before = fx.snapshot().await;
            let (s, _, b) = fx.raw(Method::POST, path, Some(TOKEN), ct, body).await;
            let v: Value = serde_json::from_slice(&b).unwrap();
            (s, v, before)
        }
    };
    let path = "/api/v1/products/1/releases";
    // Refused: tampered (422), another product's hardware (422), not a container (422),
    // wrong content type (415), unknown product (404), too large (413).
    let mut tampered = good.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 0x80;
    let other_hw = container(&fx.signer, "other-hw", (2, 0, 0), &image(100, 2));
    let foreign = container(&signer(), HW, (2, 0, 0), &image(100, 2));
    for (body, ct, p, status, says) in [
        (tampered, octets, path, 422, "container refused"),
        (other_hw, octets, path, 422, "container refused"),
        (foreign, octets, path, 422, "container refused"),
        (
            b"junk".to_vec(),
            octets,
            path,
            422,
            "not a valid update container",
        ),
        (
            good.clone(),
            Some("application/json"),
            path,
            415,
            "octet-stream",
        ),
        (good.clone(), None, path, 415, "octet-stream"),
        (
            good.clone(),
            octets,
            "/api/v1/products/9/releases",
            404,
            "unknown product 9",
        ),
        (
            vec![0u8; ota_cloud::admin::BODY_LIMIT + 1],
            octets,
            path,
            413,
            "larger than",
        ),
    ] {
        let (s, v, before) = upload(body, ct, p).await;
        assert_eq!(s.as_u16(), status, "{v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{v}");
        assert_eq!(fx.snapshot().await, before, "{says}");
    }

    let (s, r, _) = upload(good.clone(), octets, path).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["version"], "2.0.0");
    assert!(r["id"].as_u64().is_some_and(|id| id >= 1), "{r}");
    assert_eq!(r["size"], good.len());
    let digest = r["digest"].as_str().unwrap().to_string();
    assert!(fx
        .dir
        .path()
        .join("releases")
        .join(format!("{digest}.ota"))
        .exists());
    let (s, v, before) = upload(good, octets, path).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(fx.snapshot().await, before);

    let (s, list) = fx.api(Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["releases"], serde_json::json!([r.clone()]));
    let (s, shown) = fx
        .api(Method::GET, &format!("/api/v1/releases/{digest}"), None)
        .await;
    assert_eq!((s, shown), (StatusCode::OK, r));
    let tok = Some(TOKEN);
    refused(
        &fx,
        tok,
        Method::GET,
        &format!("/api/v1/releases/{}", "ab".repeat(32)),
        None,
        StatusCode::NOT_FOUND,
        "no release",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/releases/xyz",
        None,
        StatusCode::BAD_REQUEST,
        "64 hex",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/products/9/releases",
        None,
        StatusCode::NOT_FOUND,
        "no product 9",
    )
    .await;
}

fn with_publishes<'a>(firmware: cloud_proto::FirmwareVersion, data: &'a [&'a [u8]]) -> Up<'a> {
    let mut up = checkin(firmware, None);
    if let Up::CheckIn(c) = &mut up {
        for (i, d) in data.iter().enumerate() {
            c.publishes
                .push(Publish {
                    topic: i as u16 + 1,
                    data: d,
                })
                .unwrap();
        }
    }
    up
}

async fn publishes_paged_and_per_device_and_drops<S: Store + StoreMetrics>(fx: Fx<S>) {
    let mut a = fx.device(1).await;
    let mut b = fx.device(2).await;
    for round in 0..3u8 {
        for dev in [&mut a, &mut b] {
            let mut ep = dev.wake();
            let payload = [round, dev.id.0 as u8];
            let _ = fx
                .send(dev, &mut ep, &with_publishes(fw(1, 0, 0), &[&payload]))
                .await
                .unwrap();
            fx.advance(1_000);
        }
    }
    let (s, all) = fx.api(Method::GET, "/api/v1/publishes", None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<u64> = all["publishes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 6);
    assert_eq!(all["next_after"], ids[5]);
    let first = &all["publishes"][0];
    assert_eq!(first["device"], a.id.0);
    assert_eq!(first["data_hex"], "0001");
    assert_eq!(first["topic"], 1);

    let (_, page) = fx
        .api(
            Method::GET,
            &format!("/api/v1/publishes?after={}&limit=2", ids[1]),
            None,
        )
        .await;
    let got: Vec<u64> = page["publishes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids[2..4]);
    assert_eq!(page["next_after"], ids[3]);
    let (_, of_b) = fx
        .api(
            Method::GET,
            &format!("/api/v1/publishes?device={}&limit=2", b.id.0),
            None,
        )
        .await;
    let got: Vec<(u64, u64)> = of_b["publishes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["device"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, [(ids[1], 2), (ids[3], 2)]);
    let (_, rest) = fx
        .api(
            Method::GET,
            &format!(
                "/api/v1/devices/{}/publishes?after={}",
                b.id.0, of_b["next_after"]
            ),
            None,
        )
        .await;
    assert_eq!(rest["publishes"].as_array().unwrap().len(), 1);
    assert_eq!(rest["publishes"][0]["id"], ids[5]);

    let tok = Some(TOKEN);
    let bad = StatusCode::BAD_REQUEST;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/publishes?limit=0",
        None,
        bad,
        "limit",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/publishes?after=abc",
        None,
        bad,
        "after",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/publishes?colour=1",
        None,
        bad,
        "colour",
    )
    .await;
    refused(
        &fx,
        tok,
        Method::GET,
        "/api/v1/devices/9/publishes",
        None,
        StatusCode::NOT_FOUND,
        "no device 9",
    )
    .await;

    // Drop counters: one replayed frame (an old frame after a newer one was taken).
    let (_, d0) = fx.api(Method::GET, "/api/v1/drops", None).await;
    assert_eq!(d0["replayed"], 0);
    let mut ep = a.wake();
    let old = a.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    let _ = fx.frame(&mut ep, &old).await.unwrap();
    let mut ep = a.wake();
    let _ = fx
        .send(&mut a, &mut ep, &checkin(fw(1, 0, 0), None))
        .await
        .unwrap();
    assert!(fx.frame(&mut a.wake(), &old).await.is_err());
    let (s, d1) = fx.api(Method::GET, "/api/v1/drops", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d1["replayed"], 1, "{d1}");
    assert_eq!(d1["frame"], 0);
}

/// A device filter pages through the device's own publishes: `limit` per call, paging on
/// from `next_after` finds each once, in order, and an empty page leaves `next_after` put.
async fn device_filter_pages_and_resumes<S: Store + StoreMetrics>(fx: Fx<S>) {
    let mut a = fx.device(1).await;
    let mut b = fx.device(2).await;
    for n in 0..30u8 {
        let dev = if n % 7 == 6 { &mut b } else { &mut a };
        let mut ep = dev.wake();
        let _ = fx
            .send(dev, &mut ep, &with_publishes(fw(1, 0, 0), &[&[n]]))
            .await
            .unwrap();
    }
    let mut after = ota_cloud::PublishId(0);
    let mut pages = Vec::new();
    loop {
        let page = ota_cloud::events::page(&*fx.store, after, Some(b.id), 2)
            .await
            .unwrap();
        assert!(page.publishes.iter().all(|p| p.device == b.id));
        pages.push(page.publishes.iter().map(|p| p.data[0]).collect::<Vec<_>>());
        if page.next_after == after {
            assert!(page.publishes.is_empty());
            break;
        }
        after = page.next_after;
    }
    assert_eq!(pages, [vec![6, 13], vec![20, 27], vec![]]);
}

/// The router on a real socket (what `serve --admin` runs): a raw HTTP/1.1 exchange.
async fn served_on_a_loopback_socket<S: Store + StoreMetrics>(fx: Fx<S>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let state = ota_cloud::admin::AdminState::new(
        fx.server.clone(),
        ota_cloud::admin::AdminToken::new(TOKEN).unwrap(),
        fx.dir.path().join("releases"),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(ota_cloud::admin::serve(state, l));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/products/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(GUARD, s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""name":"tracker""#), "{resp}");
}

/// `GET /api/v1/products` lists every product, whatever ids were left unused (on PostgreSQL a
/// refused add uses up an id; 70 of them in a row made the old listing, which probed ids and
/// stopped after 64 unused ones, miss the next product).
async fn products_listed_past_unused_ids<S: Store + StoreMetrics>(fx: Fx<S>) {
    for _ in 0..70 {
        let _ = fx
            .store
            .add_product(ota_cloud::NewProduct {
                name: "tracker".into(),
                hardware_id: [0; 16],
                release_keys: vec![],
            })
            .await
            .unwrap_err();
    }
    let body = r#"{"name":"logger","hardware_id":"logger-v2"}"#;
    let (s, p) = fx.api(Method::POST, "/api/v1/products", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, list) = fx.api(Method::GET, "/api/v1/products", None).await;
    assert_eq!(s, StatusCode::OK);
    let got: Vec<(u64, &str)> = list["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [(1, "tracker"), (p["id"].as_u64().unwrap(), "logger")]);
}

/// A device's publishes come in one request however many other devices' publishes lie
/// between them (the old device filter scanned the log, 10,000 rows per request, and
/// answered an empty page here).
async fn device_publishes_past_other_devices_publishes<S: Store + StoreMetrics>(fx: Fx<S>) {
    let a = fx.device(1).await;
    let mut b = fx.device(2).await;
    let mut ep = b.wake();
    let _ = fx
        .send(&mut b, &mut ep, &with_publishes(fw(1, 0, 0), &[b"first"]))
        .await
        .unwrap();
    // 10,050 publishes of another device in one frame transaction.
    let mut effects = ota_cloud::Effects::counters_only(T0, 1, 1);
    effects.publishes = (0..10_050u32)
        .map(|n| (1u16, n.to_le_bytes().to_vec()))
        .collect();
    let record = cloud_proto::LastFrame {
        counter: 1,
        tag: [7; cloud_proto::TAG_LEN],
        accepted_at_ms: T0,
        source: SRC.parse().unwrap(),
        answers: 1,
    };
    assert!(fx
        .store
        .commit_frame(ota_cloud::FrameCommit {
            device: a.id,
            expected: None,
            record,
            effects,
        })
        .await
        .unwrap());
    fx.advance(1_000);
    let mut ep = b.wake();
    let _ = fx
        .send(&mut b, &mut ep, &with_publishes(fw(1, 0, 0), &[b"second"]))
        .await
        .unwrap();
    for path in [
        format!("/api/v1/devices/{}/publishes?limit=5", b.id.0),
        format!("/api/v1/publishes?device={}&limit=5", b.id.0),
    ] {
        let (s, page) = fx.api(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let data: Vec<&str> = page["publishes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["data_hex"].as_str().unwrap())
            .collect();
        assert_eq!(
            data,
            [hex::encode("first"), hex::encode("second")],
            "{path}"
        );
        assert_eq!(page["next_after"], page["publishes"][1]["id"], "{path}");
        let (_, rest) = fx
            .api(
                Method::GET,
                &format!("{path}&after={}", page["next_after"]),
                None,
            )
            .await;
        assert_eq!(rest["publishes"], serde_json::json!([]), "{path}");
        assert_eq!(rest["next_after"], page["next_after"], "{path}");
    }
}

/// Uploads a release of product 1 through the API; its JSON.
async fn upload_release<S: Store + StoreMetrics>(fx: &Fx<S>, version: (u16, u16, u16)) -> Value {
    let c = container(&fx.signer, HW, version, &image(2_000, version.1 as u8));
    let (s, _, b) = fx
        .raw(
            Method::POST,
            "/api/v1/products/1/releases",
            Some(TOKEN),
            Some("application/octet-stream"),
            c,
        )
        .await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

/// Adds a device of product 1 with `tags` through the API; its id.
async fn tagged_device<S: Store + StoreMetrics>(fx: &Fx<S>, tags: &[&str]) -> u64 {
    let body = serde_json::json!({ "product": 1, "tags": tags }).to_string();
    let (s, v) = fx.api(Method::POST, "/api/v1/devices", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_u64().unwrap()
}

/// Start (by id and by digest; product, device and group targets; threshold and deferral),
/// list, show with progress counts, raise the percentage, pause, resume, cancel.
async fn rollouts_start_show_and_change<S: Store + StoreMetrics>(fx: Fx<S>) {
    let rel = upload_release(&fx, (2, 0, 0)).await;
    let release = rel["id"].as_u64().unwrap();
    let mut dev = fx.device(1).await;
    let _quiet = fx.device(2).await;
    let pilot = tagged_device(&fx, &["pilot"]).await;

    let body = format!(r#"{{"release":{release},"target":"product","percent":100}}"#);
    let (s, r1) = fx.api(Method::POST, "/api/v1/rollouts", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{r1}");
    assert_eq!(r1["release"], release);
    assert_eq!(r1["product"], 1);
    assert_eq!(r1["version"], "2.0.0");
    assert_eq!(r1["target"], "product");
    assert_eq!(
        (&r1["percent"], &r1["share_bp"]),
        (&"100".into(), &10_000.into())
    );
    assert_eq!(
        (&r1["state"], &r1["pause"]),
        (&"running".into(), &Value::Null)
    );
    assert_eq!(r1["error_threshold"], Value::Null);
    assert_eq!(r1["defer_until_ms"], Value::Null);
    assert_eq!(r1["created_ms"], T0);
    let p = &r1["progress"];
    assert_eq!(
        (&p["targeted"], &p["not_offered"], &p["offered"]),
        (&3.into(), &3.into(), &0.into())
    );
    let id1 = r1["id"].as_u64().unwrap();

    // By digest, one device, with a threshold and a deferral deadline; percent as a string.
    let body = serde_json::json!({
        "release": rel["digest"],
        "target": {"device": pilot},
        "percent": "12.5",
        "error_threshold": {"percent": 20, "min_finished": 4},
        "defer_until": 1_900_000_000u64,
    })
    .to_string();
    let (s, r2) = fx.api(Method::POST, "/api/v1/rollouts", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{r2}");
    assert_eq!(r2["target"], serde_json::json!({ "device": pilot }));
    assert_eq!(
        (&r2["percent"], &r2["share_bp"]),
        (&"12.5".into(), &1250.into())
    );
    assert_eq!(
        r2["error_threshold"],
        serde_json::json!({"percent": "20", "min_finished": 4})
    );
    assert_eq!(r2["defer_until_ms"], 1_900_000_000_000u64);

    // A group at 0 %, then raised: 0 targeted, then its one device.
    let body = format!(r#"{{"release":{release},"target":{{"group":"pilot"}},"percent":"0"}}"#);
    let (s, r3) = fx.api(Method::POST, "/api/v1/rollouts", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{r3}");
    assert_eq!(r3["target"], serde_json::json!({ "group": "pilot" }));
    assert_eq!(r3["progress"]["targeted"], 0);
    let id3 = r3["id"].as_u64().unwrap();
    let (s, raised) = fx
        .api(
            Method::POST,
            &format!("/api/v1/rollouts/{id3}/percent"),
            Some(r#"{"percent":100}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{raised}");
    assert_eq!(raised["percent"], "100");
    assert_eq!(raised["progress"]["targeted"], 1);
    let (_, same) = fx
        .api(
            Method::POST,
            &format!("/api/v1/rollouts/{id3}/percent"),
            Some(r#"{"percent":"100.00"}"#),
        )
        .await;
    assert_eq!(same["share_bp"], 10_000, "the same share again is allowed");

    // A device checks in: offered through the oldest rollout of that version (the product's).
    let mut ep = dev.wake();
    let _ = fx
        .send(&mut dev, &mut ep, &checkin(fw(1, 0, 0), None))
        .await
        .unwrap();
    let (s, shown) = fx
        .api(Method::GET, &format!("/api/v1/rollouts/{id1}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let p = &shown["progress"];
    assert_eq!(
        (&p["targeted"], &p["not_offered"], &p["offered"]),
        (&3.into(), &2.into(), &1.into())
    );
    for k in [
        "deferred",
        "overdue",
        "downloading",
        "downloaded",
        "updating",
        "succeeded",
        "failed",
        "declined",
    ] {
        assert_eq!(p[k], 0, "{k}");
    }

    let (s, list) = fx.api(Method::GET, "/api/v1/rollouts", None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<u64> = list["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(list["rollouts"][0].get("progress").is_none());
    let (_, of_1) = fx
        .api(Method::GET, "/api/v1/rollouts?product=1", None)
        .await;
    assert_eq!(of_1, list);
    let body = r#"{"name":"logger","hardware_id":"logger-v2"}"#;
    let (_, p2) = fx.api(Method::POST, "/api/v1/products", Some(body)).await;
    let (_, of_2) = fx
        .api(
            Method::GET,
            &format!("/api/v1/rollouts?product={}", p2["id"]),
            None,
        )
        .await;
    assert_eq!(of_2, serde_json::json!({ "rollouts": [] }));

    // Pause, resume, cancel.
    let post = |path: String| {
        let fx = &fx;
        async move { fx.api(Method::POST, &path, None).await }
    };
    let (s, paused) = post(format!("/api/v1/rollouts/{id1}/pause")).await;
    assert_eq!(s, StatusCode::OK, "{paused}");
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["pause"], serde_json::json!({ "cause": "operator" }));
    assert_eq!(paused["progress"]["offered"], 1);
    let (s, resumed) = post(format!("/api/v1/rollouts/{id1}/resume")).await;
    assert_eq!(
        (s, &resumed["state"], &resumed["pause"]),
        (StatusCode::OK, &"running".into(), &Value::Null)
    );
    let (s, cancelled) = post(format!("/api/v1/rollouts/{id1}/cancel")).await;
    assert_eq!(
        (s, &cancelled["state"]),
        (StatusCode::OK, &"cancelled".into())
    );
    let (_, shown) = fx
        .api(Method::GET, &format!("/api/v1/rollouts/{id1}"), None)
        .await;
    assert_eq!(shown, cancelled);
    // A paused rollout can be cancelled too.
    let id2 = r2["id"].as_u64().unwrap();
    let (s, _) = post(format!("/api/v1/rollouts/{id2}/pause")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, c2) = post(format!("/api/v1/rollouts/{id2}/cancel")).await;
    assert_eq!((s, &c2["state"]), (StatusCode::OK, &"cancelled".into()));
}

/// Every refusal of the rollout routes: the right status, a message naming the cause, and
/// the store unchanged (rollouts and their progress are in the snapshot).
async fn rollout_refusals_change_nothing<S: Store + StoreMetrics>(fx: Fx<S>) {
    let rel = upload_release(&fx, (2, 0, 0)).await;
    let release = rel["id"].as_u64().unwrap();
    let _d = fx.device(1).await;
    let body = format!(r#"{{"release":{release},"target":"product","percent":50}}"#);
    let (s, r) = fx.api(Method::POST, "/api/v1/rollouts", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_u64().unwrap();
    let tok = Some(TOKEN);
    let (get, post) = (Method::GET, Method::POST);
    let path = |tail: &str| format!("/api/v1/rollouts/{id}{tail}");
    let start = "/api/v1/rollouts";
    let with = |extra: &str| format!(r#"{{"release":{release},"target":"product"{extra}}}"#);

    // 401.
    for (m, p, b) in [
        (get.clone(), start.to_string(), None),
        (post.clone(), start.to_string(), Some(with(""))),
        (post.clone(), path("/pause"), None),
        (get.clone(), path(""), None),
    ] {
        refused(
            &fx,
            None,
            m.clone(),
            &p,
            b.as_deref(),
            StatusCode::UNAUTHORIZED,
            "Bearer",
        )
        .await;
        refused(
            &fx,
            Some("nope"),
            m,
            &p,
            b.as_deref(),
            StatusCode::UNAUTHORIZED,
            "wrong",
        )
        .await;
    }

    // 400: bad JSON, unknown fields, wrong shapes, bad ids.
    let bad = StatusCode::BAD_REQUEST;
    for (b, says) in [
        ("{".to_string(), ""),
        (with(r#","colour":1"#), "colour"),
        (r#"{"target":"product"}"#.to_string(), "release"),
        (format!(r#"{{"release":{release}}}"#), "target"),
        (
            format!(r#"{{"release":{release},"target":"everyone"}}"#),
            "everyone",
        ),
        (
            format!(r#"{{"release":{release},"target":{{"device":"x"}}}}"#),
            "",
        ),
        (
            r#"{"release":"xyz","target":"product"}"#.to_string(),
            "SHA-256",
        ),
        (with(r#","percent":true"#), ""),
        (with(r#","error_threshold":{"percent":20}"#), "min_finished"),
        (with(r#","defer_until":-5"#), ""),
    ] {
        refused(&fx, tok, post.clone(), start, Some(&b), bad, says).await;
    }
    refused(
        &fx,
        tok,
        get.clone(),
        "/api/v1/rollouts/x",
        None,
        bad,
        "not a number",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        "/api/v1/rollouts/x/pause",
        None,
        bad,
        "not a number",
    )
    .await;
    refused(
        &fx,
        tok,
        get.clone(),
        "/api/v1/rollouts?colour=1",
        None,
        bad,
        "colour",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        &path("/percent"),
        Some("{}"),
        bad,
        "percent",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        &path("/percent"),
        Some(r#"{"percent":60,"x":1}"#),
        bad,
        "x",
    )
    .await;

    // 404: unknown rollout, release, device, product.
    let nf = StatusCode::NOT_FOUND;
    refused(
        &fx,
        tok,
        get.clone(),
        "/api/v1/rollouts/99",
        None,
        nf,
        "no rollout 99",
    )
    .await;
    for tail in ["/pause", "/resume", "/cancel"] {
        let p = format!("/api/v1/rollouts/99{tail}");
        refused(&fx, tok, post.clone(), &p, None, nf, "rollout 99").await;
    }
    let p = "/api/v1/rollouts/99/percent";
    refused(
        &fx,
        tok,
        post.clone(),
        p,
        Some(r#"{"percent":60}"#),
        nf,
        "no rollout 99",
    )
    .await;
    let b = r#"{"release":99,"target":"product"}"#;
    refused(&fx, tok, post.clone(), start, Some(b), nf, "no release 99").await;
    let b = format!(r#"{{"release":"{}","target":"product"}}"#, "ab".repeat(32));
    refused(
        &fx,
        tok,
        post.clone(),
        start,
        Some(&b),
        nf,
        "no release abab",
    )
    .await;
    let b = format!(r#"{{"release":{release},"target":{{"device":999}}}}"#);
    refused(
        &fx,
        tok,
        post.clone(),
        start,
        Some(&b),
        nf,
        "unknown device 999",
    )
    .await;
    refused(
        &fx,
        tok,
        get.clone(),
        "/api/v1/rollouts?product=9",
        None,
        nf,
        "no product 9",
    )
    .await;
    refused(
        &fx,
        tok,
        get.clone(),
        "/api/v1/rollouts/99/nothing",
        None,
        nf,
        "no such path",
    )
    .await;

    // 422: values refused.
    let un = StatusCode::UNPROCESSABLE_ENTITY;
    for (extra, says) in [
        (r#","percent":"12.345""#, "12.345"),
        (r#","percent":101"#, "101"),
        (r#","percent":-1"#, "-1"),
        (r#","percent":"abc""#, "not a percentage"),
        (r#","percent":"""#, "not a percentage"),
        (
            r#","error_threshold":{"percent":"150","min_finished":3}"#,
            "error_threshold.percent",
        ),
        (
            r#","error_threshold":{"percent":20,"min_finished":0}"#,
            "min_finished",
        ),
        (r#","defer_until":18446744073709551615"#, "too large"),
    ] {
        refused(&fx, tok, post.clone(), start, Some(&with(extra)), un, says).await;
    }
    let b = format!(r#"{{"release":{release},"target":{{"group":""}}}}"#);
    refused(
        &fx,
        tok,
        post.clone(),
        start,
        Some(&b),
        un,
        "empty group tag",
    )
    .await;
    let (_, p2) = fx
        .api(
            post.clone(),
            "/api/v1/products",
            Some(r#"{"name":"logger","hardware_id":"logger-v2"}"#),
        )
        .await;
    let (_, other) = fx
        .api(
            post.clone(),
            "/api/v1/devices",
            Some(&format!(r#"{{"product":{}}}"#, p2["id"])),
        )
        .await;
    let b = format!(
        r#"{{"release":{release},"target":{{"device":{}}}}}"#,
        other["id"]
    );
    refused(
        &fx,
        tok,
        post.clone(),
        start,
        Some(&b),
        un,
        "not of the release's product",
    )
    .await;
    for pct in [
        r#"{"percent":"0.5.5"}"#,
        r#"{"percent":100.5}"#,
        r#"{"percent":"12.345"}"#,
    ] {
        refused(
            &fx,
            tok,
            post.clone(),
            &path("/percent"),
            Some(pct),
            un,
            "not a percentage",
        )
        .await;
    }

    // 409: lowering the share, illegal transitions (nothing changed by any of them).
    let conflict = StatusCode::CONFLICT;
    refused(
        &fx,
        tok,
        post.clone(),
        &path("/percent"),
        Some(r#"{"percent":"49.99"}"#),
        conflict,
        "can only be raised",
    )
    .await;
    refused(
        &fx,
        tok,
        post.clone(),
        &path("/resume"),
        None,
        conflict,
        "is running: cannot resume",
    )
    .await;
    let (s, _) = fx.api(post.clone(), &path("/pause"), None).await;
    assert_eq!(s, StatusCode::OK);
    refused(
        &fx,
        tok,
        post.clone(),
        &path("/pause"),
        None,
        conflict,
        "is paused: cannot pause",
    )
    .await;
    let (s, _) = fx.api(post.clone(), &path("/cancel"), None).await;
    assert_eq!(s, StatusCode::OK);
    for tail in ["/pause", "/resume", "/cancel"] {
        refused(
            &fx,
            tok,
            post.clone(),
            &path(tail),
            None,
            conflict,
            "is cancelled: cannot",
        )
        .await;
    }
    refused(
        &fx,
        tok,
        post.clone(),
        &path("/percent"),
        Some(r#"{"percent":80}"#),
        conflict,
        "is cancelled: cannot share",
    )
    .await;
    // 405: wrong methods.
    let na = StatusCode::METHOD_NOT_ALLOWED;
    refused(&fx, tok, get.clone(), &path("/pause"), None, na, "method").await;
    refused(&fx, tok, Method::DELETE, &path(""), None, na, "method").await;
}
