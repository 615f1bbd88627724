/* mtls ca serve and mtls ca token: the online half of `mtls ca`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ca/ca.h"
#include "cmd.h"

static const char serve_help[] =
"usage: mtls ca serve --ca DIR --listen ADDR [--admin ID]... [--url URL]\n"
"           [--dns NAME]... [--ip ADDR]... [--pass-file F]\n"
"           [--crl-ttl D] [--ocsp-ttl D] [--server-ttl D] [--log-format F]\n"
"           [--max-conns N] [--max-conns-per-ip N] [--first-byte-timeout D]\n"
"           [--request-timeout D] [--idle-timeout D]\n"
"The online CA: an HTTPS API (TLS 1.3; its certificate is issued by DIR\n"
"itself and renewed at two thirds of --server-ttl, default 24h; a restart\n"
"reuses the one in DIR/serve/ while it has over a third of its life left).\n"
"  POST /v1/enroll  {\"token\", \"csr\"}: a one-time token buys a certificate\n"
"  POST /v1/renew   {\"csr\"}: client certificate from this CA, same identity\n"
"  POST /v1/revoke  {\"serial\", \"reason\"}: peers matching an --admin rule\n"
"  GET  /v1/bundle, /v1/crl (DER), POST|GET /v1/ocsp (RFC 6960),\n"
"  /healthz (alive), /readyz (503 while the disk refuses writes: it\n"
"  cannot issue), /metrics\n"
"  --url     how clients reach this server (default https://ADDR); it goes\n"
"            into issued certificates as CRL and OCSP locations\n"
"  --dns, --ip  names in this server's certificate (default: localhost\n"
"            and the --listen address)\n"
"Limits (many idle or slow clients must not lock out the fleet):\n"
"  --max-conns N          open connections in all (default 16384); at the\n"
"            cap the longest-idle one is closed to make room\n"
"  --max-conns-per-ip N   per client address, IPv6 per /64 (default 64;\n"
"            0: none)\n"
"  --first-byte-timeout D from connect to the first byte (default 5s)\n"
"  --request-timeout D    TLS handshake and the whole first request, from\n"
"            connect; a later request from its first byte (default 10s)\n"
"  --idle-timeout D       keep-alive wait for the next request (default 5s)\n"
"Roles in DIR/ca.conf decide what may be issued. Stops on SIGTERM.\n";

static const char token_help[] =
"usage: mtls ca token create --ca DIR --spiffe-id URI [--ttl D]\n"
"Prints a one-time join token for `mtls agent --token-file`: it buys one\n"
"certificate for URI from `mtls ca serve` within --ttl (default 1h). It\n"
"carries the SHA-256 fingerprints of the CA's root and of this CA (the\n"
"issuer of ca serve's certificate), so the agent can authenticate the\n"
"server: mtls2.<root sha256>.<CA sha256>.<secret>; only its hash is\n"
"stored.\n";

int
ca_serve_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "admin", required_argument, NULL, 'a' },
		{ "url", required_argument, NULL, 'u' },
		{ "dns", required_argument, NULL, 'd' },
		{ "ip", required_argument, NULL, 'i' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "crl-ttl", required_argument, NULL, 'C' },
		{ "ocsp-ttl", required_argument, NULL, 'O' },
		{ "server-ttl", required_argument, NULL, 'S' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "max-conns", required_argument, NULL, 'M' },
		{ "max-conns-per-ip", required_argument, NULL, 'P' },
		{ "first-byte-timeout", required_argument, NULL, 'B' },
		{ "request-timeout", required_argument, NULL, 'R' },
		{ "idle-timeout", required_argument, NULL, 'I' },
		{ NULL, 0, NULL, 0 },
	};
	struct ca_serve_opts o;
	const char *flag;
	int64_t secs;
	struct mtls_error err;
	char why[200], canon[64], bundle[4200], url[600], host[300];
	const char *colon;
	int c, rv = 2;

	if (cmd_wants_help(argc, argv, serve_help))
		return 0;
	memset(&o, 0, sizeof(o));
	o.server_ttl = 24 * 3600;
	o.crl_ttl = 3600;
	o.ocsp_ttl = 3600;
	/* 16384: a fleet's 10,000 idle connections are held without
	 * closing any (issue 14; a silent one costs a struct and an fd, see
	 * bench/RESULTS.md), with room left for real clients; the fds are
	 * raised to fit (net_loop_new) or the cap is lowered, logged. 64
	 * per address leaves room for a NAT'd site and takes 64 addresses
	 * to fill; a ClientHello comes at once, so 5 s is generous; 10 s
	 * for a handshake and a <= 80 KiB request */
	o.max_conns = 16384;
	o.max_per_ip = 64;
	o.first_byte_ms = 5000;
	o.request_ms = 10000;
	o.idle_ms = 5000;
	log_set_format(!isatty(STDERR_FILENO));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o.dir = optarg; break;
		case 'l': o.listen = optarg; break;
		case 'a':
			if (mtls_rule_check(optarg, why, sizeof(why)) != 0) {
				cmd_usage("ca serve", "--admin '%s': %s", optarg,
				    why);
				goto out;
			}
			if (strv_add(&o.admin, &o.n_admin, optarg) != 0)
				goto out;
			break;
		case 'u': o.url = optarg; break;
		case 'd':
			if (dns_name_check(optarg, 0) != 0 || ids_add(&o.names,
			    "dns:", optarg, strlen(optarg)) != 0) {
				cmd_usage("ca serve", "--dns '%s' is not a DNS "
				    "name", optarg);
				goto out;
			}
			break;
		case 'i':
			if (ip_canon(optarg, canon, sizeof(canon)) != 0 ||
			    ids_add(&o.names, "ip:", canon, strlen(canon)) != 0) {
				cmd_usage("ca serve", "--ip '%s' is not an IP "
				    "address", optarg);
				goto out;
			}
			break;
		case 'p': o.pass_file = optarg; break;
		case 'C':
			if (cmd_duration("ca serve", "--crl-ttl", optarg,
			    MTLS_MAX_TTL, &o.crl_ttl) != 0)
				goto out;
			break;
		case 'O':
			if (cmd_duration("ca serve", "--ocsp-ttl", optarg,
			    MTLS_MAX_TTL, &o.ocsp_ttl) != 0)
				goto out;
			break;
		case 'S':
			if (cmd_duration("ca serve", "--server-ttl", optarg,
			    MTLS_MAX_TTL, &o.server_ttl) != 0)
				goto out;
			break;
		case 'f':
			if (cmd_log_format("ca serve", optarg) != 0)
				goto out;
			break;
		case 'M':
			if (cmd_number("ca serve", "--max-conns", optarg, 16,
			    1000000, &o.max_conns) != 0)
				goto out;
			break;
		case 'P':
			if (cmd_number("ca serve", "--max-conns-per-ip", optarg,
			    0, 1000000, &o.max_per_ip) != 0)
				goto out;
			break;
		case 'B':
		case 'R':
		case 'I':
			flag = c == 'B' ? "--first-byte-timeout" : c == 'R' ?
			    "--request-timeout" : "--idle-timeout";
			if (cmd_duration("ca serve", flag, optarg,
			    MTLS_MAX_INTERVAL, &secs) != 0)
				goto out;
			if (secs > 3600) {
				cmd_usage("ca serve", "%s '%s': at most 1h",
				    flag, optarg);
				goto out;
			}
			*(c == 'B' ? &o.first_byte_ms : c == 'R' ?
			    &o.request_ms : &o.idle_ms) = secs * 1000;
			break;
		default:
			cmd_usage("ca serve", "unknown or incomplete option "
			    "'%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (optind != argc || o.dir == NULL || o.listen == NULL) {
		cmd_usage("ca serve", "give --ca DIR and --listen ADDR");
		goto out;
	}
	/* default names: localhost and the listen host */
	colon = strrchr(o.listen, ':');
	snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - o.listen) :
	    0, o.listen);
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	if (o.names.n == 0) {
		if (ids_add(&o.names, "dns:", "localhost", 9) != 0)
			goto out;
		if (ip_canon(host, canon, sizeof(canon)) == 0) {
			if (ids_add(&o.names, "ip:", canon, strlen(canon)) != 0)
				goto out;
		} else if (host[0] && strcmp(host, "localhost") != 0 &&
		    dns_name_check(host, 0) == 0 && ids_add(&o.names, "dns:",
		    host, strlen(host)) != 0)
			goto out;
	}
	if (o.url == NULL) {
		snprintf(url, sizeof(url), "https://%s", o.listen);
		o.url = url;
	}
	if (strncmp(o.url, "https://", 8) != 0 || strlen(o.url) > 400) {
		cmd_usage("ca serve", "--url must be https://HOST[:PORT]");
		goto out;
	}
	snprintf(bundle, sizeof(bundle), "%s/bundle.pem", o.dir);
	o.bundle_path = bundle;
	error_clear(&err);
	if (ca_serve(&o, &err) != 0) {
		rv = cmd_fail("ca serve", &err);
		if (err.fail == MTLS_FAIL_NAME_CONSTRAINTS)
			fprintf(stderr, "  fix: a scoped CA certifies only the "
			    "names it permits: give --dns NAME inside its "
			    "--permit-dns (and no --ip), or serve from an "
			    "unscoped intermediate\n");
		goto out;
	}
	rv = 0;
 out:
	strv_free(o.admin, o.n_admin);
	ids_free(&o.names);
	return rv;
}

