//! Rate limits: what one sender, one device, and everyone together may make the server do.
//!
//! Three checks, each placed before the work it protects and each refusal counted
//! ([`Dropped::Limited`](crate::server::Dropped::Limited)):
//!
//! 1. **In flight** (global): at most [`Limits::max_in_flight`] frames are being handled at
//!    once, across both transports. The UDP transport takes a permit before it copies the
//!    datagram or spawns its task; a datagram that finds none is dropped (the device
//!    retransmits). This bounds the server's memory and the store's queue under any flood.
//! 2. **Per source** ([`Limits::source`]): a token bucket per UDP source address (IP *and*
//!    port) or TCP connection, charged for every frame **before** anything else is done with it
//!    (no key lookup, no HMAC, no store read). It bounds what one flow can cost even when its
//!    frames are garbage or name devices that do not exist (an unknown id costs a store read).
//!    Keyed by IP and port, not by IP alone, because cellular devices reach us through
//!    carrier-grade NAT: thousands of devices share one public IP, each with its own port.
//!    A spoofer who varies the source port gets a fresh bucket each time; what bounds him is
//!    the global in-flight cap and the per-device bucket below.
//! 3. **Per device** ([`Limits::device`]): a token bucket per device id, charged only once the
//!    frame **authenticated** (HMAC under the device's key) and before its replay record is
//!    read. Someone who knows only a device's id cannot spend its allowance: his frames fail
//!    the tag and never reach this bucket (the per-source bucket pays for them). Only an
//!    authentic frame spends it: the device's own, or a copy of one captured on the path; but
//!    whoever sees the device's frames can also drop them, so the copy gives him nothing new.
//!
//! Buckets are refilled from the clock the caller passes (the server's injected clock, Unix
//! ms), so tests decide every refill; a clock that goes backwards refills nothing.
//! Memory: one small entry per tracked key; past [`Limits::max_tracked`] keys, entries whose
//! bucket is full again (idle long enough to have refilled) are swept; if the table is still
//! full, a new key is not tracked (its frame is let through to the other checks).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cloud_proto::DeviceId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A sustained rate and the burst above it that a token bucket allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second (sustained frames per second). 0: no refill (only the burst,
    /// ever; for tests).
    pub per_s: u32,
    /// Bucket size: frames allowed back to back after a quiet spell. At least 1.
    pub burst: u32,
}

/// Which limit refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limited {
    /// Too many frames in flight on the whole server.
    InFlight,
    /// The source address (UDP) or connection (TCP) is over its rate.
    Source,
    /// The (authenticated) device is over its rate.
    Device,
}

impl fmt::Display for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InFlight => "too many frames in flight",
            Self::Source => "source over its rate limit",
            Self::Device => "device over its rate limit",
        })
    }
}

/// Rate-limit settings (part of [`ServerConfig`](crate::server::ServerConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per authenticated device; `None`: unlimited.
    pub device: Option<Rate>,
    /// Per UDP source address or TCP connection, before authentication; `None`: unlimited.
    pub source: Option<Rate>,
    /// Frames handled at once on the whole server (at least 1).
    pub max_in_flight: usize,
    /// Keys tracked per table (devices, sources) before idle entries are swept.
    pub max_tracked: usize,
}

impl Limits {
    /// No rate limit (the in-flight cap stays at its default): for benchmarks of the frame path.
    pub const UNLIMITED: Self = Self {
        device: None,
        source: None,
        ..Self::DEFAULT
    };

    /// The defaults, chosen so that a device following cloud-proto never meets them:
    ///
    /// * **device: 10 frames/s, burst 100.** A wake is a check-in, a decision, chunk requests,
    ///   a status and a goodbye, each sent once and retransmitted at most 3 times (2, 4, 8 s
    ///   backoff). The busiest honest device is one downloading: one chunk request per round
    ///   trip, each up to 64 chunks of 1 KiB; 10 requests/s is 640 KiB/s, five times an LTE-M
    ///   link's peak (1 Mbit/s) and far above NB-IoT, so the link limits it long before this.
    /// * **source: 20 frames/s, burst 200**: above one device's allowance, so a device alone
    ///   behind an address meets its own limit first, while an unauthenticated flood from one
    ///   address costs at most 20 key lookups and HMACs a second after its burst.
    /// * **in flight: 4096** frames, the UDP transport's earlier fixed bound.
    /// * **tracked: 1,000,000** keys per table (tens of MB at most).
    pub const DEFAULT: Self = Self {
        device: Some(Rate {
            per_s: 10,
            burst: 100,
        }),
        source: Some(Rate {
            per_s: 20,
            burst: 200,
        }),
        max_in_flight: 4096,
        max_tracked: 1_000_000,
    };
}

impl Default for Limits {
    /// [`Limits::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One token bucket, in thousandths of a token so that slow rates refill smoothly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    milli: u64,
    at_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(rate: Rate, now_ms: u64) -> Self {
        Self {
            milli: Self::cap(rate),
            at_ms: now_ms,
        }
    }

    fn cap(rate: Rate) -> u64 {
        u64::from(rate.burst.max(1)) * 1000
    }

