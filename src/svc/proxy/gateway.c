/*
 * The HTTP gateway (gateway.h). Each worker's loop accepts and runs a
 * coroutine per client connection; each runs requests one after another:
 *
 *   head in (strict check) -> http_parser -> route (host, longest prefix)
 *   -> authorize (route's rules against the peer's identities) -> upstream
 *   from the route's pool -> request head with identity headers, body
 *   streamed -> response parsed and streamed back -> access log line.
 *
 * http_parser does the framing (Content-Length, chunked); http_head_check()
 * (norm.c) adds the grammar it lets through and a gateway must not: bare
 * CR or LF, obs-fold, control bytes, bytes outside the request-target
 * grammar, whitespace before a field's colon. The target and Host are
 * normalized once (norm.c), routed on and forwarded as routed. Request smuggling needs two parties to
 * disagree on where a request ends, so anything ambiguous is refused (400)
 * and bodies are re-framed for the upstream, never passed through raw.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <http_parser.h>
#include <jansson.h>
#include <openssl/sha.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CO_ASAN 1
#endif

#include "http/http.h"
#include "net/iplimit.h"
#include "proxy/gateway.h"
#include "proxy/x509memo.h"

#define IO_ERR		(-1)
#define IO_TIMEOUT	(-2)
#define IN_SIZE		(64 * 1024)
#define OUT_SIZE	(16 * 1024)
#define RESP_HEAD_MAX	(64 * 1024)
#define MAX_FIELDS	256
#define HTTP_MAX_CONNS	4096
/* X-Forwarded-Client-Cert is built from the client's certificate: any
 * number of names, each up to 255 (DNS) or 2048 (URI) bytes. Envoy has no
 * cap of its own; upstreams have header limits (8 KiB a line: nginx,
 * Tomcat), so a longer one is refused here, not cut or passed on. */
#define XFCC_MAX	8192

struct io {
	int		 fd;
	struct mtls	*tls;		/* NULL: plaintext */
};

struct obuf {
	struct io	*io;
	char		 b[OUT_SIZE];
	size_t		 len;
	int		 failed;
};

struct upconn {
	struct io	 io;
};

struct route {
	const struct proxy_route *r;
	const char		*name;
	char			 host[264];	/* r->host normalized */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	pthread_mutex_t		 mu;		/* cli, pool */
	struct mtls		*cli;		/* up_tls: client context */
	struct upconn		*idle;		/* stack of idle connections */
	int			 n_idle, open;
	uint64_t		 m_code[600];	/* requests by status */
	uint64_t		 m_connects, m_reused, m_failed;
};

/*
 * Connections run as coroutines (ucontext) on a few event-loop threads:
 * the request code reads as straight blocking code, and io_wait() is the
 * one place it waits: it arms the fd in its loop's epoll (one-shot) and
 * switches back to the loop, which switches in again when the fd is ready
 * or the deadline passed. A thread per connection measured 43 % of the
 * gateway's CPU in the scheduler (perf: finish_task_switch); a switch
 * here is a function call and a sigprocmask.
 */
struct co {
	ucontext_t	 ctx;
	void		*stack;
	size_t		 stack_size;
	struct loop	*lp;
	struct gwc	*c;
	int		 waiting, fired, done;
	int64_t		 deadline;
	struct co	*prev, *next;	/* the loop's waiting list */
	struct co	*dead_next;
#ifdef CO_ASAN
	void		*fake_stack;
#endif
};

struct loop {
	struct gw	*gw;
	int		 id;
	pthread_t	 thr;
	int		 started;
	int		 epfd, lfd;
	int		 lfd_tag;
	ucontext_t	 main;
	struct co	*cur;
	struct co	*waiting;	/* coroutines in io_wait */
	struct co	*dead;		/* finished, stacks to free */
	/* connections a newcomer may take the place of at the cap: first
	 * byte or handshake awaited, idle between requests, or a request
	 * head not yet whole; oldest wait first */
	struct gwc	*idle_head, *idle_tail;
	int		 n_cos;
	struct mtls	*srv;		/* this loop's server context */
	uint64_t	 seq;
#ifdef CO_ASAN
	const void	*main_bottom;
	size_t		 main_size;
#endif
};

struct gw {
	struct gw_env		 env;
	const struct proxy_listener *l;
	struct loop		*loops;
	int			 nloops;
	pthread_mutex_t		 mu;		/* by, route contexts */
	char			 by[2100];	/* our URI SAN, for XFCC By= */
	struct route		*routes;
	size_t			 n_routes;
	struct route		 none;		/* requests refused unrouted */
};

/* A header field as parsed: spans into the buffer the head is in. */
struct field {
	const char	*name, *value;
	size_t		 nlen, vlen;
};

struct gwc {
	struct gw	*gw;
	struct loop	*lp;
	struct co	*co;
	struct io	 cl;		/* the client */
	char		 client[64];
	int64_t		 t_conn;
	struct ipent	*ip;		/* its address's slot (iplimit) */
	/* on lp's idle list (phase: IDLE_*); closed for a newcomer or by a
	 * drain while there */
	struct gwc	*iprev, *inext;
	int		 idle, phase, evicted;
	/* the peer */
	int		 verified, fail;
	struct ids	 ids;
	char		*xfcc;
	char		*by;		/* our URI SAN at accept time */
	const char	*peer_id;
	/* client input */
	char		*in;
	size_t		 in_off, in_len;
	struct obuf	 out;		/* to the client */
	/* the request */
	http_parser	 rp;
	struct field	 f[MAX_FIELDS];
	size_t		 nf;
	const char	*url;
	size_t		 url_len;
	char		 method[16];
	char		 path[2048];	/* normalized: what was routed */
	char		 target[2048];	/* path and query, forwarded */
	char		 host[264];	/* Host normalized, with its port */
	int		 id_bad;	/* peer names not fit for a header */
	int		 minor;
	int		 req_done, head_done, keep;
	int		 status;	/* our own answer, when not proxied */
	char		 err_code[32];
	char		 err_msg[300];
	const char	*result;	/* taxonomy code of a refusal, logged */
	int		 discard;	/* refusing: read the body, drop it */
	int		 up_chunked;	/* request body chunked to upstream */
	/* the head the upstream gets: built once in rq_headers_complete
	 * from the checked head, owned here (c->f and c->url are spans of
	 * c->in, which the body's reads overwrite); a retry resends it */
	char		*uh;
	size_t		 uh_len, uh_cap, uh_lines;
	int		 uh_fail;
	int		 expect100;
	uint64_t	 req_body;
	struct route	*route;
	/* the upstream exchange */
	struct upconn	 up;
	int		 have_up, up_reused;
	struct obuf	 ub;		/* to the upstream */
	http_parser	 sp;
	int		 head_req;
	int		 resp_status, resp_started, resp_done, resp_restart;
	int		 rechunk, close_after;
	char		*rh;		/* response head fields, NUL-separated */
	size_t		 rh_len, rh_cap;
	int		 rh_in_value, rh_fail;
	size_t		 oh_lines;	/* field lines of the head sent on */
	char		 reason[64];
	uint64_t	 resp_body;
	int64_t		 t_req, t_up;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
bump(uint64_t *v)
{
	__atomic_add_fetch(v, 1, __ATOMIC_RELAXED);
}

/* ---- I/O with deadlines on non-blocking sockets ---- */

static __thread struct loop *cur_loop;

static void co_yield(struct loop *, struct co *);

static void
waiting_add(struct loop *lp, struct co *co)
{
	co->waiting = 1;
	co->prev = NULL;
	co->next = lp->waiting;
	if (lp->waiting != NULL)
		lp->waiting->prev = co;
	lp->waiting = co;
}

static void
waiting_remove(struct loop *lp, struct co *co)
{
	if (!co->waiting)
		return;
	co->waiting = 0;
	if (co->prev != NULL)
		co->prev->next = co->next;
	else
		lp->waiting = co->next;
	if (co->next != NULL)
		co->next->prev = co->prev;
	co->prev = co->next = NULL;
}

/* In a coroutine: arm <fd> one-shot in the loop's epoll and let the loop
 * run others until it fires or <deadline> passes. */
static int
co_wait(struct loop *lp, int fd, short ev, int64_t deadline)
{
	struct co *co = lp->cur;
	struct epoll_event e;

	if (deadline <= now_ms())
		return IO_TIMEOUT;
	memset(&e, 0, sizeof(e));
	e.events = (ev & POLLOUT ? EPOLLOUT : EPOLLIN) | EPOLLONESHOT;
	e.data.ptr = co;
	if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &e) != 0 &&
	    (errno != ENOENT || epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd,
	    &e) != 0))
		return IO_ERR;
	co->deadline = deadline;
	co->fired = 0;
	waiting_add(lp, co);
	co_yield(lp, co);
	waiting_remove(lp, co);
	if (co->fired)
		return 0;
	e.events = 0;		/* timed out: disarm */
	epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &e);
	return IO_TIMEOUT;
}

