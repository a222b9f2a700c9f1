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
                strip(line, b"+CMS ERROR:").map(|rest| Final::Cms(cms_error_code(rest)))
            }
        }
    }
}

/// Verbose error texts with their `+CME ERROR` code (3GPP TS 27.007 §9.2, the ones seen from
/// SARA modules) and their `+CMS ERROR` code (TS 27.005 §3.2.5); 0 where the text is not one
/// of that family's. One table, so the texts both families share are stored once.
const ERROR_TEXTS: &[(&[u8], u16, u16)] = &[
    (b"operation not allowed", 3, 302),
    (b"operation not supported", 4, 303),
    (b"sim not inserted", 10, 310),
    (b"sim pin required", 11, 311),
    (b"sim puk required", 12, 316),
    (b"sim failure", 13, 313),
    (b"sim busy", 14, 314),
    (b"sim wrong", 15, 315),
    (b"incorrect password", 16, 0),
    (b"no network service", 30, 331),
    (b"network timeout", 31, 332),
    (b"gprs services not allowed", 107, 0),
    (b"unspecified gprs error", 148, 0),
    (b"pdp authentication failure", 149, 0),
    (b"me failure", 0, 300),
    (b"sms service of me reserved", 0, 301),
    (b"invalid pdu mode parameter", 0, 304),
    (b"invalid text mode parameter", 0, 305),
    (b"ph-sim pin required", 0, 312),
    (b"sim pin2 required", 0, 317),
    (b"sim puk2 required", 0, 318),
    (b"memory failure", 0, 320),
    (b"invalid memory index", 0, 321),
    (b"memory full", 0, 322),
    (b"smsc address unknown", 0, 330),
    (b"no +cnma acknowledgement expected", 0, 340),
    (b"unknown error", 0, 500),
];

/// The code of an error argument: its number, or its text looked up in [`ERROR_TEXTS`]
/// (`cms` selects the family), or `unknown`.
fn code_of(arg: &[u8], cms: bool, unknown: u16) -> u16 {
    if let Some(n) = parse_u32(arg) {
        return u16::try_from(n).unwrap_or(unknown);
    }
    // TS 27.005 writes "(U)SIM …"; SARA modules write "SIM …".
    let text = match arg.get(..3) {
        Some(p) if cms && p.eq_ignore_ascii_case(b"(u)") => &arg[3..],
        _ => arg,
    };
    ERROR_TEXTS
        .iter()
        .map(|&(t, cme, cms_code)| (t, if cms { cms_code } else { cme }))
        .find(|&(t, c)| c != 0 && text.eq_ignore_ascii_case(t))
        .map_or(unknown, |(_, c)| c)
}

/// The numeric code of a `+CME ERROR:` argument, mapping the verbose texts seen from SARA
/// modules (3GPP TS 27.007 §9.2) to their numbers; unknown texts give 100 ("unknown").
pub fn error_code(arg: &[u8]) -> u16 {
    code_of(arg, false, 100)
}

/// The numeric code of a `+CMS ERROR:` argument, mapping the verbose texts of 3GPP TS 27.005
/// §3.2.5 to their numbers (with or without the "(U)" of "(U)SIM"); unknown texts give 500
/// ("unknown error").
pub fn cms_error_code(arg: &[u8]) -> u16 {
    code_of(arg, true, 500)
}

