// SPDX-License-Identifier: GPL-2.0-only
// A Web Worker playing one kernel task: installs the host ABI with the real
// glue (worker.js -> lwhost-web), instantiates the fake kernel module
// over its own shared memory, and runs one task the page asks for.
import {
  LWHOST_ID_GEN_MASK, LWHOST_ID_SLOT_BITS, LWHOST_ID_SLOT_MASK, LWHOST_STORE_BUF, LWHOST_STORE_LIST,
  LWHOST_STORE_READ, LWHOST_STORE_WRITE,
} from "/lwnet/js/lwabi.js";
import { installLwnet } from "/lwnet/js/worker.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The value phase 1 stores and phase 2 expects back: 150000 patterned bytes (3 chunks). */
function persistValue() {
  const v = new Uint8Array(150000);
  for (let i = 0; i < v.length; i++) v[i] = (i * 7 + (i >> 9)) & 0xff;
  return v;
}

self.onmessage = async (ev) => {
  const { init, fakeKernel, limits, task } = ev.data;
  try {
    const env = {};
    const kernelMemory = new WebAssembly.Memory({ initial: limits.initial, maximum: limits.maximum, shared: true });
    const lw = await installLwnet(env, init, kernelMemory);
    env.memory = kernelMemory;
    const waits = { n: 0, ms: 0 };
    env.lw_test_wait = (last, ms) => {
      const t0 = performance.now();
      const r = lw.waitGuestDoorbell(last, ms);
      waits.n++;
      waits.ms += performance.now() - t0;
      return r;
    };
    env.lw_test_waits = waits;
    env.lw_test_doorbell = () => lw.guestDoorbell();
    env.lw_test_now_ms = () => performance.now();
    const instance = await WebAssembly.instantiate(fakeKernel, { env });
    const result = await TASKS[task.kind](instance.exports, kernelMemory, env, task);
    postMessage({ done: true, result, slot: lw.threadSlot() });
  } catch (e) {
    postMessage({ done: true, result: { error: String(e && e.stack || e) } });
  }
};

/** A bump allocator over the fake kernel's buffer. */
function arena(ex, memory) {
  const base = ex.fake_kernel_buf() >>> 0, size = ex.fake_kernel_buf_len();
  let used = 0;
  return {
    put(bytes) {
      if (typeof bytes === "string") bytes = enc.encode(bytes);
      const at = base + used;
      used += (bytes.length + 15) & ~15;
      if (used > size) throw new Error("fake kernel buffer exhausted");
      new Uint8Array(memory.buffer).set(bytes, at);
      return [at, bytes.length];
    },
    alloc(n) {
      const at = base + used;
      used += (n + 15) & ~15;
      if (used > size) throw new Error("fake kernel buffer exhausted");
      return at;
    },
    bytes: (at, n) => new Uint8Array(memory.buffer).slice(at, at + n),
  };
}

const TIMEOUT_MS = 15000;

