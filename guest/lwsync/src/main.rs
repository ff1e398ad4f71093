#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

#[cfg(not(test))]
lwguest::entry!(run);

// Reached through lwguest::entry!, which unit-test builds leave out.
#[cfg_attr(test, allow(dead_code))]
fn run(_args: Vec<String>) -> i32 {
    1
}
