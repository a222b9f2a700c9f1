//! Faults other than power cuts: program and erase errors with a chosen effect, and
//! operations that report success but did not do all their work.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use ota_flash_sim::{
    Cut, CutKind, Effect, Fault, FaultKind, SimError, SimFlash, Tear, TearPoint, TornErase,
    TornWord,
};

type Flash = SimFlash<4, 1024, false>;
type MwFlash = SimFlash<4, 1024, true>;
const MAP: &[usize] = &[1024, 1024, 2048];

const NEW: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x00, 0x00, 0x00, 0x00, 0x3C, 0xC3, 0x11, 0x22,
];

/// Mutating op `at` is a write of `NEW` at 64, after `at` erases of the last sector.
fn write_with(
    fault: Option<FaultKind>,
    cut: Option<CutKind>,
    at: u64,
) -> (Flash, Result<(), SimError>) {
    let mut f = Flash::new(MAP);
    for _ in 0..at {
        f.erase(2048, 4096).unwrap();
    }
    if let Some(kind) = fault {
        f.inject(Fault { at, kind });
    }
    if let Some(kind) = cut {
        f.schedule_cut(Cut { at, kind });
    }
    let r = f.write(64, &NEW);
    (f, r)
}

const TEARS: [Tear; 5] = Tear::VARIANTS;

#[test]
fn a_refused_write_changes_nothing_and_keeps_power() {
    let (mut f, r) = write_with(Some(FaultKind::Error(Effect::Nothing)), None, 2);
    assert_eq!(r, Err(SimError::Failed));
    assert!(!f.is_powered_off());
    assert!(f.contents().iter().all(|&b| b == 0xFF));
    assert_eq!(f.stats().ops, 3, "the failed op is counted");
    assert_eq!(f.stats().writes, 0);
    assert_eq!(f.stats().bytes_written, 0);
    assert!(f.pending_faults().is_empty(), "a fault fires once");
    // The next operation on the same words works normally.
    f.write(64, &NEW).unwrap();
    assert_eq!(f.contents()[64..80], NEW);
}

#[test]
fn an_error_with_a_torn_effect_leaves_what_the_same_torn_cut_leaves() {
    for at in [0, 5] {
        for t in TEARS {
            let (f, r) = write_with(Some(FaultKind::Error(Effect::Torn(t))), None, at);
            assert_eq!(r, Err(SimError::Failed));
            assert!(!f.is_powered_off());
            let (cut, rc) = write_with(None, Some(CutKind::TornWith(t)), at);
            assert_eq!(rc, Err(SimError::PowerLost));
            assert_eq!(f.contents(), cut.contents(), "{t:?} at op {at}");
            assert_eq!(f.stats(), cut.stats());
            assert_ne!(
                f.contents()[64..80],
                NEW,
                "a torn write is not the full write"
            );
        }
    }
}

#[test]
fn a_complete_write_that_reports_an_error() {
    let (f, r) = write_with(Some(FaultKind::Error(Effect::Complete)), None, 1);
    assert_eq!(r, Err(SimError::Failed));
    assert_eq!(f.contents()[64..80], NEW);
    assert_eq!(f.stats().writes, 1);
}

#[test]
fn a_silent_torn_write_returns_ok_and_only_a_read_back_shows_it() {
    let t = Tear {
        point: TearPoint::LastWord,
        word: TornWord::Partial,
        erase: TornErase::Half,
    };
    let (mut f, r) = write_with(Some(FaultKind::Silent(Effect::Torn(t))), None, 3);
    assert_eq!(r, Ok(()));
    assert!(!f.is_powered_off());
    let mut back = [0u8; 16];
    f.read(64, &mut back).unwrap();
    assert_eq!(back[..12], NEW[..12], "all words but the last are exact");
    assert_ne!(back[12..], NEW[12..], "the last word did not fully program");
    // Bits that should have cleared and did not still read 1: never the reverse.
    for (b, n) in back.iter().zip(&NEW) {
        assert_eq!(b & n, *n);
    }
    // A silent write that left nothing at all.
    let (f, r) = write_with(Some(FaultKind::Silent(Effect::Nothing)), None, 0);
    assert_eq!(r, Ok(()));
    assert!(f.contents().iter().all(|&b| b == 0xFF));
}

