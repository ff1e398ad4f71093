//! The signed package index: ed25519 signature check over the exact index
//! bytes, parsing and validation of every entry, dependency resolution.
//!
//! Index (format rules in the `lwpkgindex` crate, pkgindex/): `{"format": 1, "serial": N,
//! "expires": "YYYY-MM-DDTHH:MM:SSZ", "packages": {NAME:
//! ENTRY or [ENTRY, ...]}}` where ENTRY is `{"version", "description",
//! "url" (relative to the repository base, or absolute), "size", "sha256",
//! "arch" ("wasm32" | "x86_64"), "depends": [NAME...], "bin" (command name,
//! default NAME)}`. The signature file is 128 hex digits (64 bytes) and a
//! key file 64 hex digits (32 bytes); `#` comment lines are allowed in both.
//! `serial` (increased by `lwpkg-index build` on every build) and `expires`
//! (RFC 3339, UTC) protect against rollback and freeze; see
//! [`freshness`].

use crate::fs::{Error, Result};
use crate::json::{self, Value};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};
pub use lwpkgindex::{hex_decode, hex_encode, valid_bin, valid_name, valid_version, ARCHES};

/// The architecture these tools run on; packages for another are refused.
pub const THIS_ARCH: &str = if cfg!(target_arch = "wasm32") {
    "wasm32"
} else {
    "x86_64"
};
/// Refuse larger index files outright.
pub const MAX_INDEX: usize = 8 << 20;

/// The payload of a key or signature file (see [`lwpkgindex::hex_payload`]).
fn hex_payload(text: &[u8]) -> Option<String> {
    core::str::from_utf8(text).ok().map(lwpkgindex::hex_payload)
}

