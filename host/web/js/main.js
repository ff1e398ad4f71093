// SPDX-License-Identifier: GPL-2.0-only
// Main side of lwhost in the browser: serves the shared region (in
// lwhost-web's SharedArrayBuffer) that the kernel's workers fill. It owns
// the WebSocket to lwproxy (subprotocol lwproxy.v2: binary data frames,
// per-connection flow control, half-close; token as a bearer.<JWT>
// subprotocol) and the IndexedDB store, and moves bytes between the
// connections' rings and the socket. It never blocks: it sleeps in
// Atomics.waitAsync on host_doorbell and in the socket's events.
// MainSide's methods by concern: region.js (region words, thread slots),
// link.js (connections and the socket to lwproxy), store-jobs.js (store slots).
//
//   const host = await attachLwnet({ proxyUrl: "wss://proxy.example/", token });
//   worker.postMessage({ lwnet: host.workerInit(), ... });   // then in the worker:
//   await installLwnet(host_callbacks, message.lwnet, kernelMemory);   (worker.js)

import * as abi from "./lwabi.js";
import { E, atomicImports, loadSharedModule, readLayout } from "./shim.js";
import { RegionAccess, CONN, SLOT, WF_CLOSE } from "./region.js";
import { ProxyLink } from "./link.js";
import { StoreJobs } from "./store-jobs.js";
import { IdbStore } from "./store.js";

export { errnoFromProxyError } from "./link.js";

/**
 * Attaches the main side: loads lwhost-web, initialises the region, opens
 * the store, connects to the proxy. Returns a handle whose workerInit() is
 * what each kernel worker passes to installLwnet().
 *
 * @param opts.proxyUrl     ws:// or wss:// URL of lwproxy
 * @param opts.token        JWT for the proxy (optional)
 * @param opts.shimUrl      URL of lwhost_web.wasm (default: ../wasm/ beside this file)
 * @param opts.storeName    IndexedDB database name (default "lwnet-store")
 * @param opts.quotaBytes   store quota (ENOSPC past it)
 * @param opts.log          function(string) for diagnostics
 * @param opts.socketFactory (tests, benchmarks) (url, protocols) -> a WebSocket-like object
 * @param opts.storageElement element that shows whether the store may be evicted
 *                          (default: the page's #lwnet-storage, if any)
 */
export async function attachLwnet(opts) {
  const shimUrl = opts.shimUrl || new URL("../wasm/lwhost_web.wasm", import.meta.url);
  const { module, memory } = await loadSharedModule(shimUrl);
  const instance = await WebAssembly.instantiate(module, { env: { memory }, lwhost: atomicImports(memory) });
  const layout = readLayout(instance.exports, memory);
  const store = await IdbStore.open(opts.storeName || "lwnet-store", { quotaBytes: opts.quotaBytes });
  const persisted = await requestPersistence();
  const shown = persistenceText(persisted, store.writer);
  (opts.log || (() => {}))("lwnet: " + shown);
  const el = opts.storageElement || (globalThis.document && document.getElementById("lwnet-storage"));
  if (el) el.textContent = shown;
  instance.exports.lw_region_init();
  const lockPrefix = "lwnet-thread-" + crypto.randomUUID();
  const main = new MainSide({ ...opts, memory, layout, store, lockPrefix, exports: instance.exports });
  main.start();
  let irq = null;
  return {
    /**
     * Structured-cloneable: post it to each worker, which passes it to
     * installLwnet(). `kernel` ({vmlinux: WebAssembly.Module, memory}, from
     * the runtime) starts the interrupt worker on the first call that has it.
     */
    workerInit: (kernel) => {
      if (kernel && !irq && !main.closed) irq = startIrqWorker(kernel, memory, layout, main.log);
      return { module, memory, layout, lockPrefix, glue: new URL("./worker.js", import.meta.url).href };
    },
    /**
     * The interrupt worker: null before the runtime handed over the kernel,
     * else {state: "starting" | "running" | "unavailable", raised: count,
     * lastRaiseAt: ms since the epoch (performance.timeOrigin based)}.
     */
    irqStats: () => (irq ? irq.stats() : null),
    stats: () => ({ ...main.stats, socket: main.socketState }),
    store,
    /** navigator.storage.persisted() after asking for persistence (null: no Storage API). */
    persisted,
    /** Thread slots held by workers (freed within ~2 s of a worker ending). */
    threadSlotsInUse: () => {
      const owners = new Int32Array(memory.buffer, layout.thread_owner, layout.thread_slots);
      return owners.reduce((n, _, i) => n + (Atomics.load(owners, i) !== 0 ? 1 : 0), 0);
    },
    /** Reconnects now (after a proxy restart, or to test it). */
    reconnect: () => main.reconnectNow(),
    /** Detaches: main_alive = 0, every connection fails, the socket closes. */
    close: () => {
      if (irq) irq.worker.terminate();
      main.close();
    },
  };
}

