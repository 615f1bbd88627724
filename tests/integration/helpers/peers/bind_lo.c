/*
 * LD_PRELOAD shim for peer servers that cannot be told an address
 * (gnutls-serv binds the wildcard address): a bind() to 0.0.0.0 becomes
 * 127.0.0.1 and one to :: becomes ::1, so tests listen on loopback only.
 * Built by the test into its own directory: cc -shared -fPIC -o bind_lo.so
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int
bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	struct sockaddr_storage ss;

	if (real == NULL)
		real = (int (*)(int, const struct sockaddr *, socklen_t))
		    dlsym(RTLD_NEXT, "bind");
	if (sa != NULL && len <= sizeof(ss)) {
		memcpy(&ss, sa, len);
		if (ss.ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
			struct sockaddr_in *s = (struct sockaddr_in *)&ss;

			if (s->sin_addr.s_addr == htonl(INADDR_ANY))
				s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		} else if (ss.ss_family == AF_INET6 &&
		    len >= sizeof(struct sockaddr_in6)) {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

			if (memcmp(&s->sin6_addr, &in6addr_any, 16) == 0)
				s->sin6_addr = in6addr_loopback;
		}
		return real(fd, (struct sockaddr *)&ss, len);
	}
	return real(fd, sa, len);
}
