/*
 * echo_server: an mTLS echo server on libmtls, one connection at a time,
 * non-blocking sockets driven by poll(). Logs each handshake's peer
 * identity, or its failure code, to stdout.
 *
 *   echo_server PORT CERT KEY BUNDLE ALLOW_RULE [MAX_CONNS]
 *
 * Listens on 127.0.0.1:PORT; exits after MAX_CONNS connections (default
 * unlimited). The client must present a certificate that chains to BUNDLE
 * and whose identity matches ALLOW_RULE (e.g. spiffe://example.org/ns/x).
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

/* Waits (at most 10 s) until <fd> is ready for what <want> asks. */
static int
wait_fd(int fd, int want)
{
	struct pollfd p = { fd, want == MTLS_WANT_READ ? POLLIN : POLLOUT, 0 };

	return poll(&p, 1, 10000) == 1 ? 0 : -1;
}

static void
serve(struct mtls *server, int fd)
{
	struct mtls *conn = NULL;
	char buf[4096];
	long n, w, off;
	int r;

	if (mtls_accept_socket(server, &conn, fd) != 0) {
		printf("accept failed: %s\n", mtls_error(server));
		return;
	}
	while ((r = mtls_handshake(conn)) == MTLS_WANT_READ ||
	    r == MTLS_WANT_WRITE)
		if (wait_fd(fd, r) != 0)
			break;
	if (r != 0) {
		printf("handshake result=%s error=\"%s\"\n",
		    mtls_fail_name(mtls_fail_code(conn)), mtls_error(conn));
		fflush(stdout);
		mtls_free(conn);
		/* read what the client already sent, so closing sends FIN and
		 * our alert is not lost to a reset */
		while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
		return;
	}
	printf("handshake result=ok peer=%s serial=%s version=%s resumed=%d\n",
	    mtls_peer_id(conn), mtls_peer_serial(conn), mtls_conn_version(conn),
	    mtls_conn_resumed(conn));
	fflush(stdout);
	for (;;) {
		/* One read(2) takes all the socket has (read-ahead): records
		 * may wait inside conn while the socket is idle. Read them
		 * before waiting for the socket, or their bytes stall. */
		if (!mtls_pending(conn) && wait_fd(fd, MTLS_WANT_READ) != 0)
			break;
		n = mtls_read(conn, buf, sizeof(buf));
		if (n == MTLS_WANT_READ)
			continue;
		if (n == MTLS_WANT_WRITE) {
			if (wait_fd(fd, (int)n) != 0)
				break;
			continue;
		}
		if (n <= 0)
			break;
		for (off = 0; off < n;) {
			w = mtls_write(conn, buf + off, (size_t)(n - off));
			if (w == MTLS_WANT_READ || w == MTLS_WANT_WRITE) {
				if (wait_fd(fd, (int)w) != 0)
					goto done;
				continue;
			}
			if (w < 0)
				goto done;
			off += w;
		}
	}
 done:
	while ((r = mtls_close(conn)) == MTLS_WANT_WRITE)
		if (wait_fd(fd, r) != 0)
			break;
	mtls_free(conn);
}

int
main(int argc, char **argv)
{
	struct mtls_config *cfg;
	struct mtls *server;
	struct sockaddr_in sa;
	int lfd, fd, one = 1;
	long max = -1, done = 0;

	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: echo_server PORT CERT KEY BUNDLE "
		    "ALLOW_RULE [MAX_CONNS]\n");
		return 2;
	}
	if (argc == 7)
		max = atol(argv[6]);
	if ((cfg = mtls_config_new()) == NULL || (server = mtls_server()) == NULL)
		return 2;
	if (mtls_config_set_identity_file(cfg, argv[2], argv[3]) != 0 ||
	    mtls_config_set_trust_file(cfg, argv[4]) != 0 ||
	    mtls_config_add_allow(cfg, argv[5]) != 0) {
		fprintf(stderr, "echo_server: %s\n", mtls_config_error(cfg));
		return 2;
	}
	if (mtls_configure(server, cfg) != 0) {
		fprintf(stderr, "echo_server: %s\n", mtls_error(server));
		return 2;
	}
	mtls_config_free(cfg);	/* the server holds its own reference */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(lfd, 16) == -1) {
		perror("echo_server: listen");
		return 2;
	}
	printf("listening on 127.0.0.1:%s\n", argv[1]);
	fflush(stdout);
	while (max < 0 || done < max) {
		if ((fd = accept(lfd, NULL, NULL)) == -1)
			continue;
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		serve(server, fd);
		close(fd);
		done++;
	}
	close(lfd);
	mtls_free(server);
	return 0;
}
