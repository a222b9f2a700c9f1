//! One wake of the Electron, from reset to the sleep or reset it ends in.

use cloud_proto::{
    CheckIn, ChunkRequest, Decision, DeclineReason, DeferReason, DeviceConfig, DeviceEndpoint,
    Down, DownloadProgress, Event, FirmwareVersion, Goodbye, Keys, ManifestRef, Object, OtaReport,
    OtaState, Publish, SendError, SleepGrant, Timeout, Up, UpdateDecision, UpdateId, UpdateResult,
    UpdateStatus, MAX_CHUNKS_PER_REQUEST, MAX_CHUNK_DATA_DATAGRAM,
};
use core::net::{Ipv4Addr, SocketAddr};
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};
use embedded_storage::nor_flash::NorFlash;
use modem_ublox::{
    Apn, DataError, Modem, PowerError, Protocol, RegStatus, Registration, RegistrationError,
    SimError, SocketError, SocketId,
};
use ota_core::{
    BeginError, ChunkError, ChunkIndex, ChunkOutcome, FinishError, HashStep, Lwm2mState, Phase,
    Updater, UpdaterConfig, Version,
};
use sleep_guard::{GuardConfig, SleepGuard};

use crate::board::Board;
use crate::config::AppConfig;
use crate::identity::{CounterLog, Identity};
use crate::layout::LAYOUT;
use crate::reason::Reason;
use crate::report::{TrialOutcome, WakeEnd, WakeError, WakeReport};
use crate::retained::{RetainedState, RETAINED_LEN};

/// The largest signed manifest the wake can fetch (16 KiB: a 384 KiB image in 512-byte
/// chunks has a 12.4 KB manifest). A larger one is declined with `OutOfRam`.
pub const MANIFEST_MAX: usize = 16 * 1024;

/// Wakes in a row that the awake budget may cut short before the check-in (in ota-core's
/// erase work or the modem's bring-up) and still count as work in progress, measured as
/// [`RetainedState::forced_sleeps`] (forced sleeps since the last answered check-in, this
/// wake's included). Such a wake sleeps [`AppConfig::resume_sleep_s`] and leaves
/// [`RetainedState::failures`] as it was; past this bound it is a failed wake (the retry
/// back-off), so a budget too short ever to reach the cloud does not drain the battery.
pub const MAX_CUT_SHORT_WAKES: u16 = 3;

/// The largest UDP datagram a SARA modem delivers.
const DATAGRAM_MAX: usize = 1024;

/// Bytes of the modem's answer loops before a wait is declared stuck (a modem that keeps
/// saying "readable" without data): bounds every wait even then.
const MAX_POLLS: u32 = 10_000;

/// The RAM a wake works in, owned by the caller (a `static` on the device, a `Box` on the
/// host): 17.9 KB.
pub struct Buffers {
    /// The manifest of an offer, fetched or inline.
    manifest: [u8; MANIFEST_MAX],
    /// One received datagram.
    rx: [u8; DATAGRAM_MAX],
    /// Copy and hash buffer for ota-core's erase and finish steps.
    work: [u8; 512],
    /// Sensor reading.
    sensor: [u8; 64],
}

