//! Emulator configuration: SIM, network, data context, timings and quirks.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::model::{Family, Model};

/// Registration status `<stat>` of `+CREG`/`+CGREG`/`+CEREG` (3GPP TS 27.007).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegStat {
    /// 0: not registered, not searching.
    NotSearching = 0,
    /// 1: registered, home network.
    Home = 1,
    /// 2: not registered, searching.
    Searching = 2,
    /// 3: registration denied.
    Denied = 3,
    /// 4: unknown.
    Unknown = 4,
    /// 5: registered, roaming.
    Roaming = 5,
}

impl RegStat {
    /// The numeric `<stat>` value.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// True for home (1) and roaming (5).
    pub const fn is_registered(self) -> bool {
        matches!(self, RegStat::Home | RegStat::Roaming)
    }
}

/// Radio access technology the emulated network offers (`<AcT>` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tech {
    /// GSM/GPRS (`<AcT>` 0).
    Gsm,
    /// UTRAN/3G (`<AcT>` 2).
    Utran,
    /// LTE Cat-M1 (`<AcT>` 7).
    LteM,
    /// NB-IoT (`<AcT>` 9).
    NbIot,
}

impl Tech {
    /// The numeric `<AcT>` value.
    pub const fn act(self) -> u8 {
        match self {
            Tech::Gsm => 0,
            Tech::Utran => 2,
            Tech::LteM => 7,
            Tech::NbIot => 9,
        }
    }
}

/// The SIM card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// False: `AT+CPIN?` answers `+CME ERROR: 10` (SIM not inserted).
    pub present: bool,
    /// `Some(pin)`: `AT+CPIN?` answers `+CPIN: SIM PIN` until `AT+CPIN="<pin>"`.
    pub pin: Option<String>,
    /// True: the SIM is broken, SIM commands answer `+CME ERROR: 13`.
    pub failure: bool,
    /// After each boot the SIM answers `+CME ERROR: 14` (SIM busy) for this long.
    pub busy_after_boot: Duration,
    /// `AT+CCID` answer.
    pub iccid: String,
    /// `AT+CIMI` answer.
    pub imsi: String,
}

/// The cellular network as the module sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Final registration status after [`NetworkConfig::registration_delay`]
    /// (`Home`, `Roaming`, `Denied`, `NotSearching`…). Until then `Searching`.
    pub outcome: RegStat,
    /// Time from radio on (boot with SIM ready, `AT+CFUN=1`, `AT+COPS=0`) to
    /// the circuit-switched (or EPS) registration.
    pub registration_delay: Duration,
    /// Extra time until the packet-switched (`+CGREG`) registration (U2/G3).
    pub ps_extra_delay: Duration,
    /// Technology of the serving cell.
    pub tech: Tech,
    /// Long operator name (`+COPS` format 0).
    pub operator_long: String,
    /// Numeric operator (`+COPS` format 2), e.g. `"23806"`.
    pub operator_numeric: String,
    /// Location area code / tracking area code, 4 hex digits.
    pub lac: String,
    /// Cell id, hex.
    pub ci: String,
    /// Routing area code for `+CGREG` (U2), hex.
    pub rac: String,
    /// `AT+CSQ` answer `<rssi>`.
    pub rssi: u8,
    /// PSM timers the network grants (`+UCPSMS?`: periodic TAU, active time);
    /// `None` grants what was requested with `+CPSMS`.
    pub psm_granted: Option<(String, String)>,
    /// Network time (NITZ) the module's clock follows (`+CCLK?`): UTC seconds since 1970 at
    /// virtual time 0, and the local zone in quarters of an hour.
    pub time: (u64, i8),
}

/// Authentication type of `AT+UPSD=p,6,<auth>` (0 none, 1 PAP, 2 CHAP, 3 auto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// 0: none.
    None = 0,
    /// 1: PAP.
    Pap = 1,
    /// 2: CHAP.
    Chap = 2,
}

/// Order of the `+UUPSDA` URC and the `OK` of `AT+UPSDA=p,3` (research 5.D).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UupsdaOrder {
    /// `OK` first, then `+UUPSDA` (khoih-prog/GSM_Generic #7 capture).
    AfterOk,
    /// `+UUPSDA` first, then `OK`.
    BeforeOk,
    /// No `+UUPSDA` at all (only `OK`).
    Never,
}

/// What the network accepts for the data context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdpConfig {
    /// APN the network accepts; `None` accepts any (including empty).
    pub apn: Option<String>,
    /// Username and password the network requires; `None` accepts any.
    pub credentials: Option<(String, String)>,
    /// Authentication type the network requires; `None` accepts any
    /// (Particle Gen2 retries auth 0, 1, 2 until one works).
    pub auth: Option<Auth>,
    /// The IP address the module gets.
    pub ip: Ipv4Addr,
    /// Primary and secondary DNS (`AT+UPSND=p,1` / `p,2`).
    pub dns: [Ipv4Addr; 2],
    /// When the `+UUPSDA` URC comes relative to `OK`.
    pub uupsda: UupsdaOrder,
}

