// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/lwnet: one TCP connection through the host per open file.
 *
 * Lock order: rx_mutex or tx_mutex, then lock. lock is held only around a
 * host call and the state it reads or changes, never across a wait or a
 * user copy, so LWNET_CLOSE, poll and status never wait behind a blocked
 * reader or writer. User data only ever reaches the host through the
 * file's bounce buffers, in chunks of at most LWNET_IO_MAX bytes.
 */

#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/minmax.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "lwnet.h"

struct lwnet_file *lwnet_file_alloc(struct lwnet_dev *dev)
{
	struct lwnet_file *f;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return NULL;
	f->rx_buf = kvmalloc(LWNET_IO_MAX, GFP_KERNEL);
	f->tx_buf = kvmalloc(LWNET_IO_MAX, GFP_KERNEL);
	if (!f->rx_buf || !f->tx_buf) {
		kvfree(f->rx_buf);
		kvfree(f->tx_buf);
		kfree(f);
		return NULL;
	}
	f->dev = dev;
	f->id = -1;
	f->state = LWNET_STATE_IDLE;
	mutex_init(&f->lock);
	mutex_init(&f->rx_mutex);
	mutex_init(&f->tx_mutex);
	return f;
}

void lwnet_file_free(struct lwnet_file *f)
{
	if (f->id >= 0)
		f->dev->ops->net_close(f->dev, f->id);
	kvfree(f->rx_buf);
	kvfree(f->tx_buf);
	kfree(f);
}

/* err is a negative errno from the host or from us. f->lock held. */
static void lwnet_fail(struct lwnet_file *f, int err)
{
	f->state = LWNET_STATE_FAILED;
	f->error = -lwnet_errno(err);
}

/*
 * A negative host answer about a connection we believe exists. -EBADF
 * means the host forgot it (it restarted, say): to the user that is a
 * reset, not a bad file descriptor.
 */
static int lwnet_host_err(int ret)
{
	if (ret == -EBADF)
		return -ECONNRESET;
	return lwnet_errno(ret);
}

/* Moves a CONNECTING file on if the host has news. f->lock held. */
static void lwnet_refresh(struct lwnet_file *f)
{
	int p;

	if (f->state != LWNET_STATE_CONNECTING)
		return;
	p = f->dev->ops->net_poll(f->dev, f->id);
	if (p < 0)
		lwnet_fail(f, lwnet_host_err(p));
	else if (p & LWHOST_POLL_ERR)
		lwnet_fail(f, -(int)((u32)p >> LWHOST_POLL_ERRNO_SHIFT));
	else if (p & (LWHOST_POLL_IN | LWHOST_POLL_OUT | LWHOST_POLL_HUP))
		f->state = LWNET_STATE_CONNECTED;
}

/* 0 if host is a NUL-terminated, non-empty name within size bytes. */
int lwnet_check_host(const char *host, size_t size)
{
	size_t len = strnlen(host, size);

	if (len == 0 || len >= size || len >= LWHOST_HOST_MAX)
		return -EINVAL;
	return 0;
}

int lwnet_connect(struct lwnet_file *f, const char *host, u32 port, u32 flags,
		  u32 timeout_ms, bool nonblock, int *id)
{
	struct lwnet_dev *dev = f->dev;
	u32 hflags = 0;
	int ret;

	*id = -1;
	ret = lwnet_check_host(host, LWNET_HOST_MAX);
	if (ret)
		return ret;
	if (port < 1 || port > 65535 || (flags & ~LWNET_OPEN_FLAGS_ALL))
		return -EINVAL;
	if (flags & LWNET_OPEN_TLS)
		hflags |= LWHOST_OPEN_TLS;

	mutex_lock(&f->lock);
	lwnet_refresh(f);
	if (f->state != LWNET_STATE_IDLE) {
		ret = f->state == LWNET_STATE_CONNECTING ? -EALREADY : -EISCONN;
		mutex_unlock(&f->lock);
		return ret;
	}
	ret = dev->ops->net_open(dev, host, strlen(host), port, hflags,
				 timeout_ms);
	if (ret < 0) {
		lwnet_fail(f, ret);
		ret = -f->error;
		mutex_unlock(&f->lock);
		return ret;
	}
	f->id = ret;
	*id = ret;
	f->state = LWNET_STATE_CONNECTING;
	mutex_unlock(&f->lock);

	if (nonblock)
		return -EINPROGRESS;

	for (;;) {
		unsigned int seq = lwnet_wait_seq(dev);

		mutex_lock(&f->lock);
		lwnet_refresh(f);
		switch (f->state) {
		case LWNET_STATE_CONNECTED:
			ret = 0;
			break;
		case LWNET_STATE_FAILED:
			ret = -f->error;
			break;
		case LWNET_STATE_CLOSED:	/* LWNET_CLOSE from another thread */
			ret = -ECONNABORTED;
			break;
		default:
			ret = -EAGAIN;
			break;
		}
		mutex_unlock(&f->lock);
		if (ret != -EAGAIN)
			return ret;
		/*
		 * Not restartable: the connection goes on in the background,
		 * as connect() does on a socket; poll reports the outcome.
		 */
		if (lwnet_wait(dev, seq))
			return -EINTR;
	}
}

