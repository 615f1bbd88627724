/*
 * ca serve's revocation status endpoints: GET /v1/crl (a CRL re-signed
 * after each revocation and at half its validity) and /v1/ocsp (POST, or
 * GET with the base64 request in the path, RFC 6960 A.1).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca/serve.h"

void
serve_crl_stale(struct server *s)
{
	s->crl[0].made = 0;
	s->crl[1].made = 0;
}

/* The cached CRL <cc> (this CA's, or the previous issuer's), signed anew
 * when stale or made from another CA snapshot (a request in hand at a
 * reload must not leave the old issuer's CRL in the cache); under s->mu.
 * NULL with <err> when there is none. */
static struct crl_cache *
crl_fresh(struct server *s, struct ca *ca, int previous,
    struct mtls_error *err)
{
	struct crl_cache *cc = &s->crl[previous ? 1 : 0];
	X509_CRL *crl = NULL;
	unsigned char *der = NULL;
	int64_t now = (int64_t)time(NULL), revs = -1;
	int n;

	/* a revocation made elsewhere (another replica sharing the store,
	 * `mtls ca revoke` on this directory): the count of revocations moved
	 * (they are never taken back). Counted at most once a second, not per
	 * request: the count scans the inventory under the CA's mutex. */
	error_clear(err);
	if (now != cc->checked) {
		cc->checked = now;
		if (store_revocations(ca->store, &revs, err) != 0 ||
		    revs != cc->revs)
			cc->made = 0;
	}
	/* re-signed after a revocation, and at half its validity */
	if (cc->der == NULL || cc->made == 0 || cc->gen != ca->gen ||
	    now - cc->made >= s->o->crl_ttl / 2) {
		error_clear(err);
		if (revs < 0 && store_revocations(ca->store, &revs, err) != 0)
			revs = -1;	/* unknown: counted again next second */
		error_clear(err);
		if ((previous ? ca_crl_previous(ca, s->o->crl_ttl, &crl,
		    err) : ca_crl(ca, s->o->crl_ttl, &crl, err)) == 0 &&
		    (n = i2d_X509_CRL(crl, &der)) > 0) {
			OPENSSL_free(cc->der);
			cc->der = der;
			cc->len = (size_t)n;
			cc->made = now;
			cc->revs = revs;
			cc->gen = ca->gen;	/* whose CRL it is */
		}
		X509_CRL_free(crl);
		if (serve_storage_fault(err))	/* the CRL number is stored */
			serve_set_ready(s, err);
	}
	return cc->der != NULL && cc->gen == ca->gen ? cc : NULL;
}

/* Appends the DER CRL <cc> to <bio> as PEM. */
static int
crl_pem(BIO *bio, const struct crl_cache *cc)
{
	const unsigned char *p = cc->der;
	X509_CRL *c = d2i_X509_CRL(NULL, &p, (long)cc->len);
	int ok = c != NULL && PEM_write_bio_X509_CRL(bio, c) == 1;

	X509_CRL_free(c);
	return ok ? 0 : -1;
}

void
serve_crl(struct server *s, struct reply *rp, int which)
{
	struct mtls_error err;
	struct crl_cache *cc, *pc = NULL;
	int prev = rp->ca->prev != NULL && rp->ca->prev_signer != NULL;
	BIO *bio;
	BUF_MEM *bm;

	if (which == SERVE_CRL_PREVIOUS && !prev) {
		/* not switched (or retired): nothing to serve here */
		serve_reply_error(rp, 404, "no_previous_issuer", "no previous "
		    "issuer: /v1/crl/previous is served only between a root "
		    "rotation's switch and its retire, with rotation/old.key "
		    "loaded (see ca serve's log); this CA's CRL is /v1/crl");
		return;
	}
	pthread_mutex_lock(&s->mu);
	cc = crl_fresh(s, rp->ca, which == SERVE_CRL_PREVIOUS, &err);
	if (cc != NULL && which == SERVE_CRL_ALL && prev &&
	    (pc = crl_fresh(s, rp->ca, 1, &err)) == NULL)
		cc = NULL;	/* both, or an error */
	if (cc != NULL && which == SERVE_CRL_ALL) {
		/* PEM: this CA's CRL, then the previous issuer's */
		if ((bio = BIO_new(BIO_s_mem())) != NULL &&
		    crl_pem(bio, cc) == 0 && (pc == NULL ||
		    crl_pem(bio, pc) == 0)) {
			BIO_get_mem_ptr(bio, &bm);
			serve_reply_bytes(rp, "application/x-pem-file",
			    bm->data, bm->length);
		} else
			serve_reply_error(rp, 500, "internal", "out of memory");
		BIO_free(bio);
	} else if (cc != NULL)
		serve_reply_bytes(rp, "application/pkix-crl", cc->der,
		    cc->len);
	else if (serve_storage_fault(&err))
		serve_reply_unavailable(s, rp, "cannot make the CRL", &err);
	else
		serve_reply_error(rp, 500, "internal", "cannot make the CRL: "
		    "%s", err.msg);
	pthread_mutex_unlock(&s->mu);
}

