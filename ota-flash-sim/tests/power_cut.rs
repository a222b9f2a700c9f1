//! Power-cut injection: exact contents after each cut kind.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use ota_flash_sim::{
    torn_pattern, Cut, CutKind, SimError, SimFlash, Tear, TearPoint, TornErase, TornWord,
};

type Flash = SimFlash<4, 1024, false>;
type MwFlash = SimFlash<4, 1024, true>;
/// 4×1K + 1×4K + 2×8K.
const MAP: &[usize] = &[1024, 1024, 1024, 1024, 4096, 8192, 8192];

fn fill(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Spend `n` mutating ops (erases of the last sector) so the next op has index `n`.
fn burn_ops<const M: bool>(f: &mut SimFlash<4, 1024, M>, n: u64) {
    let last = f.sectors().last().unwrap().clone();
    let saved = f.contents()[last.start as usize..last.end as usize].to_vec();
    for _ in 0..n {
        f.erase(last.start, last.end).unwrap();
    }
    f.preload(last.start, &saved);
    assert_eq!(f.stats().ops, n);
}

const NEW: [u8; 20] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x5A, 0x5A, 0xA5, 0xA5, 0x0F, 0xF0, 0x3C, 0xC3,
    0x11, 0x22, 0x33, 0x44,
];
const AT: u32 = 4096 + 64;

fn write_cut(kind: CutKind, at: u64) -> Flash {
    let mut f = Flash::new(MAP);
    burn_ops(&mut f, at);
    f.schedule_cut(Cut { at, kind });
    assert_eq!(f.write(AT, &NEW), Err(SimError::PowerLost));
    assert!(f.is_powered_off());
    assert_eq!(f.stats().ops, at + 1, "the cut op is counted");
    f
}

#[test]
fn write_cut_before_changes_nothing() {
    let f = write_cut(CutKind::Before, 3);
    assert!(f.contents().iter().all(|&b| b == 0xFF));
    assert_eq!(f.stats().writes, 0);
    assert_eq!(f.stats().bytes_written, 0);
}

#[test]
fn write_cut_after_completes() {
    let f = write_cut(CutKind::After, 3);
    let mut expect = vec![0xFF; f.capacity()];
    expect[AT as usize..AT as usize + NEW.len()].copy_from_slice(&NEW);
    assert_eq!(f.contents(), &expect[..]);
    assert_eq!(f.stats().writes, 1);
    assert_eq!(f.stats().bytes_written, 20);
}

#[test]
fn torn_write_programs_half_then_corrupts_one_word() {
    for at in [0u64, 1, 2, 7] {
        let f = write_cut(CutKind::Torn, at);
        // 5 words: words 0 and 1 exact, word 2 = new & pattern, words 3 and 4 erased.
        let a = AT as usize;
        let p = torn_pattern(at, 4);
        let mut expect = vec![0xFF; f.capacity()];
        expect[a..a + 8].copy_from_slice(&NEW[..8]);
        for i in 0..4 {
            expect[a + 8 + i] = NEW[8 + i] & p[i];
        }
        assert_eq!(f.contents(), &expect[..], "torn at {at}");
        assert_eq!(f.stats().writes, 1);
        assert_eq!(f.stats().bytes_written, 12);
    }
}

#[test]
fn torn_write_is_deterministic() {
    let a = write_cut(CutKind::Torn, 5);
    let b = write_cut(CutKind::Torn, 5);
    assert_eq!(a.contents(), b.contents());
}

#[test]
fn torn_write_leaves_word_that_is_neither_old_nor_new() {
    // Cut at op 0 with a single-word write: the word is corrupted.
    let mut f = Flash::new(MAP);
    f.schedule_cut(Cut {
        at: 0,
        kind: CutKind::Torn,
    });
    let new = [0x5A, 0xA5, 0x3C, 0xC3];
    assert_eq!(f.write(0, &new), Err(SimError::PowerLost));
    let word = &f.contents()[0..4];
    assert_ne!(word, &[0xFF; 4], "torn word still looks erased");
    assert_ne!(word, &new, "torn word looks completely written");
    // And on many cut points it is almost never a clean result.
    let mut clean = 0;
    for at in 0..32 {
        let f = write_cut(CutKind::Torn, at);
        let w = &f.contents()[AT as usize + 8..AT as usize + 12];
        if w == &NEW[8..12] || w == [0xFF; 4] {
            clean += 1;
        }
    }
    assert!(clean < 4, "{clean} of 32 torn words were clean");
}

