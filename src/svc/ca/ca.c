/*
 * CA directory operations behind `mtls ca`. A new CA directory is built in
 * a temporary folder beside it and renamed into place, so a failure leaves
 * nothing behind. A certificate is recorded in the issuer's inventory
 * before any file containing it is written.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca.h"

#define BACKDATE	300		/* notBefore 5 min back (clock skew) */
#define ROOT_TTL	(3650LL * 86400)
#define INT_TTL		(365LL * 86400)
#define LEAF_TTL	(24LL * 3600)
#define LEAF_MAX_TTL	(90LL * 86400)

static const char conf_template[] =
    "# mtls CA configuration (mtls ca init). Lines starting with # are\n"
    "# comments; unknown keys are errors, so typos do not pass silently.\n"
    "[ca]\n"
    "trust_domain = %s\n"
    "%s"
    "# URLs put into the certificates this CA issues:\n"
    "# crl_url = http://ca.%s/v1/crl\n"
    "# ocsp_url = http://ca.%s/v1/ocsp\n"
    "\n"
    "# A role limits what may be issued, like a Vault PKI role:\n"
    "# mtls ca issue --role NAME (\"default\" when --role is not given).\n"
    "# allow: identity rules (spiffe://TD/PREFIX/*, dns:NAME, dns:*.SUFFIX,\n"
    "# ip:ADDR; dns:* and ip:* allow any name or address).\n"
    "[role \"default\"]\n"
    "allow = %s\n"
    "default_ttl = 24h\n"
    "max_ttl = 90d\n"
    "key_types = ec-p256 ec-p384 ed25519 rsa-2048 rsa-3072\n";

/* The end of a validity starting <now>: <now> + <ttl> (0: <dflt>), with
 * <ttl> from 1 s to MTLS_MAX_TTL, so the sum never overflows whatever a
 * caller passes (issue 18). 0, or -1 with <err> naming <what>. */
static int
until(int64_t now, int64_t ttl, int64_t dflt, const char *what, int64_t *out,
    struct mtls_error *err)
{
	if (ttl == 0)
		ttl = dflt;
	if (ttl < 1 || ttl > MTLS_MAX_TTL)
		return error_set(err, MTLS_ERR_ARG, "%s of %lld s is out of "
		    "range (1 s to %lldd)", what, (long long)ttl,
		    (long long)(MTLS_MAX_TTL / 86400));
	*out = now + ttl;
	return 0;
}

/* ---- the signer: the only code that uses ca->key ---- */

static int
ca_sign(struct ca *ca, struct profile_req *r, X509 **out,
    struct mtls_error *err)
{
	r->issuer = ca->cert;
	r->issuer_key = ca->key;
	return profile_build(r, out, err);
}

/* ---- helpers ---- */

