//! The shared region (`struct lwhost_shm`, defined in the kernel patch and
//! read through `lwabi`): ownership, header initialisation and typed views
//! of its words. Every word two sides touch is accessed atomically; byte
//! arrays (host names, ring data, store data) are copied only by the side
//! that owns them at that moment under the protocol of lwnet.rst.

use core::ptr::{addr_of_mut, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use lwabi::{
    lwhost_conn, lwhost_ring, lwhost_shm, lwhost_store_slot, LWHOST_CONNS, LWHOST_RING_SIZE,
    LWHOST_SHM_MAGIC, LWHOST_SHM_VERSION, LWHOST_STORE_SLOTS,
};

/// Bytes in the shared region.
pub const SHM_SIZE: usize = core::mem::size_of::<lwhost_shm>();
/// Connection slots.
pub const CONNS: usize = LWHOST_CONNS as usize;
/// Store request slots.
pub const STORE_SLOTS: usize = LWHOST_STORE_SLOTS as usize;
/// Bytes per ring direction.
pub const RING_SIZE: u32 = LWHOST_RING_SIZE;

/// The shared region, either a memfd mapping this value owns or memory an
/// embedder provides (a SharedArrayBuffer-backed linear memory, a test).
pub struct Region {
    shm: NonNull<lwhost_shm>,
    #[cfg(not(target_arch = "wasm32"))]
    mapping: Option<native::Mapping>,
}

// SAFETY: the region is memory shared between threads by design; every
// access through this type is atomic or follows the single-owner protocol.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

/// The reasons a region can be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// The pointer is not aligned for `struct lwhost_shm`.
    Misaligned,
    /// Too small for `struct lwhost_shm`.
    TooSmall,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegionError::Misaligned => write!(f, "shared region is misaligned"),
            RegionError::TooSmall => write!(f, "shared region is smaller than {SHM_SIZE} bytes"),
        }
    }
}

impl Region {
    /// Wraps memory an embedder provides.
    ///
    /// # Safety
    /// `ptr` must point to at least [`SHM_SIZE`] bytes, zeroed or holding a
    /// region, that stay mapped (and are only accessed through the lwhost
    /// protocol) for as long as this value lives.
    pub unsafe fn from_raw(ptr: *mut lwhost_shm) -> Result<Region, RegionError> {
        let shm = NonNull::new(ptr).ok_or(RegionError::Misaligned)?;
        if !(ptr as usize).is_multiple_of(core::mem::align_of::<lwhost_shm>()) {
            return Err(RegionError::Misaligned);
        }
        Ok(Region {
            shm,
            #[cfg(not(target_arch = "wasm32"))]
            mapping: None,
        })
    }

    /// The raw region, for embedders that hand it to foreign code.
    pub fn as_ptr(&self) -> *mut lwhost_shm {
        self.shm.as_ptr()
    }

    /// Main side: publishes the header (magic, version, size) and sets
    /// `main_alive`. Connection and store slots are left as they are (zero
    /// in a fresh region).
    pub fn init_header(&self) {
        let p = self.shm.as_ptr();
        // SAFETY: in-bounds field addresses of a live region.
        unsafe {
            word(addr_of_mut!((*p).magic)).store(LWHOST_SHM_MAGIC, Ordering::Relaxed);
            word(addr_of_mut!((*p).version)).store(LWHOST_SHM_VERSION, Ordering::Relaxed);
            word(addr_of_mut!((*p).size)).store(SHM_SIZE as u32, Ordering::Relaxed);
        }
        self.main_alive().store(1, Ordering::Release);
    }

    /// Whether the header says this is a region of the layout we were built
    /// with (checked by the side that did not initialise it).
    pub fn header_ok(&self) -> bool {
        let p = self.shm.as_ptr();
        // SAFETY: in-bounds field addresses of a live region.
        unsafe {
            word(addr_of_mut!((*p).magic)).load(Ordering::Acquire) == LWHOST_SHM_MAGIC
                && word(addr_of_mut!((*p).version)).load(Ordering::Relaxed) == LWHOST_SHM_VERSION
                && word(addr_of_mut!((*p).size)).load(Ordering::Relaxed) == SHM_SIZE as u32
        }
    }

    /// 1 while the main side serves the region.
    pub fn main_alive(&self) -> &AtomicU32 {
        // SAFETY: in-bounds field of a live region.
        unsafe { word(addr_of_mut!((*self.shm.as_ptr()).main_alive)) }
    }

