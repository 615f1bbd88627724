/*
 * Setting a certificate's public key without OpenSSL 3.0's encoder and
 * decoder round trip (issue 15). X509_set_pubkey() on a provider key (every
 * key OpenSSL 3 parses or makes) encodes it with a new OSSL_ENCODER_CTX and
 * decodes the result with a new OSSL_DECODER_CTX: about 440 us on the
 * reference machine, 20 P-256 signatures, for 91 bytes. A legacy EC_KEY or
 * RSA copy of the same key takes the ASN.1 method (i2o/i2d of the key
 * itself): 8 us. The bytes are the same SubjectPublicKeyInfo, and the
 * certificate then holds that copy as its parsed key, which is what
 * verification (key strength, signature checks) reads; provider-parameter
 * readers (EVP_PKEY_get_*_param: a JWK's curve and coordinates) cannot, so
 * profile_build uses it only when asked (the CA's leaf issuance, whose
 * certificate is verified, encoded and freed).
 *
 * This file alone uses the deprecated EC_KEY/RSA accessors; they exist in
 * every OpenSSL 3 and are the only way to reach the ASN.1 method.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "internal.h"

int
x509_set_pubkey_fast(X509 *x, EVP_PKEY *pkey)
{
	EVP_PKEY *legacy = NULL;
	int id = EVP_PKEY_get_base_id(pkey), rv;

	if (id == EVP_PKEY_EC) {
		EC_KEY *ec = EVP_PKEY_get1_EC_KEY(pkey);

		if (ec != NULL && (legacy = EVP_PKEY_new()) != NULL &&
		    !EVP_PKEY_assign_EC_KEY(legacy, ec)) {
			EVP_PKEY_free(legacy);
			legacy = NULL;
		}
		if (legacy == NULL)
			EC_KEY_free(ec);
	} else if (id == EVP_PKEY_RSA) {
		RSA *rsa = EVP_PKEY_get1_RSA(pkey);

		if (rsa != NULL && (legacy = EVP_PKEY_new()) != NULL &&
		    !EVP_PKEY_assign_RSA(legacy, rsa)) {
			EVP_PKEY_free(legacy);
			legacy = NULL;
		}
		if (legacy == NULL)
			RSA_free(rsa);
	}
	if (legacy == NULL)	/* Ed25519, RSA-PSS...: the general path */
		return X509_set_pubkey(x, pkey);
	rv = X509_set_pubkey(x, legacy);
	EVP_PKEY_free(legacy);	/* the certificate holds its own reference */
	return rv;
}
