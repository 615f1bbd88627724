/*
 * The agent's loop. HTTPS is libcurl (OpenSSL backend): the server is
 * verified against the bundle (the CA's roots, never the system's) and its
 * name; a client certificate authenticates renewals.
 *
 * Enrollment (DESIGN.md, trust boundary agent <-> CA: the token's root
 * and CA fingerprints are a pin):
 *   1. GET /v1/bundle without verification. Nothing is sent but the GET and
 *      nothing is written: the answer only yields the DER of the root whose
 *      SHA-256 the token carries (a server need not send its root in TLS).
 *   2. A new connection verified against a store holding only that root
 *      (and the server's name), whose certificate the token's CA issued
 *      (serving_ca), GET /v1/bundle again: the answer must hold the pinned
 *      root; another root only with a cross-certificate from it
 *      (bundle_check, the same rule as renewals).
 *   3. POST /v1/enroll with the token over a connection pinned the same way;
 *      then bundle.pem (from step 2), svid.key and svid.pem are written.
 * A man in the middle who serves the genuine root beside its own fails
 * step 2: the token never leaves and nothing is written. So does a sibling
 * CA's own ca serve (same root, CA-server EKU): its certificate's issuer is
 * not the token's CA. A renewal's server must have been issued its
 * certificate by the CA (the key) that issued ours.
 *
 * Passing TLS is not all: an answer is installed only when issued_ok
 * passes (issued by the CA that serves and not outliving it, same
 * identities, chains to the trust as it was, valid by our clock); a
 * certificate our clock refuses is clock skew, not a success that makes
 * the next renewal due at once (issue 18). What is written is our own PEM
 * of the certificates parsed from an answer, never the answer's bytes.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "agent/agent.h"

#define MAX_RESPONSE	(1 << 20)
/* A certificate whose notBefore is at most this far ahead of our clock is
 * taken as valid (the CA backdates by 5 min; this covers a CA that does
 * not); the same bound makes a Date header's difference worth a line. */
#define SKEW_TOLERANCE	60
/* After a clock-skew failure the next attempt waits at least this long: a
 * clock is not fixed within seconds, and every attempt costs the CA an
 * issuance and an inventory row. */
#define SKEW_RETRY	30
/* A successful renewal is followed by the next one no sooner than a sixth
 * of the certificate's life as issued, within [1 s, 30 s]: with our clock
 * running just short of the certificate's end, "two thirds of what is
 * left" would otherwise be a second or less, again and again. */
#define FLOOR_MAX	30

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Why the last attempt failed on our clock. */
enum {
	SKEW_NONE,
	SKEW_TLS,	/* the CA server's certificate, by our clock */
	SKEW_ISSUED,	/* the certificate just issued (a token is spent) */
};

/* Whom a connection trusts. */
enum trust {
	TRUST_NONE,	/* the bootstrap GET only: no token, no writes */
	TRUST_PIN,	/* only the root the token names (a->pinned) */
	TRUST_BUNDLE,	/* out-dir/bundle.pem */
};

struct agent {
	const struct agent_opts *o;
	char	 svid[4200], svid_key[4200], bundle[4200];
	/* what authenticates the next renewal: the out-dir files, or
	 * --cert/--key until the first renewal installs its own */
	const char *cur_cert, *cur_key;
	char	 token[512];
	char	 pin[65];	/* the token's root SHA-256, lower hex */
	char	 ca_pin[65];	/* the token's CA SHA-256: the issuer of the
				 * CA server's certificate */
	X509	*pinned;	/* that root, during an enrollment */
	X509	*renewing;	/* our certificate, during a renewal: the CA
				 * server's issuer must have issued it */
	enum trust conn;	/* what the connection in progress trusts */
	X509	*srv_ca;	/* the issuer of the CA server's certificate
				 * on the last verified connection */
	char	 ca_found[65];	/* a handshake refused on that issuer: its
				 * SHA-256 ("(none)": no issuer) */
	char	 ca_subj[160];	/* and its subject */
	char	 seen_fp[65];	/* top of the chain a pinned handshake */
	char	 seen_why[100];	/* refused, and OpenSSL's reason */
	char	 not_ca[160];	/* the server's leaf lacked the CA-server
				 * EKU: its subject, for the error */
	int64_t	 not_after, renew_at;
	char	 serial[48];
	int64_t	 date, date_at;	/* the last answer's Date header (0: none)
				 * and our clock when it arrived */
	int	 skewed;	/* the last attempt failed on clock skew:
				 * SKEW_TLS, SKEW_ISSUED */
	int	 skew_logged;	/* this skew episode has had its line */
	int64_t	 tls_skew;	/* a handshake refused the server's
				 * certificate on time: at least this skew
				 * (our clock minus the bound it is past) */
	char	 tls_subj[160];	/* that certificate */
};

struct buf {
	char	*p;
	size_t	 len;
};

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

static size_t
on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t add = sz * n;
	char *np;

	if (b->len + add > MAX_RESPONSE || (np = realloc(b->p, b->len + add +
	    1)) == NULL)
		return 0;	/* too large: curl fails the transfer */
	memcpy(np + b->len, p, add);
	b->len += add;
	np[b->len] = '\0';
	b->p = np;
	return add;
}

/* SHA-256 of <x>'s DER in lower hex, the form a token carries. */
static int
root_fp(X509 *x, char hex[65])
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

/* <ca> issued <x>: its subject is <x>'s issuer (and key identifiers and
 * key usage agree: X509_check_issued) and its key verifies <x>'s
 * signature. Names alone never decide. */
static int
issued_by(X509 *ca, X509 *x)
{
	EVP_PKEY *pk = X509_get0_pubkey(ca);
	int ok = pk != NULL && X509_check_issued(ca, x) == X509_V_OK &&
	    X509_verify(x, pk) == 1;

	ERR_clear_error();
	return ok;
}

static int pin_idx = -1;
static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

/*
 * The CA that serves (issue 18), at depth 0 of a verified chain <sctx>:
 * the issuer of the server's leaf as OpenSSL built the chain (its name
 * matched, its key verified the leaf) must be the token's CA while
 * enrolling (exactly a->ca_pin, a certificate the server presented, or the
 * pinned root itself when the root serves), or, while renewing, a CA whose
 * key issued our current certificate (a->renewing). The pinned root, or
 * bundle.pem, vouches for every CA under it, a sibling CA's ca serve
 * included; this is what tells them apart. Passes (1, a->srv_ca set for
 * issued_ok) or fails the handshake (0, a->ca_found set).
 */
