//! [`SqliteStore`]: the embedded default [`Store`]. One database file in WAL mode; one writer
//! thread that group-commits; reads on their own connections.

mod schema;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use cloud_proto::{DeviceId, Keys, LastFrame};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::rollout::{
    next_phase, DevicePhase, NewRollout, OfferCandidate, ReleaseId, Rollout, RolloutChange,
    RolloutId, RolloutProgress, Target,
};
use crate::seal::{MasterKey, RootKey, SealError};
use crate::store::columns::{
    corrupt, current_wake_cols, device_update_cols, device_update_of, is_spki_pem, last_frame_of,
    narrow, release_body_columns, release_of, reported_result, status_of, to_i64, to_u64,
    wake_cols, wake_of, Offset, SqlRow, WakeAdd,
};
use crate::store::rollout_rows::{
    self as rr, candidate_of, check_new, phase_row_of, rollout_cols, rollout_of, state_code,
    target_columns,
};
use crate::store::{
    Device, DeviceStatus, DeviceUpdate, Effects, FleetRow, FrameCommit, NewDevice, NewProduct,
    Product, ProductId, PublishId, Release, ReleaseDigest, Store, StoreError, StoreResult,
    StoredPublish, Wake, WAKES_KEPT,
};
use writer::Writer;

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Most transactions one commit carries (group commit). 1 = one commit per transaction
    /// (for comparison; slower under load, never faster).
    pub max_batch: usize,
    /// Read connections (opened on first use, kept): at most this many reads run at once,
    /// the others wait their turn.
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            readers: 4,
        }
    }
}

/// Why [`SqliteStore::open`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite could not open or set up the file (message from SQLite).
    Database(String),
    /// The database was written by a newer ota-cloud (its schema version, and ours).
    NewerSchema {
        /// Found in the file.
        found: u32,
        /// The newest this build knows.
        supported: u32,
    },
    /// The master key given is not the one this database's keys are sealed with.
    WrongMasterKey,
    /// The OS random source failed while setting up a new database.
    Seal(SealError),
    /// The writer thread could not be started.
    Thread(std::io::ErrorKind),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database(m) => write!(f, "cannot open the database: {m}"),
            Self::NewerSchema { found, supported } => write!(
                f,
                "database schema version {found} is newer than this build's ({supported}): upgrade ota-cloud"
            ),
            Self::WrongMasterKey => {
                f.write_str("the master key file does not belong to this database")
            }
            Self::Seal(_) => f.write_str("cannot set up the master key check"),
            Self::Thread(k) => write!(f, "cannot start the writer thread: {k}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Seal(e) => Some(e),
            _ => None,
        }
    }
}

fn open_db(e: rusqlite::Error) -> OpenError {
    OpenError::Database(e.to_string())
}

/// [`Store::device_publishes`]: a range of the index `publishes_device` (device, id).
const DEVICE_PUBLISHES: &str = "SELECT id, device, counter, topic, data, received_ms
    FROM publishes WHERE device = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

