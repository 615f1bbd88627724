/*
 * HTTP gateway mode of a proxy listener (mode = http): terminates mTLS,
 * parses HTTP/1.1 requests (Debian's libhttp-parser plus a strict check of
 * the head), routes them by host and longest path prefix, authorizes the
 * peer per route, forwards to a pooled upstream (plain or mTLS) with
 * identity headers (X-Forwarded-Client-Cert, X-Client-Spiffe-Id), streams
 * bodies both ways and logs each request.
 *
 * Each client connection is a coroutine on one of the gateway's epoll
 * loops (one per worker): an HTTP exchange is a sequence (head, route,
 * upstream, body, response) that reads as straight code this way, and
 * costs no thread switch (bench/RESULTS.md, against nginx).
 */
#ifndef MTLS_GATEWAY_H
#define MTLS_GATEWAY_H

#include "proxy/proxy.h"

struct gw_env {
	const struct proxy_listener	*l;
	const struct proxy_opts		*o;
	struct sockaddr_storage		 listen_ss;
	socklen_t			 listen_len;
	int				*active;	/* atomic, shared */
	int				*stopping;	/* atomic: drain */
	/* The listener's config with a new reference when its sequence has
	 * moved past *seq (which it updates), else NULL. */
	struct mtls_config	*(*config)(void *arg, uint64_t *seq);
	/* Counts a server handshake in the proxy's metrics. */
	void			 (*count_hs)(void *arg, int result, int resumed,
				    int64_t us);
	/* Client addresses (net/iplimit.h): a slot taken at accept, given
	 * back at close; NULL: no per-address limit. */
	struct iplimit		*ipt;
	/* Counts a connection closed for a limit (GW_CL_*) and logs a
	 * conn_limit line at most once a second; NULL: not counted. */
	void			 (*limit)(void *arg, int why,
				    const char *client);
	void			*arg;
};

/* Why a connection was closed for a limit: the proxy's
 * mtls_conns_closed_total{reason} in this order. */
enum { GW_CL_FIRST_BYTE, GW_CL_HS_TIMEOUT, GW_CL_PER_IP, GW_CL_FULL,
	GW_CL_EVICTED };

struct gw;

/* Checks the routes, builds the upstream contexts, binds one SO_REUSEPORT
 * socket per worker and starts a net loop on each (their threads). Call
 * with signals blocked: threads inherit the mask. */
int	 gw_start(const struct gw_env *, struct gw **, struct mtls_error *)
	    MTLS_MUST_CHECK;
/* Checks a listener's routes without starting anything. */
int	 gw_check(const struct proxy_listener *, struct mtls_error *)
	    MTLS_MUST_CHECK;
/* Frees <gw> once no connection is open (else leaves it to the exit). */
void	 gw_free(struct gw *);
/* Prometheus lines for the routes (with the HELP/TYPE lines when <help>);
 * malloc'd, NULL when out of memory. */
char	*gw_metrics(struct gw *, int help);

#endif
