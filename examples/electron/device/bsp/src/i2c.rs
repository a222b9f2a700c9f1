//! I2C3 (PA8 SCL, PC9 SDA) at 100 kHz, master, polled: the bus of the BQ24195 charger
//! (0x6B) and the MAX17043 fuel gauge (0x36). Implements embedded-hal 1.0 [`I2c`].
//!
//! Every wait for a status flag is bounded ([`WAIT_POLLS`]); a timeout, a NACK or a bus error
//! ends the transaction with a STOP and an error, and a bus left busy is cleared with a
//! peripheral software reset (`SWRST`) and the timing reprogrammed, so the next transaction
//! starts clean. Nothing here can hang.
//!
//! Timing for standard mode (RM0033, I2C chapter, `I2C_CCR` and `I2C_TRISE`): `FREQ` = PCLK1 in MHz; `CCR` =
//! PCLK1 / (2 × 100 kHz) (Thigh = Tlow = `CCR` × Tpclk1); `TRISE` = 1000 ns × PCLK1 + 1. At
//! PCLK1 = 30 MHz: FREQ 30, CCR 150, TRISE 31 (research `electron-board.md` §5, derived).
//!
//! The receive sequence follows RM0033, I2C chapter, "Master receiver": ACK set for all but the
//! last byte; for the last byte ACK is cleared and STOP (or a repeated START) set right after
//! the byte before it is read, inside a critical section so an interrupt cannot let the last
//! byte be acknowledged; a single-byte read clears ACK before the address phase ends.
//!
//! Sources: RM0033, I2C chapter; Device OS v3.3.1 `hal/src/stm32f2xx/i2c_hal.c` (I2C3 on PA8/PC9,
//! AF4, 100 kHz, l.139–150 and l.265).

use embedded_hal::i2c::{
    Error, ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

use crate::pac;

/// The bus clock.
pub const BUS_HZ: u32 = 100_000;

/// Polls of a status flag: a byte at 100 kHz takes 90 µs; at least 4 cycles a poll, 100 000
/// polls are at least 3.3 ms at 120 MHz (36 bytes' time, for clock stretching).
pub const WAIT_POLLS: u32 = 100_000;

/// The standard-mode timing registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct I2cTiming {
    /// `CR2.FREQ`: PCLK1 in MHz.
    pub freq: u8,
    /// `CCR.CCR` (standard mode, `F/S` = 0).
    pub ccr: u16,
    /// `TRISE`.
    pub trise: u8,
}

/// PCLK1 outside what the I2C peripheral accepts (2–30 MHz on the F2, a whole number of MHz)
/// or a CCR below its minimum of 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InvalidClock;

impl core::fmt::Display for InvalidClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PCLK1 unusable for 100 kHz I2C")
    }
}

impl core::error::Error for InvalidClock {}

/// The standard-mode (100 kHz) timing for `pclk1_hz`.
///
/// # Errors
/// [`InvalidClock`] for a PCLK1 outside 2–30 MHz or not a whole number of MHz.
pub const fn standard_mode_timing(pclk1_hz: u32) -> Result<I2cTiming, InvalidClock> {
    if pclk1_hz < 2_000_000 || pclk1_hz > 30_000_000 || !pclk1_hz.is_multiple_of(1_000_000) {
        return Err(InvalidClock);
    }
    let mhz = pclk1_hz / 1_000_000;
    let ccr = pclk1_hz / (2 * BUS_HZ);
    if ccr < 4 {
        return Err(InvalidClock);
    }
    Ok(I2cTiming {
        freq: mhz as u8,
        ccr: ccr as u16,
        trise: (mhz + 1) as u8,
    })
}

/// A failed transaction. The bus was released (STOP, or a peripheral reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum I2cError {
    /// No acknowledge: `Address` (no device) or `Data` (the device refused a byte).
    Nack(NoAcknowledgeSource),
    /// A misplaced START or STOP (`BERR`).
    Bus,
    /// Another master won the bus (`ARLO`).
    ArbitrationLoss,
    /// A received byte was lost (`OVR`).
    Overrun,
    /// A flag did not come within [`WAIT_POLLS`] (a device stretching the clock forever, or a
    /// bus held low).
    Timeout,
}

