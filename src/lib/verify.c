/*
 * Chain verification policy: OpenSSL builds and checks the chain (we never
 * reimplement path validation); we map its verdict to one taxonomy code
 * with a reason naming the certificate, then apply what OpenSSL does not:
 * weak keys and digests, X509-SVID rules, our SPIFFE path scope, revocation
 * of intermediates, expected identities and allow rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <stdint.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "private.h"

void
verify_out_free(struct verify_out *o)
{
	ids_free(&o->ids);
	sk_X509_pop_free(o->chain, X509_free);
	o->chain = NULL;
	o->serial[0] = '\0';
}

X509_STORE *
verify_store_new(const struct mtls_config *cfg, struct mtls_error *err)
{
	X509_STORE *st;
	int i;

	if ((st = X509_STORE_new()) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		return NULL;
	}
	for (i = 0; cfg->trust != NULL && i < sk_X509_num(cfg->trust); i++)
		if (!X509_STORE_add_cert(st, sk_X509_value(cfg->trust, i))) {
			unsigned long e = ERR_peek_last_error();

			/* the same root twice in a bundle is harmless */
			if (ERR_GET_REASON(e) == X509_R_CERT_ALREADY_IN_HASH_TABLE) {
				ERR_clear_error();
				continue;
			}
			error_set_ossl(err, MTLS_ERR_CRYPTO,
			    "cannot add trust anchor %d", i + 1);
			X509_STORE_free(st);
			return NULL;
		}
	return st;
}

int64_t
verify_now(const struct mtls_config *cfg)
{
	return cfg->verify_time ? cfg->verify_time : (int64_t)time(NULL);
}

/* The value of attribute <nid> (e.g. O) of <nm>, or "". */
static void
name_attr(const X509_NAME *nm, int nid, char *buf, size_t len)
{
	buf[0] = '\0';
	X509_NAME_get_text_by_NID((X509_NAME *)nm, nid, buf, (int)len);
}

/*
 * <cn> without the " YYYY-MM-DDTHHMMSSZ" that a root rotation appends to
 * the new root's name (rotation.c: "<td> Root CA <stamp>"): the name of the
 * root's line, the same for every generation. Into <out>.
 */
static void
root_line(const char *cn, char *out, size_t cap)
{
	static const char pat[] = " dddd-dd-ddTddddddZ";
	size_t n = strlen(cn), k = sizeof(pat) - 1, i;

	snprintf(out, cap, "%s", cn);
	if (n <= k)
		return;
	for (i = 0; i < k; i++)
		if (pat[i] == 'd' ? (cn[n - k + i] < '0' || cn[n - k + i] > '9') :
		    cn[n - k + i] != pat[i])
			return;
	if (n - k < cap)
		out[n - k] = '\0';
}

/* a certificate's label for a message: made only when one is written
 * (each took ~2 % of a renewal, and of a proxy's handshake, made on
 * every certificate of every chain that passed) */
#define LABEL(x)	(cert_label((x), label, sizeof(label)), label)

/*
 * A trusted root of the same line as the missing issuer <iss> (same O,
 * same CN once a rotation's stamp is taken off, a different name): the
 * issuer is an earlier or later generation of a root the bundle holds,
 * i.e. a root rotated out of this bundle (after `rotation retire`), or
 * one this bundle has not taken yet (*newer: its stamp sorts after the
 * anchor's; the first root has none), never an intermediate. NULL when
 * there is none.
 */
X509 *
verify_rotated_root(const struct mtls_config *cfg, const X509_NAME *iss,
    int *newer)
{
	char cn[128], acn[128], line[128], aline[128], org[128], aorg[128];
	int i;

	name_attr(iss, NID_commonName, cn, sizeof(cn));
	name_attr(iss, NID_organizationName, org, sizeof(org));
	if (cn[0] == '\0')
		return NULL;
	root_line(cn, line, sizeof(line));
	for (i = 0; cfg->trust != NULL && i < sk_X509_num(cfg->trust); i++) {
		X509 *a = sk_X509_value(cfg->trust, i);
		const X509_NAME *an = X509_get_subject_name(a);

		name_attr(an, NID_commonName, acn, sizeof(acn));
		name_attr(an, NID_organizationName, aorg, sizeof(aorg));
		root_line(acn, aline, sizeof(aline));
		if (strcmp(aorg, org) == 0 && strcmp(aline, line) == 0 &&
		    strcmp(acn, cn) != 0 && cert_is_self_signed(a)) {
			/* the stamps (or "" for the first root) sort by time */
			*newer = strcmp(cn + strlen(line),
			    acn + strlen(aline)) > 0;
			return a;
		}
	}
	return NULL;
}

/*
 * The issuer of <x> was found neither in the chain sent nor in the trust
 * bundle. At depth 0 that is usually a missing intermediate; but when the
 * missing issuer is plainly from another PKI (its O differs from every
 * anchor's) or has an anchor's exact name (a different key), it is an
 * unknown CA; and when it is another generation of a trusted root (a root
 * rotated out of the bundle: an old-root leaf after `rotation retire`),
 * sending more certificates cannot help and adding the old root back
 * would undo the retirement: unknown_ca, the fix first (renew).
 */
static int
missing_issuer(const struct mtls_config *cfg, X509 *x, int depth,
    struct mtls_error *err)
{
	const X509_NAME *iss = X509_get_issuer_name(x);
	char label[256], iname[200], org[128], aorg[128];
	int i, same_org = 0, any_org = 0, newer = 0;

	cert_label(x, label, sizeof(label));
	name_oneline(iss, iname, sizeof(iname));
	name_attr(iss, NID_organizationName, org, sizeof(org));
	for (i = 0; cfg->trust != NULL && i < sk_X509_num(cfg->trust); i++) {
		X509 *a = sk_X509_value(cfg->trust, i);

		if (X509_NAME_cmp(X509_get_subject_name(a), iss) == 0)
			return error_fail(err, MTLS_FAIL_UNKNOWN_CA,
			    "%s claims issuer '%s', which is a trusted root's "
			    "name, but its signature does not verify with that "
			    "root's key", label, iname);
		name_attr(X509_get_subject_name(a), NID_organizationName,
		    aorg, sizeof(aorg));
		if (aorg[0] != '\0') {
			any_org = 1;
			if (strcmp(aorg, org) == 0)
				same_org = 1;
		}
	}
	/* the fix first: the message has 255 bytes */
	if (verify_rotated_root(cfg, iss, &newer) != NULL)
		return error_fail(err, MTLS_FAIL_UNKNOWN_CA, newer ?
		    "%s: install the CA's current bundle here (mtls agent "
		    "takes it); its issuer '%s' is a root newer than this "
		    "trust bundle's" : "%s: renew it from the current CA; its "
		    "issuer '%s' is a root rotated out of the trust bundle "
		    "(do not add it back)", label, iname);
	if (depth == 0 && (same_org || !any_org || org[0] == '\0'))
		return error_fail(err, MTLS_FAIL_CHAIN_INCOMPLETE,
		    "issuer '%s' of %s was not sent with it and is not in the "
		    "trust bundle: the intermediate is missing", iname, label);
	return error_fail(err, MTLS_FAIL_UNKNOWN_CA,
	    "%s is issued by '%s', which does not chain to any root in the "
	    "trust bundle", label, iname);
}

