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
    CheckInReport, Effects, FrameCommit, NewDevice, NewProduct, ProductId, PublishId, Release,
    ReleaseBody, ReleaseDigest, Store, StoreError,
};
use crate::rollout::{
    in_share, DevicePhase, ErrorThreshold, NewRollout, PauseCause, ReleaseId, RolloutChange,
    RolloutId, RolloutProgress, RolloutState, Share, Target,
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
    products_listed(h).await;
    devices_and_sealed_keys(h).await;
    unknown_device(h).await;
    frame_flow_and_status(h).await;
    cas_race(h).await;
    lost_cas_applies_nothing(h).await;
    one_failure_does_not_fail_the_others(h).await;
    publishes_survive_reopen(h).await;
    device_publishes_paged(h).await;
    release_by_digest(h).await;
    release_ids_are_stable(h).await;
    rollout_lifecycle(h).await;
    offer_candidates_by_target(h).await;
    rollout_phases_and_progress(h).await;
    error_threshold_pauses_in_the_frame_transaction(h).await;
    wakes_recorded_and_bounded(h).await;
    fleet_and_update_history(h).await;
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

/// [`Store::products`]: every product, by id, each as [`Store::product`] reads it (release
/// keys in their order), a product without keys included.
pub async fn products_listed<H: Harness>(h: &H) {
    let s = h.open().await;
    let a = product(&s, "list").await;
    s.add_release_key(a, PEM_B.into()).await.unwrap();
    let b = s
        .add_product(NewProduct {
            name: unique("list"),
            hardware_id: [0x33; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let c = product(&s, "list").await;
    assert!(s.remove_release_key(c, PEM_A.into()).await.unwrap());
    s.add_release_key(c, PEM_B.into()).await.unwrap();
    s.add_release_key(c, PEM_A.into()).await.unwrap();
    let all = s.products().await.unwrap();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "by id");
    for p in &all {
        assert_eq!(Some(p), s.product(p.id).await.unwrap().as_ref());
    }
    let mine: Vec<_> = all
        .iter()
        .filter(|p| [a, b, c].contains(&p.id))
        .map(|p| (p.id, p.release_keys.clone()))
        .collect();
    assert_eq!(
        mine,
        vec![
            (a, vec![PEM_A.to_string(), PEM_B.to_string()]),
            (b, vec![]),
            (c, vec![PEM_B.to_string(), PEM_A.to_string()]),
        ]
    );
    h.close(s).await;
}

/// [`Store::device_publishes`]: one device's publishes, oldest first, paged by id, none of
/// another device's; empty past the last one and for an unknown device.
pub async fn device_publishes_paged<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "devpub").await;
    let a = device(&s, p, [0x67; 32]).await;
    let b = device(&s, p, [0x68; 32]).await;
    let mut last = [None, None];
    for n in 0..11u32 {
        let (d, i) = if n % 3 == 1 { (b, 1) } else { (a, 0) };
        let rec = record(n, n as u8, u64::from(n));
        let mut effects = Effects::counters_only(u64::from(n), 1, 1);
        effects.publishes = vec![(n as u16, vec![n as u8])];
        assert!(s
            .commit_frame(FrameCommit {
                device: d,
                expected: last[i],
                record: rec,
                effects,
            })
            .await
            .unwrap());
        last[i] = Some(rec);
    }
    for d in [a, b] {
        let expected: Vec<_> = all_publishes(&s)
            .await
            .into_iter()
            .filter(|x| x.device == d)
            .collect();
        assert_eq!(
            s.device_publishes(d, PublishId(0), 100).await.unwrap(),
            expected
        );
        let mut paged = Vec::new();
        let mut after = PublishId(0);
        loop {
            let page = s.device_publishes(d, after, 2).await.unwrap();
            assert!(page.len() <= 2);
            let Some(l) = page.last() else { break };
            after = l.id;
            paged.extend(page);
        }
        assert_eq!(paged, expected);
    }
    let of_b: Vec<u8> = s
        .device_publishes(b, PublishId(0), 100)
        .await
        .unwrap()
        .iter()
        .map(|x| x.data[0])
        .collect();
    assert_eq!(of_b, [1, 4, 7, 10]);
    let unknown = DeviceId(u32::MAX - 3);
    assert!(s.device(unknown).await.unwrap().is_none());
    assert!(s
        .device_publishes(unknown, PublishId(0), 10)
        .await
        .unwrap()
        .is_empty());
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
    let listed: Vec<Release> = s
        .releases(p)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(listed, vec![rel.clone(), file]);
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

async fn release_at<S: Store>(s: &S, p: ProductId, version: (u16, u16, u16)) -> ReleaseId {
    let container = unique("rollout-container").into_bytes();
    s.put_release(Release {
        digest: ReleaseDigest::of(&container),
        product: p,
        version: FirmwareVersion {
            major: version.0,
            minor: version.1,
            patch: version.2,
        },
        security_counter: 1,
        hardware_id: [0x11; 16],
        size: container.len() as u64,
        body: ReleaseBody::Inline(container),
        created_ms: 5,
    })
    .await
    .expect("put_release")
}

async fn tagged<S: Store>(s: &S, p: ProductId, tags: &[&str]) -> DeviceId {
    s.add_device(
        NewDevice {
            id: None,
            product: p,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            root_key: RootKey::from_bytes([0x44; 32]),
        },
        1_000,
    )
    .await
    .expect("add_device")
}

fn new_rollout(release: ReleaseId, target: Target) -> NewRollout {
    NewRollout {
        release,
        target,
        share: Share::ALL,
        error_threshold: None,
        defer_until_ms: None,
        created_ms: 1_234,
    }
}

/// Commits one frame of `device` with `effects` (the next counter; no crypto needed here).
async fn apply<S: Store>(s: &S, device: DeviceId, effects: Effects) {
    let last = s.last_frame(device).await.unwrap();
    let counter = last.map_or(0, |l| l.counter + 1);
    let won = s
        .commit_frame(FrameCommit {
            device,
            expected: last,
            record: record(counter, 1, effects.now_ms),
            effects,
        })
        .await
        .unwrap();
    assert!(won);
}

fn offer_effects(now: u64, rollout: RolloutId, release: ReleaseId) -> Effects {
    Effects {
        offer: Some((rollout, release)),
        ..Effects::counters_only(now, 10, 10)
    }
}

fn status_effects(now: u64, release: ReleaseId, state: OtaState, result: UpdateResult) -> Effects {
    Effects {
        status: Some(UpdateStatus {
            update: release.update_id(),
            state,
            result,
        }),
        ..Effects::counters_only(now, 10, 10)
    }
}

fn decision_effects(now: u64, release: ReleaseId, decision: cloud_proto::Decision) -> Effects {
    Effects {
        decision: Some(UpdateDecision {
            update: release.update_id(),
            decision,
        }),
        ..Effects::counters_only(now, 10, 10)
    }
}

/// Release ids: assigned by `put_release`, increasing across products, readable by id and by
/// digest, listed with the product's releases; an unknown id is `None`.
pub async fn release_ids_are_stable<H: Harness>(h: &H) {
    let s = h.open().await;
    let (p, q) = (product(&s, "ids").await, product(&s, "ids2").await);
    let a = release_at(&s, p, (1, 0, 0)).await;
    let b = release_at(&s, q, (1, 0, 0)).await;
    let c = release_at(&s, p, (1, 1, 0)).await;
    assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
    let rc = s.release_by_id(c).await.unwrap().unwrap();
    assert_eq!(rc.product, p);
    assert_eq!(s.release_id(rc.digest).await.unwrap(), Some(c));
    let ids: Vec<ReleaseId> = s
        .releases(p)
        .await
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(ids, vec![a, c]);
    assert_eq!(s.release_by_id(ReleaseId(u32::MAX)).await.unwrap(), None);
    assert_eq!(s.release_id(ReleaseDigest([0xAB; 32])).await.unwrap(), None);
    h.close(s).await;
    // Still the same after a reopen.
    let s = h.open().await;
    assert_eq!(s.release_by_id(c).await.unwrap(), Some(rc));
    h.close(s).await;
}

/// Adding rollouts (refusals change nothing), reading them back, and every change: allowed
/// ones apply, illegal ones are `IllegalTransition` / `Invalid` and change nothing.
pub async fn rollout_lifecycle<H: Harness>(h: &H) {
    let s = h.open().await;
    let (p, other) = (product(&s, "ro").await, product(&s, "ro-other").await);
    let rel = release_at(&s, p, (2, 0, 0)).await;
    let stranger = tagged(&s, other, &[]).await;
    let before = s.rollouts(Some(p)).await.unwrap();
    assert!(before.is_empty());
    assert_eq!(
        s.add_rollout(new_rollout(ReleaseId(u32::MAX), Target::Product))
            .await,
        Err(StoreError::UnknownRelease(ReleaseId(u32::MAX)))
    );
    assert_eq!(
        s.add_rollout(new_rollout(rel, Target::Device(DeviceId(u32::MAX))))
            .await,
        Err(StoreError::UnknownDevice(DeviceId(u32::MAX)))
    );
    assert!(matches!(
        s.add_rollout(new_rollout(rel, Target::Device(stranger)))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_rollout(new_rollout(rel, Target::Group(String::new())))
            .await,
        Err(StoreError::Invalid(_))
    ));
    let zero_min = NewRollout {
        error_threshold: Some(ErrorThreshold {
            max_failed: Share::percent(10).unwrap(),
            min_finished: 0,
        }),
        ..new_rollout(rel, Target::Product)
    };
    assert!(matches!(
        s.add_rollout(zero_min).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        s.rollouts(Some(p)).await.unwrap().is_empty(),
        "refusals added nothing"
    );

    let spec = NewRollout {
        share: Share::percent(10).unwrap(),
        error_threshold: Some(ErrorThreshold {
            max_failed: Share::from_bp(2_550).unwrap(),
            min_finished: 4,
        }),
        defer_until_ms: Some(9_000),
        ..new_rollout(rel, Target::Group("beta".into()))
    };
    let id = s.add_rollout(spec.clone()).await.unwrap();
    let r = s.rollout(id).await.unwrap().unwrap();
    assert_eq!(
        (r.id, r.release, r.product, r.version, &r.target, r.share),
        (
            id,
            rel,
            p,
            FirmwareVersion {
                major: 2,
                minor: 0,
                patch: 0
            },
            &spec.target,
            spec.share
        )
    );
    assert_eq!(
        (r.error_threshold, r.defer_until_ms),
        (spec.error_threshold, spec.defer_until_ms)
    );
    assert_eq!((r.state, r.created_ms), (RolloutState::Running, 1_234));
    assert!(u64::from(r.seed) < crate::rollout::BUCKET_PRIME);
    let second = s
        .add_rollout(new_rollout(rel, Target::Product))
        .await
        .unwrap();
    assert!(second > id);
    let listed: Vec<RolloutId> = s
        .rollouts(Some(p))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![id, second]);
    assert!(s
        .rollouts(None)
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == second));
    assert!(s.rollouts(Some(other)).await.unwrap().is_empty());

    let illegal = |from: &'static str, change: &'static str| {
        Err(StoreError::IllegalTransition {
            rollout: id,
            from,
            change,
        })
    };
    let paused = s.update_rollout(id, RolloutChange::Pause).await.unwrap();
    assert_eq!(paused.state, RolloutState::Paused(PauseCause::Operator));
    assert_eq!(
        s.update_rollout(id, RolloutChange::Pause).await,
        illegal("paused", "pause")
    );
    let raised = s
        .update_rollout(id, RolloutChange::Share(Share::percent(50).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        (raised.share, raised.state),
        (Share::percent(50).unwrap(), paused.state)
    );
    assert!(matches!(
        s.update_rollout(id, RolloutChange::Share(Share::percent(20).unwrap()))
            .await,
        Err(StoreError::Invalid(_))
    ));
    let running = s.update_rollout(id, RolloutChange::Resume).await.unwrap();
    assert_eq!(running.state, RolloutState::Running);
    assert_eq!(
        s.update_rollout(id, RolloutChange::Resume).await,
        illegal("running", "resume")
    );
    let cancelled = s.update_rollout(id, RolloutChange::Cancel).await.unwrap();
    assert_eq!(cancelled.state, RolloutState::Cancelled);
    for (c, name) in [
        (RolloutChange::Pause, "pause"),
        (RolloutChange::Resume, "resume"),
        (RolloutChange::Cancel, "cancel"),
        (RolloutChange::Share(Share::ALL), "share"),
    ] {
        assert_eq!(s.update_rollout(id, c).await, illegal("cancelled", name));
    }
    let after = s.rollout(id).await.unwrap().unwrap();
    assert_eq!(after, cancelled, "refused changes changed nothing");
    assert_eq!(after.share, Share::percent(50).unwrap());
    assert_eq!(
        s.update_rollout(RolloutId(u32::MAX), RolloutChange::Pause)
            .await,
        Err(StoreError::UnknownRollout(RolloutId(u32::MAX)))
    );
    assert_eq!(s.rollout(RolloutId(u32::MAX)).await.unwrap(), None);
    assert_eq!(
        s.rollout_progress(RolloutId(u32::MAX), 0).await.unwrap(),
        None
    );
    h.close(s).await;
}

/// The check-in query: running and paused rollouts of the device's product whose target
/// includes it (product, its group, itself), not cancelled ones, nor other devices' or
/// groups'.
pub async fn offer_candidates_by_target<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "cand").await;
    let rel = release_at(&s, p, (3, 0, 0)).await;
    let a = tagged(&s, p, &["north", "beta"]).await;
    let b = tagged(&s, p, &["south"]).await;
    let whole = s
        .add_rollout(new_rollout(rel, Target::Product))
        .await
        .unwrap();
    let north = s
        .add_rollout(new_rollout(rel, Target::Group("north".into())))
        .await
        .unwrap();
    let only_b = s
        .add_rollout(new_rollout(rel, Target::Device(b)))
        .await
        .unwrap();
    let gone = s
        .add_rollout(new_rollout(rel, Target::Group("south".into())))
        .await
        .unwrap();
    s.update_rollout(gone, RolloutChange::Cancel).await.unwrap();
    s.update_rollout(north, RolloutChange::Pause).await.unwrap();
    let ids =
        |v: Vec<crate::rollout::OfferCandidate>| v.iter().map(|c| c.rollout).collect::<Vec<_>>();
    let ca = s.offer_candidates(a).await.unwrap();
    assert_eq!(ca[1].state, RolloutState::Paused(PauseCause::Operator));
    assert!(ca
        .iter()
        .all(|c| c.release == rel && c.phase.is_none() && !c.refused));
    assert_eq!(
        ca[0].version,
        FirmwareVersion {
            major: 3,
            minor: 0,
            patch: 0
        }
    );
    assert_eq!(ids(ca), vec![whole, north]);
    assert_eq!(
        ids(s.offer_candidates(b).await.unwrap()),
        vec![whole, only_b]
    );
    assert!(s
        .offer_candidates(DeviceId(u32::MAX))
        .await
        .unwrap()
        .is_empty());
    // The device's row shows in its candidates once offered; chunk service follows it.
    assert!(!s.serves_release(a, rel).await.unwrap());
    apply(&s, a, offer_effects(50, whole, rel)).await;
    let ca = s.offer_candidates(a).await.unwrap();
    assert_eq!(ca[0].phase, Some(DevicePhase::Offered));
    assert!(s.serves_release(a, rel).await.unwrap());
    assert!(!s.serves_release(b, rel).await.unwrap());
    s.update_rollout(whole, RolloutChange::Cancel)
        .await
        .unwrap();
    assert!(
        !s.serves_release(a, rel).await.unwrap(),
        "its only rollout is cancelled"
    );
    h.close(s).await;
}

