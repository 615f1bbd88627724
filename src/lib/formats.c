/*
 * Interchange formats around the PEM we keep: the SPIFFE trust bundle
 * (a JWK Set, SPIFFE Trust Domain and Bundle spec section 4) and PKCS#12.
 * The JSON is jansson's and the DER, base64 and PKCS#12 are OpenSSL's; what
 * is ours is the mapping between a certificate's key and its JWK members,
 * which is small and must agree byte for byte with what a verifier in Go
 * or Java computes from the same certificate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "internal.h"

/* PBKDF2 and MAC iterations: Java 17's own keystore default */
#define P12_ITER	10000
/* The most we accept when reading: above any keystore default we know
 * (NIST's 2023 PBKDF2 advice is 600,000), bounded so that a hostile count
 * cannot cost more than a fraction of a second (cost: bench/RESULTS.md) */
#define P12_MAX_ITER	2000000

/* base64url without padding (RFC 7515 2) of <n> bytes; NULL on OOM. */
static char *
b64url(const unsigned char *p, size_t n)
{
	char *s = malloc(4 * ((n + 2) / 3) + 1);
	size_t i, l;

	if (s == NULL || n > INT32_MAX / 2) {
		free(s);
		return NULL;
	}
	l = (size_t)EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	while (l > 0 && s[l - 1] == '=')
		l--;
	s[l] = '\0';
	for (i = 0; i < l; i++)
		s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
	return s;
}

/* A big-endian parameter of <k> as base64url, <pad> bytes wide (the EC
 * coordinate size; 0 for RSA's minimal encoding). */
static char *
bn_b64url(const EVP_PKEY *k, const char *param, size_t pad)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	int n;
	char *s = NULL;

	if (EVP_PKEY_get_bn_param(k, param, &bn) != 1)
		return NULL;
	n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
	if (n > 0 && (size_t)n <= sizeof(buf) &&
	    (pad || (size_t)BN_num_bytes(bn) <= sizeof(buf)))
		s = b64url(buf, (size_t)n);
	BN_free(bn);
	return s;
}

static int
set_str(json_t *o, const char *k, char *v)
{
	int r = v != NULL ? json_object_set_new(o, k, esc_jstr(v)) : -1;

	free(v);
	return r;
}

/*
 * The JWK members of a certificate's public key: kty and crv/x/y for
 * P-256/P-384, kty/n/e for RSA. Ed25519 has no SPIFFE JWK mapping used in
 * practice by verifiers (OKP is not in the SPIFFE spec's examples) and is
 * refused.
 */
static json_t *
jwk_of(X509 *x, struct mtls_error *err)
{
	EVP_PKEY *k = X509_get0_pubkey(x);
	json_t *o = json_object();
	char group[32], label[256];
	size_t w = 0;
	int r = 0;

	if (o == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		return NULL;
	}
	cert_label(x, label, sizeof(label));
	switch (k ? EVP_PKEY_get_base_id(k) : EVP_PKEY_NONE) {
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(k,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
		    NULL) != 1)
			group[0] = '\0';
		if (strcmp(group, "prime256v1") == 0) {
			w = 32;
			r |= json_object_set_new(o, "crv", json_string("P-256"));
		} else if (strcmp(group, "secp384r1") == 0) {
			w = 48;
			r |= json_object_set_new(o, "crv", json_string("P-384"));
		} else
			goto unsupported;
		r |= json_object_set_new(o, "kty", json_string("EC"));
		r |= set_str(o, "x", bn_b64url(k, OSSL_PKEY_PARAM_EC_PUB_X, w));
		r |= set_str(o, "y", bn_b64url(k, OSSL_PKEY_PARAM_EC_PUB_Y, w));
		break;
	case EVP_PKEY_RSA:
		r |= json_object_set_new(o, "kty", json_string("RSA"));
		r |= set_str(o, "n", bn_b64url(k, OSSL_PKEY_PARAM_RSA_N, 0));
		r |= set_str(o, "e", bn_b64url(k, OSSL_PKEY_PARAM_RSA_E, 0));
		break;
	default:
		goto unsupported;
	}
	if (r != 0) {
		json_decref(o);
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		return NULL;
	}
	return o;
 unsupported:
	json_decref(o);
	error_set(err, MTLS_ERR_ARG, "%s: its key has no SPIFFE bundle (JWK) "
	    "form here; use EC P-256/P-384 or RSA", label);
	return NULL;
}

