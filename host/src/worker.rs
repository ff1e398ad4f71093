//! The worker side: the host ABI of `include/linux/lwhost.h` over a shared
//! region. Every call returns at once (only [`Worker::wait_guest_doorbell`]
//! sleeps), allocates nothing, and checks every id, ticket, length and
//! value it reads back from the region, answering `-errno` instead of
//! trusting it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lwabi::{
    lwhost_store_req, LWHOST_CONN_CLAIMED, LWHOST_CONN_CONNECTING, LWHOST_CONN_FAILED, LWHOST_CONN_FREE,
    LWHOST_CONN_OPEN, LWHOST_CONN_REQUESTED, LWHOST_HOST_MAX, LWHOST_KEY_MAX, LWHOST_MF_PEER_EOF,
    LWHOST_OPEN_TLS, LWHOST_POLL_ERR, LWHOST_POLL_ERRNO_SHIFT, LWHOST_POLL_HUP, LWHOST_POLL_IN,
    LWHOST_POLL_OUT, LWHOST_SLOT_CLAIMED, LWHOST_SLOT_DONE, LWHOST_SLOT_FREE, LWHOST_SLOT_SUBMITTED,
    LWHOST_STORE_BUF, LWHOST_STORE_DELETE, LWHOST_STORE_FLAGS_ALL, LWHOST_STORE_LIST, LWHOST_STORE_READ,
    LWHOST_STORE_STAT, LWHOST_STORE_WRITE, LWHOST_WF_CLOSE, LWHOST_WF_SHUT_WR,
};

use crate::errno::*;
use crate::shm::{Conn, Region, StoreSlot, CONNS, RING_SIZE, STORE_SLOTS};

/// Generations are 23 bits wide in an id.
const GEN_MASK: u32 = lwabi::LWHOST_ID_GEN_MASK;
const SLOT_BITS: u32 = lwabi::LWHOST_ID_SLOT_BITS;

/// `LWHOST_ID(slot, gen)`.
pub fn make_id(slot: usize, generation: u32) -> i32 {
    (((generation & GEN_MASK) << SLOT_BITS) | slot as u32) as i32
}

/// `(LWHOST_ID_SLOT(id), LWHOST_ID_GEN(id))`, or None for a negative id.
pub fn split_id(id: i32) -> Option<(usize, u32)> {
    (id >= 0).then_some((
        (id as u32 & lwabi::LWHOST_ID_SLOT_MASK) as usize,
        ((id as u32) >> SLOT_BITS) & GEN_MASK,
    ))
}

/// The next generation after `g`: never 0, so a zeroed slot has no valid id.
fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) & GEN_MASK {
        0 => 1,
        n => n,
    }
}

/// Claims a free slot for this worker: moves `state` from `free` to `claimed`
/// (one CAS, so two workers never claim the same slot) and gives the slot its
/// next generation, returned. None if the slot was not free.
fn claim(state: &AtomicU32, generation: &AtomicU32, free: u32, claimed: u32) -> Option<u32> {
    state
        .compare_exchange(free, claimed, Ordering::Acquire, Ordering::Relaxed)
        .ok()?;
    let g = next_generation(generation.load(Ordering::Relaxed));
    generation.store(g, Ordering::Relaxed);
    Some(g)
}

/// A store request with its buffers already resolved and bounds-checked by
/// the embedder (see [`StoreRequest::from_guest`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreRequest<'a> {
    /// `LWHOST_STORE_*`.
    pub op: u32,
    /// `LWHOST_STORE_TRUNC` / `_COMMIT` / `_LAZY` (writes only).
    pub flags: u32,
    /// The key, or the prefix for LIST.
    pub key: &'a [u8],
    /// LIST only: return keys sorted after this one.
    pub after: &'a [u8],
    /// WRITE: where the chunk goes; READ: where to start.
    pub offset: u64,
    /// WRITE: the chunk.
    pub data: &'a [u8],
    /// READ/LIST: the most output bytes wanted (the buffer later given to
    /// [`Worker::store_poll`] must hold this many).
    pub capacity: u32,
}

