/*
 * tls.c: handshakes between a libmtls server and client (or a bare
 * OpenSSL peer for what libmtls never sends) over in-memory BIO pairs,
 * with certificates from profile.c: success, the taxonomy code of each
 * failure a handshake can produce without a network, resumption
 * re-authorized against the current config, optional client
 * certificates, and read-ahead delivering every buffered record.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <time.h>
#include <cmocka.h>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "pki_fixture.h"
/* a white-box test of tls.c: it puts BIO pairs under the connection's SSL,
 * a field only src/lib (and its own unit tests) may see */
#define MTLS_BUILDING_LIB
#include "private.h"

#define SERVER_NAME	"server.example.org"
#define CLIENT_ID	"spiffe://example.org/ns/prod/client"
#define SERVER_ID	"spiffe://example.org/ns/prod/server"

static struct {
	char		 dir[256];
	int64_t		 now;
	struct fx_cert	 c[16];
	size_t		 n;
	X509_CRL	*crl;
	struct fx_cert	 open;		/* the issuing CA, signs OCSP */
	X509		*server, *client;
} pki;

/* Writes <leaf> + <chain> to <dir>/<name>.pem and its key to .key. */
static struct fx_cert *
ident(const char *name, struct fx_cert leaf, X509 *chain)
{
	char path[512], fname[64];
	STACK_OF(X509) *sk = fx_stack(leaf.x, chain, NULL);

	snprintf(fname, sizeof(fname), "%s.pem", name);
	fx_write_certs(pki.dir, fname, sk, path, sizeof(path));
	sk_X509_pop_free(sk, X509_free);
	snprintf(fname, sizeof(fname), "%s.key", name);
	fx_write_key(pki.dir, fname, leaf.k, path, sizeof(path));
	assert_true(pki.n < sizeof(pki.c) / sizeof(pki.c[0]));
	pki.c[pki.n] = leaf;
	return &pki.c[pki.n++];
}

static int
make_pki(void **state)
{
	static const char *server_ids[] = { SERVER_ID, "dns:" SERVER_NAME,
	    NULL };
	static const char *client_ids[] = { CLIENT_ID, NULL };
	static const char *gone_ids[] = { "spiffe://example.org/ns/prod/gone",
	    NULL };
	static const char *fclient_ids[] = { "spiffe://other.org/client",
	    NULL };
	static const char *fserver_ids[] = { "dns:" SERVER_NAME, NULL };
	static const char *pserver_ids[] = { "spiffe://other.org/ns/web",
	    "dns:" SERVER_NAME, NULL };
	struct fx_cert root, open, other, oint, *gone;
	char path[512];
	int64_t now;

	(void)state;
	fx_tmpdir(pki.dir, sizeof(pki.dir));
	now = pki.now = (int64_t)time(NULL);
	root = fx_root("example.org", "example.org Root CA", now);
	open = fx_intermediate(&root, "example.org", "open", NULL, 0, NULL, 0,
	    now);
	other = fx_root("other.org", "other.org Root CA", now);
	oint = fx_intermediate(&other, "other.org", "other int", NULL, 0, NULL,
	    0, now);
	fx_write_cert(pki.dir, "root.pem", root.x, path, sizeof(path));
	pki.server = ident("server", fx_leaf(&open, "example.org", server_ids,
	    now - 60, now + FX_DAY), open.x)->x;
	pki.client = ident("client", fx_leaf(&open, "example.org", client_ids,
	    now - 60, now + FX_DAY), open.x)->x;
	ident("expired", fx_leaf(&open, "example.org", client_ids,
	    now - 2 * FX_DAY, now - FX_DAY), open.x);
	gone = ident("gone", fx_leaf(&open, "example.org", gone_ids, now - 60,
	    now + FX_DAY), open.x);
	ident("future", fx_leaf(&open, "example.org", client_ids, now + FX_DAY,
	    now + 2 * FX_DAY), open.x);
	ident("alone", fx_leaf(&open, "example.org", client_ids, now - 60,
	    now + FX_DAY), NULL);	/* no intermediate sent */
	ident("foreign", fx_leaf(&oint, "other.org", fclient_ids, now - 60,
	    now + FX_DAY), oint.x);
	ident("fserver", fx_leaf(&oint, "other.org", fserver_ids, now - 60,
	    now + FX_DAY), oint.x);
	ident("pserver", fx_leaf(&oint, "other.org", pserver_ids, now - 60,
	    now + FX_DAY), oint.x);
	fx_write_cert(pki.dir, "other.pem", other.x, path, sizeof(path));
	ident("serveronly", fx_mk("example.org", "serveronly", &open,
	    "basicConstraints=critical,CA:FALSE\n"
	    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
	    "subjectAltName=URI:spiffe://example.org/ns/prod/s", NULL, NULL, 0,
	    now), open.x);
	pki.crl = fx_crl(&open, gone->x, now);
	fx_write_crl(pki.dir, "crl.pem", pki.crl, path, sizeof(path));
	fx_cert_free(&root);
	pki.open = open;
	fx_cert_free(&other);
	fx_cert_free(&oint);
	return 0;
}

static int
free_pki(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < pki.n; i++)
		fx_cert_free(&pki.c[i]);
	X509_CRL_free(pki.crl);
	fx_cert_free(&pki.open);
	fx_rmdir(pki.dir);
	return 0;
}

static void
path_of(const char *name, const char *ext, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s%s", pki.dir, name, ext);
}

/* A config presenting identity <name> and trusting <anchors>. */
static struct mtls_config *
cfg_new(const char *name, const char *anchors)
{
	struct mtls_config *cfg = mtls_config_new();
	char cert[512], key[512];

	assert_non_null(cfg);
	path_of(name, ".pem", cert, sizeof(cert));
	path_of(name, ".key", key, sizeof(key));
	if (mtls_config_set_identity_file(cfg, cert, key) != 0)
		fail_msg("identity %s: %s", name, mtls_config_error(cfg));
	path_of(anchors, ".pem", cert, sizeof(cert));
	assert_int_equal(mtls_config_set_trust_file(cfg, cert), 0);
	return cfg;
}

/* A server or client context configured with <cfg> (reference taken). */
static struct mtls *
ctx_new(int server, struct mtls_config *cfg)
{
	struct mtls *m = server ? mtls_server() : mtls_client();

	assert_non_null(m);
	if (mtls_configure(m, cfg) != 0)
		fail_msg("configure: %s", mtls_error(m));
	mtls_config_free(cfg);
	return m;
}

