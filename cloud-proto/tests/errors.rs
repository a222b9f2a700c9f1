//! Errors that wrap another return it from `source()` and do not repeat it in their own
//! `Display`, so an error report (`anyhow`'s `{:#}`, a walk over `source()`) prints each
//! cause once.

use core::error::Error;
use core::fmt;

use cloud_proto::*;

#[derive(Debug, PartialEq)]
struct DbDown;

impl fmt::Display for DbDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("database unreachable")
    }
}

impl Error for DbDown {}

/// Every message of the chain, outermost first.
fn chain(e: &(dyn Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out
}

fn each_cause_once(e: &(dyn Error + 'static)) {
    let c = chain(e);
    for (i, outer) in c.iter().enumerate() {
        for inner in &c[i + 1..] {
            assert!(
                !outer.contains(inner.as_str()),
                "{outer:?} repeats {inner:?}"
            );
        }
    }
}

#[test]
fn wrapping_errors_expose_their_source() {
    let e = SendError::Encode(EncodeError::TooLarge);
    let s = e.source().expect("source");
    assert_eq!(
        s.downcast_ref::<EncodeError>(),
        Some(&EncodeError::TooLarge)
    );
    each_cause_once(&e);

    let e = RequestError::<DbDown>::Frame(FrameError::BadTag);
    let s = e.source().expect("source");
    assert_eq!(s.downcast_ref::<FrameError>(), Some(&FrameError::BadTag));
    each_cause_once(&e);

    let e = RequestError::Store(DbDown);
    let s = e.source().expect("source");
    assert_eq!(s.downcast_ref::<DbDown>(), Some(&DbDown));
    assert_eq!(chain(&e).len(), 2);
    each_cause_once(&e);
}

#[test]
fn errors_that_wrap_nothing_have_no_source() {
    let leaves: [&(dyn Error + 'static); 8] = [
        &FrameError::BadTag,
        &EncodeError::Invalid,
        &StreamError::Invalid,
        &SendError::Busy,
        &AdmitError::Replayed {
            counter: 1,
            last: 2,
        },
        &RequestError::<DbDown>::Refused(AdmitError::Replayed {
            counter: 1,
            last: 2,
        }),
        &RequestError::<DbDown>::UnknownDevice(DeviceId(7)),
        &RequestError::<DbDown>::Conflict,
    ];
    for e in leaves {
        assert!(e.source().is_none(), "{e}");
    }
}
