/*
 * A C lwtcp written against the first /dev/lwnet interface: its own copies of
 * the LWNET_OPEN and LWNET_CLOSE definitions exactly as that interface first
 * defined them, so that it compiling and working against the driver proves
 * the interface is kept (the uapi header keeps their numbers and layout, and
 * abi/src/lib.rs checks them). Only LWNET_OPEN, read, write and close are
 * used: no extension.
 *
 * Usage: lwtcp <host> <port>   stdin goes to the connection, the connection
 * to stdout; ends when the peer closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../support/c/write_all.h"

/* The first interface, unchanged. */
#define LWNET_IOC_MAGIC 'N'
#define LWNET_OPEN    _IOWR(LWNET_IOC_MAGIC, 1, struct lwnet_open_args)
#define LWNET_CLOSE   _IOW(LWNET_IOC_MAGIC, 2, int)

struct lwnet_open_args {
	char host[256];
	int port;
	int connId;  // output
};

int main(int argc, char *argv[])
{
	struct lwnet_open_args args;
	struct pollfd pfd[2];
	char buf[65536];
	int stdin_open = 1;

	if (argc != 3) {
		fprintf(stderr, "Usage: lwtcp <host> <port>\n");
		return 1;
	}

	int fd = open("/dev/lwnet", O_RDWR);

	if (fd < 0) {
		perror("lwtcp: /dev/lwnet");
		return 1;
	}
	memset(&args, 0, sizeof(args));
	if (strlen(argv[1]) >= sizeof(args.host)) {
		fprintf(stderr, "lwtcp: host name too long\n");
		return 1;
	}
	strcpy(args.host, argv[1]);
	args.port = atoi(argv[2]);
	// ioctl to open connection
	if (ioctl(fd, LWNET_OPEN, &args) < 0) {
		perror("lwtcp: connect");
		return 1;
	}

	// read from stdin, write to device; read from device, write to stdout
	for (;;) {
		pfd[0].fd = stdin_open ? 0 : -1;
		pfd[0].events = POLLIN;
		pfd[1].fd = fd;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("lwtcp: poll");
			return 1;
		}
		if (stdin_open && (pfd[0].revents & (POLLIN | POLLHUP))) {
			ssize_t n = read(0, buf, sizeof(buf));

			if (n <= 0)
				stdin_open = 0;
			else if (write_all(fd, buf, n) < 0) {
				perror("lwtcp: send");
				return 1;
			}
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n == 0)
				break;
			if (n < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				perror("lwtcp: receive");
				return 1;
			}
			if (write_all(1, buf, n) < 0)
				return 1;
		}
	}

	// close
	ioctl(fd, LWNET_CLOSE, &args.connId);
	close(fd);
	return 0;
}
