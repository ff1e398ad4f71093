/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lwnet: TCP connections through the host, one per open file of /dev/lwnet.
 *
 * LWNET_OPEN and LWNET_CLOSE, the magic and struct lwnet_open_args are the
 * original lwtcp interface and must keep their numbers and layout; every
 * later feature is a new ioctl number.
 */
#ifndef _UAPI_LINUX_LWNET_H
#define _UAPI_LINUX_LWNET_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define LWNET_DEVICE		"/dev/lwnet"
#define LWNET_MINOR		123	/* misc major 10: mknod /dev/lwnet c 10 123 */
#define LWNET_IOC_MAGIC		'N'
#define LWNET_HOST_MAX		256	/* host name buffer, NUL included */

/* LWNET_OPEN: connect this file to host:port; blocks unless O_NONBLOCK. */
struct lwnet_open_args {
	char host[LWNET_HOST_MAX];	/* NUL-terminated name or address */
	int port;			/* 1..65535 */
	int connId;			/* out: host connection id */
};

/* Flags for struct lwnet_open_ex.flags. */
#define LWNET_OPEN_TLS		0x1	/* the proxy speaks TLS to the target */
#define LWNET_OPEN_FLAGS_ALL	LWNET_OPEN_TLS

/* LWNET_OPEN_EX: LWNET_OPEN with flags and a connect timeout. */
struct lwnet_open_ex {
	char host[LWNET_HOST_MAX];	/* NUL-terminated name or address */
	__u32 port;			/* 1..65535 */
	__u32 flags;			/* LWNET_OPEN_* */
	__u32 timeout_ms;		/* connect timeout, 0 = default */
	__s32 conn_id;			/* out: host connection id */
};

/* Connection states reported by LWNET_STATUS. */
#define LWNET_STATE_IDLE	0	/* nothing opened on this file yet */
#define LWNET_STATE_CONNECTING	1
#define LWNET_STATE_CONNECTED	2
#define LWNET_STATE_CLOSED	3	/* closed by LWNET_CLOSE */
#define LWNET_STATE_FAILED	4	/* see error */

/* Bits of struct lwnet_status.flags. */
#define LWNET_STATUS_WR_SHUT	0x1	/* LWNET_SHUTDOWN done: no more writes */
#define LWNET_STATUS_PEER_EOF	0x2	/* remote finished sending */

struct lwnet_status {
	__u32 state;			/* LWNET_STATE_* */
	__u32 flags;			/* LWNET_STATUS_* */
	__s32 error;			/* positive errno of the failure, or 0 */
	__u32 reserved;
	__u64 bytes_in;			/* bytes read by the guest */
	__u64 bytes_out;		/* bytes accepted from the guest */
};

#define LWNET_OPEN	_IOWR(LWNET_IOC_MAGIC, 1, struct lwnet_open_args)
#define LWNET_CLOSE	_IOW(LWNET_IOC_MAGIC, 2, int)
#define LWNET_OPEN_EX	_IOWR(LWNET_IOC_MAGIC, 3, struct lwnet_open_ex)
#define LWNET_SHUTDOWN	_IO(LWNET_IOC_MAGIC, 4)	/* half-close: end of our data */
#define LWNET_STATUS	_IOR(LWNET_IOC_MAGIC, 5, struct lwnet_status)

#endif /* _UAPI_LINUX_LWNET_H */
