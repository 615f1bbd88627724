/*
 * Fuzz targets: certs_parse (PEM/DER certificates, as read from files and
 * peers), then for each certificate ids_from_cert, certinfo_json (inspect)
 * and profile_spiffe_scope (our extension's parser). The time is fixed.
 * certinfo_json lists every SAN, dumps as ASCII JSON that parses back, and
 * its text rendering (esc_text_tree) has no control or 8-bit byte.
 * No RNG.
 */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* cert inspect's view (issue 18): one "sans" entry per SAN whatever its
 * bytes; the JSON dump is ASCII and parses back; the text rendering has no
 * control or 8-bit byte */
static void
check_names(X509 *x, json_t *o)
{
	GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
	    NULL);
	json_t *t, *back;
	char *d;
	size_t i;

	if (g != NULL && json_array_size(json_object_get(o, "sans")) !=
	    (size_t)sk_GENERAL_NAME_num(g))
		abort();
	GENERAL_NAMES_free(g);
	if ((d = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII)) == NULL)
		return;
	for (i = 0; d[i]; i++)
		if ((unsigned char)d[i] < 0x20 || (unsigned char)d[i] >= 0x7f)
			abort();
	if ((back = json_loads(d, 0, NULL)) == NULL || !json_equal(back, o))
		abort();
	json_decref(back);
	free(d);
	if ((t = esc_text_tree(o)) == NULL)
		return;
	if ((d = json_dumps(t, JSON_COMPACT)) != NULL) {
		/* the dump escapes '"' and '\' only: any other byte below
		 * 0x20 or above 0x7e came from a string */
		for (i = 0; d[i]; i++)
			if ((unsigned char)d[i] < 0x20 ||
			    (unsigned char)d[i] >= 0x7f)
				abort();
		free(d);
	}
	json_decref(t);
}

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
		if ((o = certinfo_json(x, 1800000000)) != NULL) {
			check_names(x, o);
			json_decref(o);
		}
		if (profile_spiffe_scope(x, profile_scope_oid_default(),
		    &scope, &n) == 0)
			strv_free(scope, n);
		if (profile_dns_scope(x, &scope, &n) == 0)
			strv_free(scope, n);
	}
	sk_X509_pop_free(sk, X509_free);
	return 0;
}
