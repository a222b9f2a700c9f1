//! The application on the virtual Electron: `electron-app`'s board traits implemented over a
//! [`VirtualElectron`], and one reset of it played in full — ota-core's `Bootloader` on the
//! same flash, then the app's [`wake`] with `modem-ublox` driving the SARA
//! emulator, then the end the wake asks for (deep sleep or reset), or the power cut the fault
//! plan fired on the way.
//!
//! Only [`Board`] is implemented: `electron_app::PowerControl`'s two methods never return,
//! which a host cannot honour; the simulation acts on the returned
//! [`WakeEnd`] instead, as the app's docs say a host does.

use core::time::Duration;

use electron_app::{
    wake, AppConfig, Board, Buffers, Identity, IdentityError, WakeEnd, WakeReport, LAYOUT,
    RETAINED_LEN,
};
use modem_ublox::{Family, Modem, ModemConfig};
use modem_ublox_emu::{Fired, Violation};
use ota_core::{BootConfig, BootError, BootTarget, Bootloader, OpenError, Phase, TrustedKey};

use crate::clock::SimClock;
use crate::cloud::{ImageMarker, V1};
use crate::device::VirtualElectron;
use crate::faults::{CutPhase, PlannedCut};
use crate::link::{LinkShaper, LinkStats};
use crate::report::SimVersion;
use crate::retained::RetainedMemory;

/// How long the supply stays off after a planned power cut.
pub const POWER_OFF: Duration = Duration::from_secs(30);

/// The battery voltage the simulated fuel gauge reads (a charged LiPo).
pub const BATTERY_MV: u16 = 3_900;

/// The board of a virtual Electron during one wake: the device's clock since its reset, its
/// backup SRAM (the first [`RETAINED_LEN`] bytes), a fixed battery voltage, a sensor that
/// reads the wake number, and a self-check that reads the running image's
/// [`ImageMarker`] (v3's says it fails).
#[derive(Debug)]
pub struct SimBoard<'a> {
    clock: &'a SimClock,
    retained: &'a mut RetainedMemory,
    reading: u32,
    self_check_ok: bool,
}

impl<'a> SimBoard<'a> {
    /// The board of `dev`'s wake number `reading` (the sensor publishes it), with the
    /// self-check's answer fixed by what the active slot holds.
    pub fn new(
        clock: &'a SimClock,
        retained: &'a mut RetainedMemory,
        reading: u32,
        self_check_ok: bool,
    ) -> Self {
        Self {
            clock,
            retained,
            reading,
            self_check_ok,
        }
    }
}

impl Board for SimBoard<'_> {
    fn now_ms(&mut self) -> u64 {
        self.clock.ms_since_reset()
    }

    fn battery_mv(&mut self) -> u16 {
        BATTERY_MV
    }

    fn read_sensor(&mut self, out: &mut [u8]) -> usize {
        let b = self.reading.to_le_bytes();
        let n = b.len().min(out.len());
        out[..n].copy_from_slice(&b[..n]);
        n
    }

    fn load_retained(&mut self, out: &mut [u8; RETAINED_LEN]) {
        out.copy_from_slice(&self.retained.bytes()[..RETAINED_LEN]);
    }

    fn store_retained(&mut self, data: &[u8; RETAINED_LEN]) {
        self.retained.bytes_mut()[..RETAINED_LEN].copy_from_slice(data);
    }

    fn self_check(&mut self) -> bool {
        self.self_check_ok
    }
}

/// Writes the device's identity (its server id and root key) into flash sector 3, as the
/// factory does after programming v1. Not charged to the virtual clock.
///
/// # Errors
/// [`IdentityError`] from the app (a flash error).
pub fn provision_identity(dev: &mut VirtualElectron) -> Result<(), IdentityError> {
    Identity {
        device: dev.credentials.id,
        root_key: dev.credentials.root_key,
    }
    .provision(dev.flash.sim_mut())
}

/// The app's configuration for a device of this simulation: the link relay as the server,
/// the simulation's hardware id and release key, the scenario's awake budget and extension
/// cap; the app's defaults otherwise.
pub fn app_config<'k>(
    dev: &VirtualElectron,
    hardware: ota_core::HardwareId,
    keys: &'k [TrustedKey],
    awake_budget_ms: u32,
    max_extension_ms: u32,
) -> AppConfig<'k> {
    let mut cfg = AppConfig::new(dev.server, hardware, keys);
    cfg.awake_budget_ms = awake_budget_ms;
    cfg.max_extension_ms = max_extension_ms;
    cfg.factory_version = version_fw(V1);
    cfg
}

