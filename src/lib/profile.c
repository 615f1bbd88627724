/*
 * Certificate profiles (DESIGN.md "Certificate profiles"): root,
 * intermediate (pathlen 0, optional name constraints), leaf (workload),
 * cross (a root under another root: CA, no path length, no constraints).
 * Extensions are built as structures, never from config strings, so an
 * identity can never smuggle another extension or SAN in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "internal.h"

/*
 * Our SPIFFE path scope on an intermediate: a non-critical extension whose
 * value is SEQUENCE OF IA5String (permitted ID prefixes, each ending in
 * "/"). X.509 nameConstraints can only scope a URI's host, i.e. the trust
 * domain; this records the path part for our own verifier (DESIGN.md).
 * Its presence also says "this CA is scoped": a name type its
 * nameConstraints do not permit is not an identity under it.
 *
 * The OID: every arc must fit in 31 bits, or Go's crypto/x509 ("malformed
 * extension OID field") and GnuTLS 3.7 ("Error in DER parsing") refuse the
 * whole certificate, critical or not. A UUID arc (2.25.N, 128-bit N) cannot.
 * We own no IANA Private Enterprise Number, so the default sits under PEN
 * 32473, which RFC 5612 reserves for documentation: no organization is
 * ever assigned it, so no real extension collides. A deployment with its
 * own PEN sets scope_oid in ca.conf and MTLS_SCOPE_OID for verifiers.
 * OID_SCOPE_LEGACY is what we wrote before; verifiers still read it.
 */
#define OID_SCOPE_DEFAULT	"1.3.6.1.4.1.32473.6857.1"
#define OID_SCOPE_LEGACY	"2.25.199447486927615877784465314696394383395"
#define NC_NONE			"invalid"	/* RFC 6761 6.4 */

int
profile_scope_oid_check(const char *oid)
{
	const char *p = oid;
	unsigned long arc;
	int arcs = 0, first = 0;

	if (oid == NULL || strlen(oid) > 64)
		return -1;
	for (;;) {
		if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' &&
		    p[1] <= '9'))
			return -1;	/* empty arc or a leading zero */
		for (arc = 0; *p >= '0' && *p <= '9'; p++) {
			arc = arc * 10 + (unsigned long)(*p - '0');
			if (arc > 0x7fffffffUL)
				return -1;
		}
		if (arcs == 0)
			first = (int)arc;
		if ((arcs == 0 && arc > 2) || (arcs == 1 && first < 2 &&
		    arc > 39))
			return -1;
		arcs++;
		if (*p == '\0')
			break;
		if (*p++ != '.')
			return -1;
	}
	return arcs >= 3 ? 0 : -1;
}

const char *
profile_scope_oid_default(void)
{
	return OID_SCOPE_DEFAULT;
}

int
profile_scope_oid_legacy(const char *oid)
{
	return oid != NULL && strcmp(oid, OID_SCOPE_LEGACY) == 0;
}

int
profile_scope_legacy(X509 *x)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(OID_SCOPE_LEGACY, 1);
	int r = obj != NULL && X509_get_ext_by_OBJ(x, obj, -1) >= 0;

	ASN1_OBJECT_free(obj);
	return r;
}

size_t
profile_scope_oids(const char *extra, const char *oids[3])
{
	size_t n = 0;

	if (extra != NULL && *extra != '\0' &&
	    strcmp(extra, OID_SCOPE_DEFAULT) != 0 &&
	    strcmp(extra, OID_SCOPE_LEGACY) != 0)
		oids[n++] = extra;
	oids[n++] = OID_SCOPE_DEFAULT;
	oids[n++] = OID_SCOPE_LEGACY;
	return n;
}

