//! [`PgStore`]: the [`Store`] on PostgreSQL, for fleets: several `ota-cloud` instances share
//! one database, and the replay protection holds across them because the frame transaction
//! is a compare-and-set (`UPDATE … WHERE` the old record) inside the database.

mod schema;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use cloud_proto::{DeviceId, Keys, LastFrame};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, GenericClient, NoTls, Row, Statement};

use crate::rollout::{
    next_phase, DevicePhase, NewRollout, OfferCandidate, ReleaseId, Rollout, RolloutChange,
    RolloutId, RolloutProgress, Target,
};
use crate::seal::{MasterKey, RootKey};
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
use crate::OpenError;

/// Tuning of a [`PgStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections kept (opened on first use): at most this many operations run at once, the
    /// others wait their turn. Each write is one transaction on one connection; concurrent
    /// commits share WAL flushes through PostgreSQL's own group commit.
    pub connections: usize,
    /// The schema (namespace) the tables live in, created if missing; `None`: the
    /// connection's default (`public`). Lowercase ASCII letters, digits and `_`, starting with
    /// a letter or `_`, at most 63 bytes. Lets several deployments (or test runs) share one
    /// database.
    pub schema: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            connections: 8,
            schema: None,
        }
    }
}

fn valid_schema(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A publish from `id, device, counter, topic, data, received_ms`.
fn publish_of(r: &Row) -> StoreResult<StoredPublish> {
    Ok(StoredPublish {
        id: PublishId(to_u64(get(r, 0)?, "publish id")?),
        device: DeviceId(narrow(get::<i64>(r, 1)?, "device id")?),
        counter: narrow(get::<i64>(r, 2)?, "counter")?,
        topic: narrow(get::<i64>(r, 3)?, "topic")?,
        data: get(r, 4)?,
        received_ms: to_u64(get(r, 5)?, "received")?,
    })
}

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(pg_message(&e))
}

/// The server's message when there is one (tokio-postgres' `Display` says only "db error").
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn open_db(e: tokio_postgres::Error) -> OpenError {
    OpenError::Database(pg_message(&e))
}

fn is_unique(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The shape of an SPKI PEM, as the SQLite store checks it.
/// One connection and its prepared statements (prepared once per connection, by SQL text).
struct Conn {
    client: Client,
    stmts: HashMap<&'static str, Statement>,
}

/// A read-only transaction at REPEATABLE READ: one snapshot for a read that takes several
/// statements (devices and their tags, a rollout and its counts, the fleet).
async fn snapshot(
    client: &mut tokio_postgres::Client,
) -> StoreResult<tokio_postgres::Transaction<'_>> {
    client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(db)
}

/// Prepares `sql` on the connection behind `c`, once.
async fn st<C: GenericClient + Sync>(
    c: &C,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> StoreResult<Statement> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = c.prepare(sql).await.map_err(db)?;
    cache.insert(sql, s.clone());
    Ok(s)
}

/// The kept connections: a semaphore bounds them, idle ones wait in a list, a broken one is
/// dropped and replaced by a new one on next use.
struct Pool {
    config: Config,
    /// Run on every new connection.
    setup: String,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    /// The permits in all (`PgOptions::connections`).
    size: u32,
}

struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if !c.client.is_closed() {
                if let Ok(mut v) = self.pool.idle.lock() {
                    v.push(c);
                }
            }
        }
    }
}

async fn connect(config: &Config, setup: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    // The connection task ends when the client is dropped or the server goes away; its
    // error then surfaces on the client's next call.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.batch_execute(setup).await?;
    Ok(client)
}

impl Pool {
    async fn get(&self) -> StoreResult<Lease<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match pooled {
            Some(c) if !c.client.is_closed() => c,
            _ => Conn {
                client: connect(&self.config, &self.setup).await.map_err(db)?,
                stmts: HashMap::new(),
            },
        };
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut Conn {
        // Always `Some` until drop.
        self.conn.get_or_insert_with(|| unreachable!())
    }
}