/* The lowest certificate of the chain that is expired (<expired>) or not
 * yet valid at <now>; <x> at *depth when none is lower. */
static X509 *
lowest_outside(X509_STORE_CTX *ctx, int64_t now, int expired, X509 *x,
    int *depth)
{
	STACK_OF(X509) *ch = X509_STORE_CTX_get0_chain(ctx);
	int i;

	for (i = 0; ch != NULL && i < *depth && i < sk_X509_num(ch); i++) {
		X509 *c = sk_X509_value(ch, i);

		if (expired ? asn1_time_unix(X509_get0_notAfter(c)) < now :
		    asn1_time_unix(X509_get0_notBefore(c)) > now) {
			*depth = i;
			return c;
		}
	}
	return x;
}

static int
map_error(const struct mtls_config *cfg, X509_STORE_CTX *ctx,
    struct mtls_error *err)
{
	int e = X509_STORE_CTX_get_error(ctx);
	int depth = X509_STORE_CTX_get_error_depth(ctx);
	X509 *x = X509_STORE_CTX_get_current_cert(ctx);
	const char *what = X509_verify_cert_error_string(e);
	const char *pos = depth == 0 ? "leaf" : "CA certificate";
	char label[256], ago[64];
	int64_t now = verify_now(cfg), t;

	if (x == NULL) {
		STACK_OF(X509) *ch = X509_STORE_CTX_get0_chain(ctx);

		x = ch ? sk_X509_value(ch, depth < sk_X509_num(ch) ? depth : 0) : NULL;
	}
	if (x != NULL)
		cert_label(x, label, sizeof(label));
	else
		snprintf(label, sizeof(label), "certificate at depth %d", depth);

	switch (e) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
		if (x != NULL)
			return missing_issuer(cfg, x, depth, err);
		return error_fail(err, MTLS_FAIL_UNKNOWN_CA, "%s: %s", label,
		    what);
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return error_fail(err, MTLS_FAIL_UNKNOWN_CA,
		    "the chain ends at self-signed %s, which is not in the "
		    "trust bundle", label);
	case X509_V_ERR_CERT_HAS_EXPIRED:
		/* OpenSSL checks from the top; name the lowest expired one,
		 * usually the leaf, which is what needs renewing first. */
		x = lowest_outside(ctx, now, 1, x, &depth);
		pos = depth == 0 ? "leaf" : "CA certificate";
		cert_label(x, label, sizeof(label));
		t = asn1_time_unix(X509_get0_notAfter(x));
		human_duration(now - t, ago, sizeof(ago));
		return error_fail(err, MTLS_FAIL_CERT_EXPIRED,
		    "%s %s expired %s ago", pos, label, ago);
	case X509_V_ERR_CERT_NOT_YET_VALID:
		x = lowest_outside(ctx, now, 0, x, &depth);
		pos = depth == 0 ? "leaf" : "CA certificate";
		cert_label(x, label, sizeof(label));
		t = asn1_time_unix(X509_get0_notBefore(x));
		human_duration(t - now, ago, sizeof(ago));
		return error_fail(err, MTLS_FAIL_CERT_NOT_YET_VALID,
		    "%s %s is not valid for another %s: it starts in %lld s "
		    "(clock skew? this clock is behind its issuer's)", pos,
		    label, ago, (long long)(t - now));
	case X509_V_ERR_CERT_REVOKED:
		return error_fail(err, MTLS_FAIL_REVOKED, "%s %s is revoked",
		    pos, label);
	case X509_V_ERR_UNABLE_TO_GET_CRL:
	case X509_V_ERR_CRL_HAS_EXPIRED:
	case X509_V_ERR_CRL_NOT_YET_VALID:
	case X509_V_ERR_CRL_SIGNATURE_FAILURE:
	case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
	case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
	case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
	case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
	case X509_V_ERR_DIFFERENT_CRL_SCOPE:
	case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
		return error_fail(err, MTLS_FAIL_REVOKED,
		    "revocation status of %s %s is unknown (%s); refusing, "
		    "as a CRL is configured", pos, label, what);
	case X509_V_ERR_INVALID_CA:
	case X509_V_ERR_PATH_LENGTH_EXCEEDED:
	case X509_V_ERR_INVALID_PURPOSE:
	case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
	case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
	case X509_V_ERR_INVALID_NON_CA:
	case X509_V_ERR_INVALID_EXTENSION:
	case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
		return error_fail(err, MTLS_FAIL_BAD_KEY_USAGE, "%s %s: %s",
		    pos, label, what);
	/* X509_V_FLAG_X509_STRICT: the certificate is not RFC 5280 */
	case X509_V_ERR_CA_BCONS_NOT_CRITICAL:
	case X509_V_ERR_CA_CERT_MISSING_KEY_USAGE:
	case X509_V_ERR_EMPTY_SUBJECT_SAN_NOT_CRITICAL:
	case X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER:
	case X509_V_ERR_MISSING_SUBJECT_KEY_IDENTIFIER:
	case X509_V_ERR_PATHLEN_INVALID_FOR_NON_CA:
	case X509_V_ERR_PATHLEN_WITHOUT_KU_KEY_CERT_SIGN:
	case X509_V_ERR_KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA:
	case X509_V_ERR_ISSUER_NAME_EMPTY:
	case X509_V_ERR_SUBJECT_NAME_EMPTY:
	case X509_V_ERR_EXTENSIONS_REQUIRE_VERSION_3:
	case X509_V_ERR_AUTHORITY_KEY_IDENTIFIER_CRITICAL:
	case X509_V_ERR_SUBJECT_KEY_IDENTIFIER_CRITICAL:
	case X509_V_ERR_EMPTY_SUBJECT_ALT_NAME:
		return error_fail(err, MTLS_FAIL_BAD_KEY_USAGE,
		    "%s %s does not conform to RFC 5280 (%s); mtls verifies "
		    "strictly: reissue it with a conforming CA", pos, label,
		    what);
	case X509_V_ERR_EC_KEY_EXPLICIT_PARAMS:
	case X509_V_ERR_SIGNATURE_ALGORITHM_MISMATCH:
	case X509_V_ERR_SIGNATURE_ALGORITHM_INCONSISTENCY:
		return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
		    "%s %s: %s", pos, label, what);
	case X509_V_ERR_PERMITTED_VIOLATION:
	case X509_V_ERR_EXCLUDED_VIOLATION:
	case X509_V_ERR_SUBTREE_MINMAX:
	case X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE:
	case X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX:
	case X509_V_ERR_UNSUPPORTED_NAME_SYNTAX:
		return error_fail(err, MTLS_FAIL_NAME_CONSTRAINTS,
		    "%s %s violates its issuer's name constraints (%s)", pos,
		    label, what);
	case X509_V_ERR_EE_KEY_TOO_SMALL:
	case X509_V_ERR_CA_KEY_TOO_SMALL:
	case X509_V_ERR_CA_MD_TOO_WEAK:
		return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
		    "%s %s: %s", pos, label, what);
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
	case X509_V_ERR_EMAIL_MISMATCH:
		return error_fail(err, MTLS_FAIL_IDENTITY_MISMATCH, "%s: %s",
		    label, what);
	default:
		return error_fail(err, MTLS_FAIL_UNKNOWN_CA, "%s %s: %s", pos,
		    label, what);
	}
}

