/*
 * CA directories: creating one (ca init, ca intermediate) and opening one.
 * A new CA directory is built in a temporary folder beside it and renamed
 * into place by build_dir(), so a failure leaves nothing behind. A
 * certificate is recorded in the issuer's inventory before any file
 * containing it is written.
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
#include <openssl/x509v3.h>

#include "ca_local.h"

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

void
ca_path(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

int
ca_write_certs(const char *path, STACK_OF(X509) *sk, int overwrite,
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

/* Removes the files we may have created in a temporary CA folder. */
static void
rm_tmpdir(const char *dir)
{
	static const char *names[] = { "ca.pem", "ca.key", "ca.keyuri",
	    "bundle.pem", "ca.conf", "inventory.db", "inventory.db-wal",
	    "inventory.db-shm", "inventory.db-journal" };
	char p[PATH_MAX];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ca_path(p, sizeof(p), dir, names[i]);
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

/* <first> followed by <chain> short of its root, as borrowed pointers
 * (free the stack with sk_X509_free): ca.pem of a new intermediate, and
 * what a leaf is delivered with. */
int
ca_chain_stack(X509 *first, STACK_OF(X509) *chain, STACK_OF(X509) **out,
    struct mtls_error *err)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	int j;

	*out = NULL;
	if (sk == NULL || !sk_X509_push(sk, first))
		goto nomem;
	for (j = 0; j < sk_X509_num(chain); j++) {
		X509 *x = sk_X509_value(chain, j);

		if (!cert_is_self_signed(x) && !sk_X509_push(sk, x))
			goto nomem;
	}
	*out = sk;
	return 0;
 nomem:
	sk_X509_free(sk);
	return error_set(err, MTLS_ERR_NOMEM, "out of memory");
}

/* What a new CA directory holds. A root comes signed (<cert>) and is
 * recorded in its own new inventory; an intermediate is signed by
 * <parent> in build_dir(), once the temporary folder exists, and is
 * recorded in the parent's inventory. */
struct newca {
	struct ca		*parent;	/* NULL: a root */
	struct profile_req	*pr;		/* what is (to be) signed */
	X509			*cert;		/* the new CA (owned) */
	STACK_OF(X509)		*bundle;	/* bundle.pem (borrowed) */
	struct signer		*signer;	/* the new CA's key */
	const struct mtls_secret *pass;		/* encrypts ca.key */
	const char		*conf;		/* ca.conf */
	const char		*key_uri;	/* the key in a token: ca.keyuri
						 * instead of ca.key */
};

/*
 * The one way a CA directory comes to be, for roots and intermediates: its
 * files are written in a fresh DIR.tmp-XXXXXX beside DIR, which is renamed
 * into place (and the parent folder synced) only when all of them are
 * durable, so a failure at any step leaves no CA directory behind.
 * <res> gets the new CA's serial and notAfter.
 */
static int
build_dir(const char *dir, struct newca *nc, struct ca_result *res,
    struct mtls_error *err)
{
	STACK_OF(X509) *chain = NULL;
	struct store *st = NULL;
	char tmp[PATH_MAX], p[PATH_MAX];
	int r;

	if (make_tmpdir(dir, tmp, sizeof(tmp), err) != 0)
		return -1;
	if (nc->parent != NULL && ca_sign_record(nc->parent, nc->pr,
	    "intermediate", &nc->cert, err) != 0)
		goto err;
	if (ca_chain_stack(nc->cert, nc->parent ? nc->parent->chain : NULL,
	    &chain, err) != 0)
		goto err;
	ca_path(p, sizeof(p), tmp, "inventory.db");
	if (store_open(&st, p, 1, err) != 0)
		goto err;
	if (nc->parent == NULL &&
	    (r = store_add(st, nc->cert, "root", err)) != 0) {
		if (r == 1)
			error_set(err, MTLS_ERR_IO, "serial collision");
		goto err;
	}
	if (nc->key_uri != NULL) {	/* the URI (no PIN in it), 0600 */
		char line[P11URI_MAX + 2];
		int n = snprintf(line, sizeof(line), "%s\n", nc->key_uri);

		ca_path(p, sizeof(p), tmp, "ca.keyuri");
		if (fs_write_atomic(p, line, (size_t)n, 0600, 0, err) != 0)
			goto err;
	} else {
		ca_path(p, sizeof(p), tmp, "ca.key");
		if (signer_write(nc->signer, p, nc->pass, err) != 0)
			goto err;
	}
	ca_path(p, sizeof(p), tmp, "ca.pem");
	if (ca_write_certs(p, chain, 0, err) != 0)
		goto err;
	ca_path(p, sizeof(p), tmp, "bundle.pem");
	if (ca_write_certs(p, nc->bundle, 0, err) != 0)
		goto err;
	ca_path(p, sizeof(p), tmp, "ca.conf");
	if (fs_write_atomic(p, nc->conf, strlen(nc->conf), 0644, 0, err) != 0)
		goto err;
	store_close(st);
	st = NULL;
	if (commit_dir(tmp, dir, err) != 0)
		goto err;
	sk_X509_free(chain);
	serial_hex(X509_get0_serialNumber(nc->cert), res->serial,
	    sizeof(res->serial));
	res->not_after = nc->pr->not_after;
	return 0;
 err:
	store_close(st);
	sk_X509_free(chain);
	rm_tmpdir(tmp);
	return -1;
}

