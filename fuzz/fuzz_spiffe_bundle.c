/*
 * Fuzz target: a SPIFFE trust bundle (JWK Set), what a partner's bundle
 * endpoint answers (bundlefetch.c) or a TD:BUNDLE file holds: jwks_parse,
 * then what the proxy does with it, mtls_config_add_trust_domain_mem (PEM
 * or JSON). A bundle that parses is emitted again (jwks_emit) and must
 * parse back to the same certificates. At start a real bundle (one EC
 * root, made in memory) runs through the same steps, so the success path
 * is replayed even from a corpus of hand-written seeds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int ready;

static void
one(const uint8_t *data, size_t len)
{
	STACK_OF(X509) *sk = NULL, *back = NULL;
	struct mtls_config *cfg;
	struct mtls_error err;
	char *json = NULL;
	int i;

	error_clear(&err);
	if (jwks_parse(data, len, "fuzz", &sk, &err) != 0) {
		if (err.msg[0] == '\0')
			abort();
	} else {
		if (sk_X509_num(sk) < 1)
			abort();	/* an empty bundle is refused */
		error_clear(&err);
		if (jwks_emit(sk, 1, 300, &json, &err) == 0) {
			if (jwks_parse((const uint8_t *)json, strlen(json),
			    "again", &back, &err) != 0 ||
			    sk_X509_num(back) != sk_X509_num(sk))
				abort();
			for (i = 0; i < sk_X509_num(sk); i++)
				if (X509_cmp(sk_X509_value(sk, i),
				    sk_X509_value(back, i)) != 0)
					abort();
		}
	}
	if ((cfg = mtls_config_new()) == NULL)
		abort();
	if (mtls_config_add_trust_domain_mem(cfg, "partner.com", data,
	    len) != 0 && mtls_config_error(cfg)[0] == '\0')
		abort();
	mtls_config_free(cfg);
	free(json);
	sk_X509_pop_free(sk, X509_free);
	sk_X509_pop_free(back, X509_free);
}

/* A real bundle: one self-signed EC root. */
static void
setup(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509_EXTENSION *e;
	STACK_OF(X509) *sk = sk_X509_new_null();
	struct mtls_error err;
	char *json = NULL;

	if (k == NULL || x == NULL || n == NULL || sk == NULL)
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"partner.com root", -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
	ASN1_TIME_set(X509_getm_notAfter(x), 1900000000);
	X509_set_pubkey(x, k);
	e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
	    "critical,CA:TRUE");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	X509_sign(x, k, EVP_sha256());
	sk_X509_push(sk, x);
	if (jwks_emit(sk, 1, 300, &json, &err) != 0)
		abort();
	one((const uint8_t *)json, strlen(json));
	free(json);
	sk_X509_pop_free(sk, X509_free);
	X509_NAME_free(n);
	EVP_PKEY_free(k);
	ready = 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (!ready)
		setup();
	one(data, len);
	return 0;
}
