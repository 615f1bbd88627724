/* src/svc/http/norm.c: the request head's grammar and normal forms. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "http/http.h"

static const struct {
	const char *in;
	int want_st;
	const char *want;	/* normalized target (path and query) */
	size_t want_plen;
	const char *want_why;
} target_cases[] = {
	{ "/", 0, "/", 1, NULL },
	{ "/app/admin/panel", 0, "/app/admin/panel", 16, NULL },
	/* issue 12 item 2: routed as /app, decoded upstream to /app/admin */
	{ "/app/%61dmin/panel", 0, "/app/admin/panel", 16, NULL },
	{ "/a/%7e%2D%5f%2e", 0, "/a/~-_.", 7, NULL },
	{ "/a/%c3%a9", 0, "/a/%C3%A9", 9, NULL },
	{ "/a/%3f?x=%3f", 0, "/a/%3F?x=%3f", 6, NULL },	/* query as is */
	{ "/a/./b/../c", 0, "/a/c", 4, NULL },
	{ "/a/%2e%2E/admin", 0, "/admin", 6, NULL },
	{ "/a/b/..", 0, "/a/", 3, NULL },
	{ "/a/.", 0, "/a/", 3, NULL },
	{ "/a/", 0, "/a/", 3, NULL },
	{ "/..a/.b./...", 0, "/..a/.b./...", 12, NULL },
	{ "/a?b/../c", 0, "/a?b/../c", 2, NULL },
	{ "/a:b@c!$&'()*+,;=", 0, "/a:b@c!$&'()*+,;=", 17, NULL },
	/* hostile */
	{ "/..", 400, NULL, 0, "above the root" },
	{ "/a/../../b", 400, NULL, 0, "above the root" },
	{ "/a//b", 400, NULL, 0, "empty path segment" },
	{ "/a/.//b", 400, NULL, 0, "empty path segment" },
	{ "/a%2fb", 400, NULL, 0, "encoded '/'" },
	{ "/a%2Fb", 400, NULL, 0, "encoded '/'" },
	{ "/a%5cb", 400, NULL, 0, "encoded '/'" },
	{ "/a%00b", 400, NULL, 0, "NUL" },
	{ "/a\\b", 400, NULL, 0, "backslash" },
	{ "/a%", 400, NULL, 0, "percent-encoding" },
	{ "/a%4", 400, NULL, 0, "percent-encoding" },
	{ "/a%zz", 400, NULL, 0, "percent-encoding" },
	{ "/a?q=%zz", 400, NULL, 0, "percent-encoding" },
	{ "/a\tb", 400, NULL, 0, "grammar" },
	{ "/a b", 400, NULL, 0, "grammar" },
	{ "/a#f", 400, NULL, 0, "grammar" },
	{ "/a\"b", 400, NULL, 0, "grammar" },
	{ "/a\xc3\xa9", 400, NULL, 0, "grammar" },
	{ "/a\r\nX: y", 400, NULL, 0, "grammar" },
	{ "http://a/b", 400, NULL, 0, "origin-form" },
	{ "*", 400, NULL, 0, "origin-form" },
	{ "a.example:443", 400, NULL, 0, "origin-form" },
	{ "", 400, NULL, 0, "origin-form" },
};

static void
test_target(void **state)
{
	char out[64];
	size_t i, pl;

	(void)state;
	for (i = 0; i < sizeof(target_cases) / sizeof(target_cases[0]); i++) {
		const char *why = NULL;
		int st = http_target_normalize(target_cases[i].in,
		    strlen(target_cases[i].in), out, sizeof(out), &pl, &why);

		if (st != target_cases[i].want_st)
			fail_msg("'%s': status %d, want %d (%s)",
			    target_cases[i].in, st, target_cases[i].want_st,
			    why ? why : "");
		if (st == 0 && (strcmp(out, target_cases[i].want) != 0 ||
		    pl != target_cases[i].want_plen))
			fail_msg("'%s': '%s' (path %zu), want '%s' (%zu)",
			    target_cases[i].in, out, pl, target_cases[i].want,
			    target_cases[i].want_plen);
		if (target_cases[i].want_why != NULL && (why == NULL ||
		    strstr(why, target_cases[i].want_why) == NULL))
			fail_msg("'%s': reason '%s' lacks '%s'",
			    target_cases[i].in, why ? why : "",
			    target_cases[i].want_why);
	}
}

