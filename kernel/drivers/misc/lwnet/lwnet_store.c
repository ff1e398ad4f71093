// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/lwstore: a blob store kept by the host.
 *
 * Each ioctl copies its key and data into kernel buffers, hands the host a
 * request that points only at those, and waits for the ticket. A wait ended
 * by a signal cannot take the request back (the host may be running it), so
 * the ticket goes to a reaper that releases it once the host is done.
 * Values are written into a pending copy that only LWSTORE_WRITE_COMMIT
 * publishes, so an interrupted save never damages a committed value.
 */

#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <asm/byteorder.h>

#include "lwnet.h"

/*
 * Keys are paths: 1..LWSTORE_KEY_MAX bytes, no NUL, no empty, "." or ".."
 * component. A list prefix may be empty and may end in '/' or in part of
 * a component, but still holds no NUL and no "." or ".." component.
 */
int lwnet_store_check_key(const char *key, u32 len, bool prefix)
{
	u32 start = 0, i;

	if (len > LWSTORE_KEY_MAX || (!prefix && len == 0))
		return -EINVAL;
	for (i = 0; i <= len; i++) {
		bool end = i == len;
		u32 clen;

		if (!end && key[i] == '\0')
			return -EINVAL;
		if (!end && key[i] != '/')
			continue;
		/* A prefix may end in part of a name, or in nothing. */
		if (end && prefix)
			break;
		clen = i - start;
		if (clen == 0 || (clen == 1 && key[start] == '.') ||
		    (clen == 2 && key[start] == '.' && key[start + 1] == '.'))
			return -EINVAL;
		start = i + 1;
	}
	return 0;
}

/* Remembers an abandoned ticket; the reaper polls it until released. */
static void lwnet_store_abandon(struct lwnet_dev *dev, int ticket)
{
	bool queued = false;
	int i;

	spin_lock(&dev->reap_lock);
	for (i = 0; i < LWNET_REAP_MAX; i++) {
		if (dev->reap[i] < 0) {
			dev->reap[i] = ticket;
			queued = true;
			break;
		}
	}
	spin_unlock(&dev->reap_lock);
	if (!queued)
		pr_warn_ratelimited("lwnet: too many abandoned store requests\n");
	schedule_delayed_work(&dev->reap_work, msecs_to_jiffies(LWNET_REAP_MS));
}

/* Polls every abandoned ticket once; re-arms while some are still running. */
void lwnet_store_reap_now(struct lwnet_dev *dev)
{
	bool again = false;
	int i;

	spin_lock(&dev->reap_lock);
	for (i = 0; i < LWNET_REAP_MAX; i++) {
		int ticket = dev->reap[i];

		if (ticket < 0)
			continue;
		/* store_poll never waits, so calling it under the lock is fine. */
		if (dev->ops->store_poll(dev, ticket, NULL, 0) == -EINPROGRESS)
			again = true;
		else
			dev->reap[i] = -1;
	}
	spin_unlock(&dev->reap_lock);
	if (again)
		schedule_delayed_work(&dev->reap_work,
				      msecs_to_jiffies(LWNET_REAP_MS));
}

/*
 * Runs one request and waits for it. out/out_len receive READ, STAT and
 * LIST output. Returns the host's result (bytes >= 0 or -errno), or -EINTR
 * if a signal ended the wait (the request may still complete).
 */
int lwnet_store_call(struct lwnet_dev *dev, const struct lwhost_store_req *req,
		     void *out, u32 out_len)
{
	int ticket, ret;

	for (;;) {
		unsigned int seq = lwnet_wait_seq(dev);

		ticket = dev->ops->store_submit(dev, req);
		if (ticket != -EBUSY)
			break;
		/* Every slot is in use; one frees up after a notification. */
		if (lwnet_wait(dev, seq))
			return -ERESTARTSYS;
	}
	if (ticket < 0)
		return lwnet_errno(ticket);

	for (;;) {
		unsigned int seq = lwnet_wait_seq(dev);

		ret = dev->ops->store_poll(dev, ticket, out, out_len);
		if (ret != -EINPROGRESS)
			break;
		if (lwnet_wait(dev, seq)) {
			lwnet_store_abandon(dev, ticket);
			return -EINTR;
		}
	}
	if (ret < 0)
		return lwnet_errno(ret);
	/* Never trust the host to stay within the buffer it was given. */
	if ((req->op == LWHOST_STORE_READ || req->op == LWHOST_STORE_LIST ||
	     req->op == LWHOST_STORE_STAT) && ret > out_len)
		return -EIO;
	/* Another request woken for a free slot may be waiting on us. */
	lwnet_notify(dev);
	return ret;
}

/* Copies and checks a user key into buf (LWSTORE_KEY_MAX bytes). */
static int lwnet_store_get_key(char *buf, u64 uptr, u32 len, bool prefix)
{
	if (len > LWSTORE_KEY_MAX)
		return -ENAMETOOLONG;
	if (len && copy_from_user(buf, u64_to_user_ptr(uptr), len))
		return -EFAULT;
	return lwnet_store_check_key(buf, len, prefix);
}

