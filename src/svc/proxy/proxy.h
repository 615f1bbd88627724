/*
 * The proxy engine (layer 2): one event-loop thread per worker, each with
 * its own SO_REUSEPORT listening socket and its own TLS context built from
 * one shared, frozen config; byte pump between a TLS side and a plain
 * side; timeouts; hot reload; drain on SIGTERM.
 */
#ifndef MTLS_PROXY_H
#define MTLS_PROXY_H

#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"
#include "agent/agent.h"
#include "net/addr.h"

#define PROXY_MAX_LISTENERS	16
#define PROXY_MAX_ROUTES	64
#define PROXY_MAX_CA		8	/* entries of a ca value */
/* the Web PKI roots a partner's bundle endpoint is verified by when no
 * bundle_root pins one (Debian's ca-certificates) */
#define PROXY_WEBPKI_ROOTS	"/etc/ssl/certs/ca-certificates.crt"
#define PROXY_BUNDLE_REFRESH_MS	300000
#define PROXY_PER_IP		256	/* default max_conns_per_ip */

/* Service defaults (proxy_conf_init; the flags' and file keys' help). */
#define PROXY_FIRST_BYTE_MS	5000	/* --first-byte-timeout */
#define PROXY_HANDSHAKE_MS	10000	/* --handshake-timeout */
#define PROXY_CONNECT_MS	5000	/* --connect-timeout */
#define PROXY_IDLE_MS		300000	/* --idle-timeout */
#define PROXY_DRAIN_MS		30000	/* --drain-timeout */
#define PROXY_TICKET_ROTATE_MS	(12LL * 3600 * 1000)	/* --ticket-rotate */
#define PROXY_CONF_MAX		(1 << 20)	/* bytes of a --config file */

/* HTTP mode: one route of a listener ([route "NAME"] in a config file). */
struct proxy_route {
	char	 name[64];
	char	*listener;	/* the http listener it belongs to */
	char	*host;		/* Host to match (no port); NULL: any */
	char	*path;		/* path prefix, on a segment boundary */
	char	*upstream;	/* HOST:PORT */
	char	**allow;	/* identities allowed on this route */
	size_t	 n_allow;
	int	 allow_any;	/* any certificate that chains to --ca */
	int	 optional;	/* client_cert = optional: public route */
	/* upstream mTLS: our certificate (default: the listener's), the
	 * bundle to verify it by (default: the listener's) and its identity */
	int	 up_tls;
	char	*up_cert, *up_key, *up_ca, *up_servername;
	char	**up_expect;
	size_t	 n_up_expect;
	int	 up_idle;	/* idle upstream connections kept (256) */
	int	 up_max;	/* open upstream connections at most (512) */
};

struct proxy_listener {
	char	 name[64];	/* [listener "name"] in a config file */
	int	 outbound;	/* plain in, mTLS out */
	char	*listen;	/* HOST:PORT */
	char	*target;	/* HOST:PORT or unix:/path */
	char	*cert, *key, *ca;
	/* ca = [TD:]BUNDLE, ...: with a federated trust domain in it,
	 * ca_spec is the value as given, ca_td[i] / ca_path[i] its entries
	 * ("" for our own bundle), and ca our own bundle (else the first
	 * one), what the CRL and OCSP fetches trust; n_ca 0: ca is one
	 * file, as before */
	char	*ca_spec;
	char	*ca_td[PROXY_MAX_CA], *ca_path[PROXY_MAX_CA];
	size_t	 n_ca;
	/* an entry TD:https://...: the partner's SPIFFE bundle endpoint,
	 * fetched every bundle_refresh (else the bundle's
	 * spiffe_refresh_hint, 30 s .. 1 h, else 5 min) over TLS verified by
	 * ca_root[i] (bundle_root = TD:PATH, a pinned root) or else the
	 * system's Web PKI roots; the last good bundle stays */
	char	*ca_root[PROXY_MAX_CA];
	char	**bundle_roots;		/* bundle_root values, TD:PATH */
	size_t	 n_bundle_roots;
	int64_t	 bundle_refresh_ms;
	char	**crls;
	size_t	 n_crls;
	char	*crl_url;	/* fetched every crl_refresh_ms (https) */
	int64_t	 crl_refresh_ms;
	char	**allow;	/* inbound: allow rules */
	size_t	 n_allow;
	int	 allow_any;
	char	**expect;	/* outbound: the upstream's identity */
	size_t	 n_expect;
	char	*servername;	/* outbound: SNI */
	char	*min_tls;	/* "1.2" or NULL (1.3) */
	char	*ticket_key_file;	/* shared session ticket keys */
	int	 unsafe_target;	/* plaintext side may leave this host */
	int	 staple_off;	/* inbound: no OCSP stapling */
	int	 max_conns_per_ip;	/* inbound: open connections per client
					 * address; 0: PROXY_PER_IP, -1: none */
	int	 require_staple;	/* outbound: upstream must staple */
	/* HTTP mode (mode = http, --http): requests routed by host and
	 * path, authorized per route; limits */
	int	 http;
	struct proxy_route *routes[PROXY_MAX_ROUTES];
	size_t	 n_routes;
	size_t	 max_head;	/* bytes of request line + headers (16 KiB) */
	size_t	 max_headers;	/* header fields (100) */
	int64_t	 max_body;	/* request body bytes (1 MiB) */
	int	 no_access_log;	/* http: no "request" log lines */
	int	 underscores_pass;	/* http: forward header names with
					 * '_' (underscores_in_headers =
					 * pass; default drop, as nginx) */
	int	 semicolons_pass;	/* http: ';' in a path forwarded
					 * (path_semicolons = pass; default
					 * refuse: 400) */
	int64_t	 request_timeout_ms;	/* a whole request in (60 s) and
					 * the upstream's answer (60 s) */
};

