/*
 * A PKI made in memory for the unit tests of verify.c and tls.c: roots,
 * intermediates and leaves from profile.c (what `mtls ca` issues), and
 * deliberately bad certificates the profiles refuse to make, built with
 * OpenSSL the way tests/integration/20-chains.sh builds them with
 * `openssl x509 -req` (extensions given as "name=value" lines). Included
 * by one test program each; every helper fails the test on error.
 */
#ifndef MTLS_TEST_PKI_FIXTURE_H
#define MTLS_TEST_PKI_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "internal.h"

#define FX_UNUSED	__attribute__((unused))
#define FX_DAY		86400

/* A key: "ec" (P-256), "rsa1024", "rsa2048", "dsa" (2048 bits). */
static FX_UNUSED EVP_PKEY *
fx_key(const char *spec)
{
	EVP_PKEY *k = NULL, *params = NULL;
	EVP_PKEY_CTX *pc;

	if (strcmp(spec, "ec") == 0)
		k = EVP_EC_gen("P-256");
	else if (strcmp(spec, "rsa1024") == 0)
		k = EVP_RSA_gen(1024);
	else if (strcmp(spec, "rsa2048") == 0)
		k = EVP_RSA_gen(2048);
	else if (strcmp(spec, "dsa") == 0) {
		pc = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL);
		assert_non_null(pc);
		assert_int_equal(EVP_PKEY_paramgen_init(pc), 1);
		assert_int_equal(EVP_PKEY_CTX_set_dsa_paramgen_bits(pc, 2048), 1);
		assert_int_equal(EVP_PKEY_paramgen(pc, &params), 1);
		EVP_PKEY_CTX_free(pc);
		pc = EVP_PKEY_CTX_new_from_pkey(NULL, params, NULL);
		assert_non_null(pc);
		assert_int_equal(EVP_PKEY_keygen_init(pc), 1);
		assert_int_equal(EVP_PKEY_keygen(pc, &k), 1);
		EVP_PKEY_CTX_free(pc);
		EVP_PKEY_free(params);
	}
	assert_non_null(k);
	return k;
}

/* A certificate and its key, owned together. */
struct fx_cert {
	X509		*x;
	EVP_PKEY	*k;
};

static FX_UNUSED void
fx_cert_free(struct fx_cert *c)
{
	X509_free(c->x);
	EVP_PKEY_free(c->k);
	memset(c, 0, sizeof(*c));
}

/* profile_build() with a new P-256 key; <r> names everything else. */
static FX_UNUSED struct fx_cert
fx_profile(struct profile_req *r)
{
	struct fx_cert c = { NULL, NULL };
	struct mtls_error err;

	memset(&err, 0, sizeof(err));
	c.k = fx_key("ec");
	r->pubkey = c.k;
	if (r->issuer_key == NULL)
		r->issuer_key = c.k;	/* a root signs itself */
	if (profile_build(r, &c.x, &err) != 0)
		fail_msg("profile_build: %s", err.msg);
	return c;
}

static FX_UNUSED struct fx_cert
fx_root(const char *org, const char *cn, int64_t now)
{
	struct profile_req r;

	memset(&r, 0, sizeof(r));
	r.kind = PROFILE_ROOT;
	r.org = org;
	r.cn = cn;
	r.not_before = now - 60;
	r.not_after = now + 3650LL * FX_DAY;
	return fx_profile(&r);
}

/* An intermediate; with <spiffe> or <dns> it is scoped to its trust
 * domain <org> (as `mtls ca intermediate --permit-*` does). */
static FX_UNUSED struct fx_cert
fx_intermediate(const struct fx_cert *parent, const char *org, const char *cn,
    char * const *spiffe, size_t n_spiffe, char * const *dns, size_t n_dns,
    int64_t now)
{
	struct profile_req r;

	memset(&r, 0, sizeof(r));
	r.kind = PROFILE_INTERMEDIATE;
	r.org = org;
	r.cn = cn;
	r.not_before = now - 60;
	r.not_after = now + 365LL * FX_DAY;
	r.issuer = parent->x;
	r.issuer_key = parent->k;
	if (n_spiffe > 0 || n_dns > 0)
		r.permit_td = org;
	r.permit_spiffe = spiffe;
	r.n_permit_spiffe = n_spiffe;
	r.permit_dns = dns;
	r.n_permit_dns = n_dns;
	return fx_profile(&r);
}

/* A workload leaf with identities <ids> (NULL-terminated: "spiffe://..",
 * "dns:..", "ip:.."), valid [nb, na]. */
static FX_UNUSED struct fx_cert
fx_leaf(const struct fx_cert *issuer, const char *org, const char * const *ids,
    int64_t nb, int64_t na)
{
	struct profile_req r;
	struct ids sans;
	struct fx_cert c;
	size_t i;

	memset(&sans, 0, sizeof(sans));
	for (i = 0; ids[i] != NULL; i++)
		assert_int_equal(ids_add(&sans, "", ids[i], strlen(ids[i])), 0);
	memset(&r, 0, sizeof(r));
	r.kind = PROFILE_LEAF;
	r.org = org;
	r.sans = &sans;
	r.not_before = nb;
	r.not_after = na;
	r.issuer = issuer->x;
	r.issuer_key = issuer->k;
	c = fx_profile(&r);
	ids_free(&sans);
	return c;
}

