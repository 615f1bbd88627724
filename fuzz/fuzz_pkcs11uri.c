/*
 * Fuzz target: p11uri_parse, the RFC 7512 pkcs11: URI parser of keystore.c.
 * Invariants: success means a token, a key (object or id) and a PIN file,
 * all NUL-terminated within their fields; no token or module is touched.
 * keystore_uri_with_id (the agent's name for its current key) of an
 * accepted URI parses again, to the same token, object and PIN file and
 * exactly the new id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const uint8_t id[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
	    13, 14, 15, 16 };
	struct mtls_error err;
	struct p11uri u, v;
	char *s, out[P11URI_MAX + 1];

	if (p11uri_parse((const char *)data, len, &u, &err) != 0)
		return 0;
	if (u.token[0] == '\0' || u.pin_file[0] == '\0' ||
	    (u.object[0] == '\0' && u.id_len == 0) ||
	    memchr(u.token, '\0', sizeof(u.token)) == NULL ||
	    memchr(u.object, '\0', sizeof(u.object)) == NULL ||
	    memchr(u.pin_file, '\0', sizeof(u.pin_file)) == NULL ||
	    memchr(u.module, '\0', sizeof(u.module)) == NULL ||
	    u.id_len > sizeof(u.id) ||
	    (u.module[0] != '\0' && u.module[0] != '/'))
		abort();
	if ((s = malloc(len + 1)) == NULL)
		return 0;
	memcpy(s, data, len);
	s[len] = '\0';
	if (keystore_uri_with_id(s, id, sizeof(id), out, sizeof(out),
	    &err) == 0 && (p11uri_parse(out, strlen(out), &v, &err) != 0 ||
	    v.id_len != sizeof(id) || memcmp(v.id, id, sizeof(id)) != 0 ||
	    strcmp(u.token, v.token) != 0 || strcmp(u.object, v.object) != 0 ||
	    strcmp(u.pin_file, v.pin_file) != 0 ||
	    strcmp(u.module, v.module) != 0))
		abort();
	free(s);
	return 0;
}
