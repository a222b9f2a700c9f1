//! The fault plan: power cuts at chosen flash operations and modem faults from the emulator,
//! as data (`--faults`).
//!
//! # Syntax
//! Items separated by commas, no spaces:
//!
//! ```text
//! cut:download@N[:KIND]        power cut at the N-th (0-based) flash operation counted from
//!                              the first one of the download (across wakes)
//! cut:install@N[:KIND]         the same, counted from the start of the install (bootloader)
//! modem:ACTION@PREFIX[#K]      an emulator fault on the K-th (1-based, default 1) AT command
//!                              line starting with PREFIX, counted over the whole run
//! KIND   = before | torn | after                          (default torn)
//! ACTION = drop | reboot | power-loss | pdp-lost | error | delay=MS
//! ```
//!
//! Example: `cut:download@40,cut:install@7:before,modem:reboot@AT+USORF#12`.
//! `drop` loses the command's response, `error` answers `+CME ERROR: 3` (plain `ERROR` under
//! `AT+CMEE=0`), `delay=MS` answers that much later, `reboot` reboots the module,
//! `power-loss` switches it off, `pdp-lost` drops the data context
//! ([`modem_ublox_emu::Action`]).

use core::fmt;
use core::time::Duration;

use modem_ublox_emu::{Action, Emulator, ErrorReply, Fault, Trigger};
use ota_flash_sim::{Cut, CutKind};

use crate::flash::ElectronFlash;

/// Which part of the story a power cut's operation index counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CutPhase {
    /// From the first flash operation of the download (manifest copy, chunks, progress).
    Download,
    /// From the first flash operation of the install (the bootloader's swap and journal).
    Install,
}

impl fmt::Display for CutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Download => "download",
            Self::Install => "install",
        })
    }
}

/// One planned power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedCut {
    /// What the index counts from.
    pub phase: CutPhase,
    /// 0-based flash operation index within the phase.
    pub at_op: u64,
    /// What the cut leaves in flash.
    pub kind: CutKind,
}

/// One planned modem fault, with the text it was parsed from (for the timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemFault {
    /// The item as written.
    pub spec: String,
    /// The emulator fault.
    pub fault: Fault,
}

/// A parsed `--faults` plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultPlan {
    /// Power cuts, in the order written.
    pub cuts: Vec<PlannedCut>,
    /// Modem faults, in the order written.
    pub modem: Vec<ModemFault>,
}

/// Why a `--faults` item was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The item.
    pub item: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fault plan item `{}`: {}", self.item, self.why)
    }
}

impl std::error::Error for PlanError {}

