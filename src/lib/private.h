/*
 * libmtls private layouts: the fields of struct mtls_config, struct mtls
 * and struct tls_state, and the functions that take them apart. Only the
 * .c files of src/lib include this file (the Makefile defines
 * MTLS_BUILDING_LIB for them alone); services and commands see these
 * objects as opaque and use mtls.h or the functions of internal.h.
 */
#ifndef MTLS_PRIVATE_H
#define MTLS_PRIVATE_H

#ifndef MTLS_BUILDING_LIB
#error "private.h is libmtls's own: outside src/lib use mtls.h or internal.h"
#endif

#include "internal.h"

/* ---- the objects: config.c, tls.c (struct tls_state), ctx.c ---- */
struct mtls_config {
	int			 refs;
	int			 frozen;
	struct mtls_error	 err;
	struct mtls_secret	 pass;
	STACK_OF(X509)		*chain;		/* own leaf + intermediates */
	EVP_PKEY		*key;
	STACK_OF(X509)		*trust;		/* anchors, the federated
						 * ones included */
	int			 trust_borrowed; /* config_borrow_trust */
	/* federated trust domains: the anchors of each (also in trust), and
	 * fed_td[i] the trust domain that fed's i-th anchor vouches for */
	STACK_OF(X509)		*fed;
	char			**fed_td;
	STACK_OF(X509)		*untrusted;
	STACK_OF(X509_CRL)	*crls;
	char			**allow;
	size_t			 n_allow;
	int			 allow_any;
	int			 peer_optional;	/* server: cert not required */
	char			**expect;
	size_t			 n_expect;
	int			 purpose;
	int64_t			 verify_time;
	int			 min_tls;	/* TLS1_3_VERSION or TLS1_2_VERSION */
	/* Session ticket keys, shared by every context built from this
	 * config (e.g. all proxy workers): [0] seals, [1] (the previous
	 * key, if any) still opens. name 16 | AES-256 32 | HMAC 32 bytes. */
	uint8_t			 ticket_keys[2][80];
	int			 n_ticket_keys;
	pthread_mutex_t		 tk_mu;		/* ticket keys rotate in place */
	/* server: a DER OCSP response for our leaf, stapled on request
	 * (not part of the generation: a fresh staple keeps sessions) */
	uint8_t			*staple;
	size_t			 staple_len;
	int			 require_staple;	/* client */
	uint8_t			 alpn[64];	/* wire format; alpn_len 0: none */
	size_t			 alpn_len;
	uint64_t		 generation;	/* unique per config */
	struct verify_cache	*vcache;	/* verify.c */
	/* an extra SPIFFE scope OID to recognise (a CA's scope_oid);
	 * "" reads MTLS_SCOPE_OID from the environment */
	char			 scope_oid[68];
};

/*
 * The TLS state of a server or client context (tls.c): the frozen config,
 * its X509_STORE and one SSL_CTX. Immutable once built; a reconfigure
 * builds a new one and swaps the pointer, and every connection keeps a
 * reference to the state it started with, so reloads never touch open
 * connections.
 */
struct tls_state {
	int			 refs;		/* atomic */
	int			 is_server;
	struct mtls_config	*cfg;
	X509_STORE		*store;
	SSL_CTX			*ssl_ctx;
	/* client: the last session, to resume the next connection to the
	 * same server name (one upstream per proxy listener) */
	pthread_mutex_t		 sess_mu;
	SSL_SESSION		*sess;
	char			 sess_name[256];
};

enum mtls_kind { KIND_VERIFY = 0, KIND_SERVER, KIND_CLIENT, KIND_CONN };