/* The new CA's key in a token (<uri>): made there, or the existing one
 * with <existing>. */
static int
token_signer(struct newca *nc, const char *uri, int key_type, int existing,
    struct keystore_made *made, struct mtls_error *err)
{
	if (!keystore_is_uri(uri) || strlen(uri) > P11URI_MAX)
		return error_set(err, MTLS_ERR_ARG, "--key-uri must be a "
		    "pkcs11: URI of at most %d bytes", P11URI_MAX);
	if (signer_token(&nc->signer, uri, key_type, existing, made,
	    err) != 0)
		return -1;
	nc->key_uri = uri;
	return 0;
}

/* After a failure: the key pair made in the token for the new CA is
 * deleted, or the message says it is left. */
static void
token_undo(struct keystore_made *made, struct mtls_error *err)
{
	struct mtls_error e2;
	size_t n = strlen(err->msg);

	error_clear(&e2);
	if (keystore_undo(made, &e2) != 0)
		snprintf(err->msg + n, sizeof(err->msg) - n, "; %s", e2.msg);
}

int
ca_init(const struct ca_init_req *r, struct ca_result *res,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct profile_req pr;
	struct newca nc;
	struct keystore_made made = { 0 };
	char cn[300], conf[4096], allow[400];
	int64_t now = (int64_t)time(NULL);
	int rv = -1;

	memset(res, 0, sizeof(*res));
	memset(&nc, 0, sizeof(nc));
	if (ca_td_check(r->trust_domain, err) != 0 ||
	    check_new_dir(r->dir, err) != 0 ||
	    load_pass(&pass, r->pass_file, err) != 0)
		goto out;
	if (r->key_uri != NULL) {
		if (token_signer(&nc, r->key_uri, r->key_type,
		    r->key_existing, &made, err) != 0)
			goto out;
	} else if (signer_generate(&nc.signer, r->key_type, err) != 0)
		goto out;
	snprintf(cn, sizeof(cn), "%s", r->name ? r->name : "");
	if (r->name == NULL)
		snprintf(cn, sizeof(cn), "%s Root CA", r->trust_domain);
	memset(&pr, 0, sizeof(pr));
	pr.kind = PROFILE_ROOT;
	pr.cn = cn;
	pr.org = r->trust_domain;
	pr.not_before = now - BACKDATE;
	if (ca_until(now, r->ttl, ROOT_TTL, "--ttl", &pr.not_after, err) != 0)
		goto out;
	if (signer_sign(nc.signer, NULL, &pr, &nc.cert, err) != 0)
		goto out;
	if ((nc.bundle = sk_X509_new_null()) == NULL ||
	    !sk_X509_push(nc.bundle, nc.cert)) {
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
	nc.pass = &pass;
	nc.conf = conf;
	nc.pr = &pr;
	if (build_dir(r->dir, &nc, res, err) != 0)
		goto out;
	rv = 0;
 out:
	sk_X509_free(nc.bundle);
	X509_free(nc.cert);
	signer_free(nc.signer);
	if (rv != 0)
		token_undo(&made, err);
	secret_clear(&pass);
	return rv;
}

/* ca.conf's default role of an intermediate: its --permit-spiffe
 * prefixes and --permit-dns names (checked to be in <parent>'s trust
 * domain), or everything in the trust domain when none is given. */
static int
permit_rules(const struct ca_int_req *r, const struct ca *parent,
    char *allow, size_t len, struct mtls_error *err)
{
	char p[PATH_MAX], td[256];
	size_t i, off = 0;

	allow[0] = '\0';
	for (i = 0; i < r->n_permit_spiffe; i++) {
		const char *s = r->permit_spiffe[i];
		size_t l = strlen(s);
		char why[200];

		if (l == 0 || s[l - 1] != '/' || l > 2000)
			return error_set(err, MTLS_ERR_ARG, "--permit-spiffe "
			    "'%.100s' must end in '/' (spiffe://%s/ns/prod/)",
			    s, parent->trust_domain);
		snprintf(p, sizeof(p), "%.*s", (int)(l - 1), s);
		if ((l > 9 && strncmp(s, "spiffe://", 9) == 0 &&
		    strchr(s + 9, '/') == s + l - 1) ?
		    spiffe_trust_domain(p, td, sizeof(td)) :
		    mtls_spiffe_id_check(p, why, sizeof(why)))
			return error_set(err, MTLS_ERR_ARG, "--permit-spiffe "
			    "'%.100s' is not a SPIFFE ID prefix", s);
		if (spiffe_trust_domain(p, td, sizeof(td)) != 0 ||
		    strcmp(td, parent->trust_domain) != 0)
			return error_set(err, MTLS_ERR_ARG, "--permit-spiffe "
			    "'%.100s' is outside the parent's trust domain %s",
			    s, parent->trust_domain);
		off += (size_t)snprintf(allow + off, len - off,
		    "%s%s*", off ? " " : "", s);
	}
	for (i = 0; i < r->n_permit_dns; i++) {
		if (dns_name_check(r->permit_dns[i], 0) != 0)
			return error_set(err, MTLS_ERR_ARG, "--permit-dns "
			    "'%.100s' is not a DNS name", r->permit_dns[i]);
		off += (size_t)snprintf(allow + off, len - off,
		    "%sdns:%s dns:*.%s", off ? " " : "", r->permit_dns[i],
		    r->permit_dns[i]);
	}
	if (r->n_permit_spiffe == 0) {
		off += (size_t)snprintf(allow + off, len - off,
		    "%sspiffe://%s/*", off ? " " : "", parent->trust_domain);
	}
	if (r->n_permit_dns == 0)
		snprintf(allow + off, len - off, " %s",
		    r->n_permit_spiffe ? "" : "dns:* ip:*");
	if (off >= len - 16)
		return error_set(err, MTLS_ERR_ARG, "too many --permit rules");
	return 0;
}

int
ca_intermediate(const struct ca_int_req *r, struct ca_result *res,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct profile_req pr;
	struct newca nc;
	struct ca *parent = NULL;
	struct keystore_made made = { 0 };
	EVP_PKEY *pub = NULL;
	char conf[8192], allow[4096], scope_line[100];
	int64_t now = (int64_t)time(NULL);
	int rv = -1;

	memset(res, 0, sizeof(*res));
	memset(&nc, 0, sizeof(nc));
	if (r->name == NULL || *r->name == '\0')
		return error_set(err, MTLS_ERR_ARG, "--name is required");
	if (check_new_dir(r->dir, err) != 0 ||
	    ca_open(&parent, r->parent_dir, r->parent_pass_file, err) != 0 ||
	    load_pass(&pass, r->pass_file, err) != 0)
		goto out;
	if (permit_rules(r, parent, allow, sizeof(allow), err) != 0)
		goto out;
	if ((r->key_uri != NULL ? token_signer(&nc, r->key_uri, r->key_type,
	    r->key_existing, &made, err) :
	    signer_generate(&nc.signer, r->key_type, err)) != 0 ||
	    signer_public(nc.signer, &pub, err) != 0)
		goto out;
	memset(&pr, 0, sizeof(pr));
	pr.kind = PROFILE_INTERMEDIATE;
	pr.cn = r->name;
	pr.org = parent->trust_domain;
	pr.not_before = now - BACKDATE;
	if (ca_until(now, r->ttl, INT_TTL, "--ttl", &pr.not_after, err) != 0)
		goto out;
	pr.not_after = ca_clamp(parent, pr.not_after, res);
	pr.pubkey = pub;
	if (r->n_permit_spiffe || r->n_permit_dns)
		pr.permit_td = parent->trust_domain;
	pr.permit_spiffe = r->permit_spiffe;
	pr.n_permit_spiffe = r->n_permit_spiffe;
	pr.permit_dns = r->permit_dns;
	pr.n_permit_dns = r->n_permit_dns;
	pr.scope_oid = parent->scope_oid[0] ? parent->scope_oid : NULL;
	pr.crl_url = parent->crl_url;
	pr.ocsp_url = parent->ocsp_url;
	snprintf(scope_line, sizeof(scope_line), "%s%s%s",
	    parent->scope_oid[0] ? "scope_oid = " : "", parent->scope_oid,
	    parent->scope_oid[0] ? "\n" : "");
	snprintf(conf, sizeof(conf), conf_template, parent->trust_domain,
	    scope_line,
	    parent->trust_domain, parent->trust_domain, allow);
	nc.parent = parent;
	nc.bundle = parent->bundle;
	nc.pass = &pass;
	nc.conf = conf;
	nc.pr = &pr;
	if (build_dir(r->dir, &nc, res, err) != 0)
		goto out;
	rv = 0;
 out:
	X509_free(nc.cert);
	signer_free(nc.signer);
	if (rv != 0)
		token_undo(&made, err);
	EVP_PKEY_free(pub);
	ca_close(parent);
	secret_clear(&pass);
	return rv;
}

void
ca_close(struct ca *ca)
{
	if (ca == NULL)
		return;
	ca_verifier_free(ca);
	free(ca->bundle_pem);
	free(ca->chain_pem);
	X509_free(ca->cert);
	sk_X509_pop_free(ca->chain, X509_free);
	sk_X509_pop_free(ca->bundle, X509_free);
	signer_free(ca->signer);
	X509_free(ca->prev);
	signer_free(ca->prev_signer);
	if (!ca->store_borrowed)
		store_close(ca->store);
	roles_free(ca);
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
	    "inventory.db", "inventory.db-wal", "inventory.db-shm", "ca.key",
	    "ca.keyuri" };
	static const char hint[] = " (whoever can write a CA directory "
	    "decides what it issues)";
	char p[PATH_MAX];
	size_t i, n = sizeof(names) / sizeof(names[0]);

	if (fs_check_private(dir, "", hint, err) != 0)
		return -1;
	for (i = 0; i < (want_key ? n : n - 2); i++) {
		ca_path(p, sizeof(p), dir, names[i]);
		if (fs_check_private(p, "", hint, err) != 0) {
			if (err->sys != ENOENT)
				return -1;
			error_clear(err);
		}
	}
	return 0;
}

