//! A fake wasm kernel for in the browser tests and benchmark: a
//! small module that imports the host ABI from module "env" exactly as the
//! lwnet driver does (same names, same signatures, pointers into its own
//! shared memory) and drives it like a driver would: open, poll, wait for a
//! wake-up, write, read to end of stream, store requests to completion.
//!
//! Waiting is the only thing it does differently: it has no IRQ and no
//! kernel timer, so it sleeps on the guest doorbell through `lw_test_wait`
//! (the glue's `waitGuestDoorbell`).
#![no_std]

use core::cell::UnsafeCell;

use lwabi::{
    lwhost_store_req, LWHOST_OPEN_TLS, LWHOST_POLL_ERR, LWHOST_POLL_ERRNO_SHIFT, LWHOST_POLL_OUT,
    LWHOST_STORE_BUF, LWHOST_STORE_COMMIT, LWHOST_STORE_DELETE, LWHOST_STORE_LIST, LWHOST_STORE_READ,
    LWHOST_STORE_TRUNC, LWHOST_STORE_WRITE,
};

use lwabi::errno::{EAGAIN, EBUSY, EINPROGRESS, ETIMEDOUT};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn wasm_net_open_ex(host: *const u8, host_len: u32, port: u32, flags: u32, timeout_ms: u32) -> i32;
    fn wasm_net_write(id: i32, buf: *const u8, len: i32) -> i32;
    fn wasm_net_read(id: i32, buf: *mut u8, count: i32) -> i32;
    fn wasm_net_poll(id: i32) -> i32;
    fn wasm_net_shutdown(id: i32) -> i32;
    fn wasm_net_close(id: i32);
    fn wasm_store_submit(req: *const lwhost_store_req) -> i32;
    fn wasm_store_poll(ticket: i32, buf: *mut u8, len: u32) -> i32;
    /// Sleeps until the guest doorbell differs from `last` (or timeout).
    fn lw_test_wait(last: u32, timeout_ms: u32) -> u32;
    /// The guest doorbell now.
    fn lw_test_doorbell() -> u32;
    /// Milliseconds on a monotonic clock.
    fn lw_test_now_ms() -> f64;
}

/// Where the test harness puts inputs and finds outputs.
const BUF_BYTES: usize = 1 << 20;
#[repr(C, align(16))]
struct Buf(UnsafeCell<[u8; BUF_BYTES]>);
// SAFETY: one harness thread per instance uses it at a time.
unsafe impl Sync for Buf {}
static BUF: Buf = Buf(UnsafeCell::new([0; BUF_BYTES]));

#[no_mangle]
pub extern "C" fn fake_kernel_buf() -> *mut u8 {
    BUF.0.get().cast()
}

#[no_mangle]
pub extern "C" fn fake_kernel_buf_len() -> u32 {
    BUF_BYTES as u32
}

/// Runs `step` until it returns something other than `-again`, sleeping on
/// the doorbell in between; `-ETIMEDOUT` after `timeout_ms`.
fn until_ready(again: i32, timeout_ms: u32, mut step: impl FnMut() -> i32) -> i32 {
    // SAFETY: the imports take and return plain numbers.
    let deadline = unsafe { lw_test_now_ms() } + timeout_ms as f64;
    loop {
        let bell = unsafe { lw_test_doorbell() };
        let r = step();
        if r != -again {
            return r;
        }
        let now = unsafe { lw_test_now_ms() };
        if now >= deadline {
            return -ETIMEDOUT;
        }
        unsafe { lw_test_wait(bell, (deadline - now).clamp(1.0, 100.0) as u32) };
    }
}

