//! The working form of the persisted state: each phase's data inside its variant, and the one
//! place that changes it.
//!
//! [`Persisted`] stays the flash codec (its bytes are the state record of
//! `docs/image-format.md`, section 4); the updater and the bootloader work on [`OtaState`],
//! whose [`PhaseData`] variants carry exactly what their phase needs (the shape of
//! quinn-proto's connection `State`, `quinn-proto/src/connection/mod.rs`). Every change goes
//! through [`check_transition`], which refuses a (from, to) pair the machine does not have
//! (as smoltcp's TCP socket funnels its changes through `set_state`,
//! `smoltcp/src/socket/tcp.rs`), with a typed error rather than a panic.
//!
//! Conversion is lossless both ways for every record this crate writes: a field that the
//! phase does not use is written 0 (or "none"), and reading ignores it, so an older record that
//! still carries one (an Idle record with the last download's manifest digest, say) reads the
//! same as its canonical form.

use crate::layout::LayoutId;
use crate::manifest::{SecurityCounter, Sha256Digest};
use crate::state::{ImageSummary, Persisted, Phase};
use crate::status::UpdateResult;

/// How a download records its chunks in the progress region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Markers {
    /// One flash word per chunk.
    Words,
    /// One bit per chunk (a `MultiwriteNorFlash`).
    Bits,
}

/// The download a phase works on, from `begin` until the image is confirmed or abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StagedDownload {
    /// The image being downloaded, staged, installed or tried (`None` only in a record
    /// written by something else).
    pub(crate) image: Option<ImageSummary>,
    /// SHA-256 of its manifest (the copy in the progress region must hash to it).
    pub(crate) manifest_digest: Sha256Digest,
    /// Length of that manifest in bytes.
    pub(crate) manifest_len: u32,
    /// How its progress markers are written.
    pub(crate) markers: Markers,
}

/// One of the three stages that swap one unit (see `install.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum SwapStage {
    /// Erase scratch, copy active → scratch.
    ActiveToScratch,
    /// Erase the unit's active sectors, copy staging → active.
    StagingToActive,
    /// Erase the unit's staging sectors, copy scratch → staging.
    ScratchToStaging,
}

impl SwapStage {
    fn index(self) -> u32 {
        match self {
            Self::ActiveToScratch => 0,
            Self::StagingToActive => 1,
            Self::ScratchToStaging => 2,
        }
    }
}

/// The swap of an install or a revert: its length and the next stage to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swap {
    /// Bytes of both slots exchanged (whole units).
    pub(crate) len: u32,
    /// Units whose three stages are all complete.
    pub(crate) unit: u32,
    /// The next stage of unit `unit`.
    pub(crate) stage: SwapStage,
}

impl Swap {
    /// A swap of `len` bytes with no stage done.
    pub(crate) const fn start(len: u32) -> Self {
        Self {
            len,
            unit: 0,
            stage: SwapStage::ActiveToScratch,
        }
    }

    /// The swap with its next stage complete.
    pub(crate) fn advanced(self) -> Self {
        let (unit, stage) = match self.stage {
            SwapStage::ActiveToScratch => (self.unit, SwapStage::StagingToActive),
            SwapStage::StagingToActive => (self.unit, SwapStage::ScratchToStaging),
            SwapStage::ScratchToStaging => {
                (self.unit.saturating_add(1), SwapStage::ActiveToScratch)
            }
        };
        Self {
            unit,
            stage,
            ..self
        }
    }

    /// Stages completed, as the record counts them (3 per unit). Saturates (only a swap built
    /// from a record can be that far, and the journal check refuses it).
    pub(crate) fn stages_done(self) -> u32 {
        self.unit
            .saturating_mul(3)
            .saturating_add(self.stage.index())
    }

    fn from_record(len: u32, step: u32) -> Self {
        let stage = match step % 3 {
            0 => SwapStage::ActiveToScratch,
            1 => SwapStage::StagingToActive,
            _ => SwapStage::ScratchToStaging,
        };
        Self {
            len,
            unit: step / 3,
            stage,
        }
    }
}

/// The stage of a staging-sector repair that is next (see `Updater::erase_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepairStage {
    /// Copy the sector's recorded chunks to scratch.
    CopyOut,
    /// Erase the sector and restore its chunks from scratch.
    Restore,
}