/// Each device's phase follows what it reports (offer, accept, status, check-in on the new
/// version, decline, defer), and the progress counts them with the share's bucketing done in
/// SQL exactly as `rollout::bucket` does it.
pub async fn rollout_phases_and_progress<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "prog").await;
    let rel = release_at(&s, p, (4, 0, 0)).await;
    let mut devs = Vec::new();
    for _ in 0..60 {
        devs.push(tagged(&s, p, &[]).await);
    }
    let id = s
        .add_rollout(NewRollout {
            share: Share::percent(40).unwrap(),
            defer_until_ms: Some(100_000),
            ..new_rollout(rel, Target::Product)
        })
        .await
        .unwrap();
    let r = s.rollout(id).await.unwrap().unwrap();
    let inside: Vec<DeviceId> = devs
        .iter()
        .copied()
        .filter(|d| in_share(r.seed, r.share, *d))
        .collect();
    let progress = s.rollout_progress(id, 0).await.unwrap().unwrap();
    assert_eq!(
        progress,
        RolloutProgress {
            targeted: inside.len() as u64,
            not_offered: inside.len() as u64,
            ..RolloutProgress::default()
        }
    );
    assert!(inside.len() >= 5, "40 % of 60: {}", inside.len());
    let [d0, d1, d2, d3, d4, ..] = inside[..] else {
        unreachable!()
    };
    for d in [d0, d1, d2, d3, d4] {
        apply(&s, d, offer_effects(1_000, id, rel)).await;
    }
    // d0: accepts, downloads, installs, checks in confirmed on 4.0.0.
    apply(
        &s,
        d0,
        decision_effects(2_000, rel, cloud_proto::Decision::Accept { bytes_done: 0 }),
    )
    .await;
    apply(
        &s,
        d1,
        decision_effects(2_000, rel, cloud_proto::Decision::Accept { bytes_done: 0 }),
    )
    .await;
    apply(
        &s,
        d1,
        status_effects(3_000, rel, OtaState::Downloaded, UpdateResult::Initial),
    )
    .await;
    apply(
        &s,
        d2,
        decision_effects(
            2_000,
            rel,
            cloud_proto::Decision::Decline(cloud_proto::DeclineReason::AlreadyInstalled),
        ),
    )
    .await;
    apply(
        &s,
        d3,
        decision_effects(
            2_000,
            rel,
            cloud_proto::Decision::Defer {
                retry_in_s: 60,
                reason: cloud_proto::DeferReason::LowBattery,
            },
        ),
    )
    .await;
    let c3 = s.offer_candidates(d3).await.unwrap();
    assert_eq!(
        (c3[0].phase, c3[0].retry_at_ms),
        (Some(DevicePhase::Deferred), Some(62_000))
    );
    let confirmed = Effects {
        checkin: Some(CheckInReport {
            firmware: FirmwareVersion {
                major: 4,
                minor: 0,
                patch: 0,
            },
            trial: false,
            state: OtaState::Idle,
            result: UpdateResult::Success,
            download: None,
            battery_mv: 3_600,
            forced_sleeps: 0,
        }),
        ..Effects::counters_only(4_000, 10, 10)
    };
    apply(&s, d0, confirmed.clone()).await;
    let want = RolloutProgress {
        targeted: inside.len() as u64,
        not_offered: inside.len() as u64 - 5,
        offered: 1,
        deferred: 1,
        downloading: 0,
        downloaded: 1,
        succeeded: 1,
        declined: 1,
        ..RolloutProgress::default()
    };
    assert_eq!(s.rollout_progress(id, 5_000).await.unwrap().unwrap(), want);
    // Past the deferral deadline, the offered and the deferred are overdue.
    assert_eq!(
        s.rollout_progress(id, 100_000).await.unwrap().unwrap(),
        RolloutProgress { overdue: 2, ..want }
    );
    // Final phases do not move; a declined release is refused in every rollout.
    apply(
        &s,
        d0,
        status_effects(6_000, rel, OtaState::Idle, UpdateResult::UpdateFailed),
    )
    .await;
    assert_eq!(s.rollout_progress(id, 5_000).await.unwrap().unwrap(), want);
    assert!(s.offer_candidates(d2).await.unwrap()[0].refused);
    // Raising the share keeps every device counted before and adds some.
    s.update_rollout(id, RolloutChange::Share(Share::ALL))
        .await
        .unwrap();
    let all = s.rollout_progress(id, 5_000).await.unwrap().unwrap();
    assert_eq!(all.targeted, 60);
    assert_eq!(all.reached(), want.reached());
    h.close(s).await;
}

