//! What a wake costs on the serial line: AT commands and bytes from power-on to an open TCP
//! socket, and per KiB received, per model, measured by running the driver against the
//! byte-exact emulator (its sockets reach a real loopback server). Run with
//! `bash scripts/modem-report.sh`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::Duration;

use modem_ublox::{Apn, Family, Modem, ModemConfig, Protocol, Registration};
use modem_ublox_emu as emu;
use modem_ublox_emu::Emulator;

const RECEIVED: usize = 64 * 1024;

/// A server that sends `RECEIVED` bytes to whoever connects, once it has read one byte (so that
/// nothing arrives while the bring-up is being counted).
fn source() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut go = [0u8; 1];
                if s.read_exact(&mut go).is_err() {
                    return;
                }
                let _ = s.write_all(&vec![0xA5; RECEIVED]);
                thread::sleep(Duration::from_secs(30));
            });
        }
    });
    addr
}

/// A UDP echo peer.
fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = s.local_addr().expect("addr");
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    addr
}

fn family(model: emu::Model) -> Family {
    match model.family() {
        emu::Family::U2 => Family::U2,
        emu::Family::G3 => Family::G3,
        emu::Family::R4 => Family::R4,
        emu::Family::R5 => Family::R5,
    }
}

fn main() {
    let server = source();
    let echo = udp_echo();
    let mut udp_rows = Vec::new();
    println!("modem-ublox on the serial line (driver against modem-ublox-emu, default configs)\n");
    println!("| model | power-on → open TCP socket: AT commands | bytes to modem | bytes from modem | modem time | per KiB received: AT commands | overhead bytes (both ways) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for model in [
        emu::Model::SaraU260,
        emu::Model::SaraG350,
        emu::Model::SaraR410M,
        emu::Model::SaraR510S,
    ] {
        let mut c = emu::EmulatorConfig::for_model(model);
        c.real_sleep_cap = Duration::from_micros(20);
        let e = Emulator::with_config(model, c);
        let mut m: Modem<_, _, _, _, _, 512> = Modem::new(
            e.uart(),
            e.delay(),
            e.pwr_on(),
            ModemConfig::new(family(model)),
        )
        .with_reset(e.reset())
        .with_vint(e.vint())
        .with_line_buffer::<512>();
        let t0 = e.now();
        m.power_on().expect("power on");
        m.wait_sim_ready(10_000).expect("SIM");
        m.register(&Registration::new(120_000)).expect("register");
        m.activate_data(&Apn::new("spark.telefonica.com"), 60_000)
            .expect("data");
        let s = m.open_socket(Protocol::Tcp).expect("socket");
        m.connect(s, server).expect("connect");
        let up = e.stats();
        let up_ms = (e.now() - t0) / 1000;
        m.send(s, b"g").expect("go");
        let go = e.stats();
        let mut buf = [0u8; 1024];
        let mut got = 0;
        while got < RECEIVED {
            assert!(m.wait_readable(s, 10_000).expect("wait"), "stalled");
            got += m.receive(s, &mut buf).expect("receive");
        }
        let rx = e.stats().since(&go);
        let kib = (RECEIVED / 1024) as f64;
        let overhead = rx.to_modem.at + rx.from_modem.at + rx.to_modem.payload;
        println!(
            "| {model:?} | {} | {} | {} | {:.1} s | {:.2} | {:.0} |",
            up.at_commands,
            up.to_modem.at + up.to_modem.payload,
            up.from_modem.at + up.from_modem.payload,
            up_ms as f64 / 1000.0,
            rx.at_commands as f64 / kib,
            overhead as f64 / kib,
        );
        let mut names: Vec<_> = up.per_command.iter().collect();
        names.sort();
        eprintln!(
            "{model:?} bring-up commands: {}",
            names
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        m.close(s).expect("close");
        // One 100-byte UDP round trip (a check-in is ~30-50 bytes each way).
        let u = m.open_socket(Protocol::Udp).expect("udp socket");
        let before = e.stats();
        m.send_to(u, echo, &[0x42; 100]).expect("send_to");
        assert!(m.wait_readable(u, 10_000).expect("wait"), "no echo");
        let (n, _) = m
            .receive_from(u, &mut buf)
            .expect("recv")
            .expect("a datagram");
        assert_eq!(n, 100);
        let rt = e.stats().since(&before);
        udp_rows.push(format!(
            "| {model:?} | {} | {} | {} |",
            rt.at_commands,
            rt.to_modem.at + rt.to_modem.payload,
            rt.from_modem.at + rt.from_modem.payload
        ));
        m.close(u).expect("close");
        m.power_off().expect("power off");
    }
    println!("\nOne 100-byte UDP round trip (send, data URC, read):\n");
    println!("| model | AT commands | bytes to modem | bytes from modem |");
    println!("|---|---:|---:|---:|");
    for r in udp_rows {
        println!("{r}");
    }
    println!(
        "\nModem time is the emulator's virtual time, with its default (inferred) latencies: \
         boot 3–5 s and registration 2 s dominate; a real network takes longer."
    );
}
