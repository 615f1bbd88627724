/*
 * The agent's HTTPS calls to the CA server, through the shared libcurl
 * client (src/svc/http/client.c), and how that server is authenticated:
 * pinned to the token's root and CA while enrolling, to bundle.pem and
 * the CA that issued our certificate while renewing (agent.c's comment
 * has the steps).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "http/client.h"
#include "agent/agent_local.h"
#include "ca/ca.h"

#define MAX_RESPONSE	(1 << 20)

/* curl's header callback: keeps the answer's Date (the CA's clock) and our
 * clock when it arrived in the agent. */
static size_t
on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct agent *a = arg;
	size_t len = sz * n;
	char v[64];
	time_t t;

	if (len > 5 && len < 5 + sizeof(v) && strncasecmp(p, "Date:", 5) == 0) {
		memcpy(v, p + 5, len - 5);
		v[len - 5] = '\0';
		if ((t = curl_getdate(v, NULL)) > 0) {
			a->date = (int64_t)t;
			a->date_at = (int64_t)time(NULL);
		}
	}
	return len;
}

int
call_fp(X509 *x, char hex[65])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl = 0, k;

	hex[0] = '\0';
	if (!X509_digest(x, EVP_sha256(), d, &dl) || dl != 32)
		return -1;
	for (k = 0; k < 32; k++)
		snprintf(hex + 2 * k, 3, "%02x", d[k]);
	return 0;
}

/*
 * A root rotation (docs/rotation.md): after the switch the CA server's
 * certificate comes from the new root while ours is still the old root's.
 * <iss> passes when it is in our bundle.pem and a cross-certificate there
 * carries its name and key, signed by the self-signed root that issued our
 * certificate: the key that vouches for our CA vouches for this one. A
 * sibling CA under our root is no root of the bundle and has no such
 * certificate.
 */
static int
rotated_root(struct agent *a, X509 *iss)
{
	STACK_OF(X509) *b = NULL;
	struct mtls_error e;
	X509 *r, *c;
	int i, j, in = 0, ok = 0;

	if (certs_load(a->bundle, &b, &e) != 0)
		return 0;
	for (i = 0; i < sk_X509_num(b); i++)
		in |= X509_cmp(sk_X509_value(b, i), iss) == 0;
	for (i = 0; in && !ok && i < sk_X509_num(b); i++) {
		r = sk_X509_value(b, i);
		if (!cert_is_self_signed(r) || !cert_issued_by(r, a->renewing))
			continue;
		for (j = 0; !ok && j < sk_X509_num(b); j++) {
			c = sk_X509_value(b, j);
			ok = !cert_is_self_signed(c) && X509_check_ca(c) > 0 &&
			    X509_NAME_cmp(X509_get_subject_name(c),
			    X509_get_subject_name(iss)) == 0 &&
			    EVP_PKEY_eq(X509_get0_pubkey(c),
			    X509_get0_pubkey(iss)) == 1 && cert_issued_by(r, c);
		}
	}
	ERR_clear_error();
	sk_X509_pop_free(b, X509_free);
	return ok;
}

/*
 * A rotation of the CA under a root (docs/rotation.md): after the switch
 * the CA server's certificate comes from a new intermediate while ours is
 * still the old one's. <iss> passes when our bundle.pem holds a CA
 * certificate that is not a root, with <iss>'s name and key, signed by a
 * root of that bundle: our CA published it there before the switch (over a
 * connection this same check pinned; the bundle rule admits no other
 * kind of certificate), which a sibling CA's server cannot do.
 */
static int
published_ca(struct agent *a, X509 *iss)
{
	STACK_OF(X509) *b = NULL;
	struct mtls_error e;
	X509 *c;
	int i, j, ok = 0;

	if (certs_load(a->bundle, &b, &e) != 0)
		return 0;
	for (i = 0; !ok && i < sk_X509_num(b); i++) {
		c = sk_X509_value(b, i);
		if (cert_is_self_signed(c) || X509_check_ca(c) < 1 ||
		    X509_NAME_cmp(X509_get_subject_name(c),
		    X509_get_subject_name(iss)) != 0 ||
		    EVP_PKEY_eq(X509_get0_pubkey(c),
		    X509_get0_pubkey(iss)) != 1)
			continue;
		for (j = 0; !ok && j < sk_X509_num(b); j++)
			ok = cert_is_self_signed(sk_X509_value(b, j)) &&
			    cert_issued_by(sk_X509_value(b, j), c);
	}
	ERR_clear_error();
	sk_X509_pop_free(b, X509_free);
	return ok;
}

