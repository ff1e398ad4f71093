//! lwhost-web: the worker side of lwhost (`lwhost::worker::Worker`, the real
//! code, not a port) compiled to wasm32 with shared memory, for browsers
//! and for the wasmtime tier.
//!
//! One module, instantiated once per thread (the link worker that serves
//! the region, and each Web Worker that runs kernel tasks) over ONE imported shared memory, which
//! also holds the lwhost region (`struct lwhost_shm`) as a static. The JS
//! glue (`host/web/js/worker.js`) validates kernel pointers against the
//! kernel's memory, copies arguments into this thread's scratch area, and
//! calls the `lw_*` exports below, which validate again (against this
//! memory) before touching anything.
//!
//! Target choice: wasm32-unknown-unknown with `+atomics,+bulk-memory` and
//! std rebuilt (`-Zbuild-std`, see ../build.sh) rather than
//! wasm32-wasip1-threads: the browser then has to supply no WASI imports,
//! and per-thread stacks and TLS are set up by the embedder from the static
//! thread slots below (wasi-threads would want its own `thread-spawn`
//! protocol, which neither linux-wasm's runtime nor our glue speaks).
//! Wait/notify goes through lwhost's `lwhost.atomic_wait32/atomic_notify`
//! imports, so the same binary runs in Chromium (Atomics.wait/notify) and in
//! wasmtime next to a native main side (real futexes on the shared words).
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of, MaybeUninit};
use core::sync::atomic::AtomicU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lwabi::{
    lwhost_conn, lwhost_ring, lwhost_shm, lwhost_store_req, lwhost_store_slot, LWHOST_CONNS, LWHOST_KEY_MAX,
    LWHOST_RING_SIZE, LWHOST_STORE_BUF, LWHOST_STORE_SLOTS,
};
use lwhost::errno::{EFAULT, EINVAL};
use lwhost::shm::Region;
use lwhost::web_layout::{Layout, LAYOUT_SENTINEL, LAYOUT_VERSION};
use lwhost::worker::{StoreRequest, Worker};

/// Threads (Web Workers) that may use the host ABI at once. A slot is
/// reclaimed by the main side once its worker is gone (see js/region.js).
pub const THREAD_SLOTS: usize = 128;
/// Shadow stack per thread: the ABI paths are shallow and allocate nothing.
const STACK_BYTES: usize = 32 * 1024;
/// Room for this module's TLS block (checked against `__tls_size` by the glue).
const TLS_BYTES: usize = 1024;
/// Scratch per thread: a store request, key + cursor, and a full data chunk.
const SCRATCH_BYTES: usize = 64 + 2 * LWHOST_KEY_MAX as usize + LWHOST_STORE_BUF as usize;

#[repr(C, align(16))]
struct ThreadSlot {
    stack: [u8; STACK_BYTES],
    tls: [u8; TLS_BYTES],
    scratch: [u8; SCRATCH_BYTES],
}

/// Memory only ever touched through raw pointers by the thread owning it
/// (thread slots) or under the lwhost protocol (the region).
#[repr(C, align(4096))]
struct Shared<T>(UnsafeCell<MaybeUninit<T>>);
// SAFETY: see the type's comment; Rust code never forms references to it
// that outlive one call on the owning thread.
unsafe impl<T> Sync for Shared<T> {}

static REGION: Shared<lwhost_shm> = Shared(UnsafeCell::new(MaybeUninit::zeroed()));
static THREADS: Shared<[ThreadSlot; THREAD_SLOTS]> = Shared(UnsafeCell::new(MaybeUninit::zeroed()));
/// Per thread slot: 0 free, else the liveness token of the worker that owns
/// it (written by the JS glue with Atomics only; see js/worker.js).
static THREAD_OWNER: [AtomicU32; THREAD_SLOTS] = [const { AtomicU32::new(0) }; THREAD_SLOTS];

static WORKER: OnceLock<Worker> = OnceLock::new();

fn region_ptr() -> *mut lwhost_shm {
    REGION.0.get().cast()
}

