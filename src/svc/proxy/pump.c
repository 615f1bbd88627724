/*
 * The proxy's workers: each runs one epoll loop over its own SO_REUSEPORT
 * listening sockets (listener.c accepts) and its connections, and swaps in
 * a new config when the main thread posts one (an eventfd wakes it).
 * Connections never move between threads, so the data path takes no
 * locks.
 *
 * A connection pairs two sides, 'a' (accepted) and 'b' (the upstream);
 * exactly one of them is TLS. Bytes are read into the worker's one scratch
 * buffer and written straight on; only what the destination does not take
 * at once is copied into a per-direction buffer, allocated then and freed
 * as soon as it drains, so an idle connection holds no buffer at all. A
 * side is read only when its direction has nothing pending (back-pressure,
 * never unbounded buffering); half-close is passed on (shutdown /
 * close_notify).
 *
 * Timeouts: FIFO queues (first byte, inbound and outbound handshake,
 * connect, idle) with a fixed timeout each, so appending keeps them
 * sorted; activity moves a connection to the tail. O(1) per event, no
 * timer heap.
 *
 * Drain: once p->stopping is set a worker closes its listening sockets and
 * the connections still waiting for a first byte, lets the others finish
 * until the drain deadline, then closes what is left.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "proxy/proxy_int.h"
#include "proxy/x509memo.h"

const int64_t hs_bucket_us[HS_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000
};
const char *const cl_names[CL__COUNT] = { "first_byte_timeout",
    "handshake_timeout", "per_ip_limit", "max_conns", "evicted_idle" };

static int tag_event = EP_EVENT;

/* ---- timeout queues ---- */

static void
tq_remove(struct conn *c)
{
	struct tq *q = c->q;

	if (q == NULL)
		return;
	if (c->q_prev)
		c->q_prev->q_next = c->q_next;
	else
		q->head = c->q_next;
	if (c->q_next)
		c->q_next->q_prev = c->q_prev;
	else
		q->tail = c->q_prev;
	c->q = NULL;
	c->q_prev = c->q_next = NULL;
}

void
tq_put(struct tq *q, struct conn *c, int64_t now)
{
	tq_remove(c);
	c->q = q;
	c->deadline_ms = now + q->timeout_ms;
	c->q_prev = q->tail;
	c->q_next = NULL;
	if (q->tail)
		q->tail->q_next = c;
	else
		q->head = c;
	q->tail = c;
}

/* ---- metrics ---- */

void
pump_count_handshake(struct worker *w, int client, int result, int resumed,
    int64_t us)
{
	int i;

	bump(&w->m_hs[client ? 1 : 0][result][resumed ? 1 : 0], 1);
	for (i = 0; i < HS_BUCKETS && us > hs_bucket_us[i]; i++)
		;
	bump(&w->m_hs_bucket[i], 1);
	bump(&w->m_hs_sum_us, (uint64_t)(us > 0 ? us : 0));
}

/* ---- logging ---- */

static void
log_handshake(struct conn *c, int ok)
{
	struct mtls *t = c->tls_side->tls;
	json_t *o = json_object();
	const char *id = mtls_peer_id(t), *serial = mtls_peer_serial(t);
	int fail = mtls_fail_code(t);

	json_object_set_new(o, "listener", esc_jstr(c->wl->ls->l->name));
	json_object_set_new(o, "role", esc_jstr(c->wl->ls->l->outbound ?
	    "client" : "server"));
	json_object_set_new(o, "client", esc_jstr(c->client));
	json_object_set_new(o, "peer_id", id ? esc_jstr(id) : json_null());
	json_object_set_new(o, "serial", serial ? esc_jstr(serial) :
	    json_null());
	if (ok) {
		json_object_set_new(o, "tls_version",
		    esc_jstr(mtls_conn_version(t)));
		json_object_set_new(o, "cipher", esc_jstr(mtls_conn_cipher(t)));
		json_object_set_new(o, "group", esc_jstr(mtls_conn_group(t)));
		json_object_set_new(o, "resumed",
		    json_boolean(mtls_conn_resumed(t)));
	}
	pump_count_handshake(c->w, c->wl->ls->l->outbound, ok ? MTLS_FAIL_NONE :
	    (fail ? fail :
	    MTLS_FAIL_NOT_TLS), ok && mtls_conn_resumed(t), c->hs_us);
	json_object_set_new(o, "handshake_us", json_integer(c->hs_us));
	json_object_set_new(o, "result", esc_jstr(ok ? "ok" :
	    mtls_fail_name(fail ? fail : MTLS_FAIL_NOT_TLS)));
	if (!ok)
		json_object_set_new(o, "error", esc_jstr(mtls_error(t)));
	log_emit(ok ? "info" : "warn", "handshake", o);
	json_decref(o);
}

