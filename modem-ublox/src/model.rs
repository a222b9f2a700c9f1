//! Models, families and their profiles: power pulse widths, boot and power-down times,
//! per-command timeouts and which command variants they use.
//!
//! Sources for the numbers (see the research notes in the repository): u-blox SARA-U2 and
//! SARA-G3 system integration manuals as quoted in Particle device-os
//! `hal/src/electron/modem/mdm_hal.cpp` (comments "SARA-U2/LISA-U2 50..80us", "SARA-G35 >5ms",
//! "SARA-R4 >=150ms", power-off "> 1.5 s R410, > 1 s U2", timeouts table) and
//! `hal/network/ncp_client/sara/sara_ncp_client.cpp` (R410 150 ms, R510 1.5 s on, 1.6 s off,
//! R410 RESET_N 10 s "powered-off after applying RESET", U201 reset 50 ms, R510 200 ms).

use core::fmt;

/// A module family: one power sequence, one AT dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Family {
    /// SARA-U260, U270, U201 (3G/2G).
    U2,
    /// SARA-G350 (2G).
    G3,
    /// SARA-R410M, R412M (LTE-M/NB-IoT).
    R4,
    /// SARA-R510S, R510M8S (LTE-M).
    R5,
}

impl Family {
    /// `true` if this build was compiled with the family's feature.
    pub const fn is_enabled(self) -> bool {
        match self {
            Self::U2 => cfg!(feature = "sara-u2"),
            Self::G3 => cfg!(feature = "sara-g3"),
            Self::R4 => cfg!(feature = "sara-r4"),
            Self::R5 => cfg!(feature = "sara-r5"),
        }
    }

    /// U2/G3 use the u-blox packet-switched data profile commands (`AT+UPSD`, `AT+UPSDA`,
    /// `+UUPSDA`); R4/R5 use 3GPP `AT+CGDCONT`/`AT+CGACT`/`AT+CGPADDR` (R5 also maps the
    /// context to profile 0 with `AT+UPSD=0,100,1` + `AT+UPSDA=0,3`).
    pub const fn uses_upsd_profile(self) -> bool {
        // Constant-folds to `false` when neither U2 nor G3 is built, removing that code.
        matches!(self, Self::U2 | Self::G3) && cfg!(any(feature = "sara-u2", feature = "sara-g3"))
    }

    /// U2/G3 register with `+CREG`/`+CGREG`; R4/R5 with `+CEREG`.
    pub const fn uses_cereg(self) -> bool {
        matches!(self, Self::R4 | Self::R5) && cfg!(any(feature = "sara-r4", feature = "sara-r5"))
    }

    /// The family's power and timing profile.
    pub const fn profile(self) -> Profile {
        match self {
            Self::U2 => Profile {
                pwr_on_pulse_us: 60,
                pwr_off_pulse_ms: Some(1_500),
                reset_pulse_ms: 100,
                reset_powers_off: false,
                boot_ms: 20_000,
                power_down_ms: 15_000,
                supports_upsv: true,
                emergency_shutdown: false,
                timeouts: Timeouts::U2_G3,
            },
            Self::G3 => Profile {
                pwr_on_pulse_us: 10_000,
                // PWR_ON cannot switch a G350 off: a low pulse switches it ON (device-os PR #2229).
                pwr_off_pulse_ms: None,
                reset_pulse_ms: 100,
                reset_powers_off: false,
                boot_ms: 15_000,
                power_down_ms: 15_000,
                supports_upsv: true,
                emergency_shutdown: false,
                timeouts: Timeouts::U2_G3,
            },
            Self::R4 => Profile {
                pwr_on_pulse_us: 200_000,
                pwr_off_pulse_ms: Some(1_600),
                reset_pulse_ms: 10_000,
                reset_powers_off: true,
                boot_ms: 15_000,
                power_down_ms: 35_000,
                supports_upsv: false,
                emergency_shutdown: false,
                timeouts: Timeouts::R4_R5,
            },
            Self::R5 => Profile {
                pwr_on_pulse_us: 1_500_000,
                pwr_off_pulse_ms: Some(1_600),
                reset_pulse_ms: 200,
                reset_powers_off: false,
                boot_ms: 20_000,
                power_down_ms: 20_000,
                supports_upsv: true,
                emergency_shutdown: true,
                timeouts: Timeouts::R4_R5,
            },
        }
    }
}

/// A module identified by `AT+CGMM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Model {
    /// SARA-U260 (3G 850/1900).
    SaraU260,
    /// SARA-U270 (3G 900/2100).
    SaraU270,
    /// SARA-U201 (3G global).
    SaraU201,
    /// SARA-G350 (2G quad band).
    SaraG350,
    /// SARA-R410M.
    SaraR410M,
    /// SARA-R412M.
    SaraR412M,
    /// SARA-R510S / R510M8S.
    SaraR510,
}

impl Model {
    /// Identify a model from the `AT+CGMM` answer line (substring match, as device-os does).
    pub fn from_cgmm(line: &[u8]) -> Option<Self> {
        const NAMES: &[(&[u8], Model)] = &[
            (b"SARA-U260", Model::SaraU260),
            (b"SARA-U270", Model::SaraU270),
            (b"SARA-U201", Model::SaraU201),
            (b"SARA-G350", Model::SaraG350),
            (b"SARA-R410", Model::SaraR410M),
            (b"SARA-R412", Model::SaraR412M),
            (b"SARA-R510", Model::SaraR510),
        ];
        NAMES
            .iter()
            .find(|(n, _)| line.windows(n.len()).any(|w| w == *n))
            .map(|&(_, m)| m)
    }

