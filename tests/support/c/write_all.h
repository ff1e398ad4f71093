/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * write_all.h: the write loop of the small C programs the tests and benches
 * build (tests/e2e/lwtcp.c, tools/bench/pipe-ceiling.c). Header-only: each
 * includes it by a relative path, so their one-line gcc commands need no -I.
 */
#ifndef LW_WRITE_ALL_H
#define LW_WRITE_ALL_H

#include <errno.h>
#include <stddef.h>
#include <sys/types.h>
#include <unistd.h>

/*
 * write_all: every byte of p[0..n) to fd, retrying short writes and EINTR;
 * 0, or -1 with errno set (a write that returns 0 also gives -1).
 */
static inline int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

#endif /* LW_WRITE_ALL_H */
