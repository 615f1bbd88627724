/*
 * net: the server runtime (issue 12 item 6; issue 14's "one server
 * runtime": ca serve, doctor serve, the admin endpoint, the HTTP
 * gateway). One epoll loop in one thread accepts; each
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
 *
 * Several loops (one per thread, each on its own SO_REUSEPORT socket: the
 * gateway) can share one cap and one per-address table: net_opts.open
 * and net_opts.ipt.
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

/* What a connection is doing, for the cap and the drain (net_idle). */
enum {
	NET_BUSY,	/* in a request: never closed for room */
	NET_IDLE,	/* waits for a request: closed for room, and at once
			 * when the loop drains */
	NET_EVICTABLE	/* may be closed for room (a handshake, a request
			 * head not yet whole), but a drain lets it finish */
};

/* Why the loop refused or closed a connection (net_opts.on_limit). */
enum { NET_LIMIT_FIRST_BYTE, NET_LIMIT_PER_IP, NET_LIMIT_FULL,
	NET_LIMIT_EVICTED, NET_LIMIT__COUNT };

struct net_loop;
struct net_conn;
struct iplimit;

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
	/* all optional (0 / NULL): */
	int		*shared_open;	/* atomic, shared: the count max_conns
					 * caps (other loops' connections, and
					 * anything else the caller adds); NULL:
					 * this loop's own */
	struct iplimit	*ipt;		/* shared per-address table (the
					 * caller's; max_per_ip unused); NULL:
					 * the loop's own */
	const int	*stop;		/* atomic: non-zero drains, like
					 * net_loop_stop() */
	int		 keep_nofile;	/* 1: RLIMIT_NOFILE and max_conns as
					 * given (the caller fitted them) */
	/* A connection refused or closed for a limit (NET_LIMIT_*), in
	 * place of the loop's own conn_limit log line. */
	void		(*on_limit)(void *arg, int why,
			    const struct sockaddr_storage *client);
	/* On the loop's thread before it first waits (thread-local set-up). */
	void		(*on_thread)(void *arg);
	void		*hook_arg;	/* of on_limit and on_thread */
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
/* NET_IDLE, NET_EVICTABLE or NET_BUSY (0/1 read as busy/idle). A new
 * connection starts NET_IDLE; one that stays on the list keeps its place
 * (the oldest wait is closed first). */
void	 net_idle(struct net_conn *, int how);
/* Waits until the fd is ready for <ev> (POLLIN or POLLOUT): 0,
 * NET_TIMEOUT at <deadline>, NET_ERR when the loop closed the connection
 * (evicted while idle, or draining past drain_ms). */
int	 net_wait(struct net_conn *, short ev, int64_t deadline);
/* net_wait() on another fd of the connection's (an upstream socket); the
 * loop's epoll keeps it until it is closed. */
int	 net_wait_fd(struct net_conn *, int fd, short ev, int64_t deadline);
/* 1 once the loop closed the connection (evicted for room or at a drain,
 * or past drain_ms): every wait fails; send nothing more, return. */
int	 net_closed(const struct net_conn *);
/* net_wait_fd() as sockio's wait (sockio_wait_fn; <conn>: the
 * connection), for deadline I/O on the connection's other fds. */
int	 net_sockio_wait(void *conn, int fd, short ev, int64_t deadline);
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
