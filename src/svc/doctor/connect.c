/*
 * mtls doctor connect: one real handshake against any TLS server, traced
 * message by message (SSL_set_msg_callback), then explained.
 *
 * The handshake runs with OpenSSL's verification off on purpose: a server
 * whose certificate we would refuse can still tell us whether it asks for
 * ours and whether it accepts it. Its chain is then verified with libmtls's
 * own policy (analyze.c), so the verdict is the one the proxy would reach.
 * When the server refuses our ClientHello outright, a few more handshakes
 * with one dimension widened (versions, groups, signature algorithms,
 * ciphers) name what the two sides do not share.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "doctor/doctor.h"

#define SYSTEM_BUNDLE	"/etc/ssl/certs/ca-certificates.crt"

struct variant {
	int		 min_v, max_v;	/* TLS1_x_VERSION; 0 = default */
	const char	*groups, *sigalgs, *ciphers, *suites;
	int		 seclevel;	/* -1: OpenSSL's default */
};

/* What one attempt saw. */
struct attempt {
	int64_t		 t0_us;
	int64_t		 deadline_us;	/* --timeout: connect, handshake, reads */
	json_t		*trace;		/* NULL for probes */
	FILE		*live;		/* print trace lines as they happen */
	int		 color;
	int		 saw_server_hello, saw_cr, saw_nst, sent_cert;
	int		 sent_empty_cert, got_server_cert;
	int		 got_data;	/* application data from the server */
	int		 alert_in, alert_in_after_cert;	/* -1: none */
	int		 alert_out;
	unsigned char	 first[64];	/* the first bytes the server sent */
	size_t		 nfirst;
	int		 connect_errno, timed_out, eof;
	int		 http;		/* send GET / after the handshake */
	int		 http_status;	/* its answer's status, 0 none */
	char		 http_resp[4096];
	char		 gai_err[200];
	unsigned long	 ossl_reason;
	long		 chain_limit;	/* >0: the server's chain was over it */
	char		 ossl_text[200];
	SSL		*ssl;
	int		 fd;
};

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Milliseconds left until <deadline_us>, rounded up; 0 when passed. */
static int
left_ms(int64_t deadline_us)
{
	int64_t left = deadline_us - now_us();

	return left <= 0 ? 0 : left > 600000000 ? 600000 :
	    (int)((left + 999) / 1000);
}

/* RFC 8446 / 5246 alert names. */
static const char *
alert_name(int d)
{
	switch (d) {
	case 0: return "close_notify";
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 22: return "record_overflow";
	case 40: return "handshake_failure";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 49: return "access_denied";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 70: return "protocol_version";
	case 71: return "insufficient_security";
	case 80: return "internal_error";
	case 86: return "inappropriate_fallback";
	case 90: return "user_canceled";
	case 109: return "missing_extension";
	case 110: return "unsupported_extension";
	case 112: return "unrecognized_name";
	case 113: return "bad_certificate_status_response";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	default: return "unknown_alert";
	}
}

static const char *
hs_name(int t)
{
	switch (t) {
	case SSL3_MT_CLIENT_HELLO: return "ClientHello";
	case SSL3_MT_SERVER_HELLO: return "ServerHello";
	case SSL3_MT_NEWSESSION_TICKET: return "NewSessionTicket";
	case SSL3_MT_END_OF_EARLY_DATA: return "EndOfEarlyData";
	case SSL3_MT_ENCRYPTED_EXTENSIONS: return "EncryptedExtensions";
	case SSL3_MT_CERTIFICATE: return "Certificate";
	case SSL3_MT_SERVER_KEY_EXCHANGE: return "ServerKeyExchange";
	case SSL3_MT_CERTIFICATE_REQUEST: return "CertificateRequest";
	case SSL3_MT_SERVER_DONE: return "ServerHelloDone";
	case SSL3_MT_CERTIFICATE_VERIFY: return "CertificateVerify";
	case SSL3_MT_CLIENT_KEY_EXCHANGE: return "ClientKeyExchange";
	case SSL3_MT_FINISHED: return "Finished";
	case SSL3_MT_CERTIFICATE_STATUS: return "CertificateStatus";
	case SSL3_MT_KEY_UPDATE: return "KeyUpdate";
	default: return "HandshakeMessage";
	}
}

int
doctor_cert_msg_count(const unsigned char *p, size_t len, int tls13)
{
	size_t off = 4, end;
	int n = 0;

	if (tls13) {
		if (len < off + 1 || len < off + 1 + p[off])
			return -1;
		off += 1 + p[off];
	}
	if (len < off + 3)
		return -1;
	end = off + 3 + ((size_t)p[off] << 16 | (size_t)p[off + 1] << 8 |
	    p[off + 2]);
	off += 3;
	if (end > len)
		return -1;
	while (off + 3 <= end) {
		size_t cl = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 |
		    p[off + 2];

		off += 3 + cl;
		if (tls13) {
			if (off + 2 > end)
				return -1;
			off += 2 + ((size_t)p[off] << 8 | p[off + 1]);
		}
		n++;
	}
	return off == end ? n : -1;
}

static void
trace_add(struct attempt *a, int out, const char *msg, const char *detail)
{
	double ms = (double)(now_us() - a->t0_us) / 1000.0;
	json_t *o;

	if (a->trace == NULL)
		return;
	if ((o = json_object()) != NULL) {
		json_object_set_new(o, "ms", json_real(ms));
		json_object_set_new(o, "dir", esc_jstr(out ? "out" : "in"));
		json_object_set_new(o, "msg", esc_jstr(msg));
		if (detail && *detail)
			json_object_set_new(o, "detail", esc_jstr(detail));
		json_array_append_new(a->trace, o);
	}
	if (a->live) {
		char m[100], d[400];

		esc_text(m, sizeof(m), msg, strlen(msg), SIZE_MAX, ESC_KEEP_BS);
		esc_text(d, sizeof(d), detail ? detail : "", detail ?
		    strlen(detail) : 0, SIZE_MAX, ESC_KEEP_BS);
		fprintf(a->live, "%8.1f ms  %s %s%s%s\n", ms, out ? "->" : "<-",
		    m, *d ? "  " : "", d);
		fflush(a->live);
	}
}

