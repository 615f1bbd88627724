/*
 * mtls doctor serve: a TLS server for debugging clients. It asks for a
 * client certificate (naming the CAs of --ca), accepts whatever the client
 * sends, and answers over HTTP, and in its log, with the same analysis of
 * the client's chain that `doctor files` gives.
 *
 * It runs on src/svc/net like `ca serve` (issue 12 item 6): one epoll
 * loop, a coroutine per connection once its first byte came, and the same
 * limits, so silent or slow clients cannot lock it out: the first byte
 * within --first-byte-timeout of accept, the handshake and the request
 * head within --request-timeout of accept, --max-conns-per-ip per client
 * address, and at --max-conns the longest-idle connection closed for a
 * new one. A diagnostic tool, not a data path: no keep-alive, one answer
 * per connection.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "doctor/doctor.h"
#include "net/net.h"
#include "net/addr.h"

#define REQ_MAX		8192
#define DRAIN_MS	5000	/* SIGTERM: answers in hand finish */

struct server {
	const struct doctor_serve_opts	*o;
	SSL_CTX				*ctx;
};

static struct net_loop *volatile stop_loop;

static void
on_signal(int sig)
{
	(void)sig;
	if (stop_loop != NULL)
		net_loop_stop(stop_loop);	/* async-signal-safe */
}

/* A throwaway server certificate when none is given: P-256, localhost and
 * 127.0.0.1, one day. Clients test their own certificate here, not ours. */
static int
ephemeral_identity(SSL_CTX *ctx)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	X509V3_CTX v3;
	X509_EXTENSION *e;
	int ok = 0;

	if (k == NULL || x == NULL)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(x), -300);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"mtls doctor serve", -1, -1, 0);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, k);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	if ((e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
	    "DNS:localhost,IP:127.0.0.1,IP:::1")) == NULL)
		goto out;
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	if ((e = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage,
	    "serverAuth")) == NULL)
		goto out;
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	if (X509_sign(x, k, EVP_sha256()) <= 0)
		goto out;
	ok = SSL_CTX_use_certificate(ctx, x) == 1 &&
	    SSL_CTX_use_PrivateKey(ctx, k) == 1;
 out:
	X509_free(x);
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

static int
accept_any(X509_STORE_CTX *c, void *arg)
{
	(void)c;
	(void)arg;
	return 1;	/* judged afterwards, by doctor_chain() */
}

static SSL_CTX *
server_ctx(const struct doctor_serve_opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) *names;

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, accept_any, NULL);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if ((names = SSL_load_client_CA_file(o->ca)) == NULL) {
		fprintf(stderr, "mtls doctor serve: %s: no certificate to name "
		    "in the CertificateRequest; give --ca with PEM roots\n",
		    o->ca);
		goto fail;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	if (o->cert) {
		struct mtls_error err = { 0 };
		EVP_PKEY *k = NULL;
		int ok;

		/* key_load: a key file, or a pkcs11: URI */
		if (key_load(o->key, NULL, &k, &err) != 0) {
			fprintf(stderr, "mtls doctor serve: --key: %s\n",
			    err.msg);
			goto fail;
		}
		ok = SSL_CTX_use_certificate_chain_file(ctx, o->cert) == 1 &&
		    SSL_CTX_use_PrivateKey(ctx, k) == 1 &&
		    SSL_CTX_check_private_key(ctx) == 1;
		EVP_PKEY_free(k);
		if (!ok) {
			fprintf(stderr, "mtls doctor serve: --cert %s / --key "
			    "%s: cannot load, or the key does not match\n",
			    o->cert, o->key);
			goto fail;
		}
	} else if (ephemeral_identity(ctx) != 0) {
		fprintf(stderr, "mtls doctor serve: cannot make a server "
		    "certificate\n");
		goto fail;
	}
	return ctx;
 fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* Waits for what <ssl> wants after <r> from an SSL call: 0 ready, or
 * NET_ERR / NET_TIMEOUT. */
static int
ssl_wait(struct net_conn *nc, SSL *ssl, int r, int64_t deadline)
{
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return net_wait(nc, POLLIN, deadline);
	case SSL_ERROR_WANT_WRITE:
		return net_wait(nc, POLLOUT, deadline);
	default:
		return NET_ERR;
	}
}

/* The TLS handshake by <deadline>: 0, NET_TIMEOUT or NET_ERR (refused:
 * the reason is on the error queue). */
static int
handshake(struct net_conn *nc, SSL *ssl, int64_t deadline)
{
	int r, w;

	for (;;) {
		ERR_clear_error();	/* another coroutine's leftovers */
		if ((r = SSL_accept(ssl)) == 1)
			return 0;
		if ((w = ssl_wait(nc, ssl, r, deadline)) != 0)
			return w;
	}
}

