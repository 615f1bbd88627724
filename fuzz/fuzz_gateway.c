/*
 * Fuzz target: the gateway's request path (gw_fuzz_requests): bytes from a
 * client through head reading, http_head_check, http_parser and its
 * callbacks, target and Host normalization, routing, authorization and
 * our error answers. No TLS (the bytes a client sends after its handshake
 * are what is hostile here). Canary (canary.h): no answer or access log
 * line may hold bytes from past what the input sent.
 */
#include <stdint.h>
#include <stdlib.h>

#include "canary.h"
#include "proxy/gateway.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static char out[256 * 1024];
	const char *fill = canary_pick(data, len);
	size_t n = 0;

	log_set_off(1);
	(void)gw_fuzz_requests(data, len, fill, out, sizeof(out), &n);
	/* the canary from past the input in an answer or access log line: a read past
	 * what was received (issue 12 item 4) */
	if (canary_in(fill, out, n))
		abort();
	return 0;
}
