//! Radio, registration and data-context commands (research 5.C, 5.C', 5.D,
//! 5.D', 5.H).

use super::{bad_param, unknown, Cmd, Kind};
use crate::config::{RegStat, UupsdaOrder};
use crate::core::{us, Core, Final, Out, Reply, Then};
use crate::model::Family;
use crate::net;

pub(super) fn cgatt_latency(core: &Core, cmd: &Cmd) -> u64 {
    let t = &core.cfg.timing;
    if cmd.int(0) != Some(1) {
        return us(t.cfun);
    }
    if core.net.ps.is_registered() {
        us(t.attach)
    } else if let Some(at) = core.net.reg_done_at {
        at.saturating_sub(core.now) + us(t.attach)
    } else if core.net.sticky == Some(RegStat::Denied) {
        us(t.attach)
    } else {
        us(t.attach_fail)
    }
}

pub(super) fn exec(core: &mut Core, cmd: &Cmd) -> Option<Reply> {
    use Kind::*;
    let lte = core.model.is_lte();
    let r = match (cmd.name.as_str(), cmd.kind) {
        ("+CFUN", Read) => Reply::info(&format!("+CFUN: {},0", core.net.cfun)),
        ("+CFUN", Test) => Reply::info("+CFUN: (0,1,4,15,16),(0-1)"),
        ("+CFUN", Set) => cfun(core, cmd),
        ("+COPS", Read) => cops_read(core),
        ("+COPS", Test) => Reply::info(&format!(
            "+COPS: (2,\"{}\",\"{}\",\"{}\"),,(0-4),(0-2)",
            core.cfg.network.operator_long,
            core.cfg.network.operator_long,
            core.cfg.network.operator_numeric
        )),
        ("+COPS", Set) => cops_set(core, cmd),
        ("+CREG", _) => reg_cmd(core, cmd, Domain::Cs)?,
        ("+CGREG", _) => reg_cmd(core, cmd, Domain::Ps)?,
        ("+CEREG", _) if lte => reg_cmd(core, cmd, Domain::Eps)?,
        ("+CGATT", Read) => {
            let attached = core.net.ps.is_registered() && !core.net.detached;
            Reply::info(&format!("+CGATT: {}", u8::from(attached)))
        }
        ("+CGATT", Set) => cgatt(core, cmd),
        ("+UPSD", Set) if core.model.has_upsd() => upsd(core, cmd),
        ("+UPSDA", Set) if core.model.has_upsd() => upsda(core, cmd),
        ("+UPSND", Set) if core.model.has_upsd() => upsnd(core, cmd),
        ("+CGDCONT", Set) if lte => cgdcont(core, cmd),
        ("+CGDCONT", Read) if lte => {
            let mut info = Vec::new();
            for (cid, (ty, apn)) in &core.net.cgdcont {
                let addr = if *cid == 1 && core.net.cgact {
                    core.cfg.pdp.ip.to_string()
                } else {
                    "0.0.0.0".into()
                };
                info.push(Out::line(&format!(
                    "+CGDCONT: {cid},\"{ty}\",\"{apn}\",\"{addr}\",0,0,0,2,0,0,0,0,0,0,0"
                )));
            }
            Reply::with(info, Final::Ok)
        }
        ("+CGACT", Read) if lte => {
            let mut info = Vec::new();
            for cid in core.net.cgdcont.keys() {
                let on = *cid == 1 && core.net.cgact;
                info.push(Out::line(&format!("+CGACT: {cid},{}", u8::from(on))));
            }
            Reply::with(info, Final::Ok)
        }
        ("+CGACT", Set) if lte => cgact(core, cmd),
        ("+CGPADDR", Set | Exec) if lte => {
            let cids: Vec<u8> = match cmd.int(0) {
                Some(c) => vec![c as u8],
                None => core.net.cgdcont.keys().copied().collect(),
            };
            let mut info = Vec::new();
            for cid in cids {
                if !core.net.cgdcont.contains_key(&cid) {
                    return Some(Reply::cme(3));
                }
                if cid == 1 && core.net.cgact {
                    info.push(Out::line(&format!(
                        "+CGPADDR: {cid},\"{}\"",
                        core.cfg.pdp.ip
                    )));
                } else {
                    info.push(Out::line(&format!("+CGPADDR: {cid}")));
                }
            }
            Reply::with(info, Final::Ok)
        }
        ("+UAUTHREQ", Set) if lte => {
            let cid = cmd.int(0).unwrap_or(1) as u8;
            let user = cmd.str(2).unwrap_or("").to_string();
            let pass = cmd.str(3).unwrap_or("").to_string();
            core.net.uauthreq = Some((cid, user, pass));
            Reply::ok()
        }
        ("+URAT", Read) if lte => Reply::info(&format!("+URAT: {}", core.net.urat)),
        ("+URAT", Set) if lte => {
            if core.net.cfun == 1 && core.net.cops_mode != 2 {
                // research 2.1: Particle sets +URAT with the radio off (CFUN=4).
                Reply::cme(3)
            } else {
                let parts: Vec<String> = cmd
                    .args
                    .iter()
                    .filter_map(|a| a.int().map(|v| v.to_string()))
                    .collect();
                if parts.is_empty() {
                    bad_param()
                } else {
                    core.net.urat = parts.join(",");
                    Reply::ok()
                }
            }
        }
        ("+CPSMS", Set) if lte => {
            let vals: Vec<String> = cmd
                .args
                .iter()
                .map(|a| match a {
                    super::Arg::Int(v) => v.to_string(),
                    super::Arg::Str(s) => s.clone(),
                    super::Arg::Empty => String::new(),
                })
                .collect();
            match cmd.int(0) {
                Some(0..=2) => {
                    core.net.cpsms = Some(vals);
                    Reply::ok()
                }
                _ => bad_param(),
            }
        }
        ("+CPSMS", Read) if lte => {
            let (mode, tau, at) = psm_requested(core);
            // research 3.1: R4 answers without a space after the colon.
            Reply::info(&format!("+CPSMS:{mode},,,\"{tau}\",\"{at}\""))
        }
        ("+UCPSMS", Read) if core.model.family() == Family::R4 => {
            let (mode, tau, at) = psm_requested(core);
            if mode == 1 && core.net.cs.is_registered() {
                let (tau, at) = core.cfg.network.psm_granted.clone().unwrap_or((tau, at));
                Reply::info(&format!("+UCPSMS: 1,,,\"{tau}\",\"{at}\""))
            } else {
                Reply::info("+UCPSMS: 0")
            }
        }
        ("+CEDRXS", Set) if lte => match cmd.int(0) {
            Some(0..=3) => {
                core.net.cedrxs = if cmd.int(0) == Some(1) || cmd.int(0) == Some(2) {
                    format!(
                        "{},\"{}\"",
                        cmd.int(1).unwrap_or(4),
                        cmd.str(2).unwrap_or("0000")
                    )
                } else {
                    String::new()
                };
                Reply::ok()
            }
            _ => bad_param(),
        },
        ("+CEDRXS", Read) if lte => {
            if core.net.cedrxs.is_empty() {
                if core.model.family() == Family::R4 {
                    Reply::info("+CEDRXS:")
                } else {
                    Reply::info("+CEDRXS: 4,\"0000\"")
                }
            } else {
                Reply::info(&format!("+CEDRXS: {}", core.net.cedrxs))
            }
        }
        ("+UPSMR", Set) if lte => match cmd.int(0) {
            Some(v @ 0..=1) => {
                core.net.upsmr = v == 1;
                Reply::ok()
            }
            _ => bad_param(),
        },
        ("+UPSMR", Read) if lte => Reply::info(&format!("+UPSMR: {}", u8::from(core.net.upsmr))),
        // DNS through the modem (`AT+UDNSRN=0,"<name>"` → `+UDNSRN: "<ip>"`). The peers of the
        // emulator are on loopback: it knows "localhost" only; another name, or no data
        // context, fails with a plain ERROR [inferred: the manual gives no error code].
        ("+UDNSRN", Set) => match (cmd.int(0), cmd.str(1)) {
            (Some(0), Some(name))
                if net::data_up(core) && name.eq_ignore_ascii_case("localhost") =>
            {
                Reply::info("+UDNSRN: \"127.0.0.1\"")
            }
            (Some(0), Some(_)) => Reply::error(),
            _ => bad_param(),
        },
        ("+CESQ", Exec) if lte => {
            // LTE only: RSRQ and RSRP while registered (RSRP about 20 dB under the RSSI of
            // `+CSQ`, RSRQ -10 dB) [inferred], "not known" otherwise.
            let (rsrq, rsrp) = if core.net.cs.is_registered() || core.net.ps.is_registered() {
                (20, (2 * u32::from(core.cfg.network.rssi) + 8).min(97))
            } else {
                (255, 255)
            };
            Reply::info(&format!("+CESQ: 99,99,255,255,{rsrq},{rsrp}"))
        }
        ("+CCLK", Read) => Reply::info(&format!("+CCLK: \"{}\"", cclk(core))),
        ("+UBANDMASK", Read) if lte => {
            let [m, nb] = core.net.ubandmask;
            if core.model.family() == Family::R4 {
                Reply::info(&format!("+UBANDMASK: 0,{m},1,{nb}"))
            } else {
                Reply::info(&format!("+UBANDMASK: 0,{m}"))
            }
        }
        ("+UBANDMASK", Set) if lte => match (cmd.int(0), cmd.int(1)) {
            (Some(0), Some(m)) if m > 0 => {
                core.net.ubandmask[0] = m;
                Reply::ok()
            }
            (Some(1), Some(m)) if m > 0 && core.model.family() == Family::R4 => {
                core.net.ubandmask[1] = m;
                Reply::ok()
            }
            _ => bad_param(),
        },
        ("+UMNOPROF", Read) if lte => Reply::info(&format!("+UMNOPROF: {}", core.net.umnoprof)),
        ("+UMNOPROF", Set) if lte => match cmd.int(0) {
            Some(v @ 0..=100) => {
                if core.net.cfun != 0 && core.net.cfun != 4 {
                    Reply::cme(3)
                } else {
                    core.net.umnoprof = v as u8;
                    Reply::ok()
                }
            }
            _ => bad_param(),
        },
        _ => return None,
    };
    Some(r)
}

