//! The Particle Electron firmware: electron-app's wake cycle on the electron-bsp board.
//!
//! Every boot is one wake (a deep sleep is a reset): set up the board, run
//! [`electron_app::wake`], print what it did on the console (USART1, 115 200 8N1), then act
//! on its end ([`electron_app::WakeEnd::enter`]): deep sleep, or a reset into the bootloader.
//!
//! * `board` (default): the Electron (clocks, pins, internal flash, backup SRAM, RTC
//!   STANDBY, IWDG, fuel gauge from electron-bsp).
//! * `qemu` feature: QEMU's netduino2, with electron-bsp's stand-ins for what it lacks
//!   (`electron_bsp::qemu`); everything else is the same code.
//!
//! Settings are compile-time (see [`settings`]), the identity (device id, root key) is in
//! flash sector 3, written at provisioning.
#![no_std]
#![no_main]

use core::fmt::Write;

use electron_app::{wake, Board, Buffers, PowerControl, RetainedState, WakeReport, RETAINED_LEN};
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady};
use embedded_storage::nor_flash::NorFlash;
use modem_ublox::Modem;

#[cfg(feature = "defmt")]
use defmt_rtt as _;

#[cfg(not(feature = "qemu"))]
mod board;
mod board_common;
#[cfg(feature = "qemu")]
mod qemu;
mod settings;
mod stack;

/// The console: USART1 on PA9/PA10.
type Console = electron_bsp::usart::Usart1;

#[cortex_m_rt::entry]
fn main() -> ! {
    #[cfg(feature = "qemu")]
    qemu::start();
    #[cfg(not(feature = "qemu"))]
    board::start();
}

/// A fault resets the chip (the next wake starts afresh; a hung core would leave the modem
/// on), after one console line naming where it happened.
#[cortex_m_rt::exception]
unsafe fn HardFault(ef: &cortex_m_rt::ExceptionFrame) -> ! {
    let mut line = [0u8; 40];
    let n = fault_line(&mut line, ef.pc(), ef.lr());
    console_raw(&line[..n]);
    cortex_m::peripheral::SCB::sys_reset()
}

/// A panic resets the chip too, after the console line `panic`: a confirmed image runs without
/// the IWDG, so halting would park the core for good, perhaps with the modem on. The next wake
/// starts afresh (a trial image that keeps panicking is reverted by the bootloader when its
/// boot attempts run out).
///
/// Neither the message nor the location is printed: reading `info.location()` keeps every
/// panic site's file name and line in the image, measured at 5.4 KiB of flash (1.4 KiB .text,
/// 4 KiB .rodata, `llvm-size` on the release build), which would take the firmware past its
/// 96 KiB aim. A debugger (`panic_fmt` breakpoint) finds the site.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    console_raw(b"\r\npanic: reset\r\n");
    cortex_m::peripheral::SCB::sys_reset()
}

/// Writes `bytes` to USART1 by polling its registers, for the fault and panic lines: the
/// boot ends right after, so the console's owner never runs again. Each byte waits a bounded
/// time for `TXE` (if USART1 was never configured the line is lost, nothing else).
fn console_raw(bytes: &[u8]) {
    // SAFETY: only called on the way to a reset (see above); a register write of one byte.
    let usart1 = unsafe { &*electron_bsp::pac::USART1::PTR };
    for &b in bytes {
        for _ in 0..100_000 {
            if usart1.sr().read().txe().bit_is_set() {
                break;
            }
        }
        usart1.dr().write(|w| w.dr().set(u16::from(b)));
    }
}

/// `hardfault pc=XXXXXXXX lr=XXXXXXXX\r\n` into `out`; returns its length.
fn fault_line(out: &mut [u8; 40], pc: u32, lr: u32) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if let Some(slot) = out.get_mut(n) {
                *slot = b;
                n += 1;
            }
        }
    };
    put(b"\r\nhardfault pc=");
    let hex =
        |v: u32| core::array::from_fn::<u8, 8, _>(|i| HEX[(v >> (28 - 4 * i) & 0xF) as usize]);
    put(&hex(pc));
    put(b" lr=");
    put(&hex(lr));
    put(b"\r\n");
    n
}

