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

#include <limits.h>
#include <pthread.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "internal.h"

int
x509_set_pubkey_fast(X509 *x, EVP_PKEY *pkey)
{
	EVP_PKEY *legacy = NULL;
	int id = EVP_PKEY_get_base_id(pkey), rv;

	if (EVP_PKEY_get0_provider(pkey) == NULL &&
	    (id == EVP_PKEY_EC || id == EVP_PKEY_RSA))
		return X509_set_pubkey(x, pkey);	/* already legacy */
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

/*
 * A CSR's SubjectPublicKeyInfo as a key without OpenSSL 3.0's decoder
 * (issue 15): d2i_X509_REQ hands the SPKI to an OSSL_DECODER_CTX, about
 * 100 us on the reference machine (and a shared rwlock under threads).
 * For the common shapes the parts OpenSSL's own template already split
 * (algorithm, BIT STRING) go to the key manager directly: an EC point on a
 * NIST curve by EVP_PKEY_fromdata (the point is decoded and checked on
 * the curve by EC_POINT_oct2point, as the decoder does), an Ed25519 key by
 * EVP_PKEY_new_raw_public_key. Anything else, or anything odd (explicit
 * curve parameters, a compressed point, unused bits, parameters where
 * there should be none) is NULL: the caller falls back to d2i_X509_REQ.
 * <legacy>: an EC key is made as a legacy EC_KEY on a group made once
 * (ec_legacy), for pubkey_ecdsa_verify and x509_set_pubkey_fast, which
 * then need no group built per key.
 */
static const struct {
	int nid;
	const char *name;
	int len;	/* uncompressed point: 04 || X || Y */
} curves[] = {
	{ NID_X9_62_prime256v1, "P-256", 65 },
	{ NID_secp384r1, "P-384", 97 },
	{ NID_secp521r1, "P-521", 133 },
};
#define N_CURVES ((int)(sizeof(curves) / sizeof(curves[0])))

/*
 * The named curves' groups, made once. Every EC key OpenSSL 3.0 makes from
 * data (EVP_PKEY_fromdata, a provider import, EVP_PKEY_get1_EC_KEY's
 * export) builds its group from the curve's parameters: a Montgomery
 * context and a modular inverse, about a P-256 signature's time each; a
 * renewal made two (the CSR's key, then its legacy copy for the
 * certificate). EC_KEY_set_group copies a made group: a few allocations.
 */
static EC_GROUP *groups[N_CURVES];
static pthread_once_t groups_once = PTHREAD_ONCE_INIT;

static void
groups_make(void)
{
	int i;

	for (i = 0; i < N_CURVES; i++)
		groups[i] = EC_GROUP_new_by_curve_name(curves[i].nid);
}

/* A legacy EC key on curves[i] at point p[len] (uncompressed); the point
 * is decoded and checked on the curve by EC_POINT_oct2point (through
 * EC_POINT_set_affine_coordinates), as the provider's import does */
static EVP_PKEY *
ec_legacy(int i, const unsigned char *p, int len)
{
	EC_KEY *ec = NULL;
	EVP_PKEY *pkey = NULL;

	if (pthread_once(&groups_once, groups_make) != 0 || groups[i] == NULL)
		return NULL;
	if ((ec = EC_KEY_new()) == NULL || !EC_KEY_set_group(ec, groups[i]) ||
	    !EC_KEY_oct2key(ec, p, (size_t)len, NULL) ||
	    (pkey = EVP_PKEY_new()) == NULL || !EVP_PKEY_assign_EC_KEY(pkey,
	    ec)) {
		EVP_PKEY_free(pkey);
		EC_KEY_free(ec);
		return NULL;
	}
	return pkey;
}

/*
 * ECDSA over data[len] with a legacy EC key (pubkey_from_spki_fast's
 * <legacy>): ECDSA_verify on the digest, which takes the signature only in
 * its DER form (it re-encodes and compares). 1 verified, 0 not, -1: not a
 * shape this knows (the caller falls back to ASN1_item_verify).
 */
int
pubkey_ecdsa_verify(EVP_PKEY *pkey, int md_nid, const unsigned char *data,
    size_t len, const unsigned char *sig, size_t siglen)
{
	static EVP_MD *mds[3];	/* fetched once: no lookup per renewal */
	static const int md_nids[3] = { NID_sha256, NID_sha384, NID_sha512 };
	const EC_KEY *ec;
	EVP_MD *md, *none = NULL;
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned int dl;
	int i;

	if (EVP_PKEY_get0_provider(pkey) != NULL ||
	    (ec = EVP_PKEY_get0_EC_KEY(pkey)) == NULL)
		return -1;
	for (i = 0; i < 3 && md_nids[i] != md_nid; i++)
		;
	if (i == 3)
		return -1;
	if ((md = __atomic_load_n(&mds[i], __ATOMIC_ACQUIRE)) == NULL) {
		if ((md = EVP_MD_fetch(NULL, OBJ_nid2sn(md_nid), NULL)) ==
		    NULL)
			return -1;
		if (!__atomic_compare_exchange_n(&mds[i], &none, md, 0,
		    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			EVP_MD_free(md);
			md = none;
		}
	}
	if (siglen > INT_MAX || EVP_Digest(data, len, dg, &dl, md, NULL) != 1)
		return -1;
	return ECDSA_verify(0, dg, (int)dl, sig, (int)siglen,
	    (EC_KEY *)ec) == 1;
}

EVP_PKEY *
pubkey_from_spki_fast(const X509_ALGOR *alg, const ASN1_BIT_STRING *bits,
    int legacy)
{
	const ASN1_OBJECT *oid;
	const void *pval;
	int ptype, nid, len, i;
	const unsigned char *p;
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM params[3];

	if (alg == NULL || bits == NULL || (bits->flags & 0x7) != 0)
		return NULL;
	X509_ALGOR_get0(&oid, &ptype, &pval, alg);
	p = ASN1_STRING_get0_data(bits);
	len = ASN1_STRING_length(bits);
	nid = OBJ_obj2nid(oid);
	if (nid == NID_ED25519)
		return ptype == V_ASN1_UNDEF && len == 32 ?
		    EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p, 32) :
		    NULL;
	if (nid != NID_X9_62_id_ecPublicKey || ptype != V_ASN1_OBJECT)
		return NULL;
	nid = OBJ_obj2nid(pval);
	for (i = 0; i < N_CURVES; i++)
		if (curves[i].nid == nid)
			break;
	if (i == N_CURVES ||
	    len != curves[i].len || p[0] != 0x04)
		return NULL;
	if (legacy)
		return ec_legacy(i, p, len);
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, (char *)curves[i].name, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
	    (void *)p, (size_t)len);
	params[2] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) != NULL &&
	    (EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0))
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}
