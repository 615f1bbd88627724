/*
 * The roots the agent trusts the CA server by: GET /v1/bundle (pinned, or
 * verified by bundle.pem), checked by the bundle rule before anything is
 * written, and --ca-bundle copied into out-dir.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "agent/agent_local.h"

/*
 * The certificates trusted now (*out, caller frees): the pinned root during
 * an enrollment (<trust> TRUST_PIN), else out-dir/bundle.pem.
 */
int
bundle_current(struct agent *a, enum trust trust, STACK_OF(X509) **out,
    struct mtls_error *err)
{
	*out = NULL;
	if (trust != TRUST_PIN)
		return certs_load(a->bundle, out, err);
	if (a->pinned == NULL || (*out = sk_X509_new_null()) == NULL ||
	    !X509_up_ref(a->pinned))
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (!sk_X509_push(*out, a->pinned)) {
		X509_free(a->pinned);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	return 0;
}

/* <x> is byte for byte one of <sk>. */
static int
sk_has(STACK_OF(X509) *sk, X509 *x)
{
	int i;

	for (i = 0; i < sk_X509_num(sk); i++)
		if (X509_cmp(sk_X509_value(sk, i), x) == 0)
			return 1;
	return 0;
}

/* <x> is within its validity now; a time OpenSSL cannot read (0 from
 * X509_cmp_current_time) is not. */
static int
valid_now(X509 *x)
{
	return X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
	    X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
}

/* Why a certificate is not vouched for: */
enum vouch { VOUCH_OK, VOUCH_NONE, VOUCH_EXPIRED };

/* <c> is a CA certificate, valid now, signed by a self-signed root of
 * <cur> (checked with that root's key, not by name) that is valid now
 * too: an expired root vouches for nothing (its key may since have been
 * thrown away, or leaked, unwatched). VOUCH_EXPIRED when only validity
 * (of <c> or of its signer) is missing. */
static enum vouch
signed_by_current_root(STACK_OF(X509) *cur, X509 *c)
{
	enum vouch v = VOUCH_NONE;
	X509 *t;
	int i;

	if (X509_check_ca(c) < 1)
		return VOUCH_NONE;
	for (i = 0; i < sk_X509_num(cur); i++) {
		t = sk_X509_value(cur, i);
		if (!cert_is_self_signed(t) || !cert_issued_by(t, c))
			continue;
		if (valid_now(t) && valid_now(c))
			return VOUCH_OK;
		v = VOUCH_EXPIRED;
	}
	return v;
}

/*
 * <c> constrains nothing a root would not: no path length, and no
 * extension but basic constraints, key usage, key identifiers, CRL and
 * AIA pointers. Every intermediate is "a CA certificate signed by a current
 * root" for its own name and key: taken as the cross-certificate of a
 * self-signed twin its key holder makes, it would turn a scoped CA (name
 * constraints, the SPIFFE scope extension, pathlen 0) into a root of
 * bundle.pem that nothing constrains. Our crosses carry none of these.
 */
static int
unconstrained(X509 *c)
{
	static const int ok[] = { NID_basic_constraints, NID_key_usage,
	    NID_subject_key_identifier, NID_authority_key_identifier,
	    NID_crl_distribution_points, NID_info_access };
	int i, k, nid, allowed;

	if (X509_get_pathlen(c) >= 0)
		return 0;
	for (i = 0; i < X509_get_ext_count(c); i++) {
		nid = OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(c,
		    i)));
		for (allowed = 0, k = 0; k < (int)(sizeof(ok) / sizeof(ok[0]));
		    k++)
			allowed |= nid == ok[k];
		if (!allowed)
			return 0;
	}
	return 1;
}

/* <fresh> carries a cross-certificate for root <r>: <r>'s subject and
 * public key, unconstrained, signed by a root of <cur>; both valid now, as
 * is <r>. */