impl core::fmt::Display for I2cError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Nack(s) => write!(f, "I2C no acknowledge ({s})"),
            Self::Bus => f.write_str("I2C bus error"),
            Self::ArbitrationLoss => f.write_str("I2C arbitration lost"),
            Self::Overrun => f.write_str("I2C overrun"),
            Self::Timeout => f.write_str("I2C timeout"),
        }
    }
}

impl core::error::Error for I2cError {}

// By hand: embedded-hal's `NoAcknowledgeSource` has no `defmt::Format` without its
// `defmt-03` feature.
#[cfg(feature = "defmt")]
impl defmt::Format for I2cError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Nack(NoAcknowledgeSource::Address) => defmt::write!(f, "Nack(Address)"),
            Self::Nack(NoAcknowledgeSource::Data) => defmt::write!(f, "Nack(Data)"),
            Self::Nack(NoAcknowledgeSource::Unknown) => defmt::write!(f, "Nack(Unknown)"),
            Self::Bus => defmt::write!(f, "Bus"),
            Self::ArbitrationLoss => defmt::write!(f, "ArbitrationLoss"),
            Self::Overrun => defmt::write!(f, "Overrun"),
            Self::Timeout => defmt::write!(f, "Timeout"),
        }
    }
}

impl Error for I2cError {
    fn kind(&self) -> ErrorKind {
        match *self {
            Self::Nack(s) => ErrorKind::NoAcknowledge(s),
            Self::Bus => ErrorKind::Bus,
            Self::ArbitrationLoss => ErrorKind::ArbitrationLoss,
            Self::Overrun => ErrorKind::Overrun,
            Self::Timeout => ErrorKind::Other,
        }
    }
}

// SR1 bits.
const SB: u32 = 1 << 0;
const ADDR: u32 = 1 << 1;
const BTF: u32 = 1 << 2;
const RXNE: u32 = 1 << 6;
const TXE: u32 = 1 << 7;
const BERR: u32 = 1 << 8;
const ARLO: u32 = 1 << 9;
const AF: u32 = 1 << 10;
const OVR: u32 = 1 << 11;
const ERRORS: u32 = BERR | ARLO | AF | OVR;

/// I2C3, master, 100 kHz. Pins and clock are set up by the caller
/// ([`crate::pins::i2c3_af`], [`crate::clocks::enable_peripherals`]).
#[derive(Debug)]
pub struct I2c3 {
    i2c: pac::I2C3,
    timing: I2cTiming,
}

impl I2c3 {
    /// Programs I2C3 for 100 kHz standard mode from `pclk1_hz`
    /// ([`crate::clocks::PCLK1_HZ`] after `clocks::init`, 16 MHz without it) and enables it.
    ///
    /// # Errors
    /// [`InvalidClock`] (the peripheral is left disabled).
    pub fn new(i2c: pac::I2C3, pclk1_hz: u32) -> Result<I2c3, InvalidClock> {
        let timing = standard_mode_timing(pclk1_hz)?;
        let mut bus = I2c3 { i2c, timing };
        bus.reset();
        Ok(bus)
    }

    /// Resets the peripheral (`SWRST`) and reprograms it: frees a peripheral stuck busy.
    fn reset(&mut self) {
        let t = self.timing;
        self.i2c.cr1().write(|w| w.swrst().set_bit());
        self.i2c.cr1().write(|w| w.swrst().clear_bit());
        // SAFETY: values from `standard_mode_timing`, inside the fields' ranges.
        self.i2c.cr2().write(|w| unsafe { w.freq().bits(t.freq) });
        self.i2c
            .ccr()
            .write(|w| unsafe { w.f_s().clear_bit().ccr().bits(t.ccr) });
        self.i2c
            .trise()
            .write(|w| unsafe { w.trise().bits(t.trise) });
        self.i2c.cr1().write(|w| w.pe().set_bit());
    }

