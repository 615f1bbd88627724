/*
 * Fuzz target: http_req_feed, the request reader of ca serve (and of the
 * gateway mode to come), over Node's http_parser with our limits. The
 * input is fed in two pieces split at its first byte's value, like bytes
 * arriving in two reads; then every pipelined request after it. Invariants:
 * no crash or leak (ASan), consumption never exceeds what was fed, a
 * refused request carries 400, 408, 413 or 431.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct http_req r;
	const char *p;
	size_t left, cut, used;
	int rc = 0, rounds = 0;

	if (len < 1)
		return 0;
	cut = data[0] % len;
	p = (const char *)data + 1;
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
		if (rc == 1) {
			char path[256];

			http_req_path(&r, path, sizeof(path));
			(void)http_req_header(&r, "content-length");
		}
		http_req_free(&r);
		if (rc != 1)
			break;
		cut = left;
	}
	return 0;
}