    /// The model's family.
    pub const fn family(self) -> Family {
        match self {
            Self::SaraU260 | Self::SaraU270 | Self::SaraU201 => Family::U2,
            Self::SaraG350 => Family::G3,
            Self::SaraR410M | Self::SaraR412M => Family::R4,
            Self::SaraR510 => Family::R5,
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SaraU260 => "SARA-U260",
            Self::SaraU270 => "SARA-U270",
            Self::SaraU201 => "SARA-U201",
            Self::SaraG350 => "SARA-G350",
            Self::SaraR410M => "SARA-R410M",
            Self::SaraR412M => "SARA-R412M",
            Self::SaraR510 => "SARA-R510",
        })
    }
}

/// Power and timing profile of a family ([`Family::profile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Profile {
    /// PWR_ON low time that switches the module on, µs.
    pub pwr_on_pulse_us: u32,
    /// PWR_ON low time that switches it off, ms; `None` if PWR_ON cannot switch it off (G350).
    pub pwr_off_pulse_ms: Option<u32>,
    /// RESET_N low time, ms.
    pub reset_pulse_ms: u32,
    /// RESET_N switches the module off instead of rebooting it (R410).
    pub reset_powers_off: bool,
    /// Longest time from the power-on pulse to the first `OK`, ms.
    pub boot_ms: u32,
    /// Longest time from `AT+CPWROFF`/power-off pulse to V_INT low, ms.
    pub power_down_ms: u32,
    /// `AT+UPSV` exists (not on R410).
    pub supports_upsv: bool,
    /// The last power-off fallback (with RESET_N) is the emergency hardware shutdown: PWR_ON
    /// and RESET_N held low together for 23 s (R510, which may ignore both pins alone).
    pub emergency_shutdown: bool,
    /// Per-command timeouts.
    pub timeouts: Timeouts,
}

/// Per-command response timeouts, in ms. Override any of them with
/// [`ModemConfig::timeouts`](crate::ModemConfig::timeouts): start from [`Timeouts::U2_G3`] or
/// [`Timeouts::R4_R5`] and change fields (`let mut t = Timeouts::R4_R5; t.connect = 60_000;`,
/// also in a `const` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Timeouts {
    /// Simple commands (`AT`, `ATE0`, `AT+CGMM`, `AT+CREG=2`, …) and the boot-time `AT` probe.
    pub short: u32,
    /// `AT+CPIN?`, `AT+CCID`, `AT+CIMI`.
    pub sim: u32,
    /// Status queries and settings of the network and data layers (`AT+CREG?`, `AT+COPS?`,
    /// `AT+UPSD`, `AT+UPSND`, `AT+CGPADDR`, `AT+URAT`, `AT+CPSMS`, …).
    pub query: u32,
    /// `AT+CFUN=…`.
    pub cfun: u32,
    /// `AT+COPS=…` (the documented 180 s is not respected by the modules; 300 s as device-os).
    pub cops: u32,
    /// `AT+CGATT=1`.
    pub cgatt: u32,
    /// `AT+UPSDA=…` and `AT+CGACT=…`.
    pub pdp: u32,
    /// `AT+USOCR`, `AT+USOCTL`, `AT+USOER`, `AT+UDCONF`.
    pub socket: u32,
    /// `AT+USOCO`.
    pub connect: u32,
    /// `AT+USOWR`/`AT+USOST`: from the command to `@`, and from the data to `OK`.
    pub write: u32,
    /// `AT+USORD`/`AT+USORF`.
    pub read: u32,
    /// `AT+USOCL`.
    pub close: u32,
    /// `AT+UDNSRN` (device-os: 30 s U2/G3, 70 s R4/R5).
    pub dns: u32,
    /// `AT+CPWROFF`.
    pub power_off: u32,
}

impl Timeouts {
    /// SARA-U2/G3 (device-os `mdm_hal.cpp` table; socket reads 10 s as it uses in the field).
    pub const U2_G3: Self = Self {
        short: 1_000,
        sim: 10_000,
        query: 10_000,
        cfun: 180_000,
        cops: 300_000,
        cgatt: 180_000,
        pdp: 180_000,
        socket: 10_000,
        connect: 20_000,
        write: 10_000,
        read: 10_000,
        close: 10_000,
        dns: 30_000,
        power_off: 40_000,
    };
    /// SARA-R4/R5 (longer socket timeouts: the R410 blocks its AT interface if they are cut).
    pub const R4_R5: Self = Self {
        short: 1_000,
        sim: 10_000,
        query: 10_000,
        cfun: 180_000,
        cops: 300_000,
        cgatt: 180_000,
        pdp: 150_000,
        socket: 10_000,
        connect: 130_000,
        write: 120_000,
        read: 10_000,
        close: 120_000,
        dns: 70_000,
        power_off: 40_000,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgmm_names() {
        assert_eq!(Model::from_cgmm(b"SARA-U260"), Some(Model::SaraU260));
        assert_eq!(Model::from_cgmm(b"SARA-R410M-02B"), Some(Model::SaraR410M));
        assert_eq!(Model::from_cgmm(b"SARA-R510S-01B"), Some(Model::SaraR510));
        assert_eq!(Model::from_cgmm(b"LARA-R6001D"), None);
        assert!(Family::G3.profile().pwr_off_pulse_ms.is_none());
        assert!(Family::R4.profile().reset_powers_off);
    }
}