fn psm_requested(core: &Core) -> (i64, String, String) {
    match &core.net.cpsms {
        Some(v) => (
            v.first().and_then(|s| s.parse().ok()).unwrap_or(0),
            v.get(3).cloned().unwrap_or_default(),
            v.get(4).cloned().unwrap_or_default(),
        ),
        None => (0, String::new(), String::new()),
    }
}

fn cfun(core: &mut Core, cmd: &Cmd) -> Reply {
    let rst = cmd.int(1).unwrap_or(0);
    if !(0..=1).contains(&rst) {
        return bad_param();
    }
    match cmd.int(0) {
        Some(15 | 16) => {
            let mut r = Reply::ok();
            r.then = Some(Then::Reboot);
            r
        }
        Some(f @ (0 | 1 | 4)) => {
            core.net.cfun = f as u8;
            net::radio_changed(core);
            let mut r = Reply::ok();
            if rst == 1 {
                r.then = Some(Then::Reboot);
            }
            r
        }
        _ => bad_param(),
    }
}

fn cops_read(core: &Core) -> Reply {
    let n = &core.net;
    if n.cops_mode == 2 || !n.cs.is_registered() {
        return Reply::info(&format!("+COPS: {}", n.cops_mode));
    }
    let oper = if n.cops_format == 2 {
        core.cfg.network.operator_numeric.clone()
    } else {
        core.cfg.network.operator_long.clone()
    };
    let mut line = format!("+COPS: {},{},\"{oper}\"", n.cops_mode, n.cops_format);
    if core.model.family() != Family::G3 {
        line.push_str(&format!(",{}", core.cfg.network.tech.act()));
    }
    Reply::info(&line)
}

