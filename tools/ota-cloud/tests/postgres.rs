//! The store conformance suite against `PgStore`, plus what only a shared database has: two
//! store instances (two servers) on one database keep one device's replay protection.
//!
//! Needs a PostgreSQL server: set `OTA_CLOUD_PG_URL` (e.g. `postgres://postgres@127.0.0.1:5433/postgres`;
//! `scripts/postgres-test.sh` starts a throwaway cluster and sets it). Without it every test
//! here prints one "skipped" line and passes. Each test works in its own fresh schema.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;

use cloud_proto::{
    admit, authenticate, peek_up, Admission, CheckIn, Counters, DeviceConfig, DeviceEndpoint,
    DeviceId, FirmwareVersion, Keys, OtaReport, OtaState, ReplayPolicy, Up, UpdateResult,
};
use ota_cloud::postgres::{PgOptions, PgStore};
use ota_cloud::store::conformance::{self, Harness};
use ota_cloud::{
    Effects, FrameCommit, MasterKey, NewDevice, NewProduct, OpenError, PublishId, RootKey, Store,
};

const URL_VAR: &str = "OTA_CLOUD_PG_URL";

/// The database URL, or `None` after printing (once per test binary, past the test
/// harness's output capture) that the PostgreSQL tests are skipped.
fn url() -> Option<String> {
    static SKIP: Once = Once::new();
    match std::env::var(URL_VAR) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            SKIP.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: no PostgreSQL ({URL_VAR} not set; scripts/postgres-test.sh sets it)"
                );
            });
            None
        }
    }
}

fn fresh_schema() -> String {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).unwrap();
    format!("ota_test_{:016x}", u64::from_le_bytes(r))
}

/// One schema in the database and one master key file: what a deployment is.
struct Pg {
    url: String,
    schema: String,
    _dir: tempfile::TempDir,
    key: PathBuf,
}

impl Pg {
    fn new(url: String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master.key");
        MasterKey::create(&key).unwrap();
        Self {
            url,
            schema: fresh_schema(),
            key,
            _dir: dir,
        }
    }

    fn options(&self) -> PgOptions {
        PgOptions {
            schema: Some(self.schema.clone()),
            ..PgOptions::default()
        }
    }

    /// Another instance's open (its own copy of the master key file's contents).
    async fn instance(&self) -> PgStore {
        let master = MasterKey::load(&self.key).unwrap();
        PgStore::connect(&self.url, master, self.options())
            .await
            .unwrap()
    }
}

impl Harness for Pg {
    type S = PgStore;

    async fn open(&self) -> PgStore {
        self.instance().await
    }

    async fn close(&self, store: PgStore) {
        store.close().await;
    }
}

macro_rules! check {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(url) = url() else { return };
            conformance::$name(&Pg::new(url)).await;
        }
    )*};
}

check!(
    products_and_release_keys,
    products_listed,
    devices_and_sealed_keys,
    unknown_device,
    frame_flow_and_status,
    cas_race,
    lost_cas_applies_nothing,
    one_failure_does_not_fail_the_others,
    publishes_survive_reopen,
    device_publishes_paged,
    release_by_digest,
    release_ids_are_stable,
    rollout_lifecycle,
    offer_candidates_by_target,
    rollout_phases_and_progress,
    error_threshold_pauses_in_the_frame_transaction,
    wakes_recorded_and_bounded,
    fleet_and_update_history,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_database() {
    let Some(url) = url() else { return };
    let h = Pg::new(url);
    conformance::run(&h).await;
    // And again on the same, now non-empty, database.
    conformance::run(&h).await;
}

/// The conformance checks where each open is a different instance (its own connections):
/// what one instance wrote, the next one reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_race_with_one_connection_per_instance() {
    let Some(url) = url() else { return };
    struct One(Pg);
    impl Harness for One {
        type S = PgStore;
        async fn open(&self) -> PgStore {
            let master = MasterKey::load(&self.0.key).unwrap();
            let opts = PgOptions {
                connections: 1,
                ..self.0.options()
            };
            PgStore::connect(&self.0.url, master, opts).await.unwrap()
        }
        async fn close(&self, store: PgStore) {
            store.close().await;
        }
    }
    let h = One(Pg::new(url));
    conformance::cas_race(&h).await;
    conformance::lost_cas_applies_nothing(&h).await;
    conformance::one_failure_does_not_fail_the_others(&h).await;
}

