//! Kill -9 of `ota-cloud serve` while devices check in, publish and report OTA status changes;
//! then a restart on the same data directory: every acknowledged publish and status is in the
//! store, the release still verifies and serves, and frames acknowledged before the kill are
//! refused as replays after it.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_proto::{
    CheckIn, Counters, DeviceConfig, DeviceEndpoint, DeviceId, Down, Event, FirmwareVersion,
    Goodbye, Keys, Object, OtaReport, OtaState, Publish, Up, UpdateId, UpdateResult, UpdateStatus,
};
use ota_cloud::load::{offer_to_all, provision, root_key, signed_release};
use ota_cloud::release::Payload;
use ota_cloud::{MasterKey, PublishId, SqliteOptions, SqliteStore, Store};
use tokio::net::UdpSocket;

const DEVICES: u32 = 24;
const SEED: u64 = 7;
/// Acknowledged requests (all devices) before the kill.
const ACKS_BEFORE_KILL: u64 = 1_500;
/// Guards against a hang only; never asserted on.
const GUARD: Duration = Duration::from_secs(10);

fn serve(data: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ota-cloud"))
        .args(["--data", data.to_str().unwrap()])
        .args(["serve", "--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        // The closed loop below wakes each device many times a second.
        .arg("--no-rate-limits")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    (child, addr)
}

async fn open(data: &Path) -> SqliteStore {
    let master = MasterKey::load(&data.join("master.key")).unwrap();
    SqliteStore::open(&data.join("ota.db"), master, SqliteOptions::default()).unwrap()
}

/// What the client saw acknowledged, per device.
#[derive(Default)]
struct Acked {
    /// `(device, counter, data)` of every publish a `Welcome` acknowledged.
    publishes: HashSet<(u32, u32, Vec<u8>)>,
    /// The last status an `Ack` acknowledged, and one sent but not acknowledged since.
    status: Option<UpdateStatus>,
    status_in_flight: Option<UpdateStatus>,
    /// Acknowledged frames, oldest first: `(counter, frame bytes)`.
    frames: Vec<(u32, Vec<u8>)>,
    /// The highest counter sent.
    last_sent: Option<u32>,
}

/// Sends `msg` and waits for the answer (retransmitting on the endpoint's timer). `None`: the
/// server is gone (killed) or never answered.
async fn request(
    ep: &mut DeviceEndpoint,
    sock: &UdpSocket,
    msg: &Up<'_>,
    clock: &tokio::time::Instant,
) -> Option<(Vec<u8>, Option<UpdateId>)> {
    let now = || clock.elapsed().as_millis() as u64;
    if let Some(r) = ep.checkpoint() {
        ep.mark_checkpointed(r);
    }
    let frame = ep.send(now(), msg).unwrap().frame.to_vec();
    sock.send(&frame).await.ok()?;
    let mut buf = vec![0u8; 2048];
    loop {
        let wait = ep.poll_timeout()?.saturating_sub(now());
        match tokio::time::timeout(Duration::from_millis(wait), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => match ep.handle_datagram(now(), &buf[..n]) {
                Ok(Event::Reply(Down::Welcome(w))) => {
                    assert_eq!(w.publishes_acked, 1);
                    return Some((frame, w.offer.map(|o| o.update)));
                }
                Ok(Event::Reply(Down::Ack)) => return Some((frame, None)),
                Ok(e) => panic!("unexpected answer {e:?}"),
                Err(_) => {}
            },
            Ok(Err(_)) => return None,
            Err(_) => match ep.handle_timeout(now()) {
                cloud_proto::Timeout::Retransmit(f) => {
                    let f = f.to_vec();
                    sock.send(&f).await.ok()?;
                }
                cloud_proto::Timeout::NotYet => {}
                _ => return None,
            },
        }
    }
}

/// Pulls the image of `update` (`size` bytes) by chunk requests of 64 chunks of 1,000 bytes.
async fn pull_image(
    ep: &mut DeviceEndpoint,
    sock: &UdpSocket,
    update: UpdateId,
    size: usize,
    clock: &tokio::time::Instant,
) -> Vec<u8> {
    let now = || clock.elapsed().as_millis() as u64;
    let chunks = size.div_ceil(1000) as u32;
    let mut image = Vec::new();
    let mut buf = vec![0u8; 2048];
    while image.len() < size {
        let first = (image.len() / 1000) as u32;
        let req = cloud_proto::ChunkRequest::plan(update, Object::Image, 1000, first..chunks, 64)
            .unwrap();
        let frame = ep
            .send(now(), &Up::ChunkRequest(req))
            .unwrap()
            .frame
            .to_vec();
        sock.send(&frame).await.unwrap();
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            match ep.handle_datagram(now(), &buf[..n]) {
                Ok(Event::Chunk { data, done, .. }) => {
                    image.extend_from_slice(data);
                    if done {
                        break;
                    }
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
    image
}

const STATES: [OtaState; 3] = [
    OtaState::Downloading,
    OtaState::Downloaded,
    OtaState::Updating,
];

/// One device in a loop: check-in with a publish, an OTA status change, goodbye; until `stop`.
async fn device_loop(
    id: u32,
    server: SocketAddr,
    acked: Arc<Mutex<Acked>>,
    acks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    let clock = tokio::time::Instant::now();
    let keys = Keys::derive(&root_key(SEED, id));
    let mut config = DeviceConfig::new(DeviceId(id));
    config.rto_initial_ms = 500;
    let mut counters = Counters::cold(0);
    for wake in 0u32.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut ep = DeviceEndpoint::new(config, keys.clone(), counters);
        let data = [id.to_le_bytes(), wake.to_le_bytes()].concat();
        let checkin = Up::CheckIn(CheckIn {
            firmware: FirmwareVersion::default(),
            trial: false,
            ota: OtaReport::default(),
            battery_mv: 3700,
            forced_sleeps: 0,
            publishes: [Publish {
                topic: 7,
                data: &data,
            }]
            .into_iter()
            .collect(),
        });
        let counter = ep.counters().next;
        acked.lock().unwrap().last_sent = Some(counter);
        let Some((frame, offer)) = request(&mut ep, &sock, &checkin, &clock).await else {
            return;
        };
        {
            let mut a = acked.lock().unwrap();
            a.publishes.insert((id, counter, data.clone()));
            a.frames.push((counter, frame));
        }
        acks.fetch_add(1, Ordering::SeqCst);
        let update = offer.expect("the release is offered");
        let status = UpdateStatus {
            update,
            state: STATES[wake as usize % 3],
            result: UpdateResult::Initial,
        };
        let counter = ep.counters().next;
        {
            let mut a = acked.lock().unwrap();
            a.last_sent = Some(counter);
            a.status_in_flight = Some(status);
        }
        let Some((frame, _)) = request(&mut ep, &sock, &Up::UpdateStatus(status), &clock).await
        else {
            return;
        };
        {
            let mut a = acked.lock().unwrap();
            a.status = Some(status);
            a.status_in_flight = None;
            a.frames.push((counter, frame));
        }
        acks.fetch_add(1, Ordering::SeqCst);
        let counter = ep.counters().next;
        acked.lock().unwrap().last_sent = Some(counter);
        let bye = Up::Goodbye(Goodbye { sleep_s: 60 });
        let Some((frame, _)) = request(&mut ep, &sock, &bye, &clock).await else {
            return;
        };
        acked.lock().unwrap().frames.push((counter, frame));
        acks.fetch_add(1, Ordering::SeqCst);
        counters = ep.counters();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let st = Command::new(env!("CARGO_BIN_EXE_ota-cloud"))
        .args(["--data", data.to_str().unwrap(), "init"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let image: Vec<u8> = (0..20_000).map(|i| (i % 251) as u8).collect();
    let (container, key) = signed_release(&image).unwrap();
    let store = Arc::new(open(&data).await);
    let product = provision(&store, DEVICES, SEED, key.clone(), 8)
        .await
        .unwrap();
    let release = offer_to_all(&*store, product, &container, &data.join("releases"))
        .await
        .unwrap();
    Arc::try_unwrap(store).unwrap().close().await;

    // Load, then kill -9 once enough requests were acknowledged.
    let (mut server, addr) = serve(&data);
    let acks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<_> = (0..DEVICES)
        .map(|_| Arc::new(Mutex::new(Acked::default())))
        .collect();
    let mut tasks = Vec::new();
    for id in 1..=DEVICES {
        let (a, n, s) = (acked[id as usize - 1].clone(), acks.clone(), stop.clone());
        tasks.push(tokio::spawn(device_loop(id, addr, a, n, s)));
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while acks.load(Ordering::SeqCst) < ACKS_BEFORE_KILL {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the load never reached its acknowledgements");
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        // Each gives up once its outstanding request goes unanswered.
        t.await.unwrap();
    }
    let acked: Vec<Acked> = acked
        .into_iter()
        .map(|a| Arc::try_unwrap(a).ok().unwrap().into_inner().unwrap())
        .collect();

    // Reopen the same data directory: every acknowledged write is there.
    let store = open(&data).await;
    let mut stored = Vec::new();
    let mut after = PublishId::default();
    loop {
        let page = store.publishes_since(after, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        stored.extend(page);
    }
    let stored_set: HashSet<(u32, u32, Vec<u8>)> = stored
        .iter()
        .map(|p| (p.device.0, p.counter, p.data.clone()))
        .collect();
    assert_eq!(stored_set.len(), stored.len(), "a publish stored twice");
    let mut acked_publishes = 0;
    let mut snapshot = Vec::new();
    for (i, a) in acked.iter().enumerate() {
        let id = DeviceId(i as u32 + 1);
        for p in &a.publishes {
            assert!(stored_set.contains(p), "acknowledged publish lost: {p:?}");
            acked_publishes += 1;
        }
        let lf = store.last_frame(id).await.unwrap().unwrap();
        let last_acked = a.frames.last().unwrap().0;
        assert!(
            lf.counter >= last_acked,
            "device {}: record went back",
            id.0
        );
        assert!(lf.counter <= a.last_sent.unwrap(), "device {}", id.0);
        let s = store.status(id).await.unwrap().unwrap();
        assert!(
            s.last_status == a.status || s.last_status == a.status_in_flight,
            "device {}: stored status {:?}, acknowledged {:?}",
            id.0,
            s.last_status,
            a.status
        );
        snapshot.push((lf, s));
    }
    assert!(acked_publishes > 0);
    // Nothing stored that was never sent.
    for p in &stored {
        let a = &acked[p.device.0 as usize - 1];
        assert!(p.counter <= a.last_sent.unwrap());
    }
    // The release rows are intact: it reads back, matches its digest, still verifies.
    let releases = store.releases(product).await.unwrap();
    let releases: Vec<_> = releases.into_iter().map(|(_, r)| r).collect();
    assert_eq!(releases, vec![release.clone()]);
    let payload = Payload::load(&release).await.unwrap();
    assert_eq!(payload.image, image);
    let c = ota_tool::Container::decode(&container).unwrap();
    let pk = ota_tool::keys::public_key_from_pem(&key).unwrap();
    let hw = ota_core::HardwareId::from_name(ota_cloud::load::HARDWARE).unwrap();
    ota_tool::container::check_container(&c, &[ota_core::TrustedKey::new(*pk)], Some(hw), None)
        .unwrap();
    store.close().await;

    // Restart on the same directory. Frames acknowledged before the kill are refused as
    // replays: the oldest acknowledged frame of each device (a lower counter than its record)
    // and its newest one sent from another address.
    let (mut server, addr) = serve(&data);
    let mut replay_socks = Vec::new();
    for a in &acked {
        for frame in [&a.frames[0].1, &a.frames.last().unwrap().1] {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.connect(addr).await.unwrap();
            s.send(frame).await.unwrap();
            replay_socks.push(s);
        }
    }
    // Then one fresh check-in per device, continuing its counters: the server answers it, so
    // it is up and has read every frame sent before.
    let mut fresh_last = Vec::new();
    for (i, a) in acked.iter().enumerate() {
        let id = i as u32 + 1;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(addr).await.unwrap();
        let counters = Counters::cold(a.last_sent.unwrap() + 1);
        let mut ep = DeviceEndpoint::new(
            DeviceConfig::new(DeviceId(id)),
            Keys::derive(&root_key(SEED, id)),
            counters,
        );
        let data = b"after".to_vec();
        let checkin = Up::CheckIn(CheckIn {
            firmware: FirmwareVersion::default(),
            trial: false,
            ota: OtaReport::default(),
            battery_mv: 3700,
            forced_sleeps: 0,
            publishes: [Publish {
                topic: 7,
                data: &data,
            }]
            .into_iter()
            .collect(),
        });
        let clock = tokio::time::Instant::now();
        let (_, offer) = tokio::time::timeout(GUARD, request(&mut ep, &sock, &checkin, &clock))
            .await
            .unwrap()
            .expect("the restarted server answers a fresh check-in");
        if id == 1 {
            // The release still serves: the whole image, by chunks, as uploaded.
            let update = offer.expect("still offered");
            let served = tokio::time::timeout(
                GUARD,
                pull_image(&mut ep, &sock, update, image.len(), &clock),
            )
            .await
            .unwrap();
            assert!(
                served == image,
                "served {} bytes, not the image",
                served.len()
            );
        }
        fresh_last.push(ep.counters().next - 1);
    }
    let mut buf = [0u8; 2048];
    for s in &replay_socks {
        assert!(
            s.try_recv(&mut buf).is_err(),
            "a replayed frame was answered"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // The store moved by exactly the fresh requests: the replays changed nothing.
    let store = open(&data).await;
    for (i, (lf, s)) in snapshot.iter().enumerate() {
        let id = DeviceId(i as u32 + 1);
        let lf2 = store.last_frame(id).await.unwrap().unwrap();
        assert_eq!(lf2.counter, fresh_last[i]);
        assert!(lf2.counter > lf.counter);
        let s2 = store.status(id).await.unwrap().unwrap();
        assert_eq!(s2.wakes, s.wakes + 1, "device {}", id.0);
        assert_eq!(s2.publishes, s.publishes + 1, "device {}", id.0);
        assert_eq!(s2.last_status, s.last_status);
    }
    store.close().await;
}
