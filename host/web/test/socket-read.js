// SPDX-License-Identifier: GPL-2.0-only
// The bare WebSocket read loop of `./linux-wasm.sh bench host`'s browser
// ceilings (the page's main thread in bench.js, a dedicated worker in
// socket-worker.js): lwproxy.v2 against the same stream, an ack per frame,
// nothing else.

/**
 * Opens `target` through lwproxy at `proxyUrl`, asks it for `GET /bulk/<bytes>`
 * and reads to the end.
 * @param offer the window to ask for in `open` (bytes; undefined: the proxy's default)
 * @returns a promise of { bytes, ms, mib_s, window (granted, or null), want, error? }
 */
export function readThroughProxy({ proxyUrl, target, bytes: want, window: offer }) {
  return new Promise((resolve) => {
    const ws = new WebSocket(proxyUrl, ["lwproxy.v2"]);
    ws.binaryType = "arraybuffer";
    let bytes = 0, t0 = 0, window = null, done = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      const ms = performance.now() - t0;
      ws.close();
      const result = { bytes, ms, mib_s: bytes / 1048576 / (ms / 1000), window, want };
      if (error) result.error = error;
      resolve(result);
    };
    ws.onopen = () => ws.send(JSON.stringify({
      t: "open", id: 1, host: target.host, port: target.port, window: offer,
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
  });
}
