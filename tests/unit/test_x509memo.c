/*
 * x509memo.c: libssl's memoized parses. Handshakes in this process (a
 * memory BIO pair, a client chain of leaf + intermediate, tickets only) must
 * give the same peer, chain and session fields with the memo on as with it
 * off, for full and ticket-resumed handshakes, TLS 1.2 and 1.3; the memo is
 * off until enabled and on a thread that did not ask for it; a ticket key
 * rotation cleanses every entry; only OpenSSL 3.0 is accepted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proxy/x509memo.h"

static EVP_PKEY *root_key, *int_key, *cli_key, *srv_key;
static X509 *root, *inter, *cli, *srv;

static X509 *
cert_new(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey,
    int ca, long serial)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *e;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	    ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	if (!ca) {
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
		    "DNS:localhost");
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
	X509_NAME_free(n);
	return x;
}

static int
setup(void **state)
{
	(void)state;
	root_key = EVP_EC_gen("P-256");
	int_key = EVP_EC_gen("P-256");
	cli_key = EVP_EC_gen("P-256");
	srv_key = EVP_EC_gen("P-256");
	root = cert_new(root_key, "memo root", NULL, NULL, 1, 1);
	inter = cert_new(int_key, "memo intermediate", root, root_key, 1, 2);
	cli = cert_new(cli_key, "memo client", inter, int_key, 0, 3);
	srv = cert_new(srv_key, "localhost", root, root_key, 0, 4);
	return root && inter && cli && srv ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	X509_free(root);
	X509_free(inter);
	X509_free(cli);
	X509_free(srv);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(int_key);
	EVP_PKEY_free(cli_key);
	EVP_PKEY_free(srv_key);
	return 0;
}

static SSL_CTX *
ctx_new(int server, int version)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() :
	    TLS_client_method());
	X509_STORE *st = SSL_CTX_get_cert_store(c);

	assert_non_null(c);
	SSL_CTX_set_min_proto_version(c, version);
	SSL_CTX_set_max_proto_version(c, version);
	X509_STORE_add_cert(st, root);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	if (server) {
		assert_int_equal(SSL_CTX_use_certificate(c, srv), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey(c, srv_key), 1);
		SSL_CTX_set_session_id_context(c, (const unsigned char *)"m",
		    1);
		/* no server cache: a resumption can only come from a ticket */
		SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_num_tickets(c, 1);
	} else {
		assert_int_equal(SSL_CTX_use_certificate(c, cli), 1);
		assert_int_equal(SSL_CTX_add1_chain_cert(c, inter), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey(c, cli_key), 1);
	}
	return c;
}

static void
hex(char *out, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = '\0';
}

/* A short fingerprint of <x>'s DER, or "-" */
static void
fp(char out[17], X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (x == NULL || !X509_digest(x, EVP_sha256(), md, &n)) {
		strcpy(out, "-");
		return;
	}
	hex(out, md, 8);
}

static size_t
appdata_len(SSL_SESSION *ss)
{
	void *p = NULL;
	size_t n = 0;

	return SSL_SESSION_get0_ticket_appdata(ss, &p, &n) ? n : 0;
}

/*
 * One handshake between new SSLs of <cctx> and <sctx> (resuming <resume>
 * when given): describes what the server sees in <desc> (the fields that
 * must not depend on the memo) and returns the client's new session.
 */
static SSL_SESSION *
handshake(SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION *resume, char *desc,
    size_t desclen, unsigned char *mk, size_t *mklen)
{
	SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
	BIO *bc = NULL, *bs = NULL;
	SSL_SESSION *ss, *out;
	STACK_OF(X509) *chain;
	char pf[17], sf[17], cf[2][17];
	const unsigned char *sid;
	unsigned int sidlen = 0;
	unsigned char buf[1];
	int i, rc = 0, rs = 0, n;

	assert_non_null(c);
	assert_non_null(s);
	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	if (resume != NULL)
		assert_int_equal(SSL_set_session(c, resume), 1);
	for (i = 0; i < 50 && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(c);
		if (rs != 1)
			rs = SSL_do_handshake(s);
	}
	assert_int_equal(rc, 1);
	assert_int_equal(rs, 1);
	/* TLS 1.3: the ticket arrives with the first application data */
	assert_int_equal(SSL_write(s, "x", 1), 1);
	assert_int_equal(SSL_read(c, buf, 1), 1);

	ss = SSL_get_session(s);
	chain = SSL_get_peer_cert_chain(s);
	n = chain ? sk_X509_num(chain) : -1;
	for (i = 0; i < 2; i++)
		fp(cf[i], chain && i < n ? sk_X509_value(chain, i) : NULL);
	fp(pf, SSL_get0_peer_certificate(s));
	fp(sf, SSL_SESSION_get0_peer(ss));
	sid = SSL_SESSION_get0_id_context(ss, &sidlen);
	snprintf(desc, desclen, "reused=%d version=%s cipher=%s peer=%s "
	    "chain=%d[%s,%s] session_peer=%s verify=%ld sid_ctx=%.*s "
	    "host=%s ticket_appdata=%zu protocol=%d timeout=%ld",
	    SSL_session_reused(s), SSL_get_version(s),
	    SSL_get_cipher_name(s), pf, n, cf[0], cf[1], sf,
	    SSL_get_verify_result(s), (int)sidlen, sid,
	    SSL_SESSION_get0_hostname(ss) ? SSL_SESSION_get0_hostname(ss) :
	    "-", appdata_len(ss), SSL_SESSION_get_protocol_version(ss),
	    SSL_SESSION_get_timeout(ss));
	*mklen = SSL_SESSION_get_master_key(ss, mk, 64);
	out = SSL_get1_session(c);
	assert_non_null(out);
	SSL_shutdown(c);
	SSL_shutdown(s);
	SSL_free(c);
	SSL_free(s);
	return out;
}

