/*
 * mtls doctor connect: facts of a handshake for the report, what was
 * negotiated and what the server asked of our certificate (the CA names
 * and signature algorithms of its CertificateRequest).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

static json_t *
name_list(const STACK_OF(X509_NAME) *names)
{
	json_t *a = json_array();
	char buf[300];
	int i;

	for (i = 0; names && i < sk_X509_NAME_num(names); i++) {
		name_oneline(sk_X509_NAME_value(names, i), buf, sizeof(buf));
		json_array_append_new(a, esc_jstr(buf));
	}
	return a;
}

/* Whether any name the server listed is an issuer in our chain (or the
 * subject of one of its CA certificates). */
static int
chain_matches_names(STACK_OF(X509) *chain, const STACK_OF(X509_NAME) *names)
{
	int i, j;

	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		for (j = 0; j < sk_X509_NAME_num(names); j++) {
			const X509_NAME *n = sk_X509_NAME_value(names, j);

			if (X509_NAME_cmp(X509_get_issuer_name(x), n) == 0 ||
			    (i > 0 && X509_NAME_cmp(X509_get_subject_name(x),
			    n) == 0))
				return 1;
		}
	}
	return 0;
}

static json_t *
sigalg_list(SSL *ssl)
{
	json_t *a = json_array();
	int i, n, sign, hash;
	unsigned char rsig, rhash;
	const char *nm;
	char buf[64];

	n = SSL_get_sigalgs(ssl, 0, NULL, NULL, NULL, NULL, NULL);
	for (i = 0; i < n; i++) {
		SSL_get_sigalgs(ssl, i, &sign, &hash, NULL, &rsig, &rhash);
		if ((nm = trace_scheme_name((unsigned int)rhash << 8 |
		    rsig)) == NULL) {
			snprintf(buf, sizeof(buf), "0x%02x%02x", rhash, rsig);
			nm = buf;
		}
		json_array_append_new(a, esc_jstr(nm));
	}
	return a;
}

void
facts_client_cert(struct attempt *a, STACK_OF(X509) *chain, int completed,
    json_t *report, json_t *findings)
{
	json_t *cc = json_object();
	const STACK_OF(X509_NAME) *names = SSL_get0_peer_CA_list(a->ssl);
	char label[300];
	int match = -1;

	json_object_set_new(report, "client_cert", cc);
	json_object_set_new(cc, "requested", json_boolean(a->saw_cr));
	if (!a->saw_cr) {
		/* with --cert the question is mTLS: a server that never asks
		 * for a certificate fails it (our certificate went nowhere) */
		if (completed && chain)
			finding_add(findings, "error", "no_client_cert",
			    "client certificate", "configure the server to "
			    "request and verify client certificates (nginx: "
			    "ssl_verify_client on; Go: ClientAuth "
			    "tls.RequireAndVerifyClientCert; Java: "
			    "setNeedClientAuth(true); Node: requestCert and "
			    "rejectUnauthorized; gnutls-serv: "
			    "--require-client-cert; mtls proxy does by "
			    "default)", "mutual TLS is not happening: the server "
			    "never requested a client certificate, so ours was "
			    "not sent and the server does not know who we are");
		else if (completed)
			finding_add(findings, "info", NULL, "client certificate",
			    NULL, "the server does not request a client "
			    "certificate: this is TLS, not mutual TLS");
		return;
	}
	json_object_set_new(cc, "ca_names", name_list(names));
	json_object_set_new(cc, "signature_algorithms", sigalg_list(a->ssl));
	json_object_set_new(cc, "sent", json_boolean(a->sent_cert &&
	    !a->sent_empty_cert));
	if (chain) {
		cert_label(sk_X509_value(chain, 0), label, sizeof(label));
		json_object_set_new(cc, "ours", esc_jstr(label));
		if (names && sk_X509_NAME_num(names) > 0) {
			match = chain_matches_names(chain, names);
			json_object_set_new(cc, "chains_to_named_ca",
			    json_boolean(match));
			if (!match)
				finding_add(findings, "warn", NULL,
				    "client certificate", "use a certificate "
				    "issued under one of the CAs the server "
				    "names", "our certificate %s is not issued "
				    "by any CA the server named in its "
				    "CertificateRequest", label);
		}
	}
	if (!completed || !a->sent_cert || a->sent_empty_cert)
		return;
	if (a->alert_in_after_cert >= 0 || a->eof)
		json_object_set_new(cc, "accepted", json_false());
	else
		json_object_set_new(cc, "accepted", json_true());
}

void
facts_tls(SSL *ssl, json_t *report)
{
	json_t *t = json_object();
	int nid, hash;
	char buf[80];

	json_object_set_new(report, "tls", t);
	json_object_set_new(t, "version", esc_jstr(SSL_get_version(ssl)));
	json_object_set_new(t, "cipher", esc_jstr(SSL_get_cipher_name(ssl)));
	nid = SSL_get_negotiated_group(ssl);
	if (nid != NID_undef)
		json_object_set_new(t, "group", esc_jstr(trace_group_name(ssl,
		    nid)));
	if (SSL_get_peer_signature_type_nid(ssl, &nid) == 1 &&
	    SSL_get_peer_signature_nid(ssl, &hash) == 1) {
		snprintf(buf, sizeof(buf), "%s+%s", trace_sig_type_name(nid),
		    hash == NID_undef ? "intrinsic" : OBJ_nid2sn(hash));
		json_object_set_new(t, "signature", esc_jstr(buf));
	}
}
