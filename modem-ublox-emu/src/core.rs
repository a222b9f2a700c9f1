//! The emulator state machine: virtual clock, event queue, UART wire timing,
//! command-line input, power, and fault dispatch. Command semantics live in
//! `commands/`, host socket bridging in `socket.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::config::{EmulatorConfig, RegStat};
use crate::fault::{Action, ErrorReply, Fault, Fired, Occurrence, Position, Trigger};
use crate::model::{Model, ResetEffect};
use crate::net::NetState;
use crate::record::{Dir, Record, Stats, Violation};
use crate::socket::{Socket, NUM_SOCKETS};

/// Latest virtual time a fault can be scheduled at (about 100 years, µs).
const MAX_TIME: u64 = 100 * 365 * 24 * 3600 * 1_000_000;

/// Longest command line accepted; longer lines answer `ERROR` (inferred).
const MAX_LINE: usize = 4096;

pub(crate) fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Bytes to send, with how many of them are socket payload and whether they
/// form an unsolicited result code.
#[derive(Debug, Clone, Default)]
pub(crate) struct Out {
    pub bytes: Vec<u8>,
    pub payload: usize,
    pub urc: bool,
}

impl Out {
    /// `\r\n<text>\r\n`, an information line.
    pub fn line(text: &str) -> Out {
        let mut bytes = Vec::with_capacity(text.len() + 4);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        Out {
            bytes,
            payload: 0,
            urc: false,
        }
    }

    /// `\r\n<text>\r\n`, an unsolicited result code.
    pub fn urc(text: &str) -> Out {
        Out {
            urc: true,
            ..Out::line(text)
        }
    }

    /// Bytes as given.
    pub fn raw(bytes: Vec<u8>) -> Out {
        Out {
            bytes,
            payload: 0,
            urc: false,
        }
    }
}

/// The final result of a command.
#[derive(Debug, Clone)]
pub(crate) enum Final {
    Ok,
    Cme(u16),
    Error,
    Aborted,
    /// No final result now (the `@` prompt follows, or the module is going down).
    None,
}

/// What a binary data prompt waits for.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    pub socket: u8,
    pub need: usize,
    /// `Some` for `+USOST` (destination), `None` for `+USOWR`.
    pub dest: Option<(String, u16)>,
}

/// Something that happens after the final result code is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Then {
    /// Soft reset (`AT+CFUN=15/16`).
    Reboot,
    /// Switch off (`AT+CPWROFF`).
    PowerOff,
    /// `AT+IPR`: the module changes its rate.
    SwitchBaud(u32),
}

/// A command's response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub info: Vec<Out>,
    pub fin: Final,
    /// Output after the final result code, with a delay in µs.
    pub post: Vec<(u64, Out)>,
    /// Outputs between the information lines and the final result code
    /// that the command itself produces (e.g. `+UUPSDA` before `OK`).
    pub pre_final: Vec<Out>,
    pub prompt: Option<Prompt>,
    pub then: Option<Then>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::with(Vec::new(), Final::Ok)
    }
    pub fn cme(code: u16) -> Reply {
        Reply::with(Vec::new(), Final::Cme(code))
    }
    pub fn error() -> Reply {
        Reply::with(Vec::new(), Final::Error)
    }
    pub fn info(text: &str) -> Reply {
        Reply::with(vec![Out::line(text)], Final::Ok)
    }
    pub fn with(info: Vec<Out>, fin: Final) -> Reply {
        Reply {
            info,
            fin,
            post: Vec::new(),
            pre_final: Vec::new(),
            prompt: None,
            then: None,
        }
    }
}

/// Per-command changes asked by faults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mods {
    pub drop: bool,
    pub delay_us: u64,
    pub fail: Option<ErrorReply>,
    pub injects: Vec<(Position, Vec<u8>)>,
    pub long_line: Option<usize>,
    pub socket_error: Option<(u16, bool)>,
    pub partial: Option<usize>,
}

#[derive(Debug)]
enum Job {
    Command {
        text: String,
        mods: Mods,
    },
    Payload {
        prompt: Prompt,
        data: Vec<u8>,
        mods: Mods,
    },
}

#[derive(Debug)]
enum Ev {
    Complete {
        gen: u64,
        job: Job,
    },
    Emit {
        gen: u64,
        out: Out,
    },
    VintHigh {
        gen: u64,
    },
    BootDone {
        gen: u64,
    },
    PowerOffDone {
        gen: u64,
    },
    SoftReboot {
        gen: u64,
    },
    SwitchBaud {
        gen: u64,
        baud: u32,
    },
    Reg {
        gen: u64,
        reg_gen: u64,
        ps: bool,
        stat: RegStat,
    },
    SimReady {
        gen: u64,
    },
    Fault(usize),
    AsyncClose {
        gen: u64,
        socket: u8,
    },
}

/// Power state of the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Power {
    Off,
    /// Switched on, UART not answering yet.
    Booting,
    On,
    /// `AT+CPWROFF` or a power-off pulse: going down.
    ShuttingDown,
}

