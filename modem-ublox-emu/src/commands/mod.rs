//! AT command parsing and dispatch; general (V.250, identification, SIM,
//! UART) commands. Network and data commands are in `network.rs`, sockets in
//! `crate::socket`.

mod network;

use crate::config::UnknownCommandReply;
use crate::core::{us, Core, Final, Mods, Out, Reply, Then};
use crate::model::Family;

/// One argument of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(i64),
    Str(String),
    Empty,
}

impl Arg {
    pub fn int(&self) -> Option<i64> {
        match self {
            Arg::Int(v) => Some(*v),
            _ => None,
        }
    }
    pub fn str(&self) -> Option<&str> {
        match self {
            Arg::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `AT+X`
    Exec,
    /// `AT+X?`
    Read,
    /// `AT+X=?`
    Test,
    /// `AT+X=a,b`
    Set,
}

#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    /// Upper-case name: `+CREG`, `&K`, `E`, `I`.
    pub name: String,
    pub kind: Kind,
    pub args: Vec<Arg>,
}

impl Cmd {
    pub fn int(&self, i: usize) -> Option<i64> {
        self.args.get(i).and_then(Arg::int)
    }
    pub fn str(&self, i: usize) -> Option<&str> {
        self.args.get(i).and_then(Arg::str)
    }
}

/// Splits `a,"b,c",,3` into arguments. `None` on an unterminated quote.
fn parse_args(s: &str) -> Option<Vec<Arg>> {
    let mut args = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        // one argument
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'"' {
            let start = i + 1;
            let end = start + s[start..].find('"')?;
            args.push(Arg::Str(s[start..end].to_string()));
            i = end + 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            let tok = s[start..i].trim();
            if tok.is_empty() {
                args.push(Arg::Empty);
            } else if let Ok(v) = tok.parse::<i64>() {
                args.push(Arg::Int(v));
            } else {
                args.push(Arg::Str(tok.to_string()));
            }
        }
        if i >= bytes.len() {
            return Some(args);
        }
        if bytes[i] != b',' {
            return None;
        }
        i += 1;
    }
}