/* An inbound connection closed before its peer sent one byte: a port probe
 * or a load balancer's health check, not a failed handshake. Counted and
 * logged apart so that "not_tls" keeps meaning that bytes arrived that were
 * not TLS. */
static int
is_probe(struct conn *c)
{
	uint64_t in = 1;

	if (c->wl->ls->l->outbound ||
	    mtls_fail_code(c->tls_side->tls) != MTLS_FAIL_NOT_TLS)
		return 0;
	mtls_conn_wire_bytes(c->tls_side->tls, &in, NULL);
	return in == 0;
}

static void
log_probe(struct conn *c)
{
	json_t *o = json_object();

	bump(&c->w->m_probes, 1);
	json_object_set_new(o, "listener", esc_jstr(c->wl->ls->l->name));
	json_object_set_new(o, "client", esc_jstr(c->client));
	json_object_set_new(o, "result", json_string("no_data"));
	log_emit("info", "probe", o);
	json_decref(o);
}

void
conn_log_fail(struct conn *c, int fail, const char *msg)
{
	const struct proxy_listener *l = c->wl->ls->l;
	json_t *o = json_object();

	if (c->state == S_HANDSHAKE)
		pump_count_handshake(c->w, l->outbound, fail, 0, c->hs_us);
	json_object_set_new(o, "listener", esc_jstr(l->name));
	json_object_set_new(o, "role", esc_jstr(l->outbound ? "client" :
	    "server"));
	json_object_set_new(o, "client", esc_jstr(c->client));
	if (fail == MTLS_FAIL_CONNECT_FAILED)
		json_object_set_new(o, "target", esc_jstr(l->target));
	json_object_set_new(o, "result", esc_jstr(mtls_fail_name(fail)));
	json_object_set_new(o, "error", esc_jstr(msg));
	log_emit("warn", c->state == S_HANDSHAKE ? "handshake" : "connect", o);
	json_decref(o);
}


/* ---- connections ---- */

void
side_update(struct worker *w, struct side *s)
{
	struct epoll_event ev;

	if (s->fd < 0 || s->want == s->registered)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = s->want;
	ev.data.ptr = s;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
		s->registered = s->want;
}

int
side_add(struct worker *w, struct side *s, uint32_t events)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = s;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
		return -1;
	s->want = s->registered = events;
	return 0;
}

/* Closes <c> now; its memory is freed after the current batch of events
 * (another event of this batch may still point at it). */
