// SPDX-License-Identifier: GPL-2.0
/*
 * lwnet um backend, kernel side: the host ABI of <linux/lwhost.h> over the
 * region lwhost shares with us, as Documentation/misc-devices/lwnet.rst
 * describes. We are the region's worker side; lwhost is the main side.
 *
 * With lwhost=PATH on the command line we connect to lwhost's socket, get
 * the region memfd and an eventfd, map the region and take the eventfd as
 * an IRQ: lwhost writes it after each change, and the driver's waiters ask
 * again. No call here ever blocks, so a slow network never stalls the
 * kernel. EOF on the socket means lwhost died: from then on every
 * connection fails with ECONNRESET and every store request with EIO.
 */

#include <linux/atomic.h>
#include <linux/compiler.h>
#include <linux/err.h>
#include <linux/errno.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/lwhost.h>
#include <linux/lwnet_backend.h>
#include <linux/minmax.h>
#include <linux/printk.h>
#include <linux/string.h>
#include <linux/workqueue.h>
#include <asm/barrier.h>
#include <irq_kern.h>
#include <init.h>
#include <os.h>
#include "lwnet.h"

#define LWNET_UM_CONNECT_MS	5000

struct lwnet_um {
	struct lwhost_shm *shm;
	struct lwnet_dev *dev;
	int sock_fd;
	int event_fd;
	bool dead;			/* lwhost closed the socket */
	struct work_struct rearm_work;	/* re-arms the eventfd's SIGIO helper */
	struct work_struct dead_work;
};

static struct lwnet_um lwnet_um = { .sock_fd = -1, .event_fd = -1 };
static char lwnet_um_path[256];

static int __init lwnet_um_setup(char *str, int *add)
{
	strscpy(lwnet_um_path, str, sizeof(lwnet_um_path));
	*add = 0;	/* ours alone: keep it from init's environment */
	return 0;
}

__uml_setup("lwhost=", lwnet_um_setup,
	    "lwhost=<path>\n"
	    "    Connect /dev/lwnet and /dev/lwstore to the lwhost service\n"
	    "    listening on the unix socket <path>.\n\n");

/*
 * Every word of the region has one writer. Whoever publishes a change
 * (a ring head or tail, a state, a flag word) stores it with release
 * order after the data it covers, and the other side loads it with
 * acquire order before reading that data: this pair is all the ordering
 * the protocol needs besides the doorbell below.
 */
static u32 lwnet_um_load(u32 *word)
{
	return smp_load_acquire(word);	/* pairs with the writer's release */
}

static void lwnet_um_publish(u32 *word, u32 val)
{
	smp_store_release(word, val);	/* pairs with the reader's acquire */
}

static bool lwnet_um_alive(struct lwnet_um *um)
{
	return !READ_ONCE(um->dead) && lwnet_um_load(&um->shm->main_alive);
}

/* Tells lwhost's main side there is work: its doorbell, then a futex wake. */
static void lwnet_um_ring_host(struct lwnet_um *um)
{
	/* Fully ordered: pairs with the main side setting host_waiting. */
	atomic_inc_return((atomic_t *)&um->shm->host_doorbell);
	if (READ_ONCE(um->shm->host_waiting))
		lwnet_user_futex_wake(&um->shm->host_doorbell);
}

/*
 * Claims a free connection or store slot (state free -> claimed) and moves it
 * to its next generation, which it returns; 0 when the slot was not free.
 */
static u32 lwnet_um_claim(u32 *state, u32 *generation, u32 free, u32 claimed)
{
	u32 gen;

	if (cmpxchg(state, free, claimed) != free)
		return 0;
	gen = (READ_ONCE(*generation) + 1) & LWHOST_ID_GEN_MASK;
	if (!gen)
		gen = 1;	/* a zeroed slot never matches an id */
	WRITE_ONCE(*generation, gen);
	return gen;
}

/* errno of a FAILED slot, never trusting it to be one. */
static int lwnet_um_conn_errno(struct lwhost_conn *c)
{
	int err = READ_ONCE(c->error);

	return err > 0 && err <= MAX_ERRNO ? err : EIO;
}

