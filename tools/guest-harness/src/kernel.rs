//! The kernel emulation behind `__wasm_syscall_0..6`: linux-wasm's
//! asm-generic 32-bit calls (numbers generated from the kernel headers by
//! build.rs), answered with the kernel's conventions (a value, or `-errno`).
//! Files live under the scratch root (never left: RESOLVE_IN_ROOT, symlinks
//! included); `/dev/lwnet` and `/dev/lwstore` go to [`super::devices`].
//! A call not listed answers ENOSYS (logged with LW_LOG=warn).

use super::*;
use lwabi::linux::{self, AT_FDCWD, F_GETFD, F_SETFD, O_CREAT, O_DIRECTORY, O_LARGEFILE, TCGETS};

/// The asm-generic 32-bit syscall numbers (linux-wasm's), `nr::openat` etc.
#[allow(non_upper_case_globals, dead_code)]
pub mod nr {
    include!(concat!(env!("OUT_DIR"), "/wasm32_nr.rs"));
}

// The flag words arrive as `u32` syscall arguments; lwabi types these `int`.
const AT_SYMLINK_NOFOLLOW: u32 = linux::AT_SYMLINK_NOFOLLOW as u32;
const AT_REMOVEDIR: u32 = linux::AT_REMOVEDIR as u32;
const AT_EMPTY_PATH: u32 = linux::AT_EMPTY_PATH as u32;
const MAP_ANONYMOUS: u32 = linux::MAP_ANONYMOUS as u32;

/// A syscall's name for reports ("nr 123" if unknown).
pub fn name_of(n: u32) -> String {
    NAMES
        .iter()
        .find(|(_, v)| *v == n as usize)
        .map(|(k, _)| (*k).to_string())
        .unwrap_or_else(|| format!("nr {n}"))
}

/// The calls this emulation answers, by name (for reports).
const NAMES: &[(&str, usize)] = &[
    ("read", nr::read),
    ("write", nr::write),
    ("openat", nr::openat),
    ("close", nr::close),
    ("ioctl", nr::ioctl),
    ("fcntl64", nr::fcntl64),
    ("ppoll_time64", nr::ppoll_time64),
    ("fsync", nr::fsync),
    ("fdatasync", nr::fdatasync),
    ("fchmod", nr::fchmod),
    ("fchmodat", nr::fchmodat),
    ("statx", nr::statx),
    ("mkdirat", nr::mkdirat),
    ("unlinkat", nr::unlinkat),
    ("renameat2", nr::renameat2),
    ("symlinkat", nr::symlinkat),
    ("readlinkat", nr::readlinkat),
    ("utimensat_time64", nr::utimensat_time64),
    ("getdents64", nr::getdents64),
    ("llseek", nr::llseek),
    ("ftruncate64", nr::ftruncate64),
    ("flock", nr::flock),
    ("mmap2", nr::mmap2),
    ("munmap", nr::munmap),
    ("clock_gettime64", nr::clock_gettime64),
    ("clock_nanosleep_time64", nr::clock_nanosleep_time64),
    ("getpid", nr::getpid),
    ("uname", nr::uname),
    ("exit", nr::exit),
    ("exit_group", nr::exit_group),
];

fn errno_of(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}

/// Splits a guest path into (directory, last component), resolving "." and
/// ".." lexically so nothing names a place above the base.
pub fn split_path(path: &str) -> (String, String) {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    match parts.pop() {
        None => (".".into(), ".".into()),
        Some(last) => (
            if parts.is_empty() {
                ".".into()
            } else {
                parts.join("/")
            },
            last.into(),
        ),
    }
}

/// The path relative to its base, normalised ("." for the base itself).
pub fn full(path: &str) -> String {
    let (dir, name) = split_path(path);
    if name == "." {
        ".".into()
    } else if dir == "." {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory a path is resolved from: the root for absolute paths and
/// AT_FDCWD (the guest's working directory is "/"), else the open dirfd.
fn base<'a>(st: &'a State, dirfd: i32, path: &str) -> std::result::Result<BorrowedFd<'a>, i32> {
    if path.starts_with('/') || dirfd == AT_FDCWD {
        return Ok(st.root.as_fd());
    }
    match st.fds.get(&dirfd) {
        Some(GuestFd::File(f)) => Ok(f.fd.as_fd()),
        Some(_) => Err(ENOTDIR),
        None => Err(EBADF),
    }
}

