/*
 * Issuance: a request is checked against its role (identities, lifetime,
 * key type), a CSR is parsed and checked, the certificate is signed by the
 * signer, verified with the same code peers use, and recorded durably in
 * the inventory before anyone sees it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca_local.h"

const char *const ca_phase_names[CA_PH__COUNT] = { "auth", "parse",
    "lock", "policy", "sign", "verify", "commit", "reply" };
static uint64_t phase_n[CA_PH__COUNT], phase_ns[CA_PH__COUNT],
    phase_cpu_ns[CA_PH__COUNT];
/* this thread's CPU time at the last phase boundary: phases are measured
 * one after another on the thread that runs the request */
static _Thread_local uint64_t cpu_mark;

static uint64_t
clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
ca_phase_start(void)
{
	cpu_mark = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	return clock_ns(CLOCK_MONOTONIC);
}

uint64_t
ca_phase_end(enum ca_phase ph, uint64_t t0)
{
	uint64_t t = clock_ns(CLOCK_MONOTONIC);
	uint64_t c = clock_ns(CLOCK_THREAD_CPUTIME_ID);

	__atomic_add_fetch(&phase_n[ph], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&phase_ns[ph], t - t0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&phase_cpu_ns[ph], c - cpu_mark, __ATOMIC_RELAXED);
	cpu_mark = c;
	return t;
}

void
ca_phase_get(enum ca_phase ph, uint64_t *count, uint64_t *ns,
    uint64_t *cpu_ns)
{
	*count = __atomic_load_n(&phase_n[ph], __ATOMIC_RELAXED);
	*ns = __atomic_load_n(&phase_ns[ph], __ATOMIC_RELAXED);
	*cpu_ns = __atomic_load_n(&phase_cpu_ns[ph], __ATOMIC_RELAXED);
}

/* The end of a validity starting <now>: <now> + <ttl> (0: <dflt>), with
 * <ttl> from 1 s to MTLS_MAX_TTL, so the sum never overflows whatever a
 * caller passes (issue 18). 0, or -1 with <err> naming <what>. */
int
ca_until(int64_t now, int64_t ttl, int64_t dflt, const char *what,
    int64_t *out, struct mtls_error *err)
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

/* A lifetime ending after the issuer's is clamped, with a warning. */
int64_t
ca_clamp(struct ca *ca, int64_t not_after, struct ca_result *res)
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

