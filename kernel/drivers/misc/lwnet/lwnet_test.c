// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for /dev/lwnet and /dev/lwstore, with a fake backend that
 * plays the host: connections move only when a test says so, and blocking
 * calls run in helper threads the test can signal, wake and time.
 */

#include <kunit/test.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uio.h>

#include "lwnet.h"

#define FAKE_CONNS	4
#define FAKE_RING	4096
#define FAKE_STORE_MAX	256

enum fake_state { FAKE_CONNECTING, FAKE_OPEN, FAKE_FAILED };

struct fake_conn {
	bool used;
	enum fake_state state;
	int err;		/* FAILED: errno reported by poll */
	char host[LWHOST_HOST_MAX];
	u32 host_len, port, flags, timeout_ms;
	char rx[FAKE_RING];	/* bytes for the guest */
	size_t rx_len;
	bool eof;
	char tx[FAKE_RING];	/* bytes the guest wrote */
	size_t tx_len;
	size_t tx_cap;		/* backpressure: tx accepts this many */
	bool shut;
	int read_ret;		/* non-zero: read returns this instead */
};

struct fake {
	spinlock_t lock;	/* protects everything below */
	struct fake_conn c[FAKE_CONNS];
	int open_ret;		/* non-zero: net_open returns this */
	int opens, closes, last_closed, shutdowns;
	int max_read, max_write;	/* largest count the driver asked for */
	bool forget_ids;	/* host lost every id: -EBADF */

	/* One store slot. */
	int store_busy;		/* submits that answer -EBUSY */
	int submits, polls;
	bool store_pending;	/* submitted, not yet released */
	bool store_done;	/* the host finished it */
	int store_result;
	struct lwhost_store_req req;
	char key[2 * LWHOST_KEY_MAX];
	u8 data[FAKE_STORE_MAX];
	u32 data_len;
};

static struct fake *fake_of(struct lwnet_dev *dev)
{
	return lwnet_dev_priv(dev);
}

static struct fake_conn *fake_conn(struct fake *fk, int id)
{
	if (fk->forget_ids || id < 0 || id >= FAKE_CONNS || !fk->c[id].used)
		return NULL;
	return &fk->c[id];
}

static int fake_net_open(struct lwnet_dev *dev, const char *host, u32 host_len,
			 u32 port, u32 flags, u32 timeout_ms)
{
	struct fake *fk = fake_of(dev);
	int i, ret = -EMFILE;

	spin_lock(&fk->lock);
	fk->opens++;
	if (fk->open_ret) {
		ret = fk->open_ret;
		goto out;
	}
	for (i = 0; i < FAKE_CONNS; i++) {
		struct fake_conn *c = &fk->c[i];

		if (c->used)
			continue;
		memset(c, 0, sizeof(*c));
		c->used = true;
		memcpy(c->host, host, min_t(u32, host_len, sizeof(c->host)));
		c->host_len = host_len;
		c->port = port;
		c->flags = flags;
		c->timeout_ms = timeout_ms;
		c->tx_cap = FAKE_RING;
		ret = i;
		break;
	}
out:
	spin_unlock(&fk->lock);
	return ret;
}

static int fake_net_write(struct lwnet_dev *dev, int id, const char *buf,
			  int len)
{
	struct fake *fk = fake_of(dev);
	struct fake_conn *c;
	int n;

	spin_lock(&fk->lock);
	fk->max_write = max(fk->max_write, len);
	c = fake_conn(fk, id);
	if (!c) {
		n = -EBADF;
	} else if (c->state == FAKE_FAILED) {
		n = -c->err;
	} else if (c->state == FAKE_CONNECTING) {
		n = -EAGAIN;
	} else if (c->shut) {
		n = -EPIPE;
	} else if (c->tx_len >= c->tx_cap) {
		n = -EAGAIN;
	} else {
		n = min_t(size_t, len, c->tx_cap - c->tx_len);
		memcpy(c->tx + c->tx_len, buf, n);
		c->tx_len += n;
	}
	spin_unlock(&fk->lock);
	return n;
}

static int fake_net_read(struct lwnet_dev *dev, int id, char *buf, int count)
{
	struct fake *fk = fake_of(dev);
	struct fake_conn *c;
	int n;

	spin_lock(&fk->lock);
	fk->max_read = max(fk->max_read, count);
	c = fake_conn(fk, id);
	if (!c) {
		n = -EBADF;
	} else if (c->read_ret) {
		n = c->read_ret;
	} else if (c->state == FAKE_FAILED) {
		n = -c->err;
	} else if (c->state == FAKE_CONNECTING) {
		n = -EAGAIN;
	} else if (!c->rx_len) {
		n = c->eof ? 0 : -EAGAIN;
	} else {
		n = min_t(size_t, count, c->rx_len);
		memcpy(buf, c->rx, n);
		memmove(c->rx, c->rx + n, c->rx_len - n);
		c->rx_len -= n;
	}
	spin_unlock(&fk->lock);
	return n;
}

static int fake_net_poll(struct lwnet_dev *dev, int id)
{
	struct fake *fk = fake_of(dev);
	struct fake_conn *c;
	int p = 0;

	spin_lock(&fk->lock);
	c = fake_conn(fk, id);
	if (!c) {
		p = -EBADF;
	} else if (c->state == FAKE_FAILED) {
		p = LWHOST_POLL_ERR | LWHOST_POLL_HUP |
		    (c->err << LWHOST_POLL_ERRNO_SHIFT);
	} else if (c->state == FAKE_OPEN) {
		if (c->rx_len || c->eof)
			p |= LWHOST_POLL_IN;
		if (c->eof && !c->rx_len)
			p |= LWHOST_POLL_HUP;
		if (c->tx_len < c->tx_cap && !c->shut)
			p |= LWHOST_POLL_OUT;
	}
	spin_unlock(&fk->lock);
	return p;
}