/// Opens the directory holding the path's last component, inside the root
/// (absolute symlinks resolve within it: RESOLVE_IN_ROOT).
fn parent_at(st: &State, dirfd: i32, path: &str) -> std::result::Result<(OwnedFd, String), i32> {
    if path.is_empty() {
        return Err(ENOENT);
    }
    let (dir, name) = split_path(path);
    let fd = rustix::fs::openat2(
        base(st, dirfd, path)?,
        dir.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno_of)?;
    Ok((fd, name))
}

pub fn host_fd(st: &State, fd: i32) -> Option<BorrowedFd<'_>> {
    match st.fds.get(&fd) {
        // SAFETY: 0-2 stay open for the life of the process.
        Some(GuestFd::Std(h)) => Some(unsafe { BorrowedFd::borrow_raw(*h) }),
        Some(GuestFd::File(f)) => Some(f.fd.as_fd()),
        _ => None,
    }
}

fn lowest_free_fd(st: &State) -> i32 {
    (0..).find(|n| !st.fds.contains_key(n)).unwrap_or(3)
}

type R = std::result::Result<i32, i32>;

fn openat(c: &mut Ctx<'_>, dirfd: i32, path_ptr: u32, flags: i32, mode: u32) -> R {
    let path = cstr(c, path_ptr)?;
    if path.is_empty() {
        return Err(ENOENT);
    }
    let absolute = path.starts_with('/') || dirfd == AT_FDCWD;
    let rel = full(&path);
    let entry = match (absolute, rel.as_str()) {
        (true, "dev/lwnet") => GuestFd::Net(NetFd {
            nonblock: flags & O_NONBLOCK != 0,
            ..Default::default()
        }),
        (true, "dev/lwstore") => GuestFd::Store,
        _ => {
            let st = c.data();
            let f = rustix::fs::openat2(
                base(st, dirfd, &path)?,
                rel.as_str(),
                OFlags::from_bits_retain((flags & !O_LARGEFILE) as u32) | OFlags::CLOEXEC,
                if flags & O_CREAT != 0 {
                    Mode::from_bits_truncate(mode)
                } else {
                    Mode::empty()
                },
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(errno_of)?;
            let _ = O_DIRECTORY;
            GuestFd::File(FileFd { fd: f, dir: None })
        }
    };
    let st = c.data_mut();
    let n = lowest_free_fd(st);
    st.fds.insert(n, entry);
    Ok(n)
}

fn close(c: &mut Ctx<'_>, fd: i32) -> R {
    let st = c.data_mut();
    let worker = st.worker.clone();
    match st.fds.remove(&fd) {
        None => Err(EBADF),
        Some(GuestFd::Net(n)) => {
            if let Some(id) = n.id {
                worker.net_close(id);
            }
            Ok(0)
        }
        // The harness's own descriptors stay open; the guest forgets them.
        Some(_) => Ok(0),
    }
}

fn read(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32) -> R {
    match c.data().fds.get(&fd) {
        Some(GuestFd::Net(_)) => net_read(c, fd, ptr, len),
        Some(GuestFd::Store) => Err(EINVAL),
        Some(GuestFd::File(FileFd { dir: Some(_), .. })) => Err(21), // EISDIR
        Some(_) => {
            let mut buf = vec![0u8; (len as usize).min(1 << 20)];
            let n = match host_fd(c.data(), fd).map(|h| rustix::io::read(h, &mut buf)) {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Err(errno_of(e)),
                None => return Err(EBADF),
            };
            write_bytes(c, ptr, &buf[..n])?;
            Ok(n as i32)
        }
        None => Err(EBADF),
    }
}

fn write(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32) -> R {
    match c.data().fds.get(&fd) {
        Some(GuestFd::Net(_)) => net_write(c, fd, ptr, len),
        Some(GuestFd::Store) => Err(EINVAL),
        Some(_) => {
            let data = read_bytes(c, ptr, len as usize)?;
            match host_fd(c.data(), fd).map(|h| rustix::io::write(h, &data)) {
                Some(Ok(n)) => Ok(n as i32),
                Some(Err(e)) => Err(errno_of(e)),
                None => Err(EBADF),
            }
        }
        None => Err(EBADF),
    }
}

fn ioctl(c: &mut Ctx<'_>, fd: i32, req: u32, arg: u32) -> R {
    match c.data().fds.get(&fd) {
        Some(GuestFd::Net(_)) => ioctl_lwnet(c, fd, req, arg),
        Some(GuestFd::Store) => ioctl_lwstore(c, req, arg),
        Some(_) if req == TCGETS => {
            let tty = host_fd(c.data(), fd).is_some_and(rustix::termios::isatty);
            if !tty {
                return Err(ENOTTY);
            }
            // struct termios (36 bytes); the tools only ask "is it a tty".
            write_bytes(c, arg, &[0u8; 36])?;
            Ok(0)
        }
        Some(_) => Err(ENOTTY),
        None => Err(EBADF),
    }
}

fn fcntl(c: &mut Ctx<'_>, fd: i32, cmd: i32, arg: u32) -> R {
    match (c.data_mut().fds.get_mut(&fd), cmd) {
        (None, _) => Err(EBADF),
        (Some(GuestFd::Net(n)), F_GETFL) => Ok(2 | if n.nonblock { O_NONBLOCK } else { 0 }),
        (Some(GuestFd::Net(n)), F_SETFL) => {
            n.nonblock = arg as i32 & O_NONBLOCK != 0;
            Ok(0)
        }
        (Some(_), F_GETFL) => Ok(2),
        (Some(_), F_SETFL | F_SETFD) => Ok(0),
        (Some(_), F_GETFD) => Ok(1),
        _ => Err(EINVAL),
    }
}

fn ppoll(c: &mut Ctx<'_>, ptr: u32, nfds: u32, tsp: u32) -> R {
    let timeout_ms = if tsp == 0 {
        -1
    } else {
        let t = read_bytes(c, tsp, 16)?;
        let sec = i64::from_le_bytes(t[0..8].try_into().unwrap_or_default());
        let nsec = i64::from_le_bytes(t[8..16].try_into().unwrap_or_default());
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(EINVAL);
        }
        (sec.saturating_mul(1000)
            .saturating_add((nsec + 999_999) / 1_000_000))
        .min(i64::from(i32::MAX)) as i32
    };
    do_poll(c, ptr, nfds, timeout_ms)
}

