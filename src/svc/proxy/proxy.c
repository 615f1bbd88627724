/*
 * mtls proxy: the sidecar data path. proxy_run checks the options, sets
 * up every listener (listener.c), the workers (pump.c), the signal and
 * file watch (reload.c), the fetcher (revfetch.c), the admin endpoint
 * (admin.c) and the HTTP gateways (gateway.c), runs the main thread's
 * control loop until SIGTERM/SIGINT, and drains.
 *
 * Threads: the main thread handles signals (SIGHUP reload, SIGTERM/SIGINT
 * drain) and file watching (inotify), and builds and validates every new
 * config; each worker runs one epoll loop over its own SO_REUSEPORT
 * listeners and its connections; the fetcher fetches CRLs and staples;
 * the admin endpoint has its own net loop.
 */
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "proxy/proxy_int.h"
#include "proxy/x509memo.h"
#include "net/notify.h"

/* Our own leaf's serial, for the start line. Static buffer: main thread. */
static const char *
own_serial(const struct mtls_config *cfg)
{
	static char buf[64];

	serial_hex(X509_get0_serialNumber(config_leaf(cfg)), buf,
	    sizeof(buf));
	return buf;
}

/* Turns the parse memo on for the workers (unless it turns itself off) and
 * says so in one line. Its entries live at most one ticket key period. */
static void
parse_memo_start(const struct proxy_opts *o)
{
	const char *why;
	json_t *j = json_object();
	int on = x509memo_enable(o->ticket_rotate_ms, &why);

	json_object_set_new(j, "state", esc_jstr(on ? "on" : "off"));
	if (!on)
		json_object_set_new(j, "reason", esc_jstr(why));
	json_object_set_new(j, "openssl",
	    esc_jstr(OpenSSL_version(OPENSSL_VERSION)));
	log_emit(on || strncmp(why, "tested", 6) != 0 ? "info" : "warn",
	    "parse_memo", j);
	json_decref(j);
}

/* gw_env.config: the listener's config when it changed. */
static struct mtls_config *
gw_config(void *arg, uint64_t *seq)
{
	struct lstate *ls = arg;
	struct mtls_config *cfg = NULL;

	pthread_mutex_lock(&ls->p->mu);
	if (ls->cfg_seq != *seq) {
		cfg = ls->cfg;
		config_ref(cfg);
		*seq = ls->cfg_seq;
	}
	pthread_mutex_unlock(&ls->p->mu);
	return cfg;
}

/* gw_env.limit: worker 0's counters (atomic), the proxy's conn_limit
 * lines. */
static void
gw_limit(void *arg, int why, const char *client)
{
	struct lstate *ls = arg;

	listener_limit_hit(&ls->p->w[0], why, ls->l->name, client);
}

/* gw_env.count_hs: into worker 0's counters (they are atomic). */
static void
gw_count_hs(void *arg, int result, int resumed, int64_t us)
{
	struct lstate *ls = arg;

	pump_count_handshake(&ls->p->w[0], 0, result, resumed, us);
}

/* Every duration becomes a deadline (now + ms): cmd_proxy caps them at
 * MTLS_MAX_INTERVAL, and this does for any other caller, so no sum can
 * overflow (issue 18: a wrapped --ticket-rotate spun the main loop). */
static int
durations_check(const struct proxy_opts *o, struct mtls_error *err)
{
	const int64_t max = MTLS_MAX_INTERVAL * 1000;
	const int64_t v[] = { o->first_byte_timeout_ms,
	    o->handshake_timeout_ms, o->connect_timeout_ms, o->idle_timeout_ms,
	    o->drain_timeout_ms, o->ticket_rotate_ms };
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (v[i] < 0 || v[i] > max)
			return error_set(err, MTLS_ERR_ARG, "a timeout or "
			    "interval of %lld ms is out of range (0 to %lldd)",
			    (long long)v[i], (long long)MTLS_MAX_INTERVAL / 86400);
	for (i = 0; i < o->n_l; i++)
		if (o->l[i].crl_refresh_ms < 0 || o->l[i].crl_refresh_ms > max ||
		    o->l[i].request_timeout_ms < 0 ||
		    o->l[i].request_timeout_ms > max)
			return error_set(err, MTLS_ERR_ARG, "listener %s: "
			    "crl_refresh or request_timeout out of range (0 to "
			    "%lldd)", o->l[i].name,
			    (long long)MTLS_MAX_INTERVAL / 86400);
	return 0;
}

