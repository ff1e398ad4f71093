/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The host ABI: functions the host supplies to the kernel. On the wasm
 * target they are WebAssembly imports from module "env"; on um the lwnet
 * um backend implements them over the shared region of <uapi/linux/lwhost.h>.
 *
 * No call waits. Each returns a value >= 0 or a negative errno; -EAGAIN
 * means "not now": readiness is learned through wasm_net_poll() and
 * wasm_store_poll() after a wake-up (an IRQ where the target has one, else a
 * kernel timer). The host validates every pointer and length it is given.
 */
#ifndef _LINUX_LWHOST_H
#define _LINUX_LWHOST_H

#include <linux/types.h>
#include <uapi/linux/lwhost.h>

/* Plain TCP to host:port with the default timeout; returns a conn id. */
int wasm_net_open(const char *host, int port);
/* host is host_len bytes, no NUL; flags are LWHOST_OPEN_*. */
int wasm_net_open_ex(const char *host, u32 host_len, u32 port, u32 flags,
		     u32 timeout_ms);
/* Bytes accepted (> 0), -EAGAIN when the ring is full, or -errno. */
int wasm_net_write(int id, const char *buf, int len);
/* Bytes read (> 0), 0 at end of stream, -EAGAIN when empty, or -errno. */
int wasm_net_read(int id, char *buf, int count);
/* LWHOST_POLL_* bits, errno above LWHOST_POLL_ERRNO_SHIFT, or -EBADF. */
int wasm_net_poll(int id);
/* Half-close: the peer gets end of stream once written bytes are sent. */
int wasm_net_shutdown(int id);
/* Forget the connection; the id is invalid afterwards. */
void wasm_net_close(int id);

/* Queue a store request; returns a ticket, -EBUSY when all slots are used. */
int wasm_store_submit(const struct lwhost_store_req *req);
/*
 * -EINPROGRESS while the request runs; then its result, with any output
 * copied to buf (len bytes at most), and the ticket is released.
 */
int wasm_store_poll(int ticket, void *buf, u32 len);

#endif /* _LINUX_LWHOST_H */