fn do_poll(c: &mut Ctx<'_>, ptr: u32, nfds: u32, timeout: i32) -> R {
    if nfds > 1024 {
        return Err(EINVAL);
    }
    let raw = read_bytes(c, ptr, nfds as usize * 8)?;
    let fds: Vec<(i32, i16)> = raw
        .chunks(8)
        .map(|b| {
            (
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                i16::from_le_bytes([b[4], b[5]]),
            )
        })
        .collect();
    let deadline = (timeout >= 0).then(|| Instant::now() + Duration::from_millis(timeout as u64));
    let worker = c.data().worker.clone();
    loop {
        let bell = worker.guest_doorbell();
        let mut revents = vec![0i16; fds.len()];
        let mut any_host = false;
        for (i, (fd, events)) in fds.iter().enumerate() {
            if *fd < 0 {
                continue;
            }
            let st = c.data();
            revents[i] = match st.fds.get(fd) {
                None => POLLNVAL,
                Some(GuestFd::Store) => (POLLIN | POLLOUT) & *events,
                Some(GuestFd::Net(n)) => match n.id {
                    None => POLLHUP,
                    Some(id) => net_revents(worker.net_poll(id), *events),
                },
                Some(_) => {
                    any_host = true;
                    let h = host_fd(st, *fd).ok_or(EBADF)?;
                    let mut pf = [rustix::event::PollFd::from_borrowed_fd(
                        h,
                        rustix::event::PollFlags::from_bits_truncate(*events as u16),
                    )];
                    let zero = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    match rustix::event::poll(&mut pf, Some(&zero)) {
                        Ok(_) => pf[0].revents().bits() as i16,
                        Err(e) => return Err(errno_of(e)),
                    }
                }
            };
        }
        let ready = revents.iter().filter(|r| **r != 0).count() as i32;
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if ready > 0 || expired || timeout == 0 {
            let mut out = raw.clone();
            for (i, r) in revents.iter().enumerate() {
                out[i * 8 + 6..i * 8 + 8].copy_from_slice(&r.to_le_bytes());
            }
            write_bytes(c, ptr, &out)?;
            return Ok(ready);
        }
        // Host fds have no doorbell: re-check them often.
        let step = if any_host {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        };
        let step = deadline.map_or(step, |d| step.min(d.saturating_duration_since(Instant::now())));
        wait_bell(&worker, bell, step);
    }
}

