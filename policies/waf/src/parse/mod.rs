//! SecLang front end: lexing, directive dispatch, includes, rule assembly
//! (chains, default actions) and load-time exclusions.

pub mod actions;
pub mod lexer;
pub mod variables;

use crate::error::{LoadError, LoadErrors};
use crate::model::{Disruptive, Item, Link, Rule, Target};
use crate::operator::{parse_operator, OpKind, Operator};
use crate::ruleset::{BodyLimitAction, Config, RuleSet};
use crate::transform::{Transform, TransformName};
use actions::{parse_actions, parse_body_processor, parse_engine_mode, parse_id_ranges, Actions};
use std::path::{Path, PathBuf};

/// The per-phase defaults from `SecDefaultAction`.
#[derive(Debug, Clone)]
struct Defaults {
    disruptive: Disruptive,
    log: bool,
    transforms: Vec<Transform>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            disruptive: Disruptive::Pass,
            log: true,
            transforms: Vec::new(),
        }
    }
}

/// Builds a rule set from one or more files, collecting every problem.
pub struct Loader {
    pub config: Config,
    phases: [Vec<Item>; 5],
    defaults: [Defaults; 5],
    pending: Option<(Rule, bool)>,
    errors: Vec<LoadError>,
    depth: usize,
    /// Files being loaded (canonical paths): an Include of one of them is a loop.
    including: Vec<PathBuf>,
    chains: Vec<Vec<Transform>>,
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    pub fn new() -> Self {
        Loader {
            config: Config::default(),
            phases: Default::default(),
            defaults: Default::default(),
            pending: None,
            errors: Vec::new(),
            depth: 0,
            including: Vec::new(),
            chains: Vec::new(),
        }
    }

