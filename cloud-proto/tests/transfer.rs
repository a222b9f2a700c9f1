//! A 256 KiB transfer over a simulated lossy datagram link (drop, duplicate, reorder, corrupt),
//! interrupted by deep sleeps at random points, some of them with backup SRAM lost: it
//! completes, no chunk reaches the application twice, nothing is applied twice on the server,
//! and retransmissions stay bounded.

mod common;

use cloud_proto::*;
use common::*;

/// xorshift64*: a deterministic generator for the simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Default, Debug)]
struct LinkStats {
    sent: u64,
    bytes: u64,
    dropped: u64,
    duplicated: u64,
    corrupted: u64,
}

/// One direction of a datagram link: serialisation at a fixed rate, latency with jitter (which
/// reorders), and faults.
struct Link {
    queue: Vec<(u64, u64, Vec<u8>)>, // (arrival, sequence, bytes)
    seq: u64,
    free_at: u64,
    us_per_byte: u64,
    stats: LinkStats,
}

impl Link {
    fn new(kbit_per_s: u64) -> Self {
        Link {
            queue: Vec::new(),
            seq: 0,
            free_at: 0,
            us_per_byte: 8_000 / kbit_per_s,
            stats: LinkStats::default(),
        }
    }

    fn send(&mut self, rng: &mut Rng, now_ms: u64, frame: &[u8]) {
        self.stats.sent += 1;
        self.stats.bytes += frame.len() as u64;
        let depart = self.free_at.max(now_ms * 1000);
        self.free_at = depart + frame.len() as u64 * self.us_per_byte;
        if rng.chance(8) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if rng.chance(4) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut f = frame.to_vec();
            if rng.chance(3) {
                let i = rng.below(f.len() as u64) as usize;
                f[i] ^= 1 << rng.below(8);
                self.stats.corrupted += 1;
            }
            let arrival = self.free_at / 1000 + 150 + rng.below(400);
            self.seq += 1;
            self.queue.push((arrival, self.seq, f));
        }
    }

    fn next_due(&self) -> Option<u64> {
        self.queue.iter().map(|q| q.0).min()
    }

    fn poll(&mut self, now: u64) -> Option<Vec<u8>> {
        let i = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, q)| q.0 <= now)
            .min_by_key(|(_, q)| (q.0, q.1))?
            .0;
        Some(self.queue.swap_remove(i).2)
    }

    /// The device sleeps: its modem is off, whatever is in flight is lost.
    fn clear(&mut self) {
        self.queue.clear();
    }
}

/// The reference behaviour of a server for this test: one update, served statelessly.
struct Server {
    store: MemoryStore,
    image: Vec<u8>,
    manifest: Vec<u8>,
    decisions_applied: u32,
    statuses_applied: u32,
    checkins_applied: u32,
    chunk_frames: u64,
    applied: std::collections::HashSet<u32>,
}

impl Server {
    fn handle(&mut self, now: u64, frame: &[u8], mut send: impl FnMut(&[u8])) {
        let Ok(req) = handle_datagram(
            frame,
            DEVICE_ADDR,
            &mut self.store,
            now,
            ReplayPolicy::DEFAULT,
        ) else {
            return; // rejected frames are dropped (corrupt ones land here)
        };
        if !req.retransmission {
            // The server applies a request's effects once: never for two frames with one counter.
            assert!(
                self.applied.insert(req.counter),
                "counter {} applied twice",
                req.counter
            );
        }
        let keys = keys();
        let mut out = [0u8; MAX_FRAME];
        let mut reply = |msg: &Down<'_>| {
            let n = respond(&keys, req.device, req.counter, msg, &mut out).unwrap();
            send(&out[..n]);
        };
        match &req.msg {
            Up::CheckIn(c) => {
                if !req.retransmission {
                    self.checkins_applied += 1;
                }
                let done = c.ota.state == OtaState::Downloaded;
                reply(&Down::Welcome(Welcome {
                    server_time: 1_764_000_000,
                    publishes_acked: 0,
                    sleep: SleepGrant {
                        next_checkin_s: 900,
                        awake_extension_ms: 0,
                    },
                    offer: (!done).then_some(UpdateOffer {
                        update: UpdateId(7),
                        version: FirmwareVersion {
                            major: 2,
                            minor: 0,
                            patch: 0,
                        },
                        image_size: self.image.len() as u32,
                        manifest: ManifestRef::Inline(&self.manifest),
                    }),
                }));
            }
            Up::UpdateDecision(_) => {
                if !req.retransmission {
                    self.decisions_applied += 1;
                }
                reply(&Down::Ack);
            }
            Up::UpdateStatus(_) => {
                if !req.retransmission {
                    self.statuses_applied += 1;
                }
                reply(&Down::Ack);
            }
            Up::Goodbye(_) => reply(&Down::Ack),
            Up::ChunkRequest(_) => {
                let mut frames = Vec::new();
                let served = serve_chunks(&keys, &req, &self.image, &mut out, |f| {
                    frames.push(f.to_vec())
                })
                .unwrap();
                assert!(matches!(served, Served::Chunks(_)), "{served:?}");
                self.chunk_frames += frames.len() as u64;
                for f in frames {
                    send(&f);
                }
            }
        }
    }
}

