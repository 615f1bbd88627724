/*
 * Private to `mtls doctor connect` (src/svc/doctor only): what one traced
 * handshake saw, and the files that share it.
 *
 *   connect.c  the flow: flags to settings, one attempt, then the report
 *   attempt.c  one handshake: TCP connect, TLS, the server's verdict on our
 *              certificate, GET / (struct attempt)
 *   trace.c    the message, alert and BIO callbacks and the name tables
 *              (alerts, handshake messages, versions, groups, signatures)
 *   probe.c    re-handshakes with one dimension widened, when the server
 *              refused our ClientHello
 *   explain.c  a failed or refused handshake -> one taxonomy code, its
 *              headline and its fix
 *   facts.c    what the handshake negotiated and what the server asked of
 *              our certificate, as report fields
 */
#ifndef MTLS_DOCTOR_CONNECT_H
#define MTLS_DOCTOR_CONNECT_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/net.h"

/* One set of client settings; probes widen one field of the user's. */
struct variant {
	int		 min_v, max_v;	/* TLS1_x_VERSION; 0 = default */
	const char	*groups, *sigalgs, *ciphers, *suites;
	int		 seclevel;	/* -1: OpenSSL's default */
};

/* What one attempt saw. */
struct attempt {
	int64_t		 t0_us;
	int64_t		 deadline_us;	/* --timeout: connect, handshake, reads */
	json_t		*trace;		/* NULL for probes */
	FILE		*live;		/* print trace lines as they happen */
	int		 color;
	int		 saw_server_hello, saw_cr, saw_nst, sent_cert;
	int		 sent_empty_cert, got_server_cert;
	int		 got_data;	/* application data from the server */
	int		 alert_in, alert_in_after_cert;	/* -1: none */
	int		 alert_out;
	unsigned char	 first[64];	/* the first bytes the server sent */
	size_t		 nfirst;
	int		 connect_errno, timed_out, eof;
	int		 http;		/* send GET / after the handshake */
	int		 http_status;	/* its answer's status, 0 none */
	char		 http_resp[4096];
	char		 gai_err[200];
	unsigned long	 ossl_reason;
	long		 chain_limit;	/* >0: the server's chain was over it */
	char		 ossl_text[200];
	SSL		*ssl;
	int		 fd;
};

/* ---- attempt.c ---- */

/* A client context for <v>, presenting <mychain> and <mykey> when both are
 * given (borrowed; the context takes its own references). OpenSSL's
 * verification is off: the doctor verifies the server's chain itself.
 * NULL when OpenSSL refuses a setting or the key. */
SSL_CTX	*attempt_ctx_new(const struct variant *v, STACK_OF(X509) *mychain,
	    EVP_PKEY *mykey);
/*
 * One attempt: TCP connect to <host>:<port>, the handshake with <ctx>
 * (SNI <sni> when not NULL) until done, failure or a->deadline_us, then
 * (traced attempts) the server's verdict on our certificate and GET /
 * when a->http. Fills <a>; a->ssl and a->fd stay open for the caller to
 * read facts from until attempt_free(). Returns 1 when the handshake
 * completed.
 */
int	 attempt_run(struct attempt *a, SSL_CTX *ctx, const char *host,
	    const char *port, const char *sni);
/* Closes a->ssl and a->fd; <a> may be zeroed with fd -1. */
void	 attempt_free(struct attempt *a);

/* ---- trace.c ---- */

/* SSL_set_msg_callback callback, <arg> the struct attempt: records every
 * handshake message and alert in a->trace (printed to a->live as it
 * happens) and the flags attempt_run and explain.c decide on. */
void	 trace_msg_cb(int write_p, int version, int ct, const void *buf,
	    size_t len, SSL *ssl, void *arg);
/* BIO callback on the read BIO (callback arg: the struct attempt): keeps
 * the first bytes the server sent in a->first. */
long	 trace_bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi,
	    long argl, int ret, size_t *processed);
/* Names, static strings (never NULL): RFC 8446 / 5246 alert descriptions,
 * "TLS 1.2", groups as people configure them ("P-256"), signature types
 * ("ECDSA"), IANA SignatureScheme names (NULL when not in the table). */
const char *trace_alert_name(int desc);
const char *trace_version_name(int version);
const char *trace_group_name(SSL *ssl, int nid);
const char *trace_sig_type_name(int nid);
const char *trace_scheme_name(unsigned int codepoint);

/* ---- probe.c ---- */

/*
 * The server refused our ClientHello made from <base>: re-handshakes each
 * widening one dimension (versions when <version_alert> or the user set
 * one, then groups, signature algorithms, ciphers), all within
 * <deadline_us>, and appends the one finding that names what the two sides
 * do not share.
 */
void	 probe_explain(const struct variant *base, const char *host,
	    const char *port, const char *sni, int64_t deadline_us,
	    STACK_OF(X509) *chain, EVP_PKEY *key, int version_alert,
	    json_t *findings);

/* ---- explain.c ---- */

/* The handshake did not complete: appends one error finding (taxonomy
 * code, headline, fix) to <findings>, running probes when the server
 * refused the ClientHello itself. */
void	 explain_failure(struct attempt *a, const struct variant *v,
	    int have_cert, const char *host, const char *port, const char *sni,
	    int timeout_ms, STACK_OF(X509) *chain, EVP_PKEY *key,
	    json_t *findings);
/* TLS 1.3: the server refused our certificate after the handshake
 * completed on our side (an alert or a close). */
void	 explain_refusal(struct attempt *a, json_t *findings);
/* The GET / answer: report["http"], and nginx's certificate refusals in
 * HTTP 400 as findings. */
void	 explain_http(struct attempt *a, json_t *report, json_t *findings);
/* A refusal of our certificate followed (from index <from>) by an error
 * in our own chain: that error moves first and is the result. */
void	 explain_ours_first(json_t *findings, size_t from);

/* ---- facts.c ---- */

/* report["tls"]: version, cipher, group, the server's signature. */
void	 facts_tls(SSL *ssl, json_t *report);
/* report["client_cert"]: requested, the CA names and signature algorithms
 * the server asked for, whether ours chains to a named CA, sent, accepted;
 * with <chain> and no request, the no_client_cert finding. */
void	 facts_client_cert(struct attempt *a, STACK_OF(X509) *chain,
	    int completed, json_t *report, json_t *findings);

#endif
