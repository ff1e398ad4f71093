//! Generates the target's syscall numbers (`$OUT_DIR/syscall_nr.rs`) from
//! the kernel's uapi headers; see syscall_nr.rs.

#[path = "syscall_nr.rs"]
mod syscall_nr;

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=syscall_nr.rs");
    // Unit tests on other host arches issue no syscalls: an empty table.
    let rs = syscall_nr::generate(&arch, &out).unwrap_or_default();
    std::fs::write(out.join("syscall_nr.rs"), rs).expect("writing syscall_nr.rs");
}
