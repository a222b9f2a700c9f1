//! Status as LwM2M Object 5 (Firmware Update) reports it: State (`/5/0/3`) and Update Result
//! (`/5/0/5`), so a cloud can forward it without translation.

use core::fmt;

/// LwM2M Object 5 resource 3, "State": what a device reports to an LwM2M server.
///
/// Coarser than [`Phase`](crate::Phase), the updater's own persisted phase: Installing, Trial
/// and Reverting all report [`Updating`](Self::Updating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Lwm2mState {
    /// 0: before a download, or after an update finished (successfully or not).
    Idle = 0,
    /// 1: a download is in progress (also a download resumed after a reset).
    Downloading = 1,
    /// 2: the image is downloaded and verified, waiting for the install.
    Downloaded = 2,
    /// 3: installing, running on trial, or reverting.
    Updating = 3,
}

/// LwM2M Object 5 resource 5, "Update Result".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum UpdateResult {
    /// 0: initial value; reset when a download or install starts.
    Initial = 0,
    /// 1: the new image was installed and confirmed.
    Success = 1,
    /// 2: the image does not fit.
    NotEnoughFlash = 2,
    /// 3: out of RAM during the download.
    OutOfRam = 3,
    /// 4: connection lost during the download.
    ConnectionLost = 4,
    /// 5: integrity check failed (signature, chunk or image digest).
    IntegrityFailure = 5,
    /// 6: unsupported package (wrong hardware, refused downgrade, unknown format).
    UnsupportedPackage = 6,
    /// 7: invalid URI.
    InvalidUri = 7,
    /// 8: the update failed (the trial image was reverted).
    UpdateFailed = 8,
    /// 9: unsupported protocol.
    UnsupportedProtocol = 9,
    /// 10: cancelled.
    Cancelled = 10,
    /// 11: deferred (the device postponed the install).
    Deferred = 11,
}

impl UpdateResult {
    /// The result from its LwM2M code.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Initial,
            1 => Self::Success,
            2 => Self::NotEnoughFlash,
            3 => Self::OutOfRam,
            4 => Self::ConnectionLost,
            5 => Self::IntegrityFailure,
            6 => Self::UnsupportedPackage,
            7 => Self::InvalidUri,
            8 => Self::UpdateFailed,
            9 => Self::UnsupportedProtocol,
            10 => Self::Cancelled,
            11 => Self::Deferred,
            _ => return None,
        })
    }
}

impl fmt::Display for UpdateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", *self as u8)
    }
}

impl crate::verify::VerifyError {
    /// The Update Result a device reports when it refuses an offer for this reason.
    pub fn update_result(&self) -> UpdateResult {
        use crate::verify::VerifyError as E;
        match self {
            E::TooLarge { .. } => UpdateResult::NotEnoughFlash,
            E::BadSignature | E::UnknownKey(_) => UpdateResult::IntegrityFailure,
            E::Malformed(_) | E::WrongHardware | E::Downgrade { .. } => {
                UpdateResult::UnsupportedPackage
            }
        }
    }
}

/// Download progress in chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Progress {
    /// Chunks written and recorded.
    pub chunks_done: u32,
    /// Chunks in the image.
    pub chunks_total: u32,
}

/// A snapshot of the updater for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// LwM2M State.
    pub state: Lwm2mState,
    /// LwM2M Update Result.
    pub result: UpdateResult,
    /// The running image is on trial and must be confirmed.
    pub trial: bool,
    /// Download progress, when a download exists.
    pub progress: Option<Progress>,
}
