/*
 * The server runtime of net.h: one epoll loop, a coroutine per connection
 * that got past its first byte, deadline waits, limits per address and in
 * all, and a small worker pool for blocking calls.
 *
 * Shape of a connection:
 *
 *   accept -> per-address and global limits -> PRE: armed for EPOLLIN in
 *   the loop, first-byte deadline, no coroutine yet -> first byte: RUN, a
 *   coroutine running the server's function -> it returns: the fd is
 *   closed and the connection freed at the end of the loop's turn.
 *
 * Everything below runs on the loop's thread, except the workers (which
 * only run the offloaded function and push the connection on the done
 * list) and net_loop_stop() (a flag and an eventfd write).
 *
 * The coroutines are co.h's. Loops of one server (the gateway's, one per
 * worker thread) share the cap's count and the address table through
 * net_opts; nothing else is shared between loops.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "net/co.h"
#include "net/iplimit.h"
#include "net/net.h"
#include "net/sockio.h"

#define SCAN_MS		50	/* deadlines are checked this often */
#define FD_RESERVE	256	/* fds kept for files, the store, upstreams */

enum { K_LISTENER = 1, K_CONN, K_WAKE };
enum { S_PRE, S_RUN, S_OFF };	/* first byte awaited, running, on a worker */
static const char *limit_names[NET_LIMIT__COUNT] = { "first_byte_timeout",
    "per_ip_limit", "max_conns", "evicted_idle" };

struct listener {
	int		 kind;		/* K_LISTENER; first: the epoll tag */
	struct net_loop	*lp;
	int		 fd;
	int		 paused;	/* out of fds: accept again next scan */
	net_serve_fn	 serve;
	void		*arg;
};

struct net_conn {
	int		 kind;		/* K_CONN; first: the epoll tag */
	struct net_loop	*lp;
	struct listener	*l;
	int		 fd;
	struct sockaddr_storage ss;
	int64_t		 accepted_ms;
	struct ipent	*ip;		/* NULL: not counted (AF_UNIX) */
	int		 state;		/* S_* */
	int		 idle, evicted, waiting, fired, done, closed;
	int64_t		 deadline;
	struct net_conn	*wprev, *wnext;	/* the loop's waiting list */
	struct net_conn	*iprev, *inext;	/* the idle list, oldest first */
	struct net_conn	*next;		/* dead list; job queue; done list */
	void		(*job)(void *);
	void		*job_arg;
	struct co	*co;		/* NULL until the first byte */
};

struct net_loop {
	struct net_opts	 o;
	char		 name[32];
	int		 epfd, wakefd;
	int		 wake_kind;	/* K_WAKE: &wake_kind tags wakefd */
	struct listener	 ls[NET_MAX_LISTENERS];
	int		 nls;
	int		 stop_req;	/* atomic; set by net_loop_stop() */
	int		 draining, forced;
	int64_t		 drain_deadline;
	int		 n_conns;
	struct net_conn	*waiting;	/* in net_wait, or PRE */
	struct net_conn	*idle_head, *idle_tail;
	struct net_conn	*dead;		/* closed this turn, to free */
	struct iplimit	*ipt;		/* open connections per address */
	int		 own_ipt;	/* ipt is ours to free */
	struct co_loop	 co;		/* the switches (co.h) */
	/* workers: jobs in, done connections out, both under qmu */
	pthread_t	*wthr;
	int		 nworkers;
	pthread_mutex_t	 qmu;
	pthread_cond_t	 qcv;
	struct net_conn	*q_head, *q_tail, *done;
	int		 q_quit;
	/* the loop's own thread (net_loop_start) */
	pthread_t	 thr;
	int		 thr_started;
	/* counters: written by the loop, read by anyone (atomics) */
	struct net_stats st;
	int64_t		 log_at[NET_LIMIT__COUNT];
	uint64_t	 log_n[NET_LIMIT__COUNT];
};

int64_t
net_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
net_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
bump(uint64_t *v)
{
	__atomic_add_fetch(v, 1, __ATOMIC_RELAXED);
}

/* ---- limits: log lines at most once a second per reason ---- */

