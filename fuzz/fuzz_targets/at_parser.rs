//! Fuzz the modem-ublox AT engine with untrusted modem output: the sans-IO framer and line
//! parsers must never panic and keep their framing invariants, and the whole driver, fed the
//! bytes as UART input, must return from every operation without panicking.
#![no_main]

use std::convert::Infallible;

use libfuzzer_sys::fuzz_target;
use modem_ublox::frame::{payload_header_len, Event, Framer};
use modem_ublox::{urc, Apn, Family, Modem, ModemConfig, NoPin, Protocol, Registration};

struct Uart<'a> {
    data: &'a [u8],
    pos: usize,
    chunk: usize,
}

impl embedded_io::ErrorType for Uart<'_> {
    type Error = Infallible;
}
impl embedded_io::ReadReady for Uart<'_> {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.pos < self.data.len())
    }
}
impl embedded_io::Read for Uart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        // A real UART read with nothing received blocks forever: the driver must not do it.
        assert!(self.pos < self.data.len(), "read() without read_ready()");
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
impl embedded_io::Write for Uart<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct NoDelay;
impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _ns: u32) {}
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let flags = data[0];
    let data = &data[1..];

    // 1. The framer and the line parsers.
    let mut f = Framer::<128>::new();
    f.set_expect_prompt(flags & 1 != 0);
    f.set_expect_binary(flags & 2 != 0);
    let mut left: Option<u16> = None;
    for &b in data {
        match f.push(b) {
            Some(Event::Line(l)) => {
                assert!(!l.is_empty() && l.len() <= 128);
                assert!(!l.contains(&b'\n') && !l.contains(&b'\r') && !l.contains(&0));
                assert!(left.is_none());
                let _ = urc::parse(l);
                let _ = urc::final_result(l);
                let _ = urc::reg_line(l);
                let _ = urc::body_follows(l);
            }
            Some(Event::PayloadStart(h)) => left = Some(payload_header_len(h).expect("header")),
            Some(Event::PayloadByte(_)) => {
                let n = left.expect("byte outside a payload");
                assert!(n > 0);
                left = Some(n - 1);
            }
            Some(Event::PayloadEnd(_)) => {
                assert_eq!(left, Some(0));
                left = None;
            }
            Some(Event::Prompt) => assert!(flags & 1 != 0),
            Some(Event::Overflow(h)) => {
                // The head of the skipped line: exactly what fits the buffer.
                assert_eq!(h.len(), 128);
                assert!(left.is_none());
            }
            None => {}
        }
    }

    // 2. The driver, with the bytes as everything the modem ever says.
    let family = [Family::U2, Family::G3, Family::R4, Family::R5][usize::from(flags >> 6)];
    let mut cfg = ModemConfig::new(family);
    cfg.poll_interval_us = 50_000;
    cfg.hex_mode = flags & 4 != 0;
    let uart = Uart {
        data,
        pos: 0,
        chunk: usize::from(flags >> 3 & 7) + 1,
    };
    let mut m: Modem<_, _, NoPin> = Modem::new(uart, NoDelay, NoPin, cfg);
    let _ = m.power_on();
    let _ = m.wait_sim_ready(2_000);
    let _ = m.register(&Registration::new(3_000));
    let _ = m.activate_data(&Apn::new("apn"), 3_000);
    if let Ok(s) = m.open_socket(Protocol::Tcp) {
        let mut buf = [0u8; 256];
        let _ = m.receive(s, &mut buf);
        let _ = m.send(s, b"hello");
        let _ = m.close(s);
    }
    if let Ok(s) = m.open_socket(Protocol::Udp) {
        let mut buf = [0u8; 64];
        let _ = m.receive_from(s, &mut buf);
    }
    let _ = m.poll(10);
    let _ = m.power_off();
});