static int
add_ext_nid(X509 *x, int nid, int crit, void *value)
{
	X509_EXTENSION *ext;
	int ok;

	ext = X509V3_EXT_i2d(nid, crit, value);
	if (ext == NULL)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static int
add_ext_conf(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/*
 * The fixed extensions made from their structures (issue 15): through
 * X509V3_EXT_nconf_nid's text ("critical,CA:FALSE", "keyid:always") they
 * were a tenth of a renewal's CPU, parsing the same strings each time.
 * The DER is the same as the text's (test_profile's t_ext_same).
 */
static int
ext_bc(X509 *x, int ca, int pathlen)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	int rv = -1;

	if (bc == NULL)
		return -1;
	bc->ca = ca ? 0xff : 0;
	if (pathlen >= 0 && ((bc->pathlen = ASN1_INTEGER_new()) == NULL ||
	    !ASN1_INTEGER_set(bc->pathlen, pathlen)))
		goto out;
	rv = add_ext_nid(x, NID_basic_constraints, 1, bc);
 out:
	BASIC_CONSTRAINTS_free(bc);
	return rv;
}

/* keyUsage, critical: the bits named (KU_* of x509v3.h are RFC 5280's
 * bit numbers from the top of each byte, as ASN1_BIT_STRING_set_bit's) */
static int
ext_ku(X509 *x, const int *bits, int n)
{
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	int i, rv = -1;

	if (ku == NULL)
		return -1;
	for (i = 0; i < n; i++)
		if (!ASN1_BIT_STRING_set_bit(ku, bits[i], 1))
			goto out;
	rv = add_ext_nid(x, NID_key_usage, 1, ku);
 out:
	ASN1_BIT_STRING_free(ku);
	return rv;
}

static int
ext_eku(X509 *x, int ca_server)
{
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	ASN1_OBJECT *o = NULL;
	int rv = -1;

	if (eku == NULL ||
	    !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) ||
	    !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)))
		goto out;
	if (ca_server && ((o = OBJ_txt2obj(MTLS_OID_CA_SERVER, 1)) == NULL ||
	    !sk_ASN1_OBJECT_push(eku, o)))
		goto out;
	rv = add_ext_nid(x, NID_ext_key_usage, 0, eku);
 out:
	sk_ASN1_OBJECT_free(eku);	/* nid2obj's are static */
	ASN1_OBJECT_free(o);
	return rv;
}

/* subjectKeyIdentifier "hash": SHA-1 of the key's BIT STRING (RFC 5280
 * 4.2.1.2 (1)) */
static int
ext_ski(X509 *x)
{
	ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len;
	int rv = -1;

	if (id != NULL && X509_pubkey_digest(x, EVP_sha1(), md, &len) &&
	    ASN1_OCTET_STRING_set(id, md, (int)len))
		rv = add_ext_nid(x, NID_subject_key_identifier, 0, id);
	ASN1_OCTET_STRING_free(id);
	return rv;
}

/* authorityKeyIdentifier "keyid:always": the issuer's own key identifier
 * (<issuer> NULL: <x> issues itself, as the text's context took it). Read
 * with X509_get_ext_d2i, not X509_get0_subject_key_id, which would cache
 * a certificate still being built. An issuer without exactly one goes
 * through the text, which decides. */
static int
ext_akid(X509 *x, X509 *issuer)
{
	ASN1_OCTET_STRING *ski;
	AUTHORITY_KEYID *akid;
	int rv = -1;

	ski = X509_get_ext_d2i(issuer != NULL ? issuer : x,
	    NID_subject_key_identifier, NULL, NULL);
	if (ski == NULL)
		return add_ext_conf(x, issuer, NID_authority_key_identifier,
		    "keyid:always");
	if ((akid = AUTHORITY_KEYID_new()) != NULL) {
		akid->keyid = ski;
		ski = NULL;
		rv = add_ext_nid(x, NID_authority_key_identifier, 0, akid);
	}
	ASN1_OCTET_STRING_free(ski);
	AUTHORITY_KEYID_free(akid);
	return rv;
}

static GENERAL_NAME *
gen_ia5(int type, const char *s, size_t len)
{
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_IA5STRING *v = ASN1_IA5STRING_new();

	if (g == NULL || v == NULL || !ASN1_STRING_set(v, s, (int)len)) {
		GENERAL_NAME_free(g);
		ASN1_IA5STRING_free(v);
		return NULL;
	}
	GENERAL_NAME_set0_value(g, type, v);
	return g;
}

static GENERAL_NAME *
gen_ip(const char *text)
{
	unsigned char a[16];
	int len = strchr(text, ':') ? 16 : 4;
	GENERAL_NAME *g;
	ASN1_OCTET_STRING *v;

	if (inet_pton(len == 16 ? AF_INET6 : AF_INET, text, a) != 1)
		return NULL;
	g = GENERAL_NAME_new();
	v = ASN1_OCTET_STRING_new();
	if (g == NULL || v == NULL || !ASN1_OCTET_STRING_set(v, a, len)) {
		GENERAL_NAME_free(g);
		ASN1_OCTET_STRING_free(v);
		return NULL;
	}
	GENERAL_NAME_set0_value(g, GEN_IPADD, v);
	return g;
}