enum lwnet_dir { LWNET_RX, LWNET_TX };

/* Serves bytes already in rx_buf. rx_mutex held. */
static ssize_t lwnet_copy_rx(struct lwnet_file *f, struct iov_iter *to)
{
	size_t n = copy_to_iter(f->rx_buf + f->rx_off, f->rx_len, to);

	if (!n)
		return -EFAULT;	/* the bytes stay buffered for the next read */
	f->rx_off += n;
	f->rx_len -= n;
	mutex_lock(&f->lock);
	f->bytes_in += n;
	mutex_unlock(&f->lock);
	return n;
}

/*
 * Fills rx_buf from the host. Returns its byte count (1 when bytes are
 * already buffered), 0 at the peer's end, or a negative errno.
 * f->lock and rx_mutex held, the file CONNECTED.
 */
static int lwnet_host_rx(struct lwnet_file *f)
{
	int n;

	if (f->rx_len)
		return 1;
	n = f->dev->ops->net_read(f->dev, f->id, f->rx_buf, LWNET_IO_MAX);
	if (n > LWNET_IO_MAX) {
		/* A host that claims more than we asked for. */
		lwnet_fail(f, -EIO);
		return -EIO;
	}
	if (n > 0) {
		f->rx_off = 0;
		f->rx_len = n;
	} else if (n == 0) {
		f->flags |= LWNET_STATUS_PEER_EOF;
	} else if (n != -EAGAIN) {
		lwnet_fail(f, lwnet_host_err(n));
		n = -f->error;
	}
	return n;
}

/*
 * Hands the first chunk bytes of tx_buf to the host. Returns the bytes it
 * took or a negative errno (-EAGAIN when it has no room).
 * f->lock and tx_mutex held, the file CONNECTED.
 */
static int lwnet_host_tx(struct lwnet_file *f, size_t chunk)
{
	int n;

	if (f->flags & LWNET_STATUS_WR_SHUT)
		return -EPIPE;
	n = f->dev->ops->net_write(f->dev, f->id, f->tx_buf, chunk);
	if (n > (int)chunk) {
		lwnet_fail(f, -EIO);
		n = -EIO;
	} else if (n > 0) {
		f->bytes_out += n;
	} else if (n == 0) {
		n = -EAGAIN;	/* treat "took nothing" as full */
	} else if (n != -EAGAIN && n != -EPIPE) {
		lwnet_fail(f, lwnet_host_err(n));
		n = -f->error;
	}
	return n;
}

/*
 * One step of read or write: what the file's state allows, else one host
 * call of at most LWNET_IO_MAX bytes. A positive answer is bytes moved
 * (for rx: bytes now in rx_buf). f->lock held.
 */
static int lwnet_io_step(struct lwnet_file *f, enum lwnet_dir dir,
			 size_t chunk)
{
	lwnet_refresh(f);
	switch (f->state) {
	case LWNET_STATE_IDLE:
		return -ENOTCONN;
	case LWNET_STATE_CLOSED:
		return dir == LWNET_RX ? 0 : -EPIPE;
	case LWNET_STATE_FAILED:
		/* Bytes that arrived before the failure are read first. */
		if (dir == LWNET_RX && f->rx_len)
			return 1;
		return -f->error;
	case LWNET_STATE_CONNECTING:
		return -EAGAIN;
	default:
		if (dir == LWNET_RX)
			return lwnet_host_rx(f);
		return lwnet_host_tx(f, chunk);
	}
}

/*
 * read and write: moves bytes between the user's iterator and the host
 * through the file's bounce buffer for dir. Goes on while the host takes
 * or gives bytes, so one call moves up to the whole iterator; waits only
 * while nothing has moved, as a socket does. A wait is restartable since
 * nothing was consumed before it.
 */