    /// Worker bumps and wakes: the main side has work.
    pub fn host_doorbell(&self) -> &AtomicU32 {
        // SAFETY: in-bounds field of a live region.
        unsafe { word(addr_of_mut!((*self.shm.as_ptr()).host_doorbell)) }
    }

    /// Non-zero while the main side sleeps on `host_doorbell`.
    pub fn host_waiting(&self) -> &AtomicU32 {
        // SAFETY: in-bounds field of a live region.
        unsafe { word(addr_of_mut!((*self.shm.as_ptr()).host_waiting)) }
    }

    /// Main side bumps and wakes: the guest has news.
    pub fn guest_doorbell(&self) -> &AtomicU32 {
        // SAFETY: in-bounds field of a live region.
        unsafe { word(addr_of_mut!((*self.shm.as_ptr()).guest_doorbell)) }
    }

    /// Connection slot `slot`, or None past the end.
    pub fn conn(&self, slot: usize) -> Option<Conn<'_>> {
        // SAFETY: in-bounds field of a live region.
        let array = unsafe { addr_of_mut!((*self.shm.as_ptr()).conn) };
        element(array.cast::<lwhost_conn>(), CONNS, slot).map(Conn::new)
    }

    /// Store request slot `slot`, or None past the end.
    pub fn store_slot(&self, slot: usize) -> Option<StoreSlot<'_>> {
        // SAFETY: in-bounds field of a live region.
        let array = unsafe { addr_of_mut!((*self.shm.as_ptr()).store) };
        element(array.cast::<lwhost_store_slot>(), STORE_SLOTS, slot).map(StoreSlot::new)
    }

    /// Main side: bumps `guest_doorbell` and wakes every waiter on it.
    pub fn ring_guest(&self) {
        self.guest_doorbell().fetch_add(1, Ordering::SeqCst);
        crate::futex::wake_all(self.guest_doorbell());
    }

    /// Worker side: bumps `host_doorbell` and wakes the main side if it
    /// sleeps. SeqCst pairs with the waiter's store to `host_waiting` and
    /// re-check, so a bump is never missed.
    pub fn ring_host(&self) {
        self.host_doorbell().fetch_add(1, Ordering::SeqCst);
        if self.host_waiting().load(Ordering::SeqCst) != 0 {
            crate::futex::wake(self.host_doorbell(), 1);
        }
    }
}

/// # Safety
/// `p` must be a valid, aligned u32 in a live region.
unsafe fn word<'a>(p: *mut u32) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees validity; AtomicU32 has u32's layout.
    unsafe { AtomicU32::from_ptr(p) }
}

/// Element `slot` of the array of `len` elements at `first`, or None past its end
/// (so the pointer stays inside the array).
fn element<T>(first: *mut T, len: usize, slot: usize) -> Option<*mut T> {
    (slot < len).then(|| first.wrapping_add(slot))
}

/// A view of one `struct lwhost_conn`.
#[derive(Clone, Copy)]
pub struct Conn<'r> {
    raw: *mut lwhost_conn,
    _region: core::marker::PhantomData<&'r Region>,
}

macro_rules! conn_words {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        pub fn $name(&self) -> &'r AtomicU32 {
            // SAFETY: in-bounds u32 (or i32) field of a live slot.
            unsafe { word(addr_of_mut!((*self.raw).$name).cast()) }
        }
    )*};
}

impl<'r> Conn<'r> {
    fn new(raw: *mut lwhost_conn) -> Self {
        Conn {
            raw,
            _region: core::marker::PhantomData,
        }
    }

    conn_words!(
        /// `LWHOST_CONN_*`.
        state,
        /// Bumped by the worker at each claim.
        generation,
        /// `LWHOST_WF_*`, worker-written.
        worker_flags,
        /// `LWHOST_MF_*`, main-written.
        main_flags,
        /// Positive errno when FAILED (an i32 in the header).
        error,
        port,
        open_flags,
        timeout_ms,
        host_len,
    );

    /// The host name buffer (`LWHOST_HOST_MAX` bytes), written by the worker
    /// while the slot is CLAIMED, read by the main side after REQUESTED.
    pub fn host_ptr(&self) -> *mut u8 {
        // SAFETY: in-bounds field address.
        unsafe { addr_of_mut!((*self.raw).host).cast() }
    }

