//! A scripted cloud for what the reference server never does: serve chunks that fail their
//! digest, or lose datagrams. cloud-proto's own server helpers on a std UDP socket thread.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cloud_proto::{
    handle_datagram, respond, serve_chunks, DeviceId, DeviceStore, Down, ManifestRef, MemoryStore,
    Object, ReplayPolicy, SleepGrant, Up, UpdateId, UpdateOffer, Welcome, MAX_FRAME,
};

use super::fw;

/// What the fake serves.
pub struct Script {
    pub device: DeviceId,
    pub root: [u8; 32],
    pub manifest: Vec<u8>,
    /// The image bytes it serves (corrupt them to test the device's digest checks).
    pub image: Vec<u8>,
    pub version: (u16, u16, u16),
    /// Drop every n-th datagram the fake sends (deterministic loss).
    pub drop_every: Option<u32>,
}

pub struct FakeCloud {
    pub addr: SocketAddr,
    pub sent: Arc<AtomicU32>,
    pub dropped: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FakeCloud {
    pub fn start(script: Script) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicU32::new(0));
        let (s, n, d) = (stop.clone(), sent.clone(), dropped.clone());
        let handle = std::thread::spawn(move || serve(sock, script, &s, &n, &d));
        Self {
            addr,
            sent,
            dropped,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(sock: UdpSocket, s: Script, stop: &AtomicBool, sent: &AtomicU32, dropped: &AtomicU32) {
    let mut store = MemoryStore::default();
    store.insert(s.device, &s.root);
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut out = [0u8; MAX_FRAME];
    let manifest_len = u32::try_from(s.manifest.len()).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let now = 1_800_000_000_000 + start.elapsed().as_millis() as u64;
        let Ok(req) = handle_datagram(&buf[..n], from, &mut store, now, ReplayPolicy::DEFAULT)
        else {
            continue;
        };
        let keys = store.keys(req.device).unwrap().unwrap();
        let mut send = |frame: &[u8]| {
            let k = sent.fetch_add(1, Ordering::SeqCst) + 1;
            if s.drop_every.is_some_and(|d| k.is_multiple_of(d)) {
                dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let _ = sock.send_to(frame, from);
        };
        match &req.msg {
            Up::CheckIn(c) => {
                let offer = (c.firmware != fw(s.version)).then_some(UpdateOffer {
                    update: UpdateId(1),
                    version: fw(s.version),
                    image_size: u32::try_from(s.image.len()).unwrap(),
                    manifest: ManifestRef::Fetch { len: manifest_len },
                });
                let w = Down::Welcome(Welcome {
                    server_time: 0,
                    publishes_acked: c.publishes.len() as u8,
                    sleep: SleepGrant {
                        next_checkin_s: 900,
                        awake_extension_ms: 30_000,
                    },
                    offer,
                });
                let len = respond(&keys, req.device, req.counter, &w, &mut out).unwrap();
                send(&out[..len]);
            }
            Up::ChunkRequest(c) => {
                let object = match c.object {
                    Object::Manifest => &s.manifest,
                    Object::Image => &s.image,
                };
                serve_chunks(&keys, &req, object, &mut out, &mut send).unwrap();
            }
            _ => {
                let len = respond(&keys, req.device, req.counter, &Down::Ack, &mut out).unwrap();
                send(&out[..len]);
            }
        }
    }
}