fn from() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 41_000))
}

fn elsewhere() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 9], 41_000))
}

fn checkin(battery_mv: u16) -> Up<'static> {
    Up::CheckIn(CheckIn {
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        trial: false,
        ota: OtaReport {
            state: OtaState::Idle,
            result: UpdateResult::Initial,
            download: None,
        },
        battery_mv,
        forced_sleeps: 0,
        publishes: Default::default(),
    })
}

/// What a server instance does with one datagram (the steps of the store's module docs):
/// `Ok(true)` applied as new, `Ok(false)` answered as a retransmission, `Err` refused.
async fn serve(s: &PgStore, frame: &[u8], source: SocketAddr, now: u64) -> Result<bool, String> {
    let (id, _) = peek_up(frame).map_err(|e| format!("{e:?}"))?;
    let keys = s
        .keys(id)
        .await
        .unwrap()
        .ok_or_else(|| "unknown device".to_string())?;
    // A lost compare-and-set means another instance took a frame of this device meanwhile:
    // read the record again and re-admit (the server's step 4).
    for _ in 0..8 {
        let verified = authenticate(frame, &keys).map_err(|e| format!("{e:?}"))?;
        let last = s.last_frame(id).await.unwrap();
        let (record, effects, new) =
            match admit(verified, last.as_ref(), source, now, ReplayPolicy::DEFAULT) {
                Admission::New { request, record } => (
                    record,
                    Effects::of_request(&request.msg, now, frame.len() as u64, 16),
                    true,
                ),
                Admission::Retransmission { record, .. } => (
                    record,
                    Effects::counters_only(now, frame.len() as u64, 16),
                    false,
                ),
                Admission::Refused(e) => return Err(format!("refused: {e:?}")),
                other => return Err(format!("{other:?}")),
            };
        let won = s
            .commit_frame(FrameCommit {
                device: id,
                expected: last,
                record,
                effects,
            })
            .await
            .unwrap();
        if won {
            return Ok(new);
        }
    }
    Err("lost the compare-and-set 8 times".into())
}

