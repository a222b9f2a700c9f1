//! R4/R5 (LTE-M / NB-IoT) settings a battery device tunes: the mobile network operator
//! profile (`AT+UMNOPROF`), band masks (`AT+UBANDMASK`), and the PSM and eDRX values it
//! requested (`AT+CPSMS?`, `AT+CEDRXS`). Built only with `sara-r4` or `sara-r5`.
//!
//! The settings are stored in the module's non-volatile memory. Most take effect only after a
//! reboot and must be made while deregistered: `AT+COPS=2` or `AT+CFUN=0` first (with
//! [`Modem::command`]), [`Modem::soft_reset`] after.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::cmd::Cmd;
use crate::error::AtError;
use crate::fields::{parse_u32, parse_u64, Fields};
use crate::modem::Modem;
use crate::network::{bits8, PsmTimers};

/// The radio access technology a band mask is for (`<rat>` of `AT+UBANDMASK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Rat {
    /// LTE Cat M1 (`0`).
    LteM,
    /// NB-IoT (`1`).
    NbIot,
}

/// The band masks of `AT+UBANDMASK?`: bit `n - 1` set = band `n` enabled. `[0]` holds bands
/// 1–64, `[1]` bands 65–128 (0 when the firmware reports one mask per technology). `None` for
/// a technology the module does not report (R510: no NB-IoT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct BandMasks {
    /// LTE Cat M1.
    pub lte_m: Option<[u64; 2]>,
    /// NB-IoT.
    pub nb_iot: Option<[u64; 2]>,
}

impl BandMasks {
    /// `<rat>,<mask>[,<mask>]` once or twice: 2 or 3 numbers per technology, told apart by
    /// the count (2, 3, 4 or 6 numbers), as the answer has no other delimiter.
    fn parse(r: &[u8]) -> Option<Self> {
        let mut v = [0u64; 6];
        let mut n = 0;
        for field in Fields::new(r) {
            *v.get_mut(n)? = parse_u64(field)?;
            n += 1;
        }
        let per = match n {
            2 | 4 => 2,
            3 | 6 => 3,
            _ => return None,
        };
        let mut out = Self::default();
        for group in v[..n].chunks_exact(per) {
            let masks = [group[1], if per == 3 { group[2] } else { 0 }];
            let slot = match group[0] {
                0 => &mut out.lte_m,
                1 => &mut out.nb_iot,
                _ => return None,
            };
            if slot.replace(masks).is_some() {
                return None;
            }
        }
        Some(out)
    }
}

