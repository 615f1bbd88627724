/*
 * Root rotation of a CA directory (docs/rotation.md): prepare (a new root
 * and a cross-certificate of it from the old one), publish (the bundle
 * holds both), switch (issuance under the new root), retire (the bundle
 * holds the new root only). DIR/rotation.json says where a rotation is;
 * it is written last, atomically, once the files it names are durable, so
 * a step interrupted leaves the phase before it (and may be run again).
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
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca_local.h"

#define STATE_MAX	(16 * 1024)

const char *const rot_phase_names[ROT__COUNT] = { "none", "prepared",
    "published", "switched", "retired" };

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
	char p[PATH_MAX], ph[16];
	uint8_t *buf = NULL;
	size_t len;
	json_t *o = NULL;
	json_error_t je;
	int i, rv = -1;

	memset(st, 0, sizeof(*st));
	ca_path(p, sizeof(p), dir, "rotation.json");
	if (access(p, F_OK) != 0)
		return 0;	/* no rotation yet */
	if (fs_check_private(p, "", " (whoever can write it steers the "
	    "rotation)", err) != 0 || fs_read(p, STATE_MAX, &buf, &len,
	    err) != 0)
		return -1;
	if ((o = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES,
	    &je)) == NULL || !json_is_object(o)) {
		error_set(err, MTLS_ERR_PARSE, "%s: not a JSON object (line "
		    "%d)", p, je.line);
		goto out;
	}
	if (field(o, "phase", ph, sizeof(ph), 0, p, err) != 0 ||
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

	memset(rs, 0, sizeof(*rs));
	if (rotation_state_read(ca->dir, st, err) != 0)
		return -1;
	if (st->phase != ROT_NONE && store_rotation_count(ca->store, st->old_issuer, st->cross_serial,
	    st->published_gen[0] ? st->published_gen : st->new_root,
	    st->final_gen[0] ? st->final_gen : st->new_root,
	    (int64_t)time(NULL), n, err) != 0)
		return -1;
	rs->blocking_certs = n[0];
	rs->agents_total = n[1];
	rs->agents_old = n[2];
	switch (st->phase) {
	case ROT_NONE:
	case ROT_RETIRED:
		snprintf(rs->next, sizeof(rs->next), "%s", st->phase ==
		    ROT_NONE ? "prepare: make a new root (mtls ca rotation "
		    "prepare)" : "none: the rotation is complete (prepare "
		    "starts another)");
		break;
	case ROT_PREPARED:
		snprintf(rs->next, sizeof(rs->next), "publish: put the new "
		    "root in the bundle (mtls ca rotation publish), then "
		    "reload ca serve");
		break;
	case ROT_PUBLISHED:
		rs->blocked = rs->agents_old > 0;
		if (rs->blocked)
			snprintf(rs->next, sizeof(rs->next), "switch: blocked: "
			    "%lld of %lld agents have not reported a bundle "
			    "with the new root (each reports it at its next "
			    "renewal)", (long long)rs->agents_old,
			    (long long)rs->agents_total);
		else
			snprintf(rs->next, sizeof(rs->next), "switch: issue "
			    "under the new root (mtls ca rotation switch), "
			    "then reload ca serve");
		break;
	case ROT_SWITCHED:
		rs->blocked = rs->blocking_certs > 0;
		if (rs->blocked)
			snprintf(rs->next, sizeof(rs->next), "retire: blocked: "
			    "%lld unexpired, unrevoked certificates chain to "
			    "the old root (they renew under the new one, or "
			    "expire, or are revoked)",
			    (long long)rs->blocking_certs);
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

/* A root served directly: the certificate that issues is self-signed. */
static int
is_root_dir(struct ca *ca, struct mtls_error *err)
{
	char p[PATH_MAX];

	ca_path(p, sizeof(p), ca->dir, "ca.keyuri");
	if (access(p, F_OK) == 0)
		return error_set(err, MTLS_ERR_ARG, "%s: the key is in a "
		    "PKCS#11 token; rotating it is not supported yet",
		    ca->dir);
	if (!cert_is_self_signed(ca->cert) || sk_X509_num(ca->chain) != 1)
		return error_set(err, MTLS_ERR_ARG, "%s: not a root; only a "
		    "root that ca serve issues from can be rotated now "
		    "(docs/rotation.md)", ca->dir);
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

/* prepare: a new root key and certificate, and a cross-certificate of
 * them signed by the old root; both recorded before any file holds them */
static int
prepare(struct ca *ca, const struct rot_req *r, struct rot_state *st,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct signer *sg = NULL;
	struct profile_req pr;
	struct ca_result res;
	STACK_OF(X509) *one = NULL;
	EVP_PKEY *pub = NULL;
	X509 *root = NULL, *cross = NULL;
	char cn[300], p[PATH_MAX], q[PATH_MAX], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int rc, rv = -1;

	if (is_root_dir(ca, err) != 0 || want_phase(st, ROT_NONE, ROT_RETIRED,
	    "prepare", err) != 0)
		return -1;
	ca_path(p, sizeof(p), ca->dir, "rotation");
	if (access(p, F_OK) == 0) {	/* a finished rotation's files */
		snprintf(q, sizeof(q), "%s-%lld", p, (long long)st->at);
		if (rename(p, q) != 0)
			return error_set_errno(err, MTLS_ERR_IO, "%s", p);
	}
	if (mkdir(p, 0700) != 0)
		return error_set_errno(err, MTLS_ERR_IO, "%s", p);
	if (r->pass_file != NULL && secret_load_pass(&pass, r->pass_file,
	    err) != 0)
		goto out;
	if (signer_generate(&sg, r->key_type < 0 ? KEY_EC_P256 : r->key_type,
	    err) != 0 || signer_public(sg, &pub, err) != 0)
		goto out;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H%M%SZ", &tm);
	/* a name of its own: the inventory tells the roots' leaves apart by
	 * issuer name, and so do peers building chains */
	snprintf(cn, sizeof(cn), "%s Root CA %s", ca->trust_domain, stamp);
	memset(&pr, 0, sizeof(pr));
	pr.kind = PROFILE_ROOT;
	pr.cn = cn;
	pr.org = ca->trust_domain;
	pr.not_before = (int64_t)now - BACKDATE;
	if (ca_until((int64_t)now, r->ttl, ROOT_TTL, "--ttl", &pr.not_after,
	    err) != 0 || signer_sign(sg, NULL, &pr, &root, err) != 0)
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
	if (signer_write(sg, p, &pass, err) != 0)
		goto out;
	if ((one = sk_X509_new_null()) == NULL || !sk_X509_push(one, root)) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	ca_path(p, sizeof(p), ca->dir, "rotation/new.pem");
	if (ca_write_certs(p, one, 1, err) != 0)
		goto out;
	(void)sk_X509_set(one, 0, cross);
	ca_path(p, sizeof(p), ca->dir, "rotation/cross.pem");
	if (ca_write_certs(p, one, 1, err) != 0)
		goto out;
	if (fp(ca->cert, st->old_root) != 0 || fp(root, st->new_root) != 0) {
		error_set(err, MTLS_ERR_CRYPTO, "cannot hash a certificate");
		goto out;
	}
	name_oneline(X509_get_subject_name(ca->cert), st->old_issuer,
	    sizeof(st->old_issuer));
	serial_hex(X509_get0_serialNumber(cross), st->cross_serial,
	    sizeof(st->cross_serial));
	st->published_gen[0] = st->final_gen[0] = '\0';
	st->phase = ROT_PREPARED;
	rv = state_write(ca->dir, st, err);
 out:
	sk_X509_free(one);
	X509_free(root);
	X509_free(cross);
	EVP_PKEY_free(pub);
	signer_free(sg);
	secret_clear(&pass);
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

		if ((fp(x, h) == 0 && strcmp(h, hex) == 0) ||
		    (y != NULL && X509_cmp(x, y) == 0)) {
			(void)sk_X509_delete(sk, i);
			X509_free(x);
		}
	}
}

/* publish: bundle.pem holds the old root, the new one and the cross;
 * the generations agents will report are fixed now */
static int
publish(struct ca *ca, struct rot_state *st, struct mtls_error *err)
{
	STACK_OF(X509) *b = NULL;
	X509 *root = NULL, *cross = NULL;
	char p[PATH_MAX];
	int rv = -1;

	if (want_phase(st, ROT_PREPARED, ROT_PUBLISHED, "publish", err) != 0)
		return -1;
	if (load_one(ca->dir, "rotation/new.pem", &root, err) != 0 ||
	    load_one(ca->dir, "rotation/cross.pem", &cross, err) != 0)
		goto out;
	if ((b = sk_X509_dup(ca->bundle)) == NULL)
		goto nomem;
	for (int i = 0; i < sk_X509_num(b); i++)
		X509_up_ref(sk_X509_value(b, i));
	if (sk_add(b, root) != 0 || sk_add(b, cross) != 0)
		goto nomem;
	if (rotation_generation(b, st->published_gen) != 0)
		goto nomem;
	ca_path(p, sizeof(p), ca->dir, "bundle.pem");
	if (ca_write_certs(p, b, 1, err) != 0)
		goto out;
	sk_drop(b, st->old_root, cross);
	if (rotation_generation(b, st->final_gen) != 0)
		goto nomem;
	st->phase = ROT_PUBLISHED;
	rv = state_write(ca->dir, st, err);
	goto out;
 nomem:
	error_set(err, MTLS_ERR_NOMEM, "out of memory");
 out:
	sk_X509_pop_free(b, X509_free);
	X509_free(root);
	X509_free(cross);
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

/* switch: ca.pem and ca.key become the new root's (the old ones kept in
 * rotation/ for the renewals of the old root's leaves) */
static int
do_switch(struct ca *ca, const struct rot_req *r, struct rot_state *st,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	struct signer *sg = NULL;
	X509 *root = NULL;
	uint8_t *key = NULL;
	size_t klen = 0;
	char p[PATH_MAX], h[65];
	int rv = -1;

	if (want_phase(st, ROT_PUBLISHED, ROT_PUBLISHED, "switch", err) != 0)
		return -1;
	if (r->pass_file != NULL && secret_load_pass(&pass, r->pass_file,
	    err) != 0)
		return -1;
	ca_path(p, sizeof(p), ca->dir, "rotation/new.key");
	if (load_one(ca->dir, "rotation/new.pem", &root, err) != 0 ||
	    fp(root, h) != 0 || strcmp(h, st->new_root) != 0 ||
	    signer_load(&sg, p, &pass, root, err) != 0) {
		if (err->msg[0] == '\0')
			error_set(err, MTLS_ERR_PARSE, "%s/rotation/new.pem is "
			    "not the root rotation.json names", ca->dir);
		goto out;
	}
	if (copy_once(ca->dir, "ca.pem", "rotation/old.pem", 0644, err) != 0 ||
	    copy_once(ca->dir, "ca.key", "rotation/old.key", 0600, err) != 0)
		goto out;
	if (fs_read(p, 1 << 20, &key, &klen, err) != 0)
		goto out;
	ca_path(p, sizeof(p), ca->dir, "ca.key");
	if (fs_write_atomic(p, key, klen, 0600, 1, err) != 0)
		goto out;
	ca_path(p, sizeof(p), ca->dir, "rotation/new.pem");
	if (copy_once(ca->dir, "rotation/new.pem", "ca.pem.new", 0644,
	    err) != 0)
		goto out;
	{
		char a[PATH_MAX];

		ca_path(a, sizeof(a), ca->dir, "ca.pem.new");
		ca_path(p, sizeof(p), ca->dir, "ca.pem");
		if (rename(a, p) != 0) {
			error_set_errno(err, MTLS_ERR_IO, "%s", p);
			goto out;
		}
	}
	st->phase = ROT_SWITCHED;
	rv = state_write(ca->dir, st, err);
 out:
	if (key != NULL)
		OPENSSL_cleanse(key, klen);
	free(key);
	X509_free(root);
	signer_free(sg);
	secret_clear(&pass);
	return rv;
}

/* retire: bundle.pem without the old root and the cross-certificate */
static int
retire(struct ca *ca, struct rot_state *st, struct mtls_error *err)
{
	STACK_OF(X509) *b = NULL;
	X509 *cross = NULL;
	char p[PATH_MAX], g[65];
	int rv = -1, i;

	if (want_phase(st, ROT_SWITCHED, ROT_SWITCHED, "retire", err) != 0)
		return -1;
	if (load_one(ca->dir, "rotation/cross.pem", &cross, err) != 0)
		return -1;
	if ((b = sk_X509_dup(ca->bundle)) == NULL) {
		X509_free(cross);
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	for (i = 0; i < sk_X509_num(b); i++)
		X509_up_ref(sk_X509_value(b, i));
	sk_drop(b, st->old_root, cross);
	if (sk_X509_num(b) == 0 || rotation_generation(b, g) != 0 ||
	    strcmp(g, st->final_gen) != 0) {
		error_set(err, MTLS_ERR_ARG, "%s/bundle.pem: without the old "
		    "root it is not the bundle that was published (edited "
		    "since?); nothing changed", ca->dir);
		goto out;
	}
	ca_path(p, sizeof(p), ca->dir, "bundle.pem");
	if (ca_write_certs(p, b, 1, err) != 0)
		goto out;
	st->phase = ROT_RETIRED;
	rv = state_write(ca->dir, st, err);
 out:
	sk_X509_pop_free(b, X509_free);
	X509_free(cross);
	return rv;
}

int
rotation_step(const struct rot_req *r, struct rot_status *rs,
    struct mtls_error *err)
{
	struct ca *ca = NULL;
	int rv = -1, key = r->step == ROT_PREPARED || r->step == ROT_SWITCHED;

	memset(rs, 0, sizeof(*rs));
	if ((key ? ca_open(&ca, r->dir, r->pass_file, err) :
	    ca_open_readonly(&ca, r->dir, err)) != 0)
		return -1;
	if (rotation_status(ca, rs, err) != 0)
		goto out;
	if (rs->blocked && !r->force && r->step == rs->st.phase + 1) {
		error_set(err, MTLS_ERR_ARG, "%s (--force goes ahead anyway)",
		    rs->next);
		rv = 1;
		goto out;
	}
	switch (r->step) {
	case ROT_PREPARED:
		rv = prepare(ca, r, &rs->st, err);
		break;
	case ROT_PUBLISHED:
		rv = publish(ca, &rs->st, err);
		break;
	case ROT_SWITCHED:
		rv = do_switch(ca, r, &rs->st, err);
		break;
	case ROT_RETIRED:
		rv = retire(ca, &rs->st, err);
		break;
	default:
		rv = error_set(err, MTLS_ERR_ARG, "unknown rotation step");
	}
 out:
	ca_close(ca);
	return rv;
}
