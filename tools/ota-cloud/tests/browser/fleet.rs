//! The simulated fleet the console tests watch: each device speaks cloud-proto (its
//! [`DeviceEndpoint`], real keys, real frames, its retransmission timer) over its own loopback
//! UDP socket to the `ota-cloud` binary, and keeps its firmware with ota-core ([`Updater`] in
//! the application, [`Bootloader`] at each boot) on its own simulated NOR flash
//! ([`ota_flash_sim::SimFlash`]), as `electron-app`'s wake does on the Electron.
//!
//! Nothing runs on a clock: the test wakes devices ([`Fleet::wake_all`]), each wake being one
//! whole wake of a device (boot, check-in with battery and a publish, the offer, a bounded part
//! of the download, goodbye), and waits for all of them before it looks at the page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cloud_proto::{
    CheckIn, ChunkRequest, Counters, Decision, DeclineReason, DeviceConfig, DeviceEndpoint,
    DeviceId, Down, DownloadProgress, Event, FirmwareVersion, Goodbye, Keys, ManifestRef, Object,
    OtaReport, OtaState, Publish, Timeout, Up, UpdateDecision, UpdateId, UpdateResult,
    UpdateStatus, MAX_CHUNKS_PER_REQUEST, MAX_FRAME,
};
use ota_core::{
    BeginError, BootConfig, Bootloader, ChunkIndex, ChunkOutcome, FinishError, HardwareId,
    HashStep, ImageParams, Layout, Lwm2mState, Phase, Region, SectorMap, SectorRun,
    SecurityCounter, StateError, TrustedKey, Updater, UpdaterConfig, Version,
};
use ota_flash_sim::SimFlash;
use tokio::net::UdpSocket;

/// The product's hardware id (its name as `ota-tool sign --hardware` takes it).
pub const HARDWARE: &str = "tracker-v1";

/// Chunk size of every container the tests sign: an image chunk must fit one datagram
/// (`cloud_proto::MAX_CHUNK_DATA_DATAGRAM`, about 1,000 bytes).
pub const CHUNK_SIZE: u32 = 512;

/// Image size of the releases (24 chunks of 512 bytes).
pub const IMAGE_SIZE: usize = 12 * 1024;

/// Image chunks a device fetches per wake: a third of an image, so a device that takes an
/// offer downloads across three wakes, and the check-in of the second reports a third done
/// (the progress the console can show: what the device reported).
pub const CHUNKS_PER_WAKE: usize = 8;

/// 4-byte program words, 4 KiB sectors, no bit rewrites (like the STM32F2 driven by word).
type Flash = SimFlash<4, 4096, false>;
const SECTOR: u32 = 4096;
const SECTORS: [usize; 12] = [SECTOR as usize; 12];
/// A small device: 2 state sectors, 1 progress, 4 active (16 KiB), 4 staging, 1 scratch.
const LAYOUT: Layout = Layout {
    map: SectorMap::new(&[SectorRun {
        count: 12,
        size: SECTOR,
    }]),
    state: Region::new(0, 2 * SECTOR),
    progress: Region::new(2 * SECTOR, 3 * SECTOR),
    active: Region::new(3 * SECTOR, 7 * SECTOR),
    staging: Region::new(7 * SECTOR, 11 * SECTOR),
    scratch: Region::new(11 * SECTOR, 12 * SECTOR),
};

/// Guards a wake against a hang only (a lost datagram on loopback is retransmitted by the
/// endpoint's own timer first); never asserted on.
const WAKE_GUARD: Duration = Duration::from_secs(60);

/// The release signing key (an Ed25519 key pair, as `ota-tool keygen` makes).
pub struct Signer {
    kp: ed25519_compact::KeyPair,
}

impl Signer {
    pub fn generate() -> Self {
        Self {
            kp: ota_tool::keys::generate(),
        }
    }

    /// The public key as the product trusts it (SPKI PEM).
    pub fn public_pem(&self) -> String {
        ota_tool::keys::public_key_to_pem(&self.kp.pk)
    }

    fn trusted(&self) -> TrustedKey {
        ota_tool::keys::trusted(&self.kp.pk)
    }