static void
limit_hit(struct net_loop *lp, int why, const struct sockaddr_storage *ss)
{
	int64_t now = net_now_ms();
	char h[INET6_ADDRSTRLEN] = "-";
	json_t *o;

	if (lp->o.on_limit != NULL) {
		lp->o.on_limit(lp->o.hook_arg, why, ss);
		return;
	}
	lp->log_n[why]++;
	if (now - lp->log_at[why] < 1000)
		return;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)
		    (const void *)ss)->sin_addr, h, sizeof(h));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
		    (const void *)ss)->sin6_addr, h, sizeof(h));
	o = json_object();
	json_object_set_new(o, "server", esc_jstr(lp->name));
	json_object_set_new(o, "reason", esc_jstr(limit_names[why]));
	json_object_set_new(o, "client", esc_jstr(h));
	json_object_set_new(o, "count", json_integer((json_int_t)
	    lp->log_n[why]));
	json_object_set_new(o, "open", json_integer(lp->n_conns));
	log_emit("warn", "conn_limit", o);
	json_decref(o);
	lp->log_at[why] = now;
	lp->log_n[why] = 0;
}

/* ---- lists ---- */

static void
waiting_add(struct net_loop *lp, struct net_conn *c, int64_t deadline)
{
	c->deadline = deadline;
	c->waiting = 1;
	c->fired = 0;
	c->wprev = NULL;
	c->wnext = lp->waiting;
	if (lp->waiting != NULL)
		lp->waiting->wprev = c;
	lp->waiting = c;
}

static void
waiting_remove(struct net_loop *lp, struct net_conn *c)
{
	if (!c->waiting)
		return;
	c->waiting = 0;
	if (c->wprev != NULL)
		c->wprev->wnext = c->wnext;
	else
		lp->waiting = c->wnext;
	if (c->wnext != NULL)
		c->wnext->wprev = c->wprev;
	c->wprev = c->wnext = NULL;
}

