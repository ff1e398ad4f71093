//! lwsync: saves /home, /root and /opt (the configured roots) to the host's
//! store (/dev/lwstore) and restores them at boot.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

mod config;
mod manifest;
mod state;
mod sync;

use alloc::vec::Vec;
use lwguest::fs::{show, Result};
use lwguest::store::{Blobs, Store};
use lwguest::{errln, outln};
use manifest::Change;

#[cfg(not(test))]
lwguest::entry!(raw run);

const USAGE: &str = "\
Usage: lwsync COMMAND

Commands:
  save [PATH...]   save PATHs (default: the configured roots) to the host
                   store; unchanged files are not read or sent again
  restore          restore the last snapshot into the configured roots
                   (quiet, and a no-op when nothing was ever saved); files
                   already current are kept
  status           list what changed since the last save
  auto SECONDS     save every SECONDS seconds until interrupted

Roots: /etc/lwsync.conf, one absolute path per line (# comments); without
it /home /root /opt. Restore writes only below them, never through a
symbolic link, and does not restore setuid/setgid bits.

A save becomes visible all at once: if it is interrupted, the previous
snapshot stays restorable. One lwsync uses the store at a time (others
wait). Exit status: 0 done, 1 error, 2 restore skipped some entries (each
is named on stderr; the rest was restored). Environment: LWSYNC_ROOT=DIR
works on DIR/... instead of / (for tests).";

/// Exit status of a restore that skipped entries.
const EXIT_SKIPPED: i32 = 2;

// Reached through lwguest::entry!, which unit-test builds leave out.
#[cfg_attr(test, allow(dead_code))]
fn run(args: Vec<Vec<u8>>) -> i32 {
    let rest = &args[1.min(args.len())..];
    let Some((cmd, rest)) = rest.split_first() else {
        errln!("{USAGE}");
        return 1;
    };
    let cmd = show(cmd);
    if matches!(cmd.as_str(), "-h" | "--help" | "help") {
        outln!("{USAGE}");
        return 0;
    }
    let interval = match (cmd.as_str(), rest) {
        ("save", _) => None,
        ("restore" | "status", []) => None,
        ("auto", [secs]) => match show(secs).parse::<u64>() {
            Ok(s) if (1..=86_400).contains(&s) => Some(s),
            _ => {
                errln!("lwsync auto: bad interval {:?} (seconds, 1-86400)", show(secs));
                return 1;
            }
        },
        _ => {
            errln!("lwsync: bad command line\n{USAGE}");
            return 1;
        }
    };
    let root = lwguest::fs::getenv("LWSYNC_ROOT")
        .unwrap_or_default()
        .into_bytes();
    let roots = match config::load(&root) {
        Ok(r) => r,
        Err(e) => {
            errln!("lwsync: {e}");
            return 1;
        }
    };
    let mut store = match Store::open() {
        Ok(s) => s,
        Err(e) => {
            errln!("lwsync: {e}");
            return 1;
        }
    };
    if interval.is_none() {
        if let Err(e) = store.lock() {
            errln!("lwsync: {e}");
            return 1;
        }
    }
    let mut ctx = sync::Ctx {
        root,
        store: &mut store,
        chunk_size: sync::CHUNK_SIZE,
        pack_size: sync::PACK_SIZE,
        quiet: false,
        roots,
    };
    let result = match cmd.as_str() {
        "save" => ctx.save(rest).map(|s| {
            ctx.report(&s);
            0
        }),
        "restore" => ctx.restore().map(|r| match r {
            Some(r) if r.skipped > 0 => {
                errln!(
                    "lwsync: restore: {} entries not restored (see above); the rest is",
                    r.skipped
                );
                EXIT_SKIPPED
            }
            _ => 0,
        }),
        "status" => status(&mut ctx).map(|()| 0),
        _ => auto(&mut ctx, interval.unwrap_or(60)).map(|()| 0),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            errln!("lwsync: {e}");
            1
        }
    }
}

fn status(ctx: &mut sync::Ctx) -> Result<()> {
    match ctx.status()? {
        None => outln!("nothing saved yet"),
        Some(changes) if changes.is_empty() => outln!("no changes since the last save"),
        Some(changes) => {
            for c in &changes {
                let word = match c {
                    Change::New(_) => "new",
                    Change::Deleted(_) => "deleted",
                    Change::Modified(_) => "modified",
                    Change::Mode(_) => "mode",
                    Change::Type(_) => "type",
                };
                outln!("{word:<9}{}", show(manifest::change_path(c)));
            }
        }
    }
    Ok(())
}

