//! One round trip, replay and forgery refusal, retransmission, counters, chunk transfer.

mod common;

use cloud_proto::server::{MemoryStore, Served};
use cloud_proto::*;
use common::*;

fn chunk_request(ranges: &[(u32, u32)], chunk_size: u16) -> ChunkRequest {
    let mut v = heapless::Vec::new();
    for &(first, count) in ranges {
        v.push(ChunkRange { first, count }).unwrap();
    }
    ChunkRequest {
        update: UpdateId(1),
        object: Object::Image,
        chunk_size,
        ranges: v,
    }
}

#[test]
fn checkin_round_trip_is_small() {
    let mut dev = device();
    let mut store = store();
    let up = dev.send(0, &checkin()).unwrap().to_vec();
    let req = server::handle_datagram(&up, &mut store).unwrap();
    assert_eq!(req.msg, checkin());
    assert!(!req.retransmission);
    let down = answer_again(&req, &welcome(None));
    match dev.handle_datagram(10, &down).unwrap() {
        Event::Reply(Down::Welcome(w)) => assert_eq!(w.sleep.next_checkin_s, 900),
        e => panic!("{e:?}"),
    }
    assert!(!dev.is_busy());
    assert!(up.len() < 100, "{} bytes up", up.len());
    assert!(down.len() < 100, "{} bytes down", down.len());
}

fn answer_again(req: &server::Request<'_>, reply: &Down<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = server::respond(&keys(), req.device, req.counter, reply, &mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn replays_forgeries_and_strangers_change_nothing() {
    let mut dev = device();
    let mut store = store();
    let first = dev.send(0, &checkin()).unwrap().to_vec();
    server::handle_datagram(&first, &mut store).unwrap();
    dev.abandon();
    let second = dev.send(1, &checkin()).unwrap().to_vec();
    server::handle_datagram(&second, &mut store).unwrap();
    // The first frame again: a replay (also what a reordered old frame looks like).
    assert_eq!(
        server::handle_datagram(&first, &mut store),
        Err(FrameError::Replayed {
            counter: 0,
            last: 1
        })
    );
    // The same frame as the last one: a retransmission, answered again, not re-applied.
    assert!(
        server::handle_datagram(&second, &mut store)
            .unwrap()
            .retransmission
    );
    // Any flipped bit: refused, and the counter does not move.
    for i in 0..second.len() {
        for bit in 0..8 {
            let mut f = second.clone();
            f[i] ^= 1 << bit;
            assert!(
                server::handle_datagram(&f, &mut store).is_err(),
                "bit {bit} of byte {i} flipped and accepted"
            );
        }
    }
    // Every truncation: refused.
    for len in 0..second.len() {
        assert!(server::handle_datagram(&second[..len], &mut store).is_err());
    }
    assert_eq!(
        server::handle_datagram(&second[..5], &mut store),
        Err(FrameError::Truncated)
    );
    assert_eq!(store.last_counter(DEVICE), Some(1));
    // Another device, unknown to the server.
    let mut other = DeviceEndpoint::new(
        DeviceConfig {
            device: DeviceId(7),
            ..config()
        },
        &[7; 32],
        Counters::cold(0),
    );
    let r = other.checkpoint().unwrap();
    other.checkpoint_done(r);
    let f = other.send(0, &checkin()).unwrap().to_vec();
    assert_eq!(
        server::handle_datagram(&f, &mut store),
        Err(FrameError::UnknownDevice(DeviceId(7)))
    );
    // Device 7's frame relabelled as ours (cross-device): bad tag.
    let mut f2 = f.clone();
    f2[1..5].copy_from_slice(&DEVICE.0.to_le_bytes());
    f2[5..9].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(
        server::handle_datagram(&f2, &mut store),
        Err(FrameError::BadTag)
    );
    // A down frame sent to the server: wrong direction.
    let down = answer_again(
        &server::Request {
            device: DEVICE,
            counter: 1,
            retransmission: false,
            msg: checkin(),
        },
        &Down::Ack,
    );
    assert_eq!(
        server::handle_datagram(&down, &mut store),
        Err(FrameError::WrongDirection)
    );
    assert_eq!(store.last_counter(DEVICE), Some(1));
}