/// Two server instances on one database: one device's consecutive check-ins alternate
/// between them, every one applied once; each frame replayed to the *other* instance (the one
/// that did not take it) is refused as a replay and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_replay_protection() {
    let Some(url) = url() else { return };
    let h = Pg::new(url);
    let a = h.instance().await;
    let b = h.instance().await;
    let p = a
        .add_product(NewProduct {
            name: "fleet".into(),
            hardware_id: [0x42; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let root = [0x77; 32];
    let d = a
        .add_device(
            NewDevice {
                id: None,
                product: p,
                tags: vec![],
                root_key: RootKey::from_bytes(root),
            },
            0,
        )
        .await
        .unwrap();
    let mut dev = DeviceEndpoint::new(
        DeviceConfig::new(d),
        Keys::derive(&root),
        Counters {
            next: 0,
            reserved_until: 1_000,
        },
    );
    let t0 = 1_800_000_000_000u64;
    let window = ReplayPolicy::DEFAULT.retransmit_window_ms;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for i in 0..10u64 {
        // Wakes far enough apart that each replay below is past the retransmission window.
        let now = t0 + i * 10 * window;
        let frame = dev
            .send(now, &checkin(3_600 + i as u16))
            .unwrap()
            .frame
            .to_vec();
        // The device sleeps without waiting for a reply; its next wake sends a new request.
        dev.abandon();
        let (here, there) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(
            serve(here, &frame, from(), now).await,
            Ok(true),
            "check-in {i}"
        );
        // The same frame at the other instance: from another address at once, and from the
        // device's own address after the window, it is refused; within the window, from the
        // device's address, it is a retransmission: answered, not applied again.
        let r = serve(there, &frame, elsewhere(), now + 1).await;
        assert!(r.is_err(), "copy of {i} from elsewhere: {r:?}");
        assert_eq!(serve(there, &frame, from(), now + 2).await, Ok(false));
        let r = serve(there, &frame, from(), now + window + 1).await;
        assert!(
            r.as_ref()
                .is_err_and(|e| e.contains("RetransmissionRefused")),
            "replay of {i} to the other instance: {r:?}"
        );
        // And every earlier frame, to either instance.
        for (j, old) in sent.iter().enumerate() {
            for s in [&a, &b] {
                let r = serve(s, old, from(), now + window + 2).await;
                assert!(
                    r.as_ref().is_err_and(|e| e.contains("Replayed")),
                    "old frame {j} at {i}: {r:?}"
                );
            }
        }
        sent.push(frame);
    }
    for s in [&a, &b] {
        let st = s.status(d).await.unwrap().unwrap();
        assert_eq!(st.wakes, 10, "each check-in applied once");
        assert_eq!(st.last_checkin.unwrap().1.battery_mv, 3_609);
        assert_eq!(s.last_frame(d).await.unwrap().unwrap().counter, 9);
    }
    a.close().await;
    b.close().await;
}

/// The same with the real protocol server: two `Server`s, each on its own `PgStore` of one
/// database. The device's check-ins alternate between them and each is answered with a
/// `Welcome` the device accepts; a replay to the other server is dropped as refused (counted
/// there), a retransmission within the window is answered again and not applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_alternate_and_refuse_replays() {
    use cloud_proto::{AdmitError, Down, Event};
    use ota_cloud::server::{system_clock, Dropped, Server, ServerConfig};
    use std::sync::Arc;

    let Some(url) = url() else { return };
    let h = Pg::new(url);
    let sa = Server::new(
        Arc::new(h.instance().await),
        ServerConfig::default(),
        system_clock(),
    );
    let sb = Server::new(
        Arc::new(h.instance().await),
        ServerConfig::default(),
        system_clock(),
    );
    let p = sa
        .store()
        .add_product(NewProduct {
            name: "servers".into(),
            hardware_id: [0x42; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let root = [0x79; 32];
    let d = sb
        .store()
        .add_device(
            NewDevice {
                id: None,
                product: p,
                tags: vec![],
                root_key: RootKey::from_bytes(root),
            },
            0,
        )
        .await
        .unwrap();
    let mut dev = DeviceEndpoint::new(
        DeviceConfig::new(d),
        Keys::derive(&root),
        Counters {
            next: 0,
            reserved_until: 1_000,
        },
    );
    let window = ServerConfig::default().policy.retransmit_window_ms;
    let t0 = 1_800_000_000_000u64;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for i in 0..6u64 {
        let now = t0 + i * 10 * window;
        let frame = dev
            .send(now, &checkin(3_600 + i as u16))
            .unwrap()
            .frame
            .to_vec();
        let (here, there) = if i % 2 == 0 { (&sa, &sb) } else { (&sb, &sa) };
        let answer = here.handle_frame_at(&frame, from(), now).await.unwrap();
        assert_eq!(answer.frames.len(), 1);
        assert!(
            matches!(
                dev.handle_datagram(now + 1, &answer.frames[0]),
                Ok(Event::Reply(Down::Welcome(_)))
            ),
            "check-in {i} answered with a Welcome"
        );
        // Within the window, from the device's address: a retransmission, answered again.
        assert!(there.handle_frame_at(&frame, from(), now + 2).await.is_ok());
        // Past it: refused by the instance that did not take it.
        assert!(
            matches!(
                there
                    .handle_frame_at(&frame, from(), now + window + 1)
                    .await,
                Err(Dropped::Refused(AdmitError::RetransmissionRefused { .. }))
            ),
            "replay of {i} to the other server"
        );
        for old in &sent {
            for srv in [&sa, &sb] {
                assert!(matches!(
                    srv.handle_frame_at(old, from(), now + window + 2).await,
                    Err(Dropped::Refused(AdmitError::Replayed { .. }))
                ));
            }
        }
        sent.push(frame);
    }
    let st = sa.store().status(d).await.unwrap().unwrap();
    assert_eq!(st.wakes, 6, "each check-in applied once");
    assert_eq!(st.last_checkin.unwrap().1.battery_mv, 3_605);
    // Counted where they arrived: 2 × (0 + 1 + … + 5) old frames, 6 late copies.
    assert_eq!(sa.drops().replayed + sb.drops().replayed, 30);
    assert_eq!(
        sa.drops().retransmission_refused + sb.drops().retransmission_refused,
        6
    );
}

/// Both instances take the same fresh frame at once: exactly one applies it, the other loses
/// the compare-and-set and, re-admitting against the winner's record, does not apply it
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_race_one_frame() {
    let Some(url) = url() else { return };
    let h = Pg::new(url);
    let a = std::sync::Arc::new(h.instance().await);
    let b = std::sync::Arc::new(h.instance().await);
    let p = a
        .add_product(NewProduct {
            name: "race".into(),
            hardware_id: [0; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let root = [0x78; 32];
    let d = b
        .add_device(
            NewDevice {
                id: None,
                product: p,
                tags: vec![],
                root_key: RootKey::from_bytes(root),
            },
            0,
        )
        .await
        .unwrap();
    let keys = Keys::derive(&root);
    for counter in 0..20u32 {
        let mut buf = [0u8; cloud_proto::MAX_FRAME];
        let n = cloud_proto::seal_up(&keys, d, counter, &checkin(3_000), &mut buf).unwrap();
        let frame = buf[..n].to_vec();
        let (fa, fb) = (frame.clone(), frame);
        let now = 1_000 + u64::from(counter) * 100_000;
        let ta = tokio::spawn({
            let a = a.clone();
            async move { serve(&a, &fa, from(), now).await }
        });
        let tb = tokio::spawn({
            let b = b.clone();
            async move { serve(&b, &fb, from(), now).await }
        });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        // One applies it as new; the other, having read (or re-read after losing the
        // compare-and-set) the winner's record, sees a copy: answered, not applied.
        let mut got = [ra.clone(), rb.clone()];
        got.sort();
        assert_eq!(got, [Ok(false), Ok(true)], "frame {counter}: {ra:?} {rb:?}");
    }
    let st = a.status(d).await.unwrap().unwrap();
    assert_eq!(st.wakes, 20);
}

/// A store refuses another master key than the database's, and a schema newer than it
/// knows; a second instance opening the same schema migrates nothing and reads the first
/// one's devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_master_key_and_newer_schema_refused() {
    let Some(url) = url() else { return };
    let h = Pg::new(url.clone());
    let a = h.instance().await;
    let p = a
        .add_product(NewProduct {
            name: "keys".into(),
            hardware_id: [0; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let d = a
        .add_device(
            NewDevice {
                id: Some(DeviceId(12)),
                product: p,
                tags: vec![],
                root_key: RootKey::from_bytes([5; 32]),
            },
            0,
        )
        .await
        .unwrap();
    let err = PgStore::connect(&url, MasterKey::generate().unwrap(), h.options())
        .await
        .unwrap_err();
    assert_eq!(err, OpenError::WrongMasterKey);
    let b = h.instance().await;
    assert!(b
        .root_key(d)
        .await
        .unwrap()
        .unwrap()
        .ct_eq(&RootKey::from_bytes([5; 32])));
    assert!(b.publishes_since(PublishId(0), 1).await.unwrap().is_empty());
    // Pretend a newer ota-cloud migrated this schema.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "UPDATE {}.ota_schema SET version = version + 1",
            h.schema
        ))
        .await
        .unwrap();
    let err = PgStore::connect(&url, MasterKey::load(&h.key).unwrap(), h.options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, OpenError::NewerSchema { found, supported } if found == supported + 1),
        "{err:?}"
    );
    let bad = PgOptions {
        schema: Some("x; DROP TABLE devices".into()),
        ..PgOptions::default()
    };
    assert!(matches!(
        PgStore::connect(&url, MasterKey::load(&h.key).unwrap(), bad).await,
        Err(OpenError::Database(_))
    ));
    a.close().await;
    b.close().await;
}

/// A follower paging through publishes by id while many frames with publishes commit at once
/// (as `ota-cloud events --follow` does) sees every one of them: ids are taken in commit order,
/// so none commits later below the follower's cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_never_skips_a_publish() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let Some(url) = url() else { return };
    let h = Pg::new(url);
    let s = Arc::new(h.instance().await);
    let p = s
        .add_product(NewProduct {
            name: "follow".into(),
            hardware_id: [0; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let (writers, frames) = (8u32, 40u32);
    let mut ids = Vec::new();
    for k in 0..writers {
        ids.push(
            s.add_device(
                NewDevice {
                    id: None,
                    product: p,
                    tags: vec![],
                    root_key: RootKey::from_bytes([k as u8; 32]),
                },
                0,
            )
            .await
            .unwrap(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let follower = tokio::spawn({
        let (s, stop) = (s.clone(), stop.clone());
        async move {
            let mut after = PublishId::default();
            let mut seen = BTreeSet::new();
            loop {
                // Read the flag before the page: the last page is read after every commit.
                let last_round = stop.load(Ordering::SeqCst);
                let page = s.publishes_since(after, 7).await.unwrap();
                for x in &page {
                    seen.insert((x.device, x.counter));
                }
                match page.last() {
                    Some(x) => after = x.id,
                    None if last_round => return seen,
                    None => tokio::task::yield_now().await,
                }
            }
        }
    });
    let mut tasks = Vec::new();
    for d in ids.iter().copied() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut expected = None;
            for c in 0..frames {
                let rec = cloud_proto::LastFrame {
                    counter: c,
                    tag: [c as u8; cloud_proto::TAG_LEN],
                    accepted_at_ms: u64::from(c),
                    source: from(),
                    answers: 1,
                };
                let mut effects = Effects::counters_only(u64::from(c), 1, 1);
                effects.publishes = vec![(1, c.to_le_bytes().to_vec())];
                assert!(s
                    .commit_frame(FrameCommit {
                        device: d,
                        expected,
                        record: rec,
                        effects,
                    })
                    .await
                    .unwrap());
                expected = Some(rec);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let seen = follower.await.unwrap();
    let all: BTreeSet<_> = ids
        .iter()
        .flat_map(|d| (0..frames).map(move |c| (*d, c)))
        .collect();
    let missed: Vec<_> = all.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "the follower skipped {} publishes: {missed:?}",
        missed.len()
    );
}

/// Not a check: sustained check-in transactions per second and their latency on PostgreSQL,
/// the store work of `examples/checkin_bench.rs` (read the record, commit the frame
/// transaction with one publish, or none), `OTA_CLOUD_PG_BENCH="devices seconds in_flight
/// publishes"` (default "1000 3 64 1"). Run it with
/// `bash scripts/postgres-test.sh pg_checkin_bench --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn pg_checkin_bench() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let Some(url) = url() else { return };
    let args: Vec<u64> = std::env::var("OTA_CLOUD_PG_BENCH")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|a| a.parse().ok())
        .collect();
    let devices = *args.first().unwrap_or(&1000) as u32;
    let seconds = *args.get(1).unwrap_or(&3);
    let in_flight = (*args.get(2).unwrap_or(&64) as u32).clamp(1, devices);
    let with_publish = *args.get(3).unwrap_or(&1) != 0;
    let h = Pg::new(url);
    let opts = PgOptions {
        connections: in_flight as usize,
        ..h.options()
    };
    let store = Arc::new(
        PgStore::connect(&h.url, MasterKey::load(&h.key).unwrap(), opts)
            .await
            .unwrap(),
    );
    let p = store
        .add_product(NewProduct {
            name: "bench".into(),
            hardware_id: [0; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    for k in 1..=devices {
        store
            .add_device(
                NewDevice {
                    id: Some(DeviceId(k)),
                    product: p,
                    tags: vec![],
                    root_key: RootKey::from_bytes([k as u8; 32]),
                },
                0,
            )
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..in_flight {
        let (store, done) = (store.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut d = w + 1;
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let dev = DeviceId(d);
                let t = Instant::now();
                let last = store.last_frame(dev).await.unwrap();
                let counter = last.map_or(0, |l| l.counter + 1);
                let now = start.elapsed().as_millis() as u64;
                let mut effects = Effects::of_request(&checkin(3_700), now, 60, 40);
                if with_publish {
                    effects.publishes = vec![(1, counter.to_le_bytes().to_vec())];
                }
                let won = store
                    .commit_frame(FrameCommit {
                        device: dev,
                        expected: last,
                        record: cloud_proto::LastFrame {
                            counter,
                            tag: [counter as u8; cloud_proto::TAG_LEN],
                            accepted_at_ms: now,
                            source: from(),
                            answers: 1,
                        },
                        effects,
                    })
                    .await
                    .unwrap();
                if won {
                    done.fetch_add(1, Ordering::Relaxed);
                    lat.push(t.elapsed());
                }
                d += in_flight;
                if d > devices {
                    d = w + 1;
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    lat.sort();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "PostgreSQL, {devices} devices, {in_flight} in flight, publish per check-in: {with_publish}: {:.0} check-ins/s, p50 {:.2} ms, p99 {:.2} ms ({n} in {elapsed:.1} s)",
        n as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}

/// The `ota-cloud` binary on PostgreSQL (`--db`, `--db-schema`): init → product add → device
/// add → release upload, then two `serve` processes on the one database answer one device's
/// consecutive check-ins alternately.
#[tokio::test]
async fn cli_on_postgres_two_servers() {
    let Some(url) = url() else { return };
    let schema = fresh_schema();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ota-cloud"))
            .arg("--data")
            .arg(&data)
            .args(["--db", &url, "--db-schema", &schema])
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = cli(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    ok(&["init"]);
    assert!(!data.join("ota.db").exists(), "no SQLite file with --db");
    let again = cli(&["init"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("initialised already"));

    let signer = common::signer();
    let pem = tmp.path().join("release.pub.pem");
    std::fs::write(&pem, common::public_pem(&signer)).unwrap();
    let pem = pem.to_str().unwrap();
    let product = ok(&[
        "product",
        "add",
        "--name",
        "t",
        "--hardware-id",
        common::HW,
        "--release-key",
        pem,
    ]);
    assert_eq!(product.trim(), "1");
    let key = tmp.path().join("device.key");
    ok(&[
        "device",
        "add",
        "--product",
        "1",
        "--key-out",
        key.to_str().unwrap(),
    ]);
    let kf = ota_cloud::keyfile::DeviceKeyFile::read(&key).unwrap();
    let file = tmp.path().join("fw.ota");
    let c = common::container(&signer, common::HW, (1, 2, 0), &common::image(2_000, 9));
    std::fs::write(&file, c).unwrap();
    ok(&[
        "release",
        "upload",
        "--product",
        "1",
        file.to_str().unwrap(),
    ]);
    // Nothing is offered without a rollout; the release's id is its first one.
    let rollout = ok(&["rollout", "start", "--release", "1", "--product", "1"]);
    assert_eq!(rollout.trim(), "1");

    let spawn = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ota-cloud"))
            .arg("--data")
            .arg(&data)
            .args(["--db", &url, "--db-schema", &schema])
            .args([
                "serve",
                "--udp",
                "127.0.0.1:0",
                "--tcp",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"listening"), "{line}");
        let udp: SocketAddr = words[2].parse().unwrap();
        (Killed(child), udp)
    };
    let (_a, udp_a) = spawn();
    let (_b, udp_b) = spawn();
    let mut dev = common::Device::new(kf.device, *kf.root_key.expose());
    for (i, udp) in [udp_a, udp_b, udp_a, udp_b].into_iter().enumerate() {
        let mut ep = dev.wake();
        let mut link = common::Link::udp(udp).await;
        let got = dev
            .request(
                &mut ep,
                &mut link,
                &common::checkin(common::fw(1, 0, 0), None),
            )
            .await;
        let common::Got::Welcome { offer: Some(o), .. } = got else {
            panic!("check-in {i} via {udp}: {got:?}")
        };
        assert_eq!(o.version, common::fw(1, 2, 0));
    }
    let show = ok(&["device", "show", &kf.device.0.to_string()]);
    assert!(show.contains("wakes 4"), "{show}");
}

/// Kills a spawned server even when an assertion fails.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
