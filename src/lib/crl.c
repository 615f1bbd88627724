/* CRL building (RFC 5280 5): v2, CRL number, AKI, reason codes. */
#include <string.h>
#include <strings.h>

#include <openssl/x509v3.h>

#include "internal.h"

static const char *reasons[] = {
	[CRL_REASON_UNSPECIFIED] = "unspecified",
	[CRL_REASON_KEY_COMPROMISE] = "keyCompromise",
	[CRL_REASON_CA_COMPROMISE] = "cACompromise",
	[CRL_REASON_AFFILIATION_CHANGED] = "affiliationChanged",
	[CRL_REASON_SUPERSEDED] = "superseded",
	[CRL_REASON_CESSATION_OF_OPERATION] = "cessationOfOperation",
	[CRL_REASON_CERTIFICATE_HOLD] = "certificateHold",
	[CRL_REASON_REMOVE_FROM_CRL] = NULL,
	[CRL_REASON_PRIVILEGE_WITHDRAWN] = "privilegeWithdrawn",
	[CRL_REASON_AA_COMPROMISE] = "aACompromise",
};

int
crl_reason_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i] != NULL && strcasecmp(s, reasons[i]) == 0)
			return (int)i;
	return -1;
}

const char *
crl_reason_name(int r)
{
	if (r < 0 || (size_t)r >= sizeof(reasons) / sizeof(reasons[0]) ||
	    reasons[r] == NULL)
		return "unspecified";
	return reasons[r];
}

int
crl_build(X509 *ca, EVP_PKEY *key, const struct crl_entry *ents, size_t n,
    int64_t number, int64_t this_update, int64_t next_update,
    X509_CRL **out, struct mtls_error *err)
{
	X509_CRL *crl = NULL;
	ASN1_TIME *t = NULL;
	ASN1_INTEGER *num = NULL;
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	size_t i;
	int rv = -1;

	*out = NULL;
	if ((crl = X509_CRL_new()) == NULL || (t = ASN1_TIME_new()) == NULL)
		goto nomem;
	if (!X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)))
		goto nomem;
	if (!ASN1_TIME_set(t, (time_t)this_update) ||
	    !X509_CRL_set1_lastUpdate(crl, t) ||
	    !ASN1_TIME_set(t, (time_t)next_update) ||
	    !X509_CRL_set1_nextUpdate(crl, t))
		goto nomem;
	for (i = 0; i < n; i++) {
		X509_REVOKED *rev = X509_REVOKED_new();
		ASN1_INTEGER *sn = NULL;
		ASN1_ENUMERATED *rc = NULL;
		BIGNUM *bn = NULL;
		int ok;

		ok = rev != NULL && BN_hex2bn(&bn, ents[i].serial_hex) > 0 &&
		    (sn = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
		    X509_REVOKED_set_serialNumber(rev, sn) &&
		    ASN1_TIME_set(t, (time_t)ents[i].revoked_at) &&
		    X509_REVOKED_set_revocationDate(rev, t);
		if (ok && ents[i].reason != CRL_REASON_UNSPECIFIED) {
			ok = (rc = ASN1_ENUMERATED_new()) != NULL &&
			    ASN1_ENUMERATED_set(rc, ents[i].reason) &&
			    X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, rc,
			    0, 0);
		}
		ASN1_ENUMERATED_free(rc);
		ASN1_INTEGER_free(sn);
		BN_free(bn);
		if (!ok || !X509_CRL_add0_revoked(crl, rev)) {
			X509_REVOKED_free(rev);
			error_set_ossl(err, MTLS_ERR_ARG,
			    "CRL entry %s cannot be encoded", ents[i].serial_hex);
			goto err;
		}
	}
	if ((num = ASN1_INTEGER_new()) == NULL ||
	    !ASN1_INTEGER_set_int64(num, number) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
		goto nomem;
	X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier,
	    "keyid:always");
	if (ext == NULL || !X509_CRL_add_ext(crl, ext, -1)) {
		X509_EXTENSION_free(ext);
		error_set_ossl(err, MTLS_ERR_CRYPTO, "CRL: cannot add AKI");
		goto err;
	}
	X509_EXTENSION_free(ext);
	if (!X509_CRL_sort(crl))
		goto nomem;
	if (!X509_CRL_sign(crl, key, sign_digest(key))) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "CRL: cannot sign");
		goto err;
	}
	*out = crl;
	crl = NULL;
	rv = 0;
	goto err;
 nomem:
	error_set_ossl(err, MTLS_ERR_NOMEM, "CRL: out of memory");
 err:
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	return rv;
}
