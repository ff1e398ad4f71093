// SPDX-License-Identifier: GPL-2.0-only
// The plain baseline for `bench host`: the same fake kernel module,
// but every host call is one postMessage to the main thread plus one
// Atomics.wait for its answer (the plain way to build linux-worker.js's host calls).
const flag = new Int32Array(new SharedArrayBuffer(8)); // [done, value]
const data = new Uint8Array(new SharedArrayBuffer(65536));
const dec = new TextDecoder();

function call(op, fields) {
  Atomics.store(flag, 0, 0);
  postMessage({ req: { op, ...fields, flag, data } });
  Atomics.wait(flag, 0, 0);
  return Atomics.load(flag, 1);
}

self.onmessage = async (ev) => {
  const { fakeKernel, limits, task } = ev.data;
  const memory = new WebAssembly.Memory({ initial: limits.initial, maximum: limits.maximum, shared: true });
  const u8 = () => new Uint8Array(memory.buffer);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const env = {
    memory,
    wasm_net_open_ex: (host, len, port) => call("open", { host: dec.decode(u8().slice(host, host + len)), port }),
    wasm_net_write: (id, buf, len) => call("write", { id, bytes: u8().slice(buf, buf + Math.min(len, data.length)) }),
    wasm_net_read: (id, buf, count) => {
      const n = call("read", { id, count: Math.min(count, data.length) });
      if (n > 0) u8().set(data.subarray(0, n), buf);
      return n;
    },
    wasm_net_poll: (id) => call("poll", { id }),
    wasm_net_shutdown: (id) => call("shutdown", { id }),
    wasm_net_close: (id) => { call("close", { id }); },
    wasm_store_submit: () => -38,
    wasm_store_poll: () => -38,
    lw_test_wait: (last, ms) => { Atomics.wait(nap, 0, 0, Math.min(ms, 1)); return last + 1; },
    lw_test_doorbell: () => 0,
    lw_test_now_ms: () => performance.now(),
  };
  const instance = await WebAssembly.instantiate(fakeKernel, { env });
  const ex = instance.exports;
  const base = ex.fake_kernel_buf() >>> 0;
  const put = (s, at) => { const b = new TextEncoder().encode(s); u8().set(b, base + at); return [base + at, b.length]; };
  let result;
  const [h, hl] = put(task.host, 0);
  const id = ex.fake_kernel_connect(h, hl, task.port, 0, 30000);
  if (task.kind === "bench_poll") {
    const samples = [];
    for (let round = 0; round < 21; round++) {
      const t0 = performance.now();
      ex.fake_kernel_poll_loop(id, task.calls);
      samples.push(((performance.now() - t0) * 1e6) / task.calls);
    }
    samples.sort((x, y) => x - y);
    result = { ns_p50: samples[10], ns_min: samples[0], calls: task.calls * 21 };
  } else {
    const [r, rl] = put(`GET /bulk/${task.bytes} HTTP/1.0\r\nHost: ${task.host}\r\n\r\n`, 1024);
    ex.fake_kernel_write_all(id, r, rl, 30000);
    const t1 = performance.now();
    const n = ex.fake_kernel_read_all(id, base + 65536, 65536, 4096, 120000);
    const t2 = performance.now();
    result = { bytes: n, ms: t2 - t1, mib_s: n / 1048576 / ((t2 - t1) / 1000) };
  }
  ex.fake_kernel_close(id);
  postMessage({ done: true, result });
};
