/*
 * profile.c: what each certificate profile puts in a certificate (read
 * back with OpenSSL and with the scope readers verify.c uses), and the
 * requests it refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pki_fixture.h"

static struct fx_cert root;
static int64_t now;

static int
setup(void **state)
{
	(void)state;
	now = (int64_t)time(NULL);
	root = fx_root("example.org", "example.org Root CA", now);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	fx_cert_free(&root);
	return 0;
}

static void
test_scoped_intermediate(void **state)
{
	static char *spiffe[] = { "spiffe://example.org/ns/prod/",
	    "spiffe://example.org/ns/dev/" };
	static char *dns[] = { "example.org", "example.net" };
	struct fx_cert in, open;
	const char *oids[3];
	char **v;
	size_t n;

	(void)state;
	in = fx_intermediate(&root, "example.org", "scoped", spiffe, 2, dns, 2,
	    now);
	assert_int_equal(profile_spiffe_scope(in.x, profile_scope_oid_default(),
	    &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], spiffe[0]);
	assert_string_equal(v[1], spiffe[1]);
	strv_free(v, n);
	assert_int_equal(profile_dns_scope(in.x, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], "example.org");
	assert_string_equal(v[1], "example.net");
	strv_free(v, n);
	/* pathlen 0: no CA under an intermediate */
	assert_int_equal(X509_get_pathlen(in.x), 0);
	assert_false(profile_scope_legacy(in.x));
	/* an open intermediate carries no scope at all */
	open = fx_intermediate(&root, "example.org", "open", NULL, 0, NULL, 0,
	    now);
	assert_int_equal(profile_spiffe_scope(open.x,
	    profile_scope_oid_default(), &v, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(profile_dns_scope(open.x, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(X509_get_ext_by_NID(open.x, NID_name_constraints, -1),
	    -1);
	/* the readers' OIDs: an extra one first, never twice */
	assert_int_equal(profile_scope_oids("1.2.3.4", oids), 3);
	assert_string_equal(oids[0], "1.2.3.4");
	assert_int_equal(profile_scope_oids(profile_scope_oid_default(), oids),
	    2);
	assert_int_equal(profile_scope_oids(NULL, oids), 2);
	fx_cert_free(&in);
	fx_cert_free(&open);
}

/* A trust-domain-wide scope under a legacy or custom OID. */
static void
test_scope_oid(void **state)
{
	static char *spiffe[] = { "spiffe://example.org/a/" };
	const char *legacy = "2.25.199447486927615877784465314696394383395";
	struct profile_req r;
	struct mtls_error err;
	struct fx_cert c;
	char **v;
	size_t n;

	(void)state;
	assert_int_equal(profile_scope_oid_check("1.3.6.1.4.1.32473.6857.1"), 0);
	assert_int_equal(profile_scope_oid_check("1.2.3"), 0);
	assert_int_equal(profile_scope_oid_check("1.2"), -1);
	assert_int_equal(profile_scope_oid_check("1.02.3"), -1);
	assert_int_equal(profile_scope_oid_check("1.2.3."), -1);
	assert_int_equal(profile_scope_oid_check("1.2.x"), -1);
	assert_int_equal(profile_scope_oid_check("1.2.2147483648"), -1);
	assert_int_equal(profile_scope_oid_check(legacy), -1);
	assert_int_equal(profile_scope_oid_check(NULL), -1);
	assert_true(profile_scope_oid_legacy(legacy));
	assert_false(profile_scope_oid_legacy("1.2.3"));
	memset(&r, 0, sizeof(r));
	r.kind = PROFILE_INTERMEDIATE;
	r.org = "example.org";
	r.cn = "legacy";
	r.not_before = now - 60;
	r.not_after = now + FX_DAY;
	r.issuer = root.x;
	r.issuer_key = root.k;
	r.permit_td = "example.org";
	r.permit_spiffe = spiffe;
	r.n_permit_spiffe = 1;
	/* the legacy OID is read, never written */
	r.scope_oid = legacy;
	r.pubkey = r.issuer_key;
	assert_int_equal(profile_build(&r, &c.x, &err), -1);
	assert_non_null(strstr(err.msg, "scope_oid"));
	r.scope_oid = "1.3.6.1.4.1.99999.1";
	c = fx_profile(&r);
	assert_false(profile_scope_legacy(c.x));
	assert_int_equal(profile_spiffe_scope(c.x, r.scope_oid, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0], spiffe[0]);
	strv_free(v, n);
	/* not under the default OID */
	assert_int_equal(profile_spiffe_scope(c.x, profile_scope_oid_default(),
	    &v, &n), 0);
	assert_int_equal(n, 0);
	fx_cert_free(&c);
}

static void
test_leaf(void **state)
{
	static const char *ids[] = { "spiffe://example.org/ns/prod/api",
	    "dns:api.example.org", "ip:10.0.0.5", "ip:2001:db8::1",
	    "cn:ignored", NULL };
	struct profile_req r;
	struct ids sans, got;
	struct mtls_error err;
	struct fx_cert c;
	ASN1_BIT_STRING *ku;
	BIGNUM *bn;
	size_t i;

	(void)state;
	memset(&sans, 0, sizeof(sans));
	for (i = 0; ids[i] != NULL; i++)
		assert_int_equal(ids_add(&sans, "", ids[i], strlen(ids[i])), 0);
	memset(&r, 0, sizeof(r));
	r.kind = PROFILE_LEAF;
	r.org = "example.org";
	r.cn = "api";
	r.sans = &sans;
	r.not_before = now - 60;
	r.not_after = now + FX_DAY;
	r.issuer = root.x;
	r.issuer_key = root.k;
	r.crl_url = "http://ca.example.org/crl";
	r.ocsp_url = "https://ca.example.org/ocsp";
	r.ca_server = 1;
	c = fx_profile(&r);
	assert_int_equal(ids_from_cert(c.x, &got, &err), 0);
	assert_string_equal(got.v[0], "spiffe://example.org/ns/prod/api");
	for (i = 0; i < got.n; i++)
		if (strcmp(got.v[i], "ip:2001:db8::1") == 0)
			break;
	assert_true(i < got.n);
	ids_free(&got);
	assert_true(profile_is_ca_server(c.x));
	assert_true(X509_get_ext_by_NID(c.x, NID_crl_distribution_points, -1)
	    >= 0);
	assert_true(X509_get_ext_by_NID(c.x, NID_info_access, -1) >= 0);
	/* a 128-bit positive serial, CA:FALSE, digitalSignature */
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c.x), NULL);
	assert_int_equal(BN_num_bytes(bn), 16);
	BN_free(bn);
	assert_false(X509_check_ca(c.x));
	ku = X509_get_ext_d2i(c.x, NID_key_usage, NULL, NULL);
	assert_non_null(ku);
	assert_true(ASN1_BIT_STRING_get_bit(ku, 0));
	assert_false(ASN1_BIT_STRING_get_bit(ku, 2));	/* keyEncipherment */
	ASN1_BIT_STRING_free(ku);
	fx_cert_free(&c);
	/* an ordinary workload is no CA server */
	r.ca_server = 0;
	r.crl_url = r.ocsp_url = NULL;
	c = fx_profile(&r);
	assert_false(profile_is_ca_server(c.x));
	fx_cert_free(&c);
	ids_free(&sans);
}

/* Requests that are refused, with nothing made. */
static void
test_refused(void **state)
{
	static const char *bad_urls[] = { "ftp://x/crl", "http://a b/c",
	    "http://a/b,URI:http://evil/", "http://a/\x7f", NULL };
	struct profile_req r;
	struct ids sans, cn_only;
	struct mtls_error err;
	EVP_PKEY *k = fx_key("ec");
	X509 *x = (X509 *)1;
	size_t i;

	(void)state;
	memset(&sans, 0, sizeof(sans));
	memset(&cn_only, 0, sizeof(cn_only));
	assert_int_equal(ids_add(&sans, "", "dns:a.example.org", 17), 0);
	assert_int_equal(ids_add(&cn_only, "", "cn:a", 4), 0);
	memset(&r, 0, sizeof(r));
	r.kind = PROFILE_LEAF;
	r.org = "example.org";
	r.sans = &sans;
	r.not_before = now;
	r.not_after = now + 60;
	r.pubkey = k;
	r.issuer = root.x;
	r.issuer_key = root.k;
	for (i = 0; bad_urls[i] != NULL; i++) {
		r.crl_url = bad_urls[i];
		assert_int_equal(profile_build(&r, &x, &err), -1);
		assert_null(x);
		assert_int_equal(err.code, MTLS_ERR_ARG);
		assert_non_null(strstr(err.msg, "crl_url"));
		r.crl_url = NULL;
		r.ocsp_url = bad_urls[i];
		assert_int_equal(profile_build(&r, &x, &err), -1);
		assert_non_null(strstr(err.msg, "ocsp_url"));
		r.ocsp_url = NULL;
	}
	/* a leaf needs a name in its SAN */
	r.sans = &cn_only;
	assert_int_equal(profile_build(&r, &x, &err), -1);
	assert_non_null(strstr(err.msg, "at least one"));
	r.sans = &sans;
	r.kind = 7;
	assert_int_equal(profile_build(&r, &x, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_ARG);
	ids_free(&sans);
	ids_free(&cn_only);
	EVP_PKEY_free(k);
}

/* x509_set_pubkey_fast (issue 15): the same SubjectPublicKeyInfo bytes as
 * X509_set_pubkey, and a parsed key the verifier can read. */
static void
test_pubkey_fast(void **state)
{
	int types[] = { KEY_EC_P256, KEY_EC_P384, KEY_RSA_2048, KEY_ED25519 };
	size_t t;

	(void)state;
	for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		struct mtls_error err;
		EVP_PKEY *k = NULL, *got;
		X509 *a = X509_new(), *b = X509_new();
		unsigned char *da = NULL, *db = NULL;
		int na, nb;

		error_clear(&err);
		assert_int_equal(key_generate(types[t], &k, &err), 0);
		assert_int_equal(X509_set_pubkey(a, k), 1);
		assert_int_equal(x509_set_pubkey_fast(b, k), 1);
		na = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(a), &da);
		nb = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(b), &db);
		assert_true(na > 0);
		assert_int_equal(na, nb);
		assert_memory_equal(da, db, (size_t)na);
		assert_non_null(got = X509_get0_pubkey(b));
		assert_int_equal(EVP_PKEY_eq(got, k), 1);
		assert_int_equal(EVP_PKEY_get_bits(got), EVP_PKEY_get_bits(k));
		OPENSSL_free(da);
		OPENSSL_free(db);
		X509_free(a);
		X509_free(b);
		EVP_PKEY_free(k);
	}
}

