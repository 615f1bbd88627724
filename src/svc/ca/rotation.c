/*
 * Rotation of a CA directory (docs/rotation.md): prepare (a new root
 * and a cross-certificate of it from the old one), publish (the bundle
 * holds both), switch (issuance under the new root), retire (the bundle
 * holds the new root only). The same phases replace an online
 * intermediate under an offline root (--parent: a new intermediate key,
 * the same root) or the offline root above it (--parent --new-root: a new
 * root and a new intermediate under it). DIR/rotation.json says where a
 * rotation is; it is written last, atomically, once the files it names are
 * durable, so a step interrupted leaves the phase before it (and may be
 * run again).
 * What blocks a step is counted from the inventory and from the bundle
 * generations agents report, never assumed.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca_local.h"

#define STATE_MAX	(16 * 1024)

const char *const rot_phase_names[ROT__COUNT] = { "none", "prepared",
    "published", "switched", "retired" };
const char *const rot_kind_names[ROT_KIND__COUNT] = { "root",
    "intermediate", "root-and-intermediate" };

static void
hex32(const unsigned char *d, char hex[65])
{
	int k;

	for (k = 0; k < 32; k++)
		snprintf(hex + 2 * k, 3, "%02x", d[k]);
}

static int
fp(X509 *x, char hex[65])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;

	hex[0] = '\0';
	if (!X509_digest(x, EVP_sha256(), d, &dl) || dl != 32)
		return -1;
	hex32(d, hex);
	return 0;
}

struct der {
	unsigned char	*p;
	int		 n;
};

static int
der_cmp(const void *a, const void *b)
{
	const struct der *x = a, *y = b;
	int c = memcmp(x->p, y->p, (size_t)(x->n < y->n ? x->n : y->n));

	return c != 0 ? c : (x->n > y->n) - (x->n < y->n);
}

/* The order of a bundle's certificates and its PEM text do not change
 * what it trusts, so neither changes its generation. */
int
rotation_generation(STACK_OF(X509) *sk, char hex[65])
{
	struct der *v;
	unsigned char d[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int i, n = sk_X509_num(sk), rv = -1;

	hex[0] = '\0';
	if (md == NULL || (v = calloc((size_t)n + 1, sizeof(*v))) == NULL) {
		EVP_MD_CTX_free(md);
		return -1;
	}
	for (i = 0; i < n; i++)
		if ((v[i].n = i2d_X509(sk_X509_value(sk, i), &v[i].p)) <= 0)
			goto out;
	qsort(v, (size_t)n, sizeof(*v), der_cmp);
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	for (i = 0; i < n; i++)
		if (EVP_DigestUpdate(md, v[i].p, (size_t)v[i].n) != 1)
			goto out;
	if (EVP_DigestFinal_ex(md, d, NULL) != 1)
		goto out;
	hex32(d, hex);
	rv = 0;
 out:
	for (i = 0; i < n; i++)
		OPENSSL_free(v[i].p);
	free(v);
	EVP_MD_CTX_free(md);
	return rv;
}

int
rotation_gen_valid(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != 64)
		return 0;
	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' &&
		    s[i] <= 'f')))
			return 0;
	return 1;
}

/* ---- DIR/rotation.json ---- */

static int
field(json_t *o, const char *k, char *out, size_t cap, int hex,
    const char *path, struct mtls_error *err)
{
	json_t *v = json_object_get(o, k);
	const char *s;

	out[0] = '\0';
	if (v == NULL)
		return 0;
	if ((s = json_string_value(v)) == NULL || strlen(s) >= cap ||
	    (hex && *s && !rotation_gen_valid(s)))
		return error_set(err, MTLS_ERR_PARSE, "%s: \"%s\" is not %s",
		    path, k, hex ? "64 lower-case hex digits" : "a short string");
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

int
rotation_state_read(const char *dir, struct rot_state *st,
    struct mtls_error *err)
{
	char p[PATH_MAX], ph[16], kind[32];
	uint8_t *buf = NULL;
	size_t len;
	json_t *o = NULL;
	json_error_t je;
	int i, rv = -1;

	memset(st, 0, sizeof(*st));
	ca_path(p, sizeof(p), dir, "rotation.json");
	if (access(p, F_OK) != 0)
		return 0;	/* no rotation yet */
	/* judged and read through one descriptor (whoever can write it
	 * steers the rotation) */
	if (fs_read_private(p, STATE_MAX, "", 0, &buf, &len, NULL, err) != 0)
		return -1;
	if ((o = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES,
	    &je)) == NULL || !json_is_object(o)) {
		error_set(err, MTLS_ERR_PARSE, "%s: not a JSON object (line "
		    "%d)", p, je.line);
		goto out;
	}
	if (field(o, "phase", ph, sizeof(ph), 0, p, err) != 0 ||
	    field(o, "kind", kind, sizeof(kind), 0, p, err) != 0 ||
	    field(o, "old_ca", st->old_ca, sizeof(st->old_ca), 1, p,
	    err) != 0 ||
	    field(o, "new_ca", st->new_ca, sizeof(st->new_ca), 1, p,
	    err) != 0 ||
	    field(o, "old_root", st->old_root, sizeof(st->old_root), 1, p,
	    err) != 0 ||
	    field(o, "new_root", st->new_root, sizeof(st->new_root), 1, p,
	    err) != 0 ||
	    field(o, "published_gen", st->published_gen,
	    sizeof(st->published_gen), 1, p, err) != 0 ||
	    field(o, "final_gen", st->final_gen, sizeof(st->final_gen), 1, p,
	    err) != 0 ||
	    field(o, "cross_serial", st->cross_serial,
	    sizeof(st->cross_serial), 0, p, err) != 0 ||
	    field(o, "old_issuer", st->old_issuer, sizeof(st->old_issuer), 0,
	    p, err) != 0)
		goto out;
	for (i = 0; i < ROT__COUNT; i++)
		if (strcmp(ph, rot_phase_names[i]) == 0)
			break;
	/* a file written before "kind" is a root's rotation */
	for (st->kind = 0; kind[0] != '\0' && st->kind < ROT_KIND__COUNT;
	    st->kind++)
		if (strcmp(kind, rot_kind_names[st->kind]) == 0)
			break;
	if (st->kind == ROT_KIND_ROOT && st->old_ca[0] == '\0') {
		memcpy(st->old_ca, st->old_root, sizeof(st->old_ca));
		memcpy(st->new_ca, st->new_root, sizeof(st->new_ca));
	}
	if (st->kind == ROT_KIND__COUNT || !rotation_gen_valid(st->old_ca) ||
	    !rotation_gen_valid(st->new_ca)) {
		error_set(err, MTLS_ERR_PARSE, "%s: kind '%.32s' unknown or a "
		    "CA's SHA-256 missing (it is written by mtls ca rotation)",
		    p, kind);
		goto out;
	}
	if (i == ROT__COUNT || i == ROT_NONE || !rotation_gen_valid(
	    st->old_root) || !rotation_gen_valid(st->new_root) ||
	    st->old_issuer[0] == '\0' || st->cross_serial[0] == '\0') {
		error_set(err, MTLS_ERR_PARSE, "%s: phase '%.16s' or a root's "
		    "SHA-256, the old issuer or the cross serial is missing or "
		    "unknown (it is written by mtls ca rotation)", p, ph);
		goto out;
	}
	if (i >= ROT_PUBLISHED && (!rotation_gen_valid(st->published_gen) ||
	    !rotation_gen_valid(st->final_gen))) {
		error_set(err, MTLS_ERR_PARSE, "%s: no bundle generations", p);
		goto out;
	}
	st->phase = i;
	st->at = json_integer_value(json_object_get(o, "at"));
	rv = 0;
 out:
	json_decref(o);
	free(buf);
	return rv;
}