static void
idle_remove(struct net_loop *lp, struct net_conn *c)
{
	if (!c->idle)
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

/* On the idle list as <how> (NET_IDLE, NET_EVICTABLE); one already there
 * keeps its place. */
static void
idle_add(struct net_loop *lp, struct net_conn *c, int how)
{
	if (c->idle) {
		c->idle = how;
		return;
	}
	c->idle = how;
	c->inext = NULL;
	c->iprev = lp->idle_tail;
	if (lp->idle_tail != NULL)
		lp->idle_tail->inext = c;
	else
		lp->idle_head = c;
	lp->idle_tail = c;
}

/* ---- connections ---- */

/* Closes <c>'s fd and gives back its slots; the struct and stack are
 * freed at the end of the loop's turn (an event for it may still be in
 * the batch being handled). */
static void
conn_close(struct net_loop *lp, struct net_conn *c)
{
	if (c->closed)
		return;
	c->closed = 1;
	c->done = 1;
	waiting_remove(lp, c);
	idle_remove(lp, c);
	close(c->fd);
	iplimit_put(lp->ipt, c->ip);
	c->ip = NULL;
	lp->n_conns--;
	if (lp->o.shared_open != NULL)
		__atomic_sub_fetch(lp->o.shared_open, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&lp->st.open, lp->n_conns, __ATOMIC_RELAXED);
	c->next = lp->dead;
	lp->dead = c;
}

static void
reap(struct net_loop *lp)
{
	while (lp->dead != NULL) {
		struct net_conn *c = lp->dead;

		lp->dead = c->next;
		co_free(c->co);
		free(c);
	}
}

/* ---- coroutines (co.h) ---- */

/* From the loop into <c>'s coroutine until it waits or ends. */
static void
conn_resume(struct net_loop *lp, struct net_conn *c)
{
	co_resume(c->co);
	if (co_done(c->co))
		conn_close(lp, c);
}

static void
conn_main(void *arg)
{
	struct net_conn *c = arg;

	c->l->serve(c, c->l->arg);
}

/* <c>'s first byte is here: run the server's function as a coroutine. */
static void
conn_start(struct net_loop *lp, struct net_conn *c)
{
	c->state = S_RUN;
	c->co = co_spawn(&lp->co, conn_main, c);
	if (c->co == NULL || co_done(c->co))
		conn_close(lp, c);
}

/* Closes idle <c> now (a PRE one directly; a waiting coroutine is
 * resumed and sees NET_ERR from then on). 1 when it made room. */
static int
evict(struct net_loop *lp, struct net_conn *c)
{
	c->evicted = 1;
	idle_remove(lp, c);
	if (c->state == S_PRE) {
		conn_close(lp, c);
		return 1;
	}
	if (c->state == S_RUN && c->waiting) {
		waiting_remove(lp, c);
		conn_resume(lp, c);
		return 1;
	}
	return 0;	/* on a worker: it ends when it comes back */
}

/* The idle connection waiting longest, evicted: 1 if there was one. */
static int
evict_oldest(struct net_loop *lp)
{
	struct net_conn *c = lp->idle_head;

	while (c != NULL) {
		struct net_conn *nx = c->inext;

		if (evict(lp, c)) {	/* <c> is freed only by reap() */
			bump(&lp->st.evicted);
			limit_hit(lp, NET_LIMIT_EVICTED, &c->ss);
			return 1;
		}
		c = nx;
	}
	return 0;
}

static void
listener_pause(struct net_loop *lp, struct listener *l, int pause)
{
	struct epoll_event e;

	memset(&e, 0, sizeof(e));
	e.events = pause ? 0 : EPOLLIN;
	e.data.ptr = l;
	epoll_ctl(lp->epfd, EPOLL_CTL_MOD, l->fd, &e);
	l->paused = pause;
}

/* Open connections against max_conns: the shared count, or this loop's. */
static int
open_now(struct net_loop *lp)
{
	return lp->o.shared_open != NULL ? __atomic_load_n(lp->o.shared_open,
	    __ATOMIC_RELAXED) : lp->n_conns;
}

static void
accept_some(struct net_loop *lp, struct listener *l)
{
	int k;

	for (k = 0; k < 64 && !lp->draining; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct epoll_event e;
		struct net_conn *c;
		struct ipent *ip;
		int fd;

		memset(&ss, 0, sizeof(ss));
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK |
		    SOCK_CLOEXEC);
		if (fd < 0) {
			/* out of fds: make room from the idle, else wait a
			 * scan (a level-triggered listener would spin) */
			if ((errno == EMFILE || errno == ENFILE) &&
			    !evict_oldest(lp))
				listener_pause(lp, l, 1);
			return;
		}
		if (iplimit_take(lp->ipt, &ss, &ip) != 0) {
			close(fd);
			bump(&lp->st.per_ip_refused);
			limit_hit(lp, NET_LIMIT_PER_IP, &ss);
			continue;
		}
		c = NULL;
		if ((open_now(lp) < lp->o.max_conns || evict_oldest(lp)) &&
		    (c = calloc(1, sizeof(*c))) != NULL) {
			c->kind = K_CONN;
			c->lp = lp;
			c->l = l;
			c->fd = fd;
			c->ss = ss;
			c->ip = ip;
			c->state = S_PRE;
			c->accepted_ms = net_now_ms();
			memset(&e, 0, sizeof(e));
			e.events = EPOLLIN | EPOLLONESHOT;
			e.data.ptr = c;
			if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
				free(c);
				c = NULL;
			}
		} else if (open_now(lp) >= lp->o.max_conns) {
			bump(&lp->st.full_refused);
			limit_hit(lp, NET_LIMIT_FULL, &ss);
		}
		if (c == NULL) {
			close(fd);
			iplimit_put(lp->ipt, ip);
			continue;
		}
		lp->n_conns++;
		if (lp->o.shared_open != NULL)
			__atomic_add_fetch(lp->o.shared_open, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&lp->st.open, lp->n_conns, __ATOMIC_RELAXED);
		bump(&lp->st.accepted);
		waiting_add(lp, c, c->accepted_ms + lp->o.first_byte_ms);
		idle_add(lp, c, NET_IDLE);
	}
}