fn cops_set(core: &mut Core, cmd: &Cmd) -> Reply {
    let format = cmd.int(1);
    if let Some(f) = format {
        if ![0, 1, 2].contains(&f) {
            return bad_param();
        }
    }
    match cmd.int(0) {
        Some(m @ (0 | 1)) => {
            if let Some(f) = format {
                core.net.cops_format = f as u8;
            }
            core.net.cops_mode = m as u8;
            net::radio_changed(core);
            Reply::ok()
        }
        Some(2) => {
            core.net.cops_mode = 2;
            net::radio_changed(core);
            Reply::ok()
        }
        Some(3) => match format {
            Some(f) => {
                core.net.cops_format = f as u8;
                Reply::ok()
            }
            None => bad_param(),
        },
        _ => bad_param(),
    }
}

#[derive(Clone, Copy)]
enum Domain {
    Cs,
    Ps,
    Eps,
}

fn reg_cmd(core: &mut Core, cmd: &Cmd, d: Domain) -> Option<Reply> {
    let max = match d {
        Domain::Eps => 5,
        _ => 2,
    };
    Some(match cmd.kind {
        Kind::Set => match cmd.int(0) {
            Some(v) if (0..=max).contains(&v) => {
                let v = v.min(2) as u8;
                match d {
                    Domain::Cs => core.set.creg_n = v,
                    Domain::Ps => core.set.cgreg_n = v,
                    Domain::Eps => core.set.cereg_n = v,
                }
                Reply::ok()
            }
            _ => bad_param(),
        },
        Kind::Read => {
            let (name, n, stat, fields) = match d {
                Domain::Cs => {
                    let n = core.set.creg_n;
                    let stat = core.net.cs;
                    ("+CREG", n, stat, net::creg_fields(core, n, stat))
                }
                Domain::Ps => {
                    let n = core.set.cgreg_n;
                    let stat = core.net.ps;
                    ("+CGREG", n, stat, net::cgreg_fields(core, n, stat))
                }
                Domain::Eps => {
                    let n = core.set.cereg_n;
                    let stat = core.net.ps;
                    ("+CEREG", n, stat, net::cereg_fields(core, n, stat))
                }
            };
            let _ = stat;
            Reply::info(&format!("{name}: {n},{fields}"))
        }
        Kind::Test => Reply::info(&format!(
            "{}: (0-{max})",
            match d {
                Domain::Cs => "+CREG",
                Domain::Ps => "+CGREG",
                Domain::Eps => "+CEREG",
            }
        )),
        Kind::Exec => return Some(unknown(core)),
    })
}

