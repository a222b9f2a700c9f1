//! The cellular link between the virtual modem and the server: a loopback UDP relay that
//! drops datagrams at a seeded rate and charges their air time to the virtual clock.
//!
//! The SARA emulator's UDP sockets are real `std::net::UdpSocket`s on 127.0.0.1
//! (`modem-ublox-emu` `src/socket.rs`); it offers no shaping hook (its `Timing` has only
//! per-command latencies, `socket_write` among them). So the shaper sits **between** them:
//! the device sends to [`LinkShaper::addr`] instead of the server's address; the relay
//! forwards each datagram from its own socket per device source address, and sends the
//! server's answers back to that source. Per datagram, in each direction:
//!
//! * a loss decision from a SplitMix64 stream seeded by `seed` (one stream per direction, so
//!   the uplink's decisions do not depend on how the downlink interleaves);
//! * air time `bytes × 1 s / rate` charged to the device's clock
//!   ([`ActiveClock`]) when the datagram is on the
//!   air: every uplink datagram (the device transmitted it even if the network loses it) and
//!   every downlink datagram delivered;
//! * byte counters: uplink bytes transmitted, downlink bytes delivered, and what was lost.
//!
//! Payload bytes only: add [`IPV4_UDP_OVERHEAD`] per datagram for what an operator bills.

use core::time::Duration;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::clock::ActiveClock;

/// IPv4 (20) + UDP (8) header bytes per datagram, for billed-byte estimates.
pub const IPV4_UDP_OVERHEAD: u64 = 28;

/// SplitMix64 (Steele, Lea, Flood 2014; the generator `java.util.SplittableRandom` uses):
/// tiny, seedable with any `u64`, good enough for loss decisions and garbage fill.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` (53 bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the link behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Bytes per second each way; `None`: no air time charged.
    pub rate_bytes_per_s: Option<u64>,
    /// Probability in `0..=1` that a datagram is lost, each direction independently.
    pub loss: f64,
    /// Seed of the loss decisions.
    pub seed: u64,
}

impl LinkConfig {
    /// Air time of `bytes` at this rate (µs rounded up).
    pub fn air_time(&self, bytes: usize) -> Duration {
        match self.rate_bytes_per_s {
            Some(r) if r > 0 => Duration::from_micros((bytes as u64 * 1_000_000).div_ceil(r)),
            _ => Duration::ZERO,
        }
    }
}

/// Counters of a [`LinkShaper`] (payload bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Datagrams the devices transmitted.
    pub up_datagrams: u64,
    /// Their bytes.
    pub up_bytes: u64,
    /// Of those, datagrams the network lost.
    pub up_lost: u64,
    /// Datagrams the server sent.
    pub down_datagrams: u64,
    /// Bytes delivered to the devices.
    pub down_bytes: u64,
    /// Server datagrams the network lost.
    pub down_lost: u64,
    /// Delivered server datagrams that were cloud-proto chunk frames (first byte
    /// `KIND_CHUNK`: manifest or image chunks).
    pub down_chunks: u64,
    /// Air time charged to the clock.
    pub air_time: Duration,
}

impl LinkStats {
    /// Payload bytes on the air both ways.
    pub fn total_bytes(&self) -> u64 {
        self.up_bytes + self.down_bytes
    }

    /// Bytes an operator would bill: payload plus [`IPV4_UDP_OVERHEAD`] per datagram on the
    /// air (every uplink datagram, every delivered downlink one).
    pub fn billed_bytes(&self) -> u64 {
        let dgrams = self.up_datagrams + self.down_datagrams - self.down_lost;
        self.total_bytes() + dgrams * IPV4_UDP_OVERHEAD
    }

    /// What happened between `earlier` and `self` (for per-phase accounting).
    pub fn since(&self, earlier: &LinkStats) -> LinkStats {
        LinkStats {
            up_datagrams: self.up_datagrams - earlier.up_datagrams,
            up_bytes: self.up_bytes - earlier.up_bytes,
            up_lost: self.up_lost - earlier.up_lost,
            down_datagrams: self.down_datagrams - earlier.down_datagrams,
            down_bytes: self.down_bytes - earlier.down_bytes,
            down_lost: self.down_lost - earlier.down_lost,
            down_chunks: self.down_chunks - earlier.down_chunks,
            air_time: self.air_time.saturating_sub(earlier.air_time),
        }
    }
}

struct Shared {
    config: LinkConfig,
    clock: Option<ActiveClock>,
    up_rng: SplitMix64,
    down_rng: SplitMix64,
    stats: LinkStats,
}

impl Shared {
    /// Counts an uplink datagram; `true` if it is delivered.
    fn uplink(&mut self, len: usize) -> bool {
        self.stats.up_datagrams += 1;
        self.stats.up_bytes += len as u64;
        self.charge(len);
        let lost = self.up_rng.next_f64() < self.config.loss;
        self.stats.up_lost += u64::from(lost);
        !lost
    }

    /// Counts a downlink datagram; `true` if it is delivered.
    fn downlink(&mut self, len: usize, chunk: bool) -> bool {
        self.stats.down_datagrams += 1;
        let lost = self.down_rng.next_f64() < self.config.loss;
        if lost {
            self.stats.down_lost += 1;
        } else {
            self.stats.down_bytes += len as u64;
            self.stats.down_chunks += u64::from(chunk);
            self.charge(len);
        }
        !lost
    }