/* Reads the HTTP request head by <deadline>, if the client sends one;
 * returns its path ("" when none came). */
static void
read_request(struct net_conn *nc, SSL *ssl, char *path, size_t pl,
    int64_t deadline)
{
	char buf[REQ_MAX + 1];
	size_t n = 0;
	int r;
	char *sp, *sp2;

	path[0] = '\0';
	while (n < REQ_MAX) {
		ERR_clear_error();
		r = SSL_read(ssl, buf + n, (int)(REQ_MAX - n));
		if (r <= 0) {
			if (ssl_wait(nc, ssl, r, deadline) == 0)
				continue;
			return;		/* no whole head in time: no answer */
		}
		n += (size_t)r;
		buf[n] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			break;
	}
	buf[n] = '\0';
	if ((sp = strchr(buf, ' ')) != NULL &&
	    (sp2 = strchr(sp + 1, ' ')) != NULL && sp2 - sp - 1 < (long)pl)
		snprintf(path, pl, "%.*s", (int)(sp2 - sp - 1), sp + 1);
}

static int
write_all(struct net_conn *nc, SSL *ssl, const char *p, size_t n,
    int64_t deadline)
{
	int r;

	while (n > 0) {
		ERR_clear_error();
		r = SSL_write(ssl, p, n > 65536 ? 65536 : (int)n);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		} else if (ssl_wait(nc, ssl, r, deadline) != 0)
			return -1;
	}
	return 0;
}

static json_t *
client_report(SSL *ssl, const char *ca, const char *client)
{
	json_t *r = json_object(), *findings = json_array(), *tls, *ch;
	STACK_OF(X509) *chain = sk_X509_new_null(), *rest;
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	struct doctor_chain_opts o;
	int i, nid;

	if (r == NULL || findings == NULL || chain == NULL) {
		json_decref(r);
		json_decref(findings);
		sk_X509_free(chain);
		return NULL;
	}
	json_object_set_new(r, "client", esc_jstr(client));
	tls = json_object();
	json_object_set_new(tls, "version", esc_jstr(SSL_get_version(ssl)));
	json_object_set_new(tls, "cipher", esc_jstr(SSL_get_cipher_name(ssl)));
	nid = SSL_get_negotiated_group(ssl);
	if (nid != NID_undef && SSL_group_to_name(ssl, nid))
		json_object_set_new(tls, "group",
		    esc_jstr(SSL_group_to_name(ssl, nid)));
	json_object_set_new(r, "tls", tls);
	if (leaf == NULL) {
		finding_add(findings, "error", "no_client_cert",
		    "client certificate", "configure the client with its "
		    "certificate and key (curl: --cert F --key F)", "the "
		    "client sent no certificate");
		goto out;
	}
	sk_X509_push(chain, leaf);
	rest = SSL_get_peer_cert_chain(ssl);	/* server side: no leaf */
	for (i = 0; rest && i < sk_X509_num(rest); i++)
		if (X509_cmp(sk_X509_value(rest, i), leaf) != 0)
			sk_X509_push(chain, sk_X509_value(rest, i));
	memset(&o, 0, sizeof(o));
	o.ca = ca;
	o.purpose = MTLS_PURPOSE_CLIENT;
	o.now = time(NULL);
	o.who = "the client's";
	if ((ch = doctor_chain(chain, &o, findings)) != NULL)
		json_object_set_new(r, "chain", ch);
 out:
	json_object_set_new(r, "findings", findings);
	json_object_set_new(r, "result", esc_jstr(findings_result(
	    findings)));
	sk_X509_free(chain);
	return r;
}

static void
log_conn(json_t *report, const char *client, const char *err)
{
	json_t *o = json_object();
	json_t *f, *c0;
	size_t i;

	json_object_set_new(o, "client", esc_jstr(client));
	if (err) {
		json_object_set_new(o, "result", json_string("not_tls"));
		json_object_set_new(o, "error", esc_jstr(err));
	} else {
		json_object_set(o, "result", json_object_get(report, "result"));
		if ((c0 = json_array_get(json_object_get(report, "chain"), 0)))
			json_object_set(o, "subject", json_object_get(c0,
			    "subject"));
		json_array_foreach(json_object_get(report, "findings"), i, f)
			if (strcmp(json_string_value(json_object_get(f,
			    "severity")), "error") == 0) {
				json_object_set(o, "error", json_object_get(f,
				    "text"));
				break;
			}
	}
	log_emit(err ? "warn" : "info", "doctor", o);
	json_decref(o);
}

/* One connection, in its coroutine (net_serve_fn): the handshake and the
 * request head by --request-timeout from accept, the answer by the same
 * time again. */