fn worker() -> &'static Worker {
    WORKER.get_or_init(|| {
        // SAFETY: a static, zero-initialised, aligned region that lives as
        // long as the module's memory and is only used under the protocol.
        match unsafe { Region::from_raw(region_ptr()) } {
            Ok(region) => Worker::new(Arc::new(region)),
            // A static of the right type cannot be misaligned or null.
            Err(_) => std::process::abort(),
        }
    })
}

struct LayoutCell(UnsafeCell<MaybeUninit<Layout>>);
// SAFETY: written once by `lw_layout` in the link worker (js/link-worker.js)
// before any kernel worker exists (and rewritten with identical values by any later call).
unsafe impl Sync for LayoutCell {}
static LAYOUT: LayoutCell = LayoutCell(UnsafeCell::new(MaybeUninit::uninit()));

fn addr<T: ?Sized>(p: *const T) -> u32 {
    p.cast::<u8>() as usize as u32
}

fn layout() -> Layout {
    let conn0 = offset_of!(lwhost_shm, conn) as u32;
    let ring = |field: usize, part: usize| (field + part) as u32;
    Layout {
        version: LAYOUT_VERSION,
        region: addr(region_ptr()),
        region_size: size_of::<lwhost_shm>() as u32,
        main_alive: offset_of!(lwhost_shm, main_alive) as u32,
        host_doorbell: offset_of!(lwhost_shm, host_doorbell) as u32,
        host_waiting: offset_of!(lwhost_shm, host_waiting) as u32,
        guest_doorbell: offset_of!(lwhost_shm, guest_doorbell) as u32,
        conns: LWHOST_CONNS,
        conn_base: conn0,
        conn_stride: size_of::<lwhost_conn>() as u32,
        conn_state: offset_of!(lwhost_conn, state) as u32,
        conn_generation: offset_of!(lwhost_conn, generation) as u32,
        conn_worker_flags: offset_of!(lwhost_conn, worker_flags) as u32,
        conn_main_flags: offset_of!(lwhost_conn, main_flags) as u32,
        conn_error: offset_of!(lwhost_conn, error) as u32,
        conn_port: offset_of!(lwhost_conn, port) as u32,
        conn_open_flags: offset_of!(lwhost_conn, open_flags) as u32,
        conn_timeout_ms: offset_of!(lwhost_conn, timeout_ms) as u32,
        conn_host_len: offset_of!(lwhost_conn, host_len) as u32,
        conn_host: offset_of!(lwhost_conn, host) as u32,
        conn_tx_head: ring(offset_of!(lwhost_conn, tx), offset_of!(lwhost_ring, head)),
        conn_tx_tail: ring(offset_of!(lwhost_conn, tx), offset_of!(lwhost_ring, tail)),
        conn_rx_head: ring(offset_of!(lwhost_conn, rx), offset_of!(lwhost_ring, head)),
        conn_rx_tail: ring(offset_of!(lwhost_conn, rx), offset_of!(lwhost_ring, tail)),
        conn_tx_data: offset_of!(lwhost_conn, tx_data) as u32,
        conn_rx_data: offset_of!(lwhost_conn, rx_data) as u32,
        ring_size: LWHOST_RING_SIZE,
        store_slots: LWHOST_STORE_SLOTS,
        store_base: offset_of!(lwhost_shm, store) as u32,
        store_stride: size_of::<lwhost_store_slot>() as u32,
        store_state: offset_of!(lwhost_store_slot, state) as u32,
        store_generation: offset_of!(lwhost_store_slot, generation) as u32,
        store_op: offset_of!(lwhost_store_slot, op) as u32,
        store_flags: offset_of!(lwhost_store_slot, flags) as u32,
        store_key_len: offset_of!(lwhost_store_slot, key_len) as u32,
        store_after_len: offset_of!(lwhost_store_slot, after_len) as u32,
        store_len: offset_of!(lwhost_store_slot, len) as u32,
        store_result: offset_of!(lwhost_store_slot, result) as u32,
        store_offset: offset_of!(lwhost_store_slot, offset) as u32,
        store_key: offset_of!(lwhost_store_slot, key) as u32,
        store_data: offset_of!(lwhost_store_slot, data) as u32,
        store_buf: LWHOST_STORE_BUF,
        key_max: LWHOST_KEY_MAX,
        req_size: size_of::<lwhost_store_req>() as u32,
        req_op: offset_of!(lwhost_store_req, op) as u32,
        req_flags: offset_of!(lwhost_store_req, flags) as u32,
        req_key: offset_of!(lwhost_store_req, key) as u32,
        req_key_len: offset_of!(lwhost_store_req, key_len) as u32,
        req_after_len: offset_of!(lwhost_store_req, after_len) as u32,
        req_after: offset_of!(lwhost_store_req, after) as u32,
        req_offset: offset_of!(lwhost_store_req, offset) as u32,
        req_data: offset_of!(lwhost_store_req, data) as u32,
        req_len: offset_of!(lwhost_store_req, len) as u32,
        req_reserved: offset_of!(lwhost_store_req, reserved) as u32,
        thread_slots: THREAD_SLOTS as u32,
        thread_base: addr(THREADS.0.get()),
        thread_stride: size_of::<ThreadSlot>() as u32,
        thread_stack: offset_of!(ThreadSlot, stack) as u32,
        thread_stack_size: STACK_BYTES as u32,
        thread_tls: offset_of!(ThreadSlot, tls) as u32,
        thread_tls_size: TLS_BYTES as u32,
        thread_scratch: offset_of!(ThreadSlot, scratch) as u32,
        thread_scratch_size: SCRATCH_BYTES as u32,
        thread_owner: addr(THREAD_OWNER.as_ptr()),
        sentinel: LAYOUT_SENTINEL,
    }
}