    /// Gives the peripheral back, disabled.
    pub fn free(self) -> pac::I2C3 {
        self.i2c.cr1().write(|w| w.pe().clear_bit());
        self.i2c
    }

    /// The timing in use.
    pub fn timing(&self) -> I2cTiming {
        self.timing
    }

    fn sr1(&self) -> u32 {
        self.i2c.sr1().read().bits() as u32
    }

    /// Waits for any of `flags` in SR1; an error flag ends the wait.
    fn wait(&mut self, flags: u32, nack: NoAcknowledgeSource) -> Result<u32, I2cError> {
        for _ in 0..WAIT_POLLS {
            let sr1 = self.sr1();
            if sr1 & ERRORS != 0 {
                // The error bits are rc_w0: write zeros to clear them, ones elsewhere.
                // SAFETY: clears only the error flags.
                self.i2c
                    .sr1()
                    .write(|w| unsafe { w.bits((!(sr1 & ERRORS) & 0xFFFF) as u16) });
                return Err(if sr1 & AF != 0 {
                    I2cError::Nack(nack)
                } else if sr1 & ARLO != 0 {
                    I2cError::ArbitrationLoss
                } else if sr1 & BERR != 0 {
                    I2cError::Bus
                } else {
                    I2cError::Overrun
                });
            }
            if sr1 & flags != 0 {
                return Ok(sr1);
            }
        }
        Err(I2cError::Timeout)
    }

    /// START (or repeated START) and the address byte; on return ADDR is set, not yet
    /// cleared.
    fn start(&mut self, address: u8, read: bool) -> Result<(), I2cError> {
        self.i2c.cr1().modify(|_, w| w.start().set_bit());
        self.wait(SB, NoAcknowledgeSource::Unknown)?;
        let byte = (address << 1) | read as u8;
        // SAFETY: any byte may be written to DR.
        self.i2c.dr().write(|w| unsafe { w.bits(byte as u16) });
        self.wait(ADDR, NoAcknowledgeSource::Address)?;
        Ok(())
    }

    fn clear_addr(&self) {
        // ADDR is cleared by reading SR1 then SR2.
        let _ = self.i2c.sr1().read();
        let _ = self.i2c.sr2().read();
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), I2cError> {
        if bytes.is_empty() {
            // An address-only write (a probe): nothing to wait for.
            return Ok(());
        }
        for &b in bytes {
            self.wait(TXE, NoAcknowledgeSource::Data)?;
            // SAFETY: any byte may be written to DR.
            self.i2c.dr().write(|w| unsafe { w.bits(b as u16) });
        }
        // Let the last byte leave the shift register before a STOP or repeated START.
        self.wait(BTF, NoAcknowledgeSource::Data)?;
        Ok(())
    }

    /// ACK off for the next byte, and a STOP (`last`) or a repeated START after it.
    fn nack_and_end(&self, last: bool) {
        self.i2c.cr1().modify(|_, w| {
            if last {
                w.ack().clear_bit().stop().set_bit()
            } else {
                w.ack().clear_bit().start().set_bit()
            }
        });
    }

    /// Receives `buf`; ends with a STOP if `last`, else sets up a repeated START.
    fn read_bytes(&mut self, buf: &mut [u8], last: bool) -> Result<(), I2cError> {
        match buf.len() {
            // The I2C v1 peripheral cannot end a read before its first byte: an empty read
            // receives one byte, NACKs it and discards it.
            0 => self.read_bytes(&mut [0u8], last),
            1 => {
                // NACK the only byte: ACK off before ADDR is cleared, then STOP.
                cortex_m::interrupt::free(|_| {
                    self.i2c.cr1().modify(|_, w| w.ack().clear_bit());
                    self.clear_addr();
                    self.nack_and_end(last);
                });
                self.wait(RXNE, NoAcknowledgeSource::Data)?;
                buf[0] = self.i2c.dr().read().bits() as u8;
                Ok(())
            }
            n => {
                self.i2c.cr1().modify(|_, w| w.ack().set_bit());
                self.clear_addr();
                for b in buf.iter_mut().take(n - 2) {
                    self.wait(RXNE, NoAcknowledgeSource::Data)?;
                    *b = self.i2c.dr().read().bits() as u8;
                }
                // Second to last: wait for it, read it and NACK the last at once, with no
                // interrupt in between (the last byte is on the wire meanwhile: 90 µs).
                cortex_m::interrupt::free(|_| -> Result<(), I2cError> {
                    self.wait(RXNE, NoAcknowledgeSource::Data)?;
                    buf[n - 2] = self.i2c.dr().read().bits() as u8;
                    self.nack_and_end(last);
                    Ok(())
                })?;
                self.wait(RXNE, NoAcknowledgeSource::Data)?;
                buf[n - 1] = self.i2c.dr().read().bits() as u8;
                Ok(())
            }
        }
    }

