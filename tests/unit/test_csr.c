/*
 * csr.c (issue 15): the template path and d2i_X509_REQ agree on every CSR
 * of a corpus made here (good ones of each key type, and bad ones): the
 * fast path accepts only what d2i_X509_REQ accepts, with the same key and
 * extension request, and csr_parse's verdict is d2i_X509_REQ's. The fast
 * path is taken for P-256, P-384, P-521 and Ed25519, not for the rest.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/core_names.h>

#include "pki_fixture.h"
#include "../../fuzz/csr_same.h"

enum { NO_FAST, FAST };

static unsigned char *
make_csr(EVP_PKEY *k, long version, int ext, int *len)
{
	X509_REQ *r = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *san;
	unsigned char *der = NULL;

	assert_non_null(r);
	assert_int_equal(X509_REQ_set_version(r, version), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(
	    r), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0), 1);
	assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
	if (ext == 1) {
		san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
		    "URI:spiffe://example.org/a");
		assert_non_null(san);
		assert_true(sk_X509_EXTENSION_push(exts, san) > 0);
		assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
	} else if (ext == 2)	/* an extension request that is no SEQUENCE */
		assert_int_equal(X509_REQ_add1_attr_by_NID(r, NID_ext_req,
		    V_ASN1_UTF8STRING, (const unsigned char *)"x", 1), 1);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	assert_true(X509_REQ_sign(r, k, EVP_PKEY_get_base_id(k) ==
	    EVP_PKEY_ED25519 || EVP_PKEY_get_base_id(k) == EVP_PKEY_ED448 ?
	    NULL : EVP_sha256()) > 0);
	*len = i2d_X509_REQ(r, &der);
	assert_true(*len > 0);
	X509_REQ_free(r);
	return der;
}

/* Both parses of der[len]; want_fast: whether the template path takes it.
 * Returns d2i_X509_REQ's verdict. */
static enum csr_verdict
both(const unsigned char *der, size_t len, int want_fast, EVP_PKEY *want)
{
	EVP_PKEY *fk, *sk, *ck;
	STACK_OF(X509_EXTENSION) *fe, *se, *ce;
	enum csr_verdict sv, cv;
	int fast;

	fast = csr_parse_fast(der, len, &fk, &fe);
	sv = csr_parse(der, len, 0, &sk, &se);
	cv = csr_parse(der, len, 1, &ck, &ce);
	assert_int_equal(fast, want_fast);
	assert_int_equal(cv, sv);
	if (fast) {
		assert_int_equal(sv, CSR_OK);
		assert_int_equal(EVP_PKEY_eq(fk, sk), 1);
		assert_true(csr_same_exts(fe, se));
	}
	if (sv == CSR_OK) {
		assert_int_equal(EVP_PKEY_eq(ck, sk), 1);
		assert_true(csr_same_exts(ce, se));
		if (want != NULL)
			assert_int_equal(EVP_PKEY_eq(sk, want), 1);
	}
	EVP_PKEY_free(fk);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(ck);
	sk_X509_EXTENSION_pop_free(fe, X509_EXTENSION_free);
	sk_X509_EXTENSION_pop_free(se, X509_EXTENSION_free);
	sk_X509_EXTENSION_pop_free(ce, X509_EXTENSION_free);
	return sv;
}

static void
check_key(EVP_PKEY *k, int want_fast)
{
	unsigned char *der;
	int len;

	assert_non_null(k);
	der = make_csr(k, 0, 0, &len);
	assert_int_equal(both(der, (size_t)len, want_fast, k), CSR_OK);
	OPENSSL_free(der);
	der = make_csr(k, 0, 1, &len);
	assert_int_equal(both(der, (size_t)len, want_fast, k), CSR_OK);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

static void
test_key_types(void **state)
{
	EVP_PKEY *k;

	(void)state;
	check_key(EVP_EC_gen("P-256"), FAST);
	check_key(EVP_EC_gen("P-384"), FAST);
	check_key(EVP_EC_gen("P-521"), FAST);
	check_key(EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), FAST);
	check_key(EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), NO_FAST);
	check_key(EVP_EC_gen("secp256k1"), NO_FAST);
	check_key(EVP_RSA_gen(2048), NO_FAST);
	/* a compressed point: d2i_X509_REQ's alone */
	k = EVP_EC_gen("P-256");
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_set_utf8_string_param(k,
	    OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"), 1);
	check_key(k, NO_FAST);
}

