/* src/svc/cert/cert.c: the rules of `mtls cert export`, and files that
 * cannot be read changing nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cert/cert.h"

static const struct {
	int		 fmt;
	const char	*cert, *key, *password_file, *out;
	int		 want_rv;
	const char	*want_msg;	/* a part of the message */
} check_cases[] = {
	{ EXPORT_P12, "c.pem", "k.pem", "pw", "o.p12", 0, NULL },
	{ EXPORT_PEM, "c.pem", "k.pem", NULL, "o.pem", 0, NULL },
	{ EXPORT_DER, "c.pem", NULL, NULL, NULL, 0, NULL },
	{ EXPORT_K8S, "c.pem", "k.pem", NULL, NULL, 0, NULL },
	/* hostile */
	{ 0, "c.pem", "k.pem", NULL, NULL, -1, "--format p12|pem|der|k8s" },
	{ 99, "c.pem", "k.pem", NULL, NULL, -1, "--format p12|pem|der|k8s" },
	{ EXPORT_DER, NULL, NULL, NULL, NULL, -1, "give --cert" },
	{ EXPORT_K8S, "c.pem", NULL, NULL, NULL, -1, "--format k8s needs --key" },
	{ EXPORT_P12, "c.pem", "k.pem", NULL, "o.p12", -1,
	    "needs --password-file" },
	{ EXPORT_P12, "c.pem", "k.pem", "pw", NULL, -1, "p12 needs --out" },
	/* the key never goes to standard output */
	{ EXPORT_PEM, "c.pem", "k.pem", NULL, NULL, -1, "give --out" },
};

static void
test_export_check(void **state)
{
	struct cert_export_opts o;
	struct mtls_error err;
	size_t i;
	int rv;

	(void)state;
	for (i = 0; i < sizeof(check_cases) / sizeof(check_cases[0]); i++) {
		memset(&o, 0, sizeof(o));
		o.fmt = check_cases[i].fmt;
		o.cert = check_cases[i].cert;
		o.key = check_cases[i].key;
		o.password_file = check_cases[i].password_file;
		o.out = check_cases[i].out;
		error_clear(&err);
		rv = cert_export_check(&o, &err);
		if (rv != check_cases[i].want_rv)
			fail_msg("case %zu: %d, want %d (%s)", i, rv,
			    check_cases[i].want_rv, err.msg);
		if (rv != 0) {
			assert_int_equal(err.code, MTLS_ERR_ARG);
			if (strstr(err.msg, check_cases[i].want_msg) == NULL)
				fail_msg("case %zu: '%s' lacks '%s'", i, err.msg,
				    check_cases[i].want_msg);
		}
	}
}

/* A certificate file that cannot be read: the export fails naming it,
 * writes nothing and hands back no bytes. */
static void
test_export_unreadable(void **state)
{
	char dir[] = "/tmp/test_cert.XXXXXX", out[64];
	struct cert_export_opts o;
	struct mtls_error err;
	uint8_t *buf = (uint8_t *)"x";
	size_t len = 1;
	int n = 1;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(out, sizeof(out), "%s/o.pem", dir);
	memset(&o, 0, sizeof(o));
	o.fmt = EXPORT_DER;
	o.cert = "/nonexistent/c.pem";
	o.out = out;
	error_clear(&err);
	assert_int_equal(cert_export_file(&o, &buf, &len, &n, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/c.pem"));
	assert_null(buf);
	assert_int_equal(len, 0);
	assert_int_equal(access(out, F_OK), -1);
	rmdir(dir);
}

static void
test_inspect_unreadable(void **state)
{
	struct mtls_error err;

	(void)state;
	error_clear(&err);
	assert_null(cert_inspect_file("/nonexistent/c.pem", NULL, 0, &err));
	assert_non_null(strstr(err.msg, "/nonexistent/c.pem"));
	error_clear(&err);
	assert_null(cert_inspect_file("/nonexistent/c.p12",
	    "/nonexistent/pw", 0, &err));
	assert_non_null(strstr(err.msg, "/nonexistent/pw"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_export_check),
		cmocka_unit_test(test_export_unreadable),
		cmocka_unit_test(test_inspect_unreadable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
