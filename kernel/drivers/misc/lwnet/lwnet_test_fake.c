// SPDX-License-Identifier: GPL-2.0
/*
 * The fake backend of the lwnet KUnit suites (see lwnet_test.h): the host ABI
 * as ops over in-memory connections and one store slot, the fixtures, and
 * the helper threads that make blocking calls.
 */

#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "lwnet_test.h"

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

/* Takes the fake's lock and finds connection id (NULL: the host has none). */
static struct fake_conn *fake_lock_conn(struct fake *fk, int id)
	__acquires(&fk->lock)
{
	spin_lock(&fk->lock);
	return fake_conn(fk, id);
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
	struct fake_conn *c = fake_lock_conn(fk, id);
	int n;

	fk->max_write = max(fk->max_write, len);
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
	struct fake_conn *c = fake_lock_conn(fk, id);
	int n;

	fk->max_read = max(fk->max_read, count);
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
	struct fake_conn *c = fake_lock_conn(fk, id);
	int p = 0;

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
	struct fake_conn *c = fake_lock_conn(fk, id);
	int ret = 0;

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
	struct fake_conn *c = fake_lock_conn(fk, id);

	if (c)
		c->used = false;
	fk->closes++;
	fk->last_closed = id;
	spin_unlock(&fk->lock);
}

/* Runs req on the model at once; returns the host's answer. */
static int fake_model_run(struct fake_model *m,
			  const struct lwhost_store_req *req)
{
	if (m->nlog < FAKE_LOG)
		m->log[m->nlog] = *req;
	m->nlog++;
	if (req->op == LWHOST_STORE_READ) {
		if (req->offset >= m->value_len)
			return 0;
		return min_t(u64, req->len, m->value_len - req->offset);
	}
	if (req->op != LWHOST_STORE_WRITE)
		return -EINVAL;
	if (++m->writes == m->fail_write) {
		m->pending_len = 0;	/* lwhost drops a half-written one */
		return -EIO;
	}
	if (req->flags & LWHOST_STORE_TRUNC) {
		if (req->offset)
			return -EINVAL;
		m->pending_len = 0;
	}
	if (req->offset != m->pending_len)
		return -EINVAL;
	if (req->len > m->cap - m->pending_len)
		return -ENOSPC;
	memcpy(m->pending + m->pending_len, (void *)(uintptr_t)req->data,
	       req->len);
	m->pending_len += req->len;
	if (req->flags & LWHOST_STORE_COMMIT) {
		swap(m->value, m->pending);
		m->value_len = m->pending_len;
		m->pending_len = 0;
	}
	return req->len;
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
		if (fk->model) {
			fk->store_result = fake_model_run(fk->model, req);
			fk->store_done = true;
		}
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
		if (ret > 0 && buf && fk->model)
			memcpy(buf, fk->model->value + fk->req.offset,
			       min_t(u32, len, ret));
		else if (ret > 0 && buf)
			memcpy(buf, fk->data, min_t(u32, len,
						    min_t(u32, ret, FAKE_STORE_MAX)));
		fk->store_pending = false;
		fk->store_done = false;
	}
	spin_unlock(&fk->lock);
	return ret;
}

LWNET_BACKEND_OPS(fake_ops, fake);

/* --- fixtures ----------------------------------------------------------- */

struct ctx *lwnet_test_setup_poll(struct kunit *test, unsigned int poll_ms)
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

void lwnet_test_exit(struct kunit *test)
{
	struct ctx *t = test->priv;

	if (!t)
		return;
	if (t->f)
		lwnet_file_free(t->f);
	lwnet_dev_destroy(t->dev);
}

/* --- blocking calls in a helper thread --------------------------------- */

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

struct runner *lwnet_test_run_with(struct kunit *test, struct ctx *t,
				   enum runner_op op, size_t len,
				   const void *data,
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
