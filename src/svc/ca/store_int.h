/*
 * The store's backends (store_sqlite.c, store_pg.c) behind store.c: an ops
 * table per backend. Callers use the store_* API of ca.h only.
 */
#ifndef MTLS_STORE_INT_H
#define MTLS_STORE_INT_H

#include "ca.h"

/* A certificate as stored: what store.c derives from the X509 once. */
struct store_row {
	char		 serial[48];
	const char	*kind;
	char		 subject[256];
	char		 issuer[256];
	const char	*identities;
	int64_t		 not_before, not_after, created_at;
	int		 revoked;
	int64_t		 revoked_at;
	int		 reason;
	const uint8_t	*der;
	size_t		 der_len;
};

struct store_token {
	const char	*hash, *spiffe_id, *serial;	/* serial: NULL unused */
	int64_t		 expires_at, created_at, used_at; /* used_at 0: unused */
	int		 used;
};

/* an agent's bundle report: the certificate's serial, its generation */
struct store_report {
	const char	*serial, *gen;
	int64_t		 not_after, seen_at;
};

/* an item of a batch for tx_batch: its row, the token it burns (NULL:
 * none), its bundle report (gen NULL: none; replaces: the report it
 * replaces, NULL: none) */
struct store_item {
	const struct store_row	*r;
	const char		*token_hash, *replaces, *gen;
};

struct store_ops {
	const char *name;
	void	(*close)(struct store *);
	/* A batch of certificates and token burns (store.c's group commit):
	 * one transaction, begun by tx_begin and ended by tx_end (commit
	 * when <commit>, else roll back; durable when a commit returns 0).
	 * Inside it: tx_insert 0, 1 serial taken (nothing written), -1;
	 * tx_burn 0, 1 token unknown/used/expired (nothing written), -1;
	 * tx_uninsert deletes a row tx_insert wrote in this transaction
	 * (the item whose token was refused). A -1 anywhere ends the batch:
	 * store.c rolls it back and every item fails with that error. */
	int	(*tx_begin)(struct store *, struct mtls_error *);
	int	(*tx_insert)(struct store *, const struct store_row *,
		    struct mtls_error *);
	int	(*tx_burn)(struct store *, const char *token_hash,
		    const char *serial, struct mtls_error *);
	int	(*tx_uninsert)(struct store *, const char *serial,
		    struct mtls_error *);
	int	(*tx_end)(struct store *, int commit, struct mtls_error *);
	/* optional (NULL: the ops above, item by item): a whole batch at
	 * once, its transaction begun here; 0 every row inserted, token
	 * burned and report written (tx_end next); 1 an item's serial was
	 * taken or its token refused: nothing written (rolled back), run
	 * the batch item by item to know which; -1 an error, ended as a
	 * -1 above */
	int	(*tx_batch)(struct store *, const struct store_item *,
		    size_t n, struct mtls_error *);
	/* inside a batch that wrote a bundle report: deletes at most
	 * STORE_SWEEP reports of certificates expired before <now> (they
	 * never count again; none renewed them away): 0, or -1 ends the
	 * batch. tx_batch runs it itself when an item has a report */
	int	(*tx_sweep)(struct store *, int64_t now, struct mtls_error *);
	/* inside a batch: an agent's bundle report (as agent_bundle), in
	 * the transaction of the certificate it came with; -1 ends it */
	int	(*tx_bundle)(struct store *, const char *serial,
		    const char *replaces, const char *gen, int64_t not_after,
		    int64_t now, struct mtls_error *);
	int	(*probe)(struct store *, struct mtls_error *);
	int	(*token_add)(struct store *, const char *hash, const char *id,
		    int64_t expires_at, struct mtls_error *);
	int	(*token_get)(struct store *, const char *hash, char *id,
		    size_t id_len, struct mtls_error *);
	/* 0 found (same DER when der != NULL), 1 none, 2 other DER, -1 */
	int	(*get)(struct store *, const char *serial, const uint8_t *der,
		    size_t der_len, struct cert_rec *, struct mtls_error *);
	int	(*revoke)(struct store *, const char *serial, int reason,
		    int64_t at, int *already, struct mtls_error *);
	int	(*each)(struct store *, int (*)(void *, const struct cert_rec *),
		    void *, struct mtls_error *);
	int	(*next_crl_number)(struct store *, int64_t *,
		    struct mtls_error *);
	int	(*revocations)(struct store *, int64_t *, struct mtls_error *);
	/* migration source: every row (with DER), every token, every
	 * bundle report, the CRL number; NULL when it cannot be a source */
	int	(*dump)(struct store *, int (*row)(void *,
		    const struct store_row *), int (*tok)(void *,
		    const struct store_token *), int (*rep)(void *,
		    const struct store_report *), void *arg,
		    int64_t *crl_number, struct mtls_error *);
	/* migration target, one transaction: begin refuses a non-empty
	 * store; end commits (ok) or rolls back; NULL when not a target */
	int	(*load_begin)(struct store *, struct mtls_error *);
	int	(*load_row)(struct store *, const struct store_row *,
		    struct mtls_error *);
	int	(*load_token)(struct store *, const struct store_token *,
		    struct mtls_error *);
	int	(*load_report)(struct store *, const struct store_report *,
		    struct mtls_error *);
	int	(*load_end)(struct store *, int ok, int64_t crl_number,
		    struct mtls_error *);
	const struct store_inv_ops *inv;	/* the views (store_inv.h) */
	/* rotation (store_rotation_count in ca.h; store_agent_bundle is
	 * tx_bundle in a transaction of its own) */
	int	(*rotation_count)(struct store *, const char *issuer,
		    const char *except_serial, const char *gen_a,
		    const char *gen_b, int64_t now, int64_t out[3],
		    struct mtls_error *);
};

