//! The modem's clock, set from the network (`AT+CCLK?`).

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::error::AtError;
use crate::fields::{parse_u32, unquote};
use crate::modem::Modem;

/// Local date and time from `+CCLK: "yy/MM/dd,hh:mm:ss±zz"` (3GPP TS 27.007 §8.15), with the
/// offset from UTC in quarters of an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct NetworkTime {
    /// 2000–2099.
    pub year: u16,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
    /// Local time minus UTC, in quarters of an hour (−96 … 96); 0 when the modem gave none.
    pub utc_offset_quarters: i8,
}

impl NetworkTime {
    /// Seconds since 1970-01-01 00:00:00 UTC (the local time minus its offset).
    pub fn unix_seconds(&self) -> u32 {
        // Days since 1970-01-01 of the civil date (years 2000–2099: every 4th is a leap year).
        const CUM: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let y = u32::from(self.year);
        let m = usize::from(self.month.clamp(1, 12)) - 1;
        let mut days = (y - 1970) * 365 + (y - 1969) / 4 + u32::from(CUM[m]);
        if y % 4 == 0 && m >= 2 {
            days += 1;
        }
        days += u32::from(self.day) - 1;
        let local = days * 86_400
            + u32::from(self.hour) * 3_600
            + u32::from(self.minute) * 60
            + u32::from(self.second);
        let offset = i32::from(self.utc_offset_quarters) * 900;
        local.wrapping_sub(offset as u32)
    }

    /// Parse the quoted `+CCLK` argument; `None` unless every field is in range.
    fn parse(r: &[u8]) -> Option<Self> {
        let s = unquote(r)?;
        // yy/MM/dd,hh:mm:ss then an optional ±zz.
        let (dt, tz) = match s.get(17) {
            None if s.len() == 17 => (s, 0i8),
            Some(&sign @ (b'+' | b'-')) => {
                let q = i8::try_from(parse_u32(s.get(18..)?)?).ok()?;
                if q > 96 {
                    return None;
                }
                (&s[..17], if sign == b'-' { -q } else { q })
            }
            _ => return None,
        };
        let two = |i: usize, sep: Option<u8>| -> Option<u8> {
            if let Some(c) = sep {
                if dt.get(i + 2) != Some(&c) {
                    return None;
                }
            }
            u8::try_from(parse_u32(dt.get(i..i + 2)?)?).ok()
        };
        let t = Self {
            year: 2000 + u16::from(two(0, Some(b'/'))?),
            month: two(3, Some(b'/'))?,
            day: two(6, Some(b','))?,
            hour: two(9, Some(b':'))?,
            minute: two(12, Some(b':'))?,
            second: two(15, None)?,
            utc_offset_quarters: tz,
        };
        let ok = (1..=12).contains(&t.month)
            && (1..=31).contains(&t.day)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60;
        ok.then_some(t)
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
    /// The modem's clock (`AT+CCLK?`). It holds network time only once the network sent it
    /// (NITZ, not every network does) and automatic time zone update is on (`AT+CTZU=1`, send
    /// it once with [`command`](Self::command)); before that it runs from the module's default
    /// date, so check the year before trusting it.
    ///
    /// Cost: one exchange (about 45 bytes each way), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is missing or malformed or a
    /// field is out of range.
    pub fn network_time(&mut self) -> Result<NetworkTime, AtError> {
        let t = self.timeouts().query;
        self.ask_parse(b"AT+CCLK?\r\n", t, b"+CCLK:", NetworkTime::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cclk_fields_offsets_and_unix_time() {
        let t = NetworkTime::parse(br#""24/02/29,23:59:30+08""#).unwrap();
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2024, 2, 29, 23, 59, 30)
        );
        assert_eq!(t.utc_offset_quarters, 8);
        // 2024-02-29T23:59:30+02:00 = 2024-02-29T21:59:30Z.
        assert_eq!(t.unix_seconds(), 1_709_243_970);
        let t = NetworkTime::parse(br#""00/01/01,00:00:00-04""#).unwrap();
        // 2000-01-01T00:00:00-01:00 = 2000-01-01T01:00:00Z.
        assert_eq!(t.unix_seconds(), 946_688_400);
        let t = NetworkTime::parse(br#""26/12/31,12:00:00""#).unwrap();
        assert_eq!(
            (t.utc_offset_quarters, t.unix_seconds()),
            (0, 1_798_718_400)
        );
        for bad in [
            &br#""24/13/01,00:00:00+00""#[..],
            br#""24/02/29,24:00:00+00""#,
            br#""24/02/29 23:59:30+08""#,
            br#""24/02/29,23:59:30+97""#,
            br#""24/02/29,23:59:30+""#,
            br#"24/02/29,23:59:30+08"#,
            br#""24/2/29,23:59:30+08""#,
            br#""""#,
            b"\"",
        ] {
            assert_eq!(NetworkTime::parse(bad), None, "{bad:?}");
        }
    }
}
