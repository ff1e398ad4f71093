//! lwsync: saves /home, /root and /opt to the host's store (/dev/lwstore)
//! and restores them at boot.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

mod manifest;
mod sync;

use alloc::string::String;
use alloc::vec::Vec;
use lwguest::fs::Result;
use lwguest::store::Store;
use lwguest::{errln, outln};
use manifest::Change;

#[cfg(not(test))]
lwguest::entry!(run);

const USAGE: &str = "\
Usage: lwsync COMMAND

Commands:
  save [PATH...]   save PATHs (default /home /root /opt) to the host store;
                   unchanged files are not sent again
  restore          restore the last snapshot (quiet, and a no-op when
                   nothing was ever saved); files already current are kept
  status           list what changed since the last save
  auto SECONDS     save every SECONDS seconds until interrupted

A save becomes visible all at once: if it is interrupted, the previous
snapshot stays restorable. Environment: LWSYNC_ROOT=DIR works on DIR/...
instead of / (for tests).";

// Reached through lwguest::entry!, which unit-test builds leave out.
#[cfg_attr(test, allow(dead_code))]
fn run(args: Vec<String>) -> i32 {
    let rest = &args[1.min(args.len())..];
    let Some((cmd, rest)) = rest.split_first() else {
        errln!("{USAGE}");
        return 1;
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help") {
        outln!("{USAGE}");
        return 0;
    }
    let interval = match (cmd.as_str(), rest) {
        ("save", _) => None,
        ("restore" | "status", []) => None,
        ("auto", [secs]) => match secs.parse::<u64>() {
            Ok(s) if (1..=86_400).contains(&s) => Some(s),
            _ => {
                errln!("lwsync auto: bad interval {secs:?} (seconds, 1-86400)");
                return 1;
            }
        },
        _ => {
            errln!("lwsync: bad command line\n{USAGE}");
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
    let root = lwguest::fs::getenv("LWSYNC_ROOT").unwrap_or_default();
    let mut ctx = sync::Ctx {
        root,
        store: &mut store,
        chunk_size: sync::CHUNK_SIZE,
        quiet: false,
    };
    let result = match cmd.as_str() {
        "save" => ctx.save(rest).map(|s| ctx.report(&s)),
        "restore" => ctx.restore().map(|_| ()),
        "status" => status(&mut ctx),
        _ => auto(&mut ctx, interval.unwrap_or(60)),
    };
    match result {
        Ok(()) => 0,
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
                outln!("{word:<9}{}", manifest::change_path(c));
            }
        }
    }
    Ok(())
}

