/* identity.c: SPIFFE IDs, rules and matching, DNS names, IPs, durations. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/x509v3.h>

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

/* RFC 6125 6.4.3: a wildcard DNS SAN (id) against an expected name (rule). */
static const struct {
	const char *rule, *id;
	int want;
} expect_cases[] = {
	{ "dns:foo.example.com", "dns:*.example.com", 1 },
	{ "dns:FOO.Example.COM", "dns:*.EXAMPLE.com", 1 },
	{ "dns:foo.example.com", "dns:foo.example.com", 1 },
	{ "dns:a.b.example.com", "dns:*.example.com", 0 },	/* one label */
	{ "dns:example.com", "dns:*.example.com", 0 },
	{ "dns:.example.com", "dns:*.example.com", 0 },
	{ "dns:fooexample.com", "dns:*.example.com", 0 },
	{ "dns:foo.example.com.evil", "dns:*.example.com", 0 },
	{ "dns:foo.com", "dns:*.com", 0 },			/* *.tld */
	{ "dns:foo", "dns:*", 0 },
	{ "dns:foo.example.com", "dns:f*.example.com", 0 },	/* partial */
	{ "dns:foo.example.com", "dns:*o.example.com", 0 },
	{ "dns:foo.example.com", "dns:fo*o.example.com", 0 },
	{ "dns:a.foo.example.com", "dns:a.*.example.com", 0 },	/* not leftmost */
	{ "dns:foo.example.com", "dns:*.*.com", 0 },
	{ "dns:foo.example.com", "dns:**.example.com", 0 },
	{ "dns:xn--bcher-kva.example.com", "dns:*.example.com", 0 },	/* A-label */
	{ "dns:XN--bcher-kva.example.com", "dns:*.example.com", 0 },
	{ "dns:foo.xn--bcher-kva.example", "dns:*.xn--bcher-kva.example", 1 },
	{ "dns:foo.co.uk", "dns:*.co.uk", 1 },		/* no public suffix list */
	{ "dns:*.example.com", "dns:foo.example.com", 1 },	/* a rule */
	{ "dns:*.example.com", "dns:*.example.com", 1 },	/* allow-rule form */
	{ "dns:foo_bar.example.com", "dns:*.example.com", 1 },
	{ "dns:-foo.example.com", "dns:*.example.com", 0 },	/* bad reference */
	{ "dns:foo.example.com", "dns:*.example..com", 0 },
	{ "dns:foo.example.com", "dns:*.example.com.", 0 },
	{ "dns:foo.example.com", "spiffe://*.example.com/x", 0 },
	{ "ip:10.0.0.1", "dns:*.example.com", 0 },
	{ "cn:foo.example.com", "dns:*.example.com", 0 },
	{ "dns:foo.example.com", "cn:*.example.com", 0 },
};

static void
test_expect_wildcard(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(expect_cases) / sizeof(expect_cases[0]); i++)
		if (ids_expect_match(expect_cases[i].rule, expect_cases[i].id) !=
		    expect_cases[i].want)
			fail_msg("expect '%s' vs '%s': want %d",
			    expect_cases[i].rule, expect_cases[i].id,
			    expect_cases[i].want);
	/* an allow rule for one name is not met by a wildcard certificate */
	assert_int_equal(mtls_rule_match("dns:foo.example.com",
	    "dns:*.example.com"), 0);
	assert_int_equal(ids_expect_match(NULL, "dns:*.example.com"), 0);
	assert_int_equal(ids_expect_match("dns:foo.example.com", NULL), 0);
}

/* rules_match: the one loop behind verify.c's expect and allow rules, the
 * client's expected name, a CA role, ca serve's --admin and the gateway's
 * routes. */