    /// Worker -> main bytes.
    pub fn tx(&self) -> Ring<'r> {
        // SAFETY: in-bounds field addresses.
        unsafe {
            Ring::new(
                addr_of_mut!((*self.raw).tx),
                addr_of_mut!((*self.raw).tx_data).cast(),
            )
        }
    }

    /// Main -> worker bytes.
    pub fn rx(&self) -> Ring<'r> {
        // SAFETY: in-bounds field addresses.
        unsafe {
            Ring::new(
                addr_of_mut!((*self.raw).rx),
                addr_of_mut!((*self.raw).rx_data).cast(),
            )
        }
    }
}

/// A single-producer single-consumer byte ring of `RING_SIZE` bytes.
/// `head`/`tail` count bytes ever written/read, mod 2^32.
#[derive(Clone, Copy)]
pub struct Ring<'r> {
    head: &'r AtomicU32,
    tail: &'r AtomicU32,
    data: *mut u8,
}

impl<'r> Ring<'r> {
    /// # Safety
    /// Both pointers must be in-bounds fields of a live slot.
    unsafe fn new(ring: *mut lwhost_ring, data: *mut u8) -> Ring<'r> {
        // SAFETY: per the caller.
        unsafe {
            Ring {
                head: word(addr_of_mut!((*ring).head)),
                tail: word(addr_of_mut!((*ring).tail)),
                data,
            }
        }
    }

    /// The producer's counter.
    pub fn head(&self) -> &'r AtomicU32 {
        self.head
    }

    /// The consumer's counter.
    pub fn tail(&self) -> &'r AtomicU32 {
        self.tail
    }

    /// Bytes readable, as seen by the consumer; `None` if the counters are
    /// inconsistent (the other side wrote garbage).
    pub fn readable(&self) -> Option<u32> {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        let used = head.wrapping_sub(tail);
        (used <= RING_SIZE).then_some(used)
    }

    /// Free bytes, as seen by the producer; `None` if inconsistent.
    pub fn writable(&self) -> Option<u32> {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Relaxed);
        let used = head.wrapping_sub(tail);
        (used <= RING_SIZE).then(|| RING_SIZE - used)
    }

    /// Producer: copies as much of `src` as fits and publishes it. Returns
    /// the bytes written, or None if the counters are inconsistent.
    pub fn push(&self, src: &[u8]) -> Option<usize> {
        let free = self.writable()? as usize;
        let n = src.len().min(free);
        if n == 0 {
            return Some(0);
        }
        let head = self.head.load(Ordering::Relaxed);
        let at = (head % RING_SIZE) as usize;
        let first = n.min(RING_SIZE as usize - at);
        // SAFETY: [at, at+first) and [0, n-first) are inside the data array
        // and free, so the consumer does not read them until we publish.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.data.add(at), first);
            core::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.data, n - first);
        }
        self.head.store(head.wrapping_add(n as u32), Ordering::Release);
        Some(n)
    }

    /// Consumer: copies up to `dst.len()` bytes out and frees them. Returns
    /// the bytes read, or None if the counters are inconsistent.
    pub fn pop(&self, dst: &mut [u8]) -> Option<usize> {
        let n = self.peek(dst)?;
        self.consume(n as u32);
        Some(n)
    }

    /// Consumer: copies up to `dst.len()` bytes out without freeing them.
    pub fn peek(&self, dst: &mut [u8]) -> Option<usize> {
        let avail = self.readable()? as usize;
        let n = dst.len().min(avail);
        let tail = self.tail.load(Ordering::Relaxed);
        let at = (tail % RING_SIZE) as usize;
        let first = n.min(RING_SIZE as usize - at);
        // SAFETY: the bytes are published (acquire on head) and in bounds.
        unsafe {
            core::ptr::copy_nonoverlapping(self.data.add(at), dst.as_mut_ptr(), first);
            core::ptr::copy_nonoverlapping(self.data, dst.as_mut_ptr().add(first), n - first);
        }
        Some(n)
    }

    /// Consumer: frees `n` bytes already copied out.
    pub fn consume(&self, n: u32) {
        let tail = self.tail.load(Ordering::Relaxed);
        self.tail.store(tail.wrapping_add(n), Ordering::Release);
    }

    /// Teardown (slot exclusively owned): empties the ring.
    pub fn reset(&self) {
        self.head.store(0, Ordering::Relaxed);
        self.tail.store(0, Ordering::Relaxed);
    }
}

/// A view of one `struct lwhost_store_slot`.
#[derive(Clone, Copy)]
pub struct StoreSlot<'r> {
    raw: *mut lwhost_store_slot,
    _region: core::marker::PhantomData<&'r Region>,
}

