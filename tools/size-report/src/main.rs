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
    use ota_core::{BootConfig, Bootloader, ChunkIndex, Config, Layout, Updater};
    let mut f = flash::Stub;
    let mut buf = [0u8; 1024];
    let cfg = Config {
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

#[cfg(feature = "stack")]
fn measure_stack() {
    use cortex_m_semihosting::{debug, hprintln};
    const PAINT: u32 = 0xDEAD_BEEF;
    const DEPTH: usize = 24 * 1024;
    let sp = cortex_m::register::msp::read() as usize;
    // Paint the unused stack below this frame (leaving 256 bytes of margin).
    let top = sp - 256;
    let bottom = top - DEPTH;
    for a in (bottom..top).step_by(4) {
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
    }
    let ok = verify_offer();
    let mut low = top;
    for a in (bottom..top).step_by(4) {
        if unsafe { core::ptr::read_volatile(a as *const u32) } != PAINT {
            low = a;
            break;
        }
    }
    hprintln!("verify ok={} peak stack={} bytes", ok, sp - low);
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
}

#[entry]
fn main() -> ! {
    #[cfg(feature = "stack")]
    measure_stack();
    #[cfg(all(feature = "verify", not(feature = "stack")))]
    black_box(verify_offer());
    #[cfg(feature = "full")]
    black_box(full());
    loop {
        black_box(0);
    }
}
