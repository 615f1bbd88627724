/*
 * The agent's key in a PKCS#11 token (--key pkcs11:...), replaced at each
 * renewal as a key file is: a new pair labelled object= with a fresh
 * CKA_ID, the CSR signed in the token, the certificate installed, and only
 * then the old pair deleted.
 *
 * Crash safety. The current key is the pair under the label whose public
 * key is out-dir/svid.pem's (the certificate is replaced atomically, so it
 * names exactly one of them): found by the certificate, not by a file that
 * could disagree with it. The ids of pairs that may be left over, the one
 * about to be made and the one it replaces, are written to
 * out-dir/svid.keyids (fsync'd) before the pair is made; the next start
 * deletes every recorded id but the current key's and removes the file.
 * Only recorded ids are deleted: a key someone else keeps under the same
 * label is never touched. At any point a crash leaves the certificate
 * with its key, and at most one orphan that the next start removes.
 *
 * Names. Two pairs share the label between the new one's making and the
 * old one's deletion, so the URI the agent hands on (MTLS_KEY, the key it
 * presents) carries the current key's id=: it names that key alone before,
 * during and after a replacement.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "agent/agent_local.h"

#define IDS_MAX	8	/* lines in svid.keyids read back */

static void
id_hex(const uint8_t *id, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
	out[2 * n] = '\0';
}

static void
line(const char *level, const char *event, const char *what, const char *v,
    const struct mtls_error *err)
{
	json_t *o = json_object();

	json_object_set_new(o, what, esc_jstr(v));
	if (err != NULL)
		json_object_set_new(o, "error", esc_jstr(err->msg));
	log_emit(level, event, o);
	json_decref(o);
}

/* The current key is <k> (CKA_ID <id>): a->tkey, and the URI that names
 * it in a->svid_key. */
static int
set_current(struct agent *a, EVP_PKEY *k, const uint8_t *id, size_t n,
    struct mtls_error *err)
{
	char uri[P11URI_MAX + 1];

	if (n > 0 && keystore_uri_with_id(a->o->key, id, n, uri, sizeof(uri),
	    err) != 0)
		return -1;
	snprintf(a->svid_key, sizeof(a->svid_key), "%s", n > 0 ? uri :
	    a->o->key);
	EVP_PKEY_free(a->tkey);
	a->tkey = k;
	memcpy(a->tkey_id, id, n);
	a->tkey_id_len = n;
	return 0;
}

/* The leaf of <path>, valid or not; NULL when unreadable. */
static X509 *
leaf_of(const char *path)
{
	STACK_OF(X509) *chain = NULL;
	struct mtls_error e;
	X509 *x = NULL;

	if (path == NULL || access(path, R_OK) != 0 ||
	    certs_load(path, &chain, &e) != 0) {
		ERR_clear_error();
		return NULL;
	}
	x = sk_X509_shift(chain);
	sk_X509_pop_free(chain, X509_free);
	return x;
}

/* svid.keyids: the ids a crash may have left, deleted but the current. */
static void
cleanup(struct agent *a)
{
	uint8_t *buf = NULL, id[128];
	size_t len = 0, n, i;
	struct mtls_error e;
	char *p, *nl, hex[257];
	int left = 0, lines = 0;

	if (access(a->ids_file, F_OK) != 0)
		return;
	if (fs_read(a->ids_file, 4096, &buf, &len, &e) != 0) {
		line("warn", "token_key_cleanup", "error", e.msg, NULL);
		return;
	}
	for (p = (char *)buf; *p != '\0' && lines++ < IDS_MAX; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL)
			break;
		*nl = '\0';
		n = strlen(p) / 2;
		if (n == 0 || n > sizeof(id) || strlen(p) != 2 * n ||
		    strspn(p, "0123456789abcdef") != 2 * n)
			continue;	/* not ours: nothing is deleted */
		for (i = 0; i < n; i++)
			sscanf(p + 2 * i, "%2hhx", &id[i]);
		if (n == a->tkey_id_len && memcmp(id, a->tkey_id, n) == 0)
			continue;	/* the certificate's key */
		id_hex(id, n, hex);
		if (keystore_destroy(a->o->key, id, n, &e) != 0) {
			left++;
			line("warn", "token_key_left", "id", hex, &e);
		} else
			line("info", "token_key_deleted", "id", hex, NULL);
	}
	free(buf);
	if (!left)
		(void)unlink(a->ids_file);
}

