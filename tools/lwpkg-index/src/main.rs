//! lwpkg-index: the registry side of lwpkg. Generates signing keys, builds
//! `index.json` from a directory of package files and their metadata, and
//! signs it (a detached ed25519 signature over the exact index bytes). The
//! registry is then any static HTTP server serving that directory.
//!
//! Metadata: each `*.pkg.json` file anywhere under DIR describes one build:
//! `{"name", "version", "arch": "wasm32"|"x86_64", "file": path relative to
//! the metadata file, "description"?, "depends"?: [names], "bin"?: command}`.
//! The index carries `serial` (higher than the previous index at the output
//! path on every build) and `expires` (RFC 3339 UTC, default 30 days ahead):
//! lwpkg refuses a lower serial and an expired index. Two
//! packages may not provide one command.
//! Key and signature files are hex text (`#` comment lines allowed), the
//! format lwpkg reads from /etc/lwpkg/keys/*.pub and index.json.sig.

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use lwpkgindex::{hex_encode as hex, valid_bin, valid_name, valid_version, ARCHES, FORMAT};

#[derive(Parser)]
#[command(
    name = "lwpkg-index",
    version,
    about = "Build and sign the lwpkg package index"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a signing key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub
    /// (install it in the guest as /etc/lwpkg/keys/NAME.pub).
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "lwpkg")]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Scan DIR for *.pkg.json metadata, hash each package file and write the index.
    Build {
        dir: PathBuf,
        /// Where to write the index (default DIR/index.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also sign the index with this secret key (writes INDEX.sig).
        #[arg(long)]
        sign: Option<PathBuf>,
        /// When the index expires: a duration from now (30d, 12h, 90m, 45s)
        /// or an RFC 3339 UTC time (2030-01-01T00:00:00Z).
        #[arg(long, default_value = "30d")]
        expires: String,
        /// The index serial (default: one more than the index at the output
        /// path, and at least the current Unix time).
        #[arg(long)]
        serial: Option<u64>,
    },
    /// Sign an index: writes INDEX.sig, a detached signature over its exact bytes.
    Sign {
        /// The secret key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        index: PathBuf,
    },
    /// Check INDEX.sig against a public key, as lwpkg does.
    Verify {
        /// The public key file from `keygen`.
        #[arg(long = "pub")]
        public: PathBuf,
        index: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Keygen { out, force } => keygen(&out, force),
        Cmd::Build {
            dir,
            out,
            sign: key,
            expires,
            serial,
        } => {
            let out = out.unwrap_or_else(|| dir.join("index.json"));
            let now = time::OffsetDateTime::now_utc();
            parse_expires(&expires, now)
                .and_then(|exp| build(&dir, &out, exp, serial))
                .and_then(|(n, serial)| {
                    println!("wrote {} ({n} package builds, serial {serial})", out.display());
                    match key {
                        Some(k) => sign(&k, &out),
                        None => Ok(()),
                    }
                })
        }
        Cmd::Sign { key, index } => sign(&key, &index),
        Cmd::Verify { public, index } => verify(&public, &index),
    };
    if let Err(e) = result {
        eprintln!("lwpkg-index: {e:#}");
        std::process::exit(1);
    }
}

/// `--expires`: a duration from `now` (`30d`, `12h`, `90m`, `45s`, `1.5d`: a unit is
/// required, one of d, h, m, s) or an RFC 3339 time in UTC; returned as the RFC 3339 text the
/// index carries. Durations are read by fundu with those four units.
fn parse_expires(s: &str, now: time::OffsetDateTime) -> Result<String> {
    use fundu::TimeUnit::{Day, Hour, Minute, Second};
    use time::format_description::well_known::Rfc3339;
    const DURATION: fundu::DurationParser =
        fundu::DurationParser::with_time_units(&[Day, Hour, Minute, Second]);
    let at = if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        ensure!(t.offset().is_utc(), "--expires {s:?}: give the time in UTC (Z)");
        t
    } else {
        // fundu reads a bare number as seconds; here it is refused (30 days or 30 seconds?).
        ensure!(
            !s.ends_with(|c: char| c.is_ascii_digit()),
            "--expires {s:?}: the unit must be d, h, m or s"
        );
        let d = DURATION
            .parse(s)
            .map_err(|e| anyhow!("--expires {s:?}: expected 30d, 12h, 90m, 45s or an RFC 3339 time ({e})"))?;
        let d = std::time::Duration::try_from(d).context("--expires: too far")?;
        now.checked_add(d.try_into().context("--expires: too far")?)
            .context("--expires: too far")?
    };
    ensure!(at > now, "--expires {s:?} is not in the future");
    Ok(at.replace_nanosecond(0)?.format(&Rfc3339)?)
}

