//! lwpkg's work: repositories, the verified index cache, installs,
//! removals. Every path is under `Ctx::root` ("" in the guest) so tests can
//! run the real code in a scratch directory with scripted downloads.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use lwguest::fs::{self, Error, Fd, Kind, Result};
use lwguest::http::{self, Sink};
use lwguest::index::{self, hex_encode, Entry, Index};
use lwguest::progress::Progress;
use lwguest::sha2::{Digest, Sha256};
use lwguest::{errln, outln, sys};

pub const REPOSITORIES: &str = "/etc/lwpkg/repositories";
pub const CONF: &str = "/etc/lwpkg/lwpkg.conf";
/// The highest serial and digest accepted per repository. Under /opt so that
/// it is saved by `lwsync` with the packages and survives a reboot.
pub const STATE: &str = "/opt/lwpkg/repos";
pub const KEYS: &str = "/etc/lwpkg/keys";
pub const CACHE: &str = "/var/lib/lwpkg";
pub const PACKAGES: &str = "/opt/packages";
pub const BIN: &str = "/usr/local/bin";
const RECORD: &str = ".lwpkg";
const MAX_SIG: u64 = 4096;

/// Downloads a URL into a sink, refusing more than `max` bytes.
pub type Fetch<'a> = &'a mut dyn FnMut(&str, &mut dyn Sink, u64) -> Result<()>;

pub struct Ctx<'a> {
    pub root: String,
    pub arch: &'a str,
    pub fetch: Fetch<'a>,
    pub quiet: bool,
}

/// A line of /etc/lwpkg/repositories: `URL [key=NAME[,NAME...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The configured base URL, without a trailing '/'.
    pub url: String,
    /// The names of the keys (/etc/lwpkg/keys/NAME.pub) that may sign this
    /// repository's index; None = any trusted key.
    pub keys: Option<Vec<String>>,
}

/// A package a transaction installs, and whether its version was asked for
/// explicitly (`NAME=VERSION`, the one way to go down).
pub struct Want<'e> {
    pub entry: &'e Entry,
    pub explicit: bool,
}

/// Reads the request limits from `ROOT/etc/lwpkg/lwpkg.conf` (`KEY = VALUE`
/// lines, `#` comments; a missing file means the defaults):
/// `idle_timeout` (s), `min_speed` (bytes/s), `speed_window` (s),
/// `max_interim`, `max_redirects`.
pub fn read_conf(root: &str) -> Result<http::Limits> {
    let mut l = http::Limits::default();
    let text = match fs::read_file(&format!("{root}{CONF}"), 64 * 1024) {
        Ok(t) => t,
        Err(e) if e.errno == sys::ENOENT => return Ok(l),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8(text).map_err(|_| Error::msg(format!("{CONF} is not text")))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| Error::msg(format!("{CONF} line {}: {why}", n + 1));
        let (k, v) = line.split_once('=').ok_or_else(|| bad("expected KEY = VALUE"))?;
        let v: u64 = v
            .trim()
            .parse()
            .map_err(|_| bad("the value must be a non-negative integer"))?;
        match k.trim() {
            "idle_timeout" => l.idle_ms = v.saturating_mul(1000),
            "min_speed" => l.min_rate = v,
            "speed_window" => l.rate_window_ms = v.saturating_mul(1000),
            "max_interim" => l.max_interim = v as usize,
            "max_redirects" => l.max_redirects = v as usize,
            other => return Err(bad(&format!("unknown setting {other:?}"))),
        }
    }
    Ok(l)
}

/// A repository's state record: `lwpkg-repo 1`, `url`, `serial`, `sha256`.
fn parse_state(text: &str, url: &str) -> Option<(u64, [u8; 32])> {
    let mut lines = text.lines();
    if lines.next() != Some("lwpkg-repo 1") {
        return None;
    }
    let (mut u, mut serial, mut digest) = (None, None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("url", v)) => u = Some(v),
            Some(("serial", v)) => serial = v.parse().ok(),
            Some(("sha256", v)) => digest = index::hex_decode::<32>(v),
            _ => {}
        }
    }
    (u == Some(url)).then_some(())?;
    Some((serial?, digest?))
}

