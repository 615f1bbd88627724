/*
 * Fuzz target: the gateway's request codec (http/h1.c), on bytes from a
 * client as requests one after another, read into a buffer the way the
 * gateway reads (in pieces, the head compacted to the front): h1_head_scan
 * (empty lines first, the head's grammar, the head limit), http_parser and
 * the codec's callbacks (fields, the head's checks, target and Host
 * normalization), the body's limit and re-framing, and the head for the
 * upstream (request line, the fields that pass, framing), which must
 * parse back as exactly the lines written (h1_parse_back.h). An input
 * whose length is 1 or 2 mod 3 adds an X-Forwarded-Client-Cert line of
 * about 4.2 or 9 KB to it, as a verified peer's would. A path under "/a"
 * is refused as the gateway refuses an unauthorized peer: its body is
 * read and dropped. No TLS: the bytes a client sends after its handshake
 * are what is hostile here.
 *
 * Canary (canary.h): the buffer is filled beforehand with the harness's
 * pattern; no method, path, refusal message, upstream head or body may
 * hold 4 bytes of it (a read past what was received).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canary.h"
#include "h1_parse_back.h"
#include "http/h1.h"
#include "http/http.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define IN_SIZE		(64 * 1024)
#define PIECE		1024	/* bytes a read brings, at most */

struct out {
	char	*b;
	size_t	 cap, n;
};

struct fz {
	struct out	 out;
	struct h1_buf	 uh;
	size_t		 xfcc;	/* 0, or the X-Forwarded-Client-Cert's size */
};

static void
keep(struct out *o, const void *p, size_t n)
{
	if (n > o->cap - o->n)
		n = o->cap - o->n;
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static int
emit(void *arg, const struct iovec *iov, int n)
{
	struct fz *f = arg;
	int i;

	for (i = 0; i < n; i++)
		keep(&f->out, iov[i].iov_base, iov[i].iov_len);
	return 0;
}

/* The gateway's on_head, without a route table or an upstream. */
static int
on_head(struct h1_req *rq, void *arg)
{
	struct fz *f = arg;
	struct h1_buf *uh = &f->uh;

	if (strncmp(rq->path, "/a", 2) == 0) {
		h1_req_refuse(rq, 403, "forbidden", "route closed does not "
		    "allow this certificate");
		return 0;
	}
	uh->len = uh->lines = 0;
	uh->fail = 0;
	uh->max = 128 * 1024;
	h1_req_line(rq, uh);
	h1_buf_line(uh, "Host", rq->host[0] ? rq->host : "upstream",
	    rq->host[0] ? strlen(rq->host) : 8);
	h1_req_fields(rq, 0, uh);
	h1_buf_line(uh, "X-Forwarded-For", "192.0.2.1", 9);
	if (f->xfcc > 0) {
		char *x = malloc(f->xfcc);

		if (x != NULL) {
			memset(x, 'x', f->xfcc);
			memcpy(x, "Hash=", 5);
			h1_buf_line(uh, "X-Forwarded-Client-Cert", x, f->xfcc);
			free(x);
		}
	}
	h1_req_framing(rq, uh);
	h1_buf_put(uh, "\r\n", 2);
	if (uh->fail) {
		h1_req_refuse(rq, 431, "head_too_large", "the request head for "
		    "the upstream is over 131072 bytes");
		return -1;
	}
	parse_back(uh->b, uh->len, HTTP_REQUEST, uh->lines, rq->chunked_out,
	    !rq->chunked_out && (rq->p.flags & F_CONTENTLENGTH),
	    rq->p.content_length);
	keep(&f->out, uh->b, uh->len);
	return 0;
}

/* What the client and the access log would show of the request. */
static void
seen(struct fz *f, const struct h1_req *rq)
{
	keep(&f->out, rq->method, strlen(rq->method));
	keep(&f->out, rq->path, strlen(rq->path));
	keep(&f->out, rq->code, strlen(rq->code));
	keep(&f->out, rq->msg, strlen(rq->msg));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static char outb[512 * 1024];
	static const struct h1_limits lim = { 4096, 20, 2048, 0 };
	const char *fill = canary_pick(data, len);
	struct fz f;
	struct h1_req *rq;
	char *in;
	size_t in_off = 0, in_len = 0, pos = 0, i;

	if (len > 65536)
		return 0;
	memset(&f, 0, sizeof(f));
	f.out.b = outb;
	f.out.cap = sizeof(outb);
	f.xfcc = len % 3 == 1 ? 4200 : len % 3 == 2 ? 9000 : 0;
	rq = calloc(1, sizeof(*rq));
	in = malloc(IN_SIZE);
	if (rq == NULL || in == NULL)
		goto out;
	for (i = 0; i < IN_SIZE; i++)
		in[i] = fill != NULL ? fill[i % 4] : 0;
	rq->lim = &lim;
	rq->on_head = on_head;
	rq->emit = emit;
	rq->arg = &f;
	/* one request after another, while the connection would stay */
	for (;;) {
		size_t skip, hlen, used, k;
		const char *why;
		int st, r;

		h1_req_reset(rq);
		for (;;) {
			size_t have = in_len - in_off;

			r = h1_head_scan(in + in_off, have, lim.max_head, &skip,
			    &hlen, &st, &why);
			in_off += skip;
			have -= skip;
			if (r != 0)
				break;
			if (in_off > 0) {
				memmove(in, in + in_off, have);
				in_off = 0;
				in_len = have;
			}
			k = len - pos < PIECE ? len - pos : PIECE;
			if (k > IN_SIZE - in_len)
				k = IN_SIZE - in_len;
			if (k == 0)
				goto out;	/* the client's end */
			memcpy(in + in_len, data + pos, k);
			pos += k;
			in_len += k;
		}
		if (r < 0) {
			if (st != 400 && st != 431)
				abort();
			keep(&f.out, why, strlen(why));
			goto out;
		}
		if (hlen > in_len - in_off)
			abort();
		h1_req_start(rq);
		for (;;) {
			r = h1_req_feed(rq, in + in_off, in_len - in_off, &used);
			if (used > in_len - in_off)
				abort();
			in_off += used;
			if (r != 0)
				break;
			if (in_off == in_len)
				in_off = in_len = 0;
			k = len - pos < PIECE ? len - pos : PIECE;
			if (k > IN_SIZE - in_len)
				k = IN_SIZE - in_len;
			if (k == 0)
				break;		/* closed mid-request */
			memcpy(in + in_len, data + pos, k);
			pos += k;
			in_len += k;
		}
		seen(&f, rq);
		if (rq->status != 0 && rq->status != 400 && rq->status != 403 &&
		    rq->status != 405 && rq->status != 413 &&
		    rq->status != 414 && rq->status != 431)
			abort();
		if (r != 1 || !rq->keep || (rq->status != 0 && !rq->done))
			break;
	}
 out:
	if (canary_in(fill, f.out.b, f.out.n))
		abort();
	free(f.uh.b);
	free(in);
	free(rq);
	return 0;
}
