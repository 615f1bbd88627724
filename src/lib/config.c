/* struct mtls_config: what to present, whom to trust, whom to allow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ocsp.h>

#include "private.h"

static uint64_t generation_counter;

struct mtls_config *
mtls_config_new(void)
{
	struct mtls_config *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->refs = 1;
	c->min_tls = TLS1_3_VERSION;	/* DESIGN.md: TLS 1.3 only by default */
	if (RAND_bytes(c->ticket_keys[0], sizeof(c->ticket_keys[0])) != 1) {
		free(c);
		return NULL;
	}
	c->n_ticket_keys = 1;
	pthread_mutex_init(&c->tk_mu, NULL);
	c->generation = __atomic_add_fetch(&generation_counter, 1,
	    __ATOMIC_ACQ_REL);
	if ((c->vcache = verify_cache_new()) == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

void
mtls_config_free(struct mtls_config *c)
{
	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	secret_clear(&c->pass);
	OPENSSL_cleanse(c->ticket_keys, sizeof(c->ticket_keys));
	pthread_mutex_destroy(&c->tk_mu);
	verify_cache_free(c->vcache);
	sk_X509_pop_free(c->chain, X509_free);
	EVP_PKEY_free(c->key);
	config_borrow_trust(c, NULL);
	strv_free(c->fed_td, c->fed ? (size_t)sk_X509_num(c->fed) : 0);
	sk_X509_pop_free(c->fed, X509_free);
	sk_X509_pop_free(c->untrusted, X509_free);
	sk_X509_CRL_pop_free(c->crls, X509_CRL_free);
	strv_free(c->allow, c->n_allow);
	strv_free(c->expect, c->n_expect);
	free(c->staple);
	free(c);
}

const char *
mtls_config_error(struct mtls_config *c)
{
	return c->err.msg;
}

int
mtls_config_error_code(struct mtls_config *c)
{
	return c->err.code;
}

static int
writable(struct mtls_config *c)
{
	error_clear(&c->err);
	if (c->frozen)
		return error_set(&c->err, MTLS_ERR_STATE,
		    "config is in use by a context and cannot change; build "
		    "a new one");
	return 0;
}

int
mtls_config_set_key_passphrase(struct mtls_config *c, const char *pass,
    size_t len)
{
	if (writable(c) != 0)
		return -1;
	if (secret_set(&c->pass, pass, len) != 0)
		return error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
	return 0;
}

/* Takes <chain> and <key> (both freed on failure) once the key is the
 * leaf's; the names are for the message. */
static int
set_identity(struct mtls_config *c, STACK_OF(X509) *chain, EVP_PKEY *key,
    const char *cert_name, const char *key_name)
{
	if (X509_check_private_key(sk_X509_value(chain, 0), key) != 1) {
		sk_X509_pop_free(chain, X509_free);
		EVP_PKEY_free(key);
		return error_set(&c->err, MTLS_ERR_PARSE,
		    "%s: private key does not match certificate %s", key_name,
		    cert_name);
	}
	sk_X509_pop_free(c->chain, X509_free);
	EVP_PKEY_free(c->key);
	c->chain = chain;
	c->key = key;
	return 0;
}

int
mtls_config_set_identity_file(struct mtls_config *c, const char *cert,
    const char *key_path)
{
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;

	if (writable(c) != 0)
		return -1;
	if (certs_load(cert, &chain, &c->err) != 0)
		return -1;
	if (key_load_cert(key_path, &c->pass, sk_X509_value(chain, 0), &key,
	    &c->err) != 0) {
		sk_X509_pop_free(chain, X509_free);
		return -1;
	}
	return set_identity(c, chain, key, cert, key_path);
}

/* The in-memory inputs: a size the file inputs could have. */
static int
mem_ok(struct mtls_config *c, const uint8_t *buf, size_t len,
    const char *what)
{
	if (buf == NULL || len == 0)
		return error_set(&c->err, MTLS_ERR_ARG, "%s: empty", what);
	if (len > MTLS_MAX_FILE)
		return error_set(&c->err, MTLS_ERR_ARG, "%s: %zu bytes, over "
		    "the limit of %u", what, len, MTLS_MAX_FILE);
	return 0;
}

/* Certificates from memory for a setter of <c>; <name> for messages. */
static int
certs_mem(struct mtls_config *c, const uint8_t *buf, size_t len,
    const char *name, STACK_OF(X509) **sk)
{
	*sk = NULL;
	if (writable(c) != 0 || mem_ok(c, buf, len, name) != 0)
		return -1;
	return certs_parse(buf, len, name, sk, &c->err);
}

int
mtls_config_set_identity_mem(struct mtls_config *c, const uint8_t *cert,
    size_t cert_len, const uint8_t *key_buf, size_t key_len)
{
	static const char cn[] = "certificate (memory)", kn[] = "key (memory)";
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;

	if (writable(c) != 0 || mem_ok(c, key_buf, key_len, kn) != 0 ||
	    certs_mem(c, cert, cert_len, cn, &chain) != 0)
		return -1;
	if (key_parse(key_buf, key_len, kn, &c->pass, &key, &c->err) != 0) {
		sk_X509_pop_free(chain, X509_free);
		return -1;
	}
	return set_identity(c, chain, key, cn, kn);
}

/* Appends a reference to each of <from> to <to>: 0, or -1 out of memory
 * (<to> then holds some of them, to be freed whole by the caller). */
static int
push_refs(STACK_OF(X509) *to, STACK_OF(X509) *from)
{
	int i;

	for (i = 0; from != NULL && i < sk_X509_num(from); i++) {
		if (!sk_X509_push(to, sk_X509_value(from, i)))
			return -1;
		X509_up_ref(sk_X509_value(from, i));
	}
	return 0;
}

/* Our own anchors <sk> (taken) become the bundle; the federated trust
 * domains' anchors stay in it. A root that already anchors a federated
 * trust domain is refused: one root, one trust domain, ours included (a
 * partner's bundle that holds our root must not scope it to the partner). */
static int
set_trust(struct mtls_config *c, STACK_OF(X509) *sk)
{
	char label[256];
	const char *td;
	int i;

	for (i = 0; i < sk_X509_num(sk); i++)
		if ((td = verify_fed_td(c, sk_X509_value(sk, i))) != NULL) {
			cert_label(sk_X509_value(sk, i), label, sizeof(label));
			error_set(&c->err, MTLS_ERR_ARG, "our own bundle: %s is "
			    "already the anchor of trust domain %s; a root "
			    "anchors one trust domain (ours or a partner's)",
			    label, td);
			sk_X509_pop_free(sk, X509_free);
			return -1;
		}
	if (push_refs(sk, c->fed) != 0) {
		sk_X509_pop_free(sk, X509_free);
		return error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
	}
	config_borrow_trust(c, NULL);
	c->trust = sk;
	return 0;
}

int
mtls_config_set_trust_file(struct mtls_config *c, const char *path)
{
	STACK_OF(X509) *sk = NULL;

	if (writable(c) != 0 || certs_load(path, &sk, &c->err) != 0)
		return -1;
	return set_trust(c, sk);
}

int
mtls_config_set_trust_mem(struct mtls_config *c, const uint8_t *buf,
    size_t len)
{
	STACK_OF(X509) *sk;

	if (certs_mem(c, buf, len, "trust bundle (memory)", &sk) != 0)
		return -1;
	return set_trust(c, sk);
}

/*
 * The anchors <sk> (taken) of federated trust domain <td>, <name> for
 * messages: each is added to the bundle and remembered with its trust
 * domain, which verify.c holds every chain through it to. A root already
 * given for another trust domain, or one of our own roots, is refused (a
 * root anchors one trust domain); given again for the same one it is kept
 * once. All or nothing.
 */
static int
add_trust_domain(struct mtls_config *c, const char *td, STACK_OF(X509) *sk,
    const char *name)
{
	STACK_OF(X509) *trust = NULL, *fed = NULL;
	char why[160], **tds = NULL, label[256];
	const char *had;
	size_t n_tds = 0;
	int i, rv = -1;

	if (trust_domain_check(td, why, sizeof(why)) != 0) {
		error_set(&c->err, MTLS_ERR_ARG, "trust domain '%.80s' for %s: "
		    "%s", td ? td : "", name, why);
		goto out;
	}
	/* A partner's bundle is hostile input: OpenSSL 3.0's trust store
	 * costs O(n^2 log n) to fill (3000 roots: 7 s of CPU; 12000, which
	 * fit in MTLS_MAX_FILE: minutes at every rebuild). */
	if (sk_X509_num(sk) > MTLS_MAX_FED_ROOTS) {
		error_set(&c->err, MTLS_ERR_ARG, "%s: %d certificates; a "
		    "federated trust domain's bundle holds at most %d roots",
		    name, sk_X509_num(sk), MTLS_MAX_FED_ROOTS);
		goto out;
	}
	if ((trust = sk_X509_new_null()) == NULL ||
	    (fed = sk_X509_new_null()) == NULL ||
	    push_refs(trust, c->trust) != 0 || push_refs(fed, c->fed) != 0)
		goto nomem;
	for (i = 0; c->fed != NULL && i < sk_X509_num(c->fed); i++)
		if (strv_add(&tds, &n_tds, c->fed_td[i]) != 0)
			goto nomem;
	for (i = 0; i < sk_X509_num(sk); i++) {
		X509 *x = sk_X509_value(sk, i);
		int j;

		for (had = NULL, j = 0; j < sk_X509_num(fed) && had == NULL; j++)
			if (X509_cmp(sk_X509_value(fed, j), x) == 0)
				had = tds[j];
		if (had != NULL && strcmp(had, td) != 0) {
			cert_label(x, label, sizeof(label));
			error_set(&c->err, MTLS_ERR_ARG, "%s: %s is already the "
			    "anchor of trust domain %s; a root anchors one "
			    "trust domain (%s)", name, label, had, td);
			goto out;
		}
		for (j = 0; had == NULL && j < sk_X509_num(trust); j++)
			if (X509_cmp(sk_X509_value(trust, j), x) == 0) {
				cert_label(x, label, sizeof(label));
				error_set(&c->err, MTLS_ERR_ARG, "%s: %s is one "
				    "of our own roots; a root anchors one trust "
				    "domain (ours, not %s)", name, label, td);
				goto out;
			}
		if (had != NULL)
			continue;
		if (!sk_X509_push(fed, x))
			goto nomem;
		X509_up_ref(x);
		if (strv_add(&tds, &n_tds, td) != 0 || !sk_X509_push(trust, x))
			goto nomem;
		X509_up_ref(x);
	}
	config_borrow_trust(c, NULL);
	c->trust = trust;
	trust = NULL;
	strv_free(c->fed_td, c->fed ? (size_t)sk_X509_num(c->fed) : 0);
	sk_X509_pop_free(c->fed, X509_free);
	c->fed = fed;
	c->fed_td = tds;
	fed = NULL;
	tds = NULL;
	rv = 0;
	goto out;
 nomem:
	error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
 out:
	sk_X509_pop_free(trust, X509_free);
	/* on failure the names may be one short of <fed>: free by count */
	strv_free(tds, n_tds);
	sk_X509_pop_free(fed, X509_free);
	sk_X509_pop_free(sk, X509_free);
	return rv;
}

int
mtls_config_add_trust_domain_file(struct mtls_config *c, const char *td,
    const char *path)
{
	STACK_OF(X509) *sk = NULL;

	if (writable(c) != 0 || certs_load(path, &sk, &c->err) != 0)
		return -1;
	return add_trust_domain(c, td, sk, path);
}

int
mtls_config_add_trust_domain_mem(struct mtls_config *c, const char *td,
    const uint8_t *buf, size_t len)
{
	static const char name[] = "trust domain bundle (memory)";
	STACK_OF(X509) *sk;

	if (certs_mem(c, buf, len, name, &sk) != 0)
		return -1;
	return add_trust_domain(c, td, sk, name);
}

/* Appends <sk> (taken) to the untrusted intermediates. */
static int
add_untrusted(struct mtls_config *c, STACK_OF(X509) *sk)
{
	if (c->untrusted == NULL) {
		c->untrusted = sk;
		return 0;
	}
	while (sk_X509_num(sk) > 0) {
		X509 *x = sk_X509_shift(sk);

		if (!sk_X509_push(c->untrusted, x)) {
			X509_free(x);
			sk_X509_pop_free(sk, X509_free);
			return error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
		}
	}
	sk_X509_free(sk);
	return 0;
}

int
mtls_config_add_untrusted_file(struct mtls_config *c, const char *path)
{
	STACK_OF(X509) *sk = NULL;

	if (writable(c) != 0 || certs_load(path, &sk, &c->err) != 0)
		return -1;
	return add_untrusted(c, sk);
}

int
mtls_config_add_untrusted_mem(struct mtls_config *c, const uint8_t *buf,
    size_t len)
{
	STACK_OF(X509) *sk;

	if (certs_mem(c, buf, len, "intermediates (memory)", &sk) != 0)
		return -1;
	return add_untrusted(c, sk);
}

/*
 * A CRL is checked against what the config knows when it is added: signed
 * by a CA of the trust bundle (or an intermediate or own chain certificate
 * under it) that has its issuer's name, else refused. An issuer the config
 * does not know yet (a trust bundle set later, an intermediate only peers
 * send) is left to OpenSSL, which verifies the signature when it uses the
 * CRL. Time is left to verification too (mtls_config_set_verify_time may
 * come later); the proxy checks time and CRL numbers itself (crl_check).
 */
static int
add_crls(struct mtls_config *c, STACK_OF(X509_CRL) *sk, const char *name)
{
	STACK_OF(X509) *others = sk_X509_new_null();
	int i, v;

	for (i = 0; others != NULL && c->untrusted != NULL &&
	    i < sk_X509_num(c->untrusted); i++)
		if (!sk_X509_push(others, sk_X509_value(c->untrusted, i)))
			goto nomem;
	for (i = 0; others != NULL && c->chain != NULL &&
	    i < sk_X509_num(c->chain); i++)
		if (!sk_X509_push(others, sk_X509_value(c->chain, i)))
			goto nomem;
	if (others == NULL)
		goto nomem;
	/* the CAs are judged at the verification time (CRL times are not) */
	v = crl_check(sk, name, c->trust, others, NULL, 0, c->verify_time ?
	    c->verify_time : (int64_t)time(NULL), &c->err);
	sk_X509_free(others);
	if (v != CRL_OK) {
		sk_X509_CRL_pop_free(sk, X509_CRL_free);
		return -1;
	}
	if (c->crls == NULL) {
		c->crls = sk;
		return 0;
	}
	while (sk_X509_CRL_num(sk) > 0) {
		X509_CRL *x = sk_X509_CRL_shift(sk);

		if (!sk_X509_CRL_push(c->crls, x)) {
			X509_CRL_free(x);
			sk_X509_CRL_pop_free(sk, X509_CRL_free);
			return error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
		}
	}
	sk_X509_CRL_free(sk);
	return 0;
 nomem:
	sk_X509_free(others);
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	return error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
}

int
mtls_config_add_crl_file(struct mtls_config *c, const char *path)
{
	STACK_OF(X509_CRL) *sk = NULL;

	if (writable(c) != 0 || crls_load(path, &sk, &c->err) != 0)
		return -1;
	return add_crls(c, sk, path);
}

int
mtls_config_add_crl_mem(struct mtls_config *c, const uint8_t *buf,
    size_t len, const char *name)
{
	STACK_OF(X509_CRL) *sk = NULL;

	if (writable(c) != 0 || crls_parse(buf, len, name ? name : "CRL", &sk,
	    &c->err) != 0)
		return -1;
	return add_crls(c, sk, name ? name : "CRL");
}

static int
add_rule(struct mtls_config *c, char ***v, size_t *n, const char *rule,
    const char *what)
{
	char why[200], **nv, *s;

	if (writable(c) != 0)
		return -1;
	if (mtls_rule_check(rule, why, sizeof(why)) != 0)
		return error_set(&c->err, MTLS_ERR_ARG, "%s '%.200s': %s", what,
		    rule ? rule : "", why);
	if ((s = strdup(rule)) == NULL ||
	    (nv = realloc(*v, (*n + 1) * sizeof(*nv))) == NULL) {
		free(s);
		return error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
	}
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

int
mtls_config_add_allow(struct mtls_config *c, const char *rule)
{
	return add_rule(c, &c->allow, &c->n_allow, rule, "allow rule");
}

int
mtls_config_add_expect(struct mtls_config *c, const char *rule)
{
	return add_rule(c, &c->expect, &c->n_expect, rule, "expected identity");
}

int
mtls_config_set_allow_any(struct mtls_config *c)
{
	if (writable(c) != 0)
		return -1;
	c->allow_any = 1;
	return 0;
}

int
mtls_config_set_peer_optional(struct mtls_config *c)
{
	if (writable(c) != 0)
		return -1;
	c->peer_optional = 1;
	return 0;
}

int
mtls_config_set_ocsp_staple(struct mtls_config *c, const uint8_t *der,
    size_t len)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *r;
	uint8_t *copy;

	if (writable(c) != 0)
		return -1;
	if (der == NULL || len == 0 || len > 65536 ||
	    (r = d2i_OCSP_RESPONSE(NULL, &p, (long)len)) == NULL) {
		ERR_clear_error();
		return error_set(&c->err, MTLS_ERR_PARSE, "OCSP response to "
		    "staple: not a DER OCSP response");
	}
	OCSP_RESPONSE_free(r);
	if (p != der + len)
		return error_set(&c->err, MTLS_ERR_PARSE, "OCSP response to "
		    "staple: trailing bytes");
	if ((copy = malloc(len)) == NULL)
		return error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
	memcpy(copy, der, len);
	free(c->staple);
	c->staple = copy;
	c->staple_len = len;
	return 0;
}

int
mtls_config_set_alpn(struct mtls_config *c, const char *protos)
{
	const char *p = protos, *e;
	size_t n = 0, len;

	if (writable(c) != 0)
		return -1;
	while (p != NULL && *p != '\0') {
		e = strchr(p, ',');
		len = e ? (size_t)(e - p) : strlen(p);
		if (len == 0 || len > 32 || n + 1 + len > sizeof(c->alpn))
			return error_set(&c->err, MTLS_ERR_ARG, "ALPN list '%.80s': "
			    "names of 1 to 32 bytes, comma-separated, 63 bytes "
			    "in all", protos);
		c->alpn[n++] = (uint8_t)len;
		memcpy(c->alpn + n, p, len);
		n += len;
		p = e ? e + 1 : NULL;
	}
	c->alpn_len = n;
	return 0;
}

int
mtls_config_set_require_staple(struct mtls_config *c)
{
	if (writable(c) != 0)
		return -1;
	c->require_staple = 1;
	return 0;
}

int
mtls_config_set_purpose(struct mtls_config *c, enum mtls_purpose p)
{
	if (writable(c) != 0)
		return -1;
	if (p != MTLS_PURPOSE_ANY && p != MTLS_PURPOSE_SERVER &&
	    p != MTLS_PURPOSE_CLIENT)
		return error_set(&c->err, MTLS_ERR_ARG, "unknown purpose %d",
		    (int)p);
	c->purpose = p;
	return 0;
}

int
mtls_config_set_verify_time(struct mtls_config *c, int64_t t)
{
	if (writable(c) != 0)
		return -1;
	if (t < 0)
		return error_set(&c->err, MTLS_ERR_ARG,
		    "verify time must be a UNIX time >= 0");
	c->verify_time = t;
	return 0;
}

int
mtls_config_set_min_tls(struct mtls_config *c, const char *version)
{
	if (writable(c) != 0)
		return -1;
	if (version != NULL && strcmp(version, "1.3") == 0)
		c->min_tls = TLS1_3_VERSION;
	else if (version != NULL && strcmp(version, "1.2") == 0)
		c->min_tls = TLS1_2_VERSION;
	else
		return error_set(&c->err, MTLS_ERR_ARG, "TLS version '%s': "
		    "use 1.3 (default) or 1.2", version ? version : "");
	return 0;
}

int
mtls_config_set_ticket_key_file(struct mtls_config *c, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv = -1;

	if (writable(c) != 0 || fs_read(path, 4096, &buf, &len, &c->err) != 0)
		return -1;
	/* the format of nginx's ssl_session_ticket_key: 80 bytes a key (name
	 * 16, AES-256 32, HMAC 32); the first seals, a second still opens */
	if (len != 80 && len != 160) {
		error_set(&c->err, MTLS_ERR_PARSE, "%s: %zu bytes; a ticket key "
		    "file holds 80 (or 160: current, previous) random bytes, "
		    "e.g. openssl rand 80 > %s", path, len, path);
		goto out;
	}
	pthread_mutex_lock(&c->tk_mu);
	memcpy(c->ticket_keys, buf, len);
	c->n_ticket_keys = (int)(len / 80);
	pthread_mutex_unlock(&c->tk_mu);
	rv = 0;
 out:
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rv;
}

static void
hash_der(EVP_MD_CTX *md, const char *tag, int (*i2d)(const void *,
    unsigned char **), const void *obj)
{
	unsigned char *der = NULL;
	int n = i2d(obj, &der);

	EVP_DigestUpdate(md, tag, strlen(tag) + 1);
	if (n > 0)
		EVP_DigestUpdate(md, der, (size_t)n);
	OPENSSL_free(der);
}

static int
i2d_x509(const void *x, unsigned char **p)
{
	return i2d_X509((X509 *)x, p);
}

static int
i2d_crl(const void *x, unsigned char **p)
{
	return i2d_X509_CRL((X509_CRL *)x, p);
}

void
config_freeze(struct mtls_config *c)
{
	EVP_MD_CTX *md;
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	uint64_t g = 0;
	size_t i;
	int j, ok;

	pthread_mutex_lock(&c->tk_mu);
	if (c->frozen) {
		pthread_mutex_unlock(&c->tk_mu);
		return;
	}
	md = EVP_MD_CTX_new();
	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (j = 0; ok && c->trust && j < sk_X509_num(c->trust); j++)
		hash_der(md, "anchor", i2d_x509, sk_X509_value(c->trust, j));
	/* which trust domain a federated anchor vouches for changes verdicts:
	 * part of the generation, so a cache is shared only with the same */
	for (j = 0; ok && c->fed && j < sk_X509_num(c->fed); j++) {
		hash_der(md, "federated", i2d_x509, sk_X509_value(c->fed, j));
		EVP_DigestUpdate(md, c->fed_td[j], strlen(c->fed_td[j]) + 1);
	}
	for (j = 0; ok && c->untrusted && j < sk_X509_num(c->untrusted); j++)
		hash_der(md, "untrusted", i2d_x509,
		    sk_X509_value(c->untrusted, j));
	for (j = 0; ok && c->crls && j < sk_X509_CRL_num(c->crls); j++)
		hash_der(md, "crl", i2d_crl, sk_X509_CRL_value(c->crls, j));
	for (i = 0; ok && i < c->n_allow; i++)
		EVP_DigestUpdate(md, c->allow[i], strlen(c->allow[i]) + 1);
	if (ok)
		EVP_DigestUpdate(md, "|", 1);
	for (i = 0; ok && i < c->n_expect; i++)
		EVP_DigestUpdate(md, c->expect[i], strlen(c->expect[i]) + 1);
	if (ok) {
		int64_t v[4] = { c->allow_any, c->purpose, c->verify_time,
		    c->peer_optional };

		EVP_DigestUpdate(md, v, sizeof(v));
		ok = EVP_DigestFinal_ex(md, h, &n) && n >= 8;
	}
	EVP_MD_CTX_free(md);
	if (ok) {
		for (j = 0; j < 8; j++)
			g = g << 8 | h[j];
		c->generation = g;
	}	/* else keep the unique counter value: no sharing, still safe */
	c->frozen = 1;
	pthread_mutex_unlock(&c->tk_mu);
}

void
config_inherit(struct mtls_config *dst, struct mtls_config *src, int keys_too)
{
	uint8_t keys[2][80];
	int n;

	pthread_mutex_lock(&src->tk_mu);
	memcpy(keys, src->ticket_keys, sizeof(keys));
	n = src->n_ticket_keys;
	pthread_mutex_unlock(&src->tk_mu);
	pthread_mutex_lock(&dst->tk_mu);
	if (keys_too) {
		memcpy(dst->ticket_keys, keys, sizeof(keys));
		dst->n_ticket_keys = n;
	}
	if (dst->generation == src->generation && src->vcache != NULL) {
		verify_cache_free(dst->vcache);
		dst->vcache = verify_cache_ref(src->vcache);
	}
	pthread_mutex_unlock(&dst->tk_mu);
	OPENSSL_cleanse(keys, sizeof(keys));
}

int
config_rotate_ticket_keys(struct mtls_config *c)
{
	uint8_t fresh[80];
	int rv = -1;

	if (RAND_bytes(fresh, sizeof(fresh)) != 1)
		return -1;
	pthread_mutex_lock(&c->tk_mu);
	memcpy(c->ticket_keys[1], c->ticket_keys[0], 80);
	memcpy(c->ticket_keys[0], fresh, 80);
	c->n_ticket_keys = 2;
	rv = 0;
	pthread_mutex_unlock(&c->tk_mu);
	OPENSSL_cleanse(fresh, sizeof(fresh));
	return rv;
}

struct mtls_config *
config_ref(struct mtls_config *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
	return c;
}

STACK_OF(X509) *
config_chain(const struct mtls_config *c)
{
	return c->chain;
}

X509 *
config_leaf(const struct mtls_config *c)
{
	return c->chain != NULL ? sk_X509_value(c->chain, 0) : NULL;
}

STACK_OF(X509) *
config_trust(const struct mtls_config *c)
{
	return c->trust;
}

void
config_borrow_trust(struct mtls_config *c, STACK_OF(X509) *anchors)
{
	if (!c->trust_borrowed)
		sk_X509_pop_free(c->trust, X509_free);
	c->trust = anchors;
	c->trust_borrowed = anchors != NULL;
}

void
config_set_scope_oid(struct mtls_config *c, const char *oid)
{
	snprintf(c->scope_oid, sizeof(c->scope_oid), "%s", oid ? oid : "");
}

const struct mtls_error *
config_error(const struct mtls_config *c)
{
	return &c->err;
}