/// Bytes of linear memory right now.
#[cfg(target_arch = "wasm32")]
fn memory_bytes() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65536
}
#[cfg(not(target_arch = "wasm32"))]
fn memory_bytes() -> u64 {
    0
}

/// `len` bytes at `ptr` of this memory as a slice, or `-EFAULT` when the
/// range is null, wraps, runs past the memory's end, or touches the region
/// (the glue never passes region addresses; garbage must not corrupt it).
fn checked_range(ptr: u32, len: u32) -> Result<(*mut u8, usize), i32> {
    if len == 0 {
        return Ok((core::ptr::NonNull::<u8>::dangling().as_ptr(), 0));
    }
    let start = ptr as u64;
    let end = start + len as u64;
    if ptr == 0 || end > memory_bytes() {
        return Err(-EFAULT);
    }
    let region_start = region_ptr() as usize as u64;
    let region_end = region_start + size_of::<lwhost_shm>() as u64;
    if start < region_end && end > region_start {
        return Err(-EFAULT);
    }
    Ok((ptr as usize as *mut u8, len as usize))
}

/// # Safety
/// The caller's thread must own the checked range for the call's duration
/// (its scratch area: the glue gives each thread its own).
unsafe fn slice<'a>(ptr: u32, len: u32) -> Result<&'a [u8], i32> {
    let (p, n) = checked_range(ptr, len)?;
    // SAFETY: in bounds of linear memory (checked), owned by this thread.
    Ok(unsafe { core::slice::from_raw_parts(p, n) })
}

/// # Safety
/// As [`slice`].
unsafe fn slice_mut<'a>(ptr: u32, len: u32) -> Result<&'a mut [u8], i32> {
    let (p, n) = checked_range(ptr, len)?;
    // SAFETY: in bounds of linear memory (checked), owned by this thread.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, n) })
}

/// `f` applied to guest memory `[ptr, ptr + len)`, or `-EFAULT` if that is
/// not inside linear memory.
///
/// # Safety
/// As [`slice`].
unsafe fn with_slice(ptr: u32, len: u32, f: impl FnOnce(&[u8]) -> i32) -> i32 {
    // SAFETY: passed on from the caller.
    unsafe { slice(ptr, len) }.map_or_else(|e| e, f)
}

/// As [`with_slice`], writable.
///
/// # Safety
/// As [`slice`].
unsafe fn with_slice_mut(ptr: u32, len: u32, f: impl FnOnce(&mut [u8]) -> i32) -> i32 {
    // SAFETY: passed on from the caller.
    unsafe { slice_mut(ptr, len) }.map_or_else(|e| e, f)
}

