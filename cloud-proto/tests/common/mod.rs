//! A device and a one-device server store for the behaviour tests.
#![allow(dead_code)]

use cloud_proto::server::MemoryStore;
use cloud_proto::*;

pub const DEVICE: DeviceId = DeviceId(0x0102_0304);
pub const ROOT_KEY: [u8; 32] = [0x42; 32];

pub fn config() -> DeviceConfig {
    DeviceConfig {
        device: DEVICE,
        rto_initial_ms: 2_000,
        rto_max_ms: 16_000,
        max_transmissions: 4,
        counter_reserve: 64,
    }
}

/// A device with its first counter reservation persisted.
pub fn device() -> DeviceEndpoint {
    let mut d = DeviceEndpoint::new(config(), &ROOT_KEY, Counters::cold(0));
    let r = d.checkpoint().unwrap();
    d.checkpoint_done(r);
    d
}

pub fn store() -> MemoryStore {
    let mut s = MemoryStore::default();
    s.insert(DEVICE, &ROOT_KEY);
    s
}

pub fn keys() -> Keys {
    Keys::derive(&ROOT_KEY)
}

pub fn checkin<'a>() -> Up<'a> {
    Up::CheckIn(CheckIn {
        firmware: FirmwareVersion {
            major: 1,
            minor: 2,
            patch: 0,
        },
        trial: false,
        ota: OtaReport::default(),
        battery_mv: 3900,
        forced_sleeps: 0,
        publishes: heapless::Vec::new(),
    })
}

pub fn welcome<'a>(offer: Option<UpdateOffer<'a>>) -> Down<'a> {
    Down::Welcome(Welcome {
        server_time: 1_764_000_000,
        publishes_acked: 0,
        sleep: SleepGrant {
            next_checkin_s: 900,
            awake_extension_ms: 0,
        },
        offer,
    })
}

/// Server side of one request: authenticate, answer with `reply`.
pub fn answer(store: &mut MemoryStore, frame: &[u8], reply: &Down<'_>) -> Vec<u8> {
    let req = server::handle_datagram(frame, store).unwrap();
    let mut out = [0u8; MAX_FRAME];
    let n = server::respond(&keys(), req.device, req.counter, reply, &mut out).unwrap();
    out[..n].to_vec()
}

/// Server side of a chunk request frame: what it served and the frames it sent.
pub fn serve(
    store: &mut MemoryStore,
    frame: &[u8],
    object: &[u8],
) -> (server::Served, Vec<Vec<u8>>) {
    let req = server::handle_datagram(frame, store).unwrap();
    let Up::ChunkRequest(cr) = &req.msg else {
        panic!("not a chunk request: {:?}", req.msg)
    };
    let mut frames = Vec::new();
    let mut out = [0u8; MAX_FRAME];
    let served = server::serve_chunks(&keys(), &req, cr, object, &mut out, |f| {
        frames.push(f.to_vec())
    })
    .unwrap();
    (served, frames)
}
