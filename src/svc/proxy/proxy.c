/*
 * mtls proxy: the sidecar data path.
 *
 * Threads: the main thread handles signals (SIGHUP reload, SIGTERM/SIGINT
 * drain) and file watching (inotify), and builds and validates every new
 * config; each worker runs one epoll loop over its own SO_REUSEPORT
 * listener and its connections, and swaps in a new config when the main
 * thread posts one (an eventfd wakes it). Connections never move between
 * threads, so the data path takes no locks.
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
 * Limits on inbound listeners (issue 12 item 6): a connection is a struct
 * and an fd until its first byte (no TLS object), closed at
 * --first-byte-timeout; open connections per client address are counted
 * process-wide (src/svc/net/iplimit.c: the workers share one table per
 * listener, so the limit is exact whichever worker's SO_REUSEPORT socket
 * the kernel picked); at --max-conns the worker closes its longest-waiting
 * inbound connection that is not yet authenticated (first byte awaited or
 * handshake in progress) for the new one, never an authorized one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ocsp.h>

#include "http/http.h"
#include "net/iplimit.h"
#include "net/net.h"
#include "proxy/gateway.h"
#include "proxy/proxy.h"
#include "proxy/x509memo.h"

#define BUF_SIZE	16384
#define NQUEUES		5	/* a worker's timeout queues */
#define HS_BUCKETS	11

/* mtls_handshake_seconds buckets, in microseconds */
static const int64_t hs_bucket_us[HS_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000
};

enum cstate { S_HANDSHAKE, S_CONNECT, S_PUMP };

/* Connections closed or refused to stay within the limits, by reason. */
enum { CL_FIRST_BYTE = GW_CL_FIRST_BYTE, CL_HS_TIMEOUT = GW_CL_HS_TIMEOUT,
	CL_PER_IP = GW_CL_PER_IP, CL_FULL = GW_CL_FULL,
	CL_EVICTED = GW_CL_EVICTED, CL__COUNT };	/* the gateway's too */
static const char *cl_names[CL__COUNT] = { "first_byte_timeout",
    "handshake_timeout", "per_ip_limit", "max_conns", "evicted_idle" };

struct conn;

/* epoll data points at one of these; each starts with its kind */
enum ep_kind { EP_SIDE = 1, EP_LISTENER, EP_EVENT };

struct side {
	int		 kind;		/* EP_SIDE */
	struct conn	*c;
	int		 fd;
	struct mtls	*tls;		/* NULL for the plaintext side */
	int		 rd_eof;	/* read side finished */
	int		 wr_shut;	/* we shut our write side */
	int		 rd_idle;	/* last read said "nothing yet": skip reads
					 * until epoll reports it readable */
	uint32_t	 want;		/* epoll events wanted now */
	uint32_t	 registered;	/* events registered with epoll */
};

struct buf {
	char	*p;
	size_t	 off, len;
};

struct tq;

struct wl;

struct conn {
	struct worker	*w;
	struct wl	*wl;		/* the listener it came in on */
	struct side	 a, b;
	struct side	*tls_side;
	enum cstate	 state;
	struct buf	 ab, ba;	/* a->b, b->a */
	uint64_t	 bytes_ab, bytes_ba;
	int64_t		 t_start_us;
	int64_t		 hs_us;
	int		 verdict_pending;	/* outbound TLS 1.3: see below */
	struct tq	*q;
	struct conn	*q_prev, *q_next;
	int64_t		 deadline_ms;
	struct ipent	*ip;		/* its slot of the per-address limit */
	int		 dead;		/* closed; freed after the event batch */
	struct conn	*dead_next;
	char		 client[64];
};

struct tq {
	struct conn	*head, *tail;
	int64_t		 timeout_ms;
};

struct proxy;
struct worker;

/* One listener as the whole proxy sees it (shared, main thread owns). */
struct lstate {
	const struct proxy_listener *l;
	struct proxy		*p;
	struct sockaddr_storage	 listen_ss, target_ss;
	socklen_t		 listen_len, target_len;
	struct mtls_config	*cfg;		/* current, under proxy mu */
	uint64_t		 cfg_seq;	/* under proxy mu */
	int64_t			 own_not_after;	/* atomic */
	char			 own_id[256];	/* under proxy mu */
	char			 own_warn[512];	/* main thread: own_chain */
	uint8_t			 files_hash[32];	/* of the files in use */
	/* --crl files: the CRLs installed from each, [l->n_crls] (checked
	 * by crl_admit; under proxy mu) */
	struct crlsrc {
		uint8_t		*der;
		size_t		 len;
		uint8_t		 hash[32];
	}			*fcrl;
	/* --crl-url: the newest CRL fetched and admitted (under proxy mu) */
	uint8_t			*crl;
	size_t			 crl_len;
	uint8_t			 crl_hash[32];
	int64_t			 crl_next_ms;	/* fetcher thread only */
	/* OCSP stapling (inbound): the newest verified response for our
	 * leaf (under proxy mu); config_build staples it while it matches */
	uint8_t			*staple;
	size_t			 staple_len;
	uint8_t			 staple_hash[32];
	int64_t			 staple_next_update;	/* unix s, 0: none */
	char			 own_serial[64];	/* under proxy mu */
	char			 staple_serial[64];	/* fetcher thread only */
	int64_t			 staple_this_update;	/* fetcher thread only */
	int64_t			 staple_next_ms;	/* fetcher thread only */
	int64_t			 staple_backoff_ms;	/* fetcher thread only */
	struct iplimit		*ipt;	/* inbound: per client address */
	const struct lstate	*crl_src;	/* the admin endpoint's: the
						 * listener whose fetched CRL it
						 * uses; NULL: its own */
};

/* One listener in one worker: its socket and TLS context. */
struct wl {
	int		 kind;		/* EP_LISTENER */
	struct worker	*w;
	struct lstate	*ls;
	int		 lfd;
	struct mtls	*ctx;		/* server (inbound) / client (outbound) */
	uint64_t	 cfg_seq;
	int64_t		 accept_paused_until;
};

struct worker {
	struct proxy	*p;
	pthread_t	 thr;
	int		 id;
	int		 epfd;
	int		 evfd;
	struct wl	 wl[PROXY_MAX_LISTENERS];
	struct tq	 fb_q;		/* inbound: first byte awaited */
	struct tq	 ihs_q;		/* inbound: handshake under way */
	struct tq	 hs_q, conn_q, idle_q;
	int		 nconns;
	int		 draining;
	struct conn	*dead;		/* closed this batch, to free */
	char		 scratch[BUF_SIZE];
	/* metrics: written by this worker only, read by the admin side */
	uint64_t	 m_hs[2][MTLS_FAIL_COUNT][2];	/* [client][result][resumed] */
	uint64_t	 m_hs_bucket[HS_BUCKETS + 1];
	uint64_t	 m_hs_sum_us;
	uint64_t	 m_bytes_in, m_bytes_out;
	uint64_t	 m_probes;	/* inbound connections closed silent */
	uint64_t	 m_closed[CL__COUNT];	/* limits */
};

struct proxy {
	const struct proxy_opts	*o;
	struct lstate		 ls[PROXY_MAX_LISTENERS];
	size_t			 nls;
	struct worker		*w;
	int			 nworkers;
	pthread_mutex_t		 mu;
	int			 stopping;	/* atomic */
	int			 fetch_evfd;	/* a fetched CRL/staple changed */
	pthread_t		 fetch_thr;
	int			 fetch_started;
	int64_t			 drain_deadline_ms;
	int			 active;	/* atomic: open connections */
	struct net_loop		*admin;		/* --admin: its own thread */
	struct sockaddr_storage	 admin_ss;
	socklen_t		 admin_sl;
	/* --admin-allow: the admin endpoint's mTLS, built and reloaded like
	 * a listener (admin_ls.l == &admin_l; NULL when plain HTTP) */
	struct proxy_listener	 admin_l;
	struct lstate		 admin_ls;
	struct mtls		*admin_tls;	/* admin thread only */
	uint64_t		 admin_seq;	/* admin thread only */
	uint64_t		 m_admin_refused;	/* atomic */
	uint64_t		 m_reload_ok, m_reload_failed;	/* atomic */
	uint64_t		 m_crl_rejected[CRL_VERDICT__COUNT];	/* atomic */
	struct gw		*gw[PROXY_MAX_LISTENERS];	/* http mode */
	/* conn_limit lines: at most one a second per reason (atomics) */
	int64_t			 lim_log_at[CL__COUNT];
	uint64_t		 lim_log_n[CL__COUNT];
};

