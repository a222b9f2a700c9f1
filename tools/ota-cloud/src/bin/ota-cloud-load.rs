//! `ota-cloud-load`: the load generator. Provisions a fleet in a fresh store, starts
//! `ota-cloud serve` as a child pinned to 1 or 2 cores, drives simulated sleeping devices
//! against it over loopback UDP, then drives a bare UDP echo server (same runtime, same
//! pinning) with the same client as the ceiling, and prints the figures (see the crate README,
//! "Performance").

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use ota_cloud::load::{self, Fleet, RunConfig, RunStats, Workload};
use ota_cloud::postgres::{PgOptions, PgStore};
use ota_cloud::{MasterKey, SqliteOptions, SqliteStore, Store};

#[derive(Parser)]
#[command(
    name = "ota-cloud-load",
    about = "Load generator for ota-cloud: durable check-ins/s, latency, echo ceiling, chunk MB/s"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Sub>,
    /// Fleet sizes to provision, each in a fresh store (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    devices: Vec<u32>,
    /// A PostgreSQL database (`postgres://…`) instead of SQLite in a temporary directory; each
    /// fleet gets a fresh schema `ota_load_<pid>_<devices>` in it (left there afterwards).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Server CPU sets to run on, each a `taskset -c` list, separated by `/` (default: 1 core,
    /// then 2 cores). The client is not pinned: it shares the machine's cores with the server.
    #[arg(long, default_value = "0/0,1")]
    cpus: String,
    /// Devices awake at once (each with its own UDP socket).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: start wakes at random (Poisson) times at this many per second in all, and
    /// report the latency at that load (counted from each wake's scheduled start). Default:
    /// closed loop, the rate the server sustains.
    #[arg(long, value_name = "WAKES_PER_S")]
    rate: Option<f64>,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of warm-up before each measured window (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds of the chunk-serving run (0: none).
    #[arg(long, default_value_t = 3.0)]
    chunk_seconds: f64,
    /// Chunk requests per wake in the chunk run (each 64 chunks of 1012 bytes).
    #[arg(long, default_value_t = 4)]
    chunk_requests: u32,
    /// Image size of the release served in the chunk run, KiB.
    #[arg(long, default_value_t = 256)]
    image_kib: usize,
    /// Seed of keys and wake order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `ota-cloud` binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Also write the table as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Pass the server's default rate limits instead of raising them out of the way (a
    /// closed-loop client wakes each of 1,000 devices several times a second, which no
    /// sleeping device does).
    #[arg(long)]
    default_limits: bool,
}

#[derive(Subcommand)]
enum Sub {
    /// The bare UDP echo server (started by the load generator itself as a pinned child):
    /// prints `listening udp ADDR`, echoes until killed.
    Echo {
        #[arg(long, default_value = "127.0.0.1:0")]
        udp: SocketAddr,
    },
}

/// Removes the run's data directory however the run ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One row of the table.
struct Row {
    db: &'static str,
    devices: u32,
    cpus: String,
    concurrency: usize,
    rate: Option<f64>,
    ours: RunStats,
    echo: RunStats,
    chunks: Option<RunStats>,
    server_cpu_s: f64,
    echo_cpu_s: f64,
    provision_s: f64,
    /// `/proc/loadavg`'s 1-minute figure after the row: other work on the machine.
    load_avg: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Sub::Echo { udp }) = cli.cmd {
        // The same runtime `ota-cloud serve` builds: worker threads = the CPUs it may use
        // (`available_parallelism` honours the `taskset` affinity).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return rt.block_on(async move {
            let s = tokio::net::UdpSocket::bind(udp).await?;
            println!("listening udp {}", s.local_addr()?);
            std::io::stdout().flush()?;
            load::echo_udp(s, ota_cloud::limit::Limits::DEFAULT.max_in_flight).await?;
            Ok(())
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

fn server_bin(cli: &Cli) -> Result<PathBuf> {
    if let Some(p) = &cli.server_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("ota-cloud");
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p ota-cloud) or pass --server-bin",
            p.display()
        );
    }
    Ok(p)
}

