#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(unreachable_pub)]

// Every module is private; the API is the flat set of re-exports below. The state record codec
// (`Persisted`, `RECORD_LEN`) is public only for the fuzz targets and the tests, behind the
// non-default `fuzzing` feature, hidden and outside semver (as quinn-proto's and postcard's
// fuzzing features).
// First, so that its macros are visible in every module below.
#[macro_use]
mod log;

mod error;
mod flash_ops;
mod install;
mod layout;
mod machine;
mod manifest;
mod progress;
mod state;
mod status;
mod updater;
mod verify;

pub use error::{BeginError, BootError, ChunkError, FinishError, OpenError, StateError};
pub use install::{BootConfig, BootStep, BootTarget, Bootloader};
pub use layout::{Layout, LayoutError, LayoutId, Region, SectorMap, SectorRun, Sectors};
pub use manifest::{
    build_signed, chunk_count, chunk_digest, encoded_len as manifest_len, BuildError, ChunkIndex,
    HardwareId, ImageParams, KeyId, Manifest, ManifestHeader, ParseError, SecurityCounter,
    Sha256Digest, Version, CHUNK_DIGEST_LEN, FLAG_BASE_DIGEST as MANIFEST_FLAG_BASE_DIGEST,
    FORMAT_VERSION as MANIFEST_FORMAT_VERSION, HEADER_LEN as MANIFEST_HEADER_LEN,
    MAGIC as MANIFEST_MAGIC, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, SIGNATURE_LEN,
};
pub use state::{ImageSummary, Phase};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use state::{Persisted, RECORD_LEN};
pub use status::{Lwm2mState, Progress, Status, UpdateResult};
pub use updater::{Begin, ChunkOutcome, EraseWork, HashStep, Updater, UpdaterConfig};
pub use verify::{
    authenticate, check_signature, verify, KeyError, Policy, TrustedKey, VerifiedManifest,
    VerifyError,
};

/// Re-exported so users name the same error kind type as this crate.
pub use embedded_storage::nor_flash::NorFlashErrorKind;

/// The `embedded-storage` this crate's API is generic over, re-exported so a flash driver (or
/// a host test double) implements exactly these `NorFlash` traits.
pub use embedded_storage;

/// Outcomes a caller must act on are `#[must_use]`: ignoring one does not compile under
/// `deny(unused_must_use)` (checked here, one doctest each).
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn work() -> ota_core::EraseWork { Default::default() }
/// work();
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn step() -> ota_core::HashStep { ota_core::HashStep::Done }
/// step();
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn step() -> ota_core::BootStep { ota_core::BootStep::Continue }
/// step();
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn target() -> ota_core::BootTarget { ota_core::BootTarget::Confirmed { image: None } }
/// target();
/// ```
#[cfg(doctest)]
struct MustUse;
