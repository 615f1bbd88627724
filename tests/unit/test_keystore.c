/* keystore.c: the RFC 7512 pkcs11: URI parser (a table of good and bad
 * URIs), the PIN file's rules and the clear errors of a URI that names no
 * module or token. Tokens themselves: tests/integration/98-pkcs11.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

static const struct {
	const char *uri;
	const char *want;	/* NULL: accepted; else part of the error */
} cases[] = {
	{ "pkcs11:token=ca;object=root?pin-source=file:/etc/mtls/pin", NULL },
	{ "PKCS11:token=ca;object=root?pin-source=file:/p", NULL },
	{ "pkcs11:token=my%20ca;id=%01%02;type=private?pin-source=file:///p",
	    NULL },
	{ "pkcs11:object=k;token=t?module-path=/usr/lib/x.so&pin-source=file:p",
	    NULL },
	{ "pkcs11:token=t;object=a%3bb?pin-source=file:/p", NULL },
	{ "pkcs11:token=t;id=%00?pin-source=file:/p", NULL },
	{ "pkcs11:token=ca;object=root?pin-value=1234", "pin-value is refused" },
	{ "pkcs11:token=ca;object=root?pin-source=file:/p&pin-value=1",
	    "pin-value is refused" },
	{ "pkcs11:token=ca;object=root", "pin-source=file:PATH" },
	{ "pkcs11:object=root?pin-source=file:/p", "name the token" },
	{ "pkcs11:token=ca?pin-source=file:/p", "name the key" },
	{ "pkcs11:token=ca;token=cb;object=r?pin-source=file:/p",
	    "token appears twice" },
	{ "pkcs11:token=ca;object=r?pin-source=file:/p&pin-source=file:/q",
	    "pin-source appears twice" },
	{ "pkcs11:token=ca;serial=1;object=r?pin-source=file:/p",
	    "'serial' is not supported" },
	{ "pkcs11:token=ca;object=r?module-name=softhsm2&pin-source=file:/p",
	    "'module-name' is not supported" },
	{ "pkcs11:token=ca;object=r;type=cert?pin-source=file:/p",
	    "type=cert" },
	{ "pkcs11:token=ca;object=r?pin-source=/p", "file:PATH" },
	{ "pkcs11:token=ca;object=r?pin-source=file:", "empty" },
	{ "pkcs11:token=ca;object=r?pin-source=file://host/p", "not a local" },
	{ "pkcs11:token=ca;object=r?pin-source=file:/p&module-path=lib.so",
	    "absolute" },
	{ "pkcs11:token=ca;object=r%0?pin-source=file:/p", "two hex digits" },
	{ "pkcs11:token=ca;object=r%zz?pin-source=file:/p", "two hex digits" },
	{ "pkcs11:token=ca;object=r%?pin-source=file:/p", "two hex digits" },
	{ "pkcs11:token=ca;object=a%00b?pin-source=file:/p", "NUL byte" },
	{ "pkcs11:token=ca;object=a b?pin-source=file:/p", "0x20" },
	{ "pkcs11:token=ca;object=a/b?pin-source=file:/p", "0x2f" },
	{ "pkcs11:token=ca;;object=r?pin-source=file:/p", "empty attribute" },
	{ "pkcs11:token=ca;object=r;?pin-source=file:/p", "empty attribute" },
	{ "pkcs11:token=ca;object=r?pin-source=file:/p&", "empty attribute" },
	{ "pkcs11:token=ca;object?pin-source=file:/p", "name=value" },
	{ "pkcs11:=x;token=ca?pin-source=file:/p", "name=value" },
	{ "pkcs11:token=ca;id=?pin-source=file:/p", "'id' has an empty value" },
	{ "pkcs11:token=;object=root?pin-source=file:/p",
	    "'token' has an empty value" },
	{ "pkcs11:token=t;object=?pin-source=file:/p",
	    "'object' has an empty value" },
	{ "pkcs11:token=t;object=o?pin-source=file:/p&module-path=",
	    "'module-path' has an empty value" },
	{ "pkcs11:token=0123456789012345678901234567890123;object=r"
	    "?pin-source=file:/p", "longer than 32" },
	{ "pkcs11:", "name the token" },
	{ "pkcs1:token=ca", "not a pkcs11: URI" },
};

static void
test_parse_table(void **state)
{
	struct mtls_error err;
	struct p11uri u;
	size_t i;
	int rv;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&err, 0, sizeof(err));
		rv = p11uri_parse(cases[i].uri, strlen(cases[i].uri), &u, &err);
		if (cases[i].want == NULL && rv != 0)
			fail_msg("%s: refused: %s", cases[i].uri, err.msg);
		if (cases[i].want != NULL && (rv != -1 ||
		    strstr(err.msg, cases[i].want) == NULL))
			fail_msg("%s: rv %d, message '%s', wanted '%s'",
			    cases[i].uri, rv, err.msg, cases[i].want);
	}
}

