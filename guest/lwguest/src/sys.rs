//! The system interface of the tools: libc-shaped functions (-1 and
//! [`errno`] on failure) implemented directly on Linux system calls
//! ([`crate::syscall`]), the same code on x86_64 (um) and wasm32
//! (linux-wasm). Only types whose layout is the same on both cross this
//! boundary (statx, pollfd, linux_dirent64, timespec with 64-bit time).

#![allow(non_camel_case_types)]

pub type c_int = i32;
pub type c_uint = u32;
pub type c_long = isize;
pub type c_ulong = usize;
pub type c_char = u8;
pub type size_t = usize;
pub type ssize_t = isize;
pub type mode_t = u32;

/// The kernel's `struct __kernel_timespec`: 64-bit seconds and nanoseconds
/// on every target (on 32-bit the `long` plus padding, little-endian).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct timespec {
    pub tv_sec: i64,
    pub tv_nsec: c_long,
    #[cfg(target_pointer_width = "32")]
    pub _pad: u32,
}

impl timespec {
    pub fn new(sec: i64, nsec: u32) -> Self {
        timespec {
            tv_sec: sec,
            tv_nsec: nsec as c_long,
            #[cfg(target_pointer_width = "32")]
            _pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct pollfd {
    pub fd: c_int,
    pub events: i16,
    pub revents: i16,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct statx_timestamp {
    pub tv_sec: i64,
    pub tv_nsec: u32,
    pub _reserved: i32,
}

/// `struct statx` (linux/stat.h): fixed-width fields, one layout everywhere.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct statx {
    pub stx_mask: u32,
    pub stx_blksize: u32,
    pub stx_attributes: u64,
    pub stx_nlink: u32,
    pub stx_uid: u32,
    pub stx_gid: u32,
    pub stx_mode: u16,
    pub _spare0: u16,
    pub stx_ino: u64,
    pub stx_size: u64,
    pub stx_blocks: u64,
    pub stx_attributes_mask: u64,
    pub stx_atime: statx_timestamp,
    pub stx_btime: statx_timestamp,
    pub stx_ctime: statx_timestamp,
    pub stx_mtime: statx_timestamp,
    pub stx_rdev_major: u32,
    pub stx_rdev_minor: u32,
    pub stx_dev_major: u32,
    pub stx_dev_minor: u32,
    pub _spare2: [u64; 14],
}

/// The kernel's `struct linux_dirent64` head (getdents64), name NUL-terminated.
#[repr(C)]
pub struct dirent {
    pub d_ino: u64,
    pub d_off: i64,
    pub d_reclen: u16,
    pub d_type: u8,
    pub d_name: [c_char; 256],
}

#[repr(C)]
pub struct DIR {
    _opaque: [u8; 0],
}

// The generic Linux values (asm-generic, used by x86_64 and wasm32 alike):
// the kernel's uapi headers, through lwabi (see lwabi::linux).
pub use lwabi::linux::{
    AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, CLOCK_MONOTONIC, CLOCK_REALTIME, F_GETFL,
    F_SETFL, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, MAP_ANONYMOUS, MAP_PRIVATE, O_CLOEXEC, O_CREAT, O_DIRECTORY,
    O_EXCL, O_LARGEFILE as O_LARGEFILE_GENERIC, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY,
    POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, PROT_READ, PROT_WRITE, RENAME_EXCHANGE, RENAME_NOREPLACE,
    SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET, STATX_BASIC_STATS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};

// Linux errno values: the kernel's <asm-generic/errno.h>, through lwabi.
pub use lwabi::errno::{
    EACCES, EAGAIN, EBADF, EBADMSG, EBUSY, ECONNREFUSED, ECONNRESET, EEXIST, EFBIG, EHOSTUNREACH,
    EINPROGRESS, EINTR, EINVAL, EIO, EISDIR, ELOOP, ENAMETOOLONG, ENODEV, ENOENT, ENOMEM, ENOSPC, ENOSYS,
    ENOTCONN, ENOTDIR, ENOTEMPTY, ENOTTY, ENXIO, EPERM, EPIPE, EPROTO, EROFS, ETIMEDOUT, EXDEV,
};

/// `TCGETS`, the kernel's asm-generic/ioctls.h value through lwabi (x86 has
/// the same value), as `ioctl` here takes a request.
pub const TCGETS: c_ulong = lwabi::linux::TCGETS as c_ulong;

// ---- the syscall layer ---------------------------------------------------
// libc-shaped functions (same names and meaning as before: -1 and errno on
// failure) implemented directly on the kernel's calls through
// [`crate::syscall`], one code path for x86_64 and wasm32. Where linux-wasm
// (asm-generic, 32-bit) lacks the old call, the *at / time64 / 64-bit-offset
// call is used on both targets.

use crate::syscall::{nr, syscall};
use core::sync::atomic::{AtomicI32, Ordering};

/// errno of this process (the tools are single-threaded).
static ERRNO: AtomicI32 = AtomicI32::new(0);

/// The kernel's result in libc form: the value, or -1 with errno set.
fn ret(r: isize) -> isize {
    match crate::syscall::check(r) {
        Ok(_) => r,
        Err(e) => {
            ERRNO.store(e, Ordering::Relaxed);
            -1
        }
    }
}

fn ret_int(r: isize) -> c_int {
    ret(r) as c_int
}

/// The calling thread's errno after a failed call.
pub fn errno() -> c_int {
    ERRNO.load(Ordering::Relaxed)
}

/// 32-bit linux-wasm needs O_LARGEFILE for files over 2 GiB (x86_64 implies it).
#[cfg(target_pointer_width = "32")]
const OPEN_EXTRA: c_int = O_LARGEFILE_GENERIC;
#[cfg(not(target_pointer_width = "32"))]
const OPEN_EXTRA: c_int = 0;

/// openat(2) relative to `dirfd` (`AT_FDCWD` for the working directory).
///
/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    let a = [
        dirfd as usize,
        path as usize,
        (flags | OPEN_EXTRA) as usize,
        mode as usize,
    ];
    // SAFETY: the caller vouches for the path.
    ret_int(unsafe { syscall(nr::openat, &a) })
}

/// open(2) as openat(AT_FDCWD, ...) (linux-wasm has no `open`).
///
/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: forwarded.
    unsafe { openat(AT_FDCWD, path, flags, mode) }
}

/// # Safety
/// Closes whatever `fd` is; the caller owns it.
pub unsafe fn close(fd: c_int) -> c_int {
    // SAFETY: plain integer argument.
    ret_int(unsafe { syscall(nr::close, &[fd as usize]) })
}

/// # Safety
/// `buf` is valid for `len` bytes of writes.
pub unsafe fn read(fd: c_int, buf: *mut u8, len: size_t) -> ssize_t {
    // SAFETY: the caller vouches for the buffer.
    ret(unsafe { syscall(nr::read, &[fd as usize, buf as usize, len]) })
}

/// # Safety
/// `buf` is valid for `len` bytes of reads.
pub unsafe fn write(fd: c_int, buf: *const u8, len: size_t) -> ssize_t {
    // SAFETY: the caller vouches for the buffer.
    ret(unsafe { syscall(nr::write, &[fd as usize, buf as usize, len]) })
}

/// What an ioctl argument can be: a pointer to the request's struct, or an
/// integer (requests without an argument take 0).
pub trait IoctlArg {
    fn to_arg(self) -> usize;
}
impl<T> IoctlArg for *mut T {
    fn to_arg(self) -> usize {
        self as usize
    }
}
impl<T> IoctlArg for *const T {
    fn to_arg(self) -> usize {
        self as usize
    }
}
impl IoctlArg for usize {
    fn to_arg(self) -> usize {
        self
    }
}

/// ioctl(2).
///
/// # Safety
/// `arg` is what request `req` expects (a pointer to its struct, sized as the
/// request number says).
pub unsafe fn ioctl<A: IoctlArg>(fd: c_int, req: c_ulong, arg: A) -> c_int {
    // SAFETY: the caller vouches for the argument.
    ret_int(unsafe { syscall(nr::ioctl, &[fd as usize, req, arg.to_arg()]) })
}

/// fcntl(2) (`fcntl64` on 32-bit linux-wasm).
///
/// # Safety
/// `arg` is what `cmd` expects (the tools use only integer commands).
pub unsafe fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    #[cfg(target_pointer_width = "32")]
    let n = nr::fcntl64;
    #[cfg(not(target_pointer_width = "32"))]
    let n = nr::fcntl;
    // SAFETY: the caller vouches for the argument.
    ret_int(unsafe { syscall(n, &[fd as usize, cmd as usize, arg as usize]) })
}

