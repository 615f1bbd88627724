/*
 * ca.conf: the trust domain, the URLs put into certificates, and the
 * roles that limit what may be issued (like a Vault PKI role). Unknown
 * keys and sections are errors, so a typo does not pass silently.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_local.h"

int
ca_td_check(const char *td, struct mtls_error *err)
{
	char id[400], got[300];

	if (td == NULL || *td == '\0')
		return error_set(err, MTLS_ERR_ARG, "--trust-domain is required "
		    "(e.g. example.org)");
	if (strlen(td) > 250)
		return error_set(err, MTLS_ERR_ARG, "trust domain too long");
	snprintf(id, sizeof(id), "spiffe://%s", td);
	if (spiffe_trust_domain(id, got, sizeof(got)) != 0 ||
	    strcmp(got, td) != 0)
		return error_set(err, MTLS_ERR_ARG, "trust domain '%s' is "
		    "invalid: lowercase letters, digits, '.', '-', '_' only",
		    td);
	return 0;
}

struct conf_state {
	struct ca	*ca;
	const char	*path;
};

static int
parse_rules(struct ca_role *role, const char *val, const char *path,
    int line, struct mtls_error *err)
{
	char buf[4096], *tok, *save = NULL, why[200];

	snprintf(buf, sizeof(buf), "%s", val);
	for (tok = strtok_r(buf, " \t,", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t,", &save)) {
		if (strcmp(tok, "dns:*") != 0 && strcmp(tok, "ip:*") != 0 &&
		    mtls_rule_check(tok, why, sizeof(why)) != 0)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: allow "
			    "rule '%.100s': %s", path, line, tok, why);
		if (role->n_allow == CA_RULES_MAX)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: more "
			    "than %d rules", path, line, CA_RULES_MAX);
		if ((role->allow[role->n_allow] = strdup(tok)) == NULL)
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		role->n_allow++;
	}
	return 0;
}

static int
conf_cb_ca(void *arg, const char *section, const char *key, const char *val,
    int line, struct mtls_error *err)
{
	struct conf_state *cs = arg;
	struct ca *ca = cs->ca;
	struct ca_role *role;
	size_t i;

	if (strcmp(section, "ca") == 0) {
		if (strcmp(key, "trust_domain") == 0) {
			if (ca_td_check(val, err) != 0)
				return error_set(err, MTLS_ERR_PARSE,
				    "%s:%d: trust_domain '%.100s' is invalid",
				    cs->path, line, val);
			snprintf(ca->trust_domain, sizeof(ca->trust_domain),
			    "%s", val);
		} else if (strcmp(key, "scope_oid") == 0) {
			if (profile_scope_oid_check(val) != 0)
				return error_set(err, MTLS_ERR_PARSE, "%s:%d: "
				    "scope_oid '%.64s' is not a dotted OID whose "
				    "arcs all fit in 31 bits (Go and GnuTLS refuse "
				    "others); use an arc of your own PEN, like "
				    "1.3.6.1.4.1.PEN.1.1", cs->path, line, val);
			snprintf(ca->scope_oid, sizeof(ca->scope_oid), "%s",
			    val);
		} else if (strcmp(key, "crl_url") == 0) {
			free(ca->crl_url);
			ca->crl_url = strdup(val);
		} else if (strcmp(key, "ocsp_url") == 0) {
			free(ca->ocsp_url);
			ca->ocsp_url = strdup(val);
		} else if (strncmp(key, "store", 5) == 0) {
			/* store, store_*: read (and checked) by store_open_ca */
		} else
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown "
			    "key '%s' in [ca]", cs->path, line, key);
		return 0;
	}
	if (strncmp(section, "role ", 5) != 0)
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown section "
		    "[%s]", cs->path, line, section);
	for (i = 0; i < ca->n_roles; i++)
		if (strcmp(ca->roles[i].name, section + 5) == 0)
			break;
	if (i == ca->n_roles) {
		if (ca->n_roles == CA_ROLES_MAX)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: too many "
			    "roles", cs->path, line);
		role = &ca->roles[ca->n_roles++];
		snprintf(role->name, sizeof(role->name), "%s", section + 5);
		role->default_ttl = LEAF_TTL;
		role->max_ttl = LEAF_MAX_TTL;
		role->key_types = (1u << KEY__COUNT) - 1;
	}
	role = &ca->roles[i];
	if (strcmp(key, "allow") == 0)
		return parse_rules(role, val, cs->path, line, err);
	if (strcmp(key, "default_ttl") == 0 || strcmp(key, "max_ttl") == 0) {
		int64_t d;

		if (mtls_duration_parse(val, &d) != 0 || d > MTLS_MAX_TTL)
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s '%.64s' "
			    "is not a duration from 1s to %lldd (like 24h, 30d)",
			    cs->path, line, key, val,
			    (long long)(MTLS_MAX_TTL / 86400));
		*(key[0] == 'd' ? &role->default_ttl : &role->max_ttl) = d;
		return 0;
	}
	if (strcmp(key, "key_types") == 0) {
		char buf[512], *tok, *save = NULL;
		int t;

		role->key_types = 0;
		snprintf(buf, sizeof(buf), "%s", val);
		for (tok = strtok_r(buf, " \t,", &save); tok;
		    tok = strtok_r(NULL, " \t,", &save)) {
			if ((t = key_type_parse(tok)) < 0)
				return error_set(err, MTLS_ERR_PARSE,
				    "%s:%d: unknown key type '%.32s'", cs->path,
				    line, tok);
			role->key_types |= 1u << t;
		}
		return 0;
	}
	return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown key '%s' in "
	    "[role \"%s\"]", cs->path, line, key, role->name);
}

