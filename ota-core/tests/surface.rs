//! The public surface is flat: what a user names is at the crate root (every module is
//! private). The values are those of `docs/image-format.md`.

use ota_core::{
    chunk_count, chunk_digest, manifest_len, KeyError, Layout, TrustedKey, CHUNK_DIGEST_LEN,
    MANIFEST_FORMAT_VERSION, MANIFEST_HEADER_LEN, MANIFEST_MAGIC, SIGNATURE_LEN,
};

#[test]
fn manifest_format_constants_are_at_the_root() {
    assert_eq!(MANIFEST_MAGIC, *b"OTAM");
    assert_eq!(MANIFEST_FORMAT_VERSION, 1);
    // Section 1.5: a 600-byte image in 256-byte chunks has 3 chunks and a 232-byte manifest.
    assert_eq!(chunk_count(600, 256), 3);
    assert_eq!(
        manifest_len(3),
        MANIFEST_HEADER_LEN + 3 * CHUNK_DIGEST_LEN + SIGNATURE_LEN
    );
    assert_eq!(manifest_len(3), 232);
    assert_eq!(chunk_digest(&[0xFF; 256]).len(), CHUNK_DIGEST_LEN);
}

#[test]
fn key_and_layout_types_are_at_the_root() {
    // The all-zero encoding is a small-order point.
    assert_eq!(TrustedKey::try_new([0; 32]), Err(KeyError::SmallOrder));
    let sectors: ota_core::Sectors = Layout::ELECTRON.map.sectors(Layout::ELECTRON.state);
    assert_eq!(sectors.count(), 2);
}
