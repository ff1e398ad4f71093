// SPDX-License-Identifier: GPL-2.0-only
// The browser test of lwhost's browser half. Phase 1 attaches the main side
// (main.js) to the real lwproxy, runs fake kernel tasks in workers
// through the real glue (worker.js), then reloads the page; phase 2 reads
// the store back. Results go to window.lwResults (read by chromium.py).
import { attachLwnet, persistenceText } from "/lwnet/js/main.js";
import { ProxyLink, WindowTuner, ackBatch } from "/lwnet/js/link.js";
import { CONN, RegionAccess } from "/lwnet/js/region.js";
import { E, importedMemoryLimits } from "/lwnet/js/shim.js";
import { IdbStore } from "/lwnet/js/store.js";
import { MAX_WINDOW, WINDOW } from "/lwnet/js/protocol.js";
import { LWHOST_STORE_COMMIT, LWHOST_STORE_FLAGS_ALL, LWHOST_STORE_LAZY, LWHOST_STORE_TRUNC } from "/lwnet/js/lwabi.js";
import { check, finish, log, results } from "/test/checks.js";

const params = new URLSearchParams(location.search);
const proxyPort = Number(params.get("proxy"));
const targetPort = Number(params.get("target"));
const deniedPort = Number(params.get("denied"));
const marker = params.get("marker");
const authProxyPort = Number(params.get("authproxy"));
const token = params.get("token");
const phase = params.get("phase") || "1";
const DB = "lwnet-browser-test";

async function loadStandin() {
  const bytes = await (await fetch("/lwnet/wasm/lwnet_fake_kernel.wasm")).arrayBuffer();
  return { fakeKernel: await WebAssembly.compile(bytes), limits: importedMemoryLimits(bytes) };
}

/** Runs one task in a fresh worker; resolves with its result. */
function runTask(host, mod, task, onMessage) {
  return new Promise((resolve) => {
    const w = new Worker("/test/fake-kernel-worker.js", { type: "module" });
    const timer = setTimeout(() => { w.terminate(); resolve({ error: "task timed out" }); }, 60000);
    w.onmessage = (ev) => {
      if (ev.data.done) { clearTimeout(timer); w.terminate(); resolve(ev.data.result); }
      else if (onMessage) onMessage(ev.data);
    };
    w.onerror = (e) => { clearTimeout(timer); w.terminate(); resolve({ error: "worker error: " + e.message }); };
    w.postMessage({ init: host.workerInit(), ...mod, task });
  });
}

/**
 * Reads `bytes` through the proxy in a fake kernel task while this (the
 * page's main) thread spins for up to `maxMs` without yielding: the task
 * connects, reads and finishes in that time only if nothing on the way
 * (region service, WebSocket) needs the page's main thread.
 * @returns {doneWhileBusy, busyMs, read: the task's bench_read result}
 */
async function readWhileMainThreadBusy(host, mod, t, bytes, maxMs) {
  const gate = new Int32Array(new SharedArrayBuffer(8));
  let ready;
  const isReady = new Promise((r) => { ready = r; });
  const result = runTask(host, mod, { kind: "bench_read", ...t, bytes, gate }, (m) => { if (m.ready) ready(); });
  await isReady;
  const t0 = performance.now();
  Atomics.store(gate, 0, 1);
  Atomics.notify(gate, 0);
  while (Atomics.load(gate, 1) === 0 && performance.now() - t0 < maxMs) { /* the page's main thread is busy */ }
  const busyMs = performance.now() - t0, doneWhileBusy = Atomics.load(gate, 1) === 1;
  return { doneWhileBusy, busyMs: Math.round(busyMs), read: await result };
}

/**
 * ProxyLink.pumpRx (link.js) over a scratch region with `frames` 64 KiB
 * frames queued for slot 0, while a simulated guest reader drains the ring
 * up to the published head during every copy into it.
 * @returns {queued: frames left queued, delivered: bytes the reader took, used: bytes left in the ring}
 */
/**
 * A ProxyLink's methods over a one-slot region of layout `L`, without a worker or a socket:
 * `sent` collects the control messages it sends.
 */
