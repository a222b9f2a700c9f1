//! Real wakes against the modem emulator, the strict F205 flash and the reference server.

mod common;

use common::*;
use electron_app::{AppConfig, WakeEnd};

const ROOT: [u8; 32] = [0x5A; 32];

#[test]
fn nothing_pending_checks_in_publishes_and_sleeps_for_the_grant() {
    let cloud = Cloud::new();
    let id = cloud.device(ROOT);
    let v1 = cloud.sign((1, 0, 0), 1, &image(20_000, 1));
    let mut dev = Electron::new(&cloud, id, ROOT, &v1);
    let keys = cloud.trusted();
    let mut cfg = AppConfig::new(cloud.addr, hw(), &keys);
    cfg.awake_budget_ms = 20_000;
    let r = dev.wake(&cloud, &cfg);
    eprintln!("{r:#?}");
    assert_eq!(r.error, None);
    assert!(r.checked_in);
    assert_eq!(r.publishes_acked, 1);
    assert_eq!(r.running, fw((1, 0, 0)));
    assert_eq!(r.offer, None);
    assert_eq!(r.end, WakeEnd::Sleep { ms: 900_000 });
    // Check-in and Goodbye, nothing else.
    assert_eq!(r.requests, 2);
    assert!(!r.retained_valid, "first wake after the factory");
    let r2 = dev.wake(&cloud, &cfg);
    assert!(r2.retained_valid && r2.checked_in && r2.error.is_none());
}
