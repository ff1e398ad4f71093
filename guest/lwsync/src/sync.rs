//! save / restore / status over a [`Blobs`] store. File bytes are cut into
//! content-addressed chunks (1 MiB, named by their sha256). A save appends
//! the chunks the store lacks to packs, values `lwsync/pack/ID` of up to
//! [`PACK_SIZE`] (the chunks' bytes back to back; ID is the sha256 of the
//! list of their hashes), put lazily; the manifest (`lwsync/manifest`),
//! which says where each chunk lives, is committed last with a plain put
//! (making the packs durable first), so an interrupted save leaves the
//! previous snapshot whole. One value per few MiB instead of one per chunk:
//! creating a store value costs the host a file, which dominated saving
//! many small files. Snapshots of formats 1 and 2 keep each chunk in a value
//! of its own (`lwsync/chunk/SHA256`); those still restore, and a save over
//! one keeps referring to the chunks it already has.
//!
//! Clean-up runs after the new manifest is committed and deletes every
//! pack and chunk value that neither it nor the manifest committed in the
//! store at that moment references. A pack goes only when no chunk in it
//! is referenced any more: a pack with one live chunk keeps its other
//! chunks' bytes too (packs are not rewritten), so a store can hold up to
//! a pack's worth of unreferenced bytes per live pack.
//!
//! Change detection: a file is read again unless its inode, size, mtime and
//! ctime are those recorded when it was last saved or restored (the local
//! record, [`state`]); ctime cannot be set back by `touch -r`, `cp -p` or
//! archive extraction (the rule restic and borg use).
//!
//! Restore treats the manifest as untrusted: it writes only below the
//! configured roots ([`config`]), never below a symbolic link (every
//! existing component of a path is checked with lstat when it is used, so a
//! link the restore itself created earlier is refused too), creates its
//! temporary files exclusively and does not restore setuid/setgid bits. An
//! entry it cannot restore (a conflict, a missing or damaged chunk) is
//! reported and skipped; the rest is restored.

use crate::config;
use crate::manifest::{self, Body, Change, Entry, Loc, Manifest};
use crate::state::{self, Stamp, State};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use lwguest::fs::{self, show, Error, Fd, Kind, Meta, Result};
use lwguest::index::hex_encode;
use lwguest::sha2::{Digest, Sha256};
use lwguest::sort;
use lwguest::store::Blobs;
use lwguest::{errln, outln, sys};

pub const MANIFEST_KEY: &str = "lwsync/manifest";
pub const CHUNK_PREFIX: &str = "lwsync/chunk/";
pub const PACK_PREFIX: &str = "lwsync/pack/";
pub const CHUNK_SIZE: u64 = 1 << 20;
/// A pack is closed before a chunk would take it past this many bytes
/// (so a pack of 1 MiB chunks holds 4): few values a save, yet bounded
/// memory in the guest (the open pack's chunks) and little dead data kept
/// by one live chunk.
pub const PACK_SIZE: u64 = 4 << 20;
const MAX_MANIFEST: u64 = 64 << 20;
/// Mode bits restore sets: permissions and sticky, never setuid/setgid
/// (ownership is not recorded, so those bits would grant root's rights).
const RESTORE_MODE_MASK: u32 = 0o1777;

pub struct Ctx<'a> {
    /// Prefix of every local path ("" in the guest; a directory in tests).
    pub root: Vec<u8>,
    pub store: &'a mut dyn Blobs,
    pub chunk_size: u64,
    /// Most bytes in one pack ([`PACK_SIZE`]; a chunk larger than this
    /// gets a pack of its own).
    pub pack_size: u64,
    pub quiet: bool,
    /// The configured roots: the only places restore writes to.
    pub roots: Vec<Vec<u8>>,
}

/// What a save did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SaveStats {
    pub files: usize,
    pub dirs: usize,
    pub links: usize,
    /// Files whose bytes were read again (new or changed).
    pub changed: usize,
    pub chunks_sent: usize,
    pub bytes_sent: u64,
    /// Packs written (each holds one or more of the chunks sent).
    pub packs_sent: usize,
    /// Store values (packs, chunks of older formats) deleted as unreferenced.
    pub objects_deleted: usize,
}

/// What a restore did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Files and links written.
    pub written: usize,
    /// Entries not restored (each reported on stderr).
    pub skipped: usize,
}

/// The metadata of every scanned file, by path.
type Metas = BTreeMap<Vec<u8>, Meta>;

