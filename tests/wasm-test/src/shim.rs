//! lwhost-web under wasmtime: one shared memory, one instance per thread,
//! each with its own stack and TLS block from the module's thread slots
//! (the same protocol host/web/js/worker.js follows in a browser).

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use lwhost::shm::Region;
use lwhost::web_layout::Layout;
use wasmtime::{Engine, Extern, ExternType, Instance, Linker, Module, SharedMemory, Store, TypedFunc, Val};

pub struct Shim {
    engine: Engine,
    module: Module,
    memory: SharedMemory,
    linker: Linker<()>,
    pub layout: Layout,
    main_alive_at: u32,
    next_slot: AtomicUsize,
}

/// A host address of `len` bytes at wasm address `at`, if in bounds.
fn host_ptr(memory: &SharedMemory, at: u64, len: u64) -> Option<*mut u8> {
    let data = memory.data();
    let end = at.checked_add(len)?;
    if end > data.len() as u64 {
        return None;
    }
    Some(data.as_ptr().wrapping_add(at as usize) as *mut u8)
}

/// The aligned 32-bit word at wasm address `ptr`, if in bounds.
fn word(memory: &SharedMemory, ptr: i32) -> Option<&AtomicU32> {
    let at = ptr as u32 as u64;
    if !at.is_multiple_of(4) {
        return None;
    }
    let p = host_ptr(memory, at, 4)?;
    // SAFETY: in bounds and aligned; shared memory outlives the caller's
    // borrow of `memory`, and every access to the word is atomic.
    Some(unsafe { &*(p as *const AtomicU32) })
}

impl Shim {
    pub fn load(path: &Path) -> Result<Shim> {
        let mut config = wasmtime::Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = Engine::new(&config)?;
        let module =
            Module::from_file(&engine, path).map_err(|e| anyhow!("compiling {}: {e:?}", path.display()))?;
        let mem_ty = module
            .imports()
            .find(|i| i.module() == "env" && i.name() == "memory")
            .and_then(|i| match i.ty() {
                ExternType::Memory(m) => Some(m),
                _ => None,
            })
            .context("the module imports no env.memory")?;
        let memory =
            SharedMemory::new(&engine, mem_ty).map_err(|e| anyhow!("creating the shared memory: {e:?}"))?;
        let mut linker = Linker::new(&engine);
        linker.define(
            &engine_store(&engine),
            "env",
            "memory",
            Extern::SharedMemory(memory.clone()),
        )?;
        // lwhost's wait/notify imports: real futexes on the shared words,
        // so the native main side's futex wakes reach wasm threads.
        let m = memory.clone();
        linker.func_wrap(
            "lwhost",
            "atomic_wait32",
            move |ptr: i32, expected: i32, timeout_ns: i64| -> i32 {
                let Some(w) = word(&m, ptr) else { return 1 };
                let timeout = (timeout_ns >= 0).then(|| Duration::from_nanos(timeout_ns as u64));
                match lwhost::futex::wait(w, expected as u32, timeout) {
                    lwhost::futex::Wake::Woken => 0,
                    lwhost::futex::Wake::Changed => 1,
                    lwhost::futex::Wake::TimedOut => 2,
                }
            },
        )?;
        let m = memory.clone();
        linker.func_wrap("lwhost", "atomic_notify", move |ptr: i32, count: i32| -> i32 {
            match word(&m, ptr) {
                Some(w) => lwhost::futex::wake(w, count.max(0) as u32) as i32,
                None => 0,
            }
        })?;

        // The first instance runs the module's start function (data and
        // bss); it uses only the default stack, for lw_layout.
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &module)?;
        let lw_layout = instance.get_typed_func::<(), i32>(&mut store, "lw_layout")?;
        let at = lw_layout.call(&mut store, ())? as u32;
        let p = host_ptr(&memory, at as u64, (Layout::WORDS * 4) as u64).context("layout out of bounds")?;
        let words: Vec<u32> = (0..Layout::WORDS)
            // SAFETY: in bounds (checked above); read_unaligned needs no alignment.
            .map(|i| unsafe { std::ptr::read_unaligned((p as *const u32).add(i)) })
            .collect();
        let layout = Layout::from_words(&words).context("layout mismatch: rebuild host/web")?;
        let main_alive_at = layout.region + layout.main_alive;
        Ok(Shim {
            engine,
            module,
            memory,
            linker,
            layout,
            main_alive_at,
            next_slot: AtomicUsize::new(0),
        })
    }

    /// The region inside the shared memory, for the native main side.
    pub fn region(&self) -> Result<Arc<Region>> {
        let size = std::mem::size_of::<lwabi::lwhost_shm>() as u64;
        let p = host_ptr(&self.memory, self.layout.region as u64, size).context("region out of bounds")?;
        // SAFETY: the region is a static of the module, inside the shared
        // memory that `self` keeps alive (and wasmtime never moves it); it
        // is only accessed under the lwhost protocol.
        let region = unsafe { Region::from_raw(p.cast()) }.map_err(|e| anyhow!("{e}"))?;
        Ok(Arc::new(region))
    }

    pub fn main_alive(&self) -> bool {
        word(&self.memory, self.main_alive_at as i32).is_some_and(|w| w.load(Ordering::Acquire) == 1)
    }

    /// A new guest thread: its own instance, stack and TLS, over the memory.
    pub fn guest(self: &Arc<Self>) -> Result<Guest> {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) as u32;
        let l = &self.layout;
        if slot >= l.thread_slots {
            bail!("out of thread slots");
        }
        let mut store = Store::new(&self.engine, ());
        let instance = self.linker.instantiate(&mut store, &self.module)?;
        let base = l.thread_base + slot * l.thread_stride;
        let tls_size = instance
            .get_global(&mut store, "__tls_size")
            .context("__tls_size")?
            .get(&mut store);
        if tls_size.i32().unwrap_or(i32::MAX) as u32 > l.thread_tls_size {
            bail!("TLS block does not fit a thread slot");
        }
        instance
            .get_global(&mut store, "__stack_pointer")
            .context("__stack_pointer not exported")?
            .set(
                &mut store,
                Val::I32((base + l.thread_stack + l.thread_stack_size) as i32),
            )?;
        instance
            .get_typed_func::<i32, ()>(&mut store, "__wasm_init_tls")?
            .call(&mut store, (base + l.thread_tls) as i32)?;
        Ok(Guest {
            shim: self.clone(),
            scratch: base + l.thread_scratch,
            f3: Funcs::new(&instance, &mut store)?,
            instance,
            store,
        })
    }
}

