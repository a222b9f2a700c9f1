//! Images full of erased-looking bytes, as real firmware is (0xFF padding between sections, a
//! mostly empty image): the swap skips pieces that read erased, so these are what would show a
//! copy that skips too much. Both the install and the revert must move them byte for byte, also
//! when power is cut at any flash operation of the bootloader.

mod common;

use common::*;
use ota_core::{BootConfig, Bootloader, ChunkIndex, Updater, Version};
use ota_flash_sim::{Cut, CutKind};

/// `len` bytes from `salt` with runs of 0xFF at the places a copy cuts its work: chunk (256 B),
/// write-word (4 B), copy-piece (512 B, the buffer below) and sector (1/2/4 KiB) boundaries,
/// a whole 1 KiB sector, and the tail.
fn padded(len: usize, salt: u32) -> Vec<u8> {
    let mut v = image(len, salt);
    let mut ff = |a: usize, b: usize| v[a.min(len)..b.min(len)].fill(0xFF);
    // Across chunk and sector boundaries.
    ff(256 - 8, 256 + 300);
    ff(1024 - 2, 1024 + 1030);
    // Single words and pairs on word boundaries.
    for k in (600..900).step_by(20) {
        ff(k, k + 4);
        ff(k + 8, k + 16);
    }
    // A copy piece whose first word (or first half) reads erased and the rest does not.
    ff(2560, 2564);
    ff(3072, 3072 + 256);
    // A whole sector of the active slot's 1 KiB sectors, and the end of a 4 KiB unit.
    ff(3 * 1024, 4 * 1024 + 40);
    ff(4096 + 1500, 4096 + 2048);
    // The tail.
    ff(len - 100, len);
    v
}

/// Mostly erased: one non-0xFF byte every 997.
fn mostly_erased(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 997 == 3 { i as u8 & 0x7F } else { 0xFF })
        .collect()
}

