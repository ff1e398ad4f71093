// SPDX-License-Identifier: GPL-2.0-only
// Worker side of lwhost in the browser: installs the kernel's host ABI
// imports (wasm_net_*, wasm_store_*) into linux-wasm's host-callback table.
//
// Each call validates the kernel's pointers and lengths against the kernel's
// memory (-EFAULT, never an exception), copies the bytes into this thread's
// scratch area in lwhost-web's shared memory, and calls lwhost's real worker
// code (lwhost::worker::Worker compiled to wasm32), which never waits. So a
// host call costs two memcpys and a wasm call: no postMessage, no
// Atomics.wait. Readiness is learned through wasm_net_poll after the guest
// doorbell moves (waitGuestDoorbell here, an IRQ or timer in a kernel).

import { LWHOST_HOST_MAX as HOST_MAX, LWHOST_STORE_WRITE } from "./lwabi.js";
import { E, atomicImports } from "./shim.js";

/** Kernel pointers arrive as i32 (wasm32) or BigInt (wasm64). */
const addr = (p) => (typeof p === "bigint" ? Number(BigInt.asUintN(64, p)) : p >>> 0);
/** `int` lengths: negative is invalid (-EINVAL), not huge. */
const length = (n) => (typeof n === "bigint" ? Number(BigInt.asIntN(64, n)) : n | 0);
/** `u32` lengths: huge is simply past the end of memory (-EFAULT). */
const ulength = (n) => (typeof n === "bigint" ? Number(BigInt.asUintN(32, n)) : n >>> 0);

/**
 * Installs the host ABI into `env` (linux-wasm's `host_callbacks`, or any
 * import object of a module that calls the ABI).
 *
 * @param env          object to add wasm_net_* / wasm_store_* to
 * @param init         from the main side's `workerInit()`: {module, memory, layout, lockPrefix}
 * @param kernelMemory the WebAssembly.Memory the kernel's pointers refer to
 * @returns a handle: {waitGuestDoorbell(last, ms), guestDoorbell(), threadSlot()}
 */