    fn run(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), I2cError> {
        // A bus still busy from a failed transaction: reset the peripheral first.
        if self.i2c.sr2().read().busy().bit_is_set() {
            self.reset();
            if !(0..WAIT_POLLS).any(|_| self.i2c.sr2().read().busy().bit_is_clear()) {
                return Err(I2cError::Timeout);
            }
        }
        let count = ops.len();
        // Consecutive writes are one transfer (no new START between them).
        let mut writing = false;
        for (i, op) in ops.iter_mut().enumerate() {
            let last = i + 1 == count;
            match op {
                Operation::Write(bytes) => {
                    if !writing {
                        self.start(address, false)?;
                        self.clear_addr();
                    }
                    self.write_bytes(bytes)?;
                    if last {
                        self.i2c.cr1().modify(|_, w| w.stop().set_bit());
                    }
                    writing = true;
                }
                Operation::Read(buf) => {
                    // Adjacent reads are one transfer in embedded-hal's contract; this driver
                    // restarts between them, which the chips on this bus accept. A read that
                    // is not last requests the next op's repeated START itself.
                    self.start(address, true)?;
                    self.read_bytes(buf, last)?;
                    writing = false;
                }
            }
        }
        // Wait for the STOP to go out (BUSY clears), bounded.
        if (0..WAIT_POLLS).any(|_| self.i2c.sr2().read().busy().bit_is_clear()) {
            Ok(())
        } else {
            Err(I2cError::Timeout)
        }
    }
}

impl ErrorType for I2c3 {
    type Error = I2cError;
}

impl I2c<SevenBitAddress> for I2c3 {
    /// Runs `operations` as one transaction: START, address, the operations with a repeated
    /// START whenever a read follows anything or a write follows a read, STOP.
    ///
    /// Cost: about 90 µs a byte at 100 kHz, polled (the CPU spins).
    ///
    /// # Errors
    /// [`I2cError`]; the bus is released (STOP sent, or the peripheral reset).
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), I2cError> {
        let result = self.run(address, operations);
        if result.is_err() {
            self.i2c.cr1().modify(|_, w| w.stop().set_bit());
            if !(0..WAIT_POLLS).any(|_| self.i2c.sr2().read().busy().bit_is_clear()) {
                self.reset();
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_at_30_mhz_matches_the_research() {
        assert_eq!(
            standard_mode_timing(30_000_000),
            Ok(I2cTiming {
                freq: 30,
                ccr: 150,
                trise: 31
            })
        );
        // 16 MHz HSI (before clocks::init): CCR 80, TRISE 17.
        assert_eq!(
            standard_mode_timing(16_000_000),
            Ok(I2cTiming {
                freq: 16,
                ccr: 80,
                trise: 17
            })
        );
    }

    #[test]
    fn unusable_clocks_are_refused() {
        assert_eq!(standard_mode_timing(1_000_000), Err(InvalidClock));
        assert_eq!(standard_mode_timing(60_000_000), Err(InvalidClock));
        assert_eq!(standard_mode_timing(30_500_000), Err(InvalidClock));
    }

    #[test]
    fn the_bus_runs_at_100_khz() {
        let t = standard_mode_timing(30_000_000).unwrap();
        // Thigh + Tlow = 2 × CCR × Tpclk1.
        assert_eq!(30_000_000 / (2 * t.ccr as u32), BUS_HZ);
    }
}
