//! The inputs both sides of the measurement agree on: the host generator (`build.rs`, which
//! includes this file) makes the signed manifest, the cloud's replies and the modem's bytes
//! from them, and the bench (`main.rs`) sends the same requests on the device. Only inputs
//! live here; every expected output is computed on the host at build time.

use cloud_proto::{
    CheckIn, ChunkRequest, Counters, DeviceConfig, DeviceEndpoint, DeviceId, FirmwareVersion, Keys,
    Object, OtaReport, Publish, Up, UpdateId,
};

/// The device's cloud identity.
pub const DEVICE_ID: DeviceId = DeviceId(0x0E1E_C7A0);
/// Its root key (test material, never a real device's).
pub const ROOT_KEY: [u8; 32] = *b"electron-bench root key, public!";
/// The hardware id the manifest targets and the device checks.
pub const HARDWARE: &str = "electron-u260";
/// The security counter the device has stored (the manifest carries one more).
pub const STORED_COUNTER: u32 = 3;
/// Image size: the firmware size the issue aims for (96 KiB), so the manifest has the
/// length a real one has (192 chunk digests).
pub const IMAGE_SIZE: usize = 96 * 1024;
/// The Electron's chunk size: 512 B, the largest power of two whose chunk frame
/// (4 + 512 + 8 bytes) fits one SARA UDP datagram (a 1 KiB chunk would make a 1,036-byte
/// frame, past the modem's 1,024-byte `AT+USORF` read).
pub const CHUNK_SIZE: u16 = 512;
/// Chunks fetched in the measured request (the first ones of the image).
pub const CHUNKS: u32 = 8;
/// The update the cloud offers.
pub const UPDATE: UpdateId = UpdateId(1);
/// Modem read timeout the bench waits for a datagram with.
pub const WAIT_MS: u32 = 5_000;

/// The device endpoint as a fresh device builds it (counters from a cold boot, first
/// reservation persisted).
pub fn endpoint() -> DeviceEndpoint {
    let mut ep = DeviceEndpoint::new(
        DeviceConfig::new(DEVICE_ID),
        Keys::derive(&ROOT_KEY),
        Counters::cold(0),
    );
    if let Some(r) = ep.checkpoint() {
        ep.mark_checkpointed(r);
    }
    ep
}

/// The payload of the one publish the check-in carries (a 20-byte sensor record).
pub const PUBLISH: [u8; 20] = *b"t=21.5C;rh=40%;p=101";

/// The check-in an Electron sends: firmware, OTA state, battery, one publish.
pub fn checkin() -> Up<'static> {
    let mut publishes = heapless::Vec::new();
    // Capacity 4: one publish always fits.
    let _ = publishes.push(Publish {
        topic: 1,
        data: &PUBLISH,
    });
    Up::CheckIn(CheckIn {
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        trial: false,
        ota: OtaReport::default(),
        battery_mv: 3_912,
        forced_sleeps: 0,
        publishes,
    })
}

/// The chunk request for the first [`CHUNKS`] chunks of the image.
pub fn chunk_request() -> Option<Up<'static>> {
    ChunkRequest::plan(UPDATE, Object::Image, CHUNK_SIZE, 0..CHUNKS, CHUNKS).map(Up::ChunkRequest)
}

/// The deterministic image bytes (xorshift32), so the host and nothing else knows them.
pub fn image_byte_stream(mut f: impl FnMut(u8)) {
    let mut x: u32 = 0x2545_F491;
    for _ in 0..IMAGE_SIZE {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f(x as u8);
    }
}
