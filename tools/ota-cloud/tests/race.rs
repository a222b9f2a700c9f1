//! The compare-and-set retry: another instance commits the device's record between this
//! server's read and its commit; the server re-reads, re-admits, never answers the stale
//! verdict and never applies a request twice.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use cloud_proto::{DeviceId, Keys, LastFrame};
use common::{checkin, fw, Device as SimDevice};
use ota_cloud::server::{Dropped, Server, ServerConfig};
use ota_cloud::store::*;
use ota_cloud::{MasterKey, RootKey, SqliteOptions, SqliteStore};

/// A store whose first `steal` commits lose the race: before each, "another instance"
/// commits the same frame (same record, same effects) to the real store.
/// It also counts the record reads and commit attempts the server makes, and can make the
/// next `fail` commits fail after applying them (a connection lost after its `COMMIT`).
struct Racing {
    inner: SqliteStore,
    steal: AtomicU32,
    reads: AtomicU32,
    commits: AtomicU32,
    fail: AtomicU32,
}

impl Store for Racing {
    fn add_product(
        &self,
        p: NewProduct,
    ) -> impl std::future::Future<Output = StoreResult<ProductId>> + Send {
        self.inner.add_product(p)
    }
    fn product(
        &self,
        id: ProductId,
    ) -> impl std::future::Future<Output = StoreResult<Option<Product>>> + Send {
        self.inner.product(id)
    }
    fn products(&self) -> impl std::future::Future<Output = StoreResult<Vec<Product>>> + Send {
        self.inner.products()
    }
    fn add_release_key(
        &self,
        p: ProductId,
        k: String,
    ) -> impl std::future::Future<Output = StoreResult<()>> + Send {
        self.inner.add_release_key(p, k)
    }
    fn remove_release_key(
        &self,
        p: ProductId,
        k: String,
    ) -> impl std::future::Future<Output = StoreResult<bool>> + Send {
        self.inner.remove_release_key(p, k)
    }
    fn add_device(
        &self,
        d: NewDevice,
        now_ms: u64,
    ) -> impl std::future::Future<Output = StoreResult<DeviceId>> + Send {
        self.inner.add_device(d, now_ms)
    }
    fn device(
        &self,
        id: DeviceId,
    ) -> impl std::future::Future<Output = StoreResult<Option<Device>>> + Send {
        self.inner.device(id)
    }
    fn devices(&self) -> impl std::future::Future<Output = StoreResult<Vec<Device>>> + Send {
        self.inner.devices()
    }
    fn keys(
        &self,
        id: DeviceId,
    ) -> impl std::future::Future<Output = StoreResult<Option<Keys>>> + Send {
        self.inner.keys(id)
    }
    fn root_key(
        &self,
        id: DeviceId,
    ) -> impl std::future::Future<Output = StoreResult<Option<RootKey>>> + Send {
        self.inner.root_key(id)
    }
    fn last_frame(
        &self,
        id: DeviceId,
    ) -> impl std::future::Future<Output = StoreResult<Option<LastFrame>>> + Send {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.last_frame(id)
    }
    async fn commit_frame(&self, c: FrameCommit) -> StoreResult<bool> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            self.inner.commit_frame(c).await?;
            return Err(StoreError::Database("connection lost after COMMIT".into()));
        }
        let lose = self
            .steal
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            assert!(self.inner.commit_frame(c.clone()).await?);
        }
        self.inner.commit_frame(c).await
    }
    fn publishes_since(
        &self,
        after: PublishId,
        limit: usize,
    ) -> impl std::future::Future<Output = StoreResult<Vec<StoredPublish>>> + Send {
        self.inner.publishes_since(after, limit)
    }
    fn device_publishes(
        &self,
        device: DeviceId,
        after: PublishId,
        limit: usize,
    ) -> impl std::future::Future<Output = StoreResult<Vec<StoredPublish>>> + Send {
        self.inner.device_publishes(device, after, limit)
    }
    fn status(
        &self,
        id: DeviceId,
    ) -> impl std::future::Future<Output = StoreResult<Option<DeviceStatus>>> + Send {
        self.inner.status(id)
    }
    fn put_release(
        &self,
        r: Release,
    ) -> impl std::future::Future<Output = StoreResult<ota_cloud::ReleaseId>> + Send {
        self.inner.put_release(r)
    }
    fn release(
        &self,
        d: ReleaseDigest,
    ) -> impl std::future::Future<Output = StoreResult<Option<Release>>> + Send {
        self.inner.release(d)
    }
    fn releases(
        &self,
        p: ProductId,
    ) -> impl std::future::Future<Output = StoreResult<Vec<(ota_cloud::ReleaseId, Release)>>> + Send
    {
        self.inner.releases(p)
    }
    fn release_by_id(
        &self,
        id: ota_cloud::ReleaseId,
    ) -> impl std::future::Future<Output = StoreResult<Option<Release>>> + Send {
        self.inner.release_by_id(id)
    }
    fn release_id(
        &self,
        d: ReleaseDigest,
    ) -> impl std::future::Future<Output = StoreResult<Option<ota_cloud::ReleaseId>>> + Send {
        self.inner.release_id(d)
    }
    fn add_rollout(
        &self,
        r: ota_cloud::NewRollout,
    ) -> impl std::future::Future<Output = StoreResult<ota_cloud::RolloutId>> + Send {
        self.inner.add_rollout(r)
    }
    fn rollout(
        &self,
        id: ota_cloud::RolloutId,
    ) -> impl std::future::Future<Output = StoreResult<Option<ota_cloud::Rollout>>> + Send {
        self.inner.rollout(id)
    }
    fn rollouts(
        &self,
        p: Option<ProductId>,
    ) -> impl std::future::Future<Output = StoreResult<Vec<ota_cloud::Rollout>>> + Send {
        self.inner.rollouts(p)
    }
    fn update_rollout(
        &self,
        id: ota_cloud::RolloutId,
        c: ota_cloud::RolloutChange,
    ) -> impl std::future::Future<Output = StoreResult<ota_cloud::Rollout>> + Send {
        self.inner.update_rollout(id, c)
    }
    fn rollout_progress(
        &self,
        id: ota_cloud::RolloutId,
        now_ms: u64,
    ) -> impl std::future::Future<Output = StoreResult<Option<ota_cloud::RolloutProgress>>> + Send
    {
        self.inner.rollout_progress(id, now_ms)
    }
    fn offer_candidates(
        &self,
        d: DeviceId,
    ) -> impl std::future::Future<Output = StoreResult<Vec<ota_cloud::rollout::OfferCandidate>>> + Send
    {
        self.inner.offer_candidates(d)
    }
    fn serves_release(
        &self,
        d: DeviceId,
        r: ota_cloud::ReleaseId,
    ) -> impl std::future::Future<Output = StoreResult<bool>> + Send {
        self.inner.serves_release(d, r)
    }
    fn fleet(&self) -> impl std::future::Future<Output = StoreResult<Vec<FleetRow>>> + Send {
        self.inner.fleet()
    }
    fn wakes(
        &self,
        d: DeviceId,
        limit: usize,
    ) -> impl std::future::Future<Output = StoreResult<Vec<Wake>>> + Send {
        self.inner.wakes(d, limit)
    }
    fn device_updates(
        &self,
        d: DeviceId,
    ) -> impl std::future::Future<Output = StoreResult<Vec<DeviceUpdate>>> + Send {
        self.inner.device_updates(d)
    }
    fn rollout_adoption(
        &self,
        id: ota_cloud::RolloutId,
    ) -> impl std::future::Future<Output = StoreResult<Vec<u64>>> + Send {
        self.inner.rollout_adoption(id)
    }
}