#[test]
fn a_reused_counter_is_refused_not_taken_for_a_retransmission() {
    let mut store = store();
    let mut dev = device();
    let a = dev.send(0, &checkin()).unwrap().to_vec();
    server::handle_datagram(&a, &mut store).unwrap();
    // The device lost its counters without a flash reservation (an application bug): it sends
    // a different message with the same counter.
    let mut again = device();
    let goodbye = Up::Goodbye(Goodbye { sleep_s: 60 });
    let b = again.send(0, &goodbye).unwrap().to_vec();
    assert_eq!(
        server::handle_datagram(&b, &mut store),
        Err(FrameError::CounterReused { counter: 0 })
    );
    assert!(
        server::handle_datagram(&a, &mut store)
            .unwrap()
            .retransmission
    );
}

#[test]
fn an_unknown_message_from_an_authentic_device_can_be_nacked() {
    // A newer device sends an Up variant this server does not know (index 9).
    let mut frame = vec![0x10];
    frame.extend_from_slice(&DEVICE.0.to_le_bytes());
    frame.extend_from_slice(&3u32.to_le_bytes());
    frame.extend_from_slice(&[0x09, 0x01]);
    let tag = tag_of(&keys_up(), DEVICE, 3, &frame);
    frame.extend_from_slice(&tag);
    let mut store = store();
    let err = server::handle_datagram(&frame, &mut store).unwrap_err();
    assert_eq!(
        err,
        FrameError::UnknownMessage {
            device: DEVICE,
            counter: 3
        }
    );
    assert_eq!(store.last_counter(DEVICE), None, "nothing changed");
    let mut out = [0u8; MAX_FRAME];
    let n = server::respond(
        &keys(),
        DEVICE,
        3,
        &Down::Nack(NackCode::UnknownMessage),
        &mut out,
    )
    .unwrap();
    let got = frame::open_down(&keys(), DEVICE, &out[..n], |l| (l == 3).then_some(3)).unwrap();
    assert_eq!(
        got,
        DownFrame::Message {
            echo: 3,
            msg: Down::Nack(NackCode::UnknownMessage)
        }
    );
}

/// The up key and tag, computed independently of the crate (HMAC-SHA256 from the `hmac`
/// crate's own test-free path is not available here, so use the spec's construction through
/// the public frame API instead: seal a frame with a known body and compare).
fn keys_up() -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&ROOT_KEY).unwrap();
    m.update(b"cloud-proto/1 up");
    m.finalize().into_bytes().into()
}

fn tag_of(key: &[u8; 32], device: DeviceId, counter: u32, frame: &[u8]) -> [u8; 8] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(&device.0.to_le_bytes());
    m.update(&counter.to_le_bytes());
    m.update(frame);
    m.finalize().into_bytes()[..8].try_into().unwrap()
}

#[test]
fn the_tag_is_the_documented_hmac() {
    let mut dev = device();
    let f = dev.send(0, &checkin()).unwrap().to_vec();
    let (body, tag) = f.split_at(f.len() - 8);
    assert_eq!(tag, tag_of(&keys_up(), DEVICE, 0, body));
}

#[test]
fn replies_are_bound_to_their_request() {
    let mut dev = device();
    let mut store = store();
    let a = dev.send(0, &checkin()).unwrap().to_vec();
    let reply_a = answer(&mut store, &a, &welcome(None));
    dev.handle_datagram(1, &reply_a).unwrap();
    // A duplicate of the reply: nothing outstanding.
    assert_eq!(
        dev.handle_datagram(2, &reply_a),
        Err(FrameError::Unexpected)
    );
    // Next request: the old reply must not answer it.
    let b = dev.send(3, &checkin()).unwrap().to_vec();
    assert_eq!(
        dev.handle_datagram(4, &reply_a),
        Err(FrameError::Unexpected)
    );
    // A reply sealed with another device's key does not verify.
    let rb = server::handle_datagram(&b, &mut store).unwrap();
    let wrong = Keys::derive(&[9; 32]);
    let mut out = [0u8; MAX_FRAME];
    let n = server::respond(&wrong, rb.device, rb.counter, &welcome(None), &mut out).unwrap();
    assert_eq!(dev.handle_datagram(5, &out[..n]), Err(FrameError::BadTag));
    // An up frame looped back to the device: wrong direction.
    assert_eq!(dev.handle_datagram(5, &b), Err(FrameError::WrongDirection));
    assert!(dev.is_busy(), "a rejected frame completed the request");
    let ack = answer_again(&rb, &Down::Ack);
    assert_eq!(
        dev.handle_datagram(6, &ack).unwrap(),
        Event::Reply(Down::Ack)
    );
}