static int
weak_digest(int mdnid)
{
	return mdnid == NID_sha1 || mdnid == NID_md5 || mdnid == NID_md4 ||
	    mdnid == NID_md2 || mdnid == NID_md5_sha1 || mdnid == NID_mdc2 ||
	    mdnid == NID_ripemd160;
}

/*
 * An RSA public exponent of FIPS 186-5 (5.4): odd, 2^16 < e < 2^256. With
 * e = 1 the "signature" of any message is its padded digest: a CSR for
 * such a key verifies, and whoever sees the certificate can sign as it.
 */
int
rsa_exponent_ok(EVP_PKEY *k)
{
	BIGNUM *e = NULL;
	int ok;

	if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
		return 0;
	ok = BN_is_odd(e) && BN_num_bits(e) > 16 && BN_num_bits(e) <= 256;
	BN_free(e);
	return ok;
}

/* Weak keys anywhere in the chain; weak digests on every signature that
 * matters (the trust anchor's self-signature does not). */
static int
check_strength(STACK_OF(X509) *chain, struct mtls_error *err)
{
	char label[256], kd[64];
	int i, n = sk_X509_num(chain);

	for (i = 0; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);
		EVP_PKEY *k = X509_get0_pubkey(x);
		int id, bits, mdnid = NID_undef, pknid, secbits;
		uint32_t flags;

		if (k == NULL) {
			cert_label(x, label, sizeof(label));
			return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
			    "%s: unsupported public key", label);
		}
		id = EVP_PKEY_get_base_id(k);
		key_describe(k, kd, sizeof(kd), &bits);
		if (((id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS ||
		    id == EVP_PKEY_DSA) && bits < 2048) ||
		    (id == EVP_PKEY_EC && bits < 256)) {
			cert_label(x, label, sizeof(label));
			return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
			    "%s has a weak %s key (need RSA >= 2048, EC >= "
			    "P-256)", label, kd);
		}
		if ((id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) &&
		    !rsa_exponent_ok(k)) {
			cert_label(x, label, sizeof(label));
			ERR_clear_error();
			return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
			    "%s has an RSA key whose public exponent is not "
			    "an odd number above 65536 (FIPS 186-5; use "
			    "65537)", label);
		}
		if (i == n - 1 && cert_is_self_signed(x))
			continue;
		if (X509_get_signature_info(x, &mdnid, &pknid, &secbits,
		    &flags) == 1 && weak_digest(mdnid)) {
			cert_label(x, label, sizeof(label));
			return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
			    "%s is signed with %s, which is broken", label,
			    OBJ_nid2sn(mdnid));
		}
	}
	return 0;
}

/* Every dNSName subtree of <st> is empty (OpenSSL's "all") or a host
 * name: no leading dot, which RFC 5280 allows for URIs only. */
static int
nc_dns_ok(STACK_OF(GENERAL_SUBTREE) *st)
{
	int i;

	for (i = 0; i < sk_GENERAL_SUBTREE_num(st); i++) {
		GENERAL_NAME *g = sk_GENERAL_SUBTREE_value(st, i)->base;
		char buf[256];
		int l;

		if (g->type != GEN_DNS)
			continue;
		l = ASN1_STRING_length(g->d.dNSName);
		if (l == 0)
			continue;
		if (l >= (int)sizeof(buf))
			return 0;
		memcpy(buf, ASN1_STRING_get0_data(g->d.dNSName), (size_t)l);
		buf[l] = '\0';
		if (memchr(buf, '\0', (size_t)l) != NULL ||
		    dns_name_check(buf, 0) != 0)
			return 0;
	}
	return 1;
}

/*
 * Each dNSName SAN of the leaf in host-name syntax (RFC 5280 4.2.1.6; a
 * "*" in the first label allowed, and "_", as Go allows it for internal
 * names):
 * ".example.com" would slip past a name constraint that only checks the
 * names it can parse. NULL when fine.
 */
static const char *
leaf_names_bad(X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
	    NULL);
	const char *why = NULL;
	char buf[256];
	int i, l;

	for (i = 0; i < sk_GENERAL_NAME_num(gens) && why == NULL; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;

		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		l = ASN1_STRING_length(g->d.dNSName);
		if (l <= 0 || l >= (int)sizeof(buf) ||
		    memchr(d, '\0', (size_t)l) != NULL)
			why = "a dNSName SAN that is not a host name";
		else {
			const char *dot;

			memcpy(buf, d, (size_t)l);
			buf[l] = '\0';
			/* a "*" in the first label is RFC 6125's business
			 * (matched or not by the name checks), not syntax */
			dot = strchr(buf, '.');
			if (dot != NULL && dot > buf && memchr(buf, '*',
			    (size_t)(dot - buf)) != NULL) {
				buf[0] = 'x';
				memmove(buf + 1, dot, strlen(dot) + 1);
			}
			if (dns_name_check(buf, 0) != 0)
				why = "a dNSName SAN that is not a host name "
				    "(RFC 5280 4.2.1.6)";
		}
	}
	GENERAL_NAMES_free(gens);
	return why;
}

/*
 * OpenSSL matches a wildcard SAN "*.example.com" against an excluded
 * subtree "bar.example.com" as a string, finds no match, and lets it
 * through, though the certificate then serves bar.example.com
 * (CVE-2025-61727). Refuse a wildcard whose domain holds an excluded name.
 */
static int
wildcard_excluded(X509 *leaf, STACK_OF(GENERAL_SUBTREE) *ex)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name,
	    NULL, NULL);
	int i, j, hit = 0;

	for (i = 0; i < sk_GENERAL_NAME_num(gens) && !hit; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *w;
		int wl;

		if (g->type != GEN_DNS)
			continue;
		w = ASN1_STRING_get0_data(g->d.dNSName);
		wl = ASN1_STRING_length(g->d.dNSName);
		if (wl < 3 || w[0] != '*' || w[1] != '.')
			continue;
		w += 1;		/* ".example.com" */
		wl -= 1;
		for (j = 0; j < sk_GENERAL_SUBTREE_num(ex) && !hit; j++) {
			GENERAL_NAME *b = sk_GENERAL_SUBTREE_value(ex, j)->base;
			const unsigned char *e;
			int el;

			if (b->type != GEN_DNS)
				continue;
			e = ASN1_STRING_get0_data(b->d.dNSName);
			el = ASN1_STRING_length(b->d.dNSName);
			/* the excluded name is the wildcard's domain or
			 * below it */
			hit = (el == wl - 1 &&
			    OPENSSL_strncasecmp((const char *)e,
			    (const char *)w + 1, (size_t)el) == 0) ||
			    (el > wl && OPENSSL_strncasecmp((const char *)e +
			    el - wl, (const char *)w, (size_t)wl) == 0);
		}
	}
	GENERAL_NAMES_free(gens);
	return hit;
}

