/*
 * TLS contexts and connections on OpenSSL's state machine: the TLS policy
 * of DESIGN.md, peer verification by our own policy (verify.c) from
 * OpenSSL's certificate callback, failure classification into the
 * taxonomy, and session tickets that are re-authorized on resumption.
 *
 * Resumption: a ticket carries the config generation and the cache key of
 * the peer's chain. On resumption the cached verification is checked again
 * (validity window at now, CRLs, allow rules); a ticket from another config
 * (a reload: new bundle, CRLs or rules), an evicted entry, or one that no
 * longer passes is ignored, so the client falls back to a full handshake,
 * which decides afresh. OpenSSL has no switch for this (DESIGN.md "TLS
 * policy").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "private.h"

/* TLS 1.2 (opt-in): ECDHE with AEAD only. TLS 1.3 suites are all AEAD. */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS	"X25519:P-256"
#define TICKET_MAX	16384


struct mtls *
mtls_server(void)
{
	struct mtls *m = mtls_new();

	if (m != NULL)
		m->kind = KIND_SERVER;
	return m;
}

struct mtls *
mtls_client(void)
{
	struct mtls *m = mtls_new();

	if (m != NULL)
		m->kind = KIND_CLIENT;
	return m;
}

void
tls_state_free(struct tls_state *st)
{
	if (st == NULL || __atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	SSL_CTX_free(st->ssl_ctx);
	X509_STORE_free(st->store);
	SSL_SESSION_free(st->sess);
	pthread_mutex_destroy(&st->sess_mu);
	mtls_config_free(st->cfg);
	free(st);
}

static struct tls_state *
state_ref(struct tls_state *st)
{
	__atomic_add_fetch(&st->refs, 1, __ATOMIC_ACQ_REL);
	return st;
}

static int
conn_purpose(const struct mtls *conn)
{
	/* a server checks client certificates and vice versa */
	return conn->conn_server ? MTLS_PURPOSE_CLIENT : MTLS_PURPOSE_SERVER;
}

/* Our verification of the peer's chain, in place of OpenSSL's. */
static int
verify_cb(X509_STORE_CTX *xctx, void *arg)
{
	struct tls_state *st = arg;
	SSL *ssl = X509_STORE_CTX_get_ex_data(xctx,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct mtls *conn = ssl ? SSL_get_app_data(ssl) : NULL;
	STACK_OF(X509) *certs = NULL, *untrusted;
	struct verify_out out;
	int i, ok = 0;

	if (conn == NULL)
		return 0;
	untrusted = X509_STORE_CTX_get0_untrusted(xctx);
	if ((certs = sk_X509_new_null()) == NULL ||
	    !sk_X509_push(certs, X509_STORE_CTX_get0_cert(xctx)))
		goto out;
	for (i = 0; untrusted != NULL && i < sk_X509_num(untrusted); i++) {
		X509 *x = sk_X509_value(untrusted, i);

		/* the client's untrusted list starts with its leaf */
		if (X509_cmp(x, X509_STORE_CTX_get0_cert(xctx)) == 0)
			continue;
		if (!sk_X509_push(certs, x))
			goto out;
	}
	ok = verify_chain_cached(st->cfg, st->store, certs, conn_purpose(conn),
	    conn->chain_key, &out, &conn->err) == 0;
	if (ok && conn->expect_name[0] != '\0') {
		char *name = conn->expect_name;

		ok = rules_match_ids(&name, 1, &out.ids, RULE_EXPECT) >= 0;
		if (!ok)
			error_fail(&conn->err, MTLS_FAIL_IDENTITY_MISMATCH,
			    "expected %s (the name we connected to), found %s",
			    conn->expect_name, ids_primary(&out.ids) ?
			    ids_primary(&out.ids) : "no identity");
	}
	ctx_set_peer(conn, &out);
	verify_out_free(&out);
 out:
	sk_X509_free(certs);
	/* A server keeps the client's chain in the session for the life of
	 * the connection; share the cached parse instead (the stack is the
	 * one OpenSSL stores; the objects are byte-identical): a large part
	 * of an idle connection's memory (bench/RESULTS.md). */
	if (ok && st->is_server && untrusted != NULL)
		verify_cache_share(st->cfg, conn->chain_key, untrusted);
	/* The peer learns only that its certificate was refused; the reason
	 * stays in our logs (DESIGN.md "Safe by default"). */
	conn->peer_ok = ok;
	if (!ok && st->is_server && st->cfg->peer_optional)
		return 1;	/* anonymous; the application decides */
	if (!ok)
		X509_STORE_CTX_set_error(xctx, X509_V_ERR_CERT_REJECTED);
	return ok;
}

/* Ticket app data: the config generation (8 bytes) and the cache key of
 * the peer's chain (32 bytes). Nothing else: the cache holds the rest. */
static int
ticket_gen_cb(SSL *ssl, void *arg)
{
	struct tls_state *st = arg;
	struct mtls *conn = SSL_get_app_data(ssl);
	static const uint8_t zero[32];
	unsigned char buf[40];
	int i;

	if (conn == NULL || memcmp(conn->chain_key, zero, 32) == 0)
		return 1;	/* no app data: resumption will be refused */
	for (i = 0; i < 8; i++)
		buf[i] = (unsigned char)(st->cfg->generation >> (56 - 8 * i));
	memcpy(buf + 8, conn->chain_key, 32);
	SSL_SESSION_set1_ticket_appdata(SSL_get0_session(ssl), buf,
	    sizeof(buf));
	return 1;
}

static SSL_TICKET_RETURN
ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname,
    size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	struct tls_state *st = arg;
	struct mtls *conn = SSL_get_app_data(ssl);
	struct verify_out out;
	struct mtls_error err;
	const unsigned char *p;
	void *data = NULL;
	size_t len = 0;
	uint64_t gen = 0;
	int i, r;

	(void)keyname;
	(void)keyname_len;
	if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
		return status == SSL_TICKET_EMPTY || status == SSL_TICKET_NO_DECRYPT ?
		    SSL_TICKET_RETURN_IGNORE_RENEW : SSL_TICKET_RETURN_IGNORE;
	if (conn == NULL || sess == NULL ||
	    !SSL_SESSION_get0_ticket_appdata(sess, &data, &len) || len != 40)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	p = data;
	for (i = 0; i < 8; i++)
		gen = (gen << 8) | p[i];
	/* another config (a reload: bundle, CRLs or rules changed) */
	if (gen != st->cfg->generation)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	r = verify_cache_lookup(st->cfg, p + 8, &out, &err);
	if (r == 0) {
		memcpy(conn->chain_key, p + 8, 32);
		ctx_set_peer(conn, &out);
		conn->peer_ok = r == 0;
	}
	verify_out_free(&out);
	ERR_clear_error();
	/* refused or unknown: a full handshake decides afresh */
	if (r != 0)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	return status == SSL_TICKET_SUCCESS_RENEW ? SSL_TICKET_RETURN_USE_RENEW :
	    SSL_TICKET_RETURN_USE;
}

/* A client keeps the newest resumable session (with the server name it was
 * made for); returning 1 keeps OpenSSL's reference. */
static int
client_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_state *st = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	if (st == NULL || !SSL_SESSION_is_resumable(sess))
		return 0;
	pthread_mutex_lock(&st->sess_mu);
	SSL_SESSION_free(st->sess);
	st->sess = sess;
	snprintf(st->sess_name, sizeof(st->sess_name), "%s", name ? name : "");
	pthread_mutex_unlock(&st->sess_mu);
	return 1;
}