static int
io_wait(int fd, short ev, int64_t deadline)
{
	if (cur_loop != NULL && cur_loop->cur != NULL)
		return co_wait(cur_loop, fd, ev, deadline);
	for (;;) {
		struct pollfd pf = { fd, ev, 0 };
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return IO_TIMEOUT;
		r = poll(&pf, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return IO_ERR;
	}
}

/* One attempt: bytes, 0 at EOF, IO_ERR, or MTLS_WANT_READ/WRITE. */
static long
io_try_read(struct io *s, void *buf, size_t len)
{
	long r;

	if (s->tls != NULL) {
		r = mtls_read(s->tls, buf, len);
		return r == -1 ? IO_ERR : r;
	}
	for (;;) {
		r = read(s->fd, buf, len);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? MTLS_WANT_READ : IO_ERR;
	}
}

/* 1 when a read could return without the socket being readable: TLS
 * bytes already buffered (processed or not). */
static int
io_buffered(const struct io *s)
{
	return s->tls != NULL && mtls_pending(s->tls);
}

static long
io_read(struct io *s, void *buf, size_t len, int64_t deadline)
{
	for (;;) {
		long r = io_try_read(s, buf, len);
		int w;

		if (r >= 0 || r == IO_ERR)
			return r;
		if ((w = io_wait(s->fd, r == MTLS_WANT_WRITE ? POLLOUT : POLLIN,
		    deadline)) != 0)
			return w;
	}
}

static int
io_write(struct io *s, const char *p, size_t len, int64_t deadline)
{
	while (len > 0) {
		long r;
		int w;

		if (s->tls != NULL) {
			r = mtls_write(s->tls, p, len);
			if (r == -1)
				return IO_ERR;
		} else {
			r = send(s->fd, p, len, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				r = errno == EAGAIN ? MTLS_WANT_WRITE : IO_ERR;
			if (r == IO_ERR)
				return IO_ERR;
		}
		if (r > 0) {
			p += r;
			len -= (size_t)r;
			continue;
		}
		if ((w = io_wait(s->fd, r == MTLS_WANT_READ ? POLLIN : POLLOUT,
		    deadline)) != 0)
			return w;
	}
	return 0;
}

static int64_t
req_deadline(const struct gwc *c)
{
	return now_ms() + c->gw->l->request_timeout_ms;
}

static void
ob_flush(struct obuf *b, int64_t deadline)
{
	if (b->len > 0 && !b->failed && io_write(b->io, b->b, b->len,
	    deadline) != 0)
		b->failed = 1;
	b->len = 0;
}

static void
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

static void
ob_printf(struct obuf *b, int64_t deadline, const char *fmt, ...)
    MTLS_PRINTF(3, 4);

/*
 * Formatted output is never cut: a line that does not fit the stack
 * buffer is formatted again into one of its size, and one that cannot be
 * formatted fails the stream (b->failed: the caller answers 502 or
 * closes) rather than emit part of a line. A line cut before its CRLF
 * glues the next one (a framing header) onto it.
 */
static void
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

/* ---- the upstream-bound head, owned by the connection ---- */

#define UH_MAX	(128 * 1024)

/* The fuzz targets' check of each head built (NULL outside them). */
static void (*fz_head_check)(const struct gwc *);

static void
uh_put(struct gwc *c, const void *p, size_t n)
{
	if (c->uh_fail)
		return;
	if (c->uh_len + n > UH_MAX) {
		c->uh_fail = 1;
		return;
	}
	if (c->uh_len + n > c->uh_cap) {
		size_t nc = c->uh_cap ? c->uh_cap : 4096;
		char *nb;

		while (nc < c->uh_len + n)
			nc *= 2;
		if ((nb = realloc(c->uh, nc)) == NULL) {
			c->uh_fail = 1;
			return;
		}
		c->uh = nb;
		c->uh_cap = nc;
	}
	memcpy(c->uh + c->uh_len, p, n);
	c->uh_len += n;
}

/* One line "<name>: <value>\r\n" of the upstream head. */
static void
uh_line(struct gwc *c, const char *name, const char *v, size_t vn)
{
	uh_put(c, name, strlen(name));
	uh_put(c, ": ", 2);
	uh_put(c, v, vn);
	uh_put(c, "\r\n", 2);
	c->uh_lines++;
}

/* ---- the head (its grammar: http_head_check, norm.c) ---- */

static int
span_eq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* A value trimmed of surrounding blanks. */
static void
trim(const char **p, size_t *n)
{
	while (*n > 0 && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

/* 1 when <name> is listed in a Connection header value <v>. */
static int
conn_lists(const char *v, size_t vn, const char *name, size_t nn)
{
	while (vn > 0) {
		const char *e = memchr(v, ',', vn);
		size_t k = e ? (size_t)(e - v) : vn;
		const char *t = v;
		size_t tn = k;

		trim(&t, &tn);
		if (tn == nn && strncasecmp(t, name, nn) == 0)
			return 1;
		v += e ? k + 1 : k;
		vn -= e ? k + 1 : k;
	}
	return 0;
}

/*
 * Hop-by-hop and identity headers: never forwarded as received. Names
 * are compared after case and '-'/'_' folding: CGI, WSGI and PHP map
 * "X_Client_Spiffe_Id" and "X-Client-Spiffe-Id" to one variable, so a
 * client's underscore spelling would otherwise reach the upstream as our
 * identity header.
 */
static int
name_in(const char *const *list, const char *n, size_t len)
{
	for (; *list != NULL; list++)
		if (http_name_folded_eq(n, len, *list))
			return 1;
	return 0;
}

static int
is_hop(const char *n, size_t len)
{
	static const char *const hop[] = { "connection", "keep-alive",
	    "proxy-connection", "te", "trailer", "transfer-encoding",
	    "upgrade", "content-length", "expect", "x-forwarded-client-cert",
	    "x-client-spiffe-id", "proxy-authorization", NULL };

	return name_in(hop, n, len);
}

/* What a client must not claim about itself or the request (folded as
 * is_hop): we set Host (normalized), X-Forwarded-For and -Proto; the
 * rest is dropped. */
static int
is_claim(const char *n, size_t len)
{
	static const char *const claim[] = { "host", "forwarded",
	    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
	    "x-forwarded-port", "x-real-ip", NULL };

	return name_in(claim, n, len);
}

/* ---- routes ---- */

static int
prefix_match(const char *prefix, const char *path)
{
	size_t n = strlen(prefix);

	if (strncmp(prefix, path, n) != 0)
		return 0;
	/* on a segment boundary: "/api" matches "/api" and "/api/x", not
	 * "/apix" */
	return n > 0 && (prefix[n - 1] == '/' || path[n] == '\0' ||
	    path[n] == '/');
}

static struct route *
route_find(struct gw *gw, const char *host, size_t hlen, const char *path)
{
	struct route *best = NULL;
	size_t best_len = 0, i;
	int best_host = 0;

	for (i = 0; i < gw->n_routes; i++) {
		const struct proxy_route *r = gw->routes[i].r;
		size_t n = strlen(r->path);
		int has_host = r->host != NULL;

		/* both sides normalized (http_host_normalize) */
		if (has_host && !(strlen(gw->routes[i].host) == hlen &&
		    memcmp(host, gw->routes[i].host, hlen) == 0))
			continue;
		if (!prefix_match(r->path, path))
			continue;
		if (best == NULL || n > best_len || (n == best_len &&
		    has_host && !best_host)) {
			best = &gw->routes[i];
			best_len = n;
			best_host = has_host;
		}
	}
	return best;
}

/* The route's rules against every identity of the peer. */
static int
route_allows(const struct proxy_route *r, const struct ids *ids)
{
	size_t i, k;

	if (r->allow_any)
		return 1;
	for (i = 0; i < r->n_allow; i++)
		for (k = 0; k < ids->n; k++)
			if (mtls_rule_match(r->allow[i], ids->v[k]))
				return 1;
	return 0;
}

static void
refuse(struct gwc *c, int status, const char *code, const char *fmt, ...)
    MTLS_PRINTF(4, 5);

static void
refuse(struct gwc *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	c->status = status;
	snprintf(c->err_code, sizeof(c->err_code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
	va_end(ap);
	c->discard = 1;
}

/* ---- upstream connections ---- */

static void
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
	int64_t deadline = now_ms() + o->connect_timeout_ms;
	int fd, one = 1, r, err = 0;
	socklen_t elen = sizeof(err);

	u->io.tls = NULL;
	u->io.fd = -1;
	fd = socket(rt->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (rt->ss.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&rt->ss, rt->sslen) != 0) {
		if (errno != EINPROGRESS ||
		    io_wait(fd, POLLOUT, deadline) != 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ||
		    err != 0) {
			snprintf(c->err_msg, sizeof(c->err_msg), "connect %s: %s",
			    rt->r->upstream, err ? strerror(err) : "timed out");
			close(fd);
			return -1;
		}
	}
	u->io.fd = fd;
	if (!rt->r->up_tls)
		return 0;
	pthread_mutex_lock(&rt->mu);
	r = mtls_connect_socket(rt->cli, &u->io.tls, fd,
	    rt->r->up_servername);
	pthread_mutex_unlock(&rt->mu);
	if (r != 0) {
		snprintf(c->err_msg, sizeof(c->err_msg), "upstream TLS: %s",
		    mtls_error(rt->cli));
		close(fd);
		u->io.fd = -1;
		return -1;
	}
	for (;;) {
		r = mtls_handshake(u->io.tls);
		if (r == 0)
			return 0;
		if (r == -1 || io_wait(fd, r == MTLS_WANT_WRITE ? POLLOUT :
		    POLLIN, deadline) != 0)
			break;
	}
	snprintf(c->err_msg, sizeof(c->err_msg), "upstream %s: %s: %s",
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
static int
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
		snprintf(msg, sizeof(msg), "%s", c->err_msg);
		refuse(c, 502, "upstream_unavailable", "route %s: %s",
		    rt->name, msg);
		return -1;
	}
	bump(&rt->m_connects);
	c->have_up = 1;
	return 0;
}

static void
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

/* ---- identity headers ---- */

/* Appends one XFCC element (http_xfcc_put: Envoy's quoting) to the
 * growing *buf; -1 (and *buf freed) when it cannot: an XFCC with an
 * element left out would name a different certificate. */
static int
xfcc_put(char **buf, size_t *len, size_t *cap, const char *key,
    const char *val, int force_quote)
{
	size_t need = strlen(key) + 2 * strlen(val) + 8, k;

	if (*buf == NULL || *len + need >= *cap) {
		size_t nc = (*cap + need) * 2;
		char *nb = realloc(*buf, nc);

		if (nb == NULL)
			goto fail;
		*buf = nb;
		*cap = nc;
	}
	if (*len > 0)
		(*buf)[(*len)++] = ';';
	if ((k = http_xfcc_put(*buf + *len, *cap - *len, key, val,
	    force_quote)) == 0)
		goto fail;
	*len += k;
	(*buf)[*len] = '\0';
	return 0;
 fail:
	free(*buf);
	*buf = NULL;
	*len = *cap = 0;
	return -1;
}

/* The peer's XFCC value, whole, or NULL (then the peer is refused:
 * id_bad). Its length is checked against XFCC_MAX per request. */
static char *
xfcc_build(const char *by, X509 *peer, const struct ids *ids)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char hex[65], *subj = NULL, *m;
	char *buf = NULL;
	size_t len = 0, cap = 0, i;
	long sn;
	BIO *b;
	int rv = 0;

	if (by[0] != '\0')
		rv |= xfcc_put(&buf, &len, &cap, "By", by, 0);
	if (X509_digest(peer, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
		goto fail;
	for (i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	rv |= xfcc_put(&buf, &len, &cap, "Hash", hex, 0);
	/* RFC 2253 escapes control bytes and (ESC_MSB) non-ASCII ones: the
	 * Subject is visible ASCII and spaces; all of it (never cut) */
	if ((b = BIO_new(BIO_s_mem())) == NULL)
		goto fail;
	if (X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
	    XN_FLAG_RFC2253) < 0 || (sn = BIO_get_mem_data(b, &m)) < 0 ||
	    (subj = strndup(sn > 0 ? m : "", (size_t)sn)) == NULL) {
		BIO_free(b);
		goto fail;
	}
	BIO_free(b);
	rv |= xfcc_put(&buf, &len, &cap, "Subject", subj, 1);
	free(subj);
	for (i = 0; i < ids->n; i++)
		if (strncmp(ids->v[i], "dns:", 4) && strncmp(ids->v[i], "ip:",
		    3) && strncmp(ids->v[i], "cn:", 3))
			rv |= xfcc_put(&buf, &len, &cap, "URI", ids->v[i], 0);
	for (i = 0; i < ids->n; i++)
		if (strncmp(ids->v[i], "dns:", 4) == 0)
			rv |= xfcc_put(&buf, &len, &cap, "DNS", ids->v[i] + 4,
			    0);
	if (rv == 0)
		return buf;
 fail:
	free(buf);
	return NULL;
}

/* ---- the request parser's callbacks ---- */

static struct gwc *
gwc_of(http_parser *p)
{
	return p->data;
}

static int
rq_url(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);

	if (c->url == NULL)
		c->url = at;
	c->url_len += n;
	return 0;
}

static int
rq_field(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);

	/* after the head: a chunked body's trailer fields. Never checked as
	 * a head is, and the body is re-framed for the upstream: dropped */
	if (c->head_done)
		return 0;
	/* the whole head is parsed in one call, so each field comes in one
	 * callback (an empty value gets its own, of length 0) */
	if (c->nf == c->gw->l->max_headers || c->nf == MAX_FIELDS) {
		refuse(c, 431, "too_many_headers", "more than %zu header "
		    "fields", c->nf);
		return -1;
	}
	c->f[c->nf].name = at;
	c->f[c->nf].nlen = n;
	c->f[c->nf].value = NULL;
	c->f[c->nf].vlen = 0;
	c->nf++;
	return 0;
}

static int
rq_value(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);
	struct field *f;

	if (c->head_done)
		return 0;	/* a trailer: dropped (rq_field) */
	if (c->nf == 0)
		return -1;
	f = &c->f[c->nf - 1];
	if (f->value == NULL)
		f->value = at;
	f->vlen += n;
	return 0;
}

static const struct field *
field(const struct gwc *c, const char *name, int *count)
{
	const struct field *hit = NULL;
	size_t i;

	*count = 0;
	for (i = 0; i < c->nf; i++)
		if (span_eq(c->f[i].name, c->f[i].nlen, name)) {
			if (hit == NULL)
				hit = &c->f[i];
			(*count)++;
		}
	return hit;
}

/*
 * Builds the head the upstream gets into c->uh, once, from the head that
 * was checked: the routed target and Host, the client's fields that pass,
 * then ours. Nothing here is read again from c->in (a retry resends
 * c->uh as it is). -1 when it could not be built whole.
 */
static int
build_upstream_head(struct gwc *c)
{
	const struct field *conn;
	int n;
	size_t i;

	c->uh_len = c->uh_lines = 0;
	c->uh_fail = 0;
	conn = field(c, "connection", &n);
	/* exactly the target that was routed (normalized), and its Host */
	uh_put(c, c->method, strlen(c->method));
	uh_put(c, " ", 1);
	uh_put(c, c->target, strlen(c->target));
	uh_put(c, " HTTP/1.1\r\n", 11);
	if (c->host[0] != '\0')
		uh_line(c, "Host", c->host, strlen(c->host));
	else {
		/* HTTP/1.0 without Host: the upstream's name, as nginx's
		 * proxy_set_header Host $proxy_host (an HTTP/1.1 request
		 * without Host is not valid) */
		const struct proxy_route *r = c->route->r;
		const char *h = r->up_servername ? r->up_servername :
		    strncmp(r->upstream, "unix:", 5) ? r->upstream :
		    "localhost";

		uh_line(c, "Host", h, strlen(h));
	}
	for (i = 0; i < c->nf; i++) {
		const struct field *f = &c->f[i];

		if (is_hop(f->name, f->nlen) || is_claim(f->name, f->nlen) ||
		    (conn != NULL && conn_lists(conn->value, conn->vlen,
		    f->name, f->nlen)))
			continue;
		/* nginx's underscores_in_headers off: a name with '_' is
		 * dropped unless the listener passes them */
		if (!c->gw->l->underscores_pass &&
		    memchr(f->name, '_', f->nlen) != NULL)
			continue;
		uh_put(c, f->name, f->nlen);
		uh_put(c, ": ", 2);
		uh_put(c, f->value ? f->value : "", f->vlen);
		uh_put(c, "\r\n", 2);
		c->uh_lines++;
	}
	/* the client's address replaces any claim it made ("[v6]:port":
	 * the address inside the brackets) */
	if (c->client[0] == '[')
		uh_line(c, "X-Forwarded-For", c->client + 1,
		    strcspn(c->client + 1, "]"));
	else
		uh_line(c, "X-Forwarded-For", c->client,
		    strcspn(c->client, ":"));
	uh_line(c, "X-Forwarded-Proto", "https", 5);
	if (c->verified) {
		if (c->xfcc != NULL)
			uh_line(c, "X-Forwarded-Client-Cert", c->xfcc,
			    strlen(c->xfcc));
		if (c->peer_id != NULL && strncmp(c->peer_id, "spiffe://", 9) ==
		    0)
			uh_line(c, "X-Client-Spiffe-Id", c->peer_id,
			    strlen(c->peer_id));
	}
	if (c->rp.flags & F_CHUNKED) {
		c->up_chunked = 1;
		uh_line(c, "Transfer-Encoding", "chunked", 7);
	} else if (c->rp.flags & F_CONTENTLENGTH) {
		char cl[24];

		n = snprintf(cl, sizeof(cl), "%llu",
		    (unsigned long long)c->rp.content_length);
		uh_line(c, "Content-Length", cl, (size_t)n);
	}
	uh_put(c, "\r\n", 2);
	if (fz_head_check != NULL && !c->uh_fail)
		fz_head_check(c);
	return c->uh_fail ? -1 : 0;
}

static int
rq_headers_complete(http_parser *p)
{
	struct gwc *c = gwc_of(p);
	struct gw *gw = c->gw;
	const struct field *host, *te, *ex;
	const char *why, *hv;
	size_t hl, plen;
	int nhost, nte, ncl, nex, st;
	struct route *rt;

	c->head_done = 1;
	c->minor = p->http_minor;
	c->keep = http_should_keep_alive(p);
	snprintf(c->method, sizeof(c->method), "%s",
	    http_method_str((enum http_method)p->method));
	/* the raw path, for the log until it is normalized: c->url is a
	 * span of the input, not a string (strcspn ran past its end) */
	for (plen = 0; c->url != NULL && plen < c->url_len &&
	    c->url[plen] != '?' && c->url[plen] != '#'; plen++)
		;
	snprintf(c->path, sizeof(c->path), "%.*s", (int)(plen <
	    sizeof(c->path) ? plen : sizeof(c->path) - 1), c->url ? c->url :
	    "");
	c->route = &gw->none;
	host = field(c, "host", &nhost);
	te = field(c, "transfer-encoding", &nte);
	(void)field(c, "content-length", &ncl);
	ex = field(c, "expect", &nex);
	if (p->http_major != 1) {
		refuse(c, 400, "bad_request", "HTTP/%d.%d is not HTTP/1.x",
		    p->http_major, p->http_minor);
		return -1;
	}
	if (c->url_len >= sizeof(c->path)) {
		refuse(c, 414, "uri_too_long", "the request target is longer "
		    "than %zu bytes", sizeof(c->path) - 1);
		return -1;
	}
	/* framing: exactly one way to know where the body ends */
	if (nte > 0 && ncl > 0) {
		refuse(c, 400, "bad_request", "both Transfer-Encoding and "
		    "Content-Length (request smuggling shape)");
		return -1;
	}
	if (nte > 1 || ncl > 1) {
		refuse(c, 400, "bad_request", "repeated %s header",
		    nte > 1 ? "Transfer-Encoding" : "Content-Length");
		return -1;
	}
	if (te != NULL) {
		const char *v = te->value ? te->value : "";
		size_t vn = te->vlen;

		trim(&v, &vn);
		if (!span_eq(v, vn, "chunked") || !(p->flags & F_CHUNKED)) {
			char esc[200];

			/* the value is a span in the input buffer, not a
			 * string: a bounded, escaped copy of it only */
			http_esc(esc, sizeof(esc), v, vn, 40);
			refuse(c, 400, "bad_request", "Transfer-Encoding "
			    "'%s' (only 'chunked' is accepted)", esc);
			return -1;
		}
	}
	if (nhost != 1 && (p->http_minor >= 1 || nhost > 1)) {
		refuse(c, 400, "bad_request", nhost ? "repeated Host header" :
		    "no Host header");
		return -1;
	}
	if (p->method == HTTP_CONNECT || p->upgrade) {
		refuse(c, 405, "method_not_allowed", "%s is not proxied",
		    p->method == HTTP_CONNECT ? "CONNECT" : "Upgrade");
		return -1;
	}
	if ((p->flags & F_CONTENTLENGTH) &&
	    p->content_length > (uint64_t)gw->l->max_body) {
		refuse(c, 413, "body_too_large", "Content-Length %llu is over "
		    "the limit of %lld bytes",
		    (unsigned long long)p->content_length,
		    (long long)gw->l->max_body);
		return -1;
	}
	/* one normalization, before routing; the upstream gets exactly
	 * what was routed (docs/security/gateway.md) */
	if ((st = http_target_normalize(c->url ? c->url : "", c->url_len,
	    c->target, sizeof(c->target), &plen, &why)) != 0) {
		refuse(c, st, st == 414 ? "uri_too_long" : "bad_request", "%s",
		    why);
		return -1;
	}
	snprintf(c->path, sizeof(c->path), "%.*s", (int)plen, c->target);
	/* Tomcat, Jetty and Spring read ';' in a path as path parameters
	 * ("/admin;x=1" is /admin, "/pub/..;/admin" is /admin), which
	 * routing on prefixes cannot see: refused unless the listener says
	 * its upstreams take them as data (path_semicolons = pass) */
	if (!gw->l->semicolons_pass && memchr(c->path, ';', plen) != NULL) {
		refuse(c, 400, "bad_request", "';' in the path (path "
		    "parameters; path_semicolons = pass to forward them)");
		return -1;
	}
	hv = host && host->value ? host->value : "";
	hl = host ? host->vlen : 0;
	trim(&hv, &hl);
	if (http_host_normalize(hv, hl, c->host, sizeof(c->host), &hl,
	    &why) != 0) {
		refuse(c, 400, "bad_request", "%s", why);
		return -1;
	}
	if ((rt = route_find(gw, c->host, hl, c->path)) == NULL) {
		refuse(c, 404, "no_route", "no route for host '%.*s' path "
		    "'%.200s'", (int)hl, c->host, c->path);
		return 0;
	}
	c->route = rt;
	if (!rt->r->optional && !c->verified) {
		c->result = c->fail ? mtls_fail_name(c->fail) :
		    "no_client_cert";
		refuse(c, 403, "client_certificate_required", "route %s "
		    "requires a client certificate that verifies (%s)",
		    rt->name, c->fail ? mtls_fail_name(c->fail) :
		    "none was sent");
		return 0;
	}
	if (c->verified && c->id_bad) {
		/* defence in depth: whatever the library accepted, a name
		 * that is not visible ASCII never goes into a header */
		refuse(c, 403, "client_identity_invalid", "the client "
		    "certificate's names have bytes outside visible ASCII; "
		    "not forwarded");
		return 0;
	}
	if (c->verified && c->xfcc != NULL && strlen(c->xfcc) > XFCC_MAX) {
		refuse(c, 431, "xfcc_too_large", "the client certificate's "
		    "names make an X-Forwarded-Client-Cert of %zu bytes, over "
		    "the limit of %d; use a certificate with fewer or shorter "
		    "names", strlen(c->xfcc), XFCC_MAX);
		return 0;
	}
	if (!rt->r->optional && !route_allows(rt->r, &c->ids)) {
		c->result = "not_authorized";	/* the proxy's word for it */
		refuse(c, 403, "forbidden", "route %s does not allow %s "
		    "(allow: %s%s)", rt->name, c->peer_id ? c->peer_id :
		    "this certificate", rt->r->n_allow ? rt->r->allow[0] : "",
		    rt->r->n_allow > 1 ? ", ..." : "");
		return 0;
	}
	c->expect100 = ex != NULL && ex->value != NULL &&
	    span_eq(ex->value, ex->vlen, "100-continue") && p->http_minor >= 1;
	if (build_upstream_head(c) != 0) {
		refuse(c, 431, "head_too_large", "the request head for the "
		    "upstream is over %d bytes", UH_MAX);
		return -1;
	}
	/* the fields and the target are spans of c->in, which reading the
	 * body overwrites: nothing may read them from here on */
	c->nf = 0;
	c->url = NULL;
	c->url_len = 0;
	if (up_get(c, rt) != 0)
		return 0;
	c->ub.io = &c->up.io;
	c->ub.len = 0;
	c->ub.failed = 0;
	c->t_up = now_ms();
	ob_put(&c->ub, c->uh, c->uh_len, req_deadline(c));
	if (c->expect100) {
		/* authorized: let the client send its body */
		ob_put(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25,
		    req_deadline(c));
		ob_flush(&c->out, req_deadline(c));
	}
	return 0;
}

static int
rq_body(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);
	int64_t dl;

	c->req_body += n;
	if (c->req_body > (uint64_t)c->gw->l->max_body) {
		if (c->status == 0 || c->status == 403 || c->status == 404) {
			c->status = 0;
			refuse(c, 413, "body_too_large", "request body over the "
			    "limit of %lld bytes", (long long)c->gw->l->max_body);
		}
		return -1;
	}
	if (c->discard)
		return 0;
	dl = req_deadline(c);
	if (c->up_chunked)
		ob_printf(&c->ub, dl, "%zx\r\n", n);
	ob_put(&c->ub, at, n, dl);
	if (c->up_chunked)
		ob_put(&c->ub, "\r\n", 2, dl);
	return 0;
}

static int
rq_complete(http_parser *p)
{
	struct gwc *c = gwc_of(p);

	c->req_done = 1;
	if (!c->discard && c->up_chunked)
		ob_put(&c->ub, "0\r\n\r\n", 5, req_deadline(c));
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings rq_settings = {
	.on_url = rq_url,
	.on_header_field = rq_field,
	.on_header_value = rq_value,
	.on_headers_complete = rq_headers_complete,
	.on_body = rq_body,
	.on_message_complete = rq_complete,
};

/* ---- the response parser's callbacks ---- */

static int
rh_add(struct gwc *c, const char *at, size_t n, int new_item)
{
	if (c->rh_len + n + 2 > RESP_HEAD_MAX) {
		c->rh_fail = 1;
		return -1;
	}
	if (c->rh_len + n + 2 > c->rh_cap) {
		size_t nc = (c->rh_len + n + 2) * 2;
		char *nb = realloc(c->rh, nc);

		if (nb == NULL)
			return -1;
		c->rh = nb;
		c->rh_cap = nc;
	}
	if (new_item && c->rh_len > 0)
		c->rh[c->rh_len++] = '\0';
	memcpy(c->rh + c->rh_len, at, n);
	c->rh_len += n;
	c->rh[c->rh_len] = '\0';
	return 0;
}

static int
rs_status(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);
	size_t have = strlen(c->reason);

	if (have + n >= sizeof(c->reason))
		n = sizeof(c->reason) - 1 - have;
	memcpy(c->reason + have, at, n);
	c->reason[have + n] = '\0';
	return 0;
}

static int
rs_field(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);
	int start = c->rh_in_value || c->rh_len == 0;

	/* NUL separates the kept fields: one inside a field would pair a
	 * value's tail with the next name */
	if (memchr(at, '\0', n) != NULL) {
		c->rh_fail = 2;
		return -1;
	}

	c->rh_in_value = 0;
	return rh_add(c, at, n, start);
}

static int
rs_value(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);
	int start = !c->rh_in_value;

	if (memchr(at, '\0', n) != NULL) {
		c->rh_fail = 2;
		return -1;
	}

	c->rh_in_value = 1;
	return rh_add(c, at, n, start);
}

