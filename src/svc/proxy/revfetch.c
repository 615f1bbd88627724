/*
 * Revocation state fetched for the listeners, on the fetcher thread (so
 * the main thread never waits on the network): each --crl-url CRL every
 * crl_refresh, and each inbound listener's own OCSP staple when due or
 * when its certificate changed, and the federated trust domains' bundles
 * (bundlefetch.c). A change wakes the main loop through
 * p->fetch_evfd, which builds a new config generation (reload.c).
 *
 * Every CRL, fetched or from a --crl file, passes crl_admit before it is
 * installed: it parses, a CA of --ca (or of our chain) signed it, it is
 * current, and it is not older than the one it replaces. A refused one
 * is logged (crl_rejected) and counted; the previous one stays.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/sha.h>

#include "http/http.h"
#include "proxy/proxy_int.h"

/* How often <l>'s --crl-url is fetched (60 s by default). */
int64_t
revfetch_interval(const struct proxy_listener *l)
{
	return l->crl_refresh_ms > 0 ? l->crl_refresh_ms : 60000;
}

/* One line and one count per CRL refused (the previous one stays). */
static void
crl_rejected(struct proxy *p, struct lstate *ls, const char *kind,
    const char *src, int v, const struct mtls_error *e)
{
	json_t *o = json_object();

	__atomic_add_fetch(&p->m_crl_rejected[v], 1, __ATOMIC_RELAXED);
	json_object_set_new(o, "listener", esc_jstr(ls->l->name));
	json_object_set_new(o, kind, esc_jstr(src));
	json_object_set_new(o, "reason", esc_jstr(crl_verdict_name(v)));
	json_object_set_new(o, "error", esc_jstr(e->msg));
	log_emit("warn", "crl_rejected", o);
	json_decref(o);
}

/*
 * Whether CRL bytes <buf> from <src> may replace <cur> (what that source
 * has installed; NULL: nothing yet): they parse, and crl_check passes with
 * the listener's issuers (the --ca bundle, our own chain under it), at the
 * time now, not older than <cur>. CRL_OK, or the verdict with <e>.
 */
static int
crl_admit(const struct proxy_listener *l, const char *src, const uint8_t *buf,
    size_t len, const uint8_t *cur, size_t cur_len, struct mtls_error *e)
{
	STACK_OF(X509_CRL) *sk = NULL, *inst = NULL;
	STACK_OF(X509) *trust = NULL, *own = NULL;
	int v = CRL_MALFORMED;

	error_clear(e);
	if (crls_parse(buf, len, src, &sk, e) != 0)
		goto out;
	v = CRL_UNKNOWN_ISSUER;
	if (certs_load(l->ca, &trust, e) != 0 ||
	    certs_load(l->cert, &own, e) != 0)
		goto out;
	v = CRL_MALFORMED;
	if (cur != NULL && crls_parse(cur, cur_len, src, &inst, e) != 0)
		goto out;
	v = crl_check(sk, src, trust, own, inst, CRL_CHECK_STRICT |
	    CRL_CHECK_TIME, (int64_t)time(NULL), e);
 out:
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	sk_X509_CRL_pop_free(inst, X509_CRL_free);
	sk_X509_pop_free(trust, X509_free);
	sk_X509_pop_free(own, X509_free);
	return v;
}

/* Fetches <ls>'s CRL URL; 1 when a new CRL passed crl_admit (then stored),
 * 0 when the same, -1 on failure or refusal (logged and counted; the
 * previous CRL stays; <err> says why). */
