//! The conformance suite: what every [`Store`] must do, as async functions generic over a
//! [`Harness`] that opens (and reopens) one database. Each backend's `tests/` calls [`run`] (or
//! the checks one by one); `tests/postgres.rs` runs it unchanged on PostgreSQL.
//!
//! The checks **panic** on a violation (they are test code). Each uses its own product and
//! store-assigned device ids, so they can share one database, in any order, and the database
//! need not be empty (only [`publishes_survive_reopen`] and [`release_by_digest`] read
//! globally, filtering by their own device or product).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use cloud_proto::{
    admit, authenticate, peek_up, seal_up, Admission, CheckIn, DeviceId, DownloadProgress,
    FirmwareVersion, Goodbye, Keys, LastFrame, OtaReport, OtaState, Publish, ReplayPolicy, Up,
    UpdateDecision, UpdateId, UpdateResult, UpdateStatus, MAX_FRAME, TAG_LEN,
};

use super::{
    Effects, FrameCommit, NewDevice, NewProduct, ProductId, PublishId, Release, ReleaseBody,
    ReleaseDigest, Store, StoreError,
};
use crate::seal::RootKey;

/// Opens the database under test, and opens it again after [`Harness::close`] (for the
/// durability checks). Implemented by each backend's tests. The checks spawn tasks: run them
/// inside a multi-threaded tokio runtime (`#[tokio::test(flavor = "multi_thread")]`).
pub trait Harness: Sync {
    /// The store type.
    type S: Store;
    /// Opens the same database every time (creating it the first time).
    fn open(&self) -> impl Future<Output = Self::S> + Send;
    /// Closes a store, finishing its writes (what a clean shutdown does).
    fn close(&self, store: Self::S) -> impl Future<Output = ()> + Send;
}

/// Runs every check in turn. Panics on the first violation.
pub async fn run<H: Harness>(h: &H) {
    products_and_release_keys(h).await;
    devices_and_sealed_keys(h).await;
    unknown_device(h).await;
    frame_flow_and_status(h).await;
    cas_race(h).await;
    lost_cas_applies_nothing(h).await;
    one_failure_does_not_fail_the_others(h).await;
    publishes_survive_reopen(h).await;
    release_by_digest(h).await;
}

const PEM_A: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
const PEM_B: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";

fn unique(prefix: &str) -> String {
    let mut r = [0u8; 8];
    // A name collision only fails the check loudly; randomness keeps reruns on one DB apart.
    let _ = getrandom::fill(&mut r);
    format!("{prefix}-{}", u64::from_le_bytes(r))
}

async fn product<S: Store>(s: &S, prefix: &str) -> ProductId {
    s.add_product(NewProduct {
        name: unique(prefix),
        hardware_id: [0x11; 16],
        release_keys: vec![PEM_A.to_string()],
    })
    .await
    .expect("add_product")
}

async fn device<S: Store>(s: &S, p: ProductId, root: [u8; 32]) -> DeviceId {
    s.add_device(
        NewDevice {
            id: None,
            product: p,
            tags: vec!["field".into(), "beta".into()],
            root_key: RootKey::from_bytes(root),
        },
        1_000,
    )
    .await
    .expect("add_device")
}

fn addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 40_000))
}

fn record(counter: u32, tag: u8, at: u64) -> LastFrame {
    LastFrame {
        counter,
        tag: [tag; TAG_LEN],
        accepted_at_ms: at,
        source: addr(),
        answers: 1,
    }
}

fn checkin<'a>(publishes: &[Publish<'a>]) -> Up<'a> {
    Up::CheckIn(CheckIn {
        firmware: FirmwareVersion {
            major: 1,
            minor: 2,
            patch: 3,
        },
        trial: true,
        ota: OtaReport {
            state: OtaState::Downloading,
            result: UpdateResult::Initial,
            download: Some(DownloadProgress {
                update: UpdateId(9),
                bytes_done: 4096,
            }),
        },
        battery_mv: 3_700,
        forced_sleeps: 2,
        publishes: publishes.iter().copied().collect(),
    })
}

