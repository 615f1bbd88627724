/*
 * mtls doctor connect: the trace. OpenSSL's message callback hands us every
 * handshake message and alert as it is read or written; they become the
 * report's "trace" (and live lines in text mode) and the flags the
 * explanation decides on. The name tables turn code points into the names
 * people read in RFCs and server configurations.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

/* RFC 8446 / 5246 alert names. */
const char *
trace_alert_name(int d)
{
	switch (d) {
	case SSL_AD_CLOSE_NOTIFY: return "close_notify";
	case SSL_AD_UNEXPECTED_MESSAGE: return "unexpected_message";
	case SSL_AD_BAD_RECORD_MAC: return "bad_record_mac";
	case SSL_AD_RECORD_OVERFLOW: return "record_overflow";
	case SSL_AD_HANDSHAKE_FAILURE: return "handshake_failure";
	case SSL_AD_BAD_CERTIFICATE: return "bad_certificate";
	case SSL_AD_UNSUPPORTED_CERTIFICATE: return "unsupported_certificate";
	case SSL_AD_CERTIFICATE_REVOKED: return "certificate_revoked";
	case SSL_AD_CERTIFICATE_EXPIRED: return "certificate_expired";
	case SSL_AD_CERTIFICATE_UNKNOWN: return "certificate_unknown";
	case SSL_AD_ILLEGAL_PARAMETER: return "illegal_parameter";
	case SSL_AD_UNKNOWN_CA: return "unknown_ca";
	case SSL_AD_ACCESS_DENIED: return "access_denied";
	case SSL_AD_DECODE_ERROR: return "decode_error";
	case SSL_AD_DECRYPT_ERROR: return "decrypt_error";
	case SSL_AD_PROTOCOL_VERSION: return "protocol_version";
	case SSL_AD_INSUFFICIENT_SECURITY: return "insufficient_security";
	case SSL_AD_INTERNAL_ERROR: return "internal_error";
	case SSL_AD_INAPPROPRIATE_FALLBACK: return "inappropriate_fallback";
	case SSL_AD_USER_CANCELLED: return "user_canceled";
	case SSL_AD_MISSING_EXTENSION: return "missing_extension";
	case SSL_AD_UNSUPPORTED_EXTENSION: return "unsupported_extension";
	case SSL_AD_UNRECOGNIZED_NAME: return "unrecognized_name";
	case SSL_AD_BAD_CERTIFICATE_STATUS_RESPONSE:
		return "bad_certificate_status_response";
	case SSL_AD_CERTIFICATE_REQUIRED: return "certificate_required";
	case SSL_AD_NO_APPLICATION_PROTOCOL: return "no_application_protocol";
	default: return "unknown_alert";
	}
}

static const char *
hs_name(int t)
{
	switch (t) {
	case SSL3_MT_CLIENT_HELLO: return "ClientHello";
	case SSL3_MT_SERVER_HELLO: return "ServerHello";
	case SSL3_MT_NEWSESSION_TICKET: return "NewSessionTicket";
	case SSL3_MT_END_OF_EARLY_DATA: return "EndOfEarlyData";
	case SSL3_MT_ENCRYPTED_EXTENSIONS: return "EncryptedExtensions";
	case SSL3_MT_CERTIFICATE: return "Certificate";
	case SSL3_MT_SERVER_KEY_EXCHANGE: return "ServerKeyExchange";
	case SSL3_MT_CERTIFICATE_REQUEST: return "CertificateRequest";
	case SSL3_MT_SERVER_DONE: return "ServerHelloDone";
	case SSL3_MT_CERTIFICATE_VERIFY: return "CertificateVerify";
	case SSL3_MT_CLIENT_KEY_EXCHANGE: return "ClientKeyExchange";
	case SSL3_MT_FINISHED: return "Finished";
	case SSL3_MT_CERTIFICATE_STATUS: return "CertificateStatus";
	case SSL3_MT_KEY_UPDATE: return "KeyUpdate";
	default: return "HandshakeMessage";
	}
}

