/* struct mtls: a context that verifies peers with a frozen config. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
	free(m);
}

void
ctx_set_peer(struct mtls *m, const struct verify_out *out)
{
	const char *id;

	free(m->peer_id);
	m->peer_id = NULL;
	m->peer_serial[0] = '\0';
	if (out->serial[0] != '\0')
		memcpy(m->peer_serial, out->serial, sizeof(m->peer_serial));
	if ((id = ids_primary(&out->ids)) != NULL)
		m->peer_id = strdup(id);
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

/* Verifies <pem>; <name> names it in messages. */
static int
verify_buf(struct mtls *m, const uint8_t *pem, size_t len, const char *name)
{
	STACK_OF(X509) *certs = NULL;
	struct verify_out out;
	int rv;

	error_clear(&m->err);
	free(m->peer_id);
	m->peer_id = NULL;
	m->peer_serial[0] = '\0';
	if (m->kind != KIND_VERIFY || m->cfg == NULL)
		return error_set(&m->err, MTLS_ERR_STATE,
		    "context is not configured: call mtls_configure() first");
	if (certs_parse(pem, len, name, &certs, &m->err) != 0)
		return -1;
	rv = verify_chain(m->cfg, m->store, certs, m->cfg->purpose, &out,
	    &m->err);
	ctx_set_peer(m, &out);
	verify_out_free(&out);
	sk_X509_pop_free(certs, X509_free);
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
