//! The authenticated half of the admin API, the operator's contract
//! (operator/src/controller/sidecar.rs):
//!
//! * `GET /baseline` → 200, the `Baseline` document this pod learned (JSON).
//! * `GET /status` → 200, [`SidecarStatus`] (JSON).
//! * `PUT /policy` with a `WorkloadPolicy` document (JSON) → 200 +
//!   [`SidecarStatus`] once it is validated, compiled and swapped in — the
//!   same path as a file reload, so its `spec.mode`/`features` replace the
//!   start-up modes; 400 + the located reason otherwise (the old policy
//!   stays); 409 when a `--policy-file` is the authority.
//!
//! A pushed policy is also written to the state directory, so a restarted
//! proxy enforces it again before the operator's next push.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use podwarden_policy::model::{DocumentKind, PolicyDocument};
use podwarden_policy::Mode;
use serde::{Deserialize, Serialize};

use super::auth::TokenHash;
use super::violations::ViolationWindow;
use crate::config::Config;
use crate::learning::Learning;
use crate::policy_reload::{PolicyReloader, ReloadOutcome};

/// What `GET /status` and `PUT /policy` answer. Same JSON shape as the
/// operator's `SidecarStatus` (kept separate: the proxy does not depend on
/// the operator crate; a test pins the field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// Version of the policy in effect; 0 = none received yet.
    pub policy_version: u64,
    pub mode: Mode,
    pub violations_last_hour: u64,
}

/// What `GET /rules/usage` answers: hits and last hit per rule of the policy
/// in force, counted since this sidecar started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleUsageReport {
    /// The policy version the rules belong to; 0 = none loaded.
    pub policy_version: u64,
    pub rules: Vec<crate::decision_metrics::RuleUsage>,
}

/// Largest policy body `PUT /policy` reads.
pub const MAX_POLICY_BYTES: usize = 4 << 20;

/// A reply before it becomes an HTTP response (status, content type, body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub json: bool,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json<T: Serialize>(status: u16, v: &T) -> Reply {
        match serde_json::to_vec(v) {
            Ok(body) => Reply {
                status,
                json: true,
                body,
            },
            Err(e) => Reply::text(500, format!("{e}\n")),
        }
    }
    pub fn json_status(s: &SidecarStatus) -> Reply {
        Reply::json(200, s)
    }
    pub fn text(status: u16, msg: impl Into<String>) -> Reply {
        let mut body = msg.into().into_bytes();
        if body.last() != Some(&b'\n') {
            body.push(b'\n');
        }
        Reply {
            status,
            json: false,
            body,
        }
    }
}

pub struct AdminControl {
    token: Option<TokenHash>,
    reloader: OnceLock<Arc<PolicyReloader>>,
    learning: OnceLock<Arc<Learning>>,
    violations: Arc<ViolationWindow>,
    startup_mode: Mode,
    /// Where a pushed policy is kept; `None` when a policy file is the
    /// authority (then pushes are refused).
    pushed_path: Option<PathBuf>,
    policy_file: Option<PathBuf>,
}

impl AdminControl {
    /// `token_sha256` unset or malformed: the authenticated routes refuse
    /// everyone (fail closed).
    pub fn new(
        token_sha256: Option<&str>,
        startup_mode: Mode,
        pushed_path: Option<PathBuf>,
        policy_file: Option<PathBuf>,
    ) -> AdminControl {
        AdminControl {
            token: token_sha256.and_then(TokenHash::from_hex),
            reloader: OnceLock::new(),
            learning: OnceLock::new(),
            violations: Arc::new(ViolationWindow::new()),
            startup_mode,
            pushed_path,
            policy_file,
        }
    }

    /// From the proxy's configuration: pushes are accepted (and saved in
    /// the state directory) unless a policy file is configured.
    pub fn from_config(config: &Config) -> AdminControl {
        let pushed = config
            .policy_file
            .is_none()
            .then(|| config.state_dir.join("policy.json"));
        if config.admin_token_sha256.is_none() {
            tracing::warn!("no admin token (PODWARDEN_ADMIN_TOKEN_SHA256): /baseline, /status and PUT /policy refuse everyone");
        }
        AdminControl::new(
            config.admin_token_sha256.as_deref(),
            config.mode,
            pushed,
            config.policy_file.clone(),
        )
    }

    /// No token, nothing wired: `/baseline`, `/status` and `/policy` answer 401.
    pub fn disabled() -> AdminControl {
        AdminControl::new(None, Mode::Learn, None, None)
    }

    pub fn token(&self) -> Option<&TokenHash> {
        self.token.as_ref()
    }

