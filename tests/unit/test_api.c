/*
 * The public API of mtls.h around a peer and in-memory configuration:
 * mtls_config_set_identity_mem / set_trust_mem / add_untrusted_mem,
 * mtls_peer_identity*, mtls_peer_chain_*, mtls_peer_validity and
 * mtls_pending, on a verifier and on a real handshake over a socketpair.
 * Certificates are made at run time (profile_build), never committed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <openssl/pem.h>

#include "internal.h"

static EVP_PKEY *root_key, *int_key, *srv_key, *cli_key, *other_key;
static X509 *root, *inter, *srv, *cli, *other;
static int64_t nb, na;

/* The bytes of memory BIO <b> as a malloc'd string; frees <b>. */
static char *
bio_take(BIO *b, size_t *len)
{
	BUF_MEM *m;
	char *out;

	BIO_get_mem_ptr(b, &m);
	assert_non_null(out = malloc(m->length + 1));
	memcpy(out, m->data, m->length);
	out[m->length] = '\0';
	*len = m->length;
	BIO_free(b);
	return out;
}

/* PEM of some certificates (NULL-terminated list), malloc'd */
static char *
pem_of(size_t *len, ...)
{
	BIO *b = BIO_new(BIO_s_mem());
	va_list ap;
	X509 *x;

	assert_non_null(b);
	va_start(ap, len);
	while ((x = va_arg(ap, X509 *)) != NULL)
		assert_int_equal(PEM_write_bio_X509(b, x), 1);
	va_end(ap);
	return bio_take(b, len);
}

static char *
key_pem(EVP_PKEY *k, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());

	assert_non_null(b);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL,
	    NULL), 1);
	return bio_take(b, len);
}

static X509 *
mk(int kind, const char *cn, EVP_PKEY *k, X509 *iss, EVP_PKEY *ik,
    const char *const *ids, size_t n)
{
	struct profile_req r;
	struct mtls_error err;
	struct ids sans;
	X509 *x = NULL;
	size_t i;

	memset(&r, 0, sizeof(r));
	memset(&sans, 0, sizeof(sans));
	for (i = 0; i < n; i++)
		assert_int_equal(ids_add(&sans, "", ids[i], strlen(ids[i])), 0);
	r.kind = kind;
	r.cn = cn;
	r.org = "example.org";
	r.sans = &sans;
	r.not_before = nb;
	r.not_after = na;
	r.pubkey = k;
	r.issuer = iss;
	r.issuer_key = ik ? ik : k;
	if (profile_build(&r, &x, &err) != 0)
		fail_msg("profile_build %s: %s", cn, err.msg);
	ids_free(&sans);
	return x;
}

static int
setup(void **state)
{
	static const char *const srv_ids[] = { "spiffe://example.org/srv",
	    "dns:localhost", "ip:127.0.0.1" };
	static const char *const cli_ids[] = { "spiffe://example.org/cli",
	    "dns:a.example.org", "dns:b.example.org" };
	static const char *const other_ids[] = { "spiffe://example.org/x" };

	(void)state;
	nb = (int64_t)time(NULL) - 3600;
	na = nb + 2 * 86400;
	assert_non_null(root_key = EVP_EC_gen("P-256"));
	assert_non_null(int_key = EVP_EC_gen("P-256"));
	assert_non_null(srv_key = EVP_EC_gen("P-256"));
	assert_non_null(cli_key = EVP_EC_gen("P-256"));
	assert_non_null(other_key = EVP_EC_gen("P-256"));
	root = mk(PROFILE_ROOT, "root", root_key, NULL, NULL, NULL, 0);
	inter = mk(PROFILE_INTERMEDIATE, "int", int_key, root, root_key, NULL,
	    0);
	srv = mk(PROFILE_LEAF, NULL, srv_key, inter, int_key, srv_ids, 3);
	cli = mk(PROFILE_LEAF, NULL, cli_key, inter, int_key, cli_ids, 3);
	/* a root nobody trusts signs this one */
	other = mk(PROFILE_LEAF, NULL, other_key, NULL, other_key, other_ids,
	    1);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	X509_free(root);
	X509_free(inter);
	X509_free(srv);
	X509_free(cli);
	X509_free(other);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(int_key);
	EVP_PKEY_free(srv_key);
	EVP_PKEY_free(cli_key);
	EVP_PKEY_free(other_key);
	return 0;
}

