/*
 * The gateway's loops (gw_int.h) on the server runtime (net/net.h): one
 * net loop per worker, each in its own thread with its own SO_REUSEPORT
 * listening socket and server context. Accept, the first-byte wait, the
 * per-address table and the connection cap are net's; the loops share
 * the proxy's count of open connections (env.active) and the listener's
 * address table, so the cap holds across loops and the proxy's other
 * listeners. What is left here: the per-loop server context (refreshed
 * on a reload), the limit counters, and a connection's set-up.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "proxy/gw_int.h"
#include "proxy/x509memo.h"

void
gw_limit(struct gw *gw, int why, const char *client)
{
	if (gw->env.limit != NULL)
		gw->env.limit(gw->env.arg, why, client);
}

/* net_opts.on_limit: net's reasons as the proxy's counters. */
static void
loop_limit(void *arg, int why, const struct sockaddr_storage *ss)
{
	static const int map[NET_LIMIT__COUNT] = { GW_CL_FIRST_BYTE,
	    GW_CL_PER_IP, GW_CL_FULL, GW_CL_EVICTED };
	struct loop *lp = arg;
	char client[64];

	addr_text(ss, client, sizeof(client));
	gw_limit(lp->gw, map[why], client);
}

/* net_opts.on_thread: the data path's parses of libssl memoized. */
static void
loop_thread(void *arg)
{
	(void)arg;
	x509memo_thread(1);
}

/* Picks up a reloaded listener config on loop <lp>: its server context;
 * loop 0 also our URI for XFCC By= and the routes' client contexts
 * (rebuilt from their files; a route whose files fail keeps its
 * context, logged). */
void
refresh(struct loop *lp)
{
	struct gw *gw = lp->gw;
	struct mtls_config *cfg = gw->env.config(gw->env.arg, &lp->seq);
	struct mtls_error e;
	struct ids ids;
	size_t i;

	if (cfg == NULL)
		return;
	if (mtls_configure(lp->srv, cfg) != 0) {
		json_t *o = json_object();

		json_object_set_new(o, "listener", esc_jstr(gw->l->name));
		json_object_set_new(o, "error", esc_jstr(mtls_error(lp->srv)));
		log_emit("error", "reload", o);
		json_decref(o);
	}
	if (lp->id != 0) {
		mtls_config_free(cfg);
		return;
	}
	pthread_mutex_lock(&gw->mu);
	gw->by[0] = '\0';
	if (ids_from_cert(config_leaf(cfg), &ids, &e) == 0) {
		for (i = 0; i < ids.n; i++)
			if (strncmp(ids.v[i], "spiffe://", 9) == 0) {
				snprintf(gw->by, sizeof(gw->by), "%s", ids.v[i]);
				break;
			}
		ids_free(&ids);
	}
	pthread_mutex_unlock(&gw->mu);
	mtls_config_free(cfg);
	for (i = 0; i < gw->n_routes; i++) {
		if (!gw->routes[i].r->up_tls || lp->seq == 1)
			continue;
		error_clear(&e);
		if (route_client(gw, &gw->routes[i], &e) != 0) {
			json_t *o = json_object();

			json_object_set_new(o, "listener",
			    esc_jstr(gw->l->name));
			json_object_set_new(o, "route",
			    esc_jstr(gw->routes[i].name));
			json_object_set_new(o, "error", esc_jstr(e.msg));
			log_emit("error", "reload", o);
			json_decref(o);
		}
	}
}

/* The net_serve_fn: a client's first byte is here (net waited for it);
 * the connection's state, then its life (gateway.c). net closes the fd
 * and gives back the address slot and the cap's count. */
static void
serve(struct net_conn *nc, void *arg)
{
	struct loop *lp = arg;
	struct gw *gw = lp->gw;
	struct gwc *c;
	int one = 1;

	refresh(lp);
	setsockopt(net_conn_fd(nc), IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof(one));
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->gw = gw;
	c->lp = lp;
	c->nc = nc;
	c->cl.fd = net_conn_fd(nc);
	c->cl.nc = nc;
	c->t_conn = net_conn_accepted_ms(nc);
	addr_text(net_conn_addr(nc), c->client, sizeof(c->client));
	pthread_mutex_lock(&gw->mu);
	c->by = gw->by[0] ? strdup(gw->by) : NULL;
	pthread_mutex_unlock(&gw->mu);
	conn_run(c);
	free(c);
}

/* Loop <lp>: its server context, socket and net loop (not started). */
int
loop_new(struct loop *lp, struct mtls_error *err)
{
	struct gw *gw = lp->gw;
	const struct gw_env *env = &gw->env;
	const struct proxy_opts *o = env->o;
	struct net_opts no;
	int fd, one = 1;

	if ((lp->srv = mtls_server()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	refresh(lp);
	if (lp->seq == 0)
		return error_set(err, MTLS_ERR_STATE, "listener %s: no config",
		    gw->l->name);
	if ((fd = socket(env->listen_ss.ss_family, SOCK_STREAM |
	    SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (const struct sockaddr *)&env->listen_ss,
	    env->listen_len) != 0 || listen(fd, 1024) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "listen %s", gw->l->listen);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	memset(&no, 0, sizeof(no));
	no.name = gw->l->name;
	/* the cap: the proxy's max_conns over all its listeners, never
	 * over HTTP_MAX_CONNS; RLIMIT_NOFILE is not fitted to it */
	no.max_conns = o->max_conns > 0 && o->max_conns < HTTP_MAX_CONNS ?
	    o->max_conns : HTTP_MAX_CONNS;
	no.shared_open = env->active;
	no.keep_nofile = 1;
	no.ipt = env->ipt;
	/* the first byte never waits longer than a handshake */
	no.first_byte_ms = o->first_byte_timeout_ms > 0 &&
	    o->first_byte_timeout_ms < o->handshake_timeout_ms ?
	    o->first_byte_timeout_ms : o->handshake_timeout_ms;
	if (no.first_byte_ms < 1)
		no.first_byte_ms = 1;
	/* the proxy waits drain_timeout for requests in flight, then exits:
	 * the loop does not cut them first */
	no.drain_ms = o->drain_timeout_ms + 1000;
	no.stop = env->stopping;
	no.on_limit = loop_limit;
	no.on_thread = loop_thread;
	no.hook_arg = lp;
	if (net_loop_new(&lp->nl, &no, err) != 0) {
		close(fd);
		return -1;
	}
	return net_listen(lp->nl, fd, serve, lp, err);
}
