/* Socket addresses and listening sockets of the services (addr.h). */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/addr.h"

int
addr_parse(const char *text, const char *what,
    struct sockaddr_storage *ss, socklen_t *len, struct mtls_error *err)
{
	struct addrinfo hints, *res = NULL;
	char host[256], *port;
	int64_t pn;
	const char *colon;
	int rc;

	memset(ss, 0, sizeof(*ss));
	if (strncmp(text, "unix:", 5) == 0) {
		struct sockaddr_un *su = (struct sockaddr_un *)ss;

		if (strlen(text + 5) == 0 ||
		    strlen(text + 5) >= sizeof(su->sun_path))
			return error_set(err, MTLS_ERR_ARG, "%s '%s': bad UNIX "
			    "socket path", what, text);
		su->sun_family = AF_UNIX;
		memcpy(su->sun_path, text + 5, strlen(text + 5) + 1);
		*len = sizeof(*su);
		return 0;
	}
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');

		if (rb == NULL || rb[1] != ':' || (size_t)(rb - text) > 200)
			return error_set(err, MTLS_ERR_ARG, "%s '%s': use "
			    "[IPv6]:PORT", what, text);
		snprintf(host, sizeof(host), "%.*s", (int)(rb - text - 1),
		    text + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || colon == text ||
		    (size_t)(colon - text) > 250)
			return error_set(err, MTLS_ERR_ARG, "%s '%s': use "
			    "HOST:PORT", what, text);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
	}
	port = (char *)colon + 1;
	if (conf_number(port, 1, 65535, &pn) != 0)
		return error_set(err, MTLS_ERR_ARG, "%s '%s': port must be "
		    "1-65535", what, text);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		return error_set(err, MTLS_ERR_ARG, "%s '%s': %s", what, text,
		    gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int
addr_is_local(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_UNIX)
		return 1;
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr)
		    >> 24) == 127;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	return 0;
}

void
addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, h, sizeof(h));
		snprintf(buf, len, "%s:%u", h, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof(h));
		snprintf(buf, len, "[%s]:%u", h, ntohs(s->sin6_port));
	} else
		snprintf(buf, len, "unix");
}

int
addr_listen(const struct sockaddr_storage *ss, socklen_t len, int reuseport,
    const char *what, struct mtls_error *err)
{
	int fd, one = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return error_set_errno(err, MTLS_ERR_IO, "%s: socket", what);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) != 0) ||
	    bind(fd, (const struct sockaddr *)ss, len) != 0 ||
	    listen(fd, 1024) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "%s", what);
		close(fd);
		return -1;
	}
	return fd;
}