int
doctor_cert_msg_count(const unsigned char *p, size_t len, int tls13)
{
	size_t off = 4, end;
	int n = 0;

	if (tls13) {
		if (len < off + 1 || len < off + 1 + p[off])
			return -1;
		off += 1 + p[off];
	}
	if (len < off + 3)
		return -1;
	end = off + 3 + ((size_t)p[off] << 16 | (size_t)p[off + 1] << 8 |
	    p[off + 2]);
	off += 3;
	if (end > len)
		return -1;
	while (off + 3 <= end) {
		size_t cl = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 |
		    p[off + 2];

		off += 3 + cl;
		if (tls13) {
			if (off + 2 > end)
				return -1;
			off += 2 + ((size_t)p[off] << 8 | p[off + 1]);
		}
		n++;
	}
	return off == end ? n : -1;
}

static void
trace_add(struct attempt *a, int out, const char *msg, const char *detail)
{
	double ms = (double)(net_now_us() - a->t0_us) / 1000.0;
	json_t *o;

	if (a->trace == NULL)
		return;
	if ((o = json_object()) != NULL) {
		json_object_set_new(o, "ms", json_real(ms));
		json_object_set_new(o, "dir", esc_jstr(out ? "out" : "in"));
		json_object_set_new(o, "msg", esc_jstr(msg));
		if (detail && *detail)
			json_object_set_new(o, "detail", esc_jstr(detail));
		json_array_append_new(a->trace, o);
	}
	if (a->live) {
		char m[100], d[400];

		esc_text(m, sizeof(m), msg, strlen(msg), SIZE_MAX, ESC_KEEP_BS);
		esc_text(d, sizeof(d), detail ? detail : "", detail ?
		    strlen(detail) : 0, SIZE_MAX, ESC_KEEP_BS);
		fprintf(a->live, "%8.1f ms  %s %s%s%s\n", ms, out ? "->" : "<-",
		    m, *d ? "  " : "", d);
		fflush(a->live);
	}
}

void
trace_msg_cb(int write_p, int version, int ct, const void *buf, size_t len,
    SSL *ssl, void *arg)
{
	struct attempt *a = arg;
	const unsigned char *p = buf;
	char detail[200] = "";
	int n, tls13;

	(void)version;
	switch (ct) {
	case SSL3_RT_HANDSHAKE:
		if (len < 1)
			return;
		tls13 = SSL_version(ssl) == TLS1_3_VERSION;
		switch (p[0]) {
		case SSL3_MT_SERVER_HELLO:
			a->saw_server_hello = 1;
			break;
		case SSL3_MT_CERTIFICATE_REQUEST:
			a->saw_cr = 1;
			break;
		case SSL3_MT_NEWSESSION_TICKET:
			a->saw_nst = 1;
			break;
		case SSL3_MT_CERTIFICATE:
			n = doctor_cert_msg_count(p, len, tls13);
			if (write_p) {
				a->sent_cert = 1;
				a->sent_empty_cert = n == 0;
			} else
				a->got_server_cert = 1;
			if (n >= 0)
				snprintf(detail, sizeof(detail), n == 0 ?
				    "(empty: no certificate)" : "(%d "
				    "certificate%s)", n, n == 1 ? "" : "s");
			break;
		}
		trace_add(a, write_p, hs_name(p[0]), detail);
		break;
	case SSL3_RT_CHANGE_CIPHER_SPEC:
		trace_add(a, write_p, "ChangeCipherSpec",
		    SSL_version(ssl) == TLS1_3_VERSION ? "(compatibility)" : "");
		break;
	case SSL3_RT_ALERT:
		if (len < 2)
			return;
		/* closure alerts (close_notify; user_canceled, which the JDK
		 * sends before it on every TLS 1.3 close) end a connection,
		 * they refuse nothing; nor does any alert after the server
		 * has sent us application data (it took our certificate) */
		if (write_p)
			a->alert_out = p[1];
		else if (p[1] != SSL_AD_CLOSE_NOTIFY &&
		    p[1] != SSL_AD_USER_CANCELLED && !a->got_data) {
			a->alert_in = p[1];
			if (a->sent_cert)
				a->alert_in_after_cert = p[1];
		}
		snprintf(detail, sizeof(detail), "%s %s (%d)",
		    p[0] == SSL3_AL_FATAL ? "fatal" : "warning",
		    trace_alert_name(p[1]), p[1]);
		trace_add(a, write_p, "Alert", detail);
		break;
	default:
		break;
	}
}