#[test]
fn torn_single_word_and_empty_writes() {
    // A single word: 0 exact words, the only word is corrupted.
    let mut f = Flash::new(MAP);
    f.schedule_cut(Cut {
        at: 0,
        kind: CutKind::Torn,
    });
    assert_eq!(
        f.write(8, &[0x00, 0x11, 0x22, 0x33]),
        Err(SimError::PowerLost)
    );
    let p = torn_pattern(0, 4);
    let expect: Vec<u8> = [0x00, 0x11, 0x22, 0x33]
        .iter()
        .zip(&p)
        .map(|(n, p)| n & p)
        .collect();
    assert_eq!(&f.contents()[8..12], &expect[..]);
    assert!(f.contents()[..8].iter().all(|&b| b == 0xFF));
    assert!(f.contents()[12..].iter().all(|&b| b == 0xFF));
    // An empty write is a (no-op) mutating op; cutting it changes nothing.
    let mut f = Flash::new(MAP);
    f.write(0, &[]).unwrap();
    f.schedule_cut(Cut {
        at: 1,
        kind: CutKind::Torn,
    });
    assert_eq!(f.write(0, &[]), Err(SimError::PowerLost));
    assert!(f.contents().iter().all(|&b| b == 0xFF));
    assert_eq!(f.stats().ops, 2);
}

#[test]
fn torn_multiwrite_only_clears_some_of_the_bits_to_clear() {
    let old = [0xF0u8, 0xFF, 0x0F, 0xAA, 0x00, 0xFF, 0x12, 0x34];
    let new = [0x30u8, 0x0F, 0x0F, 0x22, 0x00, 0x00, 0x10, 0x04];
    let mut strictly_between = 0;
    for at in 0..16u64 {
        let mut f = MwFlash::new(&[1024, 1024]);
        burn_ops(&mut f, at);
        f.preload(0, &old);
        f.schedule_cut(Cut {
            at,
            kind: CutKind::Torn,
        });
        assert_eq!(f.write(0, &new), Err(SimError::PowerLost));
        // Word 0 exact; word 1 = old & (new | pattern).
        let p = torn_pattern(at, 4);
        let mut expect = vec![0xFF; 2048];
        expect[0..4].copy_from_slice(&new[0..4]);
        for i in 0..4 {
            expect[4 + i] = old[4 + i] & (new[4 + i] | p[i]);
        }
        assert_eq!(f.contents(), &expect[..], "torn at {at}");
        let w = &f.contents()[4..8];
        for i in 0..4 {
            // Guarantees of MultiwriteNorFlash: new ⊆ result ⊆ old.
            assert_eq!(w[i] & new[4 + i], new[4 + i]);
            assert_eq!(w[i] & !old[4 + i], 0);
        }
        if w != &old[4..8] && w != &new[4..8] {
            strictly_between += 1;
        }
    }
    assert!(strictly_between > 8, "only {strictly_between} torn words");
}

#[test]
fn multiwrite_before_and_after_cuts() {
    let mut f = MwFlash::new(&[1024]);
    f.preload(0, &[0xF0; 8]);
    f.schedule_cut(Cut {
        at: 0,
        kind: CutKind::Before,
    });
    assert_eq!(f.write(0, &[0x30; 8]), Err(SimError::PowerLost));
    assert_eq!(&f.contents()[..8], &[0xF0; 8]);
    f.power_on();
    f.schedule_cut(Cut {
        at: 1,
        kind: CutKind::After,
    });
    assert_eq!(f.write(0, &[0x30; 8]), Err(SimError::PowerLost));
    assert_eq!(&f.contents()[..8], &[0x30; 8]);
    assert!(f.contents()[8..].iter().all(|&b| b == 0xFF));
}

