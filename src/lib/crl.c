/*
 * CRL building (RFC 5280 5): v2, CRL number, AKI, reason codes; and the
 * checks a CRL passes before it is installed (issuer, signature, time,
 * number).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "internal.h"

static const char *reasons[] = {
	[CRL_REASON_UNSPECIFIED] = "unspecified",
	[CRL_REASON_KEY_COMPROMISE] = "keyCompromise",
	[CRL_REASON_CA_COMPROMISE] = "cACompromise",
	[CRL_REASON_AFFILIATION_CHANGED] = "affiliationChanged",
	[CRL_REASON_SUPERSEDED] = "superseded",
	[CRL_REASON_CESSATION_OF_OPERATION] = "cessationOfOperation",
	[CRL_REASON_CERTIFICATE_HOLD] = "certificateHold",
	[CRL_REASON_REMOVE_FROM_CRL] = NULL,
	[CRL_REASON_PRIVILEGE_WITHDRAWN] = "privilegeWithdrawn",
	[CRL_REASON_AA_COMPROMISE] = "aACompromise",
};

int
crl_reason_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i] != NULL && strcasecmp(s, reasons[i]) == 0)
			return (int)i;
	return -1;
}

const char *
crl_reason_name(int r)
{
	if (r < 0 || (size_t)r >= sizeof(reasons) / sizeof(reasons[0]) ||
	    reasons[r] == NULL)
		return "unspecified";
	return reasons[r];
}

int
crl_build(X509 *ca, EVP_PKEY *key, const struct crl_entry *ents, size_t n,
    int64_t number, int64_t this_update, int64_t next_update,
    X509_CRL **out, struct mtls_error *err)
{
	X509_CRL *crl = NULL;
	ASN1_TIME *t = NULL;
	ASN1_INTEGER *num = NULL;
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	size_t i;
	int rv = -1;

	*out = NULL;
	if ((crl = X509_CRL_new()) == NULL || (t = ASN1_TIME_new()) == NULL)
		goto nomem;
	if (!X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)))
		goto nomem;
	if (!ASN1_TIME_set(t, (time_t)this_update) ||
	    !X509_CRL_set1_lastUpdate(crl, t) ||
	    !ASN1_TIME_set(t, (time_t)next_update) ||
	    !X509_CRL_set1_nextUpdate(crl, t))
		goto nomem;
	for (i = 0; i < n; i++) {
		X509_REVOKED *rev = X509_REVOKED_new();
		ASN1_INTEGER *sn = NULL;
		ASN1_ENUMERATED *rc = NULL;
		BIGNUM *bn = NULL;
		int ok;

		ok = rev != NULL && BN_hex2bn(&bn, ents[i].serial_hex) > 0 &&
		    (sn = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
		    X509_REVOKED_set_serialNumber(rev, sn) &&
		    ASN1_TIME_set(t, (time_t)ents[i].revoked_at) &&
		    X509_REVOKED_set_revocationDate(rev, t);
		if (ok && ents[i].reason != CRL_REASON_UNSPECIFIED) {
			ok = (rc = ASN1_ENUMERATED_new()) != NULL &&
			    ASN1_ENUMERATED_set(rc, ents[i].reason) &&
			    X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, rc,
			    0, 0);
		}
		ASN1_ENUMERATED_free(rc);
		ASN1_INTEGER_free(sn);
		BN_free(bn);
		if (!ok || !X509_CRL_add0_revoked(crl, rev)) {
			X509_REVOKED_free(rev);
			error_set_ossl(err, MTLS_ERR_ARG,
			    "CRL entry %s cannot be encoded", ents[i].serial_hex);
			goto err;
		}
	}
	if ((num = ASN1_INTEGER_new()) == NULL ||
	    !ASN1_INTEGER_set_int64(num, number) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
		goto nomem;
	X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier,
	    "keyid:always");
	if (ext == NULL || !X509_CRL_add_ext(crl, ext, -1)) {
		X509_EXTENSION_free(ext);
		error_set_ossl(err, MTLS_ERR_CRYPTO, "CRL: cannot add AKI");
		goto err;
	}
	X509_EXTENSION_free(ext);
	if (!X509_CRL_sort(crl))
		goto nomem;
	if (!X509_CRL_sign(crl, key, sign_digest(key))) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "CRL: cannot sign");
		goto err;
	}
	*out = crl;
	crl = NULL;
	rv = 0;
	goto err;
 nomem:
	error_set_ossl(err, MTLS_ERR_NOMEM, "CRL: out of memory");
 err:
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	return rv;
}

/* ---- checks before a CRL is installed ---- */

