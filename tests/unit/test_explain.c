/* src/svc/doctor/explain.c: what doctor connect saw -> one taxonomy code,
 * headline and fix, without a network (rows that would run probes, a
 * refused ClientHello, are left to 60-doctor and 62-doctor-peers-matrix). */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

#define F_HELLO	0x01	/* saw_server_hello */
#define F_CR	0x02	/* saw_cr */
#define F_SENT	0x04	/* sent_cert */
#define F_EMPTY	0x08	/* sent_empty_cert */
#define F_TIME	0x10	/* timed_out */
#define F_EOF	0x20	/* eof */
#define F_HAVE	0x40	/* we have --cert */

static const struct {
	const char	*name;
	int		 flags;
	const char	*gai_err;
	int		 connect_errno;
	const char	*first;		/* what the server sent first */
	int		 alert_in;	/* -1: none */
	unsigned long	 ossl_reason;
	long		 chain_limit;
	const char	*want_code;
	const char	*want_text;	/* a part of the headline */
	const char	*want_fix;	/* a part of the fix, or NULL */
} fail_cases[] = {
	{ "dns", 0, "Name or service not known", 0, NULL, -1, 0, 0,
	    "connect_failed", "cannot resolve 'h.example'", "host name" },
	{ "refused", 0, NULL, ECONNREFUSED, NULL, -1, 0, 0,
	    "connect_failed", "nothing listens on h.example:443", "port" },
	{ "connect timeout", F_TIME, NULL, ETIMEDOUT, NULL, -1, 0, 0,
	    "connect_failed", "timed out after 3000 ms", "firewall" },
	{ "plain HTTP", 0, NULL, 0, "HTTP/1.1 400 Bad Request\r\n", -1, 0, 0,
	    "not_tls", "plain HTTP (\"HTTP/1.1 400 Bad Request\")",
	    "http://" },
	{ "ssh", 0, NULL, 0, "SSH-2.0-OpenSSH_9.2\r\n", -1, 0, 0,
	    "not_tls", "not TLS (\"SSH-2.0-OpenSSH_9.2\")", "TLS port" },
	/* hostile: terminal escapes are never copied */
	{ "escape bytes", 0, NULL, 0, "\x1b]0;pwned\x07", -1, 0, 0,
	    "not_tls", "(\".]0;pwned.\")", NULL },
	{ "unrecognized_name", 0, NULL, 0, "\x15", SSL_AD_UNRECOGNIZED_NAME,
	    0, 0, "identity_mismatch", "does not serve the name 'h.example'",
	    "--servername" },
	{ "certificate required, none given", F_HELLO | F_CR, NULL, 0,
	    "\x16", SSL_AD_CERTIFICATE_REQUIRED, 0, 0, "no_client_cert",
	    "(alert certificate_required)", "--cert and --key" },
	{ "our empty Certificate refused", F_HELLO | F_CR | F_SENT | F_EMPTY |
	    F_HAVE, NULL, 0, "\x16", SSL_AD_HANDSHAKE_FAILURE, 0, 0,
	    "no_client_cert", "(alert handshake_failure)", NULL },
	{ "unknown_ca", F_HELLO | F_CR | F_SENT | F_HAVE, NULL, 0, "\x16",
	    SSL_AD_UNKNOWN_CA, 0, 0, "peer_rejected_our_cert",
	    "with alert unknown_ca (48)", "client-CA bundle" },
	{ "access_denied", F_HELLO | F_CR | F_SENT | F_HAVE, NULL, 0, "\x16",
	    SSL_AD_ACCESS_DENIED, 0, 0, "peer_rejected_our_cert",
	    "access_denied (49)", "allow rules" },
	{ "an alert before any certificate", F_HELLO, NULL, 0, "\x16",
	    SSL_AD_INTERNAL_ERROR, 0, 0, "no_shared_algorithm",
	    "alert internal_error (80)", "logs" },
	/* hostile: a description no RFC defines */
	{ "alert 253", F_HELLO, NULL, 0, "\x16", 253, 0, 0,
	    "no_shared_algorithm", "unknown_alert (253)", NULL },
	{ "handshake timeout, silent", F_TIME, NULL, 0, NULL, -1, 0, 0,
	    "handshake_timeout", "(0 bytes received)", "speaks TLS" },
	{ "handshake timeout, stalled", F_TIME | F_HELLO, NULL, 0, "\x16", -1,
	    0, 0, "handshake_timeout", "(1 bytes received)", "stalled" },
	{ "closed at once", F_EOF, NULL, 0, NULL, -1, 0, 0, "not_tls",
	    "without answering our ClientHello", NULL },
	{ "closed after our certificate", F_EOF | F_HELLO | F_CR | F_SENT |
	    F_HAVE, NULL, 0, "\x16", -1, 0, 0, "peer_rejected_our_cert",
	    "without an alert", NULL },
	{ "chain over max_cert_list", F_HELLO, NULL, 0, "\x16", -1,
	    SSL_R_EXCESSIVE_MESSAGE_SIZE, 102400, "chain_too_large",
	    "102400-byte (100 KiB)", NULL },
	{ "wrong version number", 0, NULL, 0, "\x16", -1,
	    SSL_R_WRONG_VERSION_NUMBER, 0, "not_tls", "does not speak TLS",
	    "TLS port" },
	{ "lost", 0, NULL, 0, "\x16", -1, 0, 0, "no_shared_algorithm",
	    "the connection was lost", NULL },
};

static const char *
field(json_t *f, const char *k)
{
	const char *s = json_string_value(json_object_get(f, k));

	return s ? s : "";
}