function simulatedLink(L) {
  const buf = new SharedArrayBuffer(L.region + L.conn_base + L.conn_stride);
  const sent = [];
  const side = { L, sent, i32: new Int32Array(buf), u8: new Uint8Array(buf), stats: { acksOut: 0, rxWindowMax: 0 },
    binary: false, socketState: "open", ws: { send: (m) => sent.push(JSON.parse(m)) }, conns: [null], byId: new Map(),
    ringGuest() {} };
  for (const part of [RegionAccess, ProxyLink]) {
    for (const name of Object.getOwnPropertyNames(part.prototype)) if (name !== "constructor") side[name] = part.prototype[name];
  }
  return side;
}

/**
 * A failure found on the browser side (a ring the worker side corrupted, a connect timeout)
 * closes the connection at the proxy once, and releasing the slot later sends nothing more.
 */
function localFailureCloses(L) {
  const cases = [];
  for (const kind of ["corrupt_rx_ring", "connect_timeout"]) {
    const side = simulatedLink(L);
    const c = { id: 7, openSent: true, closedByPeer: false, closeSent: false, timer: null, ackTimer: null,
      rxQueue: [new Uint8Array(16)], rxUnacked: 0, eofPending: false, eofSet: false };
    side.conns[0] = c;
    side.byId.set(7, 0);
    if (kind === "corrupt_rx_ring") {
      side.set(0, L.conn_state, CONN.OPEN);
      side.set(0, L.conn_rx_head, L.ring_size + 1); // more used than the ring holds
      side.pumpRx(0, c);
    } else {
      side.set(0, L.conn_state, CONN.CONNECTING);
      side.connectTimedOut(0, 7);
    }
    const error = side.get(0, L.conn_error), closesAtFail = side.sent.length;
    side.release(0);
    cases.push({ kind, error, closesAtFail, closes: side.sent.filter((m) => m.t === "close" && m.id === 7).length,
      sent: side.sent.length });
  }
  return cases;
}

function pumpWhileDraining(L, frames) {
  const side = simulatedLink(L);
  const real = side.u8;
  let delivered = 0;
  side.u8 = {
    set(src, at) {
      real.set(src, at);
      const head = side.get(0, L.conn_rx_head), tail = side.get(0, L.conn_rx_tail);
      delivered += (head - tail) >>> 0;
      side.set(0, L.conn_rx_tail, head);
    },
  };
  const c = { rxQueue: [], rxUnacked: 0, eofPending: false, eofSet: false };
  for (let f = 0; f < frames; f++) c.rxQueue.push(new Uint8Array(65536));
  side.pumpRx(0, c);
  const used = (side.get(0, L.conn_rx_head) - side.get(0, L.conn_rx_tail)) >>> 0;
  delivered += used;
  return { queued: c.rxQueue.length, delivered, used };
}

async function waitSocket(host) {
  for (let i = 0; i < 100 && host.stats().socket !== "open"; i++) await new Promise((r) => setTimeout(r, 100));
  return host.stats().socket;
}

