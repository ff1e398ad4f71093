//! lwpkg: installs prebuilt packages from a signed HTTP registry into
//! /opt/packages, linked into /usr/local/bin.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

mod pkg;

use alloc::string::String;
use alloc::vec::Vec;
use lwguest::fs::Result;
use lwguest::http::{self, Sink};
use lwguest::index::{self, hex_encode};
use lwguest::{errln, outln};
use pkg::Ctx;

#[cfg(not(test))]
lwguest::entry!(run);

const USAGE: &str = "\
Usage: lwpkg COMMAND [ARGS]

Commands:
  update            fetch and verify the package lists of the repositories
  search TERM       list packages whose name or description contains TERM
  info NAME         show a package
  install NAME...   install packages and their dependencies; NAME=VERSION
                    installs exactly that version, also a lower one
  list              list installed packages
  remove NAME...    remove packages (exactly what install created)
  upgrade           install higher versions of installed packages (never lower)
  relink            recreate the /usr/local/bin links of installed packages

Repositories: /etc/lwpkg/repositories, one base URL per line (http:// or
https://; BASE/index.json and BASE/index.json.sig are fetched), optionally
followed by key=NAME[,NAME]: only /etc/lwpkg/keys/NAME.pub may sign that
repository (wherever it redirects). Without it, any key in
/etc/lwpkg/keys/*.pub may. Indexes carry a serial and an expiry: lwpkg keeps
the highest serial accepted per repository in /opt/lwpkg/repos and refuses
a lower one, other bytes under the same serial, and an expired index.
Versions order by their dotted numbers, then as Debian orders the rest
(1.0~rc1 < 1.0 < 1.0a < 1.0.1). Packages go to /opt/packages/NAME/VERSION/
and are linked into /usr/local/bin.

Settings: /etc/lwpkg/lwpkg.conf, KEY = VALUE lines (defaults shown):
  idle_timeout = 30    a request that receives nothing for this many seconds fails
  min_speed = 1024     a transfer slower than this many bytes/s ...
  speed_window = 30    ... averaged over this many seconds fails (0: no minimum)
  max_interim = 8      at most this many 1xx interim responses per request
  max_redirects = 5    at most this many redirects per request
Environment: LWPKG_ROOT=DIR runs against DIR instead of /.";

fn fetch_http(url: &str, sink: &mut dyn Sink, max: u64, limits: &http::Limits) -> Result<()> {
    let u = http::parse_url(url)?;
    http::get(&u, sink, max, limits).map(|_| ())
}

// Reached through lwguest::entry!, which unit-test builds leave out.
#[cfg_attr(test, allow(dead_code))]
fn run(args: Vec<String>) -> i32 {
    let root = lwguest::fs::getenv("LWPKG_ROOT").unwrap_or_default();
    // A broken lwpkg.conf fails the commands that download, not --help or list.
    let limits = pkg::read_conf(&root);
    let mut fetch = |url: &str, sink: &mut dyn Sink, max: u64| match &limits {
        Ok(l) => fetch_http(url, sink, max, l),
        Err(e) => Err(e.clone()),
    };
    let mut ctx = Ctx {
        root,
        arch: index::THIS_ARCH,
        fetch: &mut fetch,
        quiet: false,
    };
    match command(&mut ctx, &args[1.min(args.len())..]) {
        Ok(code) => code,
        Err(e) => {
            errln!("lwpkg: {e}");
            1
        }
    }
}

/// Runs one command; Ok(exit status) for usage results, Err for failures.
fn command(ctx: &mut Ctx, args: &[String]) -> Result<i32> {
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => {
            errln!("{USAGE}");
            return Ok(1);
        }
    };
    let need = |n: bool, what: &str| -> Option<i32> {
        if n {
            None
        } else {
            errln!("lwpkg {cmd}: expected {what}\n{USAGE}");
            Some(1)
        }
    };
    match cmd {
        "-h" | "--help" | "help" => outln!("{USAGE}"),
        "update" => {
            if let Some(c) = need(rest.is_empty(), "no arguments") {
                return Ok(c);
            }
            ctx.update()?;
        }
        "search" => {
            if let Some(c) = need(rest.len() == 1, "one search term") {
                return Ok(c);
            }
            let idx = ctx.load_index()?;
            let installed = ctx.installed()?;
            let term = rest[0].to_lowercase();
            for (name, entries) in &idx.packages {
                let Some(e) = entries.iter().find(|e| e.arch == ctx.arch) else {
                    continue;
                };
                if name.contains(&term) || e.description.to_lowercase().contains(&term) {
                    let mark = if installed.iter().any(|r| r.name == *name) {
                        " [installed]"
                    } else {
                        ""
                    };
                    outln!("{name} {} - {}{mark}", e.version, e.description);
                }
            }
        }
        "info" => {
            if let Some(c) = need(rest.len() == 1, "one package name") {
                return Ok(c);
            }
            let idx = ctx.load_index()?;
            let name = &rest[0];
            let entries = idx
                .packages
                .get(name)
                .ok_or_else(|| lwguest::fs::Error::msg(alloc::format!("no package named {name:?}")))?;
            for e in entries {
                outln!(
                    "name: {}\nversion: {}\narch: {}\ndescription: {}",
                    e.name,
                    e.version,
                    e.arch,
                    e.description
                );
                outln!(
                    "size: {}\nsha256: {}\nurl: {}",
                    e.size,
                    hex_encode(&e.sha256),
                    e.url
                );
                outln!("depends: {}\ncommand: {}", e.depends.join(" "), e.bin);
            }
            match ctx.installed()?.iter().find(|r| r.name == *name) {
                Some(r) => outln!("installed: {}", r.version),
                None => outln!("installed: no"),
            }
        }
        "install" => {
            if let Some(c) = need(!rest.is_empty(), "package names") {
                return Ok(c);
            }
            let idx = ctx.load_index()?;
            let mut names = Vec::new();
            let mut explicit = Vec::new();
            for arg in rest {
                let Some((name, version)) = arg.split_once('=') else {
                    names.push(arg.clone());
                    continue;
                };
                let e = idx.lookup(name, ctx.arch)?;
                if e.version != version {
                    return Err(lwguest::fs::Error::msg(alloc::format!(
                        "the index has {name} {}, not {version}",
                        e.version
                    )));
                }
                names.push(String::from(name));
                explicit.push(String::from(name));
            }
            let order = index::resolve(&idx, &names, ctx.arch)?;
            let wants: Vec<pkg::Want> = order
                .into_iter()
                .map(|entry| pkg::Want {
                    explicit: explicit.contains(&entry.name),
                    entry,
                })
                .collect();
            ctx.install_all(&wants)?;
        }
        "list" => {
            for r in ctx.installed()? {
                outln!("{} {}", r.name, r.version);
            }
        }
        "remove" => {
            if let Some(c) = need(!rest.is_empty(), "package names") {
                return Ok(c);
            }
            ctx.remove(rest)?;
        }
        "upgrade" => {
            if ctx.upgrade()? == 0 {
                outln!("everything is up to date");
            }
        }
        "relink" => {
            for r in ctx.installed()? {
                ctx.link(&r)?;
            }
        }
        _ => {
            errln!("lwpkg: unknown command {cmd:?}\n{USAGE}");
            return Ok(1);
        }
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lwguest::ed25519_dalek::{Signer, SigningKey};
    use lwguest::fs::Error;
    use lwguest::sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::path::Path;

    /// A scratch root with keys, repositories and a scripted registry.
    struct World {
        root: String,
        files: HashMap<String, Vec<u8>>,
        key: SigningKey,
        /// The serial of the next publish.
        serial: u64,
        expires: String,
    }

    const BASE: &str = "http://127.0.0.1:9/repo";

    /// (name, version, arch, depends, file content)
    type Published<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a [u8]);

    impl World {
        fn new(name: &str) -> World {
            let root = std::env::temp_dir().join(format!("lwpkg-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("etc/lwpkg/keys")).unwrap();
            std::fs::write(root.join("etc/lwpkg/repositories"), format!("# test\n{BASE}\n")).unwrap();
            let key = SigningKey::from_bytes(&[7; 32]);
            std::fs::write(
                root.join("etc/lwpkg/keys/test.pub"),
                hex_encode(key.verifying_key().as_bytes()),
            )
            .unwrap();
            World {
                root: root.to_string_lossy().into_owned(),
                files: HashMap::new(),
                key,
                serial: 1,
                expires: "2100-01-01T00:00:00Z".into(),
            }
        }

        /// Publishes `pkgs`, then `lwpkg update` and `lwpkg install NAME`.
        fn publish_and_install(&mut self, pkgs: &[Published], name: &str) {
            self.publish_and_update(pkgs);
            self.run(&["install", name]).unwrap();
        }

        /// Publishes packages (as `publish`) and runs `lwpkg update`, which
        /// must succeed.
        fn publish_and_update(&mut self, pkgs: &[Published]) {
            self.publish(pkgs);
            self.run(&["update"]).unwrap();
        }

        /// Publishes packages (name, version, arch, deps, content) and a
        /// signed index under BASE with the next serial. "NAME:BIN" names a
        /// package whose command is BIN.
        fn publish(&mut self, pkgs: &[Published]) {
            self.publish_at(BASE, pkgs);
        }

        fn publish_at(&mut self, base: &str, pkgs: &[Published]) {
            let idx = self.index_at(base, pkgs, self.serial);
            self.serial += 1;
            self.serve_index(base, idx);
        }

        /// Serves `idx` signed by the world's key.
        fn serve_index(&mut self, base: &str, idx: Vec<u8>) {
            let sig = hex_encode(&self.key.sign(&idx).to_bytes());
            self.files.insert(format!("{base}/index.json"), idx);
            self.files
                .insert(format!("{base}/index.json.sig"), sig.into_bytes());
        }

        fn index_at(&mut self, base: &str, pkgs: &[Published], serial: u64) -> Vec<u8> {
            let mut body = Vec::new();
            for (name, version, arch, deps, content) in pkgs {
                let (name, bin) = name.split_once(':').unwrap_or((name, name));
                let file = format!("{name}-{version}-{arch}.bin");
                self.files.insert(format!("{base}/{file}"), content.to_vec());
                let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
                body.push(format!(
                    "\"{name}\":{{\"version\":\"{version}\",\"url\":\"{file}\",\"size\":{},\"sha256\":\"{}\",\"arch\":\"{arch}\",\"depends\":[{}],\"bin\":\"{bin}\"}}",
                    content.len(),
                    hex_encode(&Sha256::digest(content)),
                    deps.join(",")
                ));
            }
            format!(
                "{{\"format\":1,\"serial\":{serial},\"expires\":\"{}\",\"packages\":{{{}}}}}",
                self.expires,
                body.join(",")
            )
            .into_bytes()
        }

        fn run(&mut self, args: &[&str]) -> Result<i32> {
            let files = self.files.clone();
            let mut fetch = move |url: &str, sink: &mut dyn Sink, max: u64| -> Result<()> {
                let data = files
                    .get(url)
                    .ok_or_else(|| Error::msg(format!("{url}: HTTP 404")))?;
                if data.len() as u64 > max {
                    return Err(Error::msg("response larger than expected"));
                }
                sink.start(Some(data.len() as u64))?;
                // Two pieces, like a real body split across reads.
                let (a, b) = data.split_at(data.len() / 2);
                sink.data(a)?;
                sink.data(b)
            };
            let mut ctx = Ctx {
                root: self.root.clone(),
                arch: "x86_64",
                fetch: &mut fetch,
                quiet: true,
            };
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            command(&mut ctx, &args)
        }

        fn p(&self, rel: &str) -> std::path::PathBuf {
            Path::new(&self.root).join(rel.trim_start_matches('/'))
        }

        /// Every path under the root, for "nothing left behind" checks.
        fn tree(&self, rel: &str) -> Vec<String> {
            fn walk(p: &Path, base: &Path, out: &mut Vec<String>) {
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        out.push(
                            e.path()
                                .strip_prefix(base)
                                .unwrap()
                                .to_string_lossy()
                                .into_owned(),
                        );
                        if e.file_type().unwrap().is_dir() {
                            walk(&e.path(), base, out);
                        }
                    }
                }
            }
            let mut out = Vec::new();
            walk(&self.p(rel), Path::new(&self.root), &mut out);
            out.sort();
            out
        }
    }

    impl Drop for World {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// Two packages, `app` depending on `lib`.
    const APP_NEEDS_LIB: &[Published<'static>] = &[
        ("app", "1.0", "x86_64", &["lib"], b"app-binary"),
        ("lib", "2.1", "x86_64", &[], b"lib-binary"),
    ];

    #[test]
    fn install_with_dependencies_then_remove_leaves_nothing() {
        let mut w = World::new("deps");
        w.publish(APP_NEEDS_LIB);
        assert!(err(&mut w, &["install", "app"]).contains("lwpkg update"));
        w.run(&["update"]).unwrap();
        w.run(&["install", "app"]).unwrap();
        assert_eq!(
            std::fs::read(w.p("opt/packages/app/1.0/app")).unwrap(),
            b"app-binary"
        );
        let link = std::fs::read_link(w.p("usr/local/bin/lib")).unwrap();
        assert_eq!(link, w.p("opt/packages/lib/2.1/lib"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.p("opt/packages/app/1.0/app"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // Installing again is a no-op; lib cannot go while app needs it.
        w.run(&["install", "app"]).unwrap();
        assert!(err(&mut w, &["remove", "lib"]).contains("app depends on it"));
        w.run(&["remove", "app", "lib"]).unwrap();
        assert_eq!(w.tree("opt/packages"), Vec::<String>::new());
        assert_eq!(w.tree("usr/local/bin"), Vec::<String>::new());
    }

    #[test]
    fn bad_checksum_leaves_previous_version_working() {
        let mut w = World::new("sum");
        w.publish_and_install(&[("tool", "1.0", "x86_64", &[], b"version one")], "tool");
        let before = w.tree("");
        // Version 2 is published, but the file served differs from the index.
        w.publish(&[("tool", "2.0", "x86_64", &[], b"version two")]);
        w.files
            .insert(format!("{BASE}/tool-2.0-x86_64.bin"), b"version 2!!".to_vec());
        w.run(&["update"]).unwrap();
        let e = w.run(&["upgrade"]).unwrap_err();
        assert!(e.msg.contains("checksum mismatch"), "{e}");
        assert_eq!(std::fs::read(w.p("usr/local/bin/tool")).unwrap(), b"version one");
        let after: Vec<String> = w
            .tree("")
            .into_iter()
            .filter(|p| !p.starts_with("var/lib"))
            .collect();
        let before: Vec<String> = before.into_iter().filter(|p| !p.starts_with("var/lib")).collect();
        assert_eq!(after, before, "a failed install left something behind");
        // A first install that fails leaves no trace either.
        w.publish(&[
            ("tool", "2.0", "x86_64", &[], b"version two"),
            ("fresh", "1.0", "x86_64", &[], b"fresh"),
        ]);
        w.files
            .insert(format!("{BASE}/fresh-1.0-x86_64.bin"), b"FRESH".to_vec());
        w.files
            .insert(format!("{BASE}/tool-2.0-x86_64.bin"), b"version 2!!".to_vec());
        w.run(&["update"]).unwrap();
        assert!(err(&mut w, &["install", "fresh"]).contains("checksum mismatch"));
        assert!(!w.p("opt/packages/fresh").exists() && !w.p("usr/local/bin/fresh").exists());
        // A truncated download (size mismatch) fails the same way.
        w.files
            .insert(format!("{BASE}/tool-2.0-x86_64.bin"), b"short".to_vec());
        assert!(err(&mut w, &["upgrade"]).contains("size mismatch"));
        // The good file upgrades and removes version 1.
        w.files
            .insert(format!("{BASE}/tool-2.0-x86_64.bin"), b"version two".to_vec());
        w.run(&["upgrade"]).unwrap();
        assert_eq!(std::fs::read(w.p("usr/local/bin/tool")).unwrap(), b"version two");
        assert!(!w.p("opt/packages/tool/1.0").exists());
    }

    #[test]
    fn a_tampered_package_installs_none_of_its_dependencies() {
        let mut w = World::new("allornothing");
        w.publish(APP_NEEDS_LIB);
        // lib verifies, app does not: lib is fetched first but must not go live.
        w.files
            .insert(format!("{BASE}/app-1.0-x86_64.bin"), b"app-binarY".to_vec());
        w.run(&["update"]).unwrap();
        let before: Vec<String> = w
            .tree("")
            .into_iter()
            .filter(|p| !p.starts_with("var/lib") && p != "opt" && p != "opt/packages")
            .collect();
        let e = w.run(&["install", "app"]).unwrap_err();
        assert!(e.msg.contains("checksum mismatch"), "{e}");
        // The package root itself may now exist; nothing inside it may.
        let after: Vec<String> = w
            .tree("")
            .into_iter()
            .filter(|p| !p.starts_with("var/lib") && p != "opt" && p != "opt/packages")
            .collect();
        assert_eq!(after, before, "a failed install left something behind");
        assert!(!w.p("opt/packages/lib").exists() && !w.p("usr/local/bin/lib").exists());
    }

    #[test]
    fn tampered_or_unsigned_index_is_refused() {
        let mut w = World::new("sig");
        w.publish(&[("tool", "1.0", "x86_64", &[], b"x")]);
        let idx = w.files.get(&format!("{BASE}/index.json")).unwrap().clone();
        let mut evil = idx.clone();
        evil.extend_from_slice(b" ");
        w.files.insert(format!("{BASE}/index.json"), evil);
        assert!(err(&mut w, &["update"]).contains("does not match"));
        w.files.insert(format!("{BASE}/index.json"), idx);
        w.files.insert(format!("{BASE}/index.json.sig"), b"abcd".to_vec());
        assert!(err(&mut w, &["update"]).contains("128 hex"));
        w.files.remove(&format!("{BASE}/index.json.sig"));
        assert!(err(&mut w, &["update"]).contains("404"));
        // A cache edited after a good update is caught on use.
        w.publish_and_update(&[("tool", "1.0", "x86_64", &[], b"x")]);
        let cache = std::fs::read_dir(w.p("var/lib/lwpkg"))
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))
            .unwrap()
            .path();
        std::fs::write(&cache, b"{\"packages\":{}}").unwrap();
        assert!(err(&mut w, &["install", "tool"]).contains("does not match"));
        std::fs::remove_file(w.p("etc/lwpkg/keys/test.pub")).unwrap();
        assert!(err(&mut w, &["update"]).contains("no trusted keys"));
    }

    #[test]
    fn other_arch_and_foreign_commands_are_refused() {
        let mut w = World::new("arch");
        w.publish_and_update(&[
            ("wtool", "1.0", "wasm32", &[], b"w"),
            ("ls", "1.0", "x86_64", &[], b"l"),
        ]);
        assert!(err(&mut w, &["install", "wtool"]).contains("built for wasm32"));
        std::fs::create_dir_all(w.p("usr/local/bin")).unwrap();
        std::fs::write(w.p("usr/local/bin/ls"), b"user's own").unwrap();
        assert!(err(&mut w, &["install", "ls"]).contains("not installed by lwpkg"));
        assert_eq!(std::fs::read(w.p("usr/local/bin/ls")).unwrap(), b"user's own");
        assert_eq!(
            w.tree("opt/packages")
                .iter()
                .filter(|p| !p.ends_with("/ls"))
                .count(),
            0
        );
        assert!(err(&mut w, &["remove", "ls"]).contains("not installed"));
        assert_eq!(w.run(&["frobnicate"]).unwrap(), 1);
        assert_eq!(w.run(&["install"]).unwrap(), 1);
    }

    #[test]
    fn records_reject_paths_outside_the_package() {
        let good = "lwpkg-record 1\nname a\nversion 1\narch x86_64\nsha256 00\nsize 1\nfile /opt/packages/a/1/a\nlink /usr/local/bin/a\ndepends \n";
        assert!(pkg::Record::parse(good).is_ok());
        assert!(pkg::Record::parse(&good.replace("/usr/local/bin/a", "/etc/passwd")).is_err());
        assert!(
            pkg::Record::parse(&good.replace("/opt/packages/a/1/a", "/opt/packages/a/1/../../../etc/x"))
                .is_err()
        );
        assert!(pkg::Record::parse(&good.replace("name a", "name ../a")).is_err());
        assert!(pkg::Record::parse("junk").is_err());
    }

    fn err(w: &mut World, args: &[&str]) -> String {
        w.run(args).unwrap_err().msg
    }

    #[test]
    fn an_older_index_is_refused_and_upgrade_never_goes_down() {
        // Hostile case: tool 2.0 installed; the same URL then serves an older,
        // validly signed index (tool 1.0); `lwpkg update && lwpkg upgrade`.
        let mut w = World::new("rollback");
        w.publish(&[("tool", "1.0", "x86_64", &[], b"one")]);
        let old_index = w.files[&format!("{BASE}/index.json")].clone();
        let old_sig = w.files[&format!("{BASE}/index.json.sig")].clone();
        w.publish_and_install(&[("tool", "2.0", "x86_64", &[], b"two")], "tool");
        w.files.insert(format!("{BASE}/index.json"), old_index.clone());
        w.files.insert(format!("{BASE}/index.json.sig"), old_sig.clone());
        let e = err(&mut w, &["update"]);
        assert!(
            e.contains(BASE) && e.contains("serial 1") && e.contains("serial 2") && e.contains("rollback"),
            "{e}"
        );
        assert_eq!(w.run(&["upgrade"]).unwrap(), 0);
        assert_eq!(std::fs::read(w.p("usr/local/bin/tool")).unwrap(), b"two");
        // After a reboot the cache is gone (/var is not saved) but /opt is:
        // the rollback is still refused.
        std::fs::remove_dir_all(w.p("var")).unwrap();
        let e = err(&mut w, &["update"]);
        assert!(e.contains("serial 1") && e.contains("serial 2"), "{e}");
        // The same serial with other bytes is refused too.
        let idx2 = w.index_at(BASE, &[("tool", "2.0", "x86_64", &[], b"TWO")], 2);
        w.serve_index(BASE, idx2);
        let e = err(&mut w, &["update"]);
        assert!(e.contains("serial 2") && e.contains("different bytes"), "{e}");
        // A newer index that lists tool 1.0: update accepts it, upgrade keeps
        // 2.0, and only `install tool=1.0` goes down.
        w.publish_and_update(&[("tool", "1.0", "x86_64", &[], b"one")]);
        assert_eq!(w.run(&["upgrade"]).unwrap(), 0);
        w.run(&["install", "tool"]).unwrap();
        assert_eq!(std::fs::read(w.p("usr/local/bin/tool")).unwrap(), b"two");
        assert!(err(&mut w, &["install", "tool=3.0"]).contains("the index has tool 1.0, not 3.0"));
        w.run(&["install", "tool=1.0"]).unwrap();
        assert_eq!(std::fs::read(w.p("usr/local/bin/tool")).unwrap(), b"one");
        assert!(!w.p("opt/packages/tool/2.0").exists());
    }

    #[test]
    fn an_expired_index_is_refused_and_first_contact_is_trusted() {
        let mut w = World::new("expiry");
        w.expires = "2001-02-03T04:05:06Z".into();
        w.publish(&[("tool", "1.0", "x86_64", &[], b"one")]);
        let e = err(&mut w, &["update"]);
        assert!(
            e.contains(BASE) && e.contains("expired at 2001-02-03T04:05:06Z"),
            "{e}"
        );
        assert!(!w.p("opt/lwpkg/repos").exists() || w.tree("opt/lwpkg/repos").is_empty());
        // An index without serial (an older toolchain) is refused.
        w.serve_index(BASE, br#"{"format":1,"packages":{}}"#.to_vec());
        assert!(err(&mut w, &["update"]).contains("no serial"));
        // First contact accepts any serial; an existing cache without a state
        // record (an lwpkg older than the freshness check) is treated the same way once.
        w.expires = "2100-01-01T00:00:00Z".into();
        w.serial = 50;
        w.publish_and_update(&[("tool", "1.0", "x86_64", &[], b"one")]);
        std::fs::remove_dir_all(w.p("opt/lwpkg")).unwrap();
        w.serial = 10;
        w.publish_and_update(&[("tool", "1.0", "x86_64", &[], b"one")]);
        w.serial = 9;
        w.publish(&[("tool", "1.0", "x86_64", &[], b"one")]);
        assert!(err(&mut w, &["update"]).contains("serial 9, lower than serial 10"));
    }

    #[test]
    fn two_packages_claiming_one_command_change_nothing() {
        // Hostile case: packages a and b both declare "bin": "tool"; `lwpkg install a b`.
        let mut w = World::new("conflict");
        w.publish_and_update(&[
            ("a:tool", "1.0", "x86_64", &[], b"a"),
            ("b:tool", "1.0", "x86_64", &[], b"b"),
            ("c", "1.0", "x86_64", &[], b"c"),
        ]);
        let e = err(&mut w, &["install", "a", "b"]);
        assert!(
            e.contains("conflict: a and b both provide the command tool"),
            "{e}"
        );
        assert!(w.tree("opt/packages").is_empty() && w.tree("usr/local/bin").is_empty());
        // With what is installed.
        w.run(&["install", "a"]).unwrap();
        let before = w.tree("opt/packages");
        let e = err(&mut w, &["install", "c", "b"]);
        assert!(e.contains("a and b both provide the command tool"), "{e}");
        assert_eq!(w.tree("opt/packages"), before);
        assert_eq!(w.tree("usr/local/bin"), ["usr/local/bin/tool"]);
        // Across repositories: a second repository's package claims the command.
        let other = "http://127.0.0.1:9/other";
        w.publish_at(other, &[("d:tool", "1.0", "x86_64", &[], b"d")]);
        std::fs::write(w.p("etc/lwpkg/repositories"), format!("{BASE}\n{other}\n")).unwrap();
        w.run(&["update"]).unwrap();
        let e = err(&mut w, &["install", "d"]);
        assert!(e.contains("a and d both provide the command tool"), "{e}");
        let out = w.run(&["list"]).unwrap();
        assert_eq!(out, 0);
        assert_eq!(w.tree("opt/packages"), before);
    }

    #[test]
    fn an_upgrade_that_renames_the_command_removes_the_old_link() {
        // Hostile case: x 1.0 (bin x) upgraded to 2.0 (bin x2).
        let mut w = World::new("rename");
        w.publish_and_install(&[("x", "1.0", "x86_64", &[], b"one")], "x");
        w.publish_and_update(&[("x:x2", "2.0", "x86_64", &[], b"two")]);
        assert_eq!(w.run(&["upgrade"]).unwrap(), 0);
        assert_eq!(w.tree("usr/local/bin"), ["usr/local/bin/x2"]);
        assert_eq!(std::fs::read(w.p("usr/local/bin/x2")).unwrap(), b"two");
        assert_eq!(
            w.tree("opt/packages"),
            [
                "opt/packages/x",
                "opt/packages/x/2.0",
                "opt/packages/x/2.0/.lwpkg",
                "opt/packages/x/2.0/x2"
            ]
        );
        w.run(&["remove", "x"]).unwrap();
        assert!(w.tree("usr/local/bin").is_empty() && w.tree("opt/packages").is_empty());
    }

    #[test]
    fn keys_are_bound_to_repositories() {
        let mut w = World::new("keys");
        w.publish(&[("tool", "1.0", "x86_64", &[], b"one")]);
        let other = SigningKey::from_bytes(&[8; 32]);
        std::fs::write(
            w.p("etc/lwpkg/keys/other.pub"),
            hex_encode(other.verifying_key().as_bytes()),
        )
        .unwrap();
        std::fs::write(w.p("etc/lwpkg/repositories"), format!("{BASE} key=other\n")).unwrap();
        let e = err(&mut w, &["update"]);
        assert!(
            e.contains(BASE) && e.contains("only by key other") && e.contains("does not match"),
            "{e}"
        );
        std::fs::write(w.p("etc/lwpkg/repositories"), format!("{BASE} key=other,test\n")).unwrap();
        w.run(&["update"]).unwrap();
        std::fs::write(w.p("etc/lwpkg/repositories"), format!("{BASE} key=ghost\n")).unwrap();
        assert!(err(&mut w, &["update"]).contains("ghost.pub is missing"));
        std::fs::write(w.p("etc/lwpkg/repositories"), format!("{BASE} trust=all\n")).unwrap();
        assert!(err(&mut w, &["update"]).contains("expected key=NAME"));
        // Without a binding, any trusted key still signs (existing configurations).
        std::fs::write(w.p("etc/lwpkg/repositories"), format!("{BASE}\n")).unwrap();
        w.run(&["update"]).unwrap();
    }

    #[test]
    fn settings_file() {
        let w = World::new("conf");
        assert_eq!(pkg::read_conf(&w.root).unwrap(), http::Limits::default());
        std::fs::write(
            w.p("etc/lwpkg/lwpkg.conf"),
            "# fast\nidle_timeout = 2\nmin_speed=100\n speed_window = 3\nmax_interim = 1\nmax_redirects = 0\n",
        )
        .unwrap();
        let l = pkg::read_conf(&w.root).unwrap();
        assert_eq!(
            l,
            http::Limits {
                idle_ms: 2000,
                min_rate: 100,
                rate_window_ms: 3000,
                max_interim: 1,
                max_redirects: 0
            }
        );
        for (bad, want) in [
            ("idle = 3\n", "line 1: unknown setting"),
            ("\nidle_timeout\n", "line 2: expected KEY = VALUE"),
            ("idle_timeout = -1\n", "non-negative integer"),
        ] {
            std::fs::write(w.p("etc/lwpkg/lwpkg.conf"), bad).unwrap();
            let e = pkg::read_conf(&w.root).unwrap_err();
            assert!(e.msg.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn index_urls_lose_their_fragment() {
        // Hostile case: fragments never reach the request (nor from an index url).
        let mut w = World::new("fragment");
        let idx = w.index_at(BASE, &[("tool", "1.0", "x86_64", &[], b"one")], 1);
        let idx = String::from_utf8(idx)
            .unwrap()
            .replace("\"tool-1.0-x86_64.bin\"", "\"./tool-1.0-x86_64.bin#v2\"");
        w.serve_index(BASE, idx.into_bytes());
        w.run(&["update"]).unwrap();
        w.run(&["install", "tool"]).unwrap();
        assert_eq!(std::fs::read(w.p("usr/local/bin/tool")).unwrap(), b"one");
    }
}
