//! Counters and per-sector wear.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use ota_flash_sim::{Cut, CutKind, F2Flash, SimError, Stats};

const F2_MAP: &[usize] = &[16384, 16384, 16384, 16384, 65536, 131072, 131072];

#[test]
fn counters_track_reads_writes_erases() {
    let mut f = F2Flash::new(F2_MAP);
    assert_eq!(f.stats(), Stats::default());
    let mut buf = [0u8; 100];
    f.read(0, &mut buf).unwrap();
    f.read(7, &mut buf[..3]).unwrap();
    f.write(0, &[0; 12]).unwrap();
    f.write(16384, &[0; 4]).unwrap();
    f.erase(0, 65536).unwrap(); // 4 sectors
    f.erase(65536, 131072).unwrap(); // 1 sector
    assert_eq!(
        f.stats(),
        Stats {
            ops: 4,
            writes: 2,
            erases: 5,
            reads: 2,
            bytes_written: 16,
            bytes_read: 103,
            bytes_erased: 131072,
        }
    );
    // Failed calls do not count.
    assert_eq!(f.read(u32::MAX, &mut buf), Err(SimError::OutOfBounds));
    assert_eq!(f.write(1, &[0; 4]), Err(SimError::NotAligned));
    assert_eq!(f.erase(0, 8192), Err(SimError::NotAligned));
    assert_eq!(f.erase(65536, 65536 + 16384), Err(SimError::BadEraseRange));
    assert_eq!(f.stats().ops, 4);
    assert_eq!(f.stats().reads, 2);
}

#[test]
fn wear_is_per_sector() {
    let mut f = F2Flash::new(F2_MAP);
    for _ in 0..3 {
        f.erase(16384, 32768).unwrap();
    }
    f.erase(0, 65536).unwrap();
    f.erase(131072, 393216).unwrap();
    let wear: Vec<u64> = (0..7).map(|s| f.erase_count(s)).collect();
    assert_eq!(wear, [1, 4, 1, 1, 0, 1, 1]);
    assert_eq!(f.stats().erases, 3 + 4 + 2);
    // Writes don't wear.
    f.write(65536, &[0; 4]).unwrap();
    assert_eq!(f.erase_count(4), 0);
}

#[test]
fn reset_stats_keeps_ops_and_zeroes_the_rest() {
    let mut f = F2Flash::new(F2_MAP);
    f.erase(0, 16384).unwrap();
    f.write(0, &[0; 4]).unwrap();
    let mut b = [0u8; 4];
    f.read(0, &mut b).unwrap();
    f.reset_stats();
    assert_eq!(
        f.stats(),
        Stats {
            ops: 2,
            ..Stats::default()
        }
    );
    assert_eq!(f.erase_count(0), 0);
    // Cut indices keep counting from the old total.
    f.schedule_cut(Cut {
        at: 2,
        kind: CutKind::Before,
    });
    assert_eq!(f.write(4, &[0; 4]), Err(SimError::PowerLost));
    assert_eq!(f.stats().ops, 3);
    assert_eq!(f.stats().writes, 0);
}

#[test]
fn power_on_does_not_reset_ops() {
    let mut f = F2Flash::new(F2_MAP);
    f.schedule_cut(Cut {
        at: 0,
        kind: CutKind::After,
    });
    assert_eq!(f.erase(0, 16384), Err(SimError::PowerLost));
    f.power_on();
    assert_eq!(f.stats().ops, 1);
    assert_eq!(f.stats().erases, 1);
    assert_eq!(f.erase_count(0), 1);
    f.erase(0, 16384).unwrap();
    assert_eq!(f.stats().ops, 2);
}

#[test]
fn clone_is_an_independent_snapshot() {
    let mut f = F2Flash::new(F2_MAP);
    f.write(0, &[1; 4]).unwrap();
    let snap = f.clone();
    f.erase(0, 16384).unwrap();
    assert_eq!(&snap.contents()[..4], &[1; 4]);
    assert_eq!(snap.stats().ops, 1);
    assert_eq!(&f.contents()[..4], &[0xFF; 4]);
    let dbg = format!("{f:?}");
    assert!(dbg.contains("capacity: 393216"), "{dbg}");
}
