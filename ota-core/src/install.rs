//! The bootloader side: install a staged image by swapping it with the active one, boot it on
//! trial, and swap back if it is not confirmed in time.
//!
//! # The swap
//! The active and staging slots are exchanged unit by unit. A unit is the smallest range,
//! from the start of both slots, that ends on a sector boundary in both, so slots made of
//! different sectors (16/64/128 KiB on an STM32F2) work. Each unit takes three stages, each
//! recorded in the state log when it is complete:
//!
//! 1. erase the scratch sectors, copy active → scratch;
//! 2. erase the unit's active sectors, copy staging → active;
//! 3. erase the unit's staging sectors, copy scratch → staging.
//!
//! Every stage reads only data that no unfinished stage has touched, so after a power cut the
//! interrupted stage is simply run again. Only the units covering the larger of the old and new
//! image are swapped. A revert is the same swap run again, which puts the previous image back.
//!
//! After the last stage of an install, the bootloader hashes the image now in the active slot
//! and compares it with the digest recorded for it (the manifest's, which `finish` checked in
//! staging): only a match is booted on trial. A mismatch (a copy or flash fault) starts the
//! revert at once, and the device boots its previous image with the result `UpdateFailed`.
//! The check reads only, so a power cut during it simply runs it again.
//!
//! # Steps and the watchdog
//! Every call to [`Bootloader::step`] does one bounded piece of work, and the caller feeds its
//! watchdog between calls ([`Bootloader::run`] calls `between_steps`):
//! * one sector erase (of a stage's target, or of the state ring's next sector), or
//! * a copy of at most [`BootConfig::step_bytes`] bytes (read, and programmed unless they read
//!   erased), plus the stage's state record when the copy ends the stage, or
//! * a hash of at most `step_bytes` bytes of the installed image, plus a state record when the
//!   check ends, or
//! * one state record (the switch to trial, a boot attempt, the end of a revert).
//!
//! Only the stage boundaries are recorded: the erases and copy pieces of a stage, and the
//! check's hash state, live in the `Bootloader` (RAM), so after a reset the interrupted stage or
//! check starts again from its beginning, exactly as after a power cut.
//!
//! An erase cannot be split, and a single-bank STM32F2 stalls every flash fetch while it erases,
//! so nothing can feed a watchdog during one: **the watchdog period must exceed the longest
//! sector erase**. On the STM32F205 a 128 KiB sector takes 1 s typical and 2 s at most at x32
//! parallelism (2.7–3.6 V), 4 s at most at x8 (ST's datasheet figures for the F2/F4 flash,
//! `tERASE128KB`). Its IWDG runs from the LSI, 17–47 kHz: with prescaler 64 and reload 4095 the
//! period is 4096 × 64 / f(LSI), at least 5.5 s at the fastest LSI (8.2 s at 32 kHz), which
//! covers even x8 erases. The IWDG's reset values (prescaler 4, reload 4095: 0.35–0.96 s) do not cover
//! one 128 KiB erase, nor a 16 KiB one at its 0.5 s maximum. A copy step of 16 KiB programs
//! 4096 words: about 66 ms (16 µs a word) and at most 410 ms (100 µs a word).
//!
//! Cost of one install, per unit of `u` bytes: 3 erases covering `u` bytes, 3 copies of at
//! most `u` bytes (erased pieces are skipped), 3 state records; then one read and SHA-256 of
//! the new image (38 Cortex-M3 instructions a byte, see the crate README: 384 KiB ≈ 15 M
//! instructions, at least 126 ms at 120 MHz) and one record. Steps: per stage, one per target
//! sector plus ⌈`u` / `step_bytes`⌉; for the check, ⌈image size / `step_bytes`⌉ (an Electron
//! install of a 384 KiB image in 128 KiB units, 16 KiB steps: 9 erase and 72 copy steps, 24
//! check steps and the boot-attempt record, 106 steps in all, as `tests/costs.rs` counts).

use core::fmt;

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};
use sha2::{Digest as _, Sha256};

use crate::error::{BootError, OpenError};
use crate::flash_ops;
use crate::layout::Layout;
use crate::machine::{OtaState, PhaseData, StagedDownload, Swap, SwapStage};
use crate::manifest::Sha256Digest;
use crate::state::{ImageSummary, Phase, Store};
use crate::status::UpdateResult;

/// Bootloader settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootConfig {
    /// Boots of an unconfirmed image before it is reverted (at least 1).
    pub max_boot_attempts: u8,
    /// The most bytes one [`Bootloader::step`] copies or hashes (rounded down to whole flash
    /// words, at least one word). It bounds the time between two watchdog feeds together
    /// with one sector erase (see the module docs). Default 16 KiB: at most 410 ms of
    /// programming on an STM32F2.
    pub step_bytes: u32,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            max_boot_attempts: 3,
            step_bytes: 16 * 1024,
        }
    }
}

