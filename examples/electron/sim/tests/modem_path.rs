//! The path the wake cycle will use, end to end with raw AT commands (no driver): the SARA
//! emulator's UDP socket → the link shaper → the in-process server, and back. A check-in from
//! device 1 of a set-up simulation gets a `Welcome` carrying the queued v2, the shaper counts
//! exactly the frames' bytes, and the emulator sees no interface violation.

use std::time::Duration;

use cloud_proto::{
    CheckIn, Counters, DeviceConfig, DeviceEndpoint, Down, Event, FirmwareVersion, Keys, OtaReport,
    OtaState, Up, UpdateResult,
};
use electron_sim::cloud::{V1, V2};
use electron_sim::sim::{Scenario, Simulation};
use embedded_hal::delay::DelayNs;
use embedded_io::{Read, ReadReady, Write};
use modem_ublox_emu::{Emulator, Uart};

fn drain(uart: &mut Uart) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while uart.read_ready().unwrap() {
        let n = uart.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Sends a command line and steps 1 ms of virtual time at a time (the emulator's `Delay`,
/// which also lets loopback peers run) until `until` shows up. The bound is a hang guard.
fn at_until(emu: &Emulator, uart: &mut Uart, cmd: &[u8], until: &[u8]) -> Vec<u8> {
    uart.write_all(cmd).unwrap();
    let mut delay = emu.delay();
    let mut out = Vec::new();
    for _ in 0..60_000 {
        out.extend(drain(uart));
        if out.windows(until.len()).any(|w| w == until) {
            return out;
        }
        delay.delay_ms(1);
    }
    panic!(
        "no {:?} in {:?}",
        until.escape_ascii().to_string(),
        out.escape_ascii().to_string()
    );
}

/// The payload of `+USORF: 0,"127.0.0.1",PORT,LEN,"<LEN bytes>"`.
fn usorf_payload(resp: &[u8]) -> Vec<u8> {
    let key = b"\"127.0.0.1\",";
    let at = resp.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let rest = &resp[at..];
    let comma = rest.iter().position(|&b| b == b',').unwrap();
    let rest = &rest[comma + 1..];
    let comma = rest.iter().position(|&b| b == b',').unwrap();
    let len: usize = std::str::from_utf8(&rest[..comma])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rest[comma + 1], b'"');
    rest[comma + 2..comma + 2 + len].to_vec()
}

#[test]
fn check_in_through_the_emulator_and_the_shaper_is_offered_v2() {
    let mut sim = Simulation::setup(&Scenario {
        image_size: 4096,
        ..Scenario::default()
    })
    .unwrap();
    sim.queue_release(V2).unwrap();
    let dev = &mut sim.devices[0];
    let emu = dev.emulator.clone();
    let mut uart = emu.uart();
    emu.power_on_now();
    at_until(&emu, &mut uart, b"ATE0\r\n", b"OK\r\n");
    emu.advance(Duration::from_secs(5)); // registration
    drain(&mut uart);
    at_until(&emu, &mut uart, b"AT+UPSDA=0,3\r\n", b"OK\r\n");
    at_until(
        &emu,
        &mut uart,
        b"AT+USOCR=17\r\n",
        b"+USOCR: 0\r\n\r\nOK\r\n",
    );

    let creds = dev.credentials.clone();
    let mut ep = DeviceEndpoint::new(
        DeviceConfig::new(creds.id),
        Keys::derive(&creds.root_key),
        Counters::cold(0),
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
    let now = dev.clock.ms_since_reset();
    let frame = ep.send(now, &msg).unwrap().frame.to_vec();
    let port = dev.server.port();
    let cmd = format!("AT+USOST=0,\"127.0.0.1\",{port},{}\r\n", frame.len());
    at_until(&emu, &mut uart, cmd.as_bytes(), b"@");
    emu.delay().delay_ms(50); // u-blox: wait 50 ms after '@'
    let t_sent = dev.clock.now_us();
    at_until(&emu, &mut uart, &frame, b"\r\nOK\r\n");
    at_until(&emu, &mut uart, b"", b"+UUSORF: 0,");
    let resp = at_until(&emu, &mut uart, b"AT+USORF=0,1024\r\n", b"\r\nOK\r\n");
    let answer = usorf_payload(&resp);

    match ep
        .handle_datagram(dev.clock.ms_since_reset(), &answer)
        .unwrap()
    {
        Event::Reply(Down::Welcome(w)) => {
            let offer = w.offer.expect("v2 offered");
            assert_eq!(offer.version.major, 2);
            assert_eq!(offer.image_size, 4096);
        }
        other => panic!("{other:?}"),
    }
    let s = sim.link.stats();
    assert_eq!(
        (s.up_bytes, s.down_bytes),
        (frame.len() as u64, answer.len() as u64)
    );
    // The air time was charged to this device's clock (10 kB/s), on top of the AT traffic.
    let link = sim.scenario.link;
    assert_eq!(
        s.air_time,
        link.air_time(frame.len()) + link.air_time(answer.len())
    );
    assert!(dev.clock.now_us() - t_sent >= s.air_time.as_micros() as u64);
    assert!(dev.take_violations().is_empty(), "{:?}", emu.violations());
    let view = sim.cloud.device_view(creds.id).unwrap().unwrap();
    assert_eq!((view.running, view.wakes), (Some(V1), 1));
}