    fn refill(&mut self, rate: Rate, now_ms: u64) {
        // A clock that went backwards refills nothing (and does not move `at_ms` back).
        let dt = now_ms.saturating_sub(self.at_ms);
        self.milli = self
            .milli
            .saturating_add(dt.saturating_mul(u64::from(rate.per_s)))
            .min(Self::cap(rate));
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Takes one token at `now_ms` if there is one; returns whether it did.
    pub fn try_take(&mut self, rate: Rate, now_ms: u64) -> bool {
        self.refill(rate, now_ms);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now_ms` (forgetting it changes nothing).
    pub fn is_full(&self, rate: Rate, now_ms: u64) -> bool {
        let mut b = *self;
        b.refill(rate, now_ms);
        b.milli >= Self::cap(rate)
    }
}

/// Buckets by key, bounded in number.
struct Table<K> {
    buckets: HashMap<K, TokenBucket>,
    last_sweep_ms: Option<u64>,
}

impl<K: Eq + Hash + Copy> Table<K> {
    fn new() -> Self {
        Self {
            buckets: HashMap::new(),
            last_sweep_ms: None,
        }
    }

    /// Cost: O(1), plus an O(tracked) sweep at most once a second when the table is full.
    fn try_take(&mut self, key: K, rate: Rate, now_ms: u64, max: usize) -> bool {
        if let Some(b) = self.buckets.get_mut(&key) {
            return b.try_take(rate, now_ms);
        }
        if self.buckets.len() >= max {
            let due = self
                .last_sweep_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= 1000);
            if due {
                self.buckets.retain(|_, b| !b.is_full(rate, now_ms));
                self.last_sweep_ms = Some(now_ms);
            }
            if self.buckets.len() >= max {
                // Not tracked: the in-flight cap still bounds it.
                return true;
            }
        }
        let mut b = TokenBucket::full(rate, now_ms);
        let ok = b.try_take(rate, now_ms);
        self.buckets.insert(key, b);
        ok
    }
}

/// The server's limiter: the tables and the in-flight semaphore. Shared by both transports
/// through the [`Server`](crate::server::Server).
pub struct Limiter {
    limits: Limits,
    devices: Mutex<Table<DeviceId>>,
    sources: Mutex<Table<SocketAddr>>,
    in_flight: Arc<Semaphore>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Holds one in-flight slot until dropped.
#[derive(Debug)]
pub struct InFlight(#[allow(dead_code)] OwnedSemaphorePermit);

impl Limiter {
    /// A limiter with every bucket full.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            devices: Mutex::new(Table::new()),
            sources: Mutex::new(Table::new()),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
        }
    }

    /// Its settings.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes an in-flight slot, held until the returned guard drops. Errors:
    /// [`Limited::InFlight`] when all [`Limits::max_in_flight`] are taken.
    pub fn try_begin(&self) -> Result<InFlight, Limited> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map(InFlight)
            .map_err(|_| Limited::InFlight)
    }

    /// Charges one frame from `source` at `now_ms`. Errors: [`Limited::Source`].
    /// Cost: a hash-map lookup under a lock (see the module docs for the sweep).
    pub fn check_source(&self, source: SocketAddr, now_ms: u64) -> Result<(), Limited> {
        let Some(rate) = self.limits.source else {
            return Ok(());
        };
        let mut t = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if t.try_take(source, rate, now_ms, self.limits.max_tracked) {
            Ok(())
        } else {
            Err(Limited::Source)
        }
    }

    /// Charges one authenticated frame of `device` at `now_ms`. Errors: [`Limited::Device`].
    /// Cost: as [`check_source`](Self::check_source).
    pub fn check_device(&self, device: DeviceId, now_ms: u64) -> Result<(), Limited> {
        let Some(rate) = self.limits.device else {
            return Ok(());
        };
        let mut t = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if t.try_take(device, rate, now_ms, self.limits.max_tracked) {
            Ok(())
        } else {
            Err(Limited::Device)
        }
    }
}

/// The `ota-cloud serve` flags that set [`Limits`] (flattened into the command line).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LimitArgs {
    /// Frames per second one authenticated device may send, sustained.
    #[arg(long, default_value_t = 10)]
    pub device_rate: u32,
    /// Frames one device may send back to back after a quiet spell.
    #[arg(long, default_value_t = 100)]
    pub device_burst: u32,
    /// Frames per second one UDP source address (IP and port) or TCP connection may send,
    /// sustained, counted before authentication.
    #[arg(long, default_value_t = 20)]
    pub source_rate: u32,
    /// Frames one source may send back to back after a quiet spell.
    #[arg(long, default_value_t = 200)]
    pub source_burst: u32,
    /// Frames handled at once on the whole server; more are dropped (devices retransmit).
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// No per-device or per-source limit (the in-flight cap stays): for benchmarks only.
    #[arg(long)]
    pub no_rate_limits: bool,
}

impl LimitArgs {
    /// The [`Limits`] these flags ask for.
    pub fn limits(&self) -> Limits {
        let rate = |per_s, burst| (!self.no_rate_limits).then_some(Rate { per_s, burst });
        Limits {
            device: rate(self.device_rate, self.device_burst),
            source: rate(self.source_rate, self.source_burst),
            max_in_flight: self.max_in_flight.max(1),
            ..Limits::DEFAULT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate {
        per_s: 10,
        burst: 3,
    };

    #[test]
    fn bucket_allows_its_burst_then_its_rate() {
        let mut b = TokenBucket::full(R, 1000);
        assert!((0..3).all(|_| b.try_take(R, 1000)));
        assert!(!b.try_take(R, 1000));
        // 10/s: one token per 100 ms, none before.
        assert!(!b.try_take(R, 1099));
        assert!(b.try_take(R, 1100));
        assert!(!b.try_take(R, 1100));
        // A long quiet spell refills up to the burst, not beyond.
        let got = (0..10).filter(|_| b.try_take(R, 60_000)).count();
        assert_eq!(got, 3);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let mut b = TokenBucket::full(R, 5000);
        assert!((0..3).all(|_| b.try_take(R, 5000)));
        assert!(!b.try_take(R, 1000));
        // Time lost going back is not credited when the clock comes forward again.
        assert!(!b.try_take(R, 5099));
        assert!(b.try_take(R, 5100));
    }

    #[test]
    fn zero_rate_is_burst_only_and_zero_burst_is_one() {
        let r = Rate { per_s: 0, burst: 0 };
        let mut b = TokenBucket::full(r, 0);
        assert!(b.try_take(r, 0));
        assert!(!b.try_take(r, u64::MAX));
    }

    #[test]
    fn devices_and_sources_have_their_own_buckets() {
        let l = Limiter::new(Limits {
            device: Some(R),
            source: Some(Rate { per_s: 0, burst: 2 }),
            ..Limits::DEFAULT
        });
        let a: SocketAddr = ([192, 0, 2, 1], 1000).into();
        let b: SocketAddr = ([192, 0, 2, 1], 1001).into();
        assert_eq!(l.check_source(a, 0), Ok(()));
        assert_eq!(l.check_source(a, 0), Ok(()));
        assert_eq!(l.check_source(a, 0), Err(Limited::Source));
        // Same IP, another port: another device behind the same NAT.
        assert_eq!(l.check_source(b, 0), Ok(()));
        for _ in 0..3 {
            assert_eq!(l.check_device(DeviceId(1), 0), Ok(()));
        }
        assert_eq!(l.check_device(DeviceId(1), 0), Err(Limited::Device));
        assert_eq!(l.check_device(DeviceId(2), 0), Ok(()));
        assert_eq!(l.check_device(DeviceId(1), 100), Ok(()));
    }

    #[test]
    fn unlimited_never_refuses() {
        let l = Limiter::new(Limits::UNLIMITED);
        let a: SocketAddr = ([192, 0, 2, 1], 1000).into();
        for _ in 0..10_000 {
            assert_eq!(l.check_source(a, 0), Ok(()));
            assert_eq!(l.check_device(DeviceId(1), 0), Ok(()));
        }
    }

    #[test]
    fn flag_defaults_are_the_documented_defaults() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            l: LimitArgs,
        }
        assert_eq!(Cli::parse_from(["x"]).l.limits(), Limits::DEFAULT);
        let off = Cli::parse_from(["x", "--no-rate-limits"]).l.limits();
        assert_eq!(off, Limits::UNLIMITED);
    }

    #[test]
    fn in_flight_is_capped_and_released() {
        let l = Limiter::new(Limits {
            max_in_flight: 2,
            ..Limits::DEFAULT
        });
        let g1 = l.try_begin().unwrap();
        let _g2 = l.try_begin().unwrap();
        assert_eq!(l.try_begin().err(), Some(Limited::InFlight));
        drop(g1);
        assert!(l.try_begin().is_ok());
    }

    #[test]
    fn full_table_sweeps_idle_keys_and_never_grows_past_its_bound() {
        let l = Limiter::new(Limits {
            device: Some(R),
            max_tracked: 4,
            ..Limits::DEFAULT
        });
        for d in 0..4 {
            assert_eq!(l.check_device(DeviceId(d), 0), Ok(()));
        }
        // Full, nobody idle long enough: a new key is let through untracked.
        assert_eq!(l.check_device(DeviceId(9), 0), Ok(()));
        assert_eq!(l.devices.lock().unwrap().buckets.len(), 4);
        // Device 0 keeps sending; the others go quiet and refill: swept.
        for _ in 0..2 {
            assert_eq!(l.check_device(DeviceId(0), 0), Ok(()));
        }
        assert_eq!(l.check_device(DeviceId(9), 2000), Ok(()));
        let t = l.devices.lock().unwrap();
        assert!(t.buckets.len() <= 4);
        assert!(t.buckets.contains_key(&DeviceId(9)));
        // Device 0 refilled as well by t=2000 (3 tokens in 300 ms), so it was swept too.
        assert!(!t.buckets.contains_key(&DeviceId(1)));
    }
}
