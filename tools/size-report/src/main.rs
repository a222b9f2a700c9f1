//! Size and stack probe for ota-core on a Cortex-M3.
//!
//! * `baseline`: the runtime alone, subtracted from the others.
//! * `verify`: manifest parsing + Ed25519 verification (what a device runs on an offer).
//! * `full`: verify + the whole `Updater` + the `Bootloader`, over a memory-mapped flash stub.
//! * `stack`: `verify`, run under QEMU, paints the stack and reports its high-water mark.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use panic_halt as _;
// Provides the critical-section implementation (single core) even when nothing else uses it.
use cortex_m as _;

#[cfg(any(feature = "verify", feature = "full"))]
static MANIFEST: &[u8; 232] = include_bytes!("example-manifest.bin");
#[cfg(any(feature = "verify", feature = "full"))]
const PUBLIC_KEY: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

#[cfg(any(feature = "verify", feature = "full"))]
fn verify_offer() -> bool {
    let keys = [ota_core::TrustedKey::new(black_box(PUBLIC_KEY))];
    let policy = ota_core::Policy {
        hardware_id: ota_core::HardwareId::from_name("electron-u260").unwrap_or_default(),
        stored_counter: ota_core::SecurityCounter(black_box(3)),
        capacity: black_box(384 * 1024),
        allow_downgrade: false,
    };
    ota_core::verify(black_box(&MANIFEST[..]), &keys, &policy).is_ok()
}

#[cfg(feature = "full")]
mod flash {
    //! A flash stub with the Electron's geometry that reads the memory-mapped flash and
    //! "programs" through a volatile register write, so the linker keeps all code paths.
    use embedded_storage::nor_flash::{
        ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
    };
    pub struct Stub;
    #[derive(Debug)]
    pub struct E;
    impl NorFlashError for E {
        fn kind(&self) -> NorFlashErrorKind {
            NorFlashErrorKind::Other
        }
    }
    impl ErrorType for Stub {
        type Error = E;
    }
    const BASE: usize = 0x0800_0000;
    const DR: *mut u32 = 0x4002_3C10 as *mut u32;
    impl ReadNorFlash for Stub {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), E> {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = unsafe { core::ptr::read_volatile((BASE + offset as usize + i) as *const u8) };
            }
            Ok(())
        }
        fn capacity(&self) -> usize {
            1024 * 1024
        }
    }
    impl NorFlash for Stub {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 16 * 1024;
        fn erase(&mut self, from: u32, to: u32) -> Result<(), E> {
            unsafe { core::ptr::write_volatile(DR, from ^ to) };
            Ok(())
        }
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), E> {
            for w in bytes.chunks(4) {
                let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                unsafe { core::ptr::write_volatile(DR, v ^ offset) };
            }
            Ok(())
        }
    }
}

#[cfg(feature = "full")]
fn full() -> bool {
    use ota_core::{BootConfig, Bootloader, ChunkIndex, Layout, Updater, UpdaterConfig};
    let mut f = flash::Stub;
    let mut buf = [0u8; 1024];
    let cfg = UpdaterConfig {
        hardware_id: ota_core::HardwareId::from_name("electron-u260").unwrap_or_default(),
        allow_downgrade: false,
    };
    let Ok(mut up) = Updater::open(&mut f, black_box(Layout::ELECTRON), cfg) else {
        return false;
    };
    black_box(verify_offer());
    let keys = [ota_core::TrustedKey::new(black_box(PUBLIC_KEY))];
    if let Ok(offer) = up.verify_offer(black_box(&MANIFEST[..]), &keys) {
        let _ = up.provision(&mut f, &offer, &mut buf);
        let _ = up.begin(&mut f, &offer);
    }
    let _ = up.erase_step(&mut f, &mut buf);
    let _ = up.next_missing(&mut f, ChunkIndex(0));
    let _ = up.handle_chunk(&mut f, ChunkIndex(black_box(1)), black_box(&buf[..256]));
    let _ = up.finish(&mut f, &mut buf);
    let _ = up.mark_install(&mut f);
    let _ = up.mark_confirmed(&mut f);
    let _ = black_box(up.status());
    let Ok(mut bl) = Bootloader::open(&mut f, black_box(Layout::ELECTRON), BootConfig::default())
    else {
        return false;
    };
    bl.run(&mut f, &mut buf, || {}).is_ok()
}

