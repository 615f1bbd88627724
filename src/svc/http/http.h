/*
 * HTTP/1.1 requests in and responses out, for the services that speak
 * HTTP (ca serve, and the gateway mode later). Parsing is Node's
 * http_parser (Debian libhttp-parser), which rejects the request-smuggling
 * shapes (conflicting Content-Length and Transfer-Encoding, bad chunking,
 * bare CR); this file adds limits and keeps what a handler needs.
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

/* A complete response: status line, Content-Type, Content-Length,
 * Connection, then the body. malloc'd into *out. */
int	 http_response(char **out, size_t *out_len, int status,
	    const char *ctype, const void *body, size_t body_len,
	    int keep_alive);
const char *http_reason(int status);

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
