/*
 * mtls doctor connect: when the server refuses our ClientHello outright, a
 * few more handshakes with one dimension widened (versions, groups,
 * signature algorithms, ciphers) name what the two sides do not share.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

/* What a handshake with one dimension widened negotiates. */
struct probe_result {
	int	 ok;
	int	 timed_out;	/* --timeout ran out before an answer */
	int	 version;
	char	 what[160];
};

enum { P_VERSION, P_GROUP, P_SIGALG, P_CIPHER };

static void
probe(int kind, const struct variant *v, const char *host, const char *port,
    const char *sni, int64_t deadline_us, STACK_OF(X509) *chain,
    EVP_PKEY *key, struct probe_result *pr)
{
	struct attempt a;
	SSL_CTX *ctx = attempt_ctx_new(v, chain, key);
	int nid, hash;

	memset(&a, 0, sizeof(a));
	memset(pr, 0, sizeof(*pr));
	a.fd = -1;
	a.deadline_us = deadline_us;
	if (ctx == NULL)
		return;
	attempt_run(&a, ctx, host, port, sni);
	pr->timed_out = !a.saw_server_hello && a.timed_out;
	if (a.saw_server_hello && a.ssl) {
		pr->ok = 1;
		pr->version = SSL_version(a.ssl);
		if (kind == P_GROUP && (nid = SSL_get_negotiated_group(a.ssl)) !=
		    NID_undef)
			snprintf(pr->what, sizeof(pr->what), "group %s",
			    trace_group_name(a.ssl, nid));
		else if (kind == P_SIGALG && SSL_get_peer_signature_type_nid(
		    a.ssl, &nid) == 1 && SSL_get_peer_signature_nid(a.ssl,
		    &hash) == 1)
			snprintf(pr->what, sizeof(pr->what), "signature "
			    "algorithm %s+%s", trace_sig_type_name(nid),
			    OBJ_nid2sn(hash));
		else if (kind == P_CIPHER)
			snprintf(pr->what, sizeof(pr->what), "cipher %s",
			    SSL_get_cipher_name(a.ssl));
		else
			snprintf(pr->what, sizeof(pr->what), "%s",
			    trace_version_name(SSL_version(a.ssl)));
	}
	attempt_free(&a);
	SSL_CTX_free(ctx);
}

/* A probe that --timeout cut short proves nothing: say so, rather than
 * "refused every ClientHello". */
static int
ran_out(const struct probe_result *pr, json_t *findings)
{
	if (pr->ok || !pr->timed_out)
		return 0;
	finding_add(findings, "error", "no_shared_algorithm", "handshake",
	    "compare both sides' TLS settings, or give a longer --timeout so "
	    "that the doctor can find which one it lacks", "the server "
	    "refused our ClientHello; --timeout ran out before the probes "
	    "could tell which setting it lacks");
	return 1;
}

/* The server refused our ClientHello: find which dimension it lacks. */
void
probe_explain(const struct variant *base, const char *host,
    const char *port, const char *sni, int64_t deadline_us,
    STACK_OF(X509) *chain, EVP_PKEY *key, int version_alert, json_t *findings)
{
	static const char all_groups[] =
	    "X25519:P-256:P-384:P-521:X448:ffdhe2048:ffdhe3072:ffdhe4096";
	static const char all_sigalgs[] =
	    "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:ed448:"
	    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:"
	    "rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512:"
	    "RSA+SHA256:RSA+SHA384:RSA+SHA512:ECDSA+SHA1:RSA+SHA1";
	struct variant v;
	struct probe_result pr;

	/* versions first: the other dimensions depend on them */
	if (version_alert || base->min_v || base->max_v) {
		v = *base;
		v.min_v = TLS1_VERSION;
		v.max_v = 0;
		v.seclevel = 0;
		v.ciphers = "ALL:@SECLEVEL=0";
		probe(P_VERSION, &v, host, port, sni, deadline_us, chain, key,
		    &pr);
		if (ran_out(&pr, findings))
			return;
		if (pr.ok && ((base->min_v && pr.version < base->min_v) ||
		    (base->max_v && pr.version > base->max_v) ||
		    (!base->min_v && pr.version < TLS1_2_VERSION))) {
			finding_add(findings, "error", "protocol_version",
			    "versions", "allow that version on the client "
			    "(--min-tls/--max-tls), or upgrade the server "
			    "to TLS 1.3 (at least 1.2)", "no TLS version in "
			    "common: with every version offered the server "
			    "negotiates %s, outside what this client offered",
			    pr.what);
			return;
		}
		if (version_alert) {
			finding_add(findings, "error", "protocol_version",
			    "versions", "enable TLS 1.2 or 1.3 on both sides",
			    "the server refused every TLS version we offered "
			    "(alert protocol_version)");
			return;
		}
	}
	v = *base;
	v.groups = all_groups;
	probe(P_GROUP, &v, host, port, sni, deadline_us, chain, key, &pr);
	if (ran_out(&pr, findings))
		return;
	if (pr.ok) {
		finding_add(findings, "error", "no_shared_algorithm", "groups",
		    "offer that group on the client, or enable X25519 or "
		    "P-256 on the server", "no key-exchange group in common: "
		    "offered every group, the server chose %s, which this "
		    "client did not offer", pr.what);
		return;
	}
	v = *base;
	v.sigalgs = all_sigalgs;
	probe(P_SIGALG, &v, host, port, sni, deadline_us, chain, key, &pr);
	if (ran_out(&pr, findings))
		return;
	if (pr.ok) {
		finding_add(findings, "error", "no_shared_algorithm",
		    "signature algorithms", "let the client accept that "
		    "signature algorithm, or give the server a certificate "
		    "whose key type the client supports (e.g. an ECDSA and "
		    "an RSA certificate side by side)", "no signature "
		    "algorithm in common: the server's certificate can only "
		    "sign with %s, which this client did not offer", pr.what);
		return;
	}
	v = *base;
	v.ciphers = "ALL:@SECLEVEL=0";
	v.suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
	    "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:"
	    "TLS_AES_128_CCM_8_SHA256";
	v.seclevel = 0;
	probe(P_CIPHER, &v, host, port, sni, deadline_us, chain, key, &pr);
	if (ran_out(&pr, findings))
		return;
	if (pr.ok) {
		finding_add(findings, "error", "no_shared_algorithm", "ciphers",
		    "enable an AEAD cipher (AES-GCM or ChaCha20-Poly1305) on "
		    "the server", "no cipher in common: the server chose %s, "
		    "which this client did not offer", pr.what);
		return;
	}
	finding_add(findings, "error", "no_shared_algorithm", "handshake",
	    "compare the server's TLS settings (versions, groups, signature "
	    "algorithms, ciphers) with the client's", "the server refused "
	    "every ClientHello we tried, even with all versions, groups, "
	    "signature algorithms and ciphers offered");
}