#[test]
fn retransmission_with_backoff_then_give_up() {
    let mut dev = device();
    let first = dev.send(0, &checkin()).unwrap().to_vec();
    assert_eq!(dev.poll_timeout(), Some(2_000));
    assert_eq!(dev.handle_timeout(1_999), Timeout::NotYet);
    assert_eq!(dev.handle_timeout(2_000), Timeout::Retransmit(&first[..]));
    assert_eq!(dev.poll_timeout(), Some(2_000 + 4_000));
    assert_eq!(dev.handle_timeout(6_000), Timeout::Retransmit(&first[..]));
    assert_eq!(dev.poll_timeout(), Some(6_000 + 8_000));
    assert_eq!(dev.handle_timeout(14_000), Timeout::Retransmit(&first[..]));
    assert_eq!(
        dev.poll_timeout(),
        Some(14_000 + 16_000),
        "capped at rto_max"
    );
    assert_eq!(dev.handle_timeout(30_000), Timeout::GaveUp);
    assert!(!dev.is_busy());
    assert_eq!(dev.poll_timeout(), None);
}

#[test]
fn counters_need_a_flash_checkpoint() {
    let mut dev = DeviceEndpoint::new(config(), &ROOT_KEY, Counters::cold(1000));
    assert_eq!(
        dev.send(0, &checkin()),
        Err(SendError::CheckpointRequired {
            reserved_until: 1064
        })
    );
    dev.checkpoint_done(1064);
    for i in 0..64 {
        dev.send(i, &checkin()).unwrap();
        dev.abandon();
    }
    assert_eq!(
        dev.counters(),
        Counters {
            next: 1064,
            reserved_until: 1064
        }
    );
    assert!(matches!(
        dev.send(0, &checkin()),
        Err(SendError::CheckpointRequired { .. })
    ));
}

#[test]
fn counters_survive_backup_sram_and_a_power_loss_never_reuses_one() {
    let mut store = store();
    let mut dev = device();
    for t in 0..10 {
        let f = dev.send(t, &checkin()).unwrap().to_vec();
        server::handle_datagram(&f, &mut store).unwrap();
        dev.abandon();
    }
    // Deep sleep: counters in backup SRAM.
    let saved = dev.counters().to_retained();
    let restored = Counters::from_retained(&saved).unwrap();
    assert_eq!(restored, dev.counters());
    let mut dev = DeviceEndpoint::new(config(), &ROOT_KEY, restored);
    let f = dev.send(20, &checkin()).unwrap().to_vec();
    assert!(
        !server::handle_datagram(&f, &mut store)
            .unwrap()
            .retransmission
    );
    // Any corruption of the retained bytes is detected.
    for i in 0..saved.len() {
        let mut bad = saved;
        bad[i] ^= 0x10;
        assert_eq!(Counters::from_retained(&bad), None, "byte {i}");
    }
    // Power loss: backup SRAM gone; the flash reservation (64) is the floor.
    let reserved = dev.counters().reserved_until;
    let mut dev = DeviceEndpoint::new(config(), &ROOT_KEY, Counters::cold(reserved));
    let r = dev.checkpoint().unwrap();
    dev.checkpoint_done(r);
    let f = dev.send(30, &checkin()).unwrap().to_vec();
    let req = server::handle_datagram(&f, &mut store).unwrap();
    assert_eq!(req.counter, 64);
    assert!(!req.retransmission);
}

