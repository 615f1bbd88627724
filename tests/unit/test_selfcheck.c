/*
 * The CA's self-check (issue.c) verifies the first leaf of an open CA with
 * its whole chain (verify_chain) and every later one on the CA path that
 * verification built (verify_leaf_on_path, issue 15). Each leaf here goes
 * through both and must get the same verdict, the taxonomy code given:
 * a good leaf passes; a tampered signature, another issuer, an expired
 * leaf, a name outside the issuer's or the root's name constraints, a
 * SPIFFE ID outside the issuer's scope and a CA:TRUE leaf are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pki_fixture.h"

static int64_t now;

struct verifier {
	struct mtls_config *cfg;
	X509_STORE	*store;
	STACK_OF(X509)	*anchors;
	STACK_OF(X509)	*path;		/* issuer first */
};

static void
verifier_new(struct verifier *v, X509 *root)
{
	struct mtls_error err;

	memset(v, 0, sizeof(*v));
	assert_non_null(v->anchors = fx_stack(root, NULL));
	assert_non_null(v->cfg = mtls_config_new());
	config_borrow_trust(v->cfg, v->anchors);
	error_clear(&err);
	if ((v->store = verify_store_new(v->cfg, &err)) == NULL)
		fail_msg("verify_store_new: %s", err.msg);
}

static void
verifier_free(struct verifier *v)
{
	X509_STORE_free(v->store);
	config_borrow_trust(v->cfg, NULL);
	mtls_config_free(v->cfg);
	sk_X509_pop_free(v->anchors, X509_free);
	sk_X509_pop_free(v->path, X509_free);
}

/* The full verification of <leaf> on <chain> (issuer first, no root);
 * with <keep>, its CA path becomes v->path, as issue.c keeps it. */
static int
full(struct verifier *v, X509 *leaf, STACK_OF(X509) *chain, int keep)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	struct verify_out vo;
	struct mtls_error err;
	int i, rc;

	assert_non_null(certs);
	assert_true(sk_X509_push(certs, leaf));
	for (i = 0; i < sk_X509_num(chain); i++)
		assert_true(sk_X509_push(certs, sk_X509_value(chain, i)));
	error_clear(&err);
	rc = verify_chain(v->cfg, v->store, certs, MTLS_PURPOSE_ANY, &vo, &err);
	sk_X509_free(certs);
	if (rc == 0 && keep) {
		assert_non_null(v->path = sk_X509_new_null());
		for (i = 1; i < sk_X509_num(vo.chain); i++) {
			assert_true(sk_X509_push(v->path,
			    sk_X509_value(vo.chain, i)));
			X509_up_ref(sk_X509_value(vo.chain, i));
		}
	}
	verify_out_free(&vo);
	return rc == 0 ? 0 : err.fail;
}

static int
on_path(struct verifier *v, X509 *leaf)
{
	struct verify_out vo;
	struct mtls_error err;
	int rc;

	error_clear(&err);
	rc = verify_leaf_on_path(v->cfg, v->store, v->path, leaf, &vo, &err);
	if (rc == 0)
		assert_int_equal(sk_X509_num(vo.chain),
		    sk_X509_num(v->path) + 1);
	else
		assert_int_not_equal(err.fail, 0);
	verify_out_free(&vo);
	return rc == 0 ? 0 : err.fail;
}

/* Both verdicts on <leaf>: the same, and <want> (0: accepted; -1: a
 * refusal, whichever code). */
static void
both(struct verifier *v, X509 *leaf, STACK_OF(X509) *chain, int want)
{
	int a = full(v, leaf, chain, 0), b = on_path(v, leaf);

	if (want == -1 && a != 0)
		want = a;
	if (a != want || b != want)
		fail_msg("full %s, on the path %s, want %s",
		    a ? mtls_fail_name(a) : "ok", b ? mtls_fail_name(b) : "ok",
		    want ? mtls_fail_name(want) : "ok");
}

static X509 *
tampered(X509 *x)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	X509 *y;
	int n;

	assert_true((n = i2d_X509(x, &der)) > 0);
	der[n - 3] ^= 0x01;	/* inside the signature's last INTEGER */
	p = der;
	assert_non_null(y = d2i_X509(NULL, &p, n));
	OPENSSL_free(der);
	return y;
}

/* root → intermediate scoped to example.org (spiffe://example.org/ns/a,
 * DNS a.example.org) */
