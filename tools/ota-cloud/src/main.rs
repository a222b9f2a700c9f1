//! `ota-cloud`: the reference deferred-OTA server's command line (see the crate README).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use cloud_proto::DeviceId;
use ota_cloud::keyfile::DeviceKeyFile;
use ota_cloud::release::{digest_hex, upload_release};
use ota_cloud::server::{system_clock, Server, ServerConfig};
use ota_cloud::transport::{serve_tcp, serve_udp};
use ota_cloud::{
    MasterKey, NewDevice, NewProduct, ProductId, RootKey, SqliteOptions, SqliteStore, Store,
};

const DB: &str = "ota.db";
const MASTER: &str = "master.key";
const TOKEN: &str = "admin.token";
const RELEASES: &str = "releases";

#[derive(Parser)]
#[command(
    name = "ota-cloud",
    version,
    about = "Reference deferred-OTA server for cloud-proto devices"
)]
struct Cli {
    /// The data directory `init` created (database, master key, admin token, release files).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates the data directory: SQLite database, master key (0600), admin token (0600).
    Init,
    /// Serves cloud-proto over UDP and TCP until killed.
    Serve {
        /// UDP address (one frame per datagram).
        #[arg(long, default_value = "127.0.0.1:4780")]
        udp: SocketAddr,
        /// TCP address (COBS-framed stream).
        #[arg(long, default_value = "127.0.0.1:4780")]
        tcp: SocketAddr,
        /// Seconds every Welcome grants until the next check-in.
        #[arg(long, default_value_t = 3600)]
        next_checkin_s: u32,
    },
    /// Products.
    #[command(subcommand)]
    Product(ProductCmd),
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Releases.
    #[command(subcommand)]
    Release(ReleaseCmd),
}

#[derive(Subcommand)]
enum ProductCmd {
    /// Adds a product; prints its id.
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Hardware id its images carry: a name of at most 16 bytes, or 0x + 32 hex digits.
        #[arg(long)]
        hardware_id: String,
        /// A trusted release public key (SPKI PEM file, as `ota-tool keygen` writes); repeat
        /// for rotation.
        #[arg(long = "release-key")]
        release_keys: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Provisions a device: a new id and root key; writes its key file (0600); prints its id.
    Add {
        /// Its product id.
        #[arg(long)]
        product: u32,
        /// Where to write the device key file (never overwritten).
        #[arg(long)]
        key_out: PathBuf,
        /// A tag (group); repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The device id to use (default: the next free one).
        #[arg(long)]
        id: Option<u32>,
    },
    /// Lists devices: id, product, last check-in, running version, wakes.
    List,
    /// Shows what a device has reported.
    Show {
        /// Device id.
        id: u32,
    },
}

#[derive(Subcommand)]
enum ReleaseCmd {
    /// Verifies an `ota-tool sign` container against the product's keys and hardware id and
    /// stores it; prints its digest.
    Upload {
        /// Product id.
        #[arg(long)]
        product: u32,
        /// The container file.
        file: PathBuf,
    },
}

fn now_ms() -> u64 {
    system_clock()()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let data = cli
        .data
        .clone()
        .context("no data directory: pass --data DIR")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli.cmd, &data))
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn open(data: &Path) -> Result<SqliteStore> {
    let db = data.join(DB);
    if !db.exists() {
        bail!(
            "{} has no database: run `ota-cloud init --data {}` first",
            data.display(),
            data.display()
        );
    }
    let master = MasterKey::load(&data.join(MASTER))
        .with_context(|| format!("loading the master key {}", data.join(MASTER).display()))?;
    SqliteStore::open(&db, master, SqliteOptions::default())
        .with_context(|| format!("opening {}", db.display()))
}