/// What to boot: the image in the active slot, confirmed or on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "jump to the active slot; a trial image must be confirmed before its attempts run out"]
pub enum BootTarget {
    /// The confirmed image (or, on a device that never recorded one, whatever the active slot
    /// holds).
    Confirmed {
        /// What the active slot holds, if known.
        image: Option<ImageSummary>,
    },
    /// The new image, on trial: the application must confirm it
    /// ([`Updater::mark_confirmed`](crate::Updater::mark_confirmed)) before
    /// [`BootConfig::max_boot_attempts`] boots, or it is reverted.
    Trial {
        /// This boot's attempt number, from 1.
        attempt: u8,
        /// The trial image, if known.
        image: Option<ImageSummary>,
    },
}

impl BootTarget {
    /// True if the image boots on trial.
    pub fn is_trial(&self) -> bool {
        matches!(self, Self::Trial { .. })
    }

    /// The trial boot's attempt number (from 1), 0 when the image is confirmed.
    pub fn attempt(&self) -> u8 {
        match self {
            Self::Trial { attempt, .. } => *attempt,
            Self::Confirmed { .. } => 0,
        }
    }

    /// What the active slot holds, if known.
    pub fn image(&self) -> Option<ImageSummary> {
        match self {
            Self::Confirmed { image } | Self::Trial { image, .. } => *image,
        }
    }
}

/// Result of one bootloader step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum BootStep {
    /// More work: call [`Bootloader::step`] again (feed the watchdog first).
    Continue,
    /// Done: jump to the active slot.
    Boot(BootTarget),
}

/// Work inside one swap stage or the digest check: RAM only, lost (and redone from the start
/// of the stage or check) on reset.
#[derive(Clone, Default)]
enum Work {
    #[default]
    None,
    /// The next stage of `swap` in `phase`: the target's sectors are erased up to
    /// `erase_next` (absolute); once all are, `copied` bytes of the stage are copied.
    Stage {
        phase: Phase,
        swap: Swap,
        erase_next: u32,
        copied: u32,
    },
    /// The installed image's digest check: `done` bytes hashed into `hasher`.
    Check { hasher: Sha256, done: u32 },
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Stage {
                phase,
                swap,
                erase_next,
                copied,
            } => f
                .debug_struct("Stage")
                .field("phase", phase)
                .field("swap", swap)
                .field("erase_next", erase_next)
                .field("copied", copied)
                .finish(),
            Self::Check { done, .. } => f.debug_struct("Check").field("done", done).finish(),
        }
    }
}

/// The install, trial and revert state machine, for a bootloader binary.
///
/// Not `Clone`: it caches where the next state record goes (see [`crate::Updater`]).
#[derive(Debug)]
pub struct Bootloader {
    store: Store,
    config: BootConfig,
    work: Work,
}

impl Bootloader {
    /// Reads the state log. Cost: reads the state region; writes nothing.
    ///
    /// # Errors
    /// [`OpenError::Layout`] if the layout breaks a rule; [`OpenError::LayoutMismatch`] if the
    /// state was written under another layout; [`OpenError::Flash`].
    pub fn open<F: NorFlash>(
        flash: &mut F,
        layout: Layout,
        config: BootConfig,
    ) -> Result<Self, OpenError> {
        Ok(Self {
            store: Store::open(flash, layout)?,
            config,
            work: Work::None,
        })
    }

    /// The persisted phase.
    pub fn phase(&self) -> Phase {
        self.store.state().phase.phase()
    }

    /// Runs steps until the device can boot, calling `between_steps` (feed the watchdog there)
    /// after each. `buf` is the copy buffer: larger is faster; its length must be at least the
    /// flash write size.
    ///
    /// Cost: the whole install, check, revert or boot-attempt record (see the module docs);
    /// between two calls of `between_steps`, one [`step`](Self::step).
    pub fn run<F: NorFlash>(
        &mut self,
        flash: &mut F,
        buf: &mut [u8],
        mut between_steps: impl FnMut(),
    ) -> Result<BootTarget, BootError> {
        loop {
            match self.step(flash, buf)? {
                BootStep::Continue => between_steps(),
                BootStep::Boot(t) => return Ok(t),
            }
        }
    }

