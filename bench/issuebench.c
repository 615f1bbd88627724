/*
 * issuebench: load generator for `mtls ca serve` renewals (issue 15 §2).
 *
 *   issuebench --port P --cert C --key K --bundle B [--clients N]
 *       [--seconds S] [--new-conn] [--pid SERVER_PID] [--csrs M]
 *
 * N threads, each an mTLS client on libmtls (its own context), send
 * POST /v1/renew with {"csr": ...} and the Mtls-Bundle header an agent
 * sends (one fixed generation) for S seconds, over one kept-alive
 * connection each, or (--new-conn) a new connection (full handshake, no
 * resumption asked) per renewal. M CSRs (fresh P-256 keys) are made before
 * the timed phase and used in turn, so the client's key generation is not
 * in the figure. A renewal counts when the answer is 200 with a
 * certificate: the CA committed it before answering (durable).
 * With --pid, the server's CPU (utime + stime of /proc/PID/stat) over the
 * timed phase gives µs per renewal. One line on stdout:
 *   clients=N mode=keepalive|newconn renewals=R seconds=S per_s=X
 *   server_cpu_us=U errors=E
 * Exit 0, 1 when any renewal failed, 2 for bad arguments.
 * Build: make bench (build/bench/issuebench).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <mtls.h>

static int port, n_clients = 1, new_conn, n_csrs = 2048;
static double seconds = 5;
static const char *cert, *key, *bundle;
static char **bodies;		/* HTTP requests, one per CSR */
static size_t *body_lens;
static volatile int go, stop;
static unsigned long n_done, n_err;
static unsigned long next_csr;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
make_csrs(void)
{
	int i;

	bodies = calloc((size_t)n_csrs, sizeof(*bodies));
	body_lens = calloc((size_t)n_csrs, sizeof(*body_lens));
	if (bodies == NULL || body_lens == NULL)
		return -1;
	for (i = 0; i < n_csrs; i++) {
		EVP_PKEY *k = EVP_EC_gen("P-256");
		X509_REQ *r = X509_REQ_new();
		BIO *b = BIO_new(BIO_s_mem());
		char *pem, *json, *p, *q;
		long n;
		size_t jl, off;

		if (k == NULL || r == NULL || b == NULL ||
		    !X509_REQ_set_pubkey(r, k) ||
		    !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(r),
		    "CN", MBSTRING_ASC, (const unsigned char *)"bench", -1, -1,
		    0) || !X509_REQ_sign(r, k, EVP_sha256()) ||
		    !PEM_write_bio_X509_REQ(b, r))
			return -1;
		n = BIO_get_mem_data(b, &pem);
		/* JSON: newlines as \n */
		if ((json = malloc((size_t)n * 2 + 32)) == NULL)
			return -1;
		q = json + sprintf(json, "{\"csr\": \"");
		for (p = pem; p < pem + n; p++) {
			if (*p == '\n') {
				*q++ = '\\';
				*q++ = 'n';
			} else
				*q++ = *p;
		}
		q += sprintf(q, "\"}");
		jl = (size_t)(q - json);
		if ((bodies[i] = malloc(jl + 256)) == NULL)
			return -1;
		off = (size_t)sprintf(bodies[i], "POST /v1/renew HTTP/1.1\r\n"
		    "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
		    "Content-Length: %zu\r\n%s%s\r\n", jl,
		    new_conn ? "Connection: close\r\n" : "",
		    /* as mtls agent renews: the bundle it holds */
		    "Mtls-Bundle: 0123456789abcdef0123456789abcdef"
		    "0123456789abcdef0123456789abcdef\r\n");
		memcpy(bodies[i] + off, json, jl);
		body_lens[i] = off + jl;
		free(json);
		BIO_free(b);
		X509_REQ_free(r);
		EVP_PKEY_free(k);
	}
	return 0;
}

static int
wait_fd(int fd, long want)
{
	struct pollfd p = { fd, want == MTLS_WANT_READ ? POLLIN : POLLOUT, 0 };

	return poll(&p, 1, 30000) == 1 ? 0 : -1;
}

static struct mtls *
dial(struct mtls *client, int *fdp)
{
	struct sockaddr_in sa;
	struct mtls *c = NULL;
	int fd, r, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1 ||
	    mtls_connect_socket(client, &c, fd, "127.0.0.1") != 0) {
		close(fd);
		return NULL;
	}
	while ((r = mtls_handshake(c)) == MTLS_WANT_READ ||
	    r == MTLS_WANT_WRITE)
		if (wait_fd(fd, r) != 0)
			break;
	if (r != 0) {
		fprintf(stderr, "issuebench: handshake: %s: %s\n",
		    mtls_fail_name(mtls_fail_code(c)), mtls_error(c));
		mtls_free(c);
		close(fd);
		return NULL;
	}
	*fdp = fd;
	return c;
}

