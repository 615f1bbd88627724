/*
 * Federated trust domains' bundles fetched from their SPIFFE bundle
 * endpoints (ca = TD:https://..., SPIFFE Federation's https_web profile:
 * TLS verified by a pinned root, bundle_root = TD:PATH, or by the Web PKI),
 * on the fetcher thread beside the CRLs and staples (revfetch.c, whose
 * loop calls bundlefetch_due and whose wake-up rebuilds the config).
 *
 * A bundle is admitted when it parses (a SPIFFE JWK Set or PEM), holds at
 * least one root, every one a CA certificate, and libmtls takes it for
 * that trust domain; a bundle that drops every root is refused, as is any
 * other bad one (logged, counted; the last good bundle stays). A failed
 * fetch keeps the last good bundle too and is retried with back-off (2 s
 * doubling, at most the refresh interval). The first fetch, at start,
 * must succeed: a listener never starts without a partner it was told to
 * trust.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "http/http.h"
#include "proxy/proxy_int.h"

/* How often entry <i> is fetched: bundle_refresh when given, else the
 * bundle's own spiffe_refresh_hint (within 30 s .. 1 h), else 5 min. */
static int64_t
interval(const struct lstate *ls, size_t i)
{
	int64_t h = ls->bundle_hint_s[i];

	if (ls->l->bundle_refresh_ms > 0)
		return ls->l->bundle_refresh_ms;
	if (h <= 0)
		return PROXY_BUNDLE_REFRESH_MS;
	return (h < 30 ? 30 : h > 3600 ? 3600 : h) * 1000;
}

/* The spiffe_refresh_hint of a JSON bundle, seconds; 0 none. */
static int64_t
refresh_hint(const uint8_t *buf, size_t len)
{
	json_t *top = json_loadb((const char *)buf, len, 0, NULL);
	json_t *h = json_object_get(top, "spiffe_refresh_hint");
	int64_t s = json_is_integer(h) ? (int64_t)json_integer_value(h) : 0;

	json_decref(top);
	return s > 0 ? s : 0;
}

int
bundlefetch_wanted(const struct proxy_listener *l)
{
	size_t i;

	for (i = 0; i < l->n_ca; i++)
		if (ca_is_url(l->ca_path[i]))
			return 1;
	return 0;
}

static void
bundle_log(const char *level, const char *event, const struct lstate *ls,
    size_t i, int roots, const char *error)
{
	json_t *o = json_object();

	json_object_set_new(o, "listener", esc_jstr(ls->l->name));
	json_object_set_new(o, "trust_domain", esc_jstr(ls->l->ca_td[i]));
	json_object_set_new(o, "url", esc_jstr(ls->l->ca_path[i]));
	if (roots >= 0)
		json_object_set_new(o, "roots", json_integer(roots));
	if (error != NULL)
		json_object_set_new(o, "error", esc_jstr(error));
	log_emit(level, event, o);
	json_decref(o);
}

/* The listener's other ca entries (our own bundle, the other trust
 * domains' files and last good bundles) into the scratch config <cfg>, so
 * that libmtls judges entry <i> beside them (one root, one trust domain:
 * a partner serving our root or another partner's is refused). An entry
 * that does not load now is left out: config_build will say why. */
static void
admit_others(struct proxy *p, const struct lstate *ls, size_t i,
    struct mtls_config *cfg)
{
	const struct proxy_listener *l = ls->l;
	uint8_t *der;
	size_t j, len;

	for (j = 0; j < l->n_ca; j++) {
		if (j == i)
			continue;
		if (!ca_is_url(l->ca_path[j])) {
			(void)(l->ca_td[j][0] == '\0' ?
			    mtls_config_set_trust_file(cfg, l->ca_path[j]) :
			    mtls_config_add_trust_domain_file(cfg,
			    l->ca_td[j], l->ca_path[j]));
			continue;
		}
		pthread_mutex_lock(&p->mu);
		len = ls->fbundle[j].len;
		der = ls->fbundle[j].der != NULL ?
		    bytes_dup(ls->fbundle[j].der, len) : NULL;
		pthread_mutex_unlock(&p->mu);
		if (der != NULL)
			(void)mtls_config_add_trust_domain_mem(cfg,
			    l->ca_td[j], der, len);
		free(der);
	}
}

/* Whether <buf> may become the bundle of <ls>'s entry <i>: the number of
 * its roots, or -1 with <e>. */
