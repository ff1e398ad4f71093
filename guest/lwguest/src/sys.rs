//! The few libc functions the tools use, declared by hand so one list serves
//! musl on x86_64, musl on wasm32 (linux-wasm) and the wasmtime harness,
//! whose "env" imports implement exactly these. Only types whose layout is
//! the same on every one of those targets cross this boundary (statx,
//! pollfd, the musl/glibc x86_64 dirent, timespec with 64-bit time_t).

#![allow(non_camel_case_types)]

pub type c_int = i32;
pub type c_uint = u32;
pub type c_long = isize;
pub type c_ulong = usize;
pub type c_char = u8;
pub type size_t = usize;
pub type ssize_t = isize;
pub type mode_t = u32;

/// musl >= 1.2 uses a 64-bit time_t on every target; `long` pads on 32-bit.
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

/// musl's `struct dirent` (64-bit ino/off since 1.2); glibc x86_64 matches.
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

// The generic Linux values (asm-generic), used by x86_64 and wasm32 alike.
pub const O_RDONLY: c_int = 0;
pub const O_WRONLY: c_int = 1;
pub const O_RDWR: c_int = 2;
pub const O_CREAT: c_int = 0o100;
pub const O_EXCL: c_int = 0o200;
pub const O_TRUNC: c_int = 0o1000;
pub const O_NONBLOCK: c_int = 0o4000;
pub const O_DIRECTORY: c_int = 0o200000;
pub const O_NOFOLLOW: c_int = 0o400000;
pub const O_CLOEXEC: c_int = 0o2000000;

pub const F_GETFL: c_int = 3;
// lseek whence and flock operations (asm-generic, fs.h / fcntl.h).
pub const SEEK_CUR: c_int = 1;
pub const LOCK_SH: c_int = 1;
pub const LOCK_EX: c_int = 2;
pub const LOCK_NB: c_int = 4;
pub const LOCK_UN: c_int = 8;
pub const F_SETFL: c_int = 4;

pub const AT_FDCWD: c_int = -100;
pub const AT_SYMLINK_NOFOLLOW: c_int = 0x100;
pub const STATX_BASIC_STATS: c_uint = 0x7ff;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

pub const POLLIN: i16 = 0x1;
pub const POLLOUT: i16 = 0x4;
pub const POLLERR: i16 = 0x8;
pub const POLLHUP: i16 = 0x10;
pub const POLLNVAL: i16 = 0x20;

pub const CLOCK_REALTIME: c_int = 0;
pub const CLOCK_MONOTONIC: c_int = 1;

// Linux errno values: the kernel's <asm-generic/errno.h>, through lwabi.
pub use lwabi::errno::{
    EACCES, EAGAIN, EBADF, EBADMSG, EBUSY, ECONNREFUSED, ECONNRESET, EEXIST, EFBIG, EHOSTUNREACH,
    EINPROGRESS, EINTR, EINVAL, EIO, EISDIR, ELOOP, ENAMETOOLONG, ENODEV, ENOENT, ENOMEM, ENOSPC, ENOSYS,
    ENOTCONN, ENOTDIR, ENOTEMPTY, ENOTTY, ENXIO, EPERM, EPIPE, EPROTO, EROFS, ETIMEDOUT, EXDEV,
};

// Native targets link the C library explicitly (no_std pulls in no libc);
// on wasm32 the functions are imports (harness) or come from the sysroot.
#[cfg_attr(not(target_arch = "wasm32"), link(name = "c"))]
extern "C" {
    pub fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    pub fn close(fd: c_int) -> c_int;
    pub fn read(fd: c_int, buf: *mut u8, len: size_t) -> ssize_t;
    pub fn write(fd: c_int, buf: *const u8, len: size_t) -> ssize_t;
    pub fn ioctl(fd: c_int, req: c_ulong, ...) -> c_int;
    pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    pub fn poll(fds: *mut pollfd, nfds: c_ulong, timeout_ms: c_int) -> c_int;
    pub fn fsync(fd: c_int) -> c_int;
    pub fn fchmod(fd: c_int, mode: mode_t) -> c_int;
    // Used by lwsync: holes in sparse files (lseek, ftruncate; off_t is
    // 64-bit in musl >= 1.2 on every target) and the store lock (flock).
    pub fn lseek(fd: c_int, offset: i64, whence: c_int) -> i64;
    pub fn ftruncate(fd: c_int, len: i64) -> c_int;
    pub fn flock(fd: c_int, op: c_int) -> c_int;
    pub fn isatty(fd: c_int) -> c_int;
    pub fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut statx) -> c_int;
    pub fn mkdir(path: *const c_char, mode: mode_t) -> c_int;
    pub fn rmdir(path: *const c_char) -> c_int;
    pub fn unlink(path: *const c_char) -> c_int;
    pub fn rename(from: *const c_char, to: *const c_char) -> c_int;
    pub fn symlink(target: *const c_char, path: *const c_char) -> c_int;
    pub fn readlink(path: *const c_char, buf: *mut c_char, len: size_t) -> ssize_t;
    pub fn chmod(path: *const c_char, mode: mode_t) -> c_int;
    pub fn utimensat(dirfd: c_int, path: *const c_char, times: *const timespec, flags: c_int) -> c_int;
    pub fn opendir(path: *const c_char) -> *mut DIR;
    pub fn readdir(dir: *mut DIR) -> *mut dirent;
    pub fn closedir(dir: *mut DIR) -> c_int;
    pub fn clock_gettime(clock: c_int, ts: *mut timespec) -> c_int;
    pub fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int;
    pub fn getpid() -> c_int;
    pub fn getenv(name: *const c_char) -> *const c_char;
    pub fn exit(code: c_int) -> !;
}

#[cfg(not(all(target_arch = "wasm32", not(feature = "wasm-musl"))))]
extern "C" {
    fn __errno_location() -> *mut c_int;
}

/// The harness build owns errno: the harness writes it through this export.
#[cfg(all(target_arch = "wasm32", not(feature = "wasm-musl")))]
mod harness_errno {
    use super::c_int;
    use core::sync::atomic::{AtomicI32, Ordering};
    pub static ERRNO: AtomicI32 = AtomicI32::new(0);
    #[no_mangle]
    pub extern "C" fn __errno_location() -> *mut c_int {
        ERRNO.as_ptr()
    }
    pub fn get() -> c_int {
        ERRNO.load(Ordering::Relaxed)
    }
}

/// The calling thread's errno after a failed call.
pub fn errno() -> c_int {
    #[cfg(all(target_arch = "wasm32", not(feature = "wasm-musl")))]
    {
        harness_errno::get()
    }
    #[cfg(not(all(target_arch = "wasm32", not(feature = "wasm-musl"))))]
    // SAFETY: libc returns a valid pointer to this thread's errno.
    unsafe {
        *__errno_location()
    }
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
