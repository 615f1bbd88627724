/*
 * Fuzz target: the CSR's two parses (csr.c, issue 15) on arbitrary bytes.
 * Invariant (docs/security/csrfast.md): whenever the template path accepts
 * a CSR, d2i_X509_REQ on the same bytes accepts it too (one structure, no
 * byte after it, a key, a signature that verifies with it), with the same
 * key (EVP_PKEY_eq) and the same extension request (both malformed, or the
 * same DER). And csr_parse with the fast path gives d2i_X509_REQ's verdict.
 * No clock, no RNG.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "internal.h"
#include "csr_same.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	EVP_PKEY *fk = NULL, *sk = NULL, *ck = NULL;
	STACK_OF(X509_EXTENSION) *fe = NULL, *se = NULL, *ce = NULL;
	enum csr_verdict sv, cv;
	int fast;

	fast = csr_parse_fast(data, len, &fk, &fe);
	sv = csr_parse(data, len, 0, &sk, &se);
	cv = csr_parse(data, len, 1, &ck, &ce);
	if (fast && (sv != CSR_OK || EVP_PKEY_eq(fk, sk) != 1 ||
	    !csr_same_exts(fe, se)))
		abort();
	if (cv != sv || (sv == CSR_OK && (EVP_PKEY_eq(ck, sk) != 1 ||
	    !csr_same_exts(ce, se))))
		abort();
	EVP_PKEY_free(fk);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(ck);
	sk_X509_EXTENSION_pop_free(fe, X509_EXTENSION_free);
	sk_X509_EXTENSION_pop_free(se, X509_EXTENSION_free);
	sk_X509_EXTENSION_pop_free(ce, X509_EXTENSION_free);
	return 0;
}
