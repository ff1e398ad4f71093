// SPDX-License-Identifier: GPL-2.0
/*
 * lwnet core: the device a backend registers, wake-ups and waiting.
 *
 * Host calls never block, so every wait in the driver has the same shape:
 * note the event counter, ask the host, and if it says "not now" sleep
 * until the counter moves (lwnet_notify()) or a signal arrives. Backends
 * without an IRQ get a one-shot poll work instead, armed by each waiter,
 * so nothing runs while nobody waits. A backend with both keeps the poll as
 * a fallback, relaxed once its IRQ has fired.
 */

#include <linux/errno.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/slab.h>
#include <linux/wait.h>

#include "lwnet.h"

/* A negative host answer we can hand to user space; anything else is -EIO. */
int lwnet_errno(int err)
{
	if (err < 0 && err > -MAX_ERRNO)
		return err;
	return -EIO;
}

unsigned int lwnet_wait_seq(struct lwnet_dev *dev)
{
	return atomic_read(&dev->events);
}

/* Milliseconds between polls while someone waits; 0 for none. */
unsigned int lwnet_poll_interval(struct lwnet_dev *dev)
{
	if (!dev->poll_ms || !READ_ONCE(dev->irq_seen))
		return dev->poll_ms;
	return max_t(unsigned int, dev->poll_ms, LWNET_IRQ_FALLBACK_MS);
}

void lwnet_kick_poll(struct lwnet_dev *dev)
{
	unsigned int ms = lwnet_poll_interval(dev);

	/* Does not push back a pending run: a steady stream of kicks still polls. */
	if (ms)
		schedule_delayed_work(&dev->poll_work, msecs_to_jiffies(ms));
}

/*
 * Sleeps until a notification newer than seq, or a signal. Callers take
 * seq before asking the host, so a notification that races with the
 * question is never lost. Returns 0 or -ERESTARTSYS.
 */
int lwnet_wait(struct lwnet_dev *dev, unsigned int seq)
{
	lwnet_kick_poll(dev);
	return wait_event_interruptible(dev->wq,
					(unsigned int)atomic_read(&dev->events) != seq);
}

void lwnet_notify(struct lwnet_dev *dev)
{
	atomic_inc(&dev->events);
	wake_up_interruptible_all(&dev->wq);
}
EXPORT_SYMBOL_GPL(lwnet_notify);

irqreturn_t lwnet_irq(int irq, void *data)
{
	struct lwnet_dev *dev = data;

	WRITE_ONCE(dev->irq_seen, true);
	lwnet_notify(dev);
	return IRQ_HANDLED;
}

int lwnet_request_irq(struct lwnet_dev *dev, unsigned int irq)
{
	int ret;

	if (dev->irq >= 0)
		return -EBUSY;
	ret = request_irq(irq, lwnet_irq, 0, "lwnet", dev);
	if (!ret)
		dev->irq = irq;
	return ret;
}
EXPORT_SYMBOL_GPL(lwnet_request_irq);

static void lwnet_poll_work(struct work_struct *work)
{
	struct lwnet_dev *dev = container_of(to_delayed_work(work),
					     struct lwnet_dev, poll_work);

	/* Woken waiters re-arm the work if they still have to wait. */
	lwnet_notify(dev);
}

static void lwnet_reap_work(struct work_struct *work)
{
	struct lwnet_dev *dev = container_of(to_delayed_work(work),
					     struct lwnet_dev, reap_work);

	lwnet_store_reap_now(dev);
}

struct lwnet_dev *lwnet_dev_create(const struct lwnet_backend_ops *ops,
				   unsigned int poll_ms, void *priv)
{
	struct lwnet_dev *dev;
	int i;

	if (!ops)
		return ERR_PTR(-EINVAL);
	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return ERR_PTR(-ENOMEM);
	dev->ops = ops;
	dev->priv = priv;
	dev->poll_ms = poll_ms;
	dev->irq = -1;
	init_waitqueue_head(&dev->wq);
	atomic_set(&dev->events, 0);
	INIT_DELAYED_WORK(&dev->poll_work, lwnet_poll_work);
	spin_lock_init(&dev->reap_lock);
	for (i = 0; i < LWNET_REAP_MAX; i++)
		dev->reap[i] = -1;
	INIT_DELAYED_WORK(&dev->reap_work, lwnet_reap_work);

	dev->net_misc.minor = LWNET_MINOR;
	dev->net_misc.name = "lwnet";
	dev->net_misc.fops = &lwnet_net_fops;
	dev->net_misc.mode = 0666;
	dev->store_misc.minor = MISC_DYNAMIC_MINOR;
	dev->store_misc.name = "lwstore";
	dev->store_misc.fops = &lwnet_store_fops;
	dev->store_misc.mode = 0600;
	return dev;
}
EXPORT_SYMBOL_GPL(lwnet_dev_create);

void lwnet_dev_destroy(struct lwnet_dev *dev)
{
	if (!dev)
		return;
	WARN_ON(dev->registered);
	if (dev->irq >= 0)
		free_irq(dev->irq, dev);
	cancel_delayed_work_sync(&dev->poll_work);
	cancel_delayed_work_sync(&dev->reap_work);
	/* One last attempt to give abandoned store slots back to the host. */
	lwnet_store_reap_now(dev);
	cancel_delayed_work_sync(&dev->reap_work);
	kfree(dev);
}
EXPORT_SYMBOL_GPL(lwnet_dev_destroy);

void *lwnet_dev_priv(struct lwnet_dev *dev)
{
	return dev->priv;
}
EXPORT_SYMBOL_GPL(lwnet_dev_priv);

int lwnet_register(struct lwnet_dev *dev)
{
	int ret;

	ret = misc_register(&dev->net_misc);
	if (ret) {
		pr_err("lwnet: cannot register /dev/lwnet (minor %d): %d\n",
		       LWNET_MINOR, ret);
		return ret;
	}
	ret = misc_register(&dev->store_misc);
	if (ret) {
		pr_err("lwnet: cannot register /dev/lwstore: %d\n", ret);
		misc_deregister(&dev->net_misc);
		return ret;
	}
	dev->registered = true;
	return 0;
}
EXPORT_SYMBOL_GPL(lwnet_register);

void lwnet_unregister(struct lwnet_dev *dev)
{
	if (!dev->registered)
		return;
	misc_deregister(&dev->store_misc);
	misc_deregister(&dev->net_misc);
	dev->registered = false;
}
EXPORT_SYMBOL_GPL(lwnet_unregister);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lwnet: TCP connections and a blob store through the host");
