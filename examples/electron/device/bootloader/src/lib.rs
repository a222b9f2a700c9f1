//! The decisions of the Electron bootloader, kept pure so they are tested on the host:
//! what it may write, when the watchdog runs, whether the application's vector table is
//! plausible, what to do with the outcome of ota-core's [`Bootloader`](ota_core::Bootloader),
//! and (feature `verify-signature`) the manifest check. The binary (`src/main.rs`) only wires
//! these to the peripherals. See the crate README section in `examples/electron/device/README.md`.
#![no_std]
#![deny(missing_docs)]

use core::ops::Range;

use ota_core::{BootConfig, BootTarget, Layout, Phase};

/// The flash layout ota-core manages, the same constant the application opens
/// (`electron_app::LAYOUT` is `Layout::ELECTRON`).
pub const LAYOUT: Layout = Layout::ELECTRON;

/// Where the flash is mapped.
pub const FLASH_BASE: u32 = 0x0800_0000;

/// The bootloader's own flash: sector 0 (16 KB); the `verify-signature` measurement build
/// takes sectors 0–2 (48 KB).
#[cfg(not(feature = "verify-signature"))]
pub const BOOT_SIZE: u32 = 0x4000;
/// The bootloader's own flash: sector 0 (16 KB); the `verify-signature` measurement build
/// takes sectors 0–2 (48 KB).
#[cfg(feature = "verify-signature")]
pub const BOOT_SIZE: u32 = 0xC000;

/// What the bootloader may erase and program (offsets): everything above itself. Its
/// `InternalFlash` refuses the rest, so no state record or swap can ever touch the bootloader.
pub const WRITABLE: Range<u32> = BOOT_SIZE..0x10_0000;

/// The application's vector table: the start of ota-core's active slot, 0x0802_0000 (also
/// where Particle's bootloader jumps).
pub const APP_BASE: u32 = FLASH_BASE + LAYOUT.active.start;

/// The application's vector table must point its reset handler into this range (absolute):
/// the active slot.
pub const APP_CODE: Range<u32> = APP_BASE..FLASH_BASE + LAYOUT.active.end;

/// The STM32F205RG's SRAM (112 KB SRAM1 + 16 KB SRAM2, contiguous).
pub const RAM: Range<u32> = 0x2000_0000..0x2002_0000;

/// Bootloader settings: ota-core's defaults (3 trial boots, 16 KiB copy steps).
pub const BOOT_CONFIG: BootConfig = BootConfig {
    max_boot_attempts: 3,
    step_bytes: 16 * 1024,
};

/// The watchdog's shortest period while the bootloader works and the application it starts
/// runs: 20 s at the fastest LSI (47 kHz; /256, reload 3672: 29 s at 32 kHz, 55 s at 17 kHz).
///
/// The longest step between two feeds is one 128 KiB sector erase: 1 s typical, **2 s at most**
/// (STM32F205 datasheet, "Flash memory programming", `tERASE128KB` at x32 parallelism,
/// 2.7–3.6 V), or a 16 KiB copy (4096 words, at most 100 µs each: 410 ms) plus one 192-byte
/// state record; the check hashes at most 16 KiB a step (0.63 M instructions, 5 ms at 120 MHz).
/// 20 s is ten times the worst step, and leaves an application on trial 20 s between feeds.
pub const WATCHDOG_MS: u32 = 20_000;

/// How long the bootloader sleeps before it retries a step that failed ([`Action::Retry`]):
/// 10 minutes.
pub const RETRY_SLEEP_MS: u64 = 10 * 60 * 1000;

/// Whether the bootloader starts the independent watchdog before running ota-core's steps:
/// only when there is install or revert work, or a trial boot (whose hang must end in a reset
/// so the attempt counts and the revert comes). A confirmed image boots without it, as
/// Device OS does on the Electron: the IWDG cannot be stopped and keeps running in STANDBY,
/// so it would end every deep sleep within its period.
pub const fn needs_watchdog(phase: Phase) -> bool {
    matches!(phase, Phase::Installing | Phase::Reverting | Phase::Trial)
}

