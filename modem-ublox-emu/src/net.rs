//! SIM, registration and data-context state (research 5.B–5.D', 3.1).

use std::collections::BTreeMap;

use crate::config::{EmulatorConfig, RegStat};
use crate::core::{us, Core};
use crate::model::{Family, Model};

/// One `+UPSD` profile (U2/G3/R5).
#[derive(Debug, Clone, Default)]
pub(crate) struct Profile {
    pub apn: String,
    pub user: String,
    pub pass: String,
    pub auth: u8,
    pub ip_req: String,
    pub cid: Option<u8>,
    pub active: bool,
}

#[derive(Debug)]
pub(crate) struct NetState {
    pub cfun: u8,
    pub cops_mode: u8,
    pub cops_format: u8,
    pub cs: RegStat,
    pub ps: RegStat,
    pub reg_gen: u64,
    pub sticky: Option<RegStat>,
    /// When a scheduled successful PS registration lands.
    pub reg_done_at: Option<u64>,
    pub detached: bool,
    pub sim_ready: bool,
    pub sim_busy_until: u64,
    pub pin_ok: bool,
    pub profiles: [Profile; 7],
    /// `+CGDCONT` contexts: cid → (PDP type, APN). Persistent on LTE models.
    pub cgdcont: BTreeMap<u8, (String, String)>,
    /// LTE default bearer (cid 1) active.
    pub cgact: bool,
    pub urat: String,
    pub cpsms: Option<Vec<String>>,
    pub cedrxs: String,
    pub upsmr: bool,
    pub umnoprof: u8,
    /// `+UBANDMASK` per RAT (0 LTE-M, 1 NB-IoT; the R510 has LTE-M only).
    pub ubandmask: [i64; 2],
    pub uauthreq: Option<(u8, String, String)>,
}

impl NetState {
    pub fn new(model: Model, _cfg: &EmulatorConfig) -> NetState {
        let mut cgdcont = BTreeMap::new();
        if model.is_lte() {
            cgdcont.insert(1, ("IP".to_string(), String::new()));
        }
        NetState {
            cfun: 1,
            cops_mode: 0,
            cops_format: 0,
            cs: RegStat::NotSearching,
            ps: RegStat::NotSearching,
            reg_gen: 0,
            sticky: None,
            reg_done_at: None,
            detached: false,
            sim_ready: false,
            sim_busy_until: 0,
            pin_ok: false,
            profiles: Default::default(),
            cgdcont,
            cgact: false,
            // research 5.C': R410 ships with the invalid `7,8`.
            urat: if model.family() == Family::R4 {
                "7,8".into()
            } else {
                "7".into()
            },
            cpsms: None,
            cedrxs: String::new(),
            upsmr: false,
            umnoprof: 0,
            // [inferred] factory masks: bands 1-5, 8, 12, 13, 17-20, 25, 26, 28.
            ubandmask: [185_473_183; 2],
            uauthreq: None,
        }
    }
}

/// Back to power-on state (reboot or power-off). LTE keeps its NVM settings
/// (`+CGDCONT`, `+URAT`, `+CPSMS`, `+UMNOPROF`).
pub(crate) fn reset(core: &mut Core) {
    let n = &mut core.net;
    n.cfun = 1;
    n.cops_mode = 0;
    n.cops_format = 0;
    n.cs = RegStat::NotSearching;
    n.ps = RegStat::NotSearching;
    n.reg_gen += 1;
    n.reg_done_at = None;
    n.detached = false;
    n.sim_ready = false;
    n.sim_busy_until = 0;
    n.pin_ok = false;
    n.profiles = Default::default();
    n.cgact = false;
    n.upsmr = false;
    n.uauthreq = None;
}

pub(crate) fn on_boot(core: &mut Core) {
    if !core.cfg.sim.present || core.cfg.sim.failure {
        core.note("SIM unusable: no registration");
        return;
    }
    let busy = us(core.cfg.sim.busy_after_boot);
    if busy > 0 {
        core.net.sim_busy_until = core.now + busy;
        core.schedule_sim_ready(core.now + busy);
    } else {
        sim_ready(core);
    }
}

pub(crate) fn sim_ready(core: &mut Core) {
    core.net.sim_ready = true;
    if core.cfg.sim.pin.is_none() {
        core.net.pin_ok = true;
        start_registration(core);
    }
}

/// SIM status as an error code, `None` when usable.
pub(crate) fn sim_error(core: &Core) -> Option<u16> {
    if !core.cfg.sim.present {
        Some(10)
    } else if core.cfg.sim.failure {
        Some(13)
    } else if !core.net.sim_ready || core.now < core.net.sim_busy_until {
        Some(14)
    } else if !core.net.pin_ok {
        Some(11)
    } else {
        None
    }
}

fn radio_can_register(core: &Core) -> bool {
    core.net.cfun == 1 && core.net.cops_mode != 2 && sim_error(core).is_none()
}

/// (Re)starts the registration timeline.
pub(crate) fn start_registration(core: &mut Core) {
    core.net.reg_gen += 1;
    core.net.reg_done_at = None;
    if !radio_can_register(core) {
        set_all(core, RegStat::NotSearching);
        return;
    }
    if let Some(stat) = core.net.sticky {
        set_all(core, stat);
        return;
    }
    if core.net.cs.is_registered() && core.net.ps.is_registered() {
        return;
    }
    set_all(core, RegStat::Searching);
    let outcome = core.cfg.network.outcome;
    if outcome == RegStat::Searching {
        return;
    }
    let t = core.now + us(core.cfg.network.registration_delay);
    let ps_t = t + us(core.cfg.network.ps_extra_delay);
    if core.model.is_lte() {
        core.schedule_reg(t, false, outcome);
    } else {
        core.schedule_reg(t, false, outcome);
        core.schedule_reg(ps_t, true, outcome);
    }
    if outcome.is_registered() {
        core.net.reg_done_at = Some(ps_t);
    }
}