/* A config from memory: <leaf> + the intermediate, its key, the root. */
static struct mtls_config *
mem_config(X509 *leaf, EVP_PKEY *k)
{
	struct mtls_config *c = mtls_config_new();
	size_t cl, kl, rl;
	char *cp = pem_of(&cl, leaf, inter, (X509 *)NULL);
	char *kp = key_pem(k, &kl);
	char *rp = pem_of(&rl, root, (X509 *)NULL);

	assert_non_null(c);
	assert_int_equal(mtls_config_set_identity_mem(c, (uint8_t *)cp, cl,
	    (uint8_t *)kp, kl), 0);
	assert_int_equal(mtls_config_set_trust_mem(c, (uint8_t *)rp, rl), 0);
	assert_int_equal(mtls_config_set_allow_any(c), 0);
	OPENSSL_cleanse(kp, kl);
	free(cp);
	free(kp);
	free(rp);
	return c;
}

static void
test_identity_mem(void **state)
{
	struct mtls_config *c = mtls_config_new();
	size_t cl, kl, ol, bl = 9u * 1024 * 1024;
	char *cp = pem_of(&cl, srv, inter, (X509 *)NULL);
	char *kp = key_pem(srv_key, &kl), *op = key_pem(cli_key, &ol);
	uint8_t *big = calloc(1, bl);

	(void)state;
	assert_non_null(c);
	assert_non_null(big);
	/* the key of another certificate */
	assert_int_equal(mtls_config_set_identity_mem(c, (uint8_t *)cp, cl,
	    (uint8_t *)op, ol), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_PARSE);
	assert_non_null(strstr(mtls_config_error(c), "does not match"));
	/* garbage, truncation, nothing, too much */
	assert_int_equal(mtls_config_set_identity_mem(c, (uint8_t *)"junk", 4,
	    (uint8_t *)kp, kl), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_PARSE);
	assert_non_null(strstr(mtls_config_error(c), "certificate (memory)"));
	assert_int_equal(mtls_config_set_identity_mem(c, (uint8_t *)cp, cl,
	    (uint8_t *)kp, kl / 2), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_PARSE);
	assert_non_null(strstr(mtls_config_error(c), "key (memory)"));
	assert_int_equal(mtls_config_set_identity_mem(c, NULL, 0,
	    (uint8_t *)kp, kl), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_ARG);
	assert_int_equal(mtls_config_set_identity_mem(c, (uint8_t *)cp, cl,
	    big, bl), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_ARG);
	assert_non_null(strstr(mtls_config_error(c), "over the limit"));
	/* the right pair; then the config is frozen by a context */
	assert_int_equal(mtls_config_set_identity_mem(c, (uint8_t *)cp, cl,
	    (uint8_t *)kp, kl), 0);
	assert_string_equal(mtls_config_error(c), "");
	assert_true(config_leaf(c) != NULL);
	assert_int_equal(X509_cmp(config_leaf(c), srv), 0);
	assert_int_equal(sk_X509_num(config_chain(c)), 2);
	config_freeze(c);
	assert_int_equal(mtls_config_set_identity_mem(c, (uint8_t *)cp, cl,
	    (uint8_t *)kp, kl), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_STATE);
	mtls_config_free(c);
	free(cp);
	free(kp);
	free(op);
	free(big);
}

