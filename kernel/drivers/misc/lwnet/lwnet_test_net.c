// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for /dev/lwnet against the fake backend: open, read, write,
 * shutdown, close, host failures, wake-ups and the ioctl numbers.
 */

#include <linux/delay.h>
#include <linux/err.h>
#include <linux/jiffies.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/string.h>

#include "lwnet_test.h"

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

static struct lwnet_status status(struct lwnet_file *f)
{
	struct lwnet_status st;

	lwnet_status(f, &st);
	return st;
}

/* --- open ----------------------------------------------------------------- */

static void open_blocking_waits_for_connect(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct runner *r = run(test, t, RUN_CONNECT, 0);

	expect_blocked(test, r);
	KUNIT_EXPECT_EQ(test, status(t->f).state, LWNET_STATE_CONNECTING);
	host_set(t, 0, FAKE_OPEN, 0);
	expect_finished(test, r, 1000, 0);
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
	expect_finished(test, r, 1000, -ECONNREFUSED);
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
	expect_finished(test, r, 100, -EINTR);
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
	expect_finished(test, r, 1000, 3);
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
	expect_finished(test, r, 100, -ERESTARTSYS);
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

/* A blocking read takes what the host has over several calls, then returns. */
static void read_gathers_host_calls(struct kunit *test)
{
	struct ctx *t = setup(test);
	int id = connected(test, t);
	char buf[8] = {};

	host_send(t, id, "abcdef", 6, true);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, 2, true), (ssize_t)2);
	/* "cdef" waits in the bounce buffer, "gh" at the host. */
	host_send(t, id, "gh", 2, true);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, sizeof(buf), false), (ssize_t)6);
	KUNIT_EXPECT_EQ(test, memcmp(buf, "cdefgh", 6), 0);
	KUNIT_EXPECT_EQ(test, status(t->f).bytes_in, 8ull);
}

/*
 * A read or write of a buffer several times LWNET_IO_MAX asks the host for at
 * most LWNET_IO_MAX at a time; the host has one byte to read, or room for 100.
 */
static void expect_host_call_capped(struct kunit *test, bool write)
{
	struct ctx *t = setup(test);
	size_t len = (write ? 3 : 4) * LWNET_IO_MAX;
	char *buf = kunit_kzalloc(test, len, GFP_KERNEL);
	int id = connected(test, t);

	KUNIT_ASSERT_NOT_NULL(test, buf);
	if (write) {
		t->fk.c[id].tx_cap = 100;
		KUNIT_EXPECT_EQ(test, kwrite(t->f, buf, len, true),
				(ssize_t)100);
		KUNIT_EXPECT_LE(test, t->fk.max_write, LWNET_IO_MAX);
		return;
	}
	host_send(t, id, "z", 1, true);
	KUNIT_EXPECT_EQ(test, kread(t->f, buf, len, true), (ssize_t)1);
	KUNIT_EXPECT_LE(test, t->fk.max_read, LWNET_IO_MAX);
	KUNIT_EXPECT_GT(test, t->fk.max_read, 0);
}

static void read_host_call_is_capped(struct kunit *test)
{
	expect_host_call_capped(test, false);
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
	expect_finished(test, r, 1000, 20);
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
	expect_finished(test, r, 100, -ERESTARTSYS);
	KUNIT_EXPECT_EQ(test, status(t->f).bytes_out, 0ull);
	reap(r);
}

static void write_host_call_is_capped(struct kunit *test)
{
	expect_host_call_capped(test, true);
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
	expect_finished(test, r, 100, 0);
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
	expect_finished(test, r, 1000, -ECONNRESET);
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
	expect_finished(test, r, 1000, 1);
	reap(r);
}

static void timer_backend_polls_while_waiting(struct kunit *test)
{
	struct ctx *t = setup_poll(test, 5);
	int id = connected(test, t);
	struct runner *r = run(test, t, RUN_READ, 8);

	expect_blocked(test, r);
	host_send(t, id, "tick", 4, false);	/* no notification at all */
	expect_finished(test, r, 200, 4);
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
	expect_finished(test, r, 1000, 4);
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
	expect_finished(test, r, 500, 4);
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
	/* The first lwtcp was built against these exact values. */
	KUNIT_EXPECT_EQ(test, sizeof(struct lwnet_open_args), (size_t)264);
	KUNIT_EXPECT_EQ(test, (unsigned int)LWNET_OPEN, 0xc1084e01u);
	KUNIT_EXPECT_EQ(test, (unsigned int)LWNET_CLOSE, 0x40044e02u);
	KUNIT_EXPECT_EQ(test, LWNET_MINOR, 123);
}

static struct kunit_case lwnet_net_cases[] = {
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
	KUNIT_CASE(read_gathers_host_calls),
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
	{}
};

lwnet_test_suite(lwnet_net, lwnet_net_cases);