/* Connections past their deadline: PRE ones closed, coroutines resumed
 * (their wait returns NET_TIMEOUT). */
static void
scan_deadlines(struct net_loop *lp, int64_t now)
{
	struct net_conn *c, *nx, *due = NULL;
	int i;

	/* collect first: a resumed coroutine may wait again at the head */
	for (c = lp->waiting; c != NULL; c = nx) {
		nx = c->wnext;
		if (c->deadline <= now) {
			waiting_remove(lp, c);
			c->next = due;
			due = c;
		}
	}
	for (c = due; c != NULL; c = nx) {
		nx = c->next;
		if (c->state == S_PRE) {
			bump(&lp->st.first_byte_timeouts);
			limit_hit(lp, NET_LIMIT_FIRST_BYTE, &c->ss);
			conn_close(lp, c);
		} else
			conn_resume(lp, c);
	}
	for (i = 0; i < lp->nls; i++)
		if (lp->ls[i].paused && lp->ls[i].fd >= 0)
			listener_pause(lp, &lp->ls[i], 0);
}

static void
drain_begin(struct net_loop *lp, int64_t now)
{
	struct net_conn *c, *nx;
	int i;

	lp->draining = 1;
	lp->drain_deadline = now + lp->o.drain_ms;
	for (i = 0; i < lp->nls; i++)
		if (lp->ls[i].fd >= 0) {
			close(lp->ls[i].fd);	/* refuse new connections */
			lp->ls[i].fd = -1;
		}
	/* the idle close now; the evictable (a handshake, a head) finish */
	for (c = lp->idle_head; c != NULL; c = nx) {
		nx = c->inext;
		if (c->idle == NET_IDLE) {
			evict(lp, c);	/* off the list; freed by reap() */
			nx = lp->idle_head;	/* a resumed one may move */
		}
	}
}

/* Past the drain deadline: every wait fails from now on. */
static void
drain_force(struct net_loop *lp)
{
	struct net_conn *c;

	lp->forced = 1;
	while ((c = lp->waiting) != NULL) {
		waiting_remove(lp, c);
		c->evicted = 1;
		if (c->state == S_PRE)
			conn_close(lp, c);
		else
			conn_resume(lp, c);
	}
}