#[derive(Debug)]
enum Mode {
    /// Waiting for a command line.
    Idle,
    /// A command runs; `key` is its completion event.
    Busy {
        command: String,
        abortable: bool,
        key: (u64, u64),
    },
    /// After `@`: collecting binary payload.
    Payload {
        prompt: Prompt,
        data: Vec<u8>,
        mods: Mods,
        prompt_due: u64,
    },
}

/// DCE settings that go back to defaults at every boot.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub echo: bool,
    pub cmee: u8,
    pub creg_n: u8,
    pub cgreg_n: u8,
    pub cereg_n: u8,
    pub hex: bool,
    pub upsv: u8,
    pub flow: u8,
    pub ati_done: bool,
}

impl Settings {
    fn defaults() -> Settings {
        Settings {
            echo: true,
            cmee: 0,
            creg_n: 0,
            cgreg_n: 0,
            cereg_n: 0,
            hex: false,
            upsv: 0,
            flow: 0,
            ati_done: false,
        }
    }
}

struct FaultSlot {
    fault: Fault,
    seen: u32,
    done: bool,
}

pub(crate) struct Core {
    pub model: Model,
    pub cfg: EmulatorConfig,
    pub now: u64,
    ns_rem: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,

    pub power: Power,
    /// Boot generation: events of an older generation are dropped.
    pub gen: u64,
    pwr_low_since: Option<u64>,
    reset_low_since: Option<u64>,
    vint: bool,
    ignore_pwr_on: bool,
    ignore_reset: bool,
    vint_stuck: bool,

    /// Module rate (`AT+IPR`), 0 = autobaud.
    pub ipr: u32,
    dte_baud: u32,
    tx: VecDeque<(u64, u8)>,
    tx_free_at: u64,
    rx_hold_until: u64,
    short_reads: Option<(usize, u64)>,
    short_writes: Option<usize>,
    lose_next: bool,
    lose_urcs: Vec<String>,
    last_activity: u64,
    ipr_ok_at: Option<u64>,

    pub set: Settings,
    line: Vec<u8>,
    line_overflow: bool,
    prev_cr: bool,
    pending_echo: Vec<u8>,
    mode: Mode,
    fifo: VecDeque<u8>,

    pub net: NetState,
    pub sockets: [Option<Socket>; NUM_SOCKETS],
    pub last_socket_error: u16,

    faults: Vec<FaultSlot>,
    armed: Vec<Action>,
    fired: Vec<Fired>,
    out_total: u64,

    pub transcript: Vec<Record>,
    pub stats: Stats,
    pub violations: Vec<Violation>,
}

impl Core {
    pub fn new(model: Model, cfg: EmulatorConfig) -> Core {
        let net = NetState::new(model, &cfg);
        let mut core = Core {
            model,
            ipr: cfg.baud,
            dte_baud: cfg.dte_baud,
            cfg,
            now: 0,
            ns_rem: 0,
            seq: 0,
            events: BTreeMap::new(),
            power: Power::Off,
            gen: 0,
            pwr_low_since: None,
            reset_low_since: None,
            vint: false,
            ignore_pwr_on: false,
            ignore_reset: false,
            vint_stuck: false,
            tx: VecDeque::new(),
            tx_free_at: 0,
            rx_hold_until: 0,
            short_reads: None,
            short_writes: None,
            lose_next: false,
            lose_urcs: Vec::new(),
            last_activity: 0,
            ipr_ok_at: None,
            set: Settings::defaults(),
            line: Vec::new(),
            line_overflow: false,
            prev_cr: false,
            pending_echo: Vec::new(),
            mode: Mode::Idle,
            fifo: VecDeque::new(),
            net,
            sockets: Default::default(),
            last_socket_error: 0,
            faults: Vec::new(),
            armed: Vec::new(),
            fired: Vec::new(),
            out_total: 0,
            transcript: Vec::new(),
            stats: Stats::default(),
            violations: Vec::new(),
        };
        if core.cfg.quirks.boots_on_supply {
            core.note("supply on: the module switches itself on");
            core.switch_on();
        }
        core
    }

    // ----- records -----------------------------------------------------------

    pub fn note(&mut self, text: impl Into<String>) {
        self.transcript.push(Record::Note {
            at_us: self.now,
            text: text.into(),
        });
    }

    pub fn fired(&self) -> &[Fired] {
        &self.fired
    }

    // ----- clock and events --------------------------------------------------

    fn schedule(&mut self, at: u64, ev: Ev) -> (u64, u64) {
        self.seq += 1;
        let key = (at.max(self.now), self.seq);
        self.events.insert(key, ev);
        key
    }

    pub fn next_event_time(&self) -> Option<u64> {
        self.events.keys().next().map(|k| k.0)
    }

    /// Advances the clock by `ns` nanoseconds (sub-µs remainders accumulate).
    pub fn advance_ns(&mut self, ns: u64) {
        let total = self.ns_rem + ns;
        self.ns_rem = total % 1000;
        let target = self.now.saturating_add(total / 1000);
        self.advance_to(target);
    }