/* The slot of a live id and its state, or NULL (-EBADF). */
static struct lwhost_conn *lwnet_um_conn(struct lwnet_um *um, int id,
					 u32 *state)
{
	struct lwhost_conn *c;
	u32 slot, gen;

	if (id < 0)
		return NULL;
	slot = LWHOST_ID_SLOT(id);
	gen = LWHOST_ID_GEN(id);
	if (slot >= LWHOST_CONNS || gen == 0)
		return NULL;
	c = &um->shm->conn[slot];
	if (lwnet_um_load(&c->generation) != gen)
		return NULL;
	*state = lwnet_um_load(&c->state);
	if (*state == LWHOST_CONN_FREE || *state == LWHOST_CONN_CLAIMED ||
	    (READ_ONCE(c->worker_flags) & LWHOST_WF_CLOSE))
		return NULL;
	return c;
}

/* Bytes waiting in a ring, or -EIO if the counters make no sense. */
static int lwnet_um_ring_used(u32 head, u32 tail)
{
	u32 used = head - tail;

	return used > LWHOST_RING_SIZE ? -EIO : used;
}

/* Worker produces into tx. */
static int lwnet_um_push(struct lwhost_ring *r, u8 *data, const char *buf,
			 u32 len)
{
	u32 head = READ_ONCE(r->head);
	u32 tail = lwnet_um_load(&r->tail);
	int used = lwnet_um_ring_used(head, tail);
	u32 n, at, first;

	if (used < 0)
		return used;
	n = min_t(u32, len, LWHOST_RING_SIZE - used);
	at = head & (LWHOST_RING_SIZE - 1);
	first = min_t(u32, n, LWHOST_RING_SIZE - at);
	memcpy(data + at, buf, first);
	memcpy(data, buf + first, n - first);
	lwnet_um_publish(&r->head, head + n);
	return n;
}

/* Worker consumes from rx; *before* receives the bytes there were. */
static int lwnet_um_pop(struct lwhost_ring *r, const u8 *data, char *buf,
			u32 len, u32 *before)
{
	u32 head = lwnet_um_load(&r->head);
	u32 tail = READ_ONCE(r->tail);
	int used = lwnet_um_ring_used(head, tail);
	u32 n, at, first;

	if (used < 0)
		return used;
	*before = used;
	n = min_t(u32, len, used);
	at = tail & (LWHOST_RING_SIZE - 1);
	first = min_t(u32, n, LWHOST_RING_SIZE - at);
	memcpy(buf, data + at, first);
	memcpy(buf + first, data, n - first);
	lwnet_um_publish(&r->tail, tail + n);
	return n;
}

static int lwnet_um_net_open(struct lwnet_dev *dev, const char *host,
			     u32 host_len, u32 port, u32 flags, u32 timeout_ms)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	int slot;

	if (host_len == 0 || host_len >= LWHOST_HOST_MAX ||
	    memchr(host, 0, host_len))
		return -EINVAL;
	if (port < 1 || port > 65535 || (flags & ~LWHOST_OPEN_TLS))
		return -EINVAL;
	if (!lwnet_um_alive(um))
		return -ECONNRESET;
	for (slot = 0; slot < LWHOST_CONNS; slot++) {
		struct lwhost_conn *c = &um->shm->conn[slot];
		u32 gen = lwnet_um_claim(&c->state, &c->generation,
					 LWHOST_CONN_FREE, LWHOST_CONN_CLAIMED);

		if (!gen)
			continue;
		WRITE_ONCE(c->worker_flags, 0);
		memcpy(c->host, host, host_len);
		WRITE_ONCE(c->host_len, host_len);
		WRITE_ONCE(c->port, port);
		WRITE_ONCE(c->open_flags, flags);
		WRITE_ONCE(c->timeout_ms, timeout_ms);
		lwnet_um_publish(&c->state, LWHOST_CONN_REQUESTED);
		lwnet_um_ring_host(um);
		return LWHOST_ID(slot, gen);
	}
	return -EMFILE;
}

/* Common checks of write/read/shutdown: 0 if the connection is OPEN. */
static int lwnet_um_open_conn(struct lwnet_um *um, int id,
			      struct lwhost_conn **cp, int connecting_err)
{
	u32 state;

	*cp = lwnet_um_conn(um, id, &state);
	if (!*cp)
		return -EBADF;
	if (!lwnet_um_alive(um))
		return -ECONNRESET;
	switch (state) {
	case LWHOST_CONN_OPEN:
		return 0;
	case LWHOST_CONN_REQUESTED:
	case LWHOST_CONN_CONNECTING:
		return connecting_err;
	case LWHOST_CONN_FAILED:
		return -lwnet_um_conn_errno(*cp);
	default:
		return -EIO;
	}
}

