//! The bridge: the SARA-U260 emulator behind QEMU's USART3, its pins and clock behind the
//! board link on USART2.
//!
//! The emulator's clock is virtual. It moves when the firmware says it waited
//! ([`Request::Waited`]: the firmware's `BridgedDelay` reports every wait of the modem driver
//! before it waits on its SysTick), when bytes cross the UART (their wire time at 115 200
//! baud, the emulator's own rule), and over a sleep ([`Request::Sleep`]). While the emulator
//! has host UDP sockets open, each wait also takes a little real time (the emulator's
//! `Delay` rule, at most 1 ms), so that `ota-cloud`'s answers arrive.
//!
//! Ordering: QEMU writes the firmware's USART3 bytes to their socket synchronously, before
//! the board-link request that follows them; the bridge reads every byte waiting on the
//! USART3 socket before it acts on a request, so the emulator sees them first. Bytes the
//! modem sends are queued on the USART3 socket as they fall due; QEMU hands them to the
//! firmware one at a time as its receiver empties (the one-byte DR), which stands in for the
//! board's RTS/CTS.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read as _, ReadReady as _, Write as _};
use modem_ublox_emu::{Delay, Emulator, Model, PwrOn, Reset, Uart, VInt};

use crate::link::{answer, Decoder, Reply, Request};

/// Counters over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Boots ([`Request::Hello`]).
    pub boots: u32,
    /// Requests answered.
    pub requests: u64,
    /// Requests that did not decode.
    pub bad_requests: u64,
    /// Nanoseconds of firmware waits reported.
    pub waited_ns: u64,
    /// Sleeps.
    pub sleeps: u32,
    /// Bytes from the firmware to the modem.
    pub to_modem: u64,
    /// Bytes from the modem to the firmware.
    pub from_modem: u64,
}

/// What a request did that is worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A boot: its number (1 for QEMU's power-on) and the modem clock (µs).
    Boot {
        /// Boot number.
        n: u32,
        /// Emulator time, µs.
        at_us: u64,
        /// The previous wake ended in a reset (no sleep): its length on the modem clock, µs.
        after_reset_us: Option<u64>,
    },
    /// The end of a wake: the modem clock's time since the boot (µs), USART3 bytes both
    /// ways during it, and the sleep asked for.
    Sleep {
        /// Boot number of the wake.
        n: u32,
        /// Emulator time since the wake's boot, µs.
        awake_us: u64,
        /// Bytes to the modem this wake.
        to_modem: u64,
        /// Bytes from the modem this wake.
        from_modem: u64,
        /// Link requests this wake.
        requests: u64,
        /// The sleep, ms.
        ms: u32,
    },
}

/// The emulator and its handles, driven by board-link requests.
pub struct Bridge {
    emu: Emulator,
    uart: Uart,
    delay: Delay,
    pwr: PwrOn,
    reset: Reset,
    vint: VInt,
    stats: BridgeStats,
    /// Stats and clock at the last boot.
    at_boot: (BridgeStats, u64),
}

impl Bridge {
    /// A bridge to a new, switched-off emulated module of `model`.
    pub fn new(model: Model) -> Self {
        let emu = Emulator::new(model);
        Self {
            uart: emu.uart(),
            delay: emu.delay(),
            pwr: emu.pwr_on(),
            reset: emu.reset(),
            vint: emu.vint(),
            emu,
            stats: BridgeStats::default(),
            at_boot: (BridgeStats::default(), 0),
        }
    }

    /// The emulator (transcript, power state).
    pub fn emulator(&self) -> &Emulator {
        &self.emu
    }

    /// The counters.
    pub fn stats(&self) -> BridgeStats {
        self.stats
    }

