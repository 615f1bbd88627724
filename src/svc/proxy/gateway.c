/*
 * The HTTP gateway (gateway.h), a connection's life. Each worker's net
 * loop (gw_loop.c, net/net.h) accepts, waits for the first byte and runs
 * a coroutine per client connection; each runs requests one after
 * another:
 *
 *   head in (h1_head_scan) -> the codec's parse and checks (h1_req_feed)
 *   -> on_head: route (host, longest prefix) -> authorize (the route's
 *   rules against the peer's identities) -> upstream from the route's
 *   pool -> request head with identity headers (gw_idhdr.c), body
 *   streamed -> response through the codec (h1_resp_feed) and streamed
 *   back -> access log line (gw_log.c).
 *
 * The HTTP/1.1 rules (framing, the head's grammar and checks, what passes,
 * re-framing) are the codec's (src/svc/http/h1.c, no I/O); this file
 * reads, writes and decides. Request smuggling needs two parties to
 * disagree on where a request ends, so anything ambiguous is refused
 * (400) and bodies are re-framed for the upstream, never passed through
 * raw.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <jansson.h>

#include "proxy/gw_int.h"

void
refuse(struct gwc *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	c->rq.status = status;
	snprintf(c->rq.code, sizeof(c->rq.code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(c->rq.msg, sizeof(c->rq.msg), fmt, ap);
	va_end(ap);
	c->rq.discard = 1;
}

/* The codec's output towards the upstream (a request body, re-framed). */
static int
to_upstream(void *arg, const struct iovec *iov, int n)
{
	struct gwc *c = arg;
	int64_t dl = req_deadline(c);
	int i;

	for (i = 0; i < n; i++)
		ob_put(&c->ub, iov[i].iov_base, iov[i].iov_len, dl);
	return c->ub.failed ? -1 : 0;
}

/* The codec's output towards the client (the upstream's answer). */
static int
to_client(void *arg, const struct iovec *iov, int n)
{
	struct gwc *c = arg;
	int64_t dl = req_deadline(c);
	int i;

	for (i = 0; i < n; i++)
		ob_put(&c->out, iov[i].iov_base, iov[i].iov_len, dl);
	return c->out.failed ? -1 : 0;
}

/*
 * The head has passed the codec's checks (http/h1.c): route, authorize,
 * build the upstream's head, take an upstream and send it. 0 goes on
 * (a refusal here still reads the body, to keep the connection); -1
 * stops the parse.
 */
