// SPDX-License-Identifier: GPL-2.0-only
// Region side of lwhost's main side in the browser (link-worker.js): the words of
// the shared region (include/uapi/linux/lwhost.h, read through lwabi.js) and
// the thread slots of workers that ended. Methods of MainSide (link-worker.js).

import * as abi from "./lwabi.js";

// Region protocol constants: include/uapi/linux/lwhost.h, through lwabi.js.
export const CONN = {
  FREE: abi.LWHOST_CONN_FREE, CLAIMED: abi.LWHOST_CONN_CLAIMED, REQUESTED: abi.LWHOST_CONN_REQUESTED,
  CONNECTING: abi.LWHOST_CONN_CONNECTING, OPEN: abi.LWHOST_CONN_OPEN, FAILED: abi.LWHOST_CONN_FAILED,
};
export const { LWHOST_WF_SHUT_WR: WF_SHUT_WR, LWHOST_WF_CLOSE: WF_CLOSE, LWHOST_MF_PEER_EOF: MF_PEER_EOF } = abi;
export const { LWHOST_OPEN_TLS: OPEN_TLS, LWHOST_STORE_WRITE: STORE_WRITE } = abi;
export const SLOT = { SUBMITTED: abi.LWHOST_SLOT_SUBMITTED, DONE: abi.LWHOST_SLOT_DONE };

/** Region access: `this.L` is the layout, `this.i32`/`this.u8` views of the shim's memory. */
export class RegionAccess {
  connWord(slot, off) { return (this.L.region + this.L.conn_base + slot * this.L.conn_stride + off) >> 2; }
  connByte(slot, off) { return this.L.region + this.L.conn_base + slot * this.L.conn_stride + off; }
  get(slot, off) { return Atomics.load(this.i32, this.connWord(slot, off)) >>> 0; }
  set(slot, off, v) { Atomics.store(this.i32, this.connWord(slot, off), v); }
  slotWord(s, off) { return (this.L.region + this.L.store_base + s * this.L.store_stride + off) >> 2; }

  ringGuest() {
    const bell = (this.L.region + this.L.guest_doorbell) >> 2;
    Atomics.add(this.i32, bell, 1);
    Atomics.notify(this.i32, bell);
  }

  // --- thread slots ------------------------------------------------------------
  /** Frees the thread slots of workers that are gone (their lock was released). */
  async sweepThreads() {
    if (!navigator.locks) return;
    const L = this.L;
    const owners = new Int32Array(this.memory.buffer, L.thread_owner, L.thread_slots);
    // Owners first, then the locks: a worker takes its lock before it can
    // claim a slot, so a token seen here whose lock is not held afterwards
    // belongs to a worker that has ended.
    const claimed = [];
    for (let i = 0; i < L.thread_slots; i++) {
      const token = Atomics.load(owners, i);
      if (token !== 0) claimed.push([i, token]);
    }
    if (claimed.length === 0) return;
    const held = new Set((await navigator.locks.query()).held.map((l) => l.name));
    for (const [i, token] of claimed) {
      if (!held.has(`${this.lockPrefix}-${token}`)) Atomics.compareExchange(owners, i, token, 0);
    }
  }
}