    pub fn violations(&self) -> &Arc<ViolationWindow> {
        &self.violations
    }

    /// Wires the policy path in (once; later calls are ignored).
    pub fn set_reloader(&self, r: Arc<PolicyReloader>) {
        let _ = self.reloader.set(r);
    }

    pub fn set_learning(&self, l: Arc<Learning>) {
        let _ = self.learning.set(l);
    }

    pub fn status(&self) -> SidecarStatus {
        let current = self.reloader.get().and_then(|r| r.current());
        SidecarStatus {
            policy_version: current.as_ref().map(|p| p.version()).unwrap_or(0),
            mode: current
                .as_ref()
                .map(|p| p.mode())
                .unwrap_or(self.startup_mode),
            violations_last_hour: self.violations.last_hour(crate::records::now_ms()),
        }
    }

    /// Saves the learning state now (shutdown).
    /// Per-rule usage from the decision metrics in `registry`.
    pub fn rule_usage(&self, registry: &prometheus::Registry) -> Reply {
        Reply::json(
            200,
            &RuleUsageReport {
                policy_version: self.status().policy_version,
                rules: crate::decision_metrics::rule_usage(&registry.gather()),
            },
        )
    }

    pub fn flush_learning(&self) {
        if let Some(l) = self.learning.get() {
            l.flush();
        }
    }

    /// Where a pushed policy is kept, when pushes are accepted.
    pub fn pushed_path(&self) -> Option<&PathBuf> {
        self.pushed_path.as_ref()
    }

    /// Without a policy file: enforce the last pushed policy if one was
    /// saved (a restart must not fall back to weaker start-up modes), else
    /// the start-up modes as an empty policy. Blocking (compiles).
    pub fn restore_or_start(&self, config: &Config) -> Result<ReloadOutcome, String> {
        let Some(reloader) = self.reloader.get() else {
            return Err("no policy engine".into());
        };
        if let Some(p) = &self.pushed_path {
            if let Ok(text) = std::fs::read_to_string(p) {
                match reloader.apply_str(&text, &p.display().to_string()) {
                    ReloadOutcome::Rejected { error } => {
                        tracing::warn!(path = %p.display(), %error,
                            "saved pushed policy not usable; using the start-up modes")
                    }
                    ok => {
                        tracing::info!(path = %p.display(), "restored the last pushed policy");
                        return Ok(ok);
                    }
                }
            }
        }
        match reloader.apply_str(&startup_document(config), "start-up modes") {
            ReloadOutcome::Rejected { error } => Err(error),
            ok => Ok(ok),
        }
    }

    pub fn baseline(&self) -> Reply {
        let Some(l) = self.learning.get() else {
            return Reply::text(503, "learning is not running in this proxy");
        };
        match l.baseline() {
            Ok(doc) => Reply::json(200, &doc),
            Err(e) => Reply::text(500, format!("baseline: {e}")),
        }
    }

    /// Validates, compiles and swaps in a pushed policy. Blocking (compiles
    /// the policy): call off the admin runtime's thread.
    pub fn put_policy(&self, body: &[u8]) -> Reply {
        if let Some(f) = &self.policy_file {
            return Reply::text(
                409,
                format!(
                    "this proxy enforces the policy file {}; update the file instead",
                    f.display()
                ),
            );
        }
        let Some(reloader) = self.reloader.get() else {
            return Reply::text(503, "the policy engine is not running yet");
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return Reply::text(400, "PUT /policy: body is not UTF-8");
        };
        // The kind is checked before anything is swapped; any other problem
        // gets the loader's located message below.
        if let Ok(doc) = serde_json::from_str::<PolicyDocument>(text) {
            if doc.kind != DocumentKind::WorkloadPolicy {
                return Reply::text(
                    400,
                    "PUT /policy takes kind WorkloadPolicy (approve the baseline first)",
                );
            }
        }
        match reloader.apply_str(text, "PUT /policy") {
            ReloadOutcome::Rejected { error } => Reply::text(400, error),
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged => {
                if let Some(p) = &self.pushed_path {
                    if let Err(e) = podwarden_learner::learn::write_atomic(p, text.as_bytes()) {
                        tracing::warn!(path = %p.display(), error = %e,
                            "pushed policy is in force but not saved; a restart falls back to the start-up modes");
                    }
                }
                Reply::json(200, &self.status())
            }
        }
    }
}