fn cgatt(core: &mut Core, cmd: &Cmd) -> Reply {
    match cmd.int(0) {
        Some(1) => {
            if core.net.ps.is_registered() {
                core.net.detached = false;
                Reply::ok()
            } else if core.net.ps == RegStat::Denied {
                Reply::cme(107)
            } else {
                Reply::cme(30)
            }
        }
        Some(0) => {
            core.net.detached = true;
            net::pdp_lost(core);
            Reply::ok()
        }
        _ => bad_param(),
    }
}

fn upsd(core: &mut Core, cmd: &Cmd) -> Reply {
    let Some(p) = cmd.int(0).filter(|p| (0..=6).contains(p)) else {
        return bad_param();
    };
    let p = p as usize;
    let Some(tag) = cmd.int(1) else {
        if cmd.args.len() == 1 {
            let prof = &core.net.profiles[p];
            let lines = [
                format!("+UPSD: {p},0,0"),
                format!("+UPSD: {p},1,\"{}\"", prof.apn),
                format!("+UPSD: {p},2,\"{}\"", prof.user),
                format!("+UPSD: {p},4,\"0.0.0.0\""),
                format!("+UPSD: {p},5,\"0.0.0.0\""),
                format!("+UPSD: {p},6,{}", prof.auth),
                format!(
                    "+UPSD: {p},7,\"{}\"",
                    if prof.ip_req.is_empty() {
                        "0.0.0.0"
                    } else {
                        &prof.ip_req
                    }
                ),
            ];
            return Reply::with(lines.iter().map(|l| Out::line(l)).collect(), Final::Ok);
        }
        return bad_param();
    };
    if cmd.args.len() == 2 {
        let prof = &core.net.profiles[p];
        let val = match tag {
            0 => "0".to_string(),
            1 => format!("\"{}\"", prof.apn),
            2 => format!("\"{}\"", prof.user),
            6 => prof.auth.to_string(),
            7 => format!(
                "\"{}\"",
                if prof.ip_req.is_empty() {
                    "0.0.0.0"
                } else {
                    &prof.ip_req
                }
            ),
            100 if core.model.family() == Family::R5 => prof.cid.unwrap_or(0).to_string(),
            _ => return bad_param(),
        };
        return Reply::info(&format!("+UPSD: {p},{tag},{val}"));
    }
    let prof = &mut core.net.profiles[p];
    let sval = cmd.str(2).map(str::to_string);
    let ival = cmd.int(2);
    match (tag, sval, ival) {
        (0, _, Some(0..=2)) => {}
        (1, Some(s), _) if s.len() <= 99 => prof.apn = s,
        (2, Some(s), _) => prof.user = s,
        (3, Some(s), _) => prof.pass = s,
        (4 | 5, Some(_), _) => {}
        (6, _, Some(a @ 0..=3)) => prof.auth = a as u8,
        (7, Some(s), _) => prof.ip_req = s,
        (8..=99, _, _) => {}
        (100, _, Some(c @ 0..=8)) if core.model.family() == Family::R5 => prof.cid = Some(c as u8),
        _ => return bad_param(),
    }
    Reply::ok()
}

