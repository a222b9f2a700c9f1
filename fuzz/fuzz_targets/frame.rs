//! Fuzz every cloud-proto decoder of untrusted bytes: never panic, never read past a buffer.
//!
//! The first input byte picks the mode. Raw bytes go to the server, the device and the stream
//! decoder as they arrive from the network; in the sealed modes the rest of the input becomes
//! the body of an up or down frame with a **valid tag**, so the message decoders behind the
//! MAC are exercised too (an attacker cannot get there, a buggy or newer peer can). Whatever
//! decodes must encode and decode again to the same value.
#![no_main]

use cloud_proto::*;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

const DEVICE: DeviceId = DeviceId(0x0102_0304);
const ROOT: [u8; 32] = [0x42; 32];
/// Where the datagrams come from (TEST-NET-1).
const FROM: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 0, 2, 1),
    40_000,
));

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// A frame of `kind` with `header` and `body`, tagged as the spec says.
fn sealed(up: bool, header: &[u8], body: &[u8], counter: u32) -> Vec<u8> {
    let label: &[u8] = if up {
        b"cloud-proto/1 up"
    } else {
        b"cloud-proto/1 down"
    };
    let key = hmac(&ROOT, &[label]);
    let mut f = header.to_vec();
    f.extend_from_slice(body);
    let tag = hmac(&key, &[&DEVICE.0.to_le_bytes(), &counter.to_le_bytes(), &f]);
    f.extend_from_slice(&tag[..8]);
    f
}

fn device() -> DeviceEndpoint {
    let mut d = DeviceEndpoint::new(
        DeviceConfig::new(DEVICE),
        Keys::derive(&ROOT),
        Counters::cold(0),
    );
    if let Some(r) = d.checkpoint() {
        d.mark_checkpointed(r);
    }
    d
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut store = MemoryStore::default();
    store.insert(DEVICE, &ROOT);
    let keys = Keys::derive(&ROOT);
    match mode % 4 {
        0 => {
            let _ = handle_datagram(rest, FROM, &mut store, 0, ReplayPolicy::DEFAULT);
            let mut dev = device();
            let req = ChunkRequest::plan(UpdateId(1), Object::Image, 512, 0..64, 64);
            if let Some(req) = req {
                let _ = dev.send(0, &Up::ChunkRequest(req));
            }
            let _ = dev.handle_datagram(1, rest);
            let mut dec = StreamDecoder::<{ stream_encoded_max(MAX_FRAME) }>::new();
            let mut input = rest;
            while !input.is_empty() {
                let (used, _) = dec.feed(input);
                assert!(used >= 1 && used <= input.len());
                input = &input[used..];
            }
        }
        1 => {
            // An authentic up frame with an arbitrary body.
            let mut header = vec![0x10];
            header.extend_from_slice(&DEVICE.0.to_le_bytes());
            header.extend_from_slice(&9u32.to_le_bytes());
            let f = sealed(true, &header, rest, 9);
            match handle_datagram(&f, FROM, &mut store, 0, ReplayPolicy::DEFAULT) {
                Ok(req) => {
                    let mut out = [0u8; MAX_FRAME];
                    let n = seal_up(&keys, DEVICE, 9, &req.msg, &mut out)
                        .expect("a decoded message re-encodes");
                    let again = open_up(&keys, &out[..n]).expect("and decodes again");
                    assert_eq!(again.msg, req.msg);
                }
                // An authentic frame is either taken, or refused with a reason to Nack.
                Err(RequestError::Undecodable { counter: 9, .. })
                | Err(RequestError::InvalidRequest { counter: 9, .. }) => {}
                Err(e) => panic!("authentic fresh frame refused: {e:?}"),
            };
        }
        2 => {
            // An authentic down frame answering counter 0, arbitrary body.
            let f = sealed(false, &[0x11, 0, 0], rest, 0);
            let mut dev = device();
            let _ = dev.send(0, &Up::Goodbye(Goodbye { sleep_s: 1 }));
            if let Ok(Event::Reply(msg)) = dev.handle_datagram(1, &f) {
                let mut out = [0u8; MAX_FRAME];
                if let Ok(n) = seal_down(&keys, DEVICE, 0, &msg, &mut out) {
                    let again =
                        open_down(&keys, DEVICE, &out[..n], |_| Some(0)).expect("decodes again");
                    assert_eq!(again, DownFrame::Message { echo: 0, msg });
                }
            }
        }
        _ => {
            // An authentic chunk frame with an arbitrary slot and data.
            let Some((&slot, body)) = rest.split_first() else {
                return;
            };
            let f = sealed(false, &[0x12, 0, 0, slot], body, 0);
            let mut dev = device();
            if let Some(req) = ChunkRequest::plan(UpdateId(1), Object::Image, 512, 0..8, 8) {
                let _ = dev.send(0, &Up::ChunkRequest(req));
            }
            if let Ok(Event::Chunk { index, data, .. }) = dev.handle_datagram(1, &f) {
                assert!(index < 8 && data == body);
            }
        }
    }
});
