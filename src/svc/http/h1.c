/*
 * The gateway's HTTP/1.1 codec (h1.h): no I/O here. http_parser does the
 * framing (Content-Length, chunked); http_head_check() (norm.c) adds the
 * grammar it lets through and a gateway must not: bare CR or LF,
 * obs-fold, control bytes, bytes outside the request-target grammar,
 * whitespace before a field's colon. The target and Host are normalized
 * once (norm.c); the caller routes on them and forwards them as routed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/h1.h"
#include "http/http.h"

/* ---- the bounded buffer ---- */

void
h1_buf_put(struct h1_buf *b, const void *p, size_t n)
{
	if (b->fail)
		return;
	if (b->len + n > b->max) {
		b->fail = 1;
		return;
	}
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		char *nb;

		while (nc < b->len + n)
			nc *= 2;
		if ((nb = realloc(b->b, nc)) == NULL) {
			b->fail = 1;
			return;
		}
		b->b = nb;
		b->cap = nc;
	}
	memcpy(b->b + b->len, p, n);
	b->len += n;
}

void
h1_buf_line(struct h1_buf *b, const char *name, const char *v, size_t vn)
{
	h1_buf_put(b, name, strlen(name));
	h1_buf_put(b, ": ", 2);
	h1_buf_put(b, v, vn);
	h1_buf_put(b, "\r\n", 2);
	b->lines++;
}

/* ---- fields ---- */

int
h1_span_eq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

void
h1_trim(const char **p, size_t *n)
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

		h1_trim(&t, &tn);
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
 * is_hop): the caller sets Host (normalized), X-Forwarded-For and -Proto;
 * the rest is dropped. */
static int
is_claim(const char *n, size_t len)
{
	static const char *const claim[] = { "host", "forwarded",
	    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
	    "x-forwarded-port", "x-real-ip", NULL };

	return name_in(claim, n, len);
}

/* ---- the request head ---- */

int
h1_head_scan(const char *b, size_t len, size_t max_head, size_t *skip,
    size_t *hlen, int *status, const char **why)
{
	const char *hend;

	/* RFC 9112 2.2: empty lines before a request line are ignored.
	 * Dropped here, so the head checked is the one http_parser reads
	 * (it skips them on its own: a "\r\n\r\n" first would be an empty
	 * head, checked, and the request after it parsed unchecked) */
	*skip = 0;
	while (len >= 2 && b[0] == '\r' && b[1] == '\n') {
		b += 2;
		len -= 2;
		*skip += 2;
	}
	if ((hend = memmem(b, len, "\r\n\r\n", 4)) != NULL) {
		*hlen = (size_t)(hend - b) + 4;
		if ((*why = http_head_check(b, *hlen)) != NULL) {
			*status = 400;
			return -1;
		}
		return 1;
	}
	if ((*why = http_head_check(b, len)) != NULL) {
		*status = 400;
		return -1;
	}
	if (len >= max_head) {
		*status = 431;
		*why = "request head too large";
		return -1;
	}
	return 0;
}

