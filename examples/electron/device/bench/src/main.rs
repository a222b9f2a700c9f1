//! electron-bench: what the SDK's device-side work costs on the Electron's Cortex-M3, in
//! executed instructions, and the peak stack of each piece, measured with the real crates
//! on QEMU's STM32F205 (`netduino2`) under `-icount shift=0`. `scripts/footprint.sh` runs
//! it and writes `docs/footprint.md`.
//!
//! # How it counts
//! Under `-icount shift=0` QEMU advances its virtual clock by exactly 1 ns per executed
//! guest instruction. QEMU 7.2's STM32F2 timers (`hw/timer/stm32f2xx_timer.c`) count that
//! clock at the `clock-frequency` the SoC gives them, 1 GHz (`hw/arm/stm32f205_soc.c`),
//! divided by PSC + 1: with PSC = 0, TIM2 (32-bit on the F2) counts one per instruction.
//! (SysTick would count the 120 MHz `sysclk` of `hw/arm/netduino2.c`, one per 8⅓
//! instructions: not used.) The bench checks this itself: 1,000 `nop`s must read as 1,000
//! more than an empty measurement, or it fails. The fixed cost of a measurement (the two
//! counter reads and the call) is measured the same way and subtracted.
//!
//! Counts are of instructions, not cycles: a Cortex-M3 at 120 MHz with 3 flash wait states
//! runs most of them in one cycle (the ART-less F2's prefetch and caches hide most of the
//! waits), loads, branches and multiplies in more. Time on the board is at least
//! instructions / 120 MHz.
//!
//! # Stack
//! Before each measurement the free stack below the caller is painted; afterwards the
//! deepest overwritten word gives the peak use of that piece alone (its own frames, not the
//! bench's `main`).
//!
//! # Output (semihosting), one line each
//! `bench <name> insns=<n> stack=<bytes> [key=value ...]`, then `bench done ok`; the exit
//! status is non-zero on any failure (a refused manifest, a reply or chunk the crates do not
//! accept, a driver that writes other bytes than the recorded ones).
#![no_std]
#![no_main]

mod ramflash;
mod replay;
mod scenario;

use core::hint::black_box;
use core::net::{Ipv4Addr, SocketAddr};

use cloud_proto::{Down, Event};
use cortex_m_semihosting::{debug, hprintln};
use modem_ublox::{Family, Modem, ModemConfig, NoPin, Protocol};
use ota_core::{
    Begin, ChunkIndex, ChunkOutcome, HardwareId, Layout, Policy, SecurityCounter, Sha256Digest,
    TrustedKey, Updater, UpdaterConfig,
};

use electron_bsp::pac;

include!(concat!(env!("OUT_DIR"), "/cloud.rs"));

/// The host-made inputs (build.rs).
static MANIFEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/manifest.bin"));
static PUBLIC_KEY: &[u8; 32] = include_bytes!(concat!(env!("OUT_DIR"), "/public_key.bin"));
static CHECKIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/checkin.bin"));
static WELCOME: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/welcome.bin"));
static MODEM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/modem.bin"));
static SHA_16K: &[u8; 32] = include_bytes!(concat!(env!("OUT_DIR"), "/sha256_16k.bin"));

/// Size of the SHA-256 run.
const SHA_LEN: usize = 16 * 1024;
/// Backed pages of the RAM flash: state records, the manifest copy, markers, the chunks.
const FLASH_PAGES: usize = 24;
/// Stack painted below the caller for each measurement.
const PAINT_DEPTH: usize = 24 * 1024;
/// Room left for `run`'s own frame between the painted area and the stack pointer.
const PAINT_MARGIN: usize = 128;
const PAINT: u32 = 0xA5C3_5A3C;

