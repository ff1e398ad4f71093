// SPDX-License-Identifier: GPL-2.0-only
// `./linux-wasm.sh bench host`: a WebSocket-like object whose other end is
// test/source-worker.js (an lwproxy.v2 source in its own thread, like the
// network service): each message arrives as its own task on the thread that
// made it, as a socket's would. bench.js uses the class on the page (the
// baseline's main thread); lwhost-web's link worker imports this module by
// URL (attachLwnet's socketModule, `?bytes=N`: the size of the source's
// stream; `&fixed=1`: a source that keeps the window of `opened`, as lwproxy
// before the ack's `window` field) and calls createSocket.

export class InPageProxy {
  /**
   * @param bytes the size of the stream the source sends after the request
   * @param fixedWindow true: the source ignores window fields (an older lwproxy)
   */
  constructor(bytes, fixedWindow = false) {
    this.protocol = "lwproxy.v2";
    this.binaryType = "arraybuffer";
    this.bufferedAmount = 0;
    const channel = new MessageChannel();
    this.port = channel.port1;
    this.port.onmessage = (ev) => this.onmessage && this.onmessage({ data: ev.data });
    this.worker = new Worker("/test/source-worker.js", { type: "module" });
    this.worker.postMessage({ port: channel.port2, bytes, fixedWindow }, [channel.port2]);
    setTimeout(() => this.onopen && this.onopen(), 0);
  }
  send(data) {
    if (typeof data === "string") { this.port.postMessage(data); return; }
    const copy = data.slice().buffer; // frames may be views of reused memory: send a copy we own
    this.port.postMessage(copy, [copy]);
  }
  close() {
    this.worker.terminate();
    setTimeout(() => this.onclose && this.onclose(), 0);
  }
}

/** attachLwnet's socketModule hook: the stream's size and kind come from this module's `?bytes=&fixed=`. */
export function createSocket() {
  const params = new URL(import.meta.url).searchParams;
  const bytes = Number(params.get("bytes"));
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error("in-page-socket.js needs ?bytes=N (N > 0)");
  return new InPageProxy(bytes, params.get("fixed") === "1");
}
