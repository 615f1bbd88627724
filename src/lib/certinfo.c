/*
 * Facts about one certificate as a JSON object: the single source for
 * `mtls cert inspect` (text and --json) and `mtls doctor`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>

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
			json_array_append_new(a, esc_jstr(kus[i].name));
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
			json_array_append_new(a, esc_jstr(OBJ_nid2sn(nid)));
		else {
			OBJ_obj2txt(buf, sizeof(buf), o, 1);
			json_array_append_new(a, esc_jstr(buf));
		}
	}
	EXTENDED_KEY_USAGE_free(eku);
	return a;
}

/* <pfx> then the <l> bytes of <d>, as a JSON string (escape.c's JSON
 * rule: never NULL for the bytes, so no name is ever left out). */
static json_t *
pfx_json(const char *pfx, const void *d, int l)
{
	size_t pl = strlen(pfx), n = l > 0 ? (size_t)l : 0;
	char *b = malloc(pl + n + 1);
	json_t *j;

	if (b == NULL)
		return NULL;
	memcpy(b, pfx, pl);
	if (n)
		memcpy(b + pl, d, n);
	j = esc_json(b, pl + n);
	free(b);
	return j;
}

/* One GeneralName as it is shown: a SAN (<san>: a URI as it is, an IP
 * address as text) or a name constraint ("uri:", an address and mask as
 * a length). Every type gives one entry, so an entry count is a name
 * count. */
static json_t *
gn_json(const GENERAL_NAME *g, int san)
{
	char buf[300];
	const unsigned char *d;
	int l;

	switch (g->type) {
	case GEN_URI:
		return pfx_json(san ? "" : "uri:", ASN1_STRING_get0_data(g->d.ia5),
		    ASN1_STRING_length(g->d.ia5));
	case GEN_DNS:
		return pfx_json("dns:", ASN1_STRING_get0_data(g->d.ia5),
		    ASN1_STRING_length(g->d.ia5));
	case GEN_EMAIL:
		return pfx_json("email:", ASN1_STRING_get0_data(g->d.ia5),
		    ASN1_STRING_length(g->d.ia5));
	case GEN_IPADD:
		d = ASN1_STRING_get0_data(g->d.ip);
		l = ASN1_STRING_length(g->d.ip);
		memcpy(buf, "ip:", 4);
		if (!san || !((l == 4 && inet_ntop(AF_INET, d, buf + 3,
		    sizeof(buf) - 3)) || (l == 16 && inet_ntop(AF_INET6, d,
		    buf + 3, sizeof(buf) - 3))))
			snprintf(buf, sizeof(buf), "ip:(%d bytes)", l);
		return esc_jstr(buf);
	case GEN_DIRNAME:
		memcpy(buf, "dir:", 4);
		name_oneline(g->d.dirn, buf + 4, sizeof(buf) - 4);
		return esc_jstr(buf);
	case GEN_RID:
		memcpy(buf, "rid:", 4);
		OBJ_obj2txt(buf + 4, sizeof(buf) - 4, g->d.rid, 1);
		return esc_jstr(buf);
	case GEN_OTHERNAME:
		memcpy(buf, "othername:", 10);
		OBJ_obj2txt(buf + 10, sizeof(buf) - 10, g->d.otherName->type_id,
		    1);
		return esc_jstr(buf);
	default:
		return esc_jstr(g->type == GEN_X400 ? "x400" :
		    g->type == GEN_EDIPARTY ? "edipartyname" : "other");
	}
}

static json_t *
subtrees(STACK_OF(GENERAL_SUBTREE) *sk)
{
	json_t *a = json_array();
	int i;

	for (i = 0; sk != NULL && i < sk_GENERAL_SUBTREE_num(sk); i++)
		json_array_append_new(a, gn_json(sk_GENERAL_SUBTREE_value(sk,
		    i)->base, 0));
	return a;
}

/* Every SAN, whatever its bytes (a name that is not an identity is still
 * shown, escaped): SPIFFE URIs first, then the rest in order. */
static json_t *
san_list(X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
	    NULL);
	json_t *a = json_array();
	int i, k;

	for (k = 0; k < 2; k++)
		for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
			const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
			int sp = g->type == GEN_URI &&
			    ASN1_STRING_length(g->d.ia5) >= 9 &&
			    memcmp(ASN1_STRING_get0_data(g->d.ia5),
			    "spiffe://", 9) == 0;

			if ((k == 0) == sp)
				json_array_append_new(a, gn_json(g, 1));
		}
	GENERAL_NAMES_free(gens);
	return a;
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
	json_object_set_new(o, "subject", esc_jstr(buf));
	name_oneline(X509_get_issuer_name(x), buf, sizeof(buf));
	json_object_set_new(o, "issuer", esc_jstr(buf));
	serial_hex(X509_get0_serialNumber(x), buf, sizeof(buf));
	json_object_set_new(o, "serial", esc_jstr(buf));

	/* every SAN; the SPIFFE ID and why a name is no identity are the
	 * verifier's view (identity.c) */
	json_decref(sans);
	sans = san_list(x);
	if (ids_from_cert(x, &ids, &err) == 0) {
		for (i = 0; i < ids.n && spiffe == NULL; i++)
			if (strncmp(ids.v[i], "spiffe://", 9) == 0)
				spiffe = ids.v[i];
		json_object_set_new(o, "spiffe_id", esc_jstr(spiffe));
		if (ids.bad != NULL)
			json_object_set_new(o, "name_problem", esc_jstr(
			    ids.bad));
		ids_free(&ids);
	} else
		json_object_set_new(o, "spiffe_id", json_null());
	json_object_set_new(o, "sans", sans ? sans : json_array());

	nb = asn1_time_unix(X509_get0_notBefore(x));
	na = asn1_time_unix(X509_get0_notAfter(x));
	iso8601(nb, buf, sizeof(buf));
	json_object_set_new(o, "not_before", esc_jstr(buf));
	iso8601(na, buf, sizeof(buf));
	json_object_set_new(o, "not_after", esc_jstr(buf));
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
	json_object_set_new(o, "validity_text", esc_jstr(buf));
	json_object_set_new(o, "lifetime_seconds", json_integer(na - nb));

	if (X509_get0_pubkey(x) != NULL) {
		key_describe(X509_get0_pubkey(x), kd, sizeof(kd), &bits);
		json_object_set_new(o, "key", esc_jstr(kd));
		json_object_set_new(o, "key_bits", json_integer(bits));
	} else {
		json_object_set_new(o, "key", json_string("unsupported"));
	}
	OBJ_obj2txt(buf, sizeof(buf), X509_get0_tbs_sigalg(x)->algorithm, 0);
	json_object_set_new(o, "signature_algorithm", esc_jstr(buf));
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
			json_array_append_new(a, esc_jstr(scope[i]));
		json_object_set_new(o, "spiffe_scope", a);
		json_object_set_new(o, "spiffe_scope_oid", esc_jstr(oids[k]));
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
	json_object_set_new(o, "sha256_fingerprint", esc_jstr(buf));
	json_object_set_new(o, "self_signed",
	    json_boolean(cert_is_self_signed(x)));
	return o;
}