static int
bundle_admit(struct proxy *p, const struct lstate *ls, size_t i,
    const uint8_t *buf, size_t len, struct mtls_error *e)
{
	const char *td = ls->l->ca_td[i], *src = ls->l->ca_path[i];
	STACK_OF(X509) *sk = NULL;
	struct mtls_config *cfg;
	char label[256];
	int k, n = -1;

	if (certs_parse(buf, len, src, &sk, e) != 0)
		return -1;
	if (sk_X509_num(sk) == 0) {
		error_set(e, MTLS_ERR_PARSE, "%s: the bundle has no root; "
		    "refused (the last good one stays)", src);
		goto out;
	}
	for (k = 0; k < sk_X509_num(sk); k++)
		if (X509_check_ca(sk_X509_value(sk, k)) < 1) {
			cert_label(sk_X509_value(sk, k), label, sizeof(label));
			error_set(e, MTLS_ERR_PARSE, "%s: %s is not a CA "
			    "certificate; refused", src, label);
			goto out;
		}
	/* what config_build will do with it, on a scratch config */
	if ((cfg = mtls_config_new()) == NULL) {
		error_set(e, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	admit_others(p, ls, i, cfg);
	if (mtls_config_add_trust_domain_mem(cfg, td, buf, len) != 0)
		error_copy(e, config_error(cfg));
	else
		n = sk_X509_num(sk);
	mtls_config_free(cfg);
 out:
	sk_X509_pop_free(sk, X509_free);
	return n;
}

/* Fetches entry <i> of <ls>: 1 a new bundle admitted, 0 the same, -1
 * failed or refused (<e>; the last good one stays). */
static int
fetch_one(struct proxy *p, struct lstate *ls, size_t i, struct mtls_error *e)
{
	const struct proxy_listener *l = ls->l;
	uint8_t *buf = NULL, h[32];
	size_t len = 0;
	char msg[512];
	int same, roots;

	error_clear(e);
	if (http_fetch(l->ca_path[i], l->ca_root[i], 10, MTLS_MAX_FILE, &buf,
	    &len, msg, sizeof(msg)) != 0) {
		free(buf);
		bundle_log("warn", "bundle_fetch", ls, i, -1, msg);
		return error_set(e, MTLS_ERR_IO, "%s's bundle from %s: %s",
		    l->ca_td[i], l->ca_path[i], msg);
	}
	SHA256(buf, len, h);
	pthread_mutex_lock(&p->mu);
	same = ls->fbundle[i].der != NULL &&
	    memcmp(h, ls->fbundle[i].hash, 32) == 0;
	pthread_mutex_unlock(&p->mu);
	if (same) {
		free(buf);
		return 0;
	}
	if ((roots = bundle_admit(p, ls, i, buf, len, e)) < 0) {
		free(buf);
		__atomic_add_fetch(&p->m_bundle_rejected, 1, __ATOMIC_RELAXED);
		bundle_log("error", "bundle_rejected", ls, i, -1, e->msg);
		return -1;
	}
	pthread_mutex_lock(&p->mu);
	free(ls->fbundle[i].der);
	ls->fbundle[i].der = buf;
	ls->fbundle[i].len = len;
	memcpy(ls->fbundle[i].hash, h, 32);
	pthread_mutex_unlock(&p->mu);
	ls->bundle_hint_s[i] = refresh_hint(buf, len);
	bundle_log("info", "bundle", ls, i, roots, NULL);
	return 1;
}

int
bundlefetch_due(struct proxy *p, struct lstate *ls, int64_t now,
    int startup, struct mtls_error *err)
{
	const struct proxy_listener *l = ls->l;
	struct mtls_error e;
	int64_t iv, *bo;
	size_t i;
	int r, changed = 0;

	for (i = 0; i < l->n_ca; i++) {
		if (!ca_is_url(l->ca_path[i]) ||
		    (!startup && now < ls->bundle_next_ms[i]))
			continue;
		bo = &ls->bundle_backoff_ms[i];
		r = fetch_one(p, ls, i, &e);
		iv = interval(ls, i);
		if (r < 0 && startup) {
			error_copy(err, &e);
			return -1;
		}
		if (r < 0) {
			*bo = *bo ? *bo * 2 : 2000;
			if (*bo > iv)
				*bo = iv;
			ls->bundle_next_ms[i] = now + *bo;
			continue;
		}
		*bo = 0;
		ls->bundle_next_ms[i] = now + iv;
		changed |= r;
	}
	return changed;
}
