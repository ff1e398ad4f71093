//! guest-harness: runs a wasm32 build of lwtcp, lwpkg or lwsync under
//! wasmtime. It plays the guest kernel for them: the libc functions they
//! import from "env" are implemented over a sandbox directory (the guest's
//! "/"), and `/dev/lwnet` and `/dev/lwstore` are served by the real host
//! shim (`lwhost::worker::Worker` over a shared region, `lwhost::main_side`
//! talking to a real lwproxy and store), with the blocking semantics the
//! kernel driver gives them. stdin/stdout/stderr are the harness's own.
//!
//! Guest ABI notes: wasm32 C variadics (`open`, `ioctl`, `fcntl`) pass a
//! pointer to the packed arguments; errno lives in guest memory at the
//! address the module's `__errno_location` export returns; argv and other
//! guest memory the harness creates come from the `lw_alloc` export.

use clap::Parser;
use lwabi::{lwnet_open_args, lwnet_open_ex, lwnet_status, lwstore_io, lwstore_list};
use lwhost::worker::{StoreRequest, Worker};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, SeekFrom};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::error::Context as _;
use wasmtime::{bail, Result};
use wasmtime::{Caller, Engine, Extern, Linker, Memory, Module, Store};

#[derive(Parser)]
#[command(
    name = "guest-harness",
    about = "Run a wasm32 lwnet guest tool under wasmtime with a real lwhost behind /dev/lwnet and /dev/lwstore"
)]
struct Cli {
    /// Directory that is the guest's "/" (paths cannot leave it, symlinks included).
    #[arg(long)]
    root: PathBuf,
    /// lwproxy WebSocket URL for /dev/lwnet.
    #[arg(long, default_value = "ws://127.0.0.1:9/")]
    proxy: String,
    /// Token for the proxy.
    #[arg(long)]
    token: Option<String>,
    /// The host store directory behind /dev/lwstore.
    #[arg(long)]
    store: PathBuf,
    /// Store quota in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    quota: u64,
    /// Guest environment variables (NAME=VALUE), repeatable.
    #[arg(long = "env")]
    env: Vec<String>,
    /// The wasm32 module (lwtcp.wasm, lwpkg.wasm, lwsync.wasm).
    module: PathBuf,
    /// Arguments for the tool (argv[1..]).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The guest called exit(code).
#[derive(Debug)]
struct Exit(i32);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit({})", self.0)
    }
}
impl std::error::Error for Exit {}

// Linux errno values the guest expects: the kernel's asm-generic numbering.
use lwabi::errno::{EAGAIN, EBADF, EBUSY, EFAULT, EINPROGRESS, EINVAL, ENOTCONN, ENOTTY, EPERM, ESPIPE};

const POLLIN: i16 = 0x1;
const POLLOUT: i16 = 0x4;
const POLLERR: i16 = 0x8;
const POLLHUP: i16 = 0x10;
const POLLNVAL: i16 = 0x20;

const O_NONBLOCK: i32 = 0o4000;
const F_GETFL: i32 = 3;
const F_SETFL: i32 = 4;

enum GuestFd {
    /// The harness's own stdin/stdout/stderr.
    Std(i32),
    File(OwnedFd),
    Net(NetFd),
    Store,
}

#[derive(Default)]
struct NetFd {
    id: Option<i32>,
    nonblock: bool,
    shut: bool,
    bytes_in: u64,
    bytes_out: u64,
}

struct DirStream {
    entries: Vec<(Vec<u8>, u8)>,
    pos: usize,
    /// Guest buffer for the struct dirent readdir returns.
    buf: u32,
}

struct State {
    root: OwnedFd,
    fds: HashMap<i32, GuestFd>,
    dirs: HashMap<u32, DirStream>,
    next_dir: u32,
    env: HashMap<String, String>,
    env_ptrs: HashMap<String, u32>,
    worker: Worker,
    errno_addr: u32,
    memory: Option<Memory>,
    alloc: Option<wasmtime::TypedFunc<u32, u32>>,
}

type Ctx<'a> = Caller<'a, State>;

fn mem<'a>(c: &'a mut Ctx<'_>) -> (&'a mut [u8], &'a mut State) {
    let m = c.data().memory.expect("memory is set before the guest runs");
    m.data_and_store_mut(c)
}

fn range(m: &[u8], ptr: u32, len: usize) -> std::result::Result<std::ops::Range<usize>, i32> {
    let start = ptr as usize;
    let end = start.checked_add(len).ok_or(EFAULT)?;
    if end > m.len() {
        return Err(EFAULT);
    }
    Ok(start..end)
}

fn read_bytes(c: &mut Ctx<'_>, ptr: u32, len: usize) -> std::result::Result<Vec<u8>, i32> {
    let (m, _) = mem(c);
    Ok(m[range(m, ptr, len)?].to_vec())
}

fn write_bytes(c: &mut Ctx<'_>, ptr: u32, data: &[u8]) -> std::result::Result<(), i32> {
    let (m, _) = mem(c);
    let r = range(m, ptr, data.len())?;
    m[r].copy_from_slice(data);
    Ok(())
}

