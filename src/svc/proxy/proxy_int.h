/*
 * The proxy engine's private layout, shared by its files and included by
 * nothing outside them (the gateway talks to it through struct gw_env):
 *
 *   proxy.c     proxy_run: checks, start, stop (small)
 *   listener.c  listener state and sockets, accept, per-address and total
 *               connection limits
 *   pump.c      worker threads: epoll loop, connections, the byte pump,
 *               timeout queues, drain
 *   reload.c    config generations (build, check, swap), file watch,
 *               SIGHUP, ticket rotation: the main thread's control loop
 *   revfetch.c  the fetcher thread: --crl-url CRLs, OCSP staples, and the
 *               admission of every CRL (files too)
 *   admin.c     the admin endpoint: /metrics, /healthz, /readyz
 *   (config.c, the --config schema and defaults, is proxy.h's: no engine
 *   state)
 *
 * Threads and locks: the main thread owns struct proxy and every struct
 * lstate; fields marked "under proxy mu" are shared with the workers,
 * the fetcher and the admin thread; a worker's own fields are its alone
 * (its metrics are atomics read by the admin thread).
 */
#ifndef MTLS_PROXY_INT_H
#define MTLS_PROXY_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "net/iplimit.h"
#include "net/net.h"
#include "proxy/gateway.h"
#include "proxy/proxy.h"

#define BUF_SIZE	16384
#define NQUEUES		5	/* a worker's timeout queues */
#define HS_BUCKETS	11

/* mtls_handshake_seconds buckets, in microseconds (pump.c) */
extern const int64_t hs_bucket_us[HS_BUCKETS];

enum cstate { S_HANDSHAKE, S_CONNECT, S_PUMP };

/* Connections closed or refused to stay within the limits, by reason. */
enum { CL_FIRST_BYTE = GW_CL_FIRST_BYTE, CL_HS_TIMEOUT = GW_CL_HS_TIMEOUT,
	CL_PER_IP = GW_CL_PER_IP, CL_FULL = GW_CL_FULL,
	CL_EVICTED = GW_CL_EVICTED, CL__COUNT };	/* the gateway's too */
extern const char *const cl_names[CL__COUNT];	/* pump.c */

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
	int64_t			 own_not_before;	/* atomic */
	int64_t			 ca_not_after;	/* atomic: earliest of the CA
						 * certificates we send or trust */
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
	/* ca = TD:https://...: the last good bundle fetched from each
	 * endpoint entry (indexed as l->ca_path; under proxy mu) */
	struct crlsrc		 fbundle[PROXY_MAX_CA];
	int64_t			 bundle_next_ms[PROXY_MAX_CA];	/* fetcher */
	int64_t			 bundle_backoff_ms[PROXY_MAX_CA];	/* fetcher */
	int64_t			 bundle_hint_s[PROXY_MAX_CA];	/* fetcher: the
						 * bundle's spiffe_refresh_hint */
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
	uint64_t		 m_bundle_rejected;	/* atomic: bundlefetch.c */
	struct gw		*gw[PROXY_MAX_LISTENERS];	/* http mode */
	int			 sfd;		/* signalfd: SIGHUP, SIGTERM */
	int			 ifd;		/* inotify: the files' folders */
	/* conn_limit lines: at most one a second per reason (atomics) */
	int64_t			 lim_log_at[CL__COUNT];
	uint64_t		 lim_log_n[CL__COUNT];
};

/* A counter another thread reads. */
static inline void
bump(uint64_t *v, uint64_t n)
{
	__atomic_add_fetch(v, n, __ATOMIC_RELAXED);
}


/* A malloc'd copy of <len> bytes; NULL for NULL or out of memory. */
static inline uint8_t *
bytes_dup(const uint8_t *p, size_t len)
{
	uint8_t *d = p != NULL ? malloc(len) : NULL;

	if (d != NULL)
		memcpy(d, p, len);
	return d;
}

/* ---- listener.c ---- */
/* Sets up p->ls[<li>] from o->l[<li>]: its CRLs (fail closed), checks,
 * first config and staple, per-address table. 0, or -1 with <err>. */
int	 listener_init(struct proxy *, size_t li, struct mtls_error *)
	    MTLS_MUST_CHECK;
