//! Sustained durable check-in transactions per second on `SqliteStore`, with group commit and
//! with one commit per check-in, and the latency of one check-in's store work (read the record,
//! commit the transaction). Not a test: numbers depend on the machine's fsync.
//!
//! `cargo run --release -p ota-cloud --example checkin_bench -- [devices] [seconds] [concurrency]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_proto::{CheckIn, FirmwareVersion, LastFrame, OtaReport, Publish, Up, TAG_LEN};
use ota_cloud::{
    Effects, FrameCommit, MasterKey, NewDevice, NewProduct, RootKey, SqliteOptions, SqliteStore,
    Store,
};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = arg(1, 1000) as u32;
    let seconds = arg(2, 3);
    let concurrency = (arg(3, 64) as u32).clamp(1, devices.max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        println!(
            "{devices} devices, {concurrency} check-ins in flight, {seconds} s per run, synchronous=FULL"
        );
        for (label, max_batch) in [("group commit", 512usize), ("one commit per check-in", 1)] {
            let dir = tempfile::tempdir()?;
            let key = dir.path().join("master.key");
            let db = dir.path().join("ota.db");
            MasterKey::create(&key)?;
            // Provision with group commit (fast), then measure with the variant's options.
            let setup = SqliteStore::open(&db, MasterKey::load(&key)?, SqliteOptions::default())?;
            let setup = Arc::new(setup);
            let product = setup
                .add_product(NewProduct {
                    name: "bench".into(),
                    hardware_id: [0; 16],
                    release_keys: vec![],
                })
                .await?;
            let mut adds = Vec::new();
            for _ in 0..devices {
                let s = setup.clone();
                adds.push(tokio::spawn(async move {
                    s.add_device(
                        NewDevice {
                            id: None,
                            product,
                            tags: vec![],
                            root_key: RootKey::generate()?,
                        },
                        0,
                    )
                    .await
                }));
            }
            for a in adds {
                a.await??;
            }
            if let Ok(s) = Arc::try_unwrap(setup) {
                s.close().await;
            }
            let opts = SqliteOptions {
                max_batch,
                ..SqliteOptions::default()
            };
            let store = Arc::new(SqliteStore::open(&db, MasterKey::load(&key)?, opts)?);
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let deadline = start + Duration::from_secs(seconds);
            let mut workers = Vec::new();
            for w in 0..concurrency {
                let (store, done) = (store.clone(), done.clone());
                workers.push(tokio::spawn(async move {
                    let source: SocketAddr = ([192, 0, 2, 1], 40_000).into();
                    let mut d = w + 1;
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let dev = cloud_proto::DeviceId(d);
                        let t = Instant::now();
                        let last = store.last_frame(dev).await?;
                        let counter = last.map_or(0, |l| l.counter + 1);
                        let now = start.elapsed().as_millis() as u64;
                        let data = counter.to_le_bytes();
                        let msg = Up::CheckIn(CheckIn {
                            firmware: FirmwareVersion::default(),
                            trial: false,
                            ota: OtaReport::default(),
                            battery_mv: 3700,
                            forced_sleeps: 0,
                            publishes: [Publish { topic: 1, data: &data }].into_iter().collect(),
                        });
                        let won = store
                            .commit_frame(FrameCommit {
                                device: dev,
                                expected: last,
                                record: LastFrame {
                                    counter,
                                    tag: [counter as u8; TAG_LEN],
                                    accepted_at_ms: now,
                                    source,
                                    answers: 1,
                                },
                                effects: Effects::of_request(&msg, now, 60, 40),
                            })
                            .await?;
                        if won {
                            done.fetch_add(1, Ordering::Relaxed);
                            lat.push(t.elapsed());
                        }
                        d += concurrency;
                        if d > devices {
                            d = w + 1;
                        }
                    }
                    Ok::<_, ota_cloud::StoreError>(lat)
                }));
            }
            let mut lat = Vec::new();
            for w in workers {
                lat.extend(w.await??);
            }
            lat.sort();
            let pct = |p: f64| {
                lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            };
            let elapsed = start.elapsed().as_secs_f64();
            let n = done.load(Ordering::Relaxed);
            let (commits, jobs) = store.commit_stats();
            println!(
                "{label:>24}: {:>7.0} check-ins/s, p50 {:.2} ms, p99 {:.2} ms ({n} in {elapsed:.1} s; {commits} commits, mean batch {:.1})",
                n as f64 / elapsed,
                pct(0.50),
                pct(0.99),
                jobs as f64 / commits.max(1) as f64
            );
        }
        Ok(())
    })
}