static void
test_parse_values(void **state)
{
	const char *s = "pkcs11:token=my%20ca;id=%01%ff;object=a%3bb"
	    "?pin-source=file:///run/pin&module-path=/opt/m%2b.so";
	struct mtls_error err;
	struct p11uri u;
	char big[P11URI_MAX + 64];

	(void)state;
	assert_int_equal(p11uri_parse(s, strlen(s), &u, &err), 0);
	assert_string_equal(u.token, "my ca");
	assert_string_equal(u.object, "a;b");
	assert_int_equal(u.id_len, 2);
	assert_int_equal(u.id[0], 0x01);
	assert_int_equal(u.id[1], 0xff);
	assert_string_equal(u.pin_file, "/run/pin");
	assert_string_equal(u.module, "/opt/m+.so");
	/* the length cap, and a NUL inside the given length */
	memset(big, 'a', sizeof(big));
	memcpy(big, "pkcs11:token=", 13);
	assert_int_equal(p11uri_parse(big, sizeof(big), &u, &err), -1);
	assert_non_null(strstr(err.msg, "over the limit"));
	assert_int_equal(p11uri_parse("pkcs11:token=a\0b", 16, &u, &err), -1);
	assert_non_null(strstr(err.msg, "NUL"));
}

/* Errors before any token is touched: pin-value refused through key_load
 * (what every --key reaches), a missing module named. */
static void
test_key_load_errors(void **state)
{
	struct mtls_error err;
	EVP_PKEY *k = NULL;

	(void)state;
	assert_int_equal(key_load("pkcs11:token=ca;object=r?pin-value=1234",
	    NULL, &k, &err), -1);
	assert_null(k);
	assert_non_null(strstr(err.msg, "pin-value is refused"));
	assert_null(strstr(err.msg, "1234"));
	assert_int_equal(key_load("pkcs11:token=ca;object=r?pin-source=file:"
	    "/nonexistent&module-path=/nonexistent/mod.so", NULL, &k, &err), -1);
	assert_non_null(strstr(err.msg, "pkcs11 module /nonexistent/mod.so"));
	assert_true(keystore_is_uri("PKCS11:x"));
	assert_false(keystore_is_uri("/etc/key.pem"));
	assert_false(keystore_is_uri(NULL));
}

/* keystore_pin_file: the watched PIN path of a URI (decoded), NULL for a
 * file or a URI that does not parse; the same pointer on each call. */
static void
test_pin_file(void **state)
{
	const char *u = "pkcs11:token=wl;object=s?pin-source=file:/etc/m%20p/pin";
	const char *p;
	struct mtls_error err;
	struct keystore_made made;
	EVP_PKEY *k = NULL;

	(void)state;
	p = keystore_pin_file(u);
	assert_non_null(p);
	assert_string_equal(p, "/etc/m p/pin");
	assert_ptr_equal(keystore_pin_file(u), p);
	assert_null(keystore_pin_file("/etc/key.pem"));
	assert_null(keystore_pin_file("pkcs11:token=wl?pin-source=file:/x"));
	/* generation parses the URI first: pin-value is refused there too */
	assert_int_equal(keystore_generate("pkcs11:token=a;object=b?pin-value="
	    "77", KEY_EC_P256, 0, &k, &made, &err), -1);
	assert_null(k);
	assert_int_equal(made.made, 0);
	assert_null(strstr(err.msg, "77"));
}

/* keystore_uri_with_id: the agent's name for its current key, the URI's
 * id= replaced (never a second one), its query kept, the result parses to
 * that id; too long is an error, not a cut URI. */
static void
test_uri_with_id(void **state)
{
	static const uint8_t id[] = { 0x0b, 0xad, 0xc0, 0xde };
	struct mtls_error err;
	struct p11uri u;
	char out[P11URI_MAX + 1], big[P11URI_MAX];
	uint8_t many[128];

	(void)state;
	assert_int_equal(keystore_uri_with_id("pkcs11:token=wl;object=a?pin-"
	    "source=file:/p", id, sizeof(id), out, sizeof(out), &err), 0);
	assert_string_equal(out, "pkcs11:token=wl;object=a;id=%0b%ad%c0%de?"
	    "pin-source=file:/p");
	assert_int_equal(keystore_uri_with_id("pkcs11:token=wl;id=%01;object"
	    "=a?pin-source=file:/p&module-path=/m.so", id, 1, out, sizeof(out),
	    &err), 0);
	assert_string_equal(out, "pkcs11:token=wl;object=a;id=%0b?pin-source="
	    "file:/p&module-path=/m.so");
	assert_int_equal(p11uri_parse(out, strlen(out), &u, &err), 0);
	assert_int_equal(u.id_len, 1);
	assert_int_equal(u.id[0], 0x0b);
	assert_int_equal(keystore_uri_with_id("/etc/key.pem", id, 1, out,
	    sizeof(out), &err), -1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "pkcs11:token=t;object=", 22);
	memset(many, 1, sizeof(many));
	assert_int_equal(keystore_uri_with_id(big, many, sizeof(many), out,
	    sizeof(out), &err), -1);
	assert_non_null(strstr(err.msg, "too long"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_values),
		cmocka_unit_test(test_key_load_errors),
		cmocka_unit_test(test_pin_file),
		cmocka_unit_test(test_uri_with_id),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