    /// Does one bounded piece of work: one sector erase, a copy or hash of at most
    /// [`BootConfig::step_bytes`] bytes (with the state record that ends a swap stage or the
    /// digest check), or one state transition. See the module docs for the watchdog period
    /// this needs.
    ///
    /// Erases happen only as install or revert work (swap stages, and keeping the state ring's
    /// next sector blank), with one exception: a trial boot-attempt record that finds the
    /// state log full with its next sector not blank erases that sector (one state-sector
    /// erase) rather than boot without counting the attempt. Installs leave the ring ready, so
    /// this happens only when a trial lasts more boots than a state sector has slots, or after
    /// a power cut tore the record that opened a new state sector.
    ///
    /// Cost: at most one sector erase, or at most `step_bytes` bytes read and programmed (or
    /// read and hashed), and at most one 192-byte record (with its read-back and, when it opens
    /// a new state sector, a read of the sector after it).
    ///
    /// # Errors
    /// [`BootError::BufferTooSmall`] if `buf` is shorter than the flash write size;
    /// [`BootError::InconsistentState`] if the recorded swap does not fit the layout;
    /// [`BootError::Flash`]: power-cycle and run again, every step is idempotent.
    pub fn step<F: NorFlash>(
        &mut self,
        flash: &mut F,
        buf: &mut [u8],
    ) -> Result<BootStep, BootError> {
        if buf.len() < F::WRITE_SIZE {
            return Err(BootError::BufferTooSmall);
        }
        let st = *self.store.state();
        match st.phase {
            PhaseData::Installing { download, swap } | PhaseData::Reverting { download, swap } => {
                let installing = matches!(st.phase, PhaseData::Installing { .. });
                self.check_journal(&st, swap)?;
                // Keep the state ring ready, so that the trial's boot-attempt records (and the
                // application's next state changes) find a blank sector when they need one.
                if self.store.erase_state_step(flash)? {
                    return Ok(BootStep::Continue);
                }
                if let Some((rel, len)) = self.unit(swap) {
                    if self.stage_step(flash, st.phase.phase(), swap, rel, len, buf)? {
                        info!(
                            "boot: {:?} unit {} stage {:?} done",
                            st.phase.phase(),
                            swap.unit,
                            swap.stage
                        );
                        let swap = swap.advanced();
                        let next = if installing {
                            PhaseData::Installing { download, swap }
                        } else {
                            PhaseData::Reverting { download, swap }
                        };
                        self.commit(flash, st.with(next))?;
                    }
                } else if installing {
                    match self.check_step(flash, &download, buf)? {
                        None => {}
                        Some(true) => {
                            info!("boot: installed image matches its digest");
                            self.commit(
                                flash,
                                st.with(PhaseData::Trial {
                                    download,
                                    swap,
                                    boot_attempts: 0,
                                }),
                            )?
                        }
                        // The installed image is not the one that was verified: never boot
                        // it, swap the previous one back.
                        Some(false) => {
                            error!("boot: installed image does not match its digest: reverting");
                            self.commit(flash, st.with(revert(download, swap)))?
                        }
                    }
                } else {
                    // Reverted: the confirmed image is back; the failed one sits in staging.
                    warn!("boot: revert complete, the confirmed image is back");
                    self.commit(
                        flash,
                        OtaState {
                            result: UpdateResult::UpdateFailed,
                            phase: PhaseData::Idle {
                                staged: download.image,
                            },
                            ..st
                        },
                    )?;
                }
                Ok(BootStep::Continue)
            }
            PhaseData::Trial {
                download,
                swap,
                boot_attempts,
            } => {
                if boot_attempts >= self.config.max_boot_attempts.max(1) {
                    warn!(
                        "boot: trial image not confirmed after {} boots: reverting",
                        boot_attempts
                    );
                    self.commit(flash, st.with(revert(download, swap)))?;
                    return Ok(BootStep::Continue);
                }
                let attempt = boot_attempts + 1;
                info!("boot: trial boot, attempt {}", attempt);
                self.commit(
                    flash,
                    st.with(PhaseData::Trial {
                        download,
                        swap,
                        boot_attempts: attempt,
                    }),
                )?;
                Ok(BootStep::Boot(BootTarget::Trial {
                    attempt,
                    image: download.image,
                }))
            }
            PhaseData::Idle { .. }
            | PhaseData::Downloading { .. }
            | PhaseData::Downloaded { .. } => {
                Ok(BootStep::Boot(BootTarget::Confirmed { image: st.active }))
            }
        }
    }

    /// Records `next`; the work of the finished stage or check is over.
    fn commit<F: NorFlash>(&mut self, flash: &mut F, next: OtaState) -> Result<(), BootError> {
        self.work = Work::None;
        Ok(self.store.commit_or_erase(flash, next)?)
    }

