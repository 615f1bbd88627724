/* tls.c: a client's kept session is dropped once it can no longer resume. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/ssl.h>

#include "internal.h"

static void
test_session_expiry(void **state)
{
	SSL_SESSION *s = SSL_SESSION_new();
	time_t t0 = 1700000000;

	(void)state;
	assert_non_null(s);
	assert_int_equal(SSL_SESSION_set_time(s, (long)t0), (long)t0);
	assert_int_equal(SSL_SESSION_set_timeout(s, 300), 1);
	/* no lifetime hint: the session's own timeout decides */
	assert_false(tls_session_expired(s, t0));
	assert_false(tls_session_expired(s, t0 + 299));
	assert_true(tls_session_expired(s, t0 + 300));
	assert_true(tls_session_expired(s, t0 + 86400));
	SSL_SESSION_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_expiry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