/*
 * RFC 5280 rules OpenSSL's X509_V_FLAG_X509_STRICT does not check (the
 * policy, with each deviation from x509-limbo's expectations, is in
 * docs/security/path-validation.md). <n_anchor> is 1 when the last
 * certificate of <chain> is the trust anchor, whose own encoding the
 * operator chose and which we do not police beyond its key.
 */
static int
check_rfc5280(STACK_OF(X509) *chain, struct mtls_error *err)
{
	char label[256];
	int i, n = sk_X509_num(chain);

	for (i = 0; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);
		const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
		EVP_PKEY *k = X509_get0_pubkey(x);
		int anchor = i == n - 1, crit = -1, id;
		NAME_CONSTRAINTS *nc;
		POLICY_CONSTRAINTS *pc;
		const char *why = NULL;

		id = k != NULL ? EVP_PKEY_get_base_id(k) : EVP_PKEY_NONE;
		/* DSA is gone from TLS 1.3 and from every CA; an RSA modulus
		 * of a length that is not whole bytes is a broken key
		 * generator (CA/B Forum BR 6.1.5). */
		if (id == EVP_PKEY_DSA)
			return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
			    "%s has a DSA key; use ECDSA P-256 or RSA >= 2048",
			    LABEL(x));
		if ((id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) &&
		    EVP_PKEY_get_bits(k) % 8 != 0)
			return error_fail(err, MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
			    "%s has a %d-bit RSA modulus, not a whole number "
			    "of bytes: the key generator is broken", LABEL(x),
			    EVP_PKEY_get_bits(k));
		/* 4.1.2.2: a positive integer of at most 20 octets */
		if (!anchor && (ASN1_STRING_length(sn) > 20 ||
		    ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER ||
		    ASN1_STRING_length(sn) == 0 ||
		    (ASN1_STRING_length(sn) == 1 &&
		    ASN1_STRING_get0_data(sn)[0] == 0)))
			why = "a serial number that is zero, negative or over "
			    "20 bytes (RFC 5280 4.1.2.2)";
		/* 4.2.1.10: critical, only in CA certificates, and never
		 * empty (both subtrees absent constrains nothing and is
		 * malformed). */
		else if ((nc = X509_get_ext_d2i(x, NID_name_constraints, &crit,
		    NULL)) != NULL || crit >= 0) {
			if (nc == NULL)
				why = "an unreadable nameConstraints";
			else if (!(X509_get_extension_flags(x) & EXFLAG_CA))
				why = "nameConstraints, which only a CA "
				    "certificate may carry";
			else if (crit == 0)
				why = "a non-critical nameConstraints (RFC 5280 "
				    "4.2.1.10: it must be critical)";
			else if (sk_GENERAL_SUBTREE_num(nc->permittedSubtrees)
			    <= 0 &&
			    sk_GENERAL_SUBTREE_num(nc->excludedSubtrees) <= 0)
				why = "a nameConstraints with no subtrees";
			else if (!nc_dns_ok(nc->permittedSubtrees) ||
			    !nc_dns_ok(nc->excludedSubtrees))
				why = "a nameConstraints dNSName that is not a "
				    "host name (RFC 5280 4.2.1.10: no leading "
				    "dot for DNS)";
			else if (i > 0 && wildcard_excluded(
			    sk_X509_value(chain, 0), nc->excludedSubtrees)) {
				NAME_CONSTRAINTS_free(nc);
				return error_fail(err,
				    MTLS_FAIL_NAME_CONSTRAINTS, "the leaf's "
				    "wildcard DNS SAN covers a name that CA "
				    "certificate %s excludes", LABEL(x));
			}
			NAME_CONSTRAINTS_free(nc);
		}
		if (why == NULL && X509_get_ext_by_NID(x,
		    NID_authority_key_identifier, -1) >= 0 &&
		    X509_get0_authority_key_id(x) == NULL)
			why = "an authorityKeyIdentifier without a "
			    "keyIdentifier (RFC 5280 4.2.1.1)";
		if (why == NULL && i == 0 && (why = leaf_names_bad(x)) != NULL)
			return error_fail(err, MTLS_FAIL_INVALID_SVID,
			    "leaf %s has %s", LABEL(x), why);
		crit = -1;
		if (why == NULL && ((pc = X509_get_ext_d2i(x,
		    NID_policy_constraints, &crit, NULL)) != NULL ||
		    crit >= 0)) {
			if (pc == NULL || crit == 0)
				why = "a non-critical or unreadable "
				    "policyConstraints (RFC 5280 4.2.1.11)";
			POLICY_CONSTRAINTS_free(pc);
		}
		if (why != NULL)
			return error_fail(err, MTLS_FAIL_BAD_KEY_USAGE,
			    "%s %s has %s; reissue it with a conforming CA",
			    i == 0 ? "leaf" : "CA certificate", LABEL(x), why);
	}
	return 0;
}

/* X509-SVID (SPIFFE X509-SVID spec, section 4 and 5). */
static int
check_svid(X509 *leaf, const struct ids *ids, struct mtls_error *err)
{
	const char *spiffe = NULL;
	char label[256], why[160];
	uint32_t ku, xf = X509_get_extension_flags(leaf);
	size_t i;

	for (i = 0; i < ids->n; i++)
		if (strncmp(ids->v[i], "spiffe://", 9) == 0) {
			spiffe = ids->v[i];
			break;
		}
	/* A name that may not be an identity (identity.c) refuses the
	 * chain: invalid_svid for every kind of name, as it is the one code
	 * that says "this certificate is not a valid identity document";
	 * identity_mismatch would send the operator to their rules. */
	if (ids->bad_uri > 0 || ids->bad_other > 0)
		return error_fail(err, MTLS_FAIL_INVALID_SVID,
		    "leaf %s: %s is not an identity: a name must be printable "
		    "ASCII without spaces or control bytes (URI at most %d "
		    "bytes)", LABEL(leaf), ids->bad ? ids->bad : "a name",
		    SPIFFE_MAX);
	if (spiffe == NULL) {
		if (xf & EXFLAG_CA)
			return error_fail(err, MTLS_FAIL_BAD_KEY_USAGE,
			    "leaf %s is a CA certificate (CA:TRUE); an "
			    "end-entity must be CA:FALSE", LABEL(leaf));
		return 0;
	}
	if (ids->n_uri != 1)
		return error_fail(err, MTLS_FAIL_INVALID_SVID,
		    "leaf %s has %zu URI SANs; an X509-SVID has exactly one",
		    LABEL(leaf), ids->n_uri);
	if (mtls_spiffe_id_check(spiffe, why, sizeof(why)) != 0)
		return error_fail(err, MTLS_FAIL_INVALID_SVID,
		    "leaf %s: SPIFFE ID '%.200s' is invalid: %s", LABEL(leaf),
		    spiffe, why);
	if (xf & EXFLAG_CA)
		return error_fail(err, MTLS_FAIL_INVALID_SVID,
		    "leaf %s is CA:TRUE; an X509-SVID leaf must be CA:FALSE",
		    LABEL(leaf));
	ku = X509_get_key_usage(leaf);
	if (ku != UINT32_MAX && !(ku & KU_DIGITAL_SIGNATURE))
		return error_fail(err, MTLS_FAIL_INVALID_SVID,
		    "leaf %s lacks keyUsage digitalSignature", LABEL(leaf));
	if (ku != UINT32_MAX && (ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)))
		return error_fail(err, MTLS_FAIL_INVALID_SVID,
		    "leaf %s has keyCertSign or cRLSign; an X509-SVID leaf "
		    "must not", LABEL(leaf));
	return 0;
}

