/* mtls proxy: argument parsing for the sidecar (src/svc/proxy). The
 * config file's schema, its checks and the defaults are
 * src/svc/proxy/config.c's. */
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
"  --handshake-timeout D  default 10s (inbound: from the first byte)\n"
"  --connect-timeout D    default 5s\n"
"  --idle-timeout D       default 5m      --drain-timeout D    default 30s\n"
"  --max-conns N          open connections in all (default: no cap); at\n"
"                         the cap the longest-waiting inbound connection\n"
"                         not yet authenticated is closed for the new one\n"
"                         (http: one without a whole request head)\n"
"  --max-conns-per-ip N   inbound and http: per client address, IPv6 per\n"
"                         /64 (default 256; 0: none)\n"
"  --first-byte-timeout D inbound: connect to the ClientHello's first\n"
"                         byte (default 5s, at most --handshake-timeout)\n"
"  --log-format json|text default: json unless stderr is a terminal\n"
"  --unsafe-target        let the plaintext side leave this host\n"
"  --admin ADDR           /metrics (Prometheus), /healthz, /readyz; plain\n"
"                         HTTP on loopback (127.0.0.0/8, ::1, unix:)\n"
"  --admin-allow ID       the admin endpoint speaks mTLS and lets in only\n"
"                         these identities (repeatable, --allow's syntax);\n"
"                         required for an --admin that is not loopback.\n"
"                         Certificate, key, CA and CRLs: the first\n"
"                         listener's (admin_cert, admin_key, admin_ca,\n"
"                         admin_crl in [proxy] to choose others)\n"
"  --ticket-key-file F    session ticket keys shared by replicas: 80 random\n"
"                         bytes (160: current then previous), nginx's format\n"
"  --ticket-rotate D      without a key file, new ticket key every D\n"
"                         (default 12h; the previous one still opens)\n"
"  --crl-url URL          fetch the CA's CRL (https, trusted by --ca) every\n"
"                         --crl-refresh D (default 60s); a new one applies\n"
"                         to new and resumed handshakes at once\n"
"                         (a CRL, fetched or --crl, is installed only if\n"
"                         signed by its CA in --ca or our chain, current\n"
"                         (300s skew) and not older than the one in use)\n"
"  --no-staple            do not fetch and staple our own OCSP status\n"
"                         (default: stapled when our certificate names an\n"
"                         OCSP responder; refreshed at half its validity)\n"
"  --require-staple       outbound: refuse an upstream without a good,\n"
"                         current stapled OCSP response (code revoked)\n"
"  --http                 HTTP gateway: requests to --target with identity\n"
"                         headers (routes, per-route rules, upstream mTLS:\n"
"                         mode = http and [route] sections in --config)\n"
"  --no-access-log        http: no per-request log line (access_log = false)\n"
"  --ca-url URL --out-dir DIR [--token-file F]   ([agent] in a file)\n"
"                         the built-in agent (mtls agent): enroll or renew\n"
"                         from mtls ca serve into DIR, serve DIR/svid.pem\n"
"                         (instead of --cert/--key; --ca defaults to\n"
"                         DIR/bundle.pem) and reload as it rotates;\n"
"                         --key pkcs11:URI: its key lives in that token\n"
"  --config FILE          several listeners from a file (see below)\n"
"Files are watched and reloaded on change and on SIGHUP; a bad new set is\n"
"refused and the old one keeps serving. SIGTERM stops accepting and lets\n"
"open connections finish for up to --drain-timeout.\n"
"\n"
"Config file (--config): INI sections; listener keys are the flags' names\n"
"with '_' for '-'; allow and crl take several values (space-separated or\n"
"repeated); booleans are true/false:\n"
"  [proxy]\n"
"  workers = 2\n"
"  admin = 127.0.0.1:9901\n"
"  admin_allow = spiffe://example.org/ns/ops/prometheus   (mTLS admin)\n"
"  [listener \"api\"]\n"
"  mode = inbound\n"
"  listen = 0.0.0.0:8443\n"
"  target = 127.0.0.1:8080\n"
"  cert = /etc/mtls/svid.pem\n"
"  key = /etc/mtls/svid.key\n"
"  ca = /etc/mtls/bundle.pem\n"
"  allow = spiffe://example.org/ns/prod/*\n"
"  # federation: ca = BUNDLE, partner.com:partner.pem (PEM or SPIFFE JSON);\n"
"  # partner.com's roots vouch for spiffe://partner.com/... only\n"
"  [listener \"billing\"]\n"
"  mode = outbound\n"
"  listen = 127.0.0.1:9000\n"
"  target = billing.internal:8443\n"
"  expect = spiffe://example.org/ns/prod/billing\n"
"  require_staple = true\n"
"  [listener \"gw\"]         HTTP gateway; also max_head (16k), max_headers\n"
"  mode = http             (100), max_body (1m), request_timeout (60s),\n"
"                          underscores_in_headers (drop: header names\n"
"                          with '_' are not forwarded; or pass),\n"
"                          path_semicolons (refuse: ';' in a path is a\n"
"                          400; or pass)\n"
"  listen = 0.0.0.0:443\n"
"  cert = ...  key = ...  ca = ...\n"
"  [route \"admin\"]        longest path prefix wins (host = to match Host)\n"
"  listener = gw\n"
"  path = /admin\n"
"  upstream = 127.0.0.1:8081\n"
"  allow = spiffe://example.org/ns/ops/*   (or allow_any = true, or\n"
"                          client_cert = optional for a public route)\n"
"  upstream_tls = true     mTLS upstream: upstream_expect = ID, optional\n"
"                          upstream_cert/key/ca/servername, upstream_idle\n"
"                          (256 pooled), upstream_max (512 open)\n"
"  [agent]                 optional, the built-in agent: listeners\n"
"  ca_url = https://ca:8443  without cert and key serve out_dir/svid.pem,\n"
"  out_dir = /var/lib/mtls   and ca defaults to out_dir/bundle.pem\n"
"  token_file = /run/secrets/mtls-token\n"
"  key = pkcs11:token=..;object=..?pin-source=file:..  (optional)\n";

