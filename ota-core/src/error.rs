//! Error types, one per operation family.

use core::fmt;

use embedded_storage::nor_flash::NorFlashErrorKind;

use crate::layout::LayoutError;
use crate::machine::IllegalTransition;
use crate::state::{CommitError, Phase};

macro_rules! impl_error {
    ($t:ty) => {
        impl core::error::Error for $t {}
    };
}

/// Why [`Updater::open`](crate::Updater::open) or [`Bootloader::open`](crate::Bootloader::open)
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum OpenError {
    /// The layout breaks a rule.
    Layout(LayoutError),
    /// A download in progress records its chunks with bit markers, which only a flash that
    /// can clear bits of a written word supports: open it with
    /// [`Updater::open_multiwrite`](crate::Updater::open_multiwrite), as the firmware that
    /// started the download did. Nothing was written.
    NeedsMultiwrite,
    /// The state log was written under another layout: its newest record carries another
    /// [`LayoutId`](crate::LayoutId) than this [`Layout`](crate::Layout) and flash write size
    /// give (a region moved or resized, another sector map or write size). Read under this
    /// layout, its download markers and swap journal would point at the wrong bytes, so
    /// nothing was read further and nothing was written.
    ///
    /// What to do: a device's layout must never change in the field; build this firmware (or
    /// bootloader) with the layout the device was shipped with. Only on a bench device may the
    /// state region be erased to start over, which forgets the anti-rollback counter, the
    /// confirmed image and any download, install or trial in progress (provision the device
    /// again with [`Updater::provision`](crate::Updater::provision)).
    LayoutMismatch,
    /// The flash failed (the HAL error, erased to its kind).
    Flash(NorFlashErrorKind),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(_) => f.write_str("invalid layout"),
            Self::NeedsMultiwrite => {
                f.write_str("the download in progress uses bit markers: open with multiwrite")
            }
            Self::LayoutMismatch => f.write_str(
                "the state was written under another layout: build with the device's original \
                 layout (erasing the state region forgets its anti-rollback counter)",
            ),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
        }
    }
}
impl core::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Layout(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Updater::begin`](crate::Updater::begin) refused to start a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BeginError {
    /// An install, trial or revert is under way; confirm or revert first.
    Busy(Phase),
    /// The chunk size does not divide every staging sector.
    UnsupportedChunkSize,
    /// The manifest and its markers do not fit the progress region.
    ProgressRegionTooSmall,
    /// The manifest fails this device's policy (hardware id, anti-rollback, size). `begin`
    /// checks again whatever policy the manifest was verified against.
    Refused(crate::verify::VerifyError),
    /// The offered image is the confirmed image already running: nothing to download.
    AlreadyInstalled,
    /// Erase work must run first: the progress region still holds an earlier download, or the
    /// state log needs its next sector erased. Run [`Updater::erase_step`](crate::Updater::erase_step)
    /// until [`Updater::erase_work`](crate::Updater::erase_work) is done, then call `begin`
    /// again. A different download that was in progress has been abandoned (state Idle).
    NeedsErase,
    /// The flash failed.
    Flash(NorFlashErrorKind),
}

impl fmt::Display for BeginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy(p) => write!(f, "cannot start a download while {p:?}"),
            Self::UnsupportedChunkSize => f.write_str("chunk size does not divide the sectors"),
            Self::ProgressRegionTooSmall => f.write_str("progress region too small"),
            Self::Refused(_) => f.write_str("offer refused"),
            Self::AlreadyInstalled => f.write_str("the offered image is already installed"),
            Self::NeedsErase => f.write_str("erase work must run before the download can start"),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
        }
    }
}
impl core::error::Error for BeginError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a chunk was not accepted. Nothing was written unless the variant says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChunkError {
    /// No download is in progress.
    NotDownloading,
    /// The index is past the last chunk.
    BadIndex,
    /// The chunk has the wrong length.
    BadLength {
        /// Length the manifest implies.
        expected: u32,
        /// Length received.
        got: u32,
    },
    /// The chunk's digest does not match the manifest: corrupt or forged; fetch it again.
    Corrupt,
    /// Erase work must run first ([`Updater::erase_step`](crate::Updater::erase_step)): the
    /// chunk's sector is not erased yet, or a staging sector holds a torn write and must be
    /// repaired. Keep the chunk and hand it in again afterwards.
    NeedsErase,
    /// The flash failed.
    Flash(NorFlashErrorKind),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDownloading => f.write_str("no download in progress"),
            Self::BadIndex => f.write_str("chunk index out of range"),
            Self::BadLength { expected, got } => {
                write!(f, "chunk of {got} bytes, expected {expected}")
            }
            Self::Corrupt => f.write_str("chunk digest mismatch"),
            Self::NeedsErase => f.write_str("erase work must run before this chunk"),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
        }
    }
}
impl_error!(ChunkError);

/// Why [`Updater::finish`](crate::Updater::finish) did not mark the image downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FinishError {
    /// No download is in progress.
    NotDownloading,
    /// Chunks are still missing.
    Incomplete {
        /// How many.
        missing: u32,
    },
    /// The staged image does not hash to the manifest's digest. The download was abandoned
    /// (state Idle, result IntegrityFailure).
    IntegrityFailure,
    /// The buffer is empty.
    BufferTooSmall,
    /// The state log needs its next sector erased before it can record the result: run
    /// [`Updater::erase_step`](crate::Updater::erase_step) (that erase is always its first
    /// step), then call `finish` again.
    NeedsErase,
    /// The flash failed.
    Flash(NorFlashErrorKind),
}

impl fmt::Display for FinishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDownloading => f.write_str("no download in progress"),
            Self::Incomplete { missing } => write!(f, "{missing} chunks missing"),
            Self::IntegrityFailure => f.write_str("staged image digest mismatch"),
            Self::BufferTooSmall => f.write_str("buffer too small"),
            Self::NeedsErase => f.write_str("erase work must run before the state can change"),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
        }
    }
}
impl_error!(FinishError);

/// Why a state transition (`mark_*`, `cancel`, `provision`, `erase_step`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StateError {
    /// The transition is not allowed from this phase.
    WrongPhase(Phase),
    /// The device already knows its confirmed image (provisioning happens once).
    AlreadyProvisioned,
    /// The active slot does not hold the image the manifest describes.
    ImageMismatch,
    /// The manifest fails this device's policy (hardware id, anti-rollback, size):
    /// [`Updater::provision`](crate::Updater::provision) checks it again whatever policy the
    /// manifest was verified against.
    Refused(crate::verify::VerifyError),
    /// The buffer is shorter than the flash write size.
    BufferTooSmall,
    /// The state log needs its next sector erased before it can record this change: run
    /// [`Updater::erase_step`](crate::Updater::erase_step) (that erase is always its first
    /// step), then try again. Nothing changed.
    NeedsErase,
    /// The flash failed.
    Flash(NorFlashErrorKind),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongPhase(p) => write!(f, "not allowed while {p:?}"),
            Self::AlreadyProvisioned => f.write_str("the device is already provisioned"),
            Self::ImageMismatch => f.write_str("the active slot does not match the manifest"),
            Self::Refused(_) => f.write_str("manifest refused"),
            Self::BufferTooSmall => f.write_str("buffer shorter than the flash write size"),
            Self::NeedsErase => f.write_str("erase work must run before the state can change"),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
        }
    }
}
impl core::error::Error for StateError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a bootloader step failed. After a flash error, power-cycle and run again: every step
/// is idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BootError {
    /// The copy buffer is shorter than the flash write size.
    BufferTooSmall,
    /// The persisted install journal does not fit the layout (a forged or corrupt record, or
    /// one from before records carried a layout id, written under another layout; with an id,
    /// [`OpenError::LayoutMismatch`] refuses it first): swap length beyond the slots or below an image it must
    /// move, or a stage count past the end. Nothing was changed. Retrying gives the same
    /// answer: the layout of a device in the field must never change. A board may boot the
    /// active slot anyway or stay in its recovery mode.
    InconsistentState,
    /// The flash failed.
    Flash(NorFlashErrorKind),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("buffer too small"),
            Self::InconsistentState => f.write_str("persisted swap does not fit the layout"),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
        }
    }
}
impl_error!(BootError);

macro_rules! from_flash {
    ($($t:ty),*) => {$(
        impl From<NorFlashErrorKind> for $t {
            fn from(k: NorFlashErrorKind) -> Self {
                Self::Flash(k)
            }
        }
    )*};
}
from_flash!(
    OpenError,
    BeginError,
    ChunkError,
    FinishError,
    StateError,
    BootError
);

/// A refused state change maps to the error's "wrong phase" variant: the machine has no such
/// edge from the phase the device is in (the transition funnel, `Store::commit`, refused it
/// and wrote nothing).
macro_rules! from_commit {
    ($($t:ty => |$from:ident| $illegal:expr),* $(,)?) => {$(
        impl From<CommitError> for $t {
            fn from(e: CommitError) -> Self {
                match e {
                    CommitError::NeedsErase => Self::NeedsErase,
                    CommitError::Flash(k) => Self::Flash(k),
                    CommitError::Illegal(IllegalTransition { from: $from, .. }) => $illegal,
                }
            }
        }
    )*};
}
from_commit!(
    BeginError => |from| Self::Busy(from),
    ChunkError => |_from| Self::NotDownloading,
    FinishError => |_from| Self::NotDownloading,
    StateError => |from| Self::WrongPhase(from),
);

impl From<CommitError> for BootError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Flash(k) => Self::Flash(k),
            // `commit_or_erase` erases rather than ask; kept for completeness.
            CommitError::NeedsErase => Self::Flash(NorFlashErrorKind::Other),
            CommitError::Illegal(_) => Self::InconsistentState,
        }
    }
}
