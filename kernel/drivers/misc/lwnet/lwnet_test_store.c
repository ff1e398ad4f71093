// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for /dev/lwstore against the fake backend: key checks, requests
 * that wait for the host, host answers checked, busy slots and signals, and
 * requests done in pieces when their whole buffer cannot be allocated.
 */

#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "lwnet_test.h"

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

/*
 * Write flags are TRUNC, COMMIT and LAZY (lwstore.h); any other bit, or any
 * flag on another request, is -EINVAL before the host is asked.
 */
static void store_flags_validation(struct kunit *test)
{
	static const u32 good[] = { 0, LWSTORE_WRITE_TRUNC, LWSTORE_WRITE_COMMIT,
				    LWSTORE_WRITE_COMMIT | LWSTORE_WRITE_LAZY,
				    LWSTORE_WRITE_FLAGS_ALL };
	static const u32 bad[] = { LWSTORE_WRITE_FLAGS_ALL + 1, 0x10,
				   0x80000000, ~0u };
	struct lwstore_io io = {};
	int i, ret;

	for (i = 0; i < ARRAY_SIZE(good); i++) {
		io.flags = good[i];
		ret = lwnet_store_check_io(LWSTORE_WRITE, &io);
		KUNIT_EXPECT_EQ_MSG(test, ret, 0, "flags %#x", io.flags);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		io.flags = bad[i] | LWSTORE_WRITE_COMMIT;
		ret = lwnet_store_check_io(LWSTORE_WRITE, &io);
		KUNIT_EXPECT_EQ_MSG(test, ret, -EINVAL, "flags %#x", io.flags);
	}
	io.flags = LWSTORE_WRITE_LAZY;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_io(LWSTORE_READ, &io), -EINVAL);
	io.flags = 0;
	io.len = LWSTORE_CHUNK_MAX;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_io(LWSTORE_WRITE, &io), 0);
	io.len = LWSTORE_CHUNK_MAX + 1;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_io(LWSTORE_WRITE, &io), -EINVAL);
	io.len = 0;
	io.reserved = 1;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_io(LWSTORE_STAT, &io), -EINVAL);
}

/* A list asks for 1..LWSTORE_CHUNK_MAX bytes; reserved must be 0. */
static void store_list_validation(struct kunit *test)
{
	struct lwstore_list ls = { .len = 1 };

	KUNIT_EXPECT_EQ(test, lwnet_store_check_list(&ls), 0);
	ls.len = LWSTORE_CHUNK_MAX;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_list(&ls), 0);
	ls.len = LWSTORE_CHUNK_MAX + 1;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_list(&ls), -EINVAL);
	ls.len = 0;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_list(&ls), -EINVAL);
	ls.len = 1;
	ls.reserved = 1;
	KUNIT_EXPECT_EQ(test, lwnet_store_check_list(&ls), -EINVAL);
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

/* Starts a store write of key = data in a helper thread; it must block. */
static struct runner *blocked_write(struct kunit *test, struct ctx *t,
				    const char *key, const char *data,
				    u32 flags)
{
	struct lwhost_store_req req = write_req(key, data, strlen(data), flags);
	struct runner *r = run_with(test, t, RUN_STORE, 0, NULL, &req);

	expect_blocked(test, r);
	return r;
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
	struct runner *r = blocked_write(test, t, "lwsync/m", "data",
					 LWHOST_STORE_COMMIT);

	host_finish_store(t, 4);
	expect_finished(test, r, 1000, 4);
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
	struct runner *r;

	t->fk.store_busy = 1000;
	r = blocked_write(test, t, "k", "v", 0);
	KUNIT_EXPECT_LE(test, t->fk.submits, 2);	/* sleeps, no spinning */
	spin_lock(&t->fk.lock);
	t->fk.store_busy = 0;
	spin_unlock(&t->fk.lock);
	host_finish_store(t, 1);
	expect_finished(test, r, 1000, 1);
	reap(r);
}