fn upsda(core: &mut Core, cmd: &Cmd) -> Reply {
    let Some(p) = cmd.int(0).filter(|p| (0..=6).contains(p)) else {
        return bad_param();
    };
    let p = p as usize;
    match cmd.int(1) {
        Some(0) => {
            core.net.profiles[p] = Default::default();
            Reply::ok()
        }
        Some(1 | 2) => Reply::ok(),
        Some(3) => activate(core, p),
        Some(4) => {
            if core.net.profiles[p].active {
                core.net.profiles[p].active = false;
                crate::socket::network_lost(core);
            }
            Reply::ok()
        }
        _ => bad_param(),
    }
}

/// `AT+UPSDA=p,3`. Errors (inferred from research 5.D): not registered → 148,
/// APN refused → 133, credentials/auth refused → 149, already active → 3.
fn activate(core: &mut Core, p: usize) -> Reply {
    if core.net.profiles[p].active {
        return Reply::cme(3);
    }
    if !core.net.ps.is_registered() {
        return Reply::cme(148);
    }
    let prof = core.net.profiles[p].clone();
    if core.model.family() == Family::R5 {
        let Some(cid) = prof.cid else {
            return Reply::cme(3);
        };
        let apn = core
            .net
            .cgdcont
            .get(&cid)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        if !net::apn_ok(core, &apn) {
            return Reply::cme(133);
        }
    } else {
        if !net::apn_ok(core, &prof.apn) {
            return Reply::cme(133);
        }
        if let Some((user, pass)) = &core.cfg.pdp.credentials {
            if *user != prof.user || *pass != prof.pass {
                return Reply::cme(149);
            }
        }
        if let Some(auth) = core.cfg.pdp.auth {
            if prof.auth != auth as u8 && prof.auth != 3 {
                return Reply::cme(149);
            }
        }
    }
    core.net.detached = false;
    core.net.profiles[p].active = true;
    let urc = Out::urc(&format!("+UUPSDA: 0,\"{}\"", core.cfg.pdp.ip));
    let mut r = Reply::ok();
    match core.cfg.pdp.uupsda {
        UupsdaOrder::AfterOk => r.post.push((0, urc)),
        UupsdaOrder::BeforeOk => r.pre_final.push(urc),
        UupsdaOrder::Never => {}
    }
    r
}