static void
t_scoped_intermediate(void **state)
{
	char *sp[] = { "spiffe://example.org/ns/a" };
	char *dns[] = { "a.example.org" };
	const char *good[] = { "spiffe://example.org/ns/a/web",
	    "dns:web.a.example.org", NULL };
	const char *out_dns[] = { "spiffe://example.org/ns/a/web",
	    "dns:web.b.example.org", NULL };
	const char *out_ns[] = { "spiffe://example.org/ns/b/web", NULL };
	struct fx_cert root = fx_root("example.org", "Root", now);
	struct fx_cert other = fx_root("example.org", "Other", now);
	struct fx_cert ica = fx_intermediate(&root, "example.org", "ICA",
	    sp, 1, dns, 1, now);
	struct fx_cert oica = fx_intermediate(&other, "example.org", "ICA",
	    sp, 1, dns, 1, now);
	struct fx_cert l_good = fx_leaf(&ica, "example.org", good, now - 60,
	    now + FX_DAY);
	struct fx_cert l_dns = fx_leaf(&ica, "example.org", out_dns,
	    now - 60, now + FX_DAY);
	struct fx_cert l_ns = fx_leaf(&ica, "example.org", out_ns, now - 60,
	    now + FX_DAY);
	struct fx_cert l_old = fx_leaf(&ica, "example.org", good,
	    now - 10 * FX_DAY, now - FX_DAY);
	struct fx_cert l_oth = fx_leaf(&oica, "example.org", good, now - 60,
	    now + FX_DAY);
	STACK_OF(X509) *chain = fx_stack(ica.x, NULL);
	struct verifier v;
	X509 *bad;

	(void)state;
	verifier_new(&v, root.x);
	assert_int_equal(full(&v, l_good.x, chain, 1), 0);
	assert_int_equal(sk_X509_num(v.path), 2);
	both(&v, l_good.x, chain, 0);
	bad = tampered(l_good.x);
	both(&v, bad, chain, -1);
	X509_free(bad);
	both(&v, l_dns.x, chain, MTLS_FAIL_NAME_CONSTRAINTS);
	both(&v, l_ns.x, chain, MTLS_FAIL_NAME_CONSTRAINTS);
	both(&v, l_old.x, chain, MTLS_FAIL_CERT_EXPIRED);
	/* same issuer name, another key: refused on the path; the full
	 * verification finds no issuer either */
	assert_int_not_equal(on_path(&v, l_oth.x), 0);
	assert_int_not_equal(full(&v, l_oth.x, chain, 0), 0);
	verifier_free(&v);
	sk_X509_pop_free(chain, X509_free);
	fx_cert_free(&l_good);
	fx_cert_free(&l_dns);
	fx_cert_free(&l_ns);
	fx_cert_free(&l_old);
	fx_cert_free(&l_oth);
	fx_cert_free(&oica);
	fx_cert_free(&ica);
	fx_cert_free(&other);
	fx_cert_free(&root);
}

/* A root with name constraints, an unconstrained intermediate under it:
 * the root's constraints bind the leaf though the root is not the
 * issuer (on the path they are applied by NAME_CONSTRAINTS_check). */
static void
t_root_constraints(void **state)
{
	struct fx_cert root = fx_mk("example.org", "NC Root", NULL,
	    "basicConstraints=critical,CA:TRUE\n"
	    "keyUsage=critical,keyCertSign,cRLSign\n"
	    "nameConstraints=critical,permitted;DNS:good.example",
	    NULL, NULL, 0, now - 60);
	const char *in[] = { "dns:www.good.example", NULL };
	const char *out[] = { "dns:www.bad.example", NULL };
	struct fx_cert ica, l_in, l_out, l_ca;
	STACK_OF(X509) *chain;
	struct verifier v;

	(void)state;
	ica = fx_mk("example.org", "Plain ICA", &root,
	    "basicConstraints=critical,CA:TRUE\n"
	    "keyUsage=critical,keyCertSign,cRLSign", NULL, NULL, 0, now - 30);
	l_in = fx_leaf(&ica, "example.org", in, now - 20, now + FX_DAY);
	l_out = fx_leaf(&ica, "example.org", out, now - 20, now + FX_DAY);
	l_ca = fx_mk("example.org", "www.good.example", &ica,
	    "basicConstraints=critical,CA:TRUE\n"
	    "keyUsage=critical,keyCertSign,digitalSignature\n"
	    "subjectAltName=DNS:www.good.example", NULL, NULL, 0, now - 20);
	chain = fx_stack(ica.x, NULL);
	verifier_new(&v, root.x);
	assert_int_equal(full(&v, l_in.x, chain, 1), 0);
	both(&v, l_in.x, chain, 0);
	both(&v, l_out.x, chain, MTLS_FAIL_NAME_CONSTRAINTS);
	/* a CA:TRUE "leaf" is not an end entity */
	both(&v, l_ca.x, chain, MTLS_FAIL_BAD_KEY_USAGE);
	verifier_free(&v);
	sk_X509_pop_free(chain, X509_free);
	fx_cert_free(&l_in);
	fx_cert_free(&l_out);
	fx_cert_free(&l_ca);
	fx_cert_free(&ica);
	fx_cert_free(&root);
}

/* A root that expires while the intermediate under it still runs: once
 * the root is past its notAfter, the next leaf is refused on the path as
 * by the full verification (the path is kept, its validity is not). */
static void
t_root_expires(void **state)
{
	const char *ids[] = { "spiffe://example.org/w", NULL };
	struct fx_cert root = fx_mk("example.org", "Short Root", NULL,
	    "basicConstraints=critical,CA:TRUE\n"
	    "keyUsage=critical,keyCertSign,cRLSign", NULL, NULL, 0, now - 60);
	struct fx_cert ica = fx_intermediate(&root, "example.org", "Long ICA",
	    NULL, 0, NULL, 0, now);
	struct fx_cert leaf = fx_leaf(&ica, "example.org", ids, now - 30,
	    now + 10 * FX_DAY);
	STACK_OF(X509) *chain = fx_stack(ica.x, NULL);
	struct verifier v;

	(void)state;
	verifier_new(&v, root.x);
	assert_int_equal(full(&v, leaf.x, chain, 1), 0);
	both(&v, leaf.x, chain, 0);
	assert_int_equal(mtls_config_set_verify_time(v.cfg, now + 3 * FX_DAY),
	    0);
	both(&v, leaf.x, chain, MTLS_FAIL_CERT_EXPIRED);
	verifier_free(&v);
	sk_X509_pop_free(chain, X509_free);
	fx_cert_free(&leaf);
	fx_cert_free(&ica);
	fx_cert_free(&root);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_scoped_intermediate),
		cmocka_unit_test(t_root_constraints),
		cmocka_unit_test(t_root_expires),
	};

	now = (int64_t)time(NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
