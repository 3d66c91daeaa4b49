//! Parses a rule's action list (`"id:1,phase:2,t:none,setvar:'tx.a=+1'"`).

use crate::macros::parse_macro;
use crate::model::{
    AllowScope, BodyProcessor, Ctl, Disruptive, EngineMode, MacroString, RunAction, SetVar,
    SetVarOp, VarKind, NO_SLOT,
};
use crate::transform::{self, TransformName};

/// Everything an action list can say; `None` means "not given here".
#[derive(Debug, Default)]
pub struct Actions {
    pub id: Option<u64>,
    pub phase: Option<u8>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub log: Option<bool>,
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    /// `t:` in order; `None` entries are `t:none`.
    pub transforms: Vec<TransformName>,
    pub chain: bool,
    pub capture: bool,
    pub multi_match: bool,
    pub skip: Option<u32>,
    pub skip_after: Option<String>,
    pub run: Vec<RunAction>,
}

/// Splits on commas outside single quotes; returns `(name, value)` pairs with quotes removed.
pub fn split_actions(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == ':' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let name = name.trim().to_string();
        let mut value = None;
        if chars.peek() == Some(&':') {
            chars.next();
            while chars.peek().is_some_and(|c| *c == ' ') {
                chars.next();
            }
            let mut v = String::new();
            if chars.peek() == Some(&'\'') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == '\\' && chars.peek() == Some(&'\'') {
                        v.push('\'');
                        chars.next();
                    } else if c == '\'' {
                        closed = true;
                        break;
                    } else {
                        v.push(c);
                    }
                }
                if !closed {
                    return Err(format!("unterminated quote in action {name}"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
                v = v.trim_end().to_string();
            }
            value = Some(v);
        }
        if name.is_empty() {
            return Err("empty action name".into());
        }
        out.push((name, value));
    }
    Ok(out)
}

fn need<'a>(name: &str, v: &'a Option<String>) -> Result<&'a str, String> {
    v.as_deref()
        .ok_or_else(|| format!("action {name} needs a value"))
}

pub fn parse_actions(s: &str) -> Result<Actions, String> {
    let mut a = Actions::default();
    for (name, value) in split_actions(s)? {
        let v = &value;
        match name.to_ascii_lowercase().as_str() {
            "id" => {
                a.id = Some(
                    need(&name, v)?
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad id {:?}", v))?,
                )
            }
            "phase" => {
                a.phase = Some(match need(&name, v)?.trim().to_ascii_lowercase().as_str() {
                    "1" => 1,
                    "2" | "request" => 2,
                    "3" => 3,
                    "4" | "response" => 4,
                    "5" | "logging" => 5,
                    p => return Err(format!("bad phase {p:?}")),
                })
            }
            "pass" => a.disruptive = Some(Disruptive::Pass),
            "block" => a.disruptive = Some(Disruptive::Block),
            "deny" => a.disruptive = Some(Disruptive::Deny),
            "drop" => a.disruptive = Some(Disruptive::Drop),
            "redirect" => a.disruptive = Some(Disruptive::Redirect),
            "proxy" => a.disruptive = Some(Disruptive::Proxy),
            "allow" => {
                let scope = match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None => AllowScope::All,
                    Some("phase") => AllowScope::Phase,
                    Some("request") => AllowScope::Request,
                    Some(o) => return Err(format!("bad allow scope {o:?}")),
                };
                a.disruptive = Some(Disruptive::Allow(scope));
            }
            "status" => {
                a.status = Some(
                    need(&name, v)?
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad status {v:?}"))?,
                )
            }
            "log" => a.log = Some(true),
            "nolog" => a.log = Some(false),
            "msg" => a.msg = Some(parse_macro(need(&name, v)?)?),
            "logdata" => a.logdata = Some(parse_macro(need(&name, v)?)?),
            "tag" => a.tags.push(need(&name, v)?.to_string()),
            "severity" => a.severity = Some(parse_severity(need(&name, v)?)?),
            "t" => {
                let t = need(&name, v)?;
                a.transforms.push(
                    transform::from_name(t.trim())
                        .ok_or_else(|| format!("unknown transformation {t:?}"))?,
                );
            }
            "chain" => a.chain = true,
            "capture" => a.capture = true,
            "multimatch" => a.multi_match = true,
            "skip" => {
                a.skip = Some(
                    need(&name, v)?
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad skip {v:?}"))?,
                )
            }
            "skipafter" => a.skip_after = Some(need(&name, v)?.trim().to_string()),
            "setvar" => a
                .run
                .push(RunAction::SetVar(parse_setvar(need(&name, v)?)?)),
            "setenv" => {
                let s = need(&name, v)?;
                let (k, val) = s.split_once('=').unwrap_or((s, "1"));
                a.run
                    .push(RunAction::SetEnv(parse_macro(k.trim())?, parse_macro(val)?));
            }
            "ctl" => a.run.push(RunAction::Ctl(parse_ctl(need(&name, v)?)?)),
            // Metadata, audit-log and persistence actions with no effect on detection here.
            "ver"
            | "rev"
            | "maturity"
            | "accuracy"
            | "auditlog"
            | "noauditlog"
            | "sanitisearg"
            | "sanitisematched"
            | "sanitisematchedbytes"
            | "sanitiserequestheader"
            | "sanitiseresponseheader"
            | "xmlns"
            | "initcol"
            | "setsid"
            | "setuid"
            | "setrsc"
            | "expirevar"
            | "deprecatevar"
            | "append"
            | "prepend"
            | "pause" => {}
            "exec" => return Err("action exec is not supported (it would run programs)".into()),
            _ => return Err(format!("unknown action {name:?}")),
        }
    }
    Ok(a)
}

