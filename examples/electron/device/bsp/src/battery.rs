//! The battery: the MAX17043 fuel gauge (voltage and state of charge, through the `max170xx`
//! driver) and the BQ24195 charger/power-path controller, left in safe settings.
//!
//! Both sit on I2C3 ([`crate::i2c::I2c3`]): the gauge at 0x36, the charger at 0x6B. Either
//! driver takes any embedded-hal 1.0 `I2c`, so both can share the bus through `&mut I2c3`.
//!
//! **Charger.** The BQ24195 starts with a 40 s I2C watchdog: when it expires without a
//! watchdog reset the chip returns to its power-on defaults (4.208 V, 2048 mA charge current,
//! VINDPM 4.36 V). [`pmic_safe_defaults`] first turns that watchdog off, then writes the
//! values Device OS uses on the Electron ([`PMIC_WRITES`]), each as a read-modify-write so
//! the bits it does not own are kept.
//!
//! Sources: Device OS v3.3.1 `system/src/system_power_manager.cpp` (`initDefault`
//! l.442–510, REG00 l.992–1023, gauge l.387–393), `system/inc/system_power.h` l.70–73
//! (4112 mV, 896 mA, 900 mA, 3880 mV), `wiring/src/spark_wiring_power.cpp` (the register
//! setters), `wiring/inc/spark_wiring_power.h` l.38 (0x6B), `wiring/inc/spark_wiring_fuel.h`
//! (0x36, registers); TI bq24195 datasheet (register map: REG00–REG0A, REG0A part number
//! bits `[5:3]` = 100). Research `electron-board.md` §5.

use embedded_hal::i2c::I2c;
use max170xx::Max17043;

/// The charger's 7-bit address.
pub const BQ24195_ADDR: u8 = 0x6B;
/// The fuel gauge's 7-bit address (fixed in the `max170xx` crate too).
pub const MAX17043_ADDR: u8 = 0x36;

/// REG0A (vendor / part / revision): the part number bits `[5:3]` read `100` on the
/// BQ24195 (the Electron's reads 0x23).
pub const REG0A: u8 = 0x0A;

/// One charger register write: `new = (old & !mask) | value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegWrite {
    /// The register.
    pub reg: u8,
    /// The bits this write owns.
    pub mask: u8,
    /// Their new value (inside `mask`).
    pub value: u8,
}

impl RegWrite {
    /// The register's new value from its `old` one.
    pub const fn apply(&self, old: u8) -> u8 {
        (old & !self.mask) | (self.value & self.mask)
    }
}

/// The charger settings [`pmic_safe_defaults`] writes, in order:
///
/// | reg | bits | value | meaning |
/// |---|---|---|---|
/// | REG05 | `[5:4]` = 00, `[3]` = 1, `[0]` = 0 | `0x08` of `0x39` | **I2C watchdog off first**; charge safety timer on (Device OS `disableWatchdog`: AND 0xCE) |
/// | REG04 | VREG `[7:2]` = 100110, VRECHG `[0]` = 0 | `0x98` of `0xFD` | charge voltage 3504 + 38 × 16 = **4112 mV**, recharge 100 mV below; BATLOWV kept |
/// | REG02 | ICHG `[7:2]` = 000110, FORCE_20PCT `[0]` = 0 | `0x18` of `0xFD` | charge current 512 + 6 × 64 = **896 mA** |
/// | REG03 | ITERM `[3:0]` = 0001 | `0x01` of `0x0F` | termination 128 + 1 × 128 = 256 mA; precharge kept |
/// | REG00 | EN_HIZ `[7]` = 0, VINDPM `[6:3]` = 0000, IINLIM `[2:0]` = 011 | `0x03` of `0xFF` | input on, VINDPM **3880 mV**, input limit **900 mA**; on a USB host port (REG08 VBUS_STAT = 01) IINLIM is left as the chip's D+/D− detection set it ([`for_input`]) |
/// | REG01 | REG_RESET `[7]` = 0, WD reset `[6]` = 0, CHG_CONFIG `[5:4]` = 01 | `0x10` of `0xF0` | charging on; boost/sys-min kept |
/// | REG07 | BATFET_DISABLE `[5]` = 0 | `0x00` of `0x20` | battery FET on |
pub const PMIC_WRITES: [RegWrite; 7] = [
    RegWrite {
        reg: 0x05,
        mask: 0x39,
        value: 0x08,
    },
    RegWrite {
        reg: 0x04,
        mask: 0xFD,
        value: 0x98,
    },
    RegWrite {
        reg: 0x02,
        mask: 0xFD,
        value: 0x18,
    },
    RegWrite {
        reg: 0x03,
        mask: 0x0F,
        value: 0x01,
    },
    RegWrite {
        reg: 0x00,
        mask: 0xFF,
        value: 0x03,
    },
    RegWrite {
        reg: 0x01,
        mask: 0xF0,
        value: 0x10,
    },
    RegWrite {
        reg: 0x07,
        mask: 0x20,
        value: 0x00,
    },
];