static void
test_trust_mem(void **state)
{
	struct mtls_config *c = mtls_config_new();
	struct mtls *v = mtls_new();
	size_t rl, il, ll;
	char *rp = pem_of(&rl, root, (X509 *)NULL);
	char *ip = pem_of(&il, inter, (X509 *)NULL);
	char *lp = pem_of(&ll, cli, (X509 *)NULL);

	(void)state;
	assert_non_null(c);
	assert_non_null(v);
	assert_int_equal(mtls_config_set_trust_mem(c, (uint8_t *)"-----BEGIN "
	    "CERTIFICATE-----\nAAAA\n", 29), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_PARSE);
	assert_int_equal(mtls_config_set_trust_mem(c, (uint8_t *)rp, 0), -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_ARG);
	assert_int_equal(mtls_config_add_untrusted_mem(c, (uint8_t *)"x", 1),
	    -1);
	assert_int_equal(mtls_config_error_code(c), MTLS_ERR_PARSE);
	assert_int_equal(mtls_config_set_trust_mem(c, (uint8_t *)rp, rl), 0);
	assert_int_equal(sk_X509_num(config_trust(c)), 1);
	assert_int_equal(mtls_config_set_allow_any(c), 0);
	assert_int_equal(mtls_configure(v, c), 0);
	/* the leaf alone: its intermediate is missing */
	assert_int_equal(mtls_verify_pem(v, (uint8_t *)lp, ll), -1);
	assert_int_equal(mtls_fail_code(v), MTLS_FAIL_CHAIN_INCOMPLETE);
	mtls_free(v);
	mtls_config_free(c);
	/* with the intermediate from memory it verifies */
	assert_non_null(c = mtls_config_new());
	assert_non_null(v = mtls_new());
	assert_int_equal(mtls_config_set_trust_mem(c, (uint8_t *)rp, rl), 0);
	assert_int_equal(mtls_config_add_untrusted_mem(c, (uint8_t *)ip, il),
	    0);
	assert_int_equal(mtls_config_add_untrusted_mem(c, (uint8_t *)ip, il),
	    0);
	assert_int_equal(mtls_config_set_allow_any(c), 0);
	assert_int_equal(mtls_configure(v, c), 0);
	assert_int_equal(mtls_verify_pem(v, (uint8_t *)lp, ll), 0);
	mtls_free(v);
	mtls_config_free(c);
	free(rp);
	free(ip);
	free(lp);
}

/* What the verifier says about <leaf>'s peer after a verification. */
static void
check_cli_peer(struct mtls *m, size_t chain_len)
{
	unsigned char *der = NULL;
	const uint8_t *p;
	size_t len = 99, pl;
	int64_t b = 0, a = 0;
	char *want;
	int dl;

	assert_int_equal(mtls_peer_identity_count(m), 3);
	assert_string_equal(mtls_peer_identity(m, 0),
	    "spiffe://example.org/cli");
	assert_string_equal(mtls_peer_identity(m, 1), "dns:a.example.org");
	assert_string_equal(mtls_peer_identity(m, 2), "dns:b.example.org");
	assert_null(mtls_peer_identity(m, 3));
	assert_null(mtls_peer_identity(m, (size_t)-1));
	assert_string_equal(mtls_peer_id(m), "spiffe://example.org/cli");
	assert_int_equal(mtls_peer_chain_count(m), chain_len);
	dl = i2d_X509(cli, &der);
	assert_true(dl > 0);
	p = mtls_peer_chain_der(m, 0, &len);
	assert_non_null(p);
	assert_int_equal(len, (size_t)dl);
	assert_memory_equal(p, der, len);
	OPENSSL_free(der);
	if (chain_len > 1) {
		der = NULL;
		dl = i2d_X509(inter, &der);
		p = mtls_peer_chain_der(m, 1, &len);
		assert_non_null(p);
		assert_int_equal(len, (size_t)dl);
		assert_memory_equal(p, der, len);
		OPENSSL_free(der);
	}
	len = 99;
	assert_null(mtls_peer_chain_der(m, chain_len, &len));
	assert_int_equal(len, 0);
	want = chain_len > 1 ? pem_of(&pl, cli, inter, (X509 *)NULL) :
	    pem_of(&pl, cli, (X509 *)NULL);
	p = mtls_peer_chain_pem(m, &len);
	assert_non_null(p);
	assert_int_equal(len, pl);
	assert_string_equal((const char *)p, want);
	free(want);
	assert_int_equal(mtls_peer_validity(m, &b, &a), 0);
	assert_true(b == nb && a == na);
}

