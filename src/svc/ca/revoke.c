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
	const char *issuer;	/* only its leaves; NULL: every one */
};

static int
collect_revoked(void *arg, const struct cert_rec *r)
{
	struct crl_collect *c = arg;

	if (!r->revoked || (c->issuer != NULL && strcmp(r->issuer,
	    c->issuer) != 0))
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

/* A CRL of <issuer>'s revocations (NULL name: every one), signed by <sg>
 * as <cert>. */
static int
crl_of(struct ca *ca, X509 *cert, struct signer *sg, const char *issuer,
    int64_t ttl, X509_CRL **out, struct mtls_error *err)
{
	struct crl_collect c = { 0 };
	int64_t number, now = (int64_t)time(NULL), next = 0;
	size_t i;
	int rv = -1;

	c.issuer = issuer;
	if (ca_until(now, ttl, 7 * 86400, "CRL validity", &next, err) != 0)
		return -1;
	if (store_each(ca->store, collect_revoked, &c, err) != 0)
		goto out;
	for (i = 0; i < c.n; i++)
		c.v[i].serial_hex = c.serials[i];
	/* one sequence in the store for every issuer: each issuer's CRL
	 * numbers only grow, whichever replica signs */
	if (store_next_crl_number(ca->store, &number, err) != 0)
		goto out;
	rv = signer_crl(sg, cert, c.v, c.n, number, now - BACKDATE, next, out,
	    err);
 out:
	free(c.v);
	free(c.serials);
	return rv;
}

int
ca_crl(struct ca *ca, int64_t ttl, X509_CRL **out, struct mtls_error *err)
{
	return crl_of(ca, ca->cert, ca->signer, NULL, ttl, out, err);
}

int
ca_crl_previous(struct ca *ca, int64_t ttl, X509_CRL **out,
    struct mtls_error *err)
{
	char name[256];

	*out = NULL;
	if (ca->prev == NULL || ca->prev_signer == NULL)
		return error_set(err, MTLS_ERR_ARG, "no previous issuer: the "
		    "rotation is not in phase switched (mtls ca rotation "
		    "status shows it); before switch this CA's CRL covers its "
		    "leaves, after retire the old issuer is trusted nowhere");
	name_oneline(X509_get_subject_name(ca->prev), name, sizeof(name));
	return crl_of(ca, ca->prev, ca->prev_signer, name, ttl, out, err);
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

/* Whether <cid> names <issuer> exactly: its name hash and key hash by the
 * hash algorithm the request used (OCSP_id_issuer_cmp). */
static int
cid_names(OCSP_CERTID *cid, const EVP_MD *md, X509 *issuer,
    ASN1_INTEGER *serial)
{
	OCSP_CERTID *ours = OCSP_cert_id_new(md, X509_get_subject_name(issuer),
	    X509_get0_pubkey_bitstr(issuer), serial);
	int same = ours != NULL && OCSP_id_issuer_cmp(cid, ours) == 0;

	OCSP_CERTID_free(ours);
	return same;
}

/* Who answers for <cid>: this CA, the previous issuer after a rotation's
 * switch (while its key is loaded), or NULL. */
static X509 *
cid_issuer(struct ca *ca, OCSP_CERTID *cid)
{
	ASN1_OBJECT *mdo = NULL;
	ASN1_INTEGER *serial = NULL;
	const EVP_MD *md;

	OCSP_id_get0_info(NULL, &mdo, NULL, &serial, cid);
	if ((md = mdo ? EVP_get_digestbyobj(mdo) : NULL) == NULL ||
	    serial == NULL)
		return NULL;
	if (cid_names(cid, md, ca->cert, serial))
		return ca->cert;
	if (ca->prev != NULL && ca->prev_signer != NULL &&
	    cid_names(cid, md, ca->prev, serial))
		return ca->prev;
	return NULL;
}

/*
 * One response has one signer: the issuer of the first request entry that
 * names one we answer for (this CA, or after a switch the previous one);
 * entries of any other issuer are "unknown" in it. A request naming none
 * gets "unauthorized" (RFC 6960 2.3: we cannot answer authoritatively; a
 * response signed by a key that is not the certificate's issuer would not
 * verify anyway), unsigned, as after a rotation's retire for the old
 * root's certificates.
 */
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
	X509 *signer_cert = NULL;
	char signer_name[256];
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
	for (i = 0; signer_cert == NULL && i < OCSP_request_onereq_count(rq);
	    i++)
		signer_cert = cid_issuer(ca, OCSP_onereq_get0_id(
		    OCSP_request_onereq_get0(rq, i)));
	if (signer_cert == NULL) {
		OCSP_REQUEST_free(rq);
		ERR_clear_error();
		return ocsp_fail(OCSP_RESPONSE_STATUS_UNAUTHORIZED, resp,
		    resp_len, err);
	}
	/* as the inventory holds a certificate's issuer (store.c) */
	name_oneline(X509_get_subject_name(signer_cert), signer_name,
	    sizeof(signer_name));
	if ((bs = OCSP_BASICRESP_new()) == NULL ||
	    (thisupd = X509_gmtime_adj(NULL, 0)) == NULL ||
	    (nextupd = X509_gmtime_adj(NULL, (long)next)) == NULL)
		goto nomem;
	for (i = 0; i < OCSP_request_onereq_count(rq); i++) {
		OCSP_CERTID *cid = OCSP_onereq_get0_id(
		    OCSP_request_onereq_get0(rq, i));
		ASN1_INTEGER *serial = NULL;
		struct cert_rec rec;
		struct mtls_error e;
		char hex[64];
		int st = V_OCSP_CERTSTATUS_UNKNOWN, found;

		if (cid_issuer(ca, cid) == signer_cert) {
			OCSP_id_get0_info(NULL, NULL, NULL, &serial, cid);
			serial_hex(serial, hex, sizeof(hex));
			found = store_get(ca->store, hex, &rec, &e);
			if (found < 0) {
				error_copy(err, &e);
				goto out;
			}
			/* the inventory's, by serial (unique in it, shared
			 * by both issuers), when the issuer named is the
			 * certificate's: after a switch, the old issuer
			 * with a serial the new one issued (or the other
			 * way) is "unknown", not the other's status */
			if (found == 0 && rec.issuer[0] != '\0' &&
			    strcmp(rec.issuer, signer_name) != 0)
				found = 1;
			if (found == 0)
				st = rec.revoked ? V_OCSP_CERTSTATUS_REVOKED :
				    V_OCSP_CERTSTATUS_GOOD;
		}
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
	if (signer_ocsp(signer_cert == ca->cert ? ca->signer : ca->prev_signer,
	    signer_cert, bs, err) != 0)
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
