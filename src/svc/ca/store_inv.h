/*
 * The inventory's views for ca serve's /v1/inventory endpoints and its
 * web page (serve_ui.c): a page of certificates, the aggregates of the
 * summary, one identity's history. Every aggregation is SQL run by the
 * backend (store_sqlite.c, store_pg.c: their last block), never a loop
 * over the rows here: 100,000 certificates answer in milliseconds.
 * A CA directory's store (store_open_ca) reads them on a connection of
 * their own, opened at the first view: issuance never waits on them.
 */
#ifndef MTLS_STORE_INV_H
#define MTLS_STORE_INV_H

#include "ca.h"

enum inv_state { INV_ANY, INV_VALID, INV_EXPIRING, INV_REVOKED,
    INV_EXPIRED };

#define INV_LIMIT_MAX	500	/* rows of one page */
#define INV_Q_MAX	256	/* bytes of a search */

/* A page: rows ordered by (not_after, serial), after the cursor. */
struct inv_query {
	enum inv_state	 state;
	int64_t		 now;
	int64_t		 within;	/* INV_EXPIRING: until now+it */
	/* "": none; else a substring of an identity, or (q_serial: q as a
	 * serial when it is hex, else "") the start of a serial */
	char		 q[INV_Q_MAX + 1];
	char		 q_serial[INV_Q_MAX + 1];
	int		 has_cursor;
	int64_t		 c_not_after;	/* the last row before */
	char		 c_serial[48];
	int		 limit;		/* 1..INV_LIMIT_MAX */
};

/* Expiry buckets ahead of now, issuance buckets behind it. */
#define INV_EXP_HOURS	48
#define INV_EXP_DAYS	30
#define INV_EXP_WEEKS	12
#define INV_RATE_HOURS	48
#define INV_RATE_DAYS	30
#define INV_REASONS	11	/* RFC 5280 CRLReason 0..10 */
/* the spans in seconds, for the backends' SQL */
#define INV_SPAN_H	(INV_EXP_HOURS * 3600LL)
#define INV_SPAN_D	(INV_EXP_DAYS * 86400LL)
#define INV_SPAN_W	(INV_EXP_WEEKS * 604800LL)

struct inv_summary {
	int64_t	 now;
	int64_t	 total, valid, revoked, expired;
	int64_t	 within[3];	/* valid, expiring in 1d, 3d, 7d */
	/* [i]: not_after in (now + i h, now + (i + 1) h], and so on */
	int64_t	 exp_hours[INV_EXP_HOURS];
	int64_t	 exp_days[INV_EXP_DAYS];
	int64_t	 exp_weeks[INV_EXP_WEEKS];
	/* leaves created in each hour/day before now (bucket 0 the oldest);
	 * a renewal is a leaf whose identities an earlier leaf had */
	int64_t	 iss_hours[INV_RATE_HOURS], ren_hours[INV_RATE_HOURS];
	int64_t	 iss_days[INV_RATE_DAYS], ren_days[INV_RATE_DAYS];
	int64_t	 by_reason[INV_REASONS];
};

/* One page of <q>: <cb> for each row (cert_rec's strings are lent for the
 * call). 0, or -1 with err (err->sys EIO: the store is unavailable). */
int	 store_inv_list(struct store *, const struct inv_query *q,
	    int (*cb)(void *, const struct cert_rec *), void *arg,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The aggregates at s->now (set by the caller). */
int	 store_inv_summary(struct store *, struct inv_summary *s,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The certificates that hold identity <id> (one of its lines, exactly),
 * newest first, at most <limit>. */
int	 store_inv_identity(struct store *, const char *id, int limit,
	    int (*cb)(void *, const struct cert_rec *), void *arg,
	    struct mtls_error *) MTLS_MUST_CHECK;

#endif
