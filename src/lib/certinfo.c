/*
 * Facts about one certificate as a JSON object: the single source for
 * `mtls cert inspect` (text and --json) and, later, `mtls doctor`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/x509v3.h>

#include "internal.h"

void
human_duration(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		s = -s;
	if (s >= 86400)
		snprintf(buf, len, "%lldd %lldh", (long long)(s / 86400),
		    (long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, len, "%lldh %lldm", (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%lldm %llds", (long long)(s / 60),
		    (long long)(s % 60));
	else
		snprintf(buf, len, "%llds", (long long)s);
}

static void
iso8601(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "?");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *
ku_list(X509 *x)
{
	static const struct { uint32_t bit; const char *name; } kus[] = {
		{ KU_DIGITAL_SIGNATURE, "digitalSignature" },
		{ KU_NON_REPUDIATION, "nonRepudiation" },
		{ KU_KEY_ENCIPHERMENT, "keyEncipherment" },
		{ KU_DATA_ENCIPHERMENT, "dataEncipherment" },
		{ KU_KEY_AGREEMENT, "keyAgreement" },
		{ KU_KEY_CERT_SIGN, "keyCertSign" },
		{ KU_CRL_SIGN, "cRLSign" },
		{ KU_ENCIPHER_ONLY, "encipherOnly" },
		{ KU_DECIPHER_ONLY, "decipherOnly" },
	};
	json_t *a = json_array();
	uint32_t ku = X509_get_key_usage(x);
	size_t i;

	if (ku == UINT32_MAX)
		return a;	/* no extension: any usage */
	for (i = 0; i < sizeof(kus) / sizeof(kus[0]); i++)
		if (ku & kus[i].bit)
			json_array_append_new(a, json_string(kus[i].name));
	return a;
}

static json_t *
eku_list(X509 *x)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL,
	    NULL);
	json_t *a = json_array();
	char buf[80];
	int i;

	for (i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku); i++) {
		ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);
		int nid = OBJ_obj2nid(o);

		if (nid != NID_undef)
			json_array_append_new(a, json_string(OBJ_nid2sn(nid)));
		else {
			OBJ_obj2txt(buf, sizeof(buf), o, 1);
			json_array_append_new(a, json_string(buf));
		}
	}
	EXTENDED_KEY_USAGE_free(eku);
	return a;
}

