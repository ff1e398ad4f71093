/* SPDX-License-Identifier: GPL-2.0-only */
/* Fake upstream (lwnet tests): the host functions the fake arch imports. */
void wasm_start_cpu(int cpu, void *idle_task);
void wasm_panic(const char *msg);
void wasm_driver_hvc_put(const char *buf, unsigned int count);
unsigned long long wasm_cpu_clock_get_monotonic(void);
