/*
 * Fuzz targets: mtls_spiffe_id_check, mtls_rule_check, spiffe_trust_domain
 * on arbitrary bytes (NUL-terminated copy). Invariants: a valid ID is a
 * valid rule and matches itself; its trust domain is a prefix of it.
 * No clock, no RNG.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1), why[128], td[300];

	if (s == NULL)
		return 0;
	memcpy(s, data, len);
	s[len] = '\0';
	if (mtls_spiffe_id_check(s, why, sizeof(why)) == 0) {
		if (mtls_rule_check(s, why, sizeof(why)) != 0 ||
		    !mtls_rule_match(s, s))
			abort();
		if (spiffe_trust_domain(s, td, sizeof(td)) == 0 &&
		    strncmp(s + 9, td, strlen(td)) != 0)
			abort();
	}
	(void)mtls_rule_check(s, why, sizeof(why));
	free(s);
	return 0;
}
