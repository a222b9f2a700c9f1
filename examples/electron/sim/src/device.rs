//! One virtual Electron: the SARA emulator (whose clock is the device's clock), the F205
//! flash, the backup SRAM, its credentials and its planned power cuts, with the two ways a
//! wake ends that are not the application's business: deep sleep and a power cut.
//!
//! The wake cycle (the `electron-app` crate) runs **on** this: it gets the flash, the
//! emulator's `Uart`/`PwrOn`/`Reset`/`VInt`/`Delay` handles, `clock.ms_since_reset()` as its
//! `now`, and the retained bytes; this type never decides anything a wake decides.

use core::time::Duration;
use std::net::SocketAddr;

use modem_ublox_emu::{Action, Emulator, Fault, Fired, Trigger, Violation};
use ota_core::Layout;

use crate::clock::SimClock;
use crate::cloud::{DeviceCredentials, ImageMarker};
use crate::faults::{FaultPlan, PowerCutPlan};
use crate::flash::{ElectronFlash, FlashTiming};
use crate::retained::{BackupPower, RetainedMemory};

/// How a virtual Electron is built.
#[derive(Debug, Clone)]
pub struct DeviceSetup {
    /// The modem emulator (its model and configuration are the caller's).
    pub emulator: Emulator,
    /// Flash timing.
    pub timing: FlashTiming,
    /// Backup SRAM power model.
    pub backup: BackupPower,
    /// Seed (backup SRAM garbage).
    pub seed: u64,
    /// Flash layout (ota-core regions).
    pub layout: Layout,
    /// Where the modem's UDP socket sends (the link shaper's address).
    pub server: SocketAddr,
    /// Faults: modem faults are added to the emulator now; power cuts are kept to arm.
    pub faults: FaultPlan,
}

/// One virtual Electron (see the [module docs](self)).
#[derive(Debug)]
pub struct VirtualElectron {
    /// Identity and root key on the server.
    pub credentials: DeviceCredentials,
    /// The SARA module (cheap handle; clones share it).
    pub emulator: Emulator,
    /// The device's clock (the emulator's).
    pub clock: SimClock,
    /// Internal flash.
    pub flash: ElectronFlash,
    /// Backup SRAM.
    pub retained: RetainedMemory,
    /// Planned power cuts, to [`arm`](PowerCutPlan::arm) as phases start.
    pub power_cuts: PowerCutPlan,
    /// Where the modem sends to reach the server (the link shaper).
    pub server: SocketAddr,
    /// The flash layout.
    pub layout: Layout,
    wake: u32,
    fired_seen: usize,
    violations_seen: usize,
}

impl VirtualElectron {
    /// A device powered for the first time: blank flash (program the factory image with
    /// [`crate::factory::factory_provision`]), backup SRAM garbage, uptime 0, wake 0.
    pub fn new(setup: DeviceSetup, credentials: DeviceCredentials) -> Self {
        let clock = SimClock::new(setup.emulator.clone(), crate::clock::DEFAULT_EPOCH_UNIX_MS);
        setup.faults.apply_modem(&setup.emulator);
        Self {
            credentials,
            flash: ElectronFlash::new(clock.clone(), setup.timing),
            retained: RetainedMemory::new(setup.backup, setup.seed),
            power_cuts: setup.faults.power_cuts(),
            emulator: setup.emulator,
            clock,
            server: setup.server,
            layout: setup.layout,
            wake: 0,
            fired_seen: 0,
            violations_seen: 0,
        }
    }

    /// The number of the wake in progress (0 before the first).
    pub fn wake(&self) -> u32 {
        self.wake
    }

    /// A wake (reset) begins: returns its number (1 for the first power-up).
    pub fn begin_wake(&mut self) -> u32 {
        self.wake += 1;
        self.wake
    }

    /// The wake ends in deep sleep for `d`: retained memory kept, time jumps, the next wake
    /// is a reset. The application has powered the modem down first (`AT+CPWROFF`).
    pub fn deep_sleep(&mut self, d: Duration) {
        self.retained.handle_deep_sleep();
        self.clock.deep_sleep(d);
    }

    /// The supply is cut (a planned cut fired in flash, or the story cuts it) and returns after
    /// `off_for`: the modem loses power at once ([`Action::PowerLoss`]), backup SRAM is lost
    /// unless a backup battery holds it, the flash powers on as the cut left it, and the next
    /// wake is a reset. Returns `true` when retained memory was lost.
    pub fn power_cut(&mut self, off_for: Duration) -> bool {
        self.emulator
            .add_fault(Fault::new(Trigger::At(self.clock.now()), Action::PowerLoss));
        // Let the cut fall due now, before time runs on.
        self.clock.advance(Duration::ZERO);
        let lost = self.retained.handle_power_cut();
        self.flash.power_on();
        self.clock.deep_sleep(off_for);
        lost
    }

