//! hello [NAME]: the demo registry's `hello` package for wasm32, the
//! counterpart of tools/demo/hello.c: prints a greeting with the kernel's
//! uname(2), through the same syscall layer as the tools.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use lwguest::outln;
use lwguest::syscall::{check, nr, syscall};

#[cfg(not(test))]
lwguest::entry!(run);

/// One field of `struct new_utsname` (six fields of 65 bytes).
fn field(buf: &[u8], i: usize) -> String {
    let f = &buf[i * 65..(i + 1) * 65];
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(&f[..end]).into_owned()
}

/// The greeting for `uts` (a filled new_utsname) and the arguments.
fn greeting(uts: &[u8], args: &[String]) -> String {
    let (sys, release, machine) = (field(uts, 0), field(uts, 2), field(uts, 4));
    match args.get(1) {
        Some(who) => {
            alloc::format!("Hello from an lwpkg package, running on {sys} {release} ({machine}), for {who}")
        }
        None => alloc::format!("Hello from an lwpkg package, running on {sys} {release} ({machine})"),
    }
}

// Reached through lwguest::entry!, which unit-test builds leave out.
#[cfg_attr(test, allow(dead_code))]
fn run(args: Vec<String>) -> i32 {
    let mut uts = alloc::vec![0u8; 6 * 65];
    // SAFETY: uname writes one struct new_utsname into the buffer.
    if check(unsafe { syscall(nr::uname, &[uts.as_mut_ptr() as usize]) }).is_err() {
        return 1;
    }
    outln!("{}", greeting(&uts, &args));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_with_the_kernel_fields() {
        let mut uts = vec![0u8; 6 * 65];
        for (i, s) in ["Linux", "box", "7.0", "#1", "wasm32", ""].iter().enumerate() {
            uts[i * 65..i * 65 + s.len()].copy_from_slice(s.as_bytes());
        }
        let args = vec![String::from("hello"), String::from("you")];
        assert_eq!(
            greeting(&uts, &args),
            "Hello from an lwpkg package, running on Linux 7.0 (wasm32), for you"
        );
        assert!(greeting(&uts, &args[..1]).ends_with("(wasm32)"));
    }
}
