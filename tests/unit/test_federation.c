/*
 * Federated trust domains (verify.c check_trust_domain, config.c
 * mtls_config_add_trust_domain_*): a partner's root vouches for its own
 * trust domain's SPIFFE IDs only, through the plain path, the cache and
 * the public API. Certificates are made at run time (pki_fixture.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pki_fixture.h"

#define MTLS_BUILDING_LIB
#include "private.h"

static struct {
	int64_t		now;
	struct fx_cert	root, partner, pint, other;
	char		*root_pem, *partner_pem, *other_pem;
} pki;

static char *
pem_of(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *m;
	char *s;

	assert_non_null(b);
	assert_int_equal(PEM_write_bio_X509(b, x), 1);
	BIO_get_mem_ptr(b, &m);
	assert_non_null(s = calloc(1, m->length + 1));
	memcpy(s, m->data, m->length);
	BIO_free(b);
	return s;
}

static int
setup(void **state)
{
	(void)state;
	pki.now = (int64_t)time(NULL);
	pki.root = fx_root("example.org", "example.org Root", pki.now);
	pki.partner = fx_root("partner.com", "partner.com Root", pki.now);
	/* an unscoped intermediate of the partner: its leaves are still
	 * the partner's root's to vouch for */
	pki.pint = fx_intermediate(&pki.partner, "partner.com", "partner int",
	    NULL, 0, NULL, 0, pki.now);
	pki.other = fx_root("other.net", "other.net Root", pki.now);
	pki.root_pem = pem_of(pki.root.x);
	pki.partner_pem = pem_of(pki.partner.x);
	pki.other_pem = pem_of(pki.other.x);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	fx_cert_free(&pki.root);
	fx_cert_free(&pki.partner);
	fx_cert_free(&pki.pint);
	fx_cert_free(&pki.other);
	free(pki.root_pem);
	free(pki.partner_pem);
	free(pki.other_pem);
	return 0;
}

/* Our root plus partner.com's, as a verifier; <allow> NULL: allow any. */
static struct mtls *
verifier(const char *allow)
{
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *m = mtls_new();

	assert_non_null(cfg);
	assert_non_null(m);
	assert_int_equal(mtls_config_set_trust_mem(cfg,
	    (const uint8_t *)pki.root_pem, strlen(pki.root_pem)), 0);
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "partner.com",
	    (const uint8_t *)pki.partner_pem, strlen(pki.partner_pem)), 0);
	if (allow != NULL)
		assert_int_equal(mtls_config_add_allow(cfg, allow), 0);
	else
		assert_int_equal(mtls_config_set_allow_any(cfg), 0);
	assert_int_equal(mtls_configure(m, cfg), 0);
	mtls_config_free(cfg);
	return m;
}

/* The chain of a leaf with <ids> under <issuer> (then <mid>, if any). */
static STACK_OF(X509) *
chain(const struct fx_cert *issuer, const struct fx_cert *mid,
    const char * const *ids, struct fx_cert *leaf)
{
	*leaf = fx_leaf(issuer, "t", ids, pki.now - 60, pki.now + FX_DAY);
	return fx_stack(leaf->x, mid ? mid->x : NULL, NULL);
}

/* verify_chain_cached twice (miss, then hit): the same verdict. */
static int
verify2(struct mtls *m, STACK_OF(X509) *sk, struct verify_out *out,
    struct mtls_error *err)
{
	uint8_t key[32];
	int r1, f1;

	r1 = verify_chain_cached(m->cfg, m->store, sk, MTLS_PURPOSE_ANY, key,
	    out, err);
	f1 = err->fail;
	verify_out_free(out);
	assert_int_equal(verify_chain_cached(m->cfg, m->store, sk,
	    MTLS_PURPOSE_ANY, key, out, err), r1);
	assert_int_equal(err->fail, f1);
	return r1;
}

/* A leaf with <ids> under <issuer> (then <mid>) gets <want> from <m>
 * through the cache twice (0: accepted, with <n_ids> identities left),
 * with <msg> in the reason when given. */
