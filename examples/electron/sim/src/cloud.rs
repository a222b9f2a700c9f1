//! The cloud side, in-process: a fresh `ota-cloud` on an embedded SQLite database in a
//! temporary directory, serving cloud-proto over UDP on a loopback port from a tokio runtime
//! of its own; the product's release key; the signed images of the story; provisioned devices;
//! releases queued as rollouts; and readers of what the server knows, for the summary.
//!
//! Everything the device must believe comes from here: [`Cloud::trusted_key`] and
//! [`Cloud::hardware_id`] for ota-core's policy, [`DeviceCredentials`] for cloud-proto, and
//! [`SignedImage`] for the factory image ([`crate::factory`]).
//!
//! Determinism: the release key, the images (hence the containers, Ed25519 signatures being
//! deterministic) and the device root keys derive from the run's seed. Only the server's
//! master key (sealing root keys at rest) comes from the OS, and it is never visible.

use core::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloud_proto::{DeviceId, OtaState, UpdateResult};
use ota_cloud::release::{upload_release, UploadError};
use ota_cloud::server::{Clock, Server, ServerConfig};
use ota_cloud::{
    MasterKey, NewDevice, NewProduct, NewRollout, ProductId, ReleaseId, RolloutId, RolloutProgress,
    RootKey, SealError, Share, SqliteOptions, SqliteStore, Store, StoreError, Target,
};
use ota_core::{HardwareId, ImageParams, SecurityCounter, TrustedKey, Version};

use crate::link::SplitMix64;
use crate::report::SimVersion;

/// The hardware id name of the simulated board (at most 16 bytes, see
/// [`HardwareId::from_name`]).
pub const HARDWARE_NAME: &str = "electron-u260";

/// The factory image's version.
pub const V1: SimVersion = SimVersion::new(1, 0, 0);
/// The update the story is about.
pub const V2: SimVersion = SimVersion::new(2, 0, 0);
/// The update that fails its self-check (rollback scenario).
pub const V3: SimVersion = SimVersion::new(3, 0, 0);

/// Bytes of the marker at the start of every simulated image ([`ImageMarker`]).
pub const MARKER_LEN: usize = 16;
const MARKER_MAGIC: &[u8; 4] = b"ESIM";
const FLAG_SELF_CHECK_FAILS: u16 = 1;

/// What a simulated image says about itself in its first [`MARKER_LEN`] bytes: `ESIM`, the
/// version (three `u16` LE), flags (`u16` LE; bit 0: its self-check fails), six zero bytes.
/// The simulated application reads it from the active slot to know what it "is".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageMarker {
    /// The image's version.
    pub version: SimVersion,
    /// Whether the image's self-check fails after install (the v3 scenario).
    pub self_check_fails: bool,
}

impl ImageMarker {
    /// The marker's bytes.
    pub fn encode(&self) -> [u8; MARKER_LEN] {
        let mut m = [0u8; MARKER_LEN];
        m[..4].copy_from_slice(MARKER_MAGIC);
        m[4..6].copy_from_slice(&self.version.major.to_le_bytes());
        m[6..8].copy_from_slice(&self.version.minor.to_le_bytes());
        m[8..10].copy_from_slice(&self.version.patch.to_le_bytes());
        let flags = if self.self_check_fails {
            FLAG_SELF_CHECK_FAILS
        } else {
            0
        };
        m[10..12].copy_from_slice(&flags.to_le_bytes());
        m
    }

    /// Reads a marker from the start of `image` (flash contents: never panics). `None` if
    /// it is not one (too short, bad magic, non-zero reserved bytes).
    pub fn parse(image: &[u8]) -> Option<Self> {
        let m = image.get(..MARKER_LEN)?;
        if &m[..4] != MARKER_MAGIC || m[12..].iter().any(|&b| b != 0) {
            return None;
        }
        let u = |i: usize| u16::from_le_bytes([m[i], m[i + 1]]);
        Some(Self {
            version: SimVersion::new(u(4), u(6), u(8)),
            self_check_fails: u(10) & FLAG_SELF_CHECK_FAILS != 0,
        })
    }
}

/// A deterministic image of `size` bytes (at least [`MARKER_LEN`]): the marker, then
/// pseudo-random bytes from `seed` and the version, so two versions differ everywhere.
pub fn build_image(size: usize, marker: ImageMarker, seed: u64) -> Vec<u8> {
    let v = marker.version;
    let mut rng = SplitMix64::new(
        seed ^ (u64::from(v.major) << 32 | u64::from(v.minor) << 16 | u64::from(v.patch)),
    );
    let mut img = Vec::with_capacity(size.max(MARKER_LEN));
    img.extend_from_slice(&marker.encode());
    while img.len() < size {
        img.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    img.truncate(size.max(MARKER_LEN));
    img
}

/// One image of the story, signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedImage {
    /// Its version.
    pub version: SimVersion,
    /// Its anti-rollback counter.
    pub security_counter: u32,
    /// Whether its self-check fails.
    pub self_check_fails: bool,
    /// The firmware bytes.
    pub image: Vec<u8>,
    /// The signed manifest (`ota_core::build_signed`).
    pub manifest: Vec<u8>,
    /// The `ota-tool sign` container (manifest + image), as uploaded.
    pub container: Vec<u8>,
}

