/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Host-side helpers of the lwnet um backend (lwnet_user.c), called from
 * the kernel side (lwnet_kern.c). Errors are negative errno values.
 */
#ifndef __UM_LWNET_H
#define __UM_LWNET_H

/*
 * Connects to lwhost's unix socket at path and receives the region memfd
 * and the eventfd with the greeting (greeting_len bytes, LWHOST_GREETING in
 * <uapi/linux/lwhost.h>, which this host-side code cannot include). Waits at
 * most timeout_ms. Returns the socket fd, or -errno.
 */
int lwnet_user_connect(const char *path, const char *greeting,
		       int greeting_len, int *memfd, int *eventfd,
		       int timeout_ms);
/* Maps size bytes of memfd shared; NULL if it is smaller or mmap fails. */
void *lwnet_user_map(int memfd, unsigned long size);
/* FUTEX_WAKE one waiter on a shared futex word (not FUTEX_PRIVATE). */
void lwnet_user_futex_wake(unsigned int *addr);

#endif
