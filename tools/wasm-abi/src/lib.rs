//! Static check that a WebAssembly module is a linux-wasm user program, as
//! upstream's kernel loader (`fs/binfmt_wasm.c` in joelseverin/linux) and
//! runtime (`runtime/linux-worker.js` in joelseverin/linux-wasm) run one:
//!
//! - The first section is the custom section `dylink.0`, with a MEM_INFO
//!   subsection (id 1: memory size, memory alignment log2, table size, table
//!   alignment log2); the loader answers ENOEXEC otherwise.
//! - The module validates with only the features upstream's own programs use
//!   (atomics, bulk-memory, mutable-globals, sign-ext, plus MVP floats), so a
//!   stripped `target_features` section hides nothing.
//! - Imports are all from `env` and within what the runtime gives a user
//!   module: `memory` (shared, 32-bit, maximum 65536 pages, the kernel's),
//!   `__memory_base`, `__table_base`, `__table_base32` (immutable i32),
//!   `__stack_pointer` (mutable i32), `__indirect_function_table` (funcref,
//!   at most 4096 entries initially, no maximum), `__wasm_abort` (`() -> ()`)
//!   and `__wasm_syscall_0` .. `__wasm_syscall_6`
//!   (`(sp, tls, nr, args...) -> long`, all i32).
//! - `_start` and `__wasm_apply_data_relocs` are exported functions of type
//!   `() -> ()` (the runtime calls the second unconditionally).
//! - No memory of its own and no `memory.grow`: the kernel owns the memory.

use std::fmt;
use wasmparser::{
    BinaryReader, ExternalKind, FuncType, Operator, Parser, Payload, TypeRef, ValType, Validator,
    WasmFeatures,
};

/// The kernel's memory maximum in 64 KiB pages (4 GiB, wasm32).
pub const MEMORY_MAX_PAGES: u64 = 65536;
/// Entries of the function table the runtime creates (no maximum).
pub const TABLE_ENTRIES: u64 = 4096;
/// MEM_INFO's subsection id in `dylink.0`.
const WASM_DYLINK_MEM_INFO: u8 = 1;

/// The only WebAssembly features a linux-wasm user program may use.
pub fn features() -> WasmFeatures {
    WasmFeatures::THREADS
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::FLOATS
}

/// What the `dylink.0` MEM_INFO subsection says (byte sizes, alignments as
/// byte counts), which the loader needs to place data and table entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub memory_size: u32,
    pub memory_align: u32,
    pub table_size: u32,
    pub table_align: u32,
}

/// A module that passed the check.
#[derive(Debug, Clone)]
pub struct Program {
    pub mem_info: MemInfo,
    /// The memory import's minimum, in 64 KiB pages.
    pub memory_min_pages: u64,
    /// Names of the `env` imports, in module order.
    pub imports: Vec<String>,
}

/// Everything wrong with a module, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiError(pub Vec<String>);

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a linux-wasm user program: {}", self.0.join("; "))
    }
}

impl std::error::Error for AbiError {}

fn i32s(n: usize) -> Vec<ValType> {
    vec![ValType::I32; n]
}

/// The type an allowed function import must have, or None if `name` is not
/// an allowed function import.
fn allowed_func(name: &str) -> Option<(Vec<ValType>, Vec<ValType>)> {
    if name == "__wasm_abort" {
        return Some((vec![], vec![]));
    }
    let n: usize = name.strip_prefix("__wasm_syscall_")?.parse().ok()?;
    (n <= 6 && name.len() == "__wasm_syscall_".len() + 1).then(|| (i32s(3 + n), i32s(1)))
}

fn sig(params: &[ValType], results: &[ValType]) -> String {
    let show = |v: &[ValType]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", show(params), show(results))
}