/* 1 when p[0..n) has a control byte other than HTAB (NUL separators in
 * the response-field buffer excepted). */
static int
has_ctl(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if ((ch < 0x20 && ch != '\t' && ch != '\0') || ch == 0x7f)
			return 1;
	}
	return 0;
}

static int
rs_headers_complete(http_parser *p)
{
	struct gwc *c = gwc_of(p);
	int64_t dl = req_deadline(c);
	const char *s, *end, *connv = NULL;
	size_t connn = 0;
	int no_body;

	c->resp_status = p->status_code;
	if (p->status_code < 200)
		return 0;	/* 1xx: dropped; the final answer follows */
	end = c->rh != NULL ? c->rh + c->rh_len : NULL;
	/* what we pass on must not carry a CR or another control byte
	 * (http_parser lets a bare CR through): it could split the head we
	 * write to the client */
	if (has_ctl(c->reason, strlen(c->reason)) ||
	    (c->rh != NULL && has_ctl(c->rh, c->rh_len))) {
		c->rh_fail = 2;
		return -1;
	}
	/* the fields alternate name, value, NUL-separated */
	for (s = c->rh; s != NULL && s < end;) {
		const char *v = s + strlen(s) + 1;

		if (v >= end)
			break;
		if (strcasecmp(s, "connection") == 0) {
			connv = v;
			connn = strlen(v);
		}
		s = v + strlen(v) + 1;
	}
	no_body = c->head_req || p->status_code == 204 ||
	    p->status_code == 304;
	ob_printf(&c->out, dl, "HTTP/1.1 %d %s\r\n", p->status_code,
	    c->reason[0] ? c->reason : "Status");
	for (s = c->rh; s != NULL && s < end;) {
		const char *v = s + strlen(s) + 1;
		size_t nl = strlen(s);

		if (v >= end)
			break;
		if (!(is_hop(s, nl) && !(no_body && strcasecmp(s,
		    "content-length") == 0)) && !(connv != NULL &&
		    conn_lists(connv, connn, s, nl))) {
			/* any length (RESP_HEAD_MAX in all), whole */
			ob_put(&c->out, s, nl, dl);
			ob_put(&c->out, ": ", 2, dl);
			ob_put(&c->out, v, strlen(v), dl);
			ob_put(&c->out, "\r\n", 2, dl);
			c->oh_lines++;
		}
		s = v + strlen(v) + 1;
	}
	if (!no_body) {
		if (p->flags & F_CONTENTLENGTH) {
			ob_printf(&c->out, dl, "Content-Length: %llu\r\n",
			    (unsigned long long)p->content_length);
			c->oh_lines++;
		} else if (c->minor >= 1) {
			c->rechunk = 1;
			ob_printf(&c->out, dl, "Transfer-Encoding: chunked\r\n");
			c->oh_lines++;
		} else
			c->close_after = 1;	/* HTTP/1.0: ends at close */
	}
	if (!c->keep || c->close_after ||
	    __atomic_load_n(c->gw->env.stopping, __ATOMIC_ACQUIRE)) {
		ob_printf(&c->out, dl, "Connection: close\r\n");
		c->oh_lines++;
	}
	ob_put(&c->out, "\r\n", 2, dl);
	c->resp_started = 1;
	return c->head_req ? 1 : 0;
}

