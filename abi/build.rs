//! Generates the Rust view of the contracts from the one place they are
//! defined: the uapi headers of the kernel driver, kept as plain files in
//! kernel/include/uapi/linux/ (the same files the generated patch series
//! adds to a kernel tree). Nothing here is a hand copy of a header.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

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
    generate(&out, "lwabi.h", &wrapper_text, "bindings.rs", |b| {
        // Our <linux/lw*.h> first; <linux/types.h> and <linux/ioctl.h> come
        // from the build machine's installed uapi headers, as for any program.
        b.clang_arg(format!("-I{}", uapi.display()))
            .clang_macro_fallback()
            .allowlist_item("[Ll][Ww](NET|STORE|HOST|net|store|host)_.*")
            .derive_default(true)
            .generate_comments(true)
            .layout_tests(true)
    });

    // errno values as the kernel defines them: asm-generic/errno.h (with
    // errno-base.h), the numbering of x86_64, wasm32 and every other
    // architecture lwnet runs on. `int`, as the kernel returns them.
    generate(
        &out,
        "errno.h",
        "#include <asm-generic/errno.h>\n",
        "errno.rs",
        |b| {
            b.allowlist_var("E[A-Z0-9]+")
                .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        },
    );

    // The poll events, open/fcntl/flock flags and commands, *at() flags,
    // seek whences, statx mask, file types, clocks, rename and mmap flags and the
    // terminal ioctl `TCGETS` the guest tools (and
    // the guest harness's kernel emulation) use, as the kernel defines them:
    // the asm-generic headers (wasm32's numbering, x86_64's for these) and
    // the uapi <linux/fcntl.h>, <linux/fs.h>, <linux/stat.h>, <linux/time.h>,
    // <asm-generic/mman-common.h>, <linux/mman.h>, <asm-generic/ioctls.h>.
    let linux_headers =
        "#include <asm-generic/poll.h>\n#include <asm-generic/fcntl.h>\n#include <linux/fcntl.h>\n\
         #include <linux/fs.h>\n#include <linux/stat.h>\n#include <linux/time.h>\n\
         #include <asm-generic/mman-common.h>\n#include <linux/mman.h>\n\
         #include <asm-generic/ioctls.h>\n";
    generate(&out, "linux.h", linux_headers, "linux.rs", |b| {
        b.allowlist_var("(POLL|O_|F_|AT_|LOCK_|SEEK_|S_IF|STATX_|CLOCK_|RENAME_|PROT_|MAP_)[A-Z0-9_]+|TCGETS")
            .parse_callbacks(Box::new(LinuxTypes))
    });

    let bindings = [
        fs::read_to_string(out.join("bindings.rs")).expect("reading bindings"),
        fs::read_to_string(out.join("errno.rs")).expect("reading errno bindings"),
    ];
    fs::write(out.join("lwabi.js"), js_module(&bindings)).expect("writing lwabi.js");

    let protocol = manifest.join("../proxy/src/protocol.rs");
    println!("cargo:rerun-if-changed={}", protocol.display());
    let protocol = fs::read_to_string(&protocol).expect("reading proxy/src/protocol.rs");
    fs::write(out.join("protocol.js"), protocol_module(&protocol)).expect("writing protocol.js");

    let layout = manifest.join("../host/src/web_layout.rs");
    println!("cargo:rerun-if-changed={}", layout.display());
    let layout = fs::read_to_string(&layout).expect("reading host/src/web_layout.rs");
    fs::write(out.join("web-layout.js"), web_layout_module(&layout)).expect("writing web-layout.js");
}

/// Writes `includes` to the header `out/wrapper` and runs bindgen over it for
/// x86_64 Linux with `core` types, plus what `configure` adds, into `out/rs`.
/// The headers use only fixed-width kernel types, so one layout serves every
/// Rust target; the target is one whose <linux/*.h> system headers exist on
/// the build machine. Panics, naming the headers, when bindgen fails (libclang
/// or linux-libc-dev missing) or a file cannot be written.
fn generate(
    out: &Path,
    wrapper: &str,
    includes: &str,
    rs: &str,
    configure: impl FnOnce(bindgen::Builder) -> bindgen::Builder,
) {
    let header = out.join(wrapper);
    fs::write(&header, includes).unwrap_or_else(|e| panic!("writing {}: {e}", header.display()));
    let builder = bindgen::Builder::default()
        .header(header.display().to_string())
        .clang_arg("--target=x86_64-linux-gnu")
        .use_core();
    configure(builder)
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen failed on {includes:?}: {e} (are libclang and linux-libc-dev installed?)")
        })
        .write_to_file(out.join(rs))
        .unwrap_or_else(|e| panic!("writing {rs}: {e}"));
}