/// A repair of staging sector `sector` (index within the slot) after a torn chunk write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repair {
    pub(crate) sector: u32,
    pub(crate) stage: RepairStage,
}

/// Each phase with its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseData {
    /// Nothing in progress. `staged`: what the staging slot was left holding by a failed
    /// update (a reverted or corrupt image), if anything.
    Idle { staged: Option<ImageSummary> },
    /// A download in progress, with a repair of a staging sector that has started, if any.
    Downloading {
        download: StagedDownload,
        repair: Option<Repair>,
    },
    /// The staged image hashed to its manifest's digest.
    Downloaded { download: StagedDownload },
    /// The bootloader swaps the staged image in.
    Installing {
        download: StagedDownload,
        swap: Swap,
    },
    /// The new image runs on trial; `swap` is the install that put it there (a revert runs
    /// it again).
    Trial {
        download: StagedDownload,
        swap: Swap,
        boot_attempts: u8,
    },
    /// The bootloader swaps the previous image back.
    Reverting {
        download: StagedDownload,
        swap: Swap,
    },
}

impl PhaseData {
    /// The persisted phase of this variant.
    pub(crate) fn phase(&self) -> Phase {
        match self {
            Self::Idle { .. } => Phase::Idle,
            Self::Downloading { .. } => Phase::Downloading,
            Self::Downloaded { .. } => Phase::Downloaded,
            Self::Installing { .. } => Phase::Installing,
            Self::Trial { .. } => Phase::Trial,
            Self::Reverting { .. } => Phase::Reverting,
        }
    }

    /// The download this phase works on, if any.
    pub(crate) fn download(&self) -> Option<&StagedDownload> {
        match self {
            Self::Idle { .. } => None,
            Self::Downloading { download, .. }
            | Self::Downloaded { download }
            | Self::Installing { download, .. }
            | Self::Trial { download, .. }
            | Self::Reverting { download, .. } => Some(download),
        }
    }

    /// The image being downloaded, staged, installed or tried (or left in staging).
    pub(crate) fn staged(&self) -> Option<ImageSummary> {
        match self {
            Self::Idle { staged } => *staged,
            _ => self.download().and_then(|d| d.image),
        }
    }
}

/// The state the updater and the bootloader work on: the device-wide facts and the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OtaState {
    /// LwM2M Update Result of the last finished operation.
    pub(crate) result: UpdateResult,
    /// Security counter of the confirmed image; rises only on confirm and provisioning.
    pub(crate) security_counter: SecurityCounter,
    /// The confirmed image in the active slot (during a trial: the previous one, now in
    /// staging), if known.
    pub(crate) active: Option<ImageSummary>,
    /// The phase and its data.
    pub(crate) phase: PhaseData,
}

impl OtaState {
    /// The state of a device that never recorded anything.
    pub(crate) const EMPTY: Self = Self {
        result: UpdateResult::Initial,
        security_counter: SecurityCounter(0),
        active: None,
        phase: PhaseData::Idle { staged: None },
    };

    /// The same device facts in another phase.
    pub(crate) fn with(self, phase: PhaseData) -> Self {
        Self { phase, ..self }
    }

    /// The record for this state (sequence number 0 and no layout id: the log sets both).
    #[inline(never)]
    pub(crate) fn to_record(self) -> Persisted {
        let none = Swap::start(0);
        let (staged, download, swap, boot_attempts, repair) = match self.phase {
            PhaseData::Idle { staged } => (staged, None, none, 0, None),
            PhaseData::Downloading { download, repair } => {
                (download.image, Some(download), none, 0, repair)
            }
            PhaseData::Downloaded { download } => (download.image, Some(download), none, 0, None),
            PhaseData::Installing { download, swap } | PhaseData::Reverting { download, swap } => {
                (download.image, Some(download), swap, 0, None)
            }
            PhaseData::Trial {
                download,
                swap,
                boot_attempts,
            } => (download.image, Some(download), swap, boot_attempts, None),
        };
        Persisted {
            seq: 0,
            phase: self.phase.phase(),
            result: self.result,
            boot_attempts,
            bit_markers: download.is_some_and(|d| d.markers == Markers::Bits),
            security_counter: self.security_counter,
            active: self.active,
            staged,
            manifest_digest: download.map_or(Sha256Digest([0; 32]), |d| d.manifest_digest),
            manifest_len: download.map_or(0, |d| d.manifest_len),
            swap_len: swap.len,
            swap_step: swap.stages_done(),
            repair_sector: repair.map(|r| r.sector),
            repair_restoring: repair.is_some_and(|r| r.stage == RepairStage::Restore),
            layout_id: LayoutId::UNRECORDED,
        }
    }

