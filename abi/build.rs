//! Generates the Rust view of the contracts from the one place they are
//! defined: the uapi headers of the kernel driver, kept as plain files in
//! kernel/include/uapi/linux/ (the same files the generated patch series
//! adds to a kernel tree). Nothing here is a hand copy of a header.

use std::{env, fs, path::PathBuf};

/// The uapi headers userspace and the host consume, under kernel/include/uapi.
const HEADERS: &[&str] = &["linux/lwnet.h", "linux/lwstore.h", "linux/lwhost.h"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let uapi = manifest.join("../kernel/include/uapi");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let mut wrapper_text = String::new();
    for header in HEADERS {
        let path = uapi.join(header);
        assert!(path.is_file(), "{} is missing", path.display());
        println!("cargo:rerun-if-changed={}", path.display());
        wrapper_text.push_str(&format!("#include <{header}>\n"));
    }

    // A real file, not header_contents: clang_macro_fallback (which turns
    // _IOWR(...) into numbers) only evaluates macros of on-disk headers.
    let wrapper = out.join("lwabi.h");
    fs::write(&wrapper, wrapper_text).expect("writing wrapper header");
    let bindings = bindgen::Builder::default()
        .header(wrapper.display().to_string())
        // Our <linux/lw*.h> first; <linux/types.h> and <linux/ioctl.h> come
        // from the build machine's installed uapi headers, as for any program.
        .clang_arg(format!("-I{}", uapi.display()))
        // The headers use only fixed-width kernel types, so one layout serves
        // every Rust target; generate for a Linux target whose <linux/*.h>
        // system headers exist on the build machine.
        .clang_arg("--target=x86_64-linux-gnu")
        .clang_macro_fallback()
        .use_core()
        .allowlist_item("[Ll][Ww](NET|STORE|HOST|net|store|host)_.*")
        .derive_default(true)
        .generate_comments(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen failed on the lwnet headers (is libclang installed?)");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings");
}