/* One end of a connection: a libmtls one, or a bare OpenSSL one. */
struct end {
	struct mtls	*m;
	SSL		*raw;
	int		 rc;	/* last handshake result; MTLS_WANT_* */
};

/* Connects two ends with a BIO pair in place of their sockets. */
static void
link_ends(struct end *a, struct end *b)
{
	BIO *x, *y;

	assert_int_equal(BIO_new_bio_pair(&x, 0, &y, 0), 1);
	SSL_set_bio(a->m ? a->m->ssl : a->raw, x, x);
	SSL_set_bio(b->m ? b->m->ssl : b->raw, y, y);
	a->rc = b->rc = MTLS_WANT_READ;
}

static void
end_free(struct end *e)
{
	mtls_free(e->m);
	SSL_free(e->raw);
	memset(e, 0, sizeof(*e));
}

static void
step(struct end *e)
{
	int r;

	if (e->rc != MTLS_WANT_READ && e->rc != MTLS_WANT_WRITE)
		return;
	if (e->m != NULL) {
		e->rc = mtls_handshake(e->m);
		return;
	}
	ERR_clear_error();
	r = SSL_do_handshake(e->raw);
	if (r == 1)
		e->rc = 0;
	else if (SSL_get_error(e->raw, r) == SSL_ERROR_WANT_READ)
		e->rc = MTLS_WANT_READ;
	else
		e->rc = -1;
}

/* Both handshakes, in turns, until neither can go on (bounded). */
static void
pump(struct end *c, struct end *s)
{
	int i;

	for (i = 0; i < 16; i++) {
		step(c);
		step(s);
	}
}

/* A libmtls connection of <server> and one of <client> to <name>. */
static void
open_pair(struct mtls *server, struct mtls *client, const char *name,
    struct end *s, struct end *c)
{
	memset(s, 0, sizeof(*s));
	memset(c, 0, sizeof(*c));
	if (server != NULL)
		assert_int_equal(mtls_accept_socket(server, &s->m, -1), 0);
	if (client != NULL)
		assert_int_equal(mtls_connect_socket(client, &c->m, -1, name), 0);
}

/* A bare OpenSSL client (no certificate unless <cert>), TLS <= <maxv>,
 * offering <groups> (NULL: OpenSSL's). */
static SSL *
raw_client(const char *cert, int maxv, const char *groups)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char path[512];
	SSL *ssl;

	assert_non_null(ctx);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	assert_true(SSL_CTX_set_max_proto_version(ctx, maxv));
	if (groups != NULL)
		assert_true(SSL_CTX_set1_groups_list(ctx, groups));
	if (cert != NULL) {
		path_of(cert, ".pem", path, sizeof(path));
		assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, path), 1);
		path_of(cert, ".key", path, sizeof(path));
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, path,
		    SSL_FILETYPE_PEM), 1);
	}
	assert_non_null(ssl = SSL_new(ctx));
	SSL_CTX_free(ctx);
	SSL_set_connect_state(ssl);
	return ssl;
}

/* A bare OpenSSL server with the server identity, TLS <= <maxv>, taking
 * key shares of <groups> (NULL: OpenSSL's). */
static SSL *
raw_server(int maxv, const char *groups)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char path[512];
	SSL *ssl;

	assert_non_null(ctx);
	assert_true(SSL_CTX_set_max_proto_version(ctx, maxv));
	if (groups != NULL)
		assert_true(SSL_CTX_set1_groups_list(ctx, groups));
	path_of("server", ".pem", path, sizeof(path));
	assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, path), 1);
	path_of("server", ".key", path, sizeof(path));
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, path,
	    SSL_FILETYPE_PEM), 1);
	assert_non_null(ssl = SSL_new(ctx));
	SSL_CTX_free(ctx);
	SSL_set_accept_state(ssl);
	return ssl;
}

/* The payload the peer of <e> sent, read through libmtls. */
static void
expect_read(struct end *e, const char *want)
{
	char buf[256];
	long n;

	n = mtls_read(e->m, buf, sizeof(buf) - 1);
	if (n < 0)
		fail_msg("read: %ld %s (%s)", n,
		    mtls_fail_name(mtls_fail_code(e->m)), mtls_error(e->m));
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void
send_str(struct end *e, const char *s)
{
	assert_int_equal(mtls_write(e->m, s, strlen(s)), (long)strlen(s));
}

/* Server <scfg> and client <ccfg> handshake; returns the two ends. */
static void
handshake(struct mtls_config *scfg, struct mtls_config *ccfg,
    const char *name, struct mtls **server, struct mtls **client,
    struct end *s, struct end *c)
{
	*server = ctx_new(1, scfg);
	*client = ctx_new(0, ccfg);
	open_pair(*server, *client, name, s, c);
	link_ends(c, s);
	pump(c, s);
}

static void
test_success(void **state)
{
	struct mtls_config *scfg = cfg_new("server", "root");
	struct mtls_config *ccfg = cfg_new("client", "root");
	struct mtls *server, *client;
	struct end s, c;
	uint64_t in = 0, out = 0;

	(void)state;
	assert_int_equal(mtls_config_add_allow(scfg,
	    "spiffe://example.org/ns/prod/*"), 0);
	assert_int_equal(mtls_config_set_alpn(scfg, "http/1.1"), 0);
	assert_int_equal(mtls_config_set_alpn(ccfg, "h2,http/1.1"), 0);
	server = ctx_new(1, scfg);
	client = ctx_new(0, ccfg);
	open_pair(server, client, SERVER_NAME, &s, &c);
	/* nothing negotiated yet */
	assert_string_equal(mtls_conn_version(c.m), "");
	assert_string_equal(mtls_conn_cipher(c.m), "");
	assert_string_equal(mtls_conn_group(c.m), "");
	assert_int_equal(mtls_peer_verified(s.m), 0);
	link_ends(&c, &s);
	pump(&c, &s);
	assert_int_equal(c.rc, 0);
	assert_int_equal(s.rc, 0);
	assert_int_equal(mtls_handshake(s.m), 0);	/* done stays done */
	assert_string_equal(mtls_peer_id(s.m), CLIENT_ID);
	assert_string_equal(mtls_peer_id(c.m), SERVER_ID);
	assert_non_null(mtls_peer_serial(s.m));
	assert_int_equal(mtls_peer_verified(s.m), 1);
	assert_int_equal(mtls_peer_verified(c.m), 1);
	assert_int_equal(mtls_fail_code(s.m), MTLS_FAIL_NONE);
	assert_string_equal(mtls_conn_version(s.m), "TLSv1.3");
	assert_string_not_equal(mtls_conn_cipher(s.m), "");
	assert_string_equal(mtls_conn_group(c.m), "x25519");
	assert_string_equal(mtls_conn_alpn(c.m), "http/1.1");
	assert_string_equal(mtls_conn_alpn(s.m), "http/1.1");
	assert_int_equal(mtls_conn_resumed(s.m), 0);
	send_str(&c, "ping");
	expect_read(&s, "ping");
	send_str(&s, "pong");
	expect_read(&c, "pong");
	mtls_conn_wire_bytes(s.m, &in, &out);
	assert_true(in > 0 && out > 0);
	/* close_notify: the peer reads the end of stream */
	assert_int_equal(mtls_close(c.m), 0);
	assert_int_equal(mtls_read(s.m, (char[8]){ 0 }, 8), 0);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
	mtls_free(client);
}

/*
 * The server refuses the client certificate <client_ident> (with <opt>
 * applied to the server config) with taxonomy code <want>; the client,
 * whose TLS 1.3 handshake was already complete, learns from the alert
 * that its certificate was refused.
 */
static void
server_refuses(const char *client_ident, void (*opt)(struct mtls_config *),
    int want, const char *peer_id)
{
	struct mtls_config *scfg = cfg_new("server", "root");
	struct mtls *server, *client;
	struct end s, c;
	char buf[16];

	if (opt != NULL)
		opt(scfg);
	handshake(scfg, cfg_new(client_ident, "root"), SERVER_NAME, &server,
	    &client, &s, &c);
	if (s.rc != -1 || mtls_fail_code(s.m) != want)
		fail_msg("%s: server gave %d %s (%s), want %s", client_ident,
		    s.rc, mtls_fail_name(mtls_fail_code(s.m)), mtls_error(s.m),
		    mtls_fail_name(want));
	assert_int_equal(mtls_error_code(s.m), MTLS_ERR_VERIFY);
	assert_int_equal(mtls_peer_verified(s.m), 0);
	/* who was refused is known (for the log), when the leaf parsed */
	if (peer_id != NULL)
		assert_string_equal(mtls_peer_id(s.m), peer_id);
	assert_int_equal(c.rc, 0);
	assert_int_equal(mtls_read(c.m, buf, sizeof(buf)), -1);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_PEER_REJECTED_OUR_CERT);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
	mtls_free(client);
}

