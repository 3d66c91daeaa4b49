//! SecLang engine that runs the OWASP Core Rule Set unmodified.
//!
//! `parse` turns SecLang text into an immutable [`RuleSet`] (shared with
//! `Arc` across requests); a [`Transaction`] evaluates one request (and
//! optionally its response) against it with ModSecurity's semantics.

pub mod body;
pub mod crs;
pub mod error;
pub mod http;
pub mod macros;
pub mod model;
pub mod operator;
pub mod parse;
pub mod phrase;
pub mod prefilter;
pub mod regex_compat;
pub mod ruleset;
pub mod transform;
pub mod transform_decode;
pub mod tx;
pub mod txnames;

pub use error::{LoadError, LoadErrors};
pub use ruleset::RuleSet;
pub use tx::{MatchedRule, Outcome, Request, Response, Transaction};

use std::path::Path;

/// Loads a single SecLang file (following its `Include`s).
pub fn load_file(path: &Path) -> Result<RuleSet, LoadErrors> {
    let mut l = parse::Loader::new();
    l.load_file(path);
    l.finish()
}

/// Loads SecLang text; relative paths (`Include`, `@pmFromFile`) resolve from `dir`.
pub fn load_str(text: &str, name: &str, dir: &Path) -> Result<RuleSet, LoadErrors> {
    let mut l = parse::Loader::new();
    l.load_str(text, name, dir);
    l.finish()
}
