/* crl.c: crl_check, the checks a CRL passes before it is installed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "internal.h"

/* the CAs: root R; int I under R; E, a self-signed CA with I's name and
 * another key (a forger's); O, a root nobody trusts; N, I's name again
 * under R but without cRLSign */
enum { R, I, E, O, N, NCA };
static X509 *ca[NCA];
static EVP_PKEY *key[NCA];
static int64_t now;

static void
add_ext(X509 *x, X509 *iss, int nid, const char *val)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, iss, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, val);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

static X509 *
mk_ca(const char *cn, EVP_PKEY *k, X509 *iss, EVP_PKEY *ik, const char *ku)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
	    (const unsigned char *)"example.org", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, iss ? X509_get_subject_name(iss) : n);
	X509_NAME_free(n);
	X509_set_pubkey(x, k);
	add_ext(x, iss ? iss : x, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, iss ? iss : x, NID_key_usage, ku);
	add_ext(x, iss ? iss : x, NID_subject_key_identifier, "hash");
	assert_true(X509_sign(x, ik ? ik : k, EVP_sha256()) > 0);
	return x;
}

static int
setup(void **state)
{
	int i;

	(void)state;
	now = (int64_t)time(NULL);
	for (i = 0; i < NCA; i++)
		assert_non_null(key[i] = EVP_EC_gen("P-256"));
	ca[R] = mk_ca("root", key[R], NULL, NULL,
	    "critical,keyCertSign,cRLSign");
	ca[I] = mk_ca("int", key[I], ca[R], key[R],
	    "critical,keyCertSign,cRLSign");
	ca[E] = mk_ca("int", key[E], NULL, NULL,
	    "critical,keyCertSign,cRLSign");
	ca[O] = mk_ca("other", key[O], NULL, NULL,
	    "critical,keyCertSign,cRLSign");
	ca[N] = mk_ca("int", key[N], ca[R], key[R], "critical,keyCertSign");
	return 0;
}

static int
teardown(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < NCA; i++) {
		X509_free(ca[i]);
		EVP_PKEY_free(key[i]);
	}
	return 0;
}

/* A CRL signed by ca[<by>] (under its name), number <num> (0: none),
 * thisUpdate now + <tu>, nextUpdate now + <nu>. */
static X509_CRL *
mk_crl(int by, int64_t num, int64_t tu, int64_t nu)
{
	struct mtls_error err;
	X509_CRL *c = NULL;
	int i;

	assert_int_equal(crl_build(ca[by], key[by], NULL, 0, num ? num : 1,
	    now + tu, now + nu, &c, &err), 0);
	if (num == 0) {	/* drop the number and sign again */
		i = X509_CRL_get_ext_by_NID(c, NID_crl_number, -1);
		X509_EXTENSION_free(X509_CRL_delete_ext(c, i));
		assert_true(X509_CRL_sign(c, key[by], EVP_sha256()) > 0);
	}
	return c;
}

#define DAY	86400
#define NONE	(-1)
static const struct {
	const char	*name;
	int		 by;		/* signer */
	int64_t		 num, tu, nu;	/* number, times from now */
	int		 trust, other;	/* ca[] indexes, NONE */
	int		 inst_by;	/* installed CRL's signer, NONE */
	int64_t		 inst_num, inst_tu;
	int		 flags;
	int		 want;
} cases[] = {
#define S (CRL_CHECK_STRICT | CRL_CHECK_TIME)
	{ "int, current", I, 5, -60, DAY, R, I, NONE, 0, 0, S, CRL_OK },
	{ "root itself", R, 5, -60, DAY, R, NONE, NONE, 0, 0, S, CRL_OK },
	/* hostile: int's name, another key */
	{ "forged", E, 9, -60, DAY, R, I, NONE, 0, 0, S,
	    CRL_BAD_SIGNATURE },
	{ "forged, not strict", E, 9, -60, DAY, R, I, NONE, 0, 0, 0,
	    CRL_BAD_SIGNATURE },
	/* the forger's CA offered as an intermediate does not chain */
	{ "forged, its CA offered", E, 9, -60, DAY, R, E, NONE, 0, 0, S,
	    CRL_UNKNOWN_ISSUER },
	{ "unknown issuer", O, 5, -60, DAY, R, I, NONE, 0, 0, S,
	    CRL_UNKNOWN_ISSUER },
	{ "unknown issuer, not strict", O, 5, -60, DAY, R, I, NONE, 0, 0,
	    CRL_CHECK_TIME, CRL_OK },
	{ "int not given", I, 5, -60, DAY, R, NONE, NONE, 0, 0, S,
	    CRL_UNKNOWN_ISSUER },
	{ "int under an untrusted root", I, 5, -60, DAY, O, I, NONE, 0, 0,
	    S, CRL_UNKNOWN_ISSUER },
	/* a CA with the name but no cRLSign may not sign CRLs */
	{ "signer without cRLSign", N, 5, -60, DAY, R, N, NONE, 0, 0, S,
	    CRL_UNKNOWN_ISSUER },
	/* time, REVOCATION_SKEW either way */
	{ "expired beyond the skew", I, 5, -2 * DAY, -301, R, I, NONE, 0, 0,
	    S, CRL_EXPIRED },
	{ "expired within the skew", I, 5, -2 * DAY, -299, R, I, NONE, 0,
	    0, S, CRL_OK },
	{ "expired, time not checked", I, 5, -2 * DAY, -DAY, R, I, NONE, 0,
	    0, CRL_CHECK_STRICT, CRL_OK },
	{ "future beyond the skew", I, 5, 301, DAY, R, I, NONE, 0, 0, S,
	    CRL_NOT_YET_VALID },
	{ "future within the skew", I, 5, 299, DAY, R, I, NONE, 0, 0, S,
	    CRL_OK },
	/* numbers */
	{ "newer number", I, 6, -60, DAY, R, I, I, 5, -120, S, CRL_OK },
	{ "lower number", I, 4, -60, DAY, R, I, I, 5, -120, S,
	    CRL_ROLLBACK },
	{ "same number, same thisUpdate", I, 5, -60, DAY, R, I, I, 5, -60,
	    S, CRL_OK },
	{ "same number, older thisUpdate", I, 5, -120, DAY, R, I, I, 5, -60,
	    S, CRL_ROLLBACK },
	{ "no number, newer", I, 0, -60, DAY, R, I, I, 5, -120, S, CRL_OK },
	{ "no number, older", I, 0, -120, DAY, R, I, I, 5, -60, S,
	    CRL_ROLLBACK },
	/* the installed one is another issuer's (same name, other key) */
	{ "lower than another key's", I, 2, -60, DAY, R, I, E, 9, -60, S,
	    CRL_OK },
	{ "lower than another CA's", I, 2, -60, DAY, R, I, R, 9, -60, S,
	    CRL_OK },
#undef S
};