/// poll(2) as ppoll (`ppoll_time64` on linux-wasm; no `poll` there).
/// `timeout_ms` < 0 waits without limit.
///
/// # Safety
/// `fds` is valid for `nfds` entries.
pub unsafe fn poll(fds: *mut pollfd, nfds: c_ulong, timeout_ms: c_int) -> c_int {
    let ts = timespec::new(
        i64::from(timeout_ms.max(0) / 1000),
        (timeout_ms.max(0) % 1000) as u32 * 1_000_000,
    );
    let tsp = if timeout_ms < 0 {
        0
    } else {
        core::ptr::addr_of!(ts) as usize
    };
    #[cfg(target_pointer_width = "32")]
    let n = nr::ppoll_time64;
    #[cfg(not(target_pointer_width = "32"))]
    let n = nr::ppoll;
    // SAFETY: the caller vouches for fds; ts lives across the call; no sigmask.
    ret_int(unsafe { syscall(n, &[fds as usize, nfds, tsp, 0, 8]) })
}

/// # Safety
/// Plain integer argument.
pub unsafe fn fsync(fd: c_int) -> c_int {
    // SAFETY: integer argument.
    ret_int(unsafe { syscall(nr::fsync, &[fd as usize]) })
}

/// # Safety
/// Plain integer arguments.
pub unsafe fn fchmod(fd: c_int, mode: mode_t) -> c_int {
    // SAFETY: integer arguments.
    ret_int(unsafe { syscall(nr::fchmod, &[fd as usize, mode as usize]) })
}

