/*
 * verify.c: every case of the verification matrix
 * (tests/integration/chains.txt, also run by 20-chains.sh through
 * `mtls cert verify`) through verify_chain() uncached, then through the
 * per-config cache every proxied handshake uses (verify_chain_cached():
 * a miss, then a hit with the same chain): the three must give the
 * taxonomy code the case expects, and the same peer. The certificates are
 * made here, with profile.c for what `mtls ca` issues and with OpenSSL for
 * the deliberately bad ones, as 20-chains.sh makes them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/stat.h>

#include "pki_fixture.h"
/* a white-box test of verify.c and verify_cache.c: the cached path takes
 * the config's own store and cache, which only src/lib (and its own unit
 * tests) may see */
#define MTLS_BUILDING_LIB
#include "private.h"

#define CHAINS_TXT	"tests/integration/chains.txt"
#define MAX_CASES	96

/* One block of chains.txt. */
struct vcase {
	char	name[160];
	char	chain[64];
	char	anchors[64];
	char	untrusted[64];
	char	crl[64];
	char	at[16];
	char	purpose[16];
	char	flags[160];
	char	expect[48];
	char	msg[80];	/* extra cases: the reason must say this */
};

/* The files of 20-chains.sh, made in memory and written to a folder. */
struct named {
	const char	*name;
	STACK_OF(X509)	*sk;
};

static struct {
	char		 dir[256];
	int64_t		 now;
	struct named	 files[64];
	size_t		 n;
	X509_CRL	*crl[8];
	size_t		 n_crl;
	STACK_OF(X509)	*empty;
	struct fx_cert	 certs[64];
	size_t		 n_certs;
} pki;

static struct vcase cases[MAX_CASES];
static size_t n_cases;

static struct fx_cert *
keep(struct fx_cert c)
{
	assert_true(pki.n_certs < sizeof(pki.certs) / sizeof(pki.certs[0]));
	pki.certs[pki.n_certs] = c;
	return &pki.certs[pki.n_certs++];
}

static void
add_file(const char *name, STACK_OF(X509) *sk)
{
	char path[512], *slash;

	assert_true(pki.n < sizeof(pki.files) / sizeof(pki.files[0]));
	/* "root/bundle.pem": the folder first */
	snprintf(path, sizeof(path), "%s/%s", pki.dir, name);
	if ((slash = strrchr(path, '/')) > path + strlen(pki.dir)) {
		*slash = '\0';
		assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
	}
	pki.files[pki.n].name = name;
	pki.files[pki.n++].sk = sk;
	fx_write_certs(pki.dir, name, sk, path, sizeof(path));
}

/* Writes one or two CRLs to <dir>/<name>. */
static void
add_crls(const char *name, X509_CRL *a, X509_CRL *b)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", pki.dir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_true(PEM_write_X509_CRL(f, a));
	if (b != NULL)
		assert_true(PEM_write_X509_CRL(f, b));
	assert_int_equal(fclose(f), 0);
	assert_true(pki.n_crl + 2 <= sizeof(pki.crl) / sizeof(pki.crl[0]));
	pki.crl[pki.n_crl++] = a;
	if (b != NULL)
		pki.crl[pki.n_crl++] = b;
}

static STACK_OF(X509) *
file_certs(const char *name)
{
	size_t i;

	for (i = 0; i < pki.n; i++)
		if (strcmp(pki.files[i].name, name) == 0)
			return pki.files[i].sk;
	return NULL;
}

#define LEAFEXT	"basicConstraints=critical,CA:FALSE\n" \
	"keyUsage=critical,digitalSignature\n" \
	"extendedKeyUsage=serverAuth,clientAuth\n"
#define CAEXT	"basicConstraints=critical,CA:TRUE\n" \
	"keyUsage=critical,keyCertSign,cRLSign\n"

/* mk NAME ISSUER EXTS [KEY] [MD]: a leaf of <issuer>, then its chain file
 * <name>_chain.pem = leaf + <rest> (NULL-terminated). */
static struct fx_cert *
mk(const char *cn, const struct fx_cert *issuer, const char *exts,
    const char *key, const EVP_MD *md)
{
	return keep(fx_mk("example.org", cn, issuer, exts, key, md, 0, pki.now));
}