    /// An `ota-tool sign` container of `image` as `version` for [`HARDWARE`].
    pub fn container(&self, version: (u16, u16, u16), image: &[u8]) -> ota_tool::Container {
        let params = ImageParams {
            hardware_id: hardware(),
            version: Version::new(version.0, version.1, version.2),
            security_counter: SecurityCounter(1),
            chunk_size: CHUNK_SIZE,
            base_digest: None,
        };
        ota_tool::Container::sign(&params, image, &self.kp).expect("signing a test image")
    }
}

fn hardware() -> HardwareId {
    HardwareId::from_name(HARDWARE).expect("a short hardware name")
}

/// A firmware image of [`IMAGE_SIZE`] bytes, different per version.
pub fn image(version: (u16, u16, u16)) -> Vec<u8> {
    let salt = u32::from(version.0) << 16 | u32::from(version.1) << 8 | u32::from(version.2);
    let mut x = 0x9E37_79B9u32 ^ salt.wrapping_mul(0x85EB_CA6B);
    (0..IMAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// What a device did in one wake (what the console should then show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Did {
    /// Checked in, no offer.
    CheckedIn,
    /// Took an offer and fetched part of it: still downloading.
    Downloading { update: UpdateId },
    /// Fetched the rest, verified it and marked it for install (boots it at the next wake).
    Downloaded { update: UpdateId },
    /// Booted the new image on trial, checked in with it and confirmed it.
    Confirmed { update: UpdateId },
    /// An offer it declined (it runs that version already).
    Declined { update: UpdateId },
    /// Booted the new image on trial, failed its self-check and reported the failure (the
    /// bootloader puts the previous image back at the next boot).
    TrialFailed { update: UpdateId },
}

/// One simulated device.
pub struct SimDevice {
    pub id: DeviceId,
    keys_root: [u8; 32],
    /// Counters kept in "backup SRAM" across wakes.
    counters: Counters,
    flash: Flash,
    trusted: TrustedKey,
    /// The update being downloaded or installed (retained memory, as `electron-app` keeps it).
    update: Option<UpdateId>,
    /// Battery voltage reported at the next check-in.
    pub battery_mv: u16,
    /// Wakes so far.
    pub wakes: u32,
    /// The application's self-check fails on a trial image (a bad release on this hardware):
    /// the device rejects it instead of confirming it.
    pub fails_self_check: bool,
}

impl SimDevice {
    /// A device provisioned at the factory with `factory` (an image signed as `version`),
    /// recorded by ota-core as its confirmed image.
    pub fn new(
        id: DeviceId,
        root_key: [u8; 32],
        signer: &Signer,
        version: (u16, u16, u16),
        battery_mv: u16,
    ) -> Self {
        let img = image(version);
        let c = signer.container(version, &img);
        let mut flash = Flash::new(&SECTORS);
        flash.preload(LAYOUT.active.start, &img);
        let mut up = Updater::open(&mut flash, LAYOUT, config()).expect("factory: open");
        let verified = up
            .verify_offer(&c.manifest, &[signer.trusted()])
            .expect("factory: manifest");
        let mut buf = [0u8; 512];
        // A blank state region needs its erase steps first (bounded by its sectors).
        for _ in 0..8 {
            match up.provision(&mut flash, &verified, &mut buf) {
                Err(StateError::NeedsErase) => {
                    let _ = up.erase_step(&mut flash, &mut buf).expect("factory: erase");
                }
                Err(e) => panic!("factory provisioning: {e:?}"),
                Ok(()) => break,
            }
        }
        assert!(up.confirmed_image().is_some(), "factory: not provisioned");
        Self {
            id,
            keys_root: root_key,
            counters: Counters::cold(0),
            flash,
            trusted: signer.trusted(),
            update: None,
            battery_mv,
            wakes: 0,
            fails_self_check: false,
        }
    }

    /// The version ota-core says the device runs, and whether it is on trial.
    pub fn running(&mut self) -> (FirmwareVersion, bool) {
        let Ok(up) = Updater::open(&mut self.flash, LAYOUT, config()) else {
            return (FirmwareVersion::default(), false);
        };
        running(&up)
    }

    /// One whole wake against the server at `server`.
    pub async fn wake(&mut self, server: SocketAddr) -> Result<Did, String> {
        self.wakes += 1;
        tokio::time::timeout(WAKE_GUARD, self.wake_inner(server))
            .await
            .map_err(|_| format!("device {}: wake {} hung", self.id.0, self.wakes))?
    }

    async fn wake_inner(&mut self, server: SocketAddr) -> Result<Did, String> {
        let dev = self.id.0;
        let mut buf = vec![0u8; 1024];
        // 1. Boot: the bootloader installs a marked image, counts a trial boot, or does nothing.
        let mut boot =
            Bootloader::open(&mut self.flash, LAYOUT, BootConfig::default()).map_err(dbg)?;
        let _target = boot.run(&mut self.flash, &mut buf, || {}).map_err(dbg)?;
        // 2. The application: ota-core's state, the running image.
        let mut up = Updater::open(&mut self.flash, LAYOUT, config()).map_err(dbg)?;
        let (firmware, on_trial) = running(&up);
        // A trial image's self-check decides before anything else (as in electron-app): a
        // failed one is marked for the bootloader's revert, and reported after the check-in.
        let trial_failed = on_trial && self.fails_self_check;
        if trial_failed {
            up.mark_failed(&mut self.flash).map_err(dbg)?;
        }
        // Erase work first (as electron-app does before the modem): the last download's
        // progress region, a state sector.
        erase_all(&mut up, &mut self.flash, &mut buf)?;

        let socket = UdpSocket::bind("127.0.0.1:0").await.map_err(dbg)?;
        socket.connect(server).await.map_err(dbg)?;
        let mut cfg = DeviceConfig::new(self.id);
        // Loopback: retransmit soon if a datagram is lost (never expected).
        cfg.rto_initial_ms = 500;
        cfg.rto_max_ms = 2_000;
        let mut link = Link {
            socket,
            ep: DeviceEndpoint::new(cfg, Keys::derive(&self.keys_root), self.counters),
            start: Instant::now(),
            rx: vec![0u8; MAX_FRAME + 1],
        };

        // 3. Check-in: firmware, trial, the LwM2M state, the battery and one publish.
        let s = up.status();
        let download = match (s.state, self.update, s.progress, up.download_header()) {
            (Lwm2mState::Downloading | Lwm2mState::Downloaded, Some(update), Some(p), Some(h)) => {
                Some(DownloadProgress {
                    update,
                    bytes_done: p.chunks_done.saturating_mul(h.chunk_size).min(h.image_size),
                })
            }
            _ => None,
        };
        let reading = sensor(dev, self.wakes);
        let checkin = Up::CheckIn(CheckIn {
            firmware,
            trial: on_trial,
            ota: OtaReport {
                state: ota_state(s.state),
                result: update_result(s.result),
                download,
            },
            battery_mv: self.battery_mv,
            forced_sleeps: 0,
            publishes: [Publish {
                topic: 1,
                data: &reading,
            }]
            .into_iter()
            .collect(),
        });
        let offer = match link.request(&checkin).await? {
            Answer::Reply(Reply::Welcome(offer)) => offer,
            other => return Err(format!("device {dev}: check-in answered {other:?}")),
        };

        // 4. A trial image that reached the cloud is kept.
        let mut did = Did::CheckedIn;
        if trial_failed {
            if let Some(update) = self.update.take() {
                link.expect_ack(&status(
                    update,
                    OtaState::Updating,
                    UpdateResult::UpdateFailed,
                ))
                .await?;
                did = Did::TrialFailed { update };
            }
            link.expect_ack(&Up::Goodbye(Goodbye { sleep_s: 0 }))
                .await?;
            self.counters = link.ep.counters();
            return Ok(did);
        }
        if on_trial {
            up.mark_confirmed(&mut self.flash).map_err(dbg)?;
            if let Some(update) = self.update.take() {
                link.expect_ack(&status(update, OtaState::Idle, UpdateResult::Success))
                    .await?;
                did = Did::Confirmed { update };
            }
        }

        // 5. The offer: decide, answer, download what this wake allows, finish.
        if let Some(offer) = offer {
            did = self
                .take_offer(&mut up, &mut link, &mut buf, offer, firmware, download)
                .await?;
        }

        // 6. Goodbye.
        link.expect_ack(&Up::Goodbye(Goodbye { sleep_s: 3600 }))
            .await?;
        self.counters = link.ep.counters();
        Ok(did)
    }

    async fn take_offer(
        &mut self,
        up: &mut Updater,
        link: &mut Link,
        buf: &mut [u8],
        offer: OfferInfo,
        running: FirmwareVersion,
        reported: Option<DownloadProgress>,
    ) -> Result<Did, String> {
        let update = offer.update;
        let resuming = up.download_header().is_some_and(|h| {
            matches!(up.phase(), Phase::Downloading | Phase::Downloaded)
                && version(h.version) == offer.version
        });
        if !resuming {
            if offer.version == running {
                let d = Decision::Decline(DeclineReason::AlreadyInstalled);
                link.expect_ack(&decision(update, d)).await?;
                return Ok(Did::Declined { update });
            }
            let manifest = match offer.manifest {
                Some(m) => m,
                None => link.fetch_manifest(update, offer.manifest_len).await?,
            };
            let verified = match up.verify_offer(&manifest, &[self.trusted]) {
                Ok(v) => v,
                Err(e) => {
                    let r = update_result(e.update_result());
                    let d = Decision::Decline(DeclineReason::Rejected(r));
                    link.expect_ack(&decision(update, d)).await?;
                    return Ok(Did::Declined { update });
                }
            };
            loop {
                match up.begin(&mut self.flash, &verified) {
                    Ok(_) => break,
                    Err(BeginError::NeedsErase) => erase_all(up, &mut self.flash, buf)?,
                    Err(e) => return Err(format!("device {}: begin: {e:?}", self.id.0)),
                }
            }
        }
        self.update = Some(update);
        // The cloud keeps offering a download the check-in reported: no answer needed.
        if reported.map(|d| d.update) != Some(update) {
            let done = bytes_done(up);
            let d = Decision::Accept { bytes_done: done };
            link.expect_ack(&decision(update, d)).await?;
        }
        // Staging sectors to erase before any chunk is written.
        erase_all(up, &mut self.flash, buf)?;
        let mut idx = [ChunkIndex(0); CHUNKS_PER_WAKE];
        let n = up
            .missing_chunks(&mut self.flash, ChunkIndex(0), &mut idx)
            .map_err(dbg)?;
        if n > 0 {
            let req = ChunkRequest::plan(
                update,
                Object::Image,
                CHUNK_SIZE as u16,
                idx[..n].iter().map(|c| c.0),
                (n as u32).min(MAX_CHUNKS_PER_REQUEST),
            )
            .ok_or("nothing to plan")?;
            for (index, data) in link.chunks(&Up::ChunkRequest(req)).await? {
                match up.handle_chunk(&mut self.flash, ChunkIndex(index), &data) {
                    Ok(ChunkOutcome::Written | ChunkOutcome::Duplicate) => {}
                    Err(e) => return Err(format!("device {}: chunk {index}: {e:?}", self.id.0)),
                }
            }
        }
        if up
            .next_missing(&mut self.flash, ChunkIndex(0))
            .map_err(dbg)?
            .is_some()
        {
            return Ok(Did::Downloading { update });
        }
        // Every chunk held: hash the image, mark it for install, report, reset at the end.
        loop {
            match up.finish_step(&mut self.flash, buf, 4096) {
                Ok(HashStep::Done) => break,
                Ok(HashStep::Continue { .. }) => {}
                Err(FinishError::NeedsErase) => erase_all(up, &mut self.flash, buf)?,
                Err(FinishError::IntegrityFailure) => {
                    self.update = None;
                    link.expect_ack(&status(
                        update,
                        OtaState::Idle,
                        UpdateResult::IntegrityFailure,
                    ))
                    .await?;
                    return Err(format!("device {}: the image failed its digest", self.id.0));
                }
                Err(e) => return Err(format!("device {}: finish: {e:?}", self.id.0)),
            }
        }
        loop {
            match up.mark_install(&mut self.flash) {
                Ok(()) => break,
                Err(StateError::NeedsErase) => erase_all(up, &mut self.flash, buf)?,
                Err(e) => return Err(format!("device {}: mark_install: {e:?}", self.id.0)),
            }
        }
        link.expect_ack(&status(update, OtaState::Downloaded, UpdateResult::Initial))
            .await?;
        Ok(Did::Downloaded { update })
    }
}

fn config() -> UpdaterConfig {
    UpdaterConfig {
        hardware_id: hardware(),
        allow_downgrade: false,
    }
}

fn dbg<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn running(up: &Updater) -> (FirmwareVersion, bool) {
    let trial = up.is_trial();
    let img = if trial {
        up.staged_image()
    } else {
        up.confirmed_image()
    };
    (img.map(|i| version(i.version)).unwrap_or_default(), trial)
}

fn bytes_done(up: &Updater) -> u32 {
    match (up.status().progress, up.download_header()) {
        (Some(p), Some(h)) => p.chunks_done.saturating_mul(h.chunk_size).min(h.image_size),
        _ => 0,
    }
}

/// Runs every erase step the updater asks for (bounded: a handful of sectors).
fn erase_all(up: &mut Updater, flash: &mut Flash, buf: &mut [u8]) -> Result<(), String> {
    for _ in 0..32 {
        if up.erase_work(flash).map_err(dbg)?.is_done() {
            return Ok(());
        }
        let _ = up.erase_step(flash, buf).map_err(dbg)?;
    }
    Err("erase work does not end".into())
}

/// A sensor reading: temperature in centi-degrees and a wake counter, little-endian.
fn sensor(dev: u32, wake: u32) -> [u8; 6] {
    let t = 1800 + ((dev * 37 + wake * 11) % 900) as i16;
    let mut b = [0u8; 6];
    b[..2].copy_from_slice(&t.to_le_bytes());
    b[2..].copy_from_slice(&wake.to_le_bytes());
    b
}

fn version(v: Version) -> FirmwareVersion {
    FirmwareVersion {
        major: v.major,
        minor: v.minor,
        patch: v.patch,
    }
}

fn ota_state(s: Lwm2mState) -> OtaState {
    match s {
        Lwm2mState::Idle => OtaState::Idle,
        Lwm2mState::Downloading => OtaState::Downloading,
        Lwm2mState::Downloaded => OtaState::Downloaded,
        Lwm2mState::Updating => OtaState::Updating,
    }
}

fn update_result(r: ota_core::UpdateResult) -> UpdateResult {
    use ota_core::UpdateResult as O;
    match r {
        O::Initial => UpdateResult::Initial,
        O::Success => UpdateResult::Success,
        O::NotEnoughFlash => UpdateResult::NotEnoughFlash,
        O::OutOfRam => UpdateResult::OutOfRam,
        O::ConnectionLost => UpdateResult::ConnectionLost,
        O::IntegrityFailure => UpdateResult::IntegrityFailure,
        O::UnsupportedPackage => UpdateResult::UnsupportedPackage,
        O::InvalidUri => UpdateResult::InvalidUri,
        O::UpdateFailed => UpdateResult::UpdateFailed,
        O::UnsupportedProtocol => UpdateResult::UnsupportedProtocol,
        O::Cancelled => UpdateResult::Cancelled,
        O::Deferred => UpdateResult::Deferred,
    }
}

fn status(update: UpdateId, state: OtaState, result: UpdateResult) -> Up<'static> {
    Up::UpdateStatus(UpdateStatus {
        update,
        state,
        result,
    })
}