static int lwnet_um_net_write(struct lwnet_dev *dev, int id, const char *buf,
			      int len)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	struct lwhost_conn *c;
	int ret = lwnet_um_open_conn(um, id, &c, -EAGAIN);

	if (ret)
		return ret;
	if (READ_ONCE(c->worker_flags) & LWHOST_WF_SHUT_WR)
		return -EPIPE;
	if (len <= 0)
		return len < 0 ? -EINVAL : 0;
	ret = lwnet_um_push(&c->tx, c->tx_data, buf, len);
	if (ret == 0)
		return -EAGAIN;
	if (ret > 0)
		lwnet_um_ring_host(um);
	return ret;
}

static int lwnet_um_net_read(struct lwnet_dev *dev, int id, char *buf,
			     int count)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	struct lwhost_conn *c;
	u32 before, half = LWHOST_RING_SIZE / 2;
	bool eof;
	int ret = lwnet_um_open_conn(um, id, &c, -EAGAIN);

	if (ret)
		return ret;
	if (count <= 0)
		return count < 0 ? -EINVAL : 0;
	/* Flags before data: PEER_EOF is published after the last byte. */
	eof = lwnet_um_load(&c->main_flags) & LWHOST_MF_PEER_EOF;
	ret = lwnet_um_pop(&c->rx, c->rx_data, buf, count, &before);
	if (ret == 0)
		return eof ? 0 : -EAGAIN;
	/*
	 * The main side stalls only on a full ring; waking it when the ring
	 * drains below half batches its refills.
	 */
	if (ret > 0 && before > half && before - ret <= half)
		lwnet_um_ring_host(um);
	return ret;
}

static int lwnet_um_net_poll(struct lwnet_dev *dev, int id)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	struct lwhost_conn *c;
	u32 state;
	int rx_used, tx_used, bits = 0;
	bool eof;
	int err;

	c = lwnet_um_conn(um, id, &state);
	if (!c)
		return -EBADF;
	err = ECONNRESET;
	if (!lwnet_um_alive(um))
		goto failed;
	switch (state) {
	case LWHOST_CONN_OPEN:
		break;
	case LWHOST_CONN_REQUESTED:
	case LWHOST_CONN_CONNECTING:
		return 0;
	case LWHOST_CONN_FAILED:
		err = lwnet_um_conn_errno(c);
		goto failed;
	default:
		err = EIO;
		goto failed;
	}
	eof = lwnet_um_load(&c->main_flags) & LWHOST_MF_PEER_EOF;
	rx_used = lwnet_um_ring_used(lwnet_um_load(&c->rx.head),
				     READ_ONCE(c->rx.tail));
	tx_used = lwnet_um_ring_used(READ_ONCE(c->tx.head),
				     lwnet_um_load(&c->tx.tail));
	err = EIO;
	if (rx_used < 0 || tx_used < 0)
		goto failed;
	if (rx_used > 0 || eof)
		bits |= LWHOST_POLL_IN;
	if (eof && rx_used == 0)
		bits |= LWHOST_POLL_HUP;
	if (tx_used < LWHOST_RING_SIZE &&
	    !(READ_ONCE(c->worker_flags) & LWHOST_WF_SHUT_WR))
		bits |= LWHOST_POLL_OUT;
	return bits;
failed:
	return LWHOST_POLL_ERR | LWHOST_POLL_HUP |
	       (err << LWHOST_POLL_ERRNO_SHIFT);
}

static int lwnet_um_net_shutdown(struct lwnet_dev *dev, int id)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	struct lwhost_conn *c;
	int ret = lwnet_um_open_conn(um, id, &c, -ENOTCONN);

	if (ret)
		return ret;
	/* Only the worker side writes worker_flags. */
	lwnet_um_publish(&c->worker_flags,
			 READ_ONCE(c->worker_flags) | LWHOST_WF_SHUT_WR);
	lwnet_um_ring_host(um);
	return 0;
}

static void lwnet_um_net_close(struct lwnet_dev *dev, int id)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	struct lwhost_conn *c;
	u32 state;

	c = lwnet_um_conn(um, id, &state);
	if (!c)
		return;
	lwnet_um_publish(&c->worker_flags,
			 READ_ONCE(c->worker_flags) | LWHOST_WF_CLOSE);
	lwnet_um_ring_host(um);
}