/// The layout (see [`Layout`]); its address in this memory.
#[no_mangle]
pub extern "C" fn lw_layout() -> u32 {
    let l = LAYOUT.0.get();
    // SAFETY: see LayoutCell; a plain write of a POD value.
    unsafe { (*l).write(layout()) };
    addr(l)
}

/// Main side: publishes the region header and `main_alive` (once, before
/// any worker calls).
#[no_mangle]
pub extern "C" fn lw_region_init() -> u32 {
    let w = worker();
    w.region().init_header();
    addr(region_ptr())
}

/// Main side going away: every later call fails `-ECONNRESET`/`-EIO`.
#[no_mangle]
pub extern "C" fn lw_region_detach() {
    use core::sync::atomic::Ordering;
    let w = worker();
    w.region().main_alive().store(0, Ordering::Release);
    w.region().ring_guest();
}

#[no_mangle]
pub extern "C" fn lw_net_open(host: u32, host_len: u32, port: u32, flags: u32, timeout_ms: u32) -> i32 {
    // SAFETY: host is in this thread's scratch (glue contract), checked there.
    unsafe {
        with_slice(host, host_len, |h| {
            if h.is_empty() {
                -EINVAL
            } else {
                worker().net_open(h, port, flags, timeout_ms)
            }
        })
    }
}

#[no_mangle]
pub extern "C" fn lw_net_write(id: i32, buf: u32, len: u32) -> i32 {
    // SAFETY: as lw_net_open.
    unsafe { with_slice(buf, len, |b| worker().net_write(id, b)) }
}

#[no_mangle]
pub extern "C" fn lw_net_read(id: i32, buf: u32, len: u32) -> i32 {
    // SAFETY: as lw_net_open.
    unsafe { with_slice_mut(buf, len, |b| worker().net_read(id, b)) }
}

#[no_mangle]
pub extern "C" fn lw_net_poll(id: i32) -> i32 {
    worker().net_poll(id)
}

#[no_mangle]
pub extern "C" fn lw_net_shutdown(id: i32) -> i32 {
    worker().net_shutdown(id)
}

#[no_mangle]
pub extern "C" fn lw_net_close(id: i32) {
    worker().net_close(id)
}

/// `req` is a `struct lwhost_store_req` whose pointers are offsets into the
/// area `[area, area + area_len)` (the glue copies key, cursor and data
/// there); lwhost resolves and bounds-checks them.
#[no_mangle]
pub extern "C" fn lw_store_submit(req: u32, area: u32, area_len: u32) -> i32 {
    // SAFETY: as lw_net_open.
    let (req_bytes, area) = match unsafe {
        (
            slice(req, size_of::<lwhost_store_req>() as u32),
            slice(area, area_len),
        )
    } {
        (Ok(r), Ok(a)) => (r, a),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if req_bytes.is_empty() {
        return -EFAULT;
    }
    // SAFETY: the bytes are a whole lwhost_store_req (plain integers, any
    // bit pattern valid); read_unaligned needs no alignment.
    let raw: lwhost_store_req = unsafe { core::ptr::read_unaligned(req_bytes.as_ptr().cast()) };
    match StoreRequest::from_guest(&raw, area) {
        Ok(r) => worker().store_submit(&r),
        Err(e) => e,
    }
}

#[no_mangle]
pub extern "C" fn lw_store_poll(ticket: i32, buf: u32, len: u32) -> i32 {
    // SAFETY: as lw_net_open.
    unsafe { with_slice_mut(buf, len, |b| worker().store_poll(ticket, b)) }
}

/// Sleeps (workers only) until `guest_doorbell != last_seen` or the timeout.
#[no_mangle]
pub extern "C" fn lw_wait_guest_doorbell(last_seen: u32, timeout_ms: u32) -> u32 {
    worker().wait_guest_doorbell(last_seen, Duration::from_millis(timeout_ms.into()))
}

#[no_mangle]
pub extern "C" fn lw_guest_doorbell() -> u32 {
    worker().guest_doorbell()
}

const _: () = {
    assert!(TLS_BYTES.is_multiple_of(16) && STACK_BYTES.is_multiple_of(16));
    assert!(SCRATCH_BYTES >= 64 + 2 * LWHOST_KEY_MAX as usize + LWHOST_STORE_BUF as usize);
};
