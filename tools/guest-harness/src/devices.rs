//! `/dev/lwnet` and `/dev/lwstore` as the kernel driver presents them
//! (blocking unless O_NONBLOCK, ioctl argument checks), served by the real
//! host shim: `lwhost::worker::Worker` over the shared region, whose main
//! side talks to a real lwproxy and store.

use super::*;

pub(crate) fn wait_bell(w: &Worker, seen: u32, max: Duration) {
    w.wait_guest_doorbell(seen, max);
}

pub(crate) fn net_fd(st: &mut State, fd: i32) -> Option<&mut NetFd> {
    match st.fds.get_mut(&fd) {
        Some(GuestFd::Net(n)) => Some(n),
        _ => None,
    }
}

// ---- /dev/lwnet -------------------------------------------------------------

pub(crate) fn lwnet_connect(
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
        return Err(EISCONN);
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

pub(crate) fn host_bytes(raw: &[std::ffi::c_char]) -> Vec<u8> {
    raw.iter().map(|&b| b as u8).take_while(|&b| b != 0).collect()
}

pub(crate) fn ioctl_lwnet(c: &mut Ctx<'_>, fd: i32, req: u32, arg: u32) -> std::result::Result<i32, i32> {
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

pub(crate) fn net_read(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32) -> std::result::Result<i32, i32> {
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

pub(crate) fn net_write(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32) -> std::result::Result<i32, i32> {
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

/// Runs a store request to completion (retrying while the host's slots are
/// busy, then polling): the host's result (bytes or 0), or the errno.
pub(crate) fn store_call(
    worker: &Worker,
    req: &StoreRequest<'_>,
    out: &mut [u8],
) -> std::result::Result<i32, i32> {
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
        return Err(-ticket);
    }
    loop {
        let bell = worker.guest_doorbell();
        let r = worker.store_poll(ticket, out);
        if r != -EINPROGRESS {
            return if r < 0 { Err(-r) } else { Ok(r) };
        }
        wait_bell(worker, bell, Duration::from_millis(50));
    }
}

/// Runs a store request whose output (up to `req.capacity` bytes) goes to
/// guest memory at `ptr`: the byte count, or the errno.
fn store_call_to_guest(
    c: &mut Ctx<'_>,
    worker: &Worker,
    ptr: u32,
    req: &StoreRequest<'_>,
) -> std::result::Result<i32, i32> {
    let mut out = vec![0u8; req.capacity as usize];
    let r = store_call(worker, req, &mut out)?;
    write_bytes(c, ptr, &out[..r as usize])?;
    Ok(r)
}

pub(crate) fn ioctl_lwstore(c: &mut Ctx<'_>, req: u32, arg: u32) -> std::result::Result<i32, i32> {
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
        return store_call_to_guest(
            c,
            &worker,
            l.buf as u32,
            &StoreRequest {
                op: lwabi::LWHOST_STORE_LIST,
                key: &prefix,
                after: &after,
                capacity: l.len,
                ..Default::default()
            },
        );
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
            store_call(
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
            )
        }
        lwabi::LWSTORE_READ => store_call_to_guest(
            c,
            &worker,
            io.buf as u32,
            &StoreRequest {
                op: lwabi::LWHOST_STORE_READ,
                key: &key,
                offset: io.offset,
                capacity: io.len,
                ..Default::default()
            },
        ),
        lwabi::LWSTORE_STAT => {
            let mut out = [0u8; 8];
            store_call(
                &worker,
                &StoreRequest {
                    op: lwabi::LWHOST_STORE_STAT,
                    key: &key,
                    capacity: 8,
                    ..Default::default()
                },
                &mut out,
            )?;
            io.size = u64::from_le_bytes(out);
            write_struct(c, arg, &io)?;
            Ok(0)
        }
        lwabi::LWSTORE_DELETE => store_call(
            &worker,
            &StoreRequest {
                op: lwabi::LWHOST_STORE_DELETE,
                key: &key,
                ..Default::default()
            },
            &mut [],
        ),
        _ => Err(ENOTTY),
    }
}
