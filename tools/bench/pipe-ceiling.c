// SPDX-License-Identifier: GPL-2.0-only
/*
 * pipe-ceiling [--pipe] FILE: the guest's own ceilings for `bench system`,
 * ONE process moving FILE (a tmpfs file) to stdout with lwtcp's buffer size
 * (65536 bytes, guest/lwtcp/src/main.rs), so no context switch between a
 * writer and a reader inflates the figure, as `dd | dd` did.
 *   default: read(FILE) -> write(stdout) per chunk, lwtcp's own loop (read
 *            the kernel, write stdout) with the network taken out: the
 *            upper bound for lwtcp, the same two system calls per chunk.
 *   --pipe:  read(FILE) -> write(pipe) -> read(pipe) -> write(stdout): the
 *            bytes also cross a pipe, as lwhost's delivery makes them cross
 *            the driver; four system calls per chunk, so not an upper bound
 *            on a um guest, where each system call costs a ptrace round trip.
 * Prints nothing; exit 0 when every byte moved, 1 with a message otherwise,
 * 2 on a usage error.
 *   pipe-ceiling --now: prints CLOCK_MONOTONIC in seconds with 9 decimals,
 *            the clock `bench system` times both lwtcp and the ceilings
 *            with (/proc/uptime has 10 ms steps: 6% of a 0.17 s run).
 * Built static on the host (x86_64, run in the um guest from /mnt/host).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../tests/support/c/write_all.h"

#define BUF 65536 /* lwtcp's netbuf (guest/lwtcp/src/main.rs) */

static char buf[BUF];

static int fail(const char *what)
{
	fprintf(stderr, "pipe-ceiling: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	int in, pfd[2], via_pipe = argc == 3 && !strcmp(argv[1], "--pipe");
	const char *file = argv[argc - 1];
	struct timespec now;

	if (argc == 2 && !strcmp(argv[1], "--now")) {
		if (clock_gettime(CLOCK_MONOTONIC, &now))
			return fail("clock_gettime");
		printf("%lld.%09ld\n", (long long)now.tv_sec, now.tv_nsec);
		return 0;
	}

	if ((argc != 2 && !via_pipe) || !strcmp(file, "--help") || !strcmp(file, "-h")) {
		fprintf(argc == 2 ? stdout : stderr,
			"Usage: pipe-ceiling [--pipe] FILE   (FILE -> [pipe ->] stdout in %d-byte chunks, one process)\n"
			"       pipe-ceiling --now           (CLOCK_MONOTONIC, seconds)\n",
			BUF);
		return argc == 2 ? 0 : 2;
	}
	in = open(file, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fail(file);
	if (via_pipe) {
		if (pipe2(pfd, O_CLOEXEC))
			return fail("pipe");
		/* A whole chunk must fit, or the single process would block on itself. */
		if (fcntl(pfd[1], F_SETPIPE_SZ, BUF) < BUF)
			return fail("F_SETPIPE_SZ");
	}
	for (;;) {
		ssize_t n = read(in, buf, BUF), got = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail("read FILE");
		if (n == 0)
			return 0;
		if (via_pipe) {
			if (write_all(pfd[1], buf, (size_t)n))
				return fail("write pipe");
			while (got < n) {
				ssize_t r = read(pfd[0], buf + got, (size_t)(n - got));

				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0)
					return fail("read pipe");
				got += r;
			}
		}
		if (write_all(1, buf, (size_t)n))
			return fail("write stdout");
	}
}
