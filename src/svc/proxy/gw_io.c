/*
 * The gateway's I/O (gw_int.h): reads and writes with deadlines on
 * non-blocking sockets, through TLS or plain, and the output buffer a
 * connection writes its heads and bodies into.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/sockio.h"
#include "proxy/gw_int.h"

int
io_wait(struct io *s, short ev, int64_t deadline)
{
	return net_wait_fd(s->nc, s->fd, ev, deadline);
}

/* One attempt: bytes, 0 at EOF, IO_ERR, or MTLS_WANT_READ/WRITE. */
long
io_try_read(struct io *s, void *buf, size_t len)
{
	return sockio_try_read(s->fd, s->tls, buf, len);
}

/* 1 when a read could return without the socket being readable: TLS
 * bytes already buffered (processed or not). */
int
io_buffered(const struct io *s)
{
	return s->tls != NULL && mtls_pending(s->tls);
}

long
io_read(struct io *s, void *buf, size_t len, int64_t deadline)
{
	return sockio_read(s->fd, s->tls, buf, len, deadline, net_sockio_wait, s->nc);
}

static int
io_write(struct io *s, const char *p, size_t len, int64_t deadline)
{
	return sockio_write(s->fd, s->tls, p, len, deadline, net_sockio_wait, s->nc);
}

void
ob_flush(struct obuf *b, int64_t deadline)
{
	if (b->len > 0 && !b->failed && io_write(b->io, b->b, b->len,
	    deadline) != 0)
		b->failed = 1;
	b->len = 0;
}

void
ob_put(struct obuf *b, const void *p, size_t n, int64_t deadline)
{
	while (n > 0 && !b->failed) {
		size_t k = sizeof(b->b) - b->len;

		if (k == 0) {
			ob_flush(b, deadline);
			continue;
		}
		if (k > n)
			k = n;
		memcpy(b->b + b->len, p, k);
		b->len += k;
		p = (const char *)p + k;
		n -= k;
	}
}

/*
 * Formatted output is never cut: a line that does not fit the stack
 * buffer is formatted again into one of its size, and one that cannot be
 * formatted fails the stream (b->failed: the caller answers 502 or
 * closes) rather than emit part of a line. A line cut before its CRLF
 * glues the next one (a framing header) onto it.
 */
void
ob_printf(struct obuf *b, int64_t deadline, const char *fmt, ...)
{
	char tmp[1024], *p = tmp;
	va_list ap, aq;
	int n;

	va_start(ap, fmt);
	va_copy(aq, ap);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= sizeof(tmp) &&
	    ((p = malloc((size_t)n + 1)) == NULL ||
	    vsnprintf(p, (size_t)n + 1, fmt, aq) != n)) {
		free(p);
		n = -1;
	}
	va_end(aq);
	if (n < 0)
		b->failed = 1;
	else
		ob_put(b, p, (size_t)n, deadline);
	if (p != tmp)
		free(p);
}