fn statx(c: &mut Ctx<'_>, dirfd: i32, path_ptr: u32, flags: u32, mask: u32, buf: u32) -> R {
    let p = cstr(c, path_ptr)?;
    let st = c.data();
    let mask = rustix::fs::StatxFlags::from_bits_retain(mask);
    let sx = if p.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(ENOENT);
        }
        if dirfd == AT_FDCWD {
            rustix::fs::statx(&st.root, "", AtFlags::EMPTY_PATH, mask)
        } else {
            let h = host_fd(st, dirfd).ok_or(EBADF)?;
            rustix::fs::statx(h, "", AtFlags::EMPTY_PATH, mask)
        }
    } else if flags & AT_SYMLINK_NOFOLLOW != 0 {
        let (dir, name) = parent_at(st, dirfd, &p)?;
        rustix::fs::statx(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW, mask)
    } else {
        let f = rustix::fs::openat2(
            base(st, dirfd, &p)?,
            full(&p).as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(errno_of)?;
        rustix::fs::statx(&f, "", AtFlags::EMPTY_PATH, mask)
    }
    .map_err(errno_of)?;
    // rustix's Statx is the kernel's struct statx, byte for byte.
    // SAFETY: plain data, viewed as its (at most 256) bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(&sx as *const _ as *const u8, std::mem::size_of_val(&sx).min(256))
    }
    .to_vec();
    write_bytes(c, buf, &bytes)?;
    Ok(0)
}

fn path_op(c: &mut Ctx<'_>, dirfd: i32, path_ptr: u32) -> std::result::Result<(OwnedFd, String), i32> {
    let p = cstr(c, path_ptr)?;
    parent_at(c.data(), dirfd, &p)
}

fn getdents64(c: &mut Ctx<'_>, fd: i32, buf: u32, len: u32) -> R {
    let st = c.data_mut();
    let f = match st.fds.get_mut(&fd) {
        Some(GuestFd::File(f)) => f,
        Some(_) => return Err(ENOTDIR),
        None => return Err(EBADF),
    };
    if f.dir.is_none() {
        let mut entries = Vec::new();
        for e in rustix::fs::Dir::read_from(&f.fd).map_err(errno_of)? {
            let e = e.map_err(errno_of)?;
            entries.push((e.file_name().to_bytes().to_vec(), e.file_type() as u8));
        }
        f.dir = Some((entries, 0));
    }
    let Some((entries, pos)) = f.dir.as_mut() else {
        return Err(EBADF);
    };
    // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name, NUL, 8-aligned.
    let mut out = Vec::new();
    while let Some((name, kind)) = entries.get(*pos) {
        let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
        if out.len() + reclen > len as usize {
            if out.is_empty() {
                return Err(EINVAL);
            }
            break;
        }
        let mut rec = vec![0u8; reclen];
        rec[0..8].copy_from_slice(&(*pos as u64 + 1).to_le_bytes());
        rec[8..16].copy_from_slice(&(*pos as i64 + 1).to_le_bytes());
        rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
        rec[18] = *kind;
        rec[19..19 + name.len()].copy_from_slice(name);
        out.extend(rec);
        *pos += 1;
    }
    write_bytes(c, buf, &out)?;
    Ok(out.len() as i32)
}