static void
test_target_long(void **state)
{
	char in[100], out[64];
	size_t pl;
	const char *why;

	(void)state;
	memset(in, 'a', sizeof(in));
	in[0] = '/';
	assert_int_equal(http_target_normalize(in, 64, out, sizeof(out), &pl,
	    &why), 414);
	assert_int_equal(http_target_normalize(in, 63, out, sizeof(out), &pl,
	    &why), 0);
	assert_int_equal(pl, 63);
}

static const struct {
	const char *in;
	int want_rv;
	const char *want;
	size_t want_hlen;
	const char *want_why;
} host_cases[] = {
	{ "", 0, "", 0, NULL },
	{ "example.org", 0, "example.org", 11, NULL },
	{ "Other.EXAMPLE.", 0, "other.example", 13, NULL },
	{ "a.example.:8443", 0, "a.example:8443", 9, NULL },
	{ "a_b-c.example", 0, "a_b-c.example", 13, NULL },
	{ "[::1]:443", 0, "[::1]:443", 5, NULL },
	{ "[FE80::1]", 0, "[fe80::1]", 9, NULL },
	{ "127.0.0.1", 0, "127.0.0.1", 9, NULL },
	/* hostile */
	{ "a%2eexample", -1, NULL, 0, "percent-escape" },
	{ "[::1%25eth0]", -1, NULL, 0, "percent-escape" },
	{ "a example", -1, NULL, 0, "invalid character" },
	{ "a\texample", -1, NULL, 0, "invalid character" },
	{ "a/b", -1, NULL, 0, "invalid character" },
	{ "user@a", -1, NULL, 0, "invalid character" },
	{ "a\xc3\xa9", -1, NULL, 0, "invalid character" },
	{ "a..", -1, NULL, 0, "empty label" },
	{ "a..b", -1, NULL, 0, "empty label" },
	{ ".a", -1, NULL, 0, "empty label" },
	{ ".", -1, NULL, 0, "empty label" },
	{ "a:", -1, NULL, 0, "port" },
	{ "a:65536", -1, NULL, 0, "port" },
	{ "a:123456", -1, NULL, 0, "port" },
	{ "a:8x", -1, NULL, 0, "port" },
	{ "a:80:80", -1, NULL, 0, "port" },
	{ "[::1", -1, NULL, 0, "unterminated" },
	{ "[]", -1, NULL, 0, "empty IP literal" },
	{ "[::1]x", -1, NULL, 0, "after the Host IP literal" },
};

static void
test_host(void **state)
{
	char out[300];
	size_t i, hl;

	(void)state;
	for (i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++) {
		const char *why = NULL;
		int rv = http_host_normalize(host_cases[i].in,
		    strlen(host_cases[i].in), out, sizeof(out), &hl, &why);

		if (rv != host_cases[i].want_rv)
			fail_msg("Host '%s': rv %d, want %d (%s)",
			    host_cases[i].in, rv, host_cases[i].want_rv,
			    why ? why : "");
		if (rv == 0 && (strcmp(out, host_cases[i].want) != 0 ||
		    hl != host_cases[i].want_hlen))
			fail_msg("Host '%s': '%s' (%zu), want '%s' (%zu)",
			    host_cases[i].in, out, hl, host_cases[i].want,
			    host_cases[i].want_hlen);
		if (host_cases[i].want_why != NULL && (why == NULL ||
		    strstr(why, host_cases[i].want_why) == NULL))
			fail_msg("Host '%s': reason '%s' lacks '%s'",
			    host_cases[i].in, why ? why : "",
			    host_cases[i].want_why);
	}
}