fn parse_severity(s: &str) -> Result<u8, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        if n <= 7 {
            return Ok(n);
        }
    }
    let names = [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ];
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .map(|p| p as u8)
        .ok_or_else(|| format!("bad severity {s:?}"))
}

pub fn parse_setvar(s: &str) -> Result<SetVar, String> {
    let s = s.trim();
    let (delete, s) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (lhs, rhs) = match s.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (s, None),
    };
    let (coll, key) = lhs
        .split_once('.')
        .ok_or_else(|| format!("setvar needs collection.key, got {lhs:?}"))?;
    let collection = VarKind::from_name(coll.trim())
        .ok_or_else(|| format!("unknown collection {coll:?} in setvar"))?;
    if !matches!(
        collection,
        VarKind::Tx
            | VarKind::Ip
            | VarKind::Global
            | VarKind::Session
            | VarKind::User
            | VarKind::Resource
    ) {
        return Err(format!("setvar cannot write {coll}"));
    }
    let key = parse_macro(&key.trim().to_ascii_lowercase())?;
    let (op, value) = if delete {
        (SetVarOp::Delete, String::new())
    } else {
        match rhs {
            None => (SetVarOp::Set, "1".to_string()),
            Some(r) => {
                if let Some(n) = r.strip_prefix('+') {
                    (SetVarOp::Add, n.to_string())
                } else if let Some(n) = r.strip_prefix('-') {
                    (SetVarOp::Sub, n.to_string())
                } else {
                    (SetVarOp::Set, r.to_string())
                }
            }
        }
    };
    Ok(SetVar {
        collection,
        key,
        key_slot: NO_SLOT,
        op,
        value: parse_macro(&value)?,
    })
}

fn on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        o => Err(format!("expected On or Off, got {o:?}")),
    }
}

pub fn parse_id_ranges(s: &str) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u64 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad rule id {part:?}"))?;
        let b: u64 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad rule id {part:?}"))?;
        out.push((a, b));
    }
    if out.is_empty() {
        return Err("no rule id given".into());
    }
    Ok(out)
}

