//! `electron-sim`: the Electron story on loopback. A thin layer over the `electron_sim`
//! library: options → [`Scenario`] → [`Simulation::setup`] → the wake loop → report.
//!
//! The wake loop is [`electron_sim::story::play`]: the `electron-app` wake cycle on the
//! virtual Electron, part 1 (v2 queued while asleep, downloaded across wakes, installed,
//! confirmed) then part 2 (v3 fails its self-check and is rolled back).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use electron_sim::faults::FaultPlan;
use electron_sim::link::LinkConfig;
use electron_sim::sim::{Scenario, Simulation};
use electron_sim::story::{self, StoryOptions};

/// `--fleet N`: the fleet under a staged rollout, with a progress bar.
fn fleet(cli: &Cli, sim: &mut Simulation) -> ExitCode {
    let opts = StoryOptions {
        rollback: false,
        max_wakes: cli.max_wakes,
    };
    let outcome = match story::play_fleet(sim, opts, |bar| eprintln!("{bar}")) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("electron-sim: the fleet could not be played: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    print!("{}", sim.report.timeline());
    println!("\n── fleet summary ──");
    print!("{}", outcome.table());
    if let Some(path) = &cli.json {
        let written = serde_json::to_string_pretty(&outcome)
            .map_err(std::io::Error::other)
            .and_then(|t| std::fs::write(path, t + "\n"));
        if let Err(e) = written {
            eprintln!("electron-sim: --json {}: {e}", path.display());
            return ExitCode::from(EXIT_SETUP);
        }
    }
    if cli.keep_serving {
        keep_serving(sim);
    }
    ExitCode::from(outcome.exit_code())
}

/// `--keep-serving`: the server keeps running for the `ota-cloud` CLI until interrupted.
fn keep_serving(sim: &mut Simulation) -> ! {
    let dir = sim.cloud.keep_data();
    println!(
        "serving on {} until interrupted; data kept in {}\ninspect with:\n{}",
        sim.cloud.udp_addr(),
        dir.display(),
        sim.cloud.inspect_commands()
    );
    loop {
        std::thread::park();
    }
}
use ota_cloud::Share;

/// The story's power cuts: one mid-download, one mid-install.
const DEFAULT_FAULTS: &str = "cut:download@500:torn,cut:install@40:torn";

/// Exit status when the run could not be set up (bad option, server, socket).
const EXIT_SETUP: u8 = 3;

/// A virtual Particle Electron that sleeps, wakes, checks in with an in-process ota-cloud over
/// a shaped loopback link, and takes the update queued while it slept.
#[derive(Parser, Debug)]
#[command(name = "electron-sim", version)]
struct Cli {
    /// Bytes of each image (v1, v2, v3).
    #[arg(long, default_value_t = 200 * 1024)]
    image_size: usize,
    /// Awake budget of one wake, in ms.
    #[arg(long, default_value_t = 10_000)]
    awake_budget_ms: u32,
    /// The most the cloud's awake extension may add to a wake that works on an update, ms.
    #[arg(long, default_value_t = 20_000)]
    max_extension_ms: u32,
    /// Manifest chunk size in bytes: 256 or 512 (a chunk fits one 1024-byte SARA datagram).
    #[arg(long, default_value_t = 512)]
    chunk_size: u32,
    /// Link rate in bytes per second each way (0: unlimited, no air time charged).
    #[arg(long, default_value_t = 10_000)]
    link_rate: u64,
    /// Probability (0..1) that a datagram is lost, each way.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Fault plan: `cut:download@N[:KIND]`, `cut:install@N[:KIND]`,
    /// `modem:ACTION@PREFIX[#K]`, comma-separated (see `electron_sim::faults`); `none` for
    /// none. The default cuts the power once mid-download (a torn chunk write, 500 flash
    /// operations into the download) and once mid-install (40 operations into the swap).
    #[arg(long, default_value = DEFAULT_FAULTS)]
    faults: String,
    /// Seed of keys, images, link loss and SRAM garbage: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Devices: more than one runs a fleet on staggered schedules under a staged rollout.
    #[arg(long, default_value_t = 1)]
    fleet: u32,
    /// First share of the fleet's staged rollout, in percent.
    #[arg(long, default_value_t = 25)]
    initial_percent: u8,
    /// The sleep the server grants between check-ins, in seconds.
    #[arg(long, default_value_t = 900)]
    sleep_s: u32,
    /// Keep the server and its data directory after the story, for the `ota-cloud` CLI.
    #[arg(long)]
    keep_serving: bool,
    /// The most wakes each part may take before the story gives up.
    #[arg(long, default_value_t = 2_000)]
    max_wakes: u32,
    /// Play only the update (skip the second part: v3 failing its self-check).
    #[arg(long)]
    no_rollback: bool,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Cli {
    fn scenario(&self) -> Result<Scenario, String> {
        let plan = if self.faults == "none" {
            ""
        } else {
            &self.faults
        };
        let faults = FaultPlan::parse(plan).map_err(|e| e.to_string())?;
        let initial_share =
            Share::percent(self.initial_percent).ok_or("--initial-percent is 0 to 100")?;
        Ok(Scenario {
            image_size: self.image_size,
            awake_budget_ms: self.awake_budget_ms,
            max_extension_ms: self.max_extension_ms,
            chunk_size: self.chunk_size,
            link: LinkConfig {
                rate_bytes_per_s: (self.link_rate > 0).then_some(self.link_rate),
                loss: self.loss,
                seed: self.seed,
            },
            faults,
            seed: self.seed,
            fleet: self.fleet,
            sleep_s: self.sleep_s,
            initial_share,
            ..Scenario::default()
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let scenario = match cli.scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("electron-sim: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let mut sim = match Simulation::setup(&scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("electron-sim: set-up failed: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    print!("{}", sim.plan());
    println!();
    if scenario.fleet > 1 {
        return fleet(&cli, &mut sim);
    }
    let opts = StoryOptions {
        rollback: !cli.no_rollback,
        max_wakes: cli.max_wakes,
    };
    let outcome = match story::play(&mut sim, opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("electron-sim: the story could not be played: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    println!("── part 1: v2 queued while the device sleeps ──");
    print!("{}", sim.report.timeline());
    if outcome.rollback.is_some() {
        println!("\n── part 2: v3 fails its self-check and is rolled back ──");
        print!("{}", outcome.rollback_timeline);
    }
    println!("\n── summary (part 1) ──");
    print!("{}", outcome.summary.table());
    print!("{}", outcome.figures());
    if let Some(r) = &outcome.rollback {
        println!("\n── summary (part 2) ──");
        print!("{}", r.summary.table());
    }
    for v in &outcome.violations {
        eprintln!("electron-sim: modem interface violation: {v}");
    }
    if let Some(path) = &cli.json {
        let text = match serde_json::to_string_pretty(&outcome) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("electron-sim: --json: {e}");
                return ExitCode::from(EXIT_SETUP);
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("electron-sim: --json {}: {e}", path.display());
            return ExitCode::from(EXIT_SETUP);
        }
    }
    let code = outcome.exit_code();
    println!(
        "\n{}",
        if code == 0 {
            "story: v2 confirmed"
        } else {
            "story: FAILED (see the summary)"
        }
    );
    if cli.keep_serving {
        keep_serving(&mut sim);
    }
    ExitCode::from(code)
}
