/*
 * OCSP for the data path (RFC 6960 through OpenSSL's OCSP API): the request
 * a server sends to fetch its own status, the check of a response (signed
 * by the issuer or its delegated responder, for this certificate, current),
 * and the TLS status callbacks: a server staples the response in its
 * config, a client with require_staple refuses a server without a good one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>

#include "private.h"

X509 *
ocsp_issuer(X509 *leaf, STACK_OF(X509) *chain, X509_STORE *store)
{
	X509_STORE_CTX *xs;
	X509 *iss = NULL;
	int i;

	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		if (x != leaf && X509_check_issued(x, leaf) == X509_V_OK) {
			X509_up_ref(x);
			return x;
		}
	}
	if (store == NULL || (xs = X509_STORE_CTX_new()) == NULL)
		return NULL;
	if (X509_STORE_CTX_init(xs, store, leaf, NULL) == 1 &&
	    X509_STORE_CTX_get1_issuer(&iss, xs, leaf) != 1)
		iss = NULL;
	X509_STORE_CTX_free(xs);
	ERR_clear_error();
	return iss;
}

int
ocsp_request(X509 *leaf, X509 *issuer, uint8_t **der, size_t *len,
    struct mtls_error *err)
{
	OCSP_REQUEST *rq = OCSP_REQUEST_new();
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, issuer);
	unsigned char *p = NULL;
	int n = -1;

	*der = NULL;
	if (rq != NULL && id != NULL && OCSP_request_add0_id(rq, id) != NULL) {
		id = NULL;	/* owned by rq */
		n = i2d_OCSP_REQUEST(rq, &p);
	}
	OCSP_CERTID_free(id);
	OCSP_REQUEST_free(rq);
	if (n <= 0)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot build an "
		    "OCSP request");
	*der = p;
	*len = (size_t)n;
	return 0;
}

static const char *
resp_status_name(int s)
{
	switch (s) {
	case OCSP_RESPONSE_STATUS_MALFORMEDREQUEST: return "malformedRequest";
	case OCSP_RESPONSE_STATUS_INTERNALERROR: return "internalError";
	case OCSP_RESPONSE_STATUS_TRYLATER: return "tryLater";
	case OCSP_RESPONSE_STATUS_SIGREQUIRED: return "sigRequired";
	case OCSP_RESPONSE_STATUS_UNAUTHORIZED: return "unauthorized";
	default: return "unknown status";
	}
}

int
ocsp_check(const uint8_t *der, size_t len, X509 *leaf, STACK_OF(X509) *chain,
    X509_STORE *store, int64_t now, struct ocsp_result *res,
    struct mtls_error *err)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *r = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_CERTID *id = NULL;
	ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
	X509 *issuer = NULL;
	int st, reason = -1, rv = -1;

	memset(res, 0, sizeof(*res));
	if (len > 65536 || (r = d2i_OCSP_RESPONSE(NULL, &p, (long)len)) ==
	    NULL || p != der + len) {
		error_set(err, MTLS_ERR_PARSE, "OCSP response does not parse");
		goto out;
	}
	if ((st = OCSP_response_status(r)) !=
	    OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		error_set(err, MTLS_ERR_VERIFY, "OCSP responder answered %s",
		    resp_status_name(st));
		goto out;
	}
	if ((bs = OCSP_response_get1_basic(r)) == NULL) {
		error_set(err, MTLS_ERR_PARSE, "OCSP response is not a basic "
		    "response");
		goto out;
	}
	if ((issuer = ocsp_issuer(leaf, chain, store)) == NULL) {
		error_set(err, MTLS_ERR_VERIFY, "the certificate's issuer is "
		    "not known, so its OCSP status cannot be checked");
		goto out;
	}
	if ((id = OCSP_cert_to_id(NULL, leaf, issuer)) == NULL) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "OCSP certificate id");
		goto out;
	}
	if (!OCSP_resp_find_status(bs, id, &st, &reason, &rev, &thisupd,
	    &nextupd)) {
		error_set(err, MTLS_ERR_VERIFY, "OCSP response is about "
		    "another certificate");
		goto out;
	}
	/* signed by the issuer, or by a responder the issuer delegated to
	 * (OCSP signing EKU), chaining to our anchors */
	if (OCSP_basic_verify(bs, chain, store, 0) <= 0) {
		error_set_ossl(err, MTLS_ERR_VERIFY, "OCSP response signature "
		    "does not verify");
		goto out;
	}
	res->this_update = asn1_time_unix(thisupd);
	res->next_update = nextupd ? asn1_time_unix(nextupd) : 0;
	if (res->this_update > now + REVOCATION_SKEW) {
		error_set(err, MTLS_ERR_VERIFY, "OCSP response is from the "
		    "future (thisUpdate %lld s ahead)",
		    (long long)(res->this_update - now));
		goto out;
	}
	if (nextupd != NULL && res->next_update < now - REVOCATION_SKEW) {
		error_set(err, MTLS_ERR_VERIFY, "OCSP response is stale "
		    "(nextUpdate passed %lld s ago)",
		    (long long)(now - res->next_update));
		goto out;
	}
	res->status = st;
	res->revoked_at = rev ? asn1_time_unix(rev) : 0;
	res->reason = reason;
	rv = 0;
 out:
	ERR_clear_error();
	X509_free(issuer);
	OCSP_CERTID_free(id);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(r);
	return rv;
}