static int
state_write(const char *dir, const struct rot_state *st,
    struct mtls_error *err)
{
	char p[PATH_MAX], *txt;
	json_t *o = json_object();
	int rv;

	json_object_set_new(o, "phase", esc_jstr(rot_phase_names[
	    st->phase]));
	json_object_set_new(o, "old_root", esc_jstr(st->old_root));
	json_object_set_new(o, "new_root", esc_jstr(st->new_root));
	json_object_set_new(o, "old_issuer", esc_jstr(st->old_issuer));
	json_object_set_new(o, "cross_serial", esc_jstr(st->cross_serial));
	json_object_set_new(o, "kind", esc_jstr(rot_kind_names[st->kind]));
	json_object_set_new(o, "old_ca", esc_jstr(st->old_ca));
	json_object_set_new(o, "new_ca", esc_jstr(st->new_ca));
	json_object_set_new(o, "published_gen",
	    esc_jstr(st->published_gen));
	json_object_set_new(o, "final_gen", esc_jstr(st->final_gen));
	json_object_set_new(o, "at", json_integer((json_int_t)time(NULL)));
	txt = json_dumps(o, JSON_INDENT(1) | JSON_ENSURE_ASCII);
	json_decref(o);
	if (txt == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	ca_path(p, sizeof(p), dir, "rotation.json");
	rv = fs_write_atomic(p, txt, strlen(txt), 0600, 1, err);
	free(txt);
	return rv;
}

/* rotation/old.pem of <dir>, kept by the first switch (a run again keeps
 * it), starts with the old CA rotation.json names (<want>, SHA-256 hex):
 * after the switch it decides whose leaves still renew. */
static int
old_ok(const char *dir, const char *want, struct mtls_error *err)
{
	STACK_OF(X509) *sk = NULL;
	char p[PATH_MAX], h[65] = "";
	int rv;

	ca_path(p, sizeof(p), dir, "rotation/old.pem");
	if (certs_load(p, &sk, err) != 0)
		return -1;
	rv = sk_X509_num(sk) >= 1 && fp(sk_X509_value(sk, 0), h) == 0 &&
	    strcmp(h, want) == 0 ? 0 : error_set(err, MTLS_ERR_PARSE,
	    "%s: not the old CA rotation.json names (sha256:%.16s...); "
	    "nothing changed", p, want);
	sk_X509_pop_free(sk, X509_free);
	return rv;
}

/* At open (cadir.c): the phase, and after the switch the previous issuing
 * certificate, whose leaves may still renew. */
int
rotation_load(struct ca *ca, struct mtls_error *err)
{
	struct rot_state st;
	STACK_OF(X509) *sk = NULL;
	char p[PATH_MAX];

	if (rotation_state_read(ca->dir, &st, err) != 0)
		return -1;
	ca->rot_phase = st.phase;
	if (st.phase != ROT_SWITCHED)
		return 0;
	if (old_ok(ca->dir, st.old_ca, err) != 0)
		return -1;
	ca_path(p, sizeof(p), ca->dir, "rotation/old.pem");
	if (certs_load(p, &sk, err) != 0)
		return -1;
	ca->prev = sk_X509_shift(sk);
	sk_X509_pop_free(sk, X509_free);
	return 0;
}

/* ---- status ---- */

int
rotation_status(struct ca *ca, struct rot_status *rs, struct mtls_error *err)
{
	struct rot_state *st = &rs->st;
	int64_t n[3] = { 0, 0, 0 };
	const char *what, *chain;

	memset(rs, 0, sizeof(*rs));
	if (rotation_state_read(ca->dir, st, err) != 0)
		return -1;
	/* an agent holds what comes next when it reported the published
	 * bundle, or the final one; but a new intermediate's final bundle is
	 * the one before the rotation, so until the switch only the
	 * published one counts */
	if (st->phase != ROT_NONE && store_rotation_count(ca->store,
	    st->old_issuer, st->cross_serial,
	    st->published_gen[0] ? st->published_gen : st->new_root,
	    st->final_gen[0] == '\0' ? st->new_root : st->kind ==
	    ROT_KIND_INT && st->phase == ROT_PUBLISHED ? st->published_gen :
	    st->final_gen, (int64_t)time(NULL), n, err) != 0)
		return -1;
	what = st->kind == ROT_KIND_INT ? "intermediate" : "root";
	chain = st->kind == ROT_KIND_ROOT ? "chain to the old root" :
	    st->kind == ROT_KIND_INT ? "were issued by the old intermediate" :
	    "chain to the old root (the old intermediate's)";
	rs->blocking_certs = n[0];
	rs->agents_total = n[1];
	rs->agents_old = n[2];
	switch (st->phase) {
	case ROT_NONE:
	case ROT_RETIRED:
		snprintf(rs->next, sizeof(rs->next), "%s", st->phase ==
		    ROT_NONE ? "prepare: make a new root or intermediate "
		    "(mtls ca rotation prepare)" :
		    "none: the rotation is complete (prepare "
		    "starts another)");
		break;
	case ROT_PREPARED:
		snprintf(rs->next, sizeof(rs->next), "publish: put the new "
		    "%s in the bundle (mtls ca rotation publish), then "
		    "reload ca serve", what);
		break;
	case ROT_PUBLISHED:
		rs->blocked = rs->agents_old > 0;
		if (rs->blocked)
			snprintf(rs->next, sizeof(rs->next), "switch: blocked: "
			    "%lld of %lld agents have not reported a bundle "
			    "with the new %s (each reports it at its next "
			    "renewal)", (long long)rs->agents_old,
			    (long long)rs->agents_total, what);
		else
			snprintf(rs->next, sizeof(rs->next), "switch: issue "
			    "under the new %s (mtls ca rotation switch), "
			    "then reload ca serve", what);
		break;
	case ROT_SWITCHED:
		rs->blocked = rs->blocking_certs > 0;
		if (rs->blocked)
			snprintf(rs->next, sizeof(rs->next), "retire: blocked: "
			    "%lld unexpired, unrevoked certificates %s "
			    "(they renew under the new one, or expire, or are "
			    "revoked)", (long long)rs->blocking_certs, chain);
		else if (st->kind == ROT_KIND_INT)
			snprintf(rs->next, sizeof(rs->next), "retire: revoke "
			    "the old intermediate at the root (mtls ca "
			    "rotation retire --parent DIR), then reload ca "
			    "serve and publish the root's CRL");
		else
			snprintf(rs->next, sizeof(rs->next), "retire: drop the "
			    "old root from the bundle (mtls ca rotation "
			    "retire), then reload ca serve");
		break;
	}
	return 0;
}

json_t *
rotation_status_json(const struct rot_status *rs)
{
	json_t *o = json_object();

	json_object_set_new(o, "phase", esc_jstr(rot_phase_names[
	    rs->st.phase]));
	json_object_set_new(o, "old_root", esc_jstr(rs->st.old_root));
	json_object_set_new(o, "new_root", esc_jstr(rs->st.new_root));
	json_object_set_new(o, "blocking_certs",
	    json_integer(rs->blocking_certs));
	json_object_set_new(o, "agents_on_old_bundle",
	    json_integer(rs->agents_old));
	json_object_set_new(o, "agents_total", json_integer(rs->agents_total));
	json_object_set_new(o, "next_step", esc_jstr(rs->next));
	json_object_set_new(o, "kind", esc_jstr(rot_kind_names[
	    rs->st.kind]));
	json_object_set_new(o, "old_ca", esc_jstr(rs->st.old_ca));
	json_object_set_new(o, "new_ca", esc_jstr(rs->st.new_ca));
	return o;
}

/* ---- the steps ---- */

static int
want_phase(const struct rot_state *st, int a, int b, const char *step,
    struct mtls_error *err)
{
	if (st->phase == a || st->phase == b)
		return 0;
	return error_set(err, MTLS_ERR_ARG, "rotation %s: the rotation is "
	    "'%s' (mtls ca rotation status says what comes next)", step,
	    rot_phase_names[st->phase]);
}

static int
key_in_token(const char *dir, struct mtls_error *err)
{
	char p[PATH_MAX];

	ca_path(p, sizeof(p), dir, "ca.keyuri");
	if (access(p, F_OK) != 0)
		return 0;
	return error_set(err, MTLS_ERR_ARG, "%s: the key is in a PKCS#11 "
	    "token; rotating it is not supported yet", dir);
}

/* A root served directly: the certificate that issues is self-signed. */
static int
is_root_dir(struct ca *ca, struct mtls_error *err)
{
	if (key_in_token(ca->dir, err) != 0)
		return -1;
	if (!cert_is_self_signed(ca->cert) || sk_X509_num(ca->chain) != 1)
		return error_set(err, MTLS_ERR_ARG, "%s: not a root; to rotate "
		    "an intermediate, give the offline root above it with "
		    "--parent DIR (docs/rotation.md)", ca->dir);
	return 0;
}

/* An intermediate ca serve issues from, whose certificate <parent>'s CA
 * issued; with <new_root>, <parent> is a root whose key is a file. A key
 * in a token is followed by a key in a token (<key_uri>): switch keeps the
 * old one's URI as rotation/old.keyuri. */
static int
is_int_dir(struct ca *ca, struct ca *parent, int new_root,
    const char *key_uri, struct mtls_error *err)
{
	char p[PATH_MAX];

	ca_path(p, sizeof(p), ca->dir, "ca.keyuri");
	if (key_uri == NULL && access(p, F_OK) == 0)
		return error_set(err, MTLS_ERR_ARG, "%s: the key is in a "
		    "PKCS#11 token: give --key-uri URI for the new "
		    "intermediate's key (a new key in a file would leave the "
		    "token's protection)", ca->dir);
	if (cert_is_self_signed(ca->cert))
		return error_set(err, MTLS_ERR_ARG, "%s: a root; --parent is "
		    "for an intermediate under an offline root (without it the "
		    "root itself is rotated)", ca->dir);
	if (!cert_issued_by(parent->cert, ca->cert))
		return error_set(err, MTLS_ERR_ARG, "%s: the CA there did not "
		    "issue %s's certificate; --parent is the CA directory "
		    "above it", parent->dir, ca->dir);
	if (new_root && (!cert_is_self_signed(parent->cert) ||
	    key_in_token(parent->dir, err) != 0))
		return error_set(err, MTLS_ERR_ARG, "%s: --new-root replaces "
		    "a root whose key is a file; this is not one", parent->dir);
	return 0;
}

static int
load_one(const char *dir, const char *name, X509 **out,
    struct mtls_error *err)
{
	STACK_OF(X509) *sk = NULL;
	char p[PATH_MAX];

