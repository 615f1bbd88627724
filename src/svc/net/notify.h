/*
 * notify: the service manager's readiness protocol (sd_notify(3)) for ca
 * serve, the proxy and the agent. A datagram "READY=1", "RELOADING=1",
 * "STOPPING=1" to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or
 * '@' for an abstract name); no $NOTIFY_SOCKET, nothing is sent.
 *
 * Written here rather than linked from libsystemd: the protocol is one
 * sendto(), stable since systemd 209; the binary keeps running where
 * there is no systemd (containers) without carrying libsystemd and its
 * compression and crypto libraries, and notify_send is async-signal-safe
 * (ca serve says STOPPING=1 from its SIGTERM handler).
 */
#ifndef MTLS_NOTIFY_H
#define MTLS_NOTIFY_H

/* Reads $NOTIFY_SOCKET once and opens the socket. 0 when there is nothing
 * to notify or it is ready; -1 when $NOTIFY_SOCKET is set but unusable
 * (too long, not a path or '@' name, no socket): a warning is logged and
 * notify_send does nothing; never fatal. */
int	notify_init(void);
/* Sends <msg> ("READY=1", ...) if notify_init found a socket. Async-signal-
 * safe. A manager that is not listening loses the message: no error. */
void	notify_send(const char *msg);
/* "RELOADING=1" with MONOTONIC_USEC=now (systemd 253's Type=notify-reload
 * wants it; older managers ignore it). */
void	notify_reloading(void);

#endif
