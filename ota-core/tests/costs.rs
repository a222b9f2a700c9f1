//! Flash work per operation, counted on the simulated flash (operations and bytes, never
//! time). Run with `--nocapture` to see the table; the assertions pin the documented costs.

mod common;

use common::*;
use ota_core::{BootConfig, BootStep, Bootloader, ChunkIndex, Layout, Updater, Version};
use ota_flash_sim::{F2Flash, SimFlash, Stats};

fn delta(a: Stats, b: Stats) -> (u64, u64, u64, u64) {
    (
        b.writes - a.writes,
        b.bytes_written - a.bytes_written,
        b.erases - a.erases,
        b.bytes_erased - a.bytes_erased,
    )
}

/// A full-size update on the Electron's layout: 384 KiB image, 1 KiB chunks, STM32F2 sectors.
#[test]
fn electron_full_update_costs() {
    let mut flash = F2Flash::new(&[
        16384, 16384, 16384, 16384, 65536, 131072, 131072, 131072, 131072, 131072, 131072, 131072,
    ]);
    let old = image(300 * 1024, 1);
    flash.preload(Layout::ELECTRON.active.start, &old);
    let new = sign_with(
        image(384 * 1024, 2),
        1,
        Version::new(2, 0, 0),
        2,
        1024,
        hw(),
    );
    let mut up = Updater::open(&mut flash, Layout::ELECTRON, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&new.manifest, &keys).unwrap();

    let s0 = flash.stats();
    up.begin(&mut flash, &offer).unwrap();
    let s1 = flash.stats();
    let mut buf = [0u8; 1024];
    let mut steps = 0;
    loop {
        steps += 1;
        if up.erase_step(&mut flash, &mut buf).unwrap().is_done() {
            break;
        }
    }
    let s2 = flash.stats();
    let mut per_chunk = None;
    let mut open_read = 0;
    for i in 0..new.chunks() {
        if i == new.chunks() / 2 {
            // The device sleeps halfway: what a wake's `open` reads to resume (the state log,
            // the manifest copy, the markers, and each unrecorded chunk slot once with its
            // 16-byte digest entry).
            let a = flash.stats();
            up = Updater::open(&mut flash, Layout::ELECTRON, config()).unwrap();
            let b = flash.stats();
            assert_eq!(delta(a, b), (0, 0, 0, 0), "open wrote or erased");
            open_read = b.bytes_read - a.bytes_read;
            let l = Layout::ELECTRON;
            let bound = l.state.len() as u64
                + new.manifest.len() as u64
                + (3 + new.chunks() as u64) * 4
                + (new.chunks() - i) as u64 * (1024 + 16);
            assert!(open_read <= bound, "open read {open_read} > {bound}");
        }
        let a = flash.stats();
        up.handle_chunk(&mut flash, ChunkIndex(i), new.chunk(i))
            .unwrap();
        let d = delta(a, flash.stats());
        // Every chunk costs the same: its data and one marker word.
        assert_eq!(d, (2, 1024 + 4, 0, 0), "chunk {i}");
        per_chunk = Some(d);
    }
    let s3 = flash.stats();
    up.finish(&mut flash, &mut buf).unwrap();
    up.mark_install(&mut flash).unwrap();
    let s4 = flash.stats();
    let mut bl = Bootloader::open(&mut flash, Layout::ELECTRON, BootConfig::default()).unwrap();
    let mut boot_steps = 0;
    let mut max_step_written = 0;
    let t = loop {
        let a = flash.stats();
        let step = bl.step(&mut flash, &mut buf).unwrap();
        boot_steps += 1;
        max_step_written = max_step_written.max(flash.stats().bytes_written - a.bytes_written);
        if let BootStep::Boot(t) = step {
            break t;
        }
    };
    assert!(t.is_trial());
    let s5 = flash.stats();
    let mut up = Updater::open(&mut flash, Layout::ELECTRON, config()).unwrap();
    up.mark_confirmed(&mut flash).unwrap();
    let s6 = flash.stats();
    // What is left for an erase step before the next download: the progress sector.
    let next = up.erase_work(&mut flash).unwrap();
    assert_eq!((next.steps, next.bytes), (1, 64 * 1024));

    let (w, b, _, _) = per_chunk.unwrap();
    println!(
        "Electron layout, 384 KiB image in 1 KiB chunks ({} chunks), manifest {} B",
        new.chunks(),
        new.manifest.len()
    );
    println!("| step | writes | bytes written | erases | bytes erased |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, d: (u64, u64, u64, u64)| {
        println!("| {name} | {} | {} | {} | {} |", d.0, d.1, d.2, d.3)
    };
    row("begin (manifest copy + record)", delta(s0, s1));
    row(&format!("erase work ({steps} steps)"), delta(s1, s2));
    row("one 1 KiB chunk", (w, b, 0, 0));
    row("all chunks", delta(s2, s3));
    row("finish + mark_install", delta(s3, s4));
    row("bootloader install (swap 3 units)", delta(s4, s5));
    row("mark_confirmed", delta(s5, s6));
    println!(
        "bootloader install: {boot_steps} steps (16 KiB each at most), at most \
         {max_step_written} bytes programmed by one step"
    );
    println!(
        "open after a reset halfway through the download: reads {open_read} bytes, writes nothing"
    );
    println!(
        "erase work left for the next download: {} step, {} bytes (the progress sector)",
        next.steps, next.bytes
    );
    assert_eq!(steps, 3, "three 128 KiB staging sectors");
    let install = delta(s4, s5);
    assert_eq!(install.2, 9, "3 units × 3 erases of 128 KiB");
    // 9 erase and 72 copy steps (3 units × 3 stages × (1 + 128 / 16)), 24 check steps (the
    // last records Trial), one step per state-sector erase (none here), and the boot-attempt
    // step.
    assert_eq!(boot_steps, 81 + 24 + (install.2 as u32 - 9) + 1);
    assert!(max_step_written <= 16 * 1024 + 192);
    assert_eq!(delta(s5, s6).0, 1, "confirm is one record write");
}

/// Per-chunk cost with bit markers on a MultiwriteNorFlash.
#[test]
fn bit_marker_chunk_cost() {
    let mut flash = SimFlash::<4, 1024, true>::new(&SECTORS);
    let new = sign_with(image(7000, 3), 1, Version::new(1, 0, 0), 1, 1024, hw());
    let mut up = Updater::open_multiwrite(&mut flash, LAYOUT, config()).unwrap();
    let keys = trusted(&[1]);
    let offer = up.verify_offer(&new.manifest, &keys).unwrap();
    up.begin(&mut flash, &offer).unwrap();
    let mut buf = [0u8; 256];
    while !up.erase_step(&mut flash, &mut buf).unwrap().is_done() {}
    let a = flash.stats();
    up.handle_chunk(&mut flash, ChunkIndex(0), new.chunk(0))
        .unwrap();
    let d = delta(a, flash.stats());
    println!(
        "bit markers: one 1 KiB chunk = {} writes, {} bytes",
        d.0, d.1
    );
    assert_eq!(d, (2, 1024 + 4, 0, 0));
}
