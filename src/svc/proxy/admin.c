/*
 * The proxy's admin endpoint (--admin): /metrics (Prometheus), /healthz,
 * /readyz. It runs on its own net loop (src/svc/net) in its own thread,
 * never on the main thread, which must stay free for SIGHUP, SIGTERM and
 * reloads. Plain HTTP only on loopback; off loopback it needs
 * --admin-allow, and then it is a TLS server whose config reload.c builds
 * and reloads like an inbound listener's.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "proxy/proxy_int.h"
#include "proxy/x509memo.h"


struct sbuf {
	char	*p;
	size_t	 len, cap;
};

static void
sb_printf(struct sbuf *b, const char *fmt, ...) MTLS_PRINTF(2, 3);

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ?
		    b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->p != NULL && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t nc = (b->cap ? b->cap * 2 : 8192) + (size_t)n;
			char *np = realloc(b->p, nc);

			if (np == NULL)
				return;
			b->p = np;
			b->cap = nc;
		}
	}
}

static uint64_t
ld(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* <s> fit for a label value: quote, backslash and newline become '_' */
static const char *
label_clean(char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (s[i] == '"' || s[i] == '\\' || s[i] == '\n')
			s[i] = '_';
	return s;
}

/* the earliest nextUpdate of the CRLs in <buf> (PEM, several, or DER);
 * 0 when none */