impl Buffers {
    /// Zeroed buffers. `const`, so they can live in a `static`.
    pub const fn new() -> Self {
        Self {
            manifest: [0; MANIFEST_MAX],
            rx: [0; DATAGRAM_MAX],
            work: [0; 512],
            sensor: [0; 64],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// What a check-in answer offered, copied out of the datagram.
#[derive(Debug, Clone, Copy)]
struct OfferInfo {
    update: UpdateId,
    version: FirmwareVersion,
    image_size: u32,
    /// `Ok(len)`: inline, copied to the manifest buffer; `Err(len)`: to fetch.
    manifest: Result<usize, u32>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchanged {
    Done,
    Incomplete,
}

/// The wake's state, one place: flash, board, guard, updater and report.
struct Cx<'a, B, F> {
    board: &'a mut B,
    flash: &'a mut F,
    cfg: &'a AppConfig<'a>,
    guard: SleepGuard<Reason, 5>,
    report: WakeReport,
    retained: RetainedState,
    log: CounterLog,
    up: Option<Updater>,
    /// An image on trial whose self-check passed: confirm after the check-in.
    confirm_after_checkin: bool,
    /// Install marked or trial rejected: end in a reset.
    reset: bool,
    /// The download needs erase work that waits for the modem to be off; the wake then
    /// comes back after [`AppConfig::resume_sleep_s`], not the cloud's grant.
    erase_after_modem: bool,
    /// The update whose download progress the check-in reported.
    reported_download: Option<UpdateId>,
    /// The budget ran out before the check-in while work was pending (ota-core's erase
    /// work, or the modem's bring-up): not a failure, see [`MAX_CUT_SHORT_WAKES`].
    cut_short: bool,
}

/// The link to the cloud over one UDP socket.
struct Link {
    socket: SocketId,
    ep: DeviceEndpoint,
}

/// The modem operations the steps of a wake use, so that the driver's bounds (the board's
/// UART, delay and pins) are written once, on the one implementation below, instead of on
/// every step. Each method is [`Modem`]'s own (see its docs for contracts and errors).
trait Radio {
    fn power_on(&mut self) -> Result<(), PowerError>;
    fn wait_sim_ready(&mut self, budget_ms: u32) -> Result<(), SimError>;
    fn register(&mut self, opts: &Registration<'_>) -> Result<RegStatus, RegistrationError>;
    fn activate_data(&mut self, apn: &Apn<'_>, budget_ms: u32) -> Result<Ipv4Addr, DataError>;
    fn open_socket(&mut self, proto: Protocol) -> Result<SocketId, SocketError>;
    fn close(&mut self, id: SocketId) -> Result<(), SocketError>;
    fn send_to(&mut self, id: SocketId, to: SocketAddr, data: &[u8]) -> Result<(), SocketError>;
    fn wait_readable(&mut self, id: SocketId, timeout_ms: u32) -> Result<bool, SocketError>;
    fn receive_from(
        &mut self,
        id: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError>;
}

impl<U, D, P, R, V, const L: usize> Radio for Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    fn power_on(&mut self) -> Result<(), PowerError> {
        Modem::power_on(self)
    }
    fn wait_sim_ready(&mut self, budget_ms: u32) -> Result<(), SimError> {
        Modem::wait_sim_ready(self, budget_ms)
    }
    fn register(&mut self, opts: &Registration<'_>) -> Result<RegStatus, RegistrationError> {
        Modem::register(self, opts)
    }
    fn activate_data(&mut self, apn: &Apn<'_>, budget_ms: u32) -> Result<Ipv4Addr, DataError> {
        Modem::activate_data(self, apn, budget_ms)
    }
    fn open_socket(&mut self, proto: Protocol) -> Result<SocketId, SocketError> {
        Modem::open_socket(self, proto)
    }
    fn close(&mut self, id: SocketId) -> Result<(), SocketError> {
        Modem::close(self, id)
    }
    fn send_to(&mut self, id: SocketId, to: SocketAddr, data: &[u8]) -> Result<(), SocketError> {
        Modem::send_to(self, id, to, data)
    }
    fn wait_readable(&mut self, id: SocketId, timeout_ms: u32) -> Result<bool, SocketError> {
        Modem::wait_readable(self, id, timeout_ms)
    }
    fn receive_from(
        &mut self,
        id: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        Modem::receive_from(self, id, buf)
    }
}

/// Runs one wake: from the reset to the [`WakeEnd`] in the returned report.
///
/// 1. Starts the sleep-guard cycle (budget [`AppConfig::awake_budget_ms`]), reads retained
///    memory, the identity and counter log (sector 3), opens ota-core.
/// 2. An image on trial runs [`Board::self_check`]; a failure marks it failed.
/// 3. ota-core's erase work runs before the modem is powered (each step under a critical
///    `FlashWrite` lease).
/// 4. Modem on, SIM, registration, data context, UDP socket.
/// 5. Check-in (sensor publish, OTA report); a trial image that passed is confirmed.
/// 6. On an offer: `UpdatePending`, the manifest (inline or fetched), ota-core's decision,
///    the answer, chunks under a renewed `Download` lease while the budget lasts; when all
///    are stored, the image is hashed, marked for install and reported.
/// 7. Goodbye, modem off (`AT+CPWROFF`), erase work the download still needs.
/// 8. Ends in [`WakeEnd::Reset`] (install, or revert of a rejected trial) or a bounded
///    [`WakeEnd::Sleep`]: the cloud's grant, [`AppConfig::resume_sleep_s`] while a download
///    is in progress or when the awake budget cut steps 3–4 short (work pending, not a
///    failure, at most [`MAX_CUT_SHORT_WAKES`] times in a row),
///    [`AppConfig::retry_sleep_s`] after an error.
///
/// Never panics on data from flash, the modem or the network, and never waits longer than
/// the awake budget plus its extension (at most [`AppConfig::max_extension_ms`]) plus one
/// modem command's timeout or critical flash operation, plus the modem's power-down (about
/// 2 s; some 30 s of fallbacks when the modem does not switch off, which the report then
/// flags: [`WakeReport::modem_left_on`]).
///
/// Cost: one check-in round trip (two more with a trial confirm or an update status, one per
/// chunk request, one for a decision), a Goodbye datagram; flash as the ota-core calls it
/// makes (their docs), one 8-byte counter record per
/// [`AppConfig::counter_reserve`] frames, a scan of sector 3 (at most 16 KB read).
pub fn wake<B, F, U, D, P, R, V, const L: usize>(
    board: &mut B,
    flash: &mut F,
    modem: &mut Modem<U, D, P, R, V, L>,
    config: &AppConfig<'_>,
    bufs: &mut Buffers,
) -> WakeReport
where
    B: Board,
    F: NorFlash,
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    let t0 = board.now_ms();
    let mut cx = Cx {
        board,
        flash,
        cfg: config,
        guard: SleepGuard::new(GuardConfig {
            awake_budget_ms: config.awake_budget_ms,
            max_extension_ms: config.max_extension_ms,
            max_critical_overrun_ms: config.critical_overrun_ms,
        }),
        report: WakeReport::new(config.factory_version),
        retained: RetainedState::default(),
        log: CounterLog::unread(),
        up: None,
        confirm_after_checkin: false,
        reset: false,
        erase_after_modem: false,
        reported_download: None,
        cut_short: false,
    };
    // Only an NMI could make this fail; the budget then stays unset and every check says
    // "no time left": the wake ends at once in a sleep.
    let _ = cx.guard.begin_cycle(t0);
    let mut grant = None;
    let mut powered = false;
    let ran = run(&mut cx, modem, bufs, &mut grant, &mut powered);
    if let Err(e) = ran {
        cx.report.fail(e);
    }
    if powered || modem.is_powered() {
        // Bounded by the driver (AT+CPWROFF, then its fallbacks).
        cx.report.modem_left_on = modem.power_off().is_err();
    }
    if cx.erase_after_modem && !cx.reset {
        // The modem is off: an erase stalls nothing now.
        let _ = erase_work(&mut cx, bufs);
    }
    let end = finish(&mut cx, grant);
    let stats = modem.stats();
    cx.report.uart_bytes = (stats.bytes_sent, stats.bytes_received);
    cx.report.end = end;
    cx.report.awake_ms = cx.now().saturating_sub(t0);
    cx.report
}

impl<B: Board, F: NorFlash> Cx<'_, B, F> {
    fn now(&mut self) -> u64 {
        self.board.now_ms()
    }

    fn left(&mut self) -> u64 {
        let now = self.now();
        self.guard.remaining_ms(now)
    }

    fn lease(&mut self, r: Reason, ms: u32) {
        let now = self.now();
        // Refusals (a lease past the critical overrun) leave the guard's decision to force
        // the sleep; the wake checks it before every step.
        let _ = self.guard.lease(r, ms, now);
    }

    /// The awake budget ran out before the check-in, with work pending: records it and
    /// returns the error that ends the wake.
    fn cut_short(&mut self) -> WakeError {
        self.report.forced = true;
        self.cut_short = true;
        WakeError::Budget
    }

    /// A modem bring-up step failed; `timed_out`: the driver says its budget of `waited` ms
    /// ran out. When the awake budget set that wait (below the step's own `limit`), the
    /// budget cut the step short ([`Self::cut_short`]); otherwise `e` stands (a SIM missing,
    /// registration denied, a step's own time limit: real failures).
    fn step_failed(&mut self, timed_out: bool, waited: u32, limit: u32, e: WakeError) -> WakeError {
        if timed_out && waited < limit {
            self.cut_short()
        } else {
            e
        }
    }

    fn save_retained(&mut self) {
        let b: [u8; RETAINED_LEN] = self.retained.encode();
        self.board.store_retained(&b);
    }

    /// Runs `op` under a critical `FlashWrite` lease.
    fn flash_op<T>(&mut self, op: impl FnOnce(&mut Self) -> T) -> T {
        self.lease(Reason::FlashWrite, 5_000);
        let r = op(self);
        self.lease(Reason::FlashWrite, 0);
        r
    }
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

/// Steps 1–7; `Err` is the first error, after which the caller ends the wake safely.
fn run<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    bufs: &mut Buffers,
    grant: &mut Option<SleepGrant>,
    powered: &mut bool,
) -> Result<(), WakeError> {
    // 1. Retained memory, identity, counters, ota-core.
    let mut raw = [0u8; RETAINED_LEN];
    cx.board.load_retained(&mut raw);
    match RetainedState::decode(&raw) {
        Some(r) => {
            cx.retained = r;
            cx.report.retained_valid = true;
        }
        None => cx.retained = RetainedState::default(),
    }
    cx.retained.wakes = cx.retained.wakes.wrapping_add(1);
    let identity = Identity::read(cx.flash).map_err(|_| WakeError::NotProvisioned)?;
    cx.log = CounterLog::read(cx.flash).map_err(|_| WakeError::Counters)?;
    let counters = match cx.retained.counters {
        // Retained counters are written before every frame, so `next` is exact; they are
        // refused only when they claim a reservation flash does not hold (or are
        // inconsistent): then every counter used is below the flash reservation.
        Some(c) if c.reserved_until <= cx.log.reserved_until && c.next <= c.reserved_until => c,
        _ => cloud_proto::Counters::cold(cx.log.reserved_until),
    };
    let updater_cfg = UpdaterConfig {
        hardware_id: cx.cfg.hardware_id,
        allow_downgrade: false,
    };
    match Updater::open(cx.flash, LAYOUT, updater_cfg) {
        Ok(u) => cx.up = Some(u),
        // Without ota-core the device still checks in (and never touches an update).
        Err(_) => cx.report.fail(WakeError::OtaOpen),
    }
    let on_trial = cx.up.as_ref().is_some_and(|u| u.is_trial());
    if let Some(u) = cx.up.as_ref() {
        let running = if on_trial {
            u.staged_image()
        } else {
            u.confirmed_image()
        };
        if let Some(img) = running {
            cx.report.running = version(img.version);
        }
        if let Some(p) = u.status().progress {
            cx.report.progress = (p.chunks_done, p.chunks_total);
        }
    }

    // 2. Trial: the self-check decides before anything else.
    if on_trial {
        if cx.board.self_check() {
            cx.confirm_after_checkin = true;
            cx.report.trial = Some(TrialOutcome::Pending);
        } else {
            cx.report.trial = Some(TrialOutcome::Failed);
            cx.reset = true;
            let failed = cx.flash_op(|cx| match cx.up.as_mut() {
                Some(u) => u.mark_failed(cx.flash),
                None => Ok(()),
            });
            // Not recorded or not: a trial image that is never confirmed is reverted by
            // the bootloader at the reset all the same.
            if failed.is_err() {
                cx.report.fail(WakeError::Flash);
            }
        }
    }

    // 3. Erase work before the modem: a sector erase stalls the flash (and the CPU
    // executing from it) for a second or more.
    erase_work(cx, bufs)?;
    // The budget ended in the erase work (or a trial's flash record): the modem is not
    // powered for a wake that has no time left to use it.
    if cx.report.forced || cx.left() == 0 {
        return Err(cx.cut_short());
    }

    // 4. Modem. A step the budget cuts short is work pending, not a failure.
    cx.lease(Reason::Modem, 60_000);
    *powered = true;
    modem.power_on().map_err(|_| WakeError::ModemPower)?;
    let budget = |cx: &mut Cx<'_, B, F>, cap: u32| -> Result<u32, WakeError> {
        let left = cx.left();
        if left == 0 {
            return Err(cx.cut_short());
        }
        Ok(u32::try_from(left).unwrap_or(u32::MAX).min(cap))
    };
    let cap = cx.cfg.sim_ready_ms;
    let b = budget(cx, cap)?;
    if let Err(e) = modem.wait_sim_ready(b) {
        let timed_out = matches!(e, SimError::NotReady);
        return Err(cx.step_failed(timed_out, b, cap, WakeError::Sim));
    }
    let cap = cx.cfg.register_ms;
    let b = budget(cx, cap)?;
    if let Err(e) = modem.register(&Registration::new(b)) {
        let timed_out = matches!(e, RegistrationError::Timeout(_));
        return Err(cx.step_failed(timed_out, b, cap, WakeError::Registration));
    }
    let cap = cx.cfg.data_ms;
    let b = budget(cx, cap)?;
    if let Err(e) = modem.activate_data(&Apn::new(cx.cfg.apn), b) {
        let timed_out = matches!(e, DataError::Timeout);
        return Err(cx.step_failed(timed_out, b, cap, WakeError::Data));
    }
    let socket = modem
        .open_socket(Protocol::Udp)
        .map_err(|_| WakeError::Socket)?;
    cx.lease(Reason::Modem, 0);
    let mut dc = DeviceConfig::new(identity.device);
    dc.rto_initial_ms = cx.cfg.rto_initial_ms;
    dc.rto_max_ms = cx.cfg.rto_max_ms;
    dc.max_transmissions = cx.cfg.max_transmissions.max(1);
    dc.counter_reserve = cx.cfg.counter_reserve.max(1);
    let mut link = Link {
        socket,
        ep: DeviceEndpoint::new(dc, Keys::derive(&identity.root_key), counters),
    };

    let r = cloud(cx, modem, bufs, &mut link, grant, on_trial);
    // 7. Goodbye: one datagram, not waited for (its Ack changes nothing for the device).
    if !matches!(r, Err(WakeError::ServerSilent | WakeError::Socket)) && cx.report.checked_in {
        // A reset is a wake right away.
        let sleep_s = if cx.reset {
            0
        } else {
            planned_sleep_s(cx, *grant)
        };
        let _ = send_only(cx, modem, &mut link, &Up::Goodbye(Goodbye { sleep_s }));
    }
    let _ = modem.close(link.socket);
    cx.retained.counters = Some(link.ep.counters());
    r
}

/// Step 5–6: check-in, trial decision, offer, download.
fn cloud<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    bufs: &mut Buffers,
    link: &mut Link,
    grant: &mut Option<SleepGrant>,
    on_trial: bool,
) -> Result<(), WakeError> {
    // 5. Check-in.
    let n = cx
        .board
        .read_sensor(&mut bufs.sensor)
        .min(bufs.sensor.len());
    let mut publishes = heapless::Vec::new();
    if n > 0 {
        let _ = publishes.push(Publish {
            topic: cx.cfg.sensor_topic,
            data: &bufs.sensor[..n],
        });
    }
    let ota = match cx.up.as_ref() {
        Some(u) => {
            let s = u.status();
            let download = match (s.state, cx.retained.update, s.progress, u.download_header()) {
                (
                    Lwm2mState::Downloading | Lwm2mState::Downloaded,
                    Some(update),
                    Some(p),
                    Some(h),
                ) => Some(DownloadProgress {
                    update,
                    bytes_done: p.chunks_done.saturating_mul(h.chunk_size).min(h.image_size),
                }),
                _ => None,
            };
            cx.reported_download = download.map(|d| d.update);
            OtaReport {
                state: ota_state(s.state),
                result: update_result(s.result),
                download,
            }
        }
        None => OtaReport::default(),
    };
    let checkin = Up::CheckIn(CheckIn {
        firmware: cx.report.running,
        trial: on_trial,
        ota,
        battery_mv: cx.board.battery_mv(),
        forced_sleeps: cx.retained.forced_sleeps,
        publishes,
    });
    let mut offer: Option<OfferInfo> = None;
    let manifest = &mut bufs.manifest;
    let mut welcome = false;
    exchange(cx, modem, link, &mut bufs.rx, &checkin, |cx, ev| {
        match ev {
            Event::Reply(Down::Welcome(w)) => {
                welcome = true;
                cx.report.publishes_acked = w.publishes_acked;
                cx.report.server_time = Some(w.server_time);
                *grant = Some(w.sleep);
                offer = w.offer.map(|o| OfferInfo {
                    update: o.update,
                    version: o.version,
                    image_size: o.image_size,
                    manifest: match o.manifest {
                        ManifestRef::Inline(m) if m.len() <= manifest.len() => {
                            manifest[..m.len()].copy_from_slice(m);
                            Ok(m.len())
                        }
                        ManifestRef::Inline(m) => Err(u32::try_from(m.len()).unwrap_or(u32::MAX)),
                        ManifestRef::Fetch { len } => Err(len),
                    },
                });
            }
            _ => return Err(WakeError::Refused),
        }
        Ok(())
    })?;
    drop(checkin);
    if !welcome {
        return Err(WakeError::Refused);
    }
    cx.report.checked_in = true;
    cx.retained.forced_sleeps = 0;

    // The trial image worked and reached the cloud: keep it.
    if cx.confirm_after_checkin {
        let r = cx.flash_op(|cx| match cx.up.as_mut() {
            Some(u) => u.mark_confirmed(cx.flash),
            None => Ok(()),
        });
        match r {
            Ok(()) => {
                cx.report.trial = Some(TrialOutcome::Confirmed);
                if let Some(update) = cx.retained.update.take() {
                    status(
                        cx,
                        modem,
                        link,
                        bufs,
                        update,
                        OtaState::Idle,
                        UpdateResult::Success,
                    )?;
                }
            }
            Err(_) => return Err(WakeError::Flash),
        }
    }
    if cx.report.trial == Some(TrialOutcome::Failed) {
        if let Some(update) = cx.retained.update.take() {
            status(
                cx,
                modem,
                link,
                bufs,
                update,
                OtaState::Updating,
                UpdateResult::UpdateFailed,
            )?;
        }
        return Ok(());
    }

    // 6. The offer.
    let Some(offer) = offer else {
        return Ok(());
    };
    cx.report.offer = Some((offer.update, offer.version, offer.image_size));
    if cx.up.is_none() {
        return Ok(());
    }
    let now = cx.now();
    let _ = cx.guard.set(Reason::UpdatePending, true, now);
    if let Some(g) = grant {
        let _ = cx
            .guard
            .extend(g.awake_extension_ms.min(cx.cfg.max_extension_ms), now);
    }
    let r = handle_offer(cx, modem, bufs, link, offer);
    let now = cx.now();
    let _ = cx.guard.set(Reason::UpdatePending, false, now);
    let _ = cx.guard.lease(Reason::Download, 0, now);
    if let Some(u) = cx.up.as_ref() {
        match u.status().progress {
            Some(p) => cx.report.progress = (p.chunks_done, p.chunks_total),
            // A download abandoned for another (after an install the last figures stand).
            None if !cx.report.install_marked => cx.report.progress = (0, 0),
            None => {}
        }
    }
    r
}

/// Decides on an offer, answers it, and downloads what the budget allows.
fn handle_offer<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    bufs: &mut Buffers,
    link: &mut Link,
    offer: OfferInfo,
) -> Result<(), WakeError> {
    let decision = decide(cx, modem, bufs, link, &offer)?;
    cx.report.decision = Some(decision);
    // Resuming a download whose progress the check-in just reported: the cloud knows (it
    // keeps offering an accepted update until it finishes), no answer is needed.
    let known =
        matches!(decision, Decision::Accept { .. }) && cx.reported_download == Some(offer.update);
    if !known {
        let msg = Up::UpdateDecision(UpdateDecision {
            update: offer.update,
            decision,
        });
        expect_ack(cx, modem, link, bufs, &msg)?;
        cx.report.decision_sent = true;
    }
    if !matches!(decision, Decision::Accept { .. }) {
        return Ok(());
    }
    cx.retained.update = Some(offer.update);
    let r = download(cx, modem, bufs, link, offer.update);
    if let Some(p) = cx.up.as_ref().and_then(|u| u.status().progress) {
        cx.report.progress = (p.chunks_done, p.chunks_total);
    }
    r?;
    complete(cx, modem, bufs, link, offer.update)
}

