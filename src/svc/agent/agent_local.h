/*
 * Shared by the files of the agent only: agent.c (the loop), call.c (HTTPS
 * calls to the CA server and how it is authenticated), bundle.c (the
 * roots: fetched, checked by the bundle rule, copied), enroll.c (the
 * token, the CSR, the enroll and renew requests), install.c (what an
 * answer must pass to be installed, and installing it), files.c (out-dir
 * and the k8s layout).
 */
#ifndef MTLS_AGENT_LOCAL_H
#define MTLS_AGENT_LOCAL_H

#include <openssl/x509.h>

#include "agent/agent.h"

/* A certificate whose notBefore is at most this far ahead of our clock is
 * taken as valid (the CA backdates by 5 min; this covers a CA that does
 * not); the same bound makes a Date header's difference worth a line. */
#define SKEW_TOLERANCE	60

/* Why the last attempt failed on our clock. */
enum {
	SKEW_NONE,
	SKEW_TLS,	/* the CA server's certificate, by our clock */
	SKEW_ISSUED,	/* the certificate just issued (a token is spent) */
};

/* Whom a connection trusts. */
enum trust {
	TRUST_NONE,	/* the bootstrap GET only: no token, no writes */
	TRUST_PIN,	/* only the root the token names (a->pinned) */
	TRUST_BUNDLE,	/* out-dir/bundle.pem */
};

struct agent {
	const struct agent_opts *o;
	char	 svid[4200], svid_key[4200], bundle[4200];
	/* what authenticates the next renewal: the out-dir files, or
	 * --cert/--key until the first renewal installs its own */
	const char *cur_cert, *cur_key;
	EVP_PKEY *tkey;		/* --key pkcs11:...: the key in its token,
				 * every CSR's and handshake's (svid_key is
				 * then the URI with its id=; no key file is
				 * written) */
	uint8_t	 tkey_id[128];	/* its CKA_ID (tkey_id_len 0: not known) */
	size_t	 tkey_id_len;
	uint8_t	 next_id[128];	/* the pair a renewal made, until installed */
	size_t	 next_id_len;
	int	 next_old_ours;	/* tkey is deleted once that one is installed */
	int	 tkey_rotate;	/* the URI has object=: a renewal makes a pair */
	char	 ids_file[4200];	/* out-dir/svid.keyids (tokenkey.c) */
	char	 token[512];
	char	 pin[65];	/* the token's root SHA-256, lower hex */
	char	 ca_pin[65];	/* the token's CA SHA-256: the issuer of the
				 * CA server's certificate */
	X509	*pinned;	/* that root, during an enrollment */
	X509	*renewing;	/* our certificate, during a renewal: the CA
				 * server's issuer must have issued it */
	enum trust conn;	/* what the connection in progress trusts */
	X509	*srv_ca;	/* the issuer of the CA server's certificate
				 * on the last verified connection */
	char	 ca_found[65];	/* a handshake refused on that issuer: its
				 * SHA-256 ("(none)": no issuer) */
	char	 ca_subj[160];	/* and its subject */
	char	 seen_fp[65];	/* top of the chain a pinned handshake */
	char	 seen_why[100];	/* refused, and OpenSSL's reason */
	char	 not_ca[160];	/* the server's leaf lacked the CA-server
				 * EKU: its subject, for the error */
	int64_t	 not_after, renew_at;
	char	 serial[48];
	int64_t	 date, date_at;	/* the last answer's Date header (0: none)
				 * and our clock when it arrived */
	int	 skewed;	/* the last attempt failed on clock skew:
				 * SKEW_TLS, SKEW_ISSUED */
	int	 skew_logged;	/* this skew episode has had its line */
	int64_t	 tls_skew;	/* a handshake refused the server's
				 * certificate on time: at least this skew
				 * (our clock minus the bound it is past) */
	char	 tls_subj[160];	/* that certificate */
};

/* A response body (malloc'd, NUL-terminated). */
struct buf {
	char	*p;
	size_t	 len;
};

/* A file of the k8s layout: its name and bytes, or a key. */
struct kfile {
	const char	*name;
	const void	*data;
	size_t		 len;
	EVP_PKEY	*key;	/* written 0600 instead of data */
};

/* ---- call.c ---- */
/* SHA-256 of <x>'s DER in lower hex, the form a token carries. */
int	 call_fp(X509 *x, char hex[65]);
/* The refusal of a server that is not the token's root (err set). */
int	 call_pin_mismatch(struct agent *, const char *found, const char *why,
	    struct mtls_error *);
/* One HTTPS call trusting per <trust>: the HTTP status and the body in
 * *out (caller frees out->p), or -1 with err set. */
int	 call_ca(struct agent *, const char *method, const char *path,
	    const char *body, enum trust trust, int client, struct buf *out,
	    struct mtls_error *);
/* err from a non-200 answer's JSON error body. */
void	 call_api_error(struct mtls_error *, int status, const char *what,
	    const struct buf *);

/* ---- bundle.c ---- */
int	 bundle_current(struct agent *, enum trust, STACK_OF(X509) **out,
	    struct mtls_error *);
int	 bundle_fetch(struct agent *, enum trust, char **pem_out,
	    X509 **pinned, struct mtls_error *);
int	 bundle_copy(struct agent *, struct mtls_error *);

/* ---- enroll.c ---- */
int	 enroll_read_token(struct agent *, struct mtls_error *);
int	 enroll_run(struct agent *, struct mtls_error *);
int	 enroll_obtain(struct agent *, int enroll, const char *bundle_pem,
	    struct mtls_error *);

/* ---- install.c ---- */
void	 install_skew_line(struct agent *, int64_t skew, const char *source,
	    int installed);
int	 install_answer(struct agent *, EVP_PKEY *key, const char *chain_pem,
	    const char *bundle_pem, enum trust trust, const char *how,
	    struct mtls_error *);

/* ---- files.c ---- */
int	 files_k8s_swap(struct agent *, const struct kfile *f, size_t n,
	    int drop_tls, struct mtls_error *);
int	 files_load_current(struct agent *, const char *cert, const char *key);
int	 files_check_out_dir(const char *dir, struct mtls_error *);

/* ---- tokenkey.c: the key in a token, replaced at each renewal ---- */
/* a->tkey: the key out-dir's (or --cert's) certificate is for, or the
 * URI's key, or a pair made; leftovers of a crash deleted. */
int	 tokenkey_setup(struct agent *, struct mtls_error *);
/* A new pair (fresh CKA_ID) for a renewal's CSR; recorded first. */
int	 tokenkey_next(struct agent *, EVP_PKEY **key, struct mtls_error *);
/* Its certificate is installed: it is current, the old pair deleted. */
void	 tokenkey_installed(struct agent *, EVP_PKEY *key);
/* The renewal failed: the pair it made is deleted. */
void	 tokenkey_drop(struct agent *);

/* ---- agent.c ---- */
void	 agent_schedule(struct agent *);

#endif