    /// Bytes the firmware wrote to USART3: to the modem (each takes its wire time on the
    /// emulator's clock).
    pub fn from_firmware(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.uart.write(rest) {
                Ok(0) | Err(_) => break,
                Ok(n) => rest = &rest[n..],
            }
        }
        self.stats.to_modem += (bytes.len() - rest.len()) as u64;
    }

    /// Appends the modem's bytes that are due now to `out`; returns how many.
    pub fn due_bytes(&mut self, out: &mut Vec<u8>) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 256];
        while let Ok(true) = self.uart.read_ready() {
            match self.uart.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    out.extend_from_slice(&buf[..k]);
                    n += k;
                }
            }
        }
        self.stats.from_modem += n as u64;
        n
    }

    /// Acts on one request; returns the reply and, for boots and sleeps, a note.
    pub fn handle(&mut self, req: Request) -> (Reply, Option<Note>) {
        self.stats.requests += 1;
        match req {
            Request::Hello => {
                let (before, t0) = self.at_boot;
                let at = self.emu.now();
                let after_reset_us = (self.stats.boots > 0 && self.stats.sleeps == before.sleeps)
                    .then(|| at.saturating_sub(t0));
                self.stats.boots += 1;
                self.at_boot = (self.stats, at);
                (
                    Reply::Done,
                    Some(Note::Boot {
                        n: self.stats.boots,
                        at_us: at,
                        after_reset_us,
                    }),
                )
            }
            Request::Waited { ns } => {
                self.stats.waited_ns += u64::from(ns);
                self.delay.delay_ns(ns);
                (Reply::Done, None)
            }
            Request::PwrOn { high } => {
                let _ = if high {
                    self.pwr.set_high()
                } else {
                    self.pwr.set_low()
                };
                (Reply::Done, None)
            }
            Request::ResetN { high } => {
                let _ = if high {
                    self.reset.set_high()
                } else {
                    self.reset.set_low()
                };
                (Reply::Done, None)
            }
            Request::VInt => (Reply::Level(self.vint.is_high().unwrap_or(false)), None),
            Request::Sleep { ms } => {
                self.stats.sleeps += 1;
                let (b, t0) = self.at_boot;
                let note = Note::Sleep {
                    n: self.stats.boots,
                    awake_us: self.emu.now().saturating_sub(t0),
                    to_modem: self.stats.to_modem - b.to_modem,
                    from_modem: self.stats.from_modem - b.from_modem,
                    requests: self.stats.requests - b.requests,
                    ms,
                };
                self.emu.advance(Duration::from_millis(u64::from(ms)));
                (Reply::Done, Some(note))
            }
        }
    }
}

