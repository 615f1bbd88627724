/*
 * The CA service (layer 2): a CA directory (DESIGN.md "CA directory"), its
 * SQLite inventory, and the operations of `mtls ca`. One file per noun:
 * cadir.c (create and open a CA directory), roles.c (ca.conf), issue.c
 * (CSR, request checks, self-verification, recording), revoke.c
 * (revocation, CRL, OCSP), token.c (join tokens), store.c (inventory),
 * serve*.c (ca serve). The CA private key is held by signer.c alone, the
 * one narrow signer: certificates, CRLs and OCSP responses are all signed
 * through it, so the online front (ca serve) can later move it into a
 * separate process.
 */
#ifndef MTLS_CA_H
#define MTLS_CA_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "internal.h"

#define CA_ROLES_MAX	32
#define CA_RULES_MAX	32

/* ---- store.c: the inventory ---- */
struct store;

struct cert_rec {
	char		 serial[48];	/* upper hex */
	const char	*kind;		/* "root", "intermediate", "leaf" */
	char		 subject[256];
	char		 issuer[256];
	char		*identities;	/* newline-separated, owned */
	int64_t		 not_before;
	int64_t		 not_after;
	int		 revoked;
	int64_t		 revoked_at;
	int		 reason;
	int64_t		 created_at;
};

/* Opens DIR/inventory.db (WAL, synchronous=FULL). <create> makes the file
 * and schema; otherwise a missing or damaged file is an error. Missing
 * schema migrations are applied (store_sqlite.c). */
