//! `electron-qemu-bridge`: see the README.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use electron_qemu_bridge::bridge::{serve, Bridge};
use electron_qemu_bridge::identity::identity_bytes;
use modem_ublox_emu::Model;

#[derive(Parser)]
#[command(version, about = "Host side of the Electron firmware's QEMU run")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Listens on two Unix sockets, for QEMU's USART2 (`-serial unix:LINK`) and USART3
    /// (`-serial unix:MODEM`), then serves the SARA-U260 emulator until QEMU closes them.
    Run {
        /// The board link's socket path (QEMU's second `-serial`).
        #[arg(long)]
        link: PathBuf,
        /// The modem's socket path (QEMU's third `-serial`).
        #[arg(long)]
        modem: PathBuf,
        /// Write the emulator's transcript (every byte, pin and power event) here at the end.
        #[arg(long)]
        transcript: Option<PathBuf>,
    },
    /// Writes the identity region (256 bytes for flash offset 0xC000) for an `ota-cloud
    /// device add` key file.
    Identity {
        /// The device key file.
        #[arg(long)]
        key: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Identity { key, out } => {
            let bytes = identity_bytes(&key)?;
            std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
        }
        Cmd::Run {
            link,
            modem,
            transcript,
        } => {
            let _ = std::fs::remove_file(&link);
            let _ = std::fs::remove_file(&modem);
            let l = UnixListener::bind(&link).with_context(|| format!("{}", link.display()))?;
            let m = UnixListener::bind(&modem).with_context(|| format!("{}", modem.display()))?;
            println!(
                "bridge: listening on {} and {}",
                link.display(),
                modem.display()
            );
            // QEMU connects its serial ports in order: USART2 (link), then USART3 (modem).
            let (link_s, _) = l.accept().context("accepting the board link")?;
            let (modem_s, _) = m.accept().context("accepting the modem UART")?;
            println!("bridge: QEMU connected");
            let mut bridge = Bridge::new(Model::SaraU260);
            let mut out = std::io::stdout();
            let r = serve(&mut bridge, link_s, modem_s, &mut out);
            if let Some(t) = transcript {
                std::fs::write(&t, bridge.emulator().transcript_string())
                    .with_context(|| format!("writing {}", t.display()))?;
            }
            let s = r.context("serving QEMU")?;
            println!(
                "bridge: done: {} boots, {} sleeps, {} link requests ({} bad), {:.1} s of waits \
                 reported, USART3 {} B to the modem / {} B from it",
                s.boots,
                s.sleeps,
                s.requests,
                s.bad_requests,
                s.waited_ns as f64 / 1e9,
                s.to_modem,
                s.from_modem
            );
        }
    }
    Ok(())
}