/// A publish from `id, device, counter, topic, data, received_ms`.
fn publish_of(r: &Row<'_>) -> StoreResult<StoredPublish> {
    Ok(StoredPublish {
        id: PublishId(to_u64(r.get(0).map_err(db)?, "publish id")?),
        device: DeviceId(narrow(r.get::<_, i64>(1).map_err(db)?, "device id")?),
        counter: narrow(r.get::<_, i64>(2).map_err(db)?, "counter")?,
        topic: narrow(r.get::<_, i64>(3).map_err(db)?, "topic")?,
        data: r.get(4).map_err(db)?,
        received_ms: to_u64(r.get(5).map_err(db)?, "received")?,
    })
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// The SQLite [`Store`]: one file, WAL, `synchronous=FULL`.
///
/// * **Durability**: `synchronous=FULL` fsyncs the WAL at every commit, so an acknowledged
///   write survives a power cut, not only a process crash (`NORMAL` would survive a crash of
///   the process but may lose the last commits on power loss, which the [`Store`] contract
///   forbids).
/// * **Writes** go to one writer thread that group-commits (see [`SqliteOptions::max_batch`]);
///   each caller's future resolves after the `COMMIT` that holds its work. A failing write is
///   rolled back to its own savepoint and does not fail the others in its batch.
/// * **Reads** run on separate read-only connections (WAL: they never block the writer, and
///   see every committed write) through `tokio::task::spawn_blocking`, so a tokio runtime must
///   be running. The frame path's one-device reads ([`Store::last_frame`],
///   [`Store::offer_candidates`], [`Store::serves_release`]) run on the calling task's thread
///   instead when a read connection is idle: such a query from the page cache costs less than
///   the hand-off to a blocking thread and back.
/// * Several processes may open the same file (SQLite serializes their writers; the
///   compare-and-set of [`Store::commit_frame`] holds across them), but for a fleet use the
///   PostgreSQL store (next slice).
///
/// Drop it or call [`close`](Self::close): queued writes are finished first either way.
pub struct SqliteStore {
    writer: Writer,
    join: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Readers>,
    master: Arc<MasterKey>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: at most this many reads run at once, each on a kept
    /// connection (opening one per read would cost more than most reads).
    permits: tokio::sync::Semaphore,
}

impl Readers {
    fn open_one(&self) -> StoreResult<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        c.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        Ok(c)
    }

    fn take(&self) -> StoreResult<Connection> {
        let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
        match pooled {
            Some(c) => Ok(c),
            None => self.open_one(),
        }
    }

    fn give_back(&self, c: Connection) {
        if let Ok(mut v) = self.idle.lock() {
            v.push(c);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates its schema, and checks that
    /// `master` is the key it was set up with (a new database records it).
    ///
    /// Errors: see [`OpenError`]. Cost: file opens, migrations if any, one AEAD open.
    pub fn open(path: &Path, master: MasterKey, options: SqliteOptions) -> Result<Self, OpenError> {
        let mut conn = Connection::open(path).map_err(open_db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_db)?;
        // WAL: readers never block the writer; FULL: see the type's docs.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_db)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_db)?;
        let found = schema::version(&conn).map_err(open_db)?;
        if found > schema::VERSION {
            return Err(OpenError::NewerSchema {
                found,
                supported: schema::VERSION,
            });
        }
        schema::migrate_to(&mut conn, schema::VERSION).map_err(open_db)?;
        let check: Option<Vec<u8>> = conn
            .query_row("SELECT v FROM meta WHERE k = 'master_check'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(open_db)?;
        match check {
            Some(blob) if !master.verifies(&blob) => return Err(OpenError::WrongMasterKey),
            Some(_) => {}
            None => {
                let blob = master.check_blob().map_err(OpenError::Seal)?;
                conn.execute(
                    "INSERT OR IGNORE INTO meta (k, v) VALUES ('master_check', ?1)",
                    [blob],
                )
                .map_err(open_db)?;
                // A concurrent first open may have won: check what is stored now.
                let stored: Vec<u8> = conn
                    .query_row("SELECT v FROM meta WHERE k = 'master_check'", [], |r| {
                        r.get(0)
                    })
                    .map_err(open_db)?;
                if !master.verifies(&stored) {
                    return Err(OpenError::WrongMasterKey);
                }
            }
        }
        let (writer, join) =
            Writer::start(conn, options.max_batch).map_err(|e| OpenError::Thread(e.kind()))?;
        Ok(Self {
            writer,
            join: Mutex::new(Some(join)),
            readers: Arc::new(Readers {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(options.readers.max(1)),
            }),
            master: Arc::new(master),
        })
    }

    /// Finishes the queued writes, stops the writer and closes the file.
    pub async fn close(self) {
        let Self { writer, join, .. } = self;
        drop(writer);
        let handle = join.lock().ok().and_then(|mut j| j.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// Commits made and transactions they carried so far (their ratio is the mean batch).
    pub fn commit_stats(&self) -> (u64, u64) {
        let s = &self.writer.stats;
        (
            s.commits.load(Ordering::Relaxed),
            s.jobs.load(Ordering::Relaxed),
        )
    }

    /// Transactions per commit so far (the group commit's batch sizes), for `/metrics`.
    pub fn commit_batch_sizes(&self) -> crate::metrics::HistogramSnapshot {
        self.writer.stats.batches.snapshot()
    }

    /// A read on the frame path (one device's indexed rows: its record, its offer
    /// candidates, whether a release is served to it): run on the calling thread when a read
    /// connection is idle, sparing the hand-off to a blocking thread and back, which costs
    /// more than such a query from SQLite's page cache; otherwise as [`read`](Self::read).
    /// Same connection kind, so the same consistency (WAL: readers never wait on the writer).
    async fn read_hot<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &MasterKey) -> StoreResult<R> + Send + 'static,
    {
        if let Ok(_permit) = self.readers.permits.try_acquire() {
            let idle = self.readers.idle.lock().ok().and_then(|mut v| v.pop());
            if let Some(conn) = idle {
                let out = f(&conn, &self.master);
                self.readers.give_back(conn);
                return out;
            }
        }
        self.read(f).await
    }

    async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &MasterKey) -> StoreResult<R> + Send + 'static,
    {
        let readers = self.readers.clone();
        let master = self.master.clone();
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn, &master);
            readers.give_back(conn);
            out
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn tags_of(conn: &Connection, id: DeviceId) -> StoreResult<Vec<String>> {
    let mut st = conn
        .prepare_cached("SELECT tag FROM device_tags WHERE device = ?1 ORDER BY tag")
        .map_err(db)?;
    let rows = st
        .query_map([id.0], |r| r.get::<_, String>(0))
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

fn device_of(conn: &Connection, row: &Row<'_>) -> StoreResult<Device> {
    let id = DeviceId(narrow(row.get::<_, i64>(0).map_err(db)?, "device id")?);
    Ok(Device {
        id,
        product: ProductId(narrow(row.get::<_, i64>(1).map_err(db)?, "product id")?),
        tags: tags_of(conn, id)?,
        created_ms: to_u64(row.get(2).map_err(db)?, "created")?,
    })
}

fn product_exists(conn: &Connection, id: ProductId) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM products WHERE id = ?1")
        .and_then(|mut s| s.exists([id.0]))
        .map_err(db)
}

fn device_exists(conn: &Connection, id: DeviceId) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM devices WHERE id = ?1")
        .and_then(|mut s| s.exists([id.0]))
        .map_err(db)
}

fn sealed_of(conn: &Connection, id: DeviceId) -> StoreResult<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT sealed_root FROM devices WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.0], |r| r.get(0)).optional())
        .map_err(db)
}

const RELEASE_COLS: &str = "digest, product, major, minor, patch, security_counter, hardware_id, size, body, path, created_ms";

const STATUS_COLS: &str = "last_seen_ms, ci_ms, ci_major, ci_minor, ci_patch, ci_trial, ci_state, ci_result, ci_dl_update, ci_dl_bytes, ci_battery, ci_forced, st_update, st_state, st_result, decision, state, result, wakes, forced_sleeps, bytes_up, bytes_down, awake_ms, next_wake_ms, publishes";

/// The fleet query: device columns, the latest rollout phase (a lookup of the index
/// `rollout_devices_device`), then [`STATUS_COLS`].
const FLEET: &str = "SELECT d.id, d.product, d.created_ms,
   (SELECT rd.phase FROM rollout_devices rd WHERE rd.device = d.id
     ORDER BY rd.updated_ms DESC, rd.rollout DESC LIMIT 1),
   d.last_seen_ms, d.ci_ms, d.ci_major, d.ci_minor, d.ci_patch, d.ci_trial, d.ci_state,
   d.ci_result, d.ci_dl_update, d.ci_dl_bytes, d.ci_battery, d.ci_forced, d.st_update,
   d.st_state, d.st_result, d.decision, d.state, d.result, d.wakes, d.forced_sleeps,
   d.bytes_up, d.bytes_down, d.awake_ms, d.next_wake_ms, d.publishes
 FROM devices d ORDER BY d.id";