/// Products: add, read back, unique names, release keys added (several, in order) and removed.
pub async fn products_and_release_keys<H: Harness>(h: &H) {
    let s = h.open().await;
    let name = unique("prod");
    let p = s
        .add_product(NewProduct {
            name: name.clone(),
            hardware_id: [0x22; 16],
            release_keys: vec![PEM_A.into()],
        })
        .await
        .unwrap();
    let dup = s
        .add_product(NewProduct {
            name: name.clone(),
            hardware_id: [0; 16],
            release_keys: vec![],
        })
        .await;
    assert_eq!(dup, Err(StoreError::AlreadyExists));
    s.add_release_key(p, PEM_B.into()).await.unwrap();
    s.add_release_key(p, PEM_B.into()).await.unwrap(); // no-op
    let got = s.product(p).await.unwrap().unwrap();
    assert_eq!(got.name, name);
    assert_eq!(got.hardware_id, [0x22; 16]);
    assert_eq!(got.release_keys, vec![PEM_A.to_string(), PEM_B.to_string()]);
    assert!(s.remove_release_key(p, PEM_A.into()).await.unwrap());
    assert!(!s.remove_release_key(p, PEM_A.into()).await.unwrap());
    let got = s.product(p).await.unwrap().unwrap();
    assert_eq!(got.release_keys, vec![PEM_B.to_string()]);
    assert!(matches!(
        s.add_release_key(p, "not a key".into()).await,
        Err(StoreError::Invalid(_))
    ));
    let bad = s
        .add_product(NewProduct {
            name: unique("prod"),
            hardware_id: [0; 16],
            release_keys: vec!["not a key".into()],
        })
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));
    let missing = ProductId(u32::MAX);
    assert_eq!(s.product(missing).await.unwrap(), None);
    assert_eq!(
        s.add_release_key(missing, PEM_A.into()).await,
        Err(StoreError::UnknownProduct(missing))
    );
    h.close(s).await;
}

/// Devices: ids assigned or given, tags, duplicate ids refused, the sealed root key opens to
/// the same key and its derived keys authenticate the device's frames.
pub async fn devices_and_sealed_keys<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "dev").await;
    let root = [0x5A; 32];
    let d = device(&s, p, root).await;
    let info = s.device(d).await.unwrap().unwrap();
    assert_eq!(info.product, p);
    assert_eq!(info.tags, vec!["beta".to_string(), "field".to_string()]);
    assert_eq!(info.created_ms, 1_000);
    assert!(s.devices().await.unwrap().iter().any(|x| x.id == d));
    let dup = s
        .add_device(
            NewDevice {
                id: Some(d),
                product: p,
                tags: vec![],
                root_key: RootKey::from_bytes([1; 32]),
            },
            0,
        )
        .await;
    assert_eq!(dup, Err(StoreError::AlreadyExists));
    // The duplicate did not replace the key.
    let key = s.root_key(d).await.unwrap().unwrap();
    assert!(key.ct_eq(&RootKey::from_bytes(root)));
    assert!(!format!("{key:?}").contains("90"), "Debug must redact");
    // The store's keys verify a frame the device sealed with its own.
    let keys = s.keys(d).await.unwrap().unwrap();
    let mut frame = [0u8; MAX_FRAME];
    let n = seal_up(
        &Keys::derive(&root),
        d,
        0,
        &Up::Goodbye(Goodbye { sleep_s: 1 }),
        &mut frame,
    )
    .unwrap();
    assert!(authenticate(&frame[..n], &keys).is_ok());
    let missing = ProductId(u32::MAX);
    let r = s
        .add_device(
            NewDevice {
                id: None,
                product: missing,
                tags: vec![],
                root_key: RootKey::from_bytes([1; 32]),
            },
            0,
        )
        .await;
    assert_eq!(r, Err(StoreError::UnknownProduct(missing)));
    h.close(s).await;
}

/// An unknown device: reads give `None`, the frame transaction refuses it.
pub async fn unknown_device<H: Harness>(h: &H) {
    let s = h.open().await;
    let d = DeviceId(u32::MAX);
    assert!(s.keys(d).await.unwrap().is_none());
    assert!(s.root_key(d).await.unwrap().is_none());
    assert_eq!(s.last_frame(d).await.unwrap(), None);
    assert_eq!(s.status(d).await.unwrap(), None);
    assert_eq!(s.device(d).await.unwrap(), None);
    let r = s
        .commit_frame(FrameCommit {
            device: d,
            expected: None,
            record: record(0, 1, 0),
            effects: Effects::counters_only(0, 10, 10),
        })
        .await;
    assert_eq!(r, Err(StoreError::UnknownDevice(d)));
    h.close(s).await;
}