static void
expect(struct mtls *m, const struct fx_cert *issuer, const struct fx_cert *mid,
    const char * const *ids, int want, size_t n_ids, const char *msg)
{
	struct verify_out out;
	struct mtls_error err;
	struct fx_cert leaf;
	STACK_OF(X509) *sk = chain(issuer, mid, ids, &leaf);

	assert_int_equal(verify2(m, sk, &out, &err), want ? -1 : 0);
	assert_int_equal(err.fail, want);
	if (want == 0)
		assert_int_equal(out.ids.n, n_ids);
	if (msg != NULL)
		assert_non_null(strstr(err.msg, msg));
	verify_out_free(&out);
	sk_X509_pop_free(sk, X509_free);
	fx_cert_free(&leaf);
}

static void
test_partner_identity(void **state)
{
	static const char *const ids[] = { "spiffe://partner.com/ns/web",
	    "dns:admin.example.org", NULL };
	struct mtls *m = verifier("spiffe://partner.com/ns/web");
	struct verify_out out;
	struct mtls_error err;
	struct fx_cert leaf;
	STACK_OF(X509) *sk = chain(&pki.partner, NULL, ids, &leaf);

	(void)state;
	assert_int_equal(verify2(m, sk, &out, &err), 0);
	/* the rules saw the SPIFFE ID alone: the partner does not vouch
	 * for a DNS name under our domain */
	assert_int_equal(out.ids.n, 1);
	assert_string_equal(out.ids.v[0], "spiffe://partner.com/ns/web");
	verify_out_free(&out);
	sk_X509_pop_free(sk, X509_free);
	fx_cert_free(&leaf);
	mtls_free(m);
	/* so a dns: rule of ours does not let the partner's leaf in */
	m = verifier("dns:admin.example.org");
	expect(m, &pki.partner, NULL, ids, MTLS_FAIL_NOT_AUTHORIZED, 0, NULL);
	mtls_free(m);
}

static void
test_partner_vouching_for_us(void **state)
{
	static const char *const ours[] = {
	    "spiffe://example.org/ns/prod/client", NULL };
	static const char *const dns_only[] = { "dns:web.partner.com", NULL };
	static const char *const lookalike[] = {
	    "spiffe://partner.com.example.org/x", NULL };
	static const char *const o2[] = { "spiffe://example.org/ns/x", NULL };
	struct mtls *m = verifier(NULL);
	struct fx_cert leaf;
	STACK_OF(X509) *sk;
	char *pem;

	(void)state;
	/* the partner's root issuing one of our identities */
	expect(m, &pki.partner, NULL, ours, MTLS_FAIL_TRUST_DOMAIN_MISMATCH, 0,
	    "outside trust domain partner.com");
	/* through an intermediate without any constraint */
	expect(m, &pki.pint, &pki.pint, ours, MTLS_FAIL_TRUST_DOMAIN_MISMATCH,
	    0, NULL);
	/* no SPIFFE ID at all */
	expect(m, &pki.partner, NULL, dns_only,
	    MTLS_FAIL_TRUST_DOMAIN_MISMATCH, 0, "no SPIFFE ID");
	/* a trust domain that only starts with the partner's */
	expect(m, &pki.partner, NULL, lookalike,
	    MTLS_FAIL_TRUST_DOMAIN_MISMATCH, 0, NULL);
	/* the public API says the same */
	sk = chain(&pki.partner, NULL, o2, &leaf);
	pem = pem_of(leaf.x);
	assert_int_equal(mtls_verify_pem(m, (const uint8_t *)pem, strlen(pem)),
	    -1);
	assert_int_equal(mtls_fail_code(m), MTLS_FAIL_TRUST_DOMAIN_MISMATCH);
	assert_string_equal(mtls_fail_name(mtls_fail_code(m)),
	    "trust_domain_mismatch");
	free(pem);
	sk_X509_pop_free(sk, X509_free);
	fx_cert_free(&leaf);
	mtls_free(m);
}