/// Preloads everything with a never-0xFF fill, cuts the erase of `from..to`.
fn erase_cut(kind: CutKind, at: u64, from: u32, to: u32) -> (Flash, Vec<u8>) {
    let mut f = Flash::new(MAP);
    burn_ops(&mut f, at);
    let p = fill(f.capacity());
    f.preload(0, &p);
    f.reset_stats();
    f.schedule_cut(Cut { at, kind });
    assert_eq!(f.erase(from, to), Err(SimError::PowerLost));
    assert!(f.is_powered_off());
    assert_eq!(f.stats().ops, at + 1);
    (f, p)
}

#[test]
fn erase_cut_before_changes_nothing() {
    let (f, p) = erase_cut(CutKind::Before, 2, 4096, 8192);
    assert_eq!(f.contents(), &p[..]);
    assert_eq!(f.stats().erases, 0);
    assert_eq!(f.erase_count(4), 0);
}

#[test]
fn erase_cut_after_completes() {
    let (f, mut p) = erase_cut(CutKind::After, 2, 1024, 8192);
    p[1024..8192].fill(0xFF);
    assert_eq!(f.contents(), &p[..]);
    assert_eq!(f.stats().erases, 4);
    assert_eq!(f.stats().bytes_erased, 7168);
    assert_eq!(
        (0..7).map(|s| f.erase_count(s)).collect::<Vec<_>>(),
        [0, 1, 1, 1, 1, 0, 0]
    );
}