static int fake_net_shutdown(struct lwnet_dev *dev, int id)
{
	struct fake *fk = fake_of(dev);
	struct fake_conn *c;
	int ret = 0;

	spin_lock(&fk->lock);
	c = fake_conn(fk, id);
	if (!c)
		ret = -EBADF;
	else if (c->state != FAKE_OPEN)
		ret = -ENOTCONN;
	else
		c->shut = true;
	fk->shutdowns++;
	spin_unlock(&fk->lock);
	return ret;
}

static void fake_net_close(struct lwnet_dev *dev, int id)
{
	struct fake *fk = fake_of(dev);
	struct fake_conn *c;

	spin_lock(&fk->lock);
	c = fake_conn(fk, id);
	if (c)
		c->used = false;
	fk->closes++;
	fk->last_closed = id;
	spin_unlock(&fk->lock);
}

static int fake_store_submit(struct lwnet_dev *dev,
			     const struct lwhost_store_req *req)
{
	struct fake *fk = fake_of(dev);
	int ret = 7;	/* the ticket */

	spin_lock(&fk->lock);
	fk->submits++;
	if (fk->store_busy > 0) {
		fk->store_busy--;
		ret = -EBUSY;
	} else if (fk->store_pending) {
		ret = -EBUSY;
	} else {
		fk->req = *req;
		memcpy(fk->key, (void *)(uintptr_t)req->key,
		       min_t(u32, req->key_len, LWHOST_KEY_MAX));
		if (req->after_len)
			memcpy(fk->key + LWHOST_KEY_MAX,
			       (void *)(uintptr_t)req->after,
			       min_t(u32, req->after_len, LWHOST_KEY_MAX));
		if (req->op == LWHOST_STORE_WRITE) {
			fk->data_len = min_t(u32, req->len, FAKE_STORE_MAX);
			memcpy(fk->data, (void *)(uintptr_t)req->data,
			       fk->data_len);
		}
		fk->store_pending = true;
	}
	spin_unlock(&fk->lock);
	return ret;
}

static int fake_store_poll(struct lwnet_dev *dev, int ticket, void *buf,
			   u32 len)
{
	struct fake *fk = fake_of(dev);
	int ret;

	spin_lock(&fk->lock);
	fk->polls++;
	if (ticket != 7 || !fk->store_pending) {
		ret = -EBADF;
	} else if (!fk->store_done) {
		ret = -EINPROGRESS;
	} else {
		ret = fk->store_result;
		if (ret > 0 && buf)
			memcpy(buf, fk->data, min_t(u32, len,
						    min_t(u32, ret, FAKE_STORE_MAX)));
		fk->store_pending = false;
		fk->store_done = false;
	}
	spin_unlock(&fk->lock);
	return ret;
}

static const struct lwnet_backend_ops fake_ops = {
	.net_open	= fake_net_open,
	.net_write	= fake_net_write,
	.net_read	= fake_net_read,
	.net_poll	= fake_net_poll,
	.net_shutdown	= fake_net_shutdown,
	.net_close	= fake_net_close,
	.store_submit	= fake_store_submit,
	.store_poll	= fake_store_poll,
};

/* --- fixtures ----------------------------------------------------------- */

struct ctx {
	struct fake fk;
	struct lwnet_dev *dev;
	struct lwnet_file *f;
};

static struct ctx *setup_poll(struct kunit *test, unsigned int poll_ms)
{
	struct ctx *t = kunit_kzalloc(test, sizeof(*t), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, t);
	spin_lock_init(&t->fk.lock);
	t->dev = lwnet_dev_create(&fake_ops, poll_ms, &t->fk);
	KUNIT_ASSERT_FALSE(test, IS_ERR(t->dev));
	t->f = lwnet_file_alloc(t->dev);
	KUNIT_ASSERT_NOT_NULL(test, t->f);
	test->priv = t;
	return t;
}

static struct ctx *setup(struct kunit *test)
{
	return setup_poll(test, 0);
}

static void lwnet_test_exit(struct kunit *test)
{
	struct ctx *t = test->priv;

	if (!t)
		return;
	if (t->f)
		lwnet_file_free(t->f);
	lwnet_dev_destroy(t->dev);
}

/* Host side actions, each followed by the notification an IRQ would give. */
static void host_set(struct ctx *t, int id, enum fake_state st, int err)
{
	spin_lock(&t->fk.lock);
	t->fk.c[id].state = st;
	t->fk.c[id].err = err;
	spin_unlock(&t->fk.lock);
	lwnet_notify(t->dev);
}

static void host_send(struct ctx *t, int id, const char *data, size_t len,
		      bool notify)
{
	spin_lock(&t->fk.lock);
	memcpy(t->fk.c[id].rx + t->fk.c[id].rx_len, data, len);
	t->fk.c[id].rx_len += len;
	spin_unlock(&t->fk.lock);
	if (notify)
		lwnet_notify(t->dev);
}

static void host_eof(struct ctx *t, int id)
{
	spin_lock(&t->fk.lock);
	t->fk.c[id].eof = true;
	spin_unlock(&t->fk.lock);
	lwnet_notify(t->dev);
}

/* Opens a connection and has the host accept it; returns its id. */
static int connected(struct kunit *test, struct ctx *t)
{
	int id;

	KUNIT_ASSERT_EQ(test, lwnet_connect(t->f, "example.com", 80, 0, 0,
					    true, &id), -EINPROGRESS);
	host_set(t, id, FAKE_OPEN, 0);
	KUNIT_ASSERT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLOUT);
	return id;
}