impl<'r> StoreSlot<'r> {
    fn new(raw: *mut lwhost_store_slot) -> Self {
        StoreSlot {
            raw,
            _region: core::marker::PhantomData,
        }
    }

    conn_words!(
        /// `LWHOST_SLOT_*`.
        state,
        /// Bumped by the worker at each claim.
        generation,
        /// `LWHOST_STORE_*`.
        op,
        /// `LWHOST_STORE_TRUNC` / `_COMMIT` / `_LAZY`.
        flags,
        /// Key (or list prefix) bytes.
        key_len,
        /// List cursor bytes, stored at `key[key_len]`.
        after_len,
        /// Write: data bytes; otherwise the output capacity.
        len,
        /// DONE: bytes (>= 0) or -errno (an i32 in the header).
        result,
    );

    /// The 64-bit offset; only touched by the slot's current owner.
    pub fn offset(&self) -> &'r AtomicU64 {
        // SAFETY: in-bounds, 8-aligned u64 field of a live slot.
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.raw).offset)) }
    }

    /// `key[2 * LWHOST_KEY_MAX]`: key then list cursor.
    pub fn key_ptr(&self) -> *mut u8 {
        // SAFETY: in-bounds field address.
        unsafe { addr_of_mut!((*self.raw).key).cast() }
    }

    /// Capacity of the key buffer.
    pub const KEY_CAP: usize = 2 * lwabi::LWHOST_KEY_MAX as usize;

    /// `data[LWHOST_STORE_BUF]`.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: in-bounds field address.
        unsafe { addr_of_mut!((*self.raw).data).cast() }
    }

    /// Capacity of the data buffer.
    pub const DATA_CAP: usize = lwabi::LWHOST_STORE_BUF as usize;
}

// Compile-time guards on assumptions the code above makes about the layout.
const _: () = {
    assert!(RING_SIZE.is_power_of_two());
    assert!(core::mem::align_of::<lwhost_shm>() >= 8);
};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::{Region, SHM_SIZE};
    use core::ptr::NonNull;
    use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
    use rustix::fs::{self, MemfdFlags};
    use rustix::mm::{self, MapFlags, ProtFlags};
    use std::io;

    /// A MAP_SHARED mapping of a memfd, unmapped on drop.
    pub(super) struct Mapping {
        pub(super) fd: OwnedFd,
        pub(super) addr: NonNull<core::ffi::c_void>,
        pub(super) len: usize,
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: we created this mapping and nothing refers to it any
            // more (the Region that owns us is being dropped).
            // A failure leaves a mapping behind; there is no one to tell.
            let _ = unsafe { mm::munmap(self.addr.as_ptr(), self.len) };
        }
    }

    impl Region {
        /// A fresh, zeroed region in a new memfd (CLOEXEC), mapped shared.
        /// The header is not yet initialised: the main side does that.
        pub fn new_memfd() -> io::Result<Region> {
            let fd = fs::memfd_create("lwhost-shm", MemfdFlags::CLOEXEC)?;
            fs::ftruncate(&fd, SHM_SIZE as u64)?;
            Self::map(fd)
        }

        /// Maps a region another process created and sent us (the side that
        /// plays user-mode Linux). Fails if the file is too small.
        pub fn map_fd(fd: OwnedFd) -> io::Result<Region> {
            let st = fs::fstat(&fd)?;
            if (st.st_size as u64) < SHM_SIZE as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("shared region is {} bytes, need {SHM_SIZE}", st.st_size),
                ));
            }
            Self::map(fd)
        }

        fn map(fd: OwnedFd) -> io::Result<Region> {
            // SAFETY: a new mapping at an address the kernel picks.
            let addr = unsafe {
                mm::mmap(
                    core::ptr::null_mut(),
                    SHM_SIZE,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED,
                    &fd,
                    0,
                )?
            };
            let addr = NonNull::new(addr).ok_or_else(|| io::Error::other("mmap returned null"))?;
            Ok(Region {
                shm: addr.cast(),
                mapping: Some(Mapping {
                    fd,
                    addr,
                    len: SHM_SIZE,
                }),
            })
        }

        /// The memfd behind a region made by [`Region::new_memfd`] or
        /// [`Region::map_fd`].
        pub fn fd(&self) -> Option<BorrowedFd<'_>> {
            self.mapping.as_ref().map(|m| m.fd.as_fd())
        }
    }
}
