//! save / restore / status over a [`Blobs`] store. File bytes live in
//! content-addressed chunks (`lwsync/chunk/SHA256`); the manifest
//! (`lwsync/manifest`) is committed last, so an interrupted save leaves the
//! previous snapshot whole. Chunks no snapshot needs are deleted only after
//! the new manifest is committed.

use crate::manifest::{self, Body, Change, Entry, Manifest};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use lwguest::fs::{self, Error, Fd, Kind, Result};
use lwguest::index::hex_encode;
use lwguest::sha2::{Digest, Sha256};
use lwguest::store::Blobs;
use lwguest::{errln, outln, sys};

pub const MANIFEST_KEY: &str = "lwsync/manifest";
pub const CHUNK_PREFIX: &str = "lwsync/chunk/";
pub const DEFAULT_ROOTS: &[&str] = &["/home", "/root", "/opt"];
pub const CHUNK_SIZE: u64 = 1 << 20;
const MAX_MANIFEST: u64 = 64 << 20;

pub struct Ctx<'a> {
    /// Prefix of every local path ("" in the guest).
    pub root: String,
    pub store: &'a mut dyn Blobs,
    pub chunk_size: u64,
    pub quiet: bool,
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
    pub chunks_deleted: usize,
}

fn chunk_key(hash: &str) -> String {
    format!("{CHUNK_PREFIX}{hash}")
}