/// Reads every byte waiting on a non-blocking stream.
fn drain(s: &mut UnixStream, out: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `bytes` to a non-blocking stream, waiting while its buffer is full.
fn send(s: &mut UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match s.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(100))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves QEMU until it closes the board link: `link` is USART2's socket, `modem` USART3's.
/// `log` gets one line per boot and per sleep (and per undecodable request).
///
/// # Errors
/// Socket errors.
pub fn serve(
    bridge: &mut Bridge,
    mut link: UnixStream,
    mut modem: UnixStream,
    log: &mut dyn Write,
) -> io::Result<BridgeStats> {
    modem.set_nonblocking(true)?;
    let mut dec = Decoder::new();
    let mut buf = [0u8; 256];
    let mut to_modem = Vec::new();
    let mut from_modem = Vec::new();
    let mut wall = std::time::Instant::now();
    loop {
        let n = match link.read(&mut buf) {
            Ok(0) => return Ok(bridge.stats()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(bridge.stats()),
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            let Some(req) = dec.push(b) else { continue };
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    bridge.stats.bad_requests += 1;
                    writeln!(log, "bridge: {e}")?;
                    continue;
                }
            };
            // The firmware's USART3 bytes written before this request go first.
            to_modem.clear();
            drain(&mut modem, &mut to_modem)?;
            bridge.from_firmware(&to_modem);
            let (reply, note) = bridge.handle(req);
            from_modem.clear();
            let queued = bridge.due_bytes(&mut from_modem);
            send(&mut modem, &from_modem)?;
            let reply = match (req, reply) {
                (Request::Waited { .. }, _) => Reply::Queued(queued),
                (_, r) => r,
            };
            link.write_all(&answer(req, reply))?;
            match note {
                Some(Note::Boot {
                    n,
                    at_us,
                    after_reset_us,
                }) => {
                    if let Some(us) = after_reset_us {
                        writeln!(
                            log,
                            "bridge: wake {} ended in a reset after {} ms on the modem clock ({:.1} s wall)",
                            n - 1,
                            us / 1000,
                            wall.elapsed().as_secs_f64()
                        )?;
                    }
                    wall = std::time::Instant::now();
                    writeln!(log, "bridge: boot {n} (modem clock {} ms)", at_us / 1000)?;
                }
                Some(Note::Sleep {
                    n,
                    awake_us,
                    to_modem,
                    from_modem,
                    requests,
                    ms,
                }) => {
                    writeln!(
                        log,
                        "bridge: wake {n} ends: {} ms on the modem clock ({:.1} s wall), USART3 \
                         {to_modem} B to the modem / {from_modem} B from it, {requests} link \
                         requests; sleeps {ms} ms",
                        awake_us / 1000,
                        wall.elapsed().as_secs_f64()
                    )?;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The firmware's modem power-on, as the link carries it: PWR_ON low for 50 ms (reported
    /// as waits), released; the emulated SARA-U260 boots on the waits the link reports, and
    /// V_INT reads high through the link.
    #[test]
    fn a_pwr_on_pulse_and_reported_waits_boot_the_modem() {
        let mut b = Bridge::new(Model::SaraU260);
        assert_eq!(b.handle(Request::VInt).0, Reply::Level(false));
        assert!(matches!(
            b.handle(Request::Hello),
            (
                Reply::Done,
                Some(Note::Boot {
                    n: 1,
                    after_reset_us: None,
                    ..
                })
            )
        ));
        b.handle(Request::PwrOn { high: false });
        for _ in 0..50 {
            b.handle(Request::Waited { ns: 1_000_000 });
        }
        b.handle(Request::PwrOn { high: true });
        assert_eq!(
            b.emulator().now(),
            50_000,
            "the clock moved by the waits alone"
        );
        // Wait (in 100 ms reports) until V_INT is up: the boot takes virtual seconds.
        let mut waited = 0;
        while b.handle(Request::VInt).0 != Reply::Level(true) {
            b.handle(Request::Waited { ns: 100_000_000 });
            waited += 1;
            assert!(waited < 100, "no V_INT within 10 s");
        }
        // `AT` every 100 ms, as the driver probes, until the booted modem answers `OK`
        // (bytes become due after their wire time on the reported waits).
        let mut out = Vec::new();
        let mut probes = 0;
        while !String::from_utf8_lossy(&out).contains("OK") {
            b.from_firmware(b"AT\r\n");
            probes += 1;
            assert!(probes < 100, "no OK: {:?}", String::from_utf8_lossy(&out));
            for _ in 0..100 {
                b.handle(Request::Waited { ns: 1_000_000 });
                b.due_bytes(&mut out);
            }
        }
        let s = b.stats();
        assert_eq!((s.boots, s.to_modem), (1, 4 * probes));
        assert_eq!(s.from_modem, out.len() as u64);
    }

    #[test]
    fn a_sleep_advances_the_clock_and_reports_the_wake() {
        let mut b = Bridge::new(Model::SaraU260);
        b.handle(Request::Hello);
        b.handle(Request::Waited { ns: 2_000_000 });
        let t = b.emulator().now();
        let (_, note) = b.handle(Request::Sleep { ms: 10_000 });
        assert_eq!(
            note,
            Some(Note::Sleep {
                n: 1,
                awake_us: 2_000,
                to_modem: 0,
                from_modem: 0,
                requests: 2,
                ms: 10_000
            })
        );
        assert_eq!(b.emulator().now(), t + 10_000_000);
        // A boot after a sleep; then one after a wake that ended in a reset.
        let (_, note) = b.handle(Request::Hello);
        assert!(matches!(
            note,
            Some(Note::Boot {
                n: 2,
                after_reset_us: None,
                ..
            })
        ));
        b.handle(Request::Waited { ns: 3_000_000 });
        let (_, note) = b.handle(Request::Hello);
        assert!(matches!(
            note,
            Some(Note::Boot {
                n: 3,
                after_reset_us: Some(3_000),
                ..
            })
        ));
    }

    /// Over real sockets: a request's answer comes back, and USART3 bytes written before it
    /// reach the emulator first.
    #[test]
    fn serve_answers_over_sockets() {
        let (mut fw_link, br_link) = UnixStream::pair().unwrap();
        let (mut fw_modem, br_modem) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut b = Bridge::new(Model::SaraU260);
            let mut log = Vec::new();
            let s = serve(&mut b, br_link, br_modem, &mut log).unwrap();
            (s, String::from_utf8(log).unwrap())
        });
        fw_modem.write_all(b"AT\r\n").unwrap();
        fw_link.write_all(&[0xA0, 0xA4, 0x55]).unwrap();
        fw_link.write_all(&[0xA5, 0x01, 0x00, 0x00, 0x00]).unwrap();
        let mut a = [0u8; 4];
        fw_link.read_exact(&mut a).unwrap();
        assert_eq!(a, [0xD0, 0xD4, 0x00, 0xD5]);
        drop(fw_link);
        let (s, log) = t.join().unwrap();
        assert_eq!(
            (s.boots, s.requests, s.bad_requests, s.to_modem),
            (1, 3, 1, 4)
        );
        assert!(log.contains("bridge: boot 1"), "{log}");
        assert!(log.contains("unknown board-link request 0x55"), "{log}");
        assert!(log.contains("wake 1 ends"), "{log}");
    }
}
