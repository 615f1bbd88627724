/*
 * A PKCS#10 CSR parsed once (issue 15). d2i_X509_REQ gives the
 * SubjectPublicKeyInfo to OpenSSL 3.0's decoder (OSSL_DECODER_CTX, about
 * 100 us, a shared rwlock under threads): most of a renewal's parse. The
 * fast path splits the same DER with OpenSSL's ASN.1 templates, the ones
 * of X509_REQ (crypto/x509/x_req.c) but the key left as its two parts
 * (X509_ALGOR, BIT STRING), makes the key with pubkey.c's
 * pubkey_from_spki_fast, verifies the signature (ECDSA_verify on an EC key
 * made on a group built once, else ASN1_item_verify) over the
 * CertificationRequestInfo exactly as received (the template keeps its
 * encoding, as X509_REQ_INFO's does) and reads the extension request as
 * X509_REQ_get_extensions does. It only ever accepts: any shape it does
 * not know (RSA, version != 0, explicit curve parameters, a compressed
 * point) or any failure goes to d2i_X509_REQ on the same bytes, which
 * decides and says why. The key returned is the one the signature was
 * verified with; fuzz_csr_fast and test_csr check that both paths agree
 * (docs/security/csrfast.md).
 */
#include <stddef.h>

#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "internal.h"

typedef struct {
	X509_ALGOR	*algor;
	ASN1_BIT_STRING	*key;
} CSR_SPKI;

ASN1_SEQUENCE(CSR_SPKI) = {
	ASN1_SIMPLE(CSR_SPKI, algor, X509_ALGOR),
	ASN1_SIMPLE(CSR_SPKI, key, ASN1_BIT_STRING)
} static_ASN1_SEQUENCE_END(CSR_SPKI)

typedef struct {
	ASN1_ENCODING	 enc;	/* the bytes the signature covers */
	ASN1_INTEGER	*version;
	X509_NAME	*subject;
	CSR_SPKI	*spki;
	STACK_OF(X509_ATTRIBUTE) *attributes;
} CSR_INFO;

ASN1_SEQUENCE_enc(CSR_INFO, enc, NULL) = {
	ASN1_SIMPLE(CSR_INFO, version, ASN1_INTEGER),
	ASN1_SIMPLE(CSR_INFO, subject, X509_NAME),
	ASN1_SIMPLE(CSR_INFO, spki, CSR_SPKI),
	/* OPTIONAL as X509_REQ_INFO's (x_req.c: invalid encodings) */
	ASN1_IMP_SET_OF_OPT(CSR_INFO, attributes, X509_ATTRIBUTE, 0)
} static_ASN1_SEQUENCE_END_ref(CSR_INFO, CSR_INFO)

typedef struct {
	CSR_INFO	*info;
	X509_ALGOR	*sig_alg;
	ASN1_BIT_STRING	*signature;
} CSR;

ASN1_SEQUENCE(CSR) = {
	ASN1_SIMPLE(CSR, info, CSR_INFO),
	ASN1_SIMPLE(CSR, sig_alg, X509_ALGOR),
	ASN1_SIMPLE(CSR, signature, ASN1_BIT_STRING)
} static_ASN1_SEQUENCE_END(CSR)

/* X509_REQ_get_extensions on the attributes: the first attribute of a
 * registered extension-request type; none is an empty stack, a malformed
 * one NULL */
static STACK_OF(X509_EXTENSION) *
attrs_extensions(const STACK_OF(X509_ATTRIBUTE) *attrs)
{
	ASN1_TYPE *ext = NULL;
	const unsigned char *p;
	int *nid, idx;

	for (nid = X509_REQ_get_extension_nids(); nid != NULL &&
	    *nid != NID_undef; nid++) {
		if ((idx = X509at_get_attr_by_NID(attrs, *nid, -1)) < 0)
			continue;
		ext = X509_ATTRIBUTE_get0_type(X509at_get_attr(attrs, idx), 0);
		break;
	}
	if (ext == NULL)
		return sk_X509_EXTENSION_new_null();
	if (ext->type != V_ASN1_SEQUENCE)
		return NULL;
	p = ext->value.sequence->data;
	return (STACK_OF(X509_EXTENSION) *)ASN1_item_d2i(NULL, &p,
	    ext->value.sequence->length, ASN1_ITEM_rptr(X509_EXTENSIONS));
}