static void
msg_cb(int write_p, int version, int ct, const void *buf, size_t len,
    SSL *ssl, void *arg)
{
	struct attempt *a = arg;
	const unsigned char *p = buf;
	char detail[200] = "";
	int n, tls13;

	(void)version;
	switch (ct) {
	case SSL3_RT_HANDSHAKE:
		if (len < 1)
			return;
		tls13 = SSL_version(ssl) == TLS1_3_VERSION;
		switch (p[0]) {
		case SSL3_MT_SERVER_HELLO:
			a->saw_server_hello = 1;
			break;
		case SSL3_MT_CERTIFICATE_REQUEST:
			a->saw_cr = 1;
			break;
		case SSL3_MT_NEWSESSION_TICKET:
			a->saw_nst = 1;
			break;
		case SSL3_MT_CERTIFICATE:
			n = doctor_cert_msg_count(p, len, tls13);
			if (write_p) {
				a->sent_cert = 1;
				a->sent_empty_cert = n == 0;
			} else
				a->got_server_cert = 1;
			if (n >= 0)
				snprintf(detail, sizeof(detail), n == 0 ?
				    "(empty: no certificate)" : "(%d "
				    "certificate%s)", n, n == 1 ? "" : "s");
			break;
		}
		trace_add(a, write_p, hs_name(p[0]), detail);
		break;
	case SSL3_RT_CHANGE_CIPHER_SPEC:
		trace_add(a, write_p, "ChangeCipherSpec",
		    SSL_version(ssl) == TLS1_3_VERSION ? "(compatibility)" : "");
		break;
	case SSL3_RT_ALERT:
		if (len < 2)
			return;
		/* closure alerts (close_notify; user_canceled, which the JDK
		 * sends before it on every TLS 1.3 close) end a connection,
		 * they refuse nothing; nor does any alert after the server
		 * has sent us application data (it took our certificate) */
		if (write_p)
			a->alert_out = p[1];
		else if (p[1] != SSL3_AD_CLOSE_NOTIFY &&
		    p[1] != SSL_AD_USER_CANCELLED && !a->got_data) {
			a->alert_in = p[1];
			if (a->sent_cert)
				a->alert_in_after_cert = p[1];
		}
		snprintf(detail, sizeof(detail), "%s %s (%d)", p[0] == 2 ?
		    "fatal" : "warning", alert_name(p[1]), p[1]);
		trace_add(a, write_p, "Alert", detail);
		break;
	default:
		break;
	}
}

/* Keeps the first bytes the server sent, to name what answered when it is
 * not TLS. */
static long
bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
    int ret, size_t *processed)
{
	struct attempt *a = (struct attempt *)BIO_get_callback_arg(b);
	size_t n;

	(void)len;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed &&
	    a->nfirst < sizeof(a->first)) {
		n = *processed;
		if (n > sizeof(a->first) - a->nfirst)
			n = sizeof(a->first) - a->nfirst;
		memcpy(a->first + a->nfirst, argp, n);
		a->nfirst += n;
	}
	return ret;
}

int
doctor_split_hostport(const char *t, char *host, size_t hl, char *port, size_t pl)
{
	const char *c;

	if (t[0] == '[') {
		if ((c = strchr(t, ']')) == NULL || c[1] != ':')
			return -1;
		snprintf(host, hl, "%.*s", (int)(c - t - 1), t + 1);
		c++;
	} else {
		if ((c = strrchr(t, ':')) == NULL)
			return -1;
		snprintf(host, hl, "%.*s", (int)(c - t), t);
	}
	snprintf(port, pl, "%s", c + 1);
	return host[0] && port[0] && strspn(port, "0123456789") ==
	    strlen(port) ? 0 : -1;
}

static int
tcp_connect(const char *host, const char *port, struct attempt *a)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct pollfd pfd;
	int fd = -1, r, e, one = 1;
	socklen_t el;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(a->gai_err, sizeof(a->gai_err), "%s",
		    r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			r = poll(&pfd, 1, left_ms(a->deadline_us));
			if (r == 0) {
				a->timed_out = 1;
				a->connect_errno = ETIMEDOUT;
			} else {
				el = sizeof(e);
				e = 0;
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
				if (e == 0)
					break;
				a->connect_errno = e;
			}
		} else
			a->connect_errno = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		a->connect_errno = 0;
		a->timed_out = 0;
	}
	return fd;
}

/* Waits for <fd> per <want>; 0 ready, -1 deadline passed. */
static int
wait_io(int fd, int want, int64_t deadline_us)
{
	struct pollfd pfd;
	int ms = left_ms(deadline_us);

	if (ms == 0)
		return -1;
	pfd.fd = fd;
	pfd.events = want == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
	return poll(&pfd, 1, ms) > 0 ? 0 : -1;
}

static SSL_CTX *
make_ctx(const struct variant *v, STACK_OF(X509) *mychain, EVP_PKEY *mykey)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	int i;

	if (c == NULL)
		return NULL;
	if (v->seclevel >= 0)
		SSL_CTX_set_security_level(c, v->seclevel);
	SSL_CTX_set_min_proto_version(c, v->min_v ? v->min_v : TLS1_2_VERSION);
	if (v->max_v)
		SSL_CTX_set_max_proto_version(c, v->max_v);
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	if ((v->groups && SSL_CTX_set1_groups_list(c, v->groups) != 1) ||
	    (v->sigalgs && SSL_CTX_set1_sigalgs_list(c, v->sigalgs) != 1) ||
	    (v->ciphers && SSL_CTX_set_cipher_list(c, v->ciphers) != 1) ||
	    (v->suites && SSL_CTX_set_ciphersuites(c, v->suites) != 1))
		goto fail;
	if (mychain && mykey) {
		if (SSL_CTX_use_certificate(c, sk_X509_value(mychain, 0)) != 1 ||
		    SSL_CTX_use_PrivateKey(c, mykey) != 1)
			goto fail;
		for (i = 1; i < sk_X509_num(mychain); i++)
			if (SSL_CTX_add1_chain_cert(c,
			    sk_X509_value(mychain, i)) != 1)
				goto fail;
	}
	return c;
 fail:
	SSL_CTX_free(c);
	return NULL;
}

/* Not TLS: OpenSSL stopped after a 5-byte record header; read a little
 * more to name what answered: while bytes keep coming within 300 ms, and
 * never past --timeout (a server sending a byte every 250 ms kept us 16 s
 * on a 3 s timeout, issue 18). */
