// SPDX-License-Identifier: GPL-2.0-only
// The browser's lwstore backend: a key/value blob store in IndexedDB with
// the semantics of include/uapi/linux/lwstore.h. Values are written in
// chunks into a pending copy that replaces the committed value atomically
// on COMMIT (one IndexedDB transaction), so a save interrupted at any point
// leaves the previous snapshot intact, across reloads.
//
// Schema (versioned through IndexedDB's own version, upgraded in order):
//   v1  values:  key -> {gen, size}        committed values
//       pending: key -> {gen, size}        a value being written
//       chunks:  [key, gen, offset] -> Uint8Array
//       meta:    "gen" -> last generation, "usage" -> bytes held
//
// Durability: a transaction that commits a value or deletes one is opened
// with durability "strict" (the browser flushes it to disk before
// reporting completion), so a snapshot reported saved survives a crash or
// power loss; chunks of a pending value use the default.
//
// One writer per database across the tabs of an origin: the tab holding
// the Web Lock "lwnet-store:NAME" writes; the others read, and their writes
// and deletes answer EBUSY until the holder's tab closes (the browser then
// grants the lock to the next waiting tab). So two guests never delete each
// other's chunks (natively, host/src/store.rs does the same with flock).

import {
  LWHOST_KEY_MAX as KEY_MAX, LWHOST_STORE_BUF as CHUNK_MAX, LWHOST_STORE_TRUNC as WRITE_TRUNC,
  LWHOST_STORE_COMMIT as WRITE_COMMIT, LWHOST_STORE_LAZY as WRITE_LAZY,
  LWHOST_STORE_FLAGS_ALL as WRITE_FLAGS_ALL, LWHOST_STORE_WRITE, LWHOST_STORE_READ, LWHOST_STORE_STAT,
  LWHOST_STORE_DELETE, LWHOST_STORE_LIST,
} from "./lwabi.js";
import { E } from "./shim.js";

// IndexedDB durability of a write (lwhost.h): a plain commit is "strict",
// which the IndexedDB spec defines as flushing all outstanding changes, so
// it also makes earlier "relaxed" (lazy) commits durable, as the contract asks.
function durability(flags) {
  if (!(flags & WRITE_COMMIT)) return "default";
  return flags & WRITE_LAZY ? "relaxed" : "strict";
}

export const SCHEMA_VERSION = 1;

/** Keys are byte strings: one char per byte keeps IndexedDB's sort = byte order. */
const keyString = (bytes) => {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return s;
};
const keyBytes = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/**
 * lwstore's key rules, as the native store (host/src/store.rs) applies them:
 * 1..512 bytes, no NUL, relative, no empty, "." or ".." component.
 */
function keyErrno(bytes) {
  if (bytes.length === 0) return E.EINVAL;
  if (bytes.length > KEY_MAX) return E.ENAMETOOLONG;
  if (bytes.includes(0) || bytes[0] === 0x2f) return E.EINVAL;
  const parts = keyString(bytes).split("/");
  return parts.some((c) => c === "" || c === "." || c === "..") ? E.EINVAL : 0;
}

/** A list prefix or cursor: at most 512 bytes, no NUL, may be empty. */
function prefixErrno(bytes) {
  if (bytes.length > KEY_MAX) return E.ENAMETOOLONG;
  return bytes.includes(0) ? E.EINVAL : 0;
}

const request = (r) => new Promise((resolve, reject) => {
  r.onsuccess = () => resolve(r.result);
  r.onerror = () => reject(r.error);
});
const done = (tx) => new Promise((resolve, reject) => {
  tx.oncomplete = () => resolve();
  tx.onerror = () => reject(tx.error);
  tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
});

/** Thrown inside a transaction to abort it and answer -errno. */
class StoreError extends Error {
  constructor(errno) { super("errno " + errno); this.errno = errno; }
}

export class IdbStore {
  /**
   * Opens (creating or upgrading) the database `name`. `onWriter(bool)` is
   * called each time this store becomes the writer (it got the Web Lock) or
   * stops being it (close()).
   */
  static async open(name, { quotaBytes = 256 * 1024 * 1024, onWriter = () => {} } = {}) {
    const open = indexedDB.open(name, SCHEMA_VERSION);
    open.onupgradeneeded = (ev) => {
      const db = open.result;
      // Each step upgrades from the version before it; a database of any
      // older version walks through all later steps.
      if (ev.oldVersion < 1) {
        db.createObjectStore("values");
        db.createObjectStore("pending");
        db.createObjectStore("chunks");
        db.createObjectStore("meta");
      }
    };
    const db = await request(open);
    db.onversionchange = () => db.close(); // let a newer page upgrade
    const store = new IdbStore(db, quotaBytes, onWriter);
    await store.takeWriterLock("lwnet-store:" + name);
    return store;
  }

