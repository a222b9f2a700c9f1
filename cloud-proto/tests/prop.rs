//! Property tests: every message round-trips; random bytes and mutated valid frames never
//! panic a decoder and are never accepted; the stream framing survives any split.

mod common;

use cloud_proto::*;
use common::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Owned descriptions of messages (proptest values), turned into borrowed messages.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum UpSpec {
    CheckIn {
        fw: (u16, u16, u16),
        trial: bool,
        state: u8,
        result: u8,
        download: Option<(u32, u32)>,
        battery_mv: u16,
        forced_sleeps: u16,
        publishes: Vec<(u16, Vec<u8>)>,
    },
    Decision(u32, u8, u32),
    Chunks(u32, bool, u16, Vec<(u32, u32)>),
    Status(u32, u8, u8),
    Goodbye(u32),
}

const STATES: [OtaState; 4] = [
    OtaState::Idle,
    OtaState::Downloading,
    OtaState::Downloaded,
    OtaState::Updating,
];

fn result(i: u8) -> UpdateResult {
    use UpdateResult::*;
    [
        Initial,
        Success,
        NotEnoughFlash,
        OutOfRam,
        ConnectionLost,
        IntegrityFailure,
        UnsupportedPackage,
        InvalidUri,
        UpdateFailed,
        UnsupportedProtocol,
        Cancelled,
        Deferred,
    ][usize::from(i % 12)]
}

impl UpSpec {
    fn msg(&self) -> Up<'_> {
        match self {
            UpSpec::CheckIn {
                fw,
                trial,
                state,
                result: r,
                download,
                battery_mv,
                forced_sleeps,
                publishes,
            } => Up::CheckIn(CheckIn {
                firmware: FirmwareVersion {
                    major: fw.0,
                    minor: fw.1,
                    patch: fw.2,
                },
                trial: *trial,
                ota: OtaReport {
                    state: STATES[usize::from(*state % 4)],
                    result: result(*r),
                    download: download.map(|(u, b)| DownloadProgress {
                        update: UpdateId(u),
                        bytes_done: b,
                    }),
                },
                battery_mv: *battery_mv,
                forced_sleeps: *forced_sleeps,
                publishes: publishes
                    .iter()
                    .map(|(topic, data)| Publish {
                        topic: *topic,
                        data,
                    })
                    .collect(),
            }),
            UpSpec::Decision(u, kind, x) => Up::UpdateDecision(UpdateDecision {
                update: UpdateId(*u),
                decision: match kind % 5 {
                    0 => Decision::Accept { bytes_done: *x },
                    1 => Decision::Defer {
                        retry_in_s: *x,
                        reason: [
                            DeferReason::LowBattery,
                            DeferReason::AwakeBudget,
                            DeferReason::Busy,
                        ][(*x % 3) as usize],
                    },
                    2 => Decision::Decline(DeclineReason::AlreadyInstalled),
                    _ => Decision::Decline(DeclineReason::Rejected(result(*kind))),
                },
            }),
            UpSpec::Chunks(u, manifest, size, ranges) => Up::ChunkRequest(ChunkRequest {
                update: UpdateId(*u),
                object: if *manifest {
                    Object::Manifest
                } else {
                    Object::Image
                },
                chunk_size: *size,
                ranges: ranges
                    .iter()
                    .map(|&(first, count)| ChunkRange { first, count })
                    .collect(),
            }),
            UpSpec::Status(u, s, r) => Up::UpdateStatus(UpdateStatus {
                update: UpdateId(*u),
                state: STATES[usize::from(*s % 4)],
                result: result(*r),
            }),
            UpSpec::Goodbye(s) => Up::Goodbye(Goodbye { sleep_s: *s }),
        }
    }
}

fn up_spec() -> impl Strategy<Value = UpSpec> {
    prop_oneof![
        (
            any::<(u16, u16, u16)>(),
            any::<bool>(),
            any::<u8>(),
            any::<u8>(),
            proptest::option::of(any::<(u32, u32)>()),
            any::<u16>(),
            any::<u16>(),
            prop::collection::vec(
                (any::<u16>(), prop::collection::vec(any::<u8>(), 0..40)),
                0..=MAX_PUBLISHES
            ),
        )
            .prop_map(
                |(fw, trial, state, result, download, battery_mv, forced_sleeps, publishes)| {
                    UpSpec::CheckIn {
                        fw,
                        trial,
                        state,
                        result,
                        download,
                        battery_mv,
                        forced_sleeps,
                        publishes,
                    }
                }
            ),
        (any::<u32>(), any::<u8>(), any::<u32>()).prop_map(|(u, k, x)| UpSpec::Decision(u, k, x)),
        (
            any::<u32>(),
            any::<bool>(),
            1..=MAX_CHUNK_DATA as u16,
            0..1_000_000u32,
            prop::collection::vec((0..1_000u32, 1..=16u32), 1..=MAX_RANGES),
        )
            .prop_map(|(u, m, s, start, gaps)| {
                // Increasing, non-overlapping ranges (what a valid request holds).
                let mut next = start;
                let ranges = gaps
                    .into_iter()
                    .map(|(gap, count)| {
                        let first = next + gap;
                        next = first + count;
                        (first, count)
                    })
                    .collect();
                UpSpec::Chunks(u, m, s, ranges)
            }),
        (any::<u32>(), any::<u8>(), any::<u8>()).prop_map(|(u, s, r)| UpSpec::Status(u, s, r)),
        any::<u32>().prop_map(UpSpec::Goodbye),
    ]
}

