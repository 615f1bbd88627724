/*
 * The gateway's upstream pool (gw_int.h): per route, a stack of idle
 * connections (plain or mTLS) and a cap on the open ones.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/gw_int.h"

/* ---- upstream connections ---- */

void
up_close(struct route *rt, struct upconn *u)
{
	if (u->io.tls != NULL) {
		mtls_close(u->io.tls);
		mtls_free(u->io.tls);
	}
	if (u->io.fd >= 0)
		close(u->io.fd);
	u->io.fd = -1;
	u->io.tls = NULL;
	pthread_mutex_lock(&rt->mu);
	rt->open--;
	pthread_mutex_unlock(&rt->mu);
}

/* An idle connection is still usable when reading it would block: no
 * EOF, no stray bytes (a TLS 1.3 ticket is consumed by the attempt).
 * Bytes an upstream sent after its answer was complete are not the
 * answer to anything we ask next: the connection is closed for them. */
static int
up_alive(struct upconn *u)
{
	char b;
	long r = io_try_read(&u->io, &b, 1);

	return r == MTLS_WANT_READ;
}

static int
up_connect(struct gwc *c, struct route *rt, struct upconn *u)
{
	const struct proxy_opts *o = c->gw->env.o;
	int64_t deadline = net_now_ms() + o->connect_timeout_ms;
	int fd, one = 1, r, err = 0;
	socklen_t elen = sizeof(err);

	u->io.tls = NULL;
	u->io.fd = -1;
	u->io.nc = c->nc;
	fd = socket(rt->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (rt->ss.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u->io.fd = fd;
	if (connect(fd, (struct sockaddr *)&rt->ss, rt->sslen) != 0) {
		if (errno != EINPROGRESS ||
		    io_wait(&u->io, POLLOUT, deadline) != 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ||
		    err != 0) {
			snprintf(c->rq.msg, sizeof(c->rq.msg), "connect %s: %s",
			    rt->r->upstream, err ? strerror(err) : "timed out");
			close(fd);
			u->io.fd = -1;
			return -1;
		}
	}
	if (!rt->r->up_tls)
		return 0;
	pthread_mutex_lock(&rt->mu);
	r = mtls_connect_socket(rt->cli, &u->io.tls, fd,
	    rt->r->up_servername);
	pthread_mutex_unlock(&rt->mu);
	if (r != 0) {
		snprintf(c->rq.msg, sizeof(c->rq.msg), "upstream TLS: %s",
		    mtls_error(rt->cli));
		close(fd);
		u->io.fd = -1;
		return -1;
	}
	for (;;) {
		r = mtls_handshake(u->io.tls);
		if (r == 0)
			return 0;
		if (r == -1 || io_wait(&u->io, r == MTLS_WANT_WRITE ?
		    POLLOUT : POLLIN, deadline) != 0)
			break;
	}
	snprintf(c->rq.msg, sizeof(c->rq.msg), "upstream %s: %s: %s",
	    rt->r->upstream, r == -1 ? mtls_fail_name(mtls_fail_code(
	    u->io.tls)) : "handshake_timeout", r == -1 ? mtls_error(u->io.tls) :
	    "no answer");
	mtls_free(u->io.tls);
	u->io.tls = NULL;
	close(fd);
	u->io.fd = -1;
	return -1;
}

/* An upstream connection for <rt>: an idle one that is still alive, else
 * a new one within the route's limit. */
int
up_get(struct gwc *c, struct route *rt)
{
	struct upconn *u = &c->up;

	pthread_mutex_lock(&rt->mu);
	while (rt->n_idle > 0) {
		*u = rt->idle[--rt->n_idle];
		pthread_mutex_unlock(&rt->mu);
		/* checked every time, however short its idle time: bytes
		 * left over (a second response nobody asked for) would be
		 * read as the answer to this request. If the upstream closes
		 * it after the check, a request without a body is retried */
		if (up_alive(u)) {
			u->io.nc = c->nc;	/* its waits are ours now */
			c->have_up = 1;
			c->up_reused = 1;
			bump(&rt->m_reused);
			return 0;
		}
		up_close(rt, u);
		pthread_mutex_lock(&rt->mu);
	}
	if (rt->open >= rt->r->up_max) {
		pthread_mutex_unlock(&rt->mu);
		refuse(c, 503, "upstream_busy", "route %s: %d upstream "
		    "connections open, the limit", rt->name, rt->r->up_max);
		return -1;
	}
	rt->open++;
	pthread_mutex_unlock(&rt->mu);
	c->up_reused = 0;
	if (up_connect(c, rt, u) != 0) {
		char msg[300];

		pthread_mutex_lock(&rt->mu);
		rt->open--;
		pthread_mutex_unlock(&rt->mu);
		bump(&rt->m_failed);
		snprintf(msg, sizeof(msg), "%s", c->rq.msg);
		refuse(c, 502, "upstream_unavailable", "route %s: %s",
		    rt->name, msg);
		return -1;
	}
	bump(&rt->m_connects);
	c->have_up = 1;
	return 0;
}

void
up_release(struct gwc *c, int reusable)
{
	struct route *rt = c->route;

	if (!c->have_up)
		return;
	c->have_up = 0;
	if (reusable) {
		pthread_mutex_lock(&rt->mu);
		if (rt->n_idle < rt->r->up_idle) {
			rt->idle[rt->n_idle++] = c->up;
			pthread_mutex_unlock(&rt->mu);
			return;
		}
		pthread_mutex_unlock(&rt->mu);
	}
	up_close(rt, &c->up);
}