fn chunk_key(hash: &str) -> String {
    format!("{CHUNK_PREFIX}{hash}")
}

fn pack_key(id: &str) -> String {
    format!("{PACK_PREFIX}{id}")
}

/// The store values a snapshot needs: its packs, and its chunks stored as
/// values of their own.
fn needed_keys(m: &Manifest) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for c in m.chunks() {
        keys.insert(match m.locs.get(c) {
            Some(loc) => pack_key(&loc.pack),
            None => chunk_key(c),
        });
    }
    keys
}

/// Where the chunks a save may refer to live: for those of the previous
/// snapshot its location (None: a value of its own), for those the save
/// sent, their place in a pack (None while their pack is still open).
type Known = BTreeMap<String, Option<Loc>>;

/// The pack being filled: its chunks' bytes, one buffer each (put back to
/// back: no buffer of the whole pack, which a no-MMU kernel would have to
/// find contiguous), its size, and each chunk's hash, offset and length.
#[derive(Default)]
struct Pack {
    parts: Vec<Vec<u8>>,
    size: u64,
    members: Vec<(String, u64, u64)>,
}

/// The sha256 of a chunk list: what the local record keeps of a file's content.
fn list_digest(chunks: &[String]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c.as_bytes());
        h.update(b",");
    }
    hex_encode(&h.finalize())
}

fn stamp(m: &Meta, chunks: &[String]) -> Stamp {
    Stamp {
        ino: m.ino,
        size: m.size,
        mtime: (m.mtime_sec, m.mtime_nsec),
        ctime: (m.ctime_sec, m.ctime_nsec),
        list: list_digest(chunks),
    }
}

/// `dir/name` for byte paths.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Why an entry was not restored.
enum Skip {
    /// Reported and skipped; the restore goes on.
    Entry(String),
    /// The restore cannot go on (the store or the local disk failed).
    Fatal(Error),
}

impl From<Error> for Skip {
    fn from(e: Error) -> Skip {
        Skip::Fatal(e)
    }
}