/// The serial of the index at `path`, if there is one.
fn previous_serial(path: &Path) -> Option<u64> {
    let doc: Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    doc["serial"].as_u64()
}

/// The bytes of a key or signature file (format: [`lwpkgindex::hex_payload`]).
fn read_hex<const N: usize>(path: &Path) -> Result<[u8; N]> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let hex = lwpkgindex::hex_payload(&text);
    ensure!(
        hex.len() == 2 * N,
        "{}: expected {} hex digits, found {}",
        path.display(),
        2 * N,
        hex.len()
    );
    lwpkgindex::hex_decode(&hex).with_context(|| format!("{}: not hex", path.display()))
}

fn keygen(prefix: &Path, force: bool) -> Result<()> {
    let secret = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    for p in [&secret, &public] {
        ensure!(
            force || !p.exists(),
            "{} exists (use --force to replace it)",
            p.display()
        );
    }
    let mut seed = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    let key = SigningKey::from_bytes(&seed);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&secret)
        .with_context(|| format!("creating {}", secret.display()))?;
    writeln!(
        f,
        "# lwpkg index signing key (ed25519 seed): keep it secret\n{}",
        hex(&seed)
    )?;
    fs::write(&public, format!("{}\n", hex(key.verifying_key().as_bytes())))
        .with_context(|| format!("writing {}", public.display()))?;
    println!("wrote {} and {}", secret.display(), public.display());
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    name: String,
    version: String,
    arch: String,
    file: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    depends: Vec<String>,
    bin: Option<String>,
}

fn find_meta(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if e.file_type()?.is_dir() {
            find_meta(&path, out)?;
        } else if path.to_string_lossy().ends_with(".pkg.json") {
            out.push(path);
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok((size, hex(&h.finalize())));
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
}

/// Builds the index expiring at `expires` (RFC 3339); returns the number of
/// package builds in it and its serial.
fn build(dir: &Path, out: &Path, expires: String, serial: Option<u64>) -> Result<(usize, u64)> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("reading {}", dir.display()))?;
    let mut metas = Vec::new();
    find_meta(&root, &mut metas)?;
    ensure!(
        !metas.is_empty(),
        "no *.pkg.json metadata under {}",
        dir.display()
    );
    let mut builds: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for path in &metas {
        let ctx = || format!("{}", path.display());
        let meta: Meta = serde_json::from_slice(&fs::read(path).with_context(ctx)?).with_context(ctx)?;
        ensure!(valid_name(&meta.name), "{}: bad name {:?}", ctx(), meta.name);
        ensure!(
            valid_version(&meta.version),
            "{}: bad version {:?}",
            ctx(),
            meta.version
        );
        ensure!(
            ARCHES.contains(&meta.arch.as_str()),
            "{}: arch must be one of {ARCHES:?}",
            ctx()
        );
        for d in &meta.depends {
            ensure!(valid_name(d), "{}: bad dependency {d:?}", ctx());
        }
        let file = path
            .parent()
            .unwrap_or(&root)
            .join(&meta.file)
            .canonicalize()
            .with_context(|| format!("{}: file {}", ctx(), meta.file))?;
        let rel = file
            .strip_prefix(&root)
            .with_context(|| format!("{}: {} is outside {}", ctx(), meta.file, dir.display()))?;
        let url = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        ensure!(
            url.bytes().all(|b| b > b' ' && b != 0x7f),
            "{}: file name has spaces or control characters",
            ctx()
        );
        if meta.arch == "wasm32" {
            // A wasm32 package must be a program linux-wasm can execute.
            let bytes = fs::read(&file).with_context(|| format!("{}: reading {}", ctx(), meta.file))?;
            if let Err(e) = linux_wasm_abi::check(&bytes) {
                bail!("{}: {} (arch wasm32) is {e}", ctx(), meta.file);
            }
        }
        let (size, sha256) = sha256_file(&file)?;
        let mut entry = json!({
            "version": meta.version,
            "description": meta.description,
            "url": url,
            "size": size,
            "sha256": sha256,
            "arch": meta.arch,
            "depends": meta.depends,
        });
        if let Some(bin) = &meta.bin {
            ensure!(valid_bin(bin), "{}: bad command name {bin:?}", ctx());
            entry["bin"] = Value::String(bin.clone());
        }
        let per_arch = builds.entry(meta.name.clone()).or_default();
        if per_arch.insert(meta.arch.clone(), entry).is_some() {
            bail!("{}: a second {} build of {}", ctx(), meta.arch, meta.name);
        }
    }
    // One command, one package (per arch): lwpkg could not install both.
    let mut commands: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for (name, per_arch) in &builds {
        for (arch, entry) in per_arch {
            let bin = entry["bin"].as_str().unwrap_or(name);
            if let Some(other) = commands.insert((arch, bin), name) {
                bail!("{other} and {name} both provide the command {bin} ({arch}): rename one with \"bin\"");
            }
        }
    }
    // Every dependency must exist for the arch that needs it.
    for (name, per_arch) in &builds {
        for (arch, entry) in per_arch {
            for d in entry["depends"].as_array().into_iter().flatten() {
                let d = d.as_str().unwrap_or_default();
                ensure!(
                    builds.get(d).is_some_and(|m| m.contains_key(arch)),
                    "{name} ({arch}) depends on {d}, which has no {arch} build here"
                );
            }
        }
    }
    let count = builds.values().map(BTreeMap::len).sum();
    let mut packages = Map::new();
    for (name, per_arch) in builds {
        let mut list: Vec<Value> = per_arch.into_values().collect();
        // One build: the seed's plain object; several: one per arch.
        let v = if list.len() == 1 {
            list.remove(0)
        } else {
            Value::Array(list)
        };
        packages.insert(name, v);
    }
    let prev = previous_serial(out);
    let serial = match serial {
        Some(s) => s,
        None => {
            let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
            prev.map_or(now, |p| (p + 1).max(now))
        }
    };
    let doc = json!({ "format": FORMAT, "serial": serial, "expires": expires, "packages": packages });
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    let tmp = out.with_extension("json.tmp");
    fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok((count, serial))
}

