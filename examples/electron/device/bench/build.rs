//! Puts memory.x where cortex-m-rt's link.x finds it, and makes the bench's inputs on the
//! host with the real crates (nothing in the bench is a hard-coded result):
//!
//! * `manifest.bin`: the signed manifest of a 96 KiB image (ota-core `build_signed`, an
//!   Ed25519 key from a fixed seed), and `public_key.bin`;
//! * `welcome.bin`: the cloud's answer to the device's check-in (cloud-proto's server side:
//!   `handle_datagram` over a `MemoryStore`, `respond`), and `checkin.bin`, the frame the
//!   device must build;
//! * `modem.bin`: the SARA-U260's bytes for one UDP socket that sends the chunk request and
//!   receives the cloud's chunk frames (cloud-proto `serve_chunks`), recorded from
//!   `modem-ublox-emu` while the host build of `modem-ublox` talks to it and a loopback UDP
//!   socket plays the cloud; then replayed to a fresh driver on the host (`src/replay.rs`)
//!   to check it is complete before the bench embeds it.
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::{env, fs, path::PathBuf};

use cloud_proto::{
    handle_datagram, respond, serve_chunks, Down, Event, MemoryStore, ReplayPolicy, SleepGrant,
    Welcome, MAX_FRAME,
};
use modem_ublox::{Apn, Family, Modem, ModemConfig, NoPin, Protocol, Registration};
use modem_ublox_emu::{Dir, Emulator, Model, Record};
use ota_core::{HardwareId, ImageParams, SecurityCounter, Version};

#[allow(dead_code)]
#[path = "src/scenario.rs"]
mod scenario;

#[allow(dead_code)]
#[path = "src/replay.rs"]
mod replay;

#[allow(dead_code)]
#[path = "src/ramflash.rs"]
mod ramflash;

/// The seed of the key the host signs the manifest with (test material, not a real key).
const SIGNING_SEED: [u8; 32] = *b"electron-bench signing seed, pub";
/// The APN of the bring-up the generator runs on the emulator (Particle's SIM).
const APN: &str = "spark.telefonica.com";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/scenario.rs");
    println!("cargo:rerun-if-changed=src/replay.rs");

    self_check();

    let mut image = Vec::with_capacity(scenario::IMAGE_SIZE);
    scenario::image_byte_stream(|b| image.push(b));

    // The signed manifest.
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(SIGNING_SEED));
    let params = ImageParams {
        hardware_id: HardwareId::from_name(scenario::HARDWARE).expect("hardware id"),
        version: Version::new(1, 1, 0),
        security_counter: SecurityCounter(scenario::STORED_COUNTER + 1),
        chunk_size: u32::from(scenario::CHUNK_SIZE),
        base_digest: None,
    };
    let mut manifest = vec![0u8; params.manifest_len(image.len()).expect("params")];
    let n = ota_core::build_signed(&params, &image, &kp, &mut manifest).expect("sign");
    manifest.truncate(n);
    fs::write(out.join("manifest.bin"), &manifest).unwrap();
    fs::write(out.join("public_key.bin"), kp.pk.as_ref()).unwrap();
    // The digest the bench's SHA-256 run over the image's first 16 KiB must find.
    let sha = ota_core::Sha256Digest::of(&image[..16 * 1024]);
    fs::write(out.join("sha256_16k.bin"), sha.0).unwrap();

    // The check-in and the cloud's answer.
    let mut store = MemoryStore::default();
    store.insert(scenario::DEVICE_ID, &scenario::ROOT_KEY);
    let keys = cloud_proto::Keys::derive(&scenario::ROOT_KEY);
    let source = SocketAddr::from((Ipv4Addr::new(10, 174, 88, 81), 5684));
    let mut ep = scenario::endpoint();
    let checkin = ep
        .send(0, &scenario::checkin())
        .expect("check-in")
        .frame
        .to_vec();
    let req = handle_datagram(&checkin, source, &mut store, 0, ReplayPolicy::DEFAULT)
        .expect("the cloud accepts the check-in");
    let welcome = Down::Welcome(Welcome {
        server_time: 1_796_000_000,
        publishes_acked: 1,
        sleep: SleepGrant {
            next_checkin_s: 3_600,
            awake_extension_ms: 0,
        },
        offer: None,
    });
    let mut reply = vec![0u8; MAX_FRAME];
    let n = respond(&keys, req.device, req.counter, &welcome, &mut reply).expect("welcome");
    reply.truncate(n);
    match ep.handle_datagram(1, &reply) {
        Ok(Event::Reply(Down::Welcome(_))) => {}
        other => panic!("the host endpoint refuses the welcome: {other:?}"),
    }
    fs::write(out.join("checkin.bin"), &checkin).unwrap();
    fs::write(out.join("welcome.bin"), &reply).unwrap();

    // The chunk request and its chunk frames.
    let request = ep
        .send(2, &scenario::chunk_request().expect("plan"))
        .expect("chunk request")
        .frame
        .to_vec();
    let req = handle_datagram(&request, source, &mut store, 2, ReplayPolicy::DEFAULT)
        .expect("the cloud accepts the chunk request");
    let mut frames = Vec::new();
    let mut buf = vec![0u8; MAX_FRAME];
    serve_chunks(&keys, &req, &image, &mut buf, |f| frames.push(f.to_vec())).expect("serve");
    assert_eq!(frames.len(), scenario::CHUNKS as usize);

    // The modem: bring-up on the emulator (not replayed), then the socket exchange (replayed).
    let cloud = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP socket");
    let cloud_addr = cloud.local_addr().unwrap();
    let emu = Emulator::new(Model::SaraU260);
    let mut modem = Modem::new(
        emu.uart(),
        emu.delay(),
        emu.pwr_on(),
        ModemConfig::new(Family::U2),
    )
    .with_vint(emu.vint());
    modem.power_on().expect("power on");
    modem.wait_sim_ready(10_000).expect("SIM");
    modem
        .register(&Registration::new(60_000))
        .expect("registration");
    modem.activate_data(&Apn::new(APN), 30_000).expect("data");
    let from = emu.transcript().len();
    let s = modem.open_socket(Protocol::Udp).expect("socket");
    modem.send_to(s, cloud_addr, &request).expect("send");
    let mut got = [0u8; 2048];
    let (n, device_addr) = cloud.recv_from(&mut got).expect("the cloud receives");
    assert_eq!(&got[..n], &request[..]);
    let mut rx = [0u8; 1024];
    for f in &frames {
        cloud.send_to(f, device_addr).expect("the cloud sends");
        assert!(modem.wait_readable(s, scenario::WAIT_MS).expect("wait"));
        let (n, _) = modem
            .receive_from(s, &mut rx)
            .expect("read")
            .expect("a datagram");
        assert_eq!(&rx[..n], &f[..]);
    }
    let mut script = Vec::new();
    for r in &emu.transcript()[from..] {
        if let Record::Bytes { dir, bytes, .. } = r {
            let d = match dir {
                Dir::ToModem => replay::TO_MODEM,
                Dir::FromModem => replay::FROM_MODEM,
            };
            for part in bytes.chunks(u16::MAX as usize) {
                script.push(d);
                script.extend_from_slice(&(part.len() as u16).to_le_bytes());
                script.extend_from_slice(part);
            }
        }
    }
    // A fresh driver (the bench's: no pins, no bring-up) must get every frame from the replay.
    let mut fresh = Modem::new(
        replay::Replay::new(&script),
        NoDelay,
        NoPin,
        ModemConfig::new(Family::U2),
    );
    let s = fresh.open_socket(Protocol::Udp).expect("replayed socket");
    fresh
        .send_to(s, cloud_addr, &request)
        .expect("replayed send");
    for f in &frames {
        assert!(fresh
            .wait_readable(s, scenario::WAIT_MS)
            .expect("replayed wait"));
        let (n, _) = fresh
            .receive_from(s, &mut rx)
            .expect("replayed read")
            .expect("datagram");
        assert_eq!(&rx[..n], &f[..]);
    }
    assert!(
        fresh.release().0.finished(),
        "the replayed driver left recorded bytes unread"
    );
    fs::write(out.join("modem.bin"), &script).unwrap();
    let SocketAddr::V4(cloud_v4) = cloud_addr else {
        unreachable!("bound to 127.0.0.1")
    };
    fs::write(
        out.join("cloud.rs"),
        format!(
            "/// Where the generator's cloud listened (the address in the replayed `AT+USOST`).\n\
             pub const CLOUD: ([u8; 4], u16) = ({:?}, {});\n",
            cloud_v4.ip().octets(),
            cloud_v4.port()
        ),
    )
    .unwrap();
}

