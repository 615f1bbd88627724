/* mtls proxy: argument parsing for the sidecar (src/svc/proxy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "agent/agent.h"
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
"                         DIR/bundle.pem) and reload as it rotates\n"
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
"  token_file = /run/secrets/mtls-token\n";

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

/* Strings from a config file live until the proxy stops. */
struct cfg_state {
	struct proxy_opts	*o;
	struct agent_opts	*ag;	/* [agent] */
	struct proxy_listener	*cur;
	struct proxy_route	*routes[PROXY_MAX_ROUTES];
	size_t			 n_routes;
	struct proxy_route	*cur_route;
	char			**keep;
	size_t			 n_keep;
	const char		*path;
};

static char *
keep(struct cfg_state *cs, const char *v)
{
	if (cmd_strv_add(&cs->keep, &cs->n_keep, v) != 0)
		return NULL;
	return cs->keep[cs->n_keep - 1];
}

static int
cfg_bool(const char *v, int *out)
{
	if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
		*out = 1;
	else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
		*out = 0;
	else
		return -1;
	return 0;
}

/* A duration key of a config file, as ms(): 0, or -1 with <err>. */
static int
cfg_ms(const struct cfg_state *cs, int line, const char *key, const char *val,
    int64_t *out, struct mtls_error *err)
{
	int64_t s;

	if (mtls_duration_parse(val, &s) != 0)
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s '%.32s' is not "
		    "a duration (like 90s, 15m, 24h)", cs->path, line, key, val);
	if (s > MTLS_MAX_INTERVAL)
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s '%.32s' is too "
		    "long: at most %lldd", cs->path, line, key, val,
		    (long long)(MTLS_MAX_INTERVAL / 86400));
	*out = s * 1000;
	return 0;
}

static int
cfg_list(char ***v, size_t *n, const char *val)
{
	char buf[4096], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", val);
	for (tok = strtok_r(buf, " \t", &save); tok;
	    tok = strtok_r(NULL, " \t", &save))
		if (cmd_strv_add(v, n, tok) != 0)
			return -1;
	return 0;
}

/* A byte count: digits with an optional k/m suffix (KiB, MiB). */
static int
cfg_bytes(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	long long n = strtoll(v, &end, 10);

	if (end == v || n < 0)
		return -1;
	/* bounded before the multiplication: signed overflow is UB */
	if (*end == 'k' || *end == 'K') {
		if (n > hi / 1024)
			return -1;
		n *= 1024, end++;
	} else if (*end == 'm' || *end == 'M') {
		if (n > hi / (1024 * 1024))
			return -1;
		n *= 1024 * 1024, end++;
	}
	if (*end != '\0' || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

static int
cfg_rules(struct cfg_state *cs, int line, const char *key, const char *val,
    char ***v, size_t *n, struct mtls_error *err)
{
	char buf[4096], *tok, *save = NULL, why[200];

	snprintf(buf, sizeof(buf), "%s", val);
	for (tok = strtok_r(buf, " \t", &save); tok;
	    tok = strtok_r(NULL, " \t", &save))
		if (mtls_rule_check(tok, why, sizeof(why)) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s "
			    "'%.100s': %s", cs->path, line, key, tok, why);
	return cfg_list(v, n, val);
}

/* [route "NAME"]: one route of an http listener. */
static int
cfg_route(struct cfg_state *cs, const char *name, const char *key,
    const char *val, int line, struct mtls_error *err)
{
	struct proxy_route *r = cs->cur_route;
	char **dst = NULL;
	int64_t n;
	int b;

	if (r == NULL || strcmp(r->name, name) != 0) {
		size_t i;

		for (i = 0; i < cs->n_routes; i++)
			if (strcmp(cs->routes[i]->name, name) == 0)
				return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
				    "route '%s' appears twice", cs->path, line,
				    name);
		if (cs->n_routes == PROXY_MAX_ROUTES)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: more than "
			    "%d routes", cs->path, line, PROXY_MAX_ROUTES);
		if ((r = calloc(1, sizeof(*r))) == NULL)
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		snprintf(r->name, sizeof(r->name), "%s", name);
		cs->routes[cs->n_routes++] = r;
		cs->cur_route = r;
	}
	if (strcmp(key, "allow") == 0)
		return cfg_rules(cs, line, key, val, &r->allow, &r->n_allow, err);
	if (strcmp(key, "upstream_expect") == 0)
		return cfg_rules(cs, line, key, val, &r->up_expect,
		    &r->n_up_expect, err);
	if (strcmp(key, "allow_any") == 0 || strcmp(key, "upstream_tls") == 0) {
		if (cfg_bool(val, &b) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s is true "
			    "or false", cs->path, line, key);
		*(key[0] == 'a' ? &r->allow_any : &r->up_tls) = b;
		return 0;
	}
	if (strcmp(key, "client_cert") == 0) {
		if (strcmp(val, "required") && strcmp(val, "optional"))
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: client_cert "
			    "is required or optional", cs->path, line);
		r->optional = strcmp(val, "optional") == 0;
		return 0;
	}
	if (strcmp(key, "upstream_idle") == 0 ||
	    strcmp(key, "upstream_max") == 0) {
		if (cfg_bytes(val, key[9] == 'i' ? 0 : 1, 100000, &n) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s must be "
			    "a number up to 100000", cs->path, line, key);
		*(key[9] == 'i' ? &r->up_idle : &r->up_max) = (int)n;
		return 0;
	}
	if (strcmp(key, "path") == 0 && val[0] != '/')
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: path must start "
		    "with '/'", cs->path, line);
	if (strcmp(key, "listener") == 0)
		dst = &r->listener;
	else if (strcmp(key, "host") == 0)
		dst = &r->host;
	else if (strcmp(key, "path") == 0)
		dst = &r->path;
	else if (strcmp(key, "upstream") == 0)
		dst = &r->upstream;
	else if (strcmp(key, "upstream_cert") == 0)
		dst = &r->up_cert;
	else if (strcmp(key, "upstream_key") == 0)
		dst = &r->up_key;
	else if (strcmp(key, "upstream_ca") == 0)
		dst = &r->up_ca;
	else if (strcmp(key, "upstream_servername") == 0)
		dst = &r->up_servername;
	else
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown key '%s' "
		    "in [route \"%s\"]", cs->path, line, key, name);
	return (*dst = keep(cs, val)) ? 0 : -1;
}

