//! The signed package index: ed25519 signature check over the exact index
//! bytes, parsing and validation of every entry, dependency resolution.
//!
//! Index (seed 000 §3.2–3.3, extended): `{"format": 1, "packages": {NAME:
//! ENTRY or [ENTRY, ...]}}` where ENTRY is `{"version", "description",
//! "url" (relative to the repository base, or absolute), "size", "sha256",
//! "arch" ("wasm32" | "x86_64"), "depends": [NAME...], "bin" (command name,
//! default NAME)}`. The signature file is 128 hex digits (64 bytes) and a
//! key file 64 hex digits (32 bytes); `#` comment lines are allowed in both.

use crate::fs::{Error, Result};
use crate::json::{self, Value};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ed25519_dalek::{Signature, VerifyingKey};

/// The architecture these tools run on; packages for another are refused.
pub const THIS_ARCH: &str = if cfg!(target_arch = "wasm32") {
    "wasm32"
} else {
    "x86_64"
};
pub const ARCHES: &[&str] = &["wasm32", "x86_64"];
/// Refuse larger index files outright.
pub const MAX_INDEX: usize = 8 << 20;

pub fn hex_encode(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// Decodes exactly `N` bytes of hex (either case).
pub fn hex_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The payload of a key or signature file: hex, ignoring `#` lines and whitespace.
fn hex_payload(text: &[u8]) -> Option<String> {
    let text = core::str::from_utf8(text).ok()?;
    let mut s = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        s.push_str(line);
    }
    Some(s)
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
        .position(|k| k.verify_strict(index, &sig).is_ok())
        .ok_or_else(|| Error::msg("index signature does not match any trusted key: refusing the index"))
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

/// Package names and versions become path components: keep them plain.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._+-".contains(&b))
}

pub fn valid_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b))
}

/// A command name in /usr/local/bin.
pub fn valid_bin(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// Every entry of the index, for every architecture, by name.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub packages: BTreeMap<String, Vec<Entry>>,
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
            Some(f) if f.as_u64() == Some(1) => {}
            Some(_) => {
                return Err(Error::msg(
                    "index: unsupported format (this lwpkg reads format 1)",
                ))
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
        Ok(Index { packages })
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
    fn visit<'a>(
        index: &'a Index,
        name: &str,
        arch: &str,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<&'a Entry>,
    ) -> Result<()> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| s == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_string());
                return Err(Error::msg(format!("dependency cycle: {}", cycle.join(" -> "))));
            }
            None => {}
        }
        let entry = index.lookup(name, arch).map_err(|e| match stack.last() {
            Some(parent) => e.context(format!("{parent} depends on {name}")),
            None => e,
        })?;
        marks.insert(name.to_string(), Mark::Visiting);
        stack.push(name.to_string());
        for d in &entry.depends {
            visit(index, d, arch, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(name.to_string(), Mark::Done);
        out.push(entry);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(index, w, arch, &mut marks, &mut Vec::new(), &mut out)?;
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
}
