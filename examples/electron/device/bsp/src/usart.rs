//! Polled USART driver: the modem's USART3 (with RTS/CTS hardware flow control) and the
//! console USART1, one implementation for both (`embedded-io` 0.7 `Read + Write + ReadReady`).
//!
//! Polled on purpose: the modem driver (`modem-ublox`) asks [`ReadReady::read_ready`] before
//! every `read`, and with RTS/CTS the STM32F2 deasserts RTS while a received byte waits in DR
//! (RM0033 §24.3.14, "RTS flow control"), so the modem holds its next byte instead of
//! overrunning a one-byte receiver. Without flow control (the console) a byte that arrives
//! while the previous one is unread is lost and reported once as [`UsartError::Overrun`]. The
//! byte that was waiting in DR at the overrun is still valid (RM0033, `USART_SR.ORE`: the DR
//! content is not lost, only the shift register's) and is delivered first; the error
//! follows, on the next read, where the lost bytes were.
//!
//! Known limit of polling with flow control: RTS rises when RXNE is set, but the peer may
//! still send a byte it had already started, and that byte overruns the receiver unless DR is
//! read before it completes. So while the modem is sending, a gap between polls longer than
//! about one character time (87 µs at 115 200 baud) risks an overrun (counted in
//! [`LineErrors::overruns`], reported as [`UsartError::Overrun`]); a flash erase, which stalls
//! the core for up to 2 s, must not run while the modem talks. An interrupt-driven receiver
//! with a ring buffer would remove the limit; not done here.

//! Clocks and pins are the caller's: `clocks::enable_peripherals` and `pins::usart3_af` /
//! `pins::usart1_af` before [`Usart::new`]. On QEMU's `netduino2` the USARTs exist (no clock
//! or pin set-up is needed there, and none is done by the `qemu` feature).
//!
//! Every wait is bounded ([`SPIN_LIMIT`] register polls); nothing here panics.

use core::ops::Deref;

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};

use crate::pac;

/// The register block every STM32F2 USART shares.
pub type Regs = pac::usart1::RegisterBlock;

/// The modem's USART3 (PB10 TX, PB11 RX, PB13 CTS, PB14 RTS; research: electron-board.md §1).
pub type Usart3 = Usart<pac::USART3>;
/// The console USART1 (PA9 TX, PA10 RX; research §7).
pub type Usart1 = Usart<pac::USART1>;
/// USART2 (not wired on the Electron; the `qemu` feature's board link uses it).
pub type Usart2 = Usart<pac::USART2>;

/// Register polls before a wait gives up: about 20 ms at 120 MHz (a byte at 115 200 baud is
/// 87 µs), so a modem that holds CTS (flow control) or a dead line ends a call with
/// [`UsartError::TimedOut`] instead of hanging it.
pub const SPIN_LIMIT: u32 = 400_000;

// SR bits (RM0033 §24.6.1).
const SR_PE: u32 = 1 << 0;
const SR_FE: u32 = 1 << 1;
const SR_NF: u32 = 1 << 2;
const SR_ORE: u32 = 1 << 3;
const SR_RXNE: u32 = 1 << 5;
const SR_TC: u32 = 1 << 6;
const SR_TXE: u32 = 1 << 7;

/// Why a USART call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UsartError {
    /// A byte arrived while the previous one was unread: at least one byte was lost (the
    /// caller's framing must resynchronise). Cleared when reported.
    Overrun,
    /// The transmitter (CTS held by the peer) or the receiver did not become ready within
    /// [`SPIN_LIMIT`] polls.
    TimedOut,
}

impl core::fmt::Display for UsartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Overrun => "receive overrun: bytes lost",
            Self::TimedOut => "usart not ready in time",
        })
    }
}

impl core::error::Error for UsartError {}

impl embedded_io::Error for UsartError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Overrun => ErrorKind::Other,
            Self::TimedOut => ErrorKind::TimedOut,
        }
    }
}

/// Receive errors seen so far (bytes with a framing, noise or parity flag are still
/// delivered: the modem's own framing rejects them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LineErrors {
    /// Overruns (each reported once as [`UsartError::Overrun`]).
    pub overruns: u32,
    /// Framing errors (wrong baud rate, break, a modem booting).
    pub framing: u32,
    /// Noise flags.
    pub noise: u32,
    /// Parity errors (parity is off: should stay 0).
    pub parity: u32,
}