pub fn parse_public_key(text: &[u8]) -> Result<VerifyingKey> {
    let hex = hex_payload(text).ok_or_else(|| Error::msg("key file is not text"))?;
    let bytes: [u8; 32] = hex_decode(&hex)
        .ok_or_else(|| Error::msg("key file must hold 64 hex digits (an ed25519 public key)"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| Error::msg("not a valid ed25519 public key"))
}

pub fn parse_signature(text: &[u8]) -> Result<Signature> {
    let hex = hex_payload(text).ok_or_else(|| Error::msg("signature file is not text"))?;
    let bytes: [u8; 64] = hex_decode(&hex).ok_or_else(|| {
        Error::msg(format!(
            "signature must be 128 hex digits, found {} characters",
            hex.len()
        ))
    })?;
    Ok(Signature::from_bytes(&bytes))
}

/// Accepts the index only if one of `keys` signed exactly these bytes;
/// returns the index of that key.
pub fn verify(index: &[u8], sig_text: &[u8], keys: &[VerifyingKey]) -> Result<usize> {
    if keys.is_empty() {
        return Err(Error::msg(
            "no trusted keys: put the repository's public key in /etc/lwpkg/keys/NAME.pub",
        ));
    }
    let sig = parse_signature(sig_text)?;
    keys.iter()
        .position(|k| verify_strict(k, index, &sig))
        .ok_or_else(|| Error::msg("index signature does not match any trusted key: refusing the index"))
}

/// `key.verify_strict(msg, sig).is_ok()` (ed25519-dalek 2.2,
/// src/verifying.rs: RFC 8032 §5.1.7 with a canonical `s`, a canonical `R`
/// by comparing encodings, and small-order `R` or key refused), computed
/// from the same library's parts in steps that are separate, non-inlined
/// functions, and with [s]B and [k]A as two single-scalar multiplications
/// instead of dalek's double-base one. Inlined as one, the check kept about
/// 7.5 KiB on the stack on wasm32 (each step's points, NAFs and lookup
/// tables side by side), nearly all of binfmt_wasm's 8 KiB; in steps the
/// deepest needs about 3.3 KiB. `signature_checks_match_dalek` holds it to
/// dalek's answer.
fn verify_strict(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
    let Some(s) = strict::canonical_s(sig.s_bytes()) else {
        return false;
    };
    let r = CompressedEdwardsY(*sig.r_bytes());
    strict::points_ok(&r, key) && strict::expected_r(&strict::challenge(&r, key, msg), key, &s) == r
}

/// The steps of [`verify_strict`], each its own stack frame.
mod strict {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::VerifyingKey;
    use sha2::{Digest, Sha512};

    /// `s` if it is below the group order ℓ (no malleable signatures).
    #[inline(never)]
    pub(super) fn canonical_s(bytes: &[u8; 32]) -> Option<Scalar> {
        Scalar::from_canonical_bytes(*bytes).into()
    }

    /// `R` decodes to a point, and neither `R` nor the key has small order.
    #[inline(never)]
    pub(super) fn points_ok(r: &CompressedEdwardsY, key: &VerifyingKey) -> bool {
        r.decompress().is_some_and(|p| !p.is_small_order()) && !key.is_weak()
    }

    /// k = SHA-512(R || A || M) mod ℓ.
    #[inline(never)]
    pub(super) fn challenge(r: &CompressedEdwardsY, key: &VerifyingKey, msg: &[u8]) -> Scalar {
        let mut h = Sha512::new();
        h.update(r.as_bytes());
        h.update(key.as_bytes());
        h.update(msg);
        Scalar::from_hash(h)
    }

    /// [s]B - [k]A, encoded: equals `R` for a valid signature. Each
    /// multiplication in its own frame (one lookup table at a time).
    #[inline(never)]
    pub(super) fn expected_r(k: &Scalar, key: &VerifyingKey, s: &Scalar) -> CompressedEdwardsY {
        (mul_base(s) + mul(k, &-key.to_edwards())).compress()
    }

    #[inline(never)]
    fn mul_base(s: &Scalar) -> EdwardsPoint {
        EdwardsPoint::mul_base(s)
    }

    #[inline(never)]
    fn mul(k: &Scalar, p: &EdwardsPoint) -> EdwardsPoint {
        p * k
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub version: String,
    pub description: String,
    pub url: String,
    pub size: u64,
    pub sha256: [u8; 32],
    pub arch: String,
    pub depends: Vec<String>,
    pub bin: String,
}

/// Every entry of the index, for every architecture, by name.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub packages: BTreeMap<String, Vec<Entry>>,
    /// The registry's build serial (None in indexes made before serials existed).
    pub serial: Option<u64>,
    /// Expiry, seconds since the Unix epoch (None in older indexes).
    pub expires: Option<i64>,
}

/// Seconds since the epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SSZ`
/// (fractional seconds ignored; `t`/`z` accepted, RFC 3339 §5.6; other
/// offsets refused: the index is in UTC).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    if !(rest == "Z" || rest == "z") {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > mdays[(mo - 1) as usize] || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`, public domain algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch (for messages).
pub fn format_rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    // Inverse of days_from_civil (same source).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Orders versions: the leading dotted numeric part (`1.10.2`) compared
/// component by component as numbers, then the rest compared as Debian
/// compares version strings (deb-version(7): `~` sorts before anything,
/// even the end; letters before other characters; digit runs as numbers).
pub fn compare_versions(a: &str, b: &str) -> core::cmp::Ordering {
    fn split(v: &str) -> (Vec<u64>, &str) {
        let mut nums = Vec::new();
        let mut rest = v;
        loop {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                break;
            }
            nums.push(rest[..n].parse::<u64>().unwrap_or(u64::MAX));
            rest = &rest[n..];
            match rest.strip_prefix('.') {
                Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => rest = r,
                _ => break,
            }
        }
        (nums, rest)
    }
    let (na, ra) = split(a);
    let (nb, rb) = split(b);
    na.cmp(&nb).then_with(|| debian_cmp(ra.as_bytes(), rb.as_bytes()))
}

/// dpkg's verrevcmp (lib/dpkg/version.c, described in deb-version(7)).
fn debian_cmp(mut a: &[u8], mut b: &[u8]) -> core::cmp::Ordering {
    fn order(c: Option<&u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(c) => i32::from(*c) + 256,
        }
    }
    while !a.is_empty() || !b.is_empty() {
        loop {
            let (ca, cb) = (a.first(), b.first());
            let a_non = ca.is_some_and(|c| !c.is_ascii_digit());
            let b_non = cb.is_some_and(|c| !c.is_ascii_digit());
            if !a_non && !b_non {
                break;
            }
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            a = &a[1.min(a.len())..];
            b = &b[1.min(b.len())..];
        }
        let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let (da, db) = (&a[..na], &b[..nb]);
        let strip = |d: &[u8]| -> usize { d.iter().take_while(|&&c| c == b'0').count() };
        let (da, db) = (&da[strip(da)..], &db[strip(db)..]);
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if c != core::cmp::Ordering::Equal {
            return c;
        }
        a = &a[na..];
        b = &b[nb..];
    }
    core::cmp::Ordering::Equal
}

