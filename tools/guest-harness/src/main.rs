//! guest-harness: a loader that runs a wasm32 linux-wasm user program (the
//! shipped lwtcp, lwpkg, lwsync) the way upstream's kernel loader
//! (`fs/binfmt_wasm.c`) and runtime (`runtime/linux-worker.js`) do, under
//! wasmtime, with a small kernel emulation behind its system calls.
//!
//! - The module must pass the static ABI check ([`linux_wasm_abi::check`]);
//!   otherwise it is refused, as the kernel answers ENOEXEC.
//! - Memory is one shared memory of at most 65536 pages that the "kernel"
//!   (this harness) owns and grows; the program's data+bss are placed at
//!   `__memory_base` (MEM_INFO size, page-aligned, zeroed).
//! - Imports are built as linux-worker.js builds them: `memory`,
//!   `__memory_base`, `__stack_pointer`, `__indirect_function_table` (4096
//!   entries, no maximum), `__table_base`, `__table_base32`,
//!   `__wasm_syscall_0..6` and `__wasm_abort`. After instantiation (which
//!   runs the module's start function, `__wasm_init_memory`) it calls
//!   `__wasm_apply_data_relocs`, `__wasm_call_ctors` if exported, then
//!   `_start`, which must end through `exit_group`.
//! - The stack is binfmt_wasm's: a mapping of two pages (8 KiB) plus the
//!   page-aligned argument block; the strings at its top, then auxv, envp,
//!   argv and argc at the page-aligned initial stack pointer. Below the
//!   mapping lies a canary region: a run that wrote into it fails. The
//!   stack is pre-filled with a pattern to measure its high-water mark.
//! - Syscalls ([`kernel`]) use the asm-generic 32-bit numbers, generated
//!   from the kernel headers: files and directories under a scratch root
//!   (the guest's "/", never left, symlinks included), anonymous mmap2,
//!   and `/dev/lwnet` + `/dev/lwstore` ([`devices`]) served by the real host
//!   shim (`lwhost::worker::Worker` over a shared region, `lwhost::region_service`
//!   talking to a real lwproxy and store). stdin/stdout/stderr are the
//!   harness's own.

use clap::Parser;
use lwabi::{lwnet_open_args, lwnet_open_ex, lwnet_status, lwstore_io, lwstore_list};
use lwhost::worker::{StoreRequest, Worker};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::error::Context as _;
use wasmtime::{bail, Result};
use wasmtime::{
    Caller, Engine, Extern, Global, GlobalType, Linker, MemoryType, Module, Mutability, Ref, RefType,
    SharedMemory, Store, Table, TableType, Val, ValType,
};

mod devices;
mod kernel;
use devices::*;

#[derive(Parser)]
#[command(
    name = "guest-harness",
    about = "Run a wasm32 linux-wasm user program (lwtcp, lwpkg, lwsync) as upstream's loader and runtime do, \
             with a small kernel emulation and a real lwhost behind /dev/lwnet and /dev/lwstore"
)]
struct Cli {
    /// Directory that is the guest's "/" (paths cannot leave it, symlinks included).
    #[arg(long)]
    root: PathBuf,
    /// lwproxy WebSocket URL for /dev/lwnet.
    #[arg(long, default_value = "ws://127.0.0.1:9/")]
    proxy: String,
    /// Token for the proxy.
    #[arg(long)]
    token: Option<String>,
    /// The host store directory behind /dev/lwstore.
    #[arg(long)]
    store: PathBuf,
    /// Store quota in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    quota: u64,
    /// Guest environment variables (NAME=VALUE), repeatable.
    #[arg(long = "env")]
    env: Vec<String>,
    /// Stack bytes below the argument block: binfmt_wasm gives 8192 (two
    /// pages); a larger value only measures a program that needs more.
    #[arg(long, default_value_t = STACK_SIZE)]
    stack_size: u32,
    /// After the run, print the stack high-water mark and each syscall used
    /// (name, number, count) to stderr.
    #[arg(long)]
    report: bool,
    /// The wasm32 module (lwtcp.wasm, lwpkg.wasm, lwsync.wasm).
    module: PathBuf,
    /// Arguments for the program (argv[1..]).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The guest called exit_group(code).
#[derive(Debug)]
struct Exit(i32);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit({})", self.0)
    }
}
impl std::error::Error for Exit {}