/// A device that runs `old` (provisioned from its signed manifest when `provision`) and has
/// downloaded `new`, with the install requested.
fn staged(old: &Signed, new: &Signed, provision: bool) -> Flash {
    let mut flash = factory_flash(&old.image);
    let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let mut buf = [0u8; 512];
    if provision {
        let offer = up.verify_offer(&old.manifest, &keys).unwrap();
        up.provision(&mut flash, &offer, &mut buf).unwrap();
    }
    let offer = up.verify_offer(&new.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    for i in 0..new.chunks() {
        up.handle_chunk(&mut flash, ChunkIndex(i), new.chunk(i))
            .unwrap();
    }
    up.finish(&mut flash, &mut buf).unwrap();
    up.mark_install(&mut flash).unwrap();
    flash
}

fn config_small_steps() -> BootConfig {
    BootConfig {
        max_boot_attempts: 1,
        step_bytes: 1024,
    }
}

/// Boots once: the bootloader to its handover. `Err(())` if power was cut.
fn boot_once(flash: &mut Flash) -> Result<ota_core::BootTarget, ()> {
    let mut buf = [0u8; 512];
    let mut bl = match Bootloader::open(flash, LAYOUT, config_small_steps()) {
        Ok(b) => b,
        Err(_) if flash.is_powered_off() => return Err(()),
        Err(e) => panic!("open: {e:?}"),
    };
    match bl.run(flash, &mut buf, || {}) {
        Ok(t) => Ok(t),
        Err(_) if flash.is_powered_off() => Err(()),
        Err(e) => panic!("step: {e:?}"),
    }
}

fn pairs() -> Vec<(&'static str, Signed, Signed)> {
    let s = |img: Vec<u8>, counter: u32| {
        sign_with(
            img,
            1,
            Version::new(1, counter as u16, 0),
            counter,
            256,
            hw(),
        )
    };
    vec![
        (
            "padded over padded",
            s(padded(6000, 1), 1),
            s(padded(7001, 2), 2),
        ),
        (
            "mostly erased over padded",
            s(padded(6500, 3), 1),
            s(mostly_erased(7000), 2),
        ),
        (
            "padded over mostly erased",
            s(mostly_erased(5000), 1),
            s(padded(8192, 4), 2),
        ),
        (
            "padded, one unit, provisioned",
            s(padded(3000, 5), 1),
            s(padded(4096, 6), 2),
        ),
    ]
}

#[test]
fn padded_images_install_and_revert_byte_for_byte() {
    for (name, old, new) in pairs() {
        let provision = name.ends_with("provisioned");
        let mut flash = staged(&old, &new, provision);
        let t = boot_once(&mut flash).unwrap();
        assert!(t.is_trial(), "{name}: not booted on trial");
        let c = flash.contents();
        assert_eq!(
            &c[ACTIVE..ACTIVE + new.image.len()],
            &new.image[..],
            "{name}: install"
        );
        assert_eq!(
            &c[STAGING..STAGING + old.image.len()],
            &old.image[..],
            "{name}: old kept"
        );
        // The trial fails (one attempt allowed): the revert moves them back.
        let t = boot_once(&mut flash).unwrap();
        assert!(!t.is_trial());
        let c = flash.contents();
        assert_eq!(
            &c[ACTIVE..ACTIVE + old.image.len()],
            &old.image[..],
            "{name}: revert"
        );
    }
}

/// Power cut at every flash operation of the install (and, on the revert path, of the revert),
/// with every kind of cut: every handover boots a whole image, the new one only on trial.
#[test]
fn padded_images_survive_a_power_cut_at_every_bootloader_operation() {
    let mut points = 0;
    for (name, old, new) in pairs() {
        let provision = name.ends_with("provisioned");
        let base = staged(&old, &new, provision);
        // Operations of an uninterrupted install + failed trial + revert.
        let mut clean = base.clone();
        let start = clean.stats().ops;
        let _booted = boot_once(&mut clean).unwrap();
        let _booted = boot_once(&mut clean).unwrap();
        let n = clean.stats().ops - start;
        for at in start..start + n {
            for kind in CutKind::all() {
                let mut flash = base.clone();
                flash.schedule_cut(Cut { at, kind });
                let mut trials = 0;
                let mut reverted = false;
                for _boot in 0..10 {
                    let Ok(t) = boot_once(&mut flash) else {
                        flash.power_on();
                        continue;
                    };
                    let c = flash.contents();
                    if t.is_trial() {
                        assert_eq!(
                            &c[ACTIVE..ACTIVE + new.image.len()],
                            &new.image[..],
                            "{name}: cut {kind:?} at {at}: trial of a broken image"
                        );
                        trials += 1;
                    } else {
                        assert_eq!(
                            &c[ACTIVE..ACTIVE + old.image.len()],
                            &old.image[..],
                            "{name}: cut {kind:?} at {at}: broken image booted"
                        );
                        // Once the install is requested, only a revert boots the old image
                        // (a cut may have used up the only trial attempt before it booted).
                        reverted = true;
                        break;
                    }
                }
                assert!(reverted, "{name}: cut {kind:?} at {at}: never got back");
                assert!(trials <= 1, "{name}: more trials than allowed");
                points += 1;
            }
        }
    }
    println!("padded images: {points} power-cut points in the bootloader");
}

/// A chunk that is all 0xFF reads the same written or not: when a reset cut its marker, `open`
/// must still count it done (its digest says the erased slot is exactly the chunk), as for any
/// chunk written completely, and never ask for it again.
#[test]
fn an_erased_looking_chunk_whose_marker_was_cut_is_not_fetched_again() {
    let mut img = image(7001, 80);
    img[1024..1280].fill(0xFF); // chunk 4
    img[6912..].fill(0xFF); // chunk 27, the 89-byte tail
    let s = sign_with(img, 1, Version::new(1, 1, 0), 1, 256, hw());
    for (chunk, data_writes) in [(4u32, 1u64), (27, 2)] {
        let mut flash = Flash::new(&SECTORS);
        let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
        let keys = trusted(&[1]);
        let offer = up.verify_offer(&s.manifest, &keys).unwrap();
        up.begin(&mut flash, &offer).unwrap();
        let mut buf = [0u8; 256];
        while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
        // The cut lands on the marker write, after the chunk's (no-op) data write.
        let at = flash.stats().ops + data_writes;
        flash.schedule_cut(Cut {
            at,
            kind: CutKind::Before,
        });
        assert!(up
            .handle_chunk(&mut flash, ChunkIndex(chunk), s.chunk(chunk))
            .is_err());
        flash.power_on();
        let mut up = Updater::open(&mut flash, LAYOUT, config()).unwrap();
        let mut missing = [ChunkIndex(0); 64];
        let n = up
            .missing_chunks(&mut flash, ChunkIndex(0), &mut missing)
            .unwrap();
        assert!(
            !missing[..n].contains(&ChunkIndex(chunk)),
            "chunk {chunk} (all 0xFF) is requested again"
        );
        for i in 0..s.chunks() {
            let _ = up
                .handle_chunk(&mut flash, ChunkIndex(i), s.chunk(i))
                .unwrap();
        }
        up.finish(&mut flash, &mut buf).unwrap();
    }
}