/// The answer to an offer (and, for a new download, ota-core's `begin`).
fn decide<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    bufs: &mut Buffers,
    link: &mut Link,
    offer: &OfferInfo,
) -> Result<Decision, WakeError> {
    let defer = |reason, retry_in_s| Decision::Defer { retry_in_s, reason };
    let rejected =
        |r: ota_core::UpdateResult| Decision::Decline(DeclineReason::Rejected(update_result(r)));
    let Some(up) = cx.up.as_ref() else {
        return Ok(defer(DeferReason::Busy, cx.cfg.defer_retry_s));
    };
    let phase = up.phase();
    if matches!(phase, Phase::Installing | Phase::Trial | Phase::Reverting) {
        return Ok(defer(DeferReason::Busy, cx.cfg.defer_retry_s));
    }
    // The download in progress (or complete) of this very update: resume.
    if let Some(h) = up.download_header() {
        if matches!(phase, Phase::Downloading | Phase::Downloaded)
            && version(h.version) == offer.version
            && h.image_size == offer.image_size
        {
            let done = up.status().progress.map_or(0, |p| p.chunks_done);
            return Ok(Decision::Accept {
                bytes_done: done.saturating_mul(h.chunk_size).min(h.image_size),
            });
        }
    }
    if offer.version == cx.report.running {
        return Ok(Decision::Decline(DeclineReason::AlreadyInstalled));
    }
    if cx.board.battery_mv() < cx.cfg.min_battery_mv {
        return Ok(defer(DeferReason::LowBattery, cx.cfg.defer_retry_s));
    }
    let len = match offer.manifest {
        Ok(len) => len,
        Err(len) if len as usize > MANIFEST_MAX => {
            return Ok(rejected(ota_core::UpdateResult::OutOfRam));
        }
        Err(len) => {
            fetch_manifest(cx, modem, bufs, link, offer.update, len as usize)?;
            len as usize
        }
    };
    let Some(up) = cx.up.as_mut() else {
        return Ok(defer(DeferReason::Busy, cx.cfg.defer_retry_s));
    };
    let verified = match up.verify_offer(&bufs.manifest[..len], cx.cfg.trusted_keys) {
        Ok(v) => v,
        Err(e) => return Ok(rejected(e.update_result())),
    };
    let h = *verified.header();
    if h.chunk_size as usize > MAX_CHUNK_DATA_DATAGRAM || version(h.version) != offer.version {
        return Ok(rejected(ota_core::UpdateResult::UnsupportedPackage));
    }
    let flash = &mut *cx.flash;
    let _ = cx.guard.lease(Reason::FlashWrite, 5_000, cx.board.now_ms());
    let begun = up.begin(flash, &verified);
    let _ = cx.guard.lease(Reason::FlashWrite, 0, cx.board.now_ms());
    Ok(match begun {
        Ok(_) => {
            let done = up.status().progress.map_or(0, |p| p.chunks_done);
            Decision::Accept {
                bytes_done: done.saturating_mul(h.chunk_size).min(h.image_size),
            }
        }
        // An earlier download's progress region (or the state log) needs an erase, which
        // waits for the modem to be off: come back soon.
        Err(BeginError::NeedsErase) => {
            cx.erase_after_modem = true;
            defer(DeferReason::Busy, cx.cfg.resume_sleep_s)
        }
        Err(BeginError::AlreadyInstalled) => Decision::Decline(DeclineReason::AlreadyInstalled),
        Err(BeginError::Refused(e)) => rejected(e.update_result()),
        Err(BeginError::UnsupportedChunkSize | BeginError::ProgressRegionTooSmall) => {
            rejected(ota_core::UpdateResult::UnsupportedPackage)
        }
        Err(BeginError::Flash(_)) => {
            cx.report.fail(WakeError::Flash);
            defer(DeferReason::Busy, cx.cfg.retry_sleep_s)
        }
        Err(_) => defer(DeferReason::Busy, cx.cfg.defer_retry_s),
    })
}