/// update, version, image size, inline manifest or fetched length.
type OfferSpec = (u32, (u16, u16, u16), u32, Result<Vec<u8>, u32>);

#[derive(Debug, Clone)]
enum DownSpec {
    Welcome {
        time: u32,
        acked: u8,
        grant: (u32, u32),
        offer: Option<OfferSpec>,
    },
    Ack,
    Nack(u8),
}

impl DownSpec {
    fn msg(&self) -> Down<'_> {
        match self {
            DownSpec::Welcome {
                time,
                acked,
                grant,
                offer,
            } => Down::Welcome(Welcome {
                server_time: *time,
                publishes_acked: *acked,
                sleep: SleepGrant {
                    next_checkin_s: grant.0,
                    awake_extension_ms: grant.1,
                },
                offer: offer.as_ref().map(|(u, v, size, m)| UpdateOffer {
                    update: UpdateId(*u),
                    version: FirmwareVersion {
                        major: v.0,
                        minor: v.1,
                        patch: v.2,
                    },
                    image_size: *size,
                    manifest: match m {
                        Ok(bytes) => ManifestRef::Inline(bytes),
                        Err(len) => ManifestRef::Fetch { len: *len },
                    },
                }),
            }),
            DownSpec::Ack => Down::Ack,
            DownSpec::Nack(c) => Down::Nack(
                [
                    NackCode::UnknownMessage,
                    NackCode::BadState,
                    NackCode::UnknownUpdate,
                    NackCode::BadRequest,
                ][usize::from(*c % 4)],
            ),
        }
    }
}

fn down_spec() -> impl Strategy<Value = DownSpec> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u8>(),
            any::<(u32, u32)>(),
            proptest::option::of((
                any::<u32>(),
                any::<(u16, u16, u16)>(),
                any::<u32>(),
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..600).prop_map(Ok),
                    any::<u32>().prop_map(Err),
                ],
            )),
        )
            .prop_map(|(time, acked, grant, offer)| DownSpec::Welcome {
                time,
                acked,
                grant,
                offer
            }),
        Just(DownSpec::Ack),
        any::<u8>().prop_map(DownSpec::Nack),
    ]
}

fn seal_up_frame(spec: &UpSpec, counter: u32) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = seal_up(&keys(), DEVICE, counter, &spec.msg(), &mut out).unwrap();
    out[..n].to_vec()
}

fn seal_down_frame(spec: &DownSpec, echo: u32) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = seal_down(&keys(), DEVICE, echo, &spec.msg(), &mut out).unwrap();
    out[..n].to_vec()
}

/// A mutation of a frame that changes it.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    Replace(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Replace(i, b)),
    ]
}

