//! Raw Linux system calls: the one kernel interface of the tools on both
//! targets (no C library in between).
//!
//! - x86_64 (the um system): the `syscall` instruction (number in rax,
//!   arguments in rdi, rsi, rdx, r10, r8, r9; rcx and r11 clobbered).
//! - wasm32 (linux-wasm): the imports `env.__wasm_syscall_0` ..
//!   `__wasm_syscall_6`, each called as `(stack_pointer, tls_base, nr,
//!   args...)` and returning a long, as upstream's `runtime/linux-worker.js`
//!   binds them to the kernel's `wasm_syscall_N` exports. The kernel keeps the
//!   stack pointer and TLS base only for signal frames and clone; the tools
//!   install no handlers and have no TLS, so the address of a local (inside
//!   the current stack) and 0 are passed.
//!
//! Every call returns the kernel's value: `-errno` (in -4095..=-1) on
//! failure. Numbers ([`nr`]) are generated from the kernel headers by
//! build.rs.

/// The syscall numbers of the target, `nr::openat` etc., generated from the
/// kernel's uapi headers (asm-generic 32-bit for wasm32, unistd_64.h for
/// x86_64). A name absent here is a call the target's kernel does not have.
#[allow(non_upper_case_globals, dead_code)]
pub mod nr {
    include!(concat!(env!("OUT_DIR"), "/syscall_nr.rs"));
}

/// A kernel return value: `Ok(value)` or `Err(errno)`.
#[inline]
pub fn check(r: isize) -> Result<usize, i32> {
    if (-4095..0).contains(&r) {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::asm;

    /// # Safety
    /// The arguments must be valid for syscall `n` (pointers included).
    #[inline]
    pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
        let r: isize;
        // SAFETY: the caller vouches for the arguments; the kernel clobbers
        // only rcx and r11 (and rax with the result).
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") n as isize => r,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                in("r8") a[4],
                in("r9") a[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        r
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    /// Declares the imports `env.NAME(sp, tls, nr, ARGS...) -> long`.
    macro_rules! imports {
        ($($name:ident($($arg:ident),*);)*) => {
            #[link(wasm_import_module = "env")]
            extern "C" {
                $(
                    #[allow(clippy::too_many_arguments)]
                    fn $name(sp: isize, tls: isize, n: isize $(, $arg: isize)*) -> isize;
                )*
            }
        };
    }

    imports! {
        __wasm_syscall_0();
        __wasm_syscall_1(a);
        __wasm_syscall_2(a, b);
        __wasm_syscall_3(a, b, c);
        __wasm_syscall_4(a, b, c, d);
        __wasm_syscall_5(a, b, c, d, e);
        __wasm_syscall_6(a, b, c, d, e, f);
    }

    /// Calls the import with as many arguments as the call uses (the kernel
    /// ignores the rest; fewer keeps the import list of small tools short).
    ///
    /// # Safety
    /// The arguments must be valid for syscall `n` (pointers included).
    #[inline(never)]
    pub unsafe fn syscall_n(n: usize, argc: usize, a: [usize; 6]) -> isize {
        let here = 0u8;
        let sp = core::ptr::addr_of!(here) as isize;
        let n = n as isize;
        let a = a.map(|v| v as isize);
        // SAFETY: the caller vouches for the arguments.
        unsafe {
            match argc {
                0 => __wasm_syscall_0(sp, 0, n),
                1 => __wasm_syscall_1(sp, 0, n, a[0]),
                2 => __wasm_syscall_2(sp, 0, n, a[0], a[1]),
                3 => __wasm_syscall_3(sp, 0, n, a[0], a[1], a[2]),
                4 => __wasm_syscall_4(sp, 0, n, a[0], a[1], a[2], a[3]),
                5 => __wasm_syscall_5(sp, 0, n, a[0], a[1], a[2], a[3], a[4]),
                _ => __wasm_syscall_6(sp, 0, n, a[0], a[1], a[2], a[3], a[4], a[5]),
            }
        }
    }
}

/// Issues syscall `n` with `args` (at most six).
///
/// # Safety
/// The arguments must be valid for syscall `n`: pointers point to memory of
/// the size and layout the kernel expects for this call.
#[inline]
pub unsafe fn syscall(n: usize, args: &[usize]) -> isize {
    let mut a = [0usize; 6];
    let argc = args.len().min(6);
    a[..argc].copy_from_slice(&args[..argc]);
    #[cfg(target_arch = "x86_64")]
    {
        let _ = argc;
        // SAFETY: forwarded from the caller.
        unsafe { imp::syscall6(n, a) }
    }
    #[cfg(target_arch = "wasm32")]
    // SAFETY: forwarded from the caller.
    unsafe {
        imp::syscall_n(n, argc, a)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "wasm32")))]
    {
        let _ = (n, a, argc);
        -38 // ENOSYS: unit tests on other hosts issue no syscalls.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_splits_errno_from_values() {
        assert_eq!(check(-2), Err(2));
        assert_eq!(check(-4095), Err(4095));
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(7), Ok(7));
        // A large value that is not an errno (e.g. an mmap address high up).
        assert_eq!(check(-4096), Ok((-4096isize) as usize));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn real_syscalls_on_the_build_machine() {
        // SAFETY: getpid takes no arguments.
        let pid = unsafe { syscall(nr::getpid, &[]) };
        assert_eq!(pid as u32, std::process::id());
        // SAFETY: a bad fd and a valid empty buffer.
        let r = unsafe { syscall(nr::write, &[usize::MAX >> 1, 0, 0]) };
        assert_eq!(check(r), Err(9));
    }
}
