/*
 * The offline half of the doctor: what is wrong with a chain (and its key),
 * shared by `doctor files`, `doctor serve` (the client's chain) and
 * `doctor connect` (the server's chain). Verification itself is libmtls's
 * verify_chain(), so the doctor and the proxy never disagree; this file
 * adds the checks a handshake does not make (order, duplicates, warnings)
 * and the concrete fix for each failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "doctor/doctor.h"

void
finding_add(json_t *findings, const char *severity, const char *code,
    const char *check, const char *fix, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if ((o = json_object()) == NULL)
		return;
	json_object_set_new(o, "severity", esc_jstr(severity));
	json_object_set_new(o, "code", code ? esc_jstr(code) : json_null());
	json_object_set_new(o, "check", esc_jstr(check));
	json_object_set_new(o, "text", esc_jstr(text));
	json_object_set_new(o, "fix", fix ? esc_jstr(fix) : json_null());
	json_array_append_new(findings, o);
}

const char *
findings_result(json_t *findings)
{
	size_t i;
	json_t *f;

	json_array_foreach(findings, i, f) {
		const char *sev = json_string_value(json_object_get(f, "severity"));
		const char *code = json_string_value(json_object_get(f, "code"));

		if (sev && strcmp(sev, "error") == 0)
			return code ? code : "problem";
	}
	return "ok";
}

static int
has_error(json_t *findings, const char *code)
{
	size_t i;
	json_t *f;

	json_array_foreach(findings, i, f) {
		const char *c = json_string_value(json_object_get(f, "code"));

		if (c && strcmp(c, code) == 0)
			return 1;
	}
	return 0;
}

static void
problem(json_t *certj, const char *fmt, ...) MTLS_PRINTF(2, 3);

static void
problem(json_t *certj, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	json_t *a = json_object_get(certj, "problems");

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_array_append_new(a, esc_jstr(buf));
}

static void
subject_of(X509 *x, char *buf, size_t len)
{
	name_oneline(X509_get_subject_name(x), buf, len);
}

/* Index in <chain> of a certificate that issued chain[i] (signature
 * checked), or -1. */
static int
issuer_in(STACK_OF(X509) *chain, int i)
{
	X509 *x = sk_X509_value(chain, i);
	int j;

	for (j = 0; j < sk_X509_num(chain); j++)
		if (j != i && X509_check_issued(sk_X509_value(chain, j), x) ==
		    X509_V_OK && !cert_is_self_signed(x))
			return j;
	return -1;
}

static void
check_order(STACK_OF(X509) *chain, int li, json_t *certs, const char *who,
    json_t *findings)
{
	int i, j, n = sk_X509_num(chain), bad = li != 0;
	char a[200], b[200];

	for (i = 0; i < n; i++)
		for (j = 0; j < i; j++)
			if (X509_cmp(sk_X509_value(chain, i),
			    sk_X509_value(chain, j)) == 0) {
				problem(json_array_get(certs, i), "duplicate of "
				    "certificate %d", j + 1);
				finding_add(findings, "warn", NULL, "duplicates",
				    "remove the repeated certificate from the "
				    "file", "%s chain holds certificate %d twice "
				    "(again as %d)", who, j + 1, i + 1);
			}
	if (li != 0) {
		cert_label(sk_X509_value(chain, li), a, sizeof(a));
		problem(json_array_get(certs, li), "the leaf, but not first");
		finding_add(findings, "warn", NULL, "order", "order the file "
		    "leaf first, then each certificate's issuer (most servers "
		    "send it as it is)", "%s chain is out of order: the leaf "
		    "%s is certificate %d, after a CA certificate", who, a,
		    li + 1);
	}
	for (i = 0; i + 1 < n && !bad; i++) {
		X509 *x = sk_X509_value(chain, i);

		if (cert_is_self_signed(x) || X509_check_issued(
		    sk_X509_value(chain, i + 1), x) == X509_V_OK)
			continue;
		if (X509_cmp(x, sk_X509_value(chain, i + 1)) == 0)
			continue;	/* a duplicate, reported above */
		bad = 1;
		j = issuer_in(chain, i);
		subject_of(x, a, sizeof(a));
		if (j >= 0) {
			subject_of(sk_X509_value(chain, j), b, sizeof(b));
			problem(json_array_get(certs, i), "its issuer '%s' is "
			    "certificate %d, not the next one", b, j + 1);
			finding_add(findings, "warn", NULL, "order", "order the "
			    "file leaf first, then each certificate's issuer",
			    "%s chain is out of order: certificate %d ('%s') "
			    "is issued by certificate %d, not by the next", who,
			    i + 1, a, j + 1);
		} else {
			subject_of(sk_X509_value(chain, i + 1), b, sizeof(b));
			problem(json_array_get(certs, i), "certificate %d after "
			    "it did not issue it", i + 2);
			finding_add(findings, "warn", NULL, "order", "keep only "
			    "the leaf and the intermediates that issued it, in "
			    "order", "certificate %d of %s chain ('%s') is "
			    "followed by '%s', which did not issue it", i + 1,
			    who, a, b);
		}
	}
}