static void
jobs_done(struct net_loop *lp)
{
	struct net_conn *c, *nx;
	uint64_t v;

	if (read(lp->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&lp->qmu);
	c = lp->done;
	lp->done = NULL;
	pthread_mutex_unlock(&lp->qmu);
	for (; c != NULL; c = nx) {
		nx = c->next;
		c->state = S_RUN;
		conn_resume(lp, c);
	}
}

void
net_loop_run(struct net_loop *lp)
{
	struct epoll_event evs[128];
	int64_t next_scan = 0;

	if (lp->o.on_thread != NULL)
		lp->o.on_thread(lp->o.hook_arg);
	for (;;) {
		int64_t now = net_now_ms();
		int n, i;

		if (!lp->draining && (__atomic_load_n(&lp->stop_req,
		    __ATOMIC_ACQUIRE) || (lp->o.stop != NULL &&
		    __atomic_load_n(lp->o.stop, __ATOMIC_ACQUIRE))))
			drain_begin(lp, now);
		if (lp->draining) {
			if (!lp->forced && now >= lp->drain_deadline)
				drain_force(lp);
			reap(lp);
			if (lp->n_conns == 0)
				break;
		}
		n = epoll_wait(lp->epfd, evs, 128, SCAN_MS);
		for (i = 0; i < n; i++) {
			int kind = *(int *)evs[i].data.ptr;
			struct net_conn *c;

			if (kind == K_LISTENER) {
				struct listener *l = evs[i].data.ptr;

				if (l->fd >= 0)
					accept_some(lp, l);
				continue;
			}
			if (kind == K_WAKE) {
				jobs_done(lp);
				continue;
			}
			c = evs[i].data.ptr;
			if (!c->waiting || c->done)
				continue;	/* resumed by a deadline */
			waiting_remove(lp, c);
			c->fired = 1;
			if (c->state == S_PRE)
				conn_start(lp, c);
			else
				conn_resume(lp, c);
		}
		now = net_now_ms();
		if (now >= next_scan) {
			scan_deadlines(lp, now);
			next_scan = now + SCAN_MS;
		}
		reap(lp);
	}
	reap(lp);
}

/* ---- in a coroutine ---- */

/*
 * Arms <fd> one-shot in the loop's epoll, tagged with <c>, and yields.
 * Another fd than the connection's own (an upstream) is added the first
 * time; it stays in this epoll until closed, and may be armed by another
 * loop's connection meanwhile (a pooled upstream moves): each arming
 * re-tags it.
 */
int
net_wait_fd(struct net_conn *c, int fd, short ev, int64_t deadline)
{
	struct net_loop *lp = c->lp;
	struct epoll_event e;

	if (c->evicted || lp->forced || (lp->draining &&
	    c->idle == NET_IDLE))
		return NET_ERR;
	if (deadline <= net_now_ms())
		return NET_TIMEOUT;
	memset(&e, 0, sizeof(e));
	e.events = (ev & POLLOUT ? EPOLLOUT : EPOLLIN) | EPOLLONESHOT;
	e.data.ptr = c;
	if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &e) != 0 &&
	    (fd == c->fd || errno != ENOENT ||
	    epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &e) != 0))
		return NET_ERR;
	waiting_add(lp, c, deadline);
	co_yield(&lp->co);
	waiting_remove(lp, c);
	if (c->fired)
		return 0;
	/* timed out or evicted: disarm. An fd disarmed by MOD still reports
	 * ERR and HUP (tagged <c>): one-shot, so a hang-up wakes a later wait
	 * on another fd at most once (a spurious wake-up; never a spin); and
	 * another fd leaves the epoll, since it may outlive <c> */
	e.events = EPOLLONESHOT;
	if (fd == c->fd)
		epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &e);
	else
		epoll_ctl(lp->epfd, EPOLL_CTL_DEL, fd, &e);
	return c->evicted || lp->forced ? NET_ERR : NET_TIMEOUT;
}

int
net_wait(struct net_conn *c, short ev, int64_t deadline)
{
	return net_wait_fd(c, c->fd, ev, deadline);
}

int
net_closed(const struct net_conn *c)
{
	return c->evicted || c->lp->forced;
}

void
net_idle(struct net_conn *c, int how)
{
	if (how == NET_IDLE || how == NET_EVICTABLE)
		idle_add(c->lp, c, how);
	else
		idle_remove(c->lp, c);
}

int
net_stopping(const struct net_conn *c)
{
	return c->lp->draining;
}

int
net_conn_fd(const struct net_conn *c)
{
	return c->fd;
}

const struct sockaddr_storage *
net_conn_addr(const struct net_conn *c)
{
	return &c->ss;
}

int64_t
net_conn_accepted_ms(const struct net_conn *c)
{
	return c->accepted_ms;
}

void
net_offload(struct net_conn *c, void (*fn)(void *), void *arg)
{
	struct net_loop *lp = c->lp;

	if (lp->nworkers == 0) {
		fn(arg);
		return;
	}
	c->job = fn;
	c->job_arg = arg;
	c->next = NULL;
	c->state = S_OFF;
	pthread_mutex_lock(&lp->qmu);
	if (lp->q_tail != NULL)
		lp->q_tail->next = c;
	else
		lp->q_head = c;
	lp->q_tail = c;
	pthread_cond_signal(&lp->qcv);
	pthread_mutex_unlock(&lp->qmu);
	co_yield(&lp->co);		/* jobs_done() resumes us */
}

