/*
 * HTTP/1.1 requests in and responses out, for ca serve and the proxy's
 * admin endpoint (the gateway has its own codec without I/O, h1.h).
 * Parsing is Node's http_parser (Debian libhttp-parser), which rejects
 * the request-smuggling shapes (conflicting Content-Length and
 * Transfer-Encoding, bad chunking, bare CR); this file adds limits, the
 * gateway's head grammar (http_head_check: no obs-fold, no whitespace
 * before a colon), one Content-Length or Transfer-Encoding at most and
 * "chunked" as the only transfer coding, and keeps what a handler needs.
 */
#ifndef MTLS_HTTP_H
#define MTLS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define HTTP_MAX_HEADERS	64

struct http_header {
	char	*name;		/* lower case */
	char	*value;
};

struct http_req {
	http_parser		 p;
	/* limits */
	size_t			 max_head, max_body;
	/* what was parsed */
	char			 method[16];
	char			*url;		/* path and query, as sent */
	size_t			 url_len;
	struct http_header	 h[HTTP_MAX_HEADERS];
	size_t			 nh;
	uint8_t			*body;
	size_t			 body_len;
	int			 keep_alive;
	/* parser state */
	size_t			 head_bytes;
	char			*raw;		/* the head as received, until */
	size_t			 raw_len;	/* checked (norm.c's grammar) */
	int			 head_ok;
	int			 in_field, complete;
	int			 status;	/* on error: 400, 413, 431 */
	const char		*why;
};

/* Ready for a request (call again between requests on one connection). */
void	 http_req_init(struct http_req *, size_t max_head, size_t max_body);
void	 http_req_free(struct http_req *);
/*
 * Feeds bytes; *used says how many were consumed. Returns 1 when a whole
 * request is in, 0 when more is needed, -1 when it is refused (r->status
 * and r->why say why: 400 malformed or smuggling, 413 body too large, 431
 * head too large). Bytes after a complete request are left unconsumed
 * (pipelining).
 */
int	 http_req_feed(struct http_req *, const char *data, size_t len,
	    size_t *used);
/* The value of header <name> (lower case), or NULL. */
const char *http_req_header(const struct http_req *, const char *name);
/* The path without its query, in <buf>. */
void	 http_req_path(const struct http_req *, char *buf, size_t len);

/* A complete response: status line, Date, Content-Type, Content-Length,
 * Connection, then the body.
 * malloc'd into *out. */
int	 http_response(char **out, size_t *out_len, int status,
	    const char *ctype, const void *body, size_t body_len,
	    int keep_alive);
/* http_response() with <headers> (NULL, or "Name: value\r\n" lines of
 * ours, at most 1 KiB) after Content-Type. */
int	 http_response_h(char **out, size_t *out_len, int status,
	    const char *ctype, const char *headers, const void *body,
	    size_t body_len, int keep_alive);
const char *http_reason(int status);

/* ---- norm.c: the request head's grammar and normal forms (no I/O) ---- */
/*
 * Checks the head <h>[0..n) line by line, up to its empty line: CRLF line
 * ends only (no bare CR or LF), no control bytes but HTAB, no obs-fold; the
 * request line is exactly METHOD SP request-target SP HTTP/d.d with every
 * target byte in RFC 9112/3986's grammar (no whitespace, control,
 * non-ASCII, '#', '\\', '"', '<', ...); a field line starts with a token
 * and its colon with no whitespace before it. A line not yet ended is only
 * checked for control bytes. NULL when acceptable, else a static reason.
 */
const char *http_head_check(const char *h, size_t n);
/*
 * Normalizes the origin-form target <t>[0..n) into <out> (outsz bytes, at
 * least n + 1 suffice): the path with percent-encoded unreserved bytes
 * decoded, other escapes in upper case, dot segments removed (RFC 3986
 * 6.2.2); then the query exactly as received. *path_len is the path's
 * length in <out>. Returns 0, or 400 (414 when n >= outsz) with a static
 * reason in *why: not origin-form, a byte outside the grammar, a bad or
 * an encoded '/', '\\' or NUL escape, a backslash, an empty segment
 * ("//"), ".." above the root.
 */
int	 http_target_normalize(const char *t, size_t n, char *out,
	    size_t outsz, size_t *path_len, const char **why);
/*
 * Normalizes the Host value <h>[0..n) (already trimmed) into <out>:
 * lower case, one trailing dot removed, then ":port" as sent. *host_len
 * is the length without the port. An empty value gives "". -1 with a
 * static reason in *why for an escape, a character outside letters,
 * digits, '-', '.', '_' (or hex, ':', '.' in "[...]"), an empty label,
 * a bad port, more than 261 bytes.
 */
int	 http_host_normalize(const char *h, size_t n, char *out, size_t outsz,
	    size_t *host_len, const char **why);
/* 1 when the field name <name>[0..n) is <lit> (lower case, with '-')
 * after case folding and mapping '_' to '-' (what CGI, WSGI and PHP do). */
int	 http_name_folded_eq(const char *name, size_t n, const char *lit);
/* A bounded, escaped copy for messages: at most <max> bytes of <p>[0..n)
 * into <dst> (always NUL-terminated) under the text rule of escape.c,
 * quotes as \xHH too, "..." when cut. Returns its length. */
size_t	 http_esc(char *dst, size_t dstsz, const char *p, size_t n,
	    size_t max);
/* The value of hex digit <c>, or -1. */
int	 http_hexval(unsigned char c);
/* 1 when <s> is visible ASCII only (0x21-0x7e; and SP when <allow_sp>). */
int	 http_value_visible(const char *s, int allow_sp);
/* Envoy's XFCC element KEY=VALUE into <dst>: the value in '"' when it has
 * ',', ';', '=', '"' or a space (or <force_quote>), '"' and '\\' escaped
 * with '\\'. Returns its length, 0 when <dst> is too small. */
size_t	 http_xfcc_put(char *dst, size_t dstsz, const char *key,
	    const char *val, int force_quote);

/* ---- fetch.c: one HTTP request (libcurl) ---- */
/* GETs <url> (https only), trusting the roots in <cainfo>; 0 with the body
 * (at most <max> bytes) in *out, or -1 with <err> (connection, TLS, a
 * status other than 200). */
int	 http_fetch(const char *url, const char *cainfo, long timeout_s,
	    size_t max, uint8_t **out, size_t *out_len, char *err,
	    size_t err_len);
/* POSTs <body> as <ctype> to <url> (http or https); as http_fetch. */
int	 http_post(const char *url, const char *cainfo, const char *ctype,
	    const uint8_t *body, size_t body_len, long timeout_s, size_t max,
	    uint8_t **out, size_t *out_len, char *err, size_t err_len);

#endif