static int tag_event = EP_EVENT;

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- addresses ---- */

int
proxy_addr_parse(const char *text, const char *what,
    struct sockaddr_storage *ss, socklen_t *len, struct mtls_error *err)
{
	struct addrinfo hints, *res = NULL;
	char host[256], *port;
	const char *colon;
	int rc;

	memset(ss, 0, sizeof(*ss));
	if (strncmp(text, "unix:", 5) == 0) {
		struct sockaddr_un *su = (struct sockaddr_un *)ss;

		if (strlen(text + 5) == 0 ||
		    strlen(text + 5) >= sizeof(su->sun_path))
			return error_set(err, MTLS_ERR_ARG, "%s '%s': bad UNIX "
			    "socket path", what, text);
		su->sun_family = AF_UNIX;
		memcpy(su->sun_path, text + 5, strlen(text + 5) + 1);
		*len = sizeof(*su);
		return 0;
	}
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');

		if (rb == NULL || rb[1] != ':' || (size_t)(rb - text) > 200)
			return error_set(err, MTLS_ERR_ARG, "%s '%s': use "
			    "[IPv6]:PORT", what, text);
		snprintf(host, sizeof(host), "%.*s", (int)(rb - text - 1),
		    text + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || colon == text ||
		    (size_t)(colon - text) > 250)
			return error_set(err, MTLS_ERR_ARG, "%s '%s': use "
			    "HOST:PORT", what, text);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
	}
	port = (char *)colon + 1;
	if (*port == '\0' || strspn(port, "0123456789") != strlen(port) ||
	    atoi(port) <= 0 || atoi(port) > 65535)
		return error_set(err, MTLS_ERR_ARG, "%s '%s': port must be "
		    "1-65535", what, text);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		return error_set(err, MTLS_ERR_ARG, "%s '%s': %s", what, text,
		    gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int
proxy_addr_is_local(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_UNIX)
		return 1;
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr)
		    >> 24) == 127;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	return 0;
}

void
proxy_addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, h, sizeof(h));
		snprintf(buf, len, "%s:%u", h, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof(h));
		snprintf(buf, len, "[%s]:%u", h, ntohs(s->sin6_port));
	} else
		snprintf(buf, len, "unix");
}

/* ---- config ---- */

static void own_identity(struct proxy *, struct lstate *,
    const struct mtls_config *);

/*
 * Our certificate does not chain to --ca. --ca is the trust for peers, not
 * for us: a publicly issued server certificate with a private client CA is
 * a common setup, so this is a warning (<warn>) as long as the leaf is
 * within its validity window; outside it we refuse to start as before.
 */
static int
own_window_ok(const struct proxy_listener *l, const struct mtls_config *cfg,
    const char *why, char *serial, size_t slen, char *warn, size_t wlen,
    struct mtls_error *err)
{
	X509 *leaf = config_leaf(cfg);

	if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0)
		return error_fail(err, MTLS_FAIL_CERT_EXPIRED, "%s: own "
		    "certificate has expired", l->cert);
	if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
		return error_fail(err, MTLS_FAIL_CERT_NOT_YET_VALID, "%s: own "
		    "certificate is not valid yet: it starts in %lld s (clock "
		    "skew? sync this machine's clock)", l->cert, (long long)
		    (asn1_time_unix(X509_get0_notBefore(leaf)) - time(NULL)));
	serial_hex(X509_get0_serialNumber(leaf), serial, slen);
	snprintf(warn, wlen, "%s does not chain to --ca %s (%s; --ca is the "
	    "trust for peers): fine for a public server certificate with a "
	    "private client CA; otherwise peers will refuse it: send the "
	    "intermediates in %s or issue it from a CA in --ca", l->cert,
	    l->ca, why, l->cert);
	return 0;
}

/*
 * Builds and checks a complete config from the files: the key matches the
 * certificate, the certificate is valid now and chains to the bundle (in
 * mTLS both sides trust the same CAs; one that does not is only a warning
 * in <warn>, see own_window_ok), CRLs parse and are signed by their CA
 * (crl_admit has checked them before). Nothing is swapped unless all of
 * this passes.
 */
static struct mtls_config *
config_build(const struct proxy_listener *l, const struct crlsrc *fcrl,
    const uint8_t *crl, size_t crl_len, const uint8_t *staple,
    size_t staple_len, char *serial, size_t slen, char *warn, size_t wlen,
    struct mtls_error *err)
{
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *v = NULL;
	size_t i;

	if (cfg == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		return NULL;
	}
	if (mtls_config_set_identity_file(cfg, l->cert, l->key) != 0 ||
	    mtls_config_set_trust_file(cfg, l->ca) != 0 ||
	    (l->min_tls && mtls_config_set_min_tls(cfg, l->min_tls) != 0))
		goto cfgerr;
	/* the CRLs admitted from the files (crl_files_admit), not the files
	 * as they are now: a rejected new file leaves the previous CRL */
	for (i = 0; i < l->n_crls; i++)
		if (mtls_config_add_crl_mem(cfg, fcrl[i].der, fcrl[i].len,
		    l->crls[i]) != 0)
			goto cfgerr;
	if (crl != NULL && mtls_config_add_crl_mem(cfg, crl, crl_len,
	    l->crl_url) != 0)
		goto cfgerr;
	/* http mode: the handshake takes any certificate that chains to the
	 * bundle (none at all when a route is public); routes authorize */
	for (i = 0; l->http && i < l->n_routes; i++)
		if (l->routes[i]->optional &&
		    mtls_config_set_peer_optional(cfg) != 0)
			goto cfgerr;
	if (l->http && (mtls_config_set_allow_any(cfg) != 0 ||
	    mtls_config_set_alpn(cfg, "http/1.1") != 0))
		goto cfgerr;
	for (i = 0; !l->http && i < l->n_allow; i++)
		if (mtls_config_add_allow(cfg, l->allow[i]) != 0)
			goto cfgerr;
	for (i = 0; i < l->n_expect; i++)
		if (mtls_config_add_expect(cfg, l->expect[i]) != 0)
			goto cfgerr;
	if (l->allow_any && mtls_config_set_allow_any(cfg) != 0)
		goto cfgerr;
	if (l->ticket_key_file != NULL &&
	    mtls_config_set_ticket_key_file(cfg, l->ticket_key_file) != 0)
		goto cfgerr;
	if (l->outbound && l->require_staple &&
	    mtls_config_set_require_staple(cfg) != 0)
		goto cfgerr;
	/* our own chain, checked by a plain verifier on the same bundle */
	{
		struct mtls_config *own = mtls_config_new();
		struct verify_out out;
		int r, elsewhere;

		if (own == NULL || (v = mtls_new()) == NULL) {
			mtls_config_free(own);
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto err;
		}
		config_borrow_trust(own, config_trust(cfg));
		r = mtls_configure(v, own);
		config_borrow_trust(own, NULL);
		if (r == 0) {
			r = ctx_verify_chain(v, config_chain(cfg),
			    MTLS_PURPOSE_ANY, &out);
			if (out.serial[0])
				snprintf(serial, slen, "%s", out.serial);
			verify_out_free(&out);
		}
		/* a staple fetched for the previous certificate is dropped
		 * here; the fetcher gets one for this one */
		if (r == 0 && staple != NULL && !l->outbound &&
		    ocsp_matches(staple, staple_len, config_leaf(cfg),
		    config_chain(cfg), ctx_store(v)) &&
		    mtls_config_set_ocsp_staple(cfg, staple, staple_len) != 0) {
			mtls_config_free(own);
			goto cfgerr;
		}
		mtls_config_free(own);
		/* not ours to judge: --ca is the peers' trust */
		elsewhere = r != 0 && (mtls_fail_code(v) ==
		    MTLS_FAIL_UNKNOWN_CA || mtls_fail_code(v) ==
		    MTLS_FAIL_CHAIN_INCOMPLETE);
		if (elsewhere && own_window_ok(l, cfg, mtls_fail_name(
		    mtls_fail_code(v)), serial, slen, warn, wlen, err) != 0)
			goto err;
		if (r != 0 && !elsewhere) {
			error_set(err, MTLS_ERR_VERIFY, "%s: own certificate "
			    "does not verify against %s: %s: %s", l->cert,
			    l->ca, mtls_fail_name(mtls_fail_code(v)),
			    mtls_error(v));
			goto err;
		}
	}
	mtls_free(v);
	config_freeze(cfg);
	return cfg;
 cfgerr:
	error_copy(err, config_error(cfg));
 err:
	mtls_free(v);
	mtls_config_free(cfg);
	return NULL;
}

