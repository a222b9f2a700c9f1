//! Power sequencing per model, initialisation, baud probing, power-off with fallbacks,
//! soft reset and recovery.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::cmd::Cmd;
use crate::engine::{Link, OnLine};
use crate::error::{AtError, PowerError};
use crate::model::{Family, Model, Profile};
use crate::modem::Modem;
use crate::socket::ALL_HANDLES;

/// Consecutive unanswered `AT`s that mean "off" when there is no V_INT.
const OFF_PROBES: u32 = 2;

/// What [`Modem::recover`] had to do.
///
/// `#[must_use]`: after `Restarted` the sockets and the data context are gone and must be
/// opened again, so `modem.recover()?;` alone is refused by `deny(unused_must_use)`:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn reopen_if_needed(
///     r: Result<modem_ublox::Recovery, modem_ublox::PowerError>,
/// ) -> Result<(), modem_ublox::PowerError> {
///     r?; // `Restarted` ignored: refused at compile time
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "after `Restarted` the sockets and the data context are gone: open them again"]
pub enum Recovery {
    /// The modem answered `AT`; nothing was lost.
    Alive,
    /// The modem was reset (or power-cycled), or found to have rebooted, and initialised
    /// again; sockets and the data context are gone.
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
            if self.probe_once()? {
                return Ok(true);
            }
        }
        Ok(false)
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
    /// family's boot time passes. Without V_INT, an R5 that stays silent gets its pulse once
    /// more after its power-down time: its 1.5 s switch-on pulse also switches off a module
    /// that was on but missed the probe, and the second pulse switches it back on. If that
    /// fails, the other enabled families' pulses shorter than 1 s are tried (never a pulse
    /// that could switch a running module off), then a RESET_N pulse if the pin exists.
    ///
    /// Then: `ATE0`, `AT`, `AT+CMEE=1`, `AT+CGMM`, `ATI9`, and as configured `AT+IPR`,
    /// `AT&K3`/`AT+IFC=2,2`, `AT+UPSV=0` (not R4), `AT+UDCONF=1,1` (hex mode).
    ///
    /// Cost: without V_INT, one `AT` timeout (1 s) on a cold start; the boot time of the module
    /// (typically 2–6 s); about 90 bytes each way for the init commands. Worst case, when
    /// nothing answers: each family's pulse and boot time (U2 20 s, G3 15 s, R4 15 s, R5 20 s,
    /// plus 21.5 s for the R5's second pulse without V_INT), then RESET_N (R4: 10 s) and one
    /// more boot time: about 1.5 min with all four families enabled, 2 min for R5 without
    /// V_INT. With V_INT a family whose pulse does not raise V_INT costs only 1 s.
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
                    return self.restart();
                }
                true
            }
            Some(false) => false,
            None => self.probe(1)?,
        };
        if already_on {
            // Sockets of the previous MCU run may still be open.
            self.st.stale = ALL_HANDLES;
        } else {
            self.switch_on()?;
        }
        self.init()
    }

    pub(crate) fn reset_engine(&mut self) {
        self.st.invalidate();
        self.set_link(Link::InStep);
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
            if self.pulse_on_and_boot(&p)? {
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

    /// Switch-on pulse of profile `p`, then V_INT (1 s) and `AT` until its boot time passes.
    /// `true` once the modem answers.
    ///
    /// Without V_INT a module that is on but silent looks off, and a switch-on pulse of 1 s or
    /// more (the R5's 1.5 s) is also long enough to switch it *off* (the R5's on and off
    /// ranges overlap). So when such a pulse brings no answer within the boot time, the module
    /// is given the rest of its power-down time and pulsed once more: that switches on a
    /// module the first pulse switched off. (With V_INT the driver knows the module is off
    /// before it pulses, and resets a module that is on but deaf instead.)
    fn pulse_on_and_boot(&mut self, p: &Profile) -> Result<bool, PowerError> {
        self.pwr_pulse_us(p.pwr_on_pulse_us)?;
        let pulse_end = self.now_ns();
        if self.wait_vint(true, 1_000)? == Some(false) {
            return Ok(false);
        }
        if self.wait_boot(p.boot_ms)? {
            return Ok(true);
        }
        if self.vint.is_some() || p.pwr_on_pulse_us < 1_000_000 {
            return Ok(false);
        }
        let since_ms = crate::div::div_u64(self.now_ns() - pulse_end, 1_000_000);
        let rest = u64::from(p.power_down_ms).saturating_sub(since_ms);
        self.sleep_ms(u32::try_from(rest).unwrap_or(u32::MAX));
        self.discard_input()?;
        self.pwr_pulse_us(p.pwr_on_pulse_us)?;
        Ok(self.wait_boot(p.boot_ms)?)
    }

    /// The initialisation sequence, on a modem that answers `AT` (run by
    /// [`init`](Self::init)).
    pub(crate) fn init_sequence(&mut self) -> Result<(), PowerError> {
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
                // A boot URC the engine does not know (`+PACSP1`, `+CPIN: READY`) may come
                // first; versions never start with '+'.
                if fw_len != 0 || l.starts_with(b"+") {
                    return false;
                }
                let n = l.len().min(fw.len());
                fw[..n].copy_from_slice(&l[..n]);
                fw_len = n as u8;
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
        #[cfg(feature = "hex-mode")]
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
    /// rate other than [`ModemConfig::baud`](crate::ModemConfig::baud), `AT+IPR=<ModemConfig::baud>` is sent,
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
                self.send_cmd(c.finish()?)?;
                let t = self.timeouts().short;
                self.wait_uncounted(t)?;
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
    /// model's power-down time (U2/G3 15 s, R4 35 s, R5 20 s). Without V_INT the modem counts
    /// as off once two `AT`s in a row go unanswered, probed (1 s after `AT+CPWROFF`, then
    /// every second) for up to that power-down time: a module still shutting down may answer
    /// one. Fallbacks if it is still on:
    ///
    /// 1. a PWR_ON off pulse (1.5 s U2, 1.6 s R4/R5). Never on the G350 (a pulse switches it
    ///    on), and not without V_INT after `AT+CPWROFF` answered `OK`: the module may only be
    ///    slow to shut down, and the R410's off pulse is inside its switch-on range;
    /// 2. RESET_N: the R410 switches off; the others reboot and get one more `AT+CPWROFF`;
    /// 3. R5 with RESET_N: the emergency hardware shutdown (PWR_ON low, 500 ms later RESET_N
    ///    low, PWR_ON released after 23 s, RESET_N 2 s later) for an R510 that ignores
    ///    PWR_ON and RESET_N alone (device-os PR #2365).
    ///
    /// Without V_INT, a driver that has not switched the modem on itself (a fresh MCU run)
    /// first asks with `AT`: a modem silent for two of them counts as off already, and gets
    /// neither `AT+CPWROFF` nor a pulse (a pulse would switch an off R410 on). A modem that is
    /// on but deaf is then left on: only V_INT tells the two apart.
    ///
    /// Cost: a modem that switches off at once costs the `AT+CPWROFF` exchange (the modem
    /// answers within 40 s) and the V_INT wait, or without V_INT ~3 s of probes. Worst case,
    /// every fallback run to the end: `AT+CPWROFF` unanswered 3 × 40 s = 2 min, then each
    /// fallback's power-down time and the reboot in between: about 3.5 min on U2, G3 and R4,
    /// 4.5 min on R5 with the emergency shutdown.
    ///
    /// # Errors
    /// [`PowerError::StillOn`] when every method failed; [`PowerError::Pin`].
    pub fn power_off(&mut self) -> Result<(), PowerError> {
        match self.vint_high()? {
            Some(false) => {
                self.mark_off();
                return Ok(());
            }
            // No V_INT, and this driver did not switch the modem on (a fresh MCU run): it may
            // be off already. Then `AT+CPWROFF` would wait out its timeout three times and the
            // off pulse could switch it on (the R410's is inside its switch-on range), so
            // ask first: silent for OFF_PROBES `AT`s means off.
            None if !self.st.powered => {
                self.discard_input()?;
                if !self.probe(OFF_PROBES)? {
                    self.mark_off();
                    return Ok(());
                }
            }
            _ => {}
        }
        self.set_link(Link::PoweringOff);
        let r = self.power_off_inner();
        if r.is_ok() {
            info!("modem off");
            self.mark_off();
        } else {
            // Still on, in an unknown state: the next command probes first.
            warn!("power-off failed: {:?}", r);
            self.set_link(Link::OutOfStep { timeouts: 0 });
        }
        r
    }

    fn mark_off(&mut self) {
        self.st.powered = false;
        self.st.invalidate();
        self.set_link(Link::InStep);
    }

    fn cpwroff(&mut self, tries: u32) -> Result<bool, PowerError> {
        let t = self.timeouts().power_off;
        for _ in 0..tries {
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

    /// Is the modem off within its power-down time? V_INT low, or without V_INT, `AT`
    /// unanswered [`OFF_PROBES`] times in a row (one lost character must not pass for "off").
    fn verify_off(&mut self) -> Result<bool, PowerError> {
        let ms = self.st.profile.power_down_ms;
        match self.wait_vint(false, ms)? {
            Some(off) => Ok(off),
            None => {
                let deadline = self.deadline(ms);
                let mut silent = 0;
                self.sleep_ms(1_000);
                loop {
                    self.discard_input()?;
                    if self.probe(1)? {
                        // Still answering (a module shutting down may): ask again later.
                        silent = 0;
                        self.sleep_ms(1_000);
                    } else {
                        silent += 1;
                        if silent >= OFF_PROBES {
                            return Ok(true);
                        }
                    }
                    if self.now_ns() >= deadline {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn power_off_inner(&mut self) -> Result<(), PowerError> {
        let accepted = self.cpwroff(3)?;
        if accepted && self.verify_off()? {
            return Ok(());
        }
        let p = self.st.profile;
        // Without V_INT, a module that accepted AT+CPWROFF and still answered may just be slow
        // to shut down: an off pulse could then switch it on again (the R410's 1.6 s off
        // pulse is inside its 0.15-3.2 s switch-on range). Only RESET_N is used then.
        let pulse_safe = !accepted || self.vint.is_some();
        if let (Some(ms), true) = (p.pwr_off_pulse_ms, pulse_safe) {
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
            if p.emergency_shutdown {
                self.emergency_shutdown()?;
                if self.verify_off()? {
                    return Ok(());
                }
            }
        }
        Err(PowerError::StillOn)
    }

    /// The SARA-R510 emergency hardware shutdown for a module that ignores `AT+CPWROFF`,
    /// PWR_ON and RESET_N (device-os `sara_ncp_client.cpp`, PR #2365): PWR_ON low, 500 ms,
    /// RESET_N low, PWR_ON released 23 s later, RESET_N 2 s after that. Only called with a
    /// RESET_N pin.
    fn emergency_shutdown(&mut self) -> Result<(), PowerError> {
        self.pwr.set_low().map_err(Self::pin_err)?;
        self.sleep_ms(500);
        if let Some(r) = self.reset.as_mut() {
            r.set_low().map_err(Self::pin_err)?;
        }
        self.sleep_ms(23_000);
        self.pwr.set_high().map_err(Self::pin_err)?;
        self.sleep_ms(2_000);
        if let Some(r) = self.reset.as_mut() {
            r.set_high().map_err(Self::pin_err)?;
        }
        Ok(())
    }

    /// Reset (RESET_N, or a PWR_ON power cycle, or a soft reset as last resort), wait for boot
    /// and initialise. Used when the modem stopped answering.
    pub(crate) fn restart(&mut self) -> Result<(), PowerError> {
        let p = self.st.profile;
        let booted = if self.reset_pulse_ms(p.reset_pulse_ms)? {
            if p.reset_powers_off {
                self.sleep_ms(1_000);
                self.pwr_pulse_us(p.pwr_on_pulse_us)?;
            }
            self.discard_input()?;
            self.wait_boot(p.boot_ms)?
        } else if let Some(ms) = p.pwr_off_pulse_ms {
            self.pwr_pulse_us(ms.saturating_mul(1_000))?;
            if self.wait_vint(false, p.power_down_ms)?.is_some() {
                self.sleep_ms(1_000);
            } else {
                // Without V_INT: the module ignores PWR_ON while it shuts down (up to 35 s on
                // R4, 20 s on R5), so it gets its whole power-down time before the on pulse.
                self.sleep_ms(p.power_down_ms);
            }
            self.discard_input()?;
            self.pulse_on_and_boot(&p)?
        } else {
            // G350 without RESET_N: a PWR_ON pulse switches it on if it went off; if it is on
            // and deaf there is nothing else the pins can do.
            self.pwr_pulse_us(p.pwr_on_pulse_us)?;
            self.discard_input()?;
            self.wait_boot(p.boot_ms)?
        };
        if !booted {
            warn!("the modem did not come back from its restart");
            self.st.powered = false;
            return Err(PowerError::NoResponse);
        }
        self.init()
    }

    /// Check that the modem answers; if it does not (or has been timing out), reset it and
    /// initialise it again. Call when operations keep failing with `Timeout`.
    ///
    /// The restart is a RESET_N pulse (R410: RESET_N switches it off, then a PWR_ON pulse);
    /// without RESET_N a PWR_ON power cycle whose switch-on pulse waits for the model's whole
    /// power-down time when there is no V_INT (a module shutting down ignores PWR_ON); on a
    /// G350 without RESET_N only a switch-on pulse.
    ///
    /// Cost: 3 `AT` probes (up to 3 s) when the modem answers. A restart adds the reset or
    /// power cycle, the boot time and the initialisation: see the
    /// [recovery cost](Modem#recovery-cost) (worst case about 1.5 min, R5 without RESET_N and
    /// V_INT).
    ///
    /// # Errors
    /// [`PowerError::NoResponse`] if even a reset did not bring it back.
    pub fn recover(&mut self) -> Result<Recovery, PowerError> {
        self.discard_input()?;
        if self.probe(3)? {
            match self.eng.link {
                Link::OutOfStep { .. } => self.set_link(Link::InStep),
                Link::Rebooted => {
                    // The probe's echo says the modem rebooted: initialise it now.
                    let _ = self.check_reboot();
                    return Ok(Recovery::Restarted);
                }
                _ => {}
            }
            return Ok(Recovery::Alive);
        }
        self.recover_hard()?;
        Ok(Recovery::Restarted)
    }

    /// Soft reset: `AT+CFUN=16` (`AT+CFUN=15` on R4), then wait for the reboot and initialise
    /// again. Needed after PSM settings on R4. Sockets and the data context are gone.
    ///
    /// Cost: `AT+CFUN=16`/`15` (up to 180 s), 1 s, the boot time (R4 up to 15 s, others 20 s)
    /// and the initialisation; plus the [recovery cost](Modem#recovery-cost) if an earlier
    /// command timed out or a reboot is noticed (up to about 1 min).
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