static void
test_bad(void **state)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	unsigned char *der, *more;
	int len;

	(void)state;
	der = make_csr(k, 0, 0, &len);
	/* a signature that does not verify (its last byte changed) */
	der[len - 1] ^= 1;
	assert_int_equal(both(der, (size_t)len, NO_FAST, NULL),
	    CSR_BAD_SIGNATURE);
	der[len - 1] ^= 1;
	/* a byte after it */
	assert_non_null(more = malloc((size_t)len + 1));
	memcpy(more, der, (size_t)len);
	more[len] = 0;
	assert_int_equal(both(more, (size_t)len + 1, NO_FAST, NULL),
	    CSR_NOT_CSR);
	/* truncated, and empty */
	assert_int_equal(both(der, (size_t)len - 1, NO_FAST, NULL),
	    CSR_NOT_CSR);
	assert_int_equal(both(der, 0, NO_FAST, NULL), CSR_NOT_CSR);
	free(more);
	OPENSSL_free(der);
	/* version 2 (1): the fast path leaves it to d2i_X509_REQ */
	der = make_csr(k, 1, 0, &len);
	(void)both(der, (size_t)len, NO_FAST, NULL);
	OPENSSL_free(der);
	/* a malformed extension request: both say so (NULL) */
	der = make_csr(k, 0, 2, &len);
	assert_int_equal(both(der, (size_t)len, FAST, k), CSR_OK);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

/* DER: tag, a length in long form on n bytes (non-minimal when the
 * content is short), content */
static size_t
tlv(unsigned char *out, int tag, const unsigned char *c, size_t n, int lbytes)
{
	size_t o = 0;
	int i;

	out[o++] = (unsigned char)tag;
	out[o++] = (unsigned char)(0x80 | lbytes);
	for (i = lbytes - 1; i >= 0; i--)
		out[o++] = (unsigned char)(n >> (8 * i));
	memcpy(out + o, c, n);
	return o + n;
}

/* a header of der (tag, length) and where its content starts */
static size_t
content_at(const unsigned char *der, size_t *n)
{
	if (der[1] < 0x80) {
		*n = der[1];
		return 2;
	}
	*n = der[1] == 0x81 ? der[2] : (size_t)der[2] << 8 | der[3];
	return 2 + (der[1] & 0x7f);
}

/* Non-minimal lengths. The outer SEQUENCE's header is not signed; the
 * CertificationRequestInfo's is: signed as sent, both accept it (the
 * signature is over the bytes received); signed over its minimal form and
 * sent non-minimal, both refuse it. */
static void
test_nonminimal(void **state)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	unsigned char *der, info[1024], tbs[1024], out[2048], body[2048];
	unsigned char sig[256], bits[260];
	const unsigned char *p;
	size_t n, off, infolen, tbslen, siglen, blen, olen, rest;
	EVP_MD_CTX *md;
	int len, signed_as_sent;

	(void)state;
	assert_non_null(k);
	der = make_csr(k, 0, 0, &len);
	/* the outer header with a 3-byte length */
	off = content_at(der, &n);
	olen = tlv(out, 0x30, der + off, n, 3);
	assert_int_equal(both(out, olen, FAST, k), CSR_OK);
	/* the info re-sent with a 3-byte length */
	p = der + off;
	infolen = content_at(p, &n) + n;
	tbslen = tlv(tbs, 0x30, p + content_at(p, &n), n, 3);
	memcpy(info, p, infolen);
	rest = (size_t)len - off - infolen;	/* algorithm and signature */
	for (signed_as_sent = 0; signed_as_sent <= 1; signed_as_sent++) {
		assert_non_null(md = EVP_MD_CTX_new());
		siglen = sizeof(sig);
		assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(),
		    NULL, k), 1);
		assert_int_equal(EVP_DigestSign(md, sig, &siglen,
		    signed_as_sent ? tbs : info, signed_as_sent ? tbslen :
		    infolen), 1);
		EVP_MD_CTX_free(md);
		/* algorithm as it was, then a new BIT STRING */
		blen = 0;
		memcpy(body, tbs, tbslen);
		blen = tbslen;
		p = der + off + infolen;	/* AlgorithmIdentifier */
		n = content_at(p, &n) + n;
		memcpy(body + blen, p, n);
		blen += n;
		assert_true(n < rest);
		bits[0] = 0;
		memcpy(bits + 1, sig, siglen);
		blen += tlv(body + blen, 0x03, bits, siglen + 1, 1);
		olen = tlv(out, 0x30, body, blen, 2);
		assert_int_equal(both(out, olen, signed_as_sent ? FAST :
		    NO_FAST, signed_as_sent ? k : NULL), signed_as_sent ?
		    CSR_OK : CSR_BAD_SIGNATURE);
	}
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