/// A device's identity and secret, as the factory writes them into its identity sector.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCredentials {
    /// Its id on the server.
    pub id: DeviceId,
    /// Its root key (cloud-proto derives the frame keys with `Keys::derive`).
    pub root_key: [u8; 32],
}

impl fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the server knows of one device (for the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceView {
    /// Firmware reported at the last check-in.
    pub running: Option<SimVersion>,
    /// Whether it reported running on trial.
    pub trial: bool,
    /// LwM2M state.
    pub state: OtaState,
    /// LwM2M result.
    pub result: UpdateResult,
    /// Check-ins seen.
    pub wakes: u64,
    /// Frame bytes the server received from it.
    pub bytes_up: u64,
    /// Answer bytes the server sent it.
    pub bytes_down: u64,
}

/// How the cloud is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudConfig {
    /// Size of every image in bytes.
    pub image_size: usize,
    /// Manifest chunk size (a power of two, 256..=65536).
    pub chunk_size: u32,
    /// Seed of keys and image contents.
    pub seed: u64,
    /// The sleep every `Welcome` grants, in seconds.
    pub next_checkin_s: u32,
}

/// Why setting up or driving the cloud failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloudError {
    /// Temporary directory, runtime or socket.
    Io(std::io::Error),
    /// The master key.
    Seal(SealError),
    /// Opening the database.
    Open(ota_cloud::OpenError),
    /// A store call.
    Store(StoreError),
    /// Signing an image (bad chunk size, say).
    Build(ota_core::BuildError),
    /// The server refused an upload.
    Upload(UploadError),
    /// A configuration value out of range.
    Config(&'static str),
    /// No image of that version in the story.
    UnknownVersion(SimVersion),
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cloud set-up: {e}"),
            Self::Seal(e) => write!(f, "master key: {e}"),
            Self::Open(e) => write!(f, "database: {e}"),
            Self::Store(e) => write!(f, "store: {e}"),
            Self::Build(e) => write!(f, "signing an image: {e:?}"),
            Self::Upload(e) => write!(f, "upload: {e}"),
            Self::Config(why) => write!(f, "cloud configuration: {why}"),
            Self::UnknownVersion(v) => write!(f, "no image v{v} in this story"),
        }
    }
}

impl std::error::Error for CloudError {}

impl From<std::io::Error> for CloudError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}
impl From<StoreError> for CloudError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The server and everything it holds (see the [module docs](self)).
pub struct Cloud {
    runtime: tokio::runtime::Runtime,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    store: Arc<SqliteStore>,
    server: Arc<Server<SqliteStore>>,
    clock: Clock,
    udp: SocketAddr,
    product: ProductId,
    hardware: HardwareId,
    trusted: TrustedKey,
    images: Vec<SignedImage>,
    releases: Vec<(SimVersion, ReleaseId)>,
    seed: u64,
    devices: u32,
}

impl fmt::Debug for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloud")
            .field("data_dir", &self.path)
            .field("udp", &self.udp)
            .field("product", &self.product)
            .finish_non_exhaustive()
    }
}