/*
 * An ECDSA signature on a legacy EC key (pubkey.c's ec_legacy) verified
 * over the CertificationRequestInfo as received: ecdsa-with-SHA256/384/512
 * with no parameters (RFC 5758 3.2) and no unused bits. 1 verified, 0 not,
 * -1 anything else: ASN1_item_verify decides (it would take the legacy key
 * to the provider first, building its curve's group again).
 */
static int
sig_verify(const CSR *c, EVP_PKEY *k)
{
	const ASN1_OBJECT *oid;
	const void *pval;
	int ptype, md_nid, pk_nid;

	X509_ALGOR_get0(&oid, &ptype, &pval, c->sig_alg);
	if (ptype != V_ASN1_UNDEF || (c->signature->flags & 0x7) != 0 ||
	    c->info->enc.enc == NULL || c->info->enc.modified ||
	    !OBJ_find_sigid_algs(OBJ_obj2nid(oid), &md_nid, &pk_nid) ||
	    pk_nid != NID_X9_62_id_ecPublicKey)
		return -1;
	return pubkey_ecdsa_verify(k, md_nid, c->info->enc.enc,
	    (size_t)c->info->enc.len, ASN1_STRING_get0_data(c->signature),
	    (size_t)ASN1_STRING_length(c->signature));
}

int
csr_parse_fast(const unsigned char *der, size_t len, EVP_PKEY **pub,
    STACK_OF(X509_EXTENSION) **exts)
{
	const unsigned char *p = der;
	CSR *c;
	EVP_PKEY *k = NULL;
	int ok = 0, v;

	*pub = NULL;
	*exts = NULL;
	if (len == 0 || len > (1 << 20))
		return 0;
	ERR_set_mark();
	c = (CSR *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(CSR));
	if (c == NULL || p != der + len ||
	    ASN1_INTEGER_get(c->info->version) != 0 ||
	    (k = pubkey_from_spki_fast(c->info->spki->algor,
	    c->info->spki->key, 1)) == NULL ||
	    (v = sig_verify(c, k)) == 0 || (v < 0 &&
	    ASN1_item_verify(ASN1_ITEM_rptr(CSR_INFO), c->sig_alg,
	    c->signature, c->info, k) != 1))
		goto out;
	*exts = attrs_extensions(c->info->attributes);
	*pub = k;
	k = NULL;
	ok = 1;
 out:
	EVP_PKEY_free(k);
	ASN1_item_free((ASN1_VALUE *)c, ASN1_ITEM_rptr(CSR));
	if (ok)
		ERR_clear_last_mark();
	else
		ERR_pop_to_mark();	/* the fallback's errors are the ones */
	return ok;
}

enum csr_verdict
csr_parse(const unsigned char *der, size_t len, int fast, EVP_PKEY **pub,
    STACK_OF(X509_EXTENSION) **exts)
{
	const unsigned char *p = der;
	X509_REQ *req;
	enum csr_verdict v;

	if (fast && csr_parse_fast(der, len, pub, exts))
		return CSR_OK;
	*pub = NULL;
	*exts = NULL;
	if (len > (1 << 20))
		return CSR_NOT_CSR;
	req = d2i_X509_REQ(NULL, &p, (long)len);
	if (req == NULL || p != der + len)
		v = CSR_NOT_CSR;
	else if (X509_REQ_get0_pubkey(req) == NULL)
		v = CSR_NO_KEY;
	else if (X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1)
		v = CSR_BAD_SIGNATURE;
	else if ((*pub = X509_REQ_get_pubkey(req)) == NULL)
		v = CSR_NO_KEY;
	else {
		*exts = X509_REQ_get_extensions(req);
		v = CSR_OK;
	}
	X509_REQ_free(req);
	return v;
}
