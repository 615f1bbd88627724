/*
 * libmtls internals that the services (src/svc, src/cmd) may call: hidden
 * cross-file functions and the plain structs they take. Functions are
 * named after their file (verify_chain in verify.c) and are not exported
 * from libmtls.so (see libmtls.sym); the mtls binary links the objects
 * directly. The fields of struct mtls_config, struct mtls and struct
 * tls_state are libmtls's alone (private.h): here they are opaque, and
 * the accessors below (config_*, ctx_*, tls_*) are how services reach them.
 */
#ifndef MTLS_INTERNAL_H
#define MTLS_INTERNAL_H

#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mtls.h"

#define MTLS_MUST_CHECK	__attribute__((warn_unused_result))
#define MTLS_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Largest file we read whole (certificates, keys, CRLs, configs). */
#define MTLS_MAX_FILE	(8u * 1024 * 1024)
#define MTLS_MAX_FED_ROOTS	100	/* roots in one partner bundle */
/* The longest durations a user may give (issue 18): an interval or a
 * timeout (a refresh, a ticket rotation, a drain, a token) at most 366
 * days, a lifetime (certificate, CRL, OCSP answer) at most 100 years.
 * Longer is a typo, and now + d in milliseconds must never overflow. */
#define MTLS_MAX_INTERVAL	(366LL * 86400)
#define MTLS_MAX_TTL		(36525LL * 86400)
/* SPIFFE: an ID is at most 2048 bytes. */
#define SPIFFE_MAX	2048
/* How many MTLS_FAIL_* codes this build knows (table sizes; not in the ABI:
 * a new code changes it). */
#define MTLS_FAIL_COUNT	(MTLS_FAIL_TRUST_DOMAIN_MISMATCH + 1)

/* ---- error.c ---- */
struct mtls_error {
	int	code;		/* MTLS_ERR_* */
	int	fail;		/* MTLS_FAIL_*, with MTLS_ERR_VERIFY */
	int	sys;		/* errno of the failed system call, 0 none:
				 * callers decide by it (ENOSPC), never by
				 * the text */
	const char *kind;	/* the fault's kind in words a client may
				 * read ("disk full"): a static string set
				 * where the fault is classified (the CA's
				 * store), NULL none; never the detail */
	char	msg[256];	/* "input: problem"; never allocated */
};
void	 error_clear(struct mtls_error *);
/* All setters return -1 so callers can "return error_set(...)". */
int	 error_set(struct mtls_error *, int code, const char *fmt, ...)
	    MTLS_PRINTF(3, 4);
/* Appends ": strerror(errno)" and keeps errno in ->sys. */
int	 error_set_errno(struct mtls_error *, int code, const char *fmt, ...)
	    MTLS_PRINTF(3, 4);
/* Appends ": <first OpenSSL reason>" and clears OpenSSL's error queue. */
int	 error_set_ossl(struct mtls_error *, int code, const char *fmt, ...)
	    MTLS_PRINTF(3, 4);
/* A verification failure: code MTLS_ERR_VERIFY with taxonomy <fail>. */
int	 error_fail(struct mtls_error *, int fail, const char *fmt, ...)
	    MTLS_PRINTF(3, 4);
void	 error_copy(struct mtls_error *dst, const struct mtls_error *src);

/* ---- secret.c ---- */
struct mtls_secret {
	uint8_t	*p;
	size_t	 len;
};
int	 secret_set(struct mtls_secret *, const void *, size_t) MTLS_MUST_CHECK;
/* Cleanses, then frees; leaves an empty secret. */
void	 secret_clear(struct mtls_secret *);
/* A passphrase file: its first line, without the line end; must not be
 * empty. The file's bytes are cleansed after copying. */
int	 secret_load_pass(struct mtls_secret *, const char *path,
	    struct mtls_error *) MTLS_MUST_CHECK;
struct stat;
/* The same from a private file (fs_read_private: <label> names it in
 * messages; group and others may neither read nor write it). */