impl<'a> StoreRequest<'a> {
    /// Resolves a `struct lwhost_store_req` whose pointers are offsets into
    /// the guest memory `mem`, checking each pointer and length.
    pub fn from_guest(req: &lwhost_store_req, mem: &'a [u8]) -> Result<StoreRequest<'a>, i32> {
        if req.reserved != 0 {
            return Err(-EINVAL);
        }
        if req.key_len > LWHOST_KEY_MAX || req.after_len > LWHOST_KEY_MAX {
            return Err(-ENAMETOOLONG);
        }
        let is_write = req.op == LWHOST_STORE_WRITE;
        if req.len > LWHOST_STORE_BUF {
            return Err(-EINVAL);
        }
        Ok(StoreRequest {
            op: req.op,
            flags: req.flags,
            key: guest_slice(mem, req.key, req.key_len.into())?,
            after: guest_slice(mem, req.after, req.after_len.into())?,
            offset: req.offset,
            data: if is_write {
                guest_slice(mem, req.data, req.len.into())?
            } else {
                &[]
            },
            capacity: if is_write { 0 } else { req.len },
        })
    }
}

/// `len` bytes at guest address `ptr` of `mem`, or `-EFAULT` if any of them
/// lies outside it (overflow included). A zero length is always valid.
pub fn guest_slice(mem: &[u8], ptr: u64, len: u64) -> Result<&[u8], i32> {
    if len == 0 {
        return Ok(&[]);
    }
    let range = guest_range(mem.len(), ptr, len)?;
    Ok(&mem[range])
}

/// Mutable variant of [`guest_slice`].
pub fn guest_slice_mut(mem: &mut [u8], ptr: u64, len: u64) -> Result<&mut [u8], i32> {
    if len == 0 {
        return Ok(&mut []);
    }
    let range = guest_range(mem.len(), ptr, len)?;
    Ok(&mut mem[range])
}

/// The byte range `[ptr, ptr + len)` if it fits in a memory of `mem_len`
/// bytes, else `-EFAULT`.
pub fn guest_range(mem_len: usize, ptr: u64, len: u64) -> Result<core::ops::Range<usize>, i32> {
    let end = ptr.checked_add(len).ok_or(-EFAULT)?;
    if end > mem_len as u64 {
        return Err(-EFAULT);
    }
    Ok(ptr as usize..end as usize)
}

/// The host ABI over one region. Cheap to share: every method takes `&self`
/// and may be called from any number of threads at once.
#[derive(Clone)]
pub struct Worker {
    region: Arc<Region>,
}

impl Worker {
    /// A worker over `region`. Calls fail with `-ECONNRESET`/`-EIO` until
    /// the main side has initialised the region.
    pub fn new(region: Arc<Region>) -> Worker {
        Worker { region }
    }

    /// The region this worker drives.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    fn main_alive(&self) -> bool {
        self.region.main_alive().load(Ordering::Acquire) != 0
    }

    /// `wasm_net_open_ex`: claims a slot and asks the main side to connect.
    /// Returns the connection id, `-EINVAL` for bad arguments, `-EMFILE`
    /// when every slot is taken, `-ECONNRESET` if the main side is gone.
    pub fn net_open(&self, host: &[u8], port: u32, flags: u32, timeout_ms: u32) -> i32 {
        if host.is_empty() || host.len() >= LWHOST_HOST_MAX as usize || host.contains(&0) {
            return -EINVAL;
        }
        if !(1..=65535).contains(&port) || flags & !LWHOST_OPEN_TLS != 0 {
            return -EINVAL;
        }
        if !self.main_alive() {
            return -ECONNRESET;
        }
        for slot in 0..CONNS {
            let Some(c) = self.region.conn(slot) else { break };
            let Some(generation) = claim(c.state(), c.generation(), LWHOST_CONN_FREE, LWHOST_CONN_CLAIMED)
            else {
                continue;
            };
            c.worker_flags().store(0, Ordering::Relaxed);
            // SAFETY: the slot is CLAIMED by us, so nobody else touches its
            // host buffer, and host.len() < LWHOST_HOST_MAX.
            unsafe { core::ptr::copy_nonoverlapping(host.as_ptr(), c.host_ptr(), host.len()) };
            c.host_len().store(host.len() as u32, Ordering::Relaxed);
            c.port().store(port, Ordering::Relaxed);
            c.open_flags().store(flags, Ordering::Relaxed);
            c.timeout_ms().store(timeout_ms, Ordering::Relaxed);
            c.state().store(LWHOST_CONN_REQUESTED, Ordering::Release);
            self.region.ring_host();
            return make_id(slot, generation);
        }
        -EMFILE
    }