/// 1 when `fd` is a terminal (TCGETS succeeds), else 0 with errno.
///
/// # Safety
/// Plain integer argument.
pub unsafe fn isatty(fd: c_int) -> c_int {
    // struct termios is 36 bytes on asm-generic and x86; room to spare.
    let mut t = [0u32; 16];
    // SAFETY: TCGETS writes a struct termios into t.
    let r = unsafe { ioctl(fd, TCGETS, t.as_mut_ptr()) };
    i32::from(r == 0)
}

/// statx(2); `buf` receives the kernel's `struct statx`.
///
/// # Safety
/// `path` is NUL-terminated, `buf` valid for writes.
pub unsafe fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut statx) -> c_int {
    let a = [
        dirfd as usize,
        path as usize,
        flags as usize,
        mask as usize,
        buf as usize,
    ];
    // SAFETY: the caller vouches for the pointers.
    ret_int(unsafe { syscall(nr::statx, &a) })
}

/// fstat through statx(fd, "", AT_EMPTY_PATH): size, mode, times (ctime
/// included) of an open file.
///
/// # Safety
/// `buf` valid for writes.
pub unsafe fn fstatx(fd: c_int, mask: c_uint, buf: *mut statx) -> c_int {
    // SAFETY: an empty NUL-terminated path and the caller's buffer.
    unsafe { statx(fd, c"".as_ptr() as *const c_char, AT_EMPTY_PATH, mask, buf) }
}

/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: the caller vouches for the path.
    ret_int(unsafe { syscall(nr::mkdirat, &[AT_FDCWD as usize, path as usize, mode as usize]) })
}

/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn rmdir(path: *const c_char) -> c_int {
    let a = [AT_FDCWD as usize, path as usize, AT_REMOVEDIR as usize];
    // SAFETY: the caller vouches for the path.
    ret_int(unsafe { syscall(nr::unlinkat, &a) })
}

/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn unlink(path: *const c_char) -> c_int {
    // SAFETY: the caller vouches for the path.
    ret_int(unsafe { syscall(nr::unlinkat, &[AT_FDCWD as usize, path as usize, 0]) })
}