/// The frame transaction (inside the writer's savepoint).
fn commit_frame_tx(conn: &Connection, c: &FrameCommit) -> StoreResult<bool> {
    let id = c.device.0;
    let r = &c.record;
    let new_at = to_i64(r.accepted_at_ms)?;
    let new_source = r.source.to_string();
    let changed = match &c.expected {
        None => conn
            .prepare_cached(
                "UPDATE devices SET lf_counter = ?2, lf_tag = ?3, lf_at = ?4, lf_source = ?5, lf_answers = ?6
                 WHERE id = ?1 AND lf_counter IS NULL",
            )
            .and_then(|mut s| s.execute(params![id, r.counter, &r.tag[..], new_at, new_source, r.answers])),
        Some(o) => {
            let old_at = to_i64(o.accepted_at_ms)?;
            let old_source = o.source.to_string();
            conn.prepare_cached(
                "UPDATE devices SET lf_counter = ?2, lf_tag = ?3, lf_at = ?4, lf_source = ?5, lf_answers = ?6
                 WHERE id = ?1 AND lf_counter = ?7 AND lf_tag = ?8 AND lf_at = ?9 AND lf_source = ?10 AND lf_answers = ?11",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    r.counter,
                    &r.tag[..],
                    new_at,
                    new_source,
                    r.answers,
                    o.counter,
                    &o.tag[..],
                    old_at,
                    old_source,
                    o.answers,
                ])
            })
        }
    }
    .map_err(db)?;
    if changed == 0 {
        return if device_exists(conn, c.device)? {
            Ok(false)
        } else {
            Err(StoreError::UnknownDevice(c.device))
        };
    }
    let e = &c.effects;
    let now = to_i64(e.now_ms)?;
    let (up, down) = (to_i64(e.bytes_up)?, to_i64(e.bytes_down)?);
    // A frame other than a check-in adds to the current wake; a check-in starts a new one
    // below (the wake columns of migration 4).
    let w = WakeAdd::of(e)?;
    conn.prepare_cached(
        "UPDATE devices SET last_seen_ms = ?2, bytes_up = bytes_up + ?3, bytes_down = bytes_down + ?4,
         publishes = publishes + ?5, w_last = COALESCE(?6, w_last), w_frames = w_frames + ?7,
         w_up = w_up + ?8, w_down = w_down + ?9 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            now,
            up,
            down,
            e.publishes.len() as i64,
            w.last,
            w.frames,
            w.up,
            w.down
        ])
    })
    .map_err(db)?;
    if let Some(ci) = &e.checkin {
        // The previous wake is finished: keep it, and only the last WAKES_KEPT.
        conn.prepare_cached(concat!(
            "INSERT INTO device_wakes (device, ",
            wake_cols!(),
            ") SELECT id, ",
            current_wake_cols!(),
            " FROM devices WHERE id = ?1 AND ci_ms IS NOT NULL"
        ))
        .and_then(|mut s| s.execute([id]))
        .map_err(db)?;
        conn.prepare_cached(
            "DELETE FROM device_wakes WHERE device = ?1
               AND seq <= (SELECT wakes FROM devices WHERE id = ?1) - ?2",
        )
        .and_then(|mut s| s.execute(params![id, WAKES_KEPT as i64]))
        .map_err(db)?;
        conn.prepare_cached(
            "UPDATE devices SET w_last = ?2, w_frames = 1, w_up = ?3, w_down = ?4, w_pubs = ?5,
             w_offer = ?6, w_sleep = NULL WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                now,
                up,
                down,
                e.publishes.len() as i64,
                e.offer.map(|o| o.1 .0)
            ])
        })
        .map_err(db)?;
        conn.prepare_cached(
            "UPDATE devices SET ci_ms = ?2, ci_major = ?3, ci_minor = ?4, ci_patch = ?5, ci_trial = ?6,
             ci_state = ?7, ci_result = ?8, ci_dl_update = ?9, ci_dl_bytes = ?10, ci_battery = ?11,
             ci_forced = ?12, state = ?7, result = ?8, wakes = wakes + 1,
             forced_sleeps = forced_sleeps + ?12, awake_open = 1 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                now,
                ci.firmware.major,
                ci.firmware.minor,
                ci.firmware.patch,
                ci.trial,
                ci.state as u8,
                ci.result as u8,
                ci.download.map(|d| d.0 .0),
                ci.download.map(|d| d.1),
                ci.battery_mv,
                ci.forced_sleeps,
            ])
        })
        .map_err(db)?;
    }
    if let Some(st) = &e.status {
        conn.prepare_cached(
            "UPDATE devices SET st_update = ?2, st_state = ?3, st_result = ?4, state = ?3, result = ?4
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                st.update.0,
                st.state as u8,
                st.result as u8
            ])
        })
        .map_err(db)?;
    }
    if let Some(d) = &e.decision {
        let bytes =
            postcard::to_allocvec(d).map_err(|_| StoreError::Invalid("unencodable decision"))?;
        conn.prepare_cached("UPDATE devices SET decision = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, bytes]))
            .map_err(db)?;
    }
    if let Some(sleep_s) = e.goodbye_sleep_s {
        conn.prepare_cached(
            "UPDATE devices SET
               awake_ms = awake_ms + CASE WHEN awake_open = 1 AND ci_ms IS NOT NULL AND ?2 > ci_ms
                                          THEN ?2 - ci_ms ELSE 0 END,
               awake_open = 0, next_wake_ms = ?2 + ?3 * 1000, w_sleep = ?3 WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![id, now, sleep_s]))
        .map_err(db)?;
    }
    rollout_effects_tx(conn, id, e)?;
    if !e.publishes.is_empty() {
        let mut st = conn
            .prepare_cached(
                "INSERT INTO publishes (device, counter, topic, data, received_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db)?;
        for (topic, data) in &e.publishes {
            st.execute(params![id, r.counter, topic, data, now])
                .map_err(db)?;
        }
    }
    Ok(true)
}

/// The frame's rollout effects (inside the frame transaction): the device's open rows move
/// with what it reported ([`next_phase`]); a row reaching succeeded or failed counts toward
/// its rollout's error threshold, which pauses the rollout here when it trips; then the offer
/// the answer carries is recorded.
fn rollout_effects_tx(conn: &Connection, device: u32, e: &Effects) -> StoreResult<()> {
    let now = to_i64(e.now_ms)?;
    if e.checkin.is_some() || e.status.is_some() || e.decision.is_some() {
        let rows = {
            let mut st = conn
                .prepare_cached(
                    "SELECT rd.rollout, rd.release, r.major, r.minor, r.patch, rd.phase
                     FROM rollout_devices rd JOIN releases r ON r.id = rd.release
                     WHERE rd.device = ?1 AND rd.phase < 5",
                )
                .map_err(db)?;
            let mut rows = st.query([device]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                out.push(phase_row_of(r)?);
            }
            out
        };
        for row in rows {
            let Some(ch) = next_phase(&row, e) else {
                continue;
            };
            let retry = ch.retry_at_ms.map(to_i64).transpose()?;
            conn.prepare_cached(
                "UPDATE rollout_devices SET phase = ?3, retry_at_ms = ?4, updated_ms = ?5,
                   result = COALESCE(?6, result)
                 WHERE rollout = ?1 AND device = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    row.rollout.0,
                    device,
                    ch.phase as i64,
                    retry,
                    now,
                    reported_result(e)
                ])
            })
            .map_err(db)?;
            if matches!(ch.phase, DevicePhase::Succeeded | DevicePhase::Failed) {
                let failed = i64::from(ch.phase == DevicePhase::Failed);
                conn.prepare_cached(
                    "UPDATE rollouts SET th_finished = th_finished + 1, th_failed = th_failed + ?2
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![row.rollout.0, failed]))
                .map_err(db)?;
                // The same rule as `ErrorThreshold::tripped`, on the counters just written.
                conn.prepare_cached(
                    "UPDATE rollouts SET state = 2, pause_failed = th_failed, pause_finished = th_finished
                     WHERE id = ?1 AND state = 0 AND threshold_bp IS NOT NULL
                       AND th_finished >= MAX(min_finished, 1)
                       AND th_failed * 10000 > threshold_bp * th_finished",
                )
                .and_then(|mut s| s.execute([row.rollout.0]))
                .map_err(db)?;
            }
        }
    }
    if let Some((rollout, release)) = e.offer {
        conn.prepare_cached(
            "INSERT INTO rollout_devices (rollout, device, release, phase, offered_ms, updated_ms)
             VALUES (?1, ?2, ?3, 0, ?4, ?4)
             ON CONFLICT (rollout, device) DO UPDATE SET phase = 0, retry_at_ms = NULL,
               updated_ms = excluded.updated_ms
             WHERE rollout_devices.phase = 1",
        )
        .and_then(|mut s| s.execute(params![rollout.0, device, release.0, now]))
        .map_err(db)?;
    }
    Ok(())
}