/// Fetches a manifest of `len` bytes (at most [`MANIFEST_MAX`]) into the manifest buffer.
fn fetch_manifest<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    bufs: &mut Buffers,
    link: &mut Link,
    update: UpdateId,
    len: usize,
) -> Result<(), WakeError> {
    const CS: usize = 512;
    let count = len.div_ceil(CS) as u32; // ≤ 32: MANIFEST_MAX / 512
    let mut have: u64 = 0;
    let full = if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    };
    let mut tries = 0;
    while have != full {
        tries += 1;
        if tries > 4 {
            return Err(WakeError::ServerSilent);
        }
        let missing = (0..count).filter(|i| have & (1 << i) == 0);
        let Some(req) = ChunkRequest::plan(update, Object::Manifest, CS as u16, missing, count)
        else {
            break;
        };
        let manifest = &mut bufs.manifest;
        exchange(
            cx,
            modem,
            link,
            &mut bufs.rx,
            &Up::ChunkRequest(req),
            |cx, ev| match ev {
                Event::Chunk {
                    object: Object::Manifest,
                    index,
                    data,
                    ..
                } if index < count => {
                    let start = index as usize * CS;
                    let end = (start + data.len()).min(len);
                    if let Some(dst) = manifest.get_mut(start..end) {
                        dst.copy_from_slice(&data[..end - start]);
                        have |= 1 << index;
                        cx.report.manifest_chunks += 1;
                    }
                    Ok(())
                }
                Event::Reply(_) => Err(WakeError::Refused),
                _ => Ok(()),
            },
        )?;
    }
    Ok(())
}

