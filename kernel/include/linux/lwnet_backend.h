/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface between the arch-neutral lwnet driver (/dev/lwnet,
 * /dev/lwstore) and a backend that reaches the host. A backend supplies the
 * host ABI of <linux/lwhost.h> as ops and tells the driver when the host has
 * news, either by calling lwnet_notify() (from an IRQ, for example) or by
 * asking for a poll interval, which the driver then uses only while someone
 * waits.
 */
#ifndef _LINUX_LWNET_BACKEND_H
#define _LINUX_LWNET_BACKEND_H

#include <linux/types.h>
#include <linux/lwhost.h>

struct lwnet_dev;

/* Same meaning and return values as the functions in <linux/lwhost.h>. */
struct lwnet_backend_ops {
	int (*net_open)(struct lwnet_dev *dev, const char *host, u32 host_len,
			u32 port, u32 flags, u32 timeout_ms);
	int (*net_write)(struct lwnet_dev *dev, int id, const char *buf,
			 int len);
	int (*net_read)(struct lwnet_dev *dev, int id, char *buf, int count);
	int (*net_poll)(struct lwnet_dev *dev, int id);
	int (*net_shutdown)(struct lwnet_dev *dev, int id);
	void (*net_close)(struct lwnet_dev *dev, int id);
	int (*store_submit)(struct lwnet_dev *dev,
			    const struct lwhost_store_req *req);
	int (*store_poll)(struct lwnet_dev *dev, int ticket, void *buf,
			  u32 len);
};

/*
 * Defines the ops "name" of a backend whose functions are prefix_net_open,
 * prefix_net_write, ... prefix_store_poll (each member's name after "prefix_").
 */
#define LWNET_BACKEND_OPS(name, prefix)					\
	static const struct lwnet_backend_ops name = {			\
		.net_open	= prefix##_net_open,			\
		.net_write	= prefix##_net_write,			\
		.net_read	= prefix##_net_read,			\
		.net_poll	= prefix##_net_poll,			\
		.net_shutdown	= prefix##_net_shutdown,		\
		.net_close	= prefix##_net_close,			\
		.store_submit	= prefix##_store_submit,		\
		.store_poll	= prefix##_store_poll,			\
	}

/*
 * poll_ms = 0: the backend calls lwnet_notify() whenever the host may have
 * made progress. Otherwise the driver re-polls every poll_ms milliseconds,
 * but only while a task waits on the device.
 */
struct lwnet_dev *lwnet_dev_create(const struct lwnet_backend_ops *ops,
				   unsigned int poll_ms, void *priv);
void lwnet_dev_destroy(struct lwnet_dev *dev);
void *lwnet_dev_priv(struct lwnet_dev *dev);

/* Creates /dev/lwnet and /dev/lwstore for dev; one dev at a time. */
int lwnet_register(struct lwnet_dev *dev);
void lwnet_unregister(struct lwnet_dev *dev);

/* Wakes every waiter of dev so it asks the host again. Any context. */
void lwnet_notify(struct lwnet_dev *dev);

/*
 * Requests IRQ irq for dev: each interrupt calls lwnet_notify(). A backend
 * with a poll interval keeps it as a fallback until the first interrupt
 * arrives, then relaxes it (the host delivers interrupts). Released by
 * lwnet_dev_destroy(). Returns 0 or request_irq()'s error.
 */
int lwnet_request_irq(struct lwnet_dev *dev, unsigned int irq);

#endif /* _LINUX_LWNET_BACKEND_H */
