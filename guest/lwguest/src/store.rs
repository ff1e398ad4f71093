//! The host blob store through `/dev/lwstore` (see lwstore.h): values are
//! written in chunks into a pending copy that replaces the committed value
//! atomically on LWSTORE_WRITE_COMMIT.

use crate::fs::{Error, Fd, Result};
use crate::sys;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use lwabi::{lwstore_io, lwstore_list};

/// What the sync code needs from a store; tests use an in-memory one.
pub trait Blobs {
    /// Stores a whole value, visible only once complete and durable when
    /// this returns.
    fn put(&mut self, key: &str, data: &[u8]) -> Result<()>;
    /// As [`Blobs::put`], but the value is durable only once a later
    /// [`Blobs::put`] returns (`LWSTORE_WRITE_LAZY`, lwstore.h); a crash
    /// before that may lose or damage it. For values that a later put makes
    /// reachable and that their reader checks, like lwsync's packs.
    fn put_lazy(&mut self, key: &str, data: &[u8]) -> Result<()> {
        self.put(key, data)
    }
    /// As [`Blobs::put_lazy`], for a value given as consecutive parts: no
    /// buffer holds the whole value (on a no-MMU kernel a large one needs
    /// that much contiguous memory).
    fn put_lazy_parts(&mut self, key: &str, parts: &[&[u8]]) -> Result<()> {
        self.put_lazy(key, &parts.concat())
    }
    /// A committed value, None when absent; values over `max` bytes are refused.
    fn get(&mut self, key: &str, max: u64) -> Result<Option<Vec<u8>>>;
    /// Up to `len` bytes of a committed value from byte `offset` on (fewer
    /// when the value ends sooner, none past its end); None when absent.
    /// The buffer is `len` bytes: callers bound it.
    fn get_range(&mut self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.get(key, u64::MAX)?.map(|v| {
            let start = offset.min(v.len() as u64) as usize;
            let end = offset.saturating_add(len).min(v.len() as u64) as usize;
            v[start..end].to_vec()
        }))
    }
    fn exists(&mut self, key: &str) -> Result<bool>;
    /// Deletes a value; absent is fine.
    fn delete(&mut self, key: &str) -> Result<()>;
    /// Committed keys starting with `prefix`, sorted.
    fn list(&mut self, prefix: &str) -> Result<Vec<String>>;
    /// Takes the store's lock for this process, waiting for another holder;
    /// released by [`Blobs::unlock`] or when the process ends.
    fn lock(&mut self) -> Result<()> {
        Ok(())
    }
    fn unlock(&mut self) {}
}

pub fn device_path() -> &'static str {
    crate::sys::uapi_str(lwabi::LWSTORE_DEVICE, "/dev/lwstore")
}

/// Turns a store errno into words.
pub fn describe(errno: i32) -> &'static str {
    match errno {
        sys::ENOSPC => "the host store is full (quota reached)",
        sys::EIO => "the host store is unavailable",
        sys::ECONNRESET => "the host went away",
        sys::EBUSY => {
            "the store is in use by another guest (another browser tab or lwhost on the same store)"
        }
        _ => sys::strerror(errno),
    }
}

const CHUNK: usize = lwabi::LWSTORE_CHUNK_MAX as usize;

pub struct Store {
    fd: Fd,
}

impl Store {
    pub fn open() -> Result<Store> {
        let fd = Fd::open_device(device_path())?;
        Ok(Store { fd })
    }

