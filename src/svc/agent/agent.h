/*
 * mtls agent: keeps a workload's certificate fresh. Enrolls with a
 * one-time token (authenticating the CA server by the root fingerprint the
 * token carries), then renews with the current certificate at two thirds
 * of its remaining life, writing svid.pem, svid.key (0600) and bundle.pem
 * atomically; retries with exponential back-off while the CA is down and
 * keeps the current files meanwhile.
 */
#ifndef MTLS_AGENT_H
#define MTLS_AGENT_H

#include <stdint.h>

#include "internal.h"

struct agent_opts {
	const char	*ca_url;	/* https://host:port */
	const char	*token_file;	/* enroll with this token */
	const char	*cert, *key;	/* or renew from these */
	const char	*ca_bundle;	/* roots to trust the CA server by */
	const char	*out_dir;
	const char	*on_rotate;	/* sh -c after each rotation */
	int		 once;		/* one enroll/renew, then exit */
	int		 layout_k8s;	/* tls.crt/tls.key/ca.crt via ..data */
};

/* Runs until SIGTERM/SIGINT (0), or once (0 issued, -1 failed). */
int	 agent_run(const struct agent_opts *, struct mtls_error *)
	    MTLS_MUST_CHECK;

/* For a process that embeds the agent (mtls proxy --ca-url): enrolls, or
 * takes the valid files in out_dir, now (-1 when that fails), then renews
 * in a background thread for the life of the process. <o> must outlive
 * it. */
int	 agent_background(const struct agent_opts *, struct mtls_error *)
	    MTLS_MUST_CHECK;

#endif