fn read_u32(c: &mut Ctx<'_>, ptr: u32) -> std::result::Result<u32, i32> {
    let b = read_bytes(c, ptr, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn cstr(c: &mut Ctx<'_>, ptr: u32) -> std::result::Result<String, i32> {
    let (m, _) = mem(c);
    let start = ptr as usize;
    let tail = m.get(start..).ok_or(EFAULT)?;
    let n = tail.iter().take(4096).position(|&b| b == 0).ok_or(EFAULT)?;
    String::from_utf8(tail[..n].to_vec()).map_err(|_| EINVAL)
}

/// A plain-old-data uapi struct read from guest memory.
fn read_struct<T: Default + Copy>(c: &mut Ctx<'_>, ptr: u32) -> std::result::Result<T, i32> {
    let b = read_bytes(c, ptr, std::mem::size_of::<T>())?;
    // SAFETY: T is a bindgen uapi struct (integers and byte arrays only).
    Ok(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
}

fn write_struct<T: Copy>(c: &mut Ctx<'_>, ptr: u32, v: &T) -> std::result::Result<(), i32> {
    // SAFETY: T is plain data; we view its bytes.
    let b = unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) };
    write_bytes(c, ptr, b)
}

fn set_errno(c: &mut Ctx<'_>, e: i32) {
    let addr = c.data().errno_addr;
    let _ = write_bytes(c, addr, &e.to_le_bytes());
}

/// libc convention: the value, or -1 with errno.
fn ret(c: &mut Ctx<'_>, r: std::result::Result<i32, i32>) -> i32 {
    match r {
        Ok(v) => v,
        Err(e) => {
            set_errno(c, e);
            -1
        }
    }
}

fn errno_of(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}

/// Splits a guest path into (directory inside the root, last component),
/// resolving "." and ".." lexically so nothing names a place above "/".
fn split_path(path: &str) -> (String, String) {
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

fn full(path: &str) -> String {
    let (dir, name) = split_path(path);
    if name == "." {
        ".".into()
    } else if dir == "." {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// Opens the directory holding the path's last component, inside the root
/// (absolute symlinks resolve within it: RESOLVE_IN_ROOT).
fn parent_of(st: &State, path: &str) -> std::result::Result<(OwnedFd, String), i32> {
    let (dir, name) = split_path(path);
    let fd = rustix::fs::openat2(
        &st.root,
        dir.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno_of)?;
    Ok((fd, name))
}

fn wait_bell(w: &Worker, seen: u32, max: Duration) {
    w.wait_guest_doorbell(seen, max);
}

fn net_fd(st: &mut State, fd: i32) -> Option<&mut NetFd> {
    match st.fds.get_mut(&fd) {
        Some(GuestFd::Net(n)) => Some(n),
        _ => None,
    }
}

fn alloc_guest(c: &mut Ctx<'_>, size: u32) -> Result<u32> {
    let f = c.data().alloc.clone().context("module exports no lw_alloc")?;
    let p = f.call(&mut *c, size)?;
    if p == 0 {
        bail!("guest allocation of {size} bytes failed");
    }
    Ok(p)
}

// ---- /dev/lwnet -------------------------------------------------------------

fn lwnet_connect(
    c: &mut Ctx<'_>,
    fd: i32,
    host: &[u8],
    port: u32,
    flags: u32,
    timeout_ms: u32,
) -> std::result::Result<i32, i32> {
    let st = c.data_mut();
    let worker = st.worker.clone();
    let n = net_fd(st, fd).ok_or(EBADF)?;
    if n.id.is_some() {
        return Err(libc_eisconn());
    }
    let nonblock = n.nonblock;
    let id = worker.net_open(host, port, flags, timeout_ms);
    if id < 0 {
        return Err(-id);
    }
    if let Some(n) = net_fd(c.data_mut(), fd) {
        n.id = Some(id);
    }
    if nonblock {
        return Err(EINPROGRESS);
    }
    // The driver's blocking open: wait until the host says open or failed.
    loop {
        let bell = worker.guest_doorbell();
        let p = worker.net_poll(id);
        if p < 0 {
            return Err(-p);
        }
        if p & lwabi::LWHOST_POLL_ERR as i32 != 0 {
            worker.net_close(id);
            if let Some(n) = net_fd(c.data_mut(), fd) {
                n.id = None;
            }
            return Err(p >> lwabi::LWHOST_POLL_ERRNO_SHIFT);
        }
        if p != 0 {
            return Ok(id);
        }
        wait_bell(&worker, bell, Duration::from_millis(100));
    }
}

fn libc_eisconn() -> i32 {
    106
}

fn host_bytes(raw: &[std::ffi::c_char]) -> Vec<u8> {
    raw.iter().map(|&b| b as u8).take_while(|&b| b != 0).collect()
}

fn ioctl_lwnet(c: &mut Ctx<'_>, fd: i32, req: u32, arg: u32) -> std::result::Result<i32, i32> {
    match req {
        lwabi::LWNET_OPEN_EX => {
            let mut a: lwnet_open_ex = read_struct(c, arg)?;
            if a.flags & !lwabi::LWNET_OPEN_FLAGS_ALL != 0 || a.host[a.host.len() - 1] != 0 {
                return Err(EINVAL);
            }
            let id = lwnet_connect(c, fd, &host_bytes(&a.host), a.port, a.flags, a.timeout_ms)?;
            a.conn_id = id;
            write_struct(c, arg, &a)?;
            Ok(0)
        }
        lwabi::LWNET_OPEN => {
            let mut a: lwnet_open_args = read_struct(c, arg)?;
            if a.port <= 0 {
                return Err(EINVAL);
            }
            let id = lwnet_connect(c, fd, &host_bytes(&a.host), a.port as u32, 0, 0)?;
            a.connId = id;
            write_struct(c, arg, &a)?;
            Ok(0)
        }
        lwabi::LWNET_SHUTDOWN => {
            let st = c.data_mut();
            let worker = st.worker.clone();
            let n = net_fd(st, fd).ok_or(EBADF)?;
            let id = n.id.ok_or(ENOTCONN)?;
            let r = worker.net_shutdown(id);
            if r < 0 {
                return Err(-r);
            }
            n.shut = true;
            Ok(0)
        }
        lwabi::LWNET_CLOSE => {
            let st = c.data_mut();
            let worker = st.worker.clone();
            let n = net_fd(st, fd).ok_or(EBADF)?;
            if let Some(id) = n.id.take() {
                worker.net_close(id);
            }
            Ok(0)
        }
        lwabi::LWNET_STATUS => {
            let st = c.data_mut();
            let worker = st.worker.clone();
            let n = net_fd(st, fd).ok_or(EBADF)?;
            let mut s = lwnet_status {
                bytes_in: n.bytes_in,
                bytes_out: n.bytes_out,
                ..Default::default()
            };
            if n.shut {
                s.flags |= lwabi::LWNET_STATUS_WR_SHUT;
            }
            s.state = match n.id {
                None => lwabi::LWNET_STATE_IDLE,
                Some(id) => {
                    let p = worker.net_poll(id);
                    if p < 0 || p & lwabi::LWHOST_POLL_ERR as i32 != 0 {
                        s.error = if p < 0 {
                            -p
                        } else {
                            p >> lwabi::LWHOST_POLL_ERRNO_SHIFT
                        };
                        lwabi::LWNET_STATE_FAILED
                    } else if p == 0 {
                        lwabi::LWNET_STATE_CONNECTING
                    } else {
                        if p & lwabi::LWHOST_POLL_HUP as i32 != 0 {
                            s.flags |= lwabi::LWNET_STATUS_PEER_EOF;
                        }
                        lwabi::LWNET_STATE_CONNECTED
                    }
                }
            };
            write_struct(c, arg, &s)?;
            Ok(0)
        }
        _ => Err(ENOTTY),
    }
}

fn net_read(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32) -> std::result::Result<i32, i32> {
    let worker = c.data().worker.clone();
    let (id, nonblock) = {
        let n = net_fd(c.data_mut(), fd).ok_or(EBADF)?;
        (n.id.ok_or(ENOTCONN)?, n.nonblock)
    };
    let mut buf = vec![0u8; (len as usize).min(1 << 20)];
    loop {
        let bell = worker.guest_doorbell();
        let r = worker.net_read(id, &mut buf);
        if r == -EAGAIN && !nonblock {
            wait_bell(&worker, bell, Duration::from_millis(100));
            continue;
        }
        if r < 0 {
            return Err(-r);
        }
        write_bytes(c, ptr, &buf[..r as usize])?;
        if let Some(n) = net_fd(c.data_mut(), fd) {
            n.bytes_in += r as u64;
        }
        return Ok(r);
    }
}

fn net_write(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32) -> std::result::Result<i32, i32> {
    let worker = c.data().worker.clone();
    let (id, nonblock) = {
        let n = net_fd(c.data_mut(), fd).ok_or(EBADF)?;
        (n.id.ok_or(ENOTCONN)?, n.nonblock)
    };
    let data = read_bytes(c, ptr, len as usize)?;
    let mut done = 0usize;
    while done < data.len() {
        let bell = worker.guest_doorbell();
        let r = worker.net_write(id, &data[done..]);
        if r == -EAGAIN {
            if nonblock {
                break;
            }
            wait_bell(&worker, bell, Duration::from_millis(100));
            continue;
        }
        if r < 0 {
            if done > 0 {
                break;
            }
            return Err(-r);
        }
        done += r as usize;
        if nonblock {
            break;
        }
    }
    if done == 0 && !data.is_empty() {
        return Err(EAGAIN);
    }
    if let Some(n) = net_fd(c.data_mut(), fd) {
        n.bytes_out += done as u64;
    }
    Ok(done as i32)
}

// ---- /dev/lwstore -----------------------------------------------------------

fn store_call(worker: &Worker, req: &StoreRequest<'_>, out: &mut [u8]) -> i32 {
    let ticket = loop {
        let bell = worker.guest_doorbell();
        let t = worker.store_submit(req);
        if t == -EBUSY {
            wait_bell(worker, bell, Duration::from_millis(50));
            continue;
        }
        break t;
    };
    if ticket < 0 {
        return ticket;
    }
    loop {
        let bell = worker.guest_doorbell();
        let r = worker.store_poll(ticket, out);
        if r != -EINPROGRESS {
            return r;
        }
        wait_bell(worker, bell, Duration::from_millis(50));
    }
}

fn ioctl_lwstore(c: &mut Ctx<'_>, req: u32, arg: u32) -> std::result::Result<i32, i32> {
    let worker = c.data().worker.clone();
    if req == lwabi::LWSTORE_LIST {
        let l: lwstore_list = read_struct(c, arg)?;
        if l.reserved != 0
            || l.len == 0
            || l.len > lwabi::LWSTORE_CHUNK_MAX
            || l.prefix_len > lwabi::LWSTORE_KEY_MAX
            || l.after_len > lwabi::LWSTORE_KEY_MAX
        {
            return Err(EINVAL);
        }
        let prefix = read_bytes(c, l.prefix as u32, l.prefix_len as usize)?;
        let after = read_bytes(c, l.after as u32, l.after_len as usize)?;
        let mut out = vec![0u8; l.len as usize];
        let r = store_call(
            &worker,
            &StoreRequest {
                op: lwabi::LWHOST_STORE_LIST,
                key: &prefix,
                after: &after,
                capacity: l.len,
                ..Default::default()
            },
            &mut out,
        );
        if r < 0 {
            return Err(-r);
        }
        write_bytes(c, l.buf as u32, &out[..r as usize])?;
        return Ok(r);
    }
    let mut io: lwstore_io = read_struct(c, arg)?;
    if io.reserved != 0
        || io.key_len == 0
        || io.key_len > lwabi::LWSTORE_KEY_MAX
        || io.len > lwabi::LWSTORE_CHUNK_MAX
    {
        return Err(EINVAL);
    }
    let key = read_bytes(c, io.key as u32, io.key_len as usize)?;
    match req {
        lwabi::LWSTORE_WRITE => {
            if io.flags & !lwabi::LWSTORE_WRITE_FLAGS_ALL != 0 {
                return Err(EINVAL);
            }
            let data = read_bytes(c, io.buf as u32, io.len as usize)?;
            let r = store_call(
                &worker,
                &StoreRequest {
                    op: lwabi::LWHOST_STORE_WRITE,
                    flags: io.flags,
                    key: &key,
                    offset: io.offset,
                    data: &data,
                    ..Default::default()
                },
                &mut [],
            );
            if r < 0 {
                Err(-r)
            } else {
                Ok(r)
            }
        }
        lwabi::LWSTORE_READ => {
            let mut out = vec![0u8; io.len as usize];
            let r = store_call(
                &worker,
                &StoreRequest {
                    op: lwabi::LWHOST_STORE_READ,
                    key: &key,
                    offset: io.offset,
                    capacity: io.len,
                    ..Default::default()
                },
                &mut out,
            );
            if r < 0 {
                return Err(-r);
            }
            write_bytes(c, io.buf as u32, &out[..r as usize])?;
            Ok(r)
        }
        lwabi::LWSTORE_STAT => {
            let mut out = [0u8; 8];
            let r = store_call(
                &worker,
                &StoreRequest {
                    op: lwabi::LWHOST_STORE_STAT,
                    key: &key,
                    capacity: 8,
                    ..Default::default()
                },
                &mut out,
            );
            if r < 0 {
                return Err(-r);
            }
            io.size = u64::from_le_bytes(out);
            write_struct(c, arg, &io)?;
            Ok(0)
        }
        lwabi::LWSTORE_DELETE => {
            let r = store_call(
                &worker,
                &StoreRequest {
                    op: lwabi::LWHOST_STORE_DELETE,
                    key: &key,
                    ..Default::default()
                },
                &mut [],
            );
            if r < 0 {
                Err(-r)
            } else {
                Ok(r)
            }
        }
        _ => Err(ENOTTY),
    }
}

// ---- files ------------------------------------------------------------------

fn host_fd(st: &State, fd: i32) -> Option<BorrowedFd<'_>> {
    match st.fds.get(&fd) {
        // SAFETY: 0-2 stay open for the life of the process.
        Some(GuestFd::Std(h)) => Some(unsafe { BorrowedFd::borrow_raw(*h) }),
        Some(GuestFd::File(f)) => Some(f.as_fd()),
        _ => None,
    }
}

fn lowest_free_fd(st: &State) -> i32 {
    (3..).find(|n| !st.fds.contains_key(n)).unwrap_or(3)
}

fn do_open(c: &mut Ctx<'_>, path_ptr: u32, flags: i32, va: u32) -> std::result::Result<i32, i32> {
    let path = cstr(c, path_ptr)?;
    let mode = if flags & 0o100 != 0 { read_u32(c, va)? } else { 0 };
    let dev = full(&path);
    let entry = match dev.as_str() {
        "dev/lwnet" => GuestFd::Net(NetFd {
            nonblock: flags & O_NONBLOCK != 0,
            ..Default::default()
        }),
        "dev/lwstore" => GuestFd::Store,
        _ => {
            let st = c.data();
            let f = rustix::fs::openat2(
                &st.root,
                dev.as_str(),
                OFlags::from_bits_retain(flags as u32) | OFlags::CLOEXEC,
                Mode::from_bits_truncate(mode),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(errno_of)?;
            GuestFd::File(f)
        }
    };
    let st = c.data_mut();
    let n = lowest_free_fd(st);
    st.fds.insert(n, entry);
    Ok(n)
}

fn do_poll(c: &mut Ctx<'_>, ptr: u32, nfds: u32, timeout: i32) -> std::result::Result<i32, i32> {
    if nfds > 1024 {
        return Err(EINVAL);
    }
    let raw = read_bytes(c, ptr, nfds as usize * 8)?;
    let mut fds: Vec<(i32, i16)> = raw
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
        for (i, (fd, events)) in fds.iter_mut().enumerate() {
            if *fd < 0 {
                continue;
            }
            let st = c.data();
            revents[i] = match st.fds.get(fd) {
                None => POLLNVAL,
                Some(GuestFd::Store) => (POLLIN | POLLOUT) & *events,
                Some(GuestFd::Net(n)) => match n.id {
                    None => POLLHUP,
                    Some(id) => {
                        let p = worker.net_poll(id);
                        let mut r = 0;
                        if p < 0 {
                            r |= POLLERR;
                        } else {
                            if p & lwabi::LWHOST_POLL_IN as i32 != 0 {
                                r |= POLLIN & *events;
                            }
                            if p & lwabi::LWHOST_POLL_OUT as i32 != 0 {
                                r |= POLLOUT & *events;
                            }
                            if p & lwabi::LWHOST_POLL_HUP as i32 != 0 {
                                r |= POLLHUP;
                            }
                            if p & lwabi::LWHOST_POLL_ERR as i32 != 0 {
                                r |= POLLERR;
                            }
                        }
                        r
                    }
                },
                Some(_) => {
                    any_host = true;
                    let h = host_fd(st, *fd).ok_or(EBADF)?;
                    let mut pf = [rustix::event::PollFd::from_borrowed_fd(
                        h,
                        rustix::event::PollFlags::from_bits_truncate(*events as u16),
                    )];
                    match rustix::event::poll(
                        &mut pf,
                        Some(&rustix::event::Timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        }),
                    ) {
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

fn do_ioctl(c: &mut Ctx<'_>, fd: i32, req: u32, va: u32) -> std::result::Result<i32, i32> {
    // No variadic argument (LWNET_SHUTDOWN) reads as 0, never used.
    let arg = read_u32(c, va).unwrap_or(0);
    match c.data().fds.get(&fd) {
        Some(GuestFd::Net(_)) => ioctl_lwnet(c, fd, req, arg),
        Some(GuestFd::Store) => ioctl_lwstore(c, req, arg),
        Some(_) => Err(ENOTTY),
        None => Err(EBADF),
    }
}

fn do_fcntl(c: &mut Ctx<'_>, fd: i32, cmd: i32, va: u32) -> std::result::Result<i32, i32> {
    let arg = read_u32(c, va).unwrap_or(0) as i32;
    match (c.data_mut().fds.get_mut(&fd), cmd) {
        (None, _) => Err(EBADF),
        (Some(GuestFd::Net(n)), F_GETFL) => Ok(2 | if n.nonblock { O_NONBLOCK } else { 0 }),
        (Some(GuestFd::Net(n)), F_SETFL) => {
            n.nonblock = arg & O_NONBLOCK != 0;
            Ok(0)
        }
        (Some(_), F_GETFL) => Ok(2),
        (Some(_), F_SETFL) => Ok(0),
        _ => Err(EINVAL),
    }
}

fn link_funcs(linker: &mut Linker<State>) -> Result<()> {
    linker.func_wrap("env", "exit", |_c: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Exit(code)))
    })?;
    linker.func_wrap("env", "open", |mut c: Ctx<'_>, path: u32, flags: i32, va: u32| {
        let r = do_open(&mut c, path, flags, va);
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "close", |mut c: Ctx<'_>, fd: i32| {
        let st = c.data_mut();
        let worker = st.worker.clone();
        let r = match st.fds.remove(&fd) {
            None => Err(EBADF),
            Some(GuestFd::Net(n)) => {
                if let Some(id) = n.id {
                    worker.net_close(id);
                }
                Ok(0)
            }
            Some(GuestFd::Std(h)) => {
                // Keep the harness's own descriptor open; the guest forgets it.
                let _ = h;
                Ok(0)
            }
            Some(_) => Ok(0),
        };
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "read", |mut c: Ctx<'_>, fd: i32, ptr: u32, len: u32| {
        let r = match c.data().fds.get(&fd) {
            Some(GuestFd::Net(_)) => net_read(&mut c, fd, ptr, len),
            Some(GuestFd::Store) => Err(EINVAL),
            Some(_) => {
                let mut buf = vec![0u8; (len as usize).min(1 << 20)];
                let res = host_fd(c.data(), fd).map(|h| rustix::io::read(h, &mut buf));
                match res {
                    Some(Ok(n)) => write_bytes(&mut c, ptr, &buf[..n]).map(|()| n as i32),
                    Some(Err(e)) => Err(errno_of(e)),
                    None => Err(EBADF),
                }
            }
            None => Err(EBADF),
        };
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "write", |mut c: Ctx<'_>, fd: i32, ptr: u32, len: u32| {
        let r = match c.data().fds.get(&fd) {
            Some(GuestFd::Net(_)) => net_write(&mut c, fd, ptr, len),
            Some(GuestFd::Store) => Err(EINVAL),
            Some(_) => match read_bytes(&mut c, ptr, len as usize) {
                Ok(data) => match host_fd(c.data(), fd).map(|h| rustix::io::write(h, &data)) {
                    Some(Ok(n)) => Ok(n as i32),
                    Some(Err(e)) => Err(errno_of(e)),
                    None => Err(EBADF),
                },
                Err(e) => Err(e),
            },
            None => Err(EBADF),
        };
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "ioctl", |mut c: Ctx<'_>, fd: i32, req: u32, va: u32| {
        let r = do_ioctl(&mut c, fd, req, va);
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "fcntl", |mut c: Ctx<'_>, fd: i32, cmd: i32, va: u32| {
        let r = do_fcntl(&mut c, fd, cmd, va);
        ret(&mut c, r)
    })?;
    linker.func_wrap(
        "env",
        "poll",
        |mut c: Ctx<'_>, ptr: u32, nfds: u32, timeout: i32| {
            let r = do_poll(&mut c, ptr, nfds, timeout);
            ret(&mut c, r)
        },
    )?;
    linker.func_wrap("env", "fsync", |mut c: Ctx<'_>, fd: i32| {
        let r = match host_fd(c.data(), fd) {
            Some(h) => rustix::fs::fsync(h).map(|()| 0).map_err(errno_of),
            None => Err(EINVAL),
        };
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "fchmod", |mut c: Ctx<'_>, fd: i32, mode: u32| {
        let r = match host_fd(c.data(), fd) {
            Some(h) => rustix::fs::fchmod(h, Mode::from_bits_truncate(mode))
                .map(|()| 0)
                .map_err(errno_of),
            None => Err(EINVAL),
        };
        ret(&mut c, r)
    })?;
    // lwsync: holes in restored files (lseek, ftruncate) and its store lock
    // (flock). The harness runs one guest process, so the lock on the store
    // device always succeeds (guests sharing a store are kept apart by the host).
    linker.func_wrap(
        "env",
        "lseek",
        |mut c: Ctx<'_>, fd: i32, off: i64, whence: i32| -> i64 {
            let pos = match whence {
                0 => u64::try_from(off).map(SeekFrom::Start).map_err(|_| EINVAL),
                1 => Ok(SeekFrom::Current(off)),
                2 => Ok(SeekFrom::End(off)),
                _ => Err(EINVAL),
            };
            let r = pos.and_then(|pos| match host_fd(c.data(), fd) {
                Some(h) => rustix::fs::seek(h, pos).map_err(errno_of),
                None => Err(ESPIPE),
            });
            match r {
                Ok(p) => p as i64,
                Err(e) => {
                    set_errno(&mut c, e);
                    -1
                }
            }
        },
    )?;
    linker.func_wrap("env", "ftruncate", |mut c: Ctx<'_>, fd: i32, len: i64| {
        let r = match (host_fd(c.data(), fd), u64::try_from(len)) {
            (Some(h), Ok(len)) => rustix::fs::ftruncate(h, len).map(|()| 0).map_err(errno_of),
            (None, _) => Err(EINVAL),
            (_, Err(_)) => Err(EINVAL),
        };
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "flock", |mut c: Ctx<'_>, fd: i32, _op: i32| {
        let r = match c.data().fds.get(&fd) {
            Some(_) => Ok(0),
            None => Err(EBADF),
        };
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "isatty", |mut c: Ctx<'_>, fd: i32| {
        match host_fd(c.data(), fd) {
            Some(h) if rustix::termios::isatty(h) => 1,
            _ => {
                set_errno(&mut c, ENOTTY);
                0
            }
        }
    })?;
    linker.func_wrap(
        "env",
        "statx",
        |mut c: Ctx<'_>, dirfd: i32, path: u32, flags: i32, mask: u32, buf: u32| {
            let r = (|| {
                if dirfd != -100 {
                    return Err(EINVAL);
                }
                let p = cstr(&mut c, path)?;
                let st = c.data();
                let nofollow = flags & 0x100 != 0;
                let sx = if nofollow {
                    let (dir, name) = parent_of(st, &p)?;
                    rustix::fs::statx(
                        &dir,
                        name.as_str(),
                        AtFlags::SYMLINK_NOFOLLOW,
                        rustix::fs::StatxFlags::from_bits_retain(mask),
                    )
                } else {
                    let f = rustix::fs::openat2(
                        &st.root,
                        full(&p).as_str(),
                        OFlags::PATH | OFlags::CLOEXEC,
                        Mode::empty(),
                        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                    )
                    .map_err(errno_of)?;
                    rustix::fs::statx(
                        &f,
                        "",
                        AtFlags::EMPTY_PATH,
                        rustix::fs::StatxFlags::from_bits_retain(mask),
                    )
                }
                .map_err(errno_of)?;
                // rustix's Statx is the kernel's struct statx, byte for byte.
                // SAFETY: plain data, viewed as its 256 bytes.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        &sx as *const _ as *const u8,
                        std::mem::size_of_val(&sx).min(256),
                    )
                }
                .to_vec();
                write_bytes(&mut c, buf, &bytes)?;
                Ok(0)
            })();
            ret(&mut c, r)
        },
    )?;
    linker.func_wrap("env", "mkdir", |mut c: Ctx<'_>, path: u32, mode: u32| {
        let r = (|| {
            let p = cstr(&mut c, path)?;
            let (dir, name) = parent_of(c.data(), &p)?;
            rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(mode))
                .map(|()| 0)
                .map_err(errno_of)
        })();
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "rmdir", |mut c: Ctx<'_>, path: u32| {
        let r = (|| {
            let p = cstr(&mut c, path)?;
            let (dir, name) = parent_of(c.data(), &p)?;
            rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::REMOVEDIR)
                .map(|()| 0)
                .map_err(errno_of)
        })();
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "unlink", |mut c: Ctx<'_>, path: u32| {
        let r = (|| {
            let p = cstr(&mut c, path)?;
            let (dir, name) = parent_of(c.data(), &p)?;
            rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty())
                .map(|()| 0)
                .map_err(errno_of)
        })();
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "rename", |mut c: Ctx<'_>, from: u32, to: u32| {
        let r = (|| {
            let a = cstr(&mut c, from)?;
            let b = cstr(&mut c, to)?;
            let (da, na) = parent_of(c.data(), &a)?;
            let (db, nb) = parent_of(c.data(), &b)?;
            rustix::fs::renameat(&da, na.as_str(), &db, nb.as_str())
                .map(|()| 0)
                .map_err(errno_of)
        })();
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "symlink", |mut c: Ctx<'_>, target: u32, path: u32| {
        let r = (|| {
            let t = cstr(&mut c, target)?;
            let p = cstr(&mut c, path)?;
            let (dir, name) = parent_of(c.data(), &p)?;
            rustix::fs::symlinkat(t.as_str(), &dir, name.as_str())
                .map(|()| 0)
                .map_err(errno_of)
        })();
        ret(&mut c, r)
    })?;
    linker.func_wrap(
        "env",
        "readlink",
        |mut c: Ctx<'_>, path: u32, buf: u32, len: u32| {
            let r = (|| {
                let p = cstr(&mut c, path)?;
                let (dir, name) = parent_of(c.data(), &p)?;
                let t = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new()).map_err(errno_of)?;
                let b = t.as_bytes();
                let n = b.len().min(len as usize);
                write_bytes(&mut c, buf, &b[..n])?;
                Ok(n as i32)
            })();
            ret(&mut c, r)
        },
    )?;
    linker.func_wrap("env", "chmod", |mut c: Ctx<'_>, path: u32, mode: u32| {
        let r = (|| {
            let p = cstr(&mut c, path)?;
            let (dir, name) = parent_of(c.data(), &p)?;
            // chmod follows links; a link could point outside the root, so refuse.
            let sx = rustix::fs::statx(
                &dir,
                name.as_str(),
                AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::TYPE,
            )
            .map_err(errno_of)?;
            if u32::from(sx.stx_mode) & 0o170000 == 0o120000 {
                return Err(EPERM);
            }
            rustix::fs::chmodat(
                &dir,
                name.as_str(),
                Mode::from_bits_truncate(mode),
                AtFlags::empty(),
            )
            .map(|()| 0)
            .map_err(errno_of)
        })();
        ret(&mut c, r)
    })?;
    linker.func_wrap(
        "env",
        "utimensat",
        |mut c: Ctx<'_>, dirfd: i32, path: u32, times: u32, flags: i32| {
            let r = (|| {
                if dirfd != -100 || flags & 0x100 == 0 {
                    return Err(EINVAL);
                }
                let p = cstr(&mut c, path)?;
                let t = read_bytes(&mut c, times, 32)?;
                let ts = |o: usize| rustix::fs::Timespec {
                    tv_sec: i64::from_le_bytes(t[o..o + 8].try_into().unwrap_or_default()),
                    tv_nsec: i32::from_le_bytes(t[o + 8..o + 12].try_into().unwrap_or_default()).into(),
                };
                let stamps = rustix::fs::Timestamps {
                    last_access: ts(0),
                    last_modification: ts(16),
                };
                let (dir, name) = parent_of(c.data(), &p)?;
                rustix::fs::utimensat(&dir, name.as_str(), &stamps, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|()| 0)
                    .map_err(errno_of)
            })();
            ret(&mut c, r)
        },
    )?;
    linker.func_wrap(
        "env",
        "opendir",
        |mut c: Ctx<'_>, path: u32| -> wasmtime::Result<u32> {
            let r = (|| {
                let p = cstr(&mut c, path)?;
                let st = c.data();
                let fd = rustix::fs::openat2(
                    &st.root,
                    full(&p).as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(errno_of)?;
                let mut entries = Vec::new();
                for e in rustix::fs::Dir::read_from(&fd).map_err(errno_of)? {
                    let e = e.map_err(errno_of)?;
                    entries.push((e.file_name().to_bytes().to_vec(), e.file_type() as u8));
                }
                Ok(entries)
            })();
            match r {
                Ok(entries) => {
                    let buf = alloc_guest(&mut c, 280)?;
                    let st = c.data_mut();
                    st.next_dir += 1;
                    let handle = st.next_dir;
                    st.dirs.insert(handle, DirStream { entries, pos: 0, buf });
                    Ok(handle)
                }
                Err(e) => {
                    set_errno(&mut c, e);
                    Ok(0)
                }
            }
        },
    )?;
    linker.func_wrap("env", "readdir", |mut c: Ctx<'_>, dir: u32| -> u32 {
        let Some(d) = c.data_mut().dirs.get_mut(&dir) else {
            set_errno(&mut c, EBADF);
            return 0;
        };
        let Some((name, kind)) = d.entries.get(d.pos).cloned() else {
            return 0;
        };
        d.pos += 1;
        let buf = d.buf;
        // struct dirent: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name[256].
        let mut ent = vec![0u8; 280];
        ent[0..8].copy_from_slice(&1u64.to_le_bytes());
        ent[8..16].copy_from_slice(&(d.pos as i64).to_le_bytes());
        ent[16..18].copy_from_slice(&280u16.to_le_bytes());
        ent[18] = kind;
        let n = name.len().min(255);
        ent[19..19 + n].copy_from_slice(&name[..n]);
        match write_bytes(&mut c, buf, &ent) {
            Ok(()) => buf,
            Err(e) => {
                set_errno(&mut c, e);
                0
            }
        }
    })?;
    linker.func_wrap("env", "closedir", |mut c: Ctx<'_>, dir: u32| {
        if c.data_mut().dirs.remove(&dir).is_some() {
            0
        } else {
            set_errno(&mut c, EBADF);
            -1
        }
    })?;
    linker.func_wrap("env", "clock_gettime", |mut c: Ctx<'_>, clock: i32, ts: u32| {
        let d = if clock == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        } else {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
        };
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&(d.as_secs() as i64).to_le_bytes());
        b[8..12].copy_from_slice(&(d.subsec_nanos() as i32).to_le_bytes());
        let r = write_bytes(&mut c, ts, &b).map(|()| 0);
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "nanosleep", |mut c: Ctx<'_>, req: u32, _rem: u32| {
        let r = read_bytes(&mut c, req, 16).map(|b| {
            let s = i64::from_le_bytes(b[0..8].try_into().unwrap_or_default()).max(0) as u64;
            let ns = i32::from_le_bytes(b[8..12].try_into().unwrap_or_default()).clamp(0, 999_999_999) as u32;
            std::thread::sleep(Duration::new(s, ns));
            0
        });
        ret(&mut c, r)
    })?;
    linker.func_wrap("env", "getpid", |_c: Ctx<'_>| std::process::id() as i32)?;
    linker.func_wrap(
        "env",
        "getenv",
        |mut c: Ctx<'_>, name: u32| -> wasmtime::Result<u32> {
            let Ok(n) = cstr(&mut c, name) else { return Ok(0) };
            if let Some(p) = c.data().env_ptrs.get(&n) {
                return Ok(*p);
            }
            let Some(v) = c.data().env.get(&n).cloned() else {
                return Ok(0);
            };
            let p = alloc_guest(&mut c, v.len() as u32 + 1)?;
            let mut b = v.into_bytes();
            b.push(0);
            write_bytes(&mut c, p, &b).map_err(|e| wasmtime::Error::msg(format!("getenv: errno {e}")))?;
            c.data_mut().env_ptrs.insert(n, p);
            Ok(p)
        },
    )?;
    Ok(())
}

