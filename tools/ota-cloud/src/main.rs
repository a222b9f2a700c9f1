//! `ota-cloud`: the reference deferred-OTA server's command line (see the crate README).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use cloud_proto::DeviceId;
use ota_cloud::admin::{AdminState, AdminToken};
use ota_cloud::keyfile::DeviceKeyFile;
use ota_cloud::limit::LimitArgs;
use ota_cloud::metrics::StoreMetrics;
use ota_cloud::postgres::{PgOptions, PgStore};
use ota_cloud::release::{digest_hex, upload_release};
use ota_cloud::server::{system_clock, Server, ServerConfig};
use ota_cloud::transport::{serve_tcp, serve_udp};
use ota_cloud::{
    MasterKey, NewDevice, NewProduct, ProductId, PublishId, RootKey, SqliteOptions, SqliteStore,
    Store,
};

mod rollout_cmd;
use rollout_cmd::RolloutCmd;

const DB: &str = "ota.db";
const MASTER: &str = "master.key";
const TOKEN: &str = "admin.token";
const RELEASES: &str = "releases";
const DB_ENV: &str = "OTA_CLOUD_DB";

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
    /// A PostgreSQL database instead of SQLite in the data directory: a `postgres://` or
    /// `postgresql://` URL (default: the `OTA_CLOUD_DB` environment variable). The master key,
    /// admin token and release files stay in `--data DIR`; `init` migrates the database.
    #[arg(long, global = true, value_name = "URL")]
    db: Option<String>,
    /// With `--db`: the PostgreSQL schema the tables live in (created if missing; default:
    /// `public`), for tests and for several deployments sharing one database.
    #[arg(long, global = true, value_name = "NAME")]
    db_schema: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates the data directory: master key (0600), admin token (0600), and the SQLite
    /// database (or, with `--db`, the PostgreSQL tables).
    Init,
    /// Serves cloud-proto over UDP and TCP, and the admin API and /metrics over HTTP, until
    /// killed. Logs go to stderr (filter: RUST_LOG, default info).
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
        /// The admin API (`/api/v1`, bearer token DIR/admin.token) and `/metrics` (no token):
        /// keep it on loopback or behind a proxy.
        #[arg(long, default_value = "127.0.0.1:4781")]
        admin: SocketAddr,
        /// Console session cookie for HTTPS only: `Secure` and the name `__Host-ota_session`
        /// (the browser then sends it over TLS only, and accepts it only from a secure origin
        /// with `Path=/` and no `Domain`). Set it when the console is reached through a TLS
        /// proxy; without TLS the browser cannot log in with it (loopback excepted).
        #[arg(long)]
        console_secure_cookie: bool,
        /// Rate limits (defaults a device following cloud-proto never meets).
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Prints stored publishes, oldest first: `id device counter topic received_ms data_hex`
    /// (tab separated), or one JSON object per line with --json.
    Events {
        /// Only publishes with an id above this one.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only this device's publishes.
        #[arg(long)]
        device: Option<u32>,
        /// Stop after printing this many.
        #[arg(long)]
        limit: Option<u64>,
        /// One JSON object per line: {"id","device","counter","topic","received_ms","data_hex"}.
        #[arg(long)]
        json: bool,
        /// Keep polling and printing new publishes until killed (or --limit is reached).
        #[arg(long)]
        follow: bool,
        /// With --follow: milliseconds between two polls when nothing new came.
        #[arg(long, default_value_t = 500)]
        poll_ms: u64,
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
    /// Rollouts: which devices are offered a release (nothing is offered without one).
    #[command(subcommand)]
    Rollout(RolloutCmd),
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
    /// Lists every product: id, name, hardware id, number of trusted release keys.
    List,
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
    /// Lists a product's releases: id (the update id devices see), version, SHA-256, size.
    List {
        /// Product id.
        #[arg(long)]
        product: u32,
    },
}