#[test]
fn torn_erase_erases_first_half_of_first_sector_only() {
    // Single 4K sector: 4096..6144 erased, 6144..8192 keeps old data.
    let (f, mut p) = erase_cut(CutKind::Torn, 1, 4096, 8192);
    p[4096..6144].fill(0xFF);
    assert_eq!(f.contents(), &p[..]);
    assert!(f.contents()[4096..8192].iter().any(|&b| b != 0xFF));
    assert_eq!(f.stats().erases, 1);
    assert_eq!(f.stats().bytes_erased, 2048);
    assert_eq!(f.erase_count(4), 1);

    // Multi-sector erase 0..4096: only 0..512 erased.
    let (f, mut p) = erase_cut(CutKind::Torn, 0, 0, 4096);
    p[0..512].fill(0xFF);
    assert_eq!(f.contents(), &p[..]);
    assert_eq!(
        (0..7).map(|s| f.erase_count(s)).collect::<Vec<_>>(),
        [1, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn torn_erase_of_half_erased_sector_may_look_erased() {
    let mut f = Flash::new(MAP);
    f.preload(8192, &[0x00; 4096]); // first half of the 8K sector programmed
    f.schedule_cut(Cut {
        at: 0,
        kind: CutKind::Torn,
    });
    assert_eq!(f.erase(8192, 16384), Err(SimError::PowerLost));
    assert!(f.contents().iter().all(|&b| b == 0xFF));
}

#[test]
fn powered_off_rejects_everything_until_power_on() {
    let mut f = Flash::new(MAP);
    f.preload(0, &[0x42; 8]);
    f.schedule_cut(Cut {
        at: 0,
        kind: CutKind::Before,
    });
    assert!(!f.is_powered_off());
    assert_eq!(f.erase(0, 1024), Err(SimError::PowerLost));
    assert!(f.is_powered_off());
    let before = f.stats();
    let mut buf = [0u8; 4];
    for _ in 0..3 {
        assert_eq!(f.read(0, &mut buf), Err(SimError::PowerLost));
        assert_eq!(f.write(16, &[0; 4]), Err(SimError::PowerLost));
        assert_eq!(f.erase(1024, 2048), Err(SimError::PowerLost));
    }
    assert_eq!(buf, [0; 4], "nothing read while off");
    // Invalid arguments still report their own error while off.
    assert_eq!(f.write(1, &[0; 4]), Err(SimError::NotAligned));
    assert_eq!(f.erase(0, 512), Err(SimError::NotAligned));
    assert_eq!(f.read(u32::MAX, &mut buf), Err(SimError::OutOfBounds));
    // Nothing counted, nothing changed.
    assert_eq!(f.stats(), before);
    assert_eq!(f.stats().ops, 1);
    assert_eq!(&f.contents()[..8], &[0x42; 8]);
    assert!(f.contents()[8..].iter().all(|&b| b == 0xFF));
    assert!(f.is_powered_off());

    f.power_on();
    assert!(!f.is_powered_off());
    assert_eq!(f.scheduled_cut(), None, "fired cut is gone");
    f.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0x42; 4]);
    f.write(16, &[0; 4]).unwrap();
    f.erase(0, 1024).unwrap();
    assert_eq!(f.stats().ops, 3);
    assert!(!f.is_powered_off());
}

#[test]
fn cut_fires_only_at_its_index() {
    let mut f = Flash::new(MAP);
    f.schedule_cut(Cut {
        at: 2,
        kind: CutKind::After,
    });
    f.write(0, &[1; 4]).unwrap();
    f.write(4, &[2; 4]).unwrap();
    assert_eq!(f.write(8, &[3; 4]), Err(SimError::PowerLost));
    f.power_on();
    f.write(12, &[4; 4]).unwrap();
    assert_eq!(
        &f.contents()[..16],
        &[1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4]
    );
    // A cut whose index already passed never fires.
    f.schedule_cut(Cut {
        at: 1,
        kind: CutKind::Before,
    });
    f.write(16, &[5; 4]).unwrap();
    assert!(!f.is_powered_off());
}

#[test]
fn clear_and_replace_cut() {
    let mut f = Flash::new(MAP);
    let cut = Cut {
        at: 0,
        kind: CutKind::Before,
    };
    f.schedule_cut(cut);
    assert_eq!(f.scheduled_cut(), Some(cut));
    f.clear_cut();
    assert_eq!(f.scheduled_cut(), None);
    f.write(0, &[0; 4]).unwrap();
    // Scheduling again replaces the previous cut.
    f.schedule_cut(Cut {
        at: 1,
        kind: CutKind::Before,
    });
    f.schedule_cut(Cut {
        at: 2,
        kind: CutKind::Before,
    });
    f.write(4, &[0; 4]).unwrap();
    assert_eq!(f.write(8, &[0; 4]), Err(SimError::PowerLost));
}

#[test]
fn rejected_op_does_not_consume_the_cut() {
    let mut f = Flash::new(MAP);
    f.write(0, &[0; 4]).unwrap();
    f.schedule_cut(Cut {
        at: 1,
        kind: CutKind::After,
    });
    assert_eq!(f.write(2, &[0; 4]), Err(SimError::NotAligned));
    assert_eq!(f.write(0, &[0; 4]), Err(SimError::NotErased { addr: 0 }));
    assert_eq!(
        f.erase(0, 2048 + 1024 * 2 + 1024),
        Err(SimError::BadEraseRange)
    );
    assert!(!f.is_powered_off());
    assert_eq!(f.stats().ops, 1);
    assert_eq!(f.write(4, &[7; 4]), Err(SimError::PowerLost));
    assert_eq!(&f.contents()[4..8], &[7; 4]);
}

#[test]
fn enumerate_every_cut_point_of_a_sequence() {
    // The typical power-loss loop: count ops once, then cut at each one.
    fn scenario<F: NorFlash>(f: &mut F) -> Result<(), F::Error> {
        f.erase(0, 2048)?;
        f.write(0, &[0xAB; 16])?;
        f.write(1024, &[0xCD; 8])?;
        f.erase(4096, 8192)
    }
    let mut golden = Flash::new(MAP);
    scenario(&mut golden).unwrap();
    let n = golden.stats().ops;
    assert_eq!(n, 4);
    for at in 0..n {
        for kind in [CutKind::Before, CutKind::Torn, CutKind::After] {
            let mut f = Flash::new(MAP);
            f.schedule_cut(Cut { at, kind });
            assert_eq!(scenario(&mut f), Err(SimError::PowerLost), "{at} {kind:?}");
            assert_eq!(f.stats().ops, at + 1);
            f.power_on();
            let mut b = [0u8; 1];
            f.read(0, &mut b).unwrap();
        }
    }
}

fn torn_with(tear: Tear, at: u64, bytes: &[u8]) -> Flash {
    let mut f = Flash::new(MAP);
    burn_ops(&mut f, at);
    f.schedule_cut(Cut {
        at,
        kind: CutKind::TornWith(tear),
    });
    assert_eq!(f.write(AT, bytes), Err(SimError::PowerLost));
    f
}

#[test]
fn tear_points_choose_how_many_words_are_exact() {
    assert_eq!(
        [
            TearPoint::Start,
            TearPoint::OneWord,
            TearPoint::Half,
            TearPoint::LastWord
        ]
        .map(|p| p.exact_words(5)),
        [0, 1, 2, 4]
    );
    // A one-word write always tears its only word.
    for p in [
        TearPoint::Start,
        TearPoint::OneWord,
        TearPoint::Half,
        TearPoint::LastWord,
    ] {
        assert_eq!(p.exact_words(1), 0);
        assert_eq!(p.exact_words(0), 0);
    }
    for (point, exact) in [
        (TearPoint::Start, 0usize),
        (TearPoint::OneWord, 1),
        (TearPoint::Half, 2),
        (TearPoint::LastWord, 4),
    ] {
        let tear = Tear {
            point,
            word: TornWord::And,
            erase: TornErase::Half,
        };
        let f = torn_with(tear, 3, &NEW);
        let a = AT as usize;
        let p = torn_pattern(3, 4);
        let mut expect = vec![0xFF; f.capacity()];
        expect[a..a + 4 * exact].copy_from_slice(&NEW[..4 * exact]);
        for i in 0..4 {
            expect[a + 4 * exact + i] = NEW[4 * exact + i] & p[i];
        }
        assert_eq!(f.contents(), &expect[..], "{point:?}");
        assert_eq!(f.stats().bytes_written, 4 * exact as u64 + 4);
    }
}

#[test]
fn torn_word_values_for_a_zero_marker() {
    // A word marker is written as all zero: `And` reads as written, `Partial` reads the
    // pattern (partly FF), `Unchanged` still reads erased.
    let at = 6;
    let p = torn_pattern(at, 4);
    let mut results = Vec::new();
    for word in [TornWord::And, TornWord::Partial, TornWord::Unchanged] {
        let tear = Tear {
            point: TearPoint::Half,
            word,
            erase: TornErase::Half,
        };
        let f = torn_with(tear, at, &[0; 4]);
        results.push(f.contents()[AT as usize..AT as usize + 4].to_vec());
    }
    assert_eq!(results[0], [0; 4]);
    assert_eq!(results[1], p);
    assert!(
        results[1].iter().any(|&b| b != 0),
        "partial marker reads as written"
    );
    assert_eq!(results[2], [0xFF; 4]);
    // Over many cut points a partial marker is almost never all zero or all FF.
    let mut clean = 0;
    for at in 0..32 {
        let tear = Tear {
            point: TearPoint::Start,
            word: TornWord::Partial,
            erase: TornErase::Half,
        };
        let f = torn_with(tear, at, &[0; 4]);
        let w = &f.contents()[AT as usize..AT as usize + 4];
        if w == [0; 4] || w == [0xFF; 4] {
            clean += 1;
        }
    }
    assert!(clean < 2, "{clean} of 32 partial markers were clean");
}

#[test]
fn torn_words_on_multiwrite_obey_its_power_loss_contract() {
    let old = [0xF0u8, 0xFF, 0x0F, 0xAA];
    let new = [0x30u8, 0x0F, 0x0F, 0x22];
    for at in 0..8u64 {
        let p = torn_pattern(at, 4);
        for word in [TornWord::And, TornWord::Partial, TornWord::Unchanged] {
            let mut f = MwFlash::new(&[1024, 1024]);
            burn_ops(&mut f, at);
            f.preload(0, &old);
            f.schedule_cut(Cut {
                at,
                kind: CutKind::TornWith(Tear {
                    point: TearPoint::Start,
                    word,
                    erase: TornErase::Half,
                }),
            });
            assert_eq!(f.write(0, &new), Err(SimError::PowerLost));
            let w = &f.contents()[0..4];
            for i in 0..4 {
                let want = match word {
                    TornWord::Unchanged => old[i],
                    _ => old[i] & (new[i] | p[i]),
                };
                assert_eq!(w[i], want, "{word:?} at {at}");
            }
        }
    }
}

#[test]
fn torn_erase_extents() {
    let tear = |erase| Tear {
        point: TearPoint::Half,
        word: TornWord::And,
        erase,
    };
    let cut = |erase, from, to| {
        let mut f = Flash::new(MAP);
        let p = fill(f.capacity());
        f.preload(0, &p);
        f.schedule_cut(Cut {
            at: 0,
            kind: CutKind::TornWith(tear(erase)),
        });
        assert_eq!(f.erase(from, to), Err(SimError::PowerLost));
        (f, p)
    };
    // First word only.
    let (f, mut p) = cut(TornErase::FirstWord, 4096, 8192);
    p[4096..4100].fill(0xFF);
    assert_eq!(f.contents(), &p[..]);
    assert_eq!(f.stats().bytes_erased, 4);
    assert_eq!(f.erase_count(4), 1);
    // All but the last word of the last sector, over three sectors.
    let (f, mut p) = cut(TornErase::AllButLastWord, 1024, 4096);
    p[1024..4092].fill(0xFF);
    assert_eq!(f.contents(), &p[..]);
    assert_eq!(
        (0..7).map(|s| f.erase_count(s)).collect::<Vec<_>>(),
        [0, 1, 1, 1, 0, 0, 0]
    );
    assert_eq!(f.stats().erases, 3);
    // Some bits of every byte of the first sector.
    let (f, mut p) = cut(TornErase::Bits, 0, 2048);
    let pat = torn_pattern(0, 8);
    for (i, b) in p[0..1024].iter_mut().enumerate() {
        *b |= pat[i % 8];
    }
    assert_eq!(f.contents(), &p[..]);
    assert!(f.contents()[..1024].iter().any(|&b| b != 0xFF));
    assert_eq!(f.erase_count(0), 1);
    assert_eq!(f.erase_count(1), 0);
    // The classic torn cut is the Half shape.
    let (f, mut p) = cut(TornErase::Half, 4096, 8192);
    p[4096..6144].fill(0xFF);
    assert_eq!(f.contents(), &p[..]);
}

#[test]
fn cut_kinds_cover_every_tear_shape() {
    let kinds: Vec<CutKind> = CutKind::all().collect();
    assert_eq!(kinds.len(), 2 + Tear::VARIANTS.len());
    assert!(kinds.contains(&CutKind::Before) && kinds.contains(&CutKind::After));
    assert!(kinds.contains(&CutKind::TornWith(Tear::CLASSIC)));
    let v = Tear::VARIANTS;
    for p in [
        TearPoint::Start,
        TearPoint::OneWord,
        TearPoint::Half,
        TearPoint::LastWord,
    ] {
        assert!(v.iter().any(|t| t.point == p), "{p:?}");
    }
    for w in [TornWord::And, TornWord::Partial, TornWord::Unchanged] {
        assert!(v.iter().any(|t| t.word == w), "{w:?}");
    }
    for e in [
        TornErase::Half,
        TornErase::FirstWord,
        TornErase::AllButLastWord,
        TornErase::Bits,
    ] {
        assert!(v.iter().any(|t| t.erase == e), "{e:?}");
    }
    // `Torn` and `TornWith(CLASSIC)` leave the same result.
    let a = write_cut(CutKind::Torn, 9);
    let b = write_cut(CutKind::TornWith(Tear::CLASSIC), 9);
    assert_eq!(a.contents(), b.contents());
}