static int
serving_ca(struct agent *a, X509_STORE_CTX *sctx)
{
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(sctx);
	X509 *iss = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
	char fp[65] = "";
	int same = 0;

	if (iss != NULL && root_fp(iss, fp) == 0) {
		if (a->conn == TRUST_PIN)
			same = a->ca_pin[0] != '\0' && strcmp(fp, a->ca_pin) == 0;
		else if (a->conn == TRUST_BUNDLE && a->renewing != NULL)
			same = issued_by(iss, a->renewing);
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
	if (top == NULL || root_fp(top, a->seen_fp) != 0)
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
static int
pin_mismatch(struct agent *a, const char *found, const char *why,
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

/*
 * The clock_skew line, once per episode: <skew> s (> 0: our clock is ahead
 * of the CA's), measured from <source>; <installed>: the certificate was
 * installed all the same (valid here, the Date header says otherwise).
 */
static void
skew_line(struct agent *a, int64_t skew, const char *source, int installed)
{
	json_t *o;

	if (a->skew_logged)
		return;
	a->skew_logged = 1;
	o = json_object();
	json_object_set_new(o, "skew_s", json_integer(skew));
	json_object_set_new(o, "source", esc_jstr(source));
	json_object_set_new(o, "ca_url", esc_jstr(a->o->ca_url));
	json_object_set_new(o, "installed", json_boolean(installed));
	json_object_set_new(o, "fix", json_string("sync this machine's clock "
	    "(timedatectl set-ntp true, or chrony/ntpd)"));
	log_emit(installed ? "warn" : "error", "clock_skew", o);
	json_decref(o);
}

/* A handshake that refused the CA server's certificate as expired or not
 * yet valid by our clock (pin_verify measured it): clock skew. */
static int
tls_skew(struct agent *a, struct mtls_error *err)
{
	int64_t s = a->tls_skew;

	a->skewed = SKEW_TLS;
	skew_line(a, s, "server_certificate", 0);
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
static int
call(struct agent *a, const char *method, const char *path,
    const char *body, enum trust trust, int client, struct buf *out,
    struct mtls_error *err)
{
	CURL *h;
	struct curl_slist *hdr = NULL;
	struct curl_blob blob;
	BIO *pem = NULL;
	BUF_MEM *bm;
	char url[1024], ebuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode rc;

	memset(out, 0, sizeof(*out));
	if (trust == TRUST_NONE && (body != NULL || client))
		return error_set(err, MTLS_ERR_ARG, "internal: an unverified "
		    "connection carries nothing");
	if ((size_t)snprintf(url, sizeof(url), "%s%s", a->o->ca_url, path) >=
	    sizeof(url))
		return error_set(err, MTLS_ERR_ARG, "--ca-url is too long");
	if ((h = curl_easy_init()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	a->date = 0;
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
	/* Debian's libcurl also trusts /etc/ssl/certs by default: a public CA
	 * must not vouch for our CA server */
	curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	a->not_ca[0] = '\0';
	a->tls_skew = 0;
	a->conn = trust;
	a->ca_found[0] = '\0';
	X509_free(a->srv_ca);
	a->srv_ca = NULL;
	pthread_once(&pin_once, pin_idx_init);
	switch (trust) {
	case TRUST_NONE:
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
		break;
	case TRUST_PIN:
		/* the pinned root twice: as curl's only CA file, and as the
		 * store pin_ctx installs (whichever curl version loads last) */
		pthread_once(&pin_once, pin_idx_init);
		if ((pem = BIO_new(BIO_s_mem())) == NULL ||
		    !PEM_write_bio_X509(pem, a->pinned)) {
			BIO_free(pem);
			curl_easy_cleanup(h);
			return error_set_ossl(err, MTLS_ERR_NOMEM, "the pinned "
			    "root");
		}
		BIO_get_mem_ptr(pem, &bm);
		blob.data = bm->data;
		blob.len = bm->length;
		blob.flags = CURL_BLOB_COPY;
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
		curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, pin_ctx);
		curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, a);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		a->seen_fp[0] = '\0';
		break;
	case TRUST_BUNDLE:
		curl_easy_setopt(h, CURLOPT_CAINFO, a->bundle);
		curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, bundle_ctx);
		curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, a);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		break;
	}
	if (client) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, a->cur_cert);
		curl_easy_setopt(h, CURLOPT_SSLKEY, a->cur_key);
	}
	if (body != NULL) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	else if (trust != TRUST_NONE && a->not_ca[0] != '\0')
		error_fail(err, MTLS_FAIL_IDENTITY_MISMATCH, "%.60s is not the "
		    "CA server: its certificate (%.60s) lacks the CA-server "
		    "extended key usage; a workload certificate cannot stand "
		    "in for the CA (check --ca-url)", a->o->ca_url, a->not_ca);
	else if (trust != TRUST_NONE && a->ca_found[0] != '\0')
		ca_mismatch(a, err);
	else if (trust != TRUST_NONE && a->tls_skew != 0)
		tls_skew(a, err);
	else if (trust == TRUST_PIN && a->seen_fp[0] != '\0')
		pin_mismatch(a, a->seen_fp, a->seen_why, err);
	else
		error_set(err, MTLS_ERR_IO, "%s %s: %s", method, url,
		    ebuf[0] ? ebuf : curl_easy_strerror(rc));
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	BIO_free(pem);
	if (rc != CURLE_OK) {
		free(out->p);
		out->p = NULL;
		return -1;
	}
	return (int)status;
}

/* "message" of a JSON error body, for logs; a 403 "revoked" (the
 * certificate that authenticated us) fails as MTLS_FAIL_REVOKED. */
