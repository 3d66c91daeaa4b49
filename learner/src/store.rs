//! The local file store: one directory per workload under a root.
//!
//! ```text
//! ROOT/NAMESPACE/NAME/
//!   learning.json      learner state (snapshot)
//!   baseline.yaml      the learned proposal (kind: Baseline)
//!   policy-v1.yaml     approved versions, never rewritten
//!   policy-v2.yaml ...
//!   decisions.jsonl    approvals, rejections and rollbacks, one JSON per line
//! ```
//!
//! Every write is atomic (temp + rename), so a crash leaves the previous
//! version. The current policy is the highest version present.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use podwarden_policy::model::{DocumentKind, PolicyDocument};
use podwarden_policy::Mode;
use serde::{Deserialize, Serialize};

use crate::diff::{diff, fingerprint, BaselineDiff, Rejections};
use crate::error::LearnerError;
use crate::evidence::now_rfc3339;
use crate::learn::{write_atomic, Learner, LearnerConfig};
use crate::promote::promote;

/// `namespace/name`, each a DNS-label-like word (also keeps paths safe).
pub fn split_workload(w: &str) -> Result<(&str, &str), LearnerError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    match w.split_once('/') {
        Some((ns, name)) if ok(ns) && ok(name) => Ok((ns, name)),
        _ => Err(LearnerError::Workload(w.to_string())),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DecisionKind {
    Approve,
    Reject,
    Rollback,
}

/// One line of `decisions.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub kind: DecisionKind,
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// Entry ids (rule ids or `process:<exe>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The policy version written by this decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Rejections: the shape of each rejected rule (see [`Rejections`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fingerprints: BTreeMap<String, String>,
}

/// One row of `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: u64,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub rules: usize,
    pub processes: usize,
    pub mode: Mode,
}

/// What to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every proposal (adds and widenings; drops are never implied).
    All,
    /// These entry ids (may include drops to remove them).
    Ids(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    workload: String,
}

