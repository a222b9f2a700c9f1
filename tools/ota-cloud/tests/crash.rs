//! Kill -9 while acknowledged writes run, then reopen: every acknowledged write is there.
//!
//! The test runs itself as the child process (`crash_child`, which does nothing unless the
//! parent sets `OTA_CLOUD_CRASH_DIR`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cloud_proto::{DeviceId, LastFrame, TAG_LEN};
use ota_cloud::{
    Effects, FrameCommit, MasterKey, NewDevice, NewProduct, PublishId, RootKey, SqliteOptions,
    SqliteStore, Store,
};

const DEVICES: u32 = 8;

fn record(counter: u32) -> LastFrame {
    LastFrame {
        counter,
        tag: [counter as u8; TAG_LEN],
        accepted_at_ms: u64::from(counter),
        source: ([192, 0, 2, 1], 40_000).into(),
        answers: 1,
    }
}

/// The child: check-ins on `DEVICES` devices concurrently, printing `ack DEVICE COUNTER` after
/// each commit resolved, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var("OTA_CLOUD_CRASH_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let master = MasterKey::load(&dir.join("master.key")).unwrap();
    let s =
        Arc::new(SqliteStore::open(&dir.join("ota.db"), master, SqliteOptions::default()).unwrap());
    let mut tasks = Vec::new();
    for d in 1..=DEVICES {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut expected = None;
            for c in 0u32.. {
                let mut effects = Effects::counters_only(u64::from(c), 1, 1);
                effects.publishes = vec![(d as u16, c.to_le_bytes().to_vec())];
                let won = s
                    .commit_frame(FrameCommit {
                        device: DeviceId(d),
                        expected,
                        record: record(c),
                        effects,
                    })
                    .await
                    .unwrap();
                assert!(won);
                expected = Some(record(c));
                // println! takes stdout's lock: one whole line per write.
                println!("ack {d} {c}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
    let s =
        SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default()).unwrap();
    let p = s
        .add_product(NewProduct {
            name: "crash".into(),
            hardware_id: [0; 16],
            release_keys: vec![],
        })
        .await
        .unwrap();
    for _ in 0..DEVICES {
        let k = RootKey::generate().unwrap();
        s.add_device(
            NewDevice {
                id: None,
                product: p,
                tags: vec![],
                root_key: k,
            },
            0,
        )
        .await
        .unwrap();
    }
    s.close().await;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("OTA_CLOUD_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = vec![None::<u32>; DEVICES as usize + 1];
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut n = 0;
    while n < 2_000 {
        let Some(Ok(line)) = lines.next() else { break };
        let mut w = line.split_whitespace();
        if w.next() != Some("ack") {
            continue;
        }
        let d: usize = w.next().unwrap().parse().unwrap();
        let c: u32 = w.next().unwrap().parse().unwrap();
        acked[d] = Some(c);
        n += 1;
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert_eq!(n, 2_000, "the child stopped early");

    let master = MasterKey::load(&dir.path().join("master.key")).unwrap();
    let s =
        SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default()).unwrap();
    let mut pubs = Vec::new();
    let mut after = PublishId::default();
    loop {
        let page = s.publishes_since(after, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        pubs.extend(page);
    }
    for d in 1..=DEVICES {
        let Some(c) = acked[d as usize] else { continue };
        let lf = s.last_frame(DeviceId(d)).await.unwrap().unwrap();
        assert!(
            lf.counter >= c,
            "device {d}: acked {c}, stored {}",
            lf.counter
        );
        // Every acknowledged publish is there, once, and nothing beyond the stored record.
        let mine: Vec<u32> = pubs
            .iter()
            .filter(|p| p.device == DeviceId(d))
            .map(|p| p.counter)
            .collect();
        assert_eq!(mine, (0..=lf.counter).collect::<Vec<_>>(), "device {d}");
    }
    s.close().await;
}