static void
test_rules_match(void **state)
{
	char *rules[] = { "spiffe://example.org/db", "dns:*.example.org",
	    "ip:10.0.0.1", "dns:*", "dns:api.example.org" };
	const char *ids[] = { "cn:x", "dns:a.example.org", NULL,
	    "ip:10.0.0.1" };
	const char *one = "spiffe://example.org/db";
	const char *wild[] = { "dns:*.example.org" };
	const char *any_ip[] = { "ip:192.0.2.7" };
	struct ids set;

	(void)state;
	/* the index of the first rule met by any identity */
	assert_int_equal(rules_match(rules, 5, ids, 4, 0), 1);
	assert_int_equal(rules_match(rules + 2, 3, ids, 4, 0), 0);
	assert_int_equal(rules_match(rules, 5, &one, 1, 0), 0);
	assert_int_equal(rules_match(rules, 5, ids, 1, 0), -1);
	assert_int_equal(rules_match(rules, 0, ids, 4, 0), -1);
	assert_int_equal(rules_match(rules, 5, ids, 0, 0), -1);
	/* a NULL identity matches nothing */
	assert_int_equal(rules_match(rules, 5, ids + 2, 1, 0), -1);
	/* "dns:*" and "ip:*" are any name only in a CA role */
	assert_int_equal(rules_match(rules + 3, 1, ids + 1, 1, 0), -1);
	assert_int_equal(rules_match(rules + 3, 1, ids + 1, 1, RULE_ROLE), 0);
	{
		char *ipr[] = { "ip:*" };

		assert_int_equal(rules_match(ipr, 1, any_ip, 1, 0), -1);
		assert_int_equal(rules_match(ipr, 1, any_ip, 1, RULE_ROLE), 0);
		assert_int_equal(rules_match(ipr, 1, ids + 1, 1, RULE_ROLE),
		    -1);
	}
	/* a wildcard SAN meets an expected name, never an allow rule */
	assert_int_equal(rules_match(rules + 4, 1, wild, 1, 0), -1);
	assert_int_equal(rules_match(rules + 4, 1, wild, 1, RULE_EXPECT), 0);
	/* over a struct ids */
	memset(&set, 0, sizeof(set));
	assert_int_equal(ids_add(&set, "", "dns:a.example.org", 17), 0);
	assert_int_equal(ids_add(&set, "", "ip:10.0.0.1", 11), 0);
	assert_int_equal(rules_match_ids(rules, 5, &set, 0), 1);
	assert_int_equal(rules_match_ids(rules + 2, 1, &set, 0), 0);
	assert_int_equal(rules_match_ids(rules, 1, &set, 0), -1);
	ids_free(&set);
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

#define S(lit)	lit, sizeof(lit) - 1	/* a literal and its length */

/* ids_from_cert on a certificate built here: one SAN of <type> holding
 * <len> bytes of <v>, and subject CN <cn> (NULL: none). */
static const struct {
	int type;		/* GEN_URI, GEN_DNS; 0: no SAN */
	const char *v;
	size_t len;
	const char *cn;
	int want_bad;		/* bad_uri + bad_other */
	const char *want_id;	/* an identity that must be there, or NULL */
	const char *want_absent;	/* one that must not be */
	const char *want_reason;	/* substring of ids.bad */
} name_cases[] = {
	{ GEN_URI, S("spiffe://example.org/a"), NULL, 0,
	    "spiffe://example.org/a", NULL, NULL },
	{ GEN_URI, S("spiffe://example.org/a\r\nX-Injected: 1"), NULL, 1,
	    NULL, NULL, "URI SAN 'spiffe://example.org/a\\x0d\\x0aX-Injected:"
	    "\\x201'" },
	{ GEN_URI, S("spiffe://example.org/a\0b"), NULL, 1, NULL, NULL,
	    "\\x00b" },
	{ GEN_URI, S("spiffe://example.org/a\x7f"), NULL, 1, NULL, NULL,
	    "\\x7f" },
	{ GEN_URI, S("spiffe://example.org/\xc3\xa9"), NULL, 1, NULL, NULL,
	    "\\xc3\\xa9" },
	{ GEN_DNS, S("api.example.org"), NULL, 0, "dns:api.example.org",
	    NULL, NULL },
	{ GEN_DNS, S("api example.org"), NULL, 1, NULL, NULL,
	    "DNS SAN 'api\\x20example.org'" },
	{ GEN_DNS, S("api.example.org\t"), NULL, 1, NULL, NULL, "\\x09" },
	{ GEN_DNS, S("a'b\\c d"), NULL, 1, NULL, NULL,
	    "a\\x27b\\x5cc\\x20d" },
	{ 0, NULL, 0, "api.example.org", 0, "cn:api.example.org", NULL, NULL },
	{ 0, NULL, 0, "Jane Doe", 0, NULL, "cn:Jane Doe", NULL },
	{ 0, NULL, 0, "Jos\xc3\xa9", 0, NULL, "cn:Jos\xc3\xa9", NULL },
	{ 0, NULL, 0, "evil\r\nX-Injected: 1", 1, NULL, NULL,
	    "subject CN 'evil\\x0d\\x0a" },
};

static X509 *
cert_with(int type, const char *v, size_t len, const char *cn)
{
	X509 *x = X509_new();
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();

	assert_non_null(x);
	if (type != 0) {
		assert_true(ASN1_STRING_set(s, v, (int)len));
		GENERAL_NAME_set0_value(g, type, s);
		s = NULL;
		g = (sk_GENERAL_NAME_push(gens, g), NULL);
		assert_true(X509_add1_ext_i2d(x, NID_subject_alt_name, gens,
		    0, 0));
	}
	if (cn != NULL)
		assert_true(X509_NAME_add_entry_by_txt(X509_get_subject_name(x),
		    "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0));
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(g);
	GENERAL_NAMES_free(gens);
	return x;
}

static void
test_names_from_cert(void **state)
{
	struct mtls_error err;
	struct ids ids;
	size_t i, j;
	int has, absent;

	(void)state;
	for (i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		X509 *x = cert_with(name_cases[i].type, name_cases[i].v,
		    name_cases[i].len, name_cases[i].cn);

		assert_int_equal(ids_from_cert(x, &ids, &err), 0);
		for (has = 0, absent = 1, j = 0; j < ids.n; j++) {
			const unsigned char *p = (const unsigned char *)ids.v[j];

			for (; *p; p++)	/* no identity has a byte to escape */
				if (*p < 0x21 || *p >= 0x7f)
					fail_msg("case %zu: identity with byte "
					    "0x%02x", i, *p);
			if (name_cases[i].want_id != NULL &&
			    strcmp(ids.v[j], name_cases[i].want_id) == 0)
				has = 1;
			if (name_cases[i].want_absent != NULL &&
			    strcmp(ids.v[j], name_cases[i].want_absent) == 0)
				absent = 0;
		}
		if ((int)(ids.bad_uri + ids.bad_other) != name_cases[i].want_bad)
			fail_msg("case %zu: %zu refused names, want %d", i,
			    ids.bad_uri + ids.bad_other, name_cases[i].want_bad);
		if (name_cases[i].want_id != NULL && !has)
			fail_msg("case %zu: no identity %s", i,
			    name_cases[i].want_id);
		if (!absent)
			fail_msg("case %zu: %s is an identity", i,
			    name_cases[i].want_absent);
		if (name_cases[i].want_reason != NULL && (ids.bad == NULL ||
		    strstr(ids.bad, name_cases[i].want_reason) == NULL))
			fail_msg("case %zu: reason '%s', want '%s'", i,
			    ids.bad ? ids.bad : "(none)",
			    name_cases[i].want_reason);
		ids_free(&ids);
		X509_free(x);
	}
}

static void
test_name_escape(void)
{
	char out[16];
	const int f = ESC_SQUOTE | ESC_DQUOTE | ESC_SPACE;

	esc_text(out, sizeof(out), "ab\r\n", 4, SIZE_MAX, f);
	assert_string_equal(out, "ab\\x0d\\x0a");
	/* cut, never mid-escape, always terminated */
	esc_text(out, sizeof(out), "\n\n\n\n\n\n", 6, SIZE_MAX, f);
	assert_string_equal(out, "\\x0a\\x0a\\x0a...");
	esc_text(out, 1, "x", 1, SIZE_MAX, f);
	assert_string_equal(out, "");
}

static void
test_scope_oid(void **state)
{
	static const struct { const char *oid; int want; } c[] = {
		{ "1.3.6.1.4.1.32473.6857.1", 0 },
		{ "1.3.6.1.4.1.99999.7.1", 0 },
		{ "2.25.2147483647", 0 },
		{ "2.25.2147483648", -1 },	/* arc over 31 bits */
		{ "2.25.199447486927615877784465314696394383395", -1 },
		{ "1.3", -1 },			/* too few arcs */
		{ "3.1.1", -1 },		/* first arc 0..2 */
		{ "1.40.1", -1 },		/* second arc < 40 under 0, 1 */
		{ "1.3.06.1", -1 },		/* leading zero */
		{ "1.3..1", -1 },
		{ "1.3.6.", -1 },
		{ "1.3.6.1 ", -1 },
		{ "", -1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		if (profile_scope_oid_check(c[i].oid) != c[i].want)
			fail_msg("scope oid '%s': want %d", c[i].oid, c[i].want);
	assert_int_equal(profile_scope_oid_check(profile_scope_oid_default()), 0);
	assert_int_equal(profile_scope_oid_check(NULL), -1);
	test_name_escape();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spiffe_check),
		cmocka_unit_test(test_spiffe_length),
		cmocka_unit_test(test_rule_check),
		cmocka_unit_test(test_rule_match),
		cmocka_unit_test(test_expect_wildcard),
		cmocka_unit_test(test_rules_match),
		cmocka_unit_test(test_dns_ip),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_names_from_cert),
		cmocka_unit_test(test_scope_oid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
