/*
 * The gateway's event loops (gw_int.h): one per worker, each with its own
 * epoll, SO_REUSEPORT listening socket and server context; connections run
 * as coroutines on them; accept applies the per-address table and the
 * connection cap (at the cap the oldest connection without a whole request
 * head makes room).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "proxy/gw_int.h"
#include "proxy/x509memo.h"

/* the loop this thread runs (NULL outside the loops: io_wait polls) */
__thread struct loop *cur_loop;

static void task_resume(struct loop *, struct task *);

static void
waiting_add(struct loop *lp, struct task *t)
{
	t->waiting = 1;
	t->prev = NULL;
	t->next = lp->waiting;
	if (lp->waiting != NULL)
		lp->waiting->prev = t;
	lp->waiting = t;
}

static void
waiting_remove(struct loop *lp, struct task *t)
{
	if (!t->waiting)
		return;
	t->waiting = 0;
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		lp->waiting = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

/* In a coroutine: arm <fd> one-shot in the loop's epoll and let the loop
 * run others until it fires or <deadline> passes. */
int
task_wait(struct loop *lp, int fd, short ev, int64_t deadline)
{
	struct task *t = lp->cur;
	struct epoll_event e;

	if (deadline <= net_now_ms())
		return IO_TIMEOUT;
	memset(&e, 0, sizeof(e));
	e.events = (ev & POLLOUT ? EPOLLOUT : EPOLLIN) | EPOLLONESHOT;
	e.data.ptr = t;
	if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &e) != 0 &&
	    (errno != ENOENT || epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd,
	    &e) != 0))
		return IO_ERR;
	t->deadline = deadline;
	t->fired = 0;
	waiting_add(lp, t);
	co_yield(&lp->co);
	waiting_remove(lp, t);
	if (t->fired)
		return 0;
	e.events = 0;		/* timed out: disarm */
	epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &e);
	return IO_TIMEOUT;
}

void
idle_enter(struct gwc *c, int phase)
{
	struct loop *lp = c->lp;

	c->phase = phase;
	if (lp == NULL || c->idle)
		return;
	c->idle = 1;
	c->inext = NULL;
	c->iprev = lp->idle_tail;
	if (lp->idle_tail != NULL)
		lp->idle_tail->inext = c;
	else
		lp->idle_head = c;
	lp->idle_tail = c;
}

void
idle_leave(struct gwc *c)
{
	struct loop *lp = c->lp;

	if (lp == NULL || !c->idle)
		return;
	c->idle = 0;
	if (c->iprev != NULL)
		c->iprev->inext = c->inext;
	else
		lp->idle_head = c->inext;
	if (c->inext != NULL)
		c->inext->iprev = c->iprev;
	else
		lp->idle_tail = c->iprev;
	c->iprev = c->inext = NULL;
}

/* From the loop: ends <c>'s wait now (its io_wait times out) with
 * c->evicted = <why>; it closes. */
static void
idle_close(struct loop *lp, struct gwc *c, int why)
{
	struct task *t = c->task;

	idle_leave(c);
	c->evicted = why;
	waiting_remove(lp, t);
	task_resume(lp, t);
}

/* At the cap: closes the loop's longest-waiting connection that has no
 * whole request head (first byte, handshake, keep-alive, a head still
 * arriving); a request whose head is whole is never cut. 1 if one was
 * closed. */
static int
evict_oldest(struct loop *lp)
{
	struct gwc *c;

	for (c = lp->idle_head; c != NULL; c = c->inext)
		if (c->task != NULL && c->task->waiting) {
			idle_close(lp, c, 1);
			return 1;
		}
	return 0;
}