static ssize_t lwnet_io(struct lwnet_file *f, struct iov_iter *it,
			bool nonblock, enum lwnet_dir dir)
{
	struct mutex *m = dir == LWNET_RX ? &f->rx_mutex : &f->tx_mutex;
	ssize_t done = 0;
	ssize_t ret = 0;

	if (!iov_iter_count(it))
		return 0;
	if (mutex_lock_interruptible(m))
		return -ERESTARTSYS;
	while (iov_iter_count(it)) {
		unsigned int seq = lwnet_wait_seq(f->dev);
		size_t chunk = 0;
		int n;

		if (dir == LWNET_TX) {
			chunk = min_t(size_t, iov_iter_count(it), LWNET_IO_MAX);
			chunk = copy_from_iter(f->tx_buf, chunk, it);
			if (!chunk) {
				ret = -EFAULT;
				break;
			}
		}
		mutex_lock(&f->lock);
		n = lwnet_io_step(f, dir, chunk);
		mutex_unlock(&f->lock);

		if (n > 0 && dir == LWNET_RX) {
			ret = lwnet_copy_rx(f, it);
			if (ret < 0)
				break;
			done += ret;
			continue;
		}
		/* Give back what the host did not take. */
		if (dir == LWNET_TX)
			iov_iter_revert(it, n > 0 ? chunk - n : chunk);
		if (n > 0) {
			done += n;
			continue;
		}
		ret = n;
		/* A read returns what it has; a blocking write sends it all. */
		if (n != -EAGAIN || nonblock || (done && dir == LWNET_RX))
			break;
		ret = lwnet_wait(f->dev, seq);
		if (ret)
			break;
	}
	mutex_unlock(m);
	return done ? done : ret;
}

ssize_t lwnet_read(struct lwnet_file *f, struct iov_iter *to, bool nonblock)
{
	return lwnet_io(f, to, nonblock, LWNET_RX);
}

ssize_t lwnet_write(struct lwnet_file *f, struct iov_iter *from, bool nonblock)
{
	return lwnet_io(f, from, nonblock, LWNET_TX);
}

__poll_t lwnet_poll_mask(struct lwnet_file *f)
{
	struct lwnet_dev *dev = f->dev;
	__poll_t mask = 0;
	int p;

	mutex_lock(&f->lock);
	lwnet_refresh(f);
	switch (f->state) {
	case LWNET_STATE_IDLE:
		mask = EPOLLHUP;
		break;
	case LWNET_STATE_CLOSED:
		mask = EPOLLIN | EPOLLRDNORM | EPOLLHUP;
		break;
	case LWNET_STATE_FAILED:
		mask = EPOLLERR | EPOLLHUP;
		break;
	case LWNET_STATE_CONNECTING:
		break;
	default:
		p = dev->ops->net_poll(dev, f->id);
		if (p < 0) {
			lwnet_fail(f, lwnet_host_err(p));
			mask = EPOLLERR | EPOLLHUP;
			break;
		}
		if (p & LWHOST_POLL_ERR) {
			lwnet_fail(f, -(int)((u32)p >> LWHOST_POLL_ERRNO_SHIFT));
			mask = EPOLLERR | EPOLLHUP;
			break;
		}
		if (p & LWHOST_POLL_IN)
			mask |= EPOLLIN | EPOLLRDNORM;
		if (p & LWHOST_POLL_HUP) {
			/* Like a pipe whose writer is gone: read gives 0. */
			f->flags |= LWNET_STATUS_PEER_EOF;
			mask |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP | EPOLLHUP;
		}
		if ((p & LWHOST_POLL_OUT) && !(f->flags & LWNET_STATUS_WR_SHUT))
			mask |= EPOLLOUT | EPOLLWRNORM;
		break;
	}
	/* Bytes already taken from the host are readable whatever it says. */
	if (READ_ONCE(f->rx_len))
		mask |= EPOLLIN | EPOLLRDNORM;
	mutex_unlock(&f->lock);
	return mask;
}

int lwnet_shutdown(struct lwnet_file *f)
{
	int ret = 0;

	mutex_lock(&f->lock);
	lwnet_refresh(f);
	if (f->state == LWNET_STATE_FAILED) {
		ret = -f->error;
	} else if (f->state != LWNET_STATE_CONNECTED) {
		ret = -ENOTCONN;
	} else if (!(f->flags & LWNET_STATUS_WR_SHUT)) {
		ret = f->dev->ops->net_shutdown(f->dev, f->id);
		if (ret == 0)
			f->flags |= LWNET_STATUS_WR_SHUT;
		else if (ret > 0)
			ret = -EIO;
		else
			ret = lwnet_host_err(ret);
	}
	mutex_unlock(&f->lock);
	return ret;
}