static int
add_san(X509 *x, const struct ids *ids, struct mtls_error *err)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	size_t i;
	int rv = -1;

	if (gens == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	for (i = 0; i < ids->n; i++) {
		const char *id = ids->v[i];
		GENERAL_NAME *g = NULL;

		if (strncmp(id, "spiffe://", 9) == 0)
			g = gen_ia5(GEN_URI, id, strlen(id));
		else if (strncmp(id, "dns:", 4) == 0)
			g = gen_ia5(GEN_DNS, id + 4, strlen(id + 4));
		else if (strncmp(id, "ip:", 3) == 0)
			g = gen_ip(id + 3);
		else
			continue;	/* cn: goes to the subject */
		if (g == NULL || !sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			error_set(err, MTLS_ERR_ARG, "identity '%s' cannot be "
			    "encoded", id);
			goto err;
		}
	}
	if (sk_GENERAL_NAME_num(gens) == 0) {
		error_set(err, MTLS_ERR_ARG,
		    "a leaf needs at least one --spiffe-id, --dns or --ip");
		goto err;
	}
	/* Critical when the subject is empty (RFC 5280 4.2.1.6). */
	if (add_ext_nid(x, NID_subject_alt_name,
	    X509_NAME_entry_count(X509_get_subject_name(x)) == 0, gens) != 0) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot add subjectAltName");
		goto err;
	}
	rv = 0;
 err:
	GENERAL_NAMES_free(gens);
	return rv;
}

static int
add_subtree(STACK_OF(GENERAL_SUBTREE) *sk, int type, const char *s)
{
	GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();

	if (st == NULL)
		return -1;
	GENERAL_NAME_free(st->base);
	st->base = gen_ia5(type, s, strlen(s));
	if (st->base == NULL || !sk_GENERAL_SUBTREE_push(sk, st)) {
		GENERAL_SUBTREE_free(st);
		return -1;
	}
	return 0;
}

/* An iPAddress subtree of every address: <len> zero bytes (address and
 * mask), 8 for IPv4, 32 for IPv6 (RFC 5280 4.2.1.10). */
static int
add_ip_all(STACK_OF(GENERAL_SUBTREE) *sk, int len)
{
	static const unsigned char zero[32];
	GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
	ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();

	if (st == NULL || v == NULL || !ASN1_OCTET_STRING_set(v, zero, len)) {
		GENERAL_SUBTREE_free(st);
		ASN1_OCTET_STRING_free(v);
		return -1;
	}
	GENERAL_NAME_set0_value(st->base, GEN_IPADD, v);
	if (!sk_GENERAL_SUBTREE_push(sk, st)) {
		GENERAL_SUBTREE_free(st);
		return -1;
	}
	return 0;
}

/*
 * RFC 5280 leaves a name type with no permitted subtree unconstrained, so
 * a CA scoped to spiffe://td/ns/dev/ alone could still certify any DNS
 * name, IP or hostname-like CN. Every type the CA does not permit is
 * therefore closed, in the form OpenSSL 3.0, Go 1.19 and GnuTLS 3.7 all
 * enforce (tests/integration/21-scope-peers.sh):
 *   dNSName: the permitted suffixes, else the one name "invalid" (RFC 6761
 *     6.4: never resolves). An empty dNSName would mean "all" to OpenSSL
 *     and Go, but GnuTLS matches it against nothing;
 *   rfc822Name: "invalid" likewise;
 *   iPAddress: excluded 0.0.0.0/0 and ::/0 (no CA of ours permits IPs).
 * GnuTLS ignores permitted URI subtrees altogether (only excluded ones
 * count), so the trust domain is enforced by OpenSSL, Go and us only.
 */
static int
add_name_constraints(X509 *x, const struct profile_req *r,
    struct mtls_error *err)
{
	NAME_CONSTRAINTS *nc;
	size_t i;
	int rv = -1;

