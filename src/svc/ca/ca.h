/*
 * The CA service (layer 2): a CA directory (DESIGN.md "CA directory"), its
 * SQLite inventory, and the operations of `mtls ca`. The CA private key is
 * only ever touched by ca_sign() in ca.c, the one narrow signer, so the
 * online front (ca serve) can later move it into a separate process.
 */
#ifndef MTLS_CA_H
#define MTLS_CA_H

#include <stdint.h>

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
 * and schema; otherwise a missing or damaged file is an error. */
int	 store_open(struct store **, const char *path, int create,
	    struct mtls_error *) MTLS_MUST_CHECK;
void	 store_close(struct store *);
/* Records an issued certificate durably (committed on return). Returns 0,
 * 1 when the serial already exists (pick another), -1 on error. */
int	 store_add(struct store *, X509 *, const char *kind,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Marks <serial> revoked; 0, or -1 (unknown serial names it). Sets
 * *already when it was revoked before (nothing changes then). */
int	 store_revoke(struct store *, const char *serial, int reason,
	    int64_t at, int *already, struct mtls_error *) MTLS_MUST_CHECK;
/* Calls <cb> for every certificate, newest first. */
int	 store_each(struct store *, int (*cb)(void *, const struct cert_rec *),
	    void *arg, struct mtls_error *) MTLS_MUST_CHECK;
/* The next CRL number (stored, monotonic). */
int	 store_next_crl_number(struct store *, int64_t *,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- ca.c ---- */
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
	EVP_PKEY	*key;		/* touched by ca_sign() only */
	struct store	*store;
	char		 trust_domain[256];
	char		*crl_url;
	char		*ocsp_url;
	struct ca_role	 roles[CA_ROLES_MAX];
	size_t		 n_roles;
};

struct ca_init_req {
	const char	*dir;
	const char	*trust_domain;
	const char	*name;		/* root CN; default "<td> Root CA" */
	int		 key_type;
	int64_t		 ttl;
	const char	*pass_file;	/* encrypt ca.key; NULL = plain */
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
};

struct ca_issue_req {
	struct ids	 ids;		/* "spiffe://", "dns:", "ip:" */
	const char	*role;		/* NULL = "default" */
	int64_t		 ttl;		/* 0 = role default */
	int		 key_type;	/* -1 = role's first */
	const char	*csr_file;	/* sign this CSR instead of a new key */
	const char	*out_prefix;	/* PREFIX.pem, PREFIX.key */
	int		 force;
};

/* Outcome of an operation, for the command to print. */
struct ca_result {
	char	 serial[48];
	char	 warning[256];	/* e.g. lifetime clamped; "" when none */
	int64_t	 not_after;
};

int	 ca_init(const struct ca_init_req *, struct ca_result *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Opens a CA directory; <pass_file> decrypts ca.key (NULL if plain). */
int	 ca_open(struct ca **, const char *dir, const char *pass_file,
	    struct mtls_error *) MTLS_MUST_CHECK;
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
int	 ca_revoke(struct ca *, const char *serial, int reason,
	    struct ca_result *, int *already, struct mtls_error *) MTLS_MUST_CHECK;
/* A fresh signed CRL of every revocation in the inventory. */
int	 ca_crl(struct ca *, int64_t ttl, X509_CRL **,
	    struct mtls_error *) MTLS_MUST_CHECK;

#endif
