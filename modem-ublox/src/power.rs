//! Power sequencing per model, initialisation, baud probing, power-off with fallbacks,
//! soft reset and recovery.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::cmd::Cmd;
use crate::error::{AtError, PowerError};
use crate::model::{Family, Model};
use crate::modem::{Modem, OnLine};

/// What [`Modem::recover`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Recovery {
    /// The modem answered `AT`; nothing was lost.
    Alive,
    /// The modem was reset (or power-cycled) and initialised again; sockets and the data
    /// context are gone.
    Restarted,
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    fn pwr_pulse_us(&mut self, us: u32) -> Result<(), PowerError> {
        self.pwr.set_low().map_err(Self::pin_err)?;
        self.sleep_us(us);
        self.pwr.set_high().map_err(Self::pin_err)?;
        Ok(())
    }

    fn reset_pulse_ms(&mut self, ms: u32) -> Result<bool, PowerError> {
        let Some(pin) = self.reset.as_mut() else {
            return Ok(false);
        };
        pin.set_low().map_err(Self::pin_err)?;
        self.sleep_ms(ms);
        if let Some(pin) = self.reset.as_mut() {
            pin.set_high().map_err(Self::pin_err)?;
        }
        Ok(true)
    }

    /// Send `AT` up to `tries` times; `true` on any final result. Does not count timeouts
    /// towards recovery.
    fn probe(&mut self, tries: u32) -> Result<bool, AtError> {
        for _ in 0..tries {
            self.write_bytes(b"AT\r\n")?;
            self.stats.commands = self.stats.commands.wrapping_add(1);
            let t = self.timeouts().short;
            let r = self.finish_probe(t);
            match r {
                Ok(()) | Err(AtError::Error) | Err(AtError::Cme(_)) | Err(AtError::Aborted) => {
                    return Ok(true)
                }
                Err(AtError::Timeout) | Err(AtError::LineTooLong) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    fn finish_probe(&mut self, t: u32) -> Result<(), AtError> {
        let r = self.wait_plain(t);
        self.st.timeouts = 0;
        self.st.needs_sync = false;
        r
    }

    /// Probe with `AT` until the modem answers or `ms` have passed.
    fn wait_boot(&mut self, ms: u32) -> Result<bool, AtError> {
        let deadline = self.deadline(ms);
        loop {
            if self.probe(1)? {
                return Ok(true);
            }
            if self.now_ns() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Wait for V_INT to read `level`, polling every 10 ms, up to `ms`. `None` without V_INT.
    fn wait_vint(&mut self, level: bool, ms: u32) -> Result<Option<bool>, PowerError> {
        if self.vint.is_none() {
            return Ok(None);
        }
        let deadline = self.deadline(ms);
        loop {
            if self.vint_high()? == Some(level) {
                return Ok(Some(true));
            }
            if self.now_ns() >= deadline {
                return Ok(Some(false));
            }
            self.sleep_ms(10);
        }
    }

    /// Power the modem on (or find it on), detect the model and initialise it.
    ///
    /// Sequence: PWR_ON and RESET_N driven high (idle). If V_INT is high, or (without V_INT)
    /// the modem answers one `AT`, it was already on (the MCU reset while the modem ran): stale
    /// sockets are swept before the first new one is created. Otherwise PWR_ON is pulsed low
    /// for the configured family's width, V_INT is awaited (1 s), and `AT` is probed until the
    /// family's boot time passes. If that fails, the other enabled families' pulses shorter
    /// than 1 s are tried (never a pulse that could switch a running module off), then a
    /// RESET_N pulse if the pin exists.
    ///
    /// Then: `ATE0`, `AT`, `AT+CMEE=1`, `AT+CGMM`, `ATI9`, and as configured `AT+IPR`,
    /// `AT&K3`/`AT+IFC=2,2`, `AT+UPSV=0` (not R4), `AT+UDCONF=1,1` (hex mode).
    ///
    /// Cost: without V_INT, one `AT` timeout (1 s) on a cold start; the boot time of the
    /// module (typically 2–6 s); about 90 bytes each way for the init commands.
    ///
    /// # Errors
    /// [`PowerError::NoResponse`] (nothing answered, check the baud rate with
    /// [`probe_baud`](Self::probe_baud)), [`PowerError::UnsupportedModel`],
    /// [`PowerError::Pin`], [`PowerError::At`] if an init command failed.
    pub fn power_on(&mut self) -> Result<(), PowerError> {
        self.pwr.set_high().map_err(Self::pin_err)?;
        if let Some(r) = self.reset.as_mut() {
            r.set_high().map_err(Self::pin_err)?;
        }
        self.reset_engine();
        let already_on = match self.vint_high()? {
            Some(true) => {
                if !self.probe(3)? {
                    // On but deaf: a power-on pulse could switch some models off (the R5's
                    // on and off pulses overlap); reset it instead.
                    self.st.sweep_needed = false;
                    return self.restart();
                }
                true
            }
            Some(false) => false,
            None => self.probe(1)?,
        };
        if already_on {
            self.st.sweep_needed = true;
        } else {
            self.switch_on()?;
        }
        self.init()
    }

    pub(crate) fn reset_engine(&mut self) {
        self.st.invalidate();
        self.st.needs_sync = false;
        self.st.timeouts = 0;
        self.st.reboot_detected = false;
    }

    fn switch_on(&mut self) -> Result<(), PowerError> {
        let first = self.cfg.family;
        let others = [Family::U2, Family::G3, Family::R4, Family::R5]
            .into_iter()
            .filter(|&f| f != first && f.is_enabled() && f.profile().pwr_on_pulse_us < 1_000_000);
        let mut tried = 0u8;
        for fam in core::iter::once(first).chain(others) {
            tried += 1;
            let p = fam.profile();
            self.pwr_pulse_us(p.pwr_on_pulse_us)?;
            if self.wait_vint(true, 1_000)? == Some(false) {
                continue;
            }
            if self.wait_boot(p.boot_ms)? {
                self.st.profile = p;
                self.st.family = fam;
                return Ok(());
            }
        }
        let p = self.cfg.family.profile();
        if tried > 0 && self.reset_pulse_ms(p.reset_pulse_ms)? {
            if p.reset_powers_off {
                self.sleep_ms(1_000);
                self.pwr_pulse_us(p.pwr_on_pulse_us)?;
            }
            if self.wait_boot(p.boot_ms)? {
                return Ok(());
            }
        }
        Err(PowerError::NoResponse)
    }

    /// The initialisation sequence, on a modem that answers `AT`.
    pub(crate) fn init(&mut self) -> Result<(), PowerError> {
        let t = self.timeouts().short;
        self.simple(b"ATE0\r\n", t)?;
        self.st.echo_off = true;
        self.simple(b"AT\r\n", t)?;
        self.simple(b"AT+CMEE=1\r\n", t)?;
        let model = self.query(b"AT+CGMM\r\n", t, b"", Model::from_cgmm);
        let model = match model {
            Ok(m) => m,
            Err(AtError::Unexpected) => return Err(PowerError::UnsupportedModel),
            Err(e) => return Err(e.into()),
        };
        if !model.family().is_enabled() {
            return Err(PowerError::UnsupportedModel);
        }
        self.st.model = Some(model);
        self.st.family = model.family();
        self.st.profile = model.family().profile();
        let mut fw = [0u8; 32];
        let mut fw_len = 0u8;
        self.exec(
            b"ATI9\r\n",
            t,
            &mut OnLine(|l: &[u8]| {
                if fw_len == 0 {
                    let n = l.len().min(fw.len());
                    fw[..n].copy_from_slice(&l[..n]);
                    fw_len = n as u8;
                }
                true
            }),
        )?;
        self.st.fw = fw;
        self.st.fw_len = fw_len;
        if self.cfg.set_baud {
            let mut c = Cmd::new("AT+IPR=");
            c.num(self.cfg.baud);
            self.simple(c.finish()?, t)?;
            self.sleep_ms(100);
        }
        if self.cfg.flow_control {
            let cmd: &[u8] = if self.st.family.uses_cereg() {
                b"AT+IFC=2,2\r\n"
            } else {
                b"AT&K3\r\n"
            };
            self.simple(cmd, t)?;
        }
        if self.st.profile.supports_upsv {
            self.simple(b"AT+UPSV=0\r\n", t)?;
        }
        if self.cfg.hex_mode {
            let ts = self.timeouts().socket;
            self.simple(b"AT+UDCONF=1,1\r\n", ts)?;
            self.st.hex = true;
        }
        self.st.powered = true;
        Ok(())
    }

    /// Find the modem's baud rate when it does not answer at the configured one (an earlier
    /// session sent `AT+IPR`, which R4 modules keep across power cycles).
    ///
    /// For each rate in `rates`, `set_rate` switches the UART (the driver cannot: there is no
    /// baud trait in `embedded-io`), then `AT` is probed twice. When the modem answers at a
    /// rate other than [`Config::baud`](crate::Config::baud), `AT+IPR=<Config::baud>` is sent,
    /// the UART is switched back, and after 100 ms `AT` must answer again. Returns the rate
    /// the modem answered at first.
    ///
    /// Cost: up to 2 × 1 s per rate tried.
    ///
    /// # Errors
    /// [`PowerError::NoResponse`] if no rate works.
    pub fn probe_baud(
        &mut self,
        rates: &[u32],
        mut set_rate: impl FnMut(&mut U, u32),
    ) -> Result<u32, PowerError> {
        let target = self.cfg.baud;
        for &rate in rates {
            set_rate(&mut self.uart, rate);
            self.cfg.baud = rate;
            self.drop_input()?;
            if !self.probe(2)? {
                continue;
            }
            if rate != target {
                let mut c = Cmd::new("AT+IPR=");
                c.num(target);
                self.write_bytes(c.finish()?)?;
                let t = self.timeouts().short;
                self.finish_probe(t)?;
                set_rate(&mut self.uart, target);
                self.cfg.baud = target;
                self.sleep_ms(100);
                self.drop_input()?;
                if !self.probe(2)? {
                    return Err(PowerError::NoResponse);
                }
            }
            return Ok(rate);
        }
        self.cfg.baud = target;
        set_rate(&mut self.uart, target);
        Err(PowerError::NoResponse)
    }

    /// Discard whatever was received (garbage at a wrong rate) without interpreting it.
    fn drop_input(&mut self) -> Result<(), AtError> {
        self.discard_input()
    }

    /// Switch the modem off and verify it.
    ///
    /// `AT+CPWROFF` (up to 3 tries on `ABORTED` or timeout), then V_INT low within the
    /// model's power-down time (without V_INT: 1 s, then one unanswered `AT`). Fallbacks if it
    /// is still on: a PWR_ON off pulse (never on the G350: a pulse switches it on), then
    /// RESET_N (R410: RESET_N switches it off; others reboot and get one more `AT+CPWROFF`).
    ///
    /// # Errors
    /// [`PowerError::StillOn`] when every method failed; [`PowerError::Pin`].
    pub fn power_off(&mut self) -> Result<(), PowerError> {
        if self.vint_high()? == Some(false) {
            self.mark_off();
            return Ok(());
        }
        self.st.no_recover = true;
        let r = self.power_off_inner();
        self.st.no_recover = false;
        if r.is_ok() {
            self.mark_off();
        }
        r
    }

    fn mark_off(&mut self) {
        self.st.powered = false;
        self.st.invalidate();
        self.st.needs_sync = false;
        self.st.timeouts = 0;
    }

    fn cpwroff(&mut self, tries: u32) -> Result<bool, PowerError> {
        let t = self.timeouts().power_off;
        for _ in 0..tries {
            self.st.needs_sync = false;
            match self.simple(b"AT+CPWROFF\r\n", t) {
                Ok(()) => return Ok(true),
                Err(AtError::Aborted) | Err(AtError::Timeout) | Err(AtError::Error) => {}
                Err(AtError::ModemRebooted) => {}
                Err(AtError::Uart(k)) => return Err(PowerError::At(AtError::Uart(k))),
                Err(AtError::PoweredOff) => return Ok(true),
                Err(_) => {}
            }
        }
        Ok(false)
    }

    fn verify_off(&mut self) -> Result<bool, PowerError> {
        let ms = self.st.profile.power_down_ms;
        match self.wait_vint(false, ms)? {
            Some(off) => Ok(off),
            None => {
                self.sleep_ms(1_000);
                self.discard_input()?;
                Ok(!self.probe(1)?)
            }
        }
    }

    fn power_off_inner(&mut self) -> Result<(), PowerError> {
        if self.cpwroff(3)? && self.verify_off()? {
            return Ok(());
        }
        let p = self.st.profile;
        if let Some(ms) = p.pwr_off_pulse_ms {
            self.pwr_pulse_us(ms.saturating_mul(1_000))?;
            if self.verify_off()? {
                return Ok(());
            }
        }
        if self.reset_pulse_ms(p.reset_pulse_ms)? {
            // Whatever the reset does, the session is gone (and echo is back on).
            self.st.invalidate();
            if p.reset_powers_off {
                if self.verify_off()? {
                    return Ok(());
                }
            } else if self.wait_boot(p.boot_ms)? && self.cpwroff(1)? && self.verify_off()? {
                return Ok(());
            }
        }
        Err(PowerError::StillOn)
    }

    /// Reset (RESET_N, or a PWR_ON power cycle, or a soft reset as last resort), wait for boot
    /// and initialise. Used when the modem stopped answering.
    pub(crate) fn restart(&mut self) -> Result<(), PowerError> {
        let p = self.st.profile;
        if self.reset_pulse_ms(p.reset_pulse_ms)? {
            if p.reset_powers_off {
                self.sleep_ms(1_000);
                self.pwr_pulse_us(p.pwr_on_pulse_us)?;
            }
        } else if let Some(ms) = p.pwr_off_pulse_ms {
            self.pwr_pulse_us(ms.saturating_mul(1_000))?;
            let _ = self.wait_vint(false, p.power_down_ms)?;
            self.sleep_ms(1_000);
            self.pwr_pulse_us(p.pwr_on_pulse_us)?;
        } else {
            // G350 without RESET_N: a PWR_ON pulse switches it on if it went off; if it is on
            // and deaf there is nothing else the pins can do.
            self.pwr_pulse_us(p.pwr_on_pulse_us)?;
        }
        self.discard_input()?;
        if !self.wait_boot(p.boot_ms)? {
            self.st.powered = false;
            return Err(PowerError::NoResponse);
        }
        self.st.in_reinit = true;
        let r = self.init();
        self.st.in_reinit = false;
        r
    }

    /// Check that the modem answers; if it does not (or has been timing out), reset it and
    /// initialise it again. Call when operations keep failing with `Timeout`.
    ///
    /// # Errors
    /// [`PowerError::NoResponse`] if even a reset did not bring it back.
    pub fn recover(&mut self) -> Result<Recovery, PowerError> {
        self.discard_input()?;
        if self.probe(3)? {
            self.st.needs_sync = false;
            self.st.timeouts = 0;
            return Ok(Recovery::Alive);
        }
        self.recover_hard()?;
        Ok(Recovery::Restarted)
    }

    /// Soft reset: `AT+CFUN=16` (`AT+CFUN=15` on R4), then wait for the reboot and initialise
    /// again. Needed after PSM settings on R4. Sockets and the data context are gone.
    ///
    /// # Errors
    /// [`PowerError::At`] if the command failed, [`PowerError::NoResponse`] if the modem did
    /// not come back within its boot time.
    pub fn soft_reset(&mut self) -> Result<(), PowerError> {
        let cmd: &[u8] = if self.st.family == Family::R4 {
            b"AT+CFUN=15\r\n"
        } else {
            b"AT+CFUN=16\r\n"
        };
        let t = self.timeouts().cfun;
        self.simple(cmd, t)?;
        self.reset_engine();
        // The modem reboots: give it a moment before probing, the echo comes back on.
        self.sleep_ms(1_000);
        self.discard_input()?;
        let boot = self.st.profile.boot_ms;
        if !self.wait_boot(boot)? {
            return Err(PowerError::NoResponse);
        }
        self.init()
    }
}