/// What an index fetched by `lwpkg update` is, relative to the last one
/// accepted from the same repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Nothing accepted before (trust on first use).
    First,
    /// The same serial and the same bytes.
    Same,
    /// A higher serial.
    Newer,
}

/// The rollback/freeze decision (index freshness: no rollback, no freeze): refuses an
/// index that has expired at `now` (seconds since the epoch), one with a
/// lower serial than `prev`, and one with `prev`'s serial but other bytes
/// (`digest` = sha256 of the index). Messages name `repo` and both serials
/// or the expiry.
pub fn freshness(
    repo: &str,
    prev: Option<(u64, [u8; 32])>,
    serial: u64,
    digest: &[u8; 32],
    expires: i64,
    now: i64,
) -> Result<Fresh> {
    if expires <= now {
        return Err(Error::msg(format!(
            "{repo}: the index (serial {serial}) expired at {} (now {}): refusing a stale index",
            format_rfc3339(expires),
            format_rfc3339(now)
        )));
    }
    let Some((old, old_digest)) = prev else {
        return Ok(Fresh::First);
    };
    if serial < old {
        return Err(Error::msg(format!(
            "{repo}: the index has serial {serial}, lower than serial {old} accepted before: refusing a rollback"
        )));
    }
    if serial == old && *digest != old_digest {
        return Err(Error::msg(format!(
            "{repo}: the index has serial {serial} like the one accepted before, but different bytes: refusing it"
        )));
    }
    Ok(if serial == old { Fresh::Same } else { Fresh::Newer })
}

fn parse_entry(name: &str, v: &Value) -> Result<Entry> {
    let ctx = |what: &str| Error::msg(format!("package {name:?}: {what}"));
    if !matches!(v, Value::Obj(_)) {
        return Err(ctx(&format!("expected an object, found {}", v.kind())));
    }
    let string = |key: &str| -> Result<Option<String>> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ctx(&format!("{key} must be a string, found {}", other.kind()))),
        }
    };
    let version = string("version")?.ok_or_else(|| ctx("missing version"))?;
    if !valid_version(&version) {
        return Err(ctx(&format!("bad version {version:?}")));
    }
    let url = match string("url")? {
        Some(u) => u,
        None => string("binary")?.ok_or_else(|| ctx("missing url"))?,
    };
    if url.is_empty() || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ctx("bad url"));
    }
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| ctx("size must be a non-negative integer"))?;
    let sha = string("sha256")?.ok_or_else(|| ctx("missing sha256"))?;
    let sha256 = hex_decode::<32>(&sha).ok_or_else(|| ctx("sha256 must be 64 hex digits"))?;
    let arch = string("arch")?.ok_or_else(|| ctx("missing arch"))?;
    if !ARCHES.contains(&arch.as_str()) {
        return Err(ctx(&format!("unknown arch {arch:?} (wasm32 or x86_64)")));
    }
    let mut depends = Vec::new();
    match v.get("depends") {
        None | Some(Value::Null) => {}
        Some(Value::Arr(items)) => {
            for d in items {
                let d = d.as_str().ok_or_else(|| ctx("depends must list names"))?;
                if !valid_name(d) {
                    return Err(ctx(&format!("bad dependency name {d:?}")));
                }
                if !depends.iter().any(|x: &String| x == d) {
                    depends.push(d.to_string());
                }
            }
        }
        Some(other) => return Err(ctx(&format!("depends must be an array, found {}", other.kind()))),
    }
    let bin = string("bin")?.unwrap_or_else(|| name.to_string());
    if !valid_bin(&bin) {
        return Err(ctx(&format!("bad command name {bin:?}")));
    }
    Ok(Entry {
        name: name.to_string(),
        version,
        description: string("description")?.unwrap_or_default(),
        url,
        size,
        sha256,
        arch,
        depends,
        bin,
    })
}