static ssize_t kread(struct lwnet_file *f, void *buf, size_t len, bool nb)
{
	struct kvec kv = { .iov_base = buf, .iov_len = len };
	struct iov_iter it;

	iov_iter_kvec(&it, READ, &kv, 1, len);
	return lwnet_read(f, &it, nb);
}

static ssize_t kwrite(struct lwnet_file *f, const void *buf, size_t len,
		      bool nb)
{
	struct kvec kv = { .iov_base = (void *)buf, .iov_len = len };
	struct iov_iter it;

	iov_iter_kvec(&it, WRITE, &kv, 1, len);
	return lwnet_write(f, &it, nb);
}

static struct lwnet_status status(struct lwnet_file *f)
{
	struct lwnet_status st;

	lwnet_status(f, &st);
	return st;
}

/* --- blocking calls in a helper thread --------------------------------- */

enum runner_op { RUN_CONNECT, RUN_READ, RUN_WRITE, RUN_STORE };

struct runner {
	struct ctx *t;
	enum runner_op op;
	struct completion done;
	struct task_struct *task;
	long ret;
	char *buf;
	size_t len;
	struct lwhost_store_req req;
};

static int runner_fn(void *data)
{
	struct runner *r = data;
	int id;

	allow_signal(SIGINT);
	switch (r->op) {
	case RUN_CONNECT:
		r->ret = lwnet_connect(r->t->f, "example.com", 443, 0, 0,
				       false, &id);
		break;
	case RUN_READ:
		r->ret = kread(r->t->f, r->buf, r->len, false);
		break;
	case RUN_WRITE:
		r->ret = kwrite(r->t->f, r->buf, r->len, false);
		break;
	case RUN_STORE:
		r->ret = lwnet_store_call(r->t->dev, &r->req, r->buf, r->len);
		break;
	}
	flush_signals(current);
	complete_all(&r->done);
	return 0;
}

static struct runner *run_with(struct kunit *test, struct ctx *t,
			       enum runner_op op, size_t len, const void *data,
			       const struct lwhost_store_req *req)
{
	struct runner *r = kunit_kzalloc(test, sizeof(*r), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, r);
	r->t = t;
	r->op = op;
	r->len = len;
	if (len) {
		r->buf = kunit_kzalloc(test, len, GFP_KERNEL);
		KUNIT_ASSERT_NOT_NULL(test, r->buf);
		if (data)
			memcpy(r->buf, data, len);
	}
	if (req)
		r->req = *req;
	init_completion(&r->done);
	r->task = kthread_create(runner_fn, r, "lwnet-test");
	KUNIT_ASSERT_FALSE(test, IS_ERR(r->task));
	get_task_struct(r->task);
	wake_up_process(r->task);
	return r;
}

static struct runner *run(struct kunit *test, struct ctx *t,
			  enum runner_op op, size_t len)
{
	return run_with(test, t, op, len, NULL, NULL);
}

static bool finished_within(struct runner *r, unsigned int ms)
{
	return wait_for_completion_timeout(&r->done, msecs_to_jiffies(ms)) > 0;
}

/* Ends a runner whatever state the test left it in. */
static void reap(struct runner *r)
{
	while (!finished_within(r, 50)) {
		send_sig(SIGINT, r->task, 1);
		lwnet_notify(r->t->dev);
	}
	put_task_struct(r->task);
}

/* The helper is asleep, not just slow: it stays blocked for a while. */
static void expect_blocked(struct kunit *test, struct runner *r)
{
	KUNIT_EXPECT_FALSE(test, finished_within(r, 30));
}

/* --- open ----------------------------------------------------------------- */

static void open_blocking_waits_for_connect(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct runner *r = run(test, t, RUN_CONNECT, 0);

	expect_blocked(test, r);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_CONNECTING);
	host_set(t, 0, FAKE_OPEN, 0);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, 0);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_CONNECTED);
	reap(r);
}

static void open_blocking_refused(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct runner *r = run(test, t, RUN_CONNECT, 0);
	struct lwnet_status st;

	expect_blocked(test, r);
	host_set(t, 0, FAKE_FAILED, ECONNREFUSED);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, -ECONNREFUSED);
	st = status(t->f);
	KUNIT_EXPECT_EQ(test, st.state, LWNET_STATE_FAILED);
	KUNIT_EXPECT_EQ(test, st.error, ECONNREFUSED);
	reap(r);
}

static void open_signal_ends_wait(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct runner *r = run(test, t, RUN_CONNECT, 0);

	expect_blocked(test, r);
	send_sig(SIGINT, r->task, 1);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 100));
	KUNIT_EXPECT_EQ(test, r->ret, -EINTR);
	/* The connection goes on in the background, as connect() does. */
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_CONNECTING);
	host_set(t, 0, FAKE_OPEN, 0);
	KUNIT_EXPECT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLOUT);
	reap(r);
}

static void open_nonblock_pollout_on_connect(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id;

	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "example.com", 80, 0, 0, true,
					    &id), -EINPROGRESS);
	KUNIT_EXPECT_EQ(test, id, 0);
	KUNIT_EXPECT_EQ(test, lwnet_poll_mask(t->f), (__poll_t)0);
	host_set(t, id, FAKE_OPEN, 0);
	KUNIT_EXPECT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLOUT);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_CONNECTED);
}

static void open_nonblock_pollerr_on_failure(struct kunit *test)
{
	struct ctx *t = setup(test);
	__poll_t mask;
	int id;

	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "10.0.0.1", 80, 0, 0, true,
					    &id), -EINPROGRESS);
	host_set(t, id, FAKE_FAILED, EACCES);
	mask = lwnet_poll_mask(t->f);
	KUNIT_EXPECT_TRUE(test, mask & EPOLLERR);
	KUNIT_EXPECT_FALSE(test, mask & EPOLLOUT);
	KUNIT_EXPECT_EQ(test, status(t->f).error, EACCES);
}