/* Past its own timeout or the server's ticket lifetime hint a session
 * cannot resume; it is dropped then rather than kept, so its master secret
 * (cleansed by SSL_SESSION_free) does not outlive its use. */
int
tls_session_expired(const SSL_SESSION *s, time_t now)
{
	time_t t = SSL_SESSION_get_time(s);
	unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(s);

	if (now - t >= (time_t)SSL_SESSION_get_timeout(s))
		return 1;
	return hint > 0 && now - t >= (time_t)hint;
}

/* Offers the kept session when it is for <name>, has not expired, and the
 * server certificate it was made with is still valid now. */
static void
client_offer_session(struct tls_state *st, SSL *ssl, const char *name)
{
	X509 *peer;
	time_t now = time(NULL);

	pthread_mutex_lock(&st->sess_mu);
	if (st->sess != NULL && tls_session_expired(st->sess, now)) {
		SSL_SESSION_free(st->sess);
		st->sess = NULL;
	}
	if (st->sess != NULL && strcmp(st->sess_name, name ? name : "") == 0 &&
	    (peer = SSL_SESSION_get0_peer(st->sess)) != NULL &&
	    X509_cmp_time(X509_get0_notAfter(peer), &now) > 0)
		SSL_set_session(ssl, st->sess);
	pthread_mutex_unlock(&st->sess_mu);
}

