/*
 * Issuance's kept state (issue 15): the self-check's verifier is built
 * once per CA bundle, so a CA whose bundle changes must not be checked
 * against the old one; the bundle PEM is encoded once and handed out as
 * copies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ca/ca.h"
#include "internal.h"

static char dir[] = "/tmp/test_ca_issue.XXXXXX";

static void
make_root(const char *name)
{
	struct ca_init_req q;
	struct ca_result res;
	struct mtls_error err;
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	memset(&q, 0, sizeof(q));
	q.dir = p;
	q.trust_domain = "example.org";
	q.name = name;
	q.key_type = KEY_EC_P256;
	error_clear(&err);
	if (ca_init(&q, &res, &err) != 0)
		fail_msg("ca_init %s: %s", name, err.msg);
}

static struct ca *
open_ca(const char *name)
{
	struct mtls_error err;
	struct ca *ca = NULL;
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	error_clear(&err);
	if (ca_open(&ca, p, NULL, &err) != 0)
		fail_msg("ca_open %s: %s", name, err.msg);
	return ca;
}

/* 0 when <ca> issues a leaf for a fresh key, else -1 (err says why). */
static int
issue(struct ca *ca, struct mtls_error *err)
{
	struct ca_issue_req r;
	struct ca_result res;
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = NULL;
	int rc;

	memset(&r, 0, sizeof(r));
	assert_int_equal(ids_add(&r.ids, "", "spiffe://example.org/w",
	    strlen("spiffe://example.org/w")), 0);
	r.key_type = -1;
	error_clear(err);
	rc = ca_issue_pub(ca, &r, k, NULL, &x, &res, err);
	X509_free(x);
	EVP_PKEY_free(k);
	ids_free(&r.ids);
	return rc;
}

static void
t_verifier_follows_bundle(void **state)
{
	struct ca *a = open_ca("a"), *b = open_ca("b");
	STACK_OF(X509) *t;
	struct mtls_error err;

	(void)state;
	assert_int_equal(issue(a, &err), 0);	/* builds the verifier */
	assert_int_equal(issue(a, &err), 0);	/* and uses it */
	/* a's bundle replaced by b's root: a's leaves no longer chain to
	 * anything trusted, and the self-check must say so */
	t = a->bundle;
	a->bundle = b->bundle;
	b->bundle = t;
	assert_int_equal(issue(a, &err), -1);
	assert_non_null(strstr(err.msg, "refusing to issue"));
	t = a->bundle;
	a->bundle = b->bundle;
	b->bundle = t;
	assert_int_equal(issue(a, &err), 0);
	ca_close(a);
	ca_close(b);
}

static void
t_bundle_pem_copies(void **state)
{
	struct ca *a = open_ca("a");
	struct mtls_error err;
	char *p1 = NULL, *p2 = NULL;
	size_t l1, l2;

	(void)state;
	error_clear(&err);
	assert_int_equal(ca_bundle_pem(a, &p1, &l1, &err), 0);
	assert_int_equal(ca_bundle_pem(a, &p2, &l2, &err), 0);
	assert_ptr_not_equal(p1, p2);
	assert_int_equal(l1, l2);
	assert_int_equal(strlen(p1), l1);
	assert_memory_equal(p1, p2, l1);
	assert_non_null(strstr(p1, "BEGIN CERTIFICATE"));
	free(p1);
	free(p2);
	ca_close(a);
}

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	make_root("a");
	make_root("b");
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_verifier_follows_bundle),
		cmocka_unit_test(t_bundle_pem_copies),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