/// The receive bookkeeping (pure): error counts, and an overrun to report after the byte
/// that was in DR when it happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RxState {
    errors: LineErrors,
    overrun_pending: bool,
}

impl RxState {
    /// Records the status `sr` read before taking byte `b` from DR; returns `b`, which is
    /// valid even with ORE set (the lost bytes came after it).
    fn record(&mut self, sr: u32, b: u8) -> u8 {
        if sr & SR_FE != 0 {
            self.errors.framing = self.errors.framing.wrapping_add(1);
        }
        if sr & SR_NF != 0 {
            self.errors.noise = self.errors.noise.wrapping_add(1);
        }
        if sr & SR_PE != 0 {
            self.errors.parity = self.errors.parity.wrapping_add(1);
        }
        if sr & SR_ORE != 0 {
            self.errors.overruns = self.errors.overruns.wrapping_add(1);
            self.overrun_pending = true;
        }
        b
    }

    /// The pending overrun, reported once.
    fn take_overrun(&mut self) -> Result<(), UsartError> {
        if core::mem::take(&mut self.overrun_pending) {
            return Err(UsartError::Overrun);
        }
        Ok(())
    }
}

/// A polled USART, 8N1, owning its peripheral `P` (`pac::USART1` / `USART2` / `USART3`).
pub struct Usart<P> {
    regs: P,
    rx: RxState,
}

impl<P: Deref<Target = Regs>> Usart<P> {
    /// Configures the USART for 8N1 at `baud` from its bus clock `pclk_hz` (APB1 for USART2/3,
    /// APB2 for USART1; `clocks::PCLK1_HZ` / `PCLK2_HZ`), with RTS/CTS hardware flow control
    /// when `rts_cts`, and enables it (TE, RE, UE). Interrupts stay off (polled driver).
    ///
    /// BRR is `pclk / baud` rounded (16× oversampling): 0x0104 for 115 200 baud at 30 MHz
    /// (+0.16 %). A `baud` of 0 is taken as 1.
    pub fn new(usart: P, pclk_hz: u32, baud: u32, rts_cts: bool) -> Self {
        let baud = baud.max(1);
        let brr = pclk_hz.saturating_add(baud / 2) / baud;
        let brr = brr.clamp(16, 0xFFFF) as u16;
        usart.cr1().reset();
        usart.cr2().reset();
        usart
            .cr3()
            .write(|w| w.rtse().bit(rts_cts).ctse().bit(rts_cts));
        usart.brr().write(|w| {
            w.div_mantissa()
                .set(brr >> 4)
                .div_fraction()
                .set((brr & 0xF) as u8)
        });
        usart
            .cr1()
            .write(|w| w.ue().enabled().te().enabled().re().enabled());
        Self {
            regs: usart,
            rx: RxState::default(),
        }
    }

    /// Receive errors counted since [`new`](Self::new).
    pub fn line_errors(&self) -> LineErrors {
        self.rx.errors
    }

    /// Disables the USART and gives the peripheral back.
    pub fn free(self) -> P {
        self.regs.cr1().reset();
        self.regs
    }

    fn sr(&self) -> u32 {
        u32::from(self.regs.sr().read().bits())
    }

    /// Takes the byte in DR after `sr` said RXNE (or ORE); reading DR after SR clears RXNE,
    /// ORE, FE, NF and PE (RM0033 §24.6.1). With ORE the byte is still valid: returned, and
    /// the overrun left pending.
    fn take(&mut self, sr: u32) -> u8 {
        let b = self.regs.dr().read().dr().bits() as u8;
        self.rx.record(sr, b)
    }

    /// Waits (bounded) until `bit` is set in SR.
    fn wait(&self, bit: u32) -> Result<(), UsartError> {
        for _ in 0..SPIN_LIMIT {
            if self.sr() & bit != 0 {
                return Ok(());
            }
        }
        Err(UsartError::TimedOut)
    }

    /// Sends one byte (bounded wait for TXE).
    ///
    /// # Errors
    /// [`UsartError::TimedOut`] when TXE stays clear (CTS held).
    pub fn write_byte(&mut self, b: u8) -> Result<(), UsartError> {
        self.wait(SR_TXE)?;
        self.regs.dr().write(|w| w.dr().set(u16::from(b)));
        Ok(())
    }

