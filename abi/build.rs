//! Generates the Rust view of the contracts from the one place they are
//! defined: the new-file hunks of the kernel patch series in patches/kernel.
//! Nothing here is a hand copy of a header.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

/// Headers the series creates that userspace and the host consume.
const HEADERS: &[&str] = &[
    "include/uapi/linux/lwnet.h",
    "include/uapi/linux/lwstore.h",
    "include/uapi/linux/lwhost.h",
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let patches = manifest.join("../patches/kernel");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", patches.display());

    let include = out.join("include");
    let mut series: Vec<PathBuf> = fs::read_dir(&patches)
        .unwrap_or_else(|e| panic!("reading {}: {e}", patches.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    series.sort();
    for header in HEADERS {
        let text = series
            .iter()
            .find_map(|p| new_file_from_patch(p, header))
            .unwrap_or_else(|| panic!("no patch in {} creates {header}", patches.display()));
        // Installed uapi headers drop the uapi/ level, as headers_install does.
        let dest = include.join(header.trim_start_matches("include/uapi/"));
        fs::create_dir_all(dest.parent().expect("header path has a parent")).expect("creating include dir");
        fs::write(&dest, text).expect("writing extracted header");
    }
    // Copies for C consumers outside the kernel (tests, the um host half).
    println!("cargo:include={}", include.display());

    // A real file, not header_contents: clang_macro_fallback (which turns
    // _IOWR(...) into numbers) only evaluates macros of on-disk headers.
    let wrapper = out.join("lwabi.h");
    fs::write(
        &wrapper,
        "#include <linux/lwnet.h>\n#include <linux/lwstore.h>\n#include <linux/lwhost.h>\n",
    )
    .expect("writing wrapper header");
    let bindings = bindgen::Builder::default()
        .header(wrapper.display().to_string())
        .clang_arg(format!("-I{}", include.display()))
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

/// Returns the contents of `path` if `patch` creates it, else None.
fn new_file_from_patch(patch: &Path, path: &str) -> Option<String> {
    let text = fs::read_to_string(patch).ok()?;
    let marker = format!("diff --git a/{path} b/{path}\nnew file mode");
    let start = text.find(&marker)?;
    let body = &text[start..];
    let hunk = body.find("\n@@ ")?;
    let mut out = String::new();
    for line in body[hunk + 1..].lines().skip(1) {
        match line.strip_prefix('+') {
            Some(rest) => {
                out.push_str(rest);
                out.push('\n');
            }
            None => break,
        }
    }
    Some(out)
}
