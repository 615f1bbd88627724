/*
 * The proxy's listeners: each one's state as the whole process sees it
 * (struct lstate: checked addresses, config generation, CRLs, staple),
 * its sockets (one SO_REUSEPORT socket per worker: the kernel spreads
 * accepts) and accept with its limits.
 *
 * Limits on inbound listeners (issue 12 item 6): a connection is a struct
 * and an fd until its first byte (no TLS object), closed at
 * --first-byte-timeout; open connections per client address are counted
 * process-wide (src/svc/net/iplimit.c: the workers share one table per
 * listener, so the limit is exact whichever worker's SO_REUSEPORT socket
 * the kernel picked); at --max-conns the worker closes its longest-waiting
 * inbound connection that is not yet authenticated (first byte awaited or
 * handshake in progress) for the new one, never an authorized one.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "proxy/proxy_int.h"

/* ---- addresses ---- */

static int
listener_check(struct lstate *ls, struct mtls_error *err)
{
	const struct proxy_listener *l = ls->l;

	if (l->http) {
		if (l->listen == NULL || l->cert == NULL || l->key == NULL ||
		    l->ca == NULL)
			return error_set(err, MTLS_ERR_ARG, "--listen, --cert, "
			    "--key and --ca are required");
		if (l->outbound)
			return error_set(err, MTLS_ERR_ARG, "http mode is for "
			    "inbound listeners");
		if (gw_check(l, err) != 0 ||
		    addr_parse(l->listen, "--listen", &ls->listen_ss,
		    &ls->listen_len, err) != 0)
			return -1;
		if (ls->listen_ss.ss_family == AF_UNIX)
			return error_set(err, MTLS_ERR_ARG, "--listen: UNIX "
			    "sockets are not supported for listening");
		return 0;
	}

	if (l->listen == NULL || l->target == NULL || l->cert == NULL ||
	    l->key == NULL || l->ca == NULL)
		return error_set(err, MTLS_ERR_ARG, "--listen, --target, "
		    "--cert, --key and --ca are required");
	if (!l->outbound && l->n_allow == 0 && !l->allow_any)
		return error_set(err, MTLS_ERR_ARG, "refusing to start an "
		    "inbound listener that lets any client in: give --allow "
		    "ID (or --allow-any to accept every certificate that "
		    "chains to --ca)");
	if (l->outbound && l->max_conns_per_ip != 0)
		return error_set(err, MTLS_ERR_ARG, "--max-conns-per-ip "
		    "(max_conns_per_ip) is for inbound listeners: an outbound "
		    "one serves only this host's applications");
	if (!l->outbound && l->require_staple)
		return error_set(err, MTLS_ERR_ARG, "--require-staple is for "
		    "outbound listeners (it checks the upstream's staple)");
	if (l->outbound && l->n_expect == 0)
		return error_set(err, MTLS_ERR_ARG, "--outbound needs --expect "
		    "ID: the upstream's identity");
	if (addr_parse(l->listen, "--listen", &ls->listen_ss,
	    &ls->listen_len, err) != 0 ||
	    addr_parse(l->target, "--target", &ls->target_ss,
	    &ls->target_len, err) != 0)
		return -1;
	if (ls->listen_ss.ss_family == AF_UNIX)
		return error_set(err, MTLS_ERR_ARG, "--listen: UNIX sockets "
		    "are not supported for listening yet; use 127.0.0.1:PORT");
	if (!l->unsafe_target && !l->outbound &&
	    !addr_is_local(&ls->target_ss))
		return error_set(err, MTLS_ERR_ARG, "--target %s is not "
		    "loopback: plaintext would leave this host (use "
		    "--unsafe-target if that is really meant)", l->target);
	if (!l->unsafe_target && l->outbound &&
	    !addr_is_local(&ls->listen_ss))
		return error_set(err, MTLS_ERR_ARG, "--listen %s is not "
		    "loopback: the plaintext side must stay on this host (use "
		    "--unsafe-target if that is really meant)", l->listen);
	return 0;
}


/*
 * Sets up p->ls[<li>] (p->nls counts it, so that a failure frees it):
 * fail closed on a CRL file or URL that cannot be read or whose CRL is
 * refused (crl_admit), on flags that do not hold together, on a config
 * that does not build; then a first staple before serving, if our
 * certificate names a responder (not fatal: clients that need one refuse
 * us), and the per-address table.
 */