static void
read_more(struct attempt *a)
{
	struct pollfd pfd;
	ssize_t r;
	int ms;

	pfd.fd = a->fd;
	pfd.events = POLLIN;
	while (a->nfirst < sizeof(a->first) &&
	    (ms = left_ms(a->deadline_us)) > 0 &&
	    poll(&pfd, 1, ms < 300 ? ms : 300) > 0) {
		r = recv(a->fd, a->first + a->nfirst, sizeof(a->first) -
		    a->nfirst, 0);
		if (r <= 0)
			break;
		a->nfirst += (size_t)r;
	}
}

/*
 * Some servers (nginx) finish the handshake whatever certificate the client
 * sends and refuse it in HTTP instead: 400 "No required SSL certificate was
 * sent" or "The SSL certificate error". One GET / tells.
 */
static void
http_probe(struct attempt *a, const char *host)
{
	char req[600], *sp;
	int64_t deadline = now_us() + 3000000;

	if (deadline > a->deadline_us)
		deadline = a->deadline_us;
	size_t n = 0;
	int r, e;

	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: "
	    "mtls-doctor\r\nConnection: close\r\n\r\n", host);
	for (;;) {
		r = SSL_write(a->ssl, req, (int)strlen(req));
		if (r > 0)
			break;
		e = SSL_get_error(a->ssl, r);
		if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
		    wait_io(a->fd, e, deadline) != 0)
			goto out;
	}
	while (n + 1 < sizeof(a->http_resp)) {
		r = SSL_read(a->ssl, a->http_resp + n, (int)(sizeof(
		    a->http_resp) - 1 - n));
		if (r > 0) {
			n += (size_t)r;
			a->got_data = 1;
			continue;
		}
		e = SSL_get_error(a->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (wait_io(a->fd, e, deadline) != 0)
				break;
			continue;
		}
		break;
	}
 out:
	ERR_clear_error();
	a->http_resp[n] = '\0';
	if (strncmp(a->http_resp, "HTTP/1.", 7) == 0 &&
	    (sp = strchr(a->http_resp, ' ')) != NULL)
		a->http_status = atoi(sp + 1);
}

/*
 * One attempt: TCP connect, handshake until done, failure or
 * a->deadline_us (--timeout: one deadline over the connect, the handshake
 * and every read, never one per read), and for TLS 1.3 a short wait for
 * the server's verdict on our certificate (it comes after our Finished: a
 * NewSessionTicket means accepted, an alert refused). Returns 1 when the
 * handshake completed.
 */