static json_t *
subtrees(STACK_OF(GENERAL_SUBTREE) *sk)
{
	json_t *a = json_array();
	int i;

	for (i = 0; sk != NULL && i < sk_GENERAL_SUBTREE_num(sk); i++) {
		GENERAL_NAME *g = sk_GENERAL_SUBTREE_value(sk, i)->base;
		char buf[300];

		switch (g->type) {
		case GEN_URI:
			snprintf(buf, sizeof(buf), "uri:%.*s",
			    ASN1_STRING_length(g->d.ia5),
			    (const char *)ASN1_STRING_get0_data(g->d.ia5));
			break;
		case GEN_DNS:
			snprintf(buf, sizeof(buf), "dns:%.*s",
			    ASN1_STRING_length(g->d.ia5),
			    (const char *)ASN1_STRING_get0_data(g->d.ia5));
			break;
		case GEN_EMAIL:
			snprintf(buf, sizeof(buf), "email:%.*s",
			    ASN1_STRING_length(g->d.ia5),
			    (const char *)ASN1_STRING_get0_data(g->d.ia5));
			break;
		case GEN_IPADD:
			snprintf(buf, sizeof(buf), "ip:(%d bytes)",
			    ASN1_STRING_length(g->d.ip));
			break;
		case GEN_DIRNAME:
			name_oneline(g->d.dirn, buf + 4, sizeof(buf) - 4);
			memcpy(buf, "dir:", 4);
			break;
		default:
			snprintf(buf, sizeof(buf), "other");
		}
		json_array_append_new(a, json_string(buf));
	}
	return a;
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *
certinfo_json(X509 *x, int64_t now)
{
	json_t *o = json_object(), *sans = json_array();
	struct mtls_error err;
	struct ids ids;
	NAME_CONSTRAINTS *nc;
	BASIC_CONSTRAINTS *bc;
	char buf[512], kd[64], rel[64];
	const char *spiffe = NULL;
	int64_t nb, na;
	int bits, mdnid = NID_undef, pknid, secbits;
	uint32_t flags;
	size_t i, k;
	char **scope;
	const char *oids[3];
	size_t nscope, noids;

	if (o == NULL || sans == NULL) {
		json_decref(o);
		json_decref(sans);
		return NULL;
	}
	name_oneline(X509_get_subject_name(x), buf, sizeof(buf));
	json_object_set_new(o, "subject", json_string(buf));
	name_oneline(X509_get_issuer_name(x), buf, sizeof(buf));
	json_object_set_new(o, "issuer", json_string(buf));
	serial_hex(X509_get0_serialNumber(x), buf, sizeof(buf));
	json_object_set_new(o, "serial", json_string(buf));

	/* SANs with the SPIFFE ID first, then the rest in order. */
	if (ids_from_cert(x, &ids, &err) == 0) {
		for (k = 0; k < 2; k++)
			for (i = 0; i < ids.n; i++) {
				int is_spiffe = strncmp(ids.v[i], "spiffe://", 9) == 0;

				if (strncmp(ids.v[i], "cn:", 3) == 0 ||
				    (k == 0) != is_spiffe)
					continue;
				if (is_spiffe && spiffe == NULL)
					spiffe = ids.v[i];
				json_array_append_new(sans, json_string(
				    strncmp(ids.v[i], "dns:", 4) == 0 ||
				    strncmp(ids.v[i], "ip:", 3) == 0 || is_spiffe ?
				    ids.v[i] : ids.v[i]));
			}
	}
	json_object_set_new(o, "spiffe_id", str_or_null(spiffe));
	json_object_set_new(o, "sans", sans);
	ids_free(&ids);

	nb = asn1_time_unix(X509_get0_notBefore(x));
	na = asn1_time_unix(X509_get0_notAfter(x));
	iso8601(nb, buf, sizeof(buf));
	json_object_set_new(o, "not_before", json_string(buf));
	iso8601(na, buf, sizeof(buf));
	json_object_set_new(o, "not_after", json_string(buf));
	json_object_set_new(o, "not_before_unix", json_integer(nb));
	json_object_set_new(o, "not_after_unix", json_integer(na));
	if (now < nb) {
		human_duration(nb - now, rel, sizeof(rel));
		snprintf(buf, sizeof(buf), "NOT YET VALID: starts in %s", rel);
		json_object_set_new(o, "validity", json_string("not_yet_valid"));
	} else if (now > na) {
		human_duration(now - na, rel, sizeof(rel));
		snprintf(buf, sizeof(buf), "EXPIRED %s ago", rel);
		json_object_set_new(o, "validity", json_string("expired"));
	} else {
		human_duration(na - now, rel, sizeof(rel));
		snprintf(buf, sizeof(buf), "expires in %s", rel);
		json_object_set_new(o, "validity", json_string("valid"));
	}
	json_object_set_new(o, "validity_text", json_string(buf));
	json_object_set_new(o, "lifetime_seconds", json_integer(na - nb));

	if (X509_get0_pubkey(x) != NULL) {
		key_describe(X509_get0_pubkey(x), kd, sizeof(kd), &bits);
		json_object_set_new(o, "key", json_string(kd));
		json_object_set_new(o, "key_bits", json_integer(bits));
	} else {
		json_object_set_new(o, "key", json_string("unsupported"));
	}
	OBJ_obj2txt(buf, sizeof(buf), X509_get0_tbs_sigalg(x)->algorithm, 0);
	json_object_set_new(o, "signature_algorithm", json_string(buf));
	if (X509_get_signature_info(x, &mdnid, &pknid, &secbits, &flags) == 1)
		json_object_set_new(o, "signature_security_bits",
		    json_integer(secbits));

	json_object_set_new(o, "key_usage", ku_list(x));
	json_object_set_new(o, "ext_key_usage", eku_list(x));
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	json_object_set_new(o, "ca", json_boolean(bc != NULL && bc->ca));
	if (bc != NULL && bc->ca && bc->pathlen != NULL)
		json_object_set_new(o, "pathlen",
		    json_integer(ASN1_INTEGER_get(bc->pathlen)));
	BASIC_CONSTRAINTS_free(bc);
	nc = X509_get_ext_d2i(x, NID_name_constraints, NULL, NULL);
	if (nc != NULL) {
		json_t *n = json_object();

		json_object_set_new(n, "permitted",
		    subtrees(nc->permittedSubtrees));
		json_object_set_new(n, "excluded", subtrees(nc->excludedSubtrees));
		json_object_set_new(o, "name_constraints", n);
		NAME_CONSTRAINTS_free(nc);
	}
	noids = profile_scope_oids(getenv("MTLS_SCOPE_OID"), oids);
	for (k = 0; k < noids; k++) {
		json_t *a;

		if (profile_spiffe_scope(x, oids[k], &scope, &nscope) != 0 ||
		    nscope == 0)
			continue;
		a = json_array();
		for (i = 0; i < nscope; i++)
			json_array_append_new(a, json_string(scope[i]));
		json_object_set_new(o, "spiffe_scope", a);
		json_object_set_new(o, "spiffe_scope_oid", json_string(oids[k]));
		strv_free(scope, nscope);
		break;
	}
	/* issue 13: Go and GnuTLS cannot parse a certificate with it */
	if (profile_scope_legacy(x))
		json_object_set_new(o, "warning", json_string("the SPIFFE "
		    "scope is under the legacy OID 2.25.19944...; Go's "
		    "crypto/x509 and GnuTLS refuse any chain through this "
		    "certificate: reissue the intermediate with this mtls "
		    "(mtls ca intermediate, same --permit flags), then its "
		    "leaves"));
	cert_fingerprint(x, buf, sizeof(buf));
	json_object_set_new(o, "sha256_fingerprint", json_string(buf));
	json_object_set_new(o, "self_signed",
	    json_boolean(cert_is_self_signed(x)));
	return o;
}