    /// A whole value, the concatenation of `parts`, in writes of
    /// LWSTORE_CHUNK_MAX bytes (each write is a round trip to the host),
    /// committed with the last one (adding `commit_flags`). A write that
    /// lies within one part goes straight from that part's memory; small
    /// parts are gathered into one write through a staging buffer. An empty
    /// value is one empty write.
    fn put_with(&mut self, key: &str, parts: &[&[u8]], commit_flags: u32) -> Result<()> {
        let err = |e| Error::msg(format!("store {key}: {}", describe(e)));
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut stage: Vec<u8> = Vec::new();
        let (mut rest, mut cur): (&[&[u8]], &[u8]) = (parts, &[]);
        let mut off = 0usize;
        loop {
            // The next part with bytes left, if the current one is done.
            while cur.is_empty() {
                let Some((p, r)) = rest.split_first() else { break };
                (cur, rest) = (p, r);
            }
            let want = (total - off).min(CHUNK);
            let write: &[u8] = if cur.len() >= want {
                // Within the current part: no copy.
                let (w, c) = cur.split_at(want);
                cur = c;
                w
            } else {
                stage.clear();
                if stage.capacity() < want {
                    stage.reserve_exact(want);
                }
                while stage.len() < want {
                    if cur.is_empty() {
                        let Some((p, r)) = rest.split_first() else { break };
                        (cur, rest) = (p, r);
                        continue;
                    }
                    let n = cur.len().min(want - stage.len());
                    stage.extend_from_slice(&cur[..n]);
                    cur = &cur[n..];
                }
                &stage
            };
            let mut flags = 0;
            if off == 0 {
                flags |= lwabi::LWSTORE_WRITE_TRUNC;
            }
            if off + write.len() == total {
                flags |= lwabi::LWSTORE_WRITE_COMMIT | commit_flags;
            }
            // LWSTORE_WRITE only reads from the buffer.
            let p = write.as_ptr() as *mut u8;
            self.io(lwabi::LWSTORE_WRITE, key, flags, off as u64, p, write.len())
                .map_err(err)?;
            off += write.len();
            if off == total {
                return Ok(());
            }
        }
    }

    fn io(
        &self,
        req: u32,
        key: &str,
        flags: u32,
        offset: u64,
        buf: *mut u8,
        len: usize,
    ) -> core::result::Result<(i32, u64), i32> {
        if key.is_empty() || key.len() > lwabi::LWSTORE_KEY_MAX as usize {
            return Err(sys::EINVAL);
        }
        let mut io = lwstore_io {
            key: key.as_ptr() as usize as u64,
            key_len: key.len() as u32,
            flags,
            offset,
            buf: buf as usize as u64,
            len: len as u32,
            ..Default::default()
        };
        loop {
            // SAFETY: io points at live key and buffer memory for the call.
            let r = unsafe { sys::ioctl(self.fd.0, req as sys::c_ulong, &mut io as *mut lwstore_io) };
            if r >= 0 {
                return Ok((r, io.size));
            }
            let e = sys::errno();
            if e != sys::EINTR {
                return Err(e);
            }
        }
    }
}

impl Blobs for Store {
    /// Takes the store's guest-side lock, waiting (with a message) while
    /// another process holds it: flock(2) on the device, so the kernel
    /// releases it when the holder exits or dies. Guests sharing one store
    /// (browser tabs, lwhost processes) are kept apart by the host, which
    /// answers EBUSY to writes from all but one. A kernel without file locks
    /// (ENOSYS, or another flock error, which is reported) leaves only the
    /// host's guard.
    fn lock(&mut self) -> Result<()> {
        let op = sys::LOCK_EX;
        match self.fd.flock(op | sys::LOCK_NB) {
            Ok(()) => return Ok(()),
            Err(sys::ENOSYS) => return Ok(()),
            Err(e) if e == sys::EAGAIN => {}
            Err(e) => {
                // Refusing to work would leave the user with no saves at all.
                crate::errln!(
                    "lwsync: cannot lock {}: {}; going on without the lock",
                    device_path(),
                    sys::strerror(e)
                );
                return Ok(());
            }
        }
        crate::errln!("lwsync: another lwsync is using the store; waiting for it to finish");
        self.fd
            .flock(op)
            .map_err(|e| Error::sys(format!("lock {}", device_path()), e))
    }

    /// Closing the store releases the lock too.
    fn unlock(&mut self) {
        let _ = self.fd.flock(sys::LOCK_UN);
    }

    fn put(&mut self, key: &str, data: &[u8]) -> Result<()> {
        self.put_with(key, &[data], 0)
    }

    fn put_lazy(&mut self, key: &str, data: &[u8]) -> Result<()> {
        self.put_with(key, &[data], lwabi::LWSTORE_WRITE_LAZY)
    }