int	 secret_load_private(struct mtls_secret *, const char *path,
	    const char *label, struct stat *seen,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- fsatomic.c ---- */
/* Reads all of <path> (at most <max> bytes) into a NUL-terminated buffer
 * owned by the caller; *len excludes the NUL. Only a regular file (or a
 * symlink to one): a FIFO, socket, device or directory is refused at once,
 * never waited on. Every file input of the library goes through here. */
int	 fs_read(const char *path, size_t max, uint8_t **buf, size_t *len,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* fs_read of a file that holds a secret or policy, opened once
 * (O_NOFOLLOW) and judged on that descriptor: this user's, a regular file,
 * not writable by group or others, and with <no_read> not readable by
 * them either; then read through the same descriptor, so the file judged
 * is the file read. The message names <label><path> and the chown/chmod
 * that fixes it. <seen> (may be NULL) gets the file's fstat. */
int	 fs_read_private(const char *path, size_t max, const char *label,
	    int no_read, uint8_t **buf, size_t *len, struct stat *seen,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Writes <data> to <path> atomically: a temporary file in the same folder
 * with <mode>, fsync, rename, fsync of the folder. Without <overwrite> an
 * existing <path> is an error and stays untouched. */
int	 fs_write_atomic(const char *path, const void *data, size_t len,
	    mode_t mode, int overwrite, struct mtls_error *) MTLS_MUST_CHECK;
/* Refuses early when <path> exists (and !overwrite) or its folder is not
 * writable, so a command fails before it changes anything. */
int	 fs_check_writable(const char *path, int overwrite,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Refuses <path> (followed if a symlink) unless this user owns it and
 * neither group nor others can write it: what holds keys, trust or policy
 * that another local user must not swap. The message names <label><path>
 * and the chown/chmod that fixes it, then <hint>. -1 with err->sys set
 * when it cannot be stat'ed (ENOENT: missing). */
int	 fs_check_private(const char *path, const char *label,
	    const char *hint, struct mtls_error *) MTLS_MUST_CHECK;
/* fsync of a folder, after a rename into it. */
int	 fs_fsync_dir(const char *dir, struct mtls_error *) MTLS_MUST_CHECK;

/* ---- identity.c ---- */
struct ids {
	char	**v;		/* "spiffe://..", "dns:..", "ip:..", "cn:.." */
	size_t	  n;
	size_t	  n_uri;	/* URI SANs seen, spiffe or not */
	size_t	  bad_uri;	/* URI SANs dropped: a byte outside 0x21-0x7e,
				 * or too long */
	size_t	  bad_other;	/* DNS SANs likewise; CN: control byte */
	char	 *bad;		/* the first one dropped, escaped (owned) */
};
void	 ids_free(struct ids *);
/* Frees <n> strings and the array. */
void	 strv_free(char **, size_t);
/* Appends a copy of <s> to the vector <v>[<n>]: 0, or -1 out of memory
 * (the vector unchanged but for its capacity). */
int	 strv_add(char ***v, size_t *n, const char *s) MTLS_MUST_CHECK;
int	 ids_add(struct ids *, const char *prefix, const char *val,
	    size_t len) MTLS_MUST_CHECK;
/* A deep copy of <src>'s identities (and its URI count) into <dst>. */
int	 ids_copy(struct ids *dst, const struct ids *src) MTLS_MUST_CHECK;
/* Extracts identities from <cert>: URI SANs (as they are), DNS SANs
 * ("dns:"), IP SANs ("ip:", canonical text) and the subject CN ("cn:"). */
int	 ids_from_cert(X509 *, struct ids *, struct mtls_error *) MTLS_MUST_CHECK;
/* The primary identity: the SPIFFE ID, else first dns:, ip:, cn:, or NULL. */
const char *ids_primary(const struct ids *);
/* Puts the trust domain of valid SPIFFE ID <id> in <td> (NUL-terminated). */
int	 spiffe_trust_domain(const char *id, char *td, size_t td_len);
/* A trust domain name as a SPIFFE ID has it (a-z 0-9 . - _, at most
 * TD_MAX bytes): 0, or -1 with the reason in <why>. */
#define TD_MAX	255
int	 trust_domain_check(const char *td, char *why, size_t why_len);
/* Validates a DNS name (LDH labels, <= 253 bytes); allows a leading "*."
 * when <wildcard>. */
int	 dns_name_check(const char *name, int wildcard);
int	 dns_wildcard_match(const char *pat, const char *ref);
int	 ids_expect_match(const char *rule, const char *id);
/* What rules_match() compares with. */
#define RULE_EXPECT	0x1	/* expect rules: a DNS reference name is
				 * also met by a wildcard DNS SAN
				 * (ids_expect_match) */
#define RULE_ROLE	0x2	/* a CA role's allow list: "dns:*" and "ip:*"
				 * stand for any DNS name, any IP address */
/* The one rule-matching loop: the index of the first of <rules> that
 * matches one of the <n_ids> identities <ids> (NULL entries match
 * nothing), or -1. */
long	 rules_match(char * const *rules, size_t n_rules,
	    const char * const *ids, size_t n_ids, unsigned flags);
/* rules_match() against every identity of <ids>. */
long	 rules_match_ids(char * const *rules, size_t n_rules,
	    const struct ids *ids, unsigned flags);
/* Canonical text of an IP address ("ip:" not included); -1 when invalid. */
int	 ip_canon(const char *in, char *out, size_t out_len);

/* ---- key.c: private keys ---- */
enum key_type {
	KEY_EC_P256 = 0,
	KEY_EC_P384,
	KEY_ED25519,
	KEY_RSA_2048,
	KEY_RSA_3072,
	KEY__COUNT
};
/* Parses "ec-p256", "p256", "ed25519", "rsa-2048", ...; -1 when unknown. */
int	 key_type_parse(const char *);
const char *key_type_name(int);
/* The KEY_* class of an existing key (a CSR's): RSA of 3072 bits or more
 * counts as rsa-3072; -1 for anything we do not issue for (Ed448,
 * secp256k1, P-521, RSA under 2048, DSA). */
int	 key_type_of(EVP_PKEY *);
int	 key_generate(int type, EVP_PKEY **, struct mtls_error *) MTLS_MUST_CHECK;
/* Parses a private key (PEM or DER, PKCS#8 encrypted or not) from <buf>;
 * <name> names it in messages. */
int	 key_parse(const uint8_t *buf, size_t len, const char *name,
	    const struct mtls_secret *pass, EVP_PKEY **,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* ---- keystore.c: where a private key lives (a file or a PKCS#11 token) ---- */
/* Loads a private key from <path>: a file (PEM or DER, PKCS#8 encrypted or
 * not, <pass>), or a key in a PKCS#11 token named by an RFC 7512 "pkcs11:"
 * URI (the key stays in the token; the EVP_PKEY signs through it). */
int	 key_load(const char *path, const struct mtls_secret *pass,
	    EVP_PKEY **, struct mtls_error *) MTLS_MUST_CHECK;
/* key_load, but a pkcs11: URI naming its key by object= alone picks the
 * key under that label that <cert> certifies (when one does). */
int	 key_load_cert(const char *path, const struct mtls_secret *pass,
	    X509 *cert, EVP_PKEY **, struct mtls_error *) MTLS_MUST_CHECK;
/* 1 when <s> is a "pkcs11:" URI (any case of the scheme). */
int	 keystore_is_uri(const char *s);
#define P11URI_MAX	1024
/* A key pair keystore_generate made, for keystore_undo. */
struct keystore_made {
	int	 made;			/* 1: in the token, this process's */
	char	 uri[P11URI_MAX + 1];
	uint8_t	 id[128];		/* its CKA_ID */
	size_t	 id_len;
};
/* The private key <uri> names, made in its token when there is none: a
 * <type> pair (EC P-256/P-384, RSA) labelled object=, CKA_ID the URI's id=
 * or 16 random bytes; private, sensitive, not extractable. An existing key
 * is used when <adopt>, else refused. <made> says whether a pair was made
 * (keystore_undo deletes it when what follows fails). */
int	 keystore_generate(const char *uri, int type, int adopt, EVP_PKEY **,
	    struct keystore_made *made, struct mtls_error *) MTLS_MUST_CHECK;
int	 keystore_undo(struct keystore_made *, struct mtls_error *)
	    MTLS_MUST_CHECK;
/* Deletes the pair (every object) labelled as <uri>'s object= with CKA_ID
 * <id>; 0 when none is left. */
int	 keystore_destroy(const char *uri, const uint8_t *id, size_t id_len,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The key labelled as <uri>'s object= (any id) that <cert> certifies:
 * *out and its CKA_ID (up to 128 bytes), *out NULL when none. */
int	 keystore_find_cert(const char *uri, X509 *cert, EVP_PKEY **out,
	    uint8_t *id, size_t *id_len, struct mtls_error *) MTLS_MUST_CHECK;
/* <uri> with id=<id> (replacing its id=, query kept) into <out>. */
int	 keystore_uri_with_id(const char *uri, const uint8_t *id,
	    size_t id_len, char *out, size_t cap, struct mtls_error *)
	    MTLS_MUST_CHECK;
/* The PIN file (pin-source) of the pkcs11: URI <uri>, NULL when it is not
 * one: what a reload watches instead of a key file (kept for the
 * process's life). */
const char *keystore_pin_file(const char *uri);
/* An RFC 7512 URI, as far as we accept it: token, object and/or id, type
 * (private only), ?pin-source=file:PATH (required), module-path (absolute);
 * pin-value and every other attribute refused, none twice. */
struct p11uri {
	char	 token[33];	/* PKCS#11 labels are 32 bytes */
	char	 object[256];
	uint8_t	 id[128];
	size_t	 id_len;
	char	 pin_file[PATH_MAX];
	char	 module[PATH_MAX];
};
int	 p11uri_parse(const char *s, size_t n, struct p11uri *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* PEM PKCS#8, AES-256-CBC encrypted when <pass> is non-empty; written
 * 0600 atomically; the PEM bytes are cleansed. */
int	 key_write(const char *path, EVP_PKEY *, const struct mtls_secret *pass,
	    int overwrite, struct mtls_error *) MTLS_MUST_CHECK;
/* "EC P-256", "RSA 2048", "Ed25519" into <buf>; sets *bits. */
void	 key_describe(EVP_PKEY *, char *buf, size_t len, int *bits);
/* The digest to sign with <k>: SHA-384 for P-384, none for EdDSA,
 * otherwise SHA-256. */
const EVP_MD *sign_digest(EVP_PKEY *k);

/* ---- x509.c: certificates and CRLs as bytes, X.509 helpers ---- */
/* Every certificate in <buf>: PEM (any number), one DER, PKCS#12 or a
 * SPIFFE bundle. <name> is used in messages. Empty input, a damaged or
 * truncated PEM block and bytes after a DER certificate are errors; text
 * between and after PEM blocks is skipped, as OpenSSL does (CA bundles
 * carry comment lines). */
int	 certs_parse(const uint8_t *buf, size_t len, const char *name,
	    STACK_OF(X509) **, struct mtls_error *) MTLS_MUST_CHECK;
int	 certs_load(const char *path, STACK_OF(X509) **,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* certs_load(), and for a PKCS#12 file its MAC checked with <pass> (NULL:
 * the empty password) and, if <key> is non-NULL, its key. */
int	 certs_load_pass(const char *path, const struct mtls_secret *pass,
	    STACK_OF(X509) **, EVP_PKEY **key, struct mtls_error *)
	    MTLS_MUST_CHECK;
int	 certs_pem(STACK_OF(X509) *, char **pem, size_t *len) MTLS_MUST_CHECK;
/* CRLs (PEM, several, or one DER) from memory; <name> names them. */
int	 crls_parse(const uint8_t *buf, size_t len, const char *name,
	    STACK_OF(X509_CRL) **, struct mtls_error *) MTLS_MUST_CHECK;
int	 crls_load(const char *path, STACK_OF(X509_CRL) **,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Upper-case hex of a serial into <buf> (at least 2*20+1 bytes). */
void	 serial_hex(const ASN1_INTEGER *, char *buf, size_t len);
/* Canonicalizes user serial text (hex, colons optional) to upper hex. */
int	 serial_canon(const char *in, char *out, size_t len);
/* "CN=api,O=example.org" one-line subject. */
void	 name_oneline(const X509_NAME *, char *buf, size_t len);
/* X509 time -> UNIX seconds. */
int64_t	 asn1_time_unix(const ASN1_TIME *);
/* SHA-256 fingerprint "AB:CD:..." (96 bytes) of a certificate. */
void	 cert_fingerprint(X509 *, char *buf, size_t len);
/* "CN=x serial 0A1B.." for messages. */
void	 cert_label(X509 *, char *buf, size_t len);
int	 cert_is_self_signed(X509 *);
/* <ca> (a CA) issued <x>: name, key identifier, key usage and signature. */
int	 cert_issued_by(X509 *ca, X509 *x);
int	 rsa_exponent_ok(EVP_PKEY *);	/* odd, 2^16 < e < 2^256 */

/* ---- formats.c: SPIFFE bundle (JWK Set) and PKCS#12 ---- */
/* The x509-svid roots of a SPIFFE bundle; each key's JWK members must
 * describe its one x5c certificate. Other uses are skipped. */
int	 jwks_parse(const uint8_t *buf, size_t len, const char *name,
	    STACK_OF(X509) **, struct mtls_error *) MTLS_MUST_CHECK;
/* <roots> as a SPIFFE bundle (indented JSON, ASCII); malloc'd. */
int	 jwks_emit(STACK_OF(X509) *roots, int64_t sequence, int64_t refresh_s,
	    char **out, struct mtls_error *) MTLS_MUST_CHECK;
/* A PKCS#12 file (AES-256/PBKDF2, SHA-256 MAC) of <key>, <leaf> and
 * <chain>; DER, OPENSSL_malloc'd. */
int	 pkcs12_emit(EVP_PKEY *key, X509 *leaf, STACK_OF(X509) *chain,
	    const char *friendly, const struct mtls_secret *pass, uint8_t **out,
	    size_t *out_len, struct mtls_error *) MTLS_MUST_CHECK;
/* The certificates (leaf first) and, if <key> is non-NULL, the key of a
 * PKCS#12 file; its MAC is checked with <pass> (NULL: the empty one). */
int	 pkcs12_parse(const uint8_t *buf, size_t len, const char *name,
	    const struct mtls_secret *pass, EVP_PKEY **key,
	    STACK_OF(X509) **certs, struct mtls_error *) MTLS_MUST_CHECK;
enum { EXPORT_P12 = 1, EXPORT_PEM, EXPORT_DER, EXPORT_K8S };
/* <certs> (leaf first, then its chain) and <key> in format <fmt>: a
 * PKCS#12 file (password <pass>, friendly name <name>), HAProxy's combined
 * PEM (chain then key), the leaf's DER, or a kubernetes.io/tls Secret
 * named <name> with ca.crt from <roots> (may be NULL). *out is malloc'd;
 * the caller cleanses it (it may hold the key) and frees it. */
int	 cert_export(int fmt, EVP_PKEY *key, STACK_OF(X509) *certs,
	    STACK_OF(X509) *roots, const char *name,
	    const struct mtls_secret *pass, uint8_t **out, size_t *out_len,
	    struct mtls_error *) MTLS_MUST_CHECK;

/* ---- profile.c: certificate profiles (DESIGN.md) ---- */
/* PROFILE_CROSS: a root's name and key certified by another root (the
 * rotation's cross-certificate): a CA with no path length, as the root it
 * stands for, so that root's intermediates verify through it too. */
enum profile_kind { PROFILE_ROOT, PROFILE_INTERMEDIATE, PROFILE_LEAF,
	PROFILE_CROSS };
struct profile_req {
	int		 kind;
	const char	*cn;		/* subject CN (may be NULL for leaf) */
	const char	*org;		/* subject O (trust domain) */
	const struct ids *sans;	/* leaf: identities to put in SAN */
	int64_t		 not_before;	/* UNIX seconds */
	int64_t		 not_after;
	EVP_PKEY	*pubkey;	/* subject key */
	/* 1: the certificate is only verified, encoded and freed (the CA's
	 * leaf issuance): its key is set by x509_set_pubkey_fast, whose
	 * parsed key is a legacy object that provider-parameter readers
	 * (EVP_PKEY_get_*_param: JWK export, group names) cannot read */
	int		 pubkey_fast;
	X509		*issuer;	/* NULL for root */
	EVP_PKEY	*issuer_key;	/* signer */
	/* intermediate scoping */
	const char	*permit_td;	/* URI nameConstraint (trust domain) */
	char	* const *permit_spiffe;	/* SPIFFE path prefixes */
	size_t		 n_permit_spiffe;
	char	* const *permit_dns;	/* DNS subtrees */
	size_t		 n_permit_dns;
	const char	*scope_oid;	/* NULL: profile_scope_oid_default() */
	const char	*crl_url;	/* CRL distribution point */
	const char	*ocsp_url;	/* AIA OCSP */
	int		 ca_server;	/* leaf: add the CA-server EKU */
};
/*
 * The extended key usage that only `mtls ca serve`'s own TLS certificate
 * carries (under the same documentation arc as the scope OID). The root a
 * join token pins vouches for every workload too, so a workload whose
 * certificate names the CA's host could otherwise stand in for the CA
 * server; agents require this EKU of the server they enroll and renew at.
 * No request (CSR, role, flag) can ask for it.
 */
#define MTLS_OID_CA_SERVER	"1.3.6.1.4.1.32473.6857.2"
int	 profile_is_ca_server(X509 *);
/* Builds and signs one certificate with a fresh 128-bit random serial. */
/* X509_set_pubkey() without OpenSSL 3.0's encode/decode round trip for
 * EC and RSA keys (pubkey.c); the same bytes. 1 on success, like it. */
int	 x509_set_pubkey_fast(X509 *, EVP_PKEY *);
/* A CSR's key from its SubjectPublicKeyInfo's parts without OpenSSL 3.0's
 * decoder: EC on P-256/P-384/P-521 (uncompressed point), Ed25519; NULL
 * for anything else or anything odd (the caller falls back). */
EVP_PKEY *pubkey_from_spki_fast(const X509_ALGOR *, const ASN1_BIT_STRING *,
	    int legacy);
/* ECDSA_verify of data's SHA-256/384/512 (md_nid) with a legacy EC key
 * from pubkey_from_spki_fast: 1 verified, 0 not, -1 not this shape. */
int	 pubkey_ecdsa_verify(EVP_PKEY *, int md_nid, const unsigned char *data,
	    size_t len, const unsigned char *sig, size_t siglen);

/* ---- csr.c: a PKCS#10 CSR (DER) parsed once (docs/security/csrfast.md) */
enum csr_verdict { CSR_OK, CSR_NOT_CSR, CSR_NO_KEY, CSR_BAD_SIGNATURE };
/* The whole of der[len] is one CSR whose signature verifies with its own
 * key: CSR_OK, *pub (the caller's reference) and *exts (the extension
 * request as X509_REQ_get_extensions: empty when none, NULL when
 * malformed; the caller frees it). fast = 0: d2i_X509_REQ alone; 1: the
 * template path first for EC and Ed25519 keys, d2i_X509_REQ for anything
 * it does not accept (so the verdict and the key are d2i_X509_REQ's). */
enum csr_verdict csr_parse(const unsigned char *der, size_t len, int fast,
	    EVP_PKEY **pub, STACK_OF(X509_EXTENSION) **exts);
/* The template path alone: 1 and *pub, *exts as above, or 0 (not taken;
 * never a verdict). */
int	 csr_parse_fast(const unsigned char *der, size_t len, EVP_PKEY **pub,
	    STACK_OF(X509_EXTENSION) **exts);
int	 profile_build(const struct profile_req *, X509 **,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* The SPIFFE path prefixes recorded in our scope extension <oid> on <ca>;
 * 0 when the extension is absent (*n = 0), -1 when it is present but
 * malformed. */
int	 profile_spiffe_scope(X509 *ca, const char *oid, char ***prefixes,
	    size_t *n);
/* The permitted dNSName subtrees of <ca>'s nameConstraints, without our
 * "none" marker; 0 (maybe *n = 0), -1 when the extension is malformed. */
int	 profile_dns_scope(X509 *ca, char ***suffixes, size_t *n);
/* 0 when <oid> is dotted text, >= 3 arcs, each below 2^31 (Go, GnuTLS). */
int	 profile_scope_oid_check(const char *oid);
const char *profile_scope_oid_default(void);
/* 1 for the 2.25 OID we wrote before (Go and GnuTLS cannot parse it). */
int	 profile_scope_oid_legacy(const char *oid);
/* 1 when <x> carries our scope extension under the legacy 2.25 OID. */
int	 profile_scope_legacy(X509 *x);
/* The scope OIDs a verifier reads: <extra> (if set and new), the default,
 * the legacy one; returns how many were put in <oids>. */
size_t	 profile_scope_oids(const char *extra, const char *oids[3]);

/* ---- crl.c ---- */
struct crl_entry {
	const char	*serial_hex;
	int64_t		 revoked_at;
	int		 reason;	/* CRL_REASON_* */
};
int	 crl_build(X509 *ca, EVP_PKEY *key, const struct crl_entry *, size_t n,
	    int64_t number, int64_t this_update, int64_t next_update,
	    X509_CRL **, struct mtls_error *) MTLS_MUST_CHECK;
/* "keyCompromise" etc. -> CRL_REASON_*; -1 when unknown. */
int	 crl_reason_parse(const char *);
const char *crl_reason_name(int);

/* Clock skew allowed either way when judging revocation data by time (an
 * OCSP response's or a CRL's thisUpdate and nextUpdate). */
#define REVOCATION_SKEW	300

/* What crl_check found wrong with a CRL (names: crl_verdict_name). */
enum crl_verdict {
	CRL_OK = 0,
	CRL_MALFORMED,		/* not a CRL (the caller's parse failed) */
	CRL_UNKNOWN_ISSUER,	/* no CA we trust has the issuer's name */
	CRL_BAD_SIGNATURE,	/* a CA with that name exists; no key of
				 * one that may sign CRLs verifies it */
	CRL_NOT_YET_VALID,	/* thisUpdate - skew > now */
	CRL_EXPIRED,		/* nextUpdate + skew < now */
	CRL_ROLLBACK,		/* older than the one installed */
	CRL_VERDICT__COUNT
};
/* "crl_bad_signature" for CRL_BAD_SIGNATURE, "ok" for CRL_OK. */
const char *crl_verdict_name(int);
#define CRL_CHECK_STRICT	0x1	/* an issuer we do not know is refused */
#define CRL_CHECK_TIME		0x2	/* judge thisUpdate/nextUpdate at now */
/*
 * Checks every CRL in <crls> (from the source <name>) before it is
 * installed: signed by a CA in <trust>, or by a CA certificate in <others>
 * (intermediates, our own chain) that chains to <trust>, whose keyUsage (if
 * any) has cRLSign; with CRL_CHECK_TIME, current at <now> within
 * REVOCATION_SKEW; never older than a CRL of the same issuer (name and key)
 * in <installed> (NULL: none): a lower CRL number, or, when either has no
 * number or the numbers are equal, an earlier thisUpdate. Without
 * CRL_CHECK_STRICT an issuer name no usable CA has is accepted (OpenSSL
 * checks the signature when it uses the CRL). CRL_OK, or the first verdict
 * with <err> naming the source, the issuer and the fix.
 */
int	 crl_check(STACK_OF(X509_CRL) *crls, const char *name,
	    STACK_OF(X509) *trust, STACK_OF(X509) *others,
	    STACK_OF(X509_CRL) *installed, int flags, int64_t now,
	    struct mtls_error *err);

/* ---- config.c ---- */
/* Seals new tickets with a fresh key and keeps the current one for opening
 * tickets already out (one previous key, like nginx and HAProxy). */
int	 config_rotate_ticket_keys(struct mtls_config *) MTLS_MUST_CHECK;
/* Freezes <cfg> (once; thread-safe) and derives its generation from what
 * decides authorization: anchors, intermediates, CRLs, rules, purpose and
 * time. Tickets carry the generation, so two configs that would authorize
 * alike (a reload that only changed our own certificate, or two replicas)
 * accept each other's tickets. */
void	 config_freeze(struct mtls_config *);
/* <dst> takes <src>'s ticket keys (with <keys>), and its verification
 * cache when both have the same generation (the results hold for both). */
void	 config_inherit(struct mtls_config *dst, struct mtls_config *src,
	    int keys);
/* Another reference to <cfg> (atomic; dropped by mtls_config_free). */
struct mtls_config *config_ref(struct mtls_config *);
/* Our own chain (leaf first) and leaf, NULL when no identity is set;
 * borrowed, valid while the config is. */
STACK_OF(X509) *config_chain(const struct mtls_config *);
X509	*config_leaf(const struct mtls_config *);
/* The trust anchors, NULL when none; borrowed. */
STACK_OF(X509) *config_trust(const struct mtls_config *);
/* <cfg> uses <anchors> as its trust bundle without copying them (a
 * short-lived verifier on another's bundle: ca.c's self-check, the
 * proxy's own-chain check); they must outlive the config's use and are
 * never freed by it. NULL drops them. */
void	 config_borrow_trust(struct mtls_config *, STACK_OF(X509) *anchors);
/* Also recognise the SPIFFE scope extension under <oid> (a CA's
 * scope_oid), instead of MTLS_SCOPE_OID from the environment ("" or
 * NULL: that again). */
void	 config_set_scope_oid(struct mtls_config *, const char *oid);
/* The last error of a setter (the whole record: code, fail, errno). */
const struct mtls_error *config_error(const struct mtls_config *);

/* ---- ctx.c ---- */
struct verify_out;
/* The whole error record of the last call on <m>. */
const struct mtls_error *ctx_error(const struct mtls *);
/* Records on connection <m> a failure its caller saw around it (the
 * handshake deadline): mtls_fail_code() and mtls_error() then report it.
 * Returns -1. */
int	 ctx_fail(struct mtls *, int fail, const char *fmt, ...)
	    MTLS_PRINTF(3, 4);
/* The trust store of a configured verifying context (NULL before). */
X509_STORE *ctx_store(const struct mtls *);
/* verify_chain() of parsed <certs> (leaf first) with verifying context
 * <m>'s config and store, for <purpose>; the result on <m> (mtls_error,
 * mtls_fail_code). */
int	 ctx_verify_chain(struct mtls *, STACK_OF(X509) *certs, int purpose,
	    struct verify_out *) MTLS_MUST_CHECK;

/* ---- verify.c ---- */
struct verify_out {
	struct ids	ids;		/* the leaf's identities */
	char		serial[48];
	STACK_OF(X509) *chain;	/* the verified chain, leaf first, owned */
};
void	 verify_out_free(struct verify_out *);
/* Verifies <certs> (leaf first) with <store> and <cfg>'s policy, for
 * <purpose> (MTLS_PURPOSE_*). Returns
 * 0, or -1 with err->fail set (verification) or err->code (other). */
int	 verify_chain(const struct mtls_config *, X509_STORE *,
	    STACK_OF(X509) *certs, int purpose, struct verify_out *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* <leaf> (signed by path[0]) on <path>, a CA path (issuer first) that
 * verify_chain validated: every check of verify_chain that depends on the
 * leaf, the path's own signatures not verified again (verify.c). */
int	 verify_leaf_on_path(const struct mtls_config *, X509_STORE *,
	    STACK_OF(X509) *path, X509 *leaf, struct verify_out *,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* An X509_STORE holding <cfg>'s anchors (and CRLs). */
X509_STORE *verify_store_new(const struct mtls_config *, struct mtls_error *);
/* The trusted root of <cfg> that <name> is another generation of (same
 * O, same CN short of a rotation's stamp, another name): <name> is then a
 * root rotated out of the bundle, or (*newer) one it has not taken yet.
 * NULL when none. */
X509	*verify_rotated_root(const struct mtls_config *, const X509_NAME *name,
	    int *newer);

/* ---- ocsp.c ---- */
struct ocsp_result {
	int	 status;	/* V_OCSP_CERTSTATUS_* */
	int	 reason;	/* CRL reason when revoked, or -1 */
	int64_t	 this_update, next_update;	/* next_update 0: none */
	int64_t	 revoked_at;
};
/* <leaf>'s issuer: from <chain>, else from <store>; a new reference. */
X509	*ocsp_issuer(X509 *leaf, STACK_OF(X509) *chain, X509_STORE *store);
/* A DER OCSP request for <leaf> (SHA-1 cert id, as RFC 6960 responders
 * expect); *der from OPENSSL_malloc. */
int	 ocsp_request(X509 *leaf, X509 *issuer, uint8_t **der, size_t *len,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* Checks a DER OCSP response for <leaf>: successful, about <leaf>, signed
 * by its issuer or a delegated responder chaining to <store>, current at
 * <now> (REVOCATION_SKEW). 0 with <res>, or -1 with <err>. */
int	 ocsp_check(const uint8_t *der, size_t len, X509 *leaf,
	    STACK_OF(X509) *chain, X509_STORE *store, int64_t now,
	    struct ocsp_result *res, struct mtls_error *) MTLS_MUST_CHECK;
/* 1 when the response (unverified) is about <leaf>. */
int	 ocsp_matches(const uint8_t *der, size_t len, X509 *leaf,
	    STACK_OF(X509) *chain, X509_STORE *store);

/* ---- tls.c ---- */
/* A client's kept session past its timeout or lifetime hint (exposed for
 * test_tls.c). */
int	 tls_session_expired(const SSL_SESSION *, time_t now);
/* The peer's certificate on connection <m> (verified or not: check
 * mtls_peer_verified), NULL when none; borrowed, valid until mtls_free. */
X509	*tls_peer_cert(struct mtls *);

/* ---- certinfo.c: facts about a certificate for inspect and doctor ---- */
struct json_t;
/* A JSON object describing <x> (subject, SANs, validity, key, KU/EKU, ...)
 * as of <now>; NULL on allocation failure. */
struct json_t *certinfo_json(X509 *x, int64_t now);
/* "23h 12m", "2d 4h" for a positive number of seconds. */
void	 human_duration(int64_t secs, char *buf, size_t len);

/* ---- escape.c: names and peer bytes as text or JSON (one rule each) ---- */
#define ESC_SQUOTE	1	/* text: also ' as \x27 */
#define ESC_DQUOTE	2	/* text: also " as \x22 */
#define ESC_SPACE	4	/* text: also the space as \x20 */
#define ESC_KEEP_BS	8	/* text: '\\' as it is: a message whose quoted
				 * names were escaped where it was made */
/* The length (1-4) of the valid UTF-8 sequence at p[0..n), its code point
 * in *cp; 0 when p[0] does not start one (overlong forms, surrogates and
 * anything above U+10FFFF are not valid). */
size_t	 esc_utf8(const unsigned char *p, size_t n, uint32_t *cp);
/* The text rule: at most <max> of the <n> bytes of <data> into <out>, each
 * byte below 0x20, 0x7f, 0x80 and above, '\\' (and those <flags> name) as
 * \xNN, the rest as they are; cut between escapes with "..." when <max> or
 * <cap> (NUL included) is reached. Returns the length; out is always
 * terminated (cap > 0). */
size_t	 esc_text(char *out, size_t cap, const void *data, size_t n,
	    size_t max, unsigned flags);
/* esc_text of all of <data> into a new string (free()); NULL: no memory. */
char	*esc_text_dup(const void *data, size_t n, unsigned flags);
/* The JSON rule: a JSON string of the <n> bytes of <data>, valid UTF-8
 * kept, NUL and each byte outside a valid UTF-8 sequence as the text
 * \xNN. NULL only when out of memory, never for the bytes. Use it (or
 * esc_jstr) for any string not a constant of ours: json_string() returns
 * NULL for invalid UTF-8, and json_object_set_new() then drops the member
 * without a word. */
struct json_t *esc_json(const void *data, size_t n);
/* esc_json of a C string; json_null() for NULL. */
struct json_t *esc_jstr(const char *s);
/* Appends the JSON string literal of p[0..n) to buf[off..cap), ASCII only
 * (as json_dumps with JSON_ENSURE_ASCII, and the JSON rule's \xNN for bytes
 * that are not UTF-8), its content at most <max> bytes: cut between
 * escapes with "..." inside the quotes, so the literal is always whole.
 * Returns the new offset; writes nothing when fewer than 5 bytes are left
 * (callers size buffers so that never happens). */
size_t	 esc_json_put(char *buf, size_t cap, size_t off, const void *data,
	    size_t n, size_t max);
/* A deep copy of <v> with every string value under the text rule, a
 * backslash kept (ESC_KEEP_BS): what a text rendering of a JSON report
 * (cert inspect, doctor) prints. Its strings are already the JSON rule's,
 * where the text \xNN stands for a byte that is not UTF-8; the byte itself
 * never reaches the terminal. NULL: no memory. */
struct json_t *esc_text_tree(struct json_t *v);

/* ---- log.c ---- */
/* 1 = JSON lines, 0 = text; default: JSON unless stderr is a terminal. */
void	 log_set_format(int json);
/* No log output at all (fuzz targets). */
void	 log_set_off(int off);
/* Hot paths (the gateway's access log): one JSON line whose members after
 * ts, level and event are given already encoded ("\"k\":v,..."). -1 when
 * the format is text: the caller uses log_emit() then. */
int	 log_json_line(const char *level, const char *event,
	    const char *members, size_t n);
/* Writes one line: ts, level, event, then <fields> (borrowed; may be
 * NULL). */
void	 log_emit(const char *level, const char *event, struct json_t *fields);

/* ---- conf.c: the INI-style file format of ca.conf ---- */
/* Calls <fn> for each "key = value" with its [section] ("" before any,
 * 'role "x"' style sections are passed as "role x"). Stops at the first
 * non-zero return. -1 with "path:line: problem" on a syntax error. */
typedef int (*conf_cb)(void *arg, const char *section, const char *key,
    const char *value, int line, struct mtls_error *);
int	 conf_parse(const char *text, size_t len, const char *name,
	    conf_cb, void *arg, struct mtls_error *) MTLS_MUST_CHECK;
/* The one way a number is read from a query, a config file or a command
 * line: "0" or a nonzero digit then at most 17 more digits, from <lo> to
 * <hi>. No sign, blank, leading zero (0500: octal to some readers, 500 to
 * others), hex or suffix. 0 and *out set, or -1 and *out untouched. */
int	 conf_number(const char *s, int64_t lo, int64_t hi, int64_t *out)
	    MTLS_MUST_CHECK;

#endif /* MTLS_INTERNAL_H */
