/*
 * Fuzz target: ocsp_check and ocsp_matches, what a client with
 * require_staple does with the bytes a server staples (and the proxy with
 * what a responder answers). The certificates are made once at start; the
 * time is fixed.
 */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/ocsp.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static X509 *root, *leaf;
static STACK_OF(X509) *chain;
static X509_STORE *store;

static X509 *
make(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, int ca)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509_EXTENSION *e;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
	ASN1_TIME_set(X509_getm_notAfter(x), 1900000000);
	X509_set_pubkey(x, key);
	e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
	    ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	X509_sign(x, ikey, EVP_sha256());
	X509_NAME_free(n);
	return x;
}

static void
setup(void)
{
	EVP_PKEY *rk = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");

	root = make("fuzz root", rk, NULL, rk, 1);
	leaf = make("fuzz leaf", lk, root, rk, 0);
	chain = sk_X509_new_null();
	sk_X509_push(chain, leaf);
	store = X509_STORE_new();
	X509_STORE_add_cert(store, root);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(lk);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct ocsp_result res;
	struct mtls_error err;

	if (store == NULL)
		setup();
	error_clear(&err);
	if (ocsp_check(data, len, leaf, chain, store, 1800000000, &res,
	    &err) != 0 && err.msg[0] == '\0')
		abort();
	(void)ocsp_matches(data, len, leaf, chain, store);
	return 0;
}