pub fn parse_ctl(s: &str) -> Result<Ctl, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("ctl needs name=value, got {s:?}"))?;
    let v = v.trim();
    let targets = |spec: &str| crate::parse::variables::parse_targets(spec);
    Ok(match k.trim().to_ascii_lowercase().as_str() {
        "ruleremovebyid" => Ctl::RuleRemoveById(parse_id_ranges(v)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(v.to_string()),
        "ruleremovebymsg" => Ctl::RuleRemoveByMsg(v.to_string()),
        "ruleremovetargetbyid" => {
            let (ids, t) = v
                .split_once(';')
                .ok_or("ruleRemoveTargetById needs id;TARGET")?;
            Ctl::RuleRemoveTargetById(parse_id_ranges(ids)?, targets(t)?)
        }
        "ruleremovetargetbytag" => {
            let (tag, t) = v
                .split_once(';')
                .ok_or("ruleRemoveTargetByTag needs tag;TARGET")?;
            Ctl::RuleRemoveTargetByTag(tag.to_string(), targets(t)?)
        }
        "ruleremovetargetbymsg" => {
            let (m, t) = v
                .split_once(';')
                .ok_or("ruleRemoveTargetByMsg needs msg;TARGET")?;
            Ctl::RuleRemoveTargetByMsg(m.to_string(), targets(t)?)
        }
        "ruleengine" => Ctl::RuleEngine(parse_engine_mode(v)?),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(v)?),
        "responsebodyaccess" => Ctl::ResponseBodyAccess(on_off(v)?),
        "requestbodyprocessor" => Ctl::RequestBodyProcessor(parse_body_processor(v)?),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(v)?),
        "auditengine" => Ctl::AuditEngine,
        "auditlogparts" => Ctl::AuditLogParts,
        "requestbodylimit" => {
            Ctl::RequestBodyLimit(v.parse().map_err(|_| format!("bad limit {v:?}"))?)
        }
        "parsexmlintoargs" => Ctl::ParseXmlIntoArgs,
        "hashengine" | "hashenforcement" => Ctl::HashEngine,
        "debugloglevel" => Ctl::Debug,
        o => return Err(format!("unknown ctl {o:?}")),
    })
}

pub fn parse_engine_mode(v: &str) -> Result<EngineMode, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(EngineMode::On),
        "off" => Ok(EngineMode::Off),
        "detectiononly" => Ok(EngineMode::DetectionOnly),
        o => Err(format!("bad engine mode {o:?}")),
    }
}

pub fn parse_body_processor(v: &str) -> Result<BodyProcessor, String> {
    match v.trim().to_ascii_uppercase().as_str() {
        "URLENCODED" => Ok(BodyProcessor::UrlEncoded),
        "MULTIPART" => Ok(BodyProcessor::Multipart),
        "JSON" => Ok(BodyProcessor::Json),
        "XML" => Ok(BodyProcessor::Xml),
        o => Err(format!("unknown body processor {o:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_values() {
        let a =
            split_actions("id:1, msg:'a, b \\'c\\'',setvar:'tx.x=+%{tx.y}',t:none ,pass").unwrap();
        assert_eq!(a[1], ("msg".into(), Some("a, b 'c'".into())));
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn parses_everything_crs_uses() {
        let a = parse_actions("id:942100,phase:2,block,capture,t:none,t:urlDecodeUni,msg:'x',tag:'a',severity:'CRITICAL',ctl:ruleRemoveTargetById=942100;ARGS:foo,setvar:!tx.x,chain").unwrap();
        assert_eq!(a.id, Some(942100));
        assert_eq!(a.severity, Some(2));
        assert!(a.chain && a.capture);
        assert_eq!(a.run.len(), 2);
        assert!(parse_actions("id:1,frobnicate")
            .unwrap_err()
            .contains("frobnicate"));
        assert!(parse_actions("t:nosuch").is_err());
    }
}