/* Signs with retries on a serial collision, recording before returning. */
int
ca_sign_record(struct ca *ca, struct profile_req *pr, const char *kind,
    X509 **out, struct mtls_error *err)
{
	int tries, r;

	for (tries = 0; tries < 5; tries++) {
		if (signer_sign(ca->signer, ca->cert, pr, out, err) != 0)
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

/* Loads and checks a CSR: signature, key strength, requested names. The
 * CSR is parsed once (csr.c): the key whose signature verified is the key
 * judged here and issued. */
int
ca_csr_parse(const uint8_t *buf, size_t len, const char *path,
    const struct ids *want, EVP_PKEY **pub, struct mtls_error *err)
{
	BIO *bio = NULL;
	unsigned char *pem = NULL;
	const unsigned char *der = buf;
	long derlen = (long)len;
	EVP_PKEY *key = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	X509 *tmp = NULL;
	struct ids got = { 0 };
	char kd[64];
	int bits, rv = -1, i;
	size_t a, b;

	if (len > (1 << 20)) {
		error_set(err, MTLS_ERR_PARSE, "%s: CSR larger than 1 MiB",
		    path);
		goto out;
	}
	if (memmem(buf, len, "-----BEGIN", 10) != NULL) {
		if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (!PEM_bytes_read_bio(&pem, &derlen, NULL,
		    PEM_STRING_X509_REQ, bio, NULL, NULL)) {
			error_set_ossl(err, MTLS_ERR_PARSE, "%s: not a CSR "
			    "(PKCS#10, PEM or DER)", path);
			goto out;
		}
		der = pem;
	}
	switch (csr_parse(der, (size_t)derlen, 1, &key, &exts)) {
	case CSR_OK:
		break;
	case CSR_NOT_CSR:
		error_set_ossl(err, MTLS_ERR_PARSE, "%s: not a CSR (PKCS#10, "
		    "PEM or DER, one structure and nothing after it)", path);
		goto out;
	case CSR_NO_KEY:
		error_set_ossl(err, MTLS_ERR_PARSE, "%s: CSR has no usable "
		    "key", path);
		goto out;
	default:
		error_set_ossl(err, MTLS_ERR_PARSE, "%s: CSR signature does "
		    "not verify", path);
		goto out;
	}
	key_describe(key, kd, sizeof(kd), &bits);
	i = EVP_PKEY_get_base_id(key);
	if (((i == EVP_PKEY_RSA || i == EVP_PKEY_RSA_PSS) && bits < 2048) ||
	    (i == EVP_PKEY_EC && bits < 256) || i == EVP_PKEY_DSA) {
		error_set(err, MTLS_ERR_ARG, "%s: CSR key %s is too weak (use "
		    "EC P-256, Ed25519 or RSA >= 2048)", path, kd);
		goto out;
	}
	/* Requested SANs, if any, must be exactly what we are issuing: the
	 * CA decides identities, a CSR may not add one. */
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
	*pub = key;
	key = NULL;
	rv = 0;
 out:
	ids_free(&got);
	X509_free(tmp);
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	EVP_PKEY_free(key);
	OPENSSL_free(pem);
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
 * scope, pathlen and profiles are all checked by the same code peers use.
 * Its config and trust store depend only on the CA's bundle and scope OID,
 * so they are built once per open CA (and again should the bundle change).
 * The first leaf of an open CA (a ca serve snapshot) is verified with its
 * whole chain, as a peer would; the CA path that verification built is
 * kept, and every later leaf is verified on it (verify_leaf_on_path: its
 * signature, validity, extensions, every CA's name constraints, our
 * policy on the whole chain), the CA's own unchanged certificates not
 * again (docs/security/selfcheck.md). */
static int
self_verifier(struct ca *ca, struct mtls_error *err)
{
	if (ca->sv_store != NULL && ca->sv_bundle == ca->bundle)
		return 0;
	ca_verifier_free(ca);
	if ((ca->sv_cfg = mtls_config_new()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	config_borrow_trust(ca->sv_cfg, ca->bundle);
	/* recognise our own scope OID without MTLS_SCOPE_OID */
	config_set_scope_oid(ca->sv_cfg, ca->scope_oid);
	if ((ca->sv_store = verify_store_new(ca->sv_cfg, err)) == NULL) {
		ca_verifier_free(ca);
		return -1;
	}
	ca->sv_bundle = ca->bundle;
	return 0;
}

void
ca_verifier_free(struct ca *ca)
{
	X509_STORE_free(ca->sv_store);
	ca->sv_store = NULL;
	sk_X509_pop_free(ca->sv_path, X509_free);
	ca->sv_path = NULL;
	if (ca->sv_cfg != NULL)
		config_borrow_trust(ca->sv_cfg, NULL);	/* borrowed */
	mtls_config_free(ca->sv_cfg);
	ca->sv_cfg = NULL;
	ca->sv_bundle = NULL;
}

int
ca_issue_prepare(struct ca *ca, struct mtls_error *err)
{
	char *pem = NULL;
	size_t len;

	/* ca_bundle_pem encodes the bundle at its first call, ca_chain_pem
	 * the CA chain (no leaf: nothing more) */
	if (self_verifier(ca, err) != 0 ||
	    ca_bundle_pem(ca, &pem, &len, err) != 0)
		return -1;
	free(pem);
	return ca_chain_pem(ca, NULL, &pem, &len, err);
}

/* The CA path of a full verification's chain (its leaf dropped), kept
 * as ca->sv_path by the first issuance that gets there; concurrent
 * issuances of a ca serve snapshot may race: one path wins, the same. */
static void
keep_path(struct ca *ca, STACK_OF(X509) *chain)
{
	STACK_OF(X509) *p, *none = NULL;
	int i;

	if ((p = sk_X509_new_null()) == NULL)
		return;
	for (i = 1; i < sk_X509_num(chain); i++) {
		if (!sk_X509_push(p, sk_X509_value(chain, i))) {
			sk_X509_pop_free(p, X509_free);
			return;
		}
		X509_up_ref(sk_X509_value(chain, i));
	}
	if (sk_X509_num(p) == 0 || !__atomic_compare_exchange_n(&ca->sv_path,
	    &none, p, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		sk_X509_pop_free(p, X509_free);
}

static int
self_verify(struct ca *ca, X509 *leaf, struct mtls_error *err)
{
	STACK_OF(X509) *certs = NULL, *path;
	struct verify_out vo;
	int i, rv = -1, r;

	if (self_verifier(ca, err) != 0)
		return -1;
	path = __atomic_load_n(&ca->sv_path, __ATOMIC_ACQUIRE);
	if (path != NULL)
		r = verify_leaf_on_path(ca->sv_cfg, ca->sv_store, path, leaf,
		    &vo, err);
	else {
		if ((certs = sk_X509_new_null()) == NULL ||
		    !sk_X509_push(certs, leaf))
			goto nomem;
		for (i = 0; i < sk_X509_num(ca->chain); i++)
			if (!sk_X509_push(certs, sk_X509_value(ca->chain, i)))
				goto nomem;
		r = verify_chain(ca->sv_cfg, ca->sv_store, certs,
		    MTLS_PURPOSE_ANY, &vo, err);
		if (r == 0)
			keep_path(ca, vo.chain);
	}
	if (r != 0) {
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
	sk_X509_free(certs);
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

	role = role_find(ca, r->role ? r->role : "default");
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
	uint64_t t;
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
	if (ca_until(now, ttl, 0, "lifetime", &pr.not_after, err) != 0)
		return -1;
	pr.not_after = ca_clamp(ca, pr.not_after, res);
	pr.pubkey = key;
	pr.pubkey_fast = 1;	/* verified, encoded, freed: never read */
	pr.crl_url = r->crl_url ? r->crl_url : ca->crl_url;
	pr.ocsp_url = r->ocsp_url ? r->ocsp_url : ca->ocsp_url;
	pr.ca_server = r->ca_server;
	/* Checked against our own policy before it is recorded; a serial
	 * collision (random 128 bits: practically never) signs again, with
	 * the same policy outcome (only the serial differs). */
	t = ca_phase_start();
	if (signer_sign(ca->signer, ca->cert, &pr, &cert, err) != 0) {
		X509_free(cert);
		return -1;
	}
	t = ca_phase_end(CA_PH_SIGN, t);
	if (self_verify(ca, cert, err) != 0) {
		X509_free(cert);
		return -1;
	}
	t = ca_phase_end(CA_PH_VERIFY, t);
	*out = cert;
	for (tries = 0; tries < 5; tries++) {
		if (*out == NULL && signer_sign(ca->signer, ca->cert, &pr,
		    out, err) != 0)
			return -1;
		rc = store_add_issued(ca->store, *out, "leaf", token_hash,
		    r->bundle_replaces, r->bundle_gen,
		    err);
		t = ca_phase_end(CA_PH_COMMIT, t);
		if (rc == 0) {
			serial_hex(X509_get0_serialNumber(*out), res->serial,
			    sizeof(res->serial));
			res->not_after = pr.not_after;
			return 0;
		}
		X509_free(*out);
		*out = NULL;
		if (rc == 2)
			res->fault = CA_FAULT_TOKEN;
		if (rc != 1)		/* 1: a serial collision */
			return -1;
	}
	return error_set(err, MTLS_ERR_IO, "could not find an unused serial");
}

int
ca_issue_pub(struct ca *ca, const struct ca_issue_req *r, EVP_PKEY *pub,
    const char *token_hash, X509 **out, struct ca_result *res,
    struct mtls_error *err)
{
	const struct ca_role *role;
	int64_t ttl;
	uint64_t t = ca_phase_start();
	int ok;

	memset(res, 0, sizeof(*res));
	*out = NULL;
	ok = check_request(ca, r, &role, &ttl, err) == 0 &&
	    role_allows_key(role, pub, err) == 0;
	ca_phase_end(CA_PH_POLICY, t);
	if (ok && issue_leaf(ca, r, ttl, pub, token_hash, out, res, err) == 0)
		return 0;
	if (res->fault == CA_FAULT_NONE)
		res->fault = ca_fault_of(err);
	return -1;
}

enum ca_fault
ca_fault_of(const struct mtls_error *err)
{
	if (err->sys == ENOSPC || err->sys == EDQUOT || err->sys == EROFS ||
	    err->sys == EIO)
		return CA_FAULT_STORAGE;
	return err->code == MTLS_ERR_ARG ? CA_FAULT_REFUSED : CA_FAULT_INTERNAL;
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
	int kt, rv = -1;

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
	if (ca_chain_stack(cert, ca->chain, &out_chain, err) != 0)
		goto out;
	if (ca_write_certs(pem_path, out_chain, r->force, err) != 0)
		goto out;
	rv = 0;
 out:
	sk_X509_free(out_chain);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rv;
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
static int
issued(struct ca *ca, X509 *x, int sig_checked, struct cert_rec *rec,
    char *why, size_t why_len, struct mtls_error *err)
{
	/* after a root rotation's switch, the previous issuer's leaves
	 * renew until they expire (rotation.c) */
	X509 *iss = ca->prev != NULL && X509_check_issued(ca->cert, x) !=
	    X509_V_OK ? ca->prev : ca->cert;
	EVP_PKEY *capub = X509_get0_pubkey(iss);
	const char *no = NULL;
	char serial[48];
	int rc;

	memset(rec, 0, sizeof(*rec));
	serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial));
	if (!sig_checked && X509_check_issued(iss, x) != X509_V_OK)
		no = "another issuer name or key identifier";
	else if (!sig_checked && (capub == NULL || X509_verify(x, capub) != 1))
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

int
ca_issued(struct ca *ca, X509 *x, struct cert_rec *rec, char *why,
    size_t why_len, struct mtls_error *err)
{
	return issued(ca, x, 0, rec, why, why_len, err);
}

int
ca_issued_memo(struct ca *ca, X509 *x, struct ca_issued_memo *memo,
    struct cert_rec *rec, char *why, size_t why_len, struct mtls_error *err)
{
	int rc;

	rc = issued(ca, x, memo->gen == ca->gen && memo->x == x, rec, why,
	    why_len, err);
	/* only a certificate that passed all three is remembered */
	if (rc == 0) {
		memo->gen = ca->gen;
		memo->x = x;
	}
	return rc;
}
