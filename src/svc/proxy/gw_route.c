/*
 * The gateway's routes (gw_int.h): matching a request by host and longest
 * path prefix, the per-route authorization of the peer, the checks of a
 * route's config, each mTLS upstream's client context, and the per-route
 * metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/gw_int.h"

/* ---- routes ---- */

static int
prefix_match(const char *prefix, const char *path)
{
	size_t n = strlen(prefix);

	if (strncmp(prefix, path, n) != 0)
		return 0;
	/* on a segment boundary: "/api" matches "/api" and "/api/x", not
	 * "/apix" */
	return n > 0 && (prefix[n - 1] == '/' || path[n] == '\0' ||
	    path[n] == '/');
}

struct route *
route_find(struct gw *gw, const char *host, size_t hlen, const char *path)
{
	struct route *best = NULL;
	size_t best_len = 0, i;
	int best_host = 0;

	for (i = 0; i < gw->n_routes; i++) {
		const struct proxy_route *r = gw->routes[i].r;
		size_t n = strlen(r->path);
		int has_host = r->host != NULL;

		/* both sides normalized (http_host_normalize) */
		if (has_host && !(strlen(gw->routes[i].host) == hlen &&
		    memcmp(host, gw->routes[i].host, hlen) == 0))
			continue;
		if (!prefix_match(r->path, path))
			continue;
		if (best == NULL || n > best_len || (n == best_len &&
		    has_host && !best_host)) {
			best = &gw->routes[i];
			best_len = n;
			best_host = has_host;
		}
	}
	return best;
}

/* The route's rules against every identity of the peer. */
int
route_allows(const struct proxy_route *r, const struct ids *ids)
{
	return r->allow_any || rules_match_ids(r->allow, r->n_allow, ids, 0) >= 0;
}

/* Checks that route <r>'s host and path are in the normal form requests
 * are routed in (a route that can never match is a config error); the
 * host's normal form into <host> when given. */
int
route_norm(const struct proxy_route *r, char *host, size_t hostsz,
    struct mtls_error *err)
{
	char h[264] = "", t[2048];
	size_t hl = 0, pl;
	const char *why = NULL;

	if (r->host != NULL) {
		if (http_host_normalize(r->host, strlen(r->host), h, sizeof(h),
		    &hl, &why) != 0)
			return error_set(err, MTLS_ERR_ARG, "route %s: host "
			    "'%s': %s", r->name, r->host, why);
		if (hl == 0 || h[hl] != '\0')
			return error_set(err, MTLS_ERR_ARG, "route %s: host "
			    "'%s': give a host name without a port", r->name,
			    r->host);
	}
	if (r->path != NULL && (http_target_normalize(r->path,
	    strlen(r->path), t, sizeof(t), &pl, &why) != 0 || pl !=
	    strlen(t) || strcmp(t, r->path) != 0))
		return error_set(err, MTLS_ERR_ARG, "route %s: path '%s' is "
		    "not in normal form (requests are matched after "
		    "normalization): %s", r->name, r->path, why ? why :
		    "write it with unreserved bytes unescaped, other escapes "
		    "in upper case, no dot segments and no query");
	if (host != NULL && hostsz > 0)
		snprintf(host, hostsz, "%s", h);
	return 0;
}

int
gw_check(const struct proxy_listener *l, struct mtls_error *err)
{
	size_t i;

	if (l->n_routes == 0)
		return error_set(err, MTLS_ERR_ARG, "listener %s: http mode "
		    "needs at least one route", l->name);
	for (i = 0; i < l->n_routes; i++) {
		const struct proxy_route *r = l->routes[i];
		struct sockaddr_storage ss;
		socklen_t sl;

		if (r->upstream == NULL)
			return error_set(err, MTLS_ERR_ARG, "route %s: no "
			    "upstream", r->name);
		if (r->path == NULL || r->path[0] != '/')
			return error_set(err, MTLS_ERR_ARG, "route %s: path "
			    "must start with '/'", r->name);
		if (route_norm(r, NULL, 0, err) != 0)
			return -1;
		/* fail closed, as for a TCP listener */
		if (!r->optional && !r->allow_any && r->n_allow == 0)
			return error_set(err, MTLS_ERR_ARG, "route %s lets any "
			    "client in: give it allow rules, allow_any = true "
			    "(any certificate that chains to ca) or "
			    "client_cert = optional (public)", r->name);
		if (r->up_tls && r->n_up_expect == 0)
			return error_set(err, MTLS_ERR_ARG, "route %s: an mTLS "
			    "upstream needs upstream_expect (its identity)",
			    r->name);
		if (addr_parse(r->upstream, "upstream", &ss, &sl,
		    err) != 0)
			return -1;
		if (!r->up_tls && !l->unsafe_target &&
		    !addr_is_local(&ss))
			return error_set(err, MTLS_ERR_ARG, "route %s: upstream "
			    "%s is not loopback: plaintext would leave this "
			    "host (use upstream_tls, or unsafe_target = true "
			    "if that is really meant)", r->name, r->upstream);
	}
	return 0;
}