/**
 * Where the interrupt worker raises lwnet's interrupt: upstream's kernel
 * handles device interrupts on CPU 1 (IRQ_CPU, arch/wasm/include/asm/
 * processor.h), and lwnet's driver requests line LWHOST_WASM_IRQ.
 */
const IRQ_CPU = abi.LWHOST_WASM_IRQ_CPU;
const { LWHOST_WASM_IRQ } = abi;

/**
 * Starts irq.js: a worker that holds a vmlinux instance and calls its
 * raise_interrupt(IRQ_CPU, LWHOST_WASM_IRQ) whenever the guest doorbell
 * moves. Returns {worker, stats()}.
 */
function startIrqWorker({ vmlinux, memory: kernelMemory }, shimMemory, layout, log) {
  const shared = new SharedArrayBuffer(16);
  const counts = new Int32Array(shared, 0, 2);
  const lastAt = new Float64Array(shared, 8, 1);
  const worker = new Worker(new URL("./irq.js", import.meta.url), { type: "module", name: "lwnet-irq" });
  worker.onmessage = (e) => log(`lwnet interrupt worker: ${e.data}`);
  worker.onerror = (e) => {
    Atomics.store(counts, 1, 2);
    log(`lwnet interrupt worker failed: ${e.message}`);
  };
  worker.postMessage({
    vmlinux, kernelMemory, shimMemory, bell: (layout.region + layout.guest_doorbell) >> 2,
    cpu: IRQ_CPU, irq: LWHOST_WASM_IRQ, shared,
  });
  const states = ["starting", "running", "unavailable"];
  return {
    worker,
    stats: () => ({ state: states[Atomics.load(counts, 1)], raised: Atomics.load(counts, 0), lastRaiseAt: lastAt[0] }),
  };
}

/**
 * Asks the browser to keep this origin's storage (navigator.storage.persist())
 * unless it already does, and returns navigator.storage.persisted(): true
 * when the browser will not evict the store under storage pressure, false
 * when it may, null when the Storage API is missing.
 */
export async function requestPersistence() {
  const s = globalThis.navigator && navigator.storage;
  if (!s || !s.persisted) return null;
  try {
    if (!(await s.persisted()) && s.persist) await s.persist();
    return await s.persisted();
  } catch {
    return false;
  }
}

/** What a page shows of the store's state, for the user. */
export function persistenceText(persisted, writer = true) {
  const keep = persisted === true
    ? "saved files are kept: storage is persistent"
    : persisted === false
      ? "saved files may be evicted by the browser when space runs low (storage is not persistent)"
      : "this browser cannot say whether saved files are kept (no Storage API)";
  return writer ? keep : keep + "; another tab is using the store, saves wait until it closes";
}