static void open_rejects_bad_host(struct kunit *test)
{
	struct ctx *t = setup(test);
	char *host = kunit_kzalloc(test, LWNET_HOST_MAX, GFP_KERNEL);
	int id;

	KUNIT_ASSERT_NOT_NULL(test, host);
	/* Empty, and 256 bytes without a NUL. */
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, host, 80, 0, 0, true, &id),
			-EINVAL);
	memset(host, 'a', LWNET_HOST_MAX);
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, host, 80, 0, 0, true, &id),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, id, -1);
	/* The longest name that fits is fine. */
	host[LWNET_HOST_MAX - 1] = '\0';
	KUNIT_EXPECT_EQ(test, lwnet_check_host(host, LWNET_HOST_MAX), 0);
	KUNIT_EXPECT_EQ(test, t->fk.opens, 0);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_IDLE);
}

static void open_rejects_bad_port_and_flags(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id;

	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "a", 0, 0, 0, true, &id),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "a", 65536, 0, 0, true, &id),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "a", 80, 0x80, 0, true, &id),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, t->fk.opens, 0);
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "a", 65535, 0, 0, true, &id),
			-EINPROGRESS);
}

static void open_passes_tls_timeout_and_exact_host(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id;

	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "example.org", 443,
					    LWNET_OPEN_TLS, 1234, true, &id),
			-EINPROGRESS);
	KUNIT_EXPECT_EQ(test, t->fk.c[id].flags, (u32)LWHOST_OPEN_TLS);
	KUNIT_EXPECT_EQ(test, t->fk.c[id].timeout_ms, 1234u);
	KUNIT_EXPECT_EQ(test, t->fk.c[id].port, 443u);
	KUNIT_EXPECT_EQ(test, t->fk.c[id].host_len, 11u);
	KUNIT_EXPECT_EQ(test, memcmp(t->fk.c[id].host, "example.org", 11), 0);
}

static void open_twice_fails(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id, id2;

	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "a", 80, 0, 0, true, &id),
			-EINPROGRESS);
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "b", 80, 0, 0, true, &id2),
			-EALREADY);
	host_set(t, id, FAKE_OPEN, 0);
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "b", 80, 0, 0, true, &id2),
			-EISCONN);
	KUNIT_EXPECT_EQ(test, t->fk.opens, 1);
}

static void open_host_errors_mapped(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct lwnet_file *f2;
	int id;

	t->fk.open_ret = -EMFILE;
	KUNIT_EXPECT_EQ(test, lwnet_connect(t->f, "a", 80, 0, 0, true, &id),
			-EMFILE);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_FAILED);
	/* A host answer that is no errno at all becomes EIO. */
	f2 = lwnet_file_alloc(t->dev);
	KUNIT_ASSERT_NOT_NULL(test, f2);
	t->fk.open_ret = -100000;
	KUNIT_EXPECT_EQ(test, lwnet_connect(f2, "a", 80, 0, 0, true, &id),
			-EIO);
	KUNIT_EXPECT_EQ(test, status(f2).error, EIO);
	lwnet_file_free(f2);
}

/* --- read ----------------------------------------------------------------- */

static void io_before_open_enotconn(struct kunit *test)
{
	struct ctx *t = setup(test);
	char buf[4];

	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), false),
			(ssize_t)-ENOTCONN);
	KUNIT_EXPECT_EQ(test, kwrite(t->f, "x", 1, false), (ssize_t)-ENOTCONN);
	KUNIT_EXPECT_EQ(test, lwnet_shutdown(t->f), -ENOTCONN);
	KUNIT_EXPECT_EQ(test, lwnet_close_conn(t->f), -ENOTCONN);
	KUNIT_EXPECT_EQ(test, lwnet_poll_mask(t->f), EPOLLHUP);
}

static void read_returns_data_and_counts(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	char buf[16] = {};

	host_send(t, id, "hello", 5, true);
	KUNIT_EXPECT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLIN);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), false), (ssize_t)5);
	KUNIT_EXPECT_STREQ(test, buf, "hello");
	KUNIT_EXPECT_EQ(test, status(t->f).bytes_in, 5ull);
}

static void read_nonblock_eagain(struct kunit *test)
{
	struct ctx *t = setup(test);
	char buf[4];

	connected(test, t);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), true),
			(ssize_t)-EAGAIN);
	KUNIT_EXPECT_FALSE(test, lwnet_poll_mask(t->f) & EPOLLIN);
}

static void read_blocks_until_data(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);

	expect_blocked(test, r);
	host_send(t, id, "abc", 3, true);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, 3);
	KUNIT_EXPECT_EQ(test, memcmp(r->buf, "abc", 3), 0);
	reap(r);
}

static void read_zero_length_is_noop(struct kunit *test)
{
	struct ctx *t = setup(test);
	char buf[1];

	connected(test, t);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, 0, false), (ssize_t)0);
	KUNIT_EXPECT_EQ(test, kwrite(t->f, buf, 0, false), (ssize_t)0);
	KUNIT_EXPECT_EQ(test, t->fk.max_read, 0);
	KUNIT_EXPECT_EQ(test, t->fk.max_write, 0);
}

static void read_eof_returns_zero_and_pollhup(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	char buf[8];
	__poll_t mask;

	host_send(t, id, "xy", 2, false);
	host_eof(t, id);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), false), (ssize_t)2);
	mask = lwnet_poll_mask(t->f);
	KUNIT_EXPECT_TRUE(test, mask & EPOLLHUP);
	KUNIT_EXPECT_TRUE(test, mask & EPOLLIN);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), false), (ssize_t)0);
	KUNIT_EXPECT_TRUE(test, status(t->f).flags & LWNET_STATUS_PEER_EOF);
}

