// SPDX-License-Identifier: GPL-2.0-only
// The timer path, for comparison with the interrupt path: what lwnet's
// driver does without an interrupt. Its poll timer (5 ms) becomes one jiffy
// at upstream's HZ=100, so it looks at the connections once per 10 ms tick,
// at a phase unrelated to when data arrives. This worker checks the guest
// doorbell on such a tick and records when it saw it move.
// Message in: {shimMemory, bell (i32 index), shared: SharedArrayBuffer(16)}:
// shared holds [i32 count seen][pad][f64 time of the last one, ms since the epoch].
const TICK_MS = 10;

self.onmessage = ({ data }) => {
  const { shimMemory, bell, shared } = data;
  const words = new Int32Array(shimMemory.buffer);
  const counts = new Int32Array(shared, 0, 2);
  const lastAt = new Float64Array(shared, 8, 1);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let seen = Atomics.load(words, bell);
  let next = performance.now() + TICK_MS;
  for (;;) {
    Atomics.wait(sleeper, 0, 0, Math.max(0, next - performance.now()));
    next += TICK_MS;
    const now = Atomics.load(words, bell);
    if (now === seen) continue;
    seen = now;
    lastAt[0] = performance.timeOrigin + performance.now();
    Atomics.add(counts, 0, 1);
  }
};