    /// What the active slot holds, by its marker (`None`: not a simulated image).
    pub fn running_image(&self) -> Option<ImageMarker> {
        let start = self.layout.active.start as usize;
        self.flash
            .sim()
            .contents()
            .get(start..)
            .and_then(ImageMarker::parse)
    }

    /// Modem faults that fired since the last call (for the timeline).
    pub fn take_fired_modem_faults(&mut self) -> Vec<Fired> {
        let all = self.emulator.fired();
        let new = all.get(self.fired_seen..).unwrap_or(&[]).to_vec();
        self.fired_seen = all.len();
        new
    }

    /// Interface violations the emulator recorded since the last call (each fails the run).
    pub fn take_violations(&mut self) -> Vec<Violation> {
        let all = self.emulator.violations();
        let new = all.get(self.violations_seen..).unwrap_or(&[]).to_vec();
        self.violations_seen = all.len();
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modem_ublox_emu::Model;

    fn device(backup: BackupPower, faults: &str) -> VirtualElectron {
        let setup = DeviceSetup {
            emulator: Emulator::new(Model::SaraU260),
            timing: FlashTiming::TYPICAL,
            backup,
            seed: 5,
            layout: Layout::ELECTRON,
            server: "127.0.0.1:9".parse().unwrap(),
            faults: FaultPlan::parse(faults).unwrap(),
        };
        VirtualElectron::new(
            setup,
            DeviceCredentials {
                id: cloud_proto::DeviceId(1),
                root_key: [1; 32],
            },
        )
    }

    #[test]
    fn deep_sleep_keeps_retained_memory_and_resets_uptime() {
        let mut d = device(BackupPower::None, "");
        assert_eq!(d.begin_wake(), 1);
        d.retained.bytes_mut()[..4].copy_from_slice(b"KEEP");
        d.clock.advance(Duration::from_secs(6));
        d.deep_sleep(Duration::from_secs(900));
        assert_eq!(d.begin_wake(), 2);
        assert_eq!(&d.retained.bytes()[..4], b"KEEP");
        assert_eq!(d.clock.ms_since_reset(), 0);
        assert_eq!(d.clock.now(), Duration::from_secs(906));
    }

    #[test]
    fn power_cut_switches_the_modem_off_loses_retained_memory_and_powers_the_flash() {
        use embedded_storage::nor_flash::NorFlash;
        use ota_flash_sim::{Cut, CutKind};
        let mut d = device(BackupPower::None, "");
        d.emulator.power_on_now();
        assert!(d.emulator.is_on());
        d.retained.bytes_mut().fill(0x11);
        d.flash.schedule_cut(Cut {
            at: d.flash.stats().ops,
            kind: CutKind::Before,
        });
        assert!(d.flash.erase(0, 0x4000).is_err());
        assert!(d.power_cut(Duration::from_secs(30)));
        assert!(d.emulator.is_off());
        assert!(!d.flash.is_powered_off());
        assert_ne!(d.retained.bytes()[..8], [0x11; 8]);
        assert_eq!(d.clock.ms_since_reset(), 0);

        let mut kept = device(BackupPower::Battery, "");
        kept.retained.bytes_mut().fill(0x11);
        assert!(!kept.power_cut(Duration::from_secs(1)));
        assert_eq!(kept.retained.bytes()[..8], [0x11; 8]);
    }

    #[test]
    fn planned_modem_faults_are_on_the_emulator_and_reported_once() {
        use embedded_io::{Read, Write};
        let mut d = device(BackupPower::None, "modem:error@AT+CSQ");
        d.emulator.power_on_now();
        let mut uart = d.emulator.uart();
        uart.write_all(b"AT+CSQ\r\n").unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n") || !String::from_utf8_lossy(&got).contains("ERROR") {
            let n = uart.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(d.take_fired_modem_faults().len(), 1);
        assert!(d.take_fired_modem_faults().is_empty());
        assert!(d.take_violations().is_empty());
    }

    #[test]
    fn running_image_reads_the_marker_in_the_active_slot() {
        let mut d = device(BackupPower::None, "");
        assert_eq!(d.running_image(), None);
        let m = ImageMarker {
            version: crate::cloud::V2,
            self_check_fails: false,
        };
        d.flash.preload(Layout::ELECTRON.active.start, &m.encode());
        assert_eq!(d.running_image(), Some(m));
    }
}
