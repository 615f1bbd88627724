/*
 * Revocation status: marking a certificate revoked in the inventory, and
 * the two ways it is published, a CRL of every revocation and OCSP
 * responses. Both are signed by the signer (signer.c), never here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>

#include "ca_local.h"

int
ca_revoke(struct ca *ca, const char *serial, int reason,
    struct ca_result *res, int *already, struct mtls_error *err)
{
	char canon[64];

	memset(res, 0, sizeof(*res));
	if (serial_canon(serial, canon, sizeof(canon)) != 0)
		return error_set(err, MTLS_ERR_ARG, "serial '%.64s' is not hex "
		    "(see mtls ca list)", serial);
	if (store_revoke(ca->store, canon, reason, (int64_t)time(NULL),
	    already, err) != 0)
		return -1;
	snprintf(res->serial, sizeof(res->serial), "%s", canon);
	return 0;
}

struct crl_collect {
	struct crl_entry *v;
	size_t n, cap;
	char (*serials)[48];
};

static int
collect_revoked(void *arg, const struct cert_rec *r)
{
	struct crl_collect *c = arg;

	if (!r->revoked)
		return 0;
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 64;
		struct crl_entry *nv = realloc(c->v, nc * sizeof(*nv));
		char (*ns)[48] = realloc(c->serials, nc * sizeof(*ns));

		if (nv != NULL)
			c->v = nv;
		if (ns != NULL)
			c->serials = ns;
		if (nv == NULL || ns == NULL)
			return -1;
		c->cap = nc;
	}
	snprintf(c->serials[c->n], 48, "%s", r->serial);
	c->v[c->n].revoked_at = r->revoked_at;
	c->v[c->n].reason = r->reason;
	c->n++;
	return 0;
}

int
ca_crl(struct ca *ca, int64_t ttl, X509_CRL **out, struct mtls_error *err)
{
	struct crl_collect c = { 0 };
	int64_t number, now = (int64_t)time(NULL), next = 0;
	size_t i;
	int rv = -1;

	if (ca_until(now, ttl, 7 * 86400, "CRL validity", &next, err) != 0)
		return -1;
	if (store_each(ca->store, collect_revoked, &c, err) != 0)
		goto out;
	for (i = 0; i < c.n; i++)
		c.v[i].serial_hex = c.serials[i];
	if (store_next_crl_number(ca->store, &number, err) != 0)
		goto out;
	rv = signer_crl(ca->signer, ca->cert, c.v, c.n, number,
	    now - BACKDATE, next, out, err);
 out:
	free(c.v);
	free(c.serials);
	return rv;
}

static int
ocsp_fail(int status, uint8_t **resp, size_t *resp_len,
    struct mtls_error *err)
{
	OCSP_RESPONSE *r = OCSP_response_create(status, NULL);
	unsigned char *der = NULL;
	int n;

	if (r == NULL || (n = i2d_OCSP_RESPONSE(r, &der)) <= 0) {
		OCSP_RESPONSE_free(r);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	OCSP_RESPONSE_free(r);
	*resp = der;
	*resp_len = (size_t)n;
	return 0;
}

int
ca_ocsp(struct ca *ca, const uint8_t *req, size_t req_len, int64_t next,
    uint8_t **resp, size_t *resp_len, struct mtls_error *err)
{
	const unsigned char *p = req;
	OCSP_REQUEST *rq = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_RESPONSE *r = NULL;
	ASN1_TIME *thisupd = NULL, *nextupd = NULL, *revtime = NULL;
	unsigned char *der = NULL;
	int64_t end = 0;
	int i, n, rv = -1;

	*resp = NULL;
	if (ca_until(0, next, 0, "OCSP validity", &end, err) != 0)
		return -1;
	if (req_len > 65536 || (rq = d2i_OCSP_REQUEST(NULL, &p,
	    (long)req_len)) == NULL || p != req + req_len ||
	    OCSP_request_onereq_count(rq) < 1 ||
	    OCSP_request_onereq_count(rq) > 16) {
		OCSP_REQUEST_free(rq);
		ERR_clear_error();
		return ocsp_fail(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, resp,
		    resp_len, err);
	}
	if ((bs = OCSP_BASICRESP_new()) == NULL ||
	    (thisupd = X509_gmtime_adj(NULL, 0)) == NULL ||
	    (nextupd = X509_gmtime_adj(NULL, (long)next)) == NULL)
		goto nomem;
	for (i = 0; i < OCSP_request_onereq_count(rq); i++) {
		OCSP_CERTID *cid = OCSP_onereq_get0_id(
		    OCSP_request_onereq_get0(rq, i));
		ASN1_OBJECT *mdo = NULL;
		ASN1_INTEGER *serial = NULL;
		OCSP_CERTID *ours = NULL;
		const EVP_MD *md;
		struct cert_rec rec;
		struct mtls_error e;
		char hex[64];
		int st = V_OCSP_CERTSTATUS_UNKNOWN, found = 1;

		OCSP_id_get0_info(NULL, &mdo, NULL, &serial, cid);
		md = mdo ? EVP_get_digestbyobj(mdo) : NULL;
		if (md != NULL && serial != NULL)
			ours = OCSP_cert_id_new(md, X509_get_subject_name(
			    ca->cert), X509_get0_pubkey_bitstr(ca->cert),
			    serial);
		if (ours != NULL && OCSP_id_issuer_cmp(cid, ours) == 0) {
			serial_hex(serial, hex, sizeof(hex));
			found = store_get(ca->store, hex, &rec, &e);
			if (found < 0) {
				OCSP_CERTID_free(ours);
				error_copy(err, &e);
				goto out;
			}
			if (found == 0)
				st = rec.revoked ? V_OCSP_CERTSTATUS_REVOKED :
				    V_OCSP_CERTSTATUS_GOOD;
		}
		OCSP_CERTID_free(ours);
		ASN1_TIME_free(revtime);
		revtime = NULL;
		if (st == V_OCSP_CERTSTATUS_REVOKED && (revtime =
		    ASN1_TIME_new()) != NULL)
			ASN1_TIME_set(revtime, (time_t)rec.revoked_at);
		if (OCSP_basic_add1_status(bs, cid, st,
		    st == V_OCSP_CERTSTATUS_REVOKED ? rec.reason : 0, revtime,
		    thisupd, nextupd) == NULL)
			goto nomem;
	}
	OCSP_copy_nonce(bs, rq);
	if (signer_ocsp(ca->signer, ca->cert, bs, err) != 0)
		goto out;
	if ((r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)) ==
	    NULL || (n = i2d_OCSP_RESPONSE(r, &der)) <= 0)
		goto nomem;
	*resp = der;
	*resp_len = (size_t)n;
	rv = 0;
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	ASN1_TIME_free(revtime);
	ASN1_TIME_free(thisupd);
	ASN1_TIME_free(nextupd);
	OCSP_RESPONSE_free(r);
	OCSP_BASICRESP_free(bs);
	OCSP_REQUEST_free(rq);
	return rv;
}
