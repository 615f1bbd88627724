/*
 * libmtls: mutual TLS identities, verification policy and failure taxonomy
 * on OpenSSL 3.
 *
 * Two opaque objects, after LibreSSL's libtls:
 *   struct mtls_config  what to present, whom to trust, whom to allow.
 *                       Setters copy their input. Refcounted; frozen once a
 *                       context has taken it with mtls_configure().
 *   struct mtls         a context that verifies peers with a config (and,
 *                       with the proxy, a client, a server or a connection).
 *
 * Every fallible function returns 0 (or a pointer) on success and -1 (or
 * NULL) on failure; the reason is kept on the object it was called on:
 * mtls_config_error() / mtls_error() give one line "input: problem",
 * mtls_*_error_code() the kind of failure (MTLS_ERR_*), and for a rejected
 * certificate mtls_fail_code() gives one MTLS_FAIL_* taxonomy code.
 * The library never exits, aborts or prints.
 *
 * Threads. A config is safe to share once it is frozen (by the first
 * mtls_configure() that takes it): any number of contexts, in any threads,
 * may be configured from it and use it at once, and each reference may be
 * dropped (mtls_config_free) from any thread. Setting it and reading its
 * error are for the one thread that builds it, before that (a setter on a
 * frozen config fails, and writes the config's error). A context
 * (struct mtls: a verifier, a server, a client or a connection) is used by
 * one thread at a time: calls on one context, reading its error or peer
 * included, must not overlap; it may move between threads. Connections
 * made from one server or client context may be used in different threads
 * at once, and that context may be reconfigured meanwhile (each connection
 * keeps the TLS state it started with), provided the server or client
 * context itself is only ever called from one thread at a time. Functions
 * of no object (mtls_rule_match, mtls_fail_name, ...) are thread-safe.
 */
#ifndef MTLS_H
#define MTLS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden; this header's symbols are
 * the exported ones (and libmtls.sym lists them). */
#pragma GCC visibility push(default)

#define MTLS_VERSION	"0.1.0"

/* The kind of failure: what went wrong with the call itself. */
enum mtls_err {
	MTLS_ERR_NONE = 0,
	MTLS_ERR_IO,		/* a file or socket could not be read/written */
	MTLS_ERR_PARSE,		/* input is malformed (PEM, DER, ID, duration) */
	MTLS_ERR_NOMEM,
	MTLS_ERR_ARG,		/* the caller passed something invalid */
	MTLS_ERR_CRYPTO,	/* OpenSSL failed (key generation, signing) */
	MTLS_ERR_VERIFY,	/* a certificate was rejected: see mtls_fail_code */
	MTLS_ERR_STATE		/* e.g. setting a frozen config */
};

/*
 * The failure taxonomy (DESIGN.md): one stable code per rejected or failed
 * handshake or verification. mtls_fail_name() gives the printed name
 * ("cert_expired"), mtls_fail_hint() a one-line fix.
 */
enum mtls_fail {
	MTLS_FAIL_NONE = 0,
	MTLS_FAIL_NO_CLIENT_CERT,
	MTLS_FAIL_CHAIN_INCOMPLETE,
	MTLS_FAIL_UNKNOWN_CA,
	MTLS_FAIL_CERT_EXPIRED,
	MTLS_FAIL_CERT_NOT_YET_VALID,
	MTLS_FAIL_IDENTITY_MISMATCH,
	MTLS_FAIL_NOT_AUTHORIZED,
	MTLS_FAIL_REVOKED,
	MTLS_FAIL_BAD_KEY_USAGE,
	MTLS_FAIL_INVALID_SVID,
	MTLS_FAIL_NAME_CONSTRAINTS,
	MTLS_FAIL_WEAK_KEY_OR_SIGNATURE,
	MTLS_FAIL_NO_SHARED_ALGORITHM,
	MTLS_FAIL_PROTOCOL_VERSION,
	MTLS_FAIL_PEER_REJECTED_OUR_CERT,
	MTLS_FAIL_NOT_TLS,
	MTLS_FAIL_HANDSHAKE_TIMEOUT,
	MTLS_FAIL_CONNECT_FAILED,
	MTLS_FAIL_CHAIN_TOO_LARGE,	/* the peer's Certificate message is over
					 * the limit (OpenSSL: 100 KiB) */
	MTLS_FAIL_TRUST_DOMAIN_MISMATCH	/* a federated trust domain's root
					 * vouches for an identity outside that
					 * trust domain */
	/* New codes come at the end; mtls_fail_name() says "unknown" for a
	 * code this version of the library does not know. */
};

