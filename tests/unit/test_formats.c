/*
 * formats.c and pki.c: SPIFFE bundles, PKCS#12 and the export formats
 * round-trip what they are given and refuse hostile input with a reason
 * naming it; keys, certificates and CRLs load from PEM and DER.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <jansson.h>

#include "pki_fixture.h"

static struct {
	char		 dir[256];
	int64_t		 now;
	struct fx_cert	 root, rsa_root, inter, leaf;
} pki;

static int
make_pki(void **state)
{
	static const char *ids[] = { "spiffe://example.org/ns/prod/api",
	    "dns:api.example.org", NULL };

	(void)state;
	fx_tmpdir(pki.dir, sizeof(pki.dir));
	pki.now = (int64_t)time(NULL);
	pki.root = fx_root("example.org", "example.org Root CA", pki.now);
	pki.rsa_root = fx_mk("example.org", "rsa root", NULL,
	    "basicConstraints=critical,CA:TRUE\n"
	    "keyUsage=critical,keyCertSign,cRLSign", "rsa2048", NULL, 0,
	    pki.now);
	pki.inter = fx_intermediate(&pki.root, "example.org", "open", NULL, 0,
	    NULL, 0, pki.now);
	pki.leaf = fx_leaf(&pki.inter, "example.org", ids, pki.now - 60,
	    pki.now + FX_DAY);
	return 0;
}

static int
free_pki(void **state)
{
	(void)state;
	fx_cert_free(&pki.root);
	fx_cert_free(&pki.rsa_root);
	fx_cert_free(&pki.inter);
	fx_cert_free(&pki.leaf);
	fx_rmdir(pki.dir);
	return 0;
}

static void
same_certs(STACK_OF(X509) *a, STACK_OF(X509) *b)
{
	int i;

	assert_int_equal(sk_X509_num(a), sk_X509_num(b));
	for (i = 0; i < sk_X509_num(a); i++)
		assert_int_equal(X509_cmp(sk_X509_value(a, i),
		    sk_X509_value(b, i)), 0);
}

/* ---- SPIFFE bundle ---- */

static void
test_jwks_roundtrip(void **state)
{
	STACK_OF(X509) *roots = fx_stack(pki.root.x, pki.rsa_root.x, NULL);
	STACK_OF(X509) *back = NULL;
	struct mtls_error err;
	json_t *top;
	char *js = NULL;

	(void)state;
	assert_int_equal(jwks_emit(roots, 7, 300, &js, &err), 0);
	assert_non_null(top = json_loads(js, 0, NULL));
	assert_int_equal(json_integer_value(json_object_get(top,
	    "spiffe_sequence")), 7);
	assert_int_equal(json_array_size(json_object_get(top, "keys")), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(top, "keys"), 0), "use")), "x509-svid");
	json_decref(top);
	assert_int_equal(jwks_parse((const uint8_t *)js, strlen(js), "b.json",
	    &back, &err), 0);
	same_certs(roots, back);
	sk_X509_pop_free(back, X509_free);
	free(js);
	sk_X509_pop_free(roots, X509_free);
}

/* Parses <text> as a bundle: it must fail with a PARSE error whose
 * message has <why>. */
static void
jwks_bad(const char *text, const char *why)
{
	STACK_OF(X509) *sk = NULL;
	struct mtls_error err;

	memset(&err, 0, sizeof(err));
	if (jwks_parse((const uint8_t *)text, strlen(text), "b.json", &sk,
	    &err) == 0)
		fail_msg("accepted: %s", text);
	assert_null(sk);
	assert_int_equal(err.code, MTLS_ERR_PARSE);
	if (strstr(err.msg, why) == NULL || strncmp(err.msg, "b.json:", 7))
		fail_msg("message '%s' lacks '%s'", err.msg, why);
}

/* A bundle of the EC root with one member of its key replaced. */
static char *
bundle_with(const char *member, json_t *value)
{
	STACK_OF(X509) *roots = fx_stack(pki.root.x, NULL);
	struct mtls_error err;
	json_t *top;
	char *js = NULL, *out;

	assert_int_equal(jwks_emit(roots, 1, 0, &js, &err), 0);
	top = json_loads(js, 0, NULL);
	assert_non_null(top);
	json_object_set_new(json_array_get(json_object_get(top, "keys"), 0),
	    member, value);
	out = json_dumps(top, 0);
	json_decref(top);
	free(js);
	sk_X509_pop_free(roots, X509_free);
	return out;
}

