//! What the firmware (or the simulation) tells the wake cycle.

use core::net::SocketAddr;

use cloud_proto::FirmwareVersion;
use ota_core::{HardwareId, TrustedKey};

/// Settings of the wake cycle. [`AppConfig::new`] gives the defaults below; change fields as
/// needed (they are all public).
#[derive(Debug, Clone, Copy)]
pub struct AppConfig<'a> {
    /// The cloud's UDP address.
    pub server: SocketAddr,
    /// The APN of the data context (Particle SIMs: `spark.telefonica.com`).
    pub apn: &'a str,
    /// This board's hardware id: offers for other hardware are declined.
    pub hardware_id: HardwareId,
    /// The release keys the device trusts.
    pub trusted_keys: &'a [TrustedKey],
    /// The version reported when ota-core knows no confirmed image (a device never
    /// provisioned with its factory manifest).
    pub factory_version: FirmwareVersion,
    /// Awake budget of one wake (default 10 s).
    pub awake_budget_ms: u32,
    /// The most the cloud's grant may extend one wake for an update (default 20 s).
    pub max_extension_ms: u32,
    /// How long a critical flash operation may run past the budget (default 5 s: one
    /// 128 KB erase at x8 parallelism, 4 s, plus margin).
    pub critical_overrun_ms: u32,
    /// Budget to wait for the SIM (default 10 s).
    pub sim_ready_ms: u32,
    /// Budget for network registration (default 60 s; capped by the awake time left).
    pub register_ms: u32,
    /// Budget for the data context (default 30 s; capped by the awake time left).
    pub data_ms: u32,
    /// Chunks asked for in one request (1 to 64; default 8). Each request renews the
    /// `Download` lease.
    pub chunks_per_request: u32,
    /// Below this much awake time left, no new chunk request is sent (default 1.5 s).
    pub min_request_ms: u32,
    /// Bytes hashed per `finish_step` (default 16 KiB: about 5 ms at 120 MHz).
    pub hash_step_bytes: u32,
    /// Sleep between the wakes of a download in progress, and after a wake the awake budget
    /// cut short before its check-in (default 10 s; see
    /// [`MAX_CUT_SHORT_WAKES`](crate::MAX_CUT_SHORT_WAKES)).
    pub resume_sleep_s: u32,
    /// Sleep after a failed wake (modem, server silence, flash; default 300 s), doubled for
    /// each failed wake in a row, at most [`default_sleep_s`](Self::default_sleep_s).
    pub retry_sleep_s: u32,
    /// Sleep when the cloud gave no grant (default 3 600 s).
    pub default_sleep_s: u32,
    /// The longest sleep the device accepts from a grant (default 86 400 s).
    pub max_sleep_s: u32,
    /// Below this battery voltage offers are deferred (default 3 500 mV).
    pub min_battery_mv: u16,
    /// How long a deferral asks the cloud to wait (default 3 600 s).
    pub defer_retry_s: u32,
    /// Topic number of the sensor publish (default 1).
    pub sensor_topic: u16,
    /// cloud-proto: first retransmission timeout (default 2 s).
    pub rto_initial_ms: u32,
    /// cloud-proto: largest retransmission timeout (default 8 s).
    pub rto_max_ms: u32,
    /// cloud-proto: transmissions of one request (default 3).
    pub max_transmissions: u8,
    /// cloud-proto: counters reserved per flash checkpoint (default 1 024: one 8-byte
    /// record per 1 024 frames; a power loss skips at most that many counters).
    pub counter_reserve: u32,
}

impl<'a> AppConfig<'a> {
    /// The defaults (see each field) for a server, a hardware id and the trusted keys.
    pub const fn new(
        server: SocketAddr,
        hardware_id: HardwareId,
        trusted_keys: &'a [TrustedKey],
    ) -> Self {
        Self {
            server,
            apn: "spark.telefonica.com",
            hardware_id,
            trusted_keys,
            factory_version: FirmwareVersion {
                major: 0,
                minor: 0,
                patch: 0,
            },
            awake_budget_ms: 10_000,
            max_extension_ms: 20_000,
            critical_overrun_ms: 5_000,
            sim_ready_ms: 10_000,
            register_ms: 60_000,
            data_ms: 30_000,
            chunks_per_request: 8,
            min_request_ms: 1_500,
            hash_step_bytes: 16 * 1024,
            resume_sleep_s: 10,
            retry_sleep_s: 300,
            default_sleep_s: 3_600,
            max_sleep_s: 86_400,
            min_battery_mv: 3_500,
            defer_retry_s: 3_600,
            sensor_topic: 1,
            rto_initial_ms: 2_000,
            rto_max_ms: 8_000,
            max_transmissions: 3,
            counter_reserve: 1_024,
        }
    }
}