    /// The slot of a live id and its state, or `-EBADF`.
    fn conn(&self, id: i32) -> Result<(Conn<'_>, u32), i32> {
        let (slot, generation) = split_id(id).ok_or(-EBADF)?;
        let c = self.region.conn(slot).ok_or(-EBADF)?;
        if generation == 0 || c.generation().load(Ordering::Acquire) != generation {
            return Err(-EBADF);
        }
        let state = c.state().load(Ordering::Acquire);
        if state == LWHOST_CONN_FREE
            || state == LWHOST_CONN_CLAIMED
            || c.worker_flags().load(Ordering::Relaxed) & LWHOST_WF_CLOSE != 0
        {
            return Err(-EBADF);
        }
        Ok((c, state))
    }

    /// The connection behind `id` if bytes may flow now: `-EAGAIN` while it
    /// connects, its errno once failed, `-ECONNRESET` without a main side.
    fn streaming(&self, id: i32) -> Result<Conn<'_>, i32> {
        let (c, state) = self.conn(id)?;
        if !self.main_alive() {
            return Err(-ECONNRESET);
        }
        match state {
            LWHOST_CONN_OPEN => Ok(c),
            LWHOST_CONN_REQUESTED | LWHOST_CONN_CONNECTING => Err(-EAGAIN),
            LWHOST_CONN_FAILED => Err(-conn_errno(c)),
            _ => Err(-EIO),
        }
    }

    /// `wasm_net_write`: bytes accepted (> 0), 0 for an empty buffer,
    /// `-EAGAIN` while connecting or when the ring is full, `-EPIPE` after
    /// shutdown, or the connection's error.
    pub fn net_write(&self, id: i32, buf: &[u8]) -> i32 {
        let c = match self.streaming(id) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if c.worker_flags().load(Ordering::Relaxed) & LWHOST_WF_SHUT_WR != 0 {
            return -EPIPE;
        }
        if buf.is_empty() {
            return 0;
        }
        // i32 return: never report more than i32::MAX (the ring is smaller).
        match c.tx().push(buf) {
            None => -EIO,
            Some(0) => -EAGAIN,
            Some(n) => {
                self.region.ring_host();
                n as i32
            }
        }
    }

    /// `wasm_net_read`: bytes read (> 0), 0 at end of stream (or for an
    /// empty buffer), `-EAGAIN` when nothing is there yet, or the error.
    pub fn net_read(&self, id: i32, buf: &mut [u8]) -> i32 {
        let c = match self.streaming(id) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if buf.is_empty() {
            return 0;
        }
        // Flags before data: PEER_EOF is published after the last byte.
        let eof = c.main_flags().load(Ordering::Acquire) & LWHOST_MF_PEER_EOF != 0;
        let rx = c.rx();
        let Some(before) = rx.readable() else { return -EIO };
        let Some(n) = rx.pop(buf) else { return -EIO };
        if n == 0 {
            return if eof { 0 } else { -EAGAIN };
        }
        // The main side only stalls on a full ring; waking it each time the
        // ring drains below half batches its refills. `pop` sizes `n` from its
        // own look at the ring, which the main side may have refilled since
        // `before`: saturate, and wake on doubt (a spare wake costs nothing).
        let half = RING_SIZE / 2;
        if before > half && before.saturating_sub(n as u32) <= half {
            self.region.ring_host();
        }
        n as i32
    }

    /// `wasm_net_poll`: `LWHOST_POLL_*` bits, with the errno above
    /// `LWHOST_POLL_ERRNO_SHIFT` when failed; `-EBADF` for a bad id. Only
    /// loads: cheap enough to call in a loop.
    pub fn net_poll(&self, id: i32) -> i32 {
        let (c, state) = match self.conn(id) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let err = |e: i32| (LWHOST_POLL_ERR | LWHOST_POLL_HUP) as i32 | (e << LWHOST_POLL_ERRNO_SHIFT);
        if !self.main_alive() {
            return err(ECONNRESET);
        }
        match state {
            LWHOST_CONN_OPEN => {}
            LWHOST_CONN_REQUESTED | LWHOST_CONN_CONNECTING => return 0,
            LWHOST_CONN_FAILED => return err(conn_errno(c)),
            _ => return err(EIO),
        }
        let eof = c.main_flags().load(Ordering::Acquire) & LWHOST_MF_PEER_EOF != 0;
        let (Some(readable), Some(writable)) = (c.rx().readable(), c.tx().writable()) else {
            return err(EIO);
        };
        let mut bits = 0;
        if readable > 0 || eof {
            bits |= LWHOST_POLL_IN;
        }
        if eof && readable == 0 {
            bits |= LWHOST_POLL_HUP;
        }
        if writable > 0 && c.worker_flags().load(Ordering::Relaxed) & LWHOST_WF_SHUT_WR == 0 {
            bits |= LWHOST_POLL_OUT;
        }
        bits as i32
    }

    /// `wasm_net_shutdown`: 0, `-ENOTCONN` before the connection is open,
    /// or the connection's error.
    pub fn net_shutdown(&self, id: i32) -> i32 {
        let (c, state) = match self.conn(id) {
            Ok(v) => v,
            Err(e) => return e,
        };
        if !self.main_alive() {
            return -ECONNRESET;
        }
        match state {
            LWHOST_CONN_OPEN => {}
            LWHOST_CONN_REQUESTED | LWHOST_CONN_CONNECTING => return -ENOTCONN,
            LWHOST_CONN_FAILED => return -conn_errno(c),
            _ => return -EIO,
        }
        c.worker_flags().fetch_or(LWHOST_WF_SHUT_WR, Ordering::Release);
        self.region.ring_host();
        0
    }

    /// `wasm_net_close`: forgets the connection; a bad id is ignored.
    pub fn net_close(&self, id: i32) {
        if let Ok((c, _)) = self.conn(id) {
            c.worker_flags().fetch_or(LWHOST_WF_CLOSE, Ordering::Release);
            self.region.ring_host();
        }
    }

    /// `wasm_store_submit`: a ticket, `-EBUSY` when every slot is in use,
    /// `-EINVAL`/`-ENAMETOOLONG` for a malformed request, `-EIO` if the main
    /// side is gone.
    pub fn store_submit(&self, req: &StoreRequest<'_>) -> i32 {
        if let Err(e) = validate_store(req) {
            return e;
        }
        if !self.main_alive() {
            return -EIO;
        }
        for slot in 0..STORE_SLOTS {
            let Some(s) = self.region.store_slot(slot) else {
                break;
            };
            let Some(generation) = claim(s.state(), s.generation(), LWHOST_SLOT_FREE, LWHOST_SLOT_CLAIMED)
            else {
                continue;
            };
            fill_store_slot(s, req);
            s.state().store(LWHOST_SLOT_SUBMITTED, Ordering::Release);
            self.region.ring_host();
            return make_id(slot, generation);
        }
        -EBUSY
    }

    /// `wasm_store_poll`: `-EINPROGRESS` while the request runs; then its
    /// result with any output copied to `buf`, and the ticket is released.
    /// `-EINVAL` (ticket released) if `buf` cannot hold the output.
    pub fn store_poll(&self, ticket: i32, buf: &mut [u8]) -> i32 {
        let Some((slot, generation)) = split_id(ticket) else {
            return -EBADF;
        };
        let Some(s) = self.region.store_slot(slot) else {
            return -EBADF;
        };
        if generation == 0 || s.generation().load(Ordering::Acquire) != generation {
            return -EBADF;
        }
        match s.state().load(Ordering::Acquire) {
            LWHOST_SLOT_SUBMITTED if self.main_alive() => return -EINPROGRESS,
            LWHOST_SLOT_SUBMITTED => {
                // Nobody will ever finish it; give the slot back.
                if s.state()
                    .compare_exchange(
                        LWHOST_SLOT_SUBMITTED,
                        LWHOST_SLOT_FREE,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return -EIO;
                }
                return -EBADF;
            }
            LWHOST_SLOT_DONE => {}
            _ => return -EBADF,
        }
        // Take the slot back so concurrent polls of one ticket cannot both
        // copy while a third caller reuses it.
        if s.state()
            .compare_exchange(
                LWHOST_SLOT_DONE,
                LWHOST_SLOT_CLAIMED,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return -EBADF;
        }
        if s.generation().load(Ordering::Relaxed) != generation {
            s.state().store(LWHOST_SLOT_DONE, Ordering::Release);
            return -EBADF;
        }
        let result = store_result(s, buf);
        s.state().store(LWHOST_SLOT_FREE, Ordering::Release);
        result
    }

    /// For embedders without an IRQ: sleeps until `guest_doorbell` differs
    /// from `last_seen` or `timeout` passes; returns its current value.
    pub fn wait_guest_doorbell(&self, last_seen: u32, timeout: Duration) -> u32 {
        let bell = self.region.guest_doorbell();
        let now = bell.load(Ordering::Acquire);
        if now != last_seen {
            return now;
        }
        crate::futex::wait(bell, last_seen, Some(timeout));
        bell.load(Ordering::Acquire)
    }

    /// The current `guest_doorbell`, to pass to a later wait.
    pub fn guest_doorbell(&self) -> u32 {
        self.region.guest_doorbell().load(Ordering::Acquire)
    }
}