/* Ticket sealing with the config's keys (shared across contexts), so a
 * ticket from one proxy worker resumes on another. */
static int
ticket_key_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls_state *st = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct mtls_config *cfg = st->cfg;
	uint8_t key[80];
	const uint8_t *k = NULL;
	OSSL_PARAM params[3];
	int i, renew = 0, rv = -1;

	pthread_mutex_lock(&cfg->tk_mu);
	if (enc) {
		k = cfg->ticket_keys[0];
		memcpy(name, k, 16);
		if (RAND_bytes(iv, 16) != 1)
			k = NULL;
	} else {
		for (i = 0; i < cfg->n_ticket_keys && k == NULL; i++)
			if (memcmp(name, cfg->ticket_keys[i], 16) == 0) {
				k = cfg->ticket_keys[i];
				renew = i > 0;
			}
	}
	if (k != NULL)
		memcpy(key, k, sizeof(key));
	pthread_mutex_unlock(&cfg->tk_mu);
	if (k == NULL)
		return 0;	/* unknown key: full handshake */
	k = key;
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
	    (void *)(k + 48), 32);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, params) &&
	    (enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k + 16, iv) :
	    EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k + 16, iv)))
		rv = renew ? 2 : 1;
	OPENSSL_cleanse(key, sizeof(key));
	return rv;
}