fn version_fw(v: SimVersion) -> cloud_proto::FirmwareVersion {
    cloud_proto::FirmwareVersion {
        major: v.major,
        minor: v.minor,
        patch: v.patch,
    }
}

/// A firmware version as the story names it.
pub fn sim_version(v: cloud_proto::FirmwareVersion) -> SimVersion {
    SimVersion::new(v.major, v.minor, v.patch)
}

/// What the bootloader did at this reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootOutcome {
    /// It booted `target`; `from` is the phase it found (`Installing`: it installed;
    /// `Reverting` or a rejected `Trial`: it reverted).
    Booted {
        /// The phase the state log held at the reset.
        from: Phase,
        /// What it booted.
        target: BootTarget,
    },
    /// It failed without a power cut (the run stops: a bootloader that cannot boot is a bug).
    Failed(BootFailure),
}

/// A bootloader failure that no power cut explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootFailure {
    /// Opening the state log.
    Open(OpenError),
    /// A step.
    Step(BootError),
}

/// Everything one reset of a virtual Electron did.
#[derive(Debug, Clone)]
pub struct WakeOutcome {
    /// The wake's number on the device (1 = first power-up).
    pub wake: u32,
    /// Virtual time at the reset.
    pub started: Duration,
    /// Virtual time when the wake ended (before its sleep).
    pub ended: Duration,
    /// The bootloader's part.
    pub boot: BootOutcome,
    /// The app's report; `None` when the reset never reached the app (a cut during the
    /// install, or a bootloader failure).
    pub report: Option<WakeReport>,
    /// The planned power cut that fired during this reset, if one did.
    pub cut: Option<PlannedCut>,
    /// What the link relay carried during the wake (payload bytes, datagrams, air time).
    pub link: LinkStats,
    /// Modem faults of the plan that fired.
    pub modem_faults: Vec<Fired>,
    /// Interface violations the emulator recorded (each fails the run).
    pub violations: Vec<Violation>,
    /// What the active slot holds after the wake (by its marker).
    pub running: Option<SimVersion>,
    /// The app reported [`WakeReport::modem_left_on`], and the board cut the modem's supply
    /// before acting on the wake's end (see [`run_wake`]).
    pub modem_supply_cut: bool,
}

impl WakeOutcome {
    /// Time from the reset to the end of the wake (bootloader and app).
    pub fn awake(&self) -> Duration {
        self.ended.saturating_sub(self.started)
    }
}

/// Cuts the modem's supply now (the board's supply switch): the emulator loses power at once
/// ([`Action::PowerLoss`](modem_ublox_emu::Action::PowerLoss)); flash, backup SRAM and the
/// clock are untouched. The next wake's `power_on` switches the module on from cold.
fn cut_modem_supply(dev: &mut VirtualElectron) {
    use modem_ublox_emu::{Action, Fault, Trigger};
    let now = dev.clock.now();
    dev.emulator
        .add_fault(Fault::new(Trigger::At(now), Action::PowerLoss));
    // Let the fault fall due before time runs on.
    dev.clock.advance(Duration::ZERO);
}

