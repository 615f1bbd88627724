/*
 * h1: the gateway's HTTP/1.1 codec, without I/O (picotls's model: the
 * caller reads and writes; this file parses, checks and frames bytes it
 * is handed, and hands bytes back through the caller's emit function).
 *
 *   - the request head: found in the caller's buffer (h1_head_scan),
 *     parsed by http_parser, checked (version, target length, framing,
 *     Host, CONNECT and Upgrade, body limit; target and Host normalized,
 *     norm.c); its fields stay spans of the caller's buffer until the
 *     caller's on_head returns;
 *   - the request body: counted against the limit and re-framed (chunked
 *     again when it came chunked) through emit, or dropped (discard);
 *   - the head for the upstream: the request line, the client's fields
 *     that pass (no hop-by-hop field, no claim about the client, nothing
 *     the Connection header lists) and the framing header, into a bounded
 *     buffer (struct h1_buf); the caller adds its own fields;
 *   - the response: parsed, its head checked (no control byte, no NUL)
 *     and filtered, re-framed for the client (Content-Length, chunked, or
 *     to the close for an HTTP/1.0 client) through emit.
 *
 * Request smuggling needs two parties to disagree on where a request ends:
 * anything ambiguous is refused (400) and bodies are always re-framed.
 */
#ifndef MTLS_H1_H
#define MTLS_H1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <http_parser.h>

#include "internal.h"

#define H1_MAX_FIELDS		256
#define H1_RESP_HEAD_MAX	(64 * 1024)

/* Where the codec's output goes: <n> pieces, in order. 0, or -1 when the
 * caller's sink has failed (a response body then stops the parse). */
typedef int (*h1_emit_fn)(void *arg, const struct iovec *iov, int n);

/* A bounded, growing buffer (the head for the upstream). */
struct h1_buf {
	char	*b;
	size_t	 len, cap;
	size_t	 max;		/* more than this: fail */
	size_t	 lines;		/* field lines put with h1_buf_line */
	int	 fail;		/* over max, or out of memory */
};

void	 h1_buf_put(struct h1_buf *, const void *p, size_t n);
/* One line "<name>: <value>\r\n". */
void	 h1_buf_line(struct h1_buf *, const char *name, const char *v,
	    size_t vn);

/* A header field as parsed: spans into the buffer the head is in. */
struct h1_field {
	const char	*name, *value;
	size_t		 nlen, vlen;
};

struct h1_limits {
	size_t		 max_head;	/* request line and fields, bytes */
	size_t		 max_headers;	/* fields */
	int64_t		 max_body;	/* bytes */
	int		 semicolons_pass; /* ';' in a path: forwarded */
};

struct h1_req {
	http_parser		 p;
	const struct h1_limits	*lim;
	/* the caller's: called once the head has passed the checks (0: go
	 * on, -1: stop), and where the re-framed body goes */
	int			(*on_head)(struct h1_req *, void *arg);
	h1_emit_fn		 emit;
	void			*arg;
	/* the head: spans of the caller's buffer, valid until on_head
	 * returns (nf and url are cleared then) */
	struct h1_field		 f[H1_MAX_FIELDS];
	size_t			 nf;
	const char		*url;
	size_t			 url_len;
	char			 method[16];
	char			 path[2048];	/* normalized: what is routed */
	char			 target[2048];	/* path and query, forwarded */
	char			 host[264];	/* Host normalized, its port */
	size_t			 host_len;	/* without the port */
	int			 minor, keep, head_done, done;
	int			 chunked_out;	/* the body is re-chunked */
	uint64_t		 body;		/* body bytes so far */
	/* a refusal: the answer's status, taxonomy code and message;
	 * discard: the body is read to its end and dropped */
	int			 status;
	char			 code[32];
	char			 msg[300];
	int			 discard;
};