/// The server's path end to end, frame by frame (peek, keys, authenticate, last frame,
/// admit, commit), then the status read back: check-in, retransmission (counted, not applied
/// twice), decision, status change, goodbye (awake time), and the replay refused after.
pub async fn frame_flow_and_status<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "flow").await;
    let root = [0x33; 32];
    let d = device(&s, p, root).await;
    let dev_keys = Keys::derive(&root);
    let policy = ReplayPolicy::DEFAULT;
    // One frame through the server's steps; returns whether it was applied as new.
    let step = |counter: u32, msg: Up<'static>, now: u64| {
        let s = &s;
        let dev_keys = &dev_keys;
        async move {
            let mut buf = [0u8; MAX_FRAME];
            let n = seal_up(dev_keys, d, counter, &msg, &mut buf).unwrap();
            let frame = &buf[..n];
            let (id, _) = peek_up(frame).unwrap();
            let keys = s.keys(id).await.unwrap().unwrap();
            let verified = authenticate(frame, &keys).unwrap();
            let last = s.last_frame(id).await.unwrap();
            let (record, effects, new) = match admit(verified, last.as_ref(), addr(), now, policy) {
                Admission::New { request, record } => (
                    record,
                    Effects::of_request(&request.msg, now, n as u64, 20),
                    true,
                ),
                Admission::Retransmission { record, .. } => {
                    (record, Effects::counters_only(now, n as u64, 20), false)
                }
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
            assert!(won, "no concurrent writer here");
            Ok((new, n as u64))
        }
    };
    let t0 = 1_700_000_000_000u64;
    let data: &'static [u8] = b"temp=21.5";
    let (new, n0) = step(0, checkin(&[Publish { topic: 7, data }]), t0)
        .await
        .unwrap();
    assert!(new);
    let (new, n1) = step(0, checkin(&[Publish { topic: 7, data }]), t0 + 500)
        .await
        .unwrap();
    assert!(!new, "a copy is a retransmission");
    let decision = UpdateDecision {
        update: UpdateId(9),
        decision: cloud_proto::Decision::Accept { bytes_done: 4096 },
    };
    let (_, n2) = step(1, Up::UpdateDecision(decision), t0 + 1_000)
        .await
        .unwrap();
    let status = UpdateStatus {
        update: UpdateId(9),
        state: OtaState::Downloaded,
        result: UpdateResult::Initial,
    };
    let (_, n3) = step(2, Up::UpdateStatus(status), t0 + 2_000).await.unwrap();
    let (_, n4) = step(3, Up::Goodbye(Goodbye { sleep_s: 600 }), t0 + 4_000)
        .await
        .unwrap();
    // A replay of the check-in is refused now: the stored record says counter 3.
    assert!(step(0, checkin(&[]), t0 + 5_000).await.is_err());

    let st = s.status(d).await.unwrap().unwrap();
    assert_eq!(st.wakes, 1, "the retransmission did not count a wake");
    assert_eq!(st.publishes, 1, "nor store its publish twice");
    assert_eq!(st.bytes_up, n0 + n1 + n2 + n3 + n4);
    assert_eq!(st.bytes_down, 5 * 20);
    assert_eq!(st.last_seen_ms, Some(t0 + 4_000));
    let (at, ci) = st.last_checkin.unwrap();
    assert_eq!(at, t0);
    assert_eq!(
        ci.firmware,
        FirmwareVersion {
            major: 1,
            minor: 2,
            patch: 3
        }
    );
    assert!(ci.trial);
    assert_eq!(ci.battery_mv, 3_700);
    assert_eq!(ci.download, Some((UpdateId(9), 4096)));
    assert_eq!(ci.state, OtaState::Downloading);
    assert_eq!(st.forced_sleeps, 2);
    assert_eq!(st.last_decision, Some(decision));
    assert_eq!(st.last_status, Some(status));
    assert_eq!(st.state, OtaState::Downloaded, "the later status wins");
    assert_eq!(st.awake_ms, 4_000);
    assert_eq!(st.next_wake_ms, Some(t0 + 4_000 + 600_000));
    let lf = s.last_frame(d).await.unwrap().unwrap();
    assert_eq!(lf.counter, 3);
    let pubs: Vec<_> = all_publishes(&s)
        .await
        .into_iter()
        .filter(|x| x.device == d)
        .collect();
    assert_eq!(pubs.len(), 1);
    assert_eq!(
        (pubs[0].topic, &pubs[0].data[..], pubs[0].counter),
        (7, data, 0)
    );
    assert_eq!(pubs[0].received_ms, t0);
    h.close(s).await;
}

