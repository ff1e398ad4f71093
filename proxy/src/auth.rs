//! Authentication: HS256 JWTs verified by the `jsonwebtoken` crate (RFC 7519) with the
//! algorithm pinned to HS256, `exp` and `sub` required, `nbf` honoured, both with the same
//! leeway; and the origin allowlist.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 5;
/// Longest token accepted (before any decoding work).
const MAX_TOKEN_LEN: usize = 4096;
/// Longest subject used as an identity.
const MAX_SUB_LEN: usize = 128;

/// The claims lwproxy reads (RFC 7519 §4.1); others are ignored.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
}

/// Why a client was not authenticated (answered with 401; the text goes to the log).
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

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Mints a token for `sub` valid for `ttl_secs` from now (`lwproxy token`).
pub fn mint(secret: &[u8], sub: &str, ttl_secs: i64) -> anyhow::Result<String> {
    let now = now_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now.saturating_add(ttl_secs),
        nbf: Some(now),
        iat: Some(now),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// The one validation every token passes: HS256 only (a token naming any other algorithm,
/// `none` included, is refused before its signature is looked at), `exp` and `sub` present,
/// `exp` and `nbf` checked against the clock with [`LEEWAY_SECS`].
fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_required_spec_claims(&["exp", "sub"]);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v
}

/// Verifies a token against the current clock; returns its subject (1 to 128 bytes).
pub fn verify(secret: &[u8], token: &str) -> Result<String, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("too long"));
    }
    if token.split('.').count() != 3 {
        return Err(AuthError::Malformed("expected three dot-separated parts"));
    }
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation())
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithm => AuthError::Algorithm(
                jsonwebtoken::decode_header(token)
                    .map(|h| format!("{:?}", h.alg))
                    .unwrap_or_default(),
            ),
            // The header names an algorithm the crate does not know (`none`, made-up names).
            ErrorKind::Json(_) if jsonwebtoken::decode_header(token).is_err() => {
                AuthError::Malformed("header (or an algorithm other than HS256)")
            }
            ErrorKind::InvalidSignature => AuthError::Signature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => {
                AuthError::Malformed("claims (need string 'sub' and integer 'exp')")
            }
            _ => AuthError::Malformed("encoding"),
        })?;
    let sub = data.claims.sub;
    if sub.is_empty() || sub.len() > MAX_SUB_LEN {
        return Err(AuthError::Malformed("'sub' must be 1 to 128 bytes"));
    }
    Ok(sub)
}

/// Parses a positive duration into whole seconds: a number with one unit `s`, `m`, `h` or `d`
/// (`30s`, `10m`, `1h`, `7d`, `1.5h`) or plain seconds (`90`). Units without a fixed length
/// (months, years) are refused. The grammar is fundu's with those four units; `Err` says why.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    use fundu::TimeUnit::{Day, Hour, Minute, Second};
    const PARSER: fundu::DurationParser =
        fundu::DurationParser::with_time_units(&[Second, Minute, Hour, Day]);
    let s = s.trim();
    let d = PARSER
        .parse(s)
        .map_err(|e| format!("'{s}' is not a duration like 30s, 10m, 1h, 7d ({e})"))?;
    let too_long = || format!("'{s}' is too long");
    let secs = std::time::Duration::try_from(d)
        .map_err(|_| too_long())?
        .as_secs();
    if secs == 0 {
        return Err(format!("'{s}' is shorter than a second"));
    }
    i64::try_from(secs).map_err(|_| too_long())
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
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};

    const KEY: &[u8] = b"test-secret";

    /// Signs arbitrary header and claims text by hand, so tokens the crate would never mint
    /// (other algorithms, missing claims) can be tried.
    fn forge(header: &str, claims: &str, key: &[u8]) -> String {
        let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(input.as_bytes());
        format!("{input}.{}", B64URL.encode(m.finalize().into_bytes()))
    }

    #[test]
    fn minted_token_verifies() {
        let t = mint(KEY, "alice", 3600).unwrap();
        assert_eq!(verify(KEY, &t), Ok("alice".into()));
    }

    #[test]
    fn rejections() {
        let now = now_secs();
        let t = mint(KEY, "alice", 60).unwrap();
        assert_eq!(verify(b"other", &t), Err(AuthError::Signature));
        let claims = |exp: i64, nbf: Option<i64>| match nbf {
            Some(n) => format!(r#"{{"sub":"a","exp":{exp},"nbf":{n}}}"#),
            None => format!(r#"{{"sub":"a","exp":{exp}}}"#),
        };
        let hs = r#"{"alg":"HS256"}"#;
        assert_eq!(
            verify(KEY, &forge(hs, &claims(now - 60, None), KEY)),
            Err(AuthError::Expired)
        );
        // Within the leeway on both sides.
        assert!(verify(KEY, &forge(hs, &claims(now - 2, None), KEY)).is_ok());
        assert!(verify(KEY, &forge(hs, &claims(now + 600, Some(now + 2)), KEY)).is_ok());
        assert_eq!(
            verify(KEY, &forge(hs, &claims(now + 7200, Some(now + 3600)), KEY)),
            Err(AuthError::NotYetValid)
        );
        let none = format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none"}"#),
            B64URL.encode(claims(now + 60, None))
        );
        assert!(matches!(verify(KEY, &none), Err(AuthError::Malformed(_))));
        let hs512 = forge(r#"{"alg":"HS512"}"#, &claims(now + 60, None), KEY);
        assert_eq!(verify(KEY, &hs512), Err(AuthError::Algorithm("HS512".into())));
        let rs256 = forge(r#"{"alg":"RS256"}"#, &claims(now + 60, None), KEY);
        assert_eq!(verify(KEY, &rs256), Err(AuthError::Algorithm("RS256".into())));
        for c in [
            r#"{"sub":"a"}"#,
            &format!(r#"{{"exp":{}}}"#, now + 60),
            r#"{"sub":"a","exp":"x"}"#,
        ] {
            assert!(
                matches!(verify(KEY, &forge(hs, c, KEY)), Err(AuthError::Malformed(_))),
                "{c}"
            );
        }
        let long_sub = format!(r#"{{"sub":"{}","exp":{}}}"#, "x".repeat(200), now + 60);
        assert!(matches!(
            verify(KEY, &forge(hs, &long_sub, KEY)),
            Err(AuthError::Malformed(_))
        ));
        for junk in ["", "a.b", "a.b.c.d", "!!!.###.$$$", &"x".repeat(5000)] {
            assert!(verify(KEY, junk).is_err(), "{junk}");
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
        assert_eq!(parse_duration_secs(" 1.5h "), Ok(5400));
        assert_eq!(
            parse_duration_secs("0s"),
            Err("'0s' is shorter than a second".into())
        );
        assert_eq!(parse_duration_secs("inf"), Err("'inf' is too long".into()));
        assert!(parse_duration_secs("1y")
            .unwrap_err()
            .contains("'1y' is not a duration like 30s"));
        for junk in ["1 h", "h", "1hh", "1h1", "1M", "1w", "99999999999999999999999d"] {
            assert!(parse_duration_secs(junk).is_err(), "{junk}");
        }
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