/* bundle reports of expired certificates deleted per batch, at most */
#define STORE_SWEEP	64

struct store_gc;		/* store.c: the lock and the batch queue */

/* The first member of every backend's handle. */
struct store {
	const struct store_ops *ops;
	struct store_gc	*gc;	/* store.c's; NULL until store_init */
};

/* Connection settings of a server backend, from ca.conf or the command
 * line; password is zeroized by whoever filled it. */
struct store_conf {
	char		 url[1024];	/* "" or "sqlite": the SQLite file */
	char		 password_file[4096];
	char		 sslmode[32];
	char		 sslrootcert[4096];
	int		 down_ok;	/* store_open_down_ok */
};

int	 store_sqlite_open(struct store **, const char *path, int create,
	    struct mtls_error *);
int	 store_pg_open(struct store **, const struct store_conf *,
	    struct mtls_error *);
/* store_pg.c: the kind of a failed PostgreSQL statement by its SQLSTATE
 * (NULL: none, the connection is gone): *kind a STORE_KIND_* (NULL: not
 * a store fault, the request's or ours) and *sys the errno ca_fault_of
 * decides by (0 with a NULL kind). Returns 1 when the connection is to
 * be treated as lost (reconnect on the next call). */
int	 store_pg_classify(const char *sqlstate, int *sys, const char **kind);
/* Whether <url> names PostgreSQL (postgres:// or postgresql://). */
int	 store_url_is_pg(const char *url);
/* The kind as a static string ("root", "intermediate", "leaf"). */
const char *store_kind(const char *);

/* ---- the inventory's views (store_inv.h): SQL in each backend ---- */
#include "store_inv.h"

/* Renewals per bucket from the leaves made (sum->iss_*) and the first
 * leaves of their identities (<first_h>, <first_d>), for the backends. */
void	 store_inv_renewals(struct inv_summary *sum, const int64_t *first_h,
	    const int64_t *first_d);

/* Adds <n> to hours[v[0]], days[v[1]], weeks[v[2]] (INV_EXP_* or
 * INV_RATE_* of them), each when in range and its array not NULL. */
void	 store_inv_add(int64_t *hours, int64_t *days, int64_t *weeks,
	    const int64_t *v, int64_t n);

struct store_inv_ops {
	int	(*list)(struct store *, const struct inv_query *,
		    int (*)(void *, const struct cert_rec *), void *,
		    struct mtls_error *);
	int	(*summary)(struct store *, struct inv_summary *,
		    struct mtls_error *);
	int	(*identity)(struct store *, const char *id, int limit,
		    int (*)(void *, const struct cert_rec *), void *,
		    struct mtls_error *);
};

#endif