struct proxy_opts {
	struct proxy_listener	 l[PROXY_MAX_LISTENERS];
	size_t			 n_l;
	int			 workers;
	int64_t			 first_byte_timeout_ms;	/* inbound: accept
						 * to the ClientHello's first byte
						 * (5 s; at most the handshake's) */
	int64_t			 handshake_timeout_ms;
	int64_t			 connect_timeout_ms;
	int64_t			 idle_timeout_ms;
	int64_t			 drain_timeout_ms;
	int			 max_conns;	/* 0: none; at the cap the
						 * longest-waiting inbound connection
						 * not yet authenticated is closed */
	char			*admin;		/* HOST:PORT of /metrics etc. */
	/* --admin-allow: the admin endpoint speaks mTLS and lets in only
	 * these identities (required when it is not on loopback). Its
	 * certificate, key and CA default to the first listener's, and with
	 * them that listener's CRLs (files and --crl-url); admin_crl only
	 * goes with an explicit admin_ca. */
	char			**admin_allow;
	size_t			 n_admin_allow;
	char			*admin_cert, *admin_key, *admin_ca;
	char			**admin_crls;
	size_t			 n_admin_crls;
	int64_t			 ticket_rotate_ms;	/* 0: never */
};

/* Checks <o> (fail closed: inbound needs allow rules or allow_any; the
 * plaintext side must be loopback unless unsafe_target), binds, runs until
 * SIGTERM/SIGINT and drains. 0 on a clean stop, -1 with <err> at start. */
int	 proxy_run(const struct proxy_opts *, struct mtls_error *)
	    MTLS_MUST_CHECK;

/*
 * The configuration (config.c): what --config and the flags make. Strings
 * from a file live in the conf until proxy_conf_free; <o> and <ag> may
 * point at them and at the conf's own buffers, so the conf outlives
 * proxy_run and the agent.
 */
struct proxy_conf {
	struct proxy_opts	 o;
	struct agent_opts	 ag;		/* [agent], --ca-url ... */
	int			 agent;		/* finish: the built-in agent
						 * runs (listeners serve its
						 * files) */
	int			 log_json;	/* log_format in the file: 1
						 * json, 0 text, -1 not given */
	const char		*path;		/* the file parsed; NULL: flags */
	/* parser state: [route] sections, the current sections */
	struct proxy_route	*routes[PROXY_MAX_ROUTES];
	size_t			 n_routes;
	struct proxy_route	*cur_route;
	struct proxy_listener	*cur;
	struct proxy_route	 flag_route;	/* --http: / to --target */
	char			**keep;		/* strings from the file */
	size_t			 n_keep;
	char			 svid[4200], svid_key[4200], bundle[4200];
};

/* Empty, with the service defaults (PROXY_*_MS). */
void	 proxy_conf_init(struct proxy_conf *);
/* Parses a config file's text (<path> names it in "path:line: ..."
 * errors; the conf keeps the pointer): listeners, routes attached to
 * their http listener, the [proxy] and [agent] keys. 0, or -1 with <err>
 * (MTLS_ERR_PARSE). */
int	 proxy_conf_parse(struct proxy_conf *, const char *text, size_t len,
	    const char *path, struct mtls_error *) MTLS_MUST_CHECK;
/* Reads <path> (at most PROXY_CONF_MAX bytes) and parses it. */
int	 proxy_conf_load(struct proxy_conf *, const char *path,
	    struct mtls_error *) MTLS_MUST_CHECK;
/* After the file or the flags: the single listener of flags, defaults of
 * http listeners and routes, the checks of what goes together (errors
 * are MTLS_ERR_ARG: usage), the built-in agent's files as the listeners'
 * certificate, key and CA where they name none. */
int	 proxy_conf_finish(struct proxy_conf *, struct mtls_error *)
	    MTLS_MUST_CHECK;
/* Frees what the conf holds (every string vector, routes, kept strings);
 * the conf is empty after. */
void	 proxy_conf_free(struct proxy_conf *);
/* 1 when a ca entry's path is a bundle endpoint (https://), not a file. */
int	 ca_is_url(const char *path);

#endif
