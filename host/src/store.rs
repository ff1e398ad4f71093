//! The durable store directory behind `wasm_store_*` natively.
//!
//! Layout: `objects/<sha256(key)>` holds each committed value and
//! `pending/<sha256(key)>` the value being written; both start with a
//! header (`LWS1`, key length u32 LE, key) so the directory can be
//! re-indexed without a separate index file that could go stale. A value is
//! written in chunks to its pending file and published by `fsync` + atomic
//! `rename` + `fsync` of the directory, so a crash at any point leaves the
//! previously committed value intact. Pending files do not survive a
//! restart: a save that was not committed is abandoned.
//!
//! A commit with `LWHOST_STORE_LAZY` only renames: the value is published
//! at once, and the next commit without it first makes every such value
//! durable (their data synced in parallel, so the file system groups them
//! into few journal commits, then the directory), so a snapshot's chunks
//! cost one flush together, not two each. A crash before that may lose a
//! lazily committed value or leave it short or zeroed (never another
//! key's: the header names the key), so lazy values are for data that a
//! later plain commit makes reachable and whose reader checks it (lwsync's
//! packs of chunks, each chunk checked against its sha256 on restore).
//!
//! One writer per store directory: `lock` is flock(2)ed exclusively by the
//! lwhost that writes (the kernel releases it when that process exits or
//! dies). Another lwhost on the same directory still reads, but its writes
//! and deletes answer EBUSY until it gets the lock, so two guests cannot
//! delete each other's chunks (the browser does the same with Web Locks).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::errno::*;
use lwabi::{
    LWHOST_KEY_MAX, LWHOST_STORE_COMMIT, LWHOST_STORE_FLAGS_ALL, LWHOST_STORE_LAZY, LWHOST_STORE_TRUNC,
};

const MAGIC: &[u8; 4] = b"LWS1";

/// Bytes before the value in a stored file.
fn header_len(key: &[u8]) -> u64 {
    8 + key.len() as u64
}

/// Checks a key: 1..=512 bytes, no NUL, relative, no empty, `.` or `..`
/// component. Returns the errno to answer otherwise.
pub fn validate_key(key: &[u8]) -> Result<(), i32> {
    if key.is_empty() {
        return Err(EINVAL);
    }
    if key.len() > LWHOST_KEY_MAX as usize {
        return Err(ENAMETOOLONG);
    }
    if key.contains(&0) || key[0] == b'/' {
        return Err(EINVAL);
    }
    if key
        .split(|&b| b == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Err(EINVAL);
    }
    Ok(())
}

/// A list prefix or cursor: at most 512 bytes, no NUL (may be empty).
fn validate_prefix(p: &[u8]) -> Result<(), i32> {
    if p.len() > LWHOST_KEY_MAX as usize {
        return Err(ENAMETOOLONG);
    }
    if p.contains(&0) {
        return Err(EINVAL);
    }
    Ok(())
}

struct Pending {
    file: File,
    len: u64,
}

/// The store. Not internally synchronised: the main side keeps it behind a
/// mutex and calls it from blocking threads (it does `fsync`).
pub struct Store {
    objects: PathBuf,
    pending_dir: PathBuf,
    quota: u64,
    /// Committed keys and value sizes, sorted for LIST.
    index: BTreeMap<Vec<u8>, u64>,
    pending: HashMap<Vec<u8>, Pending>,
    /// Value bytes on disk, committed and pending.
    used: u64,
    /// `DIR/lock`, flock(2)ed while this process is the store's writer.
    lock: File,
    locked: bool,
    /// Object files committed with `LWHOST_STORE_LAZY`, not yet synced.
    unsynced: BTreeSet<String>,
}