/* Server ALPN: our first protocol that the client offers, else none. */
static int
alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct tls_state *st = arg;
	unsigned char *sel = NULL;

	(void)ssl;
	if (SSL_select_next_proto(&sel, outlen, st->cfg->alpn,
	    (unsigned int)st->cfg->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int
build_ctx(struct tls_state *st, struct mtls_error *err)
{
	const struct mtls_config *cfg = st->cfg;
	STACK_OF(X509_NAME) *names = NULL;
	SSL_CTX *c;
	int i;

	if ((c = SSL_CTX_new(TLS_method())) == NULL)
		return error_set_ossl(err, MTLS_ERR_NOMEM, "cannot create TLS "
		    "context");
	st->ssl_ctx = c;
	if (!SSL_CTX_set_min_proto_version(c, cfg->min_tls) ||
	    !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) ||
	    !SSL_CTX_set1_groups_list(c, TLS_GROUPS) ||
	    !SSL_CTX_set_cipher_list(c, TLS12_CIPHERS))
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot set the TLS "
		    "policy");
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_max_early_data(c, 0);	/* no 0-RTT */
	/* one read() per socket buffer, not two per record (header, then
	 * body); callers that wait for readability check SSL_has_pending() */
	SSL_CTX_set_read_ahead(c, 1);
	/* identity: leaf, then intermediates */
	if (!SSL_CTX_use_certificate(c, sk_X509_value(cfg->chain, 0)) ||
	    !SSL_CTX_use_PrivateKey(c, cfg->key))
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot use the "
		    "certificate and key");
	for (i = 1; i < sk_X509_num(cfg->chain); i++)
		if (!SSL_CTX_add1_chain_cert(c, sk_X509_value(cfg->chain, i)))
			return error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot add "
			    "intermediate %d", i);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (st->is_server &&
	    cfg->peer_optional ? 0 : SSL_VERIFY_FAIL_IF_NO_PEER_CERT), NULL);
	SSL_CTX_set_cert_verify_callback(c, verify_cb, st);
	if (st->is_server) {
		/* CertificateRequest names the acceptable CAs */
		if ((names = sk_X509_NAME_new_null()) == NULL)
			return error_set(err, MTLS_ERR_NOMEM, "out of memory");
		for (i = 0; i < sk_X509_num(cfg->trust); i++) {
			X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(
			    sk_X509_value(cfg->trust, i)));

			if (nm == NULL || !sk_X509_NAME_push(names, nm)) {
				X509_NAME_free(nm);
				sk_X509_NAME_pop_free(names, X509_NAME_free);
				return error_set(err, MTLS_ERR_NOMEM,
				    "out of memory");
			}
		}
		SSL_CTX_set_client_CA_list(c, names);
		/* required for resumption when client certificates are
		 * verified; tickets from another state are refused anyway */
		if (!SSL_CTX_set_session_id_context(c,
		    (const unsigned char *)"mtls", 4))
			return error_set_ossl(err, MTLS_ERR_CRYPTO,
			    "cannot set the session context");
		/* one ticket per handshake: each costs a seal and a send */
		SSL_CTX_set_num_tickets(c, 1);
		SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_session_ticket_cb(c, ticket_gen_cb, ticket_dec_cb,
		    st);
		SSL_CTX_set_app_data(c, st);
		SSL_CTX_set_tlsext_ticket_key_evp_cb(c, ticket_key_cb);
	} else {
		/* keep the newest session ourselves (client_new_session) */
		SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(c, client_new_session);
		SSL_CTX_set_app_data(c, st);
	}
	if (cfg->alpn_len > 0) {
		if (st->is_server)
			SSL_CTX_set_alpn_select_cb(c, alpn_select_cb, st);
		else if (SSL_CTX_set_alpn_protos(c, cfg->alpn,
		    (unsigned int)cfg->alpn_len) != 0)
			return error_set_ossl(err, MTLS_ERR_CRYPTO, "ALPN");
	}
	return ocsp_setup_ctx(st, c, err);
}

int
tls_configure(struct mtls *m, struct mtls_config *cfg)
{
	struct tls_state *st;

	if (cfg->chain == NULL || cfg->key == NULL)
		return error_set(&m->err, MTLS_ERR_ARG, "config has no "
		    "certificate and key: mutual TLS needs one on both sides");
	if (cfg->trust == NULL || sk_X509_num(cfg->trust) == 0)
		return error_set(&m->err, MTLS_ERR_ARG, "config has no trust "
		    "bundle");
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return error_set(&m->err, MTLS_ERR_NOMEM, "out of memory");
	st->refs = 1;
	st->is_server = m->kind == KIND_SERVER;
	pthread_mutex_init(&st->sess_mu, NULL);
	st->cfg = cfg;
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL);
	config_freeze(cfg);
	if ((st->store = verify_store_new(cfg, &m->err)) == NULL ||
	    build_ctx(st, &m->err) != 0) {
		tls_state_free(st);
		return -1;
	}
	tls_state_free(m->tls);
	m->tls = st;
	return 0;
}

static int
conn_new(struct mtls *parent, struct mtls **out, int fd, int server)
{
	struct mtls *c;

	*out = NULL;
	error_clear(&parent->err);
	if (parent->tls == NULL)
		return error_set(&parent->err, MTLS_ERR_STATE, "context is not "
		    "configured: call mtls_configure() first");
	if ((c = mtls_new()) == NULL)
		return error_set(&parent->err, MTLS_ERR_NOMEM, "out of memory");
	c->kind = KIND_CONN;
	c->conn_server = server;
	c->tls = state_ref(parent->tls);
	if ((c->ssl = SSL_new(c->tls->ssl_ctx)) == NULL ||
	    !SSL_set_fd(c->ssl, fd)) {
		mtls_free(c);
		return error_set_ossl(&parent->err, MTLS_ERR_NOMEM, "cannot "
		    "create a TLS connection");
	}
	SSL_set_app_data(c->ssl, c);
	*out = c;
	return 0;
}

