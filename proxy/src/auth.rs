//! Authentication: HS256 JWTs (alg pinned, `exp` required, `nbf` honoured) and the origin
//! allowlist. Hand-rolled on hmac/sha2 so the accepted algorithm is exactly one, by design.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 5;
/// Longest token accepted (before any decoding work).
const MAX_TOKEN_LEN: usize = 4096;
/// Longest subject used as an identity.
const MAX_SUB_LEN: usize = 128;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no token (use ?token= or the bearer.<token> subprotocol)")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm '{0}' is not accepted (only HS256)")]
    Algorithm(String),
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; the error case cannot happen.
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("hmac takes any key length"))
}

/// Mints a token for `sub` valid for `ttl_secs` from now.
pub fn mint(secret: &[u8], sub: &str, ttl_secs: i64) -> anyhow::Result<String> {
    let now = now_secs();
    let header = Header {
        alg: "HS256".into(),
        typ: Some("JWT".into()),
    };
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now.saturating_add(ttl_secs),
        nbf: Some(now),
        iat: Some(now),
    };
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(serde_json::to_vec(&header)?),
        B64URL.encode(serde_json::to_vec(&claims)?)
    );
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = B64URL.encode(m.finalize().into_bytes());
    Ok(format!("{signing_input}.{sig}"))
}

/// Verifies a token at time `now`; returns its subject.
pub fn verify(secret: &[u8], token: &str, now: i64) -> Result<String, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("expected three dot-separated parts"));
    };
    let header: Header = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Malformed("header"))?;
    // Pinned: "none", RS256, HS384... are all refused before the signature is looked at.
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm(header.alg.chars().take(16).collect()));
    }
    let sig = B64URL
        .decode(s)
        .map_err(|_| AuthError::Malformed("signature encoding"))?;
    let mut m = mac(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(c.as_bytes());
    m.verify_slice(&sig).map_err(|_| AuthError::Signature)?; // constant time
    let claims: Claims = B64URL
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Malformed(
            "claims (need string 'sub' and integer 'exp')",
        ))?;
    if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_LEN {
        return Err(AuthError::Malformed("'sub' must be 1 to 128 bytes"));
    }
    if now > claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if now.saturating_add(LEEWAY_SECS) < nbf {
            return Err(AuthError::NotYetValid);
        }
    }
    Ok(claims.sub)
}

/// Parses `30s`, `10m`, `1h`, `7d` or plain seconds.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("'{s}' is not a duration like 30s, 10m, 1h, 7d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(format!("'{s}': unit must be s, m, h or d")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too long"))
}

/// Origin check: with an empty allowlist every origin passes (the token is the guard);
/// otherwise a request that carries an Origin (a browser) must match one exactly.
pub fn origin_allowed(allowlist: &[String], origin: Option<&str>) -> bool {
    match origin {
        None => true,
        Some(o) => allowlist.is_empty() || allowlist.iter().any(|a| a.eq_ignore_ascii_case(o)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-secret";

    fn forge(header: &str, claims: &str, key: &[u8]) -> String {
        let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
        let mut m = mac(key);
        m.update(input.as_bytes());
        format!("{input}.{}", B64URL.encode(m.finalize().into_bytes()))
    }

    #[test]
    fn minted_token_verifies() {
        let t = mint(KEY, "alice", 3600).unwrap();
        assert_eq!(verify(KEY, &t, now_secs()), Ok("alice".into()));
    }

    #[test]
    fn rejections() {
        let now = now_secs();
        let t = mint(KEY, "alice", 60).unwrap();
        assert_eq!(verify(b"other", &t, now), Err(AuthError::Signature));
        assert_eq!(verify(KEY, &t, now + 3600), Err(AuthError::Expired));
        let future = forge(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"a","exp":{},"nbf":{}}}"#, now + 7200, now + 3600),
            KEY,
        );
        assert_eq!(verify(KEY, &future, now), Err(AuthError::NotYetValid));
        let none = format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none"}"#),
            B64URL.encode(format!(r#"{{"sub":"a","exp":{}}}"#, now + 60))
        );
        assert_eq!(verify(KEY, &none, now), Err(AuthError::Algorithm("none".into())));
        let hs512 = forge(r#"{"alg":"HS512"}"#, r#"{"sub":"a","exp":99999999999}"#, KEY);
        assert!(matches!(verify(KEY, &hs512, now), Err(AuthError::Algorithm(_))));
        let no_exp = forge(r#"{"alg":"HS256"}"#, r#"{"sub":"a"}"#, KEY);
        assert!(matches!(verify(KEY, &no_exp, now), Err(AuthError::Malformed(_))));
        for junk in ["", "a.b", "a.b.c.d", "!!!.###.$$$", &"x".repeat(5000)] {
            assert!(verify(KEY, junk, now).is_err(), "{junk}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("1h"), Ok(3600));
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("2d"), Ok(172800));
        assert!(parse_duration_secs("1y").is_err());
        assert!(parse_duration_secs("-5m").is_err());
        assert!(parse_duration_secs("").is_err());
    }

    #[test]
    fn origins() {
        assert!(origin_allowed(&[], Some("https://x")));
        let list = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&list, Some("https://app.example")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(origin_allowed(&list, None));
    }
}
