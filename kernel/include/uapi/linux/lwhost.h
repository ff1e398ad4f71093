/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lwhost: the host ABI behind /dev/lwnet and /dev/lwstore.
 *
 * Constants shared by the kernel and the host, and the layout of the memory
 * region the host's two halves share: the worker side (where the kernel's
 * wasm_net_* and wasm_store_* calls land) and the main side (which owns the
 * proxy connection and the store). In a browser the region lives in a
 * SharedArrayBuffer; natively lwhost passes it to user-mode Linux as a memfd.
 * See Documentation/misc-devices/lwnet.rst for the protocol.
 */
#ifndef _UAPI_LINUX_LWHOST_H
#define _UAPI_LINUX_LWHOST_H

#include <linux/types.h>

#define LWHOST_SHM_MAGIC	0x3148574c	/* "LWH1" in memory order */
#define LWHOST_SHM_VERSION	1
#define LWHOST_CONNS		32		/* connection slots */
#define LWHOST_RING_SIZE	(256 * 1024)	/* bytes per direction, 2^n */
#define LWHOST_HOST_MAX		256		/* host name bytes, NUL included */
#define LWHOST_KEY_MAX		512		/* store key bytes */
#define LWHOST_STORE_SLOTS	4		/* store requests in flight */
#define LWHOST_STORE_BUF	(256 * 1024)	/* store data bytes per request */

/* Result of wasm_net_poll(): readiness bits, errno above the shift. */
#define LWHOST_POLL_IN		0x1	/* read() will not return -EAGAIN */
#define LWHOST_POLL_OUT		0x2	/* write() will accept bytes */
#define LWHOST_POLL_HUP		0x4	/* peer finished and every byte was read */
#define LWHOST_POLL_ERR		0x8	/* failed: errno in the high bits */
#define LWHOST_POLL_ERRNO_SHIFT	16

/*
 * The interrupt the browser raises on the wasm target when the guest
 * doorbell moves: lwnet's interrupt worker calls vmlinux's exported
 * raise_interrupt(LWHOST_WASM_IRQ_CPU, LWHOST_WASM_IRQ). Upstream
 * linux-wasm handles device interrupts on CPU 1 (IRQ_CPU in
 * arch/wasm/include/asm/processor.h); lines 2..31 are free (0 is the IPI,
 * 1 the timer, arch/wasm/include/asm/irq.h).
 */
#define LWHOST_WASM_IRQ		8
#define LWHOST_WASM_IRQ_CPU	1

/* Flags of wasm_net_open_ex(). */
#define LWHOST_OPEN_TLS		0x1	/* the proxy speaks TLS to the target */

/*
 * Connection ids and store tickets: slot index | generation << 8, so an id
 * is never negative and a stale id (an older generation) is told apart.
 */
#define LWHOST_ID_SLOT_BITS	8
#define LWHOST_ID_SLOT_MASK	0xff
#define LWHOST_ID_GEN_MASK	0x7fffff
#define LWHOST_ID_SLOT(id)	((id) & LWHOST_ID_SLOT_MASK)
#define LWHOST_ID_GEN(id)	\
	(((id) >> LWHOST_ID_SLOT_BITS) & LWHOST_ID_GEN_MASK)
#define LWHOST_ID(slot, gen)	\
	((int)((((gen) & LWHOST_ID_GEN_MASK) << LWHOST_ID_SLOT_BITS) | (slot)))

/*
 * The um target: the one message lwhost sends on its unix socket, these
 * bytes (no NUL) with the region's memfd and an eventfd as SCM_RIGHTS.
 */
#define LWHOST_GREETING		"LWH1"
#define LWHOST_GREETING_LEN	4

/* struct lwhost_conn.state; only the owner named may move it. */
#define LWHOST_CONN_FREE	0	/* main side: slot unused */
#define LWHOST_CONN_CLAIMED	1	/* worker: CAS from FREE, filling */
#define LWHOST_CONN_REQUESTED	2	/* worker: open request complete */
#define LWHOST_CONN_CONNECTING	3	/* main side: proxy is connecting */
#define LWHOST_CONN_OPEN	4	/* main side: data flows */
#define LWHOST_CONN_FAILED	5	/* main side: error holds the errno */

/* struct lwhost_conn.worker_flags, set by the worker side only. */
#define LWHOST_WF_SHUT_WR	0x1	/* send FIN once tx is drained */
#define LWHOST_WF_CLOSE		0x2	/* tear down, then set FREE */

/* struct lwhost_conn.main_flags, set by the main side only. */
#define LWHOST_MF_PEER_EOF	0x1	/* no bytes will follow those in rx */

