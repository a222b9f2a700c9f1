//! The scenario (every option of a run, as data) and the set-up of a run: the cloud, the link,
//! the fleet of virtual Electrons provisioned with v1, and the report to fill. The wake cycle
//! that plays the story on it is the `electron-app` crate, driven by [`crate::story`]; nothing
//! here simulates a wake.

use core::fmt;
use core::time::Duration;

use modem_ublox_emu::{Emulator, EmulatorConfig, Model};
use ota_cloud::{RolloutId, Share, Target};
use ota_core::Layout;

use crate::clock::ActiveClock;
use crate::cloud::{Cloud, CloudConfig, CloudError, V2};
use crate::device::{DeviceSetup, VirtualElectron};
use crate::factory::{factory_provision, FactoryError};
use crate::faults::FaultPlan;
use crate::flash::FlashTiming;
use crate::link::{LinkConfig, LinkShaper};
use crate::report::{Report, SimVersion};
use crate::retained::BackupPower;

/// Real time the emulator sleeps per `DelayNs` call while a socket is open (its default is
/// 1 ms, which makes a wake's virtual waits cost as much real time). 50 µs is enough for the
/// relay and the server threads to run; a loopback round trip then shows as a few ms of
/// virtual time, well under the link's air time at 10 kB/s.
pub const REAL_SLEEP_CAP: Duration = Duration::from_micros(50);

/// Every option of a run. `Default` is the README's run: one device, a 200 KiB update, a
/// 10 s awake budget, 512-byte chunks, a 10 kB/s lossless link, no faults, seed 1.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Bytes of each image (v1, v2, v3).
    pub image_size: usize,
    /// Awake budget of one wake, ms (for the wake cycle).
    pub awake_budget_ms: u32,
    /// The most the cloud's awake extension may lengthen one wake for an update, ms (the
    /// app's `AppConfig::max_extension_ms`; default 20 000, the app's default).
    pub max_extension_ms: u32,
    /// Manifest chunk size (256 or 512: a chunk and its frame header and tag must fit the
    /// SARA's 1024-byte UDP datagram, cloud-proto's `MAX_CHUNK_DATA_DATAGRAM`).
    pub chunk_size: u32,
    /// The link.
    pub link: LinkConfig,
    /// Power cuts and modem faults (applied to every device).
    pub faults: FaultPlan,
    /// Seed of keys, images, loss and garbage.
    pub seed: u64,
    /// Devices (1: the story; more: a fleet on staggered schedules under a staged rollout).
    pub fleet: u32,
    /// The sleep the server grants between check-ins, s.
    pub sleep_s: u32,
    /// Flash timing.
    pub flash_timing: FlashTiming,
    /// Backup SRAM power model.
    pub backup: BackupPower,
    /// The modem model (the Electron ships with SARA-U260/U270/U201 or G350).
    pub model: Model,
    /// The flash layout (ota-core regions).
    pub layout: Layout,
    /// First share of a fleet's staged rollout (all devices when the fleet is one).
    pub initial_share: Share,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            image_size: 200 * 1024,
            awake_budget_ms: 10_000,
            max_extension_ms: 20_000,
            chunk_size: 512,
            link: LinkConfig {
                rate_bytes_per_s: Some(10_000),
                loss: 0.0,
                seed: 1,
            },
            faults: FaultPlan::default(),
            seed: 1,
            fleet: 1,
            sleep_s: 900,
            flash_timing: FlashTiming::TYPICAL,
            backup: BackupPower::None,
            model: Model::SaraU260,
            layout: Layout::ELECTRON,
            initial_share: Share::ALL,
        }
    }
}

