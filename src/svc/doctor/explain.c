/*
 * mtls doctor connect: explanations. What the attempt saw (an alert, a
 * close, bytes that are not TLS, an HTTP 400) becomes one taxonomy code,
 * a headline and a concrete fix.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

static const char *
alert_cause(int d)
{
	switch (d) {
	case SSL_AD_UNKNOWN_CA:
		return "the server does not trust the CA that issued our "
		    "certificate: add our root (or intermediate) to the "
		    "server's client-CA bundle, or use a certificate from a "
		    "CA it names in its CertificateRequest";
	case SSL_AD_BAD_CERTIFICATE:
		return "the server refused our certificate without saying why "
		    "(bad_certificate): a missing intermediate (send the full "
		    "chain), a key usage it refuses, or an identity it does "
		    "not authorize (mtls proxy sends this for any refusal; its "
		    "log has the taxonomy code): check the findings about our "
		    "chain and the server's allow rules";
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
		return "the server does not support our certificate's key or "
		    "signature type: use an ECDSA P-256 or RSA 2048 "
		    "certificate";
	case SSL_AD_CERTIFICATE_REVOKED:
		return "the server says our certificate is revoked: get a new "
		    "one (mtls agent or mtls ca issue)";
	case SSL_AD_CERTIFICATE_EXPIRED:
		return "the server says our certificate (or its chain) has "
		    "expired, by its clock: renew it, and check both clocks";
	case SSL_AD_CERTIFICATE_UNKNOWN:
		return "the server could not accept our certificate for an "
		    "unspecified reason (often extendedKeyUsage without "
		    "clientAuth, or a verification depth limit): check its "
		    "logs";
	case SSL_AD_ACCESS_DENIED:
		return "our certificate verified, but the server does not "
		    "authorize our identity: add it to the server's allow "
		    "rules";
	case SSL_AD_DECRYPT_ERROR:
		return "the server could not verify our CertificateVerify "
		    "signature: the key does not match the certificate, or a "
		    "middlebox interferes";
	case SSL_AD_CERTIFICATE_REQUIRED:
		return "the server requires a client certificate";
	default:
		return "the server refused the handshake after our "
		    "certificate: check its logs";
	}
}

static void
printable_prefix(const unsigned char *p, size_t n, char *out, size_t ol)
{
	size_t i, o = 0;

	for (i = 0; i < n && i < 40 && o + 2 < ol; i++) {
		if (p[i] == '\r' || p[i] == '\n')
			break;
		out[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
	}
	out[o] = '\0';
}

/* The handshake did not complete: one taxonomy code and its fix. */
void
explain_failure(struct attempt *a, const struct variant *v, int have_cert,
    const char *host, const char *port, const char *sni, int timeout_ms,
    STACK_OF(X509) *chain, EVP_PKEY *key, json_t *findings)
{
	char pfx[64];

	if (a->gai_err[0]) {
		finding_add(findings, "error", "connect_failed", "dns",
		    "check the host name (typo? the right DNS or /etc/hosts?)",
		    "cannot resolve '%s': %s", host, a->gai_err);
		return;
	}
	if (a->ssl == NULL && a->connect_errno) {
		if (a->connect_errno == ECONNREFUSED)
			finding_add(findings, "error", "connect_failed", "tcp",
			    "start the server, or check the port", "connection "
			    "refused: nothing listens on %s:%s", host, port);
		else if (a->timed_out)
			finding_add(findings, "error", "connect_failed", "tcp",
			    "check that the host is up and that no firewall "
			    "drops the port", "TCP connect to %s:%s timed out "
			    "after %d ms", host, port, timeout_ms);
		else
			finding_add(findings, "error", "connect_failed", "tcp",
			    "check the address and the network", "cannot "
			    "connect to %s:%s: %s", host, port,
			    strerror(a->connect_errno));
		return;
	}
	if (a->nfirst > 0 && a->first[0] != SSL3_RT_ALERT &&
	    a->first[0] != SSL3_RT_HANDSHAKE) {
		printable_prefix(a->first, a->nfirst, pfx, sizeof(pfx));
		if (strncmp((char *)a->first, "HTTP/", 5) == 0 ||
		    strncasecmp((char *)a->first, "<!DOCTYPE", 9) == 0 ||
		    strncasecmp((char *)a->first, "<html", 5) == 0)
			finding_add(findings, "error", "not_tls", "protocol",
			    "use http:// for this port, or the server's TLS "
			    "port", "the server answered in plain HTTP (\"%s\"): "
			    "this port does not speak TLS", pfx);
		else
			finding_add(findings, "error", "not_tls", "protocol",
			    "point the client at the server's TLS port",
			    "the server answered with bytes that are not TLS "
			    "(\"%s\")", pfx);
		return;
	}
	if (a->alert_in >= 0) {
		int d = a->alert_in;

		if (!a->saw_server_hello) {
			if (d == SSL_AD_UNRECOGNIZED_NAME)
				finding_add(findings, "error",
				    "identity_mismatch", "sni", "use "
				    "--servername with a name the server "
				    "serves", "the server does not serve the "
				    "name '%s' we sent (alert unrecognized_name)",
				    sni ? sni : "");
			else
				probe_explain(v, host, port, sni,
				    a->deadline_us, chain, key,
				    d == SSL_AD_PROTOCOL_VERSION, findings);
			return;
		}
		if (a->saw_cr && (!have_cert || a->sent_empty_cert) &&
		    (d == SSL_AD_CERTIFICATE_REQUIRED ||
		    d == SSL_AD_HANDSHAKE_FAILURE || d == SSL_AD_BAD_CERTIFICATE ||
		    d == SSL_AD_CERTIFICATE_UNKNOWN)) {
			finding_add(findings, "error", "no_client_cert",
			    "client certificate", "give --cert and --key with "
			    "a certificate from a CA the server names",
			    "the server requires a client certificate and we "
			    "sent none (alert %s)", trace_alert_name(d));
			return;
		}
		if (a->sent_cert) {
			finding_add(findings, "error", "peer_rejected_our_cert",
			    "client certificate", alert_cause(d),
			    "the server rejected our certificate with alert "
			    "%s (%d)", trace_alert_name(d), d);
			return;
		}
		finding_add(findings, "error", "no_shared_algorithm",
		    "handshake", "check the server's logs for this alert",
		    "the server aborted the handshake with alert %s (%d)",
		    trace_alert_name(d), d);
		return;
	}
	if (a->timed_out) {
		finding_add(findings, "error", "handshake_timeout", "handshake",
		    a->nfirst == 0 ? "check that this port speaks TLS (a "
		    "protocol where the server talks first, or one that waits "
		    "for more, looks like this); or that the server is not "
		    "overloaded" : "the server stalled mid-handshake: check "
		    "its load and logs", "no complete answer within %d ms "
		    "(%zu bytes received)", timeout_ms, a->nfirst);
		return;
	}
	if (a->eof && a->nfirst == 0) {
		finding_add(findings, "error", "not_tls", "protocol",
		    "check that this port speaks TLS, and the server's logs",
		    "the server closed the connection without answering our "
		    "ClientHello: it does not speak TLS here, or it refused "
		    "us before the handshake (SNI, an IP filter, a limit)");
		return;
	}
	if (a->eof && a->sent_cert) {
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", "check the server's logs for why it "
		    "refused our certificate", "the server closed the "
		    "connection after our certificate without an alert");
		return;
	}
	if (a->chain_limit > 0) {
		finding_add(findings, "error", "chain_too_large",
		    "server certificate", mtls_fail_hint(
		    MTLS_FAIL_CHAIN_TOO_LARGE), "the server's certificate "
		    "chain is over the %ld-byte (%ld KiB) limit of OpenSSL and "
		    "most clients: they refuse it before reading it",
		    a->chain_limit, a->chain_limit / 1024);
		return;
	}
	switch (a->ossl_reason) {
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
	case SSL_R_UNKNOWN_PROTOCOL:
	case SSL_R_HTTP_REQUEST:
		finding_add(findings, "error", "not_tls", "protocol",
		    "point the client at the server's TLS port", "the server "
		    "does not speak TLS (%s)", a->ossl_text);
		return;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
		probe_explain(v, host, port, sni, a->deadline_us, chain, key,
		    1, findings);
		return;
	default:
		finding_add(findings, "error", "no_shared_algorithm",
		    "handshake", "compare both sides' TLS settings",
		    "the handshake failed: %s", a->ossl_text[0] ?
		    a->ossl_text : "the connection was lost");
	}
}