void
conn_free(struct conn *c, const char *why)
{
	struct worker *w = c->w;

	if (c->dead)
		return;
	if (c->verdict_pending && c->state == S_PUMP) {
		c->verdict_pending = 0;
		log_handshake(c, 1);
	}
	if (c->state == S_PUMP) {
		json_t *o = json_object();

		json_object_set_new(o, "client", esc_jstr(c->client));
		json_object_set_new(o, "peer_id", mtls_peer_id(c->tls_side->tls) ?
		    esc_jstr(mtls_peer_id(c->tls_side->tls)) : json_null());
		json_object_set_new(o, "bytes_in", json_integer(
		    (json_int_t)c->bytes_ab));
		json_object_set_new(o, "bytes_out", json_integer(
		    (json_int_t)c->bytes_ba));
		json_object_set_new(o, "duration_ms", json_integer(
		    (net_now_us() - c->t_start_us) / 1000));
		json_object_set_new(o, "reason", esc_jstr(why));
		log_emit("info", "close", o);
		json_decref(o);
		bump(&w->m_bytes_in, c->bytes_ab);
		bump(&w->m_bytes_out, c->bytes_ba);
	}
	tq_remove(c);
	iplimit_put(c->wl->ls->ipt, c->ip);
	c->ip = NULL;
	if (c->a.tls)
		mtls_free(c->a.tls);
	if (c->b.tls)
		mtls_free(c->b.tls);
	c->a.tls = c->b.tls = NULL;
	if (c->a.fd >= 0)
		close(c->a.fd);
	if (c->b.fd >= 0)
		close(c->b.fd);
	c->a.fd = c->b.fd = -1;
	free(c->ab.p);
	free(c->ba.p);
	c->ab.p = c->ba.p = NULL;
	c->dead = 1;
	c->dead_next = w->dead;
	w->dead = c;
	w->nconns--;
	__atomic_sub_fetch(&w->p->active, 1, __ATOMIC_RELAXED);
}

static void
reap(struct worker *w)
{
	struct conn *c;

	while ((c = w->dead) != NULL) {
		w->dead = c->dead_next;
		free(c);
	}
}

/* Before closing a refused connection: read what the peer already sent,
 * so the kernel closes with FIN and our alert arrives, instead of a reset
 * that destroys it (a TLS 1.3 client sends data before it learns it was
 * refused). Bounded; never blocks. */
static void
drain_close(int fd)
{
	char b[4096];
	int i;

	for (i = 0; i < 16; i++)
		if (recv(fd, b, sizeof(b), MSG_DONTWAIT) <= 0)
			break;
	shutdown(fd, SHUT_WR);
}

