//! Errors carrying errno + context, file descriptors, and the file system
//! operations the tools need, over the system calls of [`crate::sys`].

use crate::sys;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// An error with what was being done and, for system errors, the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub errno: i32,
    pub msg: String,
}

impl Error {
    /// A failure without an errno (bad data, policy, ...).
    pub fn msg(msg: impl Into<String>) -> Self {
        Error {
            errno: 0,
            msg: msg.into(),
        }
    }
    /// A failed system call: `what` plus errno's description.
    pub fn sys(what: impl Into<String>, errno: i32) -> Self {
        Error {
            errno,
            msg: what.into(),
        }
    }
    /// The errno of the call that just failed.
    pub fn last(what: impl Into<String>) -> Self {
        Self::sys(what, sys::errno())
    }
    /// Prefixes more context: "context: inner".
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error {
            errno: self.errno,
            msg: format!("{ctx}: {}", self.msg),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errno == 0 {
            f.write_str(&self.msg)
        } else {
            write!(f, "{}: {}", self.msg, sys::strerror(self.errno))
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// A NUL-terminated copy of a path for libc; interior NULs are rejected.
/// Paths are bytes (Linux names need not be UTF-8): `&str`, `String`,
/// `&[u8]` and `Vec<u8>` all work.
pub fn cpath(path: impl AsRef<[u8]>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    if path.contains(&0) {
        return Err(Error::sys(format!("{:?}", show(path)), sys::EINVAL));
    }
    let mut v = Vec::with_capacity(path.len() + 1);
    v.extend_from_slice(path);
    v.push(0);
    Ok(v)
}

/// A path or name as text for messages (bytes that are not UTF-8 become U+FFFD).
pub fn show(path: impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(path.as_ref()).into_owned()
}

/// An owned file descriptor, closed on drop.
pub struct Fd(pub i32);

impl Drop for Fd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: we own the descriptor.
            unsafe { sys::close(self.0) };
        }
    }
}

impl Fd {
    /// Opens one of lwnet's character devices read-write; a missing node or
    /// driver (ENOENT, ENXIO, ENODEV) gets a message that says so, the errno kept.
    pub fn open_device(dev: &str) -> Result<Fd> {
        Fd::open(dev, sys::O_RDWR, 0).map_err(|e| {
            if e.errno == sys::ENOENT || e.errno == sys::ENXIO || e.errno == sys::ENODEV {
                Error::sys(
                    format!("{dev} is missing (is the lwnet driver in this kernel?)"),
                    e.errno,
                )
            } else {
                e
            }
        })
    }

    pub fn open(path: impl AsRef<[u8]>, flags: i32, mode: u32) -> Result<Fd> {
        let path = path.as_ref();
        let c = cpath(path)?;
        loop {
            // SAFETY: c is NUL-terminated; mode is read only with O_CREAT.
            let fd = unsafe { sys::open(c.as_ptr(), flags | sys::O_CLOEXEC, mode) };
            if fd >= 0 {
                return Ok(Fd(fd));
            }
            if sys::errno() != sys::EINTR {
                return Err(Error::last(format!("open {}", show(path))));
            }
        }
    }

