//! Structured logs (`tracing`): the subscriber the binary installs ([`init`]), and the rate
//! limit on refused-frame logs ([`RejectLimiter`], [`DropLog`]): a device (or address) whose
//! frames keep being refused is logged once per interval, with the count of the refusals not
//! logged since, so a flood of bad frames never becomes a flood of log lines.
//!
//! Events (all with structured fields; none carries key material):
//!
//! | level | message | fields |
//! |---|---|---|
//! | `info` | `listening` | `udp`, `tcp`, `admin`, `store` |
//! | `warn` | `frame refused` | `device` or `source`, `reason`, `error`, `suppressed` |
//! | `error` | `frame failed` | `device`, `reason` (`conflict`, `internal`), `error`, `suppressed` |
//! | `error` / `warn` | `admin request failed` | `status`, `error` (5xx at `error`) |
//! | `warn` | `console login refused` | `suppressed` (wrong tokens not logged since the last line; one line per [`DROP_LOG_INTERVAL_MS`]) |

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use cloud_proto::{peek_up, AdmitError, DeviceId};

use crate::limit::Limited;
use crate::server::Dropped;

/// Installs the global subscriber: human-readable lines on stderr, filtered by `RUST_LOG`
/// (`tracing-subscriber`'s `EnvFilter` syntax: `warn`, `ota_cloud=debug,info`, …), `info` when
/// it is unset or does not parse. A second call does nothing (the first subscriber stays).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The label of a drop's reason, as `/metrics` (`reason=`) and the logs name it.
pub fn reason(d: &Dropped) -> &'static str {
    match d {
        Dropped::Frame(_) => "frame",
        Dropped::UnknownDevice(_) => "unknown_device",
        Dropped::Refused(AdmitError::Replayed { .. }) => "replayed",
        Dropped::Refused(AdmitError::CounterReused { .. }) => "counter_reused",
        Dropped::Refused(AdmitError::OtherSource { .. }) => "other_source",
        Dropped::Refused(AdmitError::RetransmissionRefused { .. }) => "retransmission_refused",
        Dropped::Refused(_) => "counter_exhausted",
        Dropped::Conflict => "conflict",
        Dropped::Limited(Limited::InFlight) => "limited_in_flight",
        Dropped::Limited(Limited::Source) => "limited_source",
        Dropped::Limited(Limited::Device) => "limited_device",
        _ => "internal",
    }
}

/// Whose refusals are limited together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKey {
    /// The device id the frame names (authentic or not).
    Device(DeviceId),
    /// The sender's address, for a frame too broken to name a device.
    Source(IpAddr),
    /// The server's own failures (store errors, conflicts), whoever sent the frame: a store
    /// that is down is logged once per interval, not once per device.
    Server,
    /// Every key that found the table full (see [`RejectLimiter::new`]).
    Overflow,
    /// Refused console logins, whoever sent them (the admin service does not see the peer's
    /// address behind a proxy): one line per interval for all of them.
    ConsoleLogin,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Log it, saying that `suppressed` refusals of the same key were not logged since the
    /// last line.
    Log {
        /// Refusals not logged since the key's last line.
        suppressed: u64,
    },
    /// Count it silently: the key was logged less than an interval ago.
    Suppress,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    logged_ms: u64,
    suppressed: u64,
}

/// Once-per-interval limiting of log lines per [`LogKey`], over a caller-supplied clock (every
/// `now_ms` is an argument), with a bounded table.
#[derive(Debug)]
pub struct RejectLimiter {
    interval_ms: u64,
    max_keys: usize,
    keys: HashMap<LogKey, Window>,
}

impl RejectLimiter {
    /// A limiter that logs each key at most once per `interval_ms` and tracks at most
    /// `max_keys` keys: when the table is full, keys whose interval has passed are forgotten
    /// (with any count they had suppressed: those were counted by `/metrics` anyway), and if
    /// it is still full a new key shares [`LogKey::Overflow`]'s line.
    pub fn new(interval_ms: u64, max_keys: usize) -> Self {
        Self {
            interval_ms,
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
        }
    }

    /// Records one refusal of `key` at `now_ms`. The first refusal of a key is logged; the
    /// next ones within `interval_ms` of that line are suppressed and counted; the first one
    /// an interval or more after it is logged with that count. A clock that goes backwards
    /// suppresses until it is past the last line again. Cost: one hash lookup; when the table
    /// is full, O(keys) to forget the expired ones.
    pub fn check(&mut self, key: LogKey, now_ms: u64) -> Verdict {
        let key = if self.keys.contains_key(&key) || self.keys.len() < self.max_keys {
            key
        } else {
            let interval = self.interval_ms;
            self.keys
                .retain(|_, w| now_ms.saturating_sub(w.logged_ms) < interval);
            if self.keys.len() < self.max_keys {
                key
            } else {
                LogKey::Overflow
            }
        };
        match self.keys.get_mut(&key) {
            Some(w)
                if now_ms
                    .checked_sub(w.logged_ms)
                    .is_some_and(|d| d >= self.interval_ms) =>
            {
                let suppressed = w.suppressed;
                *w = Window {
                    logged_ms: now_ms,
                    suppressed: 0,
                };
                Verdict::Log { suppressed }
            }
            Some(w) => {
                w.suppressed += 1;
                Verdict::Suppress
            }
            None => {
                // `Overflow` may be the one key beyond `max_keys`: the table holds at most
                // `max_keys + 1`.
                self.keys.insert(
                    key,
                    Window {
                        logged_ms: now_ms,
                        suppressed: 0,
                    },
                );
                Verdict::Log { suppressed: 0 }
            }
        }
    }
}