fn now_ms() -> u64 {
    system_clock()()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    ota_cloud::logging::init();
    let data = cli
        .data
        .clone()
        .context("no data directory: pass --data DIR")?;
    let db = match cli.db.clone() {
        Some(url) => Some(url),
        None => std::env::var(DB_ENV).ok().filter(|u| !u.is_empty()),
    };
    let backend = match db {
        None => Backend::Sqlite,
        Some(url) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!(
                    "--db / {DB_ENV}: expected a postgres:// or postgresql:// URL (without it \
                     the database is SQLite in --data DIR)"
                );
            }
            Backend::Postgres {
                url,
                schema: cli.db_schema.clone(),
            }
        }
    };
    if cli.db_schema.is_some() && matches!(backend, Backend::Sqlite) {
        bail!("--db-schema needs --db or {DB_ENV} (a PostgreSQL database)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli.cmd, &data, &backend))
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

/// Where the store lives.
enum Backend {
    /// `ota.db` in the data directory.
    Sqlite,
    /// A PostgreSQL database (`--db`), optionally in one schema (`--db-schema`).
    Postgres { url: String, schema: Option<String> },
}

impl Backend {
    fn pg_options(schema: &Option<String>) -> PgOptions {
        PgOptions {
            schema: schema.clone(),
            ..PgOptions::default()
        }
    }
}

/// Both stores' inherent `close` (waits for their connections to finish), behind one name so
/// the commands can be generic over the store; and the store's name for the logs.
trait Close {
    const KIND: &'static str;
    fn close(self) -> impl std::future::Future<Output = ()>;
}

impl Close for SqliteStore {
    const KIND: &'static str = "sqlite";
    fn close(self) -> impl std::future::Future<Output = ()> {
        SqliteStore::close(self)
    }
}

impl Close for PgStore {
    const KIND: &'static str = "postgresql";
    fn close(self) -> impl std::future::Future<Output = ()> {
        PgStore::close(self)
    }
}

fn not_initialised(data: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not initialised: run `ota-cloud init --data {}` first",
        data.display(),
        data.display()
    )
}

fn load_master(data: &Path) -> Result<MasterKey> {
    MasterKey::load(&data.join(MASTER))
        .with_context(|| format!("loading the master key {}", data.join(MASTER).display()))
}

fn open_sqlite(data: &Path) -> Result<SqliteStore> {
    let db = data.join(DB);
    if !db.exists() {
        return Err(not_initialised(data).context(format!("{} has no database", data.display())));
    }
    SqliteStore::open(&db, load_master(data)?, SqliteOptions::default())
        .with_context(|| format!("opening {}", db.display()))
}

async fn open_pg(data: &Path, url: &str, schema: &Option<String>) -> Result<PgStore> {
    if !data.join(MASTER).exists() {
        return Err(not_initialised(data));
    }
    // The URL is not in the message: it may carry a password.
    PgStore::connect(url, load_master(data)?, Backend::pg_options(schema))
        .await
        .context("connecting to the PostgreSQL database (--db)")
}

async fn run(cmd: Cmd, data: &Path, backend: &Backend) -> Result<()> {
    if let Cmd::Init = cmd {
        return init(data, backend).await;
    }
    match backend {
        Backend::Sqlite => with_store(cmd, data, open_sqlite(data)?).await,
        Backend::Postgres { url, schema } => {
            with_store(cmd, data, open_pg(data, url, schema).await?).await
        }
    }
}

async fn init(data: &Path, backend: &Backend) -> Result<()> {
    if data.join(DB).exists() || data.join(MASTER).exists() {
        bail!("{} is initialised already", data.display());
    }
    std::fs::create_dir_all(data.join(RELEASES))
        .with_context(|| format!("creating {}", data.display()))?;
    let master = MasterKey::create(&data.join(MASTER)).context("creating the master key")?;
    match backend {
        Backend::Sqlite => {
            SqliteStore::open(&data.join(DB), master, SqliteOptions::default())
                .context("creating the database")?
                .close()
                .await
        }
        Backend::Postgres { url, schema } => {
            match PgStore::connect(url, master, Backend::pg_options(schema)).await {
                Ok(store) => store.close().await,
                Err(e) => {
                    // The key was never used: a retry (say, once the server is up) may init.
                    let _ = std::fs::remove_file(data.join(MASTER));
                    return Err(e).context("setting up the PostgreSQL database (--db)");
                }
            }
        }
    }
    let mut token = [0u8; 32];
    getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("OS randomness: {e}"))?;
    write_secret(&data.join(TOKEN), &format!("{}\n", hex::encode(token)))?;
    println!("initialised {}", data.display());
    Ok(())
}

/// Runs one command (not `init`) on an open store, then closes it whatever the outcome.
async fn with_store<S: Store + StoreMetrics + Close>(
    cmd: Cmd,
    data: &Path,
    store: S,
) -> Result<()> {
    let store = Arc::new(store);
    let r = command(cmd, data, &store).await;
    // `serve`'s clones are gone once it returns.
    if let Ok(s) = Arc::try_unwrap(store) {
        s.close().await;
    }
    r
}