static int
make_pki(void **state)
{
	static char *permit_spiffe[] = { "spiffe://example.org/ns/prod/" };
	static char *permit_dns[] = { "example.org" };
	static const char *good_ids[] = { "spiffe://example.org/ns/prod/api",
	    "dns:api.example.org", NULL };
	static const char *gone_ids[] = { "spiffe://example.org/ns/prod/gone",
	    NULL };
	static const char *foreign_ids[] = { "spiffe://other.org/x", NULL };
	struct fx_cert *root, *in, *open, *good, *gone, *other, *oint, *fgn, *c,
	    *d;

	(void)state;
	fx_tmpdir(pki.dir, sizeof(pki.dir));
	pki.now = (int64_t)time(NULL);
	assert_non_null(pki.empty = sk_X509_new_null());
	root = keep(fx_root("example.org", "example.org Root CA", pki.now));
	in = keep(fx_intermediate(root, "example.org", "scoped", permit_spiffe,
	    1, permit_dns, 1, pki.now));
	open = keep(fx_intermediate(root, "example.org", "open", NULL, 0, NULL,
	    0, pki.now));
	good = keep(fx_leaf(open, "example.org", good_ids, pki.now - 60,
	    pki.now + FX_DAY));
	gone = keep(fx_leaf(open, "example.org", gone_ids, pki.now - 60,
	    pki.now + FX_DAY));
	other = keep(fx_root("other.org", "other.org Root CA", pki.now));
	oint = keep(fx_intermediate(other, "other.org", "other int", NULL, 0,
	    NULL, 0, pki.now));
	fgn = keep(fx_leaf(oint, "other.org", foreign_ids, pki.now - 60,
	    pki.now + FX_DAY));
	add_crls("crl.pem", fx_crl(open, gone->x, pki.now), NULL);

	add_file("root/bundle.pem", fx_stack(root->x, NULL));
	add_file("open/ca.pem", fx_stack(open->x, NULL));
	add_file("open1.pem", fx_stack(open->x, NULL));
	add_file("int1.pem", fx_stack(in->x, NULL));
	add_file("good.pem", fx_stack(good->x, open->x, NULL));
	add_file("revoked.pem", fx_stack(gone->x, open->x, NULL));
	add_file("foreign.pem", fx_stack(fgn->x, oint->x, NULL));
	add_file("leaf_only.pem", fx_stack(good->x, NULL));

	c = mk("notca", open, "basicConstraints=critical,CA:FALSE\n"
	    "keyUsage=critical,digitalSignature,keyCertSign", NULL, NULL);
	d = mk("notca_leaf", c, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/a", NULL, NULL);
	add_file("notca_chain.pem", fx_stack(d->x, c->x, open->x, NULL));
	c = mk("sub", open, CAEXT, NULL, NULL);
	d = mk("sub_leaf", c, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/b", NULL, NULL);
	add_file("pathlen_chain.pem", fx_stack(d->x, c->x, open->x, NULL));
	c = mk("nc", in, LEAFEXT "subjectAltName=URI:spiffe://other.org/x",
	    NULL, NULL);
	add_file("nc_chain.pem", fx_stack(c->x, in->x, NULL));
	c = mk("scope", in, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/dev/x", NULL, NULL);
	add_file("scope_chain.pem", fx_stack(c->x, in->x, NULL));
	c = mk("dnsout", in, LEAFEXT "subjectAltName=URI:spiffe://example.org/"
	    "ns/prod/d,DNS:api.other.org", NULL, NULL);
	add_file("dnsout_chain.pem", fx_stack(c->x, in->x, NULL));
	c = mk("ipout", in, LEAFEXT "subjectAltName=URI:spiffe://example.org/"
	    "ns/prod/i,IP:10.0.0.5", NULL, NULL);
	add_file("ipout_chain.pem", fx_stack(c->x, in->x, NULL));
	c = mk("serveronly", open, "basicConstraints=critical,CA:FALSE\n"
	    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
	    "subjectAltName=URI:spiffe://example.org/ns/prod/s", NULL, NULL);
	add_file("serveronly_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("twouri", open, LEAFEXT "subjectAltName=URI:spiffe://example.org/"
	    "ns/prod/a,URI:spiffe://example.org/ns/prod/b", NULL, NULL);
	add_file("twouri_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("catrue", open, "basicConstraints=critical,CA:TRUE\n"
	    "keyUsage=critical,digitalSignature\n"
	    "extendedKeyUsage=serverAuth,clientAuth\n"
	    "subjectAltName=URI:spiffe://example.org/ns/prod/c", NULL, NULL);
	add_file("catrue_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("rsa1024", open, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/r", "rsa1024", NULL);
	add_file("rsa1024_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("rsa2048", open, "basicConstraints=critical,CA:FALSE\n"
	    "keyUsage=critical,digitalSignature,keyEncipherment\n"
	    "extendedKeyUsage=serverAuth,clientAuth\n"
	    "subjectAltName=URI:spiffe://example.org/ns/prod/r2", "rsa2048",
	    NULL);
	add_file("rsa2048_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("sha1", open, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/h", NULL,
	    EVP_sha1());
	add_file("sha1_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("wild", open, LEAFEXT "subjectAltName=DNS:*.example.org", NULL,
	    NULL);
	add_file("wild_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("partial", open, LEAFEXT "subjectAltName=DNS:f*.example.org",
	    NULL, NULL);
	add_file("partial_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("wildtld", open, LEAFEXT "subjectAltName=DNS:*.org", NULL, NULL);
	add_file("wildtld_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("noaki", open, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/k\n"
	    "subjectKeyIdentifier=none\nauthorityKeyIdentifier=none", NULL,
	    NULL);
	add_file("noaki_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("noski", open, CAEXT "subjectKeyIdentifier=none\n"
	    "authorityKeyIdentifier=keyid", NULL, NULL);
	d = mk("noski_leaf", c, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/k", NULL, NULL);
	add_file("noski_chain.pem", fx_stack(d->x, c->x, open->x, NULL));
	c = mk("eenc", open, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/n\n"
	    "nameConstraints=critical,permitted;DNS:example.org", NULL, NULL);
	add_file("eenc_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("ncsoft", root, CAEXT "nameConstraints=permitted;URI:example.org",
	    NULL, NULL);
	d = mk("ncsoft_leaf", c, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/n", NULL, NULL);
	add_file("ncsoft_chain.pem", fx_stack(d->x, c->x, NULL));
	c = mk("exbar", root, CAEXT
	    "nameConstraints=critical,excluded;DNS:bar.example.org", NULL, NULL);
	d = mk("exbar_leaf", c, LEAFEXT "subjectAltName=DNS:*.example.org", NULL,
	    NULL);
	add_file("exbar_chain.pem", fx_stack(d->x, c->x, NULL));
	c = keep(fx_mk("example.org", "serial0", open, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/z", NULL, NULL, 1,
	    pki.now));
	add_file("serial0_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("dotdns", open, LEAFEXT "subjectAltName=DNS:.example.org", NULL,
	    NULL);
	add_file("dotdns_chain.pem", fx_stack(c->x, open->x, NULL));
	c = mk("dsa", open, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/q", "dsa", NULL);
	add_file("dsa_chain.pem", fx_stack(c->x, open->x, NULL));

	/* beyond the matrix (extra_cases) */
	add_crls("rootcrl.pem", fx_crl(root, NULL, pki.now), NULL);
	add_crls("cacrl.pem", fx_crl(open, NULL, pki.now),
	    fx_crl(root, open->x, pki.now));
	add_crls("oldcrl.pem", fx_crl_at(open, NULL, pki.now - 10 * FX_DAY,
	    pki.now - 9 * FX_DAY), NULL);
	{
		static const char *api[] = { "spiffe://example.org/ns/prod/api",
		    "dns:api.example.org", NULL };
		struct profile_req r;

		memset(&r, 0, sizeof(r));
		r.kind = PROFILE_INTERMEDIATE;
		r.org = "example.org";
		r.cn = "short";
		r.not_before = pki.now - 60;
		r.not_after = pki.now + 3600;
		r.issuer = root->x;
		r.issuer_key = root->k;
		c = keep(fx_profile(&r));
		d = keep(fx_leaf(c, "example.org", api, pki.now - 60,
		    pki.now + FX_DAY));
		add_file("shortint_chain.pem", fx_stack(d->x, c->x, NULL));
		d = keep(fx_leaf(in, "example.org", api, pki.now - 60,
		    pki.now + FX_DAY));
		add_file("inscope_chain.pem", fx_stack(d->x, in->x, NULL));
	}
	c = keep(fx_mk("example.org", "selfie", NULL, LEAFEXT
	    "subjectAltName=URI:spiffe://example.org/ns/prod/self", NULL, NULL,
	    0, pki.now));
	add_file("selfsigned.pem", fx_stack(c->x, NULL));
	/* a root rotation (rotation.c names the new root "<td> Root CA
	 * <stamp>"): after retire the bundle holds the new root only; a
	 * leaf of the old root, sent alone as leaves of a root are */
	{
		static const char *rot_ids[] = {
		    "spiffe://example.org/ns/prod/stale", NULL };
		struct fx_cert *nroot, *nint;

		nroot = keep(fx_root("example.org",
		    "example.org Root CA 2026-12-04T222111Z", pki.now));
		add_file("newroot/bundle.pem", fx_stack(nroot->x, NULL));
		c = keep(fx_leaf(root, "example.org", rot_ids, pki.now - 60,
		    pki.now + FX_DAY));
		add_file("oldroot_leaf.pem", fx_stack(c->x, NULL));
		c = keep(fx_leaf(nroot, "example.org", rot_ids, pki.now - 60,
		    pki.now + FX_DAY));
		add_file("newroot_leaf.pem", fx_stack(c->x, NULL));
		/* and an intermediate of the new root really not sent */
		nint = keep(fx_intermediate(nroot, "example.org", "example.org "
		    "Intermediate CA", NULL, 0, NULL, 0, pki.now));
		c = keep(fx_leaf(nint, "example.org", rot_ids, pki.now - 60,
		    pki.now + FX_DAY));
		add_file("newint_leaf_only.pem", fx_stack(c->x, NULL));
	}
	add_file("root_twice.pem", fx_stack(root->x, root->x, NULL));
	add_file("good_with_root.pem", fx_stack(good->x, open->x, root->x,
	    NULL));
	return 0;
}

/* Cases the matrix does not have: revocation of intermediates and
 * unusable CRLs, allow rules, a positive scoped case, the lowest expired
 * certificate named. */
static const struct vcase extra_cases[] = {
	{ .name = "CRL configured, none from the leaf's issuer",
	  .chain = "good.pem", .crl = "rootcrl.pem", .expect = "revoked",
	  .msg = "unknown" },
	{ .name = "intermediate revoked by its root's CRL",
	  .chain = "good.pem", .crl = "cacrl.pem", .expect = "revoked",
	  .msg = "CA certificate" },
	{ .name = "an expired CRL: status unknown",
	  .chain = "good.pem", .crl = "oldcrl.pem", .expect = "revoked" },
	{ .name = "expired intermediate named, not the leaf",
	  .chain = "shortint_chain.pem", .at = "+2h", .expect = "cert_expired",
	  .msg = "CA certificate" },
	{ .name = "leaf inside a scoped intermediate's SPIFFE and DNS scope",
	  .chain = "inscope_chain.pem", .purpose = "client", .expect = "ok" },
	{ .name = "self-signed leaf", .chain = "selfsigned.pem",
	  .expect = "unknown_ca", .msg = "self-signed" },
	{ .name = "a root twice in the bundle, and sent by the peer",
	  .chain = "good_with_root.pem", .anchors = "root_twice.pem",
	  .expect = "ok" },
	{ .name = "allow rule matches", .chain = "good.pem",
	  .flags = "--allow spiffe://example.org/ns/prod/*", .expect = "ok" },
	{ .name = "no allow rule matches", .chain = "good.pem",
	  .flags = "--allow spiffe://example.org/ns/dev/* --allow dns:x.org",
	  .expect = "not_authorized", .msg = "matches no allow rule" },
	{ .name = "expect and allow both apply", .chain = "good.pem",
	  .flags = "--dns api.example.org --allow spiffe://example.org/ns/dev/*",
	  .expect = "not_authorized" },
	{ .name = "allow any", .chain = "good.pem", .flags = "--allow-any --allow dns:x.org",
	  .expect = "ok" },
	{ .name = "an empty chain", .chain = "empty", .expect = "no_client_cert" },
	{ .name = "after a root rotation's retire: an old-root leaf alone",
	  .chain = "oldroot_leaf.pem", .anchors = "newroot/bundle.pem",
	  .expect = "unknown_ca", .msg = ": renew it from the current CA; its "
	  "issuer 'CN=example.org Root CA," },
	{ .name = "a new-root leaf at a peer still on the old bundle",
	  .chain = "newroot_leaf.pem", .anchors = "root/bundle.pem",
	  .expect = "unknown_ca", .msg = ": install the CA's current bundle "
	  "here" },
	{ .name = "the new root's intermediate really missing",
	  .chain = "newint_leaf_only.pem", .anchors = "newroot/bundle.pem",
	  .expect = "chain_incomplete", .msg = "the intermediate is missing" },
};

static int
free_pki(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < pki.n; i++)
		sk_X509_pop_free(pki.files[i].sk, X509_free);
	for (i = 0; i < pki.n_certs; i++)
		fx_cert_free(&pki.certs[i]);
	for (i = 0; i < pki.n_crl; i++)
		X509_CRL_free(pki.crl[i]);
	sk_X509_free(pki.empty);
	fx_rmdir(pki.dir);
	return 0;
}

/* Reads chains.txt (blocks of "key = value", blank-line separated). */
static int
load_cases(void)
{
	FILE *f = fopen(CHAINS_TXT, "r");
	char line[512];
	struct vcase c;
	int have = 0;

	if (f == NULL) {
		fprintf(stderr, "test_verify: cannot read %s (run from the "
		    "source tree, as make check does)\n", CHAINS_TXT);
		return -1;
	}
	memset(&c, 0, sizeof(c));
	for (;;) {
		char *eq, *k, *v, *end;
		int eof = fgets(line, sizeof(line), f) == NULL;

		if (eof || line[0] == '\n') {
			if (have && c.name[0] != '\0') {
				if (n_cases == MAX_CASES) {
					fclose(f);
					return -1;
				}
				cases[n_cases++] = c;
			}
			memset(&c, 0, sizeof(c));
			have = 0;
			if (eof)
				break;
			continue;
		}
		if (line[0] == '#' || (eq = strchr(line, '=')) == NULL)
			continue;
		*eq = '\0';
		k = line;
		v = eq + 1;
		while (*v == ' ')
			v++;
		if ((end = strchr(v, '\n')) != NULL)
			*end = '\0';
		for (end = k + strlen(k); end > k && end[-1] == ' '; end--)
			end[-1] = '\0';
#define SET(f)	else if (strcmp(k, #f) == 0) snprintf(c.f, sizeof(c.f), "%s", v)
		if (0) {}
		SET(name); SET(chain); SET(anchors); SET(untrusted); SET(crl);
		SET(at); SET(purpose); SET(flags); SET(expect);
#undef SET
		have = 1;
	}
	fclose(f);
	return 0;
}

static void
path_of(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", pki.dir, name);
}

/* A frozen config and verifying context for case <c>. */
static struct mtls *
case_context(const struct vcase *c)
{
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *m = mtls_new();
	char path[512], flags[160], *tok, *save = NULL, rule[200];

	assert_non_null(cfg);
	assert_non_null(m);
	path_of(c->anchors[0] ? c->anchors : "root/bundle.pem", path,
	    sizeof(path));
	assert_int_equal(mtls_config_set_trust_file(cfg, path), 0);
	if (c->untrusted[0]) {
		path_of(c->untrusted, path, sizeof(path));
		assert_int_equal(mtls_config_add_untrusted_file(cfg, path), 0);
	}
	if (c->crl[0]) {
		path_of(c->crl, path, sizeof(path));
		if (mtls_config_add_crl_file(cfg, path) != 0)
			fail_msg("%s: %s", c->name, mtls_config_error(cfg));
	}
	if (c->at[0]) {
		long n = strtol(c->at, NULL, 10);
		int64_t unit = c->at[strlen(c->at) - 1] == 'd' ? FX_DAY : 3600;

		assert_int_equal(mtls_config_set_verify_time(cfg,
		    pki.now + n * unit), 0);
	}
	if (strcmp(c->purpose, "server") == 0)
		assert_int_equal(mtls_config_set_purpose(cfg,
		    MTLS_PURPOSE_SERVER), 0);
	else if (strcmp(c->purpose, "client") == 0)
		assert_int_equal(mtls_config_set_purpose(cfg,
		    MTLS_PURPOSE_CLIENT), 0);
	else if (c->purpose[0])
		fail_msg("%s: purpose '%s'", c->name, c->purpose);
	/* the flags of `mtls cert verify` the matrix uses */
	snprintf(flags, sizeof(flags), "%s", c->flags);
	for (tok = strtok_r(flags, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		const char *arg;

		if (strcmp(tok, "--allow-any") == 0) {
			assert_int_equal(mtls_config_set_allow_any(cfg), 0);
			continue;
		}
		if ((arg = strtok_r(NULL, " ", &save)) == NULL)
			fail_msg("%s: flag %s without a value", c->name, tok);
		if (strcmp(tok, "--dns") == 0)
			snprintf(rule, sizeof(rule), "dns:%s", arg);
		else if (strcmp(tok, "--spiffe-id") == 0)
			snprintf(rule, sizeof(rule), "%s", arg);
		else if (strcmp(tok, "--untrusted") == 0)
			continue;	/* the "untrusted" column */
		else if (strcmp(tok, "--allow") == 0) {
			if (mtls_config_add_allow(cfg, arg) != 0)
				fail_msg("%s: %s", c->name,
				    mtls_config_error(cfg));
			continue;
		}
		else
			fail_msg("%s: flag %s is new: teach test_verify.c",
			    c->name, tok);
		if (mtls_config_add_expect(cfg, rule) != 0)
			fail_msg("%s: %s", c->name, mtls_config_error(cfg));
	}
	if (mtls_configure(m, cfg) != 0)
		fail_msg("%s: %s", c->name, mtls_error(m));
	mtls_config_free(cfg);	/* the context holds it */
	return m;
}

#define N_EXTRA	(sizeof(extra_cases) / sizeof(extra_cases[0]))

struct verdict {
	int	rv;
	int	fail;
	char	msg[256];
	char	serial[48];
	char	id[300];
};

static void
take(struct verdict *v, int rv, const struct verify_out *out,
    const struct mtls_error *err)
{
	memset(v, 0, sizeof(*v));
	v->rv = rv;
	v->fail = rv == 0 ? 0 : err->fail;
	snprintf(v->msg, sizeof(v->msg), "%s", err->msg);
	snprintf(v->serial, sizeof(v->serial), "%s", out->serial);
	snprintf(v->id, sizeof(v->id), "%s", ids_primary(&out->ids) ?
	    ids_primary(&out->ids) : "");
}

static void
same(const struct vcase *c, const char *what, const struct verdict *a,
    const struct verdict *b)
{
	if (a->fail != b->fail || a->rv != b->rv)
		fail_msg("%s: %s gave %s (%s), uncached %s (%s)", c->name, what,
		    mtls_fail_name(b->fail), b->msg, mtls_fail_name(a->fail),
		    a->msg);
	if (a->rv == 0 && (strcmp(a->serial, b->serial) != 0 ||
	    strcmp(a->id, b->id) != 0))
		fail_msg("%s: %s named the peer %s %s, uncached %s %s", c->name,
		    what, b->id, b->serial, a->id, a->serial);
}

/* Cached path validations: only chains that verify get an entry. */
static int
path_ok(int fail)
{
	return fail == MTLS_FAIL_NONE || fail == MTLS_FAIL_IDENTITY_MISMATCH ||
	    fail == MTLS_FAIL_NOT_AUTHORIZED;
}

static void
test_case(void **state)
{
	const struct vcase *c = *state;
	struct mtls *m;
	struct mtls_config *cfg;
	STACK_OF(X509) *certs;
	struct verify_out out;
	struct mtls_error err;
	struct verdict unc, miss, hit;
	uint8_t key[32], key2[32], key3[32];
	char *pem = NULL;
	size_t pem_len = 0;
	int want, r;

	if (strcmp(c->expect, "ok") == 0)
		want = MTLS_FAIL_NONE;
	else if ((want = mtls_fail_from_name(c->expect)) < 0)
		fail_msg("%s: expect '%s' is no taxonomy code", c->name,
		    c->expect);
	if (strcmp(c->chain, "empty") == 0)
		certs = pki.empty;
	else if ((certs = file_certs(c->chain)) == NULL)
		fail_msg("%s: chain %s is not made by test_verify.c: add it to "
		    "make_pki()", c->name, c->chain);
	m = case_context(c);
	cfg = m->cfg;

	/* 1. uncached */
	r = verify_chain(cfg, m->store, certs, cfg->purpose, &out, &err);
	take(&unc, r, &out, &err);
	verify_out_free(&out);
	if (unc.fail != want || (want == MTLS_FAIL_NONE) != (r == 0))
		fail_msg("%s: verify_chain gave %s (%s), want %s", c->name,
		    r == 0 ? "ok" : mtls_fail_name(unc.fail), unc.msg,
		    c->expect);
	if (c->msg[0] && strstr(unc.msg, c->msg) == NULL)
		fail_msg("%s: reason '%s' lacks '%s'", c->name, unc.msg, c->msg);

	/* nothing cached before the first cached call */
	assert_int_equal(verify_chain_key(certs, cfg->purpose, key), 0);
	assert_int_equal(verify_cache_lookup(cfg, key, &out, &err), 1);
	verify_out_free(&out);

	/* 2. the cached path, a miss: verifies and fills */
	r = verify_chain_cached(cfg, m->store, certs, cfg->purpose, key2, &out,
	    &err);
	take(&miss, r, &out, &err);
	verify_out_free(&out);
	same(c, "cache miss", &unc, &miss);
	/* the key tickets carry; zeros when there is nothing to cache */
	if (sk_X509_num(certs) == 0)
		memset(key, 0, sizeof(key));
	assert_memory_equal(key, key2, 32);

	/* an entry exists exactly when the path validated */
	r = verify_cache_lookup(cfg, key, &out, &err);
	verify_out_free(&out);
	if (path_ok(want) != (r <= 0))
		fail_msg("%s: after the miss the cache %s an entry", c->name,
		    r <= 0 ? "has" : "lacks");

	/* 3. the cached path again: a hit for a validated path */
	r = verify_chain_cached(cfg, m->store, certs, cfg->purpose, key3, &out,
	    &err);
	take(&hit, r, &out, &err);
	verify_out_free(&out);
	same(c, "cache hit", &unc, &hit);
	assert_memory_equal(key, key3, 32);

	/* and the public API (what mtls cert verify calls) agrees */
	if (sk_X509_num(certs) == 0) {
		mtls_free(m);
		return;
	}
	assert_int_equal(certs_pem(certs, &pem, &pem_len), 0);
	r = mtls_verify_pem(m, (const uint8_t *)pem, pem_len);
	free(pem);
	if (mtls_fail_code(m) != want || (r == 0) != (want == MTLS_FAIL_NONE))
		fail_msg("%s: mtls_verify_pem gave %s (%s), want %s", c->name,
		    mtls_fail_name(mtls_fail_code(m)), mtls_error(m),
		    c->expect);
	if (r == 0 && (mtls_peer_serial(m) == NULL ||
	    strcmp(mtls_peer_serial(m), unc.serial) != 0))
		fail_msg("%s: mtls_peer_serial", c->name);
	mtls_free(m);
}

/* The cache's per-use checks see the config it belongs to: a hit is
 * refused by that config's allow rules, a chain's entry is per purpose,
 * and two configs never share entries. */
static void
test_hit_rechecks_rules(void **state)
{
	struct vcase c;
	struct mtls *a, *b;
	struct verify_out out;
	struct mtls_error err;
	STACK_OF(X509) *certs = file_certs("good.pem");
	uint8_t key[32], kc[32];

	(void)state;
	memset(&c, 0, sizeof(c));
	snprintf(c.name, sizeof(c.name), "rules");
	a = case_context(&c);
	b = case_context(&c);
	assert_int_equal(verify_chain_cached(a->cfg, a->store, certs,
	    MTLS_PURPOSE_SERVER, key, &out, &err), 0);
	verify_out_free(&out);
	/* another config: its own cache */
	assert_int_equal(verify_cache_lookup(b->cfg, key, &out, &err), 1);
	/* another purpose: another key */
	assert_int_equal(verify_chain_key(certs, MTLS_PURPOSE_CLIENT, kc), 0);
	assert_memory_not_equal(key, kc, 32);
	assert_int_equal(verify_cache_lookup(a->cfg, kc, &out, &err), 1);
	/* a hit runs the allow rules of the config: add one that does not
	 * match (the frozen flag is the public API's guard, not the cache's) */
	a->cfg->allow = calloc(1, sizeof(char *));
	assert_non_null(a->cfg->allow);
	a->cfg->allow[0] = strdup("spiffe://example.org/ns/dev/*");
	a->cfg->n_allow = 1;
	assert_int_equal(verify_cache_lookup(a->cfg, key, &out, &err), -1);
	assert_int_equal(err.fail, MTLS_FAIL_NOT_AUTHORIZED);
	assert_string_equal(ids_primary(&out.ids),
	    "spiffe://example.org/ns/prod/api");
	verify_out_free(&out);
	mtls_free(a);
	mtls_free(b);
}

/* A hit is judged at the time of use: outside the chain's validity
 * window the entry is not used and the chain is verified afresh. The
 * clock is the config's verification time, moved after the fill. */
static void
test_hit_window(void **state)
{
	struct vcase c;
	struct mtls *m;
	struct verify_out out;
	struct mtls_error err;
	STACK_OF(X509) *certs = file_certs("good.pem");
	uint8_t key[32];

	(void)state;
	memset(&c, 0, sizeof(c));
	snprintf(c.name, sizeof(c.name), "window");
	snprintf(c.at, sizeof(c.at), "+0h");
	snprintf(c.crl, sizeof(c.crl), "crl.pem");
	m = case_context(&c);
	assert_int_equal(verify_chain_cached(m->cfg, m->store, certs,
	    MTLS_PURPOSE_CLIENT, key, &out, &err), 0);
	verify_out_free(&out);
	assert_int_equal(verify_cache_lookup(m->cfg, key, &out, &err), 0);
	verify_out_free(&out);
	/* a day and an hour on: the leaf has expired */
	m->cfg->verify_time = pki.now + FX_DAY + 3600;
	assert_int_equal(verify_cache_lookup(m->cfg, key, &out, &err), 1);
	assert_int_equal(verify_chain_cached(m->cfg, m->store, certs,
	    MTLS_PURPOSE_CLIENT, key, &out, &err), -1);
	assert_int_equal(err.fail, MTLS_FAIL_CERT_EXPIRED);
	verify_out_free(&out);
	/* before the chain's notBefore: not used either */
	m->cfg->verify_time = pki.now - 120;
	assert_int_equal(verify_cache_lookup(m->cfg, key, &out, &err), 1);
	mtls_free(m);
}

int
main(void)
{
	static struct CMUnitTest tests[MAX_CASES + N_EXTRA + 2];
	static char names[MAX_CASES + N_EXTRA][200];
	size_t i;

	if (load_cases() != 0 || n_cases == 0) {
		fprintf(stderr, "test_verify: no case in %s\n", CHAINS_TXT);
		return 1;
	}
	for (i = 0; i < n_cases; i++) {
		snprintf(names[i], sizeof(names[i]), "chains.txt: %s",
		    cases[i].name);
		tests[i].name = names[i];
		tests[i].test_func = test_case;
		tests[i].initial_state = &cases[i];
	}
	for (i = 0; i < N_EXTRA; i++) {
		snprintf(names[n_cases + i], sizeof(names[0]), "extra: %s",
		    extra_cases[i].name);
		tests[n_cases + i].name = names[n_cases + i];
		tests[n_cases + i].test_func = test_case;
		tests[n_cases + i].initial_state = (void *)&extra_cases[i];
	}
	tests[n_cases + N_EXTRA].name = "a cache hit re-checks the config's "
	    "rules";
	tests[n_cases + N_EXTRA].test_func = test_hit_rechecks_rules;
	tests[n_cases + N_EXTRA + 1].name = "a cache hit is judged at the time "
	    "of use";
	tests[n_cases + N_EXTRA + 1].test_func = test_hit_window;
	return _cmocka_run_group_tests("test_verify", tests,
	    n_cases + N_EXTRA + 2, make_pki, free_pki);
}