/*
 * A single-producer single-consumer byte ring. head and tail count bytes
 * ever written and read (mod 2^32); the data index is count % size. Each
 * lives on its own cache line so the two sides do not false-share.
 */
struct lwhost_ring {
	__u32 head;		/* written by the producer only */
	__u32 pad0[15];
	__u32 tail;		/* written by the consumer only */
	__u32 pad1[15];
};

struct lwhost_conn {
	__u32 state;		/* LWHOST_CONN_* */
	__u32 generation;	/* bumped by the worker side at each claim */
	__u32 worker_flags;	/* LWHOST_WF_* */
	__u32 main_flags;	/* LWHOST_MF_* */
	__s32 error;		/* positive errno when FAILED */
	__u32 port;
	__u32 open_flags;	/* LWHOST_OPEN_* */
	__u32 timeout_ms;	/* 0 = the main side's default */
	__u32 host_len;		/* bytes in host, no NUL */
	__u32 pad[7];
	char host[LWHOST_HOST_MAX];
	struct lwhost_ring tx;	/* worker -> main: bytes the guest wrote */
	struct lwhost_ring rx;	/* main -> worker: bytes for the guest */
	__u8 tx_data[LWHOST_RING_SIZE];
	__u8 rx_data[LWHOST_RING_SIZE];
};

/* Store operations. */
#define LWHOST_STORE_WRITE	1	/* data: chunk at offset, flags */
#define LWHOST_STORE_READ	2	/* data out: up to len bytes at offset */
#define LWHOST_STORE_STAT	3	/* data out: committed size, __u64 LE */
#define LWHOST_STORE_DELETE	4
#define LWHOST_STORE_LIST	5	/* key = prefix; data out: NUL-separated */

/* Flags of LWHOST_STORE_WRITE; equal to LWSTORE_WRITE_* in lwstore.h. */
#define LWHOST_STORE_TRUNC	0x1
#define LWHOST_STORE_COMMIT	0x2
#define LWHOST_STORE_LAZY	0x4
#define LWHOST_STORE_FLAGS_ALL	(LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT | \
				 LWHOST_STORE_LAZY)

/* struct lwhost_store_slot.state. */
#define LWHOST_SLOT_FREE	0	/* worker: CAS to CLAIMED to use */
#define LWHOST_SLOT_CLAIMED	1	/* worker: filling the request */
#define LWHOST_SLOT_SUBMITTED	2	/* worker: main side may run it */
#define LWHOST_SLOT_DONE	3	/* main side: result (and data) ready */

struct lwhost_store_slot {
	__u32 state;		/* LWHOST_SLOT_* */
	__u32 generation;	/* bumped by the worker side at each claim */
	__u32 op;		/* LWHOST_STORE_* */
	__u32 flags;		/* LWHOST_STORE_TRUNC / _COMMIT / _LAZY */
	__u32 key_len;		/* key (or list prefix) bytes in key[] */
	__u32 after_len;	/* list cursor, stored at key[key_len] */
	__u32 len;		/* write: bytes in data; else capacity */
	__s32 result;		/* DONE: bytes (>= 0) or -errno */
	__u64 offset;
	char key[2 * LWHOST_KEY_MAX];
	__u8 data[LWHOST_STORE_BUF];
};

/* Argument of wasm_store_submit(); pointers are kernel addresses. */
struct lwhost_store_req {
	__u32 op;		/* LWHOST_STORE_* */
	__u32 flags;
	__u64 key;
	__u32 key_len;
	__u32 after_len;
	__u64 after;
	__u64 offset;
	__u64 data;		/* write: the chunk */
	__u32 len;		/* write: chunk bytes; else capacity */
	__u32 reserved;
};

/* The shared region. Doorbells are futex / Atomics.wait words. */
struct lwhost_shm {
	__u32 magic;		/* LWHOST_SHM_MAGIC, set by the main side */
	__u32 version;		/* LWHOST_SHM_VERSION */
	__u32 size;		/* sizeof(struct lwhost_shm) */
	__u32 main_alive;	/* 0 once the main side has gone away */
	__u32 pad0[12];
	__u32 host_doorbell;	/* worker bumps + wakes: main side has work */
	__u32 host_waiting;	/* main side sleeps on host_doorbell */
	__u32 pad1[14];
	__u32 guest_doorbell;	/* main side bumps + wakes: guest has news */
	__u32 pad2[15];
	struct lwhost_store_slot store[LWHOST_STORE_SLOTS];
	struct lwhost_conn conn[LWHOST_CONNS];
};

#endif /* _UAPI_LINUX_LWHOST_H */