	ca_path(p, sizeof(p), dir, name);
	if (certs_load(p, &sk, err) != 0)
		return -1;
	*out = sk_X509_shift(sk);
	sk_X509_pop_free(sk, X509_free);
	return 0;
}

static int
write_one(const char *dir, const char *name, X509 *x,
    struct mtls_error *err)
{
	STACK_OF(X509) *one = sk_X509_new_null();
	char p[PATH_MAX];
	int rv;

	if (one == NULL || !sk_X509_push(one, x)) {
		sk_X509_free(one);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	ca_path(p, sizeof(p), dir, name);
	rv = ca_write_certs(p, one, 1, err);
	sk_X509_free(one);
	return rv;
}

/* An empty DIR/rotation (0700); a finished rotation's files are kept as
 * rotation-<at>. */
static int
rot_dir(const char *dir, int64_t at, struct mtls_error *err)
{
	char p[PATH_MAX], q[PATH_MAX];

	ca_path(p, sizeof(p), dir, "rotation");
	if (access(p, F_OK) == 0) {
		snprintf(q, sizeof(q), "%s-%lld", p, (long long)at);
		if (rename(p, q) != 0)
			return error_set_errno(err, MTLS_ERR_IO, "%s", p);
	}
	if (mkdir(p, 0700) != 0)
		return error_set_errno(err, MTLS_ERR_IO, "%s", p);
	return 0;
}

static void
stamp_now(time_t now, char stamp[32])
{
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(stamp, 32, "%Y-%m-%dT%H%M%SZ", &tm);
}

/* A new root key and self-signed certificate in <ca>'s rotation/ (new.key
 * encrypted with <pass>, new.pem) and a cross-certificate of them signed
 * by <ca>'s root (cross.pem), both recorded in <ca>'s inventory before
 * any file holds them. The caller owns *rootp, *crossp and *sgp. */
static int
make_root(struct ca *ca, const struct rot_req *r,
    const struct mtls_secret *pass, X509 **rootp, X509 **crossp,
    struct signer **sgp, struct mtls_error *err)
{
	struct signer *sg = NULL;
	struct profile_req pr;
	struct ca_result res;
	EVP_PKEY *pub = NULL;
	X509 *root = NULL, *cross = NULL;
	char cn[300], p[PATH_MAX], stamp[32];
	time_t now = time(NULL);
	int rc, rv = -1;

