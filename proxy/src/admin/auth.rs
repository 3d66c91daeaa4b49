//! Bearer-token check for the admin routes that read what the pod learned
//! or change what it enforces. The sidecar holds only the token's SHA-256
//! (from the operator, env `PODWARDEN_ADMIN_TOKEN_SHA256`), so a leaked pod
//! spec does not leak the token.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Why a request was refused; never says which part was wrong beyond that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that does not hash to the configured digest.
    Wrong,
    /// No digest configured: nobody may use the authenticated routes.
    NotConfigured,
}

impl TokenHash {
    /// 64 hex digits, either case.
    pub fn from_hex(s: &str) -> Option<TokenHash> {
        let s = s.trim().as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0])?;
            let lo = hex_val(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(TokenHash(out))
    }

    pub fn of_token(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Constant-time comparison of the presented token's digest.
    pub fn matches(&self, token: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        d.ct_eq(&self.0).into()
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub fn check(expected: Option<&TokenHash>, headers: &HeaderMap) -> Result<(), AuthError> {
    let Some(expected) = expected else {
        return Err(AuthError::NotConfigured);
    };
    let token = bearer(headers).ok_or(AuthError::Missing)?;
    if expected.matches(token) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn hex_digest_of_the_token_is_accepted_only_for_that_token() {
        // sha256("s3cret")
        let hex = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";
        let computed = TokenHash::of_token("s3cret");
        let parsed = TokenHash::from_hex(hex).unwrap();
        assert_eq!(
            computed.0, parsed.0,
            "test vector must be sha256(\"s3cret\")"
        );
        let up = TokenHash::from_hex(&hex.to_ascii_uppercase()).unwrap();
        assert_eq!(up.0, parsed.0);
        assert_eq!(check(Some(&parsed), &headers("Bearer s3cret")), Ok(()));
        assert_eq!(check(Some(&parsed), &headers("bearer  s3cret ")), Ok(()));
        assert_eq!(
            check(Some(&parsed), &headers("Bearer s3cre")),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            check(Some(&parsed), &headers("Basic czNjcmV0")),
            Err(AuthError::Missing)
        );
        assert_eq!(
            check(Some(&parsed), &HeaderMap::new()),
            Err(AuthError::Missing)
        );
        assert_eq!(
            check(None, &headers("Bearer s3cret")),
            Err(AuthError::NotConfigured)
        );
    }

    #[test]
    fn malformed_hex_is_refused() {
        assert!(TokenHash::from_hex("").is_none());
        assert!(TokenHash::from_hex(&"g".repeat(64)).is_none());
        assert!(TokenHash::from_hex(&"a".repeat(63)).is_none());
        assert!(TokenHash::from_hex(&"a".repeat(65)).is_none());
    }
}
