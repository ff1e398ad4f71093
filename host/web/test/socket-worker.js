// SPDX-License-Identifier: GPL-2.0-only
// `./linux-wasm.sh bench host`: the browser ceiling for lwhost-web's reads. A bare
// WebSocket read loop in a dedicated worker (the thread kind lwhost-web's network side
// runs on), against the same lwproxy stream: lwproxy.v2, the largest window the proxy
// grants (it caps the offer; the window is defined once, in proxy/src/protocol.rs), an
// ack per frame, nothing else. Message in: { proxyUrl, target, bytes }; out: { done, result }.
self.onmessage = (ev) => {
  const { proxyUrl, target, bytes: want } = ev.data;
  const ws = new WebSocket(proxyUrl, ["lwproxy.v2"]);
  ws.binaryType = "arraybuffer";
  let bytes = 0, t0 = 0, window = null;
  const finish = (error) => {
    const ms = performance.now() - t0;
    ws.close();
    const result = { bytes, ms, mib_s: bytes / 1048576 / (ms / 1000), window, want };
    if (error) result.error = error;
    self.postMessage({ done: true, result });
  };
  ws.onopen = () => ws.send(JSON.stringify({
    t: "open", id: 1, host: target.host, port: target.port, window: Number.MAX_SAFE_INTEGER,
  }));
  ws.onerror = () => finish("WebSocket error");
  ws.onmessage = (m) => {
    if (typeof m.data !== "string") {
      const n = m.data.byteLength - 4;
      bytes += n;
      ws.send(JSON.stringify({ t: "ack", id: 1, bytes: n }));
      return;
    }
    const msg = JSON.parse(m.data);
    if (msg.t === "opened") {
      window = msg.window ?? null;
      t0 = performance.now();
      const req = new TextEncoder().encode(`GET /bulk/${want} HTTP/1.0\r\n\r\n`);
      const frame = new Uint8Array(4 + req.length);
      new DataView(frame.buffer).setUint32(0, 1);
      frame.set(req, 4);
      ws.send(frame);
    } else if (msg.t === "eof" || msg.t === "closed") {
      finish();
    } else if (msg.t === "error") {
      finish(msg.msg);
    }
  };
};
