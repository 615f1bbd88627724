/*
 * Private keys: the types we issue, generation, loading (PEM or DER,
 * PKCS#8 encrypted or not) and 0600 writing, descriptions, the digest to
 * sign with. Key bytes read from a file are cleansed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "internal.h"

static const struct {
	const char *name;
	const char *alias[3];
} key_types[KEY__COUNT] = {
	[KEY_EC_P256] = { "ec-p256", { "p256", "ecdsa-p256", "ec" } },
	[KEY_EC_P384] = { "ec-p384", { "p384", "ecdsa-p384", NULL } },
	[KEY_ED25519] = { "ed25519", { NULL, NULL, NULL } },
	[KEY_RSA_2048] = { "rsa-2048", { "rsa2048", "rsa", NULL } },
	[KEY_RSA_3072] = { "rsa-3072", { "rsa3072", NULL, NULL } },
};

int
key_type_parse(const char *s)
{
	int i, j;

	for (i = 0; i < KEY__COUNT; i++) {
		if (strcasecmp(s, key_types[i].name) == 0)
			return i;
		for (j = 0; j < 3; j++)
			if (key_types[i].alias[j] != NULL &&
			    strcasecmp(s, key_types[i].alias[j]) == 0)
				return i;
	}
	return -1;
}

const char *
key_type_name(int t)
{
	return (t >= 0 && t < KEY__COUNT) ? key_types[t].name : "unknown";
}

int
key_type_of(EVP_PKEY *k)
{
	char curve[64];
	int bits = EVP_PKEY_get_bits(k);

	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME,
		    curve, sizeof(curve), NULL) != 1)
			return -1;
		if (strcmp(curve, "prime256v1") == 0 ||
		    strcmp(curve, "P-256") == 0)
			return KEY_EC_P256;
		if (strcmp(curve, "secp384r1") == 0 ||
		    strcmp(curve, "P-384") == 0)
			return KEY_EC_P384;
		return -1;
	case EVP_PKEY_ED25519:
		return KEY_ED25519;
	case EVP_PKEY_RSA:
		return bits >= 3072 ? KEY_RSA_3072 : bits >= 2048 ?
		    KEY_RSA_2048 : -1;
	default:
		return -1;
	}
}

int
key_generate(int type, EVP_PKEY **out, struct mtls_error *err)
{
	EVP_PKEY *k = NULL;

	switch (type) {
	case KEY_EC_P256:
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case KEY_EC_P384:
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		break;
	case KEY_ED25519:
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	case KEY_RSA_2048:
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		break;
	case KEY_RSA_3072:
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
		break;
	default:
		return error_set(err, MTLS_ERR_ARG, "unknown key type %d", type);
	}
	if (k == NULL)
		return error_set_ossl(err, MTLS_ERR_CRYPTO,
		    "cannot generate a %s key", key_type_name(type));
	*out = k;
	return 0;
}

struct pass_cb {
	const struct mtls_secret *pass;
	int asked;
};

static int
pass_cb(char *buf, int size, int rw, void *u)
{
	struct pass_cb *p = u;

	(void)rw;
	p->asked = 1;
	if (p->pass == NULL || p->pass->p == NULL ||
	    p->pass->len > (size_t)size)
		return -1;
	memcpy(buf, p->pass->p, p->pass->len);
	return (int)p->pass->len;
}

int
key_parse(const uint8_t *buf, size_t len, const char *path,
    const struct mtls_secret *pass, EVP_PKEY **out, struct mtls_error *err)
{
	BIO *bio = NULL;
	EVP_PKEY *k = NULL;
	struct pass_cb cb = { pass, 0 };
	int rv = -1;

	*out = NULL;
	if (len > MTLS_MAX_FILE)
		return error_set(err, MTLS_ERR_ARG, "%s: %zu bytes, over the "
		    "limit of %u", path, len, MTLS_MAX_FILE);
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", path);
		goto err;
	}
	if (memmem(buf, len, "-----BEGIN", 10) != NULL)
		k = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, &cb);
	else
		k = d2i_PrivateKey_bio(bio, NULL);
	if (k == NULL) {
		if (cb.asked && (pass == NULL || pass->p == NULL))
			error_set(err, MTLS_ERR_ARG,
			    "%s: key is encrypted: give its passphrase with "
			    "--pass-file", path);
		else if (cb.asked)
			error_set(err, MTLS_ERR_ARG,
			    "%s: wrong passphrase, or the key is damaged", path);
		else
			error_set_ossl(err, MTLS_ERR_PARSE,
			    "%s: not a private key (PEM or DER)", path);
		goto err;
	}
	*out = k;
	rv = 0;
 err:
	BIO_free(bio);
	ERR_clear_error();
	return rv;
}

int
key_write(const char *path, EVP_PKEY *k, const struct mtls_secret *pass,
    int overwrite, struct mtls_error *err)
{
	BIO *bio;
	BUF_MEM *mem = NULL;
	int ok, rv = -1;

	if ((bio = BIO_new(BIO_s_secmem())) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", path);
	if (pass != NULL && pass->p != NULL && pass->len > 0)
		ok = PEM_write_bio_PKCS8PrivateKey(bio, k, EVP_aes_256_cbc(),
		    (const char *)pass->p, (int)pass->len, NULL, NULL);
	else
		ok = PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
	if (!ok) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "%s: cannot encode key",
		    path);
		goto err;
	}
	BIO_get_mem_ptr(bio, &mem);
	rv = fs_write_atomic(path, mem->data, mem->length, 0600, overwrite,
	    err);
 err:
	BIO_free(bio);	/* secmem: cleansed on free */
	return rv;
}

void
key_describe(EVP_PKEY *k, char *buf, size_t len, int *bits)
{
	char group[64];
	int id = EVP_PKEY_get_base_id(k);

	*bits = EVP_PKEY_get_bits(k);
	switch (id) {
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME,
		    group, sizeof(group), NULL) != 1)
			snprintf(group, sizeof(group), "%d-bit", *bits);
		if (strcmp(group, "prime256v1") == 0)
			snprintf(group, sizeof(group), "P-256");
		else if (strcmp(group, "secp384r1") == 0)
			snprintf(group, sizeof(group), "P-384");
		else if (strcmp(group, "secp521r1") == 0)
			snprintf(group, sizeof(group), "P-521");
		snprintf(buf, len, "EC %s", group);
		break;
	case EVP_PKEY_RSA:
	case EVP_PKEY_RSA_PSS:
		snprintf(buf, len, "RSA %d", *bits);
		break;
	case EVP_PKEY_ED25519:
		snprintf(buf, len, "Ed25519");
		break;
	case EVP_PKEY_ED448:
		snprintf(buf, len, "Ed448");
		break;
	case EVP_PKEY_DSA:
		snprintf(buf, len, "DSA %d", *bits);
		break;
	default:
		snprintf(buf, len, "%s %d", OBJ_nid2sn(id), *bits);
	}
}

const EVP_MD *
sign_digest(EVP_PKEY *k)
{
	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_ED25519:
	case EVP_PKEY_ED448:
		return NULL;	/* pure EdDSA signs without a digest */
	case EVP_PKEY_EC:
		return EVP_PKEY_get_bits(k) > 256 ? EVP_sha384() : EVP_sha256();
	default:
		return EVP_sha256();
	}
}