static int
rs_body(http_parser *p, const char *at, size_t n)
{
	struct gwc *c = gwc_of(p);
	int64_t dl = req_deadline(c);

	c->resp_body += n;
	if (c->rechunk)
		ob_printf(&c->out, dl, "%zx\r\n", n);
	ob_put(&c->out, at, n, dl);
	if (c->rechunk)
		ob_put(&c->out, "\r\n", 2, dl);
	return c->out.failed ? -1 : 0;
}

static int
rs_complete(http_parser *p)
{
	struct gwc *c = gwc_of(p);

	if (c->resp_status < 200) {
		c->resp_restart = 1;
	} else {
		if (c->rechunk)
			ob_put(&c->out, "0\r\n\r\n", 5, req_deadline(c));
		c->resp_done = 1;
	}
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings rs_settings = {
	.on_status = rs_status,
	.on_header_field = rs_field,
	.on_header_value = rs_value,
	.on_headers_complete = rs_headers_complete,
	.on_body = rs_body,
	.on_message_complete = rs_complete,
};

/* ---- one exchange ---- */

/* The fuzz targets' view of the access log (NULL outside them). */
static void (*fz_log)(const char *, size_t);

/* One "request" line: built by hand in JSON mode (jansson's object and
 * dump cost about as much as the rest of a small request), through
 * log_emit() in text mode. Each value has its own cap (esc_json_put cuts
 * it with "..." inside its quotes), and the caps add up to less than b:
 * the line is always whole JSON, with every member, whatever the bytes. */
#define AL_NAME		256	/* listener, route (from the config) */
#define AL_SHORT	160	/* client address, method, error code */
#define AL_PATH		6144	/* path[2048]: up to 5 bytes each */
#define AL_PEER		2200	/* an identity: visible ASCII, <= 2048 */
#define AL_MSG		1536	/* err_msg[300] */
static size_t
al_str(char *b, size_t cap, size_t n, const char *v, size_t max)
{
	if (v != NULL)
		return esc_json_put(b, cap, n, v, strlen(v), max);
	if (n + 4 <= cap) {
		memcpy(b + n, "null", 4);
		n += 4;
	}
	return n;
}

static void
access_log(struct gwc *c, int status)
{
	char b[16384];
	size_t n = 0;
	int64_t now = now_ms();
	struct route *rt = c->route ? c->route : &c->gw->none;
	const char *level = status >= 500 ? "warn" : "info";
	const char *peer = c->verified ? c->peer_id : NULL;
	json_t *o;

	if (status >= 100 && status < 600)
		bump(&rt->m_code[status]);
	if (c->gw->l->no_access_log)
		return;
	_Static_assert(2 * AL_NAME + 3 * AL_SHORT + AL_PATH + AL_PEER + AL_MSG +
	    512 < sizeof(b), "the access line's caps fit its buffer");
#define PUT(...) do { \
	int k_ = snprintf(b + n, sizeof(b) - n, __VA_ARGS__); \
	n = k_ < 0 ? n : n + (size_t)k_ < sizeof(b) ? n + (size_t)k_ : \
	    sizeof(b) - 1; \
} while (0)
#define STR(k, v, max) do { PUT("\"%s\":", k); \
	n = al_str(b, sizeof(b) - 1, n, v, max); PUT(","); } while (0)
	STR("listener", c->gw->l->name, AL_NAME);
	STR("route", rt->name[0] ? rt->name : NULL, AL_NAME);
	STR("client", c->client, AL_SHORT);
	STR("peer_id", peer, AL_PEER);
	STR("method", c->method, AL_SHORT);
	STR("path", c->path, AL_PATH);
	PUT("\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,", status,
	    (unsigned long long)c->req_body, (unsigned long long)c->resp_body);
	if (c->t_up)
		PUT("\"upstream_ms\":%lld,", (long long)(now - c->t_up));
	PUT("\"total_ms\":%lld", (long long)(now - c->t_req));
	if (c->have_up || c->t_up)
		PUT(",\"upstream_reused\":%s", c->up_reused ? "true" : "false");
	if (c->err_code[0]) {
		PUT(",");
		STR("error", c->err_code, AL_SHORT);
		PUT("\"message\":");
		n = esc_json_put(b, sizeof(b) - 1, n, c->err_msg,
		    strlen(c->err_msg), AL_MSG);
	}
	if (c->result != NULL)
		PUT(",\"result\":\"%s\"", c->result);
#undef STR
#undef PUT
	if (fz_log != NULL) {
		/* fuzz targets: the members make one whole JSON object */
		json_t *chk;
		char *w = malloc(n + 2);

		if (w != NULL) {
			w[0] = '{';
			memcpy(w + 1, b, n);
			w[n + 1] = '}';
			if ((chk = json_loadb(w, n + 2, 0, NULL)) == NULL ||
			    json_object_get(chk, "path") == NULL)
				abort();
			json_decref(chk);
			free(w);
		}
		fz_log(b, n);
	}
	if (log_json_line(level, "request", b, n) == 0)
		return;
	/* text format: the same members through log_emit */
	o = json_object();
	json_object_set_new(o, "listener", esc_jstr(c->gw->l->name));
	json_object_set_new(o, "route", esc_jstr(rt->name[0] ? rt->name :
	    NULL));
	json_object_set_new(o, "client", esc_jstr(c->client));
	json_object_set_new(o, "peer_id", esc_jstr(peer));
	json_object_set_new(o, "method", esc_jstr(c->method));
	json_object_set_new(o, "path", esc_jstr(c->path));
	json_object_set_new(o, "status", json_integer(status));
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)
	    c->req_body));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)
	    c->resp_body));
	json_object_set_new(o, "total_ms", json_integer(now - c->t_req));
	if (c->err_code[0]) {
		json_object_set_new(o, "error", esc_jstr(c->err_code));
		json_object_set_new(o, "message", esc_jstr(c->err_msg));
	}
	if (c->result != NULL)
		json_object_set_new(o, "result", esc_jstr(c->result));
	log_emit(level, "request", o);
	json_decref(o);
}

/* Our own answer: a short JSON body naming the route and the rule. */
static void
answer(struct gwc *c)
{
	json_t *o = json_object();
	char *body;
	int64_t dl = req_deadline(c);

	json_object_set_new(o, "error", esc_jstr(c->err_code));
	if (c->route && c->route->name[0])
		json_object_set_new(o, "route", esc_jstr(c->route->name));
	json_object_set_new(o, "message", esc_jstr(c->err_msg));
	body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	ob_printf(&c->out, dl, "HTTP/1.1 %d %s\r\nContent-Type: "
	    "application/json\r\nContent-Length: %zu\r\n%s\r\n%s\n", c->status,
	    http_reason(c->status), body ? strlen(body) + 1 : 0, c->keep ? "" :
	    "Connection: close\r\n", body ? body : "");
	free(body);
	ob_flush(&c->out, dl);
	c->resp_body = 0;
}

/* Reads the response to the request sent on c->up and streams it to the
 * client. 0 done; -1 failed before anything reached the client (the
 * caller answers 502/504, c->status set); -2 failed midway (close). */
static int
relay_response(struct gwc *c, char *buf, size_t bufsz)
{
	int got_any = 0;

	http_parser_init(&c->sp, HTTP_RESPONSE);
	c->sp.data = c;
	c->rh_len = 0;
	c->rh_in_value = 0;
	c->oh_lines = 0;
	c->reason[0] = '\0';
	for (;;) {
		long n;
		size_t off = 0;

		/* nothing can have come yet: wait, then read (a read that
		 * would fail with EAGAIN first is one syscall per request) */
		/* the deadline is between two reads (like nginx's
		 * proxy_read_timeout), so a long download is not cut */
		n = !got_any && !io_buffered(&c->up.io) ? io_wait(c->up.io.fd,
		    POLLIN, req_deadline(c)) : 0;
		if (n == 0)
			n = io_read(&c->up.io, buf, bufsz, req_deadline(c));

		if (n == IO_TIMEOUT || n == IO_ERR) {
			if (c->resp_started)
				return -2;
			if (n == IO_TIMEOUT)
				refuse(c, 504, "upstream_timeout", "route %s: no "
				    "answer from %s within %lld ms",
				    c->route->name, c->route->r->upstream,
				    (long long)c->gw->l->request_timeout_ms);
			else
				refuse(c, 502, "upstream_error", "route %s: "
				    "reading from %s failed", c->route->name,
				    c->route->r->upstream);
			return got_any ? -1 : -3;
		}
		for (;;) {
			size_t k = http_parser_execute(&c->sp, &rs_settings,
			    buf + off, (size_t)n - off);
			enum http_errno e = HTTP_PARSER_ERRNO(&c->sp);

			off += k;
			if (e == HPE_PAUSED) {
				http_parser_pause(&c->sp, 0);
				if (c->resp_restart) {	/* after a 1xx */
					c->resp_restart = 0;
					http_parser_init(&c->sp, HTTP_RESPONSE);
					c->rh_len = 0;
					c->reason[0] = '\0';
					continue;
				}
				if (c->resp_done)
					return off < (size_t)n || c->out.failed ?
					    -4 : 0;
			} else if (e != HPE_OK) {
				if (c->resp_started)
					return -2;
				refuse(c, 502, "upstream_bad_response", "route "
				    "%s: %s sent a malformed response (%s)",
				    c->route->name, c->route->r->upstream,
				    c->rh_fail == 2 ? "control character in the "
				    "head" : c->rh_fail ? "head too large" :
				    http_errno_description(e));
				return -1;
			}
			break;
		}
		if (n == 0) {	/* EOF: ends a body read until close */
			if (c->resp_done)
				return 0;
			if (c->resp_started)
				return -2;
			refuse(c, 502, "upstream_closed", "route %s: %s closed "
			    "the connection without an answer", c->route->name,
			    c->route->r->upstream);
			return got_any ? -1 : -3;
		}
		got_any = 1;
		if (c->out.failed)
			return -2;
	}
}