async fn run(cmd: Cmd, data: &Path) -> Result<()> {
    match cmd {
        Cmd::Init => {
            if data.join(DB).exists() || data.join(MASTER).exists() {
                bail!("{} is initialised already", data.display());
            }
            std::fs::create_dir_all(data.join(RELEASES))
                .with_context(|| format!("creating {}", data.display()))?;
            let master =
                MasterKey::create(&data.join(MASTER)).context("creating the master key")?;
            let store = SqliteStore::open(&data.join(DB), master, SqliteOptions::default())
                .context("creating the database")?;
            store.close().await;
            let mut token = [0u8; 32];
            getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("OS randomness: {e}"))?;
            write_secret(&data.join(TOKEN), &format!("{}\n", hex::encode(token)))?;
            println!("initialised {}", data.display());
        }
        Cmd::Serve {
            udp,
            tcp,
            next_checkin_s,
        } => {
            let store = Arc::new(open(data)?);
            let config = ServerConfig {
                next_checkin_s,
                ..ServerConfig::default()
            };
            let server = Arc::new(Server::new(store, config, system_clock()));
            let u = tokio::net::UdpSocket::bind(udp)
                .await
                .with_context(|| format!("binding UDP {udp}"))?;
            let t = tokio::net::TcpListener::bind(tcp)
                .await
                .with_context(|| format!("binding TCP {tcp}"))?;
            println!("listening udp {} tcp {}", u.local_addr()?, t.local_addr()?);
            std::io::stdout().flush()?;
            tokio::select! {
                r = serve_udp(server.clone(), u) => r.context("UDP transport")?,
                r = serve_tcp(server, t) => r.context("TCP transport")?,
            }
        }
        Cmd::Product(ProductCmd::Add {
            name,
            hardware_id,
            release_keys,
        }) => {
            let hw = ota_tool::text::parse_hardware_id(&hardware_id)
                .map_err(|e| anyhow::anyhow!("--hardware-id: {e}"))?;
            let mut keys = Vec::new();
            for p in &release_keys {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("reading release key {}", p.display()))?;
                ota_tool::keys::public_key_from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                keys.push(pem);
            }
            let store = open(data)?;
            let id = store
                .add_product(NewProduct {
                    name,
                    hardware_id: hw.0,
                    release_keys: keys,
                })
                .await
                .context("adding the product")?;
            store.close().await;
            println!("{}", id.0);
        }
        Cmd::Device(DeviceCmd::Add {
            product,
            key_out,
            tags,
            id,
        }) => {
            if key_out.exists() {
                bail!("{} exists already; not overwritten", key_out.display());
            }
            let store = open(data)?;
            let root_key = RootKey::generate().context("generating the root key")?;
            let key_copy = RootKey::from_bytes(*root_key.expose());
            let device = store
                .add_device(
                    NewDevice {
                        id: id.map(DeviceId),
                        product: ProductId(product),
                        tags,
                        root_key,
                    },
                    now_ms(),
                )
                .await
                .context("adding the device")?;
            store.close().await;
            DeviceKeyFile {
                device,
                root_key: key_copy,
            }
            .write(&key_out)?;
            println!("{}", device.0);
        }
        Cmd::Device(DeviceCmd::List) => {
            let store = open(data)?;
            println!("id\tproduct\tlast_checkin_ms\tfirmware\twakes");
            for d in store.devices().await? {
                let s = store.status(d.id).await?.unwrap_or_default();
                let (seen, fw) = match s.last_checkin {
                    Some((t, r)) => (
                        t.to_string(),
                        format!(
                            "{}.{}.{}",
                            r.firmware.major, r.firmware.minor, r.firmware.patch
                        ),
                    ),
                    None => ("-".into(), "-".into()),
                };
                println!("{}\t{}\t{seen}\t{fw}\t{}", d.id.0, d.product.0, s.wakes);
            }
            store.close().await;
        }
        Cmd::Device(DeviceCmd::Show { id }) => {
            let store = open(data)?;
            let d = store
                .device(DeviceId(id))
                .await?
                .with_context(|| format!("no device {id}"))?;
            let s = store.status(d.id).await?.unwrap_or_default();
            store.close().await;
            println!(
                "device {}\nproduct {}\ntags {}",
                id,
                d.product.0,
                d.tags.join(",")
            );
            match s.last_checkin {
                Some((t, r)) => println!(
                    "last check-in {t} ms\nfirmware {}.{}.{}{}\nbattery {} mV\nlwm2m {:?} / {:?}\ndownload {:?}",
                    r.firmware.major,
                    r.firmware.minor,
                    r.firmware.patch,
                    if r.trial { " (trial)" } else { " (confirmed)" },
                    r.battery_mv,
                    s.state,
                    s.result,
                    r.download.map(|(u, b)| format!("update {} at byte {b}", u.0)),
                ),
                None => println!("never checked in"),
            }
            println!(
                "wakes {}\nforced sleeps {}\nbytes up {} down {}\nawake {} ms\npublishes {}",
                s.wakes, s.forced_sleeps, s.bytes_up, s.bytes_down, s.awake_ms, s.publishes
            );
        }
        Cmd::Release(ReleaseCmd::Upload { product, file }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let store = open(data)?;
            let r = upload_release(
                &store,
                ProductId(product),
                &bytes,
                &data.join(RELEASES),
                now_ms(),
            )
            .await;
            store.close().await;
            let r = r.with_context(|| format!("uploading {}", file.display()))?;
            println!(
                "{} version {}.{}.{}",
                digest_hex(&r.digest),
                r.version.major,
                r.version.minor,
                r.version.patch
            );
        }
    }
    Ok(())
}