/* What the peer's certificate must be good for. */
enum mtls_purpose {
	MTLS_PURPOSE_ANY = 0,	/* no extKeyUsage check */
	MTLS_PURPOSE_SERVER,	/* serverAuth */
	MTLS_PURPOSE_CLIENT	/* clientAuth */
};

struct mtls_config;
struct mtls;

/* "cert_expired" for MTLS_FAIL_CERT_EXPIRED; "ok" for MTLS_FAIL_NONE;
 * "unknown" outside the enum. Static strings. */
const char *mtls_fail_name(int fail);
/* One-line fix for a code; "" for MTLS_FAIL_NONE. Static strings. */
const char *mtls_fail_hint(int fail);
/* The code whose name is <name>, or -1. */
int	 mtls_fail_from_name(const char *name);

/*
 * Identities. A SPIFFE ID is spiffe://<trust-domain>/<path>: lowercase
 * trust domain of [a-z0-9.-_], no port/userinfo/query/fragment, path
 * segments of [A-Za-z0-9.-_] with no empty, "." or ".." segment, at most
 * 2048 bytes. Returns 0 when <id> is valid; otherwise -1 and, when <why>
 * is not NULL, a reason of at most <why_len> bytes (NUL-terminated).
 */
int	 mtls_spiffe_id_check(const char *id, char *why, size_t why_len);

/*
 * Checks an allow/expect rule: an exact SPIFFE ID, a path prefix
 * "spiffe://td/path/" followed by "*", a whole trust domain "spiffe://td/"
 * followed by "*", "dns:NAME", "dns:" "*.suffix", "ip:ADDR" or "cn:NAME".
 * Same return convention as mtls_spiffe_id_check().
 */
int	 mtls_rule_check(const char *rule, char *why, size_t why_len);

/*
 * Whether identity <id> ("spiffe://...", "dns:...", "ip:...", "cn:...")
 * matches <rule>. 1 yes, 0 no (including an invalid rule).
 */
int	 mtls_rule_match(const char *rule, const char *id);

/*
 * Parses a Go-style duration ("90s", "15m", "24h", "365d", "1h30m") into
 * seconds. Returns 0, or -1 when the text is not a positive duration that
 * fits in 64 bits.
 */
int	 mtls_duration_parse(const char *text, int64_t *seconds);

/* ---- configuration ---- */

/* A new empty config with the DESIGN.md defaults, or NULL (out of memory). */
struct mtls_config *mtls_config_new(void);
/* Drops one reference; frees at zero. NULL is ignored. Key material is
 * cleansed before it is freed. */
void	 mtls_config_free(struct mtls_config *);
/* The last error on <cfg>, "" when none. Valid until the next call on it. */
const char *mtls_config_error(struct mtls_config *);
int	 mtls_config_error_code(struct mtls_config *);

/* Passphrase for an encrypted private key; copied, cleansed on free. */
int	 mtls_config_set_key_passphrase(struct mtls_config *,
	    const char *pass, size_t pass_len);
/* Loads leaf + intermediates from <cert> and the key from <key>; checks
 * they match; copies both. -1 names the file and the problem. */
int	 mtls_config_set_identity_file(struct mtls_config *, const char *cert,
	    const char *key);
/* mtls_config_set_identity_file() from memory: <cert> holds the leaf then
 * its intermediates (PEM, or one DER certificate), <key> the private key
 * (PEM or DER, encrypted with the passphrase if one is set). Both are
 * copied (the caller cleanses its key buffer); each at most 8 MiB. */