/// Opens host:port and waits until connected; the id or -errno.
///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
pub unsafe extern "C" fn fake_kernel_connect(
    host: *const u8,
    host_len: u32,
    port: u32,
    tls: u32,
    timeout_ms: u32,
) -> i32 {
    let flags = if tls != 0 { LWHOST_OPEN_TLS } else { 0 };
    // SAFETY: host/host_len describe bytes of this memory (the harness's).
    let id = unsafe { wasm_net_open_ex(host, host_len, port, flags, timeout_ms) };
    if id < 0 {
        return id;
    }
    let r = until_ready(EAGAIN, timeout_ms, || {
        // SAFETY: plain numbers.
        let p = unsafe { wasm_net_poll(id) };
        if p < 0 {
            p
        } else if p & LWHOST_POLL_ERR as i32 != 0 {
            -(p >> LWHOST_POLL_ERRNO_SHIFT)
        } else if p & LWHOST_POLL_OUT as i32 != 0 {
            0
        } else {
            -EAGAIN
        }
    });
    if r < 0 {
        // SAFETY: plain numbers.
        unsafe { wasm_net_close(id) };
        return r;
    }
    id
}

/// Writes all of `buf`; 0 or -errno.
///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
pub unsafe extern "C" fn fake_kernel_write_all(id: i32, buf: *const u8, len: u32, timeout_ms: u32) -> i32 {
    let mut done = 0u32;
    while done < len {
        let r = until_ready(EAGAIN, timeout_ms, || {
            // SAFETY: the range is inside the caller's buffer.
            unsafe { wasm_net_write(id, buf.add(done as usize), (len - done) as i32) }
        });
        if r < 0 {
            return r;
        }
        done += r as u32;
    }
    0
}

/// Reads to end of stream in `chunk`-byte reads into `out` (wrapping around
/// `cap` bytes, so a benchmark can stream more than fits); the total read
/// or -errno. Only the first `cap` bytes are kept in order.
///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
pub unsafe extern "C" fn fake_kernel_read_all(
    id: i32,
    out: *mut u8,
    cap: u32,
    chunk: u32,
    timeout_ms: u32,
) -> f64 {
    let mut total: u64 = 0;
    loop {
        let at = (total % cap as u64) as u32;
        let want = chunk.min(cap - at);
        let r = until_ready(EAGAIN, timeout_ms, || {
            // SAFETY: [at, at+want) is inside the caller's buffer.
            unsafe { wasm_net_read(id, out.add(at as usize), want as i32) }
        });
        if r < 0 {
            return r as f64;
        }
        if r == 0 {
            return total as f64;
        }
        total += r as u64;
    }
}

/// One HTTP exchange: connect, send `req`, read the response to EOF into
/// `out`; bytes read or -errno.
///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn fake_kernel_http(
    host: *const u8,
    host_len: u32,
    port: u32,
    req: *const u8,
    req_len: u32,
    out: *mut u8,
    cap: u32,
    timeout_ms: u32,
) -> i32 {
    // SAFETY: forwarded from our caller.
    let id = unsafe { fake_kernel_connect(host, host_len, port, 0, timeout_ms) };
    if id < 0 {
        return id;
    }
    // SAFETY: forwarded from our caller.
    let mut r = unsafe { fake_kernel_write_all(id, req, req_len, timeout_ms) };
    if r == 0 {
        // SAFETY: plain numbers.
        r = unsafe { wasm_net_shutdown(id) };
    }
    let n = if r == 0 {
        // SAFETY: forwarded from our caller.
        (unsafe { fake_kernel_read_all(id, out, cap, 4096, timeout_ms) }) as i32
    } else {
        r
    };
    // SAFETY: plain numbers.
    unsafe { wasm_net_close(id) };
    n
}

/// Calls `wasm_net_poll(id)` `n` times (the latency benchmark); the last result.
#[no_mangle]
pub extern "C" fn fake_kernel_poll_loop(id: i32, n: u32) -> i32 {
    let mut last = 0;
    for _ in 0..n {
        // SAFETY: plain numbers.
        last = unsafe { wasm_net_poll(id) };
    }
    last
}

#[no_mangle]
pub extern "C" fn fake_kernel_close(id: i32) {
    // SAFETY: plain numbers.
    unsafe { wasm_net_close(id) }
}