/// Pulls missing chunks while the budget lasts.
fn download<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    bufs: &mut Buffers,
    link: &mut Link,
    update: UpdateId,
) -> Result<(), WakeError> {
    let per_request = cx.cfg.chunks_per_request.clamp(1, MAX_CHUNKS_PER_REQUEST) as usize;
    let mut idx = [ChunkIndex(0); MAX_CHUNKS_PER_REQUEST as usize];
    loop {
        let (chunk_size, n) = {
            let Some(up) = cx.up.as_ref() else {
                return Ok(());
            };
            if up.phase() != Phase::Downloading {
                return Ok(());
            }
            let Some(h) = up.download_header() else {
                return Ok(());
            };
            // Staging sectors not erased yet (or a repair): after the modem is off.
            let work = up.erase_work(cx.flash).map_err(|_| WakeError::Flash)?;
            if !work.is_done() {
                cx.erase_after_modem = true;
                return Ok(());
            }
            let n = up
                .missing_chunks(cx.flash, ChunkIndex(0), &mut idx[..per_request])
                .map_err(|_| WakeError::Flash)?;
            (h.chunk_size, n)
        };
        if n == 0 {
            return Ok(());
        }
        if cx.left() < u64::from(cx.cfg.min_request_ms) {
            cx.report.forced = true;
            return Ok(());
        }
        cx.lease(Reason::Download, 30_000);
        let Ok(cs) = u16::try_from(chunk_size) else {
            return Ok(());
        };
        let Some(req) = ChunkRequest::plan(
            update,
            Object::Image,
            cs,
            idx[..n].iter().map(|c| c.0),
            n as u32,
        ) else {
            return Ok(());
        };
        let mut needs_erase = false;
        let r = exchange(
            cx,
            modem,
            link,
            &mut bufs.rx,
            &Up::ChunkRequest(req),
            |cx, ev| {
                match ev {
                    Event::Chunk {
                        object: Object::Image,
                        index,
                        data,
                        ..
                    } => {
                        let written = cx.flash_op(|cx| match cx.up.as_mut() {
                            Some(up) => up.handle_chunk(cx.flash, ChunkIndex(index), data),
                            None => Err(ChunkError::NotDownloading),
                        });
                        match written {
                            Ok(ChunkOutcome::Written) => cx.report.chunks_fetched += 1,
                            Ok(ChunkOutcome::Duplicate) => cx.report.chunks_refetched += 1,
                            Err(ChunkError::NeedsErase) => needs_erase = true,
                            Err(ChunkError::Flash(_)) => return Err(WakeError::Flash),
                            // A chunk that fails its digest or length is not written; it stays
                            // missing and is asked for again.
                            Err(_) => cx.report.chunks_rejected += 1,
                        }
                        Ok(())
                    }
                    Event::Reply(_) => Err(WakeError::Refused),
                    Event::Chunk { .. } => Ok(()),
                }
            },
        );
        match r {
            Ok(Exchanged::Done | Exchanged::Incomplete) => {}
            Err(WakeError::Budget) => {
                cx.report.forced = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if needs_erase {
            cx.erase_after_modem = true;
            return Ok(());
        }
        // A whole request of chunks that fail their digest: the cloud serves a broken image
        // (or someone forges it). Stop; the wake backs off.
        if cx.report.chunks_rejected > 0 && cx.report.chunks_fetched == 0 {
            return Err(WakeError::Integrity);
        }
    }
}

/// When every chunk is stored: hash, mark for install, report.
fn complete<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    bufs: &mut Buffers,
    link: &mut Link,
    update: UpdateId,
) -> Result<(), WakeError> {
    loop {
        let Some(up) = cx.up.as_mut() else {
            return Ok(());
        };
        match up.phase() {
            Phase::Downloaded => break,
            Phase::Downloading => {}
            _ => return Ok(()),
        }
        if up
            .next_missing(cx.flash, ChunkIndex(0))
            .map_err(|_| WakeError::Flash)?
            .is_some()
        {
            return Ok(());
        }
        let now = cx.board.now_ms();
        if cx.guard.remaining_ms(now) == 0 {
            cx.report.forced = true;
            return Ok(());
        }
        let _ = cx.guard.lease(Reason::FlashWrite, 5_000, now);
        let step = up.finish_step(cx.flash, &mut bufs.work, cx.cfg.hash_step_bytes.max(1));
        let now = cx.board.now_ms();
        let _ = cx.guard.lease(Reason::FlashWrite, 0, now);
        match step {
            Ok(HashStep::Done) => break,
            Ok(HashStep::Continue { .. }) => {}
            Err(FinishError::NeedsErase) => {
                cx.erase_after_modem = true;
                return Ok(());
            }
            Err(FinishError::IntegrityFailure) => {
                cx.report.fail(WakeError::Integrity);
                cx.retained.update = None;
                return status(
                    cx,
                    modem,
                    link,
                    bufs,
                    update,
                    OtaState::Idle,
                    UpdateResult::IntegrityFailure,
                );
            }
            Err(FinishError::Incomplete { .. }) => return Ok(()),
            Err(_) => return Err(WakeError::Flash),
        }
    }
    let r = cx.flash_op(|cx| match cx.up.as_mut() {
        Some(up) => up.mark_install(cx.flash),
        None => Ok(()),
    });
    match r {
        Ok(()) => {
            cx.report.install_marked = true;
            cx.reset = true;
            status(
                cx,
                modem,
                link,
                bufs,
                update,
                OtaState::Downloaded,
                UpdateResult::Initial,
            )
        }
        Err(ota_core::StateError::NeedsErase) => {
            cx.erase_after_modem = true;
            Ok(())
        }
        Err(_) => Err(WakeError::Flash),
    }
}

/// Sends an `UpdateStatus` and waits for its `Ack`.
fn status<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    link: &mut Link,
    bufs: &mut Buffers,
    update: UpdateId,
    state: OtaState,
    result: UpdateResult,
) -> Result<(), WakeError> {
    let msg = Up::UpdateStatus(UpdateStatus {
        update,
        state,
        result,
    });
    expect_ack(cx, modem, link, bufs, &msg)
}