/* TLS 1.3: the server judges our certificate after our Finished, so its
 * refusal arrives after the handshake completed on our side. */
void
explain_refusal(struct attempt *a, json_t *findings)
{
	int d = a->alert_in_after_cert;

	if (!a->sent_cert || a->sent_empty_cert)
		finding_add(findings, "error", "no_client_cert",
		    "client certificate", "give --cert and --key with a "
		    "certificate from a CA the server names", "the server "
		    "requires a client certificate and we sent none (%s%s)",
		    d >= 0 ? "alert " : "it closed the connection",
		    d >= 0 ? trace_alert_name(d) : "");
	else if (d >= 0)
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", alert_cause(d), "the server "
		    "rejected our certificate after the handshake with alert "
		    "%s (%d)", trace_alert_name(d), d);
	else
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", "check the server's logs: it most "
		    "likely refused our certificate", "the server closed the "
		    "connection right after the handshake, before any data");
}

/*
 * When the server refused our certificate and our own chain has an error
 * of its own (from index <from> on: expired, not yet valid, ...), that is
 * the cause and the headline: GnuTLS answers access_denied to every
 * verification failure, which reads as "not authorized". Ours moves just
 * before the refusal.
 */
void
explain_ours_first(json_t *findings, size_t from)
{
	size_t i, j, n = json_array_size(findings);
	const char *sev, *code;
	json_t *f;

	for (i = 0; i < from; i++) {
		f = json_array_get(findings, i);
		code = json_string_value(json_object_get(f, "code"));
		if (code != NULL && strcmp(code, "peer_rejected_our_cert") == 0)
			break;
	}
	if (i == from)
		return;
	for (j = from; j < n; j++) {
		char fix[200];

		f = json_array_get(findings, j);
		sev = json_string_value(json_object_get(f, "severity"));
		if (sev == NULL || strcmp(sev, "error") != 0)
			continue;
		code = json_string_value(json_object_get(f, "code"));
		snprintf(fix, sizeof(fix), "most likely because of the finding "
		    "above (%s): fix that first", code ? code : "our chain");
		json_object_set_new(json_array_get(findings, i), "fix",
		    esc_jstr(fix));
		json_incref(f);
		json_array_remove(findings, j);
		json_array_insert_new(findings, i, f);
		return;
	}
}