static int
token_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "spiffe-id", required_argument, NULL, 's' },
		{ "ttl", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *id = NULL;
	struct mtls_error err;
	struct ca *ca = NULL;
	char token[256];
	int64_t ttl = 3600;
	int c, rv = 2;

	if (cmd_wants_help(argc, argv, token_help))
		return 0;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': dir = optarg; break;
		case 's': id = optarg; break;
		case 't':
			if (cmd_duration("ca token create", "--ttl", optarg,
			    MTLS_MAX_INTERVAL, &ttl) != 0)
				return 2;
			break;
		default:
			return cmd_usage("ca token create", "unknown or "
			    "incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc || dir == NULL || id == NULL)
		return cmd_usage("ca token create", "give --ca DIR and "
		    "--spiffe-id URI");
	error_clear(&err);
	if (ca_open_readonly(&ca, dir, &err) != 0 ||
	    ca_token_create(ca, id, ttl, token, sizeof(token), &err) != 0) {
		rv = cmd_fail("ca token create", &err);
		goto out;
	}
	printf("%s\n", token);
	OPENSSL_cleanse(token, sizeof(token));
	rv = 0;
 out:
	ca_close(ca);
	return rv;
}

static const struct subcmd token_cmds[] = {
	{ "create", token_create, "a one-time join token for mtls agent" },
	{ NULL, NULL, NULL },
};

int
ca_token_cmd(int argc, char **argv)
{
	return subcmd_dispatch("mtls ca token", token_cmds, argc, argv);
}
