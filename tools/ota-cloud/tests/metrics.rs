//! `/metrics`: Prometheus text that parses, and counters that move with the frames handled.

mod common;
mod fixture;

use axum::http::{Method, StatusCode};
use cloud_proto::{Object, Up};
use common::*;
use fixture::*;
use ota_cloud::metrics::StoreMetrics;
use ota_cloud::server::Dropped;
use ota_cloud::Store;

async fn scrape<S: Store + StoreMetrics>(fx: &Fx<S>) -> std::collections::BTreeMap<String, f64> {
    // No token: Prometheus scrapes without one.
    let (status, ct, body) = fx.raw(Method::GET, "/metrics", None, None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse_metrics(std::str::from_utf8(&body).unwrap())
}

fn frames(m: &std::collections::BTreeMap<String, f64>, kind: &str, admission: &str) -> f64 {
    m[&format!("ota_cloud_frames_total{{kind=\"{kind}\",admission=\"{admission}\"}}")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_the_frames_handled() {
    let fx = Fx::new().await;
    // The fixture's product was one transaction in one commit.
    assert_eq!(
        scrape(&fx).await["ota_cloud_store_commit_batch_size_count"],
        1.0
    );
    counters_move(fx, true).await;
}

/// PostgreSQL (with `OTA_CLOUD_PG_URL`): the same counters; no commit batch histogram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_on_postgres() {
    let Some(fx) = Fx::postgres().await else {
        return;
    };
    counters_move(fx, false).await;
}

async fn counters_move<S: Store + StoreMetrics>(fx: Fx<S>, batches: bool) {
    let m = scrape(&fx).await;
    assert_eq!(m["ota_cloud_checkins_total"], 0.0);
    assert_eq!(m["ota_cloud_frame_handling_seconds_count"], 0.0);
    assert_eq!(
        m.contains_key("ota_cloud_store_commit_batch_size_count"),
        batches
    );

    let img = image(2_000, 3);
    let c = container(&fx.signer, HW, (1, 1, 0), &img);
    let (status, _) = fx.api(Method::GET, "/api/v1/products/1", None).await;
    assert_eq!(status, StatusCode::OK);
    let r = ota_cloud::release::upload_release(
        &*fx.store,
        fx.product,
        &c,
        &fx.dir.path().join("releases"),
        T0,
    )
    .await
    .unwrap();
    // Offered to the whole product (upload alone offers nothing).
    let release = fx.store.release_id(r.digest).await.unwrap().unwrap();
    fx.store
        .add_rollout(ota_cloud::NewRollout {
            release,
            target: ota_cloud::Target::Product,
            share: ota_cloud::Share::ALL,
            error_threshold: None,
            defer_until_ms: None,
            created_ms: T0,
        })
        .await
        .unwrap();

    let mut dev = fx.device(7).await;
    let before = scrape(&fx).await;
    let mut ep = dev.wake();
    let checkin_frame = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    let welcome = fx.frame(&mut ep, &checkin_frame).await.unwrap();
    // The same frame again: a retransmission, answered again, not a second check-in.
    let again = fx.frame(&mut ep, &checkin_frame).await.unwrap();
    // Four 512-byte chunks of a 2,000-byte image: 3 × 512 + 464.
    let chunks = fx
        .send(
            &mut dev,
            &mut ep,
            &chunk_request(release.update_id(), Object::Image, 512, 0, 4),
        )
        .await
        .unwrap();
    assert_eq!(chunks.frames.len(), 4);
    // A tampered frame: dropped, counted by reason.
    let mut bad = dev.seal(&mut ep, &Up::Goodbye(cloud_proto::Goodbye { sleep_s: 60 }));
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        fx.frame(&mut ep, &bad).await,
        Err(Dropped::Frame(_))
    ));

    let m = scrape(&fx).await;
    assert_eq!(m["ota_cloud_checkins_total"], 1.0);
    assert_eq!(frames(&m, "checkin", "new"), 1.0);
    assert_eq!(frames(&m, "checkin", "retransmission"), 1.0);
    assert_eq!(frames(&m, "chunk_request", "new"), 1.0);
    assert_eq!(frames(&m, "goodbye", "new"), 0.0);
    assert_eq!(m["ota_cloud_chunks_served_total"], 4.0);
    assert_eq!(m["ota_cloud_chunk_bytes_served_total"], 2_000.0);
    let answer_bytes: usize = [&welcome, &again, &chunks]
        .iter()
        .flat_map(|a| a.frames.iter().map(Vec::len))
        .sum();
    assert_eq!(m["ota_cloud_answer_bytes_total"], answer_bytes as f64);
    assert_eq!(m["ota_cloud_frames_dropped_total{reason=\"frame\"}"], 1.0);
    assert_eq!(
        m["ota_cloud_frames_dropped_total{reason=\"replayed\"}"],
        0.0
    );
    // One latency observation per answered frame.
    assert_eq!(m["ota_cloud_frame_handling_seconds_count"], 3.0);
    if !batches {
        assert!(!m.contains_key("ota_cloud_store_commit_batch_size_count"));
        return;
    }
    // Every frame answered committed once (no other writer here): 3 transactions, in 1 to 3
    // commits.
    let delta = |k: &str| m[k] - before[k];
    let commits = delta("ota_cloud_store_commit_batch_size_count");
    assert!((1.0..=3.0).contains(&commits), "{commits}");
    assert_eq!(delta("ota_cloud_store_commit_batch_size_sum"), 3.0);
}