int	 store_open(struct store **, const char *path, int create,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Opens the inventory that DIR/ca.conf names: "store = postgres://..."
 * (store_password_file, store_sslmode, store_sslrootcert beside it), else
 * DIR/inventory.db. Neither the URL nor the password is ever printed. */
int	 store_open_ca(struct store **, const char *dir,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* For a server that waits for its store (ca serve): from now on a
 * PostgreSQL server that cannot be reached is no error at open; the
 * handle connects, sets up and migrates at its first call that reaches
 * it, and every call until then fails as "store unavailable". */
void	 store_open_down_ok(void);
/* Opens (and migrates) a PostgreSQL store; NULL settings are unset. */
int	 store_open_url(struct store **, const char *url,
	    const char *password_file, const char *sslmode,
	    const char *sslrootcert, struct mtls_error *) MTLS_MUST_CHECK;
/* mtls ca store migrate: copies DIR/inventory.db (certificates,
 * revocations, tokens, agents' bundle reports, CRL number) into the empty
 * store at <url>, in one transaction; a non-empty target is refused and
 * left unchanged. */
int	 store_migrate(const char *dir, const char *url,
	    const char *password_file, const char *sslmode,
	    const char *sslrootcert, int64_t *n_certs, int64_t *n_tokens,
	    int64_t *n_reports, struct mtls_error *) MTLS_MUST_CHECK;
void	 store_close(struct store *);
/* Records an issued certificate durably (committed on return). Returns 0,
 * 1 when the serial already exists (pick another), -1 on error. */
int	 store_add(struct store *, X509 *, const char *kind,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* store_add() that also burns the one-time token <token_hash> (when not
 * NULL) in the same transaction: no certificate without its token spent,
 * no token spent without its certificate. 2 (and nothing recorded) when
 * the token is unknown, used or expired. */
int	 store_add_burn(struct store *, X509 *, const char *kind,
	    const char *token_hash, struct mtls_error *) MTLS_MUST_CHECK;
/* store_add_burn() that, with <gen>, also records in the same
 * transaction the agent's bundle generation for this certificate (as
 * store_agent_bundle: its serial and notAfter, replacing <replaces>'s
 * report when not NULL, a renewal's presented certificate): one commit. */
int	 store_add_issued(struct store *, X509 *, const char *kind,
	    const char *token_hash, const char *replaces, const char *gen,
	    struct mtls_error *) MTLS_MUST_CHECK;
/*
 * The kinds of store fault, in err->kind (set by the backends where they
 * classify a fault, with err->sys for ca_fault_of): what ca serve tells
 * clients (a 503's body, /readyz) and logs before the detail, which only
 * the log gets (a file path, a database's host and port).
 */
#define STORE_KIND_DISK_FULL	"disk full"
#define STORE_KIND_READ_ONLY	"read-only file system"
#define STORE_KIND_IO		"store I/O error"
#define STORE_KIND_PG_DOWN	"store unavailable (PostgreSQL)"
#define STORE_KIND_PG_FULL	"disk full (PostgreSQL)"
#define STORE_KIND_PG_MEMORY	"store out of memory (PostgreSQL)"
#define STORE_KIND_PG_LIMIT	"store out of resources (PostgreSQL)"
#define STORE_KIND_PG_READ_ONLY	"store read-only (PostgreSQL)"
#define STORE_KIND_PG_BUSY	"store busy (PostgreSQL)"

/* One small durable write (a row in meta): 0 when the inventory can commit
 * again, -1 with err->sys (ENOSPC...) when not. A server store that cannot
 * be reached fails every call with err->sys = EIO ("store unavailable",
 * 503 in ca serve) and reconnects on the next call. */
int	 store_probe(struct store *, struct mtls_error *) MTLS_MUST_CHECK;
/* Records a token (SHA-256 hex of its secret) for one SPIFFE ID. */
int	 store_token_add(struct store *, const char *hash, const char *spiffe_id,
	    int64_t expires_at, struct mtls_error *) MTLS_MUST_CHECK;
/* The SPIFFE ID of an unused, unexpired token; -1 says which it is not. */
int	 store_token_get(struct store *, const char *hash, char *spiffe_id,
	    size_t id_len, struct mtls_error *) MTLS_MUST_CHECK;
/* The record of <serial> (kind, status, revocation, not_after): 0 found,
 * 1 not issued by this CA, -1 error. */
int	 store_get(struct store *, const char *serial, struct cert_rec *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The record of <x>'s serial, and whether it is <x> itself: the row keeps
 * the DER of what was issued, and 0 means those very bytes. 1 when the
 * serial is not in the inventory, 2 when it is but holds another
 * certificate (same serial, other bytes: not ours), -1 error. */
int	 store_get_cert(struct store *, X509 *x, struct cert_rec *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Marks <serial> revoked; 0, or -1 (unknown serial names it). Sets
 * *already when it was revoked before (nothing changes then). */
int	 store_revoke(struct store *, const char *serial, int reason,
	    int64_t at, int *already, struct mtls_error *) MTLS_MUST_CHECK;
/* Calls <cb> for every certificate, newest first. */
int	 store_each(struct store *, int (*cb)(void *, const struct cert_rec *),
	    void *arg, struct mtls_error *) MTLS_MUST_CHECK;
/* How many certificates are revoked: it grows with every revocation (none
 * is undone), so a replica of ca serve can tell that its cached CRL misses
 * one made by another replica. */
int	 store_revocations(struct store *, int64_t *n,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The next CRL number (stored, monotonic). */
int	 store_next_crl_number(struct store *, int64_t *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Group commit (store.c): concurrent store_add/store_add_burn calls share
 * one transaction and one commit; each returns after its own commit.
 * Callers should hold no lock of theirs around them (ca serve holds
 * none), or nothing else signs while a batch commits. */
/* Commits of certificate batches, and the certificates they recorded. */
void	 store_stats(struct store *, uint64_t *commits, uint64_t *items);
/* Rotation (rotation.c): records that the agent holding certificate
 * <serial> (hex, as the certs row) holds bundle generation <gen> (64 hex),
 * with that certificate's notAfter; <replaces> (NULL: none) is the serial
 * of the certificate the agent renewed with, whose report is deleted. One
 * report per certificate, not per identity: replicas sharing a SPIFFE ID
 * each count, and a certificate speaks only for itself. */
int	 store_agent_bundle(struct store *, const char *serial,
	    const char *replaces, const char *gen, int64_t not_after,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* What blocks a rotation's next step, at <now>: out[0] unexpired,
 * unrevoked certificates issued by <issuer> (name_oneline text), roots
 * and <except_serial> aside; out[1] agents counted: reports of unexpired,
 * unrevoked certificates; out[2] those whose generation is neither
 * <gen_a> nor <gen_b>. */
int	 store_rotation_count(struct store *, const char *issuer,
	    const char *except_serial, const char *gen_a, const char *gen_b,
	    int64_t now, int64_t out[3], struct mtls_error *) MTLS_MUST_CHECK;

/* ---- cadir.c, roles.c, issue.c, revoke.c, token.c ---- */
struct signer;			/* signer.c; holds the CA key */

struct ca_role {
	char	 name[64];
	char	*allow[CA_RULES_MAX];	/* rules; "dns:*" and "ip:*" = any */
	size_t	 n_allow;
	int64_t	 default_ttl;
	int64_t	 max_ttl;
	unsigned key_types;		/* bit per enum key_type */
};

struct ca {
	char		 dir[4096];
	X509		*cert;		/* this CA */
	STACK_OF(X509)	*chain;		/* ca.pem: this CA + issuers short of root */
	STACK_OF(X509)	*bundle;	/* roots */
	struct signer	*signer;	/* the CA key; NULL when read-only */
	struct store	*store;
	char		 trust_domain[256];
	char		 scope_oid[68];	/* ca.conf scope_oid; "" = default */
	char		*crl_url;
	char		*ocsp_url;
	struct ca_role	 roles[CA_ROLES_MAX];
	size_t		 n_roles;
	/* the self-check's verifier (issue.c), built at the first issuance
	 * for this bundle (or ca_issue_prepare) and kept: a CA's bundle is
	 * fixed while it is open (a rotation or a new bundle is a new
	 * ca_open) */
	struct mtls_config *sv_cfg;
	X509_STORE	*sv_store;
	const STACK_OF(X509) *sv_bundle;	/* what they were built from */
	/* the CA path (this CA first) the first full self-check validated;
	 * later leaves are checked on it (verify_leaf_on_path) */
	STACK_OF(X509)	*sv_path;
	char		*bundle_pem;	/* ca_bundle_pem, made once */
	size_t		 bundle_pem_len;
	char		*chain_pem;	/* ca_chain_pem's CA part, made once */
	size_t		 chain_pem_len;
	/* a snapshot (ca serve swaps whole ones on SIGHUP): which one, and
	 * the requests holding it (serve.c's lock) */
	uint64_t	 gen;
	int		 refs;
	int		 store_borrowed;	/* the server's; not closed */
	/* rotation (rotation.c): DIR/rotation.json's phase, and once the
	 * issuing certificate was switched, the one before it, whose
	 * leaves still authenticate renewals (ca_issued) */
	int		 rot_phase;	/* enum rot_phase */
	X509		*prev;
	/* its key (rotation/old.key or old.keyuri), loaded by ca serve
	 * alone (ca_prev_key_load): OCSP and the CRL for its leaves until
	 * retire */
	struct signer	*prev_signer;
};

struct ca_init_req {
	const char	*dir;
	const char	*trust_domain;
	const char	*name;		/* root CN; default "<td> Root CA" */
	int		 key_type;
	int64_t		 ttl;
	const char	*pass_file;	/* encrypt ca.key; NULL = plain */
	const char	*key_uri;	/* pkcs11: URI of the key in a token
					 * (then no ca.key: ca.keyuri) */
	int		 key_existing;	/* key_uri's key exists: use it */
};

struct ca_int_req {
	const char	*dir;
	const char	*parent_dir;
	const char	*parent_pass_file;
	const char	*name;
	char	* const *permit_spiffe;	/* "spiffe://td/ns/prod/" */
	size_t		 n_permit_spiffe;
	char	* const *permit_dns;	/* "example.org" */
	size_t		 n_permit_dns;
	int		 key_type;
	int64_t		 ttl;
	const char	*pass_file;
	const char	*key_uri;	/* as in ca_init_req */
	int		 key_existing;
};

struct ca_issue_req {
	struct ids	 ids;		/* "spiffe://", "dns:", "ip:" */
	const char	*role;		/* NULL = "default" */
	int64_t		 ttl;		/* 0 = role default */
	int		 key_type;	/* -1 = role's first */
	const char	*csr_file;	/* sign this CSR instead of a new key */
	const char	*out_prefix;	/* PREFIX.pem, PREFIX.key */
	int		 force;
	const char	*crl_url;	/* override ca.conf's (ca serve) */
	const char	*ocsp_url;
	int		 ca_server;	/* ca_issue_server only: never from input */
	const char	*bundle_gen;	/* ca serve: the agent's bundle (64 hex,
					 * checked), recorded with the row */
	const char	*bundle_replaces; /* a renewal: the presented
					 * certificate's serial (its report
					 * is replaced), else NULL */
};

/*
 * The kind of a failed operation, for callers that answer by kind (ca
 * serve's HTTP status): decided where the failure is known, from the
 * return value, err->code and err->sys, never from the message's text.
 */
enum ca_fault {
	CA_FAULT_NONE = 0,
	CA_FAULT_INTERNAL,	/* a failure of ours (OpenSSL, SQLite, memory) */
	CA_FAULT_REFUSED,	/* the request is not allowed (MTLS_ERR_ARG) */
	CA_FAULT_TOKEN,		/* its join token is unknown, used or expired */
	CA_FAULT_STORAGE,	/* the disk refuses the write (ENOSPC, EDQUOT,
				 * EROFS, EIO in err->sys) */
};
/* The kind of <err> when nothing more is known: STORAGE, REFUSED or
 * INTERNAL. */
enum ca_fault ca_fault_of(const struct mtls_error *err);

/* Outcome of an operation, for the command to print. */
struct ca_result {
	char	 serial[48];
	char	 warning[256];	/* e.g. lifetime clamped; "" when none */
	int64_t	 not_after;
	enum ca_fault fault;	/* on failure (ca_issue_pub), else NONE */
};

int	 ca_init(const struct ca_init_req *, struct ca_result *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Opens a CA directory; <pass_file> decrypts ca.key (NULL if plain). */
int	 ca_open(struct ca **, const char *dir, const char *pass_file,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* ca_open() for a reload of ca serve: the inventory is <store>, which
 * the new CA borrows (ca_close leaves it open). */
int	 ca_open_shared(struct ca **, const char *dir, const char *pass_file,
	    struct store *store, struct mtls_error *) MTLS_MUST_CHECK;
/* Opens the inventory and certificates only, without the key. */
int	 ca_open_readonly(struct ca **, const char *dir,
	    struct mtls_error *) MTLS_MUST_CHECK;
void	 ca_close(struct ca *);
int	 ca_intermediate(const struct ca_int_req *, struct ca_result *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Issues a leaf: checks the role, signs, verifies it with our own policy,
 * records it (committed), then writes PREFIX.key and PREFIX.pem. */
int	 ca_issue(struct ca *, const struct ca_issue_req *, struct ca_result *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Builds what issuance keeps between calls (the self-check's verifier,
 * the bundle's and the chain's PEM) now (the self-check's CA path is kept
 * by the first issuance, published atomically). After it, ca_issue_pub, ca_issue_server,
 * ca_chain_pem, ca_bundle_pem and ca_issued only read the struct ca, so
 * threads may run them at once (ca serve calls it once, before serving;
 * the CA's certificate, chain, bundle, key and roles are fixed while it
 * is open, and the key signs from many threads: an EVP_PKEY is read-only
 * to signing in OpenSSL 3). */
int	 ca_issue_prepare(struct ca *, struct mtls_error *) MTLS_MUST_CHECK;
/* Issues a leaf for <pub> (a CSR's key) without writing files: the same
 * role checks, self-verification and durable record as ca_issue(); with
 * <token_hash> the token is burned in the same transaction. *out is the
 * leaf. On failure res->fault says its kind (CA_FAULT_TOKEN when the
 * token could not be burned). */
int	 ca_issue_pub(struct ca *, const struct ca_issue_req *, EVP_PKEY *pub,
	    const char *token_hash, X509 **out, struct ca_result *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Parses and checks a PKCS#10 CSR (PEM or DER; signature, key strength;
 * any SAN it asks for must be in <want>); <name> names it in errors. */
int	 ca_csr_parse(const uint8_t *buf, size_t len, const char *name,
	    const struct ids *want, EVP_PKEY **pub,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* PEM of <leaf> followed by this CA's chain short of the root (the
 * chain's PEM encoded at the first call and kept; <leaf> NULL: only
 * that, *pem stays NULL). */
int	 ca_chain_pem(struct ca *, X509 *leaf, char **pem, size_t *len,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* PEM of the roots (bundle.pem). */
int	 ca_bundle_pem(struct ca *, char **pem, size_t *len,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* How often a SPIFFE bundle consumer should fetch it again (seconds). */
#define CA_BUNDLE_REFRESH_S	300
/* The roots as a SPIFFE trust bundle (JWK Set): bundle.pem's self-signed
 * certificates only (never a rotation's cross-certificate); spiffe_sequence
 * is the newest root's notBefore, so it grows when a root is added. */
int	 ca_bundle_jwks(struct ca *, char **json, struct mtls_error *)
	    MTLS_MUST_CHECK;
/* A one-time join token for <spiffe_id> (allowed by a role), valid <ttl>:
 * "mtls2.<root SHA-256 hex>.<this CA's SHA-256 hex>.<secret>" (the
 * agent pins both). Only the SHA-256 of the whole token is stored. */
int	 ca_token_create(struct ca *, const char *spiffe_id, int64_t ttl,
	    char *token, size_t len, struct mtls_error *) MTLS_MUST_CHECK;
/* SHA-256 hex of a token, the key it is stored under. */
void	 ca_token_hash(const char *token, char hex[65]);
/* An OCSP response (DER) to the DER request <req>, signed by this CA, for
 * the certificates it issued (others are "unknown"), or after a rotation's
 * switch by the previous issuer when the request names it; a request that
 * names neither gets "unauthorized"; <next> seconds until nextUpdate. A
 * malformed request gets a malformedRequest response. */
int	 ca_ocsp(struct ca *, const uint8_t *req, size_t req_len, int64_t next,
	    uint8_t **resp, size_t *resp_len, struct mtls_error *) MTLS_MUST_CHECK;
/* The first role whose rules allow every identity in <ids>, or NULL. */
const char *ca_role_for(struct ca *, const struct ids *);
/* The CA server's own TLS certificate for <names> ("dns:", "ip:"): no
 * role (it is the CA's own), the same self-verification and record. */
int	 ca_issue_server(struct ca *, const struct ids *names, int64_t ttl,
	    EVP_PKEY *pub, X509 **out, struct ca_result *,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- rotation.c: replacing the root (docs/rotation.md) ---- */
enum rot_phase { ROT_NONE, ROT_PREPARED, ROT_PUBLISHED, ROT_SWITCHED,
    ROT_RETIRED, ROT__COUNT };
extern const char *const rot_phase_names[ROT__COUNT];

/* What is replaced: the root ca serve issues from (a file without
 * "kind" is one), the online intermediate under the same offline root, or
 * the offline root above it together with the intermediate. */
enum rot_kind { ROT_KIND_ROOT, ROT_KIND_INT, ROT_KIND_INT_ROOT,
    ROT_KIND__COUNT };
extern const char *const rot_kind_names[ROT_KIND__COUNT];

/* DIR/rotation.json */
struct rot_state {
	int	 phase;			/* enum rot_phase */
	int	 kind;			/* enum rot_kind */
	char	 old_root[65], new_root[65];	/* SHA-256 hex of the DER */
	char	 old_ca[65], new_ca[65];	/* the issuing CAs' (a root
					 * rotation: the roots') */
	char	 old_issuer[256];	/* the old root's name (name_oneline) */
	char	 cross_serial[48];	/* the cross-certificate's */
	char	 published_gen[65];	/* bundle generations: both roots */
	char	 final_gen[65];		/* and the new root alone */
	int64_t	 at;			/* when the last step was taken */
};
struct rot_status {
	struct rot_state st;
	int64_t	 blocking_certs;	/* unexpired, unrevoked, old root's */
	int64_t	 agents_total;		/* agents with a current certificate */
	int64_t	 agents_old;		/* ... whose bundle lacks the new root */
	int	 blocked;		/* the next step is not safe */
	/* prepare --new-root: unexpired, unrevoked certificates the old root
	 * issued besides DIR's intermediate (not counted by status) */
	int64_t	 parent_others;
	char	 next[256];		/* the next step, and what blocks it */
};
struct rot_req {
	const char	*dir, *pass_file;
	/* the offline root above DIR (an intermediate): prepare, a new
	 * root's switch and a new intermediate's retire need it */
	const char	*parent_dir, *parent_pass_file;
	int		 new_root;	/* prepare: a new root above DIR too */
	const char	*key_uri;	/* prepare --parent: the new
					 * intermediate's key made in a token */
	int		 step;		/* the phase it leads to */
	int		 key_type;	/* -1: EC P-256 */
	int64_t		 ttl;		/* 0: the default root lifetime */
	int		 force;		/* even when blocked */
};
/* The generation of a bundle: the SHA-256 (64 lower hex) of the DER of
 * its certificates, sorted bytewise and concatenated. 0, or -1. */
int	 rotation_generation(STACK_OF(X509) *, char hex[65]) MTLS_MUST_CHECK;
/* 1 when <s> is exactly 64 lower-case hex digits (a generation). */
int	 rotation_gen_valid(const char *s);
/* Reads DIR/rotation.json (phase ROT_NONE when there is none). */
int	 rotation_state_read(const char *dir, struct rot_state *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Where <ca>'s rotation is and what blocks its next step (counted in the
 * inventory and the agents' reports). */
int	 rotation_status(struct ca *, struct rot_status *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The status as GET /v1/rotation answers it (a new reference). */
json_t	*rotation_status_json(const struct rot_status *);
/* Takes one step: 0 done, 1 blocked (nothing changed; err says why), -1
 * error. <rs> gets the state after it. */
int	 rotation_step(const struct rot_req *, struct rot_status *,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- serve.c: mtls ca serve ---- */
struct ca_serve_opts {
	const char	*dir, *pass_file, *listen;
	const char	*url;		/* how clients reach us: https://H:P */
	const char	*bundle_path;	/* DIR/bundle.pem */
	struct ids	 names;		/* our certificate's DNS/IP names */
	char		**admin;	/* rules that may revoke */
	size_t		 n_admin;
	int64_t		 server_ttl, crl_ttl, ocsp_ttl;
	/* limits (issue 12 item 6), see cmd_caserve.c for the defaults */
	int		 max_conns;	/* open connections in all */
	int		 max_per_ip;	/* per client address; 0: none */
	int64_t		 first_byte_ms;	/* accept to the ClientHello */
	int64_t		 request_ms;	/* handshake + a whole request */
	int64_t		 idle_ms;	/* keep-alive: between requests */
};
/* Serves until SIGTERM/SIGINT (then drains, returns 0). */
int	 ca_serve(const struct ca_serve_opts *, struct mtls_error *)
	    MTLS_MUST_CHECK;

/* Whether <x> is a certificate this CA issued: its issuer is this CA's
 * certificate (name, key identifier, signature) and the inventory holds
 * exactly <x> under its serial. 0 yes (*rec is its record: revocation),
 * 1 no (<why> says which, naming the serial), -1 error (err). */
int	 ca_issued(struct ca *, X509 *x, struct cert_rec *rec, char *why,
	    size_t why_len, struct mtls_error *) MTLS_MUST_CHECK;
/* ca_issued() for a connection's peer certificate (issue 15): the issuer
 * and signature checks, fixed for the life of the connection, are done
 * once and remembered in <memo> (zeroed with the connection); the
 * inventory check, and so revocation, runs on every call. */
struct ca_issued_memo {
	uint64_t	 gen;	/* the CA snapshot that checked ... */
	const X509	*x;	/* ... this certificate's issuer and signature */
};
int	 ca_issued_memo(struct ca *, X509 *x, struct ca_issued_memo *memo,
	    struct cert_rec *rec, char *why, size_t why_len,
	    struct mtls_error *) MTLS_MUST_CHECK;
int	 ca_revoke(struct ca *, const char *serial, int reason,
	    struct ca_result *, int *already, struct mtls_error *) MTLS_MUST_CHECK;
/* A fresh signed CRL of every revocation in the inventory. */
int	 ca_crl(struct ca *, int64_t ttl, X509_CRL **,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* After a rotation's switch: the previous issuer's CRL (its revoked
 * leaves), signed by its key; the CRL number from the same store sequence
 * as ca_crl's, so each issuer's numbers only grow. -1 when there is no
 * previous issuer or its key is not loaded. */
int	 ca_crl_previous(struct ca *, int64_t ttl, X509_CRL **,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* signer.c: in phase switched, the previous issuer's key (the pkcs11: URI
 * in DIR/rotation/old.keyuri, else DIR/rotation/old.key, decrypted with
 * <pass_file>) into ca->prev_signer, checked against ca->prev. 0 when
 * there is none to load (not switched). */
int	 ca_prev_key_load(struct ca *, const char *pass_file,
	    struct mtls_error *) MTLS_MUST_CHECK;

/*
 * Where an issuance's time goes (issue 15): per phase, the calls, the
 * wall-clock and the CPU nanoseconds spent, process-wide, for ca serve's
 * /metrics (wall minus CPU: waiting, e.g. for fsync or the CA's mutex).
 * Phases of a request are measured one after another on its thread.
 */
enum ca_phase { CA_PH_AUTH, CA_PH_PARSE, CA_PH_LOCK, CA_PH_POLICY,
    CA_PH_SIGN, CA_PH_VERIFY, CA_PH_COMMIT, CA_PH_REPLY, CA_PH__COUNT };
extern const char *const ca_phase_names[CA_PH__COUNT];
/* Now, in ns, for ca_phase_end. */
uint64_t ca_phase_start(void);
/* Counts one <ph> begun at <t0> (ca_phase_start); returns now. */
uint64_t ca_phase_end(enum ca_phase ph, uint64_t t0);
/* The totals so far. */
void	 ca_phase_get(enum ca_phase ph, uint64_t *count, uint64_t *ns,
	    uint64_t *cpu_ns);

#endif
