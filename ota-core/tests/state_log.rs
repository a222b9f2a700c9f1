//! The state log: sequence numbers after failed writes, wrap-around and ties.

mod common;

use common::*;
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use ota_core::{BootConfig, Bootloader, Phase, StateError, UpdateResult, Updater};
use ota_core::{Persisted, RECORD_LEN};
use ota_flash_sim::SimError;

/// A flash whose first read after the next write fails once: a record that was stored but
/// whose read-back did not succeed.
struct FailReadBack {
    inner: Flash,
    armed: bool,
    fail_next_read: bool,
}

impl ErrorType for FailReadBack {
    type Error = SimError;
}
impl ReadNorFlash for FailReadBack {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if self.fail_next_read {
            self.fail_next_read = false;
            return Err(SimError::OutOfBounds);
        }
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}
impl NorFlash for FailReadBack {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        self.inner.write(offset, bytes)?;
        if self.armed {
            self.armed = false;
            self.fail_next_read = true;
        }
        Ok(())
    }
}

/// Installs `new` over a factory image and boots it on trial.
fn on_trial(flash: &mut Flash) {
    let new = sign(3000, 40, 2);
    let mut up = Updater::open(flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&new.manifest, &keys).unwrap();
    up.begin(flash, &offer).unwrap();
    let mut buf = [0u8; 256];
    while !up.erase_step(flash, &mut buf).unwrap().is_done() {}
    for i in 0..new.chunks() {
        up.handle_chunk(flash, ota_core::ChunkIndex(i), new.chunk(i))
            .unwrap();
    }
    up.finish(flash, &mut buf).unwrap();
    up.mark_install(flash).unwrap();
    let t = Bootloader::open(flash, LAYOUT, BootConfig::default())
        .unwrap()
        .run(flash, &mut buf, || {})
        .unwrap();
    assert!(t.is_trial());
}

#[test]
fn a_record_whose_read_back_failed_never_outranks_a_later_one() {
    let mut flash = factory_flash(&image(3000, 41));
    on_trial(&mut flash);
    let mut f = FailReadBack {
        inner: flash,
        armed: false,
        fail_next_read: false,
    };
    let mut up = Updater::open(&mut f, LAYOUT, config()).unwrap();
    assert!(up.is_trial());
    // mark_failed's record reaches flash, but its read-back fails: the call reports an error
    // and the updater still believes it is on trial.
    f.armed = true;
    assert!(matches!(up.mark_failed(&mut f), Err(StateError::Flash(_))));
    assert!(up.is_trial());
    // The application changes its mind and confirms. That record must win.
    up.mark_confirmed(&mut f).unwrap();
    let up = Updater::open(&mut f, LAYOUT, config()).unwrap();
    assert_eq!(up.phase(), Phase::Idle, "the unconfirmed record won");
    assert_eq!(up.status().result, UpdateResult::Success);
}

fn preload_record(flash: &mut Flash, slot: u32, p: &Persisted) {
    let mut rec = [0u8; RECORD_LEN];
    p.encode(&mut rec);
    flash.preload(slot * RECORD_LEN as u32, &rec);
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut flash = factory_flash(&image(3000, 42));
    let idle = Persisted {
        result: UpdateResult::Cancelled,
        ..Persisted::EMPTY
    };
    preload_record(
        &mut flash,
        0,
        &Persisted {
            seq: 0xFFFF_FFFE,
            ..idle
        },
    );
    preload_record(
        &mut flash,
        1,
        &Persisted {
            seq: 0xFFFF_FFFF,
            result: UpdateResult::Deferred,
            ..idle
        },
    );
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().result, UpdateResult::Deferred);
    // The next record is number 0, which follows 0xFFFFFFFF.
    let keys = trusted(&[1]);
    let factory = sign_with(
        image(3000, 42),
        1,
        ota_core::Version::new(1, 0, 0),
        1,
        256,
        hw(),
    );
    let offer = up.verify_offer(&factory.manifest, &keys).unwrap();
    let mut buf = [0u8; 64];
    up.provision(&mut flash, &offer, &mut buf).unwrap();
    let mut rec = [0u8; RECORD_LEN];
    rec.copy_from_slice(&flash.contents()[2 * RECORD_LEN..3 * RECORD_LEN]);
    assert_eq!(Persisted::decode(&rec).unwrap().seq, 0);
    let up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert!(
        up.confirmed_image().is_some(),
        "record 0 lost to 0xFFFFFFFF"
    );
}

#[test]
fn of_two_records_with_the_same_number_the_first_in_address_order_wins() {
    let mut flash = factory_flash(&image(3000, 43));
    for (slot, result) in [(0, UpdateResult::Cancelled), (1, UpdateResult::Deferred)] {
        preload_record(
            &mut flash,
            slot,
            &Persisted {
                seq: 5,
                result,
                ..Persisted::EMPTY
            },
        );
    }
    let up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    assert_eq!(up.status().result, UpdateResult::Cancelled);
}
