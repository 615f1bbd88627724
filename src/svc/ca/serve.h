/*
 * Shared by the files of `mtls ca serve` only: serve.c (the runtime: the
 * loop, a connection's requests, routing, readiness, the renewer),
 * serve_own.c (the server's own certificate), serve_api.c (replies and
 * the enroll, renew, revoke, bundle, metrics and readiness endpoints),
 * serve_revocation.c (CRL and OCSP endpoints).
 */
#ifndef MTLS_CA_SERVE_H
#define MTLS_CA_SERVE_H

#include <pthread.h>
#include <stdio.h>

#include <jansson.h>

#include "ca/ca.h"
#include "http/http.h"
#include "net/net.h"

enum { R_ENROLL, R_RENEW, R_REVOKE, R_BUNDLE, R_CRL, R_OCSP, R_HEALTH,
    R_READY, R_METRICS, R_UI, R_ROTATION, R_OTHER, R__COUNT };

struct server {
	const struct ca_serve_opts *o;
	/* the CA snapshot new requests take (serve_ca_hold); a SIGHUP
	 * swaps in a whole new one (renewer thread), under snap_mu */
	struct ca		*ca;
	pthread_mutex_t		 snap_mu;
	struct store		*store;		/* every snapshot's */
	char			 own_serial[48];	/* our TLS certificate's */
	/* rotation status for /metrics, counted by the renewer thread */
	pthread_mutex_t		 rot_mu;
	struct rot_status	 rot;
	int			 rot_ok;
	/* revocation, the CRL cache (issuance takes no lock) */
	pthread_mutex_t		 mu;
	struct mtls		*tls;		/* server context (swapped) */
	pthread_mutex_t		 tls_mu;
	int64_t			 own_not_after, own_not_before;
	int			 own_unchecked;	/* serve_own_recheck */
	char			 url[512], crl_url[600], ocsp_url[600];
	/* the CRLs, cached: [0] this CA's (/v1/crl), [1] after a rotation's
	 * switch the previous issuer's (/v1/crl/previous) */
	struct crl_cache {
		uint8_t		*der;
		size_t		 len;
		int64_t		 made;		/* 0: sign anew */
		int64_t		 revs;		/* revocations it lists */
		int64_t		 checked;	/* last count, unix s */
		uint64_t	 gen;		/* the CA snapshot's (ca->gen) */
	}			 crl[2];
	struct net_loop		*loop;
	uint64_t		 m_req[R__COUNT][6];	/* by status class */
	uint64_t		 m_issued, m_renewed, m_revoked, m_ocsp;
	uint64_t		 m_hs_timeouts;	/* request_timeout closes */
	/* readiness: "" while the store commits, else why it cannot (the
	 * last failed write); cleared by the next write that works */
	pthread_mutex_t		 ready_mu;
	char			 not_ready[256];	/* what clients see */
};

/* A connection: requests read with deadlines. */
struct conn {
	struct server	*s;
	struct net_conn	*nc;
	int		 fd;
	struct mtls	*t;
	char		 client[80];
	char		 buf[16384];
	size_t		 have;		/* unparsed bytes in buf */
	struct ca_issued_memo issued;	/* the peer's checks done once */
};

/* A response being made. */
struct reply {
	struct ca	*ca;		/* the CA snapshot it is made with */
	int		 status;
	const char	*ctype;
	const char	*headers;	/* static "Name: value\r\n" lines, or NULL */
	char		*body;		/* malloc'd */
	size_t		 len;
	int		 route;
	const char	*code;		/* the error code answered, logged */
	const char	*bundle_gen;	/* enroll/renew: the generation the
					 * agent holds after it (checked) */
	char		 bundle_replaces[48]; /* renew: the presented
					 * certificate's serial, or "" */
	char		 error[600];	/* logged */
};

/* serve.c: whether <e> is the disk refusing a write (ca_fault_of). */
int	 serve_storage_fault(const struct mtls_error *e);
/* serve.c: readiness. <e> NULL: a write worked (ready again); else the
 * storage fault that makes us not ready. */
void	 serve_set_ready(struct server *, const struct mtls_error *e);

/* serve.c: a reference to the current CA snapshot, for one request
 * (issuance takes no lock: a snapshot never changes), and its release;
 * the last release of a replaced snapshot closes it. */
struct ca *serve_ca_hold(struct server *);
void	 serve_ca_release(struct server *, struct ca *);
/* serve.c: the rotation gauges for /metrics (the renewer's last count). */
void	 serve_rotation_metrics(struct server *, FILE *f);

/* serve_own.c: our TLS certificate; at start (<reuse>) the one in
 * DIR/serve/ while it is good (with the store down: unchecked, and not
 * ready), else a new one issued and recorded. */
int	 serve_own_identity(struct server *, int reuse,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* serve_own.c: the renewer's check of a certificate reused unchecked at
 * a start with the store down, once the store answers. */
void	 serve_own_recheck(struct server *);

/* serve_api.c: replies (the body is JSON {"error","message"} for errors),
 * and the endpoints. */
void	 serve_reply_json(struct reply *, int status, json_t *o);
void	 serve_reply_error(struct reply *, int status, const char *code,
	    const char *fmt, ...) MTLS_PRINTF(4, 5);
void	 serve_reply_bytes(struct reply *, const char *ctype, const void *p,
	    size_t n);
/* 503 for a storage fault (serve_storage_fault): "unavailable" (disk
 * full, read-only) or "store_unavailable" (the store cannot be used),
 * message "<what>: <cause>"; not ready until a write works. */
void	 serve_reply_unavailable(struct server *, struct reply *,
	    const char *what, const struct mtls_error *e);
void	 serve_enroll(struct server *, struct conn *, const struct http_req *,
	    struct reply *);
void	 serve_renew(struct server *, struct conn *, const struct http_req *,
	    struct reply *);
void	 serve_revoke(struct server *, struct conn *, const struct http_req *,
	    struct reply *);
void	 serve_bundle(struct server *, const struct http_req *, struct reply *);
/* The client is authenticated (a certificate this CA issued, not
 * revoked) and matches an --admin rule: 0, else -1 with the refusal in
 * <rp> (401 no or refused certificate, 403 unknown, revoked, not_admin). */
int	 serve_admin(struct server *, struct conn *, struct reply *);
void	 serve_metrics(struct server *, struct reply *);
void	 serve_ready(struct server *, struct reply *);

/* serve_ui.c: /ui (the page) and /v1/inventory..., --admin only */
void	 serve_ui(struct server *, struct conn *, const struct http_req *,
	    const char *path, struct reply *);

/* serve_revocation.c: GET /v1/crl (DER), /v1/crl/previous (DER: the
 * previous issuer's, after a rotation's switch, until retire) and
 * /v1/crl/all (PEM: this CA's, then the previous issuer's if any) */
enum { SERVE_CRL_CURRENT, SERVE_CRL_PREVIOUS, SERVE_CRL_ALL };
void	 serve_crl(struct server *, struct reply *, int which);
/* After a revocation or a reload: the next GET of each CRL signs anew
 * (under s->mu). */
void	 serve_crl_stale(struct server *);
void	 serve_ocsp(struct server *, const struct http_req *, const char *path,
	    struct reply *);

#endif