	if (signer_generate(&sg, r->key_type < 0 ? KEY_EC_P256 : r->key_type,
	    err) != 0 || signer_public(sg, &pub, err) != 0)
		goto out;
	stamp_now(now, stamp);
	/* a name of its own: the inventory tells the roots' leaves apart by
	 * issuer name, and so do peers building chains */
	snprintf(cn, sizeof(cn), "%s Root CA %s", ca->trust_domain, stamp);
	memset(&pr, 0, sizeof(pr));
	pr.kind = PROFILE_ROOT;
	pr.cn = cn;
	pr.org = ca->trust_domain;
	pr.not_before = (int64_t)now - BACKDATE;
	if (ca_until((int64_t)now, r->new_root ? 0 : r->ttl, ROOT_TTL,
	    "--ttl", &pr.not_after, err) != 0 ||
	    signer_sign(sg, NULL, &pr, &root, err) != 0)
		goto out;
	if ((rc = store_add(ca->store, root, "root", err)) != 0) {
		if (rc == 1)
			error_set(err, MTLS_ERR_IO, "serial collision");
		goto out;
	}
	/* the cross-certificate: the new root's name and key, signed by the
	 * old root, a CA no longer-lived than it, with no path length */
	pr.kind = PROFILE_CROSS;
	pr.pubkey = pub;
	memset(&res, 0, sizeof(res));
	pr.not_after = ca_clamp(ca, pr.not_after, &res);
	if (ca_sign_record(ca, &pr, "intermediate", &cross, err) != 0)
		goto out;
	ca_path(p, sizeof(p), ca->dir, "rotation/new.key");
	if (signer_write(sg, p, pass, err) != 0 ||
	    write_one(ca->dir, "rotation/new.pem", root, err) != 0 ||
	    write_one(ca->dir, "rotation/cross.pem", cross, err) != 0)
		goto out;
	*rootp = root;
	*crossp = cross;
	*sgp = sg;
	root = cross = NULL;
	sg = NULL;
	rv = 0;
 out:
	X509_free(root);
	X509_free(cross);
	EVP_PKEY_free(pub);
	signer_free(sg);
	return rv;
}

/* prepare (a root served directly): a new root and its cross-certificate
 * in DIR/rotation/ */
static int
prepare(struct ca *ca, const struct rot_req *r, struct rot_state *st,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct signer *sg = NULL;
	X509 *root = NULL, *cross = NULL;
	int rv = -1;

	if (is_root_dir(ca, err) != 0 || want_phase(st, ROT_NONE, ROT_RETIRED,
	    "prepare", err) != 0 || rot_dir(ca->dir, st->at, err) != 0)
		return -1;
	if (r->pass_file != NULL && secret_load_pass(&pass, r->pass_file,
	    err) != 0)
		goto out;
	if (make_root(ca, r, &pass, &root, &cross, &sg, err) != 0)
		goto out;
	if (fp(ca->cert, st->old_root) != 0 || fp(root, st->new_root) != 0) {
		error_set(err, MTLS_ERR_CRYPTO, "cannot hash a certificate");
		goto out;
	}
	st->kind = ROT_KIND_ROOT;
	memcpy(st->old_ca, st->old_root, sizeof(st->old_ca));
	memcpy(st->new_ca, st->new_root, sizeof(st->new_ca));
	name_oneline(X509_get_subject_name(ca->cert), st->old_issuer,
	    sizeof(st->old_issuer));
	serial_hex(X509_get0_serialNumber(cross), st->cross_serial,
	    sizeof(st->cross_serial));
	st->published_gen[0] = st->final_gen[0] = '\0';
	st->phase = ROT_PREPARED;
	rv = state_write(ca->dir, st, err);
 out:
	X509_free(root);
	X509_free(cross);
	signer_free(sg);
	secret_clear(&pass);
	return rv;
}

/* <a> and <b> carry the same extension <obj> (criticality and bytes), or
 * neither does. */
static int
ext_same(X509 *a, X509 *b, const ASN1_OBJECT *obj)
{
	int i = X509_get_ext_by_OBJ(a, obj, -1);
	int j = X509_get_ext_by_OBJ(b, obj, -1);
	X509_EXTENSION *ea, *eb;

	if (i < 0 || j < 0)
		return i < 0 && j < 0;
	ea = X509_get_ext(a, i);
	eb = X509_get_ext(b, j);
	return X509_EXTENSION_get_critical(ea) ==
	    X509_EXTENSION_get_critical(eb) && ASN1_OCTET_STRING_cmp(
	    X509_EXTENSION_get_data(ea), X509_EXTENSION_get_data(eb)) == 0;
}

/* What the old intermediate may issue, the new one may: its name
 * constraints, scope and path length, checked byte for byte. */
static int
same_scope(X509 *old, X509 *nw, const char *oid, struct mtls_error *err)
{
	static const int nids[] = { NID_name_constraints,
	    NID_basic_constraints, NID_key_usage };
	ASN1_OBJECT *o;
	size_t i;
	int ok = 1;

	for (i = 0; ok && i < sizeof(nids) / sizeof(nids[0]); i++)
		ok = ext_same(old, nw, OBJ_nid2obj(nids[i]));
	if (ok && (o = OBJ_txt2obj(oid, 1)) != NULL) {
		ok = ext_same(old, nw, o);
		ASN1_OBJECT_free(o);
	}
	if (ok)
		return 0;
	return error_set(err, MTLS_ERR_ARG, "the new intermediate's name "
	    "constraints, scope or path length would differ from the old "
	    "one's (the parent's trust domain or scope_oid changed since?); "
	    "nothing was written");
}

/* The new intermediate's common name: the old one's, without the date a
 * rotation added to it, and the date now (the inventory tells leaves of
 * the two apart by issuer name). */
static void
int_cn(X509 *old, char *cn, size_t len)
{
	char base[65] = "", stamp[32];
	int n;

	n = X509_NAME_get_text_by_NID(X509_get_subject_name(old),
	    NID_commonName, base, sizeof(base));
	if (n < 0)
		n = snprintf(base, sizeof(base), "Intermediate CA");
	/* " 2026-12-04T185336Z": 19 characters */
	if (n > 19 && base[n - 19] == ' ' && base[n - 18] == '2' &&
	    base[n - 8] == 'T' && base[n - 1] == 'Z')
		base[n - 19] = '\0';
	base[43] = '\0';	/* a CN is at most 64 characters */
	stamp_now(time(NULL), stamp);
	snprintf(cn, len, "%s %s", base, stamp);
}

/* Unexpired, unrevoked certificates <parent>'s root issued, but <ca>'s. */
static int
other_cas(struct ca *ca, struct ca *parent, int64_t now, int64_t *out,
    struct mtls_error *err)
{
	char iss[256], serial[48];
	int64_t n[3] = { 0, 0, 0 };

	name_oneline(X509_get_subject_name(parent->cert), iss, sizeof(iss));
	serial_hex(X509_get0_serialNumber(ca->cert), serial, sizeof(serial));
	if (store_rotation_count(parent->store, iss, serial, "", "", now, n,
	    err) != 0)
		return -1;
	*out = n[0];
	return 0;
}

/* prepare (an intermediate under the offline root <parent>): a new
 * intermediate key and certificate in DIR/rotation/ (new.key, new.pem)
 * with the old one's scope; with r->new_root, first a new root in
 * <parent>/rotation/ (as a root's prepare makes one), which signs the new
 * intermediate, and the same intermediate signed by the old root
 * (DIR/rotation/intcross.pem: what agents trust a CA server of ours by,
 * docs/rotation.md). Each certificate is recorded in <parent>'s inventory
 * before a file holds it. */
static int
prepare_int(struct ca *ca, struct ca *parent, const struct rot_req *r,
    struct rot_status *rs, struct mtls_error *err)
{
	struct rot_state *st = &rs->st;
	struct mtls_secret pass = { NULL, 0 }, ppass = { NULL, 0 };
	struct signer *sg = NULL, *rsg = NULL;
	struct keystore_made made = { 0 };
	struct mtls_error e2;
	struct profile_req pr;
	struct ca_result res;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *pub = NULL;
	X509 *root = NULL, *cross = NULL, *nint = NULL, *icross = NULL;
	char cn[80], p[PATH_MAX], **spf = NULL, **dns = NULL;
	const char *oid = parent->scope_oid[0] ? parent->scope_oid :
	    profile_scope_oid_default();
	size_t nspf = 0, ndns = 0;
	int64_t now = (int64_t)time(NULL), root_end;
	int rc, rv = -1;

