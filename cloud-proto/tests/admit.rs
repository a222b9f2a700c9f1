//! The server's decision without storage: `authenticate` then the pure `admit`, driven
//! directly, with the caller's compare-and-set (here `MemoryStore::replace_last_frame`, or a
//! plain `Option<LastFrame>`) done outside.

mod common;

use cloud_proto::*;
use common::*;

const POLICY: ReplayPolicy = ReplayPolicy::DEFAULT;

fn elsewhere() -> core::net::SocketAddr {
    core::net::SocketAddr::from(([203, 0, 113, 9], 1234))
}

fn goodbye_frame(counter: u32, sleep_s: u32) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let msg = Up::Goodbye(Goodbye { sleep_s });
    let n = seal_up(&keys(), DEVICE, counter, &msg, &mut out).unwrap();
    out[..n].to_vec()
}

fn verified(frame: &[u8]) -> Verified<'_> {
    let (device, _) = peek_up(frame).unwrap();
    assert_eq!(device, DEVICE, "the caller looks up this device's keys");
    authenticate(frame, &keys()).unwrap()
}

/// The caller's side: admit against `db`, compare-and-set the record, return the verdict.
fn admit_and_store<'a>(
    db: &mut Option<LastFrame>,
    frame: &'a [u8],
    from: core::net::SocketAddr,
    now: u64,
) -> Admission<'a> {
    let a = admit(verified(frame), db.as_ref(), from, now, POLICY);
    if let Some(r) = a.record() {
        *db = Some(*r);
    }
    a
}

#[test]
fn authenticate_refuses_what_is_not_the_devices() {
    let f = goodbye_frame(1, 60);
    let mut forged = f.clone();
    forged[10] ^= 1;
    assert_eq!(authenticate(&forged, &keys()), Err(FrameError::BadTag));
    assert_eq!(
        authenticate(&f, &Keys::derive(&[1; 32])),
        Err(FrameError::BadTag)
    );
    assert_eq!(authenticate(&f[..5], &keys()), Err(FrameError::Truncated));
    let v = authenticate(&f, &keys()).unwrap();
    assert_eq!((v.device(), v.counter()), (DEVICE, 1));
}

#[test]
fn a_new_frame_says_what_to_store_and_nothing_is_stored_by_admit() {
    let f = goodbye_frame(5, 60);
    let old = None;
    let a = admit(verified(&f), old.as_ref(), DEVICE_ADDR, 1_000, POLICY);
    let tag: [u8; 8] = f[f.len() - 8..].try_into().unwrap();
    let record = LastFrame {
        counter: 5,
        tag,
        accepted_at_ms: 1_000,
        source: DEVICE_ADDR,
        answers: 1,
    };
    assert_eq!(
        a,
        Admission::New {
            request: Request {
                device: DEVICE,
                counter: 5,
                retransmission: false,
                msg: Up::Goodbye(Goodbye { sleep_s: 60 }),
            },
            record,
        }
    );
    assert_eq!(a.record(), Some(&record));
    // Pure: the same inputs give the same verdict (nothing was recorded anywhere).
    let again = admit(verified(&f), old.as_ref(), DEVICE_ADDR, 1_000, POLICY);
    assert_eq!(again, a);
}