    /// The state a record holds (fields its phase does not use are ignored).
    #[inline(never)]
    pub(crate) fn from_record(p: &Persisted) -> Self {
        let download = StagedDownload {
            image: p.staged,
            manifest_digest: p.manifest_digest,
            manifest_len: p.manifest_len,
            markers: if p.bit_markers {
                Markers::Bits
            } else {
                Markers::Words
            },
        };
        let swap = Swap::from_record(p.swap_len, p.swap_step);
        let phase = match p.phase {
            Phase::Idle => PhaseData::Idle { staged: p.staged },
            Phase::Downloading => PhaseData::Downloading {
                download,
                repair: p.repair_sector.map(|sector| Repair {
                    sector,
                    stage: if p.repair_restoring {
                        RepairStage::Restore
                    } else {
                        RepairStage::CopyOut
                    },
                }),
            },
            Phase::Downloaded => PhaseData::Downloaded { download },
            Phase::Installing => PhaseData::Installing { download, swap },
            Phase::Trial => PhaseData::Trial {
                download,
                swap,
                boot_attempts: p.boot_attempts,
            },
            Phase::Reverting => PhaseData::Reverting { download, swap },
        };
        Self {
            result: p.result,
            security_counter: p.security_counter,
            active: p.active,
            phase,
        }
    }
}

/// A phase change the machine does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) struct IllegalTransition {
    pub(crate) from: Phase,
    pub(crate) to: Phase,
}

