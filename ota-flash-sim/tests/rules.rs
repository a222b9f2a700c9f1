//! Argument and programming rules (no power cuts).

use embedded_storage::nor_flash::{
    MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use ota_flash_sim::{SimError, SimFlash, Stats};

/// 4×1K + 1×4K + 2×8K, E = 1024.
type Mixed = SimFlash<4, 1024, false>;
const MIXED: &[usize] = &[1024, 1024, 1024, 1024, 4096, 8192, 8192];

fn mixed() -> Mixed {
    Mixed::new(MIXED)
}

/// A recognisable, never-0xFF fill.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn geometry_of_non_uniform_map() {
    let f = mixed();
    assert_eq!(f.capacity(), 24 * 1024);
    assert_eq!(ReadNorFlash::capacity(&f), 24 * 1024);
    assert_eq!(
        f.sectors(),
        &[
            0..1024,
            1024..2048,
            2048..3072,
            3072..4096,
            4096..8192,
            8192..16384,
            16384..24576
        ]
    );
    assert_eq!(<Mixed as NorFlash>::WRITE_SIZE, 4);
    assert_eq!(<Mixed as NorFlash>::ERASE_SIZE, 1024);
    assert_eq!(<Mixed as ReadNorFlash>::READ_SIZE, 1);
    assert!(f.contents().iter().all(|&b| b == 0xFF));
}

