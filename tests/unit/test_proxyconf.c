/* src/svc/proxy/config.c: the proxy's config-file schema, its errors
 * (file:line and the fix), the service defaults and duration bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/proxy.h"

#define LISTENER "[listener \"api\"]\nlisten = 127.0.0.1:8443\n" \
	"target = 127.0.0.1:8080\ncert = c.pem\nkey = k.pem\nca = ca.pem\n"

/* 64 bytes: one more than a listener's or a route's name holds */
#define L64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* Parses <text> as t.conf, then finishes: 0, or -1 with <err>. */
static int
load(struct proxy_conf *c, const char *text, struct mtls_error *err)
{
	proxy_conf_init(c);
	error_clear(err);
	if (proxy_conf_parse(c, text, strlen(text), "t.conf", err) != 0)
		return -1;
	return proxy_conf_finish(c, err);
}

/* Each bad file: its error names the file, the line and what to do. */
static const struct {
	const char *in;
	const char *want;	/* a substring of the message */
} bad[] = {
	{ LISTENER "colour = blue\n",
	    "t.conf:7: unknown key 'colour' in [listener \"api\"]" },
	{ LISTENER "mode = sideways\n",
	    "t.conf:7: mode is inbound, outbound or http" },
	{ LISTENER "allow = bogus:thing\n", "t.conf:7: allow 'bogus:thing': " },
	{ LISTENER "allow_any = maybe\n", "t.conf:7: allow_any is true or false" },
	{ LISTENER "min_tls = 1.1\n", "t.conf:7: min_tls is 1.2 or 1.3" },
	{ LISTENER "crl_url = http://ca/crl\n", "t.conf:7: crl_url must be https://" },
	{ LISTENER "max_conns_per_ip = -1\n",
	    "t.conf:7: max_conns_per_ip '-1' must be a number from 0" },
	{ LISTENER "max_conns_per_ip = 1000001\n", "t.conf:7: max_conns_per_ip" },
	{ LISTENER "max_head = 100\n", "t.conf:7: max_head '100' is out of range" },
	{ LISTENER "max_head = 99999999999999999999k\n", "t.conf:7: max_head" },
	{ LISTENER "max_headers = 257\n", "t.conf:7: max_headers '257' is out of range" },
	{ LISTENER "max_body = 2000000m\n", "t.conf:7: max_body" },
	{ LISTENER "path_semicolons = allow\n", "t.conf:7: path_semicolons is refuse" },
	{ LISTENER "underscores_in_headers = keep\n",
	    "t.conf:7: underscores_in_headers is drop" },
	{ LISTENER "crl_refresh = soon\n",
	    "t.conf:7: crl_refresh 'soon' is not a duration (like 90s, 15m, 24h)" },
	{ LISTENER "crl_refresh = 367d\n",
	    "t.conf:7: crl_refresh '367d' is too long: at most 366d" },
	{ LISTENER "request_timeout = 9223372036854775807s\n",
	    "t.conf:7: request_timeout" },
	{ LISTENER "[listener \"b\"]\nmode = inbound\n[listener \"api\"]\n"
	    "listen = 127.0.0.1:1\n", "t.conf:10: listener 'api' appears twice" },
	{ LISTENER "[proxy]\nworkers = 0\n", "t.conf:8: workers must be a positive number" },
	{ LISTENER "[proxy]\nmax_conns = 1x\n", "t.conf:8: max_conns must be a positive" },
	/* numbers: digits only, no leading zero, sign or hex (0500 is 500
	 * to strtol and 320 to a reader of C) */
	{ LISTENER "[proxy]\nworkers = 08\n", "t.conf:8: workers must be a positive number (digits only, no leading zero)" },
	{ LISTENER "[proxy]\nmax_conns = 0500\n", "t.conf:8: max_conns must be a positive" },
	{ LISTENER "[proxy]\nmax_conns = +500\n", "t.conf:8: max_conns must be a positive" },
	{ LISTENER "[proxy]\nmax_conns = \" 500\"\n", "t.conf:8: max_conns must be a positive" },
	{ LISTENER "[proxy]\nmax_conns = 0x10\n", "t.conf:8: max_conns must be a positive" },
	{ LISTENER "[listener \"b\"]\nmax_conns_per_ip = 010\n", "max_conns_per_ip '010' must be a number from 0" },
	{ LISTENER "[route \"r\"]\nupstream_max = 05\n", "t.conf:8: upstream_max must be a number" },
	{ LISTENER "[route \"r\"]\nupstream_idle = +5\n", "t.conf:8: upstream_idle must be a number" },
	{ LISTENER "[listener \"b\"]\nmax_body = 010k\n", "max_body '010k' is out of range" },
	{ LISTENER "[listener \"b\"]\nmax_head = \" 8k\"\n", "max_head ' 8k' is out of range" },
	{ LISTENER "[listener \"b\"]\nmax_headers = k\n", "max_headers 'k' is out of range" },
	{ LISTENER "[proxy]\nhandshake_timeout = 400d\n",
	    "t.conf:8: handshake_timeout '400d' is too long" },
	{ LISTENER "[proxy]\nbogus_timeout = 1s\n", "t.conf:8: unknown key 'bogus_timeout' in [proxy]" },
	{ LISTENER "[proxy]\nlog_format = xml\n", "t.conf:8: log_format is json or text" },
	{ LISTENER "[proxy]\nadmin_allow = nope\n", "t.conf:8: admin_allow 'nope'" },
	{ LISTENER "[agent]\nca_url = http://ca\n", "t.conf:8: ca_url must be https://" },
	{ LISTENER "[agent]\nsecret = x\n", "t.conf:8: unknown key 'secret' in [agent]" },
	{ LISTENER "[server]\nx = 1\n",
	    "t.conf:8: unknown section [server] (use [proxy] and [listener \"NAME\"])" },
	{ LISTENER "[route \"r\"]\npath = admin\n", "t.conf:8: path must start with '/'" },
	{ LISTENER "[route \"r\"]\nclient_cert = maybe\n",
	    "t.conf:8: client_cert is required or optional" },
	{ LISTENER "[route \"r\"]\nupstream_max = 0\n",
	    "t.conf:8: upstream_max must be a number up to 100000" },
	{ LISTENER "[route \"r\"]\nweight = 2\n", "t.conf:8: unknown key 'weight' in [route \"r\"]" },
	{ LISTENER "[route \"r\"]\npath = /a\n[route \"s\"]\npath = /b\n"
	    "[route \"r\"]\npath = /c\n", "t.conf:12: route 'r' appears twice" },
	{ LISTENER "[route \"r\"]\npath = /a\n",
	    "t.conf: route r: name its listener (listener = NAME)" },
	{ LISTENER "[route \"r\"]\nlistener = api\n",
	    "t.conf: route r: its listener is not an http listener of this file" },
	{ "[proxy]\nworkers = 2\n", "t.conf: no [listener \"NAME\"] section" },
	{ "", "t.conf: no [listener \"NAME\"] section" },
	{ "[listener \"a\"\n", "t.conf:1:" },
	{ LISTENER "[proxy]\nfirst_byte_timeout = 0s\n",
	    "t.conf:8: first_byte_timeout '0s' is not a duration" },
	{ "[listener \"api\"]\nmode = inbound\n[agent]\nout_dir = /tmp\n",
	    "the built-in agent takes --ca-url https://... and --out-dir" },
	/* federated trust domains (ca = BUNDLE, TD:BUNDLE, ...) */
	{ LISTENER "ca = a.pem, b.pem\n", "listener api: ca: two bundles of our own" },
	{ LISTENER "ca = a.pem, , p.com:b.pem\n", "an empty entry" },
	{ LISTENER "ca = p.com:https://x/b\n", "give at least one bundle file" },
	{ LISTENER "ca = a.pem, p.com:http://x/b\n", "p.com's bundle endpoint must be https://" },
	{ LISTENER "ca = a,b:c,d:e,f:g,h:i,j:k,l:m,n:o,p:q\n", "more than 8 bundles" },
	{ LISTENER "ca = a.pem, p.com:https://x/b\nbundle_root = q.com:r.pem\n",
	    "bundle_root 'q.com:r.pem': write TD:PATH" },
	{ LISTENER "bundle_refresh = 0s\n", "t.conf:7: bundle_refresh" },
	/* a name longer than its field: refused, not truncated (each key
	 * of a truncated section made a new, incomplete one) */
	{ "[listener \"" L64 "\"]\nlisten = 127.0.0.1:1\n"
	    "target = 127.0.0.1:2\ncert = c.pem\nkey = k.pem\nca = ca.pem\n",
	    "t.conf:2: listener name '" },
	{ LISTENER "[route \"" L64 "\"]\nlistener = api\npath = /a\n",
	    "t.conf:8: route name '" },
};

