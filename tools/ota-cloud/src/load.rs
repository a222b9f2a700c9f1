//! The load generator's parts (the `ota-cloud-load` binary is a thin `main` around them):
//! provisioning a fleet with keys the client can derive again, simulated sleeping devices on
//! cloud-proto's own [`DeviceEndpoint`] (real frames, real keys, its retransmission timer) over
//! loopback UDP, the bare UDP echo server that gives the ceiling, and the figures.
//!
//! One wake of a simulated device: a fresh endpoint from the counters it kept, a check-in with
//! one publish (answered by a `Welcome` once the publish is durable), then a goodbye (answered
//! by an `Ack`). The chunk run adds chunk requests of [`MAX_CHUNKS_PER_REQUEST`] chunks between
//! them. Devices are taken in a random order, each device once per pass over the fleet, by a
//! fixed number of concurrent clients: in a closed loop (the figure is the rate the server
//! sustains, the latency what a device sees at that rate) or at Poisson wake times of a given
//! rate ([`RunConfig::rate`]: the latency at that offered load).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_proto::{
    CheckIn, Counters, DeviceConfig, DeviceEndpoint, DeviceId, Down, Event, FirmwareVersion,
    Goodbye, Keys, Object, OtaReport, Publish, Timeout, Up, UpdateId, MAX_CHUNKS_PER_REQUEST,
    MAX_CHUNK_DATA_DATAGRAM, MAX_FRAME,
};
use ota_core::{HardwareId, ImageParams, SecurityCounter, Version};
use sha2::{Digest as _, Sha256};
use tokio::net::UdpSocket;

use crate::release::{upload_release, UploadError};
use crate::rollout::{NewRollout, Share, Target};
use crate::store::{NewDevice, NewProduct, ProductId, Release, Store, StoreError};
use crate::RootKey;

/// The hardware id of the load product's releases.
pub const HARDWARE: &str = "load-v1";

/// Device `id`'s root key in a fleet provisioned with `seed`: SHA-256 of a label, the seed and
/// the id, so the client derives every key again without a key file per device. Test keys
/// only: anyone who knows the seed knows them.
pub fn root_key(seed: u64, id: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"ota-cloud-load root key");
    h.update(seed.to_le_bytes());
    h.update(id.to_le_bytes());
    h.finalize().into()
}

/// Provisions a product (trusting `release_key_pem`) and devices `1..=devices` with
/// [`root_key`]`(seed, id)`, `in_flight` additions at a time (group commit carries them).
/// Errors: the store's. Cost: one transaction per device.
pub async fn provision<S: Store>(
    store: &Arc<S>,
    devices: u32,
    seed: u64,
    release_key_pem: String,
    in_flight: usize,
) -> Result<ProductId, StoreError> {
    let product = store
        .add_product(NewProduct {
            name: "load".into(),
            hardware_id: hardware_id().0,
            release_keys: vec![release_key_pem],
        })
        .await?;
    let next = Arc::new(AtomicU32::new(1));
    let mut tasks = Vec::new();
    for _ in 0..in_flight.max(1) {
        let (store, next) = (store.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id > devices {
                    return Ok::<_, StoreError>(());
                }
                let d = NewDevice {
                    id: Some(DeviceId(id)),
                    product,
                    tags: vec![],
                    root_key: RootKey::from_bytes(root_key(seed, id)),
                };
                store.add_device(d, 0).await?;
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|_| StoreError::Database("provisioning task panicked".into()))??;
    }
    Ok(product)
}

fn hardware_id() -> HardwareId {
    // A constant name shorter than 16 bytes: cannot fail.
    HardwareId::from_name(HARDWARE).unwrap_or(HardwareId([0; 16]))
}

/// Signs an `image` for the load product as `ota-tool sign` would (version 1.0.0) with a key
/// from [`ota_tool::keys::generate`]; returns the container and the public key (SPKI PEM).
pub fn signed_release(image: &[u8]) -> Result<(Vec<u8>, String), String> {
    let kp = ota_tool::keys::generate();
    let params = ImageParams {
        hardware_id: hardware_id(),
        version: Version::new(1, 0, 0),
        security_counter: SecurityCounter(1),
        chunk_size: 1024,
        base_digest: None,
    };
    let c = ota_tool::Container::sign(&params, image, &kp).map_err(|e| format!("{e:?}"))?;
    Ok((c.encode(), ota_tool::keys::public_key_to_pem(&kp.pk)))
}