int
ocsp_matches(const uint8_t *der, size_t len, X509 *leaf, STACK_OF(X509) *chain,
    X509_STORE *store)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	OCSP_BASICRESP *bs = r ? OCSP_response_get1_basic(r) : NULL;
	X509 *issuer = bs ? ocsp_issuer(leaf, chain, store) : NULL;
	OCSP_CERTID *id = issuer ? OCSP_cert_to_id(NULL, leaf, issuer) : NULL;
	int st, ok;

	ok = id != NULL && OCSP_resp_find_status(bs, id, &st, NULL, NULL,
	    NULL, NULL);
	OCSP_CERTID_free(id);
	X509_free(issuer);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(r);
	ERR_clear_error();
	return ok;
}

/* Server: staple the config's response when the client asks for one. */
static int
server_status_cb(SSL *ssl, void *arg)
{
	struct tls_state *st = arg;
	const struct mtls_config *cfg = st->cfg;
	unsigned char *copy;

	if (cfg->staple == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	if ((copy = OPENSSL_malloc(cfg->staple_len)) == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	memcpy(copy, cfg->staple, cfg->staple_len);
	/* OpenSSL takes the buffer */
	SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)cfg->staple_len);
	return SSL_TLSEXT_ERR_OK;
}

/* Client with require_staple: a good, current response for the server's
 * leaf, or the handshake fails as "revoked" (status not proven). Runs
 * after verify_cb accepted the chain. */
static int
client_status_cb(SSL *ssl, void *arg)
{
	struct tls_state *st = arg;
	struct mtls *conn = SSL_get_app_data(ssl);
	const unsigned char *resp = NULL;
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	struct ocsp_result res;
	struct mtls_error e;
	long len;

	if (conn == NULL || leaf == NULL)
		return 0;
	if (conn->err.fail != MTLS_FAIL_NONE)
		return 0;	/* verification already failed, and said why */
	len = SSL_get_tlsext_status_ocsp_resp(ssl, &resp);
	if (resp == NULL || len <= 0) {
		error_fail(&conn->err, MTLS_FAIL_REVOKED, "the server stapled "
		    "no OCSP response, and one is required (require_staple): "
		    "its revocation status is not proven");
		return 0;
	}
	if (ocsp_check(resp, (size_t)len, leaf, chain, st->store,
	    st->cfg->verify_time ? st->cfg->verify_time : (int64_t)time(NULL),
	    &res, &e) != 0) {
		error_fail(&conn->err, MTLS_FAIL_REVOKED, "the server's stapled "
		    "OCSP response is not acceptable: %s", e.msg);
		return 0;
	}
	if (res.status == V_OCSP_CERTSTATUS_REVOKED) {
		error_fail(&conn->err, MTLS_FAIL_REVOKED, "the server's "
		    "certificate is revoked (stapled OCSP response, reason %s)",
		    res.reason >= 0 ? OCSP_crl_reason_str(res.reason) :
		    "unspecified");
		return 0;
	}
	if (res.status != V_OCSP_CERTSTATUS_GOOD) {
		error_fail(&conn->err, MTLS_FAIL_REVOKED, "the server's stapled "
		    "OCSP response says its status is unknown to the CA");
		return 0;
	}
	return 1;
}

int
ocsp_setup_ctx(struct tls_state *st, SSL_CTX *c, struct mtls_error *err)
{
	const struct mtls_config *cfg = st->cfg;

	if (st->is_server && cfg->staple != NULL) {
		if (!ocsp_matches(cfg->staple, cfg->staple_len,
		    sk_X509_value(cfg->chain, 0), cfg->chain, st->store))
			return error_set(err, MTLS_ERR_ARG, "the OCSP response "
			    "to staple is not about this certificate");
		SSL_CTX_set_tlsext_status_cb(c, server_status_cb);
		SSL_CTX_set_tlsext_status_arg(c, st);
	} else if (!st->is_server && cfg->require_staple) {
		if (!SSL_CTX_set_tlsext_status_type(c, TLSEXT_STATUSTYPE_ocsp))
			return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot ask "
			    "for OCSP stapling");
		SSL_CTX_set_tlsext_status_cb(c, client_status_cb);
		SSL_CTX_set_tlsext_status_arg(c, st);
	}
	return 0;
}