static const char *verdicts[CRL_VERDICT__COUNT] = {
	[CRL_OK] = "ok",
	[CRL_MALFORMED] = "crl_malformed",
	[CRL_UNKNOWN_ISSUER] = "crl_unknown_issuer",
	[CRL_BAD_SIGNATURE] = "crl_bad_signature",
	[CRL_NOT_YET_VALID] = "crl_not_yet_valid",
	[CRL_EXPIRED] = "crl_expired",
	[CRL_ROLLBACK] = "crl_rollback",
};

const char *
crl_verdict_name(int v)
{
	if (v < 0 || v >= CRL_VERDICT__COUNT)
		return "crl_unknown";
	return verdicts[v];
}

/* RFC 5280 6.3.3 (f): the CRL issuer's keyUsage, when present, has
 * cRLSign; and it is a CA (a leaf of ours never signs a CRL). */
static int
may_sign_crl(X509 *x)
{
	if (X509_check_ca(x) == 0)
		return 0;
	if ((X509_get_extension_flags(x) & EXFLAG_KUSAGE) &&
	    !(X509_get_key_usage(x) & KU_CRL_SIGN))
		return 0;
	return 1;
}

/* 1 when <x> (not an anchor) chains to <trust> through <others> at <now>;
 * <st> is built on first use. No CRL check: this is about who signs CRLs. */
static int
chains_to(X509 *x, X509_STORE **st, STACK_OF(X509) *trust,
    STACK_OF(X509) *others, int64_t now)
{
	X509_STORE_CTX *ctx;
	int i, ok = 0;

	if (*st == NULL) {
		if ((*st = X509_STORE_new()) == NULL)
			return 0;
		for (i = 0; i < sk_X509_num(trust); i++)
			if (!X509_STORE_add_cert(*st, sk_X509_value(trust, i)))
				return 0;
	}
	if ((ctx = X509_STORE_CTX_new()) == NULL)
		return 0;
	if (X509_STORE_CTX_init(ctx, *st, x, others)) {
		X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx),
		    (time_t)now);
		ok = X509_verify_cert(ctx) == 1;
	}
	X509_STORE_CTX_free(ctx);
	return ok;
}

/*
 * The CA that signed <crl>: a certificate of <trust>, or one of <others>
 * chaining to <trust>, with the CRL's issuer name, allowed to sign CRLs,
 * whose key verifies it. *named says whether any usable CA had the name.
 */
static X509 *
crl_signer(X509_CRL *crl, STACK_OF(X509) *trust, STACK_OF(X509) *others,
    X509_STORE **st, int64_t now, int *named)
{
	const X509_NAME *iss = X509_CRL_get_issuer(crl);
	STACK_OF(X509) *sets[2] = { trust, others };
	int s, i;

	*named = 0;
	for (s = 0; s < 2; s++) {
		for (i = 0; sets[s] != NULL && i < sk_X509_num(sets[s]); i++) {
			X509 *x = sk_X509_value(sets[s], i);

			if (X509_NAME_cmp(X509_get_subject_name(x), iss) != 0 ||
			    !may_sign_crl(x))
				continue;
			if (s == 1 && (trust == NULL ||
			    !chains_to(x, st, trust, others, now)))
				continue;
			*named = 1;
			if (X509_CRL_verify(crl, X509_get0_pubkey(x)) == 1)
				return x;
		}
	}
	ERR_clear_error();
	return NULL;
}

/* -1, 0, 1 as <a>'s CRL number is below, equal to or above <b>'s; 2 when
 * either has none. */
static int
number_cmp(X509_CRL *a, X509_CRL *b)
{
	ASN1_INTEGER *na = X509_CRL_get_ext_d2i(a, NID_crl_number, NULL, NULL);
	ASN1_INTEGER *nb = X509_CRL_get_ext_d2i(b, NID_crl_number, NULL, NULL);
	int r = 2;

	if (na != NULL && nb != NULL) {
		r = ASN1_INTEGER_cmp(na, nb);
		r = r < 0 ? -1 : r > 0;
	}
	ASN1_INTEGER_free(na);
	ASN1_INTEGER_free(nb);
	return r;
}

static void
number_text(X509_CRL *c, char *buf, size_t len)
{
	ASN1_INTEGER *n = X509_CRL_get_ext_d2i(c, NID_crl_number, NULL, NULL);
	BIGNUM *bn = n ? ASN1_INTEGER_to_BN(n, NULL) : NULL;
	char *dec = bn ? BN_bn2dec(bn) : NULL;

	snprintf(buf, len, "%s", dec ? dec : "none");
	OPENSSL_free(dec);
	BN_free(bn);
	ASN1_INTEGER_free(n);
}

/* 1 when <a> and <b> encode to the same bytes (X509_CRL_match compares a
 * hash kept only by CRLs that were parsed, not built). */