static void
serve_conn(struct net_conn *nc, void *arg)
{
	struct server *s = arg;
	int64_t deadline = net_conn_accepted_ms(nc) + s->o->request_ms;
	SSL *ssl = NULL;
	json_t *rep = NULL;
	char client[80], path[256], *body = NULL, head[256], why[200];
	FILE *mf;
	size_t blen = 0;
	unsigned long e;
	int r;

	addr_text(net_conn_addr(nc), client, sizeof(client));
	if ((ssl = SSL_new(s->ctx)) == NULL ||
	    SSL_set_fd(ssl, net_conn_fd(nc)) != 1)
		goto out;
	if ((r = handshake(nc, ssl, deadline)) != 0) {
		e = ERR_peek_error();
		snprintf(why, sizeof(why), "handshake failed: %s", r ==
		    NET_TIMEOUT ? "not done within the request timeout" : e ?
		    ERR_reason_error_string(e) : "the client hung up");
		log_conn(NULL, client, why);
		goto out;
	}
	if ((rep = client_report(ssl, s->o->ca, client)) == NULL)
		goto out;
	log_conn(rep, client, NULL);
	read_request(nc, ssl, path, sizeof(path), deadline);
	net_idle(nc, 0);	/* answering: not closed for room */
	if (path[0] == '\0')
		goto out;
	if (strcmp(path, "/json") == 0 || strncmp(path, "/?json", 6) == 0)
		body = json_dumps(rep, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	else if ((mf = open_memstream(&body, &blen)) != NULL) {
		doctor_print(mf, rep, 0, 0);
		fclose(mf);
	}
	if (body == NULL)
		goto out;
	snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	    body[0] == '{' ? "application/json" : "text/plain; charset=utf-8",
	    strlen(body));
	deadline = net_now_ms() + s->o->request_ms;
	if (write_all(nc, ssl, head, strlen(head), deadline) == 0 &&
	    write_all(nc, ssl, body, strlen(body), deadline) == 0) {
		ERR_clear_error();
		SSL_shutdown(ssl);	/* our close_notify; not awaited */
	}
 out:
	ERR_clear_error();
	free(body);
	json_decref(rep);
	SSL_free(ssl);
}

static int
listen_on(const char *addr)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	int fd, one = 1;

	if (doctor_split_hostport(addr, host, sizeof(host), port,
	    sizeof(port)) != 0) {
		fprintf(stderr, "mtls doctor serve: --listen '%s' is not "
		    "HOST:PORT\n", addr);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) != 0) {
		fprintf(stderr, "mtls doctor serve: --listen '%s': cannot "
		    "resolve the host\n", addr);
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) != 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, 1024) != 0) {
		fprintf(stderr, "mtls doctor serve: --listen %s: %s\n", addr,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int
doctor_serve(const struct doctor_serve_opts *o)
{
	struct server s;
	struct net_opts no;
	struct net_stats ns;
	struct net_loop *loop = NULL;
	struct mtls_error err;
	struct sigaction sa;
	json_t *start;
	int lfd;

	memset(&s, 0, sizeof(s));
	s.o = o;
	if ((s.ctx = server_ctx(o)) == NULL)
		return 2;
	if ((lfd = listen_on(o->listen)) < 0) {
		SSL_CTX_free(s.ctx);
		return 2;
	}
	memset(&no, 0, sizeof(no));
	no.name = "doctor-serve";
	no.max_conns = o->max_conns;
	no.max_per_ip = o->max_per_ip;
	no.first_byte_ms = o->first_byte_ms;
	no.drain_ms = DRAIN_MS;
	error_clear(&err);
	if (net_loop_new(&loop, &no, &err) != 0 ||
	    net_listen(loop, lfd, serve_conn, &s, &err) != 0) {
		if (loop == NULL)
			close(lfd);
		fprintf(stderr, "mtls doctor serve: %s\n", err.msg);
		net_loop_free(loop);
		SSL_CTX_free(s.ctx);
		return 2;
	}
	stop_loop = loop;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	net_loop_stats(loop, &ns);	/* max_conns as RLIMIT_NOFILE allows */
	start = json_object();
	json_object_set_new(start, "listen", esc_jstr(o->listen));
	json_object_set_new(start, "ca", esc_jstr(o->ca));
	json_object_set_new(start, "max_conns", json_integer(ns.max_conns));
	json_object_set_new(start, "max_conns_per_ip",
	    json_integer(o->max_per_ip));
	log_emit("info", "start", start);
	json_decref(start);
	/* until SIGTERM/SIGINT; then idle connections close at once and
	 * answers in hand finish within DRAIN_MS */
	net_loop_run(loop);
	stop_loop = NULL;
	net_loop_free(loop);
	SSL_CTX_free(s.ctx);
	return 0;
}
