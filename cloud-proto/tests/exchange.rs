//! One round trip, replay and forgery refusal, retransmission, counters, chunk transfer.

mod common;

use cloud_proto::*;
use common::*;

type Rejected = RequestError<core::convert::Infallible>;

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

fn send(dev: &mut DeviceEndpoint, now: u64, msg: &Up<'_>) -> Vec<u8> {
    dev.send(now, msg).unwrap().frame.to_vec()
}

#[test]
fn checkin_round_trip() {
    let mut dev = device();
    let mut store = store();
    let t = dev.send(0, &checkin()).unwrap();
    assert_eq!(
        t.counters,
        Counters {
            next: 1,
            reserved_until: 64
        }
    );
    let up = t.frame.to_vec();
    let req = handle(&mut store, &up).unwrap();
    assert_eq!(req.msg, checkin());
    assert!(!req.retransmission);
    let down = reply_to(req.counter, &welcome(None));
    match dev.handle_datagram(10, &down).unwrap() {
        Event::Reply(Down::Welcome(w)) => assert_eq!(w.sleep.next_checkin_s, 900),
        e => panic!("{e:?}"),
    }
    assert!(!dev.is_busy());
    // The sizes docs/protocol.md section 7.2 states.
    assert_eq!((up.len(), down.len()), (29, 22));
}

#[test]
fn the_tags_are_the_documented_hmac() {
    let mut dev = device();
    let f = send(&mut dev, 0, &checkin());
    let (body, tag) = f.split_at(f.len() - 8);
    assert_eq!(tag, spec_tag(true, 0, body));
    let down = reply_to(0, &Down::Ack);
    let (body, tag) = down.split_at(down.len() - 8);
    assert_eq!(tag, spec_tag(false, 0, body));
    // A chunk frame built from the spec alone is accepted by the device.
    let req = chunk_request(&[(4, 1)], 16);
    let mut dev = device();
    send(&mut dev, 0, &Up::ChunkRequest(req));
    let mut out = [0u8; MAX_FRAME];
    let n = seal_chunk(&keys(), DEVICE, 0, 0, &[9; 16], &mut out).unwrap();
    assert_eq!(&out[..n], &raw_chunk(0, 0, &[9; 16])[..]);
}

#[test]
fn replays_forgeries_and_strangers_change_nothing() {
    let mut dev = device();
    let mut store = store();
    let first = send(&mut dev, 0, &checkin());
    let _ = handle(&mut store, &first).unwrap();
    dev.abandon();
    let second = send(&mut dev, 1, &checkin());
    let _ = handle(&mut store, &second).unwrap();
    // The first frame again: a replay (also what a reordered old frame looks like).
    assert_eq!(
        handle(&mut store, &first),
        Err(Rejected::Refused(AdmitError::Replayed {
            counter: 0,
            last: 1
        }))
    );
    // The same frame as the last one: a retransmission, answered again, not re-applied.
    assert!(handle(&mut store, &second).unwrap().retransmission);
    // Any flipped bit: refused, and the record does not move.
    for i in 0..second.len() {
        for bit in 0..8 {
            let mut f = second.clone();
            f[i] ^= 1 << bit;
            assert!(
                handle(&mut store, &f).is_err(),
                "bit {bit} of byte {i} flipped and accepted"
            );
        }
    }
    // Every truncation: refused.
    for len in 0..second.len() {
        assert!(handle(&mut store, &second[..len]).is_err());
    }
    assert_eq!(
        handle(&mut store, &second[..5]),
        Err(Rejected::Frame(FrameError::Truncated))
    );
    assert_eq!(store.last_counter(DEVICE), Some(1));
    // Another device, unknown to the server.
    let mut other = DeviceEndpoint::new(
        DeviceConfig::new(DeviceId(7)),
        Keys::derive(&[7; 32]),
        Counters::cold(0),
    );
    let r = other.checkpoint().unwrap();
    other.mark_checkpointed(r);
    let f = send(&mut other, 0, &checkin());
    assert_eq!(
        handle(&mut store, &f),
        Err(Rejected::UnknownDevice(DeviceId(7)))
    );
    // Device 7's frame relabelled as ours (cross-device): bad tag.
    let mut f2 = f.clone();
    f2[1..5].copy_from_slice(&DEVICE.0.to_le_bytes());
    f2[5..9].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(
        handle(&mut store, &f2),
        Err(Rejected::Frame(FrameError::BadTag))
    );
    // A down frame sent to the server: wrong direction.
    assert_eq!(
        handle(&mut store, &reply_to(1, &Down::Ack)),
        Err(Rejected::Frame(FrameError::WrongDirection))
    );
    assert_eq!(store.last_counter(DEVICE), Some(1));
}