fn decision(update: UpdateId, decision: Decision) -> Up<'static> {
    Up::UpdateDecision(UpdateDecision { update, decision })
}

/// An offer, owned.
#[derive(Debug, Clone)]
struct OfferInfo {
    update: UpdateId,
    version: FirmwareVersion,
    /// Inline manifest.
    manifest: Option<Vec<u8>>,
    manifest_len: u32,
}

#[derive(Debug)]
enum Reply {
    Welcome(Option<OfferInfo>),
    Ack,
    // Read through `Debug`, in the error that reports it.
    #[allow(dead_code)]
    Nack(cloud_proto::NackCode),
}

#[derive(Debug)]
enum Answer {
    Reply(Reply),
    Chunks(Vec<(u32, Vec<u8>)>),
}

/// A wake's socket and endpoint.
struct Link {
    socket: UdpSocket,
    ep: DeviceEndpoint,
    start: Instant,
    rx: Vec<u8>,
}

impl Link {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends `msg` and collects its answer, retransmitting on the endpoint's timer.
    async fn request(&mut self, msg: &Up<'_>) -> Result<Answer, String> {
        if let Some(r) = self.ep.checkpoint() {
            // The simulated counter log: nothing to persist beyond the retained counters.
            self.ep.mark_checkpointed(r);
        }
        let now = self.now();
        let frame = self.ep.send(now, msg).map_err(dbg)?.frame.to_vec();
        self.socket.send(&frame).await.map_err(dbg)?;
        let mut chunks = Vec::new();
        loop {
            let deadline = self.ep.poll_timeout().unwrap_or(0);
            let wait = Duration::from_millis(deadline.saturating_sub(self.now()));
            match tokio::time::timeout(wait, self.socket.recv(&mut self.rx)).await {
                Ok(n) => {
                    let n = n.map_err(dbg)?;
                    let now = self.now();
                    match self.ep.handle_datagram(now, &self.rx[..n]) {
                        Ok(Event::Reply(Down::Welcome(w))) => {
                            let offer = w.offer.map(|o| OfferInfo {
                                update: o.update,
                                version: o.version,
                                manifest: match o.manifest {
                                    ManifestRef::Inline(m) => Some(m.to_vec()),
                                    ManifestRef::Fetch { .. } => None,
                                },
                                manifest_len: match o.manifest {
                                    ManifestRef::Inline(m) => m.len() as u32,
                                    ManifestRef::Fetch { len } => len,
                                },
                            });
                            return Ok(Answer::Reply(Reply::Welcome(offer)));
                        }
                        Ok(Event::Reply(Down::Ack)) => return Ok(Answer::Reply(Reply::Ack)),
                        Ok(Event::Reply(Down::Nack(c))) => {
                            return Ok(Answer::Reply(Reply::Nack(c)))
                        }
                        Ok(Event::Chunk {
                            index, data, done, ..
                        }) => {
                            chunks.push((index, data.to_vec()));
                            if done {
                                return Ok(Answer::Chunks(chunks));
                            }
                        }
                        // A late copy of an earlier answer: not ours.
                        Err(_) => {}
                    }
                }
                Err(_) => match self.ep.handle_timeout(self.now()) {
                    Timeout::NotYet => {}
                    Timeout::Retransmit(f) => {
                        let f = f.to_vec();
                        self.socket.send(&f).await.map_err(dbg)?;
                    }
                    Timeout::Incomplete { .. } => return Ok(Answer::Chunks(chunks)),
                    Timeout::GaveUp => return Err("no answer from the server".into()),
                },
            }
        }
    }

