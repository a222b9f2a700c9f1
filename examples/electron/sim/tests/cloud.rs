//! The cloud fixture over real loopback UDP, driven by cloud-proto's `DeviceEndpoint` alone (no
//! modem): a provisioned device checks in, a release is queued while it "sleeps", and the next
//! check-in is offered it; through the link shaper, the bytes on the air are the frames'.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use cloud_proto::{
    CheckIn, Counters, DeviceConfig, DeviceEndpoint, Down, Event, FirmwareVersion, Keys, OtaReport,
    OtaState, Up, UpdateResult,
};
use electron_sim::clock::{ActiveClock, SimClock};
use electron_sim::cloud::{Cloud, CloudConfig, DeviceCredentials, V1, V2};
use electron_sim::link::{LinkConfig, LinkShaper};
use ota_cloud::{Share, Target};

/// Guards against a hang only; never asserted on.
const GUARD: Duration = Duration::from_secs(10);

fn config() -> CloudConfig {
    CloudConfig {
        image_size: 20_000,
        chunk_size: 1024,
        seed: 11,
        next_checkin_s: 900,
    }
}

struct Offered {
    version: FirmwareVersion,
    image_size: u32,
}

/// One wake's check-in running v1; returns the offer and the frame sizes (up, down).
fn check_in(
    dev: &DeviceCredentials,
    counters: &mut Counters,
    to: SocketAddr,
) -> (Option<Offered>, usize, usize) {
    let mut ep = DeviceEndpoint::new(
        DeviceConfig::new(dev.id),
        Keys::derive(&dev.root_key),
        *counters,
    );
    if let Some(r) = ep.checkpoint() {
        ep.mark_checkpointed(r);
    }
    let msg = Up::CheckIn(CheckIn {
        firmware: FirmwareVersion {
            major: V1.major,
            minor: V1.minor,
            patch: V1.patch,
        },
        trial: false,
        ota: OtaReport {
            state: OtaState::Idle,
            result: UpdateResult::Initial,
            download: None,
        },
        battery_mv: 3900,
        forced_sleeps: 0,
        publishes: heapless::Vec::new(),
    });
    let t = ep.send(0, &msg).unwrap();
    *counters = t.counters;
    let frame = t.frame.to_vec();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(GUARD)).unwrap();
    sock.send_to(&frame, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("no answer");
    match ep.handle_datagram(0, &buf[..n]).unwrap() {
        Event::Reply(Down::Welcome(w)) => (
            w.offer.map(|o| Offered {
                version: o.version,
                image_size: o.image_size,
            }),
            frame.len(),
            n,
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn queued_release_is_offered_at_the_next_check_in() {
    let clock = SimClock::standalone();
    let mut cloud = Cloud::start(&config(), clock.server_clock()).unwrap();
    assert!(cloud.data_dir().join("ota.db").exists());
    let dev = cloud.add_device(&["pilot"]).unwrap();
    let mut counters = Counters::cold(0);

    let (offer, _, _) = check_in(&dev, &mut counters, cloud.udp_addr());
    assert!(offer.is_none(), "nothing queued yet");

    // The device sleeps; v2 is queued meanwhile.
    clock.deep_sleep(Duration::from_secs(900));
    let rollout = cloud
        .queue_release(V2, Target::Product, Share::ALL)
        .unwrap();

    let (offer, _, _) = check_in(&dev, &mut counters, cloud.udp_addr());
    let offer = offer.expect("v2 offered");
    assert_eq!(
        (
            offer.version.major,
            offer.version.minor,
            offer.version.patch
        ),
        (2, 0, 0)
    );
    assert_eq!(offer.image_size, 20_000);

    let view = cloud.device_view(dev.id).unwrap().unwrap();
    assert_eq!(view.running, Some(V1));
    assert_eq!(view.wakes, 2);
    let p = cloud.rollout_progress(rollout).unwrap().unwrap();
    assert_eq!((p.targeted, p.offered), (1, 1));
    // Uploading the same version again is idempotent.
    assert_eq!(cloud.upload(V2).unwrap(), cloud.upload(V2).unwrap());
}

#[test]
fn check_in_through_the_link_shaper_counts_the_frames_bytes() {
    let clock = SimClock::standalone();
    let mut cloud = Cloud::start(&config(), clock.server_clock()).unwrap();
    let dev = cloud.add_device(&[]).unwrap();
    let link = LinkShaper::start(
        cloud.udp_addr(),
        LinkConfig {
            rate_bytes_per_s: Some(10_000),
            loss: 0.0,
            seed: 3,
        },
        Some(ActiveClock::new(&clock)),
    )
    .unwrap();
    let mut counters = Counters::cold(0);
    let (_, up, down) = check_in(&dev, &mut counters, link.addr());
    let s = link.stats();
    assert_eq!((s.up_bytes, s.down_bytes), (up as u64, down as u64));
    assert_eq!((s.up_datagrams, s.down_datagrams), (1, 1));
    // Air time only (nothing else moved this clock): (up + down) bytes at 10 kB/s.
    assert_eq!(
        clock.now_us(),
        ((up + down) as u64 * 1_000_000).div_ceil(10_000)
    );
}

#[test]
fn images_are_distinct_signed_and_deterministic() {
    let clock = SimClock::standalone();
    let a = Cloud::start(&config(), clock.server_clock()).unwrap();
    let b = Cloud::start(&config(), clock.server_clock()).unwrap();
    let [v1, v2, v3] = a.images() else {
        panic!("three images")
    };
    assert_ne!(v1.image, v2.image);
    assert_ne!(v2.image, v3.image);
    assert!(v3.self_check_fails && !v2.self_check_fails);
    assert_eq!(a.images(), b.images(), "same seed, same containers");
    for i in a.images() {
        let c = ota_tool::Container::decode(&i.container).unwrap();
        ota_tool::check_container(&c, &[a.trusted_key()], Some(a.hardware_id()), None).unwrap();
    }
    assert!(Cloud::start(
        &CloudConfig {
            chunk_size: 1000,
            ..config()
        },
        clock.server_clock()
    )
    .is_err());
}
