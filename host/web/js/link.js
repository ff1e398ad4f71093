// SPDX-License-Identifier: GPL-2.0-only
// Proxy link of lwhost's main side in the browser (link-worker.js): the WebSocket
// to lwproxy (docs/protocol.md) and the connections' rings it feeds and
// drains. Methods of MainSide (link-worker.js).

import { E } from "./shim.js";
import { CONN, MF_PEER_EOF, OPEN_TLS, WF_CLOSE, WF_SHUT_WR } from "./region.js";
import * as abi from "./lwabi.js";
// WINDOW, MAX_WINDOW, FRAME_MAX, the subprotocols: docs/protocol.md, generated from lwproxy's protocol.rs.
import { BEARER_PREFIX, BINARY_HEADER as HDR, FRAME_MAX, MAX_WINDOW, SUBPROTOCOL_V2, WINDOW } from "./protocol.js";

/** The smallest batch of proxy bytes acked at once: 65536, the size at which lwproxy
 * coalesces its own acks (ACK_BATCH = WINDOW / 4, proxy/src/relay.rs). */
const ACK_BATCH = WINDOW / 4;

/**
 * Bytes that enter the ring are acked in batches of ackBatch(window): at
 * least ACK_BATCH, a quarter of the connection's proxy-to-client window once
 * it has grown, never more than the window. The proxy may send while less
 * than a window is unacked, and at most a batch less one byte waits here
 * unacked, so at least window - batch + 1 bytes (three quarters of a window
 * of 256 KiB or more) stay open for data in flight and a stream never stalls
 * on a held-back ack; a 4 MiB window costs one ack per MiB instead of
 * one per 64 KiB frame (each ack is a message through the network service
 * and the proxy). The quarter is the proxy's own rule for its acks.
 * The window is the one this side advertised, which a proxy older than the
 * ack's `window` field never applies (docs/protocol.md): until the proxy has
 * had more than its grant unacked (ProxyLink.deliver), bytes held back are
 * acked at the latest ACK_DELAY_MS after they entered the ring.
 * @param window the connection's current window, bytes (>= 1)
 * @returns bytes, in [1, window]
 */
export function ackBatch(window) {
  return Math.max(1, Math.min(window, Math.max(ACK_BATCH, Math.floor(window / 4))));
}
/** Longest wait of a held-back ack until the proxy is known to apply grown windows, ms. */
const ACK_DELAY_MS = 1;
/** Stop feeding the socket while this much is buffered in it. */
const SOCKET_HIGH_WATER = 4 << 20;
const DEFAULT_CONNECT_TIMEOUT_MS = 30000;

/**
 * errno for a connection the proxy failed, from the `error` message's
 * `code` (docs/protocol.md; the codes are lwproxy::protocol::ErrorCode).
 * EIO for other codes and for proxies that send none.
 */
const ERRNO_OF_CODE = {
  policy: E.EACCES,
  refused: E.ECONNREFUSED,
  tls: E.ECONNREFUSED,
  timeout: E.ETIMEDOUT,
  unreachable: E.EHOSTUNREACH,
  reset: E.ECONNRESET,
};
export function errnoFromProxyError(msg) {
  const code = msg.code;
  return typeof code === "string" && Object.hasOwn(ERRNO_OF_CODE, code) ? ERRNO_OF_CODE[code] : E.EIO;
}

/**
 * Receive-window autotuning of one connection's proxy-to-client window: the
 * rule of lwproxy::protocol::WindowTuner (proxy/src/protocol.rs, where it is
 * defined and unit-tested; docs/protocol.md "Flow control"), restated.
 * Linux's dynamic right-sizing (tcp_rcv_space_adjust, tcp_input.c): the round
 * trip is the time the last whole window took to arrive after a mark; once per
 * round trip, copied = bytes consumed in it minus bytes still queued; when
 * copied exceeds space (the copied of the last growth, at first half the
 * window), the window becomes 2 x copied plus 2 x (2 x copied) x (copied -
 * space) / space, at most MAX_WINDOW, and space becomes copied; it never
 * shrinks. Times in ms (performance.now()).
 */