    /// One read; 0 at end of file. Retries EINTR.
    pub fn read(&self, buf: &mut [u8]) -> core::result::Result<usize, i32> {
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { sys::read(self.0, buf.as_mut_ptr(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = sys::errno();
            if e != sys::EINTR {
                return Err(e);
            }
        }
    }

    /// Fills buf unless end of file comes first; returns the bytes read.
    pub fn read_full(&self, buf: &mut [u8]) -> core::result::Result<usize, i32> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read(&mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }

    pub fn write_all(&self, buf: &[u8]) -> core::result::Result<(), i32> {
        if crate::rt::write_all_fd(self.0, buf) {
            Ok(())
        } else {
            Err(match sys::errno() {
                0 => sys::EIO,
                e => e,
            })
        }
    }

    pub fn fsync(&self) -> core::result::Result<(), i32> {
        // SAFETY: plain C call on an owned fd.
        if unsafe { sys::fsync(self.0) } == 0 {
            Ok(())
        } else {
            Err(sys::errno())
        }
    }

    /// Switches the descriptor to non-blocking mode.
    pub fn set_nonblocking(&self) -> core::result::Result<(), i32> {
        // SAFETY: plain C calls on an owned fd.
        unsafe {
            let flags = sys::fcntl(self.0, sys::F_GETFL, 0);
            if flags < 0 || sys::fcntl(self.0, sys::F_SETFL, (flags | sys::O_NONBLOCK) as sys::c_long) < 0 {
                return Err(sys::errno());
            }
        }
        Ok(())
    }

    pub fn fchmod(&self, mode: u32) -> core::result::Result<(), i32> {
        // SAFETY: plain C call on an owned fd.
        if unsafe { sys::fchmod(self.0, mode) } == 0 {
            Ok(())
        } else {
            Err(sys::errno())
        }
    }

    /// Moves the file offset `by` bytes forward (SEEK_CUR): leaves a hole
    /// when writing a sparse file.
    pub fn skip(&self, by: u64) -> core::result::Result<(), i32> {
        let by = i64::try_from(by).map_err(|_| sys::EFBIG)?;
        // SAFETY: plain C call on an owned fd.
        if unsafe { sys::lseek(self.0, by, sys::SEEK_CUR) } >= 0 {
            Ok(())
        } else {
            Err(sys::errno())
        }
    }

    /// Sets the file's length (ftruncate(2)); growing it adds a hole.
    pub fn set_len(&self, len: u64) -> core::result::Result<(), i32> {
        let len = i64::try_from(len).map_err(|_| sys::EFBIG)?;
        // SAFETY: plain C call on an owned fd.
        if unsafe { sys::ftruncate(self.0, len) } == 0 {
            Ok(())
        } else {
            Err(sys::errno())
        }
    }

    /// flock(2): `op` is LOCK_EX/LOCK_SH/LOCK_UN, with LOCK_NB not to wait.
    /// The kernel drops the lock when the last descriptor of this open file
    /// is closed, including when the process dies. Retries EINTR.
    pub fn flock(&self, op: i32) -> core::result::Result<(), i32> {
        loop {
            // SAFETY: plain C call on an owned fd.
            if unsafe { sys::flock(self.0, op) } == 0 {
                return Ok(());
            }
            let e = sys::errno();
            if e != sys::EINTR {
                return Err(e);
            }
        }
    }
}

/// What kind of file a path is (symlinks are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Link,
    Other,
}

/// The metadata the tools care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (mode & 0o7777).
    pub mode: u32,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Inode change time: set by the kernel on every content or metadata
    /// change; unlike mtime, no user call (touch -r, cp -p) can set it back.
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub ino: u64,
}

/// lstat(2) through statx; Ok(None) when the path does not exist.
pub fn lstat(path: impl AsRef<[u8]>) -> Result<Option<Meta>> {
    let path = path.as_ref();
    let c = cpath(path)?;
    // SAFETY: statx is plain data; zeroed is a valid value.
    let mut st: sys::statx = unsafe { core::mem::zeroed() };
    // SAFETY: valid path and output buffer.
    let r = unsafe {
        sys::statx(
            sys::AT_FDCWD,
            c.as_ptr(),
            sys::AT_SYMLINK_NOFOLLOW,
            sys::STATX_BASIC_STATS,
            &mut st,
        )
    };
    if r != 0 {
        let e = sys::errno();
        if e == sys::ENOENT || e == sys::ENOTDIR {
            return Ok(None);
        }
        return Err(Error::sys(format!("stat {}", show(path)), e));
    }
    let fmt = u32::from(st.stx_mode) & sys::S_IFMT;
    let kind = match fmt {
        sys::S_IFREG => Kind::File,
        sys::S_IFDIR => Kind::Dir,
        sys::S_IFLNK => Kind::Link,
        _ => Kind::Other,
    };
    Ok(Some(Meta {
        kind,
        mode: u32::from(st.stx_mode) & 0o7777,
        size: st.stx_size,
        mtime_sec: st.stx_mtime.tv_sec,
        mtime_nsec: st.stx_mtime.tv_nsec,
        ctime_sec: st.stx_ctime.tv_sec,
        ctime_nsec: st.stx_ctime.tv_nsec,
        ino: st.stx_ino,
    }))
}

