//! Classifying lines: final result codes, unsolicited result codes (URCs), and the
//! registration status shared by `+CREG`/`+CGREG`/`+CEREG` answers and URCs.
//!
//! URCs are recognised on every line, wherever they arrive (before a response, between its
//! information line and `OK`, after it). A URC that shares its prefix with a response is told
//! apart by shape, as Particle's drivers do (device-os `mdm_hal.cpp`, `sara_ncp_client.cpp`):
//! `+CREG: <stat>[,"<lac>","<ci>"[,<AcT>]]` (URC: one integer, then nothing or a quoted string)
//! versus `+CREG: <n>,<stat>[,…]` (answer to `AT+CREG?`: two leading integers).
//! `+UUSORD` and `+USORD` never clash: the prefixes differ up to the colon.

use crate::fields::{is_quoted, parse_ipv4, parse_u32, strip, unquote, Fields};
use core::net::Ipv4Addr;

/// A final result code ending a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Final {
    /// `OK`
    Ok,
    /// `ERROR`
    Error,
    /// `+CME ERROR: …`
    Cme(u16),
    /// `+CMS ERROR: …`
    Cms(u16),
    /// `ABORTED`
    Aborted,
    /// `NO CARRIER`, `BUSY`, `NO ANSWER`, `NO DIALTONE`.
    NoCarrier,
}

/// Classify a final result code line.
pub fn final_result(line: &[u8]) -> Option<Final> {
    match line {
        b"OK" => Some(Final::Ok),
        b"ERROR" => Some(Final::Error),
        b"ABORTED" => Some(Final::Aborted),
        b"NO CARRIER" | b"BUSY" | b"NO ANSWER" | b"NO DIALTONE" => Some(Final::NoCarrier),
        _ => {
            if let Some(rest) = strip(line, b"+CME ERROR:") {
                Some(Final::Cme(error_code(rest)))
            } else {
                strip(line, b"+CMS ERROR:").map(|rest| Final::Cms(error_code(rest)))
            }
        }
    }
}

/// The numeric code of a `+CME ERROR:` argument, mapping the verbose texts seen from SARA
/// modules (3GPP TS 27.007 §9.2) to their numbers; unknown texts give 100 ("unknown").
pub fn error_code(arg: &[u8]) -> u16 {
    if let Some(n) = parse_u32(arg) {
        return u16::try_from(n).unwrap_or(100);
    }
    const TEXTS: &[(&[u8], u16)] = &[
        (b"operation not allowed", 3),
        (b"operation not supported", 4),
        (b"sim not inserted", 10),
        (b"sim pin required", 11),
        (b"sim puk required", 12),
        (b"sim failure", 13),
        (b"sim busy", 14),
        (b"sim wrong", 15),
        (b"incorrect password", 16),
        (b"no network service", 30),
        (b"network timeout", 31),
        (b"gprs services not allowed", 107),
        (b"unspecified gprs error", 148),
        (b"pdp authentication failure", 149),
    ];
    TEXTS
        .iter()
        .find(|(t, _)| arg.eq_ignore_ascii_case(t))
        .map_or(100, |&(_, c)| c)
}

/// A registration status (`<stat>` of `+CREG`/`+CGREG`/`+CEREG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegStatus {
    /// 0: not registered, not searching.
    #[default]
    NotRegistered,
    /// 1: registered, home network.
    Home,
    /// 2: not registered, searching.
    Searching,
    /// 3: registration denied.
    Denied,
    /// 4: unknown (out of coverage).
    Unknown,
    /// 5: registered, roaming.
    Roaming,
    /// Any other value (SMS-only, emergency-only, …).
    Other(u8),
}

impl RegStatus {
    /// From the numeric `<stat>`.
    pub fn from_code(c: u32) -> Self {
        match c {
            0 => Self::NotRegistered,
            1 => Self::Home,
            2 => Self::Searching,
            3 => Self::Denied,
            4 => Self::Unknown,
            5 => Self::Roaming,
            c => Self::Other(u8::try_from(c).unwrap_or(u8::MAX)),
        }
    }