/* ---- each mTLS upstream's client context ---- */

/* The client context of an mTLS upstream: our certificate (the route's,
 * else the listener's), its bundle, its expected identity; ALPN
 * http/1.1. */
int
route_client(struct gw *gw, struct route *rt, struct mtls_error *err)
{
	const struct proxy_route *r = rt->r;
	const struct proxy_listener *l = gw->l;
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *cli = mtls_client();
	size_t i;

	if (cfg == NULL || cli == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (mtls_config_set_identity_file(cfg, r->up_cert ? r->up_cert :
	    l->cert, r->up_key ? r->up_key : l->key) != 0 ||
	    mtls_config_set_trust_file(cfg, r->up_ca ? r->up_ca : l->ca) != 0 ||
	    mtls_config_set_alpn(cfg, "http/1.1") != 0)
		goto cfgerr;
	for (i = 0; i < r->n_up_expect; i++)
		if (mtls_config_add_expect(cfg, r->up_expect[i]) != 0)
			goto cfgerr;
	if (mtls_configure(cli, cfg) != 0) {
		error_set(err, MTLS_ERR_ARG, "route %s: upstream TLS: %s",
		    rt->name, mtls_error(cli));
		goto fail;
	}
	mtls_config_free(cfg);
	pthread_mutex_lock(&rt->mu);
	mtls_free(rt->cli);
	rt->cli = cli;
	pthread_mutex_unlock(&rt->mu);
	return 0;
 cfgerr:
	error_set(err, MTLS_ERR_ARG, "route %s: upstream TLS: %s", rt->name,
	    mtls_config_error(cfg));
 fail:
	mtls_config_free(cfg);
	mtls_free(cli);
	return -1;
}

static void
metrics_route(FILE *f, const char *listener, const struct route *rt)
{
	int k;

	for (k = 100; k < 600; k++) {
		uint64_t v = __atomic_load_n(&rt->m_code[k], __ATOMIC_RELAXED);

		if (v > 0)
			fprintf(f, "mtls_http_requests_total{listener=\"%s\","
			    "route=\"%s\",code=\"%d\"} %llu\n", listener,
			    rt->name, k, (unsigned long long)v);
	}
}

char *
gw_metrics(struct gw *gw, int help)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	if (help)
		fprintf(f, "# HELP mtls_http_requests_total HTTP requests by "
		    "route and status.\n# TYPE mtls_http_requests_total "
		    "counter\n");
	metrics_route(f, gw->l->name, &gw->none);
	for (i = 0; i < gw->n_routes; i++)
		metrics_route(f, gw->l->name, &gw->routes[i]);
	if (help)
		fprintf(f, "# HELP mtls_http_upstream_connections_total "
		    "Upstream connections: opened (a TLS handshake each for "
		    "mTLS upstreams), reused from the pool, failed.\n# TYPE "
		    "mtls_http_upstream_connections_total counter\n");
	for (i = 0; i < gw->n_routes; i++) {
		const struct route *rt = &gw->routes[i];

		fprintf(f, "mtls_http_upstream_connections_total{listener="
		    "\"%s\",route=\"%s\",event=\"opened\"} %llu\n",
		    gw->l->name, rt->name, (unsigned long long)
		    __atomic_load_n(&rt->m_connects, __ATOMIC_RELAXED));
		fprintf(f, "mtls_http_upstream_connections_total{listener="
		    "\"%s\",route=\"%s\",event=\"reused\"} %llu\n",
		    gw->l->name, rt->name, (unsigned long long)
		    __atomic_load_n(&rt->m_reused, __ATOMIC_RELAXED));
		fprintf(f, "mtls_http_upstream_connections_total{listener="
		    "\"%s\",route=\"%s\",event=\"failed\"} %llu\n",
		    gw->l->name, rt->name, (unsigned long long)
		    __atomic_load_n(&rt->m_failed, __ATOMIC_RELAXED));
	}
	fclose(f);
	return buf;
}