/* Our own leaf's serial, for the start line. Static buffer: main thread. */
static const char *
own_serial(const struct mtls_config *cfg)
{
	static char buf[64];

	serial_hex(X509_get0_serialNumber(config_leaf(cfg)), buf,
	    sizeof(buf));
	return buf;
}

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

static void
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

static void
bump(uint64_t *v, uint64_t n)
{
	__atomic_add_fetch(v, n, __ATOMIC_RELAXED);
}

static void
count_handshake(struct worker *w, int client, int result, int resumed,
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
	count_handshake(c->w, c->wl->ls->l->outbound, ok ? MTLS_FAIL_NONE :
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

static void
log_fail(struct conn *c, int fail, const char *msg)
{
	const struct proxy_listener *l = c->wl->ls->l;
	json_t *o = json_object();

	if (c->state == S_HANDSHAKE)
		count_handshake(c->w, l->outbound, fail, 0, c->hs_us);
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

/* Counts a connection closed for a limit and logs a conn_limit line (the
 * reason, the client, how many since the last line) at most once a
 * second per reason, whichever worker hits it: a flood cannot flood the
 * log. */
static void
limit_hit(struct worker *w, int why, const char *listener, const char *client)
{
	struct proxy *p = w->p;
	int64_t now = now_ms(), at;
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

/* ---- connections ---- */

static void
ep_update(struct worker *w, struct side *s)
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

static int
ep_add(struct worker *w, struct side *s, uint32_t events)
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
static void
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
		    (now_us() - c->t_start_us) / 1000));
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

static void
set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Starts the non-blocking connect of side b. */
static int
start_connect(struct conn *c)
{
	struct lstate *ls = c->wl->ls;
	int fd;

	fd = socket(ls->target_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	c->b.fd = fd;
	if (ls->target_ss.ss_family != AF_UNIX)
		set_nodelay(fd);
	if (connect(fd, (struct sockaddr *)&ls->target_ss, ls->target_len) != 0 &&
	    errno != EINPROGRESS)
		return -1;
	if (ep_add(c->w, &c->b, EPOLLOUT) != 0)
		return -1;
	c->state = S_CONNECT;
	tq_put(&c->w->conn_q, c, now_ms());
	return 0;
}

static int
start_pump(struct conn *c)
{
	c->state = S_PUMP;
	tq_put(&c->w->idle_q, c, now_ms());
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
static int
hs_begin(struct conn *c, int64_t now)
{
	if (mtls_accept_socket(c->wl->ctx, &c->a.tls, c->a.fd) != 0) {
		conn_free(c, "error");
		return -1;
	}
	tq_put(&c->w->ihs_q, c, now);
	return 0;
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
	limit_hit(w, CL_EVICTED, c->wl->ls->l->name, c->client);
	conn_free(c, "evicted_idle");
	return 1;
}

static void
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
			log_fail(c, MTLS_FAIL_CONNECT_FAILED, strerror(soerr));
			conn_free(c, "connect_failed");
			return;
		}
		if (c->wl->ls->l->outbound) {
			/* upstream connected: now our TLS client handshake */
			if (mtls_connect_socket(c->wl->ctx, &c->b.tls, c->b.fd,
			    c->wl->ls->l->servername) != 0) {
				log_fail(c, MTLS_FAIL_CONNECT_FAILED,
				    mtls_error(c->wl->ctx));
				conn_free(c, "error");
				return;
			}
			c->state = S_HANDSHAKE;
			c->t_start_us = now_us();
			tq_put(&w->hs_q, c, now_ms());
		} else if (start_pump(c) != 0) {
			conn_free(c, "nomem");
			return;
		}
	}
	if (c->state == S_HANDSHAKE && t->tls == NULL &&
	    hs_begin(c, now_ms()) != 0)
		return;
	if (c->state == S_HANDSHAKE) {
		r = mtls_handshake(t->tls);
		if (r == MTLS_WANT_READ || r == MTLS_WANT_WRITE) {
			t->want = want_ev(r);
			ep_update(w, t);
			return;
		}
		c->hs_us = now_us() - c->t_start_us;
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
			if (start_connect(c) != 0) {
				log_fail(c, MTLS_FAIL_CONNECT_FAILED,
				    strerror(errno));
				conn_free(c, "connect_failed");
			}
			t->want = 0;
			if (c->state == S_CONNECT)
				ep_update(w, t);
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
		tq_put(&w->idle_q, c, now_ms());
	ep_update(w, &c->a);
	ep_update(w, &c->b);
}

static void
do_accept(struct wl *wl)
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
				wl->accept_paused_until = now_ms() + 100;
				epoll_ctl(w->epfd, EPOLL_CTL_DEL, wl->lfd, NULL);
			}
			return;
		}
		if (wl->ls->ipt != NULL &&
		    iplimit_take(wl->ls->ipt, &ss, &ip) != 0) {
			proxy_addr_text(&ss, client, sizeof(client));
			limit_hit(w, CL_PER_IP, wl->ls->l->name, client);
			close(fd);
			continue;
		} else if (wl->ls->ipt == NULL)
			ip = NULL;
		if (p->o->max_conns > 0 &&
		    __atomic_load_n(&p->active, __ATOMIC_RELAXED) >=
		    p->o->max_conns && !evict_oldest(w)) {
			proxy_addr_text(&ss, client, sizeof(client));
			limit_hit(w, CL_FULL, wl->ls->l->name, client);
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
		c->t_start_us = now_us();
		proxy_addr_text(&ss, c->client, sizeof(c->client));
		if (ss.ss_family != AF_UNIX)
			set_nodelay(fd);
		if (ep_add(w, &c->a, EPOLLIN) != 0) {
			conn_free(c, "error");
			continue;
		}
		if (wl->ls->l->outbound) {
			c->tls_side = &c->b;
			if (start_connect(c) != 0) {
				c->state = S_CONNECT;
				log_fail(c, MTLS_FAIL_CONNECT_FAILED,
				    strerror(errno));
				conn_free(c, "connect_failed");
				continue;
			}
			c->a.want = 0;	/* read the app once upstream is up */
			ep_update(w, &c->a);
		} else {
			/* until its first byte a connection is a struct
			 * and an fd: the TLS object comes with the byte */
			c->tls_side = &c->a;
			c->state = S_HANDSHAKE;
			if (recv(fd, &b1, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
				if (hs_begin(c, now_ms()) == 0)
					conn_step(c, 0);
			} else
				tq_put(&w->fb_q, c, now_ms());
		}
	}
}

