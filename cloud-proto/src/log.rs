//! Crate-internal log macros (`trace!` … `error!`), the same shim in every crate of the SDK
//! (the shape of embassy's `fmt.rs`, written for this crate):
//!
//! * feature `defmt`: forwarded to `defmt` (wins when `log` is on too, so `--all-features`
//!   builds);
//! * else feature `log`: forwarded to the `log` facade (a host server, a test);
//! * neither: nothing is emitted, no code; the arguments are still borrowed so they count as
//!   used.
//!
//! Format strings use only `{}` and `{:?}`, which both back-ends accept; arguments implement
//! `defmt::Format` and `Display`/`Debug`. Nothing logged here may hold key material or whole
//! frames: ids, counters, errors, sizes.
#![allow(unused_macros)]

macro_rules! log_shim {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$x),*);
    }};
}

#[collapse_debuginfo(yes)]
macro_rules! trace {
    ($($t:tt)*) => { log_shim!(trace, $($t)*) };
}

#[collapse_debuginfo(yes)]
macro_rules! debug {
    ($($t:tt)*) => { log_shim!(debug, $($t)*) };
}

#[collapse_debuginfo(yes)]
macro_rules! info {
    ($($t:tt)*) => { log_shim!(info, $($t)*) };
}

#[collapse_debuginfo(yes)]
macro_rules! warn {
    ($($t:tt)*) => { log_shim!(warn, $($t)*) };
}

#[collapse_debuginfo(yes)]
macro_rules! error {
    ($($t:tt)*) => { log_shim!(error, $($t)*) };
}