    pub fn load_file(&mut self, path: &Path) {
        let name = path.display().to_string();
        if self.depth > 32 {
            self.errors.push(LoadError::new(
                &name,
                0,
                "Include nested too deeply (loop?)",
            ));
            return;
        }
        // Without this, two files that Include each other by glob load 2^32 times.
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.including.contains(&key) {
            self.errors.push(LoadError::new(
                &name,
                0,
                "Include loop: the file includes itself",
            ));
            return;
        }
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let dir = path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                self.depth += 1;
                self.including.push(key);
                self.load_str(&text, &name, &dir);
                self.including.pop();
                self.depth -= 1;
            }
            Err(e) => self
                .errors
                .push(LoadError::new(&name, 0, format!("cannot read: {e}"))),
        }
    }

    /// Loads SecLang text; `file` names it in errors and `dir` resolves relative paths.
    pub fn load_str(&mut self, text: &str, file: &str, dir: &Path) {
        let directives = match lexer::lex(text) {
            Ok(d) => d,
            Err((line, msg)) => {
                self.errors.push(LoadError::new(file, line, msg));
                return;
            }
        };
        for d in directives {
            if let Err(msg) = self.directive(&d, file, dir) {
                self.errors.push(LoadError::new(file, d.line, msg));
            }
        }
        if let Some((rule, _)) = self.pending.take() {
            self.errors.push(LoadError::new(
                file,
                rule.line,
                format!("rule {} ends with chain but no rule follows", rule.id),
            ));
        }
    }

    pub fn finish(mut self) -> Result<RuleSet, LoadErrors> {
        if let Some((rule, _)) = self.pending.take() {
            self.errors.push(LoadError::new(
                &rule.file,
                rule.line,
                "chain without a following rule",
            ));
        }
        if !self.errors.is_empty() {
            return Err(LoadErrors(self.errors));
        }
        Ok(RuleSet::new(self.config, self.phases))
    }

    fn arg(d: &lexer::RawDirective, i: usize) -> Result<&str, String> {
        d.args
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("{} needs more arguments", d.name))
    }

    fn directive(&mut self, d: &lexer::RawDirective, file: &str, dir: &Path) -> Result<(), String> {
        let name = d.name.to_ascii_lowercase();
        if self.pending.is_some() && name != "secrule" {
            return Err(format!(
                "{} inside a chain: the chained rule must follow directly",
                d.name
            ));
        }
        let a0 = || Self::arg(d, 0);
        let on_off = |s: &str| -> Result<bool, String> {
            match s.to_ascii_lowercase().as_str() {
                "on" => Ok(true),
                "off" => Ok(false),
                o => Err(format!("expected On or Off, got {o:?}")),
            }
        };
        let num = |s: &str| -> Result<usize, String> {
            s.parse()
                .map_err(|_| format!("expected a number, got {s:?}"))
        };
        match name.as_str() {
            "include" => self.include(a0()?, dir)?,
            "secrule" => {
                let vars = Self::arg(d, 0)?;
                let op = Self::arg(d, 1)?;
                let acts = d.args.get(2).map(String::as_str).unwrap_or("");
                if d.args.len() > 3 {
                    return Err("SecRule takes at most 3 arguments".into());
                }
                let targets = variables::parse_targets(vars)?;
                let operator = parse_operator(op, dir)?;
                self.rule(Some(targets), operator, acts, file, d.line)?;
            }
            "secaction" => {
                let op = Operator {
                    kind: OpKind::UnconditionalMatch,
                    negated: false,
                    name: "unconditionalMatch",
                    param: String::new(),
                };
                self.rule(None, op, a0()?, file, d.line)?;
            }
            "secmarker" => {
                let m = a0()?.to_string();
                for p in self.phases.iter_mut() {
                    p.push(Item::Marker(m.clone()));
                }
            }
            "secdefaultaction" => {
                let a = parse_actions(a0()?)?;
                let phase = a.phase.ok_or("SecDefaultAction needs a phase")?;
                if a.id.is_some() || a.chain || a.skip.is_some() || a.skip_after.is_some() {
                    return Err("SecDefaultAction cannot have id, chain, skip or skipAfter".into());
                }
                let mut def = Defaults {
                    disruptive: a.disruptive.unwrap_or(Disruptive::Pass),
                    log: a.log.unwrap_or(true),
                    transforms: Vec::new(),
                };
                apply_transforms(&mut def.transforms, &a.transforms);
                self.defaults[phase as usize - 1] = def;
            }
            "secruleengine" => self.config.engine = parse_engine_mode(a0()?)?,
            "secrequestbodyaccess" => self.config.request_body_access = on_off(a0()?)?,
            "secresponsebodyaccess" => self.config.response_body_access = on_off(a0()?)?,
            "secrequestbodylimit" => self.config.request_body_limit = num(a0()?)?,
            "secrequestbodynofileslimit" => self.config.request_body_no_files_limit = num(a0()?)?,
            "secrequestbodyinmemorylimit" => {
                num(a0()?)?;
            }
            "secresponsebodylimit" => self.config.response_body_limit = num(a0()?)?,
            "secrequestbodylimitaction" => {
                self.config.request_body_limit_action = limit_action(a0()?)?
            }
            "secresponsebodylimitaction" => {
                self.config.response_body_limit_action = limit_action(a0()?)?
            }
            "secresponsebodymimetype" => self.config.response_mime_types.extend(
                d.args
                    .iter()
                    .flat_map(|a| a.split_whitespace())
                    .map(|s| s.to_ascii_lowercase()),
            ),
            "secresponsebodymimetypesclear" => self.config.response_mime_types.clear(),
            "secargumentseparator" => {
                let s = a0()?;
                if s.len() != 1 {
                    return Err("SecArgumentSeparator takes one character".into());
                }
                self.config.argument_separator = s.as_bytes()[0];
            }
            "secargumentslimit" => self.config.arguments_limit = num(a0()?)?,
            "secrequestbodyjsondepthlimit" => self.config.json_depth_limit = num(a0()?)?,
            "seccomponentsignature" => self.config.component_signatures.push(a0()?.to_string()),
            "secrequestbodyprocessor" => {
                parse_body_processor(a0()?)?;
            }
            "seccollectiontimeout"
            | "secpcrematchlimit"
            | "secpcrematchlimitrecursion"
            | "secuploadfilelimit" => {
                num(a0()?)?;
            }
            "seccookieformat" => {
                if !matches!(a0()?, "0" | "1") {
                    return Err("SecCookieFormat takes 0 or 1".into());
                }
            }
            // Logging, storage and identity settings: accepted, no effect on detection.
            "secauditengine"
            | "secauditlog"
            | "secauditlog2"
            | "secauditlogparts"
            | "secauditlogrelevantstatus"
            | "secauditlogtype"
            | "secauditlogformat"
            | "secauditlogstoragedir"
            | "secauditlogdirmode"
            | "secauditlogfilemode"
            | "secdebuglog"
            | "secdebugloglevel"
            | "sectmpdir"
            | "secdatadir"
            | "secuploaddir"
            | "secuploadkeepfiles"
            | "secuploadfilemode"
            | "secwebappid"
            | "secserversignature"
            | "secstatusengine"
            | "secunicodemapfile"
            | "secunicodecodepage"
            | "sectmpsaveuploadedfiles"
            | "secxmlexternalentity"
            | "secsensorid"
            | "secconnengine"
            | "secinterceptonerror"
            | "secstreaminbodyinspection"
            | "secstreamoutbodyinspection"
            | "secruleinheritance"
            | "seccachetransformations"
            | "secchrootdir"
            | "secgeolookupdb"
            | "secgsblookupdb"
            | "sechttpblkey"
            | "sechashengine"
            | "sechashkey"
            | "sechashparam"
            | "sechashmethodrx"
            | "sechashmethodpm" => {
                if d.args.is_empty() {
                    return Err(format!("{} needs an argument", d.name));
                }
            }
            "secruleremovebyid" => {
                let ranges = parse_id_ranges(&d.args.join(" "))?;
                self.remove(|r| ranges.iter().any(|(a, b)| (*a..=*b).contains(&r.id)));
            }
            "secruleremovebytag" => {
                let tag = a0()?;
                let re = regex::Regex::new(tag).map_err(|e| format!("bad tag pattern: {e}"))?;
                self.remove(|r| r.tags.iter().any(|t| re.is_match(t)));
            }
            "secruleremovebymsg" => {
                let m = a0()?;
                self.remove(|r| r.msg.as_ref().and_then(|x| x.literal()) == Some(m));
            }
            "secruleupdatetargetbyid" => {
                let ranges = parse_id_ranges(a0()?)?;
                self.update_targets(|r| ranges.iter().any(|(a, b)| (*a..=*b).contains(&r.id)), d)?;
            }
            "secruleupdatetargetbytag" => {
                let tag = a0()?.to_string();
                self.update_targets(|r| r.tags.iter().any(|t| t == &tag), d)?;
            }
            "secruleupdatetargetbymsg" => {
                let m = a0()?.to_string();
                self.update_targets(
                    |r| r.msg.as_ref().and_then(|x| x.literal()) == Some(m.as_str()),
                    d,
                )?;
            }
            "secruleupdateactionbyid" => {
                return Err("SecRuleUpdateActionById is not supported yet".into())
            }
            "secremoterules" | "secremoterulesfailaction" => {
                return Err(format!(
                    "{} is not supported (rules load only from local files)",
                    d.name
                ))
            }
            _ => return Err(format!("unknown directive {}", d.name)),
        }
        Ok(())
    }

    fn include(&mut self, pattern: &str, dir: &Path) -> Result<(), String> {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            dir.join(pattern)
        };
        let full_s = full.display().to_string();
        if full_s.contains(['*', '?', '[']) {
            let mut paths: Vec<PathBuf> = glob::glob(&full_s)
                .map_err(|e| format!("bad Include pattern: {e}"))?
                .filter_map(Result::ok)
                .collect();
            paths.sort();
            for p in paths {
                self.load_file(&p);
            }
        } else {
            if !full.exists() {
                return Err(format!("Include: no such file {full_s}"));
            }
            self.load_file(&full);
        }
        Ok(())
    }

    fn remove(&mut self, pred: impl Fn(&Rule) -> bool) {
        for p in self.phases.iter_mut() {
            p.retain(|it| !matches!(it, Item::Rule(r) if pred(r)));
        }
    }

    fn update_targets(
        &mut self,
        pred: impl Fn(&Rule) -> bool,
        d: &lexer::RawDirective,
    ) -> Result<(), String> {
        let add = variables::parse_targets(Self::arg(d, 1)?)?;
        let replace = match d.args.get(2) {
            Some(r) => Some(variables::parse_target(r)?),
            None => None,
        };
        for p in self.phases.iter_mut() {
            for it in p.iter_mut() {
                let Item::Rule(r) = it else { continue };
                if !pred(r) {
                    continue;
                }
                let Some(first) = r.links.first_mut() else {
                    continue;
                };
                if let Some(rep) = &replace {
                    if let Some(pos) = first
                        .targets
                        .iter()
                        .position(|t| t.kind == rep.kind && t.selector.same_as(&rep.selector))
                    {
                        first.targets.remove(pos);
                        for (i, t) in add.iter().enumerate() {
                            first.targets.insert(pos + i, t.clone());
                        }
                        continue;
                    }
                }
                first.targets.extend(add.iter().cloned());
            }
        }
        Ok(())
    }

    fn rule(
        &mut self,
        targets: Option<Vec<Target>>,
        operator: Operator,
        acts: &str,
        file: &str,
        line: usize,
    ) -> Result<(), String> {
        let a = parse_actions(acts)?;
        let targets = targets.unwrap_or_default();
        if let Some((mut rule, _)) = self.pending.take() {
            if a.id.is_some() || a.phase.is_some() || a.skip_after.is_some() || a.skip.is_some() {
                return Err("a chained rule cannot have id, phase, skip or skipAfter".into());
            }
            let mut transforms = self.defaults[rule.phase as usize - 1].transforms.clone();
            apply_transforms(&mut transforms, &a.transforms);
            let tchain = self.intern(&transforms);
            rule.links.push(Link {
                targets,
                operator,
                transforms,
                tchain,
                actions: a.run,
                capture: a.capture,
                multi_match: a.multi_match,
                line,
                prefilter: None,
            });
            if a.chain {
                self.pending = Some((rule, true));
            } else {
                self.push_rule(rule);
            }
            return Ok(());
        }
        let id = a.id.ok_or("rule has no id")?;
        let phase = a.phase.unwrap_or(2);
        let def = self.defaults[phase as usize - 1].clone();
        let mut transforms = def.transforms.clone();
        apply_transforms(&mut transforms, &a.transforms);
        let disruptive = match a.disruptive {
            None | Some(Disruptive::Block) => def.disruptive,
            Some(d) => d,
        };
        let tchain = self.intern(&transforms);
        let Actions {
            run,
            capture,
            multi_match,
            chain,
            status,
            log,
            msg,
            logdata,
            tags,
            severity,
            skip,
            skip_after,
            ..
        } = a;
        let rule = Rule {
            id,
            phase,
            links: vec![Link {
                targets,
                operator,
                transforms,
                tchain,
                actions: run,
                capture,
                multi_match,
                line,
                prefilter: None,
            }],
            disruptive,
            status,
            log: log.unwrap_or(def.log),
            msg,
            logdata,
            tags,
            severity,
            skip: skip.unwrap_or(0),
            skip_after,
            file: file.to_string(),
            line,
        };
        if chain {
            self.pending = Some((rule, true));
        } else {
            self.push_rule(rule);
        }
        Ok(())
    }

    fn intern(&mut self, t: &[Transform]) -> u32 {
        match self.chains.iter().position(|c| c == t) {
            Some(i) => i as u32,
            None => {
                self.chains.push(t.to_vec());
                (self.chains.len() - 1) as u32
            }
        }
    }

    fn push_rule(&mut self, rule: Rule) {
        let idx = rule.phase as usize - 1;
        self.phases[idx].push(Item::Rule(rule));
    }
}

fn limit_action(s: &str) -> Result<BodyLimitAction, String> {
    match s.to_ascii_lowercase().as_str() {
        "reject" => Ok(BodyLimitAction::Reject),
        "processpartial" => Ok(BodyLimitAction::ProcessPartial),
        o => Err(format!("expected Reject or ProcessPartial, got {o:?}")),
    }
}

fn apply_transforms(list: &mut Vec<Transform>, names: &[TransformName]) {
    for n in names {
        match n {
            TransformName::None => list.clear(),
            TransformName::T(t) => list.push(*t),
        }
    }
}
