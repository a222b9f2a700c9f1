//! With the `log` feature, the updater logs its phase changes (from the transition funnel) and
//! its refusals, with the error. Run with `cargo test -p ota-core --features log --test log`.
#![cfg(feature = "log")]

mod common;

use std::sync::Mutex;

use common::*;
use ota_core::{Begin, ChunkIndex, Updater};

/// Every record logged so far: level and message.
static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if let Ok(mut r) = RECORDS.lock() {
            r.push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

fn logged(level: log::Level, needle: &str) -> bool {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .any(|(l, m)| *l == level && m.contains(needle))
}

#[test]
fn phase_changes_and_refusals_are_logged() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    let mut flash = Flash::new(&SECTORS);
    let s = sign(7000, 1, 1);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();

    // A refused offer: signed by a key this device does not trust.
    assert!(up.verify_offer(&s.manifest, &trusted(&[9])).is_err());
    assert!(logged(log::Level::Warn, "offer refused: UnknownKey"));

    // A phase change, from the transition funnel.
    let offer = up.verify_offer(&s.manifest, &trusted(&[1])).unwrap();
    assert_eq!(up.begin(&mut flash, &offer), Ok(Begin::Started));
    assert!(logged(log::Level::Info, "phase Idle -> Downloading"));

    // A refused chunk, with its error.
    let mut buf = [0u8; 128];
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    let mut bad = s.chunk(2).to_vec();
    bad[0] ^= 1;
    assert!(up.handle_chunk(&mut flash, ChunkIndex(2), &bad).is_err());
    assert!(logged(log::Level::Warn, "chunk 2 refused: Corrupt"));
}