static void read_signal_ends_wait_within_100ms(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);
	char buf[8];

	expect_blocked(test, r);
	send_sig(SIGINT, r->task, 1);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 100));
	KUNIT_EXPECT_EQ(test, r->ret, -ERESTARTSYS);
	/* The connection is intact: later data still arrives in order. */
	host_send(t, id, "ok", 2, true);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), true), (ssize_t)2);
	KUNIT_EXPECT_EQ(test, memcmp(buf, "ok", 2), 0);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_CONNECTED);
	reap(r);
}

static void read_small_buffer_keeps_the_rest(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	char buf[8] = {};

	host_send(t, id, "abcdef", 6, true);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, 2, true), (ssize_t)2);
	KUNIT_EXPECT_EQ(test, memcmp(buf, "ab", 2), 0);
	KUNIT_EXPECT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLIN);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), true), (ssize_t)4);
	KUNIT_EXPECT_EQ(test, memcmp(buf, "cdef", 4), 0);
	KUNIT_EXPECT_EQ(test, status(t->f).bytes_in, 6ull);
}

static void read_host_call_is_capped(struct kunit *test)
{
	struct ctx *t = setup(test);
	size_t len = 4 * LWNET_IO_MAX;
	char *buf = kunit_kzalloc(test, len, GFP_KERNEL);
	int id = connected(test, t);

	KUNIT_ASSERT_NOT_NULL(test, buf);
	host_send(t, id, "z", 1, true);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, len, true), (ssize_t)1);
	KUNIT_EXPECT_LE(test, t->fk.max_read, LWNET_IO_MAX);
	KUNIT_EXPECT_GT(test, t->fk.max_read, 0);
}

static void read_host_overclaim_is_eio(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	char buf[8];

	t->fk.c[id].read_ret = LWNET_IO_MAX + 1;
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), true),
			(ssize_t)-EIO);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_FAILED);
	KUNIT_EXPECT_EQ(test, status(t->f).error, EIO);
}

/* --- write ---------------------------------------------------------------- */

static void write_sends_and_counts(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);

	KUNIT_EXPECT_EQ(test, kwrite(t->f, "GET /", 5, false), (ssize_t)5);
	KUNIT_EXPECT_EQ(test, t->fk.c[id].tx_len, (size_t)5);
	KUNIT_EXPECT_EQ(test, memcmp(t->fk.c[id].tx, "GET /", 5), 0);
	KUNIT_EXPECT_EQ(test, status(t->f).bytes_out, 5ull);
}

static void write_nonblock_backpressure(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);

	t->fk.c[id].tx_cap = 8;
	KUNIT_EXPECT_EQ(test, kwrite(t->f, "0123456789abcdef", 16, true),
			(ssize_t)8);
	KUNIT_EXPECT_FALSE(test, lwnet_poll_mask(t->f) & EPOLLOUT);
	KUNIT_EXPECT_EQ(test, kwrite(t->f, "x", 1, true), (ssize_t)-EAGAIN);
	KUNIT_EXPECT_EQ(test, status(t->f).bytes_out, 8ull);
}

static void write_blocks_until_space(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	struct fake_conn *c = &t->fk.c[id];
	struct runner *r;

	c->tx_cap = 8;
	r = run_with(test, t, RUN_WRITE, 20, "0123456789abcdefghij", NULL);
	expect_blocked(test, r);
	KUNIT_EXPECT_EQ(test, c->tx_len, (size_t)8);
	/* The host makes room; the writer goes on where it stopped. */
	spin_lock(&t->fk.lock);
	c->tx_cap = 20;
	spin_unlock(&t->fk.lock);
	lwnet_notify(t->dev);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, 20);
	KUNIT_EXPECT_EQ(test, memcmp(c->tx, "0123456789abcdefghij", 20), 0);
	reap(r);
}

static void write_signal_ends_wait_within_100ms(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	struct runner *r;

	t->fk.c[id].tx_cap = 0;
	r = run(test, t, RUN_WRITE, 4);
	expect_blocked(test, r);
	send_sig(SIGINT, r->task, 1);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 100));
	KUNIT_EXPECT_EQ(test, r->ret, -ERESTARTSYS);
	KUNIT_EXPECT_EQ(test, status(t->f).bytes_out, 0ull);
	reap(r);
}

static void write_host_call_is_capped(struct kunit *test)
{
	struct ctx *t = setup(test);
	size_t len = 3 * LWNET_IO_MAX;
	char *buf = kunit_kzalloc(test, len, GFP_KERNEL);
	int id = connected(test, t);

	KUNIT_ASSERT_NOT_NULL(test, buf);
	t->fk.c[id].tx_cap = 100;
	KUNIT_EXPECT_EQ(test, kwrite(t->f, buf, len, true), (ssize_t)100);
	KUNIT_EXPECT_LE(test, t->fk.max_write, LWNET_IO_MAX);
}

static void shutdown_then_write_epipe(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);

	KUNIT_EXPECT_EQ(test, lwnet_shutdown(t->f), 0);
	KUNIT_EXPECT_TRUE(test, t->fk.c[id].shut);
	KUNIT_EXPECT_TRUE(test, status(t->f).flags & LWNET_STATUS_WR_SHUT);
	KUNIT_EXPECT_EQ(test, kwrite(t->f, "x", 1, true), (ssize_t)-EPIPE);
	KUNIT_EXPECT_FALSE(test, lwnet_poll_mask(t->f) & EPOLLOUT);
	/* A second shutdown is a no-op, and reading still works. */
	KUNIT_EXPECT_EQ(test, lwnet_shutdown(t->f), 0);
	KUNIT_EXPECT_EQ(test, t->fk.shutdowns, 1);
	host_send(t, id, "r", 1, true);
	KUNIT_EXPECT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLIN);
}