    /// Runs every event due up to `t` and sets the clock to `t` (never backwards).
    pub fn advance_to(&mut self, t: u64) {
        self.pump_sockets();
        while let Some((&key, _)) = self.events.iter().next() {
            if key.0 > t {
                break;
            }
            let Some(ev) = self.events.remove(&key) else {
                break;
            };
            self.now = self.now.max(key.0);
            self.handle_event(ev);
        }
        self.now = self.now.max(t);
    }

    fn handle_event(&mut self, ev: Ev) {
        match ev {
            Ev::Complete { gen, job } if gen == self.gen => self.complete(job),
            Ev::Emit { gen, out } if gen == self.gen => self.enqueue(out),
            Ev::VintHigh { gen } if gen == self.gen => {
                self.vint = true;
                self.note("V_INT high");
            }
            Ev::BootDone { gen } if gen == self.gen => self.boot_done(),
            Ev::PowerOffDone { gen } if gen == self.gen => self.power_off_now("switched off"),
            Ev::SoftReboot { gen } if gen == self.gen => self.reboot(&[], "soft reset"),
            Ev::SwitchBaud { gen, baud } if gen == self.gen => {
                self.ipr = baud;
                self.note(format!("module UART now at {baud} baud"));
            }
            Ev::Reg {
                gen,
                reg_gen,
                ps,
                stat,
            } if gen == self.gen && reg_gen == self.net.reg_gen => {
                self.reg_event(ps, stat);
            }
            Ev::SimReady { gen } if gen == self.gen => self.sim_ready(),
            Ev::Fault(i) => self.fire_anytime(i),
            Ev::AsyncClose { gen, socket } if gen == self.gen => self.finish_async_close(socket),
            _ => {}
        }
    }

    // ----- UART: module → MCU ------------------------------------------------

    fn rate(&self) -> u32 {
        if self.ipr == 0 {
            self.dte_baud.max(1)
        } else {
            self.ipr
        }
    }

    fn baud_mismatch(&self) -> bool {
        self.ipr != 0 && self.ipr != self.dte_baud
    }

    /// Deterministic garbage for a byte sent at the wrong rate (never ASCII).
    fn garble(b: u8) -> u8 {
        (b.rotate_left(3) ^ 0x5A) | 0x80
    }

    /// Queues bytes for the wire after everything already queued.
    pub fn enqueue(&mut self, out: Out) {
        if out.bytes.is_empty() || matches!(self.power, Power::Off) {
            return;
        }
        if out.urc && !self.lose_urcs.is_empty() {
            let text = out.bytes.strip_prefix(b"\r\n").unwrap_or(&out.bytes);
            if let Some(i) = self
                .lose_urcs
                .iter()
                .position(|p| text.starts_with(p.as_bytes()))
            {
                self.lose_urcs.remove(i);
                let shown = String::from_utf8_lossy(text).trim_end().to_string();
                self.note(format!("URC lost (fault): {shown}"));
                return;
            }
        }
        let mut bytes = out.bytes;
        if self.baud_mismatch() {
            for b in &mut bytes {
                *b = Self::garble(*b);
            }
        }
        let baud = u64::from(self.rate());
        let start = self.now.max(self.tx_free_at);
        let n = bytes.len() as u64;
        self.transcript.push(Record::Bytes {
            at_us: start,
            dir: Dir::FromModem,
            bytes: bytes.clone(),
        });
        let payload = out.payload as u64;
        self.stats.from_modem.payload += payload;
        self.stats.from_modem.at += n - payload.min(n);
        if out.urc {
            self.stats.urcs += 1;
        }
        let first_index = self.out_total;
        for (i, b) in bytes.into_iter().enumerate() {
            let due = start + ((i as u64 + 1) * 10_000_000).div_ceil(baud);
            self.tx.push_back((due, b));
        }
        self.tx_free_at = start + (n * 10_000_000).div_ceil(baud);
        self.last_activity = self.tx_free_at;
        self.out_total += n;
        // Output-count triggers: fire when the k-th byte is on the wire.
        let last_index = self.out_total;
        for i in 0..self.faults.len() {
            let slot = &self.faults[i];
            if slot.done {
                continue;
            }
            if let Trigger::AfterOutputBytes(k) = slot.fault.trigger {
                if k > first_index && k <= last_index {
                    let offset = k - first_index;
                    let due = start + (offset * 10_000_000).div_ceil(baud);
                    self.faults[i].done = true;
                    self.schedule(due, Ev::Fault(i));
                }
            }
        }
    }

    /// True when a byte is due and not held back.
    pub fn read_ready(&self) -> bool {
        self.now >= self.rx_hold_until && self.tx.front().is_some_and(|&(due, _)| due <= self.now)
    }

    /// When the next byte can be read, if any is queued.
    pub fn next_byte_time(&self) -> Option<u64> {
        self.tx.front().map(|&(due, _)| due.max(self.rx_hold_until))
    }