#[test]
fn the_replay_rules_hold_in_admit() {
    let mut db = None;
    let f = goodbye_frame(7, 60);
    assert!(matches!(
        admit_and_store(&mut db, &f, DEVICE_ADDR, 0),
        Admission::New { .. }
    ));
    // A copy from elsewhere: refused, stores nothing, uses up nothing.
    for i in 0..5 {
        let a = admit_and_store(&mut db, &f, elsewhere(), i);
        assert_eq!(
            a,
            Admission::Refused(AdmitError::OtherSource { counter: 7 })
        );
        assert_eq!(a.record(), None);
    }
    assert_eq!(db.unwrap().answers, 1);
    // The device's own copies: answered again, not applied again, max_answers in all.
    for n in 2..=POLICY.max_answers {
        match admit_and_store(&mut db, &f, DEVICE_ADDR, 10) {
            Admission::Retransmission { request, record } => {
                assert!(request.retransmission);
                assert_eq!(record.answers, n);
                assert_eq!(record.accepted_at_ms, 0, "the first acceptance stays");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        admit_and_store(&mut db, &f, DEVICE_ADDR, 11),
        Admission::Refused(AdmitError::RetransmissionRefused { counter: 7 })
    );
    // Too late, even with answers left.
    let mut late = None;
    let _ = admit_and_store(&mut late, &f, DEVICE_ADDR, 0);
    assert_eq!(
        admit_and_store(&mut late, &f, DEVICE_ADDR, POLICY.retransmit_window_ms + 1),
        Admission::Refused(AdmitError::RetransmissionRefused { counter: 7 })
    );
    // The same counter with other content, and an older counter.
    assert_eq!(
        admit_and_store(&mut db, &goodbye_frame(7, 61), DEVICE_ADDR, 12),
        Admission::Refused(AdmitError::CounterReused { counter: 7 })
    );
    assert_eq!(
        admit_and_store(&mut db, &goodbye_frame(6, 60), DEVICE_ADDR, 12),
        Admission::Refused(AdmitError::Replayed {
            counter: 6,
            last: 7
        })
    );
    // Counter FFFFFFFF is never sent: refused with or without a record.
    let max = goodbye_frame(u32::MAX, 60);
    for mut rec in [None, db] {
        assert_eq!(
            admit_and_store(&mut rec, &max, DEVICE_ADDR, 12),
            Admission::Refused(AdmitError::CounterExhausted { device: DEVICE })
        );
    }
    assert_eq!(db.unwrap().counter, 7);
}

#[test]
fn undecodable_and_invalid_bodies_are_nacked_and_use_up_their_counter() {
    let mut db = None;
    let unknown = raw_up(3, &[0x09, 0x01]);
    match admit_and_store(&mut db, &unknown, DEVICE_ADDR, 0) {
        Admission::Nack {
            device,
            counter,
            code,
            record,
        } => {
            assert_eq!(
                (device, counter, code),
                (DEVICE, 3, NackCode::UnknownMessage)
            );
            assert_eq!(record.counter, 3);
        }
        other => panic!("{other:?}"),
    }
    // Its retransmission is nacked again (one answer more).
    match admit_and_store(&mut db, &unknown, DEVICE_ADDR, 1) {
        Admission::Nack { record, .. } => assert_eq!(record.answers, 2),
        other => panic!("{other:?}"),
    }
    // A chunk request asking for nothing: BadRequest.
    let empty = ChunkRequest {
        update: UpdateId(1),
        object: Object::Image,
        chunk_size: 512,
        ranges: heapless::Vec::new(),
    };
    let body = postcard::to_allocvec(&Up::ChunkRequest(empty)).unwrap();
    let bad = raw_up(4, &body);
    assert!(matches!(
        admit_and_store(&mut db, &bad, DEVICE_ADDR, 2),
        Admission::Nack {
            counter: 4,
            code: NackCode::BadRequest,
            ..
        }
    ));
    // A stale copy of the undecodable frame is now a replay, not something to answer.
    assert_eq!(
        admit_and_store(&mut db, &unknown, DEVICE_ADDR, 3),
        Admission::Refused(AdmitError::Replayed {
            counter: 3,
            last: 4
        })
    );
}

#[test]
fn a_compare_and_set_race_is_lost_by_the_second_and_its_retry_sees_the_new_record() {
    // Two server instances share one store; the device's frame and its retransmission reach
    // one each, both read the same old record and both admit the frame as new.
    let mut store = store();
    let prior = goodbye_frame(4, 60);
    let _ = handle(&mut store, &prior).unwrap();
    let f = goodbye_frame(5, 60);
    let old = store.last_frame(DEVICE).unwrap();
    let a = admit(verified(&f), old.as_ref(), DEVICE_ADDR, 100, POLICY);
    let b = admit(verified(&f), old.as_ref(), DEVICE_ADDR, 150, POLICY);
    let (Admission::New { record: ra, .. }, Admission::New { record: rb, .. }) = (&a, &b) else {
        panic!("both new: {a:?} {b:?}")
    };
    // A commits first; B's compare-and-set against the same old record must fail.
    assert!(store.replace_last_frame(DEVICE, old, *ra).unwrap());
    assert!(!store.replace_last_frame(DEVICE, old, *rb).unwrap());
    assert_eq!(
        store.last_frame(DEVICE).unwrap(),
        Some(*ra),
        "B changed nothing"
    );
    // B retries: it reads A's record and the frame is now a retransmission (answered, not
    // applied a second time), counted against A's record.
    let fresh = store.last_frame(DEVICE).unwrap();
    assert_eq!(fresh, Some(*ra));
    let retry = admit(verified(&f), fresh.as_ref(), DEVICE_ADDR, 150, POLICY);
    let Admission::Retransmission { request, record } = &retry else {
        panic!("{retry:?}")
    };
    assert!(request.retransmission);
    assert_eq!(*record, LastFrame { answers: 2, ..*ra });
    assert!(store.replace_last_frame(DEVICE, fresh, *record).unwrap());

    // Two different new frames racing: the older counter's retry is a replay.
    let (g6, g7) = (goodbye_frame(6, 60), goodbye_frame(7, 60));
    let old = store.last_frame(DEVICE).unwrap();
    let a = admit(verified(&g7), old.as_ref(), DEVICE_ADDR, 200, POLICY);
    let b = admit(verified(&g6), old.as_ref(), DEVICE_ADDR, 200, POLICY);
    assert!(store
        .replace_last_frame(DEVICE, old, *a.record().unwrap())
        .unwrap());
    assert!(!store
        .replace_last_frame(DEVICE, old, *b.record().unwrap())
        .unwrap());
    let fresh = store.last_frame(DEVICE).unwrap();
    assert_eq!(
        admit(verified(&g6), fresh.as_ref(), DEVICE_ADDR, 200, POLICY),
        Admission::Refused(AdmitError::Replayed {
            counter: 6,
            last: 7
        })
    );
}

/// A store shared with another instance that commits `frame` first, `races` times, between
/// this instance's read and its compare-and-set.
struct Racing<'f> {
    inner: MemoryStore,
    frame: &'f [u8],
    races: u32,
}

impl DeviceStore for Racing<'_> {
    type Error = core::convert::Infallible;

    fn keys(&mut self, device: DeviceId) -> Result<Option<Keys>, Self::Error> {
        self.inner.keys(device)
    }

    fn last_frame(&mut self, device: DeviceId) -> Result<Option<LastFrame>, Self::Error> {
        self.inner.last_frame(device)
    }

    fn replace_last_frame(
        &mut self,
        device: DeviceId,
        expected: Option<LastFrame>,
        new: LastFrame,
    ) -> Result<bool, Self::Error> {
        if self.races > 0 {
            self.races -= 1;
            // The other instance goes through the same wrapper.
            let _ = handle_datagram(self.frame, DEVICE_ADDR, &mut self.inner, 0, POLICY);
        }
        self.inner.replace_last_frame(device, expected, new)
    }
}