/// A vector table the bootloader refuses to jump to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadVectors {
    /// The initial stack pointer (word 0) is not a word-aligned address inside (or at the top
    /// of) the RAM: an erased slot reads 0xFFFF_FFFF here.
    StackPointer(u32),
    /// The reset vector (word 1) is not a Thumb address (bit 0 set) inside the active slot.
    ResetVector(u32),
}

/// The application's entry: its initial stack pointer and reset handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Word 0 of the vector table.
    pub stack_pointer: u32,
    /// Word 1, with the Thumb bit.
    pub reset_vector: u32,
}

/// Checks the first two words of the application's vector table: the stack pointer inside
/// [`RAM`] (its top included, where cortex-m-rt puts it) and 4-byte aligned; the reset vector
/// odd (Thumb) and inside [`APP_CODE`] past the two words themselves.
///
/// # Errors
/// [`BadVectors`].
pub const fn check_vectors(stack_pointer: u32, reset_vector: u32) -> Result<Entry, BadVectors> {
    if stack_pointer < RAM.start || stack_pointer > RAM.end || !stack_pointer.is_multiple_of(4) {
        return Err(BadVectors::StackPointer(stack_pointer));
    }
    let code = reset_vector & !1;
    if reset_vector & 1 == 0 || code < APP_CODE.start + 8 || code >= APP_CODE.end {
        return Err(BadVectors::ResetVector(reset_vector));
    }
    Ok(Entry {
        stack_pointer,
        reset_vector,
    })
}

/// What the bootloader does after ota-core's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Jump to the application.
    Jump(Entry),
    /// Reset without jumping: a trial image that cannot be started (bad vectors, or a manifest
    /// that fails the signature check). The reset counts the trial's next boot attempt, so
    /// after [`BootConfig::max_boot_attempts`] ota-core reverts to the previous image.
    Reset,
    /// A step failed with a flash error (or the state could not be written): sleep
    /// [`RETRY_SLEEP_MS`] in STANDBY, then boot again and redo it (every step is idempotent).
    /// A brown-out at a low battery is the likely cause; a reset loop would drain what is
    /// left, a sleep lets it recover. With the IWDG running the sleep ends at its period.
    Retry,
    /// Nothing bootable: the active slot holds no plausible vector table and no trial can be
    /// reverted (a blank device, or a confirmed image that is damaged). The board parks in
    /// STANDBY with no wakeup source (a few µA) until a reset or power cycle, rather than
    /// reset in a loop and drain the battery; flash an image over SWD or DFU.
    Park,
}

/// Why the bootloader did not boot the image ota-core chose, when it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The vector table is not plausible.
    Vectors(BadVectors),
    /// The trial image's manifest failed the signature check (`verify-signature`).
    Manifest,
}

/// The decision after `Bootloader::run` (or `open`) ended.
///
/// * `target`: `Some` with ota-core's choice; `None` when the state could not be read
///   (`open` failed: a layout mismatch, or unreadable state) and the active slot boots as
///   it is.
/// * `run_failed`: a step failed with a flash error (ota-core `BootError`).
/// * `vectors`: the active slot's vector check.
/// * `manifest_ok`: the `verify-signature` check of a trial image (always `true` without it).
pub const fn decide(
    target: Option<BootTarget>,
    run_failed: bool,
    vectors: Result<Entry, BadVectors>,
    manifest_ok: bool,
) -> (Action, Option<Refusal>) {
    if run_failed {
        return (Action::Retry, None);
    }
    let trial = match target {
        Some(BootTarget::Trial { .. }) => true,
        Some(BootTarget::Confirmed { .. }) => false,
        None => false,
    };
    match vectors {
        Err(bad) => {
            if trial {
                (Action::Reset, Some(Refusal::Vectors(bad)))
            } else {
                (Action::Park, Some(Refusal::Vectors(bad)))
            }
        }
        Ok(entry) => {
            if trial && !manifest_ok {
                (Action::Reset, Some(Refusal::Manifest))
            } else {
                (Action::Jump(entry), None)
            }
        }
    }
}

#[cfg(feature = "verify-signature")]
pub mod manifest;