static void
expire(struct worker *w, struct tq *q, int64_t now)
{
	struct conn *c;

	while ((c = q->head) != NULL && c->deadline_ms <= now) {
		if (q == &w->fb_q) {
			limit_hit(w, CL_FIRST_BYTE, c->wl->ls->l->name,
			    c->client);
			conn_free(c, "first_byte_timeout");
		} else if (q == &w->hs_q || q == &w->ihs_q) {
			if (q == &w->ihs_q)
				limit_hit(w, CL_HS_TIMEOUT, NULL, NULL);
			c->hs_us = now_us() - c->t_start_us;
			log_fail(c, MTLS_FAIL_HANDSHAKE_TIMEOUT, "the handshake "
			    "did not finish in time");
			conn_free(c, "handshake_timeout");
		} else if (q == &w->conn_q) {
			log_fail(c, MTLS_FAIL_CONNECT_FAILED, "connect timed "
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

static void *
worker_main(void *arg)
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
		now = now_ms();
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
				do_accept(d);
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
		now = now_ms();
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

static int
listen_socket(const struct lstate *ls, struct mtls_error *err)
{
	int fd, one = 1;

	fd = socket(ls->listen_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_set_errno(err, MTLS_ERR_IO, "listen %s: socket",
		    ls->l->listen);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* one listening socket per worker: the kernel spreads accepts */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ls->listen_ss, ls->listen_len) != 0 ||
	    listen(fd, 1024) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "listen %s", ls->l->listen);
		close(fd);
		return -1;
	}
	return fd;
}

/* The files a listener is built from. */
static size_t
listener_files(const struct proxy_listener *l, const char **files, size_t max)
{
	size_t n = 0, i;

	files[n++] = l->cert;
	files[n++] = l->key;
	files[n++] = l->ca;
	for (i = 0; i < l->n_crls && n < max - 1; i++)
		files[n++] = l->crls[i];
	if (l->ticket_key_file != NULL)
		files[n++] = l->ticket_key_file;
	return n;
}

/* SHA-256 over the listener's files as they are now (a reload that changes
 * nothing keeps the running config, and so its sessions). */
static void
files_hash(const struct proxy_listener *l, uint8_t out[32])
{
	const char *files[64];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct mtls_error e;
	unsigned int n;
	uint8_t *buf;
	size_t len, i, nf = listener_files(l, files, 64);

	memset(out, 0, 32);
	if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		return;
	}
	for (i = 0; i < nf; i++) {
		if (fs_read(files[i], MTLS_MAX_FILE, &buf, &len, &e) != 0) {
			EVP_DigestUpdate(md, "missing", 7);
			continue;
		}
		EVP_DigestUpdate(md, &len, sizeof(len));
		EVP_DigestUpdate(md, buf, len);
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	EVP_DigestFinal_ex(md, out, &n);
	EVP_MD_CTX_free(md);
}

/* Whether an inotify event's name is one of the watched files, or one of
 * the "..data"-style entries of a Kubernetes secret volume swap. */
static int
relevant_name(const struct proxy *p, const char *name)
{
	const char *files[64], *base;
	size_t k, i, n;

	if (name[0] == '.' && name[1] == '.')
		return 1;
	for (k = 0; k <= p->nls; k++) {
		if (k == p->nls && p->admin_ls.l == NULL)
			break;
		n = listener_files(k < p->nls ? p->ls[k].l : p->admin_ls.l,
		    files, 64);
		for (i = 0; i < n; i++) {
			base = strrchr(files[i], '/');
			base = base ? base + 1 : files[i];
			if (strcmp(base, name) == 0)
				return 1;
		}
	}
	return 0;
}

/* The folders holding the watched files, each once. */
static void
watch_files(int ifd, const struct proxy_listener *l)
{
	const char *files[64];
	char dir[PATH_MAX], seen[8][PATH_MAX];
	size_t n, i, j, ns = 0;

	n = listener_files(l, files, 64);
	for (i = 0; i < n; i++) {
		char *slash;

		snprintf(dir, sizeof(dir), "%s", files[i]);
		slash = strrchr(dir, '/');
		if (slash == NULL)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		for (j = 0; j < ns; j++)
			if (strcmp(seen[j], dir) == 0)
				break;
		if (j < ns || ns == 8)
			continue;
		snprintf(seen[ns++], PATH_MAX, "%s", dir);
		/* renames and symlink swaps (Kubernetes ..data, mtls agent)
		 * show up as moves and creates in the folder */
		inotify_add_watch(ifd, dir, IN_CLOSE_WRITE | IN_MOVED_TO |
		    IN_CREATE | IN_DELETE | IN_ATTRIB);
	}
}

/* Rebuilds every listener's config from its files; a listener whose new
 * set fails keeps the old one. */
static int64_t
crl_refresh(const struct proxy_listener *l)
{
	return l->crl_refresh_ms > 0 ? l->crl_refresh_ms : 60000;
}

/* The hash of the files in use also covers what was fetched (a CRL, a
 * staple); under proxy mu. */
static void
mix_hash(uint8_t h[32], const uint8_t add[32])
{
	static const uint8_t zero[32];
	uint8_t buf[64];

	if (memcmp(add, zero, 32) == 0)
		return;
	memcpy(buf, h, 32);
	memcpy(buf + 32, add, 32);
	SHA256(buf, sizeof(buf), h);
}

static void
mix_fetched(struct lstate *ls, uint8_t h[32])
{
	mix_hash(h, (ls->crl_src ? ls->crl_src : ls)->crl_hash);
	mix_hash(h, ls->staple_hash);
}

static uint8_t *
dup_bytes(const uint8_t *p, size_t len)
{
	uint8_t *d = p != NULL ? malloc(len) : NULL;

	if (d != NULL)
		memcpy(d, p, len);
	return d;
}

static struct mtls_config *
listener_config(struct proxy *p, struct lstate *ls, char *serial, size_t slen,
    struct mtls_error *err)
{
	struct mtls_config *cfg = NULL;
	struct crlsrc *fcrl;
	uint8_t *crl, *staple;
	size_t len, slen2, i, nf = ls->l->n_crls;
	char warn[sizeof(ls->own_warn)] = "";
	const struct lstate *cs = ls->crl_src ? ls->crl_src : ls;
	int oom;

	fcrl = calloc(nf + 1, sizeof(*fcrl));
	pthread_mutex_lock(&p->mu);
	crl = dup_bytes(cs->crl, len = cs->crl_len);
	staple = dup_bytes(ls->staple, slen2 = ls->staple_len);
	oom = fcrl == NULL || (cs->crl != NULL && crl == NULL) ||
	    (ls->staple != NULL && staple == NULL);
	for (i = 0; !oom && i < nf; i++) {
		fcrl[i].der = dup_bytes(ls->fcrl[i].der,
		    fcrl[i].len = ls->fcrl[i].len);
		oom = fcrl[i].der == NULL;
	}
	pthread_mutex_unlock(&p->mu);
	if (oom)
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
	else
		cfg = config_build(ls->l, fcrl, crl, len, staple, slen2, serial,
		    slen, warn, sizeof(warn), err);
	for (i = 0; fcrl != NULL && i < nf; i++)
		free(fcrl[i].der);
	free(fcrl);
	free(crl);
	free(staple);
	/* one line per change of the warning, not per rebuild */
	if (cfg != NULL && strcmp(warn, ls->own_warn) != 0) {
		if (warn[0] != '\0') {
			json_t *o = json_object();

			json_object_set_new(o, "listener",
			    esc_jstr(ls->l->name));
			json_object_set_new(o, "warning", esc_jstr(warn));
			log_emit("warn", "own_chain", o);
			json_decref(o);
		}
		snprintf(ls->own_warn, sizeof(ls->own_warn), "%s", warn);
	}
	return cfg;
}

/* One line and one count per CRL refused (the previous one stays). */
static void
crl_rejected(struct proxy *p, struct lstate *ls, const char *kind,
    const char *src, int v, const struct mtls_error *e)
{
	json_t *o = json_object();

	__atomic_add_fetch(&p->m_crl_rejected[v], 1, __ATOMIC_RELAXED);
	json_object_set_new(o, "listener", esc_jstr(ls->l->name));
	json_object_set_new(o, kind, esc_jstr(src));
	json_object_set_new(o, "reason", esc_jstr(crl_verdict_name(v)));
	json_object_set_new(o, "error", esc_jstr(e->msg));
	log_emit("warn", "crl_rejected", o);
	json_decref(o);
}

/*
 * Whether CRL bytes <buf> from <src> may replace <cur> (what that source
 * has installed; NULL: nothing yet): they parse, and crl_check passes with
 * the listener's issuers (the --ca bundle, our own chain under it), at the
 * time now, not older than <cur>. CRL_OK, or the verdict with <e>.
 */
static int
crl_admit(const struct proxy_listener *l, const char *src, const uint8_t *buf,
    size_t len, const uint8_t *cur, size_t cur_len, struct mtls_error *e)
{
	STACK_OF(X509_CRL) *sk = NULL, *inst = NULL;
	STACK_OF(X509) *trust = NULL, *own = NULL;
	int v = CRL_MALFORMED;

	error_clear(e);
	if (crls_parse(buf, len, src, &sk, e) != 0)
		goto out;
	v = CRL_UNKNOWN_ISSUER;
	if (certs_load(l->ca, &trust, e) != 0 ||
	    certs_load(l->cert, &own, e) != 0)
		goto out;
	v = CRL_MALFORMED;
	if (cur != NULL && crls_parse(cur, cur_len, src, &inst, e) != 0)
		goto out;
	v = crl_check(sk, src, trust, own, inst, CRL_CHECK_STRICT |
	    CRL_CHECK_TIME, (int64_t)time(NULL), e);
 out:
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	sk_X509_CRL_pop_free(inst, X509_CRL_free);
	sk_X509_pop_free(trust, X509_free);
	sk_X509_pop_free(own, X509_free);
	return v;
}

/* Fetches <ls>'s CRL URL; 1 when a new CRL passed crl_admit (then stored),
 * 0 when the same, -1 on failure or refusal (logged and counted; the
 * previous CRL stays; <err> says why). */
static int
crl_fetch(struct proxy *p, struct lstate *ls, struct mtls_error *err)
{
	struct mtls_error e;
	uint8_t *buf = NULL, *cur, h[32];
	size_t len = 0, cur_len;
	char msg[512];
	json_t *o;
	int v, same, oom;

	if (http_fetch(ls->l->crl_url, ls->l->ca, 10, MTLS_MAX_FILE, &buf, &len,
	    msg, sizeof(msg)) != 0) {
		o = json_object();
		json_object_set_new(o, "listener", esc_jstr(ls->l->name));
		json_object_set_new(o, "url", esc_jstr(ls->l->crl_url));
		json_object_set_new(o, "error", esc_jstr(msg));
		log_emit("warn", "crl_fetch", o);
		json_decref(o);
		error_set(err, MTLS_ERR_IO, "--crl-url %s: cannot fetch the "
		    "CRL: %s", ls->l->crl_url, msg);
		free(buf);
		return -1;
	}
	SHA256(buf, len, h);
	pthread_mutex_lock(&p->mu);
	same = ls->crl != NULL && memcmp(h, ls->crl_hash, 32) == 0;
	cur = dup_bytes(ls->crl, cur_len = ls->crl_len);
	oom = ls->crl != NULL && cur == NULL;
	pthread_mutex_unlock(&p->mu);
	if (same || oom) {
		free(cur);
		free(buf);
		if (oom)
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
		return oom ? -1 : 0;
	}
	v = crl_admit(ls->l, ls->l->crl_url, buf, len, cur, cur_len, &e);
	free(cur);
	if (v != CRL_OK) {
		crl_rejected(p, ls, "url", ls->l->crl_url, v, &e);
		error_set(err, MTLS_ERR_VERIFY, "%s: %s",
		    crl_verdict_name(v), e.msg);
		free(buf);
		return -1;
	}
	pthread_mutex_lock(&p->mu);
	free(ls->crl);
	ls->crl = buf;
	ls->crl_len = len;
	memcpy(ls->crl_hash, h, 32);
	pthread_mutex_unlock(&p->mu);
	return 1;
}

/*
 * Reads each --crl file of <ls> that changed since it was installed and
 * installs it if crl_admit passes. At <startup> a file that cannot be read
 * or is refused is an error; later it is logged and counted, and the CRL
 * installed from that file stays.
 */
static int
crl_files_admit(struct proxy *p, struct lstate *ls, int startup,
    struct mtls_error *err)
{
	const struct proxy_listener *l = ls->l;
	struct mtls_error e;
	uint8_t *buf, *cur, h[32];
	size_t i, len, cur_len;
	int v, same;

	for (i = 0; i < l->n_crls; i++) {
		error_clear(&e);
		if (fs_read(l->crls[i], MTLS_MAX_FILE, &buf, &len, &e) != 0) {
			v = CRL_MALFORMED;
			goto refused;
		}
		SHA256(buf, len, h);
		pthread_mutex_lock(&p->mu);
		same = ls->fcrl[i].der != NULL &&
		    memcmp(h, ls->fcrl[i].hash, 32) == 0;
		cur = dup_bytes(ls->fcrl[i].der, cur_len = ls->fcrl[i].len);
		pthread_mutex_unlock(&p->mu);
		if (same) {
			free(cur);
			free(buf);
			continue;
		}
		v = crl_admit(l, l->crls[i], buf, len, cur, cur_len, &e);
		free(cur);
		if (v != CRL_OK) {
			free(buf);
			goto refused;
		}
		pthread_mutex_lock(&p->mu);
		free(ls->fcrl[i].der);
		ls->fcrl[i].der = buf;
		ls->fcrl[i].len = len;
		memcpy(ls->fcrl[i].hash, h, 32);
		pthread_mutex_unlock(&p->mu);
		continue;
 refused:
		crl_rejected(p, ls, "file", l->crls[i], v, &e);
		if (startup)
			return error_set(err, MTLS_ERR_VERIFY, "--crl: %s: %s",
			    crl_verdict_name(v), e.msg);
	}
	return 0;
}

static void
staple_log(const char *level, struct lstate *ls, const char *serial,
    const char *url, const char *status, int64_t next, const char *error)
{
	json_t *o = json_object();

	json_object_set_new(o, "listener", esc_jstr(ls->l->name));
	json_object_set_new(o, "serial", esc_jstr(serial));
	if (url != NULL)
		json_object_set_new(o, "url", esc_jstr(url));
	if (status != NULL)
		json_object_set_new(o, "status", esc_jstr(status));
	if (next > 0)
		json_object_set_new(o, "next_update", json_integer(next));
	if (error != NULL)
		json_object_set_new(o, "error", esc_jstr(error));
	log_emit(level, "ocsp_staple", o);
	json_decref(o);
}

/* Replaces <ls>'s staple (NULL drops it); 1 when it changed. */
static int
staple_store(struct proxy *p, struct lstate *ls, uint8_t *der, size_t len,
    int64_t next_update)
{
	uint8_t h[32] = { 0 };
	int changed;

	if (der != NULL)
		SHA256(der, len, h);
	pthread_mutex_lock(&p->mu);
	changed = memcmp(h, ls->staple_hash, 32) != 0;
	free(ls->staple);
	ls->staple = der;
	ls->staple_len = len;
	ls->staple_next_update = next_update;
	memcpy(ls->staple_hash, h, 32);
	pthread_mutex_unlock(&p->mu);
	return changed;
}

/*
 * Fetches the OCSP status of <ls>'s own certificate from the responder it
 * names (AIA), checks it as a client would (ocsp_check) and keeps it for
 * stapling. Refreshes at half the response's validity (10 s .. 1 h); on
 * failure retries with back-off (2 s .. 60 s) and keeps the previous
 * staple until its nextUpdate. 1 when the staple changed.
 */
static int
staple_fetch(struct proxy *p, struct lstate *ls)
{
	struct mtls_config *cfg;
	STACK_OF(OPENSSL_STRING) *urls = NULL;
	X509_STORE *store = NULL;
	X509 *leaf, *issuer = NULL;
	uint8_t *req = NULL, *buf = NULL;
	size_t req_len = 0, len = 0;
	struct ocsp_result res;
	struct mtls_error e;
	char serial[64], err[512] = "";
	const char *url = NULL;
	int64_t now = now_ms(), unow = (int64_t)time(NULL), next;
	int changed = 0;

	pthread_mutex_lock(&p->mu);
	cfg = ls->cfg;
	config_ref(cfg);
	pthread_mutex_unlock(&p->mu);
	leaf = config_leaf(cfg);
	serial_hex(X509_get0_serialNumber(leaf), serial, sizeof(serial));
	if (strcmp(serial, ls->staple_serial) != 0) {
		snprintf(ls->staple_serial, sizeof(ls->staple_serial), "%s",
		    serial);
		ls->staple_backoff_ms = 0;
		ls->staple_this_update = 0;
	}
	urls = X509_get1_ocsp(leaf);
	if (urls == NULL || sk_OPENSSL_STRING_num(urls) == 0) {
		/* nothing to staple; look again when the certificate changes */
		ls->staple_next_ms = INT64_MAX;
		changed = staple_store(p, ls, NULL, 0, 0);
		goto out;
	}
	url = sk_OPENSSL_STRING_value(urls, 0);
	error_clear(&e);
	if ((store = verify_store_new(cfg, &e)) == NULL ||
	    (issuer = ocsp_issuer(leaf, config_chain(cfg), store)) == NULL ||
	    ocsp_request(leaf, issuer, &req, &req_len, &e) != 0) {
		snprintf(err, sizeof(err), "%s", e.msg[0] ? e.msg :
		    "the issuer of our certificate is not in --ca");
		goto fail;
	}
	if (http_post(url, ls->l->ca, "application/ocsp-request", req,
	    req_len, 10, 65536, &buf, &len, err, sizeof(err)) != 0)
		goto fail;
	if (ocsp_check(buf, len, leaf, config_chain(cfg), store, unow, &res,
	    &e) != 0) {
		snprintf(err, sizeof(err), "%s", e.msg);
		goto fail;
	}
	/* never back to an older answer (the CRL rule): a validly signed
	 * "good" from before a revocation would otherwise be stapled again
	 * by whoever can answer at the responder's URL */
	if (res.this_update < ls->staple_this_update) {
		snprintf(err, sizeof(err), "the responder's answer (thisUpdate "
		    "%lld) is older than the staple held (%lld): kept the "
		    "newer one", (long long)res.this_update,
		    (long long)ls->staple_this_update);
		goto fail;
	}
	ls->staple_this_update = res.this_update;
	/* a revoked status is stapled too: it is the truth, and clients
	 * that check refuse us with the right reason */
	changed = staple_store(p, ls, buf, len, res.next_update);
	buf = NULL;
	next = res.next_update > 0 ? (res.next_update - unow) * 1000 / 2 :
	    3600000;
	if (next < 10000)
		next = 10000;
	if (next > 3600000)
		next = 3600000;
	ls->staple_next_ms = now + next;
	ls->staple_backoff_ms = 0;
	staple_log(res.status == V_OCSP_CERTSTATUS_GOOD ? "info" : "error", ls,
	    serial, url, res.status == V_OCSP_CERTSTATUS_GOOD ? "good" :
	    res.status == V_OCSP_CERTSTATUS_REVOKED ? "revoked" : "unknown",
	    res.next_update, NULL);
	goto out;
 fail:
	ls->staple_backoff_ms = ls->staple_backoff_ms ?
	    ls->staple_backoff_ms * 2 : 2000;
	if (ls->staple_backoff_ms > 60000)
		ls->staple_backoff_ms = 60000;
	ls->staple_next_ms = now + ls->staple_backoff_ms;
	staple_log("warn", ls, serial, url, NULL, 0, err);
	pthread_mutex_lock(&p->mu);
	next = ls->staple != NULL ? ls->staple_next_update : -1;
	pthread_mutex_unlock(&p->mu);
	if (next > 0 && next < unow)	/* past nextUpdate: stop stapling */
		changed = staple_store(p, ls, NULL, 0, 0);
 out:
	OPENSSL_free(req);
	free(buf);
	X509_free(issuer);
	X509_STORE_free(store);
	X509_email_free(urls);
	mtls_config_free(cfg);
	return changed;
}

static int
wants_staple(const struct lstate *ls)
{
	return !ls->l->outbound && !ls->l->staple_off;
}

/* The fetcher: every listener's CRL URL on its interval, and its own OCSP
 * staple when due or when its certificate changed; a change wakes the
 * main loop, which reloads. */
static void *
fetch_main(void *arg)
{
	struct proxy *p = arg;
	uint64_t one = 1;
	size_t k;

	while (!__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE)) {
		int64_t now = now_ms();

		for (k = 0; k < p->nls; k++) {
			struct lstate *ls = &p->ls[k];
			int changed = 0, renewed;

			if (ls->l->crl_url != NULL && now >= ls->crl_next_ms) {
				ls->crl_next_ms = now + crl_refresh(ls->l);
				struct mtls_error e;

				changed |= crl_fetch(p, ls, &e) == 1;
			}
			if (wants_staple(ls)) {
				pthread_mutex_lock(&p->mu);
				renewed = strcmp(ls->own_serial,
				    ls->staple_serial) != 0;
				pthread_mutex_unlock(&p->mu);
				if (renewed || now >= ls->staple_next_ms)
					changed |= staple_fetch(p, ls);
			}
			if (changed && write(p->fetch_evfd, &one,
			    sizeof(one)) < 0)
				continue;
		}
		poll(NULL, 0, 200);
	}
	return NULL;
}

/* Rebuilds <ls>'s config when its files (or what was fetched for it)
 * changed: 1 when a new one was swapped in, 0 when unchanged or refused
 * (the old one keeps serving). */
static int
reload_one(struct proxy *p, struct lstate *ls, const char *why)
{
	struct mtls_config *cfg;
	struct mtls_error err;
	char serial[64] = "";
	uint8_t h[32];
	json_t *o;

	files_hash(ls->l, h);
	pthread_mutex_lock(&p->mu);
	mix_fetched(ls, h);
	pthread_mutex_unlock(&p->mu);
	o = json_object();
	json_object_set_new(o, "listener", esc_jstr(ls->l->name));
	json_object_set_new(o, "trigger", esc_jstr(why));
	if (memcmp(h, ls->files_hash, 32) == 0) {
		/* nothing changed: keep the config and its sessions */
		json_object_set_new(o, "result", json_string("unchanged"));
		log_emit("info", "reload", o);
		json_decref(o);
		return 0;
	}
	/* a refused CRL file is logged and the previous one kept */
	(void)crl_files_admit(p, ls, 0, &err);
	cfg = listener_config(p, ls, serial, sizeof(serial), &err);
	if (cfg == NULL) {
		__atomic_add_fetch(&p->m_reload_failed, 1, __ATOMIC_RELAXED);
		json_object_set_new(o, "result", json_string("failed"));
		json_object_set_new(o, "error", esc_jstr(err.msg));
		log_emit("error", "reload", o);
		json_decref(o);
		return 0;
	}
	/* ticket keys carry over (they rotate on their timer, not on
	 * reload); with the same generation the verification cache
	 * does too, so sessions survive e.g. our own cert rotating */
	config_inherit(cfg, ls->cfg, ls->l->ticket_key_file == NULL);
	pthread_mutex_lock(&p->mu);
	mtls_config_free(ls->cfg);
	ls->cfg = cfg;
	ls->cfg_seq++;
	memcpy(ls->files_hash, h, 32);
	pthread_mutex_unlock(&p->mu);
	if (ls != &p->admin_ls)
		own_identity(p, ls, cfg);
	if (ls->l->ticket_key_file != NULL)
		x509memo_rotate();	/* the key file may be new */
	__atomic_add_fetch(&p->m_reload_ok, 1, __ATOMIC_RELAXED);
	json_object_set_new(o, "result", json_string("ok"));
	json_object_set_new(o, "serial", esc_jstr(serial));
	log_emit("info", "reload", o);
	json_decref(o);
	return 1;
}

/* Every listener, then the admin endpoint's mTLS (it takes the new config
 * at its next connection); the workers are told when one changed. */
static void
reload(struct proxy *p, const char *why)
{
	uint64_t one = 1;
	size_t k;
	int i, changed = 0;

	for (k = 0; k < p->nls; k++)
		changed |= reload_one(p, &p->ls[k], why);
	if (p->admin_ls.l != NULL)
		(void)reload_one(p, &p->admin_ls, why);
	for (i = 0; changed && i < p->nworkers; i++)
		if (write(p->w[i].evfd, &one, sizeof(one)) < 0)
			continue;
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

/* Timed rotation of session ticket keys for listeners without a shared key
 * file: new tickets get a new key, the previous key still opens. */
static void
rotate_tickets(struct proxy *p)
{
	json_t *o;
	size_t k;
	int n = 0;

	for (k = 0; k < p->nls; k++) {
		if (p->ls[k].l->ticket_key_file != NULL)
			continue;
		pthread_mutex_lock(&p->mu);
		if (config_rotate_ticket_keys(p->ls[k].cfg) == 0)
			n++;
		pthread_mutex_unlock(&p->mu);
	}
	/* the admin endpoint's tickets (--admin-allow) age the same way */
	pthread_mutex_lock(&p->mu);
	if (p->admin_ls.cfg != NULL &&
	    config_rotate_ticket_keys(p->admin_ls.cfg) != 0)
		log_emit("warn", "ticket_rotate_admin_failed", NULL);
	pthread_mutex_unlock(&p->mu);
	/* the memo keeps nothing made under the previous keys (also with
	 * key files only: the timer then bounds the entries' age) */
	x509memo_rotate();
	o = json_object();
	json_object_set_new(o, "listeners", json_integer(n));
	log_emit("info", "ticket_rotate", o);
	json_decref(o);
}

/* ---- admin: /metrics, /healthz, /readyz ---- */

static void
own_identity(struct proxy *p, struct lstate *ls, const struct mtls_config *cfg)
{
	X509 *leaf = config_leaf(cfg);
	struct mtls_error e;
	struct ids ids;

	__atomic_store_n(&ls->own_not_after,
	    asn1_time_unix(X509_get0_notAfter(leaf)), __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->mu);
	serial_hex(X509_get0_serialNumber(leaf), ls->own_serial,
	    sizeof(ls->own_serial));
	ls->own_id[0] = '\0';
	if (ids_from_cert(leaf, &ids, &e) == 0) {
		if (ids_primary(&ids) != NULL)
			snprintf(ls->own_id, sizeof(ls->own_id), "%s",
			    ids_primary(&ids));
		ids_free(&ids);
	}
	pthread_mutex_unlock(&p->mu);
}

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
		for (i = 0; id[i]; i++)
			if (id[i] == '"' || id[i] == '\\' || id[i] == '\n')
				id[i] = '_';
		sb_printf(b, "mtls_cert_expiry_timestamp_seconds{id=\"%s\"} "
		    "%lld\n", id, (long long)__atomic_load_n(
		    &p->ls[li].own_not_after, __ATOMIC_RELAXED));
	}
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
	int64_t deadline = now_ms() + ADMIN_TIMEOUT_MS;

	if (net_write(nc, t, head, (size_t)n, deadline) == 0)
		(void)net_write(nc, t, body, len, deadline);
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
	proxy_addr_text(net_conn_addr(nc), client, sizeof(client));
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
		admin_reply(nc, t, 400, "Bad Request", "text/plain",
		    "bad request\n", 12);
	} else if (strcmp(path, "/metrics") == 0) {
		struct sbuf b = { NULL, 0, 0 };

		metrics_text(p, &b);
		admin_reply(nc, t, 200, "OK", "text/plain; version=0.0.4",
		    b.p ? b.p : "", b.len);
		free(b.p);
	} else if (strcmp(path, "/healthz") == 0) {
		admin_reply(nc, t, 200, "OK", "text/plain", "ok\n", 3);
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
			admin_reply(nc, t, 200, "OK", "text/plain", "ready\n",
			    6);
		else
			admin_reply(nc, t, 503, "Service Unavailable",
			    "text/plain", "not ready: own certificate expired "
			    "or draining\n", 48);
	} else {
		admin_reply(nc, t, 404, "Not Found", "text/plain",
		    "not found\n", 10);
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
static int
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
	if (proxy_addr_parse(o->admin, "--admin", &p->admin_ss, &p->admin_sl,
	    err) != 0)
		return -1;
	if (o->n_admin_allow == 0 && !proxy_addr_is_local(&p->admin_ss))
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
	if (crl_files_admit(p, ls, 1, &lerr) != 0 ||
	    (ls->cfg = listener_config(p, ls, serial, sizeof(serial),
	    &lerr)) == NULL)
		return error_set(err, lerr.code, "--admin-allow: the admin "
		    "endpoint's TLS: %s", lerr.msg);
	ls->cfg_seq = 1;
	files_hash(al, ls->files_hash);
	mix_fetched(ls, ls->files_hash);
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

/*
 * After a burst of handshakes, the first quiet second hands the heap's
 * free pages back (malloc_trim): parsing certificates and building
 * handshakes leaves free memory between the connections that stay, and
 * without this an idle proxy keeps the RSS of its busiest second. Never
 * under steady load (it would only make pages fault back in).
 */
static void
quiet_trim(struct proxy *p)
{
	static uint64_t last;
	static int busy;
	uint64_t n = 0;
	int i, a, b, c;

	for (i = 0; i < p->nworkers; i++)
		for (a = 0; a < 2; a++)
			for (b = 0; b < MTLS_FAIL_COUNT; b++)
				for (c = 0; c < 2; c++)
					n += __atomic_load_n(&p->w[i].m_hs[a][b][c],
					    __ATOMIC_RELAXED);
	if (n != last)
		busy = 1;
	else if (busy) {
		busy = 0;
		malloc_trim(0);
	}
	last = n;
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

	limit_hit(&ls->p->w[0], why, ls->l->name, client);
}

/* gw_env.count_hs: into worker 0's counters (they are atomic). */
static void
gw_count_hs(void *arg, int result, int resumed, int64_t us)
{
	struct lstate *ls = arg;

	count_handshake(&ls->p->w[0], 0, result, resumed, us);
}

static int
check_listener(struct lstate *ls, struct mtls_error *err)
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
		    proxy_addr_parse(l->listen, "--listen", &ls->listen_ss,
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
	if (proxy_addr_parse(l->listen, "--listen", &ls->listen_ss,
	    &ls->listen_len, err) != 0 ||
	    proxy_addr_parse(l->target, "--target", &ls->target_ss,
	    &ls->target_len, err) != 0)
		return -1;
	if (ls->listen_ss.ss_family == AF_UNIX)
		return error_set(err, MTLS_ERR_ARG, "--listen: UNIX sockets "
		    "are not supported for listening yet; use 127.0.0.1:PORT");
	if (!l->unsafe_target && !l->outbound &&
	    !proxy_addr_is_local(&ls->target_ss))
		return error_set(err, MTLS_ERR_ARG, "--target %s is not "
		    "loopback: plaintext would leave this host (use "
		    "--unsafe-target if that is really meant)", l->target);
	if (!l->unsafe_target && l->outbound &&
	    !proxy_addr_is_local(&ls->listen_ss))
		return error_set(err, MTLS_ERR_ARG, "--listen %s is not "
		    "loopback: the plaintext side must stay on this host (use "
		    "--unsafe-target if that is really meant)", l->listen);
	return 0;
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

int
proxy_run(const struct proxy_opts *o, struct mtls_error *err)
{
	struct proxy p;
	struct epoll_event ev;
	sigset_t mask;
	char serial[64] = "";
	size_t li = 0, k;
	int sfd = -1, ifd = -1, i, started = 0, rv = -1;
	int64_t reload_at = 0, rotate_at = 0, trim_at = 0;

	memset(&p, 0, sizeof(p));
	p.o = o;
	p.fetch_evfd = -1;
	pthread_mutex_init(&p.mu, NULL);
	if (o->n_l == 0 || o->n_l > PROXY_MAX_LISTENERS) {
		error_set(err, MTLS_ERR_ARG, "no listener configured");
		goto out;
	}
	if (durations_check(o, err) != 0 || admin_check(&p, o, err) != 0)
		goto out;
	for (li = 0; li < o->n_l; li++) {
		struct lstate *ls = &p.ls[li];
		struct mtls_error lerr;

		ls->l = &o->l[li];
		ls->p = &p;
		p.nls++;
		error_clear(&lerr);
		/* fail closed: a CRL file or URL that cannot be read, or
		 * whose CRL is refused (crl_admit), stops the start */
		if ((ls->fcrl = calloc(ls->l->n_crls + 1,
		    sizeof(*ls->fcrl))) == NULL) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (crl_files_admit(&p, ls, 1, &lerr) != 0 ||
		    (ls->l->crl_url != NULL && crl_fetch(&p, ls, &lerr) < 0)) {
			if (o->n_l > 1)
				error_set(err, lerr.code, "listener %s: %s",
				    ls->l->name, lerr.msg);
			else
				error_copy(err, &lerr);
			goto out;
		}
		ls->crl_next_ms = now_ms() + crl_refresh(ls->l);
		if (check_listener(ls, &lerr) != 0 ||
		    (ls->cfg = listener_config(&p, ls, serial, sizeof(serial),
		    &lerr)) == NULL) {
			if (o->n_l > 1)
				error_set(err, lerr.code, "listener %s: %s",
				    ls->l->name, lerr.msg);
			else
				error_copy(err, &lerr);
			goto out;
		}
		/* a first staple before serving, if our certificate names a
		 * responder (not fatal: clients that need one refuse us) */
		if (wants_staple(ls) && staple_fetch(&p, ls) == 1) {
			struct mtls_config *c2 = listener_config(&p, ls,
			    serial, sizeof(serial), &lerr);

			if (c2 == NULL) {
				error_copy(err, &lerr);
				goto out;
			}
			mtls_config_free(ls->cfg);
			ls->cfg = c2;
		}
		if (!ls->l->outbound &&
		    (ls->ipt = iplimit_new(ls->l->max_conns_per_ip == 0 ?
		    PROXY_PER_IP : ls->l->max_conns_per_ip < 0 ? 0 :
		    ls->l->max_conns_per_ip)) == NULL) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
		ls->cfg_seq = 1;
		files_hash(ls->l, ls->files_hash);
		mix_fetched(ls, ls->files_hash);
		own_identity(&p, ls, ls->cfg);
	}
	for (li = 0; li < p.nls; li++)
		if ((p.ls[li].l->crl_url != NULL || wants_staple(&p.ls[li])) &&
		    p.fetch_evfd < 0 &&
		    (p.fetch_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
			error_set_errno(err, MTLS_ERR_IO, "eventfd");
			goto out;
		}
	p.nworkers = o->workers > 0 ? o->workers : (int)sysconf(
	    _SC_NPROCESSORS_ONLN);
	if (p.nworkers < 1)
		p.nworkers = 1;
	if (p.nworkers > 64)
		p.nworkers = 64;
	if ((p.w = calloc((size_t)p.nworkers, sizeof(*p.w))) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < p.nworkers; i++) {
		struct worker *w = &p.w[i];

		w->p = &p;
		w->id = i;
		w->evfd = w->epfd = -1;
		for (li = 0; li < p.nls; li++)
			w->wl[li].lfd = -1;
		/* the first byte never waits longer than a handshake */
		w->fb_q.timeout_ms = o->first_byte_timeout_ms > 0 &&
		    o->first_byte_timeout_ms < o->handshake_timeout_ms ?
		    o->first_byte_timeout_ms : o->handshake_timeout_ms;
		w->ihs_q.timeout_ms = o->handshake_timeout_ms;
		w->hs_q.timeout_ms = o->handshake_timeout_ms;
		w->conn_q.timeout_ms = o->connect_timeout_ms;
		w->idle_q.timeout_ms = o->idle_timeout_ms;
		if ((w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    (w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
			error_set_errno(err, MTLS_ERR_IO, "epoll");
			goto out;
		}
		for (li = 0; li < p.nls; li++) {
			struct wl *wl = &w->wl[li];

			wl->kind = EP_LISTENER;
			wl->w = w;
			wl->ls = &p.ls[li];
			if (wl->ls->l->http)
				continue;	/* gw_start below */
			wl->ctx = wl->ls->l->outbound ? mtls_client() :
			    mtls_server();
			if (wl->ctx == NULL) {
				error_set(err, MTLS_ERR_NOMEM, "out of memory");
				goto out;
			}
			if (mtls_configure(wl->ctx, wl->ls->cfg) != 0) {
				error_copy(err, ctx_error(wl->ctx));
				goto out;
			}
			wl->cfg_seq = 1;
			if ((wl->lfd = listen_socket(wl->ls, err)) < 0)
				goto out;
			ev.events = EPOLLIN;
			ev.data.ptr = wl;
			epoll_ctl(w->epfd, EPOLL_CTL_ADD, wl->lfd, &ev);
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &tag_event;
		epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev);
	}
	/* signals go to the main thread's signalfd, never to workers */
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		error_set_errno(err, MTLS_ERR_IO, "signalfd");
		goto out;
	}
	if ((ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) >= 0)
		for (li = 0; li < p.nls; li++)
			watch_files(ifd, p.ls[li].l);
	if (o->admin != NULL) {
		int one = 1, afd;

		if (admin_tls_new(&p, o, err) != 0)
			goto out;
		if (p.admin_ls.l != NULL && ifd >= 0)
			watch_files(ifd, p.admin_ls.l);
		afd = socket(p.admin_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (afd < 0 ||
		    setsockopt(afd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one)) != 0 ||
		    bind(afd, (struct sockaddr *)&p.admin_ss, p.admin_sl) != 0 ||
		    listen(afd, 1024) != 0) {
			error_set_errno(err, MTLS_ERR_IO, "--admin %s",
			    o->admin);
			if (afd >= 0)
				close(afd);
			goto out;
		}
		if (admin_new(&p, afd, err) != 0)
			goto out;
	}
	for (li = 0; li < p.nls; li++) {
		struct gw_env env;

		if (!p.ls[li].l->http)
			continue;
		memset(&env, 0, sizeof(env));
		env.l = p.ls[li].l;
		env.o = o;
		env.listen_ss = p.ls[li].listen_ss;
		env.listen_len = p.ls[li].listen_len;
		env.active = &p.active;
		env.stopping = &p.stopping;
		env.config = gw_config;
		env.count_hs = gw_count_hs;
		env.ipt = p.ls[li].ipt;
		env.limit = gw_limit;
		env.arg = &p.ls[li];
		if (gw_start(&env, &p.gw[li], err) != 0)
			goto out;
	}
	parse_memo_start(o);
	for (i = 0; i < p.nworkers; i++) {
		if (pthread_create(&p.w[i].thr, NULL, worker_main, &p.w[i])) {
			error_set(err, MTLS_ERR_IO, "cannot start worker");
			__atomic_store_n(&p.stopping, 1, __ATOMIC_RELEASE);
			goto join;
		}
		started++;
	}
	for (li = 0; li < p.nls; li++) {
		const struct proxy_listener *l = p.ls[li].l;
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
		json_object_set_new(lo, "workers", json_integer(p.nworkers));
		json_object_set_new(lo, "serial", esc_jstr(
		    own_serial(p.ls[li].cfg)));
		log_emit("info", "start", lo);
		json_decref(lo);
	}
	if (p.admin != NULL && net_loop_start(p.admin, err) != 0) {
		__atomic_store_n(&p.stopping, 1, __ATOMIC_RELEASE);
		goto join;
	}
	if (o->ticket_rotate_ms > 0)
		rotate_at = now_ms() + o->ticket_rotate_ms;
	if (p.fetch_evfd >= 0 && pthread_create(&p.fetch_thr, NULL, fetch_main,
	    &p) == 0)
		p.fetch_started = 1;
	for (;;) {
		struct pollfd pf[3] = { { sfd, POLLIN, 0 }, { ifd, POLLIN, 0 },
		    { p.fetch_evfd, POLLIN, 0 } };
		int64_t now = now_ms(), next = reload_at;
		int timeout;

		if (rotate_at && (next == 0 || rotate_at < next))
			next = rotate_at;
		if (now >= trim_at) {
			quiet_trim(&p);
			x509memo_sweep();
			trim_at = now + 1000;
		}
		if (next == 0 || trim_at < next)
			next = trim_at;
		timeout = next ? (int)(next - now) : -1;
		if (rotate_at && now >= rotate_at) {
			rotate_tickets(&p);
			rotate_at = now + o->ticket_rotate_ms;
			continue;
		}

		if (reload_at && timeout <= 0) {
			reload_at = 0;
			reload(&p, "file change");
			continue;
		}
		if (poll(pf, 3, timeout) < 0)
			continue;
		if (pf[2].revents & POLLIN) {
			uint64_t n;

			if (read(p.fetch_evfd, &n, sizeof(n)) == sizeof(n))
				reload(&p, "fetched");
		}
		if (pf[1].revents & POLLIN) {
			char ibuf[8192] __attribute__((aligned(8)));

			ssize_t got;
			int hit = 0;

			while ((got = read(ifd, ibuf, sizeof(ibuf))) > 0) {
				char *q = ibuf;

				while (q + sizeof(struct inotify_event) <=
				    ibuf + got) {
					struct inotify_event *ie = (void *)q;

					if (ie->len > 0 && q +
					    sizeof(*ie) + ie->len <= ibuf + got &&
					    relevant_name(&p, ie->name))
						hit = 1;
					q += sizeof(*ie) + ie->len;
				}
			}
			/* writers replace several files: wait for quiet */
			if (hit)
				reload_at = now_ms() + 200;
		}
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP)
				reload(&p, "SIGHUP");
			else if (si.ssi_signo == SIGTERM ||
			    si.ssi_signo == SIGINT) {
				json_t *so = json_object();

				json_object_set_new(so, "signal", esc_jstr(
				    si.ssi_signo == SIGTERM ? "SIGTERM" :
				    "SIGINT"));
				json_object_set_new(so, "open", json_integer(
				    __atomic_load_n(&p.active,
				    __ATOMIC_RELAXED)));
				log_emit("info", "drain", so);
				json_decref(so);
				break;
			}
		}
	}
	p.drain_deadline_ms = now_ms() + o->drain_timeout_ms;
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
	    now_ms() < p.drain_deadline_ms)
		poll(NULL, 0, 50);
	if (p.fetch_started) {
		__atomic_store_n(&p.stopping, 1, __ATOMIC_RELEASE);
		pthread_join(p.fetch_thr, NULL);
	}
	log_emit("info", "stop", NULL);
 out:
	net_loop_free(p.admin);	/* /readyz said 503 while draining */
	mtls_free(p.admin_tls);
	mtls_config_free(p.admin_ls.cfg);
	for (li = 0; li < PROXY_MAX_LISTENERS; li++) {
		gw_free(p.gw[li]);
	}
	for (i = 0; p.w != NULL && i < p.nworkers; i++) {
		for (li = 0; li < p.nls; li++) {
			if (p.w[i].wl[li].lfd >= 0)
				close(p.w[i].wl[li].lfd);
			mtls_free(p.w[i].wl[li].ctx);
		}
		if (p.w[i].evfd >= 0)
			close(p.w[i].evfd);
		if (p.w[i].epfd >= 0)
			close(p.w[i].epfd);
	}
	free(p.w);
	if (sfd >= 0)
		close(sfd);
	if (ifd >= 0)
		close(ifd);
	for (li = 0; li < p.nls; li++) {
		mtls_config_free(p.ls[li].cfg);
		iplimit_free(p.ls[li].ipt);
		free(p.ls[li].crl);
		free(p.ls[li].staple);
		for (k = 0; p.ls[li].fcrl != NULL && k < p.ls[li].l->n_crls;
		    k++)
			free(p.ls[li].fcrl[k].der);
		free(p.ls[li].fcrl);
	}
	for (k = 0; p.admin_ls.fcrl != NULL && k < p.admin_ls.l->n_crls; k++)
		free(p.admin_ls.fcrl[k].der);
	free(p.admin_ls.fcrl);
	if (p.fetch_evfd >= 0)
		close(p.fetch_evfd);
	pthread_mutex_destroy(&p.mu);
	return rv;
}
