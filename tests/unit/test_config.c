/*
 * config.c: setters copy and check their input, refuse bad input with a
 * reason naming it and leave the config unchanged, and refuse everything
 * once a context has frozen the config; the generation follows exactly
 * what decides authorization.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "pki_fixture.h"
/* a white-box test of config.c: it reads the config's fields, which only
 * src/lib (and its own unit tests) may see */
#define MTLS_BUILDING_LIB
#include "private.h"

static struct {
	char		 dir[256];
	int64_t		 now;
	struct fx_cert	 root, inter, leaf, other;
	char		 root_pem[512], leaf_pem[512], leaf_key[512];
	char		 inter_pem[512];
} pki;

static int
make_pki(void **state)
{
	static const char *ids[] = { "spiffe://example.org/ns/prod/api", NULL };
	STACK_OF(X509) *sk;

	(void)state;
	fx_tmpdir(pki.dir, sizeof(pki.dir));
	pki.now = (int64_t)time(NULL);
	pki.root = fx_root("example.org", "example.org Root CA", pki.now);
	pki.inter = fx_intermediate(&pki.root, "example.org", "open", NULL, 0,
	    NULL, 0, pki.now);
	pki.leaf = fx_leaf(&pki.inter, "example.org", ids, pki.now - 60,
	    pki.now + FX_DAY);
	/* the same name as the root, another key */
	pki.other = fx_root("example.org", "example.org Root CA", pki.now);
	fx_write_cert(pki.dir, "root.pem", pki.root.x, pki.root_pem,
	    sizeof(pki.root_pem));
	fx_write_cert(pki.dir, "inter.pem", pki.inter.x, pki.inter_pem,
	    sizeof(pki.inter_pem));
	sk = fx_stack(pki.leaf.x, pki.inter.x, NULL);
	fx_write_certs(pki.dir, "leaf.pem", sk, pki.leaf_pem,
	    sizeof(pki.leaf_pem));
	sk_X509_pop_free(sk, X509_free);
	fx_write_key(pki.dir, "leaf.key", pki.leaf.k, pki.leaf_key,
	    sizeof(pki.leaf_key));
	return 0;
}

static int
free_pki(void **state)
{
	(void)state;
	fx_cert_free(&pki.root);
	fx_cert_free(&pki.inter);
	fx_cert_free(&pki.leaf);
	fx_cert_free(&pki.other);
	fx_rmdir(pki.dir);
	return 0;
}

static void
write_file(const char *name, const void *data, size_t len, char *path,
    size_t plen)
{
	struct mtls_error err;

	snprintf(path, plen, "%s/%s", pki.dir, name);
	assert_int_equal(fs_write_atomic(path, data, len, 0600, 1, &err), 0);
}

/* <cfg>'s last call failed with <code> and a message containing <has>. */
static void
refused(struct mtls_config *cfg, int rv, int code, const char *has)
{
	assert_int_equal(rv, -1);
	assert_int_equal(mtls_config_error_code(cfg), code);
	if (has != NULL && strstr(mtls_config_error(cfg), has) == NULL)
		fail_msg("'%s' lacks '%s'", mtls_config_error(cfg), has);
}