/*
 * What `openssl x509 -req -CA <issuer> -extfile <exts>` makes (OpenSSL 3):
 * subject O=<org>, CN=<cn>, a new key of <keyspec>, the "name=value" lines
 * of <exts>, a subjectKeyIdentifier and an authorityKeyIdentifier unless
 * <exts> names them ("=none": leave it out), signed with <md> (NULL:
 * SHA-256), a random serial (or 0 with <serial0>), valid two days.
 * <issuer> NULL: self-signed.
 */
static FX_UNUSED struct fx_cert
fx_mk(const char *org, const char *cn, const struct fx_cert *issuer,
    const char *exts, const char *keyspec, const EVP_MD *md, int serial0,
    int64_t now)
{
	struct fx_cert c = { NULL, NULL };
	X509V3_CTX v3;
	X509_NAME *nm;
	X509 *iss;
	EVP_PKEY *ikey;
	unsigned char sn[16];
	BIGNUM *bn;
	char buf[2048], *line, *save = NULL, *eq;
	int ski = 1, aki = 1;

	c.k = fx_key(keyspec ? keyspec : "ec");
	assert_non_null(c.x = X509_new());
	assert_true(X509_set_version(c.x, X509_VERSION_3));
	assert_non_null(nm = X509_NAME_new());
	assert_true(X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC,
	    (const unsigned char *)org, -1, -1, 0));
	assert_true(X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0));
	assert_true(X509_set_subject_name(c.x, nm));
	iss = issuer ? issuer->x : c.x;
	ikey = issuer ? issuer->k : c.k;
	assert_true(X509_set_issuer_name(c.x, issuer ?
	    X509_get_subject_name(issuer->x) : nm));
	X509_NAME_free(nm);
	RAND_bytes(sn, sizeof(sn));
	sn[0] = (unsigned char)((sn[0] & 0x3f) | 0x40);
	assert_non_null(bn = BN_bin2bn(sn, serial0 ? 0 : (int)sizeof(sn),
	    NULL));
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.x)));
	BN_free(bn);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(c.x), (time_t)now));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(c.x),
	    (time_t)(now + 2 * FX_DAY)));
	assert_true(X509_set_pubkey(c.x, c.k));
	X509V3_set_ctx(&v3, iss, c.x, NULL, NULL, 0);
	snprintf(buf, sizeof(buf), "%s", exts ? exts : "");
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		X509_EXTENSION *e;

		assert_non_null(eq = strchr(line, '='));
		*eq++ = '\0';
		if (strcmp(line, "subjectKeyIdentifier") == 0)
			ski = 0;
		if (strcmp(line, "authorityKeyIdentifier") == 0)
			aki = 0;
		if (strcmp(eq, "none") == 0)
			continue;
		if ((e = X509V3_EXT_nconf(NULL, &v3, line, eq)) == NULL)
			fail_msg("extension %s=%s", line, eq);
		assert_true(X509_add_ext(c.x, e, -1));
		X509_EXTENSION_free(e);
	}
	if (ski) {
		X509_EXTENSION *e = X509V3_EXT_nconf(NULL, &v3,
		    "subjectKeyIdentifier", "hash");

		assert_non_null(e);
		assert_true(X509_add_ext(c.x, e, -1));
		X509_EXTENSION_free(e);
	}
	if (aki && issuer != NULL) {
		X509_EXTENSION *e = X509V3_EXT_nconf(NULL, &v3,
		    "authorityKeyIdentifier", "keyid");

		if (e != NULL)
			assert_true(X509_add_ext(c.x, e, -1));
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(c.x, ikey, EVP_PKEY_get_base_id(ikey) ==
	    EVP_PKEY_ED25519 ? NULL : md ? md : EVP_sha256()) > 0);
	return c;
}

/* A new stack holding references to the given certificates (NULL ends). */
static FX_UNUSED STACK_OF(X509) *
fx_stack(X509 *first, ...)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	va_list ap;
	X509 *x;

	assert_non_null(sk);
	va_start(ap, first);
	for (x = first; x != NULL; x = va_arg(ap, X509 *)) {
		X509_up_ref(x);
		assert_true(sk_X509_push(sk, x) > 0);
	}
	va_end(ap);
	return sk;
}

/* A private scratch folder under $TMPDIR; fx_rmdir removes it. */
static FX_UNUSED void
fx_tmpdir(char *buf, size_t len)
{
	const char *t = getenv("TMPDIR");

	snprintf(buf, len, "%s/mtls-unit-XXXXXX", t && *t ? t : "/tmp");
	assert_non_null(mkdtemp(buf));
}

