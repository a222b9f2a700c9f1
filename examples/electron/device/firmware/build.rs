//! Puts the memory map where cortex-m-rt's link.x finds it: `memory.x` for the board,
//! `memory-qemu.x` with the `qemu` feature (RAM ends at 0x2001_0000: the top 64 KB are the
//! QEMU stand-ins' region, which start-up code must not touch). With `defmt`, links defmt.x.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = if env::var_os("CARGO_FEATURE_QEMU").is_some() {
        "memory-qemu.x"
    } else {
        "memory.x"
    };
    fs::copy(src, out.join("memory.x")).expect("copy the memory map");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=memory-qemu.x");
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
}