struct mtls {
	struct mtls_error	 err;
	int			 kind;
	struct mtls_config	*cfg;		/* KIND_VERIFY */
	X509_STORE		*store;		/* KIND_VERIFY */
	struct tls_state	*tls;		/* server/client: current */
	SSL			*ssl;		/* KIND_CONN */
	int			 conn_server;	/* accepted (1) or connected */
	int			 hs_done;
	int			 peer_ok;	/* peer chain verified, authorized */
	uint64_t		 rx;		/* application bytes read */
	uint8_t			 chain_key[32];	/* peer chain's cache key */
	char			 expect_name[300];	/* client: dns:/ip: */
	char			*peer_id;
	char			 peer_serial[48];
	struct ids		 peer_ids;	/* copies of the leaf's */
	STACK_OF(X509)		*peer_certs;	/* KIND_VERIFY: the last input */
	/* the peer chain encoded on demand (mtls_peer_chain_*), dropped at
	 * each verification or handshake step */
	uint8_t			*peer_der;	/* every DER, one after another */
	size_t			*peer_der_off;	/* n + 1 offsets into it */
	size_t			 peer_n;
	char			*peer_pem;
	size_t			 peer_pem_len;
};

/* ---- verify.c ---- */
/* The time verification judges at: the config's, else now. */
int64_t	 verify_now(const struct mtls_config *);
/* verify_chain() without the identity rules: path validation and our
 * policy; fills <out>. */
int	 verify_path(const struct mtls_config *, X509_STORE *,
	    STACK_OF(X509) *certs, int purpose, struct verify_out *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The trust domain that <x> anchors when it is a federated trust
 * domain's anchor, else NULL (one of our own: any identity). */
const char *verify_fed_td(const struct mtls_config *, X509 *x);
/* The expect and allow rules of <cfg> against <ids>. */
int	 verify_authorize(const struct mtls_config *, const struct ids *,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- verify_cache.c: the per-config cache ---- */
/* verify_chain() through <cfg>'s cache of successful path validations
 * (see verify.c); thread-safe. <key> receives the chain's cache key
 * (zeros when uncacheable), for session tickets. */
struct verify_cache;
struct verify_cache *verify_cache_new(void);
/* Another reference to a cache (caches are refcounted, freed at zero). */
struct verify_cache *verify_cache_ref(struct verify_cache *);
void	 verify_cache_free(struct verify_cache *);
int	 verify_chain_key(STACK_OF(X509) *, int purpose, uint8_t key[32]);
int	 verify_chain_cached(const struct mtls_config *, X509_STORE *,
	    STACK_OF(X509) *certs, int purpose, uint8_t key[32],
	    struct verify_out *, struct mtls_error *) MTLS_MUST_CHECK;
/* Replaces the certificates in <sk> that are byte-identical to the ones
 * cached under <key> with the cached objects (shared, referenced): a
 * proxy's connections from one client then hold one parsed copy of its
 * chain, not one each. Returns how many were replaced. */
int	 verify_cache_share(const struct mtls_config *, const uint8_t key[32],
	    STACK_OF(X509) *sk);
/* A cache hit for <key> with every per-use check passed: 0 (fills <out>);
 * -1 refused (revoked, rules); 1 not usable (miss, outside its window). */
int	 verify_cache_lookup(const struct mtls_config *, const uint8_t key[32],
	    struct verify_out *, struct mtls_error *) MTLS_MUST_CHECK;

/* ---- ocsp.c ---- */
/* Installs the status callbacks on a context being built: stapling on a
 * server with a staple, the check on a client with require_staple. */
int	 ocsp_setup_ctx(struct tls_state *, SSL_CTX *, struct mtls_error *)
	    MTLS_MUST_CHECK;

/* ---- tls.c ---- */
void	 tls_state_free(struct tls_state *);
/* mtls_configure() of a server or client context. */
int	 tls_configure(struct mtls *, struct mtls_config *) MTLS_MUST_CHECK;
/* Sets m->peer_id / m->peer_serial / m->peer_ids from a verification
 * result. */
void	 ctx_set_peer(struct mtls *, const struct verify_out *);
/* Drops the encoded peer chain (the peer may change or appear). */
void	 ctx_peer_chain_reset(struct mtls *);

#endif /* MTLS_PRIVATE_H */
