//! The no_std runtime of the tools: allocator, panic handler, entry glue
//! (`_start` on linux-wasm, C `main` under musl's start-up code on x86_64)
//! and output. The bins expand [`crate::entry!`] only outside `cfg(test)`,
//! so their unit tests run under std.

use crate::sys;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The global allocator: dlmalloc over whole anonymous mappings
/// ([`sys::mmap_anon`]). linux-wasm's kernel owns the memory, so a program
/// never grows it (`memory.grow`) and must not use `brk`, whose area is the
/// bottom of its 8 KiB stack; on NOMMU a mapping is unmapped only whole, so
/// segments are never trimmed or split. The same allocator serves x86_64.
pub struct Allocator {
    lock: AtomicBool,
    heap: UnsafeCell<dlmalloc::Dlmalloc<MmapSystem>>,
}

// SAFETY: every access to `heap` holds `lock`.
unsafe impl Sync for Allocator {}

impl Default for Allocator {
    fn default() -> Self {
        Self::new()
    }
}

impl Allocator {
    /// A new, empty heap (for the `#[global_allocator]` static).
    pub const fn new() -> Allocator {
        Allocator {
            lock: AtomicBool::new(false),
            heap: UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(MmapSystem)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut dlmalloc::Dlmalloc<MmapSystem>) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: the lock gives exclusive access.
        let r = f(unsafe { &mut *self.heap.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

// SAFETY: forwards to dlmalloc, which honours size and alignment.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: dlmalloc's contract is GlobalAlloc's.
        self.with(|h| unsafe { h.malloc(layout.size(), layout.align()) })
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        self.with(|h| unsafe { h.calloc(layout.size(), layout.align()) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from this allocator with this layout.
        self.with(|h| unsafe { h.free(ptr, layout.size(), layout.align()) })
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        self.with(|h| unsafe { h.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

/// dlmalloc's system interface: one anonymous mapping per segment.
pub struct MmapSystem;

// SAFETY: regions come from mmap, are page-aligned, zeroed and owned here.
unsafe impl dlmalloc::Allocator for MmapSystem {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let size = size.div_ceil(PAGE) * PAGE;
        let p = sys::mmap_anon(size);
        if p.is_null() {
            (core::ptr::null_mut(), 0, 0)
        } else {
            (p, size, 0)
        }
    }
    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        core::ptr::null_mut()
    }
    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }
    // dlmalloc's trait method is safe; it passes only regions alloc() made.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    fn free(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: dlmalloc frees only whole segments it got from alloc().
        unsafe { sys::munmap(ptr, size) == 0 }
    }
    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }
    fn allocates_zeros(&self) -> bool {
        true
    }
    fn page_size(&self) -> usize {
        PAGE
    }
}

// x86_64: musl supplies only the start-up code (crt1 -> __libc_start_main ->
// main) and memcpy & co.; no other C library function is called.
#[cfg(not(target_arch = "wasm32"))]
#[link(name = "c")]
extern "C" {}

/// The page size of both targets (linux-wasm's PAGE_SIZE is 4 KiB too).
pub const PAGE: usize = 4096;

/// The process environment (`envp`), set once at start-up.
static ENVP: AtomicUsize = AtomicUsize::new(0);

/// getenv(3) over the envp the kernel passed.
///
/// # Safety
/// `name` is NUL-terminated.
pub unsafe fn getenv_raw(name: *const u8) -> *const u8 {
    // SAFETY: NUL-terminated by contract.
    let name = unsafe { cstr_bytes(name) };
    let mut p = ENVP.load(Ordering::Relaxed) as *const *const u8;
    if p.is_null() || name.is_empty() || name.contains(&b'=') {
        return core::ptr::null();
    }
    loop {
        // SAFETY: envp is a null-terminated array of C strings (kernel ABI).
        let e = unsafe { *p };
        if e.is_null() {
            return core::ptr::null();
        }
        // SAFETY: each entry is NUL-terminated.
        let entry = unsafe { cstr_bytes(e) };
        if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
            // SAFETY: within the entry.
            return unsafe { e.add(name.len() + 1) };
        }
        // SAFETY: not yet at the terminating null.
        p = unsafe { p.add(1) };
    }
}

/// Runs a tool: keeps envp, converts argv, calls `run`, exits with its code.
///
/// # Safety
/// `argv` holds `argc` C strings, `envp` is a null-terminated array of C
/// strings (or null); both live for the whole process.
pub unsafe fn run_main<A>(
    argc: i32,
    argv: *const *const u8,
    envp: *const *const u8,
    conv: unsafe fn(i32, *const *const u8) -> A,
    run: fn(A) -> i32,
) -> ! {
    ENVP.store(envp as usize, Ordering::Relaxed);
    // SAFETY: by contract.
    let args = unsafe { conv(argc, argv) };
    let code = run(args);
    // SAFETY: the process ends here.
    unsafe { sys::exit(code) }
}

/// The initial stack of a linux-wasm program (fs/binfmt_wasm.c): at the
/// page-aligned initial stack pointer sit argc, argv[argc], NULL, envp...,
/// NULL, auxv. `_start` finds that pointer by rounding the address of one
/// of its locals up to the next page, as the kernel's comment intends.
///
/// # Safety
/// `sp` is the initial stack pointer the kernel set up.
pub unsafe fn start_from_stack<A>(
    sp: usize,
    conv: unsafe fn(i32, *const *const u8) -> A,
    run: fn(A) -> i32,
) -> ! {
    let words = sp as *const usize;
    // SAFETY: the kernel's layout (above).
    unsafe {
        let argc = *words;
        let argv = words.add(1) as *const *const u8;
        let envp = words.add(2 + argc) as *const *const u8;
        run_main(argc as i32, argv, envp, conv, run)
    }
}

/// The initial stack pointer from the address of a local of `_start`:
/// the stack starts page-aligned and `_start`'s frame is far below a page.
pub fn initial_stack_pointer(local: usize) -> usize {
    (local + PAGE - 1) & !(PAGE - 1)
}

/// Converts C's argv to owned strings (lossy for invalid UTF-8).
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings.
pub unsafe fn args_from_argv(argc: i32, argv: *const *const u8) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..argc.max(0) as usize {
        // SAFETY: the caller guarantees argc entries.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: NUL-terminated by contract.
        let bytes = unsafe { cstr_bytes(p) };
        out.push(String::from_utf8_lossy(bytes).into_owned());
    }
    out
}

/// C's argv as the bytes the kernel passed (paths need not be UTF-8).
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings.
pub unsafe fn args_raw_from_argv(argc: i32, argv: *const *const u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..argc.max(0) as usize {
        // SAFETY: the caller guarantees argc entries.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: NUL-terminated by contract.
        out.push(unsafe { cstr_bytes(p) }.to_vec());
    }
    out
}

/// The bytes of a NUL-terminated C string.
///
/// # Safety
/// `p` must point to a NUL-terminated string that outlives the result.
pub unsafe fn cstr_bytes<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: reads up to the NUL the caller promises.
    unsafe {
        while *p.add(n) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p, n)
    }
}

