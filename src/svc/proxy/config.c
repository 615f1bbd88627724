/*
 * The proxy's configuration (src/svc/proxy layer): the --config file's
 * schema ([proxy], [listener "NAME"], [route "NAME"], [agent]), its
 * validation with file:line messages, and the service defaults that
 * flags and file share. cmd_proxy.c only turns flags into a struct
 * proxy_conf and prints; proxy_run checks what needs the network or the
 * files (addresses, certificates) again.
 *
 * Every value is hostile: numbers are range-checked before any
 * arithmetic, durations are at most MTLS_MAX_INTERVAL (so now + ms cannot
 * overflow), rules are checked by mtls_rule_check, and a bad key, value
 * or section is an error naming the file, the line and the fix. Nothing
 * is kept from a file that fails (the caller frees the conf and stops).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/proxy.h"

static int
oom(struct mtls_error *err)
{
	return error_set(err, MTLS_ERR_NOMEM, "out of memory");
}

/* A string from the file, kept until proxy_conf_free. */
static char *
keep(struct proxy_conf *cs, const char *v)
{
	if (strv_add(&cs->keep, &cs->n_keep, v) != 0)
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
cfg_ms(const struct proxy_conf *cs, int line, const char *key, const char *val,
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
cfg_list(char ***v, size_t *n, const char *val, struct mtls_error *err)
{
	char buf[4096], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", val);
	for (tok = strtok_r(buf, " \t", &save); tok;
	    tok = strtok_r(NULL, " \t", &save))
		if (strv_add(v, n, tok) != 0)
			return oom(err);
	return 0;
}

/* A byte count: digits (conf_number's: no sign, blank or leading zero)
 * with an optional k/m suffix (KiB, MiB). */
static int
cfg_bytes(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char digits[24];
	size_t len = strlen(v);
	int64_t n, mul = 1;

	if (len > 0 && (v[len - 1] == 'k' || v[len - 1] == 'K'))
		mul = 1024, len--;
	else if (len > 0 && (v[len - 1] == 'm' || v[len - 1] == 'M'))
		mul = 1024 * 1024, len--;
	if (len >= sizeof(digits))
		return -1;
	memcpy(digits, v, len);
	digits[len] = '\0';
	/* bounded before the multiplication: signed overflow is UB */
	if (conf_number(digits, 0, hi / mul, &n) != 0 || n * mul < lo)
		return -1;
	*out = n * mul;
	return 0;
}

static int
cfg_rules(struct proxy_conf *cs, int line, const char *key, const char *val,
    char ***v, size_t *n, struct mtls_error *err)
{
	char buf[4096], *tok, *save = NULL, why[200];

	snprintf(buf, sizeof(buf), "%s", val);
	for (tok = strtok_r(buf, " \t", &save); tok;
	    tok = strtok_r(NULL, " \t", &save))
		if (mtls_rule_check(tok, why, sizeof(why)) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s "
			    "'%.100s': %s", cs->path, line, key, tok, why);
	return cfg_list(v, n, val, err);
}

/* A [listener "NAME"] or [route "NAME"] name must fit its field whole: a
 * truncated name would not match itself on the section's next line (each
 * key a new, incomplete section) and two long names would collide. */
static int
cfg_name_fits(const struct proxy_conf *cs, int line, const char *kind,
    const char *name, size_t size, struct mtls_error *err)
{
	if (strlen(name) < size)
		return 0;
	return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s name '%.40s...' is "
	    "longer than %zu bytes; give a shorter one", cs->path, line, kind,
	    name, size - 1);
}

/* [route "NAME"]: one route of an http listener. */
static int
cfg_route(struct proxy_conf *cs, const char *name, const char *key,
    const char *val, int line, struct mtls_error *err)
{
	struct proxy_route *r = cs->cur_route;
	char **dst = NULL;
	int64_t n;
	int b;

	if (cfg_name_fits(cs, line, "route", name, sizeof(r->name), err) != 0)
		return -1;
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
			return oom(err);
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
	return (*dst = keep(cs, val)) ? 0 : oom(err);
}

/* Attaches routes to their http listeners and fills in defaults. */
static int
routes_resolve(struct proxy_conf *cs, struct mtls_error *err)
{
	struct proxy_opts *o = &cs->o;
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
	struct proxy_conf *cs = arg;
	struct proxy_opts *o = &cs->o;
	struct proxy_listener *l;
	char **dst = NULL;

	if (strcmp(section, "agent") == 0) {
		const char **a = strcmp(key, "ca_url") == 0 ? &cs->ag.ca_url :
		    strcmp(key, "token_file") == 0 ? &cs->ag.token_file :
		    strcmp(key, "out_dir") == 0 ? &cs->ag.out_dir :
		    strcmp(key, "ca_bundle") == 0 ? &cs->ag.ca_bundle :
		    strcmp(key, "key") == 0 ? &cs->ag.key : NULL;

		if (a == NULL)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown key "
			    "'%s' in [agent] (ca_url, token_file, out_dir, "
			    "ca_bundle, key)", cs->path, line, key);
		if (a == &cs->ag.key && !keystore_is_uri(val))
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: key in "
			    "[agent] is a pkcs11: URI (a key in a token); "
			    "without it the key is out_dir/svid.key",
			    cs->path, line);
		if (a == &cs->ag.ca_url && strncmp(val, "https://", 8) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: ca_url "
			    "must be https://", cs->path, line);
		return (*a = keep(cs, val)) ? 0 : oom(err);
	}
	if (strcmp(section, "proxy") == 0) {
		if (strcmp(key, "workers") == 0 || strcmp(key, "max_conns") == 0) {
			int64_t n;

			if (conf_number(val, 1, 1000000, &n) != 0)
				return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s "
				    "must be a positive number (digits only, no "
				    "leading zero)", cs->path, line, key);
			if (key[0] == 'w')
				o->workers = n > 64 ? 64 : (int)n;
			else
				o->max_conns = (int)n;
			return 0;
		}
		if (strcmp(key, "admin") == 0)
			return (o->admin = keep(cs, val)) ? 0 : oom(err);
		if (strcmp(key, "admin_allow") == 0)
			return cfg_rules(cs, line, key, val, &o->admin_allow,
			    &o->n_admin_allow, err);
		if (strcmp(key, "admin_crl") == 0)
			return cfg_list(&o->admin_crls, &o->n_admin_crls, val, err);
		if (strcmp(key, "admin_cert") == 0 ||
		    strcmp(key, "admin_key") == 0 ||
		    strcmp(key, "admin_ca") == 0) {
			char **a = key[6] == 'c' && key[7] == 'e' ?
			    &o->admin_cert : key[6] == 'k' ? &o->admin_key :
			    &o->admin_ca;

			return (*a = keep(cs, val)) ? 0 : oom(err);
		}
		if (strcmp(key, "log_format") == 0) {
			if (strcmp(val, "json") && strcmp(val, "text"))
				return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
				    "log_format is json or text", cs->path, line);
			cs->log_json = strcmp(val, "json") == 0;
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
	if (cfg_name_fits(cs, line, "listener", section + 9,
	    sizeof(o->l[0].name), err) != 0)
		return -1;
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
		return cfg_list(&l->crls, &l->n_crls, val, err);
	if (strcmp(key, "max_conns_per_ip") == 0) {
		int64_t n;

		if (conf_number(val, 0, 1000000, &n) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
			    "max_conns_per_ip '%s' must be a number from 0 (no "
			    "limit) to 1000000 (digits only, no leading zero)", cs->path, line, val);
		l->max_conns_per_ip = n == 0 ? -1 : (int)n;
		return 0;
	}
	if (strcmp(key, "crl_refresh") == 0)
		return cfg_ms(cs, line, key, val, &l->crl_refresh_ms, err);
	if (strcmp(key, "bundle_refresh") == 0) {
		if (cfg_ms(cs, line, key, val, &l->bundle_refresh_ms, err) != 0)
			return -1;
		if (l->bundle_refresh_ms < 1000)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
			    "bundle_refresh is at least 1s", cs->path, line);
		return 0;
	}
	if (strcmp(key, "bundle_root") == 0)
		return cfg_list(&l->bundle_roots, &l->n_bundle_roots, val, err);
	if (strcmp(key, "crl_url") == 0) {
		if (strncmp(val, "https://", 8) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: crl_url "
			    "must be https://", cs->path, line);
		return (l->crl_url = keep(cs, val)) ? 0 : oom(err);
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
	return (*dst = keep(cs, val)) ? 0 : oom(err);
}