int
revfetch_crl(struct proxy *p, struct lstate *ls, struct mtls_error *err)
{
	struct mtls_error e;
	uint8_t *buf = NULL, *cur, h[32];
	size_t len = 0, cur_len;
	char msg[512];
	json_t *o;
	int v, same, oom;

	if (http_fetch(ls->l->crl_url, ls->l->ca, 10, MTLS_MAX_FILE, &buf, &len,
	    msg, sizeof(msg)) != 0) {
		o = json_object();
		json_object_set_new(o, "listener", esc_jstr(ls->l->name));
		json_object_set_new(o, "url", esc_jstr(ls->l->crl_url));
		json_object_set_new(o, "error", esc_jstr(msg));
		log_emit("warn", "crl_fetch", o);
		json_decref(o);
		error_set(err, MTLS_ERR_IO, "--crl-url %s: cannot fetch the "
		    "CRL: %s", ls->l->crl_url, msg);
		free(buf);
		return -1;
	}
	SHA256(buf, len, h);
	pthread_mutex_lock(&p->mu);
	same = ls->crl != NULL && memcmp(h, ls->crl_hash, 32) == 0;
	cur = bytes_dup(ls->crl, cur_len = ls->crl_len);
	oom = ls->crl != NULL && cur == NULL;
	pthread_mutex_unlock(&p->mu);
	if (same || oom) {
		free(cur);
		free(buf);
		if (oom)
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
		return oom ? -1 : 0;
	}
	v = crl_admit(ls->l, ls->l->crl_url, buf, len, cur, cur_len, &e);
	free(cur);
	if (v != CRL_OK) {
		crl_rejected(p, ls, "url", ls->l->crl_url, v, &e);
		error_set(err, MTLS_ERR_VERIFY, "%s: %s",
		    crl_verdict_name(v), e.msg);
		free(buf);
		return -1;
	}
	pthread_mutex_lock(&p->mu);
	free(ls->crl);
	ls->crl = buf;
	ls->crl_len = len;
	memcpy(ls->crl_hash, h, 32);
	pthread_mutex_unlock(&p->mu);
	return 1;
}

/*
 * Reads each --crl file of <ls> that changed since it was installed and
 * installs it if crl_admit passes. At <startup> a file that cannot be read
 * or is refused is an error; later it is logged and counted, and the CRL
 * installed from that file stays.
 */
int
revfetch_crl_files(struct proxy *p, struct lstate *ls, int startup,
    struct mtls_error *err)
{
	const struct proxy_listener *l = ls->l;
	struct mtls_error e;
	uint8_t *buf, *cur, h[32];
	size_t i, len, cur_len;
	int v, same;

	for (i = 0; i < l->n_crls; i++) {
		error_clear(&e);
		if (fs_read(l->crls[i], MTLS_MAX_FILE, &buf, &len, &e) != 0) {
			v = CRL_MALFORMED;
			goto refused;
		}
		SHA256(buf, len, h);
		pthread_mutex_lock(&p->mu);
		same = ls->fcrl[i].der != NULL &&
		    memcmp(h, ls->fcrl[i].hash, 32) == 0;
		cur = bytes_dup(ls->fcrl[i].der, cur_len = ls->fcrl[i].len);
		pthread_mutex_unlock(&p->mu);
		if (same) {
			free(cur);
			free(buf);
			continue;
		}
		v = crl_admit(l, l->crls[i], buf, len, cur, cur_len, &e);
		free(cur);
		if (v != CRL_OK) {
			free(buf);
			goto refused;
		}
		pthread_mutex_lock(&p->mu);
		free(ls->fcrl[i].der);
		ls->fcrl[i].der = buf;
		ls->fcrl[i].len = len;
		memcpy(ls->fcrl[i].hash, h, 32);
		pthread_mutex_unlock(&p->mu);
		continue;
 refused:
		crl_rejected(p, ls, "file", l->crls[i], v, &e);
		if (startup)
			return error_set(err, MTLS_ERR_VERIFY, "--crl: %s: %s",
			    crl_verdict_name(v), e.msg);
	}
	return 0;
}

static void
staple_log(const char *level, struct lstate *ls, const char *serial,
    const char *url, const char *status, int64_t next, const char *error)
{
	json_t *o = json_object();

	json_object_set_new(o, "listener", esc_jstr(ls->l->name));
	json_object_set_new(o, "serial", esc_jstr(serial));
	if (url != NULL)
		json_object_set_new(o, "url", esc_jstr(url));
	if (status != NULL)
		json_object_set_new(o, "status", esc_jstr(status));
	if (next > 0)
		json_object_set_new(o, "next_update", json_integer(next));
	if (error != NULL)
		json_object_set_new(o, "error", esc_jstr(error));
	log_emit(level, "ocsp_staple", o);
	json_decref(o);
}