/// Types the macros of `lwabi::linux` as the calls take them: `i16` for the
/// `POLL*` events (`short events` of `struct pollfd`), `u32` for the file
/// types, the statx mask, the rename flags and `TCGETS` (`mode_t`, `unsigned int`, the
/// ioctl command as the kernel's `ioctl` entry takes it), `i32` (`int`)
/// for the rest (the few values beyond `int`, e.g. `MAP_HUGE_16GB`, keep
/// bindgen's wider type).
#[derive(Debug)]
struct LinuxTypes;

impl bindgen::callbacks::ParseCallbacks for LinuxTypes {
    fn int_macro(&self, name: &str, value: i64) -> Option<bindgen::callbacks::IntKind> {
        use bindgen::callbacks::IntKind;
        // Beyond `int` (MAP_HUGE_16GB): bindgen's own choice, a wider type.
        i32::try_from(value).ok()?;
        Some(if name.starts_with("POLL") {
            IntKind::I16
        } else if ["S_IF", "STATX_", "RENAME_"].iter().any(|p| name.starts_with(p)) || name == "TCGETS" {
            IntKind::U32
        } else {
            IntKind::I32
        })
    }
}

/// The wire protocol's constants the page imports (host/web/js/protocol.js),
/// from their one definition in proxy/src/protocol.rs.
const PROTOCOL_CONSTS: &[&str] = &[
    "SUBPROTOCOL_V2",
    "SUBPROTOCOL_V1",
    "BEARER_PREFIX",
    "WINDOW",
    "MAX_WINDOW",
    "BINARY_HEADER",
    "FRAME_MAX",
];

/// Every `pub const NAME: TYPE = VALUE;` line of Rust source `text` (bindgen's
/// output, or proxy/src/protocol.rs) whose NAME is `wanted`, as (NAME, the value in JS): integers
/// (without type suffix or `_`), byte strings (`b"..\0"`, bindgen's `char[]`
/// macros) and strings as JS strings of plain ASCII. Panics on anything else,
/// naming the constant, so a new kind of value cannot slip through unseen.
fn rust_consts(text: &str, wanted: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("pub const ") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(':') else {
            continue;
        };
        if !wanted(name) {
            continue;
        }
        let Some((_, value)) = rest.split_once(" = ") else {
            continue;
        };
        let value = value.trim_end_matches(';').trim();
        let text = value
            .strip_prefix("b\"")
            .and_then(|v| v.strip_suffix("\\0\""))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')));
        // Integers: decimal or 0x hex, digit separators (262_144) and bindgen's type suffix
        // (78u8) dropped; a
        // product of such integers (4 * 1024 * 1024) is evaluated.
        let integer = |v: &str| {
            let digits = v.trim().replace('_', "");
            if let Some(hex) = digits.strip_prefix("0x") {
                return i64::from_str_radix(hex, 16).ok();
            }
            ["u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", ""]
                .iter()
                .find_map(|t| digits.strip_suffix(t).and_then(|v| v.parse::<i64>().ok()))
        };
        let number = value
            .split(" * ")
            .map(integer)
            .try_fold(1i64, |acc, n| acc.checked_mul(n?));
        let js = if let Some(text) = text {
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" /._-".contains(&b)),
                "{name}: only plain ASCII strings are exported to JS"
            );
            format!("\"{text}\"")
        } else if let Some(number) = number {
            number.to_string()
        } else {
            panic!("{name}: a constant written as {value} has no JS form");
        };
        out.push((name.to_string(), js));
    }
    out
}