#[test]
fn write_alignment_is_enforced() {
    let mut f = mixed();
    assert_eq!(f.write(2, &[0; 4]), Err(SimError::NotAligned));
    assert_eq!(f.write(4, &[0; 6]), Err(SimError::NotAligned));
    assert_eq!(f.write(1, &[0; 1]), Err(SimError::NotAligned));
    assert_eq!(SimError::NotAligned.kind(), NorFlashErrorKind::NotAligned);
    assert!(f.contents().iter().all(|&b| b == 0xFF));
    assert_eq!(f.stats(), Stats::default());
    // Aligned is fine.
    f.write(8, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    assert_eq!(&f.contents()[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn erase_alignment_is_enforced() {
    let mut f = mixed();
    f.preload(0, &pattern(f.capacity()));
    assert_eq!(f.erase(512, 1024), Err(SimError::NotAligned));
    assert_eq!(f.erase(0, 1000), Err(SimError::NotAligned));
    assert_eq!(f.erase(0, 4608), Err(SimError::NotAligned));
    assert_eq!(f.contents(), &pattern(f.capacity())[..]);
    assert_eq!(f.stats().ops, 0);
}

#[test]
fn out_of_bounds_is_rejected() {
    let mut f = mixed();
    let cap = f.capacity() as u32;
    let mut buf = [0u8; 4];
    assert_eq!(f.read(cap - 2, &mut buf), Err(SimError::OutOfBounds));
    assert_eq!(f.read(cap - 3, &mut buf), Err(SimError::OutOfBounds));
    assert_eq!(f.read(cap, &mut [0u8; 1]), Err(SimError::OutOfBounds));
    assert_eq!(f.read(cap, &mut buf), Err(SimError::OutOfBounds));
    assert_eq!(f.read(u32::MAX, &mut buf), Err(SimError::OutOfBounds));
    assert_eq!(f.write(cap, &[0; 4]), Err(SimError::OutOfBounds));
    assert_eq!(f.write(cap - 4, &[0; 8]), Err(SimError::OutOfBounds));
    assert_eq!(f.write(u32::MAX - 3, &[0; 4]), Err(SimError::OutOfBounds));
    assert_eq!(f.erase(16384, cap + 1024), Err(SimError::OutOfBounds));
    assert_eq!(f.erase(cap + 1024, cap + 2048), Err(SimError::OutOfBounds));
    assert_eq!(SimError::OutOfBounds.kind(), NorFlashErrorKind::OutOfBounds);
    assert!(f.contents().iter().all(|&b| b == 0xFF));
    assert_eq!(f.stats(), Stats::default());
    // The very last word and an empty read at the end are in bounds.
    f.write(cap - 4, &[9; 4]).unwrap();
    f.read(cap - 4, &mut buf).unwrap();
    assert_eq!(buf, [9; 4]);
    f.read(cap, &mut []).unwrap();
}

#[test]
fn read_returns_contents() {
    let mut f = mixed();
    let p = pattern(f.capacity());
    f.preload(0, &p);
    let mut buf = [0u8; 7];
    f.read(4097, &mut buf).unwrap();
    assert_eq!(&buf[..], &p[4097..4104]);
}

#[test]
fn programmed_word_cannot_be_rewritten_without_multiwrite() {
    let mut f = mixed();
    f.write(16, &[0x12, 0x34, 0x56, 0x78]).unwrap();
    // Same data, fewer bits, or all ones: all refused.
    for data in [[0x12, 0x34, 0x56, 0x78], [0x00; 4], [0xFF; 4]] {
        assert_eq!(f.write(16, &data), Err(SimError::NotErased { addr: 16 }));
    }
    assert_eq!(&f.contents()[16..20], &[0x12, 0x34, 0x56, 0x78]);
    // A multi-word write whose third word hits the programmed one changes nothing
    // and names the first bad word.
    assert_eq!(
        f.write(8, &[0u8; 16]),
        Err(SimError::NotErased { addr: 16 })
    );
    assert!(f.contents()[8..16].iter().all(|&b| b == 0xFF));
    assert!(f.contents()[20..24].iter().all(|&b| b == 0xFF));
    assert_eq!(
        SimError::NotErased { addr: 16 }.kind(),
        NorFlashErrorKind::Other
    );
    // A single non-0xFF byte is enough to make a word "not erased".
    f.preload(33, &[0xFE]);
    assert_eq!(
        f.write(32, &[0xFF, 0xFE, 0xFF, 0xFF]),
        Err(SimError::NotErased { addr: 32 })
    );
    // Rejected writes are not counted.
    assert_eq!(f.stats().ops, 1);
    assert_eq!(f.stats().writes, 1);
    // After erasing the sector the word is writable again.
    f.erase(0, 1024).unwrap();
    f.write(16, &[0; 4]).unwrap();
    assert_eq!(&f.contents()[16..20], &[0; 4]);
}

#[test]
fn multiwrite_allows_only_one_to_zero() {
    let mut f = SimFlash::<4, 1024, true>::new(&[1024, 1024]);
    f.write(0, &[0xF0, 0xFF, 0x0F, 0xAA]).unwrap();
    // Clearing more bits is fine; result is old & new.
    f.write(0, &[0x30, 0x7F, 0x0F, 0x22]).unwrap();
    assert_eq!(&f.contents()[0..4], &[0x30, 0x7F, 0x0F, 0x22]);
    // Any 0 -> 1 transition is refused, and nothing changes.
    assert_eq!(
        f.write(0, &[0x30, 0x7F, 0x1F, 0x22]),
        Err(SimError::NotErased { addr: 0 })
    );
    assert_eq!(f.write(0, &[0xFF; 4]), Err(SimError::NotErased { addr: 0 }));
    assert_eq!(&f.contents()[0..4], &[0x30, 0x7F, 0x0F, 0x22]);
    // Multi-word write: bad second word, first word untouched.
    f.write(8, &[0x00; 4]).unwrap();
    assert_eq!(
        f.write(4, &[0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]),
        Err(SimError::NotErased { addr: 8 })
    );
    assert!(f.contents()[4..8].iter().all(|&b| b == 0xFF));
    // Alignment still applies.
    assert_eq!(f.write(2, &[0; 4]), Err(SimError::NotAligned));
    assert_eq!(f.stats().ops, 3);
}

fn assert_multiwrite<T: MultiwriteNorFlash>(_: &T) {}

#[test]
fn multiwrite_trait_is_implemented_when_configured() {
    let f = SimFlash::<8, 4096, true>::new(&[4096]);
    assert_multiwrite(&f);
    // Through `&mut` as well, as generic code uses it.
    let mut f = f;
    let r = &mut f;
    assert_multiwrite(&r);
}

#[test]
fn erase_only_on_physical_sector_boundaries() {
    let mut f = mixed();
    let p = pattern(f.capacity());
    f.preload(0, &p);

    // Inside the 4K sector, inside an 8K sector, straddling into a sector.
    for (from, to) in [
        (4096, 5120),
        (5120, 8192),
        (8192, 12288),
        (3072, 5120),
        (12288, 24576),
        (0, 9216),
    ] {
        assert_eq!(
            f.erase(from, to),
            Err(SimError::BadEraseRange),
            "{from}..{to}"
        );
    }
    // Empty and reversed ranges.
    assert_eq!(f.erase(2048, 2048), Err(SimError::BadEraseRange));
    assert_eq!(f.erase(3072, 2048), Err(SimError::BadEraseRange));
    assert_eq!(f.contents(), &p[..]);
    assert_eq!(f.stats().ops, 0);

    // Exact single sectors and runs of sectors work and touch nothing else.
    let mut expect = p.clone();
    for (from, to) in [
        (1024u32, 2048u32),
        (4096, 8192),
        (2048, 4096),
        (16384, 24576),
    ] {
        f.erase(from, to).unwrap();
        expect[from as usize..to as usize].fill(0xFF);
        assert_eq!(f.contents(), &expect[..], "after erase {from}..{to}");
    }
    assert_eq!(f.stats().erases, 1 + 1 + 2 + 1);
    // Whole chip.
    f.erase(0, 24576).unwrap();
    assert!(f.contents().iter().all(|&b| b == 0xFF));
    assert_eq!(f.erase_count(0), 1);
    assert_eq!(f.erase_count(1), 2);
}

#[test]
fn preload_and_contents_bypass_rules_and_counters() {
    let mut f = mixed();
    f.write(0, &[0; 4]).unwrap();
    // Preload over programmed data, unaligned, odd length.
    f.preload(1, &[1, 2, 3]);
    assert_eq!(&f.contents()[0..4], &[0, 1, 2, 3]);
    assert_eq!(f.stats().ops, 1);
    assert_eq!(f.stats().bytes_written, 4);
}

#[test]
#[should_panic(expected = "out of bounds")]
fn preload_out_of_bounds_panics() {
    let mut f = mixed();
    let cap = f.capacity() as u32;
    f.preload(cap - 1, &[0, 0]);
}

#[test]
fn works_through_generic_nor_flash_code() {
    fn program<F: NorFlash>(f: &mut F) -> Result<(), F::Error> {
        f.erase(0, F::ERASE_SIZE as u32)?;
        f.write(F::WRITE_SIZE as u32, &[0xA5; 8])
    }
    let mut f = SimFlash::<8, 2048, false>::new(&[2048, 2048]);
    f.preload(0, &[0; 4096]);
    program(&mut &mut f).unwrap();
    let mut expect = vec![0xFFu8; 2048];
    expect[8..16].fill(0xA5);
    expect.extend_from_slice(&[0; 2048]);
    assert_eq!(f.contents(), &expect[..]);
}