static void
test_failure(void **state)
{
	struct attempt a;
	size_t i;
	json_t *findings, *f;

	(void)state;
	for (i = 0; i < sizeof(fail_cases) / sizeof(fail_cases[0]); i++) {
		int fl = fail_cases[i].flags;

		memset(&a, 0, sizeof(a));
		a.fd = -1;
		a.alert_in = a.alert_in_after_cert = a.alert_out = -1;
		a.saw_server_hello = !!(fl & F_HELLO);
		a.saw_cr = !!(fl & F_CR);
		a.sent_cert = !!(fl & F_SENT);
		a.sent_empty_cert = !!(fl & F_EMPTY);
		a.timed_out = !!(fl & F_TIME);
		a.eof = !!(fl & F_EOF);
		if (fail_cases[i].gai_err)
			snprintf(a.gai_err, sizeof(a.gai_err), "%s",
			    fail_cases[i].gai_err);
		a.connect_errno = fail_cases[i].connect_errno;
		if (fail_cases[i].first) {
			a.nfirst = strlen(fail_cases[i].first);
			memcpy(a.first, fail_cases[i].first, a.nfirst);
		}
		a.alert_in = fail_cases[i].alert_in;
		a.ossl_reason = fail_cases[i].ossl_reason;
		a.chain_limit = fail_cases[i].chain_limit;
		if (a.ossl_reason == SSL_R_WRONG_VERSION_NUMBER)
			snprintf(a.ossl_text, sizeof(a.ossl_text), "error:"
			    "0A00010B:SSL routines::wrong version number");
		assert_non_null(findings = json_array());
		explain_failure(&a, NULL, !!(fl & F_HAVE), "h.example", "443",
		    "h.example", 3000, NULL, NULL, findings);
		if (json_array_size(findings) != 1)
			fail_msg("%s: %zu findings, want 1", fail_cases[i].name,
			    json_array_size(findings));
		f = json_array_get(findings, 0);
		if (strcmp(field(f, "severity"), "error") != 0 ||
		    strcmp(field(f, "code"), fail_cases[i].want_code) != 0 ||
		    strstr(field(f, "text"), fail_cases[i].want_text) == NULL ||
		    (fail_cases[i].want_fix != NULL && strstr(field(f, "fix"),
		    fail_cases[i].want_fix) == NULL) ||
		    strchr(field(f, "text"), '\x1b') != NULL)
			fail_msg("%s: %s '%s' fix '%s'", fail_cases[i].name,
			    field(f, "code"), field(f, "text"),
			    field(f, "fix"));
		json_decref(findings);
	}
}

static const struct {
	int		 sent, empty, alert;
	const char	*want_code, *want_text;
} refusal_cases[] = {
	{ 0, 0, SSL_AD_CERTIFICATE_REQUIRED, "no_client_cert",
	    "(alert certificate_required)" },
	{ 1, 1, -1, "no_client_cert", "(it closed the connection)" },
	{ 1, 0, SSL_AD_BAD_CERTIFICATE, "peer_rejected_our_cert",
	    "bad_certificate (42)" },
	{ 1, 0, -1, "peer_rejected_our_cert", "right after the handshake" },
};

static void
test_refusal(void **state)
{
	struct attempt a;
	json_t *findings, *f;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refusal_cases) / sizeof(refusal_cases[0]);
	    i++) {
		memset(&a, 0, sizeof(a));
		a.sent_cert = refusal_cases[i].sent;
		a.sent_empty_cert = refusal_cases[i].empty;
		a.alert_in_after_cert = refusal_cases[i].alert;
		assert_non_null(findings = json_array());
		explain_refusal(&a, findings);
		f = json_array_get(findings, 0);
		if (strcmp(field(f, "code"), refusal_cases[i].want_code) != 0 ||
		    strstr(field(f, "text"), refusal_cases[i].want_text) ==
		    NULL)
			fail_msg("refusal %zu: %s '%s'", i, field(f, "code"),
			    field(f, "text"));
		json_decref(findings);
	}
}

/* GnuTLS answers access_denied to every verification failure: our own
 * expired certificate is the cause, and moves first. */
static void
test_ours_first(void **state)
{
	json_t *findings;

	(void)state;
	assert_non_null(findings = json_array());
	finding_add(findings, "error", "peer_rejected_our_cert",
	    "client certificate", "add it to the allow rules", "refused");
	finding_add(findings, "warn", NULL, "x", NULL, "a warning");
	finding_add(findings, "error", "cert_expired", "our chain", "renew",
	    "expired");
	explain_ours_first(findings, 1);
	assert_string_equal(field(json_array_get(findings, 0), "code"),
	    "cert_expired");
	assert_string_equal(field(json_array_get(findings, 1), "code"),
	    "peer_rejected_our_cert");
	assert_non_null(strstr(field(json_array_get(findings, 1), "fix"),
	    "(cert_expired): fix that first"));
	assert_string_equal(findings_result(findings), "cert_expired");
	json_decref(findings);
}

static void
test_http(void **state)
{
	struct attempt a;
	json_t *report, *findings;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.saw_cr = 1;
	a.http_status = 400;
	snprintf(a.http_resp, sizeof(a.http_resp), "HTTP/1.1 400 Bad Request"
	    "\r\nServer: nginx\r\n\r\n<html>No required SSL certificate was "
	    "sent</html>");
	assert_non_null(report = json_object());
	assert_non_null(findings = json_array());
	explain_http(&a, report, findings);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    report, "http"), "status")), 400);
	assert_string_equal(field(json_object_get(report, "http"),
	    "status_line"), "HTTP/1.1 400 Bad Request");
	assert_string_equal(findings_result(findings), "no_client_cert");
	json_decref(report);
	json_decref(findings);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failure),
		cmocka_unit_test(test_refusal),
		cmocka_unit_test(test_ours_first),
		cmocka_unit_test(test_http),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