impl Cloud {
    /// Starts the server (new temporary directory, database, master key, product with the
    /// release key derived from `config.seed`), signs the images [`V1`], [`V2`] and [`V3`]
    /// (v3's self-check fails) and listens on UDP `127.0.0.1:0`. `clock` is the server's
    /// clock (Unix ms): pass [`crate::clock::SimClock::server_clock`] so it follows virtual
    /// time.
    ///
    /// # Errors
    /// [`CloudError`]; `Config` for an image smaller than the marker or a chunk size that is
    /// not a power of two in 256..=65536.
    ///
    /// Cost: three signatures and SHA-256 passes over `3 × image_size` bytes; one database
    /// created with its fsyncs.
    pub fn start(config: &CloudConfig, clock: Clock) -> Result<Self, CloudError> {
        if config.image_size < MARKER_LEN {
            return Err(CloudError::Config("image size below the 16-byte marker"));
        }
        if !config.chunk_size.is_power_of_two() || !(256..=65536).contains(&config.chunk_size) {
            return Err(CloudError::Config(
                "chunk size is a power of two from 256 to 65536",
            ));
        }
        let hardware = HardwareId::from_name(HARDWARE_NAME)
            .ok_or(CloudError::Config("hardware name longer than 16 bytes"))?;
        let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed_bytes(
            config.seed,
            0x0052_454c_4541_5345,
        )));
        let trusted = ota_tool::keys::trusted(&key.pk);
        let images = [(V1, 1, false), (V2, 2, false), (V3, 3, true)]
            .into_iter()
            .map(|(version, counter, fails)| sign(config, hardware, &key, version, counter, fails))
            .collect::<Result<Vec<_>, _>>()?;

        let dir = tempfile::Builder::new().prefix("electron-sim-").tempdir()?;
        let path = dir.path().to_path_buf();
        let master = MasterKey::create(&path.join("master.key")).map_err(CloudError::Seal)?;
        let store = Arc::new(
            SqliteStore::open(&path.join("ota.db"), master, SqliteOptions::default())
                .map_err(CloudError::Open)?,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ota-cloud")
            .enable_all()
            .build()?;
        let product = runtime.block_on(store.add_product(NewProduct {
            name: "electron-sim".into(),
            hardware_id: hardware.0,
            release_keys: vec![ota_tool::keys::public_key_to_pem(&key.pk)],
        }))?;
        let server = Arc::new(Server::new(
            store.clone(),
            ServerConfig {
                next_checkin_s: config.next_checkin_s,
                ..ServerConfig::default()
            },
            clock.clone(),
        ));
        let socket = runtime.block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))?;
        let udp = socket.local_addr()?;
        runtime.spawn(ota_cloud::transport::serve_udp(server.clone(), socket));
        Ok(Self {
            runtime,
            dir: Some(dir),
            path,
            store,
            server,
            clock,
            udp,
            product,
            hardware,
            trusted,
            images,
            releases: Vec::new(),
            seed: config.seed,
            devices: 0,
        })
    }

    /// The server's UDP address (loopback).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The data directory (`ota.db`, `master.key`, `releases/`).
    pub fn data_dir(&self) -> &Path {
        &self.path
    }

    /// The product every device belongs to.
    pub fn product(&self) -> ProductId {
        self.product
    }

    /// The hardware id the images are signed for (ota-core's `UpdaterConfig::hardware_id`).
    pub fn hardware_id(&self) -> HardwareId {
        self.hardware
    }

    /// The release key, as the device's ota-core trusts it.
    pub fn trusted_key(&self) -> TrustedKey {
        self.trusted
    }

    /// The story's images: v1, v2, v3.
    pub fn images(&self) -> &[SignedImage] {
        &self.images
    }

    /// The image of `version`.
    ///
    /// # Errors
    /// [`CloudError::UnknownVersion`].
    pub fn image(&self, version: SimVersion) -> Result<&SignedImage, CloudError> {
        self.images
            .iter()
            .find(|i| i.version == version)
            .ok_or(CloudError::UnknownVersion(version))
    }

    /// The server (frame counters, drops).
    pub fn server(&self) -> &Arc<Server<SqliteStore>> {
        &self.server
    }

    /// The store.
    pub fn store(&self) -> &Arc<SqliteStore> {
        &self.store
    }

    /// Provisions a device with `tags` and a root key derived from the seed and the device's
    /// rank. Cost: one store transaction.
    ///
    /// # Errors
    /// [`CloudError::Store`].
    pub fn add_device(&mut self, tags: &[&str]) -> Result<DeviceCredentials, CloudError> {
        self.devices += 1;
        let root_key = seed_bytes(self.seed, 0x4445_5649_4345_0000 | u64::from(self.devices));
        let id = self.runtime.block_on(self.store.add_device(
            NewDevice {
                id: None,
                product: self.product,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                root_key: RootKey::from_bytes(root_key),
            },
            (self.clock)(),
        ))?;
        Ok(DeviceCredentials { id, root_key })
    }

    /// Uploads `version` (once; later calls return the same id). Cost: the server's
    /// verification of the container and one file write.
    ///
    /// # Errors
    /// [`CloudError::UnknownVersion`], [`CloudError::Upload`], [`CloudError::Store`].
    pub fn upload(&mut self, version: SimVersion) -> Result<ReleaseId, CloudError> {
        if let Some((_, id)) = self.releases.iter().find(|(v, _)| *v == version) {
            return Ok(*id);
        }
        let container = self.image(version)?.container.clone();
        let release = self
            .runtime
            .block_on(upload_release(
                &*self.store,
                self.product,
                &container,
                &self.path.join("releases"),
                (self.clock)(),
            ))
            .map_err(CloudError::Upload)?;
        let id = self
            .runtime
            .block_on(self.store.release_id(release.digest))?
            .ok_or(CloudError::Config(
                "the store gave the uploaded release no id",
            ))?;
        self.releases.push((version, id));
        Ok(id)
    }

    /// Queues `version` for `target`: uploads it if needed and starts a rollout over `share`
    /// of the target (staged when below [`Share::ALL`]). From the next check-in on, devices in
    /// the share are offered it. Returns the rollout.
    ///
    /// # Errors
    /// As [`upload`](Self::upload); [`CloudError::Store`] for an unknown device target.
    pub fn queue_release(
        &mut self,
        version: SimVersion,
        target: Target,
        share: Share,
    ) -> Result<RolloutId, CloudError> {
        let release = self.upload(version)?;
        let id = self.runtime.block_on(self.store.add_rollout(NewRollout {
            release,
            target,
            share,
            error_threshold: None,
            defer_until_ms: None,
            created_ms: (self.clock)(),
        }))?;
        Ok(id)
    }

    /// Raises a staged rollout's share (lowering is refused by the store).
    ///
    /// # Errors
    /// [`CloudError::Store`].
    pub fn raise_share(&self, rollout: RolloutId, share: Share) -> Result<(), CloudError> {
        self.runtime.block_on(
            self.store
                .update_rollout(rollout, ota_cloud::RolloutChange::Share(share)),
        )?;
        Ok(())
    }

    /// The rollout's progress now (server clock). `None` for an unknown rollout.
    ///
    /// # Errors
    /// [`CloudError::Store`].
    pub fn rollout_progress(
        &self,
        rollout: RolloutId,
    ) -> Result<Option<RolloutProgress>, CloudError> {
        Ok(self
            .runtime
            .block_on(self.store.rollout_progress(rollout, (self.clock)()))?)
    }

    /// What the server knows of `device`. `None` for an unknown device.
    ///
    /// # Errors
    /// [`CloudError::Store`].
    pub fn device_view(&self, device: DeviceId) -> Result<Option<DeviceView>, CloudError> {
        let Some(s) = self.runtime.block_on(self.store.status(device))? else {
            return Ok(None);
        };
        let report = s.last_checkin.map(|(_, r)| r);
        Ok(Some(DeviceView {
            running: report
                .map(|r| SimVersion::new(r.firmware.major, r.firmware.minor, r.firmware.patch)),
            trial: report.is_some_and(|r| r.trial),
            state: s.state,
            result: s.result,
            wakes: s.wakes,
            bytes_up: s.bytes_up,
            bytes_down: s.bytes_down,
        }))
    }

    /// The `ota-cloud` commands that inspect this server's data afterwards.
    pub fn inspect_commands(&self) -> String {
        let d = self.path.display();
        format!(
            "ota-cloud device list --data {d}\nota-cloud device show --data {d} 1\n\
             ota-cloud rollout list --data {d}\nota-cloud events --data {d}"
        )
    }

    /// Keeps the data directory after the process ends (`--keep-serving`), and returns its
    /// path. The server keeps serving while this `Cloud` lives.
    pub fn keep_data(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }

    /// Runs `f` on the server's runtime (for reads the helpers above do not cover).
    pub fn block_on<F: core::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