void
explain_http(struct attempt *a, json_t *report, json_t *findings)
{
	json_t *h = json_object(), *cc = json_object_get(report, "client_cert");
	char line[200];
	size_t n = strcspn(a->http_resp, "\r\n");

	snprintf(line, sizeof(line), "%.*s", (int)(n < 199 ? n : 199),
	    a->http_resp);
	json_object_set_new(h, "status", json_integer(a->http_status));
	json_object_set_new(h, "status_line", esc_jstr(line));
	json_object_set_new(report, "http", h);
	if (a->http_status != 400 || !a->saw_cr)
		return;
	if (strstr(a->http_resp, "No required SSL certificate")) {
		finding_add(findings, "error", "no_client_cert",
		    "client certificate", "give --cert and --key with a "
		    "certificate from a CA the server names", "the server "
		    "requires a client certificate and we sent none: it "
		    "finished the handshake, then answered '%s' \"No required "
		    "SSL certificate was sent\" (as nginx does)", line);
	} else if (strstr(a->http_resp, "SSL certificate error")) {
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", "read the server's error log for "
		    "the reason (nginx: 'client SSL certificate verify error'); "
		    "the findings about our chain below name the likely cause",
		    "the server rejected our certificate: it finished the "
		    "handshake, then answered '%s' \"The SSL certificate "
		    "error\" (as nginx does)", line);
	} else
		return;
	if (cc)
		json_object_set_new(cc, "accepted", json_false());
}
