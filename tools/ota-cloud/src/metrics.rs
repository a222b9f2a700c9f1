//! What the server counts for `/metrics`, and its Prometheus text exposition (format 0.0.4).
//!
//! Everything is a relaxed atomic bumped on the frame path ([`FrameMetrics`]), in the SQLite
//! writer (commit batch sizes, [`Histogram`]) or read from the server's drop counters; the
//! exposition is written by hand ([`render`]): a handful of families, no registry crate.
//!
//! | family | type | labels | what |
//! |---|---|---|---|
//! | `ota_cloud_checkins_total` | counter | | new check-ins committed |
//! | `ota_cloud_frames_total` | counter | `kind`, `admission` | frames answered (after the commit) |
//! | `ota_cloud_frames_dropped_total` | counter | `reason` | frames refused or failed, no answer |
//! | `ota_cloud_chunks_served_total` | counter | | chunk frames sent |
//! | `ota_cloud_chunk_bytes_served_total` | counter | | manifest and image bytes inside them |
//! | `ota_cloud_answer_bytes_total` | counter | | every answer frame's bytes |
//! | `ota_cloud_frame_handling_seconds` | histogram | | frame in → answer ready (commit included) |
//! | `ota_cloud_store_commit_batch_size` | histogram | | transactions per SQLite commit |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloud_proto::{Request, Up};

use crate::server::DropCounts;

/// A histogram over `u64` observations with fixed upper bounds, lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, then `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram whose buckets end at `bounds` (ascending), plus `+Inf`.
    pub fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one observation `v`. Cost: O(buckets) compares, two atomic adds.
    pub fn observe(&self, v: u64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// The counts so far (each bucket read on its own: a snapshot taken while observations
    /// land may be off by those few).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A [`Histogram`]'s counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the finite buckets.
    pub bounds: &'static [u64],
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    pub counts: Vec<u64>,
    /// Sum of every observation.
    pub sum: u64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Bounds of the commit batch histogram: transactions per commit.
pub(crate) const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Bounds of the handling latency histogram, in microseconds (exported in seconds).
const LATENCY_BOUNDS_US: &[u64] = &[
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// What kind of frame an answer went to (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `CheckIn`.
    CheckIn,
    /// `ChunkRequest`.
    ChunkRequest,
    /// `UpdateDecision`.
    UpdateDecision,
    /// `UpdateStatus`.
    UpdateStatus,
    /// `Goodbye`.
    Goodbye,
    /// Answered with a `Nack` by `admit` (not decodable, or not acceptable).
    Nacked,
}

impl FrameKind {
    const ALL: [Self; 6] = [
        Self::CheckIn,
        Self::ChunkRequest,
        Self::UpdateDecision,
        Self::UpdateStatus,
        Self::Goodbye,
        Self::Nacked,
    ];

    /// The kind of an admitted request.
    pub fn of(msg: &Up<'_>) -> Self {
        match msg {
            Up::CheckIn(_) => Self::CheckIn,
            Up::ChunkRequest(_) => Self::ChunkRequest,
            Up::UpdateDecision(_) => Self::UpdateDecision,
            Up::UpdateStatus(_) => Self::UpdateStatus,
            Up::Goodbye(_) => Self::Goodbye,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::CheckIn => "checkin",
            Self::ChunkRequest => "chunk_request",
            Self::UpdateDecision => "update_decision",
            Self::UpdateStatus => "update_status",
            Self::Goodbye => "goodbye",
            Self::Nacked => "nacked",
        }
    }
}

/// One answered frame, as the frame path reports it to [`FrameMetrics::answered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// What it was.
    pub kind: FrameKind,
    /// A retransmission answered again (its effects were applied the first time).
    pub retransmission: bool,
    /// Chunk frames in the answer and the object bytes they carry (0 unless chunks).
    pub chunks: u64,
    /// See `chunks`.
    pub chunk_bytes: u64,
}

impl Answered {
    /// An answer to `req` (chunks are noted by [`note_chunks`](Self::note_chunks)).
    pub fn message(req: &Request<'_>, retransmission: bool) -> Self {
        Self {
            kind: FrameKind::of(&req.msg),
            retransmission,
            chunks: 0,
            chunk_bytes: 0,
        }
    }

