/*
 * Enrollment and the requests for a certificate: the join token, a new key
 * and its CSR, POST /v1/enroll (pinned by the token) or /v1/renew
 * (verified by bundle.pem, our certificate authenticating us).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "agent/agent_local.h"

/*
 * The token file: "mtls2.<root SHA-256>.<CA SHA-256>.<secret>" (64 lower
 * hex each, the secret 43 base64url characters; ca_token_create). An
 * "mtls1." token pins only the root, which a sibling CA's server under the
 * same root also chains to: refused (fail closed), never sent.
 */
int
enroll_read_token(struct agent *a, struct mtls_error *err)
{
	static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmno"
	    "pqrstuvwxyz0123456789-_";
	const size_t pre = 6, fp = 64, sec = 43;
	uint8_t *buf;
	size_t len;

	if (fs_read(a->o->token_file, 4096, &buf, &len, err) != 0)
		return -1;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
	    buf[len - 1] == ' '))
		len--;
	if (len >= pre && memcmp(buf, "mtls1.", pre) == 0) {
		OPENSSL_cleanse(buf, len);
		free(buf);
		return error_set(err, MTLS_ERR_PARSE, "%s: this token pins only "
		    "the root; create a new one with mtls ca token create",
		    a->o->token_file);
	}
	if (len == 0 || len >= sizeof(a->token) || len < pre ||
	    memcmp(buf, "mtls2.", pre) != 0 || memchr(buf, '\0', len) != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
		return error_set(err, MTLS_ERR_PARSE, "%s: not an mtls join "
		    "token (mtls ca token create prints one)",
		    a->o->token_file);
	}
	memcpy(a->token, buf, len);
	a->token[len] = '\0';
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (len != pre + fp + 1 + fp + 1 + sec || a->token[pre + fp] != '.' ||
	    a->token[pre + 2 * fp + 1] != '.' ||
	    strspn(a->token + pre, "0123456789abcdef") != fp ||
	    strspn(a->token + pre + fp + 1, "0123456789abcdef") != fp ||
	    strspn(a->token + pre + 2 * fp + 2, b64url) != sec) {
		OPENSSL_cleanse(a->token, sizeof(a->token));
		return error_set(err, MTLS_ERR_PARSE, "%s: malformed token: "
		    "want mtls2.<root sha256>.<CA sha256>.<secret> (64, 64 "
		    "lower hex, 43 base64url characters; mtls ca token create "
		    "prints one)", a->o->token_file);
	}
	memcpy(a->pin, a->token + pre, fp);
	a->pin[fp] = '\0';
	memcpy(a->ca_pin, a->token + pre + fp + 1, fp);
	a->ca_pin[fp] = '\0';
	return 0;
}

/* A new P-256 key and a CSR for it (the CA decides the identity); with
 * <tkey> (a token's key), that key, the CSR signed in the token. */
static int
new_csr(EVP_PKEY *tkey, EVP_PKEY **key, char **csr, struct mtls_error *err)
{
	X509_REQ *req = X509_REQ_new();
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	int rv = -1;

	*csr = NULL;
	if (req == NULL || bio == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (tkey != NULL && EVP_PKEY_up_ref(tkey))
		*key = tkey;
	else if (key_generate(KEY_EC_P256, key, err) != 0)
		goto out;
	if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, *key) ||
	    X509_REQ_sign(req, *key, EVP_sha256()) <= 0 ||
	    !PEM_write_bio_X509_REQ(bio, req)) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot make a CSR");
		goto out;
	}
	BIO_get_mem_ptr(bio, &bm);
	if ((*csr = strndup(bm->data, bm->length)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	rv = 0;
 out:
	BIO_free(bio);
	X509_REQ_free(req);
	return rv;
}

/* POST /v1/enroll (over the pinned connection) or /v1/renew (verified by
 * bundle.pem, a->cur_cert authenticating us) with a new key; installs the
 * answer with <bundle_pem>. */
int
enroll_obtain(struct agent *a, int enroll, const char *bundle_pem,
    struct mtls_error *err)
{
	EVP_PKEY *key = NULL, *next = NULL;
	char *csr = NULL, *body = NULL;
	const char *chain, *bundle;
	struct buf b = { 0 };
	json_t *o = NULL, *r = NULL;
	int st, rv = -1;

	/* a token key is replaced at a renewal as a key file is */
	if (a->tkey != NULL && a->tkey_rotate && !enroll) {
		if (tokenkey_next(a, &next, err) != 0)
			goto out;
	}
	if (new_csr(next != NULL ? next : a->tkey, &key, &csr, err) != 0)
		goto out;
	o = json_object();
	if (enroll)
		json_object_set_new(o, "token", esc_jstr(a->token));
	json_object_set_new(o, "csr", esc_jstr(csr));
	body = json_dumps(o, JSON_COMPACT);
	if (body == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	st = call_ca(a, "POST", enroll ? "/v1/enroll" : "/v1/renew", body,
	    enroll ? TRUST_PIN : TRUST_BUNDLE, !enroll, &b, err);
	if (st < 0)
		goto out;
	if (st != 200) {
		call_api_error(err, st, enroll ? "enroll" : "renew", &b);
		goto out;
	}
	r = json_loads(b.p, 0, NULL);
	chain = json_string_value(json_object_get(r, "certificate"));
	bundle = json_string_value(json_object_get(r, "bundle"));
	if (chain == NULL || bundle == NULL) {
		error_set(err, MTLS_ERR_PARSE, "the CA's answer has no "
		    "certificate or bundle");
		goto out;
	}
	if (install_answer(a, key, chain, bundle_pem, enroll ? TRUST_PIN :
	    TRUST_BUNDLE, enroll ? "enroll" : "renew", err) != 0)
		goto out;
	rv = 0;
 out:
	if (rv != 0 && next != NULL)
		tokenkey_drop(a);
	EVP_PKEY_free(next);
	if (body)
		OPENSSL_cleanse(body, strlen(body));
	free(body);
	free(csr);
	free(b.p);
	json_decref(o);
	json_decref(r);
	EVP_PKEY_free(key);
	return rv;
}

/* Enrollment with the token, in the three steps of this file's comment. */
int
enroll_run(struct agent *a, struct mtls_error *err)
{
	char *probe = NULL, *pem = NULL;
	int rv = -1;

	if (bundle_fetch(a, TRUST_NONE, &probe, &a->pinned, err) != 0 ||
	    bundle_fetch(a, TRUST_PIN, &pem, NULL, err) != 0 ||
	    enroll_obtain(a, 1, pem, err) != 0)
		goto out;
	rv = 0;
 out:
	free(probe);
	free(pem);
	X509_free(a->pinned);
	a->pinned = NULL;
	X509_free(a->srv_ca);
	a->srv_ca = NULL;
	return rv;
}