/// Periodic save (seed 000 §2.3); a failed round is reported and retried.
fn auto(ctx: &mut sync::Ctx, secs: u64) -> Result<()> {
    ctx.quiet = true;
    loop {
        match ctx.save(&[]) {
            Ok(s) if s.changed > 0 || s.chunks_deleted > 0 => {
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
    use lwguest::fs::Error;
    use lwguest::store::Blobs;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::{Path, PathBuf};

    /// An in-memory store that can be told to fail after N more puts.
    #[derive(Default)]
    struct Mem {
        values: BTreeMap<String, Vec<u8>>,
        puts: usize,
        fail_after: Option<usize>,
    }

    impl Blobs for Mem {
        fn put(&mut self, key: &str, data: &[u8]) -> Result<()> {
            if let Some(n) = self.fail_after {
                if n == 0 {
                    return Err(Error::msg("interrupted"));
                }
                self.fail_after = Some(n - 1);
            }
            self.puts += 1;
            self.values.insert(key.into(), data.to_vec());
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
        fn root(&self) -> String {
            self.0.to_string_lossy().into_owned()
        }
        fn p(&self, rel: &str) -> PathBuf {
            self.0.join(rel.trim_start_matches('/'))
        }
        fn write(&self, rel: &str, data: &[u8]) {
            std::fs::create_dir_all(self.p(rel).parent().unwrap()).unwrap();
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
            quiet: true,
        }
    }

    /// (path, mode, mtime, content or link target) for every path under `rel`.
    fn snapshot(d: &Dir, rel: &str) -> Vec<(String, u32, i64, Vec<u8>)> {
        fn walk(p: &Path, base: &Path, out: &mut Vec<(String, u32, i64, Vec<u8>)>) {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(p).unwrap();
            let content = if m.file_type().is_symlink() {
                std::fs::read_link(p)
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes()
                    .to_vec()
            } else if m.is_file() {
                std::fs::read(p).unwrap()
            } else {
                Vec::new()
            };
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
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
        std::fs::create_dir_all(d.p("/home/u/emptydir")).unwrap();
        std::fs::set_permissions(d.p("/home/u/notes.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(d.p("/home/u/emptydir"), std::fs::Permissions::from_mode(0o711)).unwrap();
        symlink("notes.txt", d.p("/home/u/link")).unwrap();
        d.write("/root/.profile", b"export X=1\n");
    }

    #[test]
    fn save_then_restore_reproduces_the_tree() {
        let src = Dir::new("src");
        populate(&src);
        let mut store = Mem::default();
        let stats = ctx(&src, &mut store).save(&[]).unwrap();
        assert_eq!((stats.files, stats.links), (4, 1));
        assert!(stats.chunks_sent >= 5);
        let dst = Dir::new("dst");
        let mut c = ctx(&dst, &mut store);
        assert!(c.restore().unwrap().unwrap() >= 5);
        assert_eq!(snapshot(&dst, "/home"), snapshot(&src, "/home"));
        assert_eq!(snapshot(&dst, "/root"), snapshot(&src, "/root"));
        // Idempotent: a second restore writes nothing.
        assert_eq!(c.restore().unwrap(), Some(0));
        assert_eq!(c.status().unwrap(), Some(Vec::new()));
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
        let d = Dir::new("incr");
        populate(&d);
        let mut store = Mem::default();
        ctx(&d, &mut store).save(&[]).unwrap();
        let puts = store.puts;
        // Nothing changed: only the manifest is written again.
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.changed, s.chunks_sent, store.puts), (0, 0, puts + 1));
        // A rename reads the file again but its chunks are already stored.
        std::fs::rename(d.p("/home/u/notes.txt"), d.p("/home/u/renamed.txt")).unwrap();
        let changes = ctx(&d, &mut store).status().unwrap().unwrap();
        assert!(changes.contains(&Change::Deleted("/home/u/notes.txt".into())));
        assert!(changes.contains(&Change::New("/home/u/renamed.txt".into())));
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!((s.changed, s.chunks_sent), (1, 0));
        // A mode change is recorded without sending bytes.
        std::fs::set_permissions(d.p("/home/u/renamed.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            ctx(&d, &mut store).status().unwrap().unwrap(),
            vec![Change::Mode("/home/u/renamed.txt".into())]
        );
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(s.chunks_sent, 0);
        // A deletion drops chunks nothing references any more.
        std::fs::remove_file(d.p("/home/u/sub dir/x%y")).unwrap();
        let s = ctx(&d, &mut store).save(&[]).unwrap();
        assert_eq!(s.chunks_deleted, 1);
        assert_eq!(ctx(&d, &mut store).status().unwrap(), Some(Vec::new()));
    }

    #[test]
    fn interrupted_save_leaves_the_previous_snapshot() {
        let d = Dir::new("intr");
        populate(&d);
        let mut store = Mem::default();
        ctx(&d, &mut store).save(&[]).unwrap();
        let before = snapshot(&d, "/home");
        d.write("/home/u/notes.txt", b"a completely different and longer content");
        d.write("/home/u/new", b"new file content here");
        for n in 0..4 {
            store.fail_after = Some(n);
            assert!(ctx(&d, &mut store).save(&[]).is_err());
            store.fail_after = None;
            let dst = Dir::new(&format!("intr-dst{n}"));
            ctx(&dst, &mut store).restore().unwrap();
            assert_eq!(snapshot(&dst, "/home"), before, "after failing at put {n}");
        }
    }

    #[test]
    fn partial_saves_keep_other_paths_and_damage_is_detected() {
        let d = Dir::new("part");
        populate(&d);
        let mut store = Mem::default();
        ctx(&d, &mut store).save(&[]).unwrap();
        std::fs::remove_dir_all(d.p("/root")).unwrap();
        d.write("/home/u/more", b"more");
        ctx(&d, &mut store).save(&["/home/u/".into()]).unwrap();
        let dst = Dir::new("part-dst");
        ctx(&dst, &mut store).restore().unwrap();
        assert_eq!(std::fs::read(dst.p("/root/.profile")).unwrap(), b"export X=1\n");
        assert_eq!(std::fs::read(dst.p("/home/u/more")).unwrap(), b"more");
        assert!(ctx(&d, &mut store).save(&["../etc".into()]).is_err());
        // A chunk altered in the store is refused, and no file is half-written.
        let key = store
            .values
            .keys()
            .find(|k| k.starts_with(sync::CHUNK_PREFIX))
            .unwrap()
            .clone();
        store.values.insert(key, b"tampered".to_vec());
        let dst2 = Dir::new("part-dst2");
        let e = ctx(&dst2, &mut store).restore().unwrap_err();
        assert!(e.msg.contains("damaged"), "{e}");
    }
}