static int64_t
crl_next(const uint8_t *buf, size_t len)
{
	const unsigned char *q = buf;
	X509_CRL *c;
	BIO *bio;
	int64_t v, first = 0;

	if (buf == NULL || len == 0 || len > INT_MAX ||
	    (bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
		return 0;
	for (;;) {
		c = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
		if (c == NULL && first == 0)	/* not PEM: DER */
			c = d2i_X509_CRL(NULL, &q, (long)len);
		if (c == NULL)
			break;
		v = X509_CRL_get0_nextUpdate(c) != NULL ?
		    asn1_time_unix(X509_CRL_get0_nextUpdate(c)) : 0;
		X509_CRL_free(c);
		if (v > 0 && (first == 0 || v < first))
			first = v;
		if (q != buf)	/* DER holds one */
			break;
	}
	ERR_clear_error();
	BIO_free(bio);
	return first;
}

#define LNAME(buf, name) \
	(snprintf((buf), sizeof(buf), "%s", (name)), label_clean(buf))

/* Validity gauges the alert rules (dist/prometheus) need, per listener:
 * our certificate's notBefore, the CA certificates' first notAfter, the
 * earliest nextUpdate of the CRLs in use and of our OCSP staple. */
static void
metrics_validity(struct proxy *p, struct sbuf *b)
{
	size_t li, i;
	char n[64];

	sb_printf(b, "# HELP mtls_cert_not_before_timestamp_seconds notBefore "
	    "of our certificate.\n# TYPE mtls_cert_not_before_timestamp_seconds"
	    " gauge\n");
	for (li = 0; li < p->nls; li++) {	/* labels: as its notAfter */
		char id[256];

		pthread_mutex_lock(&p->mu);
		snprintf(id, sizeof(id), "%s", p->ls[li].own_id);
		pthread_mutex_unlock(&p->mu);
		sb_printf(b, "mtls_cert_not_before_timestamp_seconds{id="
		    "\"%s\"} %lld\n", label_clean(id), (long long)__atomic_load_n(
		    &p->ls[li].own_not_before, __ATOMIC_RELAXED));
	}
	sb_printf(b, "# HELP mtls_ca_cert_expiry_timestamp_seconds First "
	    "notAfter among the CA certificates sent (chain) or trusted "
	    "(bundle).\n# TYPE mtls_ca_cert_expiry_timestamp_seconds gauge\n");
	for (li = 0; li < p->nls; li++)
		sb_printf(b, "mtls_ca_cert_expiry_timestamp_seconds{listener="
		    "\"%s\"} %lld\n", LNAME(n, p->ls[li].l->name), (long long)
		    __atomic_load_n(&p->ls[li].ca_not_after, __ATOMIC_RELAXED));
	sb_printf(b, "# HELP mtls_crl_next_update_timestamp_seconds Earliest "
	    "nextUpdate of the CRLs in use.\n# TYPE "
	    "mtls_crl_next_update_timestamp_seconds gauge\n"
	    "# HELP mtls_ocsp_staple_next_update_timestamp_seconds "
	    "nextUpdate of the OCSP response we staple.\n# TYPE "
	    "mtls_ocsp_staple_next_update_timestamp_seconds gauge\n");
	pthread_mutex_lock(&p->mu);
	for (li = 0; li < p->nls; li++) {
		const struct lstate *ls = &p->ls[li];
		int64_t first = crl_next(ls->crl, ls->crl_len), v;

		for (i = 0; ls->fcrl != NULL && i < ls->l->n_crls; i++) {
			v = crl_next(ls->fcrl[i].der, ls->fcrl[i].len);
			if (v > 0 && (first == 0 || v < first))
				first = v;
		}
		if (first > 0)
			sb_printf(b, "mtls_crl_next_update_timestamp_seconds{"
			    "listener=\"%s\"} %lld\n", LNAME(n, ls->l->name),
			    (long long)first);
		if (ls->staple != NULL && ls->staple_next_update > 0)
			sb_printf(b, "mtls_ocsp_staple_next_update_timestamp_"
			    "seconds{listener=\"%s\"} %lld\n",
			    LNAME(n, ls->l->name),
			    (long long)ls->staple_next_update);
	}
	pthread_mutex_unlock(&p->mu);
}

static void
metrics_text(struct proxy *p, struct sbuf *b)
{
	uint64_t cum = 0, sum = 0, cnt = 0, v, in = 0, out = 0;
	int f, r, i, k, role, cv;
	size_t li;
	struct x509memo_stats ms;
	char id[256];

	sb_printf(b, "# HELP mtls_handshakes_total TLS handshakes by result "
	    "(taxonomy code or ok).\n# TYPE mtls_handshakes_total counter\n");
	for (role = 0; role < 2; role++)
	for (f = 0; f < MTLS_FAIL_COUNT; f++)
		for (r = 0; r < 2; r++) {
			for (v = 0, i = 0; i < p->nworkers; i++)
				v += ld(&p->w[i].m_hs[role][f][r]);
			if (v == 0)
				continue;
			sb_printf(b, "mtls_handshakes_total{role=\"%s\","
			    "result=\"%s\",resumed=\"%s\"} %llu\n",
			    role ? "client" : "server", mtls_fail_name(f),
			    r ? "true" : "false", (unsigned long long)v);
		}
	sb_printf(b, "# HELP mtls_handshake_seconds Handshake duration.\n"
	    "# TYPE mtls_handshake_seconds histogram\n");
	for (k = 0; k <= HS_BUCKETS; k++) {
		for (i = 0; i < p->nworkers; i++)
			cum += ld(&p->w[i].m_hs_bucket[k]);
		if (k < HS_BUCKETS)
			sb_printf(b, "mtls_handshake_seconds_bucket{le=\"%g\"} "
			    "%llu\n", (double)hs_bucket_us[k] / 1e6,
			    (unsigned long long)cum);
	}
	cnt = cum;
	for (i = 0; i < p->nworkers; i++) {
		sum += ld(&p->w[i].m_hs_sum_us);
		in += ld(&p->w[i].m_bytes_in);
		out += ld(&p->w[i].m_bytes_out);
	}
	sb_printf(b, "mtls_handshake_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "mtls_handshake_seconds_sum %.6f\nmtls_handshake_seconds_count "
	    "%llu\n", (unsigned long long)cnt, (double)sum / 1e6,
	    (unsigned long long)cnt);
	for (v = 0, i = 0; i < p->nworkers; i++)
		v += ld(&p->w[i].m_probes);
	sb_printf(b, "# HELP mtls_probes_total Connections closed before "
	    "their peer sent a byte (port probes, health checks).\n"
	    "# TYPE mtls_probes_total counter\nmtls_probes_total %llu\n",
	    (unsigned long long)v);
	sb_printf(b, "# HELP mtls_conns_closed_total Connections closed or "
	    "refused to stay within the listeners' limits.\n"
	    "# TYPE mtls_conns_closed_total counter\n");
	for (k = 0; k < CL__COUNT; k++) {
		for (v = 0, i = 0; i < p->nworkers; i++)
			v += ld(&p->w[i].m_closed[k]);
		sb_printf(b, "mtls_conns_closed_total{reason=\"%s\"} %llu\n",
		    cl_names[k], (unsigned long long)v);
	}
	sb_printf(b, "# HELP mtls_connections_active Open connections.\n"
	    "# TYPE mtls_connections_active gauge\nmtls_connections_active "
	    "%d\n", __atomic_load_n(&p->active, __ATOMIC_RELAXED));
	sb_printf(b, "# HELP mtls_bytes_total Bytes relayed (closed "
	    "connections).\n# TYPE mtls_bytes_total counter\n"
	    "mtls_bytes_total{direction=\"in\"} %llu\n"
	    "mtls_bytes_total{direction=\"out\"} %llu\n",
	    (unsigned long long)in, (unsigned long long)out);
	sb_printf(b, "# HELP mtls_cert_expiry_timestamp_seconds notAfter of "
	    "our certificate.\n# TYPE mtls_cert_expiry_timestamp_seconds "
	    "gauge\n");
	for (li = 0; li < p->nls; li++) {
		pthread_mutex_lock(&p->mu);
		snprintf(id, sizeof(id), "%s", p->ls[li].own_id);
		pthread_mutex_unlock(&p->mu);
		sb_printf(b, "mtls_cert_expiry_timestamp_seconds{id=\"%s\"} "
		    "%lld\n", label_clean(id), (long long)__atomic_load_n(
		    &p->ls[li].own_not_after, __ATOMIC_RELAXED));
	}
	metrics_validity(p, b);
	x509memo_stats(&ms);
	sb_printf(b, "# HELP mtls_parse_memo_total Certificates and ticket "
	    "sessions TLS had to parse: answered from the memo of identical "
	    "bytes (hit) or parsed (miss).\n# TYPE mtls_parse_memo_total "
	    "counter\nmtls_parse_memo_total{kind=\"certificate\","
	    "result=\"hit\"} %llu\nmtls_parse_memo_total{kind=\"certificate\","
	    "result=\"miss\"} %llu\nmtls_parse_memo_total{kind=\"session\","
	    "result=\"hit\"} %llu\nmtls_parse_memo_total{kind=\"session\","
	    "result=\"miss\"} %llu\n", (unsigned long long)ms.cert_hits,
	    (unsigned long long)ms.cert_misses,
	    (unsigned long long)ms.session_hits,
	    (unsigned long long)ms.session_misses);
	sb_printf(b, "# HELP mtls_parse_memo_enabled 1 when the memo is on.\n"
	    "# TYPE mtls_parse_memo_enabled gauge\nmtls_parse_memo_enabled %d\n"
	    "# HELP mtls_parse_memo_entries Parses held now.\n# TYPE "
	    "mtls_parse_memo_entries gauge\nmtls_parse_memo_entries{kind="
	    "\"certificate\"} %llu\nmtls_parse_memo_entries{kind=\"session\"} "
	    "%llu\n# HELP mtls_parse_memo_cleansed_total Entries cleansed on "
	    "ticket key rotation or by age.\n# TYPE "
	    "mtls_parse_memo_cleansed_total counter\n"
	    "mtls_parse_memo_cleansed_total %llu\n", ms.enabled,
	    (unsigned long long)ms.cert_entries,
	    (unsigned long long)ms.session_entries,
	    (unsigned long long)ms.cleansed);
	sb_printf(b, "# HELP mtls_reloads_total Certificate reloads.\n"
	    "# TYPE mtls_reloads_total counter\n"
	    "mtls_reloads_total{result=\"ok\"} %llu\n"
	    "mtls_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)ld(&p->m_reload_ok),
	    (unsigned long long)ld(&p->m_reload_failed));
	sb_printf(b, "# HELP mtls_crl_rejected_total CRLs refused before "
	    "install (the previous one stayed), by reason.\n"
	    "# TYPE mtls_crl_rejected_total counter\n");
	for (cv = 1; cv < CRL_VERDICT__COUNT; cv++)
		sb_printf(b, "mtls_crl_rejected_total{reason=\"%s\"} %llu\n",
		    crl_verdict_name(cv),
		    (unsigned long long)ld(&p->m_crl_rejected[cv]));
	sb_printf(b, "# HELP mtls_bundle_rejected_total Federated trust "
	    "bundles fetched and refused (the last good one stayed).\n"
	    "# TYPE mtls_bundle_rejected_total counter\n"
	    "mtls_bundle_rejected_total %llu\n",
	    (unsigned long long)ld(&p->m_bundle_rejected));
	if (p->admin != NULL) {
		struct net_stats ns;

		net_loop_stats(p->admin, &ns);
		sb_printf(b, "# HELP mtls_admin_conns_closed_total Admin "
		    "connections closed to stay within its limits.\n"
		    "# TYPE mtls_admin_conns_closed_total counter\n"
		    "mtls_admin_conns_closed_total{reason=\"first_byte_timeout\"}"
		    " %llu\nmtls_admin_conns_closed_total{reason="
		    "\"evicted_idle\"} %llu\n",
		    (unsigned long long)ns.first_byte_timeouts,
		    (unsigned long long)ns.evicted);
		sb_printf(b, "mtls_admin_conns_closed_total{reason=\"max_conns\"} "
		    "%llu\n# HELP mtls_admin_connections_active Open admin "
		    "connections.\n# TYPE mtls_admin_connections_active gauge\n"
		    "mtls_admin_connections_active %d\n",
		    (unsigned long long)ns.full_refused, ns.open);
		if (p->admin_tls != NULL)
			sb_printf(b, "# HELP mtls_admin_refused_total Admin "
			    "handshakes refused (--admin-allow).\n# TYPE "
			    "mtls_admin_refused_total counter\n"
			    "mtls_admin_refused_total %llu\n",
			    (unsigned long long)ld(&p->m_admin_refused));
	}
	for (k = 0, li = 0; li < p->nls; li++) {
		char *g;

		if (p->gw[li] == NULL || (g = gw_metrics(p->gw[li], k++ == 0)) ==
		    NULL)
			continue;
		sb_printf(b, "%s", g);
		free(g);
	}
}

/* The admin endpoint runs on its own net loop (src/svc/net), never on
 * the main thread, which must stay free for SIGHUP, SIGTERM and reloads:
 * one silent connection used to hold it 1 s per byte it did not send. */
#define ADMIN_MAX_CONNS	64	/* probes and a scraper or two */
#define ADMIN_TIMEOUT_MS 5000	/* accept to the whole request (and the
				 * handshake, with --admin-allow) */

static void
admin_reply(struct net_conn *nc, struct mtls *t, int code, const char *status,
    const char *ctype, const char *body, size_t len)
{
	char head[256];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: "
	    "%s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", code,
	    status, ctype, len);
	int64_t deadline = net_now_ms() + ADMIN_TIMEOUT_MS;

	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	if (net_write(nc, t, head, (size_t)n, deadline) == 0)
		(void)net_write(nc, t, body, len, deadline);
}