/* One request, its whole answer: 0 on a 200 with a certificate. */
static int
renew(struct mtls *c, int fd, const char *req, size_t len)
{
	char buf[32768], *hend, *cl;
	size_t off, got = 0, need = 0;
	long n;

	for (off = 0; off < len;) {
		n = mtls_write(c, req + off, len - off);
		if (n == MTLS_WANT_READ || n == MTLS_WANT_WRITE) {
			if (wait_fd(fd, n) != 0)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	for (;;) {
		if (got == sizeof(buf) - 1)
			return -1;
		n = mtls_read(c, buf + got, sizeof(buf) - 1 - got);
		if (n == MTLS_WANT_READ || n == MTLS_WANT_WRITE) {
			if (wait_fd(fd, n) != 0)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = '\0';
		if ((hend = strstr(buf, "\r\n\r\n")) == NULL)
			continue;
		if (need == 0) {
			if ((cl = strcasestr(buf, "\r\nContent-Length:")) ==
			    NULL || cl > hend)
				return -1;
			need = (size_t)(hend + 4 - buf) +
			    strtoul(cl + 17, NULL, 10);
		}
		if (got >= need)
			break;
	}
	if (strncmp(buf, "HTTP/1.1 200", 12) != 0 ||
	    strstr(buf, "BEGIN CERTIFICATE") == NULL) {
		fprintf(stderr, "issuebench: %.200s\n", buf);
		return -1;
	}
	return 0;
}

static void *
client_main(void *arg)
{
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *client = mtls_client(), *c = NULL;
	int fd = -1;

	(void)arg;
	if (cfg == NULL || client == NULL ||
	    mtls_config_set_identity_file(cfg, cert, key) != 0 ||
	    mtls_config_set_trust_file(cfg, bundle) != 0 ||
	    mtls_configure(client, cfg) != 0) {
		fprintf(stderr, "issuebench: %s\n", cfg ?
		    mtls_config_error(cfg) : "out of memory");
		__atomic_add_fetch(&n_err, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	mtls_config_free(cfg);
	if (!new_conn && (c = dial(client, &fd)) == NULL) {
		__atomic_add_fetch(&n_err, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		usleep(1000);
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		unsigned long i = __atomic_fetch_add(&next_csr, 1,
		    __ATOMIC_RELAXED) % (unsigned long)n_csrs;

		if (new_conn && (c = dial(client, &fd)) == NULL) {
			__atomic_add_fetch(&n_err, 1, __ATOMIC_RELAXED);
			break;
		}
		if (renew(c, fd, bodies[i], body_lens[i]) != 0) {
			__atomic_add_fetch(&n_err, 1, __ATOMIC_RELAXED);
			break;
		}
		if (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
			__atomic_add_fetch(&n_done, 1, __ATOMIC_RELAXED);
		if (new_conn) {
			mtls_close(c);
			mtls_free(c);
			close(fd);
			c = NULL;
		}
	}
	if (c != NULL) {
		mtls_close(c);
		mtls_free(c);
		close(fd);
	}
	mtls_free(client);
	return NULL;
}

static long long
cpu_ticks(int pid)
{
	char path[64], buf[2048], *p;
	unsigned long long ut, st;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) == NULL) {
		fclose(f);
		return -1;
	}
	fclose(f);
	/* after "(comm)": field 3 on; utime is 14, stime 15 */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	p += 2;
	for (i = 3; i < 14; i++)
		if ((p = strchr(p, ' ')) == NULL)
			return -1;
		else
			p++;
	if (sscanf(p, "%llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "bundle", required_argument, NULL, 'b' },
		{ "clients", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 's' },
		{ "new-conn", no_argument, NULL, 'N' },
		{ "pid", required_argument, NULL, 'P' },
		{ "csrs", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 }
	};
	pthread_t *th;
	long long c0 = 0, c1 = 0;
	double t0, t1;
	int ch, i, pid = 0;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'p': port = atoi(optarg); break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'b': bundle = optarg; break;
		case 'n': n_clients = atoi(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'N': new_conn = 1; break;
		case 'P': pid = atoi(optarg); break;
		case 'm': n_csrs = atoi(optarg); break;
		default: return 2;
		}
	}
	if (port <= 0 || port > 65535 || cert == NULL || key == NULL ||
	    bundle == NULL || n_clients < 1 || n_clients > 4096 ||
	    seconds <= 0 || n_csrs < 1) {
		fprintf(stderr, "usage: issuebench --port P --cert C --key K "
		    "--bundle B [--clients N] [--seconds S] [--new-conn] "
		    "[--pid SERVER_PID] [--csrs M]\n");
		return 2;
	}
	if (make_csrs() != 0) {
		fprintf(stderr, "issuebench: cannot make the CSRs\n");
		return 2;
	}
	if ((th = calloc((size_t)n_clients, sizeof(*th))) == NULL)
		return 2;
	for (i = 0; i < n_clients; i++)
		if (pthread_create(&th[i], NULL, client_main, NULL) != 0)
			return 2;
	usleep(200000);		/* the keep-alive connections are up */
	if (pid)
		c0 = cpu_ticks(pid);
	t0 = now_s();
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	while (now_s() - t0 < seconds && !__atomic_load_n(&n_err,
	    __ATOMIC_RELAXED))
		usleep(10000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	t1 = now_s();
	if (pid)
		c1 = cpu_ticks(pid);
	for (i = 0; i < n_clients; i++)
		pthread_join(th[i], NULL);
	printf("clients=%d mode=%s renewals=%lu seconds=%.2f per_s=%.0f "
	    "server_cpu_us=%.0f errors=%lu\n", n_clients,
	    new_conn ? "newconn" : "keepalive", n_done, t1 - t0,
	    (double)n_done / (t1 - t0), pid && n_done ? (double)(c1 - c0) /
	    (double)sysconf(_SC_CLK_TCK) * 1e6 / (double)n_done : 0.0, n_err);
	return n_err ? 1 : 0;
}