void
proxy_conf_init(struct proxy_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->log_json = -1;
	c->o.first_byte_timeout_ms = PROXY_FIRST_BYTE_MS;
	c->o.handshake_timeout_ms = PROXY_HANDSHAKE_MS;
	c->o.connect_timeout_ms = PROXY_CONNECT_MS;
	c->o.idle_timeout_ms = PROXY_IDLE_MS;
	c->o.drain_timeout_ms = PROXY_DRAIN_MS;
	c->o.ticket_rotate_ms = PROXY_TICKET_ROTATE_MS;
}

int
proxy_conf_parse(struct proxy_conf *c, const char *text, size_t len,
    const char *path, struct mtls_error *err)
{
	c->path = path;
	if (conf_parse(text, len, path, cfg_cb, c, err) != 0)
		return -1;
	if (c->o.n_l == 0)
		return error_set(err, MTLS_ERR_PARSE, "%s: no [listener "
		    "\"NAME\"] section", path);
	return routes_resolve(c, err);
}

int
proxy_conf_load(struct proxy_conf *c, const char *path,
    struct mtls_error *err)
{
	uint8_t *buf;
	size_t len;
	int rv;

	if (fs_read(path, PROXY_CONF_MAX, &buf, &len, err) != 0)
		return -1;
	rv = proxy_conf_parse(c, (const char *)buf, len, path, err);
	free(buf);
	return rv;
}

