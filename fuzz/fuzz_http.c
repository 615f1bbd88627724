/*
 * Fuzz target: http_req_feed, the request reader of ca serve, over Node's
 * http_parser with our limits; and the request-head rules of norm.c
 * (http_head_check, http_target_normalize, http_host_normalize) on the
 * same bytes. The input is fed in two pieces split at its first byte's
 * value, like bytes arriving in two reads; then every pipelined request
 * after it. Invariants: no crash or leak (ASan), consumption never
 * exceeds what was fed, a refused request carries 400, 408, 413 or 431;
 * a normalized target is no longer than the input and normalizing it
 * again changes nothing. Canary (issue 12 item 4): the input sits in a
 * larger buffer whose tail is a printable pattern absent from the input;
 * no parsed string, reason or normalized form may contain 4 bytes of it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canary.h"
#include "http/http.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define TAIL	4096

static const char *canary;

static void
check(const char *s, size_t n)
{
	if (s != NULL && canary_in(canary, s, n))
		abort();
}

static void
check_str(const char *s)
{
	if (s != NULL)
		check(s, strlen(s));
}

/* The normal forms of the request line's target and the Host value. */
static void
norm(const struct http_req *r)
{
	char out[2048], again[2048], host[300];
	size_t pl, pl2, hl;
	const char *why = NULL, *h;

	if (r->url != NULL && http_target_normalize(r->url, r->url_len, out,
	    sizeof(out), &pl, &why) == 0) {
		check_str(out);
		if (strlen(out) > r->url_len || pl > strlen(out))
			abort();
		if (http_target_normalize(out, strlen(out), again,
		    sizeof(again), &pl2, &why) != 0 || strcmp(out, again) ||
		    pl != pl2)
			abort();
	}
	if ((h = http_req_header(r, "host")) != NULL &&
	    http_host_normalize(h, strlen(h), host, sizeof(host), &hl,
	    &why) == 0)
		check_str(host);
	check_str(why);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct http_req r;
	const char *p, *why;
	char *buf;
	size_t left, cut, used, i;
	int rc = 0, rounds = 0;

	if (len < 1 || len > 65536)
		return 0;
	canary = canary_pick(data, len);
	if ((buf = malloc(len + TAIL)) == NULL)
		return 0;
	memcpy(buf, data, len);
	for (i = 0; i < TAIL; i++)
		buf[len + i] = canary ? canary[i % 4] : 0;
	why = http_head_check(buf + 1, len - 1);
	check_str(why);
	cut = data[0] % len;
	p = buf + 1;
	left = len - 1;
	while (left > 0 && rounds++ < 8) {
		http_req_init(&r, 4096, 8192);
		rc = http_req_feed(&r, p, cut < left ? cut : left, &used);
		if (used > left)
			abort();
		p += used;
		left -= used;
		if (rc == 0 && left > 0) {
			rc = http_req_feed(&r, p, left, &used);
			if (used > left)
				abort();
			p += used;
			left -= used;
		}
		if (rc == 0)
			rc = http_req_feed(&r, p, 0, &used);	/* EOF */
		if (rc < 0 && r.status != 400 && r.status != 408 &&
		    r.status != 413 && r.status != 431)
			abort();
		check_str(r.why);
		check_str(r.url);
		for (i = 0; i < r.nh; i++) {
			check_str(r.h[i].name);
			check_str(r.h[i].value);
		}
		if (r.body != NULL)
			check((const char *)r.body, r.body_len);
		if (rc == 1) {
			char path[256];

			http_req_path(&r, path, sizeof(path));
			check_str(path);
			(void)http_req_header(&r, "content-length");
			norm(&r);
		}
		http_req_free(&r);
		if (rc != 1)
			break;
		cut = left;
	}
	free(buf);
	return 0;
}