/// The bench's test doubles are as strict as they claim (run on the host before the bench is
/// built with them): the replay refuses an unrecorded write and a read ahead of its command;
/// the flash refuses to program an unerased word, misaligned writes and partial-sector
/// erases, reads what was written, and erases whole sectors.
fn self_check() {
    use embedded_io::{Read, ReadReady, Write};
    use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
    use replay::{Replay, ReplayError, FROM_MODEM, TO_MODEM};

    let script = [
        &[TO_MODEM, 4, 0][..],
        b"AT\r\n",
        &[FROM_MODEM, 6, 0],
        b"\r\nOK\r\n",
    ]
    .concat();
    let mut r = Replay::new(&script);
    assert_eq!(
        r.read_ready(),
        Ok(false),
        "the answer comes after the command"
    );
    assert_eq!(r.read(&mut [0; 4]), Err(ReplayError::Starved));
    assert_eq!(r.write(b"AT"), Ok(2));
    assert_eq!(r.write(b"X"), Err(ReplayError::Mismatch(5)));
    assert_eq!(r.write(b"\r\n"), Ok(2));
    let mut got = [0u8; 16];
    assert_eq!(r.read(&mut got), Ok(6));
    assert_eq!(&got[..6], b"\r\nOK\r\n");
    assert!(r.finished());

    let mut f = Box::new(ramflash::RamFlash::<4>::new());
    let mut w = [0u8; 8];
    f.read(0x2_0000, &mut w).unwrap();
    assert_eq!(w, [0xFF; 8], "unwritten flash reads erased");
    f.write(0x2_0000, &[1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF])
        .unwrap();
    f.write(0x2_0004, &[5, 6, 7, 8]).unwrap();
    f.read(0x2_0000, &mut w).unwrap();
    assert_eq!(w, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        f.write(0x2_0000, &[0xFF; 4]),
        Err(ramflash::FlashError::NotErased)
    );
    assert_eq!(
        f.write(0x2_0002, &[0; 4]),
        Err(ramflash::FlashError::Bounds)
    );
    assert_eq!(
        f.erase(0x2_0000, 0x2_4000),
        Err(ramflash::FlashError::Bounds),
        "128 KiB sector"
    );
    f.erase(0x2_0000, 0x4_0000).unwrap();
    f.read(0x2_0000, &mut w).unwrap();
    assert_eq!(w, [0xFF; 8], "erased");
    assert_eq!(f.pages_used(), 0);
    for page in 0..4 {
        f.write(page * 1024, &[0; 4]).unwrap();
    }
    assert_eq!(f.write(4 * 1024, &[0; 4]), Err(ramflash::FlashError::Full));
}

/// The replay needs no waiting.
struct NoDelay;
impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}