fn expect_ack<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    link: &mut Link,
    bufs: &mut Buffers,
    msg: &Up<'_>,
) -> Result<(), WakeError> {
    let mut acked = false;
    exchange(cx, modem, link, &mut bufs.rx, msg, |_, ev| {
        acked = matches!(ev, Event::Reply(Down::Ack));
        Ok(())
    })?;
    if acked {
        Ok(())
    } else {
        Err(WakeError::Refused)
    }
}

/// Persists the counter reservation when due, seals `msg`, keeps the counters in retained
/// memory and sends the frame. Returns the frame length.
fn transmit<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    link: &mut Link,
    msg: &Up<'_>,
) -> Result<(), WakeError> {
    if let Some(reserve) = link.ep.checkpoint() {
        let r = cx.flash_op(|cx| cx.log.append(cx.flash, reserve));
        r.map_err(|_| WakeError::Counters)?;
        link.ep.mark_checkpointed(reserve);
    }
    let now = cx.now();
    let tx = link.ep.send(now, msg).map_err(|e| match e {
        SendError::CheckpointRequired { .. } | SendError::CountersExhausted => WakeError::Counters,
        _ => WakeError::Refused,
    })?;
    // Persisted before the frame is on the air: a counter is never used for two frames.
    cx.retained.counters = Some(tx.counters);
    let b = cx.retained.encode();
    cx.board.store_retained(&b);
    let len = tx.frame.len();
    modem
        .send_to(link.socket, cx.cfg.server, tx.frame)
        .map_err(|_| WakeError::Socket)?;
    cx.report.requests += 1;
    cx.report.bytes_up = cx.report.bytes_up.saturating_add(len as u32);
    Ok(())
}

