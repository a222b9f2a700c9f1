//! Root keys at rest: a copied database alone does not give them away.

use cloud_proto::DeviceId;
use ota_cloud::{
    MasterKey, NewDevice, NewProduct, OpenError, RootKey, SealError, SqliteOptions, SqliteStore,
    Store, StoreError,
};

async fn provision(dir: &std::path::Path, keys: &[[u8; 32]]) -> Vec<DeviceId> {
    let master = MasterKey::create(&dir.join("master.key")).unwrap();
    let s = SqliteStore::open(&dir.join("ota.db"), master, SqliteOptions::default()).unwrap();
    let p = s
        .add_product(NewProduct {
            name: "p".into(),
            hardware_id: [0; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for k in keys {
        let d = NewDevice {
            id: None,
            product: p,
            tags: vec![],
            root_key: RootKey::from_bytes(*k),
        };
        assert!(
            !format!("{d:?}").contains("171"),
            "NewDevice's Debug redacts the key"
        );
        ids.push(s.add_device(d, 0).await.unwrap());
    }
    s.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_database_does_not_reveal_root_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = [0xAB; 32];
    let ids = provision(dir.path(), &[key]).await;
    // The key's bytes are nowhere in the database files.
    for f in ["ota.db", "ota.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
            assert!(!bytes.windows(32).any(|w| w == key), "{f} holds the key");
        }
    }
    // The copy, opened with any other master key, is refused, and a sealed blob does not open.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("ota.db"), copy.path().join("ota.db")).unwrap();
    let _ = std::fs::copy(
        dir.path().join("ota.db-wal"),
        copy.path().join("ota.db-wal"),
    );
    let other = MasterKey::generate().unwrap();
    let err = SqliteStore::open(&copy.path().join("ota.db"), other, SqliteOptions::default())
        .unwrap_err();
    assert_eq!(err, OpenError::WrongMasterKey);
    let conn = rusqlite::Connection::open(copy.path().join("ota.db")).unwrap();
    let sealed: Vec<u8> = conn
        .query_row(
            "SELECT sealed_root FROM devices WHERE id = ?1",
            [ids[0].0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        MasterKey::generate()
            .unwrap()
            .open(ids[0], &sealed)
            .unwrap_err(),
        SealError::Open
    );
    // With the right master key, it opens.
    let right = MasterKey::load(&dir.path().join("master.key")).unwrap();
    assert!(right
        .open(ids[0], &sealed)
        .unwrap()
        .ct_eq(&RootKey::from_bytes(key)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_sealed_blobs_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let ids = provision(dir.path(), &[[1; 32], [2; 32]]).await;
    {
        let conn = rusqlite::Connection::open(dir.path().join("ota.db")).unwrap();
        let blob = |id: DeviceId| -> Vec<u8> {
            conn.query_row(
                "SELECT sealed_root FROM devices WHERE id = ?1",
                [id.0],
                |r| r.get(0),
            )
            .unwrap()
        };
        let (a, b) = (blob(ids[0]), blob(ids[1]));
        let set = "UPDATE devices SET sealed_root = ?2 WHERE id = ?1";
        conn.execute(set, rusqlite::params![ids[0].0, b]).unwrap();
        conn.execute(set, rusqlite::params![ids[1].0, a]).unwrap();
    }
    let master = MasterKey::load(&dir.path().join("master.key")).unwrap();
    let s =
        SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default()).unwrap();
    for id in ids {
        assert_eq!(
            s.keys(id).await.err(),
            Some(StoreError::Seal(SealError::Open)),
            "device {id:?}"
        );
    }
    s.close().await;
}