/// The configuration from the compile-time settings, one wake on a set-up board, then its
/// end. Shared by the board and QEMU.
#[allow(clippy::too_many_arguments)]
fn run<B, F, U, D, P, R, V, PC>(
    console: &mut Console,
    board: &mut B,
    flash: &mut F,
    modem: &mut Modem<U, D, P, R, V>,
    power: &mut PC,
) -> !
where
    B: Board,
    F: NorFlash,
    U: Read + embedded_io::Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
    PC: PowerControl,
{
    let setup_ms = board.now_ms();
    let key = settings::release_key();
    let keys_one;
    let keys: &[ota_core::TrustedKey] = match key {
        Some(k) => {
            keys_one = [k];
            &keys_one
        }
        None => {
            let _ = writeln!(
                console,
                "no valid ELECTRON_RELEASE_KEY: offers will be declined"
            );
            &[]
        }
    };
    let Some(hw) = settings::hardware_id() else {
        let _ = writeln!(console, "ELECTRON_HARDWARE_ID longer than 16 bytes");
        power.deep_sleep(3_600_000)
    };
    let config = board_common::app_config(hw, keys);
    let config = &config;
    let Some(bufs) = cortex_m::singleton!(: Buffers = Buffers::new()) else {
        // Only a second call could get here; `run` never returns.
        power.reset()
    };
    let report = wake(board, flash, modem, config, bufs);
    let mut raw = [0u8; RETAINED_LEN];
    board.load_retained(&mut raw);
    let wake_no = RetainedState::decode(&raw).map_or(0, |r| r.wakes);
    print_report(console, &report, wake_no, setup_ms, modem.time_spent_ms());
    let _ = writeln!(console, "stack peak: {} B", stack::peak_bytes());
    #[cfg(feature = "defmt")]
    defmt::info!(
        "wake {}: {} stack peak {} B",
        wake_no,
        report,
        stack::peak_bytes()
    );
    let _ = embedded_io::Write::flush(console);
    report.end.enter(power)
}

/// The per-wake console lines (`scripts/electron-qemu.sh` reads them).
fn print_report(c: &mut Console, r: &WakeReport, wake_no: u32, setup_ms: u64, modem_ms: u64) {
    let v = r.running;
    let _ = writeln!(
        c,
        "wake {wake_no}: running {}.{}.{}{}, retained {}, setup {setup_ms} ms",
        v.major,
        v.minor,
        v.patch,
        match r.trial {
            Some(t) => match t {
                electron_app::TrialOutcome::Confirmed => " (trial: confirmed)",
                electron_app::TrialOutcome::Failed => " (trial: failed)",
                electron_app::TrialOutcome::Pending => " (trial: pending)",
            },
            None => "",
        },
        if r.retained_valid { "valid" } else { "lost" },
    );
    let (sent, recv) = r.uart_bytes;
    if sent > 0 {
        let _ = writeln!(
            c,
            "modem up: {sent} B sent, {recv} B received on USART3, driver time {modem_ms} ms",
        );
    } else {
        let _ = writeln!(c, "modem: not powered this wake");
    }
    if r.checked_in {
        let _ = writeln!(
            c,
            "check-in answered: {} publish(es) acked, server time {}, {} request(s), {} retransmission(s)",
            r.publishes_acked,
            r.server_time.unwrap_or(0),
            r.requests,
            r.retransmissions,
        );
    } else {
        let _ = writeln!(c, "check-in: not answered");
    }
    match r.offer {
        Some((u, v, size)) => {
            let _ = writeln!(
                c,
                "offer: update {} version {}.{}.{} ({size} B), decision {:?}{}",
                u.0,
                v.major,
                v.minor,
                v.patch,
                r.decision,
                if r.decision_sent { "" } else { " (not sent)" },
            );
        }
        None => {
            let _ = writeln!(c, "offer: none");
        }
    }
    let _ = writeln!(
        c,
        "chunks: {} fetched, {} again, {} rejected, {} manifest; progress {}/{}; erased {} B in {} step(s)",
        r.chunks_fetched,
        r.chunks_refetched,
        r.chunks_rejected,
        r.manifest_chunks,
        r.progress.0,
        r.progress.1,
        r.erased_bytes,
        r.erase_steps,
    );
    let _ = writeln!(
        c,
        "result: {:?}{}, error {:?}, awake {} ms, {} B up / {} B down{}",
        r.end,
        if r.install_marked {
            ", install marked"
        } else {
            ""
        },
        r.error,
        r.awake_ms,
        r.bytes_up,
        r.bytes_down,
        if r.modem_left_on {
            ", MODEM LEFT ON"
        } else {
            ""
        },
    );
}