static void
test_bad_input(void **state)
{
	struct mtls_config *cfg = mtls_config_new();
	char path[512], long_alpn[80];
	uint8_t keys[79] = { 0 };

	(void)state;
	assert_non_null(cfg);
	assert_string_equal(mtls_config_error(cfg), "");
	refused(cfg, mtls_config_add_allow(cfg, "spiffe://Example.org/x"),
	    MTLS_ERR_ARG, "allow rule 'spiffe://Example.org/x'");
	refused(cfg, mtls_config_add_expect(cfg, "dns:-bad-"), MTLS_ERR_ARG,
	    "expected identity");
	assert_int_equal(cfg->n_allow + cfg->n_expect, 0);
	refused(cfg, mtls_config_set_alpn(cfg, "h2,,http/1.1"), MTLS_ERR_ARG,
	    "ALPN");
	memset(long_alpn, 'a', 40);
	long_alpn[40] = '\0';
	refused(cfg, mtls_config_set_alpn(cfg, long_alpn), MTLS_ERR_ARG, NULL);
	refused(cfg, mtls_config_set_purpose(cfg, (enum mtls_purpose)7),
	    MTLS_ERR_ARG, "purpose");
	refused(cfg, mtls_config_set_verify_time(cfg, -1), MTLS_ERR_ARG, NULL);
	refused(cfg, mtls_config_set_min_tls(cfg, "1.1"), MTLS_ERR_ARG,
	    "'1.1'");
	assert_int_equal(cfg->min_tls, TLS1_3_VERSION);
	assert_int_equal(mtls_config_set_min_tls(cfg, "1.2"), 0);
	assert_int_equal(cfg->min_tls, TLS1_2_VERSION);
	write_file("tk79", keys, sizeof(keys), path, sizeof(path));
	refused(cfg, mtls_config_set_ticket_key_file(cfg, path), MTLS_ERR_PARSE,
	    "79 bytes");
	snprintf(path, sizeof(path), "%s/missing.pem", pki.dir);
	refused(cfg, mtls_config_set_trust_file(cfg, path), MTLS_ERR_IO,
	    "missing.pem");
	assert_null(cfg->trust);
	/* a key that is not the certificate's */
	refused(cfg, mtls_config_set_identity_file(cfg, pki.root_pem,
	    pki.leaf_key), MTLS_ERR_PARSE, "does not match");
	assert_null(cfg->chain);
	assert_null(cfg->key);
	mtls_config_free(cfg);
	mtls_config_free(NULL);
}

/* Every file a config reads is a regular file under the size limit: a
 * FIFO is refused at once (never waited on), a directory by its kind. */
static void
test_not_a_file(void **state)
{
	struct mtls_config *cfg = mtls_config_new();
	char path[512];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/fifo", pki.dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	refused(cfg, mtls_config_set_trust_file(cfg, path), MTLS_ERR_IO,
	    "not a regular file (a FIFO)");
	refused(cfg, mtls_config_add_crl_file(cfg, path), MTLS_ERR_IO,
	    "a FIFO");
	refused(cfg, mtls_config_set_ticket_key_file(cfg, path), MTLS_ERR_IO,
	    "a FIFO");
	refused(cfg, mtls_config_set_trust_file(cfg, pki.dir), MTLS_ERR_IO,
	    "a directory");
	/* over the limit (a sparse file: nothing is written) */
	snprintf(path, sizeof(path), "%s/huge.pem", pki.dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) >= 0);
	assert_int_equal(ftruncate(fd, (off_t)MTLS_MAX_FILE + 1), 0);
	close(fd);
	refused(cfg, mtls_config_set_trust_file(cfg, path), MTLS_ERR_IO,
	    "limit");
	assert_null(cfg->trust);
	mtls_config_free(cfg);
}

static void
test_frozen(void **state)
{
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *m = mtls_new();
	uint8_t der[2] = { 0x30, 0x00 };

	(void)state;
	assert_int_equal(mtls_config_set_trust_file(cfg, pki.root_pem), 0);
	/* a context needs anchors */
	{
		struct mtls_config *empty = mtls_config_new();

		assert_int_equal(mtls_configure(m, empty), -1);
		assert_int_equal(mtls_error_code(m), MTLS_ERR_ARG);
		mtls_config_free(empty);
	}
	assert_int_equal(mtls_configure(m, cfg), 0);
	refused(cfg, mtls_config_add_allow(cfg, "spiffe://example.org/*"),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_add_expect(cfg, "dns:a.example.org"),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_allow_any(cfg), MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_peer_optional(cfg), MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_require_staple(cfg), MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_trust_file(cfg, pki.root_pem),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_add_untrusted_file(cfg, pki.inter_pem),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_identity_file(cfg, pki.leaf_pem,
	    pki.leaf_key), MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_key_passphrase(cfg, "x", 1),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_purpose(cfg, MTLS_PURPOSE_CLIENT),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_verify_time(cfg, 1), MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_min_tls(cfg, "1.2"), MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_alpn(cfg, "h2"), MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_ocsp_staple(cfg, der, sizeof(der)),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_add_crl_mem(cfg, der, sizeof(der), "x"),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_add_crl_file(cfg, pki.root_pem),
	    MTLS_ERR_STATE, NULL);
	refused(cfg, mtls_config_set_ticket_key_file(cfg, pki.root_pem),
	    MTLS_ERR_STATE, NULL);
	assert_int_equal(cfg->n_allow, 0);
	assert_int_equal(cfg->allow_any, 0);
	mtls_free(m);
	mtls_config_free(cfg);
}