// Linux errno values the guest expects: lwabi's, generated from the kernel's
// <asm-generic/errno.h>.
use lwabi::errno::{
    EAGAIN, EBADF, EBUSY, EFAULT, EINPROGRESS, EINVAL, EISCONN, ENAMETOOLONG, ENOENT, ENOMEM, ENOSYS,
    ENOTCONN, ENOTDIR, ENOTTY, EPERM, ESPIPE,
};

// Poll events and fcntl flags as the kernel defines them: lwabi's, generated
// from <asm-generic/poll.h> and <asm-generic/fcntl.h>.
use lwabi::linux::{F_GETFL, F_SETFL, O_NONBLOCK, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};

/// linux-wasm's page size.
const PAGE: u32 = 4096;
/// binfmt_wasm's WASM_STACK_SIZE: two pages.
const STACK_SIZE: u32 = 2 * PAGE;
/// The canary region below the stack mapping.
const CANARY: u32 = 4 * PAGE;
const CANARY_BYTE: u8 = 0xa5;
const STACK_FILL: u8 = 0x5a;
/// Entries of the function table the runtime creates.
const TABLE_ENTRIES: u32 = 4096;

enum GuestFd {
    /// The harness's own stdin/stdout/stderr.
    Std(i32),
    File(FileFd),
    Net(NetFd),
    Store,
}

/// A directory's entries (name, d_type) as read at the first getdents64,
/// and how many were handed out.
type Listing = (Vec<(Vec<u8>, u8)>, usize);

/// A host file or directory; directories keep their listing for getdents64.
struct FileFd {
    fd: OwnedFd,
    dir: Option<Listing>,
}

#[derive(Default)]
struct NetFd {
    id: Option<i32>,
    nonblock: bool,
    shut: bool,
    bytes_in: u64,
    bytes_out: u64,
}

/// The kernel's view of the program's memory: mappings handed out from the
/// shared memory (grown on demand), unmapped only whole (NOMMU).
struct Mm {
    /// Start -> length of each live mapping.
    maps: BTreeMap<u32, u32>,
    /// The lowest address never handed out.
    top: u32,
}

struct State {
    root: OwnedFd,
    fds: HashMap<i32, GuestFd>,
    worker: Worker,
    memory: SharedMemory,
    mm: Mm,
    /// Syscalls made: number -> count (for --report).
    calls: BTreeMap<u32, u64>,
}

type Ctx<'a> = Caller<'a, State>;

/// A host pointer to `len` bytes of guest memory at `ptr`, if in bounds.
fn guest_ptr(m: &SharedMemory, ptr: u32, len: usize) -> std::result::Result<*mut u8, i32> {
    let data = m.data();
    let end = (ptr as usize).checked_add(len).ok_or(EFAULT)?;
    if end > data.len() {
        return Err(EFAULT);
    }
    Ok(std::cell::UnsafeCell::raw_get(
        data.as_ptr().wrapping_add(ptr as usize),
    ))
}

fn mem_read(m: &SharedMemory, ptr: u32, len: usize) -> std::result::Result<Vec<u8>, i32> {
    let p = guest_ptr(m, ptr, len)?;
    let mut v = vec![0u8; len];
    // SAFETY: in bounds; the guest thread is blocked in this syscall, so
    // nothing else writes the range meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len) };
    Ok(v)
}

fn mem_write(m: &SharedMemory, ptr: u32, data: &[u8]) -> std::result::Result<(), i32> {
    let p = guest_ptr(m, ptr, data.len())?;
    // SAFETY: as in mem_read.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    Ok(())
}

fn read_bytes(c: &mut Ctx<'_>, ptr: u32, len: usize) -> std::result::Result<Vec<u8>, i32> {
    mem_read(&c.data().memory, ptr, len)
}

