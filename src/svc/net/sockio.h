/*
 * sockio: reads and writes with a deadline on a non-blocking socket,
 * through TLS (a struct mtls over the socket) or plain, for net.c's
 * connections and the gateway's clients and upstreams (net_sockio_wait).
 * How to wait is the caller's: its function arms the fd in its loop and
 * lets the loop run until the fd is ready or the deadline passes.
 */
#ifndef MTLS_SOCKIO_H
#define MTLS_SOCKIO_H

#include <stddef.h>
#include <stdint.h>

#include "mtls.h"

/* 0 when <fd> is ready for <ev> (POLLIN or POLLOUT), else what the
 * caller's loop says (NET_TIMEOUT, NET_ERR). */
typedef int (*sockio_wait_fn)(void *arg, int fd, short ev, int64_t deadline);

/* One attempt: bytes, 0 at the peer's end of stream, -1 (NET_ERR), or
 * MTLS_WANT_READ / MTLS_WANT_WRITE. <tls> NULL: plain. */
long	 sockio_try_read(int fd, struct mtls *tls, void *buf, size_t len);
/* Bytes (> 0), 0 at the end of stream, -1, or what <wait> returned. */
long	 sockio_read(int fd, struct mtls *tls, void *buf, size_t len,
	    int64_t deadline, sockio_wait_fn wait, void *arg);
/* All of <len>: 0, -1, or what <wait> returned. */
int	 sockio_write(int fd, struct mtls *tls, const void *p, size_t len,
	    int64_t deadline, sockio_wait_fn wait, void *arg);

#endif