int
listener_init(struct proxy *p, size_t li, struct mtls_error *err)
{
	const struct proxy_opts *o = p->o;
	struct lstate *ls = &p->ls[li];
	struct mtls_error lerr;
	char serial[64] = "";

	ls->l = &o->l[li];
	ls->p = p;
	p->nls++;
	error_clear(&lerr);
	if ((ls->fcrl = calloc(ls->l->n_crls + 1, sizeof(*ls->fcrl))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (revfetch_crl_files(p, ls, 1, &lerr) != 0 ||
	    (ls->l->crl_url != NULL && revfetch_crl(p, ls, &lerr) < 0) ||
	    bundlefetch_due(p, ls, net_now_ms(), 1, &lerr) < 0)
		goto lerr;
	ls->crl_next_ms = net_now_ms() + revfetch_interval(ls->l);
	if (listener_check(ls, &lerr) != 0 ||
	    (ls->cfg = reload_build(p, ls, serial, sizeof(serial),
	    &lerr)) == NULL)
		goto lerr;
	if (revfetch_wants_staple(ls) && revfetch_staple(p, ls) == 1) {
		struct mtls_config *c2 = reload_build(p, ls, serial,
		    sizeof(serial), &lerr);

		if (c2 == NULL) {
			error_copy(err, &lerr);
			return -1;
		}
		mtls_config_free(ls->cfg);
		ls->cfg = c2;
	}
	if (!ls->l->outbound &&
	    (ls->ipt = iplimit_new(ls->l->max_conns_per_ip == 0 ?
	    PROXY_PER_IP : ls->l->max_conns_per_ip < 0 ? 0 :
	    ls->l->max_conns_per_ip)) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	ls->cfg_seq = 1;
	reload_mark(p, ls);
	reload_identity(p, ls, ls->cfg);
	return 0;
 lerr:
	if (o->n_l > 1)
		return error_set(err, lerr.code, "listener %s: %s", ls->l->name,
		    lerr.msg);
	error_copy(err, &lerr);
	return -1;
}

void
listener_free(struct lstate *ls)
{
	size_t k;

	mtls_config_free(ls->cfg);
	iplimit_free(ls->ipt);
	free(ls->crl);
	free(ls->staple);
	for (k = 0; ls->fcrl != NULL && k < ls->l->n_crls; k++)
		free(ls->fcrl[k].der);
	free(ls->fcrl);
	for (k = 0; k < PROXY_MAX_CA; k++)
		free(ls->fbundle[k].der);
}

int
listener_socket(const struct lstate *ls, struct mtls_error *err)
{
	char what[300];

	snprintf(what, sizeof(what), "listen %s", ls->l->listen);
	return addr_listen(&ls->listen_ss, ls->listen_len, 1, what, err);
}

/* Counts a connection closed for a limit and logs a conn_limit line (the
 * reason, the client, how many since the last line) at most once a
 * second per reason, whichever worker hits it: a flood cannot flood the
 * log. */
void
listener_limit_hit(struct worker *w, int why, const char *listener,
    const char *client)
{
	struct proxy *p = w->p;
	int64_t now = net_now_ms(), at;
	json_t *o;

	bump(&w->m_closed[why], 1);
	if (why == CL_HS_TIMEOUT)
		return;		/* logged per connection as a handshake */
	__atomic_add_fetch(&p->lim_log_n[why], 1, __ATOMIC_RELAXED);
	at = __atomic_load_n(&p->lim_log_at[why], __ATOMIC_RELAXED);
	if (now - at < 1000 || !__atomic_compare_exchange_n(
	    &p->lim_log_at[why], &at, now, 0, __ATOMIC_RELAXED,
	    __ATOMIC_RELAXED))
		return;
	o = json_object();
	json_object_set_new(o, "server", json_string("proxy"));
	json_object_set_new(o, "listener", esc_jstr(listener));
	json_object_set_new(o, "reason", esc_jstr(cl_names[why]));
	json_object_set_new(o, "client", esc_jstr(client));
	json_object_set_new(o, "count", json_integer((json_int_t)
	    __atomic_exchange_n(&p->lim_log_n[why], 0, __ATOMIC_RELAXED)));
	json_object_set_new(o, "open", json_integer(__atomic_load_n(
	    &p->active, __ATOMIC_RELAXED)));
	log_emit("warn", "conn_limit", o);
	json_decref(o);
}


/* Makes room at the cap: closes this worker's inbound connection that has
 * waited longest without being authenticated (its first byte awaited, or
 * in its handshake). 1 when there was one. Authorized connections are
 * never closed for a newcomer. */
static int
evict_oldest(struct worker *w)
{
	struct conn *a = w->fb_q.head, *b = w->ihs_q.head, *c;

	c = a == NULL ? b : b == NULL ? a : a->t_start_us <= b->t_start_us ?
	    a : b;
	if (c == NULL)
		return 0;
	listener_limit_hit(w, CL_EVICTED, c->wl->ls->l->name, c->client);
	conn_free(c, "evicted_idle");
	return 1;
}

void
listener_accept(struct wl *wl)
{
	struct worker *w = wl->w;
	struct proxy *p = w->p;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct conn *c;
	struct ipent *ip;
	char client[64];
	int fd, i;
	uint8_t b1;

	for (i = 0; i < 64; i++) {
		sl = sizeof(ss);
		fd = accept4(wl->lfd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			/* out of descriptors: close a connection that is not
			 * yet authenticated, else back off */
			if ((errno == EMFILE || errno == ENFILE) &&
			    evict_oldest(w))
				continue;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* out of descriptors: back off, keep serving */
				json_t *o = json_object();

				json_object_set_new(o, "error",
				    esc_jstr(strerror(errno)));
				log_emit("error", "accept", o);
				json_decref(o);
				wl->accept_paused_until = net_now_ms() + 100;
				epoll_ctl(w->epfd, EPOLL_CTL_DEL, wl->lfd, NULL);
			}
			return;
		}
		if (wl->ls->ipt != NULL &&
		    iplimit_take(wl->ls->ipt, &ss, &ip) != 0) {
			addr_text(&ss, client, sizeof(client));
			listener_limit_hit(w, CL_PER_IP, wl->ls->l->name, client);
			close(fd);
			continue;
		} else if (wl->ls->ipt == NULL)
			ip = NULL;
		if (p->o->max_conns > 0 &&
		    __atomic_load_n(&p->active, __ATOMIC_RELAXED) >=
		    p->o->max_conns && !evict_oldest(w)) {
			addr_text(&ss, client, sizeof(client));
			listener_limit_hit(w, CL_FULL, wl->ls->l->name, client);
			iplimit_put(wl->ls->ipt, ip);
			close(fd);
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			iplimit_put(wl->ls->ipt, ip);
			close(fd);
			continue;
		}
		__atomic_add_fetch(&p->active, 1, __ATOMIC_RELAXED);
		w->nconns++;
		c->w = w;
		c->wl = wl;
		c->a.kind = c->b.kind = EP_SIDE;
		c->a.c = c->b.c = c;
		c->a.fd = fd;
		c->b.fd = -1;
		c->ip = ip;
		c->t_start_us = net_now_us();
		addr_text(&ss, c->client, sizeof(c->client));
		if (ss.ss_family != AF_UNIX)
			sock_nodelay(fd);
		if (side_add(w, &c->a, EPOLLIN) != 0) {
			conn_free(c, "error");
			continue;
		}
		if (wl->ls->l->outbound) {
			c->tls_side = &c->b;
			if (conn_connect(c) != 0) {
				c->state = S_CONNECT;
				conn_log_fail(c, MTLS_FAIL_CONNECT_FAILED,
				    strerror(errno));
				conn_free(c, "connect_failed");
				continue;
			}
			c->a.want = 0;	/* read the app once upstream is up */
			side_update(w, &c->a);
		} else {
			/* until its first byte a connection is a struct
			 * and an fd: the TLS object comes with the byte */
			c->tls_side = &c->a;
			c->state = S_HANDSHAKE;
			if (recv(fd, &b1, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
				if (conn_tls_begin(c, net_now_ms()) == 0)
					conn_step(c, 0);
			} else
				tq_put(&w->fb_q, c, net_now_ms());
		}
	}
}