fn write_bytes(c: &mut Ctx<'_>, ptr: u32, data: &[u8]) -> std::result::Result<(), i32> {
    mem_write(&c.data().memory, ptr, data)
}

/// A NUL-terminated path of at most PATH_MAX (4096) bytes.
fn cstr(c: &mut Ctx<'_>, ptr: u32) -> std::result::Result<String, i32> {
    let m = &c.data().memory;
    let avail = m.data().len().saturating_sub(ptr as usize).min(4097);
    if avail == 0 {
        return Err(EFAULT);
    }
    let bytes = mem_read(m, ptr, avail)?;
    let n = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(if avail == 4097 { ENAMETOOLONG } else { EFAULT })?;
    String::from_utf8(bytes[..n].to_vec()).map_err(|_| EINVAL)
}

/// A plain-old-data uapi struct read from guest memory.
fn read_struct<T: Default + Copy>(c: &mut Ctx<'_>, ptr: u32) -> std::result::Result<T, i32> {
    let b = read_bytes(c, ptr, std::mem::size_of::<T>())?;
    // SAFETY: T is a bindgen uapi struct (integers and byte arrays only).
    Ok(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
}

fn write_struct<T: Copy>(c: &mut Ctx<'_>, ptr: u32, v: &T) -> std::result::Result<(), i32> {
    // SAFETY: T is plain data; we view its bytes.
    let b = unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) };
    write_bytes(c, ptr, b)
}

fn page_align(n: u32) -> Option<u32> {
    n.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1))
}

impl Mm {
    /// A fresh, zeroed mapping of `len` bytes (page multiple) aligned to
    /// `align` (power of two >= PAGE), growing the memory as needed.
    fn map(&mut self, memory: &SharedMemory, len: u32, align: u32) -> std::result::Result<u32, i32> {
        let len = page_align(len.max(1)).ok_or(ENOMEM)?;
        let align = align.max(PAGE);
        // First fit among the gaps between live mappings, else at the top.
        let mut at = PAGE * 16; // the first 64 KiB stay unused (null pointers fault-ish)
        let mut found = None;
        for (&start, &l) in &self.maps {
            let cand = at.checked_add(align - 1).ok_or(ENOMEM)? & !(align - 1);
            if cand.checked_add(len).is_some_and(|e| e <= start) {
                found = Some(cand);
                break;
            }
            at = start + l;
        }
        let addr = match found {
            Some(a) => a,
            None => {
                let cand = at.max(self.top).checked_add(align - 1).ok_or(ENOMEM)? & !(align - 1);
                let end = cand.checked_add(len).ok_or(ENOMEM)?;
                let have = memory.data().len() as u64;
                if u64::from(end) > have {
                    let pages = (u64::from(end) - have).div_ceil(65536);
                    memory.grow(pages).map_err(|_| ENOMEM)?;
                }
                self.top = self.top.max(end);
                cand
            }
        };
        self.maps.insert(addr, len);
        // Reused memory must read as zero, as a fresh anonymous mapping does.
        let p = guest_ptr(memory, addr, len as usize)?;
        // SAFETY: in bounds; the range belongs to no live mapping.
        unsafe { std::ptr::write_bytes(p, 0, len as usize) };
        Ok(addr)
    }

    /// Unmaps exactly one whole mapping (NOMMU cannot split one).
    fn unmap(&mut self, addr: u32, len: u32) -> std::result::Result<(), i32> {
        match self.maps.get(&addr) {
            Some(&l) if page_align(len) == Some(l) => {
                self.maps.remove(&addr);
                Ok(())
            }
            _ => Err(EINVAL),
        }
    }
}

/// The initial stack: binfmt_wasm's layout (strings at the top of the
/// mapping, then auxv, envp, argv, argc at the page-aligned stack pointer).
struct StackLayout {
    /// The mapping: [base, base + size).
    base: u32,
    size: u32,
    sp: u32,
}

