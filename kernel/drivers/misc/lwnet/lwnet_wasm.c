// SPDX-License-Identifier: GPL-2.0
/*
 * lwnet backend for Linux on WebAssembly: the host ABI of <linux/lwhost.h>
 * is a set of plain extern functions, which wasm-ld turns into imports from
 * module "env", supplied by the browser runtime's host callbacks.
 *
 * Wake-ups: the browser's interrupt worker raises LWHOST_WASM_IRQ on the
 * CPU that handles interrupts whenever the host has news, and the driver
 * requests that IRQ. Until the first interrupt arrives (a page without the
 * worker never sends one) the driver re-polls every LWNET_WASM_POLL_MS
 * while, and only while, a task waits.
 */

#include <linux/err.h>
#include <linux/init.h>
#include <linux/lwhost.h>
#include <linux/lwnet_backend.h>
#include <linux/printk.h>

#define LWNET_WASM_POLL_MS	5

static int lwnet_wasm_net_open(struct lwnet_dev *dev, const char *host,
			       u32 host_len, u32 port, u32 flags,
			       u32 timeout_ms)
{
	return wasm_net_open_ex(host, host_len, port, flags, timeout_ms);
}

static int lwnet_wasm_net_write(struct lwnet_dev *dev, int id,
				const char *buf, int len)
{
	return wasm_net_write(id, buf, len);
}

static int lwnet_wasm_net_read(struct lwnet_dev *dev, int id, char *buf,
			       int count)
{
	return wasm_net_read(id, buf, count);
}

static int lwnet_wasm_net_poll(struct lwnet_dev *dev, int id)
{
	return wasm_net_poll(id);
}

static int lwnet_wasm_net_shutdown(struct lwnet_dev *dev, int id)
{
	return wasm_net_shutdown(id);
}

static void lwnet_wasm_net_close(struct lwnet_dev *dev, int id)
{
	wasm_net_close(id);
}

static int lwnet_wasm_store_submit(struct lwnet_dev *dev,
				   const struct lwhost_store_req *req)
{
	return wasm_store_submit(req);
}

static int lwnet_wasm_store_poll(struct lwnet_dev *dev, int ticket,
				 void *buf, u32 len)
{
	return wasm_store_poll(ticket, buf, len);
}

LWNET_BACKEND_OPS(lwnet_wasm_ops, lwnet_wasm);

static int __init lwnet_wasm_init(void)
{
	struct lwnet_dev *dev;
	int ret, irq_ret;

	dev = lwnet_dev_create(&lwnet_wasm_ops, LWNET_WASM_POLL_MS, NULL);
	if (IS_ERR(dev))
		return PTR_ERR(dev);
	irq_ret = lwnet_request_irq(dev, LWHOST_WASM_IRQ);
	if (irq_ret)
		pr_warn("lwnet: IRQ %d unavailable (%d), polling every %d ms\n",
			LWHOST_WASM_IRQ, irq_ret, LWNET_WASM_POLL_MS);
	ret = lwnet_register(dev);
	if (ret) {
		lwnet_dev_destroy(dev);
		return ret;
	}
	if (!irq_ret)
		pr_info("lwnet: host devices ready (wasm imports, IRQ %d)\n",
			LWHOST_WASM_IRQ);
	return 0;
}
device_initcall(lwnet_wasm_init);
