/* src/svc/agent/opts.c: what an agent's options must hold before it
 * starts, whoever filled them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agent/opts.h"

static const struct {
	const char	*ca_url, *out_dir, *token, *cert, *key;
	int		 want_rv;
	const char	*want_msg;
} cases[] = {
	{ "https://ca:8443", "d", "t", NULL, NULL, 0, NULL },
	{ "https://ca:8443", "d", NULL, "c", "k", 0, NULL },
	/* hostile */
	{ "http://ca:8443", "d", "t", NULL, NULL, -1, "must be https://" },
	{ "HTTPS://ca", "d", "t", NULL, NULL, -1, "must be https://" },
	{ "https:/ca", "d", "t", NULL, NULL, -1, "must be https://" },
	{ "", "d", "t", NULL, NULL, -1, "must be https://" },
	{ NULL, "d", "t", NULL, NULL, -1, "give --ca-url and --out-dir" },
	{ "https://ca", NULL, "t", NULL, NULL, -1,
	    "give --ca-url and --out-dir" },
	{ "https://ca", "d", NULL, NULL, NULL, -1, "give --token-file" },
	{ "https://ca", "d", "t", "c", "k", -1, "give --token-file" },
	{ "https://ca", "d", NULL, "c", NULL, -1, "give --token-file" },
	{ "https://ca", "d", "t", NULL, "k", -1, "give --token-file" },
};

static void
test_opts_check(void **state)
{
	struct agent_opts o;
	struct mtls_error err;
	size_t i;
	int rv;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&o, 0, sizeof(o));
		o.ca_url = cases[i].ca_url;
		o.out_dir = cases[i].out_dir;
		o.token_file = cases[i].token;
		o.cert = cases[i].cert;
		o.key = cases[i].key;
		error_clear(&err);
		rv = agent_opts_check(&o, &err);
		if (rv != cases[i].want_rv)
			fail_msg("case %zu: %d, want %d (%s)", i, rv,
			    cases[i].want_rv, err.msg);
		if (rv != 0) {
			assert_int_equal(err.code, MTLS_ERR_ARG);
			if (strstr(err.msg, cases[i].want_msg) == NULL)
				fail_msg("case %zu: '%s' lacks '%s'", i, err.msg,
				    cases[i].want_msg);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opts_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