/// REG08, the system status: VBUS_STAT `[7:6]` (00 none/unknown, 01 USB host, 10 adapter,
/// 11 OTG).
pub const REG08: u8 = 0x08;

/// `w` adjusted to the input source read from [`REG08`]: on a USB host port (VBUS_STAT 01) the
/// REG00 write keeps IINLIM (the chip's D+/D− detection chose it: 500 mA on a standard port,
/// more is not the host's to give), as Device OS only sets 900 mA on VIN power
/// (`system_power_manager.cpp` l.992–1023). Every other write is returned as it is.
pub const fn for_input(w: RegWrite, reg08: u8) -> RegWrite {
    if w.reg == 0x00 && reg08 >> 6 == 0b01 {
        RegWrite {
            reg: w.reg,
            mask: w.mask & !0x07,
            value: w.value & !0x07,
        }
    } else {
        w
    }
}

/// A charger set-up that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PmicError<E> {
    /// The bus failed (NACK: no charger at 0x6B).
    I2c(E),
    /// REG0A's part number is not the BQ24195's: nothing was written.
    UnknownPart(u8),
    /// A register read back differently after its write.
    Verify {
        /// The register.
        reg: u8,
        /// What it read.
        read: u8,
    },
}

impl<E: core::fmt::Debug> core::fmt::Display for PmicError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::I2c(e) => write!(f, "charger I2C error: {e:?}"),
            Self::UnknownPart(v) => write!(f, "not a BQ24195 (REG0A {v:#04x})"),
            Self::Verify { reg, read } => {
                write!(f, "charger REG{reg:02X} read back {read:#04x}")
            }
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for PmicError<E> {}

fn read_reg<I: I2c>(i2c: &mut I, reg: u8) -> Result<u8, PmicError<I::Error>> {
    let mut b = [0u8];
    i2c.write_read(BQ24195_ADDR, &[reg], &mut b)
        .map_err(PmicError::I2c)?;
    Ok(b[0])
}

/// Puts the BQ24195 in the settings of [`PMIC_WRITES`] (watchdog off first), each a
/// read-modify-write of one register, checked by reading it back (except the REG01 bits
/// that read as 0 after they act, which the check masks out).
///
/// Cost: REG0A and REG08 reads, then per register one read, one write and one read back: 23
/// transfers of 2–3 bytes, about 6 ms at 100 kHz.
///
/// # Errors
/// [`PmicError::UnknownPart`] before any write; [`PmicError::I2c`] or [`PmicError::Verify`]
/// (the writes before it stay).
pub fn pmic_safe_defaults<I: I2c>(i2c: &mut I) -> Result<(), PmicError<I::Error>> {
    let part = read_reg(i2c, REG0A)?;
    if part & 0x38 != 0x20 {
        return Err(PmicError::UnknownPart(part));
    }
    let source = read_reg(i2c, REG08)?;
    for w in PMIC_WRITES {
        let w = for_input(w, source);
        let old = read_reg(i2c, w.reg)?;
        let new = w.apply(old);
        i2c.write(BQ24195_ADDR, &[w.reg, new])
            .map_err(PmicError::I2c)?;
        let read = read_reg(i2c, w.reg)?;
        // REG01 [7:6] are self-clearing (register reset, watchdog reset).
        let check = if w.reg == 0x01 { 0x3F } else { 0xFF };
        if read & check != new & check {
            return Err(PmicError::Verify { reg: w.reg, read });
        }
    }
    Ok(())
}

/// A fuel-gauge read that failed: the `max170xx` error (I2C, or invalid data).
pub type GaugeError<E> = max170xx::Error<E>;