#[test]
fn retransmissions_are_answered_only_soon_and_a_few_times() {
    let mut store = store();
    let mut dev = device();
    let req = Up::ChunkRequest(chunk_request(&[(0, 64)], 1024));
    let f = send(&mut dev, 0, &req);
    let image = vec![7u8; 64 * 1024];
    let policy = ReplayPolicy::DEFAULT;
    let at = |store: &mut MemoryStore, now| handle_datagram(&f, DEVICE_ADDR, store, now, policy);
    assert!(!at(&mut store, 1_000).unwrap().retransmission);
    // Three more answers (four in all) within the window…
    for now in [3_000, 7_000, 15_000] {
        let r = at(&mut store, now).unwrap();
        assert!(r.retransmission);
        let mut out = [0u8; MAX_FRAME];
        let served = serve_chunks(&keys(), &r, &image, &mut out, |_| {}).unwrap();
        assert_eq!(
            served,
            Served::Chunks(64),
            "a retransmission is served again"
        );
    }
    // …then a sniffed copy gets nothing: the amplification is bounded.
    assert_eq!(
        at(&mut store, 16_000),
        Err(Rejected::Refused(AdmitError::RetransmissionRefused {
            counter: 0
        }))
    );
    // Late copies too, even if few answers were given.
    let mut store = self::store();
    let _ = at(&mut store, 1_000).unwrap();
    assert_eq!(
        at(&mut store, 1_000 + policy.retransmit_window_ms + 1),
        Err(Rejected::Refused(AdmitError::RetransmissionRefused {
            counter: 0
        }))
    );
}

#[test]
fn a_reused_counter_is_refused_not_taken_for_a_retransmission() {
    let mut store = store();
    let mut dev = device();
    let a = send(&mut dev, 0, &checkin());
    let _ = handle(&mut store, &a).unwrap();
    // The device lost its counters without a flash reservation (an application bug): it sends
    // a different message with the same counter.
    let mut again = device();
    let b = send(&mut again, 0, &Up::Goodbye(Goodbye { sleep_s: 60 }));
    assert_eq!(
        handle(&mut store, &b),
        Err(Rejected::Refused(AdmitError::CounterReused { counter: 0 }))
    );
    assert!(handle(&mut store, &a).unwrap().retransmission);
}

#[test]
fn an_unknown_message_uses_up_its_counter_and_can_be_nacked() {
    // A newer device sends an Up variant this server does not know (index 9).
    let mut store = store();
    let f = raw_up(3, &[0x09, 0x01]);
    assert_eq!(
        handle(&mut store, &f),
        Err(Rejected::Undecodable {
            device: DEVICE,
            counter: 3
        })
    );
    assert_eq!(
        store.last_counter(DEVICE),
        Some(3),
        "the counter is used up"
    );
    let nack = reply_to(3, &Down::Nack(NackCode::UnknownMessage));
    let got = open_down(&keys(), DEVICE, &nack, |l| (l == 3).then_some(3)).unwrap();
    assert_eq!(
        got,
        DownFrame::Message {
            echo: 3,
            msg: Down::Nack(NackCode::UnknownMessage)
        }
    );
    // After a newer frame, a stale copy of it is a replay, not something to answer.
    let _ = handle(&mut store, &raw_up(4, &[0x04, 0x05])).unwrap();
    assert_eq!(
        handle(&mut store, &f),
        Err(Rejected::Refused(AdmitError::Replayed {
            counter: 3,
            last: 4
        }))
    );
}