/* 1 when DNS name <name> is one of <sfx> or below one (RFC 5280
 * 4.2.1.10 dNSName subtrees; a leading "." means strictly below). */
static int
dns_in(const char *name, char **sfx, size_t n)
{
	size_t nl = strlen(name), bl, i;

	for (i = 0; i < n; i++) {
		bl = strlen(sfx[i]);
		if (sfx[i][0] != '.' && strcasecmp(name, sfx[i]) == 0)
			return 1;
		if (nl > bl && strcasecmp(name + nl - bl, sfx[i]) == 0 &&
		    (sfx[i][0] == '.' || name[nl - bl - 1] == '.'))
			return 1;
	}
	return 0;
}

/* The extra scope OID to recognise: the config's, else MTLS_SCOPE_OID. */
static const char *
scope_extra(const struct mtls_config *cfg)
{
	return cfg->scope_oid[0] != '\0' ? cfg->scope_oid :
	    getenv("MTLS_SCOPE_OID");
}

/*
 * Our SPIFFE scope on each CA of the chain (see profile.c). A CA with the
 * extension is scoped: the SPIFFE ID must start with one of its prefixes,
 * and a name type its nameConstraints do not permit is refused here even
 * where RFC 5280 would leave it open. That covers intermediates issued
 * before profile.c closed those types: DNS names must be within the
 * permitted dNSName subtrees, a CN (hostname-like or not: X.509 cannot
 * constrain other CNs) likewise, and no IP address is ever permitted.
 */
static int
check_scope(const struct mtls_config *cfg, STACK_OF(X509) *chain,
    const struct ids *ids, struct mtls_error *err)
{
	const char *oids[3], *extra = scope_extra(cfg), *id, *bad = NULL;
	char label[256], **pre, **dns = NULL, allowed[300];
	size_t n, nd = 0, j, k, m, no;
	int i, ok, scoped, rv = -1;

	if (extra != NULL && *extra != '\0' &&
	    profile_scope_oid_check(extra) != 0)
		return error_fail(err, MTLS_FAIL_NAME_CONSTRAINTS,
		    "MTLS_SCOPE_OID '%.64s' is not a dotted OID whose arcs fit "
		    "in 31 bits: cannot check SPIFFE scopes", extra);
	no = profile_scope_oids(extra, oids);
	for (i = 1; i < sk_X509_num(chain); i++) {
		X509 *ca = sk_X509_value(chain, i);

		for (scoped = 0, k = 0; k < no; k++) {
			if (profile_spiffe_scope(ca, oids[k], &pre, &n) != 0)
				return error_fail(err,
				    MTLS_FAIL_NAME_CONSTRAINTS, "CA %s has a "
				    "malformed SPIFFE scope extension",
				    LABEL(ca));
			if (n == 0)
				continue;
			scoped = 1;
			for (j = 0; j < ids->n; j++) {
				id = ids->v[j];
				if (strncmp(id, "spiffe://", 9) != 0)
					continue;
				for (ok = 0, m = 0; m < n && !ok; m++)
					ok = strncmp(id, pre[m],
					    strlen(pre[m])) == 0;
				if (!ok) {
					error_fail(err,
					    MTLS_FAIL_NAME_CONSTRAINTS,
					    "'%.200s' is outside the SPIFFE "
					    "scope '%s' of CA %s", id, pre[0],
					    LABEL(ca));
					strv_free(pre, n);
					return -1;
				}
			}
			strv_free(pre, n);
		}
		if (!scoped)
			continue;
		if (profile_dns_scope(ca, &dns, &nd) != 0)
			return error_fail(err, MTLS_FAIL_NAME_CONSTRAINTS,
			    "CA %s has malformed nameConstraints", LABEL(ca));
		for (j = 0; j < ids->n && bad == NULL; j++) {
			id = ids->v[j];
			if (strncmp(id, "ip:", 3) == 0 ||
			    (strncmp(id, "dns:", 4) == 0 &&
			    !dns_in(id + 4, dns, nd)) ||
			    (strncmp(id, "cn:", 3) == 0 &&
			    (dns_name_check(id + 3, 0) != 0 ||
			    !dns_in(id + 3, dns, nd))))
				bad = id;
		}
		if (bad != NULL) {
			size_t off = 0;

			allowed[0] = '\0';
			for (k = 0; k < nd && off + 1 < sizeof(allowed); k++)
				off += (size_t)snprintf(allowed + off,
				    sizeof(allowed) - off, "%s%s", k ? ", " :
				    "", dns[k]);
			error_fail(err, MTLS_FAIL_NAME_CONSTRAINTS,
			    "'%.200s' is outside the scope of CA %s, which "
			    "permits %s%s and no IP address", bad, LABEL(ca),
			    nd ? "only the DNS names under " : "no DNS name or "
			    "CN", nd ? allowed : "");
			goto out;
		}
		strv_free(dns, nd);
		dns = NULL;
		nd = 0;
	}
	rv = 0;
 out:
	strv_free(dns, nd);
	return rv;
}

const char *
verify_fed_td(const struct mtls_config *cfg, X509 *x)
{
	int i;

	for (i = 0; cfg->fed != NULL && i < sk_X509_num(cfg->fed); i++)
		if (X509_cmp(sk_X509_value(cfg->fed, i), x) == 0)
			return cfg->fed_td[i];
	return NULL;
}