static const struct {
	const char *in;
	const char *want_why;	/* NULL: accepted */
} head_cases[] = {
	{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n", NULL },
	{ "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", NULL },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX-E:\r\n\r\n", NULL },
	{ "GET / HTTP/1.1\r\nHost: a\r\n\r\nbody \x01\n", NULL },
	{ "GET / HTTP/1.1\r\nHo", NULL },	/* still coming */
	{ "GET / HTTP/1.1\r", NULL },
	{ "GET /a?b=%41 HTTP/1.0\r\n\r\n", NULL },
	/* hostile */
	{ "GET /app/admin\t HTTP/1.1\r\nHost: a\r\n\r\n", "grammar" },
	{ "GET /a\tb HTTP/1.1\r\n", "grammar" },
	{ "GET  /a HTTP/1.1\r\n", "malformed request line" },
	{ "GET /a  HTTP/1.1\r\n", "malformed HTTP version" },
	{ "GET /a HTTP/1.1 \r\n", "malformed HTTP version" },
	{ "GET /a\r\n", "malformed request line" },
	{ "GET /\xc3\xa9 HTTP/1.1\r\n", "grammar" },
	{ "GET /a#b HTTP/1.1\r\n", "grammar" },
	{ "G(T /a HTTP/1.1\r\n", "malformed request line" },
	{ "GET / HTTP/1.1\r\nX-Client-Spiffe-Id : v\r\n\r\n",
	    "whitespace between a header field name and the colon" },
	{ "GET / HTTP/1.1\r\nX-A\t: v\r\n\r\n", "whitespace between" },
	{ "GET / HTTP/1.1\r\nX A: v\r\n\r\n", "whitespace between" },
	{ "GET / HTTP/1.1\r\n: v\r\n\r\n", "malformed header field name" },
	{ "GET / HTTP/1.1\r\nX(A): v\r\n\r\n", "malformed header field" },
	{ "GET / HTTP/1.1\r\nNoColon\r\n\r\n", "malformed header field" },
	{ "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "obs-fold" },
	{ "GET / HTTP/1.1\nHost: a\n\n", "bare LF" },
	{ "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", "bare CR" },
	{ "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", "control character" },
	{ "GET / HTTP/1.1\r\nHost: a\x7f", "control character" },
};

static void
test_head(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(head_cases) / sizeof(head_cases[0]); i++) {
		const char *why = http_head_check(head_cases[i].in,
		    strlen(head_cases[i].in));

		if (head_cases[i].want_why == NULL && why != NULL)
			fail_msg("head %zu refused: %s", i, why);
		if (head_cases[i].want_why != NULL && (why == NULL ||
		    strstr(why, head_cases[i].want_why) == NULL))
			fail_msg("head %zu: reason '%s' lacks '%s'", i,
			    why ? why : "(accepted)", head_cases[i].want_why);
	}
}

static void
test_fold(void **state)
{
	(void)state;
	assert_true(http_name_folded_eq("X_Client_Spiffe_Id", 18,
	    "x-client-spiffe-id"));
	assert_true(http_name_folded_eq("X-CLIENT-SPIFFE-ID", 18,
	    "x-client-spiffe-id"));
	assert_true(http_name_folded_eq("x_forwarded_client_cert", 23,
	    "x-forwarded-client-cert"));
	assert_false(http_name_folded_eq("X-Client-Spiffe-Idx", 19,
	    "x-client-spiffe-id"));
	assert_false(http_name_folded_eq("X-Client-Spiffe-I", 17,
	    "x-client-spiffe-id"));
	assert_false(http_name_folded_eq("X-Client-Spiffe-Id ", 19,
	    "x-client-spiffe-id"));
	assert_false(http_name_folded_eq("", 0, "host"));
}

static void
test_esc(void **state)
{
	char out[64];
	/* what was in the buffer after the value must not matter */
	const char in[] = "gzip\r\nSECRET";

	(void)state;
	http_esc(out, sizeof(out), in, 4, 40);
	assert_string_equal(out, "gzip");
	http_esc(out, sizeof(out), in, 6, 40);
	assert_string_equal(out, "gzip\\x0d\\x0a");
	http_esc(out, sizeof(out), "a'\"\\\xff", 5, 40);
	assert_string_equal(out, "a\\x27\\x22\\x5c\\xff");
	http_esc(out, sizeof(out), "abcdef", 6, 3);
	assert_string_equal(out, "abc...");
	http_esc(out, 8, "abcdefghijkl", 12, 40);
	assert_true(strlen(out) < 8);
}

static void
test_xfcc(void **state)
{
	char out[128];

	(void)state;
	http_xfcc_put(out, sizeof(out), "URI", "spiffe://example.org/a", 0);
	assert_string_equal(out, "URI=spiffe://example.org/a");
	http_xfcc_put(out, sizeof(out), "Subject", "CN=a b,O=\"x\\y\"", 1);
	assert_string_equal(out, "Subject=\"CN=a b,O=\\\"x\\\\y\\\"\"");
	http_xfcc_put(out, sizeof(out), "URI", "a;b", 0);
	assert_string_equal(out, "URI=\"a;b\"");
	http_xfcc_put(out, sizeof(out), "DNS", "a b", 0);
	assert_string_equal(out, "DNS=\"a b\"");
	assert_int_equal(http_xfcc_put(out, 8, "URI", "spiffe://x", 0), 0);
	assert_true(http_value_visible("spiffe://example.org/a", 0));
	assert_false(http_value_visible("spiffe://example.org/a\r\nX: y", 0));
	assert_false(http_value_visible("a b", 0));
	assert_true(http_value_visible("a b", 1));
	assert_false(http_value_visible("a\xc3\xa9", 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_target_long),
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_head),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_esc),
		cmocka_unit_test(test_xfcc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
