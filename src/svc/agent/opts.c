/* mtls agent: what a struct agent_opts must hold before an agent starts. */
#include <string.h>

#include "agent/opts.h"

int
agent_opts_check(const struct agent_opts *o, struct mtls_error *err)
{
	if (o->ca_url == NULL || o->out_dir == NULL)
		return error_set(err, MTLS_ERR_ARG, "give --ca-url and "
		    "--out-dir");
	if (strncmp(o->ca_url, "https://", 8) != 0)
		return error_set(err, MTLS_ERR_ARG, "--ca-url must be "
		    "https://");
	if ((o->token_file == NULL) == (o->cert == NULL) ||
	    (o->cert == NULL) != (o->key == NULL))
		return error_set(err, MTLS_ERR_ARG, "give --token-file, or "
		    "--cert and --key");
	if (o->key != NULL && keystore_is_uri(o->key))
		return error_set(err, MTLS_ERR_ARG, "--key: the agent renews "
		    "with a key file and writes new keys as files; a pkcs11: "
		    "URI is not supported by the agent yet (docs/pkcs11.md)");
	return 0;
}