/// renameat2(2) relative to the working directory; `flags` 0,
/// `RENAME_NOREPLACE` or `RENAME_EXCHANGE`.
///
/// # Safety
/// Both paths are NUL-terminated.
pub unsafe fn renameat2(from: *const c_char, to: *const c_char, flags: c_uint) -> c_int {
    let a = [
        AT_FDCWD as usize,
        from as usize,
        AT_FDCWD as usize,
        to as usize,
        flags as usize,
    ];
    // SAFETY: the caller vouches for the paths.
    ret_int(unsafe { syscall(nr::renameat2, &a) })
}

/// rename(2) as renameat2 with no flags (linux-wasm has no `rename`).
///
/// # Safety
/// Both paths are NUL-terminated.
pub unsafe fn rename(from: *const c_char, to: *const c_char) -> c_int {
    // SAFETY: forwarded.
    unsafe { renameat2(from, to, 0) }
}

/// # Safety
/// Both paths are NUL-terminated.
pub unsafe fn symlink(target: *const c_char, path: *const c_char) -> c_int {
    let a = [target as usize, AT_FDCWD as usize, path as usize];
    // SAFETY: the caller vouches for the paths.
    ret_int(unsafe { syscall(nr::symlinkat, &a) })
}

/// # Safety
/// `path` is NUL-terminated; `buf` valid for `len` bytes.
pub unsafe fn readlink(path: *const c_char, buf: *mut c_char, len: size_t) -> ssize_t {
    let a = [AT_FDCWD as usize, path as usize, buf as usize, len];
    // SAFETY: the caller vouches for the pointers.
    ret(unsafe { syscall(nr::readlinkat, &a) })
}

/// chmod(2) as fchmodat (follows links, as chmod does).
///
/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn chmod(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: the caller vouches for the path.
    ret_int(unsafe { syscall(nr::fchmodat, &[AT_FDCWD as usize, path as usize, mode as usize]) })
}

/// utimensat(2) with 64-bit times (`utimensat_time64` on linux-wasm).
///
/// # Safety
/// `path` is NUL-terminated; `times` points to two timespecs (or is null).
pub unsafe fn utimensat(dirfd: c_int, path: *const c_char, times: *const timespec, flags: c_int) -> c_int {
    #[cfg(target_pointer_width = "32")]
    let n = nr::utimensat_time64;
    #[cfg(not(target_pointer_width = "32"))]
    let n = nr::utimensat;
    let a = [dirfd as usize, path as usize, times as usize, flags as usize];
    // SAFETY: the caller vouches for the pointers.
    ret_int(unsafe { syscall(n, &a) })
}

/// lseek(2) with a 64-bit offset (`llseek` on 32-bit linux-wasm); returns
/// the new offset or -1 with errno. `SEEK_DATA`/`SEEK_HOLE` pass through.
///
/// # Safety
/// Plain integer arguments.
pub unsafe fn lseek(fd: c_int, offset: i64, whence: c_int) -> i64 {
    #[cfg(target_pointer_width = "32")]
    {
        let mut result: i64 = 0;
        let a = [
            fd as usize,
            ((offset as u64) >> 32) as usize,
            offset as u32 as usize,
            core::ptr::addr_of_mut!(result) as usize,
            whence as usize,
        ];
        // SAFETY: result lives across the call.
        if ret(unsafe { syscall(nr::llseek, &a) }) < 0 {
            return -1;
        }
        result
    }
    #[cfg(not(target_pointer_width = "32"))]
    // SAFETY: integer arguments.
    unsafe {
        ret(syscall(
            nr::lseek,
            &[fd as usize, offset as usize, whence as usize],
        )) as i64
    }
}

/// ftruncate(2) with a 64-bit length. On 32-bit linux-wasm `ftruncate64`
/// takes it as two 32-bit halves, low first (upstream's
/// `sys_wasm32_ftruncate64`).
///
/// # Safety
/// Plain integer arguments.
pub unsafe fn ftruncate(fd: c_int, len: i64) -> c_int {
    #[cfg(target_pointer_width = "32")]
    let r = {
        let a = [
            fd as usize,
            len as u64 as u32 as usize,
            ((len as u64) >> 32) as usize,
        ];
        // SAFETY: integer arguments.
        unsafe { syscall(nr::ftruncate64, &a) }
    };
    #[cfg(not(target_pointer_width = "32"))]
    // SAFETY: integer arguments.
    let r = unsafe { syscall(nr::ftruncate, &[fd as usize, len as usize]) };
    ret_int(r)
}