/// A throwaway store, only to satisfy `Linker::define`'s store argument
/// (a shared memory belongs to no store).
fn engine_store(engine: &Engine) -> Store<()> {
    Store::new(engine, ())
}

struct Funcs {
    net_open: TypedFunc<(i32, i32, i32, i32, i32), i32>,
    net_poll: TypedFunc<i32, i32>,
    net_shutdown: TypedFunc<i32, i32>,
    net_close: TypedFunc<i32, ()>,
    store_submit: TypedFunc<(i32, i32, i32), i32>,
    wait_bell: TypedFunc<(i32, i32), i32>,
    bell: TypedFunc<(), i32>,
}

impl Funcs {
    fn new(i: &Instance, s: &mut Store<()>) -> Result<Funcs> {
        Ok(Funcs {
            net_open: i.get_typed_func(&mut *s, "lw_net_open")?,
            net_poll: i.get_typed_func(&mut *s, "lw_net_poll")?,
            net_shutdown: i.get_typed_func(&mut *s, "lw_net_shutdown")?,
            net_close: i.get_typed_func(&mut *s, "lw_net_close")?,
            store_submit: i.get_typed_func(&mut *s, "lw_store_submit")?,
            wait_bell: i.get_typed_func(&mut *s, "lw_wait_guest_doorbell")?,
            bell: i.get_typed_func(&mut *s, "lw_guest_doorbell")?,
        })
    }
}

/// One guest thread: drives the exports like worker.js does.
pub struct Guest {
    shim: Arc<Shim>,
    /// This thread's scratch area (wasm address).
    pub scratch: u32,
    f3: Funcs,
    instance: Instance,
    store: Store<()>,
}

use lwabi::errno::{EAGAIN, EBUSY, EINPROGRESS};

impl Guest {
    pub fn memory_len(&self) -> usize {
        self.shim.memory.data_size()
    }