    /// Home or roaming.
    pub fn is_registered(self) -> bool {
        matches!(self, Self::Home | Self::Roaming)
    }
}

/// Which registration domain a `+C*REG` line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// `+CREG` circuit switched.
    Cs,
    /// `+CGREG` packet switched (GPRS/UMTS).
    Ps,
    /// `+CEREG` EPS (LTE).
    Eps,
}

/// A parsed unsolicited result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Urc {
    /// `+UUSORD: <h>,<n>` (TCP) or `+UUSORF: <h>,<n>` (UDP): `n` bytes are waiting.
    DataReady {
        /// Socket handle.
        socket: u8,
        /// Bytes waiting in the modem.
        len: u16,
    },
    /// `+UUSOCL: <h>`: the socket was closed (by the peer, or an async close finished).
    SocketClosed(u8),
    /// `+UUPSDA: <result>[,"<ip>"]`: PDP activation finished.
    PdpActivated {
        /// 0 = success.
        result: u16,
        /// The address, when given.
        ip: Option<Ipv4Addr>,
    },
    /// `+UUPSDD: <profile>`: the PDP context was deactivated by the network.
    PdpDeactivated(u8),
    /// `+CREG`/`+CGREG`/`+CEREG` in URC shape.
    Registration(Domain, RegStatus),
    /// `+CGEV: NW DETACH` / `ME DETACH` / `NW PDN DEACT` / `ME PDN DEACT` / `NW DEACT`: the
    /// data context is gone.
    Detached,
    /// `+UUPSMR: <state>[,…]` (R4/R5 power saving state).
    PowerSaving(u8),
    /// Any other `+CGEV`, `+CIEV`, `+UMWI`, … line: recognised, ignored.
    Other,
}

/// Registration URCs and answers share prefixes; `reg_line` reads both.
/// Returns `(n, stat)` where `n` is `Some` for the answer shape (`+CREG: <n>,<stat>…`).
pub fn reg_line(line: &[u8]) -> Option<(Domain, Option<u8>, RegStatus)> {
    let (domain, args) = if let Some(a) = strip(line, b"+CREG:") {
        (Domain::Cs, a)
    } else if let Some(a) = strip(line, b"+CGREG:") {
        (Domain::Ps, a)
    } else if let Some(a) = strip(line, b"+CEREG:") {
        (Domain::Eps, a)
    } else {
        return None;
    };
    let mut f = Fields::new(args);
    let first = parse_u32(f.next()?)?;
    match f.next() {
        None => Some((domain, None, RegStatus::from_code(first))),
        Some(second) if is_quoted(second) || second.is_empty() => {
            Some((domain, None, RegStatus::from_code(first)))
        }
        Some(second) => {
            let stat = parse_u32(second)?;
            Some((
                domain,
                Some(u8::try_from(first).ok()?),
                RegStatus::from_code(stat),
            ))
        }
    }
}

