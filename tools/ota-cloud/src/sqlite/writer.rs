//! The single writer thread and its group commit.
//!
//! Callers queue jobs (closures over the write connection). The thread takes the first job,
//! then every job already queued behind it (up to `max_batch`), runs them in one
//! `BEGIN IMMEDIATE … COMMIT`, each inside its own `SAVEPOINT` so a job that fails is rolled
//! back alone, and only after the `COMMIT` returns sends each caller its result. While one
//! batch is being fsynced the next one queues up, so under load one fsync carries many
//! transactions; with one caller at a time it is one commit per job, no added delay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::metrics::{Histogram, BATCH_BOUNDS};
use crate::store::{StoreError, StoreResult};

/// One queued write.
pub(crate) trait Job: Send {
    /// Runs the work inside the current savepoint; returns whether to keep it.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Hands the caller its result, now that the batch's fate (`commit`) is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Pending<R, F> {
    work: Option<F>,
    out: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> Job for Pending<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> StoreResult<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let out = match self.work.take() {
            Some(f) => f(conn),
            None => Err(StoreError::Closed),
        };
        let keep = out.is_ok();
        self.out = Some(out);
        keep
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let result = match (self.out, commit) {
            // The job's own failure (rolled back to its savepoint) wins.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (Some(Ok(_)), Err(e)) => Err(e),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Closed),
        };
        // The caller may have gone away (its future dropped): nothing to tell then.
        let _ = self.reply.send(result);
    }
}

/// Counters of the writer, for measurements and `/metrics`.
#[derive(Debug)]
pub(crate) struct WriterStats {
    pub(crate) commits: AtomicU64,
    pub(crate) jobs: AtomicU64,
    /// Transactions per successful commit.
    pub(crate) batches: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            batches: Histogram::new(BATCH_BOUNDS),
        }
    }
}

/// The handle callers queue jobs on.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
    pub(crate) stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread over `conn`.
    pub(crate) fn start(
        conn: Connection,
        max_batch: usize,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let stats = Arc::new(WriterStats::default());
        let s = stats.clone();
        let handle = std::thread::Builder::new()
            .name("ota-cloud-sqlite-writer".into())
            .spawn(move || run(conn, rx, max_batch.max(1), &s))?;
        Ok((Self { tx, stats }, handle))
    }

    /// Queues `work` and resolves with its result once the transaction holding it committed
    /// (or failed). Errors: the job's own, the commit's (`Database`), `Closed`.
    pub(crate) async fn write<R, F>(&self, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            out: None,
            reply,
        });
        self.tx.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn run(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, max_batch: usize, stats: &WriterStats) {
    // Ends when every sender is gone and the queue is drained.
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let outcome = run_batch(&conn, &mut batch);
        if outcome.is_ok() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
            stats.batches.observe(batch.len() as u64);
        }
        for job in batch {
            job.finish(outcome.clone());
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let body = (|| {
        for job in batch.iter_mut() {
            conn.execute_batch("SAVEPOINT job").map_err(db)?;
            // A job that panics is rolled back like one that failed (its caller hears
            // `Closed`), and the writer goes on serving the others.
            let keep = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(conn)))
                .unwrap_or(false);
            if keep {
                conn.execute_batch("RELEASE job").map_err(db)?;
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(db)?;
            }
        }
        conn.execute_batch("COMMIT").map_err(db)
    })();
    if body.is_err() {
        // Nothing of the batch is kept; every caller hears of the failure.
        let _ = conn.execute_batch("ROLLBACK");
    }
    body
}