/* Attaches routes to their http listeners and fills in defaults. */
static int
routes_resolve(struct cfg_state *cs, struct mtls_error *err)
{
	struct proxy_opts *o = cs->o;
	size_t i, k, nhttp = 0;
	struct proxy_listener *only = NULL;

	for (k = 0; k < o->n_l; k++)
		if (o->l[k].http) {
			nhttp++;
			only = &o->l[k];
		}
	for (i = 0; i < cs->n_routes; i++) {
		struct proxy_route *r = cs->routes[i];
		struct proxy_listener *l = NULL;

		if (r->listener == NULL && nhttp == 1)
			l = only;
		for (k = 0; r->listener != NULL && k < o->n_l; k++)
			if (strcmp(o->l[k].name, r->listener) == 0)
				l = &o->l[k];
		if (l == NULL || !l->http)
			return error_set(err, MTLS_ERR_PARSE, "%s: route %s: %s",
			    cs->path, r->name, r->listener ? "its listener is "
			    "not an http listener of this file" : "name its "
			    "listener (listener = NAME)");
		if (l->n_routes == PROXY_MAX_ROUTES)
			return error_set(err, MTLS_ERR_PARSE, "%s: more than %d "
			    "routes on listener %s", cs->path, PROXY_MAX_ROUTES,
			    l->name);
		l->routes[l->n_routes++] = r;
	}
	return 0;
}

/* Defaults of http listeners and their routes. */
static void
http_defaults(struct proxy_opts *o)
{
	size_t k, i;

	for (k = 0; k < o->n_l; k++) {
		struct proxy_listener *l = &o->l[k];

		if (!l->http)
			continue;
		if (l->max_head == 0)
			l->max_head = 16384;
		if (l->max_headers == 0)
			l->max_headers = 100;
		if (l->max_body == 0)
			l->max_body = 1024 * 1024;
		if (l->request_timeout_ms == 0)
			l->request_timeout_ms = 60000;
		for (i = 0; i < l->n_routes; i++) {
			struct proxy_route *r = l->routes[i];

			if (r->path == NULL)
				r->path = (char *)"/";
			if (r->up_idle == 0)
				r->up_idle = 256;
			if (r->up_max == 0)
				r->up_max = 512;
		}
	}
}

