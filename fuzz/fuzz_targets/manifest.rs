//! Fuzz the manifest parser and verifier with untrusted bytes: never panic, and anything
//! that parses must re-encode to the same header bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::{verify, HardwareId, Policy, SecurityCounter, TrustedKey};
use ota_core::{Manifest, ManifestHeader, MANIFEST_HEADER_LEN as HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let mut h = [0u8; HEADER_LEN];
        m.header().encode(&mut h);
        assert_eq!(&h[..], &data[..HEADER_LEN]);
        assert_eq!(ManifestHeader::decode(&h), Ok(*m.header()));
        for i in 0..m.header().chunk_count() {
            assert!(m.chunk_digest(ota_core::ChunkIndex(i)).is_some());
        }
    }
    let keys = [TrustedKey::new([0x11; 32])];
    let policy = Policy {
        hardware_id: HardwareId([0; 16]),
        stored_counter: SecurityCounter(0),
        capacity: u32::MAX,
        allow_downgrade: false,
    };
    let _ = verify(data, &keys, &policy);
});
