//! The load generator's client against a real server and a real echo on loopback: what it
//! counts is what the store recorded (counts only; the run lengths are not asserted on).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cloud_proto::DeviceId;
use ota_cloud::limit::Limits;
use ota_cloud::load::{self, Fleet, RunConfig, Workload};
use ota_cloud::server::{Server, ServerConfig};
use ota_cloud::transport::serve_udp;
use ota_cloud::{MasterKey, SqliteOptions, SqliteStore, Store};

const DEVICES: u32 = 50;
const SEED: u64 = 3;

async fn server() -> (tempfile::TempDir, Arc<SqliteStore>, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default()).unwrap(),
    );
    let image: Vec<u8> = (0..100_000).map(|i| (i % 253) as u8).collect();
    let (container, key) = load::signed_release(&image).unwrap();
    let product = load::provision(&store, DEVICES, SEED, key, 16)
        .await
        .unwrap();
    std::fs::create_dir(dir.path().join("releases")).unwrap();
    load::offer_to_all(&*store, product, &container, &dir.path().join("releases"))
        .await
        .unwrap();
    let clock = Arc::new(AtomicU64::new(1_800_000_000_000));
    let config = ServerConfig {
        limits: Limits::UNLIMITED,
        ..ServerConfig::default()
    };
    let server = Arc::new(Server::new(
        store.clone(),
        config,
        Arc::new(move || clock.fetch_add(1, Ordering::SeqCst)),
    ));
    let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = u.local_addr().unwrap();
    tokio::spawn(serve_udp(server, u));
    (dir, store, addr)
}

fn config(server: std::net::SocketAddr, rate: Option<f64>) -> RunConfig {
    RunConfig {
        server,
        concurrency: 8,
        warmup: Duration::ZERO,
        measure: Duration::from_millis(300),
        // Long enough that a slow debug build on a busy machine never retransmits.
        rto_ms: 5_000,
        seed: SEED,
        rate,
    }
}

async fn stored_wakes(store: &SqliteStore) -> (u64, u64) {
    let (mut wakes, mut publishes) = (0, 0);
    for d in 1..=DEVICES {
        if let Some(s) = store.status(DeviceId(d)).await.unwrap() {
            wakes += s.wakes;
            publishes += s.publishes;
        }
    }
    (wakes, publishes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_counted_check_in_is_stored_and_nothing_is_refused() {
    let (_dir, store, addr) = server().await;
    let fleet = Arc::new(Fleet::new(DEVICES, SEED));
    let closed = load::run(fleet.clone(), Workload::CheckIns, config(addr, None))
        .await
        .unwrap();
    let open = load::run(fleet.clone(), Workload::CheckIns, config(addr, Some(200.0)))
        .await
        .unwrap();
    for s in [&closed, &open] {
        assert!(s.wakes > 0);
        assert_eq!(s.gave_up, 0);
        assert_eq!(s.retransmissions, 0);
        assert_eq!(s.refused_answers, 0);
        assert_eq!(s.checkin_us.len() as u64, s.wakes);
        // Check-in and goodbye of every counted wake.
        assert!(s.request_us.len() as u64 >= 2 * s.wakes - 1);
    }
    // Counted wakes are stored (wakes that ended after the window are stored, not counted),
    // each with its one publish.
    let (wakes, publishes) = stored_wakes(&store).await;
    assert!(wakes >= closed.wakes + open.wakes);
    assert_eq!(publishes, wakes);
    // The devices carried their counters across wakes: a second pass is still accepted.
    let again = load::run(fleet, Workload::CheckIns, config(addr, None))
        .await
        .unwrap();
    assert!(again.wakes > 0 && again.gave_up == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_run_receives_image_bytes_and_echo_answers() {
    let (_dir, _store, addr) = server().await;
    let fleet = Arc::new(Fleet::new(DEVICES, SEED));
    let c = load::run(
        fleet.clone(),
        Workload::Chunks { requests: 2 },
        config(addr, None),
    )
    .await
    .unwrap();
    assert!(c.chunk_bytes > 0);
    assert_eq!(c.gave_up, 0);
    assert_eq!(c.refused_answers, 0);

    let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo = u.local_addr().unwrap();
    tokio::spawn(load::echo_udp(u, 64));
    let e = load::run(fleet, Workload::Echo, config(echo, None))
        .await
        .unwrap();
    assert!(e.wakes > 0);
    assert_eq!(e.gave_up, 0);
}