static int
on_head(struct h1_req *rq, void *arg)
{
	struct gwc *c = arg;
	struct gw *gw = c->gw;
	const struct h1_field *ex;
	struct route *rt;
	int nex;

	if ((rt = route_find(gw, rq->host, rq->host_len, rq->path)) == NULL) {
		refuse(c, 404, "no_route", "no route for host '%.*s' path "
		    "'%.200s'", (int)rq->host_len, rq->host, rq->path);
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
	ex = h1_req_field(rq, "expect", &nex);
	c->expect100 = ex != NULL && ex->value != NULL &&
	    h1_span_eq(ex->value, ex->vlen, "100-continue") && rq->minor >= 1;
	if (build_upstream_head(c) != 0) {
		refuse(c, 431, "head_too_large", "the request head for the "
		    "upstream is over %d bytes", UH_MAX);
		return -1;
	}
	if (up_get(c, rt) != 0)
		return 0;
	c->ub.io = &c->up.io;
	c->ub.len = 0;
	c->ub.failed = 0;
	c->t_up = net_now_ms();
	ob_put(&c->ub, c->uh.b, c->uh.len, req_deadline(c));
	if (c->expect100) {
		/* authorized: let the client send its body */
		ob_put(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25,
		    req_deadline(c));
		ob_flush(&c->out, req_deadline(c));
	}
	return 0;
}

/* Our own answer: a short JSON body naming the route and the rule. */
void
answer(struct gwc *c)
{
	json_t *o = json_object();
	char *body;
	int64_t dl = req_deadline(c);

	json_object_set_new(o, "error", esc_jstr(c->rq.code));
	if (c->route && c->route->name[0])
		json_object_set_new(o, "route", esc_jstr(c->route->name));
	json_object_set_new(o, "message", esc_jstr(c->rq.msg));
	body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	ob_printf(&c->out, dl, "HTTP/1.1 %d %s\r\nContent-Type: "
	    "application/json\r\nContent-Length: %zu\r\n%s\r\n%s\n", c->rq.status,
	    http_reason(c->rq.status), body ? strlen(body) + 1 : 0, c->rq.keep ? "" :
	    "Connection: close\r\n", body ? body : "");
	free(body);
	ob_flush(&c->out, dl);
	c->rs.body = 0;
}

/* Reads the response to the request sent on c->up and streams it to the
 * client through the codec. 0 done; -1 failed before anything reached
 * the client (the caller answers 502/504, the refusal set); -3 the same
 * with nothing read (a pooled connection may be retried); -2 failed
 * midway (close); -4 bytes after the answer (close). */
static int
relay_response(struct gwc *c, char *buf, size_t bufsz)
{
	struct gw *gw = c->gw;
	int got_any = 0;

	h1_resp_start(&c->rs);
	for (;;) {
		long n;
		size_t used;
		int r;

		/* nothing can have come yet: wait, then read (a read that
		 * would fail with EAGAIN first is one syscall per request) */
		/* the deadline is between two reads (like nginx's
		 * proxy_read_timeout), so a long download is not cut */
		n = !got_any && !io_buffered(&c->up.io) ? io_wait(&c->up.io,
		    POLLIN, req_deadline(c)) : 0;
		if (n == 0)
			n = io_read(&c->up.io, buf, bufsz, req_deadline(c));

		if (n == IO_TIMEOUT || n == IO_ERR) {
			if (c->rs.started)
				return -2;
			if (n == IO_TIMEOUT)
				refuse(c, 504, "upstream_timeout", "route %s: no "
				    "answer from %s within %lld ms",
				    c->route->name, c->route->r->upstream,
				    (long long)gw->l->request_timeout_ms);
			else
				refuse(c, 502, "upstream_error", "route %s: "
				    "reading from %s failed", c->route->name,
				    c->route->r->upstream);
			return got_any ? -1 : -3;
		}
		/* the client connection stays open after this answer? */
		c->rs.keep = c->rq.keep && !__atomic_load_n(gw->env.stopping,
		    __ATOMIC_ACQUIRE);
		r = h1_resp_feed(&c->rs, buf, (size_t)n, &used);
		if (r == 1)
			return used < (size_t)n || c->out.failed ? -4 : 0;
		if (r < 0) {
			if (c->rs.started)
				return -2;
			refuse(c, 502, "upstream_bad_response", "route %s: %s "
			    "sent a malformed response (%s)", c->route->name,
			    c->route->r->upstream, h1_resp_why(&c->rs));
			return -1;
		}
		if (n == 0) {	/* EOF: ends a body read until close */
			if (c->rs.done)
				return 0;
			if (c->rs.started)
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
	h1_req_reset(&c->rq);
	h1_resp_reset(&c->rs);
	c->result = NULL;
	c->expect100 = 0;
	c->uh.len = 0;
	c->uh.fail = 0;
	c->route = NULL;
	c->have_up = c->up_reused = 0;
	c->t_up = 0;
}

/* Waits for the first byte of the next request: 1 data, 0 closed or idle
 * too long, or closed by the loop (for a newcomer at the cap: net counts
 * it; or a drain). */
int
wait_request(struct gwc *c)
{
	int64_t deadline = net_now_ms() + c->gw->env.o->idle_timeout_ms;
	int r = 0;

	if (c->in_len > c->in_off)
		return 1;
	c->in_off = c->in_len = 0;
	net_idle(c->nc, NET_IDLE);
	for (;;) {
		long n;

		/* wait first: a read that would fail with EAGAIN is one
		 * syscall more per request */
		if (!io_buffered(&c->cl) && io_wait(&c->cl, POLLIN,
		    deadline) != 0)
			break;
		n = io_try_read(&c->cl, c->in, IN_SIZE);
		if (n > 0) {
			c->in_len = (size_t)n;
			r = 1;
			break;
		}
		if (n == 0 || n == IO_ERR || (n == MTLS_WANT_WRITE &&
		    io_wait(&c->cl, POLLOUT, deadline) != 0))
			break;
	}
	net_idle(c->nc, NET_BUSY);
	return r;
}

/* One request and its answer. 1 to go on with the connection, 0 to
 * close it. */
int
exchange(struct gwc *c, char *rbuf, size_t rbufsz)
{
	struct gw *gw = c->gw;
	int64_t dl;
	int rv, body_sent = 0;

	exchange_reset(c);
	c->t_req = net_now_ms();
	dl = req_deadline(c);
	/* the head, whole, in c->in; until it is, a newcomer at the cap
	 * may take the connection's place (its wait counted from the
	 * head's start, so a head sent a byte at a time stays old) */
	net_idle(c->nc, NET_EVICTABLE);
	for (;;) {
		size_t have = c->in_len - c->in_off, skip, hlen;
		const char *why;
		long n;
		int st;

		rv = h1_head_scan(c->in + c->in_off, have, gw->l->max_head,
		    &skip, &hlen, &st, &why);
		c->in_off += skip;
		have -= skip;
		if (rv == 1)
			break;
		if (rv < 0) {
			if (st == 431)
				refuse(c, 431, "head_too_large", "request head "
				    "over %zu bytes", gw->l->max_head);
			else
				refuse(c, 400, "bad_request", "%s", why);
			goto refused;
		}
		if (c->in_off > 0) {
			memmove(c->in, c->in + c->in_off, have);
			c->in_off = 0;
			c->in_len = have;
		}
		n = io_read(&c->cl, c->in + c->in_len, IN_SIZE - c->in_len,
		    dl);
		if (net_closed(c->nc))
			return 0;	/* for a newcomer: counted by net */
		if (n <= 0) {
			if (have == 0) {
				net_idle(c->nc, NET_BUSY);
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
	net_idle(c->nc, NET_BUSY);
	c->rq.lim = &gw->lim;
	c->rq.on_head = on_head;
	c->rq.emit = to_upstream;
	c->rq.arg = c;
	h1_req_start(&c->rq);
	/* head, then body, from the buffer and then the socket */
	for (;;) {
		size_t k;
		long n;

		rv = h1_req_feed(&c->rq, c->in + c->in_off,
		    c->in_len - c->in_off, &k);
		c->in_off += k;
		if (rv == 1)
			break;
		if (rv < 0)
			goto refused;
		if (!c->rq.discard && c->ub.failed) {
			refuse(c, 502, "upstream_error", "route %s: sending "
			    "the request to %s failed", c->route->name,
			    c->route->r->upstream);
			c->rq.keep = 0;
			goto refused;
		}
		if (c->in_off == c->in_len)
			c->in_off = c->in_len = 0;
		if (c->ub.len > 0 && !c->rq.discard)
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
			c->rq.keep = 0;
			goto refused;
		}
		c->in_len += (size_t)n;
	}
	if (c->rq.discard)
		goto refused;
	ob_flush(&c->ub, req_deadline(c));
	body_sent = c->rq.body > 0;
	if (c->ub.failed) {
		refuse(c, 502, "upstream_error", "route %s: sending the request "
		    "to %s failed", c->route->name, c->route->r->upstream);
		goto refused;
	}
	c->rs.head_req = strcmp(c->rq.method, "HEAD") == 0;
	c->rs.client_minor = c->rq.minor;
	c->rs.emit = to_client;
	c->rs.arg = c;
	rv = relay_response(c, rbuf, rbufsz);
	if (rv == -3 && c->up_reused && !body_sent) {
		/* a pooled connection the upstream had closed: once more on a
		 * fresh one (no body was consumed, so nothing is lost) */
		struct route *rt = c->route;
		int keep = c->rq.keep;

		up_release(c, 0);
		c->rq.status = 0;
		c->rq.discard = 0;
		c->rq.code[0] = '\0';
		if (up_get(c, rt) != 0) {
			c->rq.keep = keep;
			goto refused;
		}
		c->ub.io = &c->up.io;
		c->ub.len = 0;
		c->ub.failed = 0;
		/* exactly the head built from the checked one (and an empty
		 * chunked body's end), never rebuilt from c->in */
		ob_put(&c->ub, c->uh.b, c->uh.len, req_deadline(c));
		if (c->rq.chunked_out)
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
		up_release(c, h1_resp_reusable(&c->rs));
		access_log(c, c->rs.status);
		return c->rq.keep && !c->rs.close_after && !c->out.failed &&
		    !__atomic_load_n(gw->env.stopping, __ATOMIC_ACQUIRE);
	}
	up_release(c, 0);
	if (rv == -2 || rv == -4 || c->rs.started) {
		c->rq.code[0] ? (void)0 : (void)snprintf(c->rq.code,
		    sizeof(c->rq.code), "%s", rv == -4 ? "upstream_extra_bytes"
		    : "aborted");
		access_log(c, c->rs.status);
		return 0;
	}
 refused:
	net_idle(c->nc, NET_BUSY);
	up_release(c, 0);
	if (__atomic_load_n(gw->env.stopping, __ATOMIC_ACQUIRE))
		c->rq.keep = 0;
	answer(c);
	access_log(c, c->rq.status);
	/* a refused request whose body was not read to its end leaves the
	 * stream at an unknown place: close */
	return c->rq.keep && c->rq.done && !c->out.failed;
}

/* The identities libmtls verified for the peer of <t> into <ids>: 0, or
 * -1 (out of memory; <ids> freed). */
static int
peer_ids(struct mtls *t, struct ids *ids)
{
	size_t i, n = mtls_peer_identity_count(t);
	const char *v;

	for (i = 0; i < n; i++)
		if ((v = mtls_peer_identity(t, i)) == NULL ||
		    ids_add(ids, "", v, strlen(v)) != 0) {
			ids_free(ids);
			return -1;
		}
	return 0;
}

void
conn_run(struct gwc *c)
{
	struct gw *gw = c->gw;
	const struct proxy_opts *o = gw->env.o;
	int64_t deadline;
	struct timespec a, b;
	char *rbuf = NULL;
	int r, ok = 0;

	/* its first byte is here (net waited for it, no TLS object until
	 * then); a newcomer at the cap may still take its place during the
	 * handshake, a drain lets the handshake finish */
	net_idle(c->nc, NET_EVICTABLE);
	if (mtls_accept_socket(c->lp->srv, &c->cl.tls, c->cl.fd) != 0)
		goto out;
	deadline = net_now_ms() + o->handshake_timeout_ms;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		r = mtls_handshake(c->cl.tls);
		if (r == 0 || r == -1)
			break;
		if (io_wait(&c->cl, r == MTLS_WANT_WRITE ? POLLOUT : POLLIN,
		    deadline) != 0) {
			r = -2;
			break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	net_idle(c->nc, NET_BUSY);
	if (net_closed(c->nc))
		goto out;	/* for a newcomer: counted by net */
	if (r == 0) {
		X509 *peer = tls_peer_cert(c->cl.tls);

		ok = 1;
		c->verified = mtls_peer_verified(c->cl.tls);
		c->fail = mtls_fail_code(c->cl.tls);
		/* the identities libmtls verified, not the certificate's
		 * names parsed again: under a federated anchor its DNS, IP
		 * and CN names were dropped (the partner does not vouch
		 * for names in our DNS), and routes and XFCC must not see
		 * them either */
		if (c->verified && peer != NULL &&
		    peer_ids(c->cl.tls, &c->ids) == 0) {
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
		ob_flush(&c->out, net_now_ms() + 1000);
		mtls_close(c->cl.tls);
		log_conn(c, "close", 1, 0);
	}
 out:
	net_idle(c->nc, NET_BUSY);
	free(rbuf);
	free(c->in);
	h1_resp_free(&c->rs);
	free(c->uh.b);
	free(c->xfcc);
	free(c->by);
	ids_free(&c->ids);
	if (c->cl.tls != NULL)
		mtls_free(c->cl.tls);
}

int
gw_start(const struct gw_env *env, struct gw **out, struct mtls_error *err)
{
	struct gw *gw;
	size_t i;
	int k;

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
	gw->lim.max_head = env->l->max_head;
	gw->lim.max_headers = env->l->max_headers;
	gw->lim.max_body = env->l->max_body;
	gw->lim.semicolons_pass = env->l->semicolons_pass;
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
		if (addr_parse(rt->r->upstream, "upstream", &rt->ss,
		    &rt->sslen, err) != 0 ||
		    (rt->idle = calloc((size_t)rt->r->up_idle + 1,
		    sizeof(*rt->idle))) == NULL ||
		    (rt->r->up_tls && route_client(gw, rt, err) != 0))
			goto fail;
	}
	/* a loop per worker: its own SO_REUSEPORT socket and server
	 * context, like the engine's workers */
	for (k = 0; k < gw->nloops; k++)
		if (loop_new(&gw->loops[k], err) != 0)
			goto fail;
	for (k = 0; k < gw->nloops; k++)
		if (net_loop_start(gw->loops[k].nl, err) != 0) {
			__atomic_store_n(env->stopping, 1, __ATOMIC_RELEASE);
			goto fail;
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
		net_loop_free(gw->loops[k].nl);	/* stops, joins */
		mtls_free(gw->loops[k].srv);
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