	if (is_int_dir(ca, parent, r->new_root, r->key_uri, err) != 0 ||
	    want_phase(st, ROT_NONE, ROT_RETIRED, "prepare", err) != 0)
		return -1;
	/* the inventory tells the old and the new intermediate's leaves
	 * apart by issuer name: made this second, the current one has it */
	int_cn(ca->cert, cn, sizeof(cn));
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(ca->cert),
	    NID_commonName, p, sizeof(p)) > 0 && strcmp(p, cn) == 0)
		return error_set(err, MTLS_ERR_ARG, "%s: the new intermediate "
		    "would be named '%s' like the current one (made this "
		    "second): run prepare again", ca->dir, cn);
	if ((r->pass_file != NULL && secret_load_pass(&pass, r->pass_file,
	    err) != 0) || (r->parent_pass_file != NULL && secret_load_pass(
	    &ppass, r->parent_pass_file, err) != 0))
		goto out;
	if (profile_spiffe_scope(ca->cert, oid, &spf, &nspf) < 0 ||
	    profile_dns_scope(ca->cert, &dns, &ndns) < 0) {
		error_set(err, MTLS_ERR_PARSE, "%s/ca.pem: its scope or name "
		    "constraints cannot be read", ca->dir);
		goto out;
	}
	/* the other CAs under the old root (PDIR's inventory) stop
	 * verifying at retire too; status cannot count them (it reads DIR's
	 * inventory), so prepare says how many there are now */
	if (r->new_root && other_cas(ca, parent, now, &rs->parent_others,
	    err) != 0)
		goto out;
	if (r->key_uri != NULL && (!keystore_is_uri(r->key_uri) ||
	    strlen(r->key_uri) > P11URI_MAX)) {
		error_set(err, MTLS_ERR_ARG, "--key-uri must be a pkcs11: URI "
		    "of at most %d bytes", P11URI_MAX);
		goto out;
	}
	if ((r->key_uri != NULL ? signer_token(&sg, r->key_uri, r->key_type <
	    0 ? KEY_EC_P256 : r->key_type, 0, &made, err) : signer_generate(
	    &sg, r->key_type < 0 ? KEY_EC_P256 : r->key_type, err)) != 0 ||
	    signer_public(sg, &pub, err) != 0)
		goto out;
	if (rot_dir(ca->dir, st->at, err) != 0)
		goto out;
	if (r->new_root && (rot_dir(parent->dir, now, err) != 0 ||
	    make_root(parent, r, &ppass, &root, &cross, &rsg, err) != 0))
		goto out;
	memset(&pr, 0, sizeof(pr));
	memset(&res, 0, sizeof(res));
	pr.kind = PROFILE_INTERMEDIATE;
	pr.cn = cn;
	pr.org = parent->trust_domain;
	pr.not_before = now - BACKDATE;
	if (ca_until(now, r->ttl, INT_TTL, "--ttl", &pr.not_after, err) != 0)
		goto out;
	pr.pubkey = pub;
	if (X509_get_ext_by_NID(ca->cert, NID_name_constraints, -1) >= 0)
		pr.permit_td = parent->trust_domain;
	pr.permit_spiffe = spf;
	pr.n_permit_spiffe = nspf;
	pr.permit_dns = dns;
	pr.n_permit_dns = ndns;
	pr.scope_oid = parent->scope_oid[0] ? parent->scope_oid : NULL;
	pr.crl_url = parent->crl_url;
	pr.ocsp_url = parent->ocsp_url;
	if (root != NULL) {
		root_end = asn1_time_unix(X509_get0_notAfter(root));
		if (pr.not_after > root_end)
			pr.not_after = root_end;
		if (signer_sign(rsg, root, &pr, &nint, err) != 0)
			goto out;
		if ((rc = store_add(parent->store, nint, "intermediate",
		    err)) != 0) {
			if (rc == 1)
				error_set(err, MTLS_ERR_IO, "serial collision");
			goto out;
		}
		pr.not_after = ca_clamp(parent, pr.not_after, &res);
		if (ca_sign_record(parent, &pr, "intermediate", &icross,
		    err) != 0)
			goto out;
	} else {
		pr.not_after = ca_clamp(parent, pr.not_after, &res);
		if (ca_sign_record(parent, &pr, "intermediate", &nint,
		    err) != 0)
			goto out;
	}
	if (same_scope(ca->cert, nint, oid, err) != 0)
		goto out;
	/* new.pem is ca.pem to be: the intermediate and the CAs between it
	 * and its root */
	if (ca_chain_stack(nint, root != NULL ? NULL : parent->chain, &chain,
	    err) != 0)
		goto out;
	if (r->key_uri != NULL) {	/* the URI (no PIN in it), 0600 */
		char line[P11URI_MAX + 2];
		int n = snprintf(line, sizeof(line), "%s\n", r->key_uri);

		ca_path(p, sizeof(p), ca->dir, "rotation/new.keyuri");
		if (fs_write_atomic(p, line, (size_t)n, 0600, 0, err) != 0)
			goto out;
	} else {
		ca_path(p, sizeof(p), ca->dir, "rotation/new.key");
		if (signer_write(sg, p, &pass, err) != 0)
			goto out;
	}
	ca_path(p, sizeof(p), ca->dir, "rotation/new.pem");
	if (ca_write_certs(p, chain, 1, err) != 0)
		goto out;
	if (root != NULL && (write_one(ca->dir, "rotation/root.pem", root,
	    err) != 0 || write_one(ca->dir, "rotation/cross.pem", cross,
	    err) != 0 || write_one(ca->dir, "rotation/intcross.pem", icross,
	    err) != 0))
		goto out;
	if (fp(parent->cert, st->old_root) != 0 || fp(root != NULL ? root :
	    parent->cert, st->new_root) != 0 || fp(ca->cert, st->old_ca) !=
	    0 || fp(nint, st->new_ca) != 0) {
		error_set(err, MTLS_ERR_CRYPTO, "cannot hash a certificate");
		goto out;
	}
	st->kind = root != NULL ? ROT_KIND_INT_ROOT : ROT_KIND_INT;
	name_oneline(X509_get_subject_name(ca->cert), st->old_issuer,
	    sizeof(st->old_issuer));
	/* what the rotation signed under the old root: the cross-certificate,
	 * or the new intermediate */
	serial_hex(X509_get0_serialNumber(cross != NULL ? cross : nint),
	    st->cross_serial, sizeof(st->cross_serial));
	st->published_gen[0] = st->final_gen[0] = '\0';
	st->phase = ROT_PREPARED;
	rv = state_write(ca->dir, st, err);
 out:
	if (rv != 0) {	/* the key pair made in the token goes too */
		error_clear(&e2);
		if (keystore_undo(&made, &e2) != 0)
			snprintf(err->msg + strlen(err->msg), sizeof(err->msg) -
			    strlen(err->msg), "; %s", e2.msg);
	}
	sk_X509_free(chain);
	X509_free(root);
	X509_free(cross);
	X509_free(nint);
	X509_free(icross);
	EVP_PKEY_free(pub);
	signer_free(sg);
	signer_free(rsg);
	strv_free(spf, nspf);
	strv_free(dns, ndns);
	secret_clear(&pass);
	secret_clear(&ppass);
	return rv;
}

/* <sk> with <x> added unless it holds it already (a reference taken). */
static int
sk_add(STACK_OF(X509) *sk, X509 *x)
{
	int i;

	for (i = 0; i < sk_X509_num(sk); i++)
		if (X509_cmp(sk_X509_value(sk, i), x) == 0)
			return 0;
	if (!sk_X509_push(sk, x))
		return -1;
	X509_up_ref(x);
	return 0;
}

/* <sk> without the certificate whose SHA-256 is <hex>, nor <y>. */
static void
sk_drop(STACK_OF(X509) *sk, const char *hex, X509 *y)
{
	char h[65];
	int i;

	for (i = sk_X509_num(sk) - 1; i >= 0; i--) {
		X509 *x = sk_X509_value(sk, i);

		if ((hex != NULL && fp(x, h) == 0 && strcmp(h, hex) == 0) ||
		    (y != NULL && X509_cmp(x, y) == 0)) {
			(void)sk_X509_delete(sk, i);
			X509_free(x);
		}
	}
}

/* What publish adds to DIR's bundle, by kind (files of DIR/rotation/);
 * the first is the new root, which stays after retire (a new
 * intermediate does not: agents need it only until they renew under it). */
static const char *const added_files[ROT_KIND__COUNT][3] = {
	{ "rotation/new.pem", "rotation/cross.pem", NULL },
	{ "rotation/new.pem", NULL, NULL },
	{ "rotation/root.pem", "rotation/cross.pem", "rotation/intcross.pem" },
};

static int
load_added(const char *dir, const struct rot_state *st, X509 *add[3],
    struct mtls_error *err)
{
	char h[65];
	int k;