static int pin_idx = -1;
static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

/*
 * Enrolling with a token made before a root rotation's switch
 * (docs/security/rotserve.md): the server's leaf now comes from the new
 * root, reached from the pinned root through the cross-certificate. It is
 * still the token's CA when, among the certificates it sent, one that CA
 * issued (exactly a->ca_pin: the pinned root itself, or a CA certificate
 * the pinned root issued) is a CA-server certificate for the very key of
 * the leaf, valid now: the token's CA's own word for the key the handshake
 * proved, as a leaf it issued directly would be. No new name or key is
 * trusted; a sibling CA's server has no such certificate.
 */
static int
pin_twin(struct agent *a, X509_STORE_CTX *sctx, X509 *leaf)
{
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(sctx);
	X509 *ca = NULL, *c;
	char fp[65];
	int i, ok = 0;

	if (a->pinned == NULL || call_fp(a->pinned, fp) != 0)
		return 0;
	if (strcmp(fp, a->ca_pin) == 0)
		ca = a->pinned;
	for (i = 0; ca == NULL && i < sk_X509_num(sent); i++) {
		c = sk_X509_value(sent, i);
		if (call_fp(c, fp) == 0 && strcmp(fp, a->ca_pin) == 0 &&
		    X509_check_ca(c) > 0 && cert_issued_by(a->pinned, c))
			ca = c;
	}
	for (i = 0; ca != NULL && !ok && i < sk_X509_num(sent); i++) {
		c = sk_X509_value(sent, i);
		ok = c != leaf && X509_check_ca(c) == 0 &&
		    profile_is_ca_server(c) &&
		    EVP_PKEY_eq(X509_get0_pubkey(c),
		    X509_get0_pubkey(leaf)) == 1 && cert_issued_by(ca, c) &&
		    X509_cmp_current_time(X509_get0_notBefore(c)) < 0 &&
		    X509_cmp_current_time(X509_get0_notAfter(c)) > 0;
	}
	ERR_clear_error();
	return ok;
}

/*
 * The CA that serves (issue 18), at depth 0 of a verified chain <sctx>:
 * the issuer of the server's leaf as OpenSSL built the chain (its name
 * matched, its key verified the leaf) must be the token's CA while
 * enrolling (exactly a->ca_pin, a certificate the server presented, or the
 * pinned root itself when the root serves), or, while renewing, a CA whose
 * key issued our current certificate (a->renewing), or after a rotation one
 * our CA published in bundle.pem (rotated_root, published_ca). The pinned
 * root, or bundle.pem, vouches for every CA under it, a sibling CA's ca
 * serve included; this is what tells them apart. Passes (1, a->srv_ca set
 * for issued_ok) or fails the handshake (0, a->ca_found set).
 */
