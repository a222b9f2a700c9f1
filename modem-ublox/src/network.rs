//! SIM, network registration, the packet data context, and R4/R5 power-saving settings.

use core::net::Ipv4Addr;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::cmd::Cmd;
use crate::command::any_line;
use crate::config::{Apn, Auth, Registration};
use crate::div::div_u64;
use crate::error::{AtError, DataError, RegistrationError, SimError};
use crate::fields::{parse_ipv4, Fields};
use crate::model::Family;
use crate::modem::{Modem, State};
use crate::urc::RegStatus;

/// A string of up to 22 digits (ICCID, IMSI) read from the modem.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digits {
    buf: [u8; 22],
    len: u8,
}

impl Digits {
    fn parse(s: &[u8]) -> Option<Self> {
        if s.is_empty() || s.len() > 22 || !s.iter().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let mut buf = [0u8; 22];
        buf[..s.len()].copy_from_slice(s);
        Some(Self {
            buf,
            len: s.len() as u8,
        })
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl core::fmt::Debug for Digits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Digits {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str())
    }
}

/// PSM timers as assigned by the network (`AT+UCPSMS?`), GPRS timer bit strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct PsmTimers {
    /// PSM on (1) or off (0).
    pub mode: u8,
    /// Periodic TAU (T3412), 8 bits `'0'`/`'1'`.
    pub tau: [u8; 8],
    /// Active time (T3324), 8 bits.
    pub active_time: [u8; 8],
}

pub(crate) fn bits8(s: &[u8]) -> Option<[u8; 8]> {
    if s.len() != 8 || !s.iter().all(|&c| c == b'0' || c == b'1') {
        return None;
    }
    let mut o = [0u8; 8];
    o.copy_from_slice(s);
    Some(o)
}

/// Inside an operation with a budget: the timeout `$t` capped by what is left before
/// `$deadline`, or `return Err($m.$fail(None, $deadline))` (out of time) if nothing is left.
macro_rules! budget_cap {
    ($m:ident, $deadline:expr, $fail:ident, $t:expr) => {
        match $m.capped($t, $deadline) {
            Ok(v) => v,
            Err(()) => return Err($m.$fail(None, $deadline)),
        }
    };
}

/// Inside an operation with a budget: the value of `$e`, or `return` its error mapped by the
/// (out-of-line) `$m.$fail`, which also tells a command that timed out at the budget's end
/// (the budget running out) from one that timed out before it.
macro_rules! budget_run {
    ($m:ident, $deadline:expr, $fail:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err($m.$fail(Some(e), $deadline)),
        }
    };
}