	for (k = 0; k < 3; k++) {
		add[k] = NULL;
		if (added_files[st->kind][k] != NULL && load_one(dir,
		    added_files[st->kind][k], &add[k], err) != 0)
			return -1;
	}
	if (fp(add[0], h) != 0 || strcmp(h, st->kind == ROT_KIND_INT ?
	    st->new_ca : st->new_root) != 0)
		return error_set(err, MTLS_ERR_PARSE, "%s/%s is not the "
		    "certificate rotation.json names", dir,
		    added_files[st->kind][0]);
	return 0;
}

/*
 * publish takes the files of rotation/ only as prepare wrote them: add[0]
 * is what rotation.json names (load_added); everything signed by the old
 * issuer (the CA whose SHA-256 rotation.json records, found in bundle.pem
 * or ca.pem's chain) is a CA certificate it did sign: a new intermediate
 * under the same parent, with the recorded serial; the cross-certificate,
 * of add[0]'s name and key, with the recorded serial; intcross, of the new
 * intermediate's. A file edited since would otherwise go into the bundle
 * every client takes.
 */
static int
added_ok(struct ca *ca, const struct rot_state *st, X509 *add[3],
    struct mtls_error *err)
{
	X509 *old = NULL, *twin, *nint = NULL;
	char h[65], serial[48];
	int i, k, ok = 1;

	/* a root of the bundle, or (a new intermediate under an
	 * intermediate) the parent in ca.pem's chain */
	for (i = 0; old == NULL && i < sk_X509_num(ca->bundle) +
	    sk_X509_num(ca->chain); i++) {
		twin = i < sk_X509_num(ca->bundle) ? sk_X509_value(ca->bundle,
		    i) : sk_X509_value(ca->chain, i - sk_X509_num(ca->bundle));
		if (fp(twin, h) == 0 && strcmp(h, st->old_root) == 0)
			old = twin;
	}
	if (old == NULL)
		return error_set(err, MTLS_ERR_PARSE, "%s: neither bundle.pem "
		    "nor ca.pem holds the CA rotation.json names as the old "
		    "one's issuer; nothing changed", ca->dir);
	if (st->kind == ROT_KIND_INT) {
		serial_hex(X509_get0_serialNumber(add[0]), serial,
		    sizeof(serial));
		ok = cert_issued_by(old, add[0]) && X509_check_ca(add[0]) > 0 &&
		    strcmp(serial, st->cross_serial) == 0;
	}
	if (ok && add[2] != NULL && load_one(ca->dir, "rotation/new.pem",
	    &nint, err) != 0)
		return -1;
	for (k = 1; ok && k < 3; k++) {
		if (add[k] == NULL)
			continue;
		twin = k == 1 ? add[0] : nint;
		ok = twin != NULL && X509_check_ca(add[k]) > 0 &&
		    cert_issued_by(old, add[k]) &&
		    X509_NAME_cmp(X509_get_subject_name(add[k]),
		    X509_get_subject_name(twin)) == 0 &&
		    EVP_PKEY_eq(X509_get0_pubkey(add[k]),
		    X509_get0_pubkey(twin)) == 1;
		if (ok && k == 1) {
			serial_hex(X509_get0_serialNumber(add[k]), serial,
			    sizeof(serial));
			ok = strcmp(serial, st->cross_serial) == 0;
		}
	}
	X509_free(nint);
	ERR_clear_error();
	return ok ? 0 : error_set(err, MTLS_ERR_PARSE, "%s/rotation: its "
	    "certificates are not those rotation.json names, signed by the "
	    "old root (edited since prepare?); nothing changed", ca->dir);
}

static void
free_added(X509 *add[3])
{
	int k;

	for (k = 0; k < 3; k++)
		X509_free(add[k]);
}

/* <b> as it is after retire: without the old root (not replaced by a new
 * intermediate's rotation) and what publish added but the new root */
static void
final_bundle(STACK_OF(X509) *b, const struct rot_state *st, X509 *add[3])
{
	int k;

	if (st->kind != ROT_KIND_INT)
		sk_drop(b, st->old_root, NULL);
	for (k = st->kind == ROT_KIND_INT ? 0 : 1; k < 3; k++)
		if (add[k] != NULL)
			sk_drop(b, NULL, add[k]);
}

static STACK_OF(X509) *
bundle_dup(struct ca *ca)
{
	STACK_OF(X509) *b = sk_X509_dup(ca->bundle);
	int i;

	for (i = 0; b != NULL && i < sk_X509_num(b); i++)
		X509_up_ref(sk_X509_value(b, i));
	return b;
}

/* publish: bundle.pem holds what comes next beside what is trusted now
 * (the new root and its cross-certificate, the new intermediate, or all
 * three: added_files); the generations agents will report are fixed now */
static int
publish(struct ca *ca, struct rot_state *st, struct mtls_error *err)
{
	STACK_OF(X509) *b = NULL;
	X509 *add[3] = { NULL, NULL, NULL };
	char p[PATH_MAX];
	int rv = -1, k;

	if (want_phase(st, ROT_PREPARED, ROT_PUBLISHED, "publish", err) != 0)
		return -1;
	if (load_added(ca->dir, st, add, err) != 0 ||
	    added_ok(ca, st, add, err) != 0)
		goto out;
	if ((b = bundle_dup(ca)) == NULL)
		goto nomem;
	for (k = 0; k < 3; k++)
		if (add[k] != NULL && sk_add(b, add[k]) != 0)
			goto nomem;
	if (rotation_generation(b, st->published_gen) != 0)
		goto nomem;
	ca_path(p, sizeof(p), ca->dir, "bundle.pem");
	if (ca_write_certs(p, b, 1, err) != 0)
		goto out;
	final_bundle(b, st, add);
	if (rotation_generation(b, st->final_gen) != 0)
		goto nomem;
	st->phase = ROT_PUBLISHED;
	rv = state_write(ca->dir, st, err);
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	sk_X509_pop_free(b, X509_free);
	free_added(add);
	return rv;
}

/* Copies <from> to <to> (mode <mode>) unless <to> exists: a step run
 * again after a crash must not copy the new files over the old ones. */