export async function installLwnet(env, init, kernelMemory) {
  const { module, memory, layout: L, lockPrefix } = init;
  const instance = await WebAssembly.instantiate(module, {
    env: { memory },
    lwhost: atomicImports(memory),
  });
  const ex = instance.exports;
  // Static data (region, thread slots) lies in the memory's first pages,
  // so views made now stay valid even if the memory grows later.
  const shimU8 = new Uint8Array(memory.buffer);
  const shimI32 = new Int32Array(memory.buffer);
  const guestBell = (L.region + L.guest_doorbell) >> 2;

  let kernelU8 = new Uint8Array(kernelMemory.buffer);
  let kernelView = new DataView(kernelMemory.buffer);

  /**
   * Start of [ptr, ptr+len) in kernel memory, or a negative errno. `lenArg`
   * is an `int` straight from wasm (signed), or a ulength() value.
   */
  const kernelRange = (ptrArg, lenArg) => {
    const ptr = addr(ptrArg), len = typeof lenArg === "bigint" ? length(lenArg) : lenArg;
    if (len < 0) return -E.EINVAL;
    if (len === 0) return ptr;
    if (ptr === 0) return -E.EFAULT;
    if (ptr + len > kernelU8.length) {
      // The kernel's memory may have grown since the views were made.
      kernelU8 = new Uint8Array(kernelMemory.buffer);
      kernelView = new DataView(kernelMemory.buffer);
      if (ptr + len > kernelU8.length) return -E.EFAULT;
    }
    return ptr;
  };

  // This worker's liveness token: a Web Lock held for the worker's whole
  // life (taken here, before any host call, so "not held" later can only
  // mean "this worker has ended"). The browser releases it when the worker
  // ends, and the main side then frees the thread slot marked with it.
  const token = (crypto.getRandomValues(new Uint32Array(1))[0] >>> 1) + 1;
  if (globalThis.navigator?.locks) {
    await new Promise((granted) => {
      navigator.locks.request(`${lockPrefix}-${token}`, () => {
        granted();
        return new Promise(() => {}); // held until this worker ends
      });
    });
  }

  // This thread's slot: a stack, TLS block and scratch area of its own in
  // the shim's memory, claimed on first use (a CAS of 0 -> token).
  let scratch = 0, scratchSize = 0, slot = -1;
  const claimThread = () => {
    const owners = new Int32Array(memory.buffer, L.thread_owner, L.thread_slots);
    if (ex.__tls_size.value > L.thread_tls_size || ex.__tls_align.value > 16) {
      throw new Error("lwhost-web TLS does not fit its thread slot");
    }
    for (let i = 0; i < L.thread_slots; i++) {
      if (Atomics.compareExchange(owners, i, 0, token) !== 0) continue;
      const base = L.thread_base + i * L.thread_stride;
      ex.__stack_pointer.value = base + L.thread_stack + L.thread_stack_size;
      ex.__wasm_init_tls(base + L.thread_tls);
      scratch = base + L.thread_scratch;
      scratchSize = L.thread_scratch_size;
      slot = i;
      return true;
    }
    return false;
  };
  const ready = () => slot >= 0 || claimThread();

  const copyIn = (kptr, len, at) => { shimU8.set(kernelU8.subarray(kptr, kptr + len), at); };

  const abi = {
    wasm_net_open: (hostPtr, port) => {
      if (!ready()) return -E.ENOMEM;
      const start = kernelRange(hostPtr, 1);
      if (start < 0) return start;
      const limit = Math.min(kernelU8.length, start + HOST_MAX);
      let end = start;
      while (end < limit && kernelU8[end] !== 0) end++;
      if (end === limit) return end === kernelU8.length ? -E.EFAULT : -E.EINVAL;
      copyIn(start, end - start, scratch);
      return ex.lw_net_open(scratch, end - start, length(port) >>> 0, 0, 0);
    },
    wasm_net_open_ex: (hostPtr, hostLen, port, flags, timeoutMs) => {
      if (!ready()) return -E.ENOMEM;
      const len = ulength(hostLen);
      const start = kernelRange(hostPtr, len);
      if (start < 0) return start;
      if (len === 0 || len >= HOST_MAX) return -E.EINVAL;
      copyIn(start, len, scratch);
      return ex.lw_net_open(scratch, len, ulength(port), ulength(flags), ulength(timeoutMs));
    },
    wasm_net_write: (id, buf, len) => {
      if (!ready()) return -E.ENOMEM;
      const start = kernelRange(buf, len);
      if (start < 0) return start;
      const n = Math.min(length(len), scratchSize);
      copyIn(start, n, scratch);
      return ex.lw_net_write(id | 0, scratch, n);
    },
    wasm_net_read: (id, buf, count) => {
      if (!ready()) return -E.ENOMEM;
      const start = kernelRange(buf, count);
      if (start < 0) return start;
      const r = ex.lw_net_read(id | 0, scratch, Math.min(length(count), scratchSize));
      if (r > 0) kernelU8.set(shimU8.subarray(scratch, scratch + r), start);
      return r;
    },
    wasm_net_poll: (id) => (ready() ? ex.lw_net_poll(id | 0) : -E.ENOMEM),
    wasm_net_shutdown: (id) => (ready() ? ex.lw_net_shutdown(id | 0) : -E.ENOMEM),
    wasm_net_close: (id) => { if (ready()) ex.lw_net_close(id | 0); },

    wasm_store_submit: (reqPtr) => {
      if (!ready()) return -E.ENOMEM;
      const req = kernelRange(reqPtr, L.req_size);
      if (req < 0) return req;
      const u32 = (off) => kernelView.getUint32(req + off, true);
      // A 64-bit kernel address; anything past 2^53 is out of any memory.
      const ptr64 = (off) => u32(off) + u32(off + 4) * 2 ** 32;
      const op = u32(L.req_op), keyLen = u32(L.req_key_len), afterLen = u32(L.req_after_len);
      const dataLen = u32(L.req_len);
      if (keyLen > L.key_max || afterLen > L.key_max) return -E.ENAMETOOLONG;
      const isWrite = op === LWHOST_STORE_WRITE;
      if (isWrite && dataLen > L.store_buf) return -E.EINVAL;
      const key = kernelRange(ptr64(L.req_key), keyLen);
      const after = kernelRange(ptr64(L.req_after), afterLen);
      const data = isWrite ? kernelRange(ptr64(L.req_data), dataLen) : 0;
      for (const r of [key, after, data]) if (r < 0) return r;
      // The request goes to lwhost with its pointers as offsets into our
      // scratch area: [req][key][after][data].
      const keyAt = 64, afterAt = keyAt + L.key_max, dataAt = afterAt + L.key_max;
      copyIn(req, L.req_size, scratch);
      copyIn(key, keyLen, scratch + keyAt);
      copyIn(after, afterLen, scratch + afterAt);
      if (isWrite) copyIn(data, dataLen, scratch + dataAt);
      const out = new DataView(memory.buffer, scratch, L.req_size);
      const setPtr = (off, value) => { out.setUint32(off, value, true); out.setUint32(off + 4, 0, true); };
      setPtr(L.req_key, keyAt);
      setPtr(L.req_after, afterAt);
      setPtr(L.req_data, isWrite ? dataAt : 0);
      return ex.lw_store_submit(scratch, scratch, scratchSize);
    },
    wasm_store_poll: (ticket, buf, len) => {
      if (!ready()) return -E.ENOMEM;
      const start = kernelRange(buf, ulength(len));
      if (start < 0) return start;
      const n = Math.min(ulength(len), scratchSize);
      const r = ex.lw_store_poll(ticket | 0, scratch, n);
      if (r > 0) kernelU8.set(shimU8.subarray(scratch, scratch + Math.min(r, n)), start);
      return r;
    },
  };
  Object.assign(env, abi);

  return {
    /** Sleeps until the guest doorbell differs from `last` (or `ms` pass); its value. */
    waitGuestDoorbell: (last, ms) => {
      Atomics.wait(shimI32, guestBell, last | 0, ms);
      return Atomics.load(shimI32, guestBell) >>> 0;
    },
    guestDoorbell: () => Atomics.load(shimI32, guestBell) >>> 0,
    threadSlot: () => slot,
  };
}
