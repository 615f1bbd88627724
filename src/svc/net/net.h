/*
 * net: a small server runtime (issue 12 item 6; the seed of issue 14's
 * "one server runtime"). One epoll loop in one thread accepts; each
 * connection first waits in the loop itself for its client's first byte
 * (no stack, no TLS state: a silent connection costs a struct and an fd),
 * then runs the server's function as a coroutine whose waits
 * (net_wait, net_read, net_write, net_handshake) all take a deadline.
 * Blocking work (the CA's SQLite and signing) goes to a few worker
 * threads with net_offload() while the loop goes on.
 *
 * Limits, all enforced by the loop:
 *   - first byte: a connection whose client sends nothing within
 *     first_byte_ms is closed before any coroutine exists;
 *   - per client address (IPv4 address, IPv6 /64): at most max_per_ip
 *     open; one more is closed at accept;
 *   - all connections: at most max_conns; at the cap the connection idle
 *     longest (waiting for its first byte or for its next request) is
 *     closed to make room, and only when none is idle is the new one
 *     refused, so silent connections can never lock out real clients.
 * The server marks what is idle with net_idle(); anything else (a request
 * being read, handled or answered) is bounded by its own deadlines.
 */
#ifndef MTLS_NET_H
#define MTLS_NET_H

#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"

#define NET_ERR		(-1)	/* the link failed, or the loop closed it */
#define NET_TIMEOUT	(-2)	/* the deadline passed */

#define NET_MAX_LISTENERS	4

struct net_loop;
struct net_conn;

/* Serves one connection, in its coroutine. The loop closes the fd when it
 * returns; what the function made (a TLS connection) it frees. */
typedef void (*net_serve_fn)(struct net_conn *, void *arg);

struct net_opts {
	const char	*name;		/* "server" in log lines */
	int		 max_conns;	/* > 0 */
	int		 max_per_ip;	/* 0: no per-address limit */
	int64_t		 first_byte_ms;	/* > 0 */
	int		 workers;	/* net_offload() threads; 0: inline */
	int64_t		 drain_ms;	/* after net_loop_stop(); then all close */
};

/* Counters since the loop started (read with net_loop_stats()). */
struct net_stats {
	uint64_t	 accepted;
	uint64_t	 first_byte_timeouts;	/* nothing sent in time */
	uint64_t	 per_ip_refused;	/* at accept: address full */
	uint64_t	 full_refused;		/* at accept: all busy */
	uint64_t	 evicted;		/* idle, closed to make room */
	int		 open;
	int		 max_conns;	/* in effect (RLIMIT_NOFILE) */
};

/* A loop with <o> (copied); raises RLIMIT_NOFILE to fit max_conns (or
 * lowers max_conns to fit the hard limit, logged). 0, or -1 with <err>. */
int	 net_loop_new(struct net_loop **, const struct net_opts *o,
	    struct mtls_error *err) MTLS_MUST_CHECK;
/* Serves the listening socket <fd> (non-blocking; the loop owns it from
 * now on, even on failure) with <serve>(conn, <arg>). */
int	 net_listen(struct net_loop *, int fd, net_serve_fn serve, void *arg,
	    struct mtls_error *err) MTLS_MUST_CHECK;
/* Runs the loop in this thread until net_loop_stop() and every connection
 * has ended (idle ones at once, busy ones by drain_ms). */
void	 net_loop_run(struct net_loop *);
/* net_loop_run() in a new thread (every signal blocked in it). */
int	 net_loop_start(struct net_loop *, struct mtls_error *err)
	    MTLS_MUST_CHECK;
/* Stops accepting and drains. Async-signal-safe; any thread. */
void	 net_loop_stop(struct net_loop *);
/* Joins the loop's thread (net_loop_start) and its workers, closes the
 * listeners, frees. NULL is ignored. */
void	 net_loop_free(struct net_loop *);
void	 net_loop_stats(struct net_loop *, struct net_stats *);

/* ---- in a connection's coroutine ---- */

int	 net_conn_fd(const struct net_conn *);
/* The client's address; valid while the connection runs. */
const struct sockaddr_storage *net_conn_addr(const struct net_conn *);
/* When accept(2) returned, in net_now_ms() time. */
int64_t	 net_conn_accepted_ms(const struct net_conn *);
/* 1 once the loop is draining: finish the request in hand, then return. */
int	 net_stopping(const struct net_conn *);
/* 1: the connection waits for a request (may be closed first under
 * pressure, and at once when draining); 0: it is in a request. A new
 * connection starts idle. */
void	 net_idle(struct net_conn *, int idle);
/* Waits until the fd is ready for <ev> (POLLIN or POLLOUT): 0,
 * NET_TIMEOUT at <deadline>, NET_ERR when the loop closed the connection
 * (evicted while idle, or draining past drain_ms). */
int	 net_wait(struct net_conn *, short ev, int64_t deadline);
/* Runs <fn>(<arg>) on a worker thread; the coroutine waits, the loop
 * does not. Returns when fn has returned. */
void	 net_offload(struct net_conn *, void (*fn)(void *), void *arg);

/* Deadline I/O on the connection's fd through <tls> (a connection from
 * mtls_accept_socket), or plain when <tls> is NULL. */
/* 0 done; NET_TIMEOUT; -1 (NET_ERR) refused (then mtls_fail_code() on
 * <tls> says why) or closed by the loop. */
int	 net_handshake(struct net_conn *, struct mtls *tls, int64_t deadline);
/* Bytes (> 0), 0 at the peer's end of stream, NET_ERR, NET_TIMEOUT. */
long	 net_read(struct net_conn *, struct mtls *tls, void *buf, size_t len,
	    int64_t deadline);
/* All of <len>: 0, NET_ERR or NET_TIMEOUT. */
int	 net_write(struct net_conn *, struct mtls *tls, const void *p,
	    size_t len, int64_t deadline);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t	 net_now_ms(void);
/* The same clock in microseconds (handshake and request durations). */
int64_t	 net_now_us(void);

#endif