impl<U, D, P, R, V, const L: usize> Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    /// Wait until the SIM is ready (`AT+CPIN?` → `READY`), retrying every second while it is
    /// busy or failing (`+CME ERROR: 14`/`13`, plain `ERROR` while it initialises; R410 after a
    /// `CFUN` change), up to `budget_ms`. Each `AT+CPIN?` waits at most for what is left of the
    /// budget.
    ///
    /// Cost: one `AT+CPIN?` (about 25 bytes each way) per second while the SIM is busy, at most
    /// `budget_ms` in all: the resynchronisation an earlier timeout left is
    /// capped by the budget too, and a restart it would lead to is not started here (the call
    /// fails with `AtError::Timeout` and [`needs_recovery`](Modem::needs_recovery) says
    /// [`Restart`](crate::PendingRecovery::Restart)); a reboot noticed costs the
    /// re-initialisation (see [recovery cost](Modem#recovery-cost)).
    ///
    /// # Errors
    /// [`SimError::NotInserted`], [`SimError::PinRequired`] (the driver does not enter PINs),
    /// [`SimError::Wrong`] (`+CME ERROR: 15`), [`SimError::NotReady`] after the budget,
    /// [`SimError::At`].
    pub fn wait_sim_ready(&mut self, budget_ms: u32) -> Result<(), SimError> {
        let deadline = self.deadline(budget_ms);
        self.within_budget(deadline, |m| m.sim_ready_until(deadline))
    }

    fn sim_ready_until(&mut self, deadline: u64) -> Result<(), SimError> {
        let t = self.timeouts().sim;
        loop {
            let Ok(t) = self.capped(t, deadline) else {
                return Err(SimError::NotReady);
            };
            let r = self.query(b"AT+CPIN?\r\n", t, b"+CPIN:", |rest| Some(rest == b"READY"));
            match r {
                Ok(true) => return Ok(()),
                Ok(false) | Err(AtError::Cme(11 | 12 | 16 | 17 | 18)) => {
                    return Err(SimError::PinRequired)
                }
                Err(AtError::Cme(10)) => return Err(SimError::NotInserted),
                Err(AtError::Cme(15)) => return Err(SimError::Wrong),
                Err(AtError::Cme(13 | 14)) | Err(AtError::Error) => {}
                Err(AtError::Timeout) if self.now_ns() >= deadline => {
                    return Err(SimError::NotReady)
                }
                Err(e) => return Err(SimError::At(e)),
            }
            if self.left_ms(deadline) < 1_000 {
                return Err(SimError::NotReady);
            }
            self.sleep_ms(1_000);
        }
    }

    /// The SIM's ICCID (`AT+CCID`).
    ///
    /// Cost: one exchange (about 40 bytes), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is malformed.
    pub fn iccid(&mut self) -> Result<Digits, AtError> {
        let t = self.timeouts().sim;
        self.query(b"AT+CCID\r\n", t, b"+CCID:", Digits::parse)
    }

    /// The subscriber identity (`AT+CIMI`, up to 10 s).
    ///
    /// Cost: one exchange (about 30 bytes), up to 10 s; plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is malformed.
    pub fn imsi(&mut self) -> Result<Digits, AtError> {
        let t = self.timeouts().sim;
        self.query(b"AT+CIMI\r\n", t, b"", |l| {
            if l.iter().all(u8::is_ascii_digit) {
                Digits::parse(l)
            } else {
                None
            }
        })
    }

    /// `t` capped by what is left until `deadline`; `Err` once nothing is left.
    #[inline(never)]
    fn capped(&self, t: u32, deadline: u64) -> Result<u32, ()> {
        let left = self.left_ms(deadline);
        if left == 0 {
            Err(())
        } else {
            Ok(t.min(left))
        }
    }

    /// The status registration waits on: PS for U2/G3, EPS for R4/R5.
    fn last_status(st: &State) -> RegStatus {
        if st.family.uses_cereg() {
            st.eps
        } else {
            st.ps
        }
    }

    /// The error of a failed step of [`register`](Self::register): `None` or a command timed
    /// out at the budget's end is the budget running out (`Denied` if that was the last
    /// status, else `Timeout` with it).
    #[inline(never)]
    fn reg_fail(&self, e: Option<AtError>, deadline: u64) -> RegistrationError {
        match e {
            Some(AtError::Timeout) if self.now_ns() >= deadline => {}
            None => {}
            Some(e) => return e.into(),
        }
        match Self::last_status(&self.st) {
            RegStatus::Denied => RegistrationError::Denied,
            s => RegistrationError::Timeout(s),
        }
    }

    /// The error of a failed step of [`activate_data`](Self::activate_data): `None` or a
    /// command timed out at the budget's end is [`DataError::Timeout`].
    #[inline(never)]
    fn data_fail(&self, e: Option<AtError>, deadline: u64) -> DataError {
        match e {
            Some(AtError::Timeout) if self.now_ns() >= deadline => DataError::Timeout,
            None => DataError::Timeout,
            Some(e) => e.into(),
        }
    }

    fn registered_now(st: &State, roaming: bool) -> Option<RegStatus> {
        let s = if st.family.uses_cereg() {
            st.eps
        } else {
            st.ps
        };
        match s {
            RegStatus::Home => Some(s),
            RegStatus::Roaming if roaming => Some(s),
            _ => None,
        }
    }

    /// Register on the network within `opts.budget_ms`.
    ///
    /// U2/G3: `AT+CFUN?` (→ `AT+CFUN=1`), `AT+CREG=2`, `AT+CGREG=2`, `AT+COPS?` (→
    /// `AT+COPS=0,2` if deregistered), then `AT+CREG?` + `AT+CGREG?` polls every
    /// `poll_interval_ms`, with `+CREG`/`+CGREG` URCs tracked in between (a URC reporting
    /// registration ends the wait at once). Registered means packet-switched registered
    /// (`+CGREG` 1, or 5 when roaming is allowed): that is what sockets need.
    ///
    /// R4/R5: `AT+CEREG=2`, R4 `AT+URAT?` (→ `AT+CFUN=4`, `AT+URAT=7` for the invalid `7,8`),
    /// `AT+CGDCONT=1,"IP","<apn>"` if [`Registration::eps_apn`] is set, `AT+CFUN?`
    /// (→ `AT+CFUN=1`), `AT+COPS?`, then `AT+CEREG?` polls.
    ///
    /// Interventions (if enabled) run every `intervention_interval_ms` while stuck: denied →
    /// `AT+CFUN=0` + `AT+CFUN=1`; not searching/searching → `AT+COPS=0,2`; CS registered but
    /// not PS → `AT+CGATT=1`. Every command's timeout is capped by the remaining budget.
    ///
    /// Cost: about 70 bytes out and 150 in for the setup, ~40 bytes per poll; at most
    /// `budget_ms` (and 100 ms of draining input that keeps arriving): the resynchronisation an earlier timeout left is
    /// capped by the budget too, and a restart it would lead to is not started here (the call
    /// fails with `AtError::Timeout` and [`needs_recovery`](Modem::needs_recovery) says
    /// [`Restart`](crate::PendingRecovery::Restart)); a reboot noticed costs the
    /// re-initialisation (see [recovery cost](Modem#recovery-cost)).
    ///
    /// # Errors
    /// [`RegistrationError::Timeout`] with the last status, [`RegistrationError::Denied`],
    /// [`RegistrationError::ModemRebooted`] if a brown-out was detected (`+CREG: 0,x` after
    /// `AT+CREG=2`, echo back on): the modem has been re-initialised, call again.
    pub fn register(&mut self, opts: &Registration<'_>) -> Result<RegStatus, RegistrationError> {
        let deadline = self.deadline(opts.budget_ms);
        self.within_budget(deadline, |m| m.register_until(opts, deadline))
    }

    fn register_until(
        &mut self,
        opts: &Registration<'_>,
        deadline: u64,
    ) -> Result<RegStatus, RegistrationError> {
        let t = *self.timeouts();
        // Each command's timeout is capped by what is left of the budget when it is sent; a
        // command that times out at the budget's end is the budget running out.
        macro_rules! cap {
            ($t:expr) => {
                budget_cap!(self, deadline, reg_fail, $t)
            };
        }
        macro_rules! run {
            ($e:expr) => {
                budget_run!(self, deadline, reg_fail, $e)
            };
        }
        let fam = self.st.family;
        if fam.uses_cereg() {
            run!(self.simple(b"AT+CEREG=2\r\n", cap!(t.short)));
            self.st.reg_mode_set = true;
            if fam == Family::R4 && opts.fix_r4_rat {
                let rat = run!(self.query(b"AT+URAT?\r\n", cap!(t.query), b"+URAT:", |r| {
                    let mut f = Fields::new(r);
                    Some((f.int(), f.int()))
                }));
                if rat == (Some(7), Some(8)) {
                    run!(self.simple(b"AT+CFUN=4\r\n", cap!(t.cfun)));
                    run!(self.simple(b"AT+URAT=7\r\n", cap!(t.query)));
                }
            }
            if let Some(apn) = opts.eps_apn {
                let mut c = Cmd::new("AT+CGDCONT=1,\"IP\",");
                c.quoted(apn);
                run!(self.simple(c.finish()?, cap!(t.query)));
            }
        }
        let fun = run!(self.ask_int(b"AT+CFUN?\r\n", cap!(t.query), b"+CFUN:", 0));
        if fun != 1 {
            run!(self.simple(b"AT+CFUN=1\r\n", cap!(t.cfun)));
        }
        if !fam.uses_cereg() {
            run!(self.simple(b"AT+CREG=2\r\n", cap!(t.short)));
            run!(self.simple(b"AT+CGREG=2\r\n", cap!(t.short)));
            self.st.reg_mode_set = true;
        }
        let mode = run!(self.ask_int(b"AT+COPS?\r\n", cap!(t.query), b"+COPS:", 0));
        if mode == 2 {
            run!(self.simple(b"AT+COPS=0,2\r\n", cap!(t.cops)));
        }
        let mut last_action = self.now_ns();
        loop {
            if fam.uses_cereg() {
                run!(self.ask(b"AT+CEREG?\r\n", cap!(t.query), b"+CEREG:", &mut any_line));
            } else {
                run!(self.ask(b"AT+CREG?\r\n", cap!(t.query), b"+CREG:", &mut any_line));
                run!(self.ask(b"AT+CGREG?\r\n", cap!(t.query), b"+CGREG:", &mut any_line));
            }
            if let Some(s) = Self::registered_now(&self.st, opts.allow_roaming) {
                return Ok(s);
            }
            let status = Self::last_status(&self.st);
            if self.now_ns() >= deadline {
                return Err(self.reg_fail(None, deadline));
            }
            let since = div_u64(self.now_ns() - last_action, 1_000_000);
            if since >= u64::from(opts.intervention_interval_ms) {
                last_action = self.now_ns();
                let iv = opts.interventions;
                if status == RegStatus::Denied && iv.radio_cycle_on_denied {
                    run!(self.simple(b"AT+CFUN=0\r\n", cap!(t.cfun)));
                    run!(self.simple(b"AT+CFUN=1\r\n", cap!(t.cfun)));
                } else if !fam.uses_cereg() && self.st.cs.is_registered() && iv.attach {
                    run!(self.simple(b"AT+CGATT=1\r\n", cap!(t.cgatt)));
                } else if matches!(status, RegStatus::NotRegistered | RegStatus::Searching)
                    && iv.reselect
                {
                    run!(self.simple(b"AT+COPS=0,2\r\n", cap!(t.cops)));
                }
            }
            let wait = opts.poll_interval_ms.min(self.left_ms(deadline));
            let roaming = opts.allow_roaming;
            self.pump_until(wait, &|st| Self::registered_now(st, roaming).is_some())?;
            self.check_reboot()?;
            if let Some(s) = Self::registered_now(&self.st, opts.allow_roaming) {
                return Ok(s);
            }
        }
    }

    /// Activate the packet data context within `budget_ms` and return its IPv4 address.
    ///
    /// U2/G3 (u-blox profile 0): `AT+CGATT=1`, `AT+UPSND=0,8` (already active? then only
    /// `AT+UPSND=0,0`), `AT+UPSD=0,1,"<apn>"`, `AT+UPSD=0,2/3,"<user>/<password>"` if given,
    /// `AT+UPSD=0,7,"0.0.0.0"`, `AT+UPSD=0,6,<auth>`, `AT+UPSDA=0,3`. The result may come as
    /// `+UUPSDA` before or after `OK`, or only as that URC: the driver waits for it (polling
    /// `AT+UPSND=0,8` every 5 s in case it is lost), then reads the address with
    /// `AT+UPSND=0,0`.
    ///
    /// R4/R5 (default EPS bearer, cid 1): `AT+CGACT?` (→ `AT+CGACT=1,1`), R5 also
    /// `AT+UPSD=0,100,1` + `AT+UPSDA=0,3`, then `AT+CGPADDR=1`. The APN of R4/R5 is set at
    /// registration ([`Registration::eps_apn`]); `apn` is not sent here.
    ///
    /// Every command's timeout is capped by what is left of the budget when it is sent.
    ///
    /// Cost: U2/G3 up to 9 exchanges (about 200 bytes out, 250 in), R4/R5 2 to 4; at most
    /// `budget_ms`: the resynchronisation an earlier timeout left is
    /// capped by the budget too, and a restart it would lead to is not started here (the call
    /// fails with `AtError::Timeout` and [`needs_recovery`](Modem::needs_recovery) says
    /// [`Restart`](crate::PendingRecovery::Restart)); a reboot noticed costs the
    /// re-initialisation (see [recovery cost](Modem#recovery-cost)).
    ///
    /// # Errors
    /// [`DataError::AuthFailed`] (149), [`DataError::NotSubscribed`] (127/132/133),
    /// [`DataError::Rejected`] (148 or a non-zero `+UUPSDA` result), [`DataError::NotRegistered`],
    /// [`DataError::Timeout`], [`DataError::ModemRebooted`], [`DataError::At`].
    pub fn activate_data(&mut self, apn: &Apn<'_>, budget_ms: u32) -> Result<Ipv4Addr, DataError> {
        let deadline = self.deadline(budget_ms);
        self.within_budget(deadline, |m| m.activate_data_until(apn, deadline))
    }

    fn activate_data_until(&mut self, apn: &Apn<'_>, deadline: u64) -> Result<Ipv4Addr, DataError> {
        // A command that times out at the budget's end is the budget running out.
        macro_rules! cap {
            ($t:expr) => {
                budget_cap!(self, deadline, data_fail, $t)
            };
        }
        macro_rules! run {
            ($e:expr) => {
                budget_run!(self, deadline, data_fail, $e)
            };
        }
        let t = *self.timeouts();
        // Without R4 and R5 in the build, every supported model uses the UPSD profile.
        #[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
        if !self.st.family.uses_upsd_profile() {
            return self.activate_eps(deadline);
        }
        run!(self.simple(b"AT+CGATT=1\r\n", cap!(t.cgatt)));
        let active = run!(self.upsnd_active(cap!(t.query)));
        if !active {
            let mut c = Cmd::new("AT+UPSD=0,1,");
            c.quoted(apn.name);
            run!(self.simple(c.finish()?, cap!(t.query)));
            if let Some(u) = apn.user {
                let mut c = Cmd::new("AT+UPSD=0,2,");
                c.quoted(u);
                run!(self.simple(c.finish()?, cap!(t.query)));
            }
            if let Some(p) = apn.password {
                let mut c = Cmd::new("AT+UPSD=0,3,");
                c.quoted(p);
                run!(self.simple(c.finish()?, cap!(t.query)));
            }
            run!(self.simple(b"AT+UPSD=0,7,\"0.0.0.0\"\r\n", cap!(t.query)));
            let auth: &[u8] = match apn.auth {
                Auth::None => b"AT+UPSD=0,6,0\r\n",
                Auth::Pap => b"AT+UPSD=0,6,1\r\n",
                Auth::Chap => b"AT+UPSD=0,6,2\r\n",
            };
            run!(self.simple(auth, cap!(t.query)));
            self.st.upsda = None;
            run!(self.simple(b"AT+UPSDA=0,3\r\n", cap!(t.pdp)));
            loop {
                let wait = cap!(5_000);
                self.pump_until(wait, &|st| st.upsda.is_some())?;
                self.check_reboot()?;
                if let Some((result, _)) = self.st.upsda {
                    if result != 0 {
                        return Err(DataError::Rejected(result));
                    }
                    break;
                }
                if run!(self.upsnd_active(cap!(t.query))) {
                    break;
                }
            }
        }
        let ip = run!(
            self.query(b"AT+UPSND=0,0\r\n", cap!(t.query), b"+UPSND:", |r| {
                let mut f = Fields::new(r);
                f.next()?;
                f.next()?;
                parse_ipv4(f.quoted()?)
            })
        );
        self.st.pdp_active = true;
        self.st.pdp_ip = Some(ip);
        Ok(ip)
    }

    fn upsnd_active(&mut self, t: u32) -> Result<bool, AtError> {
        Ok(self.ask_int(b"AT+UPSND=0,8\r\n", t, b"+UPSND:", 2)? == 1)
    }

    #[cfg(any(feature = "sara-r4", feature = "sara-r5"))]
    fn activate_eps(&mut self, deadline: u64) -> Result<Ipv4Addr, DataError> {
        let t = *self.timeouts();
        // A command that times out at the budget's end is the budget running out.
        macro_rules! cap {
            ($t:expr) => {
                budget_cap!(self, deadline, data_fail, $t)
            };
        }
        macro_rules! run {
            ($e:expr) => {
                budget_run!(self, deadline, data_fail, $e)
            };
        }
        let mut active = false;
        run!(self.exec(
            b"AT+CGACT?\r\n",
            cap!(t.query),
            &mut crate::engine::OnLine(|l: &[u8]| match crate::fields::strip(l, b"+CGACT:") {
                Some(r) => {
                    let mut f = Fields::new(r);
                    if f.int() == Some(1) && f.int() == Some(1) {
                        active = true;
                    }
                    true
                }
                None => false,
            }),
        ));
        if !active {
            run!(self.simple(b"AT+CGACT=1,1\r\n", cap!(t.pdp)));
        }
        if self.st.family == Family::R5 {
            run!(self.simple(b"AT+UPSD=0,100,1\r\n", cap!(t.query)));
            run!(self.simple(b"AT+UPSDA=0,3\r\n", cap!(t.pdp)));
        }
        let ip = run!(
            self.query(b"AT+CGPADDR=1\r\n", cap!(t.query), b"+CGPADDR:", |r| {
                let mut f = Fields::new(r);
                if crate::fields::parse_u32(f.next()?)? != 1 {
                    return None;
                }
                let a = f.next()?;
                parse_ipv4(crate::fields::unquote(a).unwrap_or(a))
            })
        );
        self.st.pdp_active = true;
        self.st.pdp_ip = Some(ip);
        Ok(ip)
    }

    /// Deactivate the data context: `AT+UPSDA=0,4` (U2/G3/R5). On R4 the default EPS bearer
    /// cannot be deactivated; nothing is sent.
    ///
    /// Cost: one exchange (U2/G3/R5), up to the PDP timeout (180 s U2/G3, 150 s R5); plus the
    /// [recovery cost](Modem#recovery-cost) if an earlier command timed out or a reboot is
    /// noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`DataError::At`].
    pub fn deactivate_data(&mut self) -> Result<(), DataError> {
        if self.st.family != Family::R4 {
            let t = self.timeouts().pdp;
            self.simple(b"AT+UPSDA=0,4\r\n", t)?;
        }
        self.st.pdp_active = false;
        self.st.pdp_ip = None;
        Ok(())
    }

    /// R4/R5: request power saving mode with periodic TAU and active time as GPRS timer bit
    /// strings (`AT+CPSMS=1,,,"<tau>","<active>"`), or disable it (`None`: `AT+CPSMS=0`).
    /// On R4 deregister first (`AT+COPS=2`) and [`soft_reset`](Self::soft_reset) after.
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError::InvalidArgument`] unless both are 8 characters of `0`/`1`.
    pub fn set_psm(&mut self, timers: Option<(&str, &str)>) -> Result<(), AtError> {
        let t = self.timeouts().query;
        match timers {
            None => self.simple(b"AT+CPSMS=0\r\n", t),
            Some((tau, active)) => {
                if bits8(tau.as_bytes()).is_none() || bits8(active.as_bytes()).is_none() {
                    return Err(AtError::InvalidArgument);
                }
                let mut c = Cmd::new("AT+CPSMS=1,,,");
                c.quoted(tau).comma().quoted(active);
                self.simple(c.finish()?, t)
            }
        }
    }

    /// R410M/R412M: the PSM timers the network granted (`AT+UCPSMS?`).
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange; `Unexpected` if the answer is malformed.
    pub fn psm_assigned(&mut self) -> Result<PsmTimers, AtError> {
        let t = self.timeouts().query;
        self.query(b"AT+UCPSMS?\r\n", t, b"+UCPSMS:", |r| {
            let mut f = Fields::new(r);
            let mode = u8::try_from(f.int()?).ok()?;
            f.next()?;
            f.next()?;
            let tau = bits8(f.quoted()?)?;
            let active_time = bits8(f.quoted()?)?;
            Some(PsmTimers {
                mode,
                tau,
                active_time,
            })
        })
    }

    /// R4/R5: report power-saving state changes as `+UUPSMR` URCs (`AT+UPSMR=1`); read them
    /// with [`power_saving_state`](Self::power_saving_state).
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange.
    pub fn enable_psm_urc(&mut self) -> Result<(), AtError> {
        let t = self.timeouts().query;
        self.simple(b"AT+UPSMR=1\r\n", t)
    }

    /// R4/R5: disable eDRX for an access technology (`AT+CEDRXS=3,<act>`; `act` is the
    /// 3GPP TS 27.007 AcT-type as `AT+CEDRXS?` reports it, 4 LTE-M, 5 NB-IoT, see
    /// [`edrx_requested`](Self::edrx_requested)). `AT+CEDRXS=0` does not disable it completely
    /// on R410 (device-os notes).
    ///
    /// Cost: one exchange, up to 10 s; plus the [recovery cost](Modem#recovery-cost) if an
    /// earlier command timed out or a reboot is noticed (up to about 1 min).
    ///
    /// # Errors
    /// [`AtError`] of the exchange.
    pub fn disable_edrx(&mut self, act: u8) -> Result<(), AtError> {
        let t = self.timeouts().query;
        let mut c = Cmd::new("AT+CEDRXS=3,");
        c.num(u32::from(act));
        self.simple(c.finish()?, t)
    }
}
