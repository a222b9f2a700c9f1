//! Driver configuration and per-operation options.

use crate::model::{Family, Timeouts};

/// How the driver is set up. Build with [`ModemConfig::new`] and adjust fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ModemConfig {
    /// The family fitted on the board. Its PWR_ON pulse is tried first; if the modem does not
    /// answer, the other enabled families' pulses shorter than one second are tried (an
    /// Electron may carry a U260, U270 or G350). After `AT+CGMM` the detected model's profile
    /// is used.
    pub family: Family,
    /// UART baud rate. Used to charge received and sent bytes to the time budget (10 bit
    /// times per byte) and, with [`ModemConfig::set_baud`], sent as `AT+IPR`.
    pub baud: u32,
    /// Send `AT+IPR=<baud>` during init (then wait 100 ms, the G350 needs > 40 ms).
    pub set_baud: bool,
    /// Enable hardware flow control during init (`AT&K3` on U2/G3, `AT+IFC=2,2` on R4/R5).
    pub flow_control: bool,
    /// Use hex mode for socket data (`AT+UDCONF=1,1`): half the throughput, but immune to the
    /// R4 binary-read erratum and UART power-saving corruption. A hex read's whole answer
    /// line must fit the line buffer `L`, so reads are limited to `(L - 17) / 2` bytes per
    /// `AT+USORD` and `(L - 41) / 2` per `AT+USORF` (107 bytes with the default `L` = 256: a
    /// longer datagram arrives in parts); `L` = 1065 reads the 512-byte maximum. Only with
    /// the `hex-mode` feature (default; `sara-r4` turns it on).
    #[cfg(feature = "hex-mode")]
    pub hex_mode: bool,
    /// Wait between the `@` prompt and the data (u-blox: "wait for a minimum of 50 ms").
    pub prompt_wait_ms: u32,
    /// Idle wait between two `read_ready` polls, µs. The UART must buffer at least this long
    /// of reception (an interrupt or DMA ring).
    pub poll_interval_us: u32,
    /// Consecutive command timeouts before the driver probes with `AT` and, if the modem is
    /// deaf, resets it.
    pub max_timeouts: u8,
    /// Override the model's per-command timeouts.
    pub timeouts: Option<Timeouts>,
}

impl ModemConfig {
    /// Defaults for `family`: 115200 baud, no `AT+IPR`, no flow control, binary socket data,
    /// 50 ms prompt wait, 1 ms poll, reset after 2 consecutive timeouts.
    pub const fn new(family: Family) -> Self {
        Self {
            family,
            baud: 115_200,
            set_baud: false,
            flow_control: false,
            #[cfg(feature = "hex-mode")]
            hex_mode: false,
            prompt_wait_ms: 50,
            poll_interval_us: 1_000,
            max_timeouts: 2,
            timeouts: None,
        }
    }
}

/// PDP authentication type (`AT+UPSD=0,6,<n>`; ignored on R4/R5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// PAP.
    Pap,
    /// CHAP.
    Chap,
}

/// Access point name and credentials. Strings must not contain `"` or control characters
/// and are at most 99 bytes (u-blox limit). Build with [`Apn::new`] and the `with_*`
/// methods (all `const`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Apn<'a> {
    /// The APN, e.g. `"spark.telefonica.com"`.
    pub name: &'a str,
    /// User name, if the APN wants one.
    pub user: Option<&'a str>,
    /// Password, if the APN wants one.
    pub password: Option<&'a str>,
    /// Authentication type (U2/G3).
    pub auth: Auth,
}

impl<'a> Apn<'a> {
    /// An APN without credentials.
    pub const fn new(name: &'a str) -> Self {
        Self {
            name,
            user: None,
            password: None,
            auth: Auth::None,
        }
    }

    /// With a user name and password.
    pub const fn with_credentials(mut self, user: &'a str, password: &'a str) -> Self {
        self.user = Some(user);
        self.password = Some(password);
        self
    }

    /// With an authentication type (U2/G3).
    pub const fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// The registration interventions of Particle's drivers, each enabled separately. They run
/// at most once per [`Registration::intervention_interval_ms`] while registration is stuck.
/// Start from [`Interventions::NONE`] or [`Interventions::ALL`] and use the `with_*` methods
/// (all `const`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Interventions {
    /// Not registered and not searching / searching: `AT+COPS=0,2` (automatic selection).
    pub reselect: bool,
    /// Denied: radio off and on (`AT+CFUN=0`, `AT+CFUN=1`).
    pub radio_cycle_on_denied: bool,
    /// U2/G3 circuit-switched registered but packet-switched not: `AT+CGATT=1`.
    pub attach: bool,
}

impl Interventions {
    /// No interventions: only wait and poll.
    pub const NONE: Self = Self {
        reselect: false,
        radio_cycle_on_denied: false,
        attach: false,
    };
    /// All of them.
    pub const ALL: Self = Self {
        reselect: true,
        radio_cycle_on_denied: true,
        attach: true,
    };

    /// With [`reselect`](Self::reselect) on or off.
    pub const fn with_reselect(mut self, on: bool) -> Self {
        self.reselect = on;
        self
    }

    /// With [`radio_cycle_on_denied`](Self::radio_cycle_on_denied) on or off.
    pub const fn with_radio_cycle_on_denied(mut self, on: bool) -> Self {
        self.radio_cycle_on_denied = on;
        self
    }

    /// With [`attach`](Self::attach) on or off.
    pub const fn with_attach(mut self, on: bool) -> Self {
        self.attach = on;
        self
    }
}

/// Options of [`Modem::register`](crate::Modem::register). Build with [`Registration::new`]
/// and adjust fields, or use the `with_*` methods (all `const`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Registration<'a> {
    /// The whole registration, commands included, must finish within this budget.
    pub budget_ms: u32,
    /// Poll the status this often while waiting for URCs.
    pub poll_interval_ms: u32,
    /// Registration while roaming counts as registered.
    pub allow_roaming: bool,
    /// Interventions on sticky states.
    pub interventions: Interventions,
    /// Run an intervention after this long in a sticky state, and again after as long.
    pub intervention_interval_ms: u32,
    /// R4/R5: set the default EPS bearer's APN (`AT+CGDCONT=1,"IP","<apn>"`) before
    /// registering.
    pub eps_apn: Option<&'a str>,
    /// R4: repair the invalid factory RAT setting `+URAT: 7,8` with `AT+CFUN=4`,
    /// `AT+URAT=7` (LTE-M only).
    pub fix_r4_rat: bool,
}

impl Registration<'_> {
    /// `budget_ms` with a 15 s poll, roaming allowed, no interventions, no APN, RAT fix on.
    pub const fn new(budget_ms: u32) -> Self {
        Self {
            budget_ms,
            poll_interval_ms: 15_000,
            allow_roaming: true,
            interventions: Interventions::NONE,
            intervention_interval_ms: 60_000,
            eps_apn: None,
            fix_r4_rat: true,
        }
    }
}

impl<'a> Registration<'a> {
    /// With these [`interventions`](Self::interventions).
    pub const fn with_interventions(mut self, interventions: Interventions) -> Self {
        self.interventions = interventions;
        self
    }

    /// With the R4/R5 default bearer's APN ([`eps_apn`](Self::eps_apn)).
    pub const fn with_eps_apn(mut self, apn: &'a str) -> Self {
        self.eps_apn = Some(apn);
        self
    }
}