/*
 * The head at the start of <b>[0..len): empty lines before it are skipped
 * (*skip bytes; RFC 9112 2.2), then its end is looked for. 1 with its
 * length (its empty line included) in *hlen when it is whole and its
 * grammar passes http_head_check(); 0 when more is needed; -1 with
 * *status (400, or 431 when <max_head> bytes have come without its end)
 * and a static *why.
 */
int	 h1_head_scan(const char *b, size_t len, size_t max_head, size_t *skip,
	    size_t *hlen, int *status, const char **why);

/* Ready for a new request on the connection (the refusal cleared). */
void	 h1_req_reset(struct h1_req *);
/* Starts parsing (after h1_head_scan found the head). */
void	 h1_req_start(struct h1_req *);
/*
 * Parses <b>[0..len): *used bytes were taken. 1 when the request is whole
 * (bytes after it are the next request's), 0 when more is needed, -1 when
 * the stream cannot go on (a refusal set: 400 unless the head's checks or
 * the caller set another; keep cleared).
 */
int	 h1_req_feed(struct h1_req *, const char *b, size_t len, size_t *used);
void	 h1_req_refuse(struct h1_req *, int status, const char *code,
	    const char *fmt, ...) MTLS_PRINTF(4, 5);
/* The first field named <name> (lower case) in the head, and how many. */
const struct h1_field *h1_req_field(const struct h1_req *, const char *name,
	    int *count);
/* "<method> <target> HTTP/1.1\r\n" into <out>. */
void	 h1_req_line(const struct h1_req *, struct h1_buf *out);
/* The client's fields that pass into <out>: no hop-by-hop field, no claim
 * about the client (Host, Forwarded, X-Forwarded-*, X-Real-IP), nothing
 * the Connection header lists, and no name with '_' unless
 * <underscores_pass>. Names are compared with '_' as '-'. */
void	 h1_req_fields(const struct h1_req *, int underscores_pass,
	    struct h1_buf *out);
/* The body's framing line for the upstream (chunked when it came chunked,
 * else Content-Length when it had one); sets chunked_out. */
void	 h1_req_framing(struct h1_req *, struct h1_buf *out);

struct h1_resp {
	http_parser	 p;
	/* the caller's, before h1_resp_start */
	int		 head_req;	/* the request was HEAD */
	int		 client_minor;	/* the client speaks HTTP/1.<minor> */
	h1_emit_fn	 emit;
	void		*arg;
	/* the caller's, before each h1_resp_feed: 0 closes the client
	 * connection after this answer (Connection: close) */
	int		 keep;
	/* the head as parsed: fields NUL-separated, name then value */
	char		*rh;
	size_t		 rh_len, rh_cap;
	int		 rh_in_value;
	char		 reason[64];
	/* what was sent on */
	int		 status, started, done, restart, rechunk, close_after;
	int		 fail;		/* 1: head too large; 2: a control byte */
	size_t		 lines;		/* field lines of the head sent on */
	uint64_t	 body;
};

/* Ready for a new exchange (keeps the head buffer). */
void	 h1_resp_reset(struct h1_resp *);
/* Starts parsing a response. */
void	 h1_resp_start(struct h1_resp *);
/* Parses <b>[0..len) (len 0: the upstream's end of stream): 1 when the
 * final response is whole (*used bytes taken), 0 when more is needed, -1
 * when it is malformed (h1_resp_why says how). 1xx answers are dropped. */
int	 h1_resp_feed(struct h1_resp *, const char *b, size_t len,
	    size_t *used);
const char *h1_resp_why(const struct h1_resp *);
/* 1 when the upstream connection may carry another request. */
int	 h1_resp_reusable(const struct h1_resp *);
void	 h1_resp_free(struct h1_resp *);

/* 1 when <p>[0..n) is <lit> (ASCII case folded). */
int	 h1_span_eq(const char *p, size_t n, const char *lit);
/* <*p>[0..*n) trimmed of surrounding blanks. */
void	 h1_trim(const char **p, size_t *n);

#endif
