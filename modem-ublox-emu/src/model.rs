//! Which module is emulated, and the per-model facts that do not change at run time.

use std::time::Duration;

/// The emulated module.
///
/// The product strings and power rules come from the project's research file
/// (`shared/research/modem-ublox.md`, sections 2.1–2.3 and 5.A), which cites
/// Particle device-os `hal/src/electron/modem/mdm_hal.cpp` (Gen2) and
/// `hal/network/ncp_client/sara/sara_ncp_client.cpp` (Gen3), and the u-blox
/// system integration manuals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Model {
    /// SARA-U260 (3G/2G, Particle Electron U260).
    SaraU260,
    /// SARA-U270 (3G/2G, Particle Electron U270).
    SaraU270,
    /// SARA-U201 (3G/2G, Particle E-series and Boron 2G/3G).
    SaraU201,
    /// SARA-G350 (2G only, Particle Electron G350).
    SaraG350,
    /// SARA-R410M-02B (LTE Cat-M1/NB1).
    SaraR410M,
    /// SARA-R510S-01B (LTE Cat-M1).
    SaraR510S,
}

/// Model families: the command sets and quirks that several models share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// SARA-U2 (U260, U270, U201): CREG/CGREG, `+UPSD`/`+UPSDA` PDP.
    U2,
    /// SARA-G3 (G350): like U2, no `<AcT>` fields, extra CRLF after `+USORF`.
    G3,
    /// SARA-R4 (R410M): CEREG, `+CGDCONT`/`+CGACT` PDP, `+USORD: h,""` when empty.
    R4,
    /// SARA-R5 (R510S): CEREG, `+CGDCONT`/`+CGACT` plus `+UPSD`/`+UPSDA` mapping.
    R5,
}

/// What a low pulse on `RESET_N` does to a running module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetEffect {
    /// The module reboots (U2, G3, R5).
    Reboot,
    /// The module switches off (R4: "R4 is powered-off after applying RESET!",
    /// Particle `sara_ncp_client.cpp`).
    PowerOff,
}

/// Pin timing rules of one model. A pulse shorter than the minimum does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerRules {
    /// Minimum `PWR_ON` low time that switches an *off* module on
    /// (U2 50 µs, G350 5 ms, R410 150 ms, R510 1 s).
    pub pwr_on_min: Duration,
    /// Minimum `PWR_ON` low time that switches a *running* module off, or
    /// `None` when the pin cannot switch it off (G350, PR #2229).
    pub pwr_off_min: Option<Duration>,
    /// Minimum `RESET_N` low time that has an effect.
    pub reset_min: Duration,
    /// What that reset does.
    pub reset_effect: ResetEffect,
}

impl Model {
    /// All models, for tests that run a sequence on each.
    pub const ALL: [Model; 6] = [
        Model::SaraU260,
        Model::SaraU270,
        Model::SaraU201,
        Model::SaraG350,
        Model::SaraR410M,
        Model::SaraR510S,
    ];

    /// The model's family.
    pub const fn family(self) -> Family {
        match self {
            Model::SaraU260 | Model::SaraU270 | Model::SaraU201 => Family::U2,
            Model::SaraG350 => Family::G3,
            Model::SaraR410M => Family::R4,
            Model::SaraR510S => Family::R5,
        }
    }

    /// The `AT+CGMM` answer (research file 5.A).
    pub const fn cgmm(self) -> &'static str {
        match self {
            Model::SaraU260 => "SARA-U260",
            Model::SaraU270 => "SARA-U270",
            Model::SaraU201 => "SARA-U201",
            Model::SaraG350 => "SARA-G350",
            Model::SaraR410M => "SARA-R410M-02B",
            Model::SaraR510S => "SARA-R510S-01B",
        }
    }

    /// The `ATI` answer (type number). [inferred: the type-number pattern of
    /// u-blox product codes; no capture in the research file.]
    pub const fn ati(self) -> &'static str {
        match self {
            Model::SaraU260 => "SARA-U260-00S-00",
            Model::SaraU270 => "SARA-U270-00S-00",
            Model::SaraU201 => "SARA-U201-04B-00",
            Model::SaraG350 => "SARA-G350-00S-00",
            Model::SaraR410M => "SARA-R410M-02B-00",
            Model::SaraR510S => "SARA-R510S-01B-00",
        }
    }

    /// The default `ATI9` answer (modem and application firmware versions).
    ///
    /// G350 `08.90,A01.13`, R410 `L0.0.00.00.05.08,A.02.04` and R510
    /// `02.06,A00.01` are captures quoted in research 3.1. The U2 strings are
    /// placeholders in the same shape (inferred).
    pub const fn ati9(self) -> &'static str {
        match self {
            Model::SaraU260 | Model::SaraU270 => "23.41,A01.00",
            Model::SaraU201 => "23.60,A01.01",
            Model::SaraG350 => "08.90,A01.13",
            Model::SaraR410M => "L0.0.00.00.05.08,A.02.04",
            Model::SaraR510S => "02.06,A00.01",
        }
    }

    /// Pin timing rules (research 2.1, 2.2 and 6.16).
    ///
    /// * U2: switch-on pulse 50–80 µs (SARA-U2 system integration manual,
    ///   table 8, quoted in research 1.3), power-off ≥ 1 s, reset 50 ms
    ///   (Particle Gen3 `modemHardReset` for U201).
    /// * G350: switch-on > 5 ms (Particle Gen2 comment), **no** power-off by
    ///   pin (PR #2229), reset 50 ms (inferred from U2).
    /// * R410: switch-on 150 ms ("Low pulse 150-3200ms"), power-off ≥ 1.5 s,
    ///   `RESET_N` ≥ 10 s switches it **off**.
    /// * R510: switch-on 1 s ("1000-2000ms"), power-off ≥ 1.5 s, reset 200 ms.
    pub const fn power_rules(self) -> PowerRules {
        match self.family() {
            Family::U2 => PowerRules {
                pwr_on_min: Duration::from_micros(50),
                pwr_off_min: Some(Duration::from_secs(1)),
                reset_min: Duration::from_millis(50),
                reset_effect: ResetEffect::Reboot,
            },
            Family::G3 => PowerRules {
                pwr_on_min: Duration::from_millis(5),
                pwr_off_min: None,
                reset_min: Duration::from_millis(50),
                reset_effect: ResetEffect::Reboot,
            },
            Family::R4 => PowerRules {
                pwr_on_min: Duration::from_millis(150),
                pwr_off_min: Some(Duration::from_millis(1500)),
                reset_min: Duration::from_secs(10),
                reset_effect: ResetEffect::PowerOff,
            },
            Family::R5 => PowerRules {
                pwr_on_min: Duration::from_secs(1),
                pwr_off_min: Some(Duration::from_millis(1500)),
                reset_min: Duration::from_millis(200),
                reset_effect: ResetEffect::Reboot,
            },
        }
    }

    /// True for the LTE families (R4, R5): `+CEREG`, `+CGDCONT`/`+CGACT`.
    pub const fn is_lte(self) -> bool {
        matches!(self.family(), Family::R4 | Family::R5)
    }

    /// True when the model activates data with `+UPSD`/`+UPSDA` (U2, G3, R5).
    pub const fn has_upsd(self) -> bool {
        !matches!(self.family(), Family::R4)
    }
}