static void store_signal_abandons_and_reaps_ticket(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct runner *r = blocked_write(test, t, "k", "v",
					 LWHOST_STORE_COMMIT);

	KUNIT_EXPECT_TRUE(test, t->fk.store_pending);
	send_sig(SIGINT, r->task, 1);
	expect_finished(test, r, 100, -EINTR);
	/* The host still owns the request; the slot comes back when done. */
	KUNIT_EXPECT_TRUE(test, t->fk.store_pending);
	host_finish_store(t, 1);
	lwnet_store_reap_now(t->dev);
	KUNIT_EXPECT_FALSE(test, t->fk.store_pending);
	reap(r);
}

/* A device whose fake host keeps a value of up to LWSTORE_CHUNK_MAX bytes. */
static struct ctx *setup_model(struct kunit *test)
{
	struct ctx *t = setup(test);
	struct fake_model *m = kunit_kzalloc(test, sizeof(*m), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, m);
	m->cap = LWSTORE_CHUNK_MAX;
	m->value = kunit_kzalloc(test, m->cap, GFP_KERNEL);
	m->pending = kunit_kzalloc(test, m->cap, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, m->value);
	KUNIT_ASSERT_NOT_NULL(test, m->pending);
	t->fk.model = m;
	return t;
}

/* len bytes that differ from piece to piece and from seed to seed. */
static u8 *pattern(struct kunit *test, u32 len, u8 seed)
{
	u8 *p = kunit_kmalloc(test, len, GFP_KERNEL);
	u32 i;

	KUNIT_ASSERT_NOT_NULL(test, p);
	for (i = 0; i < len; i++)
		p[i] = seed + i + 7 * (i >> 8) + 13 * (i >> 16);
	return p;
}

/*
 * A WRITE or READ (op) of len bytes at offset from or into data, through a
 * bounce buffer of size bytes: LWNET_STORE_PIECE is what the driver falls
 * back to when it cannot allocate len bytes at once.
 */
static long store_rw(struct kunit *test, struct ctx *t, u32 op, u32 flags,
		     u64 offset, void *data, u32 len, u32 size)
{
	struct lwhost_store_req req = {
		.op = op,
		.flags = flags,
		.key = (uintptr_t)"k",
		.key_len = 1,
		.offset = offset,
		.len = len,
	};
	struct kvec kv = { .iov_base = data, .iov_len = len };
	void *buf = kunit_kmalloc(test, size, GFP_KERNEL);
	struct iov_iter it;

	KUNIT_ASSERT_NOT_NULL(test, buf);
	iov_iter_kvec(&it, op == LWHOST_STORE_WRITE ? WRITE : READ, &kv, 1,
		      len);
	return lwnet_store_rw(t->dev, &req, &it, buf, size);
}

/* The model's request i went at offset with len bytes and flags. */
static void expect_logged(struct kunit *test, struct fake_model *m, int i,
			  u64 offset, u32 len, u32 flags)
{
	KUNIT_EXPECT_EQ_MSG(test, m->log[i].offset, offset, "request %d", i);
	KUNIT_EXPECT_EQ_MSG(test, m->log[i].len, len, "request %d", i);
	KUNIT_EXPECT_EQ_MSG(test, m->log[i].flags, flags, "request %d", i);
}