int
mtls_accept_socket(struct mtls *server, struct mtls **conn, int fd)
{
	if (server->kind != KIND_SERVER)
		return error_set(&server->err, MTLS_ERR_STATE, "not a server "
		    "context");
	if (conn_new(server, conn, fd, 1) != 0)
		return -1;
	SSL_set_accept_state((*conn)->ssl);
	return 0;
}

int
mtls_connect_socket(struct mtls *client, struct mtls **conn, int fd,
    const char *servername)
{
	char ip[64];
	struct mtls *c;

	if (client->kind != KIND_CLIENT)
		return error_set(&client->err, MTLS_ERR_STATE, "not a client "
		    "context");
	if (conn_new(client, conn, fd, 0) != 0)
		return -1;
	c = *conn;
	if (servername != NULL && *servername != '\0') {
		int is_ip = ip_canon(servername, ip, sizeof(ip)) == 0;

		if (!is_ip && !SSL_set_tlsext_host_name(c->ssl, servername))
			goto err;
		/* No expect rule: the name we connect to is the identity. */
		if (c->tls->cfg->n_expect == 0)
			snprintf(c->expect_name, sizeof(c->expect_name), "%s%s",
			    is_ip ? "ip:" : "dns:", is_ip ? ip : servername);
		if (strlen(servername) > 253 ||
		    (!is_ip && dns_name_check(servername, 0) != 0)) {
			error_set(&client->err, MTLS_ERR_ARG, "servername "
			    "'%.200s' is not a DNS name or IP address",
			    servername);
			mtls_free(c);
			*conn = NULL;
			return -1;
		}
	}
	SSL_set_connect_state(c->ssl);
	/* with require_staple every handshake checks a fresh response */
	if (!c->tls->cfg->require_staple)
		client_offer_session(c->tls, c->ssl, servername);
	return 0;
 err:
	error_set_ossl(&client->err, MTLS_ERR_ARG, "servername '%.200s'",
	    servername);
	mtls_free(c);
	*conn = NULL;
	return -1;
}

/* The alert a peer sent us, from OpenSSL's reason code, or -1. */
static int
peer_alert(unsigned long e)
{
	int r = ERR_GET_REASON(e);

	if (ERR_GET_LIB(e) == ERR_LIB_SSL && r >= SSL_AD_REASON_OFFSET &&
	    r < SSL_AD_REASON_OFFSET + 256)
		return r - SSL_AD_REASON_OFFSET;
	return -1;
}

/* TLS 1.3: the client finishes first, so a server that refuses our
 * certificate can only hang up (its alert is lost when it resets). */
static int
hung_up_after_hs(struct mtls *c)
{
	return error_fail(&c->err, MTLS_FAIL_PEER_REJECTED_OUR_CERT, "the "
	    "server closed the connection right after the handshake, before "
	    "any data: it most likely refused our certificate");
}

