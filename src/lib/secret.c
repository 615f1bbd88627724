/* Secrets (passphrases, key bytes, tokens): cleansed before they are freed. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"

int
secret_set(struct mtls_secret *s, const void *p, size_t len)
{
	uint8_t *n;

	n = malloc(len + 1);
	if (n == NULL)
		return -1;
	memcpy(n, p, len);
	n[len] = '\0';
	secret_clear(s);
	s->p = n;
	s->len = len;
	return 0;
}

void
secret_clear(struct mtls_secret *s)
{
	if (s->p != NULL) {
		OPENSSL_cleanse(s->p, s->len + 1);
		free(s->p);
	}
	s->p = NULL;
	s->len = 0;
}

/* The first line of <buf>: the passphrase; <buf> is cleansed and freed. */
static int
pass_take(struct mtls_secret *s, const char *path, uint8_t *buf, size_t len,
    struct mtls_error *err)
{
	size_t n;
	int rv = -1;

	for (n = 0; n < len && buf[n] != '\n' && buf[n] != '\r'; n++)
		;
	if (n == 0) {
		error_set(err, MTLS_ERR_PARSE,
		    "%s: passphrase file is empty (put the passphrase on its "
		    "first line)", path);
		goto err;
	}
	if (secret_set(s, buf, n) != 0) {
		error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", path);
		goto err;
	}
	rv = 0;
 err:
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rv;
}

int
secret_load_pass(struct mtls_secret *s, const char *path,
    struct mtls_error *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (fs_read(path, 4096, &buf, &len, err) != 0)
		return -1;
	return pass_take(s, path, buf, len, err);
}

int
secret_load_private(struct mtls_secret *s, const char *path,
    const char *label, struct stat *seen, struct mtls_error *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (fs_read_private(path, 4096, label, 1, &buf, &len, seen, err) != 0)
		return -1;
	return pass_take(s, path, buf, len, err);
}