    /// The received byte if one is waiting, without waiting for one.
    ///
    /// # Errors
    /// [`UsartError::Overrun`], once per overrun, on the call after the one that returned the
    /// byte DR held when it happened (the bytes lost came after that one).
    pub fn try_read_byte(&mut self) -> Result<Option<u8>, UsartError> {
        self.rx.take_overrun()?;
        let sr = self.sr();
        if sr & (SR_RXNE | SR_ORE) == 0 {
            return Ok(None);
        }
        Ok(Some(self.take(sr)))
    }
}

impl<P> ErrorType for Usart<P> {
    type Error = UsartError;
}

impl<P: Deref<Target = Regs>> ReadReady for Usart<P> {
    /// True when a received byte (or an overrun to report) waits in the receiver.
    fn read_ready(&mut self) -> Result<bool, UsartError> {
        Ok(self.rx.overrun_pending || self.sr() & (SR_RXNE | SR_ORE) != 0)
    }
}

impl<P: Deref<Target = Regs>> Read for Usart<P> {
    /// Waits (bounded by [`SPIN_LIMIT`]) for the first byte, then returns it with the bytes
    /// that follow at once (one-byte receiver: usually 1). Call [`ReadReady::read_ready`]
    /// first, as `modem-ublox` does, and the wait is never needed.
    ///
    /// # Errors
    /// [`UsartError::TimedOut`] when nothing arrived; [`UsartError::Overrun`] (bytes lost
    /// after those returned by the previous call).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, UsartError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.rx.take_overrun()?;
        self.wait(SR_RXNE | SR_ORE)?;
        let mut n = 0;
        // Stops at an overrun: the bytes before it are returned, the error on the next call.
        while n < buf.len() && !self.rx.overrun_pending {
            match self.try_read_byte()? {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

impl<P: Deref<Target = Regs>> Write for Usart<P> {
    /// Sends `buf` byte by byte, each after a bounded wait for TXE.
    ///
    /// # Errors
    /// [`UsartError::TimedOut`] if not even the first byte could be sent (a later timeout
    /// returns the count sent so far).
    ///
    /// Cost: 10 bit times per byte (87 µs at 115 200 baud), more while CTS holds.
    fn write(&mut self, buf: &[u8]) -> Result<usize, UsartError> {
        for (i, &b) in buf.iter().enumerate() {
            if let Err(e) = self.write_byte(b) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(buf.len())
    }

    /// Waits (bounded) until the last byte has left the shift register (TC).
    fn flush(&mut self) -> Result<(), UsartError> {
        self.wait(SR_TC)
    }
}

impl<P: Deref<Target = Regs>> core::fmt::Write for Usart<P> {
    /// Console output: `\n` goes out as `\r\n`; a byte the line refuses ends the call with
    /// `fmt::Error`.
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                self.write_byte(b'\r').map_err(|_| core::fmt::Error)?;
            }
            self.write_byte(b).map_err(|_| core::fmt::Error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overrun_keeps_the_byte_in_dr_and_is_reported_after_it() {
        let mut rx = RxState::default();
        assert_eq!(rx.record(SR_RXNE, b'A'), b'A');
        assert_eq!(rx.take_overrun(), Ok(()));
        // ORE with RXNE: the byte in DR is the one before the lost ones.
        assert_eq!(rx.record(SR_RXNE | SR_ORE, b'B'), b'B');
        assert_eq!(rx.errors.overruns, 1);
        assert_eq!(rx.take_overrun(), Err(UsartError::Overrun));
        assert_eq!(rx.take_overrun(), Ok(()), "reported once");
    }

    #[test]
    fn line_errors_are_counted_and_the_byte_delivered() {
        let mut rx = RxState::default();
        assert_eq!(rx.record(SR_RXNE | SR_FE | SR_NF, 0x55), 0x55);
        assert_eq!(rx.record(SR_RXNE | SR_PE, 0x56), 0x56);
        assert_eq!(
            rx.errors,
            LineErrors {
                overruns: 0,
                framing: 1,
                noise: 1,
                parity: 1
            }
        );
        assert_eq!(rx.take_overrun(), Ok(()));
    }
}