enum {
	P_LISTEN = 256, P_TARGET, P_CERT, P_KEY, P_CA, P_ALLOW, P_ALLOW_ANY,
	P_OUTBOUND, P_EXPECT, P_SERVERNAME, P_CRL, P_WORKERS, P_MINTLS,
	P_UNSAFE, P_HS_TO, P_CONN_TO, P_IDLE_TO, P_DRAIN_TO, P_MAXCONNS,
	P_LOGFMT, P_ADMIN, P_CONFIG, P_TKFILE, P_TKROT, P_CRLURL, P_CRLREF,
	P_CAURL, P_TOKEN, P_OUTDIR, P_NOSTAPLE, P_REQSTAPLE, P_HTTP, P_NOACCESSLOG,
	P_FB_TO, P_PERIP, P_ADMIN_ALLOW
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
	{ "max-conns-per-ip", required_argument, NULL, P_PERIP },
	{ "first-byte-timeout", required_argument, NULL, P_FB_TO },
	{ "log-format", required_argument, NULL, P_LOGFMT },
	{ "admin", required_argument, NULL, P_ADMIN },
	{ "admin-allow", required_argument, NULL, P_ADMIN_ALLOW },
	{ "config", required_argument, NULL, P_CONFIG },
	{ "ticket-key-file", required_argument, NULL, P_TKFILE },
	{ "ticket-rotate", required_argument, NULL, P_TKROT },
	{ "crl-url", required_argument, NULL, P_CRLURL },
	{ "crl-refresh", required_argument, NULL, P_CRLREF },
	{ "ca-url", required_argument, NULL, P_CAURL },
	{ "no-staple", no_argument, NULL, P_NOSTAPLE },
	{ "http", no_argument, NULL, P_HTTP },
	{ "no-access-log", no_argument, NULL, P_NOACCESSLOG },
	{ "require-staple", no_argument, NULL, P_REQSTAPLE },
	{ "token-file", required_argument, NULL, P_TOKEN },
	{ "out-dir", required_argument, NULL, P_OUTDIR },
	{ NULL, 0, NULL, 0 },
};

static int
num(const char *flag, const char *v, int lo, int hi, int *out)
{
	return cmd_number("proxy", flag, v, lo, hi, out);
}

/* Every duration of the proxy is an interval or a timeout: at most
 * MTLS_MAX_INTERVAL, so deadlines (now + ms) cannot overflow. */
static int
ms(const char *flag, const char *v, int64_t *out)
{
	int64_t s;

	if (cmd_duration("proxy", flag, v, MTLS_MAX_INTERVAL, &s) != 0)
		return -1;
	*out = s * 1000;
	return 0;
}