/// Makes `container` the release every device of `product` is offered at its next check-in:
/// uploads it (verified) and starts a rollout of it to the whole product at 100 %.
///
/// Errors: the upload's; a failed rollout start is [`UploadError::Store`].
/// Cost: see [`upload_release`], plus one rollout insert.
pub async fn offer_to_all<S: Store>(
    store: &S,
    product: ProductId,
    container: &[u8],
    releases_dir: &std::path::Path,
) -> Result<Release, UploadError> {
    let release = upload_release(store, product, container, releases_dir, 0).await?;
    let id = store
        .release_id(release.digest)
        .await
        .map_err(UploadError::Store)?
        .ok_or_else(|| {
            UploadError::Store(StoreError::Corrupt("an uploaded release has no id".into()))
        })?;
    store
        .add_rollout(NewRollout {
            release: id,
            target: Target::Product,
            share: Share::ALL,
            error_threshold: None,
            defer_until_ms: None,
            created_ms: 0,
        })
        .await
        .map_err(UploadError::Store)?;
    Ok(release)
}

/// Serves a bare UDP echo on `socket` until a receive error, built like
/// [`serve_udp`](crate::transport::serve_udp) (one receive loop, each datagram copied into its
/// own task under the same in-flight bound, the answer sent from the task) but with no work in
/// between: the ceiling the frame path is compared with.
///
/// Errors: the socket's receive error.
pub async fn echo_udp(socket: UdpSocket, max_in_flight: usize) -> io::Result<()> {
    let socket = Arc::new(socket);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let mut buf = vec![0u8; MAX_FRAME + 1];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let frame = buf[..n].to_vec();
        let socket = socket.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = socket.send_to(&frame, from).await;
        });
    }
}

/// What a run does in each wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Check-in with one publish, goodbye.
    CheckIns,
    /// Check-in (taking the offer), `requests` chunk requests of
    /// [`MAX_CHUNKS_PER_REQUEST`] image chunks of [`MAX_CHUNK_DATA_DATAGRAM`] bytes, goodbye.
    Chunks {
        /// Chunk requests per wake.
        requests: u32,
    },
    /// The same datagrams as `CheckIns`, to an echo server: any datagram back is the answer.
    Echo,
}

/// A client run's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunConfig {
    /// Where the server listens (UDP).
    pub server: SocketAddr,
    /// Devices awake at once (each with its own socket).
    pub concurrency: usize,
    /// Not counted: the start of the run.
    pub warmup: Duration,
    /// Counted.
    pub measure: Duration,
    /// The device's first retransmission timeout (doubling; 4 transmissions).
    pub rto_ms: u32,
    /// Seed of the wake order.
    pub seed: u64,
    /// `None`: closed loop (each awake device wakes the next as soon as it sleeps: the rate
    /// the server sustains). `Some(r)`: open loop, wakes start at random (Poisson) times at
    /// `r` per second in all; a wake's check-in latency is counted from its scheduled start,
    /// so time spent waiting for a free client is not hidden.
    pub rate: Option<f64>,
}

/// The fleet as the client sees it: keys and the counters each device keeps across wakes.
pub struct Fleet {
    keys: Vec<Keys>,
    next_counter: Vec<AtomicU32>,
}

impl Fleet {
    /// Devices `1..=devices` with [`root_key`]`(seed, id)`. Cost: one key derivation each.
    pub fn new(devices: u32, seed: u64) -> Self {
        Self {
            keys: (1..=devices)
                .map(|id| Keys::derive(&root_key(seed, id)))
                .collect(),
            next_counter: (0..devices).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Devices in the fleet.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it has no device.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Seconds measured.
    pub seconds: f64,
    /// Wakes whose check-in was answered within the measured window.
    pub wakes: u64,
    /// Check-in round-trip times (µs), sorted.
    pub checkin_us: Vec<u32>,
    /// Every request's round-trip time (µs), sorted.
    pub request_us: Vec<u32>,
    /// Retransmissions (the device's timer fired).
    pub retransmissions: u64,
    /// Requests never answered after every transmission.
    pub gave_up: u64,
    /// Chunk data bytes received (chunk runs).
    pub chunk_bytes: u64,
    /// Answers the device refused (must stay 0).
    pub refused_answers: u64,
}

impl RunStats {
    /// Check-ins per second.
    pub fn rate(&self) -> f64 {
        self.wakes as f64 / self.seconds.max(1e-9)
    }

    /// Chunk data MB/s (10⁶ bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.chunk_bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }

    /// The `p`-quantile (0..1) of `v` in milliseconds, 0 if empty.
    pub fn quantile_ms(v: &[u32], p: f64) -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p) as usize).min(v.len() - 1);
        f64::from(v[i]) / 1000.0
    }
}

