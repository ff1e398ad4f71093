// SPDX-License-Identifier: GPL-2.0
/*
 * lwnet um backend, host side: the system calls user-mode Linux makes on
 * the host to reach lwhost (see lwnet_kern.c).
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <os.h>
#include "lwnet.h"

#define LWNET_GREETING_MAX	16

static int lwnet_user_recv(int sock, const char *greeting, int greeting_len,
			   int *memfd, int *eventfd, int timeout_ms)
{
	char data[LWNET_GREETING_MAX];
	char control[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { .iov_base = data, .iov_len = greeting_len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control,
		.msg_controllen = sizeof(control),
	};
	struct pollfd pfd = { .fd = sock, .events = POLLIN };
	struct cmsghdr *cmsg;
	int fds[2];
	ssize_t n;
	int ret;

	do {
		ret = poll(&pfd, 1, timeout_ms);
	} while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return -errno;
	if (ret == 0)
		return -ETIMEDOUT;

	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET ||
	    cmsg->cmsg_type != SCM_RIGHTS ||
	    cmsg->cmsg_len != CMSG_LEN(2 * sizeof(int))) {
		/* Close whatever fds came along with a malformed message. */
		if (cmsg && cmsg->cmsg_level == SOL_SOCKET &&
		    cmsg->cmsg_type == SCM_RIGHTS) {
			int *p = (int *)CMSG_DATA(cmsg);
			size_t i, nfd = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (i = 0; i < nfd; i++)
				close(p[i]);
		}
		return -EPROTO;
	}
	memcpy(fds, CMSG_DATA(cmsg), sizeof(fds));
	if (n != greeting_len || memcmp(data, greeting, greeting_len) ||
	    (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		close(fds[0]);
		close(fds[1]);
		return -EPROTO;
	}
	*memfd = fds[0];
	*eventfd = fds[1];
	return 0;
}

int lwnet_user_connect(const char *path, const char *greeting,
		       int greeting_len, int *memfd, int *eventfd,
		       int timeout_ms)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	int sock, ret;

	if (greeting_len <= 0 || greeting_len > LWNET_GREETING_MAX)
		return -EINVAL;
	if (len >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, len + 1);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	do {
		ret = connect(sock, (struct sockaddr *)&addr, sizeof(addr));
	} while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		ret = -errno;
		goto fail;
	}
	ret = lwnet_user_recv(sock, greeting, greeting_len, memfd, eventfd,
			      timeout_ms);
	if (ret < 0)
		goto fail;
	return sock;
fail:
	close(sock);
	return ret;
}

void *lwnet_user_map(int memfd, unsigned long size)
{
	struct stat st;
	void *p;

	/* Touching a mapping beyond the end of the file would be SIGBUS. */
	if (fstat(memfd, &st) < 0 || st.st_size < 0 ||
	    (unsigned long)st.st_size < size)
		return NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	return p == MAP_FAILED ? NULL : p;
}

void lwnet_user_futex_wake(unsigned int *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, 1, NULL, NULL, 0);
}