/// How long operations take, in virtual time. Defaults are (inferred) values
/// inside the maximum response times of research 2.1/3.3 (Particle's timeout
/// table): the emulator must be faster than the documented maxima but not
/// instantaneous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// From a valid `PWR_ON` pulse (or reset) to `V_INT` high.
    pub vint_rise: Duration,
    /// From switch-on (or reboot) until the UART answers.
    pub boot: Duration,
    /// Latency of ordinary commands (line end → first response byte).
    pub command: Duration,
    /// `AT+CIMI`/`AT+CCID`.
    pub sim_read: Duration,
    /// `AT+CFUN=0/1/4`.
    pub cfun: Duration,
    /// `AT+COPS=…` (set).
    pub cops: Duration,
    /// `AT+CGATT=1` when already registered.
    pub attach: Duration,
    /// `AT+CGATT=1` when no PS registration comes: error after this long.
    pub attach_fail: Duration,
    /// `AT+UPSDA=p,3` / `AT+CGACT=1,1`.
    pub pdp_activate: Duration,
    /// `AT+USOCO` to a loopback port (success or refusal).
    pub connect: Duration,
    /// `AT+USOCO` to anything outside 127.0.0.0/8 (fails like an unreachable host).
    pub connect_unreachable: Duration,
    /// From the last payload byte after `@` to `+USOWR`/`+USOST` and `OK`.
    pub socket_write: Duration,
    /// `AT+USOCL` (R4 TCP without linger 0 is slower, see `close_r4_tcp`).
    pub close: Duration,
    /// `AT+USOCL` on an R4 TCP socket without `AT+USOSO=h,65535,128,1`
    /// (PR #1911: R410 TCP close was slow).
    pub close_r4_tcp: Duration,
    /// `AT+CPWROFF`: time to `OK`.
    pub cpwroff: Duration,
    /// After the `OK` of `AT+CPWROFF` (or a valid power-off pulse) until `V_INT` low.
    pub power_down: Duration,
    /// `AT+CFUN=15/16`: time to `OK` (the reboot follows).
    pub soft_reset: Duration,
    /// UART power saving (`AT+UPSV=1`): idle time after which the first received
    /// character is lost (2000 GSM frames ≈ 9.2 s, research 3.5).
    pub upsv_idle: Duration,
}

/// Firmware quirks that can be switched on or off (defaults per model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quirks {
    /// G350: an extra `\r\n` after the `+USORF` information line (research 2.3).
    pub usorf_extra_crlf: bool,
    /// R410 fw 05.08: `\r\r\n\r\r\n+USORF: …\r\n\r\r\nOK\r\n` (research 5.F).
    pub usorf_junk_crs: bool,
    /// R410: an extra `\r\n` after a `+CME ERROR` that follows `+USOST` (research 2.1).
    pub usost_error_extra_crlf: bool,
    /// R4: `+USORD: h,""` (length omitted) when nothing is read (R4 AT manual 19.12.4).
    pub usord_empty_omits_length: bool,
    /// U2/G3: the first `ATI` after power-on answers `OK` before the type line
    /// (research 2.3, Particle Gen2 comment).
    pub ati_ok_first_after_boot: bool,
    /// Bytes sent when the UART comes up after a boot (R4: `\0\0`, ubxlib #200).
    pub boot_garbage: Vec<u8>,
    /// `AT+IPR` survives reboots (R4, research 2.3).
    pub ipr_persistent: bool,
    /// U201: the module switches itself on when the supply rises (research 2.3).
    pub boots_on_supply: bool,
    /// UDP data arrival URC: `+UUSORF` (research 5.F) when true, else `+UUSORD`.
    pub udp_arrival_uusorf: bool,
    /// A UDP socket receives only after it sent once (R4 AT manual 19.12.1).
    pub udp_rx_needs_prior_send: bool,
}

/// Reply to a command the emulator does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownCommandReply {
    /// Plain `ERROR` whatever `AT+CMEE` says [inferred: u-blox parsers reject
    /// unknown names before the 27.007 error machinery].
    PlainError,
    /// `+CME ERROR: <code>` in the form `AT+CMEE` asks for.
    Cme(u16),
}

/// A socket left open "from a previous MCU run" (failure mode 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleSocket {
    /// Socket id 0–6.
    pub id: u8,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
}