/// The names in a directory, sorted, without "." and "..", as text
/// (names that are not UTF-8 are altered: use [`read_dir_raw`] to keep them).
pub fn read_dir(path: &str) -> Result<Vec<String>> {
    Ok(read_dir_raw(path)?
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

/// The names in a directory as the kernel gives them (bytes), sorted,
/// without "." and "..".
pub fn read_dir_raw(path: impl AsRef<[u8]>) -> Result<Vec<Vec<u8>>> {
    let path = path.as_ref();
    let c = cpath(path)?;
    // SAFETY: valid NUL-terminated path.
    let dir = unsafe { sys::opendir(c.as_ptr()) };
    if dir.is_null() {
        return Err(Error::last(format!("open directory {}", show(path))));
    }
    let mut names = Vec::new();
    loop {
        // SAFETY: dir is open; the entry is valid until the next readdir.
        let ent = unsafe { sys::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { crate::rt::cstr_bytes((*ent).d_name.as_ptr()) };
        if name == b"." || name == b".." {
            continue;
        }
        names.push(name.to_vec());
    }
    // SAFETY: dir is open.
    unsafe { sys::closedir(dir) };
    crate::sort::sort(&mut names);
    Ok(names)
}

fn check(r: i32, what: impl FnOnce() -> String) -> Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(Error::last(what()))
    }
}

pub fn mkdir(path: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    let path = path.as_ref();
    let c = cpath(path)?;
    // SAFETY: valid path.
    check(unsafe { sys::mkdir(c.as_ptr(), mode) }, || {
        format!("create directory {}", show(path))
    })
}

/// mkdir -p: creates missing parents; an existing directory is fine.
pub fn mkdir_p(path: &str, mode: u32) -> Result<()> {
    if path.is_empty() || path == "/" {
        return Ok(());
    }
    match lstat(path)? {
        Some(m) if m.kind == Kind::Dir => return Ok(()),
        Some(_) => return Err(Error::sys(format!("create directory {path}"), sys::ENOTDIR)),
        None => {}
    }
    if let Some(parent) = parent(path) {
        mkdir_p(parent, 0o755)?;
    }
    match mkdir(path, mode) {
        Err(e) if e.errno == sys::EEXIST => Ok(()),
        r => r,
    }
}

pub fn unlink(path: impl AsRef<[u8]>) -> Result<()> {
    let path = path.as_ref();
    let c = cpath(path)?;
    // SAFETY: valid path.
    check(unsafe { sys::unlink(c.as_ptr()) }, || {
        format!("remove {}", show(path))
    })
}

pub fn rmdir(path: &str) -> Result<()> {
    let c = cpath(path)?;
    // SAFETY: valid path.
    check(unsafe { sys::rmdir(c.as_ptr()) }, || {
        format!("remove directory {path}")
    })
}

pub fn rename(from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    let a = cpath(from)?;
    let b = cpath(to)?;
    // SAFETY: valid paths.
    check(unsafe { sys::rename(a.as_ptr(), b.as_ptr()) }, || {
        format!("rename {} to {}", show(from), show(to))
    })
}

pub fn symlink(target: impl AsRef<[u8]>, path: impl AsRef<[u8]>) -> Result<()> {
    let path = path.as_ref();
    let a = cpath(target)?;
    let b = cpath(path)?;
    // SAFETY: valid paths.
    check(unsafe { sys::symlink(a.as_ptr(), b.as_ptr()) }, || {
        format!("create link {}", show(path))
    })
}

pub fn chmod(path: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    let path = path.as_ref();
    let c = cpath(path)?;
    // SAFETY: valid path.
    check(unsafe { sys::chmod(c.as_ptr(), mode) }, || {
        format!("chmod {}", show(path))
    })
}

/// A link's target as text; see [`readlink_raw`] for targets that are not UTF-8.
pub fn readlink(path: &str) -> Result<String> {
    String::from_utf8(readlink_raw(path)?)
        .map_err(|_| Error::msg(format!("link {path}: target is not UTF-8")))
}

/// A link's target, the bytes the kernel holds (at most PATH_MAX, 4096).
pub fn readlink_raw(path: impl AsRef<[u8]>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let c = cpath(path)?;
    let mut buf = alloc::vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { sys::readlink(c.as_ptr(), buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return Err(Error::last(format!("read link {}", show(path))));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Sets the modification (and access) time without following symlinks.
pub fn set_mtime(path: impl AsRef<[u8]>, sec: i64, nsec: u32) -> Result<()> {
    let path = path.as_ref();
    let c = cpath(path)?;
    let t = sys::timespec::new(sec, nsec);
    let times = [t, t];
    // SAFETY: valid path and two timespecs.
    check(
        unsafe {
            sys::utimensat(
                sys::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                sys::AT_SYMLINK_NOFOLLOW,
            )
        },
        || format!("set time of {}", show(path)),
    )
}

/// Reads a whole file, refusing more than `max` bytes.
pub fn read_file(path: &str, max: usize) -> Result<Vec<u8>> {
    let fd = Fd::open(path, sys::O_RDONLY, 0)?;
    let mut out = Vec::new();
    let mut buf = alloc::vec![0u8; 16384];
    loop {
        let n = fd
            .read(&mut buf)
            .map_err(|e| Error::sys(format!("read {path}"), e))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > max {
            return Err(Error::msg(format!("{path}: larger than {max} bytes")));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A temporary name beside `path` (same directory, so rename is atomic).
pub fn temp_name(path: &str) -> String {
    // SAFETY: plain C call.
    let pid = unsafe { sys::getpid() };
    let (dir, base) = match path.rfind('/') {
        Some(i) => (&path[..i + 1], &path[i + 1..]),
        None => ("", path),
    };
    format!("{dir}.{base}.tmp.{pid}")
}

/// Writes a file atomically: temp file, fsync, rename over the target.
pub fn write_file_atomic(path: &str, data: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_name(path);
    let result = (|| {
        let fd = Fd::open(&tmp, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, mode)?;
        fd.write_all(data)
            .map_err(|e| Error::sys(format!("write {tmp}"), e))?;
        fd.fchmod(mode)
            .map_err(|e| Error::sys(format!("chmod {tmp}"), e))?;
        fd.fsync().map_err(|e| Error::sys(format!("sync {tmp}"), e))?;
        drop(fd);
        rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = unlink(&tmp);
    }
    result
}

/// Removes a file, link or whole directory tree (rm -rf); missing is fine.
pub fn remove_tree(path: &str) -> Result<()> {
    match lstat(path)? {
        None => Ok(()),
        Some(m) if m.kind == Kind::Dir => {
            for name in read_dir(path)? {
                remove_tree(&join(path, &name))?;
            }
            rmdir(path)
        }
        Some(_) => unlink(path),
    }
}

/// "a/b" + "c" = "a/b/c", without doubling the slash.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent of a path ("/a/b" -> "/a", "/a" -> "/"), None for "/" or "".
pub fn parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) if trimmed.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&trimmed[..i]),
    }
}

/// Monotonic milliseconds.
pub fn now_ms() -> u64 {
    let mut ts = sys::timespec::default();
    // SAFETY: valid output pointer.
    unsafe { sys::clock_gettime(sys::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// Wall-clock seconds since the Unix epoch (CLOCK_REALTIME).
pub fn now_unix_s() -> i64 {
    let mut ts = sys::timespec::default();
    // SAFETY: valid output pointer.
    unsafe { sys::clock_gettime(sys::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec
}

/// Sleeps; returns false when interrupted by a signal.
pub fn sleep_ms(ms: u64) -> bool {
    let req = sys::timespec::new((ms / 1000) as i64, ((ms % 1000) * 1_000_000) as u32);
    // SAFETY: valid pointers.
    unsafe { sys::nanosleep(&req, core::ptr::null_mut()) == 0 }
}

/// An environment variable, if set and UTF-8.
pub fn getenv(name: &str) -> Option<String> {
    let c = cpath(name).ok()?;
    // SAFETY: valid name; the result is NUL-terminated or null.
    let p = unsafe { sys::getenv(c.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null C string owned by the environment.
    let b = unsafe { crate::rt::cstr_bytes(p) };
    core::str::from_utf8(b).ok().map(String::from)
}

pub fn isatty(fd: i32) -> bool {
    // SAFETY: plain C call.
    unsafe { sys::isatty(fd) == 1 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parent_and_join() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(parent("a"), None);
        assert_eq!(join("/a/", "b"), "/a/b");
        assert_eq!(join("/a", "b"), "/a/b");
    }

    #[test]
    fn error_display_names_the_reason() {
        let e = Error::sys("connect", sys::EACCES).context("lwtcp");
        assert_eq!(alloc::format!("{e}"), "lwtcp: connect: permission denied");
        assert!(cpath("a\0b").is_err());
    }
}