static void
test_passphrase(void **state)
{
	struct mtls_config *cfg = mtls_config_new();
	struct mtls_secret pass = { NULL, 0 };
	struct mtls_error err;
	char path[512];

	(void)state;
	assert_int_equal(secret_set(&pass, "open sesame", 11), 0);
	snprintf(path, sizeof(path), "%s/enc.key", pki.dir);
	assert_int_equal(key_write(path, pki.leaf.k, &pass, 1, &err), 0);
	/* without the passphrase the key cannot be read, and nothing is set */
	assert_int_equal(mtls_config_set_identity_file(cfg, pki.leaf_pem, path),
	    -1);
	assert_non_null(strstr(mtls_config_error(cfg), "enc.key"));
	assert_null(cfg->chain);
	assert_int_equal(mtls_config_set_key_passphrase(cfg, "open sesame", 11),
	    0);
	assert_int_equal(mtls_config_set_identity_file(cfg, pki.leaf_pem, path),
	    0);
	assert_int_equal(sk_X509_num(cfg->chain), 2);
	assert_int_equal(EVP_PKEY_eq(cfg->key, pki.leaf.k), 1);
	secret_clear(&pass);
	mtls_config_free(cfg);
}

static void
test_untrusted_accumulates(void **state)
{
	struct mtls_config *cfg = mtls_config_new();

	(void)state;
	assert_int_equal(mtls_config_add_untrusted_file(cfg, pki.inter_pem), 0);
	assert_int_equal(mtls_config_add_untrusted_file(cfg, pki.leaf_pem), 0);
	assert_int_equal(sk_X509_num(cfg->untrusted), 3);
	mtls_config_free(cfg);
}

/* A CRL whose issuer the config knows must carry that issuer's signature;
 * one from an unknown issuer is left to verification. */
static void
test_crl_checked_on_add(void **state)
{
	struct mtls_config *cfg = mtls_config_new();
	X509_CRL *good = fx_crl(&pki.root, NULL, pki.now);
	X509_CRL *forged = fx_crl(&pki.other, NULL, pki.now);
	X509_CRL *inter = fx_crl(&pki.inter, pki.leaf.x, pki.now);
	unsigned char *der = NULL;
	int n;

	(void)state;
	assert_int_equal(mtls_config_set_trust_file(cfg, pki.root_pem), 0);
	assert_true((n = i2d_X509_CRL(forged, &der)) > 0);
	refused(cfg, mtls_config_add_crl_mem(cfg, der, (size_t)n, "forged.crl"),
	    MTLS_ERR_VERIFY, "forged.crl");
	assert_null(cfg->crls);
	OPENSSL_free(der);
	der = NULL;
	assert_true((n = i2d_X509_CRL(good, &der)) > 0);
	assert_int_equal(mtls_config_add_crl_mem(cfg, der, (size_t)n,
	    "root.crl"), 0);
	OPENSSL_free(der);
	der = NULL;
	/* the intermediate is not known to this config yet */
	assert_true((n = i2d_X509_CRL(inter, &der)) > 0);
	assert_int_equal(mtls_config_add_crl_mem(cfg, der, (size_t)n, NULL), 0);
	assert_int_equal(sk_X509_CRL_num(cfg->crls), 2);
	refused(cfg, mtls_config_add_crl_mem(cfg, (const uint8_t *)"x", 1,
	    "bad.crl"), MTLS_ERR_PARSE, "bad.crl");
	assert_int_equal(sk_X509_CRL_num(cfg->crls), 2);
	OPENSSL_free(der);
	X509_CRL_free(good);
	X509_CRL_free(forged);
	X509_CRL_free(inter);
	mtls_config_free(cfg);
}

