/*
 * Fuzz targets: certs_parse (PEM/DER certificates, as read from files and
 * peers), then for each certificate ids_from_cert, certinfo_json (inspect)
 * and profile_spiffe_scope (our extension's parser). The time is fixed.
 * No RNG.
 */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	STACK_OF(X509) *sk = NULL;
	struct mtls_error err;
	struct ids ids;
	char **scope;
	size_t n;
	int i;

	error_clear(&err);
	if (certs_parse(data, len, "fuzz", &sk, &err) != 0) {
		if (err.msg[0] == '\0')
			abort();
		return 0;
	}
	for (i = 0; i < sk_X509_num(sk); i++) {
		X509 *x = sk_X509_value(sk, i);
		json_t *o;

		if (ids_from_cert(x, &ids, &err) == 0)
			ids_free(&ids);
		if ((o = certinfo_json(x, 1800000000)) != NULL)
			json_decref(o);
		if (profile_spiffe_scope(x, profile_scope_oid_default(),
		    &scope, &n) == 0)
			strv_free(scope, n);
		if (profile_dns_scope(x, &scope, &n) == 0)
			strv_free(scope, n);
	}
	sk_X509_pop_free(sk, X509_free);
	return 0;
}
