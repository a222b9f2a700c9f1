//! With `--features log`, what a field engineer needs is logged through the `log` facade:
//! refusals with their error and the device id (never key material), retransmissions
//! answered and refused, and, on the device, retransmissions, incomplete requests and resumed
//! transfers. `cargo test -p cloud-proto --features log --test log`.
#![cfg(feature = "log")]

mod common;

use std::sync::Mutex;

use cloud_proto::*;
use common::*;

/// Every record, as "LEVEL message".
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        RECORDS.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

/// The records logged while `f` runs (one test in this file, so nothing else logs meanwhile).
fn logged(f: impl FnOnce()) -> Vec<String> {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
    RECORDS.lock().unwrap().clear();
    f();
    std::mem::take(&mut *RECORDS.lock().unwrap())
}

fn has(records: &[String], level: &str, parts: &[&str]) -> bool {
    records
        .iter()
        .any(|r| r.starts_with(level) && parts.iter().all(|p| r.contains(p)))
}

#[test]
fn refusals_retransmissions_and_resumes_are_logged() {
    let mut store = store();
    let mut dev = device();
    let other: core::net::SocketAddr = "203.0.113.9:1".parse().unwrap();
    let id = DEVICE.0.to_string();

    let server = logged(|| {
        let f = dev.send(0, &checkin()).unwrap().frame.to_vec();
        let policy = ReplayPolicy::DEFAULT;
        let _ = handle_datagram(&f, DEVICE_ADDR, &mut store, 0, policy).unwrap();
        // Answered again, then refused from elsewhere, then refused as spent.
        let _ = handle_datagram(&f, DEVICE_ADDR, &mut store, 1, policy).unwrap();
        let _ = handle_datagram(&f, other, &mut store, 2, policy).unwrap_err();
        for now in 3..10 {
            let _ = handle_datagram(&f, DEVICE_ADDR, &mut store, now, policy);
        }
        // A forgery, and a body this server does not know.
        let mut forged = f.clone();
        forged[9] ^= 1;
        let _ = handle_datagram(&forged, DEVICE_ADDR, &mut store, 10, policy).unwrap_err();
        let _ = handle_datagram(&raw_up(5, &[0x09]), DEVICE_ADDR, &mut store, 11, policy);
    });
    assert!(
        has(&server, "DEBUG", &[&id, "retransmission", "answered"]),
        "{server:#?}"
    );
    assert!(
        has(&server, "WARN", &[&id, "refused", "from another address"]),
        "{server:#?}"
    );
    assert!(
        has(
            &server,
            "WARN",
            &[&id, "refused", "outside the retransmission window"]
        ),
        "{server:#?}"
    );
    assert!(
        has(&server, "WARN", &[&id, "refused", "authentication tag"]),
        "{server:#?}"
    );
    assert!(
        has(&server, "INFO", &[&id, "nacked", "UnknownMessage"]),
        "{server:#?}"
    );

    let device = logged(|| {
        dev.abandon();
        let decision = Up::UpdateDecision(UpdateDecision {
            update: UpdateId(3),
            decision: Decision::Accept { bytes_done: 4096 },
        });
        let _ = dev.send(100, &decision).unwrap();
        let now = dev.poll_timeout().unwrap();
        assert!(matches!(dev.handle_timeout(now), Timeout::Retransmit(_)));
        // A chunk request of which one chunk arrives, then nothing.
        dev.abandon();
        let req = ChunkRequest::plan(UpdateId(3), Object::Image, 512, 8..12, 64).unwrap();
        let counter = dev.counters().next;
        let _ = dev.send(200, &Up::ChunkRequest(req)).unwrap();
        let chunk = raw_chunk(counter, 0, &[7; 512]);
        assert!(matches!(
            dev.handle_datagram(201, &chunk),
            Ok(Event::Chunk { done: false, .. })
        ));
        let now = dev.poll_timeout().unwrap();
        assert!(matches!(
            dev.handle_timeout(now),
            Timeout::Incomplete { .. }
        ));
        // A reply to nothing outstanding.
        let _ = dev.handle_datagram(300, &chunk).unwrap_err();
    });
    assert!(
        has(&device, "INFO", &["update 3", "resum", "4096"]),
        "{device:#?}"
    );
    assert!(
        has(&device, "INFO", &["retransmi", "2 of 4"]),
        "{device:#?}"
    );
    assert!(
        has(&device, "INFO", &["incomplete", "1 received", "3 missing"]),
        "{device:#?}"
    );
    assert!(
        has(&device, "DEBUG", &["refused", "no outstanding request"]),
        "{device:#?}"
    );

    // Never key material: neither the root key nor a derived key, in any form.
    let all: String = server.iter().chain(&device).cloned().collect();
    for key in [ROOT_KEY, direction_key(true), direction_key(false)] {
        assert!(!all.contains(&hex::encode(key)));
        assert!(!all.contains(&format!("{:?}", &key[..4]).trim_end_matches(']').to_string()));
    }
    assert!(!all.contains("Keys"));
}
