/* src/svc/doctor/trace.c and connect.c: the doctor's byte parser of a
 * Certificate message, alert names, and the HOST:PORT split. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

static const struct {
	int		 alert;
	const char	*want;
} alert_cases[] = {
	{ SSL_AD_CLOSE_NOTIFY, "close_notify" },
	{ SSL_AD_HANDSHAKE_FAILURE, "handshake_failure" },
	{ SSL_AD_BAD_CERTIFICATE, "bad_certificate" },
	{ SSL_AD_UNKNOWN_CA, "unknown_ca" },
	{ SSL_AD_ACCESS_DENIED, "access_denied" },
	{ SSL_AD_DECODE_ERROR, "decode_error" },
	{ SSL_AD_PROTOCOL_VERSION, "protocol_version" },
	{ SSL_AD_USER_CANCELLED, "user_canceled" },	/* RFC spelling */
	{ SSL_AD_UNRECOGNIZED_NAME, "unrecognized_name" },
	{ SSL_AD_CERTIFICATE_REQUIRED, "certificate_required" },
	{ SSL_AD_NO_APPLICATION_PROTOCOL, "no_application_protocol" },
	{ 116, "certificate_required" },	/* RFC 8446 §6: the wire value */
	/* hostile: a server sends any byte */
	{ 255, "unknown_alert" },
	{ 1, "unknown_alert" },
	{ -1, "unknown_alert" },
};

static void
test_alert_names(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(alert_cases) / sizeof(alert_cases[0]); i++)
		assert_string_equal(trace_alert_name(alert_cases[i].alert),
		    alert_cases[i].want);
}

/* TLS 1.2 Certificate: type, len24, list len24, then len24 + DER each.
 * TLS 1.3 adds a context (len8) and per certificate extensions (len16). */
static const unsigned char m12_two[] = {
	11, 0, 0, 12, 0, 0, 9, 0, 0, 1, 0xAA, 0, 0, 2, 0xBB, 0xCC,
};
static const unsigned char m12_empty[] = { 11, 0, 0, 3, 0, 0, 0 };
static const unsigned char m13_one[] = {
	11, 0, 0, 10, 0, 0, 0, 6, 0, 0, 1, 0xAA, 0, 0,
};
static const unsigned char m13_ctx[] = {
	11, 0, 0, 12, 2, 7, 7, 0, 0, 6, 0, 0, 1, 0xAA, 0, 0,
};
/* hostile */
static const unsigned char bad_listlen[] = { 11, 0, 0, 7, 0, 0, 9, 0, 0, 1 };
static const unsigned char bad_certlen[] = {
	11, 0, 0, 7, 0, 0, 4, 0, 0, 9, 0xAA,
};
static const unsigned char bad_ext[] = {
	11, 0, 0, 9, 0, 0, 0, 5, 0, 0, 1, 0xAA, 0, 9,
};
static const unsigned char bad_ctx[] = { 11, 0, 0, 1, 200 };
static const unsigned char bad_short[] = { 11, 0, 0 };

static const struct {
	const char		*name;
	const unsigned char	*p;
	size_t			 len;
	int			 tls13;
	int			 want;
} msg_cases[] = {
	{ "1.2 two", m12_two, sizeof(m12_two), 0, 2 },
	{ "1.2 empty", m12_empty, sizeof(m12_empty), 0, 0 },
	{ "1.3 one", m13_one, sizeof(m13_one), 1, 1 },
	{ "1.3 context", m13_ctx, sizeof(m13_ctx), 1, 1 },
	{ "list past the end", bad_listlen, sizeof(bad_listlen), 0, -1 },
	{ "certificate past the list", bad_certlen, sizeof(bad_certlen), 0,
	    -1 },
	{ "extensions past the list", bad_ext, sizeof(bad_ext), 1, -1 },
	{ "context past the end", bad_ctx, sizeof(bad_ctx), 1, -1 },
	{ "shorter than a header", bad_short, sizeof(bad_short), 0, -1 },
};

static void
test_cert_msg_count(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(msg_cases) / sizeof(msg_cases[0]); i++) {
		int n = doctor_cert_msg_count(msg_cases[i].p, msg_cases[i].len,
		    msg_cases[i].tls13);

		if (n != msg_cases[i].want)
			fail_msg("%s: %d, want %d", msg_cases[i].name, n,
			    msg_cases[i].want);
	}
}

static const struct {
	const char	*in;
	int		 want_rv;
	const char	*want_host, *want_port;
} hp_cases[] = {
	{ "localhost:443", 0, "localhost", "443" },
	{ "10.0.0.1:8443", 0, "10.0.0.1", "8443" },
	{ "[::1]:443", 0, "::1", "443" },
	{ "a:b:443", 0, "a:b", "443" },	/* the last colon splits */
	/* hostile */
	{ "nocolon", -1, NULL, NULL },
	{ ":443", -1, NULL, NULL },
	{ "host:", -1, NULL, NULL },
	{ "host:44x", -1, NULL, NULL },
	{ "host:-1", -1, NULL, NULL },
	{ "[::1]443", -1, NULL, NULL },
	{ "[::1", -1, NULL, NULL },
	{ "[]:443", -1, NULL, NULL },
};

static void
test_split_hostport(void **state)
{
	char host[256], port[16];
	size_t i;
	int rv;

	(void)state;
	for (i = 0; i < sizeof(hp_cases) / sizeof(hp_cases[0]); i++) {
		rv = doctor_split_hostport(hp_cases[i].in, host, sizeof(host),
		    port, sizeof(port));
		if (rv != hp_cases[i].want_rv)
			fail_msg("%s: %d, want %d", hp_cases[i].in, rv,
			    hp_cases[i].want_rv);
		if (rv == 0) {
			assert_string_equal(host, hp_cases[i].want_host);
			assert_string_equal(port, hp_cases[i].want_port);
		}
	}
}

static void
test_version_names(void **state)
{
	(void)state;
	assert_string_equal(trace_version_name(TLS1_2_VERSION), "TLS 1.2");
	assert_string_equal(trace_version_name(TLS1_3_VERSION), "TLS 1.3");
	assert_string_equal(trace_version_name(0x7f1c), "an unknown version");
	assert_string_equal(trace_scheme_name(0x0804), "rsa_pss_rsae_sha256");
	assert_null(trace_scheme_name(0xfefe));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alert_names),
		cmocka_unit_test(test_cert_msg_count),
		cmocka_unit_test(test_split_hostport),
		cmocka_unit_test(test_version_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