fn llseek(c: &mut Ctx<'_>, fd: i32, hi: u32, lo: u32, result: u32, whence: u32) -> R {
    use rustix::fs::SeekFrom;
    let off = ((u64::from(hi) << 32) | u64::from(lo)) as i64;
    let from = match whence {
        0 => SeekFrom::Start(off as u64),
        1 => SeekFrom::Current(off),
        2 => SeekFrom::End(off),
        3 => SeekFrom::Data(off as u64),
        4 => SeekFrom::Hole(off as u64),
        _ => return Err(EINVAL),
    };
    let pos = match c.data().fds.get(&fd) {
        Some(GuestFd::File(f)) => rustix::fs::seek(&f.fd, from).map_err(errno_of)?,
        Some(_) => return Err(ESPIPE),
        None => return Err(EBADF),
    };
    write_bytes(c, result, &pos.to_le_bytes())?;
    Ok(0)
}

fn file_fd(st: &State, fd: i32) -> std::result::Result<BorrowedFd<'_>, i32> {
    match st.fds.get(&fd) {
        Some(GuestFd::File(f)) => Ok(f.fd.as_fd()),
        Some(_) => Err(EINVAL),
        None => Err(EBADF),
    }
}

fn timespec_at(c: &mut Ctx<'_>, ptr: u32) -> std::result::Result<rustix::fs::Timespec, i32> {
    let t = read_bytes(c, ptr, 16)?;
    let sec = i64::from_le_bytes(t[0..8].try_into().unwrap_or_default());
    let nsec = i64::from_le_bytes(t[8..16].try_into().unwrap_or_default());
    Ok(rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    })
}