int
cmd_proxy(int argc, char **argv)
{
	static struct proxy_conf conf;	/* ~26 KiB, and the agent keeps
					 * pointers into it: not on the stack */
	struct proxy_opts *o = &conf.o, cli;
	struct proxy_listener *l = &o->l[0];
	struct agent_opts *ag = &conf.ag;
	struct mtls_error err;
	const char *config = NULL;
	char why[200];
	int c, rv = 2, listener_flags = 0, tkrot = 0;

	if (cmd_wants_help(argc, argv, proxy_help))
		return 0;
	proxy_conf_init(&conf);
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
		case P_ADMIN_ALLOW:
			if (mtls_rule_check(optarg, why, sizeof(why)) != 0) {
				rv = cmd_usage("proxy", "%s '%s': %s",
				    c == P_ALLOW ? "--allow" : c == P_EXPECT ?
				    "--expect" : "--admin-allow", optarg, why);
				goto out;
			}
			if (c == P_ALLOW ? strv_add(&l->allow, &l->n_allow,
			    optarg) : c == P_EXPECT ? strv_add(&l->expect,
			    &l->n_expect, optarg) : strv_add(&o->admin_allow,
			    &o->n_admin_allow, optarg))
				goto out;
			break;
		case P_ALLOW_ANY: l->allow_any = 1; break;
		case P_OUTBOUND: l->outbound = 1; break;
		case P_SERVERNAME: l->servername = optarg; break;
		case P_CRL:
			if (strv_add(&l->crls, &l->n_crls, optarg))
				goto out;
			break;
		case P_WORKERS:
			if (num("--workers", optarg, 1, 64, &o->workers))
				goto out;
			break;
		case P_MINTLS: l->min_tls = optarg; break;
		case P_UNSAFE: l->unsafe_target = 1; break;
		case P_NOSTAPLE: l->staple_off = 1; break;
		case P_HTTP: l->http = 1; break;
		case P_NOACCESSLOG: l->no_access_log = 1; break;
		case P_REQSTAPLE: l->require_staple = 1; break;
		case P_HS_TO:
			if (ms("--handshake-timeout", optarg,
			    &o->handshake_timeout_ms))
				goto out;
			break;
		case P_CONN_TO:
			if (ms("--connect-timeout", optarg,
			    &o->connect_timeout_ms))
				goto out;
			break;
		case P_IDLE_TO:
			if (ms("--idle-timeout", optarg, &o->idle_timeout_ms))
				goto out;
			break;
		case P_DRAIN_TO:
			if (ms("--drain-timeout", optarg, &o->drain_timeout_ms))
				goto out;
			break;
		case P_MAXCONNS:
			if (num("--max-conns", optarg, 1, 1000000, &o->max_conns))
				goto out;
			break;
		case P_PERIP:
			if (num("--max-conns-per-ip", optarg, 0, 1000000,
			    &l->max_conns_per_ip))
				goto out;
			if (l->max_conns_per_ip == 0)
				l->max_conns_per_ip = -1;	/* none */
			break;
		case P_FB_TO:
			if (ms("--first-byte-timeout", optarg,
			    &o->first_byte_timeout_ms))
				goto out;
			break;
		case P_ADMIN: o->admin = optarg; break;
		case P_CONFIG: config = optarg; break;
		case P_TKFILE: l->ticket_key_file = optarg; break;
		case P_CRLURL:
			if (strncmp(optarg, "https://", 8) != 0) {
				rv = cmd_usage("proxy", "--crl-url must be "
				    "https://");
				goto out;
			}
			l->crl_url = optarg;
			break;
		case P_CAURL: ag->ca_url = optarg; break;
		case P_TOKEN: ag->token_file = optarg; break;
		case P_OUTDIR: ag->out_dir = optarg; break;
		case P_CRLREF:
			if (ms("--crl-refresh", optarg, &l->crl_refresh_ms))
				goto out;
			break;
		case P_TKROT:
			if (ms("--ticket-rotate", optarg, &o->ticket_rotate_ms))
				goto out;
			tkrot = 1;
			break;
		case P_LOGFMT:
			if (cmd_log_format("proxy", optarg) != 0)
				goto out;
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
	listener_flags = l->listen || l->target || l->cert || l->key || l->ca ||
	    l->n_allow || l->allow_any || l->outbound || l->n_expect ||
	    l->servername || l->n_crls || l->min_tls || l->unsafe_target ||
	    l->staple_off || l->require_staple || l->http ||
	    l->no_access_log || l->max_conns_per_ip ||
	    l->ticket_key_file || l->crl_url;
	if (config != NULL) {
		cli = *o;
		if (listener_flags) {
			rv = cmd_usage("proxy", "--config holds the listeners: "
			    "give listener flags either there or here, not "
			    "both");
			goto out;
		}
		error_clear(&err);
		if (proxy_conf_load(&conf, config, &err) != 0) {
			rv = cmd_fail("proxy", &err);
			goto out;
		}
		if (conf.log_json >= 0)
			log_set_format(conf.log_json);
		/* flags given on the command line win over the file */
		if (cli.workers)
			o->workers = cli.workers;
		if (cli.admin)
			o->admin = cli.admin;
		if (cli.max_conns)
			o->max_conns = cli.max_conns;
		if (tkrot)
			o->ticket_rotate_ms = cli.ticket_rotate_ms;
	}
	error_clear(&err);
	if (proxy_conf_finish(&conf, &err) != 0) {
		rv = cmd_usage("proxy", "%s", err.msg);
		goto out;
	}
	if (conf.agent) {
		error_clear(&err);
		if (agent_background(ag, &err) != 0) {
			fprintf(stderr, "mtls proxy: --ca-url %s: %s\n",
			    ag->ca_url, err.msg);
			goto out;
		}
	}
	error_clear(&err);
	if (proxy_run(o, &err) != 0) {
		rv = cmd_fail("proxy", &err);
		goto out;
	}
	rv = 0;
 out:
	proxy_conf_free(&conf);
	return rv;
}