/// Checks `bytes`; Ok with what the loader needs, or every problem found.
pub fn check(bytes: &[u8]) -> Result<Program, AbiError> {
    let mut problems = Vec::new();
    let mut validator = Validator::new_with_features(features());
    if let Err(e) = validator.validate_all(bytes) {
        problems.push(format!(
            "does not validate with only atomics, bulk-memory, mutable-globals and sign-ext: {e}"
        ));
        // Go on: the structure below is still worth reporting when it parses.
    }
    let mut mem_info = None;
    let mut memory_min_pages = 0;
    let mut imports = Vec::new();
    let mut types: Vec<Option<FuncType>> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut imported_funcs = 0u32;
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut first = true;
    let mut grows = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("malformed module: {e}"));
                return Err(AbiError(problems));
            }
        };
        let is_section = !matches!(payload, Payload::Version { .. } | Payload::End(_));
        match &payload {
            Payload::CustomSection(c) if first && c.name() == "dylink.0" => {
                match mem_info_of(c.data(), c.data_offset()) {
                    Ok(m) => mem_info = Some(m),
                    Err(e) => problems.push(format!("dylink.0: {e}")),
                }
            }
            Payload::TypeSection(r) => {
                for g in r.clone().into_iter_err_on_gc_types() {
                    match g {
                        Ok(ft) => types.push(Some(ft)),
                        Err(_) => types.push(None),
                    }
                }
            }
            Payload::ImportSection(r) => {
                for imp in r.clone().into_imports() {
                    let Ok(imp) = imp else {
                        problems.push("malformed import section".into());
                        break;
                    };
                    let who = format!("import {}.{}", imp.module, imp.name);
                    if imp.module != "env" {
                        problems.push(format!("{who}: only module \"env\" is provided by the runtime"));
                        continue;
                    }
                    imports.push(imp.name.to_string());
                    match (imp.name, imp.ty) {
                        ("memory", TypeRef::Memory(m)) => {
                            memory_min_pages = m.initial;
                            if !m.shared {
                                problems.push(format!("{who}: must be shared (the kernel's memory)"));
                            }
                            if m.memory64 {
                                problems.push(format!("{who}: must be a 32-bit memory"));
                            }
                            if m.maximum != Some(MEMORY_MAX_PAGES) {
                                problems.push(format!(
                                    "{who}: maximum must be {MEMORY_MAX_PAGES} pages (the kernel's), not {:?}",
                                    m.maximum
                                ));
                            }
                        }
                        ("__memory_base" | "__table_base" | "__table_base32", TypeRef::Global(g)) => {
                            if g.content_type != ValType::I32 || g.mutable {
                                problems.push(format!("{who}: must be an immutable i32 global"));
                            }
                        }
                        ("__stack_pointer", TypeRef::Global(g)) => {
                            if g.content_type != ValType::I32 || !g.mutable {
                                problems.push(format!("{who}: must be a mutable i32 global"));
                            }
                        }
                        ("__indirect_function_table", TypeRef::Table(t)) => {
                            if !t.element_type.is_func_ref() || t.table64 {
                                problems.push(format!("{who}: must be a 32-bit funcref table"));
                            }
                            if t.initial > TABLE_ENTRIES || t.maximum.is_some() {
                                problems.push(format!(
                                    "{who}: must need at most {TABLE_ENTRIES} entries and declare no maximum"
                                ));
                            }
                        }
                        (name, TypeRef::Func(ti)) if allowed_func(name).is_some() => {
                            imported_funcs += 1;
                            func_types.push(ti);
                            let (p, r) = allowed_func(name).unwrap_or_default();
                            match types.get(ti as usize).cloned().flatten() {
                                Some(ft) if ft.params() == p.as_slice() && ft.results() == r.as_slice() => {}
                                Some(ft) => problems.push(format!(
                                    "{who}: type {} where the runtime provides {}",
                                    sig(ft.params(), ft.results()),
                                    sig(&p, &r)
                                )),
                                None => problems.push(format!("{who}: bad type index")),
                            }
                        }
                        (_, ty) => {
                            if let TypeRef::Func(ti) = ty {
                                imported_funcs += 1;
                                func_types.push(ti);
                            }
                            problems.push(format!(
                                "{who}: not provided by linux-wasm's runtime (it gives memory, __memory_base, \
                                 __stack_pointer, __table_base, __table_base32, __indirect_function_table, \
                                 __wasm_abort and __wasm_syscall_0..6)"
                            ));
                        }
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r.clone() {
                    func_types.push(t.unwrap_or(u32::MAX));
                }
            }
            Payload::MemorySection(r) if r.count() > 0 => {
                problems.push("defines its own memory: it must import the kernel's (env.memory)".into());
            }
            Payload::ExportSection(r) => {
                for e in r.clone().into_iter().flatten() {
                    exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            Payload::CodeSectionEntry(body) => {
                if let Ok(mut ops) = body.get_operators_reader() {
                    while !ops.eof() {
                        match ops.read() {
                            Ok(Operator::MemoryGrow { .. }) => grows += 1,
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
            }
            _ => {}
        }
        if is_section {
            if first && mem_info.is_none() && !problems.iter().any(|p| p.starts_with("dylink.0")) {
                problems.push(
                    "the first section is not the custom section dylink.0 (the kernel's loader answers ENOEXEC)"
                        .into(),
                );
            }
            first = false;
        }
    }
    if grows > 0 {
        problems.push(format!(
            "uses memory.grow ({grows} times): the kernel owns the memory; allocate with mmap2"
        ));
    }
    for name in ["_start", "__wasm_apply_data_relocs"] {
        match exports.iter().find(|(n, _, _)| n == name) {
            None => problems.push(format!("does not export {name} (the runtime calls it)")),
            Some((_, ExternalKind::Func, idx)) => {
                let ty = func_types
                    .get(*idx as usize)
                    .and_then(|t| types.get(*t as usize))
                    .cloned()
                    .flatten();
                if !ty.is_some_and(|t| t.params().is_empty() && t.results().is_empty()) {
                    problems.push(format!("export {name} must be a function of type () -> ()"));
                }
            }
            Some(_) => problems.push(format!("export {name} must be a function")),
        }
    }
    let _ = imported_funcs;
    match (mem_info, problems.is_empty()) {
        (Some(mem_info), true) => Ok(Program {
            mem_info,
            memory_min_pages,
            imports,
        }),
        _ => Err(AbiError(problems)),
    }
}

/// Parses `dylink.0`'s subsections; MEM_INFO is required.
fn mem_info_of(data: &[u8], offset: usize) -> Result<MemInfo, String> {
    let mut r = BinaryReader::new(data, offset);
    while !r.eof() {
        let id = r.read_u8().map_err(|e| e.to_string())?;
        let len = r.read_var_u32().map_err(|e| e.to_string())? as usize;
        let body = r.read_bytes(len).map_err(|e| format!("subsection {id}: {e}"))?;
        if id == WASM_DYLINK_MEM_INFO {
            let mut m = BinaryReader::new(body, 0);
            let mut next = |what: &str| m.read_var_u32().map_err(|e| format!("MEM_INFO {what}: {e}"));
            let memory_size = next("memory size")?;
            let memory_align = next("memory alignment")?;
            let table_size = next("table size")?;
            let table_align = next("table alignment")?;
            if memory_align > 31 || table_align > 31 {
                return Err("MEM_INFO alignment too large (the loader allows 2^31 at most)".into());
            }
            return Ok(MemInfo {
                memory_size,
                memory_align: 1 << memory_align,
                table_size,
                table_align: 1 << table_align,
            });
        }
    }
    Err("no MEM_INFO subsection (the kernel's loader answers ENOEXEC)".into())
}

/// Small hand-assembled modules for tests of this crate and its users (a
/// registry test needs a real linux-wasm program, not a toolchain).
pub mod sample {
    use super::WASM_DYLINK_MEM_INFO;

    /// The smallest conforming program: imports the shared memory and
    /// `__wasm_syscall_1`, exports `_start` and `__wasm_apply_data_relocs`.
    pub fn program() -> Vec<u8> {
        variant(Some(dylink(1024)), true, false, None)
    }

    /// A binary module from raw sections (id, payload).
    pub fn module(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        for (id, body) in sections {
            m.push(*id);
            leb(&mut m, body.len() as u32);
            m.extend_from_slice(body);
        }
        m
    }

    /// Appends `v` as unsigned LEB128.
    pub fn leb(out: &mut Vec<u8>, mut v: u32) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// Appends a length-prefixed name.
    pub fn name(out: &mut Vec<u8>, s: &str) {
        leb(out, s.len() as u32);
        out.extend_from_slice(s.as_bytes());
    }

    /// The `dylink.0` custom section with a MEM_INFO of `mem` data bytes.
    pub fn dylink(mem: u32) -> (u8, Vec<u8>) {
        let mut b = Vec::new();
        name(&mut b, "dylink.0");
        b.push(WASM_DYLINK_MEM_INFO);
        let mut sub = Vec::new();
        for v in [mem, 2, 0, 0] {
            leb(&mut sub, v);
        }
        leb(&mut b, sub.len() as u32);
        b.extend(sub);
        (0, b)
    }

    /// A program like [`program`], varied: `first` section (None drops
    /// dylink.0), `shared` memory import, `grow` adds a memory.grow,
    /// `extra_import` adds a `() -> ()` function import from env.
    pub fn variant(
        first: Option<(u8, Vec<u8>)>,
        shared: bool,
        grow: bool,
        extra_import: Option<&str>,
    ) -> Vec<u8> {
        let mut s = Vec::new();
        if let Some(f) = first {
            s.push(f);
        }
        // types: 0 = () -> (), 1 = (i32 x4) -> i32
        s.push((1, vec![2, 0x60, 0, 0, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f]));
        let mut imp = Vec::new();
        let count = 2 + u32::from(extra_import.is_some());
        leb(&mut imp, count);
        name(&mut imp, "env");
        name(&mut imp, "memory");
        imp.push(2); // memory
        imp.push(if shared { 3 } else { 1 });
        leb(&mut imp, 1);
        leb(&mut imp, 65536);
        name(&mut imp, "env");
        name(&mut imp, "__wasm_syscall_1");
        imp.extend([0, 1]);
        if let Some(x) = extra_import {
            name(&mut imp, "env");
            name(&mut imp, x);
            imp.extend([0, 0]);
        }
        s.push((2, imp));
        s.push((3, vec![2, 0, 0]));
        let mut exp = Vec::new();
        leb(&mut exp, 2);
        let base = 1 + u32::from(extra_import.is_some());
        name(&mut exp, "_start");
        exp.push(0);
        leb(&mut exp, base);
        name(&mut exp, "__wasm_apply_data_relocs");
        exp.push(0);
        leb(&mut exp, base + 1);
        s.push((7, exp));
        let body_start: Vec<u8> = if grow {
            vec![0, 0x41, 1, 0x40, 0, 0x1a, 0x0b] // i32.const 1; memory.grow 0; drop; end
        } else {
            vec![0, 0x0b]
        };
        let mut code = vec![2];
        code.push(body_start.len() as u8);
        code.extend(body_start);
        code.extend([2, 0, 0x0b]);
        s.push((10, code));
        module(&s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::sample::*;
    use super::*;

    #[test]
    fn a_conforming_program_passes() {
        let p = check(&program()).expect("conforming");
        assert_eq!(p.mem_info.memory_size, 1024);
        assert_eq!(p.mem_info.memory_align, 4);
        assert_eq!(p.imports, ["memory", "__wasm_syscall_1"]);
    }

    #[test]
    fn each_violation_is_named() {
        let no_dylink = check(&variant(None, true, false, None)).unwrap_err().to_string();
        assert!(
            no_dylink.contains("first section is not the custom section dylink.0"),
            "{no_dylink}"
        );
        let private = check(&variant(Some(dylink(0)), false, false, None))
            .unwrap_err()
            .to_string();
        assert!(private.contains("must be shared"), "{private}");
        let grows = check(&variant(Some(dylink(0)), true, true, None))
            .unwrap_err()
            .to_string();
        assert!(grows.contains("memory.grow"), "{grows}");
        let libc = check(&variant(Some(dylink(0)), true, false, Some("open")))
            .unwrap_err()
            .to_string();
        assert!(libc.contains("import env.open: not provided"), "{libc}");
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        assert!(check(b"").is_err());
        assert!(check(b"\0asm\x01\0\0\0\0\x05").is_err());
        let mut m = variant(Some(dylink(0)), true, false, None);
        m.truncate(m.len() / 2);
        assert!(check(&m).is_err());
        // dylink.0 without MEM_INFO.
        let mut b = Vec::new();
        name(&mut b, "dylink.0");
        let e = check(&module(&[(0, b)])).unwrap_err().to_string();
        assert!(e.contains("no MEM_INFO"), "{e}");
    }
}