/// Parses the text after `AT`. `None` when it is not a single command of a
/// known shape (that is answered `ERROR`).
pub(crate) fn parse(text: &str) -> Option<Cmd> {
    let body = text.get(2..)?;
    let first = body.chars().next();
    let (name, rest) = match first {
        None => {
            return Some(Cmd {
                name: String::new(),
                kind: Kind::Exec,
                args: Vec::new(),
            })
        }
        Some('+') => {
            let end = body[1..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .map_or(body.len(), |e| e + 1);
            (body[..end].to_ascii_uppercase(), &body[end..])
        }
        Some('&') => {
            let c = body.chars().nth(1)?;
            if !c.is_ascii_alphabetic() {
                return None;
            }
            (body[..2].to_ascii_uppercase(), &body[2..])
        }
        Some(c) if c.is_ascii_alphabetic() => (body[..1].to_ascii_uppercase(), &body[1..]),
        Some(_) => return None,
    };
    if name.starts_with('+') {
        if rest.is_empty() {
            return Some(Cmd {
                name,
                kind: Kind::Exec,
                args: Vec::new(),
            });
        }
        if rest == "?" {
            return Some(Cmd {
                name,
                kind: Kind::Read,
                args: Vec::new(),
            });
        }
        if rest == "=?" {
            return Some(Cmd {
                name,
                kind: Kind::Test,
                args: Vec::new(),
            });
        }
        let args = rest.strip_prefix('=')?;
        return Some(Cmd {
            name,
            kind: Kind::Set,
            args: parse_args(args)?,
        });
    }
    // Basic command: letter (or &letter) followed by an optional number.
    if rest.is_empty() {
        return Some(Cmd {
            name,
            kind: Kind::Exec,
            args: Vec::new(),
        });
    }
    if rest == "?" {
        return Some(Cmd {
            name,
            kind: Kind::Read,
            args: Vec::new(),
        });
    }
    let v: i64 = rest.parse().ok()?;
    Some(Cmd {
        name,
        kind: Kind::Set,
        args: vec![Arg::Int(v)],
    })
}

/// The name used in [`crate::Stats::per_command`].
pub(crate) fn command_name(text: &str) -> String {
    match parse(text) {
        Some(cmd) if cmd.name.is_empty() => "AT".into(),
        Some(cmd) => cmd.name,
        None => "(unparsed)".into(),
    }
}

/// How long the command takes before its response, and whether a character
/// sent meanwhile aborts it (V.250; research 6.7 lists COPS, CGATT, CGACT, UPSDA).
pub(crate) fn latency(core: &Core, text: &str) -> (u64, bool) {
    let t = &core.cfg.timing;
    let Some(cmd) = parse(text) else {
        return (us(t.command), false);
    };
    let set = cmd.kind == Kind::Set;
    match cmd.name.as_str() {
        "+CIMI" | "+CCID" => (us(t.sim_read), false),
        "+CFUN" if set => match cmd.int(0) {
            Some(15 | 16) => (us(t.soft_reset), false),
            _ => (us(t.cfun), false),
        },
        "+COPS" if set => (us(t.cops), true),
        "+CGATT" if set => (network::cgatt_latency(core, &cmd), true),
        "+UPSDA" if set && cmd.int(1) == Some(3) => (us(t.pdp_activate), true),
        "+CGACT" if set => (us(t.pdp_activate), true),
        "+USOCO" if set => (crate::socket::connect_latency(core, &cmd), false),
        "+USOCL" if set => (crate::socket::close_latency(core, &cmd), false),
        "+CPWROFF" => (us(t.cpwroff), false),
        _ => (us(t.command), false),
    }
}

/// Executes a complete command line at its completion time.
pub(crate) fn exec(core: &mut Core, text: &str, mods: &Mods) -> Reply {
    let Some(cmd) = parse(text) else {
        return unknown(core);
    };
    if let Some(reply) = general(core, &cmd) {
        return reply;
    }
    if let Some(reply) = network::exec(core, &cmd) {
        return reply;
    }
    if let Some(reply) = crate::socket::exec(core, &cmd, mods) {
        return reply;
    }
    unknown(core)
}

pub(crate) fn unknown(core: &Core) -> Reply {
    match core.cfg.unknown_command {
        UnknownCommandReply::PlainError => Reply::error(),
        UnknownCommandReply::Cme(code) => Reply::cme(code),
    }
}

/// A parameter the command does not accept: `+CME ERROR: 4` (inferred).
pub(crate) fn bad_param() -> Reply {
    Reply::cme(4)
}

fn general(core: &mut Core, cmd: &Cmd) -> Option<Reply> {
    use Kind::*;
    let r = match (cmd.name.as_str(), cmd.kind) {
        ("", Exec) => Reply::ok(),
        ("E", Exec | Set) => match cmd.int(0).unwrap_or(0) {
            0 => {
                core.set.echo = false;
                Reply::ok()
            }
            1 => {
                core.set.echo = true;
                Reply::ok()
            }
            _ => bad_param(),
        },
        ("V", Exec | Set) => match cmd.int(0).unwrap_or(0) {
            1 => Reply::ok(),
            // Numeric result codes are not emulated.
            _ => bad_param(),
        },
        ("Q", Exec | Set) | ("X", Exec | Set) | ("Z", Exec | Set) | ("H", Exec | Set) => {
            Reply::ok()
        }
        ("&C" | "&D" | "&W" | "&F", Exec | Set) => Reply::ok(),
        ("&K", Exec | Set) => match cmd.int(0).unwrap_or(0) {
            0 => {
                core.set.flow = 0;
                Reply::ok()
            }
            3 => {
                core.set.flow = 3;
                Reply::ok()
            }
            _ => bad_param(),
        },
        ("I", Exec | Set) => match cmd.int(0).unwrap_or(0) {
            0 => {
                let first = !core.set.ati_done;
                core.set.ati_done = true;
                if first && core.cfg.quirks.ati_ok_first_after_boot {
                    // research 2.3: "ATI answers OK before the type on first power-on".
                    let mut r = Reply::with(Vec::new(), Final::Ok);
                    r.post.push((0, Out::line(core.model.ati())));
                    r
                } else {
                    Reply::info(core.model.ati())
                }
            }
            9 => Reply::info(&core.cfg.firmware.clone()),
            _ => bad_param(),
        },
        ("+CGMI" | "+GMI", Exec) => Reply::info("u-blox"),
        ("+CGMM" | "+GMM", Exec) => Reply::info(core.model.cgmm()),
        ("+CGMR" | "+GMR", Exec) => {
            let fw = core.cfg.firmware.clone();
            let modem = fw.split(',').next().unwrap_or("").to_string();
            Reply::info(&modem)
        }
        ("+CGSN" | "+GSN", Exec) => Reply::info(&core.cfg.imei.clone()),
        ("+CMEE", Set) => match cmd.int(0) {
            Some(v @ 0..=2) => {
                core.set.cmee = v as u8;
                Reply::ok()
            }
            _ => bad_param(),
        },
        ("+CMEE", Read) => Reply::info(&format!("+CMEE: {}", core.set.cmee)),
        ("+CMEE", Test) => Reply::info("+CMEE: (0-2)"),
        ("+IPR", Set) => match cmd.int(0) {
            Some(rate)
                if [
                    0, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600,
                ]
                .contains(&rate) =>
            {
                let mut r = Reply::ok();
                r.then = Some(Then::SwitchBaud(rate as u32));
                r
            }
            _ => bad_param(),
        },
        ("+IPR", Read) => Reply::info(&format!("+IPR: {}", core.ipr)),
        ("+IFC", Set) => match (cmd.int(0), cmd.int(1)) {
            (Some(a @ (0 | 2)), Some(b)) if a == b => {
                core.set.flow = if a == 2 { 3 } else { 0 };
                Reply::ok()
            }
            _ => bad_param(),
        },
        ("+IFC", Read) => {
            if core.model.family() == Family::R4 && crate::net::sim_error(core).is_some() {
                // research 2.2: R410 fails +IFC with SIM failure until the SIM is ready.
                Reply::cme(13)
            } else {
                let v = if core.set.flow == 3 { 2 } else { 0 };
                Reply::info(&format!("+IFC: {v},{v}"))
            }
        }
        ("+UPSV", Set) => {
            if core.model.family() == Family::R4 {
                // research 3.5: R410 does not support +UPSV.
                return Some(unknown(core));
            }
            match cmd.int(0) {
                Some(v @ 0..=3) => {
                    core.set.upsv = v as u8;
                    Reply::ok()
                }
                _ => bad_param(),
            }
        }
        ("+UPSV", Read) if core.model.family() != Family::R4 => {
            if core.set.upsv == 1 {
                Reply::info("+UPSV: 1,2000")
            } else {
                Reply::info(&format!("+UPSV: {}", core.set.upsv))
            }
        }
        ("+CPIN", Read) => match crate::net::sim_error(core) {
            None => Reply::info("+CPIN: READY"),
            Some(11) => Reply::info("+CPIN: SIM PIN"),
            Some(code) => Reply::cme(code),
        },
        ("+CPIN", Set) => match crate::net::sim_error(core) {
            Some(11) => {
                let pin = cmd
                    .str(0)
                    .map(str::to_string)
                    .or_else(|| cmd.int(0).map(|v| v.to_string()));
                if pin.as_deref() == core.cfg.sim.pin.as_deref() {
                    core.net.pin_ok = true;
                    crate::net::start_registration(core);
                    Reply::ok()
                } else {
                    Reply::cme(16)
                }
            }
            None => Reply::cme(3),
            Some(code) => Reply::cme(code),
        },
        ("+CCID", Exec | Read) => match crate::net::sim_error(core) {
            None | Some(11) => Reply::info(&format!("+CCID: {}", core.cfg.sim.iccid)),
            Some(code) => Reply::cme(code),
        },
        ("+CIMI", Exec) => match crate::net::sim_error(core) {
            None => Reply::info(&core.cfg.sim.imsi.clone()),
            Some(code) => Reply::cme(code),
        },
        ("+CSQ", Exec) => {
            let rssi = if core.net.cs.is_registered() || core.net.ps.is_registered() {
                core.cfg.network.rssi
            } else {
                99
            };
            Reply::info(&format!("+CSQ: {rssi},99"))
        }
        ("+CEER", Exec) => Reply::info("+CEER: \"No report available\""),
        ("+CMGF" | "+CNMI" | "+CMER" | "+CGEREP", Set) => Reply::ok(),
        ("+CPWROFF", Exec) => {
            let mut r = Reply::ok();
            r.then = Some(Then::PowerOff);
            r
        }
        _ => return None,
    };
    Some(r)
}
