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
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
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

	c->status = status;
	snprintf(c->err_code, sizeof(c->err_code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
	va_end(ap);
	c->discard = 1;
}

/* ---- the request parser's callbacks ---- */

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
	c->t_up = net_now_ms();
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

/* Our own answer: a short JSON body naming the route and the rule. */
void
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

static int
wait_request1(struct gwc *c)
{
	int64_t deadline = net_now_ms() + c->gw->env.o->idle_timeout_ms;

	for (;;) {
		long r;
		int64_t slice = net_now_ms() + 250;
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
		    __ATOMIC_ACQUIRE) || net_now_ms() >= deadline)
			return 0;
	}
}

/* Waits for the first byte of the next request: 1 data, 0 closed or idle
 * too long or draining or closed for a newcomer at the cap. */
int
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
int
exchange(struct gwc *c, char *rbuf, size_t rbufsz)
{
	struct gw *gw = c->gw;
	int64_t dl;
	char *hend;
	size_t hlen;
	int rv, body_sent = 0;

	exchange_reset(c);
	c->t_req = net_now_ms();
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

void
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
	deadline = net_now_ms() + o->handshake_timeout_ms;
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
		X509 *peer = SSL_get0_peer_certificate(c->cl.tls->ssl);
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
		error_fail(&c->cl.tls->err, MTLS_FAIL_HANDSHAKE_TIMEOUT, "no "
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