int
jwks_emit(STACK_OF(X509) *roots, int64_t sequence, int64_t refresh_s,
    char **out, struct mtls_error *err)
{
	json_t *top = json_object(), *keys = json_array();
	int i;

	*out = NULL;
	if (top == NULL || keys == NULL ||
	    json_object_set_new(top, "keys", keys) != 0) {
		json_decref(top);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	for (i = 0; i < sk_X509_num(roots); i++) {
		X509 *x = sk_X509_value(roots, i);
		unsigned char *der = NULL;
		int dl = i2d_X509(x, &der);
		json_t *k, *x5c;
		char *b;

		if ((k = jwk_of(x, err)) == NULL) {
			OPENSSL_free(der);
			json_decref(top);
			return -1;
		}
		/* x5c is standard base64 (RFC 7517 4.7), not base64url */
		b = dl > 0 ? malloc(4 * (((size_t)dl + 2) / 3) + 1) : NULL;
		if (b != NULL)
			EVP_EncodeBlock((unsigned char *)b, der, dl);
		OPENSSL_free(der);
		if (b == NULL || (x5c = json_array()) == NULL ||
		    json_array_append_new(x5c, esc_jstr(b)) != 0 ||
		    json_object_set_new(k, "x5c", x5c) != 0 ||
		    json_object_set_new(k, "use", json_string("x509-svid")) ||
		    json_array_append_new(keys, k) != 0) {
			free(b);
			json_decref(top);
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		}
		free(b);
	}
	if (json_object_set_new(top, "spiffe_sequence",
	    json_integer(sequence)) != 0 ||
	    (refresh_s > 0 && json_object_set_new(top, "spiffe_refresh_hint",
	    json_integer(refresh_s)) != 0) ||
	    (*out = json_dumps(top, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
	    JSON_ENSURE_ASCII)) == NULL) {
		json_decref(top);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	json_decref(top);
	return 0;
}

/* The members of <given> (a JWK from a file) that describe the key must
 * equal those computed from its x5c certificate. */
static int
jwk_matches(json_t *given, X509 *x)
{
	static const char *m[] = { "kty", "crv", "x", "y", "n", "e" };
	struct mtls_error e2;
	json_t *want = jwk_of(x, &e2);
	size_t i;
	int ok = want != NULL;

	for (i = 0; ok && i < sizeof(m) / sizeof(m[0]); i++) {
		json_t *a = json_object_get(given, m[i]);
		json_t *b = json_object_get(want, m[i]);

		if (a == NULL && b == NULL)
			continue;
		ok = a != NULL && b != NULL && json_is_string(a) &&
		    strcmp(json_string_value(a), json_string_value(b)) == 0;
	}
	json_decref(want);
	return ok;
}

int
jwks_parse(const uint8_t *buf, size_t len, const char *name,
    STACK_OF(X509) **out, struct mtls_error *err)
{
	json_error_t je;
	json_t *top, *keys, *k;
	STACK_OF(X509) *sk = NULL;
	size_t i;
	int rv = -1;

	*out = NULL;
	top = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
	if (top == NULL)
		return error_set(err, MTLS_ERR_PARSE, "%s: not a SPIFFE bundle: "
		    "JSON error at line %d: %.120s", name, je.line, je.text);
	keys = json_object_get(top, "keys");
	if (!json_is_array(keys)) {
		error_set(err, MTLS_ERR_PARSE, "%s: a SPIFFE bundle is a JWK "
		    "Set: no \"keys\" array", name);
		goto out;
	}
	if ((sk = sk_X509_new_null()) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	json_array_foreach(keys, i, k) {
		json_t *use = json_object_get(k, "use");
		json_t *x5c = json_object_get(k, "x5c");
		const char *b;
		unsigned char *der = NULL;
		const unsigned char *p;
		size_t bl;
		int dl;
		X509 *x;

		if (!json_is_object(k) || !json_is_string(use)) {
			error_set(err, MTLS_ERR_PARSE, "%s: key %zu has no "
			    "\"use\" (SPIFFE bundle 4.2.1)", name, i + 1);
			goto out;
		}
		/* JWT-SVID keys and uses we do not know are skipped, as the
		 * spec asks (4.2.1) */
		if (strcmp(json_string_value(use), "x509-svid") != 0)
			continue;
		if (!json_is_array(x5c) || json_array_size(x5c) != 1 ||
		    !json_is_string(json_array_get(x5c, 0))) {
			error_set(err, MTLS_ERR_PARSE, "%s: x509-svid key %zu "
			    "must have \"x5c\" with exactly one certificate",
			    name, i + 1);
			goto out;
		}
		b = json_string_value(json_array_get(x5c, 0));
		bl = strlen(b);
		if (bl == 0 || bl % 4 != 0 || bl > MTLS_MAX_FILE ||
		    (der = malloc(bl / 4 * 3 + 1)) == NULL ||
		    (dl = EVP_DecodeBlock(der, (const unsigned char *)b,
		    (int)bl)) < 0) {
			free(der);
			error_set(err, MTLS_ERR_PARSE, "%s: key %zu: x5c is not "
			    "base64", name, i + 1);
			goto out;
		}
		/* EVP_DecodeBlock counts the padding as zero bytes */
		dl -= (bl >= 1 && b[bl - 1] == '=') + (bl >= 2 &&
		    b[bl - 2] == '=');
		p = der;
		x = d2i_X509(NULL, &p, dl);
		if (x == NULL || p != der + dl) {
			X509_free(x);
			free(der);
			error_set(err, MTLS_ERR_PARSE, "%s: key %zu: x5c is not "
			    "one DER certificate", name, i + 1);
			goto out;
		}
		free(der);
		if (!jwk_matches(k, x)) {
			X509_free(x);
			error_set(err, MTLS_ERR_PARSE, "%s: key %zu: its JWK "
			    "members do not describe its x5c certificate's key",
			    name, i + 1);
			goto out;
		}
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (sk_X509_num(sk) == 0) {
		error_set(err, MTLS_ERR_PARSE, "%s: the SPIFFE bundle has no "
		    "x509-svid key", name);
		goto out;
	}
	*out = sk;
	sk = NULL;
	rv = 0;
 out:
	sk_X509_pop_free(sk, X509_free);
	json_decref(top);
	ERR_clear_error();
	return rv;
}

int
pkcs12_emit(EVP_PKEY *key, X509 *leaf, STACK_OF(X509) *chain,
    const char *friendly, const struct mtls_secret *pass, uint8_t **out,
    size_t *out_len, struct mtls_error *err)
{
	PKCS12 *p12;
	unsigned char *der = NULL;
	char *pw;
	int n;

	*out = NULL;
	if (pass == NULL || pass->p == NULL || pass->len == 0)
		return error_set(err, MTLS_ERR_ARG, "a PKCS#12 file needs a "
		    "password (--password-file)");
	if ((pw = OPENSSL_secure_malloc(pass->len + 1)) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	memcpy(pw, pass->p, pass->len);
	pw[pass->len] = '\0';
	/* PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA256 for both bags, a
	 * SHA-256 MAC: what Java (8u301+, 11.0.12+, 17), .NET Core 3+ and
	 * OpenSSL 3 read; RC2 and 3DES are not written. */
	p12 = PKCS12_create_ex(pw, friendly, key, leaf, chain,
	    NID_aes_256_cbc, NID_aes_256_cbc, P12_ITER, -1, 0,
	    NULL, NULL);
	if (p12 != NULL && !PKCS12_set_mac(p12, pw, -1, NULL, 0,
	    P12_ITER, EVP_sha256())) {
		PKCS12_free(p12);
		p12 = NULL;
	}
	OPENSSL_secure_clear_free(pw, pass->len + 1);
	if (p12 == NULL)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot build the "
		    "PKCS#12 file");
	n = i2d_PKCS12(p12, &der);
	PKCS12_free(p12);
	if (n <= 0)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot encode the "
		    "PKCS#12 file");
	*out = der;
	*out_len = (size_t)n;
	return 0;
}

int
pkcs12_parse(const uint8_t *buf, size_t len, const char *name,
    const struct mtls_secret *pass, EVP_PKEY **key, STACK_OF(X509) **certs,
    struct mtls_error *err)
{
	const unsigned char *p = buf;
	PKCS12 *p12;
	EVP_PKEY *k = NULL;
	X509 *leaf = NULL;
	STACK_OF(X509) *ca = NULL;
	char *pw = NULL;
	int ok;

	if (key != NULL)
		*key = NULL;
	*certs = NULL;
	if (len > INT32_MAX || (p12 = d2i_PKCS12(NULL, &p, (long)len)) == NULL)
		return error_set(err, MTLS_ERR_PARSE, "%s: not PKCS#12", name);
	if (p != buf + len) {
		PKCS12_free(p12);
		return error_set(err, MTLS_ERR_PARSE, "%s: garbage after the "
		    "PKCS#12 structure", name);
	}
	/* The MAC check runs before any password is known (the empty one
	 * first): a hostile iteration count would make every file input
	 * spin for minutes. Java writes 10,000, OpenSSL and Windows 2,048. */
	if (PKCS12_mac_present(p12)) {
		const ASN1_INTEGER *iter = NULL;
		long it;

		PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
		it = iter != NULL ? ASN1_INTEGER_get(iter) : 1;
		if (it < 1 || it > P12_MAX_ITER) {
			PKCS12_free(p12);
			return error_set(err, MTLS_ERR_PARSE, "%s: PKCS#12 MAC "
			    "iteration count %ld is outside 1..%d: re-export "
			    "it (mtls cert export writes %d)", name, it,
			    P12_MAX_ITER, P12_ITER);
		}
	}
	if (pass != NULL && pass->p != NULL) {
		if ((pw = OPENSSL_secure_malloc(pass->len + 1)) == NULL) {
			PKCS12_free(p12);
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		}
		memcpy(pw, pass->p, pass->len);
		pw[pass->len] = '\0';
	}
	if (!PKCS12_mac_present(p12) ||
	    !PKCS12_verify_mac(p12, pw ? pw : "", -1)) {
		PKCS12_free(p12);
		if (pw != NULL)
			OPENSSL_secure_clear_free(pw, pass->len + 1);
		ERR_clear_error();
		return error_set(err, MTLS_ERR_ARG, "%s: PKCS#12 %s", name,
		    pw == NULL ? "file is password-protected: give the "
		    "password with --password-file" : "password is wrong, or "
		    "the file has no integrity MAC");
	}
	ok = PKCS12_parse(p12, pw ? pw : "", &k, &leaf, &ca);
	PKCS12_free(p12);
	if (pw != NULL)
		OPENSSL_secure_clear_free(pw, pass->len + 1);
	if (!ok) {
		ERR_clear_error();
		return error_set(err, MTLS_ERR_PARSE, "%s: PKCS#12 contents "
		    "cannot be read (an unsupported cipher?)", name);
	}
	if (ca == NULL)
		ca = sk_X509_new_null();
	if (ca == NULL || (leaf != NULL && !sk_X509_insert(ca, leaf, 0))) {
		EVP_PKEY_free(k);
		X509_free(leaf);
		sk_X509_pop_free(ca, X509_free);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	if (sk_X509_num(ca) == 0) {
		EVP_PKEY_free(k);
		sk_X509_free(ca);
		return error_set(err, MTLS_ERR_PARSE, "%s: the PKCS#12 file "
		    "holds no certificate", name);
	}
	if (key != NULL)
		*key = k;
	else
		EVP_PKEY_free(k);
	*certs = ca;
	return 0;
}

/* A Kubernetes object name: an RFC 1123 subdomain (lower-case
 * alphanumerics, '-' and '.', 253 at most, alphanumeric at both ends). */
static int
k8s_name_ok(const char *n)
{
	size_t i, l = strlen(n);

	if (l == 0 || l > 253)
		return 0;
	for (i = 0; i < l; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' &&
		    n[i] <= '9') || n[i] == '-' || n[i] == '.'))
			return 0;
	return n[0] != '-' && n[0] != '.' && n[l - 1] != '-' &&
	    n[l - 1] != '.';
}

/* Standard base64 of <n> bytes on one line; NULL on OOM. */
static char *
b64_line(const void *p, size_t n)
{
	char *s;

	if (n > INT32_MAX / 2 || (s = malloc(4 * ((n + 2) / 3) + 1)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	return s;
}

static int
key_pem(EVP_PKEY *key, BIO **out)
{
	*out = BIO_new(BIO_s_secmem());
	return *out != NULL && PEM_write_bio_PrivateKey(*out, key, NULL, NULL,
	    0, NULL, NULL) ? 0 : -1;
}

int
cert_export(int fmt, EVP_PKEY *key, STACK_OF(X509) *certs,
    STACK_OF(X509) *roots, const char *name, const struct mtls_secret *pass,
    uint8_t **out, size_t *out_len, struct mtls_error *err)
{
	STACK_OF(X509) *rest = NULL;
	BIO *kb = NULL, *ob = NULL;
	BUF_MEM *km, *om;
	char *crt = NULL, *ca = NULL, *cb = NULL, *b1 = NULL, *b2 = NULL,
	    *b3 = NULL;
	unsigned char *der;
	uint8_t *p12 = NULL;
	size_t cl = 0, cal = 0;
	X509 *leaf = sk_X509_value(certs, 0);
	int rv = -1, i, n;

	*out = NULL;
	*out_len = 0;
	if (leaf == NULL)
		return error_set(err, MTLS_ERR_ARG, "no certificate to export");
	if (key != NULL && X509_check_private_key(leaf, key) != 1) {
		ERR_clear_error();
		return error_set(err, MTLS_ERR_ARG, "the key does not belong to "
		    "the certificate");
	}
	switch (fmt) {
	case EXPORT_DER:
		der = NULL;
		n = i2d_X509(leaf, &der);
		if (n <= 0 || (*out = malloc((size_t)n)) == NULL) {
			OPENSSL_free(der);
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		}
		memcpy(*out, der, (size_t)n);
		OPENSSL_free(der);
		*out_len = (size_t)n;
		return 0;
	case EXPORT_P12:
		if ((rest = sk_X509_new_null()) == NULL)
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		for (i = 1; i < sk_X509_num(certs); i++)
			if (!sk_X509_push(rest, sk_X509_value(certs, i))) {
				sk_X509_free(rest);
				return error_set(err, MTLS_ERR_NOMEM,
				    "out of memory");
			}
		rv = pkcs12_emit(key, leaf, rest, name, pass, &p12, out_len,
		    err);
		sk_X509_free(rest);
		if (rv == 0 && (*out = malloc(*out_len)) == NULL)
			rv = error_set(err, MTLS_ERR_NOMEM, "out of memory");
		if (rv == 0)
			memcpy(*out, p12, *out_len);
		OPENSSL_free(p12);
		return rv;
	case EXPORT_PEM:
	case EXPORT_K8S:
		break;
	default:
		return error_set(err, MTLS_ERR_ARG, "unknown export format");
	}
	if (certs_pem(certs, &crt, &cl) != 0 || key_pem(key, &kb) != 0 ||
	    (roots != NULL && certs_pem(roots, &ca, &cal) != 0) ||
	    (ob = BIO_new(BIO_s_secmem())) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	BIO_get_mem_ptr(kb, &km);
	if (fmt == EXPORT_PEM) {
		/* HAProxy's crt: the chain, then the key, in one file */
		if (BIO_write(ob, crt, (int)cl) != (int)cl ||
		    BIO_write(ob, km->data, (int)km->length) !=
		    (int)km->length) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
	} else {
		if (!k8s_name_ok(name)) {
			error_set(err, MTLS_ERR_ARG, "--name '%s' is not a "
			    "Kubernetes object name (lower-case letters, "
			    "digits, '-' and '.')", name);
			goto out;
		}
		if ((b1 = b64_line(crt, cl)) == NULL ||
		    (b2 = b64_line(km->data, km->length)) == NULL ||
		    (ca != NULL && (b3 = b64_line(ca, cal)) == NULL)) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
		/* The kubernetes.io/tls Secret; ca.crt as cert-manager
		 * writes it. */
		if (BIO_printf(ob, "apiVersion: v1\nkind: Secret\n"
		    "type: kubernetes.io/tls\nmetadata:\n  name: %s\ndata:\n"
		    "  tls.crt: %s\n  tls.key: %s\n", name, b1, b2) <= 0 ||
		    (b3 != NULL && BIO_printf(ob, "  ca.crt: %s\n", b3) <= 0)) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	BIO_get_mem_ptr(ob, &om);
	if ((cb = malloc(om->length ? om->length : 1)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(cb, om->data, om->length);
	*out = (uint8_t *)cb;
	*out_len = om->length;
	rv = 0;
 out:
	if (b2 != NULL)
		OPENSSL_cleanse(b2, strlen(b2));
	free(b1);
	free(b2);
	free(b3);
	free(crt);
	free(ca);
	BIO_free(kb);	/* secmem: cleansed on free */
	BIO_free(ob);
	return rv;
}