void
sock_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Starts the non-blocking connect of side b. */
int
conn_connect(struct conn *c)
{
	struct lstate *ls = c->wl->ls;
	int fd;

	fd = socket(ls->target_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	c->b.fd = fd;
	if (ls->target_ss.ss_family != AF_UNIX)
		sock_nodelay(fd);
	if (connect(fd, (struct sockaddr *)&ls->target_ss, ls->target_len) != 0 &&
	    errno != EINPROGRESS)
		return -1;
	if (side_add(c->w, &c->b, EPOLLOUT) != 0)
		return -1;
	c->state = S_CONNECT;
	tq_put(&c->w->conn_q, c, net_now_ms());
	return 0;
}

static int
start_pump(struct conn *c)
{
	c->state = S_PUMP;
	tq_put(&c->w->idle_q, c, net_now_ms());
	return 0;
}

/* Reads into <p> from <s>: >0 bytes, 0 EOF, MTLS_WANT_*, -1 error. */
static long
side_read(struct side *s, char *p)
{
	long n;

	if (s->tls)
		return mtls_read(s->tls, p, BUF_SIZE);
	n = read(s->fd, p, BUF_SIZE);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return MTLS_WANT_READ;
	return n;
}

static long
side_write(struct side *s, const char *p, size_t len)
{
	long n;

	if (s->tls)
		return mtls_write(s->tls, p, len);
	n = send(s->fd, p, len, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return MTLS_WANT_WRITE;
	return n;
}

static uint32_t
want_ev(long r)
{
	return r == MTLS_WANT_READ ? EPOLLIN : EPOLLOUT;
}

/* Keeps what <dst> did not take: [p, p+len) into <b> (allocated now). */
static int
buf_keep(struct buf *b, const char *p, size_t len)
{
	if (b->p == NULL && (b->p = malloc(BUF_SIZE)) == NULL)
		return -1;
	memcpy(b->p, p, len);
	b->off = 0;
	b->len = len;
	return 0;
}

/* Moves bytes src -> dst: first what is pending in <b>, then fresh reads
 * through the worker's scratch buffer. -1 on error; sets wants. */
static int
pump(struct side *src, struct side *dst, struct buf *b, char *scratch,
    uint64_t *count, int *progress)
{
	const char *p;
	size_t len;
	long n;

	for (;;) {
		if (b->len > 0) {
			p = b->p + b->off;
			len = b->len;
		} else if (!src->rd_eof) {
			/* a read that would only say EAGAIN costs a syscall
			 * per event; epoll is level-triggered, so wait for it
			 * (OpenSSL may still hold decrypted bytes, though) */
			if (src->rd_idle && !(src->tls != NULL &&
			    mtls_pending(src->tls))) {
				src->want |= EPOLLIN;
				break;
			}
			n = side_read(src, scratch);
			if (n == 0) {
				src->rd_eof = 1;
				*progress = 1;
				continue;
			}
			if (n == MTLS_WANT_READ || n == MTLS_WANT_WRITE) {
				src->want |= want_ev(n);
				src->rd_idle = n == MTLS_WANT_READ;
				break;
			}
			if (n < 0)
				return -1;
			*count += (uint64_t)n;
			*progress = 1;
			/* a plain socket that gave less than asked is empty
			 * now: the next read would only say EAGAIN (issue 15
			 * §3: 4 -> 3 reads per request through the L4 pair);
			 * level-triggered epoll says when more comes */
			if (src->tls == NULL && n < BUF_SIZE)
				src->rd_idle = 1;
			p = scratch;
			len = (size_t)n;
		} else {
			if (!dst->wr_shut) {
				/* pass the half-close on */
				if (dst->tls)
					mtls_close(dst->tls);
				shutdown(dst->fd, SHUT_WR);
				dst->wr_shut = 1;
			}
			break;
		}
		n = side_write(dst, p, len);
		if (n > 0)
			*progress = 1;
		if (n == (long)len) {
			if (b->len > 0) {	/* drained: release it */
				free(b->p);
				b->p = NULL;
				b->len = b->off = 0;
			}
			continue;
		}
		if (n > 0 || n == MTLS_WANT_READ || n == MTLS_WANT_WRITE) {
			size_t done = n > 0 ? (size_t)n : 0;

			if (b->len > 0) {
				b->off += done;
				b->len -= done;
			} else if (buf_keep(b, p + done, len - done) != 0)
				return -1;
			dst->want |= n > 0 ? EPOLLOUT : want_ev(n);
			break;
		}
		return -1;
	}
	return 0;
}

/* An inbound connection's first byte came (or its peer hung up): now the
 * TLS object, and the handshake deadline from now. */
int
conn_tls_begin(struct conn *c, int64_t now)
{
	if (mtls_accept_socket(c->wl->ctx, &c->a.tls, c->a.fd) != 0) {
		conn_free(c, "error");
		return -1;
	}
	tq_put(&c->w->ihs_q, c, now);
	return 0;
}

void
conn_step(struct conn *c, uint32_t events)
{
	struct worker *w = c->w;
	struct side *t = c->tls_side;
	int r, progress = 0, soerr;
	socklen_t sl = sizeof(soerr);

	if (c->state == S_CONNECT) {
		if (getsockopt(c->b.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
			soerr = errno;
		if (soerr == EINPROGRESS || soerr == EALREADY)
			return;
		if (soerr != 0) {
			conn_log_fail(c, MTLS_FAIL_CONNECT_FAILED, strerror(soerr));
			conn_free(c, "connect_failed");
			return;
		}
		if (c->wl->ls->l->outbound) {
			/* upstream connected: now our TLS client handshake */
			if (mtls_connect_socket(c->wl->ctx, &c->b.tls, c->b.fd,
			    c->wl->ls->l->servername) != 0) {
				conn_log_fail(c, MTLS_FAIL_CONNECT_FAILED,
				    mtls_error(c->wl->ctx));
				conn_free(c, "error");
				return;
			}
			c->state = S_HANDSHAKE;
			c->t_start_us = net_now_us();
			tq_put(&w->hs_q, c, net_now_ms());
		} else if (start_pump(c) != 0) {
			conn_free(c, "nomem");
			return;
		}
	}
	if (c->state == S_HANDSHAKE && t->tls == NULL &&
	    conn_tls_begin(c, net_now_ms()) != 0)
		return;
	if (c->state == S_HANDSHAKE) {
		r = mtls_handshake(t->tls);
		if (r == MTLS_WANT_READ || r == MTLS_WANT_WRITE) {
			t->want = want_ev(r);
			side_update(w, t);
			return;
		}
		c->hs_us = net_now_us() - c->t_start_us;
		if (r != 0) {
			if (is_probe(c))
				log_probe(c);
			else
				log_handshake(c, 0);
			drain_close(t->fd);
			conn_free(c, "handshake");
			return;
		}
		/* Outbound TLS 1.3: the server judges our certificate after
		 * our Finished, so its refusal (Go's bad_certificate) arrives
		 * once we are pumping. The handshake line waits for its
		 * verdict: the first byte from upstream, or the close. */
		if (c->wl->ls->l->outbound &&
		    strcmp(mtls_conn_version(t->tls), "TLSv1.3") == 0 &&
		    !mtls_conn_resumed(t->tls))
			c->verdict_pending = 1;
		else
			log_handshake(c, 1);
		if (!c->wl->ls->l->outbound) {
			/* only an authorized peer reaches the backend */
			if (conn_connect(c) != 0) {
				conn_log_fail(c, MTLS_FAIL_CONNECT_FAILED,
				    strerror(errno));
				conn_free(c, "connect_failed");
			}
			t->want = 0;
			if (c->state == S_CONNECT)
				side_update(w, t);
			return;
		}
		if (start_pump(c) != 0) {
			conn_free(c, "nomem");
			return;
		}
	}
	if (c->state != S_PUMP)
		return;
	c->a.want = c->b.want = 0;
	if (pump(&c->a, &c->b, &c->ab, w->scratch, &c->bytes_ab,
	    &progress) != 0 ||
	    pump(&c->b, &c->a, &c->ba, w->scratch, &c->bytes_ba,
	    &progress) != 0) {
		if (c->verdict_pending && c->bytes_ba == 0 &&
		    mtls_fail_code(c->b.tls) ==
		    MTLS_FAIL_PEER_REJECTED_OUR_CERT) {
			/* refused after the handshake: a failed handshake,
			 * not a session that was reset */
			c->verdict_pending = 0;
			log_handshake(c, 0);
			c->state = S_HANDSHAKE;
			conn_free(c, "handshake");
			return;
		}
		conn_free(c, "reset");
		return;
	}
	if (c->verdict_pending && c->bytes_ba > 0) {
		c->verdict_pending = 0;
		log_handshake(c, 1);
	}
	if (c->a.rd_eof && c->b.rd_eof && c->ab.len == 0 && c->ba.len == 0) {
		conn_free(c, "done");
		return;
	}
	/* a hang-up or error that moved nothing would wake us forever */
	if (!progress && (events & (EPOLLERR | EPOLLHUP))) {
		conn_free(c, "reset");
		return;
	}
	if (progress)
		tq_put(&w->idle_q, c, net_now_ms());
	side_update(w, &c->a);
	side_update(w, &c->b);
}

static void
expire(struct worker *w, struct tq *q, int64_t now)
{
	struct conn *c;

	while ((c = q->head) != NULL && c->deadline_ms <= now) {
		if (q == &w->fb_q) {
			listener_limit_hit(w, CL_FIRST_BYTE, c->wl->ls->l->name,
			    c->client);
			conn_free(c, "first_byte_timeout");
		} else if (q == &w->hs_q || q == &w->ihs_q) {
			if (q == &w->ihs_q)
				listener_limit_hit(w, CL_HS_TIMEOUT, NULL, NULL);
			c->hs_us = net_now_us() - c->t_start_us;
			conn_log_fail(c, MTLS_FAIL_HANDSHAKE_TIMEOUT, "the handshake "
			    "did not finish in time");
			conn_free(c, "handshake_timeout");
		} else if (q == &w->conn_q) {
			conn_log_fail(c, MTLS_FAIL_CONNECT_FAILED, "connect timed "
			    "out");
			conn_free(c, "connect_timeout");
		} else
			conn_free(c, "idle_timeout");
	}
}

static void
take_config(struct worker *w)
{
	struct proxy *p = w->p;
	struct mtls_config *cfg;
	uint64_t seq;
	size_t i;

	for (i = 0; i < p->nls; i++) {
		struct wl *wl = &w->wl[i];

		if (wl->ctx == NULL)
			continue;	/* http mode: the gateway's own */
		cfg = NULL;
		pthread_mutex_lock(&p->mu);
		seq = wl->ls->cfg_seq;
		if (seq != wl->cfg_seq) {
			cfg = wl->ls->cfg;
			config_ref(cfg);
		}
		pthread_mutex_unlock(&p->mu);
		if (cfg == NULL)
			continue;
		/* a failure keeps the old context serving */
		if (mtls_configure(wl->ctx, cfg) == 0)
			wl->cfg_seq = seq;
		else {
			json_t *o = json_object();

			json_object_set_new(o, "listener",
			    esc_jstr(wl->ls->l->name));
			json_object_set_new(o, "worker", json_integer(w->id));
			json_object_set_new(o, "error",
			    esc_jstr(mtls_error(wl->ctx)));
			log_emit("error", "reload", o);
			json_decref(o);
		}
		mtls_config_free(cfg);
	}
}

void *
pump_worker(void *arg)
{
	struct worker *w = arg;
	struct proxy *p = w->p;
	struct epoll_event evs[128];
	struct tq *qs[NQUEUES] = { &w->fb_q, &w->ihs_q, &w->hs_q,
	    &w->conn_q, &w->idle_q };
	int64_t now, next, t;
	int i, n;
	size_t k;
	uint64_t v;

	x509memo_thread(1);	/* the data path: libssl's parses memoized */
	for (;;) {
		now = net_now_ms();
		next = now + 1000;
		for (k = 0; k < NQUEUES; k++) {
			struct tq *q = qs[k];

			if (q->head && q->head->deadline_ms < next)
				next = q->head->deadline_ms;
		}
		t = next - now;
		n = epoll_wait(w->epfd, evs, 128, t < 0 ? 0 : (int)t);
		for (i = 0; i < n; i++) {
			void *d = evs[i].data.ptr;
			int kind = *(int *)d;

			if (kind == EP_LISTENER) {
				listener_accept(d);
			} else if (kind == EP_EVENT) {
				if (read(w->evfd, &v, sizeof(v)) < 0)
					v = 0;
				take_config(w);
			} else {
				struct side *s = d;

				if (!s->c->dead) {
					if (evs[i].events & (EPOLLIN | EPOLLHUP |
					    EPOLLERR | EPOLLRDHUP))
						s->rd_idle = 0;
					conn_step(s->c, evs[i].events);
				}
			}
		}
		now = net_now_ms();
		for (k = 0; k < NQUEUES; k++)
			expire(w, qs[k], now);
		reap(w);
		for (k = 0; k < p->nls && !w->draining; k++) {
			struct wl *wl = &w->wl[k];
			struct epoll_event ev = { .events = EPOLLIN,
			    .data.ptr = wl };

			if (wl->accept_paused_until &&
			    now >= wl->accept_paused_until) {
				wl->accept_paused_until = 0;
				epoll_ctl(w->epfd, EPOLL_CTL_ADD, wl->lfd, &ev);
			}
		}
		if (__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE)) {
			if (!w->draining) {
				/* stop accepting: the ports close with us */
				w->draining = 1;
				for (k = 0; k < p->nls; k++) {
					if (w->wl[k].lfd < 0)
						continue;
					epoll_ctl(w->epfd, EPOLL_CTL_DEL,
					    w->wl[k].lfd, NULL);
					close(w->wl[k].lfd);
					w->wl[k].lfd = -1;
				}
				/* nothing in flight on a silent one */
				while (w->fb_q.head)
					conn_free(w->fb_q.head, "shutdown");
			}
			if (w->nconns == 0 || now >= p->drain_deadline_ms)
				break;
		}
	}
	/* drain deadline passed: close what is left */
	for (k = 0; k < NQUEUES; k++)
		while (qs[k]->head)
			conn_free(qs[k]->head, "shutdown");
	reap(w);
	return NULL;
}

/* The workers, each with its epoll set, its eventfd and, per listener,
 * its own SO_REUSEPORT socket and TLS context (http listeners: the
 * gateway's own loops instead). */
int
pump_workers_new(struct proxy *p, struct mtls_error *err)
{
	const struct proxy_opts *o = p->o;
	struct epoll_event ev;
	size_t li;
	int i;

	p->nworkers = o->workers > 0 ? o->workers : (int)sysconf(
	    _SC_NPROCESSORS_ONLN);
	if (p->nworkers < 1)
		p->nworkers = 1;
	if (p->nworkers > 64)
		p->nworkers = 64;
	if ((p->w = calloc((size_t)p->nworkers, sizeof(*p->w))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	/* all closed before any is opened: a failure frees only what is */
	for (i = 0; i < p->nworkers; i++) {
		p->w[i].evfd = p->w[i].epfd = -1;
		for (li = 0; li < p->nls; li++)
			p->w[i].wl[li].lfd = -1;
	}
	for (i = 0; i < p->nworkers; i++) {
		struct worker *w = &p->w[i];

		w->p = p;
		w->id = i;
		/* the first byte never waits longer than a handshake */
		w->fb_q.timeout_ms = o->first_byte_timeout_ms > 0 &&
		    o->first_byte_timeout_ms < o->handshake_timeout_ms ?
		    o->first_byte_timeout_ms : o->handshake_timeout_ms;
		w->ihs_q.timeout_ms = o->handshake_timeout_ms;
		w->hs_q.timeout_ms = o->handshake_timeout_ms;
		w->conn_q.timeout_ms = o->connect_timeout_ms;
		w->idle_q.timeout_ms = o->idle_timeout_ms;
		if ((w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    (w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
			return error_set_errno(err, MTLS_ERR_IO, "epoll");
		for (li = 0; li < p->nls; li++) {
			struct wl *wl = &w->wl[li];

			wl->kind = EP_LISTENER;
			wl->w = w;
			wl->ls = &p->ls[li];
			if (wl->ls->l->http)
				continue;	/* gw_start */
			wl->ctx = wl->ls->l->outbound ? mtls_client() :
			    mtls_server();
			if (wl->ctx == NULL)
				return error_set(err, MTLS_ERR_NOMEM, "out of "
				    "memory");
			if (mtls_configure(wl->ctx, wl->ls->cfg) != 0) {
				error_copy(err, ctx_error(wl->ctx));
				return -1;
			}
			wl->cfg_seq = 1;
			if ((wl->lfd = listener_socket(wl->ls, err)) < 0)
				return -1;
			ev.events = EPOLLIN;
			ev.data.ptr = wl;
			epoll_ctl(w->epfd, EPOLL_CTL_ADD, wl->lfd, &ev);
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &tag_event;
		epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev);
	}
	return 0;
}

void
pump_workers_free(struct proxy *p)
{
	size_t li;
	int i;

	for (i = 0; p->w != NULL && i < p->nworkers; i++) {
		for (li = 0; li < p->nls; li++) {
			if (p->w[i].wl[li].lfd >= 0)
				close(p->w[i].wl[li].lfd);
			mtls_free(p->w[i].wl[li].ctx);
		}
		if (p->w[i].evfd >= 0)
			close(p->w[i].evfd);
		if (p->w[i].epfd >= 0)
			close(p->w[i].epfd);
	}
	free(p->w);
	p->w = NULL;
}
