//! Transcript, statistics and protocol-violation records.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// Direction of bytes on the UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// MCU → module (DTE → DCE), written with `Uart::write`.
    ToModem,
    /// Module → MCU (DCE → DTE), scheduled by the module.
    FromModem,
}

/// One transcript entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Bytes on the UART. For [`Dir::FromModem`] `at_us` is when the first
    /// byte is due, for [`Dir::ToModem`] when the first byte arrived.
    Bytes {
        /// Virtual time, µs.
        at_us: u64,
        /// Direction.
        dir: Dir,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A pin change or an internal event (boot, power-off, fault, host socket…).
    Note {
        /// Virtual time, µs.
        at_us: u64,
        /// Human-readable text.
        text: String,
    },
}

/// Byte counters for one direction, split into AT text and socket payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCount {
    /// Command lines, echo, responses, URCs, prompts, garbage.
    pub at: u64,
    /// Socket payload: the bytes after `@`, and the data inside
    /// `+USORD`/`+USORF` (hex digits in hex mode).
    pub payload: u64,
}

impl ByteCount {
    /// `at + payload`.
    pub fn total(&self) -> u64 {
        self.at + self.payload
    }
}

/// Counters since the emulator was created. Take two snapshots and
/// [`Stats::since`] to measure a phase ("power-on to open socket").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// AT command lines received (lines starting with `AT`).
    pub at_commands: u64,
    /// Per command name (`+USORD`, `E`, `I`, `&K`…).
    pub per_command: BTreeMap<String, u64>,
    /// Bytes MCU → module.
    pub to_modem: ByteCount,
    /// Bytes module → MCU.
    pub from_modem: ByteCount,
    /// Unsolicited result codes sent.
    pub urcs: u64,
}

impl Stats {
    /// The counts accumulated since `earlier` (a previous snapshot).
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut per_command = BTreeMap::new();
        for (name, n) in &self.per_command {
            let before = earlier.per_command.get(name).copied().unwrap_or(0);
            if *n > before {
                per_command.insert(name.clone(), n - before);
            }
        }
        Stats {
            at_commands: self.at_commands - earlier.at_commands,
            per_command,
            to_modem: ByteCount {
                at: self.to_modem.at - earlier.to_modem.at,
                payload: self.to_modem.payload - earlier.to_modem.payload,
            },
            from_modem: ByteCount {
                at: self.from_modem.at - earlier.from_modem.at,
                payload: self.from_modem.payload - earlier.from_modem.payload,
            },
            urcs: self.urcs - earlier.urcs,
        }
    }
}

/// Something the DTE did that a real module may not tolerate. The emulator
/// still behaves as documented; these are recorded so driver tests can assert
/// there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Bytes arrived while a command that cannot be aborted was still running;
    /// they were queued and handled after its final result.
    InputWhileBusy {
        /// Virtual time, µs.
        at_us: u64,
        /// The running command.
        command: String,
    },
    /// Payload bytes arrived before the `@` prompt was on the wire.
    PayloadBeforePrompt {
        /// Virtual time, µs.
        at_us: u64,
    },
    /// The first payload byte came less than 50 ms after `@` (u-blox AT
    /// manual: "wait for a minimum of 50 ms before sending data"; Particle does
    /// not wait and works, so the emulator accepts the data).
    PayloadTooSoon {
        /// Virtual time, µs.
        at_us: u64,
        /// Time between `@` and the first byte, µs.
        waited_us: u64,
    },
    /// A command came less than 100 ms after the `OK` of an `AT+IPR` that
    /// changed the rate (research 5.A; G350 needs > 40 ms).
    TooSoonAfterIpr {
        /// Virtual time, µs.
        at_us: u64,
    },
}

fn escape(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Bytes { at_us, dir, bytes } => {
                let arrow = match dir {
                    Dir::ToModem => ">>",
                    Dir::FromModem => "<<",
                };
                let mut s = String::new();
                escape(bytes, &mut s);
                write!(
                    f,
                    "[{:>6}.{:06}] {arrow} \"{s}\"",
                    at_us / 1_000_000,
                    at_us % 1_000_000
                )
            }
            Record::Note { at_us, text } => write!(
                f,
                "[{:>6}.{:06}] -- {text}",
                at_us / 1_000_000,
                at_us % 1_000_000
            ),
        }
    }
}