/* Keeps the first bytes the server sent, to name what answered when it is
 * not TLS. */
long
trace_bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi,
    long argl, int ret, size_t *processed)
{
	struct attempt *a = (struct attempt *)BIO_get_callback_arg(b);
	size_t n;

	(void)len;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed &&
	    a->nfirst < sizeof(a->first)) {
		n = *processed;
		if (n > sizeof(a->first) - a->nfirst)
			n = sizeof(a->first) - a->nfirst;
		memcpy(a->first + a->nfirst, argp, n);
		a->nfirst += n;
	}
	return ret;
}

const char *
trace_version_name(int v)
{
	switch (v) {
	case TLS1_VERSION: return "TLS 1.0";
	case TLS1_1_VERSION: return "TLS 1.1";
	case TLS1_2_VERSION: return "TLS 1.2";
	case TLS1_3_VERSION: return "TLS 1.3";
	default: return "an unknown version";
	}
}


/* Groups by the names people configure: P-256 rather than prime256v1. */
const char *
trace_group_name(SSL *ssl, int nid)
{
	const char *n;

	switch (nid) {
	case NID_X9_62_prime256v1: return "P-256";
	case NID_secp384r1: return "P-384";
	case NID_secp521r1: return "P-521";
	default:
		n = SSL_group_to_name(ssl, nid);
		return n ? n : OBJ_nid2sn(nid);
	}
}

const char *
trace_sig_type_name(int nid)
{
	switch (nid) {
	case EVP_PKEY_EC: return "ECDSA";
	case EVP_PKEY_RSA: return "RSA-PKCS1";
	case EVP_PKEY_RSA_PSS: return "RSA-PSS";
	case EVP_PKEY_ED25519: return "Ed25519";
	case EVP_PKEY_ED448: return "Ed448";
	default: return OBJ_nid2sn(nid);
	}
}

/* IANA name of a TLS SignatureScheme code point. */
const char *
trace_scheme_name(unsigned int cp)
{
	static const struct { unsigned int cp; const char *name; } t[] = {
		{ 0x0401, "rsa_pkcs1_sha256" }, { 0x0501, "rsa_pkcs1_sha384" },
		{ 0x0601, "rsa_pkcs1_sha512" }, { 0x0403, "ecdsa_secp256r1_sha256" },
		{ 0x0503, "ecdsa_secp384r1_sha384" },
		{ 0x0603, "ecdsa_secp521r1_sha512" },
		{ 0x0804, "rsa_pss_rsae_sha256" }, { 0x0805, "rsa_pss_rsae_sha384" },
		{ 0x0806, "rsa_pss_rsae_sha512" }, { 0x0807, "ed25519" },
		{ 0x0808, "ed448" }, { 0x0809, "rsa_pss_pss_sha256" },
		{ 0x080a, "rsa_pss_pss_sha384" }, { 0x080b, "rsa_pss_pss_sha512" },
		{ 0x0201, "rsa_pkcs1_sha1" }, { 0x0203, "ecdsa_sha1" },
		{ 0x0301, "rsa_pkcs1_sha224" }, { 0x0303, "ecdsa_sha224" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].cp == cp)
			return t[i].name;
	return NULL;
}