/// flock(2): `LOCK_SH`/`LOCK_EX`/`LOCK_UN`, with `LOCK_NB` not to wait.
///
/// # Safety
/// Plain integer arguments.
pub unsafe fn flock(fd: c_int, op: c_int) -> c_int {
    // SAFETY: integer arguments.
    ret_int(unsafe { syscall(nr::flock, &[fd as usize, op as usize]) })
}

/// Anonymous private read-write memory of `len` bytes (`mmap2` on
/// linux-wasm, `mmap` on x86_64); null on failure with errno. On NOMMU a
/// mapping can only be unmapped whole.
pub fn mmap_anon(len: size_t) -> *mut u8 {
    #[cfg(target_pointer_width = "32")]
    let n = nr::mmap2;
    #[cfg(not(target_pointer_width = "32"))]
    let n = nr::mmap;
    let a = [
        0,
        len,
        (PROT_READ | PROT_WRITE) as usize,
        (MAP_PRIVATE | MAP_ANONYMOUS) as usize,
        usize::MAX,
        0,
    ];
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    let r = ret(unsafe { syscall(n, &a) });
    if r == -1 {
        core::ptr::null_mut()
    } else {
        r as *mut u8
    }
}

/// Unmaps a whole mapping made by [`mmap_anon`].
///
/// # Safety
/// `ptr`/`len` are exactly one earlier mapping, no longer used.
pub unsafe fn munmap(ptr: *mut u8, len: size_t) -> c_int {
    // SAFETY: the caller vouches for the mapping.
    ret_int(unsafe { syscall(nr::munmap, &[ptr as usize, len]) })
}

/// clock_gettime(2) with 64-bit time (`clock_gettime64` on linux-wasm).
///
/// # Safety
/// `ts` valid for writes.
pub unsafe fn clock_gettime(clock: c_int, ts: *mut timespec) -> c_int {
    #[cfg(target_pointer_width = "32")]
    let n = nr::clock_gettime64;
    #[cfg(not(target_pointer_width = "32"))]
    let n = nr::clock_gettime;
    // SAFETY: the caller vouches for ts.
    ret_int(unsafe { syscall(n, &[clock as usize, ts as usize]) })
}

/// nanosleep(2) as clock_nanosleep on CLOCK_MONOTONIC (`_time64` on
/// linux-wasm, which has no `nanosleep`); -1 with EINTR when a signal came.
///
/// # Safety
/// `req` valid; `rem` null or valid for writes.
pub unsafe fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    #[cfg(target_pointer_width = "32")]
    let n = nr::clock_nanosleep_time64;
    #[cfg(not(target_pointer_width = "32"))]
    let n = nr::clock_nanosleep;
    let a = [CLOCK_MONOTONIC as usize, 0, req as usize, rem as usize];
    // SAFETY: the caller vouches for the pointers.
    ret_int(unsafe { syscall(n, &a) })
}

/// # Safety
/// No arguments; always succeeds.
pub unsafe fn getpid() -> c_int {
    // SAFETY: no arguments.
    unsafe { syscall(nr::getpid, &[]) as c_int }
}

/// An environment variable of this process, or null.
///
/// # Safety
/// `name` is NUL-terminated.
pub unsafe fn getenv(name: *const c_char) -> *const c_char {
    // SAFETY: forwarded.
    unsafe { crate::rt::getenv_raw(name) }
}

/// Ends the process (exit_group): every thread, with `code & 0xff`.
///
/// # Safety
/// Never returns; nothing after it runs.
pub unsafe fn exit(code: c_int) -> ! {
    loop {
        // SAFETY: integer argument; exit_group does not return.
        unsafe { syscall(nr::exit_group, &[code as usize]) };
    }
}

/// A directory stream over getdents64. Entries are `linux_dirent64`, whose
/// head (ino, off, reclen, type, name) is [`dirent`]'s layout.
struct DirStream {
    fd: c_int,
    /// u64 for the 8-byte alignment of linux_dirent64; 256 bytes of slack
    /// past what the kernel fills so a `dirent` view never leaves the buffer.
    buf: alloc::vec::Vec<u64>,
    pos: usize,
    end: usize,
}

const DIR_FILL: usize = 4096;