static void
test_peer_verify(void **state)
{
	struct mtls_config *c = mtls_config_new();
	struct mtls *v = mtls_new();
	size_t rl, pl, ol;
	char *rp = pem_of(&rl, root, (X509 *)NULL);
	char *pp = pem_of(&pl, cli, inter, (X509 *)NULL);
	char *op = pem_of(&ol, other, (X509 *)NULL);
	size_t len = 7;
	int64_t b = 1, a = 1;

	(void)state;
	/* nothing verified yet */
	assert_int_equal(mtls_peer_identity_count(v), 0);
	assert_null(mtls_peer_identity(v, 0));
	assert_int_equal(mtls_peer_chain_count(v), 0);
	assert_null(mtls_peer_chain_pem(v, &len));
	assert_int_equal(len, 0);
	assert_int_equal(mtls_peer_validity(v, &b, &a), -1);
	assert_int_equal(mtls_config_set_trust_mem(c, (uint8_t *)rp, rl), 0);
	assert_int_equal(mtls_config_add_allow(c, "dns:b.example.org"), 0);
	assert_int_equal(mtls_configure(v, c), 0);
	assert_int_equal(mtls_verify_pem(v, (uint8_t *)pp, pl), 0);
	check_cli_peer(v, 2);
	/* a rejected peer is still described (what it claimed) */
	assert_int_equal(mtls_verify_pem(v, (uint8_t *)op, ol), -1);
	assert_int_equal(mtls_fail_code(v), MTLS_FAIL_UNKNOWN_CA);
	assert_int_equal(mtls_peer_identity_count(v), 1);
	assert_string_equal(mtls_peer_identity(v, 0), "spiffe://example.org/x");
	assert_int_equal(mtls_peer_chain_count(v), 1);
	/* a parse failure leaves no peer */
	assert_int_equal(mtls_verify_pem(v, (uint8_t *)"junk", 4), -1);
	assert_int_equal(mtls_peer_identity_count(v), 0);
	assert_int_equal(mtls_peer_chain_count(v), 0);
	assert_null(mtls_peer_chain_der(v, 0, NULL));
	assert_int_equal(mtls_peer_validity(v, NULL, NULL), -1);
	/* the internal verifier entry point: the result lands on the context */
	{
		STACK_OF(X509) *sk = sk_X509_new_null();
		struct verify_out out;

		assert_non_null(sk);
		assert_int_equal(sk_X509_push(sk, other), 1);
		assert_int_equal(ctx_verify_chain(v, sk, MTLS_PURPOSE_ANY,
		    &out), -1);
		assert_int_equal(mtls_fail_code(v), MTLS_FAIL_UNKNOWN_CA);
		assert_int_equal(ctx_error(v)->fail, MTLS_FAIL_UNKNOWN_CA);
		assert_true(ctx_store(v) != NULL);
		verify_out_free(&out);
		sk_X509_free(sk);
	}
	mtls_free(v);
	mtls_config_free(c);
	free(rp);
	free(pp);
	free(op);
}

/* Drives both handshakes on a socketpair to the end (bounded). */
static void
shake(struct mtls *s, struct mtls *c)
{
	int rs = MTLS_WANT_READ, rc = MTLS_WANT_READ, i;

	for (i = 0; i < 200 && (rs != 0 || rc != 0); i++) {
		if (rc != 0)
			rc = mtls_handshake(c);
		if (rs != 0)
			rs = mtls_handshake(s);
		if ((rc < 0 && rc != MTLS_WANT_READ && rc != MTLS_WANT_WRITE) ||
		    (rs < 0 && rs != MTLS_WANT_READ && rs != MTLS_WANT_WRITE))
			fail_msg("handshake: client %d %s, server %d %s", rc,
			    mtls_error(c), rs, mtls_error(s));
	}
	assert_int_equal(rc, 0);
	assert_int_equal(rs, 0);
}

