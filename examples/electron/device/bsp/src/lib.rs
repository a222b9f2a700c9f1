//! Board support for the Particle Electron: STM32F205RG (Cortex-M3, 120 MHz, 1 MB flash,
//! 128 KB SRAM) with a u-blox SARA-U2 or G350 modem, on the `stm32f2` PAC.
//!
//! Facts (pins, clocks, flash map) and their sources: `shared/research/electron-board.md`.
#![no_std]
#![deny(missing_docs)]

/// The peripheral access crate: the STM32F215 description, which covers the F205 (the F215
/// adds the crypto processor, which this crate never touches).
pub use stm32f2::stm32f215 as pac;

// Real-board peripherals, none of which QEMU's netduino2 emulates (compiled for the board;
// the `qemu` feature replaces them where the QEMU run needs one).
pub mod backup;
pub mod battery;
pub mod clocks;
pub mod flash;
pub mod i2c;
pub mod iwdg;
pub mod pins;
pub mod power;
pub mod rtc;

// The parts the QEMU run executes as they are on the board, and the QEMU stand-ins.
#[cfg(feature = "qemu")]
pub mod qemu;
pub mod time;
pub mod usart;