int
ca_is_url(const char *path)
{
	return strncmp(path, "https://", 8) == 0;
}

/* Each bundle_root (TD:PATH) pins the root that TD's bundle endpoint is
 * verified by; an endpoint without one is verified by the Web PKI. */
static int
ca_roots(struct proxy_listener *l, struct mtls_error *err)
{
	size_t i, j, tl;
	const char *r;

	for (j = 0; j < l->n_bundle_roots; j++) {
		r = l->bundle_roots[j];
		tl = strcspn(r, ":");
		for (i = 0; i < l->n_ca; i++)
			if (ca_is_url(l->ca_path[i]) && r[tl] == ':' &&
			    r[tl + 1] != '\0' && strlen(l->ca_td[i]) == tl &&
			    strncmp(l->ca_td[i], r, tl) == 0)
				break;
		if (i == l->n_ca)
			return error_set(err, MTLS_ERR_ARG, "listener %s: "
			    "bundle_root '%.200s': write TD:PATH for a trust "
			    "domain whose ca entry is TD:https://...", l->name,
			    r);
		l->ca_root[i] = (char *)r + tl + 1;
	}
	for (i = 0; i < l->n_ca; i++)
		if (ca_is_url(l->ca_path[i]) && l->ca_root[i] == NULL)
			l->ca_root[i] = PROXY_WEBPKI_ROOTS;
	return 0;
}

/*
 * A listener's ca value: one bundle file (as before), or entries "PATH"
 * (our own bundle, at most one) and "TD:PATH" (the bundle, PEM or SPIFFE
 * JSON, of federated trust domain TD), comma-separated. An entry is
 * TD:PATH when the text before its first ':' is a trust domain name (so
 * "./a:b.pem" and "/etc/a:b.pem" are paths); a value naming an existing
 * file is that file, whatever its name holds.
 */