/* A signed P-256 request whose signature algorithm and value are then
 * changed as given (the signed part kept as it was encoded) */
static unsigned char *
reshape(EVP_PKEY *k, const EVP_MD *md, int alg_nid, int alg_ptype,
    int pad_r, int *len)
{
	X509_REQ *r = X509_REQ_new();
	const ASN1_BIT_STRING *csig;
	const X509_ALGOR *calg;
	ASN1_BIT_STRING *sig;
	unsigned char buf[160], *der = NULL;
	const unsigned char *s;
	int n;

	assert_non_null(r);
	assert_int_equal(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(
	    r), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0), 1);
	assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
	assert_true(X509_REQ_sign(r, k, md) > 0);
	X509_REQ_get0_signature(r, &csig, &calg);
	sig = (ASN1_BIT_STRING *)csig;
	if (alg_nid != NID_undef)
		assert_int_equal(X509_ALGOR_set0((X509_ALGOR *)calg,
		    OBJ_nid2obj(alg_nid), alg_ptype, NULL), 1);
	if (pad_r) {	/* r with a needless leading zero: not DER */
		s = ASN1_STRING_get0_data(sig);
		n = ASN1_STRING_length(sig);
		assert_true(n + 1 <= (int)sizeof(buf) && s[0] == 0x30 &&
		    s[1] < 0x7f && s[2] == 0x02);
		buf[0] = 0x30;
		buf[1] = (unsigned char)(s[1] + 1);
		buf[2] = 0x02;
		buf[3] = (unsigned char)(s[3] + 1);
		buf[4] = 0x00;
		memcpy(buf + 5, s + 4, (size_t)n - 4);
		assert_int_equal(ASN1_BIT_STRING_set(sig, buf, n + 1), 1);
		sig->flags &= ~0x7L;
		sig->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	}
	*len = i2d_X509_REQ(r, &der);
	assert_true(*len > 0);
	X509_REQ_free(r);
	return der;
}

/* The fast path's own ECDSA check (pubkey_ecdsa_verify) against
 * d2i_X509_REQ's: other digests, NULL parameters, a signature not in DER,
 * an RSA algorithm on an EC key */
static void
test_sig_shapes(void **state)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	unsigned char *der;
	int len;

	(void)state;
	assert_non_null(k);
	der = reshape(k, EVP_sha384(), NID_undef, 0, 0, &len);
	assert_int_equal(both(der, (size_t)len, FAST, k), CSR_OK);
	OPENSSL_free(der);
	der = reshape(k, EVP_sha512(), NID_undef, 0, 0, &len);
	assert_int_equal(both(der, (size_t)len, FAST, k), CSR_OK);
	OPENSSL_free(der);
	der = reshape(k, EVP_sha256(), NID_ecdsa_with_SHA256, V_ASN1_NULL, 0,
	    &len);
	(void)both(der, (size_t)len, FAST, k);
	OPENSSL_free(der);
	der = reshape(k, EVP_sha256(), NID_undef, 0, 1, &len);
	assert_int_equal(both(der, (size_t)len, NO_FAST, NULL),
	    CSR_BAD_SIGNATURE);
	OPENSSL_free(der);
	der = reshape(k, EVP_sha256(), NID_sha256WithRSAEncryption,
	    V_ASN1_NULL, 0, &len);
	assert_int_equal(both(der, (size_t)len, NO_FAST, NULL),
	    CSR_BAD_SIGNATURE);
	OPENSSL_free(der);
	/* SHA-1: not the fast check's; ASN1_item_verify's, as before */
	der = reshape(k, EVP_sha1(), NID_undef, 0, 0, &len);
	assert_int_equal(both(der, (size_t)len, FAST, k), CSR_OK);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_nonminimal),
		cmocka_unit_test(test_sig_shapes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