export class WindowTuner {
  constructor(window, now) {
    this.window = Math.min(Math.max(window, 1), MAX_WINDOW);
    this.received = 0;
    this.consumed = 0;
    this.rtt = null; // latest round-trip sample, ms
    this.mark = null; // { end: received total that ends the sample, at }
    this.epoch = { consumed: 0, at: now };
    this.space = Math.floor(this.window / 2); // bytes per round trip the window is sized for
  }

  /** The proxy's grant from `opened` (absent from older proxies: WINDOW). */
  granted(grant) {
    const g = Number.isSafeInteger(grant) ? grant : WINDOW;
    this.window = Math.min(Math.max(g, 1), MAX_WINDOW);
    this.space = Math.floor(this.window / 2);
  }

  /** `n` bytes arrived from the proxy at `now`. */
  onReceived(n, now) {
    this.received += n;
    if (this.mark && this.received < this.mark.end) return;
    if (this.mark) this.rtt = Math.max(now - this.mark.at, 0.001);
    this.mark = { end: this.received + this.window, at: now };
  }

  /** The reader consumed `n` bytes at `now`; returns the new window when it grew, else null. */
  onConsumed(n, now) {
    this.consumed += n;
    if (this.rtt === null || now - this.epoch.at < this.rtt) return null;
    const queued = Math.max(this.received - this.consumed, 0);
    const copied = Math.min(Math.max(this.consumed - this.epoch.consumed - queued, 0), MAX_WINDOW);
    this.epoch = { consumed: this.consumed, at: now };
    if (copied <= this.space) return null;
    let want = copied * 2;
    if (this.space > 0) want += 2 * Math.floor((want * (copied - this.space)) / this.space);
    this.space = copied;
    want = Math.min(want, MAX_WINDOW);
    if (want <= this.window) return null;
    this.window = want;
    return want;
  }
}

/** Connections and the socket: needs RegionAccess's methods on the same object. */
export class ProxyLink {
  startOpen(slot) {
    const L = this.L;
    const gen = this.get(slot, L.conn_generation);
    const id = ((gen & abi.LWHOST_ID_GEN_MASK) << abi.LWHOST_ID_SLOT_BITS) | slot; // LWHOST_ID(slot, gen)
    const hostLen = this.get(slot, L.conn_host_len);
    const port = this.get(slot, L.conn_port);
    const flags = this.get(slot, L.conn_open_flags);
    const timeoutMs = this.get(slot, L.conn_timeout_ms);
    if (hostLen === 0 || hostLen >= abi.LWHOST_HOST_MAX || port === 0 || port > 65535) {
      this.set(slot, L.conn_error, E.EINVAL);
      this.set(slot, L.conn_state, CONN.FAILED);
      return true;
    }
    const at = this.connByte(slot, L.conn_host);
    const host = new TextDecoder().decode(this.u8.slice(at, at + hostLen));
    const c = {
      id, host, port, tls: (flags & OPEN_TLS) !== 0, timeoutMs, openSent: false, txUnacked: 0,
      rxQueue: [], rxUnacked: 0, rxWindow: new WindowTuner(WINDOW, performance.now()),
      granted: WINDOW, rxAcked: 0, grownApplied: false, ackTimer: null, eofPending: false, eofSet: false, shutSent: false, closedByPeer: false, closeSent: false,
      timer: setTimeout(() => this.connectTimedOut(slot, id), (timeoutMs || DEFAULT_CONNECT_TIMEOUT_MS) + 2000),
    };
    this.conns[slot] = c;
    this.byId.set(id, slot);
    this.set(slot, L.conn_state, CONN.CONNECTING);
    if (this.socketState === "open") this.sendOpen(c);
    else this.connect();
    return true;
  }