    fn put_lazy_parts(&mut self, key: &str, parts: &[&[u8]]) -> Result<()> {
        self.put_with(key, parts, lwabi::LWSTORE_WRITE_LAZY)
    }

    /// LWSTORE_STAT for the size (refused over `max`), then
    /// [`Blobs::get_range`] of the whole value: one that ends sooner shrank
    /// while being read, an error.
    fn get(&mut self, key: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let size = match self.io(lwabi::LWSTORE_STAT, key, 0, 0, core::ptr::null_mut(), 0) {
            Ok((_, size)) => size,
            Err(sys::ENOENT) => return Ok(None),
            Err(e) => return Err(Error::msg(format!("store {key}: {}", describe(e)))),
        };
        if size > max {
            return Err(Error::msg(format!(
                "store {key}: {size} bytes, more than the {max} expected"
            )));
        }
        match self.get_range(key, 0, size)? {
            Some(v) if v.len() as u64 == size => Ok(Some(v)),
            _ => Err(Error::msg(format!("store {key}: value shrank while reading"))),
        }
    }

    /// LWSTORE_READs of at most LWSTORE_CHUNK_MAX bytes from `offset` until
    /// `len` bytes or the value's end.
    fn get_range(&mut self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let mut out = alloc::vec![0u8; len as usize];
        let mut done = 0usize;
        while done < out.len() {
            let n = (out.len() - done).min(CHUNK);
            let p = out[done..].as_mut_ptr();
            let at = offset.saturating_add(done as u64);
            match self.io(lwabi::LWSTORE_READ, key, 0, at, p, n) {
                Ok((0, _)) => break,
                Ok((got, _)) => done += (got as usize).min(n),
                Err(sys::ENOENT) if done == 0 => return Ok(None),
                Err(e) => return Err(Error::msg(format!("read {key} from the store: {}", describe(e)))),
            }
        }
        out.truncate(done);
        Ok(Some(out))
    }

    fn exists(&mut self, key: &str) -> Result<bool> {
        match self.io(lwabi::LWSTORE_STAT, key, 0, 0, core::ptr::null_mut(), 0) {
            Ok(_) => Ok(true),
            Err(sys::ENOENT) => Ok(false),
            Err(e) => Err(Error::msg(format!("store {key}: {}", describe(e)))),
        }
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        match self.io(lwabi::LWSTORE_DELETE, key, 0, 0, core::ptr::null_mut(), 0) {
            Ok(_) | Err(sys::ENOENT) => Ok(()),
            Err(e) => Err(Error::msg(format!(
                "delete {key} from the store: {}",
                describe(e)
            ))),
        }
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut buf = alloc::vec![0u8; CHUNK];
        loop {
            let after = out.last().cloned().unwrap_or_default();
            let mut l = lwstore_list {
                prefix: prefix.as_ptr() as usize as u64,
                prefix_len: prefix.len() as u32,
                after_len: after.len() as u32,
                after: after.as_ptr() as usize as u64,
                buf: buf.as_mut_ptr() as usize as u64,
                len: buf.len() as u32,
                ..Default::default()
            };
            // SAFETY: every pointer in l refers to live memory for the call.
            let r = unsafe {
                sys::ioctl(
                    self.fd.0,
                    lwabi::LWSTORE_LIST as sys::c_ulong,
                    &mut l as *mut lwstore_list,
                )
            };
            if r < 0 {
                let e = sys::errno();
                if e == sys::EINTR {
                    continue;
                }
                return Err(Error::msg(format!("list {prefix} in the store: {}", describe(e))));
            }
            if r == 0 {
                return Ok(out);
            }
            let before = out.len();
            for k in buf[..(r as usize).min(buf.len())]
                .split(|&b| b == 0)
                .filter(|k| !k.is_empty())
            {
                out.push(String::from_utf8_lossy(k).into_owned());
            }
            // A listing that makes no progress would loop forever.
            if out.len() == before
                || out.last().map(String::as_str) <= Some(after.as_str()) && !after.is_empty()
            {
                return Err(Error::msg(format!(
                    "list {prefix} in the store: the listing does not advance"
                )));
            }
        }
    }
}