/* base64 (standard or URL alphabet, '%'-escaped or not) to bytes: the
 * GET form of OCSP (RFC 6960 A.1) */
static int
b64_decode(const char *in, uint8_t **out, size_t *out_len)
{
	size_t n = strlen(in), i, j = 0, pad = 0;
	char *t = malloc(n + 4);
	int len;

	*out = NULL;
	if (t == NULL || n > 8192)
		goto fail;
	for (i = 0; i < n; i++) {
		char ch = in[i];

		if (ch == '%') {
			char hx[3];

			if (i + 2 >= n)
				goto fail;
			hx[0] = in[i + 1];
			hx[1] = in[i + 2];
			hx[2] = '\0';
			ch = (char)strtol(hx, NULL, 16);
			i += 2;
		}
		t[j++] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
	}
	while (j % 4)
		t[j++] = '=';
	t[j] = '\0';
	for (i = j; i > 0 && t[i - 1] == '='; i--)
		pad++;
	if (j == 0 || pad > 2 || (*out = malloc(j / 4 * 3 + 1)) == NULL)
		goto fail;
	if ((len = EVP_DecodeBlock(*out, (unsigned char *)t, (int)j)) < 0)
		goto fail;
	free(t);
	*out_len = (size_t)len - pad;
	return 0;
 fail:
	free(t);
	free(*out);
	*out = NULL;
	return -1;
}

/* An unsigned OCSPResponse of status tryLater (RFC 6960 2.3): HTTP 200,
 * application/ocsp-response, Cache-Control: no-store. */
static int
ocsp_try_later(struct reply *rp)
{
	OCSP_RESPONSE *r;
	unsigned char *der = NULL;
	int n = -1;

	if ((r = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER,
	    NULL)) != NULL)
		n = i2d_OCSP_RESPONSE(r, &der);
	OCSP_RESPONSE_free(r);
	if (n <= 0)
		return -1;
	serve_reply_bytes(rp, "application/ocsp-response", der, (size_t)n);
	rp->headers = "Cache-Control: no-store\r\n";
	OPENSSL_free(der);
	return rp->body != NULL ? 0 : -1;
}

void
serve_ocsp(struct server *s, const struct http_req *req, const char *path,
    struct reply *rp)
{
	struct mtls_error err;
	uint8_t *der = NULL, *resp = NULL;
	size_t len = 0, rlen;
	int rc;

	if (strcmp(req->method, "POST") == 0) {
		der = req->body;
		len = req->body_len;
	} else if (strncmp(path, "/v1/ocsp/", 9) != 0 ||
	    b64_decode(path + 9, &der, &len) != 0) {
		serve_reply_error(rp, 400, "bad_ocsp_request", "GET /v1/ocsp/"
		    "<base64 DER request>");
		return;
	}
	error_clear(&err);
	pthread_mutex_lock(&s->mu);
	rc = ca_ocsp(rp->ca, der, len, s->o->ocsp_ttl, &resp, &rlen, &err);
	pthread_mutex_unlock(&s->mu);
	if (der != req->body)
		free(der);
	if (rc != 0 && serve_storage_fault(&err)) {
		/* the status is stored and the store cannot be read: OCSP
		 * clients (openssl ocsp, staplers, Go's x/crypto/ocsp) expect
		 * an OCSP response, not an HTTP error: tryLater (RFC 6960
		 * 2.3), unsigned, never cached; the cause goes to the log as
		 * for any store fault, and we are not ready until it writes */
		serve_set_ready(s, &err);
		if (ocsp_try_later(rp) == 0) {
			snprintf(rp->error, sizeof(rp->error), "tryLater: %s",
			    err.msg);
			rp->code = "try_later";
			return;
		}
		serve_reply_unavailable(s, rp, "cannot answer OCSP", &err);
		return;
	}
	if (rc != 0) {
		serve_reply_error(rp, 500, "internal", "%s", err.msg);
		return;
	}
	__atomic_add_fetch(&s->m_ocsp, 1, __ATOMIC_RELAXED);
	serve_reply_bytes(rp, "application/ocsp-response", resp, rlen);
	OPENSSL_free(resp);
}