/// One `+CEDRXS: <AcT-type>,"<cycle>"` line.
fn edrx_line(r: &[u8]) -> Option<(u32, [u8; 4])> {
    let mut f = Fields::new(r);
    let act = parse_u32(f.next()?)?;
    let cycle = f.quoted()?;
    if cycle.len() != 4 || !cycle.iter().all(|&c| c == b'0' || c == b'1') {
        return None;
    }
    let mut out = [0u8; 4];
    out.copy_from_slice(cycle);
    Some((act, out))
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    /// R4/R5: the mobile network operator profile (`AT+UMNOPROF?` → `+UMNOPROF: <n>`; e.g.
    /// 0 undefined/SIM-selected, 1 SIM ICCID select, 2 AT&T, 3 Verizon, 100 standard Europe,
    /// 90 global — see the module's AT manual).
    ///
    /// Cost: one exchange (about 30 bytes each way), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is malformed.
    pub fn mno_profile(&mut self) -> Result<u8, AtError> {
        let t = self.timeouts().query;
        self.ask_parse(b"AT+UMNOPROF?\r\n", t, b"+UMNOPROF:", |r| {
            u8::try_from(Fields::new(r).int()?).ok()
        })
    }

    /// R4/R5: select a mobile network operator profile (`AT+UMNOPROF=<n>`). Deregister first
    /// (`AT+CFUN=0`; the module refuses otherwise, `Cme(3)`) and reboot after
    /// ([`soft_reset`](Self::soft_reset)); the profile resets the band masks and PSM/eDRX
    /// defaults to the operator's.
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange.
    pub fn set_mno_profile(&mut self, profile: u8) -> Result<(), AtError> {
        let mut c = Cmd::new("AT+UMNOPROF=");
        c.num(u32::from(profile));
        let t = self.timeouts().query;
        self.simple(c.finish()?, t)
    }

    /// R4/R5: the enabled bands (`AT+UBANDMASK?`).
    ///
    /// Cost: one exchange (about 60 bytes in), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is malformed (a count of numbers
    /// other than 2, 3, 4 or 6, a technology other than 0 or 1, a number over `u64::MAX`).
    pub fn band_masks(&mut self) -> Result<BandMasks, AtError> {
        let t = self.timeouts().query;
        self.ask_parse(b"AT+UBANDMASK?\r\n", t, b"+UBANDMASK:", BandMasks::parse)
    }

    /// R4/R5: enable exactly the bands of `bands_1_64` (bit `n - 1` = band `n`) for `rat`
    /// (`AT+UBANDMASK=<rat>,<mask>`). Fewer bands make the first registration after a wake
    /// much shorter. Deregister first (`AT+CFUN=0`) and reboot after
    /// ([`soft_reset`](Self::soft_reset)), as for [`set_mno_profile`](Self::set_mno_profile).
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError::InvalidArgument`] for an empty mask; [`AtError`] of the exchange (the module
    /// refuses bands it does not support).
    pub fn set_band_mask(&mut self, rat: Rat, bands_1_64: u64) -> Result<(), AtError> {
        if bands_1_64 == 0 {
            return Err(AtError::InvalidArgument);
        }
        let mut c = Cmd::new(match rat {
            Rat::LteM => "AT+UBANDMASK=0,",
            Rat::NbIot => "AT+UBANDMASK=1,",
        });
        c.num64(bands_1_64);
        let t = self.timeouts().query;
        self.simple(c.finish()?, t)
    }

    /// R4/R5: the PSM setting requested with [`set_psm`](Self::set_psm) (`AT+CPSMS?`), `None`
    /// when PSM is off. What the network granted is [`psm_assigned`](Self::psm_assigned)
    /// (R410M/R412M).
    ///
    /// Cost: one exchange (about 45 bytes in), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is malformed (a mode other than
    /// 0 or 1, PSM on without two 8-bit timers).
    pub fn psm_requested(&mut self) -> Result<Option<PsmTimers>, AtError> {
        let t = self.timeouts().query;
        self.ask_parse(b"AT+CPSMS?\r\n", t, b"+CPSMS:", |r| {
            let mut f = Fields::new(r);
            match f.int()? {
                0 => Some(None),
                1 => {
                    f.next()?;
                    f.next()?;
                    let tau = bits8(f.quoted()?)?;
                    let active_time = bits8(f.quoted()?)?;
                    Some(Some(PsmTimers {
                        mode: 1,
                        tau,
                        active_time,
                    }))
                }
                _ => None,
            }
        })
    }

    /// R4/R5: request eDRX for an access technology (`AT+CEDRXS=1,<act>,"<cycle>"`): `act`
    /// is the 3GPP TS 27.007 AcT-type (4 LTE-M, 5 NB-IoT), `cycle` the requested eDRX value,
    /// 4 characters of `0`/`1` (TS 24.008 table 10.5.5.32, e.g. `"0101"` = 81.92 s on
    /// LTE-M). Disable it with [`disable_edrx`](Self::disable_edrx).
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError::InvalidArgument`] unless `cycle` is 4 characters of `0`/`1`; [`AtError`] of
    /// the exchange.
    pub fn set_edrx(&mut self, act: u8, cycle: &str) -> Result<(), AtError> {
        let b = cycle.as_bytes();
        if b.len() != 4 || !b.iter().all(|&c| c == b'0' || c == b'1') {
            return Err(AtError::InvalidArgument);
        }
        let mut c = Cmd::new("AT+CEDRXS=1,");
        c.num(u32::from(act)).comma().quoted(cycle);
        let t = self.timeouts().query;
        self.simple(c.finish()?, t)
    }

    /// R4/R5: the eDRX cycle requested for AcT-type `act` (`AT+CEDRXS?`, one
    /// `+CEDRXS: <act>,"<cycle>"` line per technology), `None` when none is requested for it
    /// (R410 answers a bare `+CEDRXS:` when eDRX is off). The R510 reports eDRX off as
    /// `+CEDRXS: 4,"0000"` (research notes), which reads as `Some(*b"0000")`.
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the line for `act` is malformed.
    pub fn edrx_requested(&mut self, act: u8) -> Result<Option<[u8; 4]>, AtError> {
        let t = self.timeouts().query;
        let mut found: Option<Option<[u8; 4]>> = None;
        let r = self.ask(b"AT+CEDRXS?\r\n", t, b"+CEDRXS:", &mut |rest| {
            let mine = Fields::new(rest).next().and_then(parse_u32) == Some(u32::from(act));
            if mine {
                found = Some(edrx_line(rest).map(|(_, c)| c));
            }
            mine
        });
        match (r, found) {
            (Ok(()), Some(Some(cycle))) => Ok(Some(cycle)),
            (Ok(()), _) => Err(AtError::Unexpected),
            // No line for `act`: nothing requested.
            (Err(AtError::Unexpected), _) => Ok(None),
            (Err(e), _) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_mask_shapes() {
        let m = BandMasks::parse(b"0,6170,1,524420").unwrap();
        assert_eq!(m.lte_m, Some([6170, 0]));
        assert_eq!(m.nb_iot, Some([524420, 0]));
        let m = BandMasks::parse(b"0,185473183,0,1,185473183,0").unwrap();
        assert_eq!(
            (m.lte_m, m.nb_iot),
            (Some([185473183, 0]), Some([185473183, 0]))
        );
        let m = BandMasks::parse(b"0,18446744073709551615,1").unwrap();
        assert_eq!((m.lte_m, m.nb_iot), (Some([u64::MAX, 1]), None));
        for bad in [
            &b"0,6170,0,6170"[..],
            b"2,6170",
            b"0",
            b"",
            b"0,6170,1,2,3,4,5",
            b"0,18446744073709551616",
            b"0,-1",
        ] {
            assert_eq!(BandMasks::parse(bad), None, "{bad:?}");
        }
        // "0,6170,1" has three numbers: one technology with two masks, and 6170 is not a RAT.
        assert_eq!(
            BandMasks::parse(b"1,6170,1").map(|m| m.nb_iot),
            Some(Some([6170, 1]))
        );
    }

    #[test]
    fn edrx_lines() {
        assert_eq!(edrx_line(br#"4,"0101""#), Some((4, *b"0101")));
        assert_eq!(edrx_line(br#"4,"010""#), None);
        assert_eq!(edrx_line(br#"4,"0102""#), None);
        assert_eq!(edrx_line(b""), None);
    }
}