async fn setup(steal: u32) -> (tempfile::TempDir, Arc<Racing>, Server<Racing>, SimDevice) {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
    let inner =
        SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default()).unwrap();
    let store = Arc::new(Racing {
        inner,
        steal: AtomicU32::new(0),
        reads: AtomicU32::new(0),
        commits: AtomicU32::new(0),
        fail: AtomicU32::new(0),
    });
    let product = store
        .add_product(NewProduct {
            name: "p".into(),
            hardware_id: [1; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let root = [7; 32];
    let id = store
        .add_device(
            NewDevice {
                id: None,
                product,
                tags: vec![],
                root_key: RootKey::from_bytes(root),
            },
            0,
        )
        .await
        .unwrap();
    store.steal.store(steal, Ordering::SeqCst);
    let server = Server::new(store.clone(), ServerConfig::default(), Arc::new(|| 1_000));
    (dir, store, server, SimDevice::new(id, root))
}

#[tokio::test]
async fn lost_compare_and_set_is_readmitted_and_applied_once() {
    let (_dir, store, server, mut dev) = setup(1).await;
    let mut ep = dev.wake();
    let frame = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let answer = server.handle_frame(&frame, from).await.unwrap();
    // Answered (as the retransmission it now is), and the device accepts the answer.
    assert_eq!(answer.frames.len(), 1);
    assert!(ep.handle_datagram(0, &answer.frames[0]).is_ok());
    let last = store.last_frame(dev.id).await.unwrap().unwrap();
    assert_eq!(last.answers, 2, "the re-admission counted one more answer");
    // The check-in was applied once (by the instance that won), not twice.
    assert_eq!(store.status(dev.id).await.unwrap().unwrap().wakes, 1);
}

#[tokio::test]
async fn record_that_keeps_changing_is_a_conflict_with_nothing_answered() {
    let (_dir, store, server, mut dev) = setup(3).await;
    let mut ep = dev.wake();
    let frame = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    assert_eq!(
        server.handle_frame(&frame, from).await,
        Err(Dropped::Conflict)
    );
    assert_eq!(server.drops().conflict, 1);
    // Only the other instance's three commits: first acceptance plus two retransmissions.
    assert_eq!(store.last_frame(dev.id).await.unwrap().unwrap().answers, 3);
    assert_eq!(store.status(dev.id).await.unwrap().unwrap().wakes, 1);
}

fn counts(store: &Racing) -> (u32, u32) {
    (
        store.reads.load(Ordering::SeqCst),
        store.commits.load(Ordering::SeqCst),
    )
}

/// One wake's check-in, answered and accepted by the device.
async fn wake_and_check_in<S: Store>(server: &Server<S>, dev: &mut SimDevice, from: SocketAddr) {
    let mut ep = dev.wake();
    let frame = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    let answer = server.handle_frame(&frame, from).await.unwrap();
    assert!(ep.handle_datagram(0, &answer.frames[0]).is_ok());
}

#[tokio::test]
async fn cached_record_spares_the_read_of_every_frame() {
    let (_dir, store, server, mut dev) = setup(0).await;
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    for _ in 0..5 {
        wake_and_check_in(&server, &mut dev, from).await;
    }
    // The first frame reads the device's record; the others use the one it committed.
    assert_eq!(counts(&store), (1, 5));
    assert_eq!(store.status(dev.id).await.unwrap().unwrap().wakes, 5);
}

#[tokio::test]
async fn lost_race_forgets_the_cached_record() {
    let (_dir, store, server, mut dev) = setup(0).await;
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    wake_and_check_in(&server, &mut dev, from).await;
    store.steal.store(1, Ordering::SeqCst);
    // The commit over the cached record loses to "another instance": read, re-admit.
    wake_and_check_in(&server, &mut dev, from).await;
    assert_eq!(counts(&store), (2, 3));
    // The record re-read and committed is cached: the next frame needs no read.
    wake_and_check_in(&server, &mut dev, from).await;
    assert_eq!(counts(&store), (2, 4));
    assert_eq!(store.status(dev.id).await.unwrap().unwrap().wakes, 3);
}

#[tokio::test]
async fn failed_commit_forgets_the_cached_record() {
    let (_dir, store, server, mut dev) = setup(0).await;
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    wake_and_check_in(&server, &mut dev, from).await;
    // The commit is applied but reported failed: no answer, and the record is unknown now.
    store.fail.store(1, Ordering::SeqCst);
    let mut ep = dev.wake();
    let frame = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    assert!(matches!(
        server.handle_frame(&frame, from).await,
        Err(Dropped::Store(_))
    ));
    assert_eq!(server.drops().internal, 1);
    assert_eq!(counts(&store), (1, 2));
    // The device retransmits: the server reads the stored record (not the cached one, which
    // would cost a commit refused by the compare-and-set) and answers it as a retransmission.
    let answer = server.handle_frame(&frame, from).await.unwrap();
    assert!(ep.handle_datagram(0, &answer.frames[0]).is_ok());
    assert_eq!(counts(&store), (2, 3));
    assert_eq!(store.last_frame(dev.id).await.unwrap().unwrap().answers, 2);
    assert_eq!(store.status(dev.id).await.unwrap().unwrap().wakes, 2);
}

#[tokio::test]
async fn refusal_on_a_cached_record_is_confirmed_by_the_store_and_changes_nothing() {
    use cloud_proto::AdmitError;
    let (_dir, store, server, mut dev) = setup(0).await;
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut ep = dev.wake();
    let first = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    let answer = server.handle_frame(&first, from).await.unwrap();
    assert!(ep.handle_datagram(0, &answer.frames[0]).is_ok());
    wake_and_check_in(&server, &mut dev, from).await;
    assert_eq!(counts(&store), (1, 2));
    let before = store.last_frame(dev.id).await.unwrap();
    // A replay of the first frame: refused on the cached record, then on the stored one.
    assert!(matches!(
        server.handle_frame(&first, from).await,
        Err(Dropped::Refused(AdmitError::Replayed { .. }))
    ));
    assert_eq!(counts(&store), (2 + 1, 2), "one read to confirm, no commit");
    assert_eq!(store.last_frame(dev.id).await.unwrap(), before);
    // The cache still holds the stored record: the next frame commits at the first try.
    wake_and_check_in(&server, &mut dev, from).await;
    assert_eq!(counts(&store), (3 + 1, 3));
    assert_eq!(store.status(dev.id).await.unwrap().unwrap().wakes, 3);
}

/// Check-in `i` goes to `here`; `there` (whose cached record is one frame behind) gets the
/// replays.
async fn alternate<A: Store, B: Store>(
    here: &Server<A>,
    there: &Server<B>,
    dev: &mut SimDevice,
    sent: &mut Vec<Vec<u8>>,
    now: u64,
) {
    use cloud_proto::AdmitError;
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let elsewhere: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    let window = ServerConfig::default().policy.retransmit_window_ms;
    let mut ep = dev.wake();
    let frame = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    let answer = here.handle_frame_at(&frame, from, now).await.unwrap();
    assert!(ep.handle_datagram(0, &answer.frames[0]).is_ok());
    // To the stale instance, past the window: its cached record would take it for a new
    // frame; the compare-and-set refuses that commit and the stored record refuses the frame.
    assert!(matches!(
        there.handle_frame_at(&frame, from, now + window + 1).await,
        Err(Dropped::Refused(AdmitError::RetransmissionRefused { .. }))
    ));
    assert!(matches!(
        there.handle_frame_at(&frame, elsewhere, now + 1).await,
        Err(Dropped::Refused(AdmitError::OtherSource { .. }))
    ));
    for old in sent.iter() {
        for r in [
            here.handle_frame_at(old, from, now + 2).await,
            there.handle_frame_at(old, from, now + 2).await,
        ] {
            assert!(matches!(
                r,
                Err(Dropped::Refused(AdmitError::Replayed { .. }))
            ));
        }
    }
    sent.push(frame);
}

/// Two servers, each with its own store handle (its own writer and readers) on one SQLite
/// file: the device's check-ins alternate between them, so each one's cached record is stale
/// at every other frame. Every check-in is answered and applied once; a replay to the instance
/// whose cache is stale is refused.
#[tokio::test]
async fn two_instances_alternate_with_stale_caches_and_refuse_replays() {
    let (dir, store, a, mut dev) = setup(0).await;
    let master = MasterKey::load(&dir.path().join("master.key")).unwrap();
    let other =
        SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default()).unwrap();
    let b = Server::new(Arc::new(other), ServerConfig::default(), Arc::new(|| 1_000));
    let window = ServerConfig::default().policy.retransmit_window_ms;
    let t0 = 1_800_000_000_000u64;
    let mut sent = Vec::new();
    for i in 0..6u64 {
        let now = t0 + i * 10 * window;
        if i % 2 == 0 {
            alternate(&a, &b, &mut dev, &mut sent, now).await;
        } else {
            alternate(&b, &a, &mut dev, &mut sent, now).await;
        }
    }
    // `a` took 3 check-ins and tried one commit on a stale record for each of `b`'s 3, which
    // the compare-and-set refused.
    assert_eq!(store.commits.load(Ordering::SeqCst), 6);
    for st in [
        store.status(dev.id).await.unwrap().unwrap(),
        b.store().status(dev.id).await.unwrap().unwrap(),
    ] {
        assert_eq!(st.wakes, 6, "each check-in applied once");
    }
    // Before check-in i, the i earlier frames were replayed to both: 0 + 1 + … + 5 = 15.
    assert_eq!(a.drops().replayed + b.drops().replayed, 2 * 15);
}
