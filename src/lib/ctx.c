/* struct mtls: a context that verifies peers with a frozen config; what
 * any context says about its peer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "private.h"

struct mtls *
mtls_new(void)
{
	return calloc(1, sizeof(struct mtls));	/* KIND_VERIFY */
}

void
mtls_free(struct mtls *m)
{
	if (m == NULL)
		return;
	SSL_free(m->ssl);
	tls_state_free(m->tls);
	X509_STORE_free(m->store);
	mtls_config_free(m->cfg);
	free(m->peer_id);
	ids_free(&m->peer_ids);
	sk_X509_pop_free(m->peer_certs, X509_free);
	ctx_peer_chain_reset(m);
	free(m);
}

/* Forgets the peer of the last verification. */
static void
peer_clear(struct mtls *m)
{
	free(m->peer_id);
	m->peer_id = NULL;
	m->peer_serial[0] = '\0';
	ids_free(&m->peer_ids);
	ctx_peer_chain_reset(m);
}

void
ctx_set_peer(struct mtls *m, const struct verify_out *out)
{
	const char *id;

	peer_clear(m);
	if (out->serial[0] != '\0')
		memcpy(m->peer_serial, out->serial, sizeof(m->peer_serial));
	if ((id = ids_primary(&out->ids)) != NULL)
		m->peer_id = strdup(id);
	/* out of memory: no identities, never other ones */
	if (ids_copy(&m->peer_ids, &out->ids) != 0)
		memset(&m->peer_ids, 0, sizeof(m->peer_ids));
}

void
ctx_peer_chain_reset(struct mtls *m)
{
	free(m->peer_der);
	free(m->peer_der_off);
	free(m->peer_pem);
	m->peer_der = NULL;
	m->peer_der_off = NULL;
	m->peer_n = 0;
	m->peer_pem = NULL;
	m->peer_pem_len = 0;
}

const char *
mtls_error(struct mtls *m)
{
	return m->err.msg;
}

int
mtls_error_code(struct mtls *m)
{
	return m->err.code;
}

int
mtls_fail_code(struct mtls *m)
{
	return m->err.fail;
}

const struct mtls_error *
ctx_error(const struct mtls *m)
{
	return &m->err;
}

