// SPDX-License-Identifier: GPL-2.0-only
// Main side of lwhost in the browser: serves the shared region (in
// lwhost-web's SharedArrayBuffer) that the kernel's workers fill. It owns
// the WebSocket to lwproxy (subprotocol lwproxy.v2: binary data frames,
// per-connection flow control, half-close; token as a bearer.<JWT>
// subprotocol) and the IndexedDB store, and moves bytes between the
// connections' rings and the socket. It never blocks: it sleeps in
// Atomics.waitAsync on host_doorbell and in the socket's events.
//
//   const host = await attachLwnet({ proxyUrl: "wss://proxy.example/", token });
//   worker.postMessage({ lwnet: host.workerInit(), ... });   // then in the worker:
//   await installLwnet(host_callbacks, message.lwnet, kernelMemory);   (worker.js)

import * as abi from "./lwabi.js";
import { E, atomicImports, loadSharedModule, readLayout } from "./shim.js";
import { IdbStore } from "./store.js";

// Region protocol constants: include/uapi/linux/lwhost.h, through lwabi.js.
const CONN = {
  FREE: abi.LWHOST_CONN_FREE, CLAIMED: abi.LWHOST_CONN_CLAIMED, REQUESTED: abi.LWHOST_CONN_REQUESTED,
  CONNECTING: abi.LWHOST_CONN_CONNECTING, OPEN: abi.LWHOST_CONN_OPEN, FAILED: abi.LWHOST_CONN_FAILED,
};
const { LWHOST_WF_SHUT_WR: WF_SHUT_WR, LWHOST_WF_CLOSE: WF_CLOSE, LWHOST_MF_PEER_EOF: MF_PEER_EOF } = abi;
const { LWHOST_OPEN_TLS: OPEN_TLS, LWHOST_STORE_WRITE: STORE_WRITE } = abi;
const SLOT = { SUBMITTED: abi.LWHOST_SLOT_SUBMITTED, DONE: abi.LWHOST_SLOT_DONE };
/** Un-acked bytes a sender may have in flight per connection (docs/protocol.md). */
const WINDOW = 262144;
/** Largest binary frame we send. */
const FRAME_MAX = 65536;
/**
 * Ack bytes as soon as they entered the ring: when the queue has drained
 * into it, or every ACK_BATCH bytes while it drains. Throughput through the
 * proxy is at most WINDOW per round trip (page -> network service -> proxy
 * -> back), so credit goes back at once rather than in bigger batches.
 */
const ACK_BATCH = 65536;
/** Stop feeding the socket while this much is buffered in it. */
const SOCKET_HIGH_WATER = 4 << 20;
const DEFAULT_CONNECT_TIMEOUT_MS = 30000;

/**
 * errno for a connection the proxy failed, from the `error` message's
 * `code` (docs/protocol.md; the codes are lwproxy::protocol::ErrorCode).
 * EIO for other codes and for proxies that send none.
 */