#define STEPS 4

/* Full handshake, the ticket twice, a second full handshake: one line a
 * handshake in <desc>. In TLS 1.2 a resumption keeps the master secret of
 * the handshake that made the ticket: the lines say whether it did. */
static void
scenario(int version, char desc[STEPS][512])
{
	SSL_CTX *cctx = ctx_new(0, version), *sctx = ctx_new(1, version);
	SSL_SESSION *t, *t2;
	unsigned char mk0[64], mk[64];
	size_t n0, n;
	int i;

	t = handshake(cctx, sctx, NULL, desc[0], sizeof(desc[0]), mk0, &n0);
	for (i = 1; i <= 2; i++) {
		t2 = handshake(cctx, sctx, t, desc[i], sizeof(desc[i]), mk, &n);
		if (version == TLS1_2_VERSION) {
			size_t l = strlen(desc[i]);

			snprintf(desc[i] + l, sizeof(desc[i]) - l,
			    " master_key_kept=%d", n == n0 &&
			    memcmp(mk, mk0, n) == 0);
		}
		SSL_SESSION_free(t2);
	}
	t2 = handshake(cctx, sctx, NULL, desc[3], sizeof(desc[3]), mk, &n);
	SSL_SESSION_free(t2);
	SSL_SESSION_free(t);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	OPENSSL_cleanse(mk0, sizeof(mk0));
	OPENSSL_cleanse(mk, sizeof(mk));
}

/* must run first: nothing has called x509memo_enable() yet */
static void
test_off_until_enabled(void **state)
{
	char d[STEPS][512];
	struct x509memo_stats st;

	(void)state;
	x509memo_thread(1);
	scenario(TLS1_3_VERSION, d);
	x509memo_stats(&st);
	assert_int_equal(st.enabled, 0);
	assert_int_equal(st.cert_hits + st.cert_misses + st.session_hits +
	    st.session_misses, 0);
	assert_int_equal(st.cert_entries + st.session_entries, 0);
}

static void
equivalence(int version)
{
	char off[STEPS][512], on[STEPS][512];
	struct x509memo_stats a, b;
	const char *why = NULL;
	int i;

	assert_int_equal(x509memo_enable(0, &why), 1);
	assert_string_equal(why, "on");
	x509memo_thread(0);	/* a thread that did not ask: plain parses */
	x509memo_stats(&a);
	scenario(version, off);
	x509memo_stats(&b);
	assert_int_equal(b.cert_hits + b.cert_misses + b.session_hits +
	    b.session_misses, a.cert_hits + a.cert_misses + a.session_hits +
	    a.session_misses);
	x509memo_thread(1);
	scenario(version, on);
	x509memo_thread(0);
	x509memo_stats(&a);
	for (i = 0; i < STEPS; i++) {
		print_message("off: %s\n on: %s\n", off[i], on[i]);
		assert_string_equal(on[i], off[i]);
	}
	assert_non_null(strstr(on[1], "reused=1"));
	assert_non_null(strstr(on[2], "reused=1"));
	/* the memo did answer: the second full handshake's chain, the
	 * second resumption's ticket, and the ticket constructions */
	assert_true(a.cert_hits > b.cert_hits);
	assert_true(a.session_hits >= b.session_hits + 2);
	assert_int_equal(a.ticket_mismatch, 0);
}

static void
test_same_fields_tls13(void **state)
{
	(void)state;
	equivalence(TLS1_3_VERSION);
}

static void
test_same_fields_tls12(void **state)
{
	(void)state;
	equivalence(TLS1_2_VERSION);
}

static void
test_rotation_cleanses(void **state)
{
	char d[STEPS][512];
	struct x509memo_stats a, b;

	(void)state;
	assert_int_equal(x509memo_enable(0, NULL), 1);
	x509memo_thread(1);
	scenario(TLS1_2_VERSION, d);
	x509memo_stats(&a);
	assert_true(a.cert_entries > 0);
	assert_true(a.session_entries > 0);
	x509memo_rotate();
	x509memo_stats(&b);
	assert_int_equal(b.cert_entries, 0);
	assert_int_equal(b.session_entries, 0);
	assert_int_equal(b.cleansed, a.cleansed + a.cert_entries +
	    a.session_entries);
	x509memo_thread(0);
}

static void
test_version_gate(void **state)
{
	static const struct {
		unsigned int major, minor;
		int want;
	} v[] = {
		{ 3, 0, 1 },
		{ 3, 1, 0 },	/* another libssl: not tested, off */
		{ 3, 5, 0 },
		{ 4, 0, 0 },
		{ 1, 1, 0 },
		{ 0, 0, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_int_equal(x509memo_tested(v[i].major, v[i].minor),
		    v[i].want);
	/* and this machine's libssl is the tested one */
	assert_int_equal(x509memo_tested(OPENSSL_version_major(),
	    OPENSSL_version_minor()), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_off_until_enabled),
		cmocka_unit_test(test_same_fields_tls13),
		cmocka_unit_test(test_same_fields_tls12),
		cmocka_unit_test(test_rotation_cleanses),
		cmocka_unit_test(test_version_gate),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
