//! The SQLite schema, as a list of migrations. `PRAGMA user_version` holds how many are
//! applied; opening a database applies the missing ones, each in its own transaction with the
//! version bump, so a crash mid-migration leaves the previous version intact.

use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only: never edit one
/// that has shipped.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: products, their release keys, devices with their replay record and reported status.
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
     CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        hardware_id BLOB NOT NULL CHECK (length(hardware_id) = 16));
     CREATE TABLE release_keys (
        product INTEGER NOT NULL REFERENCES products(id),
        seq INTEGER NOT NULL,
        spki_pem TEXT NOT NULL,
        PRIMARY KEY (product, spki_pem));
     CREATE TABLE devices (
        id INTEGER PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
        product INTEGER NOT NULL REFERENCES products(id),
        sealed_root BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        lf_counter INTEGER, lf_tag BLOB, lf_at INTEGER, lf_source TEXT, lf_answers INTEGER,
        last_seen_ms INTEGER,
        ci_ms INTEGER, ci_major INTEGER, ci_minor INTEGER, ci_patch INTEGER, ci_trial INTEGER,
        ci_state INTEGER, ci_result INTEGER, ci_dl_update INTEGER, ci_dl_bytes INTEGER,
        ci_battery INTEGER, ci_forced INTEGER,
        st_update INTEGER, st_state INTEGER, st_result INTEGER,
        decision BLOB,
        state INTEGER NOT NULL DEFAULT 0, result INTEGER NOT NULL DEFAULT 0,
        wakes INTEGER NOT NULL DEFAULT 0, forced_sleeps INTEGER NOT NULL DEFAULT 0,
        bytes_up INTEGER NOT NULL DEFAULT 0, bytes_down INTEGER NOT NULL DEFAULT 0,
        awake_ms INTEGER NOT NULL DEFAULT 0, awake_open INTEGER NOT NULL DEFAULT 0,
        next_wake_ms INTEGER,
        publishes INTEGER NOT NULL DEFAULT 0);
     CREATE TABLE device_tags (
        device INTEGER NOT NULL REFERENCES devices(id),
        tag TEXT NOT NULL,
        PRIMARY KEY (device, tag));
     CREATE INDEX device_tags_tag ON device_tags(tag);",
    // 2: publishes and releases.
    "CREATE TABLE publishes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device INTEGER NOT NULL REFERENCES devices(id),
        counter INTEGER NOT NULL,
        topic INTEGER NOT NULL,
        data BLOB NOT NULL,
        received_ms INTEGER NOT NULL);
     CREATE INDEX publishes_device ON publishes(device, id);
     CREATE TABLE releases (
        digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
        product INTEGER NOT NULL REFERENCES products(id),
        major INTEGER NOT NULL, minor INTEGER NOT NULL, patch INTEGER NOT NULL,
        security_counter INTEGER NOT NULL,
        hardware_id BLOB NOT NULL,
        size INTEGER NOT NULL,
        body BLOB,
        path TEXT,
        created_ms INTEGER NOT NULL,
        CHECK ((body IS NULL) <> (path IS NULL)));
     CREATE INDEX releases_product ON releases(product, created_ms);",
    // 3: stable release ids (the UpdateId devices see; existing releases keep their rowid,
    // new ones get MAX + 1: releases are never deleted), rollouts, and each offered device's
    // phase in each rollout.
    "ALTER TABLE releases ADD COLUMN id INTEGER;
     UPDATE releases SET id = rowid;
     CREATE UNIQUE INDEX releases_id ON releases(id);
     CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release INTEGER NOT NULL REFERENCES releases(id),
        product INTEGER NOT NULL REFERENCES products(id),
        target_kind INTEGER NOT NULL CHECK (target_kind IN (0, 1, 2)),
        target_device INTEGER,
        target_tag TEXT,
        share_bp INTEGER NOT NULL CHECK (share_bp BETWEEN 0 AND 10000),
        seed INTEGER NOT NULL CHECK (seed BETWEEN 0 AND 2147483646),
        threshold_bp INTEGER,
        min_finished INTEGER,
        defer_until_ms INTEGER,
        state INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2, 3)),
        pause_failed INTEGER,
        pause_finished INTEGER,
        th_failed INTEGER NOT NULL DEFAULT 0,
        th_finished INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL);
     CREATE INDEX rollouts_product_state ON rollouts(product, state);
     CREATE TABLE rollout_devices (
        rollout INTEGER NOT NULL REFERENCES rollouts(id),
        device INTEGER NOT NULL REFERENCES devices(id),
        release INTEGER NOT NULL,
        phase INTEGER NOT NULL CHECK (phase BETWEEN 0 AND 7),
        retry_at_ms INTEGER,
        offered_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (rollout, device));
     CREATE INDEX rollout_devices_device ON rollout_devices(device, release);
     CREATE INDEX devices_product ON devices(product);",
    // 4: wakes (the console's timeline): the current wake's counters in the device row, the
    // finished ones in device_wakes (the last store::WAKES_KEPT per device); the LwM2M result
    // a device reported when its rollout phase last moved.
    "ALTER TABLE devices ADD COLUMN w_last INTEGER;
     ALTER TABLE devices ADD COLUMN w_frames INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN w_up INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN w_down INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN w_pubs INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN w_offer INTEGER;
     ALTER TABLE devices ADD COLUMN w_sleep INTEGER;
     CREATE TABLE device_wakes (
        device INTEGER NOT NULL REFERENCES devices(id),
        seq INTEGER NOT NULL,
        started_ms INTEGER NOT NULL, last_ms INTEGER,
        frames INTEGER NOT NULL, bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL,
        publishes INTEGER NOT NULL,
        major INTEGER NOT NULL, minor INTEGER NOT NULL, patch INTEGER NOT NULL,
        trial INTEGER NOT NULL, ci_state INTEGER NOT NULL, ci_result INTEGER NOT NULL,
        dl_update INTEGER, dl_bytes INTEGER, battery INTEGER NOT NULL, forced INTEGER NOT NULL,
        state INTEGER NOT NULL, result INTEGER NOT NULL,
        offer INTEGER, sleep_s INTEGER,
        PRIMARY KEY (device, seq));
     ALTER TABLE rollout_devices ADD COLUMN result INTEGER;",
];

/// The schema version this build writes.
pub(crate) const VERSION: u32 = MIGRATIONS.len() as u32;

/// The database's schema version.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies migrations until the schema is at `target` (at most [`VERSION`]). Returns the
/// version found before. A database newer than `target` is left alone (the caller refuses it).
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> rusqlite::Result<u32> {
    let found = version(conn)?;
    for v in found..target.min(VERSION) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated meanwhile: re-read under the write lock.
        if version(&tx)? == v {
            tx.execute_batch(MIGRATIONS[v as usize])?;
            tx.pragma_update(None, "user_version", v + 1)?;
        }
        tx.commit()?;
    }
    Ok(found)
}
