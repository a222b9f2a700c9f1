//! The server on real loopback sockets, with devices simulated by cloud-proto's endpoint.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cloud_proto::{
    AdmitError, Decision, DeviceId, FrameError, Goodbye, Keys, NackCode, Object, Up,
    UpdateDecision, UpdateId,
};
use common::*;
use ota_cloud::release::{upload_release, UploadError};
use ota_cloud::rollout::{in_share, ErrorThreshold, PauseCause};
use ota_cloud::server::{Dropped, Server, ServerConfig};
use ota_cloud::transport::{serve_tcp, serve_udp};
use ota_cloud::{
    MasterKey, NewDevice, NewProduct, NewRollout, ProductId, Rollout, RolloutChange, RolloutId,
    RolloutState, RootKey, Share, SqliteOptions, SqliteStore, Store, Target,
};
use ota_tool::CheckError;

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    server: Arc<Server<SqliteStore>>,
    clock: Arc<AtomicU64>,
    product: ProductId,
    signer: String,
    udp: SocketAddr,
    tcp: SocketAddr,
}

const T0: u64 = 1_800_000_000_000;

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default())
                .unwrap(),
        );
        let signer = signer();
        let product = store
            .add_product(NewProduct {
                name: "tracker".into(),
                hardware_id: ota_core::HardwareId::from_name(HW).unwrap().0,
                release_keys: vec![public_pem(&signer)],
            })
            .await
            .unwrap();
        let clock = Arc::new(AtomicU64::new(T0));
        let c = clock.clone();
        let server = Arc::new(Server::new(
            store.clone(),
            ServerConfig::default(),
            Arc::new(move || c.load(Ordering::SeqCst)),
        ));
        let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let t = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (udp, tcp) = (u.local_addr().unwrap(), t.local_addr().unwrap());
        tokio::spawn(serve_udp(server.clone(), u));
        tokio::spawn(serve_tcp(server.clone(), t));
        Self {
            dir,
            store,
            server,
            clock,
            product,
            signer,
            udp,
            tcp,
        }
    }

    async fn device(&self) -> Device {
        self.device_tagged(&[]).await
    }

    async fn device_tagged(&self, tags: &[&str]) -> Device {
        let root = [0x5a; 32];
        let id = self
            .store
            .add_device(
                NewDevice {
                    id: None,
                    product: self.product,
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    root_key: RootKey::from_bytes(root),
                },
                T0,
            )
            .await
            .unwrap();
        Device::new(id, root)
    }

    async fn upload(&self, bytes: &[u8]) -> Result<ota_cloud::Release, UploadError> {
        upload_release(
            &*self.store,
            self.product,
            bytes,
            &self.dir.path().join("releases"),
            self.clock.load(Ordering::SeqCst),
        )
        .await
    }

    /// Starts a rollout of an uploaded release.
    async fn rollout(&self, release: &ota_cloud::Release, spec: Spec) -> Rollout {
        let id = self
            .store
            .release_id(release.digest)
            .await
            .unwrap()
            .unwrap();
        let r = self
            .store
            .add_rollout(NewRollout {
                release: id,
                target: spec.target,
                share: spec.share,
                error_threshold: spec.error_threshold,
                defer_until_ms: spec.defer_until_ms,
                created_ms: self.clock.load(Ordering::SeqCst),
            })
            .await
            .unwrap();
        self.store.rollout(r).await.unwrap().unwrap()
    }

    async fn change(&self, r: RolloutId, c: RolloutChange) -> Rollout {
        self.store.update_rollout(r, c).await.unwrap()
    }

    /// Time passes while the device sleeps.
    fn sleep(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }
}

/// What a test rollout is (the whole product, every device, by default).
struct Spec {
    target: Target,
    share: Share,
    error_threshold: Option<ErrorThreshold>,
    defer_until_ms: Option<u64>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            target: Target::Product,
            share: Share::ALL,
            error_threshold: None,
            defer_until_ms: None,
        }
    }
}

