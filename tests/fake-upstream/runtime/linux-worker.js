// SPDX-License-Identifier: GPL-2.0-only
// Fake upstream runtime (lwnet tests): one CPU's worker. It supplies the
// fake arch's host callbacks (the names below are what the build's import
// check reads: `wasm_...:` properties), adds lwnet's host ABI when the init
// message carries it (the second lwnet hook), instantiates vmlinux and
// reports the outcome as a log line.
const host_callbacks = {
  wasm_start_cpu: () => {},
  wasm_panic: () => { throw new Error("fake kernel panic"); },
  wasm_driver_hvc_put: () => {},
  wasm_cpu_clock_get_monotonic: () => BigInt(Math.round(performance.now() * 1e6)),
};

self.onmessage = async (event) => {
  const message = event.data;
  if (message.method !== "init") return;
  const env = { ...host_callbacks, memory: message.memory };
  try {
    if (message.lwnet) {
      const glue = await import(message.lwnet.glue);
      await glue.installLwnet(env, message.lwnet, message.memory);
    }
    const instance = await WebAssembly.instantiate(message.vmlinux, { env });
    instance.exports._start();
    postMessage({ method: "log", text: `${message.runner_name}: vmlinux instantiated` });
  } catch (error) {
    postMessage({ method: "log", text: `${message.runner_name}: ${error.name}: ${error.message}` });
  }
};
