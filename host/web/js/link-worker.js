// SPDX-License-Identifier: GPL-2.0-only
// lwnet's link worker: the main side of lwhost in the browser, in a
// dedicated worker that attachLwnet (main.js) starts, so the page's main
// thread only starts things and shows them. It serves the shared region (in
// lwhost-web's SharedArrayBuffer) that the kernel's workers fill, owns the
// WebSocket to lwproxy (subprotocol lwproxy.v2: binary data frames,
// per-connection flow control, half-close; token as a bearer.<JWT>
// subprotocol) and the IndexedDB store, and moves bytes between the
// connections' rings and the socket. It never blocks: it sleeps in
// Atomics.waitAsync on host_doorbell and in the socket's events.
// MainSide's methods by concern: region.js (region words, thread slots),
// link.js (connections and the socket to lwproxy), store-jobs.js (store slots).
//
// Messages in (from main.js):
//   {start: {module, memory, lockPrefix, stats, proxyUrl, token, storeName,
//            quotaBytes, socketModule}}           once, first
//   {reconnect: true}                             drop the socket, connect again now
//   {close: true}                                 detach; answered by {closed: true}
// Messages out: {ready: {layout, writer, schema: {version, objectStores}}} or
// {failed: message} after start; {log: text} at any time.

import { E, atomicImports, readLayout } from "./shim.js";
import { RegionAccess, CONN, SLOT, WF_CLOSE } from "./region.js";
import { ProxyLink } from "./link.js";
import { StoreJobs } from "./store-jobs.js";
import { IdbStore } from "./store.js";
import { statsView } from "./link-stats.js";

/** The started main side (a promise of it, or of null if it failed to start). */
let started = null;

self.onmessage = ({ data }) => {
  if (data && data.start) {
    if (started) return;
    started = start(data.start).then((main) => {
      const { store } = main;
      postMessage({
        ready: {
          layout: main.L, writer: store.writer,
          schema: { version: store.db.version, objectStores: [...store.db.objectStoreNames] },
        },
      });
      return main;
    }, (e) => {
      postMessage({ failed: String((e && e.message) || e) });
      return null;
    });
  } else if (data && data.reconnect) {
    if (started) started.then((main) => main && main.reconnectNow());
  } else if (data && data.close) {
    (started || Promise.resolve(null)).then(async (main) => {
      // Store jobs already queued finish first (their slots are answered, not failed
      // by a closed database); the page ends this worker at most 2 s after asking.
      if (main) { main.close(); await main.storeChain; main.store.close(); }
      postMessage({ closed: true });
    });
  } else {
    postMessage({ log: "lwnet link worker: unknown message " + JSON.stringify(Object.keys(data || {})) });
  }
};

/**
 * Instantiates lwhost-web over the page's shared memory, initialises the
 * region, opens the store and connects. `socketModule` (tests, benchmarks):
 * URL of a module exporting createSocket(url, protocols) -> a WebSocket-like
 * object, used instead of WebSocket.
 */
async function start({ module, memory, lockPrefix, stats, proxyUrl, token, storeName, quotaBytes, socketModule }) {
  const instance = await WebAssembly.instantiate(module, { env: { memory }, lwhost: atomicImports(memory) });
  const layout = readLayout(instance.exports, memory);
  const shared = statsView(stats);
  const onWriter = (writer) => { shared.storeWriter = writer ? 1 : 0; };
  const store = await IdbStore.open(storeName || "lwnet-store", { quotaBytes, onWriter });
  const socketFactory = socketModule ? (await import(socketModule)).createSocket : undefined;
  const log = (text) => postMessage({ log: text });
  instance.exports.lw_region_init();
  const side = new MainSide({ proxyUrl, token, memory, layout, store, lockPrefix, exports: instance.exports, log, socketFactory, stats: shared });
  side.start();
  return side;
}

class MainSide {
  constructor({ proxyUrl, token, memory, layout, store, lockPrefix, exports, log, socketFactory, stats }) {
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
    this.log = log;
    this.conns = new Array(layout.conns).fill(null);
    this.byId = new Map();
    this.storeBusy = new Array(layout.store_slots).fill(false);
    this.storeChain = Promise.resolve();
    this.ws = null;
    /** Counters and socket state, read by the page (statsView of link-stats.js). */
    this.stats = stats;
    this.socketState = "down"; // down | connecting | open
    this.binary = true;
    this.backoffMs = 0;
    this.reconnectTimer = null;
    this.closed = false;
    this.pumpQueued = false;
  }

  get socketState() { return this.stats.socket; }
  set socketState(state) { this.stats.socket = state; }

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