  constructor(db, quotaBytes, onWriter = () => {}) {
    this.db = db;
    this.quotaBytes = quotaBytes;
    /** True while this tab holds the writer's Web Lock. */
    this.writer = false;
    /** The durability of the last transaction that committed (strict or, LAZY, relaxed) or deleted a value. */
    this.lastCommitDurability = null;
    this.releaseLock = () => {};
    this.onWriter = onWriter;
    /** Set by close(): a lock granted afterwards is released, not taken. */
    this.closed = false;
    /** Aborts this store's queued request for the writer's lock. */
    this.lockWait = new AbortController();
  }

  /**
   * Asks for the writer's lock without waiting; if another tab holds it,
   * keeps a request queued so this tab becomes the writer when that one
   * closes. Without Web Locks (old browsers) this tab writes unguarded.
   */
  async takeWriterLock(lockName) {
    if (!globalThis.navigator || !navigator.locks) { this.writer = true; this.onWriter(true); return; }
    const held = new Promise((resolve) => { this.releaseLock = resolve; });
    const hold = (lock) => {
      if (!lock || this.closed) return null; // closed while queued: let the lock go at once
      this.writer = true;
      this.onWriter(true);
      return held; // the lock is kept until close()
    };
    const first = new Promise((resolve) => {
      navigator.locks.request(lockName, { ifAvailable: true }, (lock) => { resolve(!!lock); return hold(lock); });
    });
    // Queued until the holder closes; close() withdraws it (AbortError, ignored).
    if (!(await first)) navigator.locks.request(lockName, { signal: this.lockWait.signal }, hold).catch(() => {});
  }

  /** Closes the database and gives up the writer's lock, held or still queued for. */
  close() {
    this.closed = true;
    this.lockWait.abort();
    this.releaseLock();
    if (this.writer) this.onWriter(false);
    this.writer = false;
    this.db.close();
  }

  /**
   * Runs `fn(stores)` in one readwrite transaction; its result or -errno.
   * `durability` is "strict" for transactions that commit or delete,
   * "relaxed" for LWHOST_STORE_LAZY commits.
   */
  async txn(fn, durability = "default") {
    if (!this.writer) return -E.EBUSY;
    const tx = this.db.transaction(["values", "pending", "chunks", "meta"], "readwrite", { durability });
    if (durability !== "default") this.lastCommitDurability = tx.durability || durability;
    const s = {
      values: tx.objectStore("values"), pending: tx.objectStore("pending"),
      chunks: tx.objectStore("chunks"), meta: tx.objectStore("meta"),
    };
    let result;
    try {
      result = await fn(s);
    } catch (e) {
      try { tx.abort(); } catch { /* already finished */ }
      if (e instanceof StoreError) return -e.errno;
      throw e;
    }
    await done(tx);
    return result;
  }

  /** Runs one request of the shared region's store slot; result or -errno. */
  async run({ op, flags, key, after, offset, data, capacity }) {
    const bad = op === LWHOST_STORE_LIST ? prefixErrno(key) || prefixErrno(after) : keyErrno(key);
    if (bad) return { result: -bad };
    const k = keyString(key);
    switch (op) {
      case LWHOST_STORE_WRITE: return { result: await this.write(k, flags, offset, data) };
      case LWHOST_STORE_READ: return this.read(k, offset, capacity);
      case LWHOST_STORE_STAT: return this.stat(k);
      case LWHOST_STORE_DELETE: return { result: await this.remove(k) };
      case LWHOST_STORE_LIST: return this.list(k, keyString(after), capacity);
      default: return { result: -E.EINVAL };
    }
  }