static void *
worker_main(void *arg)
{
	struct net_loop *lp = arg;
	struct net_conn *c;
	uint64_t one = 1;

	for (;;) {
		pthread_mutex_lock(&lp->qmu);
		while (lp->q_head == NULL && !lp->q_quit)
			pthread_cond_wait(&lp->qcv, &lp->qmu);
		if ((c = lp->q_head) == NULL) {
			pthread_mutex_unlock(&lp->qmu);
			return NULL;
		}
		if ((lp->q_head = c->next) == NULL)
			lp->q_tail = NULL;
		pthread_mutex_unlock(&lp->qmu);
		c->job(c->job_arg);
		pthread_mutex_lock(&lp->qmu);
		c->next = lp->done;
		lp->done = c;
		pthread_mutex_unlock(&lp->qmu);
		if (write(lp->wakefd, &one, sizeof(one)) < 0 &&
		    errno != EAGAIN)
			continue;	/* an eventfd write does not fail */
	}
}

/* ---- TLS or plain I/O with deadlines ---- */

int
net_handshake(struct net_conn *c, struct mtls *tls, int64_t deadline)
{
	for (;;) {
		int r = mtls_handshake(tls), w;

		if (r == 0)
			return 0;
		if (r != MTLS_WANT_READ && r != MTLS_WANT_WRITE)
			return -1;
		if ((w = net_wait(c, r == MTLS_WANT_WRITE ? POLLOUT : POLLIN,
		    deadline)) != 0)
			return w;
	}
}

int
net_sockio_wait(void *conn, int fd, short ev, int64_t deadline)
{
	return net_wait_fd(conn, fd, ev, deadline);
}

long
net_read(struct net_conn *c, struct mtls *tls, void *buf, size_t len,
    int64_t deadline)
{
	return sockio_read(c->fd, tls, buf, len, deadline, net_sockio_wait, c);
}

int
net_write(struct net_conn *c, struct mtls *tls, const void *p, size_t len,
    int64_t deadline)
{
	return sockio_write(c->fd, tls, p, len, deadline, net_sockio_wait, c);
}

/* ---- the loop's lifecycle ---- */

/* Enough fds for max_conns (and FD_RESERVE more): the soft limit is
 * raised up to the hard one; if that is not enough, max_conns shrinks. */
static void
fit_nofile(struct net_loop *lp)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)lp->o.max_conns + FD_RESERVE;
	json_t *o;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ?
	    want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 &&
	    getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur >= want)
		return;
	lp->o.max_conns = rl.rlim_cur > FD_RESERVE + 16 ?
	    (int)(rl.rlim_cur - FD_RESERVE) : 16;
	o = json_object();
	json_object_set_new(o, "server", esc_jstr(lp->name));
	json_object_set_new(o, "max_conns", json_integer(lp->o.max_conns));
	json_object_set_new(o, "why", json_string("RLIMIT_NOFILE (raise the "
	    "hard limit: ulimit -Hn, LimitNOFILE=)"));
	log_emit("warn", "limit_lowered", o);
	json_decref(o);
}

int
net_loop_new(struct net_loop **out, const struct net_opts *o,
    struct mtls_error *err)
{
	struct net_loop *lp;
	struct epoll_event e;
	int i;

	*out = NULL;
	if (o->max_conns <= 0 || o->first_byte_ms <= 0 || o->max_per_ip < 0 ||
	    o->workers < 0 || o->workers > 64)
		return error_set(err, MTLS_ERR_ARG, "net: bad limits");
	if ((lp = calloc(1, sizeof(*lp))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	lp->ipt = o->ipt;
	if (lp->ipt == NULL) {
		if ((lp->ipt = iplimit_new(o->max_per_ip)) == NULL) {
			free(lp);
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		}
		lp->own_ipt = 1;
	}
	lp->o = *o;
	snprintf(lp->name, sizeof(lp->name), "%s", o->name ? o->name : "");
	lp->o.name = lp->name;
	lp->wake_kind = K_WAKE;
	pthread_mutex_init(&lp->qmu, NULL);
	pthread_cond_init(&lp->qcv, NULL);
	lp->epfd = epoll_create1(EPOLL_CLOEXEC);
	lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	memset(&e, 0, sizeof(e));
	e.events = EPOLLIN;
	e.data.ptr = &lp->wake_kind;
	if (lp->epfd < 0 || lp->wakefd < 0 ||
	    epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->wakefd, &e) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "%s: epoll", lp->name);
		net_loop_free(lp);
		return -1;
	}
	if (!o->keep_nofile)
		fit_nofile(lp);
	if (o->workers > 0 &&
	    (lp->wthr = calloc((size_t)o->workers, sizeof(pthread_t))) == NULL) {
		net_loop_free(lp);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	for (i = 0; i < o->workers; i++) {
		if (pthread_create(&lp->wthr[i], NULL, worker_main, lp) != 0) {
			net_loop_free(lp);
			return error_set(err, MTLS_ERR_IO, "%s: cannot start "
			    "a worker thread", o->name);
		}
		lp->nworkers++;
	}
	*out = lp;
	return 0;
}

int
net_listen(struct net_loop *lp, int fd, net_serve_fn serve, void *arg,
    struct mtls_error *err)
{
	struct listener *l;
	struct epoll_event e;