static void
join(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int
write_certs(const char *path, STACK_OF(X509) *sk, int overwrite,
    struct mtls_error *err)
{
	char *pem;
	size_t len;
	int rv;

	if (certs_pem(sk, &pem, &len) != 0)
		return error_set(err, MTLS_ERR_NOMEM, "%s: cannot encode", path);
	rv = fs_write_atomic(path, pem, len, 0644, overwrite, err);
	free(pem);
	return rv;
}

static int
write_cert1(const char *path, X509 *x, struct mtls_error *err)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	int rv;

	if (sk == NULL || !sk_X509_push(sk, x)) {
		sk_X509_free(sk);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	rv = write_certs(path, sk, 0, err);
	sk_X509_free(sk);
	return rv;
}

/* Removes the files we may have created in a temporary CA folder. */
static void
rm_tmpdir(const char *dir)
{
	static const char *names[] = { "ca.pem", "ca.key", "bundle.pem",
	    "ca.conf", "inventory.db", "inventory.db-wal", "inventory.db-shm",
	    "inventory.db-journal" };
	char p[PATH_MAX];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		join(p, sizeof(p), dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* DIR must not exist, or be an empty folder; its parent must exist. */
static int
check_new_dir(const char *dir, struct mtls_error *err)
{
	struct stat st;
	DIR *d;
	struct dirent *e;

	if (strlen(dir) > PATH_MAX - 64)
		return error_set(err, MTLS_ERR_ARG, "%s: path too long", dir);
	if (stat(dir, &st) == -1) {
		if (errno == ENOENT)
			return 0;
		return error_set_errno(err, MTLS_ERR_IO, "%s", dir);
	}
	if (!S_ISDIR(st.st_mode))
		return error_set(err, MTLS_ERR_IO, "%s: exists and is not a "
		    "folder", dir);
	if ((d = opendir(dir)) == NULL)
		return error_set_errno(err, MTLS_ERR_IO, "%s", dir);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			closedir(d);
			return error_set(err, MTLS_ERR_IO, "%s: exists and is "
			    "not empty; a CA directory is never overwritten",
			    dir);
		}
	closedir(d);
	return 0;
}

static int
make_tmpdir(const char *dir, char *tmp, size_t len, struct mtls_error *err)
{
	snprintf(tmp, len, "%s.tmp-XXXXXX", dir);
	if (mkdtemp(tmp) == NULL)
		return error_set_errno(err, MTLS_ERR_IO,
		    "%s: cannot create a folder beside it", dir);
	chmod(tmp, 0700);
	return 0;
}

static int
commit_dir(const char *tmp, const char *dir, struct mtls_error *err)
{
	char parent[PATH_MAX], *slash;

	rmdir(dir);	/* allowed to exist only when empty */
	if (rename(tmp, dir) == -1)
		return error_set_errno(err, MTLS_ERR_IO,
		    "%s: cannot move the new CA into place", dir);
	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == parent)
		parent[1] = '\0';
	else
		*slash = '\0';
	return fs_fsync_dir(parent, err);
}

static int
load_pass(struct mtls_secret *pass, const char *file, struct mtls_error *err)
{
	if (file == NULL)
		return 0;
	return secret_load_pass(pass, file, err);
}

static int
td_valid(const char *td, struct mtls_error *err)
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

/* Everything of a CA directory but the CA itself: store, conf. */
static int
write_dir_common(const char *tmp, X509 *cert, STACK_OF(X509) *chain,
    STACK_OF(X509) *bundle, EVP_PKEY *key, const struct mtls_secret *pass,
    const char *conf, struct mtls_error *err)
{
	char p[PATH_MAX];

	join(p, sizeof(p), tmp, "ca.key");
	if (key_write(p, key, pass, 0, err) != 0)
		return -1;
	join(p, sizeof(p), tmp, "ca.pem");
	if (chain != NULL ? write_certs(p, chain, 0, err) :
	    write_cert1(p, cert, err))
		return -1;
	join(p, sizeof(p), tmp, "bundle.pem");
	if (write_certs(p, bundle, 0, err) != 0)
		return -1;
	join(p, sizeof(p), tmp, "ca.conf");
	return fs_write_atomic(p, conf, strlen(conf), 0644, 0, err);
}

int
ca_init(const struct ca_init_req *r, struct ca_result *res,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct profile_req pr;
	struct store *st = NULL;
	STACK_OF(X509) *bundle = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char tmp[PATH_MAX], p[PATH_MAX], cn[300], conf[4096], allow[400];
	int64_t now = (int64_t)time(NULL);
	int rv = -1, made = 0, r2;

	memset(res, 0, sizeof(*res));
	if (td_valid(r->trust_domain, err) != 0 ||
	    check_new_dir(r->dir, err) != 0 ||
	    load_pass(&pass, r->pass_file, err) != 0)
		goto out;
	if (key_generate(r->key_type, &key, err) != 0)
		goto out;
	snprintf(cn, sizeof(cn), "%s", r->name ? r->name : "");
	if (r->name == NULL)
		snprintf(cn, sizeof(cn), "%s Root CA", r->trust_domain);
	memset(&pr, 0, sizeof(pr));
	pr.kind = PROFILE_ROOT;
	pr.cn = cn;
	pr.org = r->trust_domain;
	pr.not_before = now - BACKDATE;
	if (until(now, r->ttl, ROOT_TTL, "--ttl", &pr.not_after, err) != 0)
		goto out;
	pr.pubkey = key;
	pr.issuer_key = key;
	if (profile_build(&pr, &cert, err) != 0)
		goto out;
	if (make_tmpdir(r->dir, tmp, sizeof(tmp), err) != 0)
		goto out;
	made = 1;
	join(p, sizeof(p), tmp, "inventory.db");
	if (store_open(&st, p, 1, err) != 0)
		goto out;
	if ((r2 = store_add(st, cert, "root", err)) != 0) {
		if (r2 == 1)
			error_set(err, MTLS_ERR_IO, "serial collision");
		goto out;
	}
	if ((bundle = sk_X509_new_null()) == NULL || !sk_X509_push(bundle, cert)) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(allow, sizeof(allow), "spiffe://%s/* dns:* ip:*",
	    r->trust_domain);
	snprintf(conf, sizeof(conf), conf_template, r->trust_domain,
	    "# OID of the SPIFFE scope extension on intermediates; set it to an\n"
	    "# arc under your own Private Enterprise Number (then also set\n"
	    "# MTLS_SCOPE_OID for verifiers), e.g. 1.3.6.1.4.1.PEN.1.1:\n"
	    "# scope_oid = 1.3.6.1.4.1.32473.6857.1\n",
	    r->trust_domain, r->trust_domain, allow);
	if (write_dir_common(tmp, cert, NULL, bundle, key, &pass, conf,
	    err) != 0)
		goto out;
	store_close(st);
	st = NULL;
	if (commit_dir(tmp, r->dir, err) != 0)
		goto out;
	made = 0;
	serial_hex(X509_get0_serialNumber(cert), res->serial,
	    sizeof(res->serial));
	res->not_after = pr.not_after;
	rv = 0;
 out:
	store_close(st);
	if (made)
		rm_tmpdir(tmp);
	sk_X509_free(bundle);
	X509_free(cert);
	EVP_PKEY_free(key);
	secret_clear(&pass);
	return rv;
}

/* ---- ca.conf ---- */

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
			if (td_valid(val, err) != 0)
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
			/* store, store_*: read by store_open_ca() */
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

static int
load_conf(struct ca *ca, struct mtls_error *err)
{
	struct conf_state cs;
	char p[PATH_MAX];
	uint8_t *buf;
	size_t len, i;
	int rv;

	join(p, sizeof(p), ca->dir, "ca.conf");
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

void
ca_close(struct ca *ca)
{
	size_t i, j;

	if (ca == NULL)
		return;
	X509_free(ca->cert);
	sk_X509_pop_free(ca->chain, X509_free);
	sk_X509_pop_free(ca->bundle, X509_free);
	EVP_PKEY_free(ca->key);
	store_close(ca->store);
	free(ca->crl_url);
	free(ca->ocsp_url);
	for (i = 0; i < ca->n_roles; i++)
		for (j = 0; j < ca->roles[i].n_allow; j++)
			free(ca->roles[i].allow[j]);
	free(ca);
}

/*
 * A CA directory decides what is issued (ca.conf's roles), whom ca serve
 * trusts (bundle.pem), what was issued and revoked (inventory.db) and
 * signs with ca.key: another user who can write any of them, or the
 * folder, could rewrite the roles or swap the key. So each must belong to
 * this user and be writable by nobody else (the rule of agent's
 * --out-dir); ca init and ca intermediate make the folder 0700. The folder
 * is checked first: once it is ours alone, nobody else can replace a file
 * in it between this check and its read. A file that does not exist is
 * left to its loader to report.
 */
static int
check_ca_dir(const char *dir, int want_key, struct mtls_error *err)
{
	static const char *names[] = { "ca.pem", "bundle.pem", "ca.conf",
	    "inventory.db", "inventory.db-wal", "inventory.db-shm", "ca.key" };
	static const char hint[] = " (whoever can write a CA directory "
	    "decides what it issues)";
	char p[PATH_MAX];
	size_t i, n = sizeof(names) / sizeof(names[0]);

	if (fs_check_private(dir, "", hint, err) != 0)
		return -1;
	for (i = 0; i < (want_key ? n : n - 1); i++) {
		join(p, sizeof(p), dir, names[i]);
		if (fs_check_private(p, "", hint, err) != 0) {
			if (err->sys != ENOENT)
				return -1;
			error_clear(err);
		}
	}
	return 0;
}

static int
open_common(struct ca **out, const char *dir, const char *pass_file,
    int want_key, struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct ca *ca;
	struct stat st;
	char p[PATH_MAX];
	int rv = -1;

	*out = NULL;
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode))
		return error_set(err, MTLS_ERR_IO, "%s: not a CA directory "
		    "(create one with mtls ca init)", dir);
	if (check_ca_dir(dir, want_key, err) != 0)
		return -1;
	if ((ca = calloc(1, sizeof(*ca))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	snprintf(ca->dir, sizeof(ca->dir), "%s", dir);
	join(p, sizeof(p), dir, "ca.pem");
	if (access(p, F_OK) != 0) {
		error_set(err, MTLS_ERR_IO, "%s: not a CA directory (no "
		    "ca.pem; create one with mtls ca init)", dir);
		goto out;
	}
	if (certs_load(p, &ca->chain, err) != 0)
		goto out;
	ca->cert = sk_X509_value(ca->chain, 0);
	X509_up_ref(ca->cert);
	if (!(X509_get_extension_flags(ca->cert) & EXFLAG_CA)) {
		error_set(err, MTLS_ERR_PARSE, "%s: first certificate is not a "
		    "CA", p);
		goto out;
	}
	join(p, sizeof(p), dir, "bundle.pem");
	if (certs_load(p, &ca->bundle, err) != 0)
		goto out;
	if (load_conf(ca, err) != 0)
		goto out;
	if (store_open_ca(&ca->store, dir, err) != 0)	/* ca.conf store */
		goto out;
	if (want_key) {
		if (load_pass(&pass, pass_file, err) != 0)
			goto out;
		join(p, sizeof(p), dir, "ca.key");
		if (key_load(p, &pass, &ca->key, err) != 0)
			goto out;
		if (X509_check_private_key(ca->cert, ca->key) != 1) {
			error_set(err, MTLS_ERR_PARSE, "%s: does not match "
			    "ca.pem", p);
			goto out;
		}
	}
	*out = ca;
	ca = NULL;
	rv = 0;
 out:
	secret_clear(&pass);
	ca_close(ca);
	return rv;
}

int
ca_open(struct ca **out, const char *dir, const char *pass_file,
    struct mtls_error *err)
{
	return open_common(out, dir, pass_file, 1, err);
}

int
ca_open_readonly(struct ca **out, const char *dir, struct mtls_error *err)
{
	return open_common(out, dir, NULL, 0, err);
}

/* Signs with retries on a serial collision, recording before returning. */
static int
sign_and_record(struct ca *ca, struct profile_req *pr, const char *kind,
    X509 **out, struct mtls_error *err)
{
	int tries, r;

	for (tries = 0; tries < 5; tries++) {
		if (ca_sign(ca, pr, out, err) != 0)
			return -1;
		r = store_add(ca->store, *out, kind, err);
		if (r == 0)
			return 0;
		X509_free(*out);
		*out = NULL;
		if (r < 0)
			return -1;
	}
	return error_set(err, MTLS_ERR_IO, "could not find an unused serial");
}

/* A lifetime ending after the issuer's is clamped, with a warning. */
static int64_t
clamp(struct ca *ca, int64_t not_after, struct ca_result *res)
{
	int64_t limit = asn1_time_unix(X509_get0_notAfter(ca->cert));

	if (not_after > limit) {
		snprintf(res->warning, sizeof(res->warning), "lifetime "
		    "clamped to the issuing CA's notAfter; the certificate "
		    "expires when the CA does");
		return limit;
	}
	return not_after;
}

int
ca_intermediate(const struct ca_int_req *r, struct ca_result *res,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct profile_req pr;
	struct ca *parent = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char tmp[PATH_MAX], p[PATH_MAX], conf[8192], allow[4096], td[256];
	char scope_line[100];
	int64_t now = (int64_t)time(NULL);
	size_t i, off = 0;
	int rv = -1, made = 0, j;

	memset(res, 0, sizeof(*res));
	if (r->name == NULL || *r->name == '\0')
		return error_set(err, MTLS_ERR_ARG, "--name is required");
	if (check_new_dir(r->dir, err) != 0 ||
	    ca_open(&parent, r->parent_dir, r->parent_pass_file, err) != 0 ||
	    load_pass(&pass, r->pass_file, err) != 0)
		goto out;
	allow[0] = '\0';
	for (i = 0; i < r->n_permit_spiffe; i++) {
		const char *s = r->permit_spiffe[i];
		size_t l = strlen(s);
		char why[200];

		if (l == 0 || s[l - 1] != '/' || l > 2000) {
			error_set(err, MTLS_ERR_ARG, "--permit-spiffe '%.100s' "
			    "must end in '/' (spiffe://%s/ns/prod/)", s,
			    parent->trust_domain);
			goto out;
		}
		snprintf(p, sizeof(p), "%.*s", (int)(l - 1), s);
		if ((l > 9 && strncmp(s, "spiffe://", 9) == 0 &&
		    strchr(s + 9, '/') == s + l - 1) ?
		    spiffe_trust_domain(p, td, sizeof(td)) :
		    mtls_spiffe_id_check(p, why, sizeof(why))) {
			error_set(err, MTLS_ERR_ARG, "--permit-spiffe '%.100s' "
			    "is not a SPIFFE ID prefix", s);
			goto out;
		}
		if (spiffe_trust_domain(p, td, sizeof(td)) != 0 ||
		    strcmp(td, parent->trust_domain) != 0) {
			error_set(err, MTLS_ERR_ARG, "--permit-spiffe '%.100s' "
			    "is outside the parent's trust domain %s", s,
			    parent->trust_domain);
			goto out;
		}
		off += (size_t)snprintf(allow + off, sizeof(allow) - off,
		    "%s%s*", off ? " " : "", s);
	}
	for (i = 0; i < r->n_permit_dns; i++) {
		if (dns_name_check(r->permit_dns[i], 0) != 0) {
			error_set(err, MTLS_ERR_ARG, "--permit-dns '%.100s' is "
			    "not a DNS name", r->permit_dns[i]);
			goto out;
		}
		off += (size_t)snprintf(allow + off, sizeof(allow) - off,
		    "%sdns:%s dns:*.%s", off ? " " : "", r->permit_dns[i],
		    r->permit_dns[i]);
	}
	if (r->n_permit_spiffe == 0) {
		off += (size_t)snprintf(allow + off, sizeof(allow) - off,
		    "%sspiffe://%s/*", off ? " " : "", parent->trust_domain);
	}
	if (r->n_permit_dns == 0)
		snprintf(allow + off, sizeof(allow) - off, " %s",
		    r->n_permit_spiffe ? "" : "dns:* ip:*");
	if (off >= sizeof(allow) - 16) {
		error_set(err, MTLS_ERR_ARG, "too many --permit rules");
		goto out;
	}
	if (key_generate(r->key_type, &key, err) != 0)
		goto out;
	memset(&pr, 0, sizeof(pr));
	pr.kind = PROFILE_INTERMEDIATE;
	pr.cn = r->name;
	pr.org = parent->trust_domain;
	pr.not_before = now - BACKDATE;
	if (until(now, r->ttl, INT_TTL, "--ttl", &pr.not_after, err) != 0)
		goto out;
	pr.not_after = clamp(parent, pr.not_after, res);
	pr.pubkey = key;
	if (r->n_permit_spiffe || r->n_permit_dns)
		pr.permit_td = parent->trust_domain;
	pr.permit_spiffe = r->permit_spiffe;
	pr.n_permit_spiffe = r->n_permit_spiffe;
	pr.permit_dns = r->permit_dns;
	pr.n_permit_dns = r->n_permit_dns;
	pr.scope_oid = parent->scope_oid[0] ? parent->scope_oid : NULL;
	pr.crl_url = parent->crl_url;
	pr.ocsp_url = parent->ocsp_url;
	/* chain = new CA + the parent's chain short of the root */
	if ((chain = sk_X509_new_null()) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (make_tmpdir(r->dir, tmp, sizeof(tmp), err) != 0)
		goto out;
	made = 1;
	if (sign_and_record(parent, &pr, "intermediate", &cert, err) != 0)
		goto out;
	if (!sk_X509_push(chain, cert)) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	X509_up_ref(cert);
	for (j = 0; j < sk_X509_num(parent->chain); j++) {
		X509 *x = sk_X509_value(parent->chain, j);

		if (cert_is_self_signed(x))
			continue;
		if (!sk_X509_push(chain, x)) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
		X509_up_ref(x);
	}
	snprintf(scope_line, sizeof(scope_line), "%s%s%s",
	    parent->scope_oid[0] ? "scope_oid = " : "", parent->scope_oid,
	    parent->scope_oid[0] ? "\n" : "");
	snprintf(conf, sizeof(conf), conf_template, parent->trust_domain,
	    scope_line,
	    parent->trust_domain, parent->trust_domain, allow);
	join(p, sizeof(p), tmp, "inventory.db");
	{
		struct store *st;

		if (store_open(&st, p, 1, err) != 0)
			goto out;
		store_close(st);
	}
	if (write_dir_common(tmp, cert, chain, parent->bundle, key, &pass,
	    conf, err) != 0)
		goto out;
	if (commit_dir(tmp, r->dir, err) != 0)
		goto out;
	made = 0;
	serial_hex(X509_get0_serialNumber(cert), res->serial,
	    sizeof(res->serial));
	res->not_after = pr.not_after;
	rv = 0;
 out:
	if (made)
		rm_tmpdir(tmp);
	sk_X509_pop_free(chain, X509_free);
	X509_free(cert);
	EVP_PKEY_free(key);
	ca_close(parent);
	secret_clear(&pass);
	return rv;
}

/* ---- issue ---- */

static const struct ca_role *
find_role(const struct ca *ca, const char *name)
{
	size_t i;

	for (i = 0; i < ca->n_roles; i++)
		if (strcmp(ca->roles[i].name, name) == 0)
			return &ca->roles[i];
	return NULL;
}

static int
role_allows(const struct ca_role *role, const char *id)
{
	size_t i;

	for (i = 0; i < role->n_allow; i++) {
		if ((strcmp(role->allow[i], "dns:*") == 0 &&
		    strncmp(id, "dns:", 4) == 0) ||
		    (strcmp(role->allow[i], "ip:*") == 0 &&
		    strncmp(id, "ip:", 3) == 0))
			return 1;
		if (mtls_rule_match(role->allow[i], id))
			return 1;
	}
	return 0;
}

/* Loads and checks a CSR: signature, key strength, requested names. */
int
ca_csr_parse(const uint8_t *buf, size_t len, const char *path,
    const struct ids *want, EVP_PKEY **pub, struct mtls_error *err)
{
	BIO *bio = NULL;
	X509_REQ *req = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	X509 *tmp = NULL;
	struct ids got = { 0 };
	char kd[64];
	int bits, rv = -1, i;
	size_t a, b;

	if (len > (1 << 20) || (bio = BIO_new_mem_buf(buf, (int)len)) ==
	    NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	req = memmem(buf, len, "-----BEGIN", 10) ?
	    PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) :
	    d2i_X509_REQ_bio(bio, NULL);
	if (req == NULL) {
		error_set_ossl(err, MTLS_ERR_PARSE, "%s: not a CSR (PKCS#10, "
		    "PEM or DER)", path);
		goto out;
	}
	if (X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
		error_set_ossl(err, MTLS_ERR_PARSE, "%s: CSR signature does "
		    "not verify", path);
		goto out;
	}
	if (X509_REQ_get0_pubkey(req) == NULL) {
		error_set(err, MTLS_ERR_PARSE, "%s: CSR has no usable key",
		    path);
		goto out;
	}
	key_describe(X509_REQ_get0_pubkey(req), kd, sizeof(kd), &bits);
	i = EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(req));
	if (((i == EVP_PKEY_RSA || i == EVP_PKEY_RSA_PSS) && bits < 2048) ||
	    (i == EVP_PKEY_EC && bits < 256) || i == EVP_PKEY_DSA) {
		error_set(err, MTLS_ERR_ARG, "%s: CSR key %s is too weak (use "
		    "EC P-256, Ed25519 or RSA >= 2048)", path, kd);
		goto out;
	}
	/* Requested SANs, if any, must be exactly what we are issuing: the
	 * CA decides identities, a CSR may not add one. */
	exts = X509_REQ_get_extensions(req);
	if (exts != NULL) {
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
		if (gens != NULL) {
			if ((tmp = X509_new()) == NULL ||
			    !X509_add1_ext_i2d(tmp, NID_subject_alt_name, gens,
			    0, 0) || ids_from_cert(tmp, &got, err) != 0) {
				error_set(err, MTLS_ERR_PARSE, "%s: bad SAN in "
				    "CSR", path);
				goto out;
			}
			for (a = 0; a < got.n; a++) {
				for (b = 0; b < want->n; b++)
					if (strcmp(got.v[a], want->v[b]) == 0)
						break;
				if (b == want->n) {
					error_set(err, MTLS_ERR_ARG, "%s: CSR "
					    "asks for %.200s, which is not the "
					    "identity being issued", path,
					    got.v[a]);
					goto out;
				}
			}
		}
	}
	*pub = X509_REQ_get_pubkey(req);
	rv = 0;
 out:
	ids_free(&got);
	X509_free(tmp);
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	BIO_free(bio);
	return rv;
}

static int
load_csr(const char *path, const struct ids *want, EVP_PKEY **pub,
    struct mtls_error *err)
{
	uint8_t *buf = NULL;
	size_t len;
	int rv;

	if (fs_read(path, 1 << 20, &buf, &len, err) != 0)
		return -1;
	rv = ca_csr_parse(buf, len, path, want, pub, err);
	free(buf);
	return rv;
}

/* Our own verifier must accept what we issue: name constraints, SPIFFE
 * scope, pathlen and profiles are all checked by the same code peers use. */
static int
self_verify(struct ca *ca, X509 *leaf, struct mtls_error *err)
{
	struct mtls_config *cfg = mtls_config_new();
	STACK_OF(X509) *certs = NULL;
	X509_STORE *store = NULL;
	struct verify_out vo;
	int i, rv = -1;

	if (cfg == NULL || (certs = sk_X509_new_null()) == NULL)
		goto nomem;
	cfg->trust = ca->bundle;
	/* recognise our own scope OID without MTLS_SCOPE_OID */
	snprintf(cfg->scope_oid, sizeof(cfg->scope_oid), "%s", ca->scope_oid);
	if (!sk_X509_push(certs, leaf))
		goto nomem;
	for (i = 0; i < sk_X509_num(ca->chain); i++)
		if (!sk_X509_push(certs, sk_X509_value(ca->chain, i)))
			goto nomem;
	if ((store = verify_store_new(cfg, err)) == NULL)
		goto out;
	if (verify_chain(cfg, store, certs, MTLS_PURPOSE_ANY, &vo, err) != 0) {
		char msg[sizeof(err->msg)];
		int fail = err->fail;

		snprintf(msg, sizeof(msg), "%s", err->msg);
		error_set(err, MTLS_ERR_ARG, "refusing to issue: %s (%s)",
		    msg, mtls_fail_name(fail));
		err->fail = fail;	/* callers may explain the code */
		verify_out_free(&vo);
		goto out;
	}
	verify_out_free(&vo);
	rv = 0;
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	X509_STORE_free(store);
	sk_X509_free(certs);
	if (cfg != NULL)
		cfg->trust = NULL;	/* borrowed */
	mtls_config_free(cfg);
	return rv;
}

/* The request against its role: identities valid and allowed, TTL within
 * max_ttl. */
static int
check_request(struct ca *ca, const struct ca_issue_req *r,
    const struct ca_role **rolep, int64_t *ttlp, struct mtls_error *err)
{
	const struct ca_role *role;
	char why[200], dl[64], ml[64];
	int64_t ttl;
	size_t i;

	role = find_role(ca, r->role ? r->role : "default");
	if (role == NULL)
		return error_set(err, MTLS_ERR_ARG, "role '%s' is not in "
		    "%s/ca.conf", r->role ? r->role : "default", ca->dir);
	if (r->ids.n == 0)
		return error_set(err, MTLS_ERR_ARG, "give at least one "
		    "--spiffe-id, --dns or --ip");
	for (i = 0; i < r->ids.n; i++) {
		const char *id = r->ids.v[i];

		if (strncmp(id, "spiffe://", 9) == 0 &&
		    mtls_spiffe_id_check(id, why, sizeof(why)) != 0)
			return error_set(err, MTLS_ERR_ARG, "--spiffe-id "
			    "'%.200s' is invalid: %s", id, why);
		if (strncmp(id, "dns:", 4) == 0 && dns_name_check(id + 4, 1))
			return error_set(err, MTLS_ERR_ARG, "--dns '%.200s' is "
			    "not a DNS name", id + 4);
		if (!role_allows(role, id)) {
			char rules[160];
			size_t k, off = 0;

			rules[0] = '\0';
			for (k = 0; k < role->n_allow && off < sizeof(rules);
			    k++)
				off += (size_t)snprintf(rules + off,
				    sizeof(rules) - off, "%s%s", k ? " " : "",
				    role->allow[k]);
			return error_set(err, MTLS_ERR_ARG, "%.200s is not "
			    "allowed by role '%s' (allow = %s) in %s/ca.conf",
			    id, role->name, rules, ca->dir);
		}
	}
	ttl = r->ttl ? r->ttl : role->default_ttl;
	if (ttl > role->max_ttl) {
		human_duration(ttl, dl, sizeof(dl));
		human_duration(role->max_ttl, ml, sizeof(ml));
		return error_set(err, MTLS_ERR_ARG, "--ttl %s exceeds the "
		    "max_ttl %s of role '%s' (%s/ca.conf)", dl, ml, role->name,
		    ca->dir);
	}
	*rolep = role;
	*ttlp = ttl;
	return 0;
}

/* Signs a leaf for <key>'s public half, checks it with our own policy,
 * records it (burning <token_hash> in the same transaction). */
static int
issue_leaf(struct ca *ca, const struct ca_issue_req *r, int64_t ttl,
    EVP_PKEY *key, const char *token_hash, X509 **out,
    struct ca_result *res, struct mtls_error *err)
{
	struct profile_req pr;
	X509 *cert = NULL;
	int64_t now = (int64_t)time(NULL);
	size_t i;
	int tries, rc;

	*out = NULL;
	memset(&pr, 0, sizeof(pr));
	pr.kind = PROFILE_LEAF;
	pr.org = ca->trust_domain;
	/* CN: the first DNS name, else nothing; identities live in the SAN */
	for (i = 0; i < r->ids.n && pr.cn == NULL; i++)
		if (strncmp(r->ids.v[i], "dns:", 4) == 0 &&
		    strlen(r->ids.v[i]) <= 68)
			pr.cn = r->ids.v[i] + 4;
	pr.sans = &r->ids;
	pr.not_before = now - BACKDATE;
	if (until(now, ttl, 0, "lifetime", &pr.not_after, err) != 0)
		return -1;
	pr.not_after = clamp(ca, pr.not_after, res);
	pr.pubkey = key;
	pr.crl_url = r->crl_url ? r->crl_url : ca->crl_url;
	pr.ocsp_url = r->ocsp_url ? r->ocsp_url : ca->ocsp_url;
	pr.ca_server = r->ca_server;
	/* Checked against our own policy before it is recorded; a serial
	 * collision (random 128 bits: practically never) signs again, with
	 * the same policy outcome (only the serial differs). */
	if (ca_sign(ca, &pr, &cert, err) != 0 ||
	    self_verify(ca, cert, err) != 0) {
		X509_free(cert);
		return -1;
	}
	*out = cert;
	for (tries = 0; tries < 5; tries++) {
		if (*out == NULL && ca_sign(ca, &pr, out, err) != 0)
			return -1;
		rc = store_add_burn(ca->store, *out, "leaf", token_hash, err);
		if (rc == 0) {
			serial_hex(X509_get0_serialNumber(*out), res->serial,
			    sizeof(res->serial));
			res->not_after = pr.not_after;
			return 0;
		}
		X509_free(*out);
		*out = NULL;
		if (rc < 0)
			return -1;
	}
	return error_set(err, MTLS_ERR_IO, "could not find an unused serial");
}

/* A role's key_types apply to a CSR's key as to one we generate. */
static int
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

int
ca_issue_pub(struct ca *ca, const struct ca_issue_req *r, EVP_PKEY *pub,
    const char *token_hash, X509 **out, struct ca_result *res,
    struct mtls_error *err)
{
	const struct ca_role *role;
	int64_t ttl;

	memset(res, 0, sizeof(*res));
	*out = NULL;
	if (check_request(ca, r, &role, &ttl, err) != 0 ||
	    role_allows_key(role, pub, err) != 0)
		return -1;
	return issue_leaf(ca, r, ttl, pub, token_hash, out, res, err);
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

int
ca_issue_server(struct ca *ca, const struct ids *names, int64_t ttl,
    EVP_PKEY *pub, X509 **out, struct ca_result *res, struct mtls_error *err)
{
	struct ca_issue_req r;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	r.ids = *names;
	r.ca_server = 1;
	return issue_leaf(ca, &r, ttl, pub, NULL, out, res, err);
}

int
ca_issue(struct ca *ca, const struct ca_issue_req *r, struct ca_result *res,
    struct mtls_error *err)
{
	const struct ca_role *role;
	STACK_OF(X509) *out_chain = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char pem_path[PATH_MAX], key_path[PATH_MAX];
	int64_t ttl;
	int kt, rv = -1, j;

	memset(res, 0, sizeof(*res));
	if (check_request(ca, r, &role, &ttl, err) != 0)
		return -1;
	snprintf(pem_path, sizeof(pem_path), "%s.pem", r->out_prefix);
	snprintf(key_path, sizeof(key_path), "%s.key", r->out_prefix);
	if (fs_check_writable(pem_path, r->force, err) != 0 ||
	    (r->csr_file == NULL &&
	    fs_check_writable(key_path, r->force, err) != 0))
		return -1;
	if (r->csr_file != NULL) {
		if (load_csr(r->csr_file, &r->ids, &key, err) != 0 ||
		    role_allows_key(role, key, err) != 0)
			goto out;
	} else {
		kt = r->key_type;
		if (kt < 0)
			kt = KEY_EC_P256;
		if (!(role->key_types & (1u << kt))) {
			error_set(err, MTLS_ERR_ARG, "key type %s is not "
			    "allowed by role '%s'", key_type_name(kt),
			    role->name);
			goto out;
		}
		if (key_generate(kt, &key, err) != 0)
			goto out;
	}
	if (issue_leaf(ca, r, ttl, key, NULL, &cert, res, err) != 0)
		goto out;
	/* recorded: now the files */
	if (r->csr_file == NULL &&
	    key_write(key_path, key, NULL, r->force, err) != 0)
		goto out;
	if ((out_chain = sk_X509_new_null()) == NULL ||
	    !sk_X509_push(out_chain, cert)) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (j = 0; j < sk_X509_num(ca->chain); j++) {
		X509 *x = sk_X509_value(ca->chain, j);

		if (!cert_is_self_signed(x) && !sk_X509_push(out_chain, x)) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (write_certs(pem_path, out_chain, r->force, err) != 0)
		goto out;
	rv = 0;
 out:
	sk_X509_free(out_chain);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rv;
}

int
ca_revoke(struct ca *ca, const char *serial, int reason,
    struct ca_result *res, int *already, struct mtls_error *err)
{
	char canon[64];

	memset(res, 0, sizeof(*res));
	if (serial_canon(serial, canon, sizeof(canon)) != 0)
		return error_set(err, MTLS_ERR_ARG, "serial '%.64s' is not hex "
		    "(see mtls ca list)", serial);
	if (store_revoke(ca->store, canon, reason, (int64_t)time(NULL),
	    already, err) != 0)
		return -1;
	snprintf(res->serial, sizeof(res->serial), "%s", canon);
	return 0;
}

/*
 * Whether <x> is a certificate this CA issued, for ca serve's callers
 * (issue 18): a certificate chaining to the root proves nothing about who
 * issued it, and a serial is public (every CRL, every leaf), so a sibling
 * intermediate could sign any serial of ours with any name. Three checks,
 * each enough on its own against that forgery, all cheap: the issuer name
 * and key identifier are this CA's (X509_check_issued), this CA's key
 * verifies the signature, and the inventory row for the serial holds
 * exactly these DER bytes (store.c keeps what was signed since schema 1).
 */
int
ca_issued(struct ca *ca, X509 *x, struct cert_rec *rec, char *why,
    size_t why_len, struct mtls_error *err)
{
	EVP_PKEY *capub = X509_get0_pubkey(ca->cert);
	const char *no = NULL;
	char serial[48];
	int rc;

	memset(rec, 0, sizeof(*rec));
	serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial));
	if (X509_check_issued(ca->cert, x) != X509_V_OK)
		no = "another issuer name or key identifier";
	else if (capub == NULL || X509_verify(x, capub) != 1)
		no = "its signature is not this CA's";
	else if ((rc = store_get_cert(ca->store, x, rec, err)) < 0)
		return -1;
	else if (rc == 1)
		no = "not in its inventory";
	else if (rc == 2)
		no = "its inventory holds another certificate with that serial";
	ERR_clear_error();
	if (no == NULL)
		return 0;
	snprintf(why, why_len, "certificate serial %s was not issued by this "
	    "CA (%s)", serial, no);
	return 1;
}

struct crl_collect {
	struct crl_entry *v;
	size_t n, cap;
	char (*serials)[48];
};

static int
collect_revoked(void *arg, const struct cert_rec *r)
{
	struct crl_collect *c = arg;

	if (!r->revoked)
		return 0;
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 64;
		struct crl_entry *nv = realloc(c->v, nc * sizeof(*nv));
		char (*ns)[48] = realloc(c->serials, nc * sizeof(*ns));

		if (nv != NULL)
			c->v = nv;
		if (ns != NULL)
			c->serials = ns;
		if (nv == NULL || ns == NULL)
			return -1;
		c->cap = nc;
	}
	snprintf(c->serials[c->n], 48, "%s", r->serial);
	c->v[c->n].revoked_at = r->revoked_at;
	c->v[c->n].reason = r->reason;
	c->n++;
	return 0;
}

int
ca_crl(struct ca *ca, int64_t ttl, X509_CRL **out, struct mtls_error *err)
{
	struct crl_collect c = { 0 };
	int64_t number, now = (int64_t)time(NULL), next = 0;
	size_t i;
	int rv = -1;

	if (until(now, ttl, 7 * 86400, "CRL validity", &next, err) != 0)
		return -1;
	if (store_each(ca->store, collect_revoked, &c, err) != 0)
		goto out;
	for (i = 0; i < c.n; i++)
		c.v[i].serial_hex = c.serials[i];
	if (store_next_crl_number(ca->store, &number, err) != 0)
		goto out;
	rv = crl_build(ca->cert, ca->key, c.v, c.n, number, now - BACKDATE,
	    next, out, err);
 out:
	free(c.v);
	free(c.serials);
	return rv;
}

int
ca_chain_pem(struct ca *ca, X509 *leaf, char **pem, size_t *len,
    struct mtls_error *err)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	int j, rv = -1;

	if (sk == NULL || !sk_X509_push(sk, leaf))
		goto nomem;
	for (j = 0; j < sk_X509_num(ca->chain); j++) {
		X509 *x = sk_X509_value(ca->chain, j);

		if (!cert_is_self_signed(x) && !sk_X509_push(sk, x))
			goto nomem;
	}
	if (certs_pem(sk, pem, len) != 0)
		goto nomem;
	rv = 0;
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	sk_X509_free(sk);
	return rv;
}