static void
check_validity(STACK_OF(X509) *chain, json_t *certs, int64_t now,
    const char *who, json_t *findings)
{
	static const int64_t warn_days[] = { 1, 3, 7 };
	int i, k, n = sk_X509_num(chain);
	char label[300], d[64], il[300], lim_txt[64];

	for (i = 0; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);
		int64_t nb = asn1_time_unix(X509_get0_notBefore(x));
		int64_t na = asn1_time_unix(X509_get0_notAfter(x));
		json_t *cj = json_array_get(certs, i);

		cert_label(x, label, sizeof(label));
		if (na < now) {
			human_duration(now - na, d, sizeof(d));
			problem(cj, "expired %s ago", d);
			finding_add(findings, "error", "cert_expired", "expiry",
			    i == 0 ? "renew the certificate (mtls ca issue, or "
			    "let mtls agent rotate it)" : "replace the expired "
			    "CA certificate and re-issue what it signed",
			    "%s %s %s expired %s ago", who, i == 0 ? "leaf" :
			    "CA certificate", label, d);
			continue;
		}
		if (nb > now) {
			human_duration(nb - now, d, sizeof(d));
			problem(cj, "not valid for another %s", d);
			finding_add(findings, "error", "cert_not_yet_valid",
			    "expiry", "check the clocks: this machine's or the "
			    "issuer's is off (use NTP); or wait",
			    "%s %s is not valid for another %s: notBefore is "
			    "%s ahead of this clock (clock skew)", who, label,
			    d, d);
			continue;
		}
		/* 7/3/1 days; a short-lived certificate (a week or less) is
		 * due when under a third of its life is left (its agent
		 * renews at two thirds) */
		for (k = 0; k < 3; k++) {
			int64_t lim = warn_days[k] * 86400;

			if (na - nb <= 7 * 86400 && lim > (na - nb) / 3)
				lim = (na - nb) / 3;
			if (na - now > lim)
				continue;
			human_duration(na - now, d, sizeof(d));
			human_duration(lim, lim_txt, sizeof(lim_txt));
			problem(cj, "expires in %s", d);
			finding_add(findings, "warn", NULL, "expiry", "renew "
			    "it now (mtls agent renews at two thirds of the "
			    "lifetime)", "%s %s expires in %s (under %s)", who,
			    label, d, lim_txt);
			break;
		}
		if (i + 1 < n && X509_check_issued(sk_X509_value(chain,
		    i + 1), x) == X509_V_OK) {
			X509 *is = sk_X509_value(chain, i + 1);
			int64_t ina = asn1_time_unix(X509_get0_notAfter(is));

			if (na > ina) {
				human_duration(na - ina, d, sizeof(d));
				subject_of(is, il, sizeof(il));
				problem(cj, "outlives its issuer by %s", d);
				finding_add(findings, "warn", NULL, "lifetime",
				    "issue it with a lifetime inside its "
				    "issuer's, or renew the issuer first",
				    "%s %s outlives its issuer '%s' by %s: it "
				    "stops verifying when the issuer expires",
				    who, label, il, d);
			}
		}
	}
}

