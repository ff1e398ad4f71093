//! The snapshot manifest: the one record committed last, naming every saved
//! path with its metadata and, for files, the chunks holding its bytes.
//!
//! Text, one record per line, fields separated by single spaces; paths and
//! link targets are percent-encoded (space, control bytes, '%'):
//!   lwsync 1
//!   root PATH
//!   d MODE SEC NSEC PATH
//!   f MODE SEC NSEC SIZE PATH HASH[,HASH...] | -
//!   l MODE SEC NSEC PATH TARGET
//! MODE is octal; HASH is the sha256 (hex) of one chunk, stored under
//! `lwsync/chunk/HASH`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use lwguest::fs::{Error, Result};

pub const HEADER: &str = "lwsync 1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Dir,
    File { size: u64, chunks: Vec<String> },
    Link { target: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub body: Body,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub roots: Vec<String>,
    /// Parents before children (walk order).
    pub entries: Vec<Entry>,
}

pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c <= ' ' || c == '%' || c == '\u{7f}' {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .ok_or_else(|| Error::msg("manifest: bad % escape"))?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| Error::msg("manifest: bad % escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| Error::msg("manifest: path is not UTF-8"))?;
    if s.contains('\0') {
        return Err(Error::msg("manifest: NUL in a path"));
    }
    Ok(s)
}

/// An absolute path without empty, "." or ".." components.
pub fn clean_path(p: &str) -> bool {
    p.starts_with('/') && (p == "/" || p[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}

/// True when `path` is `root` or inside it.
pub fn under(path: &str, root: &str) -> bool {
    path == root || root == "/" || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

pub fn valid_hash(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Manifest {
    pub fn to_text(&self) -> String {
        let mut s = String::from(HEADER);
        s.push('\n');
        for r in &self.roots {
            s.push_str(&format!("root {}\n", encode(r)));
        }
        for e in &self.entries {
            let head = format!("{:o} {} {}", e.mode, e.mtime_sec, e.mtime_nsec);
            match &e.body {
                Body::Dir => s.push_str(&format!("d {head} {}\n", encode(&e.path))),
                Body::File { size, chunks } => {
                    let list = if chunks.is_empty() {
                        "-".to_string()
                    } else {
                        chunks.join(",")
                    };
                    s.push_str(&format!("f {head} {size} {} {list}\n", encode(&e.path)));
                }
                Body::Link { target } => {
                    s.push_str(&format!("l {head} {} {}\n", encode(&e.path), encode(target)))
                }
            }
        }
        s
    }

    /// Parses and checks a manifest: every path clean and under a root,
    /// no duplicates, sizes that match the chunk count.
    pub fn parse(text: &[u8], chunk_size: u64) -> Result<Manifest> {
        let text = core::str::from_utf8(text).map_err(|_| Error::msg("manifest is not text"))?;
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, l)| l) != Some(HEADER) {
            return Err(Error::msg("not an lwsync manifest (or a newer format)"));
        }
        let mut m = Manifest::default();
        let mut seen = alloc::collections::BTreeSet::new();
        for (n, line) in lines {
            let bad = |why: &str| Error::msg(format!("manifest line {}: {why}", n + 1));
            let f: Vec<&str> = line.split(' ').collect();
            if f[0] == "root" {
                let [_, p] = f[..] else {
                    return Err(bad("bad root"));
                };
                let p = decode(p)?;
                if !clean_path(&p) {
                    return Err(bad("root is not a clean absolute path"));
                }
                m.roots.push(p);
                continue;
            }
            if f.len() < 5 {
                return Err(bad("too few fields"));
            }
            let mode = u32::from_str_radix(f[1], 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| bad("bad mode"))?;
            let mtime_sec: i64 = f[2].parse().map_err(|_| bad("bad time"))?;
            let mtime_nsec: u32 = f[3]
                .parse()
                .ok()
                .filter(|n| *n < 1_000_000_000)
                .ok_or_else(|| bad("bad time"))?;
            let (path, body) = match (f[0], f.len()) {
                ("d", 5) => (f[4], Body::Dir),
                ("f", 7) => {
                    let size: u64 = f[4].parse().map_err(|_| bad("bad size"))?;
                    let chunks: Vec<String> = if f[6] == "-" {
                        Vec::new()
                    } else {
                        f[6].split(',').map(String::from).collect()
                    };
                    if !chunks.iter().all(|c| valid_hash(c)) {
                        return Err(bad("bad chunk hash"));
                    }
                    if chunks.len() as u64 != size.div_ceil(chunk_size) {
                        return Err(bad("chunk count does not match the size"));
                    }
                    (f[5], Body::File { size, chunks })
                }
                ("l", 6) => {
                    let target = decode(f[5])?;
                    if target.is_empty() {
                        return Err(bad("empty link target"));
                    }
                    (f[4], Body::Link { target })
                }
                _ => return Err(bad("unknown record")),
            };
            let path = decode(path)?;
            if !clean_path(&path) || path == "/" {
                return Err(bad("path is not a clean absolute path"));
            }
            if !m.roots.iter().any(|r| under(&path, r)) {
                return Err(bad("path outside the saved roots"));
            }
            if !seen.insert(path.clone()) {
                return Err(bad("path listed twice"));
            }
            m.entries.push(Entry {
                path,
                mode,
                mtime_sec,
                mtime_nsec,
                body,
            });
        }
        Ok(m)
    }

    pub fn find(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Every chunk hash the snapshot needs.
    pub fn chunks(&self) -> alloc::collections::BTreeSet<&str> {
        let mut set = alloc::collections::BTreeSet::new();
        for e in &self.entries {
            if let Body::File { chunks, .. } = &e.body {
                set.extend(chunks.iter().map(String::as_str));
            }
        }
        set
    }
}

/// One difference between a snapshot and the tree now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    New(String),
    Deleted(String),
    /// Content (size or modification time) changed, or a link's target.
    Modified(String),
    Mode(String),
    /// A file became a directory, or the like.
    Type(String),
}

/// Compares the saved entries with the current ones (content for files is
/// judged by size + mtime, as save does). Sorted by path.
pub fn diff(saved: &[Entry], now: &[Entry]) -> Vec<Change> {
    use alloc::collections::BTreeMap;
    let old: BTreeMap<&str, &Entry> = saved.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: BTreeMap<&str, &Entry> = now.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = Vec::new();
    for (p, n) in &new {
        match old.get(p) {
            None => out.push(Change::New(p.to_string())),
            Some(o) => {
                let same_content = match (&o.body, &n.body) {
                    (Body::Dir, Body::Dir) => Some(true),
                    (Body::File { size: a, .. }, Body::File { size: b, .. }) => {
                        Some(a == b && o.mtime_sec == n.mtime_sec && o.mtime_nsec == n.mtime_nsec)
                    }
                    (Body::Link { target: a }, Body::Link { target: b }) => Some(a == b),
                    _ => None,
                };
                match same_content {
                    None => out.push(Change::Type(p.to_string())),
                    Some(false) => out.push(Change::Modified(p.to_string())),
                    Some(true) if o.mode != n.mode => out.push(Change::Mode(p.to_string())),
                    Some(true) => {}
                }
            }
        }
    }
    for p in old.keys() {
        if !new.contains_key(p) {
            out.push(Change::Deleted(p.to_string()));
        }
    }
    out.sort_by(|a, b| change_path(a).cmp(change_path(b)));
    out
}

pub fn change_path(c: &Change) -> &str {
    match c {
        Change::New(p) | Change::Deleted(p) | Change::Modified(p) | Change::Mode(p) | Change::Type(p) => p,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        core::iter::repeat_n(c, 64).collect()
    }

    fn sample() -> Manifest {
        Manifest {
            roots: vec!["/home".into()],
            entries: vec![
                Entry {
                    path: "/home/u".into(),
                    mode: 0o755,
                    mtime_sec: 5,
                    mtime_nsec: 0,
                    body: Body::Dir,
                },
                Entry {
                    path: "/home/u/a file%".into(),
                    mode: 0o644,
                    mtime_sec: 6,
                    mtime_nsec: 7,
                    body: Body::File {
                        size: 1500,
                        chunks: vec![h('a'), h('b')],
                    },
                },
                Entry {
                    path: "/home/u/empty".into(),
                    mode: 0o600,
                    mtime_sec: 1,
                    mtime_nsec: 2,
                    body: Body::File {
                        size: 0,
                        chunks: vec![],
                    },
                },
                Entry {
                    path: "/home/u/l\u{e9}nk".into(),
                    mode: 0o777,
                    mtime_sec: -1,
                    mtime_nsec: 0,
                    body: Body::Link {
                        target: "../t a\nb".into(),
                    },
                },
            ],
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = sample();
        let text = m.to_text();
        assert!(text.contains("/home/u/a%20file%25"), "{text}");
        assert_eq!(Manifest::parse(text.as_bytes(), 1024).unwrap(), m);
        assert_eq!(m.chunks().len(), 2);
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let good = sample().to_text();
        let cases = [
            good.replace("lwsync 1", "lwsync 2"),
            good.replace("root /home", "root /home/../etc"),
            good.replace("/home/u/empty", "/etc/passwd"),
            good.replace("/home/u/empty", "/home/u/../../etc/passwd"),
            good.replace("/home/u/empty", "/home//u/x"),
            good.replace("/home/u/empty", "home/u/x"),
            good.replace("/home/u/empty", "/home/u/%zz"),
            good.replace("/home/u/empty", "/home/u/%00x"),
            good.replace(" 1500 ", " 5000 "),
            good.replace(&h('b'), "xyz"),
            good.replace("644", "99999"),
            good.replace("d 755 5 0", "d 755 5 1000000000"),
            good.replace("d 755", "q 755"),
            format!("{good}d 755 1 1 /home/u\n"),
            format!("{good}f 644 1 1\n"),
        ];
        for (i, bad) in cases.iter().enumerate() {
            assert!(Manifest::parse(bad.as_bytes(), 1024).is_err(), "case {i}: {bad}");
        }
        assert!(Manifest::parse(b"\xff\xfe", 1024).is_err());
        assert!(Manifest::parse(b"", 1024).is_err());
    }

    fn file(p: &str, size: u64, mtime: i64, mode: u32) -> Entry {
        Entry {
            path: p.into(),
            mode,
            mtime_sec: mtime,
            mtime_nsec: 0,
            body: Body::File { size, chunks: vec![] },
        }
    }

    #[test]
    fn diff_sees_renames_deletions_and_mode_changes() {
        let saved = vec![
            file("/h/a", 1, 1, 0o644),
            file("/h/b", 2, 1, 0o644),
            file("/h/c", 3, 1, 0o644),
            file("/h/d", 4, 1, 0o644),
            Entry {
                path: "/h/l".into(),
                mode: 0o777,
                mtime_sec: 1,
                mtime_nsec: 0,
                body: Body::Link { target: "a".into() },
            },
        ];
        let now = vec![
            file("/h/a", 1, 1, 0o644),         // unchanged
            file("/h/b-renamed", 2, 1, 0o644), // b renamed
            file("/h/c", 3, 1, 0o600),         // chmod
            file("/h/d", 4, 2, 0o644),         // touched
            Entry {
                path: "/h/l".into(),
                mode: 0o755,
                mtime_sec: 1,
                mtime_nsec: 0,
                body: Body::Dir,
            }, // link -> dir
        ];
        assert_eq!(
            diff(&saved, &now),
            vec![
                Change::Deleted("/h/b".into()),
                Change::New("/h/b-renamed".into()),
                Change::Mode("/h/c".into()),
                Change::Modified("/h/d".into()),
                Change::Type("/h/l".into()),
            ]
        );
        assert!(diff(&saved, &saved).is_empty());
    }

    #[test]
    fn paths_and_roots() {
        assert!(under("/home/u", "/home") && under("/home", "/home") && !under("/homer", "/home"));
        assert!(clean_path("/a/b") && !clean_path("/a/./b") && !clean_path("/a/") && !clean_path("a"));
        assert_eq!(decode(&encode("a b%c\td")).unwrap(), "a b%c\td");
    }
}
