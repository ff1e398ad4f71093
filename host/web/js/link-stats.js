// SPDX-License-Identifier: GPL-2.0-only
// The link's counters and socket state, in a SharedArrayBuffer the link
// worker (link-worker.js) writes and the page (main.js) reads at any time
// without a message: host.stats() and the page's "proxy connected" line
// stay synchronous although the link runs on another thread.

/** The counters, in the order of their Float64 words. rxWindowMax: the
 * largest proxy-to-client window a connection advertised (WindowTuner);
 * acksOut: `ack` messages sent to the proxy for its data (link.js, ackBatch);
 * storeWriter: 1 while this link worker holds the store's writer lock
 * (store.js: one writer per database across the origin's tabs), else 0. */
export const STAT_NAMES = Object.freeze([
  "pumps", "framesIn", "framesOut", "bytesIn", "bytesOut", "reconnects", "storeOps", "rxWindowMax", "storeWriter",
  "acksOut",
]);
/** The socket's states; the word after the counters holds the index. */
export const SOCKET_STATES = Object.freeze(["down", "connecting", "open"]);

const SOCKET_WORD = STAT_NAMES.length;

/** A buffer for the counters and the socket state (all zero: "down"). */
export function newStatsBuffer() {
  return new SharedArrayBuffer((STAT_NAMES.length + 1) * 8);
}

/**
 * An object over `buffer` with one number property per counter (reads and
 * writes go to the buffer) and `socket` (one of SOCKET_STATES). Only the
 * link worker writes; a reader on another thread may see a counter one
 * update behind (plain, not atomic, words: they are for display and tests).
 */
export function statsView(buffer) {
  const words = new Float64Array(buffer);
  const view = {};
  STAT_NAMES.forEach((name, i) => {
    Object.defineProperty(view, name, { get: () => words[i], set: (v) => { words[i] = v; }, enumerable: true });
  });
  Object.defineProperty(view, "socket", {
    get: () => SOCKET_STATES[words[SOCKET_WORD]] ?? "down",
    set: (state) => {
      const i = SOCKET_STATES.indexOf(state);
      if (i < 0) throw new Error(`unknown socket state ${state}`);
      words[SOCKET_WORD] = i;
    },
    enumerable: true,
  });
  return view;
}