    /// Refuses a journal that cannot have been written with this layout: it would make the
    /// bootloader skip or repeat swap stages.
    fn check_journal(&self, st: &OtaState, swap: Swap) -> Result<(), BootError> {
        let images = st
            .phase
            .staged()
            .map_or(0, |s| s.size)
            .max(st.active.map_or(0, |a| a.size));
        if swap.len > self.store.capacity || swap.len < images || swap.len == 0 {
            return Err(BootError::InconsistentState);
        }
        let l = &self.store.layout;
        let mut rel = 0;
        let mut units = 0u32;
        while rel < swap.len {
            rel = l.common_end(rel).ok_or(BootError::InconsistentState)?;
            units += 1;
        }
        if rel != swap.len || swap.stages_done() > 3 * units {
            return Err(BootError::InconsistentState);
        }
        Ok(())
    }

    /// The unit (start, length) of the next stage of `swap`, `None` when all are done.
    fn unit(&self, swap: Swap) -> Option<(u32, u32)> {
        let l = &self.store.layout;
        let mut rel = 0;
        for _ in 0..swap.unit {
            rel = l.common_end(rel)?;
        }
        if rel >= swap.len {
            return None;
        }
        let end = l.common_end(rel)?;
        Some((rel, end - rel))
    }

    /// Bytes one step copies or hashes: `step_bytes` in whole words, at least one word.
    fn step_len(&self, write_size: usize) -> u32 {
        let w = u32::try_from(write_size).unwrap_or(32);
        (self.config.step_bytes / w * w).max(w)
    }

    /// One step of the next stage of `swap` (in `phase`), on the unit at `rel` (`len`
    /// bytes): erase the next target sector, or copy the next piece. Returns true when the
    /// stage's copy is complete (the caller records it).
    fn stage_step<F: NorFlash>(
        &mut self,
        flash: &mut F,
        phase: Phase,
        swap: Swap,
        rel: u32,
        len: u32,
        buf: &mut [u8],
    ) -> Result<bool, BootError> {
        let l = self.store.layout;
        let (a, s, x) = (l.active.start + rel, l.staging.start + rel, l.scratch.start);
        let (from, to) = match swap.stage {
            SwapStage::ActiveToScratch => (a, x),
            SwapStage::StagingToActive => (s, a),
            SwapStage::ScratchToStaging => (x, s),
        };
        let (erase_next, copied) = match self.work {
            Work::Stage {
                phase: p,
                swap: w,
                erase_next,
                copied,
            } if p == phase && w == swap => (erase_next, copied),
            _ => (to, 0),
        };
        let mut next = Work::Stage {
            phase,
            swap,
            erase_next,
            copied,
        };
        if erase_next < to + len {
            // Every sector overlapping the target, one per step.
            let sector = l
                .map
                .sector_at(erase_next)
                .ok_or(NorFlashErrorKind::OutOfBounds)?;
            flash
                .erase(sector.start, sector.end)
                .map_err(|e| e.kind())?;
            if let Work::Stage { erase_next, .. } = &mut next {
                *erase_next = sector.end;
            }
            self.work = next;
            return Ok(false);
        }
        let n = (len - copied).min(self.step_len(F::WRITE_SIZE));
        flash_ops::copy(flash, from + copied, to + copied, n, buf)?;
        if let Work::Stage { copied: c, .. } = &mut next {
            *c = copied + n;
        }
        self.work = next;
        Ok(copied + n >= len)
    }

    /// One step of the installed image's digest check: hashes the next piece of the active
    /// slot. `Some(matches)` once the whole image is hashed.
    fn check_step<F: NorFlash>(
        &mut self,
        flash: &mut F,
        download: &StagedDownload,
        buf: &mut [u8],
    ) -> Result<Option<bool>, BootError> {
        // Without a summary there is nothing to check the image against: never boot it.
        let Some(img) = download.image else {
            return Ok(Some(false));
        };
        let (mut hasher, done) = match core::mem::take(&mut self.work) {
            Work::Check { hasher, done } => (hasher, done),
            _ => (Sha256::new(), 0),
        };
        let n = img
            .size
            .saturating_sub(done)
            .min(self.step_len(F::WRITE_SIZE));
        let start = self.store.layout.active.start;
        flash_ops::hash_into(flash, start + done, n, buf, &mut hasher)?;
        if done + n < img.size {
            self.work = Work::Check {
                hasher,
                done: done + n,
            };
            return Ok(None);
        }
        Ok(Some(Sha256Digest(hasher.finalize().into()) == img.digest))
    }
}

/// The revert of the install `swap` did: the same swap run again from its first stage.
fn revert(download: StagedDownload, swap: Swap) -> PhaseData {
    PhaseData::Reverting {
        download,
        swap: Swap::start(swap.len),
    }
}