/// The MAX17043's CONFIG register: RCOMP (high byte), then SLEEP (bit 7), ALRT (bit 5) and
/// ATHD (bits 4:0) in the low byte (`spark_wiring_fuel.h`: CONFIG 0x0C).
pub const GAUGE_CONFIG: u8 = 0x0C;
/// CONFIG low byte: the sleep bit.
pub const GAUGE_SLEEP: u8 = 0x80;

/// CONFIG's low byte with the sleep bit set (`sleep`) or cleared, the other bits kept.
pub const fn gauge_config_low(low: u8, sleep: bool) -> u8 {
    if sleep {
        low | GAUGE_SLEEP
    } else {
        low & !GAUGE_SLEEP
    }
}

/// The MAX17043 fuel gauge. Owns the bus handle (`&mut I2c3` to share I2C3 with the charger);
/// reads go through the `max170xx` driver.
#[derive(Debug)]
pub struct FuelGauge<I2C> {
    i2c: I2C,
}

/// Millivolts from the `max170xx` crate's volts (VCELL: 12 bits of 1.25 mV), rounded to
/// the nearest mV, saturating (and 0 for NaN).
pub fn volts_to_mv(v: f32) -> u16 {
    let mv = v * 1000.0 + 0.5;
    // `as` saturates (and maps NaN to 0).
    mv as u16
}

impl<I2C: I2c> FuelGauge<I2C> {
    /// Wraps the bus; no transfer.
    pub fn new(i2c: I2C) -> Self {
        Self { i2c }
    }

    fn gauge(&mut self) -> Max17043<&mut I2C> {
        Max17043::new(&mut self.i2c)
    }

    /// The cell voltage in millivolts (VCELL, 1.25 mV resolution).
    ///
    /// Cost: one register read (4 bytes on the bus, about 0.5 ms).
    ///
    /// # Errors
    /// [`GaugeError`] (the gauge did not answer).
    pub fn battery_mv(&mut self) -> Result<u16, GaugeError<I2C::Error>> {
        Ok(volts_to_mv(self.gauge().voltage()?))
    }

    /// The state of charge in whole percent (the ModelGauge estimate; it needs some minutes
    /// of operation after a power-on to settle), saturating at 100.
    ///
    /// # Errors
    /// [`GaugeError`].
    pub fn soc_percent(&mut self) -> Result<u8, GaugeError<I2C::Error>> {
        let soc = self.gauge().soc()?;
        Ok(if soc >= 100.0 { 100 } else { soc as u8 })
    }

    /// Puts the gauge to sleep (CONFIG's SLEEP bit): under 1 µA typical instead of about
    /// 50 µA active (MAX17043 datasheet, supply current), which dominates the STM32's few µA
    /// in STANDBY. Device OS does the same before its deep sleep (research §4). The gauge stops
    /// tracking the state of charge until [`wake`](Self::wake); a voltage read right after a
    /// wake may still be the one from before the sleep until the next conversion.
    ///
    /// Cost: one register read and one write (7 bytes on the bus).
    ///
    /// # Errors
    /// [`GaugeError`].
    pub fn sleep(&mut self) -> Result<(), GaugeError<I2C::Error>> {
        self.update_config(true)
    }

    /// Wakes the gauge (clears CONFIG's SLEEP bit), as Device OS does at boot.
    ///
    /// # Errors
    /// [`GaugeError`].
    pub fn wake(&mut self) -> Result<(), GaugeError<I2C::Error>> {
        self.update_config(false)
    }