impl Store {
    /// The store of one workload under `root`; nothing is created yet.
    pub fn open(root: &Path, workload: &str) -> Result<Self, LearnerError> {
        let (ns, name) = split_workload(workload)?;
        Ok(Store {
            dir: root.join(ns).join(name),
            workload: workload.to_string(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn workload(&self) -> &str {
        &self.workload
    }

    pub fn learning_path(&self) -> PathBuf {
        self.dir.join("learning.json")
    }

    pub fn baseline_path(&self) -> PathBuf {
        self.dir.join("baseline.yaml")
    }

    pub fn policy_path(&self, version: u64) -> PathBuf {
        self.dir.join(format!("policy-v{version}.yaml"))
    }

    fn decisions_path(&self) -> PathBuf {
        self.dir.join("decisions.jsonl")
    }

    /// The learner state, or a fresh learner when none was saved.
    pub fn load_learner(&self, config: Option<LearnerConfig>) -> Result<Learner, LearnerError> {
        let p = self.learning_path();
        if p.exists() {
            let l = Learner::load(&p)?;
            if l.config().workload != self.workload {
                return Err(LearnerError::Store(format!(
                    "{}: learning state is for {}, not {}",
                    p.display(),
                    l.config().workload,
                    self.workload
                )));
            }
            Ok(l)
        } else {
            Learner::new(config.unwrap_or_else(|| LearnerConfig::new(self.workload.clone())))
        }
    }

    /// Saves the learner state and the baseline it implies.
    pub fn save_learner(&self, l: &Learner) -> Result<(), LearnerError> {
        l.save(&self.learning_path())?;
        self.write_baseline(&l.baseline())
    }

    pub fn write_baseline(&self, doc: &PolicyDocument) -> Result<(), LearnerError> {
        if doc.kind != DocumentKind::Baseline {
            return Err(LearnerError::Store(
                "baseline.yaml must hold kind: Baseline".into(),
            ));
        }
        write_yaml(&self.baseline_path(), doc)
    }

    pub fn baseline(&self) -> Result<PolicyDocument, LearnerError> {
        let p = self.baseline_path();
        if !p.exists() {
            return Err(LearnerError::Store(format!(
                "no baseline for {} (expected {}); learn first",
                self.workload,
                p.display()
            )));
        }
        read_yaml(&p)
    }

    /// Versions present, ascending.
    pub fn versions(&self) -> Result<Vec<u64>, LearnerError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LearnerError::io(&self.dir, e)),
        };
        let mut v: Vec<u64> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix("policy-v")?
                    .strip_suffix(".yaml")?
                    .parse()
                    .ok()
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    pub fn policy(&self, version: u64) -> Result<PolicyDocument, LearnerError> {
        let p = self.policy_path(version);
        if !p.exists() {
            return Err(LearnerError::Store(format!(
                "{} has no policy version {version}",
                self.workload
            )));
        }
        read_yaml(&p)
    }

    /// The highest approved version, if any.
    pub fn current(&self) -> Result<Option<PolicyDocument>, LearnerError> {
        match self.versions()?.last() {
            Some(v) => self.policy(*v).map(Some),
            None => Ok(None),
        }
    }

    pub fn decisions(&self) -> Result<Vec<DecisionRecord>, LearnerError> {
        let p = self.decisions_path();
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LearnerError::io(&p, e)),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| LearnerError::Json {
                    path: p.clone(),
                    source: e,
                })
            })
            .collect()
    }

    /// Entries rejected and not approved since.
    pub fn rejected(&self) -> Result<Rejections, LearnerError> {
        let mut r = Rejections::default();
        for d in self.decisions()? {
            match d.kind {
                DecisionKind::Reject => {
                    for id in d.ids {
                        let fp = d.fingerprints.get(&id).cloned();
                        r.0.insert(id, fp);
                    }
                }
                DecisionKind::Approve => {
                    for id in d.ids {
                        r.0.remove(&id);
                    }
                }
                DecisionKind::Rollback => {}
            }
        }
        Ok(r)
    }

    fn append_decision(&self, d: &DecisionRecord) -> Result<(), LearnerError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| LearnerError::io(&self.dir, e))?;
        let p = self.decisions_path();
        let mut line = serde_json::to_string(d).map_err(|e| LearnerError::Json {
            path: p.clone(),
            source: e,
        })?;
        line.push('\n');
        // One write of one line with O_APPEND: lines do not interleave.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| LearnerError::io(&p, e))?;
        f.write_all(line.as_bytes())
            .map_err(|e| LearnerError::io(&p, e))?;
        f.sync_all().map_err(|e| LearnerError::io(&p, e))
    }

    /// The diff of the stored baseline against the current policy.
    pub fn diff(&self) -> Result<BaselineDiff, LearnerError> {
        let b = self.baseline()?;
        let p = self.current()?;
        Ok(diff(&b, p.as_ref(), &self.rejected()?))
    }

    /// Approves entries of the current diff and writes the next version.
    /// Returns the new version, or an error when the selection is empty or
    /// names ids that are not in the diff.
    pub fn approve(
        &self,
        selection: &Selection,
        by: &str,
        mode: Option<Mode>,
    ) -> Result<PolicyDocument, LearnerError> {
        if by.trim().is_empty() {
            return Err(LearnerError::Store("approve needs a name (--by)".into()));
        }
        let baseline = self.baseline()?;
        let current = self.current()?;
        let d = diff(&baseline, current.as_ref(), &self.rejected()?);
        let chosen: Vec<_> = match selection {
            Selection::All => d.proposals().cloned().collect(),
            Selection::Ids(ids) => {
                let mut v = Vec::new();
                for id in ids {
                    match d.entries.iter().find(|e| &e.id == id) {
                        Some(e) => v.push(e.clone()),
                        None => {
                            return Err(LearnerError::Store(format!(
                                "{id} is not in the diff (see `podwarden baseline diff`)"
                            )))
                        }
                    }
                }
                v
            }
        };
        if chosen.is_empty() && mode.is_none() {
            return Err(LearnerError::Store(
                "nothing to approve: the diff is empty".into(),
            ));
        }
        let version = self.versions()?.last().copied().unwrap_or(0) + 1;
        let at = now_rfc3339();
        let mut doc = promote(current.as_ref(), Some(&baseline), &self.workload, &chosen);
        doc.metadata.version = version;
        doc.metadata.approved_by = Some(by.to_string());
        doc.metadata.approved_at = Some(at.clone());
        if let Some(m) = mode {
            doc.spec.mode = m;
        }
        self.write_new_version(&doc)?;
        self.append_decision(&DecisionRecord {
            kind: DecisionKind::Approve,
            by: by.to_string(),
            at,
            ids: chosen.iter().map(|e| e.id.clone()).collect(),
            reason: None,
            version: Some(version),
            fingerprints: BTreeMap::new(),
        })?;
        Ok(doc)
    }

    /// Records a rejection so the same entries are not proposed again.
    pub fn reject(
        &self,
        ids: &[String],
        by: &str,
        reason: Option<&str>,
    ) -> Result<(), LearnerError> {
        if ids.is_empty() {
            return Err(LearnerError::Store(
                "reject needs at least one --rule".into(),
            ));
        }
        if by.trim().is_empty() {
            return Err(LearnerError::Store("reject needs a name (--by)".into()));
        }
        let d = self.diff()?;
        let mut fingerprints = BTreeMap::new();
        for id in ids {
            let e = d.entries.iter().find(|e| &e.id == id);
            if !e.is_some_and(|e| e.change.is_proposal()) {
                return Err(LearnerError::Store(format!(
                    "{id} is not a proposal in the diff"
                )));
            }
            if let Some(rule) = e.and_then(|e| e.rule.as_ref()) {
                fingerprints.insert(id.clone(), fingerprint(rule));
            }
        }
        self.append_decision(&DecisionRecord {
            kind: DecisionKind::Reject,
            by: by.to_string(),
            at: now_rfc3339(),
            ids: ids.to_vec(),
            reason: reason.map(String::from),
            version: None,
            fingerprints,
        })
    }

    pub fn history(&self) -> Result<Vec<VersionInfo>, LearnerError> {
        self.versions()?
            .into_iter()
            .map(|v| {
                let d = self.policy(v)?;
                Ok(VersionInfo {
                    version: v,
                    approved_by: d.metadata.approved_by,
                    approved_at: d.metadata.approved_at,
                    rules: d.spec.rules.len(),
                    processes: d.spec.processes.len(),
                    mode: d.spec.mode,
                })
            })
            .collect()
    }

    /// Writes a new version equal to version `to` (history is append-only).
    pub fn rollback(&self, to: u64, by: &str) -> Result<PolicyDocument, LearnerError> {
        let mut doc = self.policy(to)?;
        let version = self.versions()?.last().copied().unwrap_or(0) + 1;
        let at = now_rfc3339();
        doc.metadata.version = version;
        doc.metadata.approved_by = Some(by.to_string());
        doc.metadata.approved_at = Some(at.clone());
        doc.metadata
            .labels
            .insert("podwarden.io/rollback-of".into(), to.to_string());
        self.write_new_version(&doc)?;
        self.append_decision(&DecisionRecord {
            kind: DecisionKind::Rollback,
            by: by.to_string(),
            at,
            ids: Vec::new(),
            reason: Some(format!("rollback to v{to}")),
            version: Some(version),
            fingerprints: BTreeMap::new(),
        })?;
        Ok(doc)
    }

    fn write_new_version(&self, doc: &PolicyDocument) -> Result<(), LearnerError> {
        let p = self.policy_path(doc.metadata.version);
        if p.exists() {
            return Err(LearnerError::Store(format!(
                "{} already exists (concurrent approval?)",
                p.display()
            )));
        }
        write_yaml(&p, doc)
    }
}

pub fn read_yaml(p: &Path) -> Result<PolicyDocument, LearnerError> {
    let text = std::fs::read_to_string(p).map_err(|e| LearnerError::io(p, e))?;
    serde_yaml_ng::from_str(&text).map_err(|e| LearnerError::Yaml {
        path: p.to_path_buf(),
        source: e,
    })
}

pub fn write_yaml(p: &Path, doc: &PolicyDocument) -> Result<(), LearnerError> {
    let text = serde_yaml_ng::to_string(doc).map_err(|e| LearnerError::Yaml {
        path: p.to_path_buf(),
        source: e,
    })?;
    write_atomic(p, text.as_bytes())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