/// Reports a panic (a bug: input errors are returned, not panicked) and exits 101.
pub fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut s = String::from("internal error: ");
    let _ = fmt::write(&mut s, format_args!("{info}\n"));
    write_all_fd(2, s.as_bytes());
    // SAFETY: plain C call.
    unsafe { sys::exit(101) }
}

/// Writes everything, retrying short writes and EINTR; false on error.
pub fn write_all_fd(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let n = unsafe { sys::write(fd, buf.as_ptr(), buf.len()) };
        if n < 0 {
            if sys::errno() == sys::EINTR {
                continue;
            }
            return false;
        }
        if n == 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Formats to a string and writes it to fd in one call.
pub fn print_fd(fd: i32, args: fmt::Arguments) {
    let mut s = String::new();
    let _ = fmt::write(&mut s, args);
    write_all_fd(fd, s.as_bytes());
}

/// `println!` for the tools: stdout, one write per line.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::rt::print_fd(1, format_args!("{}\n", format_args!($($t)*))) };
}

/// `eprintln!` for the tools: stderr, one write per line.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => { $crate::rt::print_fd(2, format_args!("{}\n", format_args!($($t)*))) };
}

/// Defines the entry point, the panic handler and the allocator of a tool
/// binary around `fn run(args: Vec<String>) -> i32` (`entry!(run)`), or
/// `fn run(args: Vec<Vec<u8>>) -> i32` for arguments as bytes
/// (`entry!(raw run)`).
///
/// - wasm32 (linux-wasm): exports `_start`, which upstream's runtime calls
///   after `__wasm_apply_data_relocs`; it never returns (exit_group).
/// - x86_64: C `main(argc, argv, envp)`, called by musl's start-up code
///   (the only part of the C library the tools link; every system call goes
///   through [`crate::syscall`]).
#[macro_export]
macro_rules! entry {
    (@main $run:path, $args:path) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn _start() {
            let here = 0u8;
            let sp = $crate::rt::initial_stack_pointer(core::ptr::addr_of!(here) as usize);
            // SAFETY: sp is the page-aligned initial stack pointer of binfmt_wasm.
            unsafe { $crate::rt::start_from_stack(sp, $args, $run) }
        }

        // argv comes from the C runtime; main cannot be an unsafe fn.
        #[cfg(not(target_arch = "wasm32"))]
        #[allow(clippy::not_unsafe_ptr_arg_deref)]
        #[no_mangle]
        pub extern "C" fn main(argc: i32, argv: *const *const u8, envp: *const *const u8) -> i32 {
            // SAFETY: the C start-up code passes the kernel's argv and envp.
            unsafe { $crate::rt::run_main(argc, argv, envp, $args, $run) }
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::rt::panic(info)
        }

        #[global_allocator]
        static GLOBAL: $crate::rt::Allocator = $crate::rt::Allocator::new();

        // The prebuilt alloc crate of native targets is compiled for
        // unwinding and references these; with panic=abort nothing unwinds.
        #[cfg(not(target_arch = "wasm32"))]
        #[no_mangle]
        extern "C" fn rust_eh_personality() {}
        #[cfg(not(target_arch = "wasm32"))]
        #[no_mangle]
        extern "C" fn _Unwind_Resume() -> ! {
            // SAFETY: ends the process.
            unsafe { $crate::sys::exit(101) }
        }
    };
    (raw $run:path) => {
        $crate::entry!(@main $run, $crate::rt::args_raw_from_argv);
    };
    ($run:path) => {
        $crate::entry!(@main $run, $crate::rt::args_from_argv);
    };
}
