//! The fault plan: scripted misbehaviour (research section 6).
//!
//! A [`Fault`] is a [`Trigger`] and an [`Action`]. Faults are added with
//! [`crate::Emulator::add_fault`]; each one fires once (or on every match for
//! [`Occurrence::Every`]). [`crate::Emulator::fired`] lists what fired when.

use std::time::Duration;

use crate::config::RegStat;

/// When a fault fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A command line arrives whose text starts (case-insensitively) with
    /// `prefix`, e.g. `"AT+USOCO"` or `"AT+CREG?"`. Lines are counted from
    /// the moment the fault is added.
    Command {
        /// Prefix of the command line, including `AT`.
        prefix: String,
        /// Which matching line(s).
        occurrence: Occurrence,
    },
    /// The virtual clock reaches this time (since the emulator was created).
    At(Duration),
    /// Right after the module has sent this many bytes in total (DCE→DTE,
    /// counted from creation). The fault takes effect at the moment that byte
    /// is on the wire, so a reboot here cuts the output after exactly `n` bytes.
    AfterOutputBytes(u64),
}

/// Which matching command lines fire a [`Trigger::Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    /// The n-th matching line (1-based).
    Nth(u32),
    /// Every matching line.
    Every,
}

impl Trigger {
    /// The `n`-th (1-based) command line starting with `prefix`.
    pub fn nth(prefix: &str, n: u32) -> Trigger {
        Trigger::Command {
            prefix: prefix.into(),
            occurrence: Occurrence::Nth(n),
        }
    }

    /// Every command line starting with `prefix`.
    pub fn every(prefix: &str) -> Trigger {
        Trigger::Command {
            prefix: prefix.into(),
            occurrence: Occurrence::Every,
        }
    }

    /// At virtual time `ms` milliseconds.
    pub fn at_ms(ms: u64) -> Trigger {
        Trigger::At(Duration::from_millis(ms))
    }
}

/// Where injected bytes go relative to the command that fired the fault.
/// With a time or output trigger the position is ignored (the bytes go out
/// at once, after whatever line is already queued: never inside a line and
/// never inside a `+USORD`/`+USORF` payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Before the echo of the command line.
    BeforeEcho,
    /// After the echo, before any response (also "right before `+USORD`").
    AfterEcho,
    /// Between the information lines and the final result code (also "right
    /// after the `+USORD` line, before its `OK`").
    BeforeFinal,
    /// Right after the final result code.
    AfterFinal,
}

/// The result a command is forced to give instead of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// `+CME ERROR: <code>` in the form `AT+CMEE` asks for (plain `ERROR` when 0).
    Cme(u16),
    /// Plain `ERROR`.
    Error,
    /// `ABORTED`.
    Aborted,
}

/// What a fault does.
///
/// Actions marked *command-scoped* change the response to one command. With a
/// [`Trigger::Command`] they apply to that command; with a time or output
/// trigger they are armed and apply to the next command line received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// *Command-scoped.* The command takes effect but nothing is sent back
    /// (no information line, no final result code).
    DropResponse,
    /// *Command-scoped.* The response comes this much later.
    DelayResponse(Duration),
    /// *Command-scoped.* The command fails with this result and has no effect.
    Fail(ErrorReply),
    /// Inject bytes: a URC (see [`Action::urc`]) or raw garbage. With a command
    /// trigger they go at `position`; otherwise at once.
    Inject {
        /// The bytes, sent verbatim.
        bytes: Vec<u8>,
        /// Where, for a command trigger.
        position: Position,
    },
    /// *Command-scoped.* An information line of `len` bytes (`+<CMD>: xxxx…`)
    /// before the real response: a line longer than any sane buffer (failure
    /// mode 19).
    LongLine(usize),
    /// *Command-scoped, socket writes/connects/reads.* The command fails with
    /// plain `ERROR` (`plain == true`, R410 style) or `+CME ERROR: 3`, and
    /// `AT+USOER` then reports `usoer` (e.g. 172 ENSROF, 11 EWOULDBLOCK, 65).
    SocketError {
        /// The `+USOER` code.
        usoer: u16,
        /// Plain `ERROR` instead of the CME form.
        plain: bool,
    },
    /// *Command-scoped, `+USOWR`/`+USOST`.* Only the first `accepted` bytes are
    /// sent and the response says so (`+USOWR: h,<accepted>`, R4 segmentation).
    PartialWrite(usize),
    /// The module reboots at once: pending output is lost, `bytes` (e.g.
    /// `\0\0` or break bytes) go out, echo on, `CMEE`/`C*REG` n back to 0, all
    /// sockets and data contexts gone, registration starts again after boot.
    /// `V_INT` stays high (a brown-out the pin does not show).
    Reboot {
        /// Garbage sent at the reboot.
        garbage: Vec<u8>,
    },
    /// Power is lost: the module is off (`V_INT` low) until switched on again.
    PowerLoss,
    /// The remote peer closes socket `id` (host socket shut down): `+UUSOCL`
    /// follows once the host sees the close; data already received stays readable.
    PeerClose(u8),
    /// Registration changes to `stat` on every domain and sticks there
    /// (denied, not searching…) until [`Action::ReleaseRegistration`].
    Registration(RegStat),
    /// Registration leaves the sticky state and restarts normally.
    ReleaseRegistration,
    /// The network drops the data context: `+UUPSDD: 0` (U2/G3/R5), and every
    /// connected TCP socket closes with `+UUSOCL` (research 6.13).
    PdpLost,
    /// Reads return at most `max` bytes each, and after each read the next
    /// byte is held back for `gap` (partial reads, failure mode 9).
    /// `max == usize::MAX` switches this off.
    ShortReads {
        /// Maximum bytes per `read`.
        max: usize,
        /// Hold-back after each read.
        gap: Duration,
    },
    /// `Uart::write` accepts at most `max` bytes per call (`usize::MAX` switches
    /// it off).
    ShortWrites(usize),
    /// The next character the DTE sends is lost (UART asleep, failure mode 17).
    LoseNextChar,
    /// The next URC whose text starts with this prefix (e.g. `"+UUSORD"`) is
    /// not sent: a lost URC (failure mode 10).
    LoseUrc(String),
    /// `PWR_ON` pulses are ignored from now on (R510, research 2.3).
    IgnorePwrOn,
    /// `RESET_N` pulses are ignored from now on (R510).
    IgnoreReset,
    /// `V_INT` reads high whatever the module does (back-powered level shifter).
    VintStuckHigh,
}

impl Action {
    /// A URC line `text`, framed as the module frames it: `\r\n<text>\r\n`.
    pub fn urc(text: &str, position: Position) -> Action {
        let mut bytes = Vec::with_capacity(text.len() + 4);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        Action::Inject { bytes, position }
    }

    /// True for actions that change the response to one command.
    pub(crate) fn is_command_scoped(&self) -> bool {
        matches!(
            self,
            Action::DropResponse
                | Action::DelayResponse(_)
                | Action::Fail(_)
                | Action::LongLine(_)
                | Action::SocketError { .. }
                | Action::PartialWrite(_)
        )
    }
}

/// A trigger and an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When.
    pub trigger: Trigger,
    /// What.
    pub action: Action,
}

impl Fault {
    /// A fault from its two parts.
    pub fn new(trigger: Trigger, action: Action) -> Fault {
        Fault { trigger, action }
    }
}

/// A record of a fault that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Virtual time, µs.
    pub at_us: u64,
    /// Index of the fault in the order it was added.
    pub index: usize,
}
