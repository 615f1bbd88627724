/*
 * Join tokens (mtls ca token): one-time, short-lived, pinned to the root
 * and to this CA. Only the SHA-256 of a token is stored; the token itself
 * exists once, in the output of the command that made it.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "ca_local.h"

/* The root this CA chains to: in a root's directory the CA itself, else
 * the bundle certificate that issued the top of ca.pem. */
static X509 *
own_root(struct ca *ca)
{
	X509 *top = sk_X509_value(ca->chain, sk_X509_num(ca->chain) - 1);
	int i;

	if (cert_is_self_signed(ca->cert))
		return ca->cert;
	for (i = 0; top && i < sk_X509_num(ca->bundle); i++)
		if (X509_check_issued(sk_X509_value(ca->bundle, i), top) ==
		    X509_V_OK)
			return sk_X509_value(ca->bundle, i);
	return sk_X509_num(ca->bundle) > 0 ? sk_X509_value(ca->bundle, 0) :
	    NULL;
}

void
ca_token_hash(const char *token, char hex[65])
{
	unsigned char h[32];
	int i;

	SHA256((const unsigned char *)token, strlen(token), h);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

int
ca_token_create(struct ca *ca, const char *spiffe_id, int64_t ttl,
    char *token, size_t len, struct mtls_error *err)
{
	unsigned char rnd[32], fp[32], cfp[32];
	char why[200], hash[65], secret[44], fph[65], cfph[65], b64[48];
	unsigned int fl = 0, cl = 0;
	X509 *root = own_root(ca);
	size_t i, k;
	int64_t expires = 0;
	int ok = 0, rv;

	if (ca_until((int64_t)time(NULL), ttl, 0, "token --ttl", &expires,
	    err) != 0)
		return -1;
	if (mtls_spiffe_id_check(spiffe_id, why, sizeof(why)) != 0)
		return error_set(err, MTLS_ERR_ARG, "--spiffe-id '%.200s' is "
		    "invalid: %s", spiffe_id, why);
	for (k = 0; k < ca->n_roles && !ok; k++)
		ok = role_allows(&ca->roles[k], spiffe_id);
	if (!ok)
		return error_set(err, MTLS_ERR_ARG, "%.200s is not allowed by "
		    "any role in %s/ca.conf", spiffe_id, ca->dir);
	/* the root, and this CA (the issuer of ca serve's certificate): a
	 * sibling CA's server chains to the same root (issue 18) */
	if (root == NULL || !X509_digest(root, EVP_sha256(), fp, &fl) ||
	    fl != 32 || !X509_digest(ca->cert, EVP_sha256(), cfp, &cl) ||
	    cl != 32)
		return error_set(err, MTLS_ERR_CRYPTO, "cannot fingerprint the "
		    "root and this CA");
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return error_set(err, MTLS_ERR_CRYPTO, "no randomness");
	/* 32 random bytes (256 bits) as 43 base64url characters */
	EVP_EncodeBlock((unsigned char *)b64, rnd, sizeof(rnd));
	for (k = 0; k < 43; k++)
		secret[k] = b64[k] == '+' ? '-' : b64[k] == '/' ? '_' : b64[k];
	secret[43] = '\0';
	OPENSSL_cleanse(b64, sizeof(b64));
	OPENSSL_cleanse(rnd, sizeof(rnd));
	for (i = 0; i < 32; i++) {
		snprintf(fph + 2 * i, 3, "%02x", fp[i]);
		snprintf(cfph + 2 * i, 3, "%02x", cfp[i]);
	}
	if ((size_t)snprintf(token, len, "mtls2.%s.%s.%s", fph, cfph,
	    secret) >= len) {
		OPENSSL_cleanse(secret, sizeof(secret));
		return error_set(err, MTLS_ERR_ARG, "token buffer too small");
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	ca_token_hash(token, hash);
	rv = store_token_add(ca->store, hash, spiffe_id, expires, err);
	if (rv != 0)
		OPENSSL_cleanse(token, len);
	return rv;
}