/// Paints the unused stack below this frame (leaving 256 bytes of margin), runs `f`, and
/// reports the deepest painted word it overwrote, over semihosting (QEMU netduino2).
#[cfg(any(feature = "stack", feature = "cloud-stack"))]
fn measure_stack(what: &str, f: impl FnOnce() -> bool) {
    use cortex_m_semihosting::{debug, hprintln};
    const PAINT: u32 = 0xDEAD_BEEF;
    const DEPTH: usize = 24 * 1024;
    let sp = cortex_m::register::msp::read() as usize;
    let top = sp - 256;
    let bottom = top - DEPTH;
    for a in (bottom..top).step_by(4) {
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
    }
    let ok = f();
    let mut low = top;
    for a in (bottom..top).step_by(4) {
        if unsafe { core::ptr::read_volatile(a as *const u32) } != PAINT {
            low = a;
            break;
        }
    }
    hprintln!("{} ok={} peak stack={} bytes", what, ok, sp - low);
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
}

#[cfg(feature = "sleep")]
mod sleep {
    #[cfg(not(feature = "sleep-count"))]
    use core::hint::black_box;
    use sleep_guard::{Class, GuardConfig, Reason, SleepGuard};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Why {
        UpdatePending,
        Download,
        Outbox,
        AwaitAck,
        CheckIn,
        Modem,
        Sensor,
        FlashWrite,
    }
    const ALL: [Why; 8] = [
        Why::UpdatePending,
        Why::Download,
        Why::Outbox,
        Why::AwaitAck,
        Why::CheckIn,
        Why::Modem,
        Why::Sensor,
        Why::FlashWrite,
    ];
    impl Reason for Why {
        const COUNT: usize = 8;
        fn index(self) -> usize {
            self as usize
        }
        fn from_index(i: usize) -> Option<Self> {
            ALL.get(i).copied()
        }
        fn name(self) -> &'static str {
            "reason"
        }
        fn class(self) -> Class {
            if self == Why::FlashWrite {
                Class::Critical
            } else {
                Class::Deferrable
            }
        }
        fn max_lease_ms(self) -> Option<u32> {
            Some(30_000)
        }
    }
    pub static GUARD: SleepGuard<Why, 8> = SleepGuard::new(GuardConfig {
        awake_budget_ms: 10_000,
        max_extension_ms: 60_000,
        max_critical_overrun_ms: 5_000,
    });

    /// Every call once, with values the compiler cannot see through.
    #[cfg(not(feature = "sleep-count"))]
    pub fn exercise() -> bool {
        let t = black_box(5u64);
        let _ = GUARD.begin_cycle(t);
        let _ = GUARD.acquire(Why::Outbox, t);
        let _ = GUARD.release(Why::Outbox, t);
        let _ = GUARD.set(Why::UpdatePending, black_box(true), t);
        let _ = GUARD.lease(Why::Download, black_box(500), t);
        let _ = GUARD.extend(black_box(1000), t);
        let h = GUARD.hold(Why::Sensor, t);
        drop(h);
        let _ = black_box(GUARD.holders(t));
        let _ = black_box(GUARD.stats(Why::Download));
        let tok = GUARD.token();
        let _ = black_box(GUARD.commit(tok, t));
        let _ = black_box(GUARD.retained());
        GUARD
            .try_sleep(black_box(20_000), |d, _| {
                black_box(d);
            })
            .allows_sleep()
    }

    #[cfg(feature = "sleep-count")]
    /// The worst case of `decide`: every reason held, leases on all deferrable ones expiring
    /// at the same call, a critical lease still running.
    pub fn worst_case_setup() {
        let t = 0;
        let _ = GUARD.begin_cycle(t);
        for r in ALL {
            if r == Why::FlashWrite {
                let _ = GUARD.lease(r, 30_000, t);
            } else {
                let _ = GUARD.acquire(r, t);
                let _ = GUARD.lease(r, 1_000, t);
            }
        }
    }

    #[inline(never)]
    #[no_mangle]
    pub extern "C" fn count_start() {
        cortex_m::asm::nop();
    }
    #[inline(never)]
    #[no_mangle]
    pub extern "C" fn count_end() {
        cortex_m::asm::nop();
        cortex_m::asm::nop();
    }
}

#[cfg(any(feature = "cloud", feature = "cloud-stack"))]
mod cloud {
    //! The device side of cloud-proto, as an application links it: one endpoint and one
    //! stream decoder in statics, every call made once with values the compiler cannot see.
    use core::cell::RefCell;
    use core::hint::black_box;

    use cloud_proto::*;
    use critical_section::Mutex;