/* Configs that would authorize alike share a generation (tickets and the
 * cache carry over a reload); anything that decides makes another. */
static uint64_t
generation(const char *allow, int purpose, int64_t at)
{
	struct mtls_config *cfg = mtls_config_new();
	uint64_t g;

	assert_int_equal(mtls_config_set_trust_file(cfg, pki.root_pem), 0);
	if (allow != NULL)
		assert_int_equal(mtls_config_add_allow(cfg, allow), 0);
	assert_int_equal(mtls_config_set_purpose(cfg, purpose), 0);
	assert_int_equal(mtls_config_set_verify_time(cfg, at), 0);
	config_freeze(cfg);
	config_freeze(cfg);	/* once */
	g = cfg->generation;
	mtls_config_free(cfg);
	return g;
}

static void
test_generation(void **state)
{
	uint64_t g = generation("spiffe://example.org/*", 0, 0);

	(void)state;
	assert_int_equal(generation("spiffe://example.org/*", 0, 0), g);
	assert_int_not_equal(generation("spiffe://example.org/a/*", 0, 0), g);
	assert_int_not_equal(generation(NULL, 0, 0), g);
	assert_int_not_equal(generation("spiffe://example.org/*",
	    MTLS_PURPOSE_CLIENT, 0), g);
	assert_int_not_equal(generation("spiffe://example.org/*", 0, 1000), g);
}

/* Ticket keys: a file's keys (nginx's format) are used as they are; a
 * rotation keeps the previous key for opening. */
static void
test_ticket_keys(void **state)
{
	struct mtls_config *a = mtls_config_new(), *b = mtls_config_new();
	uint8_t keys[160], old[80];
	char path[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(keys); i++)
		keys[i] = (uint8_t)i;
	write_file("tk160", keys, sizeof(keys), path, sizeof(path));
	assert_int_equal(mtls_config_set_ticket_key_file(a, path), 0);
	assert_int_equal(a->n_ticket_keys, 2);
	assert_memory_equal(a->ticket_keys, keys, sizeof(keys));
	/* a new config has its own random key */
	assert_int_equal(b->n_ticket_keys, 1);
	assert_memory_not_equal(b->ticket_keys[0], keys, 80);
	memcpy(old, b->ticket_keys[0], 80);
	assert_int_equal(config_rotate_ticket_keys(b), 0);
	assert_int_equal(b->n_ticket_keys, 2);
	assert_memory_equal(b->ticket_keys[1], old, 80);
	assert_memory_not_equal(b->ticket_keys[0], old, 80);
	/* inherit: the keys, and the cache only with the same generation */
	config_freeze(a);
	config_freeze(b);
	config_inherit(b, a, 1);
	assert_memory_equal(b->ticket_keys, keys, sizeof(keys));
	assert_ptr_equal(b->vcache, a->vcache);	/* both empty configs */
	mtls_config_free(a);
	mtls_config_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_frozen),
		cmocka_unit_test(test_passphrase),
		cmocka_unit_test(test_untrusted_accumulates),
		cmocka_unit_test(test_crl_checked_on_add),
		cmocka_unit_test(test_generation),
		cmocka_unit_test(test_ticket_keys),
	};

	return cmocka_run_group_tests(tests, make_pki, free_pki);
}
