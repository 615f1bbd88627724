/*
 * Fuzz target: crls_parse and crl_check, what the proxy does with the
 * bytes a --crl-url answers or a --crl file holds before it installs them
 * (crl_admit). Each CRL parsed is checked as it came (its signature fails
 * against our CA unless it is one of ours) and again re-signed by our CA
 * under its name, so that the time and CRL number checks see arbitrary
 * contents; the installed CRL is a fixed one of ours, number 5. The
 * certificates are made once at start; the time is fixed.
 */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/x509v3.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define NOW	1800000000

static X509 *root;
static EVP_PKEY *rkey;
static STACK_OF(X509) *trust;
static STACK_OF(X509_CRL) *installed;

static void
setup(void)
{
	X509_NAME *n = X509_NAME_new();
	X509_EXTENSION *e;
	X509_CRL *c = NULL;
	X509V3_CTX ctx;
	struct mtls_error err;

	rkey = EVP_EC_gen("P-256");
	root = X509_new();
	X509_set_version(root, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(root), 1);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"fuzz root", -1, -1, 0);
	X509_set_subject_name(root, n);
	X509_set_issuer_name(root, n);
	ASN1_TIME_set(X509_getm_notBefore(root), 1700000000);
	ASN1_TIME_set(X509_getm_notAfter(root), 1900000000);
	X509_set_pubkey(root, rkey);
	e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
	    "critical,CA:TRUE");
	X509_add_ext(root, e, -1);
	X509_EXTENSION_free(e);
	e = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage,
	    "critical,keyCertSign,cRLSign");
	X509_add_ext(root, e, -1);
	X509_EXTENSION_free(e);
	/* crl_build writes an AKI: the CA needs a subject key identifier */
	X509V3_set_ctx(&ctx, root, root, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
	X509_add_ext(root, e, -1);
	X509_EXTENSION_free(e);
	X509_sign(root, rkey, EVP_sha256());
	X509_NAME_free(n);
	trust = sk_X509_new_null();
	sk_X509_push(trust, root);
	installed = sk_X509_CRL_new_null();
	if (crl_build(root, rkey, NULL, 0, 5, NOW - 3600, NOW + 86400, &c,
	    &err) != 0)
		abort();
	sk_X509_CRL_push(installed, c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	STACK_OF(X509_CRL) *sk = NULL;
	struct mtls_error err;
	int i, v;

	if (root == NULL)
		setup();
	error_clear(&err);
	if (crls_parse(data, len, "fuzz", &sk, &err) != 0) {
		if (err.msg[0] == '\0')
			abort();
		return 0;
	}
	v = crl_check(sk, "fuzz", trust, NULL, installed, CRL_CHECK_STRICT |
	    CRL_CHECK_TIME, NOW, &err);
	if (v < 0 || v >= CRL_VERDICT__COUNT || (v != CRL_OK &&
	    err.msg[0] == '\0'))
		abort();
	for (i = 0; i < sk_X509_CRL_num(sk); i++) {
		X509_CRL *c = sk_X509_CRL_value(sk, i);

		if (!X509_CRL_set_issuer_name(c, X509_get_subject_name(root)) ||
		    X509_CRL_sign(c, rkey, EVP_sha256()) <= 0)
			continue;
	}
	error_clear(&err);
	v = crl_check(sk, "fuzz", trust, NULL, installed, CRL_CHECK_STRICT |
	    CRL_CHECK_TIME, NOW, &err);
	/* signed by our CA under its name: never an issuer problem */
	if (v == CRL_UNKNOWN_ISSUER || v == CRL_BAD_SIGNATURE ||
	    (v != CRL_OK && err.msg[0] == '\0'))
		abort();
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	return 0;
}