int
ctx_fail(struct mtls *m, int fail, const char *fmt, ...)
{
	char msg[sizeof(m->err.msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return error_fail(&m->err, fail, "%s", msg);
}

X509_STORE *
ctx_store(const struct mtls *m)
{
	return m->store;
}

const char *
mtls_peer_id(struct mtls *m)
{
	return m->peer_id;
}

const char *
mtls_peer_serial(struct mtls *m)
{
	return m->peer_serial[0] ? m->peer_serial : NULL;
}

size_t
mtls_peer_identity_count(struct mtls *m)
{
	return m->peer_ids.n;
}

const char *
mtls_peer_identity(struct mtls *m, size_t i)
{
	return i < m->peer_ids.n ? m->peer_ids.v[i] : NULL;
}

/* The peer's certificates, leaf first: a verifier's last input, or a
 * connection's (a server's OpenSSL keeps the client's leaf apart from the
 * rest; a client's list starts with the leaf). A new stack of borrowed
 * pointers, NULL when there is none or no memory. */
static STACK_OF(X509) *
peer_certs(struct mtls *m)
{
	STACK_OF(X509) *sk, *rest;
	X509 *leaf;
	int i;

	if (m->kind != KIND_CONN)
		return m->peer_certs ? sk_X509_dup(m->peer_certs) : NULL;
	if ((leaf = tls_peer_cert(m)) == NULL || (sk = sk_X509_new_null()) ==
	    NULL)
		return NULL;
	if (!sk_X509_push(sk, leaf))
		goto nomem;
	rest = SSL_get_peer_cert_chain(m->ssl);
	for (i = 0; rest != NULL && i < sk_X509_num(rest); i++) {
		X509 *x = sk_X509_value(rest, i);

		if (i == 0 && X509_cmp(x, leaf) == 0)
			continue;
		if (!sk_X509_push(sk, x))
			goto nomem;
	}
	return sk;
 nomem:
	sk_X509_free(sk);
	return NULL;
}

/* Encodes the peer chain once (DER and PEM) for the accessors. */
static int
peer_chain_encode(struct mtls *m)
{
	STACK_OF(X509) *sk;
	BIO *bio = NULL;
	BUF_MEM *mem;
	size_t n, total = 0, i;
	int len, rv = -1;

	if (m->peer_der_off != NULL)
		return 0;
	if ((sk = peer_certs(m)) == NULL || (n = (size_t)sk_X509_num(sk)) == 0)
		goto out;
	for (i = 0; i < n; i++) {
		if ((len = i2d_X509(sk_X509_value(sk, (int)i), NULL)) <= 0)
			goto out;
		total += (size_t)len;
	}
	if ((m->peer_der = malloc(total)) == NULL ||
	    (m->peer_der_off = calloc(n + 1, sizeof(size_t))) == NULL ||
	    (bio = BIO_new(BIO_s_mem())) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		unsigned char *p = m->peer_der + m->peer_der_off[i];
		X509 *x = sk_X509_value(sk, (int)i);

		if ((len = i2d_X509(x, &p)) <= 0 || !PEM_write_bio_X509(bio, x))
			goto out;
		m->peer_der_off[i + 1] = m->peer_der_off[i] + (size_t)len;
	}
	BIO_get_mem_ptr(bio, &mem);
	if ((m->peer_pem = malloc(mem->length + 1)) == NULL)
		goto out;
	memcpy(m->peer_pem, mem->data, mem->length);
	m->peer_pem[mem->length] = '\0';
	m->peer_pem_len = mem->length;
	m->peer_n = n;
	rv = 0;
 out:
	if (rv != 0)
		ctx_peer_chain_reset(m);
	BIO_free(bio);
	sk_X509_free(sk);
	ERR_clear_error();
	return rv;
}

size_t
mtls_peer_chain_count(struct mtls *m)
{
	return peer_chain_encode(m) == 0 ? m->peer_n : 0;
}

const uint8_t *
mtls_peer_chain_der(struct mtls *m, size_t i, size_t *len)
{
	if (len != NULL)
		*len = 0;
	if (peer_chain_encode(m) != 0 || i >= m->peer_n)
		return NULL;
	if (len != NULL)
		*len = m->peer_der_off[i + 1] - m->peer_der_off[i];
	return m->peer_der + m->peer_der_off[i];
}

const uint8_t *
mtls_peer_chain_pem(struct mtls *m, size_t *len)
{
	if (len != NULL)
		*len = 0;
	if (peer_chain_encode(m) != 0)
		return NULL;
	if (len != NULL)
		*len = m->peer_pem_len;
	return (const uint8_t *)m->peer_pem;
}

int
mtls_peer_validity(struct mtls *m, int64_t *not_before, int64_t *not_after)
{
	X509 *leaf = m->kind == KIND_CONN ? tls_peer_cert(m) :
	    m->peer_certs != NULL ? sk_X509_value(m->peer_certs, 0) : NULL;

	if (leaf == NULL)
		return -1;
	if (not_before != NULL)
		*not_before = asn1_time_unix(X509_get0_notBefore(leaf));
	if (not_after != NULL)
		*not_after = asn1_time_unix(X509_get0_notAfter(leaf));
	return 0;
}

int
mtls_configure(struct mtls *m, struct mtls_config *cfg)
{
	X509_STORE *st;

	error_clear(&m->err);
	if (m->kind == KIND_SERVER || m->kind == KIND_CLIENT)
		return tls_configure(m, cfg);
	if (m->kind != KIND_VERIFY)
		return error_set(&m->err, MTLS_ERR_STATE,
		    "a connection cannot be configured; reconfigure its "
		    "server or client context");
	if (cfg->trust == NULL || sk_X509_num(cfg->trust) == 0)
		return error_set(&m->err, MTLS_ERR_ARG,
		    "config has no trust bundle: set one with "
		    "mtls_config_set_trust_file()");
	if ((st = verify_store_new(cfg, &m->err)) == NULL)
		return -1;
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL);
	config_freeze(cfg);
	mtls_config_free(m->cfg);
	X509_STORE_free(m->store);
	m->cfg = cfg;
	m->store = st;
	return 0;
}

int
ctx_verify_chain(struct mtls *m, STACK_OF(X509) *certs, int purpose,
    struct verify_out *out)
{
	error_clear(&m->err);
	if (m->kind != KIND_VERIFY || m->cfg == NULL) {
		memset(out, 0, sizeof(*out));
		return error_set(&m->err, MTLS_ERR_STATE,
		    "context is not configured: call mtls_configure() first");
	}
	return verify_chain(m->cfg, m->store, certs, purpose, out, &m->err);
}

/* Verifies <pem>; <name> names it in messages. */
static int
verify_buf(struct mtls *m, const uint8_t *pem, size_t len, const char *name)
{
	STACK_OF(X509) *certs = NULL;
	struct verify_out out;
	int rv;

	error_clear(&m->err);
	peer_clear(m);
	sk_X509_pop_free(m->peer_certs, X509_free);
	m->peer_certs = NULL;
	if (m->kind != KIND_VERIFY || m->cfg == NULL)
		return error_set(&m->err, MTLS_ERR_STATE,
		    "context is not configured: call mtls_configure() first");
	if (certs_parse(pem, len, name, &certs, &m->err) != 0)
		return -1;
	rv = ctx_verify_chain(m, certs, m->cfg->purpose, &out);
	ctx_set_peer(m, &out);
	verify_out_free(&out);
	m->peer_certs = certs;
	return rv;
}

int
mtls_verify_pem(struct mtls *m, const uint8_t *pem, size_t len)
{
	return verify_buf(m, pem, len, "peer chain");
}

int
mtls_verify_file(struct mtls *m, const char *path)
{
	uint8_t *buf;
	size_t len;
	int rv;

	error_clear(&m->err);
	if (fs_read(path, MTLS_MAX_FILE, &buf, &len, &m->err) != 0)
		return -1;
	rv = verify_buf(m, buf, len, path);
	free(buf);
	return rv;
}