static int
cfg_cb(void *arg, const char *section, const char *key, const char *val,
    int line, struct mtls_error *err)
{
	struct cfg_state *cs = arg;
	struct proxy_opts *o = cs->o;
	struct proxy_listener *l;
	char **dst = NULL;

	if (strcmp(section, "agent") == 0) {
		const char **a = strcmp(key, "ca_url") == 0 ? &cs->ag->ca_url :
		    strcmp(key, "token_file") == 0 ? &cs->ag->token_file :
		    strcmp(key, "out_dir") == 0 ? &cs->ag->out_dir :
		    strcmp(key, "ca_bundle") == 0 ? &cs->ag->ca_bundle : NULL;

		if (a == NULL)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown key "
			    "'%s' in [agent] (ca_url, token_file, out_dir, "
			    "ca_bundle)", cs->path, line, key);
		if (a == &cs->ag->ca_url && strncmp(val, "https://", 8) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: ca_url "
			    "must be https://", cs->path, line);
		return (*a = keep(cs, val)) ? 0 : -1;
	}
	if (strcmp(section, "proxy") == 0) {
		if (strcmp(key, "workers") == 0 || strcmp(key, "max_conns") == 0) {
			char *end;
			long n = strtol(val, &end, 10);

			if (*val == '\0' || *end != '\0' || n < 1 || n > 1000000)
				return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s "
				    "must be a positive number", cs->path, line,
				    key);
			if (key[0] == 'w')
				o->workers = n > 64 ? 64 : (int)n;
			else
				o->max_conns = (int)n;
			return 0;
		}
		if (strcmp(key, "admin") == 0)
			return (o->admin = keep(cs, val)) ? 0 : -1;
		if (strcmp(key, "admin_allow") == 0)
			return cfg_rules(cs, line, key, val, &o->admin_allow,
			    &o->n_admin_allow, err);
		if (strcmp(key, "admin_crl") == 0)
			return cfg_list(&o->admin_crls, &o->n_admin_crls, val);
		if (strcmp(key, "admin_cert") == 0 ||
		    strcmp(key, "admin_key") == 0 ||
		    strcmp(key, "admin_ca") == 0) {
			char **a = key[6] == 'c' && key[7] == 'e' ?
			    &o->admin_cert : key[6] == 'k' ? &o->admin_key :
			    &o->admin_ca;

			return (*a = keep(cs, val)) ? 0 : -1;
		}
		if (strcmp(key, "log_format") == 0) {
			if (strcmp(val, "json") && strcmp(val, "text"))
				return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
				    "log_format is json or text", cs->path, line);
			log_set_format(strcmp(val, "json") == 0);
			return 0;
		}
		if (strcmp(key, "ticket_rotate") == 0)
			return cfg_ms(cs, line, key, val, &o->ticket_rotate_ms,
			    err);
		if (strstr(key, "_timeout") != NULL) {
			int64_t *t = strcmp(key, "handshake_timeout") == 0 ?
			    &o->handshake_timeout_ms : strcmp(key,
			    "connect_timeout") == 0 ? &o->connect_timeout_ms :
			    strcmp(key, "idle_timeout") == 0 ?
			    &o->idle_timeout_ms : strcmp(key, "drain_timeout")
			    == 0 ? &o->drain_timeout_ms : strcmp(key,
			    "first_byte_timeout") == 0 ?
			    &o->first_byte_timeout_ms : NULL;

			if (t != NULL)
				return cfg_ms(cs, line, key, val, t, err);
		}
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown key '%s' "
		    "in [proxy]", cs->path, line, key);
	}
	if (strncmp(section, "route ", 6) == 0)
		return cfg_route(cs, section + 6, key, val, line, err);
	if (strncmp(section, "listener ", 9) != 0)
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown section "
		    "[%s] (use [proxy] and [listener \"NAME\"])", cs->path, line,
		    section);
	if (cs->cur == NULL || strcmp(cs->cur->name, section + 9) != 0) {
		size_t i;

		for (i = 0; i < o->n_l; i++)
			if (strcmp(o->l[i].name, section + 9) == 0)
				return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
				    "listener '%s' appears twice", cs->path,
				    line, section + 9);
		if (o->n_l == PROXY_MAX_LISTENERS)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: more than "
			    "%d listeners", cs->path, line, PROXY_MAX_LISTENERS);
		cs->cur = &o->l[o->n_l++];
		snprintf(cs->cur->name, sizeof(cs->cur->name), "%s",
		    section + 9);
	}
	l = cs->cur;
	if (strcmp(key, "mode") == 0) {
		if (strcmp(val, "inbound") && strcmp(val, "outbound") &&
		    strcmp(val, "http"))
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: mode is "
			    "inbound, outbound or http", cs->path, line);
		l->outbound = strcmp(val, "outbound") == 0;
		l->http = strcmp(val, "http") == 0;
		return 0;
	}
	if (strcmp(key, "max_head") == 0 || strcmp(key, "max_headers") == 0 ||
	    strcmp(key, "max_body") == 0) {
		int64_t n;
		int head = strcmp(key, "max_head") == 0;
		int hdrs = strcmp(key, "max_headers") == 0;

		if (cfg_bytes(val, hdrs ? 1 : head ? 1024 : 0, hdrs ? 256 :
		    head ? 65536 : (int64_t)1 << 40, &n) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s '%s' is "
			    "out of range (max_head 1k..64k, max_headers "
			    "1..256, max_body bytes, k/m suffixes)", cs->path,
			    line, key, val);
		if (head)
			l->max_head = (size_t)n;
		else if (hdrs)
			l->max_headers = (size_t)n;
		else
			l->max_body = n;
		return 0;
	}
	if (strcmp(key, "path_semicolons") == 0) {
		if (strcmp(val, "pass") && strcmp(val, "refuse"))
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
			    "path_semicolons is refuse (the default: 400) or "
			    "pass", cs->path, line);
		l->semicolons_pass = strcmp(val, "pass") == 0;
		return 0;
	}
	if (strcmp(key, "underscores_in_headers") == 0) {
		if (strcmp(val, "pass") && strcmp(val, "drop"))
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
			    "underscores_in_headers is drop (the default) or "
			    "pass", cs->path, line);
		l->underscores_pass = strcmp(val, "pass") == 0;
		return 0;
	}
	if (strcmp(key, "access_log") == 0) {
		int v;

		if (cfg_bool(val, &v) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: access_log "
			    "is true or false", cs->path, line);
		l->no_access_log = !v;
		return 0;
	}
	if (strcmp(key, "request_timeout") == 0)
		return cfg_ms(cs, line, key, val, &l->request_timeout_ms, err);
	if (strcmp(key, "allow_any") == 0 || strcmp(key, "unsafe_target") == 0 ||
	    strcmp(key, "require_staple") == 0 || strcmp(key, "staple") == 0) {
		int *b = key[0] == 'a' ? &l->allow_any : key[0] == 'u' ?
		    &l->unsafe_target : key[0] == 'r' ? &l->require_staple :
		    &l->staple_off;
		int v;

		if (cfg_bool(val, &v) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s is true "
			    "or false", cs->path, line, key);
		*b = key[0] == 's' ? !v : v;	/* staple = false: off */
		return 0;
	}
	if (strcmp(key, "allow") == 0 || strcmp(key, "expect") == 0)
		return key[0] == 'a' ?
		    cfg_rules(cs, line, key, val, &l->allow, &l->n_allow, err) :
		    cfg_rules(cs, line, key, val, &l->expect, &l->n_expect, err);
	if (strcmp(key, "crl") == 0)
		return cfg_list(&l->crls, &l->n_crls, val);
	if (strcmp(key, "max_conns_per_ip") == 0) {
		char *end;
		long n = strtol(val, &end, 10);

		if (*val == '\0' || *end != '\0' || n < 0 || n > 1000000)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
			    "max_conns_per_ip '%s' must be a number from 0 (no "
			    "limit) to 1000000", cs->path, line, val);
		l->max_conns_per_ip = n == 0 ? -1 : (int)n;
		return 0;
	}
	if (strcmp(key, "crl_refresh") == 0)
		return cfg_ms(cs, line, key, val, &l->crl_refresh_ms, err);
	if (strcmp(key, "crl_url") == 0) {
		if (strncmp(val, "https://", 8) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: crl_url "
			    "must be https://", cs->path, line);
		return (l->crl_url = keep(cs, val)) ? 0 : -1;
	}
	if (strcmp(key, "listen") == 0)
		dst = &l->listen;
	else if (strcmp(key, "target") == 0)
		dst = &l->target;
	else if (strcmp(key, "cert") == 0)
		dst = &l->cert;
	else if (strcmp(key, "key") == 0)
		dst = &l->key;
	else if (strcmp(key, "ca") == 0)
		dst = &l->ca;
	else if (strcmp(key, "servername") == 0)
		dst = &l->servername;
	else if (strcmp(key, "ticket_key_file") == 0)
		dst = &l->ticket_key_file;
	else if (strcmp(key, "min_tls") == 0) {
		if (strcmp(val, "1.2") && strcmp(val, "1.3"))
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: min_tls is "
			    "1.2 or 1.3", cs->path, line);
		dst = &l->min_tls;
	} else
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown key '%s' "
		    "in [listener \"%s\"]", cs->path, line, key, l->name);
	return (*dst = keep(cs, val)) ? 0 : -1;
}