#[test]
fn the_sync_wrapper_retries_a_lost_race_and_gives_up_with_conflict() {
    let f = goodbye_frame(5, 60);
    // Lost once: the retry sees the other instance's record, so the frame is answered as a
    // retransmission (its effects were applied by the other instance).
    let mut racing = Racing {
        inner: store(),
        frame: &f,
        races: 1,
    };
    let req = handle_datagram(&f, DEVICE_ADDR, &mut racing, 0, POLICY).unwrap();
    assert!(req.retransmission);
    assert_eq!(racing.inner.last_frame(DEVICE).unwrap().unwrap().answers, 2);
    // Lost every time (each race a newer frame): Conflict, after three tries.
    let frames: Vec<Vec<u8>> = (10..13).map(|c| goodbye_frame(c, 60)).collect();
    let mut store = store();
    let mut tries = 0;
    struct Newer<'a> {
        inner: &'a mut MemoryStore,
        frames: &'a [Vec<u8>],
        tries: &'a mut usize,
    }
    impl DeviceStore for Newer<'_> {
        type Error = core::convert::Infallible;
        fn keys(&mut self, d: DeviceId) -> Result<Option<Keys>, Self::Error> {
            self.inner.keys(d)
        }
        fn last_frame(&mut self, d: DeviceId) -> Result<Option<LastFrame>, Self::Error> {
            self.inner.last_frame(d)
        }
        fn replace_last_frame(
            &mut self,
            d: DeviceId,
            expected: Option<LastFrame>,
            new: LastFrame,
        ) -> Result<bool, Self::Error> {
            let other = &self.frames[*self.tries];
            *self.tries += 1;
            let _ = handle(self.inner, other).unwrap();
            self.inner.replace_last_frame(d, expected, new)
        }
    }
    let ours = goodbye_frame(20, 60);
    let mut newer = Newer {
        inner: &mut store,
        frames: &frames,
        tries: &mut tries,
    };
    assert_eq!(
        handle_datagram(&ours, DEVICE_ADDR, &mut newer, 0, POLICY),
        Err(RequestError::Conflict)
    );
    assert_eq!(tries, 3);
    assert_eq!(
        store.last_counter(DEVICE),
        Some(12),
        "only the others' frames"
    );
}