/// opendir(3) over openat(O_DIRECTORY); null with errno on failure.
///
/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn opendir(path: *const c_char) -> *mut DIR {
    // SAFETY: forwarded.
    let fd = unsafe { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) };
    if fd < 0 {
        return core::ptr::null_mut();
    }
    let d = alloc::boxed::Box::new(DirStream {
        fd,
        buf: alloc::vec![0u64; (DIR_FILL + 256) / 8],
        pos: 0,
        end: 0,
    });
    alloc::boxed::Box::into_raw(d) as *mut DIR
}

/// The next entry, or null at the end (errno set on error). The entry is
/// valid until the next call on this stream.
///
/// # Safety
/// `dir` came from [`opendir`] and is not closed.
pub unsafe fn readdir(dir: *mut DIR) -> *mut dirent {
    // SAFETY: dir is a live DirStream by contract.
    let d = unsafe { &mut *(dir as *mut DirStream) };
    if d.pos >= d.end {
        let a = [d.fd as usize, d.buf.as_mut_ptr() as usize, DIR_FILL];
        // SAFETY: the kernel fills at most DIR_FILL bytes of buf.
        let n = ret(unsafe { syscall(nr::getdents64, &a) });
        if n <= 0 {
            return core::ptr::null_mut();
        }
        d.pos = 0;
        d.end = n as usize;
    }
    let base = d.buf.as_mut_ptr() as *mut u8;
    // SAFETY: pos < end <= DIR_FILL; the record's reclen is at offset 16.
    let reclen = unsafe { core::ptr::read_unaligned(base.add(d.pos + 16) as *const u16) } as usize;
    // SAFETY: as above; 256 bytes of slack keep the whole dirent view inside buf.
    let ent = unsafe { base.add(d.pos) } as *mut dirent;
    d.pos += reclen.max(24);
    ent
}

/// # Safety
/// `dir` came from [`opendir`]; it is freed here.
pub unsafe fn closedir(dir: *mut DIR) -> c_int {
    // SAFETY: dir is a live DirStream by contract, owned from here on.
    let d = unsafe { alloc::boxed::Box::from_raw(dir as *mut DirStream) };
    // SAFETY: we own the fd.
    unsafe { close(d.fd) }
}

/// A short description of an errno, for the messages the tools print.
pub fn strerror(e: c_int) -> &'static str {
    match e {
        EPERM => "operation not permitted",
        ENOENT => "no such file or directory",
        EINTR => "interrupted",
        EIO => "input/output error",
        ENXIO => "no such device",
        EBADF => "bad file descriptor",
        EAGAIN => "resource temporarily unavailable",
        ENOMEM => "out of memory",
        EACCES => "permission denied",
        EBUSY => "device busy",
        EEXIST => "file exists",
        EXDEV => "cross-device link",
        ENODEV => "no such device",
        ENOTDIR => "not a directory",
        EISDIR => "is a directory",
        EINVAL => "invalid argument",
        ENOTTY => "not supported by this device",
        EFBIG => "file too large",
        ENOSPC => "no space left (quota reached)",
        EROFS => "read-only file system",
        EPIPE => "broken pipe",
        ENAMETOOLONG => "name too long",
        ENOSYS => "not implemented",
        ENOTEMPTY => "directory not empty",
        ELOOP => "too many symbolic links",
        EPROTO => "protocol error",
        EBADMSG => "bad message",
        ECONNRESET => "connection reset",
        ENOTCONN => "not connected",
        ETIMEDOUT => "timed out",
        ECONNREFUSED => "connection refused",
        EHOSTUNREACH => "name not found or host unreachable",
        EINPROGRESS => "in progress",
        _ => "unknown error",
    }
}

/// A string constant from a uapi header (bindgen gives it NUL-terminated
/// bytes) as a `str`; `fallback` only if the header ever held non-UTF-8.
pub fn uapi_str(raw: &'static [u8], fallback: &'static str) -> &'static str {
    let bytes = raw.strip_suffix(&[0]).unwrap_or(raw);
    core::str::from_utf8(bytes).unwrap_or(fallback)
}

/// The layer against the build machine's real kernel (x86_64): the same
/// wrappers the um system runs, through `fs`.
#[cfg(all(test, target_arch = "x86_64"))]
#[allow(clippy::unwrap_used, clippy::needless_borrows_for_generic_args)]
mod tests {
    use super::*;
    use crate::fs;