impl Ctx<'_> {
    fn local(&self, p: &[u8]) -> Vec<u8> {
        let mut l = self.root.clone();
        l.extend_from_slice(p);
        l
    }

    fn state_path(&self) -> Vec<u8> {
        self.local(state::PATH.as_bytes())
    }

    pub fn load(&mut self) -> Result<Option<Manifest>> {
        match self.store.get(MANIFEST_KEY, MAX_MANIFEST)? {
            None => Ok(None),
            Some(bytes) => Manifest::parse(&bytes, self.chunk_size)
                .map(Some)
                .map_err(|e| e.context("the saved snapshot")),
        }
    }

    /// Walks `path` (not following links) into entries without chunk lists,
    /// and the metadata of every file. Depth-first, each directory's names
    /// in the order read: an explicit stack on the heap, not recursion, so
    /// a deep tree does not grow the (8 KiB, binfmt_wasm) stack.
    fn scan(&self, path: &[u8], out: &mut Vec<Entry>, metas: &mut Metas) -> Result<()> {
        let mut todo: Vec<Vec<u8>> = alloc::vec![path.to_vec()];
        while let Some(path) = todo.pop() {
            let local = self.local(&path);
            let Some(meta) = fs::lstat(&local)? else {
                continue;
            };
            let body = match meta.kind {
                Kind::Dir => Body::Dir,
                Kind::File => Body::File {
                    size: meta.size,
                    chunks: Vec::new(),
                },
                Kind::Link => Body::Link {
                    target: fs::readlink_raw(&local)?,
                },
                Kind::Other => {
                    errln!("lwsync: skipping {}: not a file, directory or link", show(&path));
                    continue;
                }
            };
            if meta.kind == Kind::File {
                metas.insert(path.clone(), meta);
            }
            if meta.kind == Kind::Dir {
                let names = fs::read_dir_raw(&local)?;
                // Reversed: the first name is popped (walked) first.
                todo.extend(
                    names
                        .iter()
                        .rev()
                        .filter(|n| !n.contains(&b'/'))
                        .map(|n| join(&path, n)),
                );
            }
            out.push(Entry {
                path,
                mode: meta.mode,
                mtime_sec: meta.mtime_sec,
                mtime_nsec: meta.mtime_nsec,
                body,
            });
        }
        Ok(())
    }

    fn scan_roots(&self, roots: &[Vec<u8>]) -> Result<(Vec<Entry>, Metas)> {
        let mut out = Vec::new();
        let mut metas = BTreeMap::new();
        for r in roots {
            self.scan(r, &mut out, &mut metas)?;
        }
        sort::sort_by(&mut out, |a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        Ok((out, metas))
    }

    /// Saves `paths` (absolute, below a configured root; default: the
    /// configured roots) as the new snapshot. Saved paths outside `paths`
    /// stay as they were.
    pub fn save(&mut self, paths: &[Vec<u8>]) -> Result<SaveStats> {
        let paths = if paths.is_empty() {
            self.roots.clone()
        } else {
            normalize_roots(paths, &self.roots)?
        };
        let prev = self.load()?.unwrap_or_default();
        let record = State::load(&self.state_path());
        // Inserted one by one: collecting into a BTreeMap sorts on the stack (lwguest::sort).
        let mut known: Known = BTreeMap::new();
        for c in prev.chunks() {
            known.insert(String::from(c), prev.locs.get(c).cloned());
        }
        let mut pack = Pack::default();
        // One read buffer for the whole save: a new one per file would map
        // (and fault in) fresh memory each time, costly on a um guest.
        let mut buf = Vec::new();
        let mut entries: Vec<Entry> = prev
            .entries
            .iter()
            .filter(|e| !paths.iter().any(|p| manifest::under(&e.path, p)))
            .cloned()
            .collect();
        let mut roots = prev.roots.clone();
        roots.extend(paths.iter().cloned());
        let roots = minimal_roots(roots);
        let mut stats = SaveStats::default();
        let (scanned, metas) = self.scan_roots(&paths)?;
        let mut stamps: BTreeMap<Vec<u8>, Stamp> = BTreeMap::new();
        for mut e in scanned {
            if let Body::File { size, chunks } = &mut e.body {
                let meta = metas.get(&e.path).copied();
                let same = match (prev.find(&e.path), meta) {
                    (
                        Some(Entry {
                            body: Body::File { chunks: pc, .. },
                            ..
                        }),
                        Some(m),
                    ) => record.get(&e.path) == Some(&stamp(&m, pc)),
                    _ => false,
                };
                if same {
                    if let Some(Entry {
                        body: Body::File { chunks: pc, .. },
                        ..
                    }) = prev.find(&e.path)
                    {
                        *chunks = pc.clone();
                    }
                } else {
                    let expect = meta.map(|m| m.size);
                    let (read, list) =
                        self.upload_file(&e.path, expect, &mut buf, &mut known, &mut pack, &mut stats)?;
                    *size = read;
                    *chunks = list;
                    stats.changed += 1;
                }
                if let Some(m) = meta {
                    stamps.insert(e.path.clone(), stamp(&m, chunks));
                }
            }
            entries.push(e);
        }
        self.flush_pack(&mut pack, &mut known, &mut stats)?;
        sort::sort_by(&mut entries, |a, b| a.path.cmp(&b.path));
        for e in &entries {
            match e.body {
                Body::Dir => stats.dirs += 1,
                Body::File { .. } => stats.files += 1,
                Body::Link { .. } => stats.links += 1,
            }
        }
        let mut m = Manifest {
            roots,
            entries,
            ..Manifest::default()
        };
        let mut locs = BTreeMap::new();
        for c in m.chunks() {
            if let Some(Some(loc)) = known.get(c) {
                locs.insert(String::from(c), loc.clone());
            }
        }
        m.locs = locs;
        // The commit point: before it the old snapshot is the saved one.
        self.store.put(MANIFEST_KEY, m.to_text().as_bytes())?;
        // Clean-up keeps what this manifest and whatever manifest is
        // committed now reference (if another saver slipped in, its packs stay).
        let committed = self.load()?.unwrap_or_default();
        let mut needed = needed_keys(&m);
        needed.extend(needed_keys(&committed));
        for prefix in [PACK_PREFIX, CHUNK_PREFIX] {
            for key in self.store.list(prefix)? {
                if !needed.contains(&key) {
                    self.store.delete(&key)?;
                    stats.objects_deleted += 1;
                }
            }
        }
        // The local record: what was just saved, plus the record's entries
        // of saved files this save did not look at.
        let mut next = State::default();
        for e in &m.entries {
            if let Some(s) = stamps.remove(&e.path).or_else(|| record.get(&e.path).cloned()) {
                next.insert(e.path.clone(), s);
            }
        }
        self.write_state(&next);
        Ok(stats)
    }

    fn write_state(&self, s: &State) {
        if let Err(e) = s.store(&self.state_path()) {
            // Only costs time: the next save reads every file again.
            errln!("lwsync: could not write the local record: {e}");
        }
    }

    /// Puts the pack being filled (lazily: the manifest's plain put makes
    /// it durable first) and records where its chunks are. Empty: nothing.
    fn flush_pack(&mut self, pack: &mut Pack, known: &mut Known, stats: &mut SaveStats) -> Result<()> {
        if pack.members.is_empty() {
            return Ok(());
        }
        let hashes: Vec<String> = pack.members.iter().map(|(h, _, _)| h.clone()).collect();
        // Named by its contents: a new pack holds only chunks the previous
        // snapshot lacks, so it never replaces a pack that snapshot uses.
        let id = list_digest(&hashes);
        let parts: Vec<&[u8]> = pack.parts.iter().map(Vec::as_slice).collect();
        self.store.put_lazy_parts(&pack_key(&id), &parts)?;
        stats.packs_sent += 1;
        for (hash, off, len) in pack.members.drain(..) {
            let loc = Loc {
                pack: id.clone(),
                off,
                len,
            };
            known.insert(hash, Some(loc));
        }
        pack.parts.clear();
        pack.size = 0;
        Ok(())
    }

    /// Reads a file chunk by chunk ([`read_chunks`]), adding chunks the
    /// store lacks to `pack` (put whenever it is full).
    fn upload_file(
        &mut self,
        path: &[u8],
        expect: Option<u64>,
        buf: &mut Vec<u8>,
        known: &mut Known,
        pack: &mut Pack,
        stats: &mut SaveStats,
    ) -> Result<(u64, Vec<String>)> {
        let local = self.local(path);
        let fd = Fd::open(&local, sys::O_RDONLY | sys::O_NOFOLLOW, 0)?;
        buf.resize(self.chunk_size as usize, 0);
        let mut chunks = Vec::new();
        let total = read_chunks(path, &fd, expect, buf, |chunk| {
            let n = chunk.len() as u64;
            let hash = hex_encode(&Sha256::digest(chunk));
            if !known.contains_key(&hash) {
                if pack.size + n > self.pack_size {
                    self.flush_pack(pack, known, stats)?;
                }
                pack.members.push((hash.clone(), pack.size, n));
                pack.parts.push(chunk.to_vec());
                pack.size += n;
                stats.chunks_sent += 1;
                stats.bytes_sent += n;
                known.insert(hash.clone(), None);
            }
            chunks.push(hash);
            Ok(())
        })?;
        Ok((total, chunks))
    }

    /// The configured root `path` lies under, if any.
    fn root_of(&self, path: &[u8]) -> Option<Vec<u8>> {
        self.roots.iter().find(|r| manifest::under(path, r)).cloned()
    }

    /// Makes sure every directory from the configured root down to the
    /// parent of `path` is a real directory (creating missing ones), never
    /// a link. `checked` caches directories already seen: restore never
    /// turns a directory into anything else, so a checked one stays one.
    fn check_parents(
        &self,
        path: &[u8],
        root: &[u8],
        checked: &mut BTreeSet<Vec<u8>>,
    ) -> core::result::Result<(), Skip> {
        let mut at = root.to_vec();
        let rest = &path[root.len()..];
        let comps: Vec<&[u8]> = rest.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
        // Every component but the last, starting with the root itself.
        for i in 0..comps.len() {
            if i > 0 {
                at = join(&at, comps[i - 1]);
            }
            if checked.contains(&at) {
                continue;
            }
            let local = self.local(&at);
            match fs::lstat(&local)? {
                Some(m) if m.kind == Kind::Dir => {}
                None => match fs::mkdir(&local, 0o755) {
                    Ok(()) => {}
                    Err(e) if e.errno == sys::EEXIST => {
                        return Err(Skip::Entry(format!("{} appeared while restoring", show(&at))))
                    }
                    Err(e) => return Err(Skip::Fatal(e)),
                },
                Some(m) => {
                    let what = if m.kind == Kind::Link {
                        "a symbolic link"
                    } else {
                        "not a directory"
                    };
                    return Err(Skip::Entry(format!("{} is {what}", show(&at))));
                }
            }
            checked.insert(at.clone());
        }
        Ok(())
    }

    /// Restores the saved snapshot below the configured roots. Nothing
    /// saved: Ok(None), silently. Files still as the last restore or save
    /// left them (inode, size, mtime, ctime) are kept, so running it twice
    /// does the work once.
    pub fn restore(&mut self) -> Result<Option<Restored>> {
        let Some(m) = self.load()? else { return Ok(None) };
        let record = State::load(&self.state_path());
        let mut next = State::default();
        let mut out = Restored::default();
        let mut checked = BTreeSet::new();
        let mut skipped_dirs: BTreeSet<Vec<u8>> = BTreeSet::new();
        let zeros = hex_encode(&Sha256::digest(alloc::vec![0u8; self.chunk_size as usize]));
        for e in &m.entries {
            let r = match self.root_of(&e.path) {
                None => Err(Skip::Entry(String::from(
                    "outside the configured roots (/etc/lwsync.conf)",
                ))),
                // A root replaced by a link would send later writers (lwpkg
                // into /opt, say) elsewhere.
                Some(root) if root == e.path && e.body != Body::Dir => Err(Skip::Entry(String::from(
                    "a configured root is restored only as a directory",
                ))),
                Some(root) => self
                    .check_parents(&e.path, &root, &mut checked)
                    .and_then(|()| self.restore_entry(e, &m.locs, &record, &mut next, &zeros)),
            };
            match r {
                Ok(true) => out.written += 1,
                Ok(false) => {}
                Err(Skip::Entry(why)) => {
                    errln!("lwsync: not restored: {}: {why}", show(&e.path));
                    out.skipped += 1;
                    if e.body == Body::Dir {
                        skipped_dirs.insert(e.path.clone());
                    }
                }
                Err(Skip::Fatal(err)) => return Err(err),
            }
        }
        // Directories last, deepest first: creating their contents moved their mtimes.
        for e in m.entries.iter().rev().filter(|e| e.body == Body::Dir) {
            if skipped_dirs.contains(&e.path) || self.root_of(&e.path).is_none() {
                continue;
            }
            let dest = self.local(&e.path);
            let Ok(fd) = Fd::open(&dest, sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW, 0) else {
                continue;
            };
            fd.fchmod(e.mode & RESTORE_MODE_MASK)
                .map_err(|x| Error::sys(format!("chmod {}", show(&e.path)), x))?;
            fs::set_mtime(&dest, e.mtime_sec, e.mtime_nsec)?;
        }
        // Setting times changed the files' ctimes: record them as they are now.
        for (path, s) in next.entries_mut() {
            if let Some(now) = fs::lstat(self.local(path))? {
                s.ctime = (now.ctime_sec, now.ctime_nsec);
            }
        }
        self.write_state(&next);
        Ok(Some(out))
    }

    /// Restores one entry whose parents are checked; Ok(true) when written.
    fn restore_entry(
        &mut self,
        e: &Entry,
        locs: &BTreeMap<String, Loc>,
        record: &State,
        next: &mut State,
        zeros: &str,
    ) -> core::result::Result<bool, Skip> {
        let dest = self.local(&e.path);
        let existing = fs::lstat(&dest)?;
        match &e.body {
            Body::Dir => match existing {
                Some(x) if x.kind == Kind::Dir => Ok(false),
                None => fs::mkdir(&dest, 0o700).map(|()| false).map_err(Skip::Fatal),
                Some(_) => Err(Skip::Entry(String::from(
                    "something other than a directory is there (not replaced)",
                ))),
            },
            Body::File { size, chunks } => {
                if let Some(x) = existing {
                    if x.kind == Kind::Dir {
                        return Err(Skip::Entry(String::from(
                            "a directory is there (not replaced by a file)",
                        )));
                    }
                    let s = stamp(&x, chunks);
                    if x.kind == Kind::File && x.size == *size && record.get(&e.path) == Some(&s) {
                        if x.mode != e.mode & RESTORE_MODE_MASK {
                            fs::chmod(&dest, e.mode & RESTORE_MODE_MASK)?;
                        }
                        next.insert(e.path.clone(), s);
                        return Ok(false);
                    }
                }
                let mode = e.mode & RESTORE_MODE_MASK;
                self.restore_file(&dest, *size, chunks, locs, mode, zeros)?;
                fs::set_mtime(&dest, e.mtime_sec, e.mtime_nsec)?;
                if let Some(now) = fs::lstat(&dest)? {
                    next.insert(e.path.clone(), stamp(&now, chunks));
                }
                Ok(true)
            }
            Body::Link { target } => {
                let written = match existing {
                    Some(x) if x.kind == Kind::Dir => {
                        return Err(Skip::Entry(String::from(
                            "a directory is there (not replaced by a link)",
                        )))
                    }
                    Some(x)
                        if x.kind == Kind::Link && fs::readlink_raw(&dest).ok().as_ref() == Some(target) =>
                    {
                        false
                    }
                    _ => {
                        let tmp = temp_name(&dest);
                        let _ = fs::unlink(&tmp);
                        fs::symlink(target, &tmp)?;
                        if let Err(err) = fs::rename(&tmp, &dest) {
                            let _ = fs::unlink(&tmp);
                            return Err(Skip::Fatal(err));
                        }
                        true
                    }
                };
                fs::set_mtime(&dest, e.mtime_sec, e.mtime_nsec)?;
                Ok(written)
            }
        }
    }

    /// Writes a file from its chunks into an exclusively created temporary
    /// file beside it, then renames it over `dest`. All-zero chunks become
    /// holes. A chunk missing or failing its hash skips the file.
    fn restore_file(
        &mut self,
        dest: &[u8],
        size: u64,
        chunks: &[String],
        locs: &BTreeMap<String, Loc>,
        mode: u32,
        zeros: &str,
    ) -> core::result::Result<(), Skip> {
        let tmp = temp_name(dest);
        let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_EXCL | sys::O_NOFOLLOW;
        let fd = match Fd::open(&tmp, flags, 0o600) {
            Err(e) if e.errno == sys::EEXIST => {
                // Left by an interrupted restore (or planted): remove the
                // name itself (unlink does not follow links) and try once more.
                fs::unlink(&tmp)?;
                Fd::open(&tmp, flags, 0o600)?
            }
            r => r?,
        };
        let result = (|| {
            let mut total = 0u64;
            for hash in chunks {
                // A whole chunk of zeros (most of a sparse file) is a hole:
                // its hash says what it holds, no need to fetch it.
                if hash == zeros {
                    total += self.chunk_size;
                    fd.skip(self.chunk_size)
                        .map_err(|x| Error::sys(format!("seek {}", show(&tmp)), x))?;
                    continue;
                }
                let data = self.fetch_chunk(hash, locs.get(hash))?;
                if hex_encode(&Sha256::digest(&data)) != *hash {
                    return Err(Skip::Entry(format!("chunk {hash} is damaged in the store")));
                }
                total += data.len() as u64;
                let w = if data.iter().all(|&b| b == 0) {
                    fd.skip(data.len() as u64)
                } else {
                    fd.write_all(&data)
                };
                w.map_err(|x| Error::sys(format!("write {}", show(&tmp)), x))?;
            }
            if total != size {
                return Err(Skip::Entry(format!(
                    "the chunks hold {total} bytes, the snapshot says {size}"
                )));
            }
            // Trailing holes: the offset moved past them, the length did not.
            fd.set_len(size)
                .map_err(|x| Error::sys(format!("truncate {}", show(&tmp)), x))?;
            fd.fchmod(mode)
                .map_err(|x| Error::sys(format!("chmod {}", show(&tmp)), x))?;
            fd.fsync()
                .map_err(|x| Error::sys(format!("sync {}", show(&tmp)), x))?;
            fs::rename(&tmp, dest).map_err(Skip::Fatal)
        })();
        drop(fd);
        if result.is_err() {
            let _ = fs::unlink(&tmp);
        }
        result
    }

    /// A chunk's bytes from its pack (`loc`) or its own value, unchecked.
    fn fetch_chunk(&mut self, hash: &str, loc: Option<&Loc>) -> core::result::Result<Vec<u8>, Skip> {
        let Some(loc) = loc else {
            return match self.store.get(&chunk_key(hash), self.chunk_size)? {
                Some(d) => Ok(d),
                None => Err(Skip::Entry(format!("chunk {hash} is missing from the store"))),
            };
        };
        match self.store.get_range(&pack_key(&loc.pack), loc.off, loc.len)? {
            None => Err(Skip::Entry(format!(
                "pack {} (holding chunk {hash}) is missing from the store",
                loc.pack
            ))),
            Some(d) if (d.len() as u64) < loc.len => Err(Skip::Entry(format!(
                "chunk {hash}: pack {} ends before byte {} (damaged or not the snapshot's)",
                loc.pack,
                loc.off + loc.len
            ))),
            Some(d) => Ok(d),
        }
    }

    /// Changes since the last save; None when nothing was ever saved.
    pub fn status(&mut self) -> Result<Option<Vec<Change>>> {
        let Some(m) = self.load()? else { return Ok(None) };
        let roots = clamp_roots(&m.roots, &self.roots);
        let saved: Vec<Entry> = m
            .entries
            .iter()
            .filter(|e| roots.iter().any(|r| manifest::under(&e.path, r)))
            .cloned()
            .collect();
        let (now, metas) = self.scan_roots(&roots)?;
        let record = State::load(&self.state_path());
        let same = |e: &Entry| match (m.find(&e.path), metas.get(&e.path)) {
            (
                Some(Entry {
                    body: Body::File { chunks, .. },
                    ..
                }),
                Some(meta),
            ) => record.get(&e.path) == Some(&stamp(meta, chunks)),
            _ => false,
        };
        Ok(Some(manifest::diff(&saved, &now, &same)))
    }

    pub fn report(&self, s: &SaveStats) {
        if !self.quiet {
            outln!(
                "saved {} files, {} directories, {} links: {} changed, {} KiB sent",
                s.files,
                s.dirs,
                s.links,
                s.changed,
                s.bytes_sent.div_ceil(1024)
            );
        }
    }
}