    /// Copies due bytes into `buf`.
    pub fn take_due(&mut self, buf: &mut [u8]) -> usize {
        if self.now < self.rx_hold_until {
            return 0;
        }
        let max = self
            .short_reads
            .map_or(buf.len(), |(m, _)| m.min(buf.len()));
        let mut n = 0;
        while n < max {
            match self.tx.front() {
                Some(&(due, b)) if due <= self.now => {
                    buf[n] = b;
                    n += 1;
                    self.tx.pop_front();
                }
                _ => break,
            }
        }
        if n > 0 {
            if let Some((_, gap)) = self.short_reads {
                self.rx_hold_until = self.now + gap;
            }
        }
        n
    }

    // ----- UART: MCU → module ------------------------------------------------

    pub fn set_dte_baud(&mut self, baud: u32) {
        self.dte_baud = baud.max(1);
        self.note(format!("MCU UART now at {baud} baud"));
    }

    /// Handles a `write`: each byte takes its wire time. Returns bytes accepted.
    pub fn write(&mut self, buf: &[u8]) -> usize {
        let n = self.short_writes.map_or(buf.len(), |m| m.min(buf.len()));
        if n == 0 {
            return 0;
        }
        let start = self.now;
        let baud = u64::from(self.dte_baud.max(1));
        self.transcript.push(Record::Bytes {
            at_us: start,
            dir: Dir::ToModem,
            bytes: buf[..n].to_vec(),
        });
        for (i, &b) in buf[..n].iter().enumerate() {
            let t = start + ((i as u64 + 1) * 10_000_000).div_ceil(baud);
            self.advance_to(t);
            self.rx_byte(b);
        }
        self.flush_echo();
        n
    }

    fn flush_echo(&mut self) {
        if !self.pending_echo.is_empty() {
            let bytes = std::mem::take(&mut self.pending_echo);
            self.enqueue(Out::raw(bytes));
        }
    }

    fn rx_byte(&mut self, b: u8) {
        let payload = matches!(self.mode, Mode::Payload { .. });
        if payload {
            self.stats.to_modem.payload += 1;
        } else {
            self.stats.to_modem.at += 1;
        }
        if self.power != Power::On {
            return;
        }
        let idle = self.now.saturating_sub(self.last_activity);
        self.last_activity = self.now;
        if self.lose_next {
            self.lose_next = false;
            self.note(format!("lost {b:#04x}: UART asleep (fault)"));
            return;
        }
        if self.set.upsv == 1 && idle >= us(self.cfg.timing.upsv_idle) {
            self.note(format!("lost {b:#04x}: UART woke up from power saving"));
            return;
        }
        let b = if self.baud_mismatch() {
            Self::garble(b)
        } else {
            b
        };
        if let Some(ok_at) = self.ipr_ok_at.take() {
            if self.now < ok_at + 100_000 {
                self.violations
                    .push(Violation::TooSoonAfterIpr { at_us: self.now });
            }
        }
        self.dispatch(b);
    }

    /// Hands a received byte to the current mode.
    fn dispatch(&mut self, b: u8) {
        match &mut self.mode {
            Mode::Payload {
                prompt,
                data,
                prompt_due,
                ..
            } => {
                if data.is_empty() {
                    if self.now < *prompt_due {
                        self.violations
                            .push(Violation::PayloadBeforePrompt { at_us: self.now });
                    } else if self.now - *prompt_due < 50_000 {
                        self.violations.push(Violation::PayloadTooSoon {
                            at_us: self.now,
                            waited_us: self.now - *prompt_due,
                        });
                    }
                }
                data.push(b);
                if data.len() >= prompt.need {
                    let Mode::Payload {
                        prompt, data, mods, ..
                    } = std::mem::replace(&mut self.mode, Mode::Idle)
                    else {
                        return;
                    };
                    let at = self.now + us(self.cfg.timing.socket_write) + mods.delay_us;
                    let command = if prompt.dest.is_some() {
                        "AT+USOST"
                    } else {
                        "AT+USOWR"
                    };
                    let key = self.schedule(
                        at,
                        Ev::Complete {
                            gen: self.gen,
                            job: Job::Payload { prompt, data, mods },
                        },
                    );
                    self.mode = Mode::Busy {
                        command: command.into(),
                        abortable: false,
                        key,
                    };
                }
            }
            Mode::Busy {
                command,
                abortable,
                key,
            } => {
                if b == b'\n' && self.prev_cr {
                    self.prev_cr = false;
                    return;
                }
                self.prev_cr = false;
                if *abortable {
                    let key = *key;
                    let command = command.clone();
                    self.events.remove(&key);
                    self.mode = Mode::Idle;
                    self.note(format!("{command} aborted by a character (V.250)"));
                    self.enqueue(Out::line("ABORTED"));
                } else {
                    let command = command.clone();
                    self.violations.push(Violation::InputWhileBusy {
                        at_us: self.now,
                        command,
                    });
                    self.fifo.push_back(b);
                }
            }
            Mode::Idle => self.line_byte(b),
        }
    }