async fn all_publishes<S: Store>(s: &S) -> Vec<super::StoredPublish> {
    let mut out = Vec::new();
    let mut after = PublishId::default();
    loop {
        let page = s.publishes_since(after, 50).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        assert!(page.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
        after = last.id;
        out.extend(page);
    }
}

/// Eight concurrent frame transactions of one device from the same old record: exactly one
/// wins, and only its effects are applied (one wake, its publish only). Repeated over several
/// rounds, each from the record the last one left.
pub async fn cas_race<H: Harness>(h: &H) {
    let s = Arc::new(h.open().await);
    let p = product(&*s, "race").await;
    let d = device(&*s, p, [0x44; 32]).await;
    for round in 0..5u32 {
        let expected = s.last_frame(d).await.unwrap();
        let mut tasks = Vec::new();
        for k in 0..8u8 {
            let s = s.clone();
            let mut effects = Effects::of_request(
                &checkin(&[Publish {
                    topic: u16::from(k),
                    data: b"x",
                }]),
                10 + u64::from(round),
                1,
                1,
            );
            effects.now_ms = 1_000 * u64::from(round) + u64::from(k);
            tasks.push(tokio::spawn(async move {
                let won = s
                    .commit_frame(FrameCommit {
                        device: d,
                        expected,
                        record: record(round, k, u64::from(round)),
                        effects,
                    })
                    .await
                    .unwrap();
                (k, won)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (k, won) = t.await.unwrap();
            if won {
                winners.push(k);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        let k = winners[0];
        assert_eq!(
            s.last_frame(d).await.unwrap(),
            Some(record(round, k, u64::from(round)))
        );
        let st = s.status(d).await.unwrap().unwrap();
        assert_eq!(st.wakes, u64::from(round) + 1);
        assert_eq!(st.publishes, u64::from(round) + 1);
        assert_eq!(
            st.last_seen_ms,
            Some(1_000 * u64::from(round) + u64::from(k))
        );
    }
    let topics: Vec<_> = all_publishes(&*s)
        .await
        .into_iter()
        .filter(|x| x.device == d)
        .collect();
    assert_eq!(topics.len(), 5, "one publish per round, the winner's");
    if let Ok(s) = Arc::try_unwrap(s) {
        h.close(s).await;
    }
}

/// A transaction whose compare fails applies none of its effects.
pub async fn lost_cas_applies_nothing<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "lost").await;
    let d = device(&s, p, [0x55; 32]).await;
    let first = record(0, 1, 5);
    assert!(s
        .commit_frame(FrameCommit {
            device: d,
            expected: None,
            record: first,
            effects: Effects::counters_only(5, 1, 1),
        })
        .await
        .unwrap());
    let before = s.status(d).await.unwrap().unwrap();
    for stale in [
        None,
        Some(record(0, 2, 5)),
        Some(LastFrame {
            answers: 2,
            ..first
        }),
    ] {
        let mut effects = Effects::of_request(
            &checkin(&[Publish {
                topic: 1,
                data: b"lost",
            }]),
            99,
            100,
            100,
        );
        effects.goodbye_sleep_s = Some(1);
        let won = s
            .commit_frame(FrameCommit {
                device: d,
                expected: stale,
                record: record(1, 3, 99),
                effects,
            })
            .await
            .unwrap();
        assert!(!won, "stale {stale:?} must lose");
    }
    assert_eq!(s.status(d).await.unwrap().unwrap(), before);
    assert_eq!(s.last_frame(d).await.unwrap(), Some(first));
    assert!(!all_publishes(&s).await.iter().any(|x| x.device == d));
    h.close(s).await;
}

/// Many devices' frame transactions at once (a group commit, where the store batches), one of
/// them for an unknown device and one with a stale record: those two fail or lose alone, every
/// other one wins and is applied.
pub async fn one_failure_does_not_fail_the_others<H: Harness>(h: &H) {
    let s = Arc::new(h.open().await);
    let p = product(&*s, "batch").await;
    let mut ids = Vec::new();
    for k in 0..16u8 {
        ids.push(device(&*s, p, [k; 32]).await);
    }
    let unknown = DeviceId(u32::MAX);
    let mut tasks = Vec::new();
    for (k, d) in ids.iter().copied().chain([unknown]).enumerate() {
        let s = s.clone();
        // The second device is given a stale record: it must lose, apply nothing.
        let expected = (k == 1).then(|| record(7, 7, 7));
        let mut effects = Effects::counters_only(5, 10, 10);
        effects.publishes = vec![(k as u16, vec![k as u8])];
        tasks.push(tokio::spawn(async move {
            s.commit_frame(FrameCommit {
                device: d,
                expected,
                record: record(0, k as u8, 5),
                effects,
            })
            .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for (k, r) in results.iter().enumerate() {
        match k {
            1 => assert_eq!(r, &Ok(false)),
            16 => assert_eq!(r, &Err(StoreError::UnknownDevice(unknown))),
            _ => assert_eq!(r, &Ok(true), "device #{k}"),
        }
    }
    let pubs = all_publishes(&*s).await;
    for (k, d) in ids.iter().enumerate() {
        let st = s.status(*d).await.unwrap().unwrap();
        let applied = k != 1;
        assert_eq!(st.bytes_up, if applied { 10 } else { 0 }, "device #{k}");
        assert_eq!(
            pubs.iter().filter(|x| x.device == *d).count(),
            usize::from(applied)
        );
    }
    if let Ok(s) = Arc::try_unwrap(s) {
        h.close(s).await;
    }
}

/// Publishes, replay records and status survive a close and a reopen.
pub async fn publishes_survive_reopen<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "durable").await;
    let d = device(&s, p, [0x66; 32]).await;
    let mut expected = None;
    for c in 0..20u32 {
        let rec = record(c, c as u8, u64::from(c));
        let mut effects = Effects::counters_only(u64::from(c), 1, 1);
        effects.publishes = vec![(c as u16, c.to_le_bytes().to_vec())];
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
    h.close(s).await;
    let s = h.open().await;
    let mine: Vec<_> = all_publishes(&s)
        .await
        .into_iter()
        .filter(|x| x.device == d)
        .collect();
    assert_eq!(mine.len(), 20);
    for (c, pb) in mine.iter().enumerate() {
        assert_eq!(pb.counter, c as u32);
        assert_eq!(pb.data, (c as u32).to_le_bytes());
    }
    assert_eq!(s.last_frame(d).await.unwrap(), expected);
    assert_eq!(s.status(d).await.unwrap().unwrap().publishes, 20);
    assert!(s.keys(d).await.unwrap().is_some(), "the sealed key reopens");
    h.close(s).await;
}

/// Releases by digest: inline bytes and file paths, digest and size checked, duplicates and
/// unknown products refused, listed per product.
pub async fn release_by_digest<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "rel").await;
    let container = unique("container").into_bytes();
    let rel = Release {
        digest: ReleaseDigest::of(&container),
        product: p,
        version: FirmwareVersion {
            major: 2,
            minor: 0,
            patch: 1,
        },
        security_counter: 7,
        hardware_id: [0x11; 16],
        size: container.len() as u64,
        body: ReleaseBody::Inline(container.clone()),
        created_ms: 10,
    };
    s.put_release(rel.clone()).await.unwrap();
    assert_eq!(s.release(rel.digest).await.unwrap(), Some(rel.clone()));
    assert_eq!(
        s.put_release(rel.clone()).await,
        Err(StoreError::AlreadyExists)
    );
    let bad = Release {
        digest: ReleaseDigest([0; 32]),
        ..rel.clone()
    };
    assert!(matches!(
        s.put_release(bad).await,
        Err(StoreError::Invalid(_))
    ));
    let file = Release {
        digest: ReleaseDigest::of(unique("elsewhere").as_bytes()),
        body: ReleaseBody::File("/var/lib/ota-cloud/images/x.bin".into()),
        created_ms: 20,
        ..rel.clone()
    };
    s.put_release(file.clone()).await.unwrap();
    assert_eq!(s.release(file.digest).await.unwrap(), Some(file.clone()));
    assert_eq!(s.releases(p).await.unwrap(), vec![rel.clone(), file]);
    assert_eq!(s.release(ReleaseDigest([0xEE; 32])).await.unwrap(), None);
    let orphan = Release {
        product: ProductId(u32::MAX),
        ..rel
    };
    assert_eq!(
        s.put_release(orphan).await,
        Err(StoreError::UnknownProduct(ProductId(u32::MAX)))
    );
    h.close(s).await;
}
