// SPDX-License-Identifier: GPL-2.0-only
// lwnet's interrupt worker: turns the region's guest doorbell into a kernel
// interrupt. It holds its own instance of vmlinux over the kernel's memory
// and, each time the main side rings the guest doorbell (new data, a
// connection's state changed, a store request done), calls the kernel's
// exported raise_interrupt(cpu, irq), which upstream's kernel allows from
// outside any CPU (arch/wasm/kernel/smp.c: it only sets the IRQ's pending
// bit for that CPU and wakes it). The lwnet driver requested that IRQ, so it
// polls its connections at once instead of at its next timer tick.
//
// The instance is never used for anything else: every function import is a
// stub that throws (raise_interrupt calls none), the memory import is the
// kernel's shared memory.
//
// Message in: {vmlinux: WebAssembly.Module, kernelMemory, shimMemory,
//   bell: i32 index of guest_doorbell in shimMemory, cpu, irq,
//   shared: SharedArrayBuffer(16) for the counters (see main.js)}.

/** Imports for vmlinux: the kernel memory, and throwing stubs for functions. */
function stubImports(vmlinux, kernelMemory) {
  const imports = {};
  for (const imp of WebAssembly.Module.imports(vmlinux)) {
    const ns = (imports[imp.module] ??= {});
    if (imp.kind === "function") {
      ns[imp.name] = () => { throw new Error(`lwnet interrupt worker: vmlinux called ${imp.module}.${imp.name}`); };
    } else if (imp.kind === "memory") {
      ns[imp.name] = kernelMemory;
    } else {
      throw new Error(`vmlinux imports a ${imp.kind} (${imp.module}.${imp.name}) this worker cannot supply`);
    }
  }
  return imports;
}

self.onmessage = async ({ data }) => {
  const { vmlinux, kernelMemory, shimMemory, bell, cpu, irq, shared } = data;
  const counts = new Int32Array(shared, 0, 2); // [interrupts raised, state: 0 starting, 1 running, 2 unavailable]
  const lastAt = new Float64Array(shared, 8, 1); // time of the last raise, ms since the epoch
  let raise;
  try {
    const instance = await WebAssembly.instantiate(vmlinux, stubImports(vmlinux, kernelMemory));
    raise = instance.exports.raise_interrupt;
    if (typeof raise !== "function") throw new Error("vmlinux exports no raise_interrupt");
  } catch (e) {
    Atomics.store(counts, 1, 2);
    postMessage(`no interrupts (${e.message}); the driver's poll timer wakes it`);
    return;
  }
  Atomics.store(counts, 1, 1);
  const words = new Int32Array(shimMemory.buffer);
  let seen = Atomics.load(words, bell);
  for (;;) {
    Atomics.wait(words, bell, seen);
    const now = Atomics.load(words, bell);
    if (now === seen) continue;
    seen = now;
    raise(cpu, irq);
    lastAt[0] = performance.timeOrigin + performance.now();
    Atomics.add(counts, 0, 1);
  }
};