    fn update_config(&mut self, sleep: bool) -> Result<(), GaugeError<I2C::Error>> {
        let mut b = [0u8; 2];
        self.i2c
            .write_read(MAX17043_ADDR, &[GAUGE_CONFIG], &mut b)
            .map_err(max170xx::Error::I2C)?;
        let low = gauge_config_low(b[1], sleep);
        self.i2c
            .write(MAX17043_ADDR, &[GAUGE_CONFIG, b[0], low])
            .map_err(max170xx::Error::I2C)
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use embedded_hal::i2c::{ErrorKind, ErrorType, NoAcknowledgeSource, Operation};
    use std::vec::Vec;

    /// A strict fake of the bus with a BQ24195 (8-bit registers) and a MAX17043 (16-bit
    /// registers) on it: a write of `[reg]` sets the register pointer, a write of
    /// `[reg, data…]` writes, a read returns from the pointer; any other address NACKs.
    struct Bus {
        bq: [u8; 11],
        gauge: [u16; 256],
        /// A BQ register that ignores writes (to test the read-back check).
        stuck: Option<u8>,
        writes: Vec<(u8, u8, Vec<u8>)>,
        pointer: u8,
    }

    impl Bus {
        fn new() -> Self {
            let mut bq = [0u8; 11];
            bq[..8].copy_from_slice(&POR);
            bq[0x08] = 0x84; // adapter, power good
            bq[0x0A] = 0x23;
            let mut gauge = [0u16; 256];
            gauge[0x02] = 0xC350;
            gauge[0x04] = 0x5A80;
            gauge[GAUGE_CONFIG as usize] = 0x971C;
            Self {
                bq,
                gauge,
                stuck: None,
                writes: Vec::new(),
                pointer: 0,
            }
        }
    }

    impl ErrorType for Bus {
        type Error = ErrorKind;
    }

    impl I2c for Bus {
        fn transaction(&mut self, addr: u8, ops: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
            if addr != BQ24195_ADDR && addr != MAX17043_ADDR {
                return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
            }
            for op in ops {
                match op {
                    Operation::Write(b) => {
                        self.pointer = b[0];
                        if b.len() > 1 {
                            self.writes.push((addr, b[0], b[1..].to_vec()));
                            if addr == BQ24195_ADDR {
                                if self.stuck != Some(b[0]) {
                                    self.bq[b[0] as usize] = b[1];
                                }
                            } else {
                                self.gauge[b[0] as usize] = u16::from_be_bytes([b[1], b[2]]);
                            }
                        }
                    }
                    Operation::Read(buf) => {
                        if addr == BQ24195_ADDR {
                            buf[0] = self.bq[self.pointer as usize];
                        } else {
                            let v = self.gauge[self.pointer as usize].to_be_bytes();
                            buf.copy_from_slice(&v[..buf.len()]);
                        }
                    }
                }
            }
            Ok(())
        }
    }

    #[test]
    fn pmic_defaults_write_the_watchdog_first_then_the_table() {
        let mut bus = Bus::new();
        assert_eq!(pmic_safe_defaults(&mut bus), Ok(()));
        let regs: Vec<u8> = bus.writes.iter().map(|w| w.1).collect();
        assert_eq!(regs, [0x05, 0x04, 0x02, 0x03, 0x00, 0x01, 0x07]);
        assert_eq!(bus.bq[..8], after_writes());
    }

    #[test]
    fn pmic_defaults_refuse_another_part_and_report_a_register_that_does_not_take() {
        let mut bus = Bus::new();
        bus.bq[0x0A] = 0x0B; // part number 001
        assert_eq!(
            pmic_safe_defaults(&mut bus),
            Err(PmicError::UnknownPart(0x0B))
        );
        assert!(bus.writes.is_empty(), "nothing written to an unknown part");

        let mut bus = Bus::new();
        bus.stuck = Some(0x02);
        assert_eq!(
            pmic_safe_defaults(&mut bus),
            Err(PmicError::Verify {
                reg: 0x02,
                read: POR[2]
            })
        );
    }

    #[test]
    fn no_charger_is_an_i2c_error() {
        struct Nack;
        impl ErrorType for Nack {
            type Error = ErrorKind;
        }
        impl I2c for Nack {
            fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
                Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address))
            }
        }
        assert_eq!(
            pmic_safe_defaults(&mut Nack),
            Err(PmicError::I2c(ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Address
            )))
        );
    }

    #[test]
    fn the_gauge_reads_millivolts_and_percent_and_sleeps() {
        let mut bus = Bus::new();
        let mut gauge = FuelGauge::new(&mut bus);
        // VCELL 0xC350: 3125 × 1.25 mV.
        assert_eq!(gauge.battery_mv().ok(), Some(3906));
        // SOC 0x5A80: 90.5 %.
        assert_eq!(gauge.soc_percent().ok(), Some(90));
        assert!(gauge.sleep().is_ok());
        assert_eq!(bus.gauge[GAUGE_CONFIG as usize], 0x979C);
        let mut gauge = FuelGauge::new(&mut bus);
        assert!(gauge.wake().is_ok());
        assert_eq!(bus.gauge[GAUGE_CONFIG as usize], 0x971C);
    }

    /// BQ24195 power-on register values (TI datasheet, register map).
    const POR: [u8; 8] = [0x30, 0x1B, 0x60, 0x11, 0xB2, 0x9A, 0x03, 0x4B];

    fn after_writes() -> [u8; 8] {
        let mut regs = POR;
        for w in PMIC_WRITES {
            regs[w.reg as usize] = w.apply(regs[w.reg as usize]);
        }
        regs
    }

    #[test]
    fn the_watchdog_is_written_first_and_turned_off() {
        assert_eq!(PMIC_WRITES[0].reg, 0x05);
        let r = after_writes();
        assert_eq!((r[5] >> 4) & 0b11, 0, "WATCHDOG");
        assert_eq!(r[5] & 1 << 3, 1 << 3, "EN_TIMER");
        // Device OS's AND with 0xCE gives the same bits for the power-on value.
        assert_eq!(r[5], POR[5] & 0xCE | 0x08);
    }

    #[test]
    fn charge_settings_decode_to_the_device_os_values() {
        let r = after_writes();
        assert_eq!(3504 + 16 * (r[4] >> 2) as u32, 4112, "VREG");
        assert_eq!(r[4] & 1, 0, "VRECHG 100 mV");
        assert_eq!(r[4] & 2, POR[4] & 2, "BATLOWV kept");
        assert_eq!(512 + 64 * (r[2] >> 2) as u32, 896, "ICHG");
        assert_eq!(128 + 128 * (r[3] & 0xF) as u32, 256, "ITERM");
        assert_eq!(r[3] >> 4, POR[3] >> 4, "IPRECHG kept");
        assert_eq!(3880 + 80 * ((r[0] >> 3) & 0xF) as u32, 3880, "VINDPM");
        assert_eq!(r[0] & 0x7, 0b011, "IINLIM 900 mA");
        assert_eq!(r[0] & 0x80, 0, "HIZ off");
        assert_eq!((r[1] >> 4) & 0b11, 0b01, "CHG_CONFIG charge");
        assert_eq!(r[1] & 0x0F, POR[1] & 0x0F, "SYS_MIN, BOOST_LIM kept");
        assert_eq!(r[7] & 0x20, 0, "BATFET on");
        assert_eq!(r[6], POR[6], "REG06 untouched");
    }

    #[test]
    fn on_a_usb_host_the_input_limit_is_left_to_the_chip() {
        let reg00 = PMIC_WRITES[4];
        assert_eq!(reg00.reg, 0x00);
        // USB host (VBUS_STAT 01, with power-good and other bits set): IINLIM kept.
        let usb = for_input(reg00, 0b0100_0100);
        assert_eq!(usb.apply(0b0011_0010), 0b0000_0010);
        // Adapter (10) or unknown (00): 900 mA.
        assert_eq!(for_input(reg00, 0b1000_0100).apply(0x32), 0x03);
        assert_eq!(for_input(reg00, 0).apply(0x32), 0x03);
        // Other registers are not touched by the source.
        assert_eq!(for_input(PMIC_WRITES[0], 0b0100_0000), PMIC_WRITES[0]);
    }

    #[test]
    fn values_stay_inside_their_masks() {
        for w in PMIC_WRITES {
            assert_eq!(w.value & !w.mask, 0, "REG{:02X}", w.reg);
        }
    }

    #[test]
    fn the_gauge_sleep_bit_keeps_the_alert_settings() {
        // Power-on CONFIG: RCOMP 0x97, low byte 0x1C (ATHD 4 %).
        assert_eq!(gauge_config_low(0x1C, true), 0x9C);
        assert_eq!(gauge_config_low(0x9C, false), 0x1C);
        assert_eq!(gauge_config_low(0x3F, true), 0xBF);
    }

    #[test]
    fn volts_round_to_millivolts() {
        // VCELL 0xC350 >> 4 = 3125 × 1.25 mV = 3906.25 mV.
        assert_eq!(volts_to_mv(3125.0 / 800.0), 3906);
        assert_eq!(volts_to_mv(0.0), 0);
        assert_eq!(volts_to_mv(f32::NAN), 0);
        assert_eq!(volts_to_mv(100.0), u16::MAX);
        assert_eq!(volts_to_mv(-1.0), 0);
    }
}