static void
check_strength(STACK_OF(X509) *chain, json_t *certs, const char *who,
    json_t *findings)
{
	int i, n = sk_X509_num(chain), md, pk, bits;
	char label[300];

	for (i = 0; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);
		EVP_PKEY *k = X509_get0_pubkey(x);
		json_t *cj = json_array_get(certs, i);

		cert_label(x, label, sizeof(label));
		bits = k ? EVP_PKEY_get_bits(k) : 0;
		if (k && ((EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA && bits <
		    2048) || (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
		    bits < 256))) {
			problem(cj, "weak %d-bit key", bits);
			finding_add(findings, "error", "weak_key_or_signature",
			    "strength", "re-issue with an EC P-256 or RSA "
			    "2048+ key", "%s %s has a weak %d-bit %s key", who,
			    label, bits, EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA ?
			    "RSA" : "EC");
		}
		if (k && (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA ||
		    EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA_PSS) &&
		    !rsa_exponent_ok(k)) {
			ERR_clear_error();
			problem(cj, "unsafe RSA public exponent");
			finding_add(findings, "error", "weak_key_or_signature",
			    "strength", "re-issue with a new key (RSA public "
			    "exponent 65537)", "%s %s has an RSA key whose "
			    "public exponent is not an odd number above 65536 "
			    "(with e = 1 anyone can sign as it)", who, label);
		}
		if (cert_is_self_signed(x))
			continue;	/* a root's self-signature is not used */
		if (X509_get_signature_info(x, &md, &pk, NULL, NULL) == 1 &&
		    (md == NID_sha1 || md == NID_md5 || md == NID_md5_sha1)) {
			problem(cj, "signed with %s", OBJ_nid2sn(md));
			finding_add(findings, "error", "weak_key_or_signature",
			    "strength", "re-issue it signed with SHA-256 or "
			    "better", "%s %s is signed with %s, which is "
			    "broken", who, label, OBJ_nid2sn(md));
		}
	}
}

/* Issue 18: a Certificate message over 100 KiB (OpenSSL's max_cert_list,
 * which most stacks match) is refused unread by the peer, who only says
 * illegal_parameter; the size is known offline. */
#define CERT_MSG_MAX	102400

static void
check_size(STACK_OF(X509) *chain, const char *who, json_t *findings)
{
	size_t total = 4 + 1 + 3;	/* header, TLS 1.3 context, list */
	int i, len;

	for (i = 0; i < sk_X509_num(chain); i++)
		if ((len = i2d_X509(sk_X509_value(chain, i), NULL)) > 0)
			total += 3 + (size_t)len + 2;	/* length, DER, exts */
	if (total > CERT_MSG_MAX)
		finding_add(findings, "error", "chain_too_large", "size",
		    mtls_fail_hint(MTLS_FAIL_CHAIN_TOO_LARGE), "%s chain makes "
		    "a %zu-byte Certificate message, over the %d bytes (%d KiB) "
		    "that OpenSSL and most peers accept", who, total,
		    CERT_MSG_MAX, CERT_MSG_MAX / 1024);
}

/* Issue 13: our scope extension under the 2.25 OID (mtls before it moved)
 * makes Go's crypto/x509 and GnuTLS refuse the whole certificate. */
