//! Loading the OWASP CRS from a directory: a base engine configuration,
//! `crs-setup.conf` (or `.example`), setting overrides as a `SecAction`
//! (the way CRS documents tuning), then `rules/*.conf` in order.

use crate::error::{LoadError, LoadErrors};
use crate::parse::Loader;
use crate::ruleset::RuleSet;
use std::path::{Path, PathBuf};

/// Engine settings ModSecurity's recommended configuration provides and CRS
/// expects: body access, the XML/JSON processor selection and body-error rules.
pub const BASE_CONFIG: &str = r#"
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',severity:2"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" "id:200004,phase:2,t:none,log,deny,msg:'Multipart parser detected a possible unmatched boundary.'"
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml
SecResponseBodyLimit 524288
SecResponseBodyLimitAction ProcessPartial
SecArgumentSeparator &
SecCookieFormat 0
"#;

/// Per-deployment CRS settings, applied like a `SecAction` in crs-setup.conf.
#[derive(Debug, Clone, Default)]
pub struct CrsOptions {
    pub blocking_paranoia: Option<u8>,
    pub detection_paranoia: Option<u8>,
    pub inbound_threshold: Option<u32>,
    pub outbound_threshold: Option<u32>,
    /// More `setvar:tx.name=value` settings.
    pub tx_settings: Vec<(String, String)>,
    /// SecLang loaded after the setup file and before the rules (e.g. test config).
    pub extra_before_rules: Option<String>,
    /// SecLang loaded after the rules (e.g. exclusions by id).
    pub extra_after_rules: Option<String>,
}

impl CrsOptions {
    fn setvars(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = self.blocking_paranoia {
            v.push(format!("setvar:tx.blocking_paranoia_level={p}"));
        }
        if let Some(p) = self.detection_paranoia {
            v.push(format!("setvar:tx.detection_paranoia_level={p}"));
        }
        if let Some(t) = self.inbound_threshold {
            v.push(format!("setvar:tx.inbound_anomaly_score_threshold={t}"));
        }
        if let Some(t) = self.outbound_threshold {
            v.push(format!("setvar:tx.outbound_anomaly_score_threshold={t}"));
        }
        for (k, val) in &self.tx_settings {
            v.push(format!("setvar:'tx.{k}={val}'"));
        }
        v
    }
}

/// Loads CRS from `dir` (which holds `rules/` and `crs-setup.conf[.example]`).
pub fn load_crs(dir: &Path, opts: &CrsOptions) -> Result<RuleSet, LoadErrors> {
    let mut l = Loader::new();
    l.load_str(BASE_CONFIG, "<base config>", dir);
    let setup = ["crs-setup.conf", "crs-setup.conf.example"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    match setup {
        Some(p) => l.load_file(&p),
        None => {
            return Err(LoadErrors(vec![LoadError::new(
                &dir.display().to_string(),
                0,
                "no crs-setup.conf or crs-setup.conf.example",
            )]));
        }
    }
    let sv = opts.setvars();
    if !sv.is_empty() {
        let text = format!(
            "SecAction \"id:899100,phase:1,pass,nolog,{}\"\n",
            sv.join(",")
        );
        l.load_str(&text, "<settings>", dir);
    }
    if let Some(x) = &opts.extra_before_rules {
        l.load_str(x, "<extra before rules>", dir);
    }
    let rules = dir.join("rules");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&rules) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect(),
        Err(e) => {
            return Err(LoadErrors(vec![LoadError::new(
                &rules.display().to_string(),
                0,
                format!("cannot read rules directory: {e}"),
            )]))
        }
    };
    files.sort();
    for f in files {
        l.load_file(&f);
    }
    if let Some(x) = &opts.extra_after_rules {
        l.load_str(x, "<extra after rules>", dir);
    }
    l.finish()
}