    static ENDPOINT: Mutex<RefCell<Option<DeviceEndpoint>>> = Mutex::new(RefCell::new(None));
    static DECODER: Mutex<RefCell<StreamDecoder<{ stream_encoded_max(MAX_FRAME) }>>> =
        Mutex::new(RefCell::new(StreamDecoder::new()));

    pub fn exercise() -> usize {
        critical_section::with(|cs| {
            let mut slot = ENDPOINT.borrow_ref_mut(cs);
            let dev = slot.insert(DeviceEndpoint::new(
                DeviceConfig::new(DeviceId(black_box(7))),
                Keys::derive(&black_box([0x42; 32])),
                Counters::from_retained(&black_box([0; 12])).unwrap_or(Counters::cold(0)),
            ));
            if let Some(r) = dev.checkpoint() {
                dev.mark_checkpointed(r);
            }
            let data = black_box([1u8; 20]);
            let publishes = [Publish {
                topic: 1,
                data: &data,
            }]
            .into_iter()
            .collect();
            let checkin = Up::CheckIn(CheckIn {
                firmware: FirmwareVersion::default(),
                trial: black_box(false),
                ota: OtaReport::default(),
                battery_mv: black_box(3900),
                forced_sleeps: 0,
                publishes,
            });
            let mut n = dev
                .send(black_box(0), &checkin)
                .map_or(0, |t| t.frame.len() + t.counters.to_retained()[0] as usize);
            let frame = black_box([0x11u8; 64]);
            if let Ok(Event::Reply(Down::Welcome(w))) = dev.handle_datagram(1, &frame) {
                n += w.publishes_acked as usize;
            }
            if let Some(req) = ChunkRequest::plan(
                UpdateId(7),
                Object::Image,
                512,
                black_box(0u32..100),
                black_box(64),
            ) {
                n += dev
                    .send(2, &Up::ChunkRequest(req))
                    .map_or(0, |t| t.frame.len());
            }
            if let Ok(Event::Chunk { data, .. }) = dev.handle_datagram(3, &frame) {
                n += data.len();
            }
            if let Timeout::Retransmit(f) = dev.handle_timeout(black_box(5_000)) {
                n += f.len();
            }
            n += dev.counters().to_retained()[0] as usize;
            let mut dec = DECODER.borrow_ref_mut(cs);
            if let (_, Some(Ok(f))) = dec.feed(&frame) {
                n += f.len();
            }
            n
        })
    }
}

#[cfg(any(feature = "modem-u2", feature = "modem-all"))]
mod modem {
    //! modem-ublox as a firmware links it, over a UART and pins that are volatile registers
    //! (so nothing is optimised away); the driver, with its 256-byte line buffer, is a static
    //! placed by `cortex_m::singleton!`.
    use core::hint::black_box;
    use core::net::{Ipv4Addr, SocketAddr};

    use modem_ublox::{Apn, ModemConfig, Family, Modem, Protocol, Registration};

    const DR: *mut u32 = 0x4001_1004 as *mut u32; // USART1 data register
    const SR: *const u32 = 0x4001_1000 as *const u32; // USART1 status register

