// SPDX-License-Identifier: GPL-2.0-only
// Fake upstream runtime (lwnet tests): the page-side entry point with the
// interface of upstream's runtime/linux.js -- a global
// linux(worker_url, variant, vmlinux, boot_cmdline, initrd, log, console_write)
// that creates the kernel's shared memory and starts one Web Worker per CPU
// (here two), each posted an "init" message with the compiled vmlinux and
// the memory. It already carries the two lwnet hooks (as a runtime with
// patches/runtime applied does): each runner's init message gets
// globalThis.lwnet_host.workerInit({ vmlinux, memory }). Unlike upstream's,
// the returned object also holds the memory (tests read it).
const linux = async (worker_url, variant, vmlinux, boot_cmdline, initrd, log, console_write) => {
  const memory = new WebAssembly.Memory({ initial: 64, maximum: 4096, shared: true });
  const runners = [];
  const start_runner = (name, options) => {
    const worker = new Worker(worker_url, { name: name });
    worker.onmessage = (event) => {
      if (event.data.method === "log") log(event.data.text);
      if (event.data.method === "console_write") console_write(event.data.text);
    };
    if (globalThis.lwnet_host) {
      options.lwnet = globalThis.lwnet_host.workerInit({ vmlinux, memory });
    }
    worker.postMessage({ ...options, method: "init", variant, vmlinux, memory, runner_name: name });
    runners.push(worker);
  };
  start_runner("cpu0", { boot_cmdline, initrd });
  start_runner("cpu1", {});
  return { key_input: () => {}, runners, memory };
};
