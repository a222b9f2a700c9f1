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
use ota_cloud::server::{Dropped, Server, ServerConfig};
use ota_cloud::transport::{serve_tcp, serve_udp};
use ota_cloud::{
    MasterKey, NewDevice, NewProduct, ProductId, RootKey, SqliteOptions, SqliteStore, Store,
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
        let root = [0x5a; 32];
        let id = self
            .store
            .add_device(
                NewDevice {
                    id: None,
                    product: self.product,
                    tags: vec![],
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

    /// Time passes while the device sleeps.
    fn sleep(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
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
    f.upload(&container(&f.signer, HW, (0, 9, 0), &image(100, 1)))
        .await
        .unwrap();
    let r = f.upload(&c).await.unwrap();
    assert_eq!(r.version, fw(1, 1, 0));

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
    assert_eq!(s.wakes, 5);
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
    f.upload(&container(&f.signer, HW, (1, 0, 1), &image(700, 2)))
        .await
        .unwrap();
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