void
gw_limit(struct gw *gw, int why, const char *client)
{
	if (gw->env.limit != NULL)
		gw->env.limit(gw->env.arg, why, client);
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

/* ---- tasks: a connection's coroutine (net/co.h) and its wait ---- */

/* From the loop into <t>, until it waits or ends. */
static void
task_resume(struct loop *lp, struct task *t)
{
	lp->cur = t;
	co_resume(t->co);
	lp->cur = NULL;
	if (co_done(t->co)) {
		t->dead_next = lp->dead;
		lp->dead = t;
	}
}

static void
task_main(void *arg)
{
	struct task *t = arg;

	conn_run(t->c);
	t->lp->n_cos--;
}

/* Runs connection <c> as a new coroutine on <lp>. */
static int
task_spawn(struct loop *lp, struct gwc *c)
{
	struct task *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	t->lp = lp;
	t->c = c;
	c->task = t;
	c->lp = lp;
	lp->n_cos++;
	lp->cur = t;
	t->co = co_spawn(&lp->co, task_main, t);
	lp->cur = NULL;
	if (t->co == NULL) {
		lp->n_cos--;
		c->task = NULL;
		c->lp = NULL;
		free(t);
		return -1;
	}
	if (co_done(t->co)) {
		t->dead_next = lp->dead;
		lp->dead = t;
	}
	return 0;
}

static void
task_reap(struct loop *lp)
{
	while (lp->dead != NULL) {
		struct task *t = lp->dead;

		lp->dead = t->dead_next;
		co_free(t->co);
		free(t);
	}
}

/* ---- event loops ---- */

static int
gw_full(struct gw *gw)
{
	int n = __atomic_load_n(gw->env.active, __ATOMIC_RELAXED);

	return (gw->env.o->max_conns > 0 && n >= gw->env.o->max_conns) ||
	    n >= HTTP_MAX_CONNS;
}

static void
accept_some(struct loop *lp)
{
	struct gw *gw = lp->gw;
	int k;

	for (k = 0; k < 64; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct gwc *c;
		struct ipent *ip;
		char client[64];
		int fd, one = 1;

		fd = accept4(lp->lfd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			/* out of fds: an idle connection makes room */
			if ((errno == EMFILE || errno == ENFILE) &&
			    evict_oldest(lp))
				continue;
			return;		/* EAGAIN; or EMFILE: next round */
		}
		addr_text(&ss, client, sizeof(client));
		ip = NULL;
		if (gw->env.ipt != NULL &&
		    iplimit_take(gw->env.ipt, &ss, &ip) != 0) {
			close(fd);
			gw_limit(gw, GW_CL_PER_IP, client);
			continue;
		}
		/* at the cap the longest-waiting idle connection of this
		 * loop makes room; refused only when there is none */
		if (gw_full(gw) && !evict_oldest(lp)) {
			close(fd);
			iplimit_put(gw->env.ipt, ip);
			gw_limit(gw, GW_CL_FULL, client);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		refresh(lp);
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			iplimit_put(gw->env.ipt, ip);
			continue;
		}
		c->gw = gw;
		c->cl.fd = fd;
		c->ip = ip;
		c->t_conn = net_now_ms();
		pthread_mutex_lock(&gw->mu);
		c->by = gw->by[0] ? strdup(gw->by) : NULL;
		pthread_mutex_unlock(&gw->mu);
		memcpy(c->client, client, sizeof(c->client));
		__atomic_add_fetch(gw->env.active, 1, __ATOMIC_RELAXED);
		if (task_spawn(lp, c) != 0) {
			__atomic_sub_fetch(gw->env.active, 1, __ATOMIC_RELAXED);
			iplimit_put(gw->env.ipt, ip);
			free(c->by);
			free(c);
			close(fd);
		}
	}
}

/* Draining: connections still waiting for a first byte close at once. */
static void
drain_first_byte(struct loop *lp)
{
	struct gwc *c, *nx;

	for (c = lp->idle_head; c != NULL; c = nx) {
		nx = c->inext;
		if (c->phase == IDLE_FIRST_BYTE && c->task != NULL &&
		    c->task->waiting) {
			idle_close(lp, c, 2);
			nx = lp->idle_head;	/* the list changed */
		}
	}
}

void *
loop_main(void *arg)
{
	struct loop *lp = arg;
	struct gw *gw = lp->gw;
	struct epoll_event evs[128];
	int64_t next_scan = 0;

	cur_loop = lp;
	x509memo_thread(1);	/* the data path: libssl's parses memoized */
	for (;;) {
		int64_t now;
		int n, i;

		if (__atomic_load_n(gw->env.stopping, __ATOMIC_ACQUIRE)) {
			if (lp->lfd >= 0) {	/* stop accepting */
				epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->lfd, NULL);
				close(lp->lfd);
				lp->lfd = -1;
			}
			drain_first_byte(lp);
			if (lp->n_cos == 0)
				break;
		}
		n = epoll_wait(lp->epfd, evs, 128, 100);
		for (i = 0; i < n; i++) {
			struct task *t;

			if (evs[i].data.ptr == &lp->lfd_tag) {
				if (lp->lfd >= 0)
					accept_some(lp);
				continue;
			}
			t = evs[i].data.ptr;
			if (!t->waiting)
				continue;	/* resumed by its deadline */
			t->fired = 1;
			waiting_remove(lp, t);
			task_resume(lp, t);
		}
		now = net_now_ms();
		if (now >= next_scan) {
			struct task *t = lp->waiting, *nx;

			for (; t != NULL; t = nx) {
				nx = t->next;
				if (t->deadline <= now) {
					waiting_remove(lp, t);
					task_resume(lp, t);
					nx = lp->waiting;	/* list changed */
				}
			}
			next_scan = now + 50;
		}
		task_reap(lp);
	}
	task_reap(lp);
	return NULL;
}
