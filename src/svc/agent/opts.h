/*
 * mtls agent: the rules on a struct agent_opts that hold whoever fills it
 * (flags of `mtls agent`; later `mtls proxy --ca-url` and its [agent]
 * section), so that no caller starts an agent the rules refuse.
 */
#ifndef MTLS_AGENT_OPTS_H
#define MTLS_AGENT_OPTS_H

#include "agent/agent.h"

/* Checks <o>: ca_url and out_dir given, ca_url https:// (the token and
 * the key's certificate travel only over TLS), exactly one of token_file
 * or cert+key. 0, or -1 with MTLS_ERR_ARG and the flag to fix in <err>. */
int	 agent_opts_check(const struct agent_opts *o, struct mtls_error *err)
	    MTLS_MUST_CHECK;

#endif
