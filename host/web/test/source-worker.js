// SPDX-License-Identifier: GPL-2.0-only
// For `bench host`: a stand-in for lwproxy's side of the socket, in its own
// thread as the browser's network service is: speaks lwproxy.v2 (opened,
// 64 KiB binary data frames, the 256 KiB window, acks, eof) over a
// MessagePort, streaming `bytes` for each connection once its request
// arrives. It takes the network stack out of the measurement.
let port = null, bytes = 0;
const streams = new Map();

function emit(data) {
  port.postMessage(data, typeof data === "string" ? [] : [data]);
}

function pump(id) {
  const s = streams.get(id);
  while (s && s.started && s.left > 0 && s.unacked + 65536 <= 262144) {
    const n = Math.min(65536, s.left);
    const frame = new Uint8Array(4 + n);
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

self.onmessage = (ev) => {
  ({ port, bytes } = ev.data);
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
      streams.set(m.id, { left: bytes, unacked: 0, started: false, eofSent: false });
      emit(JSON.stringify({ t: "opened", id: m.id }));
    } else if (m.t === "ack") {
      const s = streams.get(m.id);
      if (s) { s.unacked -= m.bytes; pump(m.id); }
    } else if (m.t === "close") {
      streams.delete(m.id);
    }
  };
};
