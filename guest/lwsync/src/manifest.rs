//! The snapshot manifest: the one record committed last, naming every saved
//! path with its metadata and, for files, the chunks holding its bytes.
//!
//! Text, one record per line, fields separated by single spaces:
//!   lwsync 3
//!   root PATH
//!   p N PACK
//!   c HASH N OFFSET LENGTH
//!   d MODE SEC NSEC PATH
//!   f MODE SEC NSEC SIZE PATH HASH[,HASH...] | -
//!   l MODE SEC NSEC PATH TARGET
//! MODE is octal; SEC NSEC the modification time; HASH is the sha256 (hex)
//! of one chunk. A chunk named by a `c` line lives in a pack: LENGTH bytes
//! at byte OFFSET of the value `lwsync/pack/PACK`, where PACK is the one
//! declared by the earlier `p` line numbered N (PACK is 64 hex digits, N
//! counts from 0). Any other chunk is a value of its own,
//! `lwsync/chunk/HASH` (all chunks of formats 1 and 2, which have no `p`
//! or `c` lines). Either way restore checks each chunk's sha256.
//!
//! Paths and link targets are bytes, as Linux keeps them (not necessarily
//! UTF-8). Format 2 percent-encodes every byte that is not printable ASCII
//! (<= 0x20, 0x7f, >= 0x80) and '%', so a manifest is ASCII text.
//! Format 1 (the first lwsync) is the same except that it escaped only
//! space, control bytes and '%' and held UTF-8 names: the one decoder reads
//! both, so snapshots written by it restore unchanged. Format 3 added the
//! `p` and `c` lines (packs); formats 1 and 2 still restore.
//!
//! A manifest is untrusted data (the store belongs to the page's origin or
//! is a directory anyone with access may edit): [`Manifest::parse`] checks
//! its shape (including that every packed chunk's length is the one its
//! place in its file implies); where restore may write is decided by the configured roots,
//! never by the `root` lines (see sync.rs).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use lwguest::fs::{Error, Result};

/// The first line of the format this lwsync writes.
pub const HEADER: &str = "lwsync 3";
/// Formats this lwsync reads.
const READS: &[&str] = &["lwsync 1", "lwsync 2", "lwsync 3"];

/// Where a packed chunk lives: `len` bytes at byte `off` of the value
/// `lwsync/pack/PACK` (`pack` is PACK, 64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub pack: String,
    pub off: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Dir,
    File {
        size: u64,
        chunks: Vec<String>,
    },
    /// The target bytes (never empty, no NUL).
    Link {
        target: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute, clean (no empty, "." or ".." component), no NUL.
    pub path: Vec<u8>,
    pub mode: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub body: Body,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub roots: Vec<Vec<u8>>,
    /// Packed chunks by hash; a chunk not here is a value of its own.
    pub locs: alloc::collections::BTreeMap<String, Loc>,
    /// Parents before children (walk order).
    pub entries: Vec<Entry>,
}