    /// A `Nack` from `admit`.
    pub fn nacked() -> Self {
        Self {
            kind: FrameKind::Nacked,
            retransmission: false,
            chunks: 0,
            chunk_bytes: 0,
        }
    }

    /// Notes the chunks `serve_chunks` sent for the chunk request `msg` from an object of
    /// `object_len` bytes: one per requested index, each clipped at the object's end.
    /// Cost: O(chunks requested).
    pub fn note_chunks(&mut self, msg: &Up<'_>, object_len: usize) {
        let Up::ChunkRequest(r) = msg else {
            return;
        };
        let size = u64::from(r.chunk_size);
        let len = object_len as u64;
        for (_, i) in r.slots() {
            let start = u64::from(i).saturating_mul(size);
            self.chunks += 1;
            self.chunk_bytes += len.min(start.saturating_add(size)).saturating_sub(start);
        }
    }
}

/// The frame path's counters (one per [`Server`](crate::server::Server)).
#[derive(Debug)]
pub struct FrameMetrics {
    /// `[kind][retransmission as usize]`.
    frames: [[AtomicU64; 2]; 6],
    checkins: AtomicU64,
    chunks: AtomicU64,
    chunk_bytes: AtomicU64,
    answer_bytes: AtomicU64,
    latency_us: Histogram,
}

impl Default for FrameMetrics {
    fn default() -> Self {
        Self {
            frames: Default::default(),
            checkins: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            chunk_bytes: AtomicU64::new(0),
            answer_bytes: AtomicU64::new(0),
            latency_us: Histogram::new(LATENCY_BOUNDS_US),
        }
    }
}