/*
 * SPIFFE federation: a federated trust domain's anchor vouches for the
 * SPIFFE IDs of that trust domain and nothing else, name constraints or
 * not. Every certificate of the verified chain that is such an anchor
 * (the one OpenSSL ended at, or one it passed through) binds the leaf: it
 * must carry a SPIFFE ID and each of its SPIFFE IDs must be in that trust
 * domain (two anchors of different domains on one path: nothing passes).
 * Its other names (DNS, IP, CN) are not the partner's to vouch for: they
 * are dropped from <ids>, which is what the rules then match. A chain
 * anchored only by our own roots is left as it is.
 */
static int
check_trust_domain(const struct mtls_config *cfg, STACK_OF(X509) *chain,
    struct ids *ids, struct mtls_error *err)
{
	char label[256], alabel[256], td[TD_MAX + 1];
	const char *want;
	size_t j, k, n_spiffe;
	int i, scoped = 0;

	if (cfg->fed == NULL || sk_X509_num(cfg->fed) == 0)
		return 0;
	cert_label(sk_X509_value(chain, 0), label, sizeof(label));
	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *a = sk_X509_value(chain, i);

		if ((want = verify_fed_td(cfg, a)) == NULL)
			continue;
		scoped = 1;
		cert_label(a, alabel, sizeof(alabel));
		for (n_spiffe = 0, j = 0; j < ids->n; j++) {
			if (strncmp(ids->v[j], "spiffe://", 9) != 0)
				continue;
			n_spiffe++;
			if (spiffe_trust_domain(ids->v[j], td, sizeof(td)) != 0 ||
			    strcmp(td, want) != 0)
				return error_fail(err,
				    MTLS_FAIL_TRUST_DOMAIN_MISMATCH, "leaf %s "
				    "claims '%.200s', outside trust domain %s: "
				    "its chain ends at %s, the anchor of %s, "
				    "which vouches for %s's SPIFFE IDs only",
				    label, ids->v[j], want, alabel, want, want);
		}
		if (n_spiffe == 0)
			return error_fail(err, MTLS_FAIL_TRUST_DOMAIN_MISMATCH,
			    "leaf %s has no SPIFFE ID: its chain ends at %s, "
			    "the anchor of federated trust domain %s, which "
			    "vouches for %s's SPIFFE IDs only", label, alabel,
			    want, want);
	}
	if (!scoped)
		return 0;
	for (j = 0, k = 0; j < ids->n; j++) {
		if (strncmp(ids->v[j], "spiffe://", 9) == 0)
			ids->v[k++] = ids->v[j];
		else
			free(ids->v[j]);
	}
	ids->n = k;
	return 0;
}

/*
 * OpenSSL judges a CRL's thisUpdate and nextUpdate with no clock skew; the
 * proxy admits a CRL with REVOCATION_SKEW either way (crl_check), as OCSP
 * responses are judged. The same window here, so that a CRL admitted is
 * honoured rather than refusing its issuer's certificates for minutes.
 */
static int
crl_skew_cb(int ok, X509_STORE_CTX *ctx)
{
	int e = X509_STORE_CTX_get_error(ctx);
	X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
	X509_CRL *crl = X509_STORE_CTX_get0_current_crl(ctx);
	int64_t now;

	if (ok || crl == NULL || (e != X509_V_ERR_CRL_NOT_YET_VALID &&
	    e != X509_V_ERR_CRL_HAS_EXPIRED))
		return ok;
	now = (X509_VERIFY_PARAM_get_flags(param) & X509_V_FLAG_USE_CHECK_TIME) ?
	    (int64_t)X509_VERIFY_PARAM_get_time(param) : (int64_t)time(NULL);
	if (e == X509_V_ERR_CRL_NOT_YET_VALID)
		return asn1_time_unix(X509_CRL_get0_lastUpdate(crl)) -
		    REVOCATION_SKEW <= now;
	return X509_CRL_get0_nextUpdate(crl) != NULL &&
	    asn1_time_unix(X509_CRL_get0_nextUpdate(crl)) + REVOCATION_SKEW >=
	    now;
}

/* CRL_CHECK covers the leaf; intermediates are checked against any CRL
 * we hold from their issuer. */
static int
check_ca_revocation(const struct mtls_config *cfg, STACK_OF(X509) *chain,
    struct mtls_error *err)
{
	X509_REVOKED *rev;
	char label[256];
	int i, j;

	for (i = 1; cfg->crls != NULL && i + 1 < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);
		X509 *iss = sk_X509_value(chain, i + 1);

		for (j = 0; j < sk_X509_CRL_num(cfg->crls); j++) {
			X509_CRL *c = sk_X509_CRL_value(cfg->crls, j);

			if (X509_NAME_cmp(X509_CRL_get_issuer(c),
			    X509_get_subject_name(iss)) != 0 ||
			    X509_CRL_verify(c, X509_get0_pubkey(iss)) != 1)
				continue;
			if (X509_CRL_get0_by_cert(c, &rev, x) == 1) {
				cert_label(x, label, sizeof(label));
				return error_fail(err, MTLS_FAIL_REVOKED,
				    "CA certificate %s is revoked", label);
			}
		}
	}
	ERR_clear_error();
	return 0;
}

static void
ids_join(const struct ids *ids, char *buf, size_t len)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < ids->n && off + 1 < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
		    i ? ", " : "", ids->v[i]);
	if (ids->n == 0)
		snprintf(buf, len, "(none)");
}

/* Checks the expect and allow rules against <ids>. */
int
verify_authorize(const struct mtls_config *cfg, const struct ids *ids,
    struct mtls_error *err)
{
	char found[512];
	size_t i;

	for (i = 0; i < cfg->n_expect; i++)
		if (rules_match_ids(&cfg->expect[i], 1, ids, RULE_EXPECT) < 0) {
			ids_join(ids, found, sizeof(found));
			return error_fail(err, MTLS_FAIL_IDENTITY_MISMATCH,
			    "expected %s, found %s", cfg->expect[i], found);
		}
	if (!cfg->allow_any && cfg->n_allow > 0 &&
	    rules_match_ids(cfg->allow, cfg->n_allow, ids, 0) < 0) {
		ids_join(ids, found, sizeof(found));
		return error_fail(err, MTLS_FAIL_NOT_AUTHORIZED,
		    "%s matches no allow rule", found);
	}
	return 0;
}

/* A certificate whose issuer is another name: an intermediate (or a leaf)
 * the operator chose to trust directly. A self-issued one that OpenSSL
 * does not take as self-signed (a bad signature, an AKI naming another
 * key) is a broken root, never an anchor. */
static int
not_self_issued(X509 *x)
{
	return X509_NAME_cmp(X509_get_subject_name(x),
	    X509_get_issuer_name(x)) != 0;
}

static int
trust_has_intermediate(const struct mtls_config *cfg)
{
	int i;

	for (i = 0; cfg->trust != NULL && i < sk_X509_num(cfg->trust); i++)
		if (not_self_issued(sk_X509_value(cfg->trust, i)))
			return 1;
	return 0;
}