static int
ca_spec(struct proxy_conf *cs, struct proxy_listener *l,
    struct mtls_error *err)
{
	char *spec = l->ca, *copy, *p, *e, *colon, *own = NULL, why[160];
	size_t n = 0;

	if (spec == NULL || (strchr(spec, ',') == NULL &&
	    strchr(spec, ':') == NULL) || access(spec, F_OK) == 0)
		return 0;
	if ((copy = keep(cs, spec)) == NULL)
		return oom(err);
	for (p = copy; p != NULL; p = e) {
		if ((e = strchr(p, ',')) != NULL)
			*e++ = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		colon = p + strlen(p);
		while (colon > p && (colon[-1] == ' ' || colon[-1] == '\t'))
			*--colon = '\0';
		if (*p == '\0')
			return error_set(err, MTLS_ERR_ARG, "listener %s: ca "
			    "'%.200s': an empty entry; write ca = BUNDLE, "
			    "TD:BUNDLE, ...", l->name, spec);
		if (n == PROXY_MAX_CA)
			return error_set(err, MTLS_ERR_ARG, "listener %s: ca "
			    "'%.200s': more than %d bundles", l->name, spec,
			    PROXY_MAX_CA);
		colon = strchr(p, ':');
		if (colon != NULL) {
			*colon = '\0';
			if (trust_domain_check(p, why, sizeof(why)) != 0 ||
			    colon[1] == '\0')
				*colon = ':';	/* a path with a ':' */
		}
		if (colon != NULL && *colon == '\0') {
			l->ca_td[n] = p;
			l->ca_path[n] = colon + 1;
			if (strncmp(colon + 1, "http:", 5) == 0)
				return error_set(err, MTLS_ERR_ARG, "listener "
				    "%s: ca: %s's bundle endpoint must be "
				    "https://", l->name, p);
		} else {
			if (own != NULL)
				return error_set(err, MTLS_ERR_ARG, "listener "
				    "%s: ca: two bundles of our own (%.200s, "
				    "%.200s); give each other one as TD:PATH, "
				    "or a trust domain name that is valid "
				    "(a-z 0-9 . - _)", l->name, own, p);
			l->ca_td[n] = "";
			l->ca_path[n] = own = p;
		}
		n++;
	}
	l->ca_spec = spec;
	l->n_ca = n;
	for (n = 0; own == NULL && n < l->n_ca; n++)
		if (!ca_is_url(l->ca_path[n]))
			own = l->ca_path[n];
	if (own == NULL)
		return error_set(err, MTLS_ERR_ARG, "listener %s: ca '%.200s': "
		    "give at least one bundle file (ours, or a partner's), "
		    "not only endpoints", l->name, spec);
	l->ca = own;
	return ca_roots(l, err);
}