/// Periodic save; a failed round is reported and retried.
/// The store lock is held only during a round.
fn auto(ctx: &mut sync::Ctx, secs: u64) -> Result<()> {
    ctx.quiet = true;
    loop {
        let round = ctx.store.lock().and_then(|()| ctx.save(&[]));
        ctx.store.unlock();
        match round {
            Ok(s) if s.changed > 0 || s.objects_deleted > 0 => {
                outln!(
                    "lwsync: saved ({} changed, {} KiB sent)",
                    s.changed,
                    s.bytes_sent.div_ceil(1024)
                )
            }
            Ok(_) => {}
            Err(e) => errln!("lwsync: save failed: {e}"),
        }
        if !lwguest::fs::sleep_ms(secs * 1000) {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloc::string::String;
    use lwguest::fs::Error;
    use lwguest::store::Blobs;
    use std::collections::BTreeMap;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    /// An in-memory store that can be told to fail after N more puts, and
    /// to have another saver commit its manifest right after the next one.
    /// Lazy puts stay in `unsynced` until a plain put: [`Mem::crash`] loses them.
    #[derive(Default)]
    struct Mem {
        values: BTreeMap<String, Vec<u8>>,
        puts: usize,
        fail_after: Option<usize>,
        race: Option<Vec<u8>>,
        unsynced: Vec<String>,
        lazy_puts: usize,
    }

    impl Mem {
        /// The host crashed: lazily committed values not yet made durable are gone.
        fn crash(&mut self) {
            for k in std::mem::take(&mut self.unsynced) {
                self.values.remove(&k);
            }
        }
    }

    impl Blobs for Mem {
        fn put_lazy(&mut self, key: &str, data: &[u8]) -> Result<()> {
            let synced = std::mem::take(&mut self.unsynced);
            let r = self.put(key, data);
            self.unsynced = synced;
            if r.is_ok() {
                self.unsynced.push(key.into());
                self.lazy_puts += 1;
            }
            r
        }
        fn put(&mut self, key: &str, data: &[u8]) -> Result<()> {
            if let Some(n) = self.fail_after {
                if n == 0 {
                    return Err(Error::msg("interrupted"));
                }
                self.fail_after = Some(n - 1);
            }
            self.puts += 1;
            let data = match (key, self.race.take()) {
                (sync::MANIFEST_KEY, Some(other)) => other,
                (_, race) => {
                    self.race = race;
                    data.to_vec()
                }
            };
            self.values.insert(key.into(), data);
            // A plain commit makes every lazy one before it durable.
            self.unsynced.clear();
            Ok(())
        }
        fn get(&mut self, key: &str, max: u64) -> Result<Option<Vec<u8>>> {
            match self.values.get(key) {
                Some(v) if v.len() as u64 > max => Err(Error::msg("too big")),
                v => Ok(v.cloned()),
            }
        }
        fn exists(&mut self, key: &str) -> Result<bool> {
            Ok(self.values.contains_key(key))
        }
        fn delete(&mut self, key: &str) -> Result<()> {
            self.values.remove(key);
            Ok(())
        }
        fn list(&mut self, prefix: &str) -> Result<Vec<String>> {
            Ok(self
                .values
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        }
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("lwsync-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn root(&self) -> Vec<u8> {
            self.0.as_os_str().as_bytes().to_vec()
        }
        fn p(&self, rel: impl AsRef<[u8]>) -> PathBuf {
            let rel = rel.as_ref();
            let rel = rel.strip_prefix(b"/").unwrap_or(rel);
            self.0.join(OsStr::from_bytes(rel))
        }
        fn write(&self, rel: impl AsRef<[u8]>, data: &[u8]) {
            std::fs::create_dir_all(self.p(&rel).parent().unwrap()).unwrap();
            std::fs::write(self.p(rel), data).unwrap();
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ctx<'a>(d: &Dir, store: &'a mut Mem) -> sync::Ctx<'a> {
        // Small chunks so modest files span several.
        sync::Ctx {
            root: d.root(),
            store,
            chunk_size: 8,
            // Small packs so a save writes several.
            pack_size: 24,
            quiet: true,
            roots: config::DEFAULT_ROOTS
                .iter()
                .map(|r| r.as_bytes().to_vec())
                .collect(),
        }
    }

    /// (path, mode, mtime, content or link target) for every path under `rel`.
    fn snapshot(d: &Dir, rel: &str) -> Vec<(Vec<u8>, u32, i64, Vec<u8>)> {
        fn walk(p: &Path, base: &Path, out: &mut Vec<(Vec<u8>, u32, i64, Vec<u8>)>) {
            let m = std::fs::symlink_metadata(p).unwrap();
            let content = if m.file_type().is_symlink() {
                std::fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec()
            } else if m.is_file() {
                std::fs::read(p).unwrap()
            } else {
                Vec::new()
            };
            let rel = p.strip_prefix(base).unwrap().as_os_str().as_bytes().to_vec();
            let mtime = if m.file_type().is_symlink() { 0 } else { m.mtime() };
            out.push((rel, m.permissions().mode() & 0o7777, mtime, content));
            if m.is_dir() {
                let mut names: Vec<_> = std::fs::read_dir(p)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .collect();
                names.sort();
                for n in names {
                    walk(&n, base, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&d.p(rel), &d.0, &mut out);
        out
    }

    fn populate(d: &Dir) {
        d.write("/home/u/notes.txt", b"hello, this spans several chunks");
        d.write("/home/u/empty", b"");
        d.write("/home/u/sub dir/x%y", b"odd name");
        d.write(b"/home/u/caf\xe9", b"not UTF-8 in the name");
        std::fs::create_dir_all(d.p("/home/u/emptydir")).unwrap();
        std::fs::set_permissions(d.p("/home/u/notes.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(d.p("/home/u/emptydir"), std::fs::Permissions::from_mode(0o711)).unwrap();
        symlink("notes.txt", d.p("/home/u/link")).unwrap();
        symlink(OsStr::from_bytes(b"/x\xff"), d.p("/home/u/odd-link")).unwrap();
        d.write("/root/.profile", b"export X=1\n");
    }

    /// A populated tree named `name`, saved once into a new in-memory store,
    /// with that save's figures.
    fn saved(name: &str) -> (Dir, Mem, sync::SaveStats) {
        let d = Dir::new(name);
        populate(&d);
        let mut store = Mem::default();
        let stats = ctx(&d, &mut store).save(&[]).unwrap();
        (d, store, stats)
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn save_then_restore_reproduces_the_tree_with_byte_names() {
        let (src, mut store, stats) = saved("src");
        assert_eq!((stats.files, stats.links), (5, 2));
        assert!(stats.chunks_sent >= 5);
        let dst = Dir::new("dst");
        let mut c = ctx(&dst, &mut store);
        let r = c.restore().unwrap().unwrap();
        assert!(r.written >= 6 && r.skipped == 0, "{r:?}");
        assert_eq!(snapshot(&dst, "/home"), snapshot(&src, "/home"));
        assert_eq!(snapshot(&dst, "/root"), snapshot(&src, "/root"));
        assert_eq!(
            std::fs::read(dst.p(b"/home/u/caf\xe9")).unwrap(),
            b"not UTF-8 in the name"
        );
        assert_eq!(
            std::fs::read_link(dst.p("/home/u/odd-link"))
                .unwrap()
                .as_os_str()
                .as_bytes(),
            b"/x\xff"
        );
        // Idempotent: a second restore writes nothing.
        assert_eq!(c.restore().unwrap(), Some(sync::Restored::default()));
        assert_eq!(c.status().unwrap(), Some(Vec::new()));
        // Nothing left behind but the local record.
        assert!(std::fs::read_dir(dst.p("/home/u"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().as_bytes().ends_with(b".lwsync-tmp")));
    }

    #[test]
    fn restore_with_nothing_saved_is_a_quiet_no_op() {
        let d = Dir::new("none");
        let mut store = Mem::default();
        let mut c = ctx(&d, &mut store);
        assert_eq!(c.restore().unwrap(), None);
        assert_eq!(c.status().unwrap(), None);
        assert_eq!(std::fs::read_dir(&d.0).unwrap().count(), 0);
    }

    #[test]
    fn saves_are_incremental_and_renames_send_nothing() {
        let (d, mut store, _) = saved("incr");
        let puts = store.puts;
        // Nothing changed: only the manifest is written again.
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.changed, s.chunks_sent, store.puts), (0, 0, puts + 1));
        // A rename reads the file again but its chunks are already stored.
        std::fs::rename(d.p("/home/u/notes.txt"), d.p("/home/u/renamed.txt")).unwrap();
        let changes = ctx(&d, &mut store).status().unwrap().unwrap();
        assert!(changes.contains(&Change::Deleted(b("/home/u/notes.txt"))));
        assert!(changes.contains(&Change::New(b("/home/u/renamed.txt"))));
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.changed, s.chunks_sent), (1, 0));
        // A mode change is recorded without sending bytes.
        std::fs::set_permissions(d.p("/home/u/renamed.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let changes = ctx(&d, &mut store).status().unwrap().unwrap();
        assert!(
            changes.contains(&Change::Modified(b("/home/u/renamed.txt"))),
            "{changes:?}"
        );
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(s.chunks_sent, 0);
        // A deletion: the store keeps exactly the values the snapshot uses.
        std::fs::remove_file(d.p("/home/u/sub dir/x%y")).unwrap();
        ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(stored_values(&store), referenced_values(&store));
        assert_eq!(ctx(&d, &mut store).status().unwrap(), Some(Vec::new()));
    }

    /// `echo AAAA >f; touch -r ref f; save; echo BBBB >f; touch -r ref f; save`
    #[test]
    fn same_size_and_mtime_do_not_hide_a_change() {
        let d = Dir::new("ctime");
        d.write("/home/f", b"AAAA\n");
        let t = std::fs::metadata(d.p("/home/f")).unwrap().modified().unwrap();
        let mut store = Mem::default();
        ctx(&d, &mut store).save(&[]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.p("/home/f"), b"BBBB\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(d.p("/home/f"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(s.changed, 1);
        let dst = Dir::new("ctime-dst");
        ctx(&dst, &mut store).restore().unwrap();
        assert_eq!(std::fs::read(dst.p("/home/f")).unwrap(), b"BBBB\n");
    }

    /// The first save after a restore reads nothing (the local record).
    #[test]
    fn first_save_after_a_restore_reads_nothing() {
        let (_src, mut store, _) = saved("rec-src");
        let dst = Dir::new("rec-dst");
        ctx(&dst, &mut store).restore().unwrap();
        let s = ctx(&dst, &mut store).save(&[]).unwrap();
        assert_eq!((s.changed, s.chunks_sent), (0, 0));
        // Without the record everything is read (but nothing sent).
        std::fs::remove_file(dst.p(state::PATH)).unwrap();
        let s = ctx(&dst, &mut store).save(&[]).unwrap();
        assert_eq!((s.changed, s.chunks_sent), (5, 0));
    }

    /// read_chunks stops at the size the scan saw (bytes appended since
    /// are left to the next save, whose stamp differs), ends a file that
    /// shrank at its short read, and without a size reads to the end.
    #[test]
    fn read_chunks_stops_at_the_scanned_size() {
        let d = Dir::new("readchunks");
        let data: Vec<u8> = (0..20u8).collect();
        d.write("/f", &data);
        let path = d.p("/f").as_os_str().as_bytes().to_vec();
        let chunks_of = |expect: Option<u64>| {
            let fd = lwguest::fs::Fd::open(&path, lwguest::sys::O_RDONLY, 0).unwrap();
            let mut buf = [0u8; 8];
            let mut seen: Vec<Vec<u8>> = Vec::new();
            let total = sync::read_chunks(b"/f", &fd, expect, &mut buf, |c| {
                seen.push(c.to_vec());
                Ok(())
            })
            .unwrap();
            (total, seen)
        };
        let whole = (
            20,
            vec![data[..8].to_vec(), data[8..16].to_vec(), data[16..].to_vec()],
        );
        assert_eq!(chunks_of(None), whole);
        assert_eq!(chunks_of(Some(20)), whole);
        assert_eq!(chunks_of(Some(30)), whole, "shrank since the scan");
        assert_eq!(
            chunks_of(Some(12)),
            (12, vec![data[..8].to_vec(), data[8..12].to_vec()]),
            "grew since the scan"
        );
        assert_eq!(chunks_of(Some(16)).1.len(), 2);
        assert_eq!(chunks_of(Some(0)), (0, vec![]));
    }

    /// Packs go lazily, the manifest plainly after them: a finished save
    /// leaves nothing that a crash could lose.
    #[test]
    fn packs_are_lazy_and_the_manifest_makes_them_durable() {
        let (d, mut store, s) = saved("lazy");
        // 8-byte chunks in packs of at most 24 bytes: 3 chunks a pack.
        assert!(s.packs_sent > 0 && s.packs_sent < s.chunks_sent, "{s:?}");
        assert_eq!(s.packs_sent, s.chunks_sent.div_ceil(3), "{s:?}");
        assert_eq!(store.lazy_puts, s.packs_sent);
        assert!(store.values.keys().all(|k| !k.starts_with(sync::CHUNK_PREFIX)));
        assert!(store.unsynced.is_empty());
        let before = snapshot(&d, "/home");
        store.crash();
        let dst = Dir::new("lazy-dst");
        let r = ctx(&dst, &mut store).restore().unwrap().unwrap();
        assert_eq!(r.skipped, 0);
        assert_eq!(snapshot(&dst, "/home"), before);
    }

    #[test]
    fn interrupted_save_leaves_the_previous_snapshot() {
        let (d, mut store, _) = saved("intr");
        let before = snapshot(&d, "/home");
        d.write("/home/u/notes.txt", b"a completely different and longer content");
        d.write("/home/u/new", b"new file content here");
        for n in 0..4 {
            store.fail_after = Some(n);
            assert!(ctx(&d, &mut store).save(&[]).is_err());
            store.fail_after = None;
            // The host dies too: the chunks put so far were lazy.
            store.crash();
            let dst = Dir::new(&format!("intr-dst{n}"));
            ctx(&dst, &mut store).restore().unwrap();
            assert_eq!(snapshot(&dst, "/home"), before, "after failing at put {n}");
        }
    }

    /// Another saver commits its manifest right after ours: clean-up must
    /// not delete the chunks it references.
    #[test]
    fn cleanup_keeps_chunks_of_the_committed_manifest() {
        let d = Dir::new("race");
        d.write("/home/a", b"first version of a");
        let mut store = Mem::default();
        ctx(&d, &mut store).save(&[]).unwrap();
        let theirs = store.values[sync::MANIFEST_KEY].clone();
        d.write("/home/a", b"second version!!!!");
        store.race = Some(theirs);
        ctx(&d, &mut store).save(&[]).unwrap();
        let dst = Dir::new("race-dst");
        let r = ctx(&dst, &mut store).restore().unwrap().unwrap();
        assert_eq!(r.skipped, 0);
        assert_eq!(std::fs::read(dst.p("/home/a")).unwrap(), b"first version of a");
    }

    #[test]
    fn partial_saves_keep_other_paths_and_damage_skips_one_file() {
        // One chunk a pack, so damage to one stays within one file.
        let d = Dir::new("part");
        populate(&d);
        let mut store = Mem::default();
        let mut c = ctx(&d, &mut store);
        c.pack_size = 8;
        c.save(&[]).unwrap();
        std::fs::remove_dir_all(d.p("/root")).unwrap();
        d.write("/home/u/more", b"more");
        let mut c = ctx(&d, &mut store);
        c.pack_size = 8;
        c.save(&[b("/home/u/")]).unwrap();
        let dst = Dir::new("part-dst");
        ctx(&dst, &mut store).restore().unwrap();
        assert_eq!(std::fs::read(dst.p("/root/.profile")).unwrap(), b"export X=1\n");
        assert_eq!(std::fs::read(dst.p("/home/u/more")).unwrap(), b"more");
        assert!(ctx(&d, &mut store).save(&[b("../etc")]).is_err());
        assert!(
            ctx(&d, &mut store).save(&[b("/etc")]).is_err(),
            "outside the configured roots"
        );
        // A chunk altered in the store, another's pack missing: those two
        // files are skipped, named, never half-written; the rest is restored.
        let (more, _) = holder(&store, b"more");
        store.values.get_mut(&more).unwrap()[0] ^= 1;
        let (profile, _) = holder(&store, b"export X");
        let notes = holder(&store, b"hello, t").0;
        store.values.remove(&profile);
        assert_ne!(notes, profile, "the kept file's chunk is in another pack");
        let dst2 = Dir::new("part-dst2");
        let r = ctx(&dst2, &mut store).restore().unwrap().unwrap();
        assert_eq!(r.skipped, 2, "{r:?}");
        assert!(!dst2.p("/home/u/more").exists() && !dst2.p("/root/.profile").exists());
        assert_eq!(
            std::fs::read(dst2.p("/home/u/notes.txt")).unwrap(),
            b"hello, this spans several chunks"
        );
        assert_eq!(
            std::fs::read_dir(dst2.p("/root")).unwrap().count(),
            0,
            "no temporary file left"
        );
    }

    #[test]
    fn a_directory_replaced_by_a_link_is_skipped_and_the_rest_restored() {
        let src = Dir::new("conf-src");
        src.write("/home/u/d/inner", b"inner file");
        src.write("/home/u/z-after", b"after");
        let mut store = Mem::default();
        ctx(&src, &mut store).save(&[]).unwrap();
        let dst = Dir::new("conf-dst");
        let outside = Dir::new("conf-outside");
        std::fs::create_dir_all(dst.p("/home/u")).unwrap();
        symlink(&outside.0, dst.p("/home/u/d")).unwrap();
        let r = ctx(&dst, &mut store).restore().unwrap().unwrap();
        assert_eq!(r.skipped, 2, "the directory and what it holds: {r:?}");
        assert_eq!(
            std::fs::read_dir(&outside.0).unwrap().count(),
            0,
            "nothing written through the link"
        );
        assert_eq!(std::fs::read(dst.p("/home/u/z-after")).unwrap(), b"after");
    }

    #[test]
    fn sparse_files_come_back_with_holes() {
        let d = Dir::new("sparse");
        std::fs::create_dir_all(d.p("/home")).unwrap();
        let f = std::fs::File::create(d.p("/home/sparse")).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"data in the middle", 4 << 20).unwrap();
        drop(f);
        let mut store = Mem::default();
        let mut c = ctx(&d, &mut store);
        c.chunk_size = 1 << 16;
        c.save(&[]).unwrap();
        let dst = Dir::new("sparse-dst");
        let mut c = ctx(&dst, &mut store);
        c.chunk_size = 1 << 16;
        c.restore().unwrap();
        let m = std::fs::metadata(dst.p("/home/sparse")).unwrap();
        assert_eq!(m.len(), 8 << 20);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks allocated", m.blocks());
        assert_eq!(
            std::fs::read(dst.p("/home/sparse")).unwrap(),
            std::fs::read(d.p("/home/sparse")).unwrap()
        );
    }

    #[test]
    fn setuid_and_setgid_are_not_restored() {
        let d = Dir::new("suid");
        d.write("/home/tool", b"#!/bin/sh\n");
        std::fs::set_permissions(d.p("/home/tool"), std::fs::Permissions::from_mode(0o6755)).unwrap();
        let mut store = Mem::default();
        ctx(&d, &mut store).save(&[]).unwrap();
        let dst = Dir::new("suid-dst");
        ctx(&dst, &mut store).restore().unwrap();
        let mode = std::fs::metadata(dst.p("/home/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o755);
    }

    fn hash(data: &[u8]) -> String {
        lwguest::index::hex_encode(&<lwguest::sha2::Sha256 as lwguest::sha2::Digest>::digest(data))
    }

    /// Every (relative path, content) under a directory: to compare before/after.
    fn all_files(d: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![d.to_path_buf()];
        while let Some(p) = todo.pop() {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_dir() {
                for e in std::fs::read_dir(&p).unwrap().flatten() {
                    todo.push(e.path());
                }
                Vec::new()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.push((p.strip_prefix(d).unwrap().to_path_buf(), content));
        }
        out.sort();
        out
    }

    /// The store value holding the chunk with these bytes, and its place in
    /// it (None: a value of its own), as the committed manifest says.
    fn holder(store: &Mem, data: &[u8]) -> (String, Option<manifest::Loc>) {
        let m = manifest::Manifest::parse(&store.values[sync::MANIFEST_KEY], 8).unwrap();
        let c = hash(data);
        match m.locs.get(&c) {
            Some(l) => (format!("{}{}", sync::PACK_PREFIX, l.pack), Some(l.clone())),
            None => (format!("{}{c}", sync::CHUNK_PREFIX), None),
        }
    }

    /// Every pack and chunk value in the store.
    fn stored_values(store: &Mem) -> Vec<String> {
        let chunk_or_pack =
            |k: &&String| k.starts_with(sync::CHUNK_PREFIX) || k.starts_with(sync::PACK_PREFIX);
        store.values.keys().filter(chunk_or_pack).cloned().collect()
    }

    /// Every pack and chunk value the committed manifest refers to.
    fn referenced_values(store: &Mem) -> Vec<String> {
        let m = manifest::Manifest::parse(&store.values[sync::MANIFEST_KEY], 8).unwrap();
        let mut keys: Vec<String> = m
            .chunks()
            .iter()
            .map(|c| match m.locs.get(*c) {
                Some(l) => format!("{}{}", sync::PACK_PREFIX, l.pack),
                None => format!("{}{c}", sync::CHUNK_PREFIX),
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// A pack stays while any chunk in it is referenced, and goes with the last.
    #[test]
    fn a_pack_is_deleted_only_when_none_of_its_chunks_is_referenced() {
        let d = Dir::new("gc");
        d.write("/home/a", b"aaaaaaaa");
        d.write("/home/b", b"bbbbbbbb");
        let mut store = Mem::default();
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.chunks_sent, s.packs_sent), (2, 1));
        let (pack, _) = holder(&store, b"aaaaaaaa");
        assert_eq!(holder(&store, b"bbbbbbbb").0, pack);
        std::fs::remove_file(d.p("/home/a")).unwrap();
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.chunks_sent, s.objects_deleted), (0, 0));
        assert_eq!(stored_values(&store), vec![pack.clone()]);
        // The dead chunk's bytes stay in the pack; its live one restores.
        let dst = Dir::new("gc-dst");
        ctx(&dst, &mut store).restore().unwrap();
        assert_eq!(std::fs::read(dst.p("/home/b")).unwrap(), b"bbbbbbbb");
        assert!(!dst.p("/home/a").exists());
        // a comes back: its chunk is sent again (the old copy is unreferenced).
        d.write("/home/a", b"aaaaaaaa");
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.chunks_sent, s.packs_sent), (1, 1));
        std::fs::remove_file(d.p("/home/b")).unwrap();
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(s.objects_deleted, 1);
        assert!(!store.values.contains_key(&pack));
        assert_eq!(stored_values(&store), referenced_values(&store));
    }

    /// A chunk larger than the pack size gets a pack of its own; a file of
    /// many chunks spreads over several packs and comes back whole.
    #[test]
    fn large_files_span_packs() {
        let d = Dir::new("big");
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
        d.write("/home/big", &data);
        let mut store = Mem::default();
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.chunks_sent, s.packs_sent), (25, 9));
        let mut c = ctx(&d, &mut store);
        c.pack_size = 4;
        d.write("/home/big2", &data[..100]);
        d.write("/home/odd", b"0123456789abcdef");
        let s = c.save(&[]).unwrap();
        assert_eq!((s.chunks_sent, s.packs_sent), (3, 3), "big2's first 12 are big's");
        let dst = Dir::new("big-dst");
        ctx(&dst, &mut store).restore().unwrap();
        assert_eq!(std::fs::read(dst.p("/home/big")).unwrap(), data);
        assert_eq!(std::fs::read(dst.p("/home/big2")).unwrap(), &data[..100]);
        assert_eq!(std::fs::read(dst.p("/home/odd")).unwrap(), b"0123456789abcdef");
    }

    /// A manifest whose chunk records point past their pack's end, or at
    /// bytes that are not the chunk: that file is skipped with a message,
    /// nothing of it is written, the rest is restored.
    #[test]
    fn pack_records_out_of_range_or_wrong_skip_the_file() {
        let src = Dir::new("range-src");
        src.write("/home/a", b"aaaaaaaa");
        src.write("/home/b", b"bbbbbbbb");
        src.write("/home/c", b"cccccccc");
        let mut store = Mem::default();
        ctx(&src, &mut store).save(&[]).unwrap();
        let good = String::from_utf8(store.values[sync::MANIFEST_KEY].clone()).unwrap();
        let (_, a) = holder(&store, b"aaaaaaaa");
        let (_, b) = holder(&store, b"bbbbbbbb");
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.pack, b.pack, "one pack of 24 bytes");
        // a's record: `c HASH 0 OFFSET 8` (one pack, numbered 0).
        let rec = |off: u64| format!("c {} 0 {off} 8\n", hash(b"aaaaaaaa"));
        let cases = [
            // Past the end of its pack, or partly so.
            good.replace(&rec(a.off), &rec(1 << 40)),
            good.replace(&rec(a.off), &rec(20)),
            // At b's bytes.
            good.replace(&rec(a.off), &rec(b.off)),
        ];
        for (i, text) in cases.iter().enumerate() {
            assert_ne!(text, &good, "case {i}");
            let mut st = Mem {
                values: store.values.clone(),
                ..Mem::default()
            };
            st.values
                .insert(sync::MANIFEST_KEY.into(), text.clone().into_bytes());
            let dst = Dir::new(&format!("range-dst{i}"));
            let r = ctx(&dst, &mut st).restore().unwrap().unwrap();
            assert_eq!(r.skipped, 1, "case {i}: {r:?}");
            assert!(!dst.p("/home/a").exists(), "case {i}");
            assert_eq!(
                std::fs::read_dir(dst.p("/home")).unwrap().count(),
                2,
                "case {i}: no temporary file"
            );
            assert_eq!(std::fs::read(dst.p("/home/c")).unwrap(), b"cccccccc", "case {i}");
        }
    }

    /// A store written by an lwsync of format 2 (one value per chunk)
    /// restores; a save over it packs only new chunks, refers to the old
    /// values, and clean-up deletes them once unreferenced.
    #[test]
    fn format_2_snapshots_restore_and_later_saves_pack_new_chunks_only() {
        let mut store = Mem::default();
        let (one, two) = (b"old one!", b"old two!");
        let text = format!(
            "lwsync 2\nroot /home\nd 755 1 0 /home\nf 644 1600000000 0 8 /home/one {}\nf 600 1 0 16 /home/two {},{}\n",
            hash(one),
            hash(two),
            hash(one)
        );
        store.values.insert(sync::MANIFEST_KEY.into(), text.into_bytes());
        for c in [&one[..], &two[..]] {
            store
                .values
                .insert(format!("{}{}", sync::CHUNK_PREFIX, hash(c)), c.to_vec());
        }
        let d = Dir::new("v2");
        let r = ctx(&d, &mut store).restore().unwrap().unwrap();
        assert_eq!((r.written, r.skipped), (2, 0));
        assert_eq!(std::fs::read(d.p("/home/two")).unwrap(), b"old two!old one!");
        d.write("/home/new", b"new!");
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(
            (s.changed, s.chunks_sent, s.packs_sent, s.objects_deleted),
            (1, 1, 1, 0)
        );
        assert!(store.values[sync::MANIFEST_KEY].starts_with(b"lwsync 3\n"));
        assert_eq!(holder(&store, one).1, None);
        assert!(holder(&store, b"new!").1.is_some());
        let dst = Dir::new("v2-dst");
        ctx(&dst, &mut store).restore().unwrap();
        assert_eq!(snapshot(&dst, "/home"), snapshot(&d, "/home"));
        std::fs::remove_file(d.p("/home/two")).unwrap();
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(s.objects_deleted, 1, "two's own chunk");
        assert_eq!(stored_values(&store), referenced_values(&store));
    }

    /// The restore walker against hostile manifests: `root /`, entries
    /// below a link entry (one the restore creates itself), `..`: nothing
    /// outside the configured roots is created or changed.
    #[test]
    fn hostile_manifests_write_nothing_outside_the_roots() {
        let d = Dir::new("hostile");
        d.write("/etc/passwd", b"root:x:0:0\n");
        d.write("/tmp/keep", b"keep");
        let before = all_files(&d.0);
        let c = hash(b"owned!!!");
        let manifests = [
            // A manifest claiming the whole system.
            format!("lwsync 2\nroot /\nd 755 1 0 /etc\nf 644 1 0 8 /etc/passwd {c}\nf 644 1 0 8 /etc/new {c}\n"),
            // A link entry, then entries below it (its target absolute or relative).
            format!("lwsync 2\nroot /home\nd 755 1 0 /home\nl 777 1 0 /home/l /etc\nf 644 1 0 8 /home/l/passwd {c}\nl 777 1 0 /home/r ../etc\nd 755 1 0 /home/r/sub\nf 644 1 0 8 /home/r/new {c}\n"),
            format!("lwsync 2\nroot /root\nl 777 1 0 /root/t /tmp\nf 4755 1 0 8 /root/t/keep {c}\n"),
            // A root itself as a link (/opt is absent here).
            format!("lwsync 2\nroot /opt\nl 777 1 0 /opt /etc\nf 644 1 0 8 /opt/passwd {c}\n"),
        ];
        for (i, text) in manifests.iter().enumerate() {
            let mut store = Mem::default();
            store
                .values
                .insert(sync::MANIFEST_KEY.into(), text.as_bytes().to_vec());
            store
                .values
                .insert(format!("{}{c}", sync::CHUNK_PREFIX), b"owned!!!".to_vec());
            let mut cx = ctx(&d, &mut store);
            cx.chunk_size = 8;
            let r = cx.restore().unwrap().unwrap();
            assert!(r.skipped > 0, "manifest {i}: {r:?}");
            let after: Vec<_> = all_files(&d.0)
                .into_iter()
                .filter(|(p, _)| !["home", "root", "opt", "var"].iter().any(|r| p.starts_with(r)))
                .collect();
            assert_eq!(after, before, "manifest {i}");
            assert!(
                std::fs::symlink_metadata(d.p("/opt")).map_or(true, |m| m.is_dir()),
                "manifest {i}"
            );
        }
        // `..` anywhere: the manifest is refused as a whole.
        let mut store = Mem::default();
        let text = format!("lwsync 2\nroot /home\nf 644 1 0 8 /home/../etc/passwd {c}\n");
        store.values.insert(sync::MANIFEST_KEY.into(), text.into_bytes());
        assert!(ctx(&d, &mut store).restore().is_err());
        let after: Vec<_> = all_files(&d.0)
            .into_iter()
            .filter(|(p, _)| !["home", "root", "opt", "var"].iter().any(|r| p.starts_with(r)))
            .collect();
        assert_eq!(after, before);
    }
}