	if (r->permit_td == NULL && r->n_permit_dns == 0)
		return 0;
	if ((nc = NAME_CONSTRAINTS_new()) == NULL ||
	    (nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null()) == NULL ||
	    (nc->excludedSubtrees = sk_GENERAL_SUBTREE_new_null()) == NULL) {
		NAME_CONSTRAINTS_free(nc);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	/* A URI constraint is matched against the URI's host: the trust
	 * domain (RFC 5280 4.2.1.10). */
	if (r->permit_td != NULL &&
	    add_subtree(nc->permittedSubtrees, GEN_URI, r->permit_td) != 0)
		goto nomem;
	for (i = 0; i < r->n_permit_dns; i++)
		if (add_subtree(nc->permittedSubtrees, GEN_DNS,
		    r->permit_dns[i]) != 0)
			goto nomem;
	if ((r->n_permit_dns == 0 &&
	    add_subtree(nc->permittedSubtrees, GEN_DNS, NC_NONE) != 0) ||
	    add_subtree(nc->permittedSubtrees, GEN_EMAIL, NC_NONE) != 0 ||
	    add_ip_all(nc->excludedSubtrees, 8) != 0 ||
	    add_ip_all(nc->excludedSubtrees, 32) != 0)
		goto nomem;
	if (add_ext_nid(x, NID_name_constraints, 1, nc) != 0) {
		error_set_ossl(err, MTLS_ERR_CRYPTO,
		    "cannot add nameConstraints");
		goto out;
	}
	rv = 0;
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	NAME_CONSTRAINTS_free(nc);
	return rv;
}

static int
add_spiffe_scope(X509 *x, const struct profile_req *r,
    struct mtls_error *err)
{
	STACK_OF(ASN1_TYPE) *seq = sk_ASN1_TYPE_new_null();
	ASN1_OCTET_STRING *os = NULL;
	ASN1_OBJECT *obj = NULL;
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	char td_prefix[300];
	const char *one[1];
	char * const *prefixes = r->permit_spiffe;
	const char *oid = r->scope_oid ? r->scope_oid : OID_SCOPE_DEFAULT;
	size_t n = r->n_permit_spiffe, i;
	int der_len, rv = -1;

	if (n == 0 && r->permit_td != NULL) {
		/* --permit-dns alone: any ID of the trust domain, and the
		 * extension still marks the CA as scoped */
		snprintf(td_prefix, sizeof(td_prefix), "spiffe://%s/",
		    r->permit_td);
		one[0] = td_prefix;
		prefixes = (char * const *)one;
		n = 1;
	}
	if (n == 0) {
		sk_ASN1_TYPE_free(seq);
		return 0;
	}
	if (profile_scope_oid_check(oid) != 0) {
		sk_ASN1_TYPE_free(seq);
		return error_set(err, MTLS_ERR_ARG, "scope_oid '%.64s' is not "
		    "a dotted OID whose arcs fit in 31 bits", oid);
	}
	if (seq == NULL)
		goto nomem;
	for (i = 0; i < n; i++) {
		ASN1_TYPE *t = ASN1_TYPE_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		if (t == NULL || s == NULL ||
		    !ASN1_STRING_set(s, prefixes[i], (int)strlen(prefixes[i]))) {
			ASN1_TYPE_free(t);
			ASN1_IA5STRING_free(s);
			goto nomem;
		}
		ASN1_TYPE_set(t, V_ASN1_IA5STRING, s);
		if (!sk_ASN1_TYPE_push(seq, t)) {
			ASN1_TYPE_free(t);
			goto nomem;
		}
	}
	if ((der_len = i2d_ASN1_SEQUENCE_ANY(seq, &der)) <= 0)
		goto nomem;
	if ((os = ASN1_OCTET_STRING_new()) == NULL ||
	    !ASN1_OCTET_STRING_set(os, der, der_len) ||
	    (obj = OBJ_txt2obj(oid, 1)) == NULL ||
	    (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os)) == NULL ||
	    !X509_add_ext(x, ext, -1))
		goto nomem;
	rv = 0;
	goto out;
 nomem:
	error_set_ossl(err, MTLS_ERR_NOMEM, "cannot encode the SPIFFE scope");
 out:
	X509_EXTENSION_free(ext);
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(os);
	OPENSSL_free(der);
	sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
	return rv;
}

