/*
 * Fuzz targets: mtls_rule_check, mtls_rule_match and ids_expect_match
 * (an expectation against a wildcard DNS SAN). The input is "RULE\nID".
 * Invariants: an invalid rule matches nothing but itself never crashes; an
 * exact spiffe/dns rule that is valid matches itself; an expectation
 * matches whatever the rule matches, and beyond that only a "dns:*." SAN
 * whose rest is the rule's name minus exactly one leftmost label. No
 * clock, no RNG.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mtls.h"
#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1), *id, why[128];
	int valid, m, e;

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
	m = mtls_rule_match(s, id);
	e = ids_expect_match(s, id);
	if (m && !e)
		abort();
	if (e && !m) {
		const char *dot = strchr(s + 4, '.');

		if (strncmp(s, "dns:", 4) != 0 || strncmp(id, "dns:*.", 6) != 0 ||
		    dot == NULL || dot == s + 4 || strchr(s + 4, '*') != NULL ||
		    strcasecmp(dot, id + 5) != 0 || strchr(id + 6, '.') == NULL)
			abort();
	}
	if (valid && strchr(s, '*') == NULL &&
	    (strncmp(s, "spiffe://", 9) == 0 || strncmp(s, "dns:", 4) == 0) &&
	    !mtls_rule_match(s, s))
		abort();
	free(s);
	return 0;
}
