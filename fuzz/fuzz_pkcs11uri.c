/*
 * Fuzz target: p11uri_parse, the RFC 7512 pkcs11: URI parser of keystore.c.
 * Invariants: success means a token, a key (object or id) and a PIN file,
 * all NUL-terminated within their fields; no token or module is touched.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct mtls_error err;
	struct p11uri u;

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
	return 0;
}