/* After a partial-chain success: the chain ends at such a certificate. */
static int
anchor_not_self_issued(X509_STORE_CTX *ctx)
{
	STACK_OF(X509) *ch = X509_STORE_CTX_get0_chain(ctx);
	X509 *top = ch ? sk_X509_value(ch, sk_X509_num(ch) - 1) : NULL;

	return top != NULL && (cert_is_self_signed(top) ||
	    (not_self_issued(top) && X509_get0_authority_key_id(top) != NULL));
}

/*
 * RFC 5280 4.1.2.5: the validity period includes notAfter itself;
 * OpenSSL counts that second as expired. And CRL dates get
 * REVOCATION_SKEW (crl_skew_cb). Nothing else is overridden.
 */
static int
verify_cb(int ok, X509_STORE_CTX *ctx)
{
	X509 *x = X509_STORE_CTX_get_current_cert(ctx);
	X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
	time_t now;

	if (!ok && (X509_STORE_CTX_get_error(ctx) ==
	    X509_V_ERR_CRL_NOT_YET_VALID || X509_STORE_CTX_get_error(ctx) ==
	    X509_V_ERR_CRL_HAS_EXPIRED))
		return crl_skew_cb(ok, ctx);
	if (ok || X509_STORE_CTX_get_error(ctx) != X509_V_ERR_CERT_HAS_EXPIRED ||
	    x == NULL)
		return ok;
	now = (X509_VERIFY_PARAM_get_flags(vp) & X509_V_FLAG_USE_CHECK_TIME) ?
	    X509_VERIFY_PARAM_get_time(vp) : time(NULL);
	if (asn1_time_unix(X509_get0_notAfter(x)) == (int64_t)now) {
		X509_STORE_CTX_set_error(ctx, X509_V_OK);
		return 1;
	}
	return ok;
}

/* Our policy on a path OpenSSL validated (out->chain, leaf first). */
static int
check_policy(const struct mtls_config *cfg, X509 *leaf,
    struct verify_out *out, struct mtls_error *err)
{
	if (check_strength(out->chain, err) != 0 ||
	    check_svid(leaf, &out->ids, err) != 0 ||
	    check_rfc5280(out->chain, err) != 0)
		return -1;
	if (check_scope(cfg, out->chain, &out->ids, err) != 0 ||
	    check_trust_domain(cfg, out->chain, &out->ids, err) != 0 ||
	    check_ca_revocation(cfg, out->chain, err) != 0)
		return -1;
	return 0;
}

/* Path validation and our policy, against <store>, or against the
 * certificates of <own> alone when it is given (verify_path). */
static int
verify_path_with(const struct mtls_config *cfg, X509_STORE *store,
    STACK_OF(X509) *own, STACK_OF(X509) *certs, int purpose,
    struct verify_out *out, struct mtls_error *err)
{
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	X509_VERIFY_PARAM *param;
	X509 *leaf;
	int rv = -1, j, partial, e;

	memset(out, 0, sizeof(*out));
	error_clear(err);
	if (certs == NULL || sk_X509_num(certs) == 0)
		return error_fail(err, MTLS_FAIL_NO_CLIENT_CERT,
		    "no certificate was presented");
	leaf = sk_X509_value(certs, 0);
	serial_hex(X509_get0_serialNumber(leaf), out->serial,
	    sizeof(out->serial));
	if (ids_from_cert(leaf, &out->ids, err) != 0)
		return -1;
	if ((untrusted = sk_X509_new_null()) == NULL ||
	    (ctx = X509_STORE_CTX_new()) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (j = 1; j < sk_X509_num(certs); j++)
		if (!sk_X509_push(untrusted, sk_X509_value(certs, j)))
			goto nomem;
	for (j = 0; cfg->untrusted && j < sk_X509_num(cfg->untrusted); j++)
		if (!sk_X509_push(untrusted, sk_X509_value(cfg->untrusted, j)))
			goto nomem;
	for (partial = 0;; partial = 1) {
		if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted))
			goto nomem;
		if (own != NULL)
			X509_STORE_CTX_set0_trusted_stack(ctx, own);
		param = X509_STORE_CTX_get0_param(ctx);
		if (cfg->verify_time)
			X509_VERIFY_PARAM_set_time(param,
			    (time_t)cfg->verify_time);
		if (purpose == MTLS_PURPOSE_SERVER)
			X509_STORE_CTX_set_purpose(ctx,
			    X509_PURPOSE_SSL_SERVER);
		else if (purpose == MTLS_PURPOSE_CLIENT)
			X509_STORE_CTX_set_purpose(ctx,
			    X509_PURPOSE_SSL_CLIENT);
		/* RFC 5280 as written: basicConstraints critical in CAs,
		 * AKI/SKI present, no keyCertSign in a leaf, a non-critical
		 * SAN only beside a subject, named curves only. */
		X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
		X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT |
		    (partial ? X509_V_FLAG_PARTIAL_CHAIN : 0));
		if (cfg->crls != NULL && sk_X509_CRL_num(cfg->crls) > 0) {
			X509_STORE_CTX_set0_crls(ctx, cfg->crls);
			X509_VERIFY_PARAM_set_flags(param,
			    X509_V_FLAG_CRL_CHECK);
		}
		if (X509_verify_cert(ctx) == 1 &&
		    (!partial || anchor_not_self_issued(ctx))) {
			error_clear(err);
			break;
		}
		e = X509_STORE_CTX_get_error(ctx);
		if (!partial)
			map_error(cfg, ctx, err);
		/* A trust anchor need not be self-signed (RFC 5280 6.1: the
		 * anchor is whatever the relying party trusts): when no path
		 * reaches a root, try once more ending at any certificate
		 * of the bundle. Only then, so that a full path, with the
		 * root's name constraints and CRL over the intermediate, is
		 * always preferred. The first attempt's reason is kept. */
		if (partial || !trust_has_intermediate(cfg) ||
		    (e != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT &&
		    e != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY))
			goto out;
		X509_STORE_CTX_cleanup(ctx);
	}
	if ((out->chain = X509_STORE_CTX_get1_chain(ctx)) == NULL)
		goto nomem;
	if (check_policy(cfg, leaf, out, err) != 0)
		goto out;
	rv = 0;
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted);
	if (rv != 0) {
		sk_X509_pop_free(out->chain, X509_free);
		out->chain = NULL;
	}
	return rv;
}

/*
 * Everything but the identity rules: path validation and our policy.
 * OpenSSL builds one path, preferring an issuer from the trust store: a
 * partner's bundle can hold a certificate that its root issued to the
 * name and key of one of our intermediates (or roots), and then the path
 * of our own client ends at the partner's root and fails
 * trust_domain_mismatch. A partner may not take our identities away any
 * more than it may give them: on that failure the path is built once
 * more on our own anchors alone (without any federated one), which is
 * exactly the verification of a config without federation. The first
 * reason is kept when that fails too.
 */
int
verify_path(const struct mtls_config *cfg, X509_STORE *store,
    STACK_OF(X509) *certs, int purpose, struct verify_out *out,
    struct mtls_error *err)
{
	STACK_OF(X509) *own;
	struct mtls_error first;
	int i;

