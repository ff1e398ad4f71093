// SPDX-License-Identifier: GPL-2.0-only
// For `bench host` and the browser checks: a stand-in for lwproxy's side of
// the socket, in its own thread as the browser's network service is. It
// speaks lwproxy.v2 (opened, 64 KiB binary data frames, the proxy-to-client
// window, acks, eof) over a MessagePort, streaming `bytes` for each
// connection once its request arrives. It takes the network stack out of the
// measurement.
//
// Flow control follows docs/protocol.md as lwproxy does: the window offered in
// `open` is granted up to MAX_WINDOW (WINDOW when none is offered) and a
// `window` in an ack raises it, never lowers it. With `fixedWindow` it plays a
// proxy older than those fields: `opened` carries no window and the window
// stays WINDOW whatever the acks ask.
import { BINARY_HEADER, FRAME_MAX, MAX_WINDOW, WINDOW } from "/lwnet/js/protocol.js";

let port = null, bytes = 0, fixedWindow = false;
const streams = new Map();

function emit(data) {
  port.postMessage(data, typeof data === "string" ? [] : [data]);
}

function pump(id) {
  const s = streams.get(id);
  while (s && s.started && s.left > 0 && s.unacked + Math.min(FRAME_MAX, s.left) <= s.window) {
    const n = Math.min(FRAME_MAX, s.left);
    const frame = new Uint8Array(BINARY_HEADER + n);
    new DataView(frame.buffer).setUint32(0, id);
    s.left -= n;
    s.unacked += n;
    emit(frame.buffer);
  }
  if (s && s.started && s.left === 0 && !s.eofSent) {
    s.eofSent = true;
    emit(JSON.stringify({ t: "eof", id }));
  }
}

/** A client's window field: a positive integer capped at MAX_WINDOW, else null. */
function offered(w) {
  return Number.isSafeInteger(w) && w > 0 ? Math.min(w, MAX_WINDOW) : null;
}

self.onmessage = (ev) => {
  ({ port, bytes, fixedWindow } = ev.data);
  port.onmessage = (e) => {
    const data = e.data;
    if (typeof data !== "string") { // the request: stream the body
      const id = new DataView(data).getUint32(0);
      const s = streams.get(id);
      if (s) { s.started = true; pump(id); }
      return;
    }
    const m = JSON.parse(data);
    if (m.t === "open") {
      const window = fixedWindow ? WINDOW : offered(m.window) ?? WINDOW;
      streams.set(m.id, { left: bytes, unacked: 0, window, started: false, eofSent: false });
      emit(JSON.stringify(fixedWindow ? { t: "opened", id: m.id } : { t: "opened", id: m.id, window }));
    } else if (m.t === "ack") {
      const s = streams.get(m.id);
      if (!s) return;
      s.unacked -= m.bytes;
      const w = offered(m.window);
      if (!fixedWindow && w !== null && w > s.window) s.window = w;
      pump(m.id);
    } else if (m.t === "close") {
      streams.delete(m.id);
    }
  };
};
