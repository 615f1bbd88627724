/*
 * Shared by fuzz_csr_fast.c and tests/unit/test_csr.c: two extension
 * requests are the same when both are malformed (NULL) or their DER is.
 */
#ifndef CSR_SAME_H
#define CSR_SAME_H

#include <string.h>

#include <openssl/x509.h>

static int
csr_same_exts(STACK_OF(X509_EXTENSION) *a, STACK_OF(X509_EXTENSION) *b)
{
	unsigned char *da = NULL, *db = NULL;
	int la, lb, same;

	if (a == NULL || b == NULL)
		return a == b;
	la = i2d_X509_EXTENSIONS((X509_EXTENSIONS *)a, &da);
	lb = i2d_X509_EXTENSIONS((X509_EXTENSIONS *)b, &db);
	same = la == lb && (la <= 0 || memcmp(da, db, (size_t)la) == 0);
	OPENSSL_free(da);
	OPENSSL_free(db);
	return same;
}

#endif