/// The error threshold trips inside the frame transaction that reports the failure: 50 %
/// with at least 2 finished pauses on the third report (2 failed of 3), with the figures;
/// resume counts afresh.
pub async fn error_threshold_pauses_in_the_frame_transaction<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "thr").await;
    let rel = release_at(&s, p, (5, 0, 0)).await;
    let id = s
        .add_rollout(NewRollout {
            error_threshold: Some(ErrorThreshold {
                max_failed: Share::percent(50).unwrap(),
                min_finished: 2,
            }),
            ..new_rollout(rel, Target::Product)
        })
        .await
        .unwrap();
    let mut devs = Vec::new();
    for _ in 0..5 {
        let d = tagged(&s, p, &[]).await;
        apply(&s, d, offer_effects(1_000, id, rel)).await;
        devs.push(d);
    }
    let fail = |d| {
        apply(
            &s,
            d,
            status_effects(2_000, rel, OtaState::Idle, UpdateResult::IntegrityFailure),
        )
    };
    fail(devs[0]).await;
    assert_eq!(
        s.rollout(id).await.unwrap().unwrap().state,
        RolloutState::Running,
        "1 finished < 2"
    );
    apply(
        &s,
        devs[1],
        status_effects(2_000, rel, OtaState::Idle, UpdateResult::Success),
    )
    .await;
    assert_eq!(
        s.rollout(id).await.unwrap().unwrap().state,
        RolloutState::Running,
        "50 % is not above"
    );
    fail(devs[2]).await;
    let paused = RolloutState::Paused(PauseCause::ErrorThreshold {
        failed: 2,
        finished: 3,
    });
    assert_eq!(s.rollout(id).await.unwrap().unwrap().state, paused);
    // Further failures leave the figures as they were when it paused.
    fail(devs[3]).await;
    assert_eq!(s.rollout(id).await.unwrap().unwrap().state, paused);
    let prog = s.rollout_progress(id, 0).await.unwrap().unwrap();
    assert_eq!((prog.failed, prog.succeeded, prog.offered), (3, 1, 1));
    // Resumed: counted afresh, one more failure alone (1 finished) does not pause it.
    s.update_rollout(id, RolloutChange::Resume).await.unwrap();
    fail(devs[4]).await;
    assert_eq!(
        s.rollout(id).await.unwrap().unwrap().state,
        RolloutState::Running
    );
    h.close(s).await;
}