static void shutdown_while_connecting_enotconn(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id;

	lwnet_connect(t->f, "a", 80, 0, 0, true, &id);
	KUNIT_EXPECT_EQ(test, lwnet_shutdown(t->f), -ENOTCONN);
	KUNIT_EXPECT_EQ(test, t->fk.shutdowns, 0);
}

/* --- close, failure ------------------------------------------------------- */

static void close_wakes_blocked_reader(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);

	expect_blocked(test, r);
	KUNIT_EXPECT_EQ(test, lwnet_close_conn(t->f), 0);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 100));
	KUNIT_EXPECT_EQ(test, r->ret, 0);
	KUNIT_EXPECT_EQ(test, t->fk.closes, 1);
	KUNIT_EXPECT_EQ(test, t->fk.last_closed, id);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_CLOSED);
	KUNIT_EXPECT_EQ(test, lwnet_close_conn(t->f), -ENOTCONN);
	KUNIT_EXPECT_EQ(test, kwrite(t->f, "x", 1, true), (ssize_t)-EPIPE);
	reap(r);
}

static void release_closes_host_connection(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);

	lwnet_file_free(t->f);
	t->f = NULL;
	KUNIT_EXPECT_EQ(test, t->fk.closes, 1);
	KUNIT_EXPECT_EQ(test, t->fk.last_closed, id);
	KUNIT_EXPECT_FALSE(test, t->fk.c[id].used);
}

static void release_of_idle_file_calls_no_host(struct kunit *test)
{
	struct ctx *t = setup(test);

	lwnet_file_free(t->f);
	t->f = NULL;
	KUNIT_EXPECT_EQ(test, t->fk.closes, 0);
}

static void reset_mid_stream_fails_everything(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	char buf[4];

	host_set(t, id, FAKE_FAILED, ECONNRESET);
	KUNIT_EXPECT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLERR);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), false),
			(ssize_t)-ECONNRESET);
	KUNIT_EXPECT_EQ(test, kwrite(t->f, "x", 1, false),
			(ssize_t)-ECONNRESET);
	KUNIT_EXPECT_EQ(test, status(t->f).error, ECONNRESET);
	/* The failed id is still released on close. */
	lwnet_file_free(t->f);
	t->f = NULL;
	KUNIT_EXPECT_EQ(test, t->fk.last_closed, id);
}

static void reset_wakes_blocked_reader(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);

	expect_blocked(test, r);
	host_set(t, id, FAKE_FAILED, ECONNRESET);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, -ECONNRESET);
	reap(r);
}

static void host_forgetting_id_is_a_reset(struct kunit *test)
{
	struct ctx *t = setup(test);
	char buf[4];

	connected(test, t);
	t->fk.forget_ids = true;
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), true),
			(ssize_t)-ECONNRESET);
	KUNIT_EXPECT_EQ(test, status(t->f).error, ECONNRESET);
}

static void poll_bogus_host_errno_is_eio(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);

	host_set(t, id, FAKE_FAILED, 0);	/* ERR bit, no errno */
	KUNIT_EXPECT_TRUE(test, lwnet_poll_mask(t->f) & EPOLLERR);
	KUNIT_EXPECT_EQ(test, status(t->f).error, EIO);
}

/* --- wake-ups ------------------------------------------------------------- */

static void irq_backend_needs_notification(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);

	expect_blocked(test, r);
	host_send(t, id, "q", 1, false);	/* no IRQ yet */
	expect_blocked(test, r);
	lwnet_notify(t->dev);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, 1);
	reap(r);
}

static void timer_backend_polls_while_waiting(struct kunit *test)
{
	struct ctx *t = setup_poll(test, 5);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);

	expect_blocked(test, r);
	host_send(t, id, "tick", 4, false);	/* no notification at all */
	KUNIT_EXPECT_TRUE(test, finished_within(r, 200));
	KUNIT_EXPECT_EQ(test, r->ret, 4);
	reap(r);
	/* With no waiter left, the poll work stops re-arming itself. */
	msleep(40);
	KUNIT_EXPECT_FALSE(test, delayed_work_pending(&t->dev->poll_work));
}

/*
 * The wasm target's path: the backend requested an IRQ and keeps a poll
 * interval as fallback; lwnet_irq() is what the interrupt runs.
 */
static void irq_wakes_blocked_reader(struct kunit *test)
{
	/* A fallback far longer than the test: only the interrupt can wake. */
	struct ctx *t = setup_poll(test, 60000);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);

	expect_blocked(test, r);
	host_send(t, id, "irq!", 4, false);
	expect_blocked(test, r);
	KUNIT_EXPECT_EQ(test, lwnet_irq(LWHOST_WASM_IRQ, t->dev), IRQ_HANDLED);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, 4);
	KUNIT_EXPECT_EQ(test, memcmp(r->buf, "irq!", 4), 0);
	reap(r);
}

static void irq_relaxes_poll_fallback(struct kunit *test)
{
	struct ctx *t = setup_poll(test, 5);

	/* No interrupt yet: the host may never send one, keep polling fast. */
	KUNIT_EXPECT_EQ(test, lwnet_poll_interval(t->dev), 5U);
	lwnet_irq(LWHOST_WASM_IRQ, t->dev);
	KUNIT_EXPECT_EQ(test, lwnet_poll_interval(t->dev),
			(unsigned int)LWNET_IRQ_FALLBACK_MS);
}

static void irq_on_notifying_backend_adds_no_poll(struct kunit *test)
{
	struct ctx *t = setup(test);

	lwnet_irq(LWHOST_WASM_IRQ, t->dev);
	KUNIT_EXPECT_EQ(test, lwnet_poll_interval(t->dev), 0U);
}