/* http listeners: each a gateway with its own loops (gateway.c). */
static int
gateways_start(struct proxy *p, struct mtls_error *err)
{
	size_t li;

	for (li = 0; li < p->nls; li++) {
		struct gw_env env;

		if (!p->ls[li].l->http)
			continue;
		memset(&env, 0, sizeof(env));
		env.l = p->ls[li].l;
		env.o = p->o;
		env.listen_ss = p->ls[li].listen_ss;
		env.listen_len = p->ls[li].listen_len;
		env.active = &p->active;
		env.stopping = &p->stopping;
		env.config = gw_config;
		env.count_hs = gw_count_hs;
		env.ipt = p->ls[li].ipt;
		env.limit = gw_limit;
		env.arg = &p->ls[li];
		if (gw_start(&env, &p->gw[li], err) != 0)
			return -1;
	}
	return 0;
}

/* One start line per listener. */
static void
log_start(struct proxy *p)
{
	size_t li;

	for (li = 0; li < p->nls; li++) {
		const struct proxy_listener *l = p->ls[li].l;
		json_t *lo = json_object();

		json_object_set_new(lo, "listener", esc_jstr(l->name));
		json_object_set_new(lo, "mode", esc_jstr(l->http ? "http" :
		    l->outbound ? "outbound" : "inbound"));
		json_object_set_new(lo, "listen", esc_jstr(l->listen));
		if (l->http)
			json_object_set_new(lo, "routes",
			    json_integer((json_int_t)l->n_routes));
		else
			json_object_set_new(lo, "target",
			    esc_jstr(l->target));
		json_object_set_new(lo, "workers", json_integer(p->nworkers));
		json_object_set_new(lo, "serial", esc_jstr(
		    own_serial(p->ls[li].cfg)));
		log_emit("info", "start", lo);
		json_decref(lo);
	}
}

int
proxy_run(const struct proxy_opts *o, struct mtls_error *err)
{
	struct proxy p;
	size_t li;
	int i, started = 0, rv = -1;

	memset(&p, 0, sizeof(p));
	p.o = o;
	p.fetch_evfd = p.sfd = p.ifd = -1;
	pthread_mutex_init(&p.mu, NULL);
	if (o->n_l == 0 || o->n_l > PROXY_MAX_LISTENERS) {
		error_set(err, MTLS_ERR_ARG, "no listener configured");
		goto out;
	}
	if (durations_check(o, err) != 0 || admin_check(&p, o, err) != 0)
		goto out;
	for (li = 0; li < o->n_l; li++)
		if (listener_init(&p, li, err) != 0)
			goto out;
	if (revfetch_prepare(&p, err) != 0 || pump_workers_new(&p, err) != 0 ||
	    reload_watch_start(&p, err) != 0 || admin_start(&p, err) != 0 ||
	    gateways_start(&p, err) != 0)
		goto out;
	parse_memo_start(o);
	for (i = 0; i < p.nworkers; i++) {
		if (pthread_create(&p.w[i].thr, NULL, pump_worker, &p.w[i])) {
			error_set(err, MTLS_ERR_IO, "cannot start worker");
			__atomic_store_n(&p.stopping, 1, __ATOMIC_RELEASE);
			goto join;
		}
		started++;
	}
	log_start(&p);
	if (p.admin != NULL && net_loop_start(p.admin, err) != 0) {
		__atomic_store_n(&p.stopping, 1, __ATOMIC_RELEASE);
		goto join;
	}
	if (p.fetch_evfd >= 0 && pthread_create(&p.fetch_thr, NULL,
	    revfetch_main, &p) == 0)
		p.fetch_started = 1;
	notify_init();
	notify_send("READY=1");	/* listeners bound, workers accepting */
	reload_loop(&p);
	p.drain_deadline_ms = net_now_ms() + o->drain_timeout_ms;
	__atomic_store_n(&p.stopping, 1, __ATOMIC_RELEASE);
	rv = 0;
 join:
	for (i = 0; i < started; i++) {
		uint64_t one = 1;

		if (write(p.w[i].evfd, &one, sizeof(one)) < 0)
			continue;
	}
	for (i = 0; i < started; i++)
		pthread_join(p.w[i].thr, NULL);
	/* http listeners: their loops stop accepting on the stopping flag;
	 * let requests in flight finish */
	while (__atomic_load_n(&p.active, __ATOMIC_ACQUIRE) > 0 &&
	    net_now_ms() < p.drain_deadline_ms)
		poll(NULL, 0, 50);
	if (p.fetch_started) {
		__atomic_store_n(&p.stopping, 1, __ATOMIC_RELEASE);
		pthread_join(p.fetch_thr, NULL);
	}
	log_emit("info", "stop", NULL);
 out:
	admin_free(&p);
	for (li = 0; li < PROXY_MAX_LISTENERS; li++)
		gw_free(p.gw[li]);
	pump_workers_free(&p);
	if (p.sfd >= 0)
		close(p.sfd);
	if (p.ifd >= 0)
		close(p.ifd);
	for (li = 0; li < p.nls; li++)
		listener_free(&p.ls[li]);
	if (p.fetch_evfd >= 0)
		close(p.fetch_evfd);
	pthread_mutex_destroy(&p.mu);
	return rv;
}