/// The constants of the generated bindings as an ES module: one `export
/// const` of every uapi constant (numbers, and byte strings as strings), and
/// the errno values as the frozen object `E` (name -> number).
fn js_module(sources: &[String]) -> String {
    let (mut errnos, mut consts): (Vec<_>, Vec<_>) = sources
        .iter()
        .flat_map(|s| rust_consts(s, |_| true))
        .partition(|(name, _)| name.starts_with('E'));
    consts.sort();
    consts.dedup();
    errnos.sort_by_key(|(n, v)| (v.parse::<i64>().unwrap_or(0), n.clone()));
    errnos.dedup();
    let mut js = String::from(
        "// SPDX-License-Identifier: GPL-2.0-only\n\
         // GENERATED by abi/build.rs from kernel/include/uapi/linux/{lwnet,lwstore,lwhost}.h\n\
         // and <asm-generic/errno.h>; do not edit. `cargo test -p lwabi` fails when this\n\
         // file is stale; LWABI_WRITE_JS=1 cargo test -p lwabi rewrites it.\n\n\
         /** The constants of the uapi headers, by their C names. */\n\
         export const\n",
    );
    let consts: Vec<String> = consts.iter().map(|(n, v)| format!("{n} = {v}")).collect();
    js.push_str(&packed(&consts));
    js.push_str(";\n\n/** Linux errno values (asm-generic numbering, the kernel's ABI), by name. */\nexport const E = Object.freeze({\n");
    let errnos: Vec<String> = errnos.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    js.push_str(&packed(&errnos));
    js.push_str(",\n});\n");
    js
}

/// The PROTOCOL_CONSTS of proxy/src/protocol.rs as an ES module.
fn protocol_module(source: &str) -> String {
    let all = rust_consts(source, |name| PROTOCOL_CONSTS.contains(&name));
    let consts: Vec<String> = PROTOCOL_CONSTS
        .iter()
        .map(|want| {
            let (name, value) = all
                .iter()
                .find(|(name, _)| name == want)
                .unwrap_or_else(|| panic!("proxy/src/protocol.rs defines no `pub const {want}`"));
            format!("{name} = {value}")
        })
        .collect();
    format!(
        "// SPDX-License-Identifier: GPL-2.0-only\n\
         // GENERATED by abi/build.rs from proxy/src/protocol.rs, the one definition of the lwproxy\n\
         // wire protocol (docs/protocol.md); do not edit. `cargo test -p lwabi` fails when this\n\
         // file is stale; LWABI_WRITE_JS=1 cargo test -p lwabi rewrites it.\n\n\
         /** Subprotocol names, the binary frame header's size, the flow-control windows and the\n\
         \x20* largest frame payload lwhost sends: their meaning is in proxy/src/protocol.rs. */\n\
         export const\n{};\n",
        packed(&consts)
    )
}

/// lwhost-web's layout for the JS glue (host/web/js/web-layout.js), from its
/// one definition in host/src/web_layout.rs: the field names of `struct
/// Layout` in order (each a `u32` word) and `LAYOUT_VERSION`/`LAYOUT_SENTINEL`.
/// Panics when the struct is missing or has a field that is not `pub NAME: u32`.
fn web_layout_module(source: &str) -> String {
    let body = source
        .split_once("pub struct Layout {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .expect("host/src/web_layout.rs defines no `pub struct Layout {`");
    let fields: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| {
            let name = l
                .strip_prefix("pub ")
                .and_then(|l| l.strip_suffix(": u32,"))
                .unwrap_or_else(|| panic!("Layout field `{l}` is not `pub NAME: u32,`"));
            format!("\"{name}\"")
        })
        .collect();
    let wanted = ["LAYOUT_VERSION", "LAYOUT_SENTINEL"];
    let consts: Vec<String> = rust_consts(source, |name| wanted.contains(&name))
        .into_iter()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    assert_eq!(
        consts.len(),
        wanted.len(),
        "host/src/web_layout.rs lacks {wanted:?}"
    );
    format!(
        "// SPDX-License-Identifier: GPL-2.0-only\n\
         // GENERATED by abi/build.rs from host/src/web_layout.rs, the one definition of the layout\n\
         // lwhost-web publishes at `lw_layout()`; do not edit. `cargo test -p lwabi` fails when this\n\
         // file is stale; LWABI_WRITE_JS=1 cargo test -p lwabi rewrites it.\n\n\
         /** The `u32` words of `struct Layout`, by field name, in order. */\n\
         export const LAYOUT_FIELDS = Object.freeze([\n{}\n]);\n\n\
         /** The first and last word: a module built from another definition is refused. */\n\
         export const\n{};\n",
        packed(&fields),
        packed(&consts)
    )
}

/// `items` joined by ", " into lines of at most 100 characters, each indented
/// by two spaces; no separator after the last item.
fn packed(items: &[String]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.clone()
        };
        match lines.last_mut() {
            Some(line) if line.len() + 1 + piece.len() <= 100 => {
                line.push(' ');
                line.push_str(&piece);
            }
            _ => lines.push(format!("  {piece}")),
        }
    }
    lines.join("\n")
}