#[test]
fn chunk_request_is_answered_slot_by_slot() {
    let mut dev = device();
    let mut store = store();
    let image: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
    let req = chunk_request(&[(10, 3), (40, 1)], 256);
    assert_eq!(
        req.slots().collect::<Vec<_>>(),
        [(0, 10), (1, 11), (2, 12), (3, 40)]
    );
    let f = dev
        .send(0, &Up::ChunkRequest(req.clone()))
        .unwrap()
        .to_vec();
    let (served, frames) = serve(&mut store, &f, &image);
    assert_eq!(served, Served::Chunks(4));
    assert!(frames.iter().all(|f| f.len() == 4 + 256 + 8));
    // Delivered out of order, with a duplicate: each chunk reaches the application once.
    let order = [2usize, 0, 0, 3, 1];
    let mut got = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        match dev.handle_datagram(k as u64, &frames[i]) {
            Ok(Event::Chunk {
                index, data, done, ..
            }) => {
                assert_eq!(data, &image[index as usize * 256..][..256]);
                got.push((index, done));
            }
            Ok(e) => panic!("{e:?}"),
            Err(e) => {
                assert_eq!((k, e), (2, FrameError::Unexpected), "only the duplicate");
            }
        }
    }
    assert_eq!(
        got,
        [(12, false), (10, false), (40, false), (11, true)],
        "the last missing chunk completes the request"
    );
    assert!(!dev.is_busy());
    // A late copy after completion: refused.
    assert_eq!(
        dev.handle_datagram(9, &frames[3]),
        Err(FrameError::Unexpected)
    );
}

#[test]
fn the_last_chunk_is_short_and_past_the_end_is_refused() {
    let mut dev = device();
    let mut store = store();
    let image = vec![0xA5u8; 1000];
    let req = chunk_request(&[(3, 1)], 256);
    let f = dev.send(0, &Up::ChunkRequest(req)).unwrap().to_vec();
    let (_, frames) = serve(&mut store, &f, &image);
    match dev.handle_datagram(1, &frames[0]).unwrap() {
        Event::Chunk { index, data, .. } => assert_eq!((index, data.len()), (3, 1000 - 768)),
        e => panic!("{e:?}"),
    }
    // Chunk 4 does not exist: the server answers Nack(BadRequest), the device gets the reply.
    let f = dev
        .send(2, &Up::ChunkRequest(chunk_request(&[(3, 2)], 256)))
        .unwrap()
        .to_vec();
    let (served, frames) = serve(&mut store, &f, &image);
    assert_eq!(served, Served::Refused(NackCode::BadRequest));
    assert_eq!(frames.len(), 1);
    assert_eq!(
        dev.handle_datagram(3, &frames[0]).unwrap(),
        Event::Reply(Down::Nack(NackCode::BadRequest))
    );
    assert!(!dev.is_busy());
}

#[test]
fn a_chunk_request_is_not_answered_by_a_message_and_a_slot_past_it_is_refused() {
    let mut dev = device();
    let mut store = store();
    let f = dev
        .send(0, &Up::ChunkRequest(chunk_request(&[(0, 2)], 128)))
        .unwrap()
        .to_vec();
    let r = server::handle_datagram(&f, &mut store).unwrap();
    let ack = answer_again(&r, &Down::Ack);
    assert_eq!(dev.handle_datagram(1, &ack), Err(FrameError::Unexpected));
    let mut out = [0u8; MAX_FRAME];
    let n = frame::seal_chunk(&keys(), DEVICE, 0, 2, &[1, 2, 3], &mut out).unwrap();
    assert_eq!(
        dev.handle_datagram(2, &out[..n]),
        Err(FrameError::Malformed)
    );
    assert!(dev.is_busy());
}