void
h1_req_refuse(struct h1_req *r, int status, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	r->status = status;
	snprintf(r->code, sizeof(r->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->discard = 1;
}

const struct h1_field *
h1_req_field(const struct h1_req *r, const char *name, int *count)
{
	const struct h1_field *hit = NULL;
	size_t i;

	*count = 0;
	for (i = 0; i < r->nf; i++)
		if (h1_span_eq(r->f[i].name, r->f[i].nlen, name)) {
			if (hit == NULL)
				hit = &r->f[i];
			(*count)++;
		}
	return hit;
}

static struct h1_req *
req_of(http_parser *p)
{
	return p->data;
}

static int
rq_url(http_parser *p, const char *at, size_t n)
{
	struct h1_req *r = req_of(p);

	if (r->url == NULL)
		r->url = at;
	r->url_len += n;
	return 0;
}

static int
rq_field(http_parser *p, const char *at, size_t n)
{
	struct h1_req *r = req_of(p);

	/* after the head: a chunked body's trailer fields. Never checked as
	 * a head is, and the body is re-framed for the upstream: dropped */
	if (r->head_done)
		return 0;
	/* the whole head is parsed in one call, so each field comes in one
	 * callback (an empty value gets its own, of length 0) */
	if (r->nf == r->lim->max_headers || r->nf == H1_MAX_FIELDS) {
		h1_req_refuse(r, 431, "too_many_headers", "more than %zu "
		    "header fields", r->nf);
		return -1;
	}
	r->f[r->nf].name = at;
	r->f[r->nf].nlen = n;
	r->f[r->nf].value = NULL;
	r->f[r->nf].vlen = 0;
	r->nf++;
	return 0;
}

static int
rq_value(http_parser *p, const char *at, size_t n)
{
	struct h1_req *r = req_of(p);
	struct h1_field *f;

	if (r->head_done)
		return 0;	/* a trailer: dropped (rq_field) */
	if (r->nf == 0)
		return -1;
	f = &r->f[r->nf - 1];
	if (f->value == NULL)
		f->value = at;
	f->vlen += n;
	return 0;
}

/* The head's checks, in the order a refusal is chosen. 0, or -1 with the
 * refusal set. */
static int
head_check(struct h1_req *r, http_parser *p)
{
	const struct h1_field *host, *te;
	const char *why, *hv;
	size_t hl, plen;
	int nhost, nte, ncl, st;

	host = h1_req_field(r, "host", &nhost);
	te = h1_req_field(r, "transfer-encoding", &nte);
	(void)h1_req_field(r, "content-length", &ncl);
	if (p->http_major != 1) {
		h1_req_refuse(r, 400, "bad_request", "HTTP/%d.%d is not "
		    "HTTP/1.x", p->http_major, p->http_minor);
		return -1;
	}
	if (r->url_len >= sizeof(r->path)) {
		h1_req_refuse(r, 414, "uri_too_long", "the request target is "
		    "longer than %zu bytes", sizeof(r->path) - 1);
		return -1;
	}
	/* framing: exactly one way to know where the body ends */
	if (nte > 0 && ncl > 0) {
		h1_req_refuse(r, 400, "bad_request", "both Transfer-Encoding "
		    "and Content-Length (request smuggling shape)");
		return -1;
	}
	if (nte > 1 || ncl > 1) {
		h1_req_refuse(r, 400, "bad_request", "repeated %s header",
		    nte > 1 ? "Transfer-Encoding" : "Content-Length");
		return -1;
	}
	if (te != NULL) {
		const char *v = te->value ? te->value : "";
		size_t vn = te->vlen;

		h1_trim(&v, &vn);
		if (!h1_span_eq(v, vn, "chunked") || !(p->flags & F_CHUNKED)) {
			char esc[200];

			/* the value is a span in the input buffer, not a
			 * string: a bounded, escaped copy of it only */
			http_esc(esc, sizeof(esc), v, vn, 40);
			h1_req_refuse(r, 400, "bad_request", "Transfer-Encoding "
			    "'%s' (only 'chunked' is accepted)", esc);
			return -1;
		}
	}
	if (nhost != 1 && (p->http_minor >= 1 || nhost > 1)) {
		h1_req_refuse(r, 400, "bad_request", nhost ? "repeated Host "
		    "header" : "no Host header");
		return -1;
	}
	if (p->method == HTTP_CONNECT || p->upgrade) {
		h1_req_refuse(r, 405, "method_not_allowed", "%s is not proxied",
		    p->method == HTTP_CONNECT ? "CONNECT" : "Upgrade");
		return -1;
	}
	if ((p->flags & F_CONTENTLENGTH) &&
	    p->content_length > (uint64_t)r->lim->max_body) {
		h1_req_refuse(r, 413, "body_too_large", "Content-Length %llu "
		    "is over the limit of %lld bytes",
		    (unsigned long long)p->content_length,
		    (long long)r->lim->max_body);
		return -1;
	}
	/* one normalization, before routing; the upstream gets exactly
	 * what was routed (docs/security/gateway.md) */
	if ((st = http_target_normalize(r->url ? r->url : "", r->url_len,
	    r->target, sizeof(r->target), &plen, &why)) != 0) {
		h1_req_refuse(r, st, st == 414 ? "uri_too_long" : "bad_request",
		    "%s", why);
		return -1;
	}
	snprintf(r->path, sizeof(r->path), "%.*s", (int)plen, r->target);
	/* Tomcat, Jetty and Spring read ';' in a path as path parameters
	 * ("/admin;x=1" is /admin, "/pub/..;/admin" is /admin), which
	 * routing on prefixes cannot see: refused unless the listener says
	 * its upstreams take them as data (path_semicolons = pass) */
	if (!r->lim->semicolons_pass && memchr(r->path, ';', plen) != NULL) {
		h1_req_refuse(r, 400, "bad_request", "';' in the path (path "
		    "parameters; path_semicolons = pass to forward them)");
		return -1;
	}
	hv = host && host->value ? host->value : "";
	hl = host ? host->vlen : 0;
	h1_trim(&hv, &hl);
	if (http_host_normalize(hv, hl, r->host, sizeof(r->host), &hl,
	    &why) != 0) {
		h1_req_refuse(r, 400, "bad_request", "%s", why);
		return -1;
	}
	r->host_len = hl;
	return 0;
}

static int
rq_headers_complete(http_parser *p)
{
	struct h1_req *r = req_of(p);
	size_t plen;
	int rv;

	r->head_done = 1;
	r->minor = p->http_minor;
	r->keep = http_should_keep_alive(p);
	snprintf(r->method, sizeof(r->method), "%s",
	    http_method_str((enum http_method)p->method));
	/* the raw path, for the log until it is normalized: r->url is a
	 * span of the input, not a string (strcspn ran past its end) */
	for (plen = 0; r->url != NULL && plen < r->url_len &&
	    r->url[plen] != '?' && r->url[plen] != '#'; plen++)
		;
	snprintf(r->path, sizeof(r->path), "%.*s", (int)(plen <
	    sizeof(r->path) ? plen : sizeof(r->path) - 1), r->url ? r->url :
	    "");
	if (head_check(r, p) != 0)
		return -1;
	rv = r->on_head(r, r->arg);
	/* the fields and the target are spans of the caller's buffer, which
	 * reading the body overwrites: nothing may read them from here on */
	r->nf = 0;
	r->url = NULL;
	r->url_len = 0;
	return rv;
}

/* A body piece on its way: as it is, or as one chunk. */
static int
body_put(h1_emit_fn emit, void *arg, int chunked, const char *at, size_t n)
{
	struct iovec iov[3];
	char sz[24];
	int k;

	if (!chunked) {
		iov[0].iov_base = (void *)(uintptr_t)at;
		iov[0].iov_len = n;
		return emit(arg, iov, 1);
	}
	k = snprintf(sz, sizeof(sz), "%zx\r\n", n);
	iov[0].iov_base = sz;
	iov[0].iov_len = (size_t)k;
	iov[1].iov_base = (void *)(uintptr_t)at;
	iov[1].iov_len = n;
	iov[2].iov_base = (void *)(uintptr_t)"\r\n";
	iov[2].iov_len = 2;
	return emit(arg, iov, 3);
}

/* The last chunk, no trailer. */
static void
body_end(h1_emit_fn emit, void *arg)
{
	struct iovec iov = { (void *)(uintptr_t)"0\r\n\r\n", 5 };

	(void)emit(arg, &iov, 1);
}

static int
rq_body(http_parser *p, const char *at, size_t n)
{
	struct h1_req *r = req_of(p);

	r->body += n;
	if (r->body > (uint64_t)r->lim->max_body) {
		if (r->status == 0 || r->status == 403 || r->status == 404) {
			r->status = 0;
			h1_req_refuse(r, 413, "body_too_large", "request body "
			    "over the limit of %lld bytes",
			    (long long)r->lim->max_body);
		}
		return -1;
	}
	if (!r->discard)
		(void)body_put(r->emit, r->arg, r->chunked_out, at, n);
	return 0;
}

static int
rq_complete(http_parser *p)
{
	struct h1_req *r = req_of(p);

	r->done = 1;
	if (!r->discard && r->chunked_out)
		body_end(r->emit, r->arg);
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

void
h1_req_reset(struct h1_req *r)
{
	r->nf = 0;
	r->url = NULL;
	r->url_len = 0;
	r->method[0] = r->path[0] = r->target[0] = r->host[0] = '\0';
	r->host_len = 0;
	r->done = r->head_done = r->keep = 0;
	r->status = 0;
	r->code[0] = r->msg[0] = '\0';
	r->discard = r->chunked_out = 0;
	r->body = 0;
}

void
h1_req_start(struct h1_req *r)
{
	http_parser_init(&r->p, HTTP_REQUEST);
	r->p.data = r;
}

int
h1_req_feed(struct h1_req *r, const char *b, size_t len, size_t *used)
{
	enum http_errno e;

	*used = http_parser_execute(&r->p, &rq_settings, b, len);
	if (*used > len)
		*used = len;	/* (http_parser's 1 at the end of stream) */
	e = HTTP_PARSER_ERRNO(&r->p);
	if (e == HPE_PAUSED) {
		http_parser_pause(&r->p, 0);
		return 1;
	}
	if (e != HPE_OK) {
		if (r->status == 0)
			h1_req_refuse(r, 400, "bad_request", "%s",
			    http_errno_description(e));
		r->keep = 0;	/* where the next request starts is not
				 * known */
		return -1;
	}
	return 0;
}

/* ---- the head for the upstream ---- */

void
h1_req_line(const struct h1_req *r, struct h1_buf *out)
{
	/* exactly the target that was routed (normalized) */
	h1_buf_put(out, r->method, strlen(r->method));
	h1_buf_put(out, " ", 1);
	h1_buf_put(out, r->target, strlen(r->target));
	h1_buf_put(out, " HTTP/1.1\r\n", 11);
}

void
h1_req_fields(const struct h1_req *r, int underscores_pass,
    struct h1_buf *out)
{
	const struct h1_field *conn;
	int n;
	size_t i;

	conn = h1_req_field(r, "connection", &n);
	for (i = 0; i < r->nf; i++) {
		const struct h1_field *f = &r->f[i];

		if (is_hop(f->name, f->nlen) || is_claim(f->name, f->nlen) ||
		    (conn != NULL && conn_lists(conn->value, conn->vlen,
		    f->name, f->nlen)))
			continue;
		/* nginx's underscores_in_headers off: a name with '_' is
		 * dropped unless the listener passes them */
		if (!underscores_pass && memchr(f->name, '_', f->nlen) != NULL)
			continue;
		h1_buf_put(out, f->name, f->nlen);
		h1_buf_put(out, ": ", 2);
		h1_buf_put(out, f->value ? f->value : "", f->vlen);
		h1_buf_put(out, "\r\n", 2);
		out->lines++;
	}
}

void
h1_req_framing(struct h1_req *r, struct h1_buf *out)
{
	if (r->p.flags & F_CHUNKED) {
		r->chunked_out = 1;
		h1_buf_line(out, "Transfer-Encoding", "chunked", 7);
	} else if (r->p.flags & F_CONTENTLENGTH) {
		char cl[24];
		int n = snprintf(cl, sizeof(cl), "%llu",
		    (unsigned long long)r->p.content_length);

		h1_buf_line(out, "Content-Length", cl, (size_t)n);
	}
}

/* ---- the response ---- */

static struct h1_resp *
resp_of(http_parser *p)
{
	return p->data;
}

static int
rh_add(struct h1_resp *r, const char *at, size_t n, int new_item)
{
	if (r->rh_len + n + 2 > H1_RESP_HEAD_MAX) {
		r->fail = 1;
		return -1;
	}
	if (r->rh_len + n + 2 > r->rh_cap) {
		size_t nc = (r->rh_len + n + 2) * 2;
		char *nb = realloc(r->rh, nc);

		if (nb == NULL)
			return -1;
		r->rh = nb;
		r->rh_cap = nc;
	}
	if (new_item && r->rh_len > 0)
		r->rh[r->rh_len++] = '\0';
	memcpy(r->rh + r->rh_len, at, n);
	r->rh_len += n;
	r->rh[r->rh_len] = '\0';
	return 0;
}

static int
rs_status(http_parser *p, const char *at, size_t n)
{
	struct h1_resp *r = resp_of(p);
	size_t have = strlen(r->reason);

	if (have + n >= sizeof(r->reason))
		n = sizeof(r->reason) - 1 - have;
	memcpy(r->reason + have, at, n);
	r->reason[have + n] = '\0';
	return 0;
}

static int
rs_field(http_parser *p, const char *at, size_t n)
{
	struct h1_resp *r = resp_of(p);
	int start = r->rh_in_value || r->rh_len == 0;

	/* NUL separates the kept fields: one inside a field would pair a
	 * value's tail with the next name */
	if (memchr(at, '\0', n) != NULL) {
		r->fail = 2;
		return -1;
	}
	r->rh_in_value = 0;
	return rh_add(r, at, n, start);
}

static int
rs_value(http_parser *p, const char *at, size_t n)
{
	struct h1_resp *r = resp_of(p);
	int start = !r->rh_in_value;

	if (memchr(at, '\0', n) != NULL) {
		r->fail = 2;
		return -1;
	}
	r->rh_in_value = 1;
	return rh_add(r, at, n, start);
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

/* The head for the client, in pieces of at most HEAD_IOV, emitted when
 * full and at the end (one call for a head of up to 14 fields). */
#define HEAD_IOV	64

struct head_out {
	struct h1_resp	*r;
	struct iovec	 iov[HEAD_IOV];
	int		 n;
};

static void
ho_flush(struct head_out *h)
{
	if (h->n > 0)
		(void)h->r->emit(h->r->arg, h->iov, h->n);
	h->n = 0;
}

static void
ho_put(struct head_out *h, const void *p, size_t n)
{
	if (h->n == HEAD_IOV)
		ho_flush(h);
	h->iov[h->n].iov_base = (void *)(uintptr_t)p;
	h->iov[h->n].iov_len = n;
	h->n++;
}

static int
rs_headers_complete(http_parser *p)
{
	struct h1_resp *r = resp_of(p);
	struct head_out h;
	const char *s, *end, *connv = NULL;
	char sl[128], cl[48];
	size_t connn = 0;
	int no_body, k;

	r->status = p->status_code;
	if (p->status_code < 200)
		return 0;	/* 1xx: dropped; the final answer follows */
	end = r->rh != NULL ? r->rh + r->rh_len : NULL;
	/* what we pass on must not carry a CR or another control byte
	 * (http_parser lets a bare CR through): it could split the head we
	 * write to the client */
	if (has_ctl(r->reason, strlen(r->reason)) ||
	    (r->rh != NULL && has_ctl(r->rh, r->rh_len))) {
		r->fail = 2;
		return -1;
	}
	/* the fields alternate name, value, NUL-separated */
	for (s = r->rh; s != NULL && s < end;) {
		const char *v = s + strlen(s) + 1;

		if (v >= end)
			break;
		if (strcasecmp(s, "connection") == 0) {
			connv = v;
			connn = strlen(v);
		}
		s = v + strlen(v) + 1;
	}
	no_body = r->head_req || p->status_code == 204 ||
	    p->status_code == 304;
	h.r = r;
	h.n = 0;
	/* reason: at most 63 bytes; the line fits */
	k = snprintf(sl, sizeof(sl), "HTTP/1.1 %d %s\r\n", p->status_code,
	    r->reason[0] ? r->reason : "Status");
	ho_put(&h, sl, (size_t)k);
	for (s = r->rh; s != NULL && s < end;) {
		const char *v = s + strlen(s) + 1;
		size_t nl = strlen(s);

		if (v >= end)
			break;
		if (!(is_hop(s, nl) && !(no_body && strcasecmp(s,
		    "content-length") == 0)) && !(connv != NULL &&
		    conn_lists(connv, connn, s, nl))) {
			/* any length (H1_RESP_HEAD_MAX in all), whole */
			ho_put(&h, s, nl);
			ho_put(&h, ": ", 2);
			ho_put(&h, v, strlen(v));
			ho_put(&h, "\r\n", 2);
			r->lines++;
		}
		s = v + strlen(v) + 1;
	}
	if (!no_body) {
		if (p->flags & F_CONTENTLENGTH) {
			k = snprintf(cl, sizeof(cl), "Content-Length: %llu\r\n",
			    (unsigned long long)p->content_length);
			ho_put(&h, cl, (size_t)k);
			r->lines++;
		} else if (r->client_minor >= 1) {
			r->rechunk = 1;
			ho_put(&h, "Transfer-Encoding: chunked\r\n", 28);
			r->lines++;
		} else
			r->close_after = 1;	/* HTTP/1.0: ends at close */
	}
	if (!r->keep || r->close_after) {
		ho_put(&h, "Connection: close\r\n", 19);
		r->lines++;
	}
	ho_put(&h, "\r\n", 2);
	ho_flush(&h);
	r->started = 1;
	return r->head_req ? 1 : 0;
}

static int
rs_body(http_parser *p, const char *at, size_t n)
{
	struct h1_resp *r = resp_of(p);

	r->body += n;
	return body_put(r->emit, r->arg, r->rechunk, at, n) != 0 ? -1 : 0;
}

static int
rs_complete(http_parser *p)
{
	struct h1_resp *r = resp_of(p);

	if (r->status < 200) {
		r->restart = 1;
	} else {
		if (r->rechunk)
			body_end(r->emit, r->arg);
		r->done = 1;
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

void
h1_resp_reset(struct h1_resp *r)
{
	r->head_req = r->status = r->started = r->done = 0;
	r->restart = r->rechunk = r->close_after = 0;
	r->fail = 0;
	r->body = 0;
}

void
h1_resp_start(struct h1_resp *r)
{
	http_parser_init(&r->p, HTTP_RESPONSE);
	r->p.data = r;
	r->rh_len = 0;
	r->rh_in_value = 0;
	r->lines = 0;
	r->reason[0] = '\0';
}

int
h1_resp_feed(struct h1_resp *r, const char *b, size_t len, size_t *used)
{
	size_t off = 0;

	for (;;) {
		size_t k = http_parser_execute(&r->p, &rs_settings, b + off,
		    len - off);
		enum http_errno e = HTTP_PARSER_ERRNO(&r->p);

		off += k;
		/* at the end of stream (len 0) http_parser says 1 for an
		 * error: never more than was given */
		*used = off < len ? off : len;
		if (e == HPE_PAUSED) {
			http_parser_pause(&r->p, 0);
			if (r->restart) {	/* after a 1xx */
				r->restart = 0;
				http_parser_init(&r->p, HTTP_RESPONSE);
				r->rh_len = 0;
				r->reason[0] = '\0';
				continue;
			}
			if (r->done)
				return 1;
		} else if (e != HPE_OK)
			return -1;
		return 0;
	}
}

const char *
h1_resp_why(const struct h1_resp *r)
{
	return r->fail == 2 ? "control character in the head" : r->fail ?
	    "head too large" : http_errno_description(HTTP_PARSER_ERRNO(&r->p));
}

int
h1_resp_reusable(const struct h1_resp *r)
{
	return http_should_keep_alive(&r->p) && !r->close_after;
}

void
h1_resp_free(struct h1_resp *r)
{
	free(r->rh);
	r->rh = NULL;
	r->rh_len = r->rh_cap = 0;
}