    /// Copies `bytes` to scratch + `off`.
    pub fn put(&self, off: u32, bytes: &[u8]) -> Result<()> {
        if off as usize + bytes.len() > self.shim.layout.thread_scratch_size as usize {
            bail!("scratch overflow");
        }
        let p = host_ptr(&self.shim.memory, (self.scratch + off) as u64, bytes.len() as u64)
            .context("scratch")?;
        // SAFETY: in bounds; this thread's scratch is used by no one else.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    pub fn put_struct<T: Copy>(&self, off: u32, v: &T) -> Result<()> {
        // SAFETY: T is a plain C struct (lwabi); viewing it as bytes is sound.
        let bytes =
            unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) };
        self.put(off, bytes)
    }

    pub fn get(&self, off: u32, len: usize) -> Result<Vec<u8>> {
        let p = host_ptr(&self.shim.memory, (self.scratch + off) as u64, len as u64).context("scratch")?;
        let mut out = vec![0u8; len];
        // SAFETY: in bounds; this thread's scratch.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), len) };
        Ok(out)
    }

    /// Calls an `(i32, u32, u32) -> i32` export with raw arguments.
    pub fn call3(&mut self, name: &str, a: i32, b: u32, c: u32) -> Result<i32> {
        let f = self
            .instance
            .get_typed_func::<(i32, i32, i32), i32>(&mut self.store, name)?;
        Ok(f.call(&mut self.store, (a, b as i32, c as i32))?)
    }

    pub fn net_open_raw(&mut self, host: u32, len: u32, port: u32) -> Result<i32> {
        Ok(self
            .f3
            .net_open
            .call(&mut self.store, (host as i32, len as i32, port as i32, 0, 0))?)
    }

    pub fn store_submit_raw(&mut self, req: u32, area: u32, len: u32) -> Result<i32> {
        Ok(self
            .f3
            .store_submit
            .call(&mut self.store, (req as i32, area as i32, len as i32))?)
    }

    pub fn net_poll(&mut self, id: i32) -> i32 {
        self.f3.net_poll.call(&mut self.store, id).unwrap_or(i32::MIN)
    }

    pub fn net_shutdown(&mut self, id: i32) -> i32 {
        self.f3.net_shutdown.call(&mut self.store, id).unwrap_or(i32::MIN)
    }

    pub fn net_close(&mut self, id: i32) {
        let _ = self.f3.net_close.call(&mut self.store, id);
    }

    pub fn guest_doorbell(&mut self) -> u32 {
        self.f3.bell.call(&mut self.store, ()).unwrap_or(0) as u32
    }

    pub fn wait_guest_doorbell(&mut self, last: u32, ms: u32) -> u32 {
        self.f3
            .wait_bell
            .call(&mut self.store, (last as i32, ms as i32))
            .unwrap_or(0) as u32
    }

    /// Runs `step` until it returns something other than `-again`, sleeping
    /// on the guest doorbell in between (the way a kernel waits for its IRQ).
    fn until(
        &mut self,
        again: i32,
        timeout: Duration,
        mut step: impl FnMut(&mut Self) -> Result<i32>,
    ) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let bell = self.guest_doorbell();
            let r = step(self)?;
            if r != -again {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("timed out");
            }
            self.wait_guest_doorbell(bell, 100);
        }
    }

    /// Opens and waits until connected; the id.
    pub fn connect(&mut self, host: &str, port: u16, flags: u32, timeout: Duration) -> Result<i32> {
        self.put(0, host.as_bytes())?;
        let (scratch, len) = (self.scratch, host.len() as u32);
        let id = self.f3.net_open.call(
            &mut self.store,
            (scratch as i32, len as i32, port as i32, flags as i32, 0),
        )?;
        if id < 0 {
            bail!("open: {id}");
        }
        let r = self.until(EAGAIN, timeout, |g| {
            let p = g.net_poll(id);
            Ok(if p < 0 {
                p
            } else if p as u32 & lwabi::LWHOST_POLL_ERR != 0 {
                -(p >> lwabi::LWHOST_POLL_ERRNO_SHIFT)
            } else if p as u32 & lwabi::LWHOST_POLL_OUT != 0 {
                0
            } else {
                -EAGAIN
            })
        })?;
        if r < 0 {
            self.net_close(id);
            bail!("connect to {host}:{port}: errno {}", -r);
        }
        Ok(id)
    }

    pub fn write_all(&mut self, id: i32, mut data: &[u8], timeout: Duration) -> Result<()> {
        while !data.is_empty() {
            let n = data.len().min(self.shim.layout.thread_scratch_size as usize);
            self.put(0, &data[..n])?;
            let scratch = self.scratch;
            let r = self.until(EAGAIN, timeout, |g| {
                g.call3("lw_net_write", id, scratch, n as u32)
            })?;
            if r <= 0 {
                bail!("write: {r}");
            }
            data = &data[r as usize..];
        }
        Ok(())
    }

    pub fn read_to_end(&mut self, id: i32, chunk: u32, timeout: Duration) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let scratch = self.scratch;
        loop {
            let r = self.until(EAGAIN, timeout, |g| g.call3("lw_net_read", id, scratch, chunk))?;
            if r < 0 {
                bail!("read: errno {}", -r);
            }
            if r == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&self.get(0, r as usize)?);
        }
    }

    /// Submits a request built at scratch offset 0 (key at 64, data after
    /// the keys) and polls it; its result, output copied into `out`.
    fn store_call(
        &mut self,
        req: lwabi::lwhost_store_req,
        out: Option<&mut Vec<u8>>,
        timeout: Duration,
    ) -> Result<i32> {
        self.put_struct(0, &req)?;
        let (scratch, size) = (self.scratch, self.shim.layout.thread_scratch_size);
        let ticket = self.until(EBUSY, timeout, |g| g.store_submit_raw(scratch, scratch, size))?;
        if ticket < 0 {
            return Ok(ticket);
        }
        let cap = out
            .as_ref()
            .map_or(0, |o| o.capacity() as u32)
            .min(lwabi::LWHOST_STORE_BUF);
        let data_at = self.data_offset();
        let r = self.until(EINPROGRESS, timeout, |g| {
            g.call3("lw_store_poll", ticket, scratch + data_at, cap)
        })?;
        if let Some(out) = out {
            if r > 0 {
                out.extend_from_slice(&self.get(data_at, r as usize)?);
            }
        }
        Ok(r)
    }

    fn data_offset(&self) -> u32 {
        64 + 2 * self.shim.layout.key_max
    }

    fn key_req(&self, op: u32, key: &[u8]) -> Result<lwabi::lwhost_store_req> {
        self.put(64, key)?;
        Ok(lwabi::lwhost_store_req {
            op,
            key: 64,
            key_len: key.len() as u32,
            ..Default::default()
        })
    }

    pub fn store_put(&mut self, key: &[u8], value: &[u8], timeout: Duration) -> Result<()> {
        let mut off = 0usize;
        let chunk = lwabi::LWHOST_STORE_BUF as usize;
        loop {
            let n = (value.len() - off).min(chunk);
            let mut req = self.key_req(lwabi::LWHOST_STORE_WRITE, key)?;
            req.flags = if off == 0 { lwabi::LWHOST_STORE_TRUNC } else { 0 }
                | if off + n == value.len() {
                    lwabi::LWHOST_STORE_COMMIT
                } else {
                    0
                };
            req.offset = off as u64;
            req.data = self.data_offset() as u64;
            req.len = n as u32;
            self.put(self.data_offset(), &value[off..off + n])?;
            let r = self.store_call(req, None, timeout)?;
            if r < 0 {
                bail!("store write at {off}: errno {}", -r);
            }
            off += n;
            if off == value.len() {
                return Ok(());
            }
        }
    }

    pub fn store_get(&mut self, key: &[u8], max: usize, timeout: Duration) -> Result<Vec<u8>> {
        let mut value = Vec::new();
        loop {
            let want = (max - value.len()).min(lwabi::LWHOST_STORE_BUF as usize);
            let mut req = self.key_req(lwabi::LWHOST_STORE_READ, key)?;
            req.offset = value.len() as u64;
            req.len = want as u32;
            let mut out = Vec::with_capacity(want);
            let r = self.store_call(req, Some(&mut out), timeout)?;
            if r < 0 {
                bail!("store read: errno {}", -r);
            }
            value.extend_from_slice(&out);
            if (r as usize) < want || value.len() == max {
                return Ok(value);
            }
        }
    }

    pub fn store_list(&mut self, prefix: &[u8], cap: usize, timeout: Duration) -> Result<Vec<u8>> {
        let mut req = self.key_req(lwabi::LWHOST_STORE_LIST, prefix)?;
        req.len = cap as u32;
        let mut out = Vec::with_capacity(cap);
        let r = self.store_call(req, Some(&mut out), timeout)?;
        if r < 0 {
            bail!("store list: errno {}", -r);
        }
        Ok(out)
    }

    /// STAT or DELETE: the raw result.
    pub fn store_simple(&mut self, op: u32, key: &[u8], timeout: Duration) -> Result<i32> {
        let mut req = self.key_req(op, key)?;
        if op == lwabi::LWHOST_STORE_STAT {
            req.len = 8;
        }
        let mut out = Vec::with_capacity(8);
        self.store_call(req, Some(&mut out), timeout)
    }
}
