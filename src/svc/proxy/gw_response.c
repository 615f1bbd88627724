/*
 * The upstream's answer (gw_int.h): parsed with http_parser, its head
 * checked and filtered (hop-by-hop fields out, no control bytes), re-framed
 * for the client (Content-Length, chunked, or close for HTTP/1.0) and
 * streamed on.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "proxy/gw_int.h"

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

/* Reads the response to the request sent on c->up and streams it to the
 * client. 0 done; -1 failed before anything reached the client (the
 * caller answers 502/504, c->status set); -2 failed midway (close). */
int
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