/* Replaces <ls>'s staple (NULL drops it); 1 when it changed. */
static int
staple_store(struct proxy *p, struct lstate *ls, uint8_t *der, size_t len,
    int64_t next_update)
{
	uint8_t h[32] = { 0 };
	int changed;

	if (der != NULL)
		SHA256(der, len, h);
	pthread_mutex_lock(&p->mu);
	changed = memcmp(h, ls->staple_hash, 32) != 0;
	free(ls->staple);
	ls->staple = der;
	ls->staple_len = len;
	ls->staple_next_update = next_update;
	memcpy(ls->staple_hash, h, 32);
	pthread_mutex_unlock(&p->mu);
	return changed;
}

/* Whether <der> is an OCSPResponse of status tryLater (unsigned: a
 * reason to wait, never a status to staple). */
static int
ocsp_try_later(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	int st = r != NULL ? OCSP_response_status(r) : -1;

	OCSP_RESPONSE_free(r);
	ERR_clear_error();
	return st == OCSP_RESPONSE_STATUS_TRYLATER;
}

/*
 * Fetches the OCSP status of <ls>'s own certificate from the responder it
 * names (AIA), checks it as a client would (ocsp_check) and keeps it for
 * stapling. Refreshes at half the response's validity (10 s .. 1 h); on
 * failure retries with back-off (2 s .. 60 s) and keeps the previous
 * staple until its nextUpdate. 1 when the staple changed.
 */
int
revfetch_staple(struct proxy *p, struct lstate *ls)
{
	struct mtls_config *cfg;
	STACK_OF(OPENSSL_STRING) *urls = NULL;
	X509_STORE *store = NULL;
	X509 *leaf, *issuer = NULL;
	uint8_t *req = NULL, *buf = NULL;
	size_t req_len = 0, len = 0;
	struct ocsp_result res;
	struct mtls_error e;
	char serial[64], err[512] = "";
	const char *url = NULL, *status = NULL;
	int64_t now = net_now_ms(), unow = (int64_t)time(NULL), next;
	int changed = 0;

	pthread_mutex_lock(&p->mu);
	cfg = ls->cfg;
	config_ref(cfg);
	pthread_mutex_unlock(&p->mu);
	leaf = config_leaf(cfg);
	serial_hex(X509_get0_serialNumber(leaf), serial, sizeof(serial));
	if (strcmp(serial, ls->staple_serial) != 0) {
		snprintf(ls->staple_serial, sizeof(ls->staple_serial), "%s",
		    serial);
		ls->staple_backoff_ms = 0;
		ls->staple_this_update = 0;
	}
	urls = X509_get1_ocsp(leaf);
	if (urls == NULL || sk_OPENSSL_STRING_num(urls) == 0) {
		/* nothing to staple; look again when the certificate changes */
		ls->staple_next_ms = INT64_MAX;
		changed = staple_store(p, ls, NULL, 0, 0);
		goto out;
	}
	url = sk_OPENSSL_STRING_value(urls, 0);
	error_clear(&e);
	if ((store = verify_store_new(cfg, &e)) == NULL ||
	    (issuer = ocsp_issuer(leaf, config_chain(cfg), store)) == NULL ||
	    ocsp_request(leaf, issuer, &req, &req_len, &e) != 0) {
		snprintf(err, sizeof(err), "%s", e.msg[0] ? e.msg :
		    "the issuer of our certificate is not in --ca");
		goto fail;
	}
	if (http_post(url, ls->l->ca, "application/ocsp-request", req,
	    req_len, 10, 65536, &buf, &len, err, sizeof(err)) != 0)
		goto fail;
	if (ocsp_try_later(buf, len)) {
		/* RFC 6960 2.3: the responder cannot answer now (ca serve:
		 * its store is down); the staple held stays until its
		 * nextUpdate, the next try after the back-off */
		status = "tryLater";
		pthread_mutex_lock(&p->mu);
		next = ls->staple != NULL ? ls->staple_next_update : -1;
		pthread_mutex_unlock(&p->mu);
		if (next > unow)
			snprintf(err, sizeof(err), "the OCSP responder answered "
			    "tryLater (it cannot answer now): the staple held "
			    "is kept until its nextUpdate %lld",
			    (long long)next);
		else
			snprintf(err, sizeof(err), "the OCSP responder answered "
			    "tryLater (it cannot answer now): no current "
			    "staple held");
		goto fail;
	}
	if (ocsp_check(buf, len, leaf, config_chain(cfg), store, unow, &res,
	    &e) != 0) {
		snprintf(err, sizeof(err), "%s", e.msg);
		goto fail;
	}
	/* never back to an older answer (the CRL rule): a validly signed
	 * "good" from before a revocation would otherwise be stapled again
	 * by whoever can answer at the responder's URL */
	if (res.this_update < ls->staple_this_update) {
		snprintf(err, sizeof(err), "the responder's answer (thisUpdate "
		    "%lld) is older than the staple held (%lld): kept the "
		    "newer one", (long long)res.this_update,
		    (long long)ls->staple_this_update);
		goto fail;
	}
	ls->staple_this_update = res.this_update;
	/* a revoked status is stapled too: it is the truth, and clients
	 * that check refuse us with the right reason */
	changed = staple_store(p, ls, buf, len, res.next_update);
	buf = NULL;
	next = res.next_update > 0 ? (res.next_update - unow) * 1000 / 2 :
	    3600000;
	if (next < 10000)
		next = 10000;
	if (next > 3600000)
		next = 3600000;
	ls->staple_next_ms = now + next;
	ls->staple_backoff_ms = 0;
	staple_log(res.status == V_OCSP_CERTSTATUS_GOOD ? "info" : "error", ls,
	    serial, url, res.status == V_OCSP_CERTSTATUS_GOOD ? "good" :
	    res.status == V_OCSP_CERTSTATUS_REVOKED ? "revoked" : "unknown",
	    res.next_update, NULL);
	goto out;
 fail:
	ls->staple_backoff_ms = ls->staple_backoff_ms ?
	    ls->staple_backoff_ms * 2 : 2000;
	if (ls->staple_backoff_ms > 60000)
		ls->staple_backoff_ms = 60000;
	ls->staple_next_ms = now + ls->staple_backoff_ms;
	staple_log("warn", ls, serial, url, status, 0, err);
	pthread_mutex_lock(&p->mu);
	next = ls->staple != NULL ? ls->staple_next_update : -1;
	pthread_mutex_unlock(&p->mu);
	if (next > 0 && next < unow)	/* past nextUpdate: stop stapling */
		changed = staple_store(p, ls, NULL, 0, 0);
 out:
	OPENSSL_free(req);
	free(buf);
	X509_free(issuer);
	X509_STORE_free(store);
	X509_email_free(urls);
	mtls_config_free(cfg);
	return changed;
}