static void
test_conn(void **state)
{
	struct mtls_config *sc = mem_config(srv, srv_key);
	struct mtls_config *cc = mem_config(cli, cli_key);
	struct mtls *server = mtls_server(), *client = mtls_client();
	struct mtls *s = NULL, *c = NULL;
	char buf[4096], msg[100];
	long n;
	int fd[2], i;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(fcntl(fd[i], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(mtls_configure(server, sc), 0);
	assert_int_equal(mtls_configure(client, cc), 0);
	assert_int_equal(mtls_accept_socket(server, &s, fd[0]), 0);
	assert_int_equal(mtls_connect_socket(client, &c, fd[1], "localhost"),
	    0);
	/* before the handshake: no peer, nothing pending */
	assert_int_equal(mtls_peer_chain_count(s), 0);
	assert_int_equal(mtls_pending(s), 0);
	shake(s, c);
	assert_int_equal(mtls_peer_verified(s), 1);
	/* the server sees what the client sent: leaf, then intermediate */
	check_cli_peer(s, 2);
	/* the client sees the server's */
	assert_int_equal(mtls_peer_identity_count(c), 3);
	assert_string_equal(mtls_peer_identity(c, 1), "dns:localhost");
	assert_string_equal(mtls_peer_identity(c, 2), "ip:127.0.0.1");
	assert_int_equal(mtls_peer_chain_count(c), 2);
	assert_true(tls_peer_cert(c) != NULL);
	assert_int_equal(X509_cmp(tls_peer_cert(c), srv), 0);
	/* two records in flight; one read takes both off the socket
	 * (read-ahead) but returns the first: the second is pending, with
	 * nothing left for poll() to report */
	memset(msg, 'a', sizeof(msg));
	assert_int_equal(mtls_write(c, msg, sizeof(msg)), (long)sizeof(msg));
	memset(msg, 'b', sizeof(msg));
	assert_int_equal(mtls_write(c, msg, sizeof(msg)), (long)sizeof(msg));
	{
		struct pollfd p = { .fd = fd[0], .events = POLLIN };

		assert_int_equal(poll(&p, 1, 2000), 1);
	}
	n = mtls_read(s, buf, sizeof(buf));
	assert_int_equal(n, (long)sizeof(msg));
	assert_int_equal(buf[0], 'a');
	assert_int_equal(mtls_pending(s), 1);
	{
		struct pollfd p = { .fd = fd[0], .events = POLLIN };

		assert_int_equal(poll(&p, 1, 0), 0);
	}
	n = mtls_read(s, buf, sizeof(buf));
	assert_int_equal(n, (long)sizeof(msg));
	assert_int_equal(buf[0], 'b');
	assert_int_equal(mtls_pending(s), 0);
	/* contexts that are no connection have nothing pending */
	assert_int_equal(mtls_pending(server), 0);
	/* a failure recorded by the caller reads like the library's own */
	assert_int_equal(ctx_fail(s, MTLS_FAIL_HANDSHAKE_TIMEOUT, "late by %d "
	    "ms", 5), -1);
	assert_int_equal(mtls_fail_code(s), MTLS_FAIL_HANDSHAKE_TIMEOUT);
	assert_int_equal(mtls_error_code(s), MTLS_ERR_VERIFY);
	assert_string_equal(mtls_error(s), "late by 5 ms");
	mtls_free(s);
	mtls_free(c);
	mtls_free(server);
	mtls_free(client);
	mtls_config_free(sc);
	mtls_config_free(cc);
	close(fd[0]);
	close(fd[1]);
}

/* The internal accessors services use instead of the fields. */
static void
test_config_access(void **state)
{
	struct mtls_config *c = mtls_config_new(), *own = mtls_config_new();
	STACK_OF(X509) *anchors = sk_X509_new_null();
	struct mtls *v = mtls_new();
	size_t pl;
	char *pp = pem_of(&pl, cli, inter, (X509 *)NULL);

	(void)state;
	assert_null(config_leaf(c));
	assert_null(config_chain(c));
	assert_null(config_trust(c));
	assert_true(config_ref(c) == c);
	mtls_config_free(c);	/* the reference just taken */
	assert_int_equal(mtls_config_set_trust_file(c, "/nonexistent"), -1);
	assert_int_equal(config_error(c)->code, MTLS_ERR_IO);
	assert_string_equal(config_error(c)->msg, mtls_config_error(c));
	/* a borrowed bundle is used, and never freed by the config */
	assert_int_equal(sk_X509_push(anchors, root), 1);
	config_borrow_trust(own, anchors);
	assert_true(config_trust(own) == anchors);
	config_set_scope_oid(own, "1.3.6.1.4.1.32473.6857.9");
	assert_int_equal(mtls_config_set_allow_any(own), 0);
	assert_int_equal(mtls_configure(v, own), 0);
	assert_int_equal(mtls_verify_pem(v, (uint8_t *)pp, pl), 0);
	mtls_free(v);
	mtls_config_free(own);	/* the last reference: anchors survive */
	assert_int_equal(sk_X509_num(anchors), 1);
	assert_int_equal(X509_cmp(sk_X509_value(anchors, 0), root), 0);
	sk_X509_free(anchors);
	mtls_config_free(c);
	free(pp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_mem),
		cmocka_unit_test(test_trust_mem),
		cmocka_unit_test(test_peer_verify),
		cmocka_unit_test(test_conn),
		cmocka_unit_test(test_config_access),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