/// TIM2 as a free-running 32-bit instruction counter (PSC 0, ARR max).
fn counter_start() {
    // SAFETY: the bench owns TIM2; nothing else runs.
    let tim = unsafe { pac::TIM2::steal() };
    tim.psc().write(|w| unsafe { w.bits(0) });
    tim.arr().write(|w| unsafe { w.bits(u32::MAX) });
    tim.cr1().write(|w| w.cen().set_bit());
}

#[inline(always)]
fn counter() -> u32 {
    // SAFETY: a read of TIM2's counter.
    unsafe { pac::TIM2::steal() }.cnt().read().bits()
}

/// One measurement: instructions (including the fixed cost) and peak stack in bytes.
struct Sample {
    insns: u32,
    stack: usize,
}

/// Calls `f` in a frame of its own: whatever is inlined into `f` gets its stack below the
/// stack pointer `run` paints from, not in `run`'s frame (where it would go unmeasured).
#[inline(never)]
fn call<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Paints the stack, runs `f` between two counter reads, finds the deepest written word.
#[inline(never)]
fn run<R>(f: impl FnOnce() -> R) -> (Sample, R) {
    let sp = cortex_m::register::msp::read() as usize;
    let top = sp - PAINT_MARGIN;
    let bottom = top - PAINT_DEPTH;
    for a in (bottom..top).step_by(4) {
        // SAFETY: free stack below this frame (checked against the RAM map in main).
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
    }
    let t0 = counter();
    let r = black_box(call(f));
    let t1 = counter();
    let mut low = top;
    for a in (bottom..top).step_by(4) {
        // SAFETY: as above.
        if unsafe { core::ptr::read_volatile(a as *const u32) } != PAINT {
            low = a;
            break;
        }
    }
    (
        Sample {
            insns: t1.wrapping_sub(t0),
            stack: sp - low,
        },
        r,
    )
}

/// Fixed cost of `run` around an empty closure, subtracted from every count.
struct Bench {
    overhead: u32,
    failed: bool,
}

impl Bench {
    fn report(&self, name: &str, s: &Sample, extra: core::fmt::Arguments<'_>) {
        hprintln!(
            "bench {} insns={} stack={}{}",
            name,
            s.insns.saturating_sub(self.overhead),
            s.stack,
            extra
        );
    }

    fn fail(&mut self, what: &str) {
        hprintln!("bench FAILED {}", what);
        self.failed = true;
    }
}

#[inline(never)]
fn nops_1000() {
    // SAFETY: 1,000 `nop`s.
    unsafe { core::arch::asm!(".rept 1000", "nop", ".endr", options(nomem, nostack)) };
}

#[inline(never)]
fn nops_2000() {
    // SAFETY: 2,000 `nop`s.
    unsafe { core::arch::asm!(".rept 2000", "nop", ".endr", options(nomem, nostack)) };
}

/// The replay UART's "no waiting" delay: every byte is already there.
struct NoDelay;
impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

