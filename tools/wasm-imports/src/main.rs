//! `wasm-imports`: lists the imports of a WebAssembly module (parsed with
//! `wasmparser`), and with `--supplied` checks that an embedder supplies
//! every import of one module namespace.
//!
//! The wasm build uses it on the built `vmlinux.wasm`: every `env` import
//! must be supplied by upstream's runtime (its host callbacks) plus lwnet's
//! glue (the host ABI of `<linux/lwhost.h>`), or the page would fail with a
//! `LinkError` when a CPU's worker instantiates the kernel.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use wasmparser::{Parser as WasmParser, Payload, TypeRef};

/// Lists a module's imports as `MODULE NAME KIND` lines (KIND: func, memory,
/// table, global, tag), or checks them against a list of supplied names.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The WebAssembly module (binary format).
    module: PathBuf,
    /// Files with the names the embedder supplies for `--namespace`, one per
    /// line (blank lines and `#` comments ignored). With this option the
    /// tool prints the imports of that namespace nobody supplies and exits
    /// with status 1 if there are any.
    #[arg(long)]
    supplied: Vec<PathBuf>,
    /// The import module (namespace) `--supplied` covers.
    #[arg(long, default_value = "env")]
    namespace: String,
}

/// One import of a module: its namespace, name and kind.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    module: String,
    name: String,
    kind: &'static str,
}

/// Every import of the module in `bytes`, in section order.
///
/// Errors: the bytes are not a valid module header or a section is
/// malformed (wasmparser's message, with its offset).
fn imports(bytes: &[u8]) -> Result<Vec<Import>> {
    let mut out = Vec::new();
    for payload in WasmParser::new(0).parse_all(bytes) {
        if let Payload::ImportSection(section) = payload.context("parsing the module")? {
            for import in section.into_imports() {
                let import = import.context("reading an import")?;
                let kind = match import.ty {
                    TypeRef::Func(_) | TypeRef::FuncExact(_) => "func",
                    TypeRef::Memory(_) => "memory",
                    TypeRef::Table(_) => "table",
                    TypeRef::Global(_) => "global",
                    TypeRef::Tag(_) => "tag",
                };
                out.push(Import {
                    module: import.module.to_string(),
                    name: import.name.to_string(),
                    kind,
                });
            }
        }
    }
    Ok(out)
}

/// The names in a `--supplied` file: one per line, `#` starts a comment.
fn supplied_names(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

fn run(args: &Args) -> Result<bool> {
    let bytes = std::fs::read(&args.module).with_context(|| format!("reading {}", args.module.display()))?;
    let list = imports(&bytes)
        .with_context(|| format!("{} is not a valid WebAssembly module", args.module.display()))?;
    if args.supplied.is_empty() {
        print_imports(list.iter())?;
        return Ok(true);
    }
    let mut have = BTreeSet::new();
    for path in &args.supplied {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        have.extend(supplied_names(&text).map(str::to_owned));
    }
    let missing: Vec<&Import> = list
        .iter()
        .filter(|i| i.module == args.namespace && !have.contains(&i.name))
        .collect();
    print_imports(missing.iter().copied())?;
    Ok(missing.is_empty())
}

/// Prints `MODULE NAME KIND` lines; a reader that stopped early (a closed
/// pipe) is not an error.
fn print_imports<'a>(imports: impl Iterator<Item = &'a Import>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for i in imports {
        match writeln!(out, "{} {} {}", i.module, i.name, i.kind) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.context("writing to stdout")?,
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wasm-imports: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module importing env.memory (shared), env.f and other.g, encoded by hand.
    fn module() -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend([1, 4, 1, 0x60, 0, 0]); // type section: one () -> ()
        let mut imports = vec![3u8];
        imports.extend([3, b'e', b'n', b'v', 6]);
        imports.extend(b"memory");
        imports.extend([2, 3, 1, 2]); // memory, shared, min 1, max 2
        imports.extend([3, b'e', b'n', b'v', 1, b'f', 0, 0]);
        imports.extend([5]);
        imports.extend(b"other");
        imports.extend([1, b'g', 0, 0]);
        m.push(2);
        m.push(imports.len() as u8);
        m.extend(imports);
        m
    }

    #[test]
    fn lists_every_import_with_its_kind() {
        let got = imports(&module()).expect("valid module");
        let names: Vec<_> = got
            .iter()
            .map(|i| (i.module.as_str(), i.name.as_str(), i.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("env", "memory", "memory"),
                ("env", "f", "func"),
                ("other", "g", "func")
            ]
        );
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(imports(b"not wasm").is_err());
        let m = module();
        assert!(imports(&m[..m.len() - 3]).is_err());
    }

    #[test]
    fn supplied_lists_skip_comments_and_blanks() {
        let names: Vec<_> = supplied_names("a\n# c\n\n b # why\n").collect();
        assert_eq!(names, ["a", "b"]);
    }
}