static int
attempt_run(struct attempt *a, SSL_CTX *ctx, const char *host,
    const char *port, const char *sni)
{
	int64_t deadline = a->deadline_us;
	int r, e, done = 0;
	char buf[256];
	BIO *rb;

	a->alert_in = a->alert_in_after_cert = a->alert_out = -1;
	a->t0_us = now_us();
	if ((a->fd = tcp_connect(host, port, a)) < 0)
		return 0;
	if ((a->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(a->ssl, a->fd) != 1)
		return 0;
	if (sni)
		SSL_set_tlsext_host_name(a->ssl, sni);
	SSL_set_msg_callback(a->ssl, msg_cb);
	SSL_set_msg_callback_arg(a->ssl, a);
	rb = SSL_get_rbio(a->ssl);
	BIO_set_callback_arg(rb, (char *)a);
	BIO_set_callback_ex(rb, bio_cb);
	ERR_clear_error();
	for (;;) {
		r = SSL_connect(a->ssl);
		if (r == 1) {
			done = 1;
			break;
		}
		e = SSL_get_error(a->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (wait_io(a->fd, e, deadline) != 0) {
				a->timed_out = 1;
				return 0;
			}
			continue;
		}
		break;
	}
	if (!done) {
		unsigned long l = ERR_peek_error();

		a->ossl_reason = l ? ERR_GET_REASON(l) : 0;
		/* refused by size before parsing: name it, not a lack of
		 * algorithms (issue 18) */
		if (a->ossl_reason == SSL_R_EXCESSIVE_MESSAGE_SIZE &&
		    SSL_get_state(a->ssl) == TLS_ST_CR_CERT)
			a->chain_limit = (long)SSL_get_max_cert_list(a->ssl);
		if (l)
			ERR_error_string_n(l, a->ossl_text, sizeof(a->ossl_text));
		if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ||
		    a->ossl_reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			a->eof = 1;
		ERR_clear_error();
		if (a->nfirst > 0 && (a->first[0] < 0x14 || a->first[0] > 0x17))
			read_more(a);
		return 0;
	}
	if (a->trace == NULL || !a->saw_cr)
		return 1;
	/* the server's verdict on our certificate, up to 1.5 s */
	deadline = now_us() + 1500000;
	if (deadline > a->deadline_us)
		deadline = a->deadline_us;
	/* from here on a close without close_notify is an EOF: a server that
	 * refuses us by just closing (Node's rejectUnauthorized destroys the
	 * socket after the handshake, no alert), or one that closes after its
	 * HTTP answer; OpenSSL 3 would call it an error and send decode_error
	 * itself, which the trace would show as ours */
	SSL_set_options(a->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	while (SSL_version(a->ssl) == TLS1_3_VERSION && !a->saw_nst) {
		r = SSL_read(a->ssl, buf, sizeof(buf));
		if (r > 0) {
			a->got_data = 1;
			break;		/* it talks to us: accepted */
		}
		e = SSL_get_error(a->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (a->saw_nst || wait_io(a->fd, e, deadline) != 0)
				break;
			continue;
		}
		if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
			a->eof = 1;
		break;
	}
	ERR_clear_error();
	if (a->http && a->alert_in_after_cert < 0 && !a->eof)
		http_probe(a, sni ? sni : host);
	return 1;
}

static void
attempt_free(struct attempt *a)
{
	SSL_free(a->ssl);
	if (a->fd >= 0)
		close(a->fd);
	a->ssl = NULL;
	a->fd = -1;
}

static int
is_ip(const char *h)
{
	unsigned char b[16];

	return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static const char *
version_name(int v)
{
	switch (v) {
	case TLS1_VERSION: return "TLS 1.0";
	case TLS1_1_VERSION: return "TLS 1.1";
	case TLS1_2_VERSION: return "TLS 1.2";
	case TLS1_3_VERSION: return "TLS 1.3";
	default: return "an unknown version";
	}
}

static int
parse_version(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcmp(s, "1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(s, "1.3") == 0)
		return TLS1_3_VERSION;
	return -1;
}

/* Groups by the names people configure: P-256 rather than prime256v1. */
static const char *
group_name(SSL *ssl, int nid)
{
	const char *n;

	switch (nid) {
	case NID_X9_62_prime256v1: return "P-256";
	case NID_secp384r1: return "P-384";
	case NID_secp521r1: return "P-521";
	default:
		n = SSL_group_to_name(ssl, nid);
		return n ? n : OBJ_nid2sn(nid);
	}
}

static const char *
sig_type_name(int nid)
{
	switch (nid) {
	case EVP_PKEY_EC: return "ECDSA";
	case EVP_PKEY_RSA: return "RSA-PKCS1";
	case EVP_PKEY_RSA_PSS: return "RSA-PSS";
	case EVP_PKEY_ED25519: return "Ed25519";
	case EVP_PKEY_ED448: return "Ed448";
	default: return OBJ_nid2sn(nid);
	}
}

/* What a handshake with one dimension widened negotiates. */
struct probe_result {
	int	 ok;
	int	 timed_out;	/* --timeout ran out before an answer */
	int	 version;
	char	 what[160];
};

enum { P_VERSION, P_GROUP, P_SIGALG, P_CIPHER };

static void
probe(int kind, const struct variant *v, const char *host, const char *port,
    const char *sni, int64_t deadline_us, STACK_OF(X509) *chain,
    EVP_PKEY *key, struct probe_result *pr)
{
	struct attempt a;
	SSL_CTX *ctx = make_ctx(v, chain, key);
	int nid, hash;

	memset(&a, 0, sizeof(a));
	memset(pr, 0, sizeof(*pr));
	a.fd = -1;
	a.deadline_us = deadline_us;
	if (ctx == NULL)
		return;
	attempt_run(&a, ctx, host, port, sni);
	pr->timed_out = !a.saw_server_hello && a.timed_out;
	if (a.saw_server_hello && a.ssl) {
		pr->ok = 1;
		pr->version = SSL_version(a.ssl);
		if (kind == P_GROUP && (nid = SSL_get_negotiated_group(a.ssl)) !=
		    NID_undef)
			snprintf(pr->what, sizeof(pr->what), "group %s",
			    group_name(a.ssl, nid));
		else if (kind == P_SIGALG && SSL_get_peer_signature_type_nid(
		    a.ssl, &nid) == 1 && SSL_get_peer_signature_nid(a.ssl,
		    &hash) == 1)
			snprintf(pr->what, sizeof(pr->what), "signature "
			    "algorithm %s+%s", sig_type_name(nid),
			    OBJ_nid2sn(hash));
		else if (kind == P_CIPHER)
			snprintf(pr->what, sizeof(pr->what), "cipher %s",
			    SSL_get_cipher_name(a.ssl));
		else
			snprintf(pr->what, sizeof(pr->what), "%s",
			    version_name(SSL_version(a.ssl)));
	}
	attempt_free(&a);
	SSL_CTX_free(ctx);
}

/* A probe that --timeout cut short proves nothing: say so, rather than
 * "refused every ClientHello". */
static int
ran_out(const struct probe_result *pr, json_t *findings)
{
	if (pr->ok || !pr->timed_out)
		return 0;
	finding_add(findings, "error", "no_shared_algorithm", "handshake",
	    "compare both sides' TLS settings, or give a longer --timeout so "
	    "that the doctor can find which one it lacks", "the server "
	    "refused our ClientHello; --timeout ran out before the probes "
	    "could tell which setting it lacks");
	return 1;
}

/* The server refused our ClientHello: find which dimension it lacks. */
static void
explain_no_shared(const struct variant *base, const char *host,
    const char *port, const char *sni, int64_t deadline_us,
    STACK_OF(X509) *chain, EVP_PKEY *key, int version_alert, json_t *findings)
{
	static const char all_groups[] =
	    "X25519:P-256:P-384:P-521:X448:ffdhe2048:ffdhe3072:ffdhe4096";
	static const char all_sigalgs[] =
	    "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:ed448:"
	    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:"
	    "rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512:"
	    "RSA+SHA256:RSA+SHA384:RSA+SHA512:ECDSA+SHA1:RSA+SHA1";
	struct variant v;
	struct probe_result pr;

	/* versions first: the other dimensions depend on them */
	if (version_alert || base->min_v || base->max_v) {
		v = *base;
		v.min_v = TLS1_VERSION;
		v.max_v = 0;
		v.seclevel = 0;
		v.ciphers = "ALL:@SECLEVEL=0";
		probe(P_VERSION, &v, host, port, sni, deadline_us, chain, key,
		    &pr);
		if (ran_out(&pr, findings))
			return;
		if (pr.ok && ((base->min_v && pr.version < base->min_v) ||
		    (base->max_v && pr.version > base->max_v) ||
		    (!base->min_v && pr.version < TLS1_2_VERSION))) {
			finding_add(findings, "error", "protocol_version",
			    "versions", "allow that version on the client "
			    "(--min-tls/--max-tls), or upgrade the server "
			    "to TLS 1.3 (at least 1.2)", "no TLS version in "
			    "common: with every version offered the server "
			    "negotiates %s, outside what this client offered",
			    pr.what);
			return;
		}
		if (version_alert) {
			finding_add(findings, "error", "protocol_version",
			    "versions", "enable TLS 1.2 or 1.3 on both sides",
			    "the server refused every TLS version we offered "
			    "(alert protocol_version)");
			return;
		}
	}
	v = *base;
	v.groups = all_groups;
	probe(P_GROUP, &v, host, port, sni, deadline_us, chain, key, &pr);
	if (ran_out(&pr, findings))
		return;
	if (pr.ok) {
		finding_add(findings, "error", "no_shared_algorithm", "groups",
		    "offer that group on the client, or enable X25519 or "
		    "P-256 on the server", "no key-exchange group in common: "
		    "offered every group, the server chose %s, which this "
		    "client did not offer", pr.what);
		return;
	}
	v = *base;
	v.sigalgs = all_sigalgs;
	probe(P_SIGALG, &v, host, port, sni, deadline_us, chain, key, &pr);
	if (ran_out(&pr, findings))
		return;
	if (pr.ok) {
		finding_add(findings, "error", "no_shared_algorithm",
		    "signature algorithms", "let the client accept that "
		    "signature algorithm, or give the server a certificate "
		    "whose key type the client supports (e.g. an ECDSA and "
		    "an RSA certificate side by side)", "no signature "
		    "algorithm in common: the server's certificate can only "
		    "sign with %s, which this client did not offer", pr.what);
		return;
	}
	v = *base;
	v.ciphers = "ALL:@SECLEVEL=0";
	v.suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
	    "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:"
	    "TLS_AES_128_CCM_8_SHA256";
	v.seclevel = 0;
	probe(P_CIPHER, &v, host, port, sni, deadline_us, chain, key, &pr);
	if (ran_out(&pr, findings))
		return;
	if (pr.ok) {
		finding_add(findings, "error", "no_shared_algorithm", "ciphers",
		    "enable an AEAD cipher (AES-GCM or ChaCha20-Poly1305) on "
		    "the server", "no cipher in common: the server chose %s, "
		    "which this client did not offer", pr.what);
		return;
	}
	finding_add(findings, "error", "no_shared_algorithm", "handshake",
	    "compare the server's TLS settings (versions, groups, signature "
	    "algorithms, ciphers) with the client's", "the server refused "
	    "every ClientHello we tried, even with all versions, groups, "
	    "signature algorithms and ciphers offered");
}

static const char *
alert_cause(int d)
{
	switch (d) {
	case 48: return "the server does not trust the CA that issued our "
	    "certificate: add our root (or intermediate) to the server's "
	    "client-CA bundle, or use a certificate from a CA it names in "
	    "its CertificateRequest";
	case 42: return "the server refused our certificate without saying "
	    "why (bad_certificate): a missing intermediate (send the full "
	    "chain), a key usage it refuses, or an identity it does not "
	    "authorize (mtls proxy sends this for any refusal; its log has "
	    "the taxonomy code): check the findings about our chain and the "
	    "server's allow rules";
	case 43: return "the server does not support our certificate's key "
	    "or signature type: use an ECDSA P-256 or RSA 2048 certificate";
	case 44: return "the server says our certificate is revoked: get a "
	    "new one (mtls agent or mtls ca issue)";
	case 45: return "the server says our certificate (or its chain) has "
	    "expired, by its clock: renew it, and check both clocks";
	case 46: return "the server could not accept our certificate for an "
	    "unspecified reason (often extendedKeyUsage without clientAuth, "
	    "or a verification depth limit): check its logs";
	case 49: return "our certificate verified, but the server does not "
	    "authorize our identity: add it to the server's allow rules";
	case 51: return "the server could not verify our CertificateVerify "
	    "signature: the key does not match the certificate, or a "
	    "middlebox interferes";
	case 116: return "the server requires a client certificate";
	default: return "the server refused the handshake after our "
	    "certificate: check its logs";
	}
}

static void
printable_prefix(const unsigned char *p, size_t n, char *out, size_t ol)
{
	size_t i, o = 0;

	for (i = 0; i < n && i < 40 && o + 2 < ol; i++) {
		if (p[i] == '\r' || p[i] == '\n')
			break;
		out[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
	}
	out[o] = '\0';
}

/* The handshake did not complete: one taxonomy code and its fix. */
static void
explain_failure(struct attempt *a, const struct variant *v, int have_cert,
    const char *host, const char *port, const char *sni, int timeout_ms,
    STACK_OF(X509) *chain, EVP_PKEY *key, json_t *findings)
{
	char pfx[64];

	if (a->gai_err[0]) {
		finding_add(findings, "error", "connect_failed", "dns",
		    "check the host name (typo? the right DNS or /etc/hosts?)",
		    "cannot resolve '%s': %s", host, a->gai_err);
		return;
	}
	if (a->ssl == NULL && a->connect_errno) {
		if (a->connect_errno == ECONNREFUSED)
			finding_add(findings, "error", "connect_failed", "tcp",
			    "start the server, or check the port", "connection "
			    "refused: nothing listens on %s:%s", host, port);
		else if (a->timed_out)
			finding_add(findings, "error", "connect_failed", "tcp",
			    "check that the host is up and that no firewall "
			    "drops the port", "TCP connect to %s:%s timed out "
			    "after %d ms", host, port, timeout_ms);
		else
			finding_add(findings, "error", "connect_failed", "tcp",
			    "check the address and the network", "cannot "
			    "connect to %s:%s: %s", host, port,
			    strerror(a->connect_errno));
		return;
	}
	if (a->nfirst > 0 && a->first[0] != 0x15 && a->first[0] != 0x16) {
		printable_prefix(a->first, a->nfirst, pfx, sizeof(pfx));
		if (strncmp((char *)a->first, "HTTP/", 5) == 0 ||
		    strncasecmp((char *)a->first, "<!DOCTYPE", 9) == 0 ||
		    strncasecmp((char *)a->first, "<html", 5) == 0)
			finding_add(findings, "error", "not_tls", "protocol",
			    "use http:// for this port, or the server's TLS "
			    "port", "the server answered in plain HTTP (\"%s\"): "
			    "this port does not speak TLS", pfx);
		else
			finding_add(findings, "error", "not_tls", "protocol",
			    "point the client at the server's TLS port",
			    "the server answered with bytes that are not TLS "
			    "(\"%s\")", pfx);
		return;
	}
	if (a->alert_in >= 0) {
		int d = a->alert_in;

		if (!a->saw_server_hello) {
			if (d == 112)
				finding_add(findings, "error",
				    "identity_mismatch", "sni", "use "
				    "--servername with a name the server "
				    "serves", "the server does not serve the "
				    "name '%s' we sent (alert unrecognized_name)",
				    sni ? sni : "");
			else
				explain_no_shared(v, host, port, sni, a->deadline_us,
				    chain, key, d == 70, findings);
			return;
		}
		if (a->saw_cr && (!have_cert || a->sent_empty_cert) &&
		    (d == 116 || d == 40 || d == 42 || d == 46)) {
			finding_add(findings, "error", "no_client_cert",
			    "client certificate", "give --cert and --key with "
			    "a certificate from a CA the server names",
			    "the server requires a client certificate and we "
			    "sent none (alert %s)", alert_name(d));
			return;
		}
		if (a->sent_cert) {
			finding_add(findings, "error", "peer_rejected_our_cert",
			    "client certificate", alert_cause(d),
			    "the server rejected our certificate with alert "
			    "%s (%d)", alert_name(d), d);
			return;
		}
		finding_add(findings, "error", "no_shared_algorithm",
		    "handshake", "check the server's logs for this alert",
		    "the server aborted the handshake with alert %s (%d)",
		    alert_name(d), d);
		return;
	}
	if (a->timed_out) {
		finding_add(findings, "error", "handshake_timeout", "handshake",
		    a->nfirst == 0 ? "check that this port speaks TLS (a "
		    "protocol where the server talks first, or one that waits "
		    "for more, looks like this); or that the server is not "
		    "overloaded" : "the server stalled mid-handshake: check "
		    "its load and logs", "no complete answer within %d ms "
		    "(%zu bytes received)", timeout_ms, a->nfirst);
		return;
	}
	if (a->eof && a->nfirst == 0) {
		finding_add(findings, "error", "not_tls", "protocol",
		    "check that this port speaks TLS, and the server's logs",
		    "the server closed the connection without answering our "
		    "ClientHello: it does not speak TLS here, or it refused "
		    "us before the handshake (SNI, an IP filter, a limit)");
		return;
	}
	if (a->eof && a->sent_cert) {
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", "check the server's logs for why it "
		    "refused our certificate", "the server closed the "
		    "connection after our certificate without an alert");
		return;
	}
	if (a->chain_limit > 0) {
		finding_add(findings, "error", "chain_too_large",
		    "server certificate", mtls_fail_hint(
		    MTLS_FAIL_CHAIN_TOO_LARGE), "the server's certificate "
		    "chain is over the %ld-byte (%ld KiB) limit of OpenSSL and "
		    "most clients: they refuse it before reading it",
		    a->chain_limit, a->chain_limit / 1024);
		return;
	}
	switch (a->ossl_reason) {
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
	case SSL_R_UNKNOWN_PROTOCOL:
	case SSL_R_HTTP_REQUEST:
		finding_add(findings, "error", "not_tls", "protocol",
		    "point the client at the server's TLS port", "the server "
		    "does not speak TLS (%s)", a->ossl_text);
		return;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
		explain_no_shared(v, host, port, sni, a->deadline_us, chain, key,
		    1, findings);
		return;
	default:
		finding_add(findings, "error", "no_shared_algorithm",
		    "handshake", "compare both sides' TLS settings",
		    "the handshake failed: %s", a->ossl_text[0] ?
		    a->ossl_text : "the connection was lost");
	}
}

/* TLS 1.3: the server judges our certificate after our Finished, so its
 * refusal arrives after the handshake completed on our side. */
static void
verdict_after(struct attempt *a, json_t *findings)
{
	int d = a->alert_in_after_cert;

	if (!a->sent_cert || a->sent_empty_cert)
		finding_add(findings, "error", "no_client_cert",
		    "client certificate", "give --cert and --key with a "
		    "certificate from a CA the server names", "the server "
		    "requires a client certificate and we sent none (%s%s)",
		    d >= 0 ? "alert " : "it closed the connection",
		    d >= 0 ? alert_name(d) : "");
	else if (d >= 0)
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", alert_cause(d), "the server "
		    "rejected our certificate after the handshake with alert "
		    "%s (%d)", alert_name(d), d);
	else
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", "check the server's logs: it most "
		    "likely refused our certificate", "the server closed the "
		    "connection right after the handshake, before any data");
}

/*
 * When the server refused our certificate and our own chain has an error
 * of its own (from index <from> on: expired, not yet valid, ...), that is
 * the cause and the headline: GnuTLS answers access_denied to every
 * verification failure, which reads as "not authorized". Ours moves just
 * before the refusal.
 */
static void
ours_first(json_t *findings, size_t from)
{
	size_t i, j, n = json_array_size(findings);
	const char *sev, *code;
	json_t *f;

	for (i = 0; i < from; i++) {
		f = json_array_get(findings, i);
		code = json_string_value(json_object_get(f, "code"));
		if (code != NULL && strcmp(code, "peer_rejected_our_cert") == 0)
			break;
	}
	if (i == from)
		return;
	for (j = from; j < n; j++) {
		char fix[200];

		f = json_array_get(findings, j);
		sev = json_string_value(json_object_get(f, "severity"));
		if (sev == NULL || strcmp(sev, "error") != 0)
			continue;
		code = json_string_value(json_object_get(f, "code"));
		snprintf(fix, sizeof(fix), "most likely because of the finding "
		    "above (%s): fix that first", code ? code : "our chain");
		json_object_set_new(json_array_get(findings, i), "fix",
		    esc_jstr(fix));
		json_incref(f);
		json_array_remove(findings, j);
		json_array_insert_new(findings, i, f);
		return;
	}
}

static void
http_verdict(struct attempt *a, json_t *report, json_t *findings)
{
	json_t *h = json_object(), *cc = json_object_get(report, "client_cert");
	char line[200];
	size_t n = strcspn(a->http_resp, "\r\n");

	snprintf(line, sizeof(line), "%.*s", (int)(n < 199 ? n : 199),
	    a->http_resp);
	json_object_set_new(h, "status", json_integer(a->http_status));
	json_object_set_new(h, "status_line", esc_jstr(line));
	json_object_set_new(report, "http", h);
	if (a->http_status != 400 || !a->saw_cr)
		return;
	if (strstr(a->http_resp, "No required SSL certificate")) {
		finding_add(findings, "error", "no_client_cert",
		    "client certificate", "give --cert and --key with a "
		    "certificate from a CA the server names", "the server "
		    "requires a client certificate and we sent none: it "
		    "finished the handshake, then answered '%s' \"No required "
		    "SSL certificate was sent\" (as nginx does)", line);
	} else if (strstr(a->http_resp, "SSL certificate error")) {
		finding_add(findings, "error", "peer_rejected_our_cert",
		    "client certificate", "read the server's error log for "
		    "the reason (nginx: 'client SSL certificate verify error'); "
		    "the findings about our chain below name the likely cause",
		    "the server rejected our certificate: it finished the "
		    "handshake, then answered '%s' \"The SSL certificate "
		    "error\" (as nginx does)", line);
	} else
		return;
	if (cc)
		json_object_set_new(cc, "accepted", json_false());
}

static json_t *
name_list(const STACK_OF(X509_NAME) *names)
{
	json_t *a = json_array();
	char buf[300];
	int i;

	for (i = 0; names && i < sk_X509_NAME_num(names); i++) {
		name_oneline(sk_X509_NAME_value(names, i), buf, sizeof(buf));
		json_array_append_new(a, esc_jstr(buf));
	}
	return a;
}

/* Whether any name the server listed is an issuer in our chain (or the
 * subject of one of its CA certificates). */
static int
chain_matches_names(STACK_OF(X509) *chain, const STACK_OF(X509_NAME) *names)
{
	int i, j;

	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		for (j = 0; j < sk_X509_NAME_num(names); j++) {
			const X509_NAME *n = sk_X509_NAME_value(names, j);

			if (X509_NAME_cmp(X509_get_issuer_name(x), n) == 0 ||
			    (i > 0 && X509_NAME_cmp(X509_get_subject_name(x),
			    n) == 0))
				return 1;
		}
	}
	return 0;
}

/* IANA name of a TLS SignatureScheme code point. */
static const char *
scheme_name(unsigned int cp)
{
	static const struct { unsigned int cp; const char *name; } t[] = {
		{ 0x0401, "rsa_pkcs1_sha256" }, { 0x0501, "rsa_pkcs1_sha384" },
		{ 0x0601, "rsa_pkcs1_sha512" }, { 0x0403, "ecdsa_secp256r1_sha256" },
		{ 0x0503, "ecdsa_secp384r1_sha384" },
		{ 0x0603, "ecdsa_secp521r1_sha512" },
		{ 0x0804, "rsa_pss_rsae_sha256" }, { 0x0805, "rsa_pss_rsae_sha384" },
		{ 0x0806, "rsa_pss_rsae_sha512" }, { 0x0807, "ed25519" },
		{ 0x0808, "ed448" }, { 0x0809, "rsa_pss_pss_sha256" },
		{ 0x080a, "rsa_pss_pss_sha384" }, { 0x080b, "rsa_pss_pss_sha512" },
		{ 0x0201, "rsa_pkcs1_sha1" }, { 0x0203, "ecdsa_sha1" },
		{ 0x0301, "rsa_pkcs1_sha224" }, { 0x0303, "ecdsa_sha224" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].cp == cp)
			return t[i].name;
	return NULL;
}

static json_t *
sigalg_list(SSL *ssl)
{
	json_t *a = json_array();
	int i, n, sign, hash;
	unsigned char rsig, rhash;
	const char *nm;
	char buf[64];

	n = SSL_get_sigalgs(ssl, 0, NULL, NULL, NULL, NULL, NULL);
	for (i = 0; i < n; i++) {
		SSL_get_sigalgs(ssl, i, &sign, &hash, NULL, &rsig, &rhash);
		if ((nm = scheme_name((unsigned int)rhash << 8 | rsig)) == NULL) {
			snprintf(buf, sizeof(buf), "0x%02x%02x", rhash, rsig);
			nm = buf;
		}
		json_array_append_new(a, esc_jstr(nm));
	}
	return a;
}

static void
client_cert_facts(struct attempt *a, STACK_OF(X509) *chain, int completed,
    json_t *report, json_t *findings)
{
	json_t *cc = json_object();
	const STACK_OF(X509_NAME) *names = SSL_get0_peer_CA_list(a->ssl);
	char label[300];
	int match = -1;

	json_object_set_new(report, "client_cert", cc);
	json_object_set_new(cc, "requested", json_boolean(a->saw_cr));
	if (!a->saw_cr) {
		/* with --cert the question is mTLS: a server that never asks
		 * for a certificate fails it (our certificate went nowhere) */
		if (completed && chain)
			finding_add(findings, "error", "no_client_cert",
			    "client certificate", "configure the server to "
			    "request and verify client certificates (nginx: "
			    "ssl_verify_client on; Go: ClientAuth "
			    "tls.RequireAndVerifyClientCert; Java: "
			    "setNeedClientAuth(true); Node: requestCert and "
			    "rejectUnauthorized; gnutls-serv: "
			    "--require-client-cert; mtls proxy does by "
			    "default)", "mutual TLS is not happening: the server "
			    "never requested a client certificate, so ours was "
			    "not sent and the server does not know who we are");
		else if (completed)
			finding_add(findings, "info", NULL, "client certificate",
			    NULL, "the server does not request a client "
			    "certificate: this is TLS, not mutual TLS");
		return;
	}
	json_object_set_new(cc, "ca_names", name_list(names));
	json_object_set_new(cc, "signature_algorithms", sigalg_list(a->ssl));
	json_object_set_new(cc, "sent", json_boolean(a->sent_cert &&
	    !a->sent_empty_cert));
	if (chain) {
		cert_label(sk_X509_value(chain, 0), label, sizeof(label));
		json_object_set_new(cc, "ours", esc_jstr(label));
		if (names && sk_X509_NAME_num(names) > 0) {
			match = chain_matches_names(chain, names);
			json_object_set_new(cc, "chains_to_named_ca",
			    json_boolean(match));
			if (!match)
				finding_add(findings, "warn", NULL,
				    "client certificate", "use a certificate "
				    "issued under one of the CAs the server "
				    "names", "our certificate %s is not issued "
				    "by any CA the server named in its "
				    "CertificateRequest", label);
		}
	}
	if (!completed || !a->sent_cert || a->sent_empty_cert)
		return;
	if (a->alert_in_after_cert >= 0 || a->eof)
		json_object_set_new(cc, "accepted", json_false());
	else
		json_object_set_new(cc, "accepted", json_true());
}

static void
tls_facts(SSL *ssl, json_t *report)
{
	json_t *t = json_object();
	int nid, hash;
	char buf[80];

	json_object_set_new(report, "tls", t);
	json_object_set_new(t, "version", esc_jstr(SSL_get_version(ssl)));
	json_object_set_new(t, "cipher", esc_jstr(SSL_get_cipher_name(ssl)));
	nid = SSL_get_negotiated_group(ssl);
	if (nid != NID_undef)
		json_object_set_new(t, "group", esc_jstr(group_name(ssl,
		    nid)));
	if (SSL_get_peer_signature_type_nid(ssl, &nid) == 1 &&
	    SSL_get_peer_signature_nid(ssl, &hash) == 1) {
		snprintf(buf, sizeof(buf), "%s+%s", sig_type_name(nid),
		    hash == NID_undef ? "intrinsic" : OBJ_nid2sn(hash));
		json_object_set_new(t, "signature", esc_jstr(buf));
	}
}

static int
load_ours(const struct doctor_connect_opts *o, STACK_OF(X509) **chain,
    EVP_PKEY **key, json_t *report)
{
	struct mtls_error err;

	error_clear(&err);
	if (o->cert == NULL && o->key == NULL)
		return 0;
	if (o->cert == NULL || o->key == NULL) {
		json_object_set_new(report, "error", json_string("give both "
		    "--cert and --key"));
		return -1;
	}
	if (certs_load(o->cert, chain, &err) != 0 ||
	    key_load(o->key, NULL, key, &err) != 0) {
		json_object_set_new(report, "error", esc_jstr(err.msg));
		return -1;
	}
	return 0;
}

json_t *
doctor_connect(const struct doctor_connect_opts *o, int *usage)
{
	json_t *report = json_object(), *findings = json_array();
	json_t *trace = json_array(), *sc;
	STACK_OF(X509) *mine = NULL, *peer;
	EVP_PKEY *key = NULL;
	SSL_CTX *ctx = NULL;
	struct variant v;
	struct attempt a;
	struct doctor_chain_opts co;
	char host[256], port[16], expect[300], ca_used[4096];
	const char *sni, *ca;
	int completed;
	size_t nf;

	*usage = 0;
	memset(&a, 0, sizeof(a));
	a.fd = -1;
	if (report == NULL || findings == NULL || trace == NULL) {
		json_decref(report);
		json_decref(findings);
		json_decref(trace);
		return NULL;
	}
	json_object_set_new(report, "target", esc_jstr(o->target));
	if (doctor_split_hostport(o->target, host, sizeof(host), port,
	    sizeof(port)) != 0) {
		json_object_set_new(report, "error", json_string("the target "
		    "must be HOST:PORT (or [IPv6]:PORT)"));
		*usage = 1;
		goto out;
	}
	memset(&v, 0, sizeof(v));
	v.seclevel = -1;
	v.min_v = parse_version(o->min_tls);
	v.max_v = parse_version(o->max_tls);
	v.groups = o->groups;
	v.sigalgs = o->sigalgs;
	if (v.min_v < 0 || v.max_v < 0) {
		json_object_set_new(report, "error", json_string("--min-tls and "
		    "--max-tls take 1.2 or 1.3"));
		*usage = 1;
		goto out;
	}
	if (load_ours(o, &mine, &key, report) != 0) {
		*usage = 1;
		goto out;
	}
	if ((ctx = make_ctx(&v, mine, key)) == NULL) {
		json_object_set_new(report, "error", json_string("cannot use "
		    "these settings (--groups, --sigalgs, or the key does not "
		    "match the certificate)"));
		ERR_clear_error();
		*usage = 1;
		goto out;
	}
	sni = o->servername ? o->servername : is_ip(host) ? NULL : host;
	if (o->expect)
		snprintf(expect, sizeof(expect), "%s", o->expect);
	else if (sni)
		snprintf(expect, sizeof(expect), "dns:%s", sni);
	else if (ip_canon(host, ca_used, sizeof(ca_used)) == 0)
		snprintf(expect, sizeof(expect), "ip:%s", ca_used);
	else
		expect[0] = '\0';
	ca = o->ca ? o->ca : access(SYSTEM_BUNDLE, R_OK) == 0 ? SYSTEM_BUNDLE :
	    NULL;
	json_object_set_new(report, "servername", sni ? esc_jstr(sni) :
	    json_null());
	json_object_set_new(report, "expect", expect[0] ? esc_jstr(expect) :
	    json_null());
	json_object_set_new(report, "ca", ca ? esc_jstr(ca) : json_null());

	a.trace = trace;
	a.live = o->live;
	a.http = !o->no_http;
	a.deadline_us = now_us() + (int64_t)o->timeout_ms * 1000;
	completed = attempt_run(&a, ctx, host, port, sni);
	json_object_set(report, "trace", trace);
	if (!completed)
		explain_failure(&a, &v, mine != NULL, host, port, sni,
		    o->timeout_ms, mine, key, findings);
	if (a.ssl && a.saw_server_hello && completed)
		tls_facts(a.ssl, report);
	if (a.ssl && (peer = SSL_get_peer_cert_chain(a.ssl)) != NULL &&
	    sk_X509_num(peer) > 0) {
		memset(&co, 0, sizeof(co));
		co.ca = ca;
		co.purpose = MTLS_PURPOSE_SERVER;
		co.expect = expect[0] ? expect : NULL;
		co.now = time(NULL);
		co.who = "the server's";
		if ((sc = doctor_chain(peer, &co, findings)) != NULL)
			json_object_set_new(report, "server_chain", sc);
	}
	if (a.ssl && a.saw_server_hello)
		client_cert_facts(&a, mine, completed, report, findings);
	if (completed && a.saw_cr && (a.alert_in_after_cert >= 0 || a.eof))
		verdict_after(&a, findings);
	if (completed && a.http_status)
		http_verdict(&a, report, findings);
	if (mine) {
		/* our own chain: the likely cause when the server refuses it */
		nf = json_array_size(findings);
		memset(&co, 0, sizeof(co));
		co.purpose = MTLS_PURPOSE_CLIENT;
		co.now = time(NULL);
		co.who = "our";
		co.key = key;
		if ((sc = doctor_chain(mine, &co, findings)) != NULL)
			json_object_set_new(json_object_get(report,
			    "client_cert") ? json_object_get(report,
			    "client_cert") : report, "chain", sc);
		ours_first(findings, nf);
	}
 out:
	json_object_set_new(report, "findings", findings);
	json_object_set_new(report, "result",
	    esc_jstr(findings_result(findings)));
	json_decref(trace);
	attempt_free(&a);
	SSL_CTX_free(ctx);
	sk_X509_pop_free(mine, X509_free);
	EVP_PKEY_free(key);
	return report;
}