function http(ex, memory, host, port, path) {
  const a = arena(ex, memory);
  const [h, hl] = a.put(host);
  const [r, rl] = a.put(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  const cap = 65536, out = a.alloc(cap);
  const n = ex.fake_kernel_http(h, hl, port, r, rl, out, cap, TIMEOUT_MS);
  return { n, text: n > 0 ? dec.decode(a.bytes(out, Math.min(n, 4096))) : "" };
}

const TASKS = {
  http: (ex, memory, env, t) => http(ex, memory, t.host, t.port, t.path),

  /** put / get / list / delete on the store, and leave a value for phase 2. */
  store: (ex, memory) => {
    const a = arena(ex, memory);
    const out = {};
    const value = persistValue();
    const [k1, k1l] = a.put("lwtest/dir/blob");
    const [k2, k2l] = a.put("lwtest/dir/small");
    const [k3, k3l] = a.put("lwtest/persist");
    const [pre, prel] = a.put("lwtest/");
    const [v, vl] = a.put(value);
    const [s, sl] = a.put("hello store");
    out.put_blob = ex.fake_kernel_store_put(k1, k1l, v, vl, TIMEOUT_MS);
    out.put_small = ex.fake_kernel_store_put(k2, k2l, s, sl, TIMEOUT_MS);
    const got = a.alloc(vl + 16);
    out.get_blob = ex.fake_kernel_store_get(k1, k1l, got, vl + 16, TIMEOUT_MS);
    out.get_blob_equal = out.get_blob === vl && a.bytes(got, vl).every((b, i) => b === value[i]);
    const list = a.alloc(4096);
    const ln = ex.fake_kernel_store_list(pre, prel, list, 4096, TIMEOUT_MS);
    out.list = ln >= 0 ? dec.decode(a.bytes(list, ln)).split("\0").filter(Boolean) : ln;
    out.delete_small = ex.fake_kernel_store_delete(k2, k2l, TIMEOUT_MS);
    out.get_deleted = ex.fake_kernel_store_get(k2, k2l, got, 64, TIMEOUT_MS);
    out.delete_missing = ex.fake_kernel_store_delete(k2, k2l, TIMEOUT_MS);
    const ln2 = ex.fake_kernel_store_list(pre, prel, list, 4096, TIMEOUT_MS);
    out.list_after_delete = ln2 >= 0 ? dec.decode(a.bytes(list, ln2)).split("\0").filter(Boolean) : ln2;
    const [bad, badl] = a.put("lwtest/../escape");
    out.put_bad_key = ex.fake_kernel_store_put(bad, badl, s, sl, TIMEOUT_MS);
    out.put_persist = ex.fake_kernel_store_put(k3, k3l, v, vl, TIMEOUT_MS);
    return out;
  },

  /** Phase 2: the value phase 1 committed, back after a reload. */
  verify: (ex, memory) => {
    const a = arena(ex, memory);
    const value = persistValue();
    const [k3, k3l] = a.put("lwtest/persist");
    const [pre, prel] = a.put("lwtest/");
    const got = a.alloc(value.length + 16);
    const n = ex.fake_kernel_store_get(k3, k3l, got, value.length + 16, TIMEOUT_MS);
    const list = a.alloc(4096);
    const ln = ex.fake_kernel_store_list(pre, prel, list, 4096, TIMEOUT_MS);
    return {
      get: n,
      equal: n === value.length && a.bytes(got, n).every((b, i) => b === value[i]),
      list: ln >= 0 ? dec.decode(a.bytes(list, ln)).split("\0").filter(Boolean) : ln,
    };
  },

  /** Garbage from the kernel side: every call answers an errno, nothing throws. */
  hostile: (ex, memory, env, t) => {
    const end = memory.buffer.byteLength;
    const a = arena(ex, memory);
    const [h, hl] = a.put(t.host);
    const buf = a.alloc(64);
    const out = {};
    const id = ex.fake_kernel_connect(h, hl, t.port, 0, TIMEOUT_MS);
    out.connect = id;
    out.read_past_end = env.wasm_net_read(id, end - 8, 64);
    out.read_wrapping = env.wasm_net_read(id, 0xfffffff0 | 0, 64);
    out.write_past_end = env.wasm_net_write(id, end, 1);
    out.write_negative_len = env.wasm_net_write(id, buf, -5);
    out.read_null = env.wasm_net_read(id, 0, 16);
    out.open_host_past_end = env.wasm_net_open_ex(end - 4, 100, t.port, 0, 0);
    new Uint8Array(memory.buffer).set([0x61, 0x62, 0x63], end - 3); // "abc" up to the end, no NUL
    out.open_unterminated = env.wasm_net_open(end - 3, t.port);
    out.open_bad_port = env.wasm_net_open_ex(h, hl, 70000, 0, 0);
    out.open_bad_flags = env.wasm_net_open_ex(h, hl, t.port, 0x80, 0);
    out.read_bad_id = env.wasm_net_read(0x7fff1f, buf, 16);
    out.poll_bad_id = env.wasm_net_poll(-1);
    const staleGen = ((id >> LWHOST_ID_SLOT_BITS) + 5) & LWHOST_ID_GEN_MASK;
    out.poll_stale_gen = env.wasm_net_poll((staleGen << LWHOST_ID_SLOT_BITS) | (id & LWHOST_ID_SLOT_MASK));
    out.shutdown_bad_id = env.wasm_net_shutdown(12345);
    env.wasm_net_close(-7); // ignored
    out.store_req_past_end = env.wasm_store_submit(end - 8);
    // A request whose key pointer is past the end of memory.
    const req = a.alloc(64);
    const dv = new DataView(memory.buffer);
    dv.setUint32(req + 0, 3, true); // STAT
    dv.setUint32(req + 8, end + 100, true);
    dv.setUint32(req + 16, 4, true);
    out.store_key_past_end = env.wasm_store_submit(req);
    dv.setUint32(req + 8, h, true);
    dv.setUint32(req + 16, 100000, true);
    out.store_key_too_long = env.wasm_store_submit(req);
    // One byte more than a slot's data (LWHOST_STORE_BUF): EINVAL, whatever the op.
    new Uint8Array(memory.buffer, req, 64).fill(0);
    dv.setUint32(req + 8, h, true);
    dv.setUint32(req + 16, 1, true);
    dv.setUint32(req + 40, buf, true);
    dv.setUint32(req + 48, LWHOST_STORE_BUF + 1, true);
    for (const [name, op] of [["write", LWHOST_STORE_WRITE], ["read", LWHOST_STORE_READ], ["list", LWHOST_STORE_LIST]]) {
      dv.setUint32(req + 0, op, true);
      out[`store_${name}_over_buf`] = env.wasm_store_submit(req);
    }
    out.store_poll_bad_ticket = env.wasm_store_poll(0x7f7f01, buf, 16);
    out.store_poll_past_end = env.wasm_store_poll(1, end - 2, 16);
    out.store_poll_huge_len = env.wasm_store_poll(1, buf, 0xffffffff | 0); // u32: past the end, not negative
    out.open_huge_host_len = env.wasm_net_open_ex(h, 0x80000000 | 0, t.port, 0, 0);
    // Still works after all that.
    out.poll_after = env.wasm_net_poll(id);
    env.wasm_net_close(id);
    out.poll_closed = env.wasm_net_poll(id);
    return out;
  },

  /** Holds a connection open while the page drops the proxy socket: ECONNRESET. */
  reset: async (ex, memory, env, t) => {
    const a = arena(ex, memory);
    const [h, hl] = a.put(t.host);
    const id = ex.fake_kernel_connect(h, hl, t.port, 0, TIMEOUT_MS);
    if (id < 0) return { connect: id };
    const [r, rl] = a.put(`GET /hold HTTP/1.0\r\nHost: ${t.host}\r\n\r\n`);
    const w = ex.fake_kernel_write_all(id, r, rl, TIMEOUT_MS);
    const out = a.alloc(4096);
    // First bytes arrive: the connection is established end to end.
    let n = -11;
    const deadline = performance.now() + TIMEOUT_MS;
    while (n === -11 && performance.now() < deadline) {
      const bell = env.lw_test_doorbell();
      n = env.wasm_net_read(id, out, 4096);
      if (n === -11) env.lw_test_wait(bell, 100);
    }
    postMessage({ holding: true });
    const end = ex.fake_kernel_read_all(id, out, 4096, 4096, TIMEOUT_MS);
    const poll = env.wasm_net_poll(id);
    ex.fake_kernel_close(id);
    return { write: w, first: n, after_reset: end, poll };
  },

  /** Benchmark: non-waiting wasm_net_poll calls, ns each. */
  bench_poll: (ex, memory, env, t) => {
    const a = arena(ex, memory);
    const [h, hl] = a.put(t.host);
    const id = ex.fake_kernel_connect(h, hl, t.port, 0, TIMEOUT_MS);
    if (id < 0) return { error: "connect " + id };
    const samples = [];
    for (let round = 0; round < 21; round++) {
      const t0 = performance.now();
      ex.fake_kernel_poll_loop(id, t.calls);
      samples.push(((performance.now() - t0) * 1e6) / t.calls);
    }
    ex.fake_kernel_close(id);
    samples.sort((x, y) => x - y);
    return { ns_p50: samples[10], ns_min: samples[0], calls: t.calls * 21 };
  },

  /**
   * Benchmark: t.bytes from the target in 4 KiB reads. With t.gate (an
   * Int32Array over a SharedArrayBuffer, [go, done]): says {ready} once set
   * up, starts when the page stores go = 1, stores done = 1 at the end, so
   * the page can watch the transfer without a message.
   */
  bench_read: (ex, memory, env, t) => {
    const a = arena(ex, memory);
    const [h, hl] = a.put(t.host);
    if (t.gate) {
      postMessage({ ready: true });
      if (Atomics.wait(t.gate, 0, 0, 30000) === "timed-out") return { error: "the page never said go" };
    }
    const t0 = performance.now();
    const id = ex.fake_kernel_connect(h, hl, t.port, 0, 30000);
    if (id < 0) return { error: "connect " + id };
    const [r, rl] = a.put(`GET /bulk/${t.bytes} HTTP/1.0\r\nHost: ${t.host}\r\n\r\n`);
    ex.fake_kernel_write_all(id, r, rl, 30000);
    const out = a.alloc(65536);
    const t1 = performance.now();
    const n = ex.fake_kernel_read_all(id, out, 65536, 4096, 60000);
    const t2 = performance.now();
    ex.fake_kernel_close(id);
    if (t.gate) { Atomics.store(t.gate, 1, 1); Atomics.notify(t.gate, 1); }
    return {
      bytes: n, ms: t2 - t1, connect_ms: t1 - t0, mib_s: n / 1048576 / ((t2 - t1) / 1000),
      waits: env.lw_test_waits.n, wait_ms: env.lw_test_waits.ms,
    };
  },
};
