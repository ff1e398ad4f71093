/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The KUnit suites' fake backend, which plays the host: connections move only
 * when a test says so, and blocking calls run in helper threads the test can
 * signal, wake and time. lwnet_test_fake.c implements it; the net and store
 * suites use it.
 */
#ifndef _LWNET_TEST_H
#define _LWNET_TEST_H

#include <kunit/test.h>
#include <linux/completion.h>
#include <linux/jiffies.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/spinlock.h>
#include <linux/uio.h>

#include "lwnet.h"

#define FAKE_CONNS	4
#define FAKE_RING	4096
#define FAKE_STORE_MAX	256

enum fake_state { FAKE_CONNECTING, FAKE_OPEN, FAKE_FAILED };

#define FAKE_LOG	8

/*
 * A host store holding one value (for any key), as lwhost keeps it: writes
 * extend a pending copy that must hold exactly offset bytes, COMMIT
 * publishes it. With a model the fake answers every request at once.
 */
struct fake_model {
	u8 *value, *pending;	/* cap bytes each */
	u32 cap, value_len, pending_len;
	int writes;		/* write requests so far */
	int fail_write;		/* this write (1-based) answers -EIO */
	int nlog;		/* requests so far; the first FAKE_LOG kept */
	struct lwhost_store_req log[FAKE_LOG];
};

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
	struct fake_model *model;	/* NULL: the test answers */
};

/* --- fixtures ----------------------------------------------------------- */

struct ctx {
	struct fake fk;
	struct lwnet_dev *dev;
	struct lwnet_file *f;
};

struct ctx *lwnet_test_setup_poll(struct kunit *test, unsigned int poll_ms);
void lwnet_test_exit(struct kunit *test);

/*
 * A device on the fake backend and one open file on it. With poll_ms the
 * backend asks to be polled (as the wasm backend does) instead of notifying
 * (as an IRQ would).
 */
static inline struct ctx *setup_poll(struct kunit *test, unsigned int poll_ms)
{
	return lwnet_test_setup_poll(test, poll_ms);
}

static inline struct ctx *setup(struct kunit *test)
{
	return setup_poll(test, 0);
}

static inline ssize_t kread(struct lwnet_file *f, void *buf, size_t len,
			    bool nb)
{
	struct kvec kv = { .iov_base = buf, .iov_len = len };
	struct iov_iter it;

	iov_iter_kvec(&it, READ, &kv, 1, len);
	return lwnet_read(f, &it, nb);
}

static inline ssize_t kwrite(struct lwnet_file *f, const void *buf,
			     size_t len, bool nb)
{
	struct kvec kv = { .iov_base = (void *)buf, .iov_len = len };
	struct iov_iter it;

	iov_iter_kvec(&it, WRITE, &kv, 1, len);
	return lwnet_write(f, &it, nb);
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

struct runner *lwnet_test_run_with(struct kunit *test, struct ctx *t,
				   enum runner_op op, size_t len,
				   const void *data,
				   const struct lwhost_store_req *req);

/* Starts op in a helper thread, with a copy of data (len bytes) or req. */
static inline struct runner *run_with(struct kunit *test, struct ctx *t,
				      enum runner_op op, size_t len,
				      const void *data,
				      const struct lwhost_store_req *req)
{
	return lwnet_test_run_with(test, t, op, len, data, req);
}

static inline struct runner *run(struct kunit *test, struct ctx *t,
				 enum runner_op op, size_t len)
{
	return run_with(test, t, op, len, NULL, NULL);
}

static inline bool finished_within(struct runner *r, unsigned int ms)
{
	return wait_for_completion_timeout(&r->done, msecs_to_jiffies(ms)) > 0;
}

/* Ends a runner whatever state the test left it in. */
static inline void reap(struct runner *r)
{
	while (!finished_within(r, 50)) {
		send_sig(SIGINT, r->task, 1);
		lwnet_notify(r->t->dev);
	}
	put_task_struct(r->task);
}

/* The helper is asleep, not just slow: it stays blocked for a while. */
static inline void expect_blocked(struct kunit *test, struct runner *r)
{
	KUNIT_EXPECT_FALSE(test, finished_within(r, 30));
}

/* Expects the runner to finish within ms milliseconds, returning ret. */
static inline void expect_finished(struct kunit *test, struct runner *r,
				   unsigned int ms, long ret)
{
	KUNIT_EXPECT_TRUE(test, finished_within(r, ms));
	KUNIT_EXPECT_EQ(test, r->ret, ret);
}

/* Registers the cases as the KUnit suite "id", with the fixtures' exit. */
#define lwnet_test_suite(id, cases)					\
	static struct kunit_suite id##_suite = {			\
		.name = #id,						\
		.exit = lwnet_test_exit,				\
		.test_cases = cases,					\
	};								\
	kunit_test_suite(id##_suite)

#endif /* _LWNET_TEST_H */