#[test]
fn postcard_details_the_spec_pins_down() {
    let mut store = store();
    // A non-canonical varint (Goodbye{sleep_s: 5} as `85 00`) is accepted, as postcard does.
    let f = raw_up(1, &[0x04, 0x85, 0x00]);
    let r = handle(&mut store, &f).unwrap();
    assert_eq!(r.msg, Up::Goodbye(Goodbye { sleep_s: 5 }));
    // Trailing bytes after the message: undecodable.
    assert!(matches!(
        handle(&mut store, &raw_up(2, &[0x04, 0x05, 0x00])),
        Err(Rejected::Undecodable { .. })
    ));
    // A u16 that overflows (battery_mv = ff ff 7f): undecodable.
    let mut body = vec![0x00, 1, 2, 0, 0, 0, 0, 0];
    body.extend_from_slice(&[0xff, 0xff, 0x7f, 0x00, 0x00]);
    assert!(matches!(
        handle(&mut store, &raw_up(3, &body)),
        Err(Rejected::Undecodable { .. })
    ));
    // Five publishes, one more than MAX_PUBLISHES: undecodable.
    let mut body = vec![0x00, 1, 2, 0, 0, 0, 0, 0, 0xbc, 0x1e, 0x00, 0x05];
    for _ in 0..5 {
        body.extend_from_slice(&[0x01, 0x00]);
    }
    assert!(matches!(
        handle(&mut store, &raw_up(4, &body)),
        Err(Rejected::Undecodable { .. })
    ));
    // A bool that is neither 0 nor 1: undecodable.
    assert!(matches!(
        handle(
            &mut store,
            &raw_up(5, &[0x00, 1, 2, 0, 2, 0, 0, 0, 0, 0, 0])
        ),
        Err(Rejected::Undecodable { .. })
    ));
}

#[test]
fn replies_are_bound_to_their_request() {
    let mut dev = device();
    let mut store = store();
    let a = send(&mut dev, 0, &checkin());
    let reply_a = answer(&mut store, &a, &welcome(None));
    let _ = dev.handle_datagram(1, &reply_a).unwrap();
    // A duplicate of the reply: nothing outstanding.
    assert_eq!(
        dev.handle_datagram(2, &reply_a),
        Err(FrameError::Unexpected)
    );
    // Next request: the old reply must not answer it.
    let b = send(&mut dev, 3, &checkin());
    assert_eq!(
        dev.handle_datagram(4, &reply_a),
        Err(FrameError::Unexpected)
    );
    // A reply sealed with another device's key does not verify.
    let rb = handle(&mut store, &b).unwrap();
    let wrong = Keys::derive(&[9; 32]);
    let mut out = [0u8; MAX_FRAME];
    let n = respond(&wrong, rb.device, rb.counter, &welcome(None), &mut out).unwrap();
    assert_eq!(dev.handle_datagram(5, &out[..n]), Err(FrameError::BadTag));
    // An up frame looped back to the device: wrong direction.
    assert_eq!(dev.handle_datagram(5, &b), Err(FrameError::WrongDirection));
    assert!(dev.is_busy(), "a rejected frame completed the request");
    let ack = reply_to(rb.counter, &Down::Ack);
    assert_eq!(
        dev.handle_datagram(6, &ack).unwrap(),
        Event::Reply(Down::Ack)
    );
}

#[test]
fn an_answer_to_a_counter_with_the_same_low_bits_is_refused() {
    // The echo carries 16 bits; the tag binds all 32.
    let mut dev = device_from(Counters::cold(65_536 + 5));
    let f = send(&mut dev, 0, &checkin());
    assert_eq!(u32::from_le_bytes(f[5..9].try_into().unwrap()), 65_541);
    let stale = reply_to(5, &welcome(None));
    assert_eq!(stale[1..3], f[5..7], "same echo bits on the wire");
    assert_eq!(dev.handle_datagram(1, &stale), Err(FrameError::BadTag));
    assert!(dev.is_busy());
    let good = reply_to(65_541, &welcome(None));
    assert!(dev.handle_datagram(2, &good).is_ok());
}

#[test]
fn retransmission_with_backoff_then_give_up() {
    let mut dev = device();
    let first = send(&mut dev, 0, &checkin());
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
    assert_eq!(dev.handle_timeout(40_000), Timeout::NotYet);
}