/* Sets a taxonomy code on <c> for a failed SSL call that returned <ret>. */
static int
classify(struct mtls *c, int ret)
{
	int se = SSL_get_error(c->ssl, ret);
	unsigned long e = ERR_peek_error();
	int alert = peer_alert(e);
	int r = ERR_GET_REASON(e);

	if (se == SSL_ERROR_WANT_READ)
		return MTLS_WANT_READ;
	if (se == SSL_ERROR_WANT_WRITE)
		return MTLS_WANT_WRITE;
	if (c->err.fail != MTLS_FAIL_NONE) {
		ERR_clear_error();
		return -1;	/* our verification already said why */
	}
	if (alert >= 0) {
		const char *name = SSL_alert_desc_string_long(alert);

		switch (alert) {
		case SSL_AD_HANDSHAKE_FAILURE:
		case SSL_AD_INSUFFICIENT_SECURITY:
			return error_fail(&c->err, MTLS_FAIL_NO_SHARED_ALGORITHM,
			    "peer sent alert %s: no common cipher, group or "
			    "signature algorithm", name);
		case SSL_AD_PROTOCOL_VERSION:
			return error_fail(&c->err, MTLS_FAIL_PROTOCOL_VERSION,
			    "peer sent alert %s", name);
		case SSL_AD_CERTIFICATE_REQUIRED:
		case SSL_AD_BAD_CERTIFICATE:
		case SSL_AD_UNSUPPORTED_CERTIFICATE:
		case SSL_AD_CERTIFICATE_REVOKED:
		case SSL_AD_CERTIFICATE_EXPIRED:
		case SSL_AD_CERTIFICATE_UNKNOWN:
		case SSL_AD_UNKNOWN_CA:
		case SSL_AD_ACCESS_DENIED:
		case SSL_AD_DECRYPT_ERROR:
			return error_fail(&c->err,
			    MTLS_FAIL_PEER_REJECTED_OUR_CERT,
			    "peer refused our certificate: alert %s", name);
		default:
			return error_fail(&c->err, MTLS_FAIL_PEER_REJECTED_OUR_CERT,
			    "peer sent alert %s", name);
		}
	}
	if ((se == SSL_ERROR_SYSCALL || se == SSL_ERROR_ZERO_RETURN ||
	    r == SSL_R_UNEXPECTED_EOF_WHILE_READING) && c->hs_done &&
	    !c->conn_server && c->rx == 0)
		return hung_up_after_hs(c);
	if (se == SSL_ERROR_SYSCALL || se == SSL_ERROR_ZERO_RETURN ||
	    r == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		if (!c->hs_done && !c->conn_server)
			return error_fail(&c->err, MTLS_FAIL_NOT_TLS, "the server "
			    "closed the connection during the handshake (not "
			    "TLS, or it refused us)");
		return error_fail(&c->err, MTLS_FAIL_NOT_TLS, "peer closed the "
		    "connection during the handshake");
	}
	switch (r) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return error_fail(&c->err, MTLS_FAIL_NO_CLIENT_CERT, "the client "
		    "sent no certificate");
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
		return error_fail(&c->err, MTLS_FAIL_PROTOCOL_VERSION, "no TLS "
		    "version in common (we require %s)",
		    c->tls->cfg->min_tls == TLS1_3_VERSION ? "TLS 1.3" :
		    "TLS 1.2 or later");
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
	case SSL_R_NO_CIPHERS_AVAILABLE:
	case SSL_R_NO_SUITABLE_KEY_SHARE:
		return error_fail(&c->err, MTLS_FAIL_NO_SHARED_ALGORITHM, "%s",
		    ERR_reason_error_string(e));
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
	case SSL_R_UNKNOWN_PROTOCOL:
		return error_fail(&c->err, MTLS_FAIL_NOT_TLS, "the peer does "
		    "not speak TLS (%s)", ERR_reason_error_string(e));
	case SSL_R_EXCESSIVE_MESSAGE_SIZE:
		/* OpenSSL refuses a Certificate message over max_cert_list
		 * (100 KiB) before parsing it; other messages have their own
		 * limits and stay generic */
		if (SSL_get_state(c->ssl) == TLS_ST_SR_CERT ||
		    SSL_get_state(c->ssl) == TLS_ST_CR_CERT)
			return error_fail(&c->err, MTLS_FAIL_CHAIN_TOO_LARGE,
			    "the %s's certificate chain is over the %ld-byte "
			    "limit", c->conn_server ? "client" : "server",
			    (long)SSL_get_max_cert_list(c->ssl));
		return error_fail(&c->err, MTLS_FAIL_NOT_TLS, "TLS handshake "
		    "failed: %s", ERR_reason_error_string(e));
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		return error_fail(&c->err, MTLS_FAIL_UNKNOWN_CA, "certificate "
		    "verification failed");
	default:
		return error_fail(&c->err, MTLS_FAIL_NOT_TLS, "TLS handshake "
		    "failed: %s", e ? ERR_reason_error_string(e) :
		    "unknown reason");
	}
}

