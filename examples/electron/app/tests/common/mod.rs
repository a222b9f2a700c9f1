//! The test bench: the reference server on loopback (SQLite in a temp dir, `serve_udp` on a
//! tokio thread) and a virtual Electron (the SARA-U260 emulator, the strict F205 flash,
//! retained memory as plain bytes, ota-core's bootloader at every reset).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cloud_proto::{DeviceId, FirmwareVersion};
use electron_app::{
    wake, AppConfig, Board, Buffers, Identity, WakeEnd, WakeReport, LAYOUT, RETAINED_LEN,
    SECTOR_SIZES,
};
use modem_ublox::{Family, Modem, ModemConfig};
use modem_ublox_emu::{Emulator, Model};
use ota_cloud::release::upload_release;
use ota_cloud::rollout::{ReleaseId, RolloutId, RolloutProgress};
use ota_cloud::server::{Server, ServerConfig};
use ota_cloud::transport::serve_udp;
use ota_cloud::{
    MasterKey, NewDevice, NewProduct, NewRollout, ProductId, RootKey, Share, SqliteOptions,
    SqliteStore, Store, Target,
};
use ota_core::{
    BootConfig, BootTarget, Bootloader, HardwareId, ImageParams, SecurityCounter, TrustedKey,
    Updater, UpdaterConfig, Version,
};
use ota_flash_sim::F2Flash;

/// Unix ms at the start of every story.
pub const T0: u64 = 1_800_000_000_000;
pub const HW: &str = "electron-v1";
pub const CHUNK: u32 = 512;

pub fn hw() -> HardwareId {
    HardwareId::from_name(HW).unwrap()
}

/// A deterministic image: `len` bytes from `seed`.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn fw(v: (u16, u16, u16)) -> FirmwareVersion {
    FirmwareVersion {
        major: v.0,
        minor: v.1,
        patch: v.2,
    }
}

/// The cloud: ota-cloud's server on a loopback UDP socket, its clock set by the test.
pub struct Cloud {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub server: Arc<Server<SqliteStore>>,
    pub clock: Arc<AtomicU64>,
    pub product: ProductId,
    pub signer: ed25519_compact::KeyPair,
    pub addr: SocketAddr,
}

impl Cloud {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("ota.db"), master, SqliteOptions::default())
                .unwrap(),
        );
        let signer = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([11; 32]));
        let product = rt
            .block_on(store.add_product(NewProduct {
                name: "electron".into(),
                hardware_id: hw().0,
                release_keys: vec![ota_tool::keys::public_key_to_pem(&signer.pk)],
            }))
            .unwrap();
        let clock = Arc::new(AtomicU64::new(T0));
        let c = clock.clone();
        let server = Arc::new(Server::new(
            store.clone(),
            ServerConfig {
                next_checkin_s: 900,
                ..ServerConfig::default()
            },
            Arc::new(move || c.load(Ordering::SeqCst)),
        ));
        let sock = rt
            .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        rt.spawn(serve_udp(server.clone(), sock));
        Self {
            rt,
            dir,
            store,
            server,
            clock,
            product,
            signer,
            addr,
        }
    }

    pub fn trusted(&self) -> Vec<TrustedKey> {
        vec![TrustedKey::try_new(*self.signer.pk).unwrap()]
    }

    /// A provisioned device: id and root key.
    pub fn device(&self, root: [u8; 32]) -> DeviceId {
        self.rt
            .block_on(self.store.add_device(
                NewDevice {
                    id: None,
                    product: self.product,
                    tags: vec![],
                    root_key: RootKey::from_bytes(root),
                },
                T0,
            ))
            .unwrap()
    }

    /// A signed container (manifest + image) for this product.
    pub fn sign(&self, version: (u16, u16, u16), counter: u32, img: &[u8]) -> ota_tool::Container {
        let params = ImageParams {
            hardware_id: hw(),
            version: Version::new(version.0, version.1, version.2),
            security_counter: SecurityCounter(counter),
            chunk_size: CHUNK,
            base_digest: None,
        };
        ota_tool::Container::sign(&params, img, &self.signer).unwrap()
    }

    /// Uploads a release and rolls it out to the whole product.
    pub fn release(&self, c: &ota_tool::Container) -> (ReleaseId, RolloutId) {
        let now = self.clock.load(Ordering::SeqCst);
        let rel = self
            .rt
            .block_on(upload_release(
                &*self.store,
                self.product,
                &c.encode(),
                &self.dir.path().join("releases"),
                now,
            ))
            .unwrap();
        let id = self
            .rt
            .block_on(self.store.release_id(rel.digest))
            .unwrap()
            .unwrap();
        let ro = self
            .rt
            .block_on(self.store.add_rollout(NewRollout {
                release: id,
                target: Target::Product,
                share: Share::ALL,
                error_threshold: None,
                defer_until_ms: None,
                created_ms: now,
            }))
            .unwrap();
        (id, ro)
    }

    pub fn progress(&self, ro: RolloutId) -> RolloutProgress {
        let now = self.clock.load(Ordering::SeqCst);
        self.rt
            .block_on(self.store.rollout_progress(ro, now))
            .unwrap()
            .unwrap()
    }
}