static void irq_after_relaxing_still_wakes(struct kunit *test)
{
	struct ctx *t = setup_poll(test, 5);
	int id = connected(test, t);
	struct runner *r;

	lwnet_irq(LWHOST_WASM_IRQ, t->dev);
	r = run(test, t, RUN_READ, 8);
	expect_blocked(test, r);
	/* The relaxed fallback (1 s) does not fire within these 30 ms. */
	host_send(t, id, "late", 4, false);
	expect_blocked(test, r);
	lwnet_irq(LWHOST_WASM_IRQ, t->dev);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 500));
	KUNIT_EXPECT_EQ(test, r->ret, 4);
	reap(r);
}

/* --- ioctl ---------------------------------------------------------------- */

static void unknown_ioctls_enotty(struct kunit *test)
{
	struct ctx *t = setup(test);

	KUNIT_EXPECT_EQ(test, lwnet_file_ioctl(t->f, _IO('N', 99), NULL, false),
			-ENOTTY);
	KUNIT_EXPECT_EQ(test, lwnet_file_ioctl(t->f, LWSTORE_WRITE, NULL, false),
			-ENOTTY);
	KUNIT_EXPECT_EQ(test, lwnet_store_ioctl_dev(t->dev, LWNET_OPEN, NULL),
			-ENOTTY);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_IDLE);
}

static void ioctl_numbers_are_stable(struct kunit *test)
{
	/* The seed's lwtcp was built against these exact values. */
	KUNIT_EXPECT_EQ(test, sizeof(struct lwnet_open_args), (size_t)264);
	KUNIT_EXPECT_EQ(test, (unsigned int)LWNET_OPEN, 0xc1084e01u);
	KUNIT_EXPECT_EQ(test, (unsigned int)LWNET_CLOSE, 0x40044e02u);
	KUNIT_EXPECT_EQ(test, LWNET_MINOR, 123);
}

/* --- store ---------------------------------------------------------------- */

static void store_key_validation(struct kunit *test)
{
	static const char * const good[] = { "a", "lwsync/home.tar", "a/.b",
					     "a/b..c", "..a" };
	static const char * const bad[] = { ".", "..", "../x", "a/../b", "a/..",
					    "a/./b", "/a", "a/", "a//b" };
	char *big = kunit_kzalloc(test, LWSTORE_KEY_MAX + 1, GFP_KERNEL);
	int i;

	KUNIT_ASSERT_NOT_NULL(test, big);
	for (i = 0; i < ARRAY_SIZE(good); i++) {
		int ret = lwnet_store_check_key(good[i], strlen(good[i]), false);

		KUNIT_EXPECT_EQ_MSG(test, ret, 0, "key %s", good[i]);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		int ret = lwnet_store_check_key(bad[i], strlen(bad[i]), false);

		KUNIT_EXPECT_EQ_MSG(test, ret, -EINVAL, "key %s", bad[i]);
	}
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("", 0, false), -EINVAL);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("a\0b", 3, false), -EINVAL);
	memset(big, 'k', LWSTORE_KEY_MAX + 1);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key(big, LWSTORE_KEY_MAX, false),
			0);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key(big, LWSTORE_KEY_MAX + 1,
						    false), -EINVAL);
}

static void store_prefix_validation(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("", 0, true), 0);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("lwsync/", 7, true), 0);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("home/.ba", 8, true), 0);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("../", 3, true), -EINVAL);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("a/../b", 6, true), -EINVAL);
	KUNIT_EXPECT_EQ(test, lwnet_store_check_key("a\0", 2, true), -EINVAL);
}

static struct lwhost_store_req write_req(const char *key, const void *data,
					 u32 len, u32 flags)
{
	struct lwhost_store_req req = {
		.op = LWHOST_STORE_WRITE,
		.flags = flags,
		.key = (uintptr_t)key,
		.key_len = strlen(key),
		.data = (uintptr_t)data,
		.len = len,
	};
	return req;
}

/* The host finishes the pending request with result after a short delay. */
static void host_finish_store(struct ctx *t, int result)
{
	spin_lock(&t->fk.lock);
	t->fk.store_done = true;
	t->fk.store_result = result;
	spin_unlock(&t->fk.lock);
	lwnet_notify(t->dev);
}

static void store_write_waits_for_host(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct lwhost_store_req req = write_req("lwsync/m", "data", 4,
						LWHOST_STORE_COMMIT);
	struct runner *r = run_with(test, t, RUN_STORE, 0, NULL, &req);

	expect_blocked(test, r);
	host_finish_store(t, 4);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, 4);
	KUNIT_EXPECT_EQ(test, t->fk.req.op, (u32)LWHOST_STORE_WRITE);
	KUNIT_EXPECT_EQ(test, t->fk.req.flags, (u32)LWHOST_STORE_COMMIT);
	KUNIT_EXPECT_EQ(test, memcmp(t->fk.key, "lwsync/m", 8), 0);
	KUNIT_EXPECT_EQ(test, memcmp(t->fk.data, "data", 4), 0);
	KUNIT_EXPECT_FALSE(test, t->fk.store_pending);
	reap(r);
}

static void store_read_copies_output(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct lwhost_store_req req = { .op = LWHOST_STORE_READ,
					.key = (uintptr_t)"k", .key_len = 1,
					.len = 16 };
	char out[16] = {};

	memcpy(t->fk.data, "snapshot", 8);
	t->fk.store_done = true;	/* the host answers at once */
	t->fk.store_result = 8;
	KUNIT_EXPECT_EQ(test, lwnet_store_call(t->dev, &req, out, sizeof(out)),
			8);
	KUNIT_EXPECT_EQ(test, memcmp(out, "snapshot", 8), 0);
}

static void store_host_overclaim_is_eio(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct lwhost_store_req req = { .op = LWHOST_STORE_LIST,
					.len = 4 };
	char out[4];

	t->fk.store_done = true;
	t->fk.store_result = 100;
	KUNIT_EXPECT_EQ(test, lwnet_store_call(t->dev, &req, out, sizeof(out)),
			-EIO);
}

