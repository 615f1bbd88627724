/* src/svc/net/addr.c: service addresses parsed, printed, judged local;
 * listening sockets. No name lookups beyond numeric hosts and localhost. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "net/addr.h"

static const struct {
	const char *in;
	const char *text;	/* addr_text of the result, or NULL: refused */
	int local;
	const char *err;	/* a substring of the refusal */
} cases[] = {
	{ "127.0.0.1:8443", "127.0.0.1:8443", 1, NULL },
	{ "127.9.9.9:1", "127.9.9.9:1", 1, NULL },
	{ "10.1.2.3:65535", "10.1.2.3:65535", 0, NULL },
	{ "0.0.0.0:443", "0.0.0.0:443", 0, NULL },
	{ "[::1]:9901", "[::1]:9901", 1, NULL },
	{ "[2001:db8::1]:80", "[2001:db8::1]:80", 0, NULL },
	{ "unix:/run/app.sock", "unix", 1, NULL },
	{ "127.0.0.1:0", NULL, 0, "port must be 1-65535" },
	{ "127.0.0.1:65536", NULL, 0, "port must be 1-65535" },
	{ "127.0.0.1:+80", NULL, 0, "port must be 1-65535" },
	{ "127.0.0.1:", NULL, 0, "port must be 1-65535" },
	{ "127.0.0.1", NULL, 0, "use HOST:PORT" },
	{ ":80", NULL, 0, "use HOST:PORT" },
	{ "[::1]80", NULL, 0, "use [IPv6]:PORT" },
	{ "[::1:80", NULL, 0, "use [IPv6]:PORT" },
	{ "unix:", NULL, 0, "bad UNIX socket path" },
};

static void
test_parse(void **state)
{
	struct sockaddr_storage ss;
	struct mtls_error err;
	socklen_t sl;
	char text[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rv;

		error_clear(&err);
		rv = addr_parse(cases[i].in, "--listen", &ss, &sl, &err);
		if (cases[i].text == NULL) {
			if (rv == 0 || strstr(err.msg, cases[i].err) == NULL ||
			    strstr(err.msg, "--listen '") == NULL)
				fail_msg("%s: rv %d, '%s'", cases[i].in, rv,
				    err.msg);
			continue;
		}
		if (rv != 0)
			fail_msg("%s: %s", cases[i].in, err.msg);
		addr_text(&ss, text, sizeof(text));
		assert_string_equal(text, cases[i].text);
		assert_int_equal(addr_is_local(&ss), cases[i].local);
	}
}

/* A path that does not fit sun_path is refused, not truncated. */
static void
test_unix_too_long(void **state)
{
	struct sockaddr_storage ss;
	struct mtls_error err;
	socklen_t sl;
	char in[200];

	(void)state;
	memset(in, 'a', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	memcpy(in, "unix:/", 6);
	assert_int_equal(addr_parse(in, "--target", &ss, &sl, &err), -1);
	assert_non_null(strstr(err.msg, "bad UNIX socket path"));
}

/* addr_listen binds and listens; a second bind of the same port without
 * SO_REUSEPORT on both is refused with the caller's words. */
static void
test_listen(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct mtls_error err;
	socklen_t sl = sizeof(ss);
	int a, b, c;

	(void)state;
	assert_int_equal(addr_parse("127.0.0.1:1", "t", &ss, &sl, &err), 0);
	sin->sin_port = 0;
	a = addr_listen(&ss, sl, 0, "listen test", &err);
	assert_true(a >= 0);
	sl = sizeof(ss);
	assert_int_equal(getsockname(a, (struct sockaddr *)&ss, &sl), 0);
	b = addr_listen(&ss, sl, 0, "listen test", &err);
	assert_int_equal(b, -1);
	assert_non_null(strstr(err.msg, "listen test"));
	close(a);
	/* two SO_REUSEPORT sockets on one port: one per worker */
	a = addr_listen(&ss, sl, 1, "w0", &err);
	c = addr_listen(&ss, sl, 1, "w1", &err);
	assert_true(a >= 0 && c >= 0);
	close(a);
	close(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_unix_too_long),
		cmocka_unit_test(test_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
