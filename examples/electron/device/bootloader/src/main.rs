//! The Electron bootloader: sector 0 (16 KB at 0x0800_0000).
//!
//! 1. Clocks to 120 MHz (a 128 KiB copy and its SHA-256 check at the 16 MHz HSI would take
//!    7.5 times longer). If the crystal or PLL fails it goes on at 16 MHz: slower, not wrong.
//! 2. ota-core's [`Bootloader`] on the internal flash (everything but sector 0 writable):
//!    install a staged image (the swap), check it, boot it on trial, count trial boots, revert.
//!    With install or revert work or a trial boot it first starts the IWDG
//!    ([`WATCHDOG_MS`](electron_bootloader::WATCHDOG_MS), fed between steps; see
//!    [`needs_watchdog`]).
//! 3. Checks the active slot's vector table and jumps: VTOR = 0x0802_0000, MSP = word 0,
//!    branch to word 1. A trial image that cannot start makes it reset (the attempt counts,
//!    ota-core reverts after three); a failed flash step sleeps 10 minutes and retries;
//!    nothing bootable parks the chip in STANDBY.
//!
//! **Where it lives, and why:** sector 0, as Particle's does. Measured at opt-level `z`
//! (`llvm-size`, flash = vector table + text + rodata): 14 792 B, in the 16 384 B sector; with
//! the Ed25519 check of the trial image's manifest (`verify-signature`) 32 964 B, which needs
//! sectors 1–2 too, and they are ota-core's state log in `Layout::ELECTRON`. The check
//! would only add a defence against an application that can already write flash (the
//! application authenticates every manifest before downloading, and this bootloader boots
//! an install only once its SHA-256 matches the signed digest), so it stays a measurement
//! build. Details: `examples/electron/device/README.md`.
//!
//! Feature `qemu`: no clocks, IWDG or RTC (QEMU's netduino2 has none), the RAM-overlay flash
//! stand-in instead of the flash controller, and no STANDBY (a WFI loop; a retry resets). Feature
//! `verify-signature`: the manifest check of `electron_bootloader::manifest` before a trial
//! boot (a measurement build: it does not fit sector 0, see the README).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use electron_bootloader::{
    check_vectors, decide, needs_watchdog, Action, BadVectors, Entry, APP_BASE, BOOT_CONFIG, LAYOUT,
};
use electron_bsp::pac;
use ota_core::{BootTarget, Bootloader};
// A panic halts here (the firmware's handler resets instead). During install, revert and a
// trial boot the IWDG runs ([`needs_watchdog`]), so a halt there ends in a watchdog reset and
// the step is redone. Outside them (reading the state and checking the vectors before a
// confirmed image's jump) a halt would park the core until a power cycle; those paths do not
// panic on flash data (errors are handled as values), and a reset loop on a bug there would
// be no better than a halt, with the modem never powered by the bootloader either way.
use panic_halt as _;

#[cfg(feature = "verify-signature")]
mod key {
    include!(concat!(env!("OUT_DIR"), "/trusted_key.rs"));
}

/// The copy buffer (and, with `verify-signature`, the manifest buffer): on the stack.
#[cfg(not(feature = "verify-signature"))]
const BUF_LEN: usize = 4096;
#[cfg(feature = "verify-signature")]
const BUF_LEN: usize = electron_bootloader::manifest::MAX_MANIFEST;

#[cfg(not(feature = "qemu"))]
type Watchdog = electron_bsp::iwdg::Watchdog;

/// The board's flash: the flash controller, everything above the bootloader writable.
#[cfg(not(feature = "qemu"))]
fn board_flash(flash: pac::FLASH) -> electron_bsp::flash::InternalFlash {
    electron_bsp::flash::InternalFlash::new(flash, electron_bootloader::WRITABLE)
}

/// QEMU's stand-in: the copy-on-write RAM overlay over the read-only flash (electron-bsp
/// `qemu`), with `InternalFlash`'s offsets and refusals (sector 0 never written); the flash
/// controller is not touched (QEMU does not emulate it).
#[cfg(feature = "qemu")]
fn board_flash(_flash: pac::FLASH) -> electron_bsp::qemu::QemuFlash {
    electron_bsp::qemu::QemuFlash::take()
}

#[entry]
fn main() -> ! {
    let Some(dp) = pac::Peripherals::take() else {
        reset()
    };
    #[cfg(not(feature = "qemu"))]
    {
        // An error leaves the chip on the 16 MHz HSI with safe flash wait states: go on.
        let _ = electron_bsp::clocks::init(&dp.RCC, &dp.FLASH);
    }
    let mut flash = board_flash(dp.FLASH);
    let mut buf = [0u8; BUF_LEN];

    let (target, run_failed) = match Bootloader::open(&mut flash, LAYOUT, BOOT_CONFIG) {
        // A layout mismatch or unreadable state: boot the active slot as it is; the
        // application's `Updater::open` meets the same error and reports it.
        Err(_) => (None, false),
        Ok(mut boot) => {
            let mut dog = start_watchdog(needs_watchdog(boot.phase()), dp.IWDG);
            match boot.run(&mut flash, &mut buf, || feed(&mut dog)) {
                Ok(t) => (Some(t), false),
                Err(_) => (None, true),
            }
        }
    };

    let vectors = read_vectors();
    let manifest_ok = manifest_ok(&mut flash, &mut buf, target);
    match decide(target, run_failed, vectors, manifest_ok).0 {
        Action::Jump(entry) => jump(entry),
        Action::Reset => reset(),
        Action::Retry => retry_later(),
        Action::Park => park(),
    }
}

