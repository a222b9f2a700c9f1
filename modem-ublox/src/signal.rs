//! Signal quality: `AT+CSQ` (every family) and `AT+CESQ` (R4/R5, LTE RSRP/RSRQ).

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::error::AtError;
use crate::fields::Fields;
use crate::modem::Modem;

/// `AT+CSQ` → `+CSQ: <rssi>,<qual>` (3GPP TS 27.007 §8.5), the values as the modem gave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct SignalQuality {
    /// Received signal strength, 0–31 (−113 to −51 dBm in 2 dB steps), 99 = not known.
    pub rssi: u8,
    /// Signal quality (bit error rate class on 2G/3G), 0–7, 99 = not known.
    pub qual: u8,
}

impl SignalQuality {
    /// `rssi` in dBm (−113 … −51), `None` when not known.
    pub fn rssi_dbm(&self) -> Option<i16> {
        (self.rssi <= 31).then(|| -113 + 2 * i16::from(self.rssi))
    }

    fn parse(r: &[u8]) -> Option<Self> {
        let mut f = Fields::new(r);
        let rssi = u8::try_from(f.int()?).ok()?;
        let qual = u8::try_from(f.int()?).ok()?;
        ((rssi <= 31 || rssi == 99) && (qual <= 7 || qual == 99)).then_some(Self { rssi, qual })
    }
}

/// `AT+CESQ` → `+CESQ: <rxlev>,<ber>,<rscp>,<ecn0>,<rsrq>,<rsrp>` (3GPP TS 27.007 §8.69), the
/// values as the modem gave them. Only the fields of the serving cell's technology are known:
/// on LTE `rsrq` and `rsrp`, the others are 99 / 255. Built with `sara-r4` or `sara-r5`.
#[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ExtendedSignalQuality {
    /// 2G received level, 0–63, 99 = not known.
    pub rxlev: u8,
    /// 2G bit error rate class, 0–7, 99 = not known.
    pub ber: u8,
    /// 3G received signal code power, 0–96, 255 = not known.
    pub rscp: u8,
    /// 3G Ec/N0, 0–49, 255 = not known.
    pub ecn0: u8,
    /// LTE reference signal received quality, 0–34 (−19.5 to −3 dB in 0.5 dB steps), 255 = not
    /// known.
    pub rsrq: u8,
    /// LTE reference signal received power, 0–97 (−140 to −44 dBm in 1 dB steps), 255 = not
    /// known.
    pub rsrp: u8,
}

#[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
impl ExtendedSignalQuality {
    /// `rsrp` in dBm (−141 means below −140, −44 means −44 or more), `None` when not known.
    pub fn rsrp_dbm(&self) -> Option<i16> {
        (self.rsrp <= 97).then(|| i16::from(self.rsrp) - 141)
    }

    /// `rsrq` in tenths of a dB (−200 means below −19.5 dB, −30 means −3 dB or more), `None`
    /// when not known.
    pub fn rsrq_tenth_db(&self) -> Option<i16> {
        (self.rsrq <= 34).then(|| -200 + 5 * i16::from(self.rsrq))
    }

    fn parse(r: &[u8]) -> Option<Self> {
        let mut f = Fields::new(r);
        let mut v = [0u8; 6];
        for x in &mut v {
            *x = u8::try_from(f.int()?).ok()?;
        }
        let [rxlev, ber, rscp, ecn0, rsrq, rsrp] = v;
        let ok = (rxlev <= 63 || rxlev == 99)
            && (ber <= 7 || ber == 99)
            && (rscp <= 96 || rscp == 255)
            && (ecn0 <= 49 || ecn0 == 255)
            && (rsrq <= 34 || rsrq == 255)
            && (rsrp <= 97 || rsrp == 255);
        ok.then_some(Self {
            rxlev,
            ber,
            rscp,
            ecn0,
            rsrq,
            rsrp,
        })
    }
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    /// Signal strength and quality (`AT+CSQ`). Before registration the modem answers
    /// `99,99` (not known).
    ///
    /// Cost: one exchange (about 25 bytes each way), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is missing, malformed or out of
    /// range.
    pub fn signal_quality(&mut self) -> Result<SignalQuality, AtError> {
        let t = self.timeouts().query;
        self.ask_parse(b"AT+CSQ\r\n", t, b"+CSQ:", SignalQuality::parse)
    }

    /// R4/R5: extended signal quality (`AT+CESQ`), with the LTE RSRP and RSRQ that `+CSQ`
    /// does not give.
    ///
    /// Cost: one exchange (about 40 bytes each way), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is missing, malformed or out of
    /// range.
    #[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
    pub fn extended_signal_quality(&mut self) -> Result<ExtendedSignalQuality, AtError> {
        let t = self.timeouts().query;
        self.ask_parse(b"AT+CESQ\r\n", t, b"+CESQ:", ExtendedSignalQuality::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csq_ranges() {
        let q = SignalQuality::parse(b"17,99").unwrap();
        assert_eq!((q.rssi, q.qual, q.rssi_dbm()), (17, 99, Some(-79)));
        assert_eq!(SignalQuality::parse(b"99,99").unwrap().rssi_dbm(), None);
        for bad in [&b"32,0"[..], b"5,8", b"5", b"", b"-1,0", b"5,,", b"300,0"] {
            assert_eq!(SignalQuality::parse(bad), None, "{bad:?}");
        }
    }

    #[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
    #[test]
    fn cesq_ranges() {
        let e = ExtendedSignalQuality::parse(b"99,99,255,255,20,44").unwrap();
        assert_eq!(e.rsrp_dbm(), Some(-97));
        assert_eq!(e.rsrq_tenth_db(), Some(-100));
        let none = ExtendedSignalQuality::parse(b"99,99,255,255,255,255").unwrap();
        assert_eq!((none.rsrp_dbm(), none.rsrq_tenth_db()), (None, None));
        for bad in [
            &b"99,99,255,255,35,44"[..],
            b"99,99,255,255,20,98",
            b"99,99,255,255,20",
            b"64,99,255,255,20,44",
        ] {
            assert_eq!(ExtendedSignalQuality::parse(bad), None);
        }
    }
}
