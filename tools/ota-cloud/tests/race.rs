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
struct Racing {
    inner: SqliteStore,
    steal: AtomicU32,
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
        self.inner.last_frame(id)
    }
    async fn commit_frame(&self, c: FrameCommit) -> StoreResult<bool> {
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
}

async fn setup(steal: u32) -> (tempfile::TempDir, Arc<Racing>, Server<Racing>, SimDevice) {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
    let inner =
        SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default()).unwrap();
    let store = Arc::new(Racing {
        inner,
        steal: AtomicU32::new(0),
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
