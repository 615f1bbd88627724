/*
 * Fuzz target: the in-memory setters of mtls.h, which take whatever bytes
 * a library user hands them (a secret store's value, a file read some
 * other way): mtls_config_set_trust_mem, mtls_config_add_untrusted_mem and
 * mtls_config_set_identity_mem, the last with a key passphrase set so that
 * encrypted keys are decrypted. Input: one byte that picks the setter, and
 * for identity_mem two bytes (big-endian) that split the rest into the
 * certificate bytes and the key bytes. Each call must succeed or fail
 * with a message, never crash or leak.
 */
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct mtls_config *cfg;
	size_t cut;
	int r;

	if (len < 1 || (cfg = mtls_config_new()) == NULL)
		return 0;
	if (mtls_config_set_key_passphrase(cfg, "fuzz", 4) != 0)
		abort();
	switch (data[0] % 3) {
	case 0:
		r = mtls_config_set_trust_mem(cfg, data + 1, len - 1);
		break;
	case 1:
		r = mtls_config_add_untrusted_mem(cfg, data + 1, len - 1);
		break;
	default:
		if (len < 3)
			goto out;
		cut = ((size_t)data[1] << 8 | data[2]) % (len - 2);
		r = mtls_config_set_identity_mem(cfg, data + 3, cut,
		    data + 3 + cut, len - 3 - cut);
		break;
	}
	/* a refusal always says what and why */
	if (r != 0 && mtls_config_error(cfg)[0] == '\0')
		abort();
	if (r == 0 && mtls_config_error_code(cfg) != MTLS_ERR_NONE)
		abort();
 out:
	mtls_config_free(cfg);
	return 0;
}
