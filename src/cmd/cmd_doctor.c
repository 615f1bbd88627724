/* mtls doctor: connect, files, serve (flags and output only; the work is
 * in src/svc/doctor). Exit 0 healthy, 1 problems found, 2 usage or
 * unreadable input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "doctor/doctor.h"

static const char connect_help[] =
"usage: mtls doctor connect HOST:PORT [--cert F --key F] [--ca F]\n"
"           [--servername N] [--expect ID] [--min-tls 1.2|1.3]\n"
"           [--max-tls 1.2|1.3] [--groups L] [--sigalgs L] [--timeout D]\n"
"           [--no-http] [--json]\n"
"Performs a real TLS handshake with any server and prints each message as\n"
"it happens, the negotiated parameters, the server's chain, whether the\n"
"server asked for a client certificate and whether it accepted ours. On a\n"
"failure: one taxonomy code and a concrete fix.\n"
"  --ca F        roots to verify the server with (default: the system's)\n"
"  --expect ID   the server's expected identity (a SPIFFE ID or rule);\n"
"                default dns:<servername> or ip:<host>\n"
"  --groups, --sigalgs   OpenSSL lists, to act like a particular client\n"
"  --timeout D   one deadline for the whole probe: connect, handshake\n"
"                and every read (default 10s)\n"
"  --no-http     do not send GET / after an mTLS handshake (it reveals\n"
"                servers such as nginx that refuse a certificate in HTTP)\n"
"Exit 0 healthy, 1 a problem found, 2 usage or unreadable input.\n";

static const char files_help[] =
"usage: mtls doctor files --cert F [--key F] [--ca F]\n"
"           [--purpose client|server] [--expect ID] [--json]\n"
"           [--password-file F]\n"
"Checks certificate files offline: the key matches, chain order and\n"
"completeness, duplicates, whether the chain reaches a root in --ca,\n"
"expiry (warnings at 7, 3 and 1 days), KU/EKU for the purpose, X509-SVID\n"
"rules, weak keys and signatures, a certificate that outlives its issuer.\n"
"Files may be PEM, DER, PKCS#12 (its key is used unless --key is given;\n"
"--password-file holds its password) or, for --ca, a SPIFFE bundle.\n"
"Exit 0 healthy, 1 a problem found, 2 usage or unreadable input.\n";

static const char serve_help[] =
"usage: mtls doctor serve --listen ADDR --ca F [--cert F --key F]\n"
"           [--max-conns N] [--max-conns-per-ip N] [--first-byte-timeout D]\n"
"           [--request-timeout D] [--log-format json|text]\n"
"A diagnostic TLS server for debugging clients: it asks for a client\n"
"certificate (naming the CAs in --ca), accepts whatever the client sends,\n"
"and answers each HTTP request with the analysis of the client's chain\n"
"(GET /json for JSON); each connection is logged too. Without --cert it\n"
"uses a throwaway certificate for localhost. Stops on SIGTERM/SIGINT.\n"
"Limits (idle or slow clients must not lock it out):\n"
"  --max-conns N          open connections in all (default 4096); at the\n"
"            cap the longest-idle one is closed to make room\n"
"  --max-conns-per-ip N   per client address, IPv6 per /64 (default 64;\n"
"            0: none)\n"
"  --first-byte-timeout D from connect to the first byte (default 5s)\n"
"  --request-timeout D    TLS handshake and request head, from connect\n"
"            (default 10s)\n";

static int
use_color(void)
{
	const char *t = getenv("TERM");

	return isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL &&
	    (t == NULL || strcmp(t, "dumb") != 0);
}

/* Prints the report, returns the exit code. */
static int
finish(const char *cmd, json_t *r, int usage, int json, int live)
{
	const char *err = json_string_value(json_object_get(r, "error"));
	int rv;

	if (r == NULL) {
		fprintf(stderr, "mtls doctor %s: out of memory\n", cmd);
		return 2;
	}
	if (usage) {
		char *e = err ? esc_text_dup(err, strlen(err), ESC_KEEP_BS) :
		    NULL;

		fprintf(stderr, "mtls doctor %s: %s (see mtls doctor %s "
		    "--help)\n", cmd, e ? e : "bad input", cmd);
		free(e);
		json_decref(r);
		return 2;
	}
	if (json) {
		json_dumpf(r, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		printf("\n");
	} else
		doctor_print(stdout, r, use_color(), live);
	rv = strcmp(json_string_value(json_object_get(r, "result")), "ok") ?
	    1 : 0;
	json_decref(r);
	return rv;
}

static int
purpose_of(const char *cmd, const char *v, int *p)
{
	if (strcmp(v, "client") == 0)
		*p = MTLS_PURPOSE_CLIENT;
	else if (strcmp(v, "server") == 0)
		*p = MTLS_PURPOSE_SERVER;
	else
		return cmd_usage(cmd, "--purpose must be client or server");
	return 0;
}

static int
doctor_connect_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'a' },
		{ "servername", required_argument, NULL, 's' },
		{ "expect", required_argument, NULL, 'e' },
		{ "min-tls", required_argument, NULL, 'm' },
		{ "max-tls", required_argument, NULL, 'M' },
		{ "groups", required_argument, NULL, 'g' },
		{ "sigalgs", required_argument, NULL, 'S' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-http", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	struct doctor_connect_opts o;
	int64_t secs;
	char why[200];
	int c, json = 0, usage;
	json_t *r;

	if (cmd_wants_help(argc, argv, connect_help))
		return 0;
	memset(&o, 0, sizeof(o));
	o.timeout_ms = 10000;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'a': o.ca = optarg; break;
		case 's': o.servername = optarg; break;
		case 'e':
			if (mtls_rule_check(optarg, why, sizeof(why)) != 0)
				return cmd_usage("doctor connect", "--expect "
				    "'%s': %s", optarg, why);
			o.expect = optarg;
			break;
		case 'm': o.min_tls = optarg; break;
		case 'M': o.max_tls = optarg; break;
		case 'g': o.groups = optarg; break;
		case 'S': o.sigalgs = optarg; break;
		case 't':
			if (cmd_duration("doctor connect", "--timeout", optarg,
			    MTLS_MAX_INTERVAL, &secs) != 0)
				return 2;
			o.timeout_ms = secs > 600 ? 600000 : (int)secs * 1000;
			break;
		case 'j': json = 1; break;
		case 'H': o.no_http = 1; break;
		default:
			return cmd_usage("doctor connect", "unknown or "
			    "incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind + 1 != argc)
		return cmd_usage("doctor connect", "give one HOST:PORT");
	o.target = argv[optind];
	if (!json) {
		printf("mtls doctor connect %s\n\nhandshake:\n", o.target);
		fflush(stdout);
		o.live = stdout;
	}
	r = doctor_connect(&o, &usage);
	return finish("connect", r, usage, json, !json);
}

static int
doctor_files_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'a' },
		{ "purpose", required_argument, NULL, 'p' },
		{ "expect", required_argument, NULL, 'e' },
		{ "json", no_argument, NULL, 'j' },
		{ "password-file", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cert = NULL, *key = NULL, *ca = NULL, *expect = NULL,
	    *pw = NULL;
	int c, json = 0, usage, purpose = MTLS_PURPOSE_ANY;
	char why[200];
	json_t *r;

	if (cmd_wants_help(argc, argv, files_help))
		return 0;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'a': ca = optarg; break;
		case 'p':
			if (purpose_of("doctor files", optarg, &purpose) != 0)
				return 2;
			break;
		case 'e':
			if (mtls_rule_check(optarg, why, sizeof(why)) != 0)
				return cmd_usage("doctor files", "--expect "
				    "'%s': %s", optarg, why);
			expect = optarg;
			break;
		case 'j': json = 1; break;
		case 'w': pw = optarg; break;
		default:
			return cmd_usage("doctor files", "unknown or incomplete "
			    "option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc || cert == NULL)
		return cmd_usage("doctor files", "give --cert FILE");
	r = doctor_files(cert, key, ca, purpose, expect, pw, &usage);
	return finish("files", r, usage, json, 0);
}

static int
doctor_serve_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "ca", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "max-conns", required_argument, NULL, 'M' },
		{ "max-conns-per-ip", required_argument, NULL, 'P' },
		{ "first-byte-timeout", required_argument, NULL, 'B' },
		{ "request-timeout", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	struct doctor_serve_opts o;
	const char *flag;
	int64_t secs;
	int c;

	if (cmd_wants_help(argc, argv, serve_help))
		return 0;
	memset(&o, 0, sizeof(o));
	o.max_conns = 4096;
	o.max_per_ip = 64;
	o.first_byte_ms = 5000;
	o.request_ms = 10000;
	log_set_format(!isatty(STDERR_FILENO));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': o.listen = optarg; break;
		case 'a': o.ca = optarg; break;
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'f':
			if (cmd_log_format("doctor serve", optarg) != 0)
				return 2;
			break;
		case 'M':
			if (cmd_number("doctor serve", "--max-conns", optarg, 16,
			    1000000, &o.max_conns) != 0)
				return 2;
			break;
		case 'P':
			if (cmd_number("doctor serve", "--max-conns-per-ip",
			    optarg, 0, 1000000, &o.max_per_ip) != 0)
				return 2;
			break;
		case 'B':
		case 'R':
			flag = c == 'B' ? "--first-byte-timeout" :
			    "--request-timeout";
			if (cmd_duration("doctor serve", flag, optarg,
			    MTLS_MAX_INTERVAL, &secs) !=
			    0)
				return 2;
			if (secs < 1 || secs > 3600)
				return cmd_usage("doctor serve", "%s '%s': from "
				    "1s to 1h", flag, optarg);
			*(c == 'B' ? &o.first_byte_ms : &o.request_ms) =
			    secs * 1000;
			break;
		default:
			return cmd_usage("doctor serve", "unknown or incomplete "
			    "option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc || o.listen == NULL || o.ca == NULL)
		return cmd_usage("doctor serve", "give --listen ADDR and --ca F");
	if ((o.cert == NULL) != (o.key == NULL))
		return cmd_usage("doctor serve", "give both --cert and --key, "
		    "or neither");
	return doctor_serve(&o);
}

static const struct subcmd doctor_cmds[] = {
	{ "connect", doctor_connect_cmd, "trace and explain a handshake with "
	    "any TLS server" },
	{ "files", doctor_files_cmd, "check certificate, key and bundle files "
	    "offline" },
	{ "serve", doctor_serve_cmd, "a server that explains what is wrong "
	    "with a client's certificate" },
	{ NULL, NULL, NULL },
};

int
cmd_doctor(int argc, char **argv)
{
	return subcmd_dispatch("mtls doctor", doctor_cmds, argc, argv);
}