/// Builds the stack mapping with the argument block, a canary region below
/// it, and the pattern for the high-water mark.
fn setup_stack(st: &mut State, argv: &[String], envp: &[String], stack_size: u32) -> Result<StackLayout> {
    let strings: Vec<u8> = argv
        .iter()
        .chain(envp)
        .flat_map(|s| s.bytes().chain(std::iter::once(0)))
        .collect();
    // binfmt_wasm: extra = strings + argv/envp pointer arrays, page-aligned.
    let extra = page_align(strings.len() as u32 + 4 * (argv.len() as u32 + 1 + envp.len() as u32 + 1))
        .context("argument block too large")?;
    let size = page_align(stack_size.clamp(PAGE, 1 << 24)).context("stack size")? + extra;
    let memory = st.memory.clone();
    let region = st
        .mm
        .map(&memory, CANARY + size, PAGE)
        .map_err(|e| wasmtime::Error::msg(format!("no memory for the stack (errno {e})")))?;
    let base = region + CANARY;
    let top = base + size;
    let str_at = top - strings.len() as u32;
    mem_write(&memory, str_at, &strings).map_err(|_| wasmtime::Error::msg("stack out of bounds"))?;
    // auxv as binfmt_wasm builds it (AT_NOTELF, AT_PAGESZ, AT_UID, AT_EUID,
    // AT_GID, AT_EGID, AT_SECURE, AT_NULL): 8 pairs.
    let auxv: [u32; 16] = [19, 1, 6, PAGE, 11, 0, 12, 0, 13, 0, 14, 0, 23, 0, 0, 0];
    let words = 1 + argv.len() + 1 + envp.len() + 1 + auxv.len();
    let sp = (str_at - 4 * words as u32) & !(PAGE - 1);
    let mut table = vec![argv.len() as u32];
    let mut p = str_at;
    for s in argv {
        table.push(p);
        p += s.len() as u32 + 1;
    }
    table.push(0);
    for s in envp {
        table.push(p);
        p += s.len() as u32 + 1;
    }
    table.push(0);
    table.extend_from_slice(&auxv);
    let bytes: Vec<u8> = table.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem_write(&memory, sp, &bytes).map_err(|_| wasmtime::Error::msg("stack out of bounds"))?;
    if sp < base {
        bail!("the argument block does not fit the stack mapping");
    }
    mem_write(&memory, region, &vec![CANARY_BYTE; CANARY as usize])
        .map_err(|_| wasmtime::Error::msg("oob"))?;
    mem_write(&memory, base, &vec![STACK_FILL; (sp - base) as usize])
        .map_err(|_| wasmtime::Error::msg("oob"))?;
    Ok(StackLayout { base, size, sp })
}

/// Bytes of stack the run used (below the initial stack pointer), and
/// whether it wrote into the canary region below the mapping.
fn stack_usage(memory: &SharedMemory, s: &StackLayout) -> (u32, bool) {
    let below = mem_read(memory, s.base - CANARY, CANARY as usize).unwrap_or_default();
    let smashed = below.iter().any(|&b| b != CANARY_BYTE);
    let stack = mem_read(memory, s.base, (s.sp - s.base) as usize).unwrap_or_default();
    let untouched = stack.iter().take_while(|&&b| b == STACK_FILL).count() as u32;
    let used = if smashed {
        s.sp - s.base + CANARY
    } else {
        s.sp - s.base - untouched
    };
    (used, smashed)
}

