//! The linux-wasm (asm-generic, 32-bit) syscall numbers the loader's kernel
//! emulation answers, generated from the kernel headers by the same code as
//! the tools' own table (guest/lwguest/syscall_nr.rs).

#[path = "../../guest/lwguest/syscall_nr.rs"]
mod syscall_nr;

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=../../guest/lwguest/syscall_nr.rs");
    let rs = syscall_nr::generate("wasm32", &out).expect("wasm32 is a known arch");
    std::fs::write(out.join("wasm32_nr.rs"), rs).expect("writing wasm32_nr.rs");
}