/// A package downloaded and verified but not yet live; `tmp` is None when
/// the same version is already installed and only its link is refreshed.
struct Staged {
    rec: Record,
    pkgdir: String,
    tmp: Option<String>,
}

/// What install wrote, kept beside the files so remove undoes exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
    pub size: u64,
    /// The installed executable (guest path).
    pub file: String,
    /// The link made in /usr/local/bin (guest path).
    pub link: String,
    pub depends: Vec<String>,
}

impl Record {
    pub fn to_text(&self) -> String {
        format!(
            "lwpkg-record 1\nname {}\nversion {}\narch {}\nsha256 {}\nsize {}\nfile {}\nlink {}\ndepends {}\n",
            self.name,
            self.version,
            self.arch,
            self.sha256,
            self.size,
            self.file,
            self.link,
            self.depends.join(" ")
        )
    }

    pub fn parse(text: &str) -> Result<Record> {
        let mut lines = text.lines();
        if lines.next() != Some("lwpkg-record 1") {
            return Err(Error::msg("not an lwpkg record"));
        }
        let mut r = Record {
            name: String::new(),
            version: String::new(),
            arch: String::new(),
            sha256: String::new(),
            size: 0,
            file: String::new(),
            link: String::new(),
            depends: Vec::new(),
        };
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "name" => r.name = v.to_string(),
                "version" => r.version = v.to_string(),
                "arch" => r.arch = v.to_string(),
                "sha256" => r.sha256 = v.to_string(),
                "size" => r.size = v.parse().map_err(|_| Error::msg("record: bad size"))?,
                "file" => r.file = v.to_string(),
                "link" => r.link = v.to_string(),
                "depends" => r.depends = v.split_whitespace().map(String::from).collect(),
                _ => {}
            }
        }
        if !index::valid_name(&r.name) || !index::valid_version(&r.version) {
            return Err(Error::msg("record: bad name or version"));
        }
        let dir = format!("{PACKAGES}/{}/{}/", r.name, r.version);
        if !r.file.starts_with(&dir)
            || r.file.contains("/../")
            || !r.link.starts_with(&format!("{BIN}/"))
            || r.link.contains("/../")
        {
            return Err(Error::msg("record: paths outside the package's own places"));
        }
        Ok(r)
    }
}