/// The errno a FAILED slot carries, never trusting it to be one.
fn conn_errno(c: Conn<'_>) -> i32 {
    match c.error().load(Ordering::Acquire) as i32 {
        e @ 1..=MAX_ERRNO => e,
        _ => EIO,
    }
}

fn validate_store(req: &StoreRequest<'_>) -> Result<(), i32> {
    let op = req.op;
    if !matches!(
        op,
        LWHOST_STORE_WRITE | LWHOST_STORE_READ | LWHOST_STORE_STAT | LWHOST_STORE_DELETE | LWHOST_STORE_LIST
    ) {
        return Err(-EINVAL);
    }
    if req.key.len() > LWHOST_KEY_MAX as usize || req.after.len() > LWHOST_KEY_MAX as usize {
        return Err(-ENAMETOOLONG);
    }
    if op != LWHOST_STORE_LIST && (req.key.is_empty() || !req.after.is_empty()) {
        return Err(-EINVAL);
    }
    let flags_ok = if op == LWHOST_STORE_WRITE {
        req.flags & !LWHOST_STORE_FLAGS_ALL == 0
    } else {
        req.flags == 0
    };
    if !flags_ok {
        return Err(-EINVAL);
    }
    if req.data.len() > LWHOST_STORE_BUF as usize || (op != LWHOST_STORE_WRITE && !req.data.is_empty()) {
        return Err(-EINVAL);
    }
    match op {
        LWHOST_STORE_READ if req.capacity > LWHOST_STORE_BUF => Err(-EINVAL),
        LWHOST_STORE_LIST if req.capacity == 0 || req.capacity > LWHOST_STORE_BUF => Err(-EINVAL),
        _ => Ok(()),
    }
}