class MainSide {
  constructor({ proxyUrl, token, memory, layout, store, lockPrefix, exports, log, socketFactory }) {
    this.proxyUrl = proxyUrl;
    this.socketFactory = socketFactory || ((url, protocols) => new WebSocket(url, protocols));
    this.token = token || null;
    this.L = layout;
    this.memory = memory;
    this.u8 = new Uint8Array(memory.buffer);
    this.i32 = new Int32Array(memory.buffer);
    this.store = store;
    this.lockPrefix = lockPrefix;
    this.exports = exports;
    this.log = log || (() => {});
    this.conns = new Array(layout.conns).fill(null);
    this.byId = new Map();
    this.storeBusy = new Array(layout.store_slots).fill(false);
    this.storeChain = Promise.resolve();
    this.ws = null;
    this.socketState = "down"; // down | connecting | open
    this.binary = true;
    this.backoffMs = 0;
    this.reconnectTimer = null;
    this.closed = false;
    this.pumpQueued = false;
    // rxWindowMax: the largest proxy-to-client window a connection advertised (WindowTuner).
    this.stats = { pumps: 0, framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, reconnects: 0, storeOps: 0, rxWindowMax: 0 };
  }

  start() {
    Atomics.store(this.i32, (this.L.region + this.L.host_waiting) >> 2, 1);
    this.waitLoop();
    this.sweepTimer = setInterval(() => this.sweepThreads(), 2000);
    this.connect();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    clearTimeout(this.reconnectTimer);
    this.exports.lw_region_detach();
    if (this.ws) this.ws.close();
    for (let slot = 0; slot < this.conns.length; slot++) this.fail(slot, E.ECONNRESET);
    this.ringGuest();
  }

  /** Sleeps on host_doorbell; each bump (a worker published work) runs a pump. */
  async waitLoop() {
    const bell = (this.L.region + this.L.host_doorbell) >> 2;
    let seen = Atomics.load(this.i32, bell);
    while (!this.closed) {
      this.pump();
      const r = Atomics.waitAsync(this.i32, bell, seen);
      if (r.async) await r.value;
      seen = Atomics.load(this.i32, bell);
    }
  }

  schedulePump() {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    queueMicrotask(() => { this.pumpQueued = false; this.pump(); });
  }

  /** One pass over every slot: new opens, data both ways, teardowns, store requests. */
  pump() {
    if (this.closed) return;
    this.stats.pumps++;
    const L = this.L;
    let news = false;
    for (let slot = 0; slot < this.conns.length; slot++) {
      const state = this.get(slot, L.conn_state);
      if (state === CONN.FREE || state === CONN.CLAIMED) continue;
      if (state === CONN.REQUESTED) { news = this.startOpen(slot) || news; continue; }
      let c = this.conns[slot];
      const wf = this.get(slot, L.conn_worker_flags);
      if (wf & WF_CLOSE) { this.release(slot); news = true; continue; }
      if (!c) {
        // A connection this main side never opened (left from an earlier
        // one, or garbage): it cannot carry data.
        if (state !== CONN.FAILED) { this.set(slot, L.conn_error, E.ECONNRESET); this.set(slot, L.conn_state, CONN.FAILED); news = true; }
        continue;
      }
      if (state === CONN.OPEN) {
        news = this.pumpTx(slot, c, wf) || news;
        news = this.pumpRx(slot, c) || news;
      }
    }
    for (let s = 0; s < L.store_slots; s++) {
      if (!this.storeBusy[s] && (Atomics.load(this.i32, this.slotWord(s, L.store_state)) >>> 0) === SLOT.SUBMITTED) {
        this.runStore(s);
      }
    }
    if (news) this.ringGuest();
  }
}

/** Copies the methods of each class in `parts` onto `target`'s prototype. */
function mixin(target, ...parts) {
  for (const part of parts) {
    for (const name of Object.getOwnPropertyNames(part.prototype)) {
      if (name !== "constructor") Object.defineProperty(target.prototype, name, Object.getOwnPropertyDescriptor(part.prototype, name));
    }
  }
}
mixin(MainSide, RegionAccess, ProxyLink, StoreJobs);