const ERRNO_OF_CODE = {
  policy: E.EACCES,
  refused: E.ECONNREFUSED,
  tls: E.ECONNREFUSED,
  timeout: E.ETIMEDOUT,
  unreachable: E.EHOSTUNREACH,
  reset: E.ECONNRESET,
};
export function errnoFromProxyError(msg) {
  const code = msg.code;
  return typeof code === "string" && Object.hasOwn(ERRNO_OF_CODE, code) ? ERRNO_OF_CODE[code] : E.EIO;
}

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
    this.stats = { pumps: 0, framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, reconnects: 0, storeOps: 0 };
  }

  // --- region access -------------------------------------------------------
  connWord(slot, off) { return (this.L.region + this.L.conn_base + slot * this.L.conn_stride + off) >> 2; }
  connByte(slot, off) { return this.L.region + this.L.conn_base + slot * this.L.conn_stride + off; }
  get(slot, off) { return Atomics.load(this.i32, this.connWord(slot, off)) >>> 0; }
  set(slot, off, v) { Atomics.store(this.i32, this.connWord(slot, off), v); }
  slotWord(s, off) { return (this.L.region + this.L.store_base + s * this.L.store_stride + off) >> 2; }

  ringGuest() {
    const bell = (this.L.region + this.L.guest_doorbell) >> 2;
    Atomics.add(this.i32, bell, 1);
    Atomics.notify(this.i32, bell);
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

  // --- connections -----------------------------------------------------------
  startOpen(slot) {
    const L = this.L;
    const gen = this.get(slot, L.conn_generation);
    const id = ((gen & abi.LWHOST_ID_GEN_MASK) << abi.LWHOST_ID_SLOT_BITS) | slot; // LWHOST_ID(slot, gen)
    const hostLen = this.get(slot, L.conn_host_len);
    const port = this.get(slot, L.conn_port);
    const flags = this.get(slot, L.conn_open_flags);
    const timeoutMs = this.get(slot, L.conn_timeout_ms);
    if (hostLen === 0 || hostLen >= abi.LWHOST_HOST_MAX || port === 0 || port > 65535) {
      this.set(slot, L.conn_error, E.EINVAL);
      this.set(slot, L.conn_state, CONN.FAILED);
      return true;
    }
    const at = this.connByte(slot, L.conn_host);
    const host = new TextDecoder().decode(this.u8.slice(at, at + hostLen));
    const c = {
      id, host, port, tls: (flags & OPEN_TLS) !== 0, timeoutMs, openSent: false, txUnacked: 0,
      rxQueue: [], rxUnacked: 0, eofPending: false, eofSet: false, shutSent: false, closedByPeer: false,
      timer: setTimeout(() => this.connectTimedOut(slot, id), (timeoutMs || DEFAULT_CONNECT_TIMEOUT_MS) + 2000),
    };
    this.conns[slot] = c;
    this.byId.set(id, slot);
    this.set(slot, L.conn_state, CONN.CONNECTING);
    if (this.socketState === "open") this.sendOpen(c);
    else this.connect();
    return true;
  }

  sendOpen(c) {
    const msg = { t: "open", id: c.id, host: c.host, port: c.port };
    if (c.tls) msg.tls = true;
    if (c.timeoutMs) msg.timeout_ms = c.timeoutMs;
    this.ws.send(JSON.stringify(msg));
    c.openSent = true;
  }

  connectTimedOut(slot, id) {
    const c = this.conns[slot];
    if (!c || c.id !== id || this.get(slot, this.L.conn_state) !== CONN.CONNECTING) return;
    this.sendControl({ t: "close", id });
    this.fail(slot, E.ETIMEDOUT);
    this.ringGuest();
  }

  /** Moves a live connection to FAILED with `errno` (a no-op once FAILED or FREE). */
  fail(slot, errno) {
    const state = this.get(slot, this.L.conn_state);
    if (state !== CONN.CONNECTING && state !== CONN.OPEN) return;
    this.set(slot, this.L.conn_error, errno);
    this.set(slot, this.L.conn_state, CONN.FAILED);
    const c = this.conns[slot];
    if (c) { clearTimeout(c.timer); c.rxQueue = []; }
  }

  /** WF_CLOSE: tell the proxy, reset the slot and hand it back (FREE). */
  release(slot) {
    const L = this.L, c = this.conns[slot];
    if (c) {
      clearTimeout(c.timer);
      if (c.openSent && !c.closedByPeer && this.get(slot, L.conn_state) !== CONN.FAILED) this.sendControl({ t: "close", id: c.id });
      this.byId.delete(c.id);
      this.conns[slot] = null;
    }
    for (const off of [L.conn_tx_head, L.conn_tx_tail, L.conn_rx_head, L.conn_rx_tail, L.conn_main_flags, L.conn_worker_flags, L.conn_error]) {
      this.set(slot, off, 0);
    }
    this.set(slot, L.conn_state, CONN.FREE);
  }

  /** tx ring -> socket, within the window the proxy has acked. */
  pumpTx(slot, c, wf) {
    const L = this.L, size = L.ring_size;
    const head = this.get(slot, L.conn_tx_head);
    let tail = this.get(slot, L.conn_tx_tail);
    const avail = (head - tail) >>> 0;
    if (avail > size) { this.fail(slot, E.EIO); return true; } // the worker side wrote garbage
    let moved = false;
    if (avail > 0 && this.socketState === "open") {
      if (this.ws.bufferedAmount > SOCKET_HIGH_WATER) {
        setTimeout(() => this.schedulePump(), 5);
      } else {
        let n = this.binary ? Math.min(avail, WINDOW - c.txUnacked) : avail;
        const data = this.connByte(slot, L.conn_tx_data);
        while (n > 0) {
          const len = Math.min(n, FRAME_MAX);
          const frame = new Uint8Array(4 + len);
          const at = tail % size, first = Math.min(len, size - at);
          frame.set(this.u8.subarray(data + at, data + at + first), 4);
          if (first < len) frame.set(this.u8.subarray(data, data + len - first), 4 + first);
          if (this.binary) {
            new DataView(frame.buffer).setUint32(0, c.id);
            this.ws.send(frame);
          } else {
            this.ws.send(JSON.stringify({ t: "write", id: c.id, b64: toBase64(frame.subarray(4)) }));
          }
          tail = (tail + len) >>> 0;
          c.txUnacked += len;
          n -= len;
          this.stats.framesOut++;
          this.stats.bytesOut += len;
          moved = true;
        }
        if (moved) this.set(slot, L.conn_tx_tail, tail);
      }
    }
    if (wf & WF_SHUT_WR && !c.shutSent && head === tail && this.socketState === "open") {
      this.sendControl({ t: "shutdown", id: c.id });
      c.shutSent = true;
    }
    return moved;
  }

  /** Queued proxy data -> rx ring, acking what entered it. */
  pumpRx(slot, c) {
    const L = this.L, size = L.ring_size;
    let head = this.get(slot, L.conn_rx_head);
    const tail = this.get(slot, L.conn_rx_tail);
    const data = this.connByte(slot, L.conn_rx_data);
    let moved = false;
    while (c.rxQueue.length > 0) {
      const used = (head - tail) >>> 0;
      if (used > size) { this.fail(slot, E.EIO); return true; }
      const free = size - used;
      if (free === 0) break;
      const chunk = c.rxQueue[0];
      const n = Math.min(chunk.length, free);
      const at = head % size, first = Math.min(n, size - at);
      this.u8.set(chunk.subarray(0, first), data + at);
      if (first < n) this.u8.set(chunk.subarray(first, n), data);
      head = (head + n) >>> 0;
      this.set(slot, L.conn_rx_head, head);
      c.rxUnacked += n;
      if (n === chunk.length) c.rxQueue.shift();
      else c.rxQueue[0] = chunk.subarray(n);
      moved = true;
    }
    if (c.rxUnacked > 0 && this.binary && (c.rxUnacked >= ACK_BATCH || c.rxQueue.length === 0)) {
      this.sendControl({ t: "ack", id: c.id, bytes: c.rxUnacked });
      c.rxUnacked = 0;
    }
    if (c.rxQueue.length === 0 && c.eofPending && !c.eofSet) {
      Atomics.or(this.i32, this.connWord(slot, L.conn_main_flags), MF_PEER_EOF);
      c.eofSet = true;
      moved = true;
    }
    return moved;
  }

  // --- the socket ------------------------------------------------------------
  sendControl(msg) {
    if (this.socketState === "open") this.ws.send(JSON.stringify(msg));
  }

  reconnectNow() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.backoffMs = 0;
    if (this.ws) this.ws.close();
    else this.connect();
  }

  connect() {
    if (this.closed || this.socketState !== "down" || this.reconnectTimer) return;
    const protocols = ["lwproxy.v2"];
    if (this.token) protocols.push("bearer." + this.token);
    let ws;
    try {
      ws = this.socketFactory(this.proxyUrl, protocols);
    } catch (e) {
      this.log("lwnet: bad proxy URL: " + e.message);
      this.socketDown(null);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.socketState = "connecting";
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.socketState = "open";
      this.binary = ws.protocol === "lwproxy.v2"; // else a seed-000 (v1) proxy: JSON + base64
      this.backoffMs = 0;
      this.log("lwnet: connected to proxy (" + (ws.protocol || "v1") + ")");
      for (const c of this.conns) if (c && !c.openSent) this.sendOpen(c);
      this.schedulePump();
    };
    ws.onmessage = (ev) => { if (ws === this.ws) this.onMessage(ev.data); };
    ws.onclose = () => { if (ws === this.ws) this.socketDown(ws); };
    ws.onerror = () => {}; // onclose follows with everything we can learn
  }

  /** The proxy went away: every connection fails, and we reconnect with backoff. */
  socketDown(ws) {
    const wasOpen = this.socketState === "open";
    this.ws = null;
    this.socketState = "down";
    let news = false;
    for (let slot = 0; slot < this.conns.length; slot++) {
      const c = this.conns[slot];
      if (!c) continue;
      // Never reached the proxy: refused; lost mid-way: reset.
      this.fail(slot, c.openSent && wasOpen ? E.ECONNRESET : E.ECONNREFUSED);
      news = true;
    }
    if (news) this.ringGuest();
    if (this.closed) return;
    this.stats.reconnects++;
    this.backoffMs = Math.min(5000, Math.max(100, this.backoffMs * 2));
    this.log(`lwnet: proxy connection ${ws ? "closed" : "failed"}; retrying in ${this.backoffMs} ms`);
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this.connect(); }, this.backoffMs);
  }

  onMessage(data) {
    if (typeof data !== "string") {
      if (data.byteLength < 4) return;
      const id = new DataView(data).getUint32(0);
      this.stats.framesIn++;
      this.stats.bytesIn += data.byteLength - 4;
      this.deliver(id, new Uint8Array(data, 4));
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { this.log("lwnet: unparsable proxy message"); return; }
    const slot = this.byId.get(msg.id);
    const c = slot === undefined ? null : this.conns[slot];
    if (!c) return; // about a connection already released
    switch (msg.t) {
      case "opened":
        if (this.get(slot, this.L.conn_state) === CONN.CONNECTING) {
          clearTimeout(c.timer);
          this.set(slot, this.L.conn_state, CONN.OPEN);
          this.ringGuest();
        }
        break;
      case "data":
        this.deliver(msg.id, fromBase64(msg.b64 || ""));
        break;
      case "eof":
      case "closed":
        c.eofPending = true;
        if (msg.t === "closed") c.closedByPeer = true;
        if (this.pumpRx(slot, c)) this.ringGuest();
        break;
      case "error":
        this.log(`lwnet: connection to ${c.host}:${c.port}: ${msg.msg}`);
        c.closedByPeer = true;
        this.fail(slot, errnoFromProxyError(msg));
        this.ringGuest();
        break;
      case "ack":
        c.txUnacked = Math.max(0, c.txUnacked - (Number(msg.bytes) || 0));
        this.schedulePump();
        break;
      default:
        this.log("lwnet: unknown proxy message " + msg.t);
    }
  }

  deliver(id, bytes) {
    const slot = this.byId.get(id);
    const c = slot === undefined ? null : this.conns[slot];
    if (!c || this.get(slot, this.L.conn_state) !== CONN.OPEN) return;
    c.rxQueue.push(bytes);
    if (this.pumpRx(slot, c)) this.ringGuest();
  }

  // --- store -----------------------------------------------------------------
  runStore(s) {
    const L = this.L;
    const w = (off) => Atomics.load(this.i32, this.slotWord(s, off)) >>> 0;
    const base = L.region + L.store_base + s * L.store_stride;
    this.storeBusy[s] = true;
    const op = w(L.store_op), flags = w(L.store_flags), keyLen = w(L.store_key_len);
    const afterLen = w(L.store_after_len), len = w(L.store_len);
    const offset = w(L.store_offset) + w(L.store_offset + 4) * 2 ** 32;
    const finish = (result, data) => {
      if (data && result > 0) this.u8.set(data.subarray(0, Math.min(result, len, L.store_buf)), base + L.store_data);
      Atomics.store(this.i32, this.slotWord(s, L.store_result), result);
      Atomics.store(this.i32, this.slotWord(s, L.store_state), SLOT.DONE);
      this.storeBusy[s] = false;
      this.stats.storeOps++;
      this.ringGuest();
    };
    // The worker side validated these, but the region is shared: check again.
    if (keyLen > L.key_max || afterLen > L.key_max || len > L.store_buf) { finish(-E.EINVAL); return; }
    const key = this.u8.slice(base + L.store_key, base + L.store_key + keyLen);
    const after = this.u8.slice(base + L.store_key + keyLen, base + L.store_key + keyLen + afterLen);
    const data = op === STORE_WRITE ? this.u8.slice(base + L.store_data, base + L.store_data + len) : new Uint8Array(0);
    const request = { op, flags, key, after, offset, data, capacity: op === STORE_WRITE ? 0 : len };
    this.storeChain = this.storeChain
      .then(() => this.store.run(request))
      .then(({ result, data: out }) => finish(result, out))
      .catch((e) => { this.log("lwnet: store: " + e); finish(-E.EIO); });
  }

  // --- thread slots ------------------------------------------------------------
  /** Frees the thread slots of workers that are gone (their lock was released). */
  async sweepThreads() {
    if (!navigator.locks) return;
    const L = this.L;
    const owners = new Int32Array(this.memory.buffer, L.thread_owner, L.thread_slots);
    // Owners first, then the locks: a worker takes its lock before it can
    // claim a slot, so a token seen here whose lock is not held afterwards
    // belongs to a worker that has ended.
    const claimed = [];
    for (let i = 0; i < L.thread_slots; i++) {
      const token = Atomics.load(owners, i);
      if (token !== 0) claimed.push([i, token]);
    }
    if (claimed.length === 0) return;
    const held = new Set((await navigator.locks.query()).held.map((l) => l.name));
    for (const [i, token] of claimed) {
      if (!held.has(`${this.lockPrefix}-${token}`)) Atomics.compareExchange(owners, i, token, 0);
    }
  }
}

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(s);
}

function fromBase64(b64) {
  const s = atob(b64);
  return Uint8Array.from(s, (ch) => ch.charCodeAt(0));
}