int
roles_load(struct ca *ca, struct mtls_error *err)
{
	struct conf_state cs;
	char p[PATH_MAX];
	uint8_t *buf;
	size_t len, i;
	int rv;

	ca_path(p, sizeof(p), ca->dir, "ca.conf");
	if (fs_read(p, 1 << 20, &buf, &len, err) != 0)
		return -1;
	cs.ca = ca;
	cs.path = p;
	rv = conf_parse((const char *)buf, len, p, conf_cb_ca, &cs, err);
	free(buf);
	if (rv != 0)
		return -1;
	if (ca->trust_domain[0] == '\0')
		return error_set(err, MTLS_ERR_PARSE, "%s: no trust_domain in "
		    "[ca]", p);
	for (i = 0; i < ca->n_roles; i++)
		if (ca->roles[i].default_ttl > ca->roles[i].max_ttl)
			return error_set(err, MTLS_ERR_PARSE, "%s: role %s: "
			    "default_ttl exceeds max_ttl", p,
			    ca->roles[i].name);
	return 0;
}

const struct ca_role *
role_find(const struct ca *ca, const char *name)
{
	size_t i;

	for (i = 0; i < ca->n_roles; i++)
		if (strcmp(ca->roles[i].name, name) == 0)
			return &ca->roles[i];
	return NULL;
}

int
role_allows(const struct ca_role *role, const char *id)
{
	return rules_match(role->allow, role->n_allow, &id, 1, RULE_ROLE) >= 0;
}

/* A role's key_types apply to a CSR's key as to one we generate. */
int
role_allows_key(const struct ca_role *role, EVP_PKEY *key,
    struct mtls_error *err)
{
	int kt = key_type_of(key);
	char kd[64];
	int bits;

	if (kt >= 0 && (role->key_types & (1u << kt)))
		return 0;
	key_describe(key, kd, sizeof(kd), &bits);
	return error_set(err, MTLS_ERR_ARG, "key type %s is not allowed by "
	    "role '%s' (key_types in ca.conf; we issue for ec-p256, ec-p384, "
	    "ed25519, rsa-2048, rsa-3072)", kt >= 0 ? key_type_name(kt) : kd,
	    role->name);
}

const char *
ca_role_for(struct ca *ca, const struct ids *ids)
{
	size_t k, i;

	for (k = 0; k < ca->n_roles; k++) {
		for (i = 0; i < ids->n; i++)
			if (!role_allows(&ca->roles[k], ids->v[i]))
				break;
		if (i == ids->n && ids->n > 0)
			return ca->roles[k].name;
	}
	return NULL;
}

void
roles_free(struct ca *ca)
{
	size_t i, j;

	for (i = 0; i < ca->n_roles; i++)
		for (j = 0; j < ca->roles[i].n_allow; j++)
			free(ca->roles[i].allow[j]);
	free(ca->crl_url);
	free(ca->ocsp_url);
}