/* <x>'s extension <nid> has the DER OpenSSL's text form <text> makes */
static void
ext_is(X509 *x, X509 *issuer, int nid, const char *text)
{
	X509V3_CTX ctx;
	X509_EXTENSION *want;
	unsigned char *dw = NULL, *dg = NULL;
	int i, nw, ng;

	X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	assert_non_null(want = X509V3_EXT_conf_nid(NULL, &ctx, nid, text));
	i = X509_get_ext_by_NID(x, nid, -1);
	assert_true(i >= 0);
	assert_int_equal(X509_get_ext_by_NID(x, nid, i), -1);	/* once */
	nw = i2d_X509_EXTENSION(want, &dw);
	ng = i2d_X509_EXTENSION(X509_get_ext(x, i), &dg);
	assert_true(nw > 0);
	if (ng != nw || memcmp(dw, dg, (size_t)nw) != 0)
		fail_msg("extension %s differs from '%s'", OBJ_nid2sn(nid),
		    text);
	OPENSSL_free(dw);
	OPENSSL_free(dg);
	X509_EXTENSION_free(want);
}

/* Extensions made from their structures (issue 15) are the bytes their
 * text forms made: each profile, EC and RSA leaves, a CA server's */
static void
test_ext_same(void **state)
{
	struct profile_req r;
	struct ids sans;
	struct fx_cert in, cr, lf;
	EVP_PKEY *rsa;
	int k;

	(void)state;
	ext_is(root.x, NULL, NID_basic_constraints, "critical,CA:TRUE");
	ext_is(root.x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
	ext_is(root.x, NULL, NID_subject_key_identifier, "hash");
	assert_int_equal(X509_get_ext_by_NID(root.x,
	    NID_authority_key_identifier, -1), -1);
	in = fx_intermediate(&root, "example.org", "int", NULL, 0, NULL, 0,
	    now);
	ext_is(in.x, root.x, NID_basic_constraints,
	    "critical,CA:TRUE,pathlen:0");
	ext_is(in.x, root.x, NID_key_usage, "critical,keyCertSign,cRLSign");
	ext_is(in.x, root.x, NID_subject_key_identifier, "hash");
	ext_is(in.x, root.x, NID_authority_key_identifier, "keyid:always");
	memset(&r, 0, sizeof(r));
	r.kind = PROFILE_CROSS;
	r.org = "example.org";
	r.cn = "cross";
	r.not_before = now - 60;
	r.not_after = now + FX_DAY;
	r.issuer = root.x;
	r.issuer_key = root.k;
	cr = fx_profile(&r);
	ext_is(cr.x, root.x, NID_basic_constraints, "critical,CA:TRUE");
	ext_is(cr.x, root.x, NID_authority_key_identifier, "keyid:always");
	memset(&sans, 0, sizeof(sans));
	assert_int_equal(ids_add(&sans, "", "spiffe://example.org/a", 22), 0);
	for (k = 0; k < 3; k++) {
		struct mtls_error err;

		memset(&r, 0, sizeof(r));
		r.kind = PROFILE_LEAF;
		r.org = "example.org";
		r.sans = &sans;
		r.not_before = now - 60;
		r.not_after = now + FX_DAY;
		r.issuer = in.x;
		r.issuer_key = in.k;
		r.ca_server = k == 1;
		rsa = k == 2 ? fx_key("rsa2048") : fx_key("ec");
		r.pubkey = rsa;
		r.pubkey_fast = 1;
		error_clear(&err);
		assert_int_equal(profile_build(&r, &lf.x, &err), 0);
		ext_is(lf.x, in.x, NID_basic_constraints, "critical,CA:FALSE");
		ext_is(lf.x, in.x, NID_key_usage, k == 2 ?
		    "critical,digitalSignature,keyEncipherment" :
		    "critical,digitalSignature");
		ext_is(lf.x, in.x, NID_ext_key_usage, k == 1 ?
		    "serverAuth,clientAuth," MTLS_OID_CA_SERVER :
		    "serverAuth,clientAuth");
		ext_is(lf.x, in.x, NID_subject_key_identifier, "hash");
		ext_is(lf.x, in.x, NID_authority_key_identifier,
		    "keyid:always");
		X509_free(lf.x);
		EVP_PKEY_free(rsa);
	}
	/* a leaf that issues itself (libmtls's test identities) */
	{
		struct mtls_error err;

		memset(&r, 0, sizeof(r));
		r.kind = PROFILE_LEAF;
		r.sans = &sans;
		r.not_before = now - 60;
		r.not_after = now + FX_DAY;
		r.pubkey = r.issuer_key = fx_key("ec");
		error_clear(&err);
		assert_int_equal(profile_build(&r, &lf.x, &err), 0);
		ext_is(lf.x, NULL, NID_subject_key_identifier, "hash");
		ext_is(lf.x, NULL, NID_authority_key_identifier,
		    "keyid:always");
		X509_free(lf.x);
		EVP_PKEY_free(r.pubkey);
	}
	ids_free(&sans);
	fx_cert_free(&cr);
	fx_cert_free(&in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ext_same),
		cmocka_unit_test(test_scoped_intermediate),
		cmocka_unit_test(test_scope_oid),
		cmocka_unit_test(test_leaf),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_pubkey_fast),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