    fn scratch(name: &str) -> String {
        let d = std::env::temp_dir().join(format!("lwguest-sys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d.to_str().unwrap().to_string()
    }

    #[test]
    fn files_directories_links_times_through_raw_syscalls() {
        let d = scratch("fs");
        fs::mkdir_p(&fs::join(&d, "a/b"), 0o755).unwrap();
        let f = fs::join(&d, "a/b/file");
        fs::write_file_atomic(&f, b"hello", 0o640).unwrap();
        assert_eq!(fs::read_file(&f, 100).unwrap(), b"hello");
        let m = fs::lstat(&f).unwrap().unwrap();
        assert_eq!((m.kind, m.mode, m.size), (fs::Kind::File, 0o640, 5));
        fs::set_mtime(&f, 1_000_000_000, 5).unwrap();
        assert_eq!(fs::lstat(&f).unwrap().unwrap().mtime_sec, 1_000_000_000);
        fs::symlink("b/file", fs::join(&d, "a/link")).unwrap();
        assert_eq!(fs::readlink(&fs::join(&d, "a/link")).unwrap(), "b/file");
        assert_eq!(fs::read_dir(&fs::join(&d, "a")).unwrap(), ["b", "link"]);
        fs::rename(&f, &fs::join(&d, "a/moved")).unwrap();
        assert!(fs::lstat(&f).unwrap().is_none());
        fs::chmod(&fs::join(&d, "a/moved"), 0o600).unwrap();
        let fd = fs::Fd::open(&fs::join(&d, "a/moved"), O_RDWR, 0).unwrap();
        // SAFETY: an owned fd and a valid statx buffer.
        let mut st: statx = unsafe { core::mem::zeroed() };
        assert_eq!(unsafe { fstatx(fd.0, STATX_BASIC_STATS, &mut st) }, 0);
        assert_eq!((st.stx_size, st.stx_mode & 0o777), (5, 0o600));
        // SAFETY: integer arguments on an owned fd.
        unsafe {
            assert_eq!(lseek(fd.0, 0, SEEK_END), 5);
            assert_eq!(ftruncate(fd.0, 2), 0);
            assert_eq!(lseek(fd.0, 0, SEEK_END), 2);
            assert_eq!(flock(fd.0, LOCK_EX | LOCK_NB), 0);
            assert_eq!(flock(fd.0, LOCK_UN), 0);
        }
        let missing = fs::Fd::open(&fs::join(&d, "nope"), O_RDONLY, 0);
        assert!(matches!(missing, Err(ref e) if e.errno == ENOENT));
        fs::remove_tree(&d).unwrap();
        assert!(fs::lstat(&d).unwrap().is_none());
    }

    #[test]
    fn memory_time_and_polling() {
        let p = mmap_anon(3 * 4096);
        assert!(!p.is_null());
        // SAFETY: a fresh mapping of that size, zeroed by the kernel.
        unsafe {
            assert_eq!(*p.add(3 * 4096 - 1), 0);
            *p = 1;
            assert_eq!(munmap(p, 3 * 4096), 0);
        }
        let t0 = fs::now_ms();
        assert!(fs::sleep_ms(20));
        assert!(fs::now_ms() >= t0 + 20);
        assert!(fs::now_unix_s() > 1_600_000_000);
        // A pipe's read end polls readable once written to.
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two fds.
        assert_eq!(unsafe { syscall(nr::pipe2, &[fds.as_mut_ptr() as usize, 0]) }, 0);
        let mut pfd = [pollfd {
            fd: fds[0],
            events: POLLIN,
            revents: 0,
        }];
        // SAFETY: valid pollfd array; owned fds.
        unsafe {
            assert_eq!(poll(pfd.as_mut_ptr(), 1, 0), 0);
            assert_eq!(write(fds[1], b"x".as_ptr(), 1), 1);
            assert_eq!(poll(pfd.as_mut_ptr(), 1, 1000), 1);
            assert_eq!(pfd[0].revents & POLLIN, POLLIN);
            assert_eq!(isatty(fds[0]), 0);
            close(fds[0]);
            close(fds[1]);
        }
    }
}
