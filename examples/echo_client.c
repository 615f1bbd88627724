/*
 * echo_client: sends one line over mTLS and prints the answer.
 *
 *   echo_client HOST PORT CERT KEY BUNDLE EXPECT MESSAGE
 *
 * EXPECT is the server identity to require (spiffe://..., dns:NAME).
 * Exit 0 when the echo came back intact; 1 with the failure code when the
 * handshake or the exchange failed; 2 for unusable arguments.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mtls.h>

static int
wait_fd(int fd, int want)
{
	struct pollfd p = { fd, want == MTLS_WANT_READ ? POLLIN : POLLOUT, 0 };

	return poll(&p, 1, 10000) == 1 ? 0 : -1;
}

static int
fail(struct mtls *c)
{
	printf("failed: %s: %s\n", mtls_fail_name(mtls_fail_code(c)),
	    mtls_error(c));
	return 1;
}

int
main(int argc, char **argv)
{
	struct mtls_config *cfg;
	struct mtls *client, *conn = NULL;
	struct sockaddr_in sa;
	char buf[4096];
	size_t len, got = 0;
	long n;
	int fd, r, rv = 1;

	if (argc != 8) {
		fprintf(stderr, "usage: echo_client HOST PORT CERT KEY BUNDLE "
		    "EXPECT MESSAGE\n");
		return 2;
	}
	if ((cfg = mtls_config_new()) == NULL || (client = mtls_client()) == NULL)
		return 2;
	if (mtls_config_set_identity_file(cfg, argv[3], argv[4]) != 0 ||
	    mtls_config_set_trust_file(cfg, argv[5]) != 0 ||
	    mtls_config_add_expect(cfg, argv[6]) != 0) {
		fprintf(stderr, "echo_client: %s\n", mtls_config_error(cfg));
		return 2;
	}
	if (mtls_configure(client, cfg) != 0) {
		fprintf(stderr, "echo_client: %s\n", mtls_error(client));
		return 2;
	}
	mtls_config_free(cfg);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 ||
	    (fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		printf("failed: connect_failed: %s:%s\n", argv[1], argv[2]);
		return 1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (mtls_connect_socket(client, &conn, fd, NULL) != 0) {
		fprintf(stderr, "echo_client: %s\n", mtls_error(client));
		return 2;
	}
	while ((r = mtls_handshake(conn)) == MTLS_WANT_READ ||
	    r == MTLS_WANT_WRITE)
		if (wait_fd(fd, r) != 0)
			break;
	if (r != 0) {
		rv = fail(conn);
		goto out;
	}
	len = strlen(argv[7]);
	for (size_t off = 0; off < len;) {
		n = mtls_write(conn, argv[7] + off, len - off);
		if (n == MTLS_WANT_READ || n == MTLS_WANT_WRITE) {
			if (wait_fd(fd, (int)n) != 0)
				goto out;
			continue;
		}
		if (n < 0) {
			rv = fail(conn);
			goto out;
		}
		off += (size_t)n;
	}
	/* In TLS 1.3 a server that refuses our certificate says so only
	 * now, on the first read. */
	while (got < len && got < sizeof(buf)) {
		n = mtls_read(conn, buf + got, sizeof(buf) - got);
		if (n == MTLS_WANT_READ || n == MTLS_WANT_WRITE) {
			if (wait_fd(fd, (int)n) != 0)
				break;
			continue;
		}
		if (n < 0) {
			rv = fail(conn);
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got == len && memcmp(buf, argv[7], len) == 0) {
		printf("echo ok from %s: %.*s\n", mtls_peer_id(conn), (int)got,
		    buf);
		rv = 0;
	} else
		printf("failed: short echo (%zu of %zu bytes)\n", got, len);
	mtls_close(conn);
 out:
	mtls_free(conn);
	close(fd);
	mtls_free(client);
	return rv;
}