static enum vouch
has_cross(STACK_OF(X509) *cur, STACK_OF(X509) *fresh, X509 *r)
{
	enum vouch v = VOUCH_NONE, w;
	X509 *c;
	int i;

	for (i = 0; i < sk_X509_num(fresh); i++) {
		c = sk_X509_value(fresh, i);
		if (cert_is_self_signed(c) || X509_NAME_cmp(
		    X509_get_subject_name(c), X509_get_subject_name(r)) != 0 ||
		    EVP_PKEY_eq(X509_get0_pubkey(c), X509_get0_pubkey(r)) != 1 ||
		    !unconstrained(c))
			continue;
		if ((w = signed_by_current_root(cur, c)) == VOUCH_OK) {
			v = valid_now(r) ? VOUCH_OK : VOUCH_EXPIRED;
			break;
		}
		if (w == VOUCH_EXPIRED)
			v = VOUCH_EXPIRED;
	}
	ERR_clear_error();
	return v;
}

/* A refused bundle: one log line naming the certificate, err set. */
static int
bundle_rejected(struct agent *a, X509 *x, const char *why,
    struct mtls_error *err)
{
	json_t *o = json_object();
	char fp[65] = "(none)", subj[160] = "";

	if (x != NULL) {
		if (call_fp(x, fp) != 0)
			snprintf(fp, sizeof(fp), "(none)");
		X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
	}
	json_object_set_new(o, "ca_url", esc_jstr(a->o->ca_url));
	json_object_set_new(o, "sha256", esc_jstr(fp));
	json_object_set_new(o, "subject", esc_jstr(subj));
	json_object_set_new(o, "reason", esc_jstr(why));
	json_object_set_new(o, "bundle", esc_jstr(a->bundle));
	log_emit("error", "bundle_rejected", o);
	json_decref(o);
	return error_fail(err, MTLS_FAIL_UNKNOWN_CA, "the CA's bundle was "
	    "refused, nothing written: sha256:%.16s... (%.60s) is %s (check "
	    "--ca-url; a CA adding a root sends it cross-signed by a current "
	    "one)", fp, subj, why);
}

/*
 * The bundle rule (docs/security/agent.md): a verified answer's bundle
 * <fresh> may differ from the trusted <cur> only by what a current root
 * vouches for. A certificate already in <cur> stays; a new root needs a
 * cross-certificate in <fresh> (its subject and key, a CA, valid, signed by
 * a root of <cur>); any other new certificate must itself be such a
 * certificate. The vouching root, the cross-certificate and the new root
 * are valid now: a root of <cur> that has expired vouches for nothing.
 * At least one root. Passing TLS under a current root (a sibling CA's
 * server does) is not enough to add a root; holding a current, unexpired
 * root's key is.
 */
static int
bundle_check(struct agent *a, STACK_OF(X509) *cur, STACK_OF(X509) *fresh,
    struct mtls_error *err)
{
	enum vouch v;
	X509 *x;
	int i, roots = 0, self;

	for (i = 0; i < sk_X509_num(fresh); i++) {
		x = sk_X509_value(fresh, i);
		if ((self = cert_is_self_signed(x)))
			roots++;
		if (sk_has(cur, x))
			continue;
		v = self ? has_cross(cur, fresh, x) :
		    signed_by_current_root(cur, x);
		if (v == VOUCH_EXPIRED)
			return bundle_rejected(a, x, self ? "a new root vouched "
			    "for only by an expired root or cross-certificate "
			    "(or itself expired)" : "signed only by an expired "
			    "root (or itself expired)", err);
		if (v != VOUCH_OK)
			return bundle_rejected(a, x, self ?
			    "a new root without an unconstrained "
			    "cross-certificate from a trusted root" :
			    "not a root, nor signed by a trusted root", err);
	}
	if (roots == 0)
		return bundle_rejected(a, NULL, "empty: no root", err);
	return 0;
}

/*
 * GET /v1/bundle trusting per <trust>; with a->pin set the answer must hold
 * that root, and *pinned (when not NULL) gets a reference to it. Our PEM
 * of the certificates parsed from the answer goes to *pem (caller frees;
 * whatever else the answer held, other PEM blocks, text, escape bytes, is
 * not kept); nothing is written here.
 */