/// Full emulator configuration. Start from [`EmulatorConfig::for_model`] and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// SIM card.
    pub sim: SimConfig,
    /// Network.
    pub network: NetworkConfig,
    /// Data context.
    pub pdp: PdpConfig,
    /// Timings.
    pub timing: Timing,
    /// Quirks.
    pub quirks: Quirks,
    /// `AT+CGSN` answer.
    pub imei: String,
    /// `ATI9` answer.
    pub firmware: String,
    /// Initial module baud rate (`AT+IPR`), 0 = autobauding (U2/G3 default).
    pub baud: u32,
    /// Baud rate the MCU side starts with ([`crate::Uart::set_baud`] changes it).
    pub dte_baud: u32,
    /// Unknown command reply.
    pub unknown_command: UnknownCommandReply,
    /// Sockets open at start (see [`StaleSocket`]).
    pub stale_sockets: Vec<StaleSocket>,
    /// Receive buffer of each socket in the module; the emulator stops reading
    /// the host socket when it is full (TCP back-pressure), UDP datagrams are dropped.
    pub socket_rx_capacity: usize,
    /// Real time slept per `DelayNs` call (at most the virtual delay) while a
    /// host socket is open, so that peer threads can run.
    pub real_sleep_cap: Duration,
    /// Real time a blocking `Uart::read` waits for socket data when nothing is
    /// scheduled and a host socket is open, before it returns `TimedOut`.
    pub real_read_wait: Duration,
}

impl EmulatorConfig {
    /// Defaults for `model`: a present, ready SIM, home registration after 2 s,
    /// any APN accepted, IP `10.174.88.81` (research 5.D), quirks of that model.
    pub fn for_model(model: Model) -> EmulatorConfig {
        let family = model.family();
        let lte = model.is_lte();
        let (tech, lac, ci) = match family {
            Family::U2 => (Tech::Utran, "9E9A", "019624BD"),
            Family::G3 => (Tech::Gsm, "9E9A", "019624BD"),
            Family::R4 | Family::R5 => (Tech::LteM, "1A2B", "01A2B3C4"),
        };
        let boot = match family {
            Family::U2 => Duration::from_secs(4),
            Family::G3 => Duration::from_secs(3),
            Family::R4 => Duration::from_millis(4500),
            Family::R5 => Duration::from_secs(5),
        };
        EmulatorConfig {
            sim: SimConfig {
                present: true,
                pin: None,
                failure: false,
                busy_after_boot: Duration::ZERO,
                iccid: "8934071100270000000".into(),
                imsi: "240071234567890".into(),
            },
            network: NetworkConfig {
                outcome: RegStat::Home,
                registration_delay: Duration::from_secs(2),
                ps_extra_delay: if lte {
                    Duration::ZERO
                } else {
                    Duration::from_millis(500)
                },
                tech,
                operator_long: "3 DK".into(),
                operator_numeric: "23806".into(),
                lac: lac.into(),
                ci: ci.into(),
                rac: "02".into(),
                rssi: 20,
                psm_granted: None,
                // 2024-04-24T23:06:40Z, UTC+2.
                time: (1_714_000_000, 8),
            },
            pdp: PdpConfig {
                apn: None,
                credentials: None,
                auth: None,
                ip: Ipv4Addr::new(10, 174, 88, 81),
                dns: [Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 54)],
                uupsda: UupsdaOrder::AfterOk,
            },
            timing: Timing {
                vint_rise: Duration::from_millis(20),
                boot,
                command: Duration::from_millis(5),
                sim_read: Duration::from_millis(20),
                cfun: Duration::from_millis(500),
                cops: Duration::from_secs(1),
                attach: Duration::from_millis(800),
                attach_fail: Duration::from_secs(30),
                pdp_activate: Duration::from_millis(1500),
                connect: Duration::from_millis(300),
                connect_unreachable: if lte {
                    Duration::from_secs(120)
                } else {
                    Duration::from_secs(20)
                },
                socket_write: if lte {
                    Duration::from_millis(50)
                } else {
                    Duration::from_millis(10)
                },
                close: Duration::from_millis(20),
                close_r4_tcp: Duration::from_secs(2),
                cpwroff: Duration::from_millis(500),
                power_down: Duration::from_secs(1),
                soft_reset: Duration::from_millis(100),
                upsv_idle: Duration::from_micros(9_230_000),
            },
            quirks: Quirks {
                usorf_extra_crlf: family == Family::G3,
                usorf_junk_crs: family == Family::R4,
                usost_error_extra_crlf: family == Family::R4,
                usord_empty_omits_length: family == Family::R4,
                ati_ok_first_after_boot: matches!(family, Family::U2 | Family::G3),
                boot_garbage: if family == Family::R4 {
                    vec![0, 0]
                } else {
                    Vec::new()
                },
                ipr_persistent: lte,
                boots_on_supply: model == Model::SaraU201,
                udp_arrival_uusorf: true,
                udp_rx_needs_prior_send: true,
            },
            imei: "352753090000000".into(),
            firmware: model.ati9().into(),
            baud: if lte { 115_200 } else { 0 },
            dte_baud: 115_200,
            unknown_command: UnknownCommandReply::PlainError,
            stale_sockets: Vec::new(),
            socket_rx_capacity: 8192,
            real_sleep_cap: Duration::from_millis(1),
            real_read_wait: Duration::from_millis(200),
        }
    }
}