// Not with `verify-signature`: that measurement build's writable range starts past the state
// log, so it cannot run an install at all (see the README).
#[cfg(all(test, not(feature = "verify-signature")))]
mod electron_map_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use ota_core::ImageSummary;

    const SP: u32 = 0x2002_0000;
    const RV: u32 = 0x0802_0199;

    #[test]
    fn the_app_lives_in_the_active_slot() {
        assert_eq!(APP_BASE, 0x0802_0000);
        assert_eq!(APP_CODE.end, 0x0808_0000);
        assert!(!WRITABLE.contains(&0));
        #[cfg(not(feature = "verify-signature"))]
        assert!(WRITABLE.contains(&LAYOUT.state.start));
        assert_eq!(WRITABLE.end, LAYOUT.scratch.end);
    }

    #[test]
    fn plausible_vectors_pass() {
        assert_eq!(
            check_vectors(SP, RV),
            Ok(Entry {
                stack_pointer: SP,
                reset_vector: RV
            })
        );
        assert!(check_vectors(0x2001_0000, 0x0807_FFFF).is_ok());
    }

    #[test]
    fn implausible_vectors_are_refused() {
        // Erased flash.
        assert_eq!(
            check_vectors(0xFFFF_FFFF, 0xFFFF_FFFF),
            Err(BadVectors::StackPointer(0xFFFF_FFFF))
        );
        assert_eq!(check_vectors(0, RV), Err(BadVectors::StackPointer(0)));
        assert_eq!(
            check_vectors(SP + 4, RV),
            Err(BadVectors::StackPointer(SP + 4))
        );
        assert_eq!(
            check_vectors(SP - 2, RV),
            Err(BadVectors::StackPointer(SP - 2))
        );
        // Not Thumb.
        assert_eq!(
            check_vectors(SP, RV & !1),
            Err(BadVectors::ResetVector(RV & !1))
        );
        // Into the bootloader, the staging slot, or the vector words themselves.
        for rv in [0x0800_0101, 0x0808_0001, 0x0802_0001, 0x0802_0005] {
            assert_eq!(check_vectors(SP, rv), Err(BadVectors::ResetVector(rv)));
        }
    }

    #[test]
    fn the_watchdog_runs_only_for_work_and_trials() {
        assert!(needs_watchdog(Phase::Installing));
        assert!(needs_watchdog(Phase::Reverting));
        assert!(needs_watchdog(Phase::Trial));
        assert!(!needs_watchdog(Phase::Idle));
        assert!(!needs_watchdog(Phase::Downloading));
        assert!(!needs_watchdog(Phase::Downloaded));
    }

    #[test]
    fn the_watchdog_covers_the_worst_step() {
        let c = electron_bsp::iwdg::iwdg_config(WATCHDOG_MS);
        // The worst step: a 128 KiB erase at its 2 s maximum, at the fastest LSI.
        assert!(c.period_ms(electron_bsp::iwdg::LSI_MAX_HZ) >= 2_000 * 10);
    }

    fn trial() -> BootTarget {
        BootTarget::Trial {
            attempt: 1,
            image: None::<ImageSummary>,
        }
    }

    #[test]
    fn decisions() {
        let good = check_vectors(SP, RV);
        let bad = check_vectors(0xFFFF_FFFF, 0xFFFF_FFFF);
        let confirmed = BootTarget::Confirmed { image: None };
        let Ok(entry) = good else { panic!() };
        assert_eq!(
            decide(Some(confirmed), false, good, true),
            (Action::Jump(entry), None)
        );
        assert_eq!(decide(None, false, good, true), (Action::Jump(entry), None));
        assert_eq!(
            decide(Some(trial()), false, good, true).0,
            Action::Jump(entry)
        );
        // A trial that cannot start resets (the attempt counts, then the revert).
        assert_eq!(decide(Some(trial()), false, bad, true).0, Action::Reset);
        assert_eq!(
            decide(Some(trial()), false, good, false),
            (Action::Reset, Some(Refusal::Manifest))
        );
        // A confirmed image's manifest is not checked.
        assert_eq!(
            decide(Some(confirmed), false, good, false).0,
            Action::Jump(entry)
        );
        // Nothing bootable: park.
        assert_eq!(decide(Some(confirmed), false, bad, true).0, Action::Park);
        assert_eq!(decide(None, false, bad, true).0, Action::Park);
        // A failed step: reset and redo.
        assert_eq!(decide(Some(trial()), true, good, true).0, Action::Retry);
        assert_eq!(decide(None, true, bad, true).0, Action::Retry);
    }
}
