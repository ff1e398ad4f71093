/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lwstore: a host blob store addressed by key, through /dev/lwstore.
 *
 * A value is written in chunks into a pending copy that replaces the
 * committed value atomically on LWSTORE_WRITE_COMMIT; readers never see a
 * half-written value, so a manifest committed last makes a snapshot atomic.
 */
#ifndef _UAPI_LINUX_LWSTORE_H
#define _UAPI_LINUX_LWSTORE_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define LWSTORE_DEVICE		"/dev/lwstore"
#define LWSTORE_IOC_MAGIC	'N'	/* shares lwnet's magic, numbers 0x40.. */
#define LWSTORE_KEY_MAX		512	/* bytes, no NUL, no ".." component */
#define LWSTORE_CHUNK_MAX	(256 * 1024)	/* largest data transfer per ioctl */

/* Flags for LWSTORE_WRITE. */
#define LWSTORE_WRITE_TRUNC	0x1	/* start a new pending value (offset 0) */
#define LWSTORE_WRITE_COMMIT	0x2	/* publish the pending value atomically */
/*
 * With COMMIT: publish now, but the value needs to be durable only once a
 * later commit without LAZY returns (the host makes every lazily
 * committed value durable before that one). Until then a crash of the host
 * may lose the value or leave it short or zeroed, so LAZY is for data that
 * a later plain commit makes reachable and whose reader checks it, such as
 * the chunks of a snapshot (named by their hash). Without COMMIT it does
 * nothing.
 */
#define LWSTORE_WRITE_LAZY	0x4
#define LWSTORE_WRITE_FLAGS_ALL	(LWSTORE_WRITE_TRUNC | LWSTORE_WRITE_COMMIT | \
				 LWSTORE_WRITE_LAZY)

/*
 * Argument of LWSTORE_WRITE, LWSTORE_READ, LWSTORE_STAT, LWSTORE_DELETE.
 * Pointers are user addresses widened to 64 bits.
 */
struct lwstore_io {
	__u64 key;		/* key bytes, not NUL-terminated */
	__u32 key_len;		/* 1..LWSTORE_KEY_MAX */
	__u32 flags;		/* LWSTORE_WRITE_* for LWSTORE_WRITE, else 0 */
	__u64 offset;		/* write: must equal bytes already pending */
	__u64 buf;		/* data */
	__u32 len;		/* 0..LWSTORE_CHUNK_MAX */
	__u32 reserved;		/* must be 0 */
	__u64 size;		/* out (LWSTORE_STAT): committed value size */
};

/*
 * Argument of LWSTORE_LIST: committed keys starting with prefix and sorted
 * after "after", written to buf NUL-separated; only whole keys are written.
 * The ioctl returns the number of bytes written, 0 when there are no more.
 */
struct lwstore_list {
	__u64 prefix;
	__u32 prefix_len;	/* 0..LWSTORE_KEY_MAX */
	__u32 after_len;	/* 0..LWSTORE_KEY_MAX, 0 = from the start */
	__u64 after;
	__u64 buf;
	__u32 len;		/* 1..LWSTORE_CHUNK_MAX */
	__u32 reserved;		/* must be 0 */
};

/* The ioctls return bytes moved (>= 0) or -1 with errno. */
#define LWSTORE_WRITE	_IOW(LWSTORE_IOC_MAGIC, 0x40, struct lwstore_io)
#define LWSTORE_READ	_IOW(LWSTORE_IOC_MAGIC, 0x41, struct lwstore_io)
#define LWSTORE_STAT	_IOWR(LWSTORE_IOC_MAGIC, 0x42, struct lwstore_io)
#define LWSTORE_DELETE	_IOW(LWSTORE_IOC_MAGIC, 0x43, struct lwstore_io)
#define LWSTORE_LIST	_IOW(LWSTORE_IOC_MAGIC, 0x44, struct lwstore_list)

#endif /* _UAPI_LINUX_LWSTORE_H */