/// Format 2's encoding of a path or target: printable ASCII but '%' as is,
/// every other byte as %XX.
pub fn encode(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b <= b' ' || b == b'%' || b >= 0x7f {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Decodes a path or target of format 1 or 2 into its bytes; NUL refused.
pub fn decode(s: &str) -> Result<Vec<u8>> {
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
    if out.contains(&0) {
        return Err(Error::msg("manifest: NUL in a path"));
    }
    Ok(out)
}

/// An absolute path without empty, "." or ".." components.
pub fn clean_path(p: &[u8]) -> bool {
    p.first() == Some(&b'/')
        && (p == b"/"
            || p[1..]
                .split(|&b| b == b'/')
                .all(|c| !c.is_empty() && c != b"." && c != b".."))
}

/// True when `path` is `root` or inside it.
pub fn under(path: &[u8], root: &[u8]) -> bool {
    path == root || root == b"/" || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
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
        // Each pack once, numbered in order of first use.
        let mut packs: alloc::collections::BTreeMap<&str, usize> = alloc::collections::BTreeMap::new();
        for loc in self.locs.values() {
            let n = packs.len();
            if let alloc::collections::btree_map::Entry::Vacant(v) = packs.entry(&loc.pack) {
                v.insert(n);
                s.push_str(&format!("p {n} {}\n", loc.pack));
            }
        }
        for (hash, loc) in &self.locs {
            let n = packs[loc.pack.as_str()];
            s.push_str(&format!("c {hash} {n} {} {}\n", loc.off, loc.len));
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

    /// Parses and checks a manifest of format 1 or 2: every path clean and
    /// under a root, no duplicates, sizes that match the chunk count.
    pub fn parse(text: &[u8], chunk_size: u64) -> Result<Manifest> {
        let text = core::str::from_utf8(text).map_err(|_| Error::msg("manifest is not text"))?;
        let mut lines = text.lines().enumerate();
        match lines.next().map(|(_, l)| l) {
            Some(h) if READS.contains(&h) => {}
            Some(h) if h.starts_with("lwsync ") => {
                return Err(Error::msg(format!(
                    "the snapshot is in a newer format ({h:?}); this lwsync reads {READS:?}"
                )))
            }
            _ => return Err(Error::msg("not an lwsync manifest")),
        }
        let mut m = Manifest::default();
        let mut seen = alloc::collections::BTreeSet::new();
        let mut packs: Vec<String> = Vec::new();
        for (n, line) in lines {
            let bad = |why: &str| Error::msg(format!("manifest line {}: {why}", n + 1));
            let f: Vec<&str> = line.split(' ').collect();
            if f[0] == "p" {
                match f[..] {
                    [_, num, id] if num.parse() == Ok(packs.len()) && valid_hash(id) => {
                        packs.push(String::from(id))
                    }
                    _ => return Err(bad("bad pack record")),
                }
                continue;
            }
            if f[0] == "c" {
                let [_, hash, num, off, len] = f[..] else {
                    return Err(bad("bad chunk record"));
                };
                let pack = num
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| packs.get(i))
                    .ok_or_else(|| bad("chunk in an undeclared pack"))?;
                let off: u64 = off.parse().map_err(|_| bad("bad chunk offset"))?;
                let len: u64 = len
                    .parse()
                    .ok()
                    .filter(|l| (1..=chunk_size).contains(l))
                    .ok_or_else(|| bad("bad chunk length"))?;
                if off.checked_add(len).is_none() {
                    return Err(bad("bad chunk offset"));
                }
                if !valid_hash(hash) {
                    return Err(bad("bad chunk hash"));
                }
                let loc = Loc {
                    pack: pack.clone(),
                    off,
                    len,
                };
                if m.locs.insert(String::from(hash), loc).is_some() {
                    return Err(bad("chunk listed twice"));
                }
                continue;
            }
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
            if !clean_path(&path) || path == b"/" {
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
        // A packed chunk holds exactly the bytes its place in a file needs:
        // a whole chunk, or what is left of the file for the last one.
        for e in &m.entries {
            if let Body::File { size, chunks } = &e.body {
                for (i, c) in chunks.iter().enumerate() {
                    let want = (size - i as u64 * chunk_size).min(chunk_size);
                    if m.locs.get(c).is_some_and(|l| l.len != want) {
                        return Err(Error::msg(format!(
                            "manifest: chunk {c} of {} is {} bytes in its pack, the file needs {want}",
                            lwguest::fs::show(&e.path),
                            m.locs[c].len
                        )));
                    }
                }
            }
        }
        // Byte order puts every directory before what it holds.
        lwguest::sort::sort_by(&mut m.entries, |a, b| a.path.cmp(&b.path));
        Ok(m)
    }

    pub fn find(&self, path: &[u8]) -> Option<&Entry> {
        // Sorted by path: save writes them so and parse sorts them.
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
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
    New(Vec<u8>),
    Deleted(Vec<u8>),
    /// Content changed (or may have: see [`diff`]), or a link's target.
    Modified(Vec<u8>),
    Mode(Vec<u8>),
    /// A file became a directory, or the like.
    Type(Vec<u8>),
}

/// Compares the saved entries with the current ones. A file's content
/// counts as unchanged only when `same_file(now)` says so (save's rule:
/// inode, size, mtime and ctime as last saved or restored). Sorted by path.
pub fn diff(saved: &[Entry], now: &[Entry], same_file: &dyn Fn(&Entry) -> bool) -> Vec<Change> {
    use alloc::collections::BTreeMap;
    // Inserted one by one (the last entry of a path wins, as with collect):
    // collecting into a BTreeMap sorts with a 4 KiB stack buffer (lwguest::sort).
    let mut old: BTreeMap<&[u8], &Entry> = BTreeMap::new();
    for e in saved {
        old.insert(e.path.as_slice(), e);
    }
    let mut new: BTreeMap<&[u8], &Entry> = BTreeMap::new();
    for e in now {
        new.insert(e.path.as_slice(), e);
    }
    let mut out = Vec::new();
    for (p, n) in &new {
        match old.get(p) {
            None => out.push(Change::New(p.to_vec())),
            Some(o) => {
                let same_content = match (&o.body, &n.body) {
                    (Body::Dir, Body::Dir) => Some(true),
                    (Body::File { size: a, .. }, Body::File { size: b, .. }) => Some(
                        a == b && o.mtime_sec == n.mtime_sec && o.mtime_nsec == n.mtime_nsec && same_file(n),
                    ),
                    (Body::Link { target: a }, Body::Link { target: b }) => Some(a == b),
                    _ => None,
                };
                match same_content {
                    None => out.push(Change::Type(p.to_vec())),
                    Some(false) => out.push(Change::Modified(p.to_vec())),
                    Some(true) if o.mode != n.mode => out.push(Change::Mode(p.to_vec())),
                    Some(true) => {}
                }
            }
        }
    }
    for p in old.keys() {
        if !new.contains_key(p) {
            out.push(Change::Deleted(p.to_vec()));
        }
    }
    lwguest::sort::sort_by(&mut out, |a, b| change_path(a).cmp(change_path(b)));
    out
}

pub fn change_path(c: &Change) -> &[u8] {
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

    fn entry(path: &[u8], mode: u32, body: Body) -> Entry {
        Entry {
            path: path.to_vec(),
            mode,
            mtime_sec: 6,
            mtime_nsec: 7,
            body,
        }
    }

    /// Chunk 'b' (the last 476 bytes of a 1500-byte file, 1 KiB chunks)
    /// lives in pack 'e' at byte 8; chunk 'a' is a value of its own.
    fn sample() -> Manifest {
        let mut locs = alloc::collections::BTreeMap::new();
        locs.insert(
            h('b'),
            Loc {
                pack: h('e'),
                off: 8,
                len: 476,
            },
        );
        Manifest {
            locs,
            roots: vec![b"/home".to_vec()],
            entries: vec![
                entry(b"/home/u", 0o755, Body::Dir),
                entry(
                    b"/home/u/a file%",
                    0o644,
                    Body::File {
                        size: 1500,
                        chunks: vec![h('a'), h('b')],
                    },
                ),
                entry(
                    b"/home/u/caf\xe9",
                    0o600,
                    Body::File {
                        size: 0,
                        chunks: vec![],
                    },
                ),
                entry(
                    "/home/u/l\u{e9}nk".as_bytes(),
                    0o777,
                    Body::Link {
                        target: b"/x\xff ../t a\nb".to_vec(),
                    },
                ),
            ],
        }
    }

    #[test]
    fn manifest_round_trips_and_is_ascii() {
        let m = sample();
        let text = m.to_text();
        assert!(text.is_ascii(), "{text}");
        assert!(text.starts_with("lwsync 3\n"));
        assert!(
            text.contains(&format!("\np 0 {}\nc {} 0 8 476\n", h('e'), h('b'))),
            "{text}"
        );
        assert!(text.contains("/home/u/a%20file%25"), "{text}");
        assert!(text.contains("/home/u/caf%E9 -"), "{text}");
        assert!(text.contains(" /x%FF%20"), "{text}");
        assert_eq!(Manifest::parse(text.as_bytes(), 1024).unwrap(), m);
        assert_eq!(m.chunks().len(), 2);
        assert!(m.find(b"/home/u/caf\xe9").is_some() && m.find(b"/home/u/cafe").is_none());
    }

    /// Every byte but NUL and '/' in a name, every byte but NUL in a target.
    #[test]
    fn arbitrary_bytes_round_trip() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut name: Vec<u8> = b"/home/".to_vec();
            let mut target = Vec::new();
            for _ in 0..(1 + next() % 40) {
                let b = (next() % 255 + 1) as u8;
                name.push(if b == b'/' { b'x' } else { b });
                target.push((next() % 255 + 1) as u8);
            }
            if name == b"/home/." || name == b"/home/.." {
                continue;
            }
            let m = Manifest {
                locs: Default::default(),
                roots: vec![b"/home".to_vec()],
                entries: vec![entry(
                    &name,
                    0o777,
                    Body::Link {
                        target: target.clone(),
                    },
                )],
            };
            let back = Manifest::parse(m.to_text().as_bytes(), 1024).unwrap();
            assert_eq!(back, m, "round {round}: {name:?} -> {target:?}");
        }
        // All 255 non-NUL byte values in one target.
        let all: Vec<u8> = (1..=255u8).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }

    /// A manifest as the first lwsync (format 1) wrote it: UTF-8 names
    /// unescaped, only space, controls and '%' escaped.
    #[test]
    fn format_1_manifests_still_parse() {
        let v1 = format!(
            "lwsync 1\nroot /home\nroot /root\nd 755 5 0 /home/u\n\
             f 644 6 7 1500 /home/u/a%20file%25 {},{}\n\
             f 600 1 2 0 /home/u/empty -\n\
             l 777 -1 0 /home/u/l\u{e9}nk ../t%20a%0Ab\n",
            h('a'),
            h('b')
        );
        let m = Manifest::parse(v1.as_bytes(), 1024).unwrap();
        assert_eq!(m.roots, vec![b"/home".to_vec(), b"/root".to_vec()]);
        assert_eq!(m.entries.len(), 4);
        assert_eq!(m.entries[1].path, b"/home/u/a file%");
        assert_eq!(
            m.find("/home/u/l\u{e9}nk".as_bytes()).unwrap().body,
            Body::Link {
                target: b"../t a\nb".to_vec()
            }
        );
        // Written back as format 2, it reads the same.
        assert_eq!(Manifest::parse(m.to_text().as_bytes(), 1024).unwrap(), m);
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let good = sample().to_text();
        // Paths outside the root, not normal, or badly escaped.
        let bad_paths = [
            "/etc/passwd",
            "/home/u/../../etc/passwd",
            "/home/u/%2E%2E/x",
            "/home//u/x",
            "home/u/x",
            "/home/u/%zz",
            "/home/u/%00x",
            "/home/u/x%",
        ]
        .map(|path| good.replace("/home/u/caf%E9", path));
        let cases = [
            good.replace("lwsync 3", "lwsync 4"),
            good.replace("lwsync 3", "lwsync"),
            good.replace("root /home", "root /home/../etc"),
            good.replace(" 1500 ", " 5000 "),
            good.replace(&h('b'), "xyz"),
            good.replace("644", "99999"),
            good.replace("d 755 6 7", "d 755 6 1000000000"),
            good.replace("d 755", "q 755"),
            format!("{good}d 755 1 1 /home/u\n"),
            format!("{good}f 644 1 1\n"),
            // Packs: undeclared, misnumbered or badly named; chunk records
            // with lengths or offsets out of range, listed twice, or a
            // length the file's size contradicts.
            good.replace(" 0 8 476", " 1 8 476"),
            good.replace("p 0 ", "p 1 "),
            good.replace(&format!("p 0 {}", h('e')), "p 0 xyz"),
            good.replace(" 0 8 476", " 0 8 0"),
            good.replace(" 0 8 476", " 0 8 1025"),
            good.replace(" 0 8 476", " 0 8 475"),
            good.replace(" 0 8 476", " 0 -8 476"),
            good.replace(" 0 8 476", " 0 18446744073709551615 476"),
            good.replace(" 0 8 476", " 0 8 476 9"),
            good.replace(&format!("c {}", h('b')), "c xyz"),
            good.replace("c ", "p 1 ab\nc "),
            good.replace(" 0 8 476\n", &format!(" 0 8 476\nc {} 0 0 476\n", h('b'))),
        ];
        for (i, bad) in cases.iter().chain(&bad_paths).enumerate() {
            assert!(Manifest::parse(bad.as_bytes(), 1024).is_err(), "case {i}: {bad}");
        }
        let newer = Manifest::parse(cases[0].as_bytes(), 1024).unwrap_err();
        assert!(newer.msg.contains("newer format"), "{newer}");
        let short = Manifest::parse(good.replace(" 0 8 476", " 0 8 475").as_bytes(), 1024).unwrap_err();
        assert!(
            short.msg.contains("475 bytes in its pack, the file needs 476"),
            "{short}"
        );
        assert!(Manifest::parse(b"\xff\xfe", 1024).is_err());
        assert!(Manifest::parse(b"", 1024).is_err());
    }

    fn file(p: &str, size: u64, mtime: i64, mode: u32) -> Entry {
        Entry {
            path: p.as_bytes().to_vec(),
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
            file("/h/e", 5, 1, 0o644),
            Entry {
                path: b"/h/l".to_vec(),
                mode: 0o777,
                mtime_sec: 1,
                mtime_nsec: 0,
                body: Body::Link {
                    target: b"a".to_vec(),
                },
            },
        ];
        let now = vec![
            file("/h/a", 1, 1, 0o644),         // unchanged
            file("/h/b-renamed", 2, 1, 0o644), // b renamed
            file("/h/c", 3, 1, 0o600),         // chmod
            file("/h/d", 4, 2, 0o644),         // touched
            file("/h/e", 5, 1, 0o644),         // rewritten, then touch -r
            Entry {
                path: b"/h/l".to_vec(),
                mode: 0o755,
                mtime_sec: 1,
                mtime_nsec: 0,
                body: Body::Dir,
            }, // link -> dir
        ];
        let same = |e: &Entry| e.path != b"/h/e";
        assert_eq!(
            diff(&saved, &now, &same),
            vec![
                Change::Deleted(b"/h/b".to_vec()),
                Change::New(b"/h/b-renamed".to_vec()),
                Change::Mode(b"/h/c".to_vec()),
                Change::Modified(b"/h/d".to_vec()),
                Change::Modified(b"/h/e".to_vec()),
                Change::Type(b"/h/l".to_vec()),
            ]
        );
        assert!(diff(&saved, &saved, &|_| true).is_empty());
    }

    #[test]
    fn paths_and_roots() {
        assert!(under(b"/home/u", b"/home") && under(b"/home", b"/home") && !under(b"/homer", b"/home"));
        assert!(under(b"/etc", b"/"));
        assert!(clean_path(b"/a/b") && !clean_path(b"/a/./b") && !clean_path(b"/a/") && !clean_path(b"a"));
        assert!(clean_path(b"/a/\xff") && !clean_path(b"/a/.."));
        assert_eq!(decode(&encode(b"a b%c\td\xe9")).unwrap(), b"a b%c\td\xe9");
    }
}