	if (verify_path_with(cfg, store, NULL, certs, purpose, out, err) == 0)
		return 0;
	if (err->code != MTLS_ERR_VERIFY ||
	    err->fail != MTLS_FAIL_TRUST_DOMAIN_MISMATCH)
		return -1;
	first = *err;
	if ((own = sk_X509_new_null()) == NULL)
		return -1;
	for (i = 0; cfg->trust != NULL && i < sk_X509_num(cfg->trust); i++)
		if (verify_fed_td(cfg, sk_X509_value(cfg->trust, i)) == NULL &&
		    !sk_X509_push(own, sk_X509_value(cfg->trust, i))) {
			sk_X509_free(own);
			return -1;
		}
	if (sk_X509_num(own) > 0) {
		verify_out_free(out);
		if (verify_path_with(cfg, store, own, certs, purpose, out,
		    err) == 0) {
			sk_X509_free(own);
			return 0;
		}
		*err = first;
	}
	sk_X509_free(own);
	return -1;
}

int
verify_chain(const struct mtls_config *cfg, X509_STORE *store,
    STACK_OF(X509) *certs, int purpose, struct verify_out *out,
    struct mtls_error *err)
{
	if (verify_path(cfg, store, certs, purpose, out, err) != 0)
		return -1;
	if (verify_authorize(cfg, &out->ids, err) != 0) {
		sk_X509_pop_free(out->chain, X509_free);
		out->chain = NULL;
		return -1;
	}
	return 0;
}

/*
 * <leaf> on <path> (issuer first, anchor last), a CA path that
 * verify_chain validated with a leaf of that issuer (out->chain minus its
 * leaf): everything verify_chain checks that depends on the leaf, without
 * verifying the path's own certificates again (ca serve's self-check,
 * issue.c; docs/security/selfcheck.md lists the checks). OpenSSL validates
 * [leaf, issuer] with the issuer as the one trusted certificate (partial
 * chain): the leaf's signature under the issuer's key, issuer name and
 * key identifier, the issuer's keyCertSign, both validity windows, the
 * leaf's extensions under X509_STRICT, the issuer's name constraints (and
 * the CN against them), CRLs when <cfg> has some. The name constraints of
 * the CAs above the issuer are OpenSSL's NAME_CONSTRAINTS_check and
 * _check_CN on the leaf, as its path validation applies them to a leaf,
 * and their validity windows are checked at <cfg>'s time;
 * then our whole policy on the whole chain, and the rules, as
 * verify_chain does.
 */
int
verify_leaf_on_path(const struct mtls_config *cfg, X509_STORE *store,
    STACK_OF(X509) *path, X509 *leaf, struct verify_out *out,
    struct mtls_error *err)
{
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *trusted = NULL, *got;
	X509_VERIFY_PARAM *param;
	NAME_CONSTRAINTS *nc;
	char label[256];
	int i, rv = -1, e;

	memset(out, 0, sizeof(*out));
	error_clear(err);
	if (leaf == NULL || path == NULL || sk_X509_num(path) == 0)
		return error_fail(err, MTLS_FAIL_NO_CLIENT_CERT,
		    "no certificate or no verified CA path");
	serial_hex(X509_get0_serialNumber(leaf), out->serial,
	    sizeof(out->serial));
	if (ids_from_cert(leaf, &out->ids, err) != 0)
		return -1;
	if ((trusted = sk_X509_new_null()) == NULL ||
	    !sk_X509_push(trusted, sk_X509_value(path, 0)) ||
	    (ctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(ctx, store, leaf, NULL))
		goto nomem;
	X509_STORE_CTX_set0_trusted_stack(ctx, trusted);
	param = X509_STORE_CTX_get0_param(ctx);
	if (cfg->verify_time)
		X509_VERIFY_PARAM_set_time(param, (time_t)cfg->verify_time);
	X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT |
	    X509_V_FLAG_PARTIAL_CHAIN);
	if (cfg->crls != NULL && sk_X509_CRL_num(cfg->crls) > 0) {
		X509_STORE_CTX_set0_crls(ctx, cfg->crls);
		X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
	}
	if (X509_verify_cert(ctx) != 1) {
		map_error(cfg, ctx, err);
		goto out;
	}
	got = X509_STORE_CTX_get0_chain(ctx);
	if (sk_X509_num(got) != 2 ||
	    X509_cmp(sk_X509_value(got, 1), sk_X509_value(path, 0)) != 0) {
		cert_label(leaf, label, sizeof(label));
		error_fail(err, MTLS_FAIL_UNKNOWN_CA, "leaf %s is not issued "
		    "by the CA of the verified path", label);
		goto out;
	}
	for (i = 1; i < sk_X509_num(path); i++) {
		X509 *ca = sk_X509_value(path, i);
		int64_t now = verify_now(cfg);

		/* the path's validity, as now as the leaf's (notAfter
		 * itself still valid: verify_cb) */
		if (asn1_time_unix(X509_get0_notAfter(ca)) < now ||
		    asn1_time_unix(X509_get0_notBefore(ca)) > now) {
			cert_label(ca, label, sizeof(label));
			error_fail(err, asn1_time_unix(X509_get0_notAfter(ca)) <
			    now ? MTLS_FAIL_CERT_EXPIRED :
			    MTLS_FAIL_CERT_NOT_YET_VALID, "CA certificate %s "
			    "is outside its validity period", label);
			goto out;
		}
		nc = X509_get_ext_d2i(ca, NID_name_constraints, NULL, NULL);
		if (nc == NULL)
			continue;
		e = NAME_CONSTRAINTS_check(leaf, nc);
		if (e == X509_V_OK)
			e = NAME_CONSTRAINTS_check_CN(leaf, nc);
		NAME_CONSTRAINTS_free(nc);
		if (e != X509_V_OK) {
			cert_label(ca, label, sizeof(label));
			error_fail(err, MTLS_FAIL_NAME_CONSTRAINTS, "a name of "
			    "the leaf is outside the name constraints of CA "
			    "%s: %s", label, X509_verify_cert_error_string(e));
			goto out;
		}
	}
	if ((out->chain = sk_X509_new_null()) == NULL ||
	    !sk_X509_push(out->chain, leaf))
		goto nomem;
	X509_up_ref(leaf);
	for (i = 0; i < sk_X509_num(path); i++) {
		if (!sk_X509_push(out->chain, sk_X509_value(path, i)))
			goto nomem;
		X509_up_ref(sk_X509_value(path, i));
	}
	if (check_policy(cfg, leaf, out, err) != 0 ||
	    verify_authorize(cfg, &out->ids, err) != 0)
		goto out;
	rv = 0;
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	X509_STORE_CTX_free(ctx);
	sk_X509_free(trusted);
	if (rv != 0) {
		sk_X509_pop_free(out->chain, X509_free);
		out->chain = NULL;
	}
	ERR_clear_error();
	return rv;
}