impl FrameMetrics {
    /// Counts one answered frame whose answer is `answer_bytes` long and was ready `elapsed`
    /// after the frame came in (its commit included).
    pub fn answered(&self, a: Answered, answer_bytes: u64, elapsed: Duration) {
        let k = FrameKind::ALL
            .iter()
            .position(|&k| k == a.kind)
            .unwrap_or(0);
        self.frames[k][usize::from(a.retransmission)].fetch_add(1, Ordering::Relaxed);
        if a.kind == FrameKind::CheckIn && !a.retransmission {
            self.checkins.fetch_add(1, Ordering::Relaxed);
        }
        self.chunks.fetch_add(a.chunks, Ordering::Relaxed);
        self.chunk_bytes.fetch_add(a.chunk_bytes, Ordering::Relaxed);
        self.answer_bytes.fetch_add(answer_bytes, Ordering::Relaxed);
        self.latency_us
            .observe(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// New check-ins committed so far.
    pub fn checkins(&self) -> u64 {
        self.checkins.load(Ordering::Relaxed)
    }
}

/// The drop counters as `(reason label, count)`, in a fixed order. The labels are the ones
/// the logs use ([`crate::logging::reason`]).
pub fn drop_reasons(d: &DropCounts) -> [(&'static str, u64); 12] {
    [
        ("frame", d.frame),
        ("unknown_device", d.unknown_device),
        ("replayed", d.replayed),
        ("counter_reused", d.counter_reused),
        ("other_source", d.other_source),
        ("retransmission_refused", d.retransmission_refused),
        ("counter_exhausted", d.counter_exhausted),
        ("conflict", d.conflict),
        ("internal", d.internal),
        ("limited_in_flight", d.limited_in_flight),
        ("limited_source", d.limited_source),
        ("limited_device", d.limited_device),
    ]
}

/// What a store can tell `/metrics` beyond the [`Store`](crate::Store) trait.
pub trait StoreMetrics {
    /// Transactions per commit so far, if the store batches commits; `None` if it does not
    /// keep such a count.
    fn commit_batches(&self) -> Option<HistogramSnapshot>;
}

impl StoreMetrics for crate::SqliteStore {
    fn commit_batches(&self) -> Option<HistogramSnapshot> {
        Some(self.commit_batch_sizes())
    }
}

/// PostgreSQL commits each transaction on its own connection (its WAL flush groups
/// concurrent commits, out of our sight): no batch histogram.
impl StoreMetrics for crate::postgres::PgStore {
    fn commit_batches(&self) -> Option<HistogramSnapshot> {
        None
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot, scale: f64) {
    header(out, name, "histogram", help);
    let mut cumulative = 0;
    for (bound, c) in h.bounds.iter().zip(&h.counts) {
        cumulative += c;
        let le = *bound as f64 / scale;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let total = h.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {}", h.sum as f64 / scale);
    let _ = writeln!(out, "{name}_count {total}");
}

/// The Prometheus text exposition (format 0.0.4) of `frames`, `drops` and, when the store has
/// it, `batches`. Cost: O(families), a few kB.
pub fn render(
    frames: &FrameMetrics,
    drops: &DropCounts,
    batches: Option<&HistogramSnapshot>,
) -> String {
    let mut out = String::with_capacity(4096);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    header(
        &mut out,
        "ota_cloud_checkins_total",
        "counter",
        "New check-ins committed and answered.",
    );
    let _ = writeln!(out, "ota_cloud_checkins_total {}", frames.checkins());
    header(
        &mut out,
        "ota_cloud_frames_total",
        "counter",
        "Frames answered (after their commit), by message kind and admission.",
    );
    for (k, kind) in FrameKind::ALL.iter().enumerate() {
        for (r, admission) in ["new", "retransmission"].iter().enumerate() {
            if *kind == FrameKind::Nacked && r == 1 {
                // A nack is decided by `admit` afresh each time: never a retransmission.
                continue;
            }
            let _ = writeln!(
                out,
                "ota_cloud_frames_total{{kind=\"{}\",admission=\"{admission}\"}} {}",
                kind.label(),
                load(&frames.frames[k][r])
            );
        }
    }
    header(
        &mut out,
        "ota_cloud_frames_dropped_total",
        "counter",
        "Frames refused or failed (no answer, nothing stored), by reason.",
    );
    for (reason, n) in drop_reasons(drops) {
        let _ = writeln!(
            out,
            "ota_cloud_frames_dropped_total{{reason=\"{reason}\"}} {n}"
        );
    }
    for (name, help, v) in [
        (
            "ota_cloud_chunks_served_total",
            "Chunk frames sent.",
            &frames.chunks,
        ),
        (
            "ota_cloud_chunk_bytes_served_total",
            "Manifest and image bytes carried by the chunk frames sent.",
            &frames.chunk_bytes,
        ),
        (
            "ota_cloud_answer_bytes_total",
            "Bytes of every answer frame sent (chunks included).",
            &frames.answer_bytes,
        ),
    ] {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", load(v));
    }
    histogram(
        &mut out,
        "ota_cloud_frame_handling_seconds",
        "From a frame's arrival to its answer being ready, the store commit included.",
        &frames.latency_us.snapshot(),
        1e6,
    );
    if let Some(b) = batches {
        histogram(
            &mut out,
            "ota_cloud_store_commit_batch_size",
            "Transactions carried by each store commit (group commit).",
            b,
            1.0,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_exposition() {
        let h = Histogram::new(&[1, 4]);
        for v in [1, 2, 4, 5, 100] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![1, 2, 2]);
        assert_eq!((s.count(), s.sum), (5, 112));
        let mut out = String::new();
        histogram(&mut out, "x", "help", &s, 1.0);
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"4\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_sum 112\nx_count 5\n"), "{out}");
    }

    /// Every `DropCounts` field has its own label: the drop reasons sum to the total.
    #[test]
    fn every_drop_reason_is_exported() {
        let d = DropCounts {
            frame: 1,
            unknown_device: 2,
            replayed: 3,
            counter_reused: 4,
            other_source: 5,
            retransmission_refused: 6,
            counter_exhausted: 7,
            conflict: 8,
            internal: 9,
            limited_in_flight: 10,
            limited_source: 11,
            limited_device: 12,
        };
        let r = drop_reasons(&d);
        assert_eq!(r.iter().map(|(_, n)| n).sum::<u64>(), (1..=12).sum::<u64>());
        let labels: std::collections::BTreeSet<_> = r.iter().map(|(l, _)| *l).collect();
        assert_eq!(labels.len(), r.len());
        assert!(r.contains(&("limited_device", 12)));
    }
}