static void
check_scope_oid(STACK_OF(X509) *chain, json_t *certs, const char *who,
    json_t *findings)
{
	char label[300];
	int i;

	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		if (!profile_scope_legacy(x))
			continue;
		cert_label(x, label, sizeof(label));
		problem(json_array_get(certs, i), "SPIFFE scope under the "
		    "legacy 2.25 OID");
		finding_add(findings, "warn", NULL, "interop", "reissue the "
		    "intermediate with this mtls (mtls ca intermediate NEWDIR "
		    "--parent ROOT with the same --permit-* flags; it writes "
		    "OID 1.3.6.1.4.1.32473.6857.1, or ca.conf scope_oid) and "
		    "reissue its leaves from NEWDIR", "%s CA %s carries its "
		    "SPIFFE scope under the legacy OID 2.25.1994...: Go "
		    "(\"x509: malformed extension OID field\") and GnuTLS "
		    "(\"ASN1 parser: Error in DER parsing\") refuse every "
		    "chain through it, and its name constraints leave DNS "
		    "names and IPs open to other verifiers", who, label);
	}
}

static void
check_usage(X509 *leaf, json_t *cj, int purpose, const char *who,
    json_t *findings)
{
	uint32_t ku = X509_get_key_usage(leaf);
	uint32_t xku = X509_get_extended_key_usage(leaf);
	int has_xku = X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE;
	char label[300];
	const char *need;
	uint32_t bit;

	cert_label(leaf, label, sizeof(label));
	if (X509_get_extension_flags(leaf) & EXFLAG_CA) {
		problem(cj, "is a CA certificate used as a leaf");
		finding_add(findings, "error", "bad_key_usage", "usage",
		    "issue a leaf (CA:FALSE) for the workload", "%s leaf %s "
		    "is a CA certificate", who, label);
	}
	if ((X509_get_extension_flags(leaf) & EXFLAG_KUSAGE) &&
	    !(ku & KU_DIGITAL_SIGNATURE)) {
		problem(cj, "keyUsage lacks digitalSignature");
		finding_add(findings, "error", "bad_key_usage", "usage",
		    "re-issue with keyUsage digitalSignature", "%s leaf %s "
		    "cannot sign a TLS handshake: its keyUsage lacks "
		    "digitalSignature", who, label);
	}
	if (purpose == MTLS_PURPOSE_ANY || !has_xku)
		return;
	need = purpose == MTLS_PURPOSE_CLIENT ? "clientAuth" : "serverAuth";
	bit = purpose == MTLS_PURPOSE_CLIENT ? XKU_SSL_CLIENT : XKU_SSL_SERVER;
	if (!(xku & bit)) {
		problem(cj, "extendedKeyUsage lacks %s", need);
		finding_add(findings, "error", "bad_key_usage", "usage",
		    purpose == MTLS_PURPOSE_CLIENT ? "re-issue it with "
		    "extendedKeyUsage clientAuth (mtls ca issue adds both)" :
		    "re-issue it with extendedKeyUsage serverAuth (mtls ca "
		    "issue adds both)", "%s leaf %s is not allowed as a TLS "
		    "%s: its extendedKeyUsage lacks %s", who, label,
		    purpose == MTLS_PURPOSE_CLIENT ? "client" : "server", need);
	}
}

static void
check_key(X509 *leaf, EVP_PKEY *key, const char *who, json_t *findings)
{
	char label[300];

	cert_label(leaf, label, sizeof(label));
	if (X509_check_private_key(leaf, key) == 1) {
		finding_add(findings, "info", NULL, "key", NULL, "the private "
		    "key matches %s", label);
		return;
	}
	ERR_clear_error();
	finding_add(findings, "error", NULL, "key", "use the key that was "
	    "generated with this certificate (or re-issue the certificate "
	    "for this key)", "the private key does not match %s leaf %s",
	    who, label);
}