  async write(k, flags, offset, data) {
    if (data.length > CHUNK_MAX || flags & ~WRITE_FLAGS_ALL) return -E.EINVAL;
    return this.txn(async (s) => {
      let pending = await request(s.pending.get(k));
      let usage = (await request(s.meta.get("usage"))) || 0;
      if (flags & WRITE_TRUNC) {
        if (offset !== 0) throw new StoreError(E.EINVAL);
        if (pending) {
          await this.dropChunks(s, k, pending.gen);
          usage -= pending.size;
        }
        const gen = ((await request(s.meta.get("gen"))) || 0) + 1;
        s.meta.put(gen, "gen");
        pending = { gen, size: 0 };
      } else if (offset !== (pending ? pending.size : 0)) {
        throw new StoreError(E.EINVAL); // writes continue exactly where the pending value ends
      }
      if (!pending) {
        const gen = ((await request(s.meta.get("gen"))) || 0) + 1;
        s.meta.put(gen, "gen");
        pending = { gen, size: 0 };
      }
      if (usage + data.length > this.quotaBytes) throw new StoreError(E.ENOSPC);
      if (data.length > 0) s.chunks.put(data.slice(), [k, pending.gen, pending.size]);
      pending.size += data.length;
      usage += data.length;
      if (flags & WRITE_COMMIT) {
        const old = await request(s.values.get(k));
        if (old) {
          await this.dropChunks(s, k, old.gen);
          usage -= old.size;
        }
        s.values.put(pending, k);
        s.pending.delete(k);
      } else {
        s.pending.put(pending, k);
      }
      s.meta.put(usage, "usage");
      return data.length;
    }, durability(flags));
  }

  async dropChunks(s, k, gen) {
    await request(s.chunks.delete(IDBKeyRange.bound([k, gen, 0], [k, gen, Infinity])));
  }

  async read(k, offset, capacity) {
    const tx = this.db.transaction(["values", "chunks"], "readonly");
    const value = await request(tx.objectStore("values").get(k));
    if (!value) return { result: -E.ENOENT };
    if (offset >= value.size || capacity === 0) return { result: 0, data: new Uint8Array(0) };
    const want = Math.min(capacity, value.size - offset);
    // Chunks are at most CHUNK_MAX bytes: one starting before offset-CHUNK_MAX cannot reach it.
    const range = IDBKeyRange.bound([k, value.gen, Math.max(0, offset - CHUNK_MAX + 1)], [k, value.gen, offset + want - 1]);
    const starts = await request(tx.objectStore("chunks").getAllKeys(range));
    const chunks = await request(tx.objectStore("chunks").getAll(range));
    const out = new Uint8Array(want);
    let filled = 0;
    chunks.forEach((chunk, i) => {
      const start = starts[i][2];
      const from = Math.max(offset, start), to = Math.min(offset + want, start + chunk.length);
      if (to > from) {
        out.set(chunk.subarray(from - start, to - start), from - offset);
        filled += to - from;
      }
    });
    if (filled !== want) return { result: -E.EIO }; // a hole: the database was altered behind us
    return { result: want, data: out };
  }

  async stat(k) {
    const tx = this.db.transaction(["values"], "readonly");
    const value = await request(tx.objectStore("values").get(k));
    if (!value) return { result: -E.ENOENT };
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigUint64(0, BigInt(value.size), true);
    return { result: 8, data };
  }

  async remove(k) {
    return this.txn(async (s) => {
      const value = await request(s.values.get(k));
      const pending = await request(s.pending.get(k));
      if (!value && !pending) throw new StoreError(E.ENOENT);
      let usage = (await request(s.meta.get("usage"))) || 0;
      if (value) {
        await this.dropChunks(s, k, value.gen);
        usage -= value.size;
      }
      if (pending) {
        await this.dropChunks(s, k, pending.gen);
        usage -= pending.size;
        s.pending.delete(k);
      }
      s.values.delete(k);
      s.meta.put(Math.max(0, usage), "usage");
      return 0;
    }, "strict");
  }

  /** Committed keys starting with `prefix`, sorted after `after`, NUL-separated, whole keys only. */
  async list(prefix, after, capacity) {
    const lower = after > prefix ? after : prefix;
    // Keys are byte strings (chars <= U+00FF): every key with this prefix sorts below prefix + U+0100.
    const upper = prefix + "\u0100";
    if (lower >= upper) return { result: 0, data: new Uint8Array(0) }; // a cursor past every such key
    const range = IDBKeyRange.bound(lower, upper, lower === after && after !== "", true);
    const tx = this.db.transaction(["values"], "readonly");
    const keys = await request(tx.objectStore("values").getAllKeys(range));
    const parts = [];
    let used = 0;
    for (const key of keys) {
      if (!key.startsWith(prefix)) continue;
      if (used + key.length + 1 > capacity) break;
      parts.push(keyBytes(key));
      used += key.length + 1;
    }
    if (parts.length === 0 && keys.some((key) => key.startsWith(prefix))) return { result: -E.ERANGE };
    const out = new Uint8Array(used);
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length + 1; }
    return { result: used, data: out };
  }
}
