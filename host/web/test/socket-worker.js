// SPDX-License-Identifier: GPL-2.0-only
// `./linux-wasm.sh bench host`: the browser ceiling for lwhost-web's reads. The bare
// WebSocket read loop (socket-read.js) in a dedicated worker (the thread kind lwhost-web's
// network side runs on), against the same lwproxy stream, asking for the largest window the
// proxy grants (MAX_WINDOW, from protocol.js, generated from proxy/src/protocol.rs).
// Message in: { proxyUrl, target, bytes }; out: { done, result }.
import { MAX_WINDOW } from "/lwnet/js/protocol.js";
import { readThroughProxy } from "./socket-read.js";

self.onmessage = async (ev) => {
  const { proxyUrl, target, bytes } = ev.data;
  const result = await readThroughProxy({ proxyUrl, target, bytes, window: MAX_WINDOW });
  self.postMessage({ done: true, result });
};