static void
exchange_reset(struct gwc *c)
{
	c->nf = 0;
	c->url = NULL;
	c->url_len = 0;
	c->method[0] = c->path[0] = c->target[0] = c->host[0] = '\0';
	c->req_done = c->head_done = c->keep = 0;
	c->status = 0;
	c->err_code[0] = c->err_msg[0] = '\0';
	c->result = NULL;
	c->discard = c->up_chunked = c->expect100 = 0;
	c->uh_len = 0;
	c->uh_fail = 0;
	c->req_body = c->resp_body = 0;
	c->route = NULL;
	c->have_up = c->up_reused = 0;
	c->head_req = c->resp_status = c->resp_started = c->resp_done = 0;
	c->resp_restart = c->rechunk = c->close_after = 0;
	c->rh_fail = 0;
	c->t_up = 0;
}

/* ---- connections a newcomer may replace ---- */

enum { IDLE_FIRST_BYTE, IDLE_HANDSHAKE, IDLE_KEEPALIVE, IDLE_HEAD };

static void
idle_enter(struct gwc *c, int phase)
{
	struct loop *lp = c->lp;

	c->phase = phase;
	if (lp == NULL || c->idle)
		return;
	c->idle = 1;
	c->inext = NULL;
	c->iprev = lp->idle_tail;
	if (lp->idle_tail != NULL)
		lp->idle_tail->inext = c;
	else
		lp->idle_head = c;
	lp->idle_tail = c;
}

static void
idle_leave(struct gwc *c)
{
	struct loop *lp = c->lp;

	if (lp == NULL || !c->idle)
		return;
	c->idle = 0;
	if (c->iprev != NULL)
		c->iprev->inext = c->inext;
	else
		lp->idle_head = c->inext;
	if (c->inext != NULL)
		c->inext->iprev = c->iprev;
	else
		lp->idle_tail = c->iprev;
	c->iprev = c->inext = NULL;
}

static void co_resume(struct loop *, struct co *);

/* From the loop: ends <c>'s wait now (its io_wait times out) with
 * c->evicted = <why>; it closes. */
static void
idle_close(struct loop *lp, struct gwc *c, int why)
{
	struct co *co = c->co;

	idle_leave(c);
	c->evicted = why;
	waiting_remove(lp, co);
	co_resume(lp, co);
}

/* At the cap: closes the loop's longest-waiting connection that has no
 * whole request head (first byte, handshake, keep-alive, a head still
 * arriving); a request whose head is whole is never cut. 1 if one was
 * closed. */
static int
evict_oldest(struct loop *lp)
{
	struct gwc *c;

	for (c = lp->idle_head; c != NULL; c = c->inext)
		if (c->co != NULL && c->co->waiting) {
			idle_close(lp, c, 1);
			return 1;
		}
	return 0;
}

static void
gw_limit(struct gw *gw, int why, const char *client)
{
	if (gw->env.limit != NULL)
		gw->env.limit(gw->env.arg, why, client);
}

static int
wait_request1(struct gwc *c)
{
	int64_t deadline = now_ms() + c->gw->env.o->idle_timeout_ms;

	for (;;) {
		long r;
		int64_t slice = now_ms() + 250;
		int w = 0;

		if (!io_buffered(&c->cl))
			/* wait first: a read that would fail with EAGAIN is
			 * one syscall more per request */
			w = io_wait(c->cl.fd, POLLIN, slice < deadline ? slice :
			    deadline);
		if (w == IO_ERR)
			return 0;
		if (w == 0) {
			r = io_try_read(&c->cl, c->in, IN_SIZE);
			if (r > 0) {
				c->in_len = (size_t)r;
				return 1;
			}
			if (r == 0 || r == IO_ERR)
				return 0;
			if (r == MTLS_WANT_WRITE &&
			    io_wait(c->cl.fd, POLLOUT, deadline) != 0)
				return 0;
		}
		if (c->evicted || __atomic_load_n(c->gw->env.stopping,
		    __ATOMIC_ACQUIRE) || now_ms() >= deadline)
			return 0;
	}
}

/* Waits for the first byte of the next request: 1 data, 0 closed or idle
 * too long or draining or closed for a newcomer at the cap. */
static int
wait_request(struct gwc *c)
{
	int r;

	if (c->in_len > c->in_off)
		return 1;
	c->in_off = c->in_len = 0;
	idle_enter(c, IDLE_KEEPALIVE);
	r = wait_request1(c);
	idle_leave(c);
	if (!r && c->evicted)
		gw_limit(c->gw, GW_CL_EVICTED, c->client);
	return r;
}

/* One request and its answer. 1 to go on with the connection, 0 to
 * close it. */
static int
exchange(struct gwc *c, char *rbuf, size_t rbufsz)
{
	struct gw *gw = c->gw;
	int64_t dl;
	char *hend;
	size_t hlen;
	int rv, body_sent = 0;

	exchange_reset(c);
	c->t_req = now_ms();
	dl = req_deadline(c);
	/* the head, whole, in c->in; until it is, a newcomer at the cap
	 * may take the connection's place (its wait counted from the
	 * head's start, so a head sent a byte at a time stays old) */
	idle_enter(c, IDLE_HEAD);
	for (;;) {
		size_t have = c->in_len - c->in_off;
		const char *why;
		long n;

		/* RFC 9112 2.2: empty lines before a request line are
		 * ignored. Dropped here, so the head checked below is the
		 * one http_parser reads (it skips them on its own: a
		 * "\r\n\r\n" first would be an empty head, checked, and
		 * the request after it parsed unchecked) */
		while (have >= 2 && c->in[c->in_off] == '\r' &&
		    c->in[c->in_off + 1] == '\n') {
			c->in_off += 2;
			have -= 2;
		}
		hend = memmem(c->in + c->in_off, have, "\r\n\r\n", 4);
		if (hend != NULL)
			break;
		if ((why = http_head_check(c->in + c->in_off, have)) !=
		    NULL) {
			refuse(c, 400, "bad_request", "%s", why);
			goto refused;
		}
		if (have >= gw->l->max_head) {
			refuse(c, 431, "head_too_large", "request head over "
			    "%zu bytes", gw->l->max_head);
			goto refused;
		}
		if (c->in_off > 0) {
			memmove(c->in, c->in + c->in_off, have);
			c->in_off = 0;
			c->in_len = have;
		}
		n = io_read(&c->cl, c->in + c->in_len, IN_SIZE - c->in_len,
		    dl);
		if (c->evicted) {
			gw_limit(gw, GW_CL_EVICTED, c->client);
			return 0;
		}
		if (n <= 0) {
			if (have == 0) {
				idle_leave(c);
				return 0;
			}
			refuse(c, n == IO_TIMEOUT ? 408 : 400, n == IO_TIMEOUT ?
			    "request_timeout" : "bad_request", "%s",
			    n == IO_TIMEOUT ? "the request head did not arrive "
			    "in time" : "connection closed mid-request");
			goto refused;
		}
		c->in_len += (size_t)n;
	}
	idle_leave(c);
	hlen = (size_t)(hend - (c->in + c->in_off)) + 4;
	{
		const char *why = http_head_check(c->in + c->in_off, hlen);

		if (why != NULL) {
			refuse(c, 400, "bad_request", "%s", why);
			goto refused;
		}
	}
	http_parser_init(&c->rp, HTTP_REQUEST);
	c->rp.data = c;
	/* head, then body, from the buffer and then the socket */
	for (;;) {
		size_t have = c->in_len - c->in_off;
		size_t k = http_parser_execute(&c->rp, &rq_settings,
		    c->in + c->in_off, have);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->rp);
		long n;

		c->in_off += k;
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->rp, 0);
			break;
		}
		if (e != HPE_OK) {
			if (c->status == 0)
				refuse(c, 400, "bad_request", "%s",
				    http_errno_description(e));
			c->keep = 0;	/* where the next request starts is
					 * not known */
			goto refused;
		}
		if (!c->discard && c->ub.failed) {
			refuse(c, 502, "upstream_error", "route %s: sending "
			    "the request to %s failed", c->route->name,
			    c->route->r->upstream);
			c->keep = 0;
			goto refused;
		}
		if (c->in_off == c->in_len)
			c->in_off = c->in_len = 0;
		if (c->ub.len > 0 && !c->discard)
			ob_flush(&c->ub, req_deadline(c));	/* stream on */
		/* the head had one deadline in all (slow-header clients);
		 * a body has one between two reads, so a long upload is
		 * not cut */
		n = io_read(&c->cl, c->in + c->in_len, IN_SIZE - c->in_len,
		    req_deadline(c));
		if (n <= 0) {
			refuse(c, n == IO_TIMEOUT ? 408 : 400, n == IO_TIMEOUT ?
			    "request_timeout" : "bad_request", "%s",
			    n == IO_TIMEOUT ? "the request did not arrive in "
			    "time" : "connection closed mid-request");
			c->keep = 0;
			goto refused;
		}
		c->in_len += (size_t)n;
	}
	if (c->discard)
		goto refused;
	ob_flush(&c->ub, req_deadline(c));
	body_sent = c->req_body > 0;
	if (c->ub.failed) {
		refuse(c, 502, "upstream_error", "route %s: sending the request "
		    "to %s failed", c->route->name, c->route->r->upstream);
		goto refused;
	}
	c->head_req = strcmp(c->method, "HEAD") == 0;
	rv = relay_response(c, rbuf, rbufsz);
	if (rv == -3 && c->up_reused && !body_sent) {
		/* a pooled connection the upstream had closed: once more on a
		 * fresh one (no body was consumed, so nothing is lost) */
		struct route *rt = c->route;
		int keep = c->keep;

		up_release(c, 0);
		c->status = 0;
		c->discard = 0;
		c->err_code[0] = '\0';
		if (up_get(c, rt) != 0) {
			c->keep = keep;
			goto refused;
		}
		c->ub.io = &c->up.io;
		c->ub.len = 0;
		c->ub.failed = 0;
		/* exactly the head built from the checked one (and an empty
		 * chunked body's end), never rebuilt from c->in */
		ob_put(&c->ub, c->uh, c->uh_len, req_deadline(c));
		if (c->up_chunked)
			ob_put(&c->ub, "0\r\n\r\n", 5, req_deadline(c));
		ob_flush(&c->ub, req_deadline(c));
		rv = c->ub.failed ? -3 : relay_response(c, rbuf, rbufsz);
		if (c->ub.failed)
			refuse(c, 502, "upstream_error", "route %s: sending "
			    "the request to %s failed", rt->name,
			    rt->r->upstream);
	}
	ob_flush(&c->out, req_deadline(c));
	if (rv == 0) {
		up_release(c, http_should_keep_alive(&c->sp) && !c->close_after);
		access_log(c, c->resp_status);
		return c->keep && !c->close_after && !c->out.failed &&
		    !__atomic_load_n(gw->env.stopping, __ATOMIC_ACQUIRE);
	}
	up_release(c, 0);
	if (rv == -2 || rv == -4 || c->resp_started) {
		c->err_code[0] ? (void)0 : (void)snprintf(c->err_code,
		    sizeof(c->err_code), "%s", rv == -4 ? "upstream_extra_bytes"
		    : "aborted");
		access_log(c, c->resp_status);
		return 0;
	}
 refused:
	idle_leave(c);
	up_release(c, 0);
	if (__atomic_load_n(gw->env.stopping, __ATOMIC_ACQUIRE))
		c->keep = 0;
	answer(c);
	access_log(c, c->status);
	/* a refused request whose body was not read to its end leaves the
	 * stream at an unknown place: close */
	return c->keep && c->req_done && !c->out.failed;
}

/* ---- connections ---- */

