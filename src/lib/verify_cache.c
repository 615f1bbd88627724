/*
 * The verification cache (DESIGN.md "Performance principles"): successful
 * path validations per frozen config, re-checked on every hit (moved out
 * of verify.c; the policy itself is there).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "private.h"

/*
 * The verification cache (DESIGN.md "Performance principles"). Verifying
 * the same client chain again on every handshake is most of a proxy's
 * certificate cost. An entry is keyed by SHA-256 over the purpose and the
 * exact chain bytes as presented; the cache belongs to one frozen config,
 * i.e. one trust bundle, CRL set and rule set (a reload builds a new config
 * and so an empty cache). Only successful path validations are cached. On
 * every hit we still check the validity window of the whole chain and of
 * the CRLs against the clock, the presented serials against the CRLs, and
 * the identity rules. A session ticket carries the key, so a resumption is
 * re-authorized from the cache without parsing a certificate.
 */
#define VCACHE_SLOTS	4096
#define VCACHE_CERTS	4

struct vcache_ent {
	int		 used;
	uint8_t		 key[32];
	int64_t		 not_before, not_after;
	struct ids	 ids;
	char		 serial[48];
	int		 ncerts;
	ASN1_INTEGER	*serials[VCACHE_CERTS];	/* presented certificates */
	X509		*x[VCACHE_CERTS];	/* the same, parsed, shared */
	uint64_t	 crl_mask[VCACHE_CERTS];	/* CRLs from their issuer */
};

struct verify_cache {
	pthread_mutex_t		 mu;
	int			 refs;		/* atomic */
	struct vcache_ent	*e;
};

struct verify_cache *
verify_cache_ref(struct verify_cache *vc)
{
	__atomic_add_fetch(&vc->refs, 1, __ATOMIC_ACQ_REL);
	return vc;
}

struct verify_cache *
verify_cache_new(void)
{
	struct verify_cache *vc = calloc(1, sizeof(*vc));

	if (vc == NULL)
		return NULL;
	/* entries are allocated on first use: most configs never verify */
	pthread_mutex_init(&vc->mu, NULL);
	vc->refs = 1;
	return vc;
}

static void
ent_clear(struct vcache_ent *e)
{
	int i;

	ids_free(&e->ids);
	for (i = 0; i < e->ncerts; i++) {
		ASN1_INTEGER_free(e->serials[i]);
		X509_free(e->x[i]);
	}
	memset(e, 0, sizeof(*e));
}

