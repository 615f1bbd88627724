/*
 * Shared between the files of src/svc/ca only (cadir.c, roles.c, issue.c,
 * signer.c, revoke.c, token.c): never included from serve.c's front or
 * from src/cmd. ca.h is the interface of the CA service.
 */
#ifndef MTLS_CA_LOCAL_H
#define MTLS_CA_LOCAL_H

#include <openssl/ocsp.h>

#include "ca.h"

#define BACKDATE	300		/* notBefore 5 min back (clock skew) */
#define ROOT_TTL	(3650LL * 86400)
#define INT_TTL		(365LL * 86400)
#define LEAF_TTL	(24LL * 3600)
#define LEAF_MAX_TTL	(90LL * 86400)

/* ---- signer.c: the only code that holds a CA private key ---- */
struct signer;

/* A fresh key of <key_type> for a new CA (ca init, ca intermediate). */
int	 signer_generate(struct signer **, int key_type,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Loads the CA key <path> (decrypted with <pass>; empty = plain), or the
 * key in a PKCS#11 token a pkcs11: URI names (it stays there), and checks
 * that it is <cert>'s (NULL: a new CA, no certificate yet). */
int	 signer_load(struct signer **, const char *path,
	    const struct mtls_secret *pass, X509 *cert,
	    struct mtls_error *) MTLS_MUST_CHECK;
int	 signer_token(struct signer **, const char *uri, int key_type,
	    int existing, struct keystore_made *, struct mtls_error *)
	    MTLS_MUST_CHECK;
void	 signer_free(struct signer *);	/* wipes the key */
/* The public half as a new public-only key; the caller frees it. */
int	 signer_public(struct signer *, EVP_PKEY **pub,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Writes the key to <path> (0600, atomically, never over a file),
 * encrypted with <pass> when it is not empty. */
int	 signer_write(struct signer *, const char *path,
	    const struct mtls_secret *pass, struct mtls_error *) MTLS_MUST_CHECK;
/* Signs the certificate <r> describes as <issuer>; with <issuer> NULL it
 * is self-signed (a root: the subject key is the signer's own). */
int	 signer_sign(struct signer *, X509 *issuer, struct profile_req *r,
	    X509 **out, struct mtls_error *) MTLS_MUST_CHECK;
/* Signs a CRL of <n> entries as <issuer> (crl_build). */
int	 signer_crl(struct signer *, X509 *issuer, const struct crl_entry *,
	    size_t n, int64_t number, int64_t this_update,
	    int64_t next_update, X509_CRL **, struct mtls_error *) MTLS_MUST_CHECK;
/* Signs the OCSP basic response <bs> as <issuer> (SHA-256). */
int	 signer_ocsp(struct signer *, X509 *issuer, OCSP_BASICRESP *bs,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- cadir.c ---- */
void	 ca_path(char *buf, size_t len, const char *dir, const char *name);
/* <first> and <chain> short of its root, borrowed (sk_X509_free). */
int	 ca_chain_stack(X509 *first, STACK_OF(X509) *chain,
	    STACK_OF(X509) **out, struct mtls_error *) MTLS_MUST_CHECK;
int	 ca_write_certs(const char *path, STACK_OF(X509) *sk, int overwrite,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The one pkcs11: URI line of the file <path> (ca.keyuri) into <out>. */
int	 ca_keyuri_read(const char *path, char *out, size_t cap,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- rotation.c ---- */
/* At open: DIR/rotation.json's phase into <ca>, and after a switch the
 * previous issuing certificate (rotation/old.pem) into ca->prev. */
int	 rotation_load(struct ca *, struct mtls_error *) MTLS_MUST_CHECK;

/* ---- roles.c: ca.conf ---- */
/* 0 when <td> is a valid trust domain, else -1 naming it. */
int	 ca_td_check(const char *td, struct mtls_error *) MTLS_MUST_CHECK;
/* Reads DIR/ca.conf into <ca>'s trust domain, URLs and roles. */
int	 roles_load(struct ca *, struct mtls_error *) MTLS_MUST_CHECK;
void	 roles_free(struct ca *);
const struct ca_role *role_find(const struct ca *, const char *name);
/* 1 when one of <role>'s allow rules admits the identity <id>. */
int	 role_allows(const struct ca_role *, const char *id);
/* 0 when <role>'s key_types admit <key>, else -1 naming both. */
int	 role_allows_key(const struct ca_role *, EVP_PKEY *key,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- issue.c ---- */
/* The end of a validity starting <now>: <now> + <ttl> (0: <dflt>); -1
 * with <err> naming <what> when <ttl> is out of range. */
int	 ca_until(int64_t now, int64_t ttl, int64_t dflt, const char *what,
	    int64_t *out, struct mtls_error *) MTLS_MUST_CHECK;
/* <not_after>, clamped to <ca>'s own notAfter (with a warning in <res>). */
int64_t	 ca_clamp(struct ca *, int64_t not_after, struct ca_result *res);
/* Signs <pr> as <ca> and records it as <kind> in <ca>'s inventory before
 * returning it (retrying on a serial collision). */
int	 ca_sign_record(struct ca *, struct profile_req *pr, const char *kind,
	    X509 **out, struct mtls_error *) MTLS_MUST_CHECK;
/* Frees the self-check's kept verifier (issue.c; ca_close). */
void	 ca_verifier_free(struct ca *);

#endif