  sendOpen(c) {
    const msg = { t: "open", id: c.id, host: c.host, port: c.port };
    if (this.binary) msg.window = c.rxWindow.window; // offered; grown by the acks (WindowTuner)
    if (c.tls) msg.tls = true;
    if (c.timeoutMs) msg.timeout_ms = c.timeoutMs;
    this.ws.send(JSON.stringify(msg));
    c.openSent = true;
  }

  connectTimedOut(slot, id) {
    const c = this.conns[slot];
    if (!c || c.id !== id || this.get(slot, this.L.conn_state) !== CONN.CONNECTING) return;
    this.fail(slot, E.ETIMEDOUT);
    this.ringGuest();
  }

  /**
   * Moves a live connection to FAILED with `errno` (a no-op once FAILED or FREE). A failure
   * found on this side (a timeout, a ring the worker side corrupted) also closes the
   * connection at the proxy at once, so its target socket is not held until the proxy's idle
   * timeout.
   */
  fail(slot, errno) {
    const state = this.get(slot, this.L.conn_state);
    if (state !== CONN.CONNECTING && state !== CONN.OPEN) return;
    this.set(slot, this.L.conn_error, errno);
    this.set(slot, this.L.conn_state, CONN.FAILED);
    const c = this.conns[slot];
    if (c) { clearTimeout(c.timer); clearTimeout(c.ackTimer); c.rxQueue = []; this.closeAtProxy(c); }
  }

  /** Sends `close` for `c` once, if the proxy has it open (opened by us, not closed by it). */
  closeAtProxy(c) {
    if (!c.openSent || c.closedByPeer || c.closeSent) return;
    c.closeSent = true;
    this.sendControl({ t: "close", id: c.id });
  }

  /** WF_CLOSE: tell the proxy, reset the slot and hand it back (FREE). */
  release(slot) {
    const L = this.L, c = this.conns[slot];
    if (c) {
      clearTimeout(c.timer);
      clearTimeout(c.ackTimer);
      this.closeAtProxy(c);
      this.byId.delete(c.id);
      this.conns[slot] = null;
    }
    for (const off of [L.conn_tx_head, L.conn_tx_tail, L.conn_rx_head, L.conn_rx_tail, L.conn_main_flags, L.conn_worker_flags, L.conn_error]) {
      this.set(slot, off, 0);
    }
    this.set(slot, L.conn_state, CONN.FREE);
  }

  /** tx ring -> socket, within the window the proxy has acked. */
  pumpTx(slot, c, wf) {
    const L = this.L, size = L.ring_size;
    const head = this.get(slot, L.conn_tx_head);
    let tail = this.get(slot, L.conn_tx_tail);
    const avail = (head - tail) >>> 0;
    if (avail > size) { this.fail(slot, E.EIO); return true; } // the worker side wrote garbage
    let moved = false;
    if (avail > 0 && this.socketState === "open") {
      if (this.ws.bufferedAmount > SOCKET_HIGH_WATER) {
        setTimeout(() => this.schedulePump(), 5);
      } else {
        let n = this.binary ? Math.min(avail, WINDOW - c.txUnacked) : avail;
        const data = this.connByte(slot, L.conn_tx_data);
        while (n > 0) {
          const len = Math.min(n, FRAME_MAX);
          const frame = new Uint8Array(HDR + len);
          const at = tail % size, first = Math.min(len, size - at);
          frame.set(this.u8.subarray(data + at, data + at + first), HDR);
          if (first < len) frame.set(this.u8.subarray(data, data + len - first), HDR + first);
          if (this.binary) {
            new DataView(frame.buffer).setUint32(0, c.id);
            this.ws.send(frame);
          } else {
            this.ws.send(JSON.stringify({ t: "write", id: c.id, b64: toBase64(frame.subarray(HDR)) }));
          }
          tail = (tail + len) >>> 0;
          c.txUnacked += len;
          n -= len;
          this.stats.framesOut++;
          this.stats.bytesOut += len;
          moved = true;
        }
        if (moved) this.set(slot, L.conn_tx_tail, tail);
      }
    }
    if (wf & WF_SHUT_WR && !c.shutSent && head === tail && this.socketState === "open") {
      this.sendControl({ t: "shutdown", id: c.id });
      c.shutSent = true;
    }
    return moved;
  }

