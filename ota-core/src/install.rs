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
//! Cost of one install, per unit of `u` bytes: 3 erases covering `u` bytes, 3 copies of at
//! most `u` bytes (erased pieces are skipped), 3 state records.

use embedded_storage::nor_flash::NorFlash;

use crate::error::{BootError, OpenError};
use crate::flash_ops;
use crate::layout::Layout;
use crate::state::{ImageSummary, Persisted, Phase, Store};
use crate::status::UpdateResult;

/// Bootloader settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootConfig {
    /// Boots of an unconfirmed image before it is reverted (at least 1).
    pub max_boot_attempts: u8,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            max_boot_attempts: 3,
        }
    }
}

/// What to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BootTarget {
    /// The image in the active slot is on trial (boot attempt number `attempt`).
    pub trial: bool,
    /// Boot attempt of the trial image, 0 when not on trial.
    pub attempt: u8,
    /// What the active slot holds, if known.
    pub image: Option<ImageSummary>,
}

/// Result of one bootloader step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BootStep {
    /// More work: call [`Bootloader::step`] again (feed the watchdog first).
    Continue,
    /// Done: jump to the active slot.
    Boot(BootTarget),
}

/// The install, trial and revert state machine, for a bootloader binary.
///
/// Not `Clone`: it caches where the next state record goes (see [`crate::Updater`]).
#[derive(Debug)]
pub struct Bootloader {
    store: Store,
    config: BootConfig,
}

impl Bootloader {
    /// Reads the state log. Cost: reads the state region; writes nothing.
    pub fn open<F: NorFlash>(
        flash: &mut F,
        layout: Layout,
        config: BootConfig,
    ) -> Result<Self, OpenError> {
        Ok(Self {
            store: Store::open(flash, layout)?,
            config,
        })
    }

    /// The persisted phase.
    pub fn phase(&self) -> Phase {
        self.store.state.phase
    }

    /// Runs steps until the device can boot, calling `between_steps` (feed the watchdog there)
    /// after each. `buf` is the copy buffer: larger is faster; its length must be at least the
    /// flash write size.
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

    /// Does one bounded piece of work: one swap stage, one state transition, or (during an
    /// install or revert) one erase of the state sector the log needs next.
    ///
    /// Erases happen only as install or revert work (swap stages, and keeping the state ring's
    /// next sector blank), with one exception: a trial boot-attempt record that finds the
    /// state log full with its next sector not blank erases that sector (one state-sector
    /// erase) rather than boot without counting the attempt. Installs leave the ring ready, so
    /// this happens only when a trial lasts more boots than a state sector has slots, or after
    /// a power cut tore the record that opened a new state sector.
    pub fn step<F: NorFlash>(
        &mut self,
        flash: &mut F,
        buf: &mut [u8],
    ) -> Result<BootStep, BootError> {
        if buf.len() < F::WRITE_SIZE {
            return Err(BootError::BufferTooSmall);
        }
        let st = self.store.state;
        match st.phase {
            Phase::Installing | Phase::Reverting => {
                self.check_journal(&st)?;
                // Keep the state ring ready, so that the trial's boot-attempt records (and the
                // application's next state changes) find a blank sector when they need one.
                if self.store.erase_state_step(flash)? {
                    return Ok(BootStep::Continue);
                }
                if let Some((rel, len, stage)) = self.stage(st.swap_step, st.swap_len) {
                    self.run_stage(flash, rel, len, stage, buf)?;
                    self.store.commit_or_erase(
                        flash,
                        Persisted {
                            swap_step: st.swap_step + 1,
                            ..st
                        },
                    )?;
                } else if st.phase == Phase::Installing {
                    self.store.commit_or_erase(
                        flash,
                        Persisted {
                            phase: Phase::Trial,
                            boot_attempts: 0,
                            ..st
                        },
                    )?;
                } else {
                    // Reverted: the confirmed image is back; the failed one sits in staging.
                    self.store.commit_or_erase(
                        flash,
                        Persisted {
                            phase: Phase::Idle,
                            result: UpdateResult::UpdateFailed,
                            boot_attempts: 0,
                            ..st
                        },
                    )?;
                }
                Ok(BootStep::Continue)
            }
            Phase::Trial => {
                if st.boot_attempts >= self.config.max_boot_attempts.max(1) {
                    self.store.commit_or_erase(
                        flash,
                        Persisted {
                            phase: Phase::Reverting,
                            swap_step: 0,
                            ..st
                        },
                    )?;
                    return Ok(BootStep::Continue);
                }
                let attempt = st.boot_attempts + 1;
                self.store.commit_or_erase(
                    flash,
                    Persisted {
                        boot_attempts: attempt,
                        ..st
                    },
                )?;
                Ok(BootStep::Boot(BootTarget {
                    trial: true,
                    attempt,
                    image: st.staged,
                }))
            }
            Phase::Idle | Phase::Downloading | Phase::Downloaded => {
                Ok(BootStep::Boot(BootTarget {
                    trial: false,
                    attempt: 0,
                    image: st.active,
                }))
            }
        }
    }

    /// Refuses a journal that cannot have been written with this layout: it would make the
    /// bootloader skip or repeat swap stages.
    fn check_journal(&self, st: &Persisted) -> Result<(), BootError> {
        let images = st
            .staged
            .map_or(0, |s| s.size)
            .max(st.active.map_or(0, |a| a.size));
        if st.swap_len > self.store.capacity || st.swap_len < images || st.swap_len == 0 {
            return Err(BootError::InconsistentState);
        }
        let l = &self.store.layout;
        let mut rel = 0;
        let mut units = 0u32;
        while rel < st.swap_len {
            rel = l.common_end(rel).ok_or(BootError::InconsistentState)?;
            units += 1;
        }
        if rel != st.swap_len || st.swap_step > 3 * units {
            return Err(BootError::InconsistentState);
        }
        Ok(())
    }

    /// The unit (start, length) and stage of swap step `step`, `None` when all are done.
    fn stage(&self, step: u32, swap_len: u32) -> Option<(u32, u32, u32)> {
        let l = &self.store.layout;
        let (unit, stage) = (step / 3, step % 3);
        let mut rel = 0;
        for _ in 0..unit {
            rel = l.common_end(rel)?;
        }
        if rel >= swap_len {
            return None;
        }
        let end = l.common_end(rel)?;
        Some((rel, end - rel, stage))
    }

    fn run_stage<F: NorFlash>(
        &mut self,
        flash: &mut F,
        rel: u32,
        len: u32,
        stage: u32,
        buf: &mut [u8],
    ) -> Result<(), BootError> {
        let l = self.store.layout;
        let (a, s, x) = (l.active.start + rel, l.staging.start + rel, l.scratch.start);
        let (from, to) = match stage {
            0 => (a, x),
            1 => (s, a),
            _ => (x, s),
        };
        flash_ops::erase_covering(flash, &l.map, to, len)?;
        flash_ops::copy(flash, from, to, len, buf)?;
        Ok(())
    }
}