/* What the chain would need to reach a root in the bundle. */
static const char *
fix_for(const struct mtls_config *cfg, int code, STACK_OF(X509) *chain,
    char *buf, size_t len)
{
	X509 *top = sk_X509_value(chain, sk_X509_num(chain) - 1);
	char is[200], fp[100];
	int newer = 0;

	name_oneline(X509_get_issuer_name(top), is, sizeof(is));
	/* a root rotated out (mtls ca rotation retire): adding it back
	 * would undo the rotation; or one the bundle has not taken yet */
	if (code == MTLS_FAIL_UNKNOWN_CA && verify_rotated_root(cfg,
	    X509_get_issuer_name(top), &newer) != NULL) {
		snprintf(buf, len, newer ? "the root '%s' is newer than this "
		    "trust bundle: install the CA's current bundle (mtls "
		    "agent writes it; GET /v1/bundle)" : "the root '%s' was "
		    "rotated out of this trust bundle (mtls ca rotation "
		    "retire): renew the certificate from the current CA; do "
		    "not add that root back", is);
		return buf;
	}
	switch (code) {
	case MTLS_FAIL_CHAIN_INCOMPLETE:
		snprintf(buf, len, "send the intermediate '%s' after the leaf: "
		    "put the full chain (leaf, then intermediates) in the "
		    "certificate file", is);
		return buf;
	case MTLS_FAIL_UNKNOWN_CA:
		if (cert_is_self_signed(top)) {
			cert_fingerprint(top, fp, sizeof(fp));
			snprintf(buf, len, "the chain ends at the root '%s' "
			    "(sha256 %s): add that root to the trust bundle if "
			    "you trust it, or get a certificate from a CA the "
			    "bundle trusts", is, fp);
		} else
			snprintf(buf, len, "the chain needs the root '%s' (or "
			    "the CA that issued it) in the trust bundle; or get "
			    "a certificate from a CA the bundle trusts", is);
		return buf;
	default:
		return mtls_fail_hint(code);
	}
}

json_t *
doctor_chain(STACK_OF(X509) *chain, const struct doctor_chain_opts *o,
    json_t *findings)
{
	json_t *certs = json_array();
	struct mtls_config *cfg = NULL;
	STACK_OF(X509) *ordered = NULL;
	X509_STORE *st = NULL;
	X509 *leaf;
	struct verify_out out;
	struct mtls_error err;
	char fixbuf[600];
	int i, li, n = sk_X509_num(chain);

	if (certs == NULL)
		return NULL;
	memset(&out, 0, sizeof(out));
	error_clear(&err);
	for (i = 0; i < n; i++) {
		json_t *cj = certinfo_json(sk_X509_value(chain, i), o->now);

		if (cj == NULL)
			goto oom;
		json_object_set_new(cj, "problems", json_array());
		json_array_append_new(certs, cj);
	}
	if (n == 0) {
		finding_add(findings, "error", "no_client_cert", "chain",
		    "give the certificate file", "%s chain is empty", o->who);
		return certs;
	}
	/* the leaf is the first certificate, unless the file is out of
	 * order and a CA certificate comes first */
	for (li = 0; li < n && (X509_get_extension_flags(sk_X509_value(chain,
	    li)) & EXFLAG_CA); li++)
		;
	if (li == n)
		li = 0;
	leaf = sk_X509_value(chain, li);
	if (o->key)
		check_key(leaf, o->key, o->who, findings);
	check_order(chain, li, certs, o->who, findings);
	check_validity(chain, certs, o->now, o->who, findings);
	check_strength(chain, certs, o->who, findings);
	check_size(chain, o->who, findings);
	check_scope_oid(chain, certs, o->who, findings);
	check_usage(leaf, json_array_get(certs, li), o->purpose, o->who,
	    findings);
	if (o->ca == NULL)
		return certs;
	if ((ordered = sk_X509_new_null()) == NULL || !sk_X509_push(ordered,
	    leaf))
		goto oom;
	for (i = 0; i < n; i++)
		if (i != li && !sk_X509_push(ordered, sk_X509_value(chain, i)))
			goto oom;

	/* the full verification, exactly as the proxy does it */
	if ((cfg = mtls_config_new()) == NULL)
		goto oom;
	if (mtls_config_set_trust_file(cfg, o->ca) != 0 ||
	    mtls_config_set_allow_any(cfg) != 0 ||
	    mtls_config_set_purpose(cfg, o->purpose) != 0 ||
	    (o->now && mtls_config_set_verify_time(cfg, o->now) != 0) ||
	    (o->expect && mtls_config_add_expect(cfg, o->expect) != 0)) {
		finding_add(findings, "error", NULL, "bundle", "give a PEM file "
		    "of root certificates", "%s", mtls_config_error(cfg));
		goto done;
	}
	config_freeze(cfg);
	if ((st = verify_store_new(cfg, &err)) == NULL) {
		finding_add(findings, "error", NULL, "bundle", NULL, "%s",
		    err.msg);
		goto done;
	}
	if (verify_chain(cfg, st, ordered, o->purpose, &out, &err) == 0) {
		X509 *root = sk_X509_value(out.chain, sk_X509_num(out.chain) - 1);
		char rs[200];

		subject_of(root, rs, sizeof(rs));
		finding_add(findings, "info", NULL, "verify", NULL,
		    "%s chain verifies to the root '%s' of %s%s%s", o->who, rs,
		    o->ca, o->expect ? " and matches " : "",
		    o->expect ? o->expect : "");
	} else if (err.fail != MTLS_FAIL_NONE) {
		/* the local checks above may have said it already */
		if (!has_error(findings, mtls_fail_name(err.fail)))
			finding_add(findings, "error",
			    mtls_fail_name(err.fail), "verify", fix_for(cfg,
			    err.fail, ordered, fixbuf, sizeof(fixbuf)), "%s",
			    err.msg);
	} else
		finding_add(findings, "error", NULL, "verify", NULL, "%s",
		    err.msg);
 done:
	verify_out_free(&out);
	X509_STORE_free(st);
	mtls_config_free(cfg);
	sk_X509_free(ordered);
	return certs;
 oom:
	sk_X509_free(ordered);
	json_decref(certs);
	mtls_config_free(cfg);
	return NULL;
}