static int lwnet_um_check_store(const struct lwhost_store_req *req)
{
	bool list = req->op == LWHOST_STORE_LIST;
	bool write = req->op == LWHOST_STORE_WRITE;

	if (req->op < LWHOST_STORE_WRITE || req->op > LWHOST_STORE_LIST ||
	    req->reserved)
		return -EINVAL;
	if (req->key_len > LWHOST_KEY_MAX || req->after_len > LWHOST_KEY_MAX)
		return -ENAMETOOLONG;
	if (!list && (req->key_len == 0 || req->after_len))
		return -EINVAL;
	if (write ? (req->flags & ~LWHOST_STORE_FLAGS_ALL) : req->flags)
		return -EINVAL;
	if (req->len > LWHOST_STORE_BUF || (list && req->len == 0))
		return -EINVAL;
	return 0;
}

static int lwnet_um_store_submit(struct lwnet_dev *dev,
				 const struct lwhost_store_req *req)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	int slot, ret;

	ret = lwnet_um_check_store(req);
	if (ret)
		return ret;
	if (!lwnet_um_alive(um))
		return -EIO;
	for (slot = 0; slot < LWHOST_STORE_SLOTS; slot++) {
		struct lwhost_store_slot *s = &um->shm->store[slot];
		bool write = req->op == LWHOST_STORE_WRITE;
		u32 gen = lwnet_um_claim(&s->state, &s->generation,
					 LWHOST_SLOT_FREE, LWHOST_SLOT_CLAIMED);

		if (!gen)
			continue;
		memcpy(s->key, (const void *)(uintptr_t)req->key, req->key_len);
		memcpy(s->key + req->key_len,
		       (const void *)(uintptr_t)req->after, req->after_len);
		if (write)
			memcpy(s->data, (const void *)(uintptr_t)req->data,
			       req->len);
		WRITE_ONCE(s->op, req->op);
		WRITE_ONCE(s->flags, req->flags);
		WRITE_ONCE(s->key_len, req->key_len);
		WRITE_ONCE(s->after_len, req->after_len);
		WRITE_ONCE(s->offset, req->offset);
		WRITE_ONCE(s->len, req->len);
		WRITE_ONCE(s->result, 0);
		lwnet_um_publish(&s->state, LWHOST_SLOT_SUBMITTED);
		lwnet_um_ring_host(um);
		return LWHOST_ID(slot, gen);
	}
	return -EBUSY;
}

static int lwnet_um_store_poll(struct lwnet_dev *dev, int ticket, void *buf,
			       u32 len)
{
	struct lwnet_um *um = lwnet_dev_priv(dev);
	struct lwhost_store_slot *s;
	u32 slot, gen, op;
	int result;

	if (ticket < 0)
		return -EBADF;
	slot = LWHOST_ID_SLOT(ticket);
	gen = LWHOST_ID_GEN(ticket);
	if (slot >= LWHOST_STORE_SLOTS || gen == 0)
		return -EBADF;
	s = &um->shm->store[slot];
	if (lwnet_um_load(&s->generation) != gen)
		return -EBADF;
	switch (lwnet_um_load(&s->state)) {
	case LWHOST_SLOT_SUBMITTED:
		if (lwnet_um_alive(um))
			return -EINPROGRESS;
		/* Nobody will ever finish it: give the slot back. */
		if (cmpxchg(&s->state, LWHOST_SLOT_SUBMITTED,
			    LWHOST_SLOT_FREE) == LWHOST_SLOT_SUBMITTED)
			return -EIO;
		return -EBADF;
	case LWHOST_SLOT_DONE:
		break;
	default:
		return -EBADF;
	}
	/* Take it back first so two polls of one ticket cannot both copy. */
	if (cmpxchg(&s->state, LWHOST_SLOT_DONE, LWHOST_SLOT_CLAIMED) !=
	    LWHOST_SLOT_DONE)
		return -EBADF;
	result = READ_ONCE(s->result);
	op = READ_ONCE(s->op);
	if (result < 0) {
		if (result < -MAX_ERRNO)
			result = -EIO;
	} else if (op == LWHOST_STORE_READ || op == LWHOST_STORE_STAT ||
		   op == LWHOST_STORE_LIST) {
		if (result > LWHOST_STORE_BUF)
			result = -EIO;
		else if (result > len)
			result = -EINVAL;
		else
			memcpy(buf, s->data, result);
	}
	lwnet_um_publish(&s->state, LWHOST_SLOT_FREE);
	return result;
}

LWNET_BACKEND_OPS(lwnet_um_ops, lwnet_um);

static void lwnet_um_rearm(struct work_struct *work)
{
	/* The SIGIO helper watches an eventfd once per add_sigio_fd(). */
	add_sigio_fd(lwnet_um.event_fd);
}