/// One system call: the result the kernel would return (`-errno` on
/// failure); Err only ends the program (exit, or a harness failure).
fn syscall(c: &mut Ctx<'_>, n: u32, a: [u32; 6]) -> Result<i32> {
    *c.data_mut().calls.entry(n).or_default() += 1;
    let s = |v: u32| v as i32;
    let r: R = match n as usize {
        nr::read => read(c, s(a[0]), a[1], a[2]),
        nr::write => write(c, s(a[0]), a[1], a[2]),
        nr::openat => openat(c, s(a[0]), a[1], s(a[2]), a[3]),
        nr::close => close(c, s(a[0])),
        nr::ioctl => ioctl(c, s(a[0]), a[1], a[2]),
        nr::fcntl64 => fcntl(c, s(a[0]), s(a[1]), a[2]),
        nr::ppoll_time64 => ppoll(c, a[0], a[1], a[2]),
        nr::fsync | nr::fdatasync => match host_fd(c.data(), s(a[0])) {
            Some(h) => rustix::fs::fsync(h).map(|()| 0).map_err(errno_of),
            None => Err(EINVAL),
        },
        nr::fchmod => match host_fd(c.data(), s(a[0])) {
            Some(h) => rustix::fs::fchmod(h, Mode::from_bits_truncate(a[1]))
                .map(|()| 0)
                .map_err(errno_of),
            None => Err(EINVAL),
        },
        nr::statx => statx(c, s(a[0]), a[1], a[2], a[3], a[4]),
        nr::mkdirat => path_op(c, s(a[0]), a[1]).and_then(|(d, name)| {
            rustix::fs::mkdirat(&d, name.as_str(), Mode::from_bits_truncate(a[2]))
                .map(|()| 0)
                .map_err(errno_of)
        }),
        nr::unlinkat => path_op(c, s(a[0]), a[1]).and_then(|(d, name)| {
            let fl = if a[2] & AT_REMOVEDIR != 0 {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            rustix::fs::unlinkat(&d, name.as_str(), fl)
                .map(|()| 0)
                .map_err(errno_of)
        }),
        nr::renameat2 => path_op(c, s(a[0]), a[1]).and_then(|(da, na)| {
            let (db, nb) = path_op(c, s(a[2]), a[3])?;
            let fl = rustix::fs::RenameFlags::from_bits(a[4]).ok_or(EINVAL)?;
            rustix::fs::renameat_with(&da, na.as_str(), &db, nb.as_str(), fl)
                .map(|()| 0)
                .map_err(errno_of)
        }),
        nr::symlinkat => cstr(c, a[0]).and_then(|target| {
            let (d, name) = path_op(c, s(a[1]), a[2])?;
            rustix::fs::symlinkat(target.as_str(), &d, name.as_str())
                .map(|()| 0)
                .map_err(errno_of)
        }),
        nr::readlinkat => path_op(c, s(a[0]), a[1]).and_then(|(d, name)| {
            let t = rustix::fs::readlinkat(&d, name.as_str(), Vec::new()).map_err(errno_of)?;
            let b = t.as_bytes();
            let len = b.len().min(a[3] as usize);
            write_bytes(c, a[2], &b[..len])?;
            Ok(len as i32)
        }),
        nr::fchmodat => path_op(c, s(a[0]), a[1]).and_then(|(d, name)| {
            // chmod follows links; one could point outside the root, so refuse.
            let sx = rustix::fs::statx(
                &d,
                name.as_str(),
                AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::TYPE,
            )
            .map_err(errno_of)?;
            if u32::from(sx.stx_mode) & 0o170000 == 0o120000 {
                return Err(EPERM);
            }
            rustix::fs::chmodat(
                &d,
                name.as_str(),
                Mode::from_bits_truncate(a[2]),
                AtFlags::empty(),
            )
            .map(|()| 0)
            .map_err(errno_of)
        }),
        nr::utimensat_time64 => (|| {
            if a[2] == 0 || a[3] & !AT_SYMLINK_NOFOLLOW != 0 {
                return Err(EINVAL);
            }
            let stamps = rustix::fs::Timestamps {
                last_access: timespec_at(c, a[2])?,
                last_modification: timespec_at(c, a[2] + 16)?,
            };
            let (d, name) = path_op(c, s(a[0]), a[1])?;
            let fl = if a[3] & AT_SYMLINK_NOFOLLOW != 0 {
                AtFlags::SYMLINK_NOFOLLOW
            } else {
                AtFlags::empty()
            };
            rustix::fs::utimensat(&d, name.as_str(), &stamps, fl)
                .map(|()| 0)
                .map_err(errno_of)
        })(),
        nr::getdents64 => getdents64(c, s(a[0]), a[1], a[2]),
        nr::llseek => llseek(c, s(a[0]), a[1], a[2], a[3], a[4]),
        nr::ftruncate64 => {
            // Upstream's sys_wasm32_ftruncate64: (fd, length_lo, length_hi).
            let len = (u64::from(a[2]) << 32) | u64::from(a[1]);
            file_fd(c.data(), s(a[0]))
                .and_then(|f| rustix::fs::ftruncate(f, len).map(|()| 0).map_err(errno_of))
        }
        // Devices: one process, nothing to exclude (the kernel allows flock on any file).
        nr::flock if matches!(c.data().fds.get(&s(a[0])), Some(GuestFd::Store | GuestFd::Net(_))) => Ok(0),
        nr::flock => file_fd(c.data(), s(a[0])).and_then(|f| {
            use rustix::fs::FlockOperation as F;
            let op = match a[1] {
                1 => F::LockShared,
                2 => F::LockExclusive,
                8 => F::Unlock,
                5 => F::NonBlockingLockShared,
                6 => F::NonBlockingLockExclusive,
                12 => F::NonBlockingUnlock,
                _ => return Err(EINVAL),
            };
            rustix::fs::flock(f, op).map(|()| 0).map_err(errno_of)
        }),
        nr::mmap2 => {
            // Anonymous memory only (the tools map no files); addr is a hint.
            if a[3] & MAP_ANONYMOUS == 0 || s(a[4]) != -1 || a[1] == 0 {
                Err(EINVAL)
            } else {
                let st = c.data_mut();
                let memory = st.memory.clone();
                st.mm.map(&memory, a[1], PAGE).map(|p| p as i32)
            }
        }
        nr::munmap => c.data_mut().mm.unmap(a[0], a[1]).map(|()| 0),
        nr::clock_gettime64 => {
            let d = match a[0] {
                0 => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
                1 => {
                    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
                    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
                }
                _ => return Ok(-EINVAL),
            };
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&(d.as_secs() as i64).to_le_bytes());
            b[8..16].copy_from_slice(&i64::from(d.subsec_nanos()).to_le_bytes());
            write_bytes(c, a[1], &b).map(|()| 0)
        }
        nr::clock_nanosleep_time64 => timespec_at(c, a[2]).and_then(|t| {
            if a[1] != 0 || t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
                return Err(EINVAL);
            }
            std::thread::sleep(Duration::new(t.tv_sec as u64, t.tv_nsec as u32));
            Ok(0)
        }),
        nr::getpid => Ok(std::process::id() as i32),
        nr::uname => {
            // struct new_utsname: six NUL-padded fields of 65 bytes.
            let mut u = vec![0u8; 6 * 65];
            for (i, f) in ["Linux", "guest-harness", "loader", "#1", "wasm32", "(none)"]
                .iter()
                .enumerate()
            {
                u[i * 65..i * 65 + f.len()].copy_from_slice(f.as_bytes());
            }
            write_bytes(c, a[0], &u).map(|()| 0)
        }
        nr::exit | nr::exit_group => return Err(wasmtime::Error::new(Exit(s(a[0]) & 0xff))),
        _ => {
            tracing::warn!("unimplemented syscall {n}");
            Err(ENOSYS)
        }
    };
    Ok(match r {
        Ok(v) => v,
        Err(e) => -e,
    })
}