int
tokenkey_setup(struct agent *a, struct mtls_error *err)
{
	struct keystore_made made;
	struct p11uri *u;
	EVP_PKEY *k = NULL;
	uint8_t id[128];
	size_t n = 0;
	X509 *x;
	int i, r;

	snprintf(a->ids_file, sizeof(a->ids_file), "%s/svid.keyids",
	    a->o->out_dir);
	/* a new pair needs a label (object=): a URI naming its key by id=
	 * alone keeps that key, re-certified at each renewal */
	if ((u = malloc(sizeof(*u))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (p11uri_parse(a->o->key, strlen(a->o->key), u, err) != 0) {
		free(u);
		return -1;
	}
	a->tkey_rotate = u->object[0] != '\0';
	OPENSSL_cleanse(u, sizeof(*u));
	free(u);
	/* the key out-dir's certificate is for, else --cert's */
	for (i = 0; i < 2 && k == NULL; i++) {
		if ((x = leaf_of(i == 0 ? a->svid : a->o->cert)) == NULL)
			continue;
		r = keystore_find_cert(a->o->key, x, &k, id, &n, err);
		X509_free(x);
		if (r != 0)
			return -1;
	}
	if (k != NULL && set_current(a, k, id, n, err) != 0) {
		EVP_PKEY_free(k);
		return -1;
	}
	cleanup(a);
	if (a->tkey != NULL)
		return 0;
	/* none: --cert's key must exist; an enrollment uses the token's
	 * key or makes a P-256 pair there */
	memset(&made, 0, sizeof(made));
	if ((a->o->cert != NULL ? key_load(a->o->key, NULL, &k, err) :
	    keystore_generate(a->o->key, KEY_EC_P256, 1, &k, &made, err)) != 0)
		return -1;
	if (set_current(a, k, made.id, made.id_len, err) != 0) {
		EVP_PKEY_free(k);
		return -1;
	}
	return 0;
}

int
tokenkey_next(struct agent *a, EVP_PKEY **key, struct mtls_error *err)
{
	struct keystore_made made;
	char uri[P11URI_MAX + 1], ids[2 * 2 * 128 + 3];
	size_t n = 16;

	*key = NULL;
	if (RAND_bytes(a->next_id, (int)n) != 1)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "no random bytes "
		    "for the new key's id");
	a->next_id_len = n;
	id_hex(a->next_id, n, ids);
	strcat(ids, "\n");
	/* the key renewed with is ours to delete once replaced, unless it
	 * is --cert's (kept where the operator put it, as a key file is) */
	a->next_old_ours = a->cur_cert == a->svid && a->tkey_id_len > 0;
	if (a->next_old_ours) {
		id_hex(a->tkey_id, a->tkey_id_len, ids + strlen(ids));
		strcat(ids, "\n");
	}
	if (keystore_uri_with_id(a->o->key, a->next_id, n, uri, sizeof(uri),
	    err) != 0 ||
	    fs_write_atomic(a->ids_file, ids, strlen(ids), 0600, 1, err) != 0) {
		a->next_id_len = 0;
		return -1;
	}
	memset(&made, 0, sizeof(made));
	if (keystore_generate(uri, KEY_EC_P256, 0, key, &made, err) != 0) {
		/* nothing made (or what was made is gone): nothing to clean */
		if (!made.made)
			(void)unlink(a->ids_file);
		a->next_id_len = 0;
		return -1;
	}
	return 0;
}

void
tokenkey_drop(struct agent *a)
{
	struct mtls_error e;
	char hex[257];

	if (a->next_id_len == 0)
		return;
	id_hex(a->next_id, a->next_id_len, hex);
	if (keystore_destroy(a->o->key, a->next_id, a->next_id_len, &e) != 0)
		line("warn", "token_key_left", "id", hex, &e);	/* svid.keyids */
	else
		(void)unlink(a->ids_file);
	a->next_id_len = 0;
}

void
tokenkey_installed(struct agent *a, EVP_PKEY *key)
{
	uint8_t old[128];
	size_t on = a->tkey_id_len, nn = a->next_id_len;
	char hex[257];
	struct mtls_error e;

	memcpy(old, a->tkey_id, on);
	a->next_id_len = 0;	/* installed: never dropped */
	/* the URI was made once already (tokenkey_next): this cannot fail */
	if (!EVP_PKEY_up_ref(key))
		return;
	if (set_current(a, key, a->next_id, nn, &e) != 0) {
		EVP_PKEY_free(key);
		return;
	}
	if (!a->next_old_ours || on == 0) {
		(void)unlink(a->ids_file);
		return;
	}
	id_hex(old, on, hex);
	if (keystore_destroy(a->o->key, old, on, &e) != 0) {
		/* svid.keyids keeps it: the next start deletes it */
		line("warn", "token_key_left", "id", hex, &e);
		return;
	}
	(void)unlink(a->ids_file);
	line("info", "token_key_replaced", "id", hex, NULL);
}