impl Ctx<'_> {
    fn local(&self, p: &str) -> String {
        format!("{}{p}", self.root)
    }

    pub fn load(&mut self) -> Result<Option<Manifest>> {
        match self.store.get(MANIFEST_KEY, MAX_MANIFEST)? {
            None => Ok(None),
            Some(bytes) => Manifest::parse(&bytes, self.chunk_size)
                .map(Some)
                .map_err(|e| e.context("the saved snapshot")),
        }
    }

    /// Walks `path` (not following links) into entries without chunk lists.
    fn scan(&self, path: &str, out: &mut Vec<Entry>) -> Result<()> {
        let local = self.local(path);
        let Some(meta) = fs::lstat(&local)? else {
            return Ok(());
        };
        let body = match meta.kind {
            Kind::Dir => Body::Dir,
            Kind::File => Body::File {
                size: meta.size,
                chunks: Vec::new(),
            },
            Kind::Link => Body::Link {
                target: fs::readlink(&local)?,
            },
            Kind::Other => {
                errln!("lwsync: skipping {path}: not a file, directory or link");
                return Ok(());
            }
        };
        let is_dir = body == Body::Dir;
        out.push(Entry {
            path: path.to_string(),
            mode: meta.mode,
            mtime_sec: meta.mtime_sec,
            mtime_nsec: meta.mtime_nsec,
            body,
        });
        if is_dir {
            for name in fs::read_dir(&local)? {
                if name.contains('/') || name.contains('\0') {
                    continue;
                }
                self.scan(&fs::join(path, &name), out)?;
            }
        }
        Ok(())
    }

    fn scan_roots(&self, roots: &[String]) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for r in roots {
            self.scan(r, &mut out)?;
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        Ok(out)
    }

    /// Saves `paths` (absolute; default /home /root /opt) as the new snapshot.
    /// Saved paths outside `paths` stay as they were.
    pub fn save(&mut self, paths: &[String]) -> Result<SaveStats> {
        let paths = normalize_roots(paths)?;
        let prev = self.load()?.unwrap_or_default();
        let mut known: BTreeSet<String> = prev.chunks().into_iter().map(String::from).collect();
        let mut entries: Vec<Entry> = prev
            .entries
            .iter()
            .filter(|e| !paths.iter().any(|p| manifest::under(&e.path, p)))
            .cloned()
            .collect();
        let mut roots: Vec<String> = prev.roots.clone();
        roots.extend(paths.iter().cloned());
        let roots = minimal_roots(roots);
        let mut stats = SaveStats::default();
        for mut e in self.scan_roots(&paths)? {
            if let Body::File { size, chunks } = &mut e.body {
                match prev.find(&e.path) {
                    // Same size and mtime as saved: the bytes are already in the store.
                    Some(Entry {
                        body: Body::File { size: ps, chunks: pc },
                        mtime_sec,
                        mtime_nsec,
                        ..
                    }) if *ps == *size && *mtime_sec == e.mtime_sec && *mtime_nsec == e.mtime_nsec => {
                        *chunks = pc.clone();
                    }
                    _ => {
                        let (read, list) = self.upload_file(&e.path, &mut known, &mut stats)?;
                        *size = read;
                        *chunks = list;
                        stats.changed += 1;
                    }
                }
            }
            entries.push(e);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        for e in &entries {
            match e.body {
                Body::Dir => stats.dirs += 1,
                Body::File { .. } => stats.files += 1,
                Body::Link { .. } => stats.links += 1,
            }
        }
        let m = Manifest { roots, entries };
        // The commit point: before it the old snapshot is the saved one.
        self.store.put(MANIFEST_KEY, m.to_text().as_bytes())?;
        let needed = m.chunks();
        for key in self.store.list(CHUNK_PREFIX)? {
            let hash = &key[CHUNK_PREFIX.len()..];
            if !needed.contains(hash) {
                self.store.delete(&key)?;
                stats.chunks_deleted += 1;
            }
        }
        Ok(stats)
    }

    /// Reads a file chunk by chunk, uploading chunks the store lacks.
    fn upload_file(
        &mut self,
        path: &str,
        known: &mut BTreeSet<String>,
        stats: &mut SaveStats,
    ) -> Result<(u64, Vec<String>)> {
        let local = self.local(path);
        let fd = Fd::open(&local, sys::O_RDONLY | sys::O_NOFOLLOW, 0)?;
        let mut buf = alloc::vec![0u8; self.chunk_size as usize];
        let mut chunks = Vec::new();
        let mut total = 0u64;
        loop {
            let n = fd
                .read_full(&mut buf)
                .map_err(|e| Error::sys(format!("read {path}"), e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            let hash = hex_encode(&Sha256::digest(&buf[..n]));
            if !known.contains(&hash) {
                self.store.put(&chunk_key(&hash), &buf[..n])?;
                stats.chunks_sent += 1;
                stats.bytes_sent += n as u64;
                known.insert(hash.clone());
            }
            chunks.push(hash);
            if n < buf.len() {
                break;
            }
        }
        Ok((total, chunks))
    }

    /// Restores the saved snapshot. Nothing saved: Ok(None), silently.
    /// Files already matching (size, mtime) are left alone, so running it
    /// twice does the work once.
    pub fn restore(&mut self) -> Result<Option<usize>> {
        let Some(m) = self.load()? else { return Ok(None) };
        let mut written = 0;
        for e in &m.entries {
            let dest = self.local(&e.path);
            if let Some(parent) = fs::parent(&dest) {
                fs::mkdir_p(parent, 0o755)?;
            }
            let existing = fs::lstat(&dest)?;
            match &e.body {
                Body::Dir => match existing {
                    Some(x) if x.kind == Kind::Dir => {}
                    None => fs::mkdir(&dest, 0o700)?,
                    Some(_) => errln!("lwsync: not replacing {} with a directory", e.path),
                },
                Body::File { size, chunks } => {
                    if let Some(x) = existing {
                        if x.kind == Kind::Dir {
                            errln!("lwsync: not replacing directory {} with a file", e.path);
                            continue;
                        }
                        if x.kind == Kind::File
                            && x.size == *size
                            && x.mtime_sec == e.mtime_sec
                            && x.mtime_nsec == e.mtime_nsec
                        {
                            if x.mode != e.mode {
                                fs::chmod(&dest, e.mode)?;
                            }
                            continue;
                        }
                    }
                    self.restore_file(&dest, &e.path, *size, chunks, e.mode)?;
                    fs::set_mtime(&dest, e.mtime_sec, e.mtime_nsec)?;
                    written += 1;
                }
                Body::Link { target } => {
                    match existing {
                        Some(x) if x.kind == Kind::Dir => {
                            errln!("lwsync: not replacing directory {} with a link", e.path);
                            continue;
                        }
                        Some(x)
                            if x.kind == Kind::Link
                                && fs::readlink(&dest).ok().as_deref() == Some(target.as_str()) => {}
                        _ => {
                            let tmp = fs::temp_name(&dest);
                            let _ = fs::unlink(&tmp);
                            fs::symlink(target, &tmp)?;
                            fs::rename(&tmp, &dest)?;
                            written += 1;
                        }
                    }
                    fs::set_mtime(&dest, e.mtime_sec, e.mtime_nsec)?;
                }
            }
        }
        // Directories last, deepest first: creating their contents moved their mtimes.
        for e in m.entries.iter().rev().filter(|e| e.body == Body::Dir) {
            let dest = self.local(&e.path);
            if fs::lstat(&dest)?.map(|x| x.kind) == Some(Kind::Dir) {
                fs::chmod(&dest, e.mode)?;
                fs::set_mtime(&dest, e.mtime_sec, e.mtime_nsec)?;
            }
        }
        Ok(Some(written))
    }

    fn restore_file(
        &mut self,
        dest: &str,
        path: &str,
        size: u64,
        chunks: &[String],
        mode: u32,
    ) -> Result<()> {
        let tmp = fs::temp_name(dest);
        let result = (|| {
            let fd = Fd::open(&tmp, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o600)?;
            let mut total = 0u64;
            for hash in chunks {
                let data = self
                    .store
                    .get(&chunk_key(hash), self.chunk_size)?
                    .ok_or_else(|| Error::msg(format!("{path}: chunk {hash} is missing from the store")))?;
                if hex_encode(&Sha256::digest(&data)) != *hash {
                    return Err(Error::msg(format!(
                        "{path}: chunk {hash} is damaged in the store"
                    )));
                }
                total += data.len() as u64;
                fd.write_all(&data)
                    .map_err(|e| Error::sys(format!("write {tmp}"), e))?;
            }
            if total != size {
                return Err(Error::msg(format!(
                    "{path}: restored {total} bytes, the snapshot says {size}"
                )));
            }
            fd.fchmod(mode)
                .map_err(|e| Error::sys(format!("chmod {tmp}"), e))?;
            fd.fsync().map_err(|e| Error::sys(format!("sync {tmp}"), e))?;
            drop(fd);
            fs::rename(&tmp, dest)
        })();
        if result.is_err() {
            let _ = fs::unlink(&tmp);
        }
        result
    }

    /// Changes since the last save; None when nothing was ever saved.
    pub fn status(&mut self) -> Result<Option<Vec<Change>>> {
        let Some(m) = self.load()? else { return Ok(None) };
        let now = self.scan_roots(&m.roots)?;
        Ok(Some(manifest::diff(&m.entries, &now)))
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

/// Validates user paths ("/home/" -> "/home"); the defaults when none given.
pub fn normalize_roots(paths: &[String]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(DEFAULT_ROOTS.iter().map(|s| s.to_string()).collect());
    }
    let mut out = Vec::new();
    for p in paths {
        let t = if p.len() > 1 {
            p.trim_end_matches('/')
        } else {
            p.as_str()
        };
        if !manifest::clean_path(t) || t == "/" {
            return Err(Error::msg(format!(
                "{p:?}: give absolute paths below / without . or .. (e.g. /home/user)"
            )));
        }
        out.push(t.to_string());
    }
    Ok(minimal_roots(out))
}

/// Drops duplicates and paths inside another path of the list.
fn minimal_roots(mut roots: Vec<String>) -> Vec<String> {
    roots.sort();
    roots.dedup();
    let all = roots.clone();
    roots.retain(|r| !all.iter().any(|o| o != r && manifest::under(r, o)));
    roots
}