static void
test_bad(void **state)
{
	struct proxy_conf c;
	struct mtls_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rv = load(&c, bad[i].in, &err);

		if (rv == 0 || strstr(err.msg, bad[i].want) == NULL)
			fail_msg("case %zu: rv %d, message '%s', wanted '%s'", i,
			    rv, err.msg, bad[i].want);
		proxy_conf_free(&c);
	}
}

/* The service defaults, as proxy_conf_init sets them and the help says. */
static void
test_defaults(void **state)
{
	struct proxy_conf c;
	struct mtls_error err;

	(void)state;
	assert_int_equal(load(&c, LISTENER "allow = dns:a.example\n", &err), 0);
	assert_int_equal(c.o.first_byte_timeout_ms, 5000);
	assert_int_equal(c.o.handshake_timeout_ms, 10000);
	assert_int_equal(c.o.connect_timeout_ms, 5000);
	assert_int_equal(c.o.idle_timeout_ms, 300000);
	assert_int_equal(c.o.drain_timeout_ms, 30000);
	assert_int_equal(c.o.ticket_rotate_ms, 12LL * 3600 * 1000);
	assert_int_equal(c.o.workers, 0);	/* one per core */
	assert_int_equal(c.o.max_conns, 0);	/* no cap */
	assert_int_equal(c.o.l[0].max_conns_per_ip, 0);	/* PROXY_PER_IP */
	assert_int_equal(c.o.l[0].crl_refresh_ms, 0);	/* 60 s */
	assert_int_equal(c.log_json, -1);
	assert_int_equal(c.agent, 0);
	assert_null(c.o.admin);
	proxy_conf_free(&c);

	/* flags only (no file): one listener named after its mode; --http
	 * makes one route, / to --target, with the listener's rules */
	proxy_conf_init(&c);
	c.o.l[0].http = 1;
	c.o.l[0].target = (char *)"127.0.0.1:8080";
	c.o.l[0].allow_any = 1;
	assert_int_equal(proxy_conf_finish(&c, &err), 0);
	assert_int_equal(c.o.n_l, 1);
	assert_string_equal(c.o.l[0].name, "http");
	assert_int_equal(c.o.l[0].n_routes, 1);
	assert_string_equal(c.o.l[0].routes[0]->name, "default");
	assert_string_equal(c.o.l[0].routes[0]->upstream, "127.0.0.1:8080");
	assert_string_equal(c.o.l[0].routes[0]->path, "/");
	assert_int_equal(c.o.l[0].routes[0]->allow_any, 1);
	assert_int_equal(c.o.l[0].max_head, 16384);
	assert_int_equal(c.o.l[0].max_headers, 100);
	assert_int_equal(c.o.l[0].max_body, 1024 * 1024);
	assert_int_equal(c.o.l[0].request_timeout_ms, 60000);
	c.o.l[0].target = NULL;
	proxy_conf_free(&c);

	/* below 1 s the first-byte timeout is refused (a caller that sets
	 * it directly: a file or a flag cannot say less than 1s) */
	proxy_conf_init(&c);
	c.o.first_byte_timeout_ms = 500;
	assert_int_equal(proxy_conf_finish(&c, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_ARG);
	assert_non_null(strstr(err.msg, "must be at least 1s"));
	proxy_conf_free(&c);
}

/* A file that uses every section: what each key sets. */
static void
test_good(void **state)
{
	static const char text[] =
	    "# comment\n"
	    "[proxy]\n"
	    "workers = 100\n"
	    "max_conns = 5000\n"
	    "admin = 127.0.0.1:9901\n"
	    "admin_allow = spiffe://example.org/ns/ops/prom dns:ops.example\n"
	    "admin_crl = a.crl b.crl\n"
	    "handshake_timeout = 3s\n"
	    "first_byte_timeout = 1s\n"
	    "idle_timeout = 1h\n"
	    "drain_timeout = 1s\n"
	    "ticket_rotate = 366d\n"
	    "log_format = text\n"
	    LISTENER
	    "allow = spiffe://example.org/ns/prod/*\n"
	    "allow = dns:b.example\n"
	    "crl = one.crl two.crl\n"
	    "crl_url = https://ca.example/crl\n"
	    "crl_refresh = 90s\n"
	    "max_conns_per_ip = 0\n"
	    "staple = false\n"
	    "[listener \"out\"]\n"
	    "mode = outbound\n"
	    "listen = 127.0.0.1:9000\n"
	    "target = billing:8443\n"
	    "expect = spiffe://example.org/ns/prod/billing\n"
	    "require_staple = yes\n"
	    "min_tls = 1.2\n"
	    "[listener \"gw\"]\n"
	    "mode = http\n"
	    "listen = 0.0.0.0:443\n"
	    "max_head = 32k\n"
	    "max_headers = 256\n"
	    "max_body = 2m\n"
	    "path_semicolons = pass\n"
	    "access_log = false\n"
	    "[route \"admin\"]\n"
	    "path = /admin\n"
	    "upstream = 127.0.0.1:8081\n"
	    "allow = spiffe://example.org/ns/ops/*\n"
	    "upstream_tls = true\n"
	    "upstream_expect = dns:up.example\n"
	    "upstream_idle = 0\n"
	    "[route \"pub\"]\n"
	    "listener = gw\n"
	    "client_cert = optional\n"
	    "upstream = 127.0.0.1:8082\n"
	    "[agent]\n"
	    "ca_url = https://ca:8443\n"
	    "out_dir = /var/lib/mtls\n";
	struct proxy_conf c;
	struct mtls_error err;

	(void)state;
	if (load(&c, text, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(c.o.workers, 64);	/* capped */
	assert_int_equal(c.o.max_conns, 5000);
	assert_string_equal(c.o.admin, "127.0.0.1:9901");
	assert_int_equal(c.o.n_admin_allow, 2);
	assert_int_equal(c.o.n_admin_crls, 2);
	assert_int_equal(c.o.handshake_timeout_ms, 3000);
	assert_int_equal(c.o.first_byte_timeout_ms, 1000);
	assert_int_equal(c.o.idle_timeout_ms, 3600000);
	assert_int_equal(c.o.drain_timeout_ms, 1000);
	assert_int_equal(c.o.ticket_rotate_ms, 366LL * 86400 * 1000);
	assert_int_equal(c.log_json, 0);
	assert_int_equal(c.o.n_l, 3);
	assert_string_equal(c.o.l[0].name, "api");
	assert_int_equal(c.o.l[0].n_allow, 2);
	assert_int_equal(c.o.l[0].n_crls, 2);
	assert_string_equal(c.o.l[0].crls[1], "two.crl");
	assert_string_equal(c.o.l[0].crl_url, "https://ca.example/crl");
	assert_int_equal(c.o.l[0].crl_refresh_ms, 90000);
	assert_int_equal(c.o.l[0].max_conns_per_ip, -1);	/* none */
	assert_int_equal(c.o.l[0].staple_off, 1);
	assert_int_equal(c.o.l[1].outbound, 1);
	assert_int_equal(c.o.l[1].require_staple, 1);
	assert_string_equal(c.o.l[1].min_tls, "1.2");
	assert_int_equal(c.o.l[1].n_expect, 1);
	assert_int_equal(c.o.l[2].http, 1);
	assert_int_equal(c.o.l[2].max_head, 32768);
	assert_int_equal(c.o.l[2].max_headers, 256);
	assert_int_equal(c.o.l[2].max_body, 2 * 1024 * 1024);
	assert_int_equal(c.o.l[2].semicolons_pass, 1);
	assert_int_equal(c.o.l[2].no_access_log, 1);
	assert_int_equal(c.o.l[2].request_timeout_ms, 60000);
	/* the only http listener takes a route that names none */
	assert_int_equal(c.o.l[2].n_routes, 2);
	assert_string_equal(c.o.l[2].routes[0]->path, "/admin");
	assert_int_equal(c.o.l[2].routes[0]->up_tls, 1);
	assert_int_equal(c.o.l[2].routes[0]->up_idle, 256);	/* 0: default */
	assert_int_equal(c.o.l[2].routes[0]->up_max, 512);
	assert_int_equal(c.o.l[2].routes[1]->optional, 1);
	assert_string_equal(c.o.l[2].routes[1]->path, "/");
	/* the built-in agent's files where a listener names none */
	assert_int_equal(c.agent, 1);
	assert_string_equal(c.o.l[0].cert, "c.pem");
	assert_string_equal(c.o.l[1].cert, "/var/lib/mtls/svid.pem");
	assert_string_equal(c.o.l[1].key, "/var/lib/mtls/svid.key");
	assert_string_equal(c.o.l[1].ca, "/var/lib/mtls/bundle.pem");
	proxy_conf_free(&c);
}

/* Durations: 0 to 366 days, each key; a listener or route that reaches
 * a limit (16 listeners, 64 routes) is refused with its line. */
/* ca entries: our own bundle, a partner's file, a partner's endpoint
 * with its pinned root; a path with a ':' stays a path. */
static void
test_federation(void **state)
{
	struct proxy_conf c;
	struct mtls_error err;
	struct proxy_listener *l;

	(void)state;
	assert_int_equal(load(&c, LISTENER "ca = ./x:y.pem , p.com:p.json, "
	    "q.org:https://ca.q.org/v1/bundle?format=spiffe, r.net:https://r/b\n"
	    "bundle_root = q.org:q-root.pem\nbundle_refresh = 30s\n", &err), 0);
	l = &c.o.l[0];
	assert_int_equal(l->n_ca, 4);
	assert_string_equal(l->ca, "./x:y.pem");
	assert_string_equal(l->ca_td[0], "");
	assert_string_equal(l->ca_td[1], "p.com");
	assert_string_equal(l->ca_path[1], "p.json");
	assert_null(l->ca_root[1]);
	assert_string_equal(l->ca_td[2], "q.org");
	assert_string_equal(l->ca_path[2],
	    "https://ca.q.org/v1/bundle?format=spiffe");
	assert_string_equal(l->ca_root[2], "q-root.pem");
	assert_string_equal(l->ca_root[3], PROXY_WEBPKI_ROOTS);
	assert_int_equal(l->bundle_refresh_ms, 30000);
	proxy_conf_free(&c);
	/* the one-file form is untouched */
	assert_int_equal(load(&c, LISTENER, &err), 0);
	assert_int_equal(c.o.l[0].n_ca, 0);
	assert_string_equal(c.o.l[0].ca, "ca.pem");
	proxy_conf_free(&c);
	/* only partners: the first file is what CRL fetches trust */
	assert_int_equal(load(&c, LISTENER "ca = p.com:p.pem\n", &err), 0);
	assert_int_equal(c.o.l[0].n_ca, 1);
	assert_string_equal(c.o.l[0].ca, "p.pem");
	proxy_conf_free(&c);
}

static void
test_bounds(void **state)
{
	static const char *const keys[] = { "[proxy]\nhandshake_timeout",
	    "[proxy]\nconnect_timeout", "[proxy]\nidle_timeout",
	    "[proxy]\ndrain_timeout", "[proxy]\nfirst_byte_timeout",
	    "[proxy]\nticket_rotate", "crl_refresh", "request_timeout" };
	struct proxy_conf c;
	struct mtls_error err;
	char text[8192];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(text, sizeof(text), LISTENER "%s = 366d\n", keys[i]);
		if (load(&c, text, &err) != 0)
			fail_msg("%s = 366d: %s", keys[i], err.msg);
		proxy_conf_free(&c);
		snprintf(text, sizeof(text), LISTENER "%s = 8785h\n", keys[i]);
		assert_int_equal(load(&c, text, &err), -1);
		assert_non_null(strstr(err.msg, "is too long: at most 366d"));
		proxy_conf_free(&c);
		snprintf(text, sizeof(text), LISTENER "%s = -1s\n", keys[i]);
		assert_int_equal(load(&c, text, &err), -1);
		assert_non_null(strstr(err.msg, "is not a duration"));
		proxy_conf_free(&c);
	}
	for (n = 0, i = 0; i <= PROXY_MAX_LISTENERS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "[listener \"l%zu\"]\nmode = inbound\n", i);
	assert_int_equal(load(&c, text, &err), -1);
	assert_non_null(strstr(err.msg, "t.conf:34: more than 16 listeners"));
	proxy_conf_free(&c);
	n = (size_t)snprintf(text, sizeof(text), "[listener \"gw\"]\nmode = http\n");
	for (i = 0; i <= PROXY_MAX_ROUTES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "[route \"r%zu\"]\npath = /\n", i);
	assert_int_equal(load(&c, text, &err), -1);
	assert_non_null(strstr(err.msg, "t.conf:132: more than 64 routes"));
	proxy_conf_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_federation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