int
revfetch_wants_staple(const struct lstate *ls)
{
	return !ls->l->outbound && !ls->l->staple_off;
}

/* The fetcher: every listener's CRL URL on its interval, and its own OCSP
 * staple when due or when its certificate changed; a change wakes the
 * main loop, which reloads. */
void *
revfetch_main(void *arg)
{
	struct proxy *p = arg;
	uint64_t one = 1;
	size_t k;

	while (!__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE)) {
		int64_t now = net_now_ms();

		for (k = 0; k < p->nls; k++) {
			struct lstate *ls = &p->ls[k];
			int changed = 0, renewed;

			if (ls->l->crl_url != NULL && now >= ls->crl_next_ms) {
				ls->crl_next_ms = now + revfetch_interval(ls->l);
				struct mtls_error e;

				changed |= revfetch_crl(p, ls, &e) == 1;
			}
			{
				struct mtls_error e;

				changed |= bundlefetch_due(p, ls, now, 0,
				    &e) == 1;
			}
			if (revfetch_wants_staple(ls)) {
				pthread_mutex_lock(&p->mu);
				renewed = strcmp(ls->own_serial,
				    ls->staple_serial) != 0;
				pthread_mutex_unlock(&p->mu);
				if (renewed || now >= ls->staple_next_ms)
					changed |= revfetch_staple(p, ls);
			}
			if (changed && write(p->fetch_evfd, &one,
			    sizeof(one)) < 0)
				continue;
		}
		poll(NULL, 0, 200);
	}
	return NULL;
}

int
revfetch_prepare(struct proxy *p, struct mtls_error *err)
{
	size_t li;

	for (li = 0; li < p->nls; li++)
		if ((p->ls[li].l->crl_url != NULL ||
		    bundlefetch_wanted(p->ls[li].l) ||
		    revfetch_wants_staple(&p->ls[li])) && p->fetch_evfd < 0 &&
		    (p->fetch_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
			return error_set_errno(err, MTLS_ERR_IO, "eventfd");
	return 0;
}
