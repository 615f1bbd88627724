/*
 * mtls cert: inspect, verify and export on files (see cert.h). Every
 * secret read here (passwords, the key, an export that holds it) is
 * cleansed before it is freed.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "cert/cert.h"

/* Loads <path> (any form) with the password in <pass_file>, or NULL. */
static int
load_certs(const char *path, const char *pass_file, STACK_OF(X509) **sk,
    struct mtls_error *err)
{
	struct mtls_secret pass = { 0 };
	int rv = -1;

	if ((pass_file != NULL && secret_load_pass(&pass, pass_file,
	    err) != 0) || certs_load_pass(path, pass_file ? &pass : NULL, sk,
	    NULL, err) != 0)
		goto err;
	rv = 0;
 err:
	secret_clear(&pass);
	return rv;
}

json_t *
cert_inspect_file(const char *file, const char *pass_file, int64_t now,
    struct mtls_error *err)
{
	STACK_OF(X509) *sk = NULL;
	json_t *arr = NULL, *o;
	X509 *x, *next;
	int i, n, ok;

	if (load_certs(file, pass_file, &sk, err) != 0)
		return NULL;
	n = sk_X509_num(sk);
	if ((arr = json_array()) == NULL)
		goto nomem;
	for (i = 0; i < n; i++) {
		x = sk_X509_value(sk, i);
		if ((o = certinfo_json(x, now)) == NULL)
			goto nomem;
		if (i + 1 < n) {
			next = sk_X509_value(sk, i + 1);
			ok = X509_check_issued(next, x) == X509_V_OK &&
			    X509_verify(x, X509_get0_pubkey(next)) == 1;
			json_object_set_new(o, "signed_by_next",
			    json_boolean(ok));
		}
		json_array_append_new(arr, o);
	}
	ERR_clear_error();
	sk_X509_pop_free(sk, X509_free);
	return arr;
 nomem:
	ERR_clear_error();
	json_decref(arr);
	sk_X509_pop_free(sk, X509_free);
	error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", file);
	return NULL;
}

int
cert_verify_file(struct mtls *m, const char *leaf, const char *pass_file,
    struct mtls_error *err)
{
	STACK_OF(X509) *sk = NULL;
	char *pem = NULL;
	size_t pem_len = 0;
	int rv = -1;

	/* LEAF in any form we read (PKCS#12 too), handed over as PEM */
	if (load_certs(leaf, pass_file, &sk, err) != 0)
		goto out;
	if (certs_pem(sk, &pem, &pem_len) != 0) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	rv = mtls_verify_pem(m, (const uint8_t *)pem, pem_len) == 0 ? 0 : 1;
 out:
	free(pem);
	sk_X509_pop_free(sk, X509_free);
	return rv;
}

static const char *const fmt_names[] = {
	[EXPORT_P12] = "p12", [EXPORT_PEM] = "pem", [EXPORT_DER] = "der",
	[EXPORT_K8S] = "k8s",
};

int
cert_export_check(const struct cert_export_opts *o, struct mtls_error *err)
{
	if (o->fmt < EXPORT_P12 || o->fmt > EXPORT_K8S || o->cert == NULL)
		return error_set(err, MTLS_ERR_ARG, "give --cert and --format "
		    "p12|pem|der|k8s");
	if (o->fmt != EXPORT_DER && o->key == NULL)
		return error_set(err, MTLS_ERR_ARG, "--format %s needs --key",
		    fmt_names[o->fmt]);
	if (o->key != NULL && keystore_is_uri(o->key))
		return error_set(err, MTLS_ERR_ARG, "--key: a key in a PKCS#11 "
		    "token never leaves it, so it cannot be exported; give "
		    "the pkcs11: URI to what uses the key instead");
	if (o->fmt == EXPORT_P12 && o->password_file == NULL)
		return error_set(err, MTLS_ERR_ARG, "--format p12 needs "
		    "--password-file (Java and .NET refuse an empty password)");
	if (o->fmt == EXPORT_P12 && o->out == NULL)
		return error_set(err, MTLS_ERR_ARG, "--format p12 needs --out");
	if (o->fmt == EXPORT_PEM && o->out == NULL)
		return error_set(err, MTLS_ERR_ARG, "--format pem holds the "
		    "key: give --out (written 0600)");
	return 0;
}

int
cert_export_file(const struct cert_export_opts *o, uint8_t **buf,
    size_t *len, int *ncerts, struct mtls_error *err)
{
	struct mtls_secret pass = { 0 }, kp = { 0 };
	STACK_OF(X509) *certs = NULL, *roots = NULL;
	EVP_PKEY *key = NULL;
	uint8_t *b = NULL;
	size_t n = 0;
	const char *name = o->fmt == EXPORT_K8S ? "mtls-tls" : "mtls";
	int rv = -1;

	*buf = NULL;
	*len = 0;
	*ncerts = 0;
	if (cert_export_check(o, err) != 0)
		return -1;
	if (o->name != NULL)
		name = o->name;
	if ((o->out != NULL && fs_check_writable(o->out, o->force, err) != 0) ||
	    certs_load(o->cert, &certs, err) != 0 ||
	    (o->key_pass_file != NULL && secret_load_pass(&kp,
	    o->key_pass_file, err) != 0) ||
	    (o->key != NULL && key_load(o->key, &kp, &key, err) != 0) ||
	    (o->password_file != NULL && secret_load_pass(&pass,
	    o->password_file, err) != 0) ||
	    (o->ca != NULL && certs_load(o->ca, &roots, err) != 0) ||
	    cert_export(o->fmt, key, certs, roots, name, &pass, &b, &n,
	    err) != 0)
		goto out;
	*ncerts = sk_X509_num(certs);
	if (o->out != NULL) {
		if (fs_write_atomic(o->out, b, n, o->fmt == EXPORT_DER ? 0644 :
		    0600, o->force, err) != 0)
			goto out;
	} else {
		*buf = b;
		*len = n;
		b = NULL;
	}
	rv = 0;
 out:
	if (b != NULL)
		OPENSSL_cleanse(b, n);
	free(b);
	EVP_PKEY_free(key);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(roots, X509_free);
	secret_clear(&pass);
	secret_clear(&kp);
	return rv;
}
