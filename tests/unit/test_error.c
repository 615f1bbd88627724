/* error.c: the taxonomy table and the error setters. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

static void
test_every_code_has_a_row(void **state)
{
	int i, j;

	(void)state;
	for (i = 0; i < MTLS_FAIL_COUNT; i++) {
		const char *n = mtls_fail_name(i);

		assert_non_null(n);
		assert_true(strlen(n) > 1);
		assert_string_not_equal(n, "unknown");
		if (i != MTLS_FAIL_NONE)
			assert_true(strlen(mtls_fail_hint(i)) > 10);
		assert_int_equal(mtls_fail_from_name(n), i);
		for (j = 0; j < i; j++)
			assert_string_not_equal(n, mtls_fail_name(j));
	}
	assert_string_equal(mtls_fail_name(MTLS_FAIL_COUNT), "unknown");
	assert_string_equal(mtls_fail_name(-1), "unknown");
	assert_int_equal(mtls_fail_from_name("no_such_code"), -1);
	assert_string_equal(mtls_fail_name(MTLS_FAIL_CERT_EXPIRED),
	    "cert_expired");
	assert_string_equal(mtls_fail_name(MTLS_FAIL_NOT_AUTHORIZED),
	    "not_authorized");
	/* appended (issue 18): the codes before it keep their numbers */
	assert_int_equal(MTLS_FAIL_CHAIN_TOO_LARGE, MTLS_FAIL_CONNECT_FAILED + 1);
	assert_string_equal(mtls_fail_name(MTLS_FAIL_CHAIN_TOO_LARGE),
	    "chain_too_large");
	/* appended (issue 16) */
	assert_int_equal(MTLS_FAIL_TRUST_DOMAIN_MISMATCH,
	    MTLS_FAIL_CHAIN_TOO_LARGE + 1);
	assert_string_equal(mtls_fail_name(MTLS_FAIL_TRUST_DOMAIN_MISMATCH),
	    "trust_domain_mismatch");
}

static void
test_setters(void **state)
{
	struct mtls_error e;
	char big[600];

	(void)state;
	error_clear(&e);
	assert_int_equal(error_set(&e, MTLS_ERR_PARSE, "%s: bad", "x.pem"), -1);
	assert_int_equal(e.code, MTLS_ERR_PARSE);
	assert_string_equal(e.msg, "x.pem: bad");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	error_set(&e, MTLS_ERR_ARG, "%s", big);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);	/* truncated */
	errno = ENOENT;
	error_set_errno(&e, MTLS_ERR_IO, "%s: cannot open", "y");
	assert_string_equal(e.msg, "y: cannot open: No such file or directory");
	assert_int_equal(e.sys, ENOENT);	/* the kind, for callers */
	errno = ENOSPC;
	error_set_errno(&e, MTLS_ERR_IO, "%s: cannot write", "z");
	assert_int_equal(e.sys, ENOSPC);
	error_set(&e, MTLS_ERR_IO, "no errno here");
	assert_int_equal(e.sys, 0);		/* never a stale one */
	error_fail(&e, MTLS_FAIL_REVOKED, "leaf revoked");
	assert_int_equal(e.code, MTLS_ERR_VERIFY);
	assert_int_equal(e.fail, MTLS_FAIL_REVOKED);
	error_clear(&e);
	assert_int_equal(e.fail, MTLS_FAIL_NONE);
	assert_int_equal(e.sys, 0);
	assert_string_equal(e.msg, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_code_has_a_row),
		cmocka_unit_test(test_setters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
