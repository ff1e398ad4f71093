//! The no_std runtime of the tools: allocator, panic handler, `main` glue
//! and output. The bins expand [`crate::entry!`] only outside `cfg(test)`,
//! so their unit tests run under std.

use crate::sys;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The global allocator: dlmalloc inside the module for the harness build
/// (it has no libc malloc to import), the C library's malloc elsewhere.
#[cfg(all(target_arch = "wasm32", not(feature = "wasm-musl")))]
pub type Allocator = dlmalloc::GlobalDlmalloc;
#[cfg(all(target_arch = "wasm32", not(feature = "wasm-musl")))]
pub const ALLOCATOR: Allocator = dlmalloc::GlobalDlmalloc;

#[cfg(not(all(target_arch = "wasm32", not(feature = "wasm-musl"))))]
pub use libc_alloc::{Allocator, ALLOCATOR};

#[cfg(not(all(target_arch = "wasm32", not(feature = "wasm-musl"))))]
mod libc_alloc {
    use core::alloc::{GlobalAlloc, Layout};

    extern "C" {
        fn malloc(size: usize) -> *mut u8;
        fn realloc(ptr: *mut u8, size: usize) -> *mut u8;
        fn free(ptr: *mut u8);
        fn aligned_alloc(align: usize, size: usize) -> *mut u8;
    }

    /// malloc guarantees 16-byte alignment on every target we build for.
    const MALLOC_ALIGN: usize = 16;

    pub struct Allocator;
    pub const ALLOCATOR: Allocator = Allocator;

    // SAFETY: forwards to the C allocator, honouring the layout's alignment.
    unsafe impl GlobalAlloc for Allocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                // SAFETY: plain C call.
                unsafe { malloc(layout.size().max(1)) }
            } else {
                let size = layout.size().div_ceil(layout.align()) * layout.align();
                // SAFETY: align is a power of two and size a multiple of it.
                unsafe { aligned_alloc(layout.align(), size) }
            }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: ptr came from malloc/aligned_alloc above.
            unsafe { free(ptr) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                // SAFETY: ptr came from malloc above.
                unsafe { realloc(ptr, new_size.max(1)) }
            } else {
                // SAFETY: default path: allocate, copy, free.
                unsafe {
                    let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                    if !new.is_null() {
                        core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

/// The harness build receives argv in memory it allocates through this.
#[cfg(all(target_arch = "wasm32", not(feature = "wasm-musl")))]
#[no_mangle]
pub extern "C" fn lw_alloc(size: usize) -> *mut u8 {
    // SAFETY: a byte buffer, alignment 8 suits every struct the harness writes.
    unsafe { alloc::alloc::alloc(core::alloc::Layout::from_size_align_unchecked(size.max(1), 8)) }
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

/// Defines the C `main`, the panic handler and the allocator of a tool
/// binary around `fn run(args: Vec<String>) -> i32` (`entry!(run)`), or
/// `fn run(args: Vec<Vec<u8>>) -> i32` for arguments as bytes
/// (`entry!(raw run)`).
#[macro_export]
macro_rules! entry {
    (@rest) => {
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::rt::panic(info)
        }

        #[global_allocator]
        static GLOBAL: $crate::rt::Allocator = $crate::rt::ALLOCATOR;

        // The prebuilt alloc crate of native targets is compiled for
        // unwinding and references these; with panic=abort nothing unwinds.
        #[cfg(not(target_arch = "wasm32"))]
        #[no_mangle]
        extern "C" fn rust_eh_personality() {}
        #[cfg(not(target_arch = "wasm32"))]
        #[no_mangle]
        extern "C" fn _Unwind_Resume() -> ! {
            // SAFETY: plain C call.
            unsafe { $crate::sys::exit(101) }
        }
    };
    (@main $run:path, $args:path) => {
        // argv comes from the C runtime; main cannot be an unsafe fn.
        #[allow(clippy::not_unsafe_ptr_arg_deref)]
        #[no_mangle]
        pub extern "C" fn main(argc: i32, argv: *const *const u8) -> i32 {
            // SAFETY: the C runtime (or the harness) passes a valid argv.
            let args = unsafe { $args(argc, argv) };
            $run(args)
        }
        $crate::entry!(@rest);
    };
    (raw $run:path) => {
        $crate::entry!(@main $run, $crate::rt::args_raw_from_argv);
    };
    ($run:path) => {
        $crate::entry!(@main $run, $crate::rt::args_from_argv);
    };
}