/// Reads `fd` from its current offset in chunks of `buf.len()` bytes (the
/// last one shorter), passing each to `each`; returns the bytes read.
/// With `expect` (the size lstat saw when the scan stamped the file)
/// reading stops after that many bytes, without a read to find the end:
/// bytes a writer appended since then change the stamp's size and mtime,
/// so the next save reads the file again. A file that shrank ends at its
/// first short read. Errors: read(2)'s errno (naming `path`), or `each`'s.
pub(crate) fn read_chunks(
    path: &[u8],
    fd: &Fd,
    expect: Option<u64>,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let want = match expect {
            Some(size) => size.saturating_sub(total).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        if want == 0 {
            return Ok(total);
        }
        let n = fd
            .read_full(&mut buf[..want])
            .map_err(|e| Error::sys(format!("read {}", show(path)), e))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        each(&buf[..n])?;
        if n < want {
            return Ok(total);
        }
    }
}

/// A temporary name beside `path` (same directory, so rename is atomic).
fn temp_name(path: &[u8]) -> Vec<u8> {
    // SAFETY: plain C call.
    let pid = unsafe { sys::getpid() };
    let i = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let mut t = path[..i].to_vec();
    t.push(b'.');
    t.extend_from_slice(&path[i..]);
    t.extend_from_slice(format!(".lwsync-tmp.{pid}").as_bytes());
    t
}