/// The board of the virtual Electron for one wake.
struct TestBoard<'a> {
    emu: Emulator,
    retained: &'a mut [u8; RETAINED_LEN],
    battery_mv: u16,
    reading: u32,
    self_check_ok: bool,
}

impl Board for TestBoard<'_> {
    fn now_ms(&mut self) -> u64 {
        self.emu.now() / 1000
    }
    fn battery_mv(&mut self) -> u16 {
        self.battery_mv
    }
    fn read_sensor(&mut self, out: &mut [u8]) -> usize {
        let b = self.reading.to_le_bytes();
        out[..4].copy_from_slice(&b);
        4
    }
    fn load_retained(&mut self, out: &mut [u8; RETAINED_LEN]) {
        *out = *self.retained;
    }
    fn store_retained(&mut self, data: &[u8; RETAINED_LEN]) {
        *self.retained = *data;
    }
    fn self_check(&mut self) -> bool {
        self.self_check_ok
    }
}

/// A virtual Electron: flash, retained memory, simulated time.
pub struct Electron {
    pub flash: Box<F2Flash>,
    pub retained: [u8; RETAINED_LEN],
    /// Simulated ms since the story began.
    pub time_ms: u64,
    pub battery_mv: u16,
    pub self_check_ok: bool,
    pub wakes: u32,
    pub bufs: Box<Buffers>,
    /// The last bootloader outcome.
    pub boot: Option<BootTarget>,
}

impl Electron {
    /// Factory state: identity in sector 3, `factory` flashed in the active slot and
    /// provisioned with its manifest.
    pub fn new(cloud: &Cloud, id: DeviceId, root: [u8; 32], factory: &ota_tool::Container) -> Self {
        let mut flash = Box::new(F2Flash::new(&SECTOR_SIZES));
        Identity {
            device: id,
            root_key: root,
        }
        .provision(&mut *flash)
        .unwrap();
        flash.preload(LAYOUT.active.start, &factory.image);
        let keys = cloud.trusted();
        let mut up = Updater::open(
            &mut *flash,
            LAYOUT,
            UpdaterConfig {
                hardware_id: hw(),
                allow_downgrade: false,
            },
        )
        .unwrap();
        let m = up.verify_offer(&factory.manifest, &keys).unwrap();
        let mut buf = [0u8; 512];
        up.provision(&mut *flash, &m, &mut buf).unwrap();
        Self {
            flash,
            retained: [0; RETAINED_LEN],
            time_ms: 0,
            battery_mv: 3_900,
            self_check_ok: true,
            wakes: 0,
            bufs: Box::new(Buffers::new()),
            boot: None,
        }
    }

    /// The image in the active slot, `len` bytes.
    pub fn active(&self, len: usize) -> &[u8] {
        &self.flash.contents()[LAYOUT.active.start as usize..][..len]
    }