/// A small deterministic generator (SplitMix64) for the wake order.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A random permutation of `0..n` (Fisher–Yates).
fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut r = Mix(seed);
    for i in (1..v.len()).rev() {
        let j = (r.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// One outcome of a request.
enum Outcome {
    /// Answered: the message (or the last chunk) arrived.
    Answered(Option<(UpdateId, u32)>),
    /// Every transmission went unanswered, or the chunk answer stopped part way.
    Lost,
}

struct Worker {
    socket: UdpSocket,
    start: Instant,
    rto_ms: u32,
    buf: Vec<u8>,
    stats: RunStats,
}

impl Worker {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends `msg` from `ep` and waits for its answer, retransmitting on the endpoint's timer.
    /// `echo`: any datagram back answers it.
    async fn request(
        &mut self,
        ep: &mut DeviceEndpoint,
        msg: &Up<'_>,
        echo: bool,
    ) -> io::Result<(Outcome, Duration)> {
        if let Some(r) = ep.checkpoint() {
            ep.mark_checkpointed(r);
        }
        let t0 = Instant::now();
        let frame = match ep.send(self.now(), msg) {
            Ok(t) => t.frame.to_vec(),
            Err(e) => return Err(io::Error::other(format!("device send: {e:?}"))),
        };
        self.socket.send(&frame).await?;
        loop {
            let deadline = ep.poll_timeout().unwrap_or(0);
            let wait = Duration::from_millis(deadline.saturating_sub(self.now()));
            match tokio::time::timeout(wait, self.socket.recv(&mut self.buf)).await {
                Ok(n) => {
                    let n = n?;
                    if echo {
                        ep.abandon();
                        return Ok((Outcome::Answered(None), t0.elapsed()));
                    }
                    let now = self.now();
                    match ep.handle_datagram(now, &self.buf[..n]) {
                        Ok(Event::Reply(Down::Welcome(w))) => {
                            let offer = w.offer.map(|o| (o.update, o.image_size));
                            return Ok((Outcome::Answered(offer), t0.elapsed()));
                        }
                        Ok(Event::Reply(_)) => {
                            return Ok((Outcome::Answered(None), t0.elapsed()));
                        }
                        Ok(Event::Chunk { data, done, .. }) => {
                            self.stats.chunk_bytes += data.len() as u64;
                            if done {
                                return Ok((Outcome::Answered(None), t0.elapsed()));
                            }
                        }
                        // A late answer to an earlier request of this socket: not ours.
                        Err(_) => self.stats.refused_answers += 1,
                    }
                }
                Err(_) => match ep.handle_timeout(self.now()) {
                    Timeout::NotYet => {}
                    Timeout::Retransmit(f) => {
                        self.stats.retransmissions += 1;
                        let f = f.to_vec();
                        self.socket.send(&f).await?;
                    }
                    Timeout::Incomplete { .. } | Timeout::GaveUp => {
                        self.stats.gave_up += 1;
                        return Ok((Outcome::Lost, t0.elapsed()));
                    }
                },
            }
        }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Runs `workload` against `config.server` with `config.concurrency` devices awake at once,
/// for `warmup + measure`; counts what completes inside the measured window.
///
/// Errors: socket errors, a device endpoint refusing to send. Cost: the run's duration.
pub async fn run(fleet: Arc<Fleet>, workload: Workload, config: RunConfig) -> io::Result<RunStats> {
    if fleet.is_empty() {
        return Err(io::Error::other("no devices"));
    }
    let order = Arc::new(shuffled(fleet.len(), config.seed));
    let cursor = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.measure;
    let mut tasks = Vec::new();
    let clients = config.concurrency.max(1);
    for c in 0..clients {
        let (fleet, order, cursor) = (fleet.clone(), order.clone(), cursor.clone());
        // Open loop: each client's wakes are a Poisson process of rate / clients; together
        // they are one of `rate`.
        let mut arrivals = Mix(config.seed ^ (c as u64).wrapping_mul(0x9E37_79B9));
        let mean_gap_s = config.rate.map(|r| clients as f64 / r.max(1e-9));
        let mut next_start = start;
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(config.server).await?;
        let mut w = Worker {
            socket,
            start,
            rto_ms: config.rto_ms,
            buf: vec![0u8; MAX_FRAME + 1],
            stats: RunStats::default(),
        };
        tasks.push(tokio::spawn(async move {
            let mut publish = [0u8; 16];
            while Instant::now() < end {
                let scheduled = match mean_gap_s {
                    None => Instant::now(),
                    Some(gap) => {
                        // Exponential gap: -ln(U) × mean, U in (0, 1].
                        let u = ((arrivals.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                        next_start += Duration::from_secs_f64(-u.ln() * gap);
                        tokio::time::sleep_until(next_start.into()).await;
                        next_start
                    }
                };
                if scheduled >= end {
                    break;
                }
                let k = cursor.fetch_add(1, Ordering::Relaxed) as usize % order.len();
                let i = order[k] as usize;
                let id = DeviceId(i as u32 + 1);
                let next = fleet.next_counter[i].load(Ordering::Relaxed);
                let mut cfg = DeviceConfig::new(id);
                cfg.rto_initial_ms = w.rto_ms;
                cfg.rto_max_ms = w.rto_ms.saturating_mul(8);
                let mut ep = DeviceEndpoint::new(cfg, fleet.keys[i].clone(), Counters::cold(next));
                publish[..8].copy_from_slice(&(k as u64).to_le_bytes());
                let firmware = match workload {
                    // Below the release's 1.0.0: the check-in gets the offer.
                    Workload::Chunks { .. } => FirmwareVersion::default(),
                    _ => FirmwareVersion {
                        major: 9,
                        minor: 0,
                        patch: 0,
                    },
                };
                let checkin = Up::CheckIn(CheckIn {
                    firmware,
                    trial: false,
                    ota: OtaReport::default(),
                    battery_mv: 3700,
                    forced_sleeps: 0,
                    publishes: [Publish {
                        topic: 1,
                        data: &publish,
                    }]
                    .into_iter()
                    .collect(),
                });
                let echo = workload == Workload::Echo;
                let (outcome, _) = w.request(&mut ep, &checkin, echo).await?;
                // From the scheduled start: includes any wait for this client to be free.
                let rtt = scheduled.elapsed();
                let counted = {
                    let now = Instant::now();
                    now >= measure_from && now < end
                };
                let offer = match outcome {
                    Outcome::Answered(offer) => {
                        if counted {
                            w.stats.wakes += 1;
                            w.stats.checkin_us.push(micros(rtt));
                            w.stats.request_us.push(micros(rtt));
                        }
                        offer
                    }
                    Outcome::Lost => None,
                };
                if let (Workload::Chunks { requests }, Some((update, size))) = (workload, offer) {
                    let chunk = MAX_CHUNK_DATA_DATAGRAM as u32;
                    let chunks = size.div_ceil(chunk).max(1);
                    for r in 0..requests {
                        let first = (k as u32 + r).wrapping_mul(MAX_CHUNKS_PER_REQUEST) % chunks;
                        let Some(req) = cloud_proto::ChunkRequest::plan(
                            update,
                            Object::Image,
                            chunk as u16,
                            first..chunks,
                            MAX_CHUNKS_PER_REQUEST,
                        ) else {
                            break;
                        };
                        let before = w.stats.chunk_bytes;
                        let (_, rtt) = w.request(&mut ep, &Up::ChunkRequest(req), false).await?;
                        let now = Instant::now();
                        if now >= measure_from && now < end {
                            w.stats.request_us.push(micros(rtt));
                        } else {
                            w.stats.chunk_bytes = before;
                        }
                    }
                }
                let bye = Up::Goodbye(Goodbye { sleep_s: 3600 });
                let (outcome, rtt) = w.request(&mut ep, &bye, echo).await?;
                if counted && matches!(outcome, Outcome::Answered(_)) {
                    w.stats.request_us.push(micros(rtt));
                }
                fleet.next_counter[i].store(ep.counters().next, Ordering::Relaxed);
            }
            Ok::<_, io::Error>(w.stats)
        }));
    }
    let mut total = RunStats {
        seconds: config.measure.as_secs_f64(),
        ..RunStats::default()
    };
    for t in tasks {
        let s = t
            .await
            .map_err(|_| io::Error::other("client task panicked"))??;
        total.wakes += s.wakes;
        total.checkin_us.extend(s.checkin_us);
        total.request_us.extend(s.request_us);
        total.retransmissions += s.retransmissions;
        total.gave_up += s.gave_up;
        total.chunk_bytes += s.chunk_bytes;
        total.refused_answers += s.refused_answers;
    }
    total.checkin_us.sort_unstable();
    total.request_us.sort_unstable();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_and_depends_on_the_seed() {
        let a = shuffled(1000, 1);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(a, shuffled(1000, 2));
        assert_eq!(a, shuffled(1000, 1));
    }

    #[test]
    fn root_keys_differ_per_device_and_seed() {
        assert_ne!(root_key(1, 1), root_key(1, 2));
        assert_ne!(root_key(1, 1), root_key(2, 1));
        assert_eq!(root_key(7, 3), root_key(7, 3));
    }

    #[test]
    fn quantiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(RunStats::quantile_ms(&v, 0.5), 51.0);
        assert_eq!(RunStats::quantile_ms(&v, 0.99), 100.0);
        assert_eq!(RunStats::quantile_ms(&[], 0.99), 0.0);
    }
}