fn run(cli: Cli) -> Result<i32> {
    let bytes = std::fs::read(&cli.module).with_context(|| format!("reading {}", cli.module.display()))?;
    // The kernel's loader refuses what its runtime cannot run (ENOEXEC).
    let program =
        linux_wasm_abi::check(&bytes).map_err(|e| Refused(format!("{}: {e}", cli.module.display())))?;

    std::fs::create_dir_all(&cli.root).with_context(|| format!("creating {}", cli.root.display()))?;
    std::fs::create_dir_all(&cli.store).with_context(|| format!("creating {}", cli.store.display()))?;
    let root = rustix::fs::open(
        &cli.root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", cli.root.display()))?;

    // The host shim: a shared region, its main side on a tokio runtime
    // (talking to lwproxy and the store), its worker side called below.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let region = Arc::new(lwhost::shm::Region::new_memfd().context("creating the shared region")?);
    let cfg = lwhost::region_service::MainConfig {
        proxy_url: cli.proxy.clone(),
        token: cli.token.clone(),
        store_dir: cli.store.clone(),
        store_quota: cli.quota,
        extra_ca: Vec::new(),
    };
    let service = {
        let _guard = runtime.enter();
        lwhost::region_service::spawn(region.clone(), cfg)
            .map_err(|e| wasmtime::Error::msg(format!("starting the lwhost main side: {e:#}")))?
    };
    let worker = Worker::new(region);

    let mut config = wasmtime::Config::new();
    config.wasm_threads(true).shared_memory(true);
    let engine = Engine::new(&config)?;
    let module =
        Module::new(&engine, &bytes).with_context(|| format!("compiling {}", cli.module.display()))?;
    // The kernel's memory: shared, 65536 pages at most, as big as needed.
    let memory = SharedMemory::new(
        &engine,
        MemoryType::shared(
            program.memory_min_pages.max(1) as u32,
            linux_wasm_abi::MEMORY_MAX_PAGES as u32,
        ),
    )?;
    let mut fds = HashMap::new();
    for i in 0..3 {
        fds.insert(i, GuestFd::Std(i));
    }
    let mut state = State {
        root,
        fds,
        worker,
        memory: memory.clone(),
        mm: Mm {
            maps: BTreeMap::new(),
            top: PAGE * 16,
        },
        calls: BTreeMap::new(),
    };
    // Data + bss at __memory_base, zeroed (binfmt_wasm maps it anonymous).
    let mi = program.mem_info;
    let data_start = state
        .mm
        .map(&memory, mi.memory_size.max(1), mi.memory_align)
        .map_err(|e| wasmtime::Error::msg(format!("no memory for the program's data (errno {e})")))?;
    let name = cli
        .module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv: Vec<String> = std::iter::once(name).chain(cli.args.iter().cloned()).collect();
    let envp: Vec<String> = cli.env.clone();
    for kv in &envp {
        if !kv.contains('=') {
            bail!("--env {kv:?}: expected NAME=VALUE");
        }
    }
    let stack = setup_stack(&mut state, &argv, &envp, cli.stack_size)?;
    let table_base: u32 = 1;
    if mi.table_size.saturating_add(table_base) > TABLE_ENTRIES {
        bail!(
            "the program needs {} table entries; the runtime has {TABLE_ENTRIES}",
            mi.table_size
        );
    }

    let mut store = Store::new(&engine, state);
    let mut linker = Linker::new(&engine);
    // The imports exactly as linux-worker.js builds them.
    let konst = |store: &mut Store<State>, v: u32| {
        Global::new(
            &mut *store,
            GlobalType::new(ValType::I32, Mutability::Const),
            Val::I32(v as i32),
        )
    };
    linker.define(&store, "env", "memory", Extern::SharedMemory(memory.clone()))?;
    let g = konst(&mut store, data_start)?;
    linker.define(&store, "env", "__memory_base", g)?;
    let sp = Global::new(
        &mut store,
        GlobalType::new(ValType::I32, Mutability::Var),
        Val::I32(stack.sp as i32),
    )?;
    linker.define(&store, "env", "__stack_pointer", sp)?;
    let table = Table::new(
        &mut store,
        TableType::new(RefType::FUNCREF, TABLE_ENTRIES, None),
        Ref::Func(None),
    )?;
    linker.define(&store, "env", "__indirect_function_table", table)?;
    let g = konst(&mut store, table_base)?;
    linker.define(&store, "env", "__table_base", g)?;
    let g = konst(&mut store, table_base)?;
    linker.define(&store, "env", "__table_base32", g)?;
    linker.func_wrap("env", "__wasm_abort", || -> Result<()> {
        bail!("the program called __wasm_abort")
    })?;
    kernel::link_syscalls(&mut linker)?;

    let outcome = (|| -> Result<()> {
        let instance = linker
            .instantiate(&mut store, &module)
            .context("instantiating the program")?;
        let relocs = instance.get_typed_func::<(), ()>(&mut store, "__wasm_apply_data_relocs")?;
        relocs.call(&mut store, ())?;
        if let Ok(ctors) = instance.get_typed_func::<(), ()>(&mut store, "__wasm_call_ctors") {
            ctors.call(&mut store, ())?;
        }
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call(&mut store, ())?;
        bail!("_start returned (a program must end with exit_group)")
    })();
    let code = match outcome {
        Ok(()) => unreachable!("the closure never returns Ok"),
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e.context("the program failed")),
        },
    };
    let (used, smashed) = stack_usage(&memory, &stack);
    if cli.report {
        eprintln!(
            "guest-harness: stack high-water mark {used} bytes (stack below the initial pointer: {} bytes)",
            stack.sp - stack.base
        );
        for (n, count) in &store.data().calls {
            eprintln!("guest-harness: syscall {} ({n}): {count}", kernel::name_of(*n));
        }
    }
    // Close what the guest left open (the kernel would), then stop the host.
    let worker = store.data().worker.clone();
    for (_, f) in store.data_mut().fds.drain() {
        if let GuestFd::Net(NetFd { id: Some(id), .. }) = f {
            worker.net_close(id);
        }
    }
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), service.shutdown()).await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if smashed {
        bail!(
            "the program wrote below its stack ({} bytes of stack and arguments): stack overflow",
            stack.size
        );
    }
    code
}

