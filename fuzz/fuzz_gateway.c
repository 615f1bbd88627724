/*
 * Fuzz target: the gateway's request path (gw_fuzz_requests): bytes from a
 * client through head reading, head_check, http_parser and its callbacks,
 * path checks, routing, authorization and our error answers. No TLS (the
 * bytes a client sends after its handshake are what is hostile here).
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
	if (gw_fuzz_requests(data, len) != 0)
		abort();
	return 0;
}
