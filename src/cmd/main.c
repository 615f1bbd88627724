/* mtls: one binary, many subcommands; --help is printed from the table
 * that dispatches. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static int
cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("mtls %s (%s)\n", MTLS_VERSION, OpenSSL_version(OPENSSL_VERSION));
	return 0;
}

static const struct subcmd commands[] = {
	{ "agent", cmd_agent, "keep a workload certificate fresh from mtls ca serve" },
	{ "ca", cmd_ca, "private PKI: init, intermediate, issue, revoke, crl, list, token, serve" },
	{ "cert", cmd_cert, "inspect and verify certificates and chains" },
	{ "doctor", cmd_doctor, "trace a handshake, check files, explain failures" },
	{ "proxy", cmd_proxy, "mTLS sidecar: inbound (mTLS in) or outbound (mTLS out)" },
	{ "version", cmd_version, "print the version" },
	{ NULL, NULL, NULL },
};

int
main(int argc, char **argv)
{
	return subcmd_dispatch("mtls", commands, argc, argv);
}
