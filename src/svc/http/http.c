/* HTTP/1.1 requests through http_parser, with limits; responses. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/h1.h"
#include "http/http.h"

static int
grow(char **p, size_t *len, const char *at, size_t n)
{
	char *np = realloc(*p, *len + n + 1);

	if (np == NULL)
		return -1;
	memcpy(np + *len, at, n);
	*len += n;
	np[*len] = '\0';
	*p = np;
	return 0;
}

static struct http_req *
req_of(http_parser *p)
{
	return p->data;
}

static int
head_limit(struct http_req *r, size_t n)
{
	r->head_bytes += n;
	if (r->head_bytes > r->max_head) {
		r->status = 431;
		r->why = "request head too large";
		return -1;
	}
	return 0;
}

static int
on_url(http_parser *p, const char *at, size_t n)
{
	struct http_req *r = req_of(p);

	if (head_limit(r, n) != 0 || grow(&r->url, &r->url_len, at, n) != 0)
		return -1;
	return 0;
}

static int
on_field(http_parser *p, const char *at, size_t n)
{
	struct http_req *r = req_of(p);
	size_t len, i;

	if (head_limit(r, n) != 0)
		return -1;
	if (!r->in_field) {	/* a new field (else its name continues) */
		if (r->nh == HTTP_MAX_HEADERS) {
			r->status = 431;
			r->why = "too many header fields";
			return -1;
		}
		r->nh++;
		r->in_field = 1;
	}
	len = r->h[r->nh - 1].name ? strlen(r->h[r->nh - 1].name) : 0;
	if (grow(&r->h[r->nh - 1].name, &len, at, n) != 0)
		return -1;
	for (i = 0; r->h[r->nh - 1].name[i]; i++)
		r->h[r->nh - 1].name[i] = (char)tolower(
		    (unsigned char)r->h[r->nh - 1].name[i]);
	return 0;
}

static int
on_value(http_parser *p, const char *at, size_t n)
{
	struct http_req *r = req_of(p);
	size_t len;

	if (head_limit(r, n) != 0 || r->nh == 0)
		return -1;
	r->in_field = 0;
	len = r->h[r->nh - 1].value ? strlen(r->h[r->nh - 1].value) : 0;
	return grow(&r->h[r->nh - 1].value, &len, at, n);
}

static int
on_headers_complete(http_parser *p)
{
	struct http_req *r = req_of(p);

	size_t i, nte = 0, ncl = 0;
	const char *te = NULL;

	/* framing: one way to know where the body ends, as the gateway
	 * (h1.c) decides it; http_parser takes "gzip, chunked" as chunked */
	for (i = 0; i < r->nh; i++) {
		if (r->h[i].name == NULL)
			continue;
		if (strcmp(r->h[i].name, "transfer-encoding") == 0) {
			nte++;
			te = r->h[i].value ? r->h[i].value : "";
		} else if (strcmp(r->h[i].name, "content-length") == 0)
			ncl++;
	}
	if (nte > 1 || ncl > 1) {
		r->status = 400;
		r->why = nte > 1 ? "repeated Transfer-Encoding header" :
		    "repeated Content-Length header";
		return -1;
	}
	if (te != NULL) {
		size_t n;

		while (*te == ' ' || *te == '\t')
			te++;
		n = strlen(te);
		while (n > 0 && (te[n - 1] == ' ' || te[n - 1] == '\t'))
			n--;
		if (n != 7 || strncasecmp(te, "chunked", 7) != 0) {
			r->status = 400;
			r->why = "Transfer-Encoding other than 'chunked'";
			return -1;
		}
	}
	snprintf(r->method, sizeof(r->method), "%s",
	    http_method_str((enum http_method)p->method));
	r->keep_alive = http_should_keep_alive(p);
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body) {
		r->status = 413;
		r->why = "request body too large";
		return -1;
	}
	return 0;
}

static int
on_body(http_parser *p, const char *at, size_t n)
{
	struct http_req *r = req_of(p);

	if (r->body_len + n > r->max_body) {
		r->status = 413;
		r->why = "request body too large";
		return -1;
	}
	return grow((char **)&r->body, &r->body_len, at, n);
}

static int
on_complete(http_parser *p)
{
	struct http_req *r = req_of(p);

	r->complete = 1;
	http_parser_pause(p, 1);	/* one request at a time */
	return 0;
}

static const http_parser_settings settings = {
	.on_url = on_url,
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_complete,
};