void
verify_cache_free(struct verify_cache *vc)
{
	int i;

	if (vc == NULL || __atomic_sub_fetch(&vc->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (i = 0; vc->e != NULL && i < VCACHE_SLOTS; i++)
		ent_clear(&vc->e[i]);
	free(vc->e);
	pthread_mutex_destroy(&vc->mu);
	free(vc);
}

int
verify_chain_key(STACK_OF(X509) *certs, int purpose, uint8_t key[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char d[EVP_MAX_MD_SIZE], p = (unsigned char)purpose;
	unsigned int n;
	int i, ok;

	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(md, &p, 1);
	for (i = 0; ok && i < sk_X509_num(certs); i++)
		ok = X509_digest(sk_X509_value(certs, i), EVP_sha256(), d, &n) &&
		    EVP_DigestUpdate(md, d, n);
	ok = ok && EVP_DigestFinal_ex(md, key, &n);
	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

/* On a hit: the window, the CRLs by serial, then the rules. Called with
 * the cache lock held; fills <out>. */
static int
hit_checks(const struct mtls_config *cfg, const struct vcache_ent *e,
    int64_t now, struct verify_out *out, struct mtls_error *err)
{
	X509_REVOKED *rev;
	int i, j;

	if (now < e->not_before || now > e->not_after)
		return 1;	/* outside the window: verify afresh */
	/* who it is, first: a refusal below is logged with the identity */
	if (ids_copy(&out->ids, &e->ids) != 0)
		return 1;
	memcpy(out->serial, e->serial, sizeof(out->serial));
	for (i = 0; i < e->ncerts; i++)
		for (j = 0; j < 64 && cfg->crls != NULL; j++)
			if ((e->crl_mask[i] >> j & 1) &&
			    X509_CRL_get0_by_serial(sk_X509_CRL_value(cfg->crls,
			    j), &rev, e->serials[i]) == 1)
				return error_fail(err, MTLS_FAIL_REVOKED,
				    "%s '%s' (serial %s) is revoked", i ?
				    "CA certificate of" : "leaf",
				    ids_primary(&e->ids) ? ids_primary(&e->ids) :
				    "?", e->serial);
	return verify_authorize(cfg, &out->ids, err);
}

int
verify_cache_lookup(const struct mtls_config *cfg, const uint8_t key[32],
    struct verify_out *out, struct mtls_error *err)
{
	struct verify_cache *vc = cfg->vcache;
	struct vcache_ent *e;
	int r = 1;

	memset(out, 0, sizeof(*out));
	error_clear(err);
	if (vc == NULL)
		return 1;
	pthread_mutex_lock(&vc->mu);
	if (vc->e != NULL) {
		e = &vc->e[(key[0] << 4 | key[1] >> 4) % VCACHE_SLOTS];
		if (e->used && memcmp(e->key, key, 32) == 0)
			r = hit_checks(cfg, e, verify_now(cfg), out, err);
	}
	pthread_mutex_unlock(&vc->mu);
	if (r > 0) {
		ids_free(&out->ids);
		out->serial[0] = '\0';
	}
	return r;
}

int
verify_cache_share(const struct mtls_config *cfg, const uint8_t key[32],
    STACK_OF(X509) *sk)
{
	struct verify_cache *vc = cfg->vcache;
	struct vcache_ent *e;
	int i, j, n = 0;

	if (vc == NULL || sk == NULL)
		return 0;
	pthread_mutex_lock(&vc->mu);
	e = vc->e != NULL ? &vc->e[(key[0] << 4 | key[1] >> 4) % VCACHE_SLOTS] :
	    NULL;
	if (e != NULL && e->used && memcmp(e->key, key, 32) == 0)
		for (i = 0; i < sk_X509_num(sk); i++) {
			X509 *u = sk_X509_value(sk, i);

			for (j = 0; j < e->ncerts; j++)
				if (e->x[j] != NULL && e->x[j] != u &&
				    X509_cmp(u, e->x[j]) == 0) {
					X509_up_ref(e->x[j]);
					sk_X509_set(sk, i, e->x[j]);
					X509_free(u);
					n++;
					break;
				}
		}
	pthread_mutex_unlock(&vc->mu);
	return n;
}

static void
cache_fill(const struct mtls_config *cfg, const uint8_t key[32],
    STACK_OF(X509) *certs, const struct verify_out *out)
{
	struct verify_cache *vc = cfg->vcache;
	struct vcache_ent *e, n;
	int64_t nb = 0, na = INT64_MAX, t;
	int i, j;

	memset(&n, 0, sizeof(n));
	if (sk_X509_num(certs) > VCACHE_CERTS ||
	    (cfg->crls != NULL && sk_X509_CRL_num(cfg->crls) > 64))
		return;
	for (i = 0; i < sk_X509_num(out->chain); i++) {
		X509 *x = sk_X509_value(out->chain, i);

		if ((t = asn1_time_unix(X509_get0_notBefore(x))) > nb)
			nb = t;
		if ((t = asn1_time_unix(X509_get0_notAfter(x))) < na)
			na = t;
	}
	for (j = 0; cfg->crls != NULL && j < sk_X509_CRL_num(cfg->crls); j++) {
		X509_CRL *c = sk_X509_CRL_value(cfg->crls, j);

		/* the CRL window with crl_skew_cb's skew */
		if ((t = asn1_time_unix(X509_CRL_get0_lastUpdate(c)) -
		    REVOCATION_SKEW) > nb)
			nb = t;
		if (X509_CRL_get0_nextUpdate(c) != NULL &&
		    (t = asn1_time_unix(X509_CRL_get0_nextUpdate(c)) +
		    REVOCATION_SKEW) < na)
			na = t;
		for (i = 0; i < sk_X509_num(certs); i++)
			if (X509_NAME_cmp(X509_CRL_get_issuer(c),
			    X509_get_issuer_name(sk_X509_value(certs, i))) == 0)
				n.crl_mask[i] |= 1ULL << j;
	}
	n.ncerts = sk_X509_num(certs);
	for (i = 0; i < n.ncerts; i++) {
		if ((n.serials[i] = ASN1_INTEGER_dup(X509_get0_serialNumber(
		    sk_X509_value(certs, i)))) == NULL)
			goto fail;
		X509_up_ref(sk_X509_value(certs, i));
		n.x[i] = sk_X509_value(certs, i);
	}
	if (ids_copy(&n.ids, &out->ids) != 0)
		goto fail;
	memcpy(n.key, key, 32);
	n.not_before = nb;
	n.not_after = na;
	memcpy(n.serial, out->serial, sizeof(n.serial));
	n.used = 1;
	pthread_mutex_lock(&vc->mu);
	if (vc->e == NULL)
		vc->e = calloc(VCACHE_SLOTS, sizeof(*vc->e));
	if (vc->e != NULL) {
		e = &vc->e[(key[0] << 4 | key[1] >> 4) % VCACHE_SLOTS];
		ent_clear(e);
		*e = n;
		n.ncerts = 0;
		memset(&n.ids, 0, sizeof(n.ids));
	}
	pthread_mutex_unlock(&vc->mu);
 fail:
	ent_clear(&n);
}

int
verify_chain_cached(const struct mtls_config *cfg, X509_STORE *store,
    STACK_OF(X509) *certs, int purpose, uint8_t key[32],
    struct verify_out *out, struct mtls_error *err)
{
	int r;

	if (cfg->vcache == NULL || certs == NULL || sk_X509_num(certs) == 0 ||
	    verify_chain_key(certs, purpose, key) != 0) {
		memset(key, 0, 32);
		return verify_chain(cfg, store, certs, purpose, out, err);
	}
	r = verify_cache_lookup(cfg, key, out, err);
	if (r <= 0)
		return r;
	if (verify_path(cfg, store, certs, purpose, out, err) != 0)
		return -1;
	cache_fill(cfg, key, certs, out);
	if (verify_authorize(cfg, &out->ids, err) != 0) {
		sk_X509_pop_free(out->chain, X509_free);
		out->chain = NULL;
		return -1;
	}
	return 0;
}
