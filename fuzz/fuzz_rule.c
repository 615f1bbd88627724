/*
 * Fuzz targets: mtls_rule_check and mtls_rule_match. The input is
 * "RULE\nID". Invariants: an invalid rule matches nothing but itself never
 * crashes; an exact spiffe/dns rule that is valid matches itself. No clock,
 * no RNG.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mtls.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1), *id, why[128];
	int valid;

	if (s == NULL)
		return 0;
	memcpy(s, data, len);
	s[len] = '\0';
	id = strchr(s, '\n');
	if (id != NULL)
		*id++ = '\0';
	else
		id = s;
	valid = mtls_rule_check(s, why, sizeof(why)) == 0;
	(void)mtls_rule_match(s, id);
	if (valid && strchr(s, '*') == NULL &&
	    (strncmp(s, "spiffe://", 9) == 0 || strncmp(s, "dns:", 4) == 0) &&
	    !mtls_rule_match(s, s))
		abort();
	free(s);
	return 0;
}