async function phase1() {
  check("cross_origin_isolated", self.crossOriginIsolated, String(self.crossOriginIsolated));
  await new Promise((r) => { const d = indexedDB.deleteDatabase(DB); d.onsuccess = d.onerror = d.onblocked = r; });
  const host = await attachLwnet({ proxyUrl: `ws://127.0.0.1:${proxyPort}/`, storeName: DB, log });
  const mod = await loadStandin();
  check("attach_proxy_v2", (await waitSocket(host)) === "open", host.stats().socket);
  // attachLwnet asked for persistent storage; the page shows what the browser answered.
  const persisted = await navigator.storage.persisted();
  const shown = document.getElementById("lwnet-storage").textContent;
  check("storage_persistence_shown", host.persisted === persisted && shown === persistenceText(persisted, true),
    { persisted, reported: host.persisted, shown });

  const t = { host: "127.0.0.1", port: targetPort };
  const get = await runTask(host, mod, { kind: "http", ...t, path: "/hello" });
  check("http_via_proxy", get.n > 0 && get.text.startsWith("HTTP/1.0 200") && get.text.includes(marker), { n: get.n, head: (get.text || get.error || "").slice(0, 80) });

  const many = await Promise.all([1, 2, 3, 4].map(() => runTask(host, mod, { kind: "http", ...t, path: "/hello" })));
  check("http_four_workers_at_once", many.every((r) => r.n > 0 && r.text.includes(marker)), many.map((r) => r.n ?? r.error));

  const big = await runTask(host, mod, { kind: "bench_read", ...t, bytes: 4 << 20 });
  check("bulk_4mib_flow_control", big.bytes > 4 << 20 && big.bytes < (4 << 20) + 1024, big);
  const linkBefore = host.stats();
  const busy = await readWhileMainThreadBusy(host, mod, t, 8 << 20, 10000);
  check("link_off_main_thread", busy.doneWhileBusy && busy.read.bytes > 8 << 20 && busy.read.bytes < (8 << 20) + 1024, busy);
  // Acks go back in batches that grow with the window (ackBatch in link.js), not one per
  // frame, and the 8 MiB above still arrived whole: at most half as many acks as frames.
  const linkAfter = host.stats();
  const acks = linkAfter.acksOut - linkBefore.acksOut, frames = linkAfter.framesIn - linkBefore.framesIn;
  const batches = [ackBatch(1), ackBatch(4096), ackBatch(WINDOW), ackBatch(MAX_WINDOW)];
  check("acks_batched_by_window", acks > 0 && acks * 2 <= frames && busy.read.bytes > 8 << 20 &&
    batches.join() === [1, 4096, 65536, MAX_WINDOW / 4].join(), { acks, frames, batches });
  // A proxy that keeps the window of `opened` whatever the acks ask (test/source-worker.js with
  // fixed=1, as lwproxy before the ack's `window` field): acks held back for the window this
  // side grew still go out (ACK_DELAY_MS), so 8 MiB arrive whole instead of stalling at 256 KiB.
  const fixed = await attachLwnet({ proxyUrl: `ws://127.0.0.1:${proxyPort}/`, storeName: DB + "-fixed-window",
    socketModule: `/test/in-page-socket.js?bytes=${8 << 20}&fixed=1` });
  await waitSocket(fixed);
  const viaFixed = await runTask(fixed, mod, { kind: "bench_read", ...t, bytes: 8 << 20 });
  check("fixed_window_proxy_not_stalled", viaFixed.bytes === 8 << 20 && fixed.stats().rxWindowMax > WINDOW,
    { read: viaFixed, rxWindowMax: fixed.stats().rxWindowMax });
  await fixed.close();
  // A reader that drains the ring while the link fills it (its tail moves during each copy)
  // must not strand queued data behind a ring that only looked full: the guest wakes the
  // link again only when the ring drains past half, so 6 queued frames all reach the ring.
  const failed = localFailureCloses(host.workerInit().layout);
  check("local_failure_closes_at_proxy", failed.length === 2 && failed.every((f) => f.closesAtFail === 1 && f.closes === 1 &&
    f.sent === 1) && failed[0].error === E.EIO && failed[1].error === E.ETIMEDOUT, failed);
  const stranded = pumpWhileDraining(host.workerInit().layout, 6);
  check("rx_pump_rereads_tail", stranded.queued === 0 && stranded.delivered === 6 * 65536, stranded);
  // The page's window autotuning (WindowTuner in link.js) grew the window while the reader kept up.
  // The same rule, deterministic (the cases of protocol.rs's tuner tests): a reader that keeps
  // up with a window-limited stream grows the window to the cap, with 1 ms round trips and with
  // round trips that vary and lengthen with the window; one that drains 16 KiB per ms leaves it
  // alone, whether the data sits there or the proxy refills the window as acks return.
  const windowLimited = (rtt, rounds) => {
    const t = new WindowTuner(WINDOW, 0), seen = [];
    let now = 0;
    for (let round = 0; round < rounds; round++) {
      const w = t.window, r = rtt(round, w), frames = Math.ceil(w / 65536);
      for (let f = 0; f < frames; f++) {
        const at = now + f * r / frames, n = Math.min(65536, w - f * 65536);
        t.onReceived(n, at);
        const g = t.onConsumed(n, at);
        if (g !== null) seen.push(g);
      }
      now += r;
    }
    return seen;
  };
  const toCap = (seen) => seen.at(-1) === MAX_WINDOW && seen.every((w, i) => i === 0 || w > seen[i - 1]);
  const fastSeen = windowLimited(() => 1, 20);
  const jitter = [1, 4, 2, 3], variedSeen = windowLimited((r, w) => jitter[r % 4] + w / 65536, 30);
  const slow = new WindowTuner(WINDOW, 0);
  for (let i = 0; i < 8; i++) slow.onReceived(WINDOW / 4, i * 0.25);
  let slowGrew = false;
  for (let ms = 1; ms < 200; ms++) slowGrew ||= slow.onConsumed(16384, ms) !== null;
  const paced = new WindowTuner(WINDOW, 0);
  let sent = 0, arriving = 0;
  for (let ms = 0; ms < 1000; ms++) {
    paced.onReceived(arriving, ms);
    slowGrew ||= paced.onConsumed(Math.min(16384, paced.received - paced.consumed), ms) !== null;
    arriving = paced.window - (sent - paced.consumed);
    sent += arriving;
  }
  check("window_tuner_rule", toCap(fastSeen) && toCap(variedSeen) && !slowGrew && slow.window === WINDOW && paced.window === WINDOW,
    { fastSeen, variedSeen, slow: slow.window, paced: paced.window });
  const grown = host.stats().rxWindowMax;
  check("window_grows_while_reader_keeps_up", grown > WINDOW && grown <= MAX_WINDOW, { rxWindowMax: grown, WINDOW, MAX_WINDOW });

  const denied = await runTask(host, mod, { kind: "http", host: "127.0.0.1", port: deniedPort, path: "/" });
  check("policy_denial_is_eacces", denied.n === -13, { n: denied.n });

  const st = await runTask(host, mod, { kind: "store" });
  check("store_put_get", st.put_blob === 0 && st.put_small === 0 && st.get_blob_equal, st);
  check("store_list", JSON.stringify(st.list) === JSON.stringify(["lwtest/dir/blob", "lwtest/dir/small"]), st.list);
  check("store_delete", st.delete_small === 0 && st.get_deleted === -2 && st.delete_missing === -2
    && JSON.stringify(st.list_after_delete) === JSON.stringify(["lwtest/dir/blob"]), st);
  check("store_rejects_dotdot_key", st.put_bad_key === -22, { put_bad_key: st.put_bad_key });
  check("store_put_persist", st.put_persist === 0, { put_persist: st.put_persist });

  await storeSemantics();

  const h = await runTask(host, mod, { kind: "hostile", ...t });
  const want = {
    read_past_end: -14, read_wrapping: -14, write_past_end: -14, write_negative_len: -22, read_null: -14,
    open_host_past_end: -14, open_unterminated: -14, open_bad_port: -22, open_bad_flags: -22,
    read_bad_id: -9, poll_bad_id: -9, poll_stale_gen: -9, shutdown_bad_id: -9, store_req_past_end: -14,
    store_key_past_end: -14, store_key_too_long: -36, store_poll_bad_ticket: -9, store_poll_past_end: -14,
    store_poll_huge_len: -14, store_write_over_buf: -22, store_read_over_buf: -22, store_list_over_buf: -22,
    open_huge_host_len: -14,
    poll_closed: -9,
  };
  const wrong = Object.entries(want).filter(([k, v]) => h[k] !== v).map(([k, v]) => `${k}=${h[k]} (want ${v})`);
  check("hostile_pointers_and_ids", h.connect >= 0 && h.poll_after > 0 && wrong.length === 0, wrong.length ? wrong.join(", ") : h);

  const reset = await runTask(host, mod, { kind: "reset", ...t }, (m) => { if (m.holding) host.reconnect(); });
  check("proxy_loss_is_econnreset", reset.first > 0 && reset.after_reset === -104, reset);
  await waitSocket(host);
  const again = await runTask(host, mod, { kind: "http", ...t, path: "/hello" });
  check("reconnect_after_loss", again.n > 0 && again.text.includes(marker), { n: again.n, socket: host.stats().socket });

  // A proxy that requires a token: it travels as the bearer.<JWT>
  // subprotocol (the server picks lwproxy.v2); a bad one is refused.
  const authed = await attachLwnet({ proxyUrl: `ws://127.0.0.1:${authProxyPort}/`, token, storeName: DB + "-auth", log });
  const viaToken = await runTask(authed, mod, { kind: "http", ...t, path: "/hello" });
  check("token_as_subprotocol", viaToken.n > 0 && viaToken.text.includes(marker) && authed.stats().socket === "open",
    { n: viaToken.n, socket: authed.stats().socket });
  authed.close();
  const forged = await attachLwnet({ proxyUrl: `ws://127.0.0.1:${authProxyPort}/`, token: token.slice(0, -4) + "AAAA", storeName: DB + "-forged", log });
  const viaForged = await runTask(forged, mod, { kind: "http", ...t, path: "/hello" });
  check("bad_token_refused", viaForged.n === -E.ECONNREFUSED, { n: viaForged.n, socket: forged.stats().socket });
  forged.close();

  // Every worker above has ended: the main side must have taken their
  // thread slots back (their Web Locks were released).
  const before = host.threadSlotsInUse();
  let inUse = before;
  for (let i = 0; i < 40 && inUse > 0; i++) { await new Promise((r) => setTimeout(r, 250)); inUse = host.threadSlotsInUse(); }
  check("thread_slots_reclaimed", inUse === 0, { before, after: inUse });

  // One writer per store, whichever worker holds the link: a second attach of
  // the same database (as another tab's would be) reads but may not write
  // until the first detaches; then its link worker becomes the writer.
  const second = await attachLwnet({ proxyUrl: `ws://127.0.0.1:${proxyPort}/`, storeName: DB, log });
  const firstWriter = host.stats().storeWriter, secondBefore = second.stats().storeWriter;
  const busyStore = await runTask(second, mod, { kind: "store" });
  await host.close();
  let secondAfter = 0;
  for (let i = 0; i < 50 && !secondAfter; i++) { await new Promise((r) => setTimeout(r, 100)); secondAfter = second.stats().storeWriter; }
  await second.close();
  check("store_one_writer_link", firstWriter === 1 && secondBefore === 0 && busyStore.put_blob === -E.EBUSY
    && busyStore.put_persist === -E.EBUSY && busyStore.get_blob_equal && secondAfter === 1,
  { firstWriter, secondBefore, put_blob: busyStore.put_blob, put_persist: busyStore.put_persist, read: busyStore.get_blob_equal, secondAfter });
  localStorage.setItem("lwtest.phase1", JSON.stringify(results));
  const next = new URL(location.href);
  next.searchParams.set("phase", "2");
  location.replace(next.href); // a real reload: a new document, a new main side
}