int
ca_bundle_pem(struct ca *ca, char **pem, size_t *len, struct mtls_error *err)
{
	if (certs_pem(ca->bundle, pem, len) != 0)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	return 0;
}

int
ca_bundle_jwks(struct ca *ca, char **json, struct mtls_error *err)
{
	int64_t seq = 0, t;
	int i;

	for (i = 0; i < sk_X509_num(ca->bundle); i++)
		if ((t = asn1_time_unix(X509_get0_notBefore(
		    sk_X509_value(ca->bundle, i)))) > seq)
			seq = t;
	return jwks_emit(ca->bundle, seq, CA_BUNDLE_REFRESH_S, json, err);
}

/* The root this CA chains to: in a root's directory the CA itself, else
 * the bundle certificate that issued the top of ca.pem. */
static X509 *
own_root(struct ca *ca)
{
	X509 *top = sk_X509_value(ca->chain, sk_X509_num(ca->chain) - 1);
	int i;

	if (cert_is_self_signed(ca->cert))
		return ca->cert;
	for (i = 0; top && i < sk_X509_num(ca->bundle); i++)
		if (X509_check_issued(sk_X509_value(ca->bundle, i), top) ==
		    X509_V_OK)
			return sk_X509_value(ca->bundle, i);
	return sk_X509_num(ca->bundle) > 0 ? sk_X509_value(ca->bundle, 0) :
	    NULL;
}

