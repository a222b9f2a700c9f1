//! Host side of the ota-core image format: the update container, PEM key files and the text
//! forms of manifest fields.
//!
//! The `ota-tool` binary is a thin command-line layer over this library, so the reference
//! server and the host simulation can produce and check exactly what the tool does:
//!
//! * [`container`]: the `.ota` file (manifest + image, `docs/image-format.md` section 2) and
//!   [`container::check_container`], which authenticates the manifest and checks the image
//!   against it.
//! * [`keys`]: Ed25519 keys as OpenSSL-compatible PEM (PKCS#8 private keys, SPKI public keys).
//! * [`text`]: parsing and printing versions, hardware ids and digests as the tool shows them.
//!
//! The manifest itself is built, parsed and verified by `ota_core` (`build_signed`,
//! `Manifest`, `verify`); nothing here re-implements it.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod container;
pub mod keys;
pub mod text;

pub use container::{check_container, CheckError, Container, ContainerError};