/// Starts the IWDG when there is work or a trial ([`needs_watchdog`]).
#[cfg(not(feature = "qemu"))]
fn start_watchdog(needed: bool, iwdg: pac::IWDG) -> Option<Watchdog> {
    needed.then(|| Watchdog::start(iwdg, electron_bootloader::WATCHDOG_MS))
}

/// QEMU has no IWDG (an access faults): nothing to start.
#[cfg(feature = "qemu")]
fn start_watchdog(_needed: bool, _iwdg: pac::IWDG) -> Option<Watchdog> {
    None
}

/// The QEMU build's stand-in: never constructed.
#[cfg(feature = "qemu")]
struct Watchdog;

#[cfg(feature = "qemu")]
impl Watchdog {
    fn feed(&mut self) {}
}

fn feed(dog: &mut Option<Watchdog>) {
    if let Some(d) = dog {
        d.feed();
    }
}

/// Words 0 and 1 of the application's vector table, checked.
fn read_vectors() -> Result<Entry, BadVectors> {
    let table = APP_BASE as *const u32;
    // SAFETY: the active slot is mapped flash, always readable.
    let (sp, rv) = unsafe { (table.read_volatile(), table.add(1).read_volatile()) };
    check_vectors(sp, rv)
}

#[cfg(feature = "verify-signature")]
fn manifest_ok<F: ota_core::embedded_storage::nor_flash::ReadNorFlash>(
    flash: &mut F,
    buf: &mut [u8],
    target: Option<BootTarget>,
) -> bool {
    let Some(t @ BootTarget::Trial { .. }) = target else {
        return true;
    };
    let Some(k) = key::TRUSTED_KEY else {
        return false;
    };
    let keys = [ota_core::TrustedKey::new(k)];
    electron_bootloader::manifest::check_installed(flash, buf, &keys, t.image()).is_ok()
}

#[cfg(not(feature = "verify-signature"))]
fn manifest_ok<F>(_flash: &mut F, _buf: &mut [u8], _target: Option<BootTarget>) -> bool {
    true
}

/// Hands the core to the application: its vector table in VTOR, then MSP from word 0 and a
/// branch to word 1. Interrupts: none was enabled here, PRIMASK stays clear (cortex-m-rt's
/// reset handler does not clear it, so it must not be set). Clocks stay at 120 MHz, as
/// Particle's bootloader leaves them; the application's `clocks::init` finds them set.
fn jump(entry: Entry) -> ! {
    // SAFETY: `entry` passed `check_vectors`: a stack inside the RAM and a Thumb reset handler
    // inside the active slot, whose image ota-core has checked (or the factory image).
    unsafe {
        let scb = &*cortex_m::peripheral::SCB::PTR;
        scb.vtor.write(APP_BASE);
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        cortex_m::asm::bootstrap(
            entry.stack_pointer as *const u32,
            entry.reset_vector as *const u32,
        )
    }
}

fn reset() -> ! {
    electron_bsp::power::reset()
}

/// A step failed: sleep [`RETRY_SLEEP_MS`](electron_bootloader::RETRY_SLEEP_MS) in STANDBY on
/// the RTC (started here if the application never did), then boot again. Without an RTC clock
/// it resets at once.
#[cfg(not(feature = "qemu"))]
fn retry_later() -> ! {
    // SAFETY: this never returns; nothing else uses RCC, PWR or RTC from here on.
    let (rcc, pwr, rtc) = unsafe { (pac::RCC::steal(), pac::PWR::steal(), pac::RTC::steal()) };
    rcc.apb1enr().modify(|_, w| w.pwren().set_bit());
    let _ = rcc.apb1enr().read();
    match electron_bsp::rtc::Rtc::init(&rcc, &pwr, rtc) {
        Ok(_) => electron_bsp::power::standby_for_ms(electron_bootloader::RETRY_SLEEP_MS),
        Err(_) => reset(),
    }
}

/// QEMU has no RTC: reset at once.
#[cfg(feature = "qemu")]
fn retry_later() -> ! {
    reset()
}

/// Nothing bootable: STANDBY with no wakeup source armed (a few µA) until a reset or a power
/// cycle. The RTC survives resets, so the application's wakeup timer (or Device OS's alarm)
/// may still be enabled: if the RTC runs, every RTC wakeup source is disabled first
/// (`Rtc::disarm_wakeups`), and the WKUP pin is off. If the IWDG runs (an install or revert
/// just ended here) it resets the chip within its period, and the next boot, with no work
/// left, parks for good.
#[cfg(not(feature = "qemu"))]
fn park() -> ! {
    // SAFETY: this never returns; nothing else uses PWR, RTC or the core peripherals.
    let (pwr, mut cp) = unsafe { (pac::PWR::steal(), cortex_m::Peripherals::steal()) };
    let rcc = unsafe { pac::RCC::steal() };
    rcc.apb1enr().modify(|_, w| w.pwren().set_bit());
    let _ = rcc.apb1enr().read();
    if rcc.bdcr().read().rtcen().bit_is_set() {
        // Backup-domain write access for the RTC registers.
        pwr.cr().modify(|_, w| w.dbp().set_bit());
        let rtc = unsafe { pac::RTC::steal() };
        // The clock only matters for arming, which this never does.
        electron_bsp::rtc::Rtc::from_running(rtc, electron_bsp::rtc::RtcClock::Lse)
            .disarm_wakeups();
    }
    cp.SCB.set_sleepdeep();
    pwr.csr().modify(|_, w| w.ewup().clear_bit());
    loop {
        pwr.cr().modify(|_, w| w.cwuf().set_bit().pdds().set_bit());
        cortex_m::asm::dsb();
        cortex_m::asm::wfi();
    }
}

/// QEMU has no STANDBY: wait for interrupts forever.
#[cfg(feature = "qemu")]
fn park() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