static void
log_conn(struct gwc *c, const char *event, int ok, int64_t hs_us)
{
	json_t *o = json_object();
	struct mtls *t = c->cl.tls;

	json_object_set_new(o, "listener", esc_jstr(c->gw->l->name));
	json_object_set_new(o, "role", json_string("server"));
	json_object_set_new(o, "client", esc_jstr(c->client));
	json_object_set_new(o, "peer_id", c->peer_id ?
	    esc_jstr(c->peer_id) : json_null());
	json_object_set_new(o, "serial", mtls_peer_serial(t) ?
	    esc_jstr(mtls_peer_serial(t)) : json_null());
	if (strcmp(event, "handshake") == 0) {
		if (ok) {
			json_object_set_new(o, "tls_version",
			    esc_jstr(mtls_conn_version(t)));
			json_object_set_new(o, "cipher",
			    esc_jstr(mtls_conn_cipher(t)));
			json_object_set_new(o, "group",
			    esc_jstr(mtls_conn_group(t)));
			json_object_set_new(o, "resumed",
			    json_boolean(mtls_conn_resumed(t)));
			json_object_set_new(o, "alpn",
			    esc_jstr(mtls_conn_alpn(t)));
			json_object_set_new(o, "verified",
			    json_boolean(c->verified));
		}
		json_object_set_new(o, "handshake_us", json_integer(hs_us));
		json_object_set_new(o, "result", esc_jstr(ok ? "ok" :
		    mtls_fail_name(mtls_fail_code(t) ? mtls_fail_code(t) :
		    MTLS_FAIL_NOT_TLS)));
		if (!ok || (!c->verified && c->fail))
			json_object_set_new(o, "error",
			    esc_jstr(mtls_error(t)));
	} else {
		uint64_t in = 0, out = 0;

		mtls_conn_wire_bytes(t, &in, &out);
		json_object_set_new(o, "bytes_in", json_integer((json_int_t)in));
		json_object_set_new(o, "bytes_out",
		    json_integer((json_int_t)out));
		json_object_set_new(o, "duration_ms", json_integer(now_ms() -
		    c->t_conn));
	}
	log_emit(ok ? "info" : "warn", event, o);
	json_decref(o);
}