static int
same_der(X509_CRL *a, X509_CRL *b)
{
	unsigned char *da = NULL, *db = NULL;
	int la = i2d_X509_CRL(a, &da), lb = i2d_X509_CRL(b, &db), r;

	r = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
	OPENSSL_free(da);
	OPENSSL_free(db);
	return r;
}

/*
 * RFC 5280 5.2.3: the CRL number increases with every CRL an issuer
 * publishes (complete and delta CRLs share the sequence). A lower number
 * than the installed one's is a replay. An equal number with other bytes,
 * or a CRL without a number, is compared by thisUpdate: not older is
 * accepted (a CA re-signing the same list), older is a rollback.
 */
static int
rollback(X509_CRL *c, X509 *signer, STACK_OF(X509_CRL) *installed,
    const char *name, const char *issuer, struct mtls_error *err)
{
	char have[64], got[64];
	int i, r;

	for (i = 0; installed != NULL && i < sk_X509_CRL_num(installed); i++) {
		X509_CRL *o = sk_X509_CRL_value(installed, i);

		if (X509_NAME_cmp(X509_CRL_get_issuer(o),
		    X509_CRL_get_issuer(c)) != 0 ||
		    X509_CRL_verify(o, X509_get0_pubkey(signer)) != 1)
			continue;
		if (same_der(o, c))
			continue;
		r = number_cmp(c, o);
		if (r == -1 || (r != 1 && asn1_time_unix(
		    X509_CRL_get0_lastUpdate(c)) < asn1_time_unix(
		    X509_CRL_get0_lastUpdate(o)))) {
			number_text(c, got, sizeof(got));
			number_text(o, have, sizeof(have));
			error_set(err, MTLS_ERR_VERIFY, "%s: CRL from %s is "
			    "older than the one in use (CRL number %s, in use "
			    "%s, or an earlier thisUpdate): a replay; publish "
			    "a newer CRL", name, issuer, got, have);
			return CRL_ROLLBACK;
		}
	}
	ERR_clear_error();
	return CRL_OK;
}

static int
check_one(X509_CRL *c, const char *name, STACK_OF(X509) *trust,
    STACK_OF(X509) *others, X509_STORE **st, STACK_OF(X509_CRL) *installed,
    int flags, int64_t now, struct mtls_error *err)
{
	const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(c);
	char issuer[256], ago[64];
	int64_t t;
	X509 *signer;
	int named;

	name_oneline(X509_CRL_get_issuer(c), issuer, sizeof(issuer));
	signer = crl_signer(c, trust, others, st, now, &named);
	if (signer == NULL && named) {
		error_set(err, MTLS_ERR_VERIFY, "%s: CRL signature does not "
		    "verify with the key of CA %s (forged; or the CA has a "
		    "new key: put its certificate in the bundle)", name,
		    issuer);
		return CRL_BAD_SIGNATURE;
	}
	if (signer == NULL && (flags & CRL_CHECK_STRICT)) {
		error_set(err, MTLS_ERR_VERIFY, "%s: CRL issuer %s is no CA "
		    "of the trust bundle or of our chain under it; add the "
		    "CA that signs the CRL to the bundle", name, issuer);
		return CRL_UNKNOWN_ISSUER;
	}
	if (flags & CRL_CHECK_TIME) {
		t = asn1_time_unix(X509_CRL_get0_lastUpdate(c));
		if (t - REVOCATION_SKEW > now) {
			human_duration(t - now, ago, sizeof(ago));
			error_set(err, MTLS_ERR_VERIFY, "%s: CRL from %s is not "
			    "valid for another %s (thisUpdate); check the "
			    "clocks of this host and the CA", name, issuer,
			    ago);
			return CRL_NOT_YET_VALID;
		}
		if (nu != NULL && (t = asn1_time_unix(nu)) + REVOCATION_SKEW <
		    now) {
			human_duration(now - t, ago, sizeof(ago));
			error_set(err, MTLS_ERR_VERIFY, "%s: CRL from %s expired "
			    "%s ago (nextUpdate); publish a current one (mtls "
			    "ca crl)", name, issuer, ago);
			return CRL_EXPIRED;
		}
	}
	if (signer != NULL && installed != NULL)
		return rollback(c, signer, installed, name, issuer, err);
	return CRL_OK;
}

int
crl_check(STACK_OF(X509_CRL) *crls, const char *name, STACK_OF(X509) *trust,
    STACK_OF(X509) *others, STACK_OF(X509_CRL) *installed, int flags,
    int64_t now, struct mtls_error *err)
{
	X509_STORE *st = NULL;
	int i, v = CRL_OK;

	for (i = 0; v == CRL_OK && i < sk_X509_CRL_num(crls); i++)
		v = check_one(sk_X509_CRL_value(crls, i), name, trust, others,
		    &st, installed, flags, now, err);
	X509_STORE_free(st);
	ERR_clear_error();
	return v;
}