    fn line_byte(&mut self, b: u8) {
        if b == b'\n' && self.line.is_empty() {
            // The LF of a CR LF terminator (or a stray LF): ignored, not echoed.
            self.prev_cr = false;
            return;
        }
        if self.set.echo {
            self.pending_echo.push(b);
        }
        match b {
            b'\r' => {
                self.prev_cr = true;
                self.line_complete();
            }
            0x08 => {
                self.line.pop();
            }
            _ => {
                self.prev_cr = false;
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                } else {
                    self.line_overflow = true;
                }
            }
        }
    }

    fn line_complete(&mut self) {
        let raw = std::mem::take(&mut self.line);
        let overflow = std::mem::replace(&mut self.line_overflow, false);
        // Anything before "AT" (noise, NULs) is skipped, like a real command parser.
        let start = raw.windows(2).position(|w| w.eq_ignore_ascii_case(b"AT"));
        let Some(start) = start else {
            self.flush_echo();
            return;
        };
        let text = String::from_utf8_lossy(&raw[start..]).into_owned();
        self.stats.at_commands += 1;
        let name = crate::commands::command_name(&text);
        *self.stats.per_command.entry(name).or_insert(0) += 1;

        let mut mods = self.mods_for(&text);
        for (pos, bytes) in &mods.injects {
            if *pos == Position::BeforeEcho {
                self.enqueue(Out {
                    bytes: bytes.clone(),
                    payload: 0,
                    urc: true,
                });
            }
        }
        self.flush_echo();
        for (pos, bytes) in &mods.injects {
            if *pos == Position::AfterEcho {
                self.enqueue(Out {
                    bytes: bytes.clone(),
                    payload: 0,
                    urc: true,
                });
            }
        }
        mods.injects
            .retain(|(p, _)| matches!(p, Position::BeforeFinal | Position::AfterFinal));
        let (latency, abortable) = if overflow {
            (us(self.cfg.timing.command), false)
        } else {
            crate::commands::latency(self, &text)
        };
        let at = self.now + latency + mods.delay_us;
        let text = if overflow { String::new() } else { text };
        let command = if text.is_empty() {
            "(overlong line)".to_string()
        } else {
            text.clone()
        };
        let key = self.schedule(
            at,
            Ev::Complete {
                gen: self.gen,
                job: Job::Command { text, mods },
            },
        );
        self.mode = Mode::Busy {
            command,
            abortable,
            key,
        };
    }

    fn complete(&mut self, job: Job) {
        self.mode = Mode::Idle;
        let (reply, mods) = match job {
            Job::Command { text, mods } => {
                let reply = if text.is_empty() {
                    Reply::error()
                } else if let Some(fail) = mods.fail {
                    fail_reply(fail)
                } else {
                    crate::commands::exec(self, &text, &mods)
                };
                (reply, mods)
            }
            Job::Payload { prompt, data, mods } => {
                let reply = crate::socket::finish_payload(self, &prompt, &data, &mods);
                (reply, mods)
            }
        };
        self.send_reply(reply, mods);
        // Bytes that came in while the command ran are handled now, by
        // whatever mode the reply left (payload after `@`, or a new line).
        while !matches!(self.mode, Mode::Busy { .. }) {
            let Some(b) = self.fifo.pop_front() else {
                break;
            };
            self.dispatch(b);
        }
        self.flush_echo();
    }

    fn send_reply(&mut self, reply: Reply, mods: Mods) {
        let gen = self.gen;
        if mods.drop {
            self.note("response dropped (fault)");
        } else {
            if let Some(len) = mods.long_line {
                let mut text = String::from("+LONGLINE: \"");
                while text.len() + 1 < len {
                    text.push('x');
                }
                text.push('"');
                self.enqueue(Out::line(&text));
            }
            for out in reply.info {
                self.enqueue(out);
            }
            for out in reply.pre_final {
                self.enqueue(out);
            }
            for (pos, bytes) in &mods.injects {
                if *pos == Position::BeforeFinal {
                    self.enqueue(Out {
                        bytes: bytes.clone(),
                        payload: 0,
                        urc: true,
                    });
                }
            }
            match reply.fin {
                Final::Ok => self.enqueue(Out::line("OK")),
                Final::Error => self.enqueue(Out::line("ERROR")),
                Final::Aborted => self.enqueue(Out::line("ABORTED")),
                Final::Cme(code) => {
                    let out = self.cme_out(code);
                    self.enqueue(out);
                }
                Final::None => {}
            }
            for (pos, bytes) in &mods.injects {
                if *pos == Position::AfterFinal {
                    self.enqueue(Out {
                        bytes: bytes.clone(),
                        payload: 0,
                        urc: true,
                    });
                }
            }
            for (delay, out) in reply.post {
                if delay == 0 {
                    self.enqueue(out);
                } else {
                    self.schedule(self.now + delay, Ev::Emit { gen, out });
                }
            }
        }
        if let Some(prompt) = reply.prompt {
            if !mods.drop {
                self.enqueue(Out::raw(b"\r\n@".to_vec()));
            }
            let prompt_due = self.tx_free_at;
            self.mode = Mode::Payload {
                prompt,
                data: Vec::new(),
                mods,
                prompt_due,
            };
        }
        match reply.then {
            Some(Then::Reboot) => {
                let at = self.tx_free_at.max(self.now);
                self.schedule(at, Ev::SoftReboot { gen });
            }
            Some(Then::PowerOff) => {
                self.power = Power::ShuttingDown;
                let at = self.tx_free_at.max(self.now) + us(self.cfg.timing.power_down);
                self.schedule(at, Ev::PowerOffDone { gen });
            }
            Some(Then::SwitchBaud(baud)) => {
                let at = self.tx_free_at.max(self.now);
                self.ipr_ok_at = Some(at);
                if baud != self.ipr {
                    self.schedule(at, Ev::SwitchBaud { gen, baud });
                }
            }
            None => {}
        }
    }

    /// `+CME ERROR` in the form `AT+CMEE` asks for.
    pub fn cme_out(&self, code: u16) -> Out {
        match self.set.cmee {
            0 => Out::line("ERROR"),
            1 => Out::line(&format!("+CME ERROR: {code}")),
            _ => match cme_text(code) {
                Some(text) => Out::line(&format!("+CME ERROR: {text}")),
                None => Out::line(&format!("+CME ERROR: {code}")),
            },
        }
    }

    /// Sends a URC now (after whatever is queued).
    pub fn urc(&mut self, text: &str) {
        self.enqueue(Out::urc(text));
    }

    pub fn schedule_async_close(&mut self, delay_us: u64, socket: u8) {
        let gen = self.gen;
        self.schedule(self.now + delay_us, Ev::AsyncClose { gen, socket });
    }

    pub fn schedule_reg(&mut self, at: u64, ps: bool, stat: RegStat) {
        let gen = self.gen;
        let reg_gen = self.net.reg_gen;
        self.schedule(
            at,
            Ev::Reg {
                gen,
                reg_gen,
                ps,
                stat,
            },
        );
    }

    pub fn schedule_sim_ready(&mut self, at: u64) {
        let gen = self.gen;
        self.schedule(at, Ev::SimReady { gen });
    }

    // ----- power -------------------------------------------------------------

    pub fn vint(&self) -> bool {
        self.vint || self.vint_stuck
    }

    /// Tracks an active-low control pin: `Some(µs held low)` when a pulse ends and the pin is
    /// not ignored by a fault; `None` otherwise. Notes every edge in the transcript.
    fn pulse(&mut self, low: bool, pin: Pin) -> Option<u64> {
        let (name, ignored) = match pin {
            Pin::PwrOn => ("PWR_ON", self.ignore_pwr_on),
            Pin::Reset => ("RESET_N", self.ignore_reset),
        };
        let now = self.now;
        let since = match pin {
            Pin::PwrOn => &mut self.pwr_low_since,
            Pin::Reset => &mut self.reset_low_since,
        };
        if low {
            if since.is_none() {
                *since = Some(now);
                self.note(format!("{name} low"));
            }
            return None;
        }
        let held = now - since.take()?;
        self.note(format!("{name} high after {held} us low"));
        if ignored {
            self.note(format!("{name} pulse ignored (fault)"));
            return None;
        }
        Some(held)
    }

    pub fn pwr_pin(&mut self, low: bool) {
        let Some(held) = self.pulse(low, Pin::PwrOn) else {
            return;
        };
        let rules = self.model.power_rules();
        match self.power {
            Power::Off => {
                if held >= us(rules.pwr_on_min) {
                    self.switch_on();
                } else {
                    self.note("pulse too short to switch on: nothing happens");
                }
            }
            Power::Booting | Power::On => match rules.pwr_off_min {
                Some(min) if held >= us(min) => {
                    self.note("power-off pulse: switching off");
                    self.power = Power::ShuttingDown;
                    self.gen += 1;
                    let gen = self.gen;
                    self.drop_pending_output();
                    self.mode = Mode::Idle;
                    let at = self.now + us(self.cfg.timing.power_down);
                    self.schedule(at, Ev::PowerOffDone { gen });
                }
                Some(_) => self.note("pulse shorter than the power-off minimum: nothing happens"),
                None => self.note("this model cannot be switched off with PWR_ON: nothing happens"),
            },
            Power::ShuttingDown => {}
        }
    }

    pub fn reset_pin(&mut self, low: bool) {
        let Some(held) = self.pulse(low, Pin::Reset) else {
            return;
        };
        let rules = self.model.power_rules();
        if matches!(self.power, Power::Off) {
            return;
        }
        if held < us(rules.reset_min) {
            self.note("reset pulse too short: nothing happens");
            return;
        }
        match rules.reset_effect {
            ResetEffect::Reboot => self.reboot(&[], "hardware reset"),
            ResetEffect::PowerOff => self.power_off_now("RESET_N switched the module off"),
        }
    }

    /// Switch-on from off: V_INT rises, the UART answers after the boot time.
    pub fn switch_on(&mut self) {
        self.gen += 1;
        let gen = self.gen;
        self.power = Power::Booting;
        self.note("switching on");
        self.schedule(
            self.now + us(self.cfg.timing.vint_rise),
            Ev::VintHigh { gen },
        );
        self.schedule(self.now + us(self.cfg.timing.boot), Ev::BootDone { gen });
    }

    /// Power on and booted at once (tests that do not test power).
    pub fn power_on_now(&mut self) {
        if self.power == Power::On {
            return;
        }
        self.gen += 1;
        self.vint = true;
        self.note("powered on instantly (test helper)");
        self.boot_done_with_garbage(false);
    }

    fn boot_done(&mut self) {
        self.boot_done_with_garbage(true);
    }

    fn boot_done_with_garbage(&mut self, garbage: bool) {
        self.power = Power::On;
        self.reset_dce();
        self.note("boot complete: UART answers");
        self.last_activity = self.now;
        if garbage && !self.cfg.quirks.boot_garbage.is_empty() {
            let g = self.cfg.quirks.boot_garbage.clone();
            self.enqueue(Out::raw(g));
        }
        crate::net::on_boot(self);
        let stale = self.cfg.stale_sockets.clone();
        for s in stale {
            crate::socket::open_stale(self, s.id, s.protocol);
        }
        self.cfg.stale_sockets.clear();
    }

    fn reset_dce(&mut self) {
        self.set = Settings::defaults();
        self.mode = Mode::Idle;
        self.line.clear();
        self.line_overflow = false;
        self.pending_echo.clear();
        self.fifo.clear();
        self.prev_cr = false;
        self.rx_hold_until = 0;
        if !self.cfg.quirks.ipr_persistent {
            self.ipr = self.cfg.baud;
        }
        crate::socket::close_all(self);
        self.last_socket_error = 0;
        crate::net::reset(self);
    }

    fn drop_pending_output(&mut self) {
        let now = self.now;
        let before = self.tx.len();
        self.tx.retain(|&(due, _)| due <= now);
        self.tx_free_at = self.tx.back().map_or(now, |&(due, _)| due.max(now));
        let lost = before - self.tx.len();
        if lost > 0 {
            self.note(format!("{lost} queued output bytes lost"));
        }
    }

    /// Reboot at once (brown-out, reset pin, `AT+CFUN=15/16`).
    pub fn reboot(&mut self, garbage: &[u8], why: &str) {
        self.note(format!("reboot: {why}"));
        self.gen += 1;
        let gen = self.gen;
        self.drop_pending_output();
        crate::socket::close_all(self);
        crate::net::reset(self);
        self.mode = Mode::Idle;
        self.line.clear();
        self.pending_echo.clear();
        self.fifo.clear();
        self.power = Power::Booting;
        if !garbage.is_empty() {
            self.enqueue(Out::raw(garbage.to_vec()));
        }
        self.schedule(self.now + us(self.cfg.timing.boot), Ev::BootDone { gen });
    }

    pub fn power_off_now(&mut self, why: &str) {
        self.note(format!("off: {why}"));
        self.gen += 1;
        self.drop_pending_output();
        crate::socket::close_all(self);
        crate::net::reset(self);
        self.mode = Mode::Idle;
        self.line.clear();
        self.pending_echo.clear();
        self.fifo.clear();
        self.power = Power::Off;
        self.vint = false;
    }

    // ----- faults ------------------------------------------------------------

    pub fn add_fault(&mut self, fault: Fault) -> usize {
        let index = self.faults.len();
        // Clamped to ~100 years so that clock arithmetic can never overflow.
        let at = match fault.trigger {
            Trigger::At(d) => Some(us(d).min(MAX_TIME)),
            _ => None,
        };
        self.faults.push(FaultSlot {
            fault,
            seen: 0,
            done: false,
        });
        if let Some(at) = at {
            self.faults[index].done = true;
            self.schedule(at, Ev::Fault(index));
        }
        index
    }

    /// Collects the command-scoped changes for a command line, and fires the
    /// other actions of matching command triggers.
    fn mods_for(&mut self, text: &str) -> Mods {
        let mut mods = Mods::default();
        let armed = std::mem::take(&mut self.armed);
        for action in armed {
            self.apply_command_action(&action, &mut mods);
        }
        let upper = text.to_ascii_uppercase();
        for i in 0..self.faults.len() {
            let hit = {
                let slot = &mut self.faults[i];
                match &slot.fault.trigger {
                    Trigger::Command { prefix, occurrence }
                        if !slot.done && upper.starts_with(&prefix.to_ascii_uppercase()) =>
                    {
                        slot.seen += 1;
                        match occurrence {
                            Occurrence::Nth(n) => {
                                slot.done = slot.seen == *n;
                                slot.done
                            }
                            Occurrence::Every => true,
                        }
                    }
                    _ => false,
                }
            };
            if hit {
                self.fired.push(Fired {
                    at_us: self.now,
                    index: i,
                });
                let action = self.faults[i].fault.action.clone();
                self.note(format!("fault {i} fired on {text:?}: {action:?}"));
                match &action {
                    Action::Inject { bytes, position } => {
                        mods.injects.push((*position, bytes.clone()));
                    }
                    a if a.is_command_scoped() => self.apply_command_action(a, &mut mods),
                    a => self.apply_action(a),
                }
            }
        }
        mods
    }

    fn apply_command_action(&mut self, action: &Action, mods: &mut Mods) {
        match action {
            Action::DropResponse => mods.drop = true,
            Action::DelayResponse(d) => mods.delay_us += us(*d),
            Action::Fail(reply) => mods.fail = Some(*reply),
            Action::LongLine(len) => mods.long_line = Some(*len),
            Action::SocketError { usoer, plain } => mods.socket_error = Some((*usoer, *plain)),
            Action::PartialWrite(n) => mods.partial = Some(*n),
            _ => {}
        }
    }

    fn fire_anytime(&mut self, i: usize) {
        let Some(slot) = self.faults.get(i) else {
            return;
        };
        let action = slot.fault.action.clone();
        self.fired.push(Fired {
            at_us: self.now,
            index: i,
        });
        self.note(format!("fault {i} fired: {action:?}"));
        if action.is_command_scoped() {
            self.armed.push(action);
        } else {
            self.apply_action(&action);
        }
    }

    fn apply_action(&mut self, action: &Action) {
        match action {
            Action::Inject { bytes, .. } if self.power != Power::Off => {
                self.enqueue(Out {
                    bytes: bytes.clone(),
                    payload: 0,
                    urc: true,
                });
            }
            Action::Reboot { garbage } if self.power != Power::Off => {
                self.reboot(garbage, "fault");
            }
            Action::PowerLoss if self.power != Power::Off => {
                self.power_off_now("power lost (fault)");
            }
            Action::PeerClose(id) => crate::socket::peer_close(self, *id),
            Action::Registration(stat) => crate::net::force_registration(self, Some(*stat)),
            Action::ReleaseRegistration => crate::net::force_registration(self, None),
            Action::PdpLost => crate::net::pdp_lost(self),
            Action::ShortReads { max, gap } => {
                self.short_reads = if *max == usize::MAX {
                    None
                } else {
                    Some(((*max).max(1), us(*gap)))
                };
            }
            Action::ShortWrites(max) => {
                self.short_writes = if *max == usize::MAX {
                    None
                } else {
                    Some((*max).max(1))
                };
            }
            Action::LoseNextChar => self.lose_next = true,
            Action::LoseUrc(prefix) => self.lose_urcs.push(prefix.clone()),
            Action::IgnorePwrOn => self.ignore_pwr_on = true,
            Action::IgnoreReset => self.ignore_reset = true,
            Action::VintStuckHigh => self.vint_stuck = true,
            _ => {}
        }
    }

    // ----- network hooks (implemented in net.rs) ----------------------------

    fn reg_event(&mut self, ps: bool, stat: RegStat) {
        crate::net::reg_event(self, ps, stat);
    }

    fn sim_ready(&mut self) {
        crate::net::sim_ready(self);
    }

    fn finish_async_close(&mut self, socket: u8) {
        crate::socket::finish_async_close(self, socket);
    }

    pub fn pump_sockets(&mut self) {
        crate::socket::pump(self);
    }

    pub fn any_host_socket(&self) -> bool {
        self.sockets.iter().flatten().any(|s| s.has_host())
    }
}