impl Store {
    /// Opens (creating if needed) the store at `dir` with a quota of `quota`
    /// value bytes, indexes committed values and drops abandoned pending
    /// ones.
    pub fn open(dir: &Path, quota: u64) -> anyhow::Result<Store> {
        let objects = dir.join("objects");
        let pending_dir = dir.join("pending");
        for d in [&objects, &pending_dir] {
            fs::create_dir_all(d).with_context(|| format!("creating store directory {}", d.display()))?;
        }
        for entry in
            fs::read_dir(&pending_dir).with_context(|| format!("reading {}", pending_dir.display()))?
        {
            let path = entry.context("reading pending entry")?.path();
            fs::remove_file(&path).with_context(|| format!("removing abandoned {}", path.display()))?;
        }
        let mut index = BTreeMap::new();
        let mut used = 0;
        for entry in fs::read_dir(&objects).with_context(|| format!("reading {}", objects.display()))? {
            let path = entry.context("reading object entry")?.path();
            match read_header(&path) {
                Ok((key, size))
                    if file_name(&key) == path.file_name().unwrap_or_default().to_string_lossy() =>
                {
                    used += size;
                    index.insert(key, size);
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "store object named for another key; ignored")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable store object; ignored")
                }
            }
        }
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        let mut store = Store {
            objects,
            pending_dir,
            quota,
            index,
            pending: HashMap::new(),
            used,
            lock,
            locked: false,
            unsynced: BTreeSet::new(),
        };
        if store.hold_lock() == Err(EBUSY) {
            tracing::warn!(dir = %dir.display(), "store in use by another lwhost: writes answer EBUSY until it exits");
        }
        tracing::info!(dir = %dir.display(), keys = store.index.len(), used, quota, "store opened");
        Ok(store)
    }

    /// Takes the writer's lock if this process does not hold it yet
    /// (without waiting): EBUSY while another process holds it.
    fn hold_lock(&mut self) -> Result<(), i32> {
        if self.locked {
            return Ok(());
        }
        match self.lock.try_lock() {
            Ok(()) => {
                self.locked = true;
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(EBUSY),
            Err(TryLockError::Error(e)) => Err(io_errno("locking the store", e)),
        }
    }

    /// Value bytes in use (committed plus pending).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Writes a chunk at `offset` of the key's pending value (which must
    /// hold exactly `offset` bytes; `TRUNC` starts a new one at 0) and with
    /// `COMMIT` publishes it. Returns the bytes written.
    pub fn write(&mut self, key: &[u8], offset: u64, flags: u32, data: &[u8]) -> Result<usize, i32> {
        validate_key(key)?;
        self.hold_lock()?;
        if flags & !LWHOST_STORE_FLAGS_ALL != 0 {
            return Err(EINVAL);
        }
        if flags & LWHOST_STORE_TRUNC != 0 {
            if offset != 0 {
                return Err(EINVAL);
            }
            self.drop_pending(key);
        }
        let have = self.pending.get(key).map_or(0, |p| p.len);
        if offset != have {
            return Err(EINVAL);
        }
        if self.used.saturating_add(data.len() as u64) > self.quota {
            return Err(ENOSPC);
        }
        if !self.pending.contains_key(key) {
            let file = self
                .create_pending(key)
                .map_err(|e| io_errno("creating pending value", e))?;
            self.pending.insert(key.to_vec(), Pending { file, len: 0 });
        }
        let p = self.pending.get_mut(key).ok_or(EIO)?;
        if let Err(e) = p.file.write_all(data) {
            // A partial chunk would break the offset rule: start over.
            self.drop_pending(key);
            return Err(io_errno("writing pending value", e));
        }
        p.len += data.len() as u64;
        self.used += data.len() as u64;
        if flags & LWHOST_STORE_COMMIT != 0 {
            self.commit(key, flags & LWHOST_STORE_LAZY != 0)?;
        }
        Ok(data.len())
    }

    fn create_pending(&self, key: &[u8]) -> io::Result<File> {
        let path = self.pending_dir.join(file_name(key));
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut header = Vec::with_capacity(header_len(key) as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(key.len() as u32).to_le_bytes());
        header.extend_from_slice(key);
        f.write_all(&header)?;
        Ok(f)
    }

    fn drop_pending(&mut self, key: &[u8]) {
        if let Some(p) = self.pending.remove(key) {
            self.used -= p.len;
            let path = self.pending_dir.join(file_name(key));
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing pending value");
            }
        }
    }

    /// Publishes the pending value: lazily committed values durable
    /// first, then this one's data, the rename and the directory entry.
    /// `lazy`: the rename alone (see the module's docs).
    fn commit(&mut self, key: &[u8], lazy: bool) -> Result<(), i32> {
        let Some(p) = self.pending.remove(key) else {
            return Err(EIO);
        };
        let name = file_name(key);
        let result = if lazy {
            fs::rename(self.pending_dir.join(&name), self.objects.join(&name))
        } else {
            self.sync_lazy().and_then(|()| {
                p.file.sync_all()?;
                fs::rename(self.pending_dir.join(&name), self.objects.join(&name))?;
                File::open(&self.objects)?.sync_all()
            })
        };
        if lazy && result.is_ok() {
            self.unsynced.insert(name.clone());
        }
        if let Err(e) = result {
            self.used -= p.len;
            let _ = fs::remove_file(self.pending_dir.join(&name));
            return Err(io_errno("committing value", e));
        }
        if let Some(old) = self.index.insert(key.to_vec(), p.len) {
            self.used -= old;
        }
        Ok(())
    }

    /// Makes every lazily committed value durable: their data synced from
    /// up to `SYNC_THREADS` threads at once (concurrent syncs share journal
    /// commits), then the directory that names them. A value deleted since
    /// is skipped. On an error the values stay listed for the next try.
    fn sync_lazy(&mut self) -> io::Result<()> {
        const SYNC_THREADS: usize = 16;
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let names: Vec<&String> = self.unsynced.iter().collect();
        let objects = &self.objects;
        let per_thread = names.len().div_ceil(SYNC_THREADS);
        std::thread::scope(|s| {
            let workers: Vec<_> = names
                .chunks(per_thread)
                .map(|part| {
                    s.spawn(move || -> io::Result<()> {
                        for name in part {
                            match File::open(objects.join(name)) {
                                Ok(f) => f.sync_data()?,
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => return Err(e),
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("sync thread panicked")))
            })
        })?;
        File::open(&self.objects)?.sync_all()?;
        self.unsynced.clear();
        Ok(())
    }

    /// Reads committed bytes from `offset` into `out`; returns the count
    /// (0 at or past the end).
    pub fn read(&self, key: &[u8], offset: u64, out: &mut [u8]) -> Result<usize, i32> {
        validate_key(key)?;
        let size = *self.index.get(key).ok_or(ENOENT)?;
        if offset >= size || out.is_empty() {
            return Ok(0);
        }
        let want = out.len().min((size - offset).min(usize::MAX as u64) as usize);
        let mut f =
            File::open(self.objects.join(file_name(key))).map_err(|e| io_errno("opening value", e))?;
        f.seek(SeekFrom::Start(header_len(key) + offset))
            .map_err(|e| io_errno("seeking value", e))?;
        let mut done = 0;
        while done < want {
            match f.read(&mut out[done..want]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_errno("reading value", e)),
            }
        }
        Ok(done)
    }

    /// The committed size of a value.
    pub fn stat(&self, key: &[u8]) -> Result<u64, i32> {
        validate_key(key)?;
        self.index.get(key).copied().ok_or(ENOENT)
    }

    /// Deletes the committed value and any pending one.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), i32> {
        validate_key(key)?;
        self.hold_lock()?;
        let had_pending = self.pending.contains_key(key);
        self.drop_pending(key);
        let Some(size) = self.index.get(key).copied() else {
            return if had_pending { Ok(()) } else { Err(ENOENT) };
        };
        let name = file_name(key);
        fs::remove_file(self.objects.join(&name)).map_err(|e| io_errno("deleting value", e))?;
        self.index.remove(key);
        self.used -= size;
        File::open(&self.objects)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_errno("syncing directory", e))?;
        Ok(())
    }

    /// Writes committed keys that start with `prefix` and sort after `after`
    /// into `out`, each followed by NUL, whole keys only. Returns the bytes
    /// written (0: no more); `ERANGE` if the next key does not fit at all.
    pub fn list(&self, prefix: &[u8], after: &[u8], out: &mut [u8]) -> Result<usize, i32> {
        validate_prefix(prefix)?;
        validate_prefix(after)?;
        let start = if after.is_empty() || after < prefix {
            Bound::Included(prefix.to_vec())
        } else {
            Bound::Excluded(after.to_vec())
        };
        let mut n = 0;
        for key in self.index.range((start, Bound::Unbounded)).map(|(k, _)| k) {
            if !key.starts_with(prefix) {
                break;
            }
            if n + key.len() + 1 > out.len() {
                if n == 0 {
                    return Err(ERANGE);
                }
                break;
            }
            out[n..n + key.len()].copy_from_slice(key);
            out[n + key.len()] = 0;
            n += key.len() + 1;
        }
        Ok(n)
    }
}

