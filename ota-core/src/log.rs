//! The crate's log shim: `trace!` … `error!` forward to `defmt` when the `defmt` feature is on,
//! else to `log` when the `log` feature is on, and expand to nothing otherwise (the arguments
//! are still borrowed, so that nothing is reported unused, and no code is emitted).
//!
//! Learned from embassy's `fmt.rs` (embassy-boot/src/fmt.rs): one set of macros, the backend
//! chosen by features. With both features on, defmt wins. Format strings use only `{}` and
//! `{:?}`, which both backends accept; arguments implement `defmt::Format` under defmt and
//! `Debug` otherwise.

#![allow(unused_macros)]

macro_rules! log_at {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(all(feature = "log", not(feature = "defmt")))]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            $(let _ = &$x;)*
        }
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { log_at!(trace, $($t)*) };
}
macro_rules! debug {
    ($($t:tt)*) => { log_at!(debug, $($t)*) };
}
macro_rules! info {
    ($($t:tt)*) => { log_at!(info, $($t)*) };
}
macro_rules! warn {
    ($($t:tt)*) => { log_at!(warn, $($t)*) };
}
macro_rules! error {
    ($($t:tt)*) => { log_at!(error, $($t)*) };
}