/// Spawns `cmd` under `taskset -c cpus` and waits for its `listening udp ADDR` line.
fn spawn_listening(cpus: &str, program: &Path, args: &[String]) -> Result<(Child, SocketAddr)> {
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg(cpus)
        .arg(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the server under taskset (util-linux)")?;
    let out = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    let addr = line
        .split_whitespace()
        .skip_while(|w| *w != "udp")
        .nth(1)
        .and_then(|a| a.parse().ok());
    match addr {
        Some(a) => Ok((child, a)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not start: printed {line:?}", program.display())
        }
    }
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Linux's USER_HZ is 100 on every architecture the kernel builds for user space.
    (ticks(11) + ticks(12)) / 100.0
}

/// The 1-minute load average (`/proc/loadavg`), 0 if unreadable.
fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn run(cli: Cli) -> Result<()> {
    let bin = server_bin(&cli)?;
    let me = std::env::current_exe()?;
    let cpu_sets: Vec<String> = cli.cpus.split('/').map(str::to_owned).collect();
    let limit_args: Vec<String> = if cli.default_limits {
        vec![]
    } else {
        // Checked on every frame, never met: the cost is measured, the closed loop is not
        // mistaken for a flood.
        [
            "--device-rate",
            "1000000",
            "--device-burst",
            "1000000",
            "--source-rate",
            "1000000",
            "--source-burst",
            "1000000",
        ]
        .map(String::from)
        .to_vec()
    };
    let image: Vec<u8> = (0..cli.image_kib * 1024)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let (container, release_key) = load::signed_release(&image).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for &devices in &cli.devices {
        let data =
            std::env::temp_dir().join(format!("ota-cloud-load-{}-{devices}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let _cleanup = RemoveOnDrop(data.clone());
        let mut db_args = vec!["--data".to_string(), data.display().to_string()];
        let schema = format!("ota_load_{}_{devices}", std::process::id());
        if let Some(url) = &cli.db {
            db_args.extend([
                "--db".into(),
                url.clone(),
                "--db-schema".into(),
                schema.clone(),
            ]);
        }
        let st = Command::new(&bin)
            .args(&db_args)
            .arg("init")
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("ota-cloud init failed");
        }
        let t = Instant::now();
        let master = || MasterKey::load(&data.join("master.key"));
        let releases = data.join("releases");
        eprintln!("provisioning {devices} devices…");
        if let Some(url) = &cli.db {
            let opts = PgOptions {
                schema: Some(schema.clone()),
                ..PgOptions::default()
            };
            let s = Arc::new(PgStore::connect(url, master()?, opts).await?);
            prepare(&s, devices, &cli, &container, &release_key, &releases).await?;
            if let Ok(s) = Arc::try_unwrap(s) {
                s.close().await;
            }
        } else {
            let s = SqliteStore::open(&data.join("ota.db"), master()?, SqliteOptions::default())?;
            let s = Arc::new(s);
            prepare(&s, devices, &cli, &container, &release_key, &releases).await?;
            if let Ok(s) = Arc::try_unwrap(s) {
                s.close().await;
            }
        }
        let provision_s = t.elapsed().as_secs_f64();
        let fleet = Arc::new(Fleet::new(devices, cli.seed));
        for cpus in &cpu_sets {
            let mut args = db_args.clone();
            args.extend(
                ["serve", "--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"].map(String::from),
            );
            args.extend(limit_args.iter().cloned());
            let (server, addr) = spawn_listening(cpus, &bin, &args)?;
            let config = RunConfig {
                server: addr,
                concurrency: cli.concurrency,
                warmup: Duration::from_secs_f64(cli.warmup),
                measure: Duration::from_secs_f64(cli.seconds),
                rto_ms: 1000,
                seed: cli.seed,
                rate: cli.rate,
            };
            eprintln!("{devices} devices, cpus {cpus}: check-ins…");
            // Server CPU over the measured window only: sampled once the warm-up is over.
            let pid = server.id();
            let warm = config.warmup;
            let cpu0 = tokio::spawn(async move {
                tokio::time::sleep(warm).await;
                cpu_seconds(pid)
            });
            let ours = load::run(fleet.clone(), Workload::CheckIns, config).await;
            let server_cpu_s = cpu_seconds(pid) - cpu0.await.unwrap_or(0.0);
            let chunks = match &ours {
                Ok(_) if cli.chunk_seconds > 0.0 => {
                    eprintln!("{devices} devices, cpus {cpus}: chunks…");
                    let c = RunConfig {
                        measure: Duration::from_secs_f64(cli.chunk_seconds),
                        rate: None,
                        ..config
                    };
                    let w = Workload::Chunks {
                        requests: cli.chunk_requests,
                    };
                    Some(load::run(fleet.clone(), w, c).await)
                }
                _ => None,
            };
            stop(server);
            let ours = ours.context("check-in run")?;
            let chunks = chunks.transpose().context("chunk run")?;
            if ours.wakes == 0 {
                bail!("the server answered no check-in");
            }
            eprintln!("{devices} devices, cpus {cpus}: echo ceiling…");
            let echo_args = vec!["echo".to_string()];
            let (echo, eaddr) = spawn_listening(cpus, &me, &echo_args)?;
            let epid = echo.id();
            let cpu0 = tokio::spawn(async move {
                tokio::time::sleep(warm).await;
                cpu_seconds(epid)
            });
            let e = load::run(
                fleet.clone(),
                Workload::Echo,
                RunConfig {
                    server: eaddr,
                    // The ceiling is what the echo sustains: closed loop.
                    rate: None,
                    ..config
                },
            )
            .await;
            let echo_cpu_s = cpu_seconds(epid) - cpu0.await.unwrap_or(0.0);
            stop(echo);
            let e = e.context("echo run")?;
            if e.wakes == 0 {
                bail!("the echo server answered nothing");
            }
            if chunks.as_ref().is_some_and(|c| c.chunk_bytes == 0) {
                bail!("the server served no chunk");
            }
            rows.push(Row {
                db: if cli.db.is_some() {
                    "postgres"
                } else {
                    "sqlite"
                },
                devices,
                cpus: cpus.clone(),
                concurrency: cli.concurrency,
                rate: cli.rate,
                ours,
                echo: e,
                chunks,
                server_cpu_s,
                echo_cpu_s,
                provision_s,
                load_avg: load_avg(),
            });
        }
    }
    print_table(&rows);
    if let Some(p) = &cli.json {
        std::fs::write(p, json(&rows)).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

async fn prepare<S: Store>(
    store: &Arc<S>,
    devices: u32,
    cli: &Cli,
    container: &[u8],
    release_key: &str,
    releases: &Path,
) -> Result<()> {
    let product = load::provision(store, devices, cli.seed, release_key.to_owned(), 256).await?;
    load::offer_to_all(&**store, product, container, releases).await?;
    Ok(())
}

fn cores(cpus: &str) -> usize {
    cpus.split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0) + 1 - a.parse::<usize>().unwrap_or(0),
            None => 1,
        })
        .sum()
}

fn print_table(rows: &[Row]) {
    println!(
        "| store | devices | server cores | devices awake (load) | check-ins/s | p50 ms | p99 ms | echo wakes/s | ratio | retransmits | lost | server CPU µs/wake (echo's) | chunk MB/s | load avg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let cpu_us = r.server_cpu_s * 1e6 / (r.ours.wakes.max(1) as f64);
        let echo_us = r.echo_cpu_s * 1e6 / (r.echo.wakes.max(1) as f64);
        let load = match r.rate {
            None => format!("{} (closed loop)", r.concurrency),
            Some(x) => format!("{}, offered {x:.0}/s", r.concurrency),
        };
        println!(
            "| {} | {} | {} (`taskset -c {}`) | {} | {:.0} | {:.2} | {:.2} | {:.0} | {} | {} | {} | {:.0} ({:.0}) | {} | {:.1} |",
            r.db,
            r.devices,
            cores(&r.cpus),
            r.cpus,
            load,
            r.ours.rate(),
            RunStats::quantile_ms(&r.ours.checkin_us, 0.5),
            RunStats::quantile_ms(&r.ours.checkin_us, 0.99),
            r.echo.rate(),
            match r.rate {
                None => format!("{:.0} %", 100.0 * r.ours.rate() / r.echo.rate().max(1e-9)),
                Some(_) => "(open loop)".into(),
            },
            r.ours.retransmissions,
            r.ours.gave_up,
            cpu_us,
            echo_us,
            r.chunks
                .as_ref()
                .map_or("-".into(), |c| format!("{:.1}", c.mb_per_s())),
            r.load_avg,
        );
    }
    let mut provisioning = Vec::new();
    for r in rows {
        let p = format!("{} {} in {:.1} s", r.db, r.devices, r.provision_s);
        if !provisioning.contains(&p) {
            provisioning.push(p);
        }
    }
    println!(
        "(provisioning: {}; server CPU: user + system over the measured window, per wake = check-in + goodbye)",
        provisioning.join(", ")
    );
}

fn json(rows: &[Row]) -> String {
    let mut out = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let q = |p| RunStats::quantile_ms(&r.ours.checkin_us, p);
        out.push_str(&format!(
            "  {{\"store\": \"{}\", \"devices\": {}, \"cpus\": \"{}\", \"cores\": {}, \"in_flight\": {}, \"offered_per_s\": {}, \
             \"checkins_per_s\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \
             \"echo_wakes_per_s\": {:.1}, \"ratio\": {:.4}, \"retransmissions\": {}, \"lost\": {}, \
             \"server_cpu_s\": {:.3}, \"echo_cpu_s\": {:.3}, \"chunk_mb_per_s\": {}, \
             \"provision_s\": {:.2}, \"load_avg\": {:.2}}}{}\n",
            r.db,
            r.devices,
            r.cpus,
            cores(&r.cpus),
            r.concurrency,
            r.rate.map_or("null".into(), |x| format!("{x:.1}")),
            r.ours.rate(),
            q(0.5),
            q(0.99),
            r.echo.rate(),
            r.ours.rate() / r.echo.rate().max(1e-9),
            r.ours.retransmissions,
            r.ours.gave_up,
            r.server_cpu_s,
            r.echo_cpu_s,
            r.chunks
                .as_ref()
                .map_or("null".into(), |c| format!("{:.2}", c.mb_per_s())),
            r.provision_s,
            r.load_avg,
            if i + 1 < rows.len() { "," } else { "" },
        ));
    }
    out.push_str("]\n");
    out
}