static void
conn_run(struct gwc *c)
{
	struct gw *gw = c->gw;
	const struct proxy_opts *o = gw->env.o;
	/* the first byte never waits longer than a handshake */
	int64_t fb = o->first_byte_timeout_ms > 0 && o->first_byte_timeout_ms <
	    o->handshake_timeout_ms ? o->first_byte_timeout_ms :
	    o->handshake_timeout_ms, deadline;
	struct timespec a, b;
	char *rbuf = NULL;
	int r, ok = 0;

	/* until its first byte a connection is a struct, an fd and a
	 * coroutine: no TLS object; a drain or a newcomer at the cap may
	 * close it */
	idle_enter(c, IDLE_FIRST_BYTE);
	r = io_wait(c->cl.fd, POLLIN, c->t_conn + fb);
	if (r == IO_TIMEOUT || c->evicted) {
		idle_leave(c);
		if (c->evicted != 2)
			gw_limit(gw, c->evicted ? GW_CL_EVICTED :
			    GW_CL_FIRST_BYTE, c->client);
		goto out;
	}
	if (mtls_accept_socket(c->lp->srv, &c->cl.tls, c->cl.fd) != 0) {
		idle_leave(c);
		goto out;
	}
	c->phase = IDLE_HANDSHAKE;
	deadline = now_ms() + o->handshake_timeout_ms;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		r = mtls_handshake(c->cl.tls);
		if (r == 0 || r == -1)
			break;
		if (io_wait(c->cl.fd, r == MTLS_WANT_WRITE ? POLLOUT : POLLIN,
		    deadline) != 0) {
			r = -2;
			break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	idle_leave(c);
	if (c->evicted) {
		gw_limit(gw, GW_CL_EVICTED, c->client);
		goto out;
	}
	if (r == 0) {
		X509 *peer = tls_peer_cert(c->cl.tls);
		struct mtls_error e;

		ok = 1;
		c->verified = mtls_peer_verified(c->cl.tls);
		c->fail = mtls_fail_code(c->cl.tls);
		if (c->verified && peer != NULL &&
		    ids_from_cert(peer, &c->ids, &e) == 0) {
			c->peer_id = mtls_peer_id(c->cl.tls);
			c->xfcc = xfcc_build(c->by ? c->by : "", peer,
			    &c->ids);
			c->id_bad = c->xfcc == NULL ||
			    !http_value_visible(c->xfcc, 1) ||
			    (c->peer_id != NULL &&
			    !http_value_visible(c->peer_id, 0));
		} else
			c->verified = 0;
	}
	if (r == -2) {
		ctx_fail(c->cl.tls, MTLS_FAIL_HANDSHAKE_TIMEOUT, "no "
		    "complete handshake within %lld ms of its first byte",
		    (long long)gw->env.o->handshake_timeout_ms);
		gw_limit(gw, GW_CL_HS_TIMEOUT, c->client);
	}
	{
		int64_t us = (b.tv_sec - a.tv_sec) * 1000000 +
		    (b.tv_nsec - a.tv_nsec) / 1000;

		gw->env.count_hs(gw->env.arg, ok ? MTLS_FAIL_NONE :
		    (mtls_fail_code(c->cl.tls) ? mtls_fail_code(c->cl.tls) :
		    MTLS_FAIL_NOT_TLS), ok && mtls_conn_resumed(c->cl.tls), us);
		log_conn(c, "handshake", ok, us);
	}
	if (ok && (c->in = malloc(IN_SIZE)) != NULL &&
	    (rbuf = malloc(IN_SIZE)) != NULL) {
		c->out.io = &c->cl;
		while (wait_request(c) && exchange(c, rbuf, IN_SIZE))
			;
		ob_flush(&c->out, now_ms() + 1000);
		mtls_close(c->cl.tls);
		log_conn(c, "close", 1, 0);
	}
 out:
	idle_leave(c);		/* (each path left already) */
	free(rbuf);
	free(c->in);
	free(c->rh);
	free(c->uh);
	free(c->xfcc);
	free(c->by);
	ids_free(&c->ids);
	if (c->cl.tls != NULL)
		mtls_free(c->cl.tls);
	close(c->cl.fd);
	iplimit_put(gw->env.ipt, c->ip);
	free(c);
	__atomic_sub_fetch(gw->env.active, 1, __ATOMIC_RELEASE);
}

/* ---- contexts: the listener's server, each route's upstream client ---- */

/* The client context of an mTLS upstream: our certificate (the route's,
 * else the listener's), its bundle, its expected identity; ALPN
 * http/1.1. */
static int
route_client(struct gw *gw, struct route *rt, struct mtls_error *err)
{
	const struct proxy_route *r = rt->r;
	const struct proxy_listener *l = gw->l;
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *cli = mtls_client();
	size_t i;

	if (cfg == NULL || cli == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (mtls_config_set_identity_file(cfg, r->up_cert ? r->up_cert :
	    l->cert, r->up_key ? r->up_key : l->key) != 0 ||
	    mtls_config_set_trust_file(cfg, r->up_ca ? r->up_ca : l->ca) != 0 ||
	    mtls_config_set_alpn(cfg, "http/1.1") != 0)
		goto cfgerr;
	for (i = 0; i < r->n_up_expect; i++)
		if (mtls_config_add_expect(cfg, r->up_expect[i]) != 0)
			goto cfgerr;
	if (mtls_configure(cli, cfg) != 0) {
		error_set(err, MTLS_ERR_ARG, "route %s: upstream TLS: %s",
		    rt->name, mtls_error(cli));
		goto fail;
	}
	mtls_config_free(cfg);
	pthread_mutex_lock(&rt->mu);
	mtls_free(rt->cli);
	rt->cli = cli;
	pthread_mutex_unlock(&rt->mu);
	return 0;
 cfgerr:
	error_set(err, MTLS_ERR_ARG, "route %s: upstream TLS: %s", rt->name,
	    mtls_config_error(cfg));
 fail:
	mtls_config_free(cfg);
	mtls_free(cli);
	return -1;
}

/* Picks up a reloaded listener config on loop <lp>: its server context;
 * loop 0 also our URI for XFCC By= and the routes' client contexts
 * (rebuilt from their files; a route whose files fail keeps its
 * context, logged). */
static void
refresh(struct loop *lp)
{
	struct gw *gw = lp->gw;
	struct mtls_config *cfg = gw->env.config(gw->env.arg, &lp->seq);
	struct mtls_error e;
	struct ids ids;
	size_t i;

	if (cfg == NULL)
		return;
	if (mtls_configure(lp->srv, cfg) != 0) {
		json_t *o = json_object();

		json_object_set_new(o, "listener", esc_jstr(gw->l->name));
		json_object_set_new(o, "error", esc_jstr(mtls_error(lp->srv)));
		log_emit("error", "reload", o);
		json_decref(o);
	}
	if (lp->id != 0) {
		mtls_config_free(cfg);
		return;
	}
	pthread_mutex_lock(&gw->mu);
	gw->by[0] = '\0';
	if (ids_from_cert(config_leaf(cfg), &ids, &e) == 0) {
		for (i = 0; i < ids.n; i++)
			if (strncmp(ids.v[i], "spiffe://", 9) == 0) {
				snprintf(gw->by, sizeof(gw->by), "%s", ids.v[i]);
				break;
			}
		ids_free(&ids);
	}
	pthread_mutex_unlock(&gw->mu);
	mtls_config_free(cfg);
	for (i = 0; i < gw->n_routes; i++) {
		if (!gw->routes[i].r->up_tls || lp->seq == 1)
			continue;
		error_clear(&e);
		if (route_client(gw, &gw->routes[i], &e) != 0) {
			json_t *o = json_object();

			json_object_set_new(o, "listener",
			    esc_jstr(gw->l->name));
			json_object_set_new(o, "route",
			    esc_jstr(gw->routes[i].name));
			json_object_set_new(o, "error", esc_jstr(e.msg));
			log_emit("error", "reload", o);
			json_decref(o);
		}
	}
}

/* ---- coroutines ---- */

static void
co_switch(ucontext_t *from, ucontext_t *to, void **fake_save,
    const void *bottom, size_t size)
{
#ifdef CO_ASAN
	__sanitizer_start_switch_fiber(fake_save, bottom, size);
#else
	(void)fake_save;
	(void)bottom;
	(void)size;
#endif
	swapcontext(from, to);
}

/* From a coroutine back to its loop. */
static void
co_yield(struct loop *lp, struct co *co)
{
#ifdef CO_ASAN
	co_switch(&co->ctx, &lp->main, &co->fake_stack, lp->main_bottom,
	    lp->main_size);
	__sanitizer_finish_switch_fiber(co->fake_stack, NULL, NULL);
#else
	co_switch(&co->ctx, &lp->main, NULL, NULL, 0);
#endif
}

/* From the loop into <co>, until it waits or ends. */
static void
co_resume(struct loop *lp, struct co *co)
{
	lp->cur = co;
#ifdef CO_ASAN
	{
		void *fake = NULL;

		co_switch(&lp->main, &co->ctx, &fake, co->stack,
		    co->stack_size);
		__sanitizer_finish_switch_fiber(fake, &lp->main_bottom,
		    &lp->main_size);
	}
#else
	co_switch(&lp->main, &co->ctx, NULL, NULL, 0);
#endif
	lp->cur = NULL;
	if (co->done) {
		co->dead_next = lp->dead;
		lp->dead = co;
	}
}

static __thread struct co *co_start_arg;

static void
co_entry(void)
{
	struct co *co = co_start_arg;

#ifdef CO_ASAN
	__sanitizer_finish_switch_fiber(NULL, &co->lp->main_bottom,
	    &co->lp->main_size);
#endif
	conn_run(co->c);
	co->done = 1;
	co->lp->n_cos--;
#ifdef CO_ASAN
	__sanitizer_start_switch_fiber(NULL, co->lp->main_bottom,
	    co->lp->main_size);
#endif
	setcontext(&co->lp->main);
}

#ifdef CO_ASAN
#define CO_STACK	(1024 * 1024)
#else
#define CO_STACK	(256 * 1024)
#endif

/* Runs connection <c> as a new coroutine on <lp>. */
static int
co_spawn(struct loop *lp, struct gwc *c)
{
	struct co *co = calloc(1, sizeof(*co));

	if (co == NULL)
		return -1;
	co->stack_size = CO_STACK;
	/* a guard page below the stack: an overflow faults, never
	 * corrupts */
	co->stack = mmap(NULL, co->stack_size + 4096, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (co->stack == MAP_FAILED) {
		free(co);
		return -1;
	}
	mprotect(co->stack, 4096, PROT_NONE);
	co->stack = (char *)co->stack + 4096;
	co->lp = lp;
	co->c = c;
	c->co = co;
	c->lp = lp;
	getcontext(&co->ctx);
	co->ctx.uc_stack.ss_sp = co->stack;
	co->ctx.uc_stack.ss_size = co->stack_size;
	co->ctx.uc_link = NULL;
	makecontext(&co->ctx, co_entry, 0);
	lp->n_cos++;
	co_start_arg = co;	/* read by co_entry before it first yields */
	co_resume(lp, co);
	return 0;
}

static void
co_reap(struct loop *lp)
{
	while (lp->dead != NULL) {
		struct co *co = lp->dead;

		lp->dead = co->dead_next;
		munmap((char *)co->stack - 4096, co->stack_size + 4096);
		free(co);
	}
}

/* ---- event loops ---- */

static int
gw_full(struct gw *gw)
{
	int n = __atomic_load_n(gw->env.active, __ATOMIC_RELAXED);

	return (gw->env.o->max_conns > 0 && n >= gw->env.o->max_conns) ||
	    n >= HTTP_MAX_CONNS;
}

static void
accept_some(struct loop *lp)
{
	struct gw *gw = lp->gw;
	int k;

	for (k = 0; k < 64; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct gwc *c;
		struct ipent *ip;
		char client[64];
		int fd, one = 1;

		fd = accept4(lp->lfd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			/* out of fds: an idle connection makes room */
			if ((errno == EMFILE || errno == ENFILE) &&
			    evict_oldest(lp))
				continue;
			return;		/* EAGAIN; or EMFILE: next round */
		}
		proxy_addr_text(&ss, client, sizeof(client));
		ip = NULL;
		if (gw->env.ipt != NULL &&
		    iplimit_take(gw->env.ipt, &ss, &ip) != 0) {
			close(fd);
			gw_limit(gw, GW_CL_PER_IP, client);
			continue;
		}
		/* at the cap the longest-waiting idle connection of this
		 * loop makes room; refused only when there is none */
		if (gw_full(gw) && !evict_oldest(lp)) {
			close(fd);
			iplimit_put(gw->env.ipt, ip);
			gw_limit(gw, GW_CL_FULL, client);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		refresh(lp);
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			iplimit_put(gw->env.ipt, ip);
			continue;
		}
		c->gw = gw;
		c->cl.fd = fd;
		c->ip = ip;
		c->t_conn = now_ms();
		pthread_mutex_lock(&gw->mu);
		c->by = gw->by[0] ? strdup(gw->by) : NULL;
		pthread_mutex_unlock(&gw->mu);
		memcpy(c->client, client, sizeof(c->client));
		__atomic_add_fetch(gw->env.active, 1, __ATOMIC_RELAXED);
		if (co_spawn(lp, c) != 0) {
			__atomic_sub_fetch(gw->env.active, 1, __ATOMIC_RELAXED);
			iplimit_put(gw->env.ipt, ip);
			free(c->by);
			free(c);
			close(fd);
		}
	}
}

/* Draining: connections still waiting for a first byte close at once. */
static void
drain_first_byte(struct loop *lp)
{
	struct gwc *c, *nx;

	for (c = lp->idle_head; c != NULL; c = nx) {
		nx = c->inext;
		if (c->phase == IDLE_FIRST_BYTE && c->co != NULL &&
		    c->co->waiting) {
			idle_close(lp, c, 2);
			nx = lp->idle_head;	/* the list changed */
		}
	}
}

static void *
loop_main(void *arg)
{
	struct loop *lp = arg;
	struct gw *gw = lp->gw;
	struct epoll_event evs[128];
	int64_t next_scan = 0;

	cur_loop = lp;
	x509memo_thread(1);	/* the data path: libssl's parses memoized */
	for (;;) {
		int64_t now;
		int n, i;

		if (__atomic_load_n(gw->env.stopping, __ATOMIC_ACQUIRE)) {
			if (lp->lfd >= 0) {	/* stop accepting */
				epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->lfd, NULL);
				close(lp->lfd);
				lp->lfd = -1;
			}
			drain_first_byte(lp);
			if (lp->n_cos == 0)
				break;
		}
		n = epoll_wait(lp->epfd, evs, 128, 100);
		for (i = 0; i < n; i++) {
			struct co *co;

			if (evs[i].data.ptr == &lp->lfd_tag) {
				if (lp->lfd >= 0)
					accept_some(lp);
				continue;
			}
			co = evs[i].data.ptr;
			if (!co->waiting)
				continue;	/* resumed by its deadline */
			co->fired = 1;
			waiting_remove(lp, co);
			co_resume(lp, co);
		}
		now = now_ms();
		if (now >= next_scan) {
			struct co *co = lp->waiting, *nx;

			for (; co != NULL; co = nx) {
				nx = co->next;
				if (co->deadline <= now) {
					waiting_remove(lp, co);
					co_resume(lp, co);
					nx = lp->waiting;	/* list changed */
				}
			}
			next_scan = now + 50;
		}
		co_reap(lp);
	}
	co_reap(lp);
	return NULL;
}

/* Checks that route <r>'s host and path are in the normal form requests
 * are routed in (a route that can never match is a config error); the
 * host's normal form into <host> when given. */
static int
route_norm(const struct proxy_route *r, char *host, size_t hostsz,
    struct mtls_error *err)
{
	char h[264] = "", t[2048];
	size_t hl = 0, pl;
	const char *why = NULL;

	if (r->host != NULL) {
		if (http_host_normalize(r->host, strlen(r->host), h, sizeof(h),
		    &hl, &why) != 0)
			return error_set(err, MTLS_ERR_ARG, "route %s: host "
			    "'%s': %s", r->name, r->host, why);
		if (hl == 0 || h[hl] != '\0')
			return error_set(err, MTLS_ERR_ARG, "route %s: host "
			    "'%s': give a host name without a port", r->name,
			    r->host);
	}
	if (r->path != NULL && (http_target_normalize(r->path,
	    strlen(r->path), t, sizeof(t), &pl, &why) != 0 || pl !=
	    strlen(t) || strcmp(t, r->path) != 0))
		return error_set(err, MTLS_ERR_ARG, "route %s: path '%s' is "
		    "not in normal form (requests are matched after "
		    "normalization): %s", r->name, r->path, why ? why :
		    "write it with unreserved bytes unescaped, other escapes "
		    "in upper case, no dot segments and no query");
	if (host != NULL && hostsz > 0)
		snprintf(host, hostsz, "%s", h);
	return 0;
}

int
gw_check(const struct proxy_listener *l, struct mtls_error *err)
{
	size_t i;

	if (l->n_routes == 0)
		return error_set(err, MTLS_ERR_ARG, "listener %s: http mode "
		    "needs at least one route", l->name);
	for (i = 0; i < l->n_routes; i++) {
		const struct proxy_route *r = l->routes[i];
		struct sockaddr_storage ss;
		socklen_t sl;

		if (r->upstream == NULL)
			return error_set(err, MTLS_ERR_ARG, "route %s: no "
			    "upstream", r->name);
		if (r->path == NULL || r->path[0] != '/')
			return error_set(err, MTLS_ERR_ARG, "route %s: path "
			    "must start with '/'", r->name);
		if (route_norm(r, NULL, 0, err) != 0)
			return -1;
		/* fail closed, as for a TCP listener */
		if (!r->optional && !r->allow_any && r->n_allow == 0)
			return error_set(err, MTLS_ERR_ARG, "route %s lets any "
			    "client in: give it allow rules, allow_any = true "
			    "(any certificate that chains to ca) or "
			    "client_cert = optional (public)", r->name);
		if (r->up_tls && r->n_up_expect == 0)
			return error_set(err, MTLS_ERR_ARG, "route %s: an mTLS "
			    "upstream needs upstream_expect (its identity)",
			    r->name);
		if (proxy_addr_parse(r->upstream, "upstream", &ss, &sl,
		    err) != 0)
			return -1;
		if (!r->up_tls && !l->unsafe_target &&
		    !proxy_addr_is_local(&ss))
			return error_set(err, MTLS_ERR_ARG, "route %s: upstream "
			    "%s is not loopback: plaintext would leave this "
			    "host (use upstream_tls, or unsafe_target = true "
			    "if that is really meant)", r->name, r->upstream);
	}
	return 0;
}

int
gw_start(const struct gw_env *env, struct gw **out, struct mtls_error *err)
{
	struct gw *gw;
	size_t i;
	int k, one = 1;

	*out = NULL;
	if (gw_check(env->l, err) != 0)
		return -1;
	if ((gw = calloc(1, sizeof(*gw))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	gw->env = *env;
	gw->l = env->l;
	gw->none.name = "";
	pthread_mutex_init(&gw->mu, NULL);
	pthread_mutex_init(&gw->none.mu, NULL);
	gw->n_routes = env->l->n_routes;
	gw->nloops = env->o->workers > 0 ? env->o->workers :
	    (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (gw->nloops < 1)
		gw->nloops = 1;
	if (gw->nloops > 64)
		gw->nloops = 64;
	if ((gw->routes = calloc(gw->n_routes, sizeof(*gw->routes))) == NULL ||
	    (gw->loops = calloc((size_t)gw->nloops, sizeof(*gw->loops))) ==
	    NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto fail;
	}
	for (k = 0; k < gw->nloops; k++) {
		gw->loops[k].epfd = gw->loops[k].lfd = -1;
		gw->loops[k].gw = gw;
		gw->loops[k].id = k;
	}
	for (i = 0; i < gw->n_routes; i++) {
		struct route *rt = &gw->routes[i];

		rt->r = env->l->routes[i];
		rt->name = rt->r->name;
		pthread_mutex_init(&rt->mu, NULL);
		if (route_norm(rt->r, rt->host, sizeof(rt->host), err) != 0)
			goto fail;
		if (proxy_addr_parse(rt->r->upstream, "upstream", &rt->ss,
		    &rt->sslen, err) != 0 ||
		    (rt->idle = calloc((size_t)rt->r->up_idle + 1,
		    sizeof(*rt->idle))) == NULL ||
		    (rt->r->up_tls && route_client(gw, rt, err) != 0))
			goto fail;
	}
	/* a loop per worker: its own epoll, SO_REUSEPORT socket and server
	 * context, like the engine's workers */
	for (k = 0; k < gw->nloops; k++) {
		struct loop *lp = &gw->loops[k];
		struct epoll_event e;

		if ((lp->srv = mtls_server()) == NULL) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto fail;
		}
		refresh(lp);
		if (lp->seq == 0) {
			error_set(err, MTLS_ERR_STATE, "listener %s: no config",
			    gw->l->name);
			goto fail;
		}
		if ((lp->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    (lp->lfd = socket(env->listen_ss.ss_family, SOCK_STREAM |
		    SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
		    setsockopt(lp->lfd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one)) != 0 ||
		    setsockopt(lp->lfd, SOL_SOCKET, SO_REUSEPORT, &one,
		    sizeof(one)) != 0 ||
		    bind(lp->lfd, (const struct sockaddr *)&env->listen_ss,
		    env->listen_len) != 0 || listen(lp->lfd, 1024) != 0) {
			error_set_errno(err, MTLS_ERR_IO, "listen %s",
			    gw->l->listen);
			goto fail;
		}
		memset(&e, 0, sizeof(e));
		e.events = EPOLLIN;
		e.data.ptr = &lp->lfd_tag;
		if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->lfd, &e) != 0) {
			error_set_errno(err, MTLS_ERR_IO, "epoll");
			goto fail;
		}
	}
	for (k = 0; k < gw->nloops; k++) {
		if (pthread_create(&gw->loops[k].thr, NULL, loop_main,
		    &gw->loops[k]) != 0) {
			error_set(err, MTLS_ERR_IO, "cannot start a thread");
			__atomic_store_n(env->stopping, 1, __ATOMIC_RELEASE);
			goto fail;
		}
		gw->loops[k].started = 1;
	}
	*out = gw;
	return 0;
 fail:
	gw_free(gw);
	return -1;
}

void
gw_free(struct gw *gw)
{
	size_t i;
	int k;

	if (gw == NULL)
		return;
	if (__atomic_load_n(gw->env.active, __ATOMIC_ACQUIRE) > 0)
		return;		/* connections still run; the exit frees */
	for (k = 0; gw->loops != NULL && k < gw->nloops; k++) {
		struct loop *lp = &gw->loops[k];

		if (lp->started)
			pthread_join(lp->thr, NULL);
		if (lp->lfd >= 0)
			close(lp->lfd);
		if (lp->epfd >= 0)
			close(lp->epfd);
		mtls_free(lp->srv);
	}
	for (i = 0; gw->routes != NULL && i < gw->n_routes; i++) {
		struct route *rt = &gw->routes[i];

		while (rt->n_idle > 0)
			up_close(rt, &rt->idle[--rt->n_idle]);
		free(rt->idle);
		mtls_free(rt->cli);
		pthread_mutex_destroy(&rt->mu);
	}
	pthread_mutex_destroy(&gw->none.mu);
	pthread_mutex_destroy(&gw->mu);
	free(gw->loops);
	free(gw->routes);
	free(gw);
}

static void
metrics_route(FILE *f, const char *listener, const struct route *rt)
{
	int k;

	for (k = 100; k < 600; k++) {
		uint64_t v = __atomic_load_n(&rt->m_code[k], __ATOMIC_RELAXED);

		if (v > 0)
			fprintf(f, "mtls_http_requests_total{listener=\"%s\","
			    "route=\"%s\",code=\"%d\"} %llu\n", listener,
			    rt->name, k, (unsigned long long)v);
	}
}

char *
gw_metrics(struct gw *gw, int help)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	if (help)
		fprintf(f, "# HELP mtls_http_requests_total HTTP requests by "
		    "route and status.\n# TYPE mtls_http_requests_total "
		    "counter\n");
	metrics_route(f, gw->l->name, &gw->none);
	for (i = 0; i < gw->n_routes; i++)
		metrics_route(f, gw->l->name, &gw->routes[i]);
	if (help)
		fprintf(f, "# HELP mtls_http_upstream_connections_total "
		    "Upstream connections: opened (a TLS handshake each for "
		    "mTLS upstreams), reused from the pool, failed.\n# TYPE "
		    "mtls_http_upstream_connections_total counter\n");
	for (i = 0; i < gw->n_routes; i++) {
		const struct route *rt = &gw->routes[i];

		fprintf(f, "mtls_http_upstream_connections_total{listener="
		    "\"%s\",route=\"%s\",event=\"opened\"} %llu\n",
		    gw->l->name, rt->name, (unsigned long long)
		    __atomic_load_n(&rt->m_connects, __ATOMIC_RELAXED));
		fprintf(f, "mtls_http_upstream_connections_total{listener="
		    "\"%s\",route=\"%s\",event=\"reused\"} %llu\n",
		    gw->l->name, rt->name, (unsigned long long)
		    __atomic_load_n(&rt->m_reused, __ATOMIC_RELAXED));
		fprintf(f, "mtls_http_upstream_connections_total{listener="
		    "\"%s\",route=\"%s\",event=\"failed\"} %llu\n",
		    gw->l->name, rt->name, (unsigned long long)
		    __atomic_load_n(&rt->m_failed, __ATOMIC_RELAXED));
	}
	fclose(f);
	return buf;
}

/* ---- fuzzing ---- */

/*
 * For fuzz/fuzz_gateway.c: runs the request side of a plaintext client
 * connection over a socket pair on <data> as the client's bytes: head
 * reading and checks, http_parser and its callbacks, routing and
 * authorization (an anonymous peer: public route "/" to a closed port,
 * so 502; "/a" needs an identity, so 403; host h.example "/v" too),
 * bodies discarded, our answers. An input whose length is 1 or 2 mod 3
 * comes from a verified peer with an XFCC of about 4.2 or 9 KB (over
 * ob_printf's old 4 KB cut; over XFCC_MAX), so every head built carries
 * it and is parsed back (fz_uh_check).
 *
 * Canary (issue 12 item 4, fuzz/canary.h): the buffers the gateway reads
 * into are filled beforehand with the harness's pattern, and what the
 * client got and the access log lines are handed back for it to search.
 */
struct fz_out {
	char	*b;
	size_t	 cap, n;
};

static struct fz_out fz_out;

struct fz_parsed {
	size_t	 fields;
	int	 in_value;
	int	 done;
};

static int
fz_on_field(http_parser *p, const char *at, size_t n)
{
	struct fz_parsed *r = p->data;

	(void)at;
	(void)n;
	if (r->in_value || r->fields == 0)
		r->fields++;
	r->in_value = 0;
	return 0;
}

static int
fz_on_value(http_parser *p, const char *at, size_t n)
{
	(void)at;
	(void)n;
	((struct fz_parsed *)p->data)->in_value = 1;
	return 0;
}

static int
fz_on_head(http_parser *p)
{
	((struct fz_parsed *)p->data)->done = 1;
	return 1;	/* no body: the head is all we check */
}

/*
 * A head we wrote must parse back whole, as exactly the lines we meant
 * to write: a line cut short and glued to the next one (an ob_printf
 * truncation: issue-13 items 2 and 4) shows as one field less, a lost
 * framing header as a framing that differs. Aborts (the fuzzer's find).
 */
static void
fz_parse_back(const char *h, size_t n, enum http_parser_type t,
    size_t lines, int chunked, int has_cl, uint64_t cl)
{
	static const http_parser_settings st = {
		.on_header_field = fz_on_field,
		.on_header_value = fz_on_value,
		.on_headers_complete = fz_on_head,
	};
	struct fz_parsed r = { 0, 0, 0 };
	http_parser p;
	size_t k;

	http_parser_init(&p, t);
	p.data = &r;
	k = http_parser_execute(&p, &st, h, n);
	if (!r.done || k != n || r.fields != lines ||
	    (chunked >= 0 && !!(p.flags & F_CHUNKED) != chunked) ||
	    (has_cl >= 0 && (!!(p.flags & F_CONTENTLENGTH) != has_cl ||
	    (has_cl && p.content_length != cl))))
		abort();
}

static void
fz_uh_check(const struct gwc *c)
{
	fz_parse_back(c->uh, c->uh_len, HTTP_REQUEST, c->uh_lines,
	    c->up_chunked, !c->up_chunked && (c->rp.flags & F_CONTENTLENGTH),
	    c->rp.content_length);
}

static void
fz_fill(char *buf, size_t n, const char *fill)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = fill != NULL ? fill[i % 4] : 0;
}

static void
fz_keep(const char *p, size_t n)
{
	if (n > fz_out.cap - fz_out.n)
		n = fz_out.cap - fz_out.n;
	memcpy(fz_out.b + fz_out.n, p, n);
	fz_out.n += n;
}

static void
fz_drain(int fd)
{
	char sink[4096];
	ssize_t n;

	while ((n = read(fd, sink, sizeof(sink))) > 0)
		fz_keep(sink, (size_t)n);
}
static struct gw fz_gw;

/* The fuzz targets' gateway: public route "/" and route "/a" that needs an
 * identity, both to a closed port; small limits, short timeouts. */
static int
fuzz_gw_init(void)
{
	static struct proxy_opts o;
	static struct proxy_listener l;
	static struct proxy_route open_r, closed_r, vhost_r;
	static char *rule[] = { (char *)"spiffe://example.org/ops" };
	static struct route routes[3];
	static int active, stopping;
	int i;

	if (fz_gw.l != NULL)
		return 0;
	o.idle_timeout_ms = 50;
	o.connect_timeout_ms = 100;
	l.http = 1;
	snprintf(l.name, sizeof(l.name), "fuzz");
	l.max_head = 4096;
	l.max_headers = 20;
	l.max_body = 2048;
	l.request_timeout_ms = 100;
	snprintf(open_r.name, sizeof(open_r.name), "open");
	open_r.path = (char *)"/";
	open_r.upstream = (char *)"127.0.0.1:1";
	open_r.optional = 1;
	open_r.up_idle = 1;
	open_r.up_max = 4;
	snprintf(closed_r.name, sizeof(closed_r.name), "closed");
	closed_r.path = (char *)"/a";
	closed_r.upstream = (char *)"127.0.0.1:1";
	closed_r.allow = rule;
	closed_r.n_allow = 1;
	closed_r.up_idle = 1;
	closed_r.up_max = 4;
	vhost_r = closed_r;
	snprintf(vhost_r.name, sizeof(vhost_r.name), "vhost");
	vhost_r.host = (char *)"h.example";
	vhost_r.path = (char *)"/v";
	fz_gw.env.o = &o;
	fz_gw.env.active = &active;
	fz_gw.env.stopping = &stopping;
	fz_gw.none.name = "";
	fz_gw.routes = routes;
	fz_gw.n_routes = 3;
	routes[0].r = &open_r;
	routes[1].r = &closed_r;
	routes[2].r = &vhost_r;
	for (i = 0; i < 3; i++) {
		struct mtls_error e;

		routes[i].name = routes[i].r->name;
		if (route_norm(routes[i].r, routes[i].host,
		    sizeof(routes[i].host), &e) != 0)
			return -1;
		pthread_mutex_init(&routes[i].mu, NULL);
		routes[i].idle = calloc(2, sizeof(*routes[i].idle));
		if (proxy_addr_parse(routes[i].r->upstream, "upstream",
		    &routes[i].ss, &routes[i].sslen, &e) != 0)
			return -1;
	}
	fz_gw.l = &l;
	return 0;
}

static void
fuzz_send(int fd, const uint8_t *data, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
}

/*
 * For fuzz/fuzz_gateway_response.c: <data> (after one flags byte: HEAD or
 * GET, HTTP/1.0 or 1.1 client) as what an upstream answers: relay_response,
 * the response parser's callbacks and the re-framing towards the client.
 */
int
gw_fuzz_response(const uint8_t *data, size_t len, const char *fill,
    char *out, size_t cap, size_t *out_len)
{
	struct gwc *c;
	char *rbuf;
	int cl[2], up[2];

	*out_len = 0;
	if (fuzz_gw_init() != 0 || len < 1 || len > 65536)
		return 0;
	fz_out.b = out;
	fz_out.cap = cap;
	fz_out.n = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, cl) != 0)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, up) != 0) {
		close(cl[0]);
		close(cl[1]);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	rbuf = malloc(IN_SIZE);
	if (c != NULL && rbuf != NULL) {
		fz_fill(rbuf, IN_SIZE, fill);
		c->gw = &fz_gw;
		c->cl.fd = cl[0];
		c->out.io = &c->cl;
		c->up.io.fd = up[0];
		c->route = &fz_gw.routes[0];
		c->keep = 1;
		c->head_req = data[0] & 1;
		c->minor = data[0] & 2 ? 0 : 1;
		snprintf(c->method, sizeof(c->method), "%s", c->head_req ?
		    "HEAD" : "GET");
		fuzz_send(up[1], data + 1, len - 1);
		(void)relay_response(c, rbuf, IN_SIZE);
		ob_flush(&c->out, now_ms() + 100);
		fz_drain(cl[1]);
		if (c->resp_started && !c->out.failed) {
			/* the head the client got: exactly the lines meant */
			const char *e = memmem(fz_out.b, fz_out.n, "\r\n\r\n",
			    4);

			if (e == NULL)
				abort();
			fz_parse_back(fz_out.b, (size_t)(e - fz_out.b) + 4,
			    HTTP_RESPONSE, c->oh_lines, c->rechunk, -1, 0);
		}
		free(c->rh);
		free(c->uh);
	}
	free(rbuf);
	free(c);
	close(cl[0]);
	close(cl[1]);
	close(up[0]);
	close(up[1]);
	*out_len = fz_out.n;
	return 0;
}

