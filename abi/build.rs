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

    // errno values as the kernel defines them: asm-generic/errno.h (with
    // errno-base.h), the numbering of x86_64, wasm32 and every other
    // architecture lwnet runs on. `int`, as the kernel returns them.
    let errno_wrapper = out.join("errno.h");
    fs::write(&errno_wrapper, "#include <asm-generic/errno.h>\n").expect("writing errno wrapper");
    let errno = bindgen::Builder::default()
        .header(errno_wrapper.display().to_string())
        .clang_arg("--target=x86_64-linux-gnu")
        .use_core()
        .allowlist_var("E[A-Z0-9]+")
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .generate()
        .expect("bindgen failed on <asm-generic/errno.h> (is linux-libc-dev installed?)");
    errno
        .write_to_file(out.join("errno.rs"))
        .expect("writing errno bindings");

    let js = js_module(&[
        fs::read_to_string(out.join("bindings.rs")).expect("reading bindings"),
        fs::read_to_string(out.join("errno.rs")).expect("reading errno bindings"),
    ]);
    fs::write(out.join("lwabi.js"), js).expect("writing lwabi.js");
}

/// The constants of the generated bindings as an ES module: each
/// `pub const NAME: TYPE = VALUE;` bindgen wrote becomes `export const NAME =
/// VALUE;` (numbers, and byte strings as strings), but the errno values,
/// which form the frozen object `E` (name -> number).
fn js_module(sources: &[String]) -> String {
    let mut consts = Vec::new();
    let mut errnos = Vec::new();
    for line in sources.iter().flat_map(|s| s.lines()) {
        let Some(rest) = line.trim().strip_prefix("pub const ") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(':') else {
            continue;
        };
        let Some((_, value)) = rest.split_once(" = ") else {
            continue;
        };
        let value = value.trim_end_matches(';').trim();
        // bindgen writes some literals with a type suffix (78u8).
        let value = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]
            .iter()
            .find_map(|t| value.strip_suffix(t).filter(|v| v.parse::<i64>().is_ok()))
            .unwrap_or(value);
        let js = if let Some(text) = value.strip_prefix("b\"").and_then(|v| v.strip_suffix("\\0\"")) {
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" /._-".contains(&b)),
                "{name}: only plain ASCII strings are exported to JS"
            );
            format!("\"{text}\"")
        } else if value.parse::<i64>().is_ok() {
            value.to_string()
        } else {
            panic!("{name}: a constant bindgen wrote as {value} has no JS form");
        };
        if name.starts_with('E') {
            errnos.push((name.to_string(), js));
        } else {
            consts.push((name.to_string(), js));
        }
    }
    consts.sort();
    consts.dedup();
    errnos.sort_by_key(|(n, v)| (v.parse::<i64>().unwrap_or(0), n.clone()));
    errnos.dedup();
    let mut js = String::from(
        "// SPDX-License-Identifier: GPL-2.0-only\n\
         // GENERATED by abi/build.rs from kernel/include/uapi/linux/{lwnet,lwstore,lwhost}.h\n\
         // and <asm-generic/errno.h>; do not edit. `cargo test -p lwabi` fails when this\n\
         // file is stale; LWABI_WRITE_JS=1 cargo test -p lwabi rewrites it.\n\n",
    );
    for (name, value) in &consts {
        js.push_str(&format!("export const {name} = {value};\n"));
    }
    js.push_str("\n/** Linux errno values (asm-generic numbering, the kernel's ABI), by name. */\nexport const E = Object.freeze({\n");
    for (name, value) in &errnos {
        js.push_str(&format!("  {name}: {value},\n"));
    }
    js.push_str("});\n");
    js
}
