// SPDX-License-Identifier: GPL-2.0-only
// What the main-thread and worker glue share: loading the lwhost-web module,
// its memory limits, the region layout it exports, errno values.

/** Field names, version and sentinel of lwhost-web's `struct Layout` (host/src/web_layout.rs,
 * generated into web-layout.js): the values come from the module at run time. */
import { LAYOUT_FIELDS, LAYOUT_SENTINEL, LAYOUT_VERSION } from "./web-layout.js";

/** Linux errno values by name (asm-generic/errno.h, generated into lwabi.js). */
export { E } from "./lwabi.js";


/** Reads the layout an instance publishes at `exports.lw_layout()`. */
export function readLayout(exports, memory) {
  const at = exports.lw_layout() >>> 0;
  const words = new Uint32Array(memory.buffer, at, LAYOUT_FIELDS.length);
  const layout = {};
  LAYOUT_FIELDS.forEach((name, i) => { layout[name] = words[i]; });
  if (layout.version !== LAYOUT_VERSION || layout.sentinel !== LAYOUT_SENTINEL) {
    throw new Error(`lwhost-web layout mismatch (version ${layout.version}); rebuild host/web`);
  }
  return Object.freeze(layout);
}

/** Reads an unsigned LEB128 from `bytes` at `pos`; returns [value, next]. */
function leb(bytes, pos) {
  let value = 0, shift = 0, b;
  do {
    if (pos >= bytes.length) throw new Error("truncated wasm module");
    b = bytes[pos++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return [value, pos];
}

/**
 * The limits (in 64 KiB pages) of the memory a module imports, read from its
 * import section: the embedder must create that memory (shared) itself.
 */
export function importedMemoryLimits(wasmBytes) {
  const bytes = new Uint8Array(wasmBytes);
  let pos = 8; // magic + version
  while (pos < bytes.length) {
    const id = bytes[pos++];
    let size;
    [size, pos] = leb(bytes, pos);
    const end = pos + size;
    if (id === 2) {
      let count;
      [count, pos] = leb(bytes, pos);
      for (let i = 0; i < count; i++) {
        for (let s = 0; s < 2; s++) { // module name, field name
          let len;
          [len, pos] = leb(bytes, pos);
          pos += len;
        }
        const kind = bytes[pos++];
        if (kind === 0) { [, pos] = leb(bytes, pos); continue; } // func: type index
        if (kind === 1) { pos += 1; const f = bytes[pos++]; [, pos] = leb(bytes, pos); if (f & 1) [, pos] = leb(bytes, pos); continue; }
        if (kind === 3) { pos += 2; continue; } // global: type, mutability
        if (kind === 2) {
          const flags = bytes[pos++];
          let initial, maximum;
          [initial, pos] = leb(bytes, pos);
          if (flags & 1) [maximum, pos] = leb(bytes, pos);
          return { initial, maximum, shared: (flags & 2) !== 0 };
        }
        throw new Error("unknown import kind " + kind);
      }
    }
    pos = end;
  }
  throw new Error("module imports no memory");
}

/** Fetches and compiles a module; returns it with a fresh shared memory for it. */
export async function loadSharedModule(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status}`);
  const bytes = await response.arrayBuffer();
  const limits = importedMemoryLimits(bytes);
  if (!limits.shared || limits.maximum === undefined) {
    throw new Error(`${url} does not import a shared memory with a maximum`);
  }
  const module = await WebAssembly.compile(bytes);
  const memory = new WebAssembly.Memory({ initial: limits.initial, maximum: limits.maximum, shared: true });
  return { module, memory };
}

/**
 * The `lwhost` imports of lwhost-web: wait/notify on its shared words.
 * `Atomics.wait` throws on a window's main thread; the main side never makes
 * a call that waits (it uses Atomics.waitAsync itself).
 */
export function atomicImports(memory) {
  let i32 = new Int32Array(memory.buffer);
  // The words live in static data, inside the first view; refresh it only
  // if an index is past it (the memory grew and something new is waited on).
  const view = (index) => (index < i32.length ? i32 : (i32 = new Int32Array(memory.buffer)));
  return {
    atomic_wait32: (ptr, expected, timeoutNs) => {
      const ms = timeoutNs < 0n ? Infinity : Number(timeoutNs) / 1e6;
      const index = (ptr >>> 0) >> 2;
      const r = Atomics.wait(view(index), index, expected, ms);
      return r === "ok" ? 0 : r === "not-equal" ? 1 : 2;
    },
    atomic_notify: (ptr, count) => {
      const index = (ptr >>> 0) >> 2;
      return Atomics.notify(view(index), index, count < 0 ? Infinity : count);
    },
  };
}