/// One wake: a check-in running `firmware`, returns the offered update, if any.
async fn offered(
    dev: &mut Device,
    link: &mut Link,
    firmware: cloud_proto::FirmwareVersion,
) -> Option<UpdateId> {
    let mut ep = dev.wake();
    match dev.request(&mut ep, link, &checkin(firmware, None)).await {
        Got::Welcome { offer, .. } => offer.map(|o| o.update),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkin_over_udp_and_tcp_gets_welcome() {
    let f = Fixture::new().await;
    let mut dev = f.device().await;
    for mut link in [Link::udp(f.udp).await, Link::tcp(f.tcp).await] {
        let mut ep = dev.wake();
        let got = dev
            .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
            .await;
        assert_eq!(
            got,
            Got::Welcome {
                offer: None,
                publishes_acked: 0
            }
        );
        f.sleep(60_000);
    }
    let s = f.store.status(dev.id).await.unwrap().unwrap();
    assert_eq!(s.wakes, 2);
    assert!(s.bytes_up > 0 && s.bytes_down > 0);
    assert_eq!(f.server.drops(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_uploaded_while_asleep_is_offered_and_pulled_across_wakes() {
    let f = Fixture::new().await;
    let mut dev = f.device().await;
    let mut link = Link::udp(f.udp).await;

    // Wake 1: nothing to offer.
    let mut ep = dev.wake();
    let got = dev
        .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
        .await;
    assert!(matches!(got, Got::Welcome { offer: None, .. }));
    drop(ep);

    // While it sleeps: an older and a newer release are uploaded.
    f.sleep(3_600_000);
    let img = image(5_000, 3);
    let c = container(&f.signer, HW, (1, 1, 0), &img);
    let old = f
        .upload(&container(&f.signer, HW, (0, 9, 0), &image(100, 1)))
        .await
        .unwrap();
    let r = f.upload(&c).await.unwrap();
    assert_eq!(r.version, fw(1, 1, 0));
    // Uploaded alone, neither is offered: it takes a rollout.
    {
        let mut ep = dev.wake();
        let got = dev
            .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
            .await;
        assert!(matches!(got, Got::Welcome { offer: None, .. }), "{got:?}");
    }
    f.rollout(&old, Spec::default()).await;
    f.rollout(&r, Spec::default()).await;

    // Wake 2 (over TCP this time): the offer, with the manifest inline; accept; four chunks.
    let mut tcp = Link::tcp(f.tcp).await;
    let mut ep = dev.wake();
    let Got::Welcome {
        offer: Some(offer), ..
    } = dev
        .request(&mut ep, &mut tcp, &checkin(fw(1, 0, 0), None))
        .await
    else {
        panic!("no offer")
    };
    assert_eq!(offer.update, UpdateId(2));
    assert_eq!(offer.version, fw(1, 1, 0));
    assert_eq!(offer.image_size, 5_000);
    let manifest = offer.manifest.clone().expect("manifest inline");
    let decoded = ota_tool::Container::decode(&c).unwrap();
    assert_eq!(manifest, decoded.manifest);
    // The device's own check of the offer.
    let pk = ota_tool::keys::public_key_from_pem(&public_pem(&f.signer)).unwrap();
    ota_tool::container::check_manifest(&manifest, &[ota_core::TrustedKey::new(*pk)], None, None)
        .unwrap();
    let accept = Up::UpdateDecision(UpdateDecision {
        update: offer.update,
        decision: Decision::Accept { bytes_done: 0 },
    });
    assert_eq!(dev.request(&mut ep, &mut tcp, &accept).await, Got::Ack);
    // The manifest also by chunks (as a `Fetch` offer would have it).
    let Got::Chunks(m) = dev
        .request(
            &mut ep,
            &mut tcp,
            &chunk_request(offer.update, Object::Manifest, 1024, 0, 1),
        )
        .await
    else {
        panic!("no manifest chunk")
    };
    assert_eq!(m[0].1, manifest);

    let mut got = vec![None; 10]; // 512-byte chunks
    let mut pull = async |dev: &mut Device, ep: &mut _, link: &mut Link, first: u32, n: u32| {
        let req = chunk_request(offer.update, Object::Image, 512, first, n);
        let Got::Chunks(cs) = dev.request(ep, link, &req).await else {
            panic!("no chunks")
        };
        assert_eq!(cs.len() as u32, n);
        for (i, d) in cs {
            got[i as usize] = Some(d);
        }
    };
    pull(&mut dev, &mut ep, &mut tcp, 0, 4).await;
    drop(ep);

    // Wake 3 and 4 over UDP: the offer again, the rest of the chunks.
    for (first, n) in [(4, 4), (8, 2)] {
        f.sleep(3_600_000);
        let mut ep = dev.wake();
        let got_w = dev
            .request(
                &mut ep,
                &mut link,
                &checkin(fw(1, 0, 0), Some((offer.update, first * 512))),
            )
            .await;
        assert!(matches!(&got_w, Got::Welcome { offer: Some(o), .. } if o.update == offer.update));
        pull(&mut dev, &mut ep, &mut link, first, n).await;
    }
    let pulled: Vec<u8> = got.into_iter().flat_map(|c| c.unwrap()).collect();
    assert_eq!(pulled, img);

    // Past the end: Nack(BadRequest); an update never offered: Nack(UnknownUpdate).
    let mut ep = dev.wake();
    let past = chunk_request(offer.update, Object::Image, 512, 9, 2);
    assert_eq!(
        dev.request(&mut ep, &mut link, &past).await,
        Got::Nack(NackCode::BadRequest)
    );
    let unknown = chunk_request(UpdateId(9), Object::Image, 512, 0, 1);
    assert_eq!(
        dev.request(&mut ep, &mut link, &unknown).await,
        Got::Nack(NackCode::UnknownUpdate)
    );
    // The older release exists (id 1) but was never offered to this device: not served.
    let never_offered = chunk_request(UpdateId(1), Object::Image, 512, 0, 1);
    assert_eq!(
        dev.request(&mut ep, &mut link, &never_offered).await,
        Got::Nack(NackCode::UnknownUpdate)
    );

    // Declined: no longer offered; the older release is not newer than 1.0.0 either.
    let decline = Up::UpdateDecision(UpdateDecision {
        update: offer.update,
        decision: Decision::Decline(cloud_proto::DeclineReason::AlreadyInstalled),
    });
    assert_eq!(dev.request(&mut ep, &mut link, &decline).await, Got::Ack);
    let got_w = dev
        .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
        .await;
    assert!(
        matches!(got_w, Got::Welcome { offer: None, .. }),
        "{got_w:?}"
    );

    let s = f.store.status(dev.id).await.unwrap().unwrap();
    assert_eq!(s.wakes, 6);
    assert!(s.bytes_down >= 5_000);
    assert_eq!(f.server.drops(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_foreign_containers_are_refused() {
    let f = Fixture::new().await;
    let img = image(3_000, 7);
    let good = container(&f.signer, HW, (2, 0, 0), &img);

    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1; // the image's last byte
    assert_eq!(
        f.upload(&tampered).await,
        Err(UploadError::Verify(CheckError::ChunkDigest(2)))
    );
    let other_signer = container(&signer(), HW, (2, 0, 0), &img);
    assert!(matches!(
        f.upload(&other_signer).await,
        Err(UploadError::Verify(CheckError::Manifest(
            ota_core::VerifyError::UnknownKey(_)
        )))
    ));
    let other_hw = container(&f.signer, "other-board", (2, 0, 0), &img);
    assert!(matches!(
        f.upload(&other_hw).await,
        Err(UploadError::Verify(CheckError::WrongHardware { .. }))
    ));
    assert!(matches!(
        f.upload(&good[..good.len() - 1]).await,
        Err(UploadError::Container(_))
    ));
    assert!(f.store.releases(f.product).await.unwrap().is_empty());

    // The good one is stored once.
    f.upload(&good).await.unwrap();
    assert!(matches!(
        f.upload(&good).await,
        Err(UploadError::AlreadyExists(_))
    ));
    assert_eq!(f.store.releases(f.product).await.unwrap().len(), 1);
    assert!(matches!(
        upload_release(&*f.store, ProductId(99), &good, f.dir.path(), T0).await,
        Err(UploadError::UnknownProduct(ProductId(99)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_frame_is_refused_with_no_state_change() {
    let f = Fixture::new().await;
    let mut dev = f.device().await;
    let mut link = Link::udp(f.udp).await;
    let mut ep = dev.wake();
    let first = dev.seal(&mut ep, &checkin(fw(1, 0, 0), None));
    link.send(&first).await;
    assert!(matches!(
        dev.collect(&mut ep, &mut link).await,
        Got::Welcome { .. }
    ));
    let bye = Up::Goodbye(Goodbye { sleep_s: 600 });
    assert_eq!(dev.request(&mut ep, &mut link, &bye).await, Got::Ack);

    let before = f.store.status(dev.id).await.unwrap();
    let last_before = f.store.last_frame(dev.id).await.unwrap();
    f.sleep(1_000);
    // Directly: refused as a replay.
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    assert_eq!(
        f.server.handle_frame(&first, from).await,
        Err(Dropped::Refused(AdmitError::Replayed {
            counter: 0,
            last: 1
        }))
    );
    // Over UDP: no answer. The next datagram the device receives answers its next request.
    link.send(&first).await;
    let mut ep = dev.wake();
    let got = dev.request(&mut ep, &mut link, &bye).await;
    assert_eq!(got, Got::Ack);
    assert_eq!(f.server.drops().replayed, 2);

    // Nothing changed but what the last goodbye did.
    let after = f.store.status(dev.id).await.unwrap().unwrap();
    let before = before.unwrap();
    assert_eq!(after.wakes, before.wakes);
    assert_eq!(after.publishes, before.publishes);
    assert_eq!(
        f.store.last_frame(dev.id).await.unwrap().unwrap().counter,
        2
    );
    assert_eq!(last_before.unwrap().counter, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_device_and_forged_frames_are_refused() {
    let f = Fixture::new().await;
    let dev = f.device().await;
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let msg = checkin(fw(1, 0, 0), None);
    let mut buf = [0u8; cloud_proto::MAX_FRAME];

    let n =
        cloud_proto::seal_up(&Keys::derive(&[1; 32]), DeviceId(999), 0, &msg, &mut buf).unwrap();
    assert_eq!(
        f.server.handle_frame(&buf[..n], from).await,
        Err(Dropped::UnknownDevice(DeviceId(999)))
    );
    // Known device, wrong key.
    let n = cloud_proto::seal_up(&Keys::derive(&[1; 32]), dev.id, 0, &msg, &mut buf).unwrap();
    assert_eq!(
        f.server.handle_frame(&buf[..n], from).await,
        Err(Dropped::Frame(FrameError::BadTag))
    );
    assert!(matches!(
        f.server.handle_frame(&buf[..3], from).await,
        Err(Dropped::Frame(_))
    ));
    let d = f.server.drops();
    assert_eq!((d.unknown_device, d.frame), (1, 2));
    assert_eq!(f.store.last_frame(dev.id).await.unwrap(), None);
    assert_eq!(f.store.status(dev.id).await.unwrap().unwrap().wakes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_is_answered_again_and_applied_once() {
    let f = Fixture::new().await;
    let mut dev = f.device().await;
    let mut ep = dev.wake();
    let mut publishes = heapless::Vec::new();
    publishes
        .push(cloud_proto::Publish {
            topic: 3,
            data: b"21.5C",
        })
        .unwrap();
    let Up::CheckIn(mut c) = checkin(fw(1, 0, 0), None) else {
        unreachable!()
    };
    c.publishes = publishes;
    let frame = dev.seal(&mut ep, &Up::CheckIn(c));
    let from: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let a = f.server.handle_frame(&frame, from).await.unwrap();
    f.sleep(2_000);
    let b = f.server.handle_frame(&frame, from).await.unwrap();
    assert_eq!(a.frames.len(), 1);
    assert_eq!(b.frames.len(), 1);
    assert!(ep.handle_datagram(0, &b.frames[0]).is_ok());
    let s = f.store.status(dev.id).await.unwrap().unwrap();
    assert_eq!((s.wakes, s.publishes), (1, 1), "applied once");
    assert_eq!(s.bytes_up, 2 * frame.len() as u64, "both copies counted");
    assert_eq!(
        f.store.last_frame(dev.id).await.unwrap().unwrap().answers,
        2
    );
    // The same copy from another address: dropped, counted.
    let other: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    assert!(matches!(
        f.server.handle_frame(&frame, other).await,
        Err(Dropped::Refused(AdmitError::OtherSource { counter: 0 }))
    ));
    assert_eq!(f.server.drops().other_source, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reported_failed_is_not_offered_again() {
    let f = Fixture::new().await;
    let mut dev = f.device().await;
    let mut link = Link::udp(f.udp).await;
    let r = f
        .upload(&container(&f.signer, HW, (1, 0, 1), &image(700, 2)))
        .await
        .unwrap();
    f.rollout(&r, Spec::default()).await;
    let mut ep = dev.wake();
    let got = dev
        .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
        .await;
    let Got::Welcome {
        offer: Some(offer), ..
    } = got
    else {
        panic!("no offer: {got:?}")
    };
    let failed = Up::UpdateStatus(cloud_proto::UpdateStatus {
        update: offer.update,
        state: cloud_proto::OtaState::Idle,
        result: cloud_proto::UpdateResult::IntegrityFailure,
    });
    assert_eq!(dev.request(&mut ep, &mut link, &failed).await, Got::Ack);
    let got = dev
        .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
        .await;
    assert!(matches!(got, Got::Welcome { offer: None, .. }), "{got:?}");
    let s = f.store.status(dev.id).await.unwrap().unwrap();
    let last = s.last_status.expect("status recorded");
    assert_eq!(last.result, cloud_proto::UpdateResult::IntegrityFailure);
}

/// Stable update ids: the id devices see is the store's release id, not a position, and a
/// device of another product is not served this product's release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_ids_are_the_stores_release_ids() {
    let f = Fixture::new().await;
    let mut dev = f.device().await;
    let mut link = Link::udp(f.udp).await;
    let a = f
        .upload(&container(&f.signer, HW, (1, 1, 0), &image(300, 1)))
        .await
        .unwrap();
    let b = f
        .upload(&container(&f.signer, HW, (1, 2, 0), &image(300, 2)))
        .await
        .unwrap();
    let b_id = f.store.release_id(b.digest).await.unwrap().unwrap();
    let a_id = f.store.release_id(a.digest).await.unwrap().unwrap();
    assert!(b_id > a_id);
    f.rollout(&b, Spec::default()).await;
    assert_eq!(
        offered(&mut dev, &mut link, fw(1, 0, 0)).await,
        Some(b_id.update_id())
    );
    // Another product's device asking for this release's id: not its product's.
    let other = f
        .store
        .add_product(NewProduct {
            name: "other".into(),
            hardware_id: [7; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let stranger = f
        .store
        .add_device(
            NewDevice {
                id: None,
                product: other,
                tags: vec![],
                root_key: RootKey::from_bytes([0x5a; 32]),
            },
            T0,
        )
        .await
        .unwrap();
    let mut stranger = Device::new(stranger, [0x5a; 32]);
    let mut ep = stranger.wake();
    let req = chunk_request(b_id.update_id(), Object::Image, 256, 0, 1);
    assert_eq!(
        stranger.request(&mut ep, &mut link, &req).await,
        Got::Nack(NackCode::UnknownUpdate)
    );
}

/// A staged rollout: only the devices whose bucket is inside the share are offered; raising
/// the share offers the others too, and every device offered before is still offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_share_offers_inside_only_and_raising_adds() {
    let f = Fixture::new().await;
    let mut link = Link::udp(f.udp).await;
    let mut devs = Vec::new();
    for _ in 0..24 {
        devs.push(f.device().await);
    }
    let r = f
        .upload(&container(&f.signer, HW, (2, 0, 0), &image(400, 4)))
        .await
        .unwrap();
    let ro = f
        .rollout(
            &r,
            Spec {
                share: Share::percent(30).unwrap(),
                ..Spec::default()
            },
        )
        .await;
    let mut first = Vec::new();
    for d in &mut devs {
        let got = offered(d, &mut link, fw(1, 0, 0)).await;
        assert_eq!(
            got.is_some(),
            in_share(ro.seed, ro.share, d.id),
            "device {}",
            d.id.0
        );
        if got.is_some() {
            first.push(d.id);
        }
    }
    assert!(
        !first.is_empty() && first.len() < devs.len(),
        "{} of 24",
        first.len()
    );
    let p = f
        .store
        .rollout_progress(ro.id, f.server.now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.targeted, p.offered, p.not_offered),
        (first.len() as u64, first.len() as u64, 0)
    );

    f.change(ro.id, RolloutChange::Share(Share::percent(60).unwrap()))
        .await;
    f.sleep(60_000);
    let mut second = Vec::new();
    for d in &mut devs {
        if offered(d, &mut link, fw(1, 0, 0)).await.is_some() {
            second.push(d.id);
        }
    }
    assert!(
        first.iter().all(|d| second.contains(d)),
        "raising removed nobody"
    );
    assert!(second.len() > first.len());
    f.change(ro.id, RolloutChange::Share(Share::ALL)).await;
    for d in &mut devs {
        assert!(offered(d, &mut link, fw(1, 0, 0)).await.is_some());
    }
}

/// Pause: a device that has not accepted is offered nothing; one mid-download is still offered
/// the release and served its chunks. Resume: offered again. Cancel: no offer, and chunk
/// requests are `Nack(UnknownUpdate)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_keeps_downloads_going_and_cancel_stops_them() {
    let f = Fixture::new().await;
    let mut link = Link::udp(f.udp).await;
    let mut a = f.device().await;
    let mut b = f.device().await;
    let r = f
        .upload(&container(&f.signer, HW, (1, 5, 0), &image(2_000, 5)))
        .await
        .unwrap();
    let ro = f.rollout(&r, Spec::default()).await;
    let update = ro.release.update_id();

    let mut ep = a.wake();
    let got = a
        .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
        .await;
    assert!(
        matches!(&got, Got::Welcome { offer: Some(o), .. } if o.update == update),
        "{got:?}"
    );
    let accept = Up::UpdateDecision(UpdateDecision {
        update,
        decision: Decision::Accept { bytes_done: 0 },
    });
    assert_eq!(a.request(&mut ep, &mut link, &accept).await, Got::Ack);
    let first = chunk_request(update, Object::Image, 512, 0, 1);
    assert!(matches!(
        a.request(&mut ep, &mut link, &first).await,
        Got::Chunks(_)
    ));
    drop(ep);

    let paused = f.change(ro.id, RolloutChange::Pause).await;
    assert_eq!(paused.state, RolloutState::Paused(PauseCause::Operator));
    f.sleep(3_600_000);
    assert_eq!(
        offered(&mut b, &mut link, fw(1, 0, 0)).await,
        None,
        "paused: no new device"
    );
    let mut ep = a.wake();
    let got = a
        .request(
            &mut ep,
            &mut link,
            &checkin(fw(1, 0, 0), Some((update, 512))),
        )
        .await;
    assert!(
        matches!(&got, Got::Welcome { offer: Some(o), .. } if o.update == update),
        "{got:?}"
    );
    let next = chunk_request(update, Object::Image, 512, 1, 2);
    assert!(matches!(a.request(&mut ep, &mut link, &next).await, Got::Chunks(c) if c.len() == 2));
    let p = f
        .store
        .rollout_progress(ro.id, f.server.now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.downloading, p.not_offered), (1, 1));
    drop(ep);

    f.change(ro.id, RolloutChange::Resume).await;
    assert_eq!(offered(&mut b, &mut link, fw(1, 0, 0)).await, Some(update));

    f.change(ro.id, RolloutChange::Cancel).await;
    let mut ep = a.wake();
    let got = a
        .request(
            &mut ep,
            &mut link,
            &checkin(fw(1, 0, 0), Some((update, 1536))),
        )
        .await;
    assert!(matches!(got, Got::Welcome { offer: None, .. }), "{got:?}");
    let more = chunk_request(update, Object::Image, 512, 3, 1);
    assert_eq!(
        a.request(&mut ep, &mut link, &more).await,
        Got::Nack(NackCode::UnknownUpdate)
    );
    assert_eq!(offered(&mut b, &mut link, fw(1, 0, 0)).await, None);
    assert_eq!(f.server.drops(), Default::default());
}

/// The error threshold: failures reported over the protocol pause the rollout in the frame
/// transaction; the next device is offered nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_threshold_pauses_the_rollout_after_failures() {
    let f = Fixture::new().await;
    let mut link = Link::udp(f.udp).await;
    let r = f
        .upload(&container(&f.signer, HW, (3, 0, 0), &image(600, 6)))
        .await
        .unwrap();
    let ro = f
        .rollout(
            &r,
            Spec {
                error_threshold: Some(ErrorThreshold {
                    max_failed: Share::percent(50).unwrap(),
                    min_finished: 2,
                }),
                ..Spec::default()
            },
        )
        .await;
    let update = ro.release.update_id();
    let mut devs = Vec::new();
    for _ in 0..3 {
        devs.push(f.device().await);
    }
    for (i, d) in devs.iter_mut().take(2).enumerate() {
        let mut ep = d.wake();
        let got = d
            .request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
            .await;
        assert!(
            matches!(&got, Got::Welcome { offer: Some(_), .. }),
            "{got:?}"
        );
        let failed = Up::UpdateStatus(cloud_proto::UpdateStatus {
            update,
            state: cloud_proto::OtaState::Idle,
            result: cloud_proto::UpdateResult::UpdateFailed,
        });
        assert_eq!(d.request(&mut ep, &mut link, &failed).await, Got::Ack);
        let state = f.store.rollout(ro.id).await.unwrap().unwrap().state;
        if i == 0 {
            assert_eq!(
                state,
                RolloutState::Running,
                "1 finished: below the minimum"
            );
        } else {
            assert_eq!(
                state,
                RolloutState::Paused(PauseCause::ErrorThreshold {
                    failed: 2,
                    finished: 2
                })
            );
        }
    }
    assert_eq!(offered(&mut devs[2], &mut link, fw(1, 0, 0)).await, None);
    let p = f
        .store
        .rollout_progress(ro.id, f.server.now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.failed, p.not_offered), (2, 1));
}

/// The deferral policy: before the rollout's deadline a `Defer { retry_in_s }` is honoured
/// (no offer until the retry time); after it the deferral is ignored: offered at every
/// check-in and counted overdue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferral_is_honoured_until_the_deadline() {
    let f = Fixture::new().await;
    let mut link = Link::udp(f.udp).await;
    let mut dev = f.device().await;
    let r = f
        .upload(&container(&f.signer, HW, (1, 9, 0), &image(500, 9)))
        .await
        .unwrap();
    let deadline = T0 + 24 * 3_600_000;
    let ro = f
        .rollout(
            &r,
            Spec {
                defer_until_ms: Some(deadline),
                ..Spec::default()
            },
        )
        .await;
    let update = ro.release.update_id();
    let defer = |retry_in_s| {
        Up::UpdateDecision(UpdateDecision {
            update,
            decision: Decision::Defer {
                retry_in_s,
                reason: cloud_proto::DeferReason::LowBattery,
            },
        })
    };
    let mut ep = dev.wake();
    assert!(matches!(
        dev.request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
            .await,
        Got::Welcome { offer: Some(_), .. }
    ));
    assert_eq!(
        dev.request(&mut ep, &mut link, &defer(7_200)).await,
        Got::Ack
    );
    drop(ep);
    f.sleep(3_600_000);
    assert_eq!(
        offered(&mut dev, &mut link, fw(1, 0, 0)).await,
        None,
        "deferred for 2 h"
    );
    f.sleep(3_600_000);
    assert_eq!(
        offered(&mut dev, &mut link, fw(1, 0, 0)).await,
        Some(update),
        "retry time"
    );
    // Deferred again for two days: honoured until the deadline, not after.
    let mut ep = dev.wake();
    assert_eq!(
        dev.request(&mut ep, &mut link, &defer(172_800)).await,
        Got::Ack
    );
    drop(ep);
    f.sleep(3_600_000);
    assert_eq!(offered(&mut dev, &mut link, fw(1, 0, 0)).await, None);
    let before = f
        .store
        .rollout_progress(ro.id, f.server.now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((before.deferred, before.overdue), (1, 0));
    f.clock.store(deadline, Ordering::SeqCst);
    assert_eq!(
        offered(&mut dev, &mut link, fw(1, 0, 0)).await,
        Some(update),
        "deadline passed"
    );
    let mut ep = dev.wake();
    assert_eq!(
        dev.request(&mut ep, &mut link, &defer(172_800)).await,
        Got::Ack
    );
    drop(ep);
    f.sleep(60_000);
    assert_eq!(
        offered(&mut dev, &mut link, fw(1, 0, 0)).await,
        Some(update),
        "every check-in"
    );
    let after = f
        .store
        .rollout_progress(ro.id, f.server.now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.overdue, 1);
}

/// Targets: a group rollout offers only the tagged devices, a device rollout only that device;
/// with several matching running rollouts the newest version wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_device_targets_and_newest_wins() {
    let f = Fixture::new().await;
    let mut link = Link::udp(f.udp).await;
    let mut pilot = f.device_tagged(&["pilot"]).await;
    let mut plain = f.device().await;
    let mut chosen = f.device().await;
    let g = f
        .upload(&container(&f.signer, HW, (1, 1, 0), &image(300, 1)))
        .await
        .unwrap();
    let d = f
        .upload(&container(&f.signer, HW, (1, 2, 0), &image(300, 2)))
        .await
        .unwrap();
    let group = f
        .rollout(
            &g,
            Spec {
                target: Target::Group("pilot".into()),
                ..Spec::default()
            },
        )
        .await;
    let single = f
        .rollout(
            &d,
            Spec {
                target: Target::Device(chosen.id),
                ..Spec::default()
            },
        )
        .await;
    let (gu, du) = (group.release.update_id(), single.release.update_id());
    assert_eq!(offered(&mut pilot, &mut link, fw(1, 0, 0)).await, Some(gu));
    assert_eq!(offered(&mut plain, &mut link, fw(1, 0, 0)).await, None);
    assert_eq!(offered(&mut chosen, &mut link, fw(1, 0, 0)).await, Some(du));
    // A product-wide rollout of 1.2.0 too: the pilot device now gets the newest.
    f.rollout(&d, Spec::default()).await;
    assert_eq!(offered(&mut pilot, &mut link, fw(1, 0, 0)).await, Some(du));
    assert_eq!(offered(&mut plain, &mut link, fw(1, 0, 0)).await, Some(du));
    // Running 1.1.0 already: the group's release is not newer.
    assert_eq!(offered(&mut pilot, &mut link, fw(1, 2, 0)).await, None);
}