/// The file name of a key: its SHA-256 in hex (keys may be longer than a
/// file name and contain '/').
fn file_name(key: &[u8]) -> String {
    Sha256::digest(key).iter().map(|b| format!("{b:02x}")).collect()
}

fn read_header(path: &Path) -> io::Result<(Vec<u8>, u64)> {
    let mut f = File::open(path)?;
    let total = f.metadata()?.len();
    let mut head = [0u8; 8];
    f.read_exact(&mut head)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if &head[..4] != MAGIC {
        return Err(bad("bad magic"));
    }
    let key_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if key_len == 0 || key_len > LWHOST_KEY_MAX as usize {
        return Err(bad("bad key length"));
    }
    let mut key = vec![0u8; key_len];
    f.read_exact(&mut key)?;
    if validate_key(&key).is_err() {
        return Err(bad("invalid key"));
    }
    let size = total
        .checked_sub(header_len(&key))
        .ok_or_else(|| bad("truncated"))?;
    Ok((key, size))
}

fn io_errno(what: &str, e: io::Error) -> i32 {
    tracing::warn!(error = %e, "store: {what}");
    match e.raw_os_error() {
        Some(28) | Some(122) => ENOSPC, // ENOSPC, EDQUOT
        _ => EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for a test's store, removed when dropped.
    struct TmpDir(PathBuf);

    impl std::ops::Deref for TmpDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl AsRef<Path> for TmpDir {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(name: &str) -> TmpDir {
        let d = std::env::temp_dir().join(format!("lwhost-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        TmpDir(d)
    }

    /// A store with `quota` in a fresh directory named after `name`.
    fn open_tmp(name: &str, quota: u64) -> (TmpDir, Store) {
        let dir = tmp(name);
        let s = Store::open(&dir, quota).expect("open");
        (dir, s)
    }

    const TC: u32 = LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT;

    #[test]
    fn put_get_stat_list_delete() {
        let (dir, mut s) = open_tmp("basic", 1 << 20);
        assert_eq!(s.write(b"lwsync/b", 0, TC, b"bee"), Ok(3));
        assert_eq!(s.write(b"lwsync/a", 0, LWHOST_STORE_TRUNC, b"al"), Ok(2));
        assert_eq!(s.stat(b"lwsync/a"), Err(ENOENT), "not committed yet");
        assert_eq!(s.write(b"lwsync/a", 2, LWHOST_STORE_COMMIT, b"pha"), Ok(3));
        assert_eq!(s.write(b"other", 0, TC, b""), Ok(0));
        let mut buf = [0u8; 16];
        assert_eq!(s.read(b"lwsync/a", 0, &mut buf), Ok(5));
        assert_eq!(&buf[..5], b"alpha");
        assert_eq!(s.read(b"lwsync/a", 3, &mut buf), Ok(2));
        assert_eq!(s.read(b"lwsync/a", 99, &mut buf), Ok(0));
        assert_eq!(s.stat(b"lwsync/b"), Ok(3));
        let mut names = [0u8; 64];
        assert_eq!(s.list(b"lwsync/", b"", &mut names), Ok(18));
        assert_eq!(&names[..18], b"lwsync/a\0lwsync/b\0");
        assert_eq!(s.list(b"lwsync/", b"lwsync/a", &mut names), Ok(9));
        assert_eq!(s.list(b"lwsync/", b"lwsync/b", &mut names), Ok(0));
        assert_eq!(s.list(b"", b"", &mut names[..12]), Ok(9), "whole keys only");
        assert_eq!(s.list(b"", b"", &mut names[..4]), Err(ERANGE));
        assert_eq!(s.delete(b"lwsync/a"), Ok(()));
        assert_eq!(s.delete(b"lwsync/a"), Err(ENOENT));
        assert_eq!(s.read(b"lwsync/a", 0, &mut buf), Err(ENOENT));
        // Reopen: committed values are re-indexed.
        drop(s);
        let s = Store::open(&dir, 1 << 20).expect("reopen");
        assert_eq!(s.stat(b"lwsync/b"), Ok(3));
        assert_eq!(s.stat(b"other"), Ok(0));
        assert_eq!(s.used(), 3);
    }

    /// A lazy commit is visible at once and listed as unsynced; the next
    /// plain commit syncs it (skipping one deleted since) and clears the list.
    #[test]
    fn lazy_commits_are_synced_by_the_next_plain_one() {
        const LAZY: u32 = LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT | LWHOST_STORE_LAZY;
        let dir = tmp("lazy");
        let mut s = Store::open(&dir, 1 << 20).expect("open");
        assert_eq!(s.write(b"lwsync/chunk/a", 0, LAZY, b"aaa"), Ok(3));
        assert_eq!(s.write(b"lwsync/chunk/b", 0, LAZY, b"bb"), Ok(2));
        assert_eq!(s.write(b"lwsync/chunk/c", 0, LAZY, b"c"), Ok(1));
        assert_eq!(s.stat(b"lwsync/chunk/a"), Ok(3), "visible before any sync");
        assert_eq!(s.unsynced.len(), 3);
        assert_eq!(s.delete(b"lwsync/chunk/c"), Ok(()));
        assert_eq!(
            s.write(b"k", 0, LWHOST_STORE_LAZY, b"x"),
            Ok(1),
            "LAZY without COMMIT: nothing to do yet"
        );
        assert_eq!(s.unsynced.len(), 3);
        assert_eq!(
            s.write(
                b"lwsync/manifest",
                0,
                LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT,
                b"m"
            ),
            Ok(1)
        );
        assert!(s.unsynced.is_empty(), "a plain commit syncs the lazy ones first");
        drop(s);
        let s = Store::open(&dir, 1 << 20).expect("reopen");
        assert_eq!(s.stat(b"lwsync/chunk/b"), Ok(2));
        assert_eq!(s.stat(b"lwsync/chunk/c"), Err(ENOENT));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn chunks_must_arrive_at_the_expected_offset() {
        let (_dir, mut s) = open_tmp("offsets", 1 << 20);
        assert_eq!(s.write(b"k", 5, 0, b"x"), Err(EINVAL), "no pending value yet");
        assert_eq!(s.write(b"k", 0, 0, b"abc"), Ok(3));
        assert_eq!(s.write(b"k", 2, 0, b"x"), Err(EINVAL), "overlap");
        assert_eq!(s.write(b"k", 4, 0, b"x"), Err(EINVAL), "gap");
        assert_eq!(
            s.write(b"k", 3, LWHOST_STORE_TRUNC, b"x"),
            Err(EINVAL),
            "TRUNC at non-zero"
        );
        assert_eq!(s.write(b"k", 3, LWHOST_STORE_COMMIT, b"d"), Ok(1));
        assert_eq!(s.write(b"k", 0, 8, b"x"), Err(EINVAL), "unknown flag");
        assert_eq!(
            s.write(b"k", 0, LWHOST_STORE_FLAGS_ALL + 1, b"x"),
            Err(EINVAL),
            "unknown flag"
        );
        assert_eq!(s.stat(b"k"), Ok(4));
    }

    #[test]
    fn hostile_keys_are_refused() {
        let (dir, mut s) = open_tmp("keys", 1 << 20);
        let long = vec![b'a'; 513];
        for (key, want) in [
            (&b""[..], EINVAL),
            (b"/etc/passwd", EINVAL),
            (b"../escape", EINVAL),
            (b"a/../../b", EINVAL),
            (b"a/./b", EINVAL),
            (b"a//b", EINVAL),
            (b"a/", EINVAL),
            (b"nul\0byte", EINVAL),
            (&long[..], ENAMETOOLONG),
        ] {
            assert_eq!(s.write(key, 0, TC, b"x"), Err(want), "{key:?}");
            assert_eq!(s.stat(key), Err(want));
            assert_eq!(s.delete(key), Err(want));
        }
        assert_eq!(s.write(&long[..512], 0, TC, b"x"), Ok(1), "512 bytes is allowed");
        assert_eq!(s.list(&long, b"", &mut [0; 8]), Err(ENAMETOOLONG));
        assert_eq!(s.list(b"a\0", b"", &mut [0; 8]), Err(EINVAL));
        // Nothing escaped the store directory.
        assert!(!dir.join("../escape").exists());
    }

    #[test]
    fn quota_is_enospc_and_nothing_half_done() {
        let (_dir, mut s) = open_tmp("quota", 10);
        assert_eq!(s.write(b"a", 0, TC, b"123456"), Ok(6));
        assert_eq!(s.write(b"b", 0, 0, b"1234"), Ok(4));
        assert_eq!(s.write(b"b", 4, LWHOST_STORE_COMMIT, b"5"), Err(ENOSPC));
        // The rejected chunk left the pending value as it was.
        assert_eq!(s.write(b"b", 4, LWHOST_STORE_COMMIT, b""), Ok(0));
        assert_eq!(s.stat(b"b"), Ok(4));
        assert_eq!(s.delete(b"a"), Ok(()));
        assert_eq!(s.write(b"c", 0, TC, b"123456"), Ok(6));
        assert_eq!(s.used(), 10);
    }

    #[test]
    fn one_writer_per_directory_until_it_dies() {
        let dir = tmp("lock");
        let mut a = Store::open(&dir, 1 << 20).expect("open a");
        assert_eq!(a.write(b"k", 0, TC, b"a"), Ok(1));
        // A second store on the directory (as another lwhost would open it)
        // reads, but may not write or delete.
        let mut b = Store::open(&dir, 1 << 20).expect("open b");
        let mut buf = [0u8; 4];
        assert_eq!(b.read(b"k", 0, &mut buf), Ok(1));
        assert_eq!(b.write(b"k", 0, TC, b"b"), Err(EBUSY));
        assert_eq!(b.delete(b"k"), Err(EBUSY));
        // The holder goes away (a dead process closes its descriptors): b may write.
        drop(a);
        assert_eq!(b.write(b"k", 0, TC, b"b"), Ok(1));
    }

    #[test]
    fn uncommitted_writes_vanish_on_reopen_and_old_value_stays() {
        let (dir, mut s) = open_tmp("crash", 1 << 20);
        assert_eq!(s.write(b"snap", 0, TC, b"old"), Ok(3));
        assert_eq!(
            s.write(b"snap", 0, LWHOST_STORE_TRUNC, b"new-but-unfinished"),
            Ok(18)
        );
        drop(s); // as if killed mid-save
        let s = Store::open(&dir, 1 << 20).expect("reopen");
        let mut buf = [0u8; 8];
        assert_eq!(s.read(b"snap", 0, &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"old");
        assert_eq!(s.used(), 3);
        assert_eq!(fs::read_dir(dir.join("pending")).expect("pending dir").count(), 0);
        // Junk in objects/ is ignored, not fatal.
        fs::write(dir.join("objects/junk"), b"nonsense").expect("junk");
        assert!(Store::open(&dir, 1 << 20).is_ok());
    }
}