/// Whether `line` is the first line of a two-line URC whose second line is its body: `+CMT`
/// (SMS delivered directly) and `+CBM` (cell broadcast) in PDU and text mode, `+CDS` (status
/// report) in PDU mode (`+CDS: <length>`; in text mode it is one line), 3GPP TS 27.005 §3.4.1.
/// The body (a PDU of up to 2 × 176 hex digits, or text) belongs to the URC, whatever it
/// contains, and may be longer than the line buffer.
pub fn body_follows(line: &[u8]) -> bool {
    if let Some(a) = strip(line, b"+CDS:") {
        return parse_u32(a).is_some();
    }
    line.starts_with(b"+CMT:") || line.starts_with(b"+CBM:")
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// What a URC prefix of [`URCS`] introduces.
#[derive(Clone, Copy)]
enum Kind {
    DataReady,
    SocketClosed,
    PdpActivated,
    PdpDeactivated,
    PowerSaving,
    Cgev,
    Other,
}

/// The URCs [`parse`] recognises by prefix (registration URCs are told by shape, see
/// [`reg_line`]). One table walked once, instead of one prefix test per URC in code.
const URCS: &[(&[u8], Kind)] = &[
    (b"+UUSORD:", Kind::DataReady),
    (b"+UUSORF:", Kind::DataReady),
    (b"+UUSOCL:", Kind::SocketClosed),
    (b"+UUPSDA:", Kind::PdpActivated),
    (b"+UUPSDD:", Kind::PdpDeactivated),
    (b"+UUPSMR:", Kind::PowerSaving),
    (b"+CGEV:", Kind::Cgev),
    (b"+CIEV:", Kind::Other),
    (b"+UMWI:", Kind::Other),
    (b"+CMTI:", Kind::Other),
    (b"+UUSOLI:", Kind::Other),
    (b"RING", Kind::Other),
    (b"+UUHTTPCR:", Kind::Other),
];

/// Parse `line` as a URC. Registration lines are URCs only in the URC shape (see
/// [`reg_line`]); their answer shape returns `None` here.
pub fn parse(line: &[u8]) -> Option<Urc> {
    let Some(&(prefix, kind)) = URCS.iter().find(|(p, _)| line.starts_with(p)) else {
        return match reg_line(line) {
            Some((d, None, s)) => Some(Urc::Registration(d, s)),
            _ => None,
        };
    };
    // `Fields` trims each argument: the space after the colon needs no stripping.
    let a = line.get(prefix.len()..)?;
    let mut f = Fields::new(a);
    // The first argument as a handle, profile or state (0..=255).
    let mut byte = || u8::try_from(f.int()?).ok();
    Some(match kind {
        Kind::DataReady => {
            let socket = byte()?;
            let len = u16::try_from(f.int()?).ok()?;
            Urc::DataReady { socket, len }
        }
        Kind::SocketClosed => Urc::SocketClosed(byte()?),
        Kind::PdpDeactivated => Urc::PdpDeactivated(byte()?),
        Kind::PowerSaving => Urc::PowerSaving(byte()?),
        Kind::PdpActivated => {
            let result = u16::try_from(f.int()?).ok()?;
            let ip = f.next().and_then(unquote).and_then(parse_ipv4);
            Urc::PdpActivated { result, ip }
        }
        // `NW DETACH`, `ME DETACH`, `NW PDN DEACT <cid>`, `ME PDN DEACT <cid>`,
        // `NW DEACT <type>,<addr>,<cid>`: the data context is gone. `… PDN ACT`, `… MODIFY`
        // and the like change nothing the driver tracks.
        Kind::Cgev
            if a.split(|&c| c == b' ' || c == b',')
                .any(|w| w == b"DETACH" || w == b"DEACT") =>
        {
            Urc::Detached
        }
        Kind::Cgev | Kind::Other => Urc::Other,
    })
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

    /// Issue 8 item 4: `+CMS ERROR` texts are 3GPP TS 27.005 §3.2.5 codes, not the TS 27.007
    /// `+CME ERROR` ones (`unknown error` is 500, not 100).
    #[test]
    fn cms_error_texts_use_27_005_codes() {
        assert_eq!(
            final_result(b"+CMS ERROR: unknown error"),
            Some(Final::Cms(500))
        );
        assert_eq!(
            final_result(b"+CMS ERROR: Something new"),
            Some(Final::Cms(500))
        );
        assert_eq!(
            final_result(b"+CMS ERROR: operation not allowed"),
            Some(Final::Cms(302))
        );
        assert_eq!(
            final_result(b"+CMS ERROR: (U)SIM not inserted"),
            Some(Final::Cms(310))
        );
        assert_eq!(final_result(b"+CMS ERROR: SIM busy"), Some(Final::Cms(314)));
        assert_eq!(final_result(b"+CMS ERROR: 330"), Some(Final::Cms(330)));
        // The CME table is unchanged.
        assert_eq!(
            final_result(b"+CME ERROR: operation not allowed"),
            Some(Final::Cme(3))
        );
    }

    #[test]
    fn sms_urcs_carry_a_body_line() {
        assert!(body_follows(b"+CMT: ,159"));
        assert!(body_follows(b"+CDS: 25"));
        // Text mode: the status report is one line.
        assert!(!body_follows(
            b"+CDS: 6,12,\"+4917\",145,\"24/01/01,10:00:00+04\",\"24/01/01,10:00:05+04\",0"
        ));
        assert!(body_follows(b"+CBM: 88"));
        assert!(!body_follows(b"+CMTI: \"SM\",3"));
        assert!(!body_follows(b"+CMGR: 0,,25"));
    }
}
