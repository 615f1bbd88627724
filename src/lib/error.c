/*
 * Errors kept on the object (libtls style) and the failure taxonomy table.
 * Reporting an error never allocates: the message is a fixed buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "internal.h"

static const struct {
	const char *name;
	const char *hint;
} fail_table[MTLS_FAIL_COUNT] = {
	[MTLS_FAIL_NONE] = { "ok", "" },
	[MTLS_FAIL_NO_CLIENT_CERT] = { "no_client_cert",
	    "the client sent no certificate: configure its cert and key "
	    "(curl --cert/--key, mtls proxy --outbound --cert/--key); Go "
	    "and Java clients also send none when theirs chains to no CA "
	    "of this server's --ca bundle" },
	[MTLS_FAIL_CHAIN_INCOMPLETE] = { "chain_incomplete",
	    "send the intermediate(s) with the leaf: use the full chain file "
	    "(svid.pem = leaf then intermediates)" },
	[MTLS_FAIL_UNKNOWN_CA] = { "unknown_ca",
	    "the chain does not end at a root in the trust bundle: add the "
	    "issuing root to --ca if you trust it, or issue from a CA you "
	    "trust; a root rotated out of the bundle (mtls ca rotation "
	    "retire) is not added back: renew the certificate" },
	[MTLS_FAIL_CERT_EXPIRED] = { "cert_expired",
	    "renew the certificate (mtls ca issue, or run mtls agent); check "
	    "the clocks if it should still be valid" },
	[MTLS_FAIL_CERT_NOT_YET_VALID] = { "cert_not_yet_valid",
	    "a clock is wrong: sync time (NTP) on both machines, or wait until "
	    "notBefore" },
	[MTLS_FAIL_IDENTITY_MISMATCH] = { "identity_mismatch",
	    "the peer is not who we expected: fix --expect/--servername, or "
	    "issue the peer a certificate with the expected identity" },
	[MTLS_FAIL_NOT_AUTHORIZED] = { "not_authorized",
	    "the peer is valid but no --allow rule matches its identity: add "
	    "a rule if it should be let in" },
	[MTLS_FAIL_REVOKED] = { "revoked",
	    "the certificate was revoked (or its revocation status is "
	    "unknown): reissue; check the CRL source" },
	[MTLS_FAIL_BAD_KEY_USAGE] = { "bad_key_usage",
	    "the certificate may not be used this way (keyUsage, "
	    "extKeyUsage or basicConstraints): reissue it with the right "
	    "profile" },
	[MTLS_FAIL_INVALID_SVID] = { "invalid_svid",
	    "not a valid X509-SVID (one spiffe URI SAN, CA:FALSE, "
	    "digitalSignature only) or a name that is not printable ASCII: "
	    "reissue with mtls ca issue" },
	[MTLS_FAIL_NAME_CONSTRAINTS] = { "name_constraints",
	    "the identity is outside what the issuing CA may certify: issue it "
	    "from an intermediate scoped to that name" },
	[MTLS_FAIL_WEAK_KEY_OR_SIGNATURE] = { "weak_key_or_signature",
	    "reissue with a strong key (EC P-256, Ed25519, RSA >= 2048) and a "
	    "SHA-256 or better signature" },
	[MTLS_FAIL_NO_SHARED_ALGORITHM] = { "no_shared_algorithm",
	    "the two sides share no cipher, group or signature algorithm: "
	    "align key types (EC P-256 works everywhere) and TLS settings" },
	[MTLS_FAIL_PROTOCOL_VERSION] = { "protocol_version",
	    "the peers share no TLS version: enable TLS 1.3 on the peer, or "
	    "allow 1.2 here with --min-tls 1.2" },
	[MTLS_FAIL_PEER_REJECTED_OUR_CERT] = { "peer_rejected_our_cert",
	    "the peer refused our certificate: check that it trusts our CA "
	    "and allows our identity (see the alert)" },
	[MTLS_FAIL_NOT_TLS] = { "not_tls",
	    "the other side does not speak TLS: check the port, and that it "
	    "is not plain HTTP" },
	[MTLS_FAIL_HANDSHAKE_TIMEOUT] = { "handshake_timeout",
	    "the handshake did not finish in time: check the network path and "
	    "that the peer speaks TLS on this port" },
	[MTLS_FAIL_CONNECT_FAILED] = { "connect_failed",
	    "could not connect: check the address, DNS, and that the service "
	    "is listening" },
	[MTLS_FAIL_CHAIN_TOO_LARGE] = { "chain_too_large",
	    "the peer's certificate chain is over the 100 KiB that OpenSSL "
	    "(and most TLS stacks) accept: send the leaf and intermediates "
	    "only (no root, no duplicates), with fewer SANs" },
	[MTLS_FAIL_TRUST_DOMAIN_MISMATCH] = { "trust_domain_mismatch",
	    "a federated trust domain's root vouches only for that domain's "
	    "SPIFFE IDs: the peer must present an SVID of the trust domain its "
	    "root is configured for (--ca TD:BUNDLE)" },
};

const char *
mtls_fail_name(int fail)
{
	if (fail < 0 || fail >= MTLS_FAIL_COUNT || fail_table[fail].name == NULL)
		return "unknown";
	return fail_table[fail].name;
}

const char *
mtls_fail_hint(int fail)
{
	if (fail < 0 || fail >= MTLS_FAIL_COUNT || fail_table[fail].hint == NULL)
		return "";
	return fail_table[fail].hint;
}

int
mtls_fail_from_name(const char *name)
{
	int i;

	if (name == NULL)
		return -1;
	for (i = 0; i < MTLS_FAIL_COUNT; i++)
		if (fail_table[i].name != NULL &&
		    strcmp(fail_table[i].name, name) == 0)
			return i;
	return -1;
}

void
error_clear(struct mtls_error *e)
{
	e->code = MTLS_ERR_NONE;
	e->fail = MTLS_FAIL_NONE;
	e->sys = 0;
	e->kind = NULL;
	e->msg[0] = '\0';
}

static void
vset(struct mtls_error *e, int code, const char *fmt, va_list ap)
{
	e->code = code;
	e->fail = MTLS_FAIL_NONE;
	e->sys = 0;
	e->kind = NULL;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int
error_set(struct mtls_error *e, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(e, code, fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return -1;
}

int
error_set_errno(struct mtls_error *e, int code, const char *fmt, ...)
{
	int saved = errno;
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vset(e, code, fmt, ap);
	va_end(ap);
	n = strlen(e->msg);
	snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(saved));
	e->sys = saved;
	errno = saved;
	return -1;
}

int
error_set_ossl(struct mtls_error *e, int code, const char *fmt, ...)
{
	unsigned long ossl;
	const char *reason;
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vset(e, code, fmt, ap);
	va_end(ap);
	/* The first error is the root cause; later ones are the call stack. */
	ossl = ERR_peek_error();
	if (ossl != 0) {
		reason = ERR_reason_error_string(ossl);
		n = strlen(e->msg);
		if (reason != NULL)
			snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", reason);
		else
			snprintf(e->msg + n, sizeof(e->msg) - n,
			    ": OpenSSL error %lx", ossl);
	}
	ERR_clear_error();
	return -1;
}

int
error_fail(struct mtls_error *e, int fail, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(e, MTLS_ERR_VERIFY, fmt, ap);
	va_end(ap);
	e->fail = fail;
	ERR_clear_error();
	return -1;
}

void
error_copy(struct mtls_error *dst, const struct mtls_error *src)
{
	if (dst != src)
		memcpy(dst, src, sizeof(*dst));
}
