/*
 * mtls doctor: trace a handshake and explain in plain words what is wrong.
 *
 * Everything the doctor learns goes into one JSON report (the --json
 * output); the text output is rendered from that same report, so both say
 * the same thing. A report holds "findings": {severity, code, check, text,
 * fix}; severity "error" makes the command exit 1, "warn" and "info" do
 * not. <code> is a taxonomy name (DESIGN.md) when one applies.
 */
#ifndef MTLS_DOCTOR_H
#define MTLS_DOCTOR_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "internal.h"

/* ---- analyze.c: a chain, offline ---- */

/* Appends a finding to <findings>. <code> (taxonomy name) may be NULL. */
void	 finding_add(json_t *findings, const char *severity, const char *code,
	    const char *check, const char *fix, const char *fmt, ...)
	    MTLS_PRINTF(6, 7);
/* The first error finding's code ("ok" when none is an error; "problem"
 * for an error without a taxonomy code). */
const char *findings_result(json_t *findings);

struct doctor_chain_opts {
	const char	*ca;		/* trust bundle path, or NULL */
	int		 purpose;	/* MTLS_PURPOSE_* */
	const char	*expect;	/* identity rule, or NULL */
	EVP_PKEY	*key;		/* the private key, or NULL */
	int64_t		 now;
	const char	*who;		/* "the server's", "your", ... */
};

/*
 * Examines <chain> (leaf first, as sent or as in a file): key match, order,
 * duplicates, expiry and the 7/3/1-day warnings, a certificate outliving
 * its issuer, key and signature strength, KU/EKU for the purpose, X509-SVID
 * shape, and, with a bundle, a full verification with mtls's policy (the
 * taxonomy code, the missing intermediate or the root that would be
 * needed). Returns an array of certificate facts (certinfo plus "problems")
 * and appends to <findings>; NULL on allocation failure.
 */
json_t	*doctor_chain(STACK_OF(X509) *chain, const struct doctor_chain_opts *,
	    json_t *findings);

/* `doctor files`: the report on a certificate file (and key, bundle).
 * Unreadable input sets *usage and the report's "error". */
json_t	*doctor_files(const char *cert, const char *key, const char *ca,
	    int purpose, const char *expect, const char *pass_file, int *usage);

/* ---- render.c ---- */

/* Prints <report> for humans: 80 columns, colour when <color>; <live>:
 * the heading and the trace were already printed as they happened. */
void	 doctor_print(FILE *, json_t *report, int color, int live);

/* ---- connect.c (and the files connect.h lists) ---- */
/* trace.c: number of certificates in a TLS Certificate handshake message <p>
 * (4-byte header included; TLS 1.3 layout when <tls13>); -1 when it does
 * not parse. Hand-written because OpenSSL's msg callback hands us the raw
 * message; a server controls every byte (fuzz/fuzz_certmsg.c). */
int	 doctor_cert_msg_count(const unsigned char *p, size_t len, int tls13);
/* Splits "host:port" or "[v6]:port"; -1 when it is neither. */
int	 doctor_split_hostport(const char *, char *host, size_t hl,
	    char *port, size_t pl);
struct doctor_connect_opts {
	const char	*target;	/* HOST:PORT */
	const char	*cert, *key, *ca, *servername, *expect;
	const char	*min_tls, *max_tls;	/* "1.2", "1.3" or NULL */
	const char	*groups, *sigalgs;	/* OpenSSL lists, or NULL */
	int		 timeout_ms;
	int		 no_http;	/* no GET / after the handshake */
	FILE		*live;		/* trace lines as they happen, or NULL */
};
/* Runs the handshake, returns the report (NULL: out of memory). A usage
 * problem (a bad target or --min-tls, an unreadable --cert or --ca) sets
 * *usage and the report's "error"; nothing is sent then. */
json_t	*doctor_connect(const struct doctor_connect_opts *, int *usage);

/* ---- serve.c ---- */
struct doctor_serve_opts {
	const char	*listen, *ca, *cert, *key;
	int		 max_conns;	/* open in all (4096) */
	int		 max_per_ip;	/* per client address (64; 0: none) */
	int64_t		 first_byte_ms;	/* accept to the first byte (5 s) */
	int64_t		 request_ms;	/* accept to the request head (10 s) */
};
/* Runs the diagnostic server until SIGTERM/SIGINT; 0, or 2 with a message
 * on stderr. */
int	 doctor_serve(const struct doctor_serve_opts *);

#endif
