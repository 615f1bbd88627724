/*
 * The signer: the only code that holds a CA private key (STYLE.md
 * "Ownership and secrets" 5, after OpenBSD relayd's ca.c). Everything else
 * in src/svc/ca holds a struct signer and can only ask it to sign what it
 * has built: a certificate, a CRL, an OCSP response. The key never leaves
 * this file except encrypted into ca.key (signer_write), so the online
 * front (ca serve) can later move the signer into a separate process.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "ca_local.h"

struct signer {
	EVP_PKEY	*key;
};

static int
signer_take(struct signer **out, EVP_PKEY **key, struct mtls_error *err)
{
	if ((*out = calloc(1, sizeof(**out))) == NULL) {
		EVP_PKEY_free(*key);
		*key = NULL;
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	(*out)->key = *key;
	*key = NULL;
	return 0;
}

int
signer_generate(struct signer **out, int key_type, struct mtls_error *err)
{
	EVP_PKEY *key = NULL;

	*out = NULL;
	if (key_generate(key_type, &key, err) != 0)
		return -1;
	return signer_take(out, &key, err);
}

int
signer_load(struct signer **out, const char *path,
    const struct mtls_secret *pass, X509 *cert, struct mtls_error *err)
{
	EVP_PKEY *key = NULL;

	*out = NULL;
	/* a token key named by its label alone: the one ca.pem certifies */
	if (key_load_cert(path, pass, cert, &key, err) != 0)
		return -1;
	if (cert != NULL && X509_check_private_key(cert, key) != 1) {
		EVP_PKEY_free(key);
		ERR_clear_error();
		return error_set(err, MTLS_ERR_PARSE, "%s: does not match "
		    "ca.pem", path);
	}
	return signer_take(out, &key, err);
}

/*
 * After a rotation's switch, the previous issuer's key, through the same
 * signer_load as ca.key (a file, or a key in a PKCS#11 token that
 * rotation/old.keyuri names: one pkcs11: URI line), checked against the
 * previous issuing certificate (rotation/old.pem, ca->prev).
 */
int
ca_prev_key_load(struct ca *ca, const char *pass_file, struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	uint8_t *buf = NULL;
	size_t len = 0;
	char p[PATH_MAX], key[PATH_MAX];
	int rv = -1;

	if (ca->prev == NULL || ca->rot_phase != ROT_SWITCHED ||
	    ca->prev_signer != NULL)
		return 0;
	ca_path(p, sizeof(p), ca->dir, "rotation/old.keyuri");
	if (access(p, F_OK) != 0)
		ca_path(key, sizeof(key), ca->dir, "rotation/old.key");
	else {
		if (fs_read(p, P11URI_MAX + 2, &buf, &len, err) != 0)
			return -1;
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		if (!keystore_is_uri((char *)buf) || strlen((char *)buf) != len ||
		    len >= sizeof(key)) {
			free(buf);
			return error_set(err, MTLS_ERR_PARSE, "%s: not one "
			    "pkcs11: URI line", p);
		}
		memcpy(key, buf, len + 1);
		free(buf);
	}
	if (pass_file != NULL && secret_load_pass(&pass, pass_file, err) != 0)
		return -1;
	if (signer_load(&ca->prev_signer, key, &pass, ca->prev, err) == 0)
		rv = 0;
	secret_clear(&pass);
	return rv;
}

/* The key <uri> names in a token: made there (<key_type>), refused when it
 * exists; with <existing>, the key it holds (an error when none). */
int
signer_token(struct signer **out, const char *uri, int key_type,
    int existing, struct keystore_made *made, struct mtls_error *err)
{
	EVP_PKEY *key = NULL;

	*out = NULL;
	if (existing)
		return signer_load(out, uri, NULL, NULL, err);
	if (keystore_generate(uri, key_type, 0, &key, made, err) != 0)
		return -1;
	return signer_take(out, &key, err);
}

void
signer_free(struct signer *s)
{
	if (s == NULL)
		return;
	EVP_PKEY_free(s->key);	/* OpenSSL cleanses key material on free */
	free(s);
}

int
signer_public(struct signer *s, EVP_PKEY **pub, struct mtls_error *err)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	int n;

	*pub = NULL;
	if ((n = i2d_PUBKEY(s->key, &der)) <= 0)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot encode "
		    "the CA's public key");
	p = der;
	*pub = d2i_PUBKEY(NULL, &p, n);
	OPENSSL_free(der);
	if (*pub == NULL)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot decode "
		    "the CA's public key");
	return 0;
}

int
signer_write(struct signer *s, const char *path,
    const struct mtls_secret *pass, struct mtls_error *err)
{
	return key_write(path, s->key, pass, 0, err);
}

int
signer_sign(struct signer *s, X509 *issuer, struct profile_req *r,
    X509 **out, struct mtls_error *err)
{
	if (s == NULL)
		return error_set(err, MTLS_ERR_ARG, "the CA was opened without "
		    "its key");
	r->issuer = issuer;
	r->issuer_key = s->key;
	if (issuer == NULL)
		r->pubkey = s->key;	/* a root signs itself */
	return profile_build(r, out, err);
}

int
signer_crl(struct signer *s, X509 *issuer, const struct crl_entry *v,
    size_t n, int64_t number, int64_t this_update, int64_t next_update,
    X509_CRL **out, struct mtls_error *err)
{
	if (s == NULL)
		return error_set(err, MTLS_ERR_ARG, "the CA was opened without "
		    "its key");
	return crl_build(issuer, s->key, v, n, number, this_update,
	    next_update, out, err);
}

int
signer_ocsp(struct signer *s, X509 *issuer, OCSP_BASICRESP *bs,
    struct mtls_error *err)
{
	if (s == NULL)
		return error_set(err, MTLS_ERR_ARG, "the CA was opened without "
		    "its key");
	if (OCSP_basic_sign(bs, issuer, s->key, EVP_sha256(), NULL, 0) != 1)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot sign the "
		    "OCSP response");
	return 0;
}