/* LWNET_CLOSE: ends this file's connection; blocked I/O on it returns. */
int lwnet_close_conn(struct lwnet_file *f)
{
	int ret = 0;

	mutex_lock(&f->lock);
	if (f->state == LWNET_STATE_IDLE || f->state == LWNET_STATE_CLOSED) {
		ret = -ENOTCONN;
	} else {
		if (f->id >= 0)
			f->dev->ops->net_close(f->dev, f->id);
		f->id = -1;
		f->state = LWNET_STATE_CLOSED;
	}
	mutex_unlock(&f->lock);
	if (!ret)
		lwnet_notify(f->dev);
	return ret;
}

void lwnet_status(struct lwnet_file *f, struct lwnet_status *st)
{
	memset(st, 0, sizeof(*st));
	mutex_lock(&f->lock);
	lwnet_refresh(f);
	st->state = f->state;
	st->flags = f->flags;
	st->error = f->state == LWNET_STATE_FAILED ? f->error : 0;
	st->bytes_in = f->bytes_in;
	st->bytes_out = f->bytes_out;
	mutex_unlock(&f->lock);
}

static long lwnet_ioctl_open(struct lwnet_file *f, void __user *argp,
			     bool nonblock)
{
	struct lwnet_open_args args;
	int id, ret;

	if (copy_from_user(&args, argp, sizeof(args)))
		return -EFAULT;
	if (args.port < 1 || args.port > 65535)
		return -EINVAL;
	ret = lwnet_connect(f, args.host, args.port, 0, 0, nonblock, &id);
	if (id < 0)
		return ret;
	args.connId = id;
	if (copy_to_user(argp, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}

static long lwnet_ioctl_open_ex(struct lwnet_file *f, void __user *argp,
				bool nonblock)
{
	struct lwnet_open_ex args;
	int id, ret;

	if (copy_from_user(&args, argp, sizeof(args)))
		return -EFAULT;
	ret = lwnet_connect(f, args.host, args.port, args.flags,
			    args.timeout_ms, nonblock, &id);
	if (id < 0)
		return ret;
	args.conn_id = id;
	if (copy_to_user(argp, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}

long lwnet_file_ioctl(struct lwnet_file *f, unsigned int cmd,
		      void __user *argp, bool nonblock)
{
	struct lwnet_status st;

	switch (cmd) {
	case LWNET_OPEN:
		return lwnet_ioctl_open(f, argp, nonblock);
	case LWNET_OPEN_EX:
		return lwnet_ioctl_open_ex(f, argp, nonblock);
	case LWNET_CLOSE:
		/* The argument (the first lwtcp passed its connId) is not needed. */
		return lwnet_close_conn(f);
	case LWNET_SHUTDOWN:
		return lwnet_shutdown(f);
	case LWNET_STATUS:
		lwnet_status(f, &st);
		if (copy_to_user(argp, &st, sizeof(st)))
			return -EFAULT;
		return 0;
	default:
		return -ENOTTY;
	}
}

static int lwnet_fop_open(struct inode *inode, struct file *file)
{
	struct lwnet_dev *dev = container_of(file->private_data,
					     struct lwnet_dev, net_misc);
	struct lwnet_file *f;

	f = lwnet_file_alloc(dev);
	if (!f)
		return -ENOMEM;
	file->private_data = f;
	return nonseekable_open(inode, file);
}

static int lwnet_fop_release(struct inode *inode, struct file *file)
{
	lwnet_file_free(file->private_data);
	return 0;
}

static ssize_t lwnet_fop_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	return lwnet_read(iocb->ki_filp->private_data, to,
			  (iocb->ki_filp->f_flags & O_NONBLOCK) ||
			  (iocb->ki_flags & IOCB_NOWAIT));
}

static ssize_t lwnet_fop_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	return lwnet_write(iocb->ki_filp->private_data, from,
			   (iocb->ki_filp->f_flags & O_NONBLOCK) ||
			   (iocb->ki_flags & IOCB_NOWAIT));
}

static __poll_t lwnet_fop_poll(struct file *file, poll_table *wait)
{
	struct lwnet_file *f = file->private_data;

	poll_wait(file, &f->dev->wq, wait);
	/* Without an IRQ, someone must come back and ask the host again. */
	lwnet_kick_poll(f->dev);
	return lwnet_poll_mask(f);
}

static long lwnet_fop_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	return lwnet_file_ioctl(file->private_data, cmd, (void __user *)arg,
				file->f_flags & O_NONBLOCK);
}

const struct file_operations lwnet_net_fops = {
	.owner		= THIS_MODULE,
	.open		= lwnet_fop_open,
	.release	= lwnet_fop_release,
	.read_iter	= lwnet_fop_read_iter,
	.write_iter	= lwnet_fop_write_iter,
	.poll		= lwnet_fop_poll,
	.unlocked_ioctl	= lwnet_fop_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};
