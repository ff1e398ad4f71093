// SPDX-License-Identifier: GPL-2.0-only
// `./linux-wasm.sh bench host`, browser half: the same fake kernel runs
// the same loops (non-waiting wasm_net_poll; 64 MiB in 4 KiB reads) over
//   - lwhost-web: worker.js + lwhost::worker in wasm + main.js and its link
//     worker (this project), and
//   - the plain baseline: one postMessage to the main thread plus one
//     Atomics.wait for its answer per host call (baseline-main below and
//     test/baseline-worker.js), over the same proxy with the same binary
//     frames and acks, so only the call mechanism differs.
// Results go to window.lwResults for chromium.py.
import { attachLwnet } from "/lwnet/js/main.js";
import { E, importedMemoryLimits } from "/lwnet/js/shim.js";
import { readThroughProxy } from "./socket-read.js";
import { InPageProxy } from "./in-page-socket.js";

const params = new URLSearchParams(location.search);
const proxyUrl = `ws://127.0.0.1:${params.get("proxy")}/`;
const target = { host: "127.0.0.1", port: Number(params.get("target")) };
const BYTES = Number(params.get("bytes") || 64 << 20);
const POLL_CALLS = Number(params.get("calls") || 20000);
/** Rounds of (ceiling, lwhost-web) reads through lwproxy: ?rounds=, default 3. */
const ROUNDS = Math.max(1, Number(params.get("rounds") || 3));
const results = {};

async function loadStandin() {
  const bytes = await (await fetch("/lwnet/wasm/lwnet_fake_kernel.wasm")).arrayBuffer();
  return { fakeKernel: await WebAssembly.compile(bytes), limits: importedMemoryLimits(bytes) };
}

function runIn(url, message, onMessage) {
  return new Promise((resolve) => {
    const w = new Worker(url, { type: "module" });
    const timer = setTimeout(() => { w.terminate(); resolve({ error: "timed out" }); }, 240000);
    w.onmessage = (ev) => {
      if (ev.data.done) { clearTimeout(timer); w.terminate(); resolve(ev.data.result); }
      else if (onMessage) onMessage(ev.data, w);
    };
    w.onerror = (e) => { clearTimeout(timer); resolve({ error: e.message }); };
    w.postMessage(message);
  });
}

/** The baseline's main thread: a binary-frame lwproxy client answering one message per host call. */
function baselineMain(socketFactory) {
  const ws = socketFactory(proxyUrl, ["lwproxy.v2"]);
  ws.binaryType = "arraybuffer";
  const conns = new Map();
  let waitingRead = null; // a read the worker blocks on until data arrives
  const opened = new Promise((r) => { ws.onopen = r; });
  const answer = (req, value, bytes) => {
    if (bytes) req.data.set(bytes);
    Atomics.store(req.flag, 1, value);
    Atomics.store(req.flag, 0, 1);
    Atomics.notify(req.flag, 0);
  };
  const tryRead = () => {
    if (!waitingRead) return;
    const c = conns.get(waitingRead.id);
    if (!c) { const r = waitingRead; waitingRead = null; answer(r, -9); return; }
    if (c.queue.length === 0 && !c.eof) return;
    const r = waitingRead;
    waitingRead = null;
    if (c.queue.length === 0) { answer(r, 0); return; }
    const out = new Uint8Array(Math.min(r.count, r.data.length));
    let n = 0;
    while (n < out.length && c.queue.length) {
      const head = c.queue[0], take = Math.min(head.length, out.length - n);
      out.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) c.queue.shift(); else c.queue[0] = head.subarray(take);
    }
    c.unacked += n;
    if (c.unacked >= 65536 || c.queue.length === 0) { ws.send(JSON.stringify({ t: "ack", id: r.id, bytes: c.unacked })); c.unacked = 0; }
    answer(r, n, out.subarray(0, n));
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") {
      const id = new DataView(ev.data).getUint32(0);
      const c = conns.get(id);
      if (c) { c.queue.push(new Uint8Array(ev.data, 4)); tryRead(); }
      return;
    }
    const m = JSON.parse(ev.data);
    const c = conns.get(m.id);
    if (!c) return;
    if (m.t === "opened") { c.open = true; if (c.pendingOpen) { answer(c.pendingOpen, m.id); c.pendingOpen = null; } }
    else if (m.t === "eof" || m.t === "closed") { c.eof = true; tryRead(); }
    else if (m.t === "error") { c.eof = true; if (c.pendingOpen) { answer(c.pendingOpen, -E.ECONNREFUSED); c.pendingOpen = null; } tryRead(); }
  };
  let nextId = 1;
  return {
    opened,
    onRequest(req) {
      switch (req.op) {
        case "open": {
          const id = nextId++;
          conns.set(id, { queue: [], unacked: 0, eof: false, open: false, pendingOpen: req });
          ws.send(JSON.stringify({ t: "open", id, host: req.host, port: req.port }));
          break;
        }
        case "write": {
          const frame = new Uint8Array(4 + req.bytes.length);
          new DataView(frame.buffer).setUint32(0, req.id);
          frame.set(req.bytes, 4);
          ws.send(frame);
          answer(req, req.bytes.length);
          break;
        }
        case "read": waitingRead = req; tryRead(); break;
        case "poll": {
          const c = conns.get(req.id);
          answer(req, !c ? -9 : (c.queue.length || c.eof ? 1 : 0) | (c.open ? 2 : 0));
          break;
        }
        case "shutdown": ws.send(JSON.stringify({ t: "shutdown", id: req.id })); answer(req, 0); break;
        case "close": conns.delete(req.id); ws.send(JSON.stringify({ t: "close", id: req.id })); answer(req, 0); break;
        default: answer(req, -22);
      }
    },
    close: () => ws.close(),
  };
}

