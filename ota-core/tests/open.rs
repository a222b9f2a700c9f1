//! What `open` and `provision` refuse: a flash read granularity ota-core does not handle, a
//! download recorded with bit markers on a flash opened without multiwrite, a factory image
//! this device's policy refuses.

mod common;

use common::*;
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use ota_core::{
    verify, BootConfig, Bootloader, ChunkIndex, LayoutError, OpenError, Policy, SecurityCounter,
    StateError, Updater, VerifyError,
};
use ota_flash_sim::{SimError, SimFlash};

/// A flash that reads in 4-byte units (`READ_SIZE = 4`).
struct WordReads(Flash);
impl ErrorType for WordReads {
    type Error = SimError;
}
impl ReadNorFlash for WordReads {
    const READ_SIZE: usize = 4;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if !offset.is_multiple_of(4) || !bytes.len().is_multiple_of(4) {
            return Err(SimError::NotAligned);
        }
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}
impl NorFlash for WordReads {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        self.0.write(offset, bytes)
    }
}

#[test]
fn a_flash_with_a_read_size_above_one_is_refused() {
    let mut flash = WordReads(Flash::new(&SECTORS));
    assert_eq!(
        Updater::open(&mut flash, LAYOUT, config()).err(),
        Some(OpenError::Layout(LayoutError::UnsupportedReadSize))
    );
    assert_eq!(
        Bootloader::open(&mut flash, LAYOUT, BootConfig::default()).err(),
        Some(OpenError::Layout(LayoutError::UnsupportedReadSize))
    );
    assert_eq!(LAYOUT.validate(4, 4), Err(LayoutError::UnsupportedReadSize));
    assert_eq!(LAYOUT.validate(4, 1), Ok(()));
}

#[test]
fn a_download_with_bit_markers_is_refused_by_open_without_multiwrite() {
    let mut flash = MultiFlash::new(&SECTORS);
    let s = sign(7000, 50, 1);
    let mut up = Updater::open_multiwrite(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&s.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    let mut buf = [0u8; 256];
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    for i in 0..3 {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    // A bit marker would be written by clearing one more bit of a written word: only
    // open_multiwrite may continue this download.
    let ops = flash.stats().ops;
    assert_eq!(
        Updater::open(&mut flash, LAYOUT, config()).err(),
        Some(OpenError::NeedsMultiwrite)
    );
    assert_eq!(flash.stats().ops, ops, "a refused open wrote");
    let mut up = Updater::open_multiwrite(&mut flash, LAYOUT, config()).unwrap();
    for i in 3..s.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
            .unwrap();
    }
    up.finish(&mut flash, &mut buf).unwrap();
    // Downloaded: no marker is written any more, so a plain open is fine.
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().progress.unwrap().chunks_done, s.chunks());
    up.mark_install(&mut flash).unwrap();
}

#[test]
fn provisioning_applies_this_devices_policy() {
    let other_hw = ota_core::HardwareId::from_name("other-board").unwrap();
    let factory = sign_with(
        image(3000, 51),
        1,
        ota_core::Version::new(1, 0, 0),
        3,
        256,
        other_hw,
    );
    let mut flash = factory_flash(&factory.image);
    let keys = trusted(&[1]);
    // Verified against some other policy (another board's).
    let lax = Policy {
        hardware_id: other_hw,
        stored_counter: SecurityCounter(0),
        capacity: u32::MAX,
        allow_downgrade: true,
    };
    let v = verify(&factory.manifest, &keys, &lax).unwrap();
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let mut buf = [0u8; 128];
    assert_eq!(
        up.provision(&mut flash, &v, &mut buf),
        Err(StateError::Refused(VerifyError::WrongHardware))
    );
    assert_eq!(flash.stats().ops, 0);
    assert!(up.confirmed_image().is_none());
}

/// The test layout with active and staging exchanged: valid on its own, but a journal written
/// under `LAYOUT` means something else under it.
const SWAPPED: ota_core::Layout = ota_core::Layout {
    active: LAYOUT.staging,
    staging: LAYOUT.active,
    ..LAYOUT
};

#[test]
fn a_state_written_under_another_layout_is_refused() {
    assert_eq!(SWAPPED.validate(4, 1), Ok(()));
    let mut flash = factory_flash(&image(3000, 60));
    let new = sign(3000, 61, 2);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&new.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    let before = flash.stats();
    assert_eq!(
        Updater::open(&mut flash, SWAPPED, config()).err(),
        Some(OpenError::LayoutMismatch),
        "updater opened a download recorded under another layout"
    );
    assert_eq!(
        Bootloader::open(&mut flash, SWAPPED, BootConfig::default()).err(),
        Some(OpenError::LayoutMismatch),
        "bootloader opened a state recorded under another layout"
    );
    // Another write size is another layout too (the progress markers depend on it).
    let mut wide = SimFlash::<8, 1024, false>::new(&SECTORS);
    wide.preload(0, &flash.contents()[..LAYOUT.state.end as usize]);
    assert_eq!(
        Updater::open(&mut wide, LAYOUT, config()).err(),
        Some(OpenError::LayoutMismatch)
    );
    assert_eq!(flash.stats().ops, before.ops, "nothing may change");
    // The same layout still opens.
    assert!(Updater::open(&mut flash, LAYOUT, config()).is_ok());
}