/* A text/plain answer: its Content-Length is the text's, never a count
 * written beside it (the 503 once said 48 for 47 bytes and sent a NUL). */
static void
admin_text(struct net_conn *nc, struct mtls *t, int code, const char *status,
    const char *text)
{
	admin_reply(nc, t, code, status, "text/plain", text, strlen(text));
}

/* --admin-allow: the newest admin config into the admin thread's server
 * context (only this thread uses it, so no lock around it), then a TLS
 * connection on <nc>'s fd in *<t>. 0, or -1 (logged, counted) when the
 * peer is refused or the handshake does not finish by <deadline>. */
static int
admin_tls(struct proxy *p, struct net_conn *nc, int64_t deadline,
    struct mtls **t)
{
	struct mtls_config *cfg = NULL;
	char client[64];
	uint64_t seq;
	json_t *o;
	int r, fail;

	pthread_mutex_lock(&p->mu);
	seq = p->admin_ls.cfg_seq;
	if (seq != p->admin_seq) {
		cfg = p->admin_ls.cfg;
		config_ref(cfg);
	}
	pthread_mutex_unlock(&p->mu);
	if (cfg != NULL) {
		/* a failure keeps the previous context (reload checked it) */
		if (mtls_configure(p->admin_tls, cfg) == 0)
			p->admin_seq = seq;
		mtls_config_free(cfg);
	}
	if (mtls_accept_socket(p->admin_tls, t, net_conn_fd(nc)) != 0)
		return -1;
	if ((r = net_handshake(nc, *t, deadline)) == 0)
		return 0;
	fail = mtls_fail_code(*t);
	if (fail == MTLS_FAIL_NONE)
		fail = r == NET_TIMEOUT ? MTLS_FAIL_HANDSHAKE_TIMEOUT :
		    MTLS_FAIL_NOT_TLS;
	__atomic_add_fetch(&p->m_admin_refused, 1, __ATOMIC_RELAXED);
	addr_text(net_conn_addr(nc), client, sizeof(client));
	o = json_object();
	json_object_set_new(o, "listener", json_string("admin"));
	json_object_set_new(o, "role", json_string("server"));
	json_object_set_new(o, "client", esc_jstr(client));
	json_object_set_new(o, "peer_id", mtls_peer_id(*t) ?
	    esc_jstr(mtls_peer_id(*t)) : json_null());
	json_object_set_new(o, "result", esc_jstr(mtls_fail_name(fail)));
	json_object_set_new(o, "error", esc_jstr(r == NET_TIMEOUT ?
	    "handshake not done within 5 s of accept" : mtls_error(*t)));
	log_emit("warn", "handshake", o);
	json_decref(o);
	return -1;
}