static int
copy_once(const char *dir, const char *from, const char *to, mode_t mode,
    struct mtls_error *err)
{
	char a[PATH_MAX], b[PATH_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv;

	ca_path(a, sizeof(a), dir, from);
	ca_path(b, sizeof(b), dir, to);
	if (access(b, F_OK) == 0)
		return 0;
	if (fs_read(a, 1 << 20, &buf, &len, err) != 0)
		return -1;
	rv = fs_write_atomic(b, buf, len, mode, 0, err);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rv;
}

/* The issuing key of <dir> before the switch, kept once: a key in a token
 * (ca.keyuri, which wins over ca.key) as its URI in rotation/old.keyuri,
 * else ca.key as rotation/old.key. Once either is kept, a run again after
 * a crash copies nothing (ca.keyuri may be the new key's by then). */
static int
keep_old_key(const char *dir, struct mtls_error *err)
{
	char p[PATH_MAX], q[PATH_MAX];

	ca_path(p, sizeof(p), dir, "rotation/old.keyuri");
	ca_path(q, sizeof(q), dir, "rotation/old.key");
	if (access(p, F_OK) == 0 || access(q, F_OK) == 0)
		return 0;
	ca_path(p, sizeof(p), dir, "ca.keyuri");
	if (access(p, F_OK) == 0)
		return copy_once(dir, "ca.keyuri", "rotation/old.keyuri", 0600,
		    err);
	return copy_once(dir, "ca.key", "rotation/old.key", 0600, err);
}

/* ca.pem and the key of <dir> become rotation/new.pem and new.key (or
 * new.keyuri); the old ones are kept as rotation/old.pem and old.key (or
 * old.keyuri) (once: run again after a crash, the step does not copy the
 * new files over them). */
static int
swap_files(const char *dir, const char *old, struct mtls_error *err)
{
	char p[PATH_MAX], a[PATH_MAX];
	uint8_t *key = NULL;
	size_t klen = 0;
	int rv = -1;

	if (copy_once(dir, "ca.pem", "rotation/old.pem", 0644, err) != 0 ||
	    keep_old_key(dir, err) != 0 || old_ok(dir, old, err) != 0)
		return -1;
	ca_path(p, sizeof(p), dir, "rotation/new.keyuri");
	if (access(p, F_OK) == 0) {	/* the new key is in a token */
		ca_path(a, sizeof(a), dir, "ca.keyuri");
		if (copy_once(dir, "rotation/new.keyuri", "ca.keyuri.new",
		    0600, err) != 0)
			return -1;
		ca_path(p, sizeof(p), dir, "ca.keyuri.new");
		if (rename(p, a) != 0)
			return error_set_errno(err, MTLS_ERR_IO, "%s", a);
		/* kept as rotation/old.key (a file key before); ca.keyuri
		 * wins over it anyway */
		ca_path(p, sizeof(p), dir, "ca.key");
		if (unlink(p) != 0 && errno != ENOENT)
			return error_set_errno(err, MTLS_ERR_IO, "%s", p);
		goto pem;
	}
	ca_path(p, sizeof(p), dir, "rotation/new.key");
	if (fs_read(p, 1 << 20, &key, &klen, err) != 0)
		goto out;
	ca_path(p, sizeof(p), dir, "ca.key");
	if (fs_write_atomic(p, key, klen, 0600, 1, err) != 0)
		goto out;
	/* a ca.keyuri left would win over the new ca.key */
	ca_path(p, sizeof(p), dir, "ca.keyuri");
	if (unlink(p) != 0 && errno != ENOENT) {
		error_set_errno(err, MTLS_ERR_IO, "%s", p);
		goto out;
	}
 pem:
	if (copy_once(dir, "rotation/new.pem", "ca.pem.new", 0644, err) != 0)
		goto out;
	ca_path(a, sizeof(a), dir, "ca.pem.new");
	ca_path(p, sizeof(p), dir, "ca.pem");
	if (rename(a, p) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "%s", p);
		goto out;
	}
	rv = 0;
 out:
	if (key != NULL)
		OPENSSL_cleanse(key, klen);
	free(key);
	return rv;
}

/* Whether files <a> and <b> of <dir> hold the same bytes. */
static int
same_bytes(const char *dir, const char *a, const char *b)
{
	struct mtls_error e;
	char p[PATH_MAX];
	uint8_t *x = NULL, *y = NULL;
	size_t xl = 0, yl = 0;
	int same;

	ca_path(p, sizeof(p), dir, a);
	same = fs_read(p, 1 << 20, &x, &xl, &e) == 0;
	ca_path(p, sizeof(p), dir, b);
	same = same && fs_read(p, 1 << 20, &y, &yl, &e) == 0 && xl == yl &&
	    memcmp(x, y, xl) == 0;
	if (x != NULL)
		OPENSSL_cleanse(x, xl);
	if (y != NULL)
		OPENSSL_cleanse(y, yl);
	free(x);
	free(y);
	return same;
}

/*
 * swap_files writes the new key (ca.key, or ca.keyuri) before it renames
 * ca.pem: a crash between the two leaves, in phase published, ca.pem
 * still rotation/old.pem beside the new key, and no command opens the CA.
 * In exactly that state the old key (kept as rotation/old.key) goes back
 * to ca.key, so that switch runs again from its start; anything else
 * (a key that is not the new one) is left as it is.
 */
static int
switch_resume(const char *dir, struct mtls_error *err)
{
	struct rot_state st;
	char p[PATH_MAX];
	uint8_t *key = NULL;
	size_t klen = 0;
	int rv, uri;

	if (rotation_state_read(dir, &st, err) != 0)
		return -1;
	if (st.phase != ROT_PUBLISHED ||
	    !same_bytes(dir, "ca.pem", "rotation/old.pem"))
		return 0;
	uri = same_bytes(dir, "ca.keyuri", "rotation/new.keyuri");
	if (!uri && !same_bytes(dir, "ca.key", "rotation/new.key"))
		return 0;
	ca_path(p, sizeof(p), dir, "rotation/old.key");
	if (fs_read(p, 1 << 20, &key, &klen, err) != 0)
		return -1;
	ca_path(p, sizeof(p), dir, "ca.key");
	rv = fs_write_atomic(p, key, klen, 0600, 1, err);
	OPENSSL_cleanse(key, klen);
	free(key);
	ca_path(p, sizeof(p), dir, "ca.keyuri");
	if (rv == 0 && uri && unlink(p) != 0)
		rv = error_set_errno(err, MTLS_ERR_IO, "%s", p);
	return rv;
}

/* A rotation/old.key already there (a run again, or a planted file) is
 * kept by swap_files, and ca.key is overwritten next: it must be the key
 * of rotation/old.pem, or the old issuer's key would be lost. */
static int
old_key_ok(const char *dir, const struct mtls_secret *pass,
    struct mtls_error *err)
{
	struct mtls_error e;
	struct signer *osg = NULL;
	X509 *old = NULL;
	char k[PATH_MAX], c[PATH_MAX];
	int rv;

	ca_path(k, sizeof(k), dir, "rotation/old.key");
	ca_path(c, sizeof(c), dir, "rotation/old.pem");
	if (access(k, F_OK) != 0 || access(c, F_OK) != 0)
		return 0;
	error_clear(&e);
	rv = load_one(dir, "rotation/old.pem", &old, &e) != 0 ||
	    signer_load(&osg, k, pass, old, &e) != 0 ? -1 : 0;
	signer_free(osg);
	X509_free(old);
	return rv == 0 ? 0 : error_set(err, MTLS_ERR_PARSE, "%s: not the key "
	    "of rotation/old.pem, which switch keeps (%s); nothing changed",
	    k, e.msg);
}

/* switch: ca.pem and ca.key become the new issuing CA's (the old ones kept
 * in rotation/ for the renewals of the old CA's leaves); with a new root
 * above an intermediate, the offline root's directory takes the new root
 * first (its bundle.pem: the new root alone) */