/// Copies a validated request into a slot we hold CLAIMED.
fn fill_store_slot(s: StoreSlot<'_>, req: &StoreRequest<'_>) {
    let key_len = req.key.len();
    // SAFETY: the slot is CLAIMED by us; key_len + after.len() <=
    // 2 * LWHOST_KEY_MAX = KEY_CAP and data.len() <= DATA_CAP (validated).
    unsafe {
        core::ptr::copy_nonoverlapping(req.key.as_ptr(), s.key_ptr(), key_len);
        core::ptr::copy_nonoverlapping(req.after.as_ptr(), s.key_ptr().add(key_len), req.after.len());
        core::ptr::copy_nonoverlapping(req.data.as_ptr(), s.data_ptr(), req.data.len());
    }
    s.op().store(req.op, Ordering::Relaxed);
    s.flags().store(req.flags, Ordering::Relaxed);
    s.key_len().store(key_len as u32, Ordering::Relaxed);
    s.after_len().store(req.after.len() as u32, Ordering::Relaxed);
    s.offset().store(req.offset, Ordering::Relaxed);
    let len = if req.op == LWHOST_STORE_WRITE {
        req.data.len() as u32
    } else {
        req.capacity
    };
    s.len().store(len, Ordering::Relaxed);
    s.result().store(0, Ordering::Relaxed);
}

/// Reads a DONE slot's result (we hold it CLAIMED) and copies its output.
fn store_result(s: StoreSlot<'_>, buf: &mut [u8]) -> i32 {
    let result = s.result().load(Ordering::Relaxed) as i32;
    if result < 0 {
        return if (-MAX_ERRNO..0).contains(&result) {
            result
        } else {
            -EIO
        };
    }
    let op = s.op().load(Ordering::Relaxed);
    if !matches!(op, LWHOST_STORE_READ | LWHOST_STORE_STAT | LWHOST_STORE_LIST) {
        return result;
    }
    let n = result as usize;
    if n > StoreSlot::DATA_CAP {
        return -EIO;
    }
    if n > buf.len() {
        return -EINVAL;
    }
    // SAFETY: n <= DATA_CAP, the slot is ours, buf holds n bytes.
    unsafe { core::ptr::copy_nonoverlapping(s.data_ptr(), buf.as_mut_ptr(), n) };
    result
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