int	 mtls_config_set_identity_mem(struct mtls_config *, const uint8_t *cert,
	    size_t cert_len, const uint8_t *key, size_t key_len);
/* Trust anchors (one or more roots, PEM). Replaces any earlier bundle. */
int	 mtls_config_set_trust_file(struct mtls_config *, const char *path);
/* mtls_config_set_trust_file() from memory (PEM, or one DER; copied). */
int	 mtls_config_set_trust_mem(struct mtls_config *, const uint8_t *buf,
	    size_t len);
/*
 * The anchors of federated trust domain <td> (e.g. "partner.com"), from a
 * PEM bundle or a SPIFFE trust bundle (JSON): added to the trust bundle,
 * and kept by a later mtls_config_set_trust_*(). A chain through one of
 * them is accepted only for a leaf whose SPIFFE IDs (at least one) are all
 * in <td> (SPIFFE federation: a partner's root never vouches for our IDs,
 * whatever its name constraints), else MTLS_FAIL_TRUST_DOMAIN_MISMATCH;
 * the rules then see the leaf's SPIFFE ID alone (not its DNS names). A
 * root given for two trust domains is refused. Roots of our own domain go
 * to mtls_config_set_trust_*() and vouch for any name, as before.
 */
int	 mtls_config_add_trust_domain_file(struct mtls_config *,
	    const char *td, const char *path);
/* mtls_config_add_trust_domain_file() from memory (copied). */
int	 mtls_config_add_trust_domain_mem(struct mtls_config *, const char *td,
	    const uint8_t *buf, size_t len);
/* Extra untrusted intermediates used to build chains (PEM). */
int	 mtls_config_add_untrusted_file(struct mtls_config *, const char *path);
/* mtls_config_add_untrusted_file() from memory (copied). */
int	 mtls_config_add_untrusted_mem(struct mtls_config *, const uint8_t *buf,
	    size_t len);
/* A CRL file (PEM, several, or DER). With any CRL loaded the leaf's issuer
 * must have one (fail closed); intermediates are checked against CRLs that
 * are present. Set the trust bundle (and untrusted intermediates, identity)
 * first: each CRL whose issuer name is a CA the config knows (an anchor, or
 * an intermediate or own chain certificate that chains to one) must be
 * signed by that CA's key, else -1 with MTLS_ERR_VERIFY and nothing is
 * added. A CRL from an issuer not known yet is added and its signature is
 * checked by verification when it is used; so are its thisUpdate and
 * nextUpdate (an expired CRL refuses its issuer's certificates as
 * revoked: "revocation status unknown"). No CRL number check is done here:
 * a program replacing CRLs over time (like mtls proxy) compares them. */
int	 mtls_config_add_crl_file(struct mtls_config *, const char *path);
/* mtls_config_add_crl_file() for CRL bytes in memory (PEM or DER), e.g.
 * fetched from a CRL distribution point; <name> names them in errors; the
 * same checks. */
int	 mtls_config_add_crl_mem(struct mtls_config *, const uint8_t *buf,
	    size_t len, const char *name);
/* Peers matching any allow rule are authorized (else not_authorized). */
int	 mtls_config_add_allow(struct mtls_config *, const char *rule);
/* Explicitly authorize any peer whose chain verifies. */
int	 mtls_config_set_allow_any(struct mtls_config *);
/* Server only: ask for a client certificate without requiring one. A
 * client that sends none, or one that does not verify or is not
 * authorized, still completes the handshake; mtls_peer_verified() then
 * says 0 and mtls_fail_code() why (0 when no certificate was sent). For
 * endpoints that serve anonymous and authenticated clients alike (an
 * enrollment API, public routes beside mTLS ones). */
int	 mtls_config_set_peer_optional(struct mtls_config *);
/* Server: staple this DER OCSP response (about our own certificate) to
 * handshakes whose client asks for status. mtls_configure() refuses a
 * response about another certificate; replace it by configuring again
 * with a fresh one before its nextUpdate (sessions survive). */
int	 mtls_config_set_ocsp_staple(struct mtls_config *, const uint8_t *der,
	    size_t len);