void
ca_token_hash(const char *token, char hex[65])
{
	unsigned char h[32];
	int i;

	SHA256((const unsigned char *)token, strlen(token), h);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

int
ca_token_create(struct ca *ca, const char *spiffe_id, int64_t ttl,
    char *token, size_t len, struct mtls_error *err)
{
	unsigned char rnd[32], fp[32], cfp[32];
	char why[200], hash[65], secret[44], fph[65], cfph[65], b64[48];
	unsigned int fl = 0, cl = 0;
	X509 *root = own_root(ca);
	size_t i, k;
	int64_t expires = 0;
	int ok = 0, rv;

	if (until((int64_t)time(NULL), ttl, 0, "token --ttl", &expires,
	    err) != 0)
		return -1;
	if (mtls_spiffe_id_check(spiffe_id, why, sizeof(why)) != 0)
		return error_set(err, MTLS_ERR_ARG, "--spiffe-id '%.200s' is "
		    "invalid: %s", spiffe_id, why);
	for (k = 0; k < ca->n_roles && !ok; k++)
		ok = role_allows(&ca->roles[k], spiffe_id);
	if (!ok)
		return error_set(err, MTLS_ERR_ARG, "%.200s is not allowed by "
		    "any role in %s/ca.conf", spiffe_id, ca->dir);
	/* the root, and this CA (the issuer of ca serve's certificate): a
	 * sibling CA's server chains to the same root (issue 18) */
	if (root == NULL || !X509_digest(root, EVP_sha256(), fp, &fl) ||
	    fl != 32 || !X509_digest(ca->cert, EVP_sha256(), cfp, &cl) ||
	    cl != 32)
		return error_set(err, MTLS_ERR_CRYPTO, "cannot fingerprint the "
		    "root and this CA");
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return error_set(err, MTLS_ERR_CRYPTO, "no randomness");
	/* 32 random bytes (256 bits) as 43 base64url characters */
	EVP_EncodeBlock((unsigned char *)b64, rnd, sizeof(rnd));
	for (k = 0; k < 43; k++)
		secret[k] = b64[k] == '+' ? '-' : b64[k] == '/' ? '_' : b64[k];
	secret[43] = '\0';
	OPENSSL_cleanse(b64, sizeof(b64));
	OPENSSL_cleanse(rnd, sizeof(rnd));
	for (i = 0; i < 32; i++) {
		snprintf(fph + 2 * i, 3, "%02x", fp[i]);
		snprintf(cfph + 2 * i, 3, "%02x", cfp[i]);
	}
	if ((size_t)snprintf(token, len, "mtls2.%s.%s.%s", fph, cfph,
	    secret) >= len) {
		OPENSSL_cleanse(secret, sizeof(secret));
		return error_set(err, MTLS_ERR_ARG, "token buffer too small");
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	ca_token_hash(token, hash);
	rv = store_token_add(ca->store, hash, spiffe_id, expires, err);
	if (rv != 0)
		OPENSSL_cleanse(token, len);
	return rv;
}

static int
ocsp_fail(int status, uint8_t **resp, size_t *resp_len,
    struct mtls_error *err)
{
	OCSP_RESPONSE *r = OCSP_response_create(status, NULL);
	unsigned char *der = NULL;
	int n;

	if (r == NULL || (n = i2d_OCSP_RESPONSE(r, &der)) <= 0) {
		OCSP_RESPONSE_free(r);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	OCSP_RESPONSE_free(r);
	*resp = der;
	*resp_len = (size_t)n;
	return 0;
}

int
ca_ocsp(struct ca *ca, const uint8_t *req, size_t req_len, int64_t next,
    uint8_t **resp, size_t *resp_len, struct mtls_error *err)
{
	const unsigned char *p = req;
	OCSP_REQUEST *rq = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_RESPONSE *r = NULL;
	ASN1_TIME *thisupd = NULL, *nextupd = NULL, *revtime = NULL;
	unsigned char *der = NULL;
	int64_t end = 0;
	int i, n, rv = -1;

	*resp = NULL;
	if (until(0, next, 0, "OCSP validity", &end, err) != 0)
		return -1;
	if (req_len > 65536 || (rq = d2i_OCSP_REQUEST(NULL, &p,
	    (long)req_len)) == NULL || p != req + req_len ||
	    OCSP_request_onereq_count(rq) < 1 ||
	    OCSP_request_onereq_count(rq) > 16) {
		OCSP_REQUEST_free(rq);
		ERR_clear_error();
		return ocsp_fail(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, resp,
		    resp_len, err);
	}
	if ((bs = OCSP_BASICRESP_new()) == NULL ||
	    (thisupd = X509_gmtime_adj(NULL, 0)) == NULL ||
	    (nextupd = X509_gmtime_adj(NULL, (long)next)) == NULL)
		goto nomem;
	for (i = 0; i < OCSP_request_onereq_count(rq); i++) {
		OCSP_CERTID *cid = OCSP_onereq_get0_id(
		    OCSP_request_onereq_get0(rq, i));
		ASN1_OBJECT *mdo = NULL;
		ASN1_INTEGER *serial = NULL;
		OCSP_CERTID *ours = NULL;
		const EVP_MD *md;
		struct cert_rec rec;
		struct mtls_error e;
		char hex[64];
		int st = V_OCSP_CERTSTATUS_UNKNOWN, found = 1;

		OCSP_id_get0_info(NULL, &mdo, NULL, &serial, cid);
		md = mdo ? EVP_get_digestbyobj(mdo) : NULL;
		if (md != NULL && serial != NULL)
			ours = OCSP_cert_id_new(md, X509_get_subject_name(
			    ca->cert), X509_get0_pubkey_bitstr(ca->cert),
			    serial);
		if (ours != NULL && OCSP_id_issuer_cmp(cid, ours) == 0) {
			serial_hex(serial, hex, sizeof(hex));
			found = store_get(ca->store, hex, &rec, &e);
			if (found < 0) {
				OCSP_CERTID_free(ours);
				error_copy(err, &e);
				goto out;
			}
			if (found == 0)
				st = rec.revoked ? V_OCSP_CERTSTATUS_REVOKED :
				    V_OCSP_CERTSTATUS_GOOD;
		}
		OCSP_CERTID_free(ours);
		ASN1_TIME_free(revtime);
		revtime = NULL;
		if (st == V_OCSP_CERTSTATUS_REVOKED && (revtime =
		    ASN1_TIME_new()) != NULL)
			ASN1_TIME_set(revtime, (time_t)rec.revoked_at);
		if (OCSP_basic_add1_status(bs, cid, st,
		    st == V_OCSP_CERTSTATUS_REVOKED ? rec.reason : 0, revtime,
		    thisupd, nextupd) == NULL)
			goto nomem;
	}
	OCSP_copy_nonce(bs, rq);
	if (OCSP_basic_sign(bs, ca->cert, ca->key, EVP_sha256(), NULL, 0) != 1) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot sign the OCSP "
		    "response");
		goto out;
	}
	if ((r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)) ==
	    NULL || (n = i2d_OCSP_RESPONSE(r, &der)) <= 0)
		goto nomem;
	*resp = der;
	*resp_len = (size_t)n;
	rv = 0;
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	ASN1_TIME_free(revtime);
	ASN1_TIME_free(thisupd);
	ASN1_TIME_free(nextupd);
	OCSP_RESPONSE_free(r);
	OCSP_BASICRESP_free(bs);
	OCSP_REQUEST_free(rq);
	return rv;
}
