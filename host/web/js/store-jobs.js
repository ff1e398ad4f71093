// SPDX-License-Identifier: GPL-2.0-only
// Store jobs of lwhost's main side in the browser (link-worker.js): requests the
// kernel's workers put in the region's store slots, run on the IndexedDB
// store (store.js) one after another. Methods of MainSide (link-worker.js).

import { E } from "./shim.js";
import { SLOT, STORE_WRITE } from "./region.js";

export class StoreJobs {
  runStore(s) {
    const L = this.L;
    const w = (off) => Atomics.load(this.i32, this.slotWord(s, off)) >>> 0;
    const base = L.region + L.store_base + s * L.store_stride;
    this.storeBusy[s] = true;
    const op = w(L.store_op), flags = w(L.store_flags), keyLen = w(L.store_key_len);
    const afterLen = w(L.store_after_len), len = w(L.store_len);
    const offset = w(L.store_offset) + w(L.store_offset + 4) * 2 ** 32;
    const finish = (result, data) => {
      if (data && result > 0) this.u8.set(data.subarray(0, Math.min(result, len, L.store_buf)), base + L.store_data);
      Atomics.store(this.i32, this.slotWord(s, L.store_result), result);
      Atomics.store(this.i32, this.slotWord(s, L.store_state), SLOT.DONE);
      this.storeBusy[s] = false;
      this.stats.storeOps++;
      this.ringGuest();
    };
    // The worker side validated these, but the region is shared: check again.
    if (keyLen > L.key_max || afterLen > L.key_max || len > L.store_buf) { finish(-E.EINVAL); return; }
    const key = this.u8.slice(base + L.store_key, base + L.store_key + keyLen);
    const after = this.u8.slice(base + L.store_key + keyLen, base + L.store_key + keyLen + afterLen);
    const data = op === STORE_WRITE ? this.u8.slice(base + L.store_data, base + L.store_data + len) : new Uint8Array(0);
    const request = { op, flags, key, after, offset, data, capacity: op === STORE_WRITE ? 0 : len };
    this.storeChain = this.storeChain
      .then(() => this.store.run(request))
      .then(({ result, data: out }) => finish(result, out))
      .catch((e) => { this.log("lwnet: store: " + e); finish(-E.EIO); });
  }
}
