/*
 * Fuzz target: what an upstream answers the gateway (gw_fuzz_response):
 * relay_response, the response parser's callbacks (status, fields, 1xx,
 * framing by length, chunks or close) and the re-framing towards the
 * client. The first byte picks HEAD or GET and an HTTP/1.0 or 1.1 client.
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
	(void)gw_fuzz_response(data, len, fill, out, sizeof(out), &n);
	/* the canary from past the input in an byte the client got: a read past
	 * what was received (issue 12 item 4) */
	if (canary_in(fill, out, n))
		abort();
	return 0;
}