impl Ctx<'_> {
    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.root)
    }

    fn say(&self, args: core::fmt::Arguments) {
        if !self.quiet {
            outln!("{args}");
        }
    }

    /// /etc/lwpkg/repositories: one `URL [key=NAME[,NAME]]` per line, `#` comments.
    pub fn repositories(&self) -> Result<Vec<Repo>> {
        let path = self.path(REPOSITORIES);
        let text = match fs::read_file(&path, 64 * 1024) {
            Ok(t) => t,
            Err(e) if e.errno == sys::ENOENT => {
                return Err(Error::msg(format!(
                    "no repositories: add a base URL to {REPOSITORIES}"
                )));
            }
            Err(e) => return Err(e),
        };
        let text = String::from_utf8(text).map_err(|_| Error::msg(format!("{REPOSITORIES} is not text")))?;
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let url = words.next().unwrap_or_default();
            http::parse_url(url).map_err(|e| e.context(REPOSITORIES))?;
            let mut keys = None;
            for w in words {
                let names = w.strip_prefix("key=").ok_or_else(|| {
                    Error::msg(format!(
                        "{REPOSITORIES}: {w:?} after {url}: expected key=NAME[,NAME]"
                    ))
                })?;
                let names: Vec<String> = names.split(',').map(String::from).collect();
                if names.iter().any(|n| !index::valid_bin(n)) {
                    return Err(Error::msg(format!("{REPOSITORIES}: bad key names in {w:?}")));
                }
                keys = Some(names);
            }
            out.push(Repo {
                url: url.trim_end_matches('/').to_string(),
                keys,
            });
        }
        if out.is_empty() {
            return Err(Error::msg(format!(
                "no repositories: add a base URL to {REPOSITORIES}"
            )));
        }
        Ok(out)
    }

    /// Trusted keys by name: /etc/lwpkg/keys/NAME.pub (unreadable ones are
    /// reported and skipped).
    pub fn keys(&self) -> Result<Vec<(String, lwguest::ed25519_dalek::VerifyingKey)>> {
        let dir = self.path(KEYS);
        let names = match fs::read_dir(&dir) {
            Ok(n) => n,
            Err(e) if e.errno == sys::ENOENT => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut keys = Vec::new();
        for n in names.iter().filter(|n| n.ends_with(".pub")) {
            let p = fs::join(&dir, n);
            match fs::read_file(&p, 4096).and_then(|t| index::parse_public_key(&t)) {
                Ok(k) => keys.push((n.trim_end_matches(".pub").to_string(), k)),
                Err(e) => errln!("lwpkg: warning: ignoring key {KEYS}/{n}: {e}"),
            }
        }
        Ok(keys)
    }

    fn cache_name(&self, base: &str) -> String {
        let id = hex_encode(&Sha256::digest(base.as_bytes())[..8]);
        self.path(&format!("{CACHE}/{id}.json"))
    }

    /// Checks `idx` against the keys `repo` may be signed with (its
    /// `key=` binding, else every trusted key).
    fn verify_for(
        &self,
        repo: &Repo,
        idx: &[u8],
        sig: &[u8],
        keys: &[(String, lwguest::ed25519_dalek::VerifyingKey)],
    ) -> Result<()> {
        let base = &repo.url;
        let allowed: Vec<_> = match &repo.keys {
            None => keys.iter().map(|(_, k)| *k).collect(),
            Some(names) => {
                let mut v = Vec::new();
                for n in names {
                    let (_, k) = keys.iter().find(|(kn, _)| kn == n).ok_or_else(|| {
                        Error::msg(format!("{base}: bound to key {n}, but {KEYS}/{n}.pub is missing"))
                    })?;
                    v.push(*k);
                }
                v
            }
        };
        index::verify(idx, sig, &allowed)
            .map(|_| ())
            .map_err(|e| match &repo.keys {
                Some(names) => e.context(format!("{base} (may be signed only by key {})", names.join(","))),
                None => e.context(base),
            })
    }

    fn state_name(&self, base: &str) -> String {
        let id = hex_encode(&Sha256::digest(base.as_bytes())[..8]);
        self.path(&format!("{STATE}/{id}"))
    }

    /// Fetches, verifies and caches every repository's index, refusing
    /// rollback, replay of other bytes under one serial, and expired indexes
    /// ([`index::freshness`]). All indexes are checked before any is kept.
    pub fn update(&mut self) -> Result<()> {
        let repos = self.repositories()?;
        let keys = self.keys()?;
        let now = fs::now_unix_s();
        let mut accepted = Vec::new();
        for repo in &repos {
            let base = &repo.url;
            let mut idx = Vec::new();
            (self.fetch)(&format!("{base}/index.json"), &mut idx, index::MAX_INDEX as u64)?;
            let mut sig = Vec::new();
            (self.fetch)(&format!("{base}/index.json.sig"), &mut sig, MAX_SIG)?;
            self.verify_for(repo, &idx, &sig, &keys)?;
            let parsed = Index::parse(&idx).map_err(|e| e.context(base))?;
            let (Some(serial), Some(expires)) = (parsed.serial, parsed.expires) else {
                return Err(Error::msg(format!(
                    "{base}: the index has no serial or no expiry (rebuild it with a current lwpkg-index)"
                )));
            };
            let digest: [u8; 32] = Sha256::digest(&idx).into();
            let state = self.state_name(base);
            let prev = fs::read_file(&state, 4096)
                .ok()
                .and_then(|t| parse_state(&String::from_utf8_lossy(&t), base));
            index::freshness(base, prev, serial, &digest, expires, now)?;
            accepted.push((repo, idx, sig, parsed, serial, digest, state));
        }
        fs::mkdir_p(&self.path(CACHE), 0o755)?;
        fs::mkdir_p(&self.path(STATE), 0o755)?;
        for (repo, idx, sig, parsed, serial, digest, state) in accepted {
            let base = &repo.url;
            let cache = self.cache_name(base);
            // Signature first: a cache is only ever read through a verify of both.
            fs::write_file_atomic(&format!("{cache}.sig"), &sig, 0o644)?;
            fs::write_file_atomic(&cache, &idx, 0o644)?;
            let record = format!(
                "lwpkg-repo 1\nurl {base}\nserial {serial}\nsha256 {}\n",
                hex_encode(&digest)
            );
            fs::write_file_atomic(&state, record.as_bytes(), 0o644)?;
            let n = parsed
                .packages
                .values()
                .filter(|v| v.iter().any(|e| e.arch == self.arch))
                .count();
            self.say(format_args!(
                "{base}: {n} packages for {} (serial {serial})",
                self.arch
            ));
        }
        Ok(())
    }

    /// The cached indexes, re-verified, merged (the first repository wins a
    /// name), with every url made absolute.
    pub fn load_index(&self) -> Result<Index> {
        let repos = self.repositories()?;
        let keys = self.keys()?;
        let mut merged = Index::default();
        let now = fs::now_unix_s();
        for repo in &repos {
            let base = &repo.url;
            let cache = self.cache_name(base);
            let idx = match fs::read_file(&cache, index::MAX_INDEX) {
                Ok(b) => b,
                Err(e) if e.errno == sys::ENOENT => {
                    return Err(Error::msg(format!(
                        "no package list for {base}: run lwpkg update"
                    )));
                }
                Err(e) => return Err(e),
            };
            let sig = fs::read_file(&format!("{cache}.sig"), MAX_SIG as usize)?;
            self.verify_for(repo, &idx, &sig, &keys)
                .map_err(|e| e.context("cached index (run lwpkg update)"))?;
            let parsed = Index::parse(&idx)?;
            if let Some(exp) = parsed.expires.filter(|&t| t <= now) {
                return Err(Error::msg(format!(
                    "{base}: the cached index expired at {}: run lwpkg update",
                    index::format_rfc3339(exp)
                )));
            }
            let base_url = http::parse_url(&format!("{base}/index.json"))?;
            for (name, mut entries) in parsed.packages {
                if merged.packages.contains_key(&name) {
                    continue;
                }
                for e in entries.iter_mut() {
                    e.url = http::resolve(&base_url, &e.url)?.to_string();
                }
                merged.packages.insert(name, entries);
            }
        }
        Ok(merged)
    }

    /// Installed packages (records that parse), sorted by name.
    pub fn installed(&self) -> Result<Vec<Record>> {
        let dir = self.path(PACKAGES);
        let names = match fs::read_dir(&dir) {
            Ok(n) => n,
            Err(e) if e.errno == sys::ENOENT => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for name in names.iter().filter(|n| !n.starts_with('.')) {
            let pdir = fs::join(&dir, name);
            if fs::lstat(&pdir)?.map(|m| m.kind) != Some(Kind::Dir) {
                continue;
            }
            for version in fs::read_dir(&pdir)?.iter().filter(|v| !v.starts_with('.')) {
                let rp = format!("{pdir}/{version}/{RECORD}");
                let Ok(text) = fs::read_file(&rp, 64 * 1024) else {
                    continue;
                };
                match Record::parse(&String::from_utf8_lossy(&text)) {
                    Ok(r) if r.name == *name && r.version == *version => out.push(r),
                    _ => errln!("lwpkg: warning: ignoring damaged record {rp}"),
                }
            }
        }
        Ok(out)
    }

    /// Installs the entries (dependencies first, see index::resolve) all or
    /// nothing: conflicts are found first, then every package is downloaded
    /// and verified before any goes live, so one bad package leaves the
    /// system as it was. An installed newer version is kept unless the
    /// older one was asked for explicitly.
    pub fn install_all(&mut self, wants: &[Want]) -> Result<()> {
        let installed = self.installed()?;
        let mut entries: Vec<&Entry> = Vec::new();
        for w in wants {
            let e = w.entry;
            if let Some(r) = installed.iter().find(|r| r.name == e.name) {
                if !w.explicit && index::compare_versions(&e.version, &r.version).is_lt() {
                    self.say(format_args!(
                        "keeping {} {}: newer than the index's {} (install {}={} to go down)",
                        r.name, r.version, e.version, e.name, e.version
                    ));
                    continue;
                }
            }
            entries.push(e);
        }
        self.check_conflicts(&entries, &installed)?;
        let mut staged = Vec::new();
        for e in &entries {
            match self.stage(e, &installed) {
                Ok(st) => staged.push(st),
                Err(err) => {
                    for st in &staged {
                        self.discard(st);
                    }
                    return Err(err);
                }
            }
        }
        for st in staged {
            self.commit(st, &installed)?;
        }
        Ok(())
    }

    /// Errors, before anything changes, when two packages would provide one
    /// command: two of `entries`, or one of them and an installed package
    /// that the transaction does not replace; or when a command is a file
    /// lwpkg did not create. The message names both packages.
    fn check_conflicts(&self, entries: &[&Entry], installed: &[Record]) -> Result<()> {
        let mut owners: Vec<(String, &str)> = installed
            .iter()
            .filter(|r| !entries.iter().any(|e| e.name == r.name))
            .map(|r| (r.link.clone(), r.name.as_str()))
            .collect();
        for e in entries {
            let link = format!("{BIN}/{}", e.bin);
            if let Some((_, other)) = owners.iter().find(|(l, _)| *l == link) {
                return Err(Error::msg(format!(
                    "conflict: {other} and {} both provide the command {}; nothing was changed",
                    e.name, e.bin
                )));
            }
            if !installed.iter().any(|r| r.name == e.name && r.link == link) {
                self.check_link_free(&link, &e.name)?;
            }
            owners.push((link, e.name.as_str()));
        }
        Ok(())
    }

    /// Downloads `e` into a temporary directory beside its final place and
    /// verifies size and sha256; nothing is live yet.
    fn stage(&mut self, e: &Entry, installed: &[Record]) -> Result<Staged> {
        if e.arch != self.arch {
            return Err(Error::msg(format!(
                "refusing {}: it is built for {} and this system is {}",
                e.name, e.arch, self.arch
            )));
        }
        let sha = hex_encode(&e.sha256);
        let pkgdir = self.path(&format!("{PACKAGES}/{}", e.name));
        let rec = Record {
            name: e.name.clone(),
            version: e.version.clone(),
            arch: e.arch.clone(),
            sha256: sha.clone(),
            size: e.size,
            file: format!("{PACKAGES}/{}/{}/{}", e.name, e.version, e.bin),
            link: format!("{BIN}/{}", e.bin),
            depends: e.depends.clone(),
        };
        if installed
            .iter()
            .any(|r| r.name == e.name && r.version == e.version && r.sha256 == sha)
        {
            return Ok(Staged {
                rec,
                pkgdir,
                tmp: None,
            });
        }
        // Never take over a command that another package or the user owns.
        self.check_link_free(&rec.link, &e.name)?;
        fs::mkdir_p(&pkgdir, 0o755)?;
        self.clean_temp(&pkgdir);
        // SAFETY: plain C call.
        let tmp = format!("{pkgdir}/.tmp-{}-{}", e.version, unsafe { sys::getpid() });
        fs::remove_tree(&tmp)?;
        fs::mkdir(&tmp, 0o755)?;
        let result = self.download_into(e, &tmp, &sha).and_then(|()| {
            fs::write_file_atomic(&format!("{tmp}/{RECORD}"), rec.to_text().as_bytes(), 0o644)
        });
        let staged = Staged {
            rec,
            pkgdir,
            tmp: Some(tmp),
        };
        match result {
            Ok(()) => Ok(staged),
            Err(err) => {
                self.discard(&staged);
                Err(err.context(format!("installing {} {}", e.name, e.version)))
            }
        }
    }

    /// Removes a staged download, and a package directory that only it made.
    fn discard(&self, st: &Staged) {
        if let Some(tmp) = &st.tmp {
            let _ = fs::remove_tree(tmp);
        }
        if fs::read_dir(&st.pkgdir).map(|v| v.is_empty()).unwrap_or(false) {
            let _ = fs::rmdir(&st.pkgdir);
        }
    }

    /// Moves a verified package into place, switches its link atomically and
    /// drops what the versions it replaced created (their directories, and
    /// their links when the new version has another command).
    fn commit(&mut self, st: Staged, installed: &[Record]) -> Result<()> {
        let rec = &st.rec;
        let Some(tmp) = &st.tmp else {
            self.link(rec)?;
            self.say(format_args!("{} {} is already installed", rec.name, rec.version));
            return Ok(());
        };
        let final_dir = format!("{}/{}", st.pkgdir, rec.version);
        // A same-version directory without a valid record is debris of an older attempt.
        fs::remove_tree(&final_dir)?;
        fs::rename(tmp, &final_dir)?;
        self.link(rec)?;
        for old in installed.iter().filter(|r| r.name == rec.name) {
            let lp = self.path(&old.link);
            if old.link != rec.link
                && fs::readlink(&lp).ok().as_deref() == Some(self.path(&old.file).as_str())
            {
                fs::unlink(&lp)?;
            }
            if old.version != rec.version {
                fs::remove_tree(&self.path(&format!("{PACKAGES}/{}/{}", old.name, old.version)))?;
            }
        }
        self.say(format_args!(
            "installed {} {} ({})",
            rec.name, rec.version, rec.link
        ));
        Ok(())
    }

    fn clean_temp(&self, pkgdir: &str) {
        if let Ok(names) = fs::read_dir(pkgdir) {
            for n in names.iter().filter(|n| n.starts_with(".tmp-")) {
                let _ = fs::remove_tree(&fs::join(pkgdir, n));
            }
        }
    }

    fn download_into(&mut self, e: &Entry, tmp: &str, sha: &str) -> Result<()> {
        let part = format!("{tmp}/{}", e.bin);
        let fd = Fd::open(&part, sys::O_WRONLY | sys::O_CREAT | sys::O_EXCL, 0o600)?;
        let mut sink = VerifySink {
            fd: &fd,
            path: &part,
            hash: Sha256::new(),
            size: 0,
            progress: Progress::new(&format!("{} {}", e.name, e.version)),
        };
        let fetched = (self.fetch)(&e.url, &mut sink, e.size);
        sink.progress.finish();
        fetched?;
        let got = hex_encode(&sink.hash.finalize());
        if sink.size != e.size {
            return Err(Error::msg(format!(
                "size mismatch: got {} bytes, the index says {}",
                sink.size, e.size
            )));
        }
        if got != sha {
            return Err(Error::msg(format!(
                "checksum mismatch: got sha256 {got}, the index says {sha}"
            )));
        }
        fd.fchmod(0o755)
            .map_err(|er| Error::sys(format!("chmod {part}"), er))?;
        fd.fsync().map_err(|er| Error::sys(format!("sync {part}"), er))?;
        Ok(())
    }

    /// Errors unless `link` is absent or a link into this package's directory.
    fn check_link_free(&self, link: &str, name: &str) -> Result<()> {
        let lp = self.path(link);
        match fs::lstat(&lp)? {
            None => Ok(()),
            Some(m) if m.kind == Kind::Link => {
                let target = fs::readlink(&lp)?;
                if target.starts_with(&self.path(&format!("{PACKAGES}/{name}/"))) {
                    Ok(())
                } else {
                    Err(Error::msg(format!(
                        "{link} already exists (points to {target}); not replacing it"
                    )))
                }
            }
            Some(_) => Err(Error::msg(format!(
                "{link} already exists and was not installed by lwpkg; not replacing it"
            ))),
        }
    }

    /// Points the record's link at its file, atomically (temp link + rename).
    pub fn link(&self, r: &Record) -> Result<()> {
        self.check_link_free(&r.link, &r.name)?;
        let lp = self.path(&r.link);
        let target = self.path(&r.file);
        if fs::readlink(&lp).ok().as_deref() == Some(target.as_str()) {
            return Ok(());
        }
        fs::mkdir_p(&self.path(BIN), 0o755)?;
        let tmp = fs::temp_name(&lp);
        let _ = fs::unlink(&tmp);
        fs::symlink(&target, &tmp)?;
        fs::rename(&tmp, &lp).inspect_err(|_| {
            let _ = fs::unlink(&tmp);
        })
    }

    /// Removes exactly what install created: the link (if still ours), the
    /// version directory and the then-empty package directory.
    pub fn remove(&mut self, names: &[String]) -> Result<()> {
        let installed = self.installed()?;
        for n in names {
            if !installed.iter().any(|r| r.name == *n) {
                return Err(Error::msg(format!("{n} is not installed")));
            }
            if let Some(user) = installed
                .iter()
                .find(|r| !names.contains(&r.name) && r.depends.contains(n))
            {
                return Err(Error::msg(format!(
                    "cannot remove {n}: {} depends on it",
                    user.name
                )));
            }
        }
        for r in installed.iter().filter(|r| names.contains(&r.name)) {
            let lp = self.path(&r.link);
            if fs::readlink(&lp).ok().as_deref() == Some(self.path(&r.file).as_str()) {
                fs::unlink(&lp)?;
            }
            let pkgdir = self.path(&format!("{PACKAGES}/{}", r.name));
            fs::remove_tree(&format!("{pkgdir}/{}", r.version))?;
            self.clean_temp(&pkgdir);
            if fs::read_dir(&pkgdir).map(|v| v.is_empty()).unwrap_or(false) {
                fs::rmdir(&pkgdir)?;
            }
            self.say(format_args!("removed {} {}", r.name, r.version));
        }
        Ok(())
    }

    /// Installs the index versions of installed packages that are higher
    /// ([`index::compare_versions`]); never goes down.
    pub fn upgrade(&mut self) -> Result<usize> {
        let idx = self.load_index()?;
        let installed = self.installed()?;
        let mut wanted = Vec::new();
        for r in &installed {
            match idx.lookup(&r.name, self.arch) {
                Ok(e) => match index::compare_versions(&e.version, &r.version) {
                    core::cmp::Ordering::Greater => wanted.push(r.name.clone()),
                    core::cmp::Ordering::Less => errln!(
                        "lwpkg: warning: keeping {} {}: the index has the older {} (install {}={} to go down)",
                        r.name,
                        r.version,
                        e.version,
                        r.name,
                        e.version
                    ),
                    core::cmp::Ordering::Equal => {}
                },
                Err(_) => errln!("lwpkg: warning: {} is no longer in any repository", r.name),
            }
        }
        let order = index::resolve(&idx, &wanted, self.arch)?;
        let wants: Vec<Want> = order
            .into_iter()
            .map(|entry| Want {
                entry,
                explicit: false,
            })
            .collect();
        self.install_all(&wants)?;
        Ok(wanted.len())
    }
}

/// Writes the download to the temporary file while hashing and counting it.
struct VerifySink<'a> {
    fd: &'a Fd,
    path: &'a str,
    hash: Sha256,
    size: u64,
    progress: Progress,
}

impl Sink for VerifySink<'_> {
    fn start(&mut self, len: Option<u64>) -> Result<()> {
        self.progress.set_total(len);
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> Result<()> {
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
        self.fd
            .write_all(bytes)
            .map_err(|e| Error::sys(format!("write {}", self.path), e))?;
        self.progress.add(bytes.len() as u64);
        Ok(())
    }
}