  /**
   * Queued proxy data -> rx ring, acking what entered it. The reader's tail is
   * read again before each copy: the guest drains the ring while it is being
   * filled, and data is left queued only when the ring is full by the tail of
   * that moment. The guest wakes this side only when the ring drains past half
   * (lwhost::worker's net_read), so queued data behind a ring that merely looked
   * full (a stale tail) could wait for the next frame, which an unacked window
   * may never bring.
   */
  pumpRx(slot, c) {
    const L = this.L, size = L.ring_size;
    let head = this.get(slot, L.conn_rx_head);
    const data = this.connByte(slot, L.conn_rx_data);
    let moved = false;
    while (c.rxQueue.length > 0) {
      const used = (head - this.get(slot, L.conn_rx_tail)) >>> 0;
      if (used > size) { this.fail(slot, E.EIO); return true; }
      const free = size - used;
      if (free === 0) break;
      const chunk = c.rxQueue[0];
      const n = Math.min(chunk.length, free);
      const at = head % size, first = Math.min(n, size - at);
      this.u8.set(chunk.subarray(0, first), data + at);
      if (first < n) this.u8.set(chunk.subarray(first, n), data);
      head = (head + n) >>> 0;
      this.set(slot, L.conn_rx_head, head);
      c.rxUnacked += n;
      if (n === chunk.length) c.rxQueue.shift();
      else c.rxQueue[0] = chunk.subarray(n);
      moved = true;
    }
    if (c.rxUnacked > 0 && this.binary) {
      if (c.rxUnacked >= ackBatch(c.rxWindow.window)) {
        this.sendAck(c);
      } else if (!c.grownApplied && c.ackTimer === null) {
        c.ackTimer = setTimeout(() => {
          c.ackTimer = null;
          if (this.conns[slot] === c && c.rxUnacked > 0) this.sendAck(c);
        }, ACK_DELAY_MS);
      }
    }
    if (c.rxQueue.length === 0 && c.eofPending && !c.eofSet) {
      Atomics.or(this.i32, this.connWord(slot, L.conn_main_flags), MF_PEER_EOF);
      c.eofSet = true;
      moved = true;
    }
    return moved;
  }

  /** Acks the bytes of `c` that entered the ring, with the window if WindowTuner grew it. */
  sendAck(c) {
    const ack = { t: "ack", id: c.id, bytes: c.rxUnacked };
    const grown = c.rxWindow.onConsumed(c.rxUnacked, performance.now());
    if (grown !== null) {
      ack.window = grown;
      this.stats.rxWindowMax = Math.max(this.stats.rxWindowMax, grown);
    }
    this.sendControl(ack);
    this.stats.acksOut++;
    c.rxAcked += c.rxUnacked;
    c.rxUnacked = 0;
  }

  // --- the socket ------------------------------------------------------------
  sendControl(msg) {
    if (this.socketState === "open") this.ws.send(JSON.stringify(msg));
  }

