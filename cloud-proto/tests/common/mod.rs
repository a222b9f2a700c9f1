//! A device and a one-device server store for the behaviour tests.
#![allow(dead_code)]

use cloud_proto::*;

pub const DEVICE: DeviceId = DeviceId(0x0102_0304);
pub const ROOT_KEY: [u8; 32] = [0x42; 32];
/// The address the test device's datagrams come from (TEST-NET-1, RFC 5737).
pub const DEVICE_ADDR: core::net::SocketAddr = core::net::SocketAddr::V4(
    core::net::SocketAddrV4::new(core::net::Ipv4Addr::new(192, 0, 2, 1), 40_000),
);

pub fn config() -> DeviceConfig {
    DeviceConfig::new(DEVICE)
}

pub fn keys() -> Keys {
    Keys::derive(&ROOT_KEY)
}

/// A device with its first counter reservation persisted.
pub fn device() -> DeviceEndpoint {
    device_from(Counters::cold(0))
}

pub fn device_from(counters: Counters) -> DeviceEndpoint {
    let mut d = DeviceEndpoint::new(config(), keys(), counters);
    if let Some(r) = d.checkpoint() {
        d.mark_checkpointed(r);
    }
    d
}

pub fn store() -> MemoryStore {
    let mut s = MemoryStore::default();
    s.insert(DEVICE, &ROOT_KEY);
    s
}

/// The server's verdict on `frame` from the device's address at time 0.
pub fn handle<'a>(
    store: &mut MemoryStore,
    frame: &'a [u8],
) -> Result<Request<'a>, RequestError<core::convert::Infallible>> {
    handle_datagram(frame, DEVICE_ADDR, store, 0, ReplayPolicy::DEFAULT)
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

/// The answer `reply` to request `counter`, sealed.
pub fn reply_to(counter: u32, reply: &Down<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = respond(&keys(), DEVICE, counter, reply, &mut out).unwrap();
    out[..n].to_vec()
}

/// Server side of one request: authenticate, answer with `reply`.
pub fn answer(store: &mut MemoryStore, frame: &[u8], reply: &Down<'_>) -> Vec<u8> {
    let req = handle(store, frame).unwrap();
    reply_to(req.counter, reply)
}

/// Server side of a chunk request frame: what it served and the frames it sent.
pub fn serve(store: &mut MemoryStore, frame: &[u8], object: &[u8]) -> (Served, Vec<Vec<u8>>) {
    let req = handle(store, frame).unwrap();
    let mut frames = Vec::new();
    let mut out = [0u8; MAX_FRAME];
    let served =
        serve_chunks(&keys(), &req, object, &mut out, |f| frames.push(f.to_vec())).unwrap();
    (served, frames)
}

/// HMAC-SHA256 straight from the `hmac` crate, for checks independent of the crate's code.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// `K_up` or `K_down` of the test device, as the spec derives it.
pub fn direction_key(up: bool) -> [u8; 32] {
    let label: &[u8] = if up {
        b"cloud-proto/1 up"
    } else {
        b"cloud-proto/1 down"
    };
    hmac(&ROOT_KEY, &[label])
}

/// The spec's tag of `frame` (without its tag), computed independently.
pub fn spec_tag(up: bool, counter: u32, frame: &[u8]) -> [u8; 8] {
    let full = hmac(
        &direction_key(up),
        &[&DEVICE.0.to_le_bytes(), &counter.to_le_bytes(), frame],
    );
    full[..8].try_into().unwrap()
}

/// An authentic up frame with an arbitrary body, built from the spec alone.
pub fn raw_up(counter: u32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x10];
    f.extend_from_slice(&DEVICE.0.to_le_bytes());
    f.extend_from_slice(&counter.to_le_bytes());
    f.extend_from_slice(body);
    let tag = spec_tag(true, counter, &f);
    f.extend_from_slice(&tag);
    f
}

/// An authentic chunk frame answering `counter`, built from the spec alone.
pub fn raw_chunk(counter: u32, slot: u8, data: &[u8]) -> Vec<u8> {
    let [lo, hi, ..] = counter.to_le_bytes();
    let mut f = vec![0x12, lo, hi, slot];
    f.extend_from_slice(data);
    let tag = spec_tag(false, counter, &f);
    f.extend_from_slice(&tag);
    f
}