static void
allow_dev(struct mtls_config *cfg)
{
	assert_int_equal(mtls_config_add_allow(cfg,
	    "spiffe://example.org/ns/dev/*"), 0);
}

static void
add_crl(struct mtls_config *cfg)
{
	char path[512];

	path_of("crl", ".pem", path, sizeof(path));
	if (mtls_config_add_crl_file(cfg, path) != 0)
		fail_msg("crl: %s", mtls_config_error(cfg));
}

static void
allow_tls12(struct mtls_config *cfg)
{
	assert_int_equal(mtls_config_set_min_tls(cfg, "1.2"), 0);
}

static void
test_unknown_ca(void **state)
{
	(void)state;
	server_refuses("foreign", NULL, MTLS_FAIL_UNKNOWN_CA,
	    "spiffe://other.org/client");
}

static void
test_cert_expired(void **state)
{
	(void)state;
	server_refuses("expired", NULL, MTLS_FAIL_CERT_EXPIRED, CLIENT_ID);
}

static void
test_cert_not_yet_valid(void **state)
{
	(void)state;
	server_refuses("future", NULL, MTLS_FAIL_CERT_NOT_YET_VALID, CLIENT_ID);
}

static void
test_chain_incomplete(void **state)
{
	(void)state;
	server_refuses("alone", NULL, MTLS_FAIL_CHAIN_INCOMPLETE, CLIENT_ID);
}

static void
test_not_authorized(void **state)
{
	(void)state;
	server_refuses("client", allow_dev, MTLS_FAIL_NOT_AUTHORIZED, CLIENT_ID);
}

static void
test_revoked(void **state)
{
	(void)state;
	server_refuses("gone", add_crl, MTLS_FAIL_REVOKED, NULL);
}

static void
test_bad_key_usage(void **state)
{
	(void)state;
	/* a serverAuth-only certificate presented as a client's */
	server_refuses("serveronly", NULL, MTLS_FAIL_BAD_KEY_USAGE, NULL);
}

/* The client refuses the server: a foreign CA, or another name. */
static void
client_refuses(const char *server_ident, const char *name, int want)
{
	struct mtls *server, *client;
	struct end s, c;

	handshake(cfg_new(server_ident, "root"), cfg_new("client", "root"),
	    name, &server, &client, &s, &c);
	if (c.rc != -1 || mtls_fail_code(c.m) != want)
		fail_msg("client gave %d %s (%s), want %s", c.rc,
		    mtls_fail_name(mtls_fail_code(c.m)), mtls_error(c.m),
		    mtls_fail_name(want));
	assert_int_equal(s.rc, -1);
	assert_int_equal(mtls_fail_code(s.m), MTLS_FAIL_PEER_REJECTED_OUR_CERT);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
	mtls_free(client);
}

static void
test_client_unknown_ca(void **state)
{
	(void)state;
	client_refuses("fserver", SERVER_NAME, MTLS_FAIL_UNKNOWN_CA);
}

static void
test_client_identity_mismatch(void **state)
{
	(void)state;
	/* the name we connect to is the identity the server must have */
	client_refuses("server", "other.example.org",
	    MTLS_FAIL_IDENTITY_MISMATCH);
}

/* A bare client against a libmtls server (default config + <opt>). */
static void
raw_vs_server(SSL *raw, void (*opt)(struct mtls_config *), struct end *s,
    struct end *c, struct mtls **server)
{
	struct mtls_config *scfg = cfg_new("server", "root");

	if (opt != NULL)
		opt(scfg);
	*server = ctx_new(1, scfg);
	open_pair(*server, NULL, NULL, s, c);
	c->raw = raw;
	link_ends(c, s);
	pump(c, s);
}

static void
expect_server_fail(SSL *raw, int want)
{
	struct mtls *server;
	struct end s, c;

	raw_vs_server(raw, NULL, &s, &c, &server);
	if (s.rc != -1 || mtls_fail_code(s.m) != want)
		fail_msg("server gave %d %s (%s), want %s", s.rc,
		    mtls_fail_name(mtls_fail_code(s.m)), mtls_error(s.m),
		    mtls_fail_name(want));
	end_free(&s);
	end_free(&c);
	mtls_free(server);
}

static void
test_no_client_cert(void **state)
{
	(void)state;
	expect_server_fail(raw_client(NULL, TLS1_3_VERSION, NULL),
	    MTLS_FAIL_NO_CLIENT_CERT);
}