/// Defines `env.__wasm_syscall_0..6`: `(stack_pointer, tls_base, nr,
/// args...) -> long`, as the runtime binds the kernel's `wasm_syscall_N`.
pub fn link_syscalls(linker: &mut Linker<State>) -> Result<()> {
    linker.func_wrap(
        "env",
        "__wasm_syscall_0",
        |mut c: Ctx<'_>, _sp: i32, _tls: i32, n: i32| syscall(&mut c, n as u32, [0; 6]),
    )?;
    linker.func_wrap(
        "env",
        "__wasm_syscall_1",
        |mut c: Ctx<'_>, _sp: i32, _tls: i32, n: i32, a: i32| {
            syscall(&mut c, n as u32, [a as u32, 0, 0, 0, 0, 0])
        },
    )?;
    linker.func_wrap(
        "env",
        "__wasm_syscall_2",
        |mut c: Ctx<'_>, _sp: i32, _tls: i32, n: i32, a: i32, b: i32| {
            syscall(&mut c, n as u32, [a as u32, b as u32, 0, 0, 0, 0])
        },
    )?;
    linker.func_wrap(
        "env",
        "__wasm_syscall_3",
        |mut c: Ctx<'_>, _sp: i32, _tls: i32, n: i32, a: i32, b: i32, d: i32| {
            syscall(&mut c, n as u32, [a as u32, b as u32, d as u32, 0, 0, 0])
        },
    )?;
    linker.func_wrap(
        "env",
        "__wasm_syscall_4",
        |mut c: Ctx<'_>, _sp: i32, _tls: i32, n: i32, a: i32, b: i32, d: i32, e: i32| {
            syscall(&mut c, n as u32, [a as u32, b as u32, d as u32, e as u32, 0, 0])
        },
    )?;
    linker.func_wrap(
        "env",
        "__wasm_syscall_5",
        |mut c: Ctx<'_>, _sp: i32, _tls: i32, n: i32, a: i32, b: i32, d: i32, e: i32, f: i32| {
            syscall(
                &mut c,
                n as u32,
                [a as u32, b as u32, d as u32, e as u32, f as u32, 0],
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "__wasm_syscall_6",
        |mut c: Ctx<'_>, _sp: i32, _tls: i32, n: i32, a: i32, b: i32, d: i32, e: i32, f: i32, g: i32| {
            syscall(
                &mut c,
                n as u32,
                [a as u32, b as u32, d as u32, e as u32, f as u32, g as u32],
            )
        },
    )?;
    Ok(())
}

/// The lwnet poll bits of the host as poll(2) revents for `events`.
fn net_revents(p: i32, events: i16) -> i16 {
    let mut r = 0;
    if p < 0 {
        return POLLERR;
    }
    if p & lwabi::LWHOST_POLL_IN as i32 != 0 {
        r |= POLLIN & events;
    }
    if p & lwabi::LWHOST_POLL_OUT as i32 != 0 {
        r |= POLLOUT & events;
    }
    if p & lwabi::LWHOST_POLL_HUP as i32 != 0 {
        r |= POLLHUP;
    }
    if p & lwabi::LWHOST_POLL_ERR as i32 != 0 {
        r |= POLLERR;
    }
    r
}