/*
 * The fixed fields of an LWSTORE_WRITE, _READ, _STAT or _DELETE request
 * (lwstore.h): reserved is 0, len at most LWSTORE_CHUNK_MAX, and flags
 * only LWSTORE_WRITE_FLAGS_ALL bits on a write, 0 otherwise. 0 or -EINVAL.
 */
int lwnet_store_check_io(unsigned int cmd, const struct lwstore_io *io)
{
	if (io->reserved || io->len > LWSTORE_CHUNK_MAX)
		return -EINVAL;
	if (cmd == LWSTORE_WRITE ? (io->flags & ~LWSTORE_WRITE_FLAGS_ALL)
				 : io->flags)
		return -EINVAL;
	return 0;
}

/*
 * Allocates the bounce buffer of a request of len bytes (len > 0) and sets
 * *size to its size: len if it can, else LWNET_STORE_PIECE. On a no-MMU
 * kernel kvmalloc is kmalloc, and fragmentation can deny 256 KiB in one
 * block while plenty of memory is free; then the request goes in pieces.
 * (kvmalloc takes no __GFP_NORETRY; an order this large never calls the
 * OOM killer anyway.)
 */
static void *lwnet_store_buf(u32 len, u32 *size)
{
	void *buf = kvmalloc(len, GFP_KERNEL | __GFP_NOWARN);

	*size = len;
	if (buf || len <= LWNET_STORE_PIECE)
		return buf;
	*size = LWNET_STORE_PIECE;
	return kvmalloc(LWNET_STORE_PIECE, GFP_KERNEL);
}

/*
 * Runs a WRITE or READ of req->len bytes, moving them through buf (size
 * bytes, at least req->len or LWNET_STORE_PIECE) from or to the user's
 * data in it, as requests of at most size bytes. Returns what one request
 * of req->len bytes would: its byte count or -errno.
 *
 * A write is pieces at offset, offset + size, ...: TRUNC goes with the
 * first, COMMIT and LAZY with the last. Each piece extends the pending
 * value exactly where the one request would have, and only the last one
 * publishes it, so the committed value is the same. If a piece fails,
 * nothing is committed: the committed value is untouched, and the pending
 * one may hold the pieces before it, so a retry starts over with TRUNC (as
 * after a request interrupted while the host ran it). A read stops at a
 * short piece: the value ends there.
 */
long lwnet_store_rw(struct lwnet_dev *dev, const struct lwhost_store_req *req,
		    struct iov_iter *it, void *buf, u32 size)
{
	bool write = req->op == LWHOST_STORE_WRITE;
	struct lwhost_store_req piece = *req;
	u32 done = 0;
	long ret;

	do {
		u32 n = min(req->len - done, size);

		piece.offset = req->offset + done;
		piece.len = n;
		if (write) {
			piece.flags = req->flags;
			if (done)
				piece.flags &= ~LWHOST_STORE_TRUNC;
			if (done + n < req->len)
				piece.flags &= ~(LWHOST_STORE_COMMIT |
						 LWHOST_STORE_LAZY);
			if (copy_from_iter(buf, n, it) != n)
				return -EFAULT;
			piece.data = (uintptr_t)buf;
		}
		ret = lwnet_store_call(dev, &piece, write ? NULL : buf,
				       write ? 0 : n);
		/* A restart would repeat pieces the host already has. */
		if (ret == -ERESTARTSYS && done)
			return -EINTR;
		if (ret < 0)
			return ret;
		/*
		 * No piece may claim more than it was given, and a short write
		 * piece before the last would pass for progress uncommitted.
		 */
		if (ret > n || (write && ret < n && done + n < req->len))
			return -EIO;
		if (!write && copy_to_iter(buf, ret, it) != ret)
			return -EFAULT;
		done += ret;
		if (ret < n)
			break;
	} while (done < req->len);
	return done;
}

/* An LWSTORE_WRITE or _READ (write) of io, whose key is in req. */
static long lwnet_store_user_rw(struct lwnet_dev *dev,
				struct lwhost_store_req *req,
				const struct lwstore_io *io, bool write)
{
	struct iovec iov = {
		.iov_base = u64_to_user_ptr(io->buf),
		.iov_len = io->len,
	};
	struct iov_iter it;
	void *buf = NULL;
	u32 size = 0;
	long ret;

	if (io->len) {
		buf = lwnet_store_buf(io->len, &size);
		if (!buf)
			return -ENOMEM;
	}
	iov_iter_init(&it, write ? WRITE : READ, &iov, 1, io->len);
	req->op = write ? LWHOST_STORE_WRITE : LWHOST_STORE_READ;
	req->flags = io->flags;
	req->offset = io->offset;
	req->len = io->len;
	ret = lwnet_store_rw(dev, req, &it, buf, size);
	kvfree(buf);
	return ret;
}

