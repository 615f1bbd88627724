/*
 * The gateway's private layout and cross-file functions (gateway.h is its
 * interface to the proxy). One file a noun:
 *   gateway.c      a connection: handshake, then requests one after
 *                  another (head, checks, route, forward, answer)
 *   gw_loop.c      a net loop per worker (net/net.h: accept, the cap,
 *                  coroutines), its server context, a connection's set-up
 *   gw_io.c        deadline I/O over a struct mtls or a plain fd; buffers
 *   gw_route.c     routes, per-route authorization, route metrics
 *   gw_upstream.c  the upstream pool of each route
 *   gw_idhdr.c     the head the upstream gets: XFCC and the identity
 *                  headers
 *   gw_log.c       the access log and the connection log lines
 * and http/h1.c, the HTTP/1.1 codec (no I/O) it parses and frames with.
 */
#ifndef MTLS_GW_INT_H
#define MTLS_GW_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include <http_parser.h>
#include <openssl/x509.h>

#include "http/h1.h"
#include "http/http.h"
#include "net/net.h"
#include "proxy/gateway.h"

#define IO_ERR		NET_ERR
#define IO_TIMEOUT	NET_TIMEOUT
#define IN_SIZE		(64 * 1024)
#define OUT_SIZE	(16 * 1024)
#define HTTP_MAX_CONNS	4096
/* X-Forwarded-Client-Cert is built from the client's certificate: any
 * number of names, each up to 255 (DNS) or 2048 (URI) bytes. Envoy has no
 * cap of its own; upstreams have header limits (8 KiB a line: nginx,
 * Tomcat), so a longer one is refused here, not cut or passed on. */
#define XFCC_MAX	8192
/* the head the upstream gets, whole */
#define UH_MAX		(128 * 1024)

/* A socket and the connection whose coroutine waits on it (an upstream's
 * is set each time a connection takes it from the pool). */
struct io {
	int		 fd;
	struct mtls	*tls;		/* NULL: plaintext */
	struct net_conn	*nc;
};

struct obuf {
	struct io	*io;
	char		 b[OUT_SIZE];
	size_t		 len;
	int		 failed;
};

struct upconn {
	struct io	 io;
};

struct route {
	const struct proxy_route *r;
	const char		*name;
	char			 host[264];	/* r->host normalized */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	pthread_mutex_t		 mu;		/* cli, pool */
	struct mtls		*cli;		/* up_tls: client context */
	struct upconn		*idle;		/* stack of idle connections */
	int			 n_idle, open;
	uint64_t		 m_code[600];	/* requests by status */
	uint64_t		 m_connects, m_reused, m_failed;
};

/*
 * Connections run as coroutines on net's loops (net/net.h), one loop per
 * worker: the request code reads as straight blocking code, and io_wait()
 * is the one place it waits (net_wait_fd: the loop runs others until the
 * fd is ready or the deadline passed; bench/RESULTS.md: a thread per
 * connection spent its CPU in the scheduler).
 */
struct loop {
	struct gw	*gw;
	int		 id;
	struct net_loop	*nl;
	struct mtls	*srv;		/* this loop's server context */
	uint64_t	 seq;
};

struct gw {
	struct gw_env		 env;
	const struct proxy_listener *l;
	struct loop		*loops;
	int			 nloops;
	pthread_mutex_t		 mu;		/* by, route contexts */
	char			 by[2100];	/* our URI SAN, for XFCC By= */
	struct route		*routes;
	size_t			 n_routes;
	struct route		 none;		/* requests refused unrouted */
	struct h1_limits	 lim;		/* the listener's, for the codec */
};

struct gwc {
	struct gw	*gw;
	struct loop	*lp;
	struct net_conn	*nc;		/* net's side: the cap, the drain */
	struct io	 cl;		/* the client */
	char		 client[64];
	int64_t		 t_conn;
	/* the peer */
	int		 verified, fail;
	struct ids	 ids;
	char		*xfcc;
	char		*by;		/* our URI SAN at accept time */
	const char	*peer_id;
	int		 id_bad;	/* peer names not fit for a header */
	/* client input */
	char		*in;
	size_t		 in_off, in_len;
	struct obuf	 out;		/* to the client */
	/* the request (http/h1.h): its head, checks, body framing and our
	 * refusal (status, code, message) */
	struct h1_req	 rq;
	const char	*result;	/* taxonomy code of a refusal, logged */
	/* the head the upstream gets: built once in on_head from the
	 * checked head, owned here (the head's fields are spans of c->in,
	 * which the body's reads overwrite); a retry resends it */
	struct h1_buf	 uh;
	int		 expect100;
	struct route	*route;
	/* the upstream exchange */
	struct upconn	 up;
	int		 have_up, up_reused;
	struct obuf	 ub;		/* to the upstream */
	struct h1_resp	 rs;		/* its answer (http/h1.h) */
	int64_t		 t_req, t_up;
};

static inline void
bump(uint64_t *v)
{
	__atomic_add_fetch(v, 1, __ATOMIC_RELAXED);
}

/* gateway.c */
void	 refuse(struct gwc *, int status, const char *code, const char *fmt,
	    ...) MTLS_PRINTF(4, 5);
void	 answer(struct gwc *);
void	 conn_run(struct gwc *);
int	 wait_request(struct gwc *);
int	 exchange(struct gwc *, char *rbuf, size_t rbufsz);

/* gw_io.c: deadline I/O in a connection's coroutine (io.nc) */
int	 io_wait(struct io *, short ev, int64_t deadline);
long	 io_try_read(struct io *, void *buf, size_t len);
int	 io_buffered(const struct io *);
long	 io_read(struct io *, void *buf, size_t len, int64_t deadline);
void	 ob_flush(struct obuf *, int64_t deadline);
void	 ob_put(struct obuf *, const void *p, size_t n, int64_t deadline);
void	 ob_printf(struct obuf *, int64_t deadline, const char *fmt, ...)
	    MTLS_PRINTF(3, 4);

static inline int64_t
req_deadline(const struct gwc *c)
{
	return net_now_ms() + c->gw->l->request_timeout_ms;
}

/* gw_loop.c */
int	 loop_new(struct loop *, struct mtls_error *);
void	 gw_limit(struct gw *, int why, const char *client);
void	 refresh(struct loop *);

/* gw_route.c */
struct route *route_find(struct gw *, const char *host, size_t hlen,
	    const char *path);
int	 route_allows(const struct proxy_route *, const struct ids *);
int	 route_norm(const struct proxy_route *, char *host, size_t hostsz,
	    struct mtls_error *);
int	 route_client(struct gw *, struct route *, struct mtls_error *);

/* gw_upstream.c */
int	 up_get(struct gwc *, struct route *);
void	 up_release(struct gwc *, int reusable);
void	 up_close(struct route *, struct upconn *);

/* gw_idhdr.c */
int	 build_upstream_head(struct gwc *);
char	*xfcc_build(const char *by, X509 *peer, const struct ids *);

/* gw_log.c */
void	 access_log(struct gwc *, int status);
void	 log_conn(struct gwc *, const char *event, int ok, int64_t hs_us);

#endif