json_t *
doctor_files(const char *cert, const char *key, const char *ca, int purpose,
    const char *expect, const char *pass_file, int *usage)
{
	struct mtls_secret pass = { 0 };
	json_t *r = json_object(), *findings = json_array(), *chain;
	STACK_OF(X509) *certs = NULL;
	EVP_PKEY *k = NULL;
	struct mtls_error err;
	struct doctor_chain_opts o;

	*usage = 0;
	if (r == NULL || findings == NULL) {
		json_decref(r);
		json_decref(findings);
		return NULL;
	}
	error_clear(&err);
	json_object_set_new(r, "file", esc_jstr(cert));
	/* a PKCS#12 --cert brings its key, unless --key names another */
	if ((pass_file && secret_load_pass(&pass, pass_file, &err) != 0) ||
	    certs_load_pass(cert, pass_file ? &pass : NULL, &certs,
	    key ? NULL : &k, &err) != 0 ||
	    (key && key_load(key, NULL, &k, &err) != 0)) {
		json_object_set_new(r, "error", esc_jstr(err.msg));
		*usage = 1;
		goto out;
	}
	if (ca && access(ca, R_OK) != 0) {
		json_object_set_new(r, "error", json_string("--ca: cannot "
		    "read the file"));
		*usage = 1;
		goto out;
	}
	memset(&o, 0, sizeof(o));
	o.ca = ca;
	o.purpose = purpose;
	o.expect = expect;
	o.key = k;
	o.now = time(NULL);
	o.who = "the";
	if ((chain = doctor_chain(certs, &o, findings)) != NULL)
		json_object_set_new(r, "chain", chain);
	if (ca == NULL)
		finding_add(findings, "info", NULL, "verify", "give --ca with "
		    "the roots the peer trusts to check the whole chain",
		    "no --ca: the chain was not verified to a root");
 out:
	json_object_set_new(r, "findings", findings);
	json_object_set_new(r, "result", esc_jstr(findings_result(
	    findings)));
	sk_X509_pop_free(certs, X509_free);
	EVP_PKEY_free(k);
	secret_clear(&pass);
	return r;
}