fn upsnd(core: &mut Core, cmd: &Cmd) -> Reply {
    let Some(p) = cmd.int(0).filter(|p| (0..=6).contains(p)) else {
        return bad_param();
    };
    let active = core.net.profiles[p as usize].active;
    let zero = "0.0.0.0".to_string();
    match cmd.int(1) {
        Some(0) => {
            let ip = if active {
                core.cfg.pdp.ip.to_string()
            } else {
                zero
            };
            Reply::info(&format!("+UPSND: {p},0,\"{ip}\""))
        }
        Some(d @ (1 | 2)) => {
            let dns = if active {
                core.cfg.pdp.dns[(d - 1) as usize].to_string()
            } else {
                zero
            };
            Reply::info(&format!("+UPSND: {p},{d},\"{dns}\""))
        }
        Some(8) => Reply::info(&format!("+UPSND: {p},8,{}", u8::from(active))),
        _ => bad_param(),
    }
}

fn cgdcont(core: &mut Core, cmd: &Cmd) -> Reply {
    let Some(cid) = cmd.int(0).filter(|c| (1..=8).contains(c)) else {
        return bad_param();
    };
    let cid = cid as u8;
    if cmd.args.len() == 1 {
        core.net.cgdcont.remove(&cid);
        return Reply::ok();
    }
    let Some(ty) = cmd.str(1) else {
        return bad_param();
    };
    if !["IP", "IPV6", "IPV4V6", "NONIP"].contains(&ty) {
        return bad_param();
    }
    let apn = cmd.str(2).unwrap_or("").to_string();
    core.net.cgdcont.insert(cid, (ty.to_string(), apn));
    Reply::ok()
}

fn cgact(core: &mut Core, cmd: &Cmd) -> Reply {
    let cid = cmd.int(1).unwrap_or(1);
    match cmd.int(0) {
        Some(1) => {
            if cid != 1 || !core.net.cgdcont.contains_key(&1) {
                return Reply::cme(3);
            }
            if !core.net.ps.is_registered() {
                return Reply::cme(148);
            }
            let apn = core
                .net
                .cgdcont
                .get(&1)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            if !net::apn_ok(core, &apn) {
                return Reply::cme(133);
            }
            core.net.cgact = true;
            Reply::ok()
        }
        Some(0) => {
            if core.model.family() == Family::R4 {
                // research 2.1: "default context cannot be deactivated" (R410).
                Reply::cme(3)
            } else {
                core.net.cgact = false;
                crate::socket::network_lost(core);
                Reply::ok()
            }
        }
        _ => bad_param(),
    }
}

/// `yy/MM/dd,hh:mm:ss±zz`: the network time of the configuration advanced by the virtual
/// clock, in the configured zone.
fn cclk(core: &Core) -> String {
    let (utc0, tz) = core.cfg.network.time;
    let local = utc0 as i64 + (core.now / 1_000_000) as i64 + i64::from(tz) * 900;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let sign = if tz < 0 { '-' } else { '+' };
    format!(
        "{:02}/{month:02}/{day:02},{:02}:{:02}:{:02}{sign}{:02}",
        year % 100,
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
        tz.unsigned_abs()
    )
}