/* Where the CA's key is: the pkcs11: URI in DIR/ca.keyuri when that file
 * exists, else the file DIR/ca.key. */
static int
key_uri(const char *dir, char *out, size_t cap, struct mtls_error *err)
{
	char p[PATH_MAX];

	ca_path(p, sizeof(p), dir, "ca.keyuri");
	if (access(p, F_OK) != 0) {
		ca_path(out, cap, dir, "ca.key");
		return 0;
	}
	return ca_keyuri_read(p, out, cap, err);
}

int
ca_keyuri_read(const char *p, char *out, size_t cap, struct mtls_error *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (fs_read(p, P11URI_MAX + 2, &buf, &len, err) != 0)
		return -1;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (!keystore_is_uri((char *)buf) || strlen((char *)buf) != len ||
	    len >= cap) {
		free(buf);
		return error_set(err, MTLS_ERR_PARSE, "%s: not one pkcs11: URI "
		    "line", p);
	}
	memcpy(out, buf, len + 1);
	free(buf);
	return 0;
}

static int
open_common(struct ca **out, const char *dir, const char *pass_file,
    int want_key, struct store *shared, struct mtls_error *err)
{
	static uint64_t gens;
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
	ca->gen = __atomic_add_fetch(&gens, 1, __ATOMIC_RELAXED);
	ca_path(p, sizeof(p), dir, "ca.pem");
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
	ca_path(p, sizeof(p), dir, "bundle.pem");
	if (certs_load(p, &ca->bundle, err) != 0)
		goto out;
	if (roles_load(ca, err) != 0)
		goto out;
	if (rotation_load(ca, err) != 0)	/* rotation.json */
		goto out;
	if (shared != NULL) {	/* a reload: the server's store */
		ca->store = shared;
		ca->store_borrowed = 1;
	} else if (store_open_ca(&ca->store, dir, err) != 0)	/* ca.conf */
		goto out;
	if (want_key) {
		if (load_pass(&pass, pass_file, err) != 0)
			goto out;
		if (key_uri(dir, p, sizeof(p), err) != 0)
			goto out;
		if (signer_load(&ca->signer, p, &pass, ca->cert, err) != 0) {
			/* rotation.c switch_resume puts the old key back */
			if (ca->rot_phase == ROT_PUBLISHED)
				snprintf(err->msg + strlen(err->msg),
				    sizeof(err->msg) - strlen(err->msg), " (a "
				    "rotation switch cut short? run it again)");
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
	return open_common(out, dir, pass_file, 1, NULL, err);
}

int
ca_open_shared(struct ca **out, const char *dir, const char *pass_file,
    struct store *store, struct mtls_error *err)
{
	return open_common(out, dir, pass_file, 1, store, err);
}

int
ca_open_readonly(struct ca **out, const char *dir, struct mtls_error *err)
{
	return open_common(out, dir, NULL, 0, NULL, err);
}

int
ca_chain_pem(struct ca *ca, X509 *leaf, char **pem, size_t *len,
    struct mtls_error *err)
{
	STACK_OF(X509) *sk = NULL;
	char *lp = NULL;
	size_t ll;
	int rv = -1;

	*pem = NULL;
	/* the CA part (ca.pem short of a root) is fixed while the CA is
	 * open: encoded at the first call (ca_issue_prepare's, in ca
	 * serve), then only the leaf per answer */
	if (ca->chain_pem == NULL) {
		if (ca_chain_stack(NULL, ca->chain, &sk, err) != 0)
			return -1;
		(void)sk_X509_shift(sk);	/* the NULL first */
		rv = certs_pem(sk, &ca->chain_pem, &ca->chain_pem_len);
		sk_X509_free(sk);
		sk = NULL;
		if (rv != 0) {
			ca->chain_pem = NULL;
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		}
		rv = -1;
	}
	if (leaf == NULL)
		return 0;
	if ((sk = sk_X509_new_null()) == NULL || !sk_X509_push(sk, leaf) ||
	    certs_pem(sk, &lp, &ll) != 0 ||
	    (*pem = malloc(ll + ca->chain_pem_len + 1)) == NULL)
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
	else {
		memcpy(*pem, lp, ll);
		memcpy(*pem + ll, ca->chain_pem, ca->chain_pem_len + 1);
		*len = ll + ca->chain_pem_len;
		rv = 0;
	}
	free(lp);
	sk_X509_free(sk);
	return rv;
}

/* The bundle is fixed while the CA is open: encoded once, copied out. */
int
ca_bundle_pem(struct ca *ca, char **pem, size_t *len, struct mtls_error *err)
{
	*pem = NULL;
	if (ca->bundle_pem == NULL && certs_pem(ca->bundle, &ca->bundle_pem,
	    &ca->bundle_pem_len) != 0) {
		ca->bundle_pem = NULL;
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	if ((*pem = malloc(ca->bundle_pem_len + 1)) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	memcpy(*pem, ca->bundle_pem, ca->bundle_pem_len + 1);
	*len = ca->bundle_pem_len;
	return 0;
}

/* Only the trust anchors: bundle.pem also carries a rotation's
 * cross-certificate during the overlap (what lets an old-bundle peer
 * chain the new root), which is no x509-svid authority of a SPIFFE
 * bundle: a consumer would trust whatever it names as a root. A root is
 * self-signed, its signature checked (X509_self_signed), not just its
 * names compared. */
int
ca_bundle_jwks(struct ca *ca, char **json, struct mtls_error *err)
{
	STACK_OF(X509) *roots;
	int64_t seq = 0, t;
	int i, rv;

	if ((roots = sk_X509_new_null()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	for (i = 0; i < sk_X509_num(ca->bundle); i++) {
		X509 *x = sk_X509_value(ca->bundle, i);

		if (X509_self_signed(x, 1) != 1)
			continue;
		if (!sk_X509_push(roots, x)) {
			sk_X509_free(roots);
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		}
		if ((t = asn1_time_unix(X509_get0_notBefore(x))) > seq)
			seq = t;
	}
	ERR_clear_error();
	if (sk_X509_num(roots) == 0) {
		sk_X509_free(roots);
		return error_set(err, MTLS_ERR_ARG, "%s/bundle.pem holds no "
		    "self-signed root: a SPIFFE bundle lists roots only (put "
		    "the root that the chain ends at in bundle.pem)", ca->dir);
	}
	rv = jwks_emit(roots, seq, CA_BUNDLE_REFRESH_S, json, err);
	sk_X509_free(roots);
	return rv;
}
