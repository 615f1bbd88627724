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
	/* --key pkcs11:... names the key of every certificate (kept in its
	 * token, renewed as is): without --cert it enrolls (--token-file)
	 * or renews what out-dir holds */
	int uri = o->key != NULL && keystore_is_uri(o->key);

	if ((o->token_file != NULL && o->cert != NULL) ||
	    (o->cert != NULL && o->key == NULL) ||
	    (o->cert == NULL && o->key != NULL && !uri) ||
	    (o->token_file == NULL && o->cert == NULL && !uri))
		return error_set(err, MTLS_ERR_ARG, "give --token-file, or "
		    "--cert and --key");
	if (o->key != NULL && keystore_is_uri(o->key) && o->layout_k8s)
		return error_set(err, MTLS_ERR_ARG, "--key pkcs11:...: the "
		    "kubernetes layout needs a tls.key file; a token key "
		    "never leaves its token");
	return 0;
}