/// Parse `line` as a URC. Registration lines are URCs only in the URC shape (see
/// [`reg_line`]); their answer shape returns `None` here.
pub fn parse(line: &[u8]) -> Option<Urc> {
    if let Some(a) = strip(line, b"+UUSORD:").or_else(|| strip(line, b"+UUSORF:")) {
        let mut f = Fields::new(a);
        let socket = u8::try_from(f.int()?).ok()?;
        let len = u16::try_from(f.int()?).ok()?;
        return Some(Urc::DataReady { socket, len });
    }
    if let Some(a) = strip(line, b"+UUSOCL:") {
        return Some(Urc::SocketClosed(u8::try_from(Fields::new(a).int()?).ok()?));
    }
    if let Some(a) = strip(line, b"+UUPSDA:") {
        let mut f = Fields::new(a);
        let result = u16::try_from(f.int()?).ok()?;
        let ip = f.next().and_then(unquote).and_then(parse_ipv4);
        return Some(Urc::PdpActivated { result, ip });
    }
    if let Some(a) = strip(line, b"+UUPSDD:") {
        return Some(Urc::PdpDeactivated(
            u8::try_from(Fields::new(a).int()?).ok()?,
        ));
    }
    if let Some(a) = strip(line, b"+UUPSMR:") {
        return Some(Urc::PowerSaving(u8::try_from(Fields::new(a).int()?).ok()?));
    }
    if let Some(a) = strip(line, b"+CGEV:") {
        // `NW DETACH`, `ME DETACH`, `NW PDN DEACT <cid>`, `ME PDN DEACT <cid>`,
        // `NW DEACT <type>,<addr>,<cid>`: the data context is gone. `… PDN ACT`, `… MODIFY`
        // and the like change nothing the driver tracks.
        let gone = a
            .split(|&c| c == b' ' || c == b',')
            .any(|w| w == b"DETACH" || w == b"DEACT");
        return Some(if gone { Urc::Detached } else { Urc::Other });
    }
    if let Some((d, None, s)) = reg_line(line) {
        return Some(Urc::Registration(d, s));
    }
    const OTHERS: &[&[u8]] = &[
        b"+CIEV:",
        b"+UMWI:",
        b"+CMTI:",
        b"+UUSOLI:",
        b"RING",
        b"+UUHTTPCR:",
    ];
    OTHERS
        .iter()
        .any(|p| line.starts_with(p))
        .then_some(Urc::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creg_answer_versus_urc() {
        assert_eq!(
            reg_line(br#"+CREG: 2,5,"9E9A","019624BD",2"#),
            Some((Domain::Cs, Some(2), RegStatus::Roaming))
        );
        assert_eq!(
            reg_line(b"+CREG: 0,1"),
            Some((Domain::Cs, Some(0), RegStatus::Home))
        );
        assert_eq!(
            parse(br#"+CREG: 5,"9E9A","0196BDB0",2"#),
            Some(Urc::Registration(Domain::Cs, RegStatus::Roaming))
        );
        assert_eq!(
            parse(b"+CGREG: 0"),
            Some(Urc::Registration(Domain::Ps, RegStatus::NotRegistered))
        );
        assert_eq!(parse(br#"+CREG: 2,5,"9E9A","019624BD",2"#), None);
        assert_eq!(
            parse(br#"+CEREG: 1,"2F11","1B18207",7"#),
            Some(Urc::Registration(Domain::Eps, RegStatus::Home))
        );
        assert_eq!(
            reg_line(br#"+CEREG: 4,1,"2F11","10","1B18207",7,,,"00000000","01100000""#),
            Some((Domain::Eps, Some(4), RegStatus::Home))
        );
    }

    #[test]
    fn socket_urcs_and_finals() {
        assert_eq!(
            parse(b"+UUSORD: 0,1400"),
            Some(Urc::DataReady {
                socket: 0,
                len: 1400
            })
        );
        assert_eq!(parse(b"+USORD: 0,1400"), None);
        assert_eq!(parse(b"+UUSOCL: 3"), Some(Urc::SocketClosed(3)));
        assert_eq!(
            parse(br#"+UUPSDA: 0,"10.174.88.81""#),
            Some(Urc::PdpActivated {
                result: 0,
                ip: Some(Ipv4Addr::new(10, 174, 88, 81))
            })
        );
        assert_eq!(parse(b"+CGEV: NW DETACH"), Some(Urc::Detached));
        assert_eq!(parse(b"+CGEV: NW PDN DEACT 1"), Some(Urc::Detached));
        assert_eq!(
            parse(br#"+CGEV: NW DEACT "IP","10.0.0.1",1"#),
            Some(Urc::Detached)
        );
        assert_eq!(parse(b"+CGEV: ME PDN ACT 1"), Some(Urc::Other));
        assert_eq!(parse(b"+CGEV: NW MODIFY 1,0,0"), Some(Urc::Other));
        assert_eq!(
            final_result(b"+CME ERROR: SIM not inserted"),
            Some(Final::Cme(10))
        );
        assert_eq!(final_result(b"+CME ERROR: 14"), Some(Final::Cme(14)));
        assert_eq!(
            final_result(b"+CME ERROR: Something new"),
            Some(Final::Cme(100))
        );
        assert_eq!(final_result(b"OK"), Some(Final::Ok));
        assert_eq!(final_result(b"OKAY"), None);
    }
}