/// The module is not a linux-wasm program (the kernel's ENOEXEC).
#[derive(Debug)]
struct Refused(String);
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LW_LOG").unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let refused = e.downcast_ref::<Refused>().is_some();
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("guest-harness: {}", chain.join(": "));
            // 126: "cannot execute", as a shell reports ENOEXEC.
            std::process::exit(if refused { 126 } else { 125 });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::kernel::{full, split_path};
    use super::*;

    #[test]
    fn guest_paths_stay_inside_the_root() {
        assert_eq!(split_path("/a/b/c"), ("a/b".into(), "c".into()));
        assert_eq!(split_path("/../../etc/passwd"), ("etc".into(), "passwd".into()));
        assert_eq!(split_path("/"), (".".into(), ".".into()));
        assert_eq!(full("/dev/./lwnet"), "dev/lwnet");
        assert_eq!(full("x/../../y"), "y");
    }

    #[test]
    fn mappings_are_whole_zeroed_and_reused() {
        let mut config = wasmtime::Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = Engine::new(&config).unwrap();
        let memory = SharedMemory::new(&engine, MemoryType::shared(1, 65536)).unwrap();
        let mut mm = Mm {
            maps: BTreeMap::new(),
            top: PAGE * 16,
        };
        let a = mm.map(&memory, 100, PAGE).unwrap();
        let b = mm.map(&memory, 3 * PAGE, 16 * PAGE).unwrap();
        assert_eq!(a % PAGE, 0);
        assert_eq!(b % (16 * PAGE), 0);
        assert!(b >= a + PAGE);
        mem_write(&memory, a, &[7; 16]).unwrap();
        // NOMMU: only whole mappings go away.
        assert_eq!(mm.unmap(a, PAGE / 2 + PAGE), Err(EINVAL));
        assert_eq!(mm.unmap(a + PAGE, PAGE), Err(EINVAL));
        mm.unmap(a, 100).unwrap();
        let again = mm.map(&memory, PAGE, PAGE).unwrap();
        assert_eq!(again, a);
        assert_eq!(mem_read(&memory, again, 16).unwrap(), vec![0; 16]);
        // Out of range for the guest is EFAULT, never a host fault.
        assert_eq!(mem_read(&memory, u32::MAX - 2, 16), Err(EFAULT));
    }
}