#[test]
fn a_partly_answered_request_closes_as_incomplete() {
    let mut dev = device();
    let mut store = store();
    let image = vec![1u8; 4096];
    let f = dev
        .send(0, &Up::ChunkRequest(chunk_request(&[(0, 4)], 512)))
        .unwrap()
        .to_vec();
    let (_, frames) = serve(&mut store, &f, &image);
    dev.handle_datagram(100, &frames[0]).unwrap();
    // Progress restarted the timer.
    assert_eq!(dev.poll_timeout(), Some(100 + 2_000));
    assert_eq!(
        dev.handle_timeout(2_100),
        Timeout::Incomplete {
            received: 1,
            missing: 3
        }
    );
    assert!(!dev.is_busy());
    // The rest of the old request is refused now.
    assert_eq!(
        dev.handle_datagram(2_200, &frames[1]),
        Err(FrameError::Unexpected)
    );
}

#[test]
fn plan_builds_runs_within_the_limits() {
    let p = |missing: &[u32], max| {
        ChunkRequest::plan(
            UpdateId(1),
            Object::Image,
            512,
            missing.iter().copied(),
            max,
        )
        .map(|r| {
            r.ranges
                .iter()
                .map(|r| (r.first, r.count))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(p(&[], 10), None);
    assert_eq!(p(&[1, 2], 0), None);
    assert_eq!(p(&[1, 2, 3, 7, 8], 10), Some(vec![(1, 3), (7, 2)]));
    assert_eq!(p(&[1, 2, 3, 7, 8], 4), Some(vec![(1, 3), (7, 1)]));
    // At most MAX_RANGES runs.
    assert_eq!(
        p(&[0, 2, 4, 6, 8, 10], 10),
        Some(vec![(0, 1), (2, 1), (4, 1), (6, 1)])
    );
    // At most MAX_CHUNKS_PER_REQUEST chunks.
    let all: Vec<u32> = (0..1000).collect();
    assert_eq!(p(&all, 1000), Some(vec![(0, MAX_CHUNKS_PER_REQUEST)]));
    // Unsorted input: indices that go backwards are skipped, not duplicated.
    assert_eq!(p(&[5, 6, 5, 7], 10), Some(vec![(5, 3)]));
    // A chunk size the frame cannot carry: no request.
    assert_eq!(
        ChunkRequest::plan(UpdateId(1), Object::Image, 1025, [0], 1),
        None
    );
}

#[test]
fn invalid_chunk_requests_cannot_be_sent_or_accepted() {
    let mut dev = device();
    for bad in [
        chunk_request(&[(0, 0)], 512),
        chunk_request(&[(0, 65)], 512),
        chunk_request(&[(u32::MAX, 2)], 512),
        chunk_request(&[(0, 1)], 0),
        chunk_request(&[(0, 1)], 1025),
    ] {
        assert_eq!(
            dev.send(0, &Up::ChunkRequest(bad.clone())),
            Err(SendError::Encode(EncodeError::Invalid)),
            "{bad:?}"
        );
        // Sealed anyway by a broken peer: the receiver refuses it.
        let mut frame = vec![0x10];
        frame.extend_from_slice(&DEVICE.0.to_le_bytes());
        frame.extend_from_slice(&0u32.to_le_bytes());
        frame.extend_from_slice(&postcard::to_allocvec(&Up::ChunkRequest(bad)).unwrap());
        let tag = tag_of(&keys_up(), DEVICE, 0, &frame);
        frame.extend_from_slice(&tag);
        assert_eq!(
            server::handle_datagram(&frame, &mut MemoryStore::default()),
            Err(FrameError::UnknownDevice(DEVICE))
        );
        assert_eq!(
            server::handle_datagram(&frame, &mut store()),
            Err(FrameError::Malformed)
        );
    }
    assert!(!dev.is_busy());
}

#[test]
fn a_full_frame_is_refused_cleanly() {
    let mut dev = device();
    let data = [0u8; 1000];
    let mut publishes = heapless::Vec::new();
    for _ in 0..2 {
        publishes
            .push(Publish {
                topic: 1,
                data: &data,
            })
            .unwrap();
    }
    let big = Up::CheckIn(CheckIn {
        publishes,
        ..match checkin() {
            Up::CheckIn(c) => c,
            _ => unreachable!(),
        }
    });
    assert_eq!(
        dev.send(0, &big),
        Err(SendError::Encode(EncodeError::TooLarge))
    );
    assert!(!dev.is_busy());
    assert_eq!(dev.counters().next, 0, "no counter used");
}
