/*
 * Fuzz target: what an upstream answers the gateway (gw_fuzz_response):
 * relay_response, the response parser's callbacks (status, fields, 1xx,
 * framing by length, chunks or close) and the re-framing towards the
 * client. The first byte picks HEAD or GET and an HTTP/1.0 or 1.1 client.
 */
#include <stdint.h>
#include <stdlib.h>

#include "proxy/gateway.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	log_set_off(1);
	/* a canary from the buffers past the input in an answer or a
	 * log line: a read past what was received (issue 12 item 4) */
	if (gw_fuzz_response(data, len) != 0)
		abort();
	return 0;
}