fn seed_bytes(seed: u64, domain: u64) -> [u8; 32] {
    let mut rng = SplitMix64::new(seed ^ domain.rotate_left(17));
    let mut out = [0u8; 32];
    for c in out.chunks_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}

fn sign(
    config: &CloudConfig,
    hardware: HardwareId,
    key: &ed25519_compact::KeyPair,
    version: SimVersion,
    counter: u32,
    self_check_fails: bool,
) -> Result<SignedImage, CloudError> {
    let image = build_image(
        config.image_size,
        ImageMarker {
            version,
            self_check_fails,
        },
        config.seed,
    );
    let params = ImageParams {
        hardware_id: hardware,
        version: Version::new(version.major, version.minor, version.patch),
        security_counter: SecurityCounter(counter),
        chunk_size: config.chunk_size,
        base_digest: None,
    };
    let c = ota_tool::Container::sign(&params, &image, key).map_err(CloudError::Build)?;
    Ok(SignedImage {
        version,
        security_counter: counter,
        self_check_fails,
        container: c.encode(),
        manifest: c.manifest,
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_refuses_other_bytes() {
        let m = ImageMarker {
            version: V3,
            self_check_fails: true,
        };
        let img = build_image(1000, m, 9);
        assert_eq!(img.len(), 1000);
        assert_eq!(ImageMarker::parse(&img), Some(m));
        assert_eq!(ImageMarker::parse(&[0xFF; 64]), None);
        assert_eq!(ImageMarker::parse(&img[..10]), None);
        // Same seed and version: same bytes; another version: different bytes after the marker.
        assert_eq!(build_image(1000, m, 9), img);
        let v2 = build_image(
            1000,
            ImageMarker {
                version: V2,
                self_check_fails: false,
            },
            9,
        );
        assert_ne!(v2[MARKER_LEN..100], img[MARKER_LEN..100]);
    }
}
