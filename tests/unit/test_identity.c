/* identity.c: SPIFFE IDs, rules and matching, DNS names, IPs, durations. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

static const struct {
	const char *in;
	int want_rv;
	const char *want_why;	/* substring of the reason */
} spiffe_cases[] = {
	{ "spiffe://example.org/ns/prod/sa/api", 0, NULL },
	{ "spiffe://example.org/a", 0, NULL },
	{ "spiffe://a-b_c.example.org/A.b-c_d/x", 0, NULL },
	{ "spiffe://Example.org/a", -1, "lowercase" },
	{ "spiffe://example.org:443/a", -1, "port" },
	{ "spiffe://user@example.org/a", -1, "user info" },
	{ "spiffe://example.org/a?x=1", -1, "query" },
	{ "spiffe://example.org/a#f", -1, "query and fragment" },
	{ "spiffe://example.org/a%20b", -1, "percent" },
	{ "spiffe://example.org//a", -1, "empty path segment" },
	{ "spiffe://example.org/a/", -1, "empty path segment" },
	{ "spiffe://example.org/a/../b", -1, "'..'" },
	{ "spiffe://example.org/./b", -1, "'.'" },
	{ "spiffe://example.org", -1, "no path" },
	{ "spiffe:///a", -1, "empty trust domain" },
	{ "SPIFFE://example.org/a", -1, "spiffe://" },
	{ "https://example.org/a", -1, "spiffe://" },
	{ "", -1, "spiffe://" },
	{ "spiffe://example.org/a b", -1, "not allowed" },
};

static void
test_spiffe_check(void **state)
{
	char why[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(spiffe_cases) / sizeof(spiffe_cases[0]); i++) {
		why[0] = '\0';
		int rv = mtls_spiffe_id_check(spiffe_cases[i].in, why, sizeof(why));

		if (rv != spiffe_cases[i].want_rv)
			fail_msg("%s: rv %d, want %d (%s)", spiffe_cases[i].in, rv,
			    spiffe_cases[i].want_rv, why);
		if (spiffe_cases[i].want_why != NULL &&
		    strstr(why, spiffe_cases[i].want_why) == NULL)
			fail_msg("%s: reason '%s' lacks '%s'", spiffe_cases[i].in,
			    why, spiffe_cases[i].want_why);
	}
	assert_int_equal(mtls_spiffe_id_check(NULL, why, sizeof(why)), -1);
}

static void
test_spiffe_length(void **state)
{
	char id[2100];
	size_t n;

	(void)state;
	strcpy(id, "spiffe://example.org/");
	n = strlen(id);
	memset(id + n, 'a', 2048 - n);
	id[2048] = '\0';
	assert_int_equal(mtls_spiffe_id_check(id, NULL, 0), 0);	/* 2048 bytes */
	id[2048] = 'a';
	id[2049] = '\0';
	assert_int_equal(mtls_spiffe_id_check(id, NULL, 0), -1);	/* 2049 */
}

static const struct {
	const char *rule;
	int want_rv;
} rule_cases[] = {
	{ "spiffe://example.org/ns/prod/sa/api", 0 },
	{ "spiffe://example.org/ns/prod/*", 0 },
	{ "spiffe://example.org/*", 0 },
	{ "dns:api.example.org", 0 },
	{ "dns:*.example.org", 0 },
	{ "ip:10.0.0.7", 0 },
	{ "ip:::1", 0 },
	{ "cn:legacy", 0 },
	{ "spiffe://example.org/ns/*/api", -1 },	/* '*' in the middle */
	{ "spiffe://example.org/ns*", -1 },
	{ "spiffe://Example.org/*", -1 },
	{ "dns:*", -1 },
	{ "dns:a..b", -1 },
	{ "ip:10.0.0.300", -1 },
	{ "cn:", -1 },
	{ "example.org", -1 },
	{ "", -1 },
};

static void
test_rule_check(void **state)
{
	char why[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++)
		if (mtls_rule_check(rule_cases[i].rule, why, sizeof(why)) !=
		    rule_cases[i].want_rv)
			fail_msg("rule '%s': want %d", rule_cases[i].rule,
			    rule_cases[i].want_rv);
}