fn sig_path(index: &Path) -> PathBuf {
    let mut s = index.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

fn sign(key_path: &Path, index: &Path) -> Result<()> {
    let seed: [u8; 32] = read_hex(key_path)?;
    let key = SigningKey::from_bytes(&seed);
    let bytes = fs::read(index).with_context(|| format!("reading {}", index.display()))?;
    let sig = key.sign(&bytes);
    let out = sig_path(index);
    fs::write(&out, format!("{}\n", hex(&sig.to_bytes())))
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

fn verify(public: &Path, index: &Path) -> Result<()> {
    let pk: [u8; 32] = read_hex(public)?;
    let key = VerifyingKey::from_bytes(&pk).context("not an ed25519 public key")?;
    let sig: [u8; 64] = read_hex(&sig_path(index))?;
    let bytes = fs::read(index).with_context(|| format!("reading {}", index.display()))?;
    key.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&sig))
        .with_context(|| {
            format!(
                "{}: signature does not match {}",
                index.display(),
                public.display()
            )
        })?;
    println!("{}: good signature from {}", index.display(), public.display());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EXP: &str = "2100-01-01T00:00:00Z";

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lwpkg-index-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn meta(dir: &Path, name: &str, arch: &str, deps: &[&str]) {
        let body = match arch {
            "wasm32" => linux_wasm_abi::sample::program(),
            _ => format!("binary of {name}").into_bytes(),
        };
        fs::write(dir.join(format!("{name}-{arch}.bin")), body).unwrap();
        let m = json!({"name": name, "version": "1.0", "arch": arch, "file": format!("{name}-{arch}.bin"), "depends": deps});
        fs::write(dir.join(format!("{name}-{arch}.pkg.json")), m.to_string()).unwrap();
    }

    #[test]
    fn build_sign_verify_round_trip() {
        let d = scratch("rt");
        meta(&d, "hello", "x86_64", &["libz"]);
        meta(&d, "hello", "wasm32", &[]);
        meta(&d, "libz", "x86_64", &[]);
        let index = d.join("index.json");
        assert_eq!(build(&d, &index, EXP.into(), None).unwrap().0, 3);
        let doc: Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
        assert_eq!(doc["packages"]["hello"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["packages"]["libz"]["size"], 14);
        assert_eq!(doc["packages"]["libz"]["url"], "libz-x86_64.bin");
        keygen(&d.join("k"), false).unwrap();
        assert!(keygen(&d.join("k"), false).is_err(), "keygen must not overwrite");
        sign(&d.join("k.key"), &index).unwrap();
        verify(&d.join("k.pub"), &index).unwrap();
        let mut bytes = fs::read(&index).unwrap();
        bytes.push(b' ');
        fs::write(&index, bytes).unwrap();
        assert!(
            verify(&d.join("k.pub"), &index).is_err(),
            "tampered index verified"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn build_refuses_a_wasm32_package_linux_wasm_cannot_run() {
        let d = scratch("abi");
        meta(&d, "app", "wasm32", &[]);
        build(&d, &d.join("index.json"), EXP.into(), None).unwrap();
        // A plain module: no dylink.0, its own memory.
        fs::write(d.join("app-wasm32.bin"), b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01").unwrap();
        let e = build(&d, &d.join("index.json"), EXP.into(), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("app-wasm32.bin (arch wasm32) is not a linux-wasm user program"),
            "{e}"
        );
        assert!(e.contains("dylink.0"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn build_refuses_bad_metadata() {
        let d = scratch("bad");
        meta(&d, "app", "x86_64", &["missing"]);
        assert!(build(&d, &d.join("index.json"), EXP.into(), None)
            .unwrap_err()
            .to_string()
            .contains("depends on missing"));
        fs::write(
            d.join("app-x86_64.pkg.json"),
            r#"{"name":"../x","version":"1","arch":"x86_64","file":"app-x86_64.bin"}"#,
        )
        .unwrap();
        assert!(build(&d, &d.join("index.json"), EXP.into(), None).is_err());
        fs::write(
            d.join("app-x86_64.pkg.json"),
            r#"{"name":"x","version":"1","arch":"x86_64","file":"../../etc/passwd"}"#,
        )
        .unwrap();
        assert!(build(&d, &d.join("index.json"), EXP.into(), None).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn serials_increase_and_expiry_is_set() {
        let d = scratch("serial");
        meta(&d, "hello", "x86_64", &[]);
        let index = d.join("index.json");
        let (_, s1) = build(&d, &index, EXP.into(), None).unwrap();
        let (_, s2) = build(&d, &index, EXP.into(), None).unwrap();
        assert!(s2 > s1 && s1 > 1_700_000_000, "{s1} {s2}");
        let doc: Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
        assert_eq!(
            (doc["serial"].as_u64(), doc["expires"].as_str()),
            (Some(s2), Some(EXP))
        );
        assert_eq!(build(&d, &index, EXP.into(), Some(7)).unwrap().1, 7);
        let now = time::OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        assert_eq!(parse_expires("30d", now).unwrap(), "2001-10-09T01:46:40Z");
        assert_eq!(parse_expires("90s", now).unwrap(), "2001-09-09T01:48:10Z");
        assert_eq!(parse_expires(EXP, now).unwrap(), EXP);
        assert_eq!(parse_expires("1.5d", now).unwrap(), "2001-09-10T13:46:40Z");
        let err = parse_expires("30y", now).unwrap_err().to_string();
        assert!(err.starts_with("--expires \"30y\": expected 30d, 12h"), "{err}");
        for bad in [
            "30",
            "30y",
            "-1d",
            "2000-01-01T00:00:00Z",
            "2100-01-01T00:00:00+01:00",
            "0s",
        ] {
            assert!(parse_expires(bad, now).is_err(), "{bad}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn build_refuses_two_packages_with_one_command() {
        // Hostile case: packages a and b both declaring "bin": "tool".
        let d = scratch("bin");
        for n in ["a", "b"] {
            fs::write(d.join(format!("{n}.bin")), n).unwrap();
            let m = json!({"name": n, "version": "1.0", "arch": "x86_64", "file": format!("{n}.bin"), "bin": "tool"});
            fs::write(d.join(format!("{n}.pkg.json")), m.to_string()).unwrap();
        }
        let e = build(&d, &d.join("index.json"), EXP.into(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a and b both provide the command tool"), "{e}");
        // A package named like another's command conflicts too.
        meta(&d, "tool", "x86_64", &[]);
        fs::remove_file(d.join("b.pkg.json")).unwrap();
        let e = build(&d, &d.join("index.json"), EXP.into(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both provide the command tool"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
