//! Layer-7 security in the data path: the OWASP CRS WAF on inbound HTTP and
//! DLP on data leaving the pod, as [`crate::inspect`] inspectors built from
//! the policy's `waf`/`dlp` sections.
//!
//! A feature is on for a workload when its policy has the feature's section
//! (`spec.waf`, `spec.dlp`) or an explicit mode override
//! (`spec.features.waf`, `spec.features.dlp`). Mode semantics per feature:
//! `learn` and `monitor` let traffic through and emit a security event;
//! `protect` blocks (403 with the event id before anything was sent,
//! otherwise a reset).
//!
//! Engines are compiled when a policy is loaded, on the reloader's blocking
//! thread, and shared by every connection; a compiled WAF is reused across
//! reloads while its inputs are unchanged, so editing network rules does not
//! recompile the CRS.

pub mod dlp;
pub mod report;
pub mod waf;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use podwarden_policy::model::{Feature, PolicySpec};
use podwarden_policy::Mode;

use crate::inspect::InspectorSet;
pub use report::{L7Metrics, Reporter};

#[derive(Debug, thiserror::Error)]
pub enum L7Error {
    #[error("waf: {0}")]
    Waf(String),
    #[error("dlp: {0}")]
    Dlp(String),
}

/// Where the engines' external inputs live.
#[derive(Debug, Clone)]
pub struct L7Options {
    /// OWASP CRS directory (`rules/` plus `crs-setup.conf[.example]`).
    pub waf_rules_dir: PathBuf,
}

/// Which features a policy turns on, and in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enabled {
    pub waf: Option<Mode>,
    pub dlp: Option<Mode>,
}

impl Enabled {
    pub fn of(spec: &PolicySpec) -> Enabled {
        let on = |section: bool, over: Option<Mode>, f: Feature| {
            (section || over.is_some()).then(|| spec.mode_of(f))
        };
        Enabled {
            waf: on(spec.waf.is_some(), spec.features.waf, Feature::Waf),
            dlp: on(spec.dlp.is_some(), spec.features.dlp, Feature::Dlp),
        }
    }
}

/// Builds the inspector set for successive policies, keeping the last
/// compiled WAF for reuse.
pub struct L7Builder {
    options: L7Options,
    reporter: Reporter,
    waf_cache: Mutex<Option<waf::CachedWaf>>,
}

impl L7Builder {
    pub fn new(options: L7Options, reporter: Reporter) -> L7Builder {
        L7Builder {
            options,
            reporter,
            waf_cache: Mutex::new(None),
        }
    }

    /// Compiles what `spec` asks for. Blocking (the CRS takes a while to
    /// compile): call it off the data path.
    pub fn build(&self, spec: &PolicySpec) -> Result<InspectorSet, L7Error> {
        let enabled = Enabled::of(spec);
        let mut set = InspectorSet::default();
        if let Some(mode) = enabled.waf {
            // Without a `waf:` section, the model's defaults (paranoia 1,
            // thresholds 5/4), which serde applies and `Default` does not.
            let settings = match &spec.waf {
                Some(w) => w.clone(),
                None => serde_json::from_str("{}").map_err(|e| L7Error::Waf(e.to_string()))?,
            };
            let key = waf::CacheKey {
                settings,
                mode,
                dir: self.options.waf_rules_dir.clone(),
            };
            let cached = {
                let c = lock(&self.waf_cache);
                c.as_ref().filter(|c| c.key == key).map(|c| c.rules.clone())
            };
            let rules = match cached {
                Some(r) => Some(r),
                None => {
                    let r = waf::compile(&key.settings, mode, &key.dir)?;
                    if let Some(r) = &r {
                        *lock(&self.waf_cache) = Some(waf::CachedWaf {
                            key: key.clone(),
                            rules: r.clone(),
                        });
                    }
                    r
                }
            };
            if let Some(rules) = rules {
                set.http.push(Arc::new(waf::WafInspector::new(
                    rules,
                    mode,
                    self.reporter.clone(),
                )));
            }
        }
        if let Some(mode) = enabled.dlp {
            let settings = spec.dlp.clone().unwrap_or_default();
            let engine = Arc::new(dlp::DlpEngine::compile(
                &settings,
                mode,
                self.reporter.clone(),
            )?);
            set.http
                .push(Arc::new(dlp::DlpHttpInspector(engine.clone())));
            set.stream.push(Arc::new(dlp::DlpStreamInspector(engine)));
        }
        Ok(set)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(y: &str) -> PolicySpec {
        serde_yaml_ng::from_str(y).unwrap()
    }

    #[test]
    fn features_are_on_with_a_section_or_an_override() {
        assert_eq!(
            Enabled::of(&spec("mode: protect\n")),
            Enabled {
                waf: None,
                dlp: None
            }
        );
        assert_eq!(
            Enabled::of(&spec("mode: protect\nwaf: {}\n")),
            Enabled {
                waf: Some(Mode::Protect),
                dlp: None
            }
        );
        assert_eq!(
            Enabled::of(&spec(
                "mode: learn\nfeatures: {dlp: protect, waf: monitor}\n"
            )),
            Enabled {
                waf: Some(Mode::Monitor),
                dlp: Some(Mode::Protect)
            }
        );
    }

    #[test]
    fn missing_crs_is_an_error_in_monitor_and_protect_only() {
        let b = L7Builder::new(
            L7Options {
                waf_rules_dir: "/nonexistent/podwarden/crs".into(),
            },
            Reporter::detached(),
        );
        for m in ["monitor", "protect"] {
            let e = b
                .build(&spec(&format!("mode: learn\nfeatures: {{waf: {m}}}\n")))
                .err()
                .unwrap_or_else(|| panic!("{m} without CRS must fail"));
            assert!(e.to_string().contains("/nonexistent/podwarden/crs"), "{e}");
        }
        // learn: no WAF, with a warning, rather than a refused policy.
        let set = b.build(&spec("mode: learn\nwaf: {}\n")).unwrap();
        assert!(set.http.is_empty());
    }

    #[test]
    fn dlp_adds_http_and_stream_inspectors() {
        let b = L7Builder::new(
            L7Options {
                waf_rules_dir: "/nonexistent".into(),
            },
            Reporter::detached(),
        );
        let set = b.build(&spec("mode: monitor\ndlp: {}\n")).unwrap();
        assert_eq!((set.http.len(), set.stream.len()), (1, 1));
        let e = b
            .build(&spec(
                "mode: monitor\ndlp: {customSensors: [{name: x, pattern: '('}]}\n",
            ))
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("dlp:"), "{e}");
    }
}