static void
api_error(struct mtls_error *err, int status, const char *what,
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

/*
 * The certificates trusted now (*out, caller frees): the pinned root during
 * an enrollment (<trust> TRUST_PIN), else out-dir/bundle.pem.
 */
static int
current_trust(struct agent *a, enum trust trust, STACK_OF(X509) **out,
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

/* <c> is a CA certificate, valid now, signed by a self-signed root of
 * <cur> (checked with that root's key, not by name). */
static int
signed_by_current_root(STACK_OF(X509) *cur, X509 *c)
{
	X509 *t;
	int i;

	if (X509_check_ca(c) < 1 ||
	    X509_cmp_current_time(X509_get0_notBefore(c)) > 0 ||
	    X509_cmp_current_time(X509_get0_notAfter(c)) < 0)
		return 0;
	for (i = 0; i < sk_X509_num(cur); i++) {
		t = sk_X509_value(cur, i);
		if (cert_is_self_signed(t) && issued_by(t, c))
			return 1;
	}
	return 0;
}

/* <fresh> carries a cross-certificate for root <r>: <r>'s subject and
 * public key, signed by a root of <cur>. */
static int
has_cross(STACK_OF(X509) *cur, STACK_OF(X509) *fresh, X509 *r)
{
	X509 *c;
	int i;

	for (i = 0; i < sk_X509_num(fresh); i++) {
		c = sk_X509_value(fresh, i);
		if (!cert_is_self_signed(c) && X509_NAME_cmp(
		    X509_get_subject_name(c), X509_get_subject_name(r)) == 0 &&
		    EVP_PKEY_eq(X509_get0_pubkey(c), X509_get0_pubkey(r)) == 1 &&
		    signed_by_current_root(cur, c))
			return 1;
	}
	ERR_clear_error();
	return 0;
}

/* A refused bundle: one log line naming the certificate, err set. */
static int
bundle_rejected(struct agent *a, X509 *x, const char *why,
    struct mtls_error *err)
{
	json_t *o = json_object();
	char fp[65] = "(none)", subj[160] = "";

	if (x != NULL) {
		if (root_fp(x, fp) != 0)
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
 * certificate. At least one root. Passing TLS under a current root (a
 * sibling CA's server does) is not enough to add a root; holding a current
 * root's key is.
 */
static int
bundle_check(struct agent *a, STACK_OF(X509) *cur, STACK_OF(X509) *fresh,
    struct mtls_error *err)
{
	X509 *x;
	int i, roots = 0;

	for (i = 0; i < sk_X509_num(fresh); i++) {
		x = sk_X509_value(fresh, i);
		if (cert_is_self_signed(x))
			roots++;
		if (sk_has(cur, x))
			continue;
		if (cert_is_self_signed(x) ? !has_cross(cur, fresh, x) :
		    !signed_by_current_root(cur, x))
			return bundle_rejected(a, x, cert_is_self_signed(x) ?
			    "a new root without a cross-certificate from a "
			    "trusted root" : "not a root, nor signed by a "
			    "trusted root", err);
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
static int
fetch_bundle(struct agent *a, enum trust trust, char **pem_out,
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
	if ((st = call(a, "GET", "/v1/bundle", NULL, trust, 0, &b, err)) < 0)
		return -1;
	if (st != 200) {
		api_error(err, st, "GET /v1/bundle", &b);
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
		if (root_fp(sk_X509_value(roots, i), fp) != 0)
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
		pin_mismatch(a, found[0] ? found : "(none)", why, err);
		goto out;
	}
	/* a verified answer may change what we trust only as a current root
	 * allows (the unverified probe only yields the pinned root's DER) */
	if (trust != TRUST_NONE && (current_trust(a, trust, &cur, err) != 0 ||
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

/* A new P-256 key and a CSR for it (the CA decides the identity). */
static int
new_csr(EVP_PKEY **key, char **csr, struct mtls_error *err)
{
	X509_REQ *req = X509_REQ_new();
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	int rv = -1;

	*csr = NULL;
	if (req == NULL || bio == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (key_generate(KEY_EC_P256, key, err) != 0)
		goto out;
	if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, *key) ||
	    X509_REQ_sign(req, *key, EVP_sha256()) <= 0 ||
	    !PEM_write_bio_X509_REQ(bio, req)) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot make a CSR");
		goto out;
	}
	BIO_get_mem_ptr(bio, &bm);
	if ((*csr = strndup(bm->data, bm->length)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	rv = 0;
 out:
	BIO_free(bio);
	X509_REQ_free(req);
	return rv;
}

static void
run_hook(struct agent *a)
{
	pid_t pid;
	int st = 0;
	json_t *o;

	if (a->o->on_rotate == NULL)
		return;
	if ((pid = fork()) == 0) {
		execl("/bin/sh", "sh", "-c", a->o->on_rotate, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	o = json_object();
	json_object_set_new(o, "command", esc_jstr(a->o->on_rotate));
	json_object_set_new(o, "exit", json_integer(pid < 0 ? -1 :
	    WIFEXITED(st) ? WEXITSTATUS(st) : 128));
	log_emit(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "info" :
	    "warn", "on_rotate", o);
	json_decref(o);
}

/* Schedules the next renewal: two thirds of the remaining life, minus up
 * to 5 % jitter so that replicas do not renew in step. */
static void
schedule(struct agent *a)
{
	int64_t now = (int64_t)time(NULL), left = a->not_after - now;
	uint32_t r = 0;
	int64_t jit;

	RAND_bytes((unsigned char *)&r, sizeof(r));
	jit = left > 20 ? (int64_t)(r % (uint32_t)(left / 20 + 1)) : 0;
	a->renew_at = now + (left > 0 ? left * 2 / 3 - jit : 0);
}

/* A refused answer: one log line with the reason's taxonomy name. */
static int
refused(struct agent *a, const char *how, const char *reason, X509 *leaf,
    struct mtls_error *err)
{
	json_t *o = json_object();
	char serial[48] = "";

	if (leaf != NULL)
		serial_hex(X509_get0_serialNumber(leaf), serial, sizeof(serial));
	json_object_set_new(o, "how", esc_jstr(how));
	json_object_set_new(o, "reason", esc_jstr(reason));
	json_object_set_new(o, "serial", esc_jstr(serial));
	json_object_set_new(o, "error", esc_jstr(err->msg));
	json_object_set_new(o, "out_dir", esc_jstr(a->o->out_dir));
	log_emit("error", "install_refused", o);
	json_decref(o);
	return -1;
}

/* <t> as 2006-01-02T15:04:05Z in <out>. */
static void
utc(int64_t t, char out[24])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 24, "%lld", (long long)t);
}

/* The identities that must survive a renewal: every one but a CN. */
static int
same_ids(const struct ids *want, const struct ids *got)
{
	size_t i, j, nw = 0, ng = 0;

	for (i = 0; i < want->n; i++) {
		if (strncmp(want->v[i], "cn:", 3) == 0)
			continue;
		nw++;
		for (j = 0; j < got->n; j++)
			if (strcmp(want->v[i], got->v[j]) == 0)
				break;
		if (j == got->n)
			return 0;
	}
	for (j = 0; j < got->n; j++)
		ng += strncmp(got->v[j], "cn:", 3) != 0;
	return nw == ng && nw > 0;
}

/*
 * Our clock against the certificate just issued: one clock_skew line per
 * episode (the skew measured from the answer's Date header, else the least
 * the certificate proves), err set; nothing is installed. Skew > 0: this
 * clock is ahead of the CA's.
 */
static int
clock_skew(struct agent *a, X509 *leaf, int64_t now, int enroll,
    struct mtls_error *err)
{
	int64_t nb = asn1_time_unix(X509_get0_notBefore(leaf));
	int64_t na = asn1_time_unix(X509_get0_notAfter(leaf));
	int64_t skew = a->date > 0 ? a->date_at - a->date : na <= now ?
	    now - na : now - nb;
	const char *src = a->date > 0 ? "date_header" : "certificate";

	a->skewed = SKEW_ISSUED;
	skew_line(a, skew, src, 0);
	return error_fail(err, na <= now ? MTLS_FAIL_CERT_EXPIRED :
	    MTLS_FAIL_CERT_NOT_YET_VALID, "clock skew: this clock is %s%lld s "
	    "%s the CA's (%s): the new certificate is %s here; not installed%s;"
	    " sync the clock (timedatectl set-ntp true, or chrony)",
	    a->date > 0 ? "" : "at least ", (long long)(skew < 0 ? -skew :
	    skew), skew < 0 ? "behind" : "ahead of", src, na <= now ?
	    "already expired" : "not yet valid", enroll ? " (the token is "
	    "spent: create a new one)" : "");
}

/*
 * Whether the CA's answer <chain> may be installed with <key> (issue 18):
 * the key matches; the CA that served the answer (a->srv_ca) issued it,
 * and it ends no later than that CA (a leaf must not outlive its issuer);
 * the identities (URI, DNS, IP SANs) are those of the
 * certificate being renewed (an enrollment: the token decides, any but
 * none); it is valid by our clock (else clock skew); it verifies, for
 * client and server use, against the trust of <trust> as it is now (before
 * any bundle change), with the answer's intermediates and the
 * cross-certificates of <bundle_pem>, which passed bundle_check.
 */
static int
issued_ok(struct agent *a, EVP_PKEY *key, STACK_OF(X509) *chain,
    const char *bundle_pem, enum trust trust, const char *how,
    struct mtls_error *err)
{
	X509 *leaf = sk_X509_value(chain, 0);
	STACK_OF(X509) *cur = NULL, *fresh = NULL, *certs = NULL;
	struct mtls_config *cfg = NULL;
	struct verify_out vo;
	struct ids want, got;
	X509_STORE *st = NULL;
	int64_t now = (int64_t)time(NULL);
	const char *reason = NULL;
	int i, rv = -1;

	memset(&want, 0, sizeof(want));
	memset(&got, 0, sizeof(got));
	memset(&vo, 0, sizeof(vo));
	if (X509_check_private_key(leaf, key) != 1) {
		ERR_clear_error();
		error_set(err, MTLS_ERR_VERIFY, "the CA returned a certificate "
		    "for another key; not installed");
		reason = "key_mismatch";
		goto out;
	}
	if (a->srv_ca == NULL || !issued_by(a->srv_ca, leaf)) {
		char is[100] = "", sv[100] = "(none)";

		X509_NAME_oneline(X509_get_issuer_name(leaf), is, sizeof(is));
		if (a->srv_ca != NULL)
			X509_NAME_oneline(X509_get_subject_name(a->srv_ca), sv,
			    sizeof(sv));
		error_fail(err, MTLS_FAIL_UNKNOWN_CA, "the CA answered a "
		    "certificate issued by %.70s, not by the CA that serves "
		    "(%.70s): not installed", is, sv);
		reason = "issuer_mismatch";
		goto out;
	}
	if (asn1_time_unix(X509_get0_notAfter(leaf)) >
	    asn1_time_unix(X509_get0_notAfter(a->srv_ca))) {
		char le[24], ce[24];

		utc(asn1_time_unix(X509_get0_notAfter(leaf)), le);
		utc(asn1_time_unix(X509_get0_notAfter(a->srv_ca)), ce);
		error_fail(err, MTLS_FAIL_UNKNOWN_CA, "the CA answered a "
		    "certificate valid until %s, after its issuer's end (%s): "
		    "a certificate must not outlive its CA; not installed", le,
		    ce);
		reason = "outlives_issuer";
		goto out;
	}
	if (trust == TRUST_BUNDLE && (a->renewing == NULL ||
	    ids_from_cert(a->renewing, &want, err) != 0)) {
		if (a->renewing == NULL)
			error_set(err, MTLS_ERR_ARG, "internal: no certificate "
			    "being renewed");
		goto out;
	}
	if (ids_from_cert(leaf, &got, err) != 0 || (trust == TRUST_BUNDLE ?
	    !same_ids(&want, &got) : !same_ids(&got, &got))) {
		error_fail(err, MTLS_FAIL_IDENTITY_MISMATCH, "the CA answered "
		    "a certificate for %.80s; %s %.80s: not installed",
		    got.n ? got.v[0] : "no identity", trust == TRUST_BUNDLE ?
		    "this agent renews" : "an enrollment needs an identity",
		    want.n ? want.v[0] : "");
		reason = "identity_mismatch";
		goto out;
	}
	if (asn1_time_unix(X509_get0_notBefore(leaf)) > now + SKEW_TOLERANCE ||
	    asn1_time_unix(X509_get0_notAfter(leaf)) <= now) {
		clock_skew(a, leaf, now, trust == TRUST_PIN, err);
		reason = "clock_skew";
		goto out;
	}
	/* a store of exactly what we trust now, a policy of any peer */
	if (current_trust(a, trust, &cur, err) != 0 ||
	    certs_parse((const uint8_t *)bundle_pem, strlen(bundle_pem),
	    "the CA's bundle", &fresh, err) != 0)
		goto out;
	if ((st = X509_STORE_new()) == NULL || (certs = sk_X509_dup(chain)) ==
	    NULL || (cfg = mtls_config_new()) == NULL ||
	    mtls_config_set_allow_any(cfg) != 0) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < sk_X509_num(cur); i++)
		if (!X509_STORE_add_cert(st, sk_X509_value(cur, i)))
			ERR_clear_error();	/* a duplicate */
	for (i = 0; i < sk_X509_num(fresh); i++)
		if (!cert_is_self_signed(sk_X509_value(fresh, i)) &&
		    !sk_X509_push(certs, sk_X509_value(fresh, i))) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
	config_freeze(cfg);
	if (verify_chain(cfg, st, certs, MTLS_PURPOSE_CLIENT, &vo, err) != 0) {
		reason = err->fail ? mtls_fail_name(err->fail) : "unknown_ca";
		goto out;
	}
	verify_out_free(&vo);
	if (verify_chain(cfg, st, certs, MTLS_PURPOSE_SERVER, &vo, err) != 0) {
		reason = err->fail ? mtls_fail_name(err->fail) : "unknown_ca";
		goto out;
	}
	rv = 0;
 out:
	if (rv != 0 && reason != NULL)
		refused(a, how, reason, leaf, err);
	verify_out_free(&vo);
	ids_free(&want);
	ids_free(&got);
	X509_STORE_free(st);
	mtls_config_free(cfg);
	sk_X509_free(certs);
	sk_X509_pop_free(cur, X509_free);
	sk_X509_pop_free(fresh, X509_free);
	return rv;
}

/* The next renewal after a successful one: two thirds of what is left, but
 * not sooner than FLOOR_MAX's rule; a Date header within SKEW_TOLERANCE
 * ends a skew episode, one beyond it (the certificate still valid here)
 * is worth one warning. */
static void
schedule_after_issue(struct agent *a, X509 *leaf)
{
	int64_t now = (int64_t)time(NULL);
	int64_t from = a->date > 0 ? a->date : asn1_time_unix(
	    X509_get0_notBefore(leaf));
	int64_t floor = (a->not_after - from) / 6, skew;

	floor = floor < 1 ? 1 : floor > FLOOR_MAX ? FLOOR_MAX : floor;
	schedule(a);
	if (a->renew_at < now + floor)
		a->renew_at = now + floor;
	skew = a->date > 0 ? a->date_at - a->date : 0;
	if (skew <= SKEW_TOLERANCE && skew >= -SKEW_TOLERANCE)
		a->skew_logged = 0;	/* the episode, if any, is over */
	else
		skew_line(a, skew, "date_header", 1);
}

/*
 * --layout k8s: the file names of a kubernetes.io/tls Secret, swapped in
 * as the kubelet does for a mounted Secret: the files go into a new
 * out-dir/..XXXXXX, the symlink out-dir/..data is replaced by rename to
 * point at it, and out-dir/tls.crt, tls.key and ca.crt are symlinks into
 * ..data made once. A reader sees either every old file or every new one,
 * never a new certificate with the old key. A name not in <f> keeps its
 * current bytes (unless <drop_tls>: tls.crt and tls.key then leave). The
 * previous directory is removed after the swap.
 */
struct kfile {
	const char	*name;
	const void	*data;
	size_t		 len;
	EVP_PKEY	*key;	/* written 0600 instead of data */
};

static int
k8s_swap(struct agent *a, const struct kfile *f, size_t n, int drop_tls,
    struct mtls_error *err)
{
	static const char *names[] = { "ca.crt", "tls.crt", "tls.key" };
	const char *out = a->o->out_dir;
	char dir[4200], data[4200], tmp[4200], old[256], p[4400], q[4400];
	const char *base;
	struct stat st;
	ssize_t ol;
	size_t i, j;
	int rv = -1;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/..XXXXXX", out) >=
	    sizeof(dir) || mkdtemp(dir) == NULL)
		return error_set_errno(err, MTLS_ERR_IO, "%s: cannot make a "
		    "new data directory", out);
	base = strrchr(dir, '/') + 1;
	snprintf(data, sizeof(data), "%s/..data", out);
	snprintf(tmp, sizeof(tmp), "%s/..data_tmp", out);
	ol = readlink(data, old, sizeof(old) - 1);
	old[ol > 0 ? ol : 0] = '\0';
	/* only a name we make (..XXXXXX in out-dir) is ever removed */
	if (strncmp(old, "..", 2) != 0 || strchr(old, '/') != NULL ||
	    strcmp(old, "..data") == 0)
		old[0] = '\0';
	for (i = 0; i < 3; i++) {
		int r = 0;

		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		for (j = 0; j < n && strcmp(f[j].name, names[i]) != 0; j++)
			;
		if (j < n && f[j].key != NULL)
			r = key_write(p, f[j].key, NULL, 0, err);
		else if (j < n)
			r = fs_write_atomic(p, f[j].data, f[j].len, 0644, 0,
			    err);
		else if (old[0] != '\0' && !(drop_tls && i > 0)) {
			uint8_t *buf = NULL;
			size_t len = 0;

			snprintf(q, sizeof(q), "%s/%s/%s", out, old, names[i]);
			if (stat(q, &st) != 0)
				continue;
			if ((r = fs_read(q, MTLS_MAX_FILE, &buf, &len,
			    err)) == 0)
				r = fs_write_atomic(p, buf, len, i == 2 ? 0600 :
				    0644, 0, err);
			if (buf != NULL)
				OPENSSL_cleanse(buf, len);
			free(buf);
		}
		if (r != 0)
			goto fail;
	}
	(void)unlink(tmp);
	if (symlink(base, tmp) != 0 || rename(tmp, data) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "%s: cannot swap ..data", out);
		goto fail;
	}
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", out, names[i]);
		snprintf(q, sizeof(q), "..data/%s", names[i]);
		if (lstat(p, &st) == 0) {
			char t[64];
			ssize_t tl = readlink(p, t, sizeof(t) - 1);

			if (tl > 0 && (t[tl] = '\0', strcmp(t, q) == 0))
				continue;
			if (!S_ISLNK(st.st_mode) && !S_ISREG(st.st_mode)) {
				error_set(err, MTLS_ERR_IO, "%s is in the way of "
				    "the k8s layout: remove it", p);
				goto done;
			}
		}
		/* a regular file from the flat layout or a stale link is
		 * replaced by the link, atomically */
		(void)unlink(tmp);
		if (symlink(q, tmp) != 0 || rename(tmp, p) != 0) {
			error_set_errno(err, MTLS_ERR_IO, "%s: cannot link it",
			    p);
			goto done;
		}
	}
	rv = 0;
 done:
	if (fs_fsync_dir(out, err) != 0)
		rv = -1;
	if (old[0] != '\0') {
		for (i = 0; i < 3; i++) {
			snprintf(p, sizeof(p), "%s/%s/%s", out, old, names[i]);
			(void)unlink(p);
		}
		snprintf(p, sizeof(p), "%s/%s", out, old);
		(void)rmdir(p);
	}
	return rv;
 fail:
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		(void)unlink(p);
	}
	(void)rmdir(dir);
	return -1;
}

/* Checks (issued_ok) and installs an issued chain for <key>: then
 * bundle.pem (<bundle_pem>, our PEM of a verified answer that passed
 * bundle_check), key and certificate (our PEM of the certificates parsed
 * from <chain_pem>, never its bytes) are replaced atomically in that
 * order, so a watcher that sees the new certificate has its roots and key.
 * A refused answer writes nothing. */
static int
install(struct agent *a, EVP_PKEY *key, const char *chain_pem,
    const char *bundle_pem, enum trust trust, const char *how,
    struct mtls_error *err)
{
	STACK_OF(X509) *chain = NULL;
	X509 *leaf;
	json_t *o;
	char *pem = NULL;
	size_t pl = 0;
	int rv = -1;

	if (certs_parse((const uint8_t *)chain_pem, strlen(chain_pem),
	    "the issued certificate", &chain, err) != 0)
		return -1;
	leaf = sk_X509_value(chain, 0);
	if (issued_ok(a, key, chain, bundle_pem, trust, how, err) != 0)
		goto out;
	if (certs_pem(chain, &pem, &pl) != 0) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (a->o->layout_k8s) {
		const struct kfile f[] = {
			{ "ca.crt", bundle_pem, strlen(bundle_pem), NULL },
			{ "tls.key", NULL, 0, key },
			{ "tls.crt", pem, pl, NULL },
		};

		if (k8s_swap(a, f, 3, 0, err) != 0)
			goto out;
	} else if (fs_write_atomic(a->bundle, bundle_pem, strlen(bundle_pem),
	    0644, 1, err) != 0 ||
	    key_write(a->svid_key, key, NULL, 1, err) != 0 ||
	    fs_write_atomic(a->svid, pem, pl, 0644, 1, err) != 0)
		goto out;
	a->cur_cert = a->svid;
	a->cur_key = a->svid_key;
	a->not_after = asn1_time_unix(X509_get0_notAfter(leaf));
	serial_hex(X509_get0_serialNumber(leaf), a->serial, sizeof(a->serial));
	schedule_after_issue(a, leaf);
	o = json_object();
	json_object_set_new(o, "serial", esc_jstr(a->serial));
	json_object_set_new(o, "not_after", json_integer(a->not_after));
	json_object_set_new(o, "renew_at", json_integer(a->renew_at));
	json_object_set_new(o, "out_dir", esc_jstr(a->o->out_dir));
	log_emit("info", how, o);
	json_decref(o);
	run_hook(a);
	rv = 0;
 out:
	free(pem);
	sk_X509_pop_free(chain, X509_free);
	return rv;
}

/* POST /v1/enroll (over the pinned connection) or /v1/renew (verified by
 * bundle.pem, a->cur_cert authenticating us) with a new key; installs the
 * answer with <bundle_pem>. */
static int
obtain(struct agent *a, int enroll, const char *bundle_pem,
    struct mtls_error *err)
{
	EVP_PKEY *key = NULL;
	char *csr = NULL, *body = NULL;
	const char *chain, *bundle;
	struct buf b = { 0 };
	json_t *o = NULL, *r = NULL;
	int st, rv = -1;

	if (new_csr(&key, &csr, err) != 0)
		goto out;
	o = json_object();
	if (enroll)
		json_object_set_new(o, "token", esc_jstr(a->token));
	json_object_set_new(o, "csr", esc_jstr(csr));
	body = json_dumps(o, JSON_COMPACT);
	if (body == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	st = call(a, "POST", enroll ? "/v1/enroll" : "/v1/renew", body,
	    enroll ? TRUST_PIN : TRUST_BUNDLE, !enroll, &b, err);
	if (st < 0)
		goto out;
	if (st != 200) {
		api_error(err, st, enroll ? "enroll" : "renew", &b);
		goto out;
	}
	r = json_loads(b.p, 0, NULL);
	chain = json_string_value(json_object_get(r, "certificate"));
	bundle = json_string_value(json_object_get(r, "bundle"));
	if (chain == NULL || bundle == NULL) {
		error_set(err, MTLS_ERR_PARSE, "the CA's answer has no "
		    "certificate or bundle");
		goto out;
	}
	if (install(a, key, chain, bundle_pem, enroll ? TRUST_PIN :
	    TRUST_BUNDLE, enroll ? "enroll" : "renew", err) != 0)
		goto out;
	rv = 0;
 out:
	if (body)
		OPENSSL_cleanse(body, strlen(body));
	free(body);
	free(csr);
	free(b.p);
	json_decref(o);
	json_decref(r);
	EVP_PKEY_free(key);
	return rv;
}

/* <cert> and <key> readable and the certificate not expired: sets
 * not_after and serial. */
static int
load_current(struct agent *a, const char *cert, const char *key)
{
	STACK_OF(X509) *chain = NULL;
	struct mtls_error e;
	int ok;

	if (access(cert, R_OK) != 0 || access(key, R_OK) != 0 ||
	    certs_load(cert, &chain, &e) != 0)
		return -1;
	a->not_after = asn1_time_unix(X509_get0_notAfter(sk_X509_value(chain,
	    0)));
	serial_hex(X509_get0_serialNumber(sk_X509_value(chain, 0)), a->serial,
	    sizeof(a->serial));
	sk_X509_pop_free(chain, X509_free);
	ok = a->not_after > (int64_t)time(NULL);
	return ok ? 0 : -1;
}

/*
 * The token file: "mtls2.<root SHA-256>.<CA SHA-256>.<secret>" (64 lower
 * hex each, the secret 43 base64url characters; ca_token_create). An
 * "mtls1." token pins only the root, which a sibling CA's server under the
 * same root also chains to: refused (fail closed), never sent.
 */
static int
read_token(struct agent *a, struct mtls_error *err)
{
	static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmno"
	    "pqrstuvwxyz0123456789-_";
	const size_t pre = 6, fp = 64, sec = 43;
	uint8_t *buf;
	size_t len;

	if (fs_read(a->o->token_file, 4096, &buf, &len, err) != 0)
		return -1;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
	    buf[len - 1] == ' '))
		len--;
	if (len >= pre && memcmp(buf, "mtls1.", pre) == 0) {
		OPENSSL_cleanse(buf, len);
		free(buf);
		return error_set(err, MTLS_ERR_PARSE, "%s: this token pins only "
		    "the root; create a new one with mtls ca token create",
		    a->o->token_file);
	}
	if (len == 0 || len >= sizeof(a->token) || len < pre ||
	    memcmp(buf, "mtls2.", pre) != 0 || memchr(buf, '\0', len) != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
		return error_set(err, MTLS_ERR_PARSE, "%s: not an mtls join "
		    "token (mtls ca token create prints one)",
		    a->o->token_file);
	}
	memcpy(a->token, buf, len);
	a->token[len] = '\0';
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (len != pre + fp + 1 + fp + 1 + sec || a->token[pre + fp] != '.' ||
	    a->token[pre + 2 * fp + 1] != '.' ||
	    strspn(a->token + pre, "0123456789abcdef") != fp ||
	    strspn(a->token + pre + fp + 1, "0123456789abcdef") != fp ||
	    strspn(a->token + pre + 2 * fp + 2, b64url) != sec) {
		OPENSSL_cleanse(a->token, sizeof(a->token));
		return error_set(err, MTLS_ERR_PARSE, "%s: malformed token: "
		    "want mtls2.<root sha256>.<CA sha256>.<secret> (64, 64 "
		    "lower hex, 43 base64url characters; mtls ca token create "
		    "prints one)", a->o->token_file);
	}
	memcpy(a->pin, a->token + pre, fp);
	a->pin[fp] = '\0';
	memcpy(a->ca_pin, a->token + pre + fp + 1, fp);
	a->ca_pin[fp] = '\0';
	return 0;
}

/* --ca-bundle: the operator's roots for the CA server, copied into out-dir
 * (a token's pin decides instead when enrolling) as our PEM of the
 * certificates it holds, like every bundle.pem; without it, renewals need
 * the bundle.pem an enrollment wrote. */
static int
copy_ca_bundle(struct agent *a, struct mtls_error *err)
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

		rv = k8s_swap(a, &f, 1, 0, err);
	} else
		rv = fs_write_atomic(a->bundle, pem, len, 0644, 1, err);
	free(pem);
	sk_X509_pop_free(certs, X509_free);
	return rv;
}

/* Enrollment with the token, in the three steps of this file's comment. */
static int
enroll(struct agent *a, struct mtls_error *err)
{
	char *probe = NULL, *pem = NULL;
	int rv = -1;

	if (fetch_bundle(a, TRUST_NONE, &probe, &a->pinned, err) != 0 ||
	    fetch_bundle(a, TRUST_PIN, &pem, NULL, err) != 0 ||
	    obtain(a, 1, pem, err) != 0)
		goto out;
	rv = 0;
 out:
	free(probe);
	free(pem);
	X509_free(a->pinned);
	a->pinned = NULL;
	X509_free(a->srv_ca);
	a->srv_ca = NULL;
	return rv;
}

/*
 * After a renewal refused because a->cur_cert is revoked: when that is the
 * installed out-dir/svid.pem, it and its key leave out-dir, so that no
 * proxy loads them again and a restart does not take them for valid files
 * (it enrolls with a new token instead). --cert/--key were never installed
 * and stay where the operator put them.
 */
static void
drop_revoked(struct agent *a)
{
	struct mtls_error e;
	json_t *o;

	if (a->cur_cert != a->svid)
		return;
	if (a->o->layout_k8s) {
		/* ..data without tls.*, then the links to them */
		if (k8s_swap(a, NULL, 0, 1, &e) != 0)
			ERR_clear_error();
	}
	(void)unlink(a->svid);
	(void)unlink(a->svid_key);
	if (fs_fsync_dir(a->o->out_dir, &e) != 0)
		ERR_clear_error();
	a->cur_cert = a->cur_key = NULL;
	o = json_object();
	json_object_set_new(o, "serial", esc_jstr(a->serial));
	json_object_set_new(o, "removed", esc_jstr(a->svid));
	log_emit("error", "revoked", o);
	json_decref(o);
}

/* a->renewing: the leaf of a->cur_cert (a reference). */
static int
renewing_load(struct agent *a, struct mtls_error *err)
{
	STACK_OF(X509) *mine = NULL;

	X509_free(a->renewing);
	a->renewing = NULL;
	if (certs_load(a->cur_cert, &mine, err) != 0)
		return -1;
	if (X509_up_ref(sk_X509_value(mine, 0)))
		a->renewing = sk_X509_value(mine, 0);
	sk_X509_pop_free(mine, X509_free);
	return a->renewing != NULL ? 0 : error_set(err, MTLS_ERR_NOMEM,
	    "out of memory");
}

/* One renewal: fresh roots (they rotate) over a connection verified by the
 * current ones, then the certificate; both installed only together. */
static int
renew(struct agent *a, struct mtls_error *err)
{
	char *pem = NULL;
	int rv = -1;

	a->skewed = SKEW_NONE;
	if (a->cur_cert == NULL)
		return error_set(err, MTLS_ERR_ARG, "no certificate to renew "
		    "with in %s: enroll again with --token-file",
		    a->o->out_dir);
	/* the CA server must be the CA that issued it (serving_ca) */
	if (renewing_load(a, err) != 0)
		return -1;
	if (fetch_bundle(a, TRUST_BUNDLE, &pem, NULL, err) == 0 &&
	    obtain(a, 0, pem, err) == 0)
		rv = 0;
	else if (err->fail == MTLS_FAIL_REVOKED && a->srv_ca != NULL)
		drop_revoked(a);	/* said by that CA, over verified TLS */
	free(pem);
	X509_free(a->renewing);
	a->renewing = NULL;
	return rv;
}

/* 0: renew when due (a->renew_at), 1: enrolled now, -1: failed. */
static int
first(struct agent *a, struct mtls_error *err)
{
	a->skewed = SKEW_NONE;
	if (load_current(a, a->svid, a->svid_key) == 0) {
		/* valid files: renew them when due */
		a->cur_cert = a->svid;
		a->cur_key = a->svid_key;
		schedule(a);
		return copy_ca_bundle(a, err);
	}
	if (a->o->cert != NULL) {
		/* not copied into out-dir: only a renewal's answer is
		 * installed (a revoked --cert must never be), so it is due
		 * now */
		if (load_current(a, a->o->cert, a->o->key) != 0)
			return error_set(err, MTLS_ERR_ARG, "--cert %s or --key "
			    "%s: unreadable, or the certificate has expired: "
			    "enroll again with --token-file", a->o->cert,
			    a->o->key);
		a->cur_cert = a->o->cert;
		a->cur_key = a->o->key;
		a->renew_at = (int64_t)time(NULL);
		return copy_ca_bundle(a, err);
	}
	if (a->o->token_file == NULL)
		return error_set(err, MTLS_ERR_ARG, "no valid certificate in "
		    "%s: give --token-file", a->o->out_dir);
	if (read_token(a, err) != 0 || enroll(a, err) != 0)
		return -1;
	return 1;
}

static void
log_error(const char *event, const struct mtls_error *err, int64_t retry_s)
{
	json_t *o = json_object();

	json_object_set_new(o, "error", esc_jstr(err->msg));
	if (retry_s >= 0)
		json_object_set_new(o, "retry_in_s", json_integer(retry_s));
	log_emit("warn", event, o);
	json_decref(o);
}

static void
sleep_until(int64_t t)
{
	while (!stop && (int64_t)time(NULL) < t)
		poll(NULL, 0, 200);
}

/*
 * --out-dir holds the key and the roots a proxy trusts: it must be a
 * directory of this user that nobody else can write (else another user
 * could swap bundle.pem or svid.pem under us). Created 0700 if missing.
 * The files inside are not checked: only this user (or root) can have
 * put them there, and every write replaces a file by rename with its own
 * mode.
 */
static int
check_out_dir(const char *dir, struct mtls_error *err)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return error_set_errno(err, MTLS_ERR_IO, "--out-dir %s", dir);
	if (stat(dir, &st) != 0)
		return error_set_errno(err, MTLS_ERR_IO, "--out-dir %s", dir);
	if (!S_ISDIR(st.st_mode))
		return error_set(err, MTLS_ERR_ARG, "--out-dir %s is not a "
		    "directory", dir);
	return fs_check_private(dir, "--out-dir ", ", or give a new path (it "
	    "is created 0700)", err);
}

static int
setup(struct agent *a, const struct agent_opts *o, struct mtls_error *err)
{
	memset(a, 0, sizeof(*a));
	a->o = o;
	if ((size_t)snprintf(a->svid, sizeof(a->svid), "%s/svid.pem",
	    o->out_dir) >= sizeof(a->svid))
		return error_set(err, MTLS_ERR_ARG, "--out-dir is too long");
	snprintf(a->svid_key, sizeof(a->svid_key), "%s/svid.key", o->out_dir);
	snprintf(a->bundle, sizeof(a->bundle), "%s/bundle.pem", o->out_dir);
	if (o->layout_k8s) {
		snprintf(a->svid, sizeof(a->svid), "%s/tls.crt", o->out_dir);
		snprintf(a->svid_key, sizeof(a->svid_key), "%s/tls.key",
		    o->out_dir);
		snprintf(a->bundle, sizeof(a->bundle), "%s/ca.crt",
		    o->out_dir);
	}
	if (check_out_dir(o->out_dir, err) != 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return 0;
}

/* Renews when due until stopped (0) or the certificate is revoked (-1,
 * err set); other failures back off. */
static int
renew_loop(struct agent *a, struct mtls_error *err)
{
	int64_t backoff = 1, now, left, wait;

	while (!stop) {
		sleep_until(a->renew_at);
		if (stop)
			break;
		error_clear(err);
		if (renew(a, err) == 0) {
			backoff = 1;
			continue;
		}
		if (err->fail == MTLS_FAIL_REVOKED) {
			/* permanent: retrying would only ask again */
			log_error("renew_refused", err, -1);
			return -1;
		}
		now = (int64_t)time(NULL);
		left = a->not_after - now;
		/* back off, but never past a quarter of what is left; after
		 * clock skew at least SKEW_RETRY (asking sooner cannot help) */
		wait = backoff < left / 4 || left < 4 ? backoff : left / 4;
		if (a->skewed && wait < SKEW_RETRY)
			wait = backoff > SKEW_RETRY ? backoff : SKEW_RETRY;
		log_error("renew_failed", err, wait);
		a->renew_at = now + wait;
		backoff = backoff * 2 > 60 ? 60 : backoff * 2;
	}
	return 0;
}

int
agent_run(const struct agent_opts *o, struct mtls_error *err)
{
	struct agent a;
	struct sigaction sa;
	int64_t backoff = 1, wait;
	int r, rv = -1;

	if (setup(&a, o, err) != 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* enrollment: retried like renewals unless --once, a bad argument, or
	 * a server that is not the token's CA (nothing to wait for) */
	for (;;) {
		r = first(&a, err);
		if (r >= 0)
			break;
		/* the token was spent on a certificate our clock refused */
		if (o->once || err->code == MTLS_ERR_ARG ||
		    err->code == MTLS_ERR_PARSE || a.skewed == SKEW_ISSUED ||
		    err->fail == MTLS_FAIL_UNKNOWN_CA ||
		    err->fail == MTLS_FAIL_IDENTITY_MISMATCH)
			goto out;
		wait = a.skewed && backoff < SKEW_RETRY ? SKEW_RETRY : backoff;
		log_error("enroll_failed", err, wait);
		sleep_until((int64_t)time(NULL) + wait);
		if (stop)
			goto out;
		backoff = backoff * 2 > 60 ? 60 : backoff * 2;
	}
	if (o->once) {
		/* --once with a valid certificate: renew it now */
		if (r == 0 && renew(&a, err) != 0)
			goto out;
		rv = 0;
		goto out;
	}
	if (renew_loop(&a, err) != 0)
		goto out;
	rv = 0;
 out:
	OPENSSL_cleanse(a.token, sizeof(a.token));
	X509_free(a.srv_ca);
	curl_global_cleanup();
	return rv;
}

static void *
renew_thread(void *arg)
{
	struct mtls_error err;

	error_clear(&err);
	(void)renew_loop(arg, &err);	/* logged; the proxy keeps serving */
	return NULL;
}

int
agent_background(const struct agent_opts *o, struct mtls_error *err)
{
	struct agent *a = malloc(sizeof(*a));
	sigset_t all, old;
	pthread_attr_t at;
	pthread_t th;
	int r;

	if (a == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (setup(a, o, err) != 0 || (r = first(a, err)) < 0) {
		OPENSSL_cleanse(a->token, sizeof(a->token));
		free(a);
		return -1;
	}
	OPENSSL_cleanse(a->token, sizeof(a->token));
	if (r == 0 && a->cur_cert != a->svid) {
		/* --cert: the proxy needs installed files before it starts */
		if (renew(a, err) != 0) {
			free(a);
			return -1;
		}
	}
	/* signals belong to the host process's own handling (the proxy's
	 * signalfd): the thread, and curl's threads, start with them blocked */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&th, &at, renew_thread, a);
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		free(a);
		return error_set(err, MTLS_ERR_NOMEM, "cannot start the agent "
		    "thread");
	}
	return 0;	/* <a> lives as long as the process */
}