/* A resumed client session when the config trusts federated domains:
 * the session's server chain verified again (a cache hit, normally), so
 * its identities are the ones a full handshake gives; a chain that no
 * longer passes fails the handshake as it would have. */
static int
client_resumed_fed(struct mtls *c)
{
	STACK_OF(X509) *sent = SSL_get_peer_cert_chain(c->ssl), *certs;
	X509 *leaf = SSL_get0_peer_certificate(c->ssl);
	struct verify_out out;
	int i, rc = -1;

	memset(&out, 0, sizeof(out));
	if ((certs = sk_X509_new_null()) == NULL || !sk_X509_push(certs, leaf))
		goto out;
	for (i = 0; sent != NULL && i < sk_X509_num(sent); i++)
		if (X509_cmp(sk_X509_value(sent, i), leaf) != 0 &&
		    !sk_X509_push(certs, sk_X509_value(sent, i)))
			goto out;
	if (verify_chain_cached(c->tls->cfg, c->tls->store, certs,
	    MTLS_PURPOSE_SERVER, c->chain_key, &out, &c->err) != 0)
		goto out;
	if (c->expect_name[0] != '\0') {
		char *name = c->expect_name;

		if (rules_match_ids(&name, 1, &out.ids, RULE_EXPECT) < 0) {
			error_fail(&c->err, MTLS_FAIL_IDENTITY_MISMATCH,
			    "expected %s (the name we connected to), found %s",
			    c->expect_name, ids_primary(&out.ids) ?
			    ids_primary(&out.ids) : "no identity");
			goto out;
		}
	}
	ctx_set_peer(c, &out);
	c->peer_ok = 1;
	rc = 0;
 out:
	if (rc != 0 && c->err.code == 0)
		error_set(&c->err, MTLS_ERR_NOMEM, "out of memory");
	verify_out_free(&out);
	sk_X509_free(certs);
	if (rc != 0)	/* refused: nothing more is read or written */
		SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN |
		    SSL_RECEIVED_SHUTDOWN);
	return rc;
}

int
mtls_handshake(struct mtls *c)
{
	int r;

	if (c->kind != KIND_CONN)
		return error_set(&c->err, MTLS_ERR_STATE, "not a connection");
	if (c->hs_done)
		return 0;
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	ctx_peer_chain_reset(c);
	if (r == 1) {
		c->hs_done = 1;
		/* a resumed client session was verified when it was made, by
		 * this same state; name the peer from its certificate (with
		 * federated trust domains, through the same verification, so
		 * a partner's server keeps only its SPIFFE IDs) */
		if (c->peer_id == NULL && SSL_session_reused(c->ssl) &&
		    SSL_get0_peer_certificate(c->ssl) != NULL &&
		    c->tls->cfg->fed != NULL &&
		    sk_X509_num(c->tls->cfg->fed) > 0)
			return client_resumed_fed(c);
		if (c->peer_id == NULL && SSL_session_reused(c->ssl) &&
		    SSL_get0_peer_certificate(c->ssl) != NULL) {
			struct verify_out out;
			struct mtls_error e;

			memset(&out, 0, sizeof(out));
			if (ids_from_cert(SSL_get0_peer_certificate(c->ssl),
			    &out.ids, &e) == 0) {
				serial_hex(X509_get0_serialNumber(
				    SSL_get0_peer_certificate(c->ssl)),
				    out.serial, sizeof(out.serial));
				ctx_set_peer(c, &out);
				c->peer_ok = 1;
			}
			verify_out_free(&out);
		}
		return 0;
	}
	return classify(c, r);
}