/// Waits (real time, at most ~50 ms) until the link relay has carried nothing for 3 ms, so a
/// wake's last datagrams (the Goodbye's answer) are counted in that wake.
fn settle(link: &LinkShaper) -> LinkStats {
    let mut last = link.stats();
    for _ in 0..16 {
        std::thread::sleep(Duration::from_millis(3));
        let now = link.stats();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Plays one reset of `dev`: the bootloader (arming the plan's install cut when it has an
/// install or revert to do), then, unless a cut stopped it, the app's wake (arming the
/// download cut first when `arm_download`), then the end: a fired cut plays the power cut
/// ([`VirtualElectron::power_cut`], off for [`POWER_OFF`]); otherwise the wake's
/// [`WakeEnd`] — deep sleep, or a reset (the next call runs the bootloader). When the app
/// reports [`WakeReport::modem_left_on`] (the modem did not confirm its power-down), the
/// board first cuts the modem's supply, as the Electron's firmware does through its PMIC
/// ([`WakeOutcome::modem_supply_cut`]): a sleep never runs with the modem on.
///
/// Cost: the bootloader's flash work, one wake (see [`electron_app::wake`]); a few ms of real
/// time for the link relay to settle.
pub fn run_wake(
    dev: &mut VirtualElectron,
    cfg: &AppConfig<'_>,
    link: &LinkShaper,
    bufs: &mut Buffers,
    arm_download: bool,
) -> WakeOutcome {
    let wake_no = dev.begin_wake();
    let started = dev.clock.now();
    let link_before = settle(link);
    let mut cut = None;

    // Bootloader.
    let boot = match Bootloader::open(&mut dev.flash, LAYOUT, BootConfig::default()) {
        Err(e) => BootOutcome::Failed(BootFailure::Open(e)),
        Ok(mut bl) => {
            let from = bl.phase();
            if matches!(from, Phase::Installing | Phase::Reverting) {
                dev.power_cuts.arm(CutPhase::Install, &mut dev.flash);
            }
            let mut buf = vec![0u8; 16 * 1024];
            match bl.run(&mut dev.flash, &mut buf, || {}) {
                Ok(target) => BootOutcome::Booted { from, target },
                Err(e) => BootOutcome::Failed(BootFailure::Step(e)),
            }
        }
    };
    let mut report = None;
    if let BootOutcome::Booted { from, .. } = boot {
        if matches!(from, Phase::Installing | Phase::Reverting) {
            // The install (or revert) is over: a cut it did not reach is withdrawn.
            dev.power_cuts.disarm(&mut dev.flash);
        }
        if arm_download {
            dev.power_cuts.arm(CutPhase::Download, &mut dev.flash);
        }
        let self_check_ok = dev
            .running_image()
            .is_some_and(|m: ImageMarker| !m.self_check_fails);
        let emu = dev.emulator.clone();
        let mut modem = Modem::new(
            emu.uart(),
            emu.delay(),
            emu.pwr_on(),
            ModemConfig::new(Family::U2),
        )
        .with_vint(emu.vint());
        let mut board = SimBoard::new(&dev.clock, &mut dev.retained, wake_no, self_check_ok);
        let r = wake(&mut board, &mut dev.flash, &mut modem, cfg, bufs);
        if r.install_marked {
            // The download is over: its cut, if not reached, does not fire in the install.
            dev.power_cuts.disarm(&mut dev.flash);
        }
        report = Some(r);
    }
    let ended = dev.clock.now();
    if let Some(c) = dev.power_cuts.take_fired(&dev.flash) {
        cut = Some(c);
    }
    let link_after = settle(link);
    let violations = dev.take_violations();
    let modem_faults = dev.take_fired_modem_faults();
    let running = dev.running_image().map(|m| m.version);
    // The board's supply switch: a modem the app could not switch off (its report says so)
    // loses power before the board sleeps or resets, as the Electron's firmware cuts it
    // through the PMIC. A power cut takes it down anyway.
    let modem_supply_cut = cut.is_none() && report.is_some_and(|r| r.modem_left_on);
    if modem_supply_cut {
        cut_modem_supply(dev);
    }
    if cut.is_some() {
        dev.power_cut(POWER_OFF);
    } else {
        match report.map(|r| r.end) {
            Some(WakeEnd::Sleep { ms }) => dev.deep_sleep(Duration::from_millis(ms)),
            // A reset: no time passes, the bootloader runs at the next call.
            Some(WakeEnd::Reset) | None => dev.clock.mark_reset(),
        }
    }
    WakeOutcome {
        wake: wake_no,
        started,
        ended,
        boot,
        report,
        cut,
        link: link_after.since(&link_before),
        modem_faults,
        violations,
        running,
        modem_supply_cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Scenario, Simulation};
    use modem_ublox_emu::{Action, Fault, Trigger};

    /// A modem that does not confirm its power-down (`V_INT` stuck high: the driver's
    /// fallbacks pulse `PWR_ON`, which switches the module on again) is reported by the app;
    /// the board then cuts the modem's supply before the deep sleep, so the sleep does not
    /// run with the modem on.
    #[test]
    fn a_modem_left_on_loses_its_supply_before_the_deep_sleep() {
        let mut sim = Simulation::setup(&Scenario {
            image_size: 4096,
            ..Scenario::default()
        })
        .unwrap();
        let keys = [sim.cloud.trusted_key()];
        let hw = sim.cloud.hardware_id();
        sim.activate(0);
        let dev = &mut sim.devices[0];
        provision_identity(dev).unwrap();
        dev.emulator.add_fault(Fault::new(
            Trigger::nth("AT+CPWROFF", 1),
            Action::VintStuckHigh,
        ));
        let cfg = app_config(dev, hw, &keys, 10_000, 20_000);
        let mut bufs = Box::new(Buffers::new());
        let o = run_wake(dev, &cfg, &sim.link, &mut bufs, false);
        let r = o.report.expect("the wake ran");
        assert!(r.checked_in, "{r:?}");
        assert!(r.modem_left_on, "{r:?}");
        assert!(matches!(r.end, WakeEnd::Sleep { .. }));
        assert!(dev.emulator.is_off(), "the supply was cut before the sleep");
        assert!(o.modem_supply_cut);
    }
}