int
profile_spiffe_scope(X509 *ca, const char *oid, char ***out, size_t *n)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	X509_EXTENSION *ext;
	STACK_OF(ASN1_TYPE) *seq = NULL;
	const unsigned char *p;
	ASN1_OCTET_STRING *os;
	char **v = NULL;
	int idx, i, cnt, rv = -1;

	*out = NULL;
	*n = 0;
	if (obj == NULL)
		return -1;
	idx = X509_get_ext_by_OBJ(ca, obj, -1);
	ASN1_OBJECT_free(obj);
	if (idx < 0)
		return 0;
	ext = X509_get_ext(ca, idx);
	os = X509_EXTENSION_get_data(ext);
	p = ASN1_STRING_get0_data(os);
	seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(os));
	if (seq == NULL || p != ASN1_STRING_get0_data(os) +
	    ASN1_STRING_length(os))
		goto out;
	cnt = sk_ASN1_TYPE_num(seq);
	if (cnt <= 0 || cnt > 64 || (v = calloc((size_t)cnt, sizeof(*v))) == NULL)
		goto out;
	for (i = 0; i < cnt; i++) {
		ASN1_TYPE *t = sk_ASN1_TYPE_value(seq, i);
		const unsigned char *d;
		int l;

		if (t->type != V_ASN1_IA5STRING)
			goto out;
		d = ASN1_STRING_get0_data(t->value.ia5string);
		l = ASN1_STRING_length(t->value.ia5string);
		if (l <= 0 || l > SPIFFE_MAX || memchr(d, '\0', (size_t)l))
			goto out;
		if ((v[i] = strndup((const char *)d, (size_t)l)) == NULL)
			goto out;
	}
	*out = v;
	*n = (size_t)cnt;
	v = NULL;
	rv = 0;
 out:
	if (v != NULL)
		strv_free(v, (size_t)cnt);
	sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
	ERR_clear_error();
	return rv;
}

int
profile_dns_scope(X509 *ca, char ***out, size_t *n)
{
	NAME_CONSTRAINTS *nc;
	char **v = NULL;
	size_t cnt = 0;
	int i, crit = 0, rv = -1;

	*out = NULL;
	*n = 0;
	nc = X509_get_ext_d2i(ca, NID_name_constraints, &crit, NULL);
	if (nc == NULL)
		return crit == -1 ? 0 : -1;	/* absent, or malformed */
	for (i = 0; i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees); i++) {
		GENERAL_NAME *g = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees,
		    i)->base;
		const unsigned char *d;
		char **nv;
		int l;

		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		l = ASN1_STRING_length(g->d.dNSName);
		if (l == (int)strlen(NC_NONE) && memcmp(d, NC_NONE, (size_t)l) == 0)
			continue;
		if (l <= 0 || l > 255 || memchr(d, '\0', (size_t)l) ||
		    cnt >= 64 || (nv = realloc(v, (cnt + 1) * sizeof(*v))) == NULL)
			goto out;
		v = nv;
		if ((v[cnt] = strndup((const char *)d, (size_t)l)) == NULL)
			goto out;
		cnt++;
	}
	*out = v;
	*n = cnt;
	v = NULL;
	rv = 0;
 out:
	strv_free(v, cnt);
	NAME_CONSTRAINTS_free(nc);
	return rv;
}

static int
set_name(X509_NAME *nm, const char *org, const char *cn)
{
	if (org != NULL && *org != '\0' &&
	    !X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
	    (const unsigned char *)org, -1, -1, 0))
		return -1;
	if (cn != NULL && *cn != '\0' &&
	    !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0))
		return -1;
	return 0;
}

/* A URL for CRL DP / AIA must be plain: no separators OpenSSL's config
 * syntax would act on. */
static int
url_ok(const char *u)
{
	if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
		return 0;
	for (; *u; u++)
		if (*u <= ' ' || *u == ',' || *u >= 0x7f)
			return 0;
	return 1;
}

