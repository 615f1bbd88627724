/*
 * The agent's loop: enroll or take the files in out-dir, then renew when
 * due, backing off on failures. HTTPS is the shared libcurl client
 * (src/svc/http/client.c; call.c): the server is verified against the
 * bundle (the CA's roots, never the system's) and its name; a client
 * certificate authenticates renewals. The nouns live in call.c, bundle.c,
 * enroll.c, install.c and files.c (agent_local.h).
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
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "agent/agent_local.h"
#include "net/notify.h"

/* After a clock-skew failure the next attempt waits at least this long: a
 * clock is not fixed within seconds, and every attempt costs the CA an
 * issuance and an inventory row. */
#define SKEW_RETRY	30

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Schedules the next renewal: two thirds of the remaining life, minus up
 * to 5 % jitter so that replicas do not renew in step. */
void
agent_schedule(struct agent *a)
{
	int64_t now = (int64_t)time(NULL), left = a->not_after - now;
	uint32_t r = 0;
	int64_t jit;

	RAND_bytes((unsigned char *)&r, sizeof(r));
	jit = left > 20 ? (int64_t)(r % (uint32_t)(left / 20 + 1)) : 0;
	a->renew_at = now + (left > 0 ? left * 2 / 3 - jit : 0);
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
		if (files_k8s_swap(a, NULL, 0, 1, &e) != 0)
			ERR_clear_error();
	}
	(void)unlink(a->svid);
	if (a->tkey == NULL)
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
	if (bundle_fetch(a, TRUST_BUNDLE, &pem, NULL, err) == 0 &&
	    enroll_obtain(a, 0, pem, err) == 0)
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
	if (files_load_current(a, a->svid, a->svid_key) == 0) {
		/* valid files: renew them when due */
		a->cur_cert = a->svid;
		a->cur_key = a->svid_key;
		agent_schedule(a);
		return bundle_copy(a, err);
	}
	if (a->o->cert != NULL) {
		/* not copied into out-dir: only a renewal's answer is
		 * installed (a revoked --cert must never be), so it is due
		 * now */
		if (files_load_current(a, a->o->cert, a->o->key) != 0)
			return error_set(err, MTLS_ERR_ARG, "--cert %s or --key "
			    "%s: unreadable, or the certificate has expired: "
			    "enroll again with --token-file", a->o->cert,
			    a->o->key);
		a->cur_cert = a->o->cert;
		a->cur_key = a->o->key;
		a->renew_at = (int64_t)time(NULL);
		return bundle_copy(a, err);
	}
	if (a->o->token_file == NULL)
		return error_set(err, MTLS_ERR_ARG, "no valid certificate in "
		    "%s: give --token-file", a->o->out_dir);
	if (enroll_read_token(a, err) != 0 || enroll_run(a, err) != 0)
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
	if (files_check_out_dir(o->out_dir, err) != 0)
		return -1;
	if (o->key != NULL && keystore_is_uri(o->key) &&
	    tokenkey_setup(a, err) != 0) {
		EVP_PKEY_free(a->tkey);
		a->tkey = NULL;
		return -1;
	}
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
	notify_init();
	notify_send("READY=1");	/* a certificate is installed */
	r = renew_loop(&a, err);
	notify_send("STOPPING=1");
	if (r != 0)
		goto out;
	rv = 0;
 out:
	OPENSSL_cleanse(a.token, sizeof(a.token));
	X509_free(a.srv_ca);
	EVP_PKEY_free(a.tkey);
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
		EVP_PKEY_free(a->tkey);
		free(a);
		return -1;
	}
	OPENSSL_cleanse(a->token, sizeof(a->token));
	if (r == 0 && a->cur_cert != a->svid) {
		/* --cert: the proxy needs installed files before it starts */
		if (renew(a, err) != 0) {
			EVP_PKEY_free(a->tkey);
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