fn rollout_tx(conn: &Connection, id: RolloutId) -> StoreResult<Option<Rollout>> {
    let mut st = conn
        .prepare_cached(concat!(
            "SELECT ",
            rollout_cols!(),
            " FROM rollouts ro JOIN releases r ON r.id = ro.release WHERE ro.id = ?1"
        ))
        .map_err(db)?;
    let mut rows = st.query([id.0]).map_err(db)?;
    match rows.next().map_err(db)? {
        Some(row) => Ok(Some(rollout_of(row)?)),
        None => Ok(None),
    }
}

fn release_by_id_tx(conn: &Connection, id: ReleaseId) -> StoreResult<Option<Release>> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {RELEASE_COLS} FROM releases WHERE id = ?1"
        ))
        .map_err(db)?;
    let mut rows = st.query([id.0]).map_err(db)?;
    match rows.next().map_err(db)? {
        Some(row) => Ok(Some(release_of(row)?)),
        None => Ok(None),
    }
}

impl Store for SqliteStore {
    async fn add_product(&self, p: NewProduct) -> StoreResult<ProductId> {
        if p.name.is_empty() {
            return Err(StoreError::Invalid("empty product name"));
        }
        if !p.release_keys.iter().all(|k| is_spki_pem(k)) {
            return Err(StoreError::Invalid("release key is not an SPKI PEM"));
        }
        self.writer
            .write(move |conn| {
                let n = conn
                    .execute(
                        "INSERT INTO products (name, hardware_id) VALUES (?1, ?2)",
                        params![p.name, &p.hardware_id[..]],
                    )
                    .map_err(|e| {
                        if is_constraint(&e) {
                            StoreError::AlreadyExists
                        } else {
                            db(e)
                        }
                    })?;
                debug_assert_eq!(n, 1);
                let id = ProductId(narrow(conn.last_insert_rowid(), "product id")?);
                for (seq, pem) in p.release_keys.iter().enumerate() {
                    conn.execute(
                        "INSERT OR IGNORE INTO release_keys (product, seq, spki_pem) VALUES (?1, ?2, ?3)",
                        params![id.0, seq as i64, pem],
                    )
                    .map_err(db)?;
                }
                Ok(id)
            })
            .await
    }