impl FaultPlan {
    /// Parses the `--faults` syntax (module docs). An empty string is the empty plan.
    ///
    /// # Errors
    /// [`PlanError`] naming the first bad item.
    pub fn parse(s: &str) -> Result<Self, PlanError> {
        let mut plan = FaultPlan::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let err = |why| PlanError {
                item: item.to_string(),
                why,
            };
            if let Some(rest) = item.strip_prefix("cut:") {
                let (phase, rest) = if let Some(r) = rest.strip_prefix("download@") {
                    (CutPhase::Download, r)
                } else if let Some(r) = rest.strip_prefix("install@") {
                    (CutPhase::Install, r)
                } else {
                    return Err(err("expected cut:download@N or cut:install@N"));
                };
                let (n, kind) = match rest.split_once(':') {
                    Some((n, k)) => (n, k),
                    None => (rest, "torn"),
                };
                let at_op = n.parse().map_err(|_| err("N is not a number"))?;
                let kind = match kind {
                    "before" => CutKind::Before,
                    "torn" => CutKind::Torn,
                    "after" => CutKind::After,
                    _ => return Err(err("KIND is before, torn or after")),
                };
                plan.cuts.push(PlannedCut { phase, at_op, kind });
            } else if let Some(rest) = item.strip_prefix("modem:") {
                let (action, target) = rest
                    .split_once('@')
                    .ok_or(err("expected modem:ACTION@PREFIX[#K]"))?;
                let (prefix, k) = match target.split_once('#') {
                    Some((p, k)) => (p, k.parse().map_err(|_| err("K is not a number"))?),
                    None => (target, 1u32),
                };
                if !prefix.to_ascii_uppercase().starts_with("AT") || k == 0 {
                    return Err(err("PREFIX starts with AT and K counts from 1"));
                }
                let action =
                    match action {
                        "drop" => Action::DropResponse,
                        "reboot" => Action::Reboot {
                            garbage: Vec::new(),
                        },
                        "power-loss" => Action::PowerLoss,
                        "pdp-lost" => Action::PdpLost,
                        "error" => Action::Fail(ErrorReply::Cme(3)),
                        a => match a.strip_prefix("delay=").map(str::parse::<u64>) {
                            Some(Ok(ms)) => Action::DelayResponse(Duration::from_millis(ms)),
                            _ => return Err(err(
                                "ACTION is drop, reboot, power-loss, pdp-lost, error or delay=MS",
                            )),
                        },
                    };
                plan.modem.push(ModemFault {
                    spec: item.to_string(),
                    fault: Fault::new(Trigger::nth(prefix, k), action),
                });
            } else {
                return Err(err("an item starts with cut: or modem:"));
            }
        }
        Ok(plan)
    }

    /// Adds every modem fault to `emu` (once, before the first wake). Returns the emulator's
    /// fault indices, in plan order (to match [`Emulator::fired`]).
    pub fn apply_modem(&self, emu: &Emulator) -> Vec<usize> {
        self.modem
            .iter()
            .map(|m| emu.add_fault(m.fault.clone()))
            .collect()
    }

    /// The power cuts as a [`PowerCutPlan`] to drive during the run.
    pub fn power_cuts(&self) -> PowerCutPlan {
        PowerCutPlan::new(self.cuts.clone())
    }
}

/// Drives the planned power cuts over a run: the wake loop calls [`arm`](Self::arm) when a
/// phase starts (the first flash operation of the download, the bootloader's install), and
/// [`take_fired`](Self::take_fired) after flash work, which says whether the cut fired.
///
/// Each cut fires at most once; at most one is scheduled on the flash at a time (the flash
/// holds one), the first planned cut of the phase not yet used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerCutPlan {
    pending: Vec<PlannedCut>,
    armed: Option<(PlannedCut, u64)>,
    fired: Vec<PlannedCut>,
}

impl PowerCutPlan {
    /// A plan of `cuts`, none armed.
    pub fn new(cuts: Vec<PlannedCut>) -> Self {
        Self {
            pending: cuts,
            armed: None,
            fired: Vec::new(),
        }
    }

    /// `phase` starts now: schedules its next planned cut on `flash`, at the flash's current
    /// operation count plus the cut's index. Does nothing when a cut of the same phase is
    /// already armed (a download resumed at a later wake keeps its count) or none is
    /// planned; a cut of another phase still armed is withdrawn and stays pending.
    /// Returns the cut scheduled now, if any.
    pub fn arm(&mut self, phase: CutPhase, flash: &mut ElectronFlash) -> Option<Cut> {
        if let Some((armed, _)) = self.armed {
            if armed.phase == phase {
                return None;
            }
            self.disarm(flash);
        }
        let i = self.pending.iter().position(|c| c.phase == phase)?;
        let planned = self.pending.remove(i);
        let cut = Cut {
            at: flash.stats().ops + planned.at_op,
            kind: planned.kind,
        };
        flash.schedule_cut(cut);
        self.armed = Some((planned, cut.at));
        Some(cut)
    }

    /// The armed cut is withdrawn (its phase ended before reaching it); it goes back to the
    /// pending cuts, to count again from the phase's next start.
    pub fn disarm(&mut self, flash: &mut ElectronFlash) {
        if let Some((planned, _)) = self.armed.take() {
            flash.clear_cut();
            self.pending.insert(0, planned);
        }
    }