/** The store's rules, straight on the IndexedDB backend (a small quota). */
async function storeSemantics() {
  await new Promise((r) => { const d = indexedDB.deleteDatabase(DB + "-sem"); d.onsuccess = d.onerror = d.onblocked = r; });
  const st = await IdbStore.open(DB + "-sem", { quotaBytes: 1000 });
  const b = (s) => new TextEncoder().encode(s);
  const run = (op, key, extra = {}) => st.run({ op, flags: 0, key: b(key), after: new Uint8Array(0), offset: 0, data: new Uint8Array(0), capacity: 0, ...extra });
  const out = {};
  out.commit_v1 = (await run(1, "k", { flags: 3, data: b("old") })).result;
  out.pending_chunk = (await run(1, "k", { flags: 1, data: b("new-") })).result;
  out.read_while_pending = new TextDecoder().decode((await run(2, "k", { capacity: 64 })).data);
  out.wrong_offset = (await run(1, "k", { offset: 99, data: b("x") })).result;
  out.commit_v2 = (await run(1, "k", { flags: 2, offset: 4, data: b("value") })).result;
  out.read_after_commit = new TextDecoder().decode((await run(2, "k", { capacity: 64 })).data);
  out.over_quota = (await run(1, "big", { flags: 3, data: new Uint8Array(2000) })).result;
  for (const k of ["a/1", "a/2", "a/3"]) await run(1, k, { flags: 3, data: b(k) });
  const page1 = await run(5, "a/", { capacity: 8 });
  const cursor = new TextDecoder().decode(page1.data).split("\0").filter(Boolean).pop();
  const page2 = await run(5, "a/", { capacity: 64, after: b(cursor) });
  out.list_pages = [new TextDecoder().decode(page1.data), new TextDecoder().decode(page2.data)];
  out.list_too_small = (await run(5, "a/", { capacity: 2 })).result;
  out.list_cursor_elsewhere = (await run(5, "a/", { capacity: 64, after: b("zzz") })).result;
  out.bad_keys = [(await run(3, "/abs")).result, (await run(3, "a//b")).result, (await run(3, "a/./b")).result,
    (await run(3, "x".repeat(513))).result];
  out.commit_durability = st.lastCommitDurability;
  // LAZY (lwhost.h): published at once in a relaxed transaction; the next
  // strict one flushes it. A flag bit outside FLAGS_ALL is EINVAL.
  const lazy = LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT | LWHOST_STORE_LAZY;
  out.lazy_commit = (await run(1, "lazy", { flags: lazy, data: b("z") })).result;
  out.lazy_durability = st.lastCommitDurability;
  out.lazy_read = new TextDecoder().decode((await run(2, "lazy", { capacity: 8 })).data);
  out.unknown_flag = (await run(1, "lazy", { flags: (LWHOST_STORE_FLAGS_ALL + 1) | 3, data: b("y") })).result;
  // A second opener of the database (as another tab would be) reads but may
  // not write until the first closes; then the Web Lock passes to it.
  const other = await IdbStore.open(DB + "-sem", { quotaBytes: 1000 });
  const run2 = (op, key, extra = {}) => other.run({ op, flags: 0, key: b(key), after: new Uint8Array(0), offset: 0, data: new Uint8Array(0), capacity: 0, ...extra });
  out.second_write = (await run2(1, "k2", { flags: 3, data: b("x") })).result;
  out.second_delete = (await run2(4, "k")).result;
  out.second_read = new TextDecoder().decode((await run2(2, "k", { capacity: 64 })).data);
  // A third opener queues for the lock too, then closes before its turn: it must
  // never become the writer, and the lock stays free for the next opener.
  let quitterWriter = false;
  const quitter = await IdbStore.open(DB + "-sem", { quotaBytes: 1000, onWriter: (w) => { quitterWriter = quitterWriter || w; } });
  quitter.close();
  st.close();
  for (let i = 0; i < 50 && !other.writer; i++) await new Promise((r) => setTimeout(r, 50));
  out.second_write_after_close = (await run2(1, "k2", { flags: 3, data: b("x") })).result;
  other.close();
  await new Promise((r) => setTimeout(r, 200));
  out.closed_while_queued_became_writer = quitterWriter || quitter.writer;
  const next = await IdbStore.open(DB + "-sem", { quotaBytes: 1000 });
  out.lock_free_after_all_closed = next.writer;
  next.close();
  check("store_atomic_commit", out.commit_v1 === 3 && out.pending_chunk === 4 && out.read_while_pending === "old"
    && out.wrong_offset === -22 && out.commit_v2 === 5 && out.read_after_commit === "new-value", out);
  check("store_quota_enospc", out.over_quota === -28, { over_quota: out.over_quota });
  check("store_list_cursor", out.list_pages[0] === "a/1\0a/2\0" && out.list_pages[1] === "a/3\0"
    && out.list_too_small === -34 && out.list_cursor_elsewhere === 0, out);
  check("store_commit_durability_strict", out.commit_durability === "strict", { commit_durability: out.commit_durability });
  check("store_lazy_commit_relaxed", out.lazy_commit === 1 && out.lazy_durability === "relaxed" && out.lazy_read === "z"
    && out.unknown_flag === -22, out);
  check("store_one_writer_tab", out.second_write === -16 && out.second_delete === -16 && out.second_read === "new-value"
    && out.second_write_after_close === 1 && out.closed_while_queued_became_writer === false
    && out.lock_free_after_all_closed === true, out);
  check("store_key_rules", JSON.stringify(out.bad_keys) === JSON.stringify([-22, -22, -22, -36]), out.bad_keys);
}

async function phase2() {
  Object.assign(results, JSON.parse(localStorage.getItem("lwtest.phase1") || "{}"));
  const host = await attachLwnet({ proxyUrl: `ws://127.0.0.1:${proxyPort}/`, storeName: DB, log });
  const mod = await loadStandin();
  const v = await runTask(host, mod, { kind: "verify" });
  check("store_survives_reload", v.equal && v.get === 150000, v);
  check("store_list_after_reload", JSON.stringify(v.list) === JSON.stringify(["lwtest/dir/blob", "lwtest/persist"]), v.list);
  check("store_schema_versioned", host.storeSchema.version === 1 && host.storeSchema.objectStores.join() === "chunks,meta,pending,values",
    host.storeSchema);
  host.close();
}

(async () => {
  try {
    if (phase === "1") await phase1();
    else await phase2();
  } catch (e) {
    check("page_" + phase + "_exception", false, String(e && e.stack || e));
  }
  if (phase !== "1" || Object.keys(results).some((k) => k.startsWith("page_"))) {
    finish();
  }
})();
