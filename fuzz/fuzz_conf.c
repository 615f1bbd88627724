/*
 * Fuzz target: conf_parse (the ca.conf format). The callback checks that
 * what it gets is NUL-terminated and bounded. No clock, no RNG.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
cb(void *arg, const char *section, const char *key, const char *value,
    int line, struct mtls_error *err)
{
	(void)arg;
	(void)err;
	if (strlen(section) > 8192 || strlen(key) > 4096 ||
	    strlen(value) > 4096 || line < 1)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct mtls_error err;

	error_clear(&err);
	if (conf_parse((const char *)data, len, "fuzz.conf", cb, NULL, &err) != 0
	    && err.msg[0] == '\0')
		abort();	/* a failure always says why */
	return 0;
}