int
bundle_fetch(struct agent *a, enum trust trust, char **pem_out,
    X509 **pinned, struct mtls_error *err)
{
	struct buf b;
	json_t *o = NULL;
	STACK_OF(X509) *roots = NULL, *cur = NULL;
	X509 *match = NULL;
	const char *pem;
	const char *pin = trust == TRUST_BUNDLE ? NULL : a->pin;
	char fp[65], found[65] = "", why[64];
	size_t pl;
	int st, i, n_other = 0, rv = -1;

	*pem_out = NULL;
	if ((st = call_ca(a, "GET", "/v1/bundle", NULL, trust, 0, &b, err)) < 0)
		return -1;
	if (st != 200) {
		call_api_error(err, st, "GET /v1/bundle", &b);
		goto out;
	}
	o = json_loads(b.p, 0, NULL);
	if ((pem = json_string_value(json_object_get(o, "bundle"))) == NULL) {
		error_set(err, MTLS_ERR_PARSE, "GET /v1/bundle: no \"bundle\" "
		    "in the answer");
		goto out;
	}
	if (certs_parse((const uint8_t *)pem, strlen(pem), "the CA's bundle",
	    &roots, err) != 0)
		goto out;
	for (i = 0; pin != NULL && i < sk_X509_num(roots); i++) {
		if (call_fp(sk_X509_value(roots, i), fp) != 0)
			continue;
		if (strcmp(fp, pin) == 0 && match == NULL)
			match = sk_X509_value(roots, i);
		else if (found[0] == '\0')
			memcpy(found, fp, sizeof(found));
		else
			n_other++;
	}
	if (pin != NULL && match == NULL) {
		snprintf(why, sizeof(why), "its bundle lacks it; %d more "
		    "roots", n_other);
		call_pin_mismatch(a, found[0] ? found : "(none)", why, err);
		/* the usual cause after a root rotation's retire, and the
		 * fix, within the message's 256 bytes (URL and counts are in
		 * the pin_mismatch line) */
		error_fail(err, MTLS_FAIL_UNKNOWN_CA, "root pin mismatch: want "
		    "sha256:%s, got sha256:%s (bundle lacks it; root rotated? "
		    "new token: mtls ca token create)", pin, found[0] ? found :
		    "(none)");
		goto out;
	}
	/* a verified answer may change what we trust only as a current root
	 * allows (the unverified probe only yields the pinned root's DER) */
	if (trust != TRUST_NONE && (bundle_current(a, trust, &cur, err) != 0 ||
	    bundle_check(a, cur, roots, err) != 0))
		goto out;
	if (certs_pem(roots, pem_out, &pl) != 0) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (pinned != NULL && X509_up_ref(match))
		*pinned = match;
	rv = 0;
 out:
	sk_X509_pop_free(roots, X509_free);
	sk_X509_pop_free(cur, X509_free);
	json_decref(o);
	free(b.p);
	return rv;
}

/* --ca-bundle: the operator's roots for the CA server, copied into out-dir
 * (a token's pin decides instead when enrolling) as our PEM of the
 * certificates it holds, like every bundle.pem; without it, renewals need
 * the bundle.pem an enrollment wrote. */
int
bundle_copy(struct agent *a, struct mtls_error *err)
{
	STACK_OF(X509) *certs = NULL;
	char *pem = NULL;
	size_t len;
	int rv = -1;

	if (a->o->ca_bundle == NULL)
		return access(a->bundle, R_OK) == 0 ? 0 : error_set(err,
		    MTLS_ERR_ARG, "%s: no roots to verify the CA server by: "
		    "give --ca-bundle", a->bundle);
	if (certs_load(a->o->ca_bundle, &certs, err) != 0)
		return -1;
	if (certs_pem(certs, &pem, &len) != 0)
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
	else if (a->o->layout_k8s) {
		const struct kfile f = { "ca.crt", pem, len, NULL };

		rv = files_k8s_swap(a, &f, 1, 0, err);
	} else
		rv = fs_write_atomic(a->bundle, pem, len, 0644, 1, err);
	free(pem);
	sk_X509_pop_free(certs, X509_free);
	return rv;
}