/* Client: ask for OCSP stapling and refuse (MTLS_FAIL_REVOKED) a server
 * whose stapled response is missing, not signed by its issuer, stale,
 * revoked or unknown. Sessions are not resumed: each handshake sees a
 * current response. */
int	 mtls_config_set_require_staple(struct mtls_config *);
/* ALPN, comma-separated in order of preference ("http/1.1"). A client
 * offers them; a server picks its first one the client offers, and
 * negotiates no protocol (rather than failing) when none is. */
int	 mtls_config_set_alpn(struct mtls_config *, const char *protos);
/* Every expect rule must match one of the peer's identities (else
 * identity_mismatch); used for a server's name and SPIFFE ID. */
int	 mtls_config_add_expect(struct mtls_config *, const char *rule);
int	 mtls_config_set_purpose(struct mtls_config *, enum mtls_purpose);
/* Verify at this UNIX time instead of now (0 = now). */
int	 mtls_config_set_verify_time(struct mtls_config *, int64_t unix_time);
/* Session ticket keys shared across processes (replicas): 80 random bytes
 * (or 160: current, then previous), nginx's format. Without it each config
 * has its own random key. */
int	 mtls_config_set_ticket_key_file(struct mtls_config *, const char *path);
/* Lowest TLS version: "1.3" (default) or "1.2" (then ECDHE + AEAD suites
 * only). */
int	 mtls_config_set_min_tls(struct mtls_config *, const char *version);

/* ---- contexts ---- */

/* Non-blocking results of mtls_handshake/read/write/close: wait until the
 * socket is readable (WANT_READ) or writable (WANT_WRITE), then call
 * again. */
#define MTLS_WANT_READ	(-2)
#define MTLS_WANT_WRITE	(-3)

/* A verifying context (mtls_verify_*). NULL when out of memory. */
struct mtls *mtls_new(void);
/* A server context: mtls_configure() it, then mtls_accept_socket(). */
struct mtls *mtls_server(void);
/* A client context: mtls_configure() it, then mtls_connect_socket(). */
struct mtls *mtls_client(void);
void	 mtls_free(struct mtls *);
/*
 * Takes a reference to <cfg> and freezes it. For a server or client it
 * builds the TLS context (identity, trust, TLS policy of DESIGN.md); called
 * again on a live context it swaps in the new one for new connections
 * only, and on failure the old one keeps serving.
 */
int	 mtls_configure(struct mtls *, struct mtls_config *);
const char *mtls_error(struct mtls *);
int	 mtls_error_code(struct mtls *);

/*
 * Verifies the peer chain in <pem> (leaf first, then intermediates) against
 * the configured trust, CRLs, purpose, expect and allow rules, X509-SVID
 * and weak-algorithm policy. Returns 0 when valid; -1 with
 * mtls_fail_code() set and a reason naming the certificate (subject,
 * serial) in mtls_error(). A parse failure returns -1 with
 * mtls_error_code() == MTLS_ERR_PARSE and no fail code.
 */
int	 mtls_verify_pem(struct mtls *, const uint8_t *pem, size_t pem_len);
/* mtls_verify_pem() on the contents of <path>. */
int	 mtls_verify_file(struct mtls *, const char *path);
/* MTLS_FAIL_* of the last verification, 0 when it passed. */
int	 mtls_fail_code(struct mtls *);
/* The peer's primary identity after a verification that got as far as
 * parsing the leaf: its SPIFFE ID, else "dns:...", "ip:...", "cn:...".
 * NULL when none. Valid until the next verification or mtls_free(). */
const char *mtls_peer_id(struct mtls *);
/* The peer leaf's serial in uppercase hex, or NULL. Same lifetime. */
const char *mtls_peer_serial(struct mtls *);
/*
 * Every identity of the peer's leaf, in the order mtls_peer_id() picks
 * from: URI SANs as they are (a SPIFFE ID is one), then "dns:...",
 * "ip:..." (canonical text), "cn:...". Like mtls_peer_id() they are what
 * the leaf claims: trust them after a verification or handshake that
 * succeeded (mtls_peer_verified() on a connection). mtls_peer_identity()
 * gives the i-th (0-based), NULL past the end; same lifetime.
 */
