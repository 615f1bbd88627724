/*
 * Socket addresses as the services write them: "host:port", "[v6]:port"
 * and "unix:/path" (parsed, printed, judged local), and listening
 * sockets bound to them. Used by the proxy (listeners, targets, the admin
 * endpoint), the gateway, `ca serve` and `doctor serve`.
 */
#ifndef MTLS_NET_ADDR_H
#define MTLS_NET_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#include "internal.h"

/* Parses "host:port", "[v6]:port" or "unix:/path" into <ss>/<len> (a host
 * name is resolved now, getaddrinfo's first answer). <what> names the
 * text in errors ("--listen"). 0, or -1 with <err>. */
int	 addr_parse(const char *text, const char *what,
	    struct sockaddr_storage *ss, socklen_t *len, struct mtls_error *err)
	    MTLS_MUST_CHECK;
/* "1.2.3.4:5", "[::1]:5", or "unix" for a peer address, in <buf>. */
void	 addr_text(const struct sockaddr_storage *, char *buf, size_t len);
/* 1 when <ss> is loopback (127.0.0.0/8, ::1) or a UNIX socket. */
int	 addr_is_local(const struct sockaddr_storage *ss);
/* A non-blocking, close-on-exec TCP socket bound to <ss> and listening
 * (SO_REUSEADDR; SO_REUSEPORT too when <reuseport>: one socket per worker
 * and the kernel spreads accepts). The fd, or -1 with <err> naming
 * <what> ("listen 127.0.0.1:8443"). */
int	 addr_listen(const struct sockaddr_storage *ss, socklen_t len,
	    int reuseport, const char *what, struct mtls_error *err);

#endif
