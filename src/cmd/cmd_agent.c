/* mtls agent: flags only; the loop is src/svc/agent. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/opts.h"
#include "cmd.h"

static const char agent_help[] =
"usage: mtls agent --ca-url URL (--token-file F | --cert F --key F)\n"
"           [--ca-bundle F] --out-dir DIR [--once] [--on-rotate CMD]\n"
"           [--layout flat|k8s] [--log-format json|text]\n"
"Keeps a workload certificate fresh from `mtls ca serve`: enrolls with a\n"
"one-time token (its root and CA fingerprints are a pin: the token is sent\n"
"only over TLS verified by that root alone, to a server whose certificate\n"
"that CA issued; renewals: the CA that issued ours), then renews at two\n"
"thirds of the remaining lifetime with a new key each time (--cert: at\n"
"once; a revoked certificate is never installed, and leaves DIR).\n"
"Writes DIR/svid.pem, DIR/svid.key (0600) and DIR/bundle.pem atomically;\n"
"while the CA is down it retries with back-off and keeps the files.\n"
"An answer is installed only with the identities it renews, chained to the\n"
"current bundle, valid by this clock (else clock_skew, logged with the\n"
"skew); a new root only when a current root cross-signed it.\n"
"  --out-dir     this user's, writable by nobody else (created 0700)\n"
"  --layout k8s  write tls.crt, tls.key and ca.crt (a kubernetes.io/tls\n"
"                Secret's names) as links into DIR/..data, swapped in one\n"
"                rename like a kubelet-mounted Secret (default flat)\n"
"  --once        enroll (or renew) once and exit: 0 done, 1 failed\n"
"  --on-rotate   run this shell command after each rotation\n"
"  --ca-bundle   roots to trust the CA server by (default: the bundle the\n"
"                enrollment fetched, DIR/bundle.pem)\n"
"  --key 'pkcs11:token=T;object=O?pin-source=file:/etc/mtls/pin'\n"
"                the key in a PKCS#11 token (made there, P-256, when it\n"
"                does not exist): CSRs are signed and renewals presented\n"
"                with it, renewed as is; no key file is written, and\n"
"                --on-rotate gets the URI in MTLS_KEY (the certificate's\n"
"                path in MTLS_CERT). With --token-file, or alone to renew\n"
"                DIR's certificate\n";

int
cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca-url", required_argument, NULL, 'u' },
		{ "token-file", required_argument, NULL, 't' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca-bundle", required_argument, NULL, 'b' },
		{ "out-dir", required_argument, NULL, 'o' },
		{ "once", no_argument, NULL, '1' },
		{ "on-rotate", required_argument, NULL, 'r' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "layout", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_opts o;
	struct mtls_error err;
	int c;

	if (cmd_wants_help(argc, argv, agent_help))
		return 0;
	memset(&o, 0, sizeof(o));
	log_set_format(!isatty(STDERR_FILENO));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'u': o.ca_url = optarg; break;
		case 't': o.token_file = optarg; break;
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'b': o.ca_bundle = optarg; break;
		case 'o': o.out_dir = optarg; break;
		case '1': o.once = 1; break;
		case 'r': o.on_rotate = optarg; break;
		case 'L':
			if (strcmp(optarg, "k8s") == 0)
				o.layout_k8s = 1;
			else if (strcmp(optarg, "flat") != 0)
				return cmd_usage("agent", "--layout must be flat "
				    "or k8s");
			break;
		case 'f':
			if (cmd_log_format("agent", optarg) != 0)
				return 2;
			break;
		default:
			return cmd_usage("agent", "unknown or incomplete option "
			    "'%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return cmd_usage("agent", "give --ca-url and --out-dir");
	error_clear(&err);
	if (agent_opts_check(&o, &err) != 0)
		return cmd_usage("agent", "%s", err.msg);
	if (agent_run(&o, &err) != 0) {
		if (err.msg[0])
			cmd_fail("agent", &err);
		else
			fprintf(stderr, "mtls agent: stopped\n");
		return err.code == MTLS_ERR_ARG || err.code == MTLS_ERR_PARSE ?
		    2 : 1;
	}
	return 0;
}