fn checkin_effects(now: u64, battery_mv: u16, publishes: usize) -> Effects {
    Effects {
        checkin: Some(CheckInReport {
            firmware: FirmwareVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
            trial: false,
            state: OtaState::Idle,
            result: UpdateResult::Initial,
            download: None,
            battery_mv,
            forced_sleeps: 0,
        }),
        publishes: (0..publishes).map(|i| (i as u16, vec![1, 2])).collect(),
        ..Effects::counters_only(now, 100, 40)
    }
}

/// Wakes: a check-in starts one, the frames after it add to it (frames, bytes, the goodbye's
/// sleep, the state a status reported), the next check-in archives it; frames before the
/// first check-in belong to no wake; only the last `WAKES_KEPT` finished wakes are kept;
/// `limit` and an unknown device; they survive a reopen.
pub async fn wakes_recorded_and_bounded<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "wakes").await;
    let d = tagged(&s, p, &[]).await;
    let t0 = 10_000_000u64;
    // Before any check-in: no wake.
    apply(&s, d, Effects::counters_only(t0 - 5_000, 7, 7)).await;
    assert_eq!(s.wakes(d, 10).await.unwrap(), vec![]);
    apply(&s, d, checkin_effects(t0, 3_650, 2)).await;
    let rel = release_at(&s, p, (2, 0, 0)).await;
    apply(&s, d, Effects::counters_only(t0 + 1_000, 30, 500)).await;
    apply(
        &s,
        d,
        status_effects(
            t0 + 2_000,
            rel,
            OtaState::Downloading,
            UpdateResult::Initial,
        ),
    )
    .await;
    apply(
        &s,
        d,
        Effects {
            goodbye_sleep_s: Some(600),
            ..Effects::counters_only(t0 + 3_000, 20, 10)
        },
    )
    .await;
    let w = s.wakes(d, 10).await.unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    let first = w[0];
    assert_eq!(first.seq, 1);
    assert_eq!((first.started_ms, first.last_ms), (t0, t0 + 3_000));
    assert_eq!(first.frames, 4);
    assert_eq!(first.bytes_up, 100 + 30 + 10 + 20);
    assert_eq!(first.bytes_down, 40 + 500 + 10 + 10);
    assert_eq!(first.publishes, 2);
    assert_eq!(first.report.battery_mv, 3_650);
    assert_eq!(
        first.state,
        OtaState::Downloading,
        "the status after the check-in"
    );
    assert_eq!(first.sleep_s, Some(600));
    assert_eq!(first.offered, None);
    // The next check-in (with an offer) archives it unchanged and starts wake 2.
    let ro = s
        .add_rollout(new_rollout(rel, Target::Device(d)))
        .await
        .unwrap();
    apply(
        &s,
        d,
        Effects {
            offer: Some((ro, rel)),
            ..checkin_effects(t0 + 600_000, 3_640, 0)
        },
    )
    .await;
    let w = s.wakes(d, 10).await.unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[1], first, "archived as it was");
    assert_eq!((w[0].seq, w[0].frames, w[0].bytes_up), (2, 1, 100));
    assert_eq!((w[0].offered, w[0].sleep_s), (Some(rel), None));
    assert_eq!(w[0].started_ms, w[0].last_ms);
    // Bounded: WAKES_KEPT finished wakes and the current one.
    let more = super::WAKES_KEPT + 3;
    for i in 0..more {
        apply(&s, d, checkin_effects(t0 + 700_000 + i * 1_000, 3_600, 0)).await;
    }
    let total = 2 + more;
    let all = s.wakes(d, usize::MAX).await.unwrap();
    assert_eq!(all.len() as u64, super::WAKES_KEPT + 1);
    assert_eq!(all[0].seq, total);
    assert_eq!(all.last().unwrap().seq, total - super::WAKES_KEPT);
    assert!(
        all.windows(2).all(|p| p[0].seq == p[1].seq + 1),
        "newest first, no gap"
    );
    assert_eq!(s.wakes(d, 3).await.unwrap().len(), 3);
    assert_eq!(s.wakes(d, 0).await.unwrap(), vec![]);
    assert_eq!(s.wakes(DeviceId(u32::MAX - 3), 5).await.unwrap(), vec![]);
    h.close(s).await;
    let s = h.open().await;
    assert_eq!(s.wakes(d, usize::MAX).await.unwrap(), all, "durable");
    h.close(s).await;
}

