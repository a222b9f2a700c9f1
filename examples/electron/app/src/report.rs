//! What a wake did, and how it ends.

use core::fmt;

use cloud_proto::{Decision, FirmwareVersion, UpdateId};

use crate::board::PowerControl;

/// How the wake ends: the last thing the board does. On hardware neither returns
/// ([`enter`](Self::enter)); the host simulation acts on it and continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the board must sleep or reset: a wake that ends with neither drains the battery"]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WakeEnd {
    /// Deep sleep for `ms` milliseconds (the modem is off).
    Sleep {
        /// Sleep length.
        ms: u64,
    },
    /// Reset into the bootloader: an image is marked for install, or a rejected trial
    /// image must be reverted.
    Reset,
}

impl WakeEnd {
    /// Acts on the end on hardware: [`PowerControl::reset`] or
    /// [`PowerControl::deep_sleep`].
    pub fn enter<P: PowerControl>(self, power: &mut P) -> ! {
        match self {
            Self::Sleep { ms } => power.deep_sleep(ms),
            Self::Reset => power.reset(),
        }
    }
}

/// What became of an image on trial this wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TrialOutcome {
    /// The self-check passed and the check-in succeeded: confirmed.
    Confirmed,
    /// The self-check failed: marked failed, the bootloader reverts at the reset.
    Failed,
    /// On trial, not decided this wake (the check-in did not succeed): the next wake tries
    /// again; a reset before a confirm reverts.
    Pending,
}

/// The first thing that went wrong in a wake. Every one of them ends the wake in a bounded
/// sleep ([`AppConfig::retry_sleep_s`](crate::AppConfig::retry_sleep_s) unless said
/// otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WakeError {
    /// No valid identity in flash: nothing can be sent (sleeps `default_sleep_s`).
    NotProvisioned,
    /// The counter reservation could not be persisted (log full or flash error).
    Counters,
    /// ota-core could not open its state.
    OtaOpen,
    /// A flash operation of the update failed (write, erase, record).
    Flash,
    /// The modem did not power on.
    ModemPower,
    /// No SIM.
    Sim,
    /// No network registration within the budget.
    Registration,
    /// No data context.
    Data,
    /// A socket operation failed.
    Socket,
    /// The cloud did not answer a request (after every retransmission).
    ServerSilent,
    /// The cloud refused a request (`Nack`) or answered with the wrong message.
    Refused,
    /// The awake budget ran out before the work was done (not a failure: the work continues
    /// next wake). After the check-in the wake sleeps as a normal wake does; before it (in
    /// ota-core's erase work or the modem's bring-up) it sleeps
    /// [`AppConfig::resume_sleep_s`](crate::AppConfig::resume_sleep_s), at most
    /// [`MAX_CUT_SHORT_WAKES`](crate::MAX_CUT_SHORT_WAKES) times in a row, then backs off as
    /// a failed wake. A budget that ends while the cloud has not answered the check-in is a
    /// failed wake (a silent server looks the same).
    Budget,
    /// The downloaded image did not hash to its manifest's digest: the download was
    /// abandoned.
    Integrity,
}

impl fmt::Display for WakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::NotProvisioned => "not provisioned",
            Self::Counters => "counter reservation not persisted",
            Self::OtaOpen => "ota state could not be opened",
            Self::Flash => "flash operation failed",
            Self::ModemPower => "modem did not power on",
            Self::Sim => "no SIM",
            Self::Registration => "no network registration",
            Self::Data => "no data context",
            Self::Socket => "socket failed",
            Self::ServerSilent => "no answer from the cloud",
            Self::Refused => "the cloud refused a request",
            Self::Budget => "awake budget spent",
            Self::Integrity => "image integrity failure",
        };
        f.write_str(s)
    }
}

impl core::error::Error for WakeError {}

/// What one wake did: the simulation's timeline prints it, the tests assert on it. Fixed
/// size, `Copy`, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WakeReport {
    /// How the wake ends (also in the `WakeEnd` the caller acts on).
    pub end: WakeEnd,
    /// The firmware version running during this wake.
    pub running: FirmwareVersion,
    /// The running image was on trial at the start of this wake, and what became of it.
    pub trial: Option<TrialOutcome>,
    /// Retained memory was valid (false after a power loss).
    pub retained_valid: bool,
    /// The check-in was answered.
    pub checked_in: bool,
    /// Publishes the cloud acknowledged.
    pub publishes_acked: u8,
    /// The update offered in the check-in answer: id, version, image size.
    pub offer: Option<(UpdateId, FirmwareVersion, u32)>,
    /// What the device decided about the offer.
    pub decision: Option<Decision>,
    /// The decision was sent (a resumed download that the check-in already reported is not
    /// answered again).
    pub decision_sent: bool,
    /// Image chunks received and written this wake.
    pub chunks_fetched: u32,
    /// Image chunks received that were already stored (fetched twice).
    pub chunks_refetched: u32,
    /// Image chunks received that failed their digest or length: not written, still
    /// missing.
    pub chunks_rejected: u32,
    /// Manifest chunks received.
    pub manifest_chunks: u32,
    /// Image chunks stored after this wake, and in all (0, 0 without a download).
    pub progress: (u32, u32),
    /// Erase steps run (and bytes they erased).
    pub erase_steps: u32,
    /// Bytes erased by them.
    pub erased_bytes: u32,
    /// The download is complete, verified and marked for install.
    pub install_marked: bool,
    /// Requests sent (each a round trip; retransmissions not counted).
    pub requests: u32,
    /// Retransmissions.
    pub retransmissions: u32,
    /// UDP payload bytes sent (frames, retransmissions included).
    pub bytes_up: u32,
    /// UDP payload bytes received.
    pub bytes_down: u32,
    /// Bytes on the modem's UART, both ways (the AT overhead included).
    pub uart_bytes: (u32, u32),
    /// Wake length on the board's clock, ms.
    pub awake_ms: u64,
    /// The awake budget forced the end of the work.
    pub forced: bool,
    /// The modem did not confirm its power-down (`AT+CPWROFF` and every fallback failed):
    /// the board should cut its supply before sleeping (on the Electron, through the PMIC),
    /// or it drains the battery.
    pub modem_left_on: bool,
    /// The cloud's time from the check-in answer (Unix seconds), to set the RTC.
    pub server_time: Option<u32>,
    /// The first error, if any.
    pub error: Option<WakeError>,
}

impl WakeReport {
    pub(crate) const fn new(running: FirmwareVersion) -> Self {
        Self {
            end: WakeEnd::Sleep { ms: 0 },
            running,
            trial: None,
            retained_valid: false,
            checked_in: false,
            publishes_acked: 0,
            offer: None,
            decision: None,
            decision_sent: false,
            chunks_fetched: 0,
            chunks_refetched: 0,
            chunks_rejected: 0,
            manifest_chunks: 0,
            progress: (0, 0),
            erase_steps: 0,
            erased_bytes: 0,
            install_marked: false,
            requests: 0,
            retransmissions: 0,
            bytes_up: 0,
            bytes_down: 0,
            uart_bytes: (0, 0),
            awake_ms: 0,
            forced: false,
            modem_left_on: false,
            server_time: None,
            error: None,
        }
    }

    /// Records `e` unless an earlier error is recorded.
    pub(crate) fn fail(&mut self, e: WakeError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}