static void
test_jwks_hostile(void **state)
{
	char *s;

	(void)state;
	jwks_bad("{", "JSON error");
	jwks_bad("{\"keys\": {}}", "no \"keys\" array");
	jwks_bad("{\"keys\": [1]}", "key 1 has no \"use\"");
	jwks_bad("{\"keys\": [{\"use\": \"jwt-svid\", \"kty\": \"EC\"}]}",
	    "no x509-svid key");
	jwks_bad("{\"keys\": [{\"use\": \"x509-svid\"}]}", "exactly one");
	jwks_bad("{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": [\"a\", "
	    "\"b\"]}]}", "exactly one");
	jwks_bad("{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": [\"ab*\"]}]}",
	    "not base64");
	jwks_bad("{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": [\"AAAA\"]}]}",
	    "not one DER certificate");
	/* the JWK must describe the certificate it carries */
	s = bundle_with("x", json_string("AAAA"));
	jwks_bad(s, "do not describe");
	free(s);
	s = bundle_with("kty", json_string("RSA"));
	jwks_bad(s, "do not describe");
	free(s);
	/* a duplicate member is refused, not silently resolved */
	jwks_bad("{\"keys\": [], \"keys\": []}", "JSON error");
}

/* ---- PKCS#12 and exports ---- */

static void
test_pkcs12(void **state)
{
	STACK_OF(X509) *chain = fx_stack(pki.inter.x, NULL), *back = NULL;
	struct mtls_secret pass = { NULL, 0 }, wrong = { NULL, 0 };
	struct mtls_error err;
	EVP_PKEY *k = NULL;
	uint8_t *der = NULL, *more;
	size_t len = 0;

	(void)state;
	assert_int_equal(secret_set(&pass, "s3cret", 6), 0);
	assert_int_equal(secret_set(&wrong, "guess", 5), 0);
	assert_int_equal(pkcs12_emit(pki.leaf.k, pki.leaf.x, chain, "api",
	    &pass, &der, &len, &err), 0);
	assert_int_equal(pkcs12_parse(der, len, "a.p12", &pass, &k, &back,
	    &err), 0);
	assert_int_equal(sk_X509_num(back), 2);
	assert_int_equal(X509_cmp(sk_X509_value(back, 0), pki.leaf.x), 0);
	assert_int_equal(X509_cmp(sk_X509_value(back, 1), pki.inter.x), 0);
	assert_int_equal(EVP_PKEY_eq(k, pki.leaf.k), 1);
	EVP_PKEY_free(k);
	sk_X509_pop_free(back, X509_free);
	/* no password, the wrong one */
	assert_int_equal(pkcs12_parse(der, len, "a.p12", NULL, NULL, &back,
	    &err), -1);
	assert_int_equal(err.code, MTLS_ERR_ARG);
	assert_non_null(strstr(err.msg, "password-protected"));
	assert_int_equal(pkcs12_parse(der, len, "a.p12", &wrong, NULL, &back,
	    &err), -1);
	assert_non_null(strstr(err.msg, "password is wrong"));
	/* trailing bytes, not PKCS#12 at all */
	assert_non_null(more = malloc(len + 1));
	memcpy(more, der, len);
	more[len] = 0;
	assert_int_equal(pkcs12_parse(more, len + 1, "a.p12", &pass, NULL,
	    &back, &err), -1);
	assert_non_null(strstr(err.msg, "garbage after"));
	assert_int_equal(pkcs12_parse((const uint8_t *)"hello", 5, "a.p12",
	    &pass, NULL, &back, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_PARSE);
	/* without a key there is nothing to export */
	OPENSSL_free(der);
	der = NULL;
	/* never without a password */
	assert_int_equal(pkcs12_emit(pki.leaf.k, pki.leaf.x, chain, "api",
	    NULL, &der, &len, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_ARG);
	assert_null(der);
	free(more);
	secret_clear(&pass);
	secret_clear(&wrong);
	sk_X509_pop_free(chain, X509_free);
}

static void
test_export(void **state)
{
	STACK_OF(X509) *certs = fx_stack(pki.leaf.x, pki.inter.x, NULL);
	STACK_OF(X509) *roots = fx_stack(pki.root.x, NULL), *back = NULL;
	struct mtls_secret pass = { NULL, 0 };
	struct mtls_error err;
	const unsigned char *p;
	uint8_t *out = NULL;
	size_t len = 0;
	char *s;
	X509 *x;

	(void)state;
	/* DER: the leaf alone */
	assert_int_equal(cert_export(EXPORT_DER, pki.leaf.k, certs, NULL, NULL,
	    NULL, &out, &len, &err), 0);
	p = out;
	assert_non_null(x = d2i_X509(NULL, &p, (long)len));
	assert_ptr_equal(p, out + len);
	assert_int_equal(X509_cmp(x, pki.leaf.x), 0);
	X509_free(x);
	free(out);
	/* PEM (HAProxy): the chain, then the key */
	assert_int_equal(cert_export(EXPORT_PEM, pki.leaf.k, certs, NULL, NULL,
	    NULL, &out, &len, &err), 0);
	s = strndup((const char *)out, len);
	assert_non_null(s);
	assert_non_null(strstr(s, "PRIVATE KEY"));
	assert_true(strstr(s, "PRIVATE KEY") > strstr(s, "END CERTIFICATE"));
	*strstr(s, "-----BEGIN PRIVATE KEY") = '\0';
	assert_int_equal(certs_parse((const uint8_t *)s, strlen(s), "crt", &back,
	    &err), 0);
	same_certs(certs, back);
	sk_X509_pop_free(back, X509_free);
	OPENSSL_cleanse(out, len);
	free(out);
	free(s);
	/* PKCS#12 */
	assert_int_equal(secret_set(&pass, "pw", 2), 0);
	assert_int_equal(cert_export(EXPORT_P12, pki.leaf.k, certs, NULL, "api",
	    &pass, &out, &len, &err), 0);
	assert_int_equal(pkcs12_parse(out, len, "x.p12", &pass, NULL, &back,
	    &err), 0);
	same_certs(certs, back);
	sk_X509_pop_free(back, X509_free);
	free(out);
	/* a kubernetes.io/tls Secret */
	assert_int_equal(cert_export(EXPORT_K8S, pki.leaf.k, certs, roots,
	    "api-tls", NULL, &out, &len, &err), 0);
	s = strndup((const char *)out, len);
	assert_non_null(strstr(s, "type: kubernetes.io/tls\n"));
	assert_non_null(strstr(s, "  name: api-tls\n"));
	assert_non_null(strstr(s, "  tls.key: "));
	assert_non_null(strstr(s, "  ca.crt: "));
	free(s);
	OPENSSL_cleanse(out, len);
	free(out);
	/* refused: a bad object name, a key of another certificate, an
	 * unknown format, nothing to export */
	assert_int_equal(cert_export(EXPORT_K8S, pki.leaf.k, certs, roots,
	    "API_tls", NULL, &out, &len, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_ARG);
	assert_null(out);
	assert_int_equal(cert_export(EXPORT_PEM, pki.inter.k, certs, NULL, NULL,
	    NULL, &out, &len, &err), -1);
	assert_non_null(strstr(err.msg, "does not belong"));
	assert_int_equal(cert_export(99, pki.leaf.k, certs, NULL, NULL, NULL,
	    &out, &len, &err), -1);
	secret_clear(&pass);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(roots, X509_free);
}

/* ---- pki.c ---- */

static void
test_key_types(void **state)
{
	struct mtls_error err;
	EVP_PKEY *k;
	char d[64];
	int t, bits;
	static const char *want[] = { "EC P-256", "EC P-384", "Ed25519",
	    "RSA 2048", NULL };

	(void)state;
	assert_int_equal(key_type_parse("p256"), KEY_EC_P256);
	assert_int_equal(key_type_parse("EC-P384"), KEY_EC_P384);
	assert_int_equal(key_type_parse("rsa"), KEY_RSA_2048);
	assert_int_equal(key_type_parse("dsa"), -1);
	assert_string_equal(key_type_name(KEY_ED25519), "ed25519");
	assert_string_equal(key_type_name(42), "unknown");
	for (t = 0; want[t] != NULL; t++) {
		assert_int_equal(key_generate(t, &k, &err), 0);
		assert_int_equal(key_type_parse(key_type_name(t)), t);
		assert_int_equal(key_type_of(k), t);
		key_describe(k, d, sizeof(d), &bits);
		assert_string_equal(d, want[t]);
		assert_ptr_equal(sign_digest(k), t == KEY_EC_P384 ?
		    EVP_sha384() : t == KEY_ED25519 ? NULL : EVP_sha256());
		EVP_PKEY_free(k);
	}
	assert_int_equal(key_generate(KEY__COUNT, &k, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_ARG);
	/* what we do not issue for */
	k = fx_key("rsa1024");
	assert_int_equal(key_type_of(k), -1);
	EVP_PKEY_free(k);
}

static void
test_key_files(void **state)
{
	struct mtls_secret pass = { NULL, 0 }, wrong = { NULL, 0 };
	struct mtls_error err;
	char path[512];
	EVP_PKEY *k = NULL;
	struct stat st;

	(void)state;
	assert_int_equal(secret_set(&pass, "pw", 2), 0);
	assert_int_equal(secret_set(&wrong, "nope", 4), 0);
	snprintf(path, sizeof(path), "%s/k.pem", pki.dir);
	assert_int_equal(key_write(path, pki.leaf.k, &pass, 0, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* no overwrite unless asked */
	assert_int_equal(key_write(path, pki.leaf.k, &pass, 0, &err), -1);
	assert_int_equal(key_load(path, &pass, &k, &err), 0);
	assert_int_equal(EVP_PKEY_eq(k, pki.leaf.k), 1);
	EVP_PKEY_free(k);
	k = NULL;
	assert_int_equal(key_load(path, &wrong, &k, &err), -1);
	assert_null(k);
	assert_int_equal(key_load(path, NULL, &k, &err), -1);
	/* unencrypted, overwriting */
	assert_int_equal(key_write(path, pki.leaf.k, NULL, 1, &err), 0);
	assert_int_equal(key_load(path, NULL, &k, &err), 0);
	EVP_PKEY_free(k);
	/* not a key */
	snprintf(path, sizeof(path), "%s/notkey.pem", pki.dir);
	assert_int_equal(fs_write_atomic(path, "hello\n", 6, 0600, 1, &err), 0);
	assert_int_equal(key_load(path, NULL, &k, &err), -1);
	assert_non_null(strstr(err.msg, path));
	secret_clear(&pass);
	secret_clear(&wrong);
}

static void
test_certs_parse(void **state)
{
	STACK_OF(X509) *certs = fx_stack(pki.leaf.x, pki.inter.x, NULL);
	STACK_OF(X509) *back = NULL;
	struct mtls_error err;
	unsigned char *der = NULL;
	char *pem = NULL, *more;
	size_t len = 0;
	int n;

	(void)state;
	assert_int_equal(certs_pem(certs, &pem, &len), 0);
	assert_int_equal(certs_parse((const uint8_t *)pem, len, "c.pem", &back,
	    &err), 0);
	same_certs(certs, back);
	sk_X509_pop_free(back, X509_free);
	/* blanks after the last block are fine; a damaged block is not */
	assert_non_null(more = malloc(len + 8));
	memcpy(more, pem, len);
	memcpy(more + len, "\n \n", 3);
	assert_int_equal(certs_parse((const uint8_t *)more, len + 3, "c.pem",
	    &back, &err), 0);
	sk_X509_pop_free(back, X509_free);
	/* cut inside the first block */
	assert_int_equal(certs_parse((const uint8_t *)more, len / 4, "c.pem",
	    &back, &err), -1);
	assert_non_null(strstr(err.msg, "truncated"));
	assert_int_equal(err.code, MTLS_ERR_PARSE);
	assert_non_null(strstr(err.msg, "c.pem"));
	assert_int_equal(certs_parse((const uint8_t *)"   \n", 4, "c.pem", &back,
	    &err), -1);
	assert_non_null(strstr(err.msg, "empty"));
	assert_int_equal(certs_parse((const uint8_t *)"", 0, "c.pem", &back,
	    &err), -1);
	/* one DER certificate */
	assert_true((n = i2d_X509(pki.leaf.x, &der)) > 0);
	assert_int_equal(certs_parse(der, (size_t)n, "c.der", &back, &err), 0);
	assert_int_equal(sk_X509_num(back), 1);
	sk_X509_pop_free(back, X509_free);
	assert_int_equal(certs_parse(der, (size_t)n - 1, "c.der", &back, &err),
	    -1);
	OPENSSL_free(der);
	free(more);
	free(pem);
	sk_X509_pop_free(certs, X509_free);
}

/* A certificate file is recognized by its content: PEM, DER, a SPIFFE
 * bundle, PKCS#12 (its MAC checked with the password given). */
static void
test_certs_by_content(void **state)
{
	STACK_OF(X509) *roots = fx_stack(pki.root.x, pki.rsa_root.x, NULL);
	STACK_OF(X509) *chain = fx_stack(pki.inter.x, NULL), *back = NULL;
	struct mtls_secret pass = { NULL, 0 };
	struct mtls_error err;
	EVP_PKEY *k = NULL;
	uint8_t *der = NULL;
	char *js = NULL, path[512];
	size_t len = 0;

	(void)state;
	assert_int_equal(jwks_emit(roots, 1, 0, &js, &err), 0);
	snprintf(path, sizeof(path), "%s/bundle.json", pki.dir);
	assert_int_equal(fs_write_atomic(path, js, strlen(js), 0600, 1, &err),
	    0);
	assert_int_equal(certs_load(path, &back, &err), 0);
	same_certs(roots, back);
	sk_X509_pop_free(back, X509_free);
	assert_int_equal(secret_set(&pass, "pw", 2), 0);
	assert_int_equal(pkcs12_emit(pki.leaf.k, pki.leaf.x, chain, "api",
	    &pass, &der, &len, &err), 0);
	snprintf(path, sizeof(path), "%s/id.p12", pki.dir);
	assert_int_equal(fs_write_atomic(path, der, len, 0600, 1, &err), 0);
	/* without the password: refused, naming the file and the fix */
	assert_int_equal(certs_load(path, &back, &err), -1);
	assert_non_null(strstr(err.msg, "id.p12"));
	assert_non_null(strstr(err.msg, "--password-file"));
	assert_int_equal(certs_load_pass(path, &pass, &back, &k, &err), 0);
	assert_int_equal(sk_X509_num(back), 2);
	assert_int_equal(EVP_PKEY_eq(k, pki.leaf.k), 1);
	EVP_PKEY_free(k);
	sk_X509_pop_free(back, X509_free);
	/* not PKCS#12: read as certificates */
	snprintf(path, sizeof(path), "%s/bundle.json", pki.dir);
	assert_int_equal(certs_load_pass(path, &pass, &back, &k, &err), 0);
	assert_null(k);
	sk_X509_pop_free(back, X509_free);
	snprintf(path, sizeof(path), "%s/absent.pem", pki.dir);
	assert_int_equal(certs_load_pass(path, &pass, &back, &k, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_IO);
	OPENSSL_free(der);
	free(js);
	secret_clear(&pass);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
}

static void
test_crls_parse(void **state)
{
	X509_CRL *crl = fx_crl(&pki.inter, pki.leaf.x, pki.now);
	STACK_OF(X509_CRL) *back = NULL;
	struct mtls_error err;
	unsigned char *der = NULL;
	char path[512];
	int n;

	(void)state;
	fx_write_crl(pki.dir, "c.crl", crl, path, sizeof(path));
	assert_int_equal(crls_load(path, &back, &err), 0);
	assert_int_equal(sk_X509_CRL_num(back), 1);
	assert_int_equal(X509_CRL_cmp(sk_X509_CRL_value(back, 0), crl), 0);
	sk_X509_CRL_pop_free(back, X509_CRL_free);
	assert_true((n = i2d_X509_CRL(crl, &der)) > 0);
	assert_int_equal(crls_parse(der, (size_t)n, "c.der", &back, &err), 0);
	sk_X509_CRL_pop_free(back, X509_CRL_free);
	assert_int_equal(crls_parse((const uint8_t *)"nope", 4, "c.crl", &back,
	    &err), -1);
	assert_non_null(strstr(err.msg, "c.crl"));
	OPENSSL_free(der);
	X509_CRL_free(crl);
}

static void
test_names_and_serials(void **state)
{
	char buf[128], fp[128];

	(void)state;
	assert_int_equal(serial_canon("0x00:0a:1B", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "A1B");
	assert_int_equal(serial_canon("000", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0");
	assert_int_equal(serial_canon("12g4", buf, sizeof(buf)), -1);
	assert_int_equal(serial_canon("123456", buf, 4), -1);
	name_oneline(X509_get_subject_name(pki.inter.x), buf, sizeof(buf));
	assert_string_equal(buf, "CN=open,O=example.org");
	cert_fingerprint(pki.leaf.x, fp, sizeof(fp));
	assert_int_equal(strlen(fp), 32 * 3 - 1);
	assert_int_equal(fp[2], ':');
	/* a workload by its identity, a CA by its subject */
	cert_label(pki.leaf.x, buf, sizeof(buf));
	assert_non_null(strstr(buf, "'spiffe://example.org/ns/prod/api' "
	    "(serial "));
	cert_label(pki.inter.x, buf, sizeof(buf));
	assert_non_null(strstr(buf, "'CN=open,O=example.org' (serial "));
	assert_true(cert_is_self_signed(pki.root.x));
	assert_false(cert_is_self_signed(pki.inter.x));
}

/* cert_issued_by: a CA whose name, key identifier and key all agree
 * issued it; the same name with another key, or a non-CA, did not. */
static void
test_issued_by(void **state)
{
	struct fx_cert twin, forged, notca, child;

	(void)state;
	assert_true(cert_issued_by(pki.root.x, pki.inter.x));
	assert_true(cert_issued_by(pki.inter.x, pki.leaf.x));
	assert_true(cert_issued_by(pki.root.x, pki.root.x));
	assert_false(cert_issued_by(pki.root.x, pki.leaf.x));
	assert_false(cert_issued_by(pki.inter.x, pki.inter.x));
	/* the root's name on another key, no key identifier: the names
	 * agree (X509_check_issued passes), the signature does not */
	twin = fx_mk("example.org", "example.org Root CA", NULL,
	    "basicConstraints=critical,CA:TRUE\n"
	    "keyUsage=critical,keyCertSign,cRLSign\n"
	    "subjectKeyIdentifier=none", NULL, NULL, 0, pki.now);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(twin.x),
	    X509_get_subject_name(pki.root.x)), 0);
	assert_int_equal(X509_check_issued(twin.x, pki.inter.x), X509_V_OK);
	assert_false(cert_issued_by(twin.x, pki.inter.x));
	forged = fx_mk("example.org", "forged", &twin,
	    "basicConstraints=critical,CA:TRUE\n"
	    "authorityKeyIdentifier=none", NULL, NULL, 0, pki.now);
	assert_int_equal(X509_check_issued(pki.root.x, forged.x), X509_V_OK);
	assert_false(cert_issued_by(pki.root.x, forged.x));
	assert_true(cert_issued_by(twin.x, forged.x));
	/* a non-CA (no keyUsage either, so only the CA flag decides) */
	notca = fx_mk("example.org", "not a CA", NULL,
	    "basicConstraints=critical,CA:FALSE", NULL, NULL, 0, pki.now);
	child = fx_mk("example.org", "child", &notca, NULL, NULL, NULL, 0,
	    pki.now);
	assert_int_equal(X509_check_issued(notca.x, child.x), X509_V_OK);
	assert_int_equal(X509_verify(child.x, notca.k), 1);
	assert_false(cert_issued_by(notca.x, child.x));
	assert_false(cert_issued_by(pki.leaf.x, child.x));
	fx_cert_free(&twin);
	fx_cert_free(&forged);
	fx_cert_free(&notca);
	fx_cert_free(&child);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwks_roundtrip),
		cmocka_unit_test(test_jwks_hostile),
		cmocka_unit_test(test_pkcs12),
		cmocka_unit_test(test_export),
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_certs_parse),
		cmocka_unit_test(test_certs_by_content),
		cmocka_unit_test(test_crls_parse),
		cmocka_unit_test(test_names_and_serials),
		cmocka_unit_test(test_issued_by),
	};

	return cmocka_run_group_tests(tests, make_pki, free_pki);
}