static void
test_check(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		STACK_OF(X509_CRL) *sk = sk_X509_CRL_new_null();
		STACK_OF(X509_CRL) *inst = NULL;
		STACK_OF(X509) *trust = sk_X509_new_null();
		STACK_OF(X509) *other = sk_X509_new_null();
		struct mtls_error err;
		int v;

		memset(&err, 0, sizeof(err));
		sk_X509_CRL_push(sk, mk_crl(cases[i].by, cases[i].num,
		    cases[i].tu, cases[i].nu));
		if (cases[i].trust != NONE)
			sk_X509_push(trust, ca[cases[i].trust]);
		if (cases[i].other != NONE)
			sk_X509_push(other, ca[cases[i].other]);
		if (cases[i].inst_by != NONE) {
			inst = sk_X509_CRL_new_null();
			sk_X509_CRL_push(inst, mk_crl(cases[i].inst_by,
			    cases[i].inst_num, cases[i].inst_tu, DAY));
		}
		v = crl_check(sk, "src.pem", trust, other, inst,
		    cases[i].flags, now, &err);
		if (v != cases[i].want)
			fail_msg("%s: got %s, want %s (%s)", cases[i].name,
			    crl_verdict_name(v),
			    crl_verdict_name(cases[i].want), err.msg);
		if (v != CRL_OK && strncmp(err.msg, "src.pem: ", 9) != 0)
			fail_msg("%s: message does not name the source: %s",
			    cases[i].name, err.msg);
		sk_X509_CRL_pop_free(sk, X509_CRL_free);
		sk_X509_CRL_pop_free(inst, X509_CRL_free);
		sk_X509_free(trust);
		sk_X509_free(other);
	}
}

/* A file with several CRLs: each is checked; one bad refuses the lot. */
static void
test_several(void **state)
{
	STACK_OF(X509_CRL) *sk = sk_X509_CRL_new_null();
	STACK_OF(X509) *trust = sk_X509_new_null();
	STACK_OF(X509) *other = sk_X509_new_null();
	struct mtls_error err;

	(void)state;
	sk_X509_push(trust, ca[R]);
	sk_X509_push(other, ca[I]);
	sk_X509_CRL_push(sk, mk_crl(R, 3, -60, DAY));
	sk_X509_CRL_push(sk, mk_crl(I, 3, -60, DAY));
	assert_int_equal(crl_check(sk, "f", trust, other, NULL,
	    CRL_CHECK_STRICT | CRL_CHECK_TIME, now, &err), CRL_OK);
	sk_X509_CRL_push(sk, mk_crl(E, 3, -60, DAY));
	assert_int_equal(crl_check(sk, "f", trust, other, NULL,
	    CRL_CHECK_STRICT | CRL_CHECK_TIME, now, &err), CRL_BAD_SIGNATURE);
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	sk_X509_free(trust);
	sk_X509_free(other);
}

static void
test_names(void **state)
{
	int v;

	(void)state;
	for (v = 0; v < CRL_VERDICT__COUNT; v++) {
		assert_non_null(crl_verdict_name(v));
		assert_true(v == CRL_OK ||
		    strncmp(crl_verdict_name(v), "crl_", 4) == 0);
	}
	assert_string_equal(crl_verdict_name(-1), "crl_unknown");
	assert_string_equal(crl_verdict_name(CRL_VERDICT__COUNT),
	    "crl_unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_several),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