/* One request per connection, whole (with the handshake) within
 * ADMIN_TIMEOUT_MS of accept: the admin port is for probes and scrapers,
 * not a general HTTP server. Runs as a coroutine of the admin loop
 * (net_serve_fn); it stays idle (closed first at the cap) until its
 * request is in. */
static void
admin_conn(struct net_conn *nc, void *arg)
{
	struct proxy *p = arg;
	int64_t deadline = net_conn_accepted_ms(nc) + ADMIN_TIMEOUT_MS;
	struct mtls *t = NULL;
	char req[2048], path[256];
	size_t got = 0;
	long n;

	if (p->admin_tls != NULL && admin_tls(p, nc, deadline, &t) != 0)
		goto out;
	while (got < sizeof(req) - 1) {
		n = net_read(nc, t, req + got, sizeof(req) - 1 - got, deadline);
		if (n == NET_ERR)
			goto out;	/* closed by the loop, or reset */
		if (n <= 0)
			break;
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = '\0';
	net_idle(nc, 0);
	if (sscanf(req, "GET %255s HTTP/1.", path) != 1) {
		admin_text(nc, t, 400, "Bad Request", "bad request\n");
	} else if (strcmp(path, "/metrics") == 0) {
		struct sbuf b = { NULL, 0, 0 };

		metrics_text(p, &b);
		admin_reply(nc, t, 200, "OK", "text/plain; version=0.0.4",
		    b.p ? b.p : "", b.len);
		free(b.p);
	} else if (strcmp(path, "/healthz") == 0) {
		admin_text(nc, t, 200, "OK", "ok\n");
	} else if (strcmp(path, "/readyz") == 0) {
		int64_t na = INT64_MAX;
		size_t li;

		/* ready while every listener's own certificate is valid */
		for (li = 0; li < p->nls; li++) {
			int64_t v = __atomic_load_n(&p->ls[li].own_not_after,
			    __ATOMIC_RELAXED);

			if (v < na)
				na = v;
		}
		if (na > (int64_t)time(NULL) &&
		    !__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE))
			admin_text(nc, t, 200, "OK", "ready\n");
		else
			admin_text(nc, t, 503, "Service Unavailable",
			    "not ready: own certificate expired or draining\n");
	} else {
		admin_text(nc, t, 404, "Not Found", "not found\n");
	}
	if (t != NULL)
		(void)mtls_close(t);
 out:
	mtls_free(t);
}