fn fail_reply(fail: ErrorReply) -> Reply {
    match fail {
        ErrorReply::Cme(code) => Reply::cme(code),
        ErrorReply::Error => Reply::error(),
        ErrorReply::Aborted => Reply::with(Vec::new(), Final::Aborted),
    }
}

/// Verbose `+CME ERROR` texts (3GPP TS 27.007 9.2; capitalisation as in the
/// field captures of research 3.4).
pub(crate) fn cme_text(code: u16) -> Option<&'static str> {
    Some(match code {
        0 => "Phone failure",
        3 => "Operation not allowed",
        4 => "Operation not supported",
        10 => "SIM not inserted",
        11 => "SIM PIN required",
        12 => "SIM PUK required",
        13 => "SIM failure",
        14 => "SIM busy",
        15 => "SIM wrong",
        16 => "Incorrect password",
        30 => "No network service",
        31 => "Network timeout",
        50 => "Incorrect parameters",
        100 => "Unknown error",
        107 => "GPRS services not allowed",
        111 => "PLMN not allowed",
        112 => "Location area not allowed",
        127 => "Missing or unknown APN",
        132 => "service option not supported",
        133 => "requested service option not subscribed",
        134 => "service option temporarily out of order",
        148 => "unspecified GPRS error",
        149 => "PDP authentication failure",
        _ => return None,
    })
}

/// The module's active-low control pins.
#[derive(Clone, Copy)]
enum Pin {
    PwrOn,
    Reset,
}