static const struct {
	const char *rule, *id;
	int want;
} match_cases[] = {
	{ "spiffe://example.org/ns/prod/api", "spiffe://example.org/ns/prod/api", 1 },
	{ "spiffe://example.org/ns/prod/api", "spiffe://example.org/ns/prod/api2", 0 },
	{ "spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prod/api", 1 },
	{ "spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prod/a/b", 1 },
	{ "spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prod", 0 },
	{ "spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prodx/a", 0 },
	{ "spiffe://example.org/*", "spiffe://example.org/anything", 1 },
	{ "spiffe://example.org/*", "spiffe://example.org.evil/x", 0 },
	{ "spiffe://example.org/*", "spiffe://other.org/x", 0 },
	{ "spiffe://example.org/*", "dns:example.org", 0 },
	{ "dns:api.example.org", "dns:API.Example.org", 1 },
	{ "dns:api.example.org", "dns:api.example.org.evil", 0 },
	{ "dns:*.example.org", "dns:a.example.org", 1 },
	{ "dns:*.example.org", "dns:a.b.example.org", 1 },
	{ "dns:*.example.org", "dns:example.org", 0 },
	{ "dns:*.example.org", "dns:aexample.org", 0 },
	{ "dns:*.example.org", "dns:.example.org", 0 },
	{ "dns:*.example.org", "spiffe://a.example.org/x", 0 },
	{ "ip:::1", "ip:0:0:0:0:0:0:0:1", 1 },
	{ "ip:10.0.0.7", "ip:10.0.0.7", 1 },
	{ "ip:10.0.0.7", "ip:10.0.0.70", 0 },
	{ "cn:legacy", "cn:legacy", 1 },
	{ "cn:legacy", "dns:legacy", 0 },
	{ "nonsense", "cn:nonsense", 0 },
};

static void
test_rule_match(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++)
		if (mtls_rule_match(match_cases[i].rule, match_cases[i].id) !=
		    match_cases[i].want)
			fail_msg("rule '%s' vs '%s': want %d", match_cases[i].rule,
			    match_cases[i].id, match_cases[i].want);
	assert_int_equal(mtls_rule_match(NULL, "dns:x"), 0);
	assert_int_equal(mtls_rule_match("dns:x", NULL), 0);
}

static void
test_dns_ip(void **state)
{
	char buf[64], td[64];

	(void)state;
	assert_int_equal(dns_name_check("api.example.org", 0), 0);
	assert_int_equal(dns_name_check("*.example.org", 1), 0);
	assert_int_equal(dns_name_check("*.example.org", 0), -1);
	assert_int_equal(dns_name_check("-a.example.org", 0), -1);
	assert_int_equal(dns_name_check("a-.example.org", 0), -1);
	assert_int_equal(dns_name_check("a..b", 0), -1);
	assert_int_equal(dns_name_check("", 0), -1);
	assert_int_equal(ip_canon("0:0::1", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "::1");
	assert_int_equal(ip_canon("10.1.2.3", buf, sizeof(buf)), 0);
	assert_int_equal(ip_canon("10.1.2", buf, sizeof(buf)), -1);
	assert_int_equal(spiffe_trust_domain("spiffe://example.org/a/b", td,
	    sizeof(td)), 0);
	assert_string_equal(td, "example.org");
	assert_int_equal(spiffe_trust_domain("spiffe://Bad/a", td, sizeof(td)),
	    -1);
}

static const struct {
	const char *in;
	int want_rv;
	int64_t want;
} dur_cases[] = {
	{ "90s", 0, 90 }, { "15m", 0, 900 }, { "24h", 0, 86400 },
	{ "365d", 0, 365 * 86400 }, { "1h30m", 0, 5400 }, { "1w", 0, 604800 },
	{ "", -1, 0 }, { "0s", -1, 0 }, { "-1h", -1, 0 }, { "1.5h", -1, 0 },
	{ "h", -1, 0 }, { "10", -1, 0 }, { "1x", -1, 0 }, { " 1h", -1, 0 },
	{ "9999999999999999999s", -1, 0 }, { "99999999999999999d", -1, 0 },
};

static void
test_duration(void **state)
{
	size_t i;
	int64_t v;

	(void)state;
	for (i = 0; i < sizeof(dur_cases) / sizeof(dur_cases[0]); i++) {
		v = -7;
		if (mtls_duration_parse(dur_cases[i].in, &v) != dur_cases[i].want_rv)
			fail_msg("duration '%s': want rv %d", dur_cases[i].in,
			    dur_cases[i].want_rv);
		if (dur_cases[i].want_rv == 0 && v != dur_cases[i].want)
			fail_msg("duration '%s' = %lld, want %lld", dur_cases[i].in,
			    (long long)v, (long long)dur_cases[i].want);
	}
	assert_int_equal(mtls_duration_parse(NULL, &v), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spiffe_check),
		cmocka_unit_test(test_spiffe_length),
		cmocka_unit_test(test_rule_check),
		cmocka_unit_test(test_rule_match),
		cmocka_unit_test(test_dns_ip),
		cmocka_unit_test(test_duration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