long
mtls_read(struct mtls *c, void *buf, size_t len)
{
	size_t n = 0;
	int se;

	if (c->kind != KIND_CONN)
		return error_set(&c->err, MTLS_ERR_STATE, "not a connection");
	ERR_clear_error();
	if (SSL_read_ex(c->ssl, buf, len, &n) == 1) {
		c->hs_done = 1;
		c->rx += n;
		return (long)n;
	}
	se = SSL_get_error(c->ssl, 0);
	if (se == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (se == SSL_ERROR_SSL &&
	    ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return 0;
	if (se == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && c->hs_done)
		return 0;
	return classify(c, 0);
}

int
mtls_pending(struct mtls *c)
{
	return c->kind == KIND_CONN && c->ssl != NULL &&
	    SSL_has_pending(c->ssl) == 1;
}

X509 *
tls_peer_cert(struct mtls *c)
{
	return c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
}

long
mtls_write(struct mtls *c, const void *buf, size_t len)
{
	size_t n = 0;

	if (c->kind != KIND_CONN)
		return error_set(&c->err, MTLS_ERR_STATE, "not a connection");
	ERR_clear_error();
	if (SSL_write_ex(c->ssl, buf, len, &n) == 1)
		return (long)n;
	if (c->hs_done && !c->conn_server && c->rx == 0 &&
	    SSL_get_error(c->ssl, 0) == SSL_ERROR_SYSCALL) {
		unsigned char b[1];

		/* TLS 1.3: a server that refuses our certificate after our
		 * Finished sends its alert and hangs up, and our first write
		 * meets the hang-up. The alert may be waiting unread: peek
		 * (it consumes no data) for the reason. */
		ERR_clear_error();
		if (SSL_peek_ex(c->ssl, b, sizeof(b), &n) != 1 &&
		    peer_alert(ERR_peek_error()) >= 0)
			return classify(c, 0);
		ERR_clear_error();
		return hung_up_after_hs(c);
	}
	return classify(c, 0);
}

int
mtls_close(struct mtls *c)
{
	int r;

	if (c->kind != KIND_CONN)
		return error_set(&c->err, MTLS_ERR_STATE, "not a connection");
	ERR_clear_error();
	r = SSL_shutdown(c->ssl);
	if (r >= 0)
		return 0;
	r = SSL_get_error(c->ssl, r);
	if (r == SSL_ERROR_WANT_READ)
		return MTLS_WANT_READ;
	if (r == SSL_ERROR_WANT_WRITE)
		return MTLS_WANT_WRITE;
	ERR_clear_error();
	return 0;	/* the peer is gone; nothing more to say */
}

const char *
mtls_conn_alpn(struct mtls *c)
{
	static __thread char buf[33];
	const unsigned char *p = NULL;
	unsigned int n = 0;

	if (c->ssl != NULL)
		SSL_get0_alpn_selected(c->ssl, &p, &n);
	if (p == NULL || n == 0 || n >= sizeof(buf))
		return "";
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

const char *
mtls_conn_version(struct mtls *c)
{
	return c->ssl && c->hs_done ? SSL_get_version(c->ssl) : "";
}

const char *
mtls_conn_cipher(struct mtls *c)
{
	const char *s = c->ssl && c->hs_done ? SSL_get_cipher_name(c->ssl) : NULL;

	return s ? s : "";
}

const char *
mtls_conn_group(struct mtls *c)
{
	int nid;
	const char *s = NULL;

	if (c->ssl == NULL || !c->hs_done)
		return "";
	nid = SSL_get_negotiated_group(c->ssl);
	if (nid != NID_undef)
		s = SSL_group_to_name(c->ssl, nid);
	return s ? s : "";
}

int
mtls_conn_resumed(struct mtls *c)
{
	return c->ssl != NULL && c->hs_done && SSL_session_reused(c->ssl);
}

int
mtls_peer_verified(struct mtls *c)
{
	return c->kind == KIND_CONN && c->hs_done && c->peer_ok &&
	    c->peer_id != NULL;
}

void
mtls_conn_wire_bytes(struct mtls *c, uint64_t *in, uint64_t *out)
{
	BIO *r = c->ssl ? SSL_get_rbio(c->ssl) : NULL;
	BIO *w = c->ssl ? SSL_get_wbio(c->ssl) : NULL;

	if (in)
		*in = r ? BIO_number_read(r) : 0;
	if (out)
		*out = w ? BIO_number_written(w) : 0;
}