impl Index {
    /// Parses (already verified) index bytes, validating every entry.
    pub fn parse(bytes: &[u8]) -> Result<Index> {
        if bytes.len() > MAX_INDEX {
            return Err(Error::msg(format!("index larger than {MAX_INDEX} bytes")));
        }
        let doc = json::parse(bytes).map_err(|e| e.context("index"))?;
        match doc.get("format") {
            None => {}
            Some(f) if f.as_u64() == Some(lwpkgindex::FORMAT) => {}
            Some(_) => {
                return Err(Error::msg(format!(
                    "index: unsupported format (this lwpkg reads format {})",
                    lwpkgindex::FORMAT
                )))
            }
        }
        let pkgs = match doc.get("packages") {
            Some(Value::Obj(m)) => m,
            Some(other) => {
                return Err(Error::msg(format!(
                    "index: packages must be an object, found {}",
                    other.kind()
                )))
            }
            None => return Err(Error::msg("index: no packages object")),
        };
        let serial = match doc.get("serial") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| Error::msg("index: serial must be a non-negative integer"))?,
            ),
        };
        let expires = match doc.get("expires") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_str().and_then(parse_rfc3339).ok_or_else(|| {
                Error::msg("index: expires must be an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)")
            })?),
        };
        let mut packages = BTreeMap::new();
        for (name, v) in pkgs {
            if !valid_name(name) {
                return Err(Error::msg(format!("index: bad package name {name:?}")));
            }
            let entries = match v {
                Value::Arr(items) => items
                    .iter()
                    .map(|i| parse_entry(name, i))
                    .collect::<Result<Vec<_>>>()?,
                one => alloc::vec![parse_entry(name, one)?],
            };
            for (i, e) in entries.iter().enumerate() {
                if entries[..i].iter().any(|o| o.arch == e.arch) {
                    return Err(Error::msg(format!(
                        "index: package {name:?} lists arch {} twice",
                        e.arch
                    )));
                }
            }
            packages.insert(name.clone(), entries);
        }
        Ok(Index {
            packages,
            serial,
            expires,
        })
    }

    /// The entry for `arch`, or why there is none.
    pub fn lookup(&self, name: &str, arch: &str) -> Result<&Entry> {
        let entries = self
            .packages
            .get(name)
            .ok_or_else(|| Error::msg(format!("no package named {name:?}")))?;
        entries.iter().find(|e| e.arch == arch).ok_or_else(|| {
            let have: Vec<&str> = entries.iter().map(|e| e.arch.as_str()).collect();
            Error::msg(format!(
                "refusing {name}: it is built for {} and this system is {arch}",
                have.join(", ")
            ))
        })
    }
}