int
profile_build(const struct profile_req *r, X509 **out, struct mtls_error *err)
{
	/* keyCertSign (5), cRLSign (6); digitalSignature (0),
	 * keyEncipherment (2) */
	static const int ku_ca[] = { 5, 6 }, ku_leaf[] = { 0, 2 };
	X509 *x = NULL;
	X509_NAME *nm = NULL;
	BIGNUM *bn = NULL;
	unsigned char serial[16];
	char buf[512];
	int rsa = EVP_PKEY_get_base_id(r->pubkey) == EVP_PKEY_RSA;
	int rv = -1;

	*out = NULL;
	if ((x = X509_new()) == NULL || (nm = X509_NAME_new()) == NULL)
		goto nomem;
	if (!X509_set_version(x, X509_VERSION_3))
		goto nomem;
	/* 128 random bits, positive (top bit clear), never zero. */
	if (RAND_bytes(serial, sizeof(serial)) != 1) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "no randomness");
		goto err;
	}
	/* Top bit clear keeps it positive; the next bit set keeps all 16
	 * bytes significant (127 random bits), so it is never zero. */
	serial[0] = (unsigned char)((serial[0] & 0x3f) | 0x40);
	if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto nomem;
	if (set_name(nm, r->org, r->cn) != 0 || !X509_set_subject_name(x, nm))
		goto nomem;
	if (!X509_set_issuer_name(x, r->issuer ?
	    X509_get_subject_name(r->issuer) : nm))
		goto nomem;
	if (ASN1_TIME_set(X509_getm_notBefore(x), (time_t)r->not_before) ==
	    NULL || ASN1_TIME_set(X509_getm_notAfter(x),
	    (time_t)r->not_after) == NULL)
		goto nomem;
	if (!(r->pubkey_fast ? x509_set_pubkey_fast(x, r->pubkey) :
	    X509_set_pubkey(x, r->pubkey)))
		goto nomem;

	switch (r->kind) {
	case PROFILE_ROOT:
		if (ext_bc(x, 1, -1) != 0 || ext_ku(x, ku_ca, 2) != 0 ||
		    ext_ski(x) != 0)
			goto ossl;
		break;
	case PROFILE_INTERMEDIATE:
	case PROFILE_CROSS:
		/* a cross-certificate has no pathlen:0: a chain leaf,
		 * intermediate, cross of the new root failed in OpenSSL, Go
		 * and GnuTLS ("path length constraint exceeded") for a peer
		 * knowing the old root only; nor the intermediates' scope */
		if (ext_bc(x, 1, r->kind == PROFILE_CROSS ? -1 : 0) != 0 ||
		    ext_ku(x, ku_ca, 2) != 0 || ext_ski(x) != 0 ||
		    ext_akid(x, r->issuer) != 0)
			goto ossl;
		if (r->kind == PROFILE_INTERMEDIATE &&
		    (add_name_constraints(x, r, err) != 0 ||
		    add_spiffe_scope(x, r, err) != 0))
			goto err;
		break;
	case PROFILE_LEAF:
		if (ext_bc(x, 0, -1) != 0 ||
		    ext_ku(x, ku_leaf, rsa ? 2 : 1) != 0 ||
		    ext_eku(x, r->ca_server) != 0 || ext_ski(x) != 0 ||
		    ext_akid(x, r->issuer) != 0)
			goto ossl;
		if (add_san(x, r->sans, err) != 0)
			goto err;
		break;
	default:
		error_set(err, MTLS_ERR_ARG, "unknown profile %d", r->kind);
		goto err;
	}
	if (r->kind != PROFILE_ROOT && r->crl_url != NULL && *r->crl_url) {
		if (!url_ok(r->crl_url)) {
			error_set(err, MTLS_ERR_ARG, "crl_url '%.100s' is not a "
			    "plain http(s) URL", r->crl_url);
			goto err;
		}
		snprintf(buf, sizeof(buf), "URI:%s", r->crl_url);
		if (add_ext_conf(x, r->issuer, NID_crl_distribution_points,
		    buf) != 0)
			goto ossl;
	}
	if (r->kind != PROFILE_ROOT && r->ocsp_url != NULL && *r->ocsp_url) {
		if (!url_ok(r->ocsp_url)) {
			error_set(err, MTLS_ERR_ARG, "ocsp_url '%.100s' is not a "
			    "plain http(s) URL", r->ocsp_url);
			goto err;
		}
		snprintf(buf, sizeof(buf), "OCSP;URI:%s", r->ocsp_url);
		if (add_ext_conf(x, r->issuer, NID_info_access, buf) != 0)
			goto ossl;
	}
	if (!X509_sign(x, r->issuer_key, sign_digest(r->issuer_key)))
		goto ossl;
	*out = x;
	x = NULL;
	rv = 0;
	goto err;
 ossl:
	error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot build certificate");
	goto err;
 nomem:
	error_set_ossl(err, MTLS_ERR_NOMEM, "cannot build certificate");
 err:
	BN_free(bn);
	X509_NAME_free(nm);
	X509_free(x);
	return rv;
}

/* Whether <x> carries the CA-server EKU (MTLS_OID_CA_SERVER). */
int
profile_is_ca_server(X509 *x)
{
	EXTENDED_KEY_USAGE *eku;
	ASN1_OBJECT *want;
	int i, found = 0;

	if ((want = OBJ_txt2obj(MTLS_OID_CA_SERVER, 1)) == NULL)
		return 0;
	eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	for (i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku) && !found; i++)
		found = OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), want) == 0;
	EXTENDED_KEY_USAGE_free(eku);
	ASN1_OBJECT_free(want);
	return found;
}