/// The start-up modes (`--mode`, `--waf-mode`, `--dlp-mode`, i.e. env
/// `PODWARDEN_MODE`…) as a policy with no rules, so they take the same path
/// as any policy: learn allows everything, monitor allows and reports every
/// flow, protect denies everything until a policy is pushed (fail closed).
/// A WAF/DLP mode given at start turns that engine on with its defaults.
pub fn startup_document(config: &Config) -> String {
    use podwarden_policy::model::{FeatureModes, Metadata, PolicySpec, API_VERSION};
    let doc = PolicyDocument {
        api_version: API_VERSION.to_string(),
        kind: DocumentKind::WorkloadPolicy,
        metadata: Metadata {
            workload: crate::learning::learner_workload(&config.workload),
            version: 0,
            ..Default::default()
        },
        spec: PolicySpec {
            mode: config.mode,
            features: FeatureModes {
                network: None,
                waf: config.waf_mode,
                dlp: config.dlp_mode,
            },
            // Serde's defaults (e.g. paranoia 1), not the derived zeroes.
            waf: config
                .waf_mode
                .and_then(|_| serde_json::from_str("{}").ok()),
            dlp: config
                .dlp_mode
                .and_then(|_| serde_json::from_str("{}").ok()),
            ..Default::default()
        },
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_of_the_injected_sidecar_load() {
        use crate::config::RunArgs;
        let hash = "1EC1C26B50D5D3C58D9583181AF8076655FE00756BF7285940BA3670F99FCBA0";
        let args = RunArgs {
            admin_port: Some(15990),
            mode: Some(Mode::Monitor),
            dlp_mode: Some(Mode::Protect),
            state_dir: Some(PathBuf::from("/tmp/pw-state")),
            admin_token_sha256: Some(hash.into()),
            ..Default::default()
        };
        let c = args.load().unwrap();
        assert_eq!(c.admin_addr, "[::]:15990".parse().unwrap());
        assert_eq!(
            (c.mode, c.waf_mode, c.dlp_mode),
            (Mode::Monitor, None, Some(Mode::Protect))
        );
        assert_eq!(
            c.admin_token_sha256.as_deref(),
            Some(hash.to_ascii_lowercase().as_str())
        );
        let control = AdminControl::from_config(&c);
        assert!(control.token().is_some_and(|t| t.matches("s3cret")));
        assert_eq!(
            control.pushed_path(),
            Some(&PathBuf::from("/tmp/pw-state/policy.json"))
        );
        assert_eq!(
            control.status().mode,
            Mode::Monitor,
            "start-up mode until a policy"
        );
        // --admin-addr wins over --admin-port
        let args = RunArgs {
            admin_port: Some(15990),
            admin_addr: Some("127.0.0.1:15000".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            args.load().unwrap().admin_addr,
            "127.0.0.1:15000".parse().unwrap()
        );
        // a malformed digest is a start-up error naming the field
        let bad = RunArgs {
            admin_token_sha256: Some("not-hex".into()),
            ..Default::default()
        };
        assert!(bad
            .load()
            .unwrap_err()
            .to_string()
            .contains("admin_token_sha256"));
        // a policy file makes pushes a conflict
        let c = RunArgs {
            policy_file: Some(PathBuf::from("/etc/podwarden/policy.yaml")),
            ..Default::default()
        }
        .load()
        .unwrap();
        let control = AdminControl::from_config(&c);
        assert_eq!(control.pushed_path(), None);
        assert_eq!(control.put_policy(b"{}").status, 409);
    }

    #[test]
    fn startup_document_is_a_valid_policy_in_the_start_up_modes() {
        let config = Config {
            workload: "shop/deployment/checkout".into(),
            mode: Mode::Monitor,
            waf_mode: Some(Mode::Protect),
            ..Config::default()
        };
        let doc = podwarden_policy::load_policy_str(&startup_document(&config), "t").unwrap();
        assert_eq!(doc.metadata.workload, "shop/checkout");
        assert_eq!(
            doc.spec.mode_of(podwarden_policy::Feature::Network),
            Mode::Monitor
        );
        assert_eq!(
            doc.spec.mode_of(podwarden_policy::Feature::Waf),
            Mode::Protect
        );
        assert_eq!(
            doc.spec.mode_of(podwarden_policy::Feature::Dlp),
            Mode::Monitor
        );
        assert!(doc.spec.waf.is_some() && doc.spec.dlp.is_none());
        assert!(doc.spec.rules.is_empty());
    }

    #[test]
    fn status_json_has_the_operators_field_names() {
        let s = SidecarStatus {
            policy_version: 3,
            mode: Mode::Protect,
            violations_last_hour: 2,
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"policyVersion": 3, "mode": "protect", "violationsLastHour": 2})
        );
    }
}