int
gw_fuzz_requests(const uint8_t *data, size_t len, const char *fill,
    char *out, size_t cap, size_t *out_len)
{
	struct gwc *c;
	int sv[2];

	*out_len = 0;
	if (fuzz_gw_init() != 0)
		return 0;
	fz_out.b = out;
	fz_out.cap = cap;
	fz_out.n = 0;
	if (len > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK,
	    0, sv) != 0)
		return 0;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->in = malloc(IN_SIZE)) == NULL) {
		free(c);
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	fz_fill(c->in, IN_SIZE, fill);
	c->gw = &fz_gw;
	c->cl.fd = sv[0];
	c->out.io = &c->cl;
	snprintf(c->client, sizeof(c->client), "fuzz");
	if (len % 3 != 0) {
		size_t xn = len % 3 == 1 ? 4200 : 9000;

		if ((c->xfcc = malloc(xn + 1)) != NULL) {
			memset(c->xfcc, 'x', xn);
			memcpy(c->xfcc, "Hash=", 5);
			c->xfcc[xn] = '\0';
			c->verified = 1;
			c->peer_id = "spiffe://example.org/fuzz";
		}
	}
	fz_log = fz_keep;
	fz_head_check = fz_uh_check;
	fuzz_send(sv[1], data, len);	/* the client's bytes, then EOF */
	{
		char *rbuf = malloc(IN_SIZE);

		if (rbuf != NULL)
			fz_fill(rbuf, IN_SIZE, fill);
		while (rbuf != NULL && wait_request(c) &&
		    exchange(c, rbuf, IN_SIZE))
			fz_drain(sv[1]);
		fz_drain(sv[1]);
		free(rbuf);
	}
	fz_log = NULL;
	fz_head_check = NULL;
	*out_len = fz_out.n;
	free(c->in);
	free(c->rh);
	free(c->uh);
	free(c->xfcc);
	free(c);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
