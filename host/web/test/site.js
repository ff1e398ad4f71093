// SPDX-License-Identifier: GPL-2.0-only
// The Chromium test of the assembled site (tools/test/browser.sh): the site
// built against the fake upstream (tests/fake-upstream: its runtime and a
// stand-in vmlinux that imports the fake arch's host functions and the lwnet
// host ABI from env, and exports raise_interrupt) is loaded in an iframe.
// Checks: the page boots it with lwnet's glue (no LinkError in any CPU
// worker), shows the proxy as connected, the interrupt worker raises the
// stand-in's interrupt when data arrives through the real lwproxy, and the
// page's configuration and isolation messages. It also measures the wake-up
// latency of the interrupt path against the timer path (HZ=100 ticks): the
// glue's latency, not a real kernel's.
//
// Query: ?proxy=PORT&target=PORT, or ?plain=1 when served without COOP/COEP.
import { LWHOST_WASM_IRQ } from "/lwnet/js/lwabi.js";
import { importedMemoryLimits } from "/lwnet/js/shim.js";
import { check, finish, log } from "/test/checks.js";

const params = new URLSearchParams(location.search);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` every 20 ms until it returns a truthy value or `ms` pass. */
async function until(fn, ms) {
  const end = performance.now() + ms;
  for (;;) {
    const v = fn();
    if (v || performance.now() > end) return v;
    await sleep(20);
  }
}

/** Loads `src` in an iframe; resolves with its window once lwnetPage settles. */
async function loadSite(src) {
  const frame = document.createElement("iframe");
  frame.src = src;
  document.body.appendChild(frame);
  await new Promise((r) => { frame.onload = r; });
  const w = frame.contentWindow;
  await until(() => w.lwnetPage && !["starting", "booting"].includes(w.lwnetPage.state), 30000);
  return w;
}

/** One HTTP GET through the glue, from a fake kernel task in its own worker. */
async function httpTask(host, task) {
  const bytes = await (await fetch("/lwnet/wasm/lwnet_fake_kernel.wasm")).arrayBuffer();
  const fakeKernel = await WebAssembly.compile(bytes);
  return new Promise((resolve) => {
    const w = new Worker("/test/fake-kernel-worker.js", { type: "module" });
    const timer = setTimeout(() => { w.terminate(); resolve({ error: "task timed out" }); }, 30000);
    w.onmessage = (ev) => { if (ev.data.done) { clearTimeout(timer); w.terminate(); resolve(ev.data.result); } };
    w.postMessage({ init: host.workerInit(), fakeKernel, limits: importedMemoryLimits(bytes), task });
  });
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const summary = (xs) => ({
  n: xs.length, p50: +quantile(xs, 0.5).toFixed(3), p95: +quantile(xs, 0.95).toFixed(3),
  mean: +(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(3),
});

/**
 * Rings the guest doorbell as the main side does when it posted data or
 * readiness, SAMPLES times at random phases, and records how long the
 * interrupt worker took to call raise_interrupt and how long a 10 ms tick
 * took to notice. Both see the same rings.
 */
async function measure(host, SAMPLES) {
  const { memory, layout } = host.workerInit();
  const words = new Int32Array(memory.buffer);
  const bell = (layout.region + layout.guest_doorbell) >> 2;
  const shared = new SharedArrayBuffer(16);
  const tickCount = new Int32Array(shared, 0, 2), tickAt = new Float64Array(shared, 8, 1);
  const ticker = new Worker("/test/tick-worker.js");
  ticker.postMessage({ shimMemory: memory, bell, shared });
  await sleep(50);
  const irqMs = [], tickMs = [];
  for (let i = 0; i < SAMPLES; i++) {
    await sleep(5 + Math.random() * 15);
    const irqBefore = host.irqStats().raised, tickBefore = Atomics.load(tickCount, 0);
    const t0 = performance.timeOrigin + performance.now();
    Atomics.add(words, bell, 1);
    Atomics.notify(words, bell);
    const done = await until(() => host.irqStats().raised > irqBefore && Atomics.load(tickCount, 0) > tickBefore, 2000);
    if (!done) continue;
    irqMs.push(host.irqStats().lastRaiseAt - t0);
    tickMs.push(tickAt[0] - t0);
  }
  ticker.terminate();
  return { irq: summary(irqMs), timer: summary(tickMs) };
}

async function isolated() {
  const proxy = `ws://127.0.0.1:${params.get("proxy")}/`;
  // lwnet.json beside the page names the proxy (the test's build wrote it).
  const w = await loadSite("/site/index.html");
  const page = w.lwnetPage;
  check("site_page_running", page.state === "running", `${page.state} ${page.error || ""}`);
  if (page.state !== "running") return;
  check("site_config_from_json", page.config.proxyUrl === proxy, page.config.proxyUrl);

  const booted = await until(() => page.log.filter((l) => / vmlinux instantiated$/.test(l)).length >= 2, 20000);
  const problems = page.log.filter((l) => /Error/.test(l));
  check("site_no_link_error", booted && problems.length === 0, { log: page.log.slice(-6), problems });

  const shown = await until(() => w.document.getElementById("lwnet-proxy").dataset.state === "open", 10000);
  check("site_proxy_indicator", shown, w.document.getElementById("lwnet-proxy").textContent);

  const host = page.host;
  const running = await until(() => host.irqStats() && host.irqStats().state === "running", 10000);
  check("irq_worker_running", running, host.irqStats());
  if (!running) return;

  // Data arriving through the real proxy raises the fake kernel's
  // interrupt: the fake vmlinux counts raise_interrupt(cpu, irq) calls at
  // byte 1024 + 4 * irq and stores the cpu at byte 1020.
  const kernel = new Int32Array(page.os.memory.buffer);
  const counter = (1024 + 4 * LWHOST_WASM_IRQ) >> 2;
  const before = Atomics.load(kernel, counter), raisedBefore = host.irqStats().raised;
  const r = await httpTask(host, { kind: "http", host: "127.0.0.1", port: Number(params.get("target")), path: "/hello" });
  const got = await until(() => Atomics.load(kernel, counter) > before, 5000);
  check("irq_raised_on_data", r.n > 0 && /lwnet browser test/.test(r.text) && got &&
    Atomics.load(kernel, 1020 >> 2) === 1 &&
    Atomics.load(kernel, counter) - before === host.irqStats().raised - raisedBefore,
  { http: r.n, error: r.error, raised: Atomics.load(kernel, counter) - before, cpu: Atomics.load(kernel, 1020 >> 2) });

  const m = await measure(host, 60);
  log(`wake-up latency (ms): interrupt ${JSON.stringify(m.irq)}, timer ${JSON.stringify(m.timer)}`);
  check("irq_faster_than_timer", m.irq.n >= 50 && m.timer.n >= 50 && m.irq.p50 < m.timer.p50, m);

  // Query parameters override lwnet.json, and are validated.
  const bad = await loadSite("/site/index.html?proxy=not-a-url");
  check("site_bad_proxy_refused", bad.lwnetPage.state === "failed" && /not a URL/.test(bad.lwnetPage.error),
    bad.lwnetPage.error || bad.lwnetPage.state);
}

async function plain() {
  const w = await loadSite("/plain/site/index.html");
  const page = w.lwnetPage;
  const shown = !w.document.getElementById("lwnet-error").hidden;
  check("site_says_not_isolated", page.state === "no-isolation" && shown &&
    /Cross-Origin-Opener-Policy: same-origin/.test(page.error) && /Cross-Origin-Embedder-Policy: require-corp/.test(page.error),
  page.error || page.state);
}

(params.get("plain") ? plain() : isolated())
  .catch((e) => check("site_test_ran", false, String(e && e.stack || e)))
  .finally(finish);