fn run(cli: Cli) -> Result<i32> {
    std::fs::create_dir_all(&cli.root).with_context(|| format!("creating {}", cli.root.display()))?;
    std::fs::create_dir_all(&cli.store).with_context(|| format!("creating {}", cli.store.display()))?;
    let root = rustix::fs::open(
        &cli.root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", cli.root.display()))?;

    // The host shim: a shared region, its main side on a tokio runtime
    // (talking to lwproxy and the store), its worker side called below.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let region = Arc::new(lwhost::shm::Region::new_memfd().context("creating the shared region")?);
    let cfg = lwhost::main_side::MainConfig {
        proxy_url: cli.proxy.clone(),
        token: cli.token.clone(),
        store_dir: cli.store.clone(),
        store_quota: cli.quota,
        extra_ca: Vec::new(),
    };
    let main_side = {
        let _guard = runtime.enter();
        lwhost::main_side::spawn(region.clone(), cfg)
            .map_err(|e| wasmtime::Error::msg(format!("starting the lwhost main side: {e:#}")))?
    };
    let worker = Worker::new(region);

    let engine = Engine::default();
    let module = Module::from_file(&engine, &cli.module)
        .with_context(|| format!("loading {}", cli.module.display()))?;
    let mut env = HashMap::new();
    for kv in &cli.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected NAME=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let mut fds = HashMap::new();
    for i in 0..3 {
        fds.insert(i, GuestFd::Std(i));
    }
    let state = State {
        root,
        fds,
        dirs: HashMap::new(),
        next_dir: 0,
        env,
        env_ptrs: HashMap::new(),
        worker,
        errno_addr: 0,
        memory: None,
        alloc: None,
    };
    let mut store = Store::new(&engine, state);
    let mut linker = Linker::new(&engine);
    link_funcs(&mut linker)?;
    let instance = linker
        .instantiate(&mut store, &module)
        .context("instantiating the module")?;
    let memory = match instance.get_export(&mut store, "memory") {
        Some(Extern::Memory(m)) => m,
        _ => bail!("the module exports no memory"),
    };
    store.data_mut().memory = Some(memory);
    let alloc = instance
        .get_typed_func::<u32, u32>(&mut store, "lw_alloc")
        .context("the module exports no lw_alloc")?;
    store.data_mut().alloc = Some(alloc.clone());
    let errno_loc = instance.get_typed_func::<(), u32>(&mut store, "__errno_location")?;
    store.data_mut().errno_addr = errno_loc.call(&mut store, ())?;

    // argv in guest memory.
    let name = cli
        .module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv_strings: Vec<String> = std::iter::once(name).chain(cli.args.iter().cloned()).collect();
    let mut ptrs = Vec::new();
    for a in &argv_strings {
        let p = alloc.call(&mut store, a.len() as u32 + 1)?;
        let mut b = a.clone().into_bytes();
        b.push(0);
        memory.write(&mut store, p as usize, &b)?;
        ptrs.push(p);
    }
    ptrs.push(0);
    let argv = alloc.call(&mut store, ptrs.len() as u32 * 4)?;
    let bytes: Vec<u8> = ptrs.iter().flat_map(|p| p.to_le_bytes()).collect();
    memory.write(&mut store, argv as usize, &bytes)?;

    let main = instance.get_typed_func::<(i32, u32), i32>(&mut store, "main")?;
    let code = match main.call(&mut store, (argv_strings.len() as i32, argv)) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(exit) => exit.0,
            None => return Err(e.context("the guest trapped")),
        },
    };
    // Close what the guest left open (the kernel would), then stop the host.
    let worker = store.data().worker.clone();
    for (_, f) in store.data_mut().fds.drain() {
        if let GuestFd::Net(NetFd { id: Some(id), .. }) = f {
            worker.net_close(id);
        }
    }
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), main_side.shutdown()).await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(code)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LW_LOG").unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("guest-harness: {}", chain.join(": "));
            std::process::exit(125);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_stay_inside_the_root() {
        assert_eq!(split_path("/a/b/c"), ("a/b".into(), "c".into()));
        assert_eq!(split_path("/../../etc/passwd"), ("etc".into(), "passwd".into()));
        assert_eq!(split_path("/"), (".".into(), ".".into()));
        assert_eq!(full("/dev/./lwnet"), "dev/lwnet");
        assert_eq!(full("x/../../y"), "y");
    }
}