static int
do_switch(struct ca *ca, struct ca *parent, const struct rot_req *r,
    struct rot_state *st, struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 }, ppass = { NULL, 0 };
	struct mtls_error e;
	struct signer *sg = NULL, *psg = NULL;
	X509 *nw = NULL, *root = NULL;
	char p[PATH_MAX], q[PATH_MAX], h[65];
	int rv = -1;

	if (want_phase(st, ROT_PUBLISHED, ROT_PUBLISHED, "switch", err) != 0)
		return -1;
	if (st->kind == ROT_KIND_INT_ROOT && parent == NULL)
		return error_set(err, MTLS_ERR_ARG, "rotation switch: give the "
		    "offline root's directory with --parent: it takes the new "
		    "root now");
	if (r->pass_file != NULL && secret_load_pass(&pass, r->pass_file,
	    err) != 0)
		return -1;
	/* the new key: rotation/new.keyuri's token, or rotation/new.key */
	ca_path(q, sizeof(q), ca->dir, "rotation/new.keyuri");
	ca_path(p, sizeof(p), ca->dir, "rotation/new.key");
	if (access(q, F_OK) == 0 && ca_keyuri_read(q, p, sizeof(p), err) != 0)
		goto out;
	if (load_one(ca->dir, "rotation/new.pem", &nw, err) != 0 ||
	    fp(nw, h) != 0 || strcmp(h, st->new_ca) != 0 ||
	    signer_load(&sg, p, &pass, nw, err) != 0) {
		if (err->msg[0] == '\0')
			error_set(err, MTLS_ERR_PARSE, "%s/rotation/new.pem is "
			    "not the CA rotation.json names", ca->dir);
		goto out;
	}
	if (old_key_ok(ca->dir, &pass, err) != 0)
		goto out;
	if (st->kind == ROT_KIND_INT_ROOT) {
		if (load_one(parent->dir, "rotation/new.pem", &root, err) != 0)
			goto out;
		if (fp(root, h) != 0 || strcmp(h, st->new_root) != 0 ||
		    !cert_issued_by(root, nw)) {
			error_set(err, MTLS_ERR_ARG, "%s/rotation/new.pem is "
			    "not the new root rotation.json names (another "
			    "--parent?)", parent->dir);
			goto out;
		}
		/* PDIR's new.key becomes its ca.key: the new root's key, as
		 * DIR's is checked above (else the offline root is lost) */
		if (r->parent_pass_file != NULL && secret_load_pass(&ppass,
		    r->parent_pass_file, err) != 0)
			goto out;
		ca_path(q, sizeof(q), parent->dir, "rotation/new.key");
		error_clear(&e);
		if (signer_load(&psg, q, &ppass, root, &e) != 0) {
			error_set(err, MTLS_ERR_ARG, "%s: not the key of the new "
			    "root %s/rotation/new.pem, or encrypted and no "
			    "--parent-pass-file opens it; nothing changed", q,
			    parent->dir);
			goto out;
		}
		if (old_key_ok(parent->dir, &ppass, err) != 0)
			goto out;
		if (swap_files(parent->dir, st->old_root, err) != 0 ||
		    write_one(parent->dir, "bundle.pem", root, err) != 0)
			goto out;
	}
	if (swap_files(ca->dir, st->old_ca, err) != 0)
		goto out;
	st->phase = ROT_SWITCHED;
	rv = state_write(ca->dir, st, err);
 out:
	X509_free(nw);
	X509_free(root);
	signer_free(sg);
	signer_free(psg);
	secret_clear(&pass);
	secret_clear(&ppass);
	return rv;
}

/* retire: bundle.pem as publish computed it would end (final_bundle); a
 * new intermediate's rotation revokes the old intermediate in the
 * inventory of the root above it (its CRL then says so: mtls ca crl) */
static int
retire(struct ca *ca, struct ca *parent, struct rot_state *st,
    struct mtls_error *err)
{
	STACK_OF(X509) *b = NULL;
	struct ca_result res;
	X509 *add[3] = { NULL, NULL, NULL }, *old = NULL;
	char p[PATH_MAX], g[65], serial[48];
	int rv = -1, already = 0;

	if (want_phase(st, ROT_SWITCHED, ROT_SWITCHED, "retire", err) != 0)
		return -1;
	if (st->kind == ROT_KIND_INT && parent == NULL)
		return error_set(err, MTLS_ERR_ARG, "rotation retire: give the "
		    "root's directory with --parent: the old intermediate is "
		    "revoked there");
	if (load_added(ca->dir, st, add, err) != 0)
		goto out;
	if ((b = bundle_dup(ca)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	final_bundle(b, st, add);
	if (sk_X509_num(b) == 0 || rotation_generation(b, g) != 0 ||
	    strcmp(g, st->final_gen) != 0) {
		error_set(err, MTLS_ERR_ARG, "%s/bundle.pem: without the old "
		    "root it is not the bundle that was published (edited "
		    "since?); nothing changed", ca->dir);
		goto out;
	}
	if (st->kind == ROT_KIND_INT) {
		if (load_one(ca->dir, "rotation/old.pem", &old, err) != 0)
			goto out;
		if (!cert_issued_by(parent->cert, old)) {
			error_set(err, MTLS_ERR_ARG, "%s: the CA there did not "
			    "issue the old intermediate (%s/rotation/old.pem); "
			    "nothing changed", parent->dir, ca->dir);
			goto out;
		}
		serial_hex(X509_get0_serialNumber(old), serial,
		    sizeof(serial));
		if (ca_revoke(parent, serial, 4 /* superseded */, &res,
		    &already, err) != 0)
			goto out;
	}
	ca_path(p, sizeof(p), ca->dir, "bundle.pem");
	if (ca_write_certs(p, b, 1, err) != 0)
		goto out;
	st->phase = ROT_RETIRED;
	rv = state_write(ca->dir, st, err);
 out:
	sk_X509_pop_free(b, X509_free);
	free_added(add);
	X509_free(old);
	return rv;
}

int
rotation_step(const struct rot_req *r, struct rot_status *rs,
    struct mtls_error *err)
{
	struct ca *ca = NULL, *parent = NULL;
	int rv = -1, key = r->step == ROT_PREPARED || r->step == ROT_SWITCHED;

	memset(rs, 0, sizeof(*rs));
	if (r->new_root && (r->parent_dir == NULL || r->step !=
	    ROT_PREPARED))
		return error_set(err, MTLS_ERR_ARG, "--new-root is for prepare, "
		    "with --parent");
	if ((r->parent_pass_file != NULL && (r->parent_dir == NULL ||
	    (r->step != ROT_PREPARED && r->step != ROT_SWITCHED))) ||
	    (r->key_uri != NULL && (r->parent_dir == NULL || r->step !=
	    ROT_PREPARED)))
		return error_set(err, MTLS_ERR_ARG, "--parent-pass-file goes "
		    "with prepare or switch --parent, --key-uri with prepare "
		    "--parent");
	if (r->step == ROT_SWITCHED && switch_resume(r->dir, err) != 0)
		return -1;
	if ((key ? ca_open(&ca, r->dir, r->pass_file, err) :
	    ca_open_readonly(&ca, r->dir, err)) != 0)
		return -1;
	/* the offline root's key is needed to sign (prepare) only */
	if (r->parent_dir != NULL && (r->step == ROT_PREPARED ?
	    ca_open(&parent, r->parent_dir, r->parent_pass_file, err) :
	    ca_open_readonly(&parent, r->parent_dir, err)) != 0)
		goto out;
	if (rotation_status(ca, rs, err) != 0)
		goto out;
	if (parent != NULL && r->step != ROT_PREPARED &&
	    rs->st.phase != ROT_NONE && rs->st.kind == ROT_KIND_ROOT) {
		error_set(err, MTLS_ERR_ARG, "--parent does not apply: %s "
		    "rotates the root it issues from", r->dir);
		goto out;
	}
	if (rs->blocked && !r->force && r->step == rs->st.phase + 1) {
		error_set(err, MTLS_ERR_ARG, "%s (--force goes ahead anyway)",
		    rs->next);
		rv = 1;
		goto out;
	}
	switch (r->step) {
	case ROT_PREPARED:
		rv = parent != NULL ? prepare_int(ca, parent, r, rs, err) :
		    prepare(ca, r, &rs->st, err);
		break;
	case ROT_PUBLISHED:
		rv = publish(ca, &rs->st, err);
		break;
	case ROT_SWITCHED:
		rv = do_switch(ca, parent, r, &rs->st, err);
		break;
	case ROT_RETIRED:
		rv = retire(ca, parent, &rs->st, err);
		break;
	default:
		rv = error_set(err, MTLS_ERR_ARG, "unknown rotation step");
	}
 out:
	ca_close(parent);
	ca_close(ca);
	return rv;
}