int
proxy_conf_finish(struct proxy_conf *c, struct mtls_error *err)
{
	struct proxy_opts *o = &c->o;
	struct proxy_listener *l = &o->l[0];
	struct agent_opts *ag = &c->ag;
	size_t i;

	if (c->path == NULL) {
		/* flags: one listener, named after its mode */
		o->n_l = 1;
		snprintf(l->name, sizeof(l->name), "%s", l->http ? "http" :
		    l->outbound ? "outbound" : "inbound");
		if (l->http && l->n_routes == 0) {
			/* --http: one route, / to --target, with the rules */
			struct proxy_route *r = &c->flag_route;

			memset(r, 0, sizeof(*r));
			snprintf(r->name, sizeof(r->name), "default");
			r->upstream = l->target;
			r->allow = l->allow;
			r->n_allow = l->n_allow;
			r->allow_any = l->allow_any;
			l->routes[l->n_routes++] = r;
		}
	}
	http_defaults(o);
	for (i = 0; i < o->n_l; i++)
		if (ca_spec(c, &o->l[i], err) != 0)
			return -1;
	if (o->first_byte_timeout_ms < 1000)
		return error_set(err, MTLS_ERR_ARG, "--first-byte-timeout "
		    "(first_byte_timeout) must be at least 1s");
	if (l->min_tls && strcmp(l->min_tls, "1.2") && strcmp(l->min_tls, "1.3"))
		return error_set(err, MTLS_ERR_ARG, "--min-tls must be 1.2 or "
		    "1.3");
	if (!ag->ca_url && !ag->token_file && !ag->out_dir)
		return 0;
	/* the built-in agent: one process is a self-renewing sidecar;
	 * listeners without cert and key serve its files */
	/* a token key: --key pkcs11:... without --cert (in a file, [agent]
	 * key =) is the agent's key, renewed in its token (agent/tokenkey.c),
	 * and the listeners' key, the one svid.pem certifies (key_load_cert) */
	if (c->path == NULL && l->key != NULL && l->cert == NULL &&
	    keystore_is_uri(l->key) && ag->key == NULL) {
		ag->key = l->key;
		l->key = NULL;
	}
	if (!ag->ca_url || !ag->out_dir ||
	    strncmp(ag->ca_url, "https://", 8) != 0 ||
	    (c->path == NULL && (l->cert || l->key)))
		return error_set(err, MTLS_ERR_ARG, "the built-in agent takes "
		    "--ca-url https://... and --out-dir (plus --token-file to "
		    "enroll, and --key pkcs11:... for a key in a token), "
		    "instead of --cert and --key (in a config file: [agent] "
		    "ca_url, out_dir, token_file, key)");
	snprintf(c->svid, sizeof(c->svid), "%s/svid.pem", ag->out_dir);
	if (ag->key != NULL)
		snprintf(c->svid_key, sizeof(c->svid_key), "%s", ag->key);
	else
		snprintf(c->svid_key, sizeof(c->svid_key), "%s/svid.key",
		    ag->out_dir);
	snprintf(c->bundle, sizeof(c->bundle), "%s/bundle.pem", ag->out_dir);
	if (c->path == NULL && l->n_ca > 0)
		return error_set(err, MTLS_ERR_ARG, "the built-in agent's --ca "
		    "is its CA's bundle, one file: give federated trust domains "
		    "in a config file's listener (ca = %s/bundle.pem, TD:PATH)",
		    ag->out_dir);
	if (c->path == NULL && l->ca != NULL)
		ag->ca_bundle = l->ca;
	for (i = 0; i < o->n_l; i++) {
		if (o->l[i].cert == NULL && o->l[i].key == NULL) {
			o->l[i].cert = c->svid;
			o->l[i].key = c->svid_key;
		}
		if (o->l[i].ca == NULL)
			o->l[i].ca = c->bundle;
	}
	c->agent = 1;
	return 0;
}

void
proxy_conf_free(struct proxy_conf *c)
{
	size_t i;

	strv_free(c->o.admin_allow, c->o.n_admin_allow);
	strv_free(c->o.admin_crls, c->o.n_admin_crls);
	for (i = 0; i < PROXY_MAX_LISTENERS; i++) {
		strv_free(c->o.l[i].allow, c->o.l[i].n_allow);
		strv_free(c->o.l[i].expect, c->o.l[i].n_expect);
		strv_free(c->o.l[i].crls, c->o.l[i].n_crls);
		strv_free(c->o.l[i].bundle_roots, c->o.l[i].n_bundle_roots);
	}
	for (i = 0; i < c->n_routes; i++) {
		strv_free(c->routes[i]->allow, c->routes[i]->n_allow);
		strv_free(c->routes[i]->up_expect, c->routes[i]->n_up_expect);
		free(c->routes[i]);
	}
	strv_free(c->keep, c->n_keep);
	memset(c, 0, sizeof(*c));
}
