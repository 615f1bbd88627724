/*
 * Fuzz target: mtls_duration_parse. Invariant: success means a positive
 * result. No clock, no RNG.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mtls.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1);
	int64_t v = 0;

	if (s == NULL)
		return 0;
	memcpy(s, data, len);
	s[len] = '\0';
	if (mtls_duration_parse(s, &v) == 0 && v <= 0)
		abort();
	free(s);
	return 0;
}