/* The head's grammar, checked before http_parser reads it (it accepts
 * obs-fold and whitespace before a colon): the bytes are kept until the
 * head's empty line has arrived and passed, at most max_head of them. */
static int
head_scan(struct http_req *r, const char *data, size_t len)
{
	size_t room = r->max_head + 4 - r->raw_len, skip, hlen;
	const char *why = NULL;
	int status = 0, rv;
	char *np;

	if (len > room)
		len = room;
	if ((np = realloc(r->raw, r->raw_len + len + 1)) == NULL) {
		r->status = 500;
		r->why = "out of memory";
		return -1;
	}
	memcpy(np + r->raw_len, data, len);
	r->raw = np;
	r->raw_len += len;
	rv = h1_head_scan(r->raw, r->raw_len, r->max_head, &skip, &hlen,
	    &status, &why);
	if (rv < 0) {
		r->status = status;
		r->why = why;
		return -1;
	}
	if (rv == 1) {
		r->head_ok = 1;
		free(r->raw);
		r->raw = NULL;
		r->raw_len = 0;
	}
	return 0;
}

void
http_req_free(struct http_req *r)
{
	size_t i;

	free(r->url);
	for (i = 0; i < r->nh; i++) {
		free(r->h[i].name);
		free(r->h[i].value);
	}
	free(r->body);
	free(r->raw);
	r->url = NULL;
	r->body = NULL;
	r->raw = NULL;
	r->raw_len = 0;
	r->nh = 0;
}

void
http_req_init(struct http_req *r, size_t max_head, size_t max_body)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->p, HTTP_REQUEST);
	r->p.data = r;
	r->max_head = max_head;
	r->max_body = max_body;
}

int
http_req_feed(struct http_req *r, const char *data, size_t len, size_t *used)
{
	size_t n;
	enum http_errno e;

	*used = 0;
	if (r->complete)
		return 1;
	if (!r->head_ok && len > 0 && head_scan(r, data, len) != 0)
		return -1;
	n = http_parser_execute(&r->p, &settings, data, len);
	if (n > len)
		n = len;	/* http_parser's 1 for an error at EOF (len 0) */
	e = HTTP_PARSER_ERRNO(&r->p);
	if (e == HPE_PAUSED) {
		http_parser_pause(&r->p, 0);
		*used = n;
		return 1;
	}
	*used = n;
	if (e != HPE_OK) {
		if (r->status == 0) {
			r->status = 400;
			r->why = http_errno_description(e);
		}
		return -1;
	}
	if (r->complete)
		return 1;
	if (len == 0) {		/* EOF before a whole request */
		r->status = 400;
		r->why = "connection closed mid-request";
		return -1;
	}
	return 0;
}

const char *
http_req_header(const struct http_req *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nh; i++)
		if (r->h[i].name && strcmp(r->h[i].name, name) == 0)
			return r->h[i].value ? r->h[i].value : "";
	return NULL;
}

void
http_req_path(const struct http_req *r, char *buf, size_t len)
{
	size_t n = r->url ? strcspn(r->url, "?#") : 0;

	snprintf(buf, len, "%.*s", (int)n, r->url ? r->url : "");
}

const char *
http_reason(int s)
{
	switch (s) {
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

int
http_response(char **out, size_t *out_len, int status, const char *ctype,
    const void *body, size_t body_len, int keep_alive)
{
	return http_response_h(out, out_len, status, ctype, NULL, body,
	    body_len, keep_alive);
}

int
http_response_h(char **out, size_t *out_len, int status, const char *ctype,
    const char *headers, const void *body, size_t body_len, int keep_alive)
{
	static const char wd[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat" };
	static const char mo[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char head[1400];
	time_t now = time(NULL);
	struct tm tm;
	int n;

	/* Date (RFC 9110 6.6.1: a server with a clock sends it): the agent
	 * measures its clock skew against it */
	if (gmtime_r(&now, &tm) == NULL)
		return -1;
	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nDate: %s, %02d %s "
	    "%04d %02d:%02d:%02d GMT\r\nContent-Type: %s\r\n%s"
	    "Content-Length: %zu\r\nConnection: %s\r\n\r\n", status,
	    http_reason(status), wd[tm.tm_wday % 7], tm.tm_mday,
	    mo[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, ctype, headers ? headers : "", body_len,
	    keep_alive ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= sizeof(head) ||
	    (*out = malloc((size_t)n + body_len)) == NULL)
		return -1;
	memcpy(*out, head, (size_t)n);
	if (body_len)
		memcpy(*out + n, body, body_len);
	*out_len = (size_t)n + body_len;
	return 0;
}
