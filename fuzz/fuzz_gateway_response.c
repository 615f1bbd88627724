/*
 * Fuzz target: what an upstream answers the gateway, through the codec's
 * response side (http/h1.c): the parser's callbacks (status, fields, 1xx,
 * framing by length, chunks or close), the head's checks and filtering,
 * and the re-framing towards the client, whose head must parse back as
 * exactly the lines written (h1_parse_back.h). The first byte picks HEAD
 * or GET and an HTTP/1.0 or 1.1 client; the rest comes in two reads split
 * at the second byte's value, then the upstream's end of stream.
 *
 * Canary (canary.h): the read buffer is filled beforehand with the
 * harness's pattern; nothing the client gets may hold 4 bytes of it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canary.h"
#include "h1_parse_back.h"
#include "http/h1.h"
#include "http/http.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define IN_SIZE		(64 * 1024)

struct out {
	char	*b;
	size_t	 cap, n;
	int	 cut;
};

static int
emit(void *arg, const struct iovec *iov, int n)
{
	struct out *o = arg;
	int i;

	for (i = 0; i < n; i++) {
		size_t k = iov[i].iov_len;

		if (k > o->cap - o->n) {
			k = o->cap - o->n;
			o->cut = 1;
		}
		memcpy(o->b + o->n, iov[i].iov_base, k);
		o->n += k;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static char outb[256 * 1024];
	const char *fill = canary_pick(data, len);
	struct out o = { outb, sizeof(outb), 0, 0 };
	struct h1_resp rs;
	char *buf;
	size_t i, off, split, used;
	int r = 0, reads;

	if (len < 1 || len > 65536)
		return 0;
	if ((buf = malloc(IN_SIZE)) == NULL)
		return 0;
	for (i = 0; i < IN_SIZE; i++)
		buf[i] = fill != NULL ? fill[i % 4] : 0;
	memset(&rs, 0, sizeof(rs));
	h1_resp_reset(&rs);
	rs.head_req = data[0] & 1;
	rs.client_minor = data[0] & 2 ? 0 : 1;
	rs.emit = emit;
	rs.arg = &o;
	rs.keep = 1;
	h1_resp_start(&rs);
	data++;
	len--;
	split = len > 0 ? data[0] % (len + 1) : 0;
	/* two reads, then the end of stream (a read of 0 bytes) */
	for (off = 0, reads = 0; reads < 3 && r == 0; reads++) {
		size_t n = reads == 0 ? split : reads == 1 ? len - split : 0;

		memcpy(buf, data + off, n);
		off += n;
		if (reads < 2 && n == 0)
			continue;
		r = h1_resp_feed(&rs, buf, n, &used);
		if (used > n)
			abort();
	}
	if (rs.started && !o.cut) {
		/* the head the client got: exactly the lines meant */
		const char *e = memmem(o.b, o.n, "\r\n\r\n", 4);

		if (e == NULL)
			abort();
		parse_back(o.b, (size_t)(e - o.b) + 4, HTTP_RESPONSE, rs.lines,
		    rs.rechunk, -1, 0);
	}
	if (r < 0 && h1_resp_why(&rs) == NULL)
		abort();
	if (canary_in(fill, o.b, o.n))
		abort();
	h1_resp_free(&rs);
	free(buf);
	return 0;
}
