//! The store conformance suite against `SqliteStore`: one check per test, each on its own
//! database file, plus the whole suite on one shared file.

use std::path::PathBuf;

use ota_cloud::store::conformance::{self, Harness};
use ota_cloud::{MasterKey, SqliteOptions, SqliteStore};

struct Sqlite {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key: PathBuf,
}

impl Sqlite {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master.key");
        MasterKey::create(&key).unwrap();
        Self {
            db: dir.path().join("ota.db"),
            key,
            _dir: dir,
        }
    }
}

impl Harness for Sqlite {
    type S = SqliteStore;

    async fn open(&self) -> SqliteStore {
        let master = MasterKey::load(&self.key).unwrap();
        SqliteStore::open(&self.db, master, SqliteOptions::default()).unwrap()
    }

    async fn close(&self, store: SqliteStore) {
        store.close().await;
    }
}

macro_rules! check {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            conformance::$name(&Sqlite::new()).await;
        }
    )*};
}

check!(
    products_and_release_keys,
    products_listed,
    devices_and_sealed_keys,
    unknown_device,
    frame_flow_and_status,
    cas_race,
    lost_cas_applies_nothing,
    one_failure_does_not_fail_the_others,
    publishes_survive_reopen,
    device_publishes_paged,
    release_by_digest,
    release_ids_are_stable,
    rollout_lifecycle,
    offer_candidates_by_target,
    rollout_phases_and_progress,
    error_threshold_pauses_in_the_frame_transaction,
    wakes_recorded_and_bounded,
    fleet_and_update_history,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_database() {
    let h = Sqlite::new();
    conformance::run(&h).await;
    // And again on the same, now non-empty, database.
    conformance::run(&h).await;
}

/// Without group commit (one commit per transaction) the contract is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_race_without_group_commit() {
    struct One(Sqlite);
    impl Harness for One {
        type S = SqliteStore;
        async fn open(&self) -> SqliteStore {
            let master = MasterKey::load(&self.0.key).unwrap();
            let opts = SqliteOptions {
                max_batch: 1,
                ..SqliteOptions::default()
            };
            SqliteStore::open(&self.0.db, master, opts).unwrap()
        }
        async fn close(&self, store: SqliteStore) {
            store.close().await;
        }
    }
    let h = One(Sqlite::new());
    conformance::cas_race(&h).await;
    conformance::lost_cas_applies_nothing(&h).await;
}