    async fn expect_ack(&mut self, msg: &Up<'_>) -> Result<(), String> {
        match self.request(msg).await? {
            Answer::Reply(Reply::Ack) => Ok(()),
            other => Err(format!("{msg:?} answered {other:?}")),
        }
    }

    async fn chunks(&mut self, msg: &Up<'_>) -> Result<Vec<(u32, Vec<u8>)>, String> {
        match self.request(msg).await? {
            Answer::Chunks(c) => Ok(c),
            other => Err(format!("{msg:?} answered {other:?}")),
        }
    }

    async fn fetch_manifest(&mut self, update: UpdateId, len: u32) -> Result<Vec<u8>, String> {
        const CS: u32 = 512;
        let count = len.div_ceil(CS);
        let mut out = vec![0u8; len as usize];
        let req = ChunkRequest::plan(update, Object::Manifest, CS as u16, 0..count, count)
            .ok_or("an empty manifest")?;
        let got = self.chunks(&Up::ChunkRequest(req)).await?;
        if got.len() as u32 != count {
            return Err(format!("manifest: {} of {count} chunks", got.len()));
        }
        for (i, data) in got {
            let start = (i * CS) as usize;
            let end = (start + data.len()).min(out.len());
            out[start..end].copy_from_slice(&data[..end - start]);
        }
        Ok(out)
    }
}

/// The whole fleet and where it talks to.
pub struct Fleet {
    pub server: SocketAddr,
    pub devices: Vec<SimDevice>,
}

impl Fleet {
    /// Wakes every device once, all at once (each on its own socket), and returns what each
    /// did, by device id. Errors: the first device whose wake failed.
    pub async fn wake_all(&mut self) -> Result<Vec<(DeviceId, Did)>, String> {
        let mut set = tokio::task::JoinSet::new();
        let server = self.server;
        for mut d in std::mem::take(&mut self.devices) {
            set.spawn(async move {
                let r = d.wake(server).await;
                (d, r)
            });
        }
        let mut back = Vec::new();
        let mut results = Vec::new();
        let mut first_error = None;
        while let Some(j) = set.join_next().await {
            let (d, r) = j.map_err(|e| format!("a device task panicked: {e}"))?;
            match r {
                Ok(did) => results.push((d.id, did)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            back.push(d);
        }
        back.sort_by_key(|d| d.id.0);
        results.sort_by_key(|(id, _)| id.0);
        self.devices = back;
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }
}