static void store_write_in_pieces_commits_as_one(struct kunit *test)
{
	const u32 all = LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT |
			LWHOST_STORE_LAZY;
	const int pieces = LWSTORE_CHUNK_MAX / LWNET_STORE_PIECE;
	struct ctx *t = setup_model(test);
	struct fake_model *m = t->fk.model;
	u8 *data = pattern(test, LWSTORE_CHUNK_MAX, 1);
	int i;

	/* One request, as made with a buffer of the whole size... */
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_WRITE, all, 0,
				       data, LWSTORE_CHUNK_MAX,
				       LWSTORE_CHUNK_MAX), LWSTORE_CHUNK_MAX);
	KUNIT_ASSERT_EQ(test, m->nlog, 1);
	expect_logged(test, m, 0, 0, LWSTORE_CHUNK_MAX, all);
	KUNIT_EXPECT_EQ(test, m->value_len, LWSTORE_CHUNK_MAX);
	KUNIT_EXPECT_EQ(test, memcmp(m->value, data, LWSTORE_CHUNK_MAX), 0);

	/* ...and in pieces: the same answer and the same value. */
	memset(m->value, 0, m->cap);
	m->value_len = 0;
	m->nlog = 0;
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_WRITE, all, 0,
				       data, LWSTORE_CHUNK_MAX,
				       LWNET_STORE_PIECE), LWSTORE_CHUNK_MAX);
	KUNIT_EXPECT_EQ(test, m->value_len, LWSTORE_CHUNK_MAX);
	KUNIT_EXPECT_EQ(test, memcmp(m->value, data, LWSTORE_CHUNK_MAX), 0);
	/* TRUNC on the first piece only, COMMIT and LAZY on the last only. */
	KUNIT_ASSERT_EQ(test, m->nlog, pieces);
	for (i = 0; i < pieces; i++)
		expect_logged(test, m, i, (u64)i * LWNET_STORE_PIECE,
			      LWNET_STORE_PIECE,
			      (i == 0 ? LWHOST_STORE_TRUNC : 0) |
			      (i == pieces - 1 ? all & ~LWHOST_STORE_TRUNC :
			       0));
}

/* A write that goes on from an offset, its last piece short. */
static void store_write_pieces_from_offset(struct kunit *test)
{
	const u32 len = 2 * LWNET_STORE_PIECE + 100;
	struct ctx *t = setup_model(test);
	struct fake_model *m = t->fk.model;
	u8 *data = pattern(test, len + 10, 2);

	KUNIT_ASSERT_EQ(test, store_rw(test, t, LWHOST_STORE_WRITE,
				       LWHOST_STORE_TRUNC, 0, data, 10, 10),
			10);
	m->nlog = 0;
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_WRITE,
				       LWHOST_STORE_COMMIT, 10, data + 10, len,
				       LWNET_STORE_PIECE), len);
	KUNIT_ASSERT_EQ(test, m->nlog, 3);
	expect_logged(test, m, 0, 10, LWNET_STORE_PIECE, 0);
	expect_logged(test, m, 1, 10 + LWNET_STORE_PIECE, LWNET_STORE_PIECE, 0);
	expect_logged(test, m, 2, 10 + 2 * LWNET_STORE_PIECE, 100,
		      LWHOST_STORE_COMMIT);
	KUNIT_EXPECT_EQ(test, m->value_len, len + 10);
	KUNIT_EXPECT_EQ(test, memcmp(m->value, data, len + 10), 0);
}

static void store_write_piece_failure_keeps_committed(struct kunit *test)
{
	const u32 tc = LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT;
	struct ctx *t = setup_model(test);
	struct fake_model *m = t->fk.model;
	u8 *data = pattern(test, LWSTORE_CHUNK_MAX, 3);
	char old[] = "old";
	int i;

	KUNIT_ASSERT_EQ(test, store_rw(test, t, LWHOST_STORE_WRITE, tc, 0, old,
				       3, 3), 3);
	m->fail_write = m->writes + 2;
	m->nlog = 0;
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_WRITE, tc, 0,
				       data, LWSTORE_CHUNK_MAX,
				       LWNET_STORE_PIECE), -EIO);
	/* Nothing after the failed piece, and nothing committed. */
	KUNIT_ASSERT_EQ(test, m->nlog, 2);
	for (i = 0; i < m->nlog; i++)
		KUNIT_EXPECT_FALSE(test, m->log[i].flags & LWHOST_STORE_COMMIT);
	KUNIT_EXPECT_EQ(test, m->value_len, 3);
	KUNIT_EXPECT_EQ(test, memcmp(m->value, "old", 3), 0);
}

