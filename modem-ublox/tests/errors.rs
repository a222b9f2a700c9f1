//! Issue 8 item 6: one top-level `Error` that every family error converts into with `?`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use modem_ublox::{
    Apn, AtError, DataError, Error, Family, PinError, PowerError, Protocol, Registration,
    RegistrationError, SimError, SocketError,
};

/// A whole wake cycle written with `?` only: power, SIM, registration, data, a UDP exchange.
fn wake(m: &mut FullModem, frame: &[u8], answer: &mut [u8]) -> Result<usize, Error> {
    m.wait_sim_ready(10_000)?;
    m.register(&Registration::new(60_000))?;
    m.activate_data(&Apn::new("spark.telefonica.com"), 30_000)?;
    let s = m.open_socket(Protocol::Udp)?;
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 5684);
    m.send_to(s, server, frame)?;
    let n = match m.receive_from(s, answer)? {
        Some((n, _)) => n,
        None => 0,
    };
    m.close(s)?;
    let _ = m.iccid()?;
    m.power_off()?;
    Ok(n)
}

#[test]
fn a_wake_cycle_needs_no_conversion_and_keeps_the_family_error() {
    let (b, mut m) = booted(Family::U2);
    // The SIM is missing: the family error comes through unchanged.
    b.push(at("AT+CPIN?\r\n", "\r\n+CME ERROR: 10\r\n"));
    let e = wake(&mut m, b"hi", &mut [0; 8]).unwrap_err();
    assert_eq!(e, Error::Sim(SimError::NotInserted));
    assert_eq!(e.to_string(), SimError::NotInserted.to_string());
    b.done();
}

#[test]
fn every_family_error_converts() {
    let pin = PinError(embedded_hal::digital::ErrorKind::Other);
    assert_eq!(Error::from(AtError::Timeout), Error::At(AtError::Timeout));
    assert_eq!(
        Error::from(PowerError::StillOn),
        Error::Power(PowerError::StillOn)
    );
    assert_eq!(Error::from(SimError::Wrong), Error::Sim(SimError::Wrong));
    assert_eq!(
        Error::from(RegistrationError::Denied),
        Error::Registration(RegistrationError::Denied)
    );
    assert_eq!(
        Error::from(DataError::AuthFailed),
        Error::Data(DataError::AuthFailed)
    );
    assert_eq!(
        Error::from(SocketError::Closed),
        Error::Socket(SocketError::Closed)
    );
    assert_eq!(Error::from(pin), Error::Pin(pin));
    // Display is the family error's; it is a core::error::Error.
    let e: Box<dyn std::error::Error> = Box::new(Error::from(DataError::AuthFailed));
    assert_eq!(e.to_string(), "PDP authentication failed");
}

#[test]
fn modem_rebooted_is_one_question_whatever_the_family() {
    for e in [
        Error::from(AtError::ModemRebooted),
        Error::from(RegistrationError::ModemRebooted),
        Error::from(DataError::ModemRebooted),
        Error::from(SocketError::Invalidated),
        Error::from(PowerError::At(AtError::ModemRebooted)),
        Error::from(SimError::At(AtError::ModemRebooted)),
    ] {
        assert!(e.is_modem_rebooted(), "{e:?}");
    }
    assert!(!Error::from(SocketError::Closed).is_modem_rebooted());
    assert!(Error::from(AtError::Timeout).is_timeout());
    assert!(Error::from(DataError::Timeout).is_timeout());
    assert!(Error::from(SimError::NotReady).is_timeout());
    assert!(!Error::from(SimError::Wrong).is_timeout());
}

/// Issue 9 item 6: an error that wraps another gives it as `source()` and does not repeat its
/// message (a chain printer would print it twice); the top-level `Error` is transparent (its
/// `Display` and `source()` are the family error's).
#[test]
fn wrapped_errors_are_their_source_and_not_repeated() {
    use std::error::Error as _;
    let pin = PinError(embedded_hal::digital::ErrorKind::Other);
    let wrappers: [(Box<dyn std::error::Error>, String); 7] = [
        (
            Box::new(PowerError::At(AtError::Timeout)),
            AtError::Timeout.to_string(),
        ),
        (Box::new(PowerError::Pin(pin)), pin.to_string()),
        (
            Box::new(SimError::At(AtError::Cme(100))),
            AtError::Cme(100).to_string(),
        ),
        (
            Box::new(RegistrationError::At(AtError::Error)),
            AtError::Error.to_string(),
        ),
        (
            Box::new(DataError::At(AtError::Aborted)),
            AtError::Aborted.to_string(),
        ),
        (
            Box::new(SocketError::At(AtError::LineTooLong)),
            AtError::LineTooLong.to_string(),
        ),
        (
            Box::new(Error::from(PowerError::At(AtError::Timeout))),
            AtError::Timeout.to_string(),
        ),
    ];
    for (e, inner) in &wrappers {
        let source = e.source().expect("a wrapped error is the source");
        assert_eq!(source.to_string(), *inner, "{e:?}");
        assert!(
            !e.to_string().contains(inner.as_str()),
            "{e} repeats {inner}"
        );
    }
    // The top-level error: Display is the family's, source the family's source.
    let e = Error::from(DataError::At(AtError::Timeout));
    assert_eq!(e.to_string(), DataError::At(AtError::Timeout).to_string());
    assert_eq!(
        e.source().and_then(|s| s.downcast_ref::<AtError>()),
        Some(&AtError::Timeout)
    );
    // Nothing wrapped, no source.
    assert!(Error::from(DataError::AuthFailed).source().is_none());
    assert!(AtError::Timeout.source().is_none());
}
