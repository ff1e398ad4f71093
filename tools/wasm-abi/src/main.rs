//! linux-wasm-abi FILE...: checks that each module is a linux-wasm user
//! program (see the library's documentation for the rules). Exit status 0
//! when all pass, 1 when one fails (each problem named), 2 on usage errors.

use std::process::ExitCode;

const USAGE: &str = "Usage: linux-wasm-abi FILE.wasm...

Checks that each module is a linux-wasm user program as upstream's kernel
loader and runtime run one: first section dylink.0 with MEM_INFO, only the
features atomics, bulk-memory, mutable-globals, sign-ext, imports only from
the runtime's env list (shared memory of 65536 pages, __wasm_syscall_0..6,
...), _start and __wasm_apply_data_relocs exported, no memory.grow.
Exit status: 0 all pass, 1 a module fails (problems named), 2 usage.";

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() || files.iter().any(|f| f == "-h" || f == "--help") {
        println!("{USAGE}");
        return if files.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let mut ok = true;
    for f in &files {
        match std::fs::read(f) {
            Err(e) => {
                eprintln!("{f}: cannot read: {e}");
                ok = false;
            }
            Ok(bytes) => match linux_wasm_abi::check(&bytes) {
                Ok(p) => println!(
                    "{f}: ok (data {} bytes, align {}; imports: {})",
                    p.mem_info.memory_size,
                    p.mem_info.memory_align,
                    p.imports.join(", ")
                ),
                Err(e) => {
                    eprintln!("{f}: {e}");
                    ok = false;
                }
            },
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