    async fn product(&self, id: ProductId) -> StoreResult<Option<Product>> {
        self.read(move |conn, _| {
            let row: Option<(String, Vec<u8>)> = conn
                .query_row(
                    "SELECT name, hardware_id FROM products WHERE id = ?1",
                    [id.0],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((name, hw)) = row else {
                return Ok(None);
            };
            let mut st = conn
                .prepare_cached("SELECT spki_pem FROM release_keys WHERE product = ?1 ORDER BY seq")
                .map_err(db)?;
            let keys = st
                .query_map([id.0], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(db)?;
            Ok(Some(Product {
                id,
                name,
                hardware_id: hw
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("hardware id"))?,
                release_keys: keys,
            }))
        })
        .await
    }

    async fn products(&self) -> StoreResult<Vec<Product>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached("SELECT id, name, hardware_id FROM products ORDER BY id")
                .map_err(db)?;
            let mut rows = st.query([]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                let hw: Vec<u8> = r.get(2).map_err(db)?;
                out.push(Product {
                    id: ProductId(narrow(r.get::<_, i64>(0).map_err(db)?, "product id")?),
                    name: r.get(1).map_err(db)?,
                    hardware_id: hw
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupt("hardware id"))?,
                    release_keys: Vec::new(),
                });
            }
            // Every key in one pass, in each product's order (as `product` reads them).
            let mut st = conn
                .prepare_cached("SELECT product, spki_pem FROM release_keys ORDER BY product, seq")
                .map_err(db)?;
            let mut rows = st.query([]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let product: u32 = narrow(r.get::<_, i64>(0).map_err(db)?, "product id")?;
                let pem: String = r.get(1).map_err(db)?;
                let at = out
                    .binary_search_by_key(&product, |p| p.id.0)
                    .map_err(|_| corrupt("release key of no product"))?;
                out[at].release_keys.push(pem);
            }
            Ok(out)
        })
        .await
    }

    async fn add_release_key(&self, product: ProductId, spki_pem: String) -> StoreResult<()> {
        if !is_spki_pem(&spki_pem) {
            return Err(StoreError::Invalid("release key is not an SPKI PEM"));
        }
        self.writer
            .write(move |conn| {
                if !product_exists(conn, product)? {
                    return Err(StoreError::UnknownProduct(product));
                }
                conn.execute(
                    "INSERT OR IGNORE INTO release_keys (product, seq, spki_pem)
                     VALUES (?1, (SELECT COALESCE(MAX(seq), -1) + 1 FROM release_keys WHERE product = ?1), ?2)",
                    params![product.0, spki_pem],
                )
                .map_err(db)?;
                Ok(())
            })
            .await
    }

    async fn remove_release_key(&self, product: ProductId, spki_pem: String) -> StoreResult<bool> {
        self.writer
            .write(move |conn| {
                if !product_exists(conn, product)? {
                    return Err(StoreError::UnknownProduct(product));
                }
                let n = conn
                    .execute(
                        "DELETE FROM release_keys WHERE product = ?1 AND spki_pem = ?2",
                        params![product.0, spki_pem],
                    )
                    .map_err(db)?;
                Ok(n > 0)
            })
            .await
    }

    async fn add_device(&self, d: NewDevice, now_ms: u64) -> StoreResult<DeviceId> {
        let master = self.master.clone();
        let now = to_i64(now_ms)?;
        self.writer
            .write(move |conn| {
                if !product_exists(conn, d.product)? {
                    return Err(StoreError::UnknownProduct(d.product));
                }
                let id = match d.id {
                    Some(id) => id,
                    None => {
                        let max: Option<i64> = conn
                            .query_row("SELECT MAX(id) FROM devices", [], |r| r.get(0))
                            .map_err(db)?;
                        let next = max.map_or(Some(1), |m| m.checked_add(1));
                        DeviceId(
                            next.and_then(|n| u32::try_from(n).ok())
                                .ok_or(StoreError::Invalid("no device id left"))?,
                        )
                    }
                };
                let sealed = master.seal(id, &d.root_key)?;
                conn.execute(
                    "INSERT INTO devices (id, product, sealed_root, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![id.0, d.product.0, sealed, now],
                )
                .map_err(|e| {
                    if is_constraint(&e) {
                        StoreError::AlreadyExists
                    } else {
                        db(e)
                    }
                })?;
                for tag in &d.tags {
                    conn.execute(
                        "INSERT OR IGNORE INTO device_tags (device, tag) VALUES (?1, ?2)",
                        params![id.0, tag],
                    )
                    .map_err(db)?;
                }
                Ok(id)
            })
            .await
    }

    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached("SELECT id, product, created_ms FROM devices WHERE id = ?1")
                .map_err(db)?;
            let mut rows = st.query([id.0]).map_err(db)?;
            match rows.next().map_err(db)? {
                Some(row) => Ok(Some(device_of(conn, row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn devices(&self) -> StoreResult<Vec<Device>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached("SELECT id, product, created_ms FROM devices ORDER BY id")
                .map_err(db)?;
            let mut rows = st.query([]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                out.push(device_of(conn, row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn keys(&self, id: DeviceId) -> StoreResult<Option<Keys>> {
        self.read(move |conn, master| match sealed_of(conn, id)? {
            Some(blob) => {
                let root = master.open(id, &blob)?;
                Ok(Some(Keys::derive(root.expose())))
            }
            None => Ok(None),
        })
        .await
    }

    async fn root_key(&self, id: DeviceId) -> StoreResult<Option<RootKey>> {
        self.read(move |conn, master| match sealed_of(conn, id)? {
            Some(blob) => Ok(Some(master.open(id, &blob)?)),
            None => Ok(None),
        })
        .await
    }

    async fn last_frame(&self, id: DeviceId) -> StoreResult<Option<LastFrame>> {
        self.read_hot(move |conn, _| {
            let mut st = conn
                .prepare_cached(
                    "SELECT lf_counter, lf_tag, lf_at, lf_source, lf_answers FROM devices WHERE id = ?1",
                )
                .map_err(db)?;
            let mut rows = st.query([id.0]).map_err(db)?;
            match rows.next().map_err(db)? {
                Some(row) => last_frame_of(row),
                None => Ok(None),
            }
        })
        .await
    }

    async fn commit_frame(&self, c: FrameCommit) -> StoreResult<bool> {
        self.writer
            .write(move |conn| commit_frame_tx(conn, &c))
            .await
    }

    async fn publishes_since(
        &self,
        after: PublishId,
        limit: usize,
    ) -> StoreResult<Vec<StoredPublish>> {
        let after = to_i64(after.0)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached(
                    "SELECT id, device, counter, topic, data, received_ms FROM publishes
                     WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(db)?;
            let mut rows = st.query(params![after, limit]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                out.push(publish_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn device_publishes(
        &self,
        device: DeviceId,
        after: PublishId,
        limit: usize,
    ) -> StoreResult<Vec<StoredPublish>> {
        let after = to_i64(after.0)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, _| {
            // A range of the index publishes_device (device, id), migration 2.
            let mut st = conn.prepare_cached(DEVICE_PUBLISHES).map_err(db)?;
            let mut rows = st.query(params![device.0, after, limit]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                out.push(publish_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn status(&self, id: DeviceId) -> StoreResult<Option<DeviceStatus>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached(&format!("SELECT {STATUS_COLS} FROM devices WHERE id = ?1"))
                .map_err(db)?;
            let mut rows = st.query([id.0]).map_err(db)?;
            match rows.next().map_err(db)? {
                Some(row) => Ok(Some(status_of(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_release(&self, r: Release) -> StoreResult<ReleaseId> {
        // Owned copies: the write runs on the writer thread.
        let (body, path) =
            release_body_columns(&r).map(|(b, p)| (b.map(<[u8]>::to_vec), p.map(str::to_owned)))?;
        let size = to_i64(r.size)?;
        let created = to_i64(r.created_ms)?;
        self.writer
            .write(move |conn| {
                if !product_exists(conn, r.product)? {
                    return Err(StoreError::UnknownProduct(r.product));
                }
                conn.execute(
                    &format!("INSERT INTO releases ({RELEASE_COLS}, id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                        (SELECT COALESCE(MAX(id), 0) + 1 FROM releases))"),
                    params![
                        &r.digest.0[..],
                        r.product.0,
                        r.version.major,
                        r.version.minor,
                        r.version.patch,
                        r.security_counter,
                        &r.hardware_id[..],
                        size,
                        body,
                        path,
                        created
                    ],
                )
                .map_err(|e| {
                    if is_constraint(&e) {
                        StoreError::AlreadyExists
                    } else {
                        db(e)
                    }
                })?;
                let id: i64 = conn
                    .query_row("SELECT id FROM releases WHERE digest = ?1", [&r.digest.0[..]], |row| row.get(0))
                    .map_err(db)?;
                Ok(ReleaseId(
                    u32::try_from(id).map_err(|_| StoreError::Invalid("no release id left"))?,
                ))
            })
            .await
    }

    async fn release(&self, digest: ReleaseDigest) -> StoreResult<Option<Release>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {RELEASE_COLS} FROM releases WHERE digest = ?1"
                ))
                .map_err(db)?;
            let mut rows = st.query([&digest.0[..]]).map_err(db)?;
            match rows.next().map_err(db)? {
                Some(row) => Ok(Some(release_of(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn releases(&self, product: ProductId) -> StoreResult<Vec<(ReleaseId, Release)>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {RELEASE_COLS}, id FROM releases WHERE product = ?1 ORDER BY id"
                ))
                .map_err(db)?;
            let mut rows = st.query([product.0]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                let id = narrow(row.get::<_, i64>(11).map_err(db)?, "release id")?;
                out.push((ReleaseId(id), release_of(row)?));
            }
            Ok(out)
        })
        .await
    }

    async fn release_by_id(&self, id: ReleaseId) -> StoreResult<Option<Release>> {
        self.read(move |conn, _| release_by_id_tx(conn, id)).await
    }

    async fn release_id(&self, digest: ReleaseDigest) -> StoreResult<Option<ReleaseId>> {
        self.read(move |conn, _| {
            let id: Option<i64> = conn
                .prepare_cached("SELECT id FROM releases WHERE digest = ?1")
                .and_then(|mut s| s.query_row([&digest.0[..]], |r| r.get(0)).optional())
                .map_err(db)?;
            id.map(|i| narrow(i, "release id").map(ReleaseId))
                .transpose()
        })
        .await
    }

    async fn add_rollout(&self, r: NewRollout) -> StoreResult<RolloutId> {
        check_new(&r)?;
        let seed = rr::new_seed()?;
        let created = to_i64(r.created_ms)?;
        let defer = r.defer_until_ms.map(to_i64).transpose()?;
        self.writer
            .write(move |conn| {
                let release = release_by_id_tx(conn, r.release)?
                    .ok_or(StoreError::UnknownRelease(r.release))?;
                if let Target::Device(d) = &r.target {
                    let product: Option<i64> = conn
                        .prepare_cached("SELECT product FROM devices WHERE id = ?1")
                        .and_then(|mut s| s.query_row([d.0], |r| r.get(0)).optional())
                        .map_err(db)?;
                    match product {
                        None => return Err(StoreError::UnknownDevice(*d)),
                        Some(p) if p != i64::from(release.product.0) => {
                            return Err(StoreError::Invalid(
                                "the device is not of the release's product",
                            ))
                        }
                        Some(_) => {}
                    }
                }
                let (kind, dev, tag) = target_columns(&r.target);
                let th = r.error_threshold;
                conn.prepare_cached(
                    "INSERT INTO rollouts (release, product, target_kind, target_device, target_tag,
                       share_bp, seed, threshold_bp, min_finished, defer_until_ms, state, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        r.release.0,
                        release.product.0,
                        kind,
                        dev,
                        tag,
                        r.share.bp(),
                        seed,
                        th.map(|t| t.max_failed.bp()),
                        th.map(|t| t.min_finished),
                        defer,
                        created
                    ])
                })
                .map_err(db)?;
                Ok(RolloutId(narrow(conn.last_insert_rowid(), "rollout id")?))
            })
            .await
    }

    async fn rollout(&self, id: RolloutId) -> StoreResult<Option<Rollout>> {
        self.read(move |conn, _| rollout_tx(conn, id)).await
    }

    async fn rollouts(&self, product: Option<ProductId>) -> StoreResult<Vec<Rollout>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    rollout_cols!(),
                    " FROM rollouts ro JOIN releases r ON r.id = ro.release
                     WHERE ?1 IS NULL OR ro.product = ?1 ORDER BY ro.id"
                ))
                .map_err(db)?;
            let mut rows = st.query([product.map(|p| p.0)]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                out.push(rollout_of(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_rollout(&self, id: RolloutId, change: RolloutChange) -> StoreResult<Rollout> {
        self.writer
            .write(move |conn| {
                let now = rollout_tx(conn, id)?.ok_or(StoreError::UnknownRollout(id))?;
                let next = change
                    .apply(now.state)
                    .ok_or(StoreError::IllegalTransition {
                        rollout: id,
                        from: now.state.name(),
                        change: change.name(),
                    })?;
                let share = match change {
                    RolloutChange::Share(s) if s < now.share => {
                        return Err(StoreError::Invalid("a rollout's share can only be raised"))
                    }
                    RolloutChange::Share(s) => s,
                    _ => now.share,
                };
                let resumed = change == RolloutChange::Resume;
                conn.prepare_cached(
                    "UPDATE rollouts SET state = ?2, share_bp = ?3,
                       pause_failed = CASE WHEN ?2 = 2 THEN pause_failed ELSE NULL END,
                       pause_finished = CASE WHEN ?2 = 2 THEN pause_finished ELSE NULL END,
                       th_failed = CASE WHEN ?4 THEN 0 ELSE th_failed END,
                       th_finished = CASE WHEN ?4 THEN 0 ELSE th_finished END
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id.0, state_code(next), share.bp(), resumed]))
                .map_err(db)?;
                rollout_tx(conn, id)?.ok_or(StoreError::UnknownRollout(id))
            })
            .await
    }

    async fn rollout_progress(
        &self,
        id: RolloutId,
        now_ms: u64,
    ) -> StoreResult<Option<RolloutProgress>> {
        self.read(move |conn, _| {
            // One read transaction: the counts are of one snapshot.
            conn.execute_batch("BEGIN").map_err(db)?;
            let out = progress_tx(conn, id, now_ms);
            // Ended whatever happened: the connection goes back to the pool.
            let end = conn.execute_batch("COMMIT").map_err(db);
            out.and_then(|o| end.map(|()| o))
        })
        .await
    }

    async fn offer_candidates(&self, device: DeviceId) -> StoreResult<Vec<OfferCandidate>> {
        self.read_hot(move |conn, _| {
            let mut st = conn
                .prepare_cached(
                    "SELECT ro.id, ro.release, r.major, r.minor, r.patch, ro.state, ro.pause_failed,
                       ro.pause_finished, ro.share_bp, ro.seed, ro.defer_until_ms, rd.phase,
                       rd.retry_at_ms,
                       EXISTS (SELECT 1 FROM rollout_devices x
                               WHERE x.device = d.id AND x.release = ro.release AND x.phase IN (6, 7))
                     FROM devices d
                     JOIN rollouts ro ON ro.product = d.product AND ro.state < 3
                     JOIN releases r ON r.id = ro.release
                     LEFT JOIN rollout_devices rd ON rd.rollout = ro.id AND rd.device = d.id
                     WHERE d.id = ?1
                       AND (ro.target_kind = 0
                            OR (ro.target_kind = 1 AND ro.target_device = d.id)
                            OR (ro.target_kind = 2 AND EXISTS (
                                  SELECT 1 FROM device_tags t WHERE t.device = d.id AND t.tag = ro.target_tag)))
                     ORDER BY ro.id",
                )
                .map_err(db)?;
            let mut rows = st.query([device.0]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                out.push(candidate_of(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn serves_release(&self, device: DeviceId, release: ReleaseId) -> StoreResult<bool> {
        self.read_hot(move |conn, _| {
            conn.prepare_cached(
                "SELECT 1 FROM rollout_devices rd JOIN rollouts ro ON ro.id = rd.rollout
                 WHERE rd.device = ?1 AND rd.release = ?2 AND ro.state < 3",
            )
            .and_then(|mut s| s.exists(params![device.0, release.0]))
            .map_err(db)
        })
        .await
    }

    async fn fleet(&self) -> StoreResult<Vec<FleetRow>> {
        self.read(move |conn, _| {
            let mut tags: std::collections::HashMap<i64, Vec<String>> =
                std::collections::HashMap::new();
            {
                let mut st = conn
                    .prepare_cached("SELECT device, tag FROM device_tags ORDER BY device, tag")
                    .map_err(db)?;
                let mut rows = st.query([]).map_err(db)?;
                while let Some(r) = rows.next().map_err(db)? {
                    tags.entry(r.get(0).map_err(db)?)
                        .or_default()
                        .push(r.get(1).map_err(db)?);
                }
            }
            let mut st = conn.prepare_cached(FLEET).map_err(db)?;
            let mut rows = st.query([]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db)? {
                let raw: i64 = row.get(0).map_err(db)?;
                let phase: Option<i64> = row.get(3).map_err(db)?;
                out.push(FleetRow {
                    device: Device {
                        id: DeviceId(narrow(raw, "device id")?),
                        product: ProductId(narrow(
                            row.get::<_, i64>(1).map_err(db)?,
                            "product id",
                        )?),
                        tags: tags.remove(&raw).unwrap_or_default(),
                        created_ms: to_u64(row.get(2).map_err(db)?, "created")?,
                    },
                    status: status_of(&Offset(row, 4))?,
                    phase: phase.map(rr::phase_of).transpose()?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn wakes(&self, device: DeviceId, limit: usize) -> StoreResult<Vec<Wake>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, _| {
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            let mut st = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    current_wake_cols!(),
                    " FROM devices WHERE id = ?1 AND ci_ms IS NOT NULL"
                ))
                .map_err(db)?;
            let mut rows = st.query([device.0]).map_err(db)?;
            if let Some(r) = rows.next().map_err(db)? {
                out.push(wake_of(r)?);
            }
            drop(rows);
            let mut st = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    wake_cols!(),
                    " FROM device_wakes WHERE device = ?1 ORDER BY seq DESC LIMIT ?2"
                ))
                .map_err(db)?;
            let mut rows = st.query(params![device.0, limit - 1]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                out.push(wake_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn device_updates(&self, device: DeviceId) -> StoreResult<Vec<DeviceUpdate>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    device_update_cols!(),
                    " FROM rollout_devices rd JOIN releases r ON r.id = rd.release
                     WHERE rd.device = ?1 ORDER BY rd.offered_ms DESC, rd.rollout DESC"
                ))
                .map_err(db)?;
            let mut rows = st.query([device.0]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                out.push(device_update_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn rollout_adoption(&self, id: RolloutId) -> StoreResult<Vec<u64>> {
        self.read(move |conn, _| {
            let mut st = conn
                .prepare_cached(
                    "SELECT updated_ms FROM rollout_devices WHERE rollout = ?1 AND phase = ?2
                     ORDER BY updated_ms",
                )
                .map_err(db)?;
            let mut rows = st
                .query(params![id.0, DevicePhase::Succeeded as i64])
                .map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                out.push(to_u64(r.get(0).map_err(db)?, "adoption time")?);
            }
            Ok(out)
        })
        .await
    }
}

/// The two aggregates of [`Store::rollout_progress`] (inside a read transaction).
fn progress_tx(
    conn: &Connection,
    id: RolloutId,
    now_ms: u64,
) -> StoreResult<Option<RolloutProgress>> {
    let Some(r) = rollout_tx(conn, id)? else {
        return Ok(None);
    };
    let (kind, dev, tag) = target_columns(&r.target);
    // The bucket of `rollout::bucket`, in SQL (integers below 2^63 on every step).
    let targeted: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM devices d
             WHERE d.product = ?1
               AND (?2 = 0 OR (?2 = 1 AND d.id = ?3)
                    OR (?2 = 2 AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device = d.id AND t.tag = ?4)))
               AND (((d.id * 48271 + ?5) % 2147483647) * ((d.id * 48271 + ?5) % 2147483647)
                    % 2147483647) % 10000 < ?6",
        )
        .and_then(|mut s| {
            s.query_row(
                params![r.product.0, kind, dev, tag, r.seed, r.share.bp()],
                |row| row.get(0),
            )
        })
        .map_err(db)?;
    let mut p = RolloutProgress {
        targeted: to_u64(targeted, "count")?,
        ..RolloutProgress::default()
    };
    let mut st = conn
        .prepare_cached(
            "SELECT phase, COUNT(*) FROM rollout_devices WHERE rollout = ?1 GROUP BY phase",
        )
        .map_err(db)?;
    let mut rows = st.query([id.0]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let phase = rr::phase_of(row.get(0).map_err(db)?)?;
        p.add(phase, to_u64(row.get(1).map_err(db)?, "count")?);
    }
    rr::finish_progress(&mut p, &r, now_ms);
    Ok(Some(p))
}

impl SqlRow for Row<'_> {
    fn int(&self, i: usize) -> StoreResult<Option<i64>> {
        self.get(i).map_err(db)
    }
    fn blob(&self, i: usize) -> StoreResult<Option<Vec<u8>>> {
        self.get(i).map_err(db)
    }
    fn text(&self, i: usize) -> StoreResult<Option<String>> {
        self.get(i).map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame path's reads (record, offer candidates, served release) run on the caller's
    /// thread when a read connection is idle: they still complete while the runtime's only
    /// blocking thread is taken. (The timeout only turns the deadlock a hand-off would cause
    /// into a failure; nothing is measured.)
    #[test]
    fn frame_path_reads_need_no_blocking_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let master = MasterKey::generate().unwrap();
            let store =
                SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default())
                    .unwrap();
            let product = store
                .add_product(NewProduct {
                    name: "p".into(),
                    hardware_id: [1; 16],
                    release_keys: vec![],
                })
                .await
                .unwrap();
            let device = NewDevice {
                id: None,
                product,
                tags: vec![],
                root_key: RootKey::from_bytes([3; 32]),
            };
            let id = store.add_device(device, 0).await.unwrap();
            // The first read opens the connection (on a blocking thread) and keeps it.
            assert_eq!(store.last_frame(id).await.unwrap(), None);
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || wait.recv());
            let reads = async {
                assert_eq!(store.last_frame(id).await.unwrap(), None);
                assert!(store.offer_candidates(id).await.unwrap().is_empty());
                assert!(!store.serves_release(id, ReleaseId(1)).await.unwrap());
            };
            let done = tokio::time::timeout(std::time::Duration::from_secs(30), reads).await;
            release.send(()).unwrap();
            assert!(
                done.is_ok(),
                "a frame-path read waited for a blocking thread"
            );
            busy.await.unwrap().unwrap();
            store.close().await;
        });
    }

    /// A database created by the first schema version, with a device in it, is migrated on
    /// open and keeps its data.
    #[tokio::test]
    async fn migrates_from_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ota.db");
        let master = MasterKey::generate().unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            schema::migrate_to(&mut conn, 1).unwrap();
            assert_eq!(schema::version(&conn).unwrap(), 1);
            conn.execute(
                "INSERT INTO products (id, name, hardware_id) VALUES (1, 'p', ?1)",
                [&[0u8; 16][..]],
            )
            .unwrap();
            let sealed = master
                .seal(DeviceId(5), &RootKey::from_bytes([9; 32]))
                .unwrap();
            conn.execute(
                "INSERT INTO devices (id, product, sealed_root, created_ms) VALUES (5, 1, ?1, 0)",
                [sealed],
            )
            .unwrap();
            // Version 2's tables are not there yet.
            assert!(conn.prepare("SELECT * FROM publishes").is_err());
        }
        let store = SqliteStore::open(&path, master, SqliteOptions::default()).unwrap();
        let key = store.root_key(DeviceId(5)).await.unwrap().unwrap();
        assert!(key.ct_eq(&RootKey::from_bytes([9; 32])));
        assert!(store
            .publishes_since(PublishId(0), 10)
            .await
            .unwrap()
            .is_empty());
        store.close().await;
        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), schema::VERSION);
        const { assert!(schema::VERSION >= 2) };
    }

    /// A device's publishes are read through the index on (device, id), never by scanning
    /// the log, and in id order without a sort.
    #[test]
    fn device_publishes_reads_the_device_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate_to(&mut conn, schema::VERSION).unwrap();
        let mut st = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DEVICE_PUBLISHES}"))
            .unwrap();
        let plan: Vec<String> = st
            .query_map(params![7, 0, 10], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH publishes USING INDEX publishes_device (device=? AND"),
            "{plan:?}"
        );
    }

    /// Releases stored before migration 3 get their rowid as id (their order), and the next
    /// release the next id.
    #[tokio::test]
    async fn migration_3_gives_existing_releases_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ota.db");
        let master = MasterKey::generate().unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            schema::migrate_to(&mut conn, 2).unwrap();
            conn.execute(
                "INSERT INTO products (id, name, hardware_id) VALUES (1, 'p', ?1)",
                [&[0u8; 16][..]],
            )
            .unwrap();
            for (i, d) in [[1u8; 32], [2u8; 32]].iter().enumerate() {
                conn.execute(
                    "INSERT INTO releases (digest, product, major, minor, patch, security_counter,
                       hardware_id, size, path, created_ms)
                     VALUES (?1, 1, 1, ?2, 0, 1, ?3, 10, 'x', 5)",
                    params![&d[..], i as i64, &[0u8; 16][..]],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path, master, SqliteOptions::default()).unwrap();
        let ids: Vec<u32> = store
            .releases(ProductId(1))
            .await
            .unwrap()
            .iter()
            .map(|(id, _)| id.0)
            .collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(
            store.release_id(ReleaseDigest([2; 32])).await.unwrap(),
            Some(ReleaseId(2))
        );
        let next = store
            .put_release(Release {
                digest: ReleaseDigest([3; 32]),
                product: ProductId(1),
                version: cloud_proto::FirmwareVersion {
                    major: 2,
                    minor: 0,
                    patch: 0,
                },
                security_counter: 1,
                hardware_id: [0; 16],
                size: 1,
                body: crate::ReleaseBody::File("y".into()),
                created_ms: 6,
            })
            .await
            .unwrap();
        assert_eq!(next, ReleaseId(3));
        store.close().await;
    }

    #[tokio::test]
    async fn refuses_a_newer_schema_and_a_wrong_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ota.db");
        let store = SqliteStore::open(
            &path,
            MasterKey::generate().unwrap(),
            SqliteOptions::default(),
        )
        .unwrap();
        store.close().await;
        let err = SqliteStore::open(
            &path,
            MasterKey::generate().unwrap(),
            SqliteOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err, OpenError::WrongMasterKey);
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", schema::VERSION + 1)
                .unwrap();
        }
        let err = SqliteStore::open(
            &path,
            MasterKey::generate().unwrap(),
            SqliteOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            OpenError::NewerSchema {
                found: schema::VERSION + 1,
                supported: schema::VERSION
            }
        );
    }

    /// A job that panics is rolled back, its caller told, and the writer keeps working.
    #[tokio::test]
    async fn a_panicking_job_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("ota.db"),
            MasterKey::generate().unwrap(),
            SqliteOptions::default(),
        )
        .unwrap();
        let r = store
            .writer
            .write(|conn| -> StoreResult<()> {
                conn.execute("INSERT INTO meta (k, v) VALUES ('boom', x'00')", [])
                    .map_err(db)?;
                panic!("planned panic");
            })
            .await;
        assert_eq!(r, Err(StoreError::Closed));
        let ok = store
            .writer
            .write(|conn| {
                conn.query_row("SELECT COUNT(*) FROM meta WHERE k = 'boom'", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(db)
            })
            .await;
        assert_eq!(ok, Ok(0));
        store.close().await;
    }

    /// A failing job in a batch is rolled back alone; the others in the same commit stand.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_does_not_fail_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("ota.db"),
            MasterKey::generate().unwrap(),
            SqliteOptions::default(),
        )
        .unwrap();
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                // Every fourth one fails after writing: its row must not stay.
                s.writer
                    .write(move |conn| {
                        conn.execute(
                            "INSERT INTO meta (k, v) VALUES (?1, x'00')",
                            [format!("job{i}")],
                        )
                        .map_err(db)?;
                        if i % 4 == 0 {
                            Err(StoreError::Invalid("planned failure"))
                        } else {
                            Ok(i)
                        }
                    })
                    .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap();
            if i % 4 == 0 {
                assert_eq!(r, Err(StoreError::Invalid("planned failure")));
            } else {
                assert_eq!(r, Ok(i as u32));
            }
        }
        let n: i64 = store
            .read(|c, _| {
                c.query_row("SELECT COUNT(*) FROM meta WHERE k LIKE 'job%'", [], |r| {
                    r.get(0)
                })
                .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(n, 30);
        let (commits, jobs) = store.commit_stats();
        assert!(jobs >= 30 && commits >= 1 && commits <= jobs);
    }
}