/* A bound, listening SO_REUSEPORT socket for <ls>, or -1 with <err>. */
int	 listener_socket(const struct lstate *, struct mtls_error *);
/* Accepts what is pending on <wl>'s socket (64 at most per call). */
void	 listener_accept(struct wl *);
/* Counts a connection closed for limit <why>; a conn_limit line at most
 * once a second per reason. */
void	 listener_limit_hit(struct worker *, int why, const char *listener,
	    const char *client);
/* Frees what listener_init made. */
void	 listener_free(struct lstate *);

/* ---- pump.c ---- */
int	 pump_workers_new(struct proxy *, struct mtls_error *)
	    MTLS_MUST_CHECK;
void	 pump_workers_free(struct proxy *);
void	*pump_worker(void *);		/* a worker thread */
void	 pump_count_handshake(struct worker *, int client, int result,
	    int resumed, int64_t us);
/* A connection: its epoll registration, queues and steps. */
int	 side_add(struct worker *, struct side *, uint32_t events);
void	 side_update(struct worker *, struct side *);
void	 tq_put(struct tq *, struct conn *, int64_t now);
void	 sock_nodelay(int fd);
int	 conn_connect(struct conn *);
int	 conn_tls_begin(struct conn *, int64_t now);
void	 conn_step(struct conn *, uint32_t events);
void	 conn_log_fail(struct conn *, int fail, const char *msg);
void	 conn_free(struct conn *, const char *why);

/* ---- reload.c ---- */
/* A new config generation for <ls> from its files and what was fetched
 * for it (copied under proxy mu); its leaf's serial in <serial>. NULL with
 * <err> when it does not pass config_build's checks. */
struct mtls_config *reload_build(struct proxy *, struct lstate *,
	    char *serial, size_t slen, struct mtls_error *);
/* Records the hash of <ls>'s files and fetched state as "in use". */
void	 reload_mark(struct proxy *, struct lstate *);
/* Our own identity, serial and notAfter of <cfg> into <ls>. */
void	 reload_identity(struct proxy *, struct lstate *,
	    const struct mtls_config *);
/* Blocks SIGHUP/SIGTERM/SIGINT/SIGPIPE into p->sfd, opens p->ifd and
 * watches every listener's folders. */
int	 reload_watch_start(struct proxy *, struct mtls_error *)
	    MTLS_MUST_CHECK;
void	 reload_watch(struct proxy *, const struct proxy_listener *);
/* The main thread's loop: signals, file changes, fetched changes, ticket
 * rotation, memory trim; returns at SIGTERM/SIGINT. */
void	 reload_loop(struct proxy *);

/* ---- revfetch.c ---- */
int	 revfetch_crl_files(struct proxy *, struct lstate *, int startup,
	    struct mtls_error *);
int	 revfetch_crl(struct proxy *, struct lstate *, struct mtls_error *);
int	 revfetch_staple(struct proxy *, struct lstate *);
int	 revfetch_wants_staple(const struct lstate *);
int64_t	 revfetch_interval(const struct proxy_listener *);
/* The fetcher's eventfd when any listener fetches; 0 or -1 with <err>. */
/* bundlefetch.c: the partners' bundle endpoints of <ls> that are due
 * (all of them at <startup>, when a failure is an error); 1 when a new
 * bundle was admitted, 0 none, -1 at startup with <err>. */
int	 bundlefetch_due(struct proxy *, struct lstate *, int64_t now_ms,
	    int startup, struct mtls_error *);
int	 bundlefetch_wanted(const struct proxy_listener *);
int	 revfetch_prepare(struct proxy *, struct mtls_error *)
	    MTLS_MUST_CHECK;
void	*revfetch_main(void *);		/* the fetcher thread */

/* ---- admin.c ---- */
/* Fail closed before anything starts; fills p->admin_ss. */
int	 admin_check(struct proxy *, const struct proxy_opts *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* --admin: its mTLS config (--admin-allow), socket and loop (not yet
 * running: net_loop_start once the listeners exist). */
int	 admin_start(struct proxy *, struct mtls_error *) MTLS_MUST_CHECK;
void	 admin_free(struct proxy *);

#endif