  reconnectNow() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.backoffMs = 0;
    if (this.ws) this.ws.close();
    else this.connect();
  }

  connect() {
    if (this.closed || this.socketState !== "down" || this.reconnectTimer) return;
    const protocols = [SUBPROTOCOL_V2];
    if (this.token) protocols.push(BEARER_PREFIX + this.token);
    let ws;
    try {
      ws = this.socketFactory(this.proxyUrl, protocols);
    } catch (e) {
      this.log("lwnet: bad proxy URL: " + e.message);
      this.socketDown(null);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.socketState = "connecting";
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.socketState = "open";
      this.binary = ws.protocol === SUBPROTOCOL_V2; // else a v1 proxy: JSON + base64
      this.backoffMs = 0;
      this.log("lwnet: connected to proxy (" + (ws.protocol || "v1") + ")");
      for (const c of this.conns) if (c && !c.openSent) this.sendOpen(c);
      this.schedulePump();
    };
    ws.onmessage = (ev) => { if (ws === this.ws) this.onMessage(ev.data); };
    ws.onclose = () => { if (ws === this.ws) this.socketDown(ws); };
    ws.onerror = () => {}; // onclose follows with everything we can learn
  }

  /** The proxy went away: every connection fails, and we reconnect with backoff. */
  socketDown(ws) {
    const wasOpen = this.socketState === "open";
    this.ws = null;
    this.socketState = "down";
    let news = false;
    for (let slot = 0; slot < this.conns.length; slot++) {
      const c = this.conns[slot];
      if (!c) continue;
      // Never reached the proxy: refused; lost mid-way: reset.
      this.fail(slot, c.openSent && wasOpen ? E.ECONNRESET : E.ECONNREFUSED);
      news = true;
    }
    if (news) this.ringGuest();
    if (this.closed) return;
    this.stats.reconnects++;
    this.backoffMs = Math.min(5000, Math.max(100, this.backoffMs * 2));
    this.log(`lwnet: proxy connection ${ws ? "closed" : "failed"}; retrying in ${this.backoffMs} ms`);
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this.connect(); }, this.backoffMs);
  }

  onMessage(data) {
    if (typeof data !== "string") {
      if (data.byteLength < HDR) return;
      const id = new DataView(data).getUint32(0);
      this.stats.framesIn++;
      this.stats.bytesIn += data.byteLength - HDR;
      this.deliver(id, new Uint8Array(data, HDR));
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { this.log("lwnet: unparsable proxy message"); return; }
    const slot = this.byId.get(msg.id);
    const c = slot === undefined ? null : this.conns[slot];
    if (!c) return; // about a connection already released
    switch (msg.t) {
      case "opened":
        if (this.get(slot, this.L.conn_state) === CONN.CONNECTING) {
          clearTimeout(c.timer);
          c.rxWindow.granted(msg.window);
          c.granted = c.rxWindow.window;
          this.set(slot, this.L.conn_state, CONN.OPEN);
          this.ringGuest();
        }
        break;
      case "data":
        this.deliver(msg.id, fromBase64(msg.b64 || ""));
        break;
      case "eof":
      case "closed":
        c.eofPending = true;
        if (msg.t === "closed") c.closedByPeer = true;
        if (this.pumpRx(slot, c)) this.ringGuest();
        break;
      case "error":
        this.log(`lwnet: connection to ${c.host}:${c.port}: ${msg.msg}`);
        c.closedByPeer = true;
        this.fail(slot, errnoFromProxyError(msg));
        this.ringGuest();
        break;
      case "ack":
        c.txUnacked = Math.max(0, c.txUnacked - (Number(msg.bytes) || 0));
        this.schedulePump();
        break;
      default:
        this.log("lwnet: unknown proxy message " + msg.t);
    }
  }

  deliver(id, bytes) {
    const slot = this.byId.get(id);
    const c = slot === undefined ? null : this.conns[slot];
    if (!c || this.get(slot, this.L.conn_state) !== CONN.OPEN) return;
    c.rxWindow.onReceived(bytes.length, performance.now());
    // More than the grant unacked (by the proxy's count, which lags ours): it applies grown windows.
    if (!c.grownApplied && c.rxWindow.received - c.rxAcked > c.granted) c.grownApplied = true;
    c.rxQueue.push(bytes);
    if (this.pumpRx(slot, c)) this.ringGuest();
  }
}

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(s);
}

function fromBase64(b64) {
  const s = atob(b64);
  return Uint8Array.from(s, (ch) => ch.charCodeAt(0));
}
