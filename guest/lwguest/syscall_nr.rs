//! Syscall numbers from the kernel's own uapi headers (the machine's
//! installed copy, /usr/include, from Debian's linux-libc-dev): nothing is
//! typed by hand. Used by the build scripts of lwguest (the tools' syscall
//! layer) and tools/guest-harness (its kernel emulation), so both read the
//! same table.
//!
//! - x86_64: `<asm/unistd_64.h>`.
//! - wasm32 (linux-wasm): the asm-generic table in its 32-bit flavour
//!   (`__BITS_PER_LONG == 32`, no `__ARCH_WANT_TIME32_SYSCALLS`), which is
//!   what upstream's `arch/wasm/include/uapi/asm/unistd.h` includes (it adds
//!   only `__ARCH_WANT_SYS_CLONE` and `__ARCH_WANT_SYS_CLONE3`, defined here
//!   too). So there is no `open`, `poll` or 32-bit-time `clock_gettime`: the
//!   names that exist are exactly the calls that kernel has.
//!
//! The C preprocessor evaluates the headers (`cpp -dM`); each `__NR_name`
//! becomes `pub const name: usize`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The Rust source of the table for `arch` ("x86_64" or "wasm32"); None for
/// other arches. `scratch` is a directory for a helper header. Panics with
/// the reason when the headers or the preprocessor are missing (build
/// scripts report panics).
pub fn generate(arch: &str, scratch: &Path) -> Option<String> {
    let include = std::env::var("LW_KERNEL_UAPI").unwrap_or_else(|_| "/usr/include".into());
    let cpp = std::env::var("CPP").unwrap_or_else(|_| "cpp".into());
    let mut cmd = Command::new(&cpp);
    cmd.args(["-dM", "-P", "-undef", "-nostdinc"]);
    let source = match arch {
        "x86_64" => {
            // The multiarch directory holds asm/; asm-generic/ is one level up.
            cmd.arg(format!("-I{include}/x86_64-linux-gnu"))
                .arg(format!("-I{include}"));
            cmd.arg("-D__x86_64__");
            format!("{include}/x86_64-linux-gnu/asm/unistd_64.h")
        }
        "wasm32" => {
            // asm/bitsperlong.h of an asm-generic arch is the generic one.
            let asm = scratch.join("wasm-asm/asm");
            fs::create_dir_all(&asm).expect("creating the asm include dir");
            fs::write(
                asm.join("bitsperlong.h"),
                "#include <asm-generic/bitsperlong.h>\n",
            )
            .expect("writing asm/bitsperlong.h");
            cmd.arg(format!("-I{}", asm.parent().expect("has a parent").display()));
            cmd.arg(format!("-I{include}"));
            cmd.args([
                "-D__BITS_PER_LONG=32",
                "-D__ARCH_WANT_SYS_CLONE",
                "-D__ARCH_WANT_SYS_CLONE3",
            ]);
            format!("{include}/asm-generic/unistd.h")
        }
        _ => return None,
    };
    println!("cargo:rerun-if-env-changed=LW_KERNEL_UAPI");
    println!("cargo:rerun-if-changed={source}");
    let output = cmd
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("running {cpp} on {source}: {e} (is gcc installed?)"));
    assert!(
        output.status.success(),
        "{cpp} failed on {source} (are the kernel uapi headers, linux-libc-dev, installed?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let numbers = resolve(&String::from_utf8_lossy(&output.stdout));
    assert!(
        numbers.contains_key("read") && numbers.contains_key("exit_group"),
        "no syscall numbers found in {source}"
    );
    let mut rs =
        format!("// Generated from {source} ({arch}) by guest/lwguest/syscall_nr.rs; do not edit.\n");
    for (name, nr) in &numbers {
        rs.push_str(&format!("pub const {name}: usize = {nr};\n"));
    }
    Some(rs)
}

/// Every `#define __NR_x VALUE` whose value is a number or names another
/// macro that resolves to one (asm-generic spells 32/64-bit variants as
/// `#define __NR_fcntl64 __NR3264_fcntl`).
fn resolve(defines: &str) -> BTreeMap<String, u64> {
    let mut macros = BTreeMap::new();
    for line in defines.lines() {
        let mut it = line.splitn(3, ' ');
        if let (Some("#define"), Some(name), Some(value)) = (it.next(), it.next(), it.next()) {
            macros.insert(name.to_string(), value.trim().to_string());
        }
    }
    let mut out = BTreeMap::new();
    for name in macros.keys() {
        let Some(short) = name.strip_prefix("__NR_") else {
            continue;
        };
        if short == "syscalls" || short == "arch_specific_syscall" {
            continue;
        }
        let mut value = name.as_str();
        for _ in 0..8 {
            match macros.get(value) {
                Some(v) => value = v.as_str(),
                None => break,
            }
            if let Ok(n) = value.parse::<u64>() {
                out.insert(short.to_string(), n);
                break;
            }
        }
    }
    out
}
