//! The crate's log shim: `trace!`, `debug!`, `info!`, `warn!` and `error!`, crate-internal.
//!
//! With the `defmt` feature they forward to `defmt`; else with the `log` feature to `log`
//! (both on: `defmt`, so `--all-features` builds); with neither they expand to a borrow of
//! their arguments and nothing else: no warning, no code. Format strings use only `{}` and
//! `{:?}`, which defmt and `log` both accept; arguments implement `defmt::Format` under
//! `defmt` and `Display`/`Debug` otherwise. (The shape of embassy's `fmt.rs`, written anew.)
#![allow(unused_macros)]

macro_rules! trace {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::trace!($fmt $(, $arg)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::trace!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$arg,)*);
    }};
}

macro_rules! debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::debug!($fmt $(, $arg)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::debug!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$arg,)*);
    }};
}

macro_rules! info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::info!($fmt $(, $arg)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::info!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$arg,)*);
    }};
}

macro_rules! warn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::warn!($fmt $(, $arg)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::warn!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$arg,)*);
    }};
}

macro_rules! error {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::error!($fmt $(, $arg)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::error!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$arg,)*);
    }};
}
