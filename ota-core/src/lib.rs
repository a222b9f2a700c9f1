#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod flash_ops;
pub mod install;
pub mod layout;
mod machine;
pub mod manifest;
mod progress;
pub mod state;
pub mod status;
pub mod updater;
pub mod verify;

pub use error::{BeginError, BootError, ChunkError, FinishError, OpenError, StateError};
pub use install::{BootConfig, BootStep, BootTarget, Bootloader};
pub use layout::{Layout, LayoutError, LayoutId, Region, SectorMap, SectorRun};
pub use manifest::{
    build_signed, BuildError, ChunkIndex, HardwareId, ImageParams, KeyId, Manifest, ManifestHeader,
    ParseError, SecurityCounter, Sha256Digest, Version,
};
pub use state::{ImageSummary, Phase};
pub use status::{Progress, State, Status, UpdateResult};
pub use updater::{Begin, ChunkOutcome, Config, EraseWork, HashStep, Updater};
pub use verify::{
    authenticate, check_signature, verify, Policy, TrustedKey, VerifiedManifest, VerifyError,
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