/* Fail closed before anything starts: the admin endpoint has no
 * authentication of its own, so off loopback it needs --admin-allow
 * (mTLS), like a plaintext --target needs --unsafe-target. Fills
 * <p>'s admin address. */
int
admin_check(struct proxy *p, const struct proxy_opts *o,
    struct mtls_error *err)
{
	if (o->admin == NULL) {
		if (o->n_admin_allow || o->admin_cert || o->admin_key ||
		    o->admin_ca || o->n_admin_crls)
			return error_set(err, MTLS_ERR_ARG, "--admin-allow "
			    "(admin_allow, admin_cert, admin_key, admin_ca, "
			    "admin_crl) needs --admin ADDR");
		return 0;
	}
	if (o->n_admin_allow == 0 && (o->admin_cert || o->admin_key ||
	    o->admin_ca || o->n_admin_crls))
		return error_set(err, MTLS_ERR_ARG, "admin_cert, admin_key, "
		    "admin_ca and admin_crl are the admin endpoint's mTLS: give "
		    "admin_allow (--admin-allow ID) too");
	if ((o->admin_cert == NULL) != (o->admin_key == NULL))
		return error_set(err, MTLS_ERR_ARG, "admin_cert and admin_key "
		    "go together");
	if (o->n_admin_crls && o->admin_ca == NULL)
		return error_set(err, MTLS_ERR_ARG, "admin_crl goes with "
		    "admin_ca (without admin_ca the admin endpoint checks the "
		    "first listener's CRLs)");
	if (addr_parse(o->admin, "--admin", &p->admin_ss, &p->admin_sl,
	    err) != 0)
		return -1;
	if (o->n_admin_allow == 0 && !addr_is_local(&p->admin_ss))
		return error_set(err, MTLS_ERR_ARG, "--admin %s is not "
		    "loopback and the admin endpoint has no authentication: "
		    "add --admin-allow ID (mTLS), or bind 127.0.0.1", o->admin);
	return 0;
}