    fn charge(&mut self, len: usize) {
        let d = self.config.air_time(len);
        self.stats.air_time += d;
        if let (Some(c), false) = (&self.clock, d.is_zero()) {
            c.get().advance(d);
        }
    }
}

/// The relay (see the [module docs](self)). Runs on its own thread until dropped.
pub struct LinkShaper {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for LinkShaper {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkShaper")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Real-time poll period of the relay thread when nothing moved.
const IDLE: Duration = Duration::from_micros(200);

impl LinkShaper {
    /// Starts a relay on 127.0.0.1 (an ephemeral port) to `server`, charging air time to
    /// the clock `clock` points at when the datagram passes (the running device's; none:
    /// count only).
    ///
    /// # Errors
    /// Binding the loopback socket.
    pub fn start(
        server: SocketAddr,
        config: LinkConfig,
        clock: Option<ActiveClock>,
    ) -> io::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        front.set_nonblocking(true)?;
        let addr = front.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            config,
            clock,
            up_rng: SplitMix64::new(config.seed ^ 0x5550_4C49_4E4B),
            down_rng: SplitMix64::new(config.seed ^ 0x444F_574E_4C4B),
            stats: LinkStats::default(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("link-shaper".into())
                .spawn(move || relay(front, server, &shared, &stop))?
        };
        Ok(Self {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the device sends (in place of the server's address).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats
    }
}

impl Drop for LinkShaper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(front: UdpSocket, server: SocketAddr, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let mut backs: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
    while !stop.load(Ordering::SeqCst) {
        let mut moved = false;
        // Device → server.
        while let Ok((n, from)) = front.recv_from(&mut buf) {
            moved = true;
            if !lock().uplink(n) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = backs.entry(from) {
                let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
                    continue;
                };
                if s.set_nonblocking(true).is_err() || s.connect(server).is_err() {
                    continue;
                }
                e.insert(s);
            }
            if let Some(s) = backs.get(&from) {
                let _ = s.send(&buf[..n]);
            }
        }
        // Server → device.
        for (device, s) in &backs {
            while let Ok(n) = s.recv(&mut buf) {
                moved = true;
                let chunk = buf.first() == Some(&cloud_proto::KIND_CHUNK);
                if lock().downlink(n, chunk) {
                    let _ = front.send_to(&buf[..n], device);
                }
            }
        }
        if !moved {
            std::thread::sleep(IDLE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    /// An echo server that answers each datagram with `reply_len` bytes.
    fn echo(reply_len: usize) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&vec![0xEE; reply_len][..], from);
            }
        });
        addr
    }

    #[test]
    fn splitmix_is_seeded_and_uniformish() {
        let mut a = SplitMix64::new(1);
        let mut b = SplitMix64::new(1);
        assert_eq!(a.next_u64(), b.next_u64());
        let below = (0..10_000).filter(|_| a.next_f64() < 0.25).count();
        assert!((2_300..2_700).contains(&below), "{below}");
    }

    #[test]
    fn lossless_link_relays_both_ways_counts_bytes_and_charges_air_time() {
        let clock = SimClock::standalone();
        let cfg = LinkConfig {
            rate_bytes_per_s: Some(10_000),
            loss: 0.0,
            seed: 1,
        };
        let link = LinkShaper::start(echo(300), cfg, Some(ActiveClock::new(&clock))).unwrap();
        let dev = UdpSocket::bind("127.0.0.1:0").unwrap();
        dev.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            dev.send_to(&[1u8; 100], link.addr()).unwrap();
            let (n, from) = dev.recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (300, link.addr()));
        }
        let s = link.stats();
        assert_eq!((s.up_datagrams, s.up_bytes, s.up_lost), (3, 300, 0));
        assert_eq!((s.down_datagrams, s.down_bytes, s.down_lost), (3, 900, 0));
        assert_eq!(s.billed_bytes(), 1200 + 6 * IPV4_UDP_OVERHEAD);
        // 1200 bytes at 10 kB/s: 120 ms of virtual time, nothing else advanced the clock.
        assert_eq!(s.air_time, Duration::from_millis(120));
        assert_eq!(clock.now(), Duration::from_millis(120));
    }

    #[test]
    fn loss_follows_the_seeded_stream() {
        let cfg = LinkConfig {
            rate_bytes_per_s: None,
            loss: 0.3,
            seed: 42,
        };
        let link = LinkShaper::start(echo(10), cfg, None).unwrap();
        let dev = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            dev.send_to(&[0u8; 20], link.addr()).unwrap();
        }
        // Wait (bounded) until the relay has seen all 200; never a timing assertion.
        for _ in 0..10_000 {
            if link.stats().up_datagrams == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = link.stats();
        assert_eq!(s.up_datagrams, 200);
        // Exactly the decisions the seeded stream makes.
        let mut rng = SplitMix64::new(42 ^ 0x5550_4C49_4E4B);
        let expected = (0..200).filter(|_| rng.next_f64() < 0.3).count() as u64;
        assert_eq!(s.up_lost, expected);
        assert!((40..80).contains(&expected), "{expected}");
        assert_eq!(s.up_bytes, 4000);
    }
}