static int
serving_ca(struct agent *a, X509_STORE_CTX *sctx)
{
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(sctx);
	X509 *iss = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
	char fp[65] = "";
	int same = 0;

	if (iss != NULL && call_fp(iss, fp) == 0) {
		if (a->conn == TRUST_PIN)
			same = a->ca_pin[0] != '\0' && (strcmp(fp,
			    a->ca_pin) == 0 || pin_twin(a, sctx,
			    sk_X509_value(chain, 0)));
		else if (a->conn == TRUST_BUNDLE && a->renewing != NULL)
			same = cert_issued_by(iss, a->renewing) ||
			    rotated_root(a, iss) || published_ca(a, iss);
	}
	if (!same || !X509_up_ref(iss)) {
		snprintf(a->ca_found, sizeof(a->ca_found), "%s", fp[0] ? fp :
		    "(none)");
		a->ca_subj[0] = '\0';
		if (iss != NULL)
			X509_NAME_oneline(X509_get_subject_name(iss),
			    a->ca_subj, sizeof(a->ca_subj));
		X509_STORE_CTX_set_error(sctx,
		    X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	X509_free(a->srv_ca);
	a->srv_ca = iss;
	return 1;
}

static void
pin_idx_init(void)
{
	pin_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/*
 * OpenSSL's verdict on a pinned handshake, unchanged; on a refusal it
 * records the fingerprint of the last certificate the server presented
 * (its root, or the top of its chain) for the error message.
 */
static int
pin_verify(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct agent *a = ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl),
	    pin_idx) : NULL;
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(sctx);
	X509 *top, *leaf;

	/* the root vouches for workloads too: only a certificate with the
	 * CA-server EKU (which no request can obtain) is the CA server */
	if (ok && X509_STORE_CTX_get_error_depth(sctx) == 0 &&
	    (leaf = X509_STORE_CTX_get_current_cert(sctx)) != NULL &&
	    !profile_is_ca_server(leaf)) {
		X509_STORE_CTX_set_error(sctx, X509_V_ERR_INVALID_PURPOSE);
		if (a != NULL)
			X509_NAME_oneline(X509_get_subject_name(leaf),
			    a->not_ca, sizeof(a->not_ca));
		return 0;
	}
	if (ok && X509_STORE_CTX_get_error_depth(sctx) == 0) {
		if (a != NULL)
			return serving_ca(a, sctx);
		/* no CA to check the server by: refused */
		X509_STORE_CTX_set_error(sctx,
		    X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	if (ok || a == NULL || a->seen_fp[0] != '\0' || a->not_ca[0] != '\0' ||
	    a->ca_found[0] != '\0')
		return ok;
	/* outside its validity by our clock: clock skew, not a pin
	 * mismatch */
	if ((X509_STORE_CTX_get_error(sctx) == X509_V_ERR_CERT_NOT_YET_VALID ||
	    X509_STORE_CTX_get_error(sctx) == X509_V_ERR_CERT_HAS_EXPIRED) &&
	    (top = X509_STORE_CTX_get_current_cert(sctx)) != NULL) {
		int64_t now = (int64_t)time(NULL);

		a->tls_skew = X509_STORE_CTX_get_error(sctx) ==
		    X509_V_ERR_CERT_HAS_EXPIRED ? now - asn1_time_unix(
		    X509_get0_notAfter(top)) : now - asn1_time_unix(
		    X509_get0_notBefore(top));
		if (a->tls_skew == 0)
			a->tls_skew = X509_STORE_CTX_get_error(sctx) ==
			    X509_V_ERR_CERT_HAS_EXPIRED ? 1 : -1;
		X509_NAME_oneline(X509_get_subject_name(top), a->tls_subj,
		    sizeof(a->tls_subj));
		return ok;
	}
	top = sent != NULL && sk_X509_num(sent) > 0 ?
	    sk_X509_value(sent, sk_X509_num(sent) - 1) :
	    X509_STORE_CTX_get_current_cert(sctx);
	if (top == NULL || call_fp(top, a->seen_fp) != 0)
		snprintf(a->seen_fp, sizeof(a->seen_fp), "(none)");
	snprintf(a->seen_why, sizeof(a->seen_why), "%s",
	    X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
	return ok;
}

/*
 * curl's SSL_CTX for a pinned connection: whatever curl loaded, the store
 * becomes one holding the pinned root alone.
 */
static CURLcode
pin_ctx(CURL *h, void *sslctx, void *arg)
{
	SSL_CTX *ctx = sslctx;
	struct agent *a = arg;
	X509_STORE *st = X509_STORE_new();

	(void)h;
	if (st == NULL || pin_idx < 0 || !X509_STORE_add_cert(st, a->pinned) ||
	    !SSL_CTX_set_ex_data(ctx, pin_idx, a)) {
		X509_STORE_free(st);
		return CURLE_SSL_CERTPROBLEM;
	}
	SSL_CTX_set_cert_store(ctx, st);	/* takes <st> */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, pin_verify);
	return CURLE_OK;
}

/*
 * curl's SSL_CTX for a connection verified against bundle.pem (renewals):
 * the same CA-server check as a pinned one.
 */
static CURLcode
bundle_ctx(CURL *h, void *sslctx, void *arg)
{
	(void)h;
	if (pin_idx < 0 || !SSL_CTX_set_ex_data(sslctx, pin_idx, arg))
		return CURLE_SSL_CERTPROBLEM;
	SSL_CTX_set_verify(sslctx, SSL_VERIFY_PEER, pin_verify);
	return CURLE_OK;
}

/*
 * The pin_mismatch log line: which <pin> ("root", "ca") failed, <want>
 * under the name <want_key>, the SHA-256 and <subject> (may be NULL) found,
 * and <why>. Nothing was sent but a bodiless GET (token_sent: false).
 */
static void
pin_line(struct agent *a, const char *pin, const char *want_key,
    const char *want, const char *found, const char *subject,
    const char *why)
{
	json_t *o = json_object();

	json_object_set_new(o, "ca_url", esc_jstr(a->o->ca_url));
	json_object_set_new(o, "pin", esc_jstr(pin));
	json_object_set_new(o, want_key, esc_jstr(want));
	json_object_set_new(o, "found_sha256", esc_jstr(found));
	if (subject != NULL)
		json_object_set_new(o, "found_subject", esc_jstr(subject));
	json_object_set_new(o, "reason", esc_jstr(why));
	json_object_set_new(o, "token_sent", json_false());
	log_emit("error", "pin_mismatch", o);
	json_decref(o);
}

/*
 * The refusal of a server that is not the token's CA: one line naming the
 * expected and the found root (err; the message is bounded, so the reason
 * comes last) and a log line with everything. Nothing was sent but a
 * bodiless GET, nothing was written.
 */
int
call_pin_mismatch(struct agent *a, const char *found, const char *why,
    struct mtls_error *err)
{
	pin_line(a, "root", "expected_sha256", a->pin, found, NULL, why);
	return error_fail(err, MTLS_FAIL_UNKNOWN_CA, "root pin mismatch: want "
	    "sha256:%s, got sha256:%s from %.60s (%s)", a->pin, found,
	    a->o->ca_url, why);
}

/*
 * A server refused by serving_ca: enrolling, its certificate's issuer is
 * not the token's CA (the want and found SHA-256 in err, as a root
 * mismatch); renewing, it is not the CA that issued our certificate (its
 * issuer's name in err). One pin_mismatch line; nothing was sent (the
 * handshake ends before our certificate or any request), nothing written.
 * unknown_ca: an enrollment is not retried, a renewal backs off.
 */
static int
ca_mismatch(struct agent *a, struct mtls_error *err)
{
	char want[160] = "(none)";

	if (a->conn == TRUST_PIN) {
		pin_line(a, "ca", "expected_sha256", a->ca_pin, a->ca_found,
		    a->ca_subj, "the server's certificate was not issued by "
		    "the CA that made the token");
		return error_fail(err, MTLS_FAIL_UNKNOWN_CA, "CA pin mismatch: "
		    "want sha256:%s, got sha256:%s from %.60s (its issuer, "
		    "%.60s)", a->ca_pin, a->ca_found, a->o->ca_url, a->ca_subj);
	}
	if (a->renewing != NULL)
		X509_NAME_oneline(X509_get_issuer_name(a->renewing), want,
		    sizeof(want));
	pin_line(a, "ca", "expected_issuer", want, a->ca_found, a->ca_subj,
	    "the server's certificate was not issued by the CA that issued "
	    "ours");
	return error_fail(err, MTLS_FAIL_UNKNOWN_CA, "CA pin mismatch: %.60s "
	    "is not served by the CA that issued our certificate (%.50s) but "
	    "by sha256:%.16s... (%.50s); nothing sent", a->o->ca_url, want,
	    a->ca_found, a->ca_subj);
}

/* A handshake that refused the CA server's certificate as expired or not
 * yet valid by our clock (pin_verify measured it): clock skew. */
static int
tls_skew(struct agent *a, struct mtls_error *err)
{
	int64_t s = a->tls_skew;

	a->skewed = SKEW_TLS;
	install_skew_line(a, s, "server_certificate", 0);
	return error_fail(err, s < 0 ? MTLS_FAIL_CERT_NOT_YET_VALID :
	    MTLS_FAIL_CERT_EXPIRED, "clock skew? by this clock the CA server's "
	    "certificate (%.50s) %s %lld s%s: this clock is at least that far "
	    "%s, or that certificate is stale; sync the clock (timedatectl "
	    "set-ntp true, or chrony)", a->tls_subj, s < 0 ? "starts in" :
	    "expired", (long long)(s < 0 ? -s : s), s < 0 ? "" : " ago",
	    s < 0 ? "behind" : "ahead");
}

/*
 * One HTTPS call, trusting per <trust>; TRUST_NONE is for a bodiless GET
 * without a client certificate only. With <client>, a->cur_cert
 * authenticates us. Returns the HTTP status (and the body in *out), or -1
 * with err set (connection, TLS; a refused pinned handshake fails as
 * unknown_ca).
 */
int
call_ca(struct agent *a, const char *method, const char *path,
    const char *body, enum trust trust, int client, struct buf *out,
    struct mtls_error *err)
{
	struct http_client_req r;
	struct http_client_resp resp;
	BIO *pem = NULL;
	BUF_MEM *bm;
	STACK_OF(X509) *held = NULL;
	struct mtls_error e;
	char url[1024], gen[65], hdr[96];
	int rc;

	memset(out, 0, sizeof(*out));
	if (trust == TRUST_NONE && (body != NULL || client))
		return error_set(err, MTLS_ERR_ARG, "internal: an unverified "
		    "connection carries nothing");
	if ((size_t)snprintf(url, sizeof(url), "%s%s", a->o->ca_url, path) >=
	    sizeof(url))
		return error_set(err, MTLS_ERR_ARG, "--ca-url is too long");
	memset(&r, 0, sizeof(r));
	r.method = method;
	r.url = url;
	r.protocols = "https";
	r.connect_timeout_s = 5;
	r.timeout_s = 20;
	r.max = MAX_RESPONSE;
	r.tls13_only = 1;
	r.header_fn = on_header;
	r.header_arg = a;
	a->date = 0;
	a->not_ca[0] = '\0';
	a->tls_skew = 0;
	a->conn = trust;
	a->ca_found[0] = '\0';
	X509_free(a->srv_ca);
	a->srv_ca = NULL;
	pthread_once(&pin_once, pin_idx_init);
	switch (trust) {
	case TRUST_NONE:
		r.insecure = 1;
		break;
	case TRUST_PIN:
		/* the pinned root twice: as curl's only CA, and as the store
		 * pin_ctx installs (whichever curl version loads last) */
		if ((pem = BIO_new(BIO_s_mem())) == NULL ||
		    !PEM_write_bio_X509(pem, a->pinned)) {
			BIO_free(pem);
			return error_set_ossl(err, MTLS_ERR_NOMEM, "the pinned "
			    "root");
		}
		BIO_get_mem_ptr(pem, &bm);
		r.ca_pem = (const uint8_t *)bm->data;
		r.ca_pem_len = bm->length;
		r.ssl_ctx_fn = pin_ctx;
		r.ssl_ctx_arg = a;
		a->seen_fp[0] = '\0';
		break;
	case TRUST_BUNDLE:
		r.ca_file = a->bundle;
		r.ssl_ctx_fn = bundle_ctx;
		r.ssl_ctx_arg = a;
		break;
	}
	if (client) {
		r.cert_file = a->cur_cert;
		r.key_file = a->cur_key;
		if (keystore_is_uri(a->cur_key))
			r.key = a->tkey;	/* never a file */
	}
	/* a renewal says which bundle we hold: the CA counts who still lacks
	 * a new root before it switches (docs/rotation.md) */
	if (client && trust == TRUST_BUNDLE && certs_load(a->bundle, &held,
	    &e) == 0 && rotation_generation(held, gen) == 0) {
		snprintf(hdr, sizeof(hdr), "Mtls-Bundle: %s", gen);
		r.header = hdr;
	}
	sk_X509_pop_free(held, X509_free);
	if (body != NULL) {
		r.ctype = "application/json";
		r.body = body;
		r.body_len = strlen(body);
	}
	rc = http_client_do(&r, &resp);
	BIO_free(pem);
	if (rc == 0) {
		out->p = resp.body;
		out->len = resp.len;
		return (int)resp.status;
	}
	if (trust != TRUST_NONE && a->not_ca[0] != '\0')
		error_fail(err, MTLS_FAIL_IDENTITY_MISMATCH, "%.60s is not the "
		    "CA server: its certificate (%.60s) lacks the CA-server "
		    "extended key usage; a workload certificate cannot stand "
		    "in for the CA (check --ca-url)", a->o->ca_url, a->not_ca);
	else if (trust != TRUST_NONE && a->ca_found[0] != '\0')
		ca_mismatch(a, err);
	else if (trust != TRUST_NONE && a->tls_skew != 0)
		tls_skew(a, err);
	else if (trust == TRUST_PIN && a->seen_fp[0] != '\0')
		call_pin_mismatch(a, a->seen_fp, a->seen_why, err);
	else
		error_set(err, MTLS_ERR_IO, "%s", resp.error);
	return -1;
}

/* "message" of a JSON error body, for logs; a 403 "revoked" (the
 * certificate that authenticated us) fails as MTLS_FAIL_REVOKED. */
void
call_api_error(struct mtls_error *err, int status, const char *what,
    const struct buf *b)
{
	json_t *o = b->p ? json_loads(b->p, 0, NULL) : NULL;
	const char *m = json_string_value(json_object_get(o, "message"));
	const char *code = json_string_value(json_object_get(o, "error"));
	char me[200];

	/* the server's words, escaped where they enter our message */
	esc_text(me, sizeof(me), m ? m : "(no message)", m ? strlen(m) : 12,
	    180, 0);
	if (status == 403 && code != NULL && strcmp(code, "revoked") == 0)
		error_fail(err, MTLS_FAIL_REVOKED, "%s: HTTP %d: %s", what,
		    status, me);
	else
		error_set(err, status >= 500 ? MTLS_ERR_IO : MTLS_ERR_VERIFY,
		    "%s: HTTP %d: %s", what, status, me);
	json_decref(o);
}