static void
test_protocol_version(void **state)
{
	struct mtls *client;
	struct end s, c;

	(void)state;
	/* a TLS 1.2 client at a TLS 1.3 server */
	expect_server_fail(raw_client("client", TLS1_2_VERSION, NULL),
	    MTLS_FAIL_PROTOCOL_VERSION);
	/* our client at a TLS 1.2 server: the server's alert names it */
	client = ctx_new(0, cfg_new("client", "root"));
	open_pair(NULL, client, SERVER_NAME, &s, &c);
	s.raw = raw_server(TLS1_2_VERSION, NULL);
	link_ends(&c, &s);
	pump(&c, &s);
	assert_int_equal(c.rc, -1);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_PROTOCOL_VERSION);
	end_free(&s);
	end_free(&c);
	mtls_free(client);
}

static void
test_no_shared_algorithm(void **state)
{
	(void)state;
	/* only P-384 key shares; the server takes X25519 and P-256 */
	expect_server_fail(raw_client("client", TLS1_3_VERSION, "P-384"),
	    MTLS_FAIL_NO_SHARED_ALGORITHM);
}

/* Our client at a server that takes no group we offer: its alert says
 * why. */
static void
test_client_no_shared_algorithm(void **state)
{
	struct mtls *client;
	struct end s, c;

	(void)state;
	client = ctx_new(0, cfg_new("client", "root"));
	open_pair(NULL, client, SERVER_NAME, &s, &c);
	s.raw = raw_server(TLS1_3_VERSION, "P-521");
	link_ends(&c, &s);
	pump(&c, &s);
	assert_int_equal(c.rc, -1);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_NO_SHARED_ALGORITHM);
	assert_non_null(strstr(mtls_error(c.m), "alert"));
	end_free(&s);
	end_free(&c);
	mtls_free(client);
}

/*
 * TLS 1.3: the client's handshake is over before the server has judged
 * its certificate. A server that refuses it and hangs up is seen at the
 * client's first write: by the alert left unread, or, with no alert, as
 * a hang-up right after the handshake. After data, a hang-up is just the
 * end of the stream. (Sockets here, not a BIO pair: what matters is how
 * a write to a closed socket fails.)
 */
static void
socket_pair(struct mtls_config *scfg, struct mtls **server,
    struct mtls **client, struct end *s, struct end *c, int fds[2])
{
	*server = ctx_new(1, scfg);
	*client = ctx_new(0, cfg_new("client", "root"));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    fds), 0);
	memset(s, 0, sizeof(*s));
	memset(c, 0, sizeof(*c));
	assert_int_equal(mtls_accept_socket(*server, &s->m, fds[0]), 0);
	assert_int_equal(mtls_connect_socket(*client, &c->m, fds[1],
	    SERVER_NAME), 0);
	s->rc = c->rc = MTLS_WANT_READ;
	pump(c, s);
}

static void
test_hang_up_after_handshake(void **state)
{
	struct mtls_config *scfg = cfg_new("server", "root");
	struct mtls *server, *client;
	struct end s, c;
	char buf[8];
	int fds[2];

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	allow_dev(scfg);
	socket_pair(scfg, &server, &client, &s, &c, fds);
	assert_int_equal(c.rc, 0);
	assert_int_equal(s.rc, -1);
	end_free(&s);
	close(fds[0]);	/* the server hangs up after its alert */
	assert_int_equal(mtls_write(c.m, "GET", 3), -1);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_PEER_REJECTED_OUR_CERT);
	assert_non_null(strstr(mtls_error(c.m), "alert"));
	end_free(&c);
	close(fds[1]);
	mtls_free(server);
	mtls_free(client);
	/* no alert: a hang-up right after the handshake */
	socket_pair(cfg_new("server", "root"), &server, &client, &s, &c, fds);
	assert_int_equal(s.rc, 0);
	assert_int_equal(c.rc, 0);
	end_free(&s);
	close(fds[0]);
	assert_int_equal(mtls_write(c.m, "GET", 3), -1);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_PEER_REJECTED_OUR_CERT);
	assert_non_null(strstr(mtls_error(c.m), "right after the handshake"));
	end_free(&c);
	close(fds[1]);
	mtls_free(server);
	mtls_free(client);
	/* after data: the end of the stream, no failure */
	socket_pair(cfg_new("server", "root"), &server, &client, &s, &c, fds);
	send_str(&s, "hi");
	expect_read(&c, "hi");
	end_free(&s);
	close(fds[0]);
	assert_int_equal(mtls_read(c.m, buf, sizeof(buf)), 0);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_NONE);
	end_free(&c);
	close(fds[1]);
	mtls_free(server);
	mtls_free(client);
}

static void
test_chain_too_large(void **state)
{
	struct mtls *server;
	struct end s, c;

	(void)state;
	server = ctx_new(1, cfg_new("server", "root"));
	open_pair(server, NULL, NULL, &s, &c);
	c.raw = raw_client("client", TLS1_3_VERSION, NULL);
	/* a limit below this client's chain, as 100 KiB is below a huge one */
	SSL_set_max_cert_list(s.m->ssl, 256);
	link_ends(&c, &s);
	pump(&c, &s);
	assert_int_equal(s.rc, -1);
	assert_int_equal(mtls_fail_code(s.m), MTLS_FAIL_CHAIN_TOO_LARGE);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
}

/* Plain bytes (not TLS) written into a connection's peer end. */
static void
test_not_tls(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char resp[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
	struct mtls *server, *client;
	struct end s, c;
	BIO *x, *y;

	(void)state;
	server = ctx_new(1, cfg_new("server", "root"));
	client = ctx_new(0, cfg_new("client", "root"));
	/* an HTTP request at the server */
	open_pair(server, NULL, NULL, &s, &c);
	assert_int_equal(BIO_new_bio_pair(&x, 0, &y, 0), 1);
	SSL_set_bio(s.m->ssl, y, y);
	assert_int_equal(BIO_write(x, req, sizeof(req) - 1), sizeof(req) - 1);
	assert_int_equal(mtls_handshake(s.m), -1);
	assert_int_equal(mtls_fail_code(s.m), MTLS_FAIL_NOT_TLS);
	BIO_free(x);
	end_free(&s);
	/* an HTTP answer to the client */
	open_pair(NULL, client, SERVER_NAME, &s, &c);
	assert_int_equal(BIO_new_bio_pair(&x, 0, &y, 0), 1);
	SSL_set_bio(c.m->ssl, y, y);
	assert_int_equal(mtls_handshake(c.m), MTLS_WANT_READ);
	assert_true(BIO_ctrl_pending(x) > 0);	/* its ClientHello */
	assert_int_equal(BIO_write(x, resp, sizeof(resp) - 1), sizeof(resp) - 1);
	assert_int_equal(mtls_handshake(c.m), -1);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_NOT_TLS);
	end_free(&c);
	BIO_free(x);
	/* a server that hangs up on the ClientHello */
	open_pair(NULL, client, SERVER_NAME, &s, &c);
	assert_int_equal(BIO_new_bio_pair(&x, 0, &y, 0), 1);
	SSL_set_bio(c.m->ssl, y, y);
	assert_int_equal(mtls_handshake(c.m), MTLS_WANT_READ);
	BIO_free(x);	/* the peer end goes away: EOF */
	assert_int_equal(mtls_handshake(c.m), -1);
	assert_int_equal(mtls_fail_code(c.m), MTLS_FAIL_NOT_TLS);
	end_free(&c);
	mtls_free(server);
	mtls_free(client);
}

