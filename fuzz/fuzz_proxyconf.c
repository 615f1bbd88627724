/*
 * Fuzz target: the proxy's config file (src/svc/proxy/config.c:
 * proxy_conf_parse, then proxy_conf_finish). The input is the file's
 * text, followed in memory by a canary pattern it does not contain.
 * Invariants: a failure always says why, and the message holds no canary
 * byte run (nothing read past the input); a success has 1 to 16 named
 * listeners, every route on an http listener with a path starting '/',
 * every duration within 0 .. MTLS_MAX_INTERVAL, every rule valid, and no
 * string with the canary in it. No clock, no RNG, no file or global state
 * (log_format is only recorded).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mtls.h"
#include "internal.h"
#include "proxy/proxy.h"
#include "canary.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *canary;

static void
check_str(const char *s)
{
	if (s != NULL && canary_in(canary, s, strlen(s)))
		abort();
}

static void
check_rules(char **v, size_t n)
{
	char why[200];
	size_t i;

	for (i = 0; i < n; i++) {
		check_str(v[i]);
		if (mtls_rule_check(v[i], why, sizeof(why)) != 0)
			abort();
	}
}

static void
check_ms(int64_t ms)
{
	if (ms < 0 || ms > MTLS_MAX_INTERVAL * 1000)
		abort();
}

static void
check_conf(const struct proxy_conf *c)
{
	const struct proxy_opts *o = &c->o;
	size_t i, k;

	if (o->n_l < 1 || o->n_l > PROXY_MAX_LISTENERS)
		abort();
	check_ms(o->first_byte_timeout_ms);
	check_ms(o->handshake_timeout_ms);
	check_ms(o->connect_timeout_ms);
	check_ms(o->idle_timeout_ms);
	check_ms(o->drain_timeout_ms);
	check_ms(o->ticket_rotate_ms);
	if (o->first_byte_timeout_ms < 1000 || o->workers < 0 ||
	    o->workers > 64 || o->max_conns < 0)
		abort();
	check_str(o->admin);
	check_rules(o->admin_allow, o->n_admin_allow);
	for (i = 0; i < o->n_l; i++) {
		const struct proxy_listener *l = &o->l[i];

		if (l->name[0] == '\0' || memchr(l->name, '\0',
		    sizeof(l->name)) == NULL)
			abort();
		check_str(l->name);
		check_str(l->listen);
		check_str(l->target);
		check_str(l->cert);
		check_str(l->crl_url);
		check_ms(l->crl_refresh_ms);
		check_ms(l->request_timeout_ms);
		check_rules(l->allow, l->n_allow);
		check_rules(l->expect, l->n_expect);
		if (l->n_routes > PROXY_MAX_ROUTES ||
		    (l->n_routes > 0 && !l->http))
			abort();
		if (l->http && (l->max_head < 1024 || l->max_head > 65536 ||
		    l->max_headers < 1 || l->max_headers > 256))
			abort();
		for (k = 0; k < l->n_routes; k++) {
			const struct proxy_route *r = l->routes[k];

			if (r->path == NULL || r->path[0] != '/' ||
			    r->up_max < 1 || r->up_idle < 0)
				abort();
			check_str(r->name);
			check_str(r->upstream);
			check_rules(r->allow, r->n_allow);
			check_rules(r->up_expect, r->n_up_expect);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct proxy_conf c;
	struct mtls_error err;
	char *buf;

	canary = canary_pick(data, len);
	if ((buf = malloc(len + 64)) == NULL)
		return 0;
	memcpy(buf, data, len);
	for (size_t i = 0; i < 64; i++)
		buf[len + i] = canary != NULL ? canary[i % 4] : 'x';
	proxy_conf_init(&c);
	error_clear(&err);
	if (proxy_conf_parse(&c, buf, len, "fuzz.conf", &err) != 0 ||
	    proxy_conf_finish(&c, &err) != 0) {
		if (err.msg[0] == '\0')
			abort();	/* a failure always says why */
		check_str(err.msg);
	} else
		check_conf(&c);
	proxy_conf_free(&c);
	free(buf);
	return 0;
}
