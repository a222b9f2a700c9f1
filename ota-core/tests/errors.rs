//! Errors that wrap another error return it from `source()`, so an error reporter can walk the
//! chain; the others have none.

use core::error::Error;

use ota_core::{
    BeginError, BuildError, LayoutError, OpenError, ParseError, StateError, VerifyError,
};

fn source_text(e: &dyn Error) -> Option<String> {
    e.source().map(|s| s.to_string())
}

#[test]
fn wrapping_errors_expose_their_source() {
    let refused = VerifyError::BadSignature;
    assert_eq!(
        source_text(&BeginError::Refused(refused)),
        Some(refused.to_string())
    );
    assert_eq!(
        source_text(&StateError::Refused(refused)),
        Some(refused.to_string())
    );
    let layout = LayoutError::Overlap;
    assert_eq!(
        source_text(&OpenError::Layout(layout)),
        Some(layout.to_string())
    );
    let parse = ParseError::BadMagic;
    assert_eq!(
        source_text(&VerifyError::Malformed(parse)),
        Some(parse.to_string())
    );
    assert_eq!(
        source_text(&BuildError::Invalid(parse)),
        Some(parse.to_string())
    );
    // Two levels: a refused offer whose manifest was malformed.
    let e = BeginError::Refused(VerifyError::Malformed(parse));
    let inner = e.source().and_then(|s| s.source()).map(|s| s.to_string());
    assert_eq!(inner, Some(parse.to_string()));
}

#[test]
fn leaf_errors_have_no_source() {
    assert!(StateError::NeedsErase.source().is_none());
    assert!(BeginError::NeedsErase.source().is_none());
    assert!(OpenError::LayoutMismatch.source().is_none());
    assert!(VerifyError::BadSignature.source().is_none());
}

/// An error that returns its source does not repeat the source's text in its own message, so a
/// reporter that prints the chain shows each cause once (as the other crates of the workspace do).
#[test]
fn wrapping_errors_do_not_repeat_their_source() {
    let parse = ParseError::BadMagic;
    let refused = VerifyError::Malformed(parse);
    let cases: [(&dyn Error, String); 5] = [
        (&BeginError::Refused(refused), refused.to_string()),
        (&StateError::Refused(refused), refused.to_string()),
        (
            &OpenError::Layout(LayoutError::Overlap),
            LayoutError::Overlap.to_string(),
        ),
        (&VerifyError::Malformed(parse), parse.to_string()),
        (&BuildError::Invalid(parse), parse.to_string()),
    ];
    for (e, inner) in cases {
        let outer = e.to_string();
        assert!(!outer.is_empty());
        assert!(!outer.contains(&inner), "{outer:?} repeats {inner:?}");
    }
}