/// What survives a deep sleep on the device: flash (chunks held, counter reservation) and,
/// unless the battery died, backup SRAM (counters).
struct Persistent {
    staged: Vec<u8>,
    have: Vec<bool>,
    reservation: u32,
    backup_sram: Option<[u8; Counters::RETAINED_LEN]>,
    delivered: Vec<u32>,
    status_sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    CheckIn,
    Decide,
    Download,
    Report,
    Done,
}

#[derive(Debug, Default)]
struct Outcome {
    wakes: u32,
    sram_losses: u32,
    requests: u64,
    retransmissions: u64,
    incomplete: u64,
    gave_up: u64,
    up: LinkStats,
    down: LinkStats,
    chunk_frames: u64,
}

const CHUNK: u16 = 512;

fn run(seed: u64, image_len: usize) -> Outcome {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let image: Vec<u8> = (0..image_len).map(|_| rng.next() as u8).collect();
    let chunks = image_len.div_ceil(usize::from(CHUNK));
    let mut server = Server {
        store: store(),
        image: image.clone(),
        manifest: vec![0x4D; 200],
        decisions_applied: 0,
        statuses_applied: 0,
        checkins_applied: 0,
        chunk_frames: 0,
        applied: Default::default(),
    };
    let mut p = Persistent {
        staged: vec![0xFF; image_len],
        have: vec![false; chunks],
        reservation: 0,
        backup_sram: None,
        delivered: vec![0; chunks],
        status_sent: false,
    };
    let mut up = Link::new(40);
    let mut down = Link::new(120);
    let mut out = Outcome::default();
    let mut now: u64 = 0;

    while !p.status_sent {
        out.wakes += 1;
        assert!(out.wakes < 400, "seed {seed}: no progress after 400 wakes");
        // Wake: counters from backup SRAM, or from the flash reservation after a power loss.
        let counters = match p.backup_sram.and_then(|b| Counters::from_retained(&b)) {
            Some(c) => c,
            None => {
                out.sram_losses += 1;
                Counters::cold(p.reservation)
            }
        };
        let mut dev = DeviceEndpoint::new(config(), Keys::derive(&ROOT_KEY), counters);
        let wake_start = now;
        let budget_end = wake_start + 20_000;
        // The wake is cut short at a random point (an interrupt, a reset, a brown-out).
        let wake_end = wake_start + 1_000 + rng.below(19_000);
        let mut phase = Phase::CheckIn;

        while now < wake_end && phase != Phase::Done {
            // Deliver what is due.
            while let Some(f) = up.poll(now) {
                let mut replies = Vec::new();
                server.handle(now, &f, |r| replies.push(r.to_vec()));
                for r in replies {
                    down.send(&mut rng, now, &r);
                }
            }
            while let Some(f) = down.poll(now) {
                match dev.handle_datagram(now, &f) {
                    Ok(Event::Reply(Down::Welcome(w))) => {
                        phase = if p.have.iter().all(|h| *h) {
                            Phase::Report
                        } else if w.offer.is_some() {
                            Phase::Decide
                        } else {
                            Phase::Done
                        };
                    }
                    Ok(Event::Reply(Down::Ack)) => {
                        phase = match phase {
                            Phase::Decide => Phase::Download,
                            Phase::Report => {
                                p.status_sent = true;
                                Phase::Done
                            }
                            other => other,
                        }
                    }
                    Ok(Event::Reply(other)) => panic!("seed {seed}: unexpected {other:?}"),
                    Ok(Event::Chunk { index, data, .. }) => {
                        let i = index as usize;
                        p.delivered[i] += 1;
                        assert!(!p.have[i], "seed {seed}: chunk {i} delivered twice");
                        let at = i * usize::from(CHUNK);
                        p.staged[at..at + data.len()].copy_from_slice(data);
                        p.have[i] = true;
                    }
                    Err(_) => {} // corrupt, late, duplicate: refused, nothing changes
                }
            }
            // Timers.
            if dev.poll_timeout().is_some_and(|t| t <= now) {
                match dev.handle_timeout(now) {
                    Timeout::Retransmit(f) => {
                        out.retransmissions += 1;
                        let f = f.to_vec();
                        up.send(&mut rng, now, &f);
                    }
                    Timeout::Incomplete { .. } => out.incomplete += 1,
                    Timeout::GaveUp => out.gave_up += 1,
                    Timeout::NotYet => {}
                }
            }
            // Next request.
            if !dev.is_busy() && phase != Phase::Done {
                let missing = || (0..chunks as u32).filter(|&i| !p.have[i as usize]);
                let bytes_done =
                    (p.have.iter().filter(|h| **h).count() * usize::from(CHUNK)).min(image_len);
                let msg = match phase {
                    Phase::CheckIn => Some(Up::CheckIn(CheckIn {
                        firmware: FirmwareVersion {
                            major: 1,
                            minor: 0,
                            patch: 0,
                        },
                        trial: false,
                        ota: OtaReport {
                            state: if missing().next().is_none() {
                                OtaState::Downloaded
                            } else if bytes_done > 0 {
                                OtaState::Downloading
                            } else {
                                OtaState::Idle
                            },
                            result: UpdateResult::Initial,
                            download: (bytes_done > 0).then_some(DownloadProgress {
                                update: UpdateId(7),
                                bytes_done: bytes_done as u32,
                            }),
                        },
                        battery_mv: 3800,
                        forced_sleeps: 0,
                        publishes: heapless::Vec::new(),
                    })),
                    Phase::Decide => Some(Up::UpdateDecision(UpdateDecision {
                        update: UpdateId(7),
                        decision: Decision::Accept {
                            bytes_done: bytes_done as u32,
                        },
                    })),
                    Phase::Download => {
                        // What the remaining awake budget can carry, at a guessed 25 ms per
                        // chunk; the budget is the device's, the cut at wake_end is not known.
                        let fit = (budget_end.saturating_sub(now) / 25) as u32;
                        match ChunkRequest::plan(UpdateId(7), Object::Image, CHUNK, missing(), fit)
                        {
                            Some(r) => {
                                out.requests += 1;
                                Some(Up::ChunkRequest(r))
                            }
                            None if missing().next().is_none() => {
                                phase = Phase::Report;
                                Some(Up::UpdateStatus(UpdateStatus {
                                    update: UpdateId(7),
                                    state: OtaState::Downloaded,
                                    result: UpdateResult::Initial,
                                }))
                            }
                            None => {
                                phase = Phase::Done; // budget spent: sleep
                                None
                            }
                        }
                    }
                    Phase::Report => Some(Up::UpdateStatus(UpdateStatus {
                        update: UpdateId(7),
                        state: OtaState::Downloaded,
                        result: UpdateResult::Initial,
                    })),
                    Phase::Done => None,
                };
                if let Some(msg) = msg {
                    let frame = loop {
                        match dev.send(now, &msg) {
                            Ok(t) => {
                                // Counters to backup SRAM before the frame goes out.
                                p.backup_sram = Some(t.counters.to_retained());
                                break t.frame.to_vec();
                            }
                            Err(SendError::CheckpointRequired { reserved_until }) => {
                                p.reservation = reserved_until; // "flash write"
                                dev.mark_checkpointed(reserved_until);
                            }
                            Err(e) => panic!("seed {seed}: {e:?}"),
                        }
                    };
                    up.send(&mut rng, now, &frame);
                }
            }
            // Advance to the next event.
            let next = [up.next_due(), down.next_due(), dev.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(wake_end)
                .max(now + 1);
            now = next.min(wake_end);
        }
        // Sleep: volatile state gone, frames in flight lost, sometimes backup SRAM too.
        drop(dev);
        up.clear();
        down.clear();
        if rng.chance(15) {
            p.backup_sram = None;
        }
        now = wake_end + 900_000;
    }
    assert_eq!(p.staged, image, "seed {seed}: image differs");
    assert!(p.delivered.iter().all(|&d| d == 1), "seed {seed}");
    out.up = up.stats;
    out.down = down.stats;
    out.chunk_frames = server.chunk_frames;
    // A status whose Ack was lost to a sleep is sent again next wake, as a new request.
    assert!(server.statuses_applied >= 1, "seed {seed}");
    assert!(server.checkins_applied <= out.wakes);
    out
}

#[test]
fn a_256_kib_transfer_completes_over_a_lossy_link_across_random_sleeps() {
    let chunks = 256 * 1024 / u64::from(CHUNK);
    for seed in 1..=12 {
        let o = run(seed, 256 * 1024);
        println!(
            "seed {seed:2}: {:3} wakes ({} without backup SRAM), {:4} requests, {:3} \
             retransmissions, {:3} incomplete, {} gave up; chunk frames served {} for {chunks} \
             chunks; up {}/{}/{} dropped/dup/corrupt of {}, down {}/{}/{} of {}",
            o.wakes,
            o.sram_losses,
            o.requests,
            o.retransmissions,
            o.incomplete,
            o.gave_up,
            o.chunk_frames,
            o.up.dropped,
            o.up.duplicated,
            o.up.corrupted,
            o.up.sent,
            o.down.dropped,
            o.down.duplicated,
            o.down.corrupted,
            o.down.sent,
        );
        // Bounded retransmissions: a request is retransmitted only when it or every one of its
        // answers was lost, which at these loss rates is rare.
        assert!(
            o.retransmissions * 2 <= o.requests + 20,
            "seed {seed}: {} retransmissions for {} requests",
            o.retransmissions,
            o.requests
        );
        // Chunks served at most about twice their number (lost ones are asked for again).
        assert!(
            o.chunk_frames <= chunks * 2,
            "seed {seed}: {} chunk frames for {chunks} chunks",
            o.chunk_frames
        );
    }
}

#[test]
fn a_clean_link_without_interruptions_needs_no_retransmission() {
    // Control: the same machinery with no faults transfers in one wake with no waste.
    let mut rng = Rng(5);
    let image: Vec<u8> = (0..64 * 1024).map(|_| rng.next() as u8).collect();
    let mut dev = device();
    let mut server = Server {
        store: store(),
        image: image.clone(),
        manifest: vec![],
        decisions_applied: 0,
        statuses_applied: 0,
        checkins_applied: 0,
        chunk_frames: 0,
        applied: Default::default(),
    };
    let chunks = image.len() / usize::from(CHUNK);
    let mut staged = vec![0u8; image.len()];
    let mut have = vec![false; chunks];
    let mut now = 0;
    while let Some(req) = ChunkRequest::plan(
        UpdateId(7),
        Object::Image,
        CHUNK,
        (0..chunks as u32).filter(|&i| !have[i as usize]),
        64,
    ) {
        let f = dev
            .send(now, &Up::ChunkRequest(req))
            .unwrap()
            .frame
            .to_vec();
        let mut frames = Vec::new();
        server.handle(now, &f, |r| frames.push(r.to_vec()));
        for fr in frames {
            now += 1;
            if let Event::Chunk { index, data, .. } = dev.handle_datagram(now, &fr).unwrap() {
                let at = index as usize * usize::from(CHUNK);
                staged[at..at + data.len()].copy_from_slice(data);
                assert!(!have[index as usize]);
                have[index as usize] = true;
            }
        }
        assert!(!dev.is_busy());
    }
    assert_eq!(staged, image);
    assert_eq!(server.chunk_frames, chunks as u64);
}