/// Validates user paths ("/home/" -> "/home"): absolute, clean, below a
/// configured root (restore would not bring anything else back).
pub fn normalize_roots(paths: &[Vec<u8>], configured: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in paths {
        let mut t = p.as_slice();
        while t.len() > 1 && t.ends_with(b"/") {
            t = &t[..t.len() - 1];
        }
        if !manifest::clean_path(t) || t == b"/" {
            return Err(Error::msg(format!(
                "{:?}: give absolute paths below / without . or .. (e.g. /home/user)",
                show(p)
            )));
        }
        if !configured.iter().any(|r| manifest::under(t, r)) {
            return Err(Error::msg(format!(
                "{}: not below a configured root ({}; see {})",
                show(t),
                configured.iter().map(show).collect::<Vec<_>>().join(" "),
                config::PATH
            )));
        }
        out.push(t.to_vec());
    }
    Ok(minimal_roots(out))
}

/// The parts of the saved roots that lie within the configured ones.
fn clamp_roots(saved: &[Vec<u8>], configured: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in saved {
        for c in configured {
            if manifest::under(s, c) {
                out.push(s.clone());
            } else if manifest::under(c, s) {
                out.push(c.clone());
            }
        }
    }
    minimal_roots(out)
}

/// Drops duplicates and paths inside another path of the list.
fn minimal_roots(mut roots: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    sort::sort(&mut roots);
    roots.dedup();
    let all = roots.clone();
    roots.retain(|r| !all.iter().any(|o| o != r && manifest::under(r, o)));
    roots
}