    pub struct Uart;
    #[derive(Debug)]
    pub struct E;
    impl core::fmt::Display for E {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("uart")
        }
    }
    impl core::error::Error for E {}
    impl embedded_io::Error for E {
        fn kind(&self) -> embedded_io::ErrorKind {
            embedded_io::ErrorKind::Other
        }
    }
    impl embedded_io::ErrorType for Uart {
        type Error = E;
    }
    impl embedded_io::Read for Uart {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, E> {
            for b in buf.iter_mut() {
                *b = unsafe { core::ptr::read_volatile(DR) } as u8;
            }
            Ok(buf.len())
        }
    }
    impl embedded_io::ReadReady for Uart {
        fn read_ready(&mut self) -> Result<bool, E> {
            Ok(unsafe { core::ptr::read_volatile(SR) } & 0x20 != 0)
        }
    }
    impl embedded_io::Write for Uart {
        fn write(&mut self, buf: &[u8]) -> Result<usize, E> {
            for &b in buf {
                unsafe { core::ptr::write_volatile(DR, b as u32) };
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), E> {
            Ok(())
        }
    }
    pub struct Pin;
    impl embedded_hal::digital::ErrorType for Pin {
        type Error = core::convert::Infallible;
    }
    impl embedded_hal::digital::OutputPin for Pin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            unsafe { core::ptr::write_volatile(DR, 0x100) };
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            unsafe { core::ptr::write_volatile(DR, 0x101) };
            Ok(())
        }
    }
    impl embedded_hal::digital::InputPin for Pin {
        fn is_high(&mut self) -> Result<bool, Self::Error> {
            Ok(unsafe { core::ptr::read_volatile(SR) } & 1 != 0)
        }
        fn is_low(&mut self) -> Result<bool, Self::Error> {
            Ok(unsafe { core::ptr::read_volatile(SR) } & 1 == 0)
        }
    }
    pub struct Delay;
    impl embedded_hal::delay::DelayNs for Delay {
        fn delay_ns(&mut self, ns: u32) {
            for _ in 0..ns / 8 {
                cortex_m::asm::nop();
            }
        }
    }

    type Driver = Modem<Uart, Delay, Pin, Pin, Pin>;

    pub fn exercise() -> usize {
        // The driver in a static, as cortex-m's `singleton!` places it: in .bss. (A
        // `static Mutex<RefCell<Option<Driver>>>` would be .data: `None` is a non-zero byte
        // in the driver's niche, so its whole size would be copied from flash at boot.)
        let Some(m) = cortex_m::singleton!(: Driver = Modem::new(Uart, Delay, Pin, ModemConfig::new(Family::U2))
            .with_reset(Pin)
            .with_vint(Pin))
        else {
            return 0;
        };
        {
            let mut n = 0usize;
            n += m.power_on().is_ok() as usize;
            n += m.wait_sim_ready(black_box(10_000)).is_ok() as usize;
            n += m.register(&Registration::new(black_box(60_000))).is_ok() as usize;
            n += m
                .activate_data(&Apn::new("spark.telefonica.com"), 30_000)
                .is_ok() as usize;
            #[cfg(not(feature = "modem-u2-udp"))]
            let _ = m.sweep_stale_sockets();
            let peer = SocketAddr::from((Ipv4Addr::new(10, 0, 0, black_box(1)), 5684));
            let mut buf = [0u8; 512];
            #[cfg(not(feature = "modem-u2-udp"))]
            if let Ok(s) = m.open_socket(Protocol::Tcp) {
                let _ = m.connect(s, peer);
                n += m.send(s, black_box(&buf[..100])).unwrap_or(0);
                if m.wait_readable(s, 5_000).unwrap_or(false) {
                    n += m.receive(s, &mut buf).unwrap_or(0);
                }
                let _ = m.close(s);
            }
            if let Ok(s) = m.open_socket(Protocol::Udp) {
                let _ = m.send_to(s, peer, black_box(&buf[..29]));
                #[cfg(feature = "modem-u2-udp")]
                let ready = m.wait_readable(s, 5_000).unwrap_or(false);
                #[cfg(not(feature = "modem-u2-udp"))]
                let ready = true;
                if ready {
                    if let Ok(Some((k, _))) = m.receive_from(s, &mut buf) {
                        n += k;
                    }
                }
                let _ = m.close(s);
            }
            #[cfg(feature = "modem-u2-cmds")]
            {
                n += m.command("AT+CGSN", 1_000, |l| n += l.len()).is_ok() as usize;
                n += m.signal_quality().map_or(0, |q| q.rssi as usize);
                n += m.network_time().map_or(0, |t| t.unix_seconds() as usize);
                n += m
                    .resolve("device.example.com")
                    .map_or(0, |ip| ip.octets()[3] as usize);
            }
            #[cfg(not(feature = "modem-u2-udp"))]
            let _ = m.recover();
            n += m.power_off().is_ok() as usize;
            n + m.time_spent_ms() as usize
        }
    }
}

#[entry]
fn main() -> ! {
    #[cfg(any(feature = "modem-u2", feature = "modem-all"))]
    black_box(modem::exercise());
    #[cfg(feature = "cloud")]
    black_box(cloud::exercise());
    #[cfg(all(feature = "sleep", not(feature = "sleep-count")))]
    black_box(sleep::exercise());
    #[cfg(feature = "sleep-count")]
    {
        sleep::worst_case_setup();
        sleep::count_start();
        let d = sleep::GUARD.decide(black_box(5_000));
        sleep::count_end();
        let _ = black_box(d);
        cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_SUCCESS);
    }
    #[cfg(feature = "stack")]
    measure_stack("verify", verify_offer);
    #[cfg(feature = "cloud-stack")]
    measure_stack("cloud-proto device calls", || cloud::exercise() > 0);
    #[cfg(all(feature = "verify", not(feature = "stack")))]
    black_box(verify_offer());
    #[cfg(feature = "full")]
    black_box(full());
    loop {
        black_box(0);
    }
}