/// Radio off/on (`AT+CFUN`, `AT+COPS=2`).
pub(crate) fn radio_changed(core: &mut Core) {
    if radio_can_register(core) {
        start_registration(core);
    } else {
        core.net.reg_gen += 1;
        core.net.reg_done_at = None;
        set_all(core, RegStat::NotSearching);
    }
}

pub(crate) fn reg_event(core: &mut Core, ps: bool, stat: RegStat) {
    if core.model.is_lte() {
        set_all(core, stat);
    } else if ps {
        set_ps(core, stat);
    } else {
        set_cs(core, stat);
    }
}

pub(crate) fn force_registration(core: &mut Core, stat: Option<RegStat>) {
    core.net.sticky = stat;
    match stat {
        Some(s) => {
            core.net.reg_gen += 1;
            core.net.reg_done_at = None;
            if core.power == crate::core::Power::On {
                set_all(core, s);
            }
        }
        None => {
            if core.power == crate::core::Power::On {
                start_registration(core);
            }
        }
    }
}

fn set_all(core: &mut Core, stat: RegStat) {
    set_cs(core, stat);
    set_ps(core, stat);
}

fn set_cs(core: &mut Core, stat: RegStat) {
    if core.net.cs == stat {
        return;
    }
    core.net.cs = stat;
    if !core.model.is_lte() && core.set.creg_n > 0 {
        let text = format!("+CREG: {}", creg_fields(core, core.set.creg_n, stat));
        core.urc(&text);
    }
}

fn set_ps(core: &mut Core, stat: RegStat) {
    let was = core.net.ps;
    if was == stat {
        return;
    }
    core.net.ps = stat;
    if core.model.is_lte() {
        if core.set.cereg_n > 0 {
            let text = format!("+CEREG: {}", cereg_fields(core, core.set.cereg_n, stat));
            core.urc(&text);
        }
        if stat.is_registered() {
            core.net.cgact = lte_apn_ok(core);
        }
    } else if core.set.cgreg_n > 0 {
        let text = format!("+CGREG: {}", cgreg_fields(core, core.set.cgreg_n, stat));
        core.urc(&text);
    }
    if was.is_registered() && !stat.is_registered() {
        pdp_lost(core);
    }
}

/// The network drops the data context (research 6.13).
pub(crate) fn pdp_lost(core: &mut Core) {
    let mut lost = Vec::new();
    for (i, p) in core.net.profiles.iter_mut().enumerate() {
        if p.active {
            p.active = false;
            lost.push(i);
        }
    }
    for i in lost {
        core.urc(&format!("+UUPSDD: {i}"));
    }
    core.net.cgact = false;
    crate::socket::network_lost(core);
}

/// True when data can flow: an active `+UPSD` profile (U2/G3/R5) or the LTE
/// default bearer (R4/R5).
pub(crate) fn data_up(core: &Core) -> bool {
    core.net.profiles.iter().any(|p| p.active) || (core.model.is_lte() && core.net.cgact)
}

pub(crate) fn apn_ok(core: &Core, apn: &str) -> bool {
    core.cfg.pdp.apn.as_deref().is_none_or(|want| want == apn)
}

fn lte_apn_ok(core: &Core) -> bool {
    let apn = core
        .net
        .cgdcont
        .get(&1)
        .map(|(_, apn)| apn.as_str())
        .unwrap_or("");
    apn_ok(core, apn)
}

fn act_suffix(core: &Core) -> Option<u8> {
    if core.model.family() == Family::G3 {
        None
    } else {
        Some(core.cfg.network.tech.act())
    }
}

/// `<stat>[,"lac","ci"[,AcT]]` for a `+CREG` URC (n = 1 or 2).
pub(crate) fn creg_fields(core: &Core, n: u8, stat: RegStat) -> String {
    let mut s = stat.code().to_string();
    if n >= 2 && stat.is_registered() {
        let net = &core.cfg.network;
        s.push_str(&format!(",\"{}\",\"{}\"", net.lac, net.ci));
        if let Some(act) = act_suffix(core) {
            s.push_str(&format!(",{act}"));
        }
    }
    s
}

/// `<stat>[,"lac","ci"[,AcT,"rac"]]` for a `+CGREG` URC.
pub(crate) fn cgreg_fields(core: &Core, n: u8, stat: RegStat) -> String {
    let mut s = stat.code().to_string();
    if n >= 2 && stat.is_registered() {
        let net = &core.cfg.network;
        s.push_str(&format!(",\"{}\",\"{}\"", net.lac, net.ci));
        if let Some(act) = act_suffix(core) {
            s.push_str(&format!(",{act},\"{}\"", net.rac));
        }
    }
    s
}

/// `<stat>[,"tac","ci",AcT]` for a `+CEREG` URC.
pub(crate) fn cereg_fields(core: &Core, n: u8, stat: RegStat) -> String {
    let mut s = stat.code().to_string();
    if n >= 2 && stat.is_registered() {
        let net = &core.cfg.network;
        s.push_str(&format!(
            ",\"{}\",\"{}\",{}",
            net.lac,
            net.ci,
            net.tech.act()
        ));
    }
    s
}