size_t	 mtls_peer_identity_count(struct mtls *);
const char *mtls_peer_identity(struct mtls *, size_t i);
/*
 * The certificates the peer presented, leaf first, as it sent them: the
 * input of the last mtls_verify_pem/file() that parsed, or a connection's
 * (on a resumed session only the leaf is kept). Same caveat as the
 * identities. mtls_peer_chain_count() says how many (0: none);
 * mtls_peer_chain_der() gives the DER of the i-th and its length in *len,
 * mtls_peer_chain_pem() all of them as PEM (NUL-terminated; *len excludes
 * the NUL); NULL when there is none or out of memory. The bytes are owned
 * by the context: valid until the next verification or handshake step on
 * it, or mtls_free().
 */
size_t	 mtls_peer_chain_count(struct mtls *);
const uint8_t *mtls_peer_chain_der(struct mtls *, size_t i, size_t *len);
const uint8_t *mtls_peer_chain_pem(struct mtls *, size_t *len);
/* The peer leaf's notBefore and notAfter as UNIX seconds: 0, or -1 when
 * there is no peer certificate. */
int	 mtls_peer_validity(struct mtls *, int64_t *not_before,
	    int64_t *not_after);

/* ---- connections ---- */

/*
 * Starts a server-side connection on the connected non-blocking socket
 * <fd> (not owned: the caller closes it after mtls_free()). *conn is a new
 * context to mtls_handshake(), read, write, close and free.
 */
int	 mtls_accept_socket(struct mtls *server, struct mtls **conn, int fd);
/*
 * Starts a client connection on <fd> to <servername> (SNI; also the
 * expected identity dns:/ip: when the config has no expect rule; may be
 * NULL). Same ownership as mtls_accept_socket().
 */
int	 mtls_connect_socket(struct mtls *client, struct mtls **conn, int fd,
	    const char *servername);
/* 0 when the handshake is complete and the peer verified and authorized;
 * MTLS_WANT_READ/WRITE; -1 with mtls_fail_code() and mtls_error(). */
int	 mtls_handshake(struct mtls *);
/* Bytes read (> 0), 0 at the peer's end of stream, MTLS_WANT_*, or -1. */
long	 mtls_read(struct mtls *, void *buf, size_t len);
/* 1 when the connection holds bytes it already took from the socket
 * (decrypted or not), else 0. Reads are read-ahead (one read(2) takes
 * what the socket buffer has), so after mtls_read() the socket may be idle
 * while data waits here: call mtls_read() again until this says 0 or it
 * returns MTLS_WANT_READ, before waiting for the socket to be readable. */
int	 mtls_pending(struct mtls *);
/* Bytes written (> 0, maybe fewer than len), MTLS_WANT_*, or -1. */
long	 mtls_write(struct mtls *, const void *buf, size_t len);
/* The negotiated ALPN protocol, or "" (static or owned by the conn). */
const char *mtls_conn_alpn(struct mtls *);
/* Sends close_notify: 0, MTLS_WANT_*, or -1. Does not close the fd. */
int	 mtls_close(struct mtls *);
/* Negotiated parameters of a connection after its handshake: static or
 * valid until mtls_free(); "" before the handshake. */
const char *mtls_conn_version(struct mtls *);
const char *mtls_conn_cipher(struct mtls *);
const char *mtls_conn_group(struct mtls *);
/* 1 when the session was resumed (and re-authorized), else 0. */
int	 mtls_conn_resumed(struct mtls *);
/* 1 when the peer presented a certificate that verified and was
 * authorized (always so after a successful handshake, unless the config
 * is peer-optional); else 0. */
int	 mtls_peer_verified(struct mtls *);
/* Bytes read from and written to the socket so far, TLS records included
 * (before or after a failed handshake too); 0 for a context. A server whose
 * peer hung up with *in == 0 saw a port probe or health check, not a
 * handshake. */
void	 mtls_conn_wire_bytes(struct mtls *, uint64_t *in, uint64_t *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* MTLS_H */