/// The server's log of dropped frames: each drop goes through a [`RejectLimiter`], and the
/// ones it lets through are logged (`warn` for refusals of the device's frames, `error` for
/// the server's own failures).
#[derive(Debug)]
pub struct DropLog {
    limiter: Mutex<RejectLimiter>,
}

/// Default interval between two lines about one key: 60 s.
pub const DROP_LOG_INTERVAL_MS: u64 = 60_000;
/// Default number of keys tracked.
pub const DROP_LOG_KEYS: usize = 10_000;

impl Default for DropLog {
    /// One line per key per [`DROP_LOG_INTERVAL_MS`], [`DROP_LOG_KEYS`] keys.
    fn default() -> Self {
        Self::new(RejectLimiter::new(DROP_LOG_INTERVAL_MS, DROP_LOG_KEYS))
    }
}

impl DropLog {
    /// A log over `limiter`.
    pub fn new(limiter: RejectLimiter) -> Self {
        Self {
            limiter: Mutex::new(limiter),
        }
    }

    /// The verdict for `drop` of `frame` from `source` at `now_ms`, logged when it is
    /// [`Verdict::Log`]. The frame's device id is read from its header (unauthenticated: a
    /// forged id shares the limit of the device it names). Cost: a header parse, one
    /// [`RejectLimiter::check`] under a mutex.
    pub fn dropped(
        &self,
        drop: &Dropped,
        frame: &[u8],
        source: SocketAddr,
        now_ms: u64,
    ) -> Verdict {
        let device = peek_up(frame).ok().map(|(d, _)| d);
        let server_side = matches!(
            drop,
            Dropped::Store(_) | Dropped::Release(_) | Dropped::Internal(_) | Dropped::Conflict
        );
        let key = match (server_side, device) {
            (true, _) => LogKey::Server,
            (false, Some(d)) => LogKey::Device(d),
            (false, None) => LogKey::Source(source.ip()),
        };
        let verdict = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(key, now_ms);
        if let Verdict::Log { suppressed } = verdict {
            let device = device.map(|d| d.0);
            let reason = reason(drop);
            if server_side {
                tracing::error!(device, reason, error = %drop, suppressed, "frame failed");
            } else {
                tracing::warn!(device, source = %source.ip(), reason, error = %drop, suppressed, "frame refused");
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: LogKey = LogKey::Device(DeviceId(1));
    const D2: LogKey = LogKey::Device(DeviceId(2));

    #[test]
    fn once_per_interval_with_the_suppressed_count() {
        let mut l = RejectLimiter::new(60_000, 100);
        assert_eq!(l.check(D1, 1_000), Verdict::Log { suppressed: 0 });
        for t in 1_001..1_101 {
            assert_eq!(l.check(D1, t), Verdict::Suppress);
        }
        // Another device is not held back by the first.
        assert_eq!(l.check(D2, 1_050), Verdict::Log { suppressed: 0 });
        assert_eq!(l.check(D1, 60_999), Verdict::Suppress);
        assert_eq!(l.check(D1, 61_000), Verdict::Log { suppressed: 101 });
        assert_eq!(l.check(D1, 61_001), Verdict::Suppress);
        // Quiet for a long time: the next refusal is logged at once, nothing suppressed
        // but the one above.
        assert_eq!(l.check(D1, 500_000), Verdict::Log { suppressed: 1 });
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let mut l = RejectLimiter::new(1_000, 4);
        let mut logged = 0;
        for id in 0..1_000u32 {
            if let Verdict::Log { .. } = l.check(LogKey::Device(DeviceId(id)), 10) {
                logged += 1;
            }
        }
        // Four keys, then one overflow line for the other 996 ids.
        assert_eq!(logged, 5);
        assert!(l.keys.len() <= 5);
        // An interval later the expired keys make room for new ones.
        assert_eq!(
            l.check(LogKey::Device(DeviceId(5_000)), 1_010),
            Verdict::Log { suppressed: 0 }
        );
        assert!(l.keys.contains_key(&LogKey::Device(DeviceId(5_000))));
    }

    #[test]
    fn a_clock_going_backwards_suppresses() {
        let mut l = RejectLimiter::new(100, 10);
        assert_eq!(l.check(D1, 1_000), Verdict::Log { suppressed: 0 });
        assert_eq!(l.check(D1, 10), Verdict::Suppress);
        assert_eq!(l.check(D1, 1_100), Verdict::Log { suppressed: 1 });
    }
}