/// Sends `msg` without waiting for its answer (the Goodbye).
fn send_only<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    link: &mut Link,
    msg: &Up<'_>,
) -> Result<(), WakeError> {
    if link.ep.is_busy() {
        link.ep.abandon();
    }
    let r = transmit(cx, modem, link, msg);
    link.ep.abandon();
    r
}

/// One request and its answer (or chunks), retransmitted on the endpoint's timer, bounded by
/// the awake budget. `on_event` gets every accepted event; frames the endpoint refuses are
/// dropped (they change nothing).
fn exchange<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    link: &mut Link,
    rx: &mut [u8; DATAGRAM_MAX],
    msg: &Up<'_>,
    mut on_event: impl FnMut(&mut Cx<'_, B, F>, Event<'_>) -> Result<(), WakeError>,
) -> Result<Exchanged, WakeError> {
    let r = exchange_inner(cx, modem, link, rx, msg, &mut on_event);
    if r.is_err() || link.ep.is_busy() {
        link.ep.abandon();
    }
    cx.lease(Reason::CheckIn, 0);
    r
}

fn exchange_inner<B: Board, F: NorFlash, M: Radio>(
    cx: &mut Cx<'_, B, F>,
    modem: &mut M,
    link: &mut Link,
    rx: &mut [u8; DATAGRAM_MAX],
    msg: &Up<'_>,
    on_event: &mut impl FnMut(&mut Cx<'_, B, F>, Event<'_>) -> Result<(), WakeError>,
) -> Result<Exchanged, WakeError> {
    transmit(cx, modem, link, msg)?;
    cx.lease(Reason::CheckIn, 30_000);
    for _ in 0..MAX_POLLS {
        let now = cx.now();
        let left = cx.guard.remaining_ms(now);
        if left == 0 {
            cx.report.forced = true;
            return Err(WakeError::Budget);
        }
        let due = link.ep.poll_timeout().unwrap_or(now);
        let wait = due.saturating_sub(now).min(left).max(1);
        let wait = u32::try_from(wait).unwrap_or(u32::MAX);
        if modem
            .wait_readable(link.socket, wait)
            .map_err(|_| WakeError::Socket)?
        {
            match modem.receive_from(link.socket, rx) {
                Ok(Some((n, from))) => {
                    cx.report.bytes_down = cx.report.bytes_down.saturating_add(n as u32);
                    if from != cx.cfg.server {
                        continue;
                    }
                    let now = cx.now();
                    let Some(bytes) = rx.get(..n) else {
                        continue;
                    };
                    if let Ok(ev) = link.ep.handle_datagram(now, bytes) {
                        let done = matches!(ev, Event::Reply(_) | Event::Chunk { done: true, .. });
                        on_event(cx, ev)?;
                        if done {
                            return Ok(Exchanged::Done);
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(_) => return Err(WakeError::Socket),
            }
        }
        let now = cx.now();
        let mut again = None;
        match link.ep.handle_timeout(now) {
            Timeout::NotYet => {}
            Timeout::Retransmit(frame) => again = Some(frame),
            Timeout::Incomplete { .. } => return Ok(Exchanged::Incomplete),
            Timeout::GaveUp => return Err(WakeError::ServerSilent),
        }
        if let Some(frame) = again {
            let len = frame.len();
            modem
                .send_to(link.socket, cx.cfg.server, frame)
                .map_err(|_| WakeError::Socket)?;
            cx.report.retransmissions += 1;
            cx.report.bytes_up = cx.report.bytes_up.saturating_add(len as u32);
        }
    }
    Err(WakeError::Socket)
}

/// Runs ota-core's erase work while the budget allows, one step under a critical lease each.
fn erase_work<B: Board, F: NorFlash>(
    cx: &mut Cx<'_, B, F>,
    bufs: &mut Buffers,
) -> Result<(), WakeError> {
    loop {
        let Some(up) = cx.up.as_mut() else {
            return Ok(());
        };
        let before = up.erase_work(cx.flash).map_err(|_| WakeError::Flash)?;
        if before.is_done() {
            return Ok(());
        }
        let now = cx.board.now_ms();
        if cx.guard.remaining_ms(now) == 0 {
            cx.report.forced = true;
            return Ok(());
        }
        let _ = cx.guard.lease(Reason::FlashWrite, 5_000, now);
        let after = up.erase_step(cx.flash, &mut bufs.work);
        let now = cx.board.now_ms();
        let _ = cx.guard.lease(Reason::FlashWrite, 0, now);
        let after = after.map_err(|_| WakeError::Flash)?;
        cx.report.erase_steps += 1;
        cx.report.erased_bytes = cx
            .report
            .erased_bytes
            .saturating_add(before.bytes.saturating_sub(after.bytes));
    }
}

/// The sleep this wake asks for: a download in progress that the cloud offered this wake,
/// or erase work it waits for, comes back after [`AppConfig::resume_sleep_s`]; otherwise the
/// cloud's grant, clamped.
fn planned_sleep_s<B: Board, F: NorFlash>(cx: &Cx<'_, B, F>, grant: Option<SleepGrant>) -> u32 {
    // Only a download the cloud offered this wake (and the device accepted) is worth coming
    // back for soon: one whose rollout was cancelled or paused for new devices is not served.
    let downloading = matches!(cx.report.decision, Some(Decision::Accept { .. }))
        && cx
            .up
            .as_ref()
            .is_some_and(|u| matches!(u.phase(), Phase::Downloading | Phase::Downloaded));
    let granted = grant.map_or(cx.cfg.default_sleep_s, |g| g.next_checkin_s);
    let s = if downloading || cx.erase_after_modem {
        granted.min(cx.cfg.resume_sleep_s)
    } else {
        granted
    };
    s.clamp(1, cx.cfg.max_sleep_s.max(1))
}

/// Step 8: the end, with retained memory written last.
///
/// A failed wake (no check-in answered, or a link, counter or flash error) sleeps
/// [`AppConfig::retry_sleep_s`], doubled for every failed wake before it, at most
/// [`AppConfig::default_sleep_s`]: a device that cannot reach the cloud or write its flash
/// backs off instead of draining its battery. A wake the budget cut short before the
/// check-in (erase work, or a modem step that timed out on the budget rather than its own
/// limit) is not a failure while [`MAX_CUT_SHORT_WAKES`] allows: it sleeps
/// [`AppConfig::resume_sleep_s`] and leaves the failure count as it was.
fn finish<B: Board, F: NorFlash>(cx: &mut Cx<'_, B, F>, grant: Option<SleepGrant>) -> WakeEnd {
    if cx.report.forced {
        cx.retained.forced_sleeps = cx.retained.forced_sleeps.saturating_add(1);
    }
    // Work cut short by the budget before the check-in comes back soon, a bounded number of
    // times in a row.
    let cut_short =
        cx.cut_short && !cx.report.checked_in && cx.retained.forced_sleeps <= MAX_CUT_SHORT_WAKES;
    let failed = !cut_short
        && (!cx.report.checked_in
            || matches!(
                cx.report.error,
                Some(
                    WakeError::Flash
                        | WakeError::Counters
                        | WakeError::ServerSilent
                        | WakeError::Socket
                        | WakeError::Refused
                        | WakeError::Integrity
                )
            ));
    cx.retained.failures = if failed {
        cx.retained.failures.saturating_add(1)
    } else if cut_short {
        // Neither a failure nor a success: the back-off stays where it was.
        cx.retained.failures
    } else {
        0
    };
    cx.save_retained();
    if cx.reset {
        return WakeEnd::Reset;
    }
    let s = if cx.report.error == Some(WakeError::NotProvisioned) {
        cx.cfg.default_sleep_s
    } else if failed {
        retry_sleep_s(cx.cfg, cx.retained.failures)
    } else if cut_short {
        cx.cfg.resume_sleep_s
    } else {
        planned_sleep_s(cx, grant)
    };
    WakeEnd::Sleep {
        ms: u64::from(s.clamp(1, cx.cfg.max_sleep_s.max(1))) * 1000,
    }
}

/// The sleep after the `failures`-th failed wake in a row (1 for the first).
fn retry_sleep_s(cfg: &AppConfig<'_>, failures: u8) -> u32 {
    let doublings = u32::from(failures.saturating_sub(1)).min(16);
    cfg.retry_sleep_s
        .saturating_mul(1 << doublings)
        .min(cfg.default_sleep_s.max(cfg.retry_sleep_s))
}