/// Checks that `from → to` is an edge of the machine:
///
/// * Idle → Downloading (`begin`); Idle → Idle (`provision`);
/// * Downloading → Downloaded (`finish`); Downloading → Downloading (a repair stage);
///   Downloading → Idle (`cancel`, a superseding `begin`, an integrity failure);
/// * Downloaded → Installing (`mark_install`); Downloaded → Idle (`cancel`, `begin`);
/// * Installing → Installing (a swap stage); → Trial (digest check passed); → Reverting
///   (digest mismatch);
/// * Trial → Trial (a boot attempt); → Idle (`mark_confirmed`); → Reverting (`mark_failed`,
///   too many boots);
/// * Reverting → Reverting (a swap stage); → Idle (revert complete).
pub(crate) fn check_transition(from: Phase, to: Phase) -> Result<(), IllegalTransition> {
    use Phase::*;
    let legal = matches!(
        (from, to),
        (Idle, Idle | Downloading)
            | (Downloading, Downloading | Downloaded | Idle)
            | (Downloaded, Installing | Idle)
            | (Installing, Installing | Trial | Reverting)
            | (Trial, Trial | Idle | Reverting)
            | (Reverting, Reverting | Idle)
    );
    if legal {
        Ok(())
    } else {
        Err(IllegalTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Version;
    use proptest::prelude::*;

    fn summary(n: u8) -> ImageSummary {
        ImageSummary {
            version: Version::new(n.into(), 2, 3),
            security_counter: SecurityCounter(n.into()),
            size: 1000 + u32::from(n),
            digest: Sha256Digest([n; 32]),
        }
    }

    fn arb_image() -> impl Strategy<Value = Option<ImageSummary>> {
        proptest::option::of(any::<u8>().prop_map(summary))
    }

    fn arb_download() -> impl Strategy<Value = StagedDownload> {
        (arb_image(), any::<u8>(), any::<u32>(), any::<bool>()).prop_map(|(image, d, len, bits)| {
            StagedDownload {
                image,
                manifest_digest: Sha256Digest([d; 32]),
                manifest_len: len,
                markers: if bits { Markers::Bits } else { Markers::Words },
            }
        })
    }

    fn arb_swap() -> impl Strategy<Value = Swap> {
        (any::<u32>(), 0..u32::MAX / 3, 0..3u32)
            .prop_map(|(len, unit, s)| Swap::from_record(len, unit * 3 + s))
    }

    fn arb_phase() -> impl Strategy<Value = PhaseData> {
        prop_oneof![
            arb_image().prop_map(|staged| PhaseData::Idle { staged }),
            (
                arb_download(),
                proptest::option::of((
                    any::<u32>().prop_filter("none", |s| *s != u32::MAX),
                    any::<bool>()
                ))
            )
                .prop_map(|(download, r)| PhaseData::Downloading {
                    download,
                    repair: r.map(|(sector, restore)| Repair {
                        sector,
                        stage: if restore {
                            RepairStage::Restore
                        } else {
                            RepairStage::CopyOut
                        },
                    }),
                }),
            arb_download().prop_map(|download| PhaseData::Downloaded { download }),
            (arb_download(), arb_swap())
                .prop_map(|(download, swap)| PhaseData::Installing { download, swap }),
            (arb_download(), arb_swap(), any::<u8>()).prop_map(
                |(download, swap, boot_attempts)| {
                    PhaseData::Trial {
                        download,
                        swap,
                        boot_attempts,
                    }
                }
            ),
            (arb_download(), arb_swap())
                .prop_map(|(download, swap)| PhaseData::Reverting { download, swap }),
        ]
    }

    proptest! {
        /// Working state → record → bytes → record → working state is the identity.
        #[test]
        fn conversion_is_lossless(
            phase in arb_phase(),
            active in arb_image(),
            counter in any::<u32>(),
            result in 0..12u8,
        ) {
            let s = OtaState {
                result: UpdateResult::from_u8(result).unwrap(),
                security_counter: SecurityCounter(counter),
                active,
                phase,
            };
            let mut bytes = [0u8; crate::state::RECORD_LEN];
            s.to_record().encode(&mut bytes);
            let back = Persisted::decode(&bytes).unwrap();
            prop_assert_eq!(OtaState::from_record(&back), s);
            prop_assert_eq!(back, s.to_record());
        }
    }

    /// A record written before this shape (an Idle record still carrying the last download's
    /// manifest digest, swap and boot attempts) reads as its canonical form, which is what
    /// this crate writes back.
    #[test]
    fn fields_a_phase_does_not_use_are_ignored() {
        let old = Persisted {
            phase: Phase::Idle,
            result: UpdateResult::UpdateFailed,
            boot_attempts: 3,
            bit_markers: true,
            staged: Some(summary(4)),
            manifest_digest: Sha256Digest([9; 32]),
            manifest_len: 232,
            swap_len: 8192,
            swap_step: 6,
            ..Persisted::EMPTY
        };
        let s = OtaState::from_record(&old);
        assert_eq!(
            s.phase,
            PhaseData::Idle {
                staged: Some(summary(4))
            }
        );
        let canonical = Persisted {
            phase: Phase::Idle,
            result: UpdateResult::UpdateFailed,
            staged: Some(summary(4)),
            ..Persisted::EMPTY
        };
        assert_eq!(s.to_record(), canonical);
        assert_eq!(OtaState::from_record(&canonical), s);
    }

    #[test]
    fn swap_stages_count_as_the_record_does() {
        let mut s = Swap::start(4096);
        for step in 0..10 {
            assert_eq!(s.stages_done(), step);
            assert_eq!(Swap::from_record(4096, step), s);
            s = s.advanced();
        }
    }

    #[test]
    fn only_the_machines_edges_are_allowed() {
        use Phase::*;
        let all = [Idle, Downloading, Downloaded, Installing, Trial, Reverting];
        let mut legal = 0;
        for from in all {
            for to in all {
                match check_transition(from, to) {
                    Ok(()) => legal += 1,
                    Err(e) => assert_eq!(e, IllegalTransition { from, to }),
                }
            }
        }
        assert_eq!(legal, 15);
        assert_eq!(
            check_transition(Idle, Trial),
            Err(IllegalTransition {
                from: Idle,
                to: Trial
            })
        );
        assert!(check_transition(Downloaded, Downloaded).is_err());
        assert!(check_transition(Trial, Installing).is_err());
    }
}
