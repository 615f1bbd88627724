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
#include <sys/mman.h>
#include <sys/socket.h>
#include <ucontext.h>
#include <unistd.h>

#include <jansson.h>

#include "proxy/gw_int.h"
#include "proxy/x509memo.h"

/* the loop this thread runs (NULL outside the loops: io_wait polls) */
__thread struct loop *cur_loop;

static void co_yield(struct loop *, struct co *);
static void co_resume(struct loop *, struct co *);

static void
waiting_add(struct loop *lp, struct co *co)
{
	co->waiting = 1;
	co->prev = NULL;
	co->next = lp->waiting;
	if (lp->waiting != NULL)
		lp->waiting->prev = co;
	lp->waiting = co;
}

static void
waiting_remove(struct loop *lp, struct co *co)
{
	if (!co->waiting)
		return;
	co->waiting = 0;
	if (co->prev != NULL)
		co->prev->next = co->next;
	else
		lp->waiting = co->next;
	if (co->next != NULL)
		co->next->prev = co->prev;
	co->prev = co->next = NULL;
}

/* In a coroutine: arm <fd> one-shot in the loop's epoll and let the loop
 * run others until it fires or <deadline> passes. */
int
co_wait(struct loop *lp, int fd, short ev, int64_t deadline)
{
	struct co *co = lp->cur;
	struct epoll_event e;

	if (deadline <= net_now_ms())
		return IO_TIMEOUT;
	memset(&e, 0, sizeof(e));
	e.events = (ev & POLLOUT ? EPOLLOUT : EPOLLIN) | EPOLLONESHOT;
	e.data.ptr = co;
	if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &e) != 0 &&
	    (errno != ENOENT || epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd,
	    &e) != 0))
		return IO_ERR;
	co->deadline = deadline;
	co->fired = 0;
	waiting_add(lp, co);
	co_yield(lp, co);
	waiting_remove(lp, co);
	if (co->fired)
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
	struct co *co = c->co;

	idle_leave(c);
	c->evicted = why;
	waiting_remove(lp, co);
	co_resume(lp, co);
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
		if (c->co != NULL && c->co->waiting) {
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
	if (ids_from_cert(sk_X509_value(cfg->chain, 0), &ids, &e) == 0) {
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

/* ---- coroutines ---- */

static void
co_switch(ucontext_t *from, ucontext_t *to, void **fake_save,
    const void *bottom, size_t size)
{
#ifdef CO_ASAN
	__sanitizer_start_switch_fiber(fake_save, bottom, size);
#else
	(void)fake_save;
	(void)bottom;
	(void)size;
#endif
	swapcontext(from, to);
}

/* From a coroutine back to its loop. */
static void
co_yield(struct loop *lp, struct co *co)
{
#ifdef CO_ASAN
	co_switch(&co->ctx, &lp->main, &co->fake_stack, lp->main_bottom,
	    lp->main_size);
	__sanitizer_finish_switch_fiber(co->fake_stack, NULL, NULL);
#else
	co_switch(&co->ctx, &lp->main, NULL, NULL, 0);
#endif
}

/* From the loop into <co>, until it waits or ends. */
static void
co_resume(struct loop *lp, struct co *co)
{
	lp->cur = co;
#ifdef CO_ASAN
	{
		void *fake = NULL;

		co_switch(&lp->main, &co->ctx, &fake, co->stack,
		    co->stack_size);
		__sanitizer_finish_switch_fiber(fake, &lp->main_bottom,
		    &lp->main_size);
	}
#else
	co_switch(&lp->main, &co->ctx, NULL, NULL, 0);
#endif
	lp->cur = NULL;
	if (co->done) {
		co->dead_next = lp->dead;
		lp->dead = co;
	}
}

static __thread struct co *co_start_arg;

static void
co_entry(void)
{
	struct co *co = co_start_arg;

#ifdef CO_ASAN
	__sanitizer_finish_switch_fiber(NULL, &co->lp->main_bottom,
	    &co->lp->main_size);
#endif
	conn_run(co->c);
	co->done = 1;
	co->lp->n_cos--;
#ifdef CO_ASAN
	__sanitizer_start_switch_fiber(NULL, co->lp->main_bottom,
	    co->lp->main_size);
#endif
	setcontext(&co->lp->main);
}

#ifdef CO_ASAN
#define CO_STACK	(1024 * 1024)
#else
#define CO_STACK	(256 * 1024)
#endif

/* Runs connection <c> as a new coroutine on <lp>. */
static int
co_spawn(struct loop *lp, struct gwc *c)
{
	struct co *co = calloc(1, sizeof(*co));

	if (co == NULL)
		return -1;
	co->stack_size = CO_STACK;
	/* a guard page below the stack: an overflow faults, never
	 * corrupts */
	co->stack = mmap(NULL, co->stack_size + 4096, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (co->stack == MAP_FAILED) {
		free(co);
		return -1;
	}
	mprotect(co->stack, 4096, PROT_NONE);
	co->stack = (char *)co->stack + 4096;
	co->lp = lp;
	co->c = c;
	c->co = co;
	c->lp = lp;
	getcontext(&co->ctx);
	co->ctx.uc_stack.ss_sp = co->stack;
	co->ctx.uc_stack.ss_size = co->stack_size;
	co->ctx.uc_link = NULL;
	makecontext(&co->ctx, co_entry, 0);
	lp->n_cos++;
	co_start_arg = co;	/* read by co_entry before it first yields */
	co_resume(lp, co);
	return 0;
}

static void
co_reap(struct loop *lp)
{
	while (lp->dead != NULL) {
		struct co *co = lp->dead;

		lp->dead = co->dead_next;
		munmap((char *)co->stack - 4096, co->stack_size + 4096);
		free(co);
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
		proxy_addr_text(&ss, client, sizeof(client));
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
		if (co_spawn(lp, c) != 0) {
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
		if (c->phase == IDLE_FIRST_BYTE && c->co != NULL &&
		    c->co->waiting) {
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
			struct co *co;

			if (evs[i].data.ptr == &lp->lfd_tag) {
				if (lp->lfd >= 0)
					accept_some(lp);
				continue;
			}
			co = evs[i].data.ptr;
			if (!co->waiting)
				continue;	/* resumed by its deadline */
			co->fired = 1;
			waiting_remove(lp, co);
			co_resume(lp, co);
		}
		now = net_now_ms();
		if (now >= next_scan) {
			struct co *co = lp->waiting, *nx;

			for (; co != NULL; co = nx) {
				nx = co->next;
				if (co->deadline <= now) {
					waiting_remove(lp, co);
					co_resume(lp, co);
					nx = lp->waiting;	/* list changed */
				}
			}
			next_scan = now + 50;
		}
		co_reap(lp);
	}
	co_reap(lp);
	return NULL;
}