static FX_UNUSED void
fx_rmdir(const char *dir)
{
	char cmd[600];

	if (strncmp(dir, "/tmp/", 5) != 0 && getenv("TMPDIR") == NULL)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* Writes <sk> as PEM to <dir>/<name>; the path goes to <path>. */
static FX_UNUSED void
fx_write_certs(const char *dir, const char *name, STACK_OF(X509) *sk,
    char *path, size_t len)
{
	FILE *f;
	int i;

	snprintf(path, len, "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	for (i = 0; i < sk_X509_num(sk); i++)
		assert_true(PEM_write_X509(f, sk_X509_value(sk, i)));
	assert_int_equal(fclose(f), 0);
}

static FX_UNUSED void
fx_write_cert(const char *dir, const char *name, X509 *x, char *path,
    size_t len)
{
	STACK_OF(X509) *sk = fx_stack(x, NULL);

	fx_write_certs(dir, name, sk, path, len);
	sk_X509_pop_free(sk, X509_free);
}

static FX_UNUSED void
fx_write_key(const char *dir, const char *name, EVP_PKEY *k, char *path,
    size_t len)
{
	FILE *f;

	snprintf(path, len, "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_true(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	assert_int_equal(fclose(f), 0);
}

/* A CRL of <ca> revoking <revoked> (may be NULL), issued at <this_upd>,
 * next due at <next_upd>. */
static FX_UNUSED X509_CRL *
fx_crl_at(const struct fx_cert *ca, X509 *revoked, int64_t this_upd,
    int64_t next_upd)
{
	struct crl_entry ent;
	struct mtls_error err;
	char hex[64];
	X509_CRL *crl = NULL;

	memset(&err, 0, sizeof(err));
	memset(&ent, 0, sizeof(ent));
	if (revoked != NULL) {
		serial_hex(X509_get0_serialNumber(revoked), hex, sizeof(hex));
		ent.serial_hex = hex;
		ent.revoked_at = this_upd;
		ent.reason = CRL_REASON_KEY_COMPROMISE;
	}
	if (crl_build(ca->x, ca->k, &ent, revoked ? 1 : 0, 1, this_upd,
	    next_upd, &crl, &err) != 0)
		fail_msg("crl_build: %s", err.msg);
	return crl;
}

/* A CRL of <ca> revoking <revoked> (may be NULL), current at <now>. */
static FX_UNUSED X509_CRL *
fx_crl(const struct fx_cert *ca, X509 *revoked, int64_t now)
{
	return fx_crl_at(ca, revoked, now - 60, now + 7 * FX_DAY);
}

static FX_UNUSED void
fx_write_crl(const char *dir, const char *name, X509_CRL *crl, char *path,
    size_t len)
{
	FILE *f;

	snprintf(path, len, "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_true(PEM_write_X509_CRL(f, crl));
	assert_int_equal(fclose(f), 0);
}

/* A DER OCSP response about <leaf> of <issuer>, signed by <signer>:
 * <status> (V_OCSP_CERTSTATUS_*), current over [this_upd, next_upd]. */
static FX_UNUSED uint8_t *
fx_ocsp_by(const struct fx_cert *issuer, const struct fx_cert *signer,
    X509 *leaf, int status, int64_t this_upd, int64_t next_upd, size_t *len)
{
	OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer->x);
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	ASN1_TIME *tu = ASN1_TIME_new(), *nu = ASN1_TIME_new();
	OCSP_RESPONSE *r;
	unsigned char *der = NULL;
	int n;

	assert_non_null(id);
	assert_non_null(bs);
	assert_non_null(ASN1_TIME_set(tu, (time_t)this_upd));
	assert_non_null(ASN1_TIME_set(nu, (time_t)next_upd));
	assert_non_null(OCSP_basic_add1_status(bs, id, status,
	    status == V_OCSP_CERTSTATUS_REVOKED ?
	    OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0,
	    status == V_OCSP_CERTSTATUS_REVOKED ? tu : NULL, tu, nu));
	assert_int_equal(OCSP_basic_sign(bs, signer->x, signer->k,
	    EVP_sha256(), NULL, 0), 1);
	assert_non_null(r = OCSP_response_create(
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, bs));
	assert_true((n = i2d_OCSP_RESPONSE(r, &der)) > 0);
	*len = (size_t)n;
	OCSP_RESPONSE_free(r);
	OCSP_BASICRESP_free(bs);
	OCSP_CERTID_free(id);
	ASN1_TIME_free(tu);
	ASN1_TIME_free(nu);
	return der;
}

/* The same, signed by the issuer itself. */
static FX_UNUSED uint8_t *
fx_ocsp(const struct fx_cert *issuer, X509 *leaf, int status,
    int64_t this_upd, int64_t next_upd, size_t *len)
{
	return fx_ocsp_by(issuer, issuer, leaf, status, this_upd, next_upd,
	    len);
}

#endif /* MTLS_TEST_PKI_FIXTURE_H */