async fn command<S: Store + StoreMetrics + Close>(
    cmd: Cmd,
    data: &Path,
    store: &Arc<S>,
) -> Result<()> {
    match cmd {
        Cmd::Init => bail!("init runs without a store"),
        Cmd::Serve {
            udp,
            tcp,
            next_checkin_s,
            admin,
            console_secure_cookie,
            limits,
        } => {
            let config = ServerConfig {
                next_checkin_s,
                limits: limits.limits(),
                ..ServerConfig::default()
            };
            let server = Arc::new(Server::new(store.clone(), config, system_clock()));
            let u = tokio::net::UdpSocket::bind(udp)
                .await
                .with_context(|| format!("binding UDP {udp}"))?;
            let t = tokio::net::TcpListener::bind(tcp)
                .await
                .with_context(|| format!("binding TCP {tcp}"))?;
            let token = AdminToken::load(&data.join(TOKEN))
                .with_context(|| format!("reading {}", data.join(TOKEN).display()))?;
            let a = tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("binding the admin address {admin}"))?;
            let (ua, ta, aa) = (u.local_addr()?, t.local_addr()?, a.local_addr()?);
            tracing::info!(udp = %ua, tcp = %ta, admin = %aa, store = S::KIND, "listening");
            println!("listening udp {ua} tcp {ta} admin {aa}");
            std::io::stdout().flush()?;
            let state = AdminState::new(server.clone(), token, data.join(RELEASES))
                .with_console_secure_cookie(console_secure_cookie);
            tokio::select! {
                r = serve_udp(server.clone(), u) => r.context("UDP transport")?,
                r = serve_tcp(server, t) => r.context("TCP transport")?,
                r = ota_cloud::admin::serve(state, a) => r.context("admin API")?,
            }
        }
        Cmd::Events {
            after,
            device,
            limit,
            json,
            follow,
            poll_ms,
        } => {
            let filter = EventFilter {
                device: device.map(DeviceId),
                limit,
                json,
                follow,
                poll: std::time::Duration::from_millis(poll_ms.max(10)),
            };
            events(&**store, PublishId(after), &filter).await?;
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
            let id = store
                .add_product(NewProduct {
                    name,
                    hardware_id: hw.0,
                    release_keys: keys,
                })
                .await
                .context("adding the product")?;
            println!("{}", id.0);
        }
        Cmd::Product(ProductCmd::List) => {
            println!("id\tname\thardware_id\trelease_keys");
            for p in store.products().await.context("listing products")? {
                let hw = ota_tool::text::format_hardware_id(&ota_core::HardwareId(p.hardware_id));
                println!("{}\t{}\t{hw}\t{}", p.id.0, p.name, p.release_keys.len());
            }
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
            DeviceKeyFile {
                device,
                root_key: key_copy,
            }
            .write(&key_out)?;
            println!("{}", device.0);
        }
        Cmd::Device(DeviceCmd::List) => {
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
        }
        Cmd::Device(DeviceCmd::Show { id }) => {
            let d = store
                .device(DeviceId(id))
                .await?
                .with_context(|| format!("no device {id}"))?;
            let s = store.status(d.id).await?.unwrap_or_default();
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
            let r = upload_release(
                &**store,
                ProductId(product),
                &bytes,
                &data.join(RELEASES),
                now_ms(),
            )
            .await;
            let r = r.with_context(|| format!("uploading {}", file.display()))?;
            let id = store
                .release_id(r.digest)
                .await?
                .context("release vanished")?;
            println!(
                "{} version {}.{}.{} id {}",
                digest_hex(&r.digest),
                r.version.major,
                r.version.minor,
                r.version.patch,
                id.0
            );
        }
        Cmd::Release(ReleaseCmd::List { product }) => {
            rollout_cmd::release_list(&**store, ProductId(product)).await?
        }
        Cmd::Rollout(c) => rollout_cmd::run(&**store, c, now_ms()).await?,
    }
    Ok(())
}

struct EventFilter {
    device: Option<DeviceId>,
    limit: Option<u64>,
    json: bool,
    follow: bool,
    poll: std::time::Duration,
}

/// `ota-cloud events`: pages through the publishes after `after`, printing each as it comes;
/// with `follow`, polls for new ones until killed or `limit` is reached.
async fn events<S: Store>(store: &S, mut after: PublishId, f: &EventFilter) -> Result<()> {
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let page = ota_cloud::events::page(store, after, f.device, ota_cloud::events::MAX_LIMIT)
            .await
            .context("reading publishes")?;
        for p in &page.publishes {
            if f.limit.is_some_and(|l| printed >= l) {
                return Ok(());
            }
            let line = if f.json {
                ota_cloud::events::to_json(p).to_string()
            } else {
                ota_cloud::events::to_line(p)
            };
            writeln!(out, "{line}")?;
            printed += 1;
        }
        out.flush()?;
        if f.limit.is_some_and(|l| printed >= l) {
            return Ok(());
        }
        let progressed = page.next_after != after;
        after = page.next_after;
        if !progressed {
            if !f.follow {
                return Ok(());
            }
            tokio::time::sleep(f.poll).await;
        }
    }
}
