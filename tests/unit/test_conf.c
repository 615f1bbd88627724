/* conf.c: the ca.conf format, with hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

struct seen {
	char	text[1024];
	int	n;
};

static int
record(void *arg, const char *section, const char *key, const char *value,
    int line, struct mtls_error *err)
{
	struct seen *s = arg;
	size_t l = strlen(s->text);

	(void)err;
	snprintf(s->text + l, sizeof(s->text) - l, "%d[%s]%s=%s;", line,
	    section, key, value);
	s->n++;
	return 0;
}

static const struct {
	const char *in;
	int want_rv;
	const char *want;	/* recorded text, or the error substring */
} cases[] = {
	{ "a = 1\n", 0, "1[]a=1;" },
	{ "# c\n\n[ca]\ntrust_domain = example.org\n", 0,
	    "4[ca]trust_domain=example.org;" },
	{ "[role \"web\"]\nallow = dns:* ip:*\r\n", 0, "2[role web]allow=dns:* ip:*;" },
	{ "k = \"quoted value\"\n; semicolon comment\n", 0, "1[]k=quoted value;" },
	{ "k=v", 0, "1[]k=v;" },
	{ "[ca\nk = v\n", -1, "t.conf:1: section header" },
	{ "[role \"a]\n", -1, "t.conf:1: section name needs matching quotes" },
	{ "[role \"a\"b\"]\n", -1, "t.conf:1:" },
	{ "\n\njust words\n", -1, "t.conf:3: expected 'key = value'" },
	{ "b@d = 1\n", -1, "t.conf:1: bad key" },
	{ "[bad name]\n", -1, "t.conf:1: bad section name" },
};

static void
test_cases(void **state)
{
	struct mtls_error err;
	struct seen s;
	size_t i;
	int rv;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&s, 0, sizeof(s));
		error_clear(&err);
		rv = conf_parse(cases[i].in, strlen(cases[i].in), "t.conf", record,
		    &s, &err);
		if (rv != cases[i].want_rv)
			fail_msg("case %zu: rv %d want %d (%s)", i, rv,
			    cases[i].want_rv, err.msg);
		if (rv == 0 && strcmp(s.text, cases[i].want) != 0)
			fail_msg("case %zu: got '%s' want '%s'", i, s.text,
			    cases[i].want);
		if (rv != 0 && strstr(err.msg, cases[i].want) == NULL)
			fail_msg("case %zu: error '%s' lacks '%s'", i, err.msg,
			    cases[i].want);
	}
}

static void
test_hostile(void **state)
{
	static char big[8192];
	struct mtls_error err;
	struct seen s;
	const char nul[] = "a = 1\0b = 2\n";

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[0] = 'k';
	big[1] = '=';
	memset(&s, 0, sizeof(s));
	assert_int_equal(conf_parse(big, sizeof(big) - 1, "t.conf", record, &s,
	    &err), -1);
	assert_non_null(strstr(err.msg, "longer than"));
	assert_int_equal(conf_parse(nul, sizeof(nul) - 1, "t.conf", record, &s,
	    &err), -1);
	assert_non_null(strstr(err.msg, "NUL"));
}

/* conf_number: the one number syntax of queries, config files and
 * command lines */
static void
test_number(void **state)
{
	static const char *const bad[] = { "", "0500", "00", "+5", "-5", " 5",
	    "5 ", "0x10", "5k", "1e3", "5.0", "\t5", "1234567890123456789",
	    "99999999999999999999999" };
	int64_t v = 42;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (conf_number(bad[i], 0, INT64_MAX, &v) != -1)
			fail_msg("'%s' was read as %lld", bad[i], (long long)v);
		assert_int_equal(v, 42);	/* untouched */
	}
	assert_int_equal(conf_number("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(conf_number("500", 1, 500, &v), 0);
	assert_int_equal(v, 500);
	assert_int_equal(conf_number("501", 1, 500, &v), -1);
	assert_int_equal(conf_number("0", 1, 500, &v), -1);
	assert_int_equal(conf_number("123456789012345678", 0, INT64_MAX, &v), 0);
	assert_int_equal(v, 123456789012345678LL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_number),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