const realSocket = (url, protocols) => new WebSocket(url, protocols);
const inPageSocket = () => new InPageProxy(BYTES);
/** The same in-page source for lwhost-web's link worker, which imports it by URL. */
const inPageSocketModule = `/test/in-page-socket.js?bytes=${BYTES}`;

/** The run with the median throughput of `runs` (bench_read or readThroughProxy results), with every run's MiB/s. */
function medianRun(runs) {
  const sorted = [...runs].sort((a, b) => (a.mib_s || 0) - (b.mib_s || 0));
  return { ...sorted[(sorted.length - 1) >> 1], runs: runs.map((r) => r.mib_s) };
}

/**
 * lwhost-web's reads. Through the real lwproxy (no socketModule), each of
 * the ROUNDS reads follows a read of the ceiling (socket-worker.js: the bare
 * WebSocket loop in a dedicated worker, the link worker's kind of thread) on
 * the same stream, so each round's ratio compares runs made under the same
 * load; results.paired holds them and their median.
 */
async function benchLwhost(mod, socketModule, tag) {
  const host = await attachLwnet({ proxyUrl, storeName: "lwnet-bench", socketModule });
  for (let i = 0; i < 100 && host.stats().socket !== "open"; i++) await new Promise((r) => setTimeout(r, 100));
  const init = host.workerInit();
  const read = () => runIn("/test/fake-kernel-worker.js", { init, ...mod, task: { kind: "bench_read", ...target, bytes: BYTES } });
  if (tag === "") {
    results.lwhost_poll = await runIn("/test/fake-kernel-worker.js", { init, ...mod, task: { kind: "bench_poll", ...target, calls: POLL_CALLS } });
    const ceilings = [], reads = [];
    for (let round = 0; round < ROUNDS; round++) {
      ceilings.push(await runIn("/test/socket-worker.js", { proxyUrl, target, bytes: BYTES }));
      reads.push(await read());
    }
    results.socket_worker = medianRun(ceilings);
    results.lwhost_read = medianRun(reads);
    const ratios = reads.map((r, i) => r.mib_s / ceilings[i].mib_s);
    // Runs that ended early (an error, or fewer bytes than asked), whole, for the report.
    const short = [...ceilings, ...reads].filter((r) => !(r.bytes >= BYTES));
    results.paired = { ratios, ratio_median: [...ratios].sort((a, b) => a - b)[(ratios.length - 1) >> 1], short };
    results.lwhost_link = host.stats(); // the link worker's counters (link-stats.js), rxWindowMax among them
  } else {
    results["lwhost_read" + tag] = await read();
  }
  await host.close();
}

async function benchBaseline(mod, socketFactory, tag) {
  const main = baselineMain(socketFactory);
  await main.opened;
  const onMessage = (m) => { if (m.req) main.onRequest(m.req); };
  if (tag === "") {
    results.baseline_poll = await runIn("/test/baseline-worker.js", { ...mod, task: { kind: "bench_poll", ...target, calls: Math.max(1000, POLL_CALLS / 20) } }, onMessage);
  }
  results["baseline_read" + tag] = await runIn("/test/baseline-worker.js", { ...mod, task: { kind: "bench_read", ...target, bytes: BYTES } }, onMessage);
  main.close();
}

(async () => {
  try {
    const mod = await loadStandin();
    if (!params.get("only")) {
      // The ceiling: the page's main thread alone downloading through lwproxy (no worker, no ring).
      results.socket_only = await readThroughProxy({ proxyUrl, target, bytes: BYTES });
      await benchLwhost(mod, undefined, "");
      await benchBaseline(mod, realSocket, "");
    }
    await benchLwhost(mod, inPageSocketModule, "_in_page");
    await benchBaseline(mod, inPageSocket, "_in_page");
  } catch (e) {
    results.error = String(e && e.stack || e);
  }
  window.lwResults = results;
  window.lwDone = true;
})();
