/*
 * notify: sd_notify(3) by hand (see notify.h for why).
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"

static int nfd = -1;
static struct sockaddr_un nsa;
static socklen_t nsa_len;

int
notify_init(void)
{
	const char *e = getenv("NOTIFY_SOCKET");
	size_t n;

	if (nfd >= 0 || e == NULL || e[0] == '\0')
		return 0;
	n = strlen(e);
	if ((e[0] != '/' && e[0] != '@') || n < 2 ||
	    n >= sizeof(nsa.sun_path)) {
		fprintf(stderr, "mtls: NOTIFY_SOCKET is not an absolute path "
		    "or an '@' abstract name of at most %zu bytes: readiness is "
		    "not reported\n", sizeof(nsa.sun_path) - 1);
		return -1;
	}
	memset(&nsa, 0, sizeof(nsa));
	nsa.sun_family = AF_UNIX;
	memcpy(nsa.sun_path, e, n);
	if (e[0] == '@')
		nsa.sun_path[0] = '\0';	/* abstract: no trailing NUL */
	nsa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	    (e[0] == '@' ? 0 : 1));
	nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (nfd < 0) {
		fprintf(stderr, "mtls: NOTIFY_SOCKET: cannot open a socket: "
		    "readiness is not reported\n");
		return -1;
	}
	return 0;
}

void
notify_send(const char *msg)
{
	if (nfd < 0)
		return;
	(void)sendto(nfd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
	    (const struct sockaddr *)&nsa, nsa_len);
}

void
notify_reloading(void)
{
	struct timespec ts;
	char m[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(m, sizeof(m), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000);
	notify_send(m);
}