#[cortex_m_rt::entry]
fn main() -> ! {
    extern "C" {
        static __sheap: u8;
    }
    // Only the address of the linker symbol is taken.
    let heap = core::ptr::addr_of!(__sheap) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    let mut b = Bench {
        overhead: 0,
        failed: false,
    };
    if sp - PAINT_MARGIN - PAINT_DEPTH - 4096 < heap {
        b.fail("stack too small to paint");
        finish(&b);
    }
    counter_start();

    // Calibration: the fixed cost (the counter read itself), then a call of 2,000 nops must
    // count exactly 1,000 more than the same call of 1,000.
    let (empty, ()) = run(|| black_box(()));
    b.overhead = empty.insns;
    let (n1, ()) = run(nops_1000);
    let (n2, ()) = run(nops_2000);
    let slope = n2.insns.wrapping_sub(n1.insns);
    hprintln!(
        "bench calibration overhead={} call_nop1000={} call_nop2000={}",
        b.overhead,
        n1.insns.wrapping_sub(b.overhead),
        n2.insns.wrapping_sub(b.overhead)
    );
    if slope != 1000 {
        b.fail("calibration: TIM2 does not count one per instruction");
    }

    // Ed25519 manifest verification (ota-core's public `verify`).
    let keys = [TrustedKey::new(*PUBLIC_KEY)];
    let hw = HardwareId::from_name(scenario::HARDWARE).unwrap_or_default();
    let policy = Policy {
        hardware_id: hw,
        stored_counter: SecurityCounter(scenario::STORED_COUNTER),
        capacity: Layout::ELECTRON.capacity(),
        allow_downgrade: false,
    };
    let (s, ok) = run(|| ota_core::verify(black_box(MANIFEST), &keys, &policy).is_ok());
    b.report(
        "verify_manifest",
        &s,
        format_args!(" manifest_bytes={}", MANIFEST.len()),
    );
    if !ok {
        b.fail("verify_manifest: the signed manifest was refused");
    }

    // SHA-256 over 16 KiB (ota-core's digest: sha2 as the firmware links it).
    let buf = cortex_m::singleton!(: [u8; SHA_LEN] = [0; SHA_LEN]);
    let Some(buf) = buf else {
        b.fail("singleton");
        finish(&b);
    };
    let mut i = 0;
    scenario::image_byte_stream(|x| {
        if i < SHA_LEN {
            buf[i] = x;
        }
        i += 1;
    });
    let data: &[u8] = buf;
    let (s, digest) = run(|| Sha256Digest::of(black_box(data)));
    b.report("sha256", &s, format_args!(" bytes={}", SHA_LEN));
    if digest.0 != *SHA_16K {
        b.fail("sha256: digest differs from the host's");
    }

    // Authentication per check-in: build the check-in frame, accept the cloud's reply.
    let mut ep = scenario::endpoint();
    let msg = scenario::checkin();
    let (s, frame_ok) = run(|| match ep.send(0, black_box(&msg)) {
        Ok(t) => t.frame == CHECKIN,
        Err(_) => false,
    });
    b.report(
        "checkin_send",
        &s,
        format_args!(" frame_bytes={}", CHECKIN.len()),
    );
    if !frame_ok {
        b.fail("checkin_send: the frame differs from the host's");
    }
    let (s, welcome) = run(|| {
        matches!(
            ep.handle_datagram(1, black_box(WELCOME)),
            Ok(Event::Reply(Down::Welcome(_)))
        )
    });
    b.report(
        "checkin_reply",
        &s,
        format_args!(" frame_bytes={}", WELCOME.len()),
    );
    if !welcome {
        b.fail("checkin_reply: the welcome was refused");
    }

    // Per chunk, end to end. Setup (not measured): the updater on a blank RAM flash with the
    // Electron's layout, the offer begun, staging erased.
    let Some(flash) =
        cortex_m::singleton!(: ramflash::RamFlash<FLASH_PAGES> = ramflash::RamFlash::new())
    else {
        b.fail("singleton");
        finish(&b);
    };
    let cfg = UpdaterConfig {
        hardware_id: hw,
        allow_downgrade: false,
    };
    let mut work = [0u8; 256];
    let up = Updater::open(flash, Layout::ELECTRON, cfg)
        .ok()
        .and_then(|mut up| {
            let offer = up.verify_offer(MANIFEST, &keys).ok()?;
            loop {
                match up.begin(flash, &offer) {
                    Ok(Begin::Started) => break,
                    Err(ota_core::BeginError::NeedsErase) => {
                        let _more = up.erase_step(flash, &mut work).ok()?;
                    }
                    _ => return None,
                }
            }
            let mut left = up.erase_work(flash).ok()?;
            while !left.is_done() {
                left = up.erase_step(flash, &mut work).ok()?;
            }
            Some(up)
        });
    let Some(mut up) = up else {
        b.fail("chunk setup: the updater did not start the download");
        finish(&b);
    };

    let Some(request) = scenario::chunk_request() else {
        b.fail("chunk request plan");
        finish(&b);
    };
    // The request frame, copied for the modem (the endpoint keeps its own for retransmission).
    let mut tx = [0u8; cloud_proto::MAX_FRAME];
    let (s, sent) = run(|| {
        ep.send(2, black_box(&request)).map(|t| {
            tx[..t.frame.len()].copy_from_slice(t.frame);
            t.frame.len()
        })
    });
    b.report(
        "chunk_request_send",
        &s,
        format_args!(" chunks={}", scenario::CHUNKS),
    );
    let Ok(req_len) = sent else {
        b.fail("chunk_request_send");
        finish(&b);
    };

    // The modem: a fresh driver on the replayed SARA-U260 bytes (see replay.rs).
    let mut modem = Modem::new(
        replay::Replay::new(MODEM),
        NoDelay,
        NoPin,
        ModemConfig::new(Family::U2),
    );
    let cloud = SocketAddr::from((Ipv4Addr::from(CLOUD.0), CLOUD.1));
    let Ok(sock) = modem.open_socket(Protocol::Udp) else {
        b.fail("modem: open_socket against the replay");
        finish(&b);
    };
    let (s, sent) = run(|| modem.send_to(sock, cloud, black_box(&tx[..req_len])));
    b.report("modem_send_request", &s, format_args!(" bytes={}", req_len));
    if sent.is_err() {
        b.fail("modem_send_request");
    }

    let mut rx = [0u8; 1024];
    let mut written = 0u32;
    let mut reads_before = modem.uart_mut().reads();
    for _ in 0..scenario::CHUNKS {
        // Receive: the +UUSORF URC, then AT+USORF with the datagram's bytes.
        let (s, got) = run(|| {
            let ready = modem.wait_readable(sock, scenario::WAIT_MS);
            match ready {
                Ok(true) => modem.receive_from(sock, &mut rx).ok().flatten(),
                _ => None,
            }
        });
        let Some((n, _)) = got else {
            b.fail("chunk_receive: no datagram from the replay");
            break;
        };
        let reads = modem.uart_mut().reads();
        b.report(
            "chunk_receive",
            &s,
            format_args!(" bytes={} uart_reads={}", n, reads - reads_before),
        );
        reads_before = reads;
        // Authenticate: cloud-proto's HMAC check and chunk bookkeeping.
        let (s, ev) = run(|| ep.handle_datagram(10, black_box(&rx[..n])));
        b.report("chunk_authenticate", &s, format_args!(" bytes={}", n));
        let Ok(Event::Chunk { index, data, .. }) = ev else {
            b.fail("chunk_authenticate: the chunk frame was refused");
            break;
        };
        // Hash + program: ota-core checks the chunk's digest and writes it to staging.
        let (s, r) = run(|| up.handle_chunk(flash, ChunkIndex(index), black_box(data)));
        b.report(
            "chunk_hash_program",
            &s,
            format_args!(" bytes={}", data.len()),
        );
        if r != Ok(ChunkOutcome::Written) {
            b.fail("chunk_hash_program: the chunk was not written");
            break;
        }
        written += 1;
    }
    if written != scenario::CHUNKS {
        b.fail("chunks: not every recorded datagram was received and written");
    }
    let left = modem.uart_mut().left();
    if !modem.uart_mut().finished() {
        hprintln!("bench FAILED replay: {} recorded bytes not consumed", left);
        b.failed = true;
    }
    hprintln!("bench ramflash pages_used={}", flash.pages_used());
    finish(&b)
}

/// Prints the closing line and leaves QEMU with the bench's status.
fn finish(b: &Bench) -> ! {
    if b.failed {
        hprintln!("bench done FAILED");
        debug::exit(debug::EXIT_FAILURE);
    } else {
        hprintln!("bench done ok");
        debug::exit(debug::EXIT_SUCCESS);
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("bench FAILED panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