/// Submits one store request and polls it to completion; its result.
fn store_call(req: &lwhost_store_req, out: *mut u8, out_len: u32, timeout_ms: u32) -> i32 {
    // SAFETY: req is a live struct; its pointers are the caller's buffers.
    let ticket = until_ready(EBUSY, timeout_ms, || unsafe { wasm_store_submit(req) });
    if ticket < 0 {
        return ticket;
    }
    // SAFETY: out/out_len describe the caller's buffer.
    until_ready(EINPROGRESS, timeout_ms, || unsafe {
        wasm_store_poll(ticket, out, out_len)
    })
}

fn req(op: u32, key: *const u8, key_len: u32) -> lwhost_store_req {
    lwhost_store_req {
        op,
        key: key as usize as u64,
        key_len,
        ..Default::default()
    }
}

/// Runs `step(offset, length)` over `total` bytes in chunks of at most
/// `LWHOST_STORE_BUF` (one call when `total` is 0). `step` answers how many
/// bytes it moved, or -errno; a chunk moved short ends the loop. The bytes
/// moved, or the first -errno.
fn in_chunks(total: u32, mut step: impl FnMut(u32, u32) -> i32) -> i32 {
    let mut off = 0u32;
    loop {
        let n = (total - off).min(LWHOST_STORE_BUF);
        let res = step(off, n);
        if res < 0 {
            return res;
        }
        off += res as u32;
        if (res as u32) < n || off == total {
            return off as i32;
        }
    }
}

/// Writes a whole value in chunks (TRUNC first, COMMIT last); 0 or -errno.
///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
pub unsafe extern "C" fn fake_kernel_store_put(
    key: *const u8,
    key_len: u32,
    data: *const u8,
    len: u32,
    timeout_ms: u32,
) -> i32 {
    let put = in_chunks(len, |off, n| {
        let mut flags = 0;
        if off == 0 {
            flags |= LWHOST_STORE_TRUNC;
        }
        if off + n == len {
            flags |= LWHOST_STORE_COMMIT;
        }
        let mut r = req(LWHOST_STORE_WRITE, key, key_len);
        r.flags = flags;
        r.offset = off as u64;
        // SAFETY: inside the caller's buffer.
        r.data = unsafe { data.add(off as usize) } as usize as u64;
        r.len = n;
        let res = store_call(&r, core::ptr::null_mut(), 0, timeout_ms);
        // A write answers 0 when the whole chunk is stored.
        if res < 0 {
            res
        } else {
            n as i32
        }
    });
    put.min(0)
}

/// Reads a whole value into `out` in chunks; its size or -errno.
///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
pub unsafe extern "C" fn fake_kernel_store_get(
    key: *const u8,
    key_len: u32,
    out: *mut u8,
    cap: u32,
    timeout_ms: u32,
) -> i32 {
    in_chunks(cap, |off, want| {
        let mut r = req(LWHOST_STORE_READ, key, key_len);
        r.offset = off as u64;
        r.len = want;
        // SAFETY: inside the caller's buffer.
        store_call(&r, unsafe { out.add(off as usize) }, want, timeout_ms)
    })
}

/// Keys starting with `prefix`, NUL-separated, into `out`; bytes or -errno.
///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
pub unsafe extern "C" fn fake_kernel_store_list(
    prefix: *const u8,
    prefix_len: u32,
    out: *mut u8,
    cap: u32,
    timeout_ms: u32,
) -> i32 {
    let mut r = req(LWHOST_STORE_LIST, prefix, prefix_len);
    r.len = cap.min(LWHOST_STORE_BUF);
    store_call(&r, out, r.len, timeout_ms)
}

///
/// # Safety
/// Pointer arguments must be ranges of this module's memory (the harness's buffers).
#[no_mangle]
pub unsafe extern "C" fn fake_kernel_store_delete(key: *const u8, key_len: u32, timeout_ms: u32) -> i32 {
    store_call(
        &req(LWHOST_STORE_DELETE, key, key_len),
        core::ptr::null_mut(),
        0,
        timeout_ms,
    )
}