/// The install order for `wanted`: each package after its dependencies.
/// Cycles, missing packages and other-arch packages are errors naming the chain.
pub fn resolve<'a>(index: &'a Index, wanted: &[String], arch: &str) -> Result<Vec<&'a Entry>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    // A depth-first walk with its path on the heap, not recursion: a long
    // dependency chain in an index does not grow the (8 KiB) stack.
    let mut marks: BTreeMap<String, Mark> = BTreeMap::new();
    let mut out = Vec::new();
    for w in wanted {
        // The names from the wanted package down, and for each its entry and
        // how many of its dependencies have been visited.
        let mut stack: Vec<String> = Vec::new();
        let mut open: Vec<(&'a Entry, usize)> = Vec::new();
        let mut next: Option<&str> = Some(w);
        loop {
            if let Some(name) = next.take() {
                match marks.get(name) {
                    Some(Mark::Done) => {}
                    Some(Mark::Visiting) => {
                        let start = stack.iter().position(|s| s == name).unwrap_or(0);
                        let mut cycle = stack[start..].to_vec();
                        cycle.push(name.to_string());
                        return Err(Error::msg(format!("dependency cycle: {}", cycle.join(" -> "))));
                    }
                    None => {
                        let entry = index.lookup(name, arch).map_err(|e| match stack.last() {
                            Some(parent) => e.context(format!("{parent} depends on {name}")),
                            None => e,
                        })?;
                        marks.insert(name.to_string(), Mark::Visiting);
                        stack.push(name.to_string());
                        open.push((entry, 0));
                    }
                }
            }
            let Some((entry, done)) = open.last_mut() else {
                break;
            };
            let entry: &'a Entry = entry;
            if let Some(d) = entry.depends.get(*done) {
                *done += 1;
                next = Some(d);
                continue;
            }
            open.pop();
            if let Some(name) = stack.pop() {
                marks.insert(name, Mark::Done);
            }
            out.push(entry);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn entry_json(version: &str, arch: &str, deps: &[&str]) -> String {
        let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
        format!(
            r#"{{"version":"{version}","description":"d","url":"p.bin","size":3,"sha256":"{}","arch":"{arch}","depends":[{}]}}"#,
            "ab".repeat(32),
            deps.join(",")
        )
    }

    fn index(pkgs: &[(&str, &str, &[&str])]) -> Index {
        let body: Vec<String> = pkgs
            .iter()
            .map(|(n, a, d)| format!("\"{n}\":{}", entry_json("1.0", a, d)))
            .collect();
        Index::parse(format!("{{\"format\":1,\"packages\":{{{}}}}}", body.join(",")).as_bytes()).unwrap()
    }

    /// [`verify_strict`] answers as ed25519-dalek's `verify_strict` does:
    /// good, tampered, swapped, non-canonical `s` (s + ℓ), small-order `R`
    /// and key (the identity), and `R` not on the curve.
    #[test]
    fn signature_checks_match_dalek() {
        const ORDER: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        for seed in 1..6u8 {
            let sk = key(seed);
            let vk = sk.verifying_key();
            let msg = format!("index {seed}");
            let good = sk.sign(msg.as_bytes()).to_bytes();
            let mut tampered = good;
            tampered[seed as usize] ^= 1;
            let mut plus_order = good;
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(plus_order[32 + i]) + u16::from(ORDER[i]) + carry;
                plus_order[32 + i] = v as u8;
                carry = v >> 8;
            }
            let mut small_r = good;
            small_r[..32].copy_from_slice(&identity);
            let mut bad_r = good;
            bad_r[..32].copy_from_slice(&[0xff; 32]);
            for sig in [good, tampered, plus_order, small_r, bad_r] {
                let sig = Signature::from_bytes(&sig);
                for k in [&vk, &key(seed + 1).verifying_key(), &weak] {
                    for m in [msg.as_bytes(), b"other"] {
                        assert_eq!(verify_strict(k, m, &sig), k.verify_strict(m, &sig).is_ok());
                    }
                }
            }
            assert!(verify_strict(&vk, msg.as_bytes(), &Signature::from_bytes(&good)));
        }
    }

    #[test]
    fn signature_checks() {
        let idx = b"{\"packages\":{}}";
        let good = key(1);
        let sig = hex_encode(&good.sign(idx).to_bytes());
        let pubs = [key(9).verifying_key(), good.verifying_key()];
        assert_eq!(
            verify(idx, format!("# comment\n{sig}\n").as_bytes(), &pubs).unwrap(),
            1
        );
        // Tampered index: one byte changed, or a trailing newline added.
        assert!(verify(b"{\"packages\":{ }}", sig.as_bytes(), &pubs).is_err());
        assert!(verify(b"{\"packages\":{}}\n", sig.as_bytes(), &pubs).is_err());
        // Wrong key.
        assert!(verify(idx, sig.as_bytes(), &[key(2).verifying_key()])
            .unwrap_err()
            .msg
            .contains("does not match"));
        // Truncated, padded, non-hex and empty signatures.
        assert!(verify(idx, &sig.as_bytes()[..100], &pubs)
            .unwrap_err()
            .msg
            .contains("128 hex"));
        assert!(verify(idx, format!("{sig}00").as_bytes(), &pubs).is_err());
        assert!(verify(idx, "zz".repeat(64).as_bytes(), &pubs).is_err());
        assert!(verify(idx, b"", &pubs).is_err());
        assert!(verify(idx, &[0xff, 0xfe], &pubs).is_err());
        // No keys at all.
        assert!(verify(idx, sig.as_bytes(), &[])
            .unwrap_err()
            .msg
            .contains("no trusted keys"));
        // Key files.
        let pk = hex_encode(good.verifying_key().as_bytes());
        assert!(parse_public_key(format!("# repo key\n{pk}\n").as_bytes()).is_ok());
        assert!(parse_public_key(&pk.as_bytes()[..62]).is_err());
    }

    #[test]
    fn index_entries_are_validated() {
        let ok = index(&[("hello", "x86_64", &[])]);
        let e = ok.lookup("hello", "x86_64").unwrap();
        assert_eq!((e.size, e.bin.as_str(), e.sha256[0]), (3, "hello", 0xab));
        assert!(ok
            .lookup("hello", "wasm32")
            .unwrap_err()
            .msg
            .contains("built for x86_64"));
        assert!(ok.lookup("nope", "x86_64").is_err());

        let good = entry_json("1.0", "x86_64", &[]);
        let bad_entries = [
            good.replace("\"1.0\"", "\"../1\""),
            good.replace("\"1.0\"", "1"),
            good.replace("\"x86_64\"", "\"arm\""),
            good.replace("\"size\":3", "\"size\":-3"),
            good.replace("\"size\":3", "\"size\":3.5"),
            good.replace("\"size\":3", "\"size\":\"3\""),
            good.replace(&"ab".repeat(32), "abc"),
            good.replace("\"p.bin\"", "\"a b\""),
            good.replace("\"depends\":[]", "\"depends\":[\"../x\"]"),
            good.replace("\"depends\":[]", "\"depends\":\"x\""),
            good.replace("\"version\":\"1.0\",", ""),
            good.replace("}", ",\"bin\":\"../sh\"}"),
        ];
        for bad in &bad_entries {
            let doc = format!("{{\"packages\":{{\"hello\":{bad}}}}}");
            assert!(Index::parse(doc.as_bytes()).is_err(), "{bad}");
        }
        for bad_name in ["../etc", "A", "", "-x", "a/b"] {
            let doc = format!("{{\"packages\":{{\"{bad_name}\":{good}}}}}");
            assert!(Index::parse(doc.as_bytes()).is_err(), "{bad_name}");
        }
        let twice = format!("{{\"packages\":{{\"h\":[{good},{good}]}}}}");
        assert!(Index::parse(twice.as_bytes()).unwrap_err().msg.contains("twice"));
        assert!(Index::parse(b"{\"format\":2,\"packages\":{}}").is_err());
        assert!(Index::parse(b"[]").is_err());
        let both = format!(
            "{{\"packages\":{{\"h\":[{good},{}]}}}}",
            entry_json("2.0", "wasm32", &[])
        );
        let idx = Index::parse(both.as_bytes()).unwrap();
        assert_eq!(idx.lookup("h", "wasm32").unwrap().version, "2.0");
    }

    fn names(v: &[&Entry]) -> Vec<String> {
        v.iter().map(|e| e.name.clone()).collect()
    }

    #[test]
    fn dependencies_resolve_in_order() {
        let idx = index(&[
            ("app", "x86_64", &["lib", "util"]),
            ("lib", "x86_64", &["util"]),
            ("util", "x86_64", &[]),
        ]);
        assert_eq!(
            names(&resolve(&idx, &["app".into()], "x86_64").unwrap()),
            ["util", "lib", "app"]
        );
        assert_eq!(
            names(&resolve(&idx, &["util".into(), "app".into()], "x86_64").unwrap()),
            ["util", "lib", "app"]
        );
    }

    #[test]
    fn long_dependency_chains_resolve_deepest_first() {
        let n: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
        let deps: Vec<[&str; 1]> = (0..300).map(|i| [n[(i + 1) % 300].as_str()]).collect();
        let mut pkgs: Vec<(&str, &str, &[&str])> = (0..299)
            .map(|i| (n[i].as_str(), "x86_64", &deps[i][..]))
            .collect();
        pkgs.push((n[299].as_str(), "x86_64", &[]));
        let got = names(&resolve(&index(&pkgs), &["p0".into()], "x86_64").unwrap());
        assert_eq!(got, n.iter().rev().cloned().collect::<Vec<_>>());
        // Closed into a cycle, it is named from the start.
        pkgs[299].2 = &deps[299][..];
        let e = resolve(&index(&pkgs), &["p0".into()], "x86_64").unwrap_err();
        assert!(
            e.msg.contains("cycle: p0 -> p1 -> ") && e.msg.ends_with("p299 -> p0"),
            "{e}"
        );
    }

    #[test]
    fn dependency_failures_name_the_chain() {
        let cyc = index(&[
            ("a", "x86_64", &["b"]),
            ("b", "x86_64", &["c"]),
            ("c", "x86_64", &["a"]),
        ]);
        let e = resolve(&cyc, &["a".into()], "x86_64").unwrap_err();
        assert!(e.msg.contains("cycle: a -> b -> c -> a"), "{e}");
        let selfdep = index(&[("a", "x86_64", &["a"])]);
        assert!(resolve(&selfdep, &["a".into()], "x86_64")
            .unwrap_err()
            .msg
            .contains("a -> a"));
        let missing = index(&[("a", "x86_64", &["ghost"])]);
        let e = resolve(&missing, &["a".into()], "x86_64").unwrap_err();
        assert!(
            e.msg.contains("a depends on ghost") && e.msg.contains("no package named"),
            "{e}"
        );
        let other = index(&[("a", "x86_64", &["w"]), ("w", "wasm32", &[])]);
        let e = resolve(&other, &["a".into()], "x86_64").unwrap_err();
        assert!(e.msg.contains("built for wasm32"), "{e}");
    }

    #[test]
    fn versions_order_numerically_then_like_debian() {
        use core::cmp::Ordering::*;
        let ascending = [
            "0.9", "1~~", "1~~a", "1~", "1", "1a", "1+b", "1.0~rc1", "1.0", "1.0a", "1.0.1", "1.2", "1.9",
            "1.10", "1.10.0", "2.0~beta", "2.0", "2.0-1", "10",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(compare_versions("1.01", "1.1"), Equal);
        assert_eq!(compare_versions("1.0-rc2", "1.0-rc10"), Less);
        assert_eq!(compare_versions("99999999999999999999999", "1"), Greater);
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-30T15:00:00Z"), Some(1_796_050_800));
        assert_eq!(parse_rfc3339("2000-02-29T12:34:56.789z"), Some(951_827_696));
        for t in [0, 951_827_696, 1_796_050_800, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
        for bad in [
            "2026-11-30T15:00:00",
            "2026-11-30T15:00:00+01:00",
            "2026-11-30 15:00:00Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T15:00:00.Z",
            "２026-11-30T15:00:00Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn freshness_decisions() {
        let (d1, d2) = ([1u8; 32], [2u8; 32]);
        let now = 1_000_000;
        let f = |prev, serial, digest: &[u8; 32], expires| {
            freshness("http://r/", prev, serial, digest, expires, now)
        };
        assert_eq!(f(None, 5, &d1, now + 1).unwrap(), Fresh::First);
        assert_eq!(f(Some((5, d1)), 5, &d1, now + 1).unwrap(), Fresh::Same);
        assert_eq!(f(Some((5, d1)), 6, &d2, now + 1).unwrap(), Fresh::Newer);
        let e = f(Some((5, d1)), 4, &d2, now + 1).unwrap_err();
        assert!(
            e.msg.contains("http://r/") && e.msg.contains("serial 4") && e.msg.contains("serial 5"),
            "{e}"
        );
        let e = f(Some((5, d1)), 5, &d2, now + 1).unwrap_err();
        assert!(
            e.msg.contains("serial 5") && e.msg.contains("different bytes"),
            "{e}"
        );
        // Expired: refused even on first contact; the message names the time.
        let e = f(None, 9, &d1, now).unwrap_err();
        assert!(
            e.msg.contains("http://r/") && e.msg.contains("expired at 1970-01-12T13:46:40Z"),
            "{e}"
        );
        // Index fields.
        let ok = Index::parse(br#"{"format":1,"serial":7,"expires":"2030-01-01T00:00:00Z","packages":{}}"#)
            .unwrap();
        assert_eq!((ok.serial, ok.expires), (Some(7), Some(1_893_456_000)));
        assert!(Index::parse(br#"{"serial":-1,"packages":{}}"#).is_err());
        assert!(Index::parse(br#"{"serial":"7","packages":{}}"#).is_err());
        assert!(Index::parse(br#"{"expires":"tomorrow","packages":{}}"#).is_err());
    }
}