    /// After flash work: if the armed cut fired (`flash` is powered off), records it and
    /// returns it; the caller then plays the power cut (modem, retained memory, reset) and
    /// powers the flash on.
    pub fn take_fired(&mut self, flash: &ElectronFlash) -> Option<PlannedCut> {
        if !flash.is_powered_off() {
            return None;
        }
        let (planned, _) = self.armed.take()?;
        self.fired.push(planned);
        Some(planned)
    }

    /// Cuts that fired, in order.
    pub fn fired(&self) -> &[PlannedCut] {
        &self.fired
    }

    /// Cuts not fired (pending or armed).
    pub fn remaining(&self) -> usize {
        self.pending.len() + usize::from(self.armed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::flash::FlashTiming;
    use embedded_storage::nor_flash::NorFlash;

    #[test]
    fn parses_cuts_and_modem_faults() {
        let p = FaultPlan::parse("cut:download@40,cut:install@7:before,modem:reboot@AT+USORF#12")
            .unwrap();
        assert_eq!(
            p.cuts,
            vec![
                PlannedCut {
                    phase: CutPhase::Download,
                    at_op: 40,
                    kind: CutKind::Torn
                },
                PlannedCut {
                    phase: CutPhase::Install,
                    at_op: 7,
                    kind: CutKind::Before
                },
            ]
        );
        assert_eq!(p.modem.len(), 1);
        assert_eq!(
            p.modem[0].fault,
            Fault::new(
                Trigger::nth("AT+USORF", 12),
                Action::Reboot {
                    garbage: Vec::new()
                }
            )
        );
        let d = FaultPlan::parse("modem:delay=2500@AT+USOST").unwrap();
        assert_eq!(
            d.modem[0].fault.action,
            Action::DelayResponse(Duration::from_millis(2500))
        );
        assert_eq!(FaultPlan::parse("").unwrap(), FaultPlan::default());
    }

    #[test]
    fn refuses_bad_items_by_name() {
        for bad in [
            "cut:boot@3",
            "cut:download@x",
            "cut:download@3:sideways",
            "modem:explode@AT+CSQ",
            "modem:drop@CSQ",
            "modem:drop@AT+CSQ#0",
            "nonsense",
        ] {
            let e = FaultPlan::parse(bad).unwrap_err();
            assert_eq!(e.item, bad);
        }
    }

    #[test]
    fn armed_cut_counts_from_the_phase_start_and_fires_once() {
        let mut flash = ElectronFlash::new(SimClock::standalone(), FlashTiming::TYPICAL);
        // Two operations before the download starts.
        flash.erase(0, 0x4000).unwrap();
        flash.write(0, &[0; 4]).unwrap();
        let mut plan = FaultPlan::parse("cut:download@2:before")
            .unwrap()
            .power_cuts();
        assert_eq!(plan.arm(CutPhase::Install, &mut flash), None);
        let cut = plan.arm(CutPhase::Download, &mut flash).unwrap();
        assert_eq!(cut.at, 4);
        // Re-arming at a later wake of the same download changes nothing.
        assert_eq!(plan.arm(CutPhase::Download, &mut flash), None);
        flash.write(4, &[0; 4]).unwrap();
        assert_eq!(plan.take_fired(&flash), None);
        flash.write(8, &[0; 4]).unwrap();
        assert!(flash.write(12, &[0; 4]).is_err());
        let fired = plan.take_fired(&flash).unwrap();
        assert_eq!(fired.phase, CutPhase::Download);
        assert_eq!(plan.remaining(), 0);
        flash.power_on();
        assert_eq!(plan.take_fired(&flash), None);
    }

    #[test]
    fn withdrawn_cut_stays_pending() {
        let mut flash = ElectronFlash::new(SimClock::standalone(), FlashTiming::TYPICAL);
        let mut plan = FaultPlan::parse("cut:download@100").unwrap().power_cuts();
        plan.arm(CutPhase::Download, &mut flash).unwrap();
        plan.disarm(&mut flash);
        assert_eq!(flash.scheduled_cut(), None);
        assert_eq!(plan.remaining(), 1);
    }
}
