/*
 * mtls doctor connect: one attempt, a real handshake against any TLS
 * server within one deadline, with OpenSSL's verification off on purpose:
 * a server whose certificate we would refuse can still tell us whether it
 * asks for ours and whether it accepts it.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

/* Milliseconds left until <deadline_us>, rounded up; 0 when passed. */
static int
left_ms(int64_t deadline_us)
{
	int64_t left = deadline_us - net_now_us();

	return left <= 0 ? 0 : left > 600000000 ? 600000 :
	    (int)((left + 999) / 1000);
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

SSL_CTX *
attempt_ctx_new(const struct variant *v, STACK_OF(X509) *mychain,
    EVP_PKEY *mykey)
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
	int64_t deadline = net_now_us() + 3000000;

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
int
attempt_run(struct attempt *a, SSL_CTX *ctx, const char *host,
    const char *port, const char *sni)
{
	int64_t deadline = a->deadline_us;
	int r, e, done = 0;
	char buf[256];
	BIO *rb;

	a->alert_in = a->alert_in_after_cert = a->alert_out = -1;
	a->t0_us = net_now_us();
	if ((a->fd = tcp_connect(host, port, a)) < 0)
		return 0;
	if ((a->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(a->ssl, a->fd) != 1)
		return 0;
	if (sni)
		SSL_set_tlsext_host_name(a->ssl, sni);
	SSL_set_msg_callback(a->ssl, trace_msg_cb);
	SSL_set_msg_callback_arg(a->ssl, a);
	rb = SSL_get_rbio(a->ssl);
	BIO_set_callback_arg(rb, (char *)a);
	BIO_set_callback_ex(rb, trace_bio_cb);
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
		if (a->nfirst > 0 && (a->first[0] < SSL3_RT_CHANGE_CIPHER_SPEC ||
		    a->first[0] > SSL3_RT_APPLICATION_DATA))
			read_more(a);
		return 0;
	}
	if (a->trace == NULL || !a->saw_cr)
		return 1;
	/* the server's verdict on our certificate, up to 1.5 s */
	deadline = net_now_us() + 1500000;
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

void
attempt_free(struct attempt *a)
{
	SSL_free(a->ssl);
	if (a->fd >= 0)
		close(a->fd);
	a->ssl = NULL;
	a->fd = -1;
}