/// A scenario value out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioError(pub &'static str);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Checks the values the run depends on.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the first bad value.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if !self.chunk_size.is_power_of_two()
            || self.chunk_size < 256
            || self.chunk_size as usize > cloud_proto::MAX_CHUNK_DATA_DATAGRAM
        {
            return Err(ScenarioError(
                "--chunk-size is 256 or 512 (a chunk must fit one 1024-byte SARA datagram)",
            ));
        }
        if self.image_size < crate::cloud::MARKER_LEN
            || self.image_size as u64 > u64::from(self.layout.capacity())
        {
            return Err(ScenarioError(
                "--image-size must be at least 16 bytes and fit the layout's slots",
            ));
        }
        if !(0.0..=1.0).contains(&self.link.loss) {
            return Err(ScenarioError("--loss is a probability from 0 to 1"));
        }
        if self.link.rate_bytes_per_s == Some(0) {
            return Err(ScenarioError("--link-rate must be above 0"));
        }
        if self.fleet == 0 {
            return Err(ScenarioError("--fleet is at least 1"));
        }
        if self.awake_budget_ms == 0 {
            return Err(ScenarioError("--awake-budget-ms must be above 0"));
        }
        Ok(())
    }
}

/// Why a run could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// A bad option.
    Scenario(ScenarioError),
    /// The cloud.
    Cloud(CloudError),
    /// The link relay.
    Link(std::io::Error),
    /// The factory image.
    Factory(FactoryError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scenario(e) => fmt::Display::fmt(e, f),
            Self::Cloud(e) => fmt::Display::fmt(e, f),
            Self::Link(e) => write!(f, "link relay: {e}"),
            Self::Factory(e) => write!(f, "factory: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

impl From<CloudError> for SetupError {
    fn from(e: CloudError) -> Self {
        Self::Cloud(e)
    }
}

/// A run, set up: what the wake loop drives.
#[derive(Debug)]
pub struct Simulation {
    /// The options.
    pub scenario: Scenario,
    /// The server, its images and its readers.
    pub cloud: Cloud,
    /// The link every modem sends through.
    pub link: LinkShaper,
    /// The server's clock: point it at the device that runs ([`ActiveClock::set`]).
    pub server_clock: ActiveClock,
    /// The fleet (one device for the story), provisioned with v1.
    pub devices: Vec<VirtualElectron>,
    /// The report to fill.
    pub report: Report,
    /// The rollout of the update, once queued.
    pub rollout: Option<RolloutId>,
}

impl Simulation {
    /// Sets up a run: validates the scenario, creates one emulator per device (each device's
    /// clock is its emulator's), starts the cloud on the first device's clock, the link relay
    /// in front of it, provisions every device on the server and programs v1 into its flash.
    /// No wake runs and no release is queued.
    ///
    /// # Errors
    /// [`SetupError`].
    ///
    /// Cost: the cloud's (three signatures), one store transaction and one SHA-256 pass over
    /// v1 per device.
    pub fn setup(scenario: &Scenario) -> Result<Self, SetupError> {
        scenario.validate().map_err(SetupError::Scenario)?;
        let emulators: Vec<Emulator> = (0..scenario.fleet)
            .map(|_| {
                let mut cfg = EmulatorConfig::for_model(scenario.model);
                cfg.real_sleep_cap = REAL_SLEEP_CAP;
                Emulator::with_config(scenario.model, cfg)
            })
            .collect();
        let first =
            crate::clock::SimClock::new(emulators[0].clone(), crate::clock::DEFAULT_EPOCH_UNIX_MS);
        let server_clock = ActiveClock::new(&first);
        let mut cloud = Cloud::start(
            &CloudConfig {
                image_size: scenario.image_size,
                chunk_size: scenario.chunk_size,
                seed: scenario.seed,
                next_checkin_s: scenario.sleep_s,
            },
            server_clock.server_clock(),
        )?;
        let link = LinkShaper::start(cloud.udp_addr(), scenario.link, Some(server_clock.clone()))
            .map_err(SetupError::Link)?;
        let v1 = cloud.image(crate::cloud::V1)?.clone();
        let mut devices = Vec::with_capacity(emulators.len());
        for (i, emulator) in emulators.into_iter().enumerate() {
            let credentials = cloud.add_device(&["fleet"])?;
            let mut dev = VirtualElectron::new(
                DeviceSetup {
                    emulator,
                    timing: scenario.flash_timing,
                    backup: scenario.backup,
                    seed: scenario.seed ^ (i as u64).rotate_left(40),
                    layout: scenario.layout,
                    server: link.addr(),
                    faults: scenario.faults.clone(),
                },
                credentials,
            );
            factory_provision(
                &mut dev.flash,
                scenario.layout,
                &v1,
                cloud.trusted_key(),
                cloud.hardware_id(),
            )
            .map_err(SetupError::Factory)?;
            devices.push(dev);
        }
        Ok(Self {
            scenario: scenario.clone(),
            cloud,
            link,
            server_clock,
            devices,
            report: Report::new(),
            rollout: None,
        })
    }

    /// Queues `version` for the product, over the scenario's initial share (staged for a
    /// fleet), and records it in the report at the server's time.
    ///
    /// # Errors
    /// [`CloudError`].
    pub fn queue_release(&mut self, version: SimVersion) -> Result<RolloutId, CloudError> {
        let share = if self.scenario.fleet > 1 {
            self.scenario.initial_share
        } else {
            Share::ALL
        };
        let id = self.cloud.queue_release(version, Target::Product, share)?;
        let clock = self.server_clock.get();
        let wake = self.devices.first().map_or(0, VirtualElectron::wake);
        self.report.push(
            wake,
            clock.now(),
            crate::report::EventKind::ReleaseQueued {
                version,
                share_bp: share.bp(),
            },
            crate::report::Traffic::CheckIn,
            crate::report::Bytes::default(),
        );
        if version == V2 {
            self.rollout = Some(id);
        }
        Ok(id)
    }

    /// The plan of the run, as printed before it starts.
    pub fn plan(&self) -> String {
        let s = &self.scenario;
        let rate = s
            .link
            .rate_bytes_per_s
            .map_or_else(|| "unlimited".to_string(), |r| format!("{r} B/s"));
        let chunks = s.image_size.div_ceil(s.chunk_size as usize);
        let mut out = String::new();
        out.push_str(&format!(
            "server      ota-cloud on {} (UDP), data {}\n",
            self.cloud.udp_addr(),
            self.cloud.data_dir().display()
        ));
        out.push_str(&format!(
            "link        {} via relay {}, loss {:.1}%, seed {}\n",
            rate,
            self.link.addr(),
            s.link.loss * 100.0,
            s.link.seed
        ));
        for i in self.cloud.images() {
            out.push_str(&format!(
                "image       v{} ({} bytes, {} chunks of {}, counter {}{})\n",
                i.version,
                i.image.len(),
                chunks,
                s.chunk_size,
                i.security_counter,
                if i.self_check_fails {
                    ", fails its self-check"
                } else {
                    ""
                }
            ));
        }
        out.push_str(&format!(
            "fleet       {} × Electron ({:?}), v1 provisioned, device ids {}\n",
            self.devices.len(),
            s.model,
            self.devices
                .iter()
                .map(|d| d.credentials.id.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
        out.push_str(&format!(
            "wake        awake budget {} ms, sleep {} s, flash timing {}\n",
            s.awake_budget_ms,
            s.sleep_s,
            if s.flash_timing == FlashTiming::TYPICAL {
                "typical"
            } else {
                "custom"
            }
        ));
        let cuts: Vec<String> = s
            .faults
            .cuts
            .iter()
            .map(|c| format!("cut {}@{}", c.phase, c.at_op))
            .chain(s.faults.modem.iter().map(|m| m.spec.clone()))
            .collect();
        out.push_str(&format!(
            "faults      {}\n",
            if cuts.is_empty() {
                "none".to_string()
            } else {
                cuts.join(", ")
            }
        ));
        if let Some(r) = self.rollout {
            out.push_str(&format!("release     v2 queued as rollout {}\n", r.0));
        }
        out
    }

    /// Staggers a fleet's schedules: device `i` of `n` first wakes `i × sleep / n` after
    /// device 0 (its clock jumps by that much before its first wake, as if it had been asleep).
    /// Call once, before the first wake. A one-device fleet is unchanged.
    pub fn stagger_fleet(&mut self) {
        let n = self.devices.len() as u64;
        let sleep_us = u64::from(self.scenario.sleep_s) * 1_000_000;
        for (i, d) in self.devices.iter().enumerate() {
            d.clock
                .deep_sleep(Duration::from_micros(i as u64 * sleep_us / n));
        }
    }

    /// The device whose wake comes next: the one whose clock is earliest (each device's
    /// clock, after its deep sleep, stands at its next wake); ties go to the lowest index.
    /// Point the server's clock at it with [`activate`](Self::activate) before running it.
    pub fn next_device(&self) -> usize {
        self.devices
            .iter()
            .enumerate()
            .min_by_key(|(i, d)| (d.clock.now_us(), *i))
            .map_or(0, |(i, _)| i)
    }

    /// From now on the server's clock (and the link's air time) follow device `i`.
    ///
    /// # Panics
    /// If `i` is not a device index (a driver bug).
    pub fn activate(&self, i: usize) {
        self.server_clock.set(&self.devices[i].clock);
    }

    /// The server's sleep grant as a duration.
    pub fn sleep(&self) -> Duration {
        Duration::from_secs(u64::from(self.scenario.sleep_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_option() {
        let ok = Scenario::default();
        assert_eq!(ok.validate(), Ok(()));
        let bad = |f: fn(&mut Scenario)| {
            let mut s = Scenario::default();
            f(&mut s);
            s.validate().unwrap_err().0
        };
        assert!(bad(|s| s.chunk_size = 1000).contains("--chunk-size"));
        assert!(bad(|s| s.image_size = 1 << 20).contains("--image-size"));
        assert!(bad(|s| s.link.loss = 1.5).contains("--loss"));
        assert!(bad(|s| s.fleet = 0).contains("--fleet"));
        assert!(bad(|s| s.link.rate_bytes_per_s = Some(0)).contains("--link-rate"));
    }

    #[test]
    fn fleet_is_staggered_and_runs_in_wake_order() {
        let s = Scenario {
            image_size: 4096,
            fleet: 4,
            sleep_s: 800,
            ..Scenario::default()
        };
        let mut sim = Simulation::setup(&s).unwrap();
        sim.stagger_fleet();
        let starts: Vec<u64> = sim
            .devices
            .iter()
            .map(|d| d.clock.now_us() / 1_000_000)
            .collect();
        assert_eq!(starts, [0, 200, 400, 600]);
        assert_eq!(sim.next_device(), 0);
        // Device 0 wakes, works 6 s, sleeps 800 s: device 1 is next.
        sim.activate(0);
        sim.devices[0].clock.advance(Duration::from_secs(6));
        let sleep = sim.sleep();
        sim.devices[0].deep_sleep(sleep);
        assert_eq!(sim.next_device(), 1);
        sim.activate(1);
        let server_now = sim.server_clock.get().unix_ms();
        assert_eq!(server_now, crate::clock::DEFAULT_EPOCH_UNIX_MS + 200_000);
    }

    #[test]
    fn setup_provisions_every_device_with_v1_and_queues_nothing() {
        let s = Scenario {
            image_size: 8 * 1024,
            fleet: 3,
            initial_share: Share::percent(50).unwrap(),
            ..Scenario::default()
        };
        let mut sim = Simulation::setup(&s).unwrap();
        assert_eq!(sim.devices.len(), 3);
        for d in &sim.devices {
            assert_eq!(d.running_image().map(|m| m.version), Some(crate::cloud::V1));
            assert_eq!(d.server, sim.link.addr());
            assert_eq!(d.clock.now_us(), 0, "setup takes no virtual time");
        }
        let ids: Vec<u32> = sim.devices.iter().map(|d| d.credentials.id.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(sim.rollout.is_none());
        sim.queue_release(V2).unwrap();
        assert!(sim.rollout.is_some());
        assert!(sim.plan().contains("release     v2 queued as rollout 1"));
        assert_eq!(sim.report.events().len(), 1);
    }
}