#[test]
fn counters_need_a_flash_checkpoint() {
    let mut dev = DeviceEndpoint::new(config(), keys(), Counters::cold(1000));
    assert_eq!(
        dev.send(0, &checkin()),
        Err(SendError::CheckpointRequired {
            reserved_until: 1064
        })
    );
    dev.mark_checkpointed(1064);
    for i in 0..64 {
        let _ = dev.send(i, &checkin()).unwrap();
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
    // A lower reservation never moves it back.
    dev.mark_checkpointed(10);
    assert_eq!(dev.counters().reserved_until, 1064);
}

#[test]
fn the_counter_space_ends_cleanly() {
    let mut dev = DeviceEndpoint::new(config(), keys(), Counters::cold(u32::MAX - 2));
    assert_eq!(
        dev.checkpoint(),
        Some(u32::MAX),
        "the reservation saturates"
    );
    dev.mark_checkpointed(u32::MAX);
    for _ in 0..2 {
        let _ = dev.send(0, &checkin()).unwrap();
        dev.abandon();
    }
    assert_eq!(dev.counters().next, u32::MAX);
    assert_eq!(dev.send(0, &checkin()), Err(SendError::CountersExhausted));
    assert!(!dev.is_busy());
}

#[test]
fn counters_survive_backup_sram_and_a_power_loss_never_reuses_one() {
    let mut store = store();
    let mut dev = device();
    let mut retained = [0u8; Counters::RETAINED_LEN];
    for t in 0..10 {
        let tx = dev.send(t, &checkin()).unwrap();
        retained = tx.counters.to_retained(); // before the frame goes out
        let f = tx.frame.to_vec();
        let _ = handle(&mut store, &f).unwrap();
        dev.abandon();
    }
    // Deep sleep: counters from backup SRAM.
    let restored = Counters::from_retained(&retained).unwrap();
    assert_eq!(restored, dev.counters());
    let mut dev = DeviceEndpoint::new(config(), keys(), restored);
    let f = send(&mut dev, 20, &checkin());
    assert!(!handle(&mut store, &f).unwrap().retransmission);
    // Any corruption of the retained bytes is detected.
    for i in 0..retained.len() {
        let mut bad = retained;
        bad[i] ^= 0x10;
        assert_eq!(Counters::from_retained(&bad), None, "byte {i}");
    }
    assert_eq!(Counters::from_retained(&[0; 12]), None, "zeroed SRAM");
    // Power loss: backup SRAM gone; the flash reservation (64) is the floor.
    let reserved = dev.counters().reserved_until;
    let mut dev = device_from(Counters::cold(reserved));
    let f = send(&mut dev, 30, &checkin());
    let req = handle(&mut store, &f).unwrap();
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
    let f = send(&mut dev, 0, &Up::ChunkRequest(req));
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
    let f = send(
        &mut dev,
        0,
        &Up::ChunkRequest(chunk_request(&[(3, 1)], 256)),
    );
    let (_, frames) = serve(&mut store, &f, &image);
    match dev.handle_datagram(1, &frames[0]).unwrap() {
        Event::Chunk { index, data, .. } => assert_eq!((index, data.len()), (3, 1000 - 768)),
        e => panic!("{e:?}"),
    }
    // Chunk 4 does not exist: the server answers Nack(BadRequest), the device gets the reply.
    let f = send(
        &mut dev,
        2,
        &Up::ChunkRequest(chunk_request(&[(3, 2)], 256)),
    );
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
fn chunks_of_the_wrong_length_or_slot_and_wrong_answers_are_refused() {
    let mut dev = device();
    let mut store = store();
    let f = send(&mut dev, 0, &Up::ChunkRequest(chunk_request(&[(0, 2)], 16)));
    let r = handle(&mut store, &f).unwrap();
    assert_eq!(
        dev.handle_datagram(1, &reply_to(r.counter, &Down::Ack)),
        Err(FrameError::Unexpected)
    );
    for bad in [
        raw_chunk(0, 2, &[1; 16]), // slot past the request
        raw_chunk(0, 0, &[]),      // empty
        raw_chunk(0, 0, &[1; 17]), // longer than the chunk size
    ] {
        assert_eq!(dev.handle_datagram(2, &bad), Err(FrameError::Malformed));
    }
    assert!(dev.is_busy());
    assert!(matches!(
        dev.handle_datagram(3, &raw_chunk(0, 1, &[1; 5])),
        Ok(Event::Chunk { index: 1, .. })
    ));
}

#[test]
fn a_partly_answered_request_closes_as_incomplete() {
    let mut dev = device();
    let mut store = store();
    let image = vec![1u8; 4096];
    let f = send(
        &mut dev,
        0,
        &Up::ChunkRequest(chunk_request(&[(0, 4)], 512)),
    );
    let (_, frames) = serve(&mut store, &f, &image);
    let _ = dev.handle_datagram(100, &frames[0]).unwrap();
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
    // Unsorted input: indices that go backwards are skipped, never asked for twice.
    assert_eq!(p(&[5, 6, 5, 7], 10), Some(vec![(5, 3)]));
    assert_eq!(p(&[5, 9, 6, 10], 10), Some(vec![(5, 1), (9, 2)]));
    // A chunk size the frame cannot carry: no request.
    assert_eq!(
        ChunkRequest::plan(UpdateId(1), Object::Image, 1025, [0], 1),
        None
    );
}

#[test]
fn invalid_chunk_requests_cannot_be_sent_and_are_nacked() {
    let mut dev = device();
    for (k, bad) in [
        chunk_request(&[(0, 0)], 512),
        chunk_request(&[(0, 65)], 512),
        chunk_request(&[(u32::MAX, 2)], 512),
        chunk_request(&[(0, 1)], 0),
        chunk_request(&[(0, 1)], 1025),
        chunk_request(&[(5, 2), (5, 2)], 512), // overlapping: chunk 5 twice
        chunk_request(&[(8, 1), (2, 1)], 512), // decreasing
        chunk_request(&[(u32::MAX, 1), (0, 1)], 512),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(!bad.is_valid(), "{bad:?}");
        assert_eq!(
            dev.send(0, &Up::ChunkRequest(bad.clone())),
            Err(SendError::Encode(EncodeError::Invalid)),
            "{bad:?}"
        );
        // Sealed anyway by a broken peer: authentic, fresh, refused with a reason to Nack.
        let counter = k as u32;
        let body = postcard::to_allocvec(&Up::ChunkRequest(bad)).unwrap();
        assert_eq!(
            handle(&mut MemoryStore::default(), &raw_up(counter, &body)),
            Err(Rejected::UnknownDevice(DEVICE))
        );
        let mut store = store();
        assert_eq!(
            handle(&mut store, &raw_up(counter, &body)),
            Err(Rejected::InvalidRequest {
                device: DEVICE,
                counter
            })
        );
        assert_eq!(store.last_counter(DEVICE), Some(counter));
    }
    assert!(!dev.is_busy());
    assert!(chunk_request(&[(0, 2), (2, 1), (u32::MAX, 1)], 512).is_valid());
}

#[test]
fn a_full_frame_is_refused_cleanly() {
    let mut dev = device();
    let data = [0u8; 1000];
    let publishes = (0..2)
        .map(|_| Publish {
            topic: 1,
            data: &data,
        })
        .collect();
    let Up::CheckIn(base) = checkin() else {
        unreachable!()
    };
    let big = Up::CheckIn(CheckIn { publishes, ..base });
    assert_eq!(
        dev.send(0, &big),
        Err(SendError::Encode(EncodeError::TooLarge))
    );
    assert!(!dev.is_busy());
    assert_eq!(dev.counters().next, 0, "no counter used");
}

#[test]
fn serve_chunks_checks_before_sending_anything() {
    let mut store = store();
    let mut dev = device();
    let f = send(
        &mut dev,
        0,
        &Up::ChunkRequest(chunk_request(&[(0, 2)], 1024)),
    );
    let req = handle(&mut store, &f).unwrap();
    let mut small = [0u8; 100];
    let mut sent = 0;
    assert_eq!(
        serve_chunks(&keys(), &req, &[0u8; 4096], &mut small, |_| sent += 1),
        Err(EncodeError::TooLarge)
    );
    let not_chunks = Request {
        msg: checkin(),
        ..req
    };
    let mut out = [0u8; MAX_FRAME];
    assert_eq!(
        serve_chunks(&keys(), &not_chunks, &[0u8; 4096], &mut out, |_| sent += 1),
        Err(EncodeError::Invalid)
    );
    assert_eq!(sent, 0);
}

#[test]
fn an_inline_offer_always_fits_a_sara_datagram() {
    let manifest = vec![0xEE; MAX_INLINE_MANIFEST];
    let worst = Down::Welcome(Welcome {
        server_time: u32::MAX,
        publishes_acked: u8::MAX,
        sleep: SleepGrant {
            next_checkin_s: u32::MAX,
            awake_extension_ms: u32::MAX,
        },
        offer: Some(UpdateOffer {
            update: UpdateId(u32::MAX),
            version: FirmwareVersion {
                major: u16::MAX,
                minor: u16::MAX,
                patch: u16::MAX,
            },
            image_size: u32::MAX,
            manifest: ManifestRef::for_manifest(&manifest),
        }),
    });
    let f = reply_to(u32::MAX - 1, &worst);
    assert!(f.len() <= 1024, "{} bytes", f.len());
    assert!(matches!(
        ManifestRef::for_manifest(&[0; MAX_INLINE_MANIFEST + 1]),
        ManifestRef::Fetch { len } if len as usize == MAX_INLINE_MANIFEST + 1
    ));
}

#[test]
fn counter_ffffffff_is_refused_as_never_sent() {
    // Authentic (the key holder built it), but the spec says no device sends FFFFFFFF.
    let mut store = store();
    let body = [0x04, 0x84, 0x07]; // Goodbye{900}
    let f = raw_up(u32::MAX, &body);
    assert_eq!(
        handle(&mut store, &f),
        Err(Rejected::Refused(AdmitError::CounterExhausted {
            device: DEVICE
        }))
    );
    assert_eq!(store.last_counter(DEVICE), None, "nothing recorded");
    // Also after the last counter a device may use, which stays acceptable.
    let _ = handle(&mut store, &raw_up(u32::MAX - 1, &body)).unwrap();
    assert_eq!(
        handle(&mut store, &f),
        Err(Rejected::Refused(AdmitError::CounterExhausted {
            device: DEVICE
        }))
    );
    assert_eq!(store.last_counter(DEVICE), Some(u32::MAX - 1));
    // A forgery with that counter is a bad tag first: the distinct error means "authentic".
    let mut forged = f.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        handle(&mut store, &forged),
        Err(Rejected::Frame(FrameError::BadTag))
    );
}

#[test]
fn inserting_a_known_device_again_keeps_its_replay_record() {
    let mut store = store();
    let mut dev = device();
    let old = send(&mut dev, 0, &checkin());
    let _ = handle(&mut store, &old).unwrap();
    dev.abandon();
    let last = send(&mut dev, 1, &checkin());
    let _ = handle(&mut store, &last).unwrap();
    // A tool reloads its device list.
    store.insert(DEVICE, &ROOT_KEY);
    assert_eq!(store.last_counter(DEVICE), Some(1));
    assert_eq!(
        handle(&mut store, &old),
        Err(Rejected::Refused(AdmitError::Replayed {
            counter: 0,
            last: 1
        }))
    );
    // Removing the device is the one way to forget its record.
    assert!(store.remove(DEVICE));
    assert_eq!(
        handle(&mut store, &old),
        Err(Rejected::UnknownDevice(DEVICE))
    );
    assert!(!store.remove(DEVICE));
}

/// Somewhere else than the device (TEST-NET-3, RFC 5737).
fn elsewhere(port: u16) -> core::net::SocketAddr {
    core::net::SocketAddr::from(([203, 0, 113, 9], port))
}

#[test]
fn injected_copies_do_not_use_up_the_devices_retransmissions() {
    let mut store = store();
    let mut dev = device();
    let f = send(&mut dev, 0, &checkin());
    let policy = ReplayPolicy::DEFAULT;
    let at = |store: &mut MemoryStore, from, now| {
        handle_datagram(&f, from, store, now, policy).map(|r| r.retransmission)
    };
    // The device's frame arrives; its answer is lost on the way back.
    assert_eq!(at(&mut store, DEVICE_ADDR, 0), Ok(false));
    // A sniffer injects copies from elsewhere, more than the allowance: each is refused and
    // none is answered (no reflection to the spoofed address either).
    for (i, now) in [10, 20, 30, 40, 50].into_iter().enumerate() {
        assert_eq!(
            at(&mut store, elsewhere(i as u16), now),
            Err(Rejected::Refused(AdmitError::OtherSource { counter: 0 }))
        );
    }
    // The device's own retransmissions are still answered: all three.
    let mut now = 0;
    for _ in 1..policy.max_answers {
        now = dev.poll_timeout().unwrap();
        let Timeout::Retransmit(again) = dev.handle_timeout(now) else {
            panic!("retransmit")
        };
        assert_eq!(again, &f[..]);
        assert_eq!(at(&mut store, DEVICE_ADDR, now), Ok(true));
    }
    // Then the allowance is spent, from anywhere.
    assert_eq!(
        at(&mut store, DEVICE_ADDR, now + 1),
        Err(Rejected::Refused(AdmitError::RetransmissionRefused {
            counter: 0
        }))
    );
    assert_eq!(
        at(&mut store, elsewhere(1), now + 1),
        Err(Rejected::Refused(AdmitError::OtherSource { counter: 0 }))
    );
}

#[test]
fn a_spoofer_of_the_devices_own_address_only_makes_the_server_answer_the_device() {
    // What is left to an on-path attacker who saw the device's address: its copies count
    // against the allowance, but every answer goes to the device itself.
    let mut store = store();
    let mut dev = device();
    let f = send(&mut dev, 0, &checkin());
    let policy = ReplayPolicy::DEFAULT;
    let answered = (0..10u64)
        .filter(|&now| handle_datagram(&f, DEVICE_ADDR, &mut store, now, policy).is_ok())
        .count();
    assert_eq!(
        answered,
        usize::from(policy.max_answers),
        "all to DEVICE_ADDR"
    );
    // And a copy that won the race to the server takes the frame's address: the device's own
    // copies are then refused (as if the attacker had dropped them), and answers go to the
    // attacker's address only, at most max_answers of them.
    let mut store = self::store();
    let f = send(&mut device_from(Counters::cold(100)), 0, &checkin());
    assert!(handle_datagram(&f, elsewhere(7), &mut store, 0, policy).is_ok());
    assert_eq!(
        handle_datagram(&f, DEVICE_ADDR, &mut store, 1, policy),
        Err(Rejected::Refused(AdmitError::OtherSource { counter: 100 }))
    );
}

/// Compiles only for types that wipe themselves when dropped.
fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}

#[test]
fn keys_are_wiped_on_drop_and_on_demand() {
    // Keys, and the SHA-256 state the HMACs of the device and the server key with.
    wiped_on_drop::<Keys>();
    wiped_on_drop::<sha2::Sha256>();
    // Wiping leaves both direction keys all zero: what it seals is tagged with the zero key.
    use zeroize::Zeroize;
    let mut k = keys();
    k.zeroize();
    let mut out = [0u8; MAX_FRAME];
    let n = seal_up(&k, DEVICE, 3, &checkin(), &mut out).unwrap();
    let (signed, tag) = out[..n].split_at(n - 8);
    let want = hmac(
        &[0; 32],
        &[&DEVICE.0.to_le_bytes(), &3u32.to_le_bytes(), signed],
    );
    assert_eq!(tag, &want[..8], "K_up wiped");
    let n = seal_down(&k, DEVICE, 3, &Down::Ack, &mut out).unwrap();
    let (signed, tag) = out[..n].split_at(n - 8);
    let want = hmac(
        &[0; 32],
        &[&DEVICE.0.to_le_bytes(), &3u32.to_le_bytes(), signed],
    );
    assert_eq!(tag, &want[..8], "K_down wiped");
}
