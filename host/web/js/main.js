// SPDX-License-Identifier: GPL-2.0-only
// The page's side of lwhost in the browser: attachLwnet() loads lwhost-web,
// starts the link worker (link-worker.js: the region service, the WebSocket
// to lwproxy and the IndexedDB store, all off the page's main thread), asks
// for persistent storage and shows the answer, and starts the interrupt
// worker (irq.js) once the runtime hands over the kernel. The main thread
// only starts things and shows them: no byte of a connection or the store
// passes through it.
//
//   const host = await attachLwnet({ proxyUrl: "wss://proxy.example/", token });
//   worker.postMessage({ lwnet: host.workerInit(), ... });   // then in the worker:
//   await installLwnet(host_callbacks, message.lwnet, kernelMemory);   (worker.js)

import * as abi from "./lwabi.js";
import { loadSharedModule } from "./shim.js";
import { newStatsBuffer, statsView } from "./link-stats.js";

export { errnoFromProxyError } from "./link.js";

/** How long close() waits for the link worker to detach before ending it anyway. */
const CLOSE_GRACE_MS = 2000;

/**
 * Attaches lwhost's main side: loads lwhost-web and starts the link worker,
 * which initialises the region, opens the store and connects to the proxy.
 * Resolves once the store is open (the socket connects in the background:
 * stats().socket); rejects with the worker's error if it could not start.
 * The returned handle's workerInit() is what each kernel worker passes to
 * installLwnet().
 *
 * @param opts.proxyUrl     ws:// or wss:// URL of lwproxy
 * @param opts.token        JWT for the proxy (optional)
 * @param opts.shimUrl      URL of lwhost_web.wasm (default: ../wasm/ beside this file)
 * @param opts.storeName    IndexedDB database name (default "lwnet-store")
 * @param opts.quotaBytes   store quota (ENOSPC past it)
 * @param opts.log          function(string) for diagnostics
 * @param opts.socketModule (tests, benchmarks) URL of a module exporting
 *                          createSocket(url, protocols) -> a WebSocket-like
 *                          object, imported by the link worker
 * @param opts.storageElement element that shows whether the store may be evicted
 *                          (default: the page's #lwnet-storage, if any)
 */
export async function attachLwnet(opts) {
  const log = opts.log || (() => {});
  const shimUrl = opts.shimUrl || new URL("../wasm/lwhost_web.wasm", import.meta.url);
  const { module, memory } = await loadSharedModule(shimUrl);
  const lockPrefix = "lwnet-thread-" + crypto.randomUUID();
  const statsBuffer = newStatsBuffer();
  const stats = statsView(statsBuffer);
  const link = new Worker(new URL("./link-worker.js", import.meta.url), { type: "module", name: "lwnet-link" });
  let closing = null;
  const ready = new Promise((resolve, reject) => {
    link.onmessage = ({ data }) => {
      if (data.log !== undefined) log(data.log);
      else if (data.ready) resolve(data.ready);
      else if (data.failed !== undefined) reject(new Error("lwnet link worker: " + data.failed));
      else if (data.closed && closing) closing.done();
    };
    link.onerror = (e) => {
      const text = "lwnet link worker failed: " + (e.message || "could not load link-worker.js");
      log(text);
      reject(new Error(text));
    };
  });
  link.postMessage({
    start: {
      module, memory, lockPrefix, stats: statsBuffer, proxyUrl: opts.proxyUrl, token: opts.token || null,
      storeName: opts.storeName, quotaBytes: opts.quotaBytes,
      socketModule: opts.socketModule ? String(opts.socketModule) : undefined,
    },
  });
  let started;
  try {
    started = await ready;
  } catch (e) {
    link.terminate();
    throw e;
  }
  const { layout, writer, schema } = started;
  const persisted = await requestPersistence();
  const shown = persistenceText(persisted, writer);
  log("lwnet: " + shown);
  const el = opts.storageElement || (globalThis.document && document.getElementById("lwnet-storage"));
  if (el) el.textContent = shown;
  let irq = null;
  return {
    /**
     * Structured-cloneable: post it to each worker, which passes it to
     * installLwnet(). `kernel` ({vmlinux: WebAssembly.Module, memory}, from
     * the runtime) starts the interrupt worker on the first call that has it.
     */
    workerInit: (kernel) => {
      if (kernel && !irq && !closing) irq = startIrqWorker(kernel, memory, layout, log);
      return { module, memory, layout, lockPrefix, glue: new URL("./worker.js", import.meta.url).href };
    },
    /**
     * The interrupt worker: null before the runtime handed over the kernel,
     * else {state: "starting" | "running" | "unavailable", raised: count,
     * lastRaiseAt: ms since the epoch (performance.timeOrigin based)}.
     */
    irqStats: () => (irq ? irq.stats() : null),
    /**
     * The link's counters (link-stats.js: pumps, frames and bytes each way,
     * reconnects, store requests, the largest rx window, whether this page
     * writes the store) and `socket`: "down" | "connecting" | "open". Read
     * from shared memory: no message.
     */
    stats: () => ({ ...stats }),
    /** The store's IndexedDB schema, as opened: {version, objectStores: [names]}. */
    storeSchema: schema,
    /** navigator.storage.persisted() after asking for persistence (null: no Storage API). */
    persisted,
    /** Thread slots held by workers (freed within ~2 s of a worker ending). */
    threadSlotsInUse: () => {
      const owners = new Int32Array(memory.buffer, layout.thread_owner, layout.thread_slots);
      return owners.reduce((n, _, i) => n + (Atomics.load(owners, i) !== 0 ? 1 : 0), 0);
    },
    /** Reconnects now (after a proxy restart, or to test it). */
    reconnect: () => { if (!closing) link.postMessage({ reconnect: true }); },
    /**
     * Detaches: main_alive = 0, every connection fails, the socket and the
     * store close, then the link worker ends (at most CLOSE_GRACE_MS later).
     * Returns a promise that resolves once it has ended.
     */
    close: () => {
      if (closing) return closing.promise;
      if (irq) irq.worker.terminate();
      let done;
      const promise = new Promise((resolve) => { done = resolve; });
      const timer = setTimeout(() => closing.done(), CLOSE_GRACE_MS);
      closing = { promise, done: () => { clearTimeout(timer); link.terminate(); done(); } };
      link.postMessage({ close: true });
      return promise;
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