/*
 * Resumption (tls.c's header): a ticket carries the config generation and
 * the chain's cache key. Under the same config it resumes, re-authorized
 * from the cache; after a reload with other rules the server ignores it
 * and a full handshake decides with the new rules, even though the new
 * config shares the ticket keys and so can open the ticket.
 */
static struct mtls_config *
resume_server_cfg(const char *allow)
{
	struct mtls_config *cfg = cfg_new("server", "root");

	assert_int_equal(mtls_config_add_allow(cfg, allow), 0);
	return cfg;
}

/* One connection of <client> to <server>, with a round trip so the
 * client has read the server's ticket. Returns the server's result. */
static int
connect_once(struct mtls *server, struct mtls *client, int *resumed,
    int *fail)
{
	struct end s, c;
	int rc;

	open_pair(server, client, SERVER_NAME, &s, &c);
	link_ends(&c, &s);
	pump(&c, &s);
	rc = s.rc;
	*fail = mtls_fail_code(s.m);
	*resumed = s.rc == 0 && mtls_conn_resumed(s.m);
	if (rc == 0) {
		assert_int_equal(c.rc, 0);
		assert_int_equal(mtls_conn_resumed(c.m), *resumed);
		/* resumed or not, the server knows who the client is */
		assert_string_equal(mtls_peer_id(s.m), CLIENT_ID);
		assert_int_equal(mtls_peer_verified(s.m), 1);
		assert_string_equal(mtls_peer_id(c.m), SERVER_ID);
		send_str(&s, "hi");
		expect_read(&c, "hi");
		/* a clean close: OpenSSL drops the session of a connection
		 * freed without close_notify */
		assert_int_equal(mtls_close(c.m), 0);
	}
	end_free(&s);
	end_free(&c);
	return rc;
}