static void store_read_in_pieces(struct kunit *test)
{
	const u32 short_len = LWNET_STORE_PIECE + 1000;
	const int pieces = LWSTORE_CHUNK_MAX / LWNET_STORE_PIECE;
	struct ctx *t = setup_model(test);
	struct fake_model *m = t->fk.model;
	u8 *data = pattern(test, LWSTORE_CHUNK_MAX, 4);
	u8 *out = kunit_kzalloc(test, LWSTORE_CHUNK_MAX, GFP_KERNEL);
	u8 *one = kunit_kzalloc(test, LWSTORE_CHUNK_MAX, GFP_KERNEL);
	int i;

	KUNIT_ASSERT_NOT_NULL(test, out);
	KUNIT_ASSERT_NOT_NULL(test, one);
	memcpy(m->value, data, LWSTORE_CHUNK_MAX);
	m->value_len = LWSTORE_CHUNK_MAX;
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_READ, 0, 0, out,
				       LWSTORE_CHUNK_MAX, LWNET_STORE_PIECE),
			LWSTORE_CHUNK_MAX);
	KUNIT_EXPECT_EQ(test, memcmp(out, data, LWSTORE_CHUNK_MAX), 0);
	KUNIT_ASSERT_EQ(test, m->nlog, pieces);
	for (i = 0; i < pieces; i++)
		expect_logged(test, m, i, (u64)i * LWNET_STORE_PIECE,
			      LWNET_STORE_PIECE, 0);

	/* A value ending in the second piece: the read stops there. */
	m->value_len = 10 + short_len;
	m->nlog = 0;
	memset(out, 0, LWSTORE_CHUNK_MAX);
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_READ, 0, 10, out,
				       LWSTORE_CHUNK_MAX, LWNET_STORE_PIECE),
			short_len);
	KUNIT_EXPECT_EQ(test, m->nlog, 2);
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_READ, 0, 10, one,
				       LWSTORE_CHUNK_MAX, LWSTORE_CHUNK_MAX),
			short_len);
	KUNIT_EXPECT_EQ(test, memcmp(out, one, LWSTORE_CHUNK_MAX), 0);
	KUNIT_EXPECT_EQ(test, memcmp(out, data + 10, short_len), 0);

	/* Ending on a piece boundary: the next piece reads nothing. */
	m->value_len = 2 * LWNET_STORE_PIECE;
	m->nlog = 0;
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_READ, 0, 0, out,
				       LWSTORE_CHUNK_MAX, LWNET_STORE_PIECE),
			2 * LWNET_STORE_PIECE);
	KUNIT_EXPECT_EQ(test, m->nlog, 3);
}

/* A host that claims to have written more than it was given is lying. */
static void store_write_overclaim_is_eio(struct kunit *test)
{
	struct ctx *t = setup(test);
	char data[] = "data";

	t->fk.store_done = true;
	t->fk.store_result = 5;
	KUNIT_EXPECT_EQ(test, store_rw(test, t, LWHOST_STORE_WRITE, 0, 0, data,
				       4, 4), -EIO);
}

static struct kunit_case lwnet_store_cases[] = {
	KUNIT_CASE(store_key_validation),
	KUNIT_CASE(store_prefix_validation),
	KUNIT_CASE(store_flags_validation),
	KUNIT_CASE(store_list_validation),
	KUNIT_CASE(store_write_waits_for_host),
	KUNIT_CASE(store_read_copies_output),
	KUNIT_CASE(store_host_overclaim_is_eio),
	KUNIT_CASE(store_errors_pass_through),
	KUNIT_CASE(store_busy_waits_for_a_slot),
	KUNIT_CASE(store_signal_abandons_and_reaps_ticket),
	KUNIT_CASE(store_write_in_pieces_commits_as_one),
	KUNIT_CASE(store_write_pieces_from_offset),
	KUNIT_CASE(store_write_piece_failure_keeps_committed),
	KUNIT_CASE(store_read_in_pieces),
	KUNIT_CASE(store_write_overclaim_is_eio),
	{}
};

lwnet_test_suite(lwnet_store, lwnet_store_cases);