/// The PostgreSQL [`Store`], selected by a `postgres://` URL.
///
/// * **Durability**: every write is one transaction, acknowledged after its `COMMIT` returned;
///   each connection sets `synchronous_commit = on`, so the commit is flushed to the WAL on
///   disk first whatever the server's default (replication settings aside: a standby is the
///   operator's choice). No group commit of our own: concurrent transactions from many
///   connections and instances share WAL flushes through PostgreSQL's group commit.
/// * **Several instances**: [`Store::commit_frame`] is `UPDATE devices … WHERE` every field of
///   the expected record (one statement, which also adds the traffic counters), then the
///   effects, in one transaction. Under `READ COMMITTED` a concurrent update of the same row
///   makes the loser re-check its `WHERE` on the winner's row: it matches nothing, and the
///   store answers `Ok(false)`. So a frame is applied once across every instance.
/// * **Root keys** are sealed with the same [`MasterKey`] scheme as the SQLite store (the key
///   stays in its own file on each instance; the database holds a check value so a wrong key
///   is refused at open).
/// * **Publish ids** are allocated in commit order (an advisory lock held from the insert to
///   the commit of a frame that carries publishes), so paging with
///   [`publishes_since`](Store::publishes_since) never skips one.
/// * Plain TCP or unix socket (`NoTls`): for a remote database use a unix socket, a tunnel or
///   a private network.
///
/// Every method needs a running tokio runtime (connections are driven by spawned tasks).
pub struct PgStore {
    pool: Pool,
    master: Arc<MasterKey>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("PgStore")
            .field("hosts", &self.pool.config.get_hosts().len())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`, or key=value form; see
    /// tokio-postgres' `Config`), migrates the schema and checks that `master` is the key the
    /// database was set up with (a new database records it).
    ///
    /// Errors: [`OpenError::Database`] (bad URL or schema name, cannot connect, SQL failed),
    /// [`OpenError::NewerSchema`], [`OpenError::WrongMasterKey`], [`OpenError::Seal`].
    /// Cost: one connection, one transaction (plus the migrations if any), one AEAD open.
    pub async fn connect(
        url: &str,
        master: MasterKey,
        options: PgOptions,
    ) -> Result<Self, OpenError> {
        let config: Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| OpenError::Database(e.to_string()))?;
        let mut setup = String::from("SET synchronous_commit = on;");
        if let Some(s) = &options.schema {
            if !valid_schema(s) {
                return Err(OpenError::Database(format!("invalid schema name {s:?}")));
            }
            // Quoted (the name is checked above): a reserved word is a valid schema name too.
            setup.push_str(&format!(" SET search_path TO \"{s}\";"));
        }
        let mut client = connect(&config, &setup).await.map_err(open_db)?;
        let tx = client.transaction().await.map_err(open_db)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::lock::MIGRATE],
        )
        .await
        .map_err(open_db)?;
        if let Some(s) = &options.schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""))
                .await
                .map_err(open_db)?;
        }
        tx.batch_execute("CREATE TABLE IF NOT EXISTS ota_schema (version BIGINT NOT NULL)")
            .await
            .map_err(open_db)?;
        let found: Option<i64> = tx
            .query_opt("SELECT version FROM ota_schema", &[])
            .await
            .map_err(open_db)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(open_db)?;
        let found_v = match found {
            None => {
                tx.execute("INSERT INTO ota_schema (version) VALUES (0)", &[])
                    .await
                    .map_err(open_db)?;
                0
            }
            Some(v) => u32::try_from(v)
                .map_err(|_| OpenError::Database(format!("schema version {v} out of range")))?,
        };
        if found_v > schema::VERSION {
            return Err(OpenError::NewerSchema {
                found: found_v,
                supported: schema::VERSION,
            });
        }
        for m in &schema::MIGRATIONS[found_v as usize..] {
            tx.batch_execute(m).await.map_err(open_db)?;
        }
        tx.execute(
            "UPDATE ota_schema SET version = $1",
            &[&i64::from(schema::VERSION)],
        )
        .await
        .map_err(open_db)?;
        let blob = master.check_blob().map_err(OpenError::Seal)?;
        // A concurrent first open may win: whatever is stored after this is the check.
        tx.execute(
            "INSERT INTO meta (k, v) VALUES ('master_check', $1) ON CONFLICT (k) DO NOTHING",
            &[&blob],
        )
        .await
        .map_err(open_db)?;
        let stored: Vec<u8> = tx
            .query_one("SELECT v FROM meta WHERE k = 'master_check'", &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(open_db)?;
        if !master.verifies(&stored) {
            return Err(OpenError::WrongMasterKey);
        }
        tx.commit().await.map_err(open_db)?;
        let n =
            u32::try_from(options.connections.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Ok(Self {
            pool: Pool {
                config,
                setup,
                idle: Mutex::new(vec![Conn {
                    client,
                    stmts: HashMap::new(),
                }]),
                permits: Semaphore::new(n as usize),
                size: n,
            },
            master: Arc::new(master),
        })
    }

    /// Waits for the operations in progress, then closes every connection. (Dropping the
    /// store closes them too; an operation whose future is dropped is rolled back.)
    pub async fn close(self) {
        let _all = self.pool.permits.acquire_many(self.pool.size).await;
        if let Ok(mut v) = self.pool.idle.lock() {
            v.clear();
        }
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> StoreResult<T> {
    row.try_get(i).map_err(db)
}

macro_rules! release_cols {
    () => {
        "digest, product, major, minor, patch, security_counter, hardware_id, size, body, path, created_ms"
    };
}

macro_rules! status_cols {
    () => {
        "last_seen_ms, ci_ms, ci_major, ci_minor, ci_patch, ci_trial, ci_state, ci_result, ci_dl_update, ci_dl_bytes, ci_battery, ci_forced, st_update, st_state, st_result, decision, state, result, wakes, forced_sleeps, bytes_up, bytes_down, awake_ms, next_wake_ms, publishes"
    };
}

async fn exists<C: GenericClient + Sync>(
    c: &C,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    id: i64,
) -> StoreResult<bool> {
    let s = st(c, cache, sql).await?;
    Ok(c.query_opt(&s, &[&id]).await.map_err(db)?.is_some())
}

const PRODUCT_EXISTS: &str = "SELECT 1 FROM products WHERE id = $1";
const DEVICE_EXISTS: &str = "SELECT 1 FROM devices WHERE id = $1";

/// The frame transaction: the compare-and-set with the traffic counters in one statement,
/// then the other effects. Returns `Ok(false)` (nothing applied: the caller rolls back) when
/// the compare failed.
async fn commit_frame_tx<C: GenericClient + Sync>(
    tx: &C,
    cache: &mut HashMap<&'static str, Statement>,
    c: &FrameCommit,
) -> StoreResult<bool> {
    let id = i64::from(c.device.0);
    let r = &c.record;
    let e = &c.effects;
    let now = to_i64(e.now_ms)?;
    let (up, down) = (to_i64(e.bytes_up)?, to_i64(e.bytes_down)?);
    let npub = e.publishes.len() as i64;
    // A frame other than a check-in adds to the current wake; a check-in starts a new one
    // below, archiving the previous one in the same statement (migration 4).
    let w = WakeAdd::of(e)?;
    let new = (
        i64::from(r.counter),
        &r.tag[..],
        to_i64(r.accepted_at_ms)?,
        r.source.to_string(),
        i64::from(r.answers),
    );
    let changed = match &c.expected {
        None => {
            let s = st(
                tx,
                cache,
                "UPDATE devices SET lf_counter = $2, lf_tag = $3, lf_at = $4, lf_source = $5,
                   lf_answers = $6, last_seen_ms = $7, bytes_up = bytes_up + $8,
                   bytes_down = bytes_down + $9, publishes = publishes + $10,
                   w_last = COALESCE($11, w_last), w_frames = w_frames + $12,
                   w_up = w_up + $13, w_down = w_down + $14
                 WHERE id = $1 AND lf_counter IS NULL",
            )
            .await?;
            tx.execute(
                &s,
                &[
                    &id, &new.0, &new.1, &new.2, &new.3, &new.4, &now, &up, &down, &npub, &w.last,
                    &w.frames, &w.up, &w.down,
                ],
            )
            .await
            .map_err(db)?
        }
        Some(o) => {
            let s = st(
                tx,
                cache,
                "UPDATE devices SET lf_counter = $2, lf_tag = $3, lf_at = $4, lf_source = $5,
                   lf_answers = $6, last_seen_ms = $7, bytes_up = bytes_up + $8,
                   bytes_down = bytes_down + $9, publishes = publishes + $10,
                   w_last = COALESCE($16, w_last), w_frames = w_frames + $17,
                   w_up = w_up + $18, w_down = w_down + $19
                 WHERE id = $1 AND lf_counter = $11 AND lf_tag = $12 AND lf_at = $13
                   AND lf_source = $14 AND lf_answers = $15",
            )
            .await?;
            let old = (
                i64::from(o.counter),
                &o.tag[..],
                to_i64(o.accepted_at_ms)?,
                o.source.to_string(),
                i64::from(o.answers),
            );
            tx.execute(
                &s,
                &[
                    &id, &new.0, &new.1, &new.2, &new.3, &new.4, &now, &up, &down, &npub, &old.0,
                    &old.1, &old.2, &old.3, &old.4, &w.last, &w.frames, &w.up, &w.down,
                ],
            )
            .await
            .map_err(db)?
        }
    };
    if changed == 0 {
        return if exists(tx, cache, DEVICE_EXISTS, id).await? {
            Ok(false)
        } else {
            Err(StoreError::UnknownDevice(c.device))
        };
    }
    if let Some(ci) = &e.checkin {
        let s = st(
            tx,
            cache,
            concat!(
                "WITH old AS (SELECT id, ",
                current_wake_cols!(),
                " FROM devices WHERE id = $1 AND ci_ms IS NOT NULL),
                 kept AS (INSERT INTO device_wakes (device, ",
                wake_cols!(),
                ") SELECT id, ",
                current_wake_cols!(),
                " FROM old),
                 trimmed AS (DELETE FROM device_wakes WHERE device = $1
                   AND seq <= (SELECT wakes FROM old) - $13)
                 UPDATE devices SET ci_ms = $2, ci_major = $3, ci_minor = $4, ci_patch = $5,
                   ci_trial = $6, ci_state = $7, ci_result = $8, ci_dl_update = $9,
                   ci_dl_bytes = $10, ci_battery = $11, ci_forced = $12, state = $7, result = $8,
                   wakes = wakes + 1, forced_sleeps = forced_sleeps + $12, awake_open = 1,
                   w_last = $2, w_frames = 1, w_up = $14, w_down = $15, w_pubs = $16,
                   w_offer = $17, w_sleep = NULL
                 WHERE id = $1"
            ),
        )
        .await?;
        let p: [&(dyn ToSql + Sync); 17] = [
            &id,
            &now,
            &i64::from(ci.firmware.major),
            &i64::from(ci.firmware.minor),
            &i64::from(ci.firmware.patch),
            &i64::from(ci.trial),
            &(ci.state as i64),
            &(ci.result as i64),
            &ci.download.map(|d| i64::from(d.0 .0)),
            &ci.download.map(|d| i64::from(d.1)),
            &i64::from(ci.battery_mv),
            &i64::from(ci.forced_sleeps),
            &(WAKES_KEPT as i64),
            &up,
            &down,
            &npub,
            &e.offer.map(|o| i64::from(o.1 .0)),
        ];
        tx.execute(&s, &p).await.map_err(db)?;
    }
    if let Some(su) = &e.status {
        let s = st(
            tx,
            cache,
            "UPDATE devices SET st_update = $2, st_state = $3, st_result = $4, state = $3,
               result = $4 WHERE id = $1",
        )
        .await?;
        tx.execute(
            &s,
            &[
                &id,
                &i64::from(su.update.0),
                &(su.state as i64),
                &(su.result as i64),
            ],
        )
        .await
        .map_err(db)?;
    }
    if let Some(d) = &e.decision {
        let bytes =
            postcard::to_allocvec(d).map_err(|_| StoreError::Invalid("unencodable decision"))?;
        let s = st(tx, cache, "UPDATE devices SET decision = $2 WHERE id = $1").await?;
        tx.execute(&s, &[&id, &bytes]).await.map_err(db)?;
    }
    if let Some(sleep_s) = e.goodbye_sleep_s {
        let s = st(
            tx,
            cache,
            "UPDATE devices SET
               awake_ms = awake_ms + CASE WHEN awake_open = 1 AND ci_ms IS NOT NULL AND $2 > ci_ms
                                          THEN $2 - ci_ms ELSE 0 END,
               awake_open = 0, next_wake_ms = $2 + $3::BIGINT * 1000, w_sleep = $3
             WHERE id = $1",
        )
        .await?;
        tx.execute(&s, &[&id, &now, &i64::from(sleep_s)])
            .await
            .map_err(db)?;
    }
    rollout_effects_tx(tx, cache, id, e).await?;
    if !e.publishes.is_empty() {
        let lock = st(tx, cache, "SELECT pg_advisory_xact_lock($1)").await?;
        tx.execute(&lock, &[&schema::lock::PUBLISH])
            .await
            .map_err(db)?;
        let s = st(
            tx,
            cache,
            "INSERT INTO publishes (device, counter, topic, data, received_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
        let counter = i64::from(r.counter);
        for (topic, data) in &e.publishes {
            tx.execute(&s, &[&id, &counter, &i64::from(*topic), data, &now])
                .await
                .map_err(db)?;
        }
    }
    Ok(true)
}

/// The frame's rollout effects, as the SQLite store applies them (see its
/// `rollout_effects_tx`): the device row of `devices` is locked by the frame's compare-and-set,
/// so its `rollout_devices` rows change under one transaction at a time; the rollout's
/// threshold counters are one `UPDATE` (row lock), and the pause is checked on them in the
/// same transaction.
async fn rollout_effects_tx<C: GenericClient + Sync>(
    tx: &C,
    cache: &mut HashMap<&'static str, Statement>,
    device: i64,
    e: &Effects,
) -> StoreResult<()> {
    let now = to_i64(e.now_ms)?;
    if e.checkin.is_some() || e.status.is_some() || e.decision.is_some() {
        let s = st(
            tx,
            cache,
            "SELECT rd.rollout, rd.release, r.major, r.minor, r.patch, rd.phase
             FROM rollout_devices rd JOIN releases r ON r.seq = rd.release
             WHERE rd.device = $1 AND rd.phase < 5",
        )
        .await?;
        let rows = tx
            .query(&s, &[&device])
            .await
            .map_err(db)?
            .iter()
            .map(phase_row_of)
            .collect::<StoreResult<Vec<_>>>()?;
        for row in rows {
            let Some(ch) = next_phase(&row, e) else {
                continue;
            };
            let retry = ch.retry_at_ms.map(to_i64).transpose()?;
            let rollout = i64::from(row.rollout.0);
            let s = st(
                tx,
                cache,
                "UPDATE rollout_devices SET phase = $3, retry_at_ms = $4, updated_ms = $5,
                   result = COALESCE($6, result)
                 WHERE rollout = $1 AND device = $2",
            )
            .await?;
            let result = reported_result(e);
            tx.execute(
                &s,
                &[&rollout, &device, &(ch.phase as i64), &retry, &now, &result],
            )
            .await
            .map_err(db)?;
            if matches!(ch.phase, DevicePhase::Succeeded | DevicePhase::Failed) {
                let failed = i64::from(ch.phase == DevicePhase::Failed);
                let s = st(
                    tx,
                    cache,
                    "UPDATE rollouts SET th_finished = th_finished + 1, th_failed = th_failed + $2
                     WHERE id = $1",
                )
                .await?;
                tx.execute(&s, &[&rollout, &failed]).await.map_err(db)?;
                let s = st(
                    tx,
                    cache,
                    "UPDATE rollouts SET state = 2, pause_failed = th_failed, pause_finished = th_finished
                     WHERE id = $1 AND state = 0 AND threshold_bp IS NOT NULL
                       AND th_finished >= GREATEST(min_finished, 1)
                       AND th_failed * 10000 > threshold_bp * th_finished",
                )
                .await?;
                tx.execute(&s, &[&rollout]).await.map_err(db)?;
            }
        }
    }
    if let Some((rollout, release)) = e.offer {
        let s = st(
            tx,
            cache,
            "INSERT INTO rollout_devices (rollout, device, release, phase, offered_ms, updated_ms)
             VALUES ($1, $2, $3, 0, $4, $4)
             ON CONFLICT (rollout, device) DO UPDATE SET phase = 0, retry_at_ms = NULL,
               updated_ms = excluded.updated_ms
             WHERE rollout_devices.phase = 1",
        )
        .await?;
        tx.execute(
            &s,
            &[&i64::from(rollout.0), &device, &i64::from(release.0), &now],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

const ROLLOUT_BY_ID: &str = concat!(
    "SELECT ",
    rollout_cols!(),
    " FROM rollouts ro JOIN releases r ON r.seq = ro.release WHERE ro.id = $1"
);

async fn rollout_tx<C: GenericClient + Sync>(
    c: &C,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    id: RolloutId,
) -> StoreResult<Option<Rollout>> {
    let s = st(c, cache, sql).await?;
    match c.query_opt(&s, &[&i64::from(id.0)]).await.map_err(db)? {
        Some(row) => Ok(Some(rollout_of(&row)?)),
        None => Ok(None),
    }
}

const RELEASE_BY_ID: &str = concat!("SELECT ", release_cols!(), " FROM releases WHERE seq = $1");

async fn release_by_id_tx<C: GenericClient + Sync>(
    c: &C,
    cache: &mut HashMap<&'static str, Statement>,
    id: ReleaseId,
) -> StoreResult<Option<Release>> {
    let s = st(c, cache, RELEASE_BY_ID).await?;
    match c.query_opt(&s, &[&i64::from(id.0)]).await.map_err(db)? {
        Some(row) => Ok(Some(release_of(&row)?)),
        None => Ok(None),
    }
}

impl PgStore {
    async fn tags_of<C: GenericClient + Sync>(
        c: &C,
        cache: &mut HashMap<&'static str, Statement>,
        id: i64,
    ) -> StoreResult<Vec<String>> {
        let s = st(
            c,
            cache,
            "SELECT tag FROM device_tags WHERE device = $1 ORDER BY tag",
        )
        .await?;
        c.query(&s, &[&id])
            .await
            .map_err(db)?
            .iter()
            .map(|r| get(r, 0))
            .collect()
    }

    async fn device_of(conn: &mut Conn, row: &Row) -> StoreResult<Device> {
        let raw: i64 = get(row, 0)?;
        Ok(Device {
            id: DeviceId(narrow(raw, "device id")?),
            product: ProductId(narrow(get::<i64>(row, 1)?, "product id")?),
            tags: Self::tags_of(&conn.client, &mut conn.stmts, raw).await?,
            created_ms: to_u64(get(row, 2)?, "created")?,
        })
    }

    async fn sealed_of(&self, id: DeviceId) -> StoreResult<Option<Vec<u8>>> {
        let mut lease = self.pool.get().await?;
        let c = lease.conn();
        let s = st(
            &c.client,
            &mut c.stmts,
            "SELECT sealed_root FROM devices WHERE id = $1",
        )
        .await?;
        match c
            .client
            .query_opt(&s, &[&i64::from(id.0)])
            .await
            .map_err(db)?
        {
            Some(r) => Ok(Some(get(&r, 0)?)),
            None => Ok(None),
        }
    }
}

impl Store for PgStore {
    async fn add_product(&self, p: NewProduct) -> StoreResult<ProductId> {
        if p.name.is_empty() {
            return Err(StoreError::Invalid("empty product name"));
        }
        if !p.release_keys.iter().all(|k| is_spki_pem(k)) {
            return Err(StoreError::Invalid("release key is not an SPKI PEM"));
        }
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let tx = client.transaction().await.map_err(db)?;
        let s = st(
            &tx,
            stmts,
            "INSERT INTO products (name, hardware_id) VALUES ($1, $2) RETURNING id",
        )
        .await?;
        let row = tx
            .query_one(&s, &[&p.name, &&p.hardware_id[..]])
            .await
            .map_err(|e| {
                if is_unique(&e) {
                    StoreError::AlreadyExists
                } else {
                    db(e)
                }
            })?;
        let id: i64 = get(&row, 0)?;
        let s = st(
            &tx,
            stmts,
            "INSERT INTO release_keys (product, seq, spki_pem) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .await?;
        for (seq, pem) in p.release_keys.iter().enumerate() {
            tx.execute(&s, &[&id, &(seq as i64), pem])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(ProductId(narrow(id, "product id")?))
    }

    async fn product(&self, id: ProductId) -> StoreResult<Option<Product>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let pid = i64::from(id.0);
        let s = st(
            client,
            stmts,
            "SELECT name, hardware_id FROM products WHERE id = $1",
        )
        .await?;
        let Some(row) = client.query_opt(&s, &[&pid]).await.map_err(db)? else {
            return Ok(None);
        };
        let name: String = get(&row, 0)?;
        let hw: Vec<u8> = get(&row, 1)?;
        let s = st(
            client,
            stmts,
            "SELECT spki_pem FROM release_keys WHERE product = $1 ORDER BY seq, spki_pem",
        )
        .await?;
        let keys = client
            .query(&s, &[&pid])
            .await
            .map_err(db)?
            .iter()
            .map(|r| get(r, 0))
            .collect::<StoreResult<Vec<String>>>()?;
        Ok(Some(Product {
            id,
            name,
            hardware_id: hw
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("hardware id"))?,
            release_keys: keys,
        }))
    }

    async fn products(&self) -> StoreResult<Vec<Product>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            "SELECT id, name, hardware_id FROM products ORDER BY id",
        )
        .await?;
        let mut out = client
            .query(&s, &[])
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                let hw: Vec<u8> = get(r, 2)?;
                Ok(Product {
                    id: ProductId(narrow(get::<i64>(r, 0)?, "product id")?),
                    name: get(r, 1)?,
                    hardware_id: hw
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupt("hardware id"))?,
                    release_keys: Vec::new(),
                })
            })
            .collect::<StoreResult<Vec<Product>>>()?;
        // Every key in one pass, in each product's order (as `product` reads them).
        let s = st(
            client,
            stmts,
            "SELECT product, spki_pem FROM release_keys ORDER BY product, seq, spki_pem",
        )
        .await?;
        for r in client.query(&s, &[]).await.map_err(db)? {
            let product: u32 = narrow(get::<i64>(&r, 0)?, "product id")?;
            let at = out
                .binary_search_by_key(&product, |p| p.id.0)
                .map_err(|_| corrupt("release key of no product"))?;
            out[at].release_keys.push(get(&r, 1)?);
        }
        Ok(out)
    }

    async fn add_release_key(&self, product: ProductId, spki_pem: String) -> StoreResult<()> {
        if !is_spki_pem(&spki_pem) {
            return Err(StoreError::Invalid("release key is not an SPKI PEM"));
        }
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let pid = i64::from(product.0);
        let tx = client.transaction().await.map_err(db)?;
        if !exists(&tx, stmts, PRODUCT_EXISTS, pid).await? {
            return Err(StoreError::UnknownProduct(product));
        }
        let s = st(
            &tx,
            stmts,
            "INSERT INTO release_keys (product, seq, spki_pem)
             VALUES ($1, (SELECT COALESCE(MAX(seq), -1) + 1 FROM release_keys WHERE product = $1), $2)
             ON CONFLICT DO NOTHING",
        )
        .await?;
        tx.execute(&s, &[&pid, &spki_pem]).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn remove_release_key(&self, product: ProductId, spki_pem: String) -> StoreResult<bool> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let pid = i64::from(product.0);
        let tx = client.transaction().await.map_err(db)?;
        if !exists(&tx, stmts, PRODUCT_EXISTS, pid).await? {
            return Err(StoreError::UnknownProduct(product));
        }
        let s = st(
            &tx,
            stmts,
            "DELETE FROM release_keys WHERE product = $1 AND spki_pem = $2",
        )
        .await?;
        let n = tx.execute(&s, &[&pid, &spki_pem]).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n > 0)
    }

    async fn add_device(&self, d: NewDevice, now_ms: u64) -> StoreResult<DeviceId> {
        let now = to_i64(now_ms)?;
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let tx = client.transaction().await.map_err(db)?;
        if !exists(&tx, stmts, PRODUCT_EXISTS, i64::from(d.product.0)).await? {
            return Err(StoreError::UnknownProduct(d.product));
        }
        let id = match d.id {
            Some(id) => id,
            None => {
                // Serialize id choices (held to the commit), so two instances never pick the
                // same one; READ COMMITTED: the MAX below sees every earlier choice committed.
                let lock = st(&tx, stmts, "SELECT pg_advisory_xact_lock($1)").await?;
                tx.execute(&lock, &[&schema::lock::DEVICE_ID])
                    .await
                    .map_err(db)?;
                let s = st(&tx, stmts, "SELECT MAX(id) FROM devices").await?;
                let max: Option<i64> = get(&tx.query_one(&s, &[]).await.map_err(db)?, 0)?;
                let next = max.map_or(Some(1), |m| m.checked_add(1));
                DeviceId(
                    next.and_then(|n| u32::try_from(n).ok())
                        .ok_or(StoreError::Invalid("no device id left"))?,
                )
            }
        };
        let sealed = self.master.seal(id, &d.root_key)?;
        let s = st(
            &tx,
            stmts,
            "INSERT INTO devices (id, product, sealed_root, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .await?;
        tx.execute(
            &s,
            &[&i64::from(id.0), &i64::from(d.product.0), &sealed, &now],
        )
        .await
        .map_err(|e| {
            if is_unique(&e) {
                StoreError::AlreadyExists
            } else {
                db(e)
            }
        })?;
        let s = st(
            &tx,
            stmts,
            "INSERT INTO device_tags (device, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .await?;
        for tag in &d.tags {
            tx.execute(&s, &[&i64::from(id.0), tag]).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn device(&self, id: DeviceId) -> StoreResult<Option<Device>> {
        let mut lease = self.pool.get().await?;
        let conn = lease.conn();
        let s = st(
            &conn.client,
            &mut conn.stmts,
            "SELECT id, product, created_ms FROM devices WHERE id = $1",
        )
        .await?;
        let row = conn
            .client
            .query_opt(&s, &[&i64::from(id.0)])
            .await
            .map_err(db)?;
        match row {
            Some(row) => Ok(Some(Self::device_of(conn, &row).await?)),
            None => Ok(None),
        }
    }

    async fn devices(&self) -> StoreResult<Vec<Device>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        // One snapshot for the devices and their tags.
        let tx = snapshot(client).await?;
        let s = st(
            &tx,
            stmts,
            "SELECT id, product, created_ms FROM devices ORDER BY id",
        )
        .await?;
        let rows = tx.query(&s, &[]).await.map_err(db)?;
        let s = st(
            &tx,
            stmts,
            "SELECT device, tag FROM device_tags ORDER BY device, tag",
        )
        .await?;
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        for r in tx.query(&s, &[]).await.map_err(db)? {
            tags.entry(get(&r, 0)?).or_default().push(get(&r, 1)?);
        }
        tx.commit().await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let raw: i64 = get(row, 0)?;
                Ok(Device {
                    id: DeviceId(narrow(raw, "device id")?),
                    product: ProductId(narrow(get::<i64>(row, 1)?, "product id")?),
                    tags: tags.remove(&raw).unwrap_or_default(),
                    created_ms: to_u64(get(row, 2)?, "created")?,
                })
            })
            .collect()
    }

    async fn keys(&self, id: DeviceId) -> StoreResult<Option<Keys>> {
        match self.sealed_of(id).await? {
            Some(blob) => {
                let root = self.master.open(id, &blob)?;
                Ok(Some(Keys::derive(root.expose())))
            }
            None => Ok(None),
        }
    }

    async fn root_key(&self, id: DeviceId) -> StoreResult<Option<RootKey>> {
        match self.sealed_of(id).await? {
            Some(blob) => Ok(Some(self.master.open(id, &blob)?)),
            None => Ok(None),
        }
    }

    async fn last_frame(&self, id: DeviceId) -> StoreResult<Option<LastFrame>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            "SELECT lf_counter, lf_tag, lf_at, lf_source, lf_answers FROM devices WHERE id = $1",
        )
        .await?;
        match client
            .query_opt(&s, &[&i64::from(id.0)])
            .await
            .map_err(db)?
        {
            Some(row) => last_frame_of(&row),
            None => Ok(None),
        }
    }

    async fn commit_frame(&self, c: FrameCommit) -> StoreResult<bool> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let tx = client.transaction().await.map_err(db)?;
        let won = commit_frame_tx(&tx, stmts, &c).await?;
        if won {
            // Acknowledged only once COMMIT returned (synchronous_commit = on: flushed).
            tx.commit().await.map_err(db)?;
        } else {
            tx.rollback().await.map_err(db)?;
        }
        Ok(won)
    }

    async fn publishes_since(
        &self,
        after: PublishId,
        limit: usize,
    ) -> StoreResult<Vec<StoredPublish>> {
        let after = to_i64(after.0)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            "SELECT id, device, counter, topic, data, received_ms FROM publishes
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .await?;
        client
            .query(&s, &[&after, &limit])
            .await
            .map_err(db)?
            .iter()
            .map(publish_of)
            .collect()
    }

    async fn device_publishes(
        &self,
        device: DeviceId,
        after: PublishId,
        limit: usize,
    ) -> StoreResult<Vec<StoredPublish>> {
        let after = to_i64(after.0)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let dev = i64::from(device.0);
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        // A range of the index publishes_device (device, id), migration 2.
        let s = st(
            client,
            stmts,
            "SELECT id, device, counter, topic, data, received_ms FROM publishes
             WHERE device = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .await?;
        client
            .query(&s, &[&dev, &after, &limit])
            .await
            .map_err(db)?
            .iter()
            .map(publish_of)
            .collect()
    }

    async fn device_publishes_newest(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> StoreResult<Vec<StoredPublish>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let dev = i64::from(device.0);
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        // The index publishes_device (device, id), read backwards.
        let s = st(
            client,
            stmts,
            "SELECT id, device, counter, topic, data, received_ms FROM publishes
             WHERE device = $1 ORDER BY id DESC LIMIT $2",
        )
        .await?;
        client
            .query(&s, &[&dev, &limit])
            .await
            .map_err(db)?
            .iter()
            .map(publish_of)
            .collect()
    }

    async fn status(&self, id: DeviceId) -> StoreResult<Option<DeviceStatus>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            concat!("SELECT ", status_cols!(), " FROM devices WHERE id = $1"),
        )
        .await?;
        match client
            .query_opt(&s, &[&i64::from(id.0)])
            .await
            .map_err(db)?
        {
            Some(row) => Ok(Some(status_of(&row)?)),
            None => Ok(None),
        }
    }

    async fn put_release(&self, r: Release) -> StoreResult<ReleaseId> {
        let (body, path) = release_body_columns(&r)?;
        let size = to_i64(r.size)?;
        let created = to_i64(r.created_ms)?;
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let tx = client.transaction().await.map_err(db)?;
        if !exists(&tx, stmts, PRODUCT_EXISTS, i64::from(r.product.0)).await? {
            return Err(StoreError::UnknownProduct(r.product));
        }
        let s = st(
            &tx,
            stmts,
            concat!(
                "INSERT INTO releases (",
                release_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq"
            ),
        )
        .await?;
        let p: [&(dyn ToSql + Sync); 11] = [
            &&r.digest.0[..],
            &i64::from(r.product.0),
            &i64::from(r.version.major),
            &i64::from(r.version.minor),
            &i64::from(r.version.patch),
            &i64::from(r.security_counter),
            &&r.hardware_id[..],
            &size,
            &body,
            &path,
            &created,
        ];
        let row = tx.query_one(&s, &p).await.map_err(|e| {
            if is_unique(&e) {
                StoreError::AlreadyExists
            } else {
                db(e)
            }
        })?;
        let id: i64 = get(&row, 0)?;
        let id = u32::try_from(id).map_err(|_| StoreError::Invalid("no release id left"))?;
        tx.commit().await.map_err(db)?;
        Ok(ReleaseId(id))
    }

    async fn release(&self, digest: ReleaseDigest) -> StoreResult<Option<Release>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            concat!(
                "SELECT ",
                release_cols!(),
                " FROM releases WHERE digest = $1"
            ),
        )
        .await?;
        match client.query_opt(&s, &[&&digest.0[..]]).await.map_err(db)? {
            Some(row) => Ok(Some(release_of(&row)?)),
            None => Ok(None),
        }
    }

    async fn releases(&self, product: ProductId) -> StoreResult<Vec<(ReleaseId, Release)>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            concat!(
                "SELECT ",
                release_cols!(),
                ", seq FROM releases WHERE product = $1 ORDER BY seq"
            ),
        )
        .await?;
        client
            .query(&s, &[&i64::from(product.0)])
            .await
            .map_err(db)?
            .iter()
            .map(|row| {
                let id = narrow(get::<i64>(row, 11)?, "release id")?;
                Ok((ReleaseId(id), release_of(row)?))
            })
            .collect()
    }

    async fn release_by_id(&self, id: ReleaseId) -> StoreResult<Option<Release>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        release_by_id_tx(client, stmts, id).await
    }

    async fn release_id(&self, digest: ReleaseDigest) -> StoreResult<Option<ReleaseId>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(client, stmts, "SELECT seq FROM releases WHERE digest = $1").await?;
        match client.query_opt(&s, &[&&digest.0[..]]).await.map_err(db)? {
            Some(row) => Ok(Some(ReleaseId(narrow(get::<i64>(&row, 0)?, "release id")?))),
            None => Ok(None),
        }
    }

    async fn add_rollout(&self, r: NewRollout) -> StoreResult<RolloutId> {
        check_new(&r)?;
        let seed = i64::from(rr::new_seed()?);
        let created = to_i64(r.created_ms)?;
        let defer = r.defer_until_ms.map(to_i64).transpose()?;
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let tx = client.transaction().await.map_err(db)?;
        let release = release_by_id_tx(&tx, stmts, r.release)
            .await?
            .ok_or(StoreError::UnknownRelease(r.release))?;
        if let Target::Device(d) = &r.target {
            let s = st(&tx, stmts, "SELECT product FROM devices WHERE id = $1").await?;
            match tx.query_opt(&s, &[&i64::from(d.0)]).await.map_err(db)? {
                None => return Err(StoreError::UnknownDevice(*d)),
                Some(row) if get::<i64>(&row, 0)? != i64::from(release.product.0) => {
                    return Err(StoreError::Invalid(
                        "the device is not of the release's product",
                    ))
                }
                Some(_) => {}
            }
        }
        let (kind, dev, tag) = target_columns(&r.target);
        let th = r.error_threshold;
        let s = st(
            &tx,
            stmts,
            "INSERT INTO rollouts (release, product, target_kind, target_device, target_tag,
               share_bp, seed, threshold_bp, min_finished, defer_until_ms, state, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11) RETURNING id",
        )
        .await?;
        let p: [&(dyn ToSql + Sync); 11] = [
            &i64::from(r.release.0),
            &i64::from(release.product.0),
            &kind,
            &dev,
            &tag,
            &i64::from(r.share.bp()),
            &seed,
            &th.map(|t| i64::from(t.max_failed.bp())),
            &th.map(|t| i64::from(t.min_finished)),
            &defer,
            &created,
        ];
        let row = tx.query_one(&s, &p).await.map_err(db)?;
        let id = RolloutId(narrow(get::<i64>(&row, 0)?, "rollout id")?);
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn rollout(&self, id: RolloutId) -> StoreResult<Option<Rollout>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        rollout_tx(client, stmts, ROLLOUT_BY_ID, id).await
    }

    async fn rollouts(&self, product: Option<ProductId>) -> StoreResult<Vec<Rollout>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            concat!(
                "SELECT ",
                rollout_cols!(),
                " FROM rollouts ro JOIN releases r ON r.seq = ro.release
                 WHERE $1::BIGINT IS NULL OR ro.product = $1 ORDER BY ro.id"
            ),
        )
        .await?;
        client
            .query(&s, &[&product.map(|p| i64::from(p.0))])
            .await
            .map_err(db)?
            .iter()
            .map(rollout_of)
            .collect()
    }

    async fn update_rollout(&self, id: RolloutId, change: RolloutChange) -> StoreResult<Rollout> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let tx = client.transaction().await.map_err(db)?;
        // The row locked: a concurrent change or threshold pause waits, then sees this one.
        let now = rollout_tx(
            &tx,
            stmts,
            concat!(
                "SELECT ",
                rollout_cols!(),
                " FROM rollouts ro JOIN releases r ON r.seq = ro.release WHERE ro.id = $1
                 FOR UPDATE OF ro"
            ),
            id,
        )
        .await?
        .ok_or(StoreError::UnknownRollout(id))?;
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
        let s = st(
            &tx,
            stmts,
            "UPDATE rollouts SET state = $2, share_bp = $3,
               pause_failed = CASE WHEN $2::BIGINT = 2 THEN pause_failed ELSE NULL END,
               pause_finished = CASE WHEN $2::BIGINT = 2 THEN pause_finished ELSE NULL END,
               th_failed = CASE WHEN $4::BOOLEAN THEN 0 ELSE th_failed END,
               th_finished = CASE WHEN $4::BOOLEAN THEN 0 ELSE th_finished END
             WHERE id = $1",
        )
        .await?;
        tx.execute(
            &s,
            &[
                &i64::from(id.0),
                &state_code(next),
                &i64::from(share.bp()),
                &resumed,
            ],
        )
        .await
        .map_err(db)?;
        let out = rollout_tx(&tx, stmts, ROLLOUT_BY_ID, id)
            .await?
            .ok_or(StoreError::UnknownRollout(id))?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn rollout_progress(
        &self,
        id: RolloutId,
        now_ms: u64,
    ) -> StoreResult<Option<RolloutProgress>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        // One snapshot for the rollout and both counts.
        let tx = snapshot(client).await?;
        let Some(r) = rollout_tx(&tx, stmts, ROLLOUT_BY_ID, id).await? else {
            return Ok(None);
        };
        let (kind, dev, tag) = target_columns(&r.target);
        // The bucket of `rollout::bucket`, in SQL (integers below 2^63 on every step).
        let s = st(
            &tx,
            stmts,
            "SELECT COUNT(*) FROM devices d
             WHERE d.product = $1
               AND ($2::BIGINT = 0 OR ($2::BIGINT = 1 AND d.id = $3)
                    OR ($2::BIGINT = 2 AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device = d.id AND t.tag = $4)))
               AND (((d.id * 48271 + $5) % 2147483647) * ((d.id * 48271 + $5) % 2147483647)
                    % 2147483647) % 10000 < $6",
        )
        .await?;
        let p: [&(dyn ToSql + Sync); 6] = [
            &i64::from(r.product.0),
            &kind,
            &dev,
            &tag,
            &i64::from(r.seed),
            &i64::from(r.share.bp()),
        ];
        let targeted: i64 = get(&tx.query_one(&s, &p).await.map_err(db)?, 0)?;
        let mut prog = RolloutProgress {
            targeted: to_u64(targeted, "count")?,
            ..RolloutProgress::default()
        };
        let s = st(
            &tx,
            stmts,
            "SELECT phase, COUNT(*) FROM rollout_devices WHERE rollout = $1 GROUP BY phase",
        )
        .await?;
        for row in tx.query(&s, &[&i64::from(id.0)]).await.map_err(db)? {
            prog.add(
                rr::phase_of(get(&row, 0)?)?,
                to_u64(get(&row, 1)?, "count")?,
            );
        }
        tx.commit().await.map_err(db)?;
        rr::finish_progress(&mut prog, &r, now_ms);
        Ok(Some(prog))
    }

    async fn offer_candidates(&self, device: DeviceId) -> StoreResult<Vec<OfferCandidate>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            "SELECT ro.id, ro.release, r.major, r.minor, r.patch, ro.state, ro.pause_failed,
               ro.pause_finished, ro.share_bp, ro.seed, ro.defer_until_ms, rd.phase,
               rd.retry_at_ms,
               CAST(CASE WHEN EXISTS (SELECT 1 FROM rollout_devices x
                       WHERE x.device = d.id AND x.release = ro.release AND x.phase IN (6, 7))
                    THEN 1 ELSE 0 END AS BIGINT)
             FROM devices d
             JOIN rollouts ro ON ro.product = d.product AND ro.state < 3
             JOIN releases r ON r.seq = ro.release
             LEFT JOIN rollout_devices rd ON rd.rollout = ro.id AND rd.device = d.id
             WHERE d.id = $1
               AND (ro.target_kind = 0
                    OR (ro.target_kind = 1 AND ro.target_device = d.id)
                    OR (ro.target_kind = 2 AND EXISTS (
                          SELECT 1 FROM device_tags t WHERE t.device = d.id AND t.tag = ro.target_tag)))
             ORDER BY ro.id",
        )
        .await?;
        client
            .query(&s, &[&i64::from(device.0)])
            .await
            .map_err(db)?
            .iter()
            .map(candidate_of)
            .collect()
    }

    async fn serves_release(&self, device: DeviceId, release: ReleaseId) -> StoreResult<bool> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            "SELECT 1 FROM rollout_devices rd JOIN rollouts ro ON ro.id = rd.rollout
             WHERE rd.device = $1 AND rd.release = $2 AND ro.state < 3 LIMIT 1",
        )
        .await?;
        Ok(client
            .query_opt(&s, &[&i64::from(device.0), &i64::from(release.0)])
            .await
            .map_err(db)?
            .is_some())
    }

    async fn fleet(&self) -> StoreResult<Vec<FleetRow>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        // One snapshot for the devices and their tags.
        let tx = snapshot(client).await?;
        let s = st(
            &tx,
            stmts,
            "SELECT device, tag FROM device_tags ORDER BY device, tag",
        )
        .await?;
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        for r in tx.query(&s, &[]).await.map_err(db)? {
            tags.entry(get(&r, 0)?).or_default().push(get(&r, 1)?);
        }
        let s = st(
            &tx,
            stmts,
            concat!(
                "SELECT d.id, d.product, d.created_ms,
                   (SELECT rd.phase FROM rollout_devices rd WHERE rd.device = d.id
                     ORDER BY rd.updated_ms DESC, rd.rollout DESC LIMIT 1), ",
                status_cols!(),
                " FROM devices d ORDER BY d.id"
            ),
        )
        .await?;
        let rows = tx.query(&s, &[]).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let raw: i64 = get(row, 0)?;
                let phase: Option<i64> = get(row, 3)?;
                Ok(FleetRow {
                    device: Device {
                        id: DeviceId(narrow(raw, "device id")?),
                        product: ProductId(narrow(get::<i64>(row, 1)?, "product id")?),
                        tags: tags.remove(&raw).unwrap_or_default(),
                        created_ms: to_u64(get(row, 2)?, "created")?,
                    },
                    status: status_of(&Offset(row, 4))?,
                    phase: phase.map(rr::phase_of).transpose()?,
                })
            })
            .collect()
    }

    async fn wakes(&self, device: DeviceId, limit: usize) -> StoreResult<Vec<Wake>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let dev = i64::from(device.0);
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        // The current wake and the finished ones in one statement (one snapshot).
        let s = st(
            client,
            stmts,
            concat!(
                "(SELECT ",
                current_wake_cols!(),
                " FROM devices WHERE id = $1 AND ci_ms IS NOT NULL)
                 UNION ALL
                 (SELECT ",
                wake_cols!(),
                " FROM device_wakes WHERE device = $1 ORDER BY seq DESC LIMIT $2)
                 ORDER BY 1 DESC"
            ),
        )
        .await?;
        client
            .query(&s, &[&dev, &(limit - 1)])
            .await
            .map_err(db)?
            .iter()
            .map(wake_of)
            .collect()
    }

    async fn device_updates(&self, device: DeviceId) -> StoreResult<Vec<DeviceUpdate>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            concat!(
                "SELECT ",
                device_update_cols!(),
                " FROM rollout_devices rd JOIN releases r ON r.seq = rd.release
                 WHERE rd.device = $1 ORDER BY rd.offered_ms DESC, rd.rollout DESC"
            ),
        )
        .await?;
        client
            .query(&s, &[&i64::from(device.0)])
            .await
            .map_err(db)?
            .iter()
            .map(device_update_of)
            .collect()
    }

    async fn rollout_adoption(&self, id: RolloutId) -> StoreResult<Vec<u64>> {
        let mut lease = self.pool.get().await?;
        let Conn { client, stmts } = lease.conn();
        let s = st(
            client,
            stmts,
            "SELECT updated_ms FROM rollout_devices WHERE rollout = $1 AND phase = $2
             ORDER BY updated_ms",
        )
        .await?;
        client
            .query(&s, &[&i64::from(id.0), &(DevicePhase::Succeeded as i64)])
            .await
            .map_err(db)?
            .iter()
            .map(|r| to_u64(get(r, 0)?, "adoption time"))
            .collect()
    }
}

impl SqlRow for Row {
    fn int(&self, i: usize) -> StoreResult<Option<i64>> {
        self.try_get(i).map_err(db)
    }
    fn blob(&self, i: usize) -> StoreResult<Option<Vec<u8>>> {
        self.try_get(i).map_err(db)
    }
    fn text(&self, i: usize) -> StoreResult<Option<String>> {
        self.try_get(i).map_err(db)
    }
}