static void
test_resumption_reauthorized(void **state)
{
	struct mtls_config *a, *same, *narrow, *wide;
	struct mtls *server, *client;
	int resumed, fail;

	(void)state;
	a = resume_server_cfg("spiffe://example.org/ns/prod/*");
	server = mtls_server();
	assert_non_null(server);
	assert_int_equal(mtls_configure(server, a), 0);
	client = ctx_new(0, cfg_new("client", "root"));

	assert_int_equal(connect_once(server, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 0);
	assert_int_equal(connect_once(server, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 1);
	/* an OpenSSL client uses a TLS 1.3 ticket once, and a server that
	 * resumes sends no new one (SSL_TICKET_RETURN_USE): this connection
	 * gets the client a ticket from config <a> again */
	assert_int_equal(connect_once(server, client, &resumed, &fail), 0);

	/* a reload that decides alike (same generation): still resumes */
	same = resume_server_cfg("spiffe://example.org/ns/prod/*");
	config_freeze(same);
	config_inherit(same, a, 1);
	assert_int_equal(mtls_configure(server, same), 0);
	assert_int_equal(connect_once(server, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 1);
	assert_int_equal(connect_once(server, client, &resumed, &fail), 0);

	/* rules that no longer allow the client: the ticket opens (shared
	 * keys) but is not used; the full handshake refuses */
	narrow = resume_server_cfg("spiffe://example.org/ns/dev/*");
	config_freeze(narrow);
	config_inherit(narrow, same, 1);
	assert_int_equal(mtls_configure(server, narrow), 0);
	assert_int_equal(connect_once(server, client, &resumed, &fail), -1);
	assert_int_equal(fail, MTLS_FAIL_NOT_AUTHORIZED);

	/* other rules that allow it: a full handshake, not a resumption */
	wide = resume_server_cfg("spiffe://example.org/*");
	config_freeze(wide);
	config_inherit(wide, same, 1);
	assert_int_equal(mtls_configure(server, wide), 0);
	assert_int_equal(connect_once(server, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 0);
	assert_int_equal(connect_once(server, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 1);

	mtls_config_free(a);
	mtls_config_free(same);
	mtls_config_free(narrow);
	mtls_config_free(wide);
	mtls_free(server);
	mtls_free(client);
}

/*
 * Replicas sharing a ticket key file resume each other's tickets once
 * they know the client's chain; a rotated key still opens the tickets it
 * sealed.
 */
static void
test_shared_ticket_keys(void **state)
{
	struct mtls_config *ca, *cb;
	struct mtls *a, *b, *client;
	uint8_t keys[80];
	char path[512];
	struct mtls_error err;
	int resumed, fail;

	(void)state;
	assert_int_equal(RAND_bytes(keys, sizeof(keys)), 1);
	path_of("tickets", ".key", path, sizeof(path));
	assert_int_equal(fs_write_atomic(path, keys, sizeof(keys), 0600, 1,
	    &err), 0);
	ca = resume_server_cfg("spiffe://example.org/*");
	cb = resume_server_cfg("spiffe://example.org/*");
	assert_int_equal(mtls_config_set_ticket_key_file(ca, path), 0);
	assert_int_equal(mtls_config_set_ticket_key_file(cb, path), 0);
	a = ctx_new(1, ca);
	b = ctx_new(1, cb);
	client = ctx_new(0, cfg_new("client", "root"));
	assert_int_equal(connect_once(b, client, &resumed, &fail), 0);
	/* a ticket from B at A, which has not verified this client: a full
	 * handshake, and a ticket from A */
	assert_int_equal(connect_once(a, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 0);
	/* A's ticket at B: resumed */
	assert_int_equal(connect_once(b, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 1);
	assert_int_equal(connect_once(a, client, &resumed, &fail), 0);
	/* A rotates: its ticket sealed with the previous key still opens */
	assert_int_equal(config_rotate_ticket_keys(a->tls->cfg), 0);
	assert_int_equal(connect_once(a, client, &resumed, &fail), 0);
	assert_int_equal(resumed, 1);
	mtls_free(a);
	mtls_free(b);
	mtls_free(client);
}

/* TLS 1.2 only when configured, with ECDHE and AEAD. */
static void
test_tls12(void **state)
{
	struct mtls *server;
	struct end s, c;

	(void)state;
	expect_server_fail(raw_client("client", TLS1_2_VERSION, NULL),
	    MTLS_FAIL_PROTOCOL_VERSION);
	raw_vs_server(raw_client("client", TLS1_2_VERSION, NULL), allow_tls12,
	    &s, &c, &server);
	assert_int_equal(s.rc, 0);
	assert_int_equal(c.rc, 0);
	assert_string_equal(mtls_conn_version(s.m), "TLSv1.2");
	assert_non_null(strstr(mtls_conn_cipher(s.m), "ECDHE-ECDSA-"));
	assert_non_null(strstr(mtls_conn_cipher(s.m), "GCM"));
	assert_string_equal(mtls_peer_id(s.m), CLIENT_ID);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
}

static void
set_optional(struct mtls_config *cfg)
{
	assert_int_equal(mtls_config_set_peer_optional(cfg), 0);
}

/* Peer-optional server: the handshake completes for anyone; the
 * application learns who verified. */
static void
test_optional_peer(void **state)
{
	struct mtls *server;
	struct end s, c;

	(void)state;
	/* no certificate: anonymous, no failure */
	raw_vs_server(raw_client(NULL, TLS1_3_VERSION, NULL), set_optional, &s,
	    &c, &server);
	assert_int_equal(s.rc, 0);
	assert_int_equal(c.rc, 0);
	assert_int_equal(mtls_peer_verified(s.m), 0);
	assert_int_equal(mtls_fail_code(s.m), MTLS_FAIL_NONE);
	assert_null(mtls_peer_id(s.m));
	end_free(&s);
	end_free(&c);
	mtls_free(server);
	/* a certificate that does not verify: anonymous, and why */
	raw_vs_server(raw_client("foreign", TLS1_3_VERSION, NULL), set_optional,
	    &s, &c, &server);
	assert_int_equal(s.rc, 0);
	assert_int_equal(mtls_peer_verified(s.m), 0);
	assert_int_equal(mtls_fail_code(s.m), MTLS_FAIL_UNKNOWN_CA);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
	/* a good one: verified */
	raw_vs_server(raw_client("client", TLS1_3_VERSION, NULL), set_optional,
	    &s, &c, &server);
	assert_int_equal(s.rc, 0);
	assert_int_equal(mtls_peer_verified(s.m), 1);
	assert_string_equal(mtls_peer_id(s.m), CLIENT_ID);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
}

/*
 * Read-ahead: one read from the socket takes every record waiting there;
 * the records are then delivered from OpenSSL's buffer with nothing more
 * arriving (the services check SSL_has_pending() before they wait).
 */
static void
test_read_ahead_drains(void **state)
{
	static const char *parts[] = { "one", "two", "three", "four" };
	struct mtls_config *scfg = cfg_new("server", "root");
	struct mtls *server, *client;
	struct end s, c;
	char got[64], buf[64];
	size_t i, off = 0;
	long n;

	(void)state;
	handshake(scfg, cfg_new("client", "root"), SERVER_NAME, &server,
	    &client, &s, &c);
	assert_int_equal(s.rc, 0);
	assert_int_equal(c.rc, 0);
	for (i = 0; i < 4; i++)
		send_str(&c, parts[i]);	/* one record each */
	n = mtls_read(s.m, buf, sizeof(buf));
	assert_true(n > 0);
	memcpy(got, buf, (size_t)n);
	off = (size_t)n;
	/* the socket is empty now: everything was read ahead */
	assert_int_equal(BIO_ctrl_pending(SSL_get_rbio(s.m->ssl)), 0);
	assert_true(SSL_has_pending(s.m->ssl));
	while (off < strlen("onetwothreefour")) {
		n = mtls_read(s.m, buf, sizeof(buf));
		if (n <= 0)
			fail_msg("read %ld after %zu bytes: a record was left "
			    "in the socket", n, off);
		memcpy(got + off, buf, (size_t)n);
		off += (size_t)n;
	}
	got[off] = '\0';
	assert_string_equal(got, "onetwothreefour");
	assert_false(SSL_has_pending(s.m->ssl));
	assert_int_equal(mtls_read(s.m, buf, sizeof(buf)), MTLS_WANT_READ);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
	mtls_free(client);
}

/*
 * OCSP stapling: a server staples its configured response; a client with
 * require_staple accepts only a good, current one about the server's
 * certificate and otherwise fails the handshake as "revoked".
 */
static int
staple_handshake(const uint8_t *der, size_t len, struct mtls_error *cerr)
{
	struct mtls_config *scfg = cfg_new("server", "root");
	struct mtls_config *ccfg = cfg_new("client", "root");
	struct mtls *server, *client;
	struct end s, c;
	int rc;

	if (der != NULL)
		assert_int_equal(mtls_config_set_ocsp_staple(scfg, der, len), 0);
	assert_int_equal(mtls_config_set_require_staple(ccfg), 0);
	handshake(scfg, ccfg, SERVER_NAME, &server, &client, &s, &c);
	rc = c.rc;
	memcpy(cerr, &c.m->err, sizeof(*cerr));
	if (rc == 0)
		assert_int_equal(s.rc, 0);
	end_free(&s);
	end_free(&c);
	mtls_free(server);
	mtls_free(client);
	return rc;
}

static void
test_ocsp_staple(void **state)
{
	struct mtls_config *cfg;
	struct mtls *server;
	struct mtls_error e;
	int64_t now = pki.now;
	uint8_t *der, junk[4] = { 0x30, 0x03, 0x0a, 0x01 };
	size_t len;

	(void)state;
	der = fx_ocsp(&pki.open, pki.server, V_OCSP_CERTSTATUS_GOOD, now - 60,
	    now + FX_DAY, &len);
	assert_int_equal(staple_handshake(der, len, &e), 0);
	OPENSSL_free(der);
	/* revoked, stale, unknown, none: the status is not proven good */
	der = fx_ocsp(&pki.open, pki.server, V_OCSP_CERTSTATUS_REVOKED,
	    now - 60, now + FX_DAY, &len);
	assert_int_equal(staple_handshake(der, len, &e), -1);
	assert_int_equal(e.fail, MTLS_FAIL_REVOKED);
	assert_non_null(strstr(e.msg, "revoked"));
	OPENSSL_free(der);
	der = fx_ocsp(&pki.open, pki.server, V_OCSP_CERTSTATUS_GOOD,
	    now - 3 * FX_DAY, now - 2 * FX_DAY, &len);
	assert_int_equal(staple_handshake(der, len, &e), -1);
	assert_int_equal(e.fail, MTLS_FAIL_REVOKED);
	assert_non_null(strstr(e.msg, "not acceptable"));
	OPENSSL_free(der);
	der = fx_ocsp(&pki.open, pki.server, V_OCSP_CERTSTATUS_UNKNOWN,
	    now - 60, now + FX_DAY, &len);
	assert_int_equal(staple_handshake(der, len, &e), -1);
	assert_non_null(strstr(e.msg, "unknown"));
	OPENSSL_free(der);
	assert_int_equal(staple_handshake(NULL, 0, &e), -1);
	assert_int_equal(e.fail, MTLS_FAIL_REVOKED);
	assert_non_null(strstr(e.msg, "stapled no OCSP response"));
	/* a response about another certificate is refused at configure */
	der = fx_ocsp(&pki.open, pki.client, V_OCSP_CERTSTATUS_GOOD, now - 60,
	    now + FX_DAY, &len);
	cfg = cfg_new("server", "root");
	assert_int_equal(mtls_config_set_ocsp_staple(cfg, der, len), 0);
	server = mtls_server();
	assert_int_equal(mtls_configure(server, cfg), -1);
	assert_int_equal(mtls_error_code(server), MTLS_ERR_ARG);
	mtls_free(server);
	mtls_config_free(cfg);
	OPENSSL_free(der);
	/* not DER, or with bytes after it */
	cfg = mtls_config_new();
	assert_int_equal(mtls_config_set_ocsp_staple(cfg, junk, 2), -1);
	assert_int_equal(mtls_config_error_code(cfg), MTLS_ERR_PARSE);
	der = fx_ocsp(&pki.open, pki.server, V_OCSP_CERTSTATUS_GOOD, now - 60,
	    now + FX_DAY, &len);
	der = OPENSSL_realloc(der, len + 1);
	assert_non_null(der);
	der[len] = 0;
	assert_int_equal(mtls_config_set_ocsp_staple(cfg, der, len + 1), -1);
	assert_non_null(strstr(mtls_config_error(cfg), "trailing"));
	OPENSSL_free(der);
	mtls_config_free(cfg);
}

/* ocsp.c's request and its checks of a response, as the agent and the
 * proxy use them on a fetched response. */
static void
test_ocsp_check(void **state)
{
	STACK_OF(X509) *chain = fx_stack(pki.server, pki.open.x, NULL);
	STACK_OF(X509) *alone = fx_stack(pki.server, NULL);
	X509_STORE *store = X509_STORE_new();
	struct fx_cert stranger = fx_root("example.org", "open", pki.now);
	struct ocsp_result res;
	struct mtls_error err;
	OCSP_RESPONSE *r;
	OCSP_REQUEST *rq;
	OCSP_CERTID *want;
	const unsigned char *p;
	unsigned char *later = NULL;
	uint8_t *der;
	size_t len;
	int64_t now = pki.now;
	int n;

	(void)state;
	memset(&err, 0, sizeof(err));
	assert_non_null(store);
	{
		char path[512];
		STACK_OF(X509) *roots = NULL;

		path_of("root", ".pem", path, sizeof(path));
		assert_int_equal(certs_load(path, &roots, &err), 0);
		assert_int_equal(X509_STORE_add_cert(store,
		    sk_X509_value(roots, 0)), 1);
		sk_X509_pop_free(roots, X509_free);
	}
	/* the request names the server's certificate under its issuer */
	assert_int_equal(ocsp_request(pki.server, pki.open.x, &der, &len, &err),
	    0);
	p = der;
	assert_non_null(rq = d2i_OCSP_REQUEST(NULL, &p, (long)len));
	assert_int_equal(OCSP_request_onereq_count(rq), 1);
	want = OCSP_cert_to_id(NULL, pki.server, pki.open.x);
	assert_int_equal(OCSP_id_cmp(OCSP_onereq_get0_id(
	    OCSP_request_onereq_get0(rq, 0)), want), 0);
	OCSP_CERTID_free(want);
	OCSP_REQUEST_free(rq);
	OPENSSL_free(der);
	/* good */
	der = fx_ocsp(&pki.open, pki.server, V_OCSP_CERTSTATUS_GOOD, now - 60,
	    now + FX_DAY, &len);
	assert_int_equal(ocsp_check(der, len, pki.server, chain, store, now,
	    &res, &err), 0);
	assert_int_equal(res.status, V_OCSP_CERTSTATUS_GOOD);
	assert_int_equal(res.next_update, now + FX_DAY);
	assert_true(ocsp_matches(der, len, pki.server, chain, store));
	assert_false(ocsp_matches(der, len, pki.client, chain, store));
	/* judged at another time: from the future, stale */
	assert_int_equal(ocsp_check(der, len, pki.server, chain, store,
	    now - 3600, &res, &err), -1);
	assert_non_null(strstr(err.msg, "from the future"));
	assert_int_equal(ocsp_check(der, len, pki.server, chain, store,
	    now + 2 * FX_DAY, &res, &err), -1);
	assert_non_null(strstr(err.msg, "stale"));
	/* about another certificate; an issuer we cannot find */
	assert_int_equal(ocsp_check(der, len, pki.client, chain, store, now,
	    &res, &err), -1);
	assert_non_null(strstr(err.msg, "another certificate"));
	assert_int_equal(ocsp_check(der, len, pki.server, alone, store, now,
	    &res, &err), -1);
	assert_non_null(strstr(err.msg, "issuer is not known"));
	/* trailing bytes, garbage */
	assert_int_equal(ocsp_check(der, len - 1, pki.server, chain, store, now,
	    &res, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_PARSE);
	OPENSSL_free(der);
	/* signed by a key with the issuer's name that is not the issuer's */
	der = fx_ocsp_by(&pki.open, &stranger, pki.server,
	    V_OCSP_CERTSTATUS_GOOD, now - 60, now + FX_DAY, &len);
	assert_int_equal(ocsp_check(der, len, pki.server, chain, store, now,
	    &res, &err), -1);
	assert_non_null(strstr(err.msg, "signature does not verify"));
	OPENSSL_free(der);
	/* the responder said no */
	assert_non_null(r = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER,
	    NULL));
	assert_true((n = i2d_OCSP_RESPONSE(r, &later)) > 0);
	assert_int_equal(ocsp_check(later, (size_t)n, pki.server, chain, store,
	    now, &res, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_VERIFY);
	assert_non_null(strstr(err.msg, "tryLater"));
	OPENSSL_free(later);
	OCSP_RESPONSE_free(r);
	fx_cert_free(&stranger);
	X509_STORE_free(store);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(alone, X509_free);
}

/* Calls on the wrong kind of context fail with a reason, never crash. */
static void
test_misuse(void **state)
{
	struct mtls *v = mtls_new(), *server = mtls_server(), *conn = NULL;
	struct mtls *client = mtls_client(), *bare = mtls_server();
	struct mtls_config *empty = mtls_config_new();
	char buf[4];

	(void)state;
	assert_int_equal(mtls_handshake(v), -1);
	assert_int_equal(mtls_error_code(v), MTLS_ERR_STATE);
	assert_int_equal(mtls_read(v, buf, sizeof(buf)), -1);
	assert_int_equal(mtls_write(v, buf, sizeof(buf)), -1);
	assert_int_equal(mtls_close(v), -1);
	/* no identity: mutual TLS needs one on both sides */
	assert_int_equal(mtls_configure(bare, empty), -1);
	assert_int_equal(mtls_error_code(bare), MTLS_ERR_ARG);
	assert_int_equal(mtls_accept_socket(bare, &conn, -1), -1);
	assert_int_equal(mtls_error_code(bare), MTLS_ERR_STATE);
	assert_null(conn);
	{
		struct mtls_config *sc = cfg_new("server", "root");
		struct mtls_config *cc = cfg_new("client", "root");

		assert_int_equal(mtls_configure(server, sc), 0);
		assert_int_equal(mtls_configure(client, cc), 0);
		mtls_config_free(sc);	/* the contexts hold references */
		mtls_config_free(cc);
	}
	assert_int_equal(mtls_connect_socket(server, &conn, -1, SERVER_NAME),
	    -1);
	assert_int_equal(mtls_accept_socket(client, &conn, -1), -1);
	/* a servername that is neither a DNS name nor an address */
	assert_int_equal(mtls_connect_socket(client, &conn, -1, "bad name"),
	    -1);
	assert_int_equal(mtls_error_code(client), MTLS_ERR_ARG);
	assert_null(conn);
	/* an IP address is fine (and becomes the expected identity) */
	assert_int_equal(mtls_connect_socket(client, &conn, -1, "127.0.0.1"), 0);
	assert_string_equal(conn->expect_name, "ip:127.0.0.1");
	assert_int_equal(mtls_configure(conn, empty), -1);
	assert_int_equal(mtls_error_code(conn), MTLS_ERR_STATE);
	mtls_free(conn);
	mtls_config_free(empty);
	mtls_free(v);
	mtls_free(bare);
	mtls_free(server);
	mtls_free(client);
}

static void
test_session_expiry(void **state)
{
	SSL_SESSION *s = SSL_SESSION_new();
	time_t t0 = 1700000000;

	(void)state;
	assert_non_null(s);
	assert_int_equal(SSL_SESSION_set_time(s, (long)t0), (long)t0);
	assert_int_equal(SSL_SESSION_set_timeout(s, 300), 1);
	/* no lifetime hint: the session's own timeout decides */
	assert_false(tls_session_expired(s, t0));
	assert_false(tls_session_expired(s, t0 + 299));
	assert_true(tls_session_expired(s, t0 + 300));
	assert_true(tls_session_expired(s, t0 + 86400));
	SSL_SESSION_free(s);
}

/*
 * A client trusting a partner's trust domain (federation): a partner's
 * server is named by its SPIFFE IDs only, its DNS name is not the
 * partner's to vouch for; a resumed session names it the same way as the
 * full handshake did (it was named from the bare certificate before).
 */
static void
test_federated_client_resumption(void **state)
{
	struct mtls_config *ccfg;
	struct mtls *server, *client;
	struct end s, c;
	char path[512];
	int i;

	(void)state;
	server = ctx_new(1, cfg_new("pserver", "root"));
	ccfg = cfg_new("client", "root");
	path_of("other", ".pem", path, sizeof(path));
	assert_int_equal(mtls_config_add_trust_domain_file(ccfg, "other.org",
	    path), 0);
	assert_int_equal(mtls_config_add_expect(ccfg,
	    "spiffe://other.org/ns/web"), 0);
	client = ctx_new(0, ccfg);
	for (i = 0; i < 2; i++) {
		open_pair(server, client, NULL, &s, &c);
		link_ends(&c, &s);
		pump(&c, &s);
		assert_int_equal(c.rc, 0);
		assert_int_equal(s.rc, 0);
		assert_int_equal(mtls_conn_resumed(c.m), i == 1);
		assert_int_equal(mtls_peer_identity_count(c.m), 1);
		assert_string_equal(mtls_peer_id(c.m),
		    "spiffe://other.org/ns/web");
		send_str(&s, "hi");
		expect_read(&c, "hi");
		assert_int_equal(mtls_close(c.m), 0);
		end_free(&s);
		end_free(&c);
	}
	mtls_free(server);
	mtls_free(client);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_expiry),
		cmocka_unit_test(test_success),
		cmocka_unit_test(test_unknown_ca),
		cmocka_unit_test(test_cert_expired),
		cmocka_unit_test(test_cert_not_yet_valid),
		cmocka_unit_test(test_chain_incomplete),
		cmocka_unit_test(test_not_authorized),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_bad_key_usage),
		cmocka_unit_test(test_client_unknown_ca),
		cmocka_unit_test(test_client_identity_mismatch),
		cmocka_unit_test(test_no_client_cert),
		cmocka_unit_test(test_protocol_version),
		cmocka_unit_test(test_no_shared_algorithm),
		cmocka_unit_test(test_client_no_shared_algorithm),
		cmocka_unit_test(test_hang_up_after_handshake),
		cmocka_unit_test(test_chain_too_large),
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_resumption_reauthorized),
		cmocka_unit_test(test_shared_ticket_keys),
		cmocka_unit_test(test_tls12),
		cmocka_unit_test(test_optional_peer),
		cmocka_unit_test(test_read_ahead_drains),
		cmocka_unit_test(test_ocsp_staple),
		cmocka_unit_test(test_ocsp_check),
		cmocka_unit_test(test_misuse),
		cmocka_unit_test(test_federated_client_resumption),
	};

	return cmocka_run_group_tests(tests, make_pki, free_pki);
}
