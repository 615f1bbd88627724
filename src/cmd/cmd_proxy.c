/* mtls proxy: argument parsing for the sidecar (src/svc/proxy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "proxy/proxy.h"

static const char proxy_help[] =
"usage: mtls proxy --listen ADDR --target ADDR --cert F --key F --ca F\n"
"                  (--allow ID... | --allow-any) [--crl F]...    (inbound)\n"
"       mtls proxy --outbound --listen ADDR --target ADDR --cert F --key F\n"
"                  --ca F --expect ID [--servername N]           (outbound)\n"
"Inbound (default): accepts mTLS, requires and verifies a client\n"
"certificate against --ca, authorizes its identity with the --allow rules\n"
"(spiffe://td/path, spiffe://td/prefix/*, dns:NAME, dns:*.suffix, ip:A),\n"
"then pumps bytes to the plaintext --target (loopback or unix:/path).\n"
"Outbound: accepts plaintext on a loopback --listen and originates mTLS to\n"
"--target, refusing an upstream whose identity is not --expect.\n"
"Options:\n"
"  --workers N            event-loop threads (default: one per core)\n"
"  --min-tls 1.2          allow TLS 1.2 (default: TLS 1.3 only)\n"
"  --handshake-timeout D  default 10s     --connect-timeout D  default 5s\n"
"  --idle-timeout D       default 5m      --drain-timeout D    default 30s\n"
"  --max-conns N          refuse connections beyond N open ones\n"
"  --log-format json|text default: json unless stderr is a terminal\n"
"  --unsafe-target        let the plaintext side leave this host\n"
"  --admin ADDR           /metrics (Prometheus), /healthz, /readyz\n"
"Files are watched and reloaded on change and on SIGHUP; a bad new set is\n"
"refused and the old one keeps serving. SIGTERM stops accepting and lets\n"
"open connections finish for up to --drain-timeout.\n";

enum {
	P_LISTEN = 256, P_TARGET, P_CERT, P_KEY, P_CA, P_ALLOW, P_ALLOW_ANY,
	P_OUTBOUND, P_EXPECT, P_SERVERNAME, P_CRL, P_WORKERS, P_MINTLS,
	P_UNSAFE, P_HS_TO, P_CONN_TO, P_IDLE_TO, P_DRAIN_TO, P_MAXCONNS,
	P_LOGFMT, P_ADMIN
};

static const struct option opts[] = {
	{ "listen", required_argument, NULL, P_LISTEN },
	{ "target", required_argument, NULL, P_TARGET },
	{ "cert", required_argument, NULL, P_CERT },
	{ "key", required_argument, NULL, P_KEY },
	{ "ca", required_argument, NULL, P_CA },
	{ "allow", required_argument, NULL, P_ALLOW },
	{ "allow-any", no_argument, NULL, P_ALLOW_ANY },
	{ "outbound", no_argument, NULL, P_OUTBOUND },
	{ "expect", required_argument, NULL, P_EXPECT },
	{ "servername", required_argument, NULL, P_SERVERNAME },
	{ "crl", required_argument, NULL, P_CRL },
	{ "workers", required_argument, NULL, P_WORKERS },
	{ "min-tls", required_argument, NULL, P_MINTLS },
	{ "unsafe-target", no_argument, NULL, P_UNSAFE },
	{ "handshake-timeout", required_argument, NULL, P_HS_TO },
	{ "connect-timeout", required_argument, NULL, P_CONN_TO },
	{ "idle-timeout", required_argument, NULL, P_IDLE_TO },
	{ "drain-timeout", required_argument, NULL, P_DRAIN_TO },
	{ "max-conns", required_argument, NULL, P_MAXCONNS },
	{ "log-format", required_argument, NULL, P_LOGFMT },
	{ "admin", required_argument, NULL, P_ADMIN },
	{ NULL, 0, NULL, 0 },
};

static int
num(const char *flag, const char *v, int lo, int hi, int *out)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n < lo || n > hi) {
		cmd_usage("proxy", "%s '%s' must be a number from %d to %d",
		    flag, v, lo, hi);
		return -1;
	}
	*out = (int)n;
	return 0;
}

static int
ms(const char *flag, const char *v, int64_t *out)
{
	int64_t s;

	if (cmd_duration("proxy", flag, v, &s) != 0)
		return -1;
	*out = s * 1000;
	return 0;
}

int
cmd_proxy(int argc, char **argv)
{
	struct proxy_opts o;
	struct proxy_listener *l = &o.l;
	struct mtls_error err;
	char why[200];
	int c, rv = 2;

	if (cmd_wants_help(argc, argv, proxy_help))
		return 0;
	memset(&o, 0, sizeof(o));
	o.handshake_timeout_ms = 10000;
	o.connect_timeout_ms = 5000;
	o.idle_timeout_ms = 300000;
	o.drain_timeout_ms = 30000;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case P_LISTEN: l->listen = optarg; break;
		case P_TARGET: l->target = optarg; break;
		case P_CERT: l->cert = optarg; break;
		case P_KEY: l->key = optarg; break;
		case P_CA: l->ca = optarg; break;
		case P_ALLOW:
		case P_EXPECT:
			if (mtls_rule_check(optarg, why, sizeof(why)) != 0) {
				rv = cmd_usage("proxy", "%s '%s': %s",
				    c == P_ALLOW ? "--allow" : "--expect",
				    optarg, why);
				goto out;
			}
			if (c == P_ALLOW ? cmd_strv_add(&l->allow, &l->n_allow,
			    optarg) : cmd_strv_add(&l->expect, &l->n_expect,
			    optarg))
				goto out;
			break;
		case P_ALLOW_ANY: l->allow_any = 1; break;
		case P_OUTBOUND: l->outbound = 1; break;
		case P_SERVERNAME: l->servername = optarg; break;
		case P_CRL:
			if (cmd_strv_add(&l->crls, &l->n_crls, optarg))
				goto out;
			break;
		case P_WORKERS:
			if (num("--workers", optarg, 1, 64, &o.workers))
				goto out;
			break;
		case P_MINTLS: l->min_tls = optarg; break;
		case P_UNSAFE: l->unsafe_target = 1; break;
		case P_HS_TO:
			if (ms("--handshake-timeout", optarg,
			    &o.handshake_timeout_ms))
				goto out;
			break;
		case P_CONN_TO:
			if (ms("--connect-timeout", optarg,
			    &o.connect_timeout_ms))
				goto out;
			break;
		case P_IDLE_TO:
			if (ms("--idle-timeout", optarg, &o.idle_timeout_ms))
				goto out;
			break;
		case P_DRAIN_TO:
			if (ms("--drain-timeout", optarg, &o.drain_timeout_ms))
				goto out;
			break;
		case P_MAXCONNS:
			if (num("--max-conns", optarg, 1, 1000000, &o.max_conns))
				goto out;
			break;
		case P_ADMIN: o.admin = optarg; break;
		case P_LOGFMT:
			if (strcmp(optarg, "json") == 0)
				log_set_format(1);
			else if (strcmp(optarg, "text") == 0)
				log_set_format(0);
			else {
				rv = cmd_usage("proxy", "--log-format must be "
				    "json or text");
				goto out;
			}
			break;
		default:
			rv = cmd_usage("proxy", "unknown or incomplete option "
			    "'%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		rv = cmd_usage("proxy", "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (l->min_tls && strcmp(l->min_tls, "1.2") && strcmp(l->min_tls, "1.3")) {
		rv = cmd_usage("proxy", "--min-tls must be 1.2 or 1.3");
		goto out;
	}
	error_clear(&err);
	if (proxy_run(&o, &err) != 0) {
		rv = cmd_fail("proxy", &err);
		goto out;
	}
	rv = 0;
 out:
	strv_free(l->allow, l->n_allow);
	strv_free(l->expect, l->n_expect);
	strv_free(l->crls, l->n_crls);
	return rv;
}