/* Our own root vouches for any name, as before federation. */
static void
test_own_root_unchanged(void **state)
{
	static const char *const dns_only[] = { "dns:api.example.org", NULL };
	static const char *const partner_id[] = {
	    "spiffe://partner.com/ns/web", "dns:api.example.org", NULL };
	struct mtls *m = verifier(NULL);

	(void)state;
	expect(m, &pki.root, NULL, dns_only, 0, 1, NULL);
	expect(m, &pki.root, NULL, partner_id, 0, 2, NULL);
	mtls_free(m);
}

static void
test_config_rules(void **state)
{
	struct mtls_config *cfg = mtls_config_new(), *plain = mtls_config_new();
	const uint8_t *pp = (const uint8_t *)pki.partner_pem;
	size_t pl = strlen(pki.partner_pem);

	(void)state;
	assert_non_null(cfg);
	/* bad trust domain names */
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "Partner.com",
	    pp, pl), -1);
	assert_int_equal(mtls_config_error_code(cfg), MTLS_ERR_ARG);
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "", pp, pl), -1);
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, NULL, pp, pl),
	    -1);
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "a.com:443",
	    pp, pl), -1);
	assert_null(cfg->fed);
	/* one root, one trust domain; the same again is kept once */
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "partner.com",
	    pp, pl), 0);
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "partner.com",
	    pp, pl), 0);
	assert_int_equal(sk_X509_num(cfg->fed), 1);
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "partner.org",
	    pp, pl), -1);
	assert_non_null(strstr(mtls_config_error(cfg),
	    "anchor of trust domain partner.com"));
	assert_int_equal(sk_X509_num(cfg->fed), 1);
	assert_int_equal(sk_X509_num(cfg->trust), 1);
	/* our own bundle set after keeps the federated anchors */
	assert_int_equal(mtls_config_set_trust_mem(cfg,
	    (const uint8_t *)pki.root_pem, strlen(pki.root_pem)), 0);
	assert_int_equal(sk_X509_num(cfg->trust), 2);
	assert_string_equal(verify_fed_td(cfg, pki.partner.x), "partner.com");
	assert_null(verify_fed_td(cfg, pki.root.x));
	/* one root, one trust domain, ours included: a partner's bundle
	 * holding our root is refused (it would scope our root to the
	 * partner), and so is our own bundle holding a partner's root */
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "evil.com",
	    (const uint8_t *)pki.root_pem, strlen(pki.root_pem)), -1);
	assert_non_null(strstr(mtls_config_error(cfg), "our own roots"));
	assert_int_equal(mtls_config_set_trust_mem(cfg, pp, pl), -1);
	assert_non_null(strstr(mtls_config_error(cfg),
	    "anchor of trust domain partner.com"));
	assert_int_equal(sk_X509_num(cfg->trust), 2);
	assert_int_equal(sk_X509_num(cfg->fed), 1);
	assert_null(verify_fed_td(cfg, pki.root.x));
	/* the generation (cache sharing across reloads) tells a federated
	 * root from the same root trusted as our own */
	assert_int_equal(mtls_config_set_trust_mem(plain,
	    (const uint8_t *)pki.root_pem, strlen(pki.root_pem)), 0);
	{
		char *both = NULL;
		size_t n = strlen(pki.root_pem) + pl;

		assert_non_null(both = malloc(n + 1));
		snprintf(both, n + 1, "%s%s", pki.partner_pem, pki.root_pem);
		assert_int_equal(mtls_config_set_trust_mem(plain,
		    (const uint8_t *)both, n), 0);
		free(both);
	}
	config_freeze(cfg);
	config_freeze(plain);
	assert_true(cfg->generation != plain->generation);
	/* frozen: no more changes */
	assert_int_equal(mtls_config_add_trust_domain_mem(cfg, "other.net",
	    (const uint8_t *)pki.other_pem, strlen(pki.other_pem)), -1);
	assert_int_equal(mtls_config_error_code(cfg), MTLS_ERR_STATE);
	mtls_config_free(cfg);
	mtls_config_free(plain);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_partner_identity),
		cmocka_unit_test(test_partner_vouching_for_us),
		cmocka_unit_test(test_own_root_unchanged),
		cmocka_unit_test(test_config_rules),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
