//! SecLang engine (see issue: WAF).