static void lwnet_um_died(struct work_struct *work)
{
	pr_warn("lwnet: lwhost closed its socket; connections now fail with ECONNRESET\n");
}

static irqreturn_t lwnet_um_event_irq(int irq, void *data)
{
	struct lwnet_um *um = data;
	u64 count;

	/* Drain first, so a write after this read raises a new IRQ. */
	while (os_read_file(um->event_fd, &count, sizeof(count)) > 0)
		;
	lwnet_notify(um->dev);
	schedule_work(&um->rearm_work);
	return IRQ_HANDLED;
}

static irqreturn_t lwnet_um_sock_irq(int irq, void *data)
{
	struct lwnet_um *um = data;
	char buf[64];
	int n;

	/* lwhost never sends more; anything but EAGAIN means it is gone. */
	do {
		n = os_read_file(um->sock_fd, buf, sizeof(buf));
	} while (n > 0);
	if (n != -EAGAIN && !READ_ONCE(um->dead)) {
		WRITE_ONCE(um->dead, true);
		lwnet_notify(um->dev);
		schedule_work(&um->dead_work);
	}
	return IRQ_HANDLED;
}

static int __init lwnet_um_init(void)
{
	struct lwnet_um *um = &lwnet_um;
	struct lwhost_shm *shm;
	int memfd, ret;

	if (!lwnet_um_path[0])
		return 0;	/* no lwhost= given: no devices */

	INIT_WORK(&um->rearm_work, lwnet_um_rearm);
	INIT_WORK(&um->dead_work, lwnet_um_died);
	BUILD_BUG_ON(sizeof(LWHOST_GREETING) - 1 != LWHOST_GREETING_LEN);
	ret = lwnet_user_connect(lwnet_um_path, LWHOST_GREETING,
				 LWHOST_GREETING_LEN, &memfd, &um->event_fd,
				 LWNET_UM_CONNECT_MS);
	if (ret < 0) {
		pr_err("lwnet: cannot reach lwhost at %s: %d\n", lwnet_um_path,
		       ret);
		return ret;
	}
	um->sock_fd = ret;
	shm = lwnet_user_map(memfd, sizeof(*shm));
	os_close_file(memfd);	/* the mapping keeps the memory */
	ret = -EPROTO;
	if (!shm) {
		pr_err("lwnet: lwhost's region is smaller than %zu bytes or cannot be mapped\n",
		       sizeof(*shm));
		goto fail_fds;
	}
	if (READ_ONCE(shm->magic) != LWHOST_SHM_MAGIC ||
	    READ_ONCE(shm->version) != LWHOST_SHM_VERSION ||
	    READ_ONCE(shm->size) != sizeof(*shm)) {
		pr_err("lwnet: lwhost's region has magic %#x version %u size %u, want %#x %u %zu\n",
		       shm->magic, shm->version, shm->size, LWHOST_SHM_MAGIC,
		       LWHOST_SHM_VERSION, sizeof(*shm));
		goto fail_fds;
	}
	um->shm = shm;

	um->dev = lwnet_dev_create(&lwnet_um_ops, 0, um);
	if (IS_ERR(um->dev)) {
		ret = PTR_ERR(um->dev);
		goto fail_fds;
	}
	os_set_fd_block(um->sock_fd, 0);
	os_set_fd_block(um->event_fd, 0);
	ret = um_request_irq(UM_IRQ_ALLOC, um->event_fd, IRQ_READ,
			     lwnet_um_event_irq, 0, "lwnet-event", um);
	if (ret < 0)
		goto fail_dev;
	/* eventfds raise no SIGIO; UML's helper thread polls them for us. */
	sigio_broken(um->event_fd);
	add_sigio_fd(um->event_fd);
	ret = um_request_irq(UM_IRQ_ALLOC, um->sock_fd, IRQ_READ,
			     lwnet_um_sock_irq, 0, "lwnet-socket", um);
	if (ret < 0)
		goto fail_dev;
	ret = lwnet_register(um->dev);
	if (ret)
		goto fail_dev;
	pr_info("lwnet: connected to lwhost at %s\n", lwnet_um_path);
	return 0;

fail_dev:
	/* An IRQ may already be registered: leave the dev to it, but dead. */
	WRITE_ONCE(um->dead, true);
	return ret;
fail_fds:
	os_close_file(um->sock_fd);
	os_close_file(um->event_fd);
	um->sock_fd = -1;
	um->event_fd = -1;
	return ret;
}
late_initcall(lwnet_um_init);