static void store_errors_pass_through(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct lwhost_store_req req = write_req("k", "v", 1, 0);

	t->fk.store_done = true;
	t->fk.store_result = -ENOSPC;
	KUNIT_EXPECT_EQ(test, lwnet_store_call(t->dev, &req, NULL, 0), -ENOSPC);
	t->fk.store_done = true;
	t->fk.store_result = -5000;	/* not an errno */
	KUNIT_EXPECT_EQ(test, lwnet_store_call(t->dev, &req, NULL, 0), -EIO);
}

static void store_busy_waits_for_a_slot(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct lwhost_store_req req = write_req("k", "v", 1, 0);
	struct runner *r;

	t->fk.store_busy = 1000;
	r = run_with(test, t, RUN_STORE, 0, NULL, &req);
	expect_blocked(test, r);
	KUNIT_EXPECT_LE(test, t->fk.submits, 2);	/* sleeps, no spinning */
	spin_lock(&t->fk.lock);
	t->fk.store_busy = 0;
	t->fk.store_done = true;
	t->fk.store_result = 1;
	spin_unlock(&t->fk.lock);
	lwnet_notify(t->dev);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 1000));
	KUNIT_EXPECT_EQ(test, r->ret, 1);
	reap(r);
}

static void store_signal_abandons_and_reaps_ticket(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct lwhost_store_req req = write_req("k", "v", 1,
						LWHOST_STORE_COMMIT);
	struct runner *r = run_with(test, t, RUN_STORE, 0, NULL, &req);

	expect_blocked(test, r);
	KUNIT_EXPECT_TRUE(test, t->fk.store_pending);
	send_sig(SIGINT, r->task, 1);
	KUNIT_EXPECT_TRUE(test, finished_within(r, 100));
	KUNIT_EXPECT_EQ(test, r->ret, -EINTR);
	/* The host still owns the request; the slot comes back when done. */
	KUNIT_EXPECT_TRUE(test, t->fk.store_pending);
	host_finish_store(t, 1);
	lwnet_store_reap_now(t->dev);
	KUNIT_EXPECT_FALSE(test, t->fk.store_pending);
	reap(r);
}

static struct kunit_case lwnet_test_cases[] = {
	KUNIT_CASE(open_blocking_waits_for_connect),
	KUNIT_CASE(open_blocking_refused),
	KUNIT_CASE(open_signal_ends_wait),
	KUNIT_CASE(open_nonblock_pollout_on_connect),
	KUNIT_CASE(open_nonblock_pollerr_on_failure),
	KUNIT_CASE(open_rejects_bad_host),
	KUNIT_CASE(open_rejects_bad_port_and_flags),
	KUNIT_CASE(open_passes_tls_timeout_and_exact_host),
	KUNIT_CASE(open_twice_fails),
	KUNIT_CASE(open_host_errors_mapped),
	KUNIT_CASE(io_before_open_enotconn),
	KUNIT_CASE(read_returns_data_and_counts),
	KUNIT_CASE(read_nonblock_eagain),
	KUNIT_CASE(read_blocks_until_data),
	KUNIT_CASE(read_zero_length_is_noop),
	KUNIT_CASE(read_eof_returns_zero_and_pollhup),
	KUNIT_CASE(read_signal_ends_wait_within_100ms),
	KUNIT_CASE(read_small_buffer_keeps_the_rest),
	KUNIT_CASE(read_host_call_is_capped),
	KUNIT_CASE(read_host_overclaim_is_eio),
	KUNIT_CASE(write_sends_and_counts),
	KUNIT_CASE(write_nonblock_backpressure),
	KUNIT_CASE(write_blocks_until_space),
	KUNIT_CASE(write_signal_ends_wait_within_100ms),
	KUNIT_CASE(write_host_call_is_capped),
	KUNIT_CASE(shutdown_then_write_epipe),
	KUNIT_CASE(shutdown_while_connecting_enotconn),
	KUNIT_CASE(close_wakes_blocked_reader),
	KUNIT_CASE(release_closes_host_connection),
	KUNIT_CASE(release_of_idle_file_calls_no_host),
	KUNIT_CASE(reset_mid_stream_fails_everything),
	KUNIT_CASE(reset_wakes_blocked_reader),
	KUNIT_CASE(host_forgetting_id_is_a_reset),
	KUNIT_CASE(poll_bogus_host_errno_is_eio),
	KUNIT_CASE(irq_backend_needs_notification),
	KUNIT_CASE(timer_backend_polls_while_waiting),
	KUNIT_CASE(irq_wakes_blocked_reader),
	KUNIT_CASE(irq_relaxes_poll_fallback),
	KUNIT_CASE(irq_on_notifying_backend_adds_no_poll),
	KUNIT_CASE(irq_after_relaxing_still_wakes),
	KUNIT_CASE(unknown_ioctls_enotty),
	KUNIT_CASE(ioctl_numbers_are_stable),
	KUNIT_CASE(store_key_validation),
	KUNIT_CASE(store_prefix_validation),
	KUNIT_CASE(store_write_waits_for_host),
	KUNIT_CASE(store_read_copies_output),
	KUNIT_CASE(store_host_overclaim_is_eio),
	KUNIT_CASE(store_errors_pass_through),
	KUNIT_CASE(store_busy_waits_for_a_slot),
	KUNIT_CASE(store_signal_abandons_and_reaps_ticket),
	{}
};

static struct kunit_suite lwnet_test_suite = {
	.name = "lwnet",
	.exit = lwnet_test_exit,
	.test_cases = lwnet_test_cases,
};

kunit_test_suite(lwnet_test_suite);
