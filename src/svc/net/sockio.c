/*
 * Deadline I/O on a socket (sockio.h). TLS first when there is TLS: it
 * may hold bytes already read from the socket, so a read never waits for
 * the socket before asking mtls_read.
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/sockio.h"

long
sockio_try_read(int fd, struct mtls *tls, void *buf, size_t len)
{
	long r;

	if (tls != NULL)
		return mtls_read(tls, buf, len);
	for (;;) {
		r = read(fd, buf, len);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? MTLS_WANT_READ : -1;
	}
}

long
sockio_read(int fd, struct mtls *tls, void *buf, size_t len,
    int64_t deadline, sockio_wait_fn wait, void *arg)
{
	for (;;) {
		long r = sockio_try_read(fd, tls, buf, len);
		int w;

		if (r >= 0 || r == -1)
			return r;
		if ((w = wait(arg, fd, r == MTLS_WANT_WRITE ? POLLOUT : POLLIN,
		    deadline)) != 0)
			return w;
	}
}

int
sockio_write(int fd, struct mtls *tls, const void *p, size_t len,
    int64_t deadline, sockio_wait_fn wait, void *arg)
{
	const char *b = p;

	while (len > 0) {
		long r;
		int w;

		if (tls != NULL) {
			r = mtls_write(tls, b, len);
			if (r == -1)
				return -1;
		} else {
			r = send(fd, b, len, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && errno != EAGAIN)
				return -1;
			if (r < 0)
				r = MTLS_WANT_WRITE;
		}
		if (r > 0) {
			b += r;
			len -= (size_t)r;
			continue;
		}
		if ((w = wait(arg, fd, r == MTLS_WANT_READ ? POLLIN : POLLOUT,
		    deadline)) != 0)
			return w;
	}
	return 0;
}