/* --admin-allow: the admin endpoint's mTLS, built like an inbound
 * listener (config_build, the same allow rules and reload) from
 * admin_cert/admin_key/admin_ca, by default the first listener's files,
 * CRLs and fetched CRL. After the listeners' configs exist. */
static int
admin_tls_new(struct proxy *p, const struct proxy_opts *o,
    struct mtls_error *err)
{
	const struct proxy_listener *src = &o->l[0];
	struct proxy_listener *al = &p->admin_l;
	struct lstate *ls = &p->admin_ls;
	struct mtls_error lerr;
	char serial[64] = "";

	if (o->n_admin_allow == 0)
		return 0;
	snprintf(al->name, sizeof(al->name), "admin");
	al->cert = o->admin_cert ? o->admin_cert : src->cert;
	al->key = o->admin_key ? o->admin_key : src->key;
	al->ca = o->admin_ca ? o->admin_ca : src->ca;
	al->crls = o->admin_ca ? o->admin_crls : src->crls;
	al->n_crls = o->admin_ca ? o->n_admin_crls : src->n_crls;
	al->min_tls = src->min_tls;
	al->allow = o->admin_allow;
	al->n_allow = o->n_admin_allow;
	ls->l = al;
	ls->p = p;
	if (o->admin_ca == NULL && src->crl_url != NULL) {
		al->crl_url = src->crl_url;	/* its name in messages */
		ls->crl_src = &p->ls[0];
	}
	error_clear(&lerr);
	if ((ls->fcrl = calloc(al->n_crls + 1, sizeof(*ls->fcrl))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (revfetch_crl_files(p, ls, 1, &lerr) != 0 ||
	    (ls->cfg = reload_build(p, ls, serial, sizeof(serial),
	    &lerr)) == NULL)
		return error_set(err, lerr.code, "--admin-allow: the admin "
		    "endpoint's TLS: %s", lerr.msg);
	ls->cfg_seq = 1;
	reload_mark(p, ls);
	if ((p->admin_tls = mtls_server()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (mtls_configure(p->admin_tls, ls->cfg) != 0)
		return error_set(err, MTLS_ERR_ARG, "--admin-allow: %s",
		    mtls_error(p->admin_tls));
	p->admin_seq = 1;
	return 0;
}

/* The admin loop on <fd> (taken, even on failure); its thread starts
 * once the listeners' state it reports exists (net_loop_start). */
static int
admin_new(struct proxy *p, int fd, struct mtls_error *err)
{
	struct net_opts no;

	memset(&no, 0, sizeof(no));
	no.name = "admin";
	no.max_conns = ADMIN_MAX_CONNS;
	no.first_byte_ms = ADMIN_TIMEOUT_MS;
	no.drain_ms = 1000;
	if (net_loop_new(&p->admin, &no, err) != 0) {
		close(fd);
		return -1;
	}
	return net_listen(p->admin, fd, admin_conn, p, err);
}

/* --admin: its mTLS (--admin-allow), its socket and loop; the loop's
 * thread starts later (net_loop_start), once the listeners it reports
 * on are up. */
int
admin_start(struct proxy *p, struct mtls_error *err)
{
	const struct proxy_opts *o = p->o;
	char what[300];
	int afd;

	if (o->admin == NULL)
		return 0;
	if (admin_tls_new(p, o, err) != 0)
		return -1;
	if (p->admin_ls.l != NULL)
		reload_watch(p, p->admin_ls.l);
	snprintf(what, sizeof(what), "--admin %s", o->admin);
	if ((afd = addr_listen(&p->admin_ss, p->admin_sl, 0, what, err)) < 0)
		return -1;
	return admin_new(p, afd, err);
}

void
admin_free(struct proxy *p)
{
	net_loop_free(p->admin);	/* /readyz said 503 while draining */
	p->admin = NULL;
	mtls_free(p->admin_tls);
	p->admin_tls = NULL;
	listener_free(&p->admin_ls);
	p->admin_ls.cfg = NULL;
	p->admin_ls.fcrl = NULL;
}