	if (lp->nls >= NET_MAX_LISTENERS) {
		close(fd);
		return error_set(err, MTLS_ERR_ARG, "%s: too many listeners",
		    lp->name);
	}
	l = &lp->ls[lp->nls];
	memset(l, 0, sizeof(*l));
	l->kind = K_LISTENER;
	l->lp = lp;
	l->fd = fd;
	l->serve = serve;
	l->arg = arg;
	memset(&e, 0, sizeof(e));
	e.events = EPOLLIN;
	e.data.ptr = l;
	if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
		close(fd);
		return error_set_errno(err, MTLS_ERR_IO, "%s: epoll", lp->name);
	}
	lp->nls++;
	return 0;
}

static void *
loop_thread(void *arg)
{
	net_loop_run(arg);
	return NULL;
}

int
net_loop_start(struct net_loop *lp, struct mtls_error *err)
{
	sigset_t all, old;
	int r;

	/* signals belong to the thread that started us */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&lp->thr, NULL, loop_thread, lp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return error_set(err, MTLS_ERR_IO, "%s: cannot start its "
		    "thread", lp->name);
	lp->thr_started = 1;
	return 0;
}

void
net_loop_stop(struct net_loop *lp)
{
	uint64_t one = 1;

	__atomic_store_n(&lp->stop_req, 1, __ATOMIC_RELEASE);
	if (write(lp->wakefd, &one, sizeof(one)) < 0)
		return;		/* the loop sees the flag within SCAN_MS */
}

void
net_loop_stats(struct net_loop *lp, struct net_stats *st)
{
	st->accepted = __atomic_load_n(&lp->st.accepted, __ATOMIC_RELAXED);
	st->first_byte_timeouts = __atomic_load_n(&lp->st.first_byte_timeouts,
	    __ATOMIC_RELAXED);
	st->per_ip_refused = __atomic_load_n(&lp->st.per_ip_refused,
	    __ATOMIC_RELAXED);
	st->full_refused = __atomic_load_n(&lp->st.full_refused,
	    __ATOMIC_RELAXED);
	st->evicted = __atomic_load_n(&lp->st.evicted, __ATOMIC_RELAXED);
	st->open = __atomic_load_n(&lp->st.open, __ATOMIC_RELAXED);
	st->max_conns = lp->o.max_conns;
}

void
net_loop_free(struct net_loop *lp)
{
	int i;

	if (lp == NULL)
		return;
	if (lp->thr_started) {
		net_loop_stop(lp);
		pthread_join(lp->thr, NULL);
	}
	pthread_mutex_lock(&lp->qmu);
	lp->q_quit = 1;
	pthread_cond_broadcast(&lp->qcv);
	pthread_mutex_unlock(&lp->qmu);
	for (i = 0; i < lp->nworkers; i++)
		pthread_join(lp->wthr[i], NULL);
	free(lp->wthr);
	for (i = 0; i < lp->nls; i++)
		if (lp->ls[i].fd >= 0)
			close(lp->ls[i].fd);
	if (lp->own_ipt)
		iplimit_free(lp->ipt);
	if (lp->epfd >= 0)
		close(lp->epfd);
	if (lp->wakefd >= 0)
		close(lp->wakefd);
	pthread_cond_destroy(&lp->qcv);
	pthread_mutex_destroy(&lp->qmu);
	free(lp);
}