/// The fleet read: every device with its status (the same as `status`), its tags and its
/// latest rollout phase; a device's update history with the LwM2M result; a rollout's
/// adoption times.
pub async fn fleet_and_update_history<H: Harness>(h: &H) {
    let s = h.open().await;
    let p = product(&s, "fleet").await;
    let rel = release_at(&s, p, (3, 1, 0)).await;
    let a = tagged(&s, p, &["zeta", "alpha"]).await;
    let b = tagged(&s, p, &[]).await;
    let c = tagged(&s, p, &["alpha"]).await;
    let ro = s
        .add_rollout(new_rollout(rel, Target::Product))
        .await
        .unwrap();
    apply(&s, b, checkin_effects(1_000, 3_300, 0)).await;
    for d in [a, c] {
        apply(&s, d, offer_effects(2_000, ro, rel)).await;
        apply(
            &s,
            d,
            decision_effects(2_500, rel, cloud_proto::Decision::Accept { bytes_done: 0 }),
        )
        .await;
    }
    apply(
        &s,
        a,
        status_effects(3_000, rel, OtaState::Idle, UpdateResult::UpdateFailed),
    )
    .await;
    apply(
        &s,
        c,
        status_effects(4_000, rel, OtaState::Idle, UpdateResult::Success),
    )
    .await;
    let fleet: Vec<_> = s
        .fleet()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.device.product == p)
        .collect();
    assert_eq!(
        fleet.iter().map(|r| r.device.id).collect::<Vec<_>>(),
        vec![a, b, c]
    );
    for r in &fleet {
        assert_eq!(
            Some(&r.device),
            s.device(r.device.id).await.unwrap().as_ref()
        );
        assert_eq!(Some(r.status), s.status(r.device.id).await.unwrap());
    }
    assert_eq!(fleet[0].device.tags, vec!["alpha", "zeta"]);
    assert_eq!(fleet[0].phase, Some(DevicePhase::Failed));
    assert_eq!(fleet[1].phase, None);
    assert_eq!(fleet[1].status.last_checkin.unwrap().1.battery_mv, 3_300);
    assert_eq!(fleet[2].phase, Some(DevicePhase::Succeeded));
    let hist = s.device_updates(a).await.unwrap();
    assert_eq!(hist.len(), 1);
    let u = hist[0];
    assert_eq!((u.rollout, u.release), (ro, rel));
    assert_eq!(u.phase, DevicePhase::Failed);
    assert_eq!(u.result, Some(UpdateResult::UpdateFailed));
    assert_eq!((u.offered_ms, u.updated_ms), (2_000, 3_000));
    assert_eq!(
        u.version,
        FirmwareVersion {
            major: 3,
            minor: 1,
            patch: 0
        }
    );
    assert_eq!(s.device_updates(b).await.unwrap(), vec![]);
    assert_eq!(s.rollout_adoption(ro).await.unwrap(), vec![4_000u64]);
    assert_eq!(
        s.rollout_adoption(RolloutId(u32::MAX - 1)).await.unwrap(),
        Vec::<u64>::new()
    );
    h.close(s).await;
}