    /// Power lost: retained memory becomes garbage, the flash powers up again as a cut
    /// left it.
    pub fn power_loss(&mut self) {
        self.retained = [0xA5; RETAINED_LEN];
        self.flash.power_on();
    }

    /// One reset: the bootloader, then one wake with a fresh modem (set up by `faults`).
    /// Simulated time advances by the wake and the sleep it ends in.
    pub fn wake_with(
        &mut self,
        cloud: &Cloud,
        cfg: &AppConfig<'_>,
        faults: impl FnOnce(&Emulator),
    ) -> WakeReport {
        cloud.clock.store(T0 + self.time_ms, Ordering::SeqCst);
        let mut buf = [0u8; 1024];
        let mut bl = Bootloader::open(&mut *self.flash, LAYOUT, BootConfig::default()).unwrap();
        self.boot = Some(bl.run(&mut *self.flash, &mut buf, || {}).unwrap());
        let emu = Emulator::new(Model::SaraU260);
        faults(&emu);
        let mut modem = Modem::new(
            emu.uart(),
            emu.delay(),
            emu.pwr_on(),
            ModemConfig::new(Family::U2),
        )
        .with_vint(emu.vint());
        self.wakes += 1;
        let mut board = TestBoard {
            emu: emu.clone(),
            retained: &mut self.retained,
            battery_mv: self.battery_mv,
            reading: self.wakes,
            self_check_ok: self.self_check_ok,
        };
        let report = wake(
            &mut board,
            &mut *self.flash,
            &mut modem,
            cfg,
            &mut self.bufs,
        );
        assert!(
            emu.violations().is_empty(),
            "the driver broke the modem's rules: {:?}",
            emu.violations()
        );
        assert!(
            !modem.is_powered(),
            "the modem must be off when a wake ends"
        );
        self.time_ms += report.awake_ms;
        if let WakeEnd::Sleep { ms } = report.end {
            self.time_ms += ms;
        }
        report
    }

    pub fn wake(&mut self, cloud: &Cloud, cfg: &AppConfig<'_>) -> WakeReport {
        self.wake_with(cloud, cfg, |_| {})
    }
}

/// One line per wake, for `--nocapture` runs.
pub fn line(n: usize, r: &WakeReport) -> String {
    format!(
        "wake {n:2}: {:>6} ms awake, end {:?}, running {}.{}.{}, trial {:?}, checked in {}, offer {:?}, decision {:?}, chunks {} (+{} again), manifest chunks {}, progress {:?}, erase steps {}, up/down {}/{} B, forced {}, error {:?}",
        r.awake_ms,
        r.end,
        r.running.major,
        r.running.minor,
        r.running.patch,
        r.trial,
        r.checked_in,
        r.offer.map(|o| o.0 .0),
        r.decision,
        r.chunks_fetched,
        r.chunks_refetched,
        r.manifest_chunks,
        r.progress,
        r.erase_steps,
        r.bytes_up,
        r.bytes_down,
        r.forced,
        r.error,
    )
}

/// The config of the OTA stories: a tight budget so a download takes several wakes.
pub fn tight<'a>(cloud: &Cloud, keys: &'a [ota_core::TrustedKey]) -> AppConfig<'a> {
    let mut cfg = AppConfig::new(cloud.addr, hw(), keys);
    cfg.awake_budget_ms = 12_000;
    cfg.max_extension_ms = 2_000;
    cfg.chunks_per_request = 8;
    cfg
}

/// Wakes until one ends in a reset (at most `max`); returns the reports.
pub fn wake_until_reset(
    dev: &mut Electron,
    cloud: &Cloud,
    cfg: &AppConfig<'_>,
    max: usize,
) -> Vec<WakeReport> {
    let mut out = Vec::new();
    for n in 0..max {
        let r = dev.wake(cloud, cfg);
        eprintln!("{}", line(n, &r));
        out.push(r);
        if r.end == WakeEnd::Reset {
            break;
        }
    }
    out
}
