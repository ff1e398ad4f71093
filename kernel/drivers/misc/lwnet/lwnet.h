/* SPDX-License-Identifier: GPL-2.0 */
/*
 * lwnet driver internals, shared by the core, the store device and the
 * KUnit tests (which drive these functions with a fake backend).
 */
#ifndef _LWNET_INTERNAL_H
#define _LWNET_INTERNAL_H

#include <linux/atomic.h>
#include <linux/interrupt.h>
#include <linux/lwnet_backend.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uio.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <uapi/linux/lwnet.h>
#include <uapi/linux/lwstore.h>

/* Largest host call: bytes moved per wasm_net_read/wasm_net_write. */
#define LWNET_IO_MAX		(32 * 1024)
/* Abandoned store tickets are polled this often until the host frees them. */
#define LWNET_REAP_MS		20
/* Poll fallback of a backend whose IRQ has fired at least once. */
#define LWNET_IRQ_FALLBACK_MS	1000
/* Store tickets interrupted by a signal that we still have to release. */
#define LWNET_REAP_MAX		(2 * LWHOST_STORE_SLOTS)
/*
 * A store request whose LWSTORE_CHUNK_MAX-sized bounce buffer cannot be had
 * in one block goes to the host in pieces this large: 64 KiB was the whole
 * request before, and still holds the longest key LWSTORE_LIST returns.
 */
#define LWNET_STORE_PIECE	(64 * 1024)

struct lwnet_dev {
	const struct lwnet_backend_ops *ops;
	void *priv;
	unsigned int poll_ms;		/* 0: the backend notifies */
	int irq;			/* requested IRQ, -1 when none */
	bool irq_seen;			/* an interrupt has arrived */

	wait_queue_head_t wq;		/* every waiter of every file */
	atomic_t events;		/* bumped by each notification */
	struct delayed_work poll_work;	/* one-shot, re-armed by waiters */

	spinlock_t reap_lock;		/* protects reap[] */
	int reap[LWNET_REAP_MAX];	/* tickets to release, -1 = none */
	struct delayed_work reap_work;

	struct miscdevice net_misc;
	struct miscdevice store_misc;
	bool registered;
};

/* Per open file of /dev/lwnet: one connection. */
struct lwnet_file {
	struct lwnet_dev *dev;

	struct mutex lock;	/* state below and every host call on id */
	u32 state;		/* LWNET_STATE_* */
	u32 flags;		/* LWNET_STATUS_* */
	int error;		/* positive errno once FAILED */
	int id;			/* host connection id, -1 when none */
	u64 bytes_in;
	u64 bytes_out;

	struct mutex rx_mutex;	/* one reader at a time; owns rx_buf */
	char *rx_buf;		/* bytes taken from the host, not yet read */
	size_t rx_off;
	size_t rx_len;

	struct mutex tx_mutex;	/* one writer at a time; owns tx_buf */
	char *tx_buf;
};

/* Core. */
int lwnet_errno(int err);
unsigned int lwnet_wait_seq(struct lwnet_dev *dev);
int lwnet_wait(struct lwnet_dev *dev, unsigned int seq);
void lwnet_kick_poll(struct lwnet_dev *dev);
unsigned int lwnet_poll_interval(struct lwnet_dev *dev);
irqreturn_t lwnet_irq(int irq, void *data);

/* /dev/lwnet, without the struct file layer. */
struct lwnet_file *lwnet_file_alloc(struct lwnet_dev *dev);
void lwnet_file_free(struct lwnet_file *f);
int lwnet_check_host(const char *host, size_t size);
int lwnet_connect(struct lwnet_file *f, const char *host, u32 port, u32 flags,
		  u32 timeout_ms, bool nonblock, int *id);
ssize_t lwnet_read(struct lwnet_file *f, struct iov_iter *to, bool nonblock);
ssize_t lwnet_write(struct lwnet_file *f, struct iov_iter *from,
		    bool nonblock);
__poll_t lwnet_poll_mask(struct lwnet_file *f);
int lwnet_shutdown(struct lwnet_file *f);
int lwnet_close_conn(struct lwnet_file *f);
void lwnet_status(struct lwnet_file *f, struct lwnet_status *st);
long lwnet_file_ioctl(struct lwnet_file *f, unsigned int cmd,
		      void __user *argp, bool nonblock);
extern const struct file_operations lwnet_net_fops;

/* /dev/lwstore, without the struct file layer. */
int lwnet_store_check_key(const char *key, u32 len, bool prefix);
int lwnet_store_check_io(unsigned int cmd, const struct lwstore_io *io);
int lwnet_store_check_list(const struct lwstore_list *ls);
int lwnet_store_call(struct lwnet_dev *dev, const struct lwhost_store_req *req,
		     void *out, u32 out_len);
long lwnet_store_rw(struct lwnet_dev *dev, const struct lwhost_store_req *req,
		    struct iov_iter *it, void *buf, u32 size);
void lwnet_store_reap_now(struct lwnet_dev *dev);
long lwnet_store_ioctl_dev(struct lwnet_dev *dev, unsigned int cmd,
			   void __user *argp);
extern const struct file_operations lwnet_store_fops;

#endif /* _LWNET_INTERNAL_H */
