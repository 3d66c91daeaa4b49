//! Masking of secrets and personal data before anything leaves the process
//! in an event or a log. Events carry masked values only; these helpers are
//! the one way to produce them.

/// Keeps at most the last 4 characters of long values and nothing of short
/// ones: `4111111111111111` → `************1111`, `hunter2` → `*******`.
/// Never reveals more than a quarter of the value.
pub fn mask_secret(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let keep = if n >= 16 {
        4
    } else if n >= 12 {
        2
    } else {
        0
    };
    let mut out: String = std::iter::repeat_n('*', n - keep).collect();
    out.extend(&chars[n - keep..]);
    out
}

/// Query-string values are masked (`?token=abc&page=2` →
/// `?token=***&page=***`): parameters often carry credentials or personal
/// data and the names are enough to investigate.
pub fn mask_query(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{k}=***"),
            None => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

const SECRET_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "session",
    "bearer",
];

fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// Command lines often carry credentials (`--password=x`, `-p x`,
/// `TOKEN=x`, `https://user:pw@host`). Masks values that follow a
/// secret-looking option name, `k=v` with a secret-looking key, and URL
/// userinfo.
pub fn mask_cmdline(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for a in args {
        if mask_next {
            out.push(mask_secret(a));
            mask_next = false;
            continue;
        }
        if let Some((k, v)) = a.split_once('=') {
            if looks_secret(k) {
                out.push(format!("{k}={}", mask_secret(v)));
                continue;
            }
        }
        if a.starts_with('-') && (looks_secret(a) || a == "-p") {
            mask_next = true;
            out.push(a.clone());
            continue;
        }
        out.push(mask_userinfo(a));
    }
    out
}

/// `scheme://user:password@host/...` → `scheme://user:***@host/...`.
pub fn mask_userinfo(s: &str) -> String {
    let Some(i) = s.find("://") else {
        return s.to_string();
    };
    let rest = &s[i + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let Some(at) = authority.rfind('@') else {
        return s.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{}://{user}:***@{}", &s[..i], &s[i + 3 + at + 1..])
}

/// HTTP header values safe to show: secret-looking headers are masked.
pub fn mask_header(name: &str, value: &str) -> String {
    let n = name.to_ascii_lowercase();
    if looks_secret(&n) || n == "x-api-key" || n == "proxy-authorization" {
        mask_secret(value)
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        assert_eq!(mask_secret(""), "");
        assert_eq!(mask_secret("hunter2"), "*******");
        assert_eq!(mask_secret("4111111111111111"), "************1111");
        assert_eq!(mask_secret("DE89370400440532"), "************0532");
        assert_eq!(mask_secret("abcdefghijkl"), "**********kl");
        assert_eq!(mask_secret("ünïcødé-sécrèt"), "************èt");
    }

    #[test]
    fn queries() {
        assert_eq!(
            mask_query("/a?token=abc&page=2&flag"),
            "/a?token=***&page=***&flag"
        );
        assert_eq!(mask_query("/a"), "/a");
    }

    #[test]
    fn cmdlines() {
        let args: Vec<String> = [
            "curl",
            "-u",
            "x",
            "--password",
            "s3cr3t",
            "--token=abcdef",
            "API_KEY=zzz",
            "-p",
            "pw",
            "https://bob:pw@db.example/x",
            "--verbose",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = mask_cmdline(&args);
        let joined = m.join(" ");
        for secret in ["s3cr3t", "abcdef", "zzz", " pw ", ":pw@"] {
            assert!(!joined.contains(secret), "{secret} leaked: {joined}");
        }
        assert!(joined.contains("https://bob:***@db.example/x"), "{joined}");
        assert!(joined.contains("--verbose"));
    }

    #[test]
    fn headers() {
        let m = mask_header("Authorization", "Bearer abcdefghijklmnop");
        assert!(
            m.ends_with("*mnop") && !m.contains("Bearer") && m.chars().count() == 23,
            "{m}"
        );
        assert_eq!(mask_header("Accept", "text/html"), "text/html");
    }
}