fn mutate(frame: &[u8], m: &Mutation) -> Option<Vec<u8>> {
    let mut f = frame.to_vec();
    match m {
        Mutation::Flip(i, x) => f[i % frame.len()] ^= x,
        Mutation::Truncate(n) => f.truncate(n % frame.len()),
        Mutation::Append(b) => f.extend_from_slice(b),
        Mutation::Replace(i, b) => {
            let at = i % frame.len();
            let end = (at + b.len()).min(f.len());
            f[at..end].copy_from_slice(&b[..end - at]);
        }
    }
    (f != frame).then_some(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn up_messages_round_trip(spec in up_spec(), counter in any::<u32>()) {
        let msg = spec.msg();
        let f = seal_up_frame(&spec, counter);
        let up = open_up(&keys(), &f).unwrap();
        prop_assert_eq!((up.device, up.counter), (DEVICE, counter));
        prop_assert_eq!(up.msg, msg);
    }

    #[test]
    fn down_messages_round_trip(spec in down_spec(), echo in any::<u32>()) {
        let f = seal_down_frame(&spec, echo);
        let d = open_down(&keys(), DEVICE, &f, |l| (l == echo as u16).then_some(echo))
            .unwrap();
        prop_assert_eq!(d, DownFrame::Message { echo, msg: spec.msg() });
    }

    #[test]
    fn chunk_frames_round_trip(
        data in prop::collection::vec(any::<u8>(), 0..=MAX_CHUNK_DATA),
        echo in any::<u32>(),
        slot in any::<u8>(),
    ) {
        let mut out = [0u8; MAX_FRAME];
        let n = seal_chunk(&keys(), DEVICE, echo, slot, &data, &mut out).unwrap();
        let d = open_down(&keys(), DEVICE, &out[..n], |_| Some(echo)).unwrap();
        prop_assert_eq!(d, DownFrame::Chunk { echo, slot, data: &data });
    }

    #[test]
    fn random_bytes_are_never_accepted(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        let mut store = store();
        prop_assert!(handle_datagram(&bytes, DEVICE_ADDR, &mut store, 0, ReplayPolicy::DEFAULT).is_err());
        prop_assert!(open_down(&keys(), DEVICE, &bytes, |l| Some(u32::from(l))).is_err());
        let mut dev = device();
        let _ = dev.send(0, &checkin()).unwrap();
        prop_assert!(dev.handle_datagram(1, &bytes).is_err());
        prop_assert!(dev.is_busy());
    }

    #[test]
    fn mutated_up_frames_are_never_accepted(
        spec in up_spec(),
        counter in 1..u32::MAX,
        m in mutation(),
    ) {
        let f = seal_up_frame(&spec, counter);
        if let Some(bad) = mutate(&f, &m) {
            let mut store = store();
            prop_assert!(handle_datagram(&bad, DEVICE_ADDR, &mut store, 0, ReplayPolicy::DEFAULT).is_err());
            prop_assert_eq!(store.last_counter(DEVICE), None);
        }
    }

    #[test]
    fn mutated_down_frames_are_never_accepted(
        spec in down_spec(),
        m in mutation(),
    ) {
        let mut dev = device();
        let _ = dev.send(0, &checkin()).unwrap();
        let f = seal_down_frame(&spec, 0);
        if let Some(bad) = mutate(&f, &m) {
            prop_assert!(dev.handle_datagram(1, &bad).is_err());
            prop_assert!(dev.is_busy(), "a rejected frame changed the state");
        }
        prop_assert!(dev.handle_datagram(2, &f).is_ok());
    }

    #[test]
    fn stream_frames_survive_any_split_and_garbage_before(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 1..6),
        garbage in prop::collection::vec(1..=255u8, 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut wire = garbage.clone();
        if !garbage.is_empty() {
            wire.push(0); // the garbage ends at a delimiter, as a receiver joining mid-stream sees
        }
        for f in &frames {
            let mut enc = vec![0u8; stream_encoded_max(f.len())];
            let n = stream_encode(f, &mut enc).unwrap();
            wire.extend_from_slice(&enc[..n]);
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cut_points.push(wire.len());
        cut_points.sort();
        let mut dec = StreamDecoder::<{ stream_encoded_max(MAX_FRAME) }>::new();
        let mut got = Vec::new();
        let mut errors = 0;
        let mut start = 0;
        for end in cut_points {
            let mut piece = &wire[start..end];
            while !piece.is_empty() {
                let (used, out) = dec.feed(piece);
                match out {
                    Some(Ok(f)) => got.push(f.to_vec()),
                    Some(Err(_)) => errors += 1,
                    None => {}
                }
                piece = &piece[used..];
            }
            start = end;
        }
        // The garbage may decode as one bogus frame or an error; every real frame follows.
        let tail = &got[got.len().saturating_sub(frames.len())..];
        prop_assert_eq!(tail, &frames[..]);
        prop_assert!(got.len() + errors <= frames.len() + 1);
    }

    #[test]
    fn a_valid_request_never_names_a_chunk_twice(
        ranges in prop::collection::vec((any::<u32>(), 0..70u32), 0..=MAX_RANGES),
        chunk_size in any::<u16>(),
    ) {
        let req = ChunkRequest {
            update: UpdateId(1),
            object: Object::Image,
            chunk_size,
            ranges: ranges.iter().map(|&(first, count)| ChunkRange { first, count }).collect(),
        };
        if req.is_valid() {
            let idx: Vec<u32> = req.slots().map(|(_, i)| i).collect();
            prop_assert_eq!(idx.len() as u32, req.chunk_count());
            prop_assert!(idx.windows(2).all(|w| w[0] < w[1]), "{:?}", idx);
            prop_assert!(req.chunk_count() <= MAX_CHUNKS_PER_REQUEST);
            prop_assert!(chunk_size >= 1 && usize::from(chunk_size) <= MAX_CHUNK_DATA);
        }
    }

    #[test]
    fn stream_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let mut dec = StreamDecoder::<64>::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (used, out) = dec.feed(rest);
            if let Some(Ok(f)) = out {
                prop_assert!(f.len() <= 64);
            }
            prop_assert!(used >= 1 && used <= rest.len());
            rest = &rest[used..];
        }
    }
}