static long lwnet_store_io(struct lwnet_dev *dev, unsigned int cmd,
			   void __user *argp)
{
	struct lwhost_store_req req = {};
	struct lwstore_io io;
	char *key;
	__le64 size;
	long ret;

	if (copy_from_user(&io, argp, sizeof(io)))
		return -EFAULT;
	ret = lwnet_store_check_io(cmd, &io);
	if (ret)
		return ret;

	key = kmalloc(LWSTORE_KEY_MAX, GFP_KERNEL);
	if (!key)
		return -ENOMEM;
	ret = lwnet_store_get_key(key, io.key, io.key_len, false);
	if (ret)
		goto out;
	req.key = (uintptr_t)key;
	req.key_len = io.key_len;

	switch (cmd) {
	case LWSTORE_WRITE:
	case LWSTORE_READ:
		ret = lwnet_store_user_rw(dev, &req, &io, cmd == LWSTORE_WRITE);
		break;
	case LWSTORE_STAT:
		req.op = LWHOST_STORE_STAT;
		req.len = sizeof(size);
		ret = lwnet_store_call(dev, &req, &size, sizeof(size));
		if (ret < 0)
			break;
		if (ret != sizeof(size)) {
			ret = -EIO;
			break;
		}
		io.size = le64_to_cpu(size);
		ret = copy_to_user(argp, &io, sizeof(io)) ? -EFAULT : 0;
		break;
	default: /* LWSTORE_DELETE */
		req.op = LWHOST_STORE_DELETE;
		ret = lwnet_store_call(dev, &req, NULL, 0);
		break;
	}
out:
	kfree(key);
	return ret;
}

/*
 * The fixed fields of an LWSTORE_LIST request (lwstore.h): reserved is 0
 * and len 1..LWSTORE_CHUNK_MAX. 0 or -EINVAL.
 */
int lwnet_store_check_list(const struct lwstore_list *ls)
{
	if (ls->reserved || ls->len == 0 || ls->len > LWSTORE_CHUNK_MAX)
		return -EINVAL;
	return 0;
}

static long lwnet_store_list(struct lwnet_dev *dev, void __user *argp)
{
	struct lwhost_store_req req = {};
	struct lwstore_list ls;
	char *keys;
	void *data;
	u32 size;
	long ret;

	if (copy_from_user(&ls, argp, sizeof(ls)))
		return -EFAULT;
	ret = lwnet_store_check_list(&ls);
	if (ret)
		return ret;

	/* Prefix, then the cursor: the layout the host slot uses too. */
	keys = kmalloc(2 * LWSTORE_KEY_MAX, GFP_KERNEL);
	/* Only whole keys are listed, so a piece is as good an answer. */
	data = lwnet_store_buf(ls.len, &size);
	if (!keys || !data) {
		ret = -ENOMEM;
		goto out;
	}
	ret = lwnet_store_get_key(keys, ls.prefix, ls.prefix_len, true);
	if (ret)
		goto out;
	if (ls.after_len) {
		ret = lwnet_store_get_key(keys + LWSTORE_KEY_MAX, ls.after,
					  ls.after_len, false);
		if (ret)
			goto out;
	}
	req.op = LWHOST_STORE_LIST;
	req.key = (uintptr_t)keys;
	req.key_len = ls.prefix_len;
	req.after = (uintptr_t)(keys + LWSTORE_KEY_MAX);
	req.after_len = ls.after_len;
	req.len = size;
	ret = lwnet_store_call(dev, &req, data, size);
	if (ret > 0 && copy_to_user(u64_to_user_ptr(ls.buf), data, ret))
		ret = -EFAULT;
out:
	kvfree(data);
	kfree(keys);
	return ret;
}

long lwnet_store_ioctl_dev(struct lwnet_dev *dev, unsigned int cmd,
			   void __user *argp)
{
	switch (cmd) {
	case LWSTORE_WRITE:
	case LWSTORE_READ:
	case LWSTORE_STAT:
	case LWSTORE_DELETE:
		return lwnet_store_io(dev, cmd, argp);
	case LWSTORE_LIST:
		return lwnet_store_list(dev, argp);
	default:
		return -ENOTTY;
	}
}

static int lwnet_store_fop_open(struct inode *inode, struct file *file)
{
	struct lwnet_dev *dev = container_of(file->private_data,
					     struct lwnet_dev, store_misc);

	file->private_data = dev;
	return nonseekable_open(inode, file);
}

static long lwnet_store_fop_ioctl(struct file *file, unsigned int cmd,
				  unsigned long arg)
{
	return lwnet_store_ioctl_dev(file->private_data, cmd,
				     (void __user *)arg);
}

const struct file_operations lwnet_store_fops = {
	.owner		= THIS_MODULE,
	.open		= lwnet_store_fop_open,
	.unlocked_ioctl	= lwnet_store_fop_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};