static int
load_config(const char *path, struct cfg_state *cs, struct mtls_error *err)
{
	uint8_t *buf;
	size_t len;
	int rv;

	if (fs_read(path, 1 << 20, &buf, &len, err) != 0)
		return -1;
	cs->path = path;
	rv = conf_parse((const char *)buf, len, path, cfg_cb, cs, err);
	free(buf);
	if (rv == 0 && cs->o->n_l == 0)
		rv = error_set(err, MTLS_ERR_PARSE, "%s: no [listener \"NAME\"] "
		    "section", path);
	if (rv == 0)
		rv = routes_resolve(cs, err);
	return rv;
}

int
cmd_proxy(int argc, char **argv)
{
	struct proxy_opts o;
	struct proxy_listener *l = &o.l[0];
	struct cfg_state cs;
	struct mtls_error err;
	struct agent_opts ag;
	const char *config = NULL;
	char why[200], svid[4200], svid_key[4200], bundle[4200];
	struct proxy_route flag_route;
	int c, rv = 2, listener_flags = 0, tkrot = 0;
	size_t i;

	if (cmd_wants_help(argc, argv, proxy_help))
		return 0;
	memset(&o, 0, sizeof(o));
	memset(&ag, 0, sizeof(ag));
	memset(&cs, 0, sizeof(cs));
	cs.o = &o;
	cs.ag = &ag;
	o.first_byte_timeout_ms = 5000;
	o.handshake_timeout_ms = 10000;
	o.connect_timeout_ms = 5000;
	o.idle_timeout_ms = 300000;
	o.drain_timeout_ms = 30000;
	o.ticket_rotate_ms = 12LL * 3600 * 1000;
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
			if (c == P_ALLOW ? cmd_strv_add(&l->allow, &l->n_allow,
			    optarg) : c == P_EXPECT ? cmd_strv_add(&l->expect,
			    &l->n_expect, optarg) : cmd_strv_add(&o.admin_allow,
			    &o.n_admin_allow, optarg))
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
		case P_NOSTAPLE: l->staple_off = 1; break;
		case P_HTTP: l->http = 1; break;
		case P_NOACCESSLOG: l->no_access_log = 1; break;
		case P_REQSTAPLE: l->require_staple = 1; break;
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
		case P_PERIP:
			if (num("--max-conns-per-ip", optarg, 0, 1000000,
			    &l->max_conns_per_ip))
				goto out;
			if (l->max_conns_per_ip == 0)
				l->max_conns_per_ip = -1;	/* none */
			break;
		case P_FB_TO:
			if (ms("--first-byte-timeout", optarg,
			    &o.first_byte_timeout_ms))
				goto out;
			break;
		case P_ADMIN: o.admin = optarg; break;
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
		case P_CAURL: ag.ca_url = optarg; break;
		case P_TOKEN: ag.token_file = optarg; break;
		case P_OUTDIR: ag.out_dir = optarg; break;
		case P_CRLREF:
			if (ms("--crl-refresh", optarg, &l->crl_refresh_ms))
				goto out;
			break;
		case P_TKROT:
			if (ms("--ticket-rotate", optarg, &o.ticket_rotate_ms))
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
		struct proxy_opts cli = o;

		if (listener_flags) {
			rv = cmd_usage("proxy", "--config holds the listeners: "
			    "give listener flags either there or here, not "
			    "both");
			goto out;
		}
		error_clear(&err);
		if (load_config(config, &cs, &err) != 0) {
			rv = cmd_fail("proxy", &err);
			goto out;
		}
		/* flags given on the command line win over the file */
		if (cli.workers)
			o.workers = cli.workers;
		if (cli.admin)
			o.admin = cli.admin;
		if (cli.max_conns)
			o.max_conns = cli.max_conns;
		if (tkrot)
			o.ticket_rotate_ms = cli.ticket_rotate_ms;
	} else {
		o.n_l = 1;
		snprintf(l->name, sizeof(l->name), "%s", l->http ? "http" :
		    l->outbound ? "outbound" : "inbound");
		if (l->http) {
			/* --http: one route, / to --target, with the rules */
			memset(&flag_route, 0, sizeof(flag_route));
			snprintf(flag_route.name, sizeof(flag_route.name),
			    "default");
			flag_route.upstream = l->target;
			flag_route.allow = l->allow;
			flag_route.n_allow = l->n_allow;
			flag_route.allow_any = l->allow_any;
			l->routes[l->n_routes++] = &flag_route;
		}
	}
	http_defaults(&o);
	if (o.first_byte_timeout_ms < 1000) {
		rv = cmd_usage("proxy", "--first-byte-timeout (first_byte_timeout) "
		    "must be at least 1s");
		goto out;
	}
	if (l->min_tls && strcmp(l->min_tls, "1.2") && strcmp(l->min_tls, "1.3")) {
		rv = cmd_usage("proxy", "--min-tls must be 1.2 or 1.3");
		goto out;
	}
	if (ag.ca_url || ag.token_file || ag.out_dir) {
		/* the built-in agent: one process is a self-renewing sidecar;
		 * listeners without cert and key serve its files */
		if (!ag.ca_url || !ag.out_dir ||
		    strncmp(ag.ca_url, "https://", 8) != 0 ||
		    (config == NULL && (l->cert || l->key))) {
			rv = cmd_usage("proxy", "the built-in agent takes "
			    "--ca-url https://... and --out-dir (plus "
			    "--token-file to enroll), instead of --cert and "
			    "--key (in a config file: [agent] ca_url, out_dir, "
			    "token_file)");
			goto out;
		}
		snprintf(svid, sizeof(svid), "%s/svid.pem", ag.out_dir);
		snprintf(svid_key, sizeof(svid_key), "%s/svid.key", ag.out_dir);
		snprintf(bundle, sizeof(bundle), "%s/bundle.pem", ag.out_dir);
		if (config == NULL && l->ca != NULL)
			ag.ca_bundle = l->ca;
		for (i = 0; i < o.n_l; i++) {
			if (o.l[i].cert == NULL && o.l[i].key == NULL) {
				o.l[i].cert = svid;
				o.l[i].key = svid_key;
			}
			if (o.l[i].ca == NULL)
				o.l[i].ca = bundle;
		}
		error_clear(&err);
		if (agent_background(&ag, &err) != 0) {
			fprintf(stderr, "mtls proxy: --ca-url %s: %s\n",
			    ag.ca_url, err.msg);
			goto out;
		}
	}
	error_clear(&err);
	if (proxy_run(&o, &err) != 0) {
		rv = cmd_fail("proxy", &err);
		goto out;
	}
	rv = 0;
 out:
	strv_free(o.admin_allow, o.n_admin_allow);
	strv_free(o.admin_crls, o.n_admin_crls);
	for (i = 0; i < PROXY_MAX_LISTENERS; i++) {
		strv_free(o.l[i].allow, o.l[i].n_allow);
		strv_free(o.l[i].expect, o.l[i].n_expect);
		strv_free(o.l[i].crls, o.l[i].n_crls);
	}
	for (i = 0; i < cs.n_routes; i++) {
		strv_free(cs.routes[i]->allow, cs.routes[i]->n_allow);
		strv_free(cs.routes[i]->up_expect, cs.routes[i]->n_up_expect);
		free(cs.routes[i]);
	}
	strv_free(cs.keep, cs.n_keep);
	return rv;
}