#[test]
fn erase_faults() {
    let data = [0x5Au8; 1024];
    let fresh = || {
        let mut f = Flash::new(MAP);
        f.preload(1024, &data);
        f
    };
    // Refused: nothing erased, not counted as an erase.
    let mut f = fresh();
    f.inject(Fault {
        at: 0,
        kind: FaultKind::Error(Effect::Nothing),
    });
    assert_eq!(f.erase(1024, 2048), Err(SimError::Failed));
    assert_eq!(f.contents()[1024..2048], data);
    assert_eq!((f.stats().ops, f.stats().erases), (1, 0));
    assert_eq!(f.erase_count(1), 0);
    // Half erased, reported as an error, as a classic torn cut.
    let mut f = fresh();
    f.inject(Fault {
        at: 0,
        kind: FaultKind::Error(Effect::Torn(Tear::CLASSIC)),
    });
    assert_eq!(f.erase(1024, 2048), Err(SimError::Failed));
    assert!(f.contents()[1024..1536].iter().all(|&b| b == 0xFF));
    assert_eq!(f.contents()[1536..2048], data[512..]);
    assert_eq!(f.erase_count(1), 1);
    // Reported done, but the last word still holds data.
    let mut f = fresh();
    f.inject(Fault {
        at: 0,
        kind: FaultKind::Silent(Effect::Torn(Tear::VARIANTS[3])),
    });
    assert_eq!(f.erase(1024, 2048), Ok(()));
    assert!(f.contents()[1024..2044].iter().all(|&b| b == 0xFF));
    assert_eq!(f.contents()[2044..2048], [0x5A; 4]);
    assert!(!f.is_powered_off());
}

#[test]
fn faults_fire_once_each_at_their_own_index() {
    let mut f = Flash::new(MAP);
    f.inject(Fault {
        at: 1,
        kind: FaultKind::Error(Effect::Nothing),
    });
    f.inject(Fault {
        at: 3,
        kind: FaultKind::Error(Effect::Nothing),
    });
    // Replaced: the fault at 3 is now a silent one.
    f.inject(Fault {
        at: 3,
        kind: FaultKind::Silent(Effect::Nothing),
    });
    assert_eq!(f.pending_faults().len(), 2);
    // A rejected call is not an operation and does not use a fault up.
    assert_eq!(f.write(2, &[0; 4]), Err(SimError::NotAligned));
    assert_eq!(f.write(0, &[0; 4]), Ok(())); // op 0
    assert_eq!(f.write(4, &[0; 4]), Err(SimError::Failed)); // op 1
    assert_eq!(f.write(4, &[0; 4]), Ok(())); // op 2: the retry works
    assert_eq!(f.write(8, &[0; 4]), Ok(())); // op 3: silent, nothing written
    assert_eq!(f.contents()[8..12], [0xFF; 4]);
    assert_eq!(f.write(8, &[0; 4]), Ok(())); // op 4
    assert_eq!(f.contents()[..12], [0; 12]);
    assert!(f.pending_faults().is_empty());
    // A fault whose index has passed never fires.
    f.inject(Fault {
        at: 2,
        kind: FaultKind::Error(Effect::Nothing),
    });
    assert_eq!(f.write(12, &[0; 4]), Ok(()));
    f.clear_faults();
    assert!(f.pending_faults().is_empty());
}

#[test]
fn a_cut_at_the_same_operation_wins_over_a_fault() {
    let (mut f, r) = write_with(
        Some(FaultKind::Silent(Effect::Complete)),
        Some(CutKind::Before),
        1,
    );
    assert_eq!(r, Err(SimError::PowerLost));
    assert!(f.is_powered_off());
    assert!(f.pending_faults().is_empty(), "the fault is dropped");
    f.power_on();
    assert!(f.contents()[..1024].iter().all(|&b| b == 0xFF));
}

#[test]
fn multiwrite_faults_only_clear_bits() {
    let mut f = MwFlash::new(MAP);
    f.preload(0, &[0xF0, 0xF0, 0xF0, 0xF0]);
    f.inject(Fault {
        at: 0,
        kind: FaultKind::Silent(Effect::Torn(Tear::CLASSIC)),
    });
    assert_eq!(f.write(0, &[0x30; 4]), Ok(()));
    for &b in &f.contents()[..4] {
        // Bits written as 1 stay as they were, bits that were 0 stay 0.
        assert_eq!(b & 0x0F, 0);
        assert_eq!(b | 0xF0, 0xF0);
        assert_eq!(b & 0x30, 0x30);
    }
}
